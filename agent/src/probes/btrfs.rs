//! The `btrfs` probe: the error counters and missing devices of every
//! mounted btrfs filesystem, one finding per device.
//!
//! Mounted btrfs filesystems come from `/proc/self/mountinfo` (or
//! `/proc/mounts`), one per superblock: subvolumes and bind mounts of the
//! same filesystem are looked at once. For each, `btrfs device stats MP`
//! gives five counters per device (without `-c`, whose exit 64 would only
//! repeat what the counters say) and `btrfs filesystem show MP` names the
//! devices and those missing.
//!
//! Severity, and why:
//! - a missing device: crit, the filesystem runs degraded (or not at all).
//! - write, read, flush or corruption errors: crit. Writes that did not
//!   reach the disk, reads that failed, and checksums that did not match
//!   mean a copy of data is stale or bad: with RAID1 the other copy may
//!   still be good, but one more fault loses data.
//! - generation errors only: warn. A block older than expected (after a
//!   disk dropped out briefly and came back); a scrub fixes it where there
//!   is another copy.
//!
//! The counters are cumulative since they were last reset with
//! `btrfs device stats -z`, not since boot; every message says so, because
//! old errors stay until someone resets them after dealing with the cause.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use clou_protocol::health::{Finding, Severity};

use super::{Probe, ProbeCtx};
use crate::system::Cmd;

/// The `btrfs` probe.
#[derive(Debug, Clone, Copy)]
pub struct Btrfs;

impl Probe for Btrfs {
    fn name(&self) -> &'static str {
        "btrfs"
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        check(ctx, Path::new("/proc"))
    }
}

const PROBE: &str = "btrfs";

/// The five counters, in the order btrfs prints them, with what each
/// counts in a message (one, several).
const COUNTERS: [(&str, &str, &str); 5] = [
    ("write_io_errs", "write error", "write errors"),
    ("read_io_errs", "read error", "read errors"),
    ("flush_io_errs", "flush error", "flush errors"),
    ("corruption_errs", "checksum error", "checksum errors"),
    ("generation_errs", "generation error", "generation errors"),
];

/// One mount of a btrfs filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device the kernel names as its source (`/dev/vdb`).
    pub source: String,
    /// Where it is mounted.
    pub target: String,
    /// `major:minor` of the superblock (mountinfo only): the same for
    /// every subvolume mounted from one filesystem.
    pub dev: Option<String>,
}

/// The btrfs mounts in `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // `ID PARENT MAJ:MIN ROOT TARGET OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER`
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split_whitespace().collect();
            let mut right = right.split_whitespace();
            if right.next()? != "btrfs" {
                return None;
            }
            Some(Mount {
                source: unescape(right.next()?),
                target: unescape(left.get(4)?),
                dev: left.get(2).map(|s| (*s).to_owned()),
            })
        })
        .collect()
}

/// The btrfs mounts in `/proc/mounts`.
pub fn parse_proc_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"btrfs")).then(|| Mount {
                source: unescape(fields[0]),
                target: unescape(fields[1]),
                dev: None,
            })
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash in paths as `\040`...
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Three octal digits, the first at most 3: one byte.
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\'
                && (b'0'..=b'3').contains(&d[0])
                && d[1..].iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One device's counters from `btrfs device stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// `/dev/sda3`, or `devid:2` for a device that is missing.
    pub device: String,
    /// Counter name -> value.
    pub counters: BTreeMap<String, u64>,
}

impl DeviceStats {
    fn get(&self, counter: &str) -> u64 {
        self.counters.get(counter).copied().unwrap_or(0)
    }

    /// The devid when btrfs names the device by it (no path: missing).
    fn devid(&self) -> Option<u32> {
        self.device.strip_prefix("devid:")?.parse().ok()
    }
}

/// Parses `btrfs device stats` in its usual layout,
/// `[/dev/sda3].write_io_errs    0`, whatever the column alignment
/// (btrfs-progs 4.x used a narrower one).
pub fn parse_device_stats(text: &str) -> Vec<DeviceStats> {
    let mut devices: Vec<DeviceStats> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix('[') else {
            continue;
        };
        let Some((device, rest)) = rest.split_once("].") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (Some(counter), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        let index = match devices.iter().position(|d| d.device == device) {
            Some(index) => index,
            None => {
                devices.push(DeviceStats {
                    device: device.to_owned(),
                    counters: BTreeMap::new(),
                });
                devices.len() - 1
            }
        };
        devices[index].counters.insert(counter.to_owned(), value);
    }
    devices
}

/// What `btrfs filesystem show` says about one filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsShow {
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub total_devices: Option<u32>,
    pub devices: Vec<ShowDevice>,
    /// `*** Some devices missing` (an unmounted filesystem asked by device).
    pub some_missing: bool,
}

/// A `devid N size ... path P` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowDevice {
    pub devid: u32,
    /// None when btrfs no longer knows it (`path  MISSING`, `<missing disk>`).
    pub path: Option<String>,
    pub missing: bool,
}

impl FsShow {
    /// How many devices are missing, by any of the signs btrfs gives.
    pub fn missing(&self) -> usize {
        let flagged = self.devices.iter().filter(|d| d.missing).count();
        let unlisted = self
            .total_devices
            .map(|total| (total as usize).saturating_sub(self.devices.len()))
            .unwrap_or(0);
        let counted = flagged + unlisted;
        if counted == 0 && self.some_missing {
            1
        } else {
            counted
        }
    }
}

/// Parses `btrfs filesystem show` (the first filesystem it shows).
pub fn parse_filesystem_show(text: &str) -> FsShow {
    let mut show = FsShow::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Label:") {
            if show.uuid.is_some() {
                break;
            }
            let (label, uuid) = match rest.split_once("uuid:") {
                Some((label, uuid)) => (label.trim(), Some(uuid.trim())),
                None => (rest.trim(), None),
            };
            let label = label.trim_matches('\'');
            if label != "none" && !label.is_empty() {
                show.label = Some(label.to_owned());
            }
            show.uuid = uuid.map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("Total devices") {
            show.total_devices = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = line.strip_prefix("devid") {
            let mut tokens = rest.split_whitespace();
            let Some(devid) = tokens.next().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let (path, missing) = match rest.split_once(" path ") {
                Some((_, path)) => {
                    let path = path.trim();
                    match path.strip_suffix("MISSING") {
                        Some(path) => (path.trim(), true),
                        None => (path, false),
                    }
                }
                None => ("", false),
            };
            let missing = missing || path == "<missing disk>";
            let path = (!path.is_empty() && !path.starts_with('<')).then(|| path.to_owned());
            show.devices.push(ShowDevice {
                devid,
                path,
                missing,
            });
        } else if line.contains("Some devices missing") {
            show.some_missing = true;
        }
    }
    show
}

/// A device of one filesystem, with what both commands say of it.
#[derive(Debug, Default)]
struct Device {
    devid: Option<u32>,
    path: Option<String>,
    missing: bool,
    stats: Option<DeviceStats>,
}

/// Every mounted btrfs filesystem, one finding per device.
pub(crate) fn check(ctx: &ProbeCtx<'_>, proc_root: &Path) -> Vec<Finding> {
    let mounts = match ctx.sys.read(&proc_root.join("self/mountinfo")) {
        Ok(Some(bytes)) => parse_mountinfo(&String::from_utf8_lossy(&bytes)),
        _ => match ctx.sys.read(&proc_root.join("mounts")) {
            Ok(Some(bytes)) => parse_proc_mounts(&String::from_utf8_lossy(&bytes)),
            _ => Vec::new(),
        },
    };
    // One filesystem per superblock (or, without mountinfo, per source),
    // with every place it is mounted.
    let mut filesystems: Vec<(Mount, Vec<String>)> = Vec::new();
    for mount in mounts {
        let same = |m: &Mount| match (&m.dev, &mount.dev) {
            (Some(a), Some(b)) => a == b,
            _ => m.source == mount.source,
        };
        match filesystems.iter_mut().find(|(first, _)| same(first)) {
            Some((_, targets)) => targets.push(mount.target),
            None => {
                let target = mount.target.clone();
                filesystems.push((mount, vec![target]));
            }
        }
    }
    filesystems
        .iter()
        .flat_map(|(mount, targets)| check_filesystem(ctx, mount, targets))
        .collect()
}

fn check_filesystem(ctx: &ProbeCtx<'_>, mount: &Mount, targets: &[String]) -> Vec<Finding> {
    let mp = mount.target.as_str();
    let unknown = |message: String| {
        vec![
            Finding::new(PROBE, mp, Severity::Unknown, message)
                .fact("mounted_at", targets.join(" "))
                .fact("source", &mount.source),
        ]
    };
    let stats_cmd = Cmd::new(["btrfs", "device", "stats", mp]).env("LC_ALL", "C");
    let stats = match ctx.sys.run(&stats_cmd) {
        Ok(out) => {
            let stats = parse_device_stats(&out.stdout_text());
            if stats.is_empty() {
                return unknown(format!(
                    "`{}` printed no counters (exit {}): {}",
                    stats_cmd.display(),
                    out.code.map_or("by a signal".to_owned(), |c| c.to_string()),
                    out.tail()
                ));
            }
            stats
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return unknown(format!(
                "btrfs-progs is not installed, so the error counters of the btrfs at {mp} \
                 cannot be read: `apt install btrfs-progs`"
            ));
        }
        Err(err) => return unknown(format!("cannot run `{}`: {err}", stats_cmd.display())),
    };
    // Without `show`, missing devices are still seen by the stats naming
    // them `devid:N`; its failure is not worth a finding of its own.
    let show_cmd = Cmd::new(["btrfs", "filesystem", "show", mp]).env("LC_ALL", "C");
    let show = ctx
        .sys
        .run(&show_cmd)
        .ok()
        .filter(|out| out.success())
        .map(|out| parse_filesystem_show(&out.stdout_text()))
        .unwrap_or_default();

    let mut devices: Vec<Device> = show
        .devices
        .iter()
        .map(|d| Device {
            devid: Some(d.devid),
            path: d.path.clone(),
            missing: d.missing,
            stats: None,
        })
        .collect();
    for entry in stats {
        let devid = entry.devid();
        let found = devices.iter_mut().find(|d| match devid {
            Some(id) => d.devid == Some(id),
            None => d.path.as_deref() == Some(entry.device.as_str()),
        });
        match found {
            Some(device) => device.stats = Some(entry),
            None => devices.push(Device {
                devid,
                // A device without a path is one btrfs cannot find.
                missing: devid.is_some(),
                path: devid.is_none().then(|| entry.device.clone()),
                stats: Some(entry),
            }),
        }
    }

    let mut findings: Vec<Finding> = devices
        .iter()
        .map(|device| device_finding(ctx, mount, targets, &show, device))
        .collect();
    // An unmounted-style `*** Some devices missing` with no device to pin
    // it on still counts.
    if show.missing() > 0 && !devices.iter().any(|d| d.missing) {
        findings.push(
            Finding::new(
                PROBE,
                mp,
                Severity::Crit,
                format!(
                    "btrfs at {mp}: {} device(s) missing: it runs degraded; put the disk back \
                     or `btrfs replace` it",
                    show.missing()
                ),
            )
            .fact("mounted_at", targets.join(" ")),
        );
    }
    findings
}

fn device_finding(
    ctx: &ProbeCtx<'_>,
    mount: &Mount,
    targets: &[String],
    show: &FsShow,
    device: &Device,
) -> Finding {
    let mp = mount.target.as_str();
    let subject = match (&device.path, device.devid) {
        (Some(path), _) => path.clone(),
        (None, Some(devid)) => format!("{mp} devid {devid}"),
        (None, None) => mp.to_owned(),
    };
    let name = device_name(ctx, &subject);
    let counts: Vec<String> = COUNTERS
        .iter()
        .filter_map(|(counter, one, many)| {
            let value = device.stats.as_ref()?.get(counter);
            let words = if value == 1 { one } else { many };
            (value > 0).then(|| format!("{value} {words}"))
        })
        .collect();
    let since = "since the counters were last reset (`btrfs device stats -z`)";
    let (severity, message) = if device.missing {
        let devid = device
            .devid
            .map(|d| format!("device {d}"))
            .unwrap_or_else(|| "a device".to_owned());
        let mut message = format!(
            "{devid} of the btrfs at {mp} is missing: the filesystem runs degraded (or will not \
             mount without `-o degraded`); put the disk back, or `btrfs replace start {} \
             /dev/NEW {mp}`",
            device.devid.map_or("DEVID".to_owned(), |d| d.to_string())
        );
        if !counts.is_empty() {
            message += &format!("; it had {} {since}", counts.join(", "));
        }
        (Severity::Crit, message)
    } else if let Some(stats) = device.stats.as_ref().filter(|s| {
        [
            "write_io_errs",
            "read_io_errs",
            "flush_io_errs",
            "corruption_errs",
        ]
        .iter()
        .any(|c| s.get(c) > 0)
    }) {
        let cause = if stats.get("corruption_errs") > 0
            && stats.get("write_io_errs") + stats.get("read_io_errs") + stats.get("flush_io_errs")
                == 0
        {
            "data read from this disk did not match its checksum"
        } else {
            "the disk failed requests or dropped out, so copies on it are stale or lost"
        };
        (
            Severity::Crit,
            format!(
                "{name} (btrfs at {mp}): {} {since}: {cause}; data is at risk: check the disk \
                 (smart), run `btrfs scrub start {mp}` to repair from the other copy, or \
                 `btrfs replace` it; reset the counters once dealt with",
                counts.join(", ")
            ),
        )
    } else if !counts.is_empty() {
        (
            Severity::Warn,
            format!(
                "{name} (btrfs at {mp}): {} {since}: some blocks were older than expected \
                 (the disk missed writes, e.g. after dropping out briefly); `btrfs scrub start \
                 {mp}` repairs them from the other copy",
                counts.join(", ")
            ),
        )
    } else {
        (
            Severity::Ok,
            format!("{name} (btrfs at {mp}): no I/O or checksum errors {since}"),
        )
    };
    let mut finding =
        Finding::new(PROBE, subject, severity, message).fact("mounted_at", targets.join(" "));
    if let Some(uuid) = &show.uuid {
        finding = finding.fact("uuid", uuid);
    }
    if let Some(label) = &show.label {
        finding = finding.fact("label", label);
    }
    if let Some(devid) = device.devid {
        finding = finding.fact("devid", devid);
    }
    if let Some(stats) = &device.stats {
        for (counter, _, _) in COUNTERS {
            finding = finding.fact(counter, stats.get(counter));
        }
    }
    finding
}

/// How a person finds a device: its /dev path, and what `Disks` knows of
/// the disk it is on (model, serial, by-id name).
fn device_name(ctx: &ProbeCtx<'_>, device: &str) -> String {
    let summary = ctx.disks.identity(device).summary();
    if summary.is_empty() {
        device.to_owned()
    } else {
        format!("{device} ({summary})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::disks::Disks;
    use crate::system::testing::Recorder;
    use crate::system::{Output, System};
    use clou_protocol::health::CheckSettings;

    macro_rules! fixture {
        ($file:literal) => {
            include_str!(concat!("testdata/btrfs/", $file))
        };
    }

    const MOUNTINFO: &str = fixture!("mountinfo-raid1-mounted-bookworm.txt");
    const SHOW_CLEAN: &str = fixture!("filesystem-show-raid1-clean-bookworm.txt");

    /// Runs the probe with `mountinfo` as /proc/self/mountinfo.
    fn run_with(sys: &dyn System, mountinfo: &str) -> Vec<Finding> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        std::fs::write(dir.path().join("self/mountinfo"), mountinfo).unwrap();
        let settings = CheckSettings::default();
        let disks = Disks::default();
        let ctx = ProbeCtx {
            sys,
            settings: &settings,
            disks: &disks,
        };
        check(&ctx, dir.path())
    }

    /// The probe on the lab's /mnt/t with these `device stats` and `show`.
    fn probe(stats: &str, show: &str) -> (Vec<Finding>, Recorder) {
        let sys = Recorder::new();
        sys.reply(&["btrfs", "device", "stats"], 0, stats);
        sys.reply(&["btrfs", "filesystem", "show"], 0, show);
        let found = run_with(&sys, MOUNTINFO);
        (found, sys)
    }

    fn get<'a>(findings: &'a [Finding], subject: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.subject == subject)
            .unwrap_or_else(|| panic!("no finding for {subject} in {findings:#?}"))
    }

    #[test]
    fn dropped_raid1_member_with_write_and_flush_errors_is_critical() {
        let text = fixture!(
            "device-stats-raid1-missing-member-write-flush-errs.linux-btrfs-2020-08-01.txt"
        );
        let stats = parse_device_stats(text);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[1].device, "/dev/sda3");
        assert_eq!(stats[1].get("write_io_errs"), 1010);
        assert_eq!(stats[1].get("flush_io_errs"), 3);
        // The post's own filesystem is not the lab's: no `show` for it.
        let (found, _) = probe(text, "");
        let sda3 = get(&found, "/dev/sda3");
        assert_eq!(sda3.severity, Severity::Crit);
        assert!(
            sda3.message.starts_with(
                "/dev/sda3 (btrfs at /mnt/t): 1010 write errors, 3 flush errors since the \
                 counters were last reset"
            ),
            "{}",
            sda3.message
        );
        assert_eq!(sda3.facts["write_io_errs"], "1010");
        assert_eq!(get(&found, "/dev/sdb3").severity, Severity::Ok);
    }

    #[test]
    fn three_device_raid1_names_the_vanished_disk_and_its_counts() {
        let text = fixture!(
            "device-stats-raid1-3dev-dropped-disk-massive-io-errs.linux-btrfs-2020-05-01.txt"
        );
        let (found, _) = probe(text, "");
        assert_eq!(found.len(), 3);
        let sde = get(&found, "/dev/sde");
        assert_eq!(sde.severity, Severity::Crit);
        assert!(
            sde.message.contains(
                "154997860 write errors, 77170574 read errors, 310 flush errors since the \
                 counters were last reset"
            ),
            "{}",
            sde.message
        );
        assert_eq!(get(&found, "/dev/sdc1").severity, Severity::Ok);
        assert_eq!(get(&found, "/dev/sdf").severity, Severity::Ok);
    }

    #[test]
    fn generation_errors_alone_are_a_warning() {
        let text = fixture!("device-stats-single-dev-generation-errs-1.linux-btrfs-2020-10-21.txt");
        let (found, _) = probe(text, "");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, "/dev/sda1");
        assert_eq!(found[0].severity, Severity::Warn);
        assert!(
            found[0]
                .message
                .contains("1 generation error since the counters were last reset")
        );
    }

    #[test]
    fn clean_raid1_on_the_lab_is_ok_per_device() {
        let (found, sys) = probe(
            fixture!("device-stats-raid1-clean-bookworm.txt"),
            SHOW_CLEAN,
        );
        assert_eq!(
            sys.commands(),
            ["btrfs device stats /mnt/t", "btrfs filesystem show /mnt/t"]
        );
        assert_eq!(found.len(), 2);
        let vdb = get(&found, "/dev/vdb");
        assert_eq!(vdb.severity, Severity::Ok);
        assert_eq!(
            vdb.message,
            "/dev/vdb (btrfs at /mnt/t): no I/O or checksum errors since the counters were \
             last reset (`btrfs device stats -z`)"
        );
        assert_eq!(vdb.facts["uuid"], "803dedf7-3d03-4943-8211-d4846d6088b6");
        assert_eq!(vdb.facts["label"], "clou-t");
        assert_eq!(vdb.facts["devid"], "1");
        assert_eq!(get(&found, "/dev/vdc").facts["devid"], "2");
    }

    #[test]
    fn checksum_errors_found_by_a_scrub_are_critical() {
        let (found, _) = probe(
            fixture!("device-stats-raid1-corruption-errs-4-bookworm.txt"),
            fixture!("filesystem-show-raid1-after-scrub-bookworm.txt"),
        );
        let vdc = get(&found, "/dev/vdc");
        assert_eq!(vdc.severity, Severity::Crit);
        assert!(
            vdc.message
                .contains("4 checksum errors since the counters were last reset")
        );
        assert!(vdc.message.contains("did not match its checksum"));
        assert_eq!(get(&found, "/dev/vdb").severity, Severity::Ok);
    }

    #[test]
    fn stats_with_c_exit_64_are_read_the_same() {
        let text = fixture!("device-stats-check-raid1-corruption-errs-4-bookworm.txt");
        let sys = Recorder::new();
        sys.reply(&["btrfs", "device", "stats"], 64, text);
        let found = run_with(&sys, MOUNTINFO);
        assert_eq!(get(&found, "/dev/vdc").severity, Severity::Crit);
    }

    #[test]
    fn missing_device_is_critical_and_keeps_its_old_counts() {
        let (found, _) = probe(
            fixture!("device-stats-raid1-device-missing-bookworm.txt"),
            fixture!("filesystem-show-raid1-device-missing-bookworm.txt"),
        );
        assert_eq!(found.len(), 2);
        assert_eq!(get(&found, "/dev/vdb").severity, Severity::Ok);
        let missing = get(&found, "/mnt/t devid 2");
        assert_eq!(missing.severity, Severity::Crit);
        assert!(
            missing
                .message
                .starts_with("device 2 of the btrfs at /mnt/t is missing")
        );
        assert!(
            missing
                .message
                .contains("btrfs replace start 2 /dev/NEW /mnt/t")
        );
        assert!(
            missing
                .message
                .contains("4 checksum errors since the counters")
        );
    }

    #[test]
    fn missing_device_is_seen_from_the_stats_alone() {
        let (found, _) = probe(
            fixture!("device-stats-raid1-device-missing-bookworm.txt"),
            "",
        );
        assert_eq!(get(&found, "/mnt/t devid 2").severity, Severity::Crit);
    }

    #[test]
    fn filesystem_show_parses_every_capture() {
        let clean = parse_filesystem_show(SHOW_CLEAN);
        assert_eq!(clean.total_devices, Some(2));
        assert_eq!(clean.devices.len(), 2);
        assert_eq!(clean.devices[1].path.as_deref(), Some("/dev/vdc"));
        assert_eq!(clean.missing(), 0);
        let scrubbed =
            parse_filesystem_show(fixture!("filesystem-show-raid1-after-scrub-bookworm.txt"));
        assert_eq!(scrubbed.missing(), 0);
        let missing = parse_filesystem_show(fixture!(
            "filesystem-show-raid1-device-missing-bookworm.txt"
        ));
        assert_eq!(
            missing.devices[1],
            ShowDevice {
                devid: 2,
                path: None,
                missing: true
            }
        );
        assert_eq!(missing.missing(), 1);
        let unmounted = parse_filesystem_show(fixture!(
            "filesystem-show-unmounted-device-missing-bookworm.txt"
        ));
        assert!(unmounted.some_missing);
        assert_eq!(unmounted.devices.len(), 1);
        assert_eq!(unmounted.label.as_deref(), Some("clou-t"));
        assert_eq!(unmounted.missing(), 1);
    }

    #[test]
    fn some_devices_missing_without_a_device_line_is_still_critical() {
        let (found, _) = probe(
            fixture!("device-stats-raid1-clean-bookworm.txt"),
            fixture!("filesystem-show-unmounted-device-missing-bookworm.txt"),
        );
        let fs = get(&found, "/mnt/t");
        assert_eq!(fs.severity, Severity::Crit);
        assert!(fs.message.contains("1 device(s) missing"));
    }

    #[test]
    fn mountinfo_gives_btrfs_mounts_only() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(
            mounts,
            [Mount {
                source: "/dev/vdb".to_owned(),
                target: "/mnt/t".to_owned(),
                dev: Some("0:211".to_owned())
            }]
        );
        let degraded = parse_mountinfo(fixture!("mountinfo-raid1-degraded-bookworm.txt"));
        assert_eq!(degraded.len(), 1);
    }

    #[test]
    fn proc_mounts_is_the_fallback() {
        let mounts = parse_proc_mounts(fixture!("proc-mounts-raid1-mounted-bookworm.txt"));
        assert_eq!(mounts.len(), 1);
        assert_eq!(
            (mounts[0].source.as_str(), mounts[0].target.as_str()),
            ("/dev/vdb", "/mnt/t")
        );
        // The probe reads it when mountinfo is not there.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mounts"),
            fixture!("proc-mounts-raid1-mounted-bookworm.txt"),
        )
        .unwrap();
        let sys = Recorder::new();
        sys.reply(
            &["btrfs", "device", "stats"],
            0,
            fixture!("device-stats-raid1-clean-bookworm.txt"),
        );
        let settings = CheckSettings::default();
        let disks = Disks::default();
        let ctx = ProbeCtx {
            sys: &sys,
            settings: &settings,
            disks: &disks,
        };
        assert_eq!(check(&ctx, dir.path()).len(), 2);
    }

    #[test]
    fn a_filesystem_mounted_twice_is_checked_once() {
        let text = fixture!("mountinfo-raid1-two-mounts-bookworm.txt");
        assert_eq!(parse_mountinfo(text).len(), 2);
        let sys = Recorder::new();
        sys.reply(
            &["btrfs", "device", "stats"],
            0,
            fixture!("device-stats-raid1-clean-bookworm.txt"),
        );
        let found = run_with(&sys, text);
        assert_eq!(
            sys.commands(),
            ["btrfs device stats /mnt/t", "btrfs filesystem show /mnt/t"]
        );
        assert_eq!(
            get(&found, "/dev/vdb").facts["mounted_at"],
            "/mnt/t /mnt/t2"
        );
    }

    #[test]
    fn no_btrfs_mounted_runs_nothing() {
        let sys = Recorder::new();
        let found = run_with(
            &sys,
            fixture!("mountinfo-raid1-mounted-bookworm.txt")
                .lines()
                .next()
                .unwrap(),
        );
        assert!(found.is_empty());
        assert!(sys.commands().is_empty());
    }

    /// A host without btrfs-progs: every program is missing.
    #[derive(Debug)]
    struct NoPrograms;

    impl System for NoPrograms {
        fn run(&self, _cmd: &Cmd) -> io::Result<Output> {
            Err(io::Error::from(io::ErrorKind::NotFound))
        }
    }

    #[test]
    fn missing_btrfs_progs_is_unknown_when_a_btrfs_is_mounted() {
        let found = run_with(&NoPrograms, MOUNTINFO);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, "/mnt/t");
        assert_eq!(found[0].severity, Severity::Unknown);
        assert!(found[0].message.contains("apt install btrfs-progs"));
    }

    #[test]
    fn stats_that_fail_are_unknown() {
        let sys = Recorder::new();
        sys.reply(&["btrfs", "device", "stats"], 1, "");
        let found = run_with(&sys, MOUNTINFO);
        assert_eq!(found[0].severity, Severity::Unknown);
        assert!(found[0].message.contains("printed no counters (exit 1)"));
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape(r"/srv/my\040data"), "/srv/my data");
        assert_eq!(unescape(r"/x\777"), r"/x\777");
        assert_eq!(unescape(r"/a\\b\0"), r"/a\\b\0");
    }
}
