//! The `archive` resource: a release tarball (Paheko, a Nextcloud app...)
//! downloaded, checked against its SHA-256, unpacked beside the previous
//! releases, and made current by one atomic link switch.
//!
//! ```text
//! DEST/releases/1.3.11/           an older release, kept for rollback
//! DEST/releases/.1.3.11.sha256    the archive it came from
//! DEST/releases/1.3.12/
//! DEST/releases/.1.3.12.sha256
//! DEST/current -> releases/1.3.12
//! ```
//!
//! A release directory is never changed once unpacked: the recorded
//! checksum tells whether `releases/VERSION` holds the asked archive, and a
//! different archive under the same version is refused. Nothing is
//! unpacked before its checksum is verified; an interrupted unpack leaves
//! only hidden `.VERSION.download` / `.VERSION.partial` leftovers, removed
//! by the next run.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

use clou_protocol::resource::ArchiveSpec;

use super::paths::{NewPerms, create_dir, missing_parents, read, sha256_hex, stat, write};
use super::{Ctx, Differences, Error, Kind, absolute, command_failed};
use crate::system::{Cmd, FileKind, Perms};

/// One step towards the asked release being current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `DEST`, its missing parents or `DEST/releases`: root:root 0755.
    CreateDir(PathBuf),
    Unpack {
        version: String,
    },
    Switch {
        from: Option<String>,
        to: String,
    },
    Prune {
        version: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateDir(path) => {
                write!(f, "create directory {} (root:root 0755)", path.display())
            }
            Change::Unpack { version } => write!(f, "download and unpack {version}"),
            Change::Switch { from: None, to } => write!(f, "switch current (none) -> {to}"),
            Change::Switch {
                from: Some(from),
                to,
            } => write!(f, "switch current {from} -> {to}"),
            Change::Prune { version } => write!(f, "remove old release {version}"),
        }
    }
}

/// Where everything of one archive spec lives.
#[derive(Debug)]
struct Layout {
    dest: PathBuf,
    releases: PathBuf,
    /// `releases/VERSION`.
    release: PathBuf,
    /// `releases/.VERSION.sha256`: the checksum the release was unpacked
    /// from.
    record: PathBuf,
    download: PathBuf,
    partial: PathBuf,
    current: PathBuf,
    /// What `current` holds when this release is current.
    link: String,
}

impl Layout {
    fn record_of(releases: &Path, version: &str) -> PathBuf {
        releases.join(format!(".{version}.sha256"))
    }
}

/// Checks the spec and names its paths.
fn layout(spec: &ArchiveSpec) -> Result<Layout, Error> {
    let dest = absolute(&spec.dest)?;
    let v = &spec.version;
    if v.is_empty() || v.starts_with('.') || v.contains('/') || v.contains('\0') {
        return Err(Error::Invalid(format!(
            "archive {}: version {v:?} cannot name a release directory; use something like \"1.3.12\"",
            spec.dest
        )));
    }
    if spec.sha256.len() != 64 || !spec.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "archive {}: sha256 {:?} is not 64 hex digits; give the archive's SHA-256 (sha256sum prints it)",
            spec.dest, spec.sha256
        )));
    }
    let scheme_ok = ["https://", "http://", "file:///"]
        .iter()
        .any(|s| spec.url.starts_with(s));
    if !scheme_ok {
        return Err(Error::Invalid(format!(
            "archive {}: url {:?} must start with https://, http:// or file:///",
            spec.dest, spec.url
        )));
    }
    let releases = dest.join("releases");
    Ok(Layout {
        dest: dest.to_path_buf(),
        release: releases.join(v),
        record: Layout::record_of(&releases, v),
        download: releases.join(format!(".{v}.download")),
        partial: releases.join(format!(".{v}.partial")),
        current: dest.join("current"),
        link: format!("releases/{v}"),
        releases,
    })
}

fn expected(spec: &ArchiveSpec) -> String {
    spec.sha256.to_ascii_lowercase()
}

/// `OWNER:GROUP` for `chown -R`, when either is given; checks that the
/// accounts exist (or, in check mode, would).
fn chown_spec(spec: &ArchiveSpec, ctx: &Ctx<'_>) -> Result<Option<String>, Error> {
    if spec.owner.is_none() && spec.group.is_none() {
        return Ok(None);
    }
    let accounts = ctx.accounts()?;
    let owner = spec.owner.as_deref().unwrap_or("root");
    let group = spec.group.as_deref().unwrap_or("root");
    ctx.uid(&accounts, owner)?;
    ctx.gid(&accounts, group)?;
    Ok(Some(format!("{owner}:{group}")))
}

/// Fetches the archive into `to`.
fn download(spec: &ArchiveSpec, ctx: &Ctx<'_>, to: &Path) -> Result<(), Error> {
    if let Some(source) = spec.url.strip_prefix("file://") {
        let source = Path::new(source);
        let data = ctx
            .sys
            .read(source)
            .map_err(Error::io(format!("cannot read {}", source.display())))?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "archive {}: {} does not exist on this host",
                    spec.dest, spec.url
                ))
            })?;
        let perms = Perms {
            uid: 0,
            gid: 0,
            mode: 0o600,
        };
        return write(ctx, to, &data, perms);
    }
    let to = to.display().to_string();
    let curl = Cmd::new(["curl", "-fsSL", "--retry", "2", "-o", &to, &spec.url]);
    // Debian's minimal images may ship wget without curl, or neither.
    let (cmd, out) = match ctx.sys.run(&curl) {
        Ok(out) => (curl, out),
        Err(_) => {
            let wget = Cmd::new(["wget", "-q", "-O", &to, &spec.url]);
            match ctx.sys.run(&wget) {
                Ok(out) => (wget, out),
                Err(_) => {
                    return Err(Error::Invalid(format!(
                        "archive {}: neither curl nor wget can run on this host; install curl \
                         (declare `package: {{name: curl}}` before this archive)",
                        spec.dest
                    )));
                }
            }
        }
    };
    if out.success() {
        Ok(())
    } else {
        Err(command_failed(&cmd, &out))
    }
}

/// Downloads, verifies and unpacks into `releases/VERSION`. On failure
/// nothing but hidden leftovers can remain, and they are removed.
fn unpack(spec: &ArchiveSpec, ctx: &Ctx<'_>, l: &Layout) -> Result<(), Error> {
    // Leftovers of an interrupted run.
    if stat(ctx, &l.download)?.is_some() {
        remove_file(ctx, &l.download)?;
    }
    if stat(ctx, &l.partial)?.is_some() {
        remove_tree(ctx, &l.partial)?;
    }
    let result = unpack_steps(spec, ctx, l);
    if result.is_err() {
        // Best effort: the error being reported matters more than a
        // leftover, which the next run removes anyway.
        let _ = ctx.sys.remove_file(&l.download);
        let _ = ctx.sys.remove_tree(&l.partial);
    }
    result
}

fn unpack_steps(spec: &ArchiveSpec, ctx: &Ctx<'_>, l: &Layout) -> Result<(), Error> {
    download(spec, ctx, &l.download)?;
    let actual = sha256_hex(&read(ctx, &l.download)?);
    let expected = expected(spec);
    if actual != expected {
        return Err(Error::Invalid(format!(
            "archive {} has sha256 {actual}, expected {expected}; nothing was unpacked. \
             Check where the archive comes from before updating sha256",
            spec.url
        )));
    }
    create_dir(ctx, &l.partial, &NewPerms::root(0o755))?;
    let download = l.download.display().to_string();
    let partial = l.partial.display().to_string();
    ctx.run_ok(&Cmd::new([
        "tar".to_owned(),
        "-x".to_owned(),
        "-f".to_owned(),
        download,
        "-C".to_owned(),
        partial.clone(),
        format!("--strip-components={}", spec.strip_components),
        "--no-same-owner".to_owned(),
    ]))?;
    if let Some(owner) = chown_spec(spec, ctx)? {
        ctx.run_ok(&Cmd::new(["chown", "-R", &owner, &partial]))?;
    }
    // Recorded before the rename: a release directory always has one.
    let perms = Perms {
        uid: 0,
        gid: 0,
        mode: 0o644,
    };
    write(ctx, &l.record, format!("{expected}\n").as_bytes(), perms)?;
    ctx.sys
        .rename(&l.partial, &l.release)
        .map_err(Error::io(format!(
            "cannot rename {} to {}",
            l.partial.display(),
            l.release.display()
        )))?;
    remove_file(ctx, &l.download)
}

/// The releases to remove: all but the `keep` highest versions besides
/// the one becoming current, and never one a tenant still runs.
fn prunable(spec: &ArchiveSpec, ctx: &Ctx<'_>, l: &Layout) -> Result<Vec<String>, Error> {
    let names = ctx
        .sys
        .list_dir(&l.releases)
        .map_err(Error::io(format!("cannot list {}", l.releases.display())))?;
    let in_use = tenants_releases(ctx, l)?;
    let mut others = Vec::new();
    for name in names {
        if name.starts_with('.') || name == spec.version || in_use.contains(&name) {
            continue;
        }
        if let Some(st) = stat(ctx, &l.releases.join(&name))?
            && st.kind == FileKind::Dir
        {
            others.push(name);
        }
    }
    others.sort_by(|a, b| version_cmp(b, a));
    let keep = usize::try_from(spec.keep).unwrap_or(usize::MAX);
    Ok(others.into_iter().skip(keep).collect())
}

/// The releases the tenants' links (`DEST/tenants/*`, kept by the
/// `release` resource) point to: a tenant not upgraded yet, or rolled
/// back, still runs its release.
fn tenants_releases(ctx: &Ctx<'_>, l: &Layout) -> Result<Vec<String>, Error> {
    let tenants = l.dest.join("tenants");
    if stat(ctx, &tenants)?.is_none_or(|st| st.kind != FileKind::Dir) {
        return Ok(Vec::new());
    }
    let names = ctx
        .sys
        .list_dir(&tenants)
        .map_err(Error::io(format!("cannot list {}", tenants.display())))?;
    let mut used = Vec::new();
    for name in names {
        let link = tenants.join(&name);
        if let Ok(target) = ctx.sys.read_link(&link) {
            let target = target.to_string_lossy();
            if let Some(version) = super::release::release_of(&target) {
                used.push(version.to_owned());
            }
        }
    }
    Ok(used)
}

fn record(ctx: &mut Ctx<'_>, l: &Layout) {
    for path in [&l.dest, &l.releases, &l.release, &l.current] {
        ctx.plan(format!("path:{}", path.display()));
    }
}

impl Kind for ArchiveSpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let l = layout(self)?;
        // Early, so a typo fails before anything is downloaded.
        chown_spec(self, ctx)?;
        let mut changes = Vec::new();

        let releases_exist = match stat(ctx, &l.dest)? {
            None => {
                changes.extend(
                    missing_parents(ctx, &l.dest)?
                        .into_iter()
                        .map(Change::CreateDir),
                );
                changes.push(Change::CreateDir(l.dest.clone()));
                false
            }
            Some(st) if is_dir(st.kind) => match stat(ctx, &l.releases)? {
                None => false,
                Some(st) if is_dir(st.kind) => true,
                Some(st) => return Err(not_a_dir(&l.releases, st.kind)),
            },
            Some(st) => return Err(not_a_dir(&l.dest, st.kind)),
        };
        if !releases_exist {
            changes.push(Change::CreateDir(l.releases.clone()));
        }

        let release = if releases_exist {
            stat(ctx, &l.release)?
        } else {
            None
        };
        match release {
            None => changes.push(Change::Unpack {
                version: self.version.clone(),
            }),
            Some(st) if st.kind == FileKind::Dir => check_recorded(self, ctx, &l)?,
            Some(st) => return Err(not_a_dir(&l.release, st.kind)),
        }

        let current = if releases_exist || stat(ctx, &l.dest)?.is_some() {
            stat(ctx, &l.current)?
        } else {
            None
        };
        match current {
            None => changes.push(Change::Switch {
                from: None,
                to: self.version.clone(),
            }),
            Some(st) if st.kind == FileKind::Symlink => {
                let target = ctx.sys.read_link(&l.current).map_err(Error::io(format!(
                    "cannot read the link {}",
                    l.current.display()
                )))?;
                let target = target.to_string_lossy();
                if target != l.link {
                    let from = target.strip_prefix("releases/").unwrap_or(&target);
                    ctx.run
                        .shared_before
                        .insert(self.dest.clone(), from.to_owned());
                    changes.push(Change::Switch {
                        from: Some(from.to_owned()),
                        to: self.version.clone(),
                    });
                }
            }
            Some(st) => {
                return Err(Error::Invalid(format!(
                    "{} is {}, not a symbolic link; clou never deletes it: move it away so that \
                     `current` can point to releases/{}",
                    l.current.display(),
                    st.kind.name(),
                    self.version
                )));
            }
        }

        if releases_exist {
            for version in prunable(self, ctx, &l)? {
                changes.push(Change::Prune { version });
            }
        }
        if ctx.check {
            record(ctx, &l);
        }
        Ok(Differences::of(changes))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let l = layout(self)?;
        for change in &diff.changes {
            match change {
                Change::CreateDir(path) => create_dir(ctx, path, &NewPerms::root(0o755))?,
                Change::Unpack { .. } => unpack(self, ctx, &l)?,
                Change::Switch { .. } => ctx
                    .sys
                    .symlink_atomic(Path::new(&l.link), &l.current)
                    .map_err(Error::io(format!(
                        "cannot point {} to {}",
                        l.current.display(),
                        l.link
                    )))?,
                Change::Prune { version } => {
                    remove_tree(ctx, &l.releases.join(version))?;
                    let record = Layout::record_of(&l.releases, version);
                    if stat(ctx, &record)?.is_some() {
                        remove_file(ctx, &record)?;
                    }
                }
            }
        }
        record(ctx, &l);
        Ok(())
    }
}

/// An existing `releases/VERSION` must come from the same archive.
fn check_recorded(spec: &ArchiveSpec, ctx: &Ctx<'_>, l: &Layout) -> Result<(), Error> {
    let recorded = ctx
        .sys
        .read(&l.record)
        .map_err(Error::io(format!("cannot read {}", l.record.display())))?;
    let Some(recorded) = recorded else {
        return Err(Error::Invalid(format!(
            "{} exists but was not unpacked by clou (no {}); choose a new version name, or move it away",
            l.release.display(),
            l.record.display()
        )));
    };
    let recorded = String::from_utf8_lossy(&recorded)
        .trim()
        .to_ascii_lowercase();
    if recorded != expected(spec) {
        return Err(Error::Invalid(format!(
            "{} was unpacked from an archive with sha256 {recorded}, not {}; a release is never \
             changed in place: choose a new version name",
            l.release.display(),
            expected(spec)
        )));
    }
    Ok(())
}

fn is_dir(kind: FileKind) -> bool {
    // A symlinked DEST (/opt/app -> /srv/app) is fine.
    matches!(kind, FileKind::Dir | FileKind::Symlink)
}

fn not_a_dir(path: &Path, kind: FileKind) -> Error {
    Error::Invalid(format!(
        "{} is {}, not a directory; clou does not replace it: move it away first",
        path.display(),
        kind.name()
    ))
}

fn remove_file(ctx: &Ctx<'_>, path: &Path) -> Result<(), Error> {
    ctx.sys
        .remove_file(path)
        .map_err(Error::io(format!("cannot remove {}", path.display())))
}

fn remove_tree(ctx: &Ctx<'_>, path: &Path) -> Result<(), Error> {
    ctx.sys
        .remove_tree(path)
        .map_err(Error::io(format!("cannot remove {}", path.display())))
}

/// Orders release names as versions: digit runs compare as numbers, so
/// `1.3.9 < 1.3.12` and `9 < 10`.
pub(crate) fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (nx, rx) = split_digits(x);
                let (ny, ry) = split_digits(y);
                let (nx, ny) = (trim_zeros(nx), trim_zeros(ny));
                let ord = nx.len().cmp(&ny.len()).then_with(|| nx.cmp(ny));
                if ord != Ordering::Equal {
                    return ord;
                }
                (x, y) = (rx, ry);
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| **b == b'0').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::fs;
    use std::io;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    use super::*;
    use crate::resources::{Outcome, RunState, converge};
    use crate::system::testing::Recorder;
    use crate::system::{Host, Output, System};

    /// A `project-VERSION/` tarball with `files`, and its sha256.
    fn tarball(dir: &Path, version: &str, files: &[(&str, &str)]) -> (PathBuf, String) {
        let src = dir.join(format!("src-{version}"));
        let top = src.join(format!("project-{version}"));
        for (name, content) in files {
            let path = top.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        let archive = dir.join(format!("project-{version}.tar.gz"));
        let status = Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg(format!("project-{version}"))
            .status()
            .unwrap();
        assert!(status.success());
        let sha = sha256_hex(&fs::read(&archive).unwrap());
        (archive, sha)
    }

    fn spec(archive: &Path, sha: &str, dest: &Path, version: &str) -> ArchiveSpec {
        ArchiveSpec {
            url: format!("file://{}", archive.display()),
            sha256: sha.to_owned(),
            dest: dest.display().to_string(),
            version: version.to_owned(),
            strip_components: 1,
            owner: None,
            group: None,
            keep: 2,
        }
    }

    fn run_on(sys: &dyn System, spec: &ArchiveSpec, check: bool) -> Result<Outcome, Error> {
        let mut run = RunState::default();
        let mut ctx = Ctx {
            sys,
            check,
            want_diff: true,
            sensitive: false,
            run: &mut run,
        };
        converge(spec, &mut ctx)
    }

    fn run(spec: &ArchiveSpec) -> Result<Outcome, Error> {
        run_on(&Host, spec, false)
    }

    fn hidden(releases: &Path) -> Vec<String> {
        Host.list_dir(releases)
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with('.') && !n.ends_with(".sha256"))
            .collect()
    }

    #[test]
    fn unpacks_verifies_and_switches_current_then_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (archive, sha) = tarball(
            tmp.path(),
            "1.0",
            &[("index.php", "<?php\n"), ("lib/a", "a")],
        );
        let dest = tmp.path().join("opt/paheko");
        let s = spec(&archive, &sha, &dest, "1.0");
        let out = run(&s).unwrap();
        assert_eq!(
            out.changes,
            vec![
                format!(
                    "create directory {} (root:root 0755)",
                    tmp.path().join("opt").display()
                ),
                format!("create directory {} (root:root 0755)", dest.display()),
                format!(
                    "create directory {} (root:root 0755)",
                    dest.join("releases").display()
                ),
                "download and unpack 1.0".to_owned(),
                "switch current (none) -> 1.0".to_owned(),
            ]
        );
        assert_eq!(
            fs::read_link(dest.join("current")).unwrap(),
            Path::new("releases/1.0")
        );
        assert_eq!(
            fs::read_to_string(dest.join("current/index.php")).unwrap(),
            "<?php\n"
        );
        assert_eq!(fs::read_to_string(dest.join("current/lib/a")).unwrap(), "a");
        assert_eq!(
            fs::read_to_string(dest.join("releases/.1.0.sha256")).unwrap(),
            format!("{sha}\n")
        );
        assert!(hidden(&dest.join("releases")).is_empty());
        assert!(run(&s).unwrap().changes.is_empty());
    }

    #[test]
    fn a_new_release_switches_current_and_prunes_beyond_keep() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        for version in ["1.9", "1.10", "1.11"] {
            let (archive, sha) = tarball(tmp.path(), version, &[("v", version)]);
            run(&spec(&archive, &sha, &dest, version)).unwrap();
        }
        let (archive, sha) = tarball(tmp.path(), "1.12", &[("v", "1.12")]);
        let out = run(&spec(&archive, &sha, &dest, "1.12")).unwrap();
        assert_eq!(
            out.changes,
            vec![
                "download and unpack 1.12",
                "switch current 1.11 -> 1.12",
                "remove old release 1.9"
            ]
        );
        assert_eq!(
            Host.list_dir(&dest.join("releases")).unwrap(),
            vec![
                ".1.10.sha256",
                ".1.11.sha256",
                ".1.12.sha256",
                "1.10",
                "1.11",
                "1.12"
            ]
        );
        assert_eq!(fs::read_to_string(dest.join("current/v")).unwrap(), "1.12");
    }

    #[test]
    fn a_release_a_tenant_still_runs_is_never_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        for version in ["1.9", "1.10", "1.11"] {
            let (archive, sha) = tarball(tmp.path(), version, &[("v", version)]);
            run(&spec(&archive, &sha, &dest, version)).unwrap();
        }
        fs::create_dir(dest.join("tenants")).unwrap();
        std::os::unix::fs::symlink("../releases/1.9", dest.join("tenants/late")).unwrap();
        let (archive, sha) = tarball(tmp.path(), "1.12", &[("v", "1.12")]);
        let out = run(&spec(&archive, &sha, &dest, "1.12")).unwrap();
        assert_eq!(
            out.changes,
            vec!["download and unpack 1.12", "switch current 1.11 -> 1.12"]
        );
        assert!(dest.join("releases/1.9/v").exists());
    }

    #[test]
    fn rolling_back_to_a_kept_release_only_switches() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        let (a1, s1) = tarball(tmp.path(), "1", &[("v", "1")]);
        let (a2, s2) = tarball(tmp.path(), "2", &[("v", "2")]);
        run(&spec(&a1, &s1, &dest, "1")).unwrap();
        run(&spec(&a2, &s2, &dest, "2")).unwrap();
        let out = run(&spec(&a1, &s1, &dest, "1")).unwrap();
        assert_eq!(out.changes, vec!["switch current 2 -> 1"]);
        assert_eq!(fs::read_to_string(dest.join("current/v")).unwrap(), "1");
    }

    #[test]
    fn a_checksum_mismatch_unpacks_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (archive, sha) = tarball(tmp.path(), "1.0", &[("f", "x")]);
        let dest = tmp.path().join("app");
        let wrong = "0".repeat(64);
        let err = run(&spec(&archive, &wrong, &dest, "1.0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("has sha256 {sha}, expected {wrong}")),
            "{err}"
        );
        assert!(err.contains("nothing was unpacked"), "{err}");
        let releases = dest.join("releases");
        assert!(Host.list_dir(&releases).unwrap().is_empty());
        assert!(fs::symlink_metadata(dest.join("current")).is_err());
    }

    #[test]
    fn the_same_version_with_another_archive_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        let (a1, s1) = tarball(tmp.path(), "1", &[("v", "first")]);
        run(&spec(&a1, &s1, &dest, "1")).unwrap();
        let (a2, s2) = tarball(tmp.path(), "1b", &[("v", "second")]);
        let err = run(&spec(&a2, &s2, &dest, "1")).unwrap_err().to_string();
        assert!(err.contains("choose a new version name"), "{err}");
        assert!(err.contains(&s1), "{err}");
        assert_eq!(fs::read_to_string(dest.join("current/v")).unwrap(), "first");
    }

    #[test]
    fn a_release_directory_clou_did_not_unpack_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        fs::create_dir_all(dest.join("releases/1")).unwrap();
        let (a1, s1) = tarball(tmp.path(), "1", &[("v", "1")]);
        let err = run(&spec(&a1, &s1, &dest, "1")).unwrap_err().to_string();
        assert!(err.contains("was not unpacked by clou"), "{err}");
    }

    #[test]
    fn check_mode_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        let (a1, s1) = tarball(tmp.path(), "1", &[("v", "1")]);
        let out = run_on(&Host, &spec(&a1, &s1, &dest, "1"), true).unwrap();
        assert_eq!(out.changes.len(), 4, "{:?}", out.changes);
        assert!(!dest.exists());

        run(&spec(&a1, &s1, &dest, "1")).unwrap();
        let (a2, s2) = tarball(tmp.path(), "2", &[("v", "2")]);
        let before = Host.list_dir(&dest.join("releases")).unwrap();
        let out = run_on(&Host, &spec(&a2, &s2, &dest, "2"), true).unwrap();
        assert_eq!(
            out.changes,
            vec!["download and unpack 2", "switch current 1 -> 2"]
        );
        assert_eq!(Host.list_dir(&dest.join("releases")).unwrap(), before);
        assert_eq!(
            fs::read_link(dest.join("current")).unwrap(),
            Path::new("releases/1")
        );
    }

    #[test]
    fn owner_and_group_are_given_to_the_unpacked_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        let (archive, sha) = tarball(tmp.path(), "1", &[("data/config.php", "x")]);
        let mut s = spec(&archive, &sha, &dest, "1");
        s.owner = Some("daemon".into());
        s.group = Some("nogroup".into());
        run(&s).unwrap();
        for path in [
            "releases/1",
            "releases/1/data",
            "releases/1/data/config.php",
        ] {
            let meta = fs::metadata(dest.join(path)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (1, 65534), "{path}");
        }
        let meta = fs::symlink_metadata(dest.join("current")).unwrap();
        assert_eq!(meta.uid(), 0);
    }

    #[test]
    fn strip_components_zero_keeps_the_top_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        let (archive, sha) = tarball(tmp.path(), "1", &[("f", "x")]);
        let mut s = spec(&archive, &sha, &dest, "1");
        s.strip_components = 0;
        run(&s).unwrap();
        assert!(dest.join("current/project-1/f").is_file());
    }

    #[test]
    fn a_failing_download_is_an_error_naming_the_command() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        let sys = Recorder::new();
        sys.reply(&["curl"], 22, "");
        let mut s = spec(Path::new("/x"), &"a".repeat(64), &dest, "1");
        s.url = "https://example.org/app-1.tar.gz".into();
        let err = run_on(&sys, &s, false).unwrap_err().to_string();
        let tmp_file = dest.join("releases/.1.download");
        assert!(
            err.contains(&format!(
                "curl -fsSL --retry 2 -o {} https://example.org/app-1.tar.gz",
                tmp_file.display()
            )),
            "{err}"
        );
        assert!(err.contains("exit 22"), "{err}");
        assert!(Host.list_dir(&dest.join("releases")).unwrap().is_empty());
    }

    /// The real host, except that curl is not installed and wget copies
    /// a local file.
    struct NoCurl {
        source: PathBuf,
        ran: RefCell<Vec<String>>,
    }

    impl System for NoCurl {
        fn run(&self, cmd: &Cmd) -> io::Result<Output> {
            self.ran.borrow_mut().push(cmd.display());
            match cmd.argv[0].as_str() {
                "curl" => Err(io::Error::from(io::ErrorKind::NotFound)),
                "wget" => {
                    fs::copy(&self.source, &cmd.argv[3])?;
                    Ok(Output {
                        code: Some(0),
                        ..Output::default()
                    })
                }
                _ => Host.run(cmd),
            }
        }
    }

    #[test]
    fn without_curl_wget_downloads() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        let (archive, sha) = tarball(tmp.path(), "1", &[("f", "x")]);
        let sys = NoCurl {
            source: archive.clone(),
            ran: RefCell::default(),
        };
        let mut s = spec(&archive, &sha, &dest, "1");
        s.url = "http://mirror.lan/app-1.tar.gz".into();
        run_on(&sys, &s, false).unwrap();
        let ran = sys.ran.borrow();
        assert!(ran[0].starts_with("curl "), "{ran:?}");
        assert!(ran[1].starts_with("wget -q -O "), "{ran:?}");
        assert!(ran[2].starts_with("tar -x -f "), "{ran:?}");
        assert!(
            ran[2].ends_with("--strip-components=1 --no-same-owner"),
            "{ran:?}"
        );
        assert!(dest.join("current/f").is_file());
    }

    #[test]
    fn invalid_specs_are_refused_before_anything_happens() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        let good = spec(Path::new("/a.tar"), &"a".repeat(64), &dest, "1");
        let mut bad_sha = good.clone();
        bad_sha.sha256 = "4f2c".into();
        let mut bad_version = good.clone();
        bad_version.version = "../etc".into();
        let mut bad_url = good.clone();
        bad_url.url = "ftp://x/a.tar".into();
        let mut bad_owner = good.clone();
        bad_owner.owner = Some("clou-no-such-user".into());
        for (s, wanted) in [
            (bad_sha, "not 64 hex digits"),
            (bad_version, "cannot name a release directory"),
            (bad_url, "must start with https://"),
            (bad_owner, "declare a `user` resource"),
        ] {
            let err = run(&s).unwrap_err().to_string();
            assert!(err.contains(wanted), "{err}");
        }
        assert!(!dest.exists());
    }

    #[test]
    fn a_directory_as_current_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("app");
        fs::create_dir_all(dest.join("current")).unwrap();
        let (archive, sha) = tarball(tmp.path(), "1", &[("f", "x")]);
        let err = run(&spec(&archive, &sha, &dest, "1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory, not a symbolic link"), "{err}");
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["1.10", "1.9", "1.3.12", "1.3.9", "2", "10", "1.09"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, vec!["1.3.9", "1.3.12", "1.09", "1.9", "1.10", "2", "10"]);
    }
}
