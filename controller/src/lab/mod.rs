//! `clou lab`: a replica of the fleet on this machine, to rehearse on.
//!
//! # Layout
//!
//! Every inventory host becomes a real Debian system booted by
//! systemd-nspawn, with systemd as PID 1, OpenSSH, its own network
//! namespace and an address on the lab bridge.
//!
//! - [`prereq`]: root, and the tools the lab drives (installed with apt).
//! - [`mirror`]: the Debian mirror, read from this machine's apt sources.
//! - [`image`]: one base root filesystem per release (mmdebstrap, cached).
//! - [`repo`] and [`labdeb`]: the apt repository hosts install from.
//! - [`artifacts`]: stand-in application releases, served from that
//!   repository, which the lab overlay's vars point the roles at.
//! - [`overlay`]: each host's copy-on-write root filesystem.
//! - [`net`]: the bridge, namespaces and veth pairs.
//! - [`host`]: files, disks, boot and shutdown of one host.
//! - [`state`]: what was started, so `down` stops exactly that.
//!
//! Everything lives under one root directory (`/var/lib/clou-lab`, or
//! `CLOU_LAB_ROOT`): `images/` is shared, `labs/NAME/` belongs to one lab.

pub mod artifacts;
pub mod host;
pub mod image;
pub mod labdeb;
pub mod mirror;
pub mod net;
pub mod overlay;
pub mod prereq;
pub mod repo;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::inventory::{Inventory, InventoryError, RELEASES};
use crate::process::{self, CommandError};
use state::{HostState, LabState};

/// Subnet of a lab whose inventory names none.
pub const DEFAULT_SUBNET: &str = "10.99.0.0/24";

/// What can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "the lab must run as root: it mounts filesystems, creates network namespaces and boots containers\n  \
         hint: run it again with sudo"
    )]
    NotRoot,
    #[error("the lab needs these Debian packages: {packages}\n  hint: run `{command}` as root")]
    MissingTools { packages: String, command: String },
    #[error(
        "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d\n  \
         hint: set CLOU_LAB_MIRROR to the URI of a Debian mirror"
    )]
    NoMirror,
    #[error("lab subnet {0:?} is not a private IPv4 /24 such as 10.99.0.0/24")]
    BadSubnet(String),
    #[error("a lab holds at most 244 hosts (one /24 subnet)")]
    TooManyHosts,
    #[error("bad lab disk: {0}; sizes look like 512M or 2G, at most 8 disks")]
    BadDisk(String),
    #[error("lab name {0:?} must be 1 to 20 lower-case letters, digits or '-'")]
    BadName(String),
    #[error("release {0:?} is not one the lab boots (bullseye, bookworm, trixie)")]
    BadRelease(String),
    #[error(
        "lab {other} already uses subnet {subnet}\n  hint: give this lab another `lab: subnet:` or run `clou lab down` for {other}"
    )]
    SubnetInUse { other: String, subnet: String },
    #[error("no lab host named {0:?}\n  hint: `clou lab status` lists the hosts")]
    UnknownHost(String),
    #[error("lab {0} is not up\n  hint: run `clou lab up` first")]
    NotUp(String),
    #[error("host {host} did not stop (pid {pid})")]
    StillRunning { host: String, pid: u32 },
    #[error("{} did not answer SSH in time: {}\n  hint: see its console log under {}", .hosts.join(", "), .detail, .dir.display())]
    NoAnswer {
        hosts: Vec<String>,
        detail: String,
        dir: PathBuf,
    },
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("{0}")]
    Several(String),
}

/// Builds the mapper for an I/O error about `path`.
pub(crate) fn io_err<'a>(
    what: &'a str,
    path: &'a Path,
) -> impl Fn(std::io::Error) -> LabError + 'a {
    move |source| LabError::Io {
        what: format!("{what} {}", path.display()),
        error: source,
    }
}

/// Options of `clou lab up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Boot every host with this release instead of the inventory's.
    pub release: Option<String>,
    /// Overrides the inventory's `lab: subnet:`.
    pub subnet: Option<String>,
    /// Discard the hosts' previous state (overlays, disks) first.
    pub fresh: bool,
    /// How long to wait for every host to answer SSH.
    pub timeout: Duration,
}

/// A row of `clou lab status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostStatus {
    pub name: String,
    pub release: String,
    pub address: Ipv4Addr,
    pub running: bool,
    pub ssh: bool,
    /// A spare, waiting to be onboarded: its root password's file.
    pub spare_password: Option<PathBuf>,
}

/// A lab, by name, under a root directory.
#[derive(Debug, Clone)]
pub struct Lab {
    pub name: String,
    pub root: PathBuf,
}

impl Lab {
    /// The lab called `name` under `root`.
    pub fn new(root: &Path, name: &str) -> Result<Lab, LabError> {
        let ok = !name.is_empty()
            && name.len() <= 20
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(LabError::BadName(name.to_owned()));
        }
        Ok(Lab {
            name: name.to_owned(),
            root: root.to_owned(),
        })
    }

    /// The default root: `CLOU_LAB_ROOT` or `/var/lib/clou-lab`.
    pub fn default_root() -> PathBuf {
        std::env::var_os("CLOU_LAB_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/clou-lab"))
    }

    /// The lab named after an inventory file (`girofle.yaml` -> `girofle`).
    pub fn name_for(inventory: &Path) -> String {
        let stem = inventory
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let name: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(20)
            .collect();
        if name.is_empty() { "lab".into() } else { name }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join("labs").join(&self.name)
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir().join("state.json")
    }
    /// The private key that logs into every lab host as root.
    pub fn key_path(&self) -> PathBuf {
        self.dir().join("ssh/id_ed25519")
    }
    /// known_hosts with every lab host's real keys.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }
    /// The inventory overlay: the inventory's hosts at their lab addresses.
    pub fn inventory_path(&self) -> PathBuf {
        self.dir().join("inventory.yaml")
    }
    pub fn repo_dir(&self) -> PathBuf {
        self.dir().join("repo")
    }

    /// Short tag for interface names, which are limited to 15 characters.
    fn tag(&self) -> String {
        let digest = Sha256::digest(self.name.as_bytes());
        digest.iter().take(3).map(|b| format!("{b:02x}")).collect()
    }
    fn bridge(&self) -> String {
        format!("clb-{}", self.tag())
    }

    fn lock(&self) -> Result<File, LabError> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let path = dir.join("lock");
        let file = File::create(&path).map_err(io_err("creating", &path))?;
        file.lock().map_err(io_err("locking", &path))?;
        Ok(file)
    }

    /// The lab's state, if it was ever started.
    pub fn state(&self) -> Result<Option<LabState>, LabError> {
        LabState::load(&self.state_path())
    }

    /// Boots every host of `inventory` (those already running are left
    /// alone) and waits until each answers SSH.
    pub fn up(&self, inventory: &Inventory, opts: &UpOptions) -> Result<LabState, LabError> {
        // Bad input is refused before anything on this machine changes.
        for (name, lab_host) in &inventory.lab.hosts {
            host::check_disks(name, &lab_host.disks)?;
        }
        prereq::ensure()?;
        let _lock = self.lock()?;
        let subnet_text = opts
            .subnet
            .clone()
            .or_else(|| inventory.lab.subnet.clone())
            .unwrap_or_else(|| DEFAULT_SUBNET.to_owned());
        let subnet = net::Subnet::parse(&subnet_text)?;
        if let Some(release) = &opts.release
            && !RELEASES.contains(&release.as_str())
        {
            return Err(LabError::BadRelease(release.clone()));
        }
        self.check_subnet_free(&subnet)?;
        let mut previous = self.state()?;
        if opts.fresh {
            if previous.is_some() {
                self.down(true)?;
            }
            previous = None;
        }
        if let Some(prev) = &previous
            && prev.subnet != subnet.to_string()
            && prev.any_running()
        {
            return Err(LabError::Several(format!(
                "lab {} is up on subnet {}, not {subnet}\n  hint: run `clou lab down` first",
                self.name, prev.subnet
            )));
        }

        let mirror = mirror::find()?;
        let release_of =
            |h: &crate::inventory::Host| opts.release.clone().unwrap_or_else(|| h.release.clone());
        let spare_release = |name: &str| {
            opts.release.clone().unwrap_or_else(|| {
                inventory.lab.spares[name]
                    .release
                    .clone()
                    .unwrap_or_else(|| crate::inventory::DEFAULT_RELEASE.to_owned())
            })
        };
        for name in inventory.lab.spares.keys() {
            if inventory.host(name).is_some() {
                return Err(LabError::Several(format!(
                    "lab.spares: {name} is a host of the inventory already\n  \
                     hint: a spare stands for a server not yet onboarded: give it another name"
                )));
            }
        }
        let mut releases: BTreeSet<String> = inventory.hosts.iter().map(release_of).collect();
        releases.extend(inventory.lab.spares.keys().map(|n| spare_release(n)));
        let images: BTreeMap<String, PathBuf> =
            parallel(releases.iter().cloned().collect(), |release| {
                image::ensure(&self.root, &release, &mirror).map(|p| (release, p))
            })?
            .into_iter()
            .collect();
        // Built once here: the per-release repositories share them.
        labdeb::build_all(&self.repo_dir().join("pool/lab"))?;
        let work = self.dir().join("work");
        // What the roles of a release's hosts install must be installable
        // in the lab too (and only that: a package one release lacks must
        // not stop a lab whose hosts on that release do not use it).
        let roles = crate::role::Roles::load(&inventory.roles_path).ok();
        let packages_of = |release: &str| {
            let mut packages = inventory.lab.packages.clone();
            if let Some(roles) = &roles {
                let used = artifacts::used_roles(inventory, roles, |h| release_of(h) == release);
                for name in crate::plan::declared_packages(roles, &used) {
                    if !packages.contains(&name) && !name.starts_with("clou-lab-") {
                        packages.push(name);
                    }
                }
            }
            packages
        };
        parallel(images.iter().collect(), |(release, image)| {
            repo::ensure(
                &self.repo_dir(),
                &work,
                release,
                image,
                &mirror,
                &packages_of(release),
            )
        })?;
        // The applications' releases, from the roles' stand-ins.
        let artifacts = match &roles {
            Some(roles) => {
                artifacts::build_all(&self.repo_dir(), &artifacts::sources(inventory, roles))?
            }
            None => Vec::new(),
        };
        self.ensure_key()?;
        prereq::raise_inotify_limit(inventory.hosts.len())?;
        let bridge = self.bridge();
        net::ensure_bridge(&bridge, &subnet)?;

        // Plan every host: keep what a host had (address, image) so that a
        // second `up` finds the same machine.
        let mut hosts = Vec::new();
        let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
        if let Some(prev) = &previous {
            used.extend(prev.hosts.iter().map(|h| h.address));
        }
        let mut next_index = 0;
        let wanted = inventory
            .hosts
            .iter()
            .map(|h| (h.name.clone(), release_of(h), false))
            .chain(
                inventory
                    .lab
                    .spares
                    .keys()
                    .map(|name| (name.clone(), spare_release(name), true)),
            );
        for (index, (name, wanted_release, spare)) in wanted.enumerate() {
            let prev = previous.as_ref().and_then(|p| p.host(&name));
            let address = match prev {
                Some(p) => p.address,
                None => loop {
                    let candidate = subnet.host(next_index)?;
                    next_index += 1;
                    if used.insert(candidate) {
                        break candidate;
                    }
                },
            };
            let release = prev.map(|p| p.release.clone()).unwrap_or(wanted_release);
            let image = match prev {
                Some(p) if p.image.is_dir() => p.image.clone(),
                _ => images[&release].clone(),
            };
            hosts.push(HostState {
                release,
                address,
                image,
                dir: self.dir().join("hosts").join(&name),
                netns: format!("clou-{}-{}", self.name, name),
                veth: format!("clv{}{index:03}", self.tag()),
                cgroups: host::cgroup_dirs(&self.name, &name),
                disks: Vec::new(),
                pid: prev
                    .and_then(|p| p.pid)
                    .filter(|p| host::is_running(*p, &name)),
                spare,
                name,
            });
        }
        let peers: Vec<(String, Ipv4Addr)> =
            hosts.iter().map(|h| (h.name.clone(), h.address)).collect();
        let key_pub = std::fs::read_to_string(self.key_path().with_extension("pub"))
            .map_err(io_err("reading", &self.key_path()))?;
        let repo_dir = self.repo_dir();
        let disk_dir = self.dir().join("disks");
        // Each host reports what it got to, failed or not: a host that
        // booted must be in the state even when another failed, or `down`
        // could not stop it.
        let booted = parallel(hosts, |mut h| {
            let disks = inventory
                .lab
                .hosts
                .get(&h.name)
                .map(|l| l.disks.clone())
                .unwrap_or_default();
            let result = (|| -> Result<(), LabError> {
                h.disks = host::attach_disks(&disk_dir, &h.name, &disks)?;
                if h.pid.is_none() {
                    let ov = overlay::Overlay::new(&h.image, &h.dir);
                    ov.mount()?;
                    host::prepare(&h, &peers, (!h.spare).then_some(key_pub.as_str()))?;
                    net::ensure_host_link(&h.netns, &h.veth, &bridge, h.address)?;
                    h.pid = Some(host::boot(&h, &repo_dir)?);
                }
                Ok(())
            })();
            Ok((h, result))
        })?;
        let mut hosts = Vec::new();
        let mut failures = Vec::new();
        for (h, result) in booted {
            if let Err(err) = result {
                failures.push(format!("{}: {err}", h.name));
            }
            hosts.push(h);
        }
        // Hosts no longer in the inventory stay recorded until `down`.
        if let Some(prev) = &previous {
            for h in &prev.hosts {
                if !hosts.iter().any(|k| k.name == h.name) {
                    hosts.push(h.clone());
                }
            }
        }
        let state = LabState {
            name: self.name.clone(),
            inventory: inventory
                .path
                .canonicalize()
                .unwrap_or_else(|_| inventory.path.clone()),
            subnet: subnet.to_string(),
            bridge,
            hosts,
        };
        state.save(&self.state_path())?;
        if !failures.is_empty() {
            return Err(LabError::Several(format!(
                "{}\n  hint: `clou lab down` stops the hosts that did start",
                failures.join("\n")
            )));
        }
        self.write_known_hosts(&state)?;
        let mut vars = artifacts::vars(&artifacts);
        // The base role lets this key in as root beside the admins' keys:
        // it is how clou reaches the replicas.
        vars.insert(
            "lab_key".into(),
            serde_json::Value::String(key_pub.trim().to_owned()),
        );
        self.write_inventory_overlay(&state, &vars)?;
        self.wait_for_ssh(&state, opts.timeout)?;
        Ok(state)
    }

    /// Refuses a subnet that another running lab's bridge already has.
    fn check_subnet_free(&self, subnet: &net::Subnet) -> Result<(), LabError> {
        let Ok(rd) = std::fs::read_dir(self.root.join("labs")) else {
            return Ok(());
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == self.name {
                continue;
            }
            if let Ok(Some(other)) = LabState::load(&entry.path().join("state.json"))
                && other.subnet == subnet.to_string()
                && other.any_running()
            {
                return Err(LabError::SubnetInUse {
                    other: name,
                    subnet: other.subnet,
                });
            }
        }
        Ok(())
    }

    fn ensure_key(&self) -> Result<(), LabError> {
        let key = self.key_path();
        if key.exists() {
            return Ok(());
        }
        if let Some(dir) = key.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        process::run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .args(["-C", &format!("clou-lab-{}", self.name)])
                .arg("-f")
                .arg(&key),
        )?;
        Ok(())
    }

    fn write_known_hosts(&self, state: &LabState) -> Result<(), LabError> {
        let mut text = String::new();
        // A spare's key is not known: onboarding checks and records it.
        for h in state.hosts.iter().filter(|h| !h.spare) {
            for key in host::host_keys(h)? {
                text.push_str(&format!("{},{} {key}\n", h.name, h.address));
            }
        }
        let path = self.known_hosts_path();
        std::fs::write(&path, text).map_err(io_err("writing", &path))
    }

    fn write_inventory_overlay(
        &self,
        state: &LabState,
        vars: &BTreeMap<String, serde_json::Value>,
    ) -> Result<(), LabError> {
        let text = overlay_text(state, &self.known_hosts_path(), &self.key_path(), vars);
        let path = self.inventory_path();
        std::fs::write(&path, text).map_err(io_err("writing", &path))
    }

    /// OpenSSH client options that reach lab hosts with the lab key and
    /// check their keys strictly against the lab known_hosts.
    pub fn ssh_command(&self, address: Ipv4Addr) -> Command {
        openssh(
            &self.known_hosts_path(),
            &self.key_path(),
            &format!("root@{address}"),
        )
    }

    fn wait_for_ssh(&self, state: &LabState, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        let results = parallel(state.hosts.clone(), |h| {
            let mut last = String::new();
            while Instant::now() < deadline {
                // A spare has no lab key: its banner is all there is to see.
                if h.spare {
                    if ssh_banner(h.address) {
                        return Ok(Ok(()));
                    }
                    last = "no SSH banner".into();
                } else {
                    match process::run(self.ssh_command(h.address).arg("true")) {
                        Ok(_) => return Ok(Ok(())),
                        Err(err) => last = err.detail,
                    }
                }
                if !h.is_running() {
                    return Ok(Err((h.name.clone(), "its container stopped".to_owned())));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            Ok(Err((h.name.clone(), last)))
        })?;
        let failed: Vec<(String, String)> = results.into_iter().filter_map(Result::err).collect();
        if failed.is_empty() {
            return Ok(());
        }
        Err(LabError::NoAnswer {
            hosts: failed.iter().map(|(h, _)| h.clone()).collect(),
            detail: failed
                .iter()
                .map(|(h, d)| format!("{h}: {d}"))
                .collect::<Vec<_>>()
                .join("; "),
            dir: self.dir().join("hosts"),
        })
    }

    /// Stops every host `up` started (by PID), unmounts their filesystems,
    /// detaches their disks, removes namespaces, links, cgroups and the
    /// bridge. With `purge`, also deletes the hosts' filesystems and disks.
    pub fn down(&self, purge: bool) -> Result<(), LabError> {
        let Some(mut state) = self.state()? else {
            return Err(LabError::NotUp(self.name.clone()));
        };
        let results = parallel(state.hosts.clone(), |h| Ok(self.stop_host(&h, purge)))?;
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        net::remove_bridge(&state.bridge)?;
        for h in &mut state.hosts {
            h.pid = None;
        }
        if !errors.is_empty() {
            state.save(&self.state_path())?;
            return Err(LabError::Several(errors.join("\n")));
        }
        if purge {
            for path in [
                self.dir().join("hosts"),
                self.dir().join("disks"),
                self.dir().join("work"),
            ] {
                if path.exists() {
                    std::fs::remove_dir_all(&path).map_err(io_err("removing", &path))?;
                }
            }
            for path in [
                self.state_path(),
                self.known_hosts_path(),
                self.inventory_path(),
            ] {
                let _ = std::fs::remove_file(path);
            }
        } else {
            state.save(&self.state_path())?;
        }
        Ok(())
    }

    fn stop_host(&self, h: &HostState, purge: bool) -> Result<(), LabError> {
        if let Some(pid) = h.pid {
            host::stop(pid, &h.name, Duration::from_secs(30))?;
        }
        for mount in overlay::mounts_under(&h.dir) {
            overlay::unmount(&mount)?;
        }
        for disk in &h.disks {
            host::detach_disk(disk)?;
        }
        net::remove_host_link(&h.netns, &h.veth)?;
        host::remove_cgroups(&h.cgroups);
        if purge && h.dir.exists() {
            std::fs::remove_dir_all(&h.dir).map_err(io_err("removing", &h.dir))?;
        }
        Ok(())
    }

    /// Each host: release, address, whether its container runs and whether
    /// it answers on the SSH port.
    pub fn status(&self) -> Result<Vec<HostStatus>, LabError> {
        let state = self
            .state()?
            .ok_or_else(|| LabError::NotUp(self.name.clone()))?;
        parallel(state.hosts, |h| {
            let running = h.is_running();
            let ssh = running && ssh_banner(h.address);
            Ok(HostStatus {
                spare_password: h.spare.then(|| h.password_path()),
                name: h.name,
                release: h.release,
                address: h.address,
                running,
                ssh,
            })
        })
    }

    /// The lab host called `name`.
    pub fn host(&self, name: &str) -> Result<HostState, LabError> {
        let state = self
            .state()?
            .ok_or_else(|| LabError::NotUp(self.name.clone()))?;
        state
            .host(name)
            .cloned()
            .ok_or_else(|| LabError::UnknownHost(name.to_owned()))
    }
}

/// The lab inventory overlay: the inventory of `state` with its hosts at
/// their lab addresses, the lab's SSH files, and the lab's own `vars`
/// (where the application archives are).
fn overlay_text(
    state: &LabState,
    known_hosts: &Path,
    key: &Path,
    vars: &BTreeMap<String, serde_json::Value>,
) -> String {
    let mut text = format!(
        "# Written by `clou lab up`: the lab replica of {}.\n\
         # Same hosts, groups and vars; these addresses, keys and known_hosts.\n\
         overlay_of: {}\nknown_hosts: {}\nidentity: {}\nhosts:\n",
        state.inventory.display(),
        state.inventory.display(),
        known_hosts.display(),
        key.display()
    );
    for h in state.hosts.iter().filter(|h| !h.spare) {
        text.push_str(&format!(
            "  {}: {{address: {}, port: 22, user: root}}\n",
            h.name, h.address
        ));
    }
    if !vars.is_empty() {
        text.push_str(
            "# The lab's own key and its stand-in application releases (never production's).\nvars:\n",
        );
        for (name, value) in vars {
            // JSON is valid YAML: strings come out quoted and escaped.
            text.push_str(&format!("  {name}: {value}\n"));
        }
    }
    text
}

/// The OpenSSH client, reaching `destination` with `identity` only and
/// checking its host key strictly against `known_hosts` only.
pub fn openssh(known_hosts: &Path, identity: &Path, destination: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
    ])
    .args([
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=3",
    ])
    .arg("-o")
    .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
    .args(["-o", "IdentitiesOnly=yes", "-i"])
    .arg(identity)
    .arg(destination);
    cmd
}

/// Whether something answers with an SSH banner on port 22.
fn ssh_banner(address: Ipv4Addr) -> bool {
    use std::io::Read;
    let addr = SocketAddr::from((address, 22));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-")
}

/// Runs `f` on every item in its own thread; all errors are reported.
fn parallel<T, R, F>(items: Vec<T>, f: F) -> Result<Vec<R>, LabError>
where
    T: Send,
    R: Send,
    F: Fn(T) -> Result<R, LabError> + Sync,
{
    let results: Vec<Result<R, LabError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(|| f(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(LabError::Several("a lab worker thread panicked".into()))
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(LabError::Several(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_come_from_the_inventory_file() {
        assert_eq!(
            Lab::name_for(Path::new("inventory/girofle.yaml")),
            "girofle"
        );
        assert_eq!(Lab::name_for(Path::new("/x/My_Lab.yaml")), "my-lab");
    }

    #[test]
    fn interface_names_fit_in_fifteen_characters() {
        let lab = Lab::new(Path::new("/tmp"), "a-rather-long-name-x").expect("valid");
        assert!(lab.bridge().len() <= 15);
        assert!(format!("clv{}{:03}", lab.tag(), 243).len() <= 15);
    }

    #[test]
    fn the_overlay_carries_the_lab_artifacts_as_lab_vars() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("fleet.yaml");
        std::fs::write(
            &base,
            "vars: {nextcloud_version: 29.0.4}\n\
             hosts:\n  nc: {address: 192.0.2.1, vars: {nextcloud_url: \"https://upstream/x\"}}\n",
        )
        .expect("write");
        let state = LabState {
            name: "t".into(),
            inventory: base.clone(),
            subnet: "10.99.0.0/24".into(),
            bridge: "clb-x".into(),
            hosts: vec![HostState {
                name: "nc".into(),
                release: "bookworm".into(),
                address: Ipv4Addr::new(10, 99, 0, 2),
                image: PathBuf::from("/img"),
                dir: PathBuf::from("/h"),
                netns: "n".into(),
                veth: "v".into(),
                cgroups: Vec::new(),
                disks: Vec::new(),
                pid: None,
                spare: false,
            }],
        };
        let artifact = artifacts::Artifact {
            app: "nextcloud".into(),
            version: "29.0.4-lab".into(),
            file_name: "nextcloud-29.0.4-lab.tar.gz".into(),
            sha256: "0f".repeat(32),
        };
        let text = overlay_text(
            &state,
            Path::new("/lab/known_hosts"),
            Path::new("/lab/key"),
            &artifacts::vars(&[artifact]),
        );
        let path = dir.path().join("inventory.yaml");
        std::fs::write(&path, &text).expect("write");
        let lab = Inventory::load(&path).expect("the overlay loads");
        let host = lab.host("nc").expect("host");
        assert_eq!(host.address, "10.99.0.2");
        let vars = crate::vars::merge(&lab, host, &[], &[], &BTreeMap::new());
        let shown = |name: &str| {
            let var = &vars[name];
            (var.value.clone(), var.origin.to_string())
        };
        // Above the inventory's and the host's own: the lab's archive.
        assert_eq!(
            shown("nextcloud_version"),
            (serde_json::json!("29.0.4-lab"), "lab vars".to_owned())
        );
        assert_eq!(
            shown("nextcloud_url"),
            (
                serde_json::json!("file:///srv/clou-lab/apt/artifacts/nextcloud-29.0.4-lab.tar.gz"),
                "lab vars".to_owned()
            )
        );
        assert_eq!(shown("nextcloud_sha256").0, "0f".repeat(32).as_str());

        // Without artifacts, no `vars:` at all.
        let plain = overlay_text(&state, Path::new("/k"), Path::new("/i"), &BTreeMap::new());
        assert!(!plain.contains("vars:"), "{plain}");
    }

    #[test]
    fn artifacts_come_from_the_roles_the_hosts_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roles_dir = dir.path().join("roles");
        for (role, yaml, stand_in) in [
            ("php", "description: x\n", true),
            ("wiki", "depends: [php]\n", true),
            ("unused", "description: x\n", true),
            ("plain", "description: x\n", false),
        ] {
            let d = roles_dir.join(role);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("role.yaml"), yaml).expect("write");
            if stand_in {
                std::fs::create_dir_all(d.join(artifacts::SOURCE_DIR)).expect("mkdir");
            }
        }
        let inv = dir.path().join("inv.yaml");
        std::fs::write(
            &inv,
            format!(
                "roles_path: [{}]\ngroups:\n  g: {{hosts: [a], roles: [plain]}}\n\
                 hosts:\n  a: {{address: 192.0.2.1, roles: [wiki]}}\n",
                roles_dir.display()
            ),
        )
        .expect("write");
        let inventory = Inventory::load(&inv).expect("loads");
        let roles = crate::role::Roles::load(&inventory.roles_path).expect("roles");
        let found: Vec<String> = artifacts::sources(&inventory, &roles).into_keys().collect();
        assert_eq!(found, ["php", "wiki"]);
    }

    #[test]
    fn bad_lab_names_are_refused() {
        assert!(Lab::new(Path::new("/tmp"), "Bad Name").is_err());
        assert!(Lab::new(Path::new("/tmp"), "").is_err());
    }
}
