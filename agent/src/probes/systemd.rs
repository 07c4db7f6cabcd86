//! The `systemd` probe (placeholder: being written).

use clou_protocol::health::Finding;

use super::{Probe, ProbeCtx};

/// The `systemd` probe.
#[derive(Debug, Clone, Copy)]
pub struct Systemd;

impl Probe for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn run(&self, _ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
