//! Debian packages the lab builds itself, for rehearsals that need a
//! package under our control: `clou-lab-hello` in two versions, each with a
//! systemd service, so an upgrade from 1.0 to 2.0 can be rehearsed.
//!
//! Version 2.0 refuses to start on a host that has the file
//! `/etc/clou-lab-hello/fail-2.0`: that is how a test makes an upgrade fail
//! on one host only, the way a real new version fails on a real server.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{LabError, io_err};
use crate::process;

/// Name of the lab-built package.
pub const PACKAGE: &str = "clou-lab-hello";

/// Versions built, oldest first.
pub const VERSIONS: &[&str] = &["1.0-1", "2.0-1"];

/// Bumped when the package contents below change.
pub const RECIPE_VERSION: u32 = 2;

/// Builds every version into `out` (skipping those already there) and
/// returns the .deb paths.
pub fn build_all(out: &Path) -> Result<Vec<PathBuf>, LabError> {
    std::fs::create_dir_all(out).map_err(io_err("creating", out))?;
    VERSIONS.iter().map(|v| build(out, v)).collect()
}

fn build(out: &Path, version: &str) -> Result<PathBuf, LabError> {
    let deb = out.join(format!("{PACKAGE}_{version}_all.deb"));
    if deb.is_file() {
        return Ok(deb);
    }
    let upstream = version.split('-').next().unwrap_or(version);
    let tree = out.join(format!(".tree-{version}"));
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(io_err("removing", &tree))?;
    }
    let put = |rel: &str, text: String, mode: u32| -> Result<(), LabError> {
        let path = tree.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        std::fs::write(&path, text).map_err(io_err("writing", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &path))
    };
    put(
        "DEBIAN/control",
        format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nSection: misc\nPriority: optional\n\
             Maintainer: clou lab <lab@clou.invalid>\n\
             Description: clou lab service for upgrade rehearsals\n \
             Built by `clou lab`; never installed outside the lab.\n"
        ),
        0o644,
    )?;
    put(
        "usr/bin/clou-lab-hello",
        format!(
            "#!/bin/sh\n\
             # clou-lab-hello {upstream}: a lab-built service for upgrade rehearsals.\n\
             set -eu\n\
             version={upstream}\n\
             if [ -e /etc/clou-lab-hello/fail-$version ]; then\n\
             \techo \"clou-lab-hello $version: refusing to start: /etc/clou-lab-hello/fail-$version exists\" >&2\n\
             \texit 1\n\
             fi\n\
             mkdir -p /run/clou-lab-hello\n\
             echo \"$version\" > /run/clou-lab-hello/version\n\
             echo \"clou-lab-hello $version running\"\n\
             exec sleep infinity\n"
        ),
        0o755,
    )?;
    put(
        "lib/systemd/system/clou-lab-hello.service",
        format!(
            "[Unit]\nDescription=clou lab hello service {upstream}\n\n\
             [Service]\nExecStart=/usr/bin/clou-lab-hello\n\n\
             [Install]\nWantedBy=multi-user.target\n"
        ),
        0o644,
    )?;
    // Like dh_installsystemd: enable and (re)start on configure, stop on
    // remove. A service that fails to start fails the installation, as it
    // does with Debian's own packages.
    put(
        "DEBIAN/postinst",
        "#!/bin/sh\nset -e\nif [ \"$1\" = configure ] && [ -d /run/systemd/system ]; then\n\
         \tsystemctl daemon-reload\n\tsystemctl enable clou-lab-hello.service\n\
         \tsystemctl restart clou-lab-hello.service\nfi\n"
            .into(),
        0o755,
    )?;
    put(
        "DEBIAN/prerm",
        "#!/bin/sh\nset -e\nif [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then\n\
         \tsystemctl stop clou-lab-hello.service || true\nfi\n"
            .into(),
        0o755,
    )?;
    put(
        "DEBIAN/postrm",
        "#!/bin/sh\nset -e\nif [ \"$1\" = purge ] && [ -d /run/systemd/system ]; then\n\
         \tsystemctl disable clou-lab-hello.service || true\n\tsystemctl daemon-reload || true\nfi\n"
            .into(),
        0o755,
    )?;
    let tmp = out.join(format!(".{PACKAGE}_{version}.deb.tmp"));
    process::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&tree)
            .arg(&tmp),
    )?;
    std::fs::rename(&tmp, &deb).map_err(io_err("moving into place", &deb))?;
    std::fs::remove_dir_all(&tree).map_err(io_err("removing", &tree))?;
    Ok(deb)
}
