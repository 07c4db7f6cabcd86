//! The `service` resource: a systemd service started at boot or not,
//! running or not, and the `restart`/`reload` actions of handlers.
//!
//! The state comes from one `systemctl show`. Enablement follows
//! `UnitFileState`: `enabled`, `alias` and `linked` are enabled;
//! `disabled` and the `-runtime` states (gone at the next boot) are not.
//! Units without an `[Install]` section (`static`, `indirect`, `generated`,
//! `transient`) start when another unit wants them: `enabled: true` has
//! nothing to do there, and `enabled: false` is refused, because disabling
//! cannot keep them from starting (masking can, and is the admin's call).
//!
//! `systemctl start` returns as soon as a simple service is forked, so a
//! service that dies at once still "started" (clou-lab-hello 2.0 with its
//! fail file does, in the lab: `is-active` right after the start still says
//! active). So every start and restart waits [`SETTLE`], then asks
//! `systemctl is-active`; a unit that is not active then is an error
//! carrying its last journal lines. A service that dies later than that is
//! the health checks' business.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use clou_protocol::resource::{ServiceAction, ServiceSpec, ServiceState};

use super::{Ctx, Differences, Error, Kind, command_failed};
use crate::system::Cmd;

/// One thing to do to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub op: Op,
    /// The name as the resource says it (`nginx`), for the change line.
    pub name: String,
}

/// A `systemctl` verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Enable,
    Disable,
    Start,
    Stop,
    Restart,
    Reload,
    ReloadOrRestart,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Enable => "enable",
            Op::Disable => "disable",
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Restart => "restart",
            Op::Reload => "reload",
            Op::ReloadOrRestart => "reload-or-restart",
        }
    }

    /// Ops after which the unit must be active.
    fn starts(self) -> bool {
        matches!(self, Op::Start | Op::Restart | Op::ReloadOrRestart)
    }
}

impl From<ServiceAction> for Op {
    fn from(action: ServiceAction) -> Op {
        match action {
            ServiceAction::Restart => Op::Restart,
            ServiceAction::Reload => Op::Reload,
            ServiceAction::ReloadOrRestart => Op::ReloadOrRestart,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.verb(), self.name)
    }
}

/// How long a started service gets to fail before it counts as started.
/// Unit tests answer from a script, where waiting proves nothing.
pub const SETTLE: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_secs(1)
};

/// What `systemctl show` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Unit {
    load: String,
    active: String,
    file_state: String,
}

impl Kind for ServiceSpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let unit = unit_name(&self.name)?;
        if self.state == Some(ServiceState::Stopped) && self.action.is_some() {
            return Err(Error::Invalid(format!(
                "service {}: `action` starts the service and `state: stopped` stops it; keep \
                 one of them",
                self.name
            )));
        }
        // A unit file written earlier in this run is not seen by systemd
        // until it reloads; in check mode nothing was written.
        if ctx.run.units_changed && !ctx.check {
            ctx.run_ok(&Cmd::new(["systemctl", "daemon-reload"]))?;
            ctx.run.units_changed = false;
        }
        let found = show(ctx, &unit)?;
        let change = |op: Op| Change {
            op,
            name: self.name.clone(),
        };
        let needs_unit = self.enabled == Some(true)
            || self.state == Some(ServiceState::Running)
            || self.action.is_some();

        match found.load.as_str() {
            "loaded" => {}
            "not-found" => {
                let planned = ctx.planned(&format!("unit:{}", self.name))
                    || ctx.planned(&format!("unit:{unit}"))
                    || ctx.run.planned.iter().any(|k| k.starts_with("package:"));
                if ctx.check && planned {
                    // What a real run would do once the package or unit
                    // file is in place (Debian packages enable and start
                    // their services, so `false`/`stopped` are changes too).
                    let mut changes = Vec::new();
                    changes.extend(self.enabled.map(|e| change(enable_op(e))));
                    changes.extend(self.state.map(|s| change(state_op(s))));
                    if self.state.is_none() {
                        changes.extend(self.action.map(|a| change(a.into())));
                    }
                    return Ok(Differences::of(changes));
                }
                if !needs_unit {
                    // Not enabled, not running: a unit that does not exist
                    // is both already.
                    return Ok(Differences::none());
                }
                return Err(Error::Invalid(format!(
                    "unit {unit} does not exist on this host, and which package provides it \
                     is unknown to clou; declare that package (or the unit file) before this \
                     service"
                )));
            }
            "masked" if needs_unit => {
                return Err(Error::Invalid(format!(
                    "{unit} is masked, so it cannot be enabled or started; run `systemctl \
                     unmask {unit}` if it should run, or drop this service resource"
                )));
            }
            "masked" => {}
            other => {
                return Err(Error::Invalid(format!(
                    "systemd cannot load {unit} (LoadState={other}); `systemctl status {unit}` \
                     says why: fix the unit file, then apply again"
                )));
            }
        }

        let mut changes = Vec::new();
        if let Some(wanted) = self.enabled
            && enablement_differs(&unit, &found.file_state, wanted)?
        {
            changes.push(change(enable_op(wanted)));
        }
        let active = matches!(found.active.as_str(), "active" | "reloading");
        let inactive = matches!(found.active.as_str(), "inactive" | "failed");
        match self.state {
            Some(ServiceState::Running) if !active => changes.push(change(Op::Start)),
            Some(ServiceState::Stopped) if !inactive => changes.push(change(Op::Stop)),
            _ => {}
        }
        if let Some(action) = self.action
            && !changes.iter().any(|c| c.op == Op::Start)
        {
            // A stopped service is started instead (the spec's promise).
            changes.push(change(if inactive { Op::Start } else { action.into() }));
        }
        Ok(Differences::of(changes))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let unit = unit_name(&self.name)?;
        for change in &diff.changes {
            let cmd = Cmd::new(["systemctl", change.op.verb(), unit.as_str()]);
            let out = ctx.run(&cmd)?;
            if !out.success() {
                let mut err = command_failed(&cmd, &out);
                if change.op.starts() || change.op == Op::Reload {
                    with_journal(ctx, &unit, &mut err);
                }
                return Err(err);
            }
            if change.op.starts() {
                std::thread::sleep(SETTLE);
                let check = ctx.run(&Cmd::new(["systemctl", "is-active", unit.as_str()]))?;
                if !check.success() {
                    let state = check.stdout_text().trim().to_owned();
                    let mut err = Error::Command {
                        command: cmd.display(),
                        status: format!(
                            "it exited 0, but {unit} is {} right after",
                            if state.is_empty() {
                                "not active"
                            } else {
                                &state
                            }
                        ),
                        tail: String::new(),
                    };
                    with_journal(ctx, &unit, &mut err);
                    return Err(err);
                }
            }
        }
        Ok(())
    }
}

/// `nginx` -> `nginx.service`; a timer, socket or path unit keeps its
/// suffix (`clou-check.timer`); refuses what systemctl would read as an
/// option.
fn unit_name(name: &str) -> Result<String, Error> {
    let (base, suffix) = [".service", ".timer", ".socket", ".path"]
        .iter()
        .find_map(|s| name.strip_suffix(s).map(|b| (b, *s)))
        .unwrap_or((name, ".service"));
    let valid = !base.is_empty()
        && !base.starts_with('-')
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@-\\".contains(c));
    if valid {
        Ok(format!("{base}{suffix}"))
    } else {
        Err(Error::Invalid(format!(
            "{name:?} is not a systemd service name (letters, digits and `:_.@-`, `.service` \
             implied); fix the service resource"
        )))
    }
}

fn enable_op(enabled: bool) -> Op {
    if enabled { Op::Enable } else { Op::Disable }
}

fn state_op(state: ServiceState) -> Op {
    match state {
        ServiceState::Running => Op::Start,
        ServiceState::Stopped => Op::Stop,
    }
}

/// Whether `systemctl enable|disable` has something to do.
fn enablement_differs(unit: &str, file_state: &str, wanted: bool) -> Result<bool, Error> {
    match file_state {
        "enabled" | "alias" | "linked" => Ok(!wanted),
        "disabled" | "enabled-runtime" | "linked-runtime" | "masked" | "masked-runtime" => {
            Ok(wanted)
        }
        "static" | "indirect" | "generated" | "transient" if wanted => Ok(false),
        "static" | "indirect" | "generated" | "transient" => Err(Error::Invalid(format!(
            "{unit} is {file_state}: it has no [Install] section of its own and starts when \
             another unit needs it, so it cannot be disabled; drop `enabled: false`, add \
             `state: stopped`, or mask it by hand if it must never start"
        ))),
        other => Err(Error::Invalid(format!(
            "cannot tell whether {unit} is enabled (UnitFileState={other:?}); `systemctl \
             is-enabled {unit}` may say more"
        ))),
    }
}

/// Runs `systemctl show` for the properties the resource reads.
fn show(ctx: &Ctx<'_>, unit: &str) -> Result<Unit, Error> {
    let cmd = Cmd::new([
        "systemctl",
        "show",
        unit,
        "--property=LoadState,ActiveState,SubState,UnitFileState",
    ]);
    let out = ctx.run_ok(&cmd)?;
    let text = out.stdout_text();
    let mut props: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            props.insert(key, value.trim());
        }
    }
    let load = props.get("LoadState").copied().unwrap_or_default();
    if load.is_empty() {
        return Err(Error::Invalid(format!(
            "`{}` printed no LoadState; is systemd running on this host?",
            cmd.display()
        )));
    }
    Ok(Unit {
        load: load.to_owned(),
        active: props
            .get("ActiveState")
            .copied()
            .unwrap_or_default()
            .to_owned(),
        file_state: props
            .get("UnitFileState")
            .copied()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Puts the unit's last journal lines into a failed command's error.
fn with_journal(ctx: &Ctx<'_>, unit: &str, err: &mut Error) {
    let lines = crate::system::journal_tail(ctx.sys, unit).unwrap_or_else(|why| format!("({why})"));
    if let Error::Command { tail, .. } = err {
        let mut text = String::new();
        if !tail.is_empty() {
            text.push_str(tail);
            text.push('\n');
        }
        text.push_str(&format!("last journal lines of {unit}:\n{lines}"));
        *tail = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RunState, converge};
    use crate::system::testing::Recorder;

    const SSH: [&str; 3] = [
        include_str!("testdata/systemctl-show-ssh-bullseye.txt"),
        include_str!("testdata/systemctl-show-ssh-bookworm.txt"),
        include_str!("testdata/systemctl-show-ssh-trixie.txt"),
    ];
    const HELLO_RUNNING: [&str; 3] = [
        include_str!("testdata/systemctl-show-hello-running-bullseye.txt"),
        include_str!("testdata/systemctl-show-hello-running-bookworm.txt"),
        include_str!("testdata/systemctl-show-hello-running-trixie.txt"),
    ];
    const NOT_FOUND: [&str; 3] = [
        include_str!("testdata/systemctl-show-not-found-bullseye.txt"),
        include_str!("testdata/systemctl-show-not-found-bookworm.txt"),
        include_str!("testdata/systemctl-show-not-found-trixie.txt"),
    ];
    const STATIC: [&str; 3] = [
        include_str!("testdata/systemctl-show-static-journald-bullseye.txt"),
        include_str!("testdata/systemctl-show-static-journald-bookworm.txt"),
        include_str!("testdata/systemctl-show-static-journald-trixie.txt"),
    ];
    const SSHD_ALIAS: &str = include_str!("testdata/systemctl-show-sshd-alias-bookworm.txt");
    const HELLO_STOPPED: &str =
        include_str!("testdata/systemctl-show-hello-stopped-disabled-bookworm.txt");
    const HELLO_MASKED: &str = include_str!("testdata/systemctl-show-hello-masked-bookworm.txt");
    const HELLO_FAILED: &str =
        include_str!("testdata/systemctl-show-hello-2.0-failed-bookworm.txt");
    const IS_ACTIVE: &str = include_str!("testdata/systemctl-is-active-active-bookworm.txt");
    const RESTART_FAILING: &str =
        include_str!("testdata/systemctl-restart-hello-2.0-failing-bookworm.txt");
    const IS_FAILED: &str = include_str!("testdata/systemctl-is-active-failed-bookworm.txt");
    const JOURNAL_FAILED: &str = include_str!("testdata/journalctl-hello-2.0-failed-bookworm.txt");

    const SHOW_HELLO: &str = "systemctl show clou-lab-hello.service \
        --property=LoadState,ActiveState,SubState,UnitFileState";

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            enabled: None,
            state: None,
            action: None,
        }
    }

    fn wanted(name: &str, enabled: Option<bool>, state: Option<ServiceState>) -> ServiceSpec {
        ServiceSpec {
            enabled,
            state,
            ..spec(name)
        }
    }

    fn host(show: &str) -> Recorder {
        let sys = Recorder::new();
        sys.reply(&["systemctl", "show"], 0, show);
        sys.reply(&["systemctl", "is-active"], 0, IS_ACTIVE);
        sys
    }

    fn run_with(
        sys: &Recorder,
        check: bool,
        state: &mut RunState,
        spec: &ServiceSpec,
    ) -> Result<Vec<String>, Error> {
        let mut ctx = Ctx {
            sys,
            check,
            want_diff: false,
            sensitive: false,
            run: state,
        };
        converge(spec, &mut ctx).map(|o| o.changes)
    }

    fn run(sys: &Recorder, check: bool, spec: &ServiceSpec) -> Result<Vec<String>, Error> {
        run_with(sys, check, &mut RunState::default(), spec)
    }

    const ENABLED_RUNNING: (Option<bool>, Option<ServiceState>) =
        (Some(true), Some(ServiceState::Running));

    #[test]
    fn enabled_running_service_changes_nothing_on_every_release() {
        for show in SSH.into_iter().chain(HELLO_RUNNING).chain([SSHD_ALIAS]) {
            let sys = host(show);
            let (e, s) = ENABLED_RUNNING;
            assert_eq!(
                run(&sys, false, &wanted("ssh", e, s)).unwrap(),
                Vec::<String>::new()
            );
            assert_eq!(sys.commands().len(), 1);
        }
    }

    #[test]
    fn stopped_disabled_service_is_enabled_then_started_and_checked() {
        let sys = host(HELLO_STOPPED);
        let (e, s) = ENABLED_RUNNING;
        let changes = run(&sys, false, &wanted("clou-lab-hello", e, s)).unwrap();
        assert_eq!(
            changes,
            vec!["enable clou-lab-hello", "start clou-lab-hello"]
        );
        assert_eq!(
            sys.commands(),
            vec![
                SHOW_HELLO,
                "systemctl enable clou-lab-hello.service",
                "systemctl start clou-lab-hello.service",
                "systemctl is-active clou-lab-hello.service",
            ]
        );
        // The same resource against the state that left.
        let sys = host(HELLO_RUNNING[1]);
        assert_eq!(
            run(&sys, false, &wanted("clou-lab-hello", e, s)).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn running_enabled_service_is_stopped_and_disabled() {
        let sys = host(HELLO_RUNNING[1]);
        let spec = wanted("clou-lab-hello", Some(false), Some(ServiceState::Stopped));
        let changes = run(&sys, false, &spec).unwrap();
        assert_eq!(
            changes,
            vec!["disable clou-lab-hello", "stop clou-lab-hello"]
        );
        assert_eq!(
            sys.commands()[1..],
            [
                "systemctl disable clou-lab-hello.service",
                "systemctl stop clou-lab-hello.service",
            ]
        );
        let sys = host(HELLO_STOPPED);
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn failed_service_counts_as_stopped() {
        let sys = host(HELLO_FAILED);
        let spec = wanted("clou-lab-hello", None, Some(ServiceState::Stopped));
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn start_that_leaves_the_unit_failed_is_an_error_with_its_journal() {
        let sys = Recorder::new();
        sys.reply(&["systemctl", "show"], 0, HELLO_FAILED);
        sys.reply(&["systemctl", "is-active"], 3, IS_FAILED);
        sys.reply(&["journalctl"], 0, JOURNAL_FAILED);
        let spec = wanted("clou-lab-hello", None, Some(ServiceState::Running));
        let err = run(&sys, false, &spec).unwrap_err().to_string();
        assert!(
            err.contains("`systemctl start clou-lab-hello.service`"),
            "{err}"
        );
        assert!(
            err.contains("clou-lab-hello.service is failed right after"),
            "{err}"
        );
        assert!(
            err.contains("refusing to start: /etc/clou-lab-hello/fail-2.0 exists"),
            "{err}"
        );
        assert_eq!(
            sys.commands()[1..],
            [
                "systemctl start clou-lab-hello.service",
                "systemctl is-active clou-lab-hello.service",
                "journalctl -u clou-lab-hello.service -n 10 --no-pager -o cat",
            ]
        );
    }

    #[test]
    fn restart_that_exits_0_but_leaves_the_unit_failed_is_an_error() {
        // clou-lab-hello 2.0 with its fail file: `systemctl restart` exits 0
        // and the service is dead a moment later.
        let sys = Recorder::new();
        sys.reply(&["systemctl", "show"], 0, HELLO_RUNNING[1]);
        sys.reply(&["systemctl", "restart"], 0, RESTART_FAILING);
        sys.reply(&["systemctl", "is-active"], 3, IS_FAILED);
        sys.reply(&["journalctl"], 0, JOURNAL_FAILED);
        let spec = ServiceSpec {
            action: Some(ServiceAction::Restart),
            ..spec("clou-lab-hello")
        };
        let err = run(&sys, false, &spec).unwrap_err().to_string();
        assert!(
            err.contains("`systemctl restart clou-lab-hello.service` failed"),
            "{err}"
        );
        assert!(err.contains("Failed with result 'exit-code'"), "{err}");
    }

    #[test]
    fn action_always_runs_and_is_checked() {
        for (action, verb) in [
            (ServiceAction::Restart, "restart"),
            (ServiceAction::ReloadOrRestart, "reload-or-restart"),
        ] {
            let sys = host(HELLO_RUNNING[1]);
            let spec = ServiceSpec {
                action: Some(action),
                ..spec("clou-lab-hello")
            };
            assert_eq!(
                run(&sys, false, &spec).unwrap(),
                vec![format!("{verb} clou-lab-hello")]
            );
            assert_eq!(
                sys.commands()[1..],
                [
                    format!("systemctl {verb} clou-lab-hello.service"),
                    "systemctl is-active clou-lab-hello.service".to_owned(),
                ]
            );
        }
        let sys = host(HELLO_RUNNING[1]);
        let spec = ServiceSpec {
            action: Some(ServiceAction::Reload),
            ..spec("clou-lab-hello")
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["reload clou-lab-hello"]
        );
        assert_eq!(
            sys.commands()[1..],
            ["systemctl reload clou-lab-hello.service"]
        );
    }

    #[test]
    fn action_on_a_stopped_service_starts_it_once() {
        for state in [None, Some(ServiceState::Running)] {
            let sys = host(HELLO_STOPPED);
            let spec = ServiceSpec {
                action: Some(ServiceAction::Reload),
                state,
                ..spec("clou-lab-hello")
            };
            assert_eq!(
                run(&sys, false, &spec).unwrap(),
                vec!["start clou-lab-hello"]
            );
        }
    }

    #[test]
    fn daemon_reload_runs_first_only_when_a_unit_changed() {
        let sys = host(HELLO_RUNNING[1]);
        let mut state = RunState {
            units_changed: true,
            ..RunState::default()
        };
        let (e, s) = ENABLED_RUNNING;
        let spec = wanted("clou-lab-hello", e, s);
        run_with(&sys, false, &mut state, &spec).unwrap();
        run_with(&sys, false, &mut state, &spec).unwrap();
        assert_eq!(
            sys.commands(),
            vec!["systemctl daemon-reload", SHOW_HELLO, SHOW_HELLO]
        );
        assert!(!state.units_changed);
    }

    #[test]
    fn check_mode_only_reads() {
        let sys = host(HELLO_STOPPED);
        let mut state = RunState {
            units_changed: true,
            ..RunState::default()
        };
        let (e, s) = ENABLED_RUNNING;
        let changes = run_with(&sys, true, &mut state, &wanted("clou-lab-hello", e, s)).unwrap();
        assert_eq!(
            changes,
            vec!["enable clou-lab-hello", "start clou-lab-hello"]
        );
        assert_eq!(sys.commands(), vec![SHOW_HELLO]);
        // The next service, in a real run, still reloads.
        assert!(state.units_changed);
    }

    #[test]
    fn missing_unit_is_an_error_naming_it() {
        for show in NOT_FOUND {
            let sys = host(show);
            let (e, s) = ENABLED_RUNNING;
            let err = run(&sys, false, &wanted("nosuchunit", e, s))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("unit nosuchunit.service does not exist"),
                "{err}"
            );
            assert!(
                err.contains("which package provides it is unknown"),
                "{err}"
            );
            // Not in check mode either, unless something would provide it.
            let sys = host(show);
            assert!(run(&sys, true, &wanted("nosuchunit", e, s)).is_err());
        }
    }

    #[test]
    fn missing_unit_in_check_mode_after_a_planned_package_reports_what_would_happen() {
        for key in ["package:nginx", "unit:nginx", "unit:nginx.service"] {
            let sys = host(NOT_FOUND[1]);
            let mut state = RunState::default();
            state.planned.insert(key.to_owned());
            let (e, s) = ENABLED_RUNNING;
            let changes = run_with(&sys, true, &mut state, &wanted("nginx", e, s)).unwrap();
            assert_eq!(changes, vec!["enable nginx", "start nginx"], "{key}");
            assert_eq!(sys.commands().len(), 1);
        }
    }

    #[test]
    fn missing_unit_is_already_stopped_and_disabled() {
        let sys = host(NOT_FOUND[1]);
        let spec = wanted("telnetd", Some(false), Some(ServiceState::Stopped));
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn masked_unit_cannot_be_started_but_is_already_disabled() {
        let sys = host(HELLO_MASKED);
        let (e, s) = ENABLED_RUNNING;
        let err = run(&sys, false, &wanted("clou-lab-hello", e, s))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("systemctl unmask clou-lab-hello.service"),
            "{err}"
        );
        let sys = host(HELLO_MASKED);
        let spec = wanted("clou-lab-hello", Some(false), Some(ServiceState::Stopped));
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn static_unit_counts_as_enabled_and_cannot_be_disabled() {
        for show in STATIC {
            let sys = host(show);
            let (e, s) = ENABLED_RUNNING;
            assert_eq!(
                run(&sys, false, &wanted("systemd-journald", e, s)).unwrap(),
                Vec::<String>::new()
            );
            let sys = host(show);
            let err = run(&sys, false, &wanted("systemd-journald", Some(false), None))
                .unwrap_err()
                .to_string();
            assert!(err.contains("systemd-journald.service is static"), "{err}");
            assert_eq!(sys.commands().len(), 1);
        }
    }

    #[test]
    fn stop_state_with_an_action_is_refused() {
        let sys = host(HELLO_RUNNING[1]);
        let spec = ServiceSpec {
            action: Some(ServiceAction::Restart),
            state: Some(ServiceState::Stopped),
            ..spec("clou-lab-hello")
        };
        assert!(matches!(run(&sys, false, &spec), Err(Error::Invalid(_))));
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn names_systemctl_would_misread_are_refused() {
        for name in ["", "--now", "../etc/passwd", "a b", ".service"] {
            let sys = host(SSH[1]);
            assert!(
                matches!(run(&sys, false, &spec(name)), Err(Error::Invalid(_))),
                "{name}"
            );
            assert!(sys.commands().is_empty());
        }
        assert_eq!(unit_name("getty@tty1").unwrap(), "getty@tty1.service");
        assert_eq!(unit_name("ssh.service").unwrap(), "ssh.service");
        assert_eq!(unit_name("clou-check.timer").unwrap(), "clou-check.timer");
        assert!(unit_name(".timer").is_err());
    }
}
