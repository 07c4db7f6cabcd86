//! The wire contract between the `clou` controller and `clou-agent`.
//!
//! # Layout
//!
//! The controller opens one exec channel per host and runs the agent there.
//! Both sides then speak newline-delimited JSON over the channel: every line
//! is one [`Message`].
//!
//! 1. Both sides send a [`Hello`] first, so that a controller and an agent
//!    built from different versions of this crate notice it before anything
//!    is done on the host.
//! 2. The controller sends one [`Plan`]: every resource of every role for
//!    that host, already rendered (the agent never sees the inventory).
//! 3. The agent streams one [`Report`] per resource as it goes, then one
//!    [`Done`]; or one [`Refused`] if it cannot start (lock held, ...).
//!
//! Instead of a plan, the controller may send a [`CheckRequest`]; the
//! agent then answers with one [`HealthReport`] and changes nothing. Or a
//! [`UsageRequest`], answered with one [`UsageReport`]; or an
//! [`UpgradeRequest`], answered with one [`UpgradeReport`]; or a
//! [`RebootRequest`], answered with [`Rebooting`] just before the reboot.
//!
//! The resource specs in [`resource`] are what a role author writes under
//! each resource kind; their doc comments are the reference.
//!
//! This crate holds plain data only (serde types and their documentation); it
//! does no I/O, so both the async controller and the blocking agent use it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod disk;
pub mod health;
pub mod resource;
pub mod upgrade;
pub mod usage;

use serde::{Deserialize, Serialize};

pub use disk::{DiskReport, DiskRequest, DiskStep, DiskUse};
pub use health::{CheckRequest, Finding, HealthReport, Severity};
pub use resource::Resource;
pub use upgrade::{PackageUpgrade, RebootRequest, Rebooting, UpgradeReport, UpgradeRequest};
pub use usage::{UsageItem, UsageMeasure, UsageReport, UsageRequest};

/// Version of the wire protocol. Bumped on any incompatible change; both
/// sides refuse to go on when the versions differ.
pub const PROTOCOL_VERSION: u32 = 6;

/// One line on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// The opening handshake, sent first by both sides.
    Hello(Hello),
    /// Controller to agent: what this host must look like.
    Plan(Plan),
    /// Agent to controller: the outcome of one resource or handler.
    Report(Report),
    /// Agent to controller: the plan is finished (last message).
    Done(Done),
    /// Agent to controller: the plan was not started (last message).
    Refused(Refused),
    /// Controller to agent, instead of a plan: look at the host's health.
    Check(CheckRequest),
    /// Agent to controller: what the health check found (last message).
    Health(HealthReport),
    /// Controller to agent, instead of a plan: measure the tenants' usage.
    Usage(UsageRequest),
    /// Agent to controller: the measures (last message).
    UsageReport(UsageReport),
    /// Controller to agent, instead of a plan: look at or do a package
    /// upgrade.
    Upgrade(UpgradeRequest),
    /// Agent to controller: what the upgrade found or did (last message).
    Upgraded(UpgradeReport),
    /// Controller to agent, instead of a plan: reboot.
    Reboot(RebootRequest),
    /// Agent to controller: the reboot is under way (last message).
    Rebooting(Rebooting),
    /// Controller to agent, on a new connection after a plan: keep its
    /// confirm changes.
    Confirm(ConfirmRequest),
    /// Agent to controller: kept, or reverted already (last message).
    Confirmed(Confirmed),
    /// Controller to agent, instead of a plan: a step of a disk replacement.
    Disk(DiskRequest),
    /// Agent to controller: what the step found or did (last message).
    DiskReport(DiskReport),
}

/// The opening handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// The sender's program version (`CARGO_PKG_VERSION`), for messages.
    pub version: String,
}

impl Hello {
    /// The hello of this build.
    pub fn current(version: &str) -> Self {
        Hello {
            protocol: PROTOCOL_VERSION,
            version: version.to_owned(),
        }
    }
}

/// Everything one host must converge to, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Identifies this run in the host's journal and lock.
    pub run_id: String,
    /// Who runs it (`user@machine` of the controller), for the journal.
    pub admin: String,
    /// Check mode: compute and report differences, change nothing.
    /// Required: a plan never means "apply" by omission.
    pub check: bool,
    /// Send a unified diff with every content change (never for secrets).
    #[serde(default)]
    pub diff: bool,
    /// The roles, dependencies first.
    pub roles: Vec<RolePlan>,
    /// Seconds a confirm step's change waits for its confirmation before
    /// it is reverted (see [`Step::confirm`]).
    #[serde(default = "default_confirm_secs")]
    pub confirm_secs: u64,
    /// A tenant's failed `release` (rolled back) does not stop the plan:
    /// the other tenants are still upgraded (`clou apply --keep-going`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_going: bool,
}

fn default_confirm_secs() -> u64 {
    30
}

/// One role's part of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePlan {
    /// The role's name.
    pub name: String,
    /// Its resources, applied in this order.
    #[serde(default)]
    pub resources: Vec<Step>,
    /// Its handlers: run once at the end of the role when notified.
    #[serde(default)]
    pub handlers: Vec<Step>,
}

/// One resource of a plan, with what it notifies when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the plan, e.g. `base/file:/etc/motd`; handlers are
    /// named `role/handler name`.
    pub id: String,
    /// Handler ids to run once, at the end of the role, if this changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Content of this resource is secret: no diff, no value in the journal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// A change here (sshd's or the firewall's configuration) is kept only
    /// if the controller can still log in afterwards: the agent keeps the
    /// previous file and puts it back, and runs the handlers the step
    /// notifies, unless a new connection confirms within
    /// [`Plan::confirm_secs`]. Only for `file` resources.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm: bool,
    /// What the resource must look like.
    pub resource: Resource,
}

/// The outcome of one resource (or handler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The [`Step::id`].
    pub id: String,
    /// The role it belongs to.
    pub role: String,
    /// True for a handler.
    #[serde(default)]
    pub handler: bool,
    /// What happened.
    pub status: Status,
    /// One line per difference found (and, outside check mode, fixed),
    /// e.g. `mode 0600 -> 0644` or `install nginx 1.22.1-9`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// A unified diff of the content, when the plan asked for diffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Why it failed, or why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time spent on it.
    pub millis: u64,
}

/// What happened to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Already as asked.
    Ok,
    /// Was changed (or, in check mode, would be).
    Changed,
    /// Could not be brought to the asked state.
    Failed,
    /// Not attempted, because an earlier resource failed.
    Skipped,
}

/// The end of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Done {
    /// Wall time of the whole plan on the host.
    pub millis: u64,
    /// Warnings worth showing to the admin (a stale lock taken over, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Changes waiting for a confirmation from a new connection (a
    /// [`Message::Confirm`] with this token), or they are reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<PendingConfirm>,
}

/// Changes kept only if confirmed in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingConfirm {
    pub token: String,
    /// What would be put back (the files).
    pub files: Vec<String>,
    /// Seconds left before the revert.
    pub secs: u64,
}

/// Controller to agent, on a new connection: the changes are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub token: String,
}

/// Agent to controller: what became of the changes (last message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmed {
    /// True: kept. False: they had been reverted already (too late).
    pub kept: bool,
}

/// Why the agent did not start the plan. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    /// What is wrong and what to do.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_as_one_json_line() {
        let msg = Message::Hello(Hello::current("0.1.0"));
        let line = serde_json::to_string(&msg).expect("serialise");
        assert_eq!(
            line,
            format!(r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"version":"0.1.0"}}"#)
        );
        let back: Message = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, msg);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let line = r#"{"type":"hello","protocol":1,"version":"0.1.0","extra":true}"#;
        assert!(serde_json::from_str::<Message>(line).is_err());
    }

    #[test]
    fn a_plan_round_trips() {
        let plan = Message::Plan(Plan {
            run_id: "r1".into(),
            admin: "root@laptop".into(),
            check: true,
            diff: false,
            confirm_secs: 30,
            keep_going: true,
            roles: vec![RolePlan {
                name: "base".into(),
                resources: vec![Step {
                    id: "base/directory:/srv".into(),
                    notify: vec![],
                    sensitive: false,
                    confirm: false,
                    resource: serde_json::from_str(r#"{"directory":{"path":"/srv"}}"#)
                        .expect("resource"),
                }],
                handlers: vec![],
            }],
        });
        let line = serde_json::to_string(&plan).expect("serialise");
        assert!(!line.contains('\n'));
        let back: Message = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, plan);
    }
}
