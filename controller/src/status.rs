//! `clou status`: every host's health at a glance, over the same SSH
//! machinery as `apply` (one connection per host, all in parallel).
//!
//! What a host is checked against comes from its vars: `health:` (a
//! mapping with `thresholds`, `certificates`, `backups`, `services`,
//! `smartctl`; see `clou_protocol::health::CheckSettings`), plus every
//! service the host's roles declare (`service:` resources that must run).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clou_protocol::health::{CheckRequest, CheckSettings, Finding, HealthReport, Severity};
use clou_protocol::resource::ServiceState;
use clou_protocol::{Message, Resource};
use serde_json::json;

use crate::inventory::{Host, Inventory};
use crate::plan::Planner;
use crate::remote;
use crate::role::Roles;

/// What `clou status` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub host: Option<String>,
    pub limit: Option<String>,
    pub json: bool,
    /// `-e key=value` vars, as for apply (e.g. `-e 'health={smartctl: ...}'`).
    pub extra: Vec<String>,
}

/// One host's answer, or why there is none.
#[derive(Debug, Clone)]
pub struct HostHealth {
    pub host: String,
    pub report: Result<HealthReport, String>,
}

impl HostHealth {
    /// The worst severity, unreachable counting as critical.
    pub fn worst(&self) -> Severity {
        match &self.report {
            Ok(report) => report.worst(),
            Err(_) => Severity::Crit,
        }
    }
}

/// Runs `clou status`: exit 0 when no host has a warning or worse.
pub fn run(inventory_path: &std::path::Path, opts: &Options) -> anyhow::Result<ExitCode> {
    let inventory = Inventory::load(inventory_path)
        .with_context(|| format!("cannot use the inventory {}", inventory_path.display()))?;
    let limit = opts.host.clone().or_else(|| opts.limit.clone());
    let hosts = crate::apply::select_hosts(&inventory, limit.as_deref())?;
    let extra = crate::vars::parse_extra(&opts.extra).map_err(anyhow::Error::msg)?;
    let settings = settings_for(&inventory, &hosts, &extra)?;
    let results = check_all(&inventory, hosts, settings)?;
    if opts.json {
        for r in &results {
            let value = match &r.report {
                Ok(report) => json!({"host": r.host, "worst": r.worst(), "report": report}),
                Err(why) => json!({"host": r.host, "worst": r.worst(), "unreachable": why}),
            };
            println!("{value}");
        }
    } else if opts.host.is_some() {
        for r in &results {
            print_host(r);
        }
    } else {
        print_fleet(&results);
    }
    let healthy = results.iter().all(|r| r.worst() <= Severity::Unknown);
    Ok(ExitCode::from(if healthy {
        crate::EXIT_OK
    } else {
        crate::EXIT_HOSTS_FAILED
    }))
}

/// Each host's check settings: its `health` var and its roles' services.
pub fn settings_for(
    inventory: &Inventory,
    hosts: &[Host],
    extra: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<BTreeMap<String, CheckSettings>> {
    let roles = Roles::load(&inventory.roles_path)?;
    let planner = Planner::new(inventory, &roles)?;
    let none = extra;
    let mut out = BTreeMap::new();
    for host in hosts {
        let vars = planner.host_vars(host, none, None)?;
        let mut settings: CheckSettings = match vars.vars.get("health") {
            Some(var) => serde_json::from_value(var.value.clone()).map_err(|err| {
                anyhow::anyhow!(
                    "host {}: the `health` var (from {}) is not valid: {err}\n  \
                     hint: it takes thresholds, certificates, backups, services and smartctl",
                    host.name,
                    var.origin
                )
            })?,
            None => CheckSettings::default(),
        };
        // `host.checks`: the pages the host's roles serve.
        if let Some(checks) = vars.vars.get("host").and_then(|h| h.value.get("checks")) {
            let checks: Vec<clou_protocol::health::HttpCheck> =
                serde_json::from_value(checks.clone()).unwrap_or_default();
            for check in checks {
                if !settings.http.contains(&check) {
                    settings.http.push(check);
                }
            }
        }
        for role in planner.plan(host, none, None)? {
            for step in role.resources {
                if let Resource::Service(spec) = step.resource
                    && spec.state == Some(ServiceState::Running)
                    && crate::plan::is_service(&spec.name)
                    && !settings.services.contains(&spec.name)
                {
                    settings.services.push(spec.name);
                }
            }
        }
        out.insert(host.name.clone(), settings);
    }
    Ok(out)
}

/// Asks every host's agent for a health report, in parallel.
pub fn check_all(
    inventory: &Inventory,
    hosts: Vec<Host>,
    mut settings: BTreeMap<String, CheckSettings>,
) -> anyhow::Result<Vec<HostHealth>> {
    let requests = hosts
        .iter()
        .map(|h| {
            let request = Message::Check(CheckRequest {
                settings: settings.remove(&h.name).unwrap_or_default(),
            });
            (h.name.clone(), request)
        })
        .collect();
    let answers = remote::ask_all(inventory, &hosts, requests, |m| {
        matches!(m, Message::Health(_))
    })?;
    Ok(answers
        .into_iter()
        .map(|(host, answer)| HostHealth {
            host,
            report: answer.and_then(|m| match m {
                Message::Health(report) => Ok(report),
                _ => Err("the agent sent no health report".to_owned()),
            }),
        })
        .collect())
}

/// A probe's column: how many findings and the worst of them.
fn column(findings: &[&Finding]) -> String {
    match findings.iter().map(|f| f.severity).max() {
        None => "-".to_owned(),
        Some(worst) => format!("{} {}", findings.len(), worst.label()),
    }
}

pub fn print_fleet(results: &[HostHealth]) {
    let width = results
        .iter()
        .map(|r| r.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<7}  {:<10}  {:<10}  {:<11}  {:<10}  WORST",
        "HOST", "HEALTH", "DISKS", "ARRAYS", "FILESYSTEMS", "SERVICES"
    );
    for r in results {
        let Ok(report) = &r.report else {
            println!("{:<width$}  {:<7}  unreachable", r.host, "CRIT");
            continue;
        };
        let of = |probes: &[&str]| -> Vec<&Finding> {
            report
                .findings
                .iter()
                .filter(|f| probes.contains(&f.probe.as_str()))
                .collect()
        };
        let worst = report
            .findings
            .iter()
            .max_by_key(|f| f.severity)
            .filter(|f| f.severity > Severity::Ok)
            .map(|f| format!("{} {}: {}", f.probe, f.subject, f.message))
            .unwrap_or_default();
        println!(
            "{:<width$}  {:<7}  {:<10}  {:<10}  {:<11}  {:<10}  {}",
            r.host,
            report.worst().label(),
            column(&of(&["smart"])),
            column(&of(&["mdraid", "btrfs"])),
            column(&of(&["filesystem"])),
            column(&of(&["systemd"])),
            shorten(&worst, 70)
        );
    }
    let mut problems = Vec::new();
    for r in results {
        match &r.report {
            Err(why) => problems.push(format!("{:<width$}  CRIT  unreachable: {why}", r.host)),
            Ok(report) => {
                let mut findings: Vec<&Finding> = report
                    .findings
                    .iter()
                    .filter(|f| f.severity >= Severity::Warn)
                    .collect();
                findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
                for f in findings {
                    problems.push(format!(
                        "{:<width$}  {:<4}  {} {}: {}",
                        r.host,
                        f.severity.label(),
                        f.probe,
                        f.subject,
                        f.message
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        println!();
        for p in problems {
            println!("{p}");
        }
    }
}

fn print_host(r: &HostHealth) {
    let report = match &r.report {
        Ok(report) => report,
        Err(why) => {
            println!("{}: unreachable: {why}", r.host);
            return;
        }
    };
    println!(
        "{} ({}): {}, checked in {} ms",
        r.host,
        report.hostname,
        report.worst().label(),
        report.millis
    );
    let mut probe = "";
    for f in &report.findings {
        if f.probe != probe {
            probe = &f.probe;
            println!("\n{probe}");
        }
        println!("  {:<7} {}: {}", f.severity.label(), f.subject, f.message);
        for (key, value) in &f.facts {
            println!("          {key}: {value}");
        }
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(max - 3).collect::<String>())
    }
}
