//! The agent binary that `clou` uploads, embedded at build time.
//!
//! `build.rs` builds `clou-agent` statically (it must run on Debian 11, 12
//! and 13) and this module carries its bytes, so that the `clou` binary is
//! all an admin needs: no separate artefact to find or keep in step.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The static agent's bytes.
pub const BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/clou-agent"));

/// Hex SHA-256 of [`BYTES`]: the agent's name on hosts
/// (`/var/lib/clou/agent-SHA256`), so a host runs exactly this build.
pub fn sha256() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        Sha256::digest(BYTES)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// Where the agent lives on a host.
pub fn remote_path() -> String {
    format!("{}/agent-{}", clou_agent_state_dir(), sha256())
}

/// The agent's state directory on hosts (lock, journal, binaries).
pub fn clou_agent_state_dir() -> &'static str {
    "/var/lib/clou"
}
