//! Building a host's plan: inventory + roles -> the concrete resources the
//! agent applies.
//!
//! This is a pure function of its inputs (no connection, no clock), so it
//! runs for every host before any host is contacted: bad input stops clou
//! before anything changes anywhere, and plans are snapshot-tested.
//!
//! For each role of the host (dependencies first), each resource is:
//! 1. repeated for each element of `for_each` (a var holding a list; the
//!    element is `item` in templates), and dropped when `when` renders to
//!    an empty string, `false`, `no` or `0`;
//! 2. rendered: every string field is a template; a field that is exactly
//!    `{{ some.var }}` takes the var's value as is when it is a list, a
//!    mapping or a boolean (a list stays a list);
//! 3. for files, `template:` (from the role's `templates/`) or `source:`
//!    (from its `files/`) becomes `content`;
//! 4. checked against the agent's spec for its kind
//!    (`clou_protocol::resource`): unknown fields, bad modes and the like
//!    are errors naming `role.yaml:line`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use clou_protocol::{Resource, RolePlan, Step};
use serde_json::{Map, Value, json};

use crate::inventory::{Host, Inventory};
use crate::role::{Item, Role, Roles};
use crate::template::{Data, Templates};
use crate::vars::{self, Var};

/// Fields any resource may carry besides its kind's own.
pub const COMMON_FIELDS: &[&str] = &["notify", "id", "sensitive", "confirm", "for_each", "when"];

/// Why a host's plan cannot be built. Nothing has been contacted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// `file:line` (or the host) the problem is at.
    pub where_: String,
    pub host: String,
    pub what: String,
    pub hint: Option<String>,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (host {})", self.where_, self.what, self.host)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}

/// Builds plans for the hosts of one inventory.
#[derive(Debug)]
pub struct Planner<'a> {
    inventory: &'a Inventory,
    roles: &'a Roles,
    templates: Templates,
    /// `--tenant`: only the resources repeated over this tenant.
    tenant: Option<TenantFilter>,
}

/// `--tenant NAME` or `--tenant APP/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantFilter {
    pub app: Option<String>,
    pub name: String,
}

impl TenantFilter {
    /// Parses the option and checks that such a tenant exists.
    pub fn parse(text: &str, inventory: &Inventory) -> Result<TenantFilter, String> {
        let (app, name) = match text.split_once('/') {
            Some((app, name)) => (Some(app.to_owned()), name.to_owned()),
            None => (None, text.to_owned()),
        };
        let exists = inventory.tenants.iter().any(|(a, ts)| {
            app.as_ref().is_none_or(|want| want == a) && ts.iter().any(|t| t.name == name)
        });
        if !exists {
            let known: Vec<String> = inventory
                .tenants
                .iter()
                .flat_map(|(a, ts)| ts.iter().map(move |t| format!("{a}/{}", t.name)))
                .take(12)
                .collect();
            return Err(format!(
                "--tenant {text}: no such tenant under `tenants:` in {}\n  hint: tenants are APP/NAME, e.g. {}",
                inventory.path.display(),
                if known.is_empty() {
                    "none yet".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
        Ok(TenantFilter { app, name })
    }

    fn matches(&self, item: &Value) -> bool {
        item.get("name").and_then(Value::as_str) == Some(self.name.as_str())
            && self
                .app
                .as_ref()
                .is_none_or(|app| item.get("app").and_then(Value::as_str) == Some(app))
    }
}

/// A host's roles (dependencies first) and merged vars.
#[derive(Debug, Clone)]
pub struct HostVars {
    pub roles: Vec<String>,
    pub vars: BTreeMap<String, Var>,
}

impl<'a> Planner<'a> {
    /// Compiles every template of every role.
    pub fn new(inventory: &'a Inventory, roles: &'a Roles) -> Result<Planner<'a>, PlanError> {
        let mut templates = Templates::new();
        for role in roles.roles.values() {
            for file in files_under(&role.dir.join("templates")) {
                templates.register_file(&file).map_err(|f| PlanError {
                    where_: f.where_,
                    host: "any".into(),
                    what: f.what,
                    hint: None,
                })?;
            }
        }
        for (app, tenants) in &inventory.tenants {
            let line = tenants.first().map(|t| t.line).unwrap_or(0);
            let what = match roles.roles.get(app) {
                None => format!("tenants.{app}: no role {app:?} to run them"),
                Some(role) if role.tenant.is_none() => format!(
                    "tenants.{app}: role {app} is not an application (its role.yaml has no `tenant:`)"
                ),
                Some(_) => continue,
            };
            return Err(PlanError {
                where_: format!("{}:{line}", inventory.path.display()),
                host: "any".into(),
                what,
                hint: Some(format!(
                    "applications: {}",
                    roles
                        .roles
                        .values()
                        .filter(|r| r.tenant.is_some())
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        }
        Ok(Planner {
            inventory,
            roles,
            templates,
            tenant: None,
        })
    }

    /// Limits plans to the resources repeated over one tenant
    /// (`for_each: tenants.APP` or `host.tenants`) and the handlers they
    /// notify: `clou apply --tenant`.
    pub fn only_tenant(&mut self, filter: TenantFilter) {
        self.tenant = Some(filter);
    }

    /// The roles of a host: its groups' (in group order), then its own,
    /// with dependencies first. `only` keeps the named roles (and what they
    /// depend on).
    pub fn host_vars(
        &self,
        host: &Host,
        extra: &BTreeMap<String, Value>,
        only: Option<&[String]>,
    ) -> Result<HostVars, PlanError> {
        let err = |e: crate::role::RoleError| PlanError {
            where_: self.inventory.path.display().to_string(),
            host: host.name.clone(),
            what: e.to_string(),
            hint: None,
        };
        let mut named: Vec<String> = Vec::new();
        for group in self.inventory.groups_of(&host.name) {
            if let Some(g) = self.inventory.groups.get(&group) {
                named.extend(g.roles.iter().cloned());
            }
        }
        named.extend(host.roles.iter().cloned());
        let wanted_by = format!("{}: host {}", self.inventory.path.display(), host.name);
        let roles = self.roles.expand(&named, &wanted_by).map_err(err)?;
        // Vars (and `host.roles`) come from every role of the host, so that
        // a run limited to some roles renders them exactly as a full run.
        let defaults: Vec<(String, &BTreeMap<String, Value>)> = roles
            .iter()
            .map(|r| (r.clone(), &self.roles.roles[r].defaults))
            .collect();
        let mut vars = vars::merge(self.inventory, host, &roles, &defaults, extra);
        // `host.services`: the services the host's roles keep running, for
        // the health check (written as plain names in role.yaml).
        let services: Vec<String> = roles
            .iter()
            .flat_map(|r| &self.roles.roles[r].resources)
            .filter(|i| {
                i.kind == "service"
                    && i.fields.get("state").and_then(Value::as_str) == Some("running")
            })
            .filter_map(|i| i.fields.get("name").and_then(Value::as_str))
            .filter(|n| !n.contains("{{") && is_service(n))
            .map(str::to_owned)
            .collect();
        let (by_app, flat) = self.tenants_of(host, &roles)?;
        if let Some(Value::Object(host_var)) = vars.get_mut("host").map(|v| &mut v.value) {
            host_var.insert("services".into(), Value::from(services));
            host_var.insert("tenants".into(), Value::Array(flat));
        }
        vars.insert(
            "tenants".into(),
            Var {
                value: Value::Object(by_app),
                origin: vars::Origin::Clou,
            },
        );
        // Ports last: they may be templates over every other var.
        let context = vars::to_context(&vars);
        let ports = self.ports_of(host, &roles, &context)?;
        let usage = self.usage_of(host, &roles, &context)?;
        let checks = self.checks_of(host, &roles, &context)?;
        if let Some(Value::Object(host_var)) = vars.get_mut("host").map(|v| &mut v.value) {
            host_var.insert("ports".into(), Value::Array(ports));
            host_var.insert(
                "checks".into(),
                serde_json::to_value(checks).unwrap_or(Value::Null),
            );
            host_var.insert(
                "usage".into(),
                serde_json::to_value(usage).unwrap_or(Value::Null),
            );
        }
        let roles = match only {
            None => roles,
            Some(only) => {
                for name in only {
                    self.roles.get(name, "--roles").map_err(err)?;
                }
                let keep = self.roles.expand(only, "--roles").map_err(err)?;
                roles.into_iter().filter(|r| keep.contains(r)).collect()
            }
        };
        Ok(HostVars { roles, vars })
    }

    /// The host's instances of each of its applications (`tenants.APP`),
    /// and all of them in one list (`host.tenants`, each with its `app`).
    /// A tenant is its role's `tenant:` defaults overlaid with its entry.
    fn tenants_of(
        &self,
        host: &Host,
        roles: &[String],
    ) -> Result<(Map<String, Value>, Vec<Value>), PlanError> {
        let mut by_app = Map::new();
        let mut flat = Vec::new();
        for name in roles {
            let role = &self.roles.roles[name];
            let Some(defaults) = &role.tenant else {
                continue;
            };
            let mut items = Vec::new();
            for t in self.inventory.tenants.get(name).into_iter().flatten() {
                if t.host.as_ref().is_some_and(|h| *h != host.name) {
                    continue;
                }
                let mut item = defaults.clone();
                for (key, value) in &t.settings {
                    if !defaults.contains_key(key) {
                        return Err(PlanError {
                            where_: format!("{}:{}", self.inventory.path.display(), t.line),
                            host: host.name.clone(),
                            what: format!("tenant {} of {name}: unknown setting {key:?}", t.name),
                            hint: Some(format!(
                                "{} declares these tenant settings: {}",
                                role.file().display(),
                                if defaults.is_empty() {
                                    "none".to_owned()
                                } else {
                                    defaults.keys().cloned().collect::<Vec<_>>().join(", ")
                                }
                            )),
                        });
                    }
                    item.insert(key.clone(), value.clone());
                }
                item.insert("name".into(), Value::from(t.name.clone()));
                item.insert("domain".into(), Value::from(t.domain.clone()));
                item.insert("quota".into(), json!(t.quota));
                item.insert("state".into(), Value::from(t.state()));
                item.insert("app".into(), Value::from(name.clone()));
                items.push(Value::Object(item));
            }
            flat.extend(items.iter().cloned());
            by_app.insert(name.clone(), Value::Array(items));
        }
        Ok((by_app, flat))
    }

    /// `host.usage`: what `clou usage` measures on this host, one item per
    /// tenant of each application whose role has a `usage:` section.
    pub fn usage_of(
        &self,
        host: &Host,
        roles: &[String],
        context: &Value,
    ) -> Result<Vec<clou_protocol::UsageItem>, PlanError> {
        let mut out = Vec::new();
        for name in roles {
            let role = &self.roles.roles[name];
            let Some((usage, line)) = &role.usage else {
                continue;
            };
            if role.tenant.is_none() {
                return Err(PlanError {
                    where_: role.at(*line),
                    host: host.name.clone(),
                    what:
                        "usage: only an application (a role with `tenant:`) is measured per tenant"
                            .into(),
                    hint: Some("add `tenant: {}` or remove `usage:`".into()),
                });
            }
            let tenants = context
                .get("tenants")
                .and_then(|t| t.get(name))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut data = Data::new(context.clone());
            for tenant in tenants {
                data.set_item(Some(tenant.clone()));
                let render = |field: &str, text: &str| {
                    self.render_role_field(
                        role,
                        *line,
                        host,
                        &format!("usage: in `{field}`"),
                        text,
                        &data,
                    )
                };
                let users = match &usage.users {
                    None => None,
                    Some(argv) => Some(
                        argv.iter()
                            .map(|a| render("users", a))
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                };
                let data = usage
                    .data
                    .iter()
                    .map(|d| render("data", d))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(bad) = data.iter().find(|d| !d.starts_with('/')) {
                    return Err(PlanError {
                        where_: role.at(*line),
                        host: host.name.clone(),
                        what: format!("usage: data path {bad:?} is not absolute"),
                        hint: None,
                    });
                }
                out.push(clou_protocol::UsageItem {
                    service: render("service", &usage.service)?,
                    app: name.clone(),
                    tenant: tenant["name"].as_str().unwrap_or_default().to_owned(),
                    active: tenant["state"] == "active",
                    users,
                    data,
                });
            }
        }
        Ok(out)
    }

    /// Renders a string of a role section (`usage:`, `checks:`) with
    /// `data`; an error names the role file and line, and `what`.
    fn render_role_field(
        &self,
        role: &crate::role::Role,
        line: u64,
        host: &Host,
        what: &str,
        text: &str,
        data: &Data,
    ) -> Result<String, PlanError> {
        self.templates
            .render_str(&role.at(line), text, data)
            .map_err(|f| PlanError {
                where_: role.at(line),
                host: host.name.clone(),
                what: format!("{what}: {}", f.what),
                hint: None,
            })
    }

    /// The pages the host's roles serve (their `checks:`), for the health
    /// check: once per active tenant in an application, once otherwise.
    pub fn checks_of(
        &self,
        host: &Host,
        roles: &[String],
        context: &Value,
    ) -> Result<Vec<clou_protocol::health::HttpCheck>, PlanError> {
        let mut out = Vec::new();
        for name in roles {
            let role = &self.roles.roles[name];
            if role.checks.is_empty() {
                continue;
            }
            let items: Vec<Option<Value>> = if role.tenant.is_some() {
                context
                    .get("tenants")
                    .and_then(|t| t.get(name))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|t| t["state"] == "active")
                    .cloned()
                    .map(Some)
                    .collect()
            } else {
                vec![None]
            };
            let mut data = Data::new(context.clone());
            for item in items {
                data.set_item(item);
                for (check, line) in &role.checks {
                    let render = |field: &str, text: &str| {
                        self.render_role_field(
                            role,
                            *line,
                            host,
                            &format!("checks: in `{field}`"),
                            text,
                            &data,
                        )
                    };
                    let url = render("http", &check.http)?;
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(PlanError {
                            where_: role.at(*line),
                            host: host.name.clone(),
                            what: format!("checks: {url:?} is not an http:// or https:// URL"),
                            hint: None,
                        });
                    }
                    let insecure = match &check.insecure {
                        Some(text) => truthy(&render("insecure", text)?),
                        None => false,
                    };
                    out.push(clou_protocol::health::HttpCheck {
                        url,
                        insecure,
                        timeout_secs: check.timeout.unwrap_or(10),
                    });
                }
            }
        }
        Ok(out)
    }

    /// `host.ports`: what the host's roles open, as `{port, proto, from,
    /// role}` with `from` the allowed addresses (empty: anywhere).
    fn ports_of(
        &self,
        host: &Host,
        roles: &[String],
        context: &Value,
    ) -> Result<Vec<Value>, PlanError> {
        let mut out = Vec::new();
        let data = Data::new(context.clone());
        for name in roles {
            let role = &self.roles.roles[name];
            for (value, line) in &role.ports {
                let err = |what: String| PlanError {
                    where_: role.at(*line),
                    host: host.name.clone(),
                    what: format!("ports: {what}"),
                    hint: Some(
                        "write 443, \"53/udp\" or {port: 9100, proto: tcp, from: [monitoring]}"
                            .into(),
                    ),
                };
                let render = |text: &str| -> Result<String, PlanError> {
                    self.templates
                        .render_str(&role.at(*line), text, &data)
                        .map_err(|f| err(f.what))
                };
                let (port, proto, from) = match value {
                    Value::Number(n) => (n.to_string(), "tcp".to_owned(), Vec::new()),
                    Value::String(text) => {
                        let text = render(text)?;
                        match text.split_once('/') {
                            Some((p, proto)) => (p.to_owned(), proto.to_owned(), Vec::new()),
                            None => (text, "tcp".to_owned(), Vec::new()),
                        }
                    }
                    Value::Object(map) => {
                        for key in map.keys() {
                            if !["port", "proto", "from"].contains(&key.as_str()) {
                                return Err(err(format!("unknown field {key:?}")));
                            }
                        }
                        let port = match map.get("port") {
                            Some(Value::Number(n)) => n.to_string(),
                            Some(Value::String(s)) => render(s)?,
                            _ => return Err(err("an entry needs a `port`".into())),
                        };
                        let proto = match map.get("proto") {
                            None => "tcp".to_owned(),
                            Some(Value::String(s)) => render(s)?,
                            Some(other) => {
                                return Err(err(format!("proto {other} is not tcp or udp")));
                            }
                        };
                        let from = match map.get("from") {
                            None => Vec::new(),
                            Some(Value::Array(names)) => names
                                .iter()
                                .map(|n| match n {
                                    Value::String(s) => render(s),
                                    other => Err(err(format!(
                                        "from: {other} is not a host or group name"
                                    ))),
                                })
                                .collect::<Result<_, _>>()?,
                            Some(other) => return Err(err(format!("from: {other} is not a list"))),
                        };
                        (port, proto, from)
                    }
                    other => return Err(err(format!("{other} is not a port"))),
                };
                let port: u16 = match port.trim().parse() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(err(format!("{port:?} is not a port number (1-65535)"))),
                };
                if proto != "tcp" && proto != "udp" {
                    return Err(err(format!("proto {proto:?} is not tcp or udp")));
                }
                let mut addresses = Vec::new();
                for name in &from {
                    if name.parse::<std::net::IpAddr>().is_ok() || is_cidr(name) {
                        addresses.push(name.clone());
                    } else if let Some(h) = self.inventory.host(name) {
                        addresses.push(h.address.clone());
                    } else if self.inventory.groups.contains_key(name) {
                        for h in self.inventory.group_hosts(name) {
                            if let Some(h) = self.inventory.host(&h) {
                                addresses.push(h.address.clone());
                            }
                        }
                    } else {
                        return Err(err(format!(
                            "from: {name:?} is no host, group or address of the inventory"
                        )));
                    }
                }
                addresses.sort();
                addresses.dedup();
                out.push(json!({"port": port, "proto": proto, "from": addresses, "role": name}));
            }
        }
        Ok(out)
    }

    /// The host's plan, role by role.
    pub fn plan(
        &self,
        host: &Host,
        extra: &BTreeMap<String, Value>,
        only: Option<&[String]>,
    ) -> Result<Vec<RolePlan>, PlanError> {
        let HostVars { roles, vars } = self.host_vars(host, extra, only)?;
        let data = RefCell::new(Data::new(vars::to_context(&vars)));
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (index, name) in roles.iter().enumerate() {
            let role = &self.roles.roles[name];
            let builder = RoleBuilder {
                planner: self,
                host,
                role,
                earlier: &roles[..index],
                data: &data,
            };
            let mut plan = RolePlan {
                name: name.clone(),
                resources: Vec::new(),
                handlers: Vec::new(),
            };
            for item in &role.resources {
                for step in builder.steps(item, None)? {
                    let at = role.at(item.line);
                    // A secret command's argv is not its name anywhere.
                    let key = if step.sensitive {
                        step.id.clone()
                    } else {
                        format!("{}:{}", step.resource.kind(), step.resource.subject())
                    };
                    if let Some(first) = seen.insert(key.clone(), at.clone()) {
                        return Err(PlanError {
                            where_: at,
                            host: host.name.clone(),
                            what: format!("{key} is declared twice (first at {first})"),
                            hint: Some(
                                "keep one declaration, or give them different paths/names".into(),
                            ),
                        });
                    }
                    plan.resources.push(step);
                }
            }
            for (handler_name, item) in &role.handlers {
                for field in ["for_each", "id"] {
                    if item.fields.contains_key(field) {
                        return Err(builder.error(
                            item.line,
                            format!("handler {handler_name:?}: a handler cannot have `{field}`"),
                            Some("a handler is one resource, named by its key under `handlers:`"),
                        ));
                    }
                }
                if item.kind == "package" {
                    return Err(builder.error(
                        item.line,
                        format!("handler {handler_name:?}: a package cannot be a handler"),
                        Some("packages are converged together in one apt transaction; declare it under `resources:`"),
                    ));
                }
                let mut steps = builder.steps(item, Some(handler_name))?;
                plan.handlers.append(&mut steps);
            }
            out.push(plan);
        }
        Ok(out)
    }
}

struct RoleBuilder<'p, 'a> {
    planner: &'p Planner<'a>,
    host: &'p Host,
    role: &'p Role,
    /// Roles before this one, whose handlers may be notified too.
    earlier: &'p [String],
    /// The host's vars, and `item` while a `for_each` element is built.
    data: &'p RefCell<Data>,
}

impl RoleBuilder<'_, '_> {
    fn error(&self, line: u64, what: String, hint: Option<&str>) -> PlanError {
        PlanError {
            where_: self.role.at(line),
            host: self.host.name.clone(),
            what,
            hint: hint.map(str::to_owned),
        }
    }

    /// The concrete steps of one item (several with `for_each`, none when
    /// `when` is false). `handler` is the handler's name for a handler.
    fn steps(&self, item: &Item, handler: Option<&str>) -> Result<Vec<Step>, PlanError> {
        let mut fields = item.fields.clone();
        let for_each = fields.remove("for_each");
        let when = fields.remove("when");
        let over_tenants = for_each.as_ref().is_some_and(is_tenant_loop);
        let filter = self.planner.tenant.as_ref().filter(|_| handler.is_none());
        if filter.is_some() && !over_tenants {
            return Ok(Vec::new());
        }
        let items: Vec<Option<Value>> = match for_each {
            None => vec![None],
            Some(spec) => self
                .list_for_each(item.line, &spec)?
                .into_iter()
                .filter(|v| filter.is_none_or(|f| f.matches(v)))
                .map(Some)
                .collect(),
        };
        let mut steps = Vec::new();
        for element in items {
            self.data.borrow_mut().set_item(element);
            let context = self.data.borrow();
            if let Some(when) = &when {
                let Value::String(text) = when else {
                    return Err(self.error(
                        item.line,
                        "`when` must be a string such as \"{{#if backups}}yes{{/if}}\"".into(),
                        None,
                    ));
                };
                let rendered = self.render_str(item.line, "when", text, &context)?;
                if !truthy(&rendered) {
                    continue;
                }
            }
            steps.push(self.step(item, &fields, &context, handler)?);
        }
        self.data.borrow_mut().set_item(None);
        Ok(steps)
    }

    fn list_for_each(&self, line: u64, spec: &Value) -> Result<Vec<Value>, PlanError> {
        let value = match spec {
            Value::String(name) => {
                let name = name
                    .trim()
                    .trim_start_matches("{{")
                    .trim_end_matches("}}")
                    .trim();
                lookup(self.data.borrow().value(), name).cloned().ok_or_else(|| {
                    self.error(
                        line,
                        format!("`for_each: {name}`: no var {name:?} is set for this host"),
                        Some("set it in the inventory or the role's defaults (an empty list is fine)"),
                    )
                })?
            }
            other => other.clone(),
        };
        match value {
            Value::Array(items) => Ok(items),
            other => Err(self.error(
                line,
                format!("`for_each` needs a list, found {}", short(&other)),
                None,
            )),
        }
    }

    fn step(
        &self,
        item: &Item,
        fields: &Map<String, Value>,
        context: &Data,
        handler: Option<&str>,
    ) -> Result<Step, PlanError> {
        let line = item.line;
        let mut fields = fields.clone();
        let notify = match fields.remove("notify") {
            None => Vec::new(),
            Some(Value::String(name)) => vec![name],
            Some(Value::Array(names)) => names
                .into_iter()
                .map(|n| match n {
                    Value::String(s) => Ok(s),
                    other => Err(self.error(
                        line,
                        format!("notify: {} is not a handler name", short(&other)),
                        None,
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(self.error(
                    line,
                    format!("notify: {} is not a handler name", short(&other)),
                    None,
                ));
            }
        };
        let sensitive = match fields.remove("sensitive") {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(self.error(
                    line,
                    format!("sensitive: {} is not true or false", short(&other)),
                    None,
                ));
            }
        };
        let confirm = match fields.remove("confirm") {
            None => false,
            Some(Value::Bool(b)) if !b || item.kind == "file" => b,
            Some(Value::Bool(_)) => {
                return Err(self.error(
                    line,
                    format!(
                        "confirm: only a file can be kept-if-confirmed, not a {}",
                        item.kind
                    ),
                    Some("put the setting in a file resource (a drop-in) and mark that one"),
                ));
            }
            Some(other) => {
                return Err(self.error(
                    line,
                    format!("confirm: {} is not true or false", short(&other)),
                    None,
                ));
            }
        };
        // An id is a template too, so that a sensitive command repeated
        // with for_each can be named per element (`install {{item.name}}`).
        let explicit_id = match fields.remove("id") {
            None => None,
            Some(Value::String(id)) => Some(self.render_str(line, "id", &id, context)?),
            Some(other) => {
                return Err(self.error(
                    line,
                    format!("id: {} is not a string", short(&other)),
                    None,
                ));
            }
        };

        let mut rendered = Map::new();
        for (key, value) in fields {
            rendered.insert(key.clone(), self.render_value(line, &key, value, context)?);
        }
        if item.kind == "file" {
            self.file_content(line, &mut rendered, context)?;
        }
        let resource: Resource = serde_json::from_value(
            json!({ item.kind.clone(): Value::Object(rendered) }),
        )
        .map_err(|err| {
            let text = err.to_string();
            if text.starts_with("unknown variant") {
                self.error(
                    line,
                    format!("unknown resource kind `{}`", item.kind),
                    Some(
                        "kinds are file, directory, symlink, line, package, service, user, \
                                 group, command, archive, release",
                    ),
                )
            } else {
                self.error(line, format!("{} resource: {text}", item.kind), None)
            }
        })?;
        let id = match (handler, explicit_id) {
            (Some(name), _) => format!("{}/{name}", self.role.name),
            (None, Some(id)) => format!("{}/{id}", self.role.name),
            // The subject of a command is its argv, which may hold the
            // secret: a sensitive one is named by its program and line.
            (None, None) if sensitive => match &resource {
                Resource::Command(spec) => format!(
                    "{}/command:{}@{}",
                    self.role.name,
                    spec.argv.first().map(String::as_str).unwrap_or(""),
                    line
                ),
                _ => format!(
                    "{}/{}:{}",
                    self.role.name,
                    resource.kind(),
                    resource.subject()
                ),
            },
            (None, None) => format!(
                "{}/{}:{}",
                self.role.name,
                resource.kind(),
                resource.subject()
            ),
        };
        let notify = notify
            .into_iter()
            .map(|name| self.handler_id(line, &name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Step {
            id,
            notify,
            sensitive,
            confirm,
            resource,
        })
    }

    /// `role/name` of a handler of this role or of an earlier one.
    fn handler_id(&self, line: u64, name: &str) -> Result<String, PlanError> {
        let roles = self.planner.roles;
        let own = std::iter::once(self.role.name.as_str())
            .chain(self.earlier.iter().rev().map(String::as_str));
        for role in own {
            if roles.roles[role].handlers.iter().any(|(n, _)| n == name) {
                return Ok(format!("{role}/{name}"));
            }
        }
        let known: Vec<&str> = self.role.handlers.iter().map(|(n, _)| n.as_str()).collect();
        Err(self.error(
            line,
            format!(
                "notify: no handler {name:?} in role {} or the roles before it",
                self.role.name
            ),
            Some(&if known.is_empty() {
                "declare it under `handlers:` in role.yaml".to_owned()
            } else {
                format!("this role's handlers: {}", known.join(", "))
            }),
        ))
    }

    fn render_str(
        &self,
        line: u64,
        field: &str,
        text: &str,
        context: &Data,
    ) -> Result<String, PlanError> {
        let where_ = format!("{} ({field})", self.role.at(line));
        self.planner
            .templates
            .render_str(&where_, text, context)
            .map_err(|f| PlanError {
                where_: self.role.at(line),
                host: self.host.name.clone(),
                what: format!("in `{field}`: {}", f.what),
                hint: None,
            })
    }

    /// Renders every string in a field's value.
    fn render_value(
        &self,
        line: u64,
        field: &str,
        value: Value,
        context: &Data,
    ) -> Result<Value, PlanError> {
        Ok(match value {
            Value::String(text) => {
                if let Some(path) = whole_expression(&text) {
                    match lookup(context.value(), path) {
                        // Lists, mappings and booleans keep their type; a
                        // number becomes text like any rendered string
                        // (argv elements, versions and modes are strings).
                        Some(Value::Number(n)) => Value::String(n.to_string()),
                        Some(Value::String(s)) => Value::String(s.clone()),
                        Some(v) => v.clone(),
                        None => {
                            return Err(self.error(
                                line,
                                format!(
                                    "in `{field}`: undefined variable `{path}`; set it in the inventory \
                                     (vars), in the role's defaults, or with -e {path}=..."
                                ),
                                None,
                            ));
                        }
                    }
                } else {
                    Value::String(self.render_str(line, field, &text, context)?)
                }
            }
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|v| self.render_value(line, field, v, context))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k, self.render_value(line, field, v, context)?);
                }
                Value::Object(out)
            }
            other => other,
        })
    }

    /// Turns `content:` / `template:` / `source:` into the agent's content.
    fn file_content(
        &self,
        line: u64,
        fields: &mut Map<String, Value>,
        context: &Data,
    ) -> Result<(), PlanError> {
        let given: Vec<&str> = ["content", "template", "source"]
            .into_iter()
            .filter(|k| fields.contains_key(*k))
            .collect();
        if given.len() > 1 {
            return Err(self.error(
                line,
                format!(
                    "a file takes one of content, template or source, not {}",
                    given.join(" and ")
                ),
                None,
            ));
        }
        let content = if let Some(value) = fields.remove("template") {
            let name = self.relative_name(line, "template", &value)?;
            let path = self.role.dir.join("templates").join(&name);
            if !self.planner.templates.has_file(&path) {
                return Err(self.error(
                    line,
                    format!("template {name:?} not found: no file {}", path.display()),
                    Some("templates live in the role's templates/ directory"),
                ));
            }
            let text = self
                .planner
                .templates
                .render_file(&path, context)
                .map_err(|f| PlanError {
                    where_: f.where_,
                    host: self.host.name.clone(),
                    what: f.what,
                    hint: Some(format!("used by {}", self.role.at(line))),
                })?;
            json!({ "text": text })
        } else if let Some(value) = fields.remove("source") {
            let name = self.relative_name(line, "source", &value)?;
            let files = self.role.dir.join("files");
            let path = files.join(&name);
            let escapes = match (path.canonicalize(), files.canonicalize()) {
                (Ok(real), Ok(base)) => !real.starts_with(base),
                _ => false,
            };
            if escapes {
                return Err(self.error(
                    line,
                    format!(
                        "source {name:?} leads outside {} (through a symbolic link)",
                        files.display()
                    ),
                    Some("a role only ships files from its own files/ directory"),
                ));
            }
            let bytes = std::fs::read(&path).map_err(|err| {
                self.error(
                    line,
                    format!("source {name:?}: cannot read {}: {err}", path.display()),
                    Some("files live in the role's files/ directory"),
                )
            })?;
            match String::from_utf8(bytes) {
                Ok(text) => json!({ "text": text }),
                Err(err) => {
                    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(err.into_bytes()) })
                }
            }
        } else if let Some(value) = fields.remove("content") {
            match value {
                Value::String(text) => json!({ "text": text }),
                other => other,
            }
        } else {
            return Ok(());
        };
        fields.insert("content".into(), content);
        Ok(())
    }

    /// A `template:`/`source:` value: a relative path that stays inside.
    fn relative_name(&self, line: u64, field: &str, value: &Value) -> Result<PathBuf, PlanError> {
        let Value::String(name) = value else {
            return Err(self.error(
                line,
                format!("{field}: {} is not a file name", short(value)),
                None,
            ));
        };
        let path = Path::new(name);
        let inside = !name.is_empty()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            let dir = if field == "template" {
                "templates"
            } else {
                "files"
            };
            return Err(self.error(
                line,
                format!("{field} {name:?} escapes the role directory"),
                Some(&format!(
                    "name a file inside {}/{dir}/, without `..` or a leading /",
                    self.role.dir.display()
                )),
            ));
        }
        Ok(path.to_owned())
    }
}

/// `for_each: tenants.APP` or `for_each: host.tenants`.
fn is_tenant_loop(spec: &Value) -> bool {
    spec.as_str().is_some_and(|s| {
        let name = s
            .trim()
            .trim_start_matches("{{")
            .trim_end_matches("}}")
            .trim();
        name.starts_with("tenants.") || name == "host.tenants"
    })
}

/// `192.0.2.0/24`, `2001:db8::/32`.
fn is_cidr(text: &str) -> bool {
    text.split_once('/').is_some_and(|(ip, len)| {
        ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 128)
    })
}

/// The truth of a rendered `when:` (and the like): false when empty,
/// `false`, `no`, `0` or `null`.
pub fn truthy(rendered: &str) -> bool {
    !matches!(rendered.trim(), "" | "false" | "no" | "0" | "null")
}

/// A service unit's name (`nginx`, `nginx.service`), not a timer's or
/// socket's.
pub fn is_service(name: &str) -> bool {
    ![".timer", ".socket", ".path"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// `some.var` when `text` is exactly `{{ some.var }}`.
fn whole_expression(text: &str) -> Option<&str> {
    // Only the whole text: "{{stamp}}\n" is a string with a newline.
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let valid = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    valid.then_some(inner)
}

/// A dotted path into a JSON value (`host.name`, `admins.0.keys`).
fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

/// Regular files under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every distinct package name the `used` roles declare without
/// templating, for the lab's apt repository.
pub fn declared_packages(roles: &Roles, used: &[String]) -> BTreeSet<String> {
    roles
        .roles
        .values()
        .filter(|r| used.contains(&r.name))
        .flat_map(|r| r.resources.iter().chain(r.handlers.iter().map(|(_, i)| i)))
        .filter(|i| i.kind == "package")
        // A package a role removes is not one the lab must carry (and may
        // conflict with one it installs: systemd-timesyncd and chrony).
        .filter(|i| i.fields.get("state").and_then(Value::as_str) != Some("absent"))
        .filter_map(|i| i.fields.get("name").and_then(Value::as_str))
        .filter(|n| !n.contains("{{"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_yaml;

    /// An inventory and roles in a temporary directory.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("inventory")).unwrap();
            Fixture { dir }
        }

        fn role(&self, name: &str, yaml: &str) -> &Fixture {
            let dir = self.dir.path().join("roles").join(name);
            std::fs::create_dir_all(dir.join("templates")).unwrap();
            std::fs::create_dir_all(dir.join("files")).unwrap();
            std::fs::write(dir.join("role.yaml"), yaml).unwrap();
            self
        }

        fn file(&self, rel: &str, content: &str) -> &Fixture {
            let path = self.dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
            self
        }

        fn plan(&self, inventory: &str) -> Result<Vec<RolePlan>, String> {
            self.plan_tenant(inventory, None)
        }

        fn plan_tenant(
            &self,
            inventory: &str,
            tenant: Option<&str>,
        ) -> Result<Vec<RolePlan>, String> {
            let path = self.dir.path().join("inventory/test.yaml");
            let inv = Inventory::from_raw(
                &path,
                parse_yaml(&path, inventory).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            let roles = Roles::load(&inv.roles_path).map_err(|e| e.to_string())?;
            let mut planner = Planner::new(&inv, &roles).map_err(|e| e.to_string())?;
            if let Some(t) = tenant {
                planner.only_tenant(TenantFilter::parse(t, &inv)?);
            }
            planner
                .plan(&inv.hosts[0], &BTreeMap::new(), None)
                .map_err(|e| e.to_string())
        }

        fn error(&self, inventory: &str) -> String {
            match self.plan(inventory) {
                Ok(plan) => panic!("expected an error, got {plan:?}"),
                Err(err) => err.replace(&self.dir.path().display().to_string(), "ROOT"),
            }
        }
    }

    const WEB: &str = "hosts: {web: {roles: [base]}}\n";

    /// An application role with two tenants, one archived.
    fn wiki() -> Fixture {
        let f = Fixture::new();
        f.role(
            "wiki",
            "tenant: {php_memory: 256M}\n\
             resources:\n\
             \x20 - directory: {path: /srv/wiki}\n\
             \x20 - file:\n\
             \x20     for_each: tenants.wiki\n\
             \x20     path: \"/etc/nginx/sites-enabled/{{item.name}}.conf\"\n\
             \x20     content: \"server_name {{item.domain}}; # {{item.php_memory}} {{item.app}}\\n\"\n\
             \x20     state: '{{#if (eq item.state \"active\")}}present{{else}}absent{{/if}}'\n\
             \x20     notify: reload\n\
             handlers:\n\
             \x20 reload: {service: {name: nginx, action: reload}}\n",
        );
        f
    }

    const WIKIS: &str = "hosts: {web: {roles: [wiki]}}\n\
        tenants:\n\
        \x20 wiki:\n\
        \x20   - {name: amap, domain: wiki.amap.example.org, php_memory: 1G}\n\
        \x20   - {name: old, domain: wiki.old.example.org, state: archived}\n";

    #[test]
    fn tenants_are_items_with_their_role_defaults() {
        let plan = wiki().plan(WIKIS).unwrap();
        let files: Vec<_> = plan[0]
            .resources
            .iter()
            .filter_map(|s| match &s.resource {
                Resource::File(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "/etc/nginx/sites-enabled/amap.conf");
        let text = serde_json::to_string(&files[0].content).unwrap();
        assert!(
            text.contains("server_name wiki.amap.example.org; # 1G wiki"),
            "{text}"
        );
        let text = serde_json::to_string(&files[1].content).unwrap();
        assert!(text.contains("# 256M wiki"), "{text}");
        assert_eq!(
            serde_json::to_value(files[1].state).unwrap(),
            "absent",
            "an archived tenant is no longer served"
        );
    }

    #[test]
    fn only_tenant_keeps_that_tenants_resources_and_handlers() {
        let plan = wiki().plan_tenant(WIKIS, Some("wiki/amap")).unwrap();
        let ids: Vec<&str> = plan[0].resources.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["wiki/file:/etc/nginx/sites-enabled/amap.conf"]);
        assert_eq!(plan[0].handlers.len(), 1);
        let err = wiki().plan_tenant(WIKIS, Some("nobody")).unwrap_err();
        assert!(err.contains("--tenant nobody: no such tenant"), "{err}");
        assert!(err.contains("wiki/amap"), "{err}");
    }

    #[test]
    fn tenant_errors_name_the_inventory_line() {
        let f = wiki();
        let err = f.error(
            "hosts: {web: {roles: [wiki]}}\ntenants:\n  wiki:\n    - {name: a, domain: a.example.org, php_memroy: 1G}\n",
        );
        assert!(
            err.contains("test.yaml:4: tenant a of wiki: unknown setting \"php_memroy\""),
            "{err}"
        );
        assert!(err.contains("php_memory"), "{err}");
        let err = f.error("hosts: {web: {roles: [wiki]}}\ntenants:\n  blog:\n    - {name: a, domain: a.example.org}\n");
        assert!(err.contains("tenants.blog: no role \"blog\""), "{err}");
        assert!(err.contains("applications: wiki"), "{err}");
    }

    #[test]
    fn ports_become_host_ports_with_addresses() {
        let f = Fixture::new();
        f.role(
            "base",
            "defaults: {metrics_port: 9100}\n\
             ports: [22, \"53/udp\", {port: \"{{metrics_port}}\", from: [watch, 10.0.0.0/8]}]\n\
             resources:\n\
             \x20 - file: {path: /etc/ports, content: \"{{json host.ports}}\"}\n",
        );
        let plan = f
            .plan("hosts: {web: {roles: [base]}, mon: {address: 192.0.2.9}}\ngroups: {watch: {hosts: [mon]}}\n")
            .unwrap();
        let Resource::File(file) = &plan[0].resources[0].resource else {
            panic!()
        };
        let text = serde_json::to_value(&file.content).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let ports: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            ports,
            json!([
                {"port": 22, "proto": "tcp", "from": [], "role": "base"},
                {"port": 53, "proto": "udp", "from": [], "role": "base"},
                {"port": 9100, "proto": "tcp", "from": ["10.0.0.0/8", "192.0.2.9"], "role": "base"},
            ])
        );
        f.role("base", "ports: [{port: 80, from: [nowhere]}]\n");
        let err = f.error(WEB);
        assert!(
            err.contains("base/role.yaml:1: ports: from: \"nowhere\" is no host, group or address"),
            "{err}"
        );
        f.role("base", "ports: [\"80/sctp\"]\n");
        assert!(f.error(WEB).contains("proto \"sctp\" is not tcp or udp"));
    }

    #[test]
    fn a_role_renders_to_concrete_steps() {
        let f = Fixture::new();
        f.role(
            "base",
            "defaults: {greeting: Bonjour}\n\
             resources:\n\
             \x20 - file: {path: /etc/motd, template: motd.hbs, notify: reread}\n\
             \x20 - user: {for_each: admins, name: '{{item.name}}', authorized_keys: '{{item.keys}}'}\n\
             handlers:\n\
             \x20 reread: {command: {argv: ['true']}}\n",
        )
        .file("roles/base/templates/motd.hbs", "{{greeting}} {{host.name}}\n");
        let plan = f
            .plan("vars: {admins: [{name: camille, keys: [k1, k2]}]}\nhosts: {web: {roles: [base]}}\n")
            .unwrap();
        let steps = &plan[0].resources;
        assert_eq!(steps[0].id, "base/file:/etc/motd");
        assert_eq!(steps[0].notify, ["base/reread"]);
        let json = serde_json::to_value(&steps[0].resource).unwrap();
        assert_eq!(json["file"]["content"]["text"], "Bonjour web\n");
        let user = serde_json::to_value(&steps[1].resource).unwrap();
        assert_eq!(
            user["user"]["authorized_keys"],
            json!(["k1", "k2"]),
            "a whole-var field keeps its list"
        );
        assert_eq!(plan[0].handlers[0].id, "base/reread");
    }

    #[test]
    fn an_unknown_field_names_the_role_file_and_line() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - directory: {path: /srv}\n  - file: {pth: /etc/motd}\n",
        );
        let err = f.error(WEB);
        assert!(
            err.starts_with(
                "ROOT/inventory/../roles/base/role.yaml:3: file resource: unknown field `pth`"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_kind_is_named_with_the_kinds_there_are() {
        let f = Fixture::new();
        f.role("base", "resources:\n  - fiel: {path: /etc/motd}\n");
        let err = f.error(WEB);
        assert!(
            err.contains("role.yaml:2: unknown resource kind `fiel`"),
            "{err}"
        );
        assert!(err.contains("kinds are file, directory"), "{err}");
    }

    #[test]
    fn an_undefined_variable_names_it() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - file: {path: '/etc/{{nope}}', content: x}\n",
        );
        let err = f.error(WEB);
        assert!(
            err.contains("role.yaml:2: in `path`: undefined variable `nope`"),
            "{err}"
        );
    }

    #[test]
    fn an_undefined_variable_in_a_template_names_template_and_line() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - file: {path: /etc/motd, template: motd.hbs}\n",
        )
        .file("roles/base/templates/motd.hbs", "hello\n{{missing_var}}\n");
        let err = f.error(WEB);
        assert!(
            err.contains("templates/motd.hbs:2:1: undefined variable `missing_var`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_template_is_named() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - file: {path: /etc/motd, template: nope.hbs}\n",
        );
        let err = f.error(WEB);
        assert!(
            err.contains("role.yaml:2: template \"nope.hbs\" not found"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_role_is_named_with_the_host() {
        let f = Fixture::new();
        f.role("base", "{}\n");
        let err = f.error("hosts: {web: {roles: [bsae]}}\n");
        assert!(err.contains("host web: unknown role \"bsae\""), "{err}");
    }

    #[test]
    fn a_cyclic_dependency_is_refused() {
        let f = Fixture::new();
        f.role("base", "depends: [web]\n")
            .role("web", "depends: [base]\n");
        let err = f.error(WEB);
        assert!(err.contains("cycle: base -> web -> base"), "{err}");
    }

    #[test]
    fn an_id_is_a_template_so_a_repeated_sensitive_command_is_named_per_element() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n\
             \x20 - command:\n\
             \x20     for_each: sites\n\
             \x20     id: \"install {{item}}\"\n\
             \x20     argv: [install, \"{{item}}\"]\n\
             \x20     sensitive: true\n",
        );
        let plan = f
            .plan("vars: {sites: [a, b]}\nhosts: {web: {roles: [base]}}\n")
            .unwrap();
        let ids: Vec<&str> = plan[0].resources.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["base/install a", "base/install b"]);
    }

    #[test]
    fn the_lab_carries_the_packages_roles_install_not_those_they_remove() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - package: {name: chrony}\n  - package: {name: systemd-timesyncd, state: absent}\n",
        );
        let path = f.dir.path().join("roles");
        let roles = Roles::load(&[path]).unwrap();
        let used = ["base".to_owned()];
        assert_eq!(
            declared_packages(&roles, &used),
            BTreeSet::from(["chrony".to_owned()])
        );
        assert!(declared_packages(&roles, &[]).is_empty());
    }

    #[test]
    fn a_duplicate_resource_is_refused_with_both_lines() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - file: {path: /etc/motd, content: a}\n  - file: {path: /etc/motd, content: b}\n",
        );
        let err = f.error(WEB);
        assert!(
            err.contains("role.yaml:3: file:/etc/motd is declared twice (first at"),
            "{err}"
        );
        assert!(err.contains("role.yaml:2)"), "{err}");
    }

    #[test]
    fn a_bad_mode_is_refused() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - file: {path: /etc/motd, content: a, mode: '999'}\n",
        );
        let err = f.error(WEB);
        assert!(
            err.contains("role.yaml:2: file resource: mode \"999\" is not an octal file mode"),
            "{err}"
        );
    }

    #[test]
    fn a_source_that_escapes_the_role_is_refused() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - file: {path: /etc/shadow, source: ../../../etc/shadow}\n",
        );
        let err = f.error(WEB);
        assert!(
            err.contains("role.yaml:2: source \"../../../etc/shadow\" escapes the role directory"),
            "{err}"
        );
        std::os::unix::fs::symlink("/etc/hostname", f.dir.path().join("roles/base/files/link"))
            .unwrap();
        f.role(
            "base",
            "resources:\n  - file: {path: /etc/x, source: link}\n",
        );
        let err = f.error(WEB);
        assert!(err.contains("leads outside"), "{err}");
    }

    #[test]
    fn an_unknown_handler_is_refused() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - file: {path: /etc/motd, content: a, notify: reload nginx}\n",
        );
        let err = f.error(WEB);
        assert!(
            err.contains("role.yaml:2: notify: no handler \"reload nginx\""),
            "{err}"
        );
    }

    #[test]
    fn a_secret_command_is_not_named_by_its_arguments() {
        let f = Fixture::new();
        f.role(
            "base",
            "resources:\n  - command: {argv: [occ, user:add, --password, s3cret], sensitive: true, creates: /x}\n",
        );
        let plan = f.plan(WEB).unwrap();
        assert_eq!(plan[0].resources[0].id, "base/command:occ@2");
        assert!(plan[0].resources[0].sensitive);
    }

    #[test]
    fn handlers_cannot_loop_or_install_packages() {
        let f = Fixture::new();
        f.role(
            "base",
            "handlers:\n  h: {command: {argv: ['true']}, for_each: [a, b]}\n",
        );
        assert!(f.error(WEB).contains("a handler cannot have `for_each`"));
        f.role("base", "handlers:\n  h: {package: {name: nginx}}\n");
        assert!(f.error(WEB).contains("a package cannot be a handler"));
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let f = Fixture::new();
        f.role("base", "resources:\n  - file: {path: /etc/motd\n");
        let err = f.error(WEB);
        assert!(err.contains("roles/base/role.yaml:"), "{err}");
    }

    #[test]
    fn when_drops_a_resource_and_handlers_of_earlier_roles_resolve() {
        let f = Fixture::new();
        f.role(
            "base",
            "handlers:\n  restart x: {service: {name: x, action: restart}}\n",
        )
        .role(
            "web",
            "depends: [base]\nresources:\n\
             \x20 - file: {path: /a, content: a, notify: restart x}\n\
             \x20 - file: {path: /b, content: b, when: '{{#if enabled}}yes{{/if}}'}\n",
        );
        let plan = f
            .plan("vars: {enabled: false}\nhosts: {web: {roles: [web]}}\n")
            .unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].resources.len(), 1);
        assert_eq!(plan[1].resources[0].notify, ["base/restart x"]);
    }

    /// Every shipped role, rendered for every Girofle host: reviewing a
    /// change to a role or the inventory is reviewing this snapshot.
    #[test]
    fn shipped_roles_render_for_every_girofle_host() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/girofle.yaml");
        let inv = Inventory::load(&path).unwrap();
        let roles = Roles::load(&inv.roles_path).unwrap();
        let planner = Planner::new(&inv, &roles).unwrap();
        // Production's secret_key comes from the admins' secrets, never
        // from the inventory: the snapshot uses a fixed stand-in.
        let extra = BTreeMap::from([("secret_key".to_owned(), json!("snapshot-secret-key"))]);
        for host in &inv.hosts {
            let plan = planner.plan(host, &extra, None).unwrap();
            let text = serde_json::to_string_pretty(&plan).unwrap();
            insta::assert_snapshot!(format!("plan-{}", host.name), text);
        }
    }

    #[test]
    fn each_active_instance_gets_its_page_checked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/girofle.yaml");
        let inv = Inventory::load(&path).unwrap();
        let roles = Roles::load(&inv.roles_path).unwrap();
        let planner = Planner::new(&inv, &roles).unwrap();
        let host = inv
            .hosts
            .iter()
            .find(|h| h.name == "nextcloud-data")
            .unwrap();
        let checks = |extra: &BTreeMap<String, Value>| {
            let vars = planner.host_vars(host, extra, None).unwrap();
            let checks: Vec<clou_protocol::health::HttpCheck> =
                serde_json::from_value(vars.vars["host"].value["checks"].clone()).unwrap();
            checks
        };
        let production = checks(&BTreeMap::new());
        let urls: Vec<&str> = production.iter().map(|c| c.url.as_str()).collect();
        // Four instances, one archived: three pages.
        assert_eq!(
            urls,
            [
                "https://cloud.amap-lyon.example.org/status.php",
                "https://cloud.ecole-vive.example.org/status.php",
                "https://nuage.velo-cite.example.org/status.php"
            ]
        );
        assert!(
            production
                .iter()
                .all(|c| !c.insecure && c.timeout_secs == 10)
        );
        let lab = checks(&BTreeMap::from([("tls".to_owned(), json!("self-signed"))]));
        assert!(lab.iter().all(|c| c.insecure), "{lab:?}");
    }
}
