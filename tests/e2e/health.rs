//! `clou status` and the health timer on the lab: a stopped service, a
//! filling filesystem and a corrupted btrfs device are found on the host
//! where they are, and the timer posts one alert per change to a webhook.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use libtest_mimic::Failed;
use serde_json::Value;

use crate::lab;

/// In order, after apply's tests (the hosts run the base role).
pub const TESTS: &[(&str, crate::Test)] = &[
    (
        "health::status_reports_every_host",
        status_reports_every_host,
    ),
    (
        "health::a_stopped_service_is_critical_on_that_host_only",
        a_stopped_service_is_critical_on_that_host_only,
    ),
    (
        "health::a_filling_filesystem_warns",
        a_filling_filesystem_warns,
    ),
    (
        "health::btrfs_corruption_names_the_device",
        btrfs_corruption_names_the_device,
    ),
    (
        "health::the_timer_alerts_once_per_change",
        the_timer_alerts_once_per_change,
    ),
    (
        "health::a_dying_disk_is_named_from_real_smartctl_outputs",
        a_dying_disk_is_named_from_real_smartctl_outputs,
    ),
];

/// `clou status --in-lab --json`: host name -> its line.
fn status() -> Result<(Option<i32>, Vec<Value>), Failed> {
    let lab = lab()?;
    let out = lab.clou(&["status", "--in-lab", "--json"]);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Ok((out.status.code(), lines))
}

fn host<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["host"] == name)
        .unwrap_or_else(|| panic!("no status line for {name} among {} lines", lines.len()))
}

fn findings<'a>(line: &'a Value, probe: &str) -> Vec<&'a Value> {
    line["report"]["findings"]
        .as_array()
        .map(|f| f.iter().filter(|f| f["probe"] == probe).collect())
        .unwrap_or_default()
}

fn status_reports_every_host() -> Result<(), Failed> {
    let (_, lines) = status()?;
    assert_eq!(lines.len(), 3);
    for name in ["alpha", "bravo", "charlie"] {
        let line = host(&lines, name);
        assert_eq!(line["report"]["hostname"], name, "{line}");
        assert!(!findings(line, "filesystem").is_empty(), "{line}");
        let services = findings(line, "systemd");
        assert!(
            services.iter().any(|f| f["subject"]
                .as_str()
                .is_some_and(|s| s.contains("prometheus-node-exporter"))
                && f["severity"] == "ok"),
            "the roles' service is watched: {line}"
        );
        // Lab disks are loop devices: no SMART, which is not "ok".
        for f in findings(line, "smart") {
            assert_ne!(f["severity"], "ok", "{f}");
        }
    }
    Ok(())
}

fn a_stopped_service_is_critical_on_that_host_only() -> Result<(), Failed> {
    let lab = lab()?;
    lab.ssh_ok("bravo", "systemctl stop prometheus-node-exporter");
    let (code, lines) = status()?;
    // The plain table says it in words too.
    let table = lab.clou(&["status", "--in-lab"]);
    lab.ssh_ok("bravo", "systemctl start prometheus-node-exporter");
    assert_eq!(code, Some(1), "a critical finding fails the status");
    let bravo = host(&lines, "bravo");
    assert_eq!(bravo["worst"], "crit", "{bravo}");
    let stopped: Vec<&Value> = findings(bravo, "systemd")
        .into_iter()
        .filter(|f| f["severity"] == "crit")
        .collect();
    assert_eq!(stopped.len(), 1, "{bravo}");
    assert!(
        stopped[0]["subject"]
            .as_str()
            .unwrap_or("")
            .contains("prometheus-node-exporter")
    );
    for other in ["alpha", "charlie"] {
        let line = host(&lines, other);
        assert!(
            findings(line, "systemd")
                .iter()
                .all(|f| f["severity"] != "crit"),
            "{other}: {line}"
        );
    }
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("bravo")
            && l.contains("CRIT")
            && l.contains("prometheus-node-exporter")),
        "{text}"
    );
    Ok(())
}

fn a_filling_filesystem_warns() -> Result<(), Failed> {
    let lab = lab()?;
    lab.ssh_ok(
        "bravo",
        "mkfs.ext4 -q -F /dev/vdb && mkdir -p /mnt/fill && mount /dev/vdb /mnt/fill && \
         avail=$(df -B1 --output=avail /mnt/fill | tail -1) && size=$(df -B1 --output=size /mnt/fill | tail -1) && \
         fallocate -l $(( size * 88 / 100 - (size - avail) )) /mnt/fill/ballast",
    );
    let (_, lines) = status()?;
    lab.ssh_ok("bravo", "umount /mnt/fill && wipefs -q -a /dev/vdb");
    let bravo = host(&lines, "bravo");
    let fill = findings(bravo, "filesystem")
        .into_iter()
        .find(|f| f["subject"] == "/mnt/fill")
        .ok_or_else(|| format!("no finding for /mnt/fill: {bravo}"))?;
    assert_eq!(fill["severity"], "warn", "{fill}");
    assert!(
        fill["message"].as_str().unwrap_or("").contains("% used"),
        "{fill}"
    );
    Ok(())
}

fn btrfs_corruption_names_the_device() -> Result<(), Failed> {
    let lab = lab()?;
    lab.ssh_ok(
        "bravo",
        "DEBIAN_FRONTEND=noninteractive apt-get -q -y install btrfs-progs >/dev/null",
    );
    // A RAID1 of two disks; a file; garbage written over one device's copy
    // of the data (not the superblocks); a scrub finds and repairs it.
    lab.ssh_ok(
        "bravo",
        "set -e; mkfs.btrfs -q -f -d raid1 -m raid1 /dev/vdb /dev/vdc; mkdir -p /mnt/r1; mount /dev/vdb /mnt/r1; \
         dd if=/dev/urandom of=/mnt/r1/data bs=1M count=200 status=none; sync; umount /mnt/r1; \
         dd if=/dev/urandom of=/dev/vdc bs=1M seek=300 count=200 conv=notrunc status=none; sync; \
         mount /dev/vdb /mnt/r1; btrfs scrub start -B /mnt/r1 >/dev/null 2>&1 || true",
    );
    let (_, lines) = status()?;
    lab.ssh_ok("bravo", "umount /mnt/r1 && wipefs -q -a /dev/vdb /dev/vdc");
    let bravo = host(&lines, "bravo");
    let btrfs = findings(bravo, "btrfs");
    let sick: Vec<&Value> = btrfs
        .into_iter()
        .filter(|f| f["severity"] == "crit")
        .collect();
    assert!(!sick.is_empty(), "{bravo}");
    let text = serde_json::to_string(&sick).unwrap_or_default();
    assert!(
        text.contains("/dev/vdc"),
        "names the corrupted device: {text}"
    );
    assert!(
        !text.contains("\"/dev/vdb\""),
        "the healthy device is not blamed: {text}"
    );
    Ok(())
}

/// A webhook receiver on the lab's bridge (this machine's address in the
/// lab network the tests created): records each POST body.
fn receiver(bridge: &str) -> Result<(String, mpsc::Receiver<String>), Failed> {
    let listener = TcpListener::bind(format!("{bridge}:0"))?;
    let url = format!("http://{}/hooks/test-key", listener.local_addr()?);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if data.len() >= end + 4 + length {
                        let _ = tx.send(text[end + 4..].to_owned());
                        break;
                    }
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    Ok((url, rx))
}

fn the_timer_alerts_once_per_change() -> Result<(), Failed> {
    let lab = lab()?;
    let subnet = lab.state()?.subnet;
    let bridge = subnet
        .split('/')
        .next()
        .and_then(|net| net.rsplit_once('.'))
        .map(|(prefix, _)| format!("{prefix}.1"))
        .ok_or("no lab subnet")?;
    let (url, posts) = receiver(&bridge)?;
    let hook = format!("alert_webhook_url={url}");
    lab.apply(&["--limit", "bravo", "-e", &hook]).expect_code(0);
    // The check the timer runs, run now: a baseline (drain what it says).
    lab.ssh_ok("bravo", "systemctl start clou-check.service");
    while posts.recv_timeout(Duration::from_secs(2)).is_ok() {}

    lab.ssh_ok(
        "bravo",
        "systemctl stop prometheus-node-exporter && systemctl start clou-check.service",
    );
    let alert = posts
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "no alert for a stopped service")?;
    assert!(
        alert.contains("**bravo**")
            && alert.contains("CRIT")
            && alert.contains("prometheus-node-exporter"),
        "{alert}"
    );

    lab.ssh_ok("bravo", "systemctl start clou-check.service");
    assert!(
        posts.recv_timeout(Duration::from_secs(3)).is_err(),
        "no repeat for the same problem"
    );

    lab.ssh_ok(
        "bravo",
        "systemctl start prometheus-node-exporter && systemctl start clou-check.service",
    );
    let recovery = posts
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "no recovery message")?;
    assert!(
        recovery.contains("recovered") && recovery.contains("prometheus-node-exporter"),
        "{recovery}"
    );

    // The webhook URL is a secret: not in the host's journal or logs.
    let leaks = lab.ssh_ok("bravo", "grep -c test-key /var/lib/clou/journal.jsonl || true; journalctl -u clou-check --no-pager | grep -c test-key || true");
    assert_eq!(
        leaks.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "{leaks}"
    );
    lab.apply(&["--limit", "bravo"]).expect_code(0);
    Ok(())
}

/// Installs on `host` a `smartctl` that replays real recorded outputs (the
/// lab has no SMART disks): the scan of a 7-disk server, a FAILED Hitachi
/// as /dev/sda (with its real exit status 216), a PASSED-but-dying HGST as
/// /dev/sdb, and a healthy WD for the others.
fn install_smartctl_replay(host: &str) -> Result<String, Failed> {
    let lab = lab()?;
    let data = clou_tests::workspace_root().join("agent/src/probes/testdata");
    let dir = "/usr/local/share/clou-replay";
    lab.ssh_ok(host, &format!("mkdir -p {dir}"));
    for (name, path) in [
        (
            "scan.json",
            "smartctl-extra/scan-scrutiny-simple-7-sata-disks.json",
        ),
        (
            "sda.json",
            "smartctl/sata-hdd-FAILED-hitachi-1975-realloc-selftest-readfail.scrutiny.json",
        ),
        (
            "sdb.json",
            "smartctl/sata-hdd-prefail-hgst-1040-realloc-878-pending.libblockdev.json",
        ),
        (
            "healthy.json",
            "smartctl/sata-hdd-healthy-wdc-wd140edfz.scrutiny.json",
        ),
    ] {
        let content = std::fs::read(data.join(path))?;
        let state = lab.lab.host(host).map_err(|e| e.to_string())?;
        let mut child = lab
            .lab
            .ssh_command(state.address)
            .arg(format!("cat > {dir}/{name}"))
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().ok_or("no stdin")?.write_all(&content)?;
        assert!(child.wait()?.success());
    }
    let script = format!(
        "#!/bin/sh\n# Replays real smartctl outputs recorded on real machines (see SOURCES.md).\n\
         case \"$*\" in\n\
         *--scan*) cat {dir}/scan.json ;;\n\
         */dev/sda*) cat {dir}/sda.json; exit 216 ;;\n\
         */dev/sdb*) cat {dir}/sdb.json ;;\n\
         *) cat {dir}/healthy.json ;;\n\
         esac\n"
    );
    lab.ssh_ok(
        host,
        &format!("printf '%s' {} > /usr/local/bin/smartctl-replay && chmod 755 /usr/local/bin/smartctl-replay", shell_quote(&script)),
    );
    Ok("/usr/local/bin/smartctl-replay".to_owned())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn a_dying_disk_is_named_from_real_smartctl_outputs() -> Result<(), Failed> {
    let lab = lab()?;
    let replay = install_smartctl_replay("charlie")?;
    let health = format!("health={{smartctl: {replay}}}");
    let out = lab.clou(&[
        "status", "--in-lab", "--json", "--limit", "charlie", "-e", &health,
    ]);
    assert_eq!(out.status.code(), Some(1), "a dying disk fails the status");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let charlie = host(&lines, "charlie");
    let smart = findings(charlie, "smart");
    let disk = |dev: &str| {
        smart
            .iter()
            .find(|f| f["subject"] == dev)
            .copied()
            .ok_or_else(|| format!("no finding for {dev}"))
    };
    let sda = disk("/dev/sda")?;
    assert_eq!(sda["severity"], "crit", "{sda}");
    let message = sda["message"].as_str().unwrap_or("");
    assert!(message.contains("1975"), "says how many sectors: {message}");
    assert!(
        message.contains("HDS721050DLE630"),
        "names the model: {message}"
    );
    let sdb = disk("/dev/sdb")?;
    assert_eq!(sdb["severity"], "crit", "PASSED but dying: {sdb}");
    assert_eq!(disk("/dev/sdc")?["severity"], "ok");

    // The timer's check sees it too, and alerts once.
    let subnet = lab.state()?.subnet;
    let bridge = subnet
        .split('/')
        .next()
        .and_then(|net| net.rsplit_once('.'))
        .map(|(prefix, _)| format!("{prefix}.1"))
        .ok_or("no lab subnet")?;
    let (url, posts) = receiver(&bridge)?;
    let hook = format!("alert_webhook_url={url}");
    lab.apply(&["--limit", "charlie", "-e", &hook, "-e", &health])
        .expect_code(0);
    lab.ssh_ok("charlie", "systemctl start clou-check.service");
    let alert = posts
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "no alert for the dying disks")?;
    assert!(
        alert.contains("**charlie**") && alert.contains("/dev/sda") && alert.contains("1975"),
        "{alert}"
    );
    lab.ssh_ok("charlie", "systemctl start clou-check.service");
    assert!(
        posts.recv_timeout(Duration::from_secs(3)).is_err(),
        "no repeat"
    );
    // Its metrics say it to Prometheus.
    let metrics = lab.ssh_ok("charlie", "cat /var/lib/prometheus/node-exporter/clou.prom");
    assert!(
        metrics.contains("clou_health_severity{probe=\"smart\",subject=\"/dev/sda\"} 3"),
        "{metrics}"
    );
    lab.apply(&["--limit", "charlie"]).expect_code(0);
    lab.ssh_ok(
        "charlie",
        "rm -rf /usr/local/bin/smartctl-replay /usr/local/share/clou-replay",
    );
    Ok(())
}
