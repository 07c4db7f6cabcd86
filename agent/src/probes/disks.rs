//! The host's disks, from `lsblk` (placeholder: being written).

use crate::system::System;

/// Every block device, by /dev path.
#[derive(Debug, Clone, Default)]
pub struct Disks {}

impl Disks {
    /// Reads the host's block devices; empty when lsblk cannot run.
    pub fn read(_sys: &dyn System) -> Disks {
        Disks::default()
    }
}
