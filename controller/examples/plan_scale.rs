//! How planning scales with tenants: the Girofle inventory with N
//! generated tenants of one application (default: 126 Nextcloud
//! instances, the association's real count), every host's plan built as
//! `clou apply` builds it, timed, with the process's peak memory.
//!
//! `cargo run --release -p clou --example plan_scale -- [APP] [N] [RUNS]`

use std::collections::BTreeMap;
use std::time::Instant;

use clou::inventory::Inventory;
use clou::inventory::tenant::Tenant;
use clou::plan::Planner;
use clou::role::Roles;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let app = args.first().map_or("nextcloud", String::as_str).to_owned();
    let count: usize = args.get(1).map_or(Ok(126), |n| n.parse())?;
    let runs: usize = args.get(2).map_or(Ok(5), |n| n.parse())?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut inventory = Inventory::load(&root.join("inventory/girofle.yaml"))?;
    // Plans need the derived passwords' key; production's is a secret.
    inventory.lab_vars.insert(
        "secret_key".into(),
        "plan-scale-example-key-0123456789".into(),
    );
    let template = inventory
        .tenants
        .get(&app)
        .and_then(|t| t.first())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the inventory has no {app} tenant to copy"))?;
    let tenants: Vec<Tenant> = (0..count)
        .map(|i| Tenant {
            name: format!("collectif-{i:03}"),
            domain: format!("cloud.collectif-{i:03}.example.org"),
            ..template.clone()
        })
        .collect();
    inventory.tenants.insert(app.clone(), tenants);
    let roles = Roles::load(&inventory.roles_path)?;
    let extra = BTreeMap::new();
    let mut times = Vec::new();
    let mut resources = 0;
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let planner = Planner::new(&inventory, &roles)?;
        resources = 0;
        bytes = 0;
        for host in &inventory.hosts {
            let plan = planner.plan(host, &extra, None)?;
            resources += plan.iter().map(|r| r.resources.len()).sum::<usize>();
            bytes += serde_json::to_vec(&plan)?.len();
        }
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let peak_kb = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!(
        "plans of {} hosts with {count} {app} tenants: {resources} resources, {:.1} MB of plan JSON; \
         median {:.3} s (min {:.3}, max {:.3}, n={runs}); controller peak RSS {:.1} MB",
        inventory.hosts.len(),
        bytes as f64 / 1e6,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        peak_kb as f64 / 1024.0
    );
    Ok(())
}
