//! `clou apply` on the lab: converging, idempotence, check and diff modes,
//! host keys, unreachable hosts, the per-host lock and handlers. What each
//! host ends up like is read over ssh, not taken from clou's report.

use std::process::Command;
use std::time::{Duration, Instant};

use clou_tests::TestLab;
use libtest_mimic::Failed;

use crate::lab;

/// In order: later tests start from what earlier ones converged.
pub const TESTS: &[(&str, crate::Test)] = &[
    ("apply::first_apply_converges", first_apply_converges),
    (
        "apply::second_apply_changes_nothing",
        second_apply_changes_nothing,
    ),
    (
        "apply::check_mode_leaves_every_host_byte_identical",
        check_mode_leaves_every_host_byte_identical,
    ),
    (
        "apply::diff_shows_a_template_change_as_a_unified_diff",
        diff_shows_a_template_change_as_a_unified_diff,
    ),
    (
        "apply::a_handler_fires_once_for_two_notifiers_and_not_on_a_no_op",
        a_handler_fires_once_for_two_notifiers_and_not_on_a_no_op,
    ),
    (
        "apply::every_change_is_journaled_on_the_host",
        every_change_is_journaled_on_the_host,
    ),
    (
        "apply::the_agent_is_uploaded_once_and_old_copies_removed",
        the_agent_is_uploaded_once_and_old_copies_removed,
    ),
    (
        "apply::a_second_concurrent_apply_fails_fast_naming_the_holder",
        a_second_concurrent_apply_fails_fast_naming_the_holder,
    ),
    (
        "apply::a_host_with_no_known_key_is_refused_without_connecting",
        a_host_with_no_known_key_is_refused_without_connecting,
    ),
    (
        "apply::a_changed_host_key_refuses_that_host_only",
        a_changed_host_key_refuses_that_host_only,
    ),
    (
        "apply::a_stopped_host_is_unreachable_and_the_others_converge",
        a_stopped_host_is_unreachable_and_the_others_converge,
    ),
    (
        "apply::ssh_config_and_proxy_jump_are_honoured",
        ssh_config_and_proxy_jump_are_honoured,
    ),
    (
        "apply::keys_of_the_ssh_agent_log_in",
        keys_of_the_ssh_agent_log_in,
    ),
    (
        "apply::removing_an_admin_locks_the_account_on_every_host",
        removing_an_admin_locks_the_account_on_every_host,
    ),
    (
        "apply::an_sshd_change_that_shuts_clou_out_is_put_back_by_the_host",
        an_sshd_change_that_shuts_clou_out_is_put_back_by_the_host,
    ),
    (
        "apply::bad_input_contacts_no_host",
        bad_input_contacts_no_host,
    ),
];

const HOSTS: &[&str] = &["alpha", "bravo", "charlie"];

fn first_apply_converges() -> Result<(), Failed> {
    let lab = lab()?;
    let run = lab.apply(&["--json"]);
    run.expect_code(0);
    for host in HOSTS {
        let summary = run.host(host);
        assert_eq!(summary["converged"], true, "{host}: {summary}");
        assert!(
            summary["changed"].as_u64().unwrap_or(0) > 0,
            "{host}: {summary}"
        );

        // The admin account, with its key, in sudo.
        let id = lab.ssh_ok(host, "id camille");
        assert!(
            id.contains("(sudo)") && id.contains("(adm)"),
            "{host}: {id}"
        );
        let keys = lab.ssh_ok(host, "cat /home/camille/.ssh/authorized_keys; stat -c '%U %a' /home/camille/.ssh/authorized_keys");
        assert!(keys.contains("camille@girofle"), "{host}: {keys}");
        assert!(keys.contains("camille 600"), "{host}: {keys}");
        // ... who may sudo without a password (keys only, no password).
        let sudo = lab.ssh_ok(host, "sudo -l -U camille");
        assert!(sudo.contains("(ALL : ALL) NOPASSWD: ALL"), "{host}: {sudo}");
        // The sshd drop-in is in force (sshd -T prints the effective config).
        let sshd = lab.ssh_ok(
            host,
            "sshd -T | grep -E '^(passwordauthentication|maxauthtries)'",
        );
        assert!(sshd.contains("passwordauthentication no"), "{host}: {sshd}");
        assert!(sshd.contains("maxauthtries 4"), "{host}: {sshd}");
        // The package, its templated config and its service.
        let exporter = lab.ssh_ok(
            host,
            "dpkg-query -W -f '${Status}' prometheus-node-exporter; echo; \
             systemctl is-enabled prometheus-node-exporter; systemctl is-active prometheus-node-exporter; \
             cat /etc/default/prometheus-node-exporter",
        );
        assert!(
            exporter.starts_with("install ok installed\nenabled\nactive\n"),
            "{host}: {exporter}"
        );
        let address = lab.lab.host(host).map_err(|e| e.to_string())?.address;
        assert!(
            exporter.contains(&format!("--web.listen-address={address}:9100")),
            "{host}: {exporter}"
        );
        // It listens where the template says (the monitoring scrapes it).
        lab.ssh_ok(host, &format!("for i in 1 2 3 4 5 6 7 8 9 10; do (exec 3<>/dev/tcp/{address}/9100) 2>/dev/null && exit 0; sleep 0.5; done; exit 1"));
        // Directory, motd, the journald line.
        let dir = lab.ssh_ok(host, "stat -c '%U %G %a' /var/lib/girofle");
        assert_eq!(dir.trim(), "root adm 750", "{host}");
        let motd = lab.ssh_ok(host, "cat /etc/motd");
        assert!(
            motd.contains(&format!("{host} - Le Cloud Girofle (tests)")),
            "{host}: {motd}"
        );
        let journald = lab.ssh_ok(
            host,
            "grep -c '^SystemMaxUse=500M$' /etc/systemd/journald.conf",
        );
        assert_eq!(journald.trim(), "1", "{host}");
        let stamp = lab.ssh_ok(
            host,
            "cat /etc/clou-e2e/stamp; stat -c '%a' /etc/clou-e2e/stamp.conf",
        );
        assert_eq!(stamp, "initial\n640\n", "{host}");
    }
    Ok(())
}

fn second_apply_changes_nothing() -> Result<(), Failed> {
    let lab = lab()?;
    let before: Vec<String> = HOSTS.iter().map(|h| lab.listing(h)).collect();
    let run = lab.apply(&["--json"]);
    run.expect_code(0);
    for (host, before) in HOSTS.iter().zip(&before) {
        assert_eq!(run.host(host)["changed"], 0, "{host}: {}", run.stdout);
        assert_eq!(
            &lab.listing(host),
            before,
            "{host} changed on a second apply"
        );
    }
    Ok(())
}

fn check_mode_leaves_every_host_byte_identical() -> Result<(), Failed> {
    let lab = lab()?;
    // Give check mode something to find: a new stamp, a file changed by
    // hand, and a package removed behind clou's back on one host.
    lab.ssh_ok("alpha", "echo edited-by-hand > /etc/motd");
    lab.ssh_ok(
        "charlie",
        "DEBIAN_FRONTEND=noninteractive apt-get -q -y purge prometheus-node-exporter >/dev/null",
    );
    let before: Vec<String> = HOSTS.iter().map(|h| lab.listing(h)).collect();
    let run = lab.apply(&["--check", "--json", "-e", "stamp=checked"]);
    run.expect_code(0);
    for (host, before) in HOSTS.iter().zip(&before) {
        assert!(
            run.host(host)["changed"].as_u64().unwrap_or(0) >= 2,
            "{host}: {}",
            run.stdout
        );
        assert_eq!(&lab.listing(host), before, "--check changed {host}");
    }
    // What depends on the missing package is reported, not an error.
    let events = run.events();
    let service = events
        .iter()
        .find(|e| e["host"] == "charlie" && e["id"] == "base/service:prometheus-node-exporter")
        .ok_or("no report for the exporter service on charlie")?;
    assert_eq!(service["status"], "changed", "{service}");
    let changes = service["changes"].to_string();
    assert!(changes.contains("start"), "{service}");
    // Put things back for the next tests.
    lab.apply(&[]).expect_code(0);
    Ok(())
}

fn diff_shows_a_template_change_as_a_unified_diff() -> Result<(), Failed> {
    let lab = lab()?;
    let run = lab.apply(&[
        "--check",
        "--diff",
        "--limit",
        "bravo",
        "-e",
        "metrics_port=9101",
    ]);
    run.expect_code(0);
    let address = lab.lab.host("bravo").map_err(|e| e.to_string())?.address;
    for expected in [
        "--- /etc/default/prometheus-node-exporter (on host)".to_owned(),
        "+++ /etc/default/prometheus-node-exporter (planned)".to_owned(),
        format!("-ARGS=\"--web.listen-address={address}:9100"),
        format!("+ARGS=\"--web.listen-address={address}:9101"),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "missing {expected:?} in:\n{}",
            run.stderr
        );
    }
    let on_host = lab.ssh_ok("bravo", "cat /etc/default/prometheus-node-exporter");
    assert!(
        on_host.contains(":9100"),
        "check mode changed the file: {on_host}"
    );
    Ok(())
}

fn handler_count(host: &str) -> Result<usize, Failed> {
    let out = lab()?.ssh_ok(
        host,
        "cat /var/lib/clou-e2e-handler.log 2>/dev/null || true",
    );
    Ok(out.lines().count())
}

fn a_handler_fires_once_for_two_notifiers_and_not_on_a_no_op() -> Result<(), Failed> {
    let lab = lab()?;
    let before = handler_count("alpha")?;
    // A new stamp changes both files, and both notify `count`.
    let run = lab.apply(&["--json", "--limit", "alpha", "-e", "stamp=handlers"]);
    run.expect_code(0);
    assert_eq!(
        handler_count("alpha")? - before,
        1,
        "two notifications, one run"
    );
    let again = lab.apply(&["--json", "--limit", "alpha", "-e", "stamp=handlers"]);
    again.expect_code(0);
    assert_eq!(again.host("alpha")["changed"], 0);
    assert_eq!(
        handler_count("alpha")? - before,
        1,
        "a no-op run fires no handler"
    );
    lab.apply(&["--limit", "alpha"]).expect_code(0);
    Ok(())
}

fn every_change_is_journaled_on_the_host() -> Result<(), Failed> {
    let lab = lab()?;
    let run = lab.apply(&["--json", "--limit", "bravo", "-e", "stamp=journaled"]);
    run.expect_code(0);
    let journal = lab.ssh_ok("bravo", "tail -n 20 /var/lib/clou/journal.jsonl");
    let entries: Vec<serde_json::Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let stamp = entries
        .iter()
        .rev()
        .find(|e| e["resource"] == "e2e/file:/etc/clou-e2e/stamp")
        .ok_or_else(|| format!("no journal entry for the stamp in:\n{journal}"))?;
    assert!(
        stamp["run_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{stamp}"
    );
    assert!(
        stamp["admin"].as_str().is_some_and(|a| a.contains('@')),
        "{stamp}"
    );
    assert!(
        stamp["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{stamp}"
    );
    assert!(
        stamp["changes"][0]
            .as_str()
            .is_some_and(|c| c.contains("sha256:")),
        "{stamp}"
    );
    lab.apply(&["--limit", "bravo"]).expect_code(0);
    Ok(())
}

fn the_agent_is_uploaded_once_and_old_copies_removed() -> Result<(), Failed> {
    let lab = lab()?;
    lab.ssh_ok(
        "charlie",
        "printf stale > /var/lib/clou/agent-0000; rm -f /var/lib/clou/agent-[1-9a-f]*",
    );
    let run = lab.apply(&["--json", "--limit", "charlie"]);
    run.expect_code(0);
    let uploads = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "upload")
        .count();
    assert_eq!(uploads, 1, "the missing agent is uploaded: {}", run.stdout);
    let again = lab.apply(&["--json", "--limit", "charlie"]);
    let uploads = again
        .events()
        .into_iter()
        .filter(|e| e["event"] == "upload")
        .count();
    assert_eq!(uploads, 0, "a present agent is not uploaded again");
    let files = lab.ssh_ok("charlie", "ls /var/lib/clou | grep '^agent-'");
    assert_eq!(files.lines().count(), 1, "old copies are removed: {files}");
    // The copy on the host is the one with the name's hash.
    let check = lab.ssh_ok(
        "charlie",
        "cd /var/lib/clou && f=$(ls agent-*) && echo \"${f#agent-}  $f\" | sha256sum --check",
    );
    assert!(check.contains(": OK"), "{check}");
    Ok(())
}

fn a_second_concurrent_apply_fails_fast_naming_the_holder() -> Result<(), Failed> {
    let lab = lab()?;
    // The first run holds bravo's lock for a while (a slow step): long
    // enough that the second one's refusal, even slowed by the fleet lab
    // converging meanwhile, comes well before the lock is free.
    let mut first = Command::new(&lab.clou)
        .args(["apply", "--inventory"])
        .arg(&lab.inventory)
        .args([
            "--lab",
            &lab.lab.name,
            "--in-lab",
            "--limit",
            "bravo",
            "-e",
            "e2e_sleep=15",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Wait until the slow step runs (the agent holds the lock by then).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab
        .ssh_ok("bravo", "pgrep -x sleep >/dev/null && echo yes || true")
        .contains("yes")
    {
        if Instant::now() > deadline {
            let _ = first.kill();
            return Err("the first apply never reached its slow step".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    let second = lab.apply(&["--json", "--limit", "bravo"]);
    let took = started.elapsed();
    second.expect_code(1);
    let refused = second.host("bravo")["refused"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        refused.contains("another clou run holds /var/lib/clou/lock"),
        "{refused}"
    );
    assert!(
        refused.contains(" by ") && refused.contains('@'),
        "names the admin: {refused}"
    );
    // A second run that waited for the lock would take the holder's 15 s.
    assert!(took < Duration::from_secs(8), "fails fast, took {took:?}");
    let out = first.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn a_host_with_no_known_key_is_refused_without_connecting() -> Result<(), Failed> {
    let lab = lab()?;
    let known_hosts = lab.lab.dir().join("known_hosts");
    let charlie = lab
        .lab
        .host("charlie")
        .map_err(|e| e.to_string())?
        .address
        .to_string();
    let original = std::fs::read_to_string(&known_hosts)?;
    let without: String = original
        .lines()
        .filter(|l| {
            !l.split_whitespace()
                .next()
                .is_some_and(|hosts| hosts.split(',').any(|h| h == charlie))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, original, "the lab records charlie's key");
    let journal = lab.ssh_ok("charlie", "wc -l < /var/lib/clou/journal.jsonl");
    std::fs::write(&known_hosts, &without)?;
    // Whatever happens below, the next tests get the lab's known_hosts back.
    struct Restore(std::path::PathBuf, String);
    impl Drop for Restore {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = std::fs::write(&self.0, &self.1);
            }
        }
    }
    let _restore = Restore(known_hosts.clone(), original.clone());

    let run = lab.apply(&["--json", "-e", "stamp=unknown-key"]);
    run.expect_code(1);
    let why = run.host("charlie")["unreachable"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        why.contains("no host key of charlie") && why.contains("not connecting"),
        "{why}"
    );
    assert!(why.contains("clou hosts trust charlie"), "{why}");
    assert_eq!(run.host("alpha")["converged"], true);
    // (The lab's own ssh checks keys with its known_hosts: put it back to look.)
    std::fs::write(&known_hosts, &original)?;
    assert_eq!(
        lab.ssh_ok("charlie", "wc -l < /var/lib/clou/journal.jsonl"),
        journal
    );
    assert_eq!(
        lab.ssh_ok("charlie", "cat /etc/clou-e2e/stamp"),
        "initial\n"
    );

    // `hosts trust` without a fingerprint shows it and records nothing;
    // with the fingerprint shown, the key is recorded and clou goes in.
    std::fs::write(&known_hosts, &without)?;
    let shown = lab.clou(&["hosts", "trust", "--in-lab", "charlie"]);
    assert_eq!(shown.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&shown.stdout).into_owned();
    let fingerprint = stdout
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .ok_or_else(|| format!("no fingerprint shown: {stdout}"))?
        .to_owned();
    assert_eq!(
        std::fs::read_to_string(&known_hosts)?,
        without,
        "nothing recorded"
    );
    lab.clou_ok(&[
        "hosts",
        "trust",
        "--in-lab",
        "charlie",
        "--fingerprint",
        &fingerprint,
    ]);
    lab.apply(&[]).expect_code(0);
    Ok(())
}

fn a_changed_host_key_refuses_that_host_only() -> Result<(), Failed> {
    let lab = lab()?;
    // bravo gets new host keys, as a reinstalled (or impersonated) server.
    lab.ssh_ok(
        "bravo",
        "rm -f /etc/ssh/ssh_host_* && ssh-keygen -q -A && systemctl restart ssh",
    );
    let run = lab.apply(&["--json", "-e", "stamp=key-changed"]);
    run.expect_code(1);
    let bravo = run.host("bravo");
    let why = bravo["unreachable"].as_str().unwrap_or("").to_owned();
    assert!(why.contains("HOST KEY CHANGED"), "{why}");
    assert!(
        why.matches("SHA256:").count() >= 2,
        "both fingerprints: {why}"
    );
    assert!(
        why.contains("clou hosts trust bravo --fingerprint SHA256:"),
        "{why}"
    );
    for host in ["alpha", "charlie"] {
        assert_eq!(run.host(host)["converged"], true, "{host} goes on");
        assert_eq!(lab.ssh_ok(host, "cat /etc/clou-e2e/stamp"), "key-changed\n");
    }
    // Nothing was applied on bravo.
    let ssh_check = Command::new("ssh")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-i",
        ])
        .arg(lab.lab.dir().join("ssh/id_ed25519"))
        .arg(format!(
            "root@{}",
            lab.lab.host("bravo").map_err(|e| e.to_string())?.address
        ))
        .arg("cat /etc/clou-e2e/stamp")
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&ssh_check.stdout),
        "initial\n",
        "bravo was changed"
    );

    // Trusting the key as the message says lets clou in again; a wrong
    // fingerprint records nothing.
    let fingerprint = why
        .split("--fingerprint ")
        .nth(1)
        .and_then(|s| s.split(['`', ' ', '\n']).next())
        .ok_or("no fingerprint in the message")?
        .to_owned();
    let wrong = lab.clou(&[
        "hosts",
        "trust",
        "--in-lab",
        "bravo",
        "--fingerprint",
        "SHA256:nope",
    ]);
    assert!(!wrong.status.success());
    lab.clou_ok(&[
        "hosts",
        "trust",
        "--in-lab",
        "bravo",
        "--fingerprint",
        &fingerprint,
    ]);
    lab.apply(&[]).expect_code(0);
    Ok(())
}

fn a_stopped_host_is_unreachable_and_the_others_converge() -> Result<(), Failed> {
    let lab = lab()?;
    let _ = lab.ssh("charlie", "systemctl poweroff");
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.ssh("charlie", "true").status.success() {
        if Instant::now() > deadline {
            return Err("charlie did not stop".into());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let run = lab.apply(&["--json", "-e", "stamp=one-down"]);
    run.expect_code(1);
    assert!(
        run.host("charlie")["unreachable"].as_str().is_some(),
        "{}",
        run.stdout
    );
    for host in ["alpha", "bravo"] {
        assert_eq!(run.host(host)["converged"], true);
        assert_eq!(lab.ssh_ok(host, "cat /etc/clou-e2e/stamp"), "one-down\n");
    }
    let table = lab.apply(&["-e", "stamp=one-down"]);
    table.expect_code(1);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("charlie"))
        .ok_or("no row for charlie")?;
    assert!(row.contains("yes"), "the table says unreachable: {row}");
    // Bring charlie back for the tests after this one.
    lab.clou_ok(&["lab", "up"]);
    lab.apply(&[]).expect_code(0);
    Ok(())
}

/// A production-like run: a plain inventory (no lab overlay), the admin's
/// ~/.ssh/config with an IdentityFile and a ProxyJump through alpha, and
/// host keys from the repository's inventory/known_hosts.
fn ssh_config_and_proxy_jump_are_honoured() -> Result<(), Failed> {
    let lab = lab()?;
    let alpha = lab.lab.host("alpha").map_err(|e| e.to_string())?.address;
    let bravo = lab.lab.host("bravo").map_err(|e| e.to_string())?.address;
    let key = lab.lab.dir().join("ssh/id_ed25519");
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh"))?;
    std::fs::write(
        home.join(".ssh/config"),
        format!(
            "Host {bravo}\n    ProxyJump root@{alpha}\n    IdentityFile {key}\n\n\
             Host {alpha}\n    IdentityFile {key}\n",
            key = key.display()
        ),
    )?;
    let inventory = lab.plain_inventory(dir.path())?;
    let out = Command::new(&lab.clou)
        .env("HOME", &home)
        .env_remove("SSH_AUTH_SOCK")
        .args([
            "apply",
            "--json",
            "--limit",
            "bravo",
            "-e",
            "stamp=jumped",
            "--inventory",
        ])
        .arg(&inventory)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.ssh_ok("bravo", "cat /etc/clou-e2e/stamp"), "jumped\n");
    // bravo saw clou come from alpha, not from this machine.
    let log = lab.ssh_ok(
        "bravo",
        "journalctl -u ssh --since '-2min' --no-pager -o cat | grep 'Accepted publickey' || true",
    );
    assert!(
        log.lines().any(|l| l.contains(&format!("from {alpha} "))),
        "no login through alpha in:\n{log}"
    );
    lab.apply(&["--limit", "bravo"]).expect_code(0);
    Ok(())
}

/// No key file anywhere: the only key is in an ssh-agent.
fn keys_of_the_ssh_agent_log_in() -> Result<(), Failed> {
    let lab = lab()?;
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh"))?;
    let socket = dir.path().join("agent.sock");
    let agent = Command::new("ssh-agent").arg("-a").arg(&socket).output()?;
    assert!(agent.status.success(), "cannot start ssh-agent");
    let pid = String::from_utf8_lossy(&agent.stdout)
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .to_owned();
    let added = Command::new("ssh-add")
        .env("SSH_AUTH_SOCK", &socket)
        .arg(lab.lab.dir().join("ssh/id_ed25519"))
        .output()?;
    let result = (|| -> Result<(), Failed> {
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        let inventory = lab.plain_inventory(dir.path())?;
        let out = Command::new(&lab.clou)
            .env("HOME", &home)
            .env("SSH_AUTH_SOCK", &socket)
            .args(["apply", "--json", "--limit", "alpha", "--inventory"])
            .arg(&inventory)
            .output()?;
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    })();
    if !pid.is_empty() {
        let _ = Command::new("kill").arg(&pid).status();
    }
    result
}

/// An admin who can log in with their key; then the admin leaves (one
/// line in the inventory): on every host the account is locked, out of
/// sudo, without keys, and the key no longer logs in; the home is kept.
fn removing_an_admin_locks_the_account_on_every_host() -> Result<(), Failed> {
    an_admin_leaves(lab()?, HOSTS)
}

/// The story above on `hosts` of `lab` (the fleet's tests tell it too).
pub fn an_admin_leaves(lab: &TestLab, hosts: &[&str]) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("eve");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "eve@test", "-f"])
        .arg(&key)
        .status()?;
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub"))?
        .trim()
        .to_owned();
    let camille = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJgLi8mZwQhhSV6ma1B0P4geRiM+NKZ5sb7cHbGlV1Gn camille@girofle";
    let admins = |eve: &str| {
        format!(
            "admins=[{{name: camille, state: active, keys: ['{camille}']}}, {{name: eve, state: {eve}, keys: ['{public}']}}]"
        )
    };
    let login = |host: &str| -> Result<bool, Failed> {
        let address = lab.lab.host(host).map_err(|e| e.to_string())?.address;
        let out = Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                lab.lab.dir().join("known_hosts").display()
            ))
            .arg("-i")
            .arg(&key)
            .arg(format!("eve@{address}"))
            .arg("sudo -n true")
            .output()?;
        Ok(out.status.success())
    };

    lab.apply(&["-e", &admins("active")]).expect_code(0);
    for host in hosts {
        assert!(
            login(host)?,
            "{host}: eve logs in with her key and may sudo"
        );
    }

    lab.apply(&["-e", &admins("removed")]).expect_code(0);
    for host in hosts {
        assert!(!login(host)?, "{host}: eve's key no longer logs in");
        let state = lab.ssh_ok(
            host,
            "getent shadow eve | cut -d: -f2,8; id -nG eve; getent passwd eve | cut -d: -f7;              wc -c < /home/eve/.ssh/authorized_keys; test -d /home/eve && echo home kept",
        );
        let lines: Vec<&str> = state.lines().collect();
        assert!(
            lines[0].starts_with('!') && lines[0].ends_with(":1"),
            "{host}: locked and expired: {state}"
        );
        assert_eq!(lines[1], "eve", "{host}: out of sudo and adm: {state}");
        assert_eq!(lines[2], "/usr/sbin/nologin", "{host}: {state}");
        assert_eq!(lines[3].trim(), "0", "{host}: no key left: {state}");
        assert_eq!(lines[4], "home kept", "{host}: {state}");
    }
    // Leaving is idempotent too.
    let again = lab.apply(&["--json", "-e", &admins("removed")]);
    again.expect_code(0);
    for host in hosts {
        assert_eq!(again.host(host)["changed"], 0, "{host}");
    }
    lab.apply(&[]).expect_code(0);
    Ok(())
}

/// sshd's drop-in is a confirm step: a valid change that refuses clou's
/// next login (root, in the lab) is not confirmed, so alpha itself puts the
/// previous file back and reloads sshd; a harmless change is confirmed
/// over a new connection and kept.
fn an_sshd_change_that_shuts_clou_out_is_put_back_by_the_host() -> Result<(), Failed> {
    let lab = lab()?;
    const DROP_IN: &str = "/etc/ssh/sshd_config.d/10-girofle.conf";
    lab.apply(&["--limit", "alpha"]).expect_code(0);
    let before = lab.ssh_ok("alpha", &format!("cat {DROP_IN}"));

    let run = lab.apply(&[
        "--limit",
        "alpha",
        "--confirm-timeout",
        "8",
        "-e",
        r#"sshd_extra=["DenyUsers root"]"#,
    ]);
    run.expect_code(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("was reverted"), "{said}");
    assert!(said.contains("the host answers again"), "{said}");
    // Checked with OpenSSH, as root, as before the change.
    assert_eq!(lab.ssh_ok("alpha", &format!("cat {DROP_IN}")), before);
    let effective = lab.ssh_ok("alpha", "sshd -T | grep -i denyusers || true");
    assert_eq!(effective.trim(), "", "{effective}");
    let journal = lab.ssh_ok("alpha", "tail -n 20 /var/lib/clou/journal.jsonl");
    assert!(
        journal.contains("not confirmed in time, reverted"),
        "{journal}"
    );
    lab.ssh_ok("alpha", "test -z \"$(ls /var/lib/clou/confirm)\"");

    // A change clou survives is confirmed and stays.
    let run = lab.apply(&["--limit", "alpha", "-e", r#"sshd_extra=["MaxSessions 9"]"#]);
    run.expect_code(0);
    let effective = lab.ssh_ok("alpha", "sshd -T | grep -i maxsessions");
    assert_eq!(effective.trim(), "maxsessions 9");
    let journal = lab.ssh_ok("alpha", "tail -n 20 /var/lib/clou/journal.jsonl");
    assert!(
        journal.contains("confirmed by a new connection, kept"),
        "{journal}"
    );
    lab.apply(&["--limit", "alpha"]).expect_code(0);
    assert_eq!(lab.ssh_ok("alpha", &format!("cat {DROP_IN}")), before);
    Ok(())
}

fn bad_input_contacts_no_host() -> Result<(), Failed> {
    let lab = lab()?;
    let before = lab.ssh_ok(
        "alpha",
        "wc -l < /var/lib/clou/journal.jsonl; ls /var/lib/clou",
    );
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("roles/broken"))?;
    std::fs::write(
        dir.path().join("roles/broken/role.yaml"),
        "resources:\n  - file: {path: /etc/x, content: '{{undefined_var}}'}\n",
    )?;
    // A copy of the test inventory whose hosts have the broken role, and a
    // lab overlay of that copy (the lab's addresses, keys and known_hosts).
    let text = std::fs::read_to_string(&lab.inventory)?
        .replace(
            "roles_path: [../roles, ../../roles]",
            &format!("roles_path: [{}/roles]", dir.path().display()),
        )
        .replace("roles: [base, e2e, hello]", "roles: [broken]");
    // Without the e2e role, its tenants would be the first error.
    let text = match text.find("\ntenants:") {
        Some(at) => text[..at + 1].to_owned(),
        None => text,
    };
    let copy = dir.path().join("inventory.yaml");
    std::fs::write(&copy, text)?;
    let overlay: String = std::fs::read_to_string(lab.lab.inventory_path())?
        .lines()
        .map(|l| {
            if l.starts_with("overlay_of:") {
                format!("overlay_of: {}\n", copy.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let overlay_path = dir.path().join("lab-overlay.yaml");
    std::fs::write(&overlay_path, overlay)?;
    let out = Command::new(&lab.clou)
        .args(["apply", "--inventory"])
        .arg(&overlay_path)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("role.yaml:2: in `content`: undefined variable `undefined_var`"),
        "{stderr}"
    );
    assert!(stderr.contains("no host was contacted"), "{stderr}");
    // The error came before any connection: the hosts saw nothing.
    assert_eq!(
        lab.ssh_ok(
            "alpha",
            "wc -l < /var/lib/clou/journal.jsonl; ls /var/lib/clou"
        ),
        before
    );
    Ok(())
}
