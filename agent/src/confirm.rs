//! Confirm-or-revert: a change that could lock the admins out (sshd's
//! configuration, the firewall's) is kept only if the controller can still
//! open a new connection afterwards and say so.
//!
//! Before such a step (`confirm: true`) changes its file, the engine keeps
//! the file as it was. At the end of the plan, [`arm`] writes what to put
//! back in `STATE_DIR/confirm/TOKEN/` and asks systemd for a timer that
//! runs `clou-agent revert TOKEN` after the plan's `confirm_secs`: the
//! revert puts the files back and runs the handlers the steps notified
//! (reload ssh, reload nftables), whatever became of the controller. A
//! [`Message::Confirm`](clou_protocol::Message::Confirm) on a new
//! connection stops the timer first ([`confirm`]).
//!
//! Confirm and revert each claim the directory by renaming it, so that
//! exactly one of them happens even if they meet.

use std::path::{Path, PathBuf};

use clou_protocol::{PendingConfirm, Step};
use serde::{Deserialize, Serialize};

use crate::journal::Journal;
use crate::resources::{self, Ctx, RunState};
use crate::system::{Cmd, Perms, System};

/// A file as it was before a confirm step changed it.
#[derive(Debug, Clone)]
pub struct Before {
    pub path: String,
    /// Content and permissions; none when the file did not exist.
    pub file: Option<(Vec<u8>, Perms)>,
}

/// Reads a file's state before a confirm step touches it.
pub fn before(sys: &dyn System, path: &str) -> Result<Before, String> {
    let p = Path::new(path);
    let stat = sys
        .stat(p)
        .map_err(|e| format!("cannot look at {path}: {e}"))?;
    let file = match stat {
        None => None,
        Some(stat) => {
            let content = sys
                .read(p)
                .map_err(|e| format!("cannot read {path}: {e}"))?
                .unwrap_or_default();
            Some((
                content,
                Perms {
                    uid: stat.uid,
                    gid: stat.gid,
                    mode: stat.mode,
                },
            ))
        }
    };
    Ok(Before {
        path: path.to_owned(),
        file,
    })
}

/// What `STATE_DIR/confirm/TOKEN/pending.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    run_id: String,
    admin: String,
    files: Vec<SavedFile>,
    /// Run after the files are back, in order.
    handlers: Vec<Step>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedFile {
    path: String,
    /// The saved copy, beside pending.json (none: the file was new).
    saved: Option<String>,
    uid: u32,
    gid: u32,
    mode: u32,
}

fn confirm_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("confirm")
}

/// A token from the run id: what a systemd unit name may hold.
fn token_of(run_id: &str) -> String {
    run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn unit_of(token: &str) -> String {
    format!("clou-revert-{token}")
}

/// Keeps the files as they were and arms the revert timer. When the timer
/// cannot be armed, the files are put back at once (a change nobody can
/// take back is not kept) and the error says so.
pub fn arm(
    sys: &dyn System,
    state_dir: &Path,
    run_id: &str,
    admin: &str,
    befores: &[Before],
    handlers: Vec<Step>,
    secs: u64,
) -> Result<PendingConfirm, String> {
    let token = token_of(run_id);
    let dir = confirm_dir(state_dir).join(&token);
    // Only root (the owner of the state directory) reads the copies.
    let owner = sys.stat(state_dir).ok().flatten();
    let secret = Perms {
        uid: owner.map_or(0, |s| s.uid),
        gid: owner.map_or(0, |s| s.gid),
        mode: 0o600,
    };
    let write = || -> Result<(), String> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut files = Vec::new();
        for (n, b) in befores.iter().enumerate() {
            let saved = match &b.file {
                Some((content, perms)) => {
                    let name = format!("{n}.saved");
                    sys.write_atomic(&dir.join(&name), content, secret)
                        .map_err(|e| format!("cannot keep a copy of {}: {e}", b.path))?;
                    files.push(SavedFile {
                        path: b.path.clone(),
                        saved: Some(name),
                        uid: perms.uid,
                        gid: perms.gid,
                        mode: perms.mode,
                    });
                    continue;
                }
                None => None,
            };
            files.push(SavedFile {
                path: b.path.clone(),
                saved,
                uid: 0,
                gid: 0,
                mode: 0,
            });
        }
        let pending = Pending {
            run_id: run_id.to_owned(),
            admin: admin.to_owned(),
            files,
            handlers: handlers.clone(),
        };
        let text = serde_json::to_vec_pretty(&pending).map_err(|e| e.to_string())?;
        sys.write_atomic(&dir.join("pending.json"), &text, secret)
            .map_err(|e| format!("cannot write {}/pending.json: {e}", dir.display()))
    };
    let agent = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| state_dir.join("clou-agent").display().to_string());
    let timer = Cmd::new([
        "systemd-run".to_owned(),
        "--quiet".into(),
        format!("--unit={}", unit_of(&token)),
        format!("--description=clou: revert run {run_id} unless confirmed"),
        format!("--on-active={secs}s"),
        "--timer-property=AccuracySec=1s".into(),
        agent,
        "revert".into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        token.clone(),
    ]);
    let armed = write().and_then(|()| match sys.run(&timer) {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(format!("`{}` failed: {}", timer.display(), out.tail())),
        Err(e) => Err(format!("cannot run systemd-run: {e}")),
    });
    let journal = Journal::new(state_dir);
    let files: Vec<String> = befores.iter().map(|b| b.path.clone()).collect();
    match armed {
        Ok(()) => {
            mark(&journal, run_id, admin, "confirm: waiting", &files);
            Ok(PendingConfirm { token, files, secs })
        }
        Err(why) => {
            let _ = revert(sys, state_dir, &token);
            Err(format!(
                "{why}; the changes to {} were put back at once, as nothing could take \
                 them back later",
                files.join(", ")
            ))
        }
    }
}

/// `clou-agent revert TOKEN`: puts the files back and runs the handlers,
/// unless the changes were confirmed. Returns what was put back.
pub fn revert(sys: &dyn System, state_dir: &Path, token: &str) -> Result<Vec<String>, String> {
    let dir = confirm_dir(state_dir).join(token);
    let claimed = confirm_dir(state_dir).join(format!("{token}.reverting"));
    if std::fs::rename(&dir, &claimed).is_err() {
        return Ok(Vec::new());
    }
    let text = std::fs::read(claimed.join("pending.json"))
        .map_err(|e| format!("cannot read {}/pending.json: {e}", claimed.display()))?;
    let pending: Pending = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    let mut put_back = Vec::new();
    for file in &pending.files {
        let path = Path::new(&file.path);
        let result = match &file.saved {
            Some(name) => std::fs::read(claimed.join(name))
                .map_err(|e| e.to_string())
                .and_then(|content| {
                    let perms = Perms {
                        uid: file.uid,
                        gid: file.gid,
                        mode: file.mode,
                    };
                    sys.write_atomic(path, &content, perms)
                        .and_then(|()| sys.chown(path, Some(file.uid), Some(file.gid)))
                        .and_then(|()| sys.chmod(path, file.mode))
                        .map_err(|e| e.to_string())
                }),
            None => match sys.remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
        };
        match result {
            Ok(()) => put_back.push(file.path.clone()),
            Err(e) => errors.push(format!("{}: {e}", file.path)),
        }
    }
    let mut run = RunState::default();
    for step in &pending.handlers {
        let mut ctx = Ctx {
            sys,
            check: false,
            want_diff: false,
            sensitive: step.sensitive,
            run: &mut run,
        };
        if let Err(e) = resources::evaluate(&step.resource, &mut ctx) {
            errors.push(format!("{}: {e}", step.id));
        }
    }
    let journal = Journal::new(state_dir);
    mark(
        &journal,
        &pending.run_id,
        &pending.admin,
        if errors.is_empty() {
            "confirm: not confirmed in time, reverted"
        } else {
            "confirm: not confirmed in time, revert failed in part"
        },
        &put_back,
    );
    let _ = std::fs::remove_dir_all(&claimed);
    if errors.is_empty() {
        Ok(put_back)
    } else {
        Err(errors.join("; "))
    }
}

/// A confirmation: the timer is stopped and the changes kept. False when
/// they were reverted already.
pub fn confirm(sys: &dyn System, state_dir: &Path, token: &str) -> bool {
    if token != token_of(token) {
        return false;
    }
    let _ = sys.run(&Cmd::new([
        "systemctl".to_owned(),
        "stop".into(),
        format!("{}.timer", unit_of(token)),
    ]));
    let dir = confirm_dir(state_dir).join(token);
    let claimed = confirm_dir(state_dir).join(format!("{token}.kept"));
    if std::fs::rename(&dir, &claimed).is_err() {
        return false;
    }
    if let Ok(text) = std::fs::read(claimed.join("pending.json"))
        && let Ok(pending) = serde_json::from_slice::<Pending>(&text)
    {
        let files: Vec<String> = pending.files.iter().map(|f| f.path.clone()).collect();
        mark(
            &Journal::new(state_dir),
            &pending.run_id,
            &pending.admin,
            "confirm: confirmed by a new connection, kept",
            &files,
        );
    }
    let _ = std::fs::remove_dir_all(&claimed);
    true
}

fn mark(journal: &Journal, run_id: &str, admin: &str, event: &str, files: &[String]) {
    journal.event(run_id, admin, event, serde_json::json!({ "files": files }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::testing::Recorder;

    fn handler() -> Step {
        serde_json::from_str(
            r#"{"id":"base/reload ssh","resource":{"command":{"argv":["touch","HANDLER"]}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn unconfirmed_changes_are_put_back_and_their_handlers_run() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let conf = dir.path().join("50-girofle.conf");
        let new = dir.path().join("new.conf");
        std::fs::write(&conf, "PasswordAuthentication no\n").unwrap();
        let sys = Recorder::new();
        let befores = vec![
            before(&sys, conf.to_str().unwrap()).unwrap(),
            before(&sys, new.to_str().unwrap()).unwrap(),
        ];
        // The plan changed both.
        std::fs::write(&conf, "AllowUsers nobody\n").unwrap();
        std::fs::write(&new, "x\n").unwrap();
        let pending = arm(
            &sys,
            &state,
            "1795615387-1a2b",
            "camille@portable",
            &befores,
            vec![handler()],
            30,
        )
        .unwrap();
        assert_eq!(pending.token, "1795615387-1a2b");
        let timer = sys.commands().pop().unwrap();
        assert!(
            timer.starts_with("systemd-run --quiet --unit=clou-revert-1795615387-1a2b"),
            "{timer}"
        );
        assert!(timer.contains("--on-active=30s"), "{timer}");
        assert!(
            timer.ends_with(&format!(
                "revert --state-dir {} 1795615387-1a2b",
                state.display()
            )),
            "{timer}"
        );

        let back = revert(&sys, &state, &pending.token).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "PasswordAuthentication no\n"
        );
        assert!(!new.exists(), "a file the plan created is removed");
        assert!(sys.commands().iter().any(|c| c == "touch HANDLER"));
        // Once only; a late confirmation says so.
        assert!(revert(&sys, &state, &pending.token).unwrap().is_empty());
        assert!(!confirm(&sys, &state, &pending.token));
        let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
        assert!(
            journal.contains("not confirmed in time, reverted"),
            "{journal}"
        );
    }

    #[test]
    fn a_confirmation_keeps_the_changes_and_stops_the_timer() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_owned();
        let conf = dir.path().join("nftables.conf");
        std::fs::write(&conf, "old\n").unwrap();
        let sys = Recorder::new();
        let befores = vec![before(&sys, conf.to_str().unwrap()).unwrap()];
        std::fs::write(&conf, "new\n").unwrap();
        let pending = arm(&sys, &state, "r2", "camille@portable", &befores, vec![], 30).unwrap();
        assert!(confirm(&sys, &state, &pending.token));
        assert!(
            sys.commands()
                .iter()
                .any(|c| c == "systemctl stop clou-revert-r2.timer")
        );
        // The timer, had it fired anyway, finds nothing to do.
        assert!(revert(&sys, &state, &pending.token).unwrap().is_empty());
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "new\n");
        assert!(!confirm(&sys, &state, "../r2"));
    }

    #[test]
    fn no_timer_means_no_change_kept() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sshd.conf");
        std::fs::write(&conf, "old\n").unwrap();
        let sys = Recorder::new();
        sys.reply(&["systemd-run"], 1, "");
        let befores = vec![before(&sys, conf.to_str().unwrap()).unwrap()];
        std::fs::write(&conf, "new\n").unwrap();
        let err = arm(&sys, dir.path(), "r3", "a", &befores, vec![], 30).unwrap_err();
        assert!(err.contains("put back at once"), "{err}");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "old\n");
    }
}
