//! The `line` resource: one line in a file that is otherwise left alone
//! (`GRUB_TIMEOUT=2` in `/etc/default/grub`), like Ansible's `lineinfile`.
//!
//! For files a package owns and the admin tweaks by one setting, where
//! shipping the whole file with a `file` resource would freeze everything
//! else in it across package upgrades.

use std::fmt;
use std::path::Path;

use clou_protocol::resource::{LineSpec, Presence};
use regex_lite::Regex;

use super::paths::{
    check_parent, note_unit_change, perms_of, read, stat, unified_diff, want_diff, write,
};
use super::{Ctx, Differences, Error, Kind, absolute};
use crate::system::{FileKind, Perms};

/// One edit of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The file is missing and `create` is set: root:root 0644.
    Create,
    /// Line `number` (from 1) is `old` and becomes `new`.
    Replace {
        number: usize,
        old: String,
        new: String,
        secret: bool,
    },
    Append {
        line: String,
        secret: bool,
    },
    /// Line `number` (from 1, in the file as read) is `line` and goes.
    Remove {
        number: usize,
        line: String,
        secret: bool,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create => write!(f, "create (root:root 0644)"),
            Change::Replace { number, secret, .. } if *secret => {
                write!(f, "replace line {number} (secret, not shown)")
            }
            Change::Replace {
                number, old, new, ..
            } => write!(f, "replace line {number} {old:?} -> {new:?}"),
            Change::Append { secret, .. } if *secret => {
                write!(f, "append a line (secret, not shown)")
            }
            Change::Append { line, .. } => write!(f, "append {line:?}"),
            Change::Remove { number, secret, .. } if *secret => {
                write!(f, "remove line {number} (secret, not shown)")
            }
            Change::Remove { number, line, .. } => write!(f, "remove line {number} {line:?}"),
        }
    }
}

impl Kind for LineSpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let path = absolute(&self.path)?;
        let regex = regex(self)?;
        let present = self.state == Presence::Present;
        if present && self.line.is_none() {
            return Err(Error::Invalid(format!(
                "line resource for {}: `line` is required with state present",
                path.display()
            )));
        }
        if !present && self.line.is_none() && regex.is_none() {
            return Err(Error::Invalid(format!(
                "line resource for {}: give `regexp` or `line` to say which lines to remove",
                path.display()
            )));
        }
        if let Some(line) = &self.line
            && line.contains('\n')
        {
            return Err(Error::Invalid(format!(
                "line resource for {}: `line` must be one line, without a newline; use one resource per line or a `file` resource",
                path.display()
            )));
        }

        let mut changes = Vec::new();
        let old = match stat(ctx, path)? {
            None if !present => String::new(),
            None if self.create => {
                check_parent(ctx, path, "file")?;
                changes.push(Change::Create);
                String::new()
            }
            // An earlier resource would create it: report against an empty
            // file.
            None if ctx.path_planned(path) => String::new(),
            None => {
                return Err(Error::Invalid(format!(
                    "{} does not exist; declare a `file` resource before this line, or set `create: true`",
                    path.display()
                )));
            }
            Some(st) if st.kind != FileKind::File => return Err(not_a_file(path, st.kind)),
            Some(_) => read_text(ctx, path)?,
        };
        changes.extend(edits(self, &old, regex.as_ref(), ctx.sensitive));

        let mut diff = Differences::of(changes);
        if !diff.changes.is_empty() && want_diff(ctx) {
            let new = edit(path, &old, &diff.changes)?;
            diff.diff = Some(unified_diff(path, old.as_bytes(), new.as_bytes()));
        }
        if ctx.check {
            record(self, ctx, &diff.changes);
        }
        Ok(diff)
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let path = absolute(&self.path)?;
        let creating = diff.changes.contains(&Change::Create);
        let (old, perms) = match stat(ctx, path)? {
            Some(st) if st.kind == FileKind::File => (read_text(ctx, path)?, perms_of(&st)),
            Some(st) => return Err(not_a_file(path, st.kind)),
            None if creating => (
                String::new(),
                Perms {
                    uid: 0,
                    gid: 0,
                    mode: 0o644,
                },
            ),
            None => {
                return Err(Error::Invalid(format!(
                    "{} disappeared while clou was editing it; run again",
                    path.display()
                )));
            }
        };
        let new = edit(path, &old, &diff.changes)?;
        write(ctx, path, new.as_bytes(), perms)?;
        record(self, ctx, &diff.changes);
        Ok(())
    }
}

fn regex(spec: &LineSpec) -> Result<Option<Regex>, Error> {
    let Some(pattern) = &spec.regexp else {
        return Ok(None);
    };
    Regex::new(pattern).map(Some).map_err(|err| {
        Error::Invalid(format!(
            "line resource for {}: regexp {pattern:?} is not a valid regular expression: {err}",
            spec.path
        ))
    })
}

/// The edits that make `text` as asked.
fn edits(spec: &LineSpec, text: &str, regex: Option<&Regex>, secret: bool) -> Vec<Change> {
    let lines = split(text);
    let mut changes = Vec::new();
    match (spec.state, &spec.line) {
        (Presence::Present, Some(wanted)) => {
            let last = regex.and_then(|re| lines.iter().rposition(|l| re.is_match(l)));
            match last {
                Some(i) if lines[i] == wanted => {}
                Some(i) => changes.push(Change::Replace {
                    number: i + 1,
                    old: lines[i].to_owned(),
                    new: wanted.clone(),
                    secret,
                }),
                None if lines.iter().any(|l| l == wanted) => {}
                None => changes.push(Change::Append {
                    line: wanted.clone(),
                    secret,
                }),
            }
        }
        (Presence::Present, None) => {}
        (Presence::Absent, line) => {
            for (i, l) in lines.iter().enumerate() {
                let matches = match regex {
                    Some(re) => re.is_match(l),
                    None => line.as_deref() == Some(*l),
                };
                if matches {
                    changes.push(Change::Remove {
                        number: i + 1,
                        line: (*l).to_owned(),
                        secret,
                    });
                }
            }
        }
    }
    changes
}

/// Later resources may count on the file once created; a unit file
/// edited needs a daemon-reload.
fn record(spec: &LineSpec, ctx: &mut Ctx<'_>, changes: &[Change]) {
    let path = Path::new(&spec.path);
    if changes.contains(&Change::Create) {
        ctx.plan(format!("path:{}", path.display()));
    }
    if !changes.is_empty() {
        note_unit_change(ctx, path, true);
    }
}

/// The lines of `text`, without their newlines.
fn split(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    text.strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .collect()
}

/// `text` with `changes` made. Each replaced or removed line must still be
/// what was read: otherwise someone else is editing the file.
fn edit(path: &Path, text: &str, changes: &[Change]) -> Result<String, Error> {
    let mut lines: Vec<Option<&str>> = split(text).into_iter().map(Some).collect();
    let mut appended = Vec::new();
    for change in changes {
        let (number, expected, new) = match change {
            Change::Create => continue,
            Change::Append { line, .. } => {
                appended.push(line.as_str());
                continue;
            }
            Change::Replace {
                number, old, new, ..
            } => (*number, old, Some(new.as_str())),
            Change::Remove { number, line, .. } => (*number, line, None),
        };
        match lines.get_mut(number.wrapping_sub(1)) {
            Some(slot) if *slot == Some(expected.as_str()) => *slot = new,
            _ => {
                return Err(Error::Invalid(format!(
                    "line {number} of {} changed while clou was editing it; is something else changing it? Run again",
                    path.display()
                )));
            }
        }
    }
    let kept: Vec<&str> = lines
        .into_iter()
        .flatten()
        .chain(appended.iter().copied())
        .collect();
    let mut out = kept.join("\n");
    // A file without a final newline keeps it that way, unless a line is
    // appended: then every line ends with one, as tools expect.
    let ends_with_newline = text.is_empty() || text.ends_with('\n') || !appended.is_empty();
    if !kept.is_empty() && ends_with_newline {
        out.push('\n');
    }
    Ok(out)
}

fn read_text(ctx: &Ctx<'_>, path: &Path) -> Result<String, Error> {
    String::from_utf8(read(ctx, path)?).map_err(|_| {
        Error::Invalid(format!(
            "{} is not UTF-8 text; the line resource only edits text files",
            path.display()
        ))
    })
}

fn not_a_file(path: &Path, kind: FileKind) -> Error {
    Error::Invalid(format!(
        "{} is {}, not a regular file; the line resource only edits regular files",
        path.display(),
        kind.name()
    ))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::resources::{Outcome, RunState, converge};
    use crate::system::Host;

    const GRUB: &str = "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"\"\n";

    fn spec(path: &Path, regexp: Option<&str>, line: Option<&str>) -> LineSpec {
        LineSpec {
            path: path.display().to_string(),
            line: line.map(str::to_owned),
            regexp: regexp.map(str::to_owned),
            state: Presence::Present,
            create: false,
        }
    }

    fn run_with(spec: &LineSpec, check: bool, sensitive: bool) -> Result<Outcome, Error> {
        let mut run = RunState::default();
        let mut ctx = Ctx {
            sys: &Host,
            check,
            want_diff: !sensitive,
            sensitive,
            run: &mut run,
        };
        converge(spec, &mut ctx)
    }

    fn run(spec: &LineSpec) -> Result<Outcome, Error> {
        run_with(spec, false, false)
    }

    #[test]
    fn replaces_the_last_matching_line_then_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("grub");
        fs::write(&path, GRUB).unwrap();
        let s = spec(&path, Some("^GRUB_TIMEOUT="), Some("GRUB_TIMEOUT=2"));
        let out = run(&s).unwrap();
        assert_eq!(
            out.changes,
            vec![r#"replace line 2 "GRUB_TIMEOUT=5" -> "GRUB_TIMEOUT=2""#]
        );
        assert!(
            out.diff
                .unwrap()
                .contains("-GRUB_TIMEOUT=5\n+GRUB_TIMEOUT=2\n")
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            GRUB.replace("TIMEOUT=5", "TIMEOUT=2")
        );
        assert!(run(&s).unwrap().changes.is_empty());
    }

    #[test]
    fn only_the_last_of_several_matches_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf");
        fs::write(&path, "x=1\ny=0\nx=2\n").unwrap();
        run(&spec(&path, Some("^x="), Some("x=3"))).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "x=1\ny=0\nx=3\n");
    }

    #[test]
    fn appends_when_nothing_matches_and_keeps_owner_and_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf");
        fs::write(&path, "a=1\n").unwrap();
        std::os::unix::fs::chown(&path, Some(1), Some(1)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let s = spec(&path, Some("^b="), Some("b=2"));
        assert_eq!(run(&s).unwrap().changes, vec![r#"append "b=2""#]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "a=1\nb=2\n");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1, 1, 0o640)
        );
        assert!(run(&s).unwrap().changes.is_empty());
    }

    #[test]
    fn without_regexp_an_identical_line_is_enough() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf");
        fs::write(&path, "a\nb\n").unwrap();
        assert!(
            run(&spec(&path, None, Some("a")))
                .unwrap()
                .changes
                .is_empty()
        );
        // A regexp that no longer matches, with the line already there.
        assert!(
            run(&spec(&path, Some("^zzz"), Some("b")))
                .unwrap()
                .changes
                .is_empty()
        );
    }

    #[test]
    fn appending_to_a_file_without_final_newline_adds_one_between() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf");
        fs::write(&path, "a=1").unwrap();
        run(&spec(&path, None, Some("b=2"))).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a=1\nb=2\n");
    }

    #[test]
    fn replacing_keeps_a_missing_final_newline_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf");
        fs::write(&path, "a=1\nb=1").unwrap();
        run(&spec(&path, Some("^b="), Some("b=2"))).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a=1\nb=2");
    }

    #[test]
    fn absent_removes_every_matching_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf");
        fs::write(&path, "keep\n#x\ndrop 1\nkeep too\ndrop 2\n").unwrap();
        let mut s = spec(&path, Some("^drop"), None);
        s.state = Presence::Absent;
        assert_eq!(
            run(&s).unwrap().changes,
            vec![r#"remove line 3 "drop 1""#, r#"remove line 5 "drop 2""#]
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep\n#x\nkeep too\n");
        assert!(run(&s).unwrap().changes.is_empty());

        let mut by_line = spec(&path, None, Some("#x"));
        by_line.state = Presence::Absent;
        assert_eq!(
            run(&by_line).unwrap().changes,
            vec![r##"remove line 2 "#x""##]
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep\nkeep too\n");
    }

    #[test]
    fn check_mode_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("grub");
        fs::write(&path, GRUB).unwrap();
        let before = fs::metadata(&path).unwrap();
        let out = run_with(
            &spec(&path, Some("^GRUB_TIMEOUT="), Some("GRUB_TIMEOUT=2")),
            true,
            false,
        )
        .unwrap();
        assert_eq!(out.changes.len(), 1);
        assert!(out.diff.is_some());
        assert_eq!(fs::read_to_string(&path).unwrap(), GRUB);
        let after = fs::metadata(&path).unwrap();
        assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));
    }

    #[test]
    fn a_missing_file_is_an_error_unless_create() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new.conf");
        let mut s = spec(&path, None, Some("x=1"));
        let err = run(&s).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains("create: true"), "{err}");
        s.create = true;
        assert_eq!(
            run(&s).unwrap().changes,
            vec!["create (root:root 0644)", r#"append "x=1""#]
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "x=1\n");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o644));
    }

    #[test]
    fn a_missing_file_planned_by_an_earlier_resource_is_fine_in_check_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new.conf");
        let mut state = RunState::default();
        state.planned.insert(format!("path:{}", path.display()));
        let mut ctx = Ctx {
            sys: &Host,
            check: true,
            want_diff: true,
            sensitive: false,
            run: &mut state,
        };
        let out = converge(&spec(&path, None, Some("x=1")), &mut ctx).unwrap();
        assert_eq!(out.changes, vec![r#"append "x=1""#]);
    }

    #[test]
    fn an_invalid_regexp_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf");
        fs::write(&path, "a\n").unwrap();
        let err = run(&spec(&path, Some("^(unclosed"), Some("x")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"regexp "^(unclosed" is not a valid"#),
            "{err}"
        );
    }

    #[test]
    fn present_requires_line_and_line_has_no_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf");
        fs::write(&path, "a\n").unwrap();
        let err = run(&spec(&path, Some("^a"), None)).unwrap_err().to_string();
        assert!(err.contains("`line` is required"), "{err}");
        let err = run(&spec(&path, None, Some("a\nb")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a newline"), "{err}");
    }

    #[test]
    fn a_directory_in_the_way_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = run(&spec(tmp.path(), None, Some("x")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory, not a regular file"), "{err}");
    }

    #[test]
    fn sensitive_lines_are_not_shown() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("env");
        fs::write(&path, "TOKEN=old\n").unwrap();
        let out = run_with(
            &spec(&path, Some("^TOKEN="), Some("TOKEN=new")),
            false,
            true,
        )
        .unwrap();
        assert_eq!(out.changes, vec!["replace line 1 (secret, not shown)"]);
        assert_eq!(out.diff, None);
        assert_eq!(fs::read_to_string(&path).unwrap(), "TOKEN=new\n");
    }

    #[test]
    fn a_line_changed_between_reading_and_writing_is_refused() {
        let changes = vec![Change::Replace {
            number: 1,
            old: "a".into(),
            new: "b".into(),
            secret: false,
        }];
        assert!(edit(Path::new("/x"), "z\n", &changes).is_err());
        assert_eq!(edit(Path::new("/x"), "a\n", &changes).unwrap(), "b\n");
    }
}
