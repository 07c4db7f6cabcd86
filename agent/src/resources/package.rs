//! The `package` resource: Debian packages, through apt.
//!
//! All package resources of a plan form one [`Batch`], converged at the
//! place of the first of them in one apt transaction, so that a plan never
//! leaves a host with half of its packages changed, and apt resolves all the
//! dependencies at once.
//!
//! Reading the state costs three commands: `dpkg-query` (what is installed),
//! `apt-cache policy` (what apt would install), then `apt-get install -s`
//! (a simulation of the transaction, only when something is to change). The
//! simulation is there because apt removes whatever a transaction needs
//! removed without asking, even with `-y` only: removing `openssh-client`
//! takes `openssh-server` with it. Any removal no resource asked for stops
//! the batch before anything changes, in check mode too (except when apt
//! does not know a package yet: check mode never updates the lists, so
//! there is nothing to simulate against).
//!
//! `apt-get update` runs only when it can change the answer: a package or
//! version to install that the apt lists do not know, or a `latest` package
//! while the lists are older than an hour. How old they are is the mtime of
//! `/var/lib/apt/lists/partial`: every `apt-get update` (ours, apt-daily's,
//! an admin's) creates and removes its downloads there, and nothing else
//! touches it (installs download into `/var/cache/apt/archives/partial`;
//! checked in the lab). The lists' own files carry the
//! server's date instead, and `update-success-stamp` only exists where an
//! optional apt hook is installed. `find -mmin -60` reads that mtime, so
//! the agent needs no clock of its own. An update that failed also counts
//! as fresh: `latest` may then lag by up to an hour.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use clou_protocol::resource::{PackageSpec, PackageState};

use super::{Ctx, Differences, Error, Kind, command_failed};
use crate::system::{Cmd, Output};

/// Every package resource of a plan, converged in one apt transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    pub specs: Vec<PackageSpec>,
}

impl Batch {
    pub fn new(specs: Vec<PackageSpec>) -> Batch {
        Batch { specs }
    }
}

/// One package to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The package it is about (the engine reports it under that resource).
    pub name: String,
    /// The change line: `install nginx 1.22.1-9`,
    /// `upgrade clou-lab-hello 1.0-1 -> 2.0-1`, `remove telnet 0.17-44`.
    pub what: String,
    /// What `apt-get install` is told: `nginx`, `nginx=1.22.1-9` or
    /// `telnet-` (with `--purge`, a trailing `-` purges).
    pub arg: String,
    /// Check mode only: the apt lists do not know the package or version
    /// yet; a real run would `apt-get update` first.
    pub unlisted: bool,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// How long the apt lists are trusted for `latest`, in minutes.
const LISTS_MAX_AGE_MINUTES: &str = "60";

/// Where every `apt-get update` leaves its mark (see the module comment).
const LISTS_PARTIAL: &str = "/var/lib/apt/lists/partial";

/// What `dpkg-query -W` prints per package.
pub(crate) const DPKG_FORMAT: &str =
    "--showformat=${Package}\\t${Version}\\t${db:Status-Abbrev}\\n";

/// The dpkg status file, as named in `apt-cache policy` tables.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

impl Kind for Batch {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        let specs = self.validated()?;
        if specs.is_empty() {
            return Ok(Differences::none());
        }
        let names: Vec<&str> = specs.keys().map(String::as_str).collect();
        let installed = query_installed(ctx, &names)?;
        let mut policy = query_policy(ctx, &names)?;

        let stale = specs.values().any(|s| s.state == PackageState::Latest) && !lists_fresh(ctx)?;
        let needs_update = specs.values().any(|spec| {
            let inst = installed.get(&spec.name);
            needs_update(spec, inst, policy.get(&spec.name), stale)
        });
        // Check mode changes nothing, not even the apt lists: it reports
        // with the lists as they are.
        let update_pending = needs_update && ctx.check;
        if needs_update && !ctx.check {
            run_apt(ctx, &apt_get(["update", "-q"]))?;
            policy = query_policy(ctx, &names)?;
        }

        let mut changes = Vec::new();
        for spec in specs.values() {
            let inst = installed.get(&spec.name);
            let change = change_for(spec, inst, policy.get(&spec.name), update_pending)?;
            if spec.state != PackageState::Absent {
                ctx.plan(format!("package:{}", spec.name));
            }
            changes.extend(change);
        }
        // A transaction with a package apt does not know yet cannot be
        // simulated; the real run updates the lists first.
        if !changes.is_empty() && !changes.iter().any(|c| c.unlisted) {
            simulate(ctx, &changes)?;
        }
        Ok(Differences::of(changes))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        // No LC_ALL=C here: maintainer scripts work in the host's locale
        // (postgresql creates its first cluster in it).
        let cmd = transaction(&["-y"], &diff.changes)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("APT_LISTCHANGES_FRONTEND", "none");
        run_apt(ctx, &cmd)?;
        Ok(())
    }
}

impl Batch {
    /// The specs by name, checked: names and versions apt will read as
    /// such, a version only with `present`, one spec per package.
    fn validated(&self) -> Result<BTreeMap<String, &PackageSpec>, Error> {
        let mut by_name: BTreeMap<String, &PackageSpec> = BTreeMap::new();
        for spec in &self.specs {
            check_name(&spec.name)?;
            if let Some(version) = &spec.version {
                check_version(&spec.name, version)?;
                if spec.state != PackageState::Present {
                    return Err(Error::Invalid(format!(
                        "package {}: `version` only goes with `state: present` (the default); \
                         remove one of them",
                        spec.name
                    )));
                }
            }
            if let Some(other) = by_name.insert(spec.name.clone(), spec)
                && other != spec
            {
                return Err(Error::Invalid(format!(
                    "package {} is declared twice with different states or versions; \
                     keep one declaration per package on a host",
                    spec.name
                )));
            }
        }
        Ok(by_name)
    }
}

/// Refuses what apt would read as something else than one package name
/// (an option, `name=version`, `name-`): Debian names are lower-case
/// letters, digits and `+ - .`, starting with a letter or digit.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let valid = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        // apt reads a trailing `-` as "remove" (a trailing `+` is fine:
        // apt tries the whole name first, as for g++).
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{name:?} is not a Debian package name (lower-case letters, digits, `+`, `-` and \
             `.`, without an architecture); fix the package resource"
        )))
    }
}

/// Refuses a version with characters Debian versions never have.
fn check_version(name: &str, version: &str) -> Result<(), Error> {
    let valid = version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "package {name}: {version:?} is not a Debian version (e.g. \"2.0-1\" or \
             \"1:9.2p1-2\"); fix the package resource"
        )))
    }
}

/// One package as `dpkg-query` knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Installed {
    pub(crate) version: String,
    /// `db:Status-Abbrev`: wanted, status, error flag (`ii `, `rc `...).
    status: String,
}

impl Installed {
    /// Unpacked and configured. Half-installed packages (`iU`, `iF`) are
    /// not: installing them again is what completes them.
    pub(crate) fn is_installed(&self) -> bool {
        self.status.chars().nth(1) == Some('i')
    }

    /// Removed, with its configuration files left (`rc`).
    fn config_left(&self) -> bool {
        self.status.chars().nth(1) == Some('c')
    }

    /// Anything on disk that `absent` (purged) must take away.
    fn on_disk(&self) -> bool {
        !matches!(self.status.chars().nth(1), None | Some('n'))
    }
}

/// Runs `dpkg-query -W` over the names; packages dpkg never heard of are
/// missing from the answer.
pub(crate) fn query_installed(
    ctx: &Ctx<'_>,
    names: &[&str],
) -> Result<BTreeMap<String, Installed>, Error> {
    let mut argv = vec!["dpkg-query", DPKG_FORMAT, "-W"];
    argv.extend(names);
    let cmd = Cmd::new(argv).env("LC_ALL", "C");
    let out = ctx.run(&cmd)?;
    // Exit 1 only says that some names matched nothing; the others are
    // still printed.
    if !matches!(out.code, Some(0) | Some(1)) {
        return Err(command_failed(&cmd, &out));
    }
    Ok(parse_installed(&out.stdout_text()))
}

fn parse_installed(text: &str) -> BTreeMap<String, Installed> {
    let mut packages: BTreeMap<String, Installed> = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(version), Some(status)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let entry = Installed {
            version: version.to_owned(),
            status: status.to_owned(),
        };
        // A package installed for two architectures has two lines; the
        // installed one wins.
        match packages.get(name) {
            Some(known) if known.is_installed() => {}
            _ => {
                packages.insert(name.to_owned(), entry);
            }
        }
    }
    packages
}

/// What `apt-cache policy` says about one package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Policy {
    candidate: Option<String>,
    /// The version table, newest first as apt sorts it, each version with
    /// whether an apt source has it (not only the dpkg status file).
    versions: Vec<(String, bool)>,
}

impl Policy {
    /// Whether an apt source (not only the dpkg status) has `version`.
    fn listed(&self, version: &str) -> bool {
        self.versions
            .iter()
            .any(|(v, listed)| v == version && *listed)
    }

    /// Whether any apt source has the package at all.
    fn in_lists(&self) -> bool {
        self.versions.iter().any(|(_, listed)| *listed)
    }

    /// "upgrade" or "downgrade" from `from` to `to`, from the table's order.
    fn direction(&self, from: &str, to: &str) -> &'static str {
        let at = |version: &str| self.versions.iter().position(|(v, _)| v == version);
        match (at(from), at(to)) {
            (Some(old), Some(new)) if new > old => "downgrade",
            _ => "upgrade",
        }
    }
}

/// Runs `apt-cache policy` over the names; unknown names are missing from
/// the answer.
fn query_policy(ctx: &Ctx<'_>, names: &[&str]) -> Result<BTreeMap<String, Policy>, Error> {
    let mut argv = vec!["apt-cache", "policy"];
    argv.extend(names);
    let out = ctx.run_ok(&Cmd::new(argv).env("LC_ALL", "C"))?;
    Ok(parse_policy(&out.stdout_text()))
}

/// Parses `apt-cache policy` output (in the C locale). Lines are told apart
/// by their indentation: the package at column 0, its fields at 2, versions
/// at 5 (` *** ` marks the installed one), their sources at 8.
fn parse_policy(text: &str) -> BTreeMap<String, Policy> {
    let mut packages: BTreeMap<String, Policy> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            current = line.strip_suffix(':').map(str::to_owned);
            if let Some(name) = &current {
                packages.entry(name.clone()).or_default();
            }
            continue;
        }
        let Some(policy) = current.as_ref().and_then(|n| packages.get_mut(n)) else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if line.starts_with(" *** ") || (3..8).contains(&indent) {
            let version = text.trim_start_matches("*** ").split_whitespace().next();
            if let Some(version) = version {
                policy.versions.push((version.to_owned(), false));
            }
        } else if indent >= 8 {
            // "500 http://deb.debian.org/debian bookworm/main amd64 Packages"
            let source = text.split_once(' ').map(|(_, s)| s.trim()).unwrap_or("");
            if source != DPKG_STATUS
                && let Some(last) = policy.versions.last_mut()
            {
                last.1 = true;
            }
        } else if let Some(value) = text.strip_prefix("Candidate:") {
            let value = value.trim();
            policy.candidate = (value != "(none)" && !value.is_empty()).then(|| value.to_owned());
        }
    }
    packages
}

/// Whether the apt lists were fetched within the last hour.
fn lists_fresh(ctx: &Ctx<'_>) -> Result<bool, Error> {
    let cmd = Cmd::new([
        "find",
        LISTS_PARTIAL,
        "-maxdepth",
        "0",
        "-mmin",
        &format!("-{LISTS_MAX_AGE_MINUTES}"),
    ]);
    let out = ctx.run(&cmd)?;
    // find prints the path only when it is recent enough; a missing
    // directory (lists never fetched) prints nothing and fails.
    Ok(out.success() && !out.stdout_text().trim().is_empty())
}

/// Whether `apt-get update` could change what is done for `spec`.
fn needs_update(
    spec: &PackageSpec,
    installed: Option<&Installed>,
    policy: Option<&Policy>,
    stale: bool,
) -> bool {
    let installed = installed.filter(|i| i.is_installed());
    match spec.state {
        PackageState::Absent => false,
        PackageState::Present => match &spec.version {
            Some(version) => {
                installed.is_none_or(|i| &i.version != version)
                    && !policy.is_some_and(|p| p.listed(version))
            }
            None => installed.is_none() && policy.is_none_or(|p| p.candidate.is_none()),
        },
        PackageState::Latest => stale || !policy.is_some_and(|p| p.in_lists()),
    }
}

/// The change one spec needs, if any.
fn change_for(
    spec: &PackageSpec,
    installed: Option<&Installed>,
    policy: Option<&Policy>,
    update_pending: bool,
) -> Result<Option<Change>, Error> {
    let name = spec.name.as_str();
    let change = |what: String, arg: String| Change {
        name: name.to_owned(),
        what,
        arg,
        unlisted: false,
    };
    let current = installed.filter(|i| i.is_installed());
    let candidate = policy.and_then(|p| p.candidate.as_deref());
    match (spec.state, &spec.version) {
        (PackageState::Absent, _) => Ok(installed.filter(|i| i.on_disk()).map(|i| {
            let what = if i.config_left() {
                format!("purge {name} (configuration files left by {})", i.version)
            } else {
                format!("remove {name} {}", i.version)
            };
            change(what, format!("{name}-"))
        })),
        (PackageState::Present, Some(version)) => {
            if current.is_some_and(|i| &i.version == version) {
                return Ok(None);
            }
            if !policy.is_some_and(|p| p.listed(version)) {
                if update_pending {
                    return Ok(Some(Change {
                        unlisted: true,
                        ..change(
                            format!(
                                "install {name} {version} (not in the apt lists; \
                                 apt-get update would run first)"
                            ),
                            format!("{name}={version}"),
                        )
                    }));
                }
                return Err(unknown_version(name, version, policy));
            }
            let what = match current {
                Some(i) => {
                    let way = policy.map_or("upgrade", |p| p.direction(&i.version, version));
                    format!("{way} {name} {} -> {version}", i.version)
                }
                None => format!("install {name} {version}"),
            };
            Ok(Some(change(what, format!("{name}={version}"))))
        }
        (PackageState::Present, None) => {
            if current.is_some() {
                return Ok(None);
            }
            match candidate {
                Some(candidate) => Ok(Some(change(
                    format!("install {name} {candidate}"),
                    name.to_owned(),
                ))),
                None if update_pending => Ok(Some(Change {
                    unlisted: true,
                    ..change(
                        format!(
                            "install {name} (not in the apt lists; apt-get update would run first)"
                        ),
                        name.to_owned(),
                    )
                })),
                None => Err(unknown_package(name, policy)),
            }
        }
        (PackageState::Latest, _) => {
            let listed = policy.filter(|p| p.in_lists()).and(candidate);
            match (current, listed) {
                (Some(i), Some(candidate)) if i.version != candidate => {
                    let way = policy.map_or("upgrade", |p| p.direction(&i.version, candidate));
                    Ok(Some(change(
                        format!("{way} {name} {} -> {candidate}", i.version),
                        name.to_owned(),
                    )))
                }
                // Installed, and no apt source has it (a package installed
                // by hand): the installed version is the latest there is.
                (Some(_), _) => Ok(None),
                (None, Some(candidate)) => Ok(Some(change(
                    format!("install {name} {candidate}"),
                    name.to_owned(),
                ))),
                (None, None) if update_pending => Ok(Some(Change {
                    unlisted: true,
                    ..change(
                        format!(
                            "install {name} (not in the apt lists; apt-get update would run first)"
                        ),
                        name.to_owned(),
                    )
                })),
                (None, None) => Err(unknown_package(name, policy)),
            }
        }
    }
}

fn unknown_package(name: &str, policy: Option<&Policy>) -> Error {
    Error::Invalid(match policy {
        None => format!(
            "no package {name} in the apt sources of this host, even after apt-get update; \
             check the name, or add the apt source that has it before this resource"
        ),
        Some(_) => format!(
            "package {name} has no installable version in the apt sources of this host, even \
             after apt-get update (a virtual package? then name the package that provides it)"
        ),
    })
}

fn unknown_version(name: &str, version: &str, policy: Option<&Policy>) -> Error {
    let available: Vec<&str> = policy
        .map(|p| {
            p.versions
                .iter()
                .filter(|(_, listed)| *listed)
                .map(|(v, _)| v.as_str())
                .collect()
        })
        .unwrap_or_default();
    Error::Invalid(if available.is_empty() {
        format!(
            "no package {name} in the apt sources of this host, even after apt-get update; \
             check the name, or add the apt source that has it before this resource"
        )
    } else {
        format!(
            "version {version} of {name} is not in the apt sources of this host, even after \
             apt-get update (they have {}); fix the version in the package resource",
            available.join(", ")
        )
    })
}

/// `apt-get` with the options every run of ours shares.
pub(crate) fn apt_get<'a>(args: impl IntoIterator<Item = &'a str>) -> Cmd {
    // Wait for an apt run of someone else (apt-daily, an admin) instead of
    // failing at once on its lock.
    let mut argv = vec!["apt-get", "-o", "DPkg::Lock::Timeout=300"];
    argv.extend(args);
    Cmd::new(argv)
}

/// The one `apt-get install` of the batch: installs, upgrades, downgrades
/// and purges together. Changed configuration files keep the admin's
/// version (`--force-confold`), as a role owns them through `file`
/// resources anyway.
fn transaction(extra: &[&str], changes: &[Change]) -> Cmd {
    let mut args = vec!["install"];
    args.extend(extra);
    args.extend([
        "-q",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "--allow-downgrades",
        "--purge",
    ]);
    args.extend(changes.iter().map(|c| c.arg.as_str()));
    apt_get(args)
}

/// Runs apt-get; a failure carries the end of both its outputs: apt says
/// what went wrong on stdout (unmet dependencies, a maintainer script's
/// words) and only sums it up on stderr (`E: Sub-process /usr/bin/dpkg
/// returned an error code (1)`).
pub(crate) fn run_apt(ctx: &Ctx<'_>, cmd: &Cmd) -> Result<Output, Error> {
    let out = ctx.run(cmd)?;
    if out.success() {
        return Ok(out);
    }
    let mut err = command_failed(cmd, &out);
    if let Error::Command { tail, .. } = &mut err {
        let stdout = out.stdout_text();
        // Progress lines ("Reading database ... 45%") end in a bare \r.
        let lines: Vec<&str> = stdout
            .split(['\n', '\r'])
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect();
        let mut text = lines[lines.len().saturating_sub(10)..].join("\n");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            text.push('\n');
            text.push_str(stderr.trim_end());
        }
        *tail = text;
    }
    Err(err)
}

/// Simulates the transaction and refuses removals nobody asked for.
fn simulate(ctx: &Ctx<'_>, changes: &[Change]) -> Result<(), Error> {
    let cmd = transaction(&["-s"], changes).env("LC_ALL", "C");
    let out = run_apt(ctx, &cmd)?;
    let asked: BTreeSet<&str> = changes
        .iter()
        .filter(|c| c.arg.ends_with('-'))
        .map(|c| c.name.as_str())
        .collect();
    let unasked: Vec<String> = removals(&out.stdout_text())
        .into_iter()
        .filter(|name| !asked.contains(name.as_str()))
        .collect();
    if unasked.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
    Err(Error::Invalid(format!(
        "the package changes ({}) would also remove {}, which no package resource asks to \
         remove; nothing was changed. Declare them with `state: absent` if that is intended, \
         or change the plan",
        what.join(", "),
        unasked.join(", ")
    )))
}

/// Packages an `apt-get -s` run would remove (`Remv`) or purge (`Purg`).
pub(crate) fn removals(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|line| {
            line.strip_prefix("Remv ")
                .or_else(|| line.strip_prefix("Purg "))
        })
        .filter_map(|rest| rest.split_whitespace().next())
        // An architecture-qualified name ("libfoo:i386") is still libfoo.
        .map(|name| name.split(':').next().unwrap_or(name).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RunState, converge};
    use crate::system::testing::Recorder;

    const POLICY_NOTHING_BOOKWORM: &str =
        include_str!("testdata/apt-cache-policy-nothing-installed-bookworm.txt");
    const POLICY_NOTHING_BULLSEYE: &str =
        include_str!("testdata/apt-cache-policy-nothing-installed-bullseye.txt");
    const POLICY_NOTHING_TRIXIE: &str =
        include_str!("testdata/apt-cache-policy-nothing-installed-trixie.txt");
    const POLICY_EMPTY_BULLSEYE: &str =
        include_str!("testdata/apt-cache-policy-empty-lists-bullseye.txt");
    const POLICY_EMPTY_TRIXIE: &str =
        include_str!("testdata/apt-cache-policy-empty-lists-trixie.txt");
    const POLICY_HELLO_1_BOOKWORM: &str =
        include_str!("testdata/apt-cache-policy-hello-1.0-installed-bookworm.txt");
    const POLICY_HELLO_1_BULLSEYE: &str =
        include_str!("testdata/apt-cache-policy-hello-1.0-installed-bullseye.txt");
    const POLICY_HELLO_1_TRIXIE: &str =
        include_str!("testdata/apt-cache-policy-hello-1.0-installed-trixie.txt");
    const POLICY_HELLO_2_BOOKWORM: &str =
        include_str!("testdata/apt-cache-policy-hello-2.0-installed-bookworm.txt");
    const POLICY_HELLO_RC_BOOKWORM: &str =
        include_str!("testdata/apt-cache-policy-hello-removed-config-left-bookworm.txt");

    const DPKG_NOTHING_BOOKWORM: &str =
        include_str!("testdata/dpkg-query-nothing-installed-bookworm.txt");
    const DPKG_NOTHING_BULLSEYE: &str =
        include_str!("testdata/dpkg-query-nothing-installed-bullseye.txt");
    const DPKG_NOTHING_TRIXIE: &str =
        include_str!("testdata/dpkg-query-nothing-installed-trixie.txt");
    const DPKG_HELLO_1_BOOKWORM: &str =
        include_str!("testdata/dpkg-query-hello-1.0-installed-bookworm.txt");
    const DPKG_HELLO_1_BULLSEYE: &str =
        include_str!("testdata/dpkg-query-hello-1.0-installed-bullseye.txt");
    const DPKG_HELLO_1_TRIXIE: &str =
        include_str!("testdata/dpkg-query-hello-1.0-installed-trixie.txt");
    const DPKG_HELLO_2_BOOKWORM: &str =
        include_str!("testdata/dpkg-query-hello-2.0-installed-bookworm.txt");
    const DPKG_HELLO_RC_BOOKWORM: &str =
        include_str!("testdata/dpkg-query-hello-removed-config-left-bookworm.txt");
    const DPKG_HELLO_HALF_PURGED_BOOKWORM: &str =
        include_str!("testdata/dpkg-query-hello-config-left-sudo-refused-removal-bookworm.txt");
    const APT_SUDO_REFUSED: &str =
        include_str!("testdata/apt-get-install-purge-sudo-refused-bookworm.txt");
    const DPKG_HELLO_PURGED_BOOKWORM: &str =
        include_str!("testdata/dpkg-query-hello-purged-bookworm.txt");

    /// Per release: dpkg-query, apt-cache policy and the simulation of
    /// purging openssh-client.
    const REMOVE_SSH_CLIENT: [[&str; 3]; 3] = [
        [
            include_str!("testdata/dpkg-query-openssh-client-bullseye.txt"),
            include_str!("testdata/apt-cache-policy-openssh-client-bullseye.txt"),
            include_str!("testdata/apt-get-simulate-remove-openssh-client-bullseye.txt"),
        ],
        [
            include_str!("testdata/dpkg-query-openssh-client-bookworm.txt"),
            include_str!("testdata/apt-cache-policy-openssh-client-bookworm.txt"),
            include_str!("testdata/apt-get-simulate-remove-openssh-client-bookworm.txt"),
        ],
        [
            include_str!("testdata/dpkg-query-openssh-client-trixie.txt"),
            include_str!("testdata/apt-cache-policy-openssh-client-trixie.txt"),
            include_str!("testdata/apt-get-simulate-remove-openssh-client-trixie.txt"),
        ],
    ];
    const SIM_UPGRADE_HELLO_PURGE_SUDO: [&str; 3] = [
        include_str!("testdata/apt-get-simulate-upgrade-hello-purge-sudo-bullseye.txt"),
        include_str!("testdata/apt-get-simulate-upgrade-hello-purge-sudo-bookworm.txt"),
        include_str!("testdata/apt-get-simulate-upgrade-hello-purge-sudo-trixie.txt"),
    ];

    const FIND_FRESH: &str = include_str!("testdata/find-lists-partial-just-updated-bookworm.txt");
    const FIND_FRESH_ALL: [&str; 3] = [
        include_str!("testdata/find-lists-partial-just-updated-bullseye.txt"),
        FIND_FRESH,
        include_str!("testdata/find-lists-partial-just-updated-trixie.txt"),
    ];
    const FIND_STALE: &str =
        include_str!("testdata/find-lists-partial-updated-2-hours-ago-trixie.txt");

    const INSTALL: &str = "apt-get -o DPkg::Lock::Timeout=300 install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        --allow-downgrades --purge";
    const SIMULATE: &str = "apt-get -o DPkg::Lock::Timeout=300 install -s -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        --allow-downgrades --purge";
    const UPDATE: &str = "apt-get -o DPkg::Lock::Timeout=300 update -q";

    fn pkg(name: &str) -> PackageSpec {
        PackageSpec {
            name: name.to_owned(),
            state: PackageState::Present,
            version: None,
        }
    }

    fn with(name: &str, state: PackageState, version: Option<&str>) -> PackageSpec {
        PackageSpec {
            name: name.to_owned(),
            state,
            version: version.map(str::to_owned),
        }
    }

    /// A host answering dpkg-query and apt-cache policy with these outputs.
    /// dpkg-query exits 1 as it does whenever a name matches nothing.
    fn host(dpkg: &str, policy: &str) -> Recorder {
        let sys = Recorder::new();
        sys.reply(&["dpkg-query"], 1, dpkg);
        sys.reply(&["apt-cache", "policy"], 0, policy);
        sys.reply(&["find", LISTS_PARTIAL], 0, FIND_FRESH);
        sys
    }

    fn run(
        sys: &Recorder,
        check: bool,
        specs: Vec<PackageSpec>,
    ) -> (Result<Vec<String>, Error>, RunState) {
        let mut state = RunState::default();
        let mut ctx = Ctx {
            sys,
            check,
            want_diff: false,
            sensitive: false,
            run: &mut state,
        };
        let result = converge(&Batch::new(specs), &mut ctx).map(|o| o.changes);
        (result, state)
    }

    fn queries() -> Vec<String> {
        vec![
            format!("dpkg-query {DPKG_FORMAT} -W clou-lab-hello sudo"),
            "apt-cache policy clou-lab-hello sudo".to_owned(),
        ]
    }

    #[test]
    fn installs_missing_packages_in_one_transaction_without_update() {
        // bravo right after `apt-get update`: nothing of ours installed.
        let sys = host(DPKG_NOTHING_BOOKWORM, POLICY_NOTHING_BOOKWORM);
        let (changes, state) = run(
            &sys,
            false,
            vec![
                pkg("sudo"),
                with("clou-lab-hello", PackageState::Present, Some("1.0-1")),
            ],
        );
        assert_eq!(
            changes.unwrap(),
            vec![
                "install clou-lab-hello 1.0-1",
                "install sudo 1.9.13p3-1+deb12u4"
            ]
        );
        let mut expected = queries();
        expected.push(format!("{SIMULATE} clou-lab-hello=1.0-1 sudo"));
        expected.push(format!("{INSTALL} clou-lab-hello=1.0-1 sudo"));
        assert_eq!(sys.commands(), expected);
        let ran = sys.ran.borrow();
        let install = ran.last().unwrap();
        assert!(
            install
                .env
                .contains(&("DEBIAN_FRONTEND".into(), "noninteractive".into()))
        );
        assert!(
            install
                .env
                .contains(&("APT_LISTCHANGES_FRONTEND".into(), "none".into()))
        );
        assert!(state.planned.contains("package:sudo"));
        assert!(state.planned.contains("package:clou-lab-hello"));
    }

    #[test]
    fn second_apply_changes_nothing() {
        // bravo after that transaction.
        let sys = host(DPKG_HELLO_1_BOOKWORM, POLICY_HELLO_1_BOOKWORM);
        let (changes, state) = run(
            &sys,
            false,
            vec![
                pkg("sudo"),
                with("clou-lab-hello", PackageState::Present, Some("1.0-1")),
            ],
        );
        assert_eq!(changes.unwrap(), Vec::<String>::new());
        assert_eq!(sys.commands(), queries());
        assert!(state.planned.contains("package:clou-lab-hello"));
    }

    #[test]
    fn installed_package_is_left_alone_on_every_release() {
        for (dpkg, policy) in [
            (DPKG_HELLO_1_BULLSEYE, POLICY_HELLO_1_BULLSEYE),
            (DPKG_HELLO_1_BOOKWORM, POLICY_HELLO_1_BOOKWORM),
            (DPKG_HELLO_1_TRIXIE, POLICY_HELLO_1_TRIXIE),
        ] {
            let sys = host(dpkg, policy);
            let (changes, _) = run(&sys, false, vec![pkg("clou-lab-hello"), pkg("sudo")]);
            assert_eq!(changes.unwrap(), Vec::<String>::new());
        }
    }

    #[test]
    fn latest_upgrades_to_the_candidate_on_every_release() {
        for (dpkg, policy) in [
            (DPKG_HELLO_1_BULLSEYE, POLICY_HELLO_1_BULLSEYE),
            (DPKG_HELLO_1_BOOKWORM, POLICY_HELLO_1_BOOKWORM),
            (DPKG_HELLO_1_TRIXIE, POLICY_HELLO_1_TRIXIE),
        ] {
            let sys = host(dpkg, policy);
            let (changes, _) = run(
                &sys,
                false,
                vec![
                    with("clou-lab-hello", PackageState::Latest, None),
                    pkg("sudo"),
                ],
            );
            assert_eq!(
                changes.unwrap(),
                vec!["upgrade clou-lab-hello 1.0-1 -> 2.0-1"]
            );
            let commands = sys.commands();
            assert_eq!(
                commands.last().unwrap(),
                &format!("{INSTALL} clou-lab-hello")
            );
            assert!(!commands.iter().any(|c| c == UPDATE), "{commands:?}");
        }
    }

    #[test]
    fn latest_on_the_candidate_changes_nothing() {
        let sys = host(DPKG_HELLO_2_BOOKWORM, POLICY_HELLO_2_BOOKWORM);
        let (changes, _) = run(
            &sys,
            false,
            vec![with("clou-lab-hello", PackageState::Latest, None)],
        );
        assert_eq!(changes.unwrap(), Vec::<String>::new());
    }

    #[test]
    fn latest_updates_the_lists_when_they_are_older_than_an_hour() {
        let sys = Recorder::new();
        sys.reply(&["find", LISTS_PARTIAL], 0, FIND_STALE);
        sys.reply(&["dpkg-query"], 1, DPKG_HELLO_2_BOOKWORM);
        sys.reply(&["apt-cache", "policy"], 0, POLICY_HELLO_2_BOOKWORM);
        let (changes, _) = run(
            &sys,
            false,
            vec![with("clou-lab-hello", PackageState::Latest, None)],
        );
        assert_eq!(changes.unwrap(), Vec::<String>::new());
        assert_eq!(
            sys.commands(),
            vec![
                format!("dpkg-query {DPKG_FORMAT} -W clou-lab-hello"),
                "apt-cache policy clou-lab-hello".to_owned(),
                format!("find {LISTS_PARTIAL} -maxdepth 0 -mmin -60"),
                UPDATE.to_owned(),
                "apt-cache policy clou-lab-hello".to_owned(),
            ]
        );
    }

    #[test]
    fn lists_fetched_within_the_hour_are_fresh_on_every_release() {
        for (output, fresh) in FIND_FRESH_ALL
            .iter()
            .map(|o| (*o, true))
            .chain([(FIND_STALE, false)])
        {
            let sys = Recorder::new();
            sys.reply(&["find"], 0, output);
            let mut state = RunState::default();
            let ctx = Ctx {
                sys: &sys,
                check: false,
                want_diff: false,
                sensitive: false,
                run: &mut state,
            };
            assert_eq!(lists_fresh(&ctx).unwrap(), fresh, "{output:?}");
        }
    }

    #[test]
    fn latest_never_updates_in_check_mode() {
        let sys = Recorder::new();
        sys.reply(&["find", LISTS_PARTIAL], 0, FIND_STALE);
        sys.reply(&["dpkg-query"], 1, DPKG_HELLO_1_BOOKWORM);
        sys.reply(&["apt-cache", "policy"], 0, POLICY_HELLO_1_BOOKWORM);
        let (changes, _) = run(
            &sys,
            true,
            vec![with("clou-lab-hello", PackageState::Latest, None)],
        );
        assert_eq!(
            changes.unwrap(),
            vec!["upgrade clou-lab-hello 1.0-1 -> 2.0-1"]
        );
        let commands = sys.commands();
        assert!(!commands.iter().any(|c| c == UPDATE), "{commands:?}");
        assert!(
            !commands.iter().any(|c| c.starts_with(INSTALL)),
            "{commands:?}"
        );
    }

    #[test]
    fn exact_version_downgrades() {
        let sys = host(DPKG_HELLO_2_BOOKWORM, POLICY_HELLO_2_BOOKWORM);
        let (changes, _) = run(
            &sys,
            false,
            vec![with("clou-lab-hello", PackageState::Present, Some("1.0-1"))],
        );
        assert_eq!(
            changes.unwrap(),
            vec!["downgrade clou-lab-hello 2.0-1 -> 1.0-1"]
        );
        assert_eq!(
            sys.commands().last().unwrap(),
            &format!("{INSTALL} clou-lab-hello=1.0-1")
        );
    }

    #[test]
    fn exact_version_upgrades() {
        let sys = host(DPKG_HELLO_1_BOOKWORM, POLICY_HELLO_1_BOOKWORM);
        let (changes, _) = run(
            &sys,
            false,
            vec![with("clou-lab-hello", PackageState::Present, Some("2.0-1"))],
        );
        assert_eq!(
            changes.unwrap(),
            vec!["upgrade clou-lab-hello 1.0-1 -> 2.0-1"]
        );
    }

    #[test]
    fn absent_purges_installed_packages_and_leftover_configuration() {
        let sys = host(DPKG_HELLO_1_BOOKWORM, POLICY_HELLO_1_BOOKWORM);
        let (changes, state) = run(
            &sys,
            false,
            vec![
                with("sudo", PackageState::Absent, None),
                with("clou-lab-hello", PackageState::Absent, None),
            ],
        );
        assert_eq!(
            changes.unwrap(),
            vec![
                "remove clou-lab-hello 1.0-1",
                "remove sudo 1.9.13p3-1+deb12u4"
            ]
        );
        assert_eq!(
            sys.commands().last().unwrap(),
            &format!("{INSTALL} clou-lab-hello- sudo-")
        );
        assert!(state.planned.is_empty());

        let sys = host(DPKG_HELLO_RC_BOOKWORM, POLICY_HELLO_RC_BOOKWORM);
        let (changes, _) = run(
            &sys,
            false,
            vec![with("clou-lab-hello", PackageState::Absent, None)],
        );
        assert_eq!(
            changes.unwrap(),
            vec!["purge clou-lab-hello (configuration files left by 2.0-1)"]
        );

        let sys = host(DPKG_HELLO_PURGED_BOOKWORM, POLICY_HELLO_RC_BOOKWORM);
        let (changes, _) = run(
            &sys,
            false,
            vec![with("clou-lab-hello", PackageState::Absent, None)],
        );
        assert_eq!(changes.unwrap(), Vec::<String>::new());
        assert_eq!(sys.commands().len(), 2, "{:?}", sys.commands());
    }

    #[test]
    fn failed_transaction_is_an_error_with_apts_output() {
        // bravo after a purge of both that sudo's prerm refused (root has
        // no password): clou-lab-hello gone but its configuration, sudo
        // still installed. The next run asks for the rest, and apt fails
        // the same way.
        let sys = host(DPKG_HELLO_HALF_PURGED_BOOKWORM, POLICY_HELLO_RC_BOOKWORM);
        sys.reply(
            &["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y"],
            100,
            APT_SUDO_REFUSED,
        );
        let absent = vec![
            with("clou-lab-hello", PackageState::Absent, None),
            with("sudo", PackageState::Absent, None),
        ];
        let (result, _) = run(&sys, false, absent);
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("clou-lab-hello- sudo-` failed (exit 100)"),
            "{err}"
        );
        assert!(err.contains("Refusing to remove sudo."), "{err}");
        assert!(
            err.ends_with("Processing was halted because there were too many errors."),
            "{err}"
        );
        assert!(!err.contains('\r'), "{err}");
        assert_eq!(
            sys.commands().last().unwrap(),
            &format!("{INSTALL} clou-lab-hello- sudo-")
        );
        let sys = host(DPKG_HELLO_HALF_PURGED_BOOKWORM, POLICY_HELLO_RC_BOOKWORM);
        let (changes, _) = run(
            &sys,
            true,
            vec![
                with("clou-lab-hello", PackageState::Absent, None),
                with("sudo", PackageState::Absent, None),
            ],
        );
        assert_eq!(
            changes.unwrap(),
            vec![
                "purge clou-lab-hello (configuration files left by 1.0-1)",
                "remove sudo 1.9.13p3-1+deb12u4",
            ]
        );
    }

    #[test]
    fn removed_package_with_configuration_left_is_reinstalled_for_present() {
        let sys = host(DPKG_HELLO_RC_BOOKWORM, POLICY_HELLO_RC_BOOKWORM);
        let (changes, _) = run(&sys, false, vec![pkg("clou-lab-hello")]);
        assert_eq!(changes.unwrap(), vec!["install clou-lab-hello 2.0-1"]);
    }

    #[test]
    fn unknown_packages_update_the_lists_first() {
        // alpha and charlie had never run apt-get update: their lists are
        // empty, only the dpkg status is known.
        for (dpkg, empty, fresh) in [
            (
                DPKG_NOTHING_BULLSEYE,
                POLICY_EMPTY_BULLSEYE,
                POLICY_NOTHING_BULLSEYE,
            ),
            (
                DPKG_NOTHING_TRIXIE,
                POLICY_EMPTY_TRIXIE,
                POLICY_NOTHING_TRIXIE,
            ),
        ] {
            let sys = Recorder::new();
            sys.reply(&["dpkg-query"], 1, dpkg);
            let policy = PolicyScript::new(&[empty, fresh]);
            let sys = Scripted { rec: sys, policy };
            let mut state = RunState::default();
            let mut ctx = Ctx {
                sys: &sys,
                check: false,
                want_diff: false,
                sensitive: false,
                run: &mut state,
            };
            let outcome = converge(&Batch::new(vec![pkg("clou-lab-hello")]), &mut ctx).unwrap();
            assert_eq!(outcome.changes, vec!["install clou-lab-hello 2.0-1"]);
            assert_eq!(
                sys.rec.commands(),
                vec![
                    format!("dpkg-query {DPKG_FORMAT} -W clou-lab-hello"),
                    "apt-cache policy clou-lab-hello".to_owned(),
                    UPDATE.to_owned(),
                    "apt-cache policy clou-lab-hello".to_owned(),
                    format!("{SIMULATE} clou-lab-hello"),
                    format!("{INSTALL} clou-lab-hello"),
                ]
            );
        }
    }

    #[test]
    fn check_mode_reports_unknown_packages_without_updating() {
        let sys = host(DPKG_NOTHING_TRIXIE, POLICY_EMPTY_TRIXIE);
        let (changes, state) = run(
            &sys,
            true,
            vec![
                pkg("clou-lab-hello"),
                with("sudo", PackageState::Present, Some("1.9.16p2-3+deb13u5")),
            ],
        );
        assert_eq!(
            changes.unwrap(),
            vec![
                "install clou-lab-hello (not in the apt lists; apt-get update would run first)",
                "install sudo 1.9.16p2-3+deb13u5 (not in the apt lists; apt-get update would run first)",
            ]
        );
        // Only reads: no update, no simulation (apt does not know the
        // packages yet), no install.
        assert_eq!(sys.commands(), queries());
        assert!(state.planned.contains("package:clou-lab-hello"));
        assert!(state.planned.contains("package:sudo"));
    }

    #[test]
    fn check_mode_simulates_but_never_installs() {
        let sys = host(DPKG_HELLO_1_BOOKWORM, POLICY_HELLO_1_BOOKWORM);
        sys.reply(&["apt-get"], 0, SIM_UPGRADE_HELLO_PURGE_SUDO[1]);
        let (changes, _) = run(
            &sys,
            true,
            vec![
                with("clou-lab-hello", PackageState::Present, Some("2.0-1")),
                with("sudo", PackageState::Absent, None),
            ],
        );
        assert_eq!(
            changes.unwrap(),
            vec![
                "upgrade clou-lab-hello 1.0-1 -> 2.0-1",
                "remove sudo 1.9.13p3-1+deb12u4"
            ]
        );
        let mut expected = queries();
        expected.push(format!("{SIMULATE} clou-lab-hello=2.0-1 sudo-"));
        assert_eq!(sys.commands(), expected);
    }

    #[test]
    fn unknown_package_after_update_is_an_error_naming_it() {
        let sys = host(DPKG_NOTHING_TRIXIE, POLICY_NOTHING_TRIXIE);
        let (result, _) = run(&sys, false, vec![pkg("nosuchpkg")]);
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("no package nosuchpkg in the apt sources of this host"),
            "{err}"
        );
        let commands = sys.commands();
        assert!(commands.iter().any(|c| c == UPDATE), "{commands:?}");
        assert!(
            !commands.iter().any(|c| c.starts_with(INSTALL)),
            "{commands:?}"
        );
    }

    #[test]
    fn unknown_version_after_update_is_an_error_listing_the_known_ones() {
        let sys = host(DPKG_HELLO_1_BOOKWORM, POLICY_HELLO_1_BOOKWORM);
        let (result, _) = run(
            &sys,
            false,
            vec![with("clou-lab-hello", PackageState::Present, Some("3.0-1"))],
        );
        let err = result.unwrap_err().to_string();
        assert!(err.contains("version 3.0-1 of clou-lab-hello"), "{err}");
        assert!(err.contains("2.0-1, 1.0-1"), "{err}");
        assert!(sys.commands().iter().any(|c| c == UPDATE));
    }

    #[test]
    fn removal_nobody_asked_for_stops_the_batch_on_every_release() {
        for [dpkg, policy, simulation] in REMOVE_SSH_CLIENT {
            let sys = Recorder::new();
            sys.reply(&["dpkg-query"], 0, dpkg);
            sys.reply(&["apt-cache", "policy"], 0, policy);
            sys.reply(&["apt-get"], 0, simulation);
            let (result, _) = run(
                &sys,
                false,
                vec![with("openssh-client", PackageState::Absent, None)],
            );
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("would also remove openssh-server, openssh-sftp-server"),
                "{err}"
            );
            let commands = sys.commands();
            assert!(
                !commands.iter().any(|c| c.starts_with(INSTALL)),
                "{commands:?}"
            );
        }
    }

    #[test]
    fn removals_asked_for_pass_the_simulation_on_every_release() {
        for simulation in SIM_UPGRADE_HELLO_PURGE_SUDO {
            assert_eq!(removals(simulation), vec!["sudo"]);
        }
    }

    #[test]
    fn conflicting_declarations_are_refused() {
        let sys = Recorder::new();
        let (result, _) = run(
            &sys,
            false,
            vec![pkg("sudo"), with("sudo", PackageState::Absent, None)],
        );
        assert!(result.unwrap_err().to_string().contains("declared twice"));
        assert!(sys.commands().is_empty());
        // The same declaration twice (two roles) is one package.
        let sys = host(DPKG_HELLO_1_BOOKWORM, POLICY_HELLO_1_BOOKWORM);
        let (result, _) = run(&sys, false, vec![pkg("sudo"), pkg("sudo")]);
        assert_eq!(result.unwrap(), Vec::<String>::new());
    }

    #[test]
    fn names_and_versions_apt_would_misread_are_refused() {
        for spec in [
            pkg("-o"),
            pkg("nginx-"),
            pkg("x"),
            pkg("Nginx"),
            pkg("nginx=1.2"),
            with("nginx", PackageState::Present, Some("1.2 -y")),
            with("nginx", PackageState::Latest, Some("1.2")),
        ] {
            let sys = Recorder::new();
            let (result, _) = run(&sys, false, vec![spec.clone()]);
            assert!(
                matches!(result, Err(Error::Invalid(_))),
                "{spec:?}: {result:?}"
            );
            assert!(sys.commands().is_empty());
        }
    }

    #[test]
    fn empty_batch_runs_nothing() {
        let sys = Recorder::new();
        let (result, _) = run(&sys, false, vec![]);
        assert_eq!(result.unwrap(), Vec::<String>::new());
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn policy_parser_reads_candidates_and_sources() {
        let policy = parse_policy(POLICY_HELLO_1_BOOKWORM);
        assert_eq!(
            policy["clou-lab-hello"],
            Policy {
                candidate: Some("2.0-1".into()),
                versions: vec![("2.0-1".into(), true), ("1.0-1".into(), true)],
            }
        );
        assert_eq!(
            policy["openssh-server"],
            Policy {
                candidate: Some("1:9.2p1-2+deb12u10".into()),
                versions: vec![("1:9.2p1-2+deb12u10".into(), false)],
            }
        );
        assert!(!policy.contains_key("nosuchpkg"));
        assert!(
            parse_policy(POLICY_EMPTY_BULLSEYE)
                .keys()
                .eq(["openssh-server"])
        );
    }

    #[test]
    fn dpkg_parser_reads_status() {
        let rc = parse_installed(DPKG_HELLO_RC_BOOKWORM);
        let hello = &rc["clou-lab-hello"];
        assert!(!hello.is_installed() && hello.config_left() && hello.on_disk());
        assert!(rc["sudo"].is_installed());
        assert!(!parse_installed(DPKG_HELLO_PURGED_BOOKWORM).contains_key("clou-lab-hello"));
    }

    /// Answers `apt-cache policy` from a list of outputs, one per call (the
    /// lists change between calls when apt-get update runs).
    struct PolicyScript {
        outputs: std::cell::RefCell<Vec<String>>,
    }

    impl PolicyScript {
        fn new(outputs: &[&str]) -> PolicyScript {
            PolicyScript {
                outputs: std::cell::RefCell::new(
                    outputs.iter().rev().map(|s| s.to_string()).collect(),
                ),
            }
        }
    }

    struct Scripted {
        rec: Recorder,
        policy: PolicyScript,
    }

    impl crate::system::System for Scripted {
        fn run(&self, cmd: &Cmd) -> std::io::Result<crate::system::Output> {
            let out = self.rec.run(cmd)?;
            if cmd
                .argv
                .starts_with(&["apt-cache".to_owned(), "policy".to_owned()])
            {
                let mut outputs = self.policy.outputs.borrow_mut();
                let text = if outputs.len() > 1 {
                    outputs.pop().unwrap_or_default()
                } else {
                    outputs.last().cloned().unwrap_or_default()
                };
                return Ok(crate::system::Output {
                    code: Some(0),
                    stdout: text.into_bytes(),
                    stderr: Vec::new(),
                });
            }
            Ok(out)
        }
    }
}
