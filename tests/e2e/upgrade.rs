//! `clou upgrade` on the lab: the lab's own package, clou-lab-hello, goes
//! from 1.0 to 2.0 host by host, and 2.0 refuses to start on bravo. What
//! each host ends up with is read over ssh (dpkg, systemd, the journal),
//! not taken from clou's summary.

use libtest_mimic::Failed;

use crate::lab;

/// In order: each starts from what the one before left.
pub const TESTS: &[(&str, crate::Test)] = &[
    (
        "upgrade::a_version_change_applied_in_batches_stops_at_the_failing_host",
        a_version_change_applied_in_batches_stops_at_the_failing_host,
    ),
    (
        "upgrade::the_look_changes_nothing_and_nothing_runs_without_a_yes",
        the_look_changes_nothing_and_nothing_runs_without_a_yes,
    ),
    (
        "upgrade::a_failing_batch_stops_the_rollout_and_later_hosts_are_untouched",
        a_failing_batch_stops_the_rollout_and_later_hosts_are_untouched,
    ),
    (
        "upgrade::a_rerun_refuses_the_broken_host_and_resumes_without_it",
        a_rerun_refuses_the_broken_host_and_resumes_without_it,
    ),
    (
        "upgrade::a_host_that_needs_a_reboot_is_rebooted_and_waited_for",
        a_host_that_needs_a_reboot_is_rebooted_and_waited_for,
    ),
    (
        "upgrade::named_packages_in_shares_of_the_fleet_go_on_past_a_tolerated_failure",
        named_packages_in_shares_of_the_fleet_go_on_past_a_tolerated_failure,
    ),
];

/// Fast gates: the lab's service fails at once or not at all.
const GATE: &[&str] = &["--settle", "2", "--gate-timeout", "6"];

fn upgrade(args: &[&str]) -> (Option<i32>, String, String) {
    let Ok(lab) = lab() else {
        return (None, String::new(), "no lab".into());
    };
    let mut full = vec!["upgrade", "--in-lab"];
    full.extend_from_slice(args);
    let out = lab.clou(&full);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The installed version of clou-lab-hello, and whether its service runs
/// (and which version it says it is).
fn hello(host: &str) -> Result<(String, String), Failed> {
    let lab = lab()?;
    let installed = lab.ssh_ok(host, "dpkg-query -W -f '${Version}' clou-lab-hello");
    let running = lab.ssh(
        host,
        "systemctl is-active clou-lab-hello && cat /run/clou-lab-hello/version",
    );
    Ok((
        installed.trim().to_owned(),
        String::from_utf8_lossy(&running.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    ))
}

/// Every host on clou-lab-hello 1.0, running; bravo refuses 2.0.
fn start_from_version_one() -> Result<(), Failed> {
    let lab = lab()?;
    lab.ssh_ok(
        "bravo",
        "mkdir -p /etc/clou-lab-hello && touch /etc/clou-lab-hello/fail-2.0",
    );
    lab.apply(&["-e", "hello_version=1.0-1"]).expect_code(0);
    for host in ["alpha", "bravo", "charlie"] {
        assert_eq!(
            hello(host)?,
            ("1.0-1".to_owned(), "active 1.0".to_owned()),
            "{host}"
        );
    }
    Ok(())
}

/// An application version change is `clou apply -e VERSION --serial 1`:
/// alpha takes 2.0 and passes its gate, bravo's 2.0 refuses to start, so
/// the rollout stops there and charlie keeps 1.0 (checked over ssh).
fn a_version_change_applied_in_batches_stops_at_the_failing_host() -> Result<(), Failed> {
    let lab = lab()?;
    start_from_version_one()?;
    let run = lab.apply(&[
        "--serial",
        "1",
        "--settle",
        "1",
        "--gate-timeout",
        "5",
        "-e",
        "hello_version=2.0-1",
    ]);
    run.expect_code(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("batch 1/3: alpha"), "{said}");
    assert!(said.contains("alpha: healthy"), "{said}");
    assert!(
        said.contains("the rollout stopped after batch 2 of 3: 1 host failed, --max-fail is 0"),
        "{said}"
    );
    assert!(!said.contains("batch 3/3"), "{said}");
    assert_eq!(
        hello("alpha")?,
        ("2.0-1".to_owned(), "active 2.0".to_owned())
    );
    assert_eq!(hello("bravo")?.0, "2.0-1");
    assert_eq!(
        hello("charlie")?,
        ("1.0-1".to_owned(), "active 1.0".to_owned())
    );
    Ok(())
}

fn the_look_changes_nothing_and_nothing_runs_without_a_yes() -> Result<(), Failed> {
    let lab = lab()?;
    start_from_version_one()?;
    let before: Vec<String> = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|h| lab.listing(h))
        .collect();
    let lists = lab.ssh_ok("alpha", "stat -c %Y /var/lib/apt/lists/partial");

    let (code, stdout, stderr) = upgrade(&["--check"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for host in ["alpha", "bravo", "charlie"] {
        assert!(stdout.contains(host), "{stdout}");
    }
    assert!(
        stdout.contains("clou-lab-hello 1.0-1 -> 2.0-1"),
        "the look shows each package with both versions:\n{stdout}"
    );
    assert!(
        stdout.contains("3 batches (alpha | bravo | charlie)"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was changed"), "{stdout}");

    // No terminal to ask on and no --yes: refused before anything.
    let (code, stdout, stderr) = upgrade(&[]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("again with --yes"), "{stderr}");

    for (host, listing) in ["alpha", "bravo", "charlie"].iter().zip(&before) {
        assert_eq!(&lab.listing(host), listing, "{host} changed");
        assert_eq!(hello(host)?.0, "1.0-1", "{host}");
    }
    // --check did not even refresh the package lists.
    assert_eq!(
        lab.ssh_ok("alpha", "stat -c %Y /var/lib/apt/lists/partial"),
        lists
    );
    Ok(())
}

fn a_failing_batch_stops_the_rollout_and_later_hosts_are_untouched() -> Result<(), Failed> {
    let lab = lab()?;
    let mut args = vec!["--yes", "--serial", "1"];
    args.extend_from_slice(GATE);
    let (code, stdout, stderr) = upgrade(&args);
    assert_eq!(
        code,
        Some(1),
        "a failed host fails the run:\n{stdout}{stderr}"
    );

    // alpha, batch 1: upgraded, and its service runs 2.0.
    assert_eq!(
        hello("alpha")?,
        ("2.0-1".to_owned(), "active 2.0".to_owned())
    );
    // bravo, batch 2: upgraded, but 2.0 does not start there.
    let (installed, running) = hello("bravo")?;
    assert_eq!(installed, "2.0-1");
    assert!(!running.starts_with("active"), "bravo: {running}");
    // charlie, batch 3: never touched.
    assert_eq!(
        hello("charlie")?,
        ("1.0-1".to_owned(), "active 1.0".to_owned())
    );
    let journal = lab.ssh_ok("charlie", "cat /var/lib/clou/journal.jsonl");
    assert!(!journal.contains("\"upgrade: start\""), "{journal}");

    // The summary says where it stopped and why, with the unit's last words.
    assert!(stdout.contains("stopped after batch 2 of 3"), "{stdout}");
    assert!(stdout.contains("bravo failed (gate)"), "{stdout}");
    assert!(
        stdout.contains("refusing to start: /etc/clou-lab-hello/fail-2.0 exists"),
        "the failing unit's last log lines:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("charlie ") && l.contains("not started")),
        "charlie is reported untouched:\n{stdout}"
    );

    // Before and after, in the host's own journal.
    let journal = lab.ssh_ok("alpha", "cat /var/lib/clou/journal.jsonl");
    assert!(
        journal.contains("upgrade clou-lab-hello 1.0-1 -> 2.0-1"),
        "{journal}"
    );
    Ok(())
}

fn a_rerun_refuses_the_broken_host_and_resumes_without_it() -> Result<(), Failed> {
    let lab = lab()?;
    let mut args = vec!["--yes"];
    args.extend_from_slice(GATE);
    // bravo is broken: nothing starts, charlie stays on 1.0.
    let (code, stdout, stderr) = upgrade(&args);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("REFUSED, already unhealthy"), "{stdout}");
    assert!(stdout.contains("--limit '!bravo'"), "{stdout}");
    assert_eq!(hello("charlie")?.0, "1.0-1");

    // Without bravo, the rollout goes on where it stopped.
    let mut without = args.clone();
    without.extend_from_slice(&["--limit", "!bravo"]);
    let (code, stdout, stderr) = upgrade(&without);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("alpha ") && l.ends_with("nothing to upgrade")),
        "{stdout}"
    );
    assert_eq!(
        hello("charlie")?,
        ("2.0-1".to_owned(), "active 2.0".to_owned())
    );

    // bravo fixed by hand: the whole fleet is done, nothing left to do.
    lab.ssh_ok(
        "bravo",
        "rm /etc/clou-lab-hello/fail-2.0 && systemctl restart clou-lab-hello",
    );
    let (code, stdout, stderr) = upgrade(&args);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("nothing to upgrade"), "{stdout}");
    assert!(!stdout.contains("batch 1/"), "{stdout}");
    Ok(())
}

fn a_host_that_needs_a_reboot_is_rebooted_and_waited_for() -> Result<(), Failed> {
    let lab = lab()?;
    // What a kernel package's postinst runs: unattended-upgrades' hook sets
    // Debian's reboot flag.
    lab.ssh_ok(
        "charlie",
        "DPKG_MAINTSCRIPT_PACKAGE=linux-image-6.12.99-clou-lab DPKG_MAINTSCRIPT_NAME=postinst \
         /etc/kernel/postinst.d/unattended-upgrades 6.12.99-clou-lab && test -e /run/reboot-required",
    );
    let boot_id = lab.ssh_ok("charlie", "cat /proc/sys/kernel/random/boot_id");

    // Without --reboot it is only said.
    let (code, stdout, stderr) = upgrade(&["--check", "--limit", "charlie"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("needs a reboot"), "{stdout}");
    assert!(stdout.contains("pass --reboot"), "{stdout}");

    let mut args = vec!["--yes", "--reboot", "--limit", "charlie"];
    args.extend_from_slice(GATE);
    let (code, stdout, stderr) = upgrade(&args);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("charlie ") && l.ends_with("upgraded, rebooted")),
        "{stdout}"
    );
    let after = lab.ssh_ok("charlie", "cat /proc/sys/kernel/random/boot_id");
    assert_ne!(after, boot_id, "the boot id changed");
    lab.ssh_ok("charlie", "test ! -e /run/reboot-required");
    assert_eq!(
        hello("charlie")?,
        ("2.0-1".to_owned(), "active 2.0".to_owned()),
        "the host came back with its services"
    );
    let journal = lab.ssh_ok(
        "charlie",
        "grep '\"event\":\"reboot\"' /var/lib/clou/journal.jsonl",
    );
    assert!(
        journal.contains("linux-image-6.12.99-clou-lab"),
        "{journal}"
    );
    Ok(())
}

/// `--packages` upgrades only what it names, `--serial 50%` makes batches
/// of two hosts and one, and `--max-fail 1` tolerates bravo's failure: the
/// rollout goes on to charlie, and the run still says a host failed.
fn named_packages_in_shares_of_the_fleet_go_on_past_a_tolerated_failure() -> Result<(), Failed> {
    let lab = lab()?;
    start_from_version_one()?;
    let mut args = vec![
        "--yes",
        "--packages",
        "clou-lab-hello",
        "--serial",
        "50%",
        "--max-fail",
        "1",
    ];
    args.extend_from_slice(GATE);
    let (code, stdout, stderr) = upgrade(&args);
    assert_eq!(code, Some(1), "bravo failed:\n{stdout}{stderr}");
    assert!(stdout.contains("batch 1/2: alpha, bravo"), "{stdout}");
    assert!(stdout.contains("batch 2/2: charlie"), "{stdout}");
    assert!(stdout.contains("bravo failed (gate)"), "{stdout}");

    for host in ["alpha", "charlie"] {
        assert_eq!(
            hello(host)?,
            ("2.0-1".to_owned(), "active 2.0".to_owned()),
            "{host}"
        );
    }
    let (installed, running) = hello("bravo")?;
    assert_eq!(installed, "2.0-1");
    assert!(!running.starts_with("active"), "bravo: {running}");

    // Before and after, in the host's journal.
    let journal = lab.ssh_ok(
        "charlie",
        "grep -F '\"upgrade ' /var/lib/clou/journal.jsonl | tail -n 5",
    );
    let last = journal.lines().last().unwrap_or_default();
    assert!(
        last.contains("upgrade clou-lab-hello 1.0-1 -> 2.0-1"),
        "{journal}"
    );
    Ok(())
}
