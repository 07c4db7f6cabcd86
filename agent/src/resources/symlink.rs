//! The `symlink` resource: a symbolic link pointing where the role says
//! (`sites-enabled/wiki -> ../sites-available/wiki`), or gone.
//!
//! A link is replaced atomically, so a reader never finds it missing. A file
//! or directory where the link should be is never removed: it may be data.

use std::fmt;
use std::path::{Path, PathBuf};

use clou_protocol::resource::{Presence, SymlinkSpec};

use super::paths::{check_parent, stat};
use super::{Ctx, Differences, Error, Kind, absolute};
use crate::system::FileKind;

/// One difference between a link on the host and its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create { target: String },
    Retarget { from: String, to: String },
    Remove { target: String },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create { target } => write!(f, "create -> {target}"),
            Change::Retarget { from, to } => write!(f, "target {from} -> {to}"),
            Change::Remove { target } => write!(f, "remove (pointed to {target})"),
        }
    }
}

impl Kind for SymlinkSpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let path = absolute(&self.path)?;
        let present = self.state == Presence::Present;
        if present && self.target.is_empty() {
            return Err(Error::Invalid(format!(
                "symlink {} needs a `target` (what the link points to)",
                path.display()
            )));
        }
        let mut changes = Vec::new();
        match stat(ctx, path)? {
            None if present => {
                check_parent(ctx, path, "link")?;
                changes.push(Change::Create {
                    target: self.target.clone(),
                });
            }
            None => {}
            Some(st) if st.kind == FileKind::Symlink => {
                let current = read_link(ctx, path)?;
                if !present {
                    changes.push(Change::Remove { target: current });
                } else if current != self.target {
                    changes.push(Change::Retarget {
                        from: current,
                        to: self.target.clone(),
                    });
                }
            }
            Some(st) => {
                let hint = if present {
                    "move it away first if the link must replace it"
                } else {
                    "remove it with the resource that matches it if it must go"
                };
                return Err(Error::Invalid(format!(
                    "{} is {}, not a symbolic link; clou never deletes it: {hint}",
                    path.display(),
                    st.kind.name()
                )));
            }
        }
        if ctx.check && present {
            ctx.plan(format!("path:{}", path.display()));
        }
        Ok(Differences::of(changes))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let path = absolute(&self.path)?;
        for change in &diff.changes {
            match change {
                Change::Create { target } | Change::Retarget { to: target, .. } => ctx
                    .sys
                    .symlink_atomic(&PathBuf::from(target), path)
                    .map_err(Error::io(format!(
                        "cannot create the link {}",
                        path.display()
                    )))?,
                Change::Remove { .. } => ctx.sys.remove_file(path).map_err(Error::io(format!(
                    "cannot remove the link {}",
                    path.display()
                )))?,
            }
        }
        if self.state == Presence::Present {
            ctx.plan(format!("path:{}", path.display()));
        }
        Ok(())
    }
}

fn read_link(ctx: &Ctx<'_>, path: &Path) -> Result<String, Error> {
    ctx.sys
        .read_link(path)
        .map(|target| target.to_string_lossy().into_owned())
        .map_err(Error::io(format!(
            "cannot read the link {}",
            path.display()
        )))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::resources::{Outcome, RunState, converge};
    use crate::system::{Host, System};

    fn spec(path: &Path, target: &str) -> SymlinkSpec {
        SymlinkSpec {
            path: path.display().to_string(),
            target: target.to_owned(),
            state: Presence::Present,
        }
    }

    fn run_in(spec: &SymlinkSpec, check: bool, state: &mut RunState) -> Result<Outcome, Error> {
        let mut ctx = Ctx {
            sys: &Host,
            check,
            want_diff: true,
            sensitive: false,
            run: state,
        };
        converge(spec, &mut ctx)
    }

    fn run(spec: &SymlinkSpec, check: bool) -> Result<Outcome, Error> {
        run_in(spec, check, &mut RunState::default())
    }

    #[test]
    fn creates_a_link_then_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("wiki");
        let s = spec(&path, "../sites-available/wiki");
        assert_eq!(
            run(&s, false).unwrap().changes,
            vec!["create -> ../sites-available/wiki"]
        );
        assert_eq!(
            fs::read_link(&path).unwrap(),
            Path::new("../sites-available/wiki")
        );
        assert!(run(&s, false).unwrap().changes.is_empty());
    }

    #[test]
    fn a_link_pointing_elsewhere_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("current");
        std::os::unix::fs::symlink("releases/1", &path).unwrap();
        let out = run(&spec(&path, "releases/2"), false).unwrap();
        assert_eq!(out.changes, vec!["target releases/1 -> releases/2"]);
        assert_eq!(fs::read_link(&path).unwrap(), Path::new("releases/2"));
        assert_eq!(Host.list_dir(tmp.path()).unwrap(), vec!["current"]);
    }

    #[test]
    fn check_mode_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("current");
        std::os::unix::fs::symlink("releases/1", &path).unwrap();
        let ino = fs::symlink_metadata(&path).unwrap().ino();
        let out = run(&spec(&path, "releases/2"), true).unwrap();
        assert_eq!(out.changes, vec!["target releases/1 -> releases/2"]);
        assert_eq!(fs::read_link(&path).unwrap(), Path::new("releases/1"));
        assert_eq!(fs::symlink_metadata(&path).unwrap().ino(), ino);
    }

    #[test]
    fn a_file_or_directory_in_the_way_is_never_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "data").unwrap();
        let err = run(&spec(&file, "x"), false).unwrap_err().to_string();
        assert!(
            err.contains("is a regular file, not a symbolic link"),
            "{err}"
        );
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        let mut absent = spec(&dir, "");
        absent.state = Presence::Absent;
        let err = run(&absent, false).unwrap_err().to_string();
        assert!(err.contains("is a directory, not a symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "data");
        assert!(dir.is_dir());
    }

    #[test]
    fn absent_removes_the_link_only() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, "kept").unwrap();
        let path = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let mut s = spec(&path, "");
        s.state = Presence::Absent;
        assert_eq!(
            run(&s, false).unwrap().changes,
            vec![format!("remove (pointed to {})", target.display())]
        );
        assert!(fs::symlink_metadata(&path).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "kept");
        assert!(run(&s, false).unwrap().changes.is_empty());
    }

    #[test]
    fn present_needs_a_target() {
        let tmp = tempfile::tempdir().unwrap();
        let err = run(&spec(&tmp.path().join("l"), ""), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a `target`"), "{err}");
    }

    #[test]
    fn a_missing_parent_is_an_error_unless_planned_in_check_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sites-enabled/wiki");
        let err = run(&spec(&path, "x"), false).unwrap_err().to_string();
        assert!(err.starts_with("parent directory"), "{err}");
        assert!(err.ends_with("before this link"), "{err}");
        let mut state = RunState::default();
        state.planned.insert(format!(
            "path:{}",
            tmp.path().join("sites-enabled").display()
        ));
        let out = run_in(&spec(&path, "x"), true, &mut state).unwrap();
        assert_eq!(out.changes, vec!["create -> x"]);
    }
}
