//! What `clou lab up` started, written down so that `down` stops exactly
//! that, by PID, and `status` can tell what runs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LabError, io_err};

/// The state of one lab, in `labs/NAME/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    /// The inventory the lab replicates.
    pub inventory: PathBuf,
    pub subnet: String,
    pub bridge: String,
    pub hosts: Vec<HostState>,
}

/// One host of the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    pub name: String,
    pub release: String,
    pub address: Ipv4Addr,
    /// Lower layer of the host's root filesystem.
    pub image: PathBuf,
    /// The host's directory: overlay layers, console log.
    pub dir: PathBuf,
    pub netns: String,
    /// Host side of the veth pair.
    pub veth: String,
    pub cgroups: Vec<PathBuf>,
    #[serde(default)]
    pub disks: Vec<DiskState>,
    /// PID of the systemd-nspawn process, while it runs.
    pub pid: Option<u32>,
    /// A spare (`lab: spares:`): not in the inventory, root logs in with
    /// a password only, until `clou onboard` takes it in.
    #[serde(default)]
    pub spare: bool,
}

impl HostState {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Where a spare's root password is kept (mode 0600).
    pub fn password_path(&self) -> PathBuf {
        self.dir.join("root-password")
    }

    /// Whether the host's systemd-nspawn still runs.
    pub fn is_running(&self) -> bool {
        self.pid
            .is_some_and(|p| super::host::is_running(p, &self.name))
    }
}

/// An extra disk of a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskState {
    /// Backing file on this machine.
    pub image: PathBuf,
    /// Loop device backing it (`/dev/loopN`).
    pub device: String,
    /// Device path inside the host.
    pub target: String,
}

impl LabState {
    pub fn load(path: &Path) -> Result<Option<LabState>, LabError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| LabError::Io {
                    what: format!("reading the lab state {}", path.display()),
                    error: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading the lab state", path)(e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), LabError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::Io {
            what: "encoding the lab state".into(),
            error: std::io::Error::other(e),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(io_err("writing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("writing", path))
    }

    /// Whether any host of the lab still runs.
    pub fn any_running(&self) -> bool {
        self.hosts.iter().any(HostState::is_running)
    }

    pub fn host(&self, name: &str) -> Option<&HostState> {
        self.hosts.iter().find(|h| h.name == name)
    }
}
