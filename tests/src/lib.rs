//! The lab harness of the end-to-end tests.
//!
//! # Layout
//!
//! [`TestLab`] boots a lab from an inventory by running the `clou` binary
//! as a user would, then lets a test reach its hosts with the OpenSSH
//! client (not clou's own transport), so that what a test checks on a host
//! is checked independently of clou. [`smtp::Sink`] is a mail sink on the
//! lab's bridge, where a relay's mail lands. [`require_lab`] says plainly why the
//! lab cannot run here, rather than letting the tests fail obscurely.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clou::lab::Lab;

/// Set to `1` to skip the end-to-end tests (and only then).
pub const SKIP_VAR: &str = "CLOU_SKIP_LAB";

/// Whether the user asked to skip the lab tests.
pub fn skip_requested() -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|v| v == "1")
}

/// Why the lab cannot run on this machine, if it cannot.
pub fn require_lab() -> Result<(), String> {
    if let Err(err) = clou::lab::prereq::require_root() {
        return Err(format!(
            "the end-to-end tests boot lab hosts and {err}\n\
             (set {SKIP_VAR}=1 to skip them explicitly)"
        ));
    }
    let missing = clou::lab::prereq::missing_packages();
    if !missing.is_empty() && !clou::process::on_path("apt-get") {
        return Err(format!(
            "the lab needs the Debian packages {} and this machine has no apt-get to install them\n\
             (set {SKIP_VAR}=1 to skip the end-to-end tests explicitly)",
            missing.join(" ")
        ));
    }
    Ok(())
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Builds the `clou` binary (a test crate cannot see another package's
/// binaries) and returns its path.
pub fn clou_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("CLOU_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "clou",
            "--bin",
            "clou",
            "--message-format=json",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo to build clou: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building clou failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The last compiler-artifact message for the clou binary names its path.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "clou")
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| "cargo built clou but did not say where".to_owned())
}

/// The script behind [`TestLab::listing`], for hosts reached otherwise.
pub const LISTING: &str = r#"set -e
find /etc /usr /opt /srv /home /root /var/lib -xdev \( -path /var/lib/clou -o -path /var/lib/systemd -o -path /var/lib/apt/lists -o -path /var/lib/dpkg/triggers -o -path /var/lib/private -o -path /var/lib/prometheus/node-exporter \) -prune -o -printf '%p %m %u %g %y %l\n' | sort
find /etc /usr /opt /srv /home /root -xdev -type f -printf '%p %s %i %C@ %T@\n' | sort
systemctl list-units --type=service --state=active --no-legend --plain | awk '{print $1}' | grep -v '^user\(-runtime-dir\)\?@' | sort
systemctl list-unit-files --state=enabled --no-legend | awk '{print $1}' | sort"#;

/// A lab booted for the tests.
#[derive(Debug)]
pub struct TestLab {
    pub clou: PathBuf,
    pub inventory: PathBuf,
    pub lab: Lab,
}

impl TestLab {
    /// The lab of `inventory` (relative to the workspace), named `name`.
    pub fn new(inventory: &str, name: &str) -> Result<TestLab, String> {
        let lab = Lab::new(&Lab::default_root(), name).map_err(|e| e.to_string())?;
        Ok(TestLab {
            clou: clou_binary()?,
            inventory: workspace_root().join(inventory),
            lab,
        })
    }

    /// Runs `clou ARGS` as a user would, with this lab's inventory and name.
    pub fn clou(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.clou);
        // The lab options go right after the (sub)command, before any
        // trailing command of `lab ssh`.
        let split = match args.first() {
            Some(&"lab") | Some(&"hosts") | Some(&"disk") => 2.min(args.len()),
            Some(&"demo") | Some(&"apply") | Some(&"inventory") | Some(&"status")
            | Some(&"usage") | Some(&"upgrade") => 1,
            _ => 0,
        };
        cmd.args(&args[..split]);
        if split > 0 {
            cmd.arg("--inventory")
                .arg(&self.inventory)
                .args(["--lab", &self.lab.name]);
        }
        cmd.args(&args[split..]);
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.clou.display()))
    }

    /// Like [`TestLab::clou`], and panics with clou's stderr unless it succeeds.
    pub fn clou_ok(&self, args: &[&str]) -> String {
        let out = self.clou(args);
        assert!(
            out.status.success(),
            "clou {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `clou apply --in-lab ARGS` against this lab.
    pub fn apply(&self, args: &[&str]) -> Applied {
        let mut full = vec!["apply", "--in-lab"];
        full.extend_from_slice(args);
        let out = self.clou(&full);
        Applied {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A listing of what a host's files are: path, mode, owner, group of
    /// everything under the directories clou may touch, and of every file
    /// its size, inode and change and modification times, plus enabled and
    /// active units. Two equal listings mean the host did not change: any
    /// write, rename into place, chmod or chown sets a new ctime (which no
    /// program can set back), so this is stricter than content hashes (a
    /// file rewritten with the same bytes is caught too) and 30 times
    /// cheaper (0.16 s against 5.8 s on a lab host). clou's own state
    /// (/var/lib/clou) and what a running system changes by itself (logs,
    /// timers' stamps, the check timer's metrics, which it renames into
    /// place and `find` can miss mid-rename; the user managers of login
    /// sessions) are left out.
    pub fn listing(&self, host: &str) -> String {
        self.ssh_ok(host, LISTING)
    }

    /// Writes, under `dir`, a production-like copy of this lab's inventory:
    /// a plain inventory (no lab overlay) with every host at its lab address,
    /// absolute roles paths, and the lab's host keys as the repository's
    /// `inventory/known_hosts`. Returns the inventory's path.
    pub fn plain_inventory(&self, dir: &Path) -> Result<PathBuf, String> {
        let io = |e: std::io::Error| e.to_string();
        std::fs::create_dir_all(dir.join("inventory")).map_err(io)?;
        std::fs::copy(
            self.lab.dir().join("known_hosts"),
            dir.join("inventory/known_hosts"),
        )
        .map_err(io)?;
        let workspace = workspace_root();
        let mut text = std::fs::read_to_string(&self.inventory)
            .map_err(io)?
            .replace(
                "roles_path: [../roles, ../../roles]",
                &format!(
                    "roles_path: [{}, {}]",
                    workspace.join("tests/roles").display(),
                    workspace.join("roles").display()
                ),
            );
        // clou's key in this copy is the lab's: root must keep taking it
        // (production's is one of the admins').
        let lab_key =
            std::fs::read_to_string(self.lab.dir().join("ssh/id_ed25519.pub")).map_err(io)?;
        text = text.replacen(
            "\nvars:\n",
            &format!("\nvars:\n  root_keys: [\"{}\"]\n", lab_key.trim()),
            1,
        );
        let state = self.state()?;
        let production =
            clou::inventory::Inventory::load(&self.inventory).map_err(|e| e.to_string())?;
        for host in &state.hosts {
            if let Some(prod) = production.host(&host.name) {
                text = text.replace(
                    &format!("address: {}\n", prod.address),
                    &format!("address: {}\n", host.address),
                );
            }
        }
        let path = dir.join("inventory/test.yaml");
        std::fs::write(&path, text).map_err(io)?;
        Ok(path)
    }

    /// Boots the lab from scratch.
    pub fn up_fresh(&self) -> Result<(), String> {
        let out = self.clou(&["lab", "up", "--fresh"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`clou lab up` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs a shell command on a lab host with the OpenSSH client, as root,
    /// checking the host key against the lab's known_hosts.
    pub fn ssh(&self, host: &str, command: &str) -> Output {
        let state = self.lab.host(host).unwrap_or_else(|e| panic!("{e}"));
        self.lab
            .ssh_command(state.address)
            .arg(command)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ssh: {e}"))
    }

    /// Like [`TestLab::ssh`]; panics unless the command succeeds, returns stdout.
    pub fn ssh_ok(&self, host: &str, command: &str) -> String {
        let out = self.ssh(host, command);
        assert!(
            out.status.success(),
            "on {host}: `{command}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lab's state as `clou lab up` recorded it.
    pub fn state(&self) -> Result<clou::lab::state::LabState, String> {
        self.lab
            .state()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the lab has no state".to_owned())
    }

    /// This machine's address on the lab's bridge (the subnet's `.1`),
    /// where a test's own servers (webhook, mail sink) listen.
    pub fn bridge(&self) -> Result<String, String> {
        let subnet = self.state()?.subnet;
        subnet
            .split('/')
            .next()
            .and_then(|net| net.rsplit_once('.'))
            .map(|(prefix, _)| format!("{prefix}.1"))
            .ok_or_else(|| format!("the lab's subnet {subnet} is not an IPv4 network"))
    }

    /// A lab host's address.
    pub fn address(&self, host: &str) -> Result<std::net::Ipv4Addr, String> {
        Ok(self.lab.host(host).map_err(|e| e.to_string())?.address)
    }

    /// Host names of the lab, in inventory order.
    pub fn hosts(&self) -> Vec<String> {
        self.lab
            .state()
            .ok()
            .flatten()
            .map(|s| {
                s.hosts
                    .into_iter()
                    .filter(|h| !h.spare)
                    .map(|h| h.name)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What one `clou apply` did, as the admin saw it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Applied {
    /// The JSON events (with `--json`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `host` event of one host (with `--json`).
    pub fn host(&self, name: &str) -> serde_json::Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == "host" && e["host"] == name)
            .unwrap_or_else(|| {
                panic!(
                    "no host event for {name} in:\n{}\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    /// Panics with everything clou said unless it exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Applied {
        assert_eq!(
            self.code,
            Some(code),
            "clou apply exited {:?}, expected {code}:\n{}\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}
