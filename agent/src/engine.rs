//! Runs a plan: every resource in order, handlers at the end of roles.
//!
//! - Resources run one at a time, in plan order. After the first failure,
//!   the remaining resources are reported `skipped`: a later resource
//!   usually depends on an earlier one (config before service). The one
//!   exception is a tenant's `release` that failed and was rolled back,
//!   when the plan says `keep_going`: the tenant is as it was, so the
//!   other tenants are still upgraded.
//! - Package resources are converged together, at the first of them, in one
//!   apt transaction; each is then reported in its own place.
//! - A resource that changed notifies its handlers. At the end of each role,
//!   the notified handlers of that role and of the roles before it run once
//!   each, in declaration order; they run even when a later resource failed,
//!   because what did change still needs its restart.
//! - Notified handlers are also written to `STATE_DIR/pending-handlers.json`
//!   until they have run: when a run dies between a change and its
//!   handler (connection lost, reboot), the next run starts by running them,
//!   instead of finding the file "ok" and never restarting the service.
//! - Every change (not in check mode) is appended to the host's journal,
//!   between a `run_started` and a `run_finished` line.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use clou_protocol::{Plan, Report, Resource, Status, Step};

use crate::journal::{Entry, Journal};
use crate::resources::{self, Ctx, Kind, Outcome, RunState, package};
use crate::system::System;

/// Where the agent keeps its lock, journal and uploaded binaries.
pub const STATE_DIR: &str = "/var/lib/clou";

/// Handlers notified but not yet run, in `STATE_DIR`.
const PENDING: &str = "pending-handlers.json";

/// One plan's run on this host.
pub struct Engine<'a> {
    sys: &'a dyn System,
    plan: &'a Plan,
    journal: Option<Journal>,
    run: RunState,
    /// Package outcomes by name, once the batch has run.
    packages: Option<Result<BTreeMap<String, Outcome>, String>>,
    failed: bool,
    notified: HashSet<String>,
    /// Where pending handlers are kept (none in check mode).
    pending_file: Option<PathBuf>,
    warnings: Vec<String>,
    /// Where the journal and confirm state live (none in tests without one).
    state_dir: Option<PathBuf>,
    /// Files confirm steps changed, as they were before, with the handlers
    /// those steps notify.
    guarded: Vec<(crate::confirm::Before, Vec<String>)>,
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct RunEnd {
    pub warnings: Vec<String>,
    /// Confirm steps' changes waiting for their confirmation.
    pub confirm: Option<clou_protocol::PendingConfirm>,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("run_id", &self.plan.run_id)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<'a> Engine<'a> {
    /// An engine for `plan`; `state_dir` holds the journal and the pending
    /// handlers (written only outside check mode).
    pub fn new(sys: &'a dyn System, plan: &'a Plan, state_dir: Option<PathBuf>) -> Engine<'a> {
        let mut warnings = Vec::new();
        let mut notified = HashSet::new();
        if let Some(dir) = &state_dir
            && let Ok(text) = std::fs::read_to_string(dir.join(PENDING))
        {
            let pending: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
            let known: HashSet<&str> = plan
                .roles
                .iter()
                .flat_map(|r| &r.handlers)
                .map(|h| h.id.as_str())
                .collect();
            for id in pending {
                if known.contains(id.as_str()) {
                    warnings.push(format!(
                        "handler {id} was left pending by an interrupted run: it runs now"
                    ));
                    notified.insert(id);
                } else {
                    warnings.push(format!(
                        "handler {id} was left pending by an interrupted run, but this plan \
                         has no such handler: run it by hand if it is still needed"
                    ));
                }
            }
        }
        Engine {
            sys,
            plan,
            journal: state_dir
                .as_ref()
                .filter(|_| !plan.check)
                .map(|d| Journal::new(d)),
            run: RunState::default(),
            packages: None,
            failed: false,
            notified,
            pending_file: state_dir
                .as_ref()
                .filter(|_| !plan.check)
                .map(|d| d.join(PENDING)),
            warnings,
            state_dir,
            guarded: Vec::new(),
        }
    }

    /// Writes the notified handlers down (or removes the file when none).
    fn save_pending(&mut self) {
        let Some(path) = &self.pending_file else {
            return;
        };
        let result = if self.notified.is_empty() {
            match std::fs::remove_file(path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            }
        } else {
            let mut ids: Vec<&String> = self.notified.iter().collect();
            ids.sort();
            serde_json::to_vec(&ids)
                .map_err(std::io::Error::other)
                .and_then(|bytes| {
                    let tmp = path.with_extension("tmp");
                    std::fs::write(&tmp, bytes)?;
                    std::fs::rename(&tmp, path)
                })
        };
        if let Err(err) = result {
            let warning = format!(
                "cannot record pending handlers in {}: {err}",
                path.display()
            );
            if !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
        }
    }

    /// Runs the whole plan, handing each report to `emit` as soon as it is
    /// known. Returns the warnings gathered on the way.
    pub fn run(self, emit: &mut dyn FnMut(Report)) -> Vec<String> {
        self.run_to_end(emit).warnings
    }

    /// Runs the whole plan, then arms the revert of its confirm steps'
    /// changes, if any.
    pub fn run_to_end(mut self, emit: &mut dyn FnMut(Report)) -> RunEnd {
        let plan = self.plan;
        self.mark("run_started");
        for (index, role) in plan.roles.iter().enumerate() {
            for step in &role.resources {
                // A package converged with the others before the failure
                // is reported as what happened to it, not as skipped.
                let batched = matches!(step.resource, Resource::Package(_))
                    && matches!(self.packages, Some(Ok(_)));
                self.run.contained_failure = false;
                let report = if self.failed && !batched {
                    skipped(&role.name, step)
                } else {
                    self.step(&role.name, step, false)
                };
                // A tenant's upgrade rolled back cleanly leaves the host as
                // it was: `keep_going` upgrades the other tenants.
                let contained = plan.keep_going && self.run.contained_failure;
                if report.status == Status::Failed && !contained {
                    self.failed = true;
                }
                emit(report);
            }
            for done_role in &plan.roles[..=index] {
                for handler in &done_role.handlers {
                    if self.notified.contains(&handler.id) {
                        let report = self.step(&done_role.name, handler, true);
                        // A handler that failed stays pending: the next run
                        // tries it again.
                        if report.status != Status::Failed {
                            self.notified.remove(&handler.id);
                            self.save_pending();
                        }
                        emit(report);
                    }
                }
            }
        }
        self.mark("run_finished");
        let confirm = self.arm_confirm();
        RunEnd {
            warnings: self.warnings,
            confirm,
        }
    }

    /// Hands the confirm steps' old files and handlers to [`crate::confirm`].
    fn arm_confirm(&mut self) -> Option<clou_protocol::PendingConfirm> {
        if self.guarded.is_empty() || self.plan.check {
            return None;
        }
        let state_dir = self.state_dir.clone()?;
        let wanted: HashSet<&String> = self.guarded.iter().flat_map(|(_, n)| n).collect();
        let handlers: Vec<Step> = self
            .plan
            .roles
            .iter()
            .flat_map(|r| &r.handlers)
            .filter(|h| wanted.contains(&h.id))
            .cloned()
            .collect();
        let befores: Vec<crate::confirm::Before> =
            self.guarded.iter().map(|(b, _)| b.clone()).collect();
        match crate::confirm::arm(
            self.sys,
            &state_dir,
            &self.plan.run_id,
            &self.plan.admin,
            &befores,
            handlers,
            self.plan.confirm_secs,
        ) {
            Ok(pending) => Some(pending),
            Err(why) => {
                self.warnings.push(why);
                None
            }
        }
    }

    /// A journal line marking the start or end of the run.
    fn mark(&mut self, event: &str) {
        let Some(journal) = &self.journal else {
            return;
        };
        let line = serde_json::json!({
            "time": crate::clock::rfc3339(SystemTime::now()),
            "run_id": self.plan.run_id,
            "admin": self.plan.admin,
            "event": event,
        });
        if let Err(err) = journal.append_value(&line) {
            self.warnings.push(format!(
                "cannot append to {}: {err}",
                journal.path().display()
            ));
        }
    }

    fn step(&mut self, role: &str, step: &Step, handler: bool) -> Report {
        let started = Instant::now();
        // A confirm step's file as it was, to put back if not confirmed.
        let before = match (&step.resource, step.confirm && !self.plan.check) {
            (Resource::File(spec), true) => match crate::confirm::before(self.sys, &spec.path) {
                Ok(before) => Some(before),
                Err(why) => {
                    return Report {
                        id: step.id.clone(),
                        role: role.to_owned(),
                        handler,
                        status: Status::Failed,
                        changes: Vec::new(),
                        diff: None,
                        error: Some(format!("{why}: without a copy it could not be put back")),
                        millis: 0,
                    };
                }
            },
            _ => None,
        };
        let result = match &step.resource {
            Resource::Package(spec) => self.package(&spec.name),
            resource => {
                let mut ctx = Ctx {
                    sys: self.sys,
                    check: self.plan.check,
                    want_diff: self.plan.diff && !step.sensitive,
                    sensitive: step.sensitive,
                    run: &mut self.run,
                };
                resources::evaluate(resource, &mut ctx).map_err(|e| e.to_string())
            }
        };
        let (status, outcome, error) = match result {
            Ok(outcome) if outcome.changes.is_empty() => (Status::Ok, outcome, None),
            Ok(outcome) => (Status::Changed, outcome, None),
            Err(error) => (Status::Failed, Outcome::default(), Some(error)),
        };
        if status == Status::Changed
            && let Some(before) = before
        {
            self.guarded.push((before, step.notify.clone()));
        }
        if status == Status::Changed && !step.notify.is_empty() {
            self.notified.extend(step.notify.iter().cloned());
            self.save_pending();
        }
        if status != Status::Ok {
            self.record(role, step, status, &outcome.changes, error.as_deref());
        }
        Report {
            id: step.id.clone(),
            role: role.to_owned(),
            handler,
            status,
            changes: outcome.changes,
            diff: outcome.diff,
            error,
            millis: started.elapsed().as_millis() as u64,
        }
    }

    /// The outcome of one package, converging all of them on first use.
    fn package(&mut self, name: &str) -> Result<Outcome, String> {
        if self.packages.is_none() {
            let specs = self
                .plan
                .roles
                .iter()
                .flat_map(|r| &r.resources)
                .filter_map(|s| match &s.resource {
                    Resource::Package(spec) => Some(spec.clone()),
                    _ => None,
                })
                .collect();
            let mut ctx = Ctx {
                sys: self.sys,
                check: self.plan.check,
                want_diff: false,
                sensitive: false,
                run: &mut self.run,
            };
            let batch = package::Batch::new(specs);
            // The generic `converge` flow, inlined: the batch's changes are
            // split between several resources.
            let result = batch
                .differences(&mut ctx)
                .and_then(|diff| {
                    if !diff.changes.is_empty() && !ctx.check {
                        batch.apply(&mut ctx, &diff)?;
                    }
                    Ok(diff.changes)
                })
                .map(|changes| {
                    let mut by_name: BTreeMap<String, Outcome> = BTreeMap::new();
                    for change in changes {
                        by_name
                            .entry(change.name.clone())
                            .or_default()
                            .changes
                            .push(change.to_string());
                    }
                    by_name
                })
                .map_err(|e| e.to_string());
            self.packages = Some(result);
        }
        match &self.packages {
            Some(Ok(by_name)) => Ok(by_name.get(name).cloned().unwrap_or_default()),
            Some(Err(error)) => Err(format!("the apt transaction failed: {error}")),
            None => Err("the apt transaction did not run".to_owned()),
        }
    }

    fn record(
        &mut self,
        role: &str,
        step: &Step,
        status: Status,
        changes: &[String],
        error: Option<&str>,
    ) {
        let Some(journal) = &self.journal else {
            return;
        };
        let entry = Entry {
            time: crate::clock::rfc3339(SystemTime::now()),
            run_id: &self.plan.run_id,
            admin: &self.plan.admin,
            role,
            resource: &step.id,
            kind: step.resource.kind(),
            status,
            changes,
            error,
        };
        if let Err(err) = journal.append(&entry) {
            let warning = format!("cannot append to {}: {err}", journal.path().display());
            if !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
        }
    }
}

fn skipped(role: &str, step: &Step) -> Report {
    Report {
        id: step.id.clone(),
        role: role.to_owned(),
        handler: false,
        status: Status::Skipped,
        changes: Vec::new(),
        diff: None,
        error: Some("not attempted: an earlier resource failed".to_owned()),
        millis: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::testing::Recorder;
    use clou_protocol::RolePlan;

    fn step(id: &str, notify: &[&str], resource: &str) -> Step {
        Step {
            id: id.into(),
            notify: notify.iter().map(|s| s.to_string()).collect(),
            sensitive: false,
            confirm: false,
            resource: serde_json::from_str(resource).unwrap(),
        }
    }

    fn plan(check: bool, roles: Vec<RolePlan>) -> Plan {
        Plan {
            run_id: "r1".into(),
            admin: "test@here".into(),
            check,
            diff: false,
            roles,
            confirm_secs: 30,
            keep_going: false,
        }
    }

    /// A `release` step upgrading `tenant` under `dest` to 2.0, with
    /// `step PHASE TENANT` commands.
    fn release(dest: &std::path::Path, tenant: &str) -> Step {
        let installed = dest.join(format!("installed-{tenant}"));
        std::fs::write(&installed, "").unwrap();
        std::os::unix::fs::symlink("../releases/1.0", dest.join("tenants").join(tenant)).unwrap();
        let argv = |phase: &str| serde_json::json!(["step", phase, tenant]);
        let resource = serde_json::json!({"release": {
            "tenant": tenant,
            "dest": dest,
            "version": "2.0",
            "installed": installed,
            "backup_dir": dest.join("backups").join(tenant),
            "maintenance_on": argv("on"),
            "backup": argv("backup"),
            "upgrade": argv("upgrade"),
            "restore": argv("restore"),
            "maintenance_off": argv("off"),
        }});
        step(&format!("app/{tenant}"), &[], &resource.to_string())
    }

    #[test]
    fn a_tenant_rolled_back_stops_the_others_unless_keep_going() {
        for keep_going in [false, true] {
            let state = tempfile::tempdir().unwrap();
            let dest = tempfile::tempdir().unwrap();
            for dir in ["releases/1.0", "releases/2.0", "tenants"] {
                std::fs::create_dir_all(dest.path().join(dir)).unwrap();
            }
            let sys = Recorder::new();
            sys.reply(&["step", "upgrade", "b"], 1, "migration failed\n");
            let mut plan = plan(
                false,
                vec![RolePlan {
                    name: "app".into(),
                    resources: ["a", "b", "c"]
                        .iter()
                        .map(|t| release(dest.path(), t))
                        .collect(),
                    handlers: vec![],
                }],
            );
            plan.keep_going = keep_going;
            let reports = run(&sys, &plan, state.path());
            let statuses: Vec<Status> = reports.iter().map(|r| r.status).collect();
            let last = if keep_going {
                Status::Changed
            } else {
                Status::Skipped
            };
            assert_eq!(
                statuses,
                [Status::Changed, Status::Failed, last],
                "keep_going {keep_going}"
            );
            let error = reports[1].error.as_deref().unwrap_or_default();
            assert!(error.contains("rolled back to 1.0"), "{error}");
            assert!(error.contains("migration failed"), "{error}");
            let c = std::fs::read_link(dest.path().join("tenants/c")).unwrap();
            let expected = if keep_going {
                "../releases/2.0"
            } else {
                "../releases/1.0"
            };
            assert_eq!(c.display().to_string(), expected);
        }
    }

    fn run(sys: &Recorder, plan: &Plan, dir: &std::path::Path) -> Vec<Report> {
        let mut reports = Vec::new();
        Engine::new(sys, plan, Some(dir.to_owned())).run(&mut |r| reports.push(r));
        reports
    }

    #[test]
    fn a_handler_runs_once_for_two_notifiers_and_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let sys = Recorder::new();
        sys.reply(&["false"], 1, "");
        let plan = plan(
            false,
            vec![RolePlan {
                name: "base".into(),
                resources: vec![
                    step(
                        "base/a",
                        &["base/h"],
                        r#"{"command":{"argv":["touch","a"]}}"#,
                    ),
                    step(
                        "base/b",
                        &["base/h"],
                        r#"{"command":{"argv":["touch","b"]}}"#,
                    ),
                    step("base/c", &[], r#"{"command":{"argv":["false"]}}"#),
                    step("base/d", &[], r#"{"command":{"argv":["touch","d"]}}"#),
                ],
                handlers: vec![
                    step("base/h", &[], r#"{"command":{"argv":["echo","handled"]}}"#),
                    step("base/unused", &[], r#"{"command":{"argv":["echo","no"]}}"#),
                ],
            }],
        );
        let reports = run(&sys, &plan, dir.path());
        let statuses: Vec<(&str, Status)> =
            reports.iter().map(|r| (r.id.as_str(), r.status)).collect();
        assert_eq!(
            statuses,
            vec![
                ("base/a", Status::Changed),
                ("base/b", Status::Changed),
                ("base/c", Status::Failed),
                ("base/d", Status::Skipped),
                ("base/h", Status::Changed),
            ]
        );
        assert_eq!(
            sys.commands(),
            vec!["touch a", "touch b", "false", "echo handled"]
        );
        assert!(reports[4].handler);
        let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = journal
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let resources: Vec<&str> = lines
            .iter()
            .filter_map(|l| l["resource"].as_str())
            .collect();
        assert_eq!(
            resources,
            ["base/a", "base/b", "base/c", "base/h"],
            "{journal}"
        );
        assert_eq!(lines[0]["event"], "run_started");
        assert_eq!(lines[lines.len() - 1]["event"], "run_finished");
        assert!(!dir.path().join(PENDING).exists(), "the handler ran");
    }

    #[test]
    fn a_handler_that_did_not_run_runs_at_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let sys = Recorder::new();
        // The handler fails the first time (the run could as well have
        // died): it stays pending.
        sys.reply(&["echo", "h"], 1, "");
        let first = plan(
            false,
            vec![RolePlan {
                name: "base".into(),
                resources: vec![step(
                    "base/a",
                    &["base/h"],
                    r#"{"command":{"argv":["touch","a"]}}"#,
                )],
                handlers: vec![step("base/h", &[], r#"{"command":{"argv":["echo","h"]}}"#)],
            }],
        );
        let reports = run(&sys, &first, dir.path());
        assert_eq!(reports[1].status, Status::Failed);
        let pending = std::fs::read_to_string(dir.path().join(PENDING)).unwrap();
        assert_eq!(pending, r#"["base/h"]"#);

        // Next run: nothing changes, but the pending handler runs.
        let sys = Recorder::new();
        let second = plan(
            false,
            vec![RolePlan {
                name: "base".into(),
                resources: vec![step(
                    "base/a",
                    &["base/h"],
                    r#"{"command":{"argv":["touch","a"],"creates":"/"}}"#,
                )],
                handlers: vec![step("base/h", &[], r#"{"command":{"argv":["echo","h"]}}"#)],
            }],
        );
        let mut reports = Vec::new();
        let warnings =
            Engine::new(&sys, &second, Some(dir.path().to_owned())).run(&mut |r| reports.push(r));
        assert_eq!(sys.commands(), vec!["echo h"]);
        assert!(
            warnings[0].contains("left pending by an interrupted run"),
            "{warnings:?}"
        );
        assert!(!dir.path().join(PENDING).exists());
    }

    #[test]
    fn check_mode_runs_nothing_and_journals_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sys = Recorder::new();
        let plan = plan(
            true,
            vec![RolePlan {
                name: "base".into(),
                resources: vec![step(
                    "base/a",
                    &["base/h"],
                    r#"{"command":{"argv":["touch","a"]}}"#,
                )],
                handlers: vec![step("base/h", &[], r#"{"command":{"argv":["echo","h"]}}"#)],
            }],
        );
        let reports = run(&sys, &plan, dir.path());
        assert_eq!(reports.len(), 2);
        assert!(reports.iter().all(|r| r.status == Status::Changed));
        assert!(sys.commands().is_empty(), "{:?}", sys.commands());
        assert!(!dir.path().join("journal.jsonl").exists());
    }

    #[test]
    fn a_handler_of_an_earlier_role_runs_at_the_end_of_the_notifying_role() {
        let dir = tempfile::tempdir().unwrap();
        let sys = Recorder::new();
        let plan = plan(
            false,
            vec![
                RolePlan {
                    name: "base".into(),
                    resources: vec![step("base/a", &[], r#"{"command":{"argv":["touch","a"]}}"#)],
                    handlers: vec![step("base/h", &[], r#"{"command":{"argv":["echo","h"]}}"#)],
                },
                RolePlan {
                    name: "web".into(),
                    resources: vec![
                        step(
                            "web/b",
                            &["base/h"],
                            r#"{"command":{"argv":["touch","b"]}}"#,
                        ),
                        step("web/c", &[], r#"{"command":{"argv":["touch","c"]}}"#),
                    ],
                    handlers: vec![],
                },
            ],
        );
        run(&sys, &plan, dir.path());
        assert_eq!(
            sys.commands(),
            vec!["touch a", "touch b", "touch c", "echo h"]
        );
    }
}
