//! Measuring the tenants' usage: users (a command the role declares) and
//! data (disk usage of the paths it declares), for `clou usage` and the
//! daily snapshot timer (`clou-agent usage`).
//!
//! Reports are kept as `STATE_DIR/usage/YYYY-MM-DD.json`, one per day (a
//! later measure the same day replaces it), so that the controller can
//! print the table of any past day the host measured.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clou_protocol::usage::{UsageItem, UsageMeasure, UsageReport, UsageRequest};

use crate::clock;
use crate::system::{Cmd, Perms, System};

/// How long a users command may run (a count query on a big database).
const USERS_TIMEOUT: Duration = Duration::from_secs(120);

/// Measures every item now.
pub fn measure(sys: &dyn System, items: &[UsageItem], hostname: &str) -> UsageReport {
    let now = SystemTime::now();
    let measures = items.iter().map(|item| measure_one(sys, item)).collect();
    UsageReport {
        hostname: hostname.to_owned(),
        taken_at: clock::rfc3339(now),
        date: clock::rfc3339(now)[..10].to_owned(),
        measures,
        missing: None,
    }
}

fn measure_one(sys: &dyn System, item: &UsageItem) -> UsageMeasure {
    let mut errors = Vec::new();
    let users = item
        .users
        .as_ref()
        .and_then(|argv| match count_users(sys, argv) {
            Ok(n) => Some(n),
            Err(why) => {
                errors.push(format!("users: {why}"));
                None
            }
        });
    let mut seen = BTreeSet::new();
    let mut data_bytes = 0;
    for path in &item.data {
        match disk_usage(Path::new(path), &mut seen) {
            Ok(bytes) => data_bytes += bytes,
            Err(why) => errors.push(format!("data {path}: {why}")),
        }
    }
    UsageMeasure {
        service: item.service.clone(),
        app: item.app.clone(),
        tenant: item.tenant.clone(),
        active: item.active,
        users,
        data_bytes,
        errors,
    }
}

/// Runs the users command: its last non-empty line must be a whole number.
fn count_users(sys: &dyn System, argv: &[String]) -> Result<u64, String> {
    let mut cmd = Cmd::new(argv.iter().cloned());
    cmd.timeout = Some(USERS_TIMEOUT);
    let out = sys
        .run(&cmd)
        .map_err(|e| format!("cannot run {}: {e}", argv.join(" ")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.code != Some(0) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.code
                .map_or("killed".to_owned(), |c| format!("exit {c}")),
            stderr.trim().lines().last().unwrap_or("")
        ));
    }
    let last = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    last.parse()
        .map_err(|_| format!("`{}` printed {last:?}, not a whole number", argv.join(" ")))
}

/// Bytes allocated on disk under `path` (as `du` counts them: blocks, each
/// inode once, symbolic links not followed). A missing path is 0: a tenant
/// with no data yet.
pub fn disk_usage(path: &Path, seen: &mut BTreeSet<(u64, u64)>) -> Result<u64, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err.to_string()),
    };
    let mut total = 0;
    let mut todo: Vec<(PathBuf, std::fs::Metadata)> = vec![(path.to_owned(), meta)];
    let mut unreadable = 0;
    while let Some((path, meta)) = todo.pop() {
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if !meta.is_dir() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&path) else {
            unreadable += 1;
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata() {
                todo.push((entry.path(), meta));
            }
        }
    }
    if unreadable > 0 {
        return Err(format!(
            "{unreadable} directories could not be read; {total} bytes counted"
        ));
    }
    Ok(total)
}

/// Where the report of `date` is kept.
pub fn snapshot_path(state_dir: &Path, date: &str) -> PathBuf {
    state_dir.join("usage").join(format!("{date}.json"))
}

/// Keeps a report as its day's snapshot (root-only, atomically).
pub fn store(sys: &dyn System, state_dir: &Path, report: &UsageReport) -> std::io::Result<()> {
    let dir = state_dir.join("usage");
    std::fs::create_dir_all(&dir)?;
    let text = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let perms = Perms {
        uid: 0,
        gid: 0,
        mode: 0o600,
    };
    sys.write_atomic(&snapshot_path(state_dir, &report.date), &text, perms)
}

/// Answers a request: the stored report of `date`, or measures taken now
/// (kept as today's snapshot too).
pub fn answer(
    sys: &dyn System,
    state_dir: &Path,
    request: &UsageRequest,
    hostname: &str,
) -> UsageReport {
    if let Some(date) = &request.date {
        let valid = date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        let stored = valid
            .then(|| std::fs::read(snapshot_path(state_dir, date)).ok())
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<UsageReport>(&bytes).ok());
        return stored.unwrap_or_else(|| UsageReport {
            hostname: hostname.to_owned(),
            taken_at: String::new(),
            date: date.clone(),
            measures: Vec::new(),
            missing: Some(format!("no usage snapshot of {date} on this host")),
        });
    }
    let report = measure(sys, &request.items, hostname);
    if let Err(err) = store(sys, state_dir, &report) {
        crate::log(&format!(
            "clou-agent usage: cannot keep the snapshot: {err}"
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::testing::Recorder;

    fn item(users: Option<&[&str]>, data: &[&Path]) -> UsageItem {
        UsageItem {
            service: "Nextcloud".into(),
            app: "nextcloud".into(),
            tenant: "amap".into(),
            active: true,
            users: users.map(|u| u.iter().map(|s| s.to_string()).collect()),
            data: data.iter().map(|p| p.display().to_string()).collect(),
        }
    }

    #[test]
    fn data_counts_blocks_once_per_inode_and_not_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("files")).unwrap();
        std::fs::write(data.join("files/a"), vec![1u8; 100_000]).unwrap();
        std::fs::hard_link(data.join("files/a"), data.join("files/b")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, vec![1u8; 1_000_000]).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        let mut seen = BTreeSet::new();
        let bytes = disk_usage(&data, &mut seen).unwrap();
        assert!((100_000..300_000).contains(&bytes), "{bytes}");
        // The same tree under two declared paths counts once.
        assert_eq!(disk_usage(&data.join("files"), &mut seen).unwrap(), 0);
        let mut seen = BTreeSet::new();
        assert_eq!(disk_usage(&dir.path().join("none"), &mut seen).unwrap(), 0);
    }

    #[test]
    fn users_come_from_the_commands_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let sys = Recorder::new();
        sys.reply(&["count"], 0, "header\n 42 \n\n");
        let m = measure_one(&sys, &item(Some(&["count"]), &[dir.path()]));
        assert_eq!(m.users, Some(42));
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        let sys = Recorder::new();
        sys.reply(&["count"], 0, "forty\n");
        let m = measure_one(&sys, &item(Some(&["count"]), &[]));
        assert_eq!(m.users, None);
        assert!(
            m.errors[0].contains("printed \"forty\", not a whole number"),
            "{:?}",
            m.errors
        );
        let sys = Recorder::new();
        sys.reply(&["count"], 2, "");
        let m = measure_one(&sys, &item(Some(&["count"]), &[]));
        assert!(m.errors[0].contains("failed (exit 2)"), "{:?}", m.errors);
    }

    #[test]
    fn a_report_is_kept_per_day_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let sys = crate::system::Host;
        let report = answer(
            &sys,
            dir.path(),
            &UsageRequest {
                items: vec![item(None, &[dir.path()])],
                date: None,
            },
            "cloud",
        );
        assert_eq!(report.measures.len(), 1);
        let path = snapshot_path(dir.path(), &report.date);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let again = answer(
            &sys,
            dir.path(),
            &UsageRequest {
                items: vec![],
                date: Some(report.date.clone()),
            },
            "cloud",
        );
        assert_eq!(again, report);
        let none = answer(
            &sys,
            dir.path(),
            &UsageRequest {
                items: vec![],
                date: Some("1999-01-01".into()),
            },
            "cloud",
        );
        assert!(none.missing.is_some());
        let bad = answer(
            &sys,
            dir.path(),
            &UsageRequest {
                items: vec![],
                date: Some("../../etc/x".into()),
            },
            "cloud",
        );
        assert!(bad.missing.is_some());
    }
}
