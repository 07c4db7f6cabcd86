//! Builds the agent that `clou` uploads to hosts, and embeds it.
//!
//! The agent must run on Debian 11, 12 and 13, whose glibc versions differ
//! (2.31, 2.36, 2.41). A binary linked dynamically on this machine would ask
//! for the newest symbols it was built with, so the agent is linked
//! statically (`crt-static`): it needs nothing from the host's libc. It is
//! built by a nested cargo, in its own target directory so it does not wait
//! on the outer build's lock, with the `agent` profile (small, no unwinding).
//!
//! `CLOU_AGENT_BIN` points at a prebuilt agent instead (packaging, or a
//! machine without static glibc); it must be static too.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("controller/ is in the workspace")
        .to_owned();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let dest = out.join("clou-agent");

    println!("cargo:rerun-if-env-changed=CLOU_AGENT_BIN");
    if let Some(prebuilt) = env::var_os("CLOU_AGENT_BIN") {
        copy(Path::new(&prebuilt), &dest);
        return;
    }
    for dir in [
        "agent/src",
        "agent/protocol/src",
        "agent/Cargo.toml",
        "agent/protocol/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    let target_dir = workspace.join("target").join("agent");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--quiet", "--locked", "-p", "clou-agent"])
        .args(["--profile", "agent", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings (clippy as a wrapper, its flags, coverage
    // instrumentation) are for the controller, not for the shipped agent.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    let status = cmd.status().expect("cannot run cargo to build the agent");
    if !status.success() {
        panic!(
            "building the static clou-agent failed ({status}); \
             it needs the static glibc of libc6-dev (apt install libc6-dev), \
             or set CLOU_AGENT_BIN to a prebuilt static agent"
        );
    }
    copy(
        &target_dir.join(TARGET).join("agent").join("clou-agent"),
        &dest,
    );
}

fn copy(from: &Path, to: &Path) {
    if let Err(err) = std::fs::copy(from, to) {
        panic!(
            "cannot copy the agent {} to {}: {err}",
            from.display(),
            to.display()
        );
    }
}
