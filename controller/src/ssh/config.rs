//! The parts of `~/.ssh/config` clou honours, so that a host the admin
//! reaches with `ssh` is reached the same way by clou.
//!
//! Understood: `Host` blocks (patterns with `*`, `?` and `!negation`),
//! `HostName`, `User`, `Port`, `IdentityFile` (`~` and `%h`, `%r`, `%u`,
//! `%%` expanded) and `ProxyJump` (`[user@]host[:port]`, comma-separated
//! for several hops, or `none`). As in ssh, the first value found for a
//! keyword wins, except `IdentityFile`, which accumulates. `Match` blocks
//! and `Include` are not supported: they are skipped with a warning, never
//! half-applied.

use std::path::{Path, PathBuf};

/// A parsed config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// `None` for the options before the first `Host` line (they apply to
    /// every host) and for skipped `Match` blocks (they apply to none).
    patterns: Option<Vec<String>>,
    skipped: bool,
    options: Vec<(String, String)>,
}

/// What the config says about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    /// Jump hosts, first hop first.
    pub proxy_jump: Vec<Jump>,
}

/// One `ProxyJump` hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

impl SshConfig {
    /// `~/.ssh/config`, or an empty config when there is none.
    pub fn load_default() -> SshConfig {
        std::env::home_dir()
            .map(|home| SshConfig::load(&home.join(".ssh/config")))
            .unwrap_or_default()
    }

    /// Reads a config file; a missing file is an empty config.
    pub fn load(path: &Path) -> SshConfig {
        std::fs::read_to_string(path)
            .map(|text| SshConfig::parse(&text))
            .unwrap_or_default()
    }

    /// Parses config text.
    pub fn parse(text: &str) -> SshConfig {
        let mut blocks = vec![Block {
            patterns: None,
            skipped: false,
            options: Vec::new(),
        }];
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
                Some((k, v)) => (
                    k.to_ascii_lowercase(),
                    v.trim_start_matches(|c: char| c.is_whitespace() || c == '=')
                        .trim(),
                ),
                None => (line.to_ascii_lowercase(), ""),
            };
            let value = value.trim_matches('"').to_owned();
            match key.as_str() {
                "host" => blocks.push(Block {
                    patterns: Some(value.split_whitespace().map(str::to_owned).collect()),
                    skipped: false,
                    options: Vec::new(),
                }),
                "match" => {
                    tracing::warn!(
                        "~/.ssh/config: `Match` blocks are not supported by clou; skipping one"
                    );
                    blocks.push(Block {
                        patterns: None,
                        skipped: true,
                        options: Vec::new(),
                    });
                }
                "proxycommand" | "hostkeyalias" | "userknownhostsfile" | "globalknownhostsfile" => {
                    tracing::warn!(
                        "~/.ssh/config: `{key}` is not supported by clou (ignored); \
                         clou uses ProxyJump and inventory/known_hosts"
                    );
                    if let Some(block) = blocks.last_mut() {
                        block.options.push((key, value));
                    }
                }
                "include" => {
                    tracing::warn!(
                        "~/.ssh/config: `Include {value}` is not supported by clou; skipping it"
                    );
                }
                _ => {
                    if let Some(block) = blocks.last_mut() {
                        block.options.push((key, value));
                    }
                }
            }
        }
        SshConfig { blocks }
    }

    /// The settings for `host` (the name given to ssh).
    pub fn lookup(&self, host: &str, local_user: &str) -> HostConfig {
        let mut out = HostConfig::default();
        let mut jump_set = false;
        for block in &self.blocks {
            if block.skipped {
                continue;
            }
            if let Some(patterns) = &block.patterns
                && !matches_host(patterns, host)
            {
                continue;
            }
            for (key, value) in &block.options {
                match key.as_str() {
                    "hostname" if out.hostname.is_none() => {
                        out.hostname = Some(value.replace("%h", host))
                    }
                    "user" if out.user.is_none() => out.user = Some(value.clone()),
                    "port" if out.port.is_none() => out.port = value.parse().ok(),
                    "identityfile" => {
                        let user = out.user.as_deref().unwrap_or(local_user);
                        out.identity_files
                            .push(expand(value, host, user, local_user));
                    }
                    "proxyjump" if !jump_set => {
                        jump_set = true;
                        if !value.eq_ignore_ascii_case("none") {
                            out.proxy_jump = value.split(',').filter_map(parse_jump).collect();
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// ssh's pattern list: any positive match and no negated match.
fn matches_host(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated, host) {
                return false;
            }
        } else if glob(pattern, host) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, case-insensitive like ssh.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

fn expand(value: &str, host: &str, remote_user: &str, local_user: &str) -> PathBuf {
    let mut text = value
        .replace("%%", "\u{0}")
        .replace("%h", host)
        .replace("%r", remote_user)
        .replace("%u", local_user)
        .replace('\u{0}', "%");
    if let Some(rest) = text.strip_prefix("~/")
        && let Some(home) = std::env::home_dir()
    {
        text = home.join(rest).display().to_string();
    }
    PathBuf::from(text)
}

fn parse_jump(text: &str) -> Option<Jump> {
    let text = text.trim().trim_start_matches("ssh://");
    if text.is_empty() {
        return None;
    }
    let (user, rest) = match text.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_owned()), r),
        None => (None, text),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse().ok()),
        _ => (rest.to_owned(), None),
    };
    Some(Jump { host, user, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# Girofle admins' config
User camille

Host nextcloud-data onlyoffice
    HostName %h.girofle.example.org
    Port 2222

Host *.girofle.example.org !bastion.girofle.example.org
    ProxyJump admin@bastion.girofle.example.org:2200
    IdentityFile ~/.ssh/girofle_%r

Host *
    User root
    IdentityFile ~/.ssh/id_ed25519
    Port 22

Match host backup
    User nobody
";

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let cfg = SshConfig::parse(CONFIG);
        let c = cfg.lookup("nextcloud-data", "me");
        assert_eq!(
            c.hostname.as_deref(),
            Some("nextcloud-data.girofle.example.org")
        );
        assert_eq!(c.port, Some(2222));
        assert_eq!(
            c.user.as_deref(),
            Some("camille"),
            "the top-level User comes first"
        );
        assert_eq!(c.identity_files.len(), 1);
        assert!(
            c.proxy_jump.is_empty(),
            "the jump matches on the name given, not HostName"
        );
    }

    #[test]
    fn proxy_jump_and_negation() {
        let cfg = SshConfig::parse(CONFIG);
        let c = cfg.lookup("web.girofle.example.org", "me");
        assert_eq!(
            c.proxy_jump,
            vec![Jump {
                host: "bastion.girofle.example.org".into(),
                user: Some("admin".into()),
                port: Some(2200)
            }]
        );
        assert!(
            c.identity_files[0].ends_with(".ssh/girofle_camille"),
            "{:?}",
            c.identity_files
        );
        assert_eq!(c.identity_files.len(), 2);
        let bastion = cfg.lookup("bastion.girofle.example.org", "me");
        assert!(bastion.proxy_jump.is_empty());
    }

    #[test]
    fn match_blocks_are_skipped_not_half_applied() {
        let cfg = SshConfig::parse(CONFIG);
        assert_eq!(cfg.lookup("backup", "me").user.as_deref(), Some("camille"));
    }

    #[test]
    fn globs() {
        assert!(glob("*.example.org", "a.example.org"));
        assert!(glob("web-?", "web-1"));
        assert!(!glob("web-?", "web-12"));
        assert!(glob("WEB", "web"));
    }
}
