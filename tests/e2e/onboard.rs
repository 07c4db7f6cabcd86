//! `clou onboard` on the lab's spare, delta: a server as its provider
//! delivers it (root logs in with a password, no key). The admin runs clou
//! from a home of their own (their key in ~/.ssh, no agent) on a
//! production-like copy of the inventory; what the server ends up like is
//! checked with the OpenSSH client, with that key and the known_hosts clou
//! recorded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use libtest_mimic::Failed;

use crate::lab;

pub const TESTS: &[(&str, crate::Test)] = &[(
    "onboard::a_new_server_is_taken_in_with_its_password_then_only_keys_log_in",
    a_new_server_is_taken_in_with_its_password_then_only_keys_log_in,
)];

const SPARE: &str = "delta";

/// The admin's side: a home with their key, and the inventory copy.
struct Admin {
    _dir: tempfile::TempDir,
    home: PathBuf,
    key: PathBuf,
    inventory: PathBuf,
}

impl Admin {
    fn new() -> Result<Admin, Failed> {
        let lab = lab()?;
        let dir = tempfile::tempdir()?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh"))?;
        let key = home.join(".ssh/id_ed25519");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "noa@girofle", "-f"])
            .arg(&key)
            .status()?;
        assert!(made.success(), "ssh-keygen failed");
        let public = std::fs::read_to_string(key.with_extension("pub"))?;
        let inventory = lab.plain_inventory(dir.path())?;
        // Noa, a new Racine, is the one onboarding the server.
        let text = std::fs::read_to_string(&inventory)?.replacen(
            "  admins:\n",
            &format!(
                "  admins:\n    - name: noa\n      state: active\n      keys: [\"{}\"]\n",
                public.trim()
            ),
            1,
        );
        std::fs::write(&inventory, text)?;
        Ok(Admin {
            _dir: dir,
            home,
            key,
            inventory,
        })
    }

    /// `clou ARGS --inventory COPY` from the admin's home, `stdin` piped in.
    fn clou(&self, args: &[&str], stdin: &str) -> Result<Output, Failed> {
        self.clou_from(&self.home, args, stdin)
    }

    /// The same from another home (another key).
    fn clou_from(&self, home: &Path, args: &[&str], stdin: &str) -> Result<Output, Failed> {
        let lab = lab()?;
        let mut child = Command::new(&lab.clou)
            .env("HOME", home)
            .env_remove("SSH_AUTH_SOCK")
            .args(args)
            .arg("--inventory")
            .arg(&self.inventory)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            use std::io::Write;
            input.write_all(stdin.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    fn known_hosts(&self) -> PathBuf {
        self.inventory.with_file_name("known_hosts")
    }

    /// OpenSSH as `user`, with the admin's key only, checking the host key
    /// against the known_hosts clou wrote; `extra` options first.
    fn ssh(&self, user: &str, address: &str, extra: &[&str], command: &str) -> Output {
        // ssh keeps the first value of each option: `extra` comes first.
        Command::new("ssh")
            .args(extra)
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"])
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .arg("-i")
            .arg(&self.key)
            .arg(format!("{user}@{address}"))
            .arg(command)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ssh: {e}"))
    }

    /// The login methods the server offers root, as OpenSSH reports them
    /// (`-v`, trying none): `["publickey", "password"]`.
    fn methods(&self, address: &str, extra: &[&str]) -> Vec<String> {
        let mut options = vec!["-v", "-o", "PreferredAuthentications=none"];
        options.extend_from_slice(extra);
        let out = self.ssh("root", address, &options, "true");
        let text = String::from_utf8_lossy(&out.stderr);
        text.lines()
            .filter_map(|l| l.split("Authentications that can continue: ").nth(1))
            .flat_map(|m| m.trim().split(','))
            .map(str::to_owned)
            .collect()
    }

    fn ssh_ok(&self, user: &str, address: &str, command: &str) -> String {
        let out = self.ssh(user, address, &[], command);
        assert!(
            out.status.success(),
            "{user}@{address}: `{command}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The spare's host key fingerprint as its console shows it.
fn console_fingerprint(rootfs: &Path) -> Result<String, Failed> {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(rootfs.join("etc/ssh/ssh_host_ed25519_key.pub"))
        .output()?;
    assert!(out.status.success(), "ssh-keygen -lf failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The whole story: refused with a wrong fingerprint (nothing recorded),
/// onboarded with the provider's password, then keys only; the inventory
/// keeps every line it had; `clou status` finds it healthy; a second
/// onboard changes nothing on the host nor in the file.
fn a_new_server_is_taken_in_with_its_password_then_only_keys_log_in() -> Result<(), Failed> {
    let lab = lab()?;
    let spare = lab.lab.host(SPARE).map_err(|e| e.to_string())?;
    assert!(spare.spare, "{SPARE} is not a spare in the lab's state");
    let address = spare.address.to_string();
    let password = std::fs::read_to_string(spare.password_path())?;
    let fingerprint = console_fingerprint(&spare.rootfs())?;
    let admin = Admin::new()?;
    let original = std::fs::read_to_string(&admin.inventory)?;
    let known_before = std::fs::read_to_string(admin.known_hosts())?;

    // As delivered: root gets in with the password (checked with OpenSSH's
    // own view of what the server offers).
    assert_eq!(
        admin.methods(
            &address,
            &[
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null"
            ]
        ),
        ["publickey", "password"]
    );

    // A fingerprint that is not the server's: refused, nothing recorded.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = admin.clou(
        &[
            "onboard",
            SPARE,
            "--address",
            &address,
            "--fingerprint",
            wrong,
            "--password-stdin",
            "--yes",
        ],
        &password,
    )?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&fingerprint), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&admin.inventory)?, original);
    assert_eq!(std::fs::read_to_string(admin.known_hosts())?, known_before);

    // Someone whose key is no admin's: root's new keys would shut clou
    // out, so the host puts the previous sshd, firewall and keys back by
    // itself; the password still works and the inventory is unchanged.
    let stranger = admin.home.with_file_name("stranger");
    std::fs::create_dir_all(stranger.join(".ssh"))?;
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(stranger.join(".ssh/id_ed25519"))
        .status()?;
    assert!(made.success(), "ssh-keygen failed");
    let out = admin.clou_from(
        &stranger,
        &[
            "onboard",
            SPARE,
            "--address",
            &address,
            "--fingerprint",
            &fingerprint,
            "--password-stdin",
            "--yes",
            "--confirm-timeout",
            "6",
        ],
        &password,
    )?;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("was reverted"), "{said}");
    assert!(said.contains("the host answers again"), "{said}");
    assert!(said.contains("must be one of them"), "{said}");
    assert_eq!(std::fs::read_to_string(&admin.inventory)?, original);
    assert_eq!(admin.methods(&address, &[]), ["publickey", "password"]);

    // With the console's fingerprint and the provider's password: it goes
    // on from where the host is.
    let onboard = [
        "onboard",
        SPARE,
        "--address",
        &address,
        "--fingerprint",
        &fingerprint,
        "--roles",
        "hello",
        "--password-stdin",
        "--yes",
        "--confirm-timeout",
        "12",
    ];
    let out = admin.clou(&onboard, &password)?;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains(password.trim()),
        "the password shows: {said}"
    );

    // The host key is recorded where the inventory's hosts' keys are.
    let known = std::fs::read_to_string(admin.known_hosts())?;
    assert!(known.starts_with(&known_before), "{known}");
    assert!(
        known.contains(&format!("{address} ssh-ed25519 ")),
        "{known}"
    );

    // The entry is added and every line of the file is still there, in order.
    let after = std::fs::read_to_string(&admin.inventory)?;
    let mut lines = after.lines();
    for line in original.lines() {
        assert!(
            lines.any(|l| l == line),
            "line {line:?} of the inventory was lost or moved:\n{after}"
        );
    }
    assert!(
        after.contains(&format!(
            "  {SPARE}:\n    address: {address}\n    release: bookworm\n    roles: [base, hello]\n"
        )),
        "{after}"
    );

    // Noa logs in with the key and has sudo; root takes the key too.
    assert_eq!(admin.ssh_ok("noa", &address, "sudo -n id -u").trim(), "0");
    assert_eq!(admin.ssh_ok("root", &address, "hostname").trim(), SPARE);
    // Passwords are off, in sshd's effective settings and from outside.
    let effective = admin.ssh_ok("root", &address, "sshd -T");
    assert!(
        effective.contains("\npasswordauthentication no\n"),
        "{effective}"
    );
    assert!(
        effective.contains("\npermitrootlogin without-password\n")
            || effective.contains("\npermitrootlogin prohibit-password\n"),
        "{effective}"
    );
    assert_eq!(admin.methods(&address, &[]), ["publickey"]);
    // The roles' work: the firewall and the lab's service.
    admin.ssh_ok(
        "root",
        &address,
        "systemctl is-active nftables clou-lab-hello clou-check.timer",
    );

    // clou status, from the admin's side: healthy.
    let status = admin.clou(&["status", "--limit", SPARE], "")?;
    assert!(status.status.success(), "{}", text(&status));

    // Onboarding again changes nothing: not the host, not the file.
    let before = admin.ssh_ok("root", &address, clou_tests::LISTING);
    let out = admin.clou(&onboard, "")?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("onboarded already"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&admin.inventory)?, after);
    assert_eq!(admin.ssh_ok("root", &address, clou_tests::LISTING), before);
    Ok(())
}
