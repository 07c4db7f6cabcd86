//! Replacing a disk of mdadm arrays (RAID1 or RAID10 on a rented server,
//! usually one array per partition of two disks), in two halves around the
//! physical swap:
//!
//! 1. **Out**: each of the disk's members is failed (unless md did it
//!    already) and removed from its array (`mdadm --fail`, `--remove`).
//!    The disk can then be pulled; on a rented server, the provider swaps
//!    it, often with the server running.
//! 2. **Wait** for the new disk: a block device at the old one's place (or
//!    `--new`), blank (no partition table, no signature) and as large,
//!    with another serial number than the old one's.
//! 3. **In**: the partition table of a healthy disk of the arrays is
//!    copied onto it (GPT: `sgdisk --replicate` then new GUIDs with
//!    `--randomize-guids`, so the two disks do not share them; MBR:
//!    `sfdisk --dump` fed to `sfdisk`, without the disk identifier), each
//!    partition is added back to its array, and the boot loader goes on
//!    the new disk when the old one could boot the server (a BIOS boot
//!    partition or an MBR: `grub-install`; an EFI system partition outside
//!    the arrays: a copy of the healthy disk's).
//! 4. **Resync**: followed in /proc/mdstat (progress, the kernel's ETA),
//!    then verified with `mdadm --detail`: every array clean, with all its
//!    devices active, the new partitions among them.
//!
//! What to do is decided by [`plan`], a pure function of /proc/mdstat and
//! the healthy disk's `sfdisk --json`: that is what the tests check, on
//! real samples, since the development machine's kernel has no md driver.

use std::path::Path;
use std::time::SystemTime;

use clou_protocol::{DiskReport, DiskRequest, DiskStep, DiskUse};
use serde::{Deserialize, Serialize};

use super::{Blankness, State, block_size, human_size, run_ok, save};
use crate::journal::Journal;
use crate::probes::disks::Disks;
use crate::probes::mdraid::{self, Array, SyncAction, parse_mdstat};
use crate::system::{Cmd, System};

/// An mdadm replacement under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Underway {
    run_id: String,
    admin: String,
    pub disk: String,
    /// Where the new disk is awaited.
    new: String,
    started: String,
    plan: Plan,
    /// The old disk's size and serial: the new one must be as large, and
    /// another disk.
    size: u64,
    serial: Option<String>,
    /// The healthy disk's serial: checked again before its table is copied
    /// (device names can move at a reboot).
    #[serde(default)]
    source_serial: Option<String>,
    phase: Phase,
}

/// Where the replacement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// Taking the old disk out of its arrays, then waiting for the new one.
    Out,
    /// The new disk has its partition table; its members go in next.
    Partitioned,
    /// The new disk is in its arrays; resyncing.
    In,
}

/// Looks at a disk in md arrays and, for a start, takes it out of them.
pub(super) fn begin(
    sys: &dyn System,
    state_dir: &Path,
    mdstat: &Path,
    request: &DiskRequest,
    report: &mut DiskReport,
) -> Result<(), String> {
    let disk = &request.disk;
    let new = canonical(request.new.as_deref().unwrap_or(disk));
    let size = block_size(sys, disk).unwrap_or(0);
    let arrays = parse_mdstat(&super::read_mdstat(sys, mdstat));
    report.uses = uses(&arrays, disk);
    let decided = source_of(&arrays, disk).and_then(|source| {
        let partitioned = members_of(&arrays, disk)
            .iter()
            .any(|m| m.partition.is_some());
        let table = if partitioned {
            let cmd = Cmd::new(["sfdisk", "--json", &source]).env("LC_ALL", "C");
            Some(run_ok(sys, &cmd).map_err(|e| {
                format!("{e}\n  (sfdisk reads the partition table to copy: apt-get install fdisk)")
            })?)
        } else {
            None
        };
        plan(&arrays, disk, table.as_deref())
    });
    let plan = match decided {
        Ok(plan) => plan,
        Err(why) => {
            report.refusal = Some(why);
            return Ok(());
        }
    };
    if let Some(missing) = missing_tool(sys, &plan) {
        report.refusal = Some(missing);
        return Ok(());
    }
    if new != *disk {
        match super::blank_and_large(sys, &new, size) {
            Ok(new_size) => report.new_size = Some(new_size),
            Err(why) => {
                report.refusal = Some(super::not_blank(&new, disk, size, why));
                return Ok(());
            }
        }
    }
    report.commands = commands(&plan, disk, &new);
    if request.step == DiskStep::Look {
        return Ok(());
    }
    if request.step == DiskStep::Progress {
        return Err(format!("no replacement of {disk} is under way"));
    }
    let u = Underway {
        run_id: request.run_id.clone(),
        admin: request.admin.clone(),
        disk: disk.clone(),
        new,
        started: crate::clock::rfc3339(SystemTime::now()),
        serial: Disks::read(sys).identity(disk).serial,
        source_serial: Disks::read(sys).identity(&plan.source).serial,
        plan,
        size,
        phase: Phase::Out,
    };
    // Saved first: a run cut short in the middle finds it and goes on.
    save(sys, state_dir, Some(&State::Mdadm(u.clone())))?;
    take_out(sys, state_dir, &u, &arrays)?;
    report.under_way = Some(under_way(&u));
    report.waiting = Some(awaited(&u));
    Ok(())
}

/// Fails and removes each of the old disk's members still in its array
/// (all of them the first time; what an interruption left after).
fn take_out(
    sys: &dyn System,
    state_dir: &Path,
    u: &Underway,
    arrays: &[Array],
) -> Result<(), String> {
    for m in &u.plan.members {
        let name = m.device.trim_start_matches("/dev/");
        let Some(now) = arrays
            .iter()
            .find(|a| a.name == m.array)
            .and_then(|a| a.members.iter().find(|d| d.device == name))
        else {
            continue;
        };
        let array = format!("/dev/{}", m.array);
        if !now.faulty {
            run(
                sys,
                state_dir,
                u,
                &["mdadm", "--manage", &array, "--fail", &m.device],
            )?;
        }
        run(
            sys,
            state_dir,
            u,
            &["mdadm", "--manage", &array, "--remove", &m.device],
        )?;
    }
    Ok(())
}

/// A `/dev/disk/by-id/...` name as the kernel's (`/dev/sdb`): partitions
/// and /proc/mdstat use those.
fn canonical(path: &str) -> String {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .filter(|p| p.starts_with("/dev/"))
        .unwrap_or_else(|| path.to_owned())
}

/// Goes on with a replacement under way: waits for the new disk, puts it
/// in, follows the resync, verifies.
pub(super) fn follow(
    sys: &dyn System,
    state_dir: &Path,
    mdstat: &Path,
    request: &DiskRequest,
    mut u: Underway,
    report: &mut DiskReport,
) -> Result<(), String> {
    // The new disk may show up under another name than the one awaited
    // (hot-plugged next to the old one): `--new` says where.
    if u.phase == Phase::Out
        && let Some(new) = request.new.as_deref().map(canonical)
        && new != u.new
    {
        u.new = new;
        save(sys, state_dir, Some(&State::Mdadm(u.clone())))?;
    }
    report.under_way = Some(under_way(&u));
    report.commands = commands(&u.plan, &u.disk, &u.new);
    for (key, value) in [("device", u.disk.clone()), ("capacity", human_size(u.size))] {
        report.identity.insert(key.into(), value);
    }
    if let Some(serial) = &u.serial {
        report.identity.insert("serial".into(), serial.clone());
    }
    report.uses = u
        .plan
        .members
        .iter()
        .map(|m| DiskUse {
            kind: "mdadm".into(),
            name: m.array.clone(),
            layout: String::new(),
            devices: vec![m.device.clone()],
            redundant: true,
        })
        .collect();
    if request.step == DiskStep::Look {
        return Ok(());
    }
    let arrays = parse_mdstat(&super::read_mdstat(sys, mdstat));
    if u.phase == Phase::Out {
        // An earlier run may have stopped between two of these.
        take_out(sys, state_dir, &u, &arrays)?;
        if let Some(why) = not_ready(sys, &u, &arrays)? {
            report.waiting = Some(why);
            report.percent = Some(0.0);
            return Ok(());
        }
        partition(sys, state_dir, &u)?;
        u.phase = Phase::Partitioned;
        save(sys, state_dir, Some(&State::Mdadm(u.clone())))?;
    }
    if u.phase == Phase::Partitioned {
        put_in(sys, state_dir, &u, &arrays)?;
        u.phase = Phase::In;
        save(sys, state_dir, Some(&State::Mdadm(u.clone())))?;
    }
    let arrays = parse_mdstat(&super::read_mdstat(sys, mdstat));
    if let Some((percent, eta)) = resync(&arrays, &u.plan, &u.new)? {
        report.percent = Some(percent);
        report.eta = eta;
        return Ok(());
    }
    report.percent = Some(100.0);
    let mut lines = Vec::new();
    for m in &u.plan.members {
        let array = format!("/dev/{}", m.array);
        let text = run_ok(
            sys,
            &Cmd::new(["mdadm", "--detail", &array]).env("LC_ALL", "C"),
        )?;
        lines.push(verified(&text, &m.array, &new_member(m, &u.new))?);
    }
    save(sys, state_dir, None)?;
    mark(state_dir, &u, "disk replace: finished", &lines.join("; "));
    report.verified = lines;
    report.finished = true;
    Ok(())
}

/// Why the new disk cannot be put in yet (`None`: it can). Too small is
/// an error: waiting will not make it larger.
fn not_ready(sys: &dyn System, u: &Underway, arrays: &[Array]) -> Result<Option<String>, String> {
    let new = &u.new;
    // Never the disk that holds the data: names can move at a reboot.
    if let Some(array) = arrays.iter().find(|a| {
        a.members
            .iter()
            .any(|m| disk_of(&m.device) == *new && !m.faulty)
    }) {
        return Ok(Some(format!(
            "{new} holds a working member of {}: it is not the new disk (device names can \
             change at a reboot: compare serials with `lsblk -o NAME,SERIAL`, then run again \
             with --new /dev/...)",
            array.name
        )));
    }
    let disks = Disks::read(sys);
    if let Some(expected) = &u.source_serial
        && disks.identity(&u.plan.source).serial.as_ref() != Some(expected)
    {
        return Err(format!(
            "{} is no longer the healthy disk (serial {expected} expected): device names \
             changed; nothing was written; look with `lsblk -o NAME,SERIAL` and replace by hand",
            u.plan.source
        ));
    }
    let serial = disks.identity(new).serial;
    if serial.is_some() && serial == u.serial {
        return Ok(Some(format!(
            "{new} is still the old disk (serial {}): take it out and put the new one in",
            serial.unwrap_or_default()
        )));
    }
    match super::blank_and_large(sys, new, u.size) {
        Ok(_) => Ok(None),
        Err(Blankness::Absent) => Ok(Some(awaited(u))),
        Err(Blankness::Holds(what)) => Ok(Some(format!(
            "{new} is not blank ({what}): the old disk is still in, or the new one holds              something; if it is the new one and holds nothing of value, `wipefs -a {new}`"
        ))),
        Err(why @ Blankness::TooSmall(_)) => Err(super::not_blank(new, &u.disk, u.size, why)),
        Err(Blankness::Unknown(why)) => Err(why),
    }
}

/// Gives the new disk its twin's partition table.
fn partition(sys: &dyn System, state_dir: &Path, u: &Underway) -> Result<(), String> {
    let copy = table_copy(&u.plan, &u.new);
    let mut steps = copy.iter();
    if u.plan.label == "dos" {
        // sfdisk --dump SOURCE, then sfdisk NEW fed that dump.
        if let (Some(dump), Some(write)) = (steps.next(), steps.next()) {
            let text = run_ok(sys, &Cmd::new(dump.clone()).env("LC_ALL", "C"))?;
            let cmd = Cmd::new(write.clone())
                .env("LC_ALL", "C")
                .stdin(without_label_id(&text));
            run_ok(sys, &cmd)?;
            mark(
                state_dir,
                u,
                "disk replace: ran",
                &format!(
                    "{} | grep -v '^label-id:' | {}",
                    dump.join(" "),
                    write.join(" ")
                ),
            );
        }
    }
    for argv in steps {
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        run(sys, state_dir, u, &words)?;
    }
    Ok(())
}

/// Adds the new disk's members (those not in their array already: a run
/// may have stopped halfway) and makes the disk bootable.
fn put_in(
    sys: &dyn System,
    state_dir: &Path,
    u: &Underway,
    arrays: &[Array],
) -> Result<(), String> {
    for m in &u.plan.members {
        let array = format!("/dev/{}", m.array);
        let member = new_member(m, &u.new);
        let name = member.trim_start_matches("/dev/");
        let added = arrays
            .iter()
            .any(|a| a.name == m.array && a.members.iter().any(|d| d.device == name));
        if added {
            continue;
        }
        // A used disk's partition may still carry an old md superblock,
        // which would make md refuse it or assemble it elsewhere.
        run(sys, state_dir, u, &["wipefs", "--all", &member])?;
        run(
            sys,
            state_dir,
            u,
            &["mdadm", "--manage", &array, "--add", &member],
        )?;
    }
    for argv in boot_commands(&u.plan, &u.new) {
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        run(sys, state_dir, u, &words)?;
    }
    Ok(())
}

/// Runs one command of the replacement and journals it.
fn run(sys: &dyn System, state_dir: &Path, u: &Underway, argv: &[&str]) -> Result<(), String> {
    let cmd = Cmd::new(argv.iter().copied()).env("LC_ALL", "C");
    run_ok(sys, &cmd)?;
    mark(state_dir, u, "disk replace: ran", &cmd.display());
    Ok(())
}

fn mark(state_dir: &Path, u: &Underway, event: &str, detail: &str) {
    Journal::new(state_dir).event(
        &u.run_id,
        &u.admin,
        event,
        serde_json::json!({
            "disk": u.disk,
            "new": u.new,
            "arrays": u.plan.members.iter().map(|m| &m.array).collect::<Vec<_>>(),
            "detail": detail,
        }),
    );
}

fn under_way(u: &Underway) -> String {
    let mut arrays: Vec<&str> = u.plan.members.iter().map(|m| m.array.as_str()).collect();
    arrays.dedup();
    format!(
        "{} out of {} -> {}, started {} by {}",
        u.disk,
        arrays.join(", "),
        u.new,
        u.started,
        u.admin
    )
}

fn awaited(u: &Underway) -> String {
    format!(
        "{} is out of its arrays: take it out (serial {}) and put the new disk in; clou waits          for a blank disk of at least {} at {}",
        u.disk,
        u.serial.as_deref().unwrap_or("unknown"),
        human_size(u.size),
        u.new
    )
}

/// What each array using the disk is, and whether it keeps its data
/// without it.
fn uses(arrays: &[Array], disk: &str) -> Vec<DiskUse> {
    members_of(arrays, disk)
        .iter()
        .filter_map(|m| {
            let array = arrays.iter().find(|a| a.name == m.array)?;
            Some(DiskUse {
                kind: "mdadm".into(),
                name: array.name.clone(),
                layout: array.level.clone().unwrap_or_default(),
                devices: array
                    .members
                    .iter()
                    .map(|d| format!("/dev/{}", d.device))
                    .collect(),
                redundant: keeps_a_copy(array, m).is_ok(),
            })
        })
        .collect()
}

/// A tool the plan needs that the host lacks, said with what installs it.
fn missing_tool(sys: &dyn System, plan: &Plan) -> Option<String> {
    let mut needed = vec![("mdadm", "mdadm")];
    match plan.label.as_str() {
        "gpt" => needed.push(("sgdisk", "gdisk")),
        "dos" => needed.push(("sfdisk", "fdisk")),
        _ => {}
    }
    if plan.boot == Boot::Grub {
        needed.push(("grub-install", "grub-pc"));
    }
    needed.into_iter().find_map(|(tool, package)| {
        let found = sys
            .run(&Cmd::new(["sh", "-c", &format!("command -v {tool}")]))
            .is_ok_and(|out| out.success());
        (!found).then(|| {
            format!(
                "{tool} is not on this host, and the replacement needs it: `apt-get install                  {package}` first (nothing was changed)"
            )
        })
    })
}

/// One member of an array on the disk being replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `md0`.
    pub array: String,
    /// `/dev/sdb2`, or the whole disk.
    pub device: String,
    /// Its partition number; `None` when the whole disk is the member.
    pub partition: Option<u32>,
    /// md failed it already (`(F)` in /proc/mdstat).
    pub faulty: bool,
}

/// What makes the new disk bootable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boot {
    /// The disk carries no boot code of its own.
    None,
    /// GRUB in the MBR, or in a GPT's BIOS boot partition.
    Grub,
    /// An EFI system partition not mirrored by md: a copy of the healthy
    /// disk's (partition `number` of both).
    Esp { number: u32 },
}

/// The replacement, decided before anything is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub members: Vec<Member>,
    /// The healthy disk whose partition table is copied (`/dev/sda`).
    pub source: String,
    /// `gpt` or `dos`; empty when every member is a whole disk.
    pub label: String,
    pub boot: Boot,
}

/// The partition table type GUIDs that matter here (sfdisk prints them in
/// upper case).
const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// `sfdisk --json` of a disk: its label and partitions.
#[derive(Debug, Deserialize)]
struct SfdiskJson {
    partitiontable: Table,
}

#[derive(Debug, Deserialize)]
struct Table {
    label: String,
    device: String,
    #[serde(default)]
    partitions: Vec<Partition>,
}

#[derive(Debug, Deserialize)]
struct Partition {
    node: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The partition number of `node` on `disk` (`/dev/sda2` -> 2,
/// `/dev/nvme0n1p3` -> 3), `None` when it is not one of its partitions.
pub fn partition_number(disk: &str, node: &str) -> Option<u32> {
    let rest = node.strip_prefix(disk)?;
    // A name ending in a digit takes a `p` before the partition number.
    let digits = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        rest.strip_prefix('p')?
    } else {
        rest
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Partition `number` of `disk`: `/dev/sdb` 2 -> `/dev/sdb2`,
/// `/dev/nvme1n1` 2 -> `/dev/nvme1n1p2`.
pub fn partition_of(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// The disk a member device is on: `sda2` -> `/dev/sda`, `nvme0n1p1` ->
/// `/dev/nvme0n1`, a whole-disk member (`sdc`) -> itself.
fn disk_of(device: &str) -> String {
    let name = device.trim_start_matches("/dev/");
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let disk = if stem.len() == name.len() {
        name
    } else if let Some(base) = stem.strip_suffix('p')
        && base.ends_with(|c: char| c.is_ascii_digit())
    {
        // nvme0n1p1, mmcblk0p1
        base
    } else if stem.ends_with(|c: char| c.is_ascii_alphabetic()) && !name.starts_with("nvme") {
        // sda1, vdb2, xvda1
        stem
    } else {
        // nvme0n1: a whole disk whose name ends in a digit
        name
    };
    format!("/dev/{disk}")
}

/// The members of `disk` in the arrays of /proc/mdstat.
pub fn members_of(arrays: &[Array], disk: &str) -> Vec<Member> {
    let mut out = Vec::new();
    for array in arrays {
        for m in &array.members {
            let device = format!("/dev/{}", m.device);
            let partition = partition_number(disk, &device);
            if device == disk || partition.is_some() {
                out.push(Member {
                    array: array.name.clone(),
                    device,
                    partition,
                    faulty: m.faulty,
                });
            }
        }
    }
    out
}

/// Decides the replacement of `disk`, or says why it must not be done
/// (nothing has changed then). `source_table` is the `sfdisk --json` of
/// the disk the partition table will be copied from, which is
/// [`source_of`]'s answer.
pub fn plan(arrays: &[Array], disk: &str, source_table: Option<&str>) -> Result<Plan, String> {
    let members = members_of(arrays, disk);
    if members.is_empty() {
        return Err(format!("{disk} is in no md array"));
    }
    for member in &members {
        let Some(array) = arrays.iter().find(|a| a.name == member.array) else {
            continue;
        };
        keeps_a_copy(array, member)?;
    }
    let source = source_of(arrays, disk)?;
    let partitioned: Vec<u32> = members.iter().filter_map(|m| m.partition).collect();
    if partitioned.is_empty() {
        return Ok(Plan {
            members,
            source,
            label: String::new(),
            boot: Boot::None,
        });
    }
    let text = source_table.ok_or_else(|| format!("no partition table read from {source}"))?;
    let table: SfdiskJson = serde_json::from_str(text)
        .map_err(|e| format!("cannot read `sfdisk --json {source}`: {e}"))?;
    let table = table.partitiontable;
    let numbered: Vec<(u32, &Partition)> = table
        .partitions
        .iter()
        .filter_map(|p| partition_number(&table.device, &p.node).map(|n| (n, p)))
        .collect();
    for number in &partitioned {
        if !numbered.iter().any(|(n, _)| n == number) {
            return Err(format!(
                "{} has no partition {number}, which {disk} has in an array: the two disks are \
                 not laid out alike; partition the new disk by hand",
                source
            ));
        }
    }
    let boot = match table.label.as_str() {
        "dos" => Boot::Grub,
        "gpt" => {
            let kind_of = |kind: &str| {
                numbered
                    .iter()
                    .find(|(_, p)| p.kind.eq_ignore_ascii_case(kind))
                    .map(|(n, _)| *n)
            };
            match (kind_of(BIOS_BOOT), kind_of(EFI_SYSTEM)) {
                (Some(_), _) => Boot::Grub,
                // An ESP mirrored by md comes back with its array.
                (None, Some(esp)) if !partitioned.contains(&esp) => Boot::Esp { number: esp },
                _ => Boot::None,
            }
        }
        other => {
            return Err(format!(
                "{source} has a partition table of type {other:?}: clou copies GPT and MBR only"
            ));
        }
    };
    Ok(Plan {
        members,
        source,
        label: table.label,
        boot,
    })
}

/// Refuses a member whose array would lose data without it: the other
/// members must hold every block, and no rebuild may be under way.
fn keeps_a_copy(array: &Array, member: &Member) -> Result<(), String> {
    let name = &array.name;
    let level = array.level.as_deref().unwrap_or("?");
    let disks = array.raid_disks.unwrap_or(0);
    let needed = match level {
        "raid1" => 1,
        "raid4" | "raid5" | "raid10" => disks.saturating_sub(1),
        "raid6" => disks.saturating_sub(2),
        _ => {
            return Err(format!(
                "{name} is a {level} array: it keeps no copy of what is on {}, so removing it \
                 loses {name}'s data; copy the data off first",
                member.device
            ));
        }
    };
    // A rebuild under way is the array's only way back to full health;
    // mdstat does not even say which member it is rebuilding onto.
    if let Some(sync) = &array.sync
        && matches!(
            sync.action,
            SyncAction::Recovery | SyncAction::Resync | SyncAction::Reshape
        )
    {
        return Err(format!(
            "{name} is busy with a {} ({}): wait until /proc/mdstat shows it finished, then run \
             this again",
            sync.action.word(),
            sync.percent
                .map(|p| format!("{p}% done"))
                .unwrap_or_else(|| "under way".into())
        ));
    }
    if let Some(waiting) = &array.sync_waiting {
        return Err(format!(
            "{name} has a resync or check waiting ({waiting}): its copies may not agree yet; \
             wait until /proc/mdstat shows it done, then run this again"
        ));
    }
    let Some(working) = array.working else {
        return Err(format!(
            "{name} ({level}) does not say how many of its disks work: replace by hand"
        ));
    };
    // What works once this member is out (a failed one counts already).
    let others = if member.faulty {
        working
    } else {
        working.saturating_sub(1)
    };
    if others < needed.max(1) {
        return Err(format!(
            "{name} ({level}, {working} of {disks} disks working) would have {others}, and needs \
             {needed} to keep its data: removing {} would lose data",
            member.device
        ));
    }
    Ok(())
}

/// The healthy disk to copy the partition table from: the disk of a
/// working member, in the first array, that is not on `disk`.
pub fn source_of(arrays: &[Array], disk: &str) -> Result<String, String> {
    let members = members_of(arrays, disk);
    let first = members
        .first()
        .ok_or_else(|| format!("{disk} is in no md array"))?;
    arrays
        .iter()
        .find(|a| a.name == first.array)
        .and_then(|a| {
            a.members
                .iter()
                .filter(|m| !m.faulty && !m.spare)
                .map(|m| disk_of(&m.device))
                .find(|d| d != disk)
        })
        .ok_or_else(|| format!("{} has no working member on another disk", first.array))
}

/// The exact commands, in order; `new` is where the new disk will be.
pub fn commands(plan: &Plan, disk: &str, new: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in &plan.members {
        if !m.faulty {
            out.push(format!(
                "mdadm --manage /dev/{} --fail {}",
                m.array, m.device
            ));
        }
        out.push(format!(
            "mdadm --manage /dev/{} --remove {}",
            m.array, m.device
        ));
    }
    out.push(format!(
        "(wait for the new disk at {new}: take {disk} out, put it in; blank and at least as large)"
    ));
    let copy = table_copy(plan, new);
    let mut copy = copy.iter().map(|c| c.join(" "));
    if plan.label == "dos" {
        // The dump and the write, shown as the pipeline they amount to.
        copy.next();
        copy.next();
        out.push(format!(
            "sfdisk --dump {} | grep -v '^label-id:' | sfdisk {new}",
            plan.source
        ));
    }
    out.extend(copy);
    for m in &plan.members {
        let member = new_member(m, new);
        out.push(format!("wipefs --all {member}"));
        out.push(format!("mdadm --manage /dev/{} --add {member}", m.array));
    }
    out.extend(boot_commands(plan, new).iter().map(|c| c.join(" ")));
    out.push("(follow the resync in /proc/mdstat until every array is clean)".into());
    let mut arrays: Vec<&str> = plan.members.iter().map(|m| m.array.as_str()).collect();
    arrays.dedup();
    for array in arrays {
        out.push(format!("mdadm --detail /dev/{array}"));
    }
    out
}

/// The member on the new disk that takes `m`'s place.
pub fn new_member(m: &Member, new: &str) -> String {
    match m.partition {
        Some(n) => partition_of(new, n),
        None => new.to_owned(),
    }
}

/// The partition table copy, as argv lists (for MBR, the second one is
/// fed the first one's output without its `label-id:` line).
pub fn table_copy(plan: &Plan, new: &str) -> Vec<Vec<String>> {
    let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let mut out = match plan.label.as_str() {
        "gpt" => vec![
            argv(&["sgdisk", &format!("--replicate={new}"), &plan.source]),
            argv(&["sgdisk", "--randomize-guids", new]),
        ],
        "dos" => vec![
            argv(&["sfdisk", "--dump", &plan.source]),
            argv(&["sfdisk", new]),
        ],
        _ => return Vec::new(),
    };
    // The kernel must see the new partitions before md can use them.
    out.push(argv(&["blockdev", "--rereadpt", new]));
    out.push(argv(&["udevadm", "settle"]));
    out
}

/// The boot loader step, as argv lists.
pub fn boot_commands(plan: &Plan, new: &str) -> Vec<Vec<String>> {
    match &plan.boot {
        Boot::None => Vec::new(),
        Boot::Grub => vec![vec!["grub-install".into(), new.to_owned()]],
        Boot::Esp { number } => vec![vec![
            "dd".into(),
            format!("if={}", partition_of(&plan.source, *number)),
            format!("of={}", partition_of(new, *number)),
            "bs=4M".into(),
            "conv=fsync".into(),
        ]],
    }
}

/// A dump without its disk identifier, so that the new disk gets its own.
pub fn without_label_id(dump: &str) -> String {
    dump.lines()
        .filter(|l| !l.starts_with("label-id:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// How far the resync of the plan's arrays is: percent overall and the
/// kernel's estimate for the one running; `None` once every array is
/// complete and idle.
pub fn resync(
    arrays: &[Array],
    plan: &Plan,
    new: &str,
) -> Result<Option<(f64, Option<String>)>, String> {
    let mut names: Vec<&str> = plan.members.iter().map(|m| m.array.as_str()).collect();
    names.dedup();
    let mut total = 0.0;
    let mut busy = false;
    let mut eta = None;
    for name in &names {
        let Some(array) = arrays.iter().find(|a| a.name == *name) else {
            busy = true;
            continue;
        };
        // The rebuild gave up: the new member failed, or fell back to a
        // spare after a read error on the healthy disk.
        let stuck = array.degraded() && array.sync.is_none() && array.sync_waiting.is_none();
        let new_members: Vec<String> = plan
            .members
            .iter()
            .filter(|m| m.array == *name)
            .map(|m| new_member(m, new).trim_start_matches("/dev/").to_owned())
            .collect();
        if stuck
            && let Some(m) = array
                .members
                .iter()
                .find(|d| new_members.contains(&d.device) && (d.faulty || d.spare))
        {
            return Err(format!(
                "the rebuild of {name} stopped: /dev/{} is {} there; `dmesg` says why (often \
                 a read error on the healthy disk: check it with smartctl before anything else)",
                m.device,
                if m.faulty { "faulty" } else { "a spare" }
            ));
        }
        match &array.sync {
            Some(sync) if sync.action != SyncAction::Check => {
                busy = true;
                total += sync.percent.unwrap_or(0.0);
                if eta.is_none() {
                    eta = sync.finish.as_ref().map(|f| format!("{name} in {f}"));
                }
            }
            // Delayed behind another array of the same disks, or waiting.
            _ if array.degraded() => busy = true,
            _ => total += 100.0,
        }
    }
    Ok(busy.then(|| (total / names.len().max(1) as f64, eta)))
}

/// After the resync: each array clean, all its devices active, the new
/// member among them in sync. Returns what was found, in words.
pub fn verified(detail_text: &str, array: &str, new_member: &str) -> Result<String, String> {
    let detail = mdraid::parse_mdadm_detail(detail_text)
        .ok_or_else(|| format!("`mdadm --detail /dev/{array}` said no State"))?;
    if detail.degraded() {
        return Err(format!(
            "/dev/{array} is still degraded ({})",
            detail.state.join(", ")
        ));
    }
    // `active sync`, `active sync set-A` (raid10), `active sync writemostly`...
    let in_sync = detail.members.iter().any(|(_, state, dev)| {
        let words: Vec<&str> = state.split_whitespace().collect();
        dev.as_deref() == Some(new_member) && words.contains(&"active") && words.contains(&"sync")
    });
    if !in_sync {
        return Err(format!(
            "/dev/{array} does not list {new_member} as `active sync`"
        ));
    }
    Ok(format!(
        "/dev/{array} {}: {} of {} devices active, {new_member} in sync",
        detail.state.join(", "),
        detail.active_devices.unwrap_or(0),
        detail.raid_devices.unwrap_or(0)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! mdstat {
        ($name:literal) => {
            parse_mdstat(include_str!(concat!("../probes/testdata/mdstat/", $name)))
        };
    }
    macro_rules! sfdisk {
        ($name:literal) => {
            include_str!(concat!("testdata/sfdisk/", $name))
        };
    }
    macro_rules! detail {
        ($name:literal) => {
            include_str!(concat!("../probes/testdata/mdadm/", $name))
        };
    }

    /// The sfdisk samples were read from /dev/loop0; the mdstat samples'
    /// disks are sda, sdb... Only partition numbers and types are used, so
    /// a sample stands for `disk`'s table under `disk`'s name.
    fn table_of(json: &str, disk: &str) -> String {
        json.replace("/dev/loop0p", disk)
            .replace("/dev/loop0", disk)
    }

    #[test]
    fn partition_names_both_ways() {
        assert_eq!(partition_number("/dev/sda", "/dev/sda2"), Some(2));
        assert_eq!(partition_number("/dev/nvme0n1", "/dev/nvme0n1p3"), Some(3));
        assert_eq!(partition_number("/dev/sd", "/dev/sda2"), None);
        assert_eq!(partition_number("/dev/nvme0n1", "/dev/nvme0n12"), None);
        assert_eq!(partition_of("/dev/sdb", 2), "/dev/sdb2");
        assert_eq!(partition_of("/dev/nvme1n1", 2), "/dev/nvme1n1p2");
        assert_eq!(disk_of("sda1"), "/dev/sda");
        assert_eq!(disk_of("nvme0n1p1"), "/dev/nvme0n1");
        assert_eq!(disk_of("nvme1n1"), "/dev/nvme1n1");
        assert_eq!(disk_of("sdc"), "/dev/sdc");
    }

    /// Four RAID1 over sda/sdb plus a RAID0 (CentOS box): taking sdb out
    /// would lose md1, so nothing is done.
    #[test]
    fn a_disk_that_holds_a_raid0_member_is_refused() {
        let arrays = mdstat!("raid1-clean-5-arrays-bitmap-centos6.check_raid.mdstat");
        let why = plan(&arrays, "/dev/sdb", None).unwrap_err();
        assert!(why.contains("md1 is a raid0 array"), "{why}");
        assert!(why.contains("loses md1's data"), "{why}");
    }

    /// md1 runs on sdb2 alone: sdb is the last copy; md0 is recovering.
    #[test]
    fn the_last_copy_and_a_rebuild_under_way_are_refused() {
        let arrays = mdstat!("raid1-degraded-missing-member-and-recovering.check_raid.mdstat");
        let why = plan(&arrays, "/dev/sdb", None).unwrap_err();
        assert!(
            why.contains("md1 (raid1, 1 of 2 disks working) would have 0"),
            "{why}"
        );
        // sda's member of md0 is the one being rebuilt onto: wait.
        let why = plan(&arrays, "/dev/sda", None).unwrap_err();
        assert!(
            why.contains("md0 is busy with a recovery (3.6% done)"),
            "{why}"
        );
    }

    /// RAID5 with sdc1 failed: sdc may go (the others hold everything),
    /// sdb may not (the array would be down to one of three).
    #[test]
    fn raid5_keeps_its_data_only_with_one_member_out() {
        let arrays = mdstat!("raid5-degraded-failed-member-F.check_raid.mdstat");
        let ok = keeps_a_copy(&arrays[0], &members_of(&arrays, "/dev/sdc")[0]);
        assert_eq!(ok, Ok(()));
        let why = plan(&arrays, "/dev/sdb", None).unwrap_err();
        assert!(why.contains("would have 1, and needs 2"), "{why}");
    }

    /// Three RAID1 over sda/sdb (one running its monthly check, which is
    /// no reason to wait), GPT with a BIOS boot partition. Replacing sdb
    /// where it is: fail and remove its members, copy sda's GPT with new
    /// GUIDs, add the partitions back, GRUB on the new disk, follow,
    /// verify.
    #[test]
    fn a_gpt_disk_with_a_bios_boot_partition() {
        let arrays = mdstat!("raid1-check-in-progress.check_raid.mdstat");
        let table = table_of(sfdisk!("sfdisk-json-gpt-raid123-bios4.txt"), "/dev/sda");
        let plan = plan(&arrays, "/dev/sdb", Some(&table)).unwrap();
        assert_eq!(plan.source, "/dev/sda");
        assert_eq!(plan.label, "gpt");
        assert_eq!(plan.boot, Boot::Grub);
        assert_eq!(
            commands(&plan, "/dev/sdb", "/dev/sdb"),
            [
                "mdadm --manage /dev/md2 --fail /dev/sdb3",
                "mdadm --manage /dev/md2 --remove /dev/sdb3",
                "mdadm --manage /dev/md1 --fail /dev/sdb2",
                "mdadm --manage /dev/md1 --remove /dev/sdb2",
                "mdadm --manage /dev/md0 --fail /dev/sdb1",
                "mdadm --manage /dev/md0 --remove /dev/sdb1",
                "(wait for the new disk at /dev/sdb: take /dev/sdb out, put it in; blank and at least as large)",
                "sgdisk --replicate=/dev/sdb /dev/sda",
                "sgdisk --randomize-guids /dev/sdb",
                "blockdev --rereadpt /dev/sdb",
                "udevadm settle",
                "wipefs --all /dev/sdb3",
                "mdadm --manage /dev/md2 --add /dev/sdb3",
                "wipefs --all /dev/sdb2",
                "mdadm --manage /dev/md1 --add /dev/sdb2",
                "wipefs --all /dev/sdb1",
                "mdadm --manage /dev/md0 --add /dev/sdb1",
                "grub-install /dev/sdb",
                "(follow the resync in /proc/mdstat until every array is clean)",
                "mdadm --detail /dev/md2",
                "mdadm --detail /dev/md1",
                "mdadm --detail /dev/md0",
            ]
        );
    }

    /// An MBR disk, replaced by one that shows up as sdc: sfdisk's dump
    /// without the disk identifier; GRUB in the MBR.
    #[test]
    fn an_mbr_disk_replaced_by_one_under_another_name() {
        let arrays = mdstat!("raid1-check-in-progress.check_raid.mdstat");
        let table = table_of(sfdisk!("sfdisk-json-mbr-raid123.txt"), "/dev/sdb");
        let plan = plan(&arrays, "/dev/sda", Some(&table)).unwrap();
        assert_eq!(plan.source, "/dev/sdb");
        assert_eq!(plan.label, "dos");
        assert_eq!(plan.boot, Boot::Grub);
        let shown = commands(&plan, "/dev/sda", "/dev/sdc");
        for line in [
            "mdadm --manage /dev/md2 --fail /dev/sda3",
            "sfdisk --dump /dev/sdb | grep -v '^label-id:' | sfdisk /dev/sdc",
            "blockdev --rereadpt /dev/sdc",
            "mdadm --manage /dev/md2 --add /dev/sdc3",
            "grub-install /dev/sdc",
        ] {
            assert!(shown.contains(&line.to_owned()), "{line} not in {shown:#?}");
        }
        let dump = without_label_id(sfdisk!("sfdisk-dump-mbr.txt"));
        assert!(!dump.contains("label-id"), "{dump}");
        assert!(dump.contains("type=fd, bootable"), "{dump}");
    }

    /// A member md failed already is only removed; the table comes from a
    /// working member's disk.
    #[test]
    fn a_member_md_failed_already_is_only_removed() {
        let arrays = mdstat!("raid1-degraded-failed-member-F.pymdstat.mdstat");
        let table = table_of(sfdisk!("sfdisk-json-mbr-raid123.txt"), "/dev/sdg");
        let plan = plan(&arrays, "/dev/sde", Some(&table)).unwrap();
        assert_eq!(plan.source, "/dev/sdg");
        let shown = commands(&plan, "/dev/sde", "/dev/sde");
        assert_eq!(shown[0], "mdadm --manage /dev/md1 --remove /dev/sde1");
        assert!(!shown.iter().any(|c| c.contains("--fail")), "{shown:#?}");
    }

    /// A UEFI server whose ESP is outside the arrays: the new disk gets a
    /// copy of the healthy disk's (GRUB lives in the ESP, not the disk).
    #[test]
    fn an_efi_system_partition_outside_the_arrays_is_copied() {
        let arrays = mdstat!("raid1-clean-auto-read-only.check_raid.mdstat");
        let table = table_of(sfdisk!("sfdisk-json-gpt-raid123-esp4.txt"), "/dev/sdc");
        let plan = plan(&arrays, "/dev/sdd", Some(&table)).unwrap();
        assert_eq!(plan.source, "/dev/sdc");
        assert_eq!(plan.boot, Boot::Esp { number: 4 });
        assert_eq!(
            boot_commands(&plan, "/dev/sdd"),
            [["dd", "if=/dev/sdc4", "of=/dev/sdd4", "bs=4M", "conv=fsync"]]
        );
        // An ESP that is itself an md member comes back with its array.
        let mirrored = table_of(sfdisk!("sfdisk-json-gpt-esp.txt"), "/dev/sdc");
        let plan = super::plan(&arrays, "/dev/sdd", Some(&mirrored)).unwrap();
        assert_eq!(plan.boot, Boot::None);
    }

    /// The healthy disk lacks a partition the old one had in an array.
    #[test]
    fn disks_laid_out_differently_are_refused() {
        let arrays = mdstat!("raid1-clean-auto-read-only.check_raid.mdstat");
        let table = table_of(sfdisk!("sfdisk-json-mbr.txt"), "/dev/sdc");
        let why = plan(&arrays, "/dev/sdd", Some(&table)).unwrap_err();
        assert!(why.contains("has no partition 3"), "{why}");
    }

    /// Following the resync: the recovering array's share and the
    /// kernel's ETA; a delayed one counts as not started; done when clean.
    #[test]
    fn resync_progress_and_eta() {
        let during = mdstat!("raid1-degraded-recovery-and-resync-delayed.check_raid.mdstat");
        let plan = Plan {
            members: vec![
                Member {
                    array: "md0".into(),
                    device: "/dev/sda1".into(),
                    partition: Some(1),
                    faulty: false,
                },
                Member {
                    array: "md1".into(),
                    device: "/dev/sda2".into(),
                    partition: Some(2),
                    faulty: false,
                },
            ],
            source: "/dev/sdb".into(),
            label: "dos".into(),
            boot: Boot::Grub,
        };
        let (percent, eta) = resync(&during, &plan, "/dev/sda").unwrap().unwrap();
        assert!((percent - 1.95).abs() < 0.01, "{percent}");
        assert!(eta.unwrap().starts_with("md0 in "), "eta");
        let clean = mdstat!("raid1-clean-5-arrays-bitmap-centos6.check_raid.mdstat");
        assert_eq!(resync(&clean, &plan, "/dev/sda"), Ok(None));
    }

    /// Verification reads mdadm --detail: a clean array with the new member
    /// in sync passes; a degraded or resyncing one does not.
    #[test]
    fn verification_from_mdadm_detail() {
        let clean = detail!("mdadm-detail-raid1-clean.jc.txt");
        let member = clean
            .lines()
            .find(|l| l.contains("active sync"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap();
        let said = verified(clean, "md126", member).unwrap();
        assert!(said.contains("2 of 2 devices active"), "{said}");
        let why = verified(
            detail!("mdadm-detail-raid1-degraded-member-removed.jc.txt"),
            "md126",
            member,
        )
        .unwrap_err();
        assert!(why.contains("still degraded"), "{why}");
        assert!(verified(clean, "md126", "/dev/sdz9").is_err());
    }

    /// The whole replacement as the host runs it, on a scripted host: the
    /// look changes nothing; the start takes sdb out of its arrays; the
    /// old disk still in makes it wait; the blank new one is partitioned,
    /// added and made bootable, in that order; the resync is followed; the
    /// verification refuses an array that does not list the new member
    /// (the `mdadm --detail` sample is of another machine's array), and
    /// the state stays for the next run.
    #[test]
    fn the_replacement_step_by_step() {
        use crate::system::testing::Recorder;
        let dir = tempfile::tempdir().unwrap();
        let mdstat = dir.path().join("mdstat");
        let set_mdstat = |text: &str| std::fs::write(&mdstat, text).unwrap();
        set_mdstat(include_str!(
            "../probes/testdata/mdstat/raid1-check-in-progress.check_raid.mdstat"
        ));
        let table = table_of(sfdisk!("sfdisk-json-gpt-raid123-bios4.txt"), "/dev/sda");
        let host = |blank: bool| {
            let sys = Recorder::new();
            sys.reply(&["blockdev", "--getsize64"], 0, "8589934592\n");
            sys.reply(&["sfdisk", "--json", "/dev/sda"], 0, &table);
            if blank {
                sys.reply(&["blkid", "-p"], 2, "");
            } else {
                sys.reply(
                    &["blkid", "-p"],
                    0,
                    "/dev/sdb: PTUUID=\"ff7eb64b-b3e9-4c2f-9ca0-6302206c9364\" PTTYPE=\"gpt\"\n",
                );
            }
            sys.reply(
                &["mdadm", "--detail"],
                0,
                detail!("mdadm-detail-raid1-clean.jc.txt"),
            );
            sys
        };
        let ask = |sys: &Recorder, step| {
            super::super::answer_with(
                sys,
                dir.path(),
                &mdstat,
                &DiskRequest {
                    run_id: "r1".into(),
                    admin: "camille@portable".into(),
                    disk: "/dev/sdb".into(),
                    new: None,
                    step,
                },
            )
        };
        let changed = |sys: &Recorder| -> Vec<String> {
            sys.commands()
                .into_iter()
                .filter(|c| {
                    [
                        "mdadm --manage",
                        "sgdisk",
                        "blockdev --rereadpt",
                        "udevadm",
                        "wipefs",
                        "grub-install",
                    ]
                    .iter()
                    .any(|p| c.starts_with(p))
                })
                .collect()
        };

        let sys = host(false);
        let look = ask(&sys, DiskStep::Look);
        assert_eq!(look.error, None);
        assert_eq!(look.refusal, None);
        assert_eq!(look.uses.len(), 3);
        assert!(look.uses.iter().all(|u| u.redundant));
        assert_eq!(look.commands.len(), 22);
        assert!(changed(&sys).is_empty(), "{:?}", sys.commands());

        let sys = host(false);
        let started = ask(&sys, DiskStep::Start);
        assert_eq!(started.error, None);
        assert_eq!(changed(&sys), &look.commands[..6]);
        assert!(started.waiting.unwrap().contains("put the new disk in"));

        // What /proc/mdstat says once sdb's members are out: the sample
        // above with what `--remove` takes away (derived, not captured:
        // no md driver here).
        let clean =
            include_str!("../probes/testdata/mdstat/raid1-check-in-progress.check_raid.mdstat");
        let removed: String = clean
            .replace("sdb3[0] ", "")
            .replace(" sdb2[1]", "")
            .replace(" sdb1[1]", "")
            .replace("[2/2] [UU]", "[2/1] [_U]")
            .lines()
            .filter(|l| !l.contains("check ="))
            .map(|l| format!("{l}\n"))
            .collect();
        set_mdstat(&removed);
        // Asked again (another run): the state says where it is.
        let sys = host(false);
        let waiting = ask(&sys, DiskStep::Progress);
        assert_eq!(waiting.error, None);
        assert!(waiting.waiting.unwrap().contains("/dev/sdb is not blank"));
        assert!(changed(&sys).is_empty(), "{:?}", sys.commands());

        // The new disk, blank: partitioned, its members added, GRUB.
        let sys = host(true);
        let put_in = ask(&sys, DiskStep::Progress);
        assert_eq!(put_in.error, None);
        assert_eq!(put_in.waiting, None);
        assert_eq!(changed(&sys), &look.commands[7..18]);
        assert_eq!(put_in.percent, Some(0.0));

        // Recovering (a sample of another replacement of the same layout).
        set_mdstat(include_str!(
            "../probes/testdata/mdstat/raid1-degraded-recovery-and-resync-delayed.check_raid.mdstat"
        ));
        let sys = host(true);
        let resyncing = ask(&sys, DiskStep::Progress);
        assert_eq!(resyncing.error, None);
        assert!(changed(&sys).is_empty(), "{:?}", sys.commands());
        // md0 recovering at 3.9%, md1 delayed, md2 not listed yet.
        assert_eq!(resyncing.percent, Some(1.3));
        assert_eq!(resyncing.eta.as_deref(), Some("md0 in 267.0min"));

        set_mdstat(include_str!(
            "../probes/testdata/mdstat/raid1-check-in-progress.check_raid.mdstat"
        ));
        let sys = host(true);
        let end = ask(&sys, DiskStep::Progress);
        assert!(changed(&sys).is_empty(), "nothing is run twice");
        let why = end.error.unwrap();
        assert!(
            why.contains("/dev/md2 does not list /dev/sdb3 as `active sync`"),
            "{why}"
        );
        assert!(!end.finished);
        assert!(dir.path().join(super::super::STATE).exists());
        let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        for command in &look.commands[..6] {
            assert!(
                journal.contains(command.as_str()),
                "{command} not journaled"
            );
        }
        assert!(journal.contains("grub-install /dev/sdb"));
    }

    /// A rebuild that gave up (the new member marked faulty, no sync
    /// running) is an error, not progress forever.
    #[test]
    fn a_rebuild_that_gave_up_is_an_error() {
        let arrays = mdstat!("raid1-degraded-failed-member-F.pymdstat.mdstat");
        let plan = Plan {
            members: vec![Member {
                array: "md1".into(),
                device: "/dev/sde1".into(),
                partition: Some(1),
                faulty: false,
            }],
            source: "/dev/sdg".into(),
            label: "dos".into(),
            boot: Boot::Grub,
        };
        let why = resync(&arrays, &plan, "/dev/sde").unwrap_err();
        assert!(
            why.contains("the rebuild of md1 stopped: /dev/sde1 is faulty"),
            "{why}"
        );
    }

    /// A resync waiting (DELAYED) means the copies do not agree yet.
    #[test]
    fn a_waiting_resync_is_refused() {
        let arrays = mdstat!("raid1-check-and-resync-delayed-bitmap.check_raid.mdstat");
        let md1 = arrays.iter().find(|a| a.name == "md1").unwrap();
        let member = Member {
            array: "md1".into(),
            device: format!("/dev/{}", md1.members[0].device),
            partition: Some(2),
            faulty: false,
        };
        let why = keeps_a_copy(md1, &member).unwrap_err();
        assert!(
            why.contains("has a resync or check waiting (DELAYED)"),
            "{why}"
        );
    }

    /// A start cut short after md2 (the agent killed, a lost connection):
    /// the next run fails and removes only what is still in, md1 and md0,
    /// before it waits for the new disk.
    #[test]
    fn a_take_out_cut_short_is_finished_by_the_next_run() {
        use crate::system::testing::Recorder;
        let dir = tempfile::tempdir().unwrap();
        let clean =
            include_str!("../probes/testdata/mdstat/raid1-check-in-progress.check_raid.mdstat");
        let table = table_of(sfdisk!("sfdisk-json-gpt-raid123-bios4.txt"), "/dev/sda");
        let plan = plan(&parse_mdstat(clean), "/dev/sdb", Some(&table)).unwrap();
        let u = Underway {
            run_id: "r1".into(),
            admin: "camille@portable".into(),
            disk: "/dev/sdb".into(),
            new: "/dev/sdb".into(),
            started: "2026-12-02T03:00:00Z".into(),
            plan,
            size: 8589934592,
            serial: None,
            source_serial: None,
            phase: Phase::Out,
        };
        save(&Recorder::new(), dir.path(), Some(&State::Mdadm(u))).unwrap();
        // md2 lost sdb3 (derived from the sample as --remove would).
        let mdstat = dir.path().join("mdstat");
        std::fs::write(
            &mdstat,
            clean
                .replacen("sdb3[0] ", "", 1)
                .replacen("[2/2] [UU]", "[2/1] [_U]", 1),
        )
        .unwrap();
        let sys = Recorder::new();
        sys.reply(&["blkid", "-p"], 0, "/dev/sdb: PTTYPE=\"gpt\"\n");
        let report = super::super::answer_with(
            &sys,
            dir.path(),
            &mdstat,
            &DiskRequest {
                run_id: "r2".into(),
                admin: "camille@portable".into(),
                disk: "/dev/sdb".into(),
                new: None,
                step: DiskStep::Progress,
            },
        );
        let ran: Vec<String> = sys
            .commands()
            .into_iter()
            .filter(|c| c.starts_with("mdadm --manage"))
            .collect();
        assert_eq!(
            ran,
            [
                "mdadm --manage /dev/md1 --fail /dev/sdb2",
                "mdadm --manage /dev/md1 --remove /dev/sdb2",
                "mdadm --manage /dev/md0 --fail /dev/sdb1",
                "mdadm --manage /dev/md0 --remove /dev/sdb1",
            ]
        );
        // In this scripted host the members stay listed (nothing really
        // removes them), so the new disk is not taken for blank.
        assert!(report.waiting.is_some(), "{report:?}");
    }
}
