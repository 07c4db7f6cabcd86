//! `clou-agent`: the small program the controller runs on every host.
//!
//! # Layout
//!
//! - [`run`] reads the command line and dispatches.
//! - [`serve`] speaks the wire protocol of `clou-protocol` on stdin/stdout:
//!   hello both ways, one plan in, one report per resource out, then done.
//!   stdout is the wire, so nothing else may print there; logs go to stderr,
//!   where the controller shows them under the host with `-v`.
//! - [`lock`] keeps two runs from working on one host at once; [`journal`]
//!   records every change on the host.
//! - [`engine`] runs a plan: resources in order, packages in one apt
//!   transaction, handlers at the end of roles.
//! - [`probes`] look at the host's health (disks, arrays, filesystems,
//!   services...) when the controller sends a check instead of a plan.
//! - [`resources`] holds one file per resource kind behind one trait;
//!   [`system`] is the only seam to the operating system; [`accounts`]
//!   reads users and groups without NSS (the binary is static).
//!
//! The agent is plain blocking code: it does one thing at a time on one
//! host, and a runtime would only make it larger.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod accounts;
pub mod alert;
pub mod clock;
pub mod confirm;
pub mod disk;
pub mod engine;
pub mod journal;
pub mod lock;
pub mod probes;
pub mod resources;
pub mod system;
pub mod textfile;
pub mod upgrade;
pub mod usage;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use clou_protocol::{Done, Hello, Message, PROTOCOL_VERSION, Refused};

/// The agent's own version, sent in its hello.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What can go wrong while talking to the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading from or writing to the controller failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the controller sent a line that is not a valid message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the controller closed the channel before saying hello")]
    NoHello,
    #[error("the controller closed the channel before sending a plan")]
    NoPlan,
    #[error(
        "the controller speaks protocol {theirs}, this agent speaks {ours}: \
         upload the agent that matches the controller"
    )]
    ProtocolMismatch { ours: u32, theirs: u32 },
    #[error(
        "usage: clou-agent [--version | serve [--state-dir DIR] | revert [--state-dir DIR] TOKEN | check [--config FILE] [--state-dir DIR] | usage [--config FILE] [--state-dir DIR]] (got {0:?})"
    )]
    Usage(String),
    #[error("cannot use the check configuration {path}: {why}")]
    Config { path: String, why: String },
}

/// Runs the agent with its arguments (without the program name).
pub fn run(args: &[String], input: impl BufRead, output: impl Write) -> Result<ExitCode, Error> {
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => {
            let mut output = output;
            writeln!(output, "clou-agent {VERSION} (protocol {PROTOCOL_VERSION})")?;
            Ok(ExitCode::SUCCESS)
        }
        Some("check") => {
            let mut config = PathBuf::from("/etc/clou/check.json");
            let mut state_dir = PathBuf::from(engine::STATE_DIR);
            let mut rest = args[1..].iter();
            while let Some(flag) = rest.next() {
                match (flag.as_str(), rest.next()) {
                    ("--config", Some(path)) => config = PathBuf::from(path),
                    ("--state-dir", Some(dir)) => state_dir = PathBuf::from(dir),
                    _ => return Err(Error::Usage(args.join(" "))),
                }
            }
            check(&system::Host, &config, &state_dir)
        }
        Some("usage") => {
            let mut config = PathBuf::from("/etc/clou/usage.json");
            let mut state_dir = PathBuf::from(engine::STATE_DIR);
            let mut rest = args[1..].iter();
            while let Some(flag) = rest.next() {
                match (flag.as_str(), rest.next()) {
                    ("--config", Some(path)) => config = PathBuf::from(path),
                    ("--state-dir", Some(dir)) => state_dir = PathBuf::from(dir),
                    _ => return Err(Error::Usage(args.join(" "))),
                }
            }
            usage_snapshot(&system::Host, &config, &state_dir)
        }
        Some("revert") => {
            let (state_dir, token) = match &args[1..] {
                [token] => (PathBuf::from(engine::STATE_DIR), token),
                [flag, dir, token] if flag == "--state-dir" => (PathBuf::from(dir), token),
                _ => return Err(Error::Usage(args.join(" "))),
            };
            match confirm::revert(&system::Host, &state_dir, token) {
                Ok(files) if files.is_empty() => {
                    log(&format!(
                        "clou-agent revert {token}: confirmed already, nothing to do"
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Ok(files) => {
                    log(&format!(
                        "clou-agent revert {token}: not confirmed in time, put back {}",
                        files.join(", ")
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    log(&format!("clou-agent revert {token}: {why}"));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Some("serve") | None => {
            let state_dir = match &args.get(1..).unwrap_or_default() {
                [] => PathBuf::from(engine::STATE_DIR),
                [flag, dir] if flag == "--state-dir" => PathBuf::from(dir),
                other => return Err(Error::Usage(other.join(" "))),
            };
            serve(&system::Host, &state_dir, input, output).map(|()| ExitCode::SUCCESS)
        }
        Some(other) => Err(Error::Usage(other.to_owned())),
    }
}

/// `clou-agent check`, run by a systemd timer: looks at the host's health,
/// writes the metrics file, and posts an alert when the health changed.
/// Exits 0 whatever it found (a critical disk is news, not a failure of
/// the check); only a missing or broken configuration fails.
/// `clou-agent usage`: the daily snapshot, from the items the controller
/// wrote to `/etc/clou/usage.json` (a [`clou_protocol::UsageRequest`]).
pub fn usage_snapshot(
    sys: &dyn system::System,
    config: &Path,
    state_dir: &Path,
) -> Result<ExitCode, Error> {
    let config_error = |why: String| Error::Config {
        path: config.display().to_string(),
        why,
    };
    let text = std::fs::read(config).map_err(|e| config_error(e.to_string()))?;
    let request: clou_protocol::UsageRequest =
        serde_json::from_slice(&text).map_err(|e| config_error(e.to_string()))?;
    let report = usage::measure(sys, &request.items, &hostname(sys));
    usage::store(sys, state_dir, &report)?;
    let failed = report
        .measures
        .iter()
        .filter(|m| !m.errors.is_empty())
        .count();
    for m in report.measures.iter().filter(|m| !m.errors.is_empty()) {
        log(&format!(
            "clou-agent usage: {}/{}: {}",
            m.app,
            m.tenant,
            m.errors.join("; ")
        ));
    }
    log(&format!(
        "clou-agent usage: {} tenants measured for {}, {failed} with errors",
        report.measures.len(),
        report.date
    ));
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn hostname(sys: &dyn system::System) -> String {
    sys.read_text("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

pub fn check(sys: &dyn system::System, config: &Path, state_dir: &Path) -> Result<ExitCode, Error> {
    let config_error = |why: String| Error::Config {
        path: config.display().to_string(),
        why,
    };
    let text = std::fs::read(config).map_err(|e| config_error(e.to_string()))?;
    let mut config: clou_protocol::health::CheckConfig =
        serde_json::from_slice(&text).map_err(|e| config_error(e.to_string()))?;
    for service in std::mem::take(&mut config.services) {
        if !config.settings.services.contains(&service) {
            config.settings.services.push(service);
        }
    }
    for check in std::mem::take(&mut config.http) {
        if !config.settings.http.contains(&check) {
            config.settings.http.push(check);
        }
    }
    let report = probes::check(sys, &config.settings);
    let now = clock::unix(SystemTime::now());
    let (peak_bytes, cpu_seconds) = own_usage(sys);
    let mut metrics = textfile::render(&report, now);
    metrics.push_str(&format!(
        "# HELP clou_health_check_peak_memory_bytes Peak resident memory of the last check.\n\
         # TYPE clou_health_check_peak_memory_bytes gauge\n\
         clou_health_check_peak_memory_bytes {peak_bytes}\n\
         # HELP clou_health_check_cpu_seconds CPU time the last check used.\n\
         # TYPE clou_health_check_cpu_seconds gauge\n\
         clou_health_check_cpu_seconds {cpu_seconds}\n"
    ));
    if let Some(dir) = &config.textfile_dir
        && let Err(err) = textfile::write(Path::new(dir), &metrics)
    {
        log(&format!(
            "clou-agent check: cannot write {dir}/clou.prom: {err}"
        ));
    }
    let state_path = state_dir.join("health-state.json");
    let mut state = alert::State::load(&state_path);
    let after = alert::snapshot(&report);
    let lines = alert::changes(&state.findings, &after);
    // Every change is said in the journal; it is kept for the webhook only
    // when there is one: queued without one, a problem long mended would be
    // posted as news the day a webhook is configured (and a state file
    // written before one was removed drops what it still held).
    if !lines.is_empty() {
        let message = alert::message(&config.host, &lines);
        log(&message);
        state.pending.push(message);
    }
    if config.webhook_url.is_none() {
        state.pending.clear();
    }
    let dropped = alert::bound(&mut state.pending);
    if dropped > 0 {
        log(&format!(
            "clou-agent check: the webhook is still unreachable; the {dropped} oldest \
             unposted alerts are dropped (they are in this journal)"
        ));
    }
    state.findings = after;
    let mut sent = 0;
    if let Some(url) = &config.webhook_url {
        while let Some(message) = state.pending.first() {
            match alert::post(url, message) {
                Ok(()) => {
                    state.pending.remove(0);
                    sent += 1;
                }
                Err(why) => {
                    log(&format!(
                        "clou-agent check: alert not posted, kept for the next check: {why}"
                    ));
                    break;
                }
            }
        }
    }
    let _ = std::fs::create_dir_all(state_dir);
    if let Err(err) = state.save(&state_path) {
        log(&format!(
            "clou-agent check: cannot save {}: {err}",
            state_path.display()
        ));
    }
    log(&format!(
        "clou-agent check: {} ({} findings), {} changes, {sent} alerts posted, {} pending; \
         {} ms, peak memory {:.1} MB, cpu {cpu_seconds:.2} s",
        report.worst().label(),
        report.findings.len(),
        lines.len(),
        state.pending.len(),
        report.millis,
        peak_bytes as f64 / 1e6
    ));
    Ok(ExitCode::SUCCESS)
}

/// This process's peak resident memory (bytes, `VmHWM`) and CPU time
/// (seconds, user + system, children included), from /proc.
fn own_usage(sys: &dyn system::System) -> (u64, f64) {
    let read = |p: &str| sys.read_text(p).unwrap_or_default();
    let peak_kb = read("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    // After the command name in parentheses: utime, stime, cutime, cstime
    // are fields 14 to 17, in clock ticks (100 per second on Linux).
    let stat = read("/proc/self/stat");
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    (peak_kb * 1024, ticks as f64 / 100.0)
}

/// Speaks the wire protocol: hello both ways, then one plan.
pub fn serve(
    sys: &dyn system::System,
    state_dir: &Path,
    mut input: impl BufRead,
    mut output: impl Write,
) -> Result<(), Error> {
    let Some(Message::Hello(theirs)) = read_message(&mut input)? else {
        return Err(Error::NoHello);
    };
    if theirs.protocol != PROTOCOL_VERSION {
        return Err(Error::ProtocolMismatch {
            ours: PROTOCOL_VERSION,
            theirs: theirs.protocol,
        });
    }
    send(&mut output, &Message::Hello(Hello::current(VERSION)))?;
    let plan = match read_message(&mut input)? {
        Some(Message::Plan(plan)) => plan,
        // A health check reads and changes nothing: no lock, no journal.
        Some(Message::Check(request)) => {
            let report = probes::check(sys, &request.settings);
            return send(&mut output, &Message::Health(report));
        }
        // Usage measures read and change nothing but the day's snapshot.
        Some(Message::Usage(request)) => {
            let report = usage::answer(sys, state_dir, &request, &hostname(sys));
            return send(&mut output, &Message::UsageReport(report));
        }
        Some(Message::Upgrade(request)) => {
            return serve_upgrade(sys, state_dir, &request, &mut output);
        }
        Some(Message::Disk(request)) => {
            // Looking changes nothing; starting takes the host's lock.
            if request.step != clou_protocol::DiskStep::Start {
                let report = disk::answer(sys, state_dir, &request);
                return send(&mut output, &Message::DiskReport(report));
            }
            let held = match take_lock(state_dir, &request.run_id, &request.admin) {
                Ok(held) => held,
                Err(refused) => return send(&mut output, &Message::Refused(refused)),
            };
            let report = disk::answer(sys, state_dir, &request);
            drop(held);
            return send(&mut output, &Message::DiskReport(report));
        }
        Some(Message::Confirm(request)) => {
            let kept = confirm::confirm(sys, state_dir, &request.token);
            return send(
                &mut output,
                &Message::Confirmed(clou_protocol::Confirmed { kept }),
            );
        }
        Some(Message::Reboot(request)) => {
            return serve_reboot(sys, state_dir, &request, &mut output);
        }
        // A controller that only checks the agent says hello and leaves.
        None => return Ok(()),
        Some(_) => return Err(Error::NoPlan),
    };
    let started = Instant::now();
    let held = match take_lock(state_dir, &plan.run_id, &plan.admin) {
        Ok(held) => held,
        Err(refused) => return send(&mut output, &Message::Refused(refused)),
    };
    let mut warnings = Vec::new();
    if let Some(dead) = &held.stale {
        warnings.push(format!(
            "took over the lock left by run {} of {} (agent pid {}, started {}), \
             which died without releasing it; check its journal entries",
            dead.run_id, dead.admin, dead.pid, dead.started
        ));
    }
    if !plan.check {
        warnings.extend(remove_old_agents(state_dir));
        warnings.extend(link_stable_name(state_dir));
    }
    log(&format!(
        "clou-agent {VERSION}: run {} by {}{}",
        plan.run_id,
        plan.admin,
        if plan.check { " (check mode)" } else { "" }
    ));
    let engine = engine::Engine::new(sys, &plan, Some(state_dir.to_owned()));
    let mut failure = None;
    let end = engine.run_to_end(&mut |report| {
        log(&format!("{} {:?}", report.id, report.status));
        if failure.is_none()
            && let Err(err) = send(&mut output, &Message::Report(report))
        {
            failure = Some(err);
        }
    });
    warnings.extend(end.warnings);
    if let Some(err) = failure {
        return Err(err);
    }
    drop(held);
    let done = Done {
        millis: started.elapsed().as_millis() as u64,
        warnings,
        confirm: end.confirm,
    };
    send(&mut output, &Message::Done(done))
}

/// Takes the host's lock for a run that changes it, or says why not (the
/// refusal to send).
fn take_lock(state_dir: &Path, run_id: &str, admin: &str) -> Result<lock::Lock, Refused> {
    let me = lock::Holder {
        run_id: run_id.to_owned(),
        admin: admin.to_owned(),
        pid: std::process::id(),
        started: clock::rfc3339(SystemTime::now()),
    };
    lock::Lock::acquire(state_dir, &me).map_err(|err| Refused {
        reason: err.to_string(),
    })
}

/// An upgrade: a look needs no lock; the upgrade holds the host's lock,
/// as a plan does.
fn serve_upgrade(
    sys: &dyn system::System,
    state_dir: &Path,
    request: &clou_protocol::UpgradeRequest,
    output: &mut impl Write,
) -> Result<(), Error> {
    if request.check {
        let report = upgrade::answer(sys, state_dir, request);
        return send(output, &Message::Upgraded(report));
    }
    let held = match take_lock(state_dir, &request.run_id, &request.admin) {
        Ok(held) => held,
        Err(refused) => return send(output, &Message::Refused(refused)),
    };
    log(&format!(
        "clou-agent {VERSION}: upgrade {} by {}",
        request.run_id, request.admin
    ));
    let mut report = upgrade::answer(sys, state_dir, request);
    if let Some(dead) = &held.stale {
        report.notes.push(format!(
            "took over the lock left by run {} of {} (agent pid {}), which died without \
             releasing it",
            dead.run_id, dead.admin, dead.pid
        ));
    }
    drop(held);
    send(output, &Message::Upgraded(report))
}

/// A reboot: journaled, answered, then asked of systemd without waiting
/// (the connection goes down with the host).
fn serve_reboot(
    sys: &dyn system::System,
    state_dir: &Path,
    request: &clou_protocol::RebootRequest,
    output: &mut impl Write,
) -> Result<(), Error> {
    let boot_id = upgrade::boot_id(sys);
    journal::Journal::new(state_dir).event(
        &request.run_id,
        &request.admin,
        "reboot",
        serde_json::json!({ "reason": request.reason, "boot_id": boot_id }),
    );
    send(
        output,
        &Message::Rebooting(clou_protocol::Rebooting { boot_id }),
    )?;
    let cmd = system::Cmd::new(["systemctl", "--no-block", "reboot"]);
    match sys.run(&cmd) {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => {
            log(&format!("`{}` failed: {}", cmd.display(), out.tail()));
            Ok(())
        }
        Err(err) => {
            log(&format!("cannot run `{}`: {err}", cmd.display()));
            Ok(())
        }
    }
}

/// A log line on stderr. A controller that went away must not kill the
/// agent halfway through a plan (eprintln! panics on a closed pipe).
pub(crate) fn log(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn read_message(input: &mut impl BufRead) -> Result<Option<Message>, Error> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&line)?))
}

fn send(output: &mut impl Write, message: &Message) -> Result<(), Error> {
    serde_json::to_writer(&mut *output, message)?;
    output.write_all(b"\n")?;
    output.flush()?;
    Ok(())
}

/// Points `STATE_DIR/clou-agent` at the running agent, so that the health
/// timer's unit has one path that always runs the latest uploaded build.
fn link_stable_name(state_dir: &Path) -> Vec<String> {
    let Ok(me) = std::env::current_exe() else {
        return Vec::new();
    };
    let (Some(name), true) = (me.file_name(), me.parent() == Some(state_dir)) else {
        return Vec::new();
    };
    let link = state_dir.join("clou-agent");
    if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(name)) {
        return Vec::new();
    }
    match system::System::symlink_atomic(&system::Host, Path::new(name), &link) {
        Ok(()) => Vec::new(),
        Err(err) => vec![format!(
            "cannot point {} at this agent: {err}",
            link.display()
        )],
    }
}

/// Removes agent binaries other than the running one from `state_dir`:
/// the controller uploads `agent-SHA256` files, one per build.
fn remove_old_agents(state_dir: &Path) -> Vec<String> {
    let Ok(me) = std::env::current_exe() else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return warnings;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with("agent-")
            && path != me
            && let Err(err) = std::fs::remove_file(&path)
        {
            warnings.push(format!(
                "cannot remove the old agent {}: {err}",
                path.display()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use clou_protocol::{Plan, Status};

    fn line(msg: &Message) -> String {
        serde_json::to_string(msg).expect("serialise") + "\n"
    }

    fn hello(protocol: u32) -> String {
        line(&Message::Hello(Hello {
            protocol,
            version: "test".into(),
        }))
    }

    fn replies(out: &[u8]) -> Vec<Message> {
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("a message per line"))
            .collect()
    }

    fn plan_line() -> String {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "run_id": "r1", "admin": "test@here", "check": true,
            "roles": [{"name": "base", "resources": [
                {"id": "base/command:true", "resource": {"command": {"argv": ["true"], "creates": "/"}}}
            ]}]
        }))
        .unwrap();
        line(&Message::Plan(plan))
    }

    #[test]
    fn answers_hello_with_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        serve(
            &system::Host,
            dir.path(),
            hello(PROTOCOL_VERSION).as_bytes(),
            &mut out,
        )
        .unwrap();
        assert_eq!(replies(&out), vec![Message::Hello(Hello::current(VERSION))]);
    }

    #[test]
    fn refuses_another_protocol_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let input = hello(PROTOCOL_VERSION + 1);
        let err = serve(&system::Host, dir.path(), input.as_bytes(), &mut out).unwrap_err();
        assert!(matches!(err, Error::ProtocolMismatch { .. }), "{err}");
        assert!(
            out.is_empty(),
            "nothing may be written after a refused hello"
        );
    }

    #[test]
    fn truncated_json_is_a_decode_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = serve(
            &system::Host,
            dir.path(),
            &b"{\"type\":\"hel"[..],
            Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
    }

    #[test]
    fn streams_one_report_per_resource_then_done() {
        let dir = tempfile::tempdir().unwrap();
        let input = hello(PROTOCOL_VERSION) + &plan_line();
        let mut out = Vec::new();
        serve(&system::Host, dir.path(), input.as_bytes(), &mut out).unwrap();
        let msgs = replies(&out);
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        let Message::Report(report) = &msgs[1] else {
            panic!("{msgs:?}")
        };
        assert_eq!(
            (report.id.as_str(), report.status),
            ("base/command:true", Status::Ok)
        );
        assert!(matches!(msgs[2], Message::Done(_)));
    }

    /// A webhook receiver on loopback: records the body of every POST.
    fn receiver() -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/secret-key", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the headers, then exactly Content-Length bytes.
                loop {
                    let n = stream.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            let _ = tx.send(text[end + 4..].to_owned());
                            break;
                        }
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        (url, rx)
    }

    fn certificate(path: &Path, days: u32) {
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ed25519",
                "-nodes",
                "-subj",
                "/CN=wiki.girofle.example.org",
            ])
            .arg("-days")
            .arg(days.to_string())
            .arg("-keyout")
            .arg(path.with_extension("key"))
            .arg("-out")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A check's config for `web` watching `cert`, posting to `url`.
    fn write_check_config(config: &Path, url: Option<&str>, cert: &Path) {
        std::fs::write(
            config,
            serde_json::json!({"host": "web", "webhook_url": url, "settings": {"certificates": [cert]}}).to_string(),
        )
        .unwrap();
    }

    #[test]
    fn check_alerts_once_for_a_new_problem_and_once_when_it_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("wiki.pem");
        certificate(&cert, 3);
        let (url, posts) = receiver();
        let config = dir.path().join("check.json");
        let prom = dir.path().join("textfile");
        std::fs::create_dir(&prom).unwrap();
        std::fs::write(
            &config,
            serde_json::json!({
                "host": "web",
                "webhook_url": url,
                "textfile_dir": prom,
                "settings": {"certificates": [cert]}
            })
            .to_string(),
        )
        .unwrap();
        let state = dir.path().join("state");
        let wait = std::time::Duration::from_secs(5);

        check(&system::Host, &config, &state).unwrap();
        let first = posts.recv_timeout(wait).expect("a first alert");
        assert!(
            first.contains("**web**") && first.contains("CRIT tls"),
            "{first}"
        );
        assert!(first.contains("expires in 2 days"), "{first}");
        let metrics = std::fs::read_to_string(prom.join("clou.prom")).unwrap();
        assert!(
            metrics.contains("clou_health_severity{probe=\"tls\""),
            "{metrics}"
        );

        check(&system::Host, &config, &state).unwrap();
        assert!(
            posts
                .recv_timeout(std::time::Duration::from_millis(500))
                .is_err(),
            "no repeat"
        );

        certificate(&cert, 90);
        check(&system::Host, &config, &state).unwrap();
        let recovery = posts.recv_timeout(wait).expect("a recovery");
        assert!(recovery.contains("recovered tls"), "{recovery}");
        assert!(!recovery.contains("CRIT"), "{recovery}");
    }

    #[test]
    fn an_alert_that_cannot_be_posted_waits_for_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("wiki.pem");
        certificate(&cert, 3);
        // Nothing listens on this port (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("check.json");
        let write_config = |url: &str| write_check_config(&config, Some(url), &cert);
        write_config(&format!("http://127.0.0.1:{port}/hooks/secret-key"));
        let state = dir.path().join("state");
        check(&system::Host, &config, &state).unwrap();
        let kept = alert::State::load(&state.join("health-state.json"));
        assert_eq!(kept.pending.len(), 1, "kept, not lost");

        let (url, posts) = receiver();
        write_config(&url);
        check(&system::Host, &config, &state).unwrap();
        let late = posts
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("posted late");
        assert!(late.contains("CRIT tls"), "{late}");
        assert!(
            alert::State::load(&state.join("health-state.json"))
                .pending
                .is_empty()
        );
    }

    #[test]
    fn without_a_webhook_nothing_is_kept_to_post_later() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("wiki.pem");
        certificate(&cert, 3);
        let config = dir.path().join("check.json");
        let write_config = |url: Option<&str>| write_check_config(&config, url, &cert);
        let state = dir.path().join("state");
        // The certificate expires while no webhook is configured...
        write_config(None);
        check(&system::Host, &config, &state).unwrap();
        assert!(
            alert::State::load(&state.join("health-state.json"))
                .pending
                .is_empty()
        );
        // ...and is renewed; then a webhook is configured: the first post
        // is not the stale problem, and there is nothing else to say.
        certificate(&cert, 90);
        check(&system::Host, &config, &state).unwrap();
        let (url, posts) = receiver();
        write_config(Some(&url));
        check(&system::Host, &config, &state).unwrap();
        assert!(
            posts
                .recv_timeout(std::time::Duration::from_millis(500))
                .is_err(),
            "nothing stale is posted"
        );
    }

    #[test]
    fn a_held_lock_refuses_the_plan_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let holder = lock::Holder {
            run_id: "other".into(),
            admin: "dominique@fixe".into(),
            pid: 1,
            started: "2026-11-25T14:03:07Z".into(),
        };
        let _held = lock::Lock::acquire(dir.path(), &holder).unwrap();
        let input = hello(PROTOCOL_VERSION) + &plan_line();
        let mut out = Vec::new();
        serve(&system::Host, dir.path(), input.as_bytes(), &mut out).unwrap();
        let msgs = replies(&out);
        let Message::Refused(refused) = &msgs[1] else {
            panic!("{msgs:?}")
        };
        assert!(
            refused.reason.contains("dominique@fixe"),
            "{}",
            refused.reason
        );
    }
}
