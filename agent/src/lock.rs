//! The per-host lock: one clou run at a time on a host.
//!
//! The lock is an advisory `flock` on `STATE_DIR/lock`, which the kernel
//! drops when the holder dies, so a crashed run never blocks the next one.
//! The file also says who holds it (run id, admin, pid, start time): a second
//! run reads that to name the holder, and a run that finds a previous
//! holder's record still there knows that holder died without cleaning up,
//! and says so.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub admin: String,
    pub pid: u32,
    pub started: String,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another clou run holds {path}: run {} by {} (agent pid {}, started {}); \
         wait for it to finish, then run clou again",
        .holder.run_id, .holder.admin, .holder.pid, .holder.started
    )]
    Busy { path: PathBuf, holder: Holder },
    #[error("another clou run holds {path} (it has not said who yet); wait and retry")]
    BusyUnknown { path: PathBuf },
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released (and its record cleared) on drop.
#[derive(Debug)]
pub struct Lock {
    file: File,
    /// The record of a holder that died holding the lock, if any.
    pub stale: Option<Holder>,
}

impl Lock {
    /// Takes the lock in `dir` without waiting.
    pub fn acquire(dir: &Path, me: &Holder) -> Result<Lock, LockError> {
        let path = dir.join("lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(match serde_json::from_str(&text) {
                    Ok(holder) => LockError::Busy { path, holder },
                    Err(_) => LockError::BusyUnknown { path },
                });
            }
            Err(TryLockError::Error(err)) => return Err(io(err)),
        }
        let mut previous = String::new();
        file.read_to_string(&mut previous).map_err(io)?;
        let stale = serde_json::from_str(&previous).ok();
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let record = serde_json::to_string(me).map_err(|e| io(e.into()))?;
        file.write_all(record.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Lock { file, stale })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // An empty file means "released cleanly"; the flock itself goes
        // with the file descriptor.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str) -> Holder {
        Holder {
            run_id: run.into(),
            admin: "camille@portable".into(),
            pid: std::process::id(),
            started: "2026-11-25T14:03:07Z".into(),
        }
    }

    #[test]
    fn a_second_taker_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path(), &holder("r1")).unwrap();
        assert!(first.stale.is_none());
        let err = Lock::acquire(dir.path(), &holder("r2")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("run r1 by camille@portable"), "{text}");
        drop(first);
        let again = Lock::acquire(dir.path(), &holder("r3")).unwrap();
        assert!(again.stale.is_none(), "a clean release leaves no record");
    }

    #[test]
    fn a_dead_holders_record_is_reported_as_stale() {
        let dir = tempfile::tempdir().unwrap();
        // What a holder killed with SIGKILL leaves: its record, no flock.
        let record = serde_json::to_string(&holder("dead")).unwrap();
        std::fs::write(dir.path().join("lock"), record).unwrap();
        let lock = Lock::acquire(dir.path(), &holder("r2")).unwrap();
        assert_eq!(lock.stale.as_ref().map(|h| h.run_id.as_str()), Some("dead"));
    }
}
