//! `clou demo`: the lab replica of the fleet, on a fresh machine, in one
//! command. It boots one host per inventory host, converges them to their
//! roles, converges them again to show that nothing changes the second
//! time, shows each host answering over SSH with its Debian release and
//! systemd state, takes the first backups (they would otherwise wait for
//! the night), and prints the fleet's health (`clou status`) and usage
//! table (`clou usage`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::LabSelect;
use crate::inventory::Inventory;
use crate::lab::state::HostState;
use crate::lab::{self, Lab};
use crate::{apply, process};

/// Runs a host's backup now, where the backup-client role put one.
const FIRST_BACKUP: &str = "if test -e /etc/systemd/system/borgmatic.service; then \
                            systemctl start borgmatic.service && echo backed up; fi";

/// What the demo asks each host.
const PROBE: &str = ". /etc/os-release; echo \"$PRETTY_NAME\"; \
                     systemctl is-system-running 2>/dev/null || true; systemctl is-active ssh 2>/dev/null || true";

pub fn run(select: &LabSelect) -> anyhow::Result<ExitCode> {
    let inventory = Inventory::load(&select.inventory)
        .with_context(|| format!("cannot use the inventory {}", select.inventory.display()))?;
    let lab = crate::select_lab(select)?;
    eprintln!(
        "demo: booting the lab replica of {} ({} hosts)",
        select.inventory.display(),
        inventory.hosts.len()
    );
    let started = Instant::now();
    let opts = lab::UpOptions {
        timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let state = lab
        .up(&inventory, &opts)
        .with_context(|| format!("lab {} did not come up", lab.name))?;
    eprintln!(
        "demo: {} hosts up in {:.1} s\n",
        state.hosts.len(),
        started.elapsed().as_secs_f64()
    );

    // Converge twice: the first run changes what differs, the second
    // shows that a converged fleet stays as it is (0 changed).
    let overlay = lab.inventory_path();
    let opts = apply::Options {
        forks: 16,
        ..Default::default()
    };
    let mut converged = true;
    for (round, what) in [
        (1, "converging the fleet to its roles"),
        (2, "again: nothing may change"),
    ] {
        eprintln!("demo: apply #{round}, {what}");
        let summaries = apply::apply(&overlay, &opts)?;
        converged &= summaries.iter().all(apply::HostSummary::converged);
        if round == 2 {
            let changed: u32 = summaries.iter().map(|s| s.changed).sum();
            eprintln!("demo: second apply changed {changed} resources\n");
            converged &= changed == 0;
        }
        println!();
    }

    // The nightly backups would first run at night: take them now, so
    // that the health below shows them done (and the backup host in use).
    let backups: Vec<_> = on_every_host(&state.hosts, |h| {
        process::stdout(lab.ssh_command(h.address).arg(FIRST_BACKUP))
    })
    .into_iter()
    .map(|(_, result)| result)
    .collect();
    let done = backups
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|out| out.trim() == "backed up"))
        .count();
    let failed_backups = backups.iter().filter(|r| r.is_err()).count();
    eprintln!("demo: first backups taken on {done} hosts ({failed_backups} failed)\n");

    let rows = on_every_host(&state.hosts, |h| ask(&lab, h.address));
    println!(
        "{:<16} {:<15} {:<34} {:<10} SSHD",
        "HOST", "ADDRESS", "RELEASE", "SYSTEMD"
    );
    let mut failed = 0;
    for (h, answer) in &rows {
        match answer {
            Ok((release, systemd, sshd)) => {
                println!(
                    "{:<16} {:<15} {:<34} {:<10} {}",
                    h.name,
                    h.address.to_string(),
                    release,
                    systemd,
                    sshd
                );
                if systemd != "running" || sshd != "active" {
                    failed += 1;
                }
            }
            Err(err) => {
                failed += 1;
                println!(
                    "{:<16} {:<15} unreachable: {err}",
                    h.name,
                    h.address.to_string()
                );
            }
        }
    }
    // The fleet's health, as `clou status --in-lab` shows it.
    println!();
    let overlay_inventory = Inventory::load(&overlay)?;
    let none = std::collections::BTreeMap::new();
    let settings =
        crate::status::settings_for(&overlay_inventory, &overlay_inventory.hosts, &none)?;
    let health = crate::status::check_all(
        &overlay_inventory,
        overlay_inventory.hosts.clone(),
        settings,
    )?;
    crate::status::print_fleet(&health);
    // What the association's yearly report asks: accounts, users, data.
    println!();
    let usage = crate::usage::run(&overlay, &crate::usage::Options::default());
    if let Err(err) = &usage {
        eprintln!("demo: clou usage failed: {err:#}");
    }
    println!(
        "\n{} of {} hosts answer over SSH. Try `clou lab ssh {}`, `clou status --in-lab` or `clou usage --in-lab`; stop the lab with `clou lab down`.",
        rows.len() - failed,
        rows.len(),
        state
            .hosts
            .first()
            .map(|h| h.name.as_str())
            .unwrap_or("HOST")
    );
    Ok(ExitCode::from(
        if failed == 0 && failed_backups == 0 && converged && usage.is_ok() {
            crate::EXIT_OK
        } else {
            crate::EXIT_HOSTS_FAILED
        },
    ))
}

/// `f` on every host at once, with each host's answer, in the hosts' order.
fn on_every_host<T: Send>(
    hosts: &[HostState],
    f: impl Fn(&HostState) -> T + Sync,
) -> Vec<(&HostState, T)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| {
                let f = &f;
                scope.spawn(move || (h, f(h)))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

fn ask(lab: &Lab, address: std::net::Ipv4Addr) -> anyhow::Result<(String, String, String)> {
    let out = process::stdout(lab.ssh_command(address).arg(PROBE))?;
    let mut lines = out.lines().map(str::to_owned);
    Ok((
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    ))
}
