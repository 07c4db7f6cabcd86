//! The `tls` probe: days until the TLS certificates listed in the inventory
//! expire.
//!
//! The dates come from `openssl x509 -enddate` (openssl is on every server
//! that serves TLS); a certificate that expires takes the service down for
//! every user at once, which is why it is watched weeks ahead.

use std::time::SystemTime;

use clou_protocol::health::{Finding, Severity};

use super::{Probe, ProbeCtx};
use crate::clock;
use crate::system::Cmd;

/// The `tls` probe.
#[derive(Debug, Clone, Copy)]
pub struct Certificates;

/// Seconds since the epoch of openssl's `notAfter=Nov 30 04:09:00 2026 GMT`.
pub fn not_after(output: &str) -> Option<i64> {
    let line = output.lines().find_map(|l| l.strip_prefix("notAfter="))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let (month, day, time, year) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| m == month)? as u32 + 1;
    let day: u32 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    Some(clock::days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// The subject line of openssl's output, for messages.
fn subject(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl Probe for Certificates {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        let t = &ctx.settings.thresholds;
        let now = clock::unix(SystemTime::now());
        let mut findings = Vec::new();
        for path in &ctx.settings.certificates {
            let cmd = Cmd::new([
                "openssl", "x509", "-noout", "-enddate", "-subject", "-in", path,
            ])
            .env("LC_ALL", "C");
            let finding = match ctx.sys.run(&cmd) {
                Err(_) => Finding::new(
                    "tls",
                    path.clone(),
                    Severity::Unknown,
                    format!("cannot check {path}: openssl is not installed (apt install openssl)"),
                ),
                Ok(out) if !out.success() => Finding::new(
                    "tls",
                    path.clone(),
                    Severity::Crit,
                    format!("{path} is missing or not a certificate: {}", out.tail()),
                ),
                Ok(out) => {
                    let text = out.stdout_text();
                    match not_after(&text) {
                        None => Finding::new(
                            "tls",
                            path.clone(),
                            Severity::Unknown,
                            format!("cannot read the expiry date of {path}"),
                        ),
                        Some(end) => {
                            let days = (end - now).div_euclid(86_400);
                            let severity = if days < t.cert_crit_days {
                                Severity::Crit
                            } else if days < t.cert_warn_days {
                                Severity::Warn
                            } else {
                                Severity::Ok
                            };
                            let who = subject(&text);
                            let message = if days < 0 {
                                format!(
                                    "{path} ({who}) EXPIRED {} days ago: browsers refuse the site",
                                    -days
                                )
                            } else {
                                format!("{path} ({who}) expires in {days} days")
                            };
                            Finding::new("tls", path.clone(), severity, message)
                                .fact("days_left", days)
                                .fact("subject", who)
                        }
                    }
                }
            };
            findings.push(finding);
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::disks::Disks;
    use crate::system::Host;
    use clou_protocol::health::CheckSettings;

    #[test]
    fn dates_parse_like_openssl_writes_them() {
        // `openssl x509 -noout -enddate` of a certificate made with
        // `openssl req -x509 -days 5` on 2026-11-25.
        let end =
            not_after("notAfter=Nov 30 04:09:00 2026 GMT\nsubject=CN = wiki.girofle.example.org\n")
                .unwrap();
        assert_eq!(
            end,
            clock::days_from_civil(2026, 11, 30) * 86_400 + 4 * 3600 + 9 * 60
        );
        assert_eq!(
            not_after("notAfter=Feb  3 00:00:00 2027 GMT"),
            Some(clock::days_from_civil(2027, 2, 3) * 86_400)
        );
        assert_eq!(not_after("garbage"), None);
    }

    /// Real certificates, made by openssl for the test.
    fn certificate(dir: &std::path::Path, name: &str, days: u32) -> String {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ed25519",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
            ])
            .arg("-days")
            .arg(days.to_string())
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        cert.display().to_string()
    }

    #[test]
    fn certificates_close_to_expiry_warn_then_turn_critical() {
        let dir = tempfile::tempdir().unwrap();
        let settings = CheckSettings {
            certificates: vec![
                certificate(dir.path(), "far", 90),
                certificate(dir.path(), "soon", 15),
                certificate(dir.path(), "now", 3),
                dir.path().join("missing.pem").display().to_string(),
            ],
            ..CheckSettings::default()
        };
        let disks = Disks::default();
        let ctx = ProbeCtx {
            sys: &Host,
            settings: &settings,
            disks: &disks,
        };
        let found: Vec<Severity> = Certificates.run(&ctx).iter().map(|f| f.severity).collect();
        assert_eq!(
            found,
            [Severity::Ok, Severity::Warn, Severity::Crit, Severity::Crit]
        );
    }
}
