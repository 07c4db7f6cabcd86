//! What the lab needs from this machine, and installing it.
//!
//! The lab mounts filesystems, creates network namespaces and boots
//! containers: it must run as root. The programs it drives come from
//! Debian packages; on a Debian machine the missing ones are installed
//! with apt (and the user is told), elsewhere the lab stops with the exact
//! command to run.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use super::LabError;
use crate::process;

/// Programs the lab runs, and the Debian package that ships each.
pub const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("apt-ftparchive", "apt-utils"),
    ("dpkg-deb", "dpkg"),
    ("ip", "iproute2"),
    ("losetup", "mount"),
    ("mount", "mount"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
];

/// Fails unless the effective user is root.
pub fn require_root() -> Result<(), LabError> {
    // /proc/self belongs to the effective uid of the process that reads it.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if uid == 0 {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// Debian packages whose programs are missing.
pub fn missing_packages() -> Vec<&'static str> {
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, _)| !process::on_path(tool))
        .map(|(_, package)| *package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

/// Checks root and the tools; installs missing packages with apt when it can.
pub fn ensure() -> Result<(), LabError> {
    require_root()?;
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!(
        "apt-get install --no-install-recommends {}",
        missing.join(" ")
    );
    if !process::on_path("apt-get") {
        return Err(LabError::MissingTools {
            packages: missing.join(" "),
            command,
        });
    }
    eprintln!(
        "lab: installing what the lab needs: {} (apt-get)",
        missing.join(" ")
    );
    let install = || {
        process::run(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                // Two labs booted at once both find the tool missing: the
                // second waits for the first's dpkg lock instead of failing.
                .args(["-o", "DPkg::Lock::Timeout=300"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        // A fresh machine may never have fetched its package lists.
        process::run(Command::new("apt-get").args(["update", "-q"]))?;
        install()?;
    }
    let still = missing_packages();
    if still.is_empty() {
        Ok(())
    } else {
        Err(LabError::MissingTools {
            packages: still.join(" "),
            command,
        })
    }
}

/// Raises the inotify instance limit: every booted host's systemd takes a
/// few, and past about 19 hosts the default of 128 runs out ("Too many open
/// files").
pub fn raise_inotify_limit(hosts: usize) -> Result<(), LabError> {
    const KNOB: &str = "/proc/sys/fs/inotify/max_user_instances";
    let want = 1024usize.max(hosts * 64);
    let current: usize = std::fs::read_to_string(KNOB)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if current < want {
        std::fs::write(KNOB, want.to_string()).map_err(|source| LabError::Io {
            what: format!("raising fs.inotify.max_user_instances to {want}"),
            error: source,
        })?;
        tracing::info!("raised fs.inotify.max_user_instances from {current} to {want}");
    }
    Ok(())
}
