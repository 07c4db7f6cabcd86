//! The `backup` probe: how old the last successful backup is.
//!
//! A role that sets up a backup job declares the marker file its job
//! touches when it succeeds (inventory var `health_backups`); a marker that
//! grows old means backups silently stopped, which is found out only on the
//! day a restore is needed.

use std::path::Path;
use std::time::SystemTime;

use clou_protocol::health::{Finding, Severity};

use super::{Probe, ProbeCtx};

/// The `backup` probe.
#[derive(Debug, Clone, Copy)]
pub struct Backups;

impl Probe for Backups {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        let now = SystemTime::now();
        ctx.settings
            .backups
            .iter()
            .map(|marker| {
                let subject = format!("backup {}", marker.name);
                match ctx.sys.modified(Path::new(&marker.path)) {
                    Ok(Some(when)) => {
                        let hours = now
                            .duration_since(when)
                            .map(|d| d.as_secs() / 3600)
                            .unwrap_or(0);
                        let severity = if hours >= marker.crit_hours {
                            Severity::Crit
                        } else if hours >= marker.warn_hours {
                            Severity::Warn
                        } else {
                            Severity::Ok
                        };
                        Finding::new(
                            "backup",
                            subject,
                            severity,
                            format!(
                                "last successful backup of {} {hours} hours ago ({})",
                                marker.name, marker.path
                            ),
                        )
                        .fact("age_hours", hours)
                    }
                    Ok(None) => Finding::new(
                        "backup",
                        subject,
                        Severity::Crit,
                        format!(
                            "no successful backup of {} recorded: {} does not exist",
                            marker.name, marker.path
                        ),
                    ),
                    Err(err) => Finding::new(
                        "backup",
                        subject,
                        Severity::Unknown,
                        format!("cannot read {}: {err}", marker.path),
                    ),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::disks::Disks;
    use crate::system::Host;
    use clou_protocol::health::{BackupMarker, CheckSettings};

    #[test]
    fn a_fresh_marker_is_ok_an_old_or_missing_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, "").unwrap();
        let old = dir.path().join("old");
        std::fs::write(&old, "").unwrap();
        // Two days and a bit ago, set with touch as a backup script would.
        let status = std::process::Command::new("touch")
            .args(["-d", "-50 hours"])
            .arg(&old)
            .status()
            .unwrap();
        assert!(status.success());
        let marker = |name: &str, path: &Path| BackupMarker {
            name: name.into(),
            path: path.display().to_string(),
            warn_hours: 26,
            crit_hours: 50,
        };
        let settings = CheckSettings {
            backups: vec![
                marker("fresh", &fresh),
                marker("old", &old),
                marker("never", &dir.path().join("none")),
            ],
            ..CheckSettings::default()
        };
        let disks = Disks::default();
        let ctx = ProbeCtx {
            sys: &Host,
            settings: &settings,
            disks: &disks,
        };
        let found: Vec<Severity> = Backups.run(&ctx).iter().map(|f| f.severity).collect();
        assert_eq!(found, [Severity::Ok, Severity::Crit, Severity::Crit]);
    }
}
