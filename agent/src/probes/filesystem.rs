//! The `filesystem` probe (placeholder: being written).

use clou_protocol::health::Finding;

use super::{Probe, ProbeCtx};

/// The `filesystem` probe.
#[derive(Debug, Clone, Copy)]
pub struct Filesystems;

impl Probe for Filesystems {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn run(&self, _ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
