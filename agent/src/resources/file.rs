//! The `file` resource: a regular file whose whole content, owner, group and
//! mode the role decides (`/etc/motd`, a vhost, a systemd unit...).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use clou_protocol::resource::{Content, FileSpec, Presence};

use super::paths::{
    Attr, NewPerms, apply_attrs, attr_changes, check_parent, note_unit_change, perms_of, read,
    sha256_hex, stat, target_perms, unified_diff, vanished, want_diff, write,
};
use super::{Ctx, Differences, Error, Kind, absolute};
use crate::system::{Cmd, FileKind, Perms};

/// One difference between a file on the host and its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The file does not exist yet.
    Create {
        perms: NewPerms,
        size: String,
        secret: bool,
    },
    /// The content differs (`from`/`to` are short hashes).
    Content {
        from: String,
        to: String,
        delta: String,
        secret: bool,
        /// Where the old content is kept, when `backup` is asked.
        backup: Option<PathBuf>,
    },
    Attr(Attr),
    /// `state: absent` and something other than a directory is there.
    Remove {
        what: FileKind,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create { perms, secret, .. } if *secret => {
                write!(f, "create ({perms}, content secret, not shown)")
            }
            Change::Create { perms, size, .. } => write!(f, "create ({perms}, {size})"),
            Change::Content { secret, backup, .. } if *secret => {
                write!(f, "content changed (secret, not shown)")?;
                write_backup(f, backup.as_deref())
            }
            Change::Content {
                from,
                to,
                delta,
                backup,
                ..
            } => {
                write!(f, "content {from} -> {to} ({delta})")?;
                write_backup(f, backup.as_deref())
            }
            Change::Attr(attr) => attr.fmt(f),
            Change::Remove { what } => write!(f, "remove ({})", what.name()),
        }
    }
}

fn write_backup(f: &mut fmt::Formatter<'_>, backup: Option<&Path>) -> fmt::Result {
    match backup {
        Some(path) => write!(f, ", old content kept as {}", path.display()),
        None => Ok(()),
    }
}

/// The wanted content, decoded.
fn wanted_bytes(spec: &FileSpec) -> Result<Option<Vec<u8>>, Error> {
    let data = match &spec.content {
        None => return Ok(None),
        Some(Content::Text(text)) => return Ok(Some(text.clone().into_bytes())),
        Some(Content::Base64(data)) => data,
    };
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map(Some)
        .map_err(|err| {
            Error::Invalid(format!(
                "the content of {} is not valid base64 ({err}); the controller sent a broken plan",
                spec.path
            ))
        })
}

/// What a converge leaves behind for later resources (in check mode,
/// what it would leave).
fn record(spec: &FileSpec, ctx: &mut Ctx<'_>, changes: &[Change]) {
    let path = Path::new(&spec.path);
    if spec.state == Presence::Present {
        ctx.plan(format!("path:{}", path.display()));
    }
    let content_changed = changes.iter().any(|c| !matches!(c, Change::Attr(_)));
    if content_changed {
        note_unit_change(ctx, path, spec.state == Presence::Present);
    }
}

impl Kind for FileSpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let path = absolute(&self.path)?;
        let stat = stat(ctx, path)?;
        let mut diff = Differences::none();
        if self.state == Presence::Absent {
            match stat {
                None => {}
                Some(st) if st.kind == FileKind::Dir => {
                    return Err(Error::Invalid(format!(
                        "{} is a directory, not a file; use a `directory` resource with state absent to remove it",
                        path.display()
                    )));
                }
                Some(st) => diff.changes.push(Change::Remove { what: st.kind }),
            }
            if ctx.check {
                record(self, ctx, &diff.changes);
            }
            return Ok(diff);
        }

        let wanted = wanted_bytes(self)?;
        let secret = ctx.sensitive;
        match stat {
            None => {
                check_parent(ctx, path, "file")?;
                let perms = NewPerms::resolve(
                    ctx,
                    self.owner.as_deref(),
                    self.group.as_deref(),
                    self.mode,
                    0o644,
                )?;
                let content = wanted.unwrap_or_default();
                if want_diff(ctx) {
                    diff.diff = Some(unified_diff(path, b"", &content));
                }
                diff.changes.push(Change::Create {
                    perms,
                    size: describe(&content),
                    secret,
                });
            }
            Some(st) if st.kind != FileKind::File => {
                return Err(Error::Invalid(format!(
                    "{} is {}, not a regular file; clou does not replace it: move it away or declare the right resource for it",
                    path.display(),
                    st.kind.name()
                )));
            }
            Some(st) => {
                if let Some(content) = wanted {
                    let old = read(ctx, path)?;
                    if old != content {
                        if want_diff(ctx) {
                            diff.diff = Some(unified_diff(path, &old, &content));
                        }
                        let backup = if self.backup {
                            Some(backup_path(ctx, path, SystemTime::now())?)
                        } else {
                            None
                        };
                        diff.changes.push(Change::Content {
                            from: short_hash(&old),
                            to: short_hash(&content),
                            delta: delta(&old, &content),
                            secret,
                            backup,
                        });
                    }
                }
                diff.changes.extend(
                    attr_changes(
                        ctx,
                        &st,
                        self.owner.as_deref(),
                        self.group.as_deref(),
                        self.mode,
                    )?
                    .into_iter()
                    .map(Change::Attr),
                );
            }
        }
        if ctx.check {
            record(self, ctx, &diff.changes);
        }
        Ok(diff)
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let path = absolute(&self.path)?;
        let attrs: Vec<&Attr> = diff
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Attr(a) => Some(a),
                _ => None,
            })
            .collect();
        let mut content_written = false;
        for change in &diff.changes {
            match change {
                Change::Remove { .. } => ctx
                    .sys
                    .remove_file(path)
                    .map_err(Error::io(format!("cannot remove {}", path.display())))?,
                Change::Create { perms, .. } => {
                    let content = wanted_bytes(self)?.unwrap_or_default();
                    write_validated(self, ctx, path, &content, perms.perms()?)?;
                    content_written = true;
                }
                Change::Content { backup, .. } => {
                    let st = stat(ctx, path)?.ok_or_else(|| vanished(path))?;
                    if let Some(backup) = backup {
                        let old = read(ctx, path)?;
                        write(ctx, backup, &old, perms_of(&st))?;
                    }
                    let content = wanted_bytes(self)?.unwrap_or_default();
                    // One atomic write gives content, owner and mode at once.
                    write_validated(self, ctx, path, &content, target_perms(&st, &attrs)?)?;
                    content_written = true;
                }
                Change::Attr(_) => {}
            }
        }
        if !content_written && !attrs.is_empty() {
            let st = stat(ctx, path)?.ok_or_else(|| vanished(path))?;
            apply_attrs(ctx, path, &st, &attrs)?;
        }
        record(self, ctx, &diff.changes);
        Ok(())
    }
}

/// Writes like [`write()`], but first has `validate` check the new content
/// in a temporary file beside the target; the target is only replaced (by
/// a rename) when the check passes.
fn write_validated(
    spec: &FileSpec,
    ctx: &Ctx<'_>,
    path: &Path,
    content: &[u8],
    perms: Perms,
) -> Result<(), Error> {
    let Some(validate) = &spec.validate else {
        return write(ctx, path, content, perms);
    };
    if validate.is_empty() || !validate.iter().any(|a| a.contains("%s")) {
        return Err(Error::Invalid(format!(
            "{}: `validate` must be a command with %s for the file to check, e.g. [visudo, -c, -f, \"%s\"]",
            path.display()
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.clou-validate"));
    write(ctx, &tmp, content, perms)?;
    let tmp_text = tmp.display().to_string();
    let cmd = Cmd::new(validate.iter().map(|a| a.replace("%s", &tmp_text)));
    let checked = ctx.run(&cmd);
    let result = match checked {
        Ok(out) if out.success() => ctx.sys.rename(&tmp, path).map_err(Error::io(format!(
            "cannot move the checked content to {}",
            path.display()
        ))),
        Ok(out) => Err(Error::Invalid(format!(
            "the new content of {} fails its check `{}` (exit {}), so the file was left as it was:\n{}",
            path.display(),
            validate.join(" "),
            out.code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "signal".into()),
            out.tail()
        ))),
        Err(err) => Err(err),
    };
    if result.is_err() {
        let _ = ctx.sys.remove_file(&tmp);
    }
    result
}

/// `sha256:` and the first 8 hex digits, enough to tell versions apart.
pub fn short_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", &sha256_hex(bytes)[..8])
}

/// A size in words: `empty`, `12 lines` or `512 bytes` (binary).
fn describe(content: &[u8]) -> String {
    match std::str::from_utf8(content) {
        _ if content.is_empty() => "empty".to_owned(),
        Ok(text) => plural(text.lines().count(), "line"),
        Err(_) => plural(content.len(), "byte"),
    }
}

/// How much changed: `+3 -1 lines`, or `10 -> 12 bytes` for binary content.
fn delta(old: &[u8], new: &[u8]) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(old), Ok(new)) => {
            let diff = similar::TextDiff::from_lines(old, new);
            let (mut added, mut removed) = (0, 0);
            for change in diff.iter_all_changes() {
                match change.tag() {
                    similar::ChangeTag::Insert => added += 1,
                    similar::ChangeTag::Delete => removed += 1,
                    similar::ChangeTag::Equal => {}
                }
            }
            format!("+{added} -{removed} lines")
        }
        _ => format!("{} -> {} bytes", old.len(), new.len()),
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `PATH.clou-YYYYMMDDTHHMMSSZ` for `now`, with `-2`, `-3`... when several
/// backups fall in the same second.
fn backup_path(ctx: &Ctx<'_>, path: &Path, now: SystemTime) -> Result<PathBuf, Error> {
    let base = format!("{}.clou-{}", path.display(), crate::clock::compact(now));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while stat(ctx, &candidate)?.is_some() {
        n += 1;
        candidate = PathBuf::from(format!("{base}-{n}"));
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use clou_protocol::resource::Mode;

    use super::*;
    use crate::resources::paths::unit_name;
    use crate::resources::{Outcome, RunState, converge};
    use crate::system::{Host, System};

    fn spec(path: &Path, content: &str) -> FileSpec {
        FileSpec {
            path: path.display().to_string(),
            state: Presence::Present,
            content: Some(Content::Text(content.to_owned())),
            owner: None,
            group: None,
            mode: None,
            backup: false,
            validate: None,
        }
    }

    fn run(spec: &FileSpec, check: bool, sensitive: bool) -> Result<Outcome, Error> {
        let mut run = RunState::default();
        run_in(spec, check, sensitive, &mut run)
    }

    fn run_in(
        spec: &FileSpec,
        check: bool,
        sensitive: bool,
        run: &mut RunState,
    ) -> Result<Outcome, Error> {
        let mut ctx = Ctx {
            sys: &Host,
            check,
            want_diff: !sensitive,
            sensitive,
            run,
        };
        converge(spec, &mut ctx)
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn content_that_fails_validate_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sudoers");
        fs::write(&path, "good\n").unwrap();
        // A real checker: grep fails when the content lacks "good".
        let mut bad = spec(&path, "broken\n");
        bad.validate = Some(vec!["grep".into(), "-q".into(), "good".into(), "%s".into()]);
        let err = run(&bad, false, false).unwrap_err().to_string();
        assert!(err.contains("fails its check `grep -q good %s`"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "good\n");
        assert_eq!(
            Host.list_dir(dir.path()).unwrap(),
            vec!["sudoers"],
            "no temporary left"
        );

        let mut good = spec(&path, "still good\n");
        good.validate = bad.validate.clone();
        run(&good, false, false).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "still good\n");

        let mut no_placeholder = spec(&path, "x\n");
        no_placeholder.validate = Some(vec!["true".into()]);
        let err = run(&no_placeholder, false, false).unwrap_err().to_string();
        assert!(err.contains("with %s"), "{err}");
    }

    #[test]
    fn creates_a_missing_file_as_root_0644_and_then_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("motd");
        let out = run(&spec(&path, "hello\nworld\n"), false, false).unwrap();
        assert_eq!(out.changes, vec!["create (root:root 0644, 2 lines)"]);
        let diff = out.diff.unwrap();
        assert!(diff.contains(&format!("--- {} (on host)", path.display())));
        assert!(diff.contains(&format!("+++ {} (planned)", path.display())));
        assert!(diff.contains("+hello\n"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "hello\nworld\n");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid(), mode_of(&path)), (0, 0, 0o644));

        let again = run(&spec(&path, "hello\nworld\n"), false, false).unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert_eq!(again.diff, None);
    }

    #[test]
    fn changed_content_is_reported_with_hashes_line_counts_and_a_diff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.conf");
        fs::write(&path, "a\nb\nc\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let out = run(&spec(&path, "a\nB\nc\nd\n"), false, false).unwrap();
        let old = &sha256_hex(b"a\nb\nc\n")[..8];
        let new = &sha256_hex(b"a\nB\nc\nd\n")[..8];
        assert_eq!(
            out.changes,
            vec![format!(
                "content sha256:{old} -> sha256:{new} (+2 -1 lines)"
            )]
        );
        let diff = out.diff.unwrap();
        assert!(diff.contains("-b\n+B\n"), "{diff}");
        assert!(diff.contains("@@"), "{diff}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\nB\nc\nd\n");
        // The mode was not asked for: it stays.
        assert_eq!(mode_of(&path), 0o640);
    }

    #[test]
    fn owner_group_and_mode_change_without_rewriting_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut s = spec(&path, "x");
        s.owner = Some("daemon".into());
        s.group = Some("nogroup".into());
        s.mode = Some(Mode(0o600));
        let out = run(&s, false, false).unwrap();
        assert_eq!(
            out.changes,
            vec![
                "owner root -> daemon",
                "group root -> nogroup",
                "mode 0644 -> 0600"
            ]
        );
        assert_eq!(out.diff, None);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid(), mode_of(&path)), (1, 65534, 0o600));
        assert!(run(&s, false, false).unwrap().changes.is_empty());
    }

    #[test]
    fn setuid_bits_survive_an_owner_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool");
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o4755)).unwrap();
        let mut s = spec(&path, "#!/bin/sh\n");
        s.owner = Some("daemon".into());
        run(&s, false, false).unwrap();
        assert_eq!(mode_of(&path), 0o4755);
        assert_eq!(fs::metadata(&path).unwrap().uid(), 1);
    }

    #[test]
    fn content_and_mode_change_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old\n").unwrap();
        let mut s = spec(&path, "new\n");
        s.mode = Some(Mode(0o600));
        let out = run(&s, false, false).unwrap();
        assert_eq!(out.changes.len(), 2);
        assert_eq!(out.changes[1], "mode 0644 -> 0600");
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn check_mode_reports_but_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old\n").unwrap();
        let before = fs::symlink_metadata(&path).unwrap();
        let mut s = spec(&path, "new\n");
        s.mode = Some(Mode(0o600));
        s.backup = true;
        let out = run(&s, true, false).unwrap();
        assert_eq!(out.changes.len(), 2);
        assert!(out.diff.unwrap().contains("+new"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
        let after = fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            (before.mode(), before.mtime(), before.ino()),
            (after.mode(), after.mtime(), after.ino())
        );
        assert_eq!(Host.list_dir(dir.path()).unwrap(), vec!["f"]);

        let missing = dir.path().join("new");
        let out = run(&spec(&missing, "x"), true, false).unwrap();
        assert_eq!(out.changes, vec!["create (root:root 0644, 1 line)"]);
        assert!(!missing.exists());
    }

    #[test]
    fn sensitive_content_never_appears_in_changes_or_diff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let out = run(&spec(&path, "password=hunter2\n"), false, true).unwrap();
        assert_eq!(
            out.changes,
            vec!["create (root:root 0644, content secret, not shown)"]
        );
        assert_eq!(out.diff, None);
        let out = run(&spec(&path, "password=hunter3\n"), false, true).unwrap();
        assert_eq!(out.changes, vec!["content changed (secret, not shown)"]);
        assert_eq!(out.diff, None);
        assert_eq!(fs::read_to_string(&path).unwrap(), "password=hunter3\n");
    }

    #[test]
    fn backup_keeps_the_old_content_beside_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sshd_config");
        fs::write(&path, "Port 22\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let mut s = spec(&path, "Port 2222\n");
        s.backup = true;
        let out = run(&s, false, false).unwrap();
        let names = Host.list_dir(dir.path()).unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        let backup = dir.path().join(&names[1]);
        assert!(names[1].starts_with("sshd_config.clou-"), "{names:?}");
        assert!(out.changes[0].ends_with(&format!("kept as {}", backup.display())));
        assert_eq!(fs::read_to_string(&backup).unwrap(), "Port 22\n");
        assert_eq!(mode_of(&backup), 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), "Port 2222\n");
    }

    #[test]
    fn base64_content_is_decoded_and_binary_diffs_say_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, [0xffu8, 0xfe]).unwrap();
        let mut s = spec(&path, "");
        s.content = Some(Content::Base64("AAEC/w==".into()));
        let out = run(&s, false, false).unwrap();
        assert!(
            out.changes[0].ends_with("(2 -> 4 bytes)"),
            "{:?}",
            out.changes
        );
        assert_eq!(
            out.diff.as_deref(),
            Some("binary content differs (2 -> 4 bytes)\n")
        );
        assert_eq!(fs::read(&path).unwrap(), [0, 1, 2, 0xff]);

        s.content = Some(Content::Base64("not base64!".into()));
        let err = run(&s, false, false).unwrap_err().to_string();
        assert!(err.contains("not valid base64"), "{err}");
    }

    #[test]
    fn without_content_a_missing_file_is_created_empty_and_content_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        let mut s = spec(&path, "");
        s.content = None;
        s.mode = Some(Mode(0o600));
        let out = run(&s, false, false).unwrap();
        assert_eq!(out.changes, vec!["create (root:root 0600, empty)"]);
        assert_eq!(fs::read(&path).unwrap(), b"");
        fs::write(&path, "written by the app\n").unwrap();
        assert!(run(&s, false, false).unwrap().changes.is_empty());
    }

    #[test]
    fn absent_removes_a_file_and_refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.conf");
        fs::write(&path, "x").unwrap();
        let mut s = spec(&path, "");
        s.content = None;
        s.state = Presence::Absent;
        assert_eq!(
            run(&s, false, false).unwrap().changes,
            vec!["remove (a regular file)"]
        );
        assert!(!path.exists());
        assert!(run(&s, false, false).unwrap().changes.is_empty());

        fs::create_dir(&path).unwrap();
        let err = run(&s, false, false).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert!(path.is_dir());
    }

    #[test]
    fn a_directory_or_link_in_the_way_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thing");
        fs::create_dir(&path).unwrap();
        let err = run(&spec(&path, "x"), false, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory, not a regular file"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("thing", &link).unwrap();
        let err = run(&spec(&link, "x"), false, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
    }

    #[test]
    fn a_missing_parent_is_an_error_unless_planned_in_check_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf.d/x.conf");
        let err = run(&spec(&path, "x"), false, false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "parent directory {} does not exist; declare a directory resource before this file",
                dir.path().join("conf.d").display()
            )
        );
        let mut state = RunState::default();
        state
            .planned
            .insert(format!("path:{}", dir.path().join("conf.d").display()));
        let out = run_in(&spec(&path, "x"), true, false, &mut state).unwrap();
        assert_eq!(out.changes, vec!["create (root:root 0644, 1 line)"]);
        assert!(state.planned.contains(&format!("path:{}", path.display())));
    }

    #[test]
    fn unknown_owner_is_an_error_unless_planned_in_check_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut s = spec(&path, "x");
        s.owner = Some("clou-no-such-user".into());
        let err = run(&s, false, false).unwrap_err().to_string();
        assert!(err.contains("declare a `user` resource"), "{err}");
        let mut state = RunState::default();
        state.planned.insert("user:clou-no-such-user".into());
        let out = run_in(&s, true, false, &mut state).unwrap();
        assert_eq!(
            out.changes,
            vec!["create (clou-no-such-user:root 0644, 1 line)"]
        );
    }

    #[test]
    fn unit_files_mark_units_changed() {
        assert_eq!(
            unit_name(Path::new("/etc/systemd/system/nginx.service")).as_deref(),
            Some("nginx")
        );
        assert_eq!(
            unit_name(Path::new("/lib/systemd/system/backup.timer")).as_deref(),
            Some("backup.timer")
        );
        assert_eq!(
            unit_name(Path::new(
                "/etc/systemd/system/php-fpm.service.d/limits.conf"
            ))
            .as_deref(),
            Some("php-fpm")
        );
        assert_eq!(
            unit_name(Path::new("/usr/lib/systemd/system/a.service")).as_deref(),
            Some("a")
        );
        assert_eq!(unit_name(Path::new("/etc/systemd/system.conf")), None);
        assert_eq!(unit_name(Path::new("/etc/nginx/nginx.conf")), None);

        let s = spec(Path::new("/etc/systemd/system/clou-x.service"), "[Unit]\n");
        let mut state = RunState::default();
        let mut ctx = Ctx {
            sys: &Host,
            check: false,
            want_diff: true,
            sensitive: false,
            run: &mut state,
        };
        let mode_only = Change::Attr(Attr::Mode {
            from: Mode(0o600),
            to: Mode(0o644),
        });
        record(&s, &mut ctx, &[mode_only]);
        assert!(
            !ctx.run.units_changed,
            "a mode change needs no daemon-reload"
        );
        let created = Change::Create {
            perms: NewPerms::root(0o644),
            size: "1 line".into(),
            secret: false,
        };
        record(&s, &mut ctx, &[created]);
        assert!(ctx.run.units_changed);
        assert!(ctx.planned("unit:clou-x"));
    }

    #[test]
    fn relative_paths_are_refused() {
        let err = run(&spec(Path::new("etc/motd"), "x"), false, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an absolute path"), "{err}");
    }
}
