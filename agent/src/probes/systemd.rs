//! The `systemd` probe: failed units, and the services the host's roles
//! declare.
//!
//! `systemctl list-units --failed` gives every failed unit: one crit
//! finding each, named after the unit, with its description. Each service
//! in `CheckSettings::services` is then asked for with `systemctl show`
//! (load and active state, since when, how often systemd restarted it):
//! - active (running), or active (exited) for a oneshot: ok, saying since
//!   when and how many restarts;
//! - running, but restarted by systemd (NRestarts > 0): warn, it is
//!   flapping: it crashed and came back, and will again. The count resets
//!   when someone restarts it by hand, which is the moment to have read its
//!   journal;
//! - still starting (`activating`): warn, unless it is waiting to be
//!   restarted after a crash (`auto-restart`), which is a crash loop: crit;
//! - anything else (inactive, failed, not installed, masked): crit: the
//!   roles say this host serves it.
//!
//! When systemctl cannot be run or answers with an error (not a systemd
//! host, systemd not PID 1), one unknown finding says so.

use std::collections::BTreeMap;

use clou_protocol::health::{Finding, Severity};

use super::{Probe, ProbeCtx};
use crate::system::{Cmd, Output};

/// The `systemd` probe.
#[derive(Debug, Clone, Copy)]
pub struct Systemd;

impl Probe for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        check(ctx)
    }
}

const PROBE: &str = "systemd";

/// What `systemctl show` is asked for.
const PROPERTIES: &str =
    "--property=Id,LoadState,ActiveState,SubState,ActiveEnterTimestamp,NRestarts,UnitFileState";

/// Unit types, as unit name suffixes.
const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// LOAD column values.
const LOAD_STATES: [&str; 7] = [
    "loaded",
    "not-found",
    "bad-setting",
    "error",
    "masked",
    "stub",
    "merged",
];

/// One line of `systemctl list-units`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitLine {
    /// As systemctl prints it, escapes included (`dev-disk-by\x2did-...`).
    pub unit: String,
    pub load: String,
    pub active: String,
    pub sub: String,
    pub description: String,
}

/// Whether `name` looks like a unit name: something, a dot, a unit type.
pub fn is_unit_name(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((base, kind)) => !base.is_empty() && UNIT_TYPES.contains(&kind),
        None => false,
    }
}

/// Parses `systemctl list-units` output with or without `--plain`,
/// `--no-legend`, `--all`: the `●`/`*` marker of units that need a look is
/// dropped, and header, legend and footer lines are skipped because they
/// are not a unit name followed by a load state.
pub fn parse_list_units(text: &str) -> Vec<UnitLine> {
    text.lines().filter_map(parse_unit_line).collect()
}

fn parse_unit_line(line: &str) -> Option<UnitLine> {
    let mut rest = line.trim_start();
    for marker in ["●", "*"] {
        if let Some(after) = rest.strip_prefix(marker)
            && after.starts_with(char::is_whitespace)
        {
            rest = after.trim_start();
        }
    }
    let mut fields = Vec::with_capacity(4);
    for _ in 0..4 {
        let (field, after) = next_field(rest)?;
        fields.push(field);
        rest = after;
    }
    let [unit, load, active, sub] = [fields[0], fields[1], fields[2], fields[3]];
    if !is_unit_name(unit) || !LOAD_STATES.contains(&load) {
        return None;
    }
    Some(UnitLine {
        unit: unit.to_owned(),
        load: load.to_owned(),
        active: active.to_owned(),
        sub: sub.to_owned(),
        description: rest.trim().to_owned(),
    })
}

/// The first whitespace-separated field and what follows it.
fn next_field(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    Some(match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], &text[end..]),
        None => (text, ""),
    })
}

/// `systemctl show` output: `Key=value` per line.
pub fn parse_show(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// A declared service, as `systemctl show` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    pub id: String,
    pub load: String,
    pub active: String,
    pub sub: String,
    /// ActiveEnterTimestamp: `Wed 2026-11-25 02:57:38 UTC`, empty if never.
    pub since: String,
    pub restarts: Option<u64>,
    pub file_state: String,
}

impl ServiceState {
    pub fn from_show(text: &str) -> ServiceState {
        let props = parse_show(text);
        let get = |key: &str| props.get(key).cloned().unwrap_or_default();
        ServiceState {
            id: get("Id"),
            load: get("LoadState"),
            active: get("ActiveState"),
            sub: get("SubState"),
            since: get("ActiveEnterTimestamp"),
            restarts: props.get("NRestarts").and_then(|n| n.parse().ok()),
            file_state: get("UnitFileState"),
        }
    }

    /// How bad, and in words.
    pub fn judge(&self, unit: &str) -> (Severity, String) {
        let state = format!("{} ({})", self.active, self.sub);
        let restarts = self.restarts.unwrap_or(0);
        let restarts_words = match restarts {
            1 => "1 restart".to_owned(),
            n => format!("{n} restarts"),
        };
        let since = if self.since.is_empty() {
            String::new()
        } else {
            format!(" since {}", self.since)
        };
        match (self.load.as_str(), self.active.as_str(), self.sub.as_str()) {
            ("not-found", _, _) => (
                Severity::Crit,
                format!(
                    "{unit} is not installed (LoadState=not-found), yet the host's roles say it \
                     runs here: apply the roles again (`clou apply --limit` this host)"
                ),
            ),
            ("masked", _, _) => (
                Severity::Crit,
                format!(
                    "{unit} is masked, so it cannot start, yet the host's roles say it runs \
                     here: `systemctl unmask {unit}` if that was not on purpose"
                ),
            ),
            (_, "active" | "reloading", _) if restarts > 0 => (
                Severity::Warn,
                format!(
                    "{state}{since}, {restarts_words}: systemd restarted it after it stopped \
                     on its own, so it is crashing; read `journalctl -u {unit}`, then a \
                     `systemctl restart {unit}` resets the count"
                ),
            ),
            (_, "active" | "reloading", _) => {
                (Severity::Ok, format!("{state}{since}, {restarts_words}"))
            }
            (_, "activating", "auto-restart") => (
                Severity::Crit,
                format!(
                    "{unit} is in a crash loop: {state}, waiting to be started again after \
                     exiting ({restarts_words} so far); read `journalctl -u {unit}`"
                ),
            ),
            (_, "activating", _) => (
                Severity::Warn,
                format!(
                    "{unit} is still starting: {state}; if it stays so, read `journalctl -u {unit}`"
                ),
            ),
            _ => (
                Severity::Crit,
                format!(
                    "{unit} is not running: {state}, yet the host's roles say it runs here; \
                     `systemctl status {unit}` and `journalctl -u {unit}` say why, then \
                     `systemctl start {unit}`"
                ),
            ),
        }
    }
}

/// `nginx` -> `nginx.service`; unit names of other types stay as they are.
fn unit_of(name: &str) -> String {
    if is_unit_name(name) {
        name.to_owned()
    } else {
        format!("{name}.service")
    }
}

/// Failed units, then every declared service.
pub(crate) fn check(ctx: &ProbeCtx<'_>) -> Vec<Finding> {
    let cmd = Cmd::new([
        "systemctl",
        "list-units",
        "--failed",
        "--plain",
        "--no-legend",
        "--no-pager",
    ])
    .env("LC_ALL", "C");
    let out = match ctx.sys.run(&cmd) {
        Ok(out) if out.success() => out,
        Ok(out) => return vec![not_systemd(&cmd, &describe_failure(&out))],
        Err(err) => return vec![not_systemd(&cmd, &err.to_string())],
    };
    let declared: Vec<String> = ctx.settings.services.iter().map(|s| unit_of(s)).collect();
    let failed: Vec<UnitLine> = parse_list_units(&out.stdout_text())
        .into_iter()
        .filter(|u| u.active == "failed")
        .collect();
    let mut findings = Vec::new();
    if failed.is_empty() {
        findings.push(Finding::new(
            PROBE,
            "systemd",
            Severity::Ok,
            "no failed units",
        ));
    }
    // A declared service that failed is reported below, with more detail.
    for unit in failed.iter().filter(|u| !declared.contains(&u.unit)) {
        findings.push(
            Finding::new(
                PROBE,
                &unit.unit,
                Severity::Crit,
                format!(
                    "{} failed ({}): {}; `systemctl status {}` and `journalctl -u {}` say \
                     why; `systemctl reset-failed {}` clears it if it no longer matters",
                    unit.unit, unit.sub, unit.description, unit.unit, unit.unit, unit.unit
                ),
            )
            .fact("description", &unit.description)
            .fact("load_state", &unit.load)
            .fact("active_state", &unit.active)
            .fact("sub_state", &unit.sub),
        );
    }
    for unit in &declared {
        findings.push(service_finding(ctx, unit));
    }
    findings
}

fn service_finding(ctx: &ProbeCtx<'_>, unit: &str) -> Finding {
    if unit.starts_with('-') {
        return Finding::new(
            PROBE,
            unit,
            Severity::Unknown,
            format!("{unit:?} is not a unit name; fix the services the host's roles declare"),
        );
    }
    let cmd = Cmd::new(["systemctl", "show", unit, PROPERTIES]).env("LC_ALL", "C");
    let out = match ctx.sys.run(&cmd) {
        Ok(out) if out.success() => out,
        Ok(out) => {
            return Finding::new(
                PROBE,
                unit,
                Severity::Unknown,
                format!("`{}` failed: {}", cmd.display(), describe_failure(&out)),
            );
        }
        Err(err) => {
            return Finding::new(
                PROBE,
                unit,
                Severity::Unknown,
                format!("cannot run `{}`: {err}", cmd.display()),
            );
        }
    };
    let state = ServiceState::from_show(&out.stdout_text());
    if state.load.is_empty() {
        return Finding::new(
            PROBE,
            unit,
            Severity::Unknown,
            format!("`{}` printed no LoadState", cmd.display()),
        );
    }
    let (severity, message) = state.judge(unit);
    let mut finding = Finding::new(PROBE, unit, severity, message)
        .fact("load_state", &state.load)
        .fact("active_state", &state.active)
        .fact("sub_state", &state.sub);
    if !state.since.is_empty() {
        finding = finding.fact("since", &state.since);
    }
    if let Some(restarts) = state.restarts {
        finding = finding.fact("restarts", restarts);
    }
    if !state.file_state.is_empty() {
        finding = finding.fact("unit_file_state", &state.file_state);
    }
    // What the admin reads first when a service is down: its last words.
    if severity == Severity::Crit
        && let Some(lines) = last_log_lines(ctx, unit)
    {
        finding = finding.fact("log", lines);
    }
    finding
}

/// The unit's last journal lines, if journalctl has any.
fn last_log_lines(ctx: &ProbeCtx<'_>, unit: &str) -> Option<String> {
    crate::system::journal_tail(ctx.sys, unit)
        .ok()
        .filter(|text| !text.is_empty() && text != "-- No entries --")
}

fn describe_failure(out: &Output) -> String {
    let code = out
        .code
        .map_or("killed by a signal".to_owned(), |c| format!("exit {c}"));
    let tail = out.tail();
    if tail.is_empty() {
        code
    } else {
        format!("{code}: {tail}")
    }
}

fn not_systemd(cmd: &Cmd, why: &str) -> Finding {
    Finding::new(
        PROBE,
        "systemd",
        Severity::Unknown,
        format!(
            "cannot list failed units: `{}`: {why}; is systemd this host's init (PID 1)?",
            cmd.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::disks::Disks;
    use crate::system::System;
    use crate::system::testing::Recorder;
    use clou_protocol::health::CheckSettings;
    use std::io;

    macro_rules! fixture {
        ($file:literal) => {
            include_str!(concat!("testdata/systemctl/", $file))
        };
    }

    fn run_with(sys: &dyn System, services: &[&str]) -> Vec<Finding> {
        let settings = CheckSettings {
            services: services.iter().map(|s| s.to_string()).collect(),
            ..CheckSettings::default()
        };
        let disks = Disks::default();
        let ctx = ProbeCtx {
            sys,
            settings: &settings,
            disks: &disks,
        };
        check(&ctx)
    }

    /// The number systemctl's own footer gives (`334 loaded units listed.`).
    fn footer_count(text: &str) -> usize {
        text.lines()
            .find_map(|l| l.strip_suffix(" loaded units listed."))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn ubuntu_1804_list_units_all_parses_every_unit() {
        let text = fixture!("list-units-all-ubuntu1804.jc.txt");
        let units = parse_list_units(text);
        assert_eq!(units.len(), 334);
        assert_eq!(units.len(), footer_count(text));
        assert!(units.iter().all(|u| u.active != "failed"));
        // `●` marks the not-found unit; it is not part of the name.
        let tmp = units.iter().find(|u| u.unit == "tmp.mount").unwrap();
        assert_eq!(
            (tmp.load.as_str(), tmp.active.as_str()),
            ("not-found", "inactive")
        );
        // Escapes stay as systemctl prints them; descriptions keep spaces.
        let cd = units
            .iter()
            .find(|u| u.unit.starts_with(r"dev-disk-by\x2dlabel-Ubuntu\x2dServer"))
            .unwrap();
        assert_eq!(
            cd.unit,
            r"dev-disk-by\x2dlabel-Ubuntu\x2dServer\x5cx2018.04.3\x5cx20LTS\x5cx20amd64.device"
        );
        assert_eq!(
            cd.description,
            "VMware_Virtual_SATA_CDRW_Drive Ubuntu-Server_18.04.3_LTS_amd64"
        );
    }

    #[test]
    fn centos_77_list_units_all_parses_every_unit() {
        let text = fixture!("list-units-all-centos77.jc.txt");
        let units = parse_list_units(text);
        assert_eq!(units.len(), 220);
        assert_eq!(units.len(), footer_count(text));
        assert!(units.iter().all(|u| u.active != "failed"));
        assert_eq!(units.iter().filter(|u| u.load == "not-found").count(), 19);
        assert!(
            units
                .iter()
                .any(|u| u.unit == r"dev-disk-by\x2did-dm\x2dname\x2dcentos\x2droot.device")
        );
        let block = units
            .iter()
            .find(|u| u.unit == "dev-block-8:2.device")
            .unwrap();
        assert_eq!(
            block.description,
            "LVM PV 3klkIj-w1qk-DkJi-0XBJ-y3o7-i2Ac-vHqWBM on /dev/sda2 2"
        );
    }

    #[test]
    fn bookworm_list_units_all_parses_every_unit() {
        let text = fixture!("list-units-all-bookworm.txt");
        let units = parse_list_units(text);
        assert_eq!(units.len(), 159);
        assert_eq!(units.len(), footer_count(text));
        let failed: Vec<&str> = units
            .iter()
            .filter(|u| u.active == "failed")
            .map(|u| u.unit.as_str())
            .collect();
        assert_eq!(failed, ["clou-lab-hello.service"]);
        let flap = units
            .iter()
            .find(|u| u.unit == "clou-flap.service")
            .unwrap();
        assert!(
            flap.description
                .starts_with("/usr/bin/sh -c test -e /run/clou-flap-ok || {")
        );
    }

    #[test]
    fn list_unit_files_output_is_not_mistaken_for_units() {
        let text = fixture!("list-unit-files-ubuntu1804.jc.txt");
        assert!(parse_list_units(text).is_empty());
        // Its names are all unit names, `-.mount` and templates included.
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.contains('.') && !n.ends_with("listed."))
            .collect();
        assert_eq!(names.len(), 321);
        assert!(names.iter().all(|n| is_unit_name(n)), "{names:?}");
    }

    #[test]
    fn failed_units_in_every_layout() {
        for text in [
            fixture!("list-failed-one-bullseye.txt"),
            fixture!("list-failed-one-bookworm.txt"),
            fixture!("list-failed-with-legend-bookworm.txt"),
        ] {
            let units = parse_list_units(text);
            assert_eq!(units.len(), 1, "{text}");
            assert_eq!(units[0].unit, "clou-lab-hello.service");
            assert_eq!(units[0].description, "clou lab hello service 2.0");
        }
        assert!(parse_list_units(fixture!("list-failed-none-trixie.txt")).is_empty());
    }

    #[test]
    fn a_failed_unit_is_critical_with_its_description() {
        let sys = Recorder::new();
        sys.reply(
            &["systemctl", "list-units"],
            0,
            fixture!("list-failed-transient-trixie.txt"),
        );
        let found = run_with(&sys, &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, "clou-fail.service");
        assert_eq!(found[0].severity, Severity::Crit);
        assert!(
            found[0]
                .message
                .starts_with("clou-fail.service failed (failed): [systemd-run] /usr/bin/false;"),
            "{}",
            found[0].message
        );
        assert_eq!(
            sys.commands(),
            ["systemctl list-units --failed --plain --no-legend --no-pager"]
        );
    }

    #[test]
    fn no_failed_unit_is_one_ok_finding() {
        let sys = Recorder::new();
        sys.reply(
            &["systemctl", "list-units"],
            0,
            fixture!("list-failed-none-trixie.txt"),
        );
        let found = run_with(&sys, &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].subject.as_str(), found[0].severity),
            ("systemd", Severity::Ok)
        );
    }

    #[test]
    fn running_service_is_ok_on_every_release() {
        for show in [
            fixture!("show-ssh-running-bullseye.txt"),
            fixture!("show-ssh-running-bookworm.txt"),
            fixture!("show-ssh-running-trixie.txt"),
        ] {
            let sys = Recorder::new();
            sys.reply(&["systemctl", "show"], 0, show);
            let found = run_with(&sys, &["ssh"]);
            let ssh = found.iter().find(|f| f.subject == "ssh.service").unwrap();
            assert_eq!(ssh.severity, Severity::Ok);
            assert_eq!(
                ssh.message,
                "active (running) since Wed 2026-11-25 02:57:38 UTC, 0 restarts"
            );
            assert_eq!(ssh.facts["since"], "Wed 2026-11-25 02:57:38 UTC");
            assert_eq!(ssh.facts["restarts"], "0");
            assert_eq!(ssh.facts["active_state"], "active");
            assert_eq!(ssh.facts["sub_state"], "running");
            assert_eq!(
                sys.commands()[1],
                "systemctl show ssh.service --property=Id,LoadState,ActiveState,SubState,\
                 ActiveEnterTimestamp,NRestarts,UnitFileState"
            );
        }
    }

    #[test]
    fn missing_service_is_critical_on_every_release() {
        for show in [
            fixture!("show-not-found-bullseye.txt"),
            fixture!("show-not-found-bookworm.txt"),
            fixture!("show-not-found-trixie.txt"),
        ] {
            let state = ServiceState::from_show(show);
            let (severity, message) = state.judge("nosuch.service");
            assert_eq!(severity, Severity::Crit);
            assert!(message.starts_with("nosuch.service is not installed"));
        }
    }

    #[test]
    fn failed_declared_service_is_one_critical_finding() {
        for show in [
            fixture!("show-hello-failed-bullseye.txt"),
            fixture!("show-hello-failed-bookworm.txt"),
        ] {
            let sys = Recorder::new();
            sys.reply(
                &["systemctl", "list-units"],
                0,
                fixture!("list-failed-one-bookworm.txt"),
            );
            sys.reply(&["systemctl", "show"], 0, show);
            sys.reply(
                &["journalctl"],
                0,
                include_str!("../resources/testdata/journalctl-hello-2.0-failed-bookworm.txt"),
            );
            let found = run_with(&sys, &["clou-lab-hello"]);
            // Not twice: the failed list leaves it to the declared service.
            assert_eq!(found.len(), 1, "{found:#?}");
            assert_eq!(found[0].subject, "clou-lab-hello.service");
            assert_eq!(found[0].severity, Severity::Crit);
            // With its last words, for the admin who has to act.
            assert!(
                found[0].facts["log"].contains("refusing to start: /etc/clou-lab-hello/fail-2.0"),
                "{found:#?}"
            );
            assert!(found[0].message.contains("is not running: failed (failed)"));
            assert_eq!(found[0].facts["active_state"], "failed");
        }
    }

    #[test]
    fn stopped_declared_service_is_critical() {
        let state = ServiceState::from_show(fixture!("show-hello-stopped-trixie.txt"));
        let (severity, message) = state.judge("clou-lab-hello.service");
        assert_eq!(severity, Severity::Crit);
        assert!(message.contains("is not running: inactive (dead)"));
    }

    #[test]
    fn transient_failed_unit_show_is_critical() {
        let state = ServiceState::from_show(fixture!("show-transient-failed-trixie.txt"));
        assert_eq!(state.file_state, "transient");
        assert_eq!(state.judge("clou-fail.service").0, Severity::Crit);
    }

    #[test]
    fn restarted_service_that_runs_is_flapping() {
        let state = ServiceState::from_show(fixture!("show-flapping-restarted-once-bookworm.txt"));
        let (severity, message) = state.judge("clou-flap.service");
        assert_eq!(severity, Severity::Warn);
        assert!(
            message.starts_with("active (running) since Wed 2026-11-25 04:10:04 UTC, 1 restart:"),
            "{message}"
        );
    }

    #[test]
    fn service_waiting_to_restart_is_a_crash_loop() {
        let state = ServiceState::from_show(fixture!("show-crash-loop-auto-restart-bookworm.txt"));
        let (severity, message) = state.judge("clou-loop.service");
        assert_eq!(severity, Severity::Crit);
        assert!(message.contains("crash loop: activating (auto-restart)"));
    }

    #[test]
    fn not_a_systemd_host_is_unknown() {
        // The development machine's own answer (systemd not PID 1).
        let stderr = fixture!("list-failed-not-systemd.stderr.txt");
        #[derive(Debug)]
        struct NotSystemd(&'static str);
        impl System for NotSystemd {
            fn run(&self, _cmd: &Cmd) -> io::Result<Output> {
                Ok(Output {
                    code: Some(1),
                    stdout: Vec::new(),
                    stderr: self.0.as_bytes().to_vec(),
                })
            }
        }
        let found = run_with(&NotSystemd(stderr), &["ssh"]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Unknown);
        assert!(
            found[0]
                .message
                .contains("exit 1: System has not been booted with systemd")
        );
    }

    #[test]
    fn no_systemctl_at_all_is_unknown() {
        #[derive(Debug)]
        struct NoPrograms;
        impl System for NoPrograms {
            fn run(&self, _cmd: &Cmd) -> io::Result<Output> {
                Err(io::Error::from(io::ErrorKind::NotFound))
            }
        }
        let found = run_with(&NoPrograms, &[]);
        assert_eq!(
            (found[0].subject.as_str(), found[0].severity),
            ("systemd", Severity::Unknown)
        );
    }

    #[test]
    fn declared_names_become_service_units() {
        assert_eq!(unit_of("nginx"), "nginx.service");
        assert_eq!(unit_of("nginx.service"), "nginx.service");
        assert_eq!(unit_of("certbot.timer"), "certbot.timer");
        assert_eq!(unit_of("php8.2-fpm"), "php8.2-fpm.service");
    }
}
