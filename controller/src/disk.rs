//! `clou disk replace HOST DISK [--new NEW]`: replaces a disk of a btrfs
//! RAID1 or of mdadm arrays with a new one, on a running host.
//!
//! btrfs, while mounted:
//! 1. **Look**: the disk's identity (model, serial, capacity, by-id path:
//!    what the provider needs to pull the right one), what uses it, and
//!    whether the rest holds a copy of everything on it; the new disk must
//!    be blank and at least as large. Refused (nothing changed) otherwise.
//! 2. **Show and ask**: the exact commands; `--yes` answers for scripts.
//! 3. **Replace**: `btrfs replace` copies the disk's share onto the new one
//!    while the filesystem stays mounted, followed with a progress bar.
//! 4. **Verify**: the new disk in, the old one out, the whole capacity used,
//!    every error counter at 0.
//!
//!
//! mdadm (see the agent's `disk::mdadm`): the disk's members failed and
//! removed, then clou waits while the disk is swapped (by default the new
//! one takes the old one's name), copies the healthy disk's partition
//! table, adds the members back, installs the boot loader, follows the
//! resync with its ETA and verifies each array.
//!
//! The host keeps the replacement's state: running the command again after
//! an interruption follows the replacement under way.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clou_protocol::{DiskReport, DiskRequest, DiskStep, Message};
use indicatif::{ProgressBar, ProgressStyle};

use crate::inventory::Inventory;
use crate::remote::Link;
use crate::ssh::Target;
use crate::ssh::config::SshConfig;
use crate::ssh::known_hosts::HostKeys;

/// What `clou disk replace` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    pub disk: String,
    pub new: Option<String>,
    pub yes: bool,
}

/// `clou disk replace`.
pub fn replace(inventory_path: &std::path::Path, opts: &Options) -> anyhow::Result<ExitCode> {
    let inventory = Inventory::load(inventory_path)
        .with_context(|| format!("cannot use the inventory {}", inventory_path.display()))?;
    let host = inventory
        .hosts
        .iter()
        .find(|h| h.name == opts.host)
        .with_context(|| {
            format!(
                "{} is not a host of {}",
                opts.host,
                inventory_path.display()
            )
        })?;
    let keys = Arc::new(HostKeys::for_inventory(&inventory));
    let target = Target::for_host(&inventory, host, &SshConfig::load_default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let run_id = crate::apply::run_id();
    let mut link = Link::new(target, keys);
    let result = runtime.block_on(run(&mut link, &run_id, opts));
    runtime.block_on(link.close());
    result
}

async fn ask(
    link: &mut Link,
    run_id: &str,
    opts: &Options,
    step: DiskStep,
) -> anyhow::Result<DiskReport> {
    let request = Message::Disk(DiskRequest {
        run_id: run_id.to_owned(),
        admin: crate::apply::admin(),
        disk: opts.disk.clone(),
        new: opts.new.clone(),
        step,
    });
    match link.ask(&request).await {
        Ok(Message::DiskReport(report)) => Ok(report),
        Ok(other) => anyhow::bail!("the agent on {} answered {other:?}", opts.host),
        Err(why) => anyhow::bail!("{}: {why}", opts.host),
    }
}

async fn run(link: &mut Link, run_id: &str, opts: &Options) -> anyhow::Result<ExitCode> {
    let look = ask(link, run_id, opts, DiskStep::Look).await?;
    if let Some(error) = &look.error {
        anyhow::bail!("{}: {error}", opts.host);
    }
    show(&look, opts);
    if look.under_way.is_none() {
        if let Some(why) = &look.refusal {
            println!("REFUSED: {why}\nnothing was changed");
            return Ok(ExitCode::from(crate::EXIT_HOSTS_FAILED));
        }
        let mdadm = look.uses.iter().any(|u| u.kind == "mdadm");
        if opts.new.is_none() && !mdadm {
            println!(
                "give the new disk with --new /dev/... (blank: no partition table, no filesystem; \
                 at least {}); nothing was changed",
                look.identity
                    .get("capacity")
                    .map(String::as_str)
                    .unwrap_or("as large")
            );
            return Ok(ExitCode::from(crate::EXIT_HOSTS_FAILED));
        }
        if !opts.yes && !crate::process::confirm(&format!("replace {}?", opts.disk))? {
            println!("nothing was changed");
            return Ok(ExitCode::from(crate::EXIT_OK));
        }
        let started = ask(link, run_id, opts, DiskStep::Start).await?;
        if let Some(error) = started.error.or(started.refusal) {
            println!("FAILED to start: {error}");
            return Ok(ExitCode::from(crate::EXIT_HOSTS_FAILED));
        }
        if let Some(waiting) = &started.waiting {
            println!("{waiting}");
        }
    } else {
        println!("following the replacement under way");
    }
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} copying {bar:40} {percent:>3}%  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut said = None;
    loop {
        let report = ask(link, run_id, opts, DiskStep::Progress).await?;
        if let Some(error) = &report.error {
            bar.abandon();
            println!("FAILED: {error}");
            println!(
                "the state is kept on {}: run the same command again once fixed",
                opts.host
            );
            return Ok(ExitCode::from(crate::EXIT_HOSTS_FAILED));
        }
        // Waiting for the swap: say it once, then again only if it changes
        // (the old disk pulled, the new one not blank yet...).
        if let Some(waiting) = &report.waiting {
            if said.as_ref() != Some(waiting) {
                bar.println(format!("waiting: {waiting}"));
                said = Some(waiting.clone());
            }
            bar.set_message("waiting for the new disk (Ctrl-C and run again later: it goes on)");
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        bar.set_position((report.percent.unwrap_or(0.0) * 10.0) as u64);
        bar.set_message(match &report.eta {
            Some(eta) => format!("the kernel expects {eta}"),
            None => String::new(),
        });
        if report.finished {
            bar.finish_and_clear();
            println!(
                "replaced {} with {} on {}:",
                opts.disk,
                opts.new.as_deref().unwrap_or("the new disk"),
                opts.host
            );
            for line in &report.verified {
                println!("  {line}");
            }
            if !report.uses.iter().any(|u| u.kind == "mdadm") {
                println!("{} can now be taken out of the server", opts.disk);
            }
            return Ok(ExitCode::from(crate::EXIT_OK));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn show(look: &DiskReport, opts: &Options) {
    println!("{} on {}:", opts.disk, opts.host);
    for (key, value) in &look.identity {
        println!("  {key:<9} {value}");
    }
    for u in &look.uses {
        println!(
            "  used by   {} {} ({}; devices {}){}",
            u.kind,
            u.name,
            u.layout,
            u.devices.join(", "),
            if u.redundant {
                ", every block has a copy on another device"
            } else {
                ""
            }
        );
    }
    if let Some(under_way) = &look.under_way {
        println!("  under way {under_way}");
    }
    if let (Some(new), Some(size)) = (&opts.new, look.new_size) {
        println!("  new disk  {new}, {:.1} GB, blank", size as f64 / 1e9);
    }
    if !look.commands.is_empty() {
        println!("the replacement runs:");
        for command in &look.commands {
            println!("  {command}");
        }
    }
}
