//! Templates: handlebars in strict mode, with no HTML escaping.
//!
//! Strict mode makes an undefined variable an error (naming the template,
//! line and variable) instead of an empty string in a config file; escaping
//! is off because these are config files, not web pages.
//!
//! Helpers besides the built-in `if`, `unless`, `each`, `with`, `lookup`,
//! `eq`, `ne`, `gt`, `lt`, `and`, `or`, `not`, `len`:
//! - `{{join list ", "}}`: the items of a list joined by a separator;
//! - `{{default var "fallback"}}`: `var` when set and not null, else
//!   the fallback (the one place an undefined variable is allowed);
//! - `{{upper s}}`, `{{lower s}}`;
//! - `{{json value}}`: the value as JSON (also a valid YAML flow value).

use std::path::Path;

use handlebars::{
    Context, Handlebars, Helper, HelperResult, JsonRender, Output, RenderContext, RenderError,
    RenderErrorReason, TemplateError,
};
use serde_json::Value;

/// A template that could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{where_}: {what}")]
pub struct RenderFailure {
    /// `file:line:col` (for a template file) or the place of an inline
    /// string.
    pub where_: String,
    pub what: String,
}

/// What templates read: one host's vars, and `item` inside a `for_each`.
///
/// handlebars copies plain data into its own context at every render; a
/// host with 126 tenants has a large context and renders thousands of
/// strings, so it is wrapped once per host and `item` is swapped in place.
#[derive(Debug, Clone)]
pub struct Data(Context);

impl Data {
    pub fn new(value: Value) -> Data {
        Data(Context::from(value))
    }

    pub fn value(&self) -> &Value {
        self.0.data()
    }

    /// Sets `item` (or removes it with `None`).
    pub fn set_item(&mut self, item: Option<Value>) {
        if let Value::Object(map) = self.0.data_mut() {
            match item {
                Some(item) => {
                    map.insert("item".into(), item);
                }
                None => {
                    map.remove("item");
                }
            }
        }
    }
}

/// The template engine, with every template file registered.
#[derive(Debug)]
pub struct Templates {
    registry: Handlebars<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    /// A strict, non-escaping engine with clou's helpers.
    pub fn new() -> Templates {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper("join", Box::new(join));
        registry.register_helper("default", Box::new(default));
        registry.register_helper("password", Box::new(password));
        registry.register_helper("ssh_private_key", Box::new(ssh_key));
        registry.register_helper("ssh_public_key", Box::new(ssh_key));
        let one_param = [
            OneParam {
                name: "upper",
                map: |v| v.render().to_uppercase(),
            },
            OneParam {
                name: "lower",
                map: |v| v.render().to_lowercase(),
            },
            OneParam {
                name: "json",
                map: |v| v.to_string(),
            },
            // A database or unit name from a tenant name: `amap-lyon` ->
            // `amap_lyon`.
            OneParam {
                name: "ident",
                map: |v| {
                    v.render()
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() {
                                c.to_ascii_lowercase()
                            } else {
                                '_'
                            }
                        })
                        .collect()
                },
            },
        ];
        for helper in one_param {
            registry.register_helper(helper.name, Box::new(helper));
        }
        Templates { registry }
    }

    /// Compiles a template file under its path as name.
    pub fn register_file(&mut self, path: &Path) -> Result<(), RenderFailure> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| RenderFailure {
            where_: name.clone(),
            what: format!("cannot read the template: {err}"),
        })?;
        self.registry
            .register_template_string(&name, text)
            .map_err(|err| template_failure(&name, &err))
    }

    /// Whether a template file was registered.
    pub fn has_file(&self, path: &Path) -> bool {
        self.registry.has_template(&path.display().to_string())
    }

    /// Renders a registered template file.
    pub fn render_file(&self, path: &Path, data: &Data) -> Result<String, RenderFailure> {
        let name = path.display().to_string();
        self.registry
            .render_with_context(&name, &data.0)
            .map_err(|err| render_failure(&name, &err))
    }

    /// Renders an inline template (a string of `role.yaml`); `where_` says
    /// where it was written, for messages.
    pub fn render_str(
        &self,
        where_: &str,
        text: &str,
        data: &Data,
    ) -> Result<String, RenderFailure> {
        if !text.contains("{{") {
            return Ok(text.to_owned());
        }
        self.registry
            .render_template_with_context(text, &data.0)
            .map_err(|err| render_failure(where_, &err))
    }
}

fn template_failure(name: &str, err: &TemplateError) -> RenderFailure {
    let where_ = match err.pos() {
        Some((line, col)) => format!("{name}:{line}:{col}"),
        None => name.to_owned(),
    };
    RenderFailure {
        where_,
        what: format!("template syntax error: {}", err.reason()),
    }
}

fn render_failure(name: &str, err: &RenderError) -> RenderFailure {
    let where_ = match (err.line_no, err.column_no) {
        (Some(line), Some(col)) => format!("{name}:{line}:{col}"),
        _ => name.to_owned(),
    };
    let what = match err.reason() {
        RenderErrorReason::MissingVariable(Some(var)) => format!(
            "undefined variable `{var}`; set it in the inventory (vars), in the role's \
             defaults, or with -e {var}=..."
        ),
        RenderErrorReason::MissingVariable(None) => {
            "undefined variable; set it in the inventory or the role's defaults".to_owned()
        }
        other => other.to_string(),
    };
    RenderFailure { where_, what }
}

fn join(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let list = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("join", 0))?;
    let sep = h
        .param(1)
        .map(|p| p.value().render())
        .unwrap_or_else(|| ", ".into());
    let Value::Array(items) = list.value() else {
        return Err(RenderErrorReason::InvalidParamType("a list for join").into());
    };
    let text: Vec<String> = items.iter().map(|v| v.render()).collect();
    out.write(&text.join(&sep))?;
    Ok(())
}

fn default(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let fallback = h
        .param(1)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("default", 1))?;
    let value = h
        .param(0)
        .filter(|p| !p.is_value_missing() && !p.value().is_null())
        .unwrap_or(fallback);
    out.write(&value.value().render())?;
    Ok(())
}

/// The var holding the key every generated password derives from.
pub const SECRET_KEY_VAR: &str = "secret_key";

/// HMAC-SHA256 of the helper's parameters (joined with `/`, after
/// `domain`) under the inventory's `secret_key`: the root of every derived
/// secret, so that the same inputs always give the same secret and
/// rotating `secret_key` rotates them all.
fn derive(h: &Helper<'_>, ctx: &Context, domain: &str) -> Result<[u8; 32], RenderError> {
    use hmac::Mac as _;
    let Some(Value::String(key)) = ctx.data().get(SECRET_KEY_VAR) else {
        return Err(RenderErrorReason::Other(format!(
            "{} needs the var `{SECRET_KEY_VAR}` (a long random string, kept secret)",
            h.name()
        ))
        .into());
    };
    if key.len() < 16 {
        return Err(RenderErrorReason::Other(format!(
            "`{SECRET_KEY_VAR}` is too short: give at least 16 random characters"
        ))
        .into());
    }
    if h.params().is_empty() {
        return Err(RenderErrorReason::ParamNotFoundForIndex("a purpose", 0).into());
    }
    let mut purpose = vec![domain.to_owned()];
    purpose.extend(h.params().iter().map(|p| p.value().render()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .map_err(|e| RenderErrorReason::Other(e.to_string()))?;
    mac.update(purpose.join("/").as_bytes());
    Ok(mac.finalize().into_bytes().into())
}

/// `{{password "postgresql" item.app item.name}}`: a password for one
/// purpose, 32 base64url characters derived from `secret_key`; 126
/// database passwords are then not 126 secrets to keep.
fn password(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    use base64::Engine as _;
    let bytes = derive(h, ctx, "password")?;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    out.write(&text[..32])?;
    Ok(())
}

/// `{{ssh_private_key "backup" host.name}}` and `{{ssh_public_key ...}}`:
/// an Ed25519 key pair derived from `secret_key`, so that one host's
/// private key and another's `authorized_keys` line agree without any key
/// being copied between hosts (a backup client and its server).
fn ssh_key(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
    let seed = derive(h, ctx, "ssh-key")?;
    let comment: Vec<String> = h.params().iter().map(|p| p.value().render()).collect();
    let key = PrivateKey::new(Ed25519Keypair::from_seed(&seed).into(), comment.join("/"))
        .map_err(|e| RenderErrorReason::Other(e.to_string()))?;
    let text = if h.name() == "ssh_private_key" {
        key.to_openssh(LineEnding::LF)
            .map_err(|e| RenderErrorReason::Other(e.to_string()))?
            .to_string()
    } else {
        key.public_key()
            .to_openssh()
            .map_err(|e| RenderErrorReason::Other(e.to_string()))?
    };
    out.write(&text)?;
    Ok(())
}

/// A helper that maps its one parameter to text (`upper`, `lower`, `json`).
struct OneParam {
    name: &'static str,
    map: fn(&Value) -> String,
}

impl handlebars::HelperDef for OneParam {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex(self.name, 0))?;
        out.write(&(self.map)(value.value()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(text: &str, data: Value) -> Result<String, RenderFailure> {
        Templates::new().render_str("roles/t/role.yaml:3", text, &Data::new(data))
    }

    #[test]
    fn passwords_derive_from_the_secret_key_and_purpose() {
        let data = json!({"secret_key": "0123456789abcdef-long-enough", "t": [{"n": "amap"}, {"n": "old"}]});
        let a = render(
            "{{password \"postgresql\" \"nextcloud\" \"amap\"}}",
            data.clone(),
        )
        .unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
        // Inside a block, with the item's fields: the same inputs, the same password.
        let each = render(
            "{{#each t}}{{password \"postgresql\" \"nextcloud\" n}} {{/each}}",
            data.clone(),
        )
        .unwrap();
        let parts: Vec<&str> = each.split_whitespace().collect();
        assert_eq!(parts[0], a);
        assert_ne!(parts[1], a);
        let other_key = json!({"secret_key": "another-key-0123456789"});
        assert_ne!(
            render(
                "{{password \"postgresql\" \"nextcloud\" \"amap\"}}",
                other_key
            )
            .unwrap(),
            a
        );
        let err = render("{{password \"x\"}}", json!({})).unwrap_err();
        assert!(err.what.contains("needs the var `secret_key`"), "{err}");
        let err = render("{{password \"x\"}}", json!({"secret_key": "short"})).unwrap_err();
        assert!(err.what.contains("too short"), "{err}");
    }

    #[test]
    fn ssh_keys_derive_as_a_matching_pair() {
        let data = json!({"secret_key": "0123456789abcdef-long-enough"});
        let private = render("{{ssh_private_key \"backup\" \"forums\"}}", data.clone()).unwrap();
        let public = render("{{ssh_public_key \"backup\" \"forums\"}}", data.clone()).unwrap();
        assert!(
            private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
            "{private}"
        );
        assert!(
            public.starts_with("ssh-ed25519 AAAA") && public.ends_with(" backup/forums"),
            "{public}"
        );
        let parsed = russh::keys::ssh_key::PrivateKey::from_openssh(&private).unwrap();
        assert_eq!(parsed.public_key().to_openssh().unwrap(), public);
        // Stable from run to run, different per host.
        assert_eq!(
            render("{{ssh_private_key \"backup\" \"forums\"}}", data.clone()).unwrap(),
            private
        );
        assert_ne!(
            render("{{ssh_public_key \"backup\" \"web\"}}", data).unwrap(),
            public
        );
    }

    #[test]
    fn ident_makes_a_name_safe_for_databases() {
        assert_eq!(
            render("{{ident a}}", json!({"a": "nextcloud_Amap-Lyon"})).unwrap(),
            "nextcloud_amap_lyon"
        );
    }

    #[test]
    fn renders_without_escaping() {
        let out = render("{{a}} & {{b}}", json!({"a": "<x>", "b": "\"q\""})).unwrap();
        assert_eq!(out, "<x> & \"q\"");
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_it() {
        let err = render("port {{ssh_port}}", json!({})).unwrap_err();
        assert!(err.what.contains("`ssh_port`"), "{err}");
        assert!(err.where_.starts_with("roles/t/role.yaml:3"), "{err}");
    }

    #[test]
    fn undefined_variable_in_a_file_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sshd.conf.hbs");
        std::fs::write(&path, "# managed\nPort {{ssh_port}}\n").unwrap();
        let mut t = Templates::new();
        t.register_file(&path).unwrap();
        let err = t.render_file(&path, &Data::new(json!({}))).unwrap_err();
        assert_eq!(err.where_, format!("{}:2:6", path.display()), "{err}");
        assert!(err.what.contains("ssh_port"), "{err}");
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.hbs");
        std::fs::write(&path, "ok\n{{#if x}}\nno end\n").unwrap();
        let err = Templates::new().register_file(&path).unwrap_err();
        assert!(err.where_.starts_with(&path.display().to_string()), "{err}");
        assert!(err.what.contains("syntax"), "{err}");
    }

    #[test]
    fn helpers_join_default_eq_case_json() {
        let data = json!({"admins": ["camille", "dominique"], "port": 22, "name": "Girofle"});
        assert_eq!(
            render("{{join admins \",\"}}", data.clone()).unwrap(),
            "camille,dominique"
        );
        assert_eq!(
            render("{{default missing \"x\"}}", data.clone()).unwrap(),
            "x"
        );
        assert_eq!(render("{{default port 2222}}", data.clone()).unwrap(), "22");
        assert_eq!(
            render("{{#if (eq port 22)}}std{{/if}}", data.clone()).unwrap(),
            "std"
        );
        assert_eq!(
            render("{{upper name}} {{lower name}}", data.clone()).unwrap(),
            "GIROFLE girofle"
        );
        assert_eq!(
            render("{{json admins}}", data).unwrap(),
            r#"["camille","dominique"]"#
        );
    }
}
