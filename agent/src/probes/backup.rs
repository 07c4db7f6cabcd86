//! The `backup` probe (placeholder: being written).

use clou_protocol::health::Finding;

use super::{Probe, ProbeCtx};

/// The `backup` probe.
#[derive(Debug, Clone, Copy)]
pub struct Backups;

impl Probe for Backups {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn run(&self, _ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
