//! The usage report: how many collectives, users and bytes of data each
//! application has, the table of the association's yearly report
//! ("Répartition de l'utilisation").
//!
//! The controller renders, from each application role's `usage:` section,
//! one [`UsageItem`] per tenant and sends them in a [`UsageRequest`]; the
//! agent measures each (runs the users command, sums the data paths' disk
//! usage) and answers with one [`UsageReport`]. The agent's daily timer
//! does the same from `/etc/clou/usage.json` and keeps the report as
//! `/var/lib/clou/usage/YYYY-MM-DD.json`, which a later
//! [`UsageRequest`] with `date` fetches.

use serde::{Deserialize, Serialize};

/// What to measure on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRequest {
    /// One item per tenant of the host's applications.
    #[serde(default)]
    pub items: Vec<UsageItem>,
    /// Instead of measuring now: the stored report of that day
    /// (`YYYY-MM-DD`), if the host has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// One tenant of one application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageItem {
    /// The row of the table ("Nextcloud").
    pub service: String,
    /// The application (role) name.
    pub app: String,
    pub tenant: String,
    /// Archived tenants are not counted as accounts; their data still is.
    pub active: bool,
    /// Command whose output (a whole number) is the tenant's user count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// Paths whose disk usage is the tenant's data.
    #[serde(default)]
    pub data: Vec<String>,
}

/// One host's measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// The host's own name (`hostname`).
    pub hostname: String,
    /// When the measures were taken, RFC 3339 UTC.
    pub taken_at: String,
    /// The day they count for (`YYYY-MM-DD`, UTC).
    pub date: String,
    /// One per requested item, in the same order.
    pub measures: Vec<UsageMeasure>,
    /// Set when a stored report was asked and the host has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// One tenant's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageMeasure {
    pub service: String,
    pub app: String,
    pub tenant: String,
    pub active: bool,
    /// `None` when the role declares no users command, or it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
    /// Bytes on disk under the data paths (each inode counted once).
    pub data_bytes: u64,
    /// What went wrong measuring, if anything (the rest still counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}
