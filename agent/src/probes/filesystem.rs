//! The `filesystem` probe: space and inodes of every real filesystem, and
//! filesystems that went read-only.
//!
//! Usage comes from `df` (coreutils, on every Debian): its `Use%` counts the
//! blocks reserved for root as unavailable, which is what a full disk means
//! to the services. Read-only is read from `/proc/self/mountinfo`: ext4 with
//! `errors=remount-ro` turns read-only after an I/O error, silently, and
//! every write then fails. Only `/` and filesystems that `/etc/fstab` mounts
//! read-write are judged, since some mounts are meant to be read-only.

use clou_protocol::health::{Finding, Severity, Thresholds};

use super::{Probe, ProbeCtx};
use crate::system::Cmd;

/// The `filesystem` probe.
#[derive(Debug, Clone, Copy)]
pub struct Filesystems;

/// Filesystem types that hold data (the rest are kernel or memory ones).
const DATA_TYPES: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "vfat", "jfs", "reiserfs",
];

/// One line of `df`.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub source: String,
    pub fstype: String,
    pub size: u64,
    pub used: u64,
    pub avail: u64,
    pub inodes: u64,
    pub inodes_used: u64,
    pub target: String,
}

impl Usage {
    /// Percent used as df shows it: used / (used + available), so that the
    /// root reserve counts as full.
    pub fn percent(&self) -> f64 {
        let usable = self.used + self.avail;
        if usable == 0 {
            0.0
        } else {
            self.used as f64 * 100.0 / usable as f64
        }
    }

    /// Inodes used, percent; `None` where the filesystem has no fixed
    /// inode count (btrfs, zfs report 0).
    pub fn inode_percent(&self) -> Option<f64> {
        (self.inodes > 0).then(|| self.inodes_used as f64 * 100.0 / self.inodes as f64)
    }
}

/// Parses `df -B1 --output=source,fstype,size,used,avail,itotal,iused,target`.
pub fn parse_df(text: &str) -> Vec<Usage> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let num = |s: &str| s.parse::<u64>().unwrap_or(0);
            Some(Usage {
                source: f[0].to_owned(),
                fstype: f[1].to_owned(),
                size: num(f[2]),
                used: num(f[3]),
                avail: num(f[4]),
                inodes: num(f[5]),
                inodes_used: num(f[6]),
                // A mount point with spaces is the rest of the line.
                target: f[7..].join(" "),
            })
        })
        .collect()
}

/// The filesystems worth judging: data filesystems (and an overlay root,
/// as in containers), not under /proc, /sys, /dev or /run, each device once.
pub fn real(usages: Vec<Usage>) -> Vec<Usage> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut sorted = usages;
    sorted.sort_by_key(|u| u.target.len());
    for u in sorted {
        let data =
            DATA_TYPES.contains(&u.fstype.as_str()) || (u.fstype == "overlay" && u.target == "/");
        let system = ["/proc", "/sys", "/dev", "/run"]
            .iter()
            .any(|p| u.target == *p || u.target.starts_with(&format!("{p}/")));
        if data && !system && seen.insert((u.source.clone(), u.fstype.clone())) {
            out.push(u);
        }
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    out
}

/// Mount points mounted read-only, from mountinfo text.
pub fn read_only_mounts(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Field 5 is the mount point, field 6 the per-mount options.
            let (target, options) = (f.get(4)?, f.get(5)?);
            options
                .split(',')
                .any(|o| o == "ro")
                .then(|| unescape(target))
        })
        .collect()
}

/// Mount points /etc/fstab mounts read-write.
pub fn fstab_read_write(fstab: &str) -> Vec<String> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (target, options) = (f.get(1)?, f.get(3).copied().unwrap_or("defaults"));
            (!options.split(',').any(|o| o == "ro")).then(|| unescape(target))
        })
        .collect()
}

/// mountinfo and fstab write spaces and tabs as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if digits.len() == 3
                && let Ok(code) = u8::from_str_radix(&digits, 8)
            {
                out.push(code as char);
                for _ in 0..3 {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Findings for the usage of one filesystem.
pub fn assess(u: &Usage, t: &Thresholds) -> Finding {
    let percent = u.percent();
    let inodes = u.inode_percent();
    let space = level(percent, t.fs_warn_percent, t.fs_crit_percent);
    let inode_level = inodes
        .map(|p| level(p, t.inode_warn_percent, t.inode_crit_percent))
        .unwrap_or(Severity::Ok);
    let severity = space.max(inode_level);
    let mut message = format!(
        "{} ({} on {}): {:.0} % used, {} free of {}",
        u.target,
        u.fstype,
        u.source,
        percent,
        human(u.avail),
        human(u.size)
    );
    if let Some(p) = inodes {
        message.push_str(&format!(", inodes {p:.0} % used"));
    }
    match severity {
        Severity::Crit => {
            message.push_str(": nearly full, services will fail to write; free space now")
        }
        Severity::Warn => message.push_str(": filling up, plan some cleaning or a bigger disk"),
        _ => {}
    }
    Finding::new("filesystem", u.target.clone(), severity, message)
        .fact("device", &u.source)
        .fact("fstype", &u.fstype)
        .fact("size_bytes", u.size)
        .fact("used_percent", format!("{percent:.1}"))
        .fact(
            "inodes_used_percent",
            inodes
                .map(|p| format!("{p:.1}"))
                .unwrap_or_else(|| "-".into()),
        )
}

fn level(value: f64, warn: f64, crit: f64) -> Severity {
    if value >= crit {
        Severity::Crit
    } else if value >= warn {
        Severity::Warn
    } else {
        Severity::Ok
    }
}

/// `1.5 GB` style sizes (powers of 1000, as disk vendors and df -H count).
pub fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

impl Probe for Filesystems {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        let df = Cmd::new([
            "df",
            "-B1",
            "--output=source,fstype,size,used,avail,itotal,iused,target",
        ])
        .env("LC_ALL", "C");
        let out = match ctx.sys.run(&df) {
            Ok(out) if !out.stdout.is_empty() => out,
            Ok(out) => {
                return vec![Finding::new(
                    "filesystem",
                    "df",
                    Severity::Unknown,
                    format!("df printed nothing: {}", out.tail()),
                )];
            }
            Err(err) => {
                return vec![Finding::new(
                    "filesystem",
                    "df",
                    Severity::Unknown,
                    format!("cannot run df: {err}"),
                )];
            }
        };
        let usages = real(parse_df(&out.stdout_text()));
        let mut findings: Vec<Finding> = usages
            .iter()
            .map(|u| assess(u, &ctx.settings.thresholds))
            .collect();

        let read = |path: &str| ctx.sys.read_text(path).unwrap_or_default();
        let should_be_rw = fstab_read_write(&read("/etc/fstab"));
        for target in read_only_mounts(&read("/proc/self/mountinfo")) {
            if target == "/" || should_be_rw.contains(&target) {
                findings.push(Finding::new(
                    "filesystem",
                    format!("{target} (read-only)"),
                    Severity::Crit,
                    format!(
                        "{target} is mounted read-only, but should be writable: the kernel \
                         probably remounted it after I/O errors; check `dmesg` and the disk's health"
                    ),
                ));
            }
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on a lab host (Debian 12 container on this machine) with
    // `df -B1 --output=source,fstype,size,used,avail,itotal,iused,target`.
    const DF: &str = include_str!("testdata/df/df-bookworm-lab-web.txt");
    const MOUNTINFO: &str = include_str!("testdata/df/mountinfo-bookworm-lab-web.txt");

    #[test]
    fn df_lines_parse_and_only_real_filesystems_are_judged() {
        let all = parse_df(DF);
        assert!(all.len() > 5, "{all:?}");
        let real = real(all);
        let targets: Vec<&str> = real.iter().map(|u| u.target.as_str()).collect();
        assert_eq!(targets, ["/"], "tmpfs, /dev, /run binds are left out");
    }

    #[test]
    fn thresholds_decide_the_severity() {
        let t = Thresholds::default();
        let mut u = Usage {
            source: "/dev/vdb".into(),
            fstype: "ext4".into(),
            size: 1000,
            used: 860,
            avail: 140,
            inodes: 100,
            inodes_used: 10,
            target: "/srv".into(),
        };
        assert_eq!(assess(&u, &t).severity, Severity::Warn);
        u.used = 960;
        u.avail = 40;
        let f = assess(&u, &t);
        assert_eq!(f.severity, Severity::Crit);
        assert!(f.message.contains("96 % used"), "{}", f.message);
        u.used = 100;
        u.avail = 900;
        u.inodes_used = 99;
        assert_eq!(
            assess(&u, &t).severity,
            Severity::Crit,
            "inodes run out too"
        );
        u.inodes = 0;
        assert_eq!(
            assess(&u, &t).severity,
            Severity::Ok,
            "btrfs has no inode limit"
        );
    }

    #[test]
    fn read_only_mounts_come_from_mountinfo() {
        let ro = read_only_mounts(MOUNTINFO);
        assert!(ro.contains(&"/sys".to_owned()), "{ro:?}");
        assert!(!ro.contains(&"/".to_owned()), "{ro:?}");
        let fstab = "# /etc/fstab\nUUID=1 / ext4 errors=remount-ro 0 1\nUUID=2 /srv\\040data ext4 defaults 0 2\n/dev/sr0 /media/cdrom iso9660 ro,user,noauto 0 0\n";
        assert_eq!(fstab_read_write(fstab), ["/", "/srv data"]);
    }

    #[test]
    fn sizes_read_like_df_h() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(14_000_519_643_136), "14.0 TB");
        assert_eq!(human(2_147_483_648), "2.1 GB");
    }
}
