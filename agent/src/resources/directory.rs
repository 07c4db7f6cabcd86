//! The `directory` resource: a directory that must exist (with missing
//! parents) or be gone, and its owner, group and mode.
//!
//! Removal is deliberately timid: only an empty directory is removed, so a
//! typo in a role never deletes data.

use std::fmt;
use std::path::{Path, PathBuf};

use clou_protocol::resource::{DirectorySpec, Presence};

use super::paths::{Attr, NewPerms, apply_attrs, attr_changes, create_dir, missing_parents, stat};
use super::{Ctx, Differences, Error, Kind, absolute};
use crate::system::FileKind;

/// One difference between a directory on the host and its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A missing ancestor, created root:root 0755 before the directory.
    CreateParent(PathBuf),
    Create(NewPerms),
    Attr(Attr),
    /// `state: absent` and the directory is there, empty.
    Remove,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateParent(path) => {
                write!(f, "create parent {} (root:root 0755)", path.display())
            }
            Change::Create(perms) => write!(f, "create ({perms})"),
            Change::Attr(attr) => attr.fmt(f),
            Change::Remove => write!(f, "remove (empty)"),
        }
    }
}

impl Kind for DirectorySpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let path = absolute(&self.path)?;
        let current = stat(ctx, path)?;
        let mut changes = Vec::new();
        match (self.state, current) {
            (Presence::Absent, None) => {}
            (Presence::Absent, Some(st)) if st.kind == FileKind::Dir => {
                let entries = ctx
                    .sys
                    .list_dir(path)
                    .map_err(Error::io(format!("cannot list {}", path.display())))?;
                if !entries.is_empty() {
                    return Err(Error::Invalid(format!(
                        "{} is not empty; remove its content first (clou never deletes data by accident)",
                        path.display()
                    )));
                }
                changes.push(Change::Remove);
            }
            (Presence::Absent, Some(st)) => return Err(in_the_way(path, st.kind)),
            (Presence::Present, None) => {
                for parent in missing_parents(ctx, path)? {
                    changes.push(Change::CreateParent(parent));
                }
                changes.push(Change::Create(NewPerms::resolve(
                    ctx,
                    self.owner.as_deref(),
                    self.group.as_deref(),
                    self.mode,
                    0o755,
                )?));
            }
            (Presence::Present, Some(st)) if st.kind == FileKind::Dir => changes.extend(
                attr_changes(
                    ctx,
                    &st,
                    self.owner.as_deref(),
                    self.group.as_deref(),
                    self.mode,
                )?
                .into_iter()
                .map(Change::Attr),
            ),
            (Presence::Present, Some(st)) => return Err(in_the_way(path, st.kind)),
        }
        if ctx.check {
            record(self, ctx);
        }
        Ok(Differences::of(changes))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let path = absolute(&self.path)?;
        let mut attrs = Vec::new();
        for change in &diff.changes {
            match change {
                Change::CreateParent(parent) => create_dir(ctx, parent, &NewPerms::root(0o755))?,
                Change::Create(perms) => create_dir(ctx, path, perms)?,
                Change::Attr(attr) => attrs.push(attr),
                Change::Remove => ctx
                    .sys
                    .remove_dir(path)
                    .map_err(Error::io(format!("cannot remove {}", path.display())))?,
            }
        }
        if !attrs.is_empty() {
            let st = stat(ctx, path)?.ok_or_else(|| {
                Error::Invalid(format!(
                    "{} disappeared while clou was working on it; run again",
                    path.display()
                ))
            })?;
            apply_attrs(ctx, path, &st, &attrs)?;
        }
        record(self, ctx);
        Ok(())
    }
}

/// Later resources in this directory may count on it (in check mode, on
/// it being created).
fn record(spec: &DirectorySpec, ctx: &mut Ctx<'_>) {
    if spec.state == Presence::Present {
        ctx.plan(format!("path:{}", Path::new(&spec.path).display()));
    }
}

fn in_the_way(path: &Path, kind: FileKind) -> Error {
    Error::Invalid(format!(
        "{} is {}, not a directory; clou does not replace it: move it away or declare the right resource for it",
        path.display(),
        kind.name()
    ))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use clou_protocol::resource::Mode;

    use super::*;
    use crate::resources::{Outcome, RunState, converge};
    use crate::system::Host;

    fn spec(path: &Path) -> DirectorySpec {
        DirectorySpec {
            path: path.display().to_string(),
            state: Presence::Present,
            owner: None,
            group: None,
            mode: None,
        }
    }

    fn run(spec: &DirectorySpec, check: bool) -> Result<Outcome, Error> {
        let mut run = RunState::default();
        let mut ctx = Ctx {
            sys: &Host,
            check,
            want_diff: true,
            sensitive: false,
            run: &mut run,
        };
        converge(spec, &mut ctx)
    }

    fn perms(path: &Path) -> (u32, u32, u32) {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid(), meta.mode() & 0o7777)
    }

    #[test]
    fn creates_missing_parents_and_the_directory_then_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("srv/backups/daily");
        let mut s = spec(&path);
        s.mode = Some(Mode(0o750));
        s.owner = Some("daemon".into());
        let out = run(&s, false).unwrap();
        assert_eq!(
            out.changes,
            vec![
                format!(
                    "create parent {} (root:root 0755)",
                    tmp.path().join("srv").display()
                ),
                format!(
                    "create parent {} (root:root 0755)",
                    tmp.path().join("srv/backups").display()
                ),
                "create (daemon:root 0750)".to_owned(),
            ]
        );
        assert_eq!(perms(&path), (1, 0, 0o750));
        assert_eq!(perms(&tmp.path().join("srv")), (0, 0, 0o755));
        assert!(run(&s, false).unwrap().changes.is_empty());
    }

    #[test]
    fn only_the_attributes_given_are_fixed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(run(&spec(&path), false).unwrap().changes.is_empty());

        let mut s = spec(&path);
        s.group = Some("daemon".into());
        s.mode = Some(Mode(0o2775));
        let out = run(&s, false).unwrap();
        assert_eq!(
            out.changes,
            vec!["group root -> daemon", "mode 0700 -> 2775"]
        );
        assert_eq!(perms(&path), (0, 1, 0o2775));
        assert!(run(&s, false).unwrap().changes.is_empty());
    }

    #[test]
    fn check_mode_changes_nothing_and_plans_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b");
        let mut state = RunState::default();
        let mut ctx = Ctx {
            sys: &Host,
            check: true,
            want_diff: true,
            sensitive: false,
            run: &mut state,
        };
        let out = converge(&spec(&path), &mut ctx).unwrap();
        assert_eq!(out.changes.len(), 2);
        assert!(!tmp.path().join("a").exists());
        assert!(ctx.path_planned(&path.join("file.conf")));

        let existing = tmp.path().join("e");
        fs::create_dir(&existing).unwrap();
        let before = perms(&existing);
        let mut s = spec(&existing);
        s.mode = Some(Mode(0o700));
        assert_eq!(run(&s, true).unwrap().changes, vec!["mode 0755 -> 0700"]);
        assert_eq!(perms(&existing), before);
    }

    #[test]
    fn absent_removes_only_an_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("data"), "precious").unwrap();
        let mut s = spec(&path);
        s.state = Presence::Absent;
        let err = run(&s, false).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "is not empty; remove its content first (clou never deletes data by accident)"
            ),
            "{err}"
        );
        assert!(path.join("data").exists());

        fs::remove_file(path.join("data")).unwrap();
        assert_eq!(run(&s, false).unwrap().changes, vec!["remove (empty)"]);
        assert!(!path.exists());
        assert!(run(&s, false).unwrap().changes.is_empty());
    }

    #[test]
    fn a_file_in_the_way_is_an_error_and_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d");
        fs::write(&path, "x").unwrap();
        let err = run(&spec(&path), false).unwrap_err().to_string();
        assert!(err.contains("is a regular file, not a directory"), "{err}");
        let mut absent = spec(&path);
        absent.state = Presence::Absent;
        assert!(run(&absent, false).is_err());
        let below = spec(&path.join("sub"));
        let err = run(&below, false).unwrap_err().to_string();
        assert!(err.contains("is a regular file, not a directory"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "x");
    }
}
