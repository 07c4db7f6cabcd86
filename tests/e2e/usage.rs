//! `clou usage` on the lab: the table counts the test application's
//! tenants, their users and their data as the hosts themselves see them,
//! keeps a dated snapshot, and rebuilds a day from the hosts' own
//! snapshots when the local one is gone.

use libtest_mimic::Failed;
use serde_json::Value;

use crate::lab;

/// In order, after apply's tests (the hosts run the base and e2e roles).
pub const TESTS: &[(&str, crate::Test)] = &[(
    "usage::the_table_matches_the_hosts_and_days_are_kept",
    the_table_matches_the_hosts_and_days_are_kept,
)];

fn usage_json(args: &[&str]) -> Result<Value, Failed> {
    let lab = lab()?;
    let mut full = vec!["usage", "--in-lab", "--json"];
    full.extend_from_slice(args);
    let out = lab.clou(&full);
    if !out.status.success() {
        return Err(format!(
            "clou {} failed ({}):\n{}",
            full.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `du` on the host: bytes on disk under the paths, each inode once.
fn du(host: &str, paths: &str) -> Result<u64, Failed> {
    let out = lab()?.ssh_ok(
        host,
        &format!("du -sc --block-size=1 {paths} | tail -n1 | cut -f1"),
    );
    Ok(out.trim().parse()?)
}

fn the_table_matches_the_hosts_and_days_are_kept() -> Result<(), Failed> {
    let lab = lab()?;
    lab.apply(&["--json"]).expect_code(0);

    let table = usage_json(&[])?;
    let row = table["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["service"] == "E2E app"))
        .ok_or_else(|| format!("no E2E app row in {table}"))?
        .clone();
    // ecole and amap are active, ancien is archived: two accounts; the
    // archived tenant's users and data still count.
    assert_eq!(row["accounts"], 2, "{table}");
    let users_on_hosts: u64 = lab
        .ssh_ok(
            "alpha",
            "cat /srv/e2e/ecole/users /srv/e2e/ancien/users | grep -c .",
        )
        .trim()
        .parse::<u64>()?
        + lab
            .ssh_ok("bravo", "grep -c . /srv/e2e/amap/users")
            .trim()
            .parse::<u64>()?;
    assert_eq!(users_on_hosts, 6);
    assert_eq!(row["users"], users_on_hosts, "{table}");
    let data = du("alpha", "/srv/e2e/ecole /srv/e2e/ancien")? + du("bravo", "/srv/e2e/amap")?;
    assert!(data >= 6 * 1024 * 1024, "{data}");
    assert_eq!(row["data_bytes"], data, "{table}");
    assert_eq!(table["total"]["accounts"], 2);

    // The day is kept beside the lab's inventory, and on each host.
    let date = table["date"].as_str().ok_or("no date")?.to_owned();
    let kept = lab.lab.dir().join("usage").join(format!("{date}.json"));
    assert!(kept.is_file(), "no snapshot {}", kept.display());
    let mode = lab.ssh_ok(
        "alpha",
        &format!("stat -c %a /var/lib/clou/usage/{date}.json"),
    );
    assert_eq!(mode.trim(), "600");
    // charlie has no tenant: nothing to measure, nothing kept.
    let none = lab.ssh(
        "charlie",
        &format!("test -e /var/lib/clou/usage/{date}.json"),
    );
    assert!(
        !none.status.success(),
        "charlie has no tenant but kept a snapshot"
    );

    // Without the local snapshot, the day comes back from the hosts'.
    std::fs::remove_file(&kept)?;
    let again = usage_json(&["--at", &date])?;
    assert_eq!(again["rows"], table["rows"]);
    assert!(kept.is_file(), "the rebuilt day was not kept");

    // CSV for the spreadsheet: the same figures.
    let csv = lab.clou_ok(&["usage", "--in-lab", "--csv", "--at", &date]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("service,accounts,users,data_gb"));
    assert!(
        csv.contains(&format!("E2E app,2,6,{:.2}\n", data as f64 / 1e9)),
        "{csv}"
    );
    assert!(
        csv.lines()
            .last()
            .is_some_and(|l| l.starts_with("Total,2,6,")),
        "{csv}"
    );

    // A day nobody measured is an error that says which days exist.
    let out = lab.clou(&["usage", "--in-lab", "--at", "1999-01-01"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no usage snapshot of 1999-01-01"), "{err}");
    assert!(err.contains(&date), "{err}");
    Ok(())
}
