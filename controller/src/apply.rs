//! `clou apply`: every host converged in parallel, one connection each.
//!
//! 1. Load the inventory and roles and build every selected host's plan.
//!    Any error stops here: no host has been contacted.
//! 2. For each host (at most `--forks` at a time): connect, run the agent
//!    (uploading it first when the host lacks this exact build), send the
//!    plan, and stream the agent's reports back.
//! 3. Show progress on stderr, a summary table on stdout (or one JSON
//!    object per event with `--json`), and exit 0 only when every host
//!    converged.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clou_protocol::health::CheckSettings;
use clou_protocol::{HealthReport, Message, Plan, Report, Status};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::agent_bin;
use crate::inventory::{Host, Inventory};
use crate::plan::{Planner, TenantFilter};
use crate::remote::{self, AgentEvent, Link};
use crate::role::Roles;
use crate::ssh::{self, Target, config::SshConfig, known_hosts::HostKeys};

/// What `clou apply` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub check: bool,
    pub diff: bool,
    pub limit: Option<String>,
    pub roles: Option<Vec<String>>,
    /// `--tenant`: only this instance's resources.
    pub tenant: Option<String>,
    pub extra: Vec<String>,
    pub forks: usize,
    pub json: bool,
    /// Seconds one host may take, 0 for the default.
    pub timeout: u64,
    /// Seconds a change to sshd or the firewall waits for a new connection
    /// to confirm it, 0 for the default (30).
    pub confirm_timeout: u64,
    /// `--serial`: in batches, each gated by the hosts' health.
    pub serial: Option<crate::rollout::Serial>,
    pub max_fail: usize,
    pub settle: Duration,
    pub gate_timeout: Duration,
    /// `--keep-going`: a tenant's failed (rolled back) upgrade does not
    /// stop the host's other tenants.
    pub keep_going: bool,
}

/// How long a confirm change waits for its confirmation by default.
pub const DEFAULT_CONFIRM_SECS: u64 = 30;

/// How long one host may take by default: a big apt upgrade fits.
pub const DEFAULT_TIMEOUT: u64 = 3600;

/// How one host ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSummary {
    pub host: String,
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    /// Why the host could not be reached or the plan not run.
    pub unreachable: Option<String>,
    /// The agent refused the plan (lock held...): nothing was done.
    pub refused: Option<String>,
    /// The run broke off after the agent started (connection lost, agent
    /// died, timeout): the host may be half-changed; its journal says what
    /// was done.
    pub aborted: Option<String>,
    /// `--serial`: converged, but not healthy afterwards (the gate), or
    /// left alone because the rollout stopped before its batch.
    pub gate: Option<String>,
    pub warnings: Vec<String>,
    pub millis: u64,
}

impl HostSummary {
    /// Converged: reached, and nothing failed.
    pub fn converged(&self) -> bool {
        self.unreachable.is_none()
            && self.refused.is_none()
            && self.aborted.is_none()
            && self.gate.is_none()
            && self.failed == 0
            && self.skipped == 0
    }
}

/// Messages from host tasks to the display.
#[derive(Debug)]
enum Update {
    Started { host: String, total: usize },
    Report { host: String, report: Report },
    Log { host: String, line: String },
    Uploading { host: String },
    Finished(HostSummary),
}

/// Runs `clou apply`: exit 0 when every host converged, 1 otherwise.
pub fn run(inventory_path: &std::path::Path, opts: &Options) -> anyhow::Result<ExitCode> {
    let summaries = apply(inventory_path, opts)?;
    let all_ok = summaries.iter().all(HostSummary::converged);
    Ok(if all_ok {
        ExitCode::from(crate::EXIT_OK)
    } else {
        ExitCode::from(crate::EXIT_HOSTS_FAILED)
    })
}

/// Loads, plans and converges; one summary per selected host.
pub fn apply(inventory_path: &std::path::Path, opts: &Options) -> anyhow::Result<Vec<HostSummary>> {
    let inventory = Inventory::load(inventory_path).with_context(|| {
        format!(
            "cannot use the inventory {}\n  hint: pass --inventory FILE, or run clou from the repository root",
            inventory_path.display()
        )
    })?;
    let (hosts, plans) = prepare(&inventory, opts)?;
    match opts.serial {
        Some(serial) => gated(&inventory, hosts, plans, serial, opts),
        None => execute(&inventory, hosts, plans, opts),
    }
}

/// `--serial`: batch after batch, each host's health taken before its
/// change and gated after it; the rollout stops past `--max-fail`, and the
/// hosts of the later batches are left alone.
fn gated(
    inventory: &Inventory,
    hosts: Vec<Host>,
    plans: Vec<Plan>,
    serial: crate::rollout::Serial,
    opts: &Options,
) -> anyhow::Result<Vec<HostSummary>> {
    use crate::rollout;
    let extra = crate::vars::parse_extra(&opts.extra).map_err(anyhow::Error::msg)?;
    let mut settings = crate::status::settings_for(inventory, &hosts, &extra)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let keys = Arc::new(HostKeys::for_inventory(inventory));
    let ssh_config = SshConfig::load_default();
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let batches = rollout::batches(&names, serial);
    let mut pending: Vec<(Host, Plan)> = hosts.into_iter().zip(plans).collect();
    let mut summaries = Vec::new();
    let mut failed = 0;
    let mut stopped: Option<String> = None;
    for (number, batch) in batches.iter().enumerate() {
        let members: Vec<(Host, Plan)> = pending.drain(..batch.len()).collect();
        if let Some(why) = &stopped {
            for (host, _) in members {
                summaries.push(HostSummary {
                    host: host.name,
                    gate: Some(format!("not started: {why}")),
                    ..HostSummary::default()
                });
            }
            continue;
        }
        eprintln!(
            "batch {}/{}: {}",
            number + 1,
            batches.len(),
            batch.join(", ")
        );
        // Health before: the gate fails on what the change made critical,
        // not on what was wrong already.
        let links: Vec<(Link, CheckSettings, Result<HealthReport, String>)> =
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for (host, _) in &members {
                    let mut link =
                        Link::new(Target::for_host(inventory, host, &ssh_config), keys.clone());
                    let settings = settings.remove(&host.name).unwrap_or_default();
                    tasks.push(tokio::spawn(async move {
                        // The link stays open for the gate: one connection
                        // for the health before and after.
                        let baseline = link.health(&settings).await;
                        (link, settings, baseline)
                    }));
                }
                let mut out = Vec::new();
                for task in tasks {
                    if let Ok(done) = task.await {
                        out.push(done);
                    }
                }
                out
            });
        let (hosts, plans): (Vec<Host>, Vec<Plan>) = members.into_iter().unzip();
        let mut batch_summaries = execute(inventory, hosts, plans, opts)?;
        // Every host of the batch is gated at once (each waits --settle).
        let verdicts: Vec<(String, Result<(), String>)> = runtime.block_on(async {
            let mut tasks = Vec::new();
            for (mut link, settings, baseline) in links {
                let gated = batch_summaries
                    .iter()
                    .any(|s| s.host == link.target.name && s.converged())
                    && !opts.check;
                let (settle, timeout) = (opts.settle, opts.gate_timeout);
                tasks.push(tokio::spawn(async move {
                    let verdict = match (&baseline, gated) {
                        (_, false) => None,
                        (Err(why), true) => {
                            Some(Err(format!("no health before the change: {why}")))
                        }
                        (Ok(baseline), true) => Some(
                            rollout::gate(&mut link, &settings, baseline, settle, timeout).await,
                        ),
                    };
                    link.close().await;
                    verdict.map(|v| (link.target.name.clone(), v))
                }));
            }
            let mut out = Vec::new();
            for task in tasks {
                if let Ok(Some(verdict)) = task.await {
                    out.push(verdict);
                }
            }
            out
        });
        for (host, verdict) in verdicts {
            let Some(summary) = batch_summaries.iter_mut().find(|s| s.host == host) else {
                continue;
            };
            match verdict {
                Ok(()) => eprintln!("  {host}: healthy"),
                Err(why) => {
                    eprintln!("  {host}: FAILED its health gate: {why}");
                    summary.gate = Some(why);
                }
            }
        }
        failed += batch_summaries.iter().filter(|s| !s.converged()).count();
        summaries.extend(batch_summaries);
        if rollout::must_stop(failed, opts.max_fail) && number + 1 < batches.len() {
            stopped = Some(format!(
                "the rollout stopped after batch {} of {}: {failed} host{} failed, --max-fail is {}",
                number + 1,
                batches.len(),
                if failed == 1 { "" } else { "s" },
                opts.max_fail
            ));
        }
    }
    if let Some(why) = &stopped {
        println!("{why}; the hosts of the later batches were not touched:");
        for s in summaries.iter().filter(|s| {
            s.gate
                .as_deref()
                .is_some_and(|g| g.starts_with("not started"))
        }) {
            println!("  {}", s.host);
        }
    }
    Ok(summaries)
}

/// Builds every selected host's plan, or explains every error at once.
pub fn prepare(inventory: &Inventory, opts: &Options) -> anyhow::Result<(Vec<Host>, Vec<Plan>)> {
    crate::vars::check_reserved(inventory).map_err(anyhow::Error::msg)?;
    let roles = Roles::load(&inventory.roles_path)?;
    let extra = crate::vars::parse_extra(&opts.extra).map_err(anyhow::Error::msg)?;
    let mut hosts = select_hosts(inventory, opts.limit.as_deref())?;
    let mut planner = Planner::new(inventory, &roles)?;
    if let Some(text) = &opts.tenant {
        planner.only_tenant(TenantFilter::parse(text, inventory).map_err(anyhow::Error::msg)?);
    }
    let run_id = run_id();
    let admin = admin();
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    let mut served = Vec::new();
    for host in &hosts {
        match planner.plan(host, &extra, opts.roles.as_deref()) {
            // With --tenant, the hosts that do not serve it are left alone.
            Ok(roles) if opts.tenant.is_some() && roles.iter().all(|r| r.resources.is_empty()) => {}
            Ok(roles) => {
                served.push(host.name.clone());
                plans.push(Plan {
                    run_id: run_id.clone(),
                    admin: admin.clone(),
                    check: opts.check,
                    diff: opts.diff,
                    roles,
                    confirm_secs: if opts.confirm_timeout == 0 {
                        DEFAULT_CONFIRM_SECS
                    } else {
                        opts.confirm_timeout
                    },
                    keep_going: opts.keep_going,
                })
            }
            Err(err) => {
                let text = err.to_string();
                if !errors.contains(&text) {
                    errors.push(text);
                }
            }
        }
    }
    if !errors.is_empty() {
        anyhow::bail!(
            "{}\nnothing was changed: no host was contacted",
            errors.join("\n")
        );
    }
    hosts.retain(|h| served.contains(&h.name));
    if hosts.is_empty() && opts.tenant.is_some() {
        anyhow::bail!(
            "--tenant {}: no selected host serves it (check --limit and the application's hosts)",
            opts.tenant.as_deref().unwrap_or_default()
        );
    }
    Ok((hosts, plans))
}

/// The hosts a `--limit` pattern selects, in inventory order:
/// comma-separated host names, group names or `*` globs; `!term` removes.
pub fn select_hosts(inventory: &Inventory, pattern: Option<&str>) -> anyhow::Result<Vec<Host>> {
    let Some(pattern) = pattern else {
        return Ok(inventory.hosts.clone());
    };
    let mut keep = std::collections::BTreeSet::new();
    let mut drop = std::collections::BTreeSet::new();
    let mut any_positive = false;
    for term in pattern.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (negated, name) = match term.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, term),
        };
        let matched: Vec<String> = if inventory.groups.contains_key(name) {
            inventory.group_hosts(name).into_iter().collect()
        } else {
            inventory
                .hosts
                .iter()
                .filter(|h| glob(name, &h.name))
                .map(|h| h.name.clone())
                .collect()
        };
        if matched.is_empty() {
            anyhow::bail!(
                "--limit: {name:?} is no host or group of {}\n  hint: hosts are {}; groups are {}",
                inventory.path.display(),
                inventory
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                inventory
                    .groups
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if negated {
            drop.extend(matched);
        } else {
            any_positive = true;
            keep.extend(matched);
        }
    }
    let hosts: Vec<Host> = inventory
        .hosts
        .iter()
        .filter(|h| (!any_positive || keep.contains(&h.name)) && !drop.contains(&h.name))
        .cloned()
        .collect();
    if keep.is_empty() && drop.is_empty() {
        anyhow::bail!("--limit {pattern:?} names no host: give host names, groups or globs");
    }
    if hosts.is_empty() {
        anyhow::bail!("--limit {pattern:?} selects no host");
    }
    Ok(hosts)
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            text.starts_with(prefix)
                && (0..=text.len() - prefix.len()).any(|i| {
                    text.is_char_boundary(prefix.len() + i) && glob(rest, &text[prefix.len() + i..])
                })
        }
    }
}

/// Connects to every host and runs its plan; returns one summary per host.
pub fn execute(
    inventory: &Inventory,
    hosts: Vec<Host>,
    plans: Vec<Plan>,
    opts: &Options,
) -> anyhow::Result<Vec<HostSummary>> {
    execute_with(inventory, hosts, plans, opts, None)
}

/// Like [`execute`]; `first_contact` is how to log in to its host for the
/// run (a new server's password), while the confirmation of sshd and
/// firewall changes still goes through the inventory's way in (keys).
pub fn execute_with(
    inventory: &Inventory,
    hosts: Vec<Host>,
    plans: Vec<Plan>,
    opts: &Options,
    first_contact: Option<Target>,
) -> anyhow::Result<Vec<HostSummary>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let keys = Arc::new(HostKeys::for_inventory(inventory));
    let ssh_config = SshConfig::load_default();
    let targets: Vec<Target> = hosts
        .iter()
        .map(|h| Target::for_host(inventory, h, &ssh_config))
        .collect();
    let forks = opts.forks.max(1);
    let timeout = if opts.timeout == 0 {
        DEFAULT_TIMEOUT
    } else {
        opts.timeout
    };
    let started = Instant::now();
    let summaries = runtime.block_on(async {
        let (tx, rx) = mpsc::unbounded_channel::<Update>();
        let gate = Arc::new(Semaphore::new(forks));
        for (target, plan) in targets.into_iter().zip(plans) {
            let tx = tx.clone();
            let keys = keys.clone();
            let gate = gate.clone();
            let login = first_contact
                .clone()
                .filter(|t| t.name == target.name)
                .unwrap_or_else(|| target.clone());
            tokio::spawn(async move {
                let Ok(_permit) = gate.acquire_owned().await else {
                    return;
                };
                let summary = converge_host(&login, &target, keys, plan, timeout, &tx).await;
                let _ = tx.send(Update::Finished(summary));
            });
        }
        drop(tx);
        display(rx, &hosts, opts).await
    });
    if !opts.json {
        print_table(&summaries, started.elapsed(), opts.check);
    }
    Ok(summaries)
}

async fn converge_host(
    login: &Target,
    target: &Target,
    keys: Arc<HostKeys>,
    plan: Plan,
    timeout_secs: u64,
    tx: &mpsc::UnboundedSender<Update>,
) -> HostSummary {
    let started = Instant::now();
    let mut summary = HostSummary {
        host: target.name.clone(),
        ..HostSummary::default()
    };
    let total = plan.roles.iter().map(|r| r.resources.len()).sum();
    let _ = tx.send(Update::Started {
        host: target.name.clone(),
        total,
    });
    let session = match ssh::connect(login, keys.clone()).await {
        Ok(session) => session,
        Err(err) => {
            summary.unreachable = Some(err.to_string());
            summary.millis = started.elapsed().as_millis() as u64;
            return summary;
        }
    };
    let timeout = Duration::from_secs(timeout_secs);
    let mut pending = None;
    match tokio::time::timeout(
        timeout,
        run_agent(&session, target, &plan, tx, &mut summary, &mut pending),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            let reports = summary.ok + summary.changed + summary.failed + summary.skipped;
            summary.aborted = Some(format!(
                "{err:#}\n    ({reports} reports received; /var/lib/clou/journal.jsonl on the host lists what changed)"
            ));
        }
        Err(_) => {
            summary.aborted = Some(format!(
                "no end after {timeout_secs} s (--timeout); the agent may still be working: \
                 see /var/lib/clou/journal.jsonl on the host before running again"
            ));
        }
    }
    session.close().await;
    if let Some(pending) = pending {
        let _ = tx.send(Update::Log {
            host: target.name.clone(),
            line: format!(
                "confirming the change to {} over a new connection",
                pending.files.join(", ")
            ),
        });
        if let Err(why) = confirm(target, login, keys, &pending).await {
            summary.aborted = Some(why);
        }
    }
    summary.millis = started.elapsed().as_millis() as u64;
    summary
}

/// Opens a new connection and confirms the changes that could lock the
/// admins out; when none can be opened, waits for the host to revert them
/// and says whether it answers again (the way clou came in, `login`:
/// the previous configuration let that in).
async fn confirm(
    target: &Target,
    login: &Target,
    keys: Arc<HostKeys>,
    pending: &clou_protocol::PendingConfirm,
) -> Result<(), String> {
    let files = pending.files.join(", ");
    let attempt = async {
        let session = ssh::connect(target, keys.clone())
            .await
            .map_err(|e| e.to_string())?;
        let request = Message::Confirm(clou_protocol::ConfirmRequest {
            token: pending.token.clone(),
        });
        let mut kept = None;
        let result = remote::exchange(
            &session,
            target,
            &request,
            |m| matches!(m, Message::Confirmed(_)),
            &mut |event| {
                if let AgentEvent::Message(Message::Confirmed(c)) = event {
                    kept = Some(c.kept);
                }
            },
        )
        .await;
        session.close().await;
        result.map_err(|e| format!("{e:#}"))?;
        kept.ok_or_else(|| "the agent did not answer the confirmation".to_owned())
    };
    let deadline = Duration::from_secs(pending.secs.saturating_sub(2).max(1));
    let why = match tokio::time::timeout(deadline, attempt).await {
        Ok(Ok(true)) => return Ok(()),
        Ok(Ok(false)) => {
            return Err(format!(
                "the change to {files} was confirmed too late: the host had put the previous \
                 files back already; run clou apply again"
            ));
        }
        Ok(Err(why)) => why,
        Err(_) => format!("no confirmation within {} s", deadline.as_secs()),
    };
    // The host puts the old files back when its timer fires: wait for it,
    // then see whether it answers again.
    tokio::time::sleep(Duration::from_secs(pending.secs + 5)).await;
    let back = ssh::connect(login, keys).await;
    let after = match back {
        Ok(session) => {
            session.close().await;
            "it did: the host answers again, with its previous configuration".to_owned()
        }
        Err(err) => format!("it still does not answer ({err}): open its console"),
    };
    Err(format!(
        "the change to {files} was reverted: after it, a new connection failed ({why}), so \
         the host put the previous files back after {} s; {after}. Fix the change (sshd and \
         firewall settings) before applying again",
        pending.secs
    ))
}

async fn run_agent(
    session: &ssh::Session,
    target: &Target,
    plan: &Plan,
    tx: &mpsc::UnboundedSender<Update>,
    summary: &mut HostSummary,
    pending: &mut Option<clou_protocol::PendingConfirm>,
) -> anyhow::Result<()> {
    let host = target.name.clone();
    let request = Message::Plan(plan.clone());
    let is_last = |m: &Message| matches!(m, Message::Done(_) | Message::Refused(_));
    let mut unexpected = None;
    remote::exchange(
        session,
        target,
        &request,
        is_last,
        &mut |event| match event {
            AgentEvent::Uploading => {
                let _ = tx.send(Update::Uploading { host: host.clone() });
            }
            AgentEvent::Log(line) => {
                let _ = tx.send(Update::Log {
                    host: host.clone(),
                    line,
                });
            }
            AgentEvent::Message(Message::Report(report)) => {
                match report.status {
                    Status::Ok => summary.ok += 1,
                    Status::Changed => summary.changed += 1,
                    Status::Failed => summary.failed += 1,
                    Status::Skipped => summary.skipped += 1,
                }
                let _ = tx.send(Update::Report {
                    host: host.clone(),
                    report,
                });
            }
            AgentEvent::Message(Message::Done(done)) => {
                summary.warnings = done.warnings;
                *pending = done.confirm;
            }
            AgentEvent::Message(Message::Refused(refused)) => {
                summary.refused = Some(refused.reason)
            }
            AgentEvent::Message(other) => unexpected = Some(format!("{other:?}")),
        },
    )
    .await?;
    if let Some(other) = unexpected {
        anyhow::bail!("the agent on {host} sent an unexpected {other}");
    }
    Ok(())
}

/// Shows progress and changes as they come; returns the summaries in
/// inventory order.
async fn display(
    mut rx: mpsc::UnboundedReceiver<Update>,
    hosts: &[Host],
    opts: &Options,
) -> Vec<HostSummary> {
    let multi = MultiProgress::with_draw_target(if opts.json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template("{spinner} {prefix:<16} {pos:>3}/{len:<3} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(8);
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut done: BTreeMap<String, HostSummary> = BTreeMap::new();
    let verbose = tracing::enabled!(tracing::Level::INFO);
    let emit = |value: serde_json::Value| println!("{value}");
    while let Some(update) = rx.recv().await {
        match update {
            Update::Started { host, total } => {
                let bar = multi.add(ProgressBar::new(total as u64));
                bar.set_style(style.clone());
                bar.set_prefix(host.clone());
                bar.set_message("connecting");
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(host, bar);
            }
            Update::Uploading { host } => {
                if let Some(bar) = bars.get(&host) {
                    bar.set_message(format!(
                        "uploading the agent ({} KiB)",
                        agent_bin::BYTES.len() / 1024
                    ));
                }
                if opts.json {
                    emit(json!({"event": "upload", "host": host, "sha256": agent_bin::sha256()}));
                }
            }
            Update::Log { host, line } => {
                if verbose && !opts.json {
                    say(&multi, format!("{host:<width$}  | {line}"));
                }
                tracing::debug!(host = %host, "agent: {line}");
            }
            Update::Report { host, report } => {
                if let Some(bar) = bars.get(&host)
                    && !report.handler
                {
                    bar.inc(1);
                    bar.set_message(report.id.clone());
                }
                if opts.json {
                    let mut value = serde_json::to_value(&report).unwrap_or_default();
                    if let Some(map) = value.as_object_mut() {
                        map.insert("event".into(), json!("resource"));
                        map.insert("host".into(), json!(host));
                    }
                    emit(value);
                } else if report.status != Status::Ok {
                    say(&multi, describe(&host, width, &report, opts));
                }
            }
            Update::Finished(summary) => {
                if let Some(bar) = bars.remove(&summary.host) {
                    bar.finish_and_clear();
                }
                if opts.json {
                    emit(json!({
                        "event": "host",
                        "host": summary.host,
                        "ok": summary.ok,
                        "changed": summary.changed,
                        "failed": summary.failed,
                        "skipped": summary.skipped,
                        "unreachable": summary.unreachable,
                        "refused": summary.refused,
                        "aborted": summary.aborted,
                        "warnings": summary.warnings,
                        "millis": summary.millis,
                        "converged": summary.converged(),
                    }));
                } else {
                    if let Some(why) = &summary.unreachable {
                        say(
                            &multi,
                            format!("{:<width$}  UNREACHABLE  {why}", summary.host),
                        );
                    }
                    if let Some(why) = &summary.refused {
                        say(&multi, format!("{:<width$}  REFUSED  {why}", summary.host));
                    }
                    if let Some(why) = &summary.aborted {
                        say(&multi, format!("{:<width$}  ABORTED  {why}", summary.host));
                    }
                    for warning in &summary.warnings {
                        say(
                            &multi,
                            format!("{:<width$}  warning: {warning}", summary.host),
                        );
                    }
                }
                done.insert(summary.host.clone(), summary);
            }
        }
    }
    let summaries: Vec<HostSummary> = hosts
        .iter()
        .map(|h| {
            done.remove(&h.name).unwrap_or_else(|| HostSummary {
                host: h.name.clone(),
                unreachable: Some("the host's task ended without a result".into()),
                ..HostSummary::default()
            })
        })
        .collect();
    if opts.json {
        let converged = summaries.iter().filter(|s| s.converged()).count();
        emit(json!({
            "event": "summary",
            "hosts": summaries.len(),
            "converged": converged,
            "changed": summaries.iter().map(|s| s.changed).sum::<u32>(),
            "check": opts.check,
        }));
    }
    summaries
}

/// Prints a line on stderr above the progress bars (which indicatif hides
/// when stderr is not a terminal; the line is printed all the same).
fn say(multi: &MultiProgress, text: String) {
    multi.suspend(|| eprintln!("{text}"));
}

/// A changed, failed or skipped resource, as shown on stderr.
fn describe(host: &str, width: usize, report: &Report, opts: &Options) -> String {
    let status = match (report.status, opts.check) {
        (Status::Changed, true) => "would change",
        (Status::Changed, false) => "changed",
        (Status::Failed, _) => "FAILED",
        (Status::Skipped, _) => "skipped",
        (Status::Ok, _) => "ok",
    };
    let what = if report.handler {
        format!("handler {}", report.id)
    } else {
        report.id.clone()
    };
    let mut text = format!("{host:<width$}  {status}  {what}");
    for change in &report.changes {
        text.push_str(&format!("\n{:width$}    - {change}", ""));
    }
    if let Some(error) = &report.error {
        for line in error.lines() {
            text.push_str(&format!("\n{:width$}    ! {line}", ""));
        }
    }
    if let Some(diff) = &report.diff {
        for line in diff.lines() {
            text.push_str(&format!("\n{:width$}    {line}", ""));
        }
    }
    text
}

fn print_table(summaries: &[HostSummary], elapsed: Duration, check: bool) {
    let width = summaries
        .iter()
        .map(|s| s.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:>4}  {:>7}  {:>6}  {:>7}  {:<11}  {:>6}",
        "HOST", "OK", "CHANGED", "FAILED", "SKIPPED", "UNREACHABLE", "TIME"
    );
    for s in summaries {
        let unreachable = if s.unreachable.is_some() {
            "yes"
        } else if s.refused.is_some() {
            "refused"
        } else if s.aborted.is_some() {
            "aborted"
        } else {
            "-"
        };
        println!(
            "{:<width$}  {:>4}  {:>7}  {:>6}  {:>7}  {:<11}  {:>5.1}s",
            s.host,
            s.ok,
            s.changed,
            s.failed,
            s.skipped,
            unreachable,
            s.millis as f64 / 1000.0
        );
    }
    let converged = summaries.iter().filter(|s| s.converged()).count();
    let changed: u32 = summaries.iter().map(|s| s.changed).sum();
    let verb = if check { "would change" } else { "changed" };
    println!(
        "{converged}/{} hosts converged, {changed} resources {verb}, in {:.1}s{}",
        summaries.len(),
        elapsed.as_secs_f64(),
        if check {
            " (check mode: no resource was changed)"
        } else {
            ""
        }
    );
}

/// `1795615387-1a2b` (Unix time, pid): sortable, and unique enough for
/// one admin's runs.
pub fn run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}-{:04x}", std::process::id() & 0xffff)
}

/// `user@machine` of whoever runs clou (the sudo caller when there is one).
pub fn admin() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".into());
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{machine}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/girofle.yaml");
        Inventory::load(&path).unwrap()
    }

    fn names(hosts: &[Host]) -> Vec<&str> {
        hosts.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn limit_takes_hosts_groups_globs_and_exclusions() {
        let inv = inventory();
        assert_eq!(names(&select_hosts(&inv, Some("web")).unwrap()), ["web"]);
        assert_eq!(
            names(&select_hosts(&inv, Some("mail-servers")).unwrap()),
            ["mail-exit", "mail"]
        );
        assert_eq!(
            names(&select_hosts(&inv, Some("mail*")).unwrap()),
            ["mail-exit", "mail"]
        );
        assert_eq!(
            names(&select_hosts(&inv, Some("fleet,!apps,!backup")).unwrap()),
            ["mail-exit", "mail", "test"]
        );
        assert_eq!(select_hosts(&inv, Some("!web")).unwrap().len(), 7);
        let err = select_hosts(&inv, Some("wbe")).unwrap_err().to_string();
        assert!(err.contains("\"wbe\" is no host or group"), "{err}");
        // An empty pattern (an unset shell variable) must not mean "all".
        for empty in ["", " , "] {
            assert!(select_hosts(&inv, Some(empty)).is_err(), "{empty:?}");
        }
    }
}
