//! Roles: `roles/NAME/role.yaml`, its `templates/` and its `files/`.
//!
//! ```yaml
//! description: What the role is for.
//! depends: [base]            # roles applied before this one
//! defaults:                  # lowest-precedence vars
//!   ssh_port: 22
//! resources:                 # applied in this order
//!   - file:
//!       path: /etc/ssh/sshd_config.d/clou.conf
//!       template: sshd.conf.hbs
//!       notify: reload ssh
//! handlers:                  # run once at the end of the role when notified
//!   reload ssh:
//!     service: {name: ssh, action: reload}
//! ports:                     # what the host's firewall lets in for this role
//!   - 443                    # tcp from anywhere; or "53/udp"
//!   - {port: "{{metrics_port}}", from: [monitoring]}   # only from these hosts/groups
//! tenant:                    # an application: its instances are the inventory's
//!   web: php                 # `tenants.ROLE` entries, each with these defaults
//! checks:                    # pages it serves, asked by `clou status` and
//!   - http: "https://{{item.domain}}/status.php"   # the upgrade gate
//!     insecure: '{{#if (eq tls "self-signed")}}yes{{/if}}'
//! usage:                     # how `clou usage` counts this application
//!   service: Nextcloud
//!   users: [sh, -c, "..."]   # per tenant: prints how many users it has
//!   data: ["/var/lib/nextcloud/{{item.name}}"]   # per tenant: its data
//! ```
//!
//! A role is read here as data with line numbers; its resources stay
//! untyped (a kind name and a mapping) until [`crate::plan`] renders them
//! for a host and checks them against the agent's specs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use crate::yaml::{YamlError, load_yaml};

/// `role.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    depends: Vec<String>,
    #[serde(default)]
    defaults: BTreeMap<String, Value>,
    #[serde(default)]
    resources: Vec<Spanned<Map<String, Value>>>,
    #[serde(default, deserialize_with = "crate::yaml::ordered_map")]
    handlers: Vec<(String, Spanned<Map<String, Value>>)>,
    #[serde(default)]
    ports: Vec<Spanned<Value>>,
    #[serde(default)]
    tenant: Option<Map<String, Value>>,
    #[serde(default)]
    usage: Option<Spanned<Usage>>,
    #[serde(default)]
    checks: Vec<Spanned<Check>>,
}

/// One entry of `checks:`: a page the role serves, which `clou status` and
/// the upgrade gate ask for. Strings are templates; in an application, the
/// entry is rendered once per active tenant (as `item`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The URL, asked of the host itself (its name resolved to 127.0.0.1);
    /// it must answer 2xx or 3xx.
    pub http: String,
    /// Do not verify the certificate when this renders true (the lab's
    /// self-signed ones): same truth as `when:`.
    #[serde(default)]
    pub insecure: Option<String>,
    /// Seconds the answer may take (default 10).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// `usage:`: how `clou usage` measures an application, per tenant. Strings
/// are templates, rendered with the tenant as `item`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// The row's name in the usage table ("Nextcloud").
    pub service: String,
    /// A command run on the host whose output is the tenant's number of
    /// users (a database query through psql, `occ user:list`...).
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// Paths holding the tenant's data; their disk usage is summed.
    #[serde(default)]
    pub data: Vec<String>,
}

/// A role that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("{where_}: {what}\n  hint: {hint}")]
    Invalid {
        where_: String,
        what: String,
        hint: String,
    },
}

/// One resource (or handler) as written: its kind, its fields, its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: String,
    pub fields: Map<String, Value>,
    pub line: u64,
}

/// A loaded role.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    /// The role's directory.
    pub dir: PathBuf,
    pub description: Option<String>,
    pub depends: Vec<String>,
    pub defaults: BTreeMap<String, Value>,
    pub resources: Vec<Item>,
    /// Handlers by name, in file order.
    pub handlers: Vec<(String, Item)>,
    /// Ports the firewall opens for this role, as written, with their line.
    pub ports: Vec<(Value, u64)>,
    /// For an application, the defaults of each of its tenants (the
    /// inventory's `tenants.NAME` entries); `None` for other roles.
    pub tenant: Option<Map<String, Value>>,
    /// How `clou usage` counts this application, with its line.
    pub usage: Option<(Usage, u64)>,
    /// The pages it serves, with their lines.
    pub checks: Vec<(Check, u64)>,
}

impl Role {
    /// `roles/NAME/role.yaml`, for messages.
    pub fn file(&self) -> PathBuf {
        self.dir.join("role.yaml")
    }

    /// `file:line` of an item, for messages.
    pub fn at(&self, line: u64) -> String {
        format!("{}:{line}", self.file().display())
    }
}

/// Every role found on the roles path.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    pub roles: BTreeMap<String, Role>,
    /// Where they were looked for, for messages.
    pub searched: Vec<PathBuf>,
}

impl Roles {
    /// Loads every `*/role.yaml` under each directory of `path` (an earlier
    /// directory's role hides a later one's of the same name).
    pub fn load(path: &[PathBuf]) -> Result<Roles, RoleError> {
        let mut roles = BTreeMap::new();
        for dir in path {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .filter(|e| e.path().join("role.yaml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if roles.contains_key(&name) {
                    continue;
                }
                let role = load_role(&name, &dir.join(&name))?;
                roles.insert(name, role);
            }
        }
        let loaded = Roles {
            roles,
            searched: path.to_vec(),
        };
        loaded.check_dependencies()?;
        Ok(loaded)
    }

    /// The role called `name`, or an error listing those that exist.
    pub fn get(&self, name: &str, wanted_by: &str) -> Result<&Role, RoleError> {
        self.roles.get(name).ok_or_else(|| RoleError::Invalid {
            where_: wanted_by.to_owned(),
            what: format!("unknown role {name:?}"),
            hint: format!(
                "roles found in {}: {}",
                self.searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.roles.is_empty() {
                    "none".to_owned()
                } else {
                    self.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        })
    }

    /// `names` with their dependencies, each once, dependencies first.
    pub fn expand(&self, names: &[String], wanted_by: &str) -> Result<Vec<String>, RoleError> {
        fn visit(
            roles: &Roles,
            name: &str,
            wanted_by: &str,
            out: &mut Vec<String>,
        ) -> Result<(), RoleError> {
            if out.iter().any(|n| n == name) {
                return Ok(());
            }
            let role = roles.get(name, wanted_by)?;
            for dep in &role.depends {
                visit(roles, dep, &role.file().display().to_string(), out)?;
            }
            out.push(name.to_owned());
            Ok(())
        }
        let mut out = Vec::new();
        for name in names {
            visit(self, name, wanted_by, &mut out)?;
        }
        Ok(out)
    }

    /// Every dependency exists and none loops back.
    fn check_dependencies(&self) -> Result<(), RoleError> {
        fn visit(
            roles: &Roles,
            name: &str,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Result<(), RoleError> {
            if let Some(pos) = path.iter().position(|p| p == name) {
                let mut cycle = path[pos..].to_vec();
                cycle.push(name.to_owned());
                let first = &roles.roles[&path[pos]];
                return Err(RoleError::Invalid {
                    where_: first.file().display().to_string(),
                    what: format!(
                        "roles depend on each other in a cycle: {}",
                        cycle.join(" -> ")
                    ),
                    hint: "remove one of these `depends:` entries".into(),
                });
            }
            if done.contains(name) {
                return Ok(());
            }
            let wanted_by = path
                .last()
                .map(|p| roles.roles[p].file().display().to_string())
                .unwrap_or_default();
            let role = roles.get(name, &wanted_by)?;
            path.push(name.to_owned());
            for dep in &role.depends {
                visit(roles, dep, path, done)?;
            }
            path.pop();
            done.insert(name.to_owned());
            Ok(())
        }
        let mut done = BTreeSet::new();
        for name in self.roles.keys() {
            visit(self, name, &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }
}

fn load_role(name: &str, dir: &Path) -> Result<Role, RoleError> {
    let file = dir.join("role.yaml");
    let raw: RawRole = load_yaml(&file)?;
    let item = |spanned: Spanned<Map<String, Value>>| -> Result<Item, RoleError> {
        let line = spanned.referenced.line();
        let mut map = spanned.value;
        let kinds: Vec<&String> = map
            .keys()
            .filter(|k| !crate::plan::COMMON_FIELDS.contains(&k.as_str()))
            .collect();
        let [kind] = kinds.as_slice() else {
            return Err(RoleError::Invalid {
                where_: format!("{}:{line}", file.display()),
                what: if kinds.is_empty() {
                    "this resource names no kind".to_owned()
                } else {
                    format!(
                        "this resource names several kinds: {}",
                        kinds
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                hint:
                    "write one kind per list item, e.g. `- file: {path: /etc/motd, content: hello}`"
                        .into(),
            });
        };
        let kind = (*kind).clone();
        let Some(Value::Object(mut fields)) = map.remove(&kind) else {
            return Err(RoleError::Invalid {
                where_: format!("{}:{line}", file.display()),
                what: format!("`{kind}:` must be followed by a mapping of its fields"),
                hint: format!("e.g. `- {kind}: {{...}}`"),
            });
        };
        // Fields common to all kinds may sit beside the kind or inside it.
        for (key, value) in map {
            fields.insert(key, value);
        }
        Ok(Item { kind, fields, line })
    };
    let resources = raw
        .resources
        .into_iter()
        .map(item)
        .collect::<Result<Vec<_>, _>>()?;
    let handlers = raw
        .handlers
        .into_iter()
        .map(|(name, spanned)| Ok((name, item(spanned)?)))
        .collect::<Result<Vec<_>, RoleError>>()?;
    for key in raw.defaults.keys() {
        if crate::vars::RESERVED.contains(&key.as_str()) {
            return Err(RoleError::Invalid {
                where_: file.display().to_string(),
                what: format!("defaults set {key:?}, a name clou reserves for templates"),
                hint: "rename the var".into(),
            });
        }
    }
    Ok(Role {
        name: name.to_owned(),
        dir: dir.to_owned(),
        description: raw.description,
        depends: raw.depends,
        defaults: raw.defaults,
        resources,
        handlers,
        ports: raw
            .ports
            .into_iter()
            .map(|p| (p.value, p.referenced.line()))
            .collect(),
        tenant: raw.tenant,
        usage: raw.usage.map(|u| (u.value, u.referenced.line())),
        checks: raw
            .checks
            .into_iter()
            .map(|c| (c.value, c.referenced.line()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_role(root: &Path, name: &str, yaml: &str) {
        std::fs::create_dir_all(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("role.yaml"), yaml).unwrap();
    }

    #[test]
    fn resources_keep_their_kind_fields_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write_role(
            dir.path(),
            "base",
            "resources:\n  - directory: {path: /srv}\n  - file:\n      path: /etc/motd\n    notify: x\n",
        );
        let roles = Roles::load(&[dir.path().to_owned()]).unwrap();
        let base = &roles.roles["base"];
        assert_eq!(base.resources.len(), 2);
        assert_eq!(base.resources[0].kind, "directory");
        assert_eq!(base.resources[1].line, 3);
        assert_eq!(base.resources[1].fields["notify"], "x");
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let dir = tempfile::tempdir().unwrap();
        write_role(dir.path(), "base", "{}\n");
        write_role(dir.path(), "web", "depends: [base]\n");
        write_role(dir.path(), "wiki", "depends: [web, base]\n");
        let roles = Roles::load(&[dir.path().to_owned()]).unwrap();
        let order = roles
            .expand(&["wiki".into(), "base".into()], "test")
            .unwrap();
        assert_eq!(order, ["base", "web", "wiki"]);
    }

    #[test]
    fn a_dependency_cycle_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        write_role(dir.path(), "a", "depends: [b]\n");
        write_role(dir.path(), "b", "depends: [a]\n");
        let err = Roles::load(&[dir.path().to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
        assert!(err.contains("a/role.yaml"), "{err}");
    }

    #[test]
    fn an_unknown_role_lists_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        write_role(dir.path(), "base", "{}\n");
        let roles = Roles::load(&[dir.path().to_owned()]).unwrap();
        let err = roles
            .expand(&["bsae".into()], "host web")
            .unwrap_err()
            .to_string();
        assert!(err.contains("host web: unknown role \"bsae\""), "{err}");
        assert!(err.contains("base"), "{err}");
    }

    #[test]
    fn an_unknown_top_level_field_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        write_role(dir.path(), "base", "description: x\nresource: []\n");
        let err = Roles::load(&[dir.path().to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("base/role.yaml:2:"), "{err}");
    }

    #[test]
    fn malformed_yaml_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        write_role(dir.path(), "base", "resources:\n  - file: {path: /x\n");
        let err = Roles::load(&[dir.path().to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("base/role.yaml:"), "{err}");
    }
}
