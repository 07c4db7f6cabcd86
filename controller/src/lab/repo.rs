//! The lab's apt repository: what lab hosts install from, since they have
//! no route to the internet.
//!
//! For each release it holds the packages the inventory asks for (with
//! their dependencies), downloaded once from this machine's mirror by apt
//! running in a throw-away overlay of that release's image, plus the
//! packages the lab builds itself. It is a plain file repository that every
//! host sees read-only at [`MOUNT_POINT`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::mirror::Mirror;
use super::{LabError, io_err, labdeb, overlay};
use crate::process;

/// Where hosts see the repository.
pub const MOUNT_POINT: &str = "/srv/clou-lab/apt";

/// The `file://` URL under which hosts see `relative`, a path inside the
/// repository (the lab's application archives, see [`super::artifacts`]).
pub fn url_of(relative: &str) -> String {
    format!("file://{MOUNT_POINT}/{relative}")
}

/// The apt source line a host of `release` uses.
pub fn source_line(release: &str) -> String {
    format!("deb [trusted=yes] file:{MOUNT_POINT} {release} main\n")
}

/// Makes sure `repo` offers `packages` for `release`; downloads only when
/// the list changed since the last build.
pub fn ensure(
    repo: &Path,
    work: &Path,
    release: &str,
    image: &Path,
    mirror: &Mirror,
    packages: &[String],
) -> Result<(), LabError> {
    let mut wanted: Vec<String> = packages.to_vec();
    wanted.sort();
    wanted.dedup();
    let recipe = {
        let mut h = Sha256::new();
        h.update(format!(
            "{}\n{}\n{}\n{}\n",
            image.display(),
            mirror.archive,
            labdeb::RECIPE_VERSION,
            wanted.join(" ")
        ));
        format!("{:x}\n", h.finalize())
    };
    let dist = repo.join("dists").join(release);
    let stamp = dist.join(".clou-recipe");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(recipe.as_str()) {
        return Ok(());
    }
    let pool = repo.join("pool").join(release);
    std::fs::create_dir_all(pool.join("partial")).map_err(io_err("creating", &pool))?;
    if !wanted.is_empty() {
        eprintln!(
            "lab: filling the {release} apt repository: {}",
            wanted.join(" ")
        );
        download(&pool, work, release, image, mirror, &wanted)?;
    }
    index(repo, release)?;
    std::fs::write(&stamp, recipe).map_err(io_err("writing", &stamp))?;
    Ok(())
}

/// Runs apt in a throw-away overlay of the release's image, with this
/// machine's mirror, to download `packages` and what they depend on.
fn download(
    pool: &Path,
    work: &Path,
    release: &str,
    image: &Path,
    mirror: &Mirror,
    packages: &[String],
) -> Result<(), LabError> {
    let dir = work.join(format!("download-{release}"));
    let mount = overlay::Overlay::new(image, &dir);
    mount.mount()?;
    let result = (|| {
        let root = mount.merged();
        let sources = root.join("etc/apt/sources.list");
        std::fs::write(&sources, mirror.sources_list(release))
            .map_err(io_err("writing", &sources))?;
        let bind = format!("--bind={}:/var/cache/clou-download", pool.display());
        let apt = |args: &[&str]| -> Result<(), LabError> {
            let mut cmd = Command::new("systemd-nspawn");
            cmd.args([
                "--quiet",
                "--register=no",
                "--keep-unit",
                "--resolv-conf=copy-host",
                "--pipe",
            ])
            .arg(format!("--directory={}", root.display()))
            .arg(&bind)
            .args([
                "apt-get",
                "-q",
                "-y",
                "-o",
                "Dir::Cache::archives=/var/cache/clou-download",
            ])
            .args(args)
            .stdin(Stdio::null());
            process::run(&mut cmd).map(|_| ())?;
            Ok(())
        };
        apt(&["update"])?;
        let mut args = vec!["install", "--download-only"];
        args.extend(packages.iter().map(String::as_str));
        apt(&args)
    })();
    let unmounted = mount.remove();
    result.and(unmounted)
}

/// Writes the indexes apt reads: Packages and Release.
fn index(repo: &Path, release: &str) -> Result<(), LabError> {
    let bin = repo.join("dists").join(release).join("main/binary-amd64");
    std::fs::create_dir_all(&bin).map_err(io_err("creating", &bin))?;
    // apt-ftparchive takes one directory (its second argument would be an
    // override file), so each pool is indexed on its own.
    let mut packages = String::new();
    for pool in [format!("pool/{release}"), "pool/lab".to_owned()] {
        packages.push_str(&process::stdout(
            Command::new("apt-ftparchive")
                .current_dir(repo)
                .args(["packages", &pool]),
        )?);
    }
    write_atomic(&bin.join("Packages"), packages.as_bytes())?;
    let dist = format!("dists/{release}");
    let release_file = process::stdout(
        Command::new("apt-ftparchive")
            .current_dir(repo)
            .args(["-o", &format!("APT::FTPArchive::Release::Suite={release}")])
            .args([
                "-o",
                &format!("APT::FTPArchive::Release::Codename={release}"),
            ])
            .args(["-o", "APT::FTPArchive::Release::Origin=clou-lab"])
            .args(["-o", "APT::FTPArchive::Release::Label=clou lab repository"])
            .args(["-o", "APT::FTPArchive::Release::Components=main"])
            .args(["-o", "APT::FTPArchive::Release::Architectures=amd64 all"])
            .args(["release", &dist]),
    )?;
    write_atomic(&repo.join(&dist).join("Release"), release_file.as_bytes())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    let tmp: PathBuf = path.with_extension("clou-tmp");
    std::fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming", path))
}
