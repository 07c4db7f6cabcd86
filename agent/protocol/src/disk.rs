//! Disk replacement (`clou disk replace HOST DISK --new NEW`): the
//! controller asks the agent to look (what the disk is, what uses it,
//! whether taking it out loses data, whether the new disk will do), then
//! to start, then for progress until it is done and verified. The agent
//! keeps the replacement's state on the host, so that running the command
//! again after an interruption continues where it stopped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskStep {
    /// Look only: change nothing.
    Look,
    /// Start the replacement (or go on with the one under way).
    Start,
    /// How far it got; once finished, verify and finish it.
    Progress,
}

/// Controller to agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskRequest {
    pub run_id: String,
    pub admin: String,
    /// The disk to take out (`/dev/sdb`).
    pub disk: String,
    /// The disk to put in its place (mdadm: by default where the old one
    /// was, once the provider has swapped it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    pub step: DiskStep,
}

/// Something that uses the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUse {
    /// `btrfs` or `mdadm`.
    pub kind: String,
    /// Its mount point, or the array's name.
    pub name: String,
    /// Its profiles (`data raid1, metadata raid1`) or level.
    pub layout: String,
    /// Every device of it.
    pub devices: Vec<String>,
    /// Whether the others hold a copy of everything on this disk.
    pub redundant: bool,
}

/// Agent to controller (last message).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskReport {
    /// Model, serial, capacity, by-id path... of the disk to take out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identity: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<DiskUse>,
    /// The new disk's capacity, when it will do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_size: Option<u64>,
    /// Why the replacement cannot go ahead (nothing was changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The exact commands the replacement runs, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// A replacement of this disk under way (found in the host's state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_way: Option<String>,
    /// Percent copied so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// When the copy should end, as the kernel estimates it (mdadm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    /// What the replacement waits for, in words: the new disk to appear
    /// (mdadm: the old one is out of its arrays, the server's disk is
    /// being swapped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Copied, verified and finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
    /// What the verification found, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
