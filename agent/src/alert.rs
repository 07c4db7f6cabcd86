//! Alerts from `clou-agent check`: one message when the host's health
//! changes, none while it stays the same.
//!
//! The last findings are kept in `STATE_DIR/health-state.json`. A check
//! compares the new findings with them, by probe and subject: a new
//! warning or critical finding, or one that got worse, is a problem; one
//! that went back to ok (or disappeared) is a recovery. All changes of one
//! check make one message. Messages that could not be posted stay in the
//! state file and are posted first at the next check: never lost, never
//! blocking the check (the post has a timeout).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clou_protocol::health::{HealthReport, Severity};
use serde::{Deserialize, Serialize};

/// What the last check saw, and what is still to be posted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// `probe subject` -> (severity, message) of the last check.
    pub findings: BTreeMap<String, (Severity, String)>,
    /// Messages not posted yet, oldest first.
    pub pending: Vec<String>,
}

impl State {
    /// Reads the state; a missing or unreadable file is a first check.
    pub fn load(path: &Path) -> State {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the state atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
    }
}

/// How many unposted messages are kept: at the timer's pace (a check every
/// 10 minutes), 16 hours of a change at every check, longer than a
/// webhook's outage should last.
pub const MAX_PENDING: usize = 100;

/// Drops the oldest pending messages beyond [`MAX_PENDING`]; returns how
/// many.
pub fn bound(pending: &mut Vec<String>) -> usize {
    let over = pending.len().saturating_sub(MAX_PENDING);
    pending.drain(..over);
    over
}

/// The findings of a report, keyed as in [`State`].
pub fn snapshot(report: &HealthReport) -> BTreeMap<String, (Severity, String)> {
    report
        .findings
        .iter()
        .map(|f| {
            (
                format!("{} {}", f.probe, f.subject),
                (f.severity, f.message.clone()),
            )
        })
        .collect()
}

/// The alert lines for going from `before` to `after`, worst first; empty
/// when nothing changed that matters.
pub fn changes(
    before: &BTreeMap<String, (Severity, String)>,
    after: &BTreeMap<String, (Severity, String)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut recoveries = Vec::new();
    for (key, (severity, message)) in after {
        if *severity < Severity::Warn {
            continue;
        }
        let was = before.get(key).map(|(s, _)| *s).unwrap_or(Severity::Ok);
        if *severity > was {
            problems.push((*severity, format!("{} {key}: {message}", severity.label())));
        }
    }
    for (key, (severity, message)) in before {
        if *severity < Severity::Warn {
            continue;
        }
        let now = after.get(key).map(|(s, _)| *s).unwrap_or(Severity::Ok);
        if now <= Severity::Ok {
            let how = after
                .get(key)
                .map(|(_, m)| m.as_str())
                .unwrap_or(message.as_str());
            recoveries.push(format!("recovered {key}: {how}"));
        }
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    problems
        .into_iter()
        .map(|(_, line)| line)
        .chain(recoveries)
        .collect()
}

/// One message for a host's changes (Markdown, as Mattermost shows it).
pub fn message(host: &str, lines: &[String]) -> String {
    let mut text = format!("**{host}**: health changed\n");
    for line in lines {
        text.push_str(&format!("- {line}\n"));
    }
    text
}

/// Posts `text` to a Mattermost/Slack incoming webhook. The error never
/// contains the URL (it holds the webhook's secret key).
pub fn post(url: &str, text: &str) -> Result<(), String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let body = serde_json::json!({ "text": text }).to_string();
    match agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.as_str())
    {
        Ok(_) => Ok(()),
        Err(ureq::Error::StatusCode(code)) => Err(format!("the webhook answered HTTP {code}")),
        Err(err) => Err(format!(
            "the webhook could not be reached ({})",
            err.to_string().replace(url, "<webhook>")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_messages_are_bounded_dropping_the_oldest() {
        let mut pending: Vec<String> = (0..MAX_PENDING + 3).map(|i| i.to_string()).collect();
        assert_eq!(bound(&mut pending), 3);
        assert_eq!(pending.len(), MAX_PENDING);
        assert_eq!(pending.first().map(String::as_str), Some("3"));
        assert_eq!(bound(&mut pending), 0);
    }

    fn state(entries: &[(&str, Severity)]) -> BTreeMap<String, (Severity, String)> {
        entries
            .iter()
            .map(|(k, s)| (k.to_string(), (*s, format!("{k} is {}", s.label()))))
            .collect()
    }

    #[test]
    fn a_new_problem_alerts_once_and_its_recovery_once() {
        let ok = state(&[("systemd nginx.service", Severity::Ok)]);
        let down = state(&[("systemd nginx.service", Severity::Crit)]);
        assert_eq!(
            changes(&ok, &down),
            ["CRIT systemd nginx.service: systemd nginx.service is CRIT"]
        );
        assert!(
            changes(&down, &down).is_empty(),
            "no repeat for an unchanged problem"
        );
        assert_eq!(
            changes(&down, &ok),
            ["recovered systemd nginx.service: systemd nginx.service is ok"]
        );
    }

    #[test]
    fn worse_alerts_better_but_still_bad_does_not() {
        let warn = state(&[("filesystem /srv", Severity::Warn)]);
        let crit = state(&[("filesystem /srv", Severity::Crit)]);
        assert_eq!(changes(&warn, &crit).len(), 1);
        assert!(changes(&crit, &warn).is_empty());
        // A problem whose finding disappears (a disk pulled) recovers.
        assert_eq!(changes(&crit, &BTreeMap::new()).len(), 1);
        // A first check with problems alerts; unknowns never do.
        let unknown = state(&[("smart /dev/vda", Severity::Unknown)]);
        assert!(changes(&BTreeMap::new(), &unknown).is_empty());
    }
}
