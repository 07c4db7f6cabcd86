//! `clou upgrade` on the host: what apt would upgrade (a look that changes
//! nothing), and upgrading exactly the versions the admin approved.
//!
//! Upgrades are apt's `upgrade --with-new-pkgs` (everything upgradable,
//! new dependencies such as the next kernel included, never a removal), or
//! `install --only-upgrade NAME...` for the packages asked for. The
//! upgrade itself installs `NAME=VERSION` for each approved package, so
//! that a version published between the look and the batch is not
//! installed unseen; configuration files the admin changed are kept
//! (`--force-confold`, as the package resource does). Each upgraded
//! package is a journal line with its versions before and after.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Instant, SystemTime};

use clou_protocol::{PackageUpgrade, Status, UpgradeReport, UpgradeRequest};

use crate::journal::{Entry, Journal};
use crate::resources::package::{
    Installed, apt_get, check_name, query_installed, removals, run_apt,
};
use crate::resources::{Ctx, Error, RunState};
use crate::system::{Cmd, System};

/// What a simulation says apt would do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Simulation {
    pub upgrades: Vec<PackageUpgrade>,
    pub held_back: Vec<String>,
    pub removals: Vec<String>,
}

/// Answers an upgrade request: a look in check mode, else the upgrade.
pub fn answer(sys: &dyn System, state_dir: &Path, request: &UpgradeRequest) -> UpgradeReport {
    let started = Instant::now();
    let mut run = RunState::default();
    let mut ctx = Ctx {
        sys,
        check: request.check,
        want_diff: false,
        sensitive: false,
        run: &mut run,
    };
    let mut report = UpgradeReport {
        boot_id: boot_id(sys),
        ..UpgradeReport::default()
    };
    let journal = Journal::new(state_dir);
    let outcome = if request.check {
        refresh(&ctx, request.update)
            .and_then(|()| look(&ctx, &request.packages))
            .map(|(sim, not_installed)| {
                report.upgrades = sim.upgrades;
                report.held_back = sim.held_back;
                report.not_installed = not_installed;
            })
    } else {
        upgrade(&mut ctx, request, &journal, &mut report)
    };
    if let Err(err) = outcome {
        report.error = Some(err.to_string());
    }
    report.reboot_required = reboot_required(sys, &report.upgrades);
    report.millis = started.elapsed().as_millis() as u64;
    report
}

/// `apt-get update` when asked: new lists, nothing installed.
fn refresh(ctx: &Ctx<'_>, update: bool) -> Result<(), Error> {
    if update {
        run_apt(ctx, &apt_get(["-q", "update"]).env("LC_ALL", "C"))?;
    }
    Ok(())
}

/// What apt would upgrade now, and which of the asked packages are not
/// installed here.
fn look(ctx: &Ctx<'_>, packages: &[String]) -> Result<(Simulation, Vec<String>), Error> {
    let mut not_installed = Vec::new();
    let cmd = if packages.is_empty() {
        apt_get(["-s", "-q", "upgrade", "--with-new-pkgs"])
    } else {
        for name in packages {
            check_name(name)?;
        }
        let names: Vec<&str> = packages.iter().map(String::as_str).collect();
        let installed = query_installed(ctx, &names)?;
        let mut argv = vec!["-s", "-q", "install", "--only-upgrade"];
        for name in &names {
            if installed.get(*name).is_some_and(Installed::is_installed) {
                argv.push(name);
            } else {
                not_installed.push((*name).to_owned());
            }
        }
        if argv.len() == 4 {
            return Ok((Simulation::default(), not_installed));
        }
        apt_get(argv)
    };
    let out = run_apt(ctx, &cmd.env("LC_ALL", "C"))?;
    let sim = parse_simulation(&out.stdout_text());
    if !sim.removals.is_empty() {
        return Err(Error::Invalid(format!(
            "upgrading would remove {}; clou upgrade never removes packages: look with \
             `apt-get -s upgrade` on the host and decide by hand",
            sim.removals.join(", ")
        )));
    }
    Ok((sim, not_installed))
}

fn upgrade(
    ctx: &mut Ctx<'_>,
    request: &UpgradeRequest,
    journal: &Journal,
    report: &mut UpgradeReport,
) -> Result<(), Error> {
    let mark = |event: &str, extra: serde_json::Value| {
        journal.event(&request.run_id, &request.admin, event, extra);
    };
    // A dpkg run that was cut off (power, a lost session) leaves packages
    // half-configured, and apt refuses to go on until it is finished.
    let audit = ctx.run(&Cmd::new(["dpkg", "--audit"]).env("LC_ALL", "C"))?;
    if !audit.stdout_text().trim().is_empty() {
        let finish = Cmd::new(["dpkg", "--configure", "-a"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C");
        run_apt(ctx, &finish)?;
        report
            .notes
            .push("finished an interrupted dpkg run first (`dpkg --configure -a`)".to_owned());
        mark(
            "upgrade: dpkg --configure -a",
            serde_json::json!({"audit": audit.stdout_text().trim()}),
        );
    }
    refresh(ctx, request.update)?;
    let (sim, not_installed) = look(ctx, &request.packages)?;
    report.held_back = sim.held_back;
    report.not_installed = not_installed;
    let mut todo: Vec<String> = Vec::new();
    for offered in &sim.upgrades {
        let Some(approved) = request.approved.get(&offered.name) else {
            if offered.from.is_some() {
                report.notes.push(format!(
                    "not upgraded: {} {} (not among the approved packages)",
                    offered.name, offered.to
                ));
            }
            continue;
        };
        if *approved != offered.to {
            return Err(Error::Invalid(format!(
                "{} is now offered in {} where {approved} was approved: the lists changed \
                 since the look; nothing was upgraded, run clou upgrade again to see the new \
                 versions",
                offered.name, offered.to
            )));
        }
        // New packages come in as dependencies of the upgraded ones.
        if offered.from.is_some() {
            todo.push(format!("{}={approved}", offered.name));
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = sim.upgrades.iter().map(|u| u.name.clone()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = query_installed(ctx, &name_refs)?;
    let auto_before = auto_marked(ctx)?;
    let mut args = vec![
        "install",
        "-q",
        "-y",
        "--only-upgrade",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    args.extend(todo.iter().map(String::as_str));
    let install = apt_get(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C");
    mark(
        "upgrade: start",
        serde_json::json!({"packages": todo, "command": install.display()}),
    );
    let result = run_apt(ctx, &install);
    // What dpkg has now, whether apt finished or not.
    let after = query_installed(ctx, &name_refs)?;
    for name in &names {
        let now = after.get(name).filter(|i| i.is_installed());
        let was = before.get(name).filter(|i| i.is_installed());
        let Some(now) = now else { continue };
        if was.map(|w| &w.version) == Some(&now.version) {
            continue;
        }
        let from = was.map(|w| w.version.clone());
        let change = match &from {
            Some(from) => format!("upgrade {name} {from} -> {}", now.version),
            None => format!("install {name} {}", now.version),
        };
        let entry = Entry {
            time: crate::clock::rfc3339(SystemTime::now()),
            run_id: &request.run_id,
            admin: &request.admin,
            role: "upgrade",
            resource: &format!("package:{name}"),
            kind: "package",
            status: Status::Changed,
            changes: std::slice::from_ref(&change),
            error: None,
        };
        if let Err(err) = journal.append(&entry) {
            crate::log(&format!(
                "cannot append to {}: {err}",
                journal.path().display()
            ));
        }
        report.upgrades.push(PackageUpgrade {
            name: name.clone(),
            from,
            to: now.version.clone(),
        });
    }
    // `install` marks what it is given as installed by hand; a library
    // that was there as a dependency must stay removable by autoremove.
    let auto_after = auto_marked(ctx)?;
    let lost: Vec<&str> = auto_before
        .difference(&auto_after)
        .filter(|name| after.contains_key(*name))
        .map(String::as_str)
        .collect();
    if !lost.is_empty() {
        let mut argv = vec!["apt-mark", "auto"];
        argv.extend(lost);
        ctx.run_ok(&Cmd::new(argv).env("LC_ALL", "C"))?;
    }
    mark(
        if result.is_ok() {
            "upgrade: end"
        } else {
            "upgrade: failed"
        },
        serde_json::json!({"upgraded": report.upgrades.len()}),
    );
    result.map(|_| ())
}

/// `apt-mark showauto`: the packages installed only as dependencies.
fn auto_marked(ctx: &Ctx<'_>) -> Result<BTreeSet<String>, Error> {
    let out = ctx.run_ok(&Cmd::new(["apt-mark", "showauto"]).env("LC_ALL", "C"))?;
    Ok(out
        .stdout_text()
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Reads `apt-get -s` output (C locale): `Inst NAME [OLD] (NEW ORIGIN
/// [ARCH])` per package (no `[OLD]` for a new one), the "kept back" list,
/// and removals.
pub fn parse_simulation(text: &str) -> Simulation {
    let mut sim = Simulation {
        removals: removals(text),
        ..Simulation::default()
    };
    let mut in_kept_back = false;
    for line in text.lines() {
        if in_kept_back {
            if let Some(names) = line.strip_prefix("  ") {
                sim.held_back
                    .extend(names.split_whitespace().map(str::to_owned));
                continue;
            }
            in_kept_back = false;
        }
        if line.starts_with("The following packages have been kept back") {
            in_kept_back = true;
            continue;
        }
        let Some(rest) = line.strip_prefix("Inst ") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(' ') else {
            continue;
        };
        let (from, rest) = match rest.strip_prefix('[') {
            Some(inner) => match inner.split_once("] ") {
                Some((old, rest)) => (Some(old.to_owned()), rest),
                None => continue,
            },
            None => (None, rest),
        };
        let Some(to) = rest
            .strip_prefix('(')
            .and_then(|r| r.split_whitespace().next())
        else {
            continue;
        };
        sim.upgrades.push(PackageUpgrade {
            name: name.split(':').next().unwrap_or(name).to_owned(),
            from,
            to: to.to_owned(),
        });
    }
    sim
}

/// Why the host needs a reboot: the flag Debian's packages set
/// (`/run/reboot-required`, written by unattended-upgrades' kernel hook
/// among others), or a new kernel in this upgrade.
fn reboot_required(sys: &dyn System, upgrades: &[PackageUpgrade]) -> Option<String> {
    if sys
        .read(Path::new("/run/reboot-required"))
        .ok()
        .flatten()
        .is_some()
    {
        let pkgs = sys
            .read_text("/run/reboot-required.pkgs")
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        return Some(if pkgs.is_empty() {
            "/run/reboot-required is set".to_owned()
        } else {
            format!("/run/reboot-required is set by {pkgs}")
        });
    }
    let kernels: Vec<&str> = upgrades
        .iter()
        .filter(|u| u.name.starts_with("linux-image-"))
        .map(|u| u.name.as_str())
        .collect();
    (!kernels.is_empty()).then(|| format!("a new kernel: {}", kernels.join(", ")))
}

/// The id of the running boot (changes at every boot).
pub fn boot_id(sys: &dyn System) -> String {
    sys.read_text("/proc/sys/kernel/random/boot_id")
        .map(|t| t.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::testing::Recorder;

    const RELEASES: &[&str] = &["bullseye", "bookworm", "trixie"];

    fn fixture(name: &str, release: &str) -> String {
        let path = format!(
            "{}/src/resources/testdata/apt-upgrade/apt-get-simulate-{name}-{release}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn names(sim: &Simulation) -> Vec<&str> {
        sim.upgrades.iter().map(|u| u.name.as_str()).collect()
    }

    #[test]
    fn a_full_upgrade_lists_every_package_with_both_versions_on_every_release() {
        for release in RELEASES {
            let sim = parse_simulation(&fixture("upgrade-with-new-pkgs", release));
            let hello = sim
                .upgrades
                .iter()
                .find(|u| u.name == "clou-lab-hello")
                .unwrap_or_else(|| panic!("{release}: {sim:?}"));
            assert_eq!(hello.from.as_deref(), Some("1.0-1"), "{release}");
            assert_eq!(hello.to, "2.0-1", "{release}");
            assert!(sim.held_back.is_empty() && sim.removals.is_empty());
        }
        let bookworm = parse_simulation(&fixture("upgrade-with-new-pkgs", "bookworm"));
        assert_eq!(
            names(&bookworm),
            ["perl-base", "liblzma5", "clou-lab-hello"]
        );
        assert_eq!(
            bookworm.upgrades[0].to, "5.36.0-7+deb12u4",
            "the version is the first word inside the parentheses"
        );
    }

    #[test]
    fn seventy_two_upgrades_with_epochs_and_rebuilds() {
        let sim = parse_simulation(&fixture("upgrade-with-new-pkgs-72-packages", "bookworm"));
        assert_eq!(sim.upgrades.len(), 72);
        let login = sim.upgrades.iter().find(|u| u.name == "login").unwrap();
        assert_eq!(login.from.as_deref(), Some("1:4.13+dfsg1-1+deb12u1"));
        assert_eq!(login.to, "1:4.13+dfsg1-1+deb12u2");
        let bash = sim.upgrades.iter().find(|u| u.name == "bash").unwrap();
        assert_eq!(bash.to, "5.2.15-2+b13");
        // `Inst perl [...] (...) []`: the trailing dependency note is not a package.
        assert!(sim.upgrades.iter().any(|u| u.name == "perl"));
        let unique: BTreeSet<&str> = names(&sim).into_iter().collect();
        assert_eq!(unique.len(), 72);
    }

    #[test]
    fn held_packages_are_kept_back_and_not_upgraded_on_every_release() {
        for release in RELEASES {
            let sim = parse_simulation(&fixture("upgrade-held", release));
            assert_eq!(sim.held_back, ["clou-lab-hello"], "{release}");
            assert!(!names(&sim).contains(&"clou-lab-hello"), "{release}");
        }
        assert!(
            parse_simulation(&fixture("upgrade-held", "trixie"))
                .upgrades
                .is_empty()
        );
    }

    #[test]
    fn only_upgrade_skips_what_is_not_installed_on_every_release() {
        for release in RELEASES {
            let sim = parse_simulation(&fixture("only-upgrade", release));
            assert_eq!(names(&sim), ["clou-lab-hello"], "{release}");
        }
    }

    fn testdata(name: &str) -> String {
        let path = format!(
            "{}/src/resources/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A bookworm host with clou-lab-hello 1.0-1 whose `dpkg-query`
    /// answers 1.0-1 first and 2.0-1 afterwards, as around a real upgrade.
    struct Upgrading {
        rec: Recorder,
        dpkg: std::cell::RefCell<Vec<String>>,
    }

    impl System for Upgrading {
        fn run(&self, cmd: &Cmd) -> std::io::Result<crate::system::Output> {
            let out = self.rec.run(cmd)?;
            if cmd.argv.first().map(String::as_str) != Some("dpkg-query") {
                return Ok(out);
            }
            let mut answers = self.dpkg.borrow_mut();
            let text = if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            };
            Ok(crate::system::Output {
                code: Some(1),
                stdout: text.into_bytes(),
                stderr: Vec::new(),
            })
        }
    }

    fn host(audit: &str) -> Upgrading {
        let rec = Recorder::new();
        rec.reply(&["dpkg", "--audit"], 0, audit);
        rec.reply(
            &["apt-get", "-o", "DPkg::Lock::Timeout=300", "-s"],
            0,
            &fixture("upgrade-with-new-pkgs", "bookworm"),
        );
        Upgrading {
            rec,
            dpkg: std::cell::RefCell::new(vec![
                testdata("dpkg-query-hello-1.0-installed-bookworm.txt"),
                testdata("dpkg-query-hello-2.0-installed-bookworm.txt"),
            ]),
        }
    }

    fn request(check: bool, approved: &[(&str, &str)]) -> UpgradeRequest {
        UpgradeRequest {
            run_id: "r1".into(),
            admin: "camille@portable".into(),
            check,
            update: false,
            packages: vec![],
            approved: approved
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_look_simulates_only() {
        let sys = host("");
        let dir = tempfile::tempdir().unwrap();
        let report = answer(&sys, dir.path(), &request(true, &[]));
        assert_eq!(report.error, None);
        assert_eq!(report.upgrades.len(), 3);
        assert_eq!(
            sys.rec.commands(),
            ["apt-get -o DPkg::Lock::Timeout=300 -s -q upgrade --with-new-pkgs"]
        );
        assert!(!dir.path().join("journal.jsonl").exists());
    }

    #[test]
    fn the_upgrade_installs_exactly_the_approved_versions_and_journals_them() {
        let sys = host("");
        let dir = tempfile::tempdir().unwrap();
        let report = answer(
            &sys,
            dir.path(),
            &request(
                false,
                &[("clou-lab-hello", "2.0-1"), ("liblzma5", "5.4.1-1+deb12u2")],
            ),
        );
        assert_eq!(report.error, None);
        let commands = sys.rec.commands();
        let install = commands.iter().find(|c| c.contains(" install ")).unwrap();
        assert!(
            install.ends_with(
                "install -q -y --only-upgrade -o Dpkg::Options::=--force-confdef \
                 -o Dpkg::Options::=--force-confold liblzma5=5.4.1-1+deb12u2 clou-lab-hello=2.0-1"
            ),
            "{install}"
        );
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("not upgraded: perl-base"))
        );
        assert_eq!(
            report.upgrades,
            [PackageUpgrade {
                name: "clou-lab-hello".into(),
                from: Some("1.0-1".into()),
                to: "2.0-1".into()
            }]
        );
        let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert!(
            journal.contains(r#""changes":["upgrade clou-lab-hello 1.0-1 -> 2.0-1"]"#),
            "{journal}"
        );
        assert!(journal.contains(r#""event":"upgrade: end""#), "{journal}");
    }

    #[test]
    fn a_changed_candidate_upgrades_nothing() {
        let sys = host("");
        let dir = tempfile::tempdir().unwrap();
        let report = answer(
            &sys,
            dir.path(),
            &request(false, &[("clou-lab-hello", "1.5-1")]),
        );
        let error = report.error.unwrap();
        assert!(
            error.contains("clou-lab-hello is now offered in 2.0-1 where 1.5-1 was approved"),
            "{error}"
        );
        assert!(!sys.rec.commands().iter().any(|c| c.contains(" install ")));
        assert!(report.upgrades.is_empty());
    }

    #[test]
    fn an_interrupted_dpkg_run_is_finished_first() {
        let sys = host(&testdata(
            "apt-upgrade/dpkg-audit-hello-unpacked-trixie.txt",
        ));
        let dir = tempfile::tempdir().unwrap();
        let report = answer(
            &sys,
            dir.path(),
            &request(false, &[("clou-lab-hello", "2.0-1")]),
        );
        assert_eq!(report.error, None);
        let commands = sys.rec.commands();
        let configure = commands
            .iter()
            .position(|c| c == "dpkg --configure -a")
            .unwrap();
        let install = commands
            .iter()
            .position(|c| c.contains(" install "))
            .unwrap();
        assert!(configure < install);
        assert!(
            report.notes[0].contains("interrupted dpkg run"),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn a_new_kernel_needs_a_reboot() {
        let sys = Recorder::new();
        let upgrades = [PackageUpgrade {
            name: "linux-image-6.1.0-28-amd64".into(),
            from: None,
            to: "6.1.119-1".into(),
        }];
        assert_eq!(
            reboot_required(&sys, &upgrades).as_deref(),
            Some("a new kernel: linux-image-6.1.0-28-amd64")
        );
        assert_eq!(reboot_required(&sys, &[]), None);
    }
}
