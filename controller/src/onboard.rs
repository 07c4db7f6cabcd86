//! `clou onboard`: a new server taken in, as its provider handed it over.
//!
//! 1. The host's entry is drafted (a copy of the inventory file with the
//!    entry added, next to it) and its plan built: bad input stops here,
//!    before any contact.
//! 2. Its host key must match `--fingerprint`, or the admin says yes to it
//!    on the terminal; it is then recorded in `inventory/known_hosts`.
//! 3. clou logs in as root with the admin's keys, or else with the
//!    provider's password (a prompt, or `--password-stdin`; never an
//!    argument), and reads the host's Debian release.
//! 4. After a yes (or `--yes`), the base role and the host's roles are
//!    applied like `clou apply` does, root's keys and sshd's settings
//!    through confirm-or-revert: kept only if clou logs in again *with a
//!    key* over a new connection, so a server is never left with its
//!    passwords off and no key that works.
//! 5. Only then is the draft moved over the inventory file. A second
//!    onboard finds the entry there and changes nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clou_protocol::Plan;

use crate::apply;
use crate::inventory::edit::{self, NewHost};
use crate::inventory::{Host, Inventory, RELEASES};
use crate::process;
use crate::ssh::known_hosts::{HostKeys, Verdict, fingerprint};
use crate::ssh::{self, ConnectError, Password, Target, config::SshConfig};

/// What `clou onboard` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub name: String,
    pub address: String,
    pub fingerprint: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub password_stdin: bool,
    pub yes: bool,
    pub confirm_timeout: u64,
}

/// The role every server has.
const BASE: &str = "base";

/// Runs `clou onboard`: exit 0 when the host is converged, reachable with
/// a key and in the inventory; 1 when the host failed; 2 on bad input.
pub fn run(inventory_path: &Path, opts: &Options) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(inventory_path).with_context(|| {
        format!(
            "cannot read the inventory {}\n  hint: pass --inventory FILE",
            inventory_path.display()
        )
    })?;
    // The inventory as it is must be sound before anything is added to it.
    Inventory::load(inventory_path)?;
    let draft = Draft::new(inventory_path, &text, opts, None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let target = Target::for_host(&draft.inventory, &draft.host, &SshConfig::load_default());

    check_host_key(&runtime, &draft.inventory, &target, opts)?;

    let keys = Arc::new(HostKeys::for_inventory(&draft.inventory));
    let (password, release) = runtime.block_on(first_login(&target, keys.clone(), opts))?;
    if !RELEASES.contains(&release.as_str()) {
        bail!(
            "{} runs Debian {release:?}; clou manages {}\n  nothing was changed on the host",
            opts.name,
            RELEASES.join(", ")
        );
    }
    drop(draft);
    let draft = Draft::new(inventory_path, &text, opts, Some(&release))?;
    let resources: usize = draft.plan.roles.iter().map(|r| r.resources.len()).sum();
    let roles: Vec<&str> = draft.plan.roles.iter().map(|r| r.name.as_str()).collect();
    println!(
        "{} ({}, Debian {}): roles {} ({resources} resources), logging in with {}",
        opts.name,
        target.address,
        draft.host.release,
        roles.join(", "),
        if password.is_some() {
            "the provider's password"
        } else {
            "your key"
        }
    );
    println!(
        "  root's keys, sshd and the firewall are kept only if clou then logs in with a key \
         within {} s; otherwise the host puts them back",
        opts.confirm_timeout
    );
    if draft.text == text {
        println!(
            "  {} is in {} already (its entry is kept as written: --roles does not change it)",
            opts.name,
            inventory_path.display()
        );
    } else {
        println!(
            "  then added to {}{}",
            inventory_path.display(),
            if opts.groups.is_empty() {
                String::new()
            } else {
                format!(" (groups {})", opts.groups.join(", "))
            }
        );
    }
    if !opts.yes && !process::confirm(&format!("onboard {}?", opts.name))? {
        eprintln!("nothing was changed");
        return Ok(ExitCode::from(crate::EXIT_HOSTS_FAILED));
    }

    let apply_opts = apply::Options {
        limit: Some(opts.name.clone()),
        forks: 1,
        confirm_timeout: opts.confirm_timeout,
        ..apply::Options::default()
    };
    let login = password.map(|password| Target {
        password: Some(password),
        ..target.clone()
    });
    let summaries = apply::execute_with(
        &draft.inventory,
        vec![draft.host.clone()],
        vec![draft.plan.clone()],
        &apply_opts,
        login,
    )?;
    if !summaries.iter().all(apply::HostSummary::converged) {
        let reverted = summaries
            .iter()
            .any(|s| s.aborted.as_deref().is_some_and(|a| a.contains("reverted")));
        if reverted {
            eprintln!(
                "hint: root's new keys are the active admins' (`admins:` in {}) and `root_keys`: \
                 clou logs in with yours ({}), so it must be one of them",
                inventory_path.display(),
                target
                    .identities
                    .iter()
                    .filter(|p| p.exists())
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        eprintln!(
            "{} is not onboarded: {} is unchanged. Once the cause above is fixed, run the \
             same `clou onboard` again: it goes on from where the host is",
            opts.name,
            inventory_path.display()
        );
        return Ok(ExitCode::from(crate::EXIT_HOSTS_FAILED));
    }
    // Whatever the run had to confirm, root must now take a key.
    runtime
        .block_on(async {
            let session = ssh::connect(&target, keys).await?;
            session.close().await;
            Ok::<_, ConnectError>(())
        })
        .with_context(|| {
            format!(
                "{} converged, but clou cannot log in to it with a key\n  hint: your key must be \
                 one of the active admins' (`admins:` in the inventory); {} is unchanged",
                opts.name,
                inventory_path.display()
            )
        })?;
    if draft.text != text {
        draft.persist(inventory_path, &text, opts)?;
        eprintln!(
            "{}: onboarded; its entry is in {}",
            opts.name,
            inventory_path.display()
        );
    } else {
        eprintln!("{}: onboarded already, nothing to add", opts.name);
    }
    Ok(ExitCode::from(crate::EXIT_OK))
}

/// The inventory with the new host's entry, written beside the real file
/// (so that its relative paths mean the same) until the host is onboarded.
struct Draft {
    text: String,
    /// The host's own roles in the entry (base added when no group has it).
    roles: Vec<String>,
    file: DraftFile,
    inventory: Inventory,
    host: Host,
    plan: Plan,
}

/// The draft's file, removed unless it replaced the inventory.
struct DraftFile(Option<PathBuf>);

impl Drop for DraftFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Draft {
    fn new(
        inventory_path: &Path,
        text: &str,
        opts: &Options,
        release: Option<&str>,
    ) -> anyhow::Result<Draft> {
        let file_name = inventory_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "inventory.yaml".into());
        let path = inventory_path.with_file_name(format!(".{file_name}.onboard-{}", opts.name));
        let mut roles = opts.roles.clone();
        loop {
            let entry = NewHost {
                name: &opts.name,
                address: &opts.address,
                release,
                roles: &roles,
            };
            let new_text = edit::add_host(text, &entry, &opts.groups)?;
            std::fs::write(&path, &new_text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let file = DraftFile(Some(path.clone()));
            let inventory = Inventory::load(&path)?;
            let (hosts, plans) = apply::prepare(
                &inventory,
                &apply::Options {
                    limit: Some(opts.name.clone()),
                    confirm_timeout: opts.confirm_timeout,
                    ..apply::Options::default()
                },
            )?;
            let (Some(host), Some(plan)) = (hosts.into_iter().next(), plans.into_iter().next())
            else {
                bail!("{} has nothing to apply", opts.name);
            };
            let has_base = plan.roles.iter().any(|r| r.name == BASE);
            // Every server has the base role: through its groups, or its own.
            if has_base || new_text == text || roles.iter().any(|r| r == BASE) {
                if !has_base {
                    bail!(
                        "{} would not have the base role (admin accounts, sshd, firewall, the \
                         agent's timer)\n  hint: give it `roles: [base]` or a group that has it",
                        opts.name
                    );
                }
                return Ok(Draft {
                    text: new_text,
                    roles,
                    file,
                    inventory,
                    host,
                    plan,
                });
            }
            drop(file);
            roles.insert(0, BASE.to_owned());
        }
    }

    /// Moves the draft over the inventory file (a rename: all or nothing).
    /// If the file changed meanwhile (another admin's onboard, an edit),
    /// the entry is added to what it holds now instead.
    fn persist(mut self, inventory_path: &Path, read: &str, opts: &Options) -> anyhow::Result<()> {
        let Some(path) = self.file.0.take() else {
            return Ok(());
        };
        let now = std::fs::read_to_string(inventory_path)
            .with_context(|| format!("cannot read {}", inventory_path.display()))?;
        if now != read {
            let entry = NewHost {
                name: &opts.name,
                address: &opts.address,
                release: Some(&self.host.release),
                roles: &self.roles,
            };
            let merged = edit::add_host(&now, &entry, &opts.groups)?;
            std::fs::write(&path, merged)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if let Ok(meta) = std::fs::metadata(inventory_path) {
            let _ = std::fs::set_permissions(&path, meta.permissions());
        }
        std::fs::rename(&path, inventory_path).with_context(|| {
            format!(
                "cannot replace {} with {}",
                inventory_path.display(),
                path.display()
            )
        })
    }
}

/// Checks the host's key: known already, or matching `--fingerprint`, or
/// accepted on the terminal; then recorded in the inventory's known_hosts.
fn check_host_key(
    runtime: &tokio::runtime::Runtime,
    inventory: &Inventory,
    target: &Target,
    opts: &Options,
) -> anyhow::Result<()> {
    let keys = HostKeys::for_inventory(inventory);
    let key = runtime.block_on(ssh::fetch_host_key(target, Arc::new(keys.clone())))?;
    let offered = fingerprint(&key);
    let names = [target.address.as_str(), target.name.as_str()];
    // Known from ~/.ssh/known_hosts only is not enough: the repository's
    // file is what every admin's clou checks.
    let in_repository = HostKeys {
        files: vec![keys.trust_file.clone()],
        trust_file: keys.trust_file.clone(),
    };
    // A fingerprint given is always compared, whatever is recorded.
    if let Some(expected) = &opts.fingerprint
        && *expected != offered
    {
        bail!(
            "{} ({}) offers {} {offered}, not {expected}: nothing was done\n  hint: this is \
             not the server the provider described, or someone is in between; check the \
             fingerprint on the provider's console",
            opts.name,
            target.address,
            key.algorithm()
        );
    }
    match keys.check(&names, target.port, &key) {
        Verdict::Known if in_repository.check(&names, target.port, &key) == Verdict::Known => {
            return Ok(());
        }
        // Only in the admin's own ~/.ssh/known_hosts, perhaps after a
        // blind "yes": checked like an unknown key before it goes into
        // the file every admin trusts.
        Verdict::Known => {}
        Verdict::Revoked(at) => bail!(
            "{} ({}) offers a key marked @revoked at {at}: not connecting",
            opts.name,
            target.address
        ),
        Verdict::Changed(recorded) => bail!(
            "{} ({}) offers {offered}, but {} records another key for it\n  hint: if the \
             server was reinstalled, remove the old line, check the new fingerprint, then \
             run clou onboard again",
            opts.name,
            target.address,
            recorded
                .iter()
                .map(|(at, fp)| format!("{at} ({fp})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Verdict::Unknown => {}
    }
    match &opts.fingerprint {
        Some(_) => {}
        None => {
            println!(
                "{} ({}) offers the host key {} {offered}",
                opts.name,
                target.address,
                key.algorithm()
            );
            let yes = process::confirm(
                "is this the fingerprint the provider gave (mail, console: \
                 ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)?",
            )
            .context("the host key is taken only when you say so: pass --fingerprint SHA256:...")?;
            if !yes {
                bail!("host key not accepted: nothing was done");
            }
        }
    }
    crate::ssh::known_hosts::trust(&keys.trust_file, &target.address, target.port, &key)
        .with_context(|| format!("cannot write {}", keys.trust_file.display()))?;
    eprintln!(
        "{}: recorded {offered} for {} in {}",
        opts.name,
        target.address,
        keys.trust_file.display()
    );
    Ok(())
}

/// Logs in as the inventory would (keys), or else with root's password;
/// returns the password when it was needed, and the host's release.
async fn first_login(
    target: &Target,
    keys: Arc<HostKeys>,
    opts: &Options,
) -> anyhow::Result<(Option<Password>, String)> {
    let (session, password) = match ssh::connect(target, keys.clone()).await {
        Ok(session) => (session, None),
        // Refused keys, or a disconnection once sshd's MaxAuthTries ran out
        // (an admin with many keys): the provider's password, then.
        Err(ConnectError::Auth { .. } | ConnectError::Ssh { .. }) => {
            let text = process::read_password(
                &format!(
                    "{}@{}'s password (from the provider): ",
                    target.user, target.address
                ),
                opts.password_stdin,
            )?;
            let password = Password::new(text);
            let with_password = Target {
                password: Some(password.clone()),
                ..target.clone()
            };
            let session = ssh::connect(&with_password, keys).await.map_err(|err| {
                anyhow::anyhow!(
                    "{err}\n  nothing was changed on {}; check the password, or put your key in \
                     ~{}/.ssh/authorized_keys there",
                    opts.name,
                    target.user
                )
            })?;
            (session, Some(password))
        }
        Err(err) => return Err(err.into()),
    };
    let mut exec = session
        .exec(". /etc/os-release && echo \"$VERSION_CODENAME\"")
        .await
        .context("cannot read /etc/os-release")?;
    exec.close().await;
    let mut release = String::new();
    while let Some(event) = exec.events.recv().await {
        if let ssh::Event::Stdout(line) = event
            && release.is_empty()
        {
            release = line.trim().to_owned();
        }
    }
    session.close().await;
    Ok((password, release))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inventory with a `base` role given by a group, and a plain role.
    fn fleet(dir: &Path) -> PathBuf {
        for role in ["base", "wiki"] {
            let d = dir.join("roles").join(role);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(
                d.join("role.yaml"),
                format!("resources:\n  - directory: {{path: /srv/{role}}}\n"),
            )
            .expect("write");
        }
        let path = dir.join("inventory/fleet.yaml");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            &path,
            "# The fleet.\nroles_path: [../roles]\n\nhosts:\n  web: {address: 192.0.2.1}\n\
             \ngroups:\n  # Every server.\n  fleet:\n    hosts: [web]\n    roles: [base]\n",
        )
        .expect("write");
        path
    }

    fn opts(roles: &[&str], groups: &[&str]) -> Options {
        Options {
            name: "nouveau".into(),
            address: "192.0.2.40".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            confirm_timeout: 30,
            ..Options::default()
        }
    }

    fn roles_of(draft: &Draft) -> Vec<&str> {
        draft.plan.roles.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn base_comes_from_a_group_or_is_given_to_the_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fleet(dir.path());
        let text = std::fs::read_to_string(&path).expect("read");

        let in_fleet =
            Draft::new(&path, &text, &opts(&["wiki"], &["fleet"]), Some("trixie")).expect("draft");
        assert_eq!(roles_of(&in_fleet), ["base", "wiki"]);
        assert!(
            in_fleet.text.contains(
                "  nouveau:\n    address: 192.0.2.40\n    release: trixie\n    roles: [wiki]\n"
            ),
            "{}",
            in_fleet.text
        );
        assert!(in_fleet.text.contains("    hosts: [web, nouveau]\n"));
        assert!(in_fleet.text.starts_with("# The fleet.\n"));
        drop(in_fleet);

        let alone = Draft::new(&path, &text, &opts(&["wiki"], &[]), None).expect("draft");
        assert_eq!(roles_of(&alone), ["base", "wiki"]);
        assert!(
            alone.text.contains("    roles: [base, wiki]\n"),
            "{}",
            alone.text
        );
        assert_eq!(alone.host.release, crate::inventory::DEFAULT_RELEASE);
    }

    #[test]
    fn a_bad_role_or_group_stops_before_any_contact_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fleet(dir.path());
        let text = std::fs::read_to_string(&path).expect("read");
        let listing = || {
            let mut names: Vec<String> = std::fs::read_dir(path.parent().expect("dir"))
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let before = listing();
        let err = Draft::new(&path, &text, &opts(&["wkii"], &[]), None)
            .err()
            .expect("an unknown role is refused");
        assert!(format!("{err:#}").contains("wkii"), "{err:#}");
        let err = Draft::new(&path, &text, &opts(&[], &["flet"]), None)
            .err()
            .expect("an unknown group is refused");
        assert!(format!("{err:#}").contains("flet"), "{err:#}");
        assert_eq!(listing(), before, "no draft left behind");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }
}
