//! The `release` resource: which release of an application one tenant
//! runs, changed with the application's own upgrade procedure.
//!
//! ```text
//! DEST/releases/33.0.9/            unpacked by the `archive` resource
//! DEST/releases/33.0.10/
//! DEST/tenants/amap-lyon -> ../releases/33.0.10    upgraded
//! DEST/tenants/ecole-vive -> ../releases/33.0.9    not yet, or rolled back
//! ```
//!
//! The code tree is shared, but each tenant reaches it through its own
//! link (its web server root, its php-fpm pool, its cron and its CLI), so
//! that 126 Nextcloud instances are upgraded one at a time, each with its
//! database, instead of all at once by one `current` link.
//!
//! An upgrade is: maintenance on, backup (database and config, into
//! `backup_dir`), link switched, upgrade step (`occ upgrade`, `artisan
//! migrate`...), maintenance off. When a step before the upgrade step's
//! success fails, the tenant is put back as it was: link back, `restore`
//! (once the backup is complete), maintenance off. The resource then fails
//! with the step's output, and says whether the rollback worked: only a
//! clean rollback lets the plan go on with `keep_going`
//! ([`RunState::contained_failure`](super::RunState)); a failed rollback
//! leaves the tenant in maintenance mode and stops the run.
//!
//! A tenant installed before releases were per tenant has no link: it ran
//! the shared `DEST/current`. It is given a link to the release `current`
//! pointed to before this run switched it (the `archive` resource records
//! it), and upgraded from there like any other.
//!
//! `BACKUP_DIR/upgrade-in-progress` says how far an upgrade under way got
//! (`started`, `saved`, `upgraded`, `restored`). A run cut short
//! (connection lost, agent killed, host rebooted) leaves it, and the next
//! run finishes what it says first: back to where it started (with the
//! backup restored once it was complete), or only maintenance off once the
//! upgrade step or the restore had succeeded.

use std::fmt;
use std::path::{Path, PathBuf};

use clou_protocol::resource::ReleaseSpec;

use super::archive::version_cmp;
use super::paths::{NewPerms, create_dir, missing_parents, stat, write};
use super::{Ctx, Differences, Error, Kind, absolute};
use crate::system::{Cmd, FileKind, Perms};

/// Seconds a step may run when the spec does not say.
const DEFAULT_TIMEOUT: u64 = 1800;

/// What changes for the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `DEST/tenants`: root:root 0755.
    CreateDir(PathBuf),
    /// The link alone: to the asked release for a tenant not installed
    /// yet, or to the release the shared tree ran for one that had none.
    Link {
        tenant: String,
        to: String,
        why: &'static str,
    },
    /// An upgrade cut short: finished first.
    Resume {
        tenant: String,
        interrupted: Marker,
        backup_dir: String,
    },
    /// The whole procedure.
    Upgrade {
        tenant: String,
        from: String,
        to: String,
        backup_dir: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateDir(path) => {
                write!(f, "create directory {} (root:root 0755)", path.display())
            }
            Change::Link { tenant, to, why } => {
                write!(f, "point tenant {tenant} to release {to} ({why})")
            }
            Change::Resume {
                tenant,
                interrupted: m,
                backup_dir,
            } => match m.phase {
                Phase::Started | Phase::Saved => write!(
                    f,
                    "finish tenant {tenant}'s upgrade to {} cut short: back to {}{}, maintenance off",
                    m.to,
                    m.from,
                    if m.phase == Phase::Saved {
                        format!(", database and config restored from {backup_dir}")
                    } else {
                        String::new()
                    }
                ),
                Phase::Upgraded => write!(
                    f,
                    "finish tenant {tenant}'s upgrade to {} cut short after its upgrade step: \
                     maintenance off",
                    m.to
                ),
                Phase::Restored => write!(
                    f,
                    "finish tenant {tenant}'s rollback to {} cut short: maintenance off",
                    m.from
                ),
            },
            Change::Upgrade {
                tenant,
                from,
                to,
                backup_dir,
            } => write!(
                f,
                "upgrade tenant {tenant} {from} -> {to}: maintenance on, backup to {backup_dir}, \
                 switch, upgrade step, maintenance off (rolled back on failure)"
            ),
        }
    }
}

/// How far an upgrade under way got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Maintenance on; the backup is not complete, nothing else changed.
    Started,
    /// The backup is complete; the link may be switched.
    Saved,
    /// The upgrade step succeeded: only maintenance is left to turn off.
    Upgraded,
    /// Rolled back (link and backup); only maintenance is left to turn off.
    Restored,
}

impl Phase {
    fn word(self) -> &'static str {
        match self {
            Phase::Started => "started",
            Phase::Saved => "saved",
            Phase::Upgraded => "upgraded",
            Phase::Restored => "restored",
        }
    }
}

/// What `upgrade-in-progress` records of an upgrade under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The release the tenant ran before.
    pub from: String,
    pub to: String,
    pub phase: Phase,
}

impl Marker {
    fn text(&self) -> String {
        format!("{} {} {}\n", self.from, self.to, self.phase.word())
    }

    fn parse(text: &str) -> Option<Marker> {
        let mut words = text.split_whitespace();
        let from = words.next()?.to_owned();
        let to = words.next()?.to_owned();
        let word = words.next()?;
        let phase = [
            Phase::Started,
            Phase::Saved,
            Phase::Upgraded,
            Phase::Restored,
        ]
        .into_iter()
        .find(|p| p.word() == word)?;
        Some(Marker { from, to, phase })
    }

    /// The release the tenant runs once this marker's work is finished.
    fn runs(&self) -> &str {
        if self.phase == Phase::Upgraded {
            &self.to
        } else {
            &self.from
        }
    }
}

/// The spec's paths.
#[derive(Debug)]
struct Layout {
    tenants: PathBuf,
    /// `DEST/tenants/TENANT`.
    link: PathBuf,
    releases: PathBuf,
    /// `DEST/current`, the `archive` resource's link.
    current: PathBuf,
    installed: PathBuf,
    backup_dir: PathBuf,
    /// `BACKUP_DIR/upgrade-in-progress`.
    marker: PathBuf,
}

/// What the link holds for `version`.
fn target_of(version: &str) -> String {
    format!("../releases/{version}")
}

/// The release a link target names (`../releases/V` -> `V`), if it is one.
pub(crate) fn release_of(target: &str) -> Option<&str> {
    target
        .strip_prefix("../releases/")
        .filter(|v| !v.is_empty() && !v.contains('/'))
}

fn layout(spec: &ReleaseSpec) -> Result<Layout, Error> {
    let name_ok =
        |s: &str| !s.is_empty() && !s.starts_with('.') && !s.contains('/') && !s.contains('\0');
    if !name_ok(&spec.tenant) {
        return Err(Error::Invalid(format!(
            "release: tenant {:?} cannot name a link; give the tenant's name",
            spec.tenant
        )));
    }
    if !name_ok(&spec.version) || spec.version.contains(char::is_whitespace) {
        return Err(Error::Invalid(format!(
            "release of {}: version {:?} cannot name a release directory; use something like \"33.0.9\"",
            spec.tenant, spec.version
        )));
    }
    for (field, argv) in [
        ("maintenance_on", &spec.maintenance_on),
        ("backup", &spec.backup),
        ("upgrade", &spec.upgrade),
        ("restore", &spec.restore),
        ("maintenance_off", &spec.maintenance_off),
    ] {
        if argv.first().is_none_or(String::is_empty) {
            return Err(Error::Invalid(format!(
                "release of {}: `{field}` needs a program and its arguments",
                spec.tenant
            )));
        }
    }
    let dest = absolute(&spec.dest)?;
    let tenants = dest.join("tenants");
    let backup_dir = absolute(&spec.backup_dir)?.to_path_buf();
    Ok(Layout {
        link: tenants.join(&spec.tenant),
        tenants,
        releases: dest.join("releases"),
        current: dest.join("current"),
        installed: absolute(&spec.installed)?.to_path_buf(),
        marker: backup_dir.join("upgrade-in-progress"),
        backup_dir,
    })
}

/// The marker of an upgrade cut short, if any.
fn interrupted(ctx: &Ctx<'_>, l: &Layout) -> Result<Option<Marker>, Error> {
    let Some(bytes) = ctx
        .sys
        .read(&l.marker)
        .map_err(Error::io(format!("cannot read {}", l.marker.display())))?
    else {
        return Ok(None);
    };
    Marker::parse(&String::from_utf8_lossy(&bytes))
        .map(Some)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{} does not say where the upgrade it records was (expected \"FROM TO \
                 started|saved|upgraded|restored\"); check the tenant by hand, then remove it",
                l.marker.display()
            ))
        })
}

fn mark(ctx: &Ctx<'_>, l: &Layout, marker: &Marker) -> Result<(), Error> {
    let perms = Perms {
        uid: 0,
        gid: 0,
        mode: 0o600,
    };
    write(ctx, &l.marker, marker.text().as_bytes(), perms)
}

fn unmark(ctx: &Ctx<'_>, l: &Layout) -> Result<(), Error> {
    ctx.sys
        .remove_file(&l.marker)
        .map_err(Error::io(format!("cannot remove {}", l.marker.display())))
}

/// The release a link names; an error for a link clou did not make, which
/// it could not put back.
fn read_release(ctx: &Ctx<'_>, link: &Path) -> Result<Option<String>, Error> {
    match stat(ctx, link)? {
        None => Ok(None),
        Some(st) if st.kind == FileKind::Symlink => {
            let target = ctx.sys.read_link(link).map_err(Error::io(format!(
                "cannot read the link {}",
                link.display()
            )))?;
            let target = target.to_string_lossy();
            let relative = target
                .strip_prefix("releases/")
                .map(|v| format!("../releases/{v}"));
            let shown = relative.as_deref().unwrap_or(&target);
            release_of(shown)
                .map(|v| Some(v.to_owned()))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{} points to {target}, not to one of the releases clou unpacks: it cannot \
                     tell which release the tenant runs. Point it to ../releases/VERSION by hand",
                        link.display()
                    ))
                })
        }
        Some(st) => Err(Error::Invalid(format!(
            "{} is {}, not a symbolic link; clou never deletes it: move it away",
            link.display(),
            st.kind.name()
        ))),
    }
}

fn downgrade(spec: &ReleaseSpec, runs: &str) -> Error {
    Error::Invalid(format!(
        "tenant {} runs {runs}, the plan asks for {}: clou never downgrades an application, its \
         database was migrated by {runs}. Pin {runs} (or newer) again; to go back, restore the \
         tenant's backup by hand",
        spec.tenant, spec.version
    ))
}

impl Kind for ReleaseSpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let l = layout(self)?;
        let wanted = l.releases.join(&self.version);
        let unpacked = stat(ctx, &wanted)?.is_some_and(|st| st.kind == FileKind::Dir);
        if !unpacked && !ctx.path_planned(&wanted) {
            return Err(Error::Invalid(format!(
                "release of {}: {} is not unpacked; declare the application's `archive` \
                 resource (same dest and version) before this one",
                self.tenant,
                wanted.display()
            )));
        }
        let tenant = self.tenant.clone();
        let mut changes = Vec::new();
        // Cut short: the link may point to a release whose migration never
        // finished; what the marker says comes first.
        let runs = match interrupted(ctx, &l)? {
            Some(m) => {
                let runs = m.runs().to_owned();
                changes.push(Change::Resume {
                    tenant: tenant.clone(),
                    interrupted: m,
                    backup_dir: self.backup_dir.clone(),
                });
                Some(runs)
            }
            None => read_release(ctx, &l.link)?,
        };
        if runs.as_deref() == Some(self.version.as_str()) {
            return Ok(Differences::of(changes));
        }
        if stat(ctx, &l.tenants)?.is_none() {
            changes.extend(
                missing_parents(ctx, &l.tenants)?
                    .into_iter()
                    .map(Change::CreateDir),
            );
            changes.push(Change::CreateDir(l.tenants.clone()));
        }
        let installed = stat(ctx, &l.installed)?.is_some();
        let from = match runs {
            Some(runs) => runs,
            None if !installed => {
                changes.push(Change::Link {
                    tenant,
                    to: self.version.clone(),
                    why: "not installed yet",
                });
                return Ok(planned(ctx, &l, changes));
            }
            // Installed on the shared tree: what `current` served it.
            None => {
                let shared = match ctx.run.shared_before.get(&self.dest) {
                    Some(before) => Some(before.clone()),
                    None => read_release(ctx, &l.current)?,
                };
                let Some(shared) = shared else {
                    return Err(Error::Invalid(format!(
                        "tenant {tenant} is installed ({} exists) but has no link of its own \
                         and {} does not say which release it ran: point {} to \
                         ../releases/VERSION by hand",
                        l.installed.display(),
                        l.current.display(),
                        l.link.display()
                    )));
                };
                changes.push(Change::Link {
                    tenant: tenant.clone(),
                    to: shared.clone(),
                    why: "the release the shared code ran",
                });
                if shared == self.version {
                    return Ok(planned(ctx, &l, changes));
                }
                shared
            }
        };
        if version_cmp(&self.version, &from).is_lt() {
            return Err(downgrade(self, &from));
        }
        changes.push(Change::Upgrade {
            tenant,
            from,
            to: self.version.clone(),
            backup_dir: self.backup_dir.clone(),
        });
        Ok(planned(ctx, &l, changes))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let l = layout(self)?;
        for change in &diff.changes {
            match change {
                Change::CreateDir(path) => create_dir(ctx, path, &NewPerms::root(0o755))?,
                Change::Link { to, .. } => point(ctx, &l, to)?,
                Change::Resume { interrupted, .. } => resume(self, ctx, &l, interrupted)?,
                Change::Upgrade { from, .. } => upgrade(self, ctx, &l, from)?,
            }
        }
        Ok(())
    }
}

/// The changes, with the link recorded as planned in check mode.
fn planned(ctx: &mut Ctx<'_>, l: &Layout, changes: Vec<Change>) -> Differences<Change> {
    if ctx.check {
        ctx.plan(format!("path:{}", l.link.display()));
    }
    Differences::of(changes)
}

/// Points the tenant's link to `version`, atomically; the release must
/// be there (a resumed rollback's may have been pruned by hand).
fn point(ctx: &Ctx<'_>, l: &Layout, version: &str) -> Result<(), Error> {
    let release = l.releases.join(version);
    if stat(ctx, &release)?.is_none() {
        return Err(Error::Invalid(format!(
            "cannot point {} to release {version}: {} is gone",
            l.link.display(),
            release.display()
        )));
    }
    let target = target_of(version);
    ctx.sys
        .symlink_atomic(Path::new(&target), &l.link)
        .map_err(Error::io(format!(
            "cannot point {} to {target}",
            l.link.display()
        )))
}

/// Runs one step of the procedure; its output is in the error.
fn run_step(spec: &ReleaseSpec, ctx: &Ctx<'_>, argv: &[String]) -> Result<(), Error> {
    let cmd = Cmd {
        timeout: Some(std::time::Duration::from_secs(
            spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        )),
        ..Cmd::new(argv.iter().cloned())
    };
    ctx.run_ok(&cmd).map(drop)
}

/// The backup directory and its missing parents, root's alone: a database
/// dump is the tenant's data.
fn backup_dir(ctx: &Ctx<'_>, l: &Layout) -> Result<(), Error> {
    let private = Perms {
        uid: 0,
        gid: 0,
        mode: 0o700,
    };
    let mut missing = missing_parents(ctx, &l.backup_dir)?;
    if stat(ctx, &l.backup_dir)?.is_none() {
        missing.push(l.backup_dir.clone());
    }
    for dir in missing {
        ctx.sys
            .create_dir(&dir, private)
            .map_err(Error::io(format!("cannot create {}", dir.display())))?;
    }
    // An existing one is made root's too: it is about to hold a dump.
    let what = format!("cannot make {} root's, mode 0700", l.backup_dir.display());
    ctx.sys
        .chown(&l.backup_dir, Some(0), Some(0))
        .and_then(|()| ctx.sys.chmod(&l.backup_dir, 0o700))
        .map_err(Error::io(what))
}

/// Finishes what an upgrade cut short left, as its marker says.
fn resume(spec: &ReleaseSpec, ctx: &Ctx<'_>, l: &Layout, m: &Marker) -> Result<(), Error> {
    let tenant = &spec.tenant;
    let by_hand = |what: String| {
        Error::Invalid(format!(
            "tenant {tenant}: its upgrade to {} was cut short, and {what}. It is left in \
             maintenance mode; once mended by hand, remove {}",
            m.to,
            l.marker.display()
        ))
    };
    if matches!(m.phase, Phase::Started | Phase::Saved | Phase::Restored) {
        point(ctx, l, &m.from).map_err(|e| by_hand(format!("its link cannot go back: {e}")))?;
    }
    if m.phase == Phase::Saved {
        run_step(spec, ctx, &spec.restore).map_err(|e| {
            by_hand(format!(
                "restoring its backup from {} failed: {e}",
                l.backup_dir.display()
            ))
        })?;
    }
    run_step(spec, ctx, &spec.maintenance_off)
        .map_err(|e| by_hand(format!("maintenance mode cannot be turned off: {e}")))?;
    unmark(ctx, l)
}

/// The whole procedure for an installed tenant. On failure, the tenant is
/// put back as it was and `ctx.run.contained_failure` says whether that
/// worked; the marker stays wherever something is left to finish.
fn upgrade(spec: &ReleaseSpec, ctx: &mut Ctx<'_>, l: &Layout, from: &str) -> Result<(), Error> {
    let tenant = &spec.tenant;
    let to = &spec.version;
    let marker_note = format!("then remove {}", l.marker.display());
    backup_dir(ctx, l)?;
    let mut marker = Marker {
        from: from.to_owned(),
        to: to.clone(),
        phase: Phase::Started,
    };
    // Before anything: a run cut short from here on is finished by the next.
    mark(ctx, l, &marker)?;

    // Nothing has changed before the switch but the maintenance flag.
    let switched = run_step(spec, ctx, &spec.maintenance_on)
        .map_err(|e| ("maintenance mode could not be turned on", e))
        .and_then(|()| run_step(spec, ctx, &spec.backup).map_err(|e| ("the backup failed", e)))
        .and_then(|()| {
            marker.phase = Phase::Saved;
            mark(ctx, l, &marker).map_err(|e| ("the backup could not be recorded", e))
        })
        .and_then(|()| point(ctx, l, to).map_err(|e| ("the switch failed", e)));
    if let Err((what, err)) = switched {
        // The backup is not needed: the link never moved, or is put back.
        let back = point(ctx, l, from)
            .and_then(|()| run_step(spec, ctx, &spec.maintenance_off))
            .and_then(|()| unmark(ctx, l));
        return Err(Error::Invalid(match back {
            Ok(()) => {
                ctx.run.contained_failure = true;
                format!(
                    "tenant {tenant}: {what}, before anything was upgraded; it still runs \
                     {from}, maintenance off: {err}"
                )
            }
            Err(back) => format!(
                "tenant {tenant}: {what} ({err}), and putting it back failed: {back}. It runs \
                 {from}: turn maintenance off by hand, {marker_note}"
            ),
        }));
    }

    if let Err(err) = run_step(spec, ctx, &spec.upgrade) {
        let rolled_back = point(ctx, l, from).and_then(|()| run_step(spec, ctx, &spec.restore));
        if let Err(back) = rolled_back {
            return Err(Error::Invalid(format!(
                "tenant {tenant}: the upgrade step to {to} failed, and so did its rollback: \
                 {back}. The tenant is left in maintenance mode: the next run tries the rollback \
                 again (or put {} back to {from} and restore from {} by hand, {marker_note}). \
                 The upgrade step said: {err}",
                l.link.display(),
                l.backup_dir.display()
            )));
        }
        marker.phase = Phase::Restored;
        let off = mark(ctx, l, &marker)
            .and_then(|()| run_step(spec, ctx, &spec.maintenance_off))
            .and_then(|()| unmark(ctx, l));
        return Err(Error::Invalid(match off {
            Ok(()) => {
                ctx.run.contained_failure = true;
                format!(
                    "tenant {tenant}: the upgrade step to {to} failed; rolled back to {from} \
                     (code link, and database and config restored from {}): {err}",
                    l.backup_dir.display()
                )
            }
            Err(off) => format!(
                "tenant {tenant}: the upgrade step to {to} failed ({err}); rolled back to \
                 {from}, but maintenance mode could not be turned off: {off}"
            ),
        }));
    }

    marker.phase = Phase::Upgraded;
    mark(ctx, l, &marker)
        .and_then(|()| run_step(spec, ctx, &spec.maintenance_off))
        .map_err(|err| {
            Error::Invalid(format!(
                "tenant {tenant}: upgraded to {to}, but maintenance mode could not be turned \
                 off: {err}. The next run tries again"
            ))
        })?;
    unmark(ctx, l)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::resources::{Outcome, RunState, converge};
    use crate::system::testing::Recorder;

    fn spec(dest: &Path, version: &str) -> ReleaseSpec {
        let step = |name: &str| vec!["step".to_owned(), name.to_owned(), "amap".to_owned()];
        ReleaseSpec {
            tenant: "amap".into(),
            dest: dest.display().to_string(),
            version: version.into(),
            installed: dest.join("installed-amap").display().to_string(),
            backup_dir: dest.join("backups/amap").display().to_string(),
            maintenance_on: step("on"),
            backup: step("backup"),
            upgrade: step("upgrade"),
            restore: step("restore"),
            maintenance_off: step("off"),
            timeout: None,
        }
    }

    /// DEST with releases 1.0 and 2.0 unpacked, the tenant installed and
    /// linked to 1.0.
    fn dest() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for v in ["1.0", "2.0", "10.0"] {
            fs::create_dir_all(dir.path().join("releases").join(v)).unwrap();
        }
        fs::create_dir(dir.path().join("tenants")).unwrap();
        std::os::unix::fs::symlink("../releases/1.0", dir.path().join("tenants/amap")).unwrap();
        fs::write(dir.path().join("installed-amap"), "").unwrap();
        dir
    }

    fn run(sys: &Recorder, spec: &ReleaseSpec, check: bool) -> (Result<Outcome, Error>, bool) {
        let mut run = RunState::default();
        let mut ctx = Ctx {
            sys,
            check,
            want_diff: false,
            sensitive: false,
            run: &mut run,
        };
        let result = converge(spec, &mut ctx);
        (result, run.contained_failure)
    }

    fn link(dest: &Path) -> String {
        fs::read_link(dest.join("tenants/amap"))
            .unwrap()
            .display()
            .to_string()
    }

    #[test]
    fn an_installed_tenant_is_upgraded_in_the_applications_order() {
        let dir = dest();
        let sys = Recorder::new();
        let (result, _) = run(&sys, &spec(dir.path(), "2.0"), false);
        let outcome = result.unwrap();
        assert_eq!(outcome.changes.len(), 1, "{:?}", outcome.changes);
        assert!(
            outcome.changes[0].starts_with("upgrade tenant amap 1.0 -> 2.0"),
            "{:?}",
            outcome.changes
        );
        assert_eq!(
            sys.commands(),
            [
                "step on amap",
                "step backup amap",
                "step upgrade amap",
                "step off amap"
            ]
        );
        assert_eq!(link(dir.path()), "../releases/2.0");
        let backups = fs::metadata(dir.path().join("backups/amap")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&backups.permissions()) & 0o777,
            0o700
        );

        // Converged: a second run looks and runs nothing.
        let again = Recorder::new();
        let (result, _) = run(&again, &spec(dir.path(), "2.0"), false);
        assert!(result.unwrap().changes.is_empty());
        assert!(again.commands().is_empty());
    }

    #[test]
    fn check_mode_says_what_it_would_do_and_runs_nothing() {
        let dir = dest();
        let sys = Recorder::new();
        let (result, _) = run(&sys, &spec(dir.path(), "2.0"), true);
        assert_eq!(result.unwrap().changes.len(), 1);
        assert!(sys.commands().is_empty());
        assert_eq!(link(dir.path()), "../releases/1.0");
        assert!(!dir.path().join("backups").exists());
    }

    #[test]
    fn a_failed_upgrade_step_is_rolled_back_and_reported_with_its_output() {
        let dir = dest();
        let sys = Recorder::new();
        sys.reply(
            &["step", "upgrade"],
            1,
            "Doctrine: column oc_x already exists\n",
        );
        let (result, contained) = run(&sys, &spec(dir.path(), "2.0"), false);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("rolled back to 1.0"), "{err}");
        assert!(err.contains("column oc_x already exists"), "{err}");
        assert!(contained, "a clean rollback lets --keep-going go on");
        assert_eq!(link(dir.path()), "../releases/1.0");
        assert_eq!(
            sys.commands(),
            [
                "step on amap",
                "step backup amap",
                "step upgrade amap",
                "step restore amap",
                "step off amap"
            ]
        );
    }

    #[test]
    fn a_failed_backup_switches_nothing_and_restores_nothing() {
        let dir = dest();
        let sys = Recorder::new();
        sys.reply(
            &["step", "backup"],
            1,
            "pg_dump: error: connection refused\n",
        );
        let (result, contained) = run(&sys, &spec(dir.path(), "2.0"), false);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("the backup failed"), "{err}");
        assert!(err.contains("connection refused"), "{err}");
        assert!(contained);
        assert_eq!(link(dir.path()), "../releases/1.0");
        assert_eq!(
            sys.commands(),
            ["step on amap", "step backup amap", "step off amap"]
        );
    }

    #[test]
    fn a_failed_restore_leaves_maintenance_on_and_stops_the_run() {
        let dir = dest();
        let sys = Recorder::new();
        sys.reply(&["step", "upgrade"], 1, "migration failed\n");
        sys.reply(&["step", "restore"], 1, "pg_restore: error\n");
        let (result, contained) = run(&sys, &spec(dir.path(), "2.0"), false);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("left in maintenance mode"), "{err}");
        assert!(err.contains("migration failed"), "{err}");
        assert!(!contained, "a failed rollback stops the run");
        assert!(!sys.commands().contains(&"step off amap".to_owned()));
    }

    #[test]
    fn a_failed_maintenance_on_changes_nothing() {
        let dir = dest();
        let sys = Recorder::new();
        sys.reply(&["step", "on"], 1, "not installed\n");
        let (result, contained) = run(&sys, &spec(dir.path(), "2.0"), false);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("before anything was upgraded"), "{err}");
        assert!(contained, "maintenance turned off again");
        assert_eq!(sys.commands(), ["step on amap", "step off amap"]);
        assert_eq!(link(dir.path()), "../releases/1.0");
    }

    #[test]
    fn a_tenant_not_installed_only_gets_its_link() {
        let dir = dest();
        fs::remove_file(dir.path().join("installed-amap")).unwrap();
        fs::remove_file(dir.path().join("tenants/amap")).unwrap();
        let sys = Recorder::new();
        let (result, _) = run(&sys, &spec(dir.path(), "2.0"), false);
        assert_eq!(
            result.unwrap().changes,
            ["point tenant amap to release 2.0 (not installed yet)"]
        );
        assert!(sys.commands().is_empty());
        assert_eq!(link(dir.path()), "../releases/2.0");
    }

    #[test]
    fn an_installed_tenant_without_a_link_starts_from_what_the_shared_code_ran() {
        let dir = dest();
        fs::remove_file(dir.path().join("tenants/amap")).unwrap();
        std::os::unix::fs::symlink("releases/1.0", dir.path().join("current")).unwrap();
        // Same release: the link alone, no step.
        let sys = Recorder::new();
        let changes = run(&sys, &spec(dir.path(), "1.0"), false)
            .0
            .unwrap()
            .changes;
        assert_eq!(
            changes,
            ["point tenant amap to release 1.0 (the release the shared code ran)"]
        );
        assert!(sys.commands().is_empty());
        assert_eq!(link(dir.path()), "../releases/1.0");

        // A new release in the same run as the archive's switch: from the
        // release `current` pointed to before it.
        fs::remove_file(dir.path().join("tenants/amap")).unwrap();
        let sys = Recorder::new();
        let mut state = RunState::default();
        state
            .shared_before
            .insert(spec(dir.path(), "2.0").dest, "1.0".into());
        let mut ctx = Ctx {
            sys: &sys,
            check: false,
            want_diff: false,
            sensitive: false,
            run: &mut state,
        };
        let changes = converge(&spec(dir.path(), "2.0"), &mut ctx)
            .unwrap()
            .changes;
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes[1].starts_with("upgrade tenant amap 1.0 -> 2.0"),
            "{changes:?}"
        );
        assert_eq!(sys.commands().len(), 4);
        assert_eq!(link(dir.path()), "../releases/2.0");

        // Neither a link nor a `current`: refused, nothing run.
        fs::remove_file(dir.path().join("tenants/amap")).unwrap();
        fs::remove_file(dir.path().join("current")).unwrap();
        let sys = Recorder::new();
        let err = run(&sys, &spec(dir.path(), "2.0"), false)
            .0
            .unwrap_err()
            .to_string();
        assert!(err.contains("by hand"), "{err}");
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn a_link_clou_did_not_make_is_refused() {
        let dir = dest();
        fs::remove_file(dir.path().join("tenants/amap")).unwrap();
        std::os::unix::fs::symlink("/opt/elsewhere", dir.path().join("tenants/amap")).unwrap();
        let sys = Recorder::new();
        let err = run(&sys, &spec(dir.path(), "2.0"), false)
            .0
            .unwrap_err()
            .to_string();
        assert!(err.contains("points to /opt/elsewhere"), "{err}");
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn maintenance_left_on_after_a_successful_upgrade_is_only_turned_off_next_time() {
        let dir = dest();
        let sys = Recorder::new();
        sys.reply(&["step", "off"], 1, "cannot write config.php\n");
        let (result, contained) = run(&sys, &spec(dir.path(), "2.0"), false);
        assert!(result.unwrap_err().to_string().contains("upgraded to 2.0"));
        assert!(!contained);
        let marker = dir.path().join("backups/amap/upgrade-in-progress");
        assert_eq!(fs::read_to_string(&marker).unwrap(), "1.0 2.0 upgraded\n");

        let sys = Recorder::new();
        let changes = run(&sys, &spec(dir.path(), "2.0"), false)
            .0
            .unwrap()
            .changes;
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            sys.commands(),
            ["step off amap"],
            "no restore of the old backup"
        );
        assert_eq!(link(dir.path()), "../releases/2.0");
        assert!(!marker.exists());
    }

    #[test]
    fn an_upgrade_cut_short_is_rolled_back_before_it_is_done_again() {
        let dir = dest();
        // Cut short after the switch: the link says 2.0, the migration
        // never finished.
        let link_path = dir.path().join("tenants/amap");
        fs::remove_file(&link_path).unwrap();
        std::os::unix::fs::symlink("../releases/2.0", &link_path).unwrap();
        fs::create_dir_all(dir.path().join("backups/amap")).unwrap();
        let marker = dir.path().join("backups/amap/upgrade-in-progress");
        fs::write(&marker, "1.0 2.0 saved\n").unwrap();

        let sys = Recorder::new();
        let (result, _) = run(&sys, &spec(dir.path(), "2.0"), false);
        let changes = result.unwrap().changes;
        assert!(
            changes[0].starts_with("finish tenant amap's upgrade to 2.0 cut short: back to 1.0"),
            "{changes:?}"
        );
        assert!(
            changes[1].starts_with("upgrade tenant amap 1.0 -> 2.0"),
            "{changes:?}"
        );
        assert_eq!(
            sys.commands(),
            [
                "step restore amap",
                "step off amap",
                "step on amap",
                "step backup amap",
                "step upgrade amap",
                "step off amap"
            ]
        );
        assert_eq!(link(dir.path()), "../releases/2.0");
        assert!(!marker.exists(), "done: no marker left");
    }

    #[test]
    fn an_upgrade_cut_before_its_backup_only_turns_maintenance_off() {
        let dir = dest();
        fs::create_dir_all(dir.path().join("backups/amap")).unwrap();
        let marker = dir.path().join("backups/amap/upgrade-in-progress");
        fs::write(&marker, "1.0 2.0 started\n").unwrap();
        // The admin pinned 1.0 again meanwhile: nothing to upgrade after.
        let sys = Recorder::new();
        let (result, _) = run(&sys, &spec(dir.path(), "1.0"), false);
        assert_eq!(result.unwrap().changes.len(), 1);
        assert_eq!(sys.commands(), ["step off amap"]);
        assert_eq!(link(dir.path()), "../releases/1.0");
        assert!(!marker.exists());
    }

    #[test]
    fn a_marker_is_left_only_while_an_upgrade_is_under_way() {
        let dir = dest();
        let marker = dir.path().join("backups/amap/upgrade-in-progress");
        let sys = Recorder::new();
        sys.reply(&["step", "upgrade"], 1, "boom\n");
        sys.reply(&["step", "restore"], 1, "restore failed\n");
        let (result, _) = run(&sys, &spec(dir.path(), "2.0"), false);
        assert!(result.is_err());
        assert_eq!(fs::read_to_string(&marker).unwrap(), "1.0 2.0 saved\n");
        // A clean run removes it.
        let (result, _) = run(&Recorder::new(), &spec(dir.path(), "2.0"), false);
        result.unwrap();
        assert!(!marker.exists());
    }

    #[test]
    fn a_downgrade_is_refused_with_nothing_run() {
        let dir = dest();
        let mut s = spec(dir.path(), "10.0");
        run(&Recorder::new(), &s, false).0.unwrap();
        s.version = "2.0".into();
        let sys = Recorder::new();
        let err = run(&sys, &s, false).0.unwrap_err().to_string();
        assert!(err.contains("never downgrades"), "{err}");
        assert!(sys.commands().is_empty());
        assert_eq!(link(dir.path()), "../releases/10.0");
    }

    #[test]
    fn a_release_not_unpacked_is_an_error_naming_the_archive() {
        let dir = dest();
        let err = run(&Recorder::new(), &spec(dir.path(), "3.0"), false)
            .0
            .unwrap_err()
            .to_string();
        assert!(err.contains("archive"), "{err}");
    }

    #[test]
    fn a_tenant_name_that_escapes_its_directory_is_refused() {
        let dir = dest();
        let mut s = spec(dir.path(), "2.0");
        s.tenant = "../x".into();
        let err = run(&Recorder::new(), &s, false).0.unwrap_err().to_string();
        assert!(err.contains("cannot name a link"), "{err}");
    }
}
