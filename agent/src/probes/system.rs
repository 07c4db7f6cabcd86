//! The `system` probe (placeholder: being written).

use clou_protocol::health::Finding;

use super::{Probe, ProbeCtx};

/// The `system` probe.
#[derive(Debug, Clone, Copy)]
pub struct SystemProbe;

impl Probe for SystemProbe {
    fn name(&self) -> &'static str {
        "system"
    }

    fn run(&self, _ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
