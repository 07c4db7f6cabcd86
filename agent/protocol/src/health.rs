//! Health: what the controller asks the agent to look at, and what the
//! agent found. Read-only: a health check changes nothing on the host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Ok < Unknown < Warn < Crit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Looked, and it is fine.
    Ok,
    /// Could not look (no SMART on a virtual disk, a tool missing...): not
    /// fine, not known to be broken either.
    Unknown,
    /// Needs a look soon.
    Warn,
    /// Needs action now: data or service at risk.
    Crit,
}

impl Severity {
    /// As shown in tables.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Unknown => "unknown",
            Severity::Warn => "WARN",
            Severity::Crit => "CRIT",
        }
    }
}

/// One thing a probe says about one thing on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// The probe: `smart`, `mdraid`, `btrfs`, `filesystem`, `systemd`,
    /// `system`, `tls`, `backup`.
    pub probe: String,
    /// What it is about, stable across checks (so that alerts compare like
    /// with like): `/dev/sda`, `md0`, `/srv`, `nginx.service`...
    pub subject: String,
    pub severity: Severity,
    /// In plain words, for a person: what is wrong and what it means.
    pub message: String,
    /// Identity and figures: model, serial, capacity, by-id path, used by,
    /// attribute values... (shown by `clou status HOST`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
}

impl Finding {
    /// A finding without facts.
    pub fn new(
        probe: &str,
        subject: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            probe: probe.to_owned(),
            subject: subject.into(),
            severity,
            message: message.into(),
            facts: BTreeMap::new(),
        }
    }

    /// Adds a fact.
    pub fn fact(mut self, key: &str, value: impl ToString) -> Finding {
        self.facts.insert(key.to_owned(), value.to_string());
        self
    }
}

/// What to check and against which limits. Every field has a documented
/// default, so an empty request checks everything with the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckSettings {
    pub thresholds: Thresholds,
    /// Services the host's roles declare: each is reported (active, since
    /// when, restarts), and one that is not running is critical.
    pub services: Vec<String>,
    /// TLS certificate files (PEM) whose expiry to watch.
    pub certificates: Vec<String>,
    /// Files a successful backup touches, with how old they may get.
    pub backups: Vec<BackupMarker>,
    /// smartctl to run (tests replay recorded outputs through a script).
    pub smartctl: String,
    /// Pages the host's roles serve: each must answer 2xx or 3xx.
    pub http: Vec<HttpCheck>,
}

/// A page the host serves, asked of the host itself: the name in the URL
/// is resolved to 127.0.0.1 (`curl --resolve`), so the check says whether
/// this host serves it, whatever DNS says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// `https://cloud.example.org/status.php`.
    pub url: String,
    /// Do not verify the certificate (a self-signed one in the lab).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Seconds the answer may take (default 10).
    #[serde(default = "default_http_timeout")]
    pub timeout_secs: u64,
}

fn default_http_timeout() -> u64 {
    10
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            thresholds: Thresholds::default(),
            services: Vec::new(),
            certificates: Vec::new(),
            backups: Vec::new(),
            smartctl: "smartctl".to_owned(),
            http: Vec::new(),
        }
    }
}

/// A backup marker file and how old it may get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupMarker {
    /// What is backed up, in words (`nextcloud data`).
    pub name: String,
    /// A file the backup job touches (or writes) when it succeeds.
    pub path: String,
    /// Hours after which a missing new backup is a warning (default 26:
    /// a daily job, with slack).
    #[serde(default = "default_backup_warn")]
    pub warn_hours: u64,
    /// Hours after which it is critical (default 50: two missed days).
    #[serde(default = "default_backup_crit")]
    pub crit_hours: u64,
}

fn default_backup_warn() -> u64 {
    26
}

fn default_backup_crit() -> u64 {
    50
}

/// Limits, with their defaults and where each comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Filesystem use, percent (defaults 85 / 95: the usual Nagios
    /// check_disk style limits; ext4 reserves 5 % for root anyway).
    pub fs_warn_percent: f64,
    pub fs_crit_percent: f64,
    /// Inode use, percent (same defaults).
    pub inode_warn_percent: f64,
    pub inode_crit_percent: f64,
    /// 15-minute load per CPU (defaults 2 / 4).
    pub load_warn_per_cpu: f64,
    pub load_crit_per_cpu: f64,
    /// Available memory, percent of total (defaults 10 / 5).
    pub mem_warn_available_percent: f64,
    pub mem_crit_available_percent: f64,
    /// NVMe percentage_used (endurance consumed; defaults 80 / 95).
    pub nvme_used_warn_percent: u64,
    pub nvme_used_crit_percent: u64,
    /// Days before a certificate expires (defaults 21 / 7: Let's Encrypt
    /// renews at 30 days left, so 21 means renewal has failed for 9 days).
    pub cert_warn_days: i64,
    pub cert_crit_days: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            fs_warn_percent: 85.0,
            fs_crit_percent: 95.0,
            inode_warn_percent: 85.0,
            inode_crit_percent: 95.0,
            load_warn_per_cpu: 2.0,
            load_crit_per_cpu: 4.0,
            mem_warn_available_percent: 10.0,
            mem_crit_available_percent: 5.0,
            nvme_used_warn_percent: 80,
            nvme_used_crit_percent: 95,
            cert_warn_days: 21,
            cert_crit_days: 7,
        }
    }
}

/// What `clou-agent check` (run by a systemd timer on the host) reads from
/// `/etc/clou/check.json`, which the base role writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// The host's name in alerts.
    pub host: String,
    /// What to check, as for `clou status`.
    #[serde(default)]
    pub settings: CheckSettings,
    /// Services the host's roles keep running (added to
    /// `settings.services`).
    #[serde(default)]
    pub services: Vec<String>,
    /// Pages the host's roles serve (added to `settings.http`).
    #[serde(default)]
    pub http: Vec<HttpCheck>,
    /// A Mattermost (or Slack-compatible) incoming webhook URL. It is a
    /// secret: never logged, never in an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// node_exporter's textfile collector directory, where `clou.prom` is
    /// written (none: no metrics file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textfile_dir: Option<String>,
}

/// The controller's request for a health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[serde(default)]
    pub settings: CheckSettings,
}

/// What the agent found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    /// The host's own name (`hostname`), as a cross-check.
    pub hostname: String,
    /// Every finding, ok ones included, probe by probe.
    pub findings: Vec<Finding>,
    /// How long the check took.
    pub millis: u64,
}

impl HealthReport {
    /// The worst severity found (`Ok` when there is nothing).
    pub fn worst(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_from_ok_to_crit() {
        assert!(Severity::Ok < Severity::Unknown);
        assert!(Severity::Unknown < Severity::Warn);
        assert!(Severity::Warn < Severity::Crit);
    }

    #[test]
    fn an_empty_request_gets_every_default() {
        let req: CheckRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(req.settings, CheckSettings::default());
        assert_eq!(req.settings.thresholds.fs_warn_percent, 85.0);
        assert_eq!(req.settings.smartctl, "smartctl");
    }
}
