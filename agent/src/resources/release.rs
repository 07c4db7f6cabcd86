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
//! migrate`...), maintenance off. When the backup, the switch or the upgrade
//! step fails, the tenant is put back as it was: link back, `restore` (only
//! once something may have changed), maintenance off. The resource then
//! fails with the step's output, and says whether the rollback worked:
//! only a clean rollback lets the plan go on with `keep_going`
//! ([`RunState::contained_failure`](super::RunState)); a failed rollback
//! leaves the tenant in maintenance mode and stops the run.
//!
//! An upgrade cut short (connection lost, agent killed, host rebooted)
//! leaves `BACKUP_DIR/upgrade-in-progress`, written once maintenance is on
//! and again once the backup is complete. The next run finds it and first
//! puts the tenant back where it was (its link, and its backup restored if
//! the backup was complete) before upgrading it again, instead of trusting
//! a link that was switched before a migration that never finished.

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
    /// A tenant whose application is not installed yet: its link only.
    Link { tenant: String, to: String },
    /// An upgrade cut short: back to where it started first.
    Resume {
        tenant: String,
        interrupted: Marker,
        backup_dir: String,
    },
    /// The whole procedure.
    Upgrade {
        tenant: String,
        from: Option<String>,
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
            Change::Link { tenant, to } => {
                write!(
                    f,
                    "point tenant {tenant} to release {to} (not installed yet)"
                )
            }
            Change::Resume {
                tenant,
                interrupted: m,
                backup_dir,
            } => write!(
                f,
                "finish tenant {tenant}'s upgrade to {} cut short: back to {}{}",
                m.to,
                m.from.as_deref().unwrap_or("(no link)"),
                if m.saved {
                    format!(", database and config restored from {backup_dir}")
                } else {
                    String::new()
                }
            ),
            Change::Upgrade {
                tenant,
                from,
                to,
                backup_dir,
            } => write!(
                f,
                "upgrade tenant {tenant} {} -> {to}: maintenance on, backup to {backup_dir}, \
                 switch, upgrade step, maintenance off (rolled back on failure)",
                from.as_deref().unwrap_or("(no link)")
            ),
        }
    }
}

/// What `upgrade-in-progress` records of an upgrade under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The release the tenant ran before (none: it had no link).
    pub from: Option<String>,
    pub to: String,
    /// The backup was complete: a rollback restores it.
    pub saved: bool,
}

impl Marker {
    fn text(&self) -> String {
        format!(
            "{} {} {}\n",
            self.from.as_deref().unwrap_or("-"),
            self.to,
            if self.saved { "saved" } else { "started" }
        )
    }

    fn parse(text: &str) -> Option<Marker> {
        let mut words = text.split_whitespace();
        let from = words.next()?;
        let to = words.next()?.to_owned();
        let saved = match words.next()? {
            "saved" => true,
            "started" => false,
            _ => return None,
        };
        Some(Marker {
            from: (from != "-").then(|| from.to_owned()),
            to,
            saved,
        })
    }
}

/// The spec's paths.
#[derive(Debug)]
struct Layout {
    tenants: PathBuf,
    /// `DEST/tenants/TENANT`.
    link: PathBuf,
    /// `DEST/releases/VERSION`.
    release: PathBuf,
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
    target.strip_prefix("../releases/")
}

/// What a link target says the tenant runs: its release, or the target
/// itself when it points elsewhere.
fn version_of(target: &str) -> String {
    release_of(target).unwrap_or(target).to_owned()
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
    if !name_ok(&spec.version) {
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
    Ok(Layout {
        link: tenants.join(&spec.tenant),
        tenants,
        release: dest.join("releases").join(&spec.version),
        installed: absolute(&spec.installed)?.to_path_buf(),
        marker: absolute(&spec.backup_dir)?.join("upgrade-in-progress"),
        backup_dir: absolute(&spec.backup_dir)?.to_path_buf(),
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
                 started|saved\"); check the tenant by hand, then remove it",
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

/// The release the tenant's link points to now, if it exists.
fn linked(ctx: &Ctx<'_>, l: &Layout) -> Result<Option<String>, Error> {
    match stat(ctx, &l.link)? {
        None => Ok(None),
        Some(st) if st.kind == FileKind::Symlink => {
            let target = ctx.sys.read_link(&l.link).map_err(Error::io(format!(
                "cannot read the link {}",
                l.link.display()
            )))?;
            Ok(Some(version_of(&target.to_string_lossy())))
        }
        Some(st) => Err(Error::Invalid(format!(
            "{} is {}, not a symbolic link; clou never deletes it: move it away",
            l.link.display(),
            st.kind.name()
        ))),
    }
}

impl Kind for ReleaseSpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let l = layout(self)?;
        let unpacked = stat(ctx, &l.release)?.is_some_and(|st| st.kind == FileKind::Dir);
        if !unpacked && !ctx.path_planned(&l.release) {
            return Err(Error::Invalid(format!(
                "release of {}: {} is not unpacked; declare the application's `archive` \
                 resource (same dest and version) before this one",
                self.tenant,
                l.release.display()
            )));
        }
        let marker = interrupted(ctx, &l)?;
        let mut changes = Vec::new();
        // Cut short: the link may already point to a release whose
        // migration never finished.
        let from = match marker {
            Some(m) => {
                let from = m.from.clone();
                changes.push(Change::Resume {
                    tenant: self.tenant.clone(),
                    interrupted: m,
                    backup_dir: self.backup_dir.clone(),
                });
                from
            }
            None => linked(ctx, &l)?,
        };
        if from.as_deref() == Some(self.version.as_str()) {
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
        if !installed {
            changes.push(Change::Link {
                tenant: self.tenant.clone(),
                to: self.version.clone(),
            });
        } else {
            if let Some(from) = &from
                && version_cmp(&self.version, from).is_lt()
            {
                return Err(Error::Invalid(format!(
                    "tenant {} runs {from}, the plan asks for {}: clou never downgrades an \
                     application, its database was migrated by {from}. Pin {from} (or newer) \
                     again; to go back, restore the tenant's backup by hand",
                    self.tenant, self.version
                )));
            }
            changes.push(Change::Upgrade {
                tenant: self.tenant.clone(),
                from,
                to: self.version.clone(),
                backup_dir: self.backup_dir.clone(),
            });
        }
        if ctx.check {
            ctx.plan(format!("path:{}", l.link.display()));
        }
        Ok(Differences::of(changes))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let l = layout(self)?;
        for change in &diff.changes {
            match change {
                Change::CreateDir(path) => create_dir(ctx, path, &NewPerms::root(0o755))?,
                Change::Link { to, .. } => point(ctx, &l, to)?,
                Change::Resume { interrupted, .. } => resume(self, ctx, &l, interrupted)?,
                Change::Upgrade { from, .. } => upgrade(self, ctx, &l, from.as_deref())?,
            }
        }
        Ok(())
    }
}

/// Points the tenant's link to `version`, atomically.
fn point(ctx: &Ctx<'_>, l: &Layout, version: &str) -> Result<(), Error> {
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

/// The backup directory and its missing parents, root-only: a database
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
    // An existing one is made root-only too: it is about to hold a dump.
    ctx.sys
        .chmod(&l.backup_dir, 0o700)
        .map_err(Error::io(format!(
            "cannot chmod {}",
            l.backup_dir.display()
        )))
}

/// Puts a tenant whose upgrade was cut short back where it started.
fn resume(spec: &ReleaseSpec, ctx: &Ctx<'_>, l: &Layout, m: &Marker) -> Result<(), Error> {
    let tenant = &spec.tenant;
    if let Some(from) = &m.from {
        point(ctx, l, from)?;
    }
    if m.saved {
        run_step(spec, ctx, &spec.restore).map_err(|err| {
            Error::Invalid(format!(
                "tenant {tenant}: its upgrade to {} was cut short, and restoring its backup \
                 from {} failed: {err}. It is left in maintenance mode",
                m.to,
                l.backup_dir.display()
            ))
        })?;
    }
    run_step(spec, ctx, &spec.maintenance_off)?;
    unmark(ctx, l)
}

/// The whole procedure for an installed tenant. On failure, the tenant is
/// put back as it was and `ctx.run.contained_failure` says whether that
/// worked.
fn upgrade(
    spec: &ReleaseSpec,
    ctx: &mut Ctx<'_>,
    l: &Layout,
    from: Option<&str>,
) -> Result<(), Error> {
    let tenant = &spec.tenant;
    let to = &spec.version;
    let was = from.unwrap_or("(no link)");
    backup_dir(ctx, l)?;
    // An installed tenant without a link of its own ran the shared code
    // (before releases were per tenant): it needs code to run its steps.
    if from.is_none() {
        point(ctx, l, to)?;
    }
    if let Err(err) = run_step(spec, ctx, &spec.maintenance_on) {
        ctx.run.contained_failure = true;
        return Err(Error::Invalid(format!(
            "tenant {tenant}: maintenance mode could not be turned on, nothing was changed \
             (still {was}): {err}"
        )));
    }
    let mut marker = Marker {
        from: from.map(str::to_owned),
        to: to.clone(),
        saved: false,
    };
    mark(ctx, l, &marker)?;

    // Nothing has changed yet but the maintenance flag.
    let prepared = run_step(spec, ctx, &spec.backup).map_err(|e| ("backup", e));
    let prepared = prepared.and_then(|()| {
        marker.saved = true;
        mark(ctx, l, &marker).map_err(|e| ("backup", e))
    });
    let switched = prepared.and_then(|()| point(ctx, l, to).map_err(|e| ("switch", e)));
    if let Err((what, err)) = switched {
        // Nothing to restore: the backup is not trusted, the link unchanged.
        if let Some(from) = from {
            point(ctx, l, from)?;
        }
        let off = run_step(spec, ctx, &spec.maintenance_off);
        // A tenant that had no link keeps the one it was just given: not
        // as it was, so the run stops (and the next one resumes).
        ctx.run.contained_failure = from.is_some() && off.is_ok() && unmark(ctx, l).is_ok();
        return Err(Error::Invalid(match off {
            Ok(()) => format!(
                "tenant {tenant}: the {what} failed before anything was upgraded; it still runs \
                 {was}, maintenance off again: {err}"
            ),
            Err(off) => format!(
                "tenant {tenant}: the {what} failed ({err}), and maintenance mode could not be \
                 turned off: {off}. It still runs {was}: turn maintenance off by hand"
            ),
        }));
    }

    if let Err(err) = run_step(spec, ctx, &spec.upgrade) {
        let Some(from) = from else {
            let restored = run_step(spec, ctx, &spec.restore);
            return Err(Error::Invalid(format!(
                "tenant {tenant}: the upgrade step to {to} failed: {err}. It had no link of its \
                 own before, so there is no release to go back to; {}. It is left in \
                 maintenance mode: point {} to the release it ran and turn maintenance off by hand",
                match restored {
                    Ok(()) => format!(
                        "database and config restored from {}",
                        l.backup_dir.display()
                    ),
                    Err(e) => format!("the restore failed too: {e}"),
                },
                l.link.display()
            )));
        };
        let rolled_back = point(ctx, l, from).and_then(|()| run_step(spec, ctx, &spec.restore));
        return Err(Error::Invalid(match rolled_back {
            Ok(()) => match run_step(spec, ctx, &spec.maintenance_off) {
                Ok(()) => {
                    ctx.run.contained_failure = unmark(ctx, l).is_ok();
                    format!(
                        "tenant {tenant}: the upgrade step to {to} failed; rolled back to {was} \
                         (code link, and database and config restored from {}): {err}",
                        l.backup_dir.display()
                    )
                }
                Err(off) => format!(
                    "tenant {tenant}: the upgrade step to {to} failed ({err}); rolled back to \
                     {was}, but maintenance mode could not be turned off: {off}"
                ),
            },
            Err(back) => format!(
                "tenant {tenant}: the upgrade step to {to} failed, and so did its rollback: \
                 {back}. The tenant is left in maintenance mode: put {} back to {was} and \
                 restore from {} by hand. The upgrade step said: {err}",
                l.link.display(),
                l.backup_dir.display()
            ),
        }));
    }

    run_step(spec, ctx, &spec.maintenance_off).map_err(|err| {
        Error::Invalid(format!(
            "tenant {tenant}: upgraded to {to}, but maintenance mode could not be turned off: \
             {err}"
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
        assert!(err.contains("backup failed"), "{err}");
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
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("nothing was changed")
        );
        assert!(contained);
        assert_eq!(sys.commands(), ["step on amap"]);
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
    fn an_installed_tenant_without_a_link_gets_one_before_its_steps() {
        let dir = dest();
        fs::remove_file(dir.path().join("tenants/amap")).unwrap();
        let sys = Recorder::new();
        let (result, _) = run(&sys, &spec(dir.path(), "2.0"), false);
        assert!(result.unwrap().changes[0].contains("(no link) -> 2.0"));
        assert_eq!(sys.commands().len(), 4);
        assert_eq!(link(dir.path()), "../releases/2.0");

        // Its upgrade failing has no release to go back to: it stays in
        // maintenance and the run stops.
        fs::remove_file(dir.path().join("tenants/amap")).unwrap();
        let sys = Recorder::new();
        sys.reply(&["step", "upgrade"], 1, "boom\n");
        let (result, contained) = run(&sys, &spec(dir.path(), "2.0"), false);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("no release to go back to"), "{err}");
        assert!(!contained);
        assert_eq!(sys.commands().last().unwrap(), "step restore amap");
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
