//! A host's vars, merged from every level, each with where it came from.
//!
//! Precedence, lowest first (a later level replaces the whole value of a
//! var, it never merges into it):
//!
//! 1. role defaults (`defaults:` in `role.yaml`; a later role's over an
//!    earlier one's),
//! 2. the inventory's top-level `vars:`,
//! 3. group vars, parents before children, then by group name,
//! 4. host vars,
//! 5. in the lab only, the lab's vars (`lab: vars:` and where the lab
//!    serves its artifacts),
//! 6. the command line (`-e key=value`).
//!
//! Names reserved and set by clou for templates: `host` (name, address,
//! release, groups, roles, the services its roles keep running, the ports
//! they open and its tenants), `inventory` (`hosts`: every host name,
//! `groups`: host names by group, `addresses`: each host's address),
//! `tenants` (this host's instances of each application, see
//! [`crate::inventory::tenant`]) and `item` (the element of `for_each`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::{Value, json};

use crate::inventory::{Host, Inventory};

/// Where a var's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    RoleDefault(String),
    Inventory,
    Group(String),
    Host(String),
    Lab,
    CommandLine,
    Clou,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::RoleDefault(role) => write!(f, "role {role} defaults"),
            Origin::Inventory => f.write_str("inventory vars"),
            Origin::Group(group) => write!(f, "group {group}"),
            Origin::Host(host) => write!(f, "host {host}"),
            Origin::Lab => f.write_str("lab vars"),
            Origin::CommandLine => f.write_str("command line -e"),
            Origin::Clou => f.write_str("set by clou"),
        }
    }
}

/// One merged var.
#[derive(Debug, Clone, PartialEq)]
pub struct Var {
    pub value: Value,
    pub origin: Origin,
}

/// Names clou sets itself.
pub const RESERVED: &[&str] = &["host", "inventory", "item", "tenants"];

/// Merges a host's vars. `defaults` are the role defaults in role order.
pub fn merge(
    inventory: &Inventory,
    host: &Host,
    roles: &[String],
    defaults: &[(String, &BTreeMap<String, Value>)],
    extra: &BTreeMap<String, Value>,
) -> BTreeMap<String, Var> {
    let mut vars = BTreeMap::new();
    let mut put = |map: &BTreeMap<String, Value>, origin: Origin| {
        for (key, value) in map {
            vars.insert(
                key.clone(),
                Var {
                    value: value.clone(),
                    origin: origin.clone(),
                },
            );
        }
    };
    for (role, map) in defaults {
        put(map, Origin::RoleDefault(role.clone()));
    }
    put(&inventory.vars, Origin::Inventory);
    let groups = inventory.groups_of(&host.name);
    for group in &groups {
        if let Some(g) = inventory.groups.get(group) {
            put(&g.vars, Origin::Group(group.clone()));
        }
    }
    put(&host.vars, Origin::Host(host.name.clone()));
    put(&inventory.lab_vars, Origin::Lab);
    put(extra, Origin::CommandLine);

    let by_group: BTreeMap<&String, Vec<String>> = inventory
        .groups
        .keys()
        .map(|g| (g, inventory.group_hosts(g).into_iter().collect()))
        .collect();
    vars.insert(
        "host".to_owned(),
        Var {
            value: json!({
                "name": host.name,
                "address": host.address,
                "release": host.release,
                "groups": groups,
                "roles": roles,
            }),
            origin: Origin::Clou,
        },
    );
    vars.insert(
        "inventory".to_owned(),
        Var {
            value: json!({
                "hosts": inventory.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
                "groups": by_group,
                // Where each host is reached (its lab address in the lab):
                // relays, scrapers and firewalls name their peers.
                "addresses": inventory
                    .hosts
                    .iter()
                    .map(|h| (h.name.clone(), Value::from(h.address.clone())))
                    .collect::<serde_json::Map<_, _>>(),
            }),
            origin: Origin::Clou,
        },
    );
    vars
}

/// The vars as one JSON object, for templates.
pub fn to_context(vars: &BTreeMap<String, Var>) -> Value {
    Value::Object(
        vars.iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect(),
    )
}

/// A var set at the inventory level under a reserved name.
pub fn check_reserved(inventory: &Inventory) -> Result<(), String> {
    let mut levels: Vec<(String, &BTreeMap<String, Value>)> =
        vec![("inventory vars".to_owned(), &inventory.vars)];
    levels.extend(
        inventory
            .groups
            .values()
            .map(|g| (format!("group {}", g.name), &g.vars)),
    );
    levels.extend(
        inventory
            .hosts
            .iter()
            .map(|h| (format!("host {}", h.name), &h.vars)),
    );
    levels.push(("lab vars".to_owned(), &inventory.lab.vars));
    for (level, map) in levels {
        for name in RESERVED {
            if map.contains_key(*name) {
                return Err(format!(
                    "{}: {level} sets the var {name:?}, a name clou reserves for templates; rename it",
                    inventory.path.display()
                ));
            }
        }
    }
    Ok(())
}

/// Parses `-e key=value` arguments: `-e port=2222` is a number,
/// `-e debug=true` a boolean, `-e 'admins=[camille]'` a list; anything
/// else is a string (see `extra_value`).
pub fn parse_extra(args: &[String]) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    for arg in args {
        let Some((key, text)) = arg.split_once('=') else {
            return Err(format!(
                "-e {arg:?}: expected KEY=VALUE, e.g. -e nextcloud_version=29.0.4"
            ));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "-e {arg:?}: {key:?} is not a var name (letters, digits and _)"
            ));
        }
        if RESERVED.contains(&key) {
            return Err(format!("-e {arg:?}: {key:?} is reserved by clou"));
        }
        out.insert(key.to_owned(), extra_value(text));
    }
    Ok(out)
}

/// A `-e` value: `true`/`false`, a whole number without leading zeros, a
/// YAML flow list `[a, b]` or mapping `{a: 1}`; anything else stays the
/// text it is (so `29.10` is a version, not the number 29.1, and `0644`
/// keeps its zero).
fn extra_value(text: &str) -> Value {
    let t = text.trim();
    match t {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let digits = t.strip_prefix('-').unwrap_or(t);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && let Ok(n) = t.parse::<i64>()
    {
        return Value::from(n);
    }
    if (t.starts_with('[') || t.starts_with('{'))
        && let Ok(v) = crate::yaml::parse_yaml::<Value>(Path::new("-e"), t)
    {
        return v;
    }
    Value::String(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_yaml;

    fn inventory() -> Inventory {
        let text = "\
vars: {level: inventory, only_inv: 1}
groups:
  fleet: {children: [apps], vars: {level: fleet, only_fleet: 1}}
  apps: {hosts: [web], vars: {level: apps}}
  zz-other: {hosts: [web], vars: {level: zz-other}}
hosts:
  web: {vars: {}}
  db: {vars: {level: host-db}}
";
        let path = Path::new("inventory/test.yaml");
        Inventory::from_raw(path, parse_yaml(path, text).unwrap()).unwrap()
    }

    fn value(vars: &BTreeMap<String, Var>, key: &str) -> (Value, String) {
        let var = &vars[key];
        (var.value.clone(), var.origin.to_string())
    }

    #[test]
    fn precedence_is_defaults_inventory_parent_child_host_command_line() {
        let inv = inventory();
        let defaults: BTreeMap<String, Value> = [
            ("level".into(), json!("default")),
            ("only_default".into(), json!(1)),
        ]
        .into();
        let defaults = [("base".to_owned(), &defaults)];
        let web = inv.host("web").unwrap();
        let db = inv.host("db").unwrap();
        let none = BTreeMap::new();

        // web is in fleet (via apps), apps and zz-other; zz-other is a
        // root group like fleet, but comes later by depth: depth 0 fleet and
        // zz-other (by name), then apps at depth 1.
        let vars = merge(&inv, web, &[], &defaults, &none);
        assert_eq!(value(&vars, "level"), (json!("apps"), "group apps".into()));
        assert_eq!(value(&vars, "only_fleet"), (json!(1), "group fleet".into()));
        assert_eq!(
            value(&vars, "only_inv"),
            (json!(1), "inventory vars".into())
        );
        assert_eq!(
            value(&vars, "only_default"),
            (json!(1), "role base defaults".into())
        );

        let vars = merge(&inv, db, &[], &defaults, &none);
        assert_eq!(value(&vars, "level"), (json!("host-db"), "host db".into()));

        // In the lab, the lab's vars come above the host's, below -e.
        let mut lab = inv.clone();
        lab.lab_vars.insert("level".into(), json!("lab"));
        let vars = merge(&lab, lab.host("db").unwrap(), &[], &defaults, &none);
        assert_eq!(value(&vars, "level"), (json!("lab"), "lab vars".into()));

        let extra = parse_extra(&["level=9".into()]).unwrap();
        let vars = merge(&lab, lab.host("db").unwrap(), &[], &defaults, &extra);
        assert_eq!(value(&vars, "level"), (json!(9), "command line -e".into()));
        assert_eq!(vars["host"].value["name"], "db");
    }

    #[test]
    fn groups_apply_parents_first_then_by_name() {
        assert_eq!(inventory().groups_of("web"), ["fleet", "zz-other", "apps"]);
    }

    #[test]
    fn extra_vars_are_read_as_yaml_values() {
        let extra = parse_extra(&[
            "port=2222".into(),
            "debug=true".into(),
            "admins=[camille, dominique]".into(),
            "motd=Bonjour: les Racines".into(),
            "empty=".into(),
        ])
        .unwrap();
        assert_eq!(extra["port"], json!(2222));
        assert_eq!(extra["debug"], json!(true));
        assert_eq!(extra["admins"], json!(["camille", "dominique"]));
        assert_eq!(extra["motd"], json!("Bonjour: les Racines"));
        assert_eq!(extra["empty"], json!(""));
        let versions =
            parse_extra(&["v=29.10".into(), "mode=0644".into(), "neg=-3".into()]).unwrap();
        assert_eq!(versions["v"], json!("29.10"), "a version is text");
        assert_eq!(versions["mode"], json!("0644"));
        assert_eq!(versions["neg"], json!(-3));
        assert!(
            parse_extra(&["novalue".into()])
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(
            parse_extra(&["host=x".into()])
                .unwrap_err()
                .contains("reserved")
        );
    }

    #[test]
    fn a_reserved_name_in_the_inventory_is_refused() {
        let mut inv = inventory();
        inv.hosts[0].vars.insert("host".into(), json!("x"));
        let err = check_reserved(&inv).unwrap_err();
        assert!(err.contains("host web sets the var \"host\""), "{err}");
    }
}
