//! One lab host: its root filesystem, files, disks, and the systemd-nspawn
//! process that boots it.
//!
//! systemd-nspawn runs with `--register=no --keep-unit` because this machine
//! has no systemd to register with. It then stays in the cgroup it was
//! started in, so each host is started in a cgroup of its own: hosts that
//! share one can hang each other's shutdown.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use super::state::{DiskState, HostState};
use super::{LabError, io_err, repo};
use crate::process;

/// Device names extra disks get inside a host, in order.
const DISK_NAMES: &[&str] = &["vdb", "vdc", "vdd", "vde", "vdf", "vdg", "vdh", "vdi"];

/// Writes the files that make the overlay this host: name, addresses of
/// its peers, machine id, SSH host keys, the lab key, apt source.
pub fn prepare(
    host: &HostState,
    peers: &[(String, Ipv4Addr)],
    lab_key_pub: Option<&str>,
) -> Result<(), LabError> {
    let root = host.rootfs();
    let write = |rel: &str, text: &str, mode: u32| -> Result<(), LabError> {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        std::fs::write(&path, text).map_err(io_err("writing", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &path))
    };
    write("etc/hostname", &format!("{}\n", host.name), 0o644)?;
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        host.name
    );
    for (name, addr) in peers {
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
    write("etc/hosts", &hosts, 0o644)?;
    let machine_id = root.join("etc/machine-id");
    if std::fs::read_to_string(&machine_id)
        .map(|s| s.trim().len() != 32)
        .unwrap_or(true)
    {
        write("etc/machine-id", &format!("{}\n", random_hex(16)?), 0o444)?;
    }
    let first_boot = !root.join("etc/ssh/ssh_host_ed25519_key").exists();
    if first_boot {
        // ssh-keygen -A makes every key type sshd's defaults expect.
        process::run(Command::new("ssh-keygen").arg("-A").arg("-f").arg(&root))?;
    }
    match lab_key_pub {
        Some(key) => {
            std::fs::create_dir_all(root.join("root/.ssh")).map_err(io_err("creating", &root))?;
            std::fs::set_permissions(
                root.join("root/.ssh"),
                std::fs::Permissions::from_mode(0o700),
            )
            .map_err(io_err("chmod", &root))?;
            write("root/.ssh/authorized_keys", key, 0o600)?;
        }
        // Only once: after onboarding, the spare is what clou made it.
        None if first_boot => deliver_as_a_provider_does(host)?,
        None => {}
    }
    write(
        "etc/apt/sources.list",
        &repo::source_line(&host.release),
        0o644,
    )?;
    // Units that drive hardware a container does not have would fail and
    // leave every lab host "degraded"; on a real server they run.
    for unit in HARDWARE_UNITS {
        write(
            &format!("etc/systemd/system/{unit}.d/clou-lab.conf"),
            "# Written by clou lab: this unit needs hardware a lab host lacks.\n\
             [Unit]\nConditionVirtualization=!container\n",
            0o644,
        )?;
    }
    Ok(())
}

/// Makes a spare look like a rented server on delivery day: root logs in
/// with a password (random, kept in the lab's directory for the admin to
/// "receive"), as the providers' cloud-init drop-in allows, and no key.
fn deliver_as_a_provider_does(host: &HostState) -> Result<(), LabError> {
    let root = host.rootfs();
    let password = random_hex(12)?;
    let path = host.password_path();
    std::fs::write(&path, format!("{password}\n")).map_err(io_err("writing", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod", &path))?;
    let mut chpasswd = Command::new("chpasswd");
    chpasswd
        .arg("--root")
        .arg(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = chpasswd
        .spawn()
        .map_err(io_err("running chpasswd for", &root))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(format!("root:{password}\n").as_bytes())
            .map_err(io_err("writing to chpasswd for", &root))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err("running chpasswd for", &root))?;
    if !out.status.success() {
        return Err(LabError::Several(format!(
            "chpasswd --root {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let dropin = root.join("etc/ssh/sshd_config.d/50-cloud-init.conf");
    if let Some(parent) = dropin.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    }
    std::fs::write(
        &dropin,
        "# As a provider's cloud-init leaves it: root logs in with the password\n\
         # sent by mail, until the new owner hardens the server.\n\
         PasswordAuthentication yes\nPermitRootLogin yes\n",
    )
    .map_err(io_err("writing", &dropin))?;
    Ok(())
}

/// Units skipped in lab hosts (see `prepare`).
const HARDWARE_UNITS: &[&str] = &["nvmf-autoconnect.service", "openipmi.service"];

/// The host's public SSH host keys, as `type base64` lines.
pub fn host_keys(host: &HostState) -> Result<Vec<String>, LabError> {
    let dir = host.rootfs().join("etc/ssh");
    let mut keys = Vec::new();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let path = dir.join(format!("ssh_host_{kind}_key.pub"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut words = text.split_whitespace();
            if let (Some(t), Some(k)) = (words.next(), words.next()) {
                keys.push(format!("{t} {k}"));
            }
        }
    }
    if keys.is_empty() {
        return Err(LabError::Io {
            what: format!("reading the SSH host keys of {}", host.name),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no host key"),
        });
    }
    Ok(keys)
}

/// Checks a host's disk list: no more disks than device names, and sizes
/// that parse.
pub fn check_disks(host: &str, sizes: &[String]) -> Result<(), LabError> {
    if sizes.len() > DISK_NAMES.len() {
        return Err(LabError::BadDisk(format!(
            "{host}: at most {} extra disks",
            DISK_NAMES.len()
        )));
    }
    match sizes.iter().find(|s| parse_size(s).is_none()) {
        Some(bad) => Err(LabError::BadDisk(format!("{host}: size {bad:?}"))),
        None => Ok(()),
    }
}

/// Attaches the host's extra disks to loop devices (creating the backing
/// files the first time); returns them.
pub fn attach_disks(
    disk_dir: &Path,
    host: &str,
    sizes: &[String],
) -> Result<Vec<DiskState>, LabError> {
    check_disks(host, sizes)?;
    std::fs::create_dir_all(disk_dir).map_err(io_err("creating", disk_dir))?;
    let mut out = Vec::new();
    for (size, name) in sizes.iter().zip(DISK_NAMES) {
        let bytes =
            parse_size(size).ok_or_else(|| LabError::BadDisk(format!("{host}: size {size:?}")))?;
        let image = disk_dir.join(format!("{host}-{name}.img"));
        if !image.exists() {
            let file = File::create(&image).map_err(io_err("creating", &image))?;
            file.set_len(bytes).map_err(io_err("sizing", &image))?;
        }
        let device = match loop_of(&image)? {
            Some(dev) => dev,
            None => process::stdout(
                Command::new("losetup")
                    .args(["--find", "--show", "--nooverlap"])
                    .arg(&image),
            )?
            .trim()
            .to_owned(),
        };
        out.push(DiskState {
            image,
            device,
            target: format!("/dev/{name}"),
        });
    }
    Ok(out)
}

/// Detaches a disk's loop device, if it is still attached to its file.
pub fn detach_disk(disk: &DiskState) -> Result<(), LabError> {
    if let Some(dev) = loop_of(&disk.image)? {
        process::run(Command::new("losetup").args(["--detach", &dev]))?;
    }
    Ok(())
}

/// The loop device backed by `image`, if any.
fn loop_of(image: &Path) -> Result<Option<String>, LabError> {
    let out = process::stdout(Command::new("losetup").arg("--associated").arg(image))?;
    Ok(out
        .lines()
        .next()
        .and_then(|l| l.split(':').next())
        .map(str::to_owned)
        .filter(|s| !s.is_empty()))
}

/// `512M`, `2G`, `1T` or a byte count.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (num, mult) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 1u64 << 10),
        'M' | 'm' => (&text[..text.len() - 1], 1 << 20),
        'G' | 'g' => (&text[..text.len() - 1], 1 << 30),
        'T' | 't' => (&text[..text.len() - 1], 1 << 40),
        _ => (text, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult).filter(|b| *b >= 1 << 20)
}

/// Cgroup directories a host is started in: one per hierarchy systemd
/// looks at (the named `systemd` one and the unified one), or a single one
/// on a machine with only cgroup v2.
pub fn cgroup_dirs(lab: &str, host: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let rel = Path::new("clou-lab").join(lab).join(host);
    if base.join("cgroup.controllers").exists() {
        return vec![base.join(rel)];
    }
    ["systemd", "unified"]
        .iter()
        .map(|h| base.join(h))
        .filter(|p| p.is_dir())
        .map(|p| p.join(&rel))
        .collect()
}

/// Removes a host's cgroups, deepest first (nspawn leaves sub-groups).
pub fn remove_cgroups(dirs: &[PathBuf]) {
    fn rm(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for entry in rd.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rm(&entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for dir in dirs {
        rm(dir);
        // Also the per-lab parents, once empty.
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
            if let Some(top) = parent.parent() {
                let _ = std::fs::remove_dir(top);
            }
        }
    }
}

/// Runs its arguments (systemd-nspawn) again each time they exit with
/// 133, nspawn's "the container rebooted"; passes SIGTERM on.
const SUPERVISOR: &str = "trap 'kill -TERM \"$child\" 2>/dev/null; wait \"$child\"; exit 0' TERM; \
     while :; do \"$@\" & child=$!; wait \"$child\"; rc=$?; \
     [ \"$rc\" -eq 133 ] || exit \"$rc\"; echo 'clou lab: the host rebooted' >&2; done";

/// Starts systemd-nspawn for the host in its own cgroups and process
/// group; returns its PID. The console goes to `console.log`.
pub fn boot(host: &HostState, repo_dir: &Path) -> Result<u32, LabError> {
    let mut procs = Vec::new();
    for dir in &host.cgroups {
        std::fs::create_dir_all(dir).map_err(io_err("creating the cgroup", dir))?;
        procs.push(
            std::ffi::CString::new(dir.join("cgroup.procs").as_os_str().as_encoded_bytes())
                .map_err(|_| LabError::Io {
                    what: format!("cgroup path {}", dir.display()),
                    error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"),
                })?,
        );
    }
    let console = host.dir.join("console.log");
    let log = File::create(&console).map_err(io_err("creating", &console))?;
    let log_err = log.try_clone().map_err(io_err("opening", &console))?;
    // nspawn exits with 133 when the host reboots (`systemctl reboot`, a
    // kernel upgrade rehearsed with `clou upgrade --reboot`): a small shell
    // boots it again, as systemd-nspawn@.service does on a real machine.
    // SIGTERM to the shell is passed on to nspawn (an orderly poweroff).
    let mut cmd = Command::new("sh");
    cmd.args(["-c", SUPERVISOR, "clou-lab-host", "systemd-nspawn"]);
    cmd.args(["--quiet", "--register=no", "--keep-unit", "--boot"])
        .arg(format!("--directory={}", host.rootfs().display()))
        .arg(format!("--machine={}", host.name))
        .arg(format!(
            "--network-namespace-path=/run/netns/{}",
            host.netns
        ))
        .args([
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=read-only",
            // The firewall (nftables) needs it, and the host has a network
            // namespace of its own: what it changes there stays there
            // (`--private-network` grants the same).
            "--capability=CAP_NET_ADMIN",
        ])
        .arg(format!(
            "--bind-ro={}:{}",
            repo_dir.display(),
            repo::MOUNT_POINT
        ));
    for disk in &host.disks {
        cmd.arg(format!("--bind={}:{}", disk.device, disk.target));
    }
    // Multi-device btrfs (RAID1 on the extra disks) registers its devices
    // through this control node.
    if !host.disks.is_empty() && Path::new("/dev/btrfs-control").exists() {
        cmd.arg("--bind=/dev/btrfs-control");
    }
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let argv = process::display(&cmd);
    // Join the host's cgroups between fork and exec, so nspawn never runs
    // anywhere else; only open/write/close, which are async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            for path in &procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0\n".as_ptr().cast(), 2);
                libc::close(fd);
                if written < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        LabError::Command(process::CommandError {
            argv,
            status: None,
            detail: e.to_string(),
        })
    })?;
    Ok(child.id())
}

/// Whether `pid` is the process that boots `machine` (the shell that runs
/// systemd-nspawn, or nspawn itself for hosts booted before it), and not a
/// recycled PID of something else.
pub fn is_running(pid: u32, machine: &str) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false;
    };
    // The state follows the parenthesised command name; Z is a zombie.
    if stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        .unwrap_or(true)
    {
        reap(pid);
        return false;
    }
    let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let want = format!("--machine={machine}");
    let nspawn = |a: &&[u8]| a.ends_with(b"systemd-nspawn");
    let boots = args.first().is_some_and(nspawn)
        || (args.first() == Some(&&b"sh"[..]) && args.get(3) == Some(&&b"clou-lab-host"[..]));
    boots && args.iter().any(nspawn) && args.contains(&want.as_bytes())
}

/// Collects the exit status when the host process is our own child.
fn reap(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }
}

/// Shuts the host down: SIGTERM makes nspawn ask the host's systemd for
/// an orderly poweroff; after `grace`, SIGKILL. Only signals `pid` if it is
/// still the nspawn of this host.
pub fn stop(pid: u32, machine: &str, grace: Duration) -> Result<(), LabError> {
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(());
    };
    let target = Pid::from_raw(raw);
    for (signal, wait) in [
        (Signal::SIGTERM, grace),
        (Signal::SIGKILL, Duration::from_secs(10)),
    ] {
        if !is_running(pid, machine) {
            return Ok(());
        }
        // SIGKILL goes to the whole process group (shell and nspawn).
        let _ = match signal {
            Signal::SIGKILL => kill(Pid::from_raw(-raw), signal),
            _ => kill(target, signal),
        };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if !is_running(pid, machine) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if is_running(pid, machine) {
        return Err(LabError::StillRunning {
            host: machine.to_owned(),
            pid,
        });
    }
    Ok(())
}

fn random_hex(bytes: usize) -> Result<String, LabError> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_err("reading", Path::new("/dev/urandom")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1k"), None, "too small to be a disk");
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn disk_lists_are_checked_before_anything_is_made() {
        assert!(check_disks("web", &["2G".into(), "512M".into()]).is_ok());
        let err = check_disks("web", &["2G".into(), "huge".into()]).unwrap_err();
        assert!(err.to_string().contains("web: size \"huge\""), "{err}");
        assert!(check_disks("web", &vec!["1G".to_owned(); 9]).is_err());
    }

    #[test]
    fn our_own_process_is_not_mistaken_for_a_host() {
        assert!(!is_running(std::process::id(), "nextcloud-data"));
    }
}
