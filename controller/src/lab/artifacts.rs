//! Lab artifacts: the application releases lab hosts unpack instead of
//! upstream's.
//!
//! The production inventory pins each application's release with three
//! vars, `APP_version`, `APP_url` (upstream's https URL) and `APP_sha256`,
//! which the role hands to an `archive` resource. Lab hosts have no route
//! to the internet, so an application role may carry `lab-artifact/`: the
//! source tree of a small stand-in release with upstream's directory
//! layout, a `VERSION` (ending in `-lab`) and a `LAB-ARTIFACT.md` saying it
//! is not the real software.
//!
//! `clou lab up` packs the `lab-artifact/` of every role the inventory's
//! hosts use into `artifacts/APP-VERSION.tar.gz` in the lab's repository
//! (which every host sees read-only at [`repo::MOUNT_POINT`]), and the lab
//! overlay sets the three vars to point there, above the inventory's. The
//! archive is deterministic (sorted entries, fixed mtime, owner and modes,
//! no name or time in the gzip header), so its sha256 only changes when the
//! stand-in does: a second `up` leaves the hosts' releases as they are.
//!
//! Nothing here is ever referenced by the production inventory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{LabError, io_err, repo};
use crate::inventory::Inventory;
use crate::process;
use crate::role::Roles;

/// A role's stand-in release, as a directory next to its `role.yaml`.
pub const SOURCE_DIR: &str = "lab-artifact";
/// Where archives go, inside the lab's repository.
pub const REPO_DIR: &str = "artifacts";
/// The file a stand-in must carry, saying what it is.
pub const MARKER: &str = "LAB-ARTIFACT.md";
/// What every stand-in's version ends with, so that no lab release can be
/// mistaken for upstream's (`29.0.4-lab`).
pub const VERSION_SUFFIX: &str = "-lab";

/// One packed stand-in release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The application (its role's name).
    pub app: String,
    pub version: String,
    /// The archive's name in [`REPO_DIR`].
    pub file_name: String,
    /// SHA-256 of the archive, in hex.
    pub sha256: String,
}

impl Artifact {
    /// The archive's URL as hosts see it.
    pub fn url(&self) -> String {
        repo::url_of(&format!("{REPO_DIR}/{}", self.file_name))
    }

    /// `APP_version`, `APP_url` and `APP_sha256`: the vars the role's
    /// `archive` resource reads, with the lab's values.
    pub fn vars(&self) -> BTreeMap<String, Value> {
        // Var names follow the role's: `lab-x` would be `lab_x_version`.
        let prefix = self.app.replace('-', "_");
        BTreeMap::from([
            (
                format!("{prefix}_version"),
                Value::from(self.version.clone()),
            ),
            (format!("{prefix}_url"), Value::from(self.url())),
            (format!("{prefix}_sha256"), Value::from(self.sha256.clone())),
        ])
    }
}

/// The vars of every artifact, for the lab overlay.
pub fn vars(artifacts: &[Artifact]) -> BTreeMap<String, Value> {
    artifacts.iter().flat_map(Artifact::vars).collect()
}

/// The roles the inventory's hosts use (through groups and dependencies)
/// that carry a stand-in release, with its directory, by role name.
pub fn sources(inventory: &Inventory, roles: &Roles) -> BTreeMap<String, PathBuf> {
    let used = used_roles(inventory, roles, |_| true);
    used.into_iter()
        .filter_map(|name| {
            let dir = roles.roles.get(&name)?.dir.join(SOURCE_DIR);
            dir.is_dir().then_some((name, dir))
        })
        .collect()
}

/// The roles (with their dependencies) of the hosts `keep` selects.
pub fn used_roles(
    inventory: &Inventory,
    roles: &Roles,
    keep: impl Fn(&crate::inventory::Host) -> bool,
) -> Vec<String> {
    let mut named: BTreeSet<String> = BTreeSet::new();
    for host in inventory.hosts.iter().filter(|h| keep(h)) {
        for group in inventory.groups_of(&host.name) {
            if let Some(g) = inventory.groups.get(&group) {
                named.extend(g.roles.iter().cloned());
            }
        }
        named.extend(host.roles.iter().cloned());
    }
    // An unknown role is the plan's error to report, with its hints; here
    // the known ones are enough.
    let known: Vec<String> = named
        .into_iter()
        .filter(|n| roles.roles.contains_key(n))
        .collect();
    roles.expand(&known, "lab artifacts").unwrap_or(known)
}

/// Packs every source into `repo/artifacts/` and removes the archives no
/// source produced any more.
pub fn build_all(
    repo_dir: &Path,
    sources: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Artifact>, LabError> {
    let out_dir = repo_dir.join(REPO_DIR);
    std::fs::create_dir_all(&out_dir).map_err(io_err("creating", &out_dir))?;
    let mut artifacts = Vec::new();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    for (app, source) in sources {
        let artifact = build(app, source, &out_dir)?;
        let next = build_next(&artifact, source, &out_dir)?;
        keep.insert(artifact.file_name.clone());
        keep.insert(next.file_name);
        artifacts.push(artifact);
    }
    for entry in std::fs::read_dir(&out_dir)
        .map_err(io_err("reading", &out_dir))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(name.as_str()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
    }
    Ok(artifacts)
}

/// The release after `version`, which the lab packs beside each stand-in
/// so that an application upgrade can be rehearsed: the last number before
/// the suffix, plus one (`33.0.9-lab` -> `33.0.10-lab`).
pub fn next_version(version: &str) -> String {
    let stem = version.strip_suffix(VERSION_SUFFIX).unwrap_or(version);
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, last) = stem.split_at(stem.len() - digits);
    let next = last.parse::<u64>().map_or(1, |n| n + 1);
    format!("{head}{next}{VERSION_SUFFIX}")
}

/// The next releases packed in `repo_dir` (see [`next_version`]), each as
/// the `-e` vars that pin it: how to rehearse an application upgrade.
pub fn rehearsals(repo_dir: &Path) -> Vec<Artifact> {
    let dir = repo_dir.join(REPO_DIR);
    let names: BTreeSet<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut next = Vec::new();
    for name in &names {
        let Some(stem) = name.strip_suffix(".tar.gz") else {
            continue;
        };
        for (i, _) in stem.match_indices('-') {
            let (app, version) = (&stem[..i], &stem[i + 1..]);
            let candidate = next_version(version);
            let file_name = format!("{app}-{candidate}.tar.gz");
            if !version.ends_with(VERSION_SUFFIX) || !names.contains(&file_name) {
                continue;
            }
            if let Ok(bytes) = std::fs::read(dir.join(&file_name)) {
                next.push(Artifact {
                    app: app.to_owned(),
                    version: candidate,
                    file_name,
                    sha256: format!("{:x}", Sha256::digest(&bytes)),
                });
            }
        }
    }
    next
}

/// Packs the same stand-in as [`next_version`] of `current`: the tree
/// copied with only its VERSION changed.
fn build_next(current: &Artifact, source: &Path, out_dir: &Path) -> Result<Artifact, LabError> {
    let version = next_version(&current.version);
    let tree = out_dir.join(format!(".{}-{version}.tree", current.app));
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(io_err("removing", &tree))?;
    }
    let result = (|| {
        process::run(Command::new("cp").arg("-a").arg(source).arg(&tree))?;
        let path = tree.join("VERSION");
        std::fs::write(&path, format!("{version}\n")).map_err(io_err("writing", &path))?;
        build(&current.app, &tree, out_dir)
    })();
    let _ = std::fs::remove_dir_all(&tree);
    result
}

/// Packs the stand-in of `app` at `source` into `out_dir`.
pub fn build(app: &str, source: &Path, out_dir: &Path) -> Result<Artifact, LabError> {
    let invalid = |what: String| {
        LabError::Several(format!(
            "{}: {what}\n  hint: a lab artifact holds a {MARKER} saying it is a stand-in, and a \
             VERSION such as 1.2.3{VERSION_SUFFIX}",
            source.display()
        ))
    };
    if !source.join(MARKER).is_file() {
        return Err(invalid(format!("no {MARKER}")));
    }
    let version_path = source.join("VERSION");
    let version = std::fs::read_to_string(&version_path)
        .map_err(io_err("reading", &version_path))?
        .trim()
        .to_owned();
    let well_formed = version.len() > VERSION_SUFFIX.len()
        && version.ends_with(VERSION_SUFFIX)
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+~".contains(c));
    if !well_formed {
        return Err(invalid(format!(
            "VERSION {version:?} must end with {VERSION_SUFFIX:?} and hold only letters, digits and .-+~"
        )));
    }
    let file_name = format!("{app}-{version}.tar.gz");
    let path = out_dir.join(&file_name);
    pack(source, &format!("{app}-{version}"), &path)?;
    let bytes = std::fs::read(&path).map_err(io_err("reading", &path))?;
    Ok(Artifact {
        app: app.to_owned(),
        version,
        file_name,
        sha256: format!("{:x}", Sha256::digest(&bytes)),
    })
}

/// Writes `source` as a gzipped tar to `dest`, under the top directory
/// `top` (which the `archive` resource strips, as upstream's). The same
/// tree always gives the same bytes: entries sorted by name, mtime 0,
/// owner and group root, modes normalised (what the checkout's umask left
/// does not matter), GNU format (no pax access times), and gzip without a
/// name or time stamp.
pub fn pack(source: &Path, top: &str, dest: &Path) -> Result<(), LabError> {
    let tar = dest.with_extension("clou-tmp");
    let result = (|| {
        process::run(
            Command::new("tar")
                .args([
                    "--create",
                    "--format=gnu",
                    "--sort=name",
                    "--mtime=@0",
                    "--owner=0",
                    "--group=0",
                    "--numeric-owner",
                    "--mode=u+rwX,go=rX",
                ])
                .arg(format!("--transform=s,^\\.,{top},"))
                .arg("--file")
                .arg(&tar)
                .arg("--directory")
                .arg(source)
                .arg("."),
        )?;
        let out = process::run(Command::new("gzip").args(["-n", "-9", "-c"]).arg(&tar))?;
        let partial = dest.with_extension("clou-partial");
        std::fs::write(&partial, &out.stdout).map_err(io_err("writing", &partial))?;
        std::fs::rename(&partial, dest).map_err(io_err("renaming", dest))
    })();
    let _ = std::fs::remove_file(&tar);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stand_in(dir: &Path) -> PathBuf {
        let src = dir.join("roles/nextcloud").join(SOURCE_DIR);
        std::fs::create_dir_all(src.join("lib/private")).expect("mkdir");
        std::fs::write(src.join("VERSION"), "29.0.4-lab\n").expect("write");
        std::fs::write(src.join(MARKER), "Not Nextcloud.\n").expect("write");
        std::fs::write(src.join("index.php"), "<?php echo 'hi';\n").expect("write");
        std::fs::write(src.join("lib/private/a.php"), "<?php\n").expect("write");
        src
    }

    fn listing(archive: &Path) -> String {
        let out = Command::new("tar")
            .args(["--list", "--verbose", "--numeric-owner", "--file"])
            .arg(archive)
            .output()
            .expect("tar runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn packing_twice_gives_the_same_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = stand_in(dir.path());
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).expect("mkdir");
        let first = build("nextcloud", &src, &out).expect("packs");
        // What a later checkout changes without changing the content:
        // mtimes, modes left by another umask, creation order.
        let file = src.join("index.php");
        std::fs::remove_file(&file).expect("rm");
        std::fs::write(&file, "<?php echo 'hi';\n").expect("write");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(src.join("VERSION"))
            .and_then(|f| f.set_modified(old))
            .expect("touch");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).expect("chmod");
        let second = build("nextcloud", &src, &out).expect("packs again");
        assert_eq!(first, second);
        assert_eq!(first.file_name, "nextcloud-29.0.4-lab.tar.gz");

        // The content does change it.
        std::fs::write(&file, "<?php echo 'changed';\n").expect("write");
        let third = build("nextcloud", &src, &out).expect("packs");
        assert_ne!(first.sha256, third.sha256);
    }

    #[test]
    fn archives_have_one_top_directory_root_owned_and_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = stand_in(dir.path());
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).expect("mkdir");
        let artifact = build("nextcloud", &src, &out).expect("packs");
        let text = listing(&out.join(&artifact.file_name));
        let names: Vec<&str> = text
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "nextcloud-29.0.4-lab/",
                "nextcloud-29.0.4-lab/LAB-ARTIFACT.md",
                "nextcloud-29.0.4-lab/VERSION",
                "nextcloud-29.0.4-lab/index.php",
                "nextcloud-29.0.4-lab/lib/",
                "nextcloud-29.0.4-lab/lib/private/",
                "nextcloud-29.0.4-lab/lib/private/a.php",
            ]
        );
        for line in text.lines() {
            assert!(line.contains(" 0/0 "), "not root-owned: {line}");
            assert!(line.contains("1970-01-01"), "mtime not fixed: {line}");
            assert!(!line.starts_with("-rw-rw"), "group-writable: {line}");
        }
    }

    #[test]
    fn the_overlay_vars_point_at_the_lab_repository() {
        let artifact = Artifact {
            app: "nextcloud".into(),
            version: "29.0.4-lab".into(),
            file_name: "nextcloud-29.0.4-lab.tar.gz".into(),
            sha256: "ab".repeat(32),
        };
        let vars = vars(&[artifact]);
        assert_eq!(vars["nextcloud_version"], "29.0.4-lab");
        assert_eq!(
            vars["nextcloud_url"],
            "file:///srv/clou-lab/apt/artifacts/nextcloud-29.0.4-lab.tar.gz"
        );
        assert_eq!(vars["nextcloud_sha256"], "ab".repeat(32).as_str());
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn a_stand_in_must_say_what_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = stand_in(dir.path());
        std::fs::remove_file(src.join(MARKER)).expect("rm");
        let err = build("nextcloud", &src, dir.path()).expect_err("refused");
        assert!(err.to_string().contains("no LAB-ARTIFACT.md"), "{err}");

        let src = stand_in(dir.path());
        std::fs::write(src.join("VERSION"), "29.0.4\n").expect("write");
        let err = build("nextcloud", &src, dir.path()).expect_err("refused");
        assert!(err.to_string().contains("must end with \"-lab\""), "{err}");
    }

    #[test]
    fn archives_no_source_produces_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = stand_in(dir.path());
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(REPO_DIR)).expect("mkdir");
        std::fs::write(repo.join(REPO_DIR).join("old-1-lab.tar.gz"), "x").expect("write");
        let sources = BTreeMap::from([("nextcloud".to_owned(), src)]);
        let built = build_all(&repo, &sources).expect("builds");
        let mut left: Vec<String> = std::fs::read_dir(repo.join(REPO_DIR))
            .expect("readdir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // The stand-in, and its next release for rehearsing an upgrade.
        assert_eq!(
            left,
            [
                built[0].file_name.clone(),
                "nextcloud-29.0.5-lab.tar.gz".to_owned()
            ]
        );
        assert_eq!(built.len(), 1, "the overlay pins the stand-in itself");
        let next = rehearsals(&repo);
        assert_eq!(next.len(), 1, "{next:?}");
        assert_eq!(next[0].version, "29.0.5-lab");
        assert_eq!(
            next[0].vars()["nextcloud_url"],
            "file:///srv/clou-lab/apt/artifacts/nextcloud-29.0.5-lab.tar.gz"
        );
        let next = repo.join(REPO_DIR).join("nextcloud-29.0.5-lab.tar.gz");
        let listing = listing(&next);
        assert!(
            listing.contains("nextcloud-29.0.5-lab/index.php"),
            "{listing}"
        );
    }

    #[test]
    fn the_next_release_bumps_the_last_number() {
        assert_eq!(next_version("33.0.9-lab"), "33.0.10-lab");
        assert_eq!(next_version("1.3.12-lab"), "1.3.13-lab");
        assert_eq!(next_version("v25-lab"), "v26-lab");
        assert_eq!(next_version("stable-lab"), "stable1-lab");
    }
}
