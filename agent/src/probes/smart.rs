//! The `smart` probe (placeholder: being written).

use clou_protocol::health::Finding;

use super::{Probe, ProbeCtx};

/// The `smart` probe.
#[derive(Debug, Clone, Copy)]
pub struct Smart;

impl Probe for Smart {
    fn name(&self) -> &'static str {
        "smart"
    }

    fn run(&self, _ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
