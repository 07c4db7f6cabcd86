//! Metrics of the last check in Prometheus text exposition format, for
//! node_exporter's textfile collector (`--collector.textfile.directory`).
//!
//! Written to a temporary file in the same directory and renamed, so that
//! node_exporter never reads half a file. Names follow Prometheus'
//! conventions: a `clou_` prefix, base units, `_seconds` for durations.

use std::fmt::Write as _;
use std::path::Path;

use clou_protocol::health::{HealthReport, Severity};

/// The exposition text of a report; `now` is the Unix time of the check.
pub fn render(report: &HealthReport, now: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP clou_health_severity Severity of each finding of the last check (0 ok, 1 unknown, 2 warn, 3 crit).\n\
         # TYPE clou_health_severity gauge"
    );
    for f in &report.findings {
        let _ = writeln!(
            out,
            "clou_health_severity{{probe=\"{}\",subject=\"{}\"}} {}",
            escape(&f.probe),
            escape(&f.subject),
            level(f.severity)
        );
    }
    let _ = writeln!(
        out,
        "# HELP clou_health_fact Numeric figures of the last check's findings (reallocated sectors, percent used...).\n\
         # TYPE clou_health_fact gauge"
    );
    for f in &report.findings {
        for (name, value) in &f.facts {
            if let Ok(number) = value.parse::<f64>() {
                let _ = writeln!(
                    out,
                    "clou_health_fact{{probe=\"{}\",subject=\"{}\",fact=\"{}\"}} {number}",
                    escape(&f.probe),
                    escape(&f.subject),
                    escape(name)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP clou_health_check_duration_seconds How long the last check took.\n\
         # TYPE clou_health_check_duration_seconds gauge\n\
         clou_health_check_duration_seconds {}\n\
         # HELP clou_health_last_check_timestamp_seconds When the last check ran (Unix time).\n\
         # TYPE clou_health_last_check_timestamp_seconds gauge\n\
         clou_health_last_check_timestamp_seconds {now}",
        report.millis as f64 / 1000.0
    );
    out
}

fn level(severity: Severity) -> u8 {
    match severity {
        Severity::Ok => 0,
        Severity::Unknown => 1,
        Severity::Warn => 2,
        Severity::Crit => 3,
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `clou.prom` in `dir` atomically.
pub fn write(dir: &Path, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(".clou.prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join("clou.prom"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clou_protocol::health::Finding;

    #[test]
    fn findings_become_gauges_with_escaped_labels() {
        let report = HealthReport {
            hostname: "web".into(),
            findings: vec![
                Finding::new("smart", "/dev/sdb", Severity::Crit, "failing")
                    .fact("reallocated", 1040)
                    .fact("model", "HGST"),
                Finding::new("systemd", "a\"b", Severity::Ok, "fine"),
            ],
            millis: 24,
        };
        let text = render(&report, 1_795_615_387);
        assert!(
            text.contains("clou_health_severity{probe=\"smart\",subject=\"/dev/sdb\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("clou_health_severity{probe=\"systemd\",subject=\"a\\\"b\"} 0\n"),
            "{text}"
        );
        assert!(text.contains(
            "clou_health_fact{probe=\"smart\",subject=\"/dev/sdb\",fact=\"reallocated\"} 1040\n"
        ));
        assert!(!text.contains("fact=\"model\""), "only numbers are metrics");
        assert!(text.contains("clou_health_check_duration_seconds 0.024\n"));
        assert!(text.ends_with("clou_health_last_check_timestamp_seconds 1795615387\n"));
    }
}
