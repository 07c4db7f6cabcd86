//! The `smart` probe: is a disk failing, and which one is it, so that the
//! Racines can ask the hosting provider to pull the right one before data
//! is at risk.
//!
//! Devices come from `smartctl --scan --json`; each is read with
//! `smartctl --json --all [-d TYPE] DEVICE`. smartctl's exit status is a
//! bitmask (`man smartctl`, EXIT STATUS): bits 0-1 mean the command line
//! did not parse or the device could not be opened (no data), bit 2 that
//! some SMART command failed, bits 3-7 are health signals (3 disk failing,
//! 4 pre-failure attribute at or below its threshold, 5 usage attribute
//! past its threshold at some time, 6 errors in the error log, 7 errors in
//! the self-test log). A sick disk therefore makes smartctl exit non-zero:
//! stdout is parsed whenever it is JSON, whatever the exit status, and the
//! health bits back up what the data says. When stdout is not JSON
//! (smartctl before 7.0 has no `--json`), `smartctl --all` is read as text.
//!
//! Parsing ([`parse_json`], [`parse_text`]) and judging ([`assess`]) are
//! pure functions; [`Smart::run`] only runs smartctl and names the disk
//! (from smartctl's identity, then [`super::disks::Disks`]).
//!
//! What is judged, and why:
//! - ATA/SATA: the overall self-assessment (`FAILED` is critical), then
//!   the raw values of the five attributes Backblaze uses to predict drive
//!   failure: 5 reallocated sectors, 187 reported uncorrectable errors,
//!   188 command timeouts, 197 current pending sectors, 198 offline
//!   uncorrectable sectors ("When the RAW value for one of these five
//!   attributes is greater than zero, we have a reason to investigate":
//!   <https://www.backblaze.com/blog/what-smart-stats-indicate-hard-drive-failures/>,
//!   2016, and <https://www.backblaze.com/blog/hard-drive-smart-stats/>,
//!   2014). Any of them above 0 is at least a warning. Pending and offline
//!   uncorrectable sectors above 0 are critical: those sectors cannot be
//!   read now, and smartctl often still says PASSED. Reallocated sectors
//!   are critical from [`REALLOCATED_CRIT`]: a few remapped sectors are
//!   ordinary ageing, hundreds mean the surface is degrading faster than
//!   its spare sectors last (our choice; Backblaze gives no number).
//!   Attribute 199 (UDMA CRC errors) above 0 warns about the cable or the
//!   backplane slot, not the platters. An attribute failed `now` is
//!   critical, failed in the `past` a warning. The newest self-test
//!   failed is critical (a sector is unreadable now), an older failure a
//!   warning. Attributes 1, 7 and 195 are never judged on their raw
//!   values: Seagate packs several counters in them.
//! - NVMe: any critical warning bit is critical, and so are media errors
//!   (an NVMe with media errors is sick even when smartctl says PASSED)
//!   and the available spare at or below its threshold; the endurance
//!   used (`percentage_used`) warns and turns critical at the request's
//!   thresholds (defaults 80 / 95).
//! - SCSI/SAS: the health status, the grown defect list (warning) and
//!   uncorrected errors in the error counter log (critical). Best effort:
//!   the shared fixtures have no SAS sample; one healthy SAS disk from
//!   smartctl_exporter's tests is in `testdata/smartctl-extra/`.
//! - No SMART (virtual disks, RAID volumes) is `Unknown`, never ok, and
//!   so is a disk lsblk lists that smartctl does not.

use std::collections::BTreeMap;
use std::io;

use clou_protocol::health::{Finding, Severity, Thresholds};
use serde_json::Value;

use super::disks::Identity;
use super::{Probe, ProbeCtx};
use crate::system::{Cmd, System};

const PROBE: &str = "smart";

/// Reallocated sectors from which a disk is critical rather than a
/// warning (see the module documentation).
pub const REALLOCATED_CRIT: u64 = 100;

/// The `smart` probe.
#[derive(Debug, Clone, Copy)]
pub struct Smart;

impl Probe for Smart {
    fn name(&self) -> &'static str {
        PROBE
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        let smartctl = ctx.settings.smartctl.as_str();
        let devices = match scan(ctx.sys, smartctl) {
            Ok(devices) => devices,
            Err(finding) => return vec![finding],
        };
        let mut findings: Vec<Finding> = devices
            .iter()
            .map(|dev| check_device(ctx, smartctl, dev))
            .collect();
        findings.extend(unlisted_disks(ctx, &devices));
        if findings.is_empty() {
            findings.push(Finding::new(
                PROBE,
                "disks",
                Severity::Unknown,
                "smartctl found no disk to check, and lsblk lists none either",
            ));
        }
        findings
    }
}

/// One device smartctl's scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanDevice {
    /// `/dev/sda`, `/dev/nvme0`, `/dev/bus/0`.
    pub name: String,
    /// The `-d` type: `scsi`, `sat`, `nvme`, `megaraid,1`...
    pub kind: Option<String>,
}

impl ScanDevice {
    /// `-d TYPE`, except for `scsi`: `--scan` says `scsi` of every
    /// /dev/sdX, and forcing it keeps smartctl from the ATA pass-through
    /// that SATA disks need (no attributes then, as netdata found). Left
    /// alone, smartctl tells SAT from SCSI itself.
    fn type_args(&self) -> Vec<String> {
        match self.kind.as_deref() {
            None | Some("" | "scsi") => Vec::new(),
            Some(kind) => vec!["-d".to_owned(), kind.to_owned()],
        }
    }

    /// A disk behind a RAID controller (`megaraid,N`, `cciss,N`...): its
    /// /dev node is the controller's, shared with the other disks.
    fn behind_controller(&self) -> bool {
        self.kind.as_deref().is_some_and(|k| k.contains(','))
    }

    /// The finding's subject: the /dev path, with the controller slot
    /// when several disks share it (`/dev/bus/0 [megaraid,1]`).
    fn subject(&self) -> String {
        match &self.kind {
            Some(kind) if self.behind_controller() => format!("{} [{kind}]", self.name),
            _ => self.name.clone(),
        }
    }
}

/// Why smartctl's output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SmartError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not smartctl's output: {0}")]
    NotSmartctl(&'static str),
}

/// `smartctl --scan --json`.
pub fn parse_scan_json(text: &str) -> Result<Vec<ScanDevice>, SmartError> {
    let v: Value = serde_json::from_str(text)?;
    let devices = v
        .get("devices")
        .and_then(Value::as_array)
        .ok_or(SmartError::NotSmartctl("no list of devices"))?;
    Ok(devices
        .iter()
        .filter_map(|d| {
            Some(ScanDevice {
                name: d.get("name")?.as_str()?.to_owned(),
                kind: d.get("type").and_then(Value::as_str).map(str::to_owned),
            })
        })
        .collect())
}

/// `smartctl --scan` (or `--scan-open`) as text, one device a line:
/// `/dev/sda -d scsi # /dev/sda, SCSI device`. Lines that start with `#`
/// are devices `--scan-open` could not open.
pub fn parse_scan_text(text: &str) -> Vec<ScanDevice> {
    text.lines()
        .filter_map(|line| {
            let command = line.split('#').next()?;
            let mut words = command.split_whitespace();
            let name = words.next().filter(|n| n.starts_with('/'))?;
            let mut kind = None;
            while let Some(word) = words.next() {
                if word == "-d" {
                    kind = words.next().map(str::to_owned);
                }
            }
            Some(ScanDevice {
                name: name.to_owned(),
                kind,
            })
        })
        .collect()
}

/// Which command set a device speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    Ata,
    Nvme,
    Scsi,
    #[default]
    Unknown,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Ata => "ATA",
            Protocol::Nvme => "NVMe",
            Protocol::Scsi => "SCSI",
            Protocol::Unknown => "unknown",
        }
    }
}

/// What smartctl said of one device, from its JSON or its text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmartData {
    pub protocol: Protocol,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// Capacity in bytes.
    pub capacity: Option<u64>,
    /// `false` when the device has no SMART (virtual disks).
    pub smart_available: Option<bool>,
    /// The overall self-assessment (ATA, NVMe) or health status (SCSI).
    pub passed: Option<bool>,
    /// smartctl's exit status (see the module documentation).
    pub exit_status: Option<i32>,
    /// Celsius.
    pub temperature: Option<i64>,
    pub power_on_hours: Option<u64>,
    /// ATA attributes.
    pub attributes: Vec<Attribute>,
    /// ATA self-test log, newest first.
    pub self_tests: Vec<SelfTest>,
    /// Entries in the ATA error log.
    pub error_log_count: Option<u64>,
    pub nvme: Option<NvmeHealth>,
    pub scsi: Option<ScsiHealth>,
    /// smartctl's own messages (why a device could not be read).
    pub messages: Vec<String>,
}

impl SmartData {
    /// The ATA attribute `id`.
    pub fn attribute(&self, id: u32) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.id == id)
    }

    /// Whether there is anything to judge.
    fn has_health_data(&self) -> bool {
        self.passed.is_some()
            || !self.attributes.is_empty()
            || self.nvme.is_some()
            || self.scsi.is_some()
    }
}

/// One ATA SMART attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribute {
    pub id: u32,
    pub name: String,
    /// Normalised value and threshold (the drive's own scale, lower is
    /// worse).
    pub value: Option<u64>,
    pub thresh: Option<u64>,
    /// `now` or `past` when the value is or was at or below the threshold.
    pub when_failed: Option<String>,
    pub raw_value: u64,
    /// The raw value as smartctl prints it, decoded per its drive
    /// database: `1975`, `32 (Min/Max 24/38)`.
    pub raw_string: String,
}

impl Attribute {
    /// The count a counter attribute holds: the first number smartctl
    /// prints. Some firmwares keep other data in the upper 16 bits of the
    /// 48-bit raw value, which smartctl prints whole unless its drive
    /// database knows better; no real sector or error count reaches 2^32,
    /// so a larger number is cut to its low 32 bits.
    pub fn count(&self) -> u64 {
        let printed = self
            .raw_string
            .split_whitespace()
            .next()
            .and_then(leading_digits)
            .unwrap_or(self.raw_value);
        if printed > u64::from(u32::MAX) {
            printed & u64::from(u32::MAX)
        } else {
            printed
        }
    }
}

/// One entry of the ATA self-test log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfTest {
    /// `Short offline`, `Extended offline`...
    pub kind: String,
    /// `Completed without error`, `Completed: read failure`...
    pub status: String,
    /// `None` for tests that did not finish (aborted, interrupted, running).
    pub passed: Option<bool>,
    pub hours: Option<u64>,
    pub lba: Option<u64>,
}

/// The NVMe SMART / health information log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NvmeHealth {
    pub critical_warning: u64,
    pub media_errors: Option<u64>,
    pub percentage_used: Option<u64>,
    pub available_spare: Option<u64>,
    pub available_spare_threshold: Option<u64>,
    pub error_log_entries: Option<u64>,
}

/// SCSI/SAS health counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScsiHealth {
    pub grown_defects: Option<u64>,
    /// Total uncorrected errors of the `read`, `write` and `verify` rows
    /// of the error counter log.
    pub uncorrected: Vec<(String, u64)>,
}

/// Parses `smartctl --json --all` (any smartctl 7.x layout: fields that
/// are missing are left unknown, so a new or old layout loses only what
/// it lacks).
pub fn parse_json(text: &str) -> Result<SmartData, SmartError> {
    let v: Value = serde_json::from_str(text)?;
    if !v.is_object() || (v.get("smartctl").is_none() && v.get("device").is_none()) {
        return Err(SmartError::NotSmartctl("no smartctl or device section"));
    }
    let nvme = v
        .get("nvme_smart_health_information_log")
        .map(|log| NvmeHealth {
            critical_warning: uint(log.get("critical_warning")).unwrap_or(0),
            media_errors: uint(log.get("media_errors")),
            percentage_used: uint(log.get("percentage_used")),
            available_spare: uint(log.get("available_spare")),
            available_spare_threshold: uint(log.get("available_spare_threshold")),
            error_log_entries: uint(log.get("num_err_log_entries")),
        });
    let scsi =
        if v.get("scsi_grown_defect_list").is_some() || v.get("scsi_error_counter_log").is_some() {
            Some(ScsiHealth {
                grown_defects: uint(v.get("scsi_grown_defect_list")),
                uncorrected: ["read", "write", "verify"]
                    .iter()
                    .filter_map(|row| {
                        let n = uint(v.pointer(&format!(
                            "/scsi_error_counter_log/{row}/total_uncorrected_errors"
                        )))?;
                        Some(((*row).to_owned(), n))
                    })
                    .collect(),
            })
        } else {
            None
        };
    let attributes: Vec<Attribute> = v
        .pointer("/ata_smart_attributes/table")
        .and_then(Value::as_array)
        .map(|table| {
            table
                .iter()
                .filter_map(|a| {
                    Some(Attribute {
                        id: u32::try_from(uint(a.get("id"))?).ok()?,
                        name: text_of(a.get("name")).unwrap_or_default(),
                        value: uint(a.get("value")),
                        thresh: uint(a.get("thresh")),
                        when_failed: text_of(a.get("when_failed")),
                        raw_value: uint(a.pointer("/raw/value")).unwrap_or(0),
                        raw_string: text_of(a.pointer("/raw/string")).unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    // `-x` writes the extended log (more entries), `-a` the standard one.
    let tests = v
        .pointer("/ata_smart_self_test_log/extended/table")
        .or_else(|| v.pointer("/ata_smart_self_test_log/standard/table"))
        .and_then(Value::as_array);
    let self_tests = tests
        .map(|table| {
            table
                .iter()
                .map(|t| SelfTest {
                    kind: text_of(t.pointer("/type/string")).unwrap_or_default(),
                    status: text_of(t.pointer("/status/string")).unwrap_or_default(),
                    passed: t.pointer("/status/passed").and_then(Value::as_bool),
                    hours: uint(t.get("lifetime_hours")),
                    lba: uint(t.get("lba")),
                })
                .collect()
        })
        .unwrap_or_default();
    let protocol = match v.pointer("/device/protocol").and_then(Value::as_str) {
        Some("ATA") => Protocol::Ata,
        Some("NVMe") => Protocol::Nvme,
        Some("SCSI") => Protocol::Scsi,
        _ if nvme.is_some() => Protocol::Nvme,
        _ if !attributes.is_empty() => Protocol::Ata,
        _ if scsi.is_some() => Protocol::Scsi,
        _ => Protocol::Unknown,
    };
    let model = text_of(v.get("model_name")).or_else(|| {
        let vendor = text_of(v.get("vendor"))?;
        let product = text_of(v.get("product"))?;
        Some(format!("{vendor} {product}"))
    });
    // Older smartctl wrote `smart_support` as a bare boolean.
    let smart_available = match v.get("smart_support") {
        Some(Value::Bool(b)) => Some(*b),
        Some(s) => s.get("available").and_then(Value::as_bool),
        None => None,
    };
    Ok(SmartData {
        protocol,
        model,
        serial: text_of(v.get("serial_number")),
        capacity: uint(v.pointer("/user_capacity/bytes"))
            .or_else(|| uint(v.get("nvme_total_capacity"))),
        smart_available,
        passed: v.pointer("/smart_status/passed").and_then(Value::as_bool),
        exit_status: uint(v.pointer("/smartctl/exit_status")).and_then(|c| i32::try_from(c).ok()),
        temperature: v.pointer("/temperature/current").and_then(Value::as_i64),
        power_on_hours: uint(v.pointer("/power_on_time/hours")),
        error_log_count: uint(v.pointer("/ata_smart_error_log/summary/count"))
            .or_else(|| uint(v.pointer("/ata_smart_error_log/extended/count"))),
        messages: v
            .pointer("/smartctl/messages")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(|m| text_of(m.get("string"))).collect())
            .unwrap_or_default(),
        attributes,
        self_tests,
        nvme,
        scsi,
    })
}

/// Parses `smartctl --all` as text (smartctl before 7.0, or when the JSON
/// cannot be parsed): the identity lines, the overall health line, the ATA
/// attribute table and self-test log, the NVMe health section, and the
/// SCSI grown defects and error counter log.
pub fn parse_text(text: &str) -> Result<SmartData, SmartError> {
    if !text.contains("smartctl") && !text.contains("=== START OF") {
        return Err(SmartError::NotSmartctl("no smartctl banner"));
    }
    let mut data = SmartData::default();
    let mut nvme = NvmeHealth::default();
    let mut nvme_seen = false;
    let mut scsi = ScsiHealth::default();
    let mut scsi_seen = false;
    let mut vendor = None;
    let mut product = None;
    let mut section = "";
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            section = "";
            continue;
        }
        if trimmed.starts_with("ID# ATTRIBUTE_NAME") {
            section = "attributes";
            continue;
        }
        if trimmed.starts_with("Num  Test_Description") {
            section = "self-tests";
            continue;
        }
        if trimmed.starts_with("Error counter log:") {
            section = "error counters";
            continue;
        }
        match section {
            "attributes" => {
                if let Some(a) = attribute_row(trimmed) {
                    data.attributes.push(a);
                }
                continue;
            }
            "self-tests" => {
                if let Some(t) = self_test_row(trimmed) {
                    data.self_tests.push(t);
                }
                continue;
            }
            "error counters" => {
                let mut words = trimmed.split_whitespace();
                if let Some(row @ ("read:" | "write:" | "verify:")) = words.next()
                    && let Some(n) = words.last().and_then(|w| w.parse().ok())
                {
                    scsi.uncorrected
                        .push((row.trim_end_matches(':').to_owned(), n));
                    scsi_seen = true;
                }
                continue;
            }
            _ => {}
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Device Model" | "Model Number" => {
                data.model = Some(value.to_owned());
                if key.trim() == "Model Number" {
                    data.protocol = Protocol::Nvme;
                } else {
                    data.protocol = Protocol::Ata;
                }
            }
            "Vendor" => vendor = Some(value.to_owned()),
            "Product" => product = Some(value.to_owned()),
            "Serial Number" | "Serial number" => data.serial = Some(value.to_owned()),
            "User Capacity" | "Total NVM Capacity" => {
                data.capacity = data.capacity.or(leading_number(value));
            }
            "SMART support is" => {
                if value.starts_with("Unavailable") {
                    data.smart_available = Some(false);
                } else if value.starts_with("Available") {
                    data.smart_available = Some(true);
                }
            }
            "SMART overall-health self-assessment test result" => {
                data.passed = Some(value.starts_with("PASSED"));
            }
            "SMART Health Status" => data.passed = Some(value == "OK"),
            "Elements in grown defect list" => {
                scsi.grown_defects = leading_number(value);
                scsi_seen = true;
            }
            "Critical Warning" => {
                nvme.critical_warning = value
                    .strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .or_else(|| leading_number(value))
                    .unwrap_or(0);
                nvme_seen = true;
            }
            "Media and Data Integrity Errors" => nvme.media_errors = leading_number(value),
            "Percentage Used" => nvme.percentage_used = leading_number(value),
            "Available Spare" => nvme.available_spare = leading_number(value),
            "Available Spare Threshold" => nvme.available_spare_threshold = leading_number(value),
            "Error Information Log Entries" => nvme.error_log_entries = leading_number(value),
            "Temperature" | "Current Drive Temperature" => {
                data.temperature = leading_number(value).and_then(|t| i64::try_from(t).ok());
            }
            "Power On Hours" | "Accumulated power on time, hours" => {
                data.power_on_hours = leading_number(value);
            }
            _ => {}
        }
    }
    if nvme_seen {
        data.nvme = Some(nvme);
        data.protocol = Protocol::Nvme;
    }
    if data.model.is_none()
        && let (Some(vendor), Some(product)) = (vendor, product)
    {
        data.model = Some(format!("{vendor} {product}"));
        data.protocol = Protocol::Scsi;
    }
    if scsi_seen {
        data.scsi = Some(scsi);
        data.protocol = Protocol::Scsi;
    }
    if data.protocol == Protocol::Ata || !data.attributes.is_empty() {
        data.protocol = Protocol::Ata;
        if data.temperature.is_none() {
            data.temperature = data
                .attribute(194)
                .or_else(|| data.attribute(190))
                .map(Attribute::count)
                .and_then(|t| i64::try_from(t).ok());
        }
        if data.power_on_hours.is_none() {
            data.power_on_hours = data.attribute(9).map(Attribute::count);
        }
    }
    Ok(data)
}

/// `  5 Reallocated_Sector_Ct   0x0033   100   100   010    Pre-fail  Always       -       0`
fn attribute_row(line: &str) -> Option<Attribute> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let when_failed = match f[8] {
        "FAILING_NOW" => Some("now".to_owned()),
        "In_the_past" => Some("past".to_owned()),
        _ => None,
    };
    let raw_string = f[9..].join(" ");
    Some(Attribute {
        id: f[0].parse().ok()?,
        name: f[1].to_owned(),
        value: f[3].parse().ok(),
        thresh: f[5].parse().ok(),
        when_failed,
        raw_value: f[9].parse().unwrap_or(0),
        raw_string,
    })
}

/// `# 1  Extended offline    Completed without error       00%      1284         -`
fn self_test_row(line: &str) -> Option<SelfTest> {
    let rest = line.strip_prefix('#')?;
    // Columns are separated by two spaces or more; a status has single
    // spaces (`Completed: read failure`).
    let cols: Vec<&str> = rest
        .trim()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let (kind, status) = (cols.get(1)?, cols.get(2)?);
    let passed = if status.starts_with("Completed without error") {
        Some(true)
    } else if status.contains("failure")
        || status.starts_with("Fatal")
        || status.starts_with("Completed:")
    {
        Some(false)
    } else {
        None
    };
    Some(SelfTest {
        kind: (*kind).to_owned(),
        status: (*status).to_owned(),
        passed,
        hours: cols.get(4).and_then(|h| leading_number(h)),
        lba: cols.get(5).and_then(|l| l.parse().ok()),
    })
}

/// What [`assess`] concludes about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub severity: Severity,
    /// What is wrong and what to do, without the disk's name.
    pub message: String,
    /// Key figures: reallocated, pending, media_errors, temperature...
    pub facts: BTreeMap<String, String>,
}

/// What to do about an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advice {
    Replace,
    PlanReplacement,
    Cabling,
    Cooling,
    Worn,
}

impl Advice {
    fn text(self) -> &'static str {
        match self {
            Advice::Replace => "the disk is failing: replace it",
            Advice::PlanReplacement => {
                "early signs of failure: plan its replacement and watch whether the counts grow"
            }
            Advice::Cabling => {
                "errors on the link, not the platters: check its cable and backplane slot"
            }
            Advice::Cooling => "check the server's cooling",
            Advice::Worn => "the SSD is wearing out: plan its replacement",
        }
    }
}

#[derive(Debug)]
struct Issue {
    severity: Severity,
    text: String,
    advice: Advice,
    /// The ATA attribute this is about, if any.
    attribute: Option<u32>,
}

impl Issue {
    fn new(severity: Severity, text: impl Into<String>, advice: Advice) -> Issue {
        Issue {
            severity,
            text: text.into(),
            advice,
            attribute: None,
        }
    }
}

/// Judges one device (see the module documentation for the rules).
pub fn assess(data: &SmartData, thresholds: &Thresholds) -> Assessment {
    let mut facts = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        facts.insert(key.to_owned(), value);
    };
    put("protocol", data.protocol.label().to_owned());
    if let Some(passed) = data.passed {
        put("smart_passed", if passed { "yes" } else { "no" }.to_owned());
    }
    if let Some(t) = data.temperature {
        put("temperature", t.to_string());
    }
    if let Some(h) = data.power_on_hours {
        put("power_on_hours", h.to_string());
    }
    if let Some(code) = data.exit_status {
        put("exit_status", code.to_string());
    }
    if let Some(n) = data.error_log_count {
        put("error_log_count", n.to_string());
    }

    if data.smart_available == Some(false) || !data.has_health_data() {
        let why = if data.smart_available == Some(false) {
            "the device has no SMART (a virtual disk, or a RAID controller's volume)".to_owned()
        } else if !data.messages.is_empty() {
            data.messages.join("; ")
        } else {
            match data.exit_status {
                Some(code) => format!("smartctl gave no health data (exit status {code})"),
                None => "smartctl gave no health data".to_owned(),
            }
        };
        return Assessment {
            severity: Severity::Unknown,
            message: format!("SMART unavailable: {why}"),
            facts,
        };
    }

    let mut issues = Vec::new();
    let mut healthy = Vec::new();
    match data.protocol {
        Protocol::Nvme => nvme_issues(data, thresholds, &mut issues, &mut healthy, &mut facts),
        Protocol::Scsi => scsi_issues(data, &mut issues, &mut healthy, &mut facts),
        Protocol::Ata | Protocol::Unknown => {
            ata_issues(data, &mut issues, &mut healthy, &mut facts)
        }
    }
    exit_status_issues(data, &mut issues);

    let Some(worst) = issues.iter().map(|i| i.severity).max() else {
        let mut said = vec![match data.passed {
            Some(true) => "SMART passed".to_owned(),
            _ => "no SMART verdict".to_owned(),
        }];
        said.extend(healthy);
        if let Some(t) = data.temperature {
            said.push(format!("{t} °C"));
        }
        if let Some(h) = data.power_on_hours {
            said.push(format!("{h} power-on hours"));
        }
        return Assessment {
            severity: Severity::Ok,
            message: format!("healthy: {}", said.join(", ")),
            facts,
        };
    };
    let advice = issues
        .iter()
        .find(|i| i.severity == worst)
        .map_or(Advice::Replace, |i| i.advice);
    let said: Vec<&str> = issues.iter().map(|i| i.text.as_str()).collect();
    Assessment {
        severity: worst,
        message: format!("{} — {}", said.join(", "), advice.text()),
        facts,
    }
}

fn ata_issues(
    data: &SmartData,
    issues: &mut Vec<Issue>,
    healthy: &mut Vec<String>,
    facts: &mut BTreeMap<String, String>,
) {
    if data.passed == Some(false) {
        issues.push(Issue::new(
            Severity::Crit,
            "SMART overall-health self-assessment FAILED",
            Advice::Replace,
        ));
    }
    // (attribute, fact, how to say it, critical from this count; below
    // it, above 0 is a warning)
    const COUNTERS: [(u32, &str, &str, u64); 6] = [
        (5, "reallocated", "reallocated sector", REALLOCATED_CRIT),
        (197, "pending", "pending sector", 1),
        (
            198,
            "offline_uncorrectable",
            "offline uncorrectable sector",
            1,
        ),
        (
            187,
            "reported_uncorrect",
            "reported uncorrectable error",
            u64::MAX,
        ),
        (188, "command_timeout", "command timeout", u64::MAX),
        (199, "udma_crc_errors", "UDMA CRC error", u64::MAX),
    ];
    for (id, fact, what, crit_from) in COUNTERS {
        let Some(attr) = data.attribute(id) else {
            continue;
        };
        let n = attr.count();
        facts.insert(fact.to_owned(), n.to_string());
        if n > 0 {
            let severity = if n >= crit_from {
                Severity::Crit
            } else {
                Severity::Warn
            };
            let advice = match (id, severity) {
                (199, _) => Advice::Cabling,
                (_, Severity::Crit) => Advice::Replace,
                _ => Advice::PlanReplacement,
            };
            issues.push(Issue {
                severity,
                text: plural(n, what),
                advice,
                attribute: Some(id),
            });
        }
    }
    let bad_sectors: u64 = [5, 197, 198]
        .iter()
        .filter_map(|id| data.attribute(*id))
        .map(Attribute::count)
        .sum();
    if bad_sectors == 0 && data.attribute(5).is_some() {
        healthy.push("no reallocated or pending sectors".to_owned());
    }
    for attr in &data.attributes {
        let severity = match attr.when_failed.as_deref() {
            Some("now") => Severity::Crit,
            Some("past") => Severity::Warn,
            _ => continue,
        };
        // A counter already reported gets the drive's own verdict added
        // to its severity rather than a second line.
        if let Some(issue) = issues.iter_mut().find(|i| i.attribute == Some(attr.id)) {
            issue.severity = issue.severity.max(severity);
            if severity == Severity::Crit {
                issue.advice = Advice::Replace;
            }
            continue;
        }
        let values = match (attr.value, attr.thresh) {
            (Some(v), Some(t)) => format!(" (value {v}, threshold {t})"),
            _ => String::new(),
        };
        let (text, advice) = if severity == Severity::Crit {
            (
                format!("{} at or below its threshold now{values}", attr.name),
                Advice::Replace,
            )
        } else {
            (
                format!("{} was below its threshold in the past{values}", attr.name),
                Advice::PlanReplacement,
            )
        };
        issues.push(Issue {
            severity,
            text,
            advice,
            attribute: Some(attr.id),
        });
    }
    // The log is newest first; only the newest failure is told.
    if let Some((index, test)) = data
        .self_tests
        .iter()
        .enumerate()
        .find(|(_, t)| t.passed == Some(false))
    {
        let at = match (test.hours, test.lba) {
            (Some(h), Some(lba)) => format!(" at hour {h}, first bad LBA {lba}"),
            (Some(h), None) => format!(" at hour {h}"),
            (None, Some(lba)) => format!(", first bad LBA {lba}"),
            (None, None) => String::new(),
        };
        let (severity, which) = if index == 0 {
            (Severity::Crit, "the last self-test failed")
        } else {
            (Severity::Warn, "an earlier self-test failed")
        };
        issues.push(Issue::new(
            severity,
            format!("{which} ({}: {}{at})", test.kind, test.status),
            if index == 0 {
                Advice::Replace
            } else {
                Advice::PlanReplacement
            },
        ));
    }
}

fn nvme_issues(
    data: &SmartData,
    thresholds: &Thresholds,
    issues: &mut Vec<Issue>,
    healthy: &mut Vec<String>,
    facts: &mut BTreeMap<String, String>,
) {
    let Some(log) = &data.nvme else {
        if data.passed == Some(false) {
            issues.push(Issue::new(
                Severity::Crit,
                "SMART overall-health self-assessment FAILED",
                Advice::Replace,
            ));
        }
        return;
    };
    let cw = log.critical_warning;
    facts.insert("critical_warning".to_owned(), format!("0x{cw:02x}"));
    if cw != 0 {
        // NVMe 1.4, SMART / Health Information log, byte 0.
        let bits = [
            (0x01, "available spare below its threshold"),
            (0x02, "temperature out of its allowed range"),
            (0x04, "reliability degraded by media or internal errors"),
            (0x08, "media switched to read-only"),
            (0x10, "volatile memory backup failed"),
            (0x20, "persistent memory region unreliable"),
        ];
        let said: Vec<&str> = bits
            .iter()
            .filter(|(bit, _)| cw & bit != 0)
            .map(|(_, what)| *what)
            .collect();
        let advice = if cw == 0x02 {
            Advice::Cooling
        } else {
            Advice::Replace
        };
        issues.push(Issue::new(
            Severity::Crit,
            format!("critical warning 0x{cw:02x}: {}", said.join(", ")),
            advice,
        ));
    } else if data.passed == Some(false) {
        issues.push(Issue::new(
            Severity::Crit,
            "SMART overall-health self-assessment FAILED",
            Advice::Replace,
        ));
    }
    if let Some(n) = log.media_errors {
        facts.insert("media_errors".to_owned(), n.to_string());
        if n > 0 {
            let passed = if data.passed == Some(true) {
                " (although smartctl says PASSED)"
            } else {
                ""
            };
            issues.push(Issue::new(
                Severity::Crit,
                format!("{}{passed}", plural(n, "media and data integrity error")),
                Advice::Replace,
            ));
        } else {
            healthy.push("no media errors".to_owned());
        }
    }
    if let (Some(spare), Some(threshold)) = (log.available_spare, log.available_spare_threshold) {
        facts.insert("available_spare".to_owned(), spare.to_string());
        // A threshold of 0 means the drive does not say; bit 0x01 of the
        // critical warning already tells the same thing.
        if threshold > 0 && spare <= threshold && cw & 0x01 == 0 {
            issues.push(Issue::new(
                Severity::Crit,
                format!("available spare {spare}% at or below its threshold {threshold}%"),
                Advice::Replace,
            ));
        }
    }
    if let Some(used) = log.percentage_used {
        facts.insert("percentage_used".to_owned(), used.to_string());
        let severity = if used >= thresholds.nvme_used_crit_percent {
            Severity::Crit
        } else if used >= thresholds.nvme_used_warn_percent {
            Severity::Warn
        } else {
            Severity::Ok
        };
        if severity == Severity::Ok {
            healthy.push(format!("{used}% of its rated endurance used"));
        } else {
            issues.push(Issue::new(
                severity,
                format!("{used}% of its rated endurance used"),
                Advice::Worn,
            ));
        }
    }
    if let Some(n) = log.error_log_entries {
        // Not judged: many healthy drives log thousands of entries for
        // commands the host sent that the drive does not support.
        facts.insert("error_log_entries".to_owned(), n.to_string());
    }
}

fn scsi_issues(
    data: &SmartData,
    issues: &mut Vec<Issue>,
    healthy: &mut Vec<String>,
    facts: &mut BTreeMap<String, String>,
) {
    if data.passed == Some(false) {
        issues.push(Issue::new(
            Severity::Crit,
            "SMART health status is not OK",
            Advice::Replace,
        ));
    }
    let Some(scsi) = &data.scsi else {
        return;
    };
    if let Some(n) = scsi.grown_defects {
        facts.insert("grown_defects".to_owned(), n.to_string());
        if n > 0 {
            issues.push(Issue::new(
                Severity::Warn,
                format!("{} (remapped sectors)", plural(n, "grown defect")),
                Advice::PlanReplacement,
            ));
        } else {
            healthy.push("no grown defects".to_owned());
        }
    }
    for (row, n) in &scsi.uncorrected {
        facts.insert(format!("uncorrected_{row}_errors"), n.to_string());
        if *n > 0 {
            issues.push(Issue::new(
                Severity::Crit,
                format!("{} uncorrected {row} errors", n),
                Advice::Replace,
            ));
        }
    }
}

/// smartctl's health bits, for what the data did not already say (an
/// output smartctl wrote only in part, or a layout we do not read).
fn exit_status_issues(data: &SmartData, issues: &mut Vec<Issue>) {
    let Some(code) = data.exit_status else {
        return;
    };
    let failed_now = data
        .attributes
        .iter()
        .any(|a| a.when_failed.as_deref() == Some("now"));
    let failed_ever = data.attributes.iter().any(|a| a.when_failed.is_some());
    let test_failed = data.self_tests.iter().any(|t| t.passed == Some(false));
    if code & 0x08 != 0 && data.passed != Some(false) {
        issues.push(Issue::new(
            Severity::Crit,
            "smartctl says the disk is failing (exit status bit 3)",
            Advice::Replace,
        ));
    }
    if code & 0x10 != 0 && !failed_now {
        issues.push(Issue::new(
            Severity::Crit,
            "smartctl says a pre-failure attribute is at or below its threshold (exit status bit 4)",
            Advice::Replace,
        ));
    }
    if code & 0x20 != 0 && !failed_ever {
        issues.push(Issue::new(
            Severity::Warn,
            "smartctl says an attribute was past its threshold in the past (exit status bit 5)",
            Advice::PlanReplacement,
        ));
    }
    if code & 0x80 != 0 && !test_failed {
        issues.push(Issue::new(
            Severity::Warn,
            "smartctl says the self-test log has errors (exit status bit 7)",
            Advice::PlanReplacement,
        ));
    }
    // Bit 6 (errors in the ATA error log) is not judged: old, often
    // transient entries (a power loss, a cable); the Backblaze counters
    // say whether sectors are actually bad. The count is a fact.
}

/// Runs the scan: the devices, or the one finding that says why not.
fn scan(sys: &dyn System, smartctl: &str) -> Result<Vec<ScanDevice>, Finding> {
    let out = match sys.run(&Cmd::new([smartctl, "--scan", "--json"])) {
        Ok(out) => out,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(Finding::new(
                PROBE,
                "smartctl",
                Severity::Unknown,
                "cannot check the disks: smartctl is not installed (install smartmontools: \
                 apt-get install smartmontools)",
            ));
        }
        Err(err) => {
            return Err(Finding::new(
                PROBE,
                "smartctl",
                Severity::Unknown,
                format!("cannot check the disks: cannot run {smartctl}: {err}"),
            ));
        }
    };
    if let Ok(devices) = parse_scan_json(&out.stdout_text()) {
        return Ok(devices);
    }
    // smartctl before 7.0 has no --json: its text scan says the same.
    let text = sys.run(&Cmd::new([smartctl, "--scan"])).map_err(|err| {
        Finding::new(
            PROBE,
            "smartctl",
            Severity::Unknown,
            format!("cannot check the disks: cannot run {smartctl}: {err}"),
        )
    })?;
    let devices = parse_scan_text(&text.stdout_text());
    if devices.is_empty() && !text.success() {
        return Err(Finding::new(
            PROBE,
            "smartctl",
            Severity::Unknown,
            format!(
                "cannot check the disks: {smartctl} --scan failed: {}",
                text.tail()
            ),
        ));
    }
    Ok(devices)
}

/// Reads and judges one device.
fn check_device(ctx: &ProbeCtx<'_>, smartctl: &str, dev: &ScanDevice) -> Finding {
    let subject = dev.subject();
    // Behind a RAID controller, the /dev node's lsblk identity is the
    // controller's volume, not this disk.
    let known = if dev.behind_controller() {
        Identity::default()
    } else {
        ctx.disks.identity(&dev.name)
    };
    let (assessment, identity) = match read_device(ctx.sys, smartctl, dev) {
        Ok(data) => {
            let identity = Identity {
                model: data.model.clone(),
                serial: data.serial.clone(),
                size: data.capacity,
                ..Identity::default()
            }
            .or(known);
            (assess(&data, &ctx.settings.thresholds), identity)
        }
        Err(why) => (
            Assessment {
                severity: Severity::Unknown,
                message: format!("SMART unavailable: {why}"),
                facts: BTreeMap::new(),
            },
            known,
        ),
    };
    let summary = identity.summary();
    let message = if summary.is_empty() {
        format!("{subject}: {}", assessment.message)
    } else {
        format!("{subject} ({summary}): {}", assessment.message)
    };
    let mut finding =
        identity.add_facts(Finding::new(PROBE, subject, assessment.severity, message));
    finding.facts.extend(assessment.facts);
    finding
}

/// smartctl's data for one device, whatever its exit status.
fn read_device(sys: &dyn System, smartctl: &str, dev: &ScanDevice) -> Result<SmartData, String> {
    let argv = |json: bool| {
        let mut argv = vec![smartctl.to_owned()];
        if json {
            argv.push("--json".to_owned());
        }
        argv.push("--all".to_owned());
        argv.extend(dev.type_args());
        argv.push(dev.name.clone());
        Cmd::new(argv)
    };
    let out = sys
        .run(&argv(true))
        .map_err(|err| format!("cannot run {smartctl}: {err}"))?;
    match parse_json(&out.stdout_text()) {
        Ok(mut data) => {
            // The process's status is the truth; the JSON's copy agrees
            // when smartctl wrote one.
            data.exit_status = out.code.or(data.exit_status);
            Ok(data)
        }
        Err(_) => {
            let text = sys
                .run(&argv(false))
                .map_err(|err| format!("cannot run {smartctl}: {err}"))?;
            let mut data = parse_text(&text.stdout_text()).map_err(|_| {
                let code = out.code.map_or("none".to_owned(), |c| c.to_string());
                let tail = out.tail();
                if tail.is_empty() {
                    format!("smartctl gave no output (exit status {code})")
                } else {
                    format!("smartctl gave no data (exit status {code}): {tail}")
                }
            })?;
            data.exit_status = text.code;
            Ok(data)
        }
    }
}

/// Disks lsblk lists that smartctl does not (virtio disks, a RAID
/// controller's volumes): unknown, since nobody watches them.
fn unlisted_disks(ctx: &ProbeCtx<'_>, devices: &[ScanDevice]) -> Vec<Finding> {
    let seen: Vec<&str> = devices
        .iter()
        .filter(|d| !d.behind_controller())
        .filter_map(|d| ctx.disks.get(&d.name))
        .map(|d| d.path.as_str())
        .collect();
    ctx.disks
        .all()
        .iter()
        // zram and empty devices are not disks anyone could pull.
        .filter(|d| d.kind == "disk" && d.size.unwrap_or(0) > 0)
        .filter(|d| !seen.contains(&d.path.as_str()))
        .map(|d| {
            let identity = d.identity();
            let message = format!(
                "{} ({}): SMART unavailable: smartctl does not list this disk (a virtual disk, \
                 or a volume of a RAID controller whose disks it cannot see)",
                d.path,
                identity.summary()
            );
            identity.add_facts(Finding::new(
                PROBE,
                d.path.clone(),
                Severity::Unknown,
                message,
            ))
        })
        .collect()
}

/// `1 reallocated sector`, `1975 reallocated sectors`.
fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A JSON number as u64 (a float too large for u64 saturates; a string
/// of digits is read).
fn uint(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A non-empty JSON string, trimmed.
fn text_of(v: Option<&Value>) -> Option<String> {
    v?.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The digits a word starts with: `1234h+05m` is 1234.
fn leading_digits(word: &str) -> Option<u64> {
    let end = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    word[..end].parse().ok()
}

/// The number a value starts with, across the thousands separators
/// smartctl's locale puts in (`2 000 398 934 016 bytes`,
/// `500.107.862.016 [500 GB]`, `120,034,123,776 bytes`, `100%`).
fn leading_number(value: &str) -> Option<u64> {
    let digits: String = value
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, ' ' | ',' | '.' | '\'' | '\u{a0}'))
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::disks::Disks;
    use crate::system::Output;
    use crate::system::testing::Recorder;
    use clou_protocol::health::CheckSettings;
    use std::path::Path;

    fn testdata(path: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/probes/testdata")
            .join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn fixture(name: &str) -> SmartData {
        let text = testdata(&format!("smartctl/{name}"));
        if name.ends_with(".txt") {
            parse_text(&text).unwrap()
        } else {
            parse_json(&text).unwrap()
        }
    }

    fn judged(name: &str) -> Assessment {
        assess(&fixture(name), &Thresholds::default())
    }

    fn fact<'a>(a: &'a Assessment, key: &str) -> &'a str {
        a.facts.get(key).map(String::as_str).unwrap_or("(none)")
    }

    #[test]
    fn failed_hitachi_is_crit_and_says_1975_reallocated_sectors() {
        let a = judged("sata-hdd-FAILED-hitachi-1975-realloc-selftest-readfail.scrutiny.json");
        assert_eq!(a.severity, Severity::Crit, "{}", a.message);
        assert!(
            a.message
                .contains("SMART overall-health self-assessment FAILED"),
            "{}",
            a.message
        );
        assert!(
            a.message.contains("1975 reallocated sectors"),
            "{}",
            a.message
        );
        assert!(a.message.contains("8 pending sectors"), "{}", a.message);
        // The read failure is the third test of the log, not the last one.
        assert!(
            a.message.contains(
                "an earlier self-test failed (Extended offline: Completed: read failure \
                 at hour 4, first bad LBA 104870168)"
            ),
            "{}",
            a.message
        );
        assert!(
            a.message.ends_with("the disk is failing: replace it"),
            "{}",
            a.message
        );
        assert_eq!(fact(&a, "reallocated"), "1975");
        assert_eq!(fact(&a, "pending"), "8");
        assert_eq!(fact(&a, "exit_status"), "216");
        assert_eq!(fact(&a, "power_on_hours"), "65592");
    }

    #[test]
    fn passed_hgst_with_1040_reallocated_and_878_pending_is_crit() {
        let data = fixture("sata-hdd-prefail-hgst-1040-realloc-878-pending.libblockdev.json");
        assert_eq!(data.passed, Some(true));
        let a = assess(&data, &Thresholds::default());
        assert_eq!(a.severity, Severity::Crit);
        assert_eq!(
            a.message,
            "1040 reallocated sectors, 878 pending sectors, 1272 offline uncorrectable sectors \
             — the disk is failing: replace it"
        );
        assert_eq!(
            (
                fact(&a, "reallocated"),
                fact(&a, "pending"),
                fact(&a, "offline_uncorrectable")
            ),
            ("1040", "878", "1272")
        );
        assert_eq!(fact(&a, "temperature"), "29");
    }

    // 304 reallocated sectors and nothing else: crit, because it is past
    // REALLOCATED_CRIT (100). Hundreds of remapped sectors on a 500 GB
    // disk mean the surface is going; the provider should swap it now,
    // while the pending/uncorrectable counts are still 0.
    #[test]
    fn seagate_with_304_reallocated_is_crit_past_100() {
        let a = judged("sata-hdd-prefail-seagate-304-realloc.smartctl_exporter.json");
        assert_eq!(a.severity, Severity::Crit);
        assert_eq!(
            a.message,
            "304 reallocated sectors — the disk is failing: replace it"
        );
        // Attributes 1, 7 and 195 have huge packed raw values: not judged.
        assert!(!a.message.contains("Seek_Error_Rate"));
    }

    // Same rule: 387 > 100, crit, although the normalised value (188) is
    // far above its threshold (140) and smartctl says PASSED.
    #[test]
    fn wd_behind_megaraid_with_387_reallocated_is_crit() {
        let data = fixture("sata-hdd-prefail-wd-387-realloc-via-megaraid.scrutiny.json");
        assert_eq!(data.exit_status, Some(4));
        let a = assess(&data, &Thresholds::default());
        assert_eq!(a.severity, Severity::Crit);
        assert!(
            a.message.starts_with("387 reallocated sectors — "),
            "{}",
            a.message
        );
        // "Aborted by host" is not a failed self-test, and exit bit 2 (a
        // SMART command failed) is not a health signal.
        assert!(!a.message.contains("self-test"), "{}", a.message);
    }

    #[test]
    fn a_few_reallocated_sectors_only_warn() {
        let mut data = fixture("sata-hdd-healthy-wdc-wd140edfz.scrutiny.json");
        for a in &mut data.attributes {
            if a.id == 5 {
                a.raw_value = 12;
                a.raw_string = "12".into();
            }
        }
        let a = assess(&data, &Thresholds::default());
        assert_eq!(a.severity, Severity::Warn);
        assert!(
            a.message
                .starts_with("12 reallocated sectors — early signs"),
            "{}",
            a.message
        );
    }

    #[test]
    fn nvme_with_7_media_errors_is_crit_although_smartctl_says_passed() {
        let a = judged("nvme-prefail-samsung-970evo-7-media-errors.scrutiny.json");
        assert_eq!(a.severity, Severity::Crit);
        assert_eq!(
            a.message,
            "7 media and data integrity errors (although smartctl says PASSED) \
             — the disk is failing: replace it"
        );
        assert_eq!(fact(&a, "media_errors"), "7");
        assert_eq!(fact(&a, "smart_passed"), "yes");
        assert_eq!(fact(&a, "percentage_used"), "3");
    }

    #[test]
    fn nvme_critical_warning_0x10_is_crit_and_names_volatile_memory_backup() {
        let a = judged("nvme-FAILED-critical-warning-0x10-samsung-pm1725a.smartctl_exporter.json");
        assert_eq!(a.severity, Severity::Crit);
        assert_eq!(
            a.message,
            "critical warning 0x10: volatile memory backup failed \
             — the disk is failing: replace it"
        );
        assert_eq!(fact(&a, "critical_warning"), "0x10");
        assert_eq!(fact(&a, "exit_status"), "8");
    }

    #[test]
    fn intel_nvme_at_75_percent_used_is_ok_by_default_and_warns_from_70() {
        let data = fixture("nvme-worn-75pct-used-intel-p4500.smartctl_exporter.json");
        let a = assess(&data, &Thresholds::default());
        assert_eq!(a.severity, Severity::Ok, "{}", a.message);
        assert!(
            a.message.contains("75% of its rated endurance used"),
            "{}",
            a.message
        );
        let strict = Thresholds {
            nvme_used_warn_percent: 70,
            ..Thresholds::default()
        };
        let a = assess(&data, &strict);
        assert_eq!(a.severity, Severity::Warn);
        assert_eq!(
            a.message,
            "75% of its rated endurance used — the SSD is wearing out: plan its replacement"
        );
        let worn = Thresholds {
            nvme_used_crit_percent: 75,
            ..Thresholds::default()
        };
        assert_eq!(assess(&data, &worn).severity, Severity::Crit);
    }

    fn assert_healthy(name: &str, protocol: Protocol) -> Assessment {
        let data = fixture(name);
        assert_eq!(data.protocol, protocol, "{name}");
        let a = assess(&data, &Thresholds::default());
        assert_eq!(a.severity, Severity::Ok, "{name}: {}", a.message);
        assert!(
            a.message.starts_with("healthy: SMART passed"),
            "{name}: {}",
            a.message
        );
        a
    }

    #[test]
    fn healthy_wdc_wd140edfz_is_ok() {
        let a = assert_healthy(
            "sata-hdd-healthy-wdc-wd140edfz.scrutiny.json",
            Protocol::Ata,
        );
        assert_eq!(
            a.message,
            "healthy: SMART passed, no reallocated or pending sectors, 32 °C, 1730 power-on hours"
        );
    }

    #[test]
    fn healthy_wdc_wd181kryz_is_ok() {
        assert_healthy("sata-hdd-healthy-wdc-wd181kryz.netdata.json", Protocol::Ata);
    }

    #[test]
    fn healthy_samsung_860evo_xall_is_ok() {
        let data = fixture("sata-ssd-healthy-samsung-860evo-xall.scrutiny.json");
        // `-x` writes the extended self-test log.
        assert!(data.self_tests.len() > 5);
        assert_healthy(
            "sata-ssd-healthy-samsung-860evo-xall.scrutiny.json",
            Protocol::Ata,
        );
    }

    #[test]
    fn healthy_wd_red_sa500_without_thresholds_is_ok() {
        assert_healthy("sata-ssd-healthy-wd-red-sa500.netdata.json", Protocol::Ata);
    }

    #[test]
    fn healthy_seagate_firecuda530_nvme_is_ok() {
        assert_healthy(
            "nvme-healthy-seagate-firecuda530.netdata.json",
            Protocol::Nvme,
        );
    }

    // 8382 error log entries: not judged (see nvme_issues).
    #[test]
    fn healthy_corsair_mp510_nvme_with_a_long_error_log_is_ok() {
        let a = assert_healthy(
            "nvme-healthy-corsair-force-mp510.scrutiny.json",
            Protocol::Nvme,
        );
        assert_eq!(fact(&a, "error_log_entries"), "8382");
    }

    #[test]
    fn healthy_seagate_st2000nm000a_text_from_smartctl_6_parses() {
        let data = fixture("sata-hdd-healthy-seagate-st2000nm000a-debian-smartctl-a.txt");
        assert_eq!(data.model.as_deref(), Some("ST2000NM000A-2J2100"));
        assert_eq!(data.serial.as_deref(), Some("WS10SM2A"));
        // "2 000 398 934 016 bytes": a locale's thousands separator.
        assert_eq!(data.capacity, Some(2_000_398_934_016));
        assert_eq!(data.attributes.len(), 22);
        let temp = data.attribute(194).unwrap();
        assert_eq!(temp.raw_string, "31 (0 22 0 0 0)");
        assert_eq!(
            (data.temperature, data.power_on_hours),
            (Some(31), Some(1380))
        );
        assert_eq!(data.self_tests.len(), 2);
        assert_eq!(data.self_tests[0].passed, Some(true));
        assert_eq!(data.self_tests[0].hours, Some(1284));
        let a = assert_healthy(
            "sata-hdd-healthy-seagate-st2000nm000a-debian-smartctl-a.txt",
            Protocol::Ata,
        );
        assert_eq!(fact(&a, "reallocated"), "0");
    }

    #[test]
    fn healthy_hs_ssd_c100_text_from_debian_11_parses() {
        let data = fixture("sata-ssd-healthy-hs-ssd-c100-debian11-smartctl-a.txt");
        assert_eq!(data.capacity, Some(120_034_123_776));
        assert!(data.self_tests.is_empty());
        assert_healthy(
            "sata-ssd-healthy-hs-ssd-c100-debian11-smartctl-a.txt",
            Protocol::Ata,
        );
    }

    #[test]
    fn healthy_samsung_970evoplus_nvme_text_parses() {
        let data = fixture("nvme-healthy-samsung-970evoplus-smartctl-a.txt");
        assert_eq!(
            data.model.as_deref(),
            Some("Samsung SSD 970 EVO Plus 500GB")
        );
        assert_eq!(data.capacity, Some(500_107_862_016));
        assert_eq!(
            data.nvme,
            Some(NvmeHealth {
                critical_warning: 0,
                media_errors: Some(0),
                percentage_used: Some(0),
                available_spare: Some(100),
                available_spare_threshold: Some(10),
                error_log_entries: Some(5),
            })
        );
        assert_eq!(
            (data.temperature, data.power_on_hours),
            (Some(41), Some(15))
        );
        assert_healthy(
            "nvme-healthy-samsung-970evoplus-smartctl-a.txt",
            Protocol::Nvme,
        );
    }

    #[test]
    fn healthy_sas_disk_behind_megaraid_is_ok() {
        let data = parse_json(&testdata(
            "smartctl-extra/sas-hdd-healthy-toshiba-mg08sca16tey-megaraid1.smartctl_exporter.json",
        ))
        .unwrap();
        assert_eq!(data.protocol, Protocol::Scsi);
        let a = assess(&data, &Thresholds::default());
        assert_eq!(a.severity, Severity::Ok, "{}", a.message);
        assert_eq!(a.message, "healthy: SMART passed, no grown defects, 31 °C");
        assert_eq!(fact(&a, "uncorrected_read_errors"), "0");
    }

    #[test]
    fn a_json_that_smartctl_did_not_write_is_refused() {
        assert!(parse_json("{\"devices\": []}").is_err());
        assert!(parse_json("Smartctl open device: /dev/sda failed").is_err());
        assert!(parse_text("{}").is_err());
    }

    #[test]
    fn no_health_data_is_unknown_never_ok() {
        let data = SmartData {
            exit_status: Some(2),
            messages: vec!["Smartctl open device: /dev/sdx failed: No such device".into()],
            ..SmartData::default()
        };
        let a = assess(&data, &Thresholds::default());
        assert_eq!(a.severity, Severity::Unknown);
        assert_eq!(
            a.message,
            "SMART unavailable: Smartctl open device: /dev/sdx failed: No such device"
        );
        let virtual_disk = SmartData {
            smart_available: Some(false),
            ..SmartData::default()
        };
        assert_eq!(
            assess(&virtual_disk, &Thresholds::default()).severity,
            Severity::Unknown
        );
    }

    #[test]
    fn packed_raw_values_count_their_low_32_bits() {
        let attr = |raw_value: u64, raw_string: &str| Attribute {
            id: 188,
            raw_value,
            raw_string: raw_string.into(),
            ..Attribute::default()
        };
        assert_eq!(attr(1975, "1975").count(), 1975);
        // A Seagate-style 188 packing three 16-bit counters.
        assert_eq!(attr(4_295_032_833, "4295032833").count(), 65_537);
        assert_eq!(attr(7, "7 (Average 3)").count(), 7);
        assert_eq!(attr(9, "").count(), 9);
        assert_eq!(leading_digits("1234h+05m+06.789s"), Some(1234));
    }

    #[test]
    fn scans_parse_as_json_and_as_text() {
        let simple = parse_scan_json(&testdata(
            "smartctl-extra/scan-scrutiny-simple-7-sata-disks.json",
        ))
        .unwrap();
        assert_eq!(simple.len(), 7);
        assert_eq!(
            simple[2],
            ScanDevice {
                name: "/dev/sdc".into(),
                kind: Some("scsi".into())
            }
        );
        let text = parse_scan_text(&testdata(
            "smartctl-extra/scan-open-text-nvme-megaraid.py-smart.txt",
        ));
        let names: Vec<String> = text
            .iter()
            .map(|d| format!("{} {}", d.name, d.kind.as_deref().unwrap_or("-")))
            .collect();
        assert_eq!(
            names,
            [
                "/dev/nvme0 nvme",
                "/dev/nvme1 nvme",
                "/dev/bus/0 sat+megaraid,60"
            ]
        );
        assert_eq!(text[2].subject(), "/dev/bus/0 [sat+megaraid,60]");
        assert_eq!(text[2].type_args(), ["-d", "sat+megaraid,60"]);
        assert!(simple[0].type_args().is_empty());
    }

    fn run_with(sys: &dyn System, disks: &Disks, settings: &CheckSettings) -> Vec<Finding> {
        let ctx = ProbeCtx {
            sys,
            settings,
            disks,
        };
        Smart.run(&ctx)
    }

    #[test]
    fn a_failing_disk_keeps_its_data_when_smartctl_exits_216() {
        let sys = Recorder::new();
        sys.reply(
            &["smartctl", "--scan", "--json"],
            0,
            &testdata("smartctl-extra/scan-scrutiny-simple-7-sata-disks.json"),
        );
        sys.reply(
            &["smartctl", "--json", "--all", "/dev/sdc"],
            216,
            &testdata(
                "smartctl/sata-hdd-FAILED-hitachi-1975-realloc-selftest-readfail.scrutiny.json",
            ),
        );
        let findings = run_with(&sys, &Disks::default(), &CheckSettings::default());
        assert_eq!(findings.len(), 7);
        let sdc = findings.iter().find(|f| f.subject == "/dev/sdc").unwrap();
        assert_eq!(sdc.severity, Severity::Crit);
        assert!(
            sdc.message.starts_with(
                "/dev/sdc (Hitachi HDS721050DLE630, serial MSK423Y20S3HBC, 500.1 GB): \
                 SMART overall-health self-assessment FAILED, 1975 reallocated sectors"
            ),
            "{}",
            sdc.message
        );
        assert_eq!(sdc.facts["serial"], "MSK423Y20S3HBC");
        assert_eq!(sdc.facts["capacity"], "500.1 GB");
        assert_eq!(sdc.facts["exit_status"], "216");
        assert_eq!(sdc.facts["reallocated"], "1975");
        // --scan says "scsi": no -d, so smartctl finds the SAT layer itself.
        assert!(
            sys.commands()
                .contains(&"smartctl --json --all /dev/sdc".to_owned())
        );
        // The other disks answered nothing (here: no scripted reply):
        // unknown, never ok.
        let sda = findings.iter().find(|f| f.subject == "/dev/sda").unwrap();
        assert_eq!(sda.severity, Severity::Unknown);
        assert_eq!(
            sda.message,
            "/dev/sda: SMART unavailable: smartctl gave no output (exit status 0)"
        );
    }

    #[test]
    fn an_nvme_with_media_errors_is_named_and_an_unlisted_disk_is_unknown() {
        let sys = Recorder::new();
        sys.reply(
            &["smartctl", "--scan", "--json"],
            0,
            &testdata("smartctl-extra/scan-scrutiny-nvme.json"),
        );
        sys.reply(
            &["smartctl", "--json", "--all", "-d", "nvme", "/dev/nvme0"],
            0,
            &testdata("smartctl/nvme-prefail-samsung-970evo-7-media-errors.scrutiny.json"),
        );
        sys.reply(
            &["lsblk"],
            0,
            &testdata("lsblk/lab-girofle-nextcloud-data-bookworm-debian12.json"),
        );
        let disks = Disks::read(&sys);
        let findings = run_with(&sys, &disks, &CheckSettings::default());
        let subjects: Vec<(&str, Severity)> = findings
            .iter()
            .map(|f| (f.subject.as_str(), f.severity))
            .collect();
        // vda is a virtio disk smartctl does not list; loops and zram0
        // are not disks to check.
        assert_eq!(
            subjects,
            [
                ("/dev/nvme0", Severity::Crit),
                ("/dev/vda", Severity::Unknown)
            ]
        );
        assert_eq!(
            findings[0].message,
            "/dev/nvme0 (Samsung SSD 970 EVO 500GB, serial S466NX0M776250H, 500.1 GB): \
             7 media and data integrity errors (although smartctl says PASSED) \
             — the disk is failing: replace it"
        );
        assert_eq!(findings[0].facts["media_errors"], "7");
        assert_eq!(findings[0].facts["protocol"], "NVMe");
        assert_eq!(
            findings[1].message,
            "/dev/vda (274.9 GB, used by vda (/srv/clou-lab/apt)): SMART unavailable: \
             smartctl does not list this disk (a virtual disk, or a volume of a RAID \
             controller whose disks it cannot see)"
        );
        assert_eq!(findings[1].facts["capacity_bytes"], "274877906944");
    }

    #[test]
    fn disks_behind_a_raid_controller_are_told_apart_by_slot() {
        let sys = Recorder::new();
        sys.reply(
            &["smartctl", "--scan", "--json"],
            0,
            &testdata("smartctl-extra/scan-scrutiny-megaraid.json"),
        );
        sys.reply(
            &["smartctl", "--json", "--all", "-d", "megaraid,1", "/dev/bus/0"],
            0,
            &testdata(
                "smartctl-extra/sas-hdd-healthy-toshiba-mg08sca16tey-megaraid1.smartctl_exporter.json",
            ),
        );
        let findings = run_with(&sys, &Disks::default(), &CheckSettings::default());
        let subjects: Vec<(&str, Severity)> = findings
            .iter()
            .map(|f| (f.subject.as_str(), f.severity))
            .collect();
        assert_eq!(
            subjects,
            [
                ("/dev/bus/0 [megaraid,0]", Severity::Unknown),
                ("/dev/bus/0 [megaraid,1]", Severity::Ok)
            ]
        );
        assert_eq!(
            findings[1].message,
            "/dev/bus/0 [megaraid,1] (TOSHIBA MG08SCA16TEY, serial REDACTED, 16.0 TB): \
             healthy: SMART passed, no grown defects, 31 °C"
        );
    }

    #[test]
    fn without_json_the_text_scan_and_text_output_are_read() {
        let sys = Recorder::new();
        // No reply for the JSON commands: stdout is empty, not JSON.
        sys.reply(
            &["smartctl", "--scan"],
            0,
            &testdata("smartctl-extra/scan-open-text-nvme-megaraid.py-smart.txt"),
        );
        sys.reply(
            &["smartctl", "--all", "-d", "nvme", "/dev/nvme0"],
            0,
            &testdata("smartctl/nvme-healthy-samsung-970evoplus-smartctl-a.txt"),
        );
        let findings = run_with(&sys, &Disks::default(), &CheckSettings::default());
        assert_eq!(findings.len(), 3);
        assert_eq!(findings[0].subject, "/dev/nvme0");
        assert_eq!(
            findings[0].severity,
            Severity::Ok,
            "{}",
            findings[0].message
        );
        assert!(findings[0].message.starts_with(
            "/dev/nvme0 (Samsung SSD 970 EVO Plus 500GB, serial S4EVNX0NA32843N, 500.1 GB): healthy"
        ));
        assert_eq!(findings[1].severity, Severity::Unknown);
        assert_eq!(findings[2].subject, "/dev/bus/0 [sat+megaraid,60]");
    }

    /// A host without smartctl.
    #[derive(Debug)]
    struct NoSmartctl;

    impl System for NoSmartctl {
        fn run(&self, _cmd: &Cmd) -> io::Result<Output> {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "No such file or directory",
            ))
        }
    }

    #[test]
    fn without_smartctl_one_finding_says_install_smartmontools() {
        let findings = run_with(&NoSmartctl, &Disks::default(), &CheckSettings::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Unknown);
        assert!(
            findings[0].message.contains("install smartmontools"),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn the_smartctl_of_the_settings_is_the_one_run() {
        let sys = Recorder::new();
        let settings = CheckSettings {
            smartctl: "/opt/replay/smartctl".into(),
            ..CheckSettings::default()
        };
        run_with(&sys, &Disks::default(), &settings);
        assert_eq!(sys.commands()[0], "/opt/replay/smartctl --scan --json");
    }
}
