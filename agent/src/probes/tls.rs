//! The `tls` probe (placeholder: being written).

use clou_protocol::health::Finding;

use super::{Probe, ProbeCtx};

/// The `tls` probe.
#[derive(Debug, Clone, Copy)]
pub struct Certificates;

impl Probe for Certificates {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn run(&self, _ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
