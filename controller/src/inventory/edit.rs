//! Editing the inventory file as text, for `clou onboard`: a new host's
//! entry goes after the last one of `hosts:`, and its name into the
//! `hosts:` lists of its groups, while every other byte (comments, order,
//! quoting) stays as the Racines wrote it. A YAML serialiser would lose the
//! comments that explain the fleet.
//!
//! Only the block layout the inventory uses is handled (`hosts:` a block
//! mapping, group `hosts:` a flow list `[a, b]` or a block list); anything
//! else is an error that says to add the entry by hand.

/// Why the inventory could not be edited. Nothing was written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("{0}; add the host by hand, then run clou apply --limit HOST")]
    Layout(String),
    #[error("{name:?} is not a host name: lowercase letters, digits and '-' only")]
    BadName { name: String },
    #[error("host {name} is already in the inventory with address {address}")]
    OtherAddress { name: String, address: String },
}

/// A new host entry.
#[derive(Debug, Clone)]
pub struct NewHost<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub release: Option<&'a str>,
    pub roles: &'a [String],
}

/// The inventory text with the host added (to `hosts:` and to each group
/// of `groups`); the same text when the host is there already with that
/// address and in those groups.
pub fn add_host(text: &str, host: &NewHost<'_>, groups: &[String]) -> Result<String, EditError> {
    if host.name.is_empty()
        || !host
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(EditError::BadName {
            name: host.name.to_owned(),
        });
    }
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let (start, end, indent) = block(&lines, 0, "hosts").ok_or_else(|| {
        EditError::Layout("the inventory has no top-level `hosts:` mapping".into())
    })?;
    let entry_indent = indent.unwrap_or(2);
    let pad = " ".repeat(entry_indent);
    // A one-line entry (`web: {address: 192.0.2.1, ...}`): there already.
    let flow = format!("{pad}{}: {{", host.name);
    if let Some(at) = (start + 1..end).find(|&i| lines[i].starts_with(&flow)) {
        let address = lines[at]
            .split_once("address:")
            .map(|(_, rest)| {
                rest.split([',', '}'])
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        if address != host.address {
            return Err(EditError::OtherAddress {
                name: host.name.to_owned(),
                address,
            });
        }
    }
    let flow_existing = (start + 1..end).any(|i| lines[i].starts_with(&flow));
    let existing = (start + 1..end).find(|&i| lines[i] == format!("{pad}{}:", host.name));
    match existing {
        _ if flow_existing => {}
        Some(at) => {
            let (_, entry_end, _) = block(&lines, entry_indent, host.name)
                .filter(|(s, _, _)| *s == at)
                .ok_or_else(|| {
                    EditError::Layout(format!("cannot read the entry of {}", host.name))
                })?;
            let address = (at + 1..entry_end)
                .find_map(|i| {
                    lines[i]
                        .trim()
                        .strip_prefix("address:")
                        .map(|a| a.trim().to_owned())
                })
                .unwrap_or_default();
            if address != host.address {
                return Err(EditError::OtherAddress {
                    name: host.name.to_owned(),
                    address,
                });
            }
        }
        None => {
            let inner = " ".repeat(entry_indent + 2);
            let mut entry = vec![
                format!("{pad}{}:", host.name),
                format!("{inner}address: {}", host.address),
            ];
            if let Some(release) = host.release {
                entry.push(format!("{inner}release: {release}"));
            }
            if !host.roles.is_empty() {
                entry.push(format!("{inner}roles: [{}]", host.roles.join(", ")));
            }
            let at = last_content(&lines, start, end) + 1;
            lines.splice(at..at, entry);
        }
    }
    for group in groups {
        add_to_group(&mut lines, group, host.name)?;
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Adds `host` to the `hosts:` list of `group` (unless it is there).
fn add_to_group(lines: &mut Vec<String>, group: &str, host: &str) -> Result<(), EditError> {
    let missing = || {
        EditError::Layout(format!(
            "the inventory has no group {group:?} under `groups:`"
        ))
    };
    let (gstart, gend, gindent) = block(lines, 0, "groups").ok_or_else(missing)?;
    let gindent = gindent.ok_or_else(missing)?;
    let (start, end, indent) = block(&lines[..gend], gindent, group)
        .filter(|(s, _, _)| *s > gstart)
        .ok_or_else(missing)?;
    let key_indent = indent.unwrap_or(gindent + 2);
    let key = format!("{}hosts:", " ".repeat(key_indent));
    let Some(at) = (start + 1..end).find(|&i| lines[i].starts_with(&key)) else {
        // A group without hosts (children only): give it a list.
        let at = last_content(lines, start, end) + 1;
        lines.insert(at, format!("{key} [{host}]"));
        return Ok(());
    };
    let rest = lines[at][key.len()..].trim().to_owned();
    if let Some(inner) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let mut names: Vec<&str> = inner
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.contains(&host) {
            return Ok(());
        }
        names.push(host);
        lines[at] = format!("{key} [{}]", names.join(", "));
        return Ok(());
    }
    if rest.is_empty() {
        // A block list: `- name` lines below.
        let items: Vec<usize> = (at + 1..end)
            .take_while(|&i| lines[i].trim_start().starts_with("- ") || lines[i].trim().is_empty())
            .filter(|&i| !lines[i].trim().is_empty())
            .collect();
        if items
            .iter()
            .any(|&i| lines[i].trim_start()[2..].trim() == host)
        {
            return Ok(());
        }
        let (place, pad) = match items.last() {
            Some(&last) => (last + 1, indent_of(&lines[last])),
            None => (at + 1, key_indent + 2),
        };
        lines.insert(place, format!("{}- {host}", " ".repeat(pad)));
        return Ok(());
    }
    Err(EditError::Layout(format!(
        "the hosts of group {group} are written in a way clou does not edit ({rest})"
    )))
}

/// The block of `key:` at `indent` spaces: its line, the line after its
/// last line, and the indentation of its first child.
fn block(lines: &[String], indent: usize, key: &str) -> Option<(usize, usize, Option<usize>)> {
    let head = format!("{}{key}:", " ".repeat(indent));
    let start = lines.iter().position(|l| {
        l.strip_prefix(&head)
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
    })?;
    let mut end = lines.len();
    let mut child = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let own = indent_of(line);
        if own <= indent {
            end = i;
            break;
        }
        child.get_or_insert(own);
    }
    Some((start, end, child))
}

/// The last line of the block that is neither blank nor a comment at the
/// block's own level (a comment before the next key belongs to it).
fn last_content(lines: &[String], start: usize, end: usize) -> usize {
    (start..end)
        .rev()
        .find(|&i| {
            !lines[i].trim().is_empty()
                && (i == start
                    || !lines[i].trim_start().starts_with('#')
                    || indent_of(&lines[i]) > 0)
        })
        .unwrap_or(start)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn girofle() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../inventory/girofle.yaml"
        ))
        .unwrap()
    }

    fn new_host<'a>(roles: &'a [String]) -> NewHost<'a> {
        NewHost {
            name: "nextcloud-2",
            address: "192.0.2.31",
            release: Some("trixie"),
            roles,
        }
    }

    #[test]
    fn a_new_host_is_added_and_every_other_line_kept() {
        let text = girofle();
        let roles = vec!["nextcloud".to_owned()];
        let groups = vec!["apps".to_owned(), "backup-clients".to_owned()];
        let edited = add_host(&text, &new_host(&roles), &groups).unwrap();
        // Only additions, and the two group lines: every other line of the
        // original is there, in order.
        let edited_lines: Vec<&str> = edited.lines().collect();
        let mut next = 0;
        let mut removed = Vec::new();
        for line in text.lines() {
            match edited_lines[next..].iter().position(|l| *l == line) {
                Some(offset) => next += offset + 1,
                None => removed.push(line),
            }
        }
        assert_eq!(
            removed,
            [
                "    hosts: [nextcloud-data, onlyoffice, forums, web]",
                "    hosts: [nextcloud-data, onlyoffice, forums, mail-exit, mail, web]"
            ]
        );
        assert!(edited.contains(
            "  nextcloud-2:\n    address: 192.0.2.31\n    release: trixie\n    roles: [nextcloud]\n"
        ));
        assert!(
            edited.contains("    hosts: [nextcloud-data, onlyoffice, forums, web, nextcloud-2]\n")
        );
        // The entry goes after the last host, before the comment and key
        // that follow the hosts.
        let at = edited.find("  nextcloud-2:").unwrap();
        assert!(at < edited.find("\ntenants:").unwrap());
        assert!(at > edited.find("  web:").unwrap());
        // And the result is an inventory clou reads.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory/girofle.yaml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &edited).unwrap();
        std::os::unix::fs::symlink(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../roles"),
            dir.path().join("roles"),
        )
        .unwrap();
        let inv = crate::inventory::Inventory::load(&path).unwrap();
        let host = inv.hosts.iter().find(|h| h.name == "nextcloud-2").unwrap();
        assert_eq!(host.address, "192.0.2.31");
        assert!(inv.groups_of("nextcloud-2").contains(&"fleet".to_owned()));
    }

    #[test]
    fn adding_it_again_changes_nothing() {
        let text = girofle();
        let roles = vec!["nextcloud".to_owned()];
        let groups = vec!["apps".to_owned()];
        let once = add_host(&text, &new_host(&roles), &groups).unwrap();
        assert_eq!(add_host(&once, &new_host(&roles), &groups).unwrap(), once);
        let other = NewHost {
            address: "192.0.2.99",
            ..new_host(&roles)
        };
        assert_eq!(
            add_host(&once, &other, &groups).unwrap_err(),
            EditError::OtherAddress {
                name: "nextcloud-2".into(),
                address: "192.0.2.31".into()
            }
        );
    }

    #[test]
    fn block_lists_and_unknown_groups() {
        let text = "hosts:\n  a:\n    address: 10.0.0.1\n\ngroups:\n  g:\n    hosts:\n      - a\n    roles: [base]\n  # tail comment\nvars: {}\n";
        let roles = vec![];
        let host = NewHost {
            name: "b",
            address: "10.0.0.2",
            release: None,
            roles: &roles,
        };
        let edited = add_host(text, &host, &["g".to_owned()]).unwrap();
        assert_eq!(
            edited,
            "hosts:\n  a:\n    address: 10.0.0.1\n  b:\n    address: 10.0.0.2\n\ngroups:\n  g:\n    hosts:\n      - a\n      - b\n    roles: [base]\n  # tail comment\nvars: {}\n"
        );
        let err = add_host(text, &host, &["nope".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("no group \"nope\""), "{err}");
        assert!(matches!(
            add_host(
                text,
                &NewHost {
                    name: "Bad_Name",
                    ..host.clone()
                },
                &[]
            ),
            Err(EditError::BadName { .. })
        ));
    }

    #[test]
    fn a_one_line_entry_is_found_too() {
        let text = "hosts:\n  web: {address: 192.0.2.1, release: trixie}\n";
        let host = NewHost {
            name: "web",
            address: "192.0.2.1",
            release: None,
            roles: &[],
        };
        assert_eq!(add_host(text, &host, &[]).unwrap(), text);
        let moved = NewHost {
            address: "192.0.2.9",
            ..host
        };
        assert_eq!(
            add_host(text, &moved, &[]),
            Err(EditError::OtherAddress {
                name: "web".into(),
                address: "192.0.2.1".into()
            })
        );
    }
}
