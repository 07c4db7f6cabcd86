//! Rolling changes: hosts in batches, each batch judged by a health gate
//! before the next one starts: which hosts go together, when to stop,
//! what the gate makes of two health reports (pure), and the gate itself
//! (asking a host's health until it has no new critical finding).

use std::str::FromStr;

use std::time::{Duration, Instant};

use clou_protocol::health::CheckSettings;
use clou_protocol::{Finding, HealthReport, Severity};

use crate::remote::Link;

/// How many hosts go at once: a count, or a share of the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    Count(usize),
    Percent(u8),
}

impl FromStr for Serial {
    type Err = String;

    fn from_str(text: &str) -> Result<Serial, String> {
        let bad = || {
            format!(
                "--serial {text:?}: give a number of hosts (`1`, `2`) or a share of them \
                 (`25%`)"
            )
        };
        match text.trim().strip_suffix('%') {
            Some(percent) => match percent.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Ok(Serial::Percent(p)),
                _ => Err(bad()),
            },
            None => match text.trim().parse::<usize>() {
                Ok(n @ 1..) => Ok(Serial::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl Serial {
    /// Hosts per batch out of `total` (a share rounds up: 25% of 6 is 2).
    pub fn size(self, total: usize) -> usize {
        match self {
            Serial::Count(n) => n,
            Serial::Percent(p) => (total * p as usize).div_ceil(100),
        }
        .max(1)
    }
}

/// The items in batches of `serial`, in order.
pub fn batches<T: Clone>(items: &[T], serial: Serial) -> Vec<Vec<T>> {
    items
        .chunks(serial.size(items.len()))
        .map(<[T]>::to_vec)
        .collect()
}

/// Whether the rollout stops: more hosts failed than tolerated.
pub fn must_stop(failed: usize, max_fail: usize) -> bool {
    failed > max_fail
}

/// Critical findings of `after` that were not critical in `before`: what
/// the change broke. Things broken already are not the change's doing.
pub fn new_criticals<'a>(before: &HealthReport, after: &'a HealthReport) -> Vec<&'a Finding> {
    let was_critical = |f: &Finding| {
        before
            .findings
            .iter()
            .any(|b| b.probe == f.probe && b.subject == f.subject && b.severity == Severity::Crit)
    };
    after
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Crit && !was_critical(f))
        .collect()
}

/// Critical findings about services and HTTP checks before the change: a
/// host whose service is already down cannot be told healthy afterwards,
/// so the rollout does not start on it.
pub fn unhealthy_services(before: &HealthReport) -> Vec<&Finding> {
    before
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Crit && matches!(f.probe.as_str(), "systemd" | "http"))
        .collect()
}

/// Waits `settle`, then asks the host's health until nothing is critical
/// that was not before the change, for at most `timeout`.
pub async fn gate(
    link: &mut Link,
    settings: &CheckSettings,
    baseline: &HealthReport,
    settle: Duration,
    timeout: Duration,
) -> Result<(), String> {
    tokio::time::sleep(settle).await;
    let started = Instant::now();
    loop {
        let health = link.health(settings).await?;
        let new = new_criticals(baseline, &health);
        if new.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "still critical {} s after the change: {}",
                (settle + started.elapsed()).as_secs(),
                describe(&new)
            ));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Findings in words, each with its last log lines when it has them.
pub fn describe(findings: &[&Finding]) -> String {
    findings
        .iter()
        .map(|f| match f.facts.get("log") {
            Some(log) => format!(
                "{}\n  last log lines of {}:\n    {}",
                f.message,
                f.subject,
                log.lines().collect::<Vec<_>>().join("\n    ")
            ),
            None => f.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_is_a_count_or_a_share() {
        assert_eq!("1".parse(), Ok(Serial::Count(1)));
        assert_eq!("25%".parse(), Ok(Serial::Percent(25)));
        for bad in ["0", "0%", "101%", "-1", "two", ""] {
            let err = bad.parse::<Serial>().unwrap_err();
            assert!(err.contains("number of hosts"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_share_rounds_up_and_never_gives_empty_batches() {
        assert_eq!(Serial::Percent(25).size(6), 2);
        assert_eq!(Serial::Percent(1).size(8), 1);
        assert_eq!(Serial::Percent(100).size(8), 8);
        assert_eq!(Serial::Count(3).size(2), 3);
        let hosts = ["a", "b", "c", "d", "e"];
        assert_eq!(
            batches(&hosts, Serial::Count(2)),
            vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]
        );
        assert_eq!(batches(&hosts, Serial::Percent(50)).len(), 2);
        assert!(batches::<&str>(&[], Serial::Count(1)).is_empty());
    }

    #[test]
    fn the_rollout_stops_past_the_tolerance() {
        assert!(!must_stop(0, 0));
        assert!(must_stop(1, 0));
        assert!(!must_stop(1, 1));
    }

    fn report(findings: &[(&str, &str, Severity)]) -> HealthReport {
        HealthReport {
            findings: findings
                .iter()
                .map(|(probe, subject, sev)| Finding::new(probe, *subject, *sev, "m"))
                .collect(),
            hostname: "h".into(),
            millis: 0,
        }
    }

    #[test]
    fn only_what_became_critical_fails_the_gate() {
        let before = report(&[
            ("smart", "/dev/sda", Severity::Crit),
            ("systemd", "nginx.service", Severity::Ok),
            ("filesystem", "/", Severity::Warn),
        ]);
        let after = report(&[
            ("smart", "/dev/sda", Severity::Crit),
            ("systemd", "nginx.service", Severity::Crit),
            ("filesystem", "/", Severity::Crit),
            ("systemd", "new.service", Severity::Warn),
        ]);
        let new: Vec<&str> = new_criticals(&before, &after)
            .iter()
            .map(|f| f.subject.as_str())
            .collect();
        assert_eq!(new, ["nginx.service", "/"]);
        assert!(new_criticals(&after, &after).is_empty());
    }

    #[test]
    fn a_service_down_before_the_change_blocks_the_host() {
        let before = report(&[
            ("smart", "/dev/sda", Severity::Crit),
            ("systemd", "nginx.service", Severity::Crit),
            ("http", "https://a.example/", Severity::Ok),
        ]);
        let blocking: Vec<&str> = unhealthy_services(&before)
            .iter()
            .map(|f| f.subject.as_str())
            .collect();
        assert_eq!(blocking, ["nginx.service"]);
    }
}
