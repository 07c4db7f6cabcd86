//! `clou disk replace` on the host: look at a disk (its identity, what uses
//! it, whether the rest holds a copy of it), check the new disk, then
//! replace it in the btrfs filesystem that uses it with `btrfs replace`,
//! follow it, and verify.
//!
//! The replacement's state is `STATE_DIR/disk-replace.json` from its start
//! to its verification: running the command again after an interruption
//! (a lost connection, a reboot of the controller) follows the replacement
//! under way instead of starting another. btrfs itself resumes a replace
//! interrupted by a reboot of the host when the filesystem is mounted.
//!
//! A disk in mdadm arrays is replaced by [`mdadm`]: out of its arrays,
//! swapped, partitioned like its twin, back in, resynced, verified.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use clou_protocol::{DiskReport, DiskRequest, DiskStep, DiskUse};
use serde::{Deserialize, Serialize};

mod mdadm;

use crate::journal::Journal;
use crate::probes::btrfs::{self, FsShow};
use crate::probes::disks::{Disks, human_size};
use crate::system::{Cmd, System};

const STATE: &str = "disk-replace.json";

/// Profiles that keep two copies or more (or parity) of every block.
const REDUNDANT: &[&str] = &["raid1", "raid1c3", "raid1c4", "raid10", "raid5", "raid6"];

/// What is under way, kept on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum State {
    Btrfs(Underway),
    Mdadm(mdadm::Underway),
}

impl State {
    fn disk(&self) -> &str {
        match self {
            State::Btrfs(u) => &u.disk,
            State::Mdadm(u) => &u.disk,
        }
    }
}

/// A btrfs replacement under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Underway {
    run_id: String,
    admin: String,
    disk: String,
    new: String,
    mount: String,
    started: String,
}

/// Where the kernel says which md arrays there are.
const MDSTAT: &str = "/proc/mdstat";

/// Answers one step.
pub fn answer(sys: &dyn System, state_dir: &Path, request: &DiskRequest) -> DiskReport {
    answer_with(sys, state_dir, Path::new(MDSTAT), request)
}

/// [`answer`], with /proc/mdstat read from `mdstat` (tests).
fn answer_with(
    sys: &dyn System,
    state_dir: &Path,
    mdstat: &Path,
    request: &DiskRequest,
) -> DiskReport {
    let mut report = DiskReport::default();
    if let Err(why) = step(sys, state_dir, mdstat, request, &mut report) {
        report.error = Some(why);
    }
    report
}

fn step(
    sys: &dyn System,
    state_dir: &Path,
    mdstat: &Path,
    request: &DiskRequest,
    report: &mut DiskReport,
) -> Result<(), String> {
    let state = load(state_dir);
    // One replacement at a time: a second one would overwrite the state
    // of the first, left halfway.
    if let Some(other) = state.as_ref().filter(|u| u.disk() != request.disk) {
        return Err(format!(
            "the replacement of {} is under way on this host: finish it first (run clou disk \
             replace with {} again)",
            other.disk(),
            other.disk()
        ));
    }
    if let Some(State::Mdadm(u)) = state {
        return mdadm::follow(sys, state_dir, mdstat, request, u, report);
    }
    let underway = match state {
        Some(State::Btrfs(u)) => Some(u),
        _ => None,
    };
    if underway.is_none() && md_member(sys, mdstat, &request.disk).is_some() {
        identify(sys, &request.disk, report)?;
        return mdadm::begin(sys, state_dir, mdstat, request, report);
    }
    if let Some(u) = &underway {
        report.under_way = Some(format!(
            "{} -> {} in {}, started {} by {}",
            u.disk, u.new, u.mount, u.started, u.admin
        ));
        report.commands = commands(&u.disk, &u.new, &u.mount);
    } else {
        look(sys, request, report)?;
    }
    match request.step {
        DiskStep::Look => Ok(()),
        DiskStep::Start => {
            if underway.is_some() || report.refusal.is_some() {
                return Ok(());
            }
            let (Some(new), Some(fs)) = (&request.new, report.uses.first()) else {
                return Err("give the new disk (--new)".into());
            };
            let start = Cmd::new(["btrfs", "replace", "start", &request.disk, new, &fs.name])
                .env("LC_ALL", "C");
            let u = Underway {
                run_id: request.run_id.clone(),
                admin: request.admin.clone(),
                disk: request.disk.clone(),
                new: new.clone(),
                mount: fs.name.clone(),
                started: crate::clock::rfc3339(SystemTime::now()),
            };
            save(sys, state_dir, Some(&State::Btrfs(u.clone())))?;
            run_ok(sys, &start)?;
            mark(state_dir, &u, "disk replace: started", &start.display());
            report.under_way = Some(format!("{} -> {} in {}", u.disk, u.new, u.mount));
            Ok(())
        }
        DiskStep::Progress => {
            let Some(u) = underway else {
                return Err(format!("no replacement of {} is under way", request.disk));
            };
            progress(sys, state_dir, &u, report)
        }
    }
}

/// The disk's size and what tells it apart (model, serial, by-id path),
/// into the report.
fn identify(sys: &dyn System, disk: &str, report: &mut DiskReport) -> Result<u64, String> {
    let size = block_size(sys, disk).ok_or_else(|| {
        format!("{disk} is not a block device on this host (`blockdev --getsize64` failed)")
    })?;
    let disks = Disks::read(sys);
    let identity = disks.identity(disk);
    report.identity.insert("device".into(), disk.to_owned());
    report.identity.insert("capacity".into(), human_size(size));
    for (key, value) in [
        ("model", identity.model),
        ("serial", identity.serial),
        ("by_id", identity.by_id),
    ] {
        if let Some(value) = value {
            report.identity.insert(key.into(), value);
        }
    }
    Ok(size)
}

/// Identity, uses, redundancy and the new disk's fitness.
fn look(sys: &dyn System, request: &DiskRequest, report: &mut DiskReport) -> Result<(), String> {
    let disk = &request.disk;
    let size = identify(sys, disk, report)?;
    report.uses = btrfs_uses(sys, disk)?;
    report.refusal = refusal(disk, &report.uses);
    if let Some(new) = &request.new
        && report.refusal.is_none()
    {
        match check_new(sys, disk, new, size) {
            Ok(new_size) => report.new_size = Some(new_size),
            Err(why) => report.refusal = Some(why),
        }
        if let Some(fs) = report.uses.first() {
            report.commands = commands(disk, new, &fs.name);
        }
    }
    Ok(())
}

/// Why the disk cannot be replaced, if it cannot.
fn refusal(disk: &str, uses: &[DiskUse]) -> Option<String> {
    match uses {
        [] => Some(format!(
            "no mounted btrfs filesystem uses {disk}: there is nothing to move off it (mount \
             the filesystem first, or, if it is unused, just take it out)"
        )),
        [fs] if !fs.redundant => Some(format!(
            "{} ({}) keeps only one copy of its data: removing {disk} would lose data; \
             convert it first (`btrfs balance start -dconvert=raid1 -mconvert=raid1 {}`) or \
             copy the data off",
            fs.name, fs.layout, fs.name
        )),
        [_] => None,
        _ => Some(format!(
            "{disk} is used by several filesystems: replace it by hand, one at a time"
        )),
    }
}

/// The btrfs filesystems mounted from a set of devices that includes
/// `disk`, one per filesystem.
fn btrfs_uses(sys: &dyn System, disk: &str) -> Result<Vec<DiskUse>, String> {
    let mounts = btrfs::parse_mountinfo(&sys.read_text("/proc/self/mountinfo").unwrap_or_default());
    let mut seen = Vec::new();
    let mut uses = Vec::new();
    for mount in mounts {
        let key = mount.dev.clone().unwrap_or_else(|| mount.source.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let show = run_ok(
            sys,
            &Cmd::new(["btrfs", "filesystem", "show", &mount.target]).env("LC_ALL", "C"),
        )?;
        let show = btrfs::parse_filesystem_show(&show);
        if !show.devices.iter().any(|d| d.path.as_deref() == Some(disk)) {
            continue;
        }
        let df = run_ok(
            sys,
            &Cmd::new(["btrfs", "filesystem", "df", &mount.target]).env("LC_ALL", "C"),
        )?;
        let profiles = parse_df(&df);
        uses.push(DiskUse {
            kind: "btrfs".into(),
            name: mount.target.clone(),
            layout: profiles
                .iter()
                .map(|(kind, profile)| format!("{kind} {profile}"))
                .collect::<Vec<_>>()
                .join(", "),
            devices: show.devices.iter().filter_map(|d| d.path.clone()).collect(),
            redundant: redundant(&show, &profiles),
        });
    }
    Ok(uses)
}

/// Every block has a copy elsewhere: data and metadata in a redundant
/// profile, and no device missing already.
fn redundant(show: &FsShow, profiles: &BTreeMap<String, String>) -> bool {
    let safe = |kind: &str| {
        profiles
            .get(kind)
            .is_some_and(|p| REDUNDANT.contains(&p.as_str()))
    };
    safe("data") && safe("metadata") && show.missing() == 0 && show.devices.len() >= 2
}

/// `btrfs filesystem df`: `Data, RAID1: total=...` -> data: raid1.
pub fn parse_df(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (head, _) = line.split_once(':')?;
            let (kind, profile) = head.split_once(", ")?;
            let kind = kind.trim().to_ascii_lowercase();
            matches!(kind.as_str(), "data" | "metadata" | "system")
                .then(|| (kind, profile.trim().to_ascii_lowercase()))
        })
        .collect()
}

/// The md array `disk` (or one of its partitions) belongs to, from
/// /proc/mdstat.
fn md_member(sys: &dyn System, mdstat: &Path, disk: &str) -> Option<String> {
    md_array_of(&read_mdstat(sys, mdstat), disk)
}

fn read_mdstat(sys: &dyn System, mdstat: &Path) -> String {
    sys.read_text(&mdstat.to_string_lossy()).unwrap_or_default()
}

/// In /proc/mdstat's text: the array with `disk` or a partition of it
/// (`sda1`, `nvme0n1p2`) among its members.
pub fn md_array_of(mdstat: &str, disk: &str) -> Option<String> {
    let arrays = crate::probes::mdraid::parse_mdstat(mdstat);
    mdadm::members_of(&arrays, disk)
        .into_iter()
        .next()
        .map(|m| m.array)
}

/// The new disk must be another block device, blank (no partition table,
/// no filesystem signature) and at least as large.
fn check_new(sys: &dyn System, disk: &str, new: &str, size: u64) -> Result<u64, String> {
    if new == disk {
        return Err(format!("the new disk {new} is the one to take out"));
    }
    blank_and_large(sys, new, size).map_err(|why| not_blank(new, disk, size, why))
}

/// Why `new` cannot take `disk`'s place, in words.
fn not_blank(new: &str, disk: &str, size: u64, why: Blankness) -> String {
    match why {
        Blankness::Absent => format!("{new} is not a block device on this host"),
        Blankness::TooSmall(new_size) => format!(
            "{new} holds {} and {disk} {}: the new disk must be at least as large",
            human_size(new_size),
            human_size(size)
        ),
        Blankness::Holds(what) => format!(
            "{new} is not blank ({what}): clou only uses an empty disk; if you are sure it holds \
             nothing of value, `wipefs -a {new}` it first"
        ),
        Blankness::Unknown(why) => why,
    }
}

/// The replacement's commands, as run.
fn commands(disk: &str, new: &str, mount: &str) -> Vec<String> {
    vec![
        format!("btrfs replace start {disk} {new} {mount}"),
        format!("btrfs replace status -1 {mount}   (until it has finished)"),
        format!("btrfs filesystem resize DEVID:max {mount}   (when {new} is larger)"),
        format!("btrfs device stats {mount}   (every counter must be 0)"),
    ]
}

/// What `btrfs replace status -1` says.
#[derive(Debug, PartialEq)]
pub enum ReplaceStatus {
    NeverStarted,
    Running(f64),
    Finished,
    Canceled(String),
}

pub fn parse_replace_status(text: &str) -> Option<ReplaceStatus> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    if line.starts_with("Never started") {
        return Some(ReplaceStatus::NeverStarted);
    }
    if let Some((percent, _)) = line.split_once("% done") {
        return percent.trim().parse().ok().map(ReplaceStatus::Running);
    }
    if line.contains("finished on") {
        return Some(ReplaceStatus::Finished);
    }
    if line.contains("canceled on") || line.contains("suspended") {
        return Some(ReplaceStatus::Canceled(line.to_owned()));
    }
    None
}

fn progress(
    sys: &dyn System,
    state_dir: &Path,
    u: &Underway,
    report: &mut DiskReport,
) -> Result<(), String> {
    let cmd = Cmd::new(["btrfs", "replace", "status", "-1", &u.mount]).env("LC_ALL", "C");
    let text = run_ok(sys, &cmd)?;
    match parse_replace_status(&text) {
        // Just started: the kernel has not reported yet.
        Some(ReplaceStatus::NeverStarted) => report.percent = Some(0.0),
        Some(ReplaceStatus::Running(p)) => report.percent = Some(p),
        Some(ReplaceStatus::Canceled(line)) => {
            save(sys, state_dir, None)?;
            mark(state_dir, u, "disk replace: canceled", &line);
            return Err(format!(
                "btrfs stopped the replacement: {line}; {} is still in use and nothing was lost; \
                 `dmesg` says why (often: too little free space on the filesystem)",
                u.disk
            ));
        }
        Some(ReplaceStatus::Finished) => {
            report.percent = Some(100.0);
            report.verified = verify(sys, u)?;
            save(sys, state_dir, None)?;
            mark(
                state_dir,
                u,
                "disk replace: finished",
                &report.verified.join("; "),
            );
            report.finished = true;
        }
        None => {
            return Err(format!(
                "`{}` said something unexpected: {text}",
                cmd.display()
            ));
        }
    }
    Ok(())
}

/// After the copy: the new disk in, the old out, every counter at 0, and
/// the new disk's whole capacity in use.
fn verify(sys: &dyn System, u: &Underway) -> Result<Vec<String>, String> {
    let show_cmd = Cmd::new(["btrfs", "filesystem", "show", &u.mount]).env("LC_ALL", "C");
    let show = btrfs::parse_filesystem_show(&run_ok(sys, &show_cmd)?);
    let paths: Vec<&str> = show
        .devices
        .iter()
        .filter_map(|d| d.path.as_deref())
        .collect();
    if !paths.contains(&u.new.as_str()) || paths.contains(&u.disk.as_str()) {
        return Err(format!(
            "after the replacement, {} lists {}: expected {} in place of {}",
            u.mount,
            paths.join(", "),
            u.new,
            u.disk
        ));
    }
    let mut lines = vec![format!("{} now uses {}", u.mount, paths.join(" and "))];
    if let Some(devid) = show
        .devices
        .iter()
        .find(|d| d.path.as_deref() == Some(u.new.as_str()))
        .map(|d| d.devid)
    {
        let resize = Cmd::new([
            "btrfs".to_owned(),
            "filesystem".into(),
            "resize".into(),
            format!("{devid}:max"),
            u.mount.clone(),
        ])
        .env("LC_ALL", "C");
        run_ok(sys, &resize)?;
        lines.push(format!("{} uses all of {}", u.mount, u.new));
    }
    let stats_cmd = Cmd::new(["btrfs", "device", "stats", &u.mount]).env("LC_ALL", "C");
    let stats = btrfs::parse_device_stats(&run_ok(sys, &stats_cmd)?);
    let bad: Vec<String> = stats
        .iter()
        .flat_map(|d| {
            d.counters
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(move |(k, v)| format!("{} {k} {v}", d.device))
        })
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "error counters after the replacement: {}",
            bad.join(", ")
        ));
    }
    lines.push("every device's error counters are 0".into());
    Ok(lines)
}

fn block_size(sys: &dyn System, dev: &str) -> Option<u64> {
    let out = sys.run(&Cmd::new(["blockdev", "--getsize64", dev])).ok()?;
    out.success()
        .then(|| out.stdout_text().trim().parse().ok())
        .flatten()
}

fn run_ok(sys: &dyn System, cmd: &Cmd) -> Result<String, String> {
    match sys.run(cmd) {
        Ok(out) if out.success() => Ok(out.stdout_text()),
        Ok(out) => Err(format!("`{}` failed: {}", cmd.display(), out.tail())),
        Err(e) => Err(format!("cannot run `{}`: {e}", cmd.display())),
    }
}

fn load(state_dir: &Path) -> Option<State> {
    let text = std::fs::read(state_dir.join(STATE)).ok()?;
    serde_json::from_slice(&text)
        .ok()
        // Written before mdadm came: a btrfs replacement.
        .or_else(|| serde_json::from_slice(&text).ok().map(State::Btrfs))
}

fn save(sys: &dyn System, state_dir: &Path, u: Option<&State>) -> Result<(), String> {
    let path = state_dir.join(STATE);
    match u {
        None => match sys.remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot remove {}: {e}", path.display()))
            }
            _ => Ok(()),
        },
        Some(u) => {
            let text = serde_json::to_vec_pretty(u).map_err(|e| e.to_string())?;
            let owner = sys.stat(state_dir).ok().flatten();
            let perms = crate::system::Perms {
                uid: owner.map_or(0, |s| s.uid),
                gid: owner.map_or(0, |s| s.gid),
                mode: 0o600,
            };
            sys.write_atomic(&path, &text, perms)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
    }
}

fn mark(state_dir: &Path, u: &Underway, event: &str, detail: &str) {
    Journal::new(state_dir).event(
        &u.run_id,
        &u.admin,
        event,
        serde_json::json!({
            "disk": u.disk,
            "new": u.new,
            "filesystem": u.mount,
            "detail": detail,
        }),
    );
}

/// The new disk's size when it is blank; why not otherwise.
fn blank_and_large(sys: &dyn System, new: &str, size: u64) -> Result<u64, Blankness> {
    let new_size = block_size(sys, new).ok_or(Blankness::Absent)?;
    if new_size < size {
        return Err(Blankness::TooSmall(new_size));
    }
    // blkid -p exits 2 when it finds no signature at all.
    let probe = Cmd::new(["blkid", "-p", new]).env("LC_ALL", "C");
    match sys.run(&probe) {
        Ok(out) if out.code == Some(2) => Ok(new_size),
        Ok(out) if out.success() => Err(Blankness::Holds(out.stdout_text().trim().to_owned())),
        Ok(out) => Err(Blankness::Unknown(format!(
            "`{}` failed: {}",
            probe.display(),
            out.tail()
        ))),
        Err(e) => Err(Blankness::Unknown(format!("cannot run blkid: {e}"))),
    }
}

/// Why a disk is not yet a new one to use.
#[derive(Debug, PartialEq)]
enum Blankness {
    Absent,
    TooSmall(u64),
    Holds(String),
    Unknown(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../probes/testdata/btrfs/", $name))
        };
    }

    #[test]
    fn profiles_from_filesystem_df() {
        let raid1 = parse_df(fixture!("filesystem-df-raid1-bookworm.txt"));
        assert_eq!(raid1["data"], "raid1");
        assert_eq!(raid1["metadata"], "raid1");
        let single = parse_df(fixture!("filesystem-df-single-bookworm.txt"));
        assert_eq!(single["data"], "single");
        assert_eq!(single["metadata"], "dup");
    }

    #[test]
    fn only_a_complete_redundant_filesystem_may_lose_a_disk() {
        let clean =
            btrfs::parse_filesystem_show(fixture!("filesystem-show-raid1-clean-bookworm.txt"));
        let raid1 = parse_df(fixture!("filesystem-df-raid1-bookworm.txt"));
        assert!(redundant(&clean, &raid1));
        let single = parse_df(fixture!("filesystem-df-single-bookworm.txt"));
        assert!(!redundant(&clean, &single));
        let degraded = btrfs::parse_filesystem_show(fixture!(
            "filesystem-show-raid1-device-missing-bookworm.txt"
        ));
        assert!(!redundant(&degraded, &raid1), "a device is missing already");
        let use_of = |redundant: bool| DiskUse {
            kind: "btrfs".into(),
            name: "/srv".into(),
            layout: "data single, metadata dup".into(),
            devices: vec!["/dev/vdc".into()],
            redundant,
        };
        let refused = refusal("/dev/vdc", &[use_of(false)]).unwrap();
        assert!(refused.contains("would lose data"), "{refused}");
        assert_eq!(refusal("/dev/vdc", &[use_of(true)]), None);
        assert!(
            refusal("/dev/vdc", &[])
                .unwrap()
                .contains("nothing to move")
        );
    }

    #[test]
    fn replace_status_in_each_state() {
        assert_eq!(
            parse_replace_status(fixture!("replace-status-never-started-bookworm.txt")),
            Some(ReplaceStatus::NeverStarted)
        );
        assert_eq!(
            parse_replace_status(fixture!("replace-status-running-bookworm.txt")),
            Some(ReplaceStatus::Running(20.8))
        );
        assert_eq!(
            parse_replace_status(fixture!("replace-status-finished-bookworm.txt")),
            Some(ReplaceStatus::Finished)
        );
        assert!(matches!(
            parse_replace_status(fixture!("replace-status-canceled-bookworm.txt")),
            Some(ReplaceStatus::Canceled(line)) if line.contains("at 0.0%")
        ));
    }

    #[test]
    fn an_md_member_is_found_by_its_partitions() {
        let mdstat =
            include_str!("../probes/testdata/mdstat/raid1-clean-plus-raid0-nvme.pymdstat.mdstat");
        assert_eq!(
            md_array_of(mdstat, "/dev/nvme0n1").as_deref(),
            Some("md126")
        );
        assert_eq!(md_array_of(mdstat, "/dev/sdd").as_deref(), Some("md129"));
        assert_eq!(md_array_of(mdstat, "/dev/sd"), None);
        let two = include_str!(
            "../probes/testdata/mdstat/composite-parser-stress-test.node_exporter.mdstat"
        );
        assert_eq!(md_array_of(two, "/dev/sdi").as_deref(), Some("md127"));
        assert_eq!(md_array_of(two, "/dev/sdz"), None);
    }

    #[test]
    fn a_replacement_under_way_is_followed_not_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let sys = crate::system::testing::Recorder::new();
        let u = Underway {
            run_id: "r1".into(),
            admin: "camille@portable".into(),
            disk: "/dev/vdc".into(),
            new: "/dev/vdd".into(),
            mount: "/mnt/r1".into(),
            started: "2026-12-01T23:04:08Z".into(),
        };
        save(&sys, dir.path(), Some(&State::Btrfs(u.clone()))).unwrap();
        let request = |step| DiskRequest {
            run_id: "r2".into(),
            admin: "camille@portable".into(),
            disk: "/dev/vdc".into(),
            new: Some("/dev/vdd".into()),
            step,
        };
        let look = answer(&sys, dir.path(), &request(DiskStep::Start));
        assert!(
            look.under_way
                .unwrap()
                .contains("/dev/vdc -> /dev/vdd in /mnt/r1")
        );
        assert!(
            sys.commands().is_empty(),
            "nothing started again: {:?}",
            sys.commands()
        );
        sys.reply(
            &["btrfs", "replace", "status"],
            0,
            fixture!("replace-status-running-bookworm.txt"),
        );
        let progress = answer(&sys, dir.path(), &request(DiskStep::Progress));
        assert_eq!(progress.percent, Some(20.8));
        assert!(!progress.finished);
        assert!(load(dir.path()).is_some(), "the state stays until verified");
    }
}
