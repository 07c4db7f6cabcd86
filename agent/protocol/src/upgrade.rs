//! Package upgrades (`clou upgrade`): the controller first asks each host
//! what it would upgrade (a look that changes nothing), shows it, and once
//! the admin agreed asks for exactly those versions, host batch by host
//! batch. A reboot is its own request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Controller to agent: look at, or do, a package upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// Identifies this rollout in the host's journal and lock.
    pub run_id: String,
    /// Who runs it (`user@machine`), for the journal.
    pub admin: String,
    /// Look only: what would be upgraded. Nothing is installed, removed or
    /// configured.
    pub check: bool,
    /// Refresh the package lists first (`apt-get update`). The look before
    /// a rollout does; `clou upgrade --check` does not (it changes nothing,
    /// the lists included), nor does the upgrade (it installs what the
    /// look saw).
    #[serde(default)]
    pub update: bool,
    /// Only these packages, where installed (empty: everything upgradable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// Upgrade to exactly these versions (name -> version), the ones the
    /// admin saw and approved; a version that is no longer the one offered
    /// fails the host instead of installing something nobody saw. Empty
    /// in a look.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approved: BTreeMap<String, String>,
}

/// One package's upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageUpgrade {
    pub name: String,
    /// The installed version (none: a new package an upgrade pulls in,
    /// such as the next kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
}

/// Agent to controller: what a look found, or what an upgrade did (last
/// message).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeReport {
    /// In a look: what would be upgraded. After an upgrade: what was, as
    /// dpkg says afterwards (also when the upgrade failed halfway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrades: Vec<PackageUpgrade>,
    /// Upgradable but kept back (held, or waiting for a dependency).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<String>,
    /// Packages asked for that this host does not have installed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_installed: Vec<String>,
    /// Why the host needs a reboot (none: it does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_required: Option<String>,
    /// `/proc/sys/kernel/random/boot_id`: tells a rebooted host apart.
    pub boot_id: String,
    /// What the agent did besides (a dpkg run left unfinished completed...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why the look or the upgrade failed, with apt's last words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub millis: u64,
}

/// Controller to agent: reboot now (the answer comes before the reboot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebootRequest {
    pub run_id: String,
    pub admin: String,
    /// Why, for the journal ("clou upgrade: kernel 6.1.0-28").
    pub reason: String,
}

/// Agent to controller: the reboot is under way (last message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebooting {
    /// The boot id before the reboot, to compare with the one after.
    pub boot_id: String,
}
