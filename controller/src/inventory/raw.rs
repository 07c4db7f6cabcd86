//! The inventory file as written, field for field.
//!
//! These structs are the reference for the file format: every field is
//! documented here, and unknown fields are refused so that a typo is an
//! error rather than a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `inventory/*.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Vars given to every host (lowest precedence of the inventory).
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    /// Groups of hosts.
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    /// Hosts, by name. The order of the file is kept.
    #[serde(default, deserialize_with = "crate::yaml::ordered_map")]
    pub hosts: Vec<(String, Host)>,
    /// Where roles are looked for, relative to this file, in order
    /// (default `[../roles]`).
    #[serde(default)]
    pub roles_path: Vec<std::path::PathBuf>,
    /// Settings for `clou lab`, the rehearsal replica; production ignores them.
    #[serde(default)]
    pub lab: LabSettings,
    /// The instances of each application, by the application's role name:
    /// see [`crate::inventory::tenant`].
    #[serde(default)]
    pub tenants: BTreeMap<String, Vec<serde_saphyr::Spanned<serde_json::Map<String, Value>>>>,
}

/// One host entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Address or DNS name to reach the host at (default: the host name).
    pub address: Option<String>,
    /// SSH port (default 22).
    pub port: Option<u16>,
    /// SSH user (default root).
    pub user: Option<String>,
    /// How the agent gets root: `root` (log in as root) or `sudo`
    /// (`sudo -n`, for a non-root user; the default when `user` is not root).
    #[serde(rename = "become")]
    pub become_: Option<Become>,
    /// Debian release codename the host runs: bullseye, bookworm or trixie
    /// (default bookworm).
    pub release: Option<String>,
    /// Roles applied to this host, besides those of its groups.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Vars of this host (highest precedence of the inventory).
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

/// How the agent gets root on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Become {
    /// The SSH user is root.
    Root,
    /// The SSH user runs the agent with `sudo -n` (no password prompt).
    Sudo,
}

/// One group entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Hosts in the group.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Groups whose hosts are also in this group.
    #[serde(default)]
    pub children: Vec<String>,
    /// Roles applied to every host of the group.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Vars of the group's hosts (a parent's vars before a child's).
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

/// `lab:`: how `clou lab` builds the replica of this inventory.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabSettings {
    /// IPv4 subnet of the lab bridge, as `a.b.c.0/24`.
    pub subnet: Option<String>,
    /// Debian packages the lab's apt repository must offer to its hosts,
    /// besides what the roles install.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Per-host lab settings.
    #[serde(default)]
    pub hosts: BTreeMap<String, LabHost>,
    /// Servers not in the inventory yet, booted as a provider delivers
    /// them (root logs in with a password only), to rehearse
    /// `clou onboard` on.
    #[serde(default)]
    pub spares: BTreeMap<String, LabSpare>,
    /// Vars that replace the inventory's in the lab only (self-signed
    /// certificates instead of ACME, a lab secret key...): above host
    /// vars, below `-e`.
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

/// Lab settings of one host.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabHost {
    /// Extra disks, by size (`512M`, `2G`): loop-backed block devices that
    /// appear in the host as `/dev/vdb`, `/dev/vdc`, ...
    #[serde(default)]
    pub disks: Vec<String>,
}

/// A lab spare: a new server as its provider hands it over.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabSpare {
    /// Its Debian release (default bookworm).
    pub release: Option<String>,
}

/// A lab inventory overlay, written by `clou lab up`: the inventory at
/// `overlay_of`, with its hosts at lab addresses and the lab's SSH files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The inventory this overlay replicates.
    pub overlay_of: std::path::PathBuf,
    /// known_hosts holding the overlay hosts' keys.
    pub known_hosts: Option<std::path::PathBuf>,
    /// Private key that logs into the overlay hosts.
    pub identity: Option<std::path::PathBuf>,
    /// Connection settings replacing those of the inventory's hosts.
    #[serde(default)]
    pub hosts: BTreeMap<String, OverlayHost>,
    /// Vars the lab sets for its hosts (where its artifacts are), above the
    /// inventory's `lab: vars:`.
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

/// How to reach one host of an overlay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayHost {
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
}
