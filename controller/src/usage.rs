//! `clou usage`: the association's usage table (accounts, users and data
//! per service, and a total), for today or any past day with a snapshot.
//!
//! Accounts are the active tenants of each application; users and data are
//! measured on the hosts by their agents, from each application role's
//! `usage:` section. Every table printed from fresh measures is kept as
//! `usage/YYYY-MM-DD.json` beside the inventory (commit it: every admin
//! then sees the history), and every host keeps its own daily snapshot
//! (the agent's `clou-usage.timer`), so `--at DATE` can rebuild a day that
//! nobody printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clou_protocol::{Message, UsageReport, UsageRequest};
use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;
use crate::plan::Planner;
use crate::role::Roles;

/// What `clou usage` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `YYYY-MM-DD`: that day's snapshot instead of measuring now.
    pub at: Option<String>,
    pub json: bool,
    pub csv: bool,
    pub limit: Option<String>,
}

/// One day's measures of the whole fleet, as kept in `usage/DATE.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub date: String,
    /// Each host's report.
    pub hosts: BTreeMap<String, UsageReport>,
    /// Hosts that could not be measured, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub missing: BTreeMap<String, String>,
}

/// One line of the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    pub service: String,
    /// Active tenants.
    pub accounts: u64,
    /// Sum of the tenants' users; `None` when some tenant's count is unknown.
    pub users: Option<u64>,
    pub data_bytes: u64,
}

/// Runs `clou usage`: exit 0 when every host answered.
pub fn run(inventory_path: &Path, opts: &Options) -> anyhow::Result<ExitCode> {
    let inventory = Inventory::load(inventory_path)
        .with_context(|| format!("cannot use the inventory {}", inventory_path.display()))?;
    let dir = snapshots_dir(&inventory);
    let snapshot = match &opts.at {
        Some(date) => {
            check_date(date)?;
            match load(&dir, date)? {
                Some(snapshot) => snapshot,
                None => {
                    let snapshot = gather(&inventory, opts, Some(date))?;
                    if snapshot.hosts.is_empty() {
                        anyhow::bail!(
                            "no usage snapshot of {date}: not in {} and on no host\n  hint: snapshots exist for {}",
                            dir.display(),
                            list(&dir).join(", ")
                        );
                    }
                    save(&dir, &snapshot)?;
                    snapshot
                }
            }
        }
        None => {
            let snapshot = gather(&inventory, opts, None)?;
            save(&dir, &snapshot)?;
            snapshot
        }
    };
    let rows = table(&snapshot);
    if opts.json {
        println!(
            "{}",
            serde_json::json!({"date": snapshot.date, "rows": rows, "total": total(&rows), "missing": snapshot.missing})
        );
    } else if opts.csv {
        print!("{}", csv(&rows));
    } else {
        println!(
            "Usage on {} (snapshot {})",
            snapshot.date,
            dir.join(format!("{}.json", snapshot.date)).display()
        );
        print!("{}", text(&rows));
        for (host, why) in &snapshot.missing {
            println!("{host}: not measured: {why}");
        }
    }
    Ok(ExitCode::from(if snapshot.missing.is_empty() {
        crate::EXIT_OK
    } else {
        crate::EXIT_HOSTS_FAILED
    }))
}

/// Where snapshots are kept: `usage/` beside the inventory, or in the lab's
/// own directory for a rehearsal.
pub fn snapshots_dir(inventory: &Inventory) -> PathBuf {
    match &inventory.lab_dir {
        Some(dir) => dir.join("usage"),
        None => inventory
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("usage"),
    }
}

/// Asks the hosts for their measures (now, or their snapshot of `date`).
fn gather(inventory: &Inventory, opts: &Options, date: Option<&str>) -> anyhow::Result<Snapshot> {
    let hosts = crate::apply::select_hosts(inventory, opts.limit.as_deref())?;
    let roles = Roles::load(&inventory.roles_path)?;
    let planner = Planner::new(inventory, &roles)?;
    let none = BTreeMap::new();
    let mut requests = BTreeMap::new();
    let mut asked = Vec::new();
    for host in &hosts {
        let vars = planner.host_vars(host, &none, None)?;
        let items: Vec<clou_protocol::UsageItem> = vars
            .vars
            .get("host")
            .and_then(|h| h.value.get("usage"))
            .map(|u| serde_json::from_value(u.clone()))
            .transpose()?
            .unwrap_or_default();
        // Hosts without applications have nothing to measure.
        if items.is_empty() {
            continue;
        }
        requests.insert(
            host.name.clone(),
            Message::Usage(UsageRequest {
                items,
                date: date.map(str::to_owned),
            }),
        );
        asked.push(host.clone());
    }
    let answers = crate::remote::ask_all(inventory, &asked, requests, |m| {
        matches!(m, Message::UsageReport(_))
    })?;
    let mut snapshot = Snapshot {
        date: date.map(str::to_owned).unwrap_or_else(today),
        hosts: BTreeMap::new(),
        missing: BTreeMap::new(),
    };
    for (host, answer) in answers {
        match answer {
            Ok(Message::UsageReport(report)) => match &report.missing {
                Some(why) => {
                    snapshot.missing.insert(host, why.clone());
                }
                None => {
                    if date.is_none() {
                        snapshot.date = report.date.clone();
                    }
                    snapshot.hosts.insert(host, report);
                }
            },
            Ok(_) => {
                snapshot
                    .missing
                    .insert(host, "the agent sent no usage report".into());
            }
            Err(why) => {
                snapshot.missing.insert(host, why);
            }
        }
    }
    Ok(snapshot)
}

/// The table of a snapshot: one row per service, in name order.
pub fn table(snapshot: &Snapshot) -> Vec<Row> {
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for report in snapshot.hosts.values() {
        for m in &report.measures {
            let row = rows.entry(&m.service).or_insert_with(|| Row {
                service: m.service.clone(),
                users: Some(0),
                ..Row::default()
            });
            if m.active {
                row.accounts += 1;
            }
            row.users = match (row.users, m.users) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            row.data_bytes += m.data_bytes;
        }
    }
    rows.into_values().collect()
}

/// The "Total" row.
pub fn total(rows: &[Row]) -> Row {
    Row {
        service: "Total".into(),
        accounts: rows.iter().map(|r| r.accounts).sum(),
        users: rows.iter().map(|r| r.users).sum(),
        data_bytes: rows.iter().map(|r| r.data_bytes).sum(),
    }
}

/// Gigabytes (10^9 bytes, as the yearly report counts), two decimals.
fn gb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e9)
}

fn users(row: &Row) -> String {
    row.users.map_or("?".to_owned(), |u| u.to_string())
}

pub fn text(rows: &[Row]) -> String {
    let total = total(rows);
    let width = rows
        .iter()
        .map(|r| r.service.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    let mut out = format!(
        "{:<width$}  {:>8}  {:>8}  {:>10}\n",
        "SERVICE", "ACCOUNTS", "USERS", "DATA (GB)"
    );
    for row in rows.iter().chain(std::iter::once(&total)) {
        out.push_str(&format!(
            "{:<width$}  {:>8}  {:>8}  {:>10}\n",
            row.service,
            row.accounts,
            users(row),
            gb(row.data_bytes)
        ));
    }
    out
}

pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("service,accounts,users,data_gb\n");
    for row in rows.iter().chain(std::iter::once(&total(rows))) {
        let service = if row.service.contains([',', '"']) {
            format!("\"{}\"", row.service.replace('"', "\"\""))
        } else {
            row.service.clone()
        };
        out.push_str(&format!(
            "{service},{},{},{}\n",
            row.accounts,
            users(row),
            gb(row.data_bytes)
        ));
    }
    out
}

fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    civil_date(secs.div_euclid(86_400))
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn check_date(date: &str) -> anyhow::Result<()> {
    let ok = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
        && date[5..7]
            .parse::<u32>()
            .is_ok_and(|m| (1..=12).contains(&m))
        && date[8..10]
            .parse::<u32>()
            .is_ok_and(|d| (1..=31).contains(&d));
    if !ok {
        anyhow::bail!("--at {date:?}: write the day as YYYY-MM-DD, e.g. --at 2023-12-31");
    }
    Ok(())
}

fn load(dir: &Path, date: &str) -> anyhow::Result<Option<Snapshot>> {
    let path = dir.join(format!("{date}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let snapshot = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a usage snapshot", path.display()))?;
    Ok(Some(snapshot))
}

/// Writes `DATE.json` atomically (a later run of the same day replaces it).
fn save(dir: &Path, snapshot: &Snapshot) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", snapshot.date));
    let tmp = dir.join(format!(".{}.json.tmp", snapshot.date));
    let mut text = serde_json::to_string_pretty(snapshot)?;
    text.push('\n');
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The days with a snapshot in `dir`, oldest first.
fn list(dir: &Path) -> Vec<String> {
    let mut days: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_owned)
        })
        .filter(|d| check_date(d).is_ok())
        .collect();
    days.sort();
    if days.is_empty() {
        days.push("no day yet".into());
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;
    use clou_protocol::UsageMeasure;

    fn measure(
        service: &str,
        tenant: &str,
        active: bool,
        users: Option<u64>,
        bytes: u64,
    ) -> UsageMeasure {
        UsageMeasure {
            service: service.into(),
            app: service.to_lowercase(),
            tenant: tenant.into(),
            active,
            users,
            data_bytes: bytes,
            errors: vec![],
        }
    }

    fn snapshot() -> Snapshot {
        let report = |measures| UsageReport {
            hostname: "h".into(),
            taken_at: "2023-12-31T23:00:00Z".into(),
            date: "2023-12-31".into(),
            measures,
            missing: None,
        };
        Snapshot {
            date: "2023-12-31".into(),
            hosts: [
                (
                    "nextcloud-data".to_owned(),
                    report(vec![
                        measure("Nextcloud", "amap", true, Some(40), 1_500_000_000),
                        measure("Nextcloud", "old", false, Some(2), 500_000_000),
                    ]),
                ),
                (
                    "web".to_owned(),
                    report(vec![
                        measure("Paheko", "ecole", true, Some(3), 10_000_000),
                        measure("Bookstack", "wiki", true, None, 0),
                    ]),
                ),
            ]
            .into(),
            missing: BTreeMap::new(),
        }
    }

    #[test]
    fn the_table_counts_active_accounts_and_all_data() {
        let rows = table(&snapshot());
        let names: Vec<&str> = rows.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(names, ["Bookstack", "Nextcloud", "Paheko"]);
        assert_eq!(
            rows[1],
            Row {
                service: "Nextcloud".into(),
                accounts: 1,
                users: Some(42),
                data_bytes: 2_000_000_000
            }
        );
        let total = total(&rows);
        assert_eq!(total.accounts, 3);
        assert_eq!(total.users, None, "one service's users are unknown");
        assert_eq!(total.data_bytes, 2_010_000_000);
        let text = text(&rows);
        assert!(
            text.contains("Nextcloud         1        42        2.00"),
            "{text}"
        );
        assert!(
            text.contains("Bookstack         1         ?        0.00"),
            "{text}"
        );
        assert_eq!(csv(&rows).lines().last(), Some("Total,3,?,2.01"));
    }

    #[test]
    fn snapshots_are_kept_per_day_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &snapshot()).unwrap();
        assert_eq!(load(dir.path(), "2023-12-31").unwrap(), Some(snapshot()));
        assert_eq!(load(dir.path(), "2024-01-01").unwrap(), None);
        assert_eq!(list(dir.path()), ["2023-12-31"]);
    }

    #[test]
    fn dates_are_checked_and_computed() {
        assert!(check_date("2023-12-31").is_ok());
        for bad in ["2023-13-01", "31/12/2023", "2023-12-3", "../etc/pa"] {
            assert!(check_date(bad).is_err(), "{bad}");
        }
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_722), "2023-12-31");
        assert_eq!(civil_date(20_782), "2026-11-25");
    }
}
