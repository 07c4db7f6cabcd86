//! Copy-on-write root filesystems: an image as the lower layer, the host's
//! own changes in `upper/`, the result mounted at `rootfs/`.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::{LabError, io_err};

/// An overlay rooted at `dir` (`upper/`, `work/`, `rootfs/`).
#[derive(Debug, Clone)]
pub struct Overlay {
    lower: PathBuf,
    dir: PathBuf,
}

impl Overlay {
    pub fn new(lower: &Path, dir: &Path) -> Overlay {
        Overlay {
            lower: lower.to_owned(),
            dir: dir.to_owned(),
        }
    }

    /// Where the merged tree is mounted.
    pub fn merged(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Mounts the overlay unless it already is.
    pub fn mount(&self) -> Result<(), LabError> {
        let merged = self.merged();
        if is_mount_point(&merged) {
            return Ok(());
        }
        for sub in ["upper", "work", "rootfs"] {
            let p = self.dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|errno| LabError::Io {
            what: format!("mounting the overlay at {}", merged.display()),
            error: errno.into(),
        })
    }

    /// Unmounts the overlay if mounted.
    pub fn unmount(&self) -> Result<(), LabError> {
        unmount(&self.merged())
    }

    /// Unmounts and deletes everything under `dir`.
    pub fn remove(&self) -> Result<(), LabError> {
        self.unmount()?;
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(io_err("removing", &self.dir))?;
        }
        Ok(())
    }
}

/// Unmounts `path` if it is a mount point.
pub fn unmount(path: &Path) -> Result<(), LabError> {
    if !is_mount_point(path) {
        return Ok(());
    }
    umount2(path, MntFlags::empty()).map_err(|errno| LabError::Io {
        what: format!("unmounting {}", path.display()),
        error: errno.into(),
    })
}

/// Whether `path` is listed as a mount point in /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canonical) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = canonical.to_string_lossy();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == wanted)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(text: &str) -> String {
    text.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| mp == &prefix || mp.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}
