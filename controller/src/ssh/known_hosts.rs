//! Host keys: checked strictly, never accepted silently.
//!
//! A host's key is looked up, by address and by inventory name, in:
//! - for a lab inventory, only the lab's own known_hosts (the lab writes it
//!   when it boots the hosts; a key of an older lab elsewhere is noise);
//! - otherwise the repository's `inventory/known_hosts` (shared by the
//!   admins, reviewed like code), then the admin's `~/.ssh/known_hosts`.
//!
//! A key found there is accepted. No key is "unknown"; another key of the
//! same type is "changed". Both refuse the host, show the fingerprints, and
//! name the command that trusts the key once the admin has checked it.

use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PublicKey};

use crate::inventory::Inventory;

/// Where host keys are looked up.
#[derive(Debug, Clone)]
pub struct HostKeys {
    /// Files, in order. Missing files are skipped.
    pub files: Vec<PathBuf>,
    /// Where `clou hosts trust` writes.
    pub trust_file: PathBuf,
}

/// The verdict on a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Known,
    Unknown,
    /// Recorded keys of the same type that differ: `file:line` and
    /// fingerprint of each.
    Changed(Vec<(String, String)>),
    /// The key is marked `@revoked` at this `file:line`.
    Revoked(String),
}

impl HostKeys {
    /// The files for an inventory (see the module docs).
    pub fn for_inventory(inventory: &Inventory) -> HostKeys {
        if let Some(lab) = &inventory.known_hosts {
            return HostKeys {
                files: vec![lab.clone()],
                trust_file: lab.clone(),
            };
        }
        let repo = inventory
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("known_hosts");
        let mut files = vec![repo.clone()];
        if let Some(home) = std::env::home_dir() {
            files.push(home.join(".ssh/known_hosts"));
        }
        HostKeys {
            files,
            trust_file: repo,
        }
    }

    /// Whether any file records a key for one of `names`: a host with none
    /// is refused before clou even connects to it.
    pub fn has_any(&self, names: &[&str], port: u16) -> bool {
        self.files.iter().any(|file| {
            names.iter().any(|name| {
                russh::keys::known_hosts::known_host_keys_path(name, port, file)
                    .is_ok_and(|keys| !keys.is_empty())
            })
        })
    }

    /// The files, for messages.
    pub fn describe(&self) -> String {
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks `key` presented by a host known as any of `names` on `port`.
    pub fn check(&self, names: &[&str], port: u16, key: &PublicKey) -> Verdict {
        if let Some(at) = self.revoked(key) {
            return Verdict::Revoked(at);
        }
        let mut changed = Vec::new();
        let mut known = false;
        for file in &self.files {
            for name in names {
                let Ok(recorded) = russh::keys::known_hosts::known_host_keys_path(name, port, file)
                else {
                    tracing::warn!("cannot read {}; skipping it", file.display());
                    continue;
                };
                for (line, rec) in recorded {
                    if rec == *key {
                        known = true;
                    } else if rec.algorithm() == key.algorithm() {
                        changed.push((format!("{}:{line}", file.display()), fingerprint(&rec)));
                    }
                }
            }
        }
        match (known, changed.is_empty()) {
            // A file that still records another key for the host is a
            // conflict to resolve, not something to paper over.
            (_, false) => Verdict::Changed(changed),
            (true, true) => Verdict::Known,
            (false, true) => Verdict::Unknown,
        }
    }
}

impl HostKeys {
    /// Where `key` is marked `@revoked`, if it is: a revoked key is refused
    /// whatever other files say (russh's parser skips marker lines).
    fn revoked(&self, key: &PublicKey) -> Option<String> {
        for file in &self.files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for (index, line) in text.lines().enumerate() {
                let mut words = line.split_whitespace();
                if words.next() != Some("@revoked") {
                    continue;
                }
                let (_hosts, kind, base64) = (words.next(), words.next(), words.next());
                if let (Some(kind), Some(base64)) = (kind, base64)
                    && PublicKey::from_openssh(&format!("{kind} {base64}")).is_ok_and(|k| k == *key)
                {
                    return Some(format!("{}:{}", file.display(), index + 1));
                }
            }
        }
        None
    }
}

/// `SHA256:...`, as `ssh` shows it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Records `key` for `name` in `file`, replacing the lines that recorded
/// another key of the same type for that exact name. Written atomically.
pub fn trust(file: &Path, name: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    let pattern = if port == 22 {
        name.to_owned()
    } else {
        format!("[{name}]:{port}")
    };
    let line = format!(
        "{pattern} {}",
        key.to_openssh().map_err(std::io::Error::other)?
    );
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let algorithm = key.algorithm().to_string();
    let mut kept: Vec<&str> = old
        .lines()
        .filter(|l| {
            let mut parts = l.split_whitespace();
            let hosts = parts.next().unwrap_or("");
            let alg = parts.next().unwrap_or("");
            !(hosts.split(',').any(|h| h == pattern) && alg == algorithm)
        })
        .collect();
    kept.push(&line);
    let text = kept.join("\n") + "\n";
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("clou-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with `ssh-keygen -t ed25519` for these tests.
    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNZVCspvBkox1ytikxmS0hkdD06aYinPpCOJCMfSKeR";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJXUsVCjb8hdhoMz9iFI33o6TRQjxiYZd/pmN/NclZM";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn keys(dir: &Path, content: &str) -> HostKeys {
        let file = dir.join("known_hosts");
        std::fs::write(&file, content).unwrap();
        HostKeys {
            files: vec![file.clone()],
            trust_file: file,
        }
    }

    #[test]
    fn a_recorded_key_is_known_another_is_changed_none_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let hk = keys(dir.path(), &format!("10.99.0.11 {KEY_A}\n"));
        assert_eq!(hk.check(&["10.99.0.11"], 22, &key(KEY_A)), Verdict::Known);
        assert_eq!(hk.check(&["10.99.0.12"], 22, &key(KEY_A)), Verdict::Unknown);
        let Verdict::Changed(recorded) = hk.check(&["10.99.0.11"], 22, &key(KEY_B)) else {
            panic!("a different key must be refused");
        };
        assert_eq!(recorded.len(), 1);
        assert!(recorded[0].0.ends_with("known_hosts:1"), "{recorded:?}");
        assert_eq!(recorded[0].1, fingerprint(&key(KEY_A)));
    }

    #[test]
    fn a_host_with_no_recorded_key_is_known_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let hk = keys(
            dir.path(),
            &format!("10.99.0.11 {KEY_A}\n[10.99.0.12]:2222 {KEY_B}\n"),
        );
        assert!(hk.has_any(&["10.99.0.11"], 22));
        assert!(hk.has_any(&["10.99.0.12"], 2222));
        assert!(!hk.has_any(&["10.99.0.12"], 22));
        assert!(!hk.has_any(&["10.99.0.13", "web"], 22));
    }

    #[test]
    fn a_revoked_key_is_refused_even_when_recorded_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let mut hk = keys(dir.path(), &format!("10.99.0.11 {KEY_A}\n"));
        let other = dir.path().join("revocations");
        std::fs::write(
            &other,
            format!("# revoked after the 2026 incident\n@revoked * {KEY_A}\n"),
        )
        .unwrap();
        hk.files.push(other);
        let verdict = hk.check(&["10.99.0.11"], 22, &key(KEY_A));
        assert!(
            matches!(&verdict, Verdict::Revoked(at) if at.ends_with("revocations:2")),
            "{verdict:?}"
        );
    }

    #[test]
    fn the_inventory_name_is_looked_up_too() {
        let dir = tempfile::tempdir().unwrap();
        let hk = keys(dir.path(), &format!("web {KEY_A}\n"));
        assert_eq!(
            hk.check(&["192.0.2.18", "web"], 22, &key(KEY_A)),
            Verdict::Known
        );
    }

    #[test]
    fn trust_replaces_the_old_key_of_that_host_only() {
        let dir = tempfile::tempdir().unwrap();
        let hk = keys(
            dir.path(),
            &format!("10.99.0.11 {KEY_A}\n10.99.0.12 {KEY_A}\n"),
        );
        trust(&hk.trust_file, "10.99.0.11", 22, &key(KEY_B)).unwrap();
        assert_eq!(hk.check(&["10.99.0.11"], 22, &key(KEY_B)), Verdict::Known);
        assert_eq!(hk.check(&["10.99.0.12"], 22, &key(KEY_A)), Verdict::Known);
        let text = std::fs::read_to_string(&hk.trust_file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
