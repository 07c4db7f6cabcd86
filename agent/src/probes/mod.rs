//! Health probes: one file each, all behind [`Probe`].
//!
//! A probe looks at one aspect of the host (read only, through the
//! [`System`] seam) and returns findings: ok / unknown / warn / crit, a
//! message in plain words, and the identity of the thing it is about.
//! Parsing a tool's output is a pure function in the probe's file, tested
//! against real outputs (`testdata/`, see its SOURCES.md).
//!
//! [`check`] runs every probe; [`disks::Disks`] (from `lsblk`) lets every
//! probe name a disk so that a person can find it in a rack.

pub mod backup;
pub mod btrfs;
pub mod disks;
pub mod filesystem;
pub mod http;
pub mod mdraid;
pub mod smart;
pub mod system;
pub mod systemd;
pub mod tls;

use std::time::Instant;

use clou_protocol::health::{CheckSettings, Finding, HealthReport};

use crate::system::System;

/// What a probe gets to work with.
pub struct ProbeCtx<'a> {
    pub sys: &'a dyn System,
    pub settings: &'a CheckSettings,
    /// The host's block devices, to name disks in findings.
    pub disks: &'a disks::Disks,
}

impl std::fmt::Debug for ProbeCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeCtx")
            .field("settings", &self.settings)
            .finish()
    }
}

/// One aspect of a host's health.
pub trait Probe {
    /// The name findings carry (`smart`, `mdraid`...).
    fn name(&self) -> &'static str;
    /// Looks (read only) and says what it found. A probe that cannot look
    /// says so with an `Unknown` finding rather than saying nothing.
    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding>;
}

/// Every probe, in the order findings are shown.
pub fn all() -> Vec<Box<dyn Probe>> {
    vec![
        Box::new(smart::Smart),
        Box::new(mdraid::MdRaid),
        Box::new(btrfs::Btrfs),
        Box::new(filesystem::Filesystems),
        Box::new(systemd::Systemd),
        Box::new(http::Http),
        Box::new(system::SystemProbe),
        Box::new(tls::Certificates),
        Box::new(backup::Backups),
    ]
}

/// Runs every probe.
pub fn check(sys: &dyn System, settings: &CheckSettings) -> HealthReport {
    let started = Instant::now();
    let disks = disks::Disks::read(sys);
    let ctx = ProbeCtx {
        sys,
        settings,
        disks: &disks,
    };
    let findings = all().iter().flat_map(|p| p.run(&ctx)).collect();
    let hostname = sys
        .read_text("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    HealthReport {
        hostname,
        findings,
        millis: started.elapsed().as_millis() as u64,
    }
}
