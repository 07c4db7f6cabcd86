//! `clou`: keeps a small host's servers configured, upgraded and healthy.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap derive).
//! - [`yaml`]: the one function that reads YAML, with `file:line:col` errors.
//! - [`inventory`]: hosts, groups and vars, validated.
//! - [`role`]: roles read from `roles/NAME/role.yaml`, with line numbers.
//! - [`vars`]: a host's vars merged by precedence, each with its origin.
//! - [`template`]: handlebars in strict mode, without HTML escaping.
//! - [`plan`]: inventory + roles -> each host's concrete plan (pure; any
//!   error stops clou before it contacts a host).
//! - [`ssh`]: russh connections with strict host keys, `~/.ssh/config`,
//!   ProxyJump and exec channels.
//! - [`agent_bin`]: the static agent embedded at build time.
//! - [`remote`]: running the agent on a host (upload when missing, hello,
//!   one request, its answers streamed back).
//! - [`apply`]: `clou apply`: plans sent to every host in parallel, the
//!   agent's reports streamed back, progress and summary.
//! - [`status`]: `clou status`: every host's health at a glance.
//! - [`upgrade`]: `clou upgrade`: package upgrades in batches, each gated
//!   by the hosts' health; [`rollout`] holds its pure rules.
//! - [`hosts`]: `clou inventory` and `clou hosts trust`.
//! - [`lab`]: the rehearsal replica of the fleet, booted on this machine.
//! - [`demo`]: what `clou demo` shows.
//! - [`disk`]: `clou disk replace`: a btrfs RAID1 disk replaced, followed
//!   and verified.
//! - [`process`]: running local programs with errors that say what ran.
//!
//! Data flows one way: inventory and roles -> plans -> (SSH) -> agent ->
//! reports -> summary. `main` parses the command line and calls [`run`],
//! which dispatches to the module of the command and turns its result into
//! an exit code.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod agent_bin;
pub mod apply;
pub mod cli;
pub mod demo;
pub mod disk;
pub mod hosts;
pub mod inventory;
pub mod lab;
pub mod onboard;
pub mod plan;
pub mod process;
pub mod remote;
pub mod role;
pub mod rollout;
pub mod ssh;
pub mod status;
pub mod template;
pub mod upgrade;
pub mod usage;
pub mod vars;
pub mod yaml;

use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Command, LabCommand, LabSelect};
use inventory::Inventory;
use lab::Lab;

/// clou's version, sent to agents in the hello.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit code when every host did what was asked.
pub const EXIT_OK: u8 = 0;
/// Exit code when at least one host failed or could not be reached.
pub const EXIT_HOSTS_FAILED: u8 = 1;
/// Exit code when clou could not do its work at all (bad input, no lab...).
pub const EXIT_ERROR: u8 = 2;

/// Runs clou with the process's arguments.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Lab(cmd) => run_lab(cmd),
        Command::Apply(args) => {
            let path = inventory_path(&args.select, args.in_lab)?;
            let opts = apply::Options {
                check: args.check,
                diff: args.diff,
                limit: args.limit,
                roles: args.roles,
                tenant: args.tenant,
                extra: args.extra,
                forks: args.forks,
                json: args.json,
                timeout: args.timeout,
                confirm_timeout: args.confirm_timeout,
                serial: args.serial,
                max_fail: args.max_fail,
                settle: Duration::from_secs(args.settle),
                gate_timeout: Duration::from_secs(args.gate_timeout),
                keep_going: args.keep_going,
            };
            apply::run(&path, &opts)
        }
        Command::Status(args) => {
            let path = inventory_path(&args.select, args.in_lab)?;
            let opts = status::Options {
                host: args.host,
                limit: args.limit,
                json: args.json,
                extra: args.extra,
            };
            status::run(&path, &opts)
        }
        Command::Upgrade(args) => {
            let path = inventory_path(&args.select, args.in_lab)?;
            let opts = upgrade::Options {
                limit: args.limit,
                packages: args.packages.unwrap_or_default(),
                serial: args.serial,
                max_fail: args.max_fail,
                reboot: args.reboot,
                yes: args.yes,
                check: args.check,
                settle: Duration::from_secs(args.settle),
                gate_timeout: Duration::from_secs(args.gate_timeout),
                reboot_timeout: Duration::from_secs(args.reboot_timeout),
            };
            upgrade::run(&path, &opts)
        }
        Command::Disk(cli::DiskCommand::Replace(args)) => {
            let path = inventory_path(&args.select, args.in_lab)?;
            let opts = disk::Options {
                host: args.host,
                disk: args.disk,
                new: args.new,
                yes: args.yes,
            };
            disk::replace(&path, &opts)
        }
        Command::Usage(args) => {
            let path = inventory_path(&args.select, args.in_lab)?;
            let opts = usage::Options {
                at: args.at,
                json: args.json,
                csv: args.csv,
                limit: args.limit,
            };
            usage::run(&path, &opts)
        }
        Command::Inventory(args) => {
            let inventory = load_inventory(&args.select)?;
            hosts::show_inventory(&inventory, args.host.as_deref(), &args.extra)
        }
        Command::Hosts(cli::HostsCommand::Trust(args)) => {
            let path = inventory_path(&args.select, args.in_lab)?;
            hosts::trust(&path, &args.host, args.fingerprint.as_deref())
        }
        Command::Onboard(args) => {
            let opts = onboard::Options {
                name: args.name,
                address: args.address,
                fingerprint: args.fingerprint,
                roles: args.roles,
                groups: args.groups,
                password_stdin: args.password_stdin,
                yes: args.yes,
                confirm_timeout: args.confirm_timeout,
            };
            onboard::run(&args.inventory, &opts)
        }
        Command::Demo(args) => demo::run(&args.select),
    }
}

/// Logs on stderr: `-v` info, `-vv` debug; `CLOU_LOG` sets levels per
/// target instead (`clou=debug,russh=info`, `RUST_LOG`'s plain form).
fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let filter = std::env::var("CLOU_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(level));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .without_time(),
        )
        .with(filter)
        .try_init();
}

/// The lab an inventory selects.
pub fn select_lab(select: &LabSelect) -> anyhow::Result<Lab> {
    let name = select
        .lab
        .clone()
        .unwrap_or_else(|| Lab::name_for(&select.inventory));
    Ok(Lab::new(&Lab::default_root(), &name)?)
}

/// The inventory file to use: the one given, or with `--in-lab` the
/// overlay its lab wrote (same hosts at lab addresses, lab keys).
pub fn inventory_path(select: &LabSelect, in_lab: bool) -> anyhow::Result<std::path::PathBuf> {
    if !in_lab {
        return Ok(select.inventory.clone());
    }
    let lab = select_lab(select)?;
    let path = lab.inventory_path();
    if !path.exists() {
        anyhow::bail!(
            "lab {} has not been booted: {} does not exist\n  hint: run `clou lab up --inventory {}` first",
            lab.name,
            path.display(),
            select.inventory.display()
        );
    }
    Ok(path)
}

fn load_inventory(select: &LabSelect) -> anyhow::Result<Inventory> {
    Inventory::load(&select.inventory).with_context(|| {
        format!(
            "cannot use the inventory {}\n  hint: pass --inventory FILE, or run clou from the repository root",
            select.inventory.display()
        )
    })
}

fn run_lab(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Up(args) => {
            let inventory = load_inventory(&args.select)?;
            let lab = select_lab(&args.select)?;
            let opts = lab::UpOptions {
                release: args.release,
                subnet: args.subnet,
                fresh: args.fresh,
                timeout: Duration::from_secs(args.timeout),
            };
            let started = std::time::Instant::now();
            let state = lab
                .up(&inventory, &opts)
                .with_context(|| format!("lab {} did not come up", lab.name))?;
            eprintln!(
                "lab {}: {} hosts up on {} in {:.1} s",
                lab.name,
                state.hosts.len(),
                state.subnet,
                started.elapsed().as_secs_f64()
            );
            print_status(&lab, false)?;
            eprintln!("lab inventory: {}", lab.inventory_path().display());
            Ok(ExitCode::from(EXIT_OK))
        }
        LabCommand::Down(args) => {
            let lab = select_lab(&args.select)?;
            lab.down(args.purge)
                .with_context(|| format!("lab {} did not stop cleanly", lab.name))?;
            eprintln!(
                "lab {}: down{}",
                lab.name,
                if args.purge { ", hosts deleted" } else { "" }
            );
            Ok(ExitCode::from(EXIT_OK))
        }
        LabCommand::Status(args) => {
            let lab = select_lab(&args.select)?;
            print_status(&lab, args.json)
        }
        LabCommand::Ssh(args) => {
            let lab = select_lab(&args.select)?;
            let host = lab.host(&args.host)?;
            let mut ssh = lab.ssh_command(host.address);
            if args.command.is_empty() {
                ssh.arg("-t");
            } else {
                // ssh joins its arguments with spaces for the remote shell:
                // one argument is a command line, several are quoted so the
                // host runs exactly that argv.
                let line = match args.command.as_slice() {
                    [one] => one.clone(),
                    many => many
                        .iter()
                        .map(|a| process::shell_quote(a))
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                ssh.arg("--").arg(line);
            }
            // Hand the terminal over to ssh; exec only returns on failure.
            let err = ssh.exec();
            Err(anyhow::Error::new(err).context("cannot run ssh"))
        }
    }
}

fn print_status(lab: &Lab, json: bool) -> anyhow::Result<ExitCode> {
    let rows = lab.status()?;
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
    } else {
        println!(
            "{:<16} {:<10} {:<15} {:<5} SSH",
            "HOST", "RELEASE", "ADDRESS", "STATE"
        );
        for r in &rows {
            println!(
                "{:<16} {:<10} {:<15} {:<5} {}",
                r.name,
                r.release,
                r.address.to_string(),
                if r.running { "up" } else { "down" },
                if r.ssh { "answers" } else { "-" }
            );
        }
        for r in &rows {
            if let Some(password) = &r.spare_password {
                println!(
                    "{} is a spare, as a provider delivers it: root's password is in {}; \
                     take it in with `clou onboard {} --address {}`",
                    r.name,
                    password.display(),
                    r.name,
                    r.address
                );
            }
        }
    }
    if !json {
        let next = lab::artifacts::rehearsals(&lab.repo_dir());
        if !next.is_empty() {
            println!(
                "to rehearse an application upgrade, the lab packed each stand-in's next release:"
            );
        }
        for artifact in next {
            let pins: Vec<String> = artifact
                .vars()
                .into_iter()
                .map(|(k, v)| format!("-e {k}={}", v.as_str().unwrap_or_default()))
                .collect();
            println!("  clou apply --in-lab {}", pins.join(" "));
        }
    }
    let all_up = rows.iter().all(|r| r.running && r.ssh);
    Ok(ExitCode::from(if all_up {
        EXIT_OK
    } else {
        EXIT_HOSTS_FAILED
    }))
}
