//! `clou inventory` (what the inventory says) and `clou hosts trust`
//! (recording a host key the admin has checked).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::inventory::Inventory;
use crate::plan::Planner;
use crate::role::Roles;
use crate::ssh::{self, Target, config::SshConfig, known_hosts};

/// Lists hosts and groups, or one host's roles and vars with their origin.
pub fn show_inventory(
    inventory: &Inventory,
    host: Option<&str>,
    extra: &[String],
) -> anyhow::Result<ExitCode> {
    let Some(name) = host else {
        println!("{:<16} {:<10} {:<22} GROUPS", "HOST", "RELEASE", "ADDRESS");
        for h in &inventory.hosts {
            println!(
                "{:<16} {:<10} {:<22} {}",
                h.name,
                h.release,
                format!("{}:{}", h.address, h.port),
                inventory.groups_of(&h.name).join(", ")
            );
        }
        println!();
        println!("{:<16} {:<40} ROLES", "GROUP", "HOSTS");
        for g in inventory.groups.values() {
            println!(
                "{:<16} {:<40} {}",
                g.name,
                inventory
                    .group_hosts(&g.name)
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", "),
                g.roles.join(", ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let host = inventory.host(name).with_context(|| {
        format!(
            "no host {name:?} in {}; hosts are {}",
            inventory.path.display(),
            inventory
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let roles = Roles::load(&inventory.roles_path)?;
    let extra = crate::vars::parse_extra(extra).map_err(anyhow::Error::msg)?;
    let planner = Planner::new(inventory, &roles)?;
    let hv = planner.host_vars(host, &extra, None)?;
    println!(
        "host     {} ({}:{}, {})",
        host.name, host.address, host.port, host.release
    );
    println!("groups   {}", inventory.groups_of(&host.name).join(", "));
    println!("roles    {}", hv.roles.join(", "));
    println!();
    let width = hv.vars.keys().map(String::len).max().unwrap_or(8);
    for (key, var) in &hv.vars {
        if matches!(var.origin, crate::vars::Origin::Clou) {
            continue;
        }
        // The key every derived secret comes from is never printed.
        let value = if key == crate::template::SECRET_KEY_VAR {
            "(secret, not shown)".to_owned()
        } else {
            serde_json::to_string(&var.value)?
        };
        println!("{key:<width$}  {value}    # {}", var.origin);
    }
    Ok(ExitCode::SUCCESS)
}

/// Records `host`'s key if it matches the fingerprint the admin checked.
pub fn trust(
    inventory_path: &Path,
    host: &str,
    fingerprint: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let inventory = Inventory::load(inventory_path)?;
    let entry = inventory
        .host(host)
        .with_context(|| format!("no host {host:?} in {}", inventory.path.display()))?;
    let target = Target::for_host(&inventory, entry, &SshConfig::load_default());
    let keys = known_hosts::HostKeys::for_inventory(&inventory);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let key = runtime.block_on(ssh::fetch_host_key(
        &target,
        std::sync::Arc::new(keys.clone()),
    ))?;
    let offered = known_hosts::fingerprint(&key);
    let Some(fingerprint) = fingerprint else {
        println!(
            "{host} ({}:{}) offers {} {offered}",
            target.address,
            target.port,
            key.algorithm()
        );
        eprintln!(
            "nothing recorded. Check this fingerprint on the server's console \
             (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run\n  \
             clou hosts trust {host} --fingerprint {offered}"
        );
        return Ok(ExitCode::from(crate::EXIT_HOSTS_FAILED));
    };
    if offered != fingerprint {
        anyhow::bail!(
            "{host} ({}) offers {offered}, not {fingerprint}: nothing recorded\n  \
             hint: check again which key the server really has before trusting anything",
            target.address
        );
    }
    known_hosts::trust(&keys.trust_file, &target.address, target.port, &key)
        .with_context(|| format!("cannot write {}", keys.trust_file.display()))?;
    eprintln!(
        "{host}: recorded {offered} for {} in {}",
        target.address,
        keys.trust_file.display()
    );
    Ok(ExitCode::SUCCESS)
}
