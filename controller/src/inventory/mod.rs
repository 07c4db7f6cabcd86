//! The inventory: which hosts exist, how to reach them, what they are.
//!
//! `inventory/girofle.yaml` is read into the raw serde structs of [`raw`],
//! which mirror the file one to one and refuse unknown fields; [`Inventory`]
//! is the validated model built from them (every group reference resolved,
//! no cycle, names well formed). Everything else in clou takes an
//! [`Inventory`], never the raw structs.

pub mod edit;
pub mod raw;
pub mod tenant;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::yaml::{YamlError, load_yaml};

/// Debian releases clou knows how to manage (and the lab can boot).
pub const RELEASES: &[&str] = &["bullseye", "bookworm", "trixie"];

/// The release a host is assumed to run when its entry says nothing.
pub const DEFAULT_RELEASE: &str = "bookworm";

/// An inventory that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("{file}: {what}\n  hint: {hint}")]
    Invalid {
        file: PathBuf,
        what: String,
        hint: String,
    },
}

/// A validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
    /// Groups by name.
    pub groups: BTreeMap<String, Group>,
    /// Vars for every host.
    pub vars: BTreeMap<String, Value>,
    /// Settings used only by `clou lab`.
    pub lab: raw::LabSettings,
    /// known_hosts to check host keys against first (a lab overlay's own).
    pub known_hosts: Option<PathBuf>,
    /// SSH private key to log in with (a lab overlay's own).
    pub identity: Option<PathBuf>,
    /// Directories searched for roles, in order.
    pub roles_path: Vec<PathBuf>,
    /// Each application's instances, by the application's role name.
    pub tenants: BTreeMap<String, Vec<tenant::Tenant>>,
    /// Vars of the lab replica (`lab: vars:` and the overlay's own); empty
    /// outside the lab.
    pub lab_vars: BTreeMap<String, Value>,
    /// The lab's directory when this is a lab overlay: what clou records
    /// about a rehearsal (usage snapshots...) goes there, not beside the
    /// production inventory.
    pub lab_dir: Option<PathBuf>,
}

/// One server.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Address or DNS name to connect to.
    pub address: String,
    pub port: u16,
    /// The SSH user.
    pub user: String,
    /// How the agent gets root.
    pub become_: raw::Become,
    /// Debian release codename (bullseye, bookworm, trixie).
    pub release: String,
    /// Roles named on the host itself.
    pub roles: Vec<String>,
    pub vars: BTreeMap<String, Value>,
}

/// A named set of hosts, possibly nested.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub roles: Vec<String>,
    pub vars: BTreeMap<String, Value>,
}

impl Inventory {
    /// Reads and validates an inventory file, or a lab overlay of one
    /// (a file with `overlay_of:`, written by `clou lab up`).
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let probe: BTreeMap<String, serde::de::IgnoredAny> = load_yaml(path)?;
        if probe.contains_key("overlay_of") {
            return Inventory::load_overlay(path);
        }
        let raw: raw::Inventory = load_yaml(path)?;
        Inventory::from_raw(path, raw)
    }

    /// Reads a lab overlay: the inventory it names, with every host at the
    /// overlay's address. A host the overlay does not list is an error, so
    /// that a rehearsal never reaches a production address.
    fn load_overlay(path: &Path) -> Result<Inventory, InventoryError> {
        let overlay: raw::Overlay = load_yaml(path)?;
        let base_raw: raw::Inventory = load_yaml(&overlay.overlay_of)?;
        let mut inv = Inventory::from_raw(&overlay.overlay_of, base_raw)?;
        for host in &mut inv.hosts {
            let Some(o) = overlay.hosts.get(&host.name) else {
                return Err(InventoryError::Invalid {
                    file: path.to_owned(),
                    what: format!(
                        "host {} of {} has no lab address",
                        host.name,
                        overlay.overlay_of.display()
                    ),
                    hint: "run `clou lab up` again to rewrite the overlay".into(),
                });
            };
            host.address = o.address.clone();
            host.port = o.port.unwrap_or(22);
            host.user = o.user.clone().unwrap_or_else(|| "root".into());
            host.become_ = if host.user == "root" {
                raw::Become::Root
            } else {
                raw::Become::Sudo
            };
        }
        inv.known_hosts = overlay.known_hosts;
        inv.identity = overlay.identity;
        inv.lab_dir = path.parent().map(Path::to_owned);
        inv.lab_vars = inv.lab.vars.clone();
        inv.lab_vars.extend(overlay.vars);
        Ok(inv)
    }

    /// Validates raw data read from `path`.
    pub fn from_raw(path: &Path, raw: raw::Inventory) -> Result<Inventory, InventoryError> {
        let invalid = |what: String, hint: &str| InventoryError::Invalid {
            file: path.to_owned(),
            what,
            hint: hint.to_owned(),
        };
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        for (name, h) in raw.hosts {
            if !is_valid_hostname(&name) {
                return Err(invalid(
                    format!("host name {name:?} is not a valid host name"),
                    "use lower-case letters, digits and '-', at most 63 characters, starting with a letter",
                ));
            }
            let release = h.release.unwrap_or_else(|| DEFAULT_RELEASE.to_owned());
            if !RELEASES.contains(&release.as_str()) {
                return Err(invalid(
                    format!("host {name}: release {release:?} is not one clou manages"),
                    &format!("use one of {}", RELEASES.join(", ")),
                ));
            }
            let user = h.user.unwrap_or_else(|| "root".to_owned());
            let become_ = h.become_.unwrap_or(if user == "root" {
                raw::Become::Root
            } else {
                raw::Become::Sudo
            });
            if become_ == raw::Become::Root && user != "root" {
                return Err(invalid(
                    format!("host {name}: `become: root` but the SSH user is {user:?}"),
                    "log in as root (user: root), or use `become: sudo`",
                ));
            }
            hosts.push(Host {
                address: h.address.unwrap_or_else(|| name.clone()),
                port: h.port.unwrap_or(22),
                user,
                become_,
                release,
                roles: h.roles,
                vars: h.vars,
                name,
            });
        }
        let host_names: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let mut groups = BTreeMap::new();
        for (name, g) in raw.groups {
            if host_names.contains(name.as_str()) {
                return Err(invalid(
                    format!("{name:?} is both a host and a group"),
                    "rename one of them: a pattern must name one thing",
                ));
            }
            groups.insert(
                name.clone(),
                Group {
                    name,
                    hosts: g.hosts,
                    children: g.children,
                    roles: g.roles,
                    vars: g.vars,
                },
            );
        }
        for g in groups.values() {
            for h in &g.hosts {
                if !host_names.contains(h.as_str()) {
                    return Err(invalid(
                        format!("group {}: unknown host {h:?}", g.name),
                        "add the host under `hosts:` or fix the name",
                    ));
                }
            }
            for c in &g.children {
                if !groups.contains_key(c) {
                    return Err(invalid(
                        format!("group {}: unknown child group {c:?}", g.name),
                        "add the group under `groups:` or fix the name",
                    ));
                }
            }
        }
        if let Some(cycle) = find_group_cycle(&groups) {
            return Err(invalid(
                format!("groups form a cycle: {}", cycle.join(" -> ")),
                "a group cannot contain itself, directly or through its children",
            ));
        }
        for name in raw.lab.hosts.keys() {
            if !host_names.contains(name.as_str()) {
                return Err(invalid(
                    format!("lab.hosts: unknown host {name:?}"),
                    "lab settings can only name hosts of the inventory",
                ));
            }
        }
        for (name, spare) in &raw.lab.spares {
            if !is_valid_hostname(name) {
                return Err(invalid(
                    format!("lab.spares: {name:?} is not a host name"),
                    "use lowercase letters, digits and '-'",
                ));
            }
            if let Some(release) = &spare.release
                && !RELEASES.contains(&release.as_str())
            {
                return Err(invalid(
                    format!("lab.spares.{name}: unknown release {release:?}"),
                    "use bullseye, bookworm or trixie",
                ));
            }
        }
        let tenants = tenant::validate(path, raw.tenants, &host_names)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let roles_path = if raw.roles_path.is_empty() {
            vec![base.join("../roles")]
        } else {
            raw.roles_path.iter().map(|p| base.join(p)).collect()
        };
        Ok(Inventory {
            path: path.to_owned(),
            hosts,
            groups,
            vars: raw.vars,
            lab: raw.lab,
            known_hosts: None,
            identity: None,
            roles_path,
            tenants,
            lab_vars: BTreeMap::new(),
            lab_dir: None,
        })
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The groups `host` belongs to (directly or through a child group),
    /// parents before children, then by name: the order their vars and
    /// roles apply in.
    pub fn groups_of(&self, host: &str) -> Vec<String> {
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        // Longest path from a root group; the graph has no cycle.
        fn depth_of<'a>(
            name: &'a str,
            groups: &'a BTreeMap<String, Group>,
            memo: &mut BTreeMap<&'a str, usize>,
        ) -> usize {
            if let Some(d) = memo.get(name) {
                return *d;
            }
            let d = groups
                .values()
                .filter(|g| g.children.iter().any(|c| c == name))
                .map(|parent| depth_of(&parent.name, groups, memo) + 1)
                .max()
                .unwrap_or(0);
            memo.insert(name, d);
            d
        }
        let mut member: Vec<(usize, String)> = self
            .groups
            .keys()
            .filter(|g| self.group_hosts(g).contains(host))
            .map(|g| (depth_of(g, &self.groups, &mut depth), g.clone()))
            .collect();
        member.sort();
        member.into_iter().map(|(_, g)| g).collect()
    }

    /// Every host of a group, through its children.
    pub fn group_hosts(&self, group: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![group.to_owned()];
        let mut seen = BTreeSet::new();
        while let Some(g) = todo.pop() {
            if !seen.insert(g.clone()) {
                continue;
            }
            if let Some(group) = self.groups.get(&g) {
                out.extend(group.hosts.iter().cloned());
                todo.extend(group.children.iter().cloned());
            }
        }
        out
    }
}

/// RFC 1123 label, restricted to lower case: host names are also used for
/// container, namespace and file names.
pub fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A cycle in the group graph, as the list of groups along it.
fn find_group_cycle(groups: &BTreeMap<String, Group>) -> Option<Vec<String>> {
    fn visit(
        name: &str,
        groups: &BTreeMap<String, Group>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = path.iter().position(|p| p == name) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if done.contains(name) {
            return None;
        }
        path.push(name.to_owned());
        if let Some(g) = groups.get(name) {
            for child in &g.children {
                if let Some(cycle) = visit(child, groups, path, done) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        done.insert(name.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for name in groups.keys() {
        if let Some(cycle) = visit(name, groups, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_yaml;

    fn load(text: &str) -> Result<Inventory, InventoryError> {
        let path = Path::new("inventory/test.yaml");
        let raw = parse_yaml(path, text)?;
        Inventory::from_raw(path, raw)
    }

    #[test]
    fn host_defaults_are_filled_in() {
        let inv = load("hosts:\n  web:\n    address: 192.0.2.8\n").expect("valid");
        let web = inv.host("web").expect("web");
        assert_eq!((web.port, web.user.as_str()), (22, "root"));
        assert_eq!(web.release, DEFAULT_RELEASE);
    }

    #[test]
    fn nested_groups_collect_their_children_hosts() {
        let inv = load(
            "hosts: {a: {}, b: {}, c: {}}\n\
             groups:\n  all-web: {children: [web, php]}\n  web: {hosts: [a]}\n  php: {hosts: [b]}\n",
        )
        .expect("valid");
        let hosts: Vec<_> = inv.group_hosts("all-web").into_iter().collect();
        assert_eq!(hosts, ["a", "b"]);
    }

    #[test]
    fn group_cycle_is_refused_and_named() {
        let err = load("hosts: {a: {}}\ngroups:\n  x: {children: [y]}\n  y: {children: [x]}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x -> y -> x"), "{err}");
    }

    #[test]
    fn unknown_host_in_group_is_refused() {
        let err = load("hosts: {a: {}}\ngroups:\n  x: {hosts: [b]}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown host \"b\""), "{err}");
        assert!(err.contains("inventory/test.yaml"), "{err}");
    }

    #[test]
    fn unknown_release_is_refused() {
        let err = load("hosts: {a: {release: buster}}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("buster"), "{err}");
    }

    #[test]
    fn bad_host_name_is_refused() {
        let err = load("hosts: {Web_1: {}}\n").unwrap_err().to_string();
        assert!(err.contains("Web_1"), "{err}");
    }

    #[test]
    fn unknown_field_names_its_line() {
        let err = load("hosts:\n  a:\n    adress: 192.0.2.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("inventory/test.yaml:3:"), "{err}");
    }

    #[test]
    fn a_lab_overlay_moves_every_host_and_keeps_the_rest() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/girofle.yaml");
        let prod = Inventory::load(&base).expect("girofle.yaml");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = format!(
            "overlay_of: {}\nknown_hosts: /lab/known_hosts\nhosts:\n",
            base.display()
        );
        for (i, h) in prod.hosts.iter().enumerate() {
            text.push_str(&format!("  {}: {{address: 10.99.0.{}}}\n", h.name, 11 + i));
        }
        let path = dir.path().join("inventory.yaml");
        std::fs::write(&path, &text).expect("write");
        let lab = Inventory::load(&path).expect("overlay loads");
        assert_eq!(lab.hosts.len(), prod.hosts.len());
        assert!(lab.hosts.iter().all(|h| h.address.starts_with("10.99.0.")));
        assert_eq!(lab.vars, prod.vars);
        assert_eq!(lab.groups.len(), prod.groups.len());
        assert_eq!(
            lab.known_hosts.as_deref(),
            Some(Path::new("/lab/known_hosts"))
        );

        // A host missing from the overlay would keep its production address.
        let short: String = text
            .lines()
            .filter(|l| !l.contains("web:"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, short).expect("write");
        let err = Inventory::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("host web of") && err.contains("no lab address"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_inventory_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/girofle.yaml");
        let inv = Inventory::load(&path).expect("girofle.yaml is valid");
        assert_eq!(inv.hosts.len(), 8);
    }
}
