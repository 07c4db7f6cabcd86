//! The host's disks, from `lsblk` and `/dev/disk/by-id/`: what a person
//! needs to find a disk in a rack (model, serial, capacity, a stable
//! by-id name) and what depends on it (md arrays, filesystems and their
//! mount points), so that every probe can name a disk in plain words.
//!
//! `lsblk --json --bytes --output NAME,PATH,KNAME,TYPE,SIZE,MODEL,SERIAL,
//! WWN,MOUNTPOINT,FSTYPE,PKNAME` works the same on util-linux 2.36, 2.38
//! and 2.41 (Debian 11, 12, 13; see `testdata/lsblk/`): a tree of
//! top-level devices with their partitions and holders (an md array is a
//! child of each member) as `children`. MOUNTPOINT (one mount point) is
//! used rather than MOUNTPOINTS, which 2.36 does not have. MODEL, SERIAL,
//! WWN and FSTYPE come from the udev database: where udev does not run
//! (containers) they are null, and the rest still works.
//!
//! lsblk's MODEL is the SCSI INQUIRY product (16 characters for SATA
//! disks); smartctl knows the full model and serial, so the `smart` probe
//! puts its own identity first and fills the rest from here
//! ([`Identity::or`]).

use std::collections::BTreeSet;
use std::path::Path;

use clou_protocol::health::Finding;
use serde::Deserialize;

use crate::system::{Cmd, System};

/// The command [`Disks::read`] runs.
pub const LSBLK: &[&str] = &[
    "lsblk",
    "--json",
    "--bytes",
    "--output",
    "NAME,PATH,KNAME,TYPE,SIZE,MODEL,SERIAL,WWN,MOUNTPOINT,FSTYPE,PKNAME",
];

/// Where udev keeps the stable names of disks.
pub const BY_ID_DIR: &str = "/dev/disk/by-id";

/// Every top-level block device of the host (disks, but also loop and
/// zram devices: this is a lookup table, not a judgement), in lsblk order.
#[derive(Debug, Clone, Default)]
pub struct Disks {
    disks: Vec<Disk>,
}

/// One whole block device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disk {
    /// `/dev/sda`.
    pub path: String,
    /// The kernel's name, `sda` (what sysfs and /dev/disk/by-id use).
    pub kname: String,
    /// lsblk's TYPE: `disk`, `loop`, `rom`...
    pub kind: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    /// Capacity in bytes.
    pub size: Option<u64>,
    /// The best `/dev/disk/by-id/` path, see [`best_by_id`].
    pub by_id: Option<String>,
    /// What depends on this disk, e.g. `md0 (/srv)`, `sda1 ext4 (/boot)`.
    pub used_by: Vec<String>,
    /// Kernel names of its partitions, to find the disk of `sda1`.
    pub partitions: Vec<String>,
}

/// What identifies a disk to a person, from lsblk, smartctl or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub model: Option<String>,
    pub serial: Option<String>,
    /// Capacity in bytes.
    pub size: Option<u64>,
    pub by_id: Option<String>,
    pub used_by: Vec<String>,
}

impl Identity {
    /// Fills what this identity lacks from `other` (smartctl's identity
    /// first, lsblk's second).
    pub fn or(self, other: Identity) -> Identity {
        Identity {
            model: self.model.or(other.model),
            serial: self.serial.or(other.serial),
            size: self.size.or(other.size),
            by_id: self.by_id.or(other.by_id),
            used_by: if self.used_by.is_empty() {
                other.used_by
            } else {
                self.used_by
            },
        }
    }

    /// One line, what is known only: `WDC WD140EDFZ-11A0VA0, serial
    /// 9RK1XXXX, 14.0 TB, /dev/disk/by-id/ata-..., used by md0 (/srv)`.
    /// Empty when nothing is known.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(model) = &self.model {
            parts.push(model.clone());
        }
        if let Some(serial) = &self.serial {
            parts.push(format!("serial {serial}"));
        }
        if let Some(size) = self.size {
            parts.push(human_size(size));
        }
        if let Some(by_id) = &self.by_id {
            parts.push(by_id.clone());
        }
        if !self.used_by.is_empty() {
            parts.push(format!("used by {}", self.used_by.join(", ")));
        }
        parts.join(", ")
    }

    /// Adds `model`, `serial`, `capacity` (and `capacity_bytes`),
    /// `by_id` and `used_by` facts, those that are known.
    pub fn add_facts(&self, mut finding: Finding) -> Finding {
        if let Some(model) = &self.model {
            finding = finding.fact("model", model);
        }
        if let Some(serial) = &self.serial {
            finding = finding.fact("serial", serial);
        }
        if let Some(size) = self.size {
            finding = finding
                .fact("capacity", human_size(size))
                .fact("capacity_bytes", size);
        }
        if let Some(by_id) = &self.by_id {
            finding = finding.fact("by_id", by_id);
        }
        if !self.used_by.is_empty() {
            finding = finding.fact("used_by", self.used_by.join(", "));
        }
        finding
    }
}

impl Disk {
    /// This disk's identity.
    pub fn identity(&self) -> Identity {
        Identity {
            model: self.model.clone(),
            serial: self.serial.clone(),
            size: self.size,
            by_id: self.by_id.clone(),
            used_by: self.used_by.clone(),
        }
    }
}

/// Why lsblk's output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DisksError {
    #[error("lsblk's output is not the JSON expected: {0}")]
    Json(#[from] serde_json::Error),
}

impl Disks {
    /// Reads the host's block devices; empty when lsblk cannot run (the
    /// probes then name disks by their /dev path only).
    pub fn read(sys: &dyn System) -> Disks {
        Disks::read_from(sys, Path::new(BY_ID_DIR))
    }

    /// [`Disks::read`] with the by-id directory elsewhere (tests).
    pub fn read_from(sys: &dyn System, by_id_dir: &Path) -> Disks {
        let out = match sys.run(&Cmd::new(LSBLK.iter().copied())) {
            Ok(out) if out.success() => out,
            _ => return Disks::default(),
        };
        let links = read_links(sys, by_id_dir);
        Disks::parse(&out.stdout_text(), &links).unwrap_or_default()
    }

    /// From lsblk's JSON and the by-id links as (name, target) pairs, the
    /// target as the link says it (`../../sda`).
    pub fn parse(lsblk_json: &str, by_id: &[(String, String)]) -> Result<Disks, DisksError> {
        let raw: LsblkOutput = serde_json::from_str(lsblk_json)?;
        let disks = raw
            .blockdevices
            .iter()
            .filter_map(|dev| {
                let kname = dev.kname.clone().or_else(|| dev.name.clone())?;
                let path = dev.path.clone().unwrap_or_else(|| format!("/dev/{kname}"));
                let serial = clean(&dev.serial);
                let mut used_by = Vec::new();
                let mut partitions = Vec::new();
                collect_uses(dev, &mut used_by, &mut partitions);
                // One disk can hold several partitions of one array.
                let mut seen = BTreeSet::new();
                used_by.retain(|u| seen.insert(u.clone()));
                Some(Disk {
                    by_id: best_by_id(by_id, &kname, serial.as_deref())
                        .map(|name| format!("{BY_ID_DIR}/{name}")),
                    path,
                    kind: dev.kind.clone().unwrap_or_default(),
                    model: clean(&dev.model),
                    serial,
                    wwn: clean(&dev.wwn),
                    size: dev.size.as_ref().and_then(number),
                    used_by,
                    partitions,
                    kname,
                })
            })
            .collect();
        Ok(Disks { disks })
    }

    /// Every top-level device, in lsblk order.
    pub fn all(&self) -> &[Disk] {
        &self.disks
    }

    /// The disk `dev` is, or is a partition of: `/dev/sda`, `sda`,
    /// `sda1`, or an NVMe controller as smartctl names it (`/dev/nvme0`,
    /// whose disk is the namespace `nvme0n1`).
    pub fn get(&self, dev: &str) -> Option<&Disk> {
        let name = dev.strip_prefix("/dev/").unwrap_or(dev);
        self.disks
            .iter()
            .find(|d| d.path == dev || d.kname == name)
            .or_else(|| {
                self.disks
                    .iter()
                    .find(|d| d.partitions.iter().any(|p| p == name))
            })
            .or_else(|| {
                let controller = name.strip_prefix("nvme")?;
                if controller.is_empty() || !controller.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let namespace = format!("{name}n");
                self.disks.iter().find(|d| d.kname.starts_with(&namespace))
            })
    }

    /// What is known of `dev` (nothing when lsblk does not list it).
    pub fn identity(&self, dev: &str) -> Identity {
        self.get(dev).map(Disk::identity).unwrap_or_default()
    }

    /// One line a person can use in a rack: `/dev/sda: WDC WD140EDFZ,
    /// serial 9RK1XXXX, 14.0 TB, /dev/disk/by-id/ata-..., used by md0
    /// (/srv)`; just `dev` when nothing is known of it.
    pub fn describe(&self, dev: &str) -> String {
        let summary = self.identity(dev).summary();
        if summary.is_empty() {
            dev.to_owned()
        } else {
            format!("{dev}: {summary}")
        }
    }

    /// Adds `dev`'s identity facts to a finding.
    pub fn add_facts(&self, finding: Finding, dev: &str) -> Finding {
        self.identity(dev).add_facts(finding)
    }
}

/// Disk capacity as vendors print it on labels (powers of 1000, one
/// decimal): `14.0 TB`, `500.1 GB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Of the by-id links to the whole device `kname`, the one a person can
/// match against the label on the disk and the provider's inventory:
/// first the names that contain the serial, then by kind (`ata-`, `nvme-`,
/// `scsi-`, then other buses, `wwn-` last: a WWN is printed on few
/// labels), then the shortest (`nvme-..._1` namespace links and
/// `scsi-SATA_...` copies lose to the plain name).
pub fn best_by_id<'a>(
    links: &'a [(String, String)],
    kname: &str,
    serial: Option<&str>,
) -> Option<&'a str> {
    let kind_rank = |name: &str| {
        ["ata-", "nvme-", "scsi-"]
            .iter()
            .position(|p| name.starts_with(p))
            .unwrap_or(if name.starts_with("wwn-") { 4 } else { 3 })
    };
    // udev writes spaces in serials as underscores.
    let serial = serial
        .filter(|s| !s.is_empty())
        .map(|s| s.replace(' ', "_"));
    links
        .iter()
        .filter(|(_, target)| target.rsplit('/').next() == Some(kname))
        .map(|(name, _)| name.as_str())
        .min_by_key(|name| {
            let has_serial = serial.as_ref().is_some_and(|s| name.contains(s.as_str()));
            (!has_serial, kind_rank(name), name.len(), *name)
        })
}

/// The links of a by-id directory as (name, target); none when it does
/// not exist (no udev, as in containers).
fn read_links(sys: &dyn System, dir: &Path) -> Vec<(String, String)> {
    let names = sys.list_dir(dir).unwrap_or_default();
    names
        .into_iter()
        .filter_map(|name| {
            let target = sys.read_link(&dir.join(&name)).ok()?;
            Some((name, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// What depends on `dev`, through its partitions and holders, as lines.
fn collect_uses(dev: &RawDev, used_by: &mut Vec<String>, partitions: &mut Vec<String>) {
    if let Some(fs) = filesystem(dev) {
        used_by.push(fs);
    }
    for child in &dev.children {
        let kind = child.kind.as_deref().unwrap_or_default();
        if kind == "part" {
            if let Some(kname) = child.kname.clone().or_else(|| child.name.clone()) {
                partitions.push(kname);
            }
            collect_uses(child, used_by, partitions);
        } else {
            // A holder (md array, device-mapper volume, or anything
            // stacked on the disk): named once, with every mount point
            // found on it and above it.
            let mut mounts = Vec::new();
            mount_points(child, &mut mounts);
            let name = child.name.clone().unwrap_or_default();
            used_by.push(if mounts.is_empty() {
                name
            } else {
                format!("{name} ({})", mounts.join(", "))
            });
        }
    }
}

/// `sda1 ext4 (/boot)` for a device with a filesystem or mount point of
/// its own; not for the member markers of md, LVM and LUKS when the
/// holder is listed anyway.
fn filesystem(dev: &RawDev) -> Option<String> {
    let name = dev.name.clone().unwrap_or_default();
    let fstype = clean(&dev.fstype);
    let mount = clean(&dev.mountpoint).map(|m| if m == "[SWAP]" { "swap".to_owned() } else { m });
    let member = matches!(
        fstype.as_deref(),
        Some("linux_raid_member" | "LVM2_member" | "crypto_LUKS")
    );
    let holders = dev
        .children
        .iter()
        .any(|c| c.kind.as_deref() != Some("part"));
    match (fstype, mount) {
        (_, None) if member && holders => None,
        (None, None) => None,
        (Some(fstype), None) => Some(format!("{name} {fstype}")),
        (None, Some(mount)) => Some(format!("{name} ({mount})")),
        (Some(fstype), Some(mount)) => Some(format!("{name} {fstype} ({mount})")),
    }
}

fn mount_points(dev: &RawDev, out: &mut Vec<String>) {
    if let Some(mount) = clean(&dev.mountpoint) {
        out.push(mount);
    }
    for child in &dev.children {
        mount_points(child, out);
    }
}

/// Trimmed, `None` when empty (lsblk pads SCSI models with spaces).
fn clean(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A size as lsblk writes it: a number, or a string of digits (older
/// util-linux wrote every JSON value as a string).
fn number(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

// lsblk's JSON. Unknown fields are ignored on purpose: newer util-linux
// may add some, and this is another program's output, not our config.
#[derive(Debug, Deserialize)]
struct LsblkOutput {
    #[serde(default)]
    blockdevices: Vec<RawDev>,
}

#[derive(Debug, Deserialize)]
struct RawDev {
    name: Option<String>,
    path: Option<String>,
    kname: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    size: Option<serde_json::Value>,
    model: Option<String>,
    serial: Option<String>,
    wwn: Option<String>,
    mountpoint: Option<String>,
    fstype: Option<String>,
    #[serde(default)]
    children: Vec<RawDev>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::testing::Recorder;

    fn capture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/probes/testdata/lsblk")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn lsblk_of_debian_11_12_and_13_parses() {
        for (file, disks) in [
            ("lab-scratch-alpha-bullseye-debian11.json", 6),
            ("lab-scratch-charlie-trixie-debian13.json", 7),
            ("lab-girofle-nextcloud-data-bookworm-debian12.json", 7),
            (
                "dev-machine-bookworm-loop-partition-ext4-btrfs-raid1.json",
                10,
            ),
        ] {
            let parsed = Disks::parse(&capture(file), &[]).unwrap();
            assert_eq!(parsed.all().len(), disks, "{file}");
            let vda = parsed.get("/dev/vda").unwrap();
            assert_eq!(
                (vda.kind.as_str(), vda.size, vda.model.as_deref()),
                ("disk", Some(274_877_906_944), None),
                "{file}"
            );
        }
        // util-linux 2.36 writes one device per line: same content.
        let alpha =
            Disks::parse(&capture("lab-scratch-alpha-bullseye-debian11.json"), &[]).unwrap();
        assert_eq!(
            alpha.describe("/dev/vda"),
            "/dev/vda: 274.9 GB, used by vda (/srv/clou-lab/apt)"
        );
        assert_eq!(alpha.describe("/dev/loop1"), "/dev/loop1: 2.1 GB");
    }

    #[test]
    fn partitions_and_filesystems_say_what_uses_a_disk() {
        let disks = Disks::parse(
            &capture("dev-machine-bookworm-loop-partition-ext4-btrfs-raid1.json"),
            &[],
        )
        .unwrap();
        let loop5 = disks.get("/dev/loop5").unwrap();
        assert_eq!(loop5.partitions, ["loop5p1"]);
        // No udev there, so no FSTYPE: the mount point still says it.
        assert_eq!(loop5.used_by, ["loop5p1 (/tmp/clou-h5/mnt-ext4)"]);
        // A partition leads to its disk.
        assert_eq!(disks.get("loop5p1").unwrap().path, "/dev/loop5");
        assert_eq!(disks.get("/dev/loop5p1").unwrap().path, "/dev/loop5");
        // The btrfs RAID1 is mounted from loop6; loop7 shows nothing.
        assert_eq!(
            disks.describe("/dev/loop6"),
            "/dev/loop6: 268.4 MB, used by loop6 (/tmp/clou-h5/mnt-btrfs)"
        );
        assert_eq!(disks.describe("/dev/loop7"), "/dev/loop7: 268.4 MB");
        assert_eq!(disks.describe("/dev/sdz"), "/dev/sdz");
        // zram0 has size 0: listed (a lookup), never a judgement.
        assert_eq!(disks.get("zram0").unwrap().size, Some(0));
    }

    #[test]
    fn identity_facts_are_those_known() {
        let disks = Disks::parse(
            &capture("lab-girofle-nextcloud-data-bookworm-debian12.json"),
            &[],
        )
        .unwrap();
        let finding = disks.add_facts(
            Finding::new(
                "smart",
                "/dev/vda",
                clou_protocol::health::Severity::Unknown,
                "x",
            ),
            "/dev/vda",
        );
        let facts: Vec<(&str, &str)> = finding
            .facts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            facts,
            [
                ("capacity", "274.9 GB"),
                ("capacity_bytes", "274877906944"),
                ("used_by", "vda (/srv/clou-lab/apt)"),
            ]
        );
    }

    #[test]
    fn smartctl_identity_comes_first_and_lsblk_fills_the_rest() {
        let smart = Identity {
            model: Some("WDC WD140EDFZ-11A0VA0".into()),
            serial: Some("9RK1XXXX".into()),
            size: Some(14_000_519_643_136),
            ..Identity::default()
        };
        let lsblk = Identity {
            model: Some("WDC WD140EDFZ-11".into()),
            by_id: Some("/dev/disk/by-id/ata-WDC_WD140EDFZ-11A0VA0_9RK1XXXX".into()),
            used_by: vec!["md0 (/srv)".into()],
            ..Identity::default()
        };
        assert_eq!(
            smart.or(lsblk).summary(),
            "WDC WD140EDFZ-11A0VA0, serial 9RK1XXXX, 14.0 TB, \
             /dev/disk/by-id/ata-WDC_WD140EDFZ-11A0VA0_9RK1XXXX, used by md0 (/srv)"
        );
    }

    #[test]
    fn sizes_read_like_disk_labels() {
        assert_eq!(human_size(14_000_519_643_136), "14.0 TB");
        assert_eq!(human_size(6_001_175_126_016), "6.0 TB");
        assert_eq!(human_size(500_107_862_016), "500.1 GB");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(0), "0 B");
    }

    // No machine at hand runs udev (the lab hosts are containers), so
    // these link names are written by the test, after udev's rules
    // (60-persistent-storage.rules: ata-$ID_SERIAL, wwn-$ID_WWN,
    // scsi-$ID_SERIAL, nvme-$ID_MODEL_$ID_SERIAL_SHORT[_NSID]), for the
    // disks of testdata/smartctl/.
    fn links(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn the_by_id_name_with_the_serial_wins_over_wwn() {
        let l = links(&[
            ("scsi-SATA_WDC_WD140EDFZ-11_9RK1XXXX", "../../sda"),
            ("wwn-0x5000cca28fd4e8c1", "../../sda"),
            ("ata-WDC_WD140EDFZ-11A0VA0_9RK1XXXX-part1", "../../sda1"),
            ("ata-WDC_WD140EDFZ-11A0VA0_9RK1XXXX", "../../sda"),
            ("ata-HGST_HUS726060ALA640_AR01234567890C", "../../sdb"),
        ]);
        assert_eq!(
            best_by_id(&l, "sda", Some("9RK1XXXX")),
            Some("ata-WDC_WD140EDFZ-11A0VA0_9RK1XXXX")
        );
        // Without a serial (no udev data), the kind decides: still not wwn.
        assert_eq!(
            best_by_id(&l, "sda", None),
            Some("ata-WDC_WD140EDFZ-11A0VA0_9RK1XXXX")
        );
        assert_eq!(best_by_id(&l, "sdc", None), None);
        let nvme = links(&[
            ("nvme-eui.0025385781b1f4a3", "../../nvme0n1"),
            (
                "nvme-Samsung_SSD_970_EVO_500GB_S466NX0M776250H_1",
                "../../nvme0n1",
            ),
            (
                "nvme-Samsung_SSD_970_EVO_500GB_S466NX0M776250H",
                "../../nvme0n1",
            ),
        ]);
        assert_eq!(
            best_by_id(&nvme, "nvme0n1", Some("S466NX0M776250H")),
            Some("nvme-Samsung_SSD_970_EVO_500GB_S466NX0M776250H")
        );
    }

    #[test]
    fn read_runs_lsblk_and_reads_the_by_id_links_through_the_seam() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("../../vda", dir.path().join("virtio-clou-root")).unwrap();
        std::os::unix::fs::symlink("../../loop1", dir.path().join("wwn-0x0000")).unwrap();
        let sys = Recorder::new();
        sys.reply(
            &["lsblk"],
            0,
            &capture("lab-girofle-nextcloud-data-bookworm-debian12.json"),
        );
        let disks = Disks::read_from(&sys, dir.path());
        assert_eq!(sys.commands(), [LSBLK.join(" ")]);
        assert_eq!(
            disks.get("vda").unwrap().by_id.as_deref(),
            Some(format!("{BY_ID_DIR}/virtio-clou-root").as_str())
        );
        assert_eq!(
            disks.describe("/dev/loop1"),
            format!("/dev/loop1: 2.1 GB, {BY_ID_DIR}/wwn-0x0000")
        );
        // No by-id directory (containers): identities without by-id.
        let none = Disks::read_from(&sys, &dir.path().join("missing"));
        assert_eq!(none.get("vda").unwrap().by_id, None);
    }

    #[test]
    fn no_lsblk_means_no_disks_not_a_failure() {
        let sys = Recorder::new();
        sys.reply(&["lsblk"], 1, "");
        assert!(Disks::read(&sys).all().is_empty());
        assert!(Disks::parse("lsblk: unknown column", &[]).is_err());
    }
}
