//! The `mdraid` probe (placeholder: being written).

use clou_protocol::health::Finding;

use super::{Probe, ProbeCtx};

/// The `mdraid` probe.
#[derive(Debug, Clone, Copy)]
pub struct MdRaid;

impl Probe for MdRaid {
    fn name(&self) -> &'static str {
        "mdraid"
    }

    fn run(&self, _ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
