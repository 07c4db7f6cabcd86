//! The monitoring role on web: Prometheus listens on loopback only, scrapes
//! every host of the fleet through its firewall and finds each one up, its
//! generated rules and configuration pass promtool (and Alertmanager's
//! amtool), its alerts follow the findings of clou's check as the agent
//! writes them, and node_exporter lets in the monitoring group only.
//!
//! Everything is checked on the hosts themselves, over ssh: the HTTP
//! requests run with python3 (on every host: unattended-upgrades needs it),
//! so no test depends on curl being installed by some other role.

use std::time::{Duration, Instant};

use clou_tests::TestLab;
use libtest_mimic::Failed;
use serde_json::Value;

use super::{Test, fleet};

pub const TESTS: &[(&str, Test)] = &[
    (
        "fleet::monitoring::prometheus_and_alertmanager_listen_on_loopback_only",
        prometheus_and_alertmanager_listen_on_loopback_only,
    ),
    (
        "fleet::monitoring::every_host_is_scraped_and_up",
        every_host_is_scraped_and_up,
    ),
    (
        "fleet::monitoring::rules_pass_promtool_and_are_loaded",
        rules_pass_promtool_and_are_loaded,
    ),
    (
        "fleet::monitoring::alerts_follow_clou_health_findings",
        alerts_follow_clou_health_findings,
    ),
    (
        "fleet::monitoring::node_exporter_lets_in_the_monitoring_group_only",
        node_exporter_lets_in_the_monitoring_group_only,
    ),
    (
        "fleet::monitoring::every_active_instance_answers_its_page_check",
        every_active_instance_answers_its_page_check,
    ),
];

/// The monitoring host (the inventory's `monitoring` group).
const MONITOR: &str = "web";

/// How long Prometheus may take to scrape a target after a (re)start: two
/// of production's scrape intervals (30 s; the lab's is 5 s) and slack.
const PATIENCE: Duration = Duration::from_secs(75);

/// Runs a python3 script on `host` (as root) and returns its stdout.
fn python(lab: &TestLab, host: &str, script: &str) -> String {
    lab.ssh_ok(host, &format!("python3 - <<'PY'\n{script}\nPY"))
}

/// `GET http://127.0.0.1:9090PATH` on the monitoring host, as JSON.
fn prometheus_api(lab: &TestLab, path: &str) -> Result<Value, Failed> {
    let out = python(
        lab,
        MONITOR,
        &format!(
            "import sys, urllib.request\n\
             sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9090{path}', timeout=10).read().decode())"
        ),
    );
    let value: Value = serde_json::from_str(&out)
        .map_err(|e| format!("Prometheus answered {path} with no JSON ({e}): {out}"))?;
    if value["status"] != "success" {
        return Err(format!("Prometheus answered {path}: {value}").into());
    }
    Ok(value)
}

/// The result vector of an instant PromQL query on the monitoring host.
fn prometheus_query(lab: &TestLab, promql: &str) -> Result<Vec<Value>, Failed> {
    let out = python(
        lab,
        MONITOR,
        &format!(
            "import sys, urllib.parse, urllib.request\n\
             q = urllib.parse.urlencode({{'query': r'''{promql}'''}})\n\
             sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9090/api/v1/query?' + q, timeout=10).read().decode())"
        ),
    );
    let value: Value = serde_json::from_str(&out)
        .map_err(|e| format!("Prometheus answered {promql} with no JSON ({e}): {out}"))?;
    if value["status"] != "success" {
        return Err(format!("Prometheus answered {promql}: {value}").into());
    }
    Ok(value["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The `host` labels of a query's result.
fn hosts_in(result: &[Value]) -> Vec<String> {
    result
        .iter()
        .filter_map(|r| r["metric"]["host"].as_str().map(str::to_owned))
        .collect()
}

/// The other hosts of the fleet (not the monitoring one).
fn others(lab: &TestLab) -> Vec<String> {
    lab.hosts().into_iter().filter(|h| h != MONITOR).collect()
}

fn prometheus_and_alertmanager_listen_on_loopback_only() -> Result<(), Failed> {
    let lab = fleet()?;
    let active = lab.ssh_ok(
        MONITOR,
        "systemctl is-active prometheus.service prometheus-alertmanager.service",
    );
    assert_eq!(
        active.split_whitespace().collect::<Vec<_>>(),
        ["active", "active"]
    );
    // Every listening socket of each port is on 127.0.0.1, and there is one.
    for port in [9090, 9093] {
        let sockets = lab.ssh_ok(MONITOR, &format!("ss -Hltn 'sport = :{port}'"));
        let locals: Vec<&str> = sockets
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        assert!(!locals.is_empty(), "nothing listens on {port}:\n{sockets}");
        assert!(
            locals.iter().all(|a| *a == format!("127.0.0.1:{port}")),
            "port {port} must be on loopback only:\n{sockets}"
        );
    }
    // Prometheus answers there (and is ready).
    let ready = python(
        lab,
        MONITOR,
        "import urllib.request\n\
         print(urllib.request.urlopen('http://127.0.0.1:9090/-/ready', timeout=10).status)",
    );
    assert_eq!(ready.trim(), "200");
    // Not from another host: neither port is reachable from outside.
    let other = others(lab)
        .into_iter()
        .next()
        .ok_or("the fleet has no host besides the monitoring one")?;
    for port in [9090, 9093] {
        let outcome = connect(lab, &other, MONITOR, port);
        assert_ne!(outcome, "open", "{other} reaches {MONITOR}:{port}");
    }
    Ok(())
}

fn every_host_is_scraped_and_up() -> Result<(), Failed> {
    let lab = fleet()?;
    let hosts = lab.hosts();
    assert!(hosts.len() >= 2, "the fleet has hosts: {hosts:?}");
    // Up at a scrape made after this test started, not only at the last
    // one Prometheus remembers.
    let since: u64 = lab.ssh_ok(MONITOR, "date +%s").trim().parse()?;
    let fresh = format!("up{{job=\"node\"}} == 1 and timestamp(up{{job=\"node\"}}) > {since}");
    let started = Instant::now();
    loop {
        let targets = prometheus_api(lab, "/api/v1/targets?state=active")?;
        let active = targets["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let node: Vec<&Value> = active
            .iter()
            .filter(|t| t["labels"]["job"] == "node")
            .collect();
        let mut missing = Vec::new();
        for host in &hosts {
            match node.iter().find(|t| t["labels"]["host"] == host.as_str()) {
                Some(t) if t["health"] == "up" => {}
                Some(t) => missing.push(format!("{host}: {} ({})", t["health"], t["lastError"])),
                None => missing.push(format!("{host}: not a target")),
            }
        }
        let up_now = hosts_in(&prometheus_query(lab, &fresh)?);
        for host in &hosts {
            if !up_now.contains(host) {
                missing.push(format!(
                    "{host}: no successful scrape since the test started"
                ));
            }
        }
        // Exactly the fleet: one node target per host, none left over from
        // Debian's default configuration (localhost:9100).
        let extra: Vec<String> = node
            .iter()
            .filter(|t| !hosts.iter().any(|h| t["labels"]["host"] == h.as_str()))
            .map(|t| t["labels"].to_string())
            .collect();
        assert!(
            extra.is_empty(),
            "node targets outside the fleet: {extra:?}"
        );
        assert_eq!(
            node.len(),
            hosts.len(),
            "one node target per host: {node:?}"
        );
        if missing.is_empty() {
            // Each target is the host's inventory address, and is labelled
            // with its groups.
            for t in &node {
                let host = t["labels"]["host"].as_str().unwrap_or_default();
                let address = lab.lab.host(host).map_err(|e| e.to_string())?.address;
                assert_eq!(
                    t["labels"]["instance"],
                    format!("{address}:9100").as_str(),
                    "{host}"
                );
                let groups = t["labels"]["groups"].as_str().unwrap_or_default();
                assert!(groups.contains(",fleet,"), "{host}: groups {groups}");
            }
            let web = node
                .iter()
                .find(|t| t["labels"]["host"] == MONITOR)
                .ok_or("no web target")?;
            assert!(
                web["labels"]["groups"]
                    .as_str()
                    .is_some_and(|g| g.contains(",monitoring,")),
                "{web}"
            );
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            return Err(format!(
                "after {:?}, not every host is scraped and up: {missing:?}",
                started.elapsed()
            )
            .into());
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn rules_pass_promtool_and_are_loaded() -> Result<(), Failed> {
    let lab = fleet()?;
    // The generated files, checked by the tools on the host itself.
    let rules = lab.ssh_ok(
        MONITOR,
        "promtool check rules /etc/prometheus/rules/girofle.yml",
    );
    assert!(rules.contains("SUCCESS"), "{rules}");
    lab.ssh_ok(
        MONITOR,
        "promtool check config /etc/prometheus/prometheus.yml",
    );
    lab.ssh_ok(
        MONITOR,
        "amtool check-config /etc/prometheus/alertmanager.yml",
    );
    // Without a webhook (the lab), the receiver has no destination.
    let alertmanager = lab.ssh_ok(MONITOR, "cat /etc/prometheus/alertmanager.yml");
    assert!(!alertmanager.contains("api_url"), "{alertmanager}");
    let mode = lab.ssh_ok(
        MONITOR,
        "stat -c '%a %U %G' /etc/prometheus/alertmanager.yml",
    );
    assert_eq!(mode.trim(), "640 root prometheus");
    // The running Prometheus has loaded them.
    let loaded = prometheus_api(lab, "/api/v1/rules")?;
    let names: Vec<&str> = loaded["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    for alert in [
        "HostDown",
        "FilesystemFilling",
        "FilesystemAlmostFull",
        "ClouHealthWarning",
        "ClouHealthCritical",
        "ClouCheckNotRunning",
        "BackupTooOld",
        "BackupMissing",
    ] {
        assert!(names.contains(&alert), "{alert} not loaded: {names:?}");
    }
    // And the alerts' inputs reach it: clou's check metrics from every
    // host's textfile collector (run the check now rather than wait for
    // its timer), from checks made during this test.
    let since: u64 = lab.ssh_ok(MONITOR, "date +%s").trim().parse()?;
    for host in lab.hosts() {
        lab.ssh_ok(&host, "systemctl start clou-check.service");
    }
    let checked = format!(
        "count by (host) (clou_health_severity and on(instance) \
         (clou_health_last_check_timestamp_seconds >= {since}))"
    );
    let started = Instant::now();
    loop {
        let seen = hosts_in(&prometheus_query(lab, &checked)?);
        let missing: Vec<String> = lab
            .hosts()
            .into_iter()
            .filter(|h| !seen.contains(h))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            return Err(format!("no clou_health_severity from {missing:?}").into());
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The textfile a test adds beside the check's own `clou.prom`.
const FAKE_FINDINGS: &str = "/var/lib/prometheus/node-exporter/zz-e2e-findings.prom";

/// Findings as the check writes them (its own HELP and TYPE lines, taken
/// from the host's clou.prom) on another host make Prometheus's alerts
/// pending there: the rules match the agent's real metrics.
fn alerts_follow_clou_health_findings() -> Result<(), Failed> {
    let lab = fleet()?;
    let host = others(lab)
        .into_iter()
        .next()
        .ok_or("the fleet has no host besides the monitoring one")?;
    lab.ssh_ok(
        &host,
        &format!(
            "set -e; dir=/var/lib/prometheus/node-exporter
             test -s $dir/clou.prom || systemctl start clou-check.service
             {{ grep -E '^# (HELP|TYPE) clou_health_severity ' $dir/clou.prom
               echo 'clou_health_severity{{probe=\"filesystem\",subject=\"/e2e-full\"}} 3'
               echo 'clou_health_severity{{probe=\"tls\",subject=\"e2e.example.org\"}} 2'
               echo 'clou_health_severity{{probe=\"backup\",subject=\"backup e2e\"}} 3'
             }} > {FAKE_FINDINGS}.tmp
             mv {FAKE_FINDINGS}.tmp {FAKE_FINDINGS}"
        ),
    );
    let outcome = wait_for_alerts(lab, &host);
    lab.ssh_ok(&host, &format!("rm -f {FAKE_FINDINGS}"));
    outcome
}

/// Waits until the three alerts the fake findings should raise on `host`
/// are pending or firing, each with its severity.
fn wait_for_alerts(lab: &TestLab, host: &str) -> Result<(), Failed> {
    let expected = [
        ("ClouHealthCritical", "/e2e-full", "critical"),
        ("ClouHealthWarning", "e2e.example.org", "warning"),
        ("BackupMissing", "backup e2e", "critical"),
    ];
    let started = Instant::now();
    loop {
        let alerts = prometheus_api(lab, "/api/v1/alerts")?;
        let alerts = alerts["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let missing: Vec<&str> = expected
            .iter()
            .filter(|(name, subject, severity)| {
                !alerts.iter().any(|a| {
                    let l = &a["labels"];
                    l["alertname"] == *name
                        && l["host"] == host
                        && l["subject"] == *subject
                        && l["severity"] == *severity
                })
            })
            .map(|(name, _, _)| *name)
            .collect();
        if missing.is_empty() {
            // The backup finding raises the backup alert, not the generic one.
            let generic_backup = alerts.iter().any(|a| {
                a["labels"]["subject"] == "backup e2e"
                    && a["labels"]["alertname"] != "BackupMissing"
            });
            assert!(!generic_backup, "{alerts:?}");
            return Ok(());
        }
        if started.elapsed() > PATIENCE + Duration::from_secs(45) {
            return Err(
                format!("no {missing:?} alert for {host}'s findings; alerts: {alerts:?}").into(),
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// From `from`, a TCP connection to `to:port` within 3 s: "open",
/// "refused" or "timeout" (what nftables' drop policy gives).
fn connect(lab: &TestLab, from: &str, to: &str, port: u16) -> String {
    python(
        lab,
        from,
        &format!(
            "import socket\n\
             try:\n    socket.create_connection(('{to}', {port}), timeout=3).close(); print('open')\n\
             except ConnectionRefusedError:\n    print('refused')\n\
             except OSError:\n    print('timeout')"
        ),
    )
    .trim()
    .to_owned()
}

fn node_exporter_lets_in_the_monitoring_group_only() -> Result<(), Failed> {
    let lab = fleet()?;
    let others = others(lab);
    let target = others
        .first()
        .ok_or("the fleet has no host besides the monitoring one")?;
    let outsider = others
        .get(1)
        .ok_or("the fleet needs a third host, outside the monitoring group")?;
    // The monitoring host scrapes it.
    let metrics = python(
        lab,
        MONITOR,
        &format!(
            "import urllib.request\n\
             print(urllib.request.urlopen('http://{target}:9100/metrics', timeout=5).read().decode())"
        ),
    );
    assert!(
        metrics.contains("node_exporter_build_info"),
        "{MONITOR} gets no metrics from {target}"
    );
    // A host outside the group does not get through the firewall, though
    // the same host's SSH answers it (the network is fine).
    assert_eq!(
        connect(lab, outsider, target, 22),
        "open",
        "{outsider} -> {target}:22"
    );
    let outcome = connect(lab, outsider, target, 9100);
    assert_ne!(
        outcome, "open",
        "{outsider} is not in the monitoring group, yet reaches {target}:9100"
    );
    Ok(())
}

/// The `http` findings of `clou status --json` for the hosts of `limit`:
/// URL -> severity.
fn page_checks(lab: &TestLab, limit: &str) -> Result<Vec<(String, String)>, Failed> {
    let out = lab.clou(&["status", "--in-lab", "--json", "--limit", limit]);
    let mut pages = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let value: Value = serde_json::from_str(line)?;
        for finding in value["report"]["findings"].as_array().into_iter().flatten() {
            if finding["probe"] == "http" {
                pages.push((
                    finding["subject"].as_str().unwrap_or_default().to_owned(),
                    finding["severity"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    Ok(pages)
}

/// Each active instance's page is asked by the health check (and so by
/// the upgrade gate) from its host, and a vhost gone is critical.
fn every_active_instance_answers_its_page_check() -> Result<(), Failed> {
    let lab = fleet()?;
    let pages = page_checks(lab, "nextcloud-data,forums,onlyoffice,web")?;
    let urls: Vec<&str> = pages.iter().map(|(u, _)| u.as_str()).collect();
    for expected in [
        "https://cloud.ecole-vive.example.org/status.php",
        "https://chat.amap-lyon.example.org/api/v4/system/ping",
        "https://forum.repair-cafe.example.org/srv/status",
        "https://office.girofle.example.org/healthcheck",
        "https://girofle.example.org/",
        "https://wiki.ecole-vive.example.org/",
        "https://compta.amap-lyon.example.org/",
    ] {
        assert!(
            urls.contains(&expected),
            "{expected} not checked: {pages:?}"
        );
    }
    // 3 Nextcloud, 1 Mattermost, 2 Discourse, 1 ONLYOFFICE, the site, 1
    // BookStack and 2 Paheko are active; the archived ones are not asked.
    assert_eq!(pages.len(), 11, "{pages:?}");
    assert!(pages.iter().all(|(_, sev)| sev == "ok"), "{pages:?}");

    // One vhost gone: its page is critical, the others stay fine.
    lab.ssh_ok(
        "web",
        "mv /etc/nginx/sites-enabled/bookstack-ecole-vive.conf /root/ && systemctl reload nginx",
    );
    let broken = page_checks(lab, "web")?;
    lab.ssh_ok(
        "web",
        "mv /root/bookstack-ecole-vive.conf /etc/nginx/sites-enabled/ && systemctl reload nginx",
    );
    for (url, severity) in &broken {
        let want = if url == "https://wiki.ecole-vive.example.org/" {
            "crit"
        } else {
            "ok"
        };
        assert_eq!(severity, want, "{url}: {broken:?}");
    }
    assert_eq!(
        page_checks(lab, "web")?
            .iter()
            .filter(|(_, s)| s == "ok")
            .count(),
        4
    );
    Ok(())
}
