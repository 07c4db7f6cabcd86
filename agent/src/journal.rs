//! The host's journal of changes: `STATE_DIR/journal.jsonl`.
//!
//! One JSON line per resource that changed, appended as it happens, so that
//! an admin on the host can answer "what did clou change here, when, and who
//! ran it" with `tail` or `jq`, even for a run that died halfway. Change
//! lines come from the resource kinds, which never put a secret in them
//! (sensitive content is reported as "changed", without value or hash).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One journal line.
#[derive(Debug, Clone, Serialize)]
pub struct Entry<'a> {
    pub time: String,
    pub run_id: &'a str,
    pub admin: &'a str,
    pub role: &'a str,
    pub resource: &'a str,
    pub kind: &'a str,
    pub status: clou_protocol::Status,
    pub changes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// The journal file of a host.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal in `dir`.
    pub fn new(dir: &Path) -> Journal {
        Journal {
            path: dir.join("journal.jsonl"),
        }
    }

    /// Appends one entry. Each line is one `write` on an `O_APPEND` file,
    /// so lines never interleave.
    pub fn append(&self, entry: &Entry<'_>) -> std::io::Result<()> {
        self.append_value(&serde_json::to_value(entry)?)
    }

    /// Appends any JSON value as one line (run start and end marks).
    pub fn append_value(&self, value: &serde_json::Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Appends an event line (`time`, `run_id`, `admin`, `event` and the
    /// fields of `extra`); a journal that cannot be written is said on
    /// stderr, not fatal: the work itself was done.
    pub fn event(&self, run_id: &str, admin: &str, event: &str, extra: serde_json::Value) {
        let mut line = serde_json::json!({
            "time": crate::clock::rfc3339(std::time::SystemTime::now()),
            "run_id": run_id,
            "admin": admin,
            "event": event,
        });
        if let (Some(map), serde_json::Value::Object(more)) = (line.as_object_mut(), extra) {
            map.extend(more);
        }
        if let Err(err) = self.append_value(&line) {
            crate::log(&format!("cannot append to {}: {err}", self.path.display()));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_json_line_per_entry() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path());
        let changes = vec!["mode 0600 -> 0644".to_owned()];
        for id in ["base/file:/etc/motd", "base/file:/etc/issue"] {
            journal
                .append(&Entry {
                    time: "2026-11-25T14:03:07Z".into(),
                    run_id: "r1",
                    admin: "camille@portable",
                    role: "base",
                    resource: id,
                    kind: "file",
                    status: clou_protocol::Status::Changed,
                    changes: &changes,
                    error: None,
                })
                .unwrap();
        }
        let text = std::fs::read_to_string(journal.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["resource"], "base/file:/etc/issue");
        assert_eq!(lines[0]["changes"][0], "mode 0600 -> 0644");
    }
}
