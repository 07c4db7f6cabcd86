//! What the path kinds (`file`, `directory`, `symlink`, `line`, `archive`)
//! share: owner/group/mode changes, the parent-directory checks, file
//! access with the path in the error, unified diffs, content hashes and the
//! systemd-unit bookkeeping.

use std::fmt;
use std::path::{Path, PathBuf};

use clou_protocol::resource::Mode;
use sha2::{Digest, Sha256};

use super::{Ctx, Error};
use crate::system::{FileKind, Perms, Stat};

/// Owner, group and mode something new gets; ids are `None` only in check
/// mode, for an account an earlier resource would create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPerms {
    pub owner: String,
    pub uid: Option<u32>,
    pub group: String,
    pub gid: Option<u32>,
    pub mode: Mode,
}

impl NewPerms {
    /// The perms asked for, root:root and `default_mode` where not given.
    pub fn resolve(
        ctx: &Ctx<'_>,
        owner: Option<&str>,
        group: Option<&str>,
        mode: Option<Mode>,
        default_mode: u32,
    ) -> Result<NewPerms, Error> {
        let accounts = match (owner, group) {
            (None, None) => None,
            _ => Some(ctx.accounts()?),
        };
        let (owner, uid) = match (owner, &accounts) {
            (Some(name), Some(acc)) => (name.to_owned(), ctx.uid(acc, name)?),
            _ => ("root".to_owned(), Some(0)),
        };
        let (group, gid) = match (group, &accounts) {
            (Some(name), Some(acc)) => (name.to_owned(), ctx.gid(acc, name)?),
            _ => ("root".to_owned(), Some(0)),
        };
        Ok(NewPerms {
            owner,
            uid,
            group,
            gid,
            mode: mode.unwrap_or(Mode(default_mode)),
        })
    }

    /// root:root with `mode`.
    pub fn root(mode: u32) -> NewPerms {
        NewPerms {
            owner: "root".to_owned(),
            uid: Some(0),
            group: "root".to_owned(),
            gid: Some(0),
            mode: Mode(mode),
        }
    }

    /// The numeric perms, for applying.
    pub fn perms(&self) -> Result<Perms, Error> {
        Ok(Perms {
            uid: known(self.uid, "user", &self.owner)?,
            gid: known(self.gid, "group", &self.group)?,
            mode: self.mode.0,
        })
    }
}

impl fmt::Display for NewPerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} {}", self.owner, self.group, self.mode)
    }
}

/// A change of owner, group or mode of something that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    Owner {
        from: String,
        to: String,
        uid: Option<u32>,
    },
    Group {
        from: String,
        to: String,
        gid: Option<u32>,
    },
    Mode {
        from: Mode,
        to: Mode,
    },
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Owner { from, to, .. } => write!(f, "owner {from} -> {to}"),
            Attr::Group { from, to, .. } => write!(f, "group {from} -> {to}"),
            Attr::Mode { from, to } => write!(f, "mode {from} -> {to}"),
        }
    }
}

/// What differs in owner, group and mode; only what the spec gives counts.
pub fn attr_changes(
    ctx: &Ctx<'_>,
    stat: &Stat,
    owner: Option<&str>,
    group: Option<&str>,
    mode: Option<Mode>,
) -> Result<Vec<Attr>, Error> {
    let mut changes = Vec::new();
    if owner.is_some() || group.is_some() {
        let accounts = ctx.accounts()?;
        if let Some(name) = owner {
            let uid = ctx.uid(&accounts, name)?;
            if uid != Some(stat.uid) {
                changes.push(Attr::Owner {
                    from: accounts.user_name(stat.uid),
                    to: name.to_owned(),
                    uid,
                });
            }
        }
        if let Some(name) = group {
            let gid = ctx.gid(&accounts, name)?;
            if gid != Some(stat.gid) {
                changes.push(Attr::Group {
                    from: accounts.group_name(stat.gid),
                    to: name.to_owned(),
                    gid,
                });
            }
        }
    }
    if let Some(mode) = mode
        && mode.0 != stat.mode
    {
        changes.push(Attr::Mode {
            from: Mode(stat.mode),
            to: mode,
        });
    }
    Ok(changes)
}

/// Applies owner, group and mode changes to an existing path whose state
/// before was `stat`.
pub fn apply_attrs(ctx: &Ctx<'_>, path: &Path, stat: &Stat, attrs: &[&Attr]) -> Result<(), Error> {
    let target = target_perms(stat, attrs)?;
    let chowned = target.uid != stat.uid || target.gid != stat.gid;
    if chowned {
        let uid = (target.uid != stat.uid).then_some(target.uid);
        let gid = (target.gid != stat.gid).then_some(target.gid);
        ctx.sys.chown(path, uid, gid).map_err(Error::io(format!(
            "cannot change the owner of {}",
            path.display()
        )))?;
    }
    // chown clears the setuid and setgid bits: put them back.
    if target.mode != stat.mode || (chowned && stat.mode & 0o6000 != 0) {
        ctx.sys.chmod(path, target.mode).map_err(Error::io(format!(
            "cannot change the mode of {}",
            path.display()
        )))?;
    }
    Ok(())
}

/// The perms `stat` ends with once `attrs` are applied.
pub fn target_perms(stat: &Stat, attrs: &[&Attr]) -> Result<Perms, Error> {
    let mut perms = perms_of(stat);
    for attr in attrs {
        match attr {
            Attr::Owner { to, uid, .. } => perms.uid = known(*uid, "user", to)?,
            Attr::Group { to, gid, .. } => perms.gid = known(*gid, "group", to)?,
            Attr::Mode { to, .. } => perms.mode = to.0,
        }
    }
    Ok(perms)
}

/// The perms a path has now.
pub fn perms_of(stat: &Stat) -> Perms {
    Perms {
        uid: stat.uid,
        gid: stat.gid,
        mode: stat.mode,
    }
}

/// An id resolved in differences; unknown only in check mode (which never
/// applies), so this error means the account vanished in between.
fn known(id: Option<u32>, what: &str, name: &str) -> Result<u32, Error> {
    id.ok_or_else(|| {
        Error::Invalid(format!(
            "{what} {name:?} does not exist on this host; declare a `{what}` resource before this one"
        ))
    })
}

/// Fails when the parent directory of `path` is missing, unless (in check
/// mode) an earlier resource would create it. `noun` names what needs it
/// ("file", "link").
pub fn check_parent(ctx: &Ctx<'_>, path: &Path, noun: &str) -> Result<(), Error> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    match stat(ctx, parent)? {
        // A symlinked parent (/lib on merged-/usr) is fine: writing follows it.
        Some(st) if matches!(st.kind, FileKind::Dir | FileKind::Symlink) => Ok(()),
        Some(st) => Err(Error::Invalid(format!(
            "the parent of {} is {}, not a directory: {}",
            path.display(),
            st.kind.name(),
            parent.display()
        ))),
        None if ctx.path_planned(parent) => Ok(()),
        None => Err(Error::Invalid(format!(
            "parent directory {} does not exist; declare a directory resource before this {noun}",
            parent.display()
        ))),
    }
}

/// The ancestors of `path` that do not exist, outermost first. Something
/// other than a directory (or a link to one) on the way is an error.
pub fn missing_parents(ctx: &Ctx<'_>, path: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut missing = Vec::new();
    for ancestor in path.ancestors().skip(1) {
        match stat(ctx, ancestor)? {
            None => missing.push(ancestor.to_path_buf()),
            Some(st) if matches!(st.kind, FileKind::Dir | FileKind::Symlink) => break,
            Some(st) => {
                return Err(Error::Invalid(format!(
                    "cannot create {}: {} is {}, not a directory; move it away first",
                    path.display(),
                    ancestor.display(),
                    st.kind.name()
                )));
            }
        }
    }
    missing.reverse();
    Ok(missing)
}

/// Creates one directory with `perms`, the path in the error.
pub fn create_dir(ctx: &Ctx<'_>, path: &Path, perms: &NewPerms) -> Result<(), Error> {
    ctx.sys
        .create_dir(path, perms.perms()?)
        .map_err(Error::io(format!(
            "cannot create directory {}",
            path.display()
        )))
}

/// `lstat` with the path in the error.
pub fn stat(ctx: &Ctx<'_>, path: &Path) -> Result<Option<Stat>, Error> {
    match ctx.sys.stat(path) {
        // An ancestor is a file: nothing is there, and the parent checks
        // say which ancestor is in the way.
        Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
        other => other.map_err(Error::io(format!("cannot inspect {}", path.display()))),
    }
}

/// Reads a file that must exist.
pub fn read(ctx: &Ctx<'_>, path: &Path) -> Result<Vec<u8>, Error> {
    ctx.sys
        .read(path)
        .map_err(Error::io(format!("cannot read {}", path.display())))?
        .ok_or_else(|| vanished(path))
}

/// Writes a file atomically, with the path in the error.
pub fn write(ctx: &Ctx<'_>, path: &Path, content: &[u8], perms: Perms) -> Result<(), Error> {
    ctx.sys
        .write_atomic(path, content, perms)
        .map_err(Error::io(format!("cannot write {}", path.display())))
}

/// The error for a path that was there a moment ago.
pub fn vanished(path: &Path) -> Error {
    Error::Invalid(format!(
        "{} disappeared while clou was working on it; is something else changing it? Run again",
        path.display()
    ))
}

/// Whether a content diff may be shown.
pub fn want_diff(ctx: &Ctx<'_>) -> bool {
    ctx.want_diff && !ctx.sensitive
}

/// A unified diff from the host's content to the planned one.
pub fn unified_diff(path: &Path, old: &[u8], new: &[u8]) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(old), Ok(new)) => similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{} (on host)", path.display()),
                &format!("{} (planned)", path.display()),
            )
            .to_string(),
        _ => format!(
            "binary content differs ({} -> {} bytes)\n",
            old.len(),
            new.len()
        ),
    }
}

/// The full SHA-256 in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A content change of `path` may concern a systemd unit: then
/// `daemon-reload` must run before the next service, and (when the file
/// stays) the unit counts as planned for later resources.
pub fn note_unit_change(ctx: &mut Ctx<'_>, path: &Path, present: bool) {
    if let Some(unit) = unit_name(path) {
        ctx.run.units_changed = true;
        if present {
            ctx.plan(format!("unit:{unit}"));
        }
    }
}

/// The unit a path under a systemd unit directory belongs to, without
/// `.service`: `nginx` for `/etc/systemd/system/nginx.service` and for
/// `/etc/systemd/system/nginx.service.d/limits.conf`.
pub fn unit_name(path: &Path) -> Option<String> {
    const UNIT_DIRS: [&str; 3] = [
        "/etc/systemd/system",
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
    ];
    let rest = UNIT_DIRS
        .iter()
        .find_map(|dir| path.strip_prefix(dir).ok())?;
    let parts: Vec<String> = rest
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let unit = match parts.as_slice() {
        [file] => file.clone(),
        [dir, _] if dir.ends_with(".d") => dir.trim_end_matches(".d").to_owned(),
        // `x.target.wants/y.service` and the like: the file is a unit.
        [_, file] => file.clone(),
        _ => return None,
    };
    let unit = unit.strip_suffix(".service").unwrap_or(&unit).to_owned();
    (!unit.is_empty()).then_some(unit)
}
