//! Tenants: the instances of an application, one per collective.
//!
//! Girofle runs 126 Nextcloud instances, 17 forums, 11 Mattermost teams...
//! An instance is data, not a copy of a role: the inventory lists them per
//! application (the application's role name), and the role's resources
//! repeat over them (`for_each: tenants.nextcloud`).
//!
//! ```yaml
//! tenants:
//!   nextcloud:
//!     - name: amap-lyon              # unique within the application
//!       domain: cloud.amap-lyon.example.org
//!       quota: 50G                   # optional
//!       state: active                # active (default) or archived
//!       host: nextcloud-data         # optional: only when the app runs on several hosts
//!       php_memory_limit: 1G         # a setting the role declares under `tenant:`
//! ```
//!
//! An archived tenant is no longer served (no vhost, no pool, no timer) but
//! keeps its data and database; roles read `item.state`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::InventoryError;

/// Fields every tenant has; a role's `tenant:` defaults cannot redefine them.
pub const FIELDS: &[&str] = &["name", "domain", "quota", "state", "host", "app"];

/// Longest tenant name: `APP-NAME` stays within Linux's 32-character user
/// names for every application name up to 11 characters.
pub const MAX_NAME: usize = 20;

/// One instance of an application.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub name: String,
    pub domain: String,
    /// Disk quota as written (`50G`), if any.
    pub quota: Option<String>,
    pub active: bool,
    /// The only host that serves it, when the application runs on several.
    pub host: Option<String>,
    /// The application's own settings (checked against the role's
    /// `tenant:` defaults when plans are built).
    pub settings: Map<String, Value>,
    /// Line of the entry in the inventory file.
    pub line: u64,
}

impl Tenant {
    /// "active" or "archived", as roles see it in `item.state`.
    pub fn state(&self) -> &'static str {
        if self.active { "active" } else { "archived" }
    }
}

/// Checks the raw `tenants:` section of `path`.
pub fn validate(
    path: &Path,
    raw: BTreeMap<String, Vec<Spanned<Map<String, Value>>>>,
    hosts: &BTreeSet<&str>,
) -> Result<BTreeMap<String, Vec<Tenant>>, InventoryError> {
    let mut out = BTreeMap::new();
    for (app, entries) in raw {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut tenants = Vec::with_capacity(entries.len());
        for entry in entries {
            let line = entry.referenced.line();
            let at = |what: String, hint: &str| InventoryError::Invalid {
                file: path.to_owned(),
                what: format!("line {line}: tenants.{app}: {what}"),
                hint: hint.to_owned(),
            };
            let mut fields = entry.value;
            let text = |fields: &mut Map<String, Value>,
                        key: &str|
             -> Result<Option<String>, InventoryError> {
                match fields.remove(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s)),
                    Some(other) => Err(at(
                        format!("`{key}` must be a string, found {other}"),
                        "quote the value",
                    )),
                }
            };
            let Some(name) = text(&mut fields, "name")? else {
                return Err(at(
                    "a tenant needs a `name`".into(),
                    "e.g. `- {name: amap-lyon, domain: cloud.amap-lyon.example.org}`",
                ));
            };
            // APP-NAME names a tenant's system user, at most 32 characters.
            if !super::is_valid_hostname(&name) || name.len() > MAX_NAME {
                return Err(at(
                    format!("tenant name {name:?} is not valid"),
                    "use at most 20 lower-case letters, digits and '-', starting with a letter (it names users, files, databases and units)",
                ));
            }
            if let Some(first) = seen.insert(name.clone(), line) {
                return Err(at(
                    format!("tenant {name:?} is listed twice (first on line {first})"),
                    "keep one entry per tenant",
                ));
            }
            let Some(domain) = text(&mut fields, "domain")? else {
                return Err(at(
                    format!("tenant {name}: no `domain`"),
                    "give the domain it is served at",
                ));
            };
            if !is_valid_domain(&domain) {
                return Err(at(
                    format!("tenant {name}: domain {domain:?} is not a domain name"),
                    "write a plain name such as cloud.example.org (no scheme, no path)",
                ));
            }
            let quota = match fields.remove("quota") {
                None | Some(Value::Null) => None,
                Some(Value::String(q)) if is_size(&q) => Some(q),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(other) => {
                    return Err(at(
                        format!("tenant {name}: quota {other} is not a size"),
                        "write a size such as 50G, 500M or 2T",
                    ));
                }
            };
            let active = match text(&mut fields, "state")?.as_deref() {
                None | Some("active") => true,
                Some("archived") => false,
                Some(other) => {
                    return Err(at(
                        format!("tenant {name}: state {other:?} is neither active nor archived"),
                        "an archived tenant is no longer served but keeps its data",
                    ));
                }
            };
            let host = text(&mut fields, "host")?;
            if let Some(h) = &host
                && !hosts.contains(h.as_str())
            {
                return Err(at(
                    format!("tenant {name}: unknown host {h:?}"),
                    "name a host of the inventory, or leave `host` out",
                ));
            }
            if fields.contains_key("app") {
                return Err(at(
                    format!("tenant {name}: `app` is set by clou"),
                    "the application is the key the tenant is listed under",
                ));
            }
            tenants.push(Tenant {
                name,
                domain,
                quota,
                active,
                host,
                settings: fields,
                line,
            });
        }
        out.insert(app, tenants);
    }
    Ok(out)
}

fn is_valid_domain(domain: &str) -> bool {
    domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `50G`, `500M`, `2T`, `1024` (bytes).
fn is_size(text: &str) -> bool {
    let digits = text.trim_end_matches(['K', 'M', 'G', 'T']);
    !digits.is_empty()
        && digits.len() + 1 >= text.len()
        && digits.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::super::Inventory;

    fn load(yaml: &str) -> Result<Inventory, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yaml");
        std::fs::write(&path, yaml).unwrap();
        Inventory::load(&path).map_err(|e| e.to_string())
    }

    const HOSTS: &str = "hosts:\n  cloud: {address: 192.0.2.1}\n";

    #[test]
    fn tenants_are_read_with_their_defaults() {
        let inv = load(&format!(
            "{HOSTS}tenants:\n  nextcloud:\n    - {{name: amap, domain: cloud.amap.example.org, quota: 50G}}\n    - name: old\n      domain: old.example.org\n      state: archived\n      php_memory_limit: 1G\n"
        ))
        .unwrap();
        let t = &inv.tenants["nextcloud"];
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "amap");
        assert_eq!(t[0].quota.as_deref(), Some("50G"));
        assert!(t[0].active);
        assert_eq!(t[1].state(), "archived");
        assert_eq!(t[1].line, 6);
        assert_eq!(t[1].settings["php_memory_limit"], "1G");
    }

    #[test]
    fn bad_tenants_name_their_line_and_what_to_do() {
        let cases = [
            (
                "- {domain: a.example.org}",
                "line 5: tenants.nextcloud: a tenant needs a `name`",
            ),
            (
                "- {name: Amap, domain: a.example.org}",
                "tenant name \"Amap\" is not valid",
            ),
            (
                "- {name: a, domain: a.example.org}\n    - {name: a, domain: b.example.org}",
                "line 6: tenants.nextcloud: tenant \"a\" is listed twice (first on line 5)",
            ),
            ("- {name: a}", "tenant a: no `domain`"),
            (
                "- {name: a, domain: 'https://a.example.org/'}",
                "is not a domain name",
            ),
            (
                "- {name: a, domain: a.example.org, quota: lots}",
                "quota \"lots\" is not a size",
            ),
            (
                "- {name: a, domain: a.example.org, state: gone}",
                "state \"gone\" is neither active nor archived",
            ),
            (
                "- {name: a, domain: a.example.org, host: nowhere}",
                "unknown host \"nowhere\"",
            ),
            (
                "- {name: a, domain: a.example.org, app: x}",
                "`app` is set by clou",
            ),
            (
                "- {name: 12, domain: a.example.org}",
                "`name` must be a string",
            ),
        ];
        for (entry, want) in cases {
            let err = load(&format!("{HOSTS}tenants:\n  nextcloud:\n    {entry}\n")).unwrap_err();
            assert!(err.contains(want), "{entry}: {err}");
            assert!(err.contains("inv.yaml"), "{err}");
        }
    }
}
