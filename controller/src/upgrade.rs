//! `clou upgrade`: Debian package upgrades across the fleet, in batches,
//! each batch followed by a health gate.
//!
//! 1. **Look**, on every selected host in parallel: the package lists are
//!    refreshed and the agent says what would be upgraded (nothing is
//!    installed); the host's health is taken as the baseline.
//! 2. **Show and ask**: every host's packages, before and after; hosts whose
//!    services are already down are refused (the gate could not tell them
//!    healthy afterwards). `--check` stops here; otherwise the admin says
//!    yes, or passed `--yes`.
//! 3. **Roll**: batch after batch (`--serial`), each host upgraded to
//!    exactly the versions shown, rebooted if it needs it and `--reboot`
//!    was given, then gated: after a settling pause, its health must have
//!    no critical finding the baseline did not have (a declared service
//!    down, a failed unit...), within `--gate-timeout`. Once more hosts
//!    failed than `--max-fail` tolerates, the rollout stops: the hosts of
//!    later batches are not touched.
//! 4. **Sum up**: each host's packages before and after, where the rollout
//!    stopped and why (a failed service with its last log lines).
//!
//! Resuming is running it again: upgraded hosts have nothing left to do,
//! a host whose service the previous run broke is refused until it is
//! fixed or left out with `--limit '!HOST'`. Each host journals its
//! upgrades (`/var/lib/clou/journal.jsonl`).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clou_protocol::health::CheckSettings;
use clou_protocol::{HealthReport, Message, RebootRequest, UpgradeReport, UpgradeRequest};

use crate::inventory::{Host, Inventory};
use crate::remote::Link;
use crate::rollout::{self, Serial};
use crate::ssh::Target;
use crate::ssh::config::SshConfig;
use crate::ssh::known_hosts::HostKeys;

/// What `clou upgrade` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub limit: Option<String>,
    pub packages: Vec<String>,
    pub serial: Serial,
    pub max_fail: usize,
    pub reboot: bool,
    pub yes: bool,
    pub check: bool,
    /// Pause between a host's upgrade and its first health check.
    pub settle: Duration,
    /// How long a host may take to pass its gate.
    pub gate_timeout: Duration,
    /// How long a rebooting host may take to come back.
    pub reboot_timeout: Duration,
}

/// What the look found on one host.
struct Looked {
    link: Link,
    settings: CheckSettings,
    outcome: Result<(UpgradeReport, HealthReport), String>,
}

/// Where a host ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Upgraded and healthy.
    Upgraded,
    /// Nothing to upgrade (and no reboot asked).
    NothingToDo,
    /// The look failed (unreachable, apt broken...).
    LookFailed(String),
    /// Already unhealthy before: not touched.
    Refused(String),
    /// The upgrade, the reboot or the gate failed.
    Failed { stage: &'static str, why: String },
    /// The rollout stopped before its batch.
    NotStarted,
}

/// One host's line in the summary.
#[derive(Debug, Clone)]
pub struct HostOutcome {
    pub host: String,
    pub result: Verdict,
    pub look: Option<UpgradeReport>,
    pub done: Option<UpgradeReport>,
    pub rebooted: bool,
    pub millis: u64,
}

/// `clou upgrade`.
pub fn run(inventory_path: &std::path::Path, opts: &Options) -> anyhow::Result<ExitCode> {
    let inventory = Inventory::load(inventory_path)
        .with_context(|| format!("cannot use the inventory {}", inventory_path.display()))?;
    let hosts = crate::apply::select_hosts(&inventory, opts.limit.as_deref())?;
    let settings = crate::status::settings_for(&inventory, &hosts, &BTreeMap::new())?;
    let outcomes = rollout_hosts(&inventory, hosts, settings, opts)?;
    let Some(outcomes) = outcomes else {
        return Ok(ExitCode::from(crate::EXIT_OK));
    };
    let failed = outcomes.iter().any(|o| {
        matches!(
            o.result,
            Verdict::Failed { .. }
                | Verdict::LookFailed(_)
                | Verdict::Refused(_)
                | Verdict::NotStarted
        )
    });
    Ok(ExitCode::from(if failed {
        crate::EXIT_HOSTS_FAILED
    } else {
        crate::EXIT_OK
    }))
}

/// Looks, asks, rolls; `None` when the admin said no or only looked.
pub fn rollout_hosts(
    inventory: &Inventory,
    hosts: Vec<Host>,
    mut settings: BTreeMap<String, CheckSettings>,
    opts: &Options,
) -> anyhow::Result<Option<Vec<HostOutcome>>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let keys = Arc::new(HostKeys::for_inventory(inventory));
    let ssh_config = SshConfig::load_default();
    let run_id = crate::apply::run_id();
    let started = Instant::now();
    // Asking needs a terminal: without one and without --yes, say so
    // before touching anything (the look refreshes the package lists).
    if !opts.check && !opts.yes && !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "clou upgrade shows its plan and asks before it changes anything, and stdin is not \
             a terminal\n  hint: look with --check, then run it again with --yes"
        );
    }

    // 1. Look, everywhere at once.
    eprintln!(
        "clou upgrade: looking at {} host{}{}...",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        if opts.check {
            ""
        } else {
            " (refreshing their package lists)"
        }
    );
    let looked: Vec<Looked> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for host in &hosts {
            let mut link = Link::new(Target::for_host(inventory, host, &ssh_config), keys.clone());
            let settings = settings.remove(&host.name).unwrap_or_default();
            let run_id = run_id.clone();
            let update = !opts.check;
            let packages = opts.packages.clone();
            tasks.push(tokio::spawn(async move {
                let outcome = match link.look(&run_id, update, &packages).await {
                    Ok(report) => link.health(&settings).await.map(|health| (report, health)),
                    Err(err) => Err(err),
                };
                Looked {
                    link,
                    settings,
                    outcome,
                }
            }));
        }
        let mut out = Vec::new();
        for task in tasks {
            match task.await {
                Ok(looked) => out.push(looked),
                Err(err) => anyhow::bail!("a look stopped: {err}"),
            }
        }
        Ok(out)
    })?;

    // 2. Show, and ask.
    let mut outcomes: Vec<HostOutcome> = Vec::new();
    let mut to_roll: Vec<(Link, CheckSettings, UpgradeReport, HealthReport)> = Vec::new();
    for looked in looked {
        let host = looked.link.target.name.clone();
        let mut outcome = HostOutcome {
            host: host.clone(),
            result: Verdict::NothingToDo,
            look: None,
            done: None,
            rebooted: false,
            millis: 0,
        };
        match looked.outcome {
            Err(why) => outcome.result = Verdict::LookFailed(why),
            Ok((report, health)) => {
                let blocking = rollout::unhealthy_services(&health);
                let wants_reboot = opts.reboot && report.reboot_required.is_some();
                if !blocking.is_empty() {
                    outcome.result = Verdict::Refused(rollout::describe(&blocking));
                } else if !report.upgrades.is_empty() || wants_reboot {
                    to_roll.push((looked.link, looked.settings, report.clone(), health));
                }
                outcome.look = Some(report);
            }
        }
        outcomes.push(outcome);
    }
    let batches = rollout::batches(
        &to_roll
            .iter()
            .map(|(l, ..)| l.target.name.clone())
            .collect::<Vec<_>>(),
        opts.serial,
    );
    print_look(&outcomes, &batches, opts);
    if opts.check {
        println!("check mode: nothing was changed (package lists included)");
        return Ok(None);
    }
    if to_roll.is_empty() {
        println!("nothing to upgrade");
        print_summary(&outcomes, None, started.elapsed());
        return Ok(Some(outcomes));
    }
    // 3. Roll, batch after batch. Hosts that could not be looked at, or
    // are unhealthy already, count as failed from the start.
    let mut failed = outcomes
        .iter()
        .filter(|o| matches!(o.result, Verdict::LookFailed(_) | Verdict::Refused(_)))
        .count();
    let mut stopped: Option<String> = rollout::must_stop(failed, opts.max_fail).then(|| {
        format!(
            "not started: {failed} host{} cannot be upgraded safely (above), --max-fail is {}; \
             fix {}, leave {} out with --limit, or raise --max-fail",
            if failed == 1 { "" } else { "s" },
            opts.max_fail,
            if failed == 1 { "it" } else { "them" },
            if failed == 1 { "it" } else { "them" },
        )
    });
    let question = format!(
        "upgrade {} host{} in {} batch{}?",
        to_roll.len(),
        if to_roll.len() == 1 { "" } else { "s" },
        batches.len(),
        if batches.len() == 1 { "" } else { "es" }
    );
    if stopped.is_none() && !opts.yes && !crate::process::confirm(&question)? {
        println!("nothing was changed");
        return Ok(None);
    }
    let mut pending = to_roll.into_iter();
    for (number, batch) in batches.iter().enumerate() {
        let members: Vec<_> = pending.by_ref().take(batch.len()).collect();
        if stopped.is_some() {
            for (mut link, ..) in members {
                runtime.block_on(link.close());
                set_result(&mut outcomes, &link.target.name, Verdict::NotStarted);
            }
            continue;
        }
        println!(
            "batch {}/{}: {}",
            number + 1,
            batches.len(),
            batch.join(", ")
        );
        let results = runtime.block_on(async {
            let mut tasks = Vec::new();
            for (link, settings, look, baseline) in members {
                let opts = opts.clone();
                let run_id = run_id.clone();
                tasks.push(tokio::spawn(async move {
                    roll_host(link, settings, look, baseline, &run_id, &opts).await
                }));
            }
            let mut out = Vec::new();
            for task in tasks {
                if let Ok(result) = task.await {
                    out.push(result);
                }
            }
            out
        });
        for rolled in results {
            let line = match &rolled.result {
                Verdict::Upgraded => format!(
                    "  {}: {} package{} upgraded{}, healthy ({:.0} s)",
                    rolled.host,
                    rolled.done.as_ref().map_or(0, |d| d.upgrades.len()),
                    if rolled.done.as_ref().map_or(0, |d| d.upgrades.len()) == 1 {
                        ""
                    } else {
                        "s"
                    },
                    if rolled.rebooted { ", rebooted" } else { "" },
                    rolled.millis as f64 / 1000.0
                ),
                Verdict::Failed { stage, why } => {
                    failed += 1;
                    let first = why.lines().next().unwrap_or_default();
                    format!("  {}: FAILED ({stage}): {first}", rolled.host)
                }
                other => format!("  {}: {other:?}", rolled.host),
            };
            println!("{line}");
            if let Some(slot) = outcomes.iter_mut().find(|o| o.host == rolled.host) {
                let look = slot.look.take();
                *slot = rolled;
                slot.look = look;
            }
        }
        if rollout::must_stop(failed, opts.max_fail) && number + 1 < batches.len() {
            stopped = Some(format!(
                "stopped after batch {} of {}: {failed} host{} failed, --max-fail is {}; the \
                 hosts of the later batches were not touched",
                number + 1,
                batches.len(),
                if failed == 1 { "" } else { "s" },
                opts.max_fail
            ));
        }
    }
    // 4. Sum up.
    print_summary(&outcomes, stopped.as_deref(), started.elapsed());
    Ok(Some(outcomes))
}

fn set_result(outcomes: &mut [HostOutcome], host: &str, result: Verdict) {
    if let Some(slot) = outcomes.iter_mut().find(|o| o.host == host) {
        slot.result = result;
    }
}

/// One host's upgrade, reboot and gate.
async fn roll_host(
    mut link: Link,
    settings: CheckSettings,
    look: UpgradeReport,
    baseline: HealthReport,
    run_id: &str,
    opts: &Options,
) -> HostOutcome {
    let started = Instant::now();
    let mut outcome = HostOutcome {
        host: link.target.name.clone(),
        result: Verdict::Upgraded,
        look: None,
        done: None,
        rebooted: false,
        millis: 0,
    };
    let result = roll(
        &mut link,
        &settings,
        &look,
        &baseline,
        run_id,
        opts,
        &mut outcome,
    )
    .await;
    if let Err((stage, why)) = result {
        outcome.result = Verdict::Failed { stage, why };
    }
    link.close().await;
    outcome.millis = started.elapsed().as_millis() as u64;
    outcome
}

async fn roll(
    link: &mut Link,
    settings: &CheckSettings,
    look: &UpgradeReport,
    baseline: &HealthReport,
    run_id: &str,
    opts: &Options,
    outcome: &mut HostOutcome,
) -> Result<(), (&'static str, String)> {
    let mut reboot_reason = look.reboot_required.clone();
    if !look.upgrades.is_empty() {
        let request = Message::Upgrade(UpgradeRequest {
            run_id: run_id.to_owned(),
            admin: crate::apply::admin(),
            check: false,
            update: false,
            packages: opts.packages.clone(),
            approved: look
                .upgrades
                .iter()
                .map(|u| (u.name.clone(), u.to.clone()))
                .collect(),
        });
        let report = match link.ask(&request).await {
            Ok(Message::Upgraded(report)) => report,
            Ok(other) => return Err(("upgrade", format!("the agent answered {other:?}"))),
            Err(why) => return Err(("upgrade", why)),
        };
        reboot_reason = report.reboot_required.clone();
        let error = report.error.clone();
        outcome.done = Some(report);
        if let Some(error) = error {
            return Err(("upgrade", error));
        }
    }
    if opts.reboot
        && let Some(reason) = reboot_reason
    {
        reboot(link, run_id, &reason, opts.reboot_timeout)
            .await
            .map_err(|why| ("reboot", why))?;
        outcome.rebooted = true;
    }
    rollout::gate(link, settings, baseline, opts.settle, opts.gate_timeout)
        .await
        .map_err(|why| ("gate", why))
}

/// Asks for a reboot, then waits until the host answers with a new boot id.
async fn reboot(
    link: &mut Link,
    run_id: &str,
    reason: &str,
    timeout: Duration,
) -> Result<(), String> {
    let request = Message::Reboot(RebootRequest {
        run_id: run_id.to_owned(),
        admin: crate::apply::admin(),
        reason: format!("clou upgrade: {reason}"),
    });
    let before = match link.ask(&request).await? {
        Message::Rebooting(r) => r.boot_id,
        other => return Err(format!("the agent answered {other:?} to a reboot")),
    };
    link.close().await;
    let started = Instant::now();
    let mut last_error = String::from("no answer yet");
    while started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_secs(2)).await;
        match tokio::time::timeout(Duration::from_secs(15), link.look(run_id, false, &[])).await {
            Ok(Ok(report)) if !report.boot_id.is_empty() && report.boot_id != before => {
                return Ok(());
            }
            Ok(Ok(_)) => {
                // Still the old boot: the host has not gone down yet.
                link.close().await;
                last_error = "still running the boot before the reboot".into();
            }
            Ok(Err(why)) => last_error = why,
            Err(_) => {
                link.close().await;
                last_error = "no answer within 15 s".into();
            }
        }
    }
    Err(format!(
        "the host did not come back within {} s of its reboot (last: {last_error}); \
         look at its console",
        timeout.as_secs()
    ))
}

/// Waits for the host to have no critical finding its baseline did not.
fn indent(text: &str) -> String {
    text.replace('\n', "\n    ")
}

fn print_look(outcomes: &[HostOutcome], batches: &[Vec<String>], opts: &Options) {
    let width = outcomes
        .iter()
        .map(|o| o.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for o in outcomes {
        match (&o.result, &o.look) {
            (Verdict::LookFailed(why), _) => {
                println!("{:width$}  cannot look: {}", o.host, indent(why));
            }
            (Verdict::Refused(why), _) => {
                println!(
                    "{:width$}  REFUSED, already unhealthy (fix it, or leave it out with \
                     --limit '!{}'):\n    {}",
                    o.host,
                    o.host,
                    indent(why)
                );
            }
            (_, Some(look)) => {
                if look.upgrades.is_empty() {
                    println!("{:width$}  nothing to upgrade", o.host);
                } else {
                    println!(
                        "{:width$}  {} package{}:",
                        o.host,
                        look.upgrades.len(),
                        if look.upgrades.len() == 1 { "" } else { "s" }
                    );
                    print_packages(&look.upgrades, width);
                }
                if !look.held_back.is_empty() {
                    println!("{:width$}    kept back: {}", "", look.held_back.join(", "));
                }
                if !look.not_installed.is_empty() {
                    println!(
                        "{:width$}    not installed: {}",
                        "",
                        look.not_installed.join(", ")
                    );
                }
                if let Some(why) = &look.reboot_required {
                    println!(
                        "{:width$}    needs a reboot ({why}){}",
                        "",
                        if opts.reboot {
                            ""
                        } else {
                            ": pass --reboot to do it"
                        }
                    );
                }
            }
            _ => {}
        }
    }
    if !batches.is_empty() {
        println!(
            "plan: {} host{} in {} batch{} ({}), each gated by its health; stop after \
             {} failed host{}{}",
            batches.iter().map(Vec::len).sum::<usize>(),
            if batches.iter().map(Vec::len).sum::<usize>() == 1 {
                ""
            } else {
                "s"
            },
            batches.len(),
            if batches.len() == 1 { "" } else { "es" },
            batches
                .iter()
                .map(|b| b.join(" "))
                .collect::<Vec<_>>()
                .join(" | "),
            opts.max_fail + 1,
            if opts.max_fail == 0 { "" } else { "s" },
            if opts.reboot {
                "; reboots when needed"
            } else {
                ""
            }
        );
    }
}

/// One line per package: `name from -> to`, under the host column.
fn print_packages(upgrades: &[clou_protocol::PackageUpgrade], width: usize) {
    for u in upgrades {
        println!(
            "{:width$}    {} {} -> {}",
            "",
            u.name,
            u.from.as_deref().unwrap_or("(new)"),
            u.to
        );
    }
}

fn print_summary(outcomes: &[HostOutcome], stopped: Option<&str>, elapsed: Duration) {
    let width = outcomes
        .iter()
        .map(|o| o.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!();
    println!("{:width$}  RESULT", "HOST");
    for o in outcomes {
        let result = match &o.result {
            Verdict::Upgraded => "upgraded".to_owned(),
            Verdict::NothingToDo => "nothing to upgrade".to_owned(),
            Verdict::LookFailed(_) => "FAILED (look)".to_owned(),
            Verdict::Refused(_) => "REFUSED (already unhealthy)".to_owned(),
            Verdict::Failed { stage, .. } => format!("FAILED ({stage})"),
            Verdict::NotStarted => "not started (the rollout stopped)".to_owned(),
        };
        println!(
            "{:width$}  {result}{}",
            o.host,
            if o.rebooted { ", rebooted" } else { "" }
        );
        if let Some(done) = &o.done {
            print_packages(&done.upgrades, width);
            for note in &done.notes {
                println!("{:width$}    note: {note}", "");
            }
        }
    }
    if let Some(why) = stopped {
        println!("{why}");
    }
    let failures: Vec<&HostOutcome> = outcomes
        .iter()
        .filter(|o| matches!(o.result, Verdict::Failed { .. }))
        .collect();
    for o in failures {
        if let Verdict::Failed { stage, why } = &o.result {
            println!("{} failed ({stage}):\n    {}", o.host, indent(why));
        }
    }
    println!("done in {:.1} s", elapsed.as_secs_f64());
}
