//! The `mdraid` probe: Linux software RAID (md) arrays, one finding each.
//!
//! Two kernel views are read and merged: `/proc/mdstat` (every array, its
//! members with `(F)` faulty and `(S)` spare marks, `[n/m] [UU_]`, the
//! progress and ETA of a resync, recovery, reshape or check, and
//! `resync=DELAYED`/`PENDING`), and `/sys/block/mdX/md/` (array_state,
//! degraded, sync_action, the state and slot of every member), which wins
//! where both speak because it is not a text meant for people. When
//! `mdadm` is installed, `mdadm --detail` adds its own reading (State line,
//! removed slots, faulty members); when it sees a degraded array the kernel
//! views missed, that counts.
//!
//! No md driver (no `/proc/mdstat`) or no arrays means no findings: most
//! hosts have no md, and that is not a fault.
//!
//! What each state means, and why:
//! - clean: ok.
//! - degraded (fewer working disks than the array has): crit, naming the
//!   failed member so a person knows which disk to pull. Crit also while a
//!   rebuild runs if a failed member is still listed: it still has to go.
//! - degraded with a recovery (or a queued one) and no failed member left:
//!   warn with percent and ETA: someone already acted, there is nothing to
//!   do but wait, and the array has no redundancy until it finishes.
//! - resync or reshape running on a whole array: warn with percent and ETA.
//! - a scheduled `check` (Debian's checkarray, first Sunday of the month):
//!   ok, mentioned. A queued `resync=DELAYED` is mentioned only: mdstat
//!   shows a check waiting behind another array on the same disks that way
//!   too (check_raid PR #77), and the array's counts say whether it is whole.
//! - `resync=PENDING`: warn: the copies are not known to match, and the
//!   resync only starts on the first write.
//! - a member marked faulty while the counts say every disk works (seen in
//!   the wild, check_raid issue #164): warn, it should be removed.
//! - inactive (not assembled): warn, except an IMSM/DDF container
//!   (`super external:imsm`), which is how Intel RST metadata always looks.

use std::path::Path;

use clou_protocol::health::{Finding, Severity};

use super::{Probe, ProbeCtx};
use crate::system::{Cmd, System};

/// The `mdraid` probe.
#[derive(Debug, Clone, Copy)]
pub struct MdRaid;

impl Probe for MdRaid {
    fn name(&self) -> &'static str {
        "mdraid"
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        check(ctx, Path::new("/proc"), Path::new("/sys"))
    }
}

const PROBE: &str = "mdraid";

/// One md array, as the kernel describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Array {
    /// `md0`, `md_d0`, `md127`.
    pub name: String,
    /// `false` for an `inactive` array (not assembled or stopped halfway).
    pub active: bool,
    /// `auto-read-only` or `read-only`, when so.
    pub read_only: Option<String>,
    /// `raid1`, `raid5`, `raid0`, `linear`... (an inactive array may have none).
    pub level: Option<String>,
    /// Superblock format: `1.2`, `0.90`, `external:imsm` (a container),
    /// `external:/md127/0` (an array inside a container).
    pub metadata: Option<String>,
    /// How many disks the array is made of, and how many of them work.
    pub raid_disks: Option<u32>,
    pub working: Option<u32>,
    /// One letter per slot: `U` working, `_` missing or failed.
    pub slots: Option<String>,
    pub members: Vec<Member>,
    pub sync: Option<Sync>,
    /// `DELAYED` (queued behind another array on the same disks) or
    /// `PENDING` (needed, starts on the first write).
    pub sync_waiting: Option<String>,
    /// sysfs `array_state` is `broken` (a raid0 or linear lost a member).
    pub broken: bool,
}

/// A member device of an array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Kernel name, `sda1`.
    pub device: String,
    /// The number in `sda1[2]` (the descriptor number, not the slot).
    pub index: Option<u32>,
    pub faulty: bool,
    pub spare: bool,
    /// The slot it fills (sysfs only).
    pub slot: Option<u32>,
    /// Up to date in its slot (sysfs only: mdstat cannot tell a disk being
    /// rebuilt from a working one).
    pub in_sync: Option<bool>,
}

/// A resync, recovery, reshape, check or repair in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    pub action: SyncAction,
    pub percent: Option<f64>,
    /// As the kernel says it: `12.3min`.
    pub finish: Option<String>,
    /// As the kernel says it: `259783K/sec`.
    pub speed: Option<String>,
}

/// What md is doing to an array's disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncAction {
    /// Making the copies agree (after creation or an unclean shutdown).
    Resync,
    /// Rebuilding a missing member onto a new or spare disk.
    Recovery,
    /// Changing the layout (level, disks, chunk).
    Reshape,
    /// Reading everything to compare copies (scheduled, harmless).
    Check,
    /// A check that also rewrites mismatches (started by an admin).
    Repair,
}

impl SyncAction {
    fn from_word(word: &str) -> Option<SyncAction> {
        Some(match word {
            "resync" => SyncAction::Resync,
            "recovery" | "recover" => SyncAction::Recovery,
            "reshape" => SyncAction::Reshape,
            "check" => SyncAction::Check,
            "repair" => SyncAction::Repair,
            _ => return None,
        })
    }

    pub fn word(self) -> &'static str {
        match self {
            SyncAction::Resync => "resync",
            SyncAction::Recovery => "recovery",
            SyncAction::Reshape => "reshape",
            SyncAction::Check => "check",
            SyncAction::Repair => "repair",
        }
    }
}

impl Array {
    /// Fewer working disks than the array is made of.
    pub fn degraded(&self) -> bool {
        match (self.working, self.raid_disks) {
            (Some(working), Some(disks)) => working < disks,
            _ => false,
        }
    }

    /// A container of external metadata (Intel RST `imsm`, `ddf`): it holds
    /// the metadata of the arrays inside it and is always `inactive`.
    pub fn is_container(&self) -> bool {
        self.metadata
            .as_deref()
            .and_then(|m| m.strip_prefix("external:"))
            .is_some_and(|kind| !kind.starts_with('/') && !kind.starts_with('-'))
    }

    fn has_redundancy(&self) -> bool {
        !matches!(self.level.as_deref(), Some("raid0" | "linear"))
    }

    fn faulty(&self) -> Vec<&Member> {
        self.members.iter().filter(|m| m.faulty).collect()
    }

    fn spares(&self) -> Vec<&Member> {
        self.members
            .iter()
            .filter(|m| m.spare && !m.faulty && m.slot.is_none())
            .collect()
    }

    /// Members that have a slot but are not yet in sync: what a recovery
    /// is rebuilding onto (known from sysfs only).
    fn rebuilding_onto(&self) -> Vec<&Member> {
        self.members
            .iter()
            .filter(|m| !m.faulty && m.slot.is_some() && m.in_sync == Some(false))
            .collect()
    }
}

/// Parses `/proc/mdstat`. Tolerant: lines it does not know are skipped,
/// indentation does not matter (pasted copies often differ).
pub fn parse_mdstat(text: &str) -> Vec<Array> {
    let mut arrays: Vec<Array> = Vec::new();
    for line in text.lines() {
        if let Some(array) = parse_array_line(line) {
            arrays.push(array);
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("Personalities") || trimmed.starts_with("unused devices") {
            continue;
        }
        if let Some(array) = arrays.last_mut() {
            parse_detail_line(array, trimmed);
        }
    }
    arrays
}

/// `md1 : active (auto-read-only) raid1 sde1[6](F) sdg1[1]`.
fn parse_array_line(line: &str) -> Option<Array> {
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if !name.starts_with("md") || name.contains(char::is_whitespace) {
        return None;
    }
    let mut tokens = rest.split_whitespace();
    let active = match tokens.next()? {
        "active" => true,
        "inactive" => false,
        _ => return None,
    };
    let mut array = Array {
        name: name.to_owned(),
        active,
        ..Array::default()
    };
    for token in tokens {
        if let Some(mode) = token.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            array.read_only = Some(mode.to_owned());
        } else if let Some(member) = parse_member(token) {
            array.members.push(member);
        } else if array.level.is_none() {
            array.level = Some(token.to_owned());
        }
    }
    Some(array)
}

/// `sde1[6](F)`, `sdk[5](S)`, `sdb2[1]`.
fn parse_member(token: &str) -> Option<Member> {
    let (device, rest) = token.split_once('[')?;
    let (index, flags) = rest.split_once(']')?;
    if device.is_empty() {
        return None;
    }
    Some(Member {
        device: device.to_owned(),
        index: index.parse().ok(),
        faulty: flags.contains("(F)"),
        spare: flags.contains("(S)"),
        slot: None,
        in_sync: None,
    })
}

/// The lines under an array: blocks and counts, progress, waiting syncs.
fn parse_detail_line(array: &mut Array, line: &str) {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    if tokens.contains(&"blocks") {
        for (i, token) in tokens.iter().enumerate() {
            if *token == "super" {
                array.metadata = tokens.get(i + 1).map(|s| (*s).to_owned());
            } else if let Some(inner) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                if let Some((disks, working)) = inner.split_once('/') {
                    if let (Ok(disks), Ok(working)) = (disks.parse(), working.parse()) {
                        array.raid_disks = Some(disks);
                        array.working = Some(working);
                    }
                } else if !inner.is_empty() && inner.chars().all(|c| c == 'U' || c == '_') {
                    array.slots = Some(inner.to_owned());
                }
            }
        }
        return;
    }
    // `recovery =  3.6% (7680/208704) finish=259.6min speed=12K/sec` and
    // `resync=DELAYED`: make every `key = value` one `key=value` token (the
    // progress bar `[==>...]` has `=` too, but no word before it).
    let joined = tokens.join(" ").replace(" = ", "=");
    let mut sync: Option<Sync> = None;
    let mut finish = None;
    let mut speed = None;
    for token in joined.split(' ') {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_alphabetic()) || key.is_empty() {
            continue;
        }
        match key {
            "finish" => finish = Some(value.to_owned()),
            "speed" => speed = Some(value.to_owned()),
            _ => {
                let Some(action) = SyncAction::from_word(key) else {
                    continue;
                };
                if let Some(percent) = value.strip_suffix('%') {
                    sync = Some(Sync {
                        action,
                        percent: percent.parse().ok(),
                        finish: None,
                        speed: None,
                    });
                } else if !value.is_empty() {
                    array.sync_waiting = Some(value.to_owned());
                }
            }
        }
    }
    if let Some(mut sync) = sync {
        sync.finish = finish;
        sync.speed = speed;
        array.sync = Some(sync);
    }
}

/// What `/sys/block/mdX/md/` says about one array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysArray {
    pub array_state: Option<String>,
    pub level: Option<String>,
    pub metadata_version: Option<String>,
    pub raid_disks: Option<u32>,
    pub degraded: Option<u32>,
    pub sync_action: Option<String>,
    /// `done / total` in sectors, or `none`.
    pub sync_completed: Option<String>,
    /// `(device, state flags, slot)` of every `dev-*` directory.
    pub members: Vec<(String, Vec<String>, Option<u32>)>,
}

/// Reads `SYS/block/NAME/md/`; `None` when the array has no such directory.
pub fn read_sysfs(sys: &dyn System, sys_root: &Path, name: &str) -> Option<SysArray> {
    let dir = sys_root.join("block").join(name).join("md");
    let entries = sys.list_dir(&dir).ok()?;
    let word = |file: &Path| -> Option<String> {
        let bytes = sys.read(file).ok()??;
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        (!text.is_empty()).then_some(text)
    };
    let mut array = SysArray {
        array_state: word(&dir.join("array_state")),
        level: word(&dir.join("level")),
        metadata_version: word(&dir.join("metadata_version")),
        raid_disks: word(&dir.join("raid_disks")).and_then(|s| s.parse().ok()),
        degraded: word(&dir.join("degraded")).and_then(|s| s.parse().ok()),
        sync_action: word(&dir.join("sync_action")),
        sync_completed: word(&dir.join("sync_completed")),
        members: Vec::new(),
    };
    for entry in entries {
        let Some(device) = entry.strip_prefix("dev-") else {
            continue;
        };
        let member = dir.join(&entry);
        let state = word(&member.join("state"))
            .map(|s| s.split(',').map(|f| f.trim().to_owned()).collect())
            .unwrap_or_default();
        let slot = word(&member.join("slot")).and_then(|s| s.parse().ok());
        array.members.push((device.to_owned(), state, slot));
    }
    Some(array)
}

/// Lays the sysfs view over the mdstat one (or an empty array).
fn merge_sysfs(array: &mut Array, sysfs: SysArray) {
    match sysfs.array_state.as_deref() {
        Some("inactive" | "clear") => array.active = false,
        Some("readonly") => {
            array.active = true;
            array.read_only = Some("read-only".to_owned());
        }
        Some("read-auto") => {
            array.active = true;
            array.read_only = Some("auto-read-only".to_owned());
        }
        Some("broken") => {
            array.active = true;
            array.broken = true;
        }
        Some(_) => array.active = true,
        None => {}
    }
    if sysfs.level.is_some() {
        array.level = sysfs.level;
    }
    if sysfs.metadata_version.is_some() {
        array.metadata = sysfs.metadata_version;
    }
    if let Some(disks) = sysfs.raid_disks.filter(|d| *d > 0) {
        array.raid_disks = Some(disks);
        if let Some(degraded) = sysfs.degraded {
            array.working = Some(disks.saturating_sub(degraded));
        }
    }
    match sysfs.sync_action.as_deref().and_then(SyncAction::from_word) {
        Some(action) => {
            let percent = sysfs.sync_completed.as_deref().and_then(completed_percent);
            match &mut array.sync {
                // mdstat shows a repair as `resync`: sysfs knows better, and
                // mdstat has the ETA.
                Some(sync) => sync.action = action,
                None => {
                    array.sync = Some(Sync {
                        action,
                        percent,
                        finish: None,
                        speed: None,
                    })
                }
            }
        }
        // `idle` or `frozen`: whatever mdstat showed is over.
        None if sysfs.sync_action.is_some() => array.sync = None,
        None => {}
    }
    for (device, state, slot) in sysfs.members {
        let flag = |f: &str| state.iter().any(|s| s == f);
        let member = match array.members.iter_mut().position(|m| m.device == device) {
            Some(i) => &mut array.members[i],
            None => {
                array.members.push(Member {
                    device: device.clone(),
                    ..Member::default()
                });
                let last = array.members.len() - 1;
                &mut array.members[last]
            }
        };
        member.faulty = flag("faulty");
        member.in_sync = Some(flag("in_sync"));
        member.spare = flag("spare");
        member.slot = slot;
    }
}

/// `1362112 / 20971392` -> 6.5.
fn completed_percent(text: &str) -> Option<f64> {
    let (done, total) = text.split_once('/')?;
    let done: f64 = done.trim().parse().ok()?;
    let total: f64 = total.trim().parse().ok()?;
    (total > 0.0).then(|| (done * 1000.0 / total).floor() / 10.0)
}

/// What `mdadm --detail /dev/mdX` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MdadmDetail {
    /// `/dev/md126`.
    pub device: String,
    /// The words of the State line: `["clean", "degraded"]`.
    pub state: Vec<String>,
    pub raid_level: Option<String>,
    pub raid_devices: Option<u32>,
    pub total_devices: Option<u32>,
    pub active_devices: Option<u32>,
    pub working_devices: Option<u32>,
    pub failed_devices: Option<u32>,
    pub spare_devices: Option<u32>,
    /// `Resync Status : 4% complete`, `Rebuild Status`...: (kind, value).
    pub progress: Option<(String, String)>,
    /// Slots (RaidDevice) shown as `removed`.
    pub removed_slots: Vec<u32>,
    /// Devices shown as `faulty`.
    pub faulty: Vec<String>,
    /// Every row of the device table: (slot, state words, device).
    pub members: Vec<(Option<u32>, String, Option<String>)>,
}

impl MdadmDetail {
    /// Degraded by any of mdadm's signs: the State line, a removed slot
    /// (after `--remove`, Failed Devices goes back to 0), a faulty member,
    /// or fewer active devices than raid devices.
    pub fn degraded(&self) -> bool {
        self.state.iter().any(|s| s == "degraded")
            || !self.removed_slots.is_empty()
            || !self.faulty.is_empty()
            || matches!(
                (self.active_devices, self.raid_devices),
                (Some(active), Some(devices)) if active < devices
            )
    }
}

/// Parses `mdadm --detail` text; `None` when it has no State line (not
/// mdadm's output, or an error).
pub fn parse_mdadm_detail(text: &str) -> Option<MdadmDetail> {
    let mut detail = MdadmDetail::default();
    let mut in_table = false;
    let mut saw_state = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if detail.device.is_empty() && trimmed.starts_with("/dev/") && trimmed.ends_with(':') {
            detail.device = trimmed.trim_end_matches(':').to_owned();
            continue;
        }
        if trimmed.starts_with("Number") && trimmed.contains("RaidDevice") {
            in_table = true;
            continue;
        }
        if in_table {
            parse_detail_row(&mut detail, trimmed);
            continue;
        }
        let Some((key, value)) = trimmed.split_once(" : ") else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let number = || value.parse::<u32>().ok();
        match key {
            "State" => {
                saw_state = true;
                detail.state = value
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            "Raid Level" => detail.raid_level = Some(value.to_owned()),
            "Raid Devices" => detail.raid_devices = number(),
            "Total Devices" => detail.total_devices = number(),
            "Active Devices" => detail.active_devices = number(),
            "Working Devices" => detail.working_devices = number(),
            "Failed Devices" => detail.failed_devices = number(),
            "Spare Devices" => detail.spare_devices = number(),
            _ if key.ends_with(" Status") => {
                let kind = key.trim_end_matches(" Status").to_lowercase();
                detail.progress = Some((kind, value.to_owned()));
            }
            _ => {}
        }
    }
    saw_state.then_some(detail)
}

/// `0  254  1  0  active sync  /dev/vda1`, `-  0  0  1  removed`,
/// `1  254  2  -  faulty  /dev/vda2`.
fn parse_detail_row(detail: &mut MdadmDetail, row: &str) {
    let tokens: Vec<&str> = row.split_whitespace().collect();
    if tokens.len() < 5 {
        return;
    }
    let slot = tokens[3].parse().ok();
    let (device, words) = match tokens.last() {
        Some(last) if last.starts_with('/') => {
            (Some((*last).to_owned()), &tokens[4..tokens.len() - 1])
        }
        _ => (None, &tokens[4..]),
    };
    let state = words.join(" ");
    if let Some(slot) = slot.filter(|_| words.contains(&"removed")) {
        detail.removed_slots.push(slot);
    }
    if let Some(device) = device.as_ref().filter(|_| words.contains(&"faulty")) {
        detail.faulty.push(device.clone());
    }
    detail.members.push((slot, state, device));
}

/// Every array on the host, one finding each (none without md).
pub(crate) fn check(ctx: &ProbeCtx<'_>, proc_root: &Path, sys_root: &Path) -> Vec<Finding> {
    let mdstat = match ctx.sys.read(&proc_root.join("mdstat")) {
        Ok(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Ok(None) => None,
        Err(err) => {
            return vec![Finding::new(
                PROBE,
                "md",
                Severity::Unknown,
                format!("cannot read {}: {err}", proc_root.join("mdstat").display()),
            )];
        }
    };
    let mut arrays = mdstat.as_deref().map(parse_mdstat).unwrap_or_default();
    // sysfs names the same arrays; one only there (mdstat unreadable in a
    // container, say) is still reported.
    let names = ctx
        .sys
        .list_dir(&sys_root.join("block"))
        .unwrap_or_default();
    for name in names.iter().filter(|n| n.starts_with("md")) {
        let Some(sysfs) = read_sysfs(ctx.sys, sys_root, name) else {
            continue;
        };
        match arrays.iter_mut().find(|a| &a.name == name) {
            Some(array) => merge_sysfs(array, sysfs),
            None => {
                let mut array = Array {
                    name: name.clone(),
                    ..Array::default()
                };
                merge_sysfs(&mut array, sysfs);
                arrays.push(array);
            }
        }
    }
    arrays
        .iter()
        .map(|array| {
            let detail = if array.active && !array.is_container() {
                mdadm_detail(ctx.sys, &array.name)
            } else {
                None
            };
            assess(ctx, array, detail.as_ref())
        })
        .collect()
}

/// `mdadm --detail`, when mdadm is installed and answers.
fn mdadm_detail(sys: &dyn System, name: &str) -> Option<MdadmDetail> {
    let dev = format!("/dev/{name}");
    let cmd = Cmd::new(["mdadm", "--detail", dev.as_str()]).env("LC_ALL", "C");
    let out = sys.run(&cmd).ok()?;
    parse_mdadm_detail(&out.stdout_text())
}

/// How a person finds a member: its /dev path, and what `Disks` knows of
/// the disk it is on (model, serial, by-id name), to pull the right one.
fn member_name(ctx: &ProbeCtx<'_>, device: &str) -> String {
    let dev = format!("/dev/{device}");
    let summary = ctx.disks.identity(&dev).summary();
    if summary.is_empty() {
        dev
    } else {
        format!("{dev} ({summary})")
    }
}

/// `it`/`them`, `is`/`are`: messages name one member or several.
fn one_or_many<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

/// One array's finding.
fn assess(ctx: &ProbeCtx<'_>, array: &Array, detail: Option<&MdadmDetail>) -> Finding {
    let (severity, message) = judge(ctx, array, detail);
    let mut finding = Finding::new(PROBE, &array.name, severity, message);
    let names = |members: Vec<&Member>| {
        members
            .iter()
            .map(|m| m.device.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    finding = finding.fact("state", if array.active { "active" } else { "inactive" });
    if let Some(level) = &array.level {
        finding = finding.fact("level", level);
    }
    if let Some(metadata) = &array.metadata {
        finding = finding.fact("metadata", metadata);
    }
    if let Some(mode) = &array.read_only {
        finding = finding.fact("mode", mode);
    }
    if let (Some(disks), Some(working)) = (array.raid_disks, array.working) {
        finding = finding.fact("disks", format!("{working}/{disks}"));
    }
    if let Some(slots) = &array.slots {
        finding = finding.fact("slots", format!("[{slots}]"));
    }
    if !array.members.is_empty() {
        finding = finding.fact("members", names(array.members.iter().collect()));
    }
    let faulty = array.faulty();
    if let Some(first) = faulty.first() {
        // The identity of the disk to pull, when there is one to pull.
        if finding.severity > Severity::Ok {
            finding = ctx
                .disks
                .add_facts(finding, &format!("/dev/{}", first.device));
        }
        finding = finding.fact("faulty", names(faulty));
    }
    let spares = array.spares();
    if !spares.is_empty() {
        finding = finding.fact("spares", names(spares));
    }
    if let Some(sync) = &array.sync {
        finding = finding.fact("sync_action", sync.action.word());
        if let Some(percent) = sync.percent {
            finding = finding.fact("sync_percent", percent);
        }
        if let Some(finish) = &sync.finish {
            finding = finding.fact("sync_finish", finish);
        }
        if let Some(speed) = &sync.speed {
            finding = finding.fact("sync_speed", speed);
        }
    }
    if let Some(waiting) = &array.sync_waiting {
        finding = finding.fact("sync_waiting", waiting);
    }
    if let Some(detail) = detail {
        finding = finding.fact("mdadm_state", detail.state.join(", "));
    }
    finding
}

/// How bad an array is, and what to do, in words (the module doc says why
/// each state gets its severity).
fn judge(ctx: &ProbeCtx<'_>, array: &Array, detail: Option<&MdadmDetail>) -> (Severity, String) {
    let level = array.level.as_deref().unwrap_or("md array");
    let faulty: Vec<String> = array
        .faulty()
        .iter()
        .map(|m| member_name(ctx, &m.device))
        .collect();
    // As typed in commands.
    let faulty_devs: Vec<String> = array
        .faulty()
        .iter()
        .map(|m| format!("/dev/{}", m.device))
        .collect();
    let dev = format!("/dev/{}", array.name);

    if !array.active {
        if array.is_container() {
            let kind = array.metadata.as_deref().unwrap_or_default();
            return (
                Severity::Ok,
                format!(
                    "{kind} metadata container: it holds the firmware RAID metadata of the \
                     arrays inside it and is always listed inactive; those arrays are \
                     reported on their own"
                ),
            );
        }
        let mut message = format!(
            "inactive: the {level} is not running (not assembled, or stopped halfway), so its \
             data cannot be reached"
        );
        if !faulty.is_empty() {
            message += &format!("; failed member {}", faulty.join(", "));
        }
        message += &format!(
            "; look at `mdadm --examine` of its members and dmesg before `mdadm --assemble {dev}`"
        );
        return (Severity::Warn, message);
    }

    let mut notes: Vec<String> = Vec::new();
    match array.read_only.as_deref() {
        Some("auto-read-only") => notes.push("auto-read-only until first written".to_owned()),
        Some(mode) => notes.push(mode.to_owned()),
        None => {}
    }
    let spares = array.spares();
    if !spares.is_empty() {
        let names: Vec<&str> = spares.iter().map(|m| m.device.as_str()).collect();
        notes.push(format!("spare {}", names.join(", ")));
    }
    let counts = match (array.working, array.raid_disks) {
        (Some(working), Some(disks)) => {
            let slots = array
                .slots
                .as_deref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default();
            format!("{working} of {disks} disks working{slots}")
        }
        _ => {
            let count = array.members.len();
            format!("{count} {}", one_or_many(count, "member", "members"))
        }
    };
    let tail = |notes: &[String]| {
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    };

    if array.broken || (!array.has_redundancy() && !faulty.is_empty()) {
        return (
            Severity::Crit,
            format!(
                "broken: a {level} has no redundancy and lost member {}: its data is gone \
                 unless that disk comes back; restore from backup",
                if faulty.is_empty() {
                    "a member".to_owned()
                } else {
                    faulty.join(", ")
                }
            ),
        );
    }

    let mdadm_degraded = detail.is_some_and(MdadmDetail::degraded);
    if array.degraded() || mdadm_degraded {
        let rebuilding = matches!(
            array.sync.as_ref().map(|s| s.action),
            Some(SyncAction::Recovery | SyncAction::Resync | SyncAction::Reshape)
        ) || array.sync_waiting.as_deref() == Some("DELAYED");
        let mut message = format!("degraded {level}: {counts}");
        if let Some(detail) = detail.filter(|d| d.degraded()) {
            message += &format!("; mdadm says State: {}", detail.state.join(", "));
            if !detail.removed_slots.is_empty() {
                let slots: Vec<String> = detail.removed_slots.iter().map(u32::to_string).collect();
                message += &format!(" with slot {} removed", slots.join(", "));
            }
        }
        if !faulty.is_empty() {
            message += &format!(
                "; {} failed: replace {} (`mdadm {dev} --remove {}`, then `mdadm {dev} --add` \
                 the new disk)",
                faulty.join(", "),
                one_or_many(faulty.len(), "it", "them"),
                faulty_devs.join(" ")
            );
            if let Some(progress) = progress(array) {
                message += &format!("; meanwhile {progress}");
            }
            return (Severity::Crit, message + &tail(&notes));
        }
        if rebuilding {
            let onto: Vec<String> = array
                .rebuilding_onto()
                .iter()
                .map(|m| member_name(ctx, &m.device))
                .collect();
            if !onto.is_empty() {
                message += &format!("; rebuilding onto {}", onto.join(", "));
            }
            match progress(array) {
                Some(progress) => message += &format!("; {progress}"),
                None => {
                    message += "; rebuild queued behind another array on the same disks \
                                    (resync=DELAYED)"
                }
            }
            message += "; no redundancy until it finishes";
            return (Severity::Warn, message + &tail(&notes));
        }
        message += "; the missing member is no longer listed (removed or vanished): find the \
                    disk that left (`mdadm --detail`, dmesg) and add a replacement with `mdadm \
                    --add`";
        return (Severity::Crit, message + &tail(&notes));
    }

    if array.sync_waiting.as_deref() == Some("DELAYED") {
        notes.push(
            "a resync or check is queued behind another array on the same disks \
             (resync=DELAYED)"
                .to_owned(),
        );
    }
    let pending = array.sync_waiting.as_deref() == Some("PENDING");
    if pending {
        notes.push(
            "a resync is pending (resync=PENDING): the copies are not known to match until it \
             runs, on the first write to the array"
                .to_owned(),
        );
    }
    if !faulty.is_empty() {
        let mut message = format!(
            "{level} with {counts}, but {} {} still listed as failed (F): remove {} (`mdadm \
             {dev} --remove {}`) and check {}",
            faulty.join(", "),
            one_or_many(faulty.len(), "is", "are"),
            one_or_many(faulty.len(), "it", "them"),
            faulty_devs.join(" "),
            one_or_many(faulty.len(), "that disk", "those disks"),
        );
        if let Some(progress) = progress(array) {
            message += &format!("; {progress}");
        }
        return (Severity::Warn, message + &tail(&notes));
    }
    if pending {
        return (
            Severity::Warn,
            format!("{level} with {counts}") + &tail(&notes),
        );
    }
    match &array.sync {
        Some(sync) if matches!(sync.action, SyncAction::Check | SyncAction::Repair) => {
            let what = if sync.action == SyncAction::Check {
                "a scheduled check is running"
            } else {
                "a repair pass is running"
            };
            notes.push(format!(
                "{what}{}: not a fault",
                progress_figures(sync).unwrap_or_default()
            ));
            (
                Severity::Ok,
                format!("clean {level}: {counts}") + &tail(&notes),
            )
        }
        Some(sync) => {
            let why = match sync.action {
                SyncAction::Reshape => "the layout is being changed",
                _ => "the copies are being made to agree (new array or unclean shutdown)",
            };
            (
                Severity::Warn,
                format!(
                    "{level} with {counts}: {}{}: {why}",
                    sync.action.word(),
                    progress_figures(sync).unwrap_or_default()
                ) + &tail(&notes),
            )
        }
        None if !array.has_redundancy() => (
            Severity::Ok,
            format!("{level} with {counts}, active (no redundancy: one failing disk loses it)")
                + &tail(&notes),
        ),
        None => (
            Severity::Ok,
            format!("clean {level}: {counts}") + &tail(&notes),
        ),
    }
}

/// `recovery 3.6% done, about 4 h 20 min left (finish=259.6min)`.
fn progress(array: &Array) -> Option<String> {
    let sync = array.sync.as_ref()?;
    Some(format!(
        "{}{}",
        sync.action.word(),
        progress_figures(sync).unwrap_or_default()
    ))
}

fn progress_figures(sync: &Sync) -> Option<String> {
    let percent = sync.percent?;
    let mut text = format!(" {percent}% done");
    if let Some(finish) = &sync.finish {
        match eta(finish) {
            Some(eta) => text += &format!(", {eta} left (finish={finish})"),
            None => text += &format!(" (finish={finish})"),
        }
    }
    Some(text)
}

/// `259.6min` -> `about 4 h 20 min`.
fn eta(finish: &str) -> Option<String> {
    let minutes: f64 = finish.strip_suffix("min")?.parse().ok()?;
    let minutes = minutes.round() as u64;
    Some(match minutes {
        0 => "less than a minute".to_owned(),
        1..=59 => format!("about {minutes} min"),
        _ => format!("about {} h {:02} min", minutes / 60, minutes % 60),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::disks::Disks;
    use crate::system::testing::Recorder;
    use clou_protocol::health::CheckSettings;

    /// Runs the probe on a /proc holding `mdstat` (none: no md driver) and
    /// an empty /sys, answering mdadm with `mdadm_out` if given.
    fn probe(mdstat: Option<&str>, mdadm_out: Option<&str>) -> (Vec<Finding>, Recorder) {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let sys_root = dir.path().join("sys");
        std::fs::create_dir_all(&proc_root).unwrap();
        std::fs::create_dir_all(sys_root.join("block")).unwrap();
        if let Some(text) = mdstat {
            std::fs::write(proc_root.join("mdstat"), text).unwrap();
        }
        let sys = Recorder::new();
        if let Some(out) = mdadm_out {
            sys.reply(&["mdadm"], 0, out);
        }
        let findings = run_on(&sys, &proc_root, &sys_root);
        (findings, sys)
    }

    fn run_on(sys: &Recorder, proc_root: &Path, sys_root: &Path) -> Vec<Finding> {
        let settings = CheckSettings::default();
        let disks = Disks::default();
        let ctx = ProbeCtx {
            sys,
            settings: &settings,
            disks: &disks,
        };
        check(&ctx, proc_root, sys_root)
    }

    fn findings(mdstat: &str) -> Vec<Finding> {
        probe(Some(mdstat), None).0
    }

    fn get<'a>(findings: &'a [Finding], subject: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.subject == subject)
            .unwrap_or_else(|| panic!("no finding for {subject} in {findings:#?}"))
    }

    fn severities(findings: &[Finding]) -> Vec<(&str, Severity)> {
        findings
            .iter()
            .map(|f| (f.subject.as_str(), f.severity))
            .collect()
    }

    macro_rules! mdstat {
        ($file:literal) => {
            include_str!(concat!("testdata/mdstat/", $file))
        };
    }
    macro_rules! mdadm {
        ($file:literal) => {
            include_str!(concat!("testdata/mdadm/", $file))
        };
    }

    // ---- /proc/mdstat fixtures, one test each ----

    #[test]
    fn clean_raid1_arrays_with_bitmaps_and_a_raid0_are_ok() {
        let found = findings(mdstat!(
            "raid1-clean-5-arrays-bitmap-centos6.check_raid.mdstat"
        ));
        assert_eq!(
            severities(&found),
            [
                ("md4", Severity::Ok),
                ("md3", Severity::Ok),
                ("md0", Severity::Ok),
                ("md1", Severity::Ok),
                ("md2", Severity::Ok)
            ]
        );
        let md4 = get(&found, "md4");
        assert_eq!(md4.message, "clean raid1: 2 of 2 disks working [UU]");
        assert_eq!(md4.facts["metadata"], "1.1");
        assert_eq!(md4.facts["members"], "sda6 sdb6");
        assert!(get(&found, "md1").message.contains("no redundancy"));
    }

    #[test]
    fn clean_raid1_and_raid0_over_nvme_are_ok() {
        let found = findings(mdstat!("raid1-clean-plus-raid0-nvme.pymdstat.mdstat"));
        assert!(
            found.iter().all(|f| f.severity == Severity::Ok),
            "{found:#?}"
        );
        assert_eq!(get(&found, "md126").facts["members"], "nvme0n1 nvme1n1");
        assert_eq!(get(&found, "md125").facts["level"], "raid0");
    }

    #[test]
    fn auto_read_only_arrays_are_ok_and_say_so() {
        let found = findings(mdstat!("raid1-clean-auto-read-only.check_raid.mdstat"));
        assert_eq!(found.len(), 3);
        assert!(found.iter().all(|f| f.severity == Severity::Ok));
        assert!(get(&found, "md2").message.contains("auto-read-only"));
        assert!(!get(&found, "md1").message.contains("read-only"));
    }

    #[test]
    fn raid1_with_a_failed_member_names_the_disk_to_pull() {
        let found = findings(mdstat!("raid1-degraded-failed-member-F.pymdstat.mdstat"));
        let md1 = get(&found, "md1");
        assert_eq!(md1.severity, Severity::Crit);
        assert!(
            md1.message.contains("4 of 6 disks working [_UUUU_]"),
            "{}",
            md1.message
        );
        assert!(
            md1.message.contains(
                "/dev/sde1 failed: replace it (`mdadm /dev/md1 --remove /dev/sde1`, then `mdadm /dev/md1 --add` the new disk)"
            ),
            "{}",
            md1.message
        );
        assert_eq!(md1.facts["faulty"], "sde1");
    }

    #[test]
    fn issue164_failed_member_while_counts_say_all_working_is_a_warning() {
        let found = findings(mdstat!(
            "raid1-failed-member-F-but-counts-UUUUU.check_raid.mdstat"
        ));
        let md1 = get(&found, "md1");
        assert_eq!(md1.severity, Severity::Warn, "{}", md1.message);
        assert!(
            md1.message
                .contains("/dev/sdh1 is still listed as failed (F): remove it (`mdadm /dev/md1 --remove /dev/sdh1`)"),
            "{}",
            md1.message
        );
        assert_eq!(get(&found, "md0").severity, Severity::Ok);
    }

    #[test]
    fn removed_member_is_critical_and_recovering_array_shows_percent() {
        let found = findings(mdstat!(
            "raid1-degraded-missing-member-and-recovering.check_raid.mdstat"
        ));
        let md1 = get(&found, "md1");
        assert_eq!(md1.severity, Severity::Crit);
        assert!(md1.message.contains("1 of 2 disks working [_U]"));
        assert!(md1.message.contains("no longer listed"));
        let md0 = get(&found, "md0");
        assert_eq!(md0.severity, Severity::Warn);
        assert!(
            md0.message
                .contains("recovery 3.6% done, about 4 h 20 min left (finish=259.6min)"),
            "{}",
            md0.message
        );
        assert_eq!(md0.facts["sync_percent"], "3.6");
        assert_eq!(md0.facts["sync_speed"], "12K/sec");
    }

    #[test]
    fn degraded_array_waiting_for_its_rebuild_reports_resync_delayed() {
        let found = findings(mdstat!(
            "raid1-degraded-recovery-and-resync-delayed.check_raid.mdstat"
        ));
        let md1 = get(&found, "md1");
        assert_eq!(md1.severity, Severity::Warn);
        assert!(md1.message.contains("resync=DELAYED"), "{}", md1.message);
        let md0 = get(&found, "md0");
        assert_eq!(md0.severity, Severity::Warn);
        assert!(md0.message.contains("recovery 3.9% done"));
    }

    #[test]
    fn resync_in_progress_warns_with_percent_and_eta() {
        let found = findings(mdstat!("raid1-resync-in-progress.check_raid.mdstat"));
        assert_eq!(
            severities(&found),
            [
                ("md0", Severity::Ok),
                ("md2", Severity::Warn),
                ("md1", Severity::Warn)
            ]
        );
        let md2 = get(&found, "md2");
        assert!(
            md2.message
                .contains("resync 11.2% done, about 3 h 17 min left (finish=197.2min)"),
            "{}",
            md2.message
        );
    }

    #[test]
    fn scheduled_check_is_not_a_fault() {
        let found = findings(mdstat!("raid1-check-in-progress.check_raid.mdstat"));
        assert!(found.iter().all(|f| f.severity == Severity::Ok));
        let md2 = get(&found, "md2");
        assert!(
            md2.message
                .contains("a scheduled check is running 98.3% done")
        );
        assert_eq!(md2.facts["sync_action"], "check");
    }

    #[test]
    fn pr77_check_and_delayed_resync_do_not_warn_but_are_mentioned() {
        let found = findings(mdstat!(
            "raid1-check-and-resync-delayed-bitmap.check_raid.mdstat"
        ));
        assert_eq!(
            severities(&found),
            [("md1", Severity::Ok), ("md0", Severity::Ok)]
        );
        assert!(get(&found, "md1").message.contains("resync=DELAYED"));
        assert!(
            get(&found, "md0")
                .message
                .contains("check is running 6.4% done")
        );
    }

    #[test]
    fn raid5_with_a_failed_member_is_critical() {
        let found = findings(mdstat!("raid5-degraded-failed-member-F.check_raid.mdstat"));
        assert_eq!(found.len(), 1);
        let md0 = &found[0];
        assert_eq!(md0.severity, Severity::Crit);
        assert!(
            md0.message
                .contains("degraded raid5: 2 of 3 disks working [U_U]")
        );
        assert!(md0.message.contains("/dev/sdc1 failed"));
    }

    #[test]
    fn raid5_recovering_without_a_failed_member_warns_with_progress() {
        let found = findings(mdstat!("raid5-degraded-recovering.pymdstat.mdstat"));
        let md = get(&found, "md127");
        assert_eq!(md.severity, Severity::Warn);
        assert!(
            md.message
                .contains("recovery 12.6% done, about 2 h 08 min left")
        );
        assert!(md.message.contains("no redundancy until it finishes"));
    }

    #[test]
    fn partitionable_raid5_with_bitmap_is_ok() {
        let found = findings(mdstat!("raid5-clean-bitmap.pymdstat.mdstat"));
        assert_eq!(severities(&found), [("md_d0", Severity::Ok)]);
        assert_eq!(found[0].facts["disks"], "5/5");
    }

    #[test]
    fn hot_spares_are_listed_and_fine() {
        let found = findings(mdstat!("raid5-clean-with-spares-S.check_raid.mdstat"));
        assert!(found.iter().all(|f| f.severity == Severity::Ok));
        assert_eq!(get(&found, "md1").facts["spares"], "sdk");
        assert_eq!(get(&found, "md2").facts["spares"], "sdi sdl");
        assert!(get(&found, "md2").message.contains("spare sdi, sdl"));
    }

    #[test]
    fn clean_raid6_of_7_disks_is_ok() {
        let found = findings(mdstat!("raid6-clean-7-disks.pymdstat.mdstat"));
        assert_eq!(severities(&found), [("md0", Severity::Ok)]);
        assert!(found[0].message.contains("7 of 7 disks working"));
    }

    #[test]
    fn raid6_with_two_missing_recovering_warns() {
        let found = findings(mdstat!("raid6-two-missing-recovering.check_raid.mdstat"));
        let md0 = &found[0];
        assert_eq!(md0.severity, Severity::Warn);
        assert!(md0.message.contains("4 of 6 disks working [UUUU__]"));
        assert!(md0.message.contains("recovery 19.6% done"));
    }

    #[test]
    fn raid6_reshape_reports_progress() {
        let found = findings(mdstat!("raid6-reshape-with-spares.check_raid.mdstat"));
        let md0 = &found[0];
        assert_eq!(md0.severity, Severity::Warn);
        assert!(
            md0.message.contains("reshape 48.4% done"),
            "{}",
            md0.message
        );
        assert_eq!(md0.facts["metadata"], "0.91");
    }

    #[test]
    fn inactive_array_of_spares_is_a_warning() {
        let found = findings(mdstat!(
            "raid1-clean-plus-inactive-all-spares.pymdstat.mdstat"
        ));
        assert_eq!(
            severities(&found),
            [
                ("md0", Severity::Ok),
                ("md1", Severity::Ok),
                ("md2", Severity::Warn)
            ]
        );
        let md2 = get(&found, "md2");
        assert!(md2.message.starts_with("inactive"));
        assert_eq!(md2.facts["members"], "sdb sdc sdd sda");
    }

    #[test]
    fn imsm_container_is_not_a_failed_array() {
        let found = findings(mdstat!(
            "raid1-imsm-external-metadata-container.check_raid.mdstat"
        ));
        assert_eq!(
            severities(&found),
            [("md127", Severity::Ok), ("md0", Severity::Ok)]
        );
        assert!(
            get(&found, "md0")
                .message
                .contains("external:imsm metadata container")
        );
        assert_eq!(get(&found, "md127").facts["metadata"], "external:/md0/0");
    }

    #[test]
    fn no_arrays_means_no_findings() {
        let (found, sys) = probe(Some(mdstat!("no-arrays.check_raid.mdstat")), None);
        assert!(found.is_empty());
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn composite_stress_test_parses_and_finds_the_degraded_arrays() {
        let text = mdstat!("composite-parser-stress-test.node_exporter.mdstat");
        let arrays = parse_mdstat(text);
        assert_eq!(arrays.len(), 17);
        let found = findings(text);
        let worst: Vec<(&str, Severity)> = severities(&found)
            .into_iter()
            .filter(|(_, s)| *s != Severity::Ok)
            .collect();
        assert_eq!(
            worst,
            [
                ("md4", Severity::Warn),  // inactive, with a failed member
                ("md6", Severity::Crit),  // [2/1] and sdb2 (F), while recovering
                ("md8", Severity::Warn),  // resync 8.5%
                ("md7", Severity::Crit),  // raid6 [4/3], sdc1 (F)
                ("md9", Severity::Warn),  // (F) members listed, counts whole
                ("md11", Severity::Warn), // (F) listed, resync=PENDING
            ]
        );
        assert!(get(&found, "md11").message.contains("resync=PENDING"));
        assert!(get(&found, "md6").message.contains("/dev/sdb2 failed"));
        assert!(get(&found, "md6").message.contains("recovery 8.5% done"));
        assert!(
            get(&found, "md201")
                .message
                .contains("check is running 5.7% done")
        );
        assert_eq!(get(&found, "md219").severity, Severity::Ok);
        let md3 = arrays.iter().find(|a| a.name == "md3").unwrap();
        assert_eq!((md3.raid_disks, md3.working), (Some(8), Some(8)));
        assert_eq!(md3.members.len(), 10);
        let md101 = arrays.iter().find(|a| a.name == "md101").unwrap();
        assert_eq!(md101.read_only.as_deref(), Some("read-only"));
    }

    #[test]
    fn no_md_driver_means_no_findings() {
        let (found, sys) = probe(None, None);
        assert!(found.is_empty());
        assert!(sys.commands().is_empty());
    }

    // ---- mdadm --detail fixtures, one test each ----

    #[test]
    fn mdadm_detail_clean_raid1() {
        let detail = parse_mdadm_detail(mdadm!("mdadm-detail-raid1-clean.jc.txt")).unwrap();
        assert_eq!(detail.device, "/dev/md126");
        assert_eq!(detail.state, ["clean"]);
        assert_eq!(
            (detail.raid_devices, detail.active_devices),
            (Some(2), Some(2))
        );
        assert!(!detail.degraded());
        assert_eq!(detail.members.len(), 2);
        assert_eq!(
            detail.members[0],
            (
                Some(0),
                "active sync".to_owned(),
                Some("/dev/vda1".to_owned())
            )
        );
    }

    #[test]
    fn mdadm_detail_degraded_with_a_faulty_member() {
        let detail =
            parse_mdadm_detail(mdadm!("mdadm-detail-raid1-degraded-faulty.jc.txt")).unwrap();
        assert_eq!(detail.state, ["clean", "degraded"]);
        assert_eq!(detail.failed_devices, Some(1));
        assert_eq!(detail.removed_slots, [1]);
        assert_eq!(detail.faulty, ["/dev/vda2"]);
        assert!(detail.degraded());
    }

    #[test]
    fn mdadm_detail_removed_member_is_degraded_though_no_device_failed() {
        let detail =
            parse_mdadm_detail(mdadm!("mdadm-detail-raid1-degraded-member-removed.jc.txt"))
                .unwrap();
        assert_eq!(detail.failed_devices, Some(0));
        assert_eq!(detail.total_devices, Some(1));
        assert_eq!(detail.removed_slots, [1]);
        assert!(detail.faulty.is_empty());
        assert!(detail.degraded());
        // Even with its State line gone, the removed slot alone tells.
        let no_state_word = MdadmDetail {
            state: vec!["clean".to_owned()],
            ..detail
        };
        assert!(no_state_word.degraded());
    }

    #[test]
    fn mdadm_detail_resyncing_reports_its_status() {
        let detail = parse_mdadm_detail(mdadm!("mdadm-detail-raid1-resyncing.jc.txt")).unwrap();
        assert_eq!(detail.state, ["clean", "resyncing"]);
        assert_eq!(
            detail.progress,
            Some(("resync".to_owned(), "4% complete".to_owned()))
        );
        assert!(!detail.degraded());
    }

    #[test]
    fn mdadm_detail_clean_raid5() {
        let detail = parse_mdadm_detail(mdadm!("mdadm-detail-raid5-clean.jc.txt")).unwrap();
        assert_eq!(detail.raid_level.as_deref(), Some("raid5"));
        assert_eq!(detail.raid_devices, Some(3));
        assert_eq!(detail.members.len(), 3);
        assert!(!detail.degraded());
    }

    #[test]
    fn mdadm_seeing_a_removed_slot_makes_a_clean_looking_array_critical() {
        // The kernel view and mdadm disagree (mdstat read just before the
        // removal); mdadm's degraded wins.
        let (found, sys) = probe(
            Some(mdstat!("raid1-check-in-progress.check_raid.mdstat")),
            Some(mdadm!("mdadm-detail-raid1-degraded-member-removed.jc.txt")),
        );
        assert_eq!(sys.commands()[0], "mdadm --detail /dev/md2");
        let md2 = get(&found, "md2");
        assert_eq!(md2.severity, Severity::Crit);
        assert!(
            md2.message
                .contains("mdadm says State: clean, degraded with slot 1 removed"),
            "{}",
            md2.message
        );
        assert_eq!(md2.facts["mdadm_state"], "clean, degraded");
    }

    #[test]
    fn mdadm_output_that_is_not_detail_is_ignored() {
        assert_eq!(parse_mdadm_detail(""), None);
        assert_eq!(
            parse_mdadm_detail("mdadm: cannot open /dev/md9: No such file or directory\n"),
            None
        );
    }

    // ---- sysfs ----
    //
    // Synthetic trees: the lab's kernel has no md driver, so no real
    // /sys/block/md* could be captured. The values are the ones the kernel
    // documents (Documentation/admin-guide/md.rst); the tests check how the
    // sysfs view is merged, not its format.

    fn sysfs_array(sys_root: &Path, name: &str, files: &[(&str, &str)]) {
        let md = sys_root.join("block").join(name).join("md");
        for (path, content) in files {
            let path = md.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{content}\n")).unwrap();
        }
    }

    #[test]
    fn sysfs_names_the_member_being_rebuilt_and_the_faulty_one() {
        let dir = tempfile::tempdir().unwrap();
        let sys_root = dir.path().join("sys");
        sysfs_array(
            &sys_root,
            "md0",
            &[
                ("array_state", "clean"),
                ("level", "raid1"),
                ("metadata_version", "1.2"),
                ("raid_disks", "2"),
                ("degraded", "1"),
                ("sync_action", "recover"),
                ("sync_completed", "7680 / 208704"),
                ("dev-sda1/state", "spare"),
                ("dev-sda1/slot", "0"),
                ("dev-sdb1/state", "in_sync"),
                ("dev-sdb1/slot", "1"),
            ],
        );
        let sys = Recorder::new();
        // No /proc/mdstat at all: sysfs alone is enough.
        let found = run_on(&sys, &dir.path().join("proc"), &sys_root);
        let md0 = get(&found, "md0");
        assert_eq!(md0.severity, Severity::Warn, "{}", md0.message);
        assert!(md0.message.contains("1 of 2 disks working"));
        assert!(md0.message.contains("rebuilding onto /dev/sda1"));
        assert!(
            md0.message.contains("recovery 3.6% done"),
            "{}",
            md0.message
        );

        sysfs_array(
            &sys_root,
            "md0",
            &[("dev-sda1/state", "faulty"), ("sync_action", "idle")],
        );
        let found = run_on(&sys, &dir.path().join("proc"), &sys_root);
        let md0 = get(&found, "md0");
        assert_eq!(md0.severity, Severity::Crit);
        assert!(md0.message.contains("/dev/sda1 failed"));
    }

    #[test]
    fn sysfs_overrides_mdstat_and_tells_a_repair_from_a_resync() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let sys_root = dir.path().join("sys");
        std::fs::create_dir_all(&proc_root).unwrap();
        std::fs::write(
            proc_root.join("mdstat"),
            mdstat!("raid1-resync-in-progress.check_raid.mdstat"),
        )
        .unwrap();
        sysfs_array(
            &sys_root,
            "md2",
            &[
                ("array_state", "active"),
                ("raid_disks", "2"),
                ("degraded", "0"),
                ("sync_action", "repair"),
            ],
        );
        sysfs_array(
            &sys_root,
            "md9",
            &[
                ("array_state", "inactive"),
                ("metadata_version", "external:imsm"),
            ],
        );
        let found = run_on(&Recorder::new(), &proc_root, &sys_root);
        let md2 = get(&found, "md2");
        assert_eq!(md2.severity, Severity::Ok);
        assert!(
            md2.message.contains("a repair pass is running 11.2% done"),
            "{}",
            md2.message
        );
        assert_eq!(get(&found, "md9").severity, Severity::Ok);
        assert_eq!(get(&found, "md1").severity, Severity::Warn);
    }

    #[test]
    fn eta_reads_like_a_duration() {
        assert_eq!(eta("0.2min").as_deref(), Some("less than a minute"));
        assert_eq!(eta("17.0min").as_deref(), Some("about 17 min"));
        assert_eq!(eta("1271.8min").as_deref(), Some("about 21 h 12 min"));
        assert_eq!(eta("soon"), None);
    }
}
