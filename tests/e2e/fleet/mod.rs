//! The Girofle fleet itself: `inventory/girofle.yaml` booted as a lab of
//! eight hosts, every role converged, and each service checked over ssh
//! (vhosts answer, pools and databases exist, mail is relayed, backups
//! land on the backup host, the firewall lets in what the roles declare).
//!
//! This lab is separate from the three-release one (its own name and
//! subnet). It is booted and converged in the background while the
//! three-release tests run, checked once they are done, and torn down at
//! the end.

use std::sync::{Condvar, Mutex, OnceLock};

use clou_tests::{Applied, TestLab};
use libtest_mimic::Failed;

/// A Nextcloud release rolled out tenant by tenant, one rolled back.
mod app_upgrade;
/// Sites, php pools, databases and applications per tenant.
mod apps;
/// The backup server and its clients.
mod backup;
/// The base role's firewall, upgrades and time sync; the monitoring.
mod base;
/// Mattermost and Discourse on forums.
mod forums;
/// The outgoing relay and the mailing lists.
mod mail;
/// Prometheus and Alertmanager on web, scraping the fleet.
mod monitoring;
/// The ONLYOFFICE document server, and mailcow's domains.
mod office_mail;
/// BookStack and Paheko on web.
mod webapps;

type Test = fn() -> Result<(), Failed>;

/// Name and subnet of the fleet lab (the demo's own uses the inventory's).
pub const NAME: &str = "clou-fleet";
pub const SUBNET: &str = "10.96.0.0/24";

/// `CLOU_FLEET_INVENTORY`, `CLOU_FLEET_LAB` and `CLOU_FLEET_SUBNET` replace
/// the inventory, the lab name and the subnet: a role's author runs these
/// tests against a draft of the fleet while another lab is up.
/// `CLOU_FLEET_REUSE=1` keeps the hosts of a lab that is already up and
/// leaves it up at the end (the demo's: `CLOU_FLEET_LAB=girofle
/// CLOU_FLEET_SUBNET=10.99.0.0/24`).
fn setting(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

static FLEET: OnceLock<Result<TestLab, String>> = OnceLock::new();

/// The fleet lab, booted and converged on first use.
pub fn fleet() -> Result<&'static TestLab, Failed> {
    let lab = FLEET.get_or_init(|| {
        clou_tests::require_lab()?;
        let inventory = setting("CLOU_FLEET_INVENTORY", "inventory/girofle.yaml");
        let lab = TestLab::new(&inventory, &setting("CLOU_FLEET_LAB", NAME))?;
        let subnet = setting("CLOU_FLEET_SUBNET", SUBNET);
        // CLOU_FLEET_REUSE=1 keeps the hosts of a lab already up (a role's
        // author iterating); the default starts from fresh hosts.
        let mut args = vec!["lab", "up", "--subnet", &subnet];
        if setting("CLOU_FLEET_REUSE", "0") != "1" {
            args.push("--fresh");
        }
        let out = lab.clou(&args);
        if !out.status.success() {
            return Err(format!(
                "`clou lab up` of the fleet failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(lab)
    });
    lab.as_ref().map_err(|e| Failed::from(e.as_str()))
}

/// Whether the fleet lab was booted (so that it is torn down), unless it
/// was a reused one, which stays up as it was found.
pub fn booted() -> Option<&'static TestLab> {
    if setting("CLOU_FLEET_REUSE", "0") == "1" {
        return None;
    }
    FLEET.get().and_then(|r| r.as_ref().ok())
}

/// `curl` on `host` itself, through nginx and TLS, for `domain` (`extra`:
/// more curl arguments): the status code (0 when nothing answered, as for a
/// name no vhost serves) and the body.
pub fn https(host: &str, domain: &str, path: &str, extra: &str) -> Result<(u16, String), Failed> {
    let out = fleet()?.ssh(
        host,
        &format!(
            "curl -sk --max-time 20 -w '\\n%{{http_code}}' {extra} --resolve {domain}:443:127.0.0.1 https://{domain}{path}"
        ),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
}

/// `domain`'s vhost on `host` answers 200 with the tenant's name as its
/// page's heading (what every stand-in and the site show).
pub fn serves_tenant(host: &str, domain: &str, name: &str) -> Result<(), Failed> {
    let (code, body) = https(host, domain, "/", "")?;
    assert_eq!(code, 200, "{domain}: {body}");
    assert!(
        body.contains(&format!("<h1>{name}</h1>")),
        "{domain}: {body}"
    );
    Ok(())
}

/// The tenant's php-fpm pool on `host`: its file runs it as `APP-NAME` and
/// listens on its socket, which only nginx (www-data) may use, and a
/// worker of that user is running (it served the request before).
pub fn check_pool(host: &str, app: &str, name: &str) -> Result<(), Failed> {
    let user = format!("{app}-{name}");
    let pool = fleet()?.ssh_ok(
        host,
        &format!(
            "grep -E '^(user|listen) ' /etc/php/8.2/fpm/pool.d/{user}.conf; stat -c '%U %a' /run/php/{user}.sock; ps -o user= -C php-fpm8.2 | grep -cx {user}"
        ),
    );
    assert!(pool.contains(&format!("user = {user}")), "{pool}");
    assert!(
        pool.contains(&format!("listen = /run/php/{user}.sock")),
        "{pool}"
    );
    assert!(pool.contains("www-data 660"), "{pool}");
    let workers: u32 = pool.lines().last().unwrap_or("0").trim().parse()?;
    assert!(workers >= 1, "{user} served the request: {pool}");
    Ok(())
}

/// `clou usage --in-lab --json` on the fleet lab, as a user runs it.
pub fn usage_table() -> Result<serde_json::Value, Failed> {
    let out = fleet()?.clou(&["usage", "--in-lab", "--json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The fleet's first apply, run once: in the background while the
/// three-release tests run (see [`converge_in_background`]), or else by the
/// first test that needs it.
static FIRST: OnceLock<Result<Applied, String>> = OnceLock::new();

/// Whether the background converge may start: set once the three-release
/// tests' own converges are done (see [`let_converge`]).
static GO: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// The fleet lab booted, and the result of its first apply.
fn first_apply() -> Result<(&'static TestLab, &'static Applied), Failed> {
    let first = FIRST.get_or_init(|| {
        let lab = fleet().map_err(|e| e.message().unwrap_or("the fleet lab failed").to_owned())?;
        Ok(lab.apply(&["--json"]))
    });
    match first {
        Ok(applied) => Ok((fleet()?, applied)),
        Err(e) => Err(Failed::from(e.as_str())),
    }
}

/// Boots the fleet lab at once, and converges it on a thread of its own
/// once [`let_converge`] is called. Its first converge (hundreds of
/// packages on each of eight hosts, about six minutes here, both
/// processors busy) is the suite's longest step; after their own first
/// converge, the three-release tests leave the processors about half idle:
/// the two overlap there (run alongside the three-release converges, both
/// only slowed each other). The fleet tests then find it done, or wait.
pub fn converge_in_background() {
    std::thread::spawn(|| {
        let start = std::time::Instant::now();
        let _ = fleet();
        let (go, signal) = &GO;
        let mut may = go.lock().unwrap_or_else(|e| e.into_inner());
        while !*may {
            may = signal.wait(may).unwrap_or_else(|e| e.into_inner());
        }
        drop(may);
        let _ = first_apply();
        eprintln!(
            "e2e-time {:7.1} s  fleet: boot and first converge, in the background",
            start.elapsed().as_secs_f64()
        );
    });
}

/// Lets the background converge start.
pub fn let_converge() {
    let (go, signal) = &GO;
    *go.lock().unwrap_or_else(|e| e.into_inner()) = true;
    signal.notify_all();
}

/// Every role on the eight hosts converges, then stays converged.
fn converges_then_changes_nothing() -> Result<(), Failed> {
    let (lab, first) = first_apply()?;
    first.expect_code(0);
    let second = lab.apply(&["--json"]);
    second.expect_code(0);
    for host in lab.hosts() {
        let summary = second.host(&host);
        if summary["changed"] != 0 {
            return Err(format!("{host}: the second apply changed something: {summary}").into());
        }
    }
    Ok(())
}

/// The fleet tests, in order: converge first, then each area's checks.
pub fn tests() -> Vec<(&'static str, Test)> {
    let mut tests: Vec<(&'static str, Test)> = vec![(
        "fleet::converges_then_changes_nothing",
        converges_then_changes_nothing,
    )];
    tests.extend_from_slice(base::TESTS);
    tests.extend_from_slice(apps::TESTS);
    tests.extend_from_slice(webapps::TESTS);
    tests.extend_from_slice(forums::TESTS);
    tests.extend_from_slice(office_mail::TESTS);
    tests.extend_from_slice(mail::TESTS);
    tests.extend_from_slice(backup::TESTS);
    tests.extend_from_slice(monitoring::TESTS);
    // Last: the fleet then runs the next Nextcloud release.
    tests.extend_from_slice(app_upgrade::TESTS);
    tests
}
