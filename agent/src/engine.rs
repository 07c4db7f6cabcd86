//! Runs a plan: every resource in order, handlers at the end of roles.
//!
//! - Resources run one at a time, in plan order. After the first failure,
//!   the remaining resources are reported `skipped`: a later resource
//!   usually depends on an earlier one (config before service).
//! - Package resources are converged together, at the first of them, in one
//!   apt transaction; each is then reported in its own place.
//! - A resource that changed notifies its handlers. At the end of each role,
//!   the notified handlers of that role and of the roles before it run once
//!   each, in declaration order; they run even when a later resource failed,
//!   because what did change still needs its restart.
//! - Every change (not in check mode) is appended to the host's journal.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use clou_protocol::{Plan, Report, Resource, Status, Step};

use crate::journal::{Entry, Journal};
use crate::resources::{self, Ctx, Kind, Outcome, RunState, package};
use crate::system::System;

/// Where the agent keeps its lock, journal and uploaded binaries.
pub const STATE_DIR: &str = "/var/lib/clou";

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
    warnings: Vec<String>,
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
    /// An engine for `plan`; `state_dir` holds the journal (none in check
    /// mode, which writes nothing).
    pub fn new(sys: &'a dyn System, plan: &'a Plan, state_dir: Option<PathBuf>) -> Engine<'a> {
        Engine {
            sys,
            plan,
            journal: state_dir.filter(|_| !plan.check).map(|d| Journal::new(&d)),
            run: RunState::default(),
            packages: None,
            failed: false,
            notified: HashSet::new(),
            warnings: Vec::new(),
        }
    }

    /// Runs the whole plan, handing each report to `emit` as soon as it is
    /// known. Returns the warnings gathered on the way.
    pub fn run(mut self, emit: &mut dyn FnMut(Report)) -> Vec<String> {
        let plan = self.plan;
        for (index, role) in plan.roles.iter().enumerate() {
            for step in &role.resources {
                let report = if self.failed {
                    skipped(&role.name, step)
                } else {
                    self.step(&role.name, step, false)
                };
                if report.status == Status::Failed {
                    self.failed = true;
                }
                emit(report);
            }
            for done_role in &plan.roles[..=index] {
                for handler in &done_role.handlers {
                    if self.notified.remove(&handler.id) {
                        emit(self.step(&done_role.name, handler, true));
                    }
                }
            }
        }
        self.warnings
    }

    fn step(&mut self, role: &str, step: &Step, handler: bool) -> Report {
        let started = Instant::now();
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
        if status == Status::Changed {
            self.notified.extend(step.notify.iter().cloned());
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
        assert_eq!(
            journal.lines().count(),
            4,
            "a, b, c (failed) and h:\n{journal}"
        );
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
