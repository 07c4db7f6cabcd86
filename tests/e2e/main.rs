//! End-to-end tests: `clou` run as a user would, against real Debian hosts
//! booted by the lab, with what each host ends up like checked over ssh.
//!
//! One binary with a custom harness (libtest-mimic): the lab is booted
//! once, lazily, shared by the tests in order, and torn down at the end,
//! where the built-in harness has no place for a teardown.

use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};

use clou_tests::TestLab;
use libtest_mimic::{Arguments, Failed, Trial};

/// `clou apply`: converging the lab's hosts, checked over ssh.
mod apply;
/// `clou disk replace`: a btrfs RAID1 disk replaced on the lab.
mod disk;
/// The Girofle fleet's roles, on a lab of its eight hosts.
mod fleet;
/// `clou status` and the health timer: probes and alerts on the lab.
mod health;
/// `clou lab`: booting the replica, reaching its hosts, tearing it down.
mod lab;
/// `clou onboard`: the lab's spare taken in.
mod onboard;
/// `clou upgrade`: package upgrades in gated batches, reboots.
mod upgrade;
/// `clou usage`: the usage table and its dated snapshots.
mod usage;

/// The lab every test shares, booted on first use.
static LAB: OnceLock<Result<TestLab, String>> = OnceLock::new();
/// Whether the lab was torn down already (by the last test).
static DOWN: Mutex<bool> = Mutex::new(false);

/// The shared lab; boots it the first time.
pub fn lab() -> Result<&'static TestLab, Failed> {
    let lab = LAB.get_or_init(|| {
        clou_tests::require_lab()?;
        let lab = TestLab::new("tests/inventories/three-releases.yaml", "clou-e2e")?;
        lab.up_fresh()?;
        Ok(lab)
    });
    lab.as_ref().map_err(|e| Failed::from(e.as_str()))
}

/// Records that the lab was taken down by a test.
pub fn mark_down() {
    if let Ok(mut down) = DOWN.lock() {
        *down = true;
    }
}

type Test = fn() -> Result<(), Failed>;

/// The three-release test after which the fleet lab converges in the
/// background: the last of that lab's converges that keep both processors
/// busy (see `fleet::converge_in_background`).
const FLEET_AFTER: &str = "apply::first_apply_converges";

/// Runs one test and prints how long it took: the suite has a time budget
/// (25 minutes in CI), and this says where it goes.
fn timed(name: &str, test: Test) -> Result<(), Failed> {
    let start = std::time::Instant::now();
    let result = test();
    eprintln!("e2e-time {:7.1} s  {name}", start.elapsed().as_secs_f64());
    result
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // The tests share one lab and the last one takes it down: keep order.
    args.test_threads = Some(1);
    let skip = clou_tests::skip_requested();
    if skip {
        eprintln!(
            "{}=1: the end-to-end tests are skipped",
            clou_tests::SKIP_VAR
        );
    }
    // The lab tests, then apply's on the same hosts, then the teardown.
    let mut tests: Vec<(&str, Test)> = lab::TESTS.to_vec();
    tests.extend_from_slice(apply::TESTS);
    tests.extend_from_slice(health::TESTS);
    tests.extend_from_slice(disk::TESTS);
    tests.extend_from_slice(usage::TESTS);
    tests.extend_from_slice(upgrade::TESTS);
    tests.extend_from_slice(onboard::TESTS);
    tests.extend_from_slice(lab::LAST);
    // The fleet's own lab, once the three-release tests are done; it boots
    // and converges meanwhile, when any of its tests is to run.
    tests.extend(fleet::tests());
    let trials: Vec<Trial> = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::test(name, move || {
                let result = timed(name, test);
                if name == FLEET_AFTER {
                    fleet::let_converge();
                }
                result
            })
            .with_ignored_flag(skip)
        })
        .collect();
    let runs = |name: &str| {
        trials
            .iter()
            .any(|t| t.name().starts_with(name) && !args.is_filtered_out(t))
    };
    if !skip && !args.list && runs("fleet::") {
        fleet::converge_in_background();
        if !runs(FLEET_AFTER) {
            fleet::let_converge();
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    let down = DOWN.lock().map(|d| *d).unwrap_or(true);
    if let Some(Ok(lab)) = LAB.get()
        && !down
    {
        let out = lab.clou(&["lab", "down", "--purge"]);
        if !out.status.success() {
            eprintln!(
                "tearing the lab down failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return ExitCode::FAILURE;
        }
    }
    if let Some(fleet) = fleet::booted() {
        let out = fleet.clou(&["lab", "down", "--purge"]);
        if !out.status.success() {
            eprintln!(
                "tearing the fleet lab down failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return ExitCode::FAILURE;
        }
    }
    conclusion.exit_code()
}
