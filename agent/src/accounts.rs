//! Users and groups, read from `/etc/passwd` and `/etc/group`.
//!
//! The agent is linked statically so that one binary runs on Debian 11, 12
//! and 13; a static glibc cannot load NSS modules, so the agent reads the
//! files itself. Accounts of the fleet are local accounts, so this is
//! enough, and it is what `useradd` writes.

use std::path::Path;

use crate::system::System;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The host's local accounts, as read now.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub users: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group` through `sys`.
    pub fn read(sys: &dyn System) -> std::io::Result<Accounts> {
        let passwd = sys.read(Path::new("/etc/passwd"))?.unwrap_or_default();
        let group = sys.read(Path::new("/etc/group"))?.unwrap_or_default();
        Ok(Accounts::parse(
            &String::from_utf8_lossy(&passwd),
            &String::from_utf8_lossy(&group),
        ))
    }

    /// Parses the two files' text; malformed lines are skipped, as libc does.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let users = passwd
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 7 {
                    return None;
                }
                Some(PasswdEntry {
                    name: f[0].to_owned(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    home: f[5].to_owned(),
                    shell: f[6].to_owned(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 4 {
                    return None;
                }
                Some(GroupEntry {
                    name: f[0].to_owned(),
                    gid: f[2].parse().ok()?,
                    members: f[3]
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect();
        Accounts { users, groups }
    }

    pub fn user(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.uid == uid)
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.gid == gid)
    }

    /// A uid's name, or the number when it has none.
    pub fn user_name(&self, uid: u32) -> String {
        self.user_by_uid(uid)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| uid.to_string())
    }

    /// A gid's name, or the number when it has none.
    pub fn group_name(&self, gid: u32) -> String {
        self.group_by_gid(gid)
            .map(|g| g.name.clone())
            .unwrap_or_else(|| gid.to_string())
    }

    /// Supplementary groups of a user (groups listing it as a member).
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == user))
            .map(|g| g.name.clone())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        sshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n\
        camille:x:1000:1000:Camille:/home/camille:/bin/bash\n\
        broken line\n";
    const GROUP: &str =
        "root:x:0:\nsudo:x:27:camille,dominique\nadm:x:4:camille\ncamille:x:1000:\n";

    #[test]
    fn parses_users_and_groups() {
        let acc = Accounts::parse(PASSWD, GROUP);
        assert_eq!(acc.users.len(), 3);
        assert_eq!(acc.user("camille").unwrap().home, "/home/camille");
        assert_eq!(acc.group("sudo").unwrap().gid, 27);
        assert_eq!(acc.groups_of("camille"), vec!["adm", "sudo"]);
        assert_eq!(acc.user_name(101), "sshd");
        assert_eq!(acc.group_name(4242), "4242");
    }
}
