//! Which Debian mirror the lab builds from: the one this machine's own apt
//! uses, read at run time, so no mirror is ever written into the project.

use std::path::Path;

use super::LabError;

/// The archive and security URIs of a Debian mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Main archive, e.g. the URI before `bookworm main`.
    pub archive: String,
    /// Security archive, when this machine has one configured.
    pub security: Option<String>,
}

impl Mirror {
    /// apt source lines for `release` on this mirror.
    pub fn sources_list(&self, release: &str) -> String {
        let mut out = format!(
            "deb {a} {release} main\ndeb {a} {release}-updates main\n",
            a = self.archive
        );
        if let Some(sec) = &self.security {
            out.push_str(&format!("deb {sec} {release}-security main\n"));
        }
        out
    }
}

/// Finds the mirror: `CLOU_LAB_MIRROR` if set, else this machine's apt sources.
pub fn find() -> Result<Mirror, LabError> {
    if let Ok(uri) = std::env::var("CLOU_LAB_MIRROR") {
        return Ok(Mirror {
            archive: uri,
            security: std::env::var("CLOU_LAB_SECURITY_MIRROR").ok(),
        });
    }
    let mut entries = Vec::new();
    let list = Path::new("/etc/apt/sources.list");
    if let Ok(text) = std::fs::read_to_string(list) {
        entries.extend(parse_one_line_style(&text));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => entries.extend(parse_deb822(&text)),
                Some("list") => entries.extend(parse_one_line_style(&text)),
                _ => {}
            }
        }
    }
    from_entries(&entries).ok_or(LabError::NoMirror)
}

/// One `deb URI suite...` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    uri: String,
    suites: Vec<String>,
}

fn from_entries(entries: &[Entry]) -> Option<Mirror> {
    let is_security = |e: &&Entry| {
        e.suites
            .iter()
            .any(|s| s.ends_with("-security") || s.ends_with("/updates"))
    };
    let archive = entries.iter().filter(|e| !is_security(e)).find(|e| {
        e.suites
            .iter()
            .any(|s| super::super::inventory::RELEASES.contains(&s.as_str()))
    })?;
    let security = entries.iter().find(is_security).map(|e| e.uri.clone());
    Some(Mirror {
        archive: archive.uri.trim_end_matches('/').to_owned(),
        security: security.map(|s| s.trim_end_matches('/').to_owned()),
    })
}

fn parse_one_line_style(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim();
            // Skip options in brackets: deb [arch=amd64 signed-by=...] uri suite
            let rest = if rest.starts_with('[') {
                rest.split_once(']')?.1.trim()
            } else {
                rest
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_owned();
            let suite = words.next()?.to_owned();
            Some(Entry {
                uri,
                suites: vec![suite],
            })
        })
        .collect()
}

fn parse_deb822(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = String::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types = value.to_owned(),
                "uris" => uris = value.split_whitespace().map(str::to_owned).collect(),
                "suites" => suites = value.split_whitespace().map(str::to_owned).collect(),
                "enabled" => enabled = value != "no",
                _ => {}
            }
        }
        if enabled && types.split_whitespace().any(|t| t == "deb") {
            for uri in uris {
                out.push(Entry {
                    uri,
                    suites: suites.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_deb822_sources_as_debian_12_writes_them() {
        let text = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let mirror = from_entries(&parse_deb822(text)).expect("a mirror");
        assert_eq!(mirror.archive, "http://mirror.example/debian");
        assert_eq!(
            mirror.security.as_deref(),
            Some("http://mirror.example/debian-security")
        );
    }

    #[test]
    fn reads_one_line_sources_with_options() {
        let text = "deb [arch=amd64] http://m.example/debian/ bullseye main\n# deb http://x bookworm main\n";
        let mirror = from_entries(&parse_one_line_style(text)).expect("a mirror");
        assert_eq!(mirror.archive, "http://m.example/debian");
        assert_eq!(mirror.security, None);
    }

    #[test]
    fn ignores_sources_that_are_not_debian_releases() {
        let text = "deb https://apt.example/node nodistro main\n";
        assert_eq!(from_entries(&parse_one_line_style(text)), None);
    }

    #[test]
    fn sources_list_names_updates_and_security() {
        let m = Mirror {
            archive: "http://m/debian".into(),
            security: Some("http://m/debian-security".into()),
        };
        assert_eq!(
            m.sources_list("trixie"),
            "deb http://m/debian trixie main\ndeb http://m/debian trixie-updates main\ndeb http://m/debian-security trixie-security main\n"
        );
    }
}
