//! The `btrfs` probe (placeholder: being written).

use clou_protocol::health::Finding;

use super::{Probe, ProbeCtx};

/// The `btrfs` probe.
#[derive(Debug, Clone, Copy)]
pub struct Btrfs;

impl Probe for Btrfs {
    fn name(&self) -> &'static str {
        "btrfs"
    }

    fn run(&self, _ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
