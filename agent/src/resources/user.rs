//! The `user` resource: a local account (`useradd`, `usermod`, `userdel`)
//! and, when asked, exactly its `~/.ssh/authorized_keys`.
//!
//! Accounts are read from `/etc/passwd` and `/etc/group` (see
//! `accounts.rs`). On an existing account only what the resource names is
//! managed: shell, home, primary group, supplementary groups and keys. The
//! uid and `system` only matter when creating it: renumbering an account
//! would orphan its files. A new home is given with `usermod --home`
//! without `--move-home`: moving data is a decision for an admin, not a
//! side effect of a plan. `absent` runs `userdel` without `--remove`, so
//! the home directory and mail spool stay.
//!
//! `locked` is how an admin who leaves is removed without losing their
//! files: the account stays (its uid still owns the home and the data)
//! but can no longer log in. Its state is read from `/etc/shadow`: locked
//! means expired since 1970-01-02 (expire field `1`), which PAM enforces
//! for every kind of login, SSH keys included. A password field starting
//! with `!` alone says nothing: useradd gives `!` to every account without
//! a password. Locking and unlocking go into the same single `usermod` as
//! the other changes (`--lock --expiredate 1`; `--expiredate ""`, plus
//! `--unlock` only for a `!` in front of a real hash, since usermod refuses
//! to unlock a bare `!` into an empty password). A new account asked
//! locked is created, then locked.
//!
//! The keys file is written atomically, owned by the user, mode 0600, in a
//! `.ssh` directory of mode 0700 owned by the user: what sshd's
//! `StrictModes` accepts. A `.ssh` or `authorized_keys` that is a symbolic
//! link is refused rather than followed: the home belongs to the user, and
//! the agent runs as root.

use std::fmt;
use std::path::{Path, PathBuf};

use clou_protocol::resource::{Presence, UserSpec};

use super::group::account_name;
use super::{Ctx, Differences, Error, Kind};
use crate::accounts::{Accounts, PasswdEntry};
use crate::system::{Cmd, FileKind, Perms};

/// One difference between an account and its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create { name: String },
    Shell { from: String, to: String },
    Home { from: String, to: String },
    Group { from: String, to: String },
    Groups { from: Vec<String>, to: Vec<String> },
    Keys(KeysChange),
    Lock,
    Unlock { expiry: bool, password: bool },
    Remove { name: String, home: String },
}

/// What happens to `authorized_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysChange {
    pub added: usize,
    pub removed: usize,
    /// Only ownership or modes are wrong (or the order, or comments).
    pub note: Option<&'static str>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create { name } => write!(f, "create user {name}"),
            Change::Shell { from, to } => write!(f, "shell {from} -> {to}"),
            Change::Home { from, to } => write!(f, "home {from} -> {to} (files not moved)"),
            Change::Group { from, to } => write!(f, "group {from} -> {to}"),
            Change::Groups { from, to } => {
                write!(f, "groups {} -> {}", group_list(from), group_list(to))
            }
            Change::Keys(keys) => {
                write!(f, "authorized_keys: +{} -{} keys", keys.added, keys.removed)?;
                match keys.note {
                    Some(note) => write!(f, " ({note})"),
                    None => Ok(()),
                }
            }
            Change::Lock => write!(f, "lock the account (password locked, expired)"),
            Change::Unlock { .. } => write!(f, "unlock the account"),
            Change::Remove { name, home } => write!(f, "remove user {name} (home {home} kept)"),
        }
    }
}

fn group_list(groups: &[String]) -> String {
    if groups.is_empty() {
        "(none)".to_owned()
    } else {
        groups.join(",")
    }
}

const DEFAULT_SHELL: &str = "/bin/bash";

impl Kind for UserSpec {
    type Change = Change;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        account_name("user", &self.name)?;
        let keys = self.wanted_keys()?;
        for path in [&self.home, &self.shell].into_iter().flatten() {
            super::absolute(path)?;
        }
        let accounts = ctx.accounts()?;
        let existing = accounts.user(&self.name).cloned();
        let changes = match (self.state, existing) {
            (Presence::Absent, Some(user)) => vec![Change::Remove {
                name: self.name.clone(),
                home: user.home,
            }],
            (Presence::Absent, None) => Vec::new(),
            (Presence::Present, None) => self.creation(ctx, &accounts, keys.as_deref())?,
            (Presence::Present, Some(user)) => {
                ctx.plan(format!("user:{}", self.name));
                self.modifications(ctx, &accounts, &user, keys.as_deref())?
            }
        };
        Ok(Differences::of(changes))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Change>) -> Result<(), Error> {
        let mut usermod: Vec<String> = Vec::new();
        let mut keys = false;
        for change in &diff.changes {
            match change {
                Change::Create { .. } => {
                    ctx.run_ok(&Cmd::new(self.useradd(&ctx.accounts()?)))?;
                }
                Change::Remove { .. } => {
                    ctx.run_ok(&Cmd::new(["userdel", self.name.as_str()]))?;
                }
                Change::Shell { to, .. } => usermod.extend(["--shell".into(), to.clone()]),
                Change::Home { to, .. } => usermod.extend(["--home".into(), to.clone()]),
                Change::Group { to, .. } => usermod.extend(["--gid".into(), to.clone()]),
                Change::Groups { to, .. } => usermod.extend(["--groups".into(), to.join(",")]),
                Change::Keys(_) => keys = true,
                Change::Lock => {
                    usermod.extend(["--lock".into(), "--expiredate".into(), "1".into()])
                }
                Change::Unlock { expiry, password } => {
                    if *expiry {
                        usermod.extend(["--expiredate".into(), String::new()]);
                    }
                    if *password {
                        usermod.push("--unlock".into());
                    }
                }
            }
        }
        // One usermod: the account changes all at once or not at all.
        if !usermod.is_empty() {
            let mut argv = vec!["usermod".to_owned()];
            argv.append(&mut usermod);
            argv.push(self.name.clone());
            ctx.run_ok(&Cmd::new(argv))?;
        }
        if keys {
            self.write_keys(ctx)?;
        }
        Ok(())
    }
}

/// The resource's own logic; a trait because `UserSpec` is a type of the
/// protocol crate.
trait Account {
    fn wanted_keys(&self) -> Result<Option<Vec<String>>, Error>;
    fn wanted_groups(&self) -> Option<Vec<String>>;
    fn home_or_default(&self) -> String;
    fn creation(
        &self,
        ctx: &mut Ctx<'_>,
        accounts: &Accounts,
        keys: Option<&[String]>,
    ) -> Result<Vec<Change>, Error>;
    fn useradd(&self, accounts: &Accounts) -> Vec<String>;
    fn modifications(
        &self,
        ctx: &mut Ctx<'_>,
        accounts: &Accounts,
        user: &PasswdEntry,
        keys: Option<&[String]>,
    ) -> Result<Vec<Change>, Error>;
    fn write_keys(&self, ctx: &mut Ctx<'_>) -> Result<(), Error>;
}

impl Account for UserSpec {
    /// The keys, one line each, refusing what would not be one line.
    fn wanted_keys(&self) -> Result<Option<Vec<String>>, Error> {
        let Some(keys) = &self.authorized_keys else {
            return Ok(None);
        };
        let mut wanted: Vec<String> = Vec::new();
        for key in keys {
            let key = key.trim();
            if key.is_empty() || key.contains(['\n', '\r']) {
                return Err(Error::Invalid(format!(
                    "user {}: every authorized key must be one non-empty line; fix \
                     authorized_keys",
                    self.name
                )));
            }
            if !wanted.iter().any(|k| k == key) {
                wanted.push(key.to_owned());
            }
        }
        Ok(Some(wanted))
    }

    /// Supplementary groups as asked: sorted, each once.
    fn wanted_groups(&self) -> Option<Vec<String>> {
        self.groups.as_ref().map(|groups| {
            let mut groups = groups.clone();
            groups.sort();
            groups.dedup();
            groups
        })
    }

    fn home_or_default(&self) -> String {
        self.home
            .clone()
            .unwrap_or_else(|| format!("/home/{}", self.name))
    }

    /// The changes for an account that does not exist yet.
    fn creation(
        &self,
        ctx: &mut Ctx<'_>,
        accounts: &Accounts,
        keys: Option<&[String]>,
    ) -> Result<Vec<Change>, Error> {
        if let Some(uid) = self.uid
            && let Some(other) = accounts.user_by_uid(uid)
        {
            return Err(Error::Invalid(format!(
                "user {}: uid {uid} already belongs to user {}; choose another uid or drop \
                 `uid`",
                self.name, other.name
            )));
        }
        for group in self.group.iter().chain(self.groups.iter().flatten()) {
            account_name("group", group)?;
            ctx.gid(accounts, group)?;
        }
        ctx.plan(format!("user:{}", self.name));
        if self.group.is_none() {
            ctx.plan(format!("group:{}", self.name));
        }
        ctx.plan(format!("path:{}", self.home_or_default()));
        let mut changes = vec![Change::Create {
            name: self.name.clone(),
        }];
        // A new account is neither expired nor password-locked with a hash:
        // only `true` changes anything.
        if self.locked == Some(true) {
            changes.push(Change::Lock);
        }
        if let Some(keys) = keys.filter(|k| !k.is_empty()) {
            changes.push(Change::Keys(KeysChange {
                added: keys.len(),
                removed: 0,
                note: None,
            }));
        }
        Ok(changes)
    }

    /// The `useradd` argv. Without a `group`, the user gets a group of its
    /// name, which must then be created unless it already exists (useradd
    /// refuses `--user-group` in that case).
    fn useradd(&self, accounts: &Accounts) -> Vec<String> {
        let mut argv = vec!["useradd".to_owned()];
        if self.system {
            argv.push("--system".into());
        }
        if let Some(uid) = self.uid {
            argv.extend(["--uid".into(), uid.to_string()]);
        }
        match &self.group {
            Some(group) => argv.extend(["--gid".into(), group.clone()]),
            None if accounts.group(&self.name).is_some() => {
                argv.extend(["--gid".into(), self.name.clone()])
            }
            None => argv.push("--user-group".into()),
        }
        argv.extend([
            "--create-home".into(),
            "--home-dir".into(),
            self.home_or_default(),
            "--shell".into(),
            self.shell.clone().unwrap_or_else(|| DEFAULT_SHELL.into()),
        ]);
        if let Some(groups) = self.wanted_groups().filter(|g| !g.is_empty()) {
            argv.extend(["--groups".into(), groups.join(",")]);
        }
        argv.push(self.name.clone());
        argv
    }

    /// The changes for an existing account.
    fn modifications(
        &self,
        ctx: &mut Ctx<'_>,
        accounts: &Accounts,
        user: &PasswdEntry,
        keys: Option<&[String]>,
    ) -> Result<Vec<Change>, Error> {
        let mut changes = Vec::new();
        if let Some(shell) = &self.shell
            && shell != &user.shell
        {
            changes.push(Change::Shell {
                from: user.shell.clone(),
                to: shell.clone(),
            });
        }
        if let Some(home) = &self.home
            && home != &user.home
        {
            changes.push(Change::Home {
                from: user.home.clone(),
                to: home.clone(),
            });
        }
        if let Some(group) = &self.group {
            account_name("group", group)?;
            if ctx.gid(accounts, group)? != Some(user.gid) {
                changes.push(Change::Group {
                    from: accounts.group_name(user.gid),
                    to: group.clone(),
                });
            }
        }
        if let Some(wanted) = self.wanted_groups() {
            for group in &wanted {
                account_name("group", group)?;
                ctx.gid(accounts, group)?;
            }
            let current = accounts.groups_of(&self.name);
            if current != wanted {
                changes.push(Change::Groups {
                    from: current,
                    to: wanted,
                });
            }
        }
        if let Some(locked) = self.locked
            && let Some(change) = lock_difference(ctx, &self.name, locked)?
        {
            changes.push(change);
        }
        if let Some(keys) = keys {
            let home = self.home.clone().unwrap_or_else(|| user.home.clone());
            let gid = match &self.group {
                Some(group) => ctx.gid(accounts, group)?,
                None => Some(user.gid),
            };
            let owner = gid.map(|gid| (user.uid, gid));
            if let Some(change) = keys_difference(ctx, &self.name, Path::new(&home), owner, keys)? {
                changes.push(Change::Keys(change));
            }
        }
        Ok(changes)
    }

    /// Writes `authorized_keys` for the account as it is now (after
    /// useradd or usermod).
    fn write_keys(&self, ctx: &mut Ctx<'_>) -> Result<(), Error> {
        let keys = self.wanted_keys()?.unwrap_or_default();
        let accounts = ctx.accounts()?;
        let user = accounts.user(&self.name).ok_or_else(|| {
            Error::Invalid(format!(
                "user {} is not in /etc/passwd after useradd; is the account managed \
                 elsewhere (LDAP)? Then drop authorized_keys from this resource",
                self.name
            ))
        })?;
        let (uid, gid) = (user.uid, user.gid);
        let ssh = ssh_dir(&user.home);
        match ctx
            .sys
            .stat(&ssh)
            .map_err(Error::io(format!("cannot stat {}", ssh.display())))?
        {
            None => {
                let perms = Perms {
                    uid,
                    gid,
                    mode: 0o700,
                };
                ctx.sys
                    .create_dir(&ssh, perms)
                    .map_err(Error::io(format!("cannot create {}", ssh.display())))?;
            }
            Some(stat) if stat.kind == FileKind::Dir => {
                if (stat.uid, stat.gid) != (uid, gid) {
                    ctx.sys
                        .chown(&ssh, Some(uid), Some(gid))
                        .map_err(Error::io(format!("cannot chown {}", ssh.display())))?;
                }
                if stat.mode != 0o700 {
                    ctx.sys
                        .chmod(&ssh, 0o700)
                        .map_err(Error::io(format!("cannot chmod {}", ssh.display())))?;
                }
            }
            Some(stat) => return Err(not_a(&ssh, "directory", stat.kind)),
        }
        let file = ssh.join("authorized_keys");
        let perms = Perms {
            uid,
            gid,
            mode: 0o600,
        };
        ctx.sys
            .write_atomic(&file, render(&keys).as_bytes(), perms)
            .map_err(Error::io(format!("cannot write {}", file.display())))
    }
}

/// What `/etc/shadow` says about an account's logins.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shadow {
    /// Expired since 1970-01-02 (expire field `1`): what `locked` means.
    expired: bool,
    /// A real hash locked with `!` (`!$y$...`), which `usermod --unlock`
    /// can restore; a bare `!` is no password at all.
    locked_hash: bool,
}

/// The shadow entry of `name` in the text of `/etc/shadow`
/// (`name:password:lastchg:min:max:warn:inactive:expire:reserved`).
fn shadow_of(shadow: &str, name: &str) -> Option<Shadow> {
    shadow.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            return None;
        }
        let password = fields.get(1).copied().unwrap_or("");
        let expire = fields.get(7).copied().unwrap_or("");
        Some(Shadow {
            expired: expire == "1",
            locked_hash: password.starts_with("!$"),
        })
    })
}

/// Compares the account's lock state in `/etc/shadow` with `locked`.
fn lock_difference(ctx: &Ctx<'_>, name: &str, locked: bool) -> Result<Option<Change>, Error> {
    let path = Path::new("/etc/shadow");
    let text = ctx
        .sys
        .read(path)
        .map_err(Error::io("cannot read /etc/shadow"))?
        .unwrap_or_default();
    let shadow = shadow_of(&String::from_utf8_lossy(&text), name).ok_or_else(|| {
        Error::Invalid(format!(
            "user {name} has no entry in /etc/shadow, so it cannot be locked or unlocked; \
             is the account managed elsewhere (LDAP)? Then drop `locked` from this resource"
        ))
    })?;
    Ok(match (locked, shadow) {
        (true, Shadow { expired: false, .. }) => Some(Change::Lock),
        (
            false,
            Shadow {
                expired,
                locked_hash,
            },
        ) if expired || locked_hash => Some(Change::Unlock {
            expiry: expired,
            password: locked_hash,
        }),
        _ => None,
    })
}

fn ssh_dir(home: &str) -> PathBuf {
    Path::new(home).join(".ssh")
}

/// The file's content for these keys.
fn render(keys: &[String]) -> String {
    keys.iter().map(|k| format!("{k}\n")).collect()
}

fn not_a(path: &Path, wanted: &str, kind: FileKind) -> Error {
    Error::Invalid(format!(
        "{} is {}, not a {wanted}; clou does not follow or replace it in a user's home: \
         remove it by hand, then apply again",
        path.display(),
        kind.name()
    ))
}

/// Compares `HOME/.ssh/authorized_keys` with the keys. `owner` is `None` in
/// check mode when the primary group is still to be created.
fn keys_difference(
    ctx: &Ctx<'_>,
    name: &str,
    home: &Path,
    owner: Option<(u32, u32)>,
    keys: &[String],
) -> Result<Option<KeysChange>, Error> {
    let stat = |path: &Path| {
        ctx.sys
            .stat(path)
            .map_err(Error::io(format!("cannot stat {}", path.display())))
    };
    if stat(home)?.is_none() {
        if ctx.path_planned(home) {
            return Ok((!keys.is_empty()).then_some(KeysChange {
                added: keys.len(),
                removed: 0,
                note: None,
            }));
        }
        return Err(Error::Invalid(format!(
            "the home {} of user {name} does not exist, so its authorized_keys cannot be \
             written; declare a `directory` for it before this user, or drop authorized_keys",
            home.display()
        )));
    }
    let ssh = home.join(".ssh");
    let file = ssh.join("authorized_keys");
    let mut perms_wrong = false;
    match stat(&ssh)? {
        Some(s) if s.kind != FileKind::Dir => return Err(not_a(&ssh, "directory", s.kind)),
        Some(s) => perms_wrong |= s.mode != 0o700 || owner.is_some_and(|o| (s.uid, s.gid) != o),
        None => {}
    }
    let current = match stat(&file)? {
        Some(s) if s.kind != FileKind::File => return Err(not_a(&file, "regular file", s.kind)),
        Some(s) => {
            perms_wrong |= s.mode != 0o600 || owner.is_some_and(|o| (s.uid, s.gid) != o);
            let bytes = ctx
                .sys
                .read(&file)
                .map_err(Error::io(format!("cannot read {}", file.display())))?;
            Some(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
        }
        None => None,
    };
    let wanted = render(keys);
    let present: Vec<&str> = current
        .as_deref()
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let added = keys
        .iter()
        .filter(|k| !present.contains(&k.as_str()))
        .count();
    let removed = present
        .iter()
        .filter(|p| !keys.iter().any(|k| k == *p))
        .count();
    let content_differs = match &current {
        Some(text) => *text != wanted,
        // No file and no keys wanted: nothing to write.
        None => !keys.is_empty(),
    };
    if !content_differs && !perms_wrong {
        return Ok(None);
    }
    let note = match (added + removed, perms_wrong) {
        (0, true) if !content_differs => Some("owner or mode fixed"),
        (0, _) => Some("rewritten: order, duplicates or comments"),
        _ => None,
    };
    Ok(Some(KeysChange {
        added,
        removed,
        note,
    }))
}

/// A `System` for account tests: `/etc/passwd`, `/etc/group` and
/// `/etc/shadow` come from captured fixtures, files live under a temporary
/// directory, and
/// ownership is recorded instead of applied (tests need not run as root).
#[cfg(test)]
pub(crate) mod testhost {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::fs;
    use std::io;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use crate::system::testing::Recorder;
    use crate::system::{Cmd, Output, Perms, Stat, System};

    pub const PASSWD_FRESH: &str = include_str!("testdata/etc-passwd-fresh-bookworm.txt");
    pub const GROUP_FRESH: &str = include_str!("testdata/etc-group-fresh-bookworm.txt");
    pub const PASSWD_WITH_USERS: &str = include_str!("testdata/etc-passwd-with-users-bookworm.txt");
    pub const GROUP_WITH_USERS: &str = include_str!("testdata/etc-group-with-users-bookworm.txt");
    /// bravo with camille, eve, paheko, dominique and `leaving`, all active.
    pub const PASSWD_LEAVING: &str = include_str!("testdata/etc-passwd-leaving-bookworm.txt");
    pub const GROUP_LEAVING: &str = include_str!("testdata/etc-group-leaving-bookworm.txt");
    pub const SHADOW_ACTIVE: &str = include_str!("testdata/etc-shadow-leaving-active-bookworm.txt");
    /// After `usermod --lock --expiredate 1 leaving`.
    pub const SHADOW_LOCKED: &str = include_str!("testdata/etc-shadow-leaving-locked-bookworm.txt");
    /// The same, `leaving` having had a password set with chpasswd first.
    pub const SHADOW_LOCKED_WITH_PASSWORD: &str =
        include_str!("testdata/etc-shadow-leaving-locked-with-password-bookworm.txt");

    pub struct TestHost {
        pub rec: Recorder,
        passwd: RefCell<String>,
        group: RefCell<String>,
        /// `None`: no /etc/shadow.
        shadow: Option<String>,
        /// Accounts as the next command leaves them (useradd...).
        after: RefCell<Option<(String, String)>>,
        owners: RefCell<BTreeMap<PathBuf, (u32, u32)>>,
        /// Homes are moved under this directory.
        pub root: Option<tempfile::TempDir>,
    }

    impl TestHost {
        pub fn new(passwd: &str, group: &str) -> TestHost {
            TestHost {
                rec: Recorder::new(),
                passwd: RefCell::new(passwd.to_owned()),
                group: RefCell::new(group.to_owned()),
                shadow: None,
                after: RefCell::new(None),
                owners: RefCell::new(BTreeMap::new()),
                root: None,
            }
        }

        /// bravo before any account of ours.
        pub fn fresh() -> TestHost {
            TestHost::new(PASSWD_FRESH, GROUP_FRESH)
        }

        /// bravo with camille, paheko, eve and the racines group.
        pub fn with_users() -> TestHost {
            TestHost::new(PASSWD_WITH_USERS, GROUP_WITH_USERS)
        }

        /// Like `new`, with every home under `/home` and `/srv` moved into
        /// a temporary directory, where the keys can be written.
        pub fn with_homes(passwd: &str, group: &str) -> TestHost {
            let root = tempfile::tempdir().unwrap();
            let mut host = TestHost::new(&Self::rehome(root.path(), passwd), group);
            fs::create_dir_all(root.path().join("home")).unwrap();
            fs::create_dir_all(root.path().join("srv")).unwrap();
            host.root = Some(root);
            host
        }

        /// Serves this `/etc/shadow`.
        pub fn with_shadow(self, shadow: &str) -> TestHost {
            TestHost {
                shadow: Some(shadow.to_owned()),
                ..self
            }
        }

        fn rehome(root: &Path, passwd: &str) -> String {
            let root = root.display();
            passwd
                .replace(":/home/", &format!(":{root}/home/"))
                .replace(":/srv/", &format!(":{root}/srv/"))
        }

        /// A path under the temporary root.
        pub fn path(&self, rel: &str) -> PathBuf {
            self.root.as_ref().unwrap().path().join(rel)
        }

        /// The accounts after the next command runs.
        pub fn then(&self, passwd: &str, group: &str) {
            let passwd = match &self.root {
                Some(root) => Self::rehome(root.path(), passwd),
                None => passwd.to_owned(),
            };
            *self.after.borrow_mut() = Some((passwd, group.to_owned()));
        }

        pub fn commands(&self) -> Vec<String> {
            self.rec.commands()
        }

        /// The owner recorded for `path`.
        pub fn owner(&self, path: &Path) -> Option<(u32, u32)> {
            self.owners.borrow().get(path).copied()
        }

        pub fn set_owner(&self, path: &Path, uid: u32, gid: u32) {
            self.owners.borrow_mut().insert(path.to_owned(), (uid, gid));
        }
    }

    impl System for TestHost {
        fn run(&self, cmd: &Cmd) -> io::Result<Output> {
            let out = self.rec.run(cmd)?;
            if let Some((passwd, group)) = self.after.borrow_mut().take() {
                *self.passwd.borrow_mut() = passwd;
                *self.group.borrow_mut() = group;
            }
            Ok(out)
        }

        fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
            if path == Path::new("/etc/passwd") {
                return Ok(Some(self.passwd.borrow().clone().into_bytes()));
            }
            if path == Path::new("/etc/group") {
                return Ok(Some(self.group.borrow().clone().into_bytes()));
            }
            if path == Path::new("/etc/shadow") {
                return Ok(self.shadow.clone().map(String::into_bytes));
            }
            match fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err),
            }
        }

        fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
            let stat = match fs::symlink_metadata(path) {
                Ok(meta) => crate::system::stat_of(&meta),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err),
            };
            let (uid, gid) = self.owner(path).unwrap_or((0, 0));
            Ok(Some(Stat { uid, gid, ..stat }))
        }

        fn write_atomic(&self, path: &Path, content: &[u8], perms: Perms) -> io::Result<()> {
            fs::write(path, content)?;
            fs::set_permissions(path, fs::Permissions::from_mode(perms.mode))?;
            self.set_owner(path, perms.uid, perms.gid);
            Ok(())
        }

        fn create_dir(&self, path: &Path, perms: Perms) -> io::Result<()> {
            fs::create_dir(path)?;
            fs::set_permissions(path, fs::Permissions::from_mode(perms.mode))?;
            self.set_owner(path, perms.uid, perms.gid);
            Ok(())
        }

        fn chown(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
            let (old_uid, old_gid) = self.owner(path).unwrap_or((0, 0));
            self.set_owner(path, uid.unwrap_or(old_uid), gid.unwrap_or(old_gid));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::testhost::*;
    use super::*;
    use crate::resources::{RunState, converge};

    /// Two real keys (ssh-keygen -t ed25519), one per line.
    const KEYS: &str = include_str!("testdata/ssh-keys-camille.pub");

    fn keys(n: usize) -> Vec<String> {
        KEYS.lines().take(n).map(str::to_owned).collect()
    }

    fn spec(name: &str) -> UserSpec {
        UserSpec {
            name: name.to_owned(),
            state: Presence::Present,
            uid: None,
            group: None,
            groups: None,
            shell: None,
            home: None,
            system: false,
            authorized_keys: None,
            locked: None,
        }
    }

    fn run_with(
        sys: &TestHost,
        check: bool,
        state: &mut RunState,
        spec: &UserSpec,
    ) -> Result<Vec<String>, Error> {
        let mut ctx = Ctx {
            sys,
            check,
            want_diff: false,
            sensitive: false,
            run: state,
        };
        converge(spec, &mut ctx).map(|o| o.changes)
    }

    fn run(sys: &TestHost, check: bool, spec: &UserSpec) -> Result<Vec<String>, Error> {
        run_with(sys, check, &mut RunState::default(), spec)
    }

    fn camille() -> UserSpec {
        UserSpec {
            groups: Some(vec!["sudo".into()]),
            shell: Some("/bin/bash".into()),
            ..spec("camille")
        }
    }

    #[test]
    fn creates_a_user_with_its_own_group_then_changes_nothing() {
        let sys = TestHost::fresh();
        assert_eq!(
            run(&sys, false, &camille()).unwrap(),
            vec!["create user camille"]
        );
        // The argv that created camille on bravo, captured in the fixture.
        assert_eq!(
            sys.commands(),
            vec![
                "useradd --user-group --create-home --home-dir /home/camille --shell /bin/bash \
                 --groups sudo camille"
            ]
        );
        let sys = TestHost::with_users();
        assert_eq!(run(&sys, false, &camille()).unwrap(), Vec::<String>::new());
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn system_user_in_an_existing_group() {
        let sys = TestHost::fresh();
        let spec = UserSpec {
            system: true,
            group: Some("root".into()),
            home: Some("/var/lib/paheko".into()),
            shell: Some("/usr/sbin/nologin".into()),
            uid: Some(999),
            ..spec("paheko")
        };
        assert_eq!(run(&sys, false, &spec).unwrap(), vec!["create user paheko"]);
        assert_eq!(
            sys.commands(),
            vec![
                "useradd --system --uid 999 --gid root --create-home --home-dir /var/lib/paheko \
                 --shell /usr/sbin/nologin paheko"
            ]
        );
    }

    #[test]
    fn existing_group_of_the_users_name_becomes_its_primary_group() {
        // useradd --user-group refuses a group that exists ("group eve
        // exists - if you want to add this user to that group, use -g").
        let sys = TestHost::new(PASSWD_FRESH, GROUP_WITH_USERS);
        assert_eq!(
            run(&sys, false, &spec("eve")).unwrap(),
            vec!["create user eve"]
        );
        assert_eq!(
            sys.commands(),
            vec!["useradd --gid eve --create-home --home-dir /home/eve --shell /bin/bash eve"]
        );
    }

    #[test]
    fn missing_groups_are_errors_unless_planned_in_check_mode() {
        let spec = UserSpec {
            groups: Some(vec!["racines".into()]),
            ..spec("camille")
        };
        let sys = TestHost::fresh();
        let err = run(&sys, false, &spec).unwrap_err().to_string();
        assert!(err.contains("group \"racines\" does not exist"), "{err}");
        assert!(sys.commands().is_empty());

        let sys = TestHost::fresh();
        let mut state = RunState::default();
        state.planned.insert("group:racines".into());
        assert_eq!(
            run_with(&sys, true, &mut state, &spec).unwrap(),
            vec!["create user camille"]
        );
    }

    #[test]
    fn check_mode_for_a_new_user_reports_keys_and_plans_it() {
        let sys = TestHost::fresh();
        let mut state = RunState::default();
        let spec = UserSpec {
            authorized_keys: Some(keys(2)),
            ..camille()
        };
        assert_eq!(
            run_with(&sys, true, &mut state, &spec).unwrap(),
            vec!["create user camille", "authorized_keys: +2 -0 keys"]
        );
        assert!(sys.commands().is_empty());
        for key in ["user:camille", "group:camille", "path:/home/camille"] {
            assert!(state.planned.contains(key), "{key}");
        }
    }

    #[test]
    fn new_user_gets_its_keys_owned_and_private() {
        let sys = TestHost::with_homes(PASSWD_FRESH, GROUP_FRESH);
        // What useradd leaves: the account, and its home.
        sys.then(PASSWD_WITH_USERS, GROUP_WITH_USERS);
        fs::create_dir(sys.path("home/camille")).unwrap();
        let spec = UserSpec {
            authorized_keys: Some(keys(2)),
            home: Some(sys.path("home/camille").display().to_string()),
            ..camille()
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["create user camille", "authorized_keys: +2 -0 keys"]
        );
        let ssh = sys.path("home/camille/.ssh");
        let file = ssh.join("authorized_keys");
        assert_eq!(fs::read_to_string(&file).unwrap(), KEYS);
        assert_eq!(sys.owner(&file), Some((1000, 1001)));
        assert_eq!(sys.owner(&ssh), Some((1000, 1001)));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&ssh), mode(&file)), (0o700, 0o600));

        // Applied again: nothing.
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
        assert_eq!(sys.commands().len(), 1);
    }

    #[test]
    fn keys_are_exactly_the_listed_ones() {
        let sys = TestHost::with_homes(PASSWD_WITH_USERS, GROUP_WITH_USERS);
        let ssh = sys.path("home/camille/.ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
        sys.set_owner(&ssh, 1000, 1001);
        let file = ssh.join("authorized_keys");
        fs::write(&file, KEYS.lines().nth(1).unwrap().to_owned() + "\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        sys.set_owner(&file, 1000, 1001);

        let spec = UserSpec {
            authorized_keys: Some(keys(1)),
            ..camille()
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["authorized_keys: +1 -1 keys"]
        );
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            keys(1)[0].clone() + "\n"
        );
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());

        // An empty list empties the file.
        let none = UserSpec {
            authorized_keys: Some(vec![]),
            ..camille()
        };
        assert_eq!(
            run(&sys, false, &none).unwrap(),
            vec!["authorized_keys: +0 -1 keys"]
        );
        assert_eq!(fs::read_to_string(&file).unwrap(), "");
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn keys_file_with_a_wrong_owner_or_mode_is_fixed() {
        let sys = TestHost::with_homes(PASSWD_WITH_USERS, GROUP_WITH_USERS);
        let ssh = sys.path("home/camille/.ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).unwrap();
        let file = ssh.join("authorized_keys");
        fs::write(&file, KEYS).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let spec = UserSpec {
            authorized_keys: Some(keys(2)),
            ..camille()
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["authorized_keys: +0 -0 keys (owner or mode fixed)"]
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&ssh), mode(&file)), (0o700, 0o600));
        assert_eq!(sys.owner(&ssh), Some((1000, 1001)));
        assert_eq!(sys.owner(&file), Some((1000, 1001)));
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn symlinked_ssh_directory_is_refused() {
        let sys = TestHost::with_homes(PASSWD_WITH_USERS, GROUP_WITH_USERS);
        let elsewhere = sys.path("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::create_dir_all(sys.path("home/camille")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, sys.path("home/camille/.ssh")).unwrap();
        let spec = UserSpec {
            authorized_keys: Some(keys(1)),
            ..camille()
        };
        let err = run(&sys, false, &spec).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link, not a directory"), "{err}");
        assert!(!elsewhere.join("authorized_keys").exists());
    }

    #[test]
    fn missing_home_of_an_existing_user_is_an_error_for_keys() {
        // eve's home, /srv/eve, was never created.
        let sys = TestHost::with_homes(PASSWD_WITH_USERS, GROUP_WITH_USERS);
        let spec = UserSpec {
            authorized_keys: Some(keys(1)),
            ..spec("eve")
        };
        let err = run(&sys, false, &spec).unwrap_err().to_string();
        assert!(err.contains("home"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn shell_home_group_and_groups_change_in_one_usermod() {
        // eve: group eve, no supplementary group, /bin/sh, /srv/eve.
        let sys = TestHost::with_users();
        let spec = UserSpec {
            shell: Some("/bin/bash".into()),
            home: Some("/home/eve".into()),
            group: Some("racines".into()),
            groups: Some(vec!["sudo".into(), "adm".into()]),
            ..spec("eve")
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec![
                "shell /bin/sh -> /bin/bash",
                "home /srv/eve -> /home/eve (files not moved)",
                "group eve -> racines",
                "groups (none) -> adm,sudo",
            ]
        );
        assert_eq!(
            sys.commands(),
            vec!["usermod --shell /bin/bash --home /home/eve --gid racines --groups adm,sudo eve"]
        );
    }

    #[test]
    fn empty_groups_remove_every_supplementary_group() {
        let sys = TestHost::with_users();
        let spec = UserSpec {
            groups: Some(vec![]),
            ..spec("camille")
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["groups sudo -> (none)"]
        );
        let ran = sys.rec.ran.borrow();
        assert_eq!(ran[0].argv, vec!["usermod", "--groups", "", "camille"]);
    }

    #[test]
    fn uid_and_system_of_an_existing_user_are_left_alone() {
        let sys = TestHost::with_users();
        let spec = UserSpec {
            uid: Some(4242),
            system: true,
            ..camille()
        };
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn uid_taken_by_another_user_is_refused() {
        let sys = TestHost::fresh();
        let spec = UserSpec {
            uid: Some(0),
            ..spec("camille")
        };
        let err = run(&sys, false, &spec).unwrap_err().to_string();
        assert!(err.contains("uid 0 already belongs to user root"), "{err}");
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn absent_removes_the_account_and_keeps_the_home() {
        let sys = TestHost::with_users();
        let spec = UserSpec {
            state: Presence::Absent,
            ..spec("eve")
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["remove user eve (home /srv/eve kept)"]
        );
        assert_eq!(sys.commands(), vec!["userdel eve"]);
        let sys = TestHost::fresh();
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn names_and_keys_useradd_would_misread_are_refused() {
        for spec in [
            spec("-o"),
            spec("a:b"),
            UserSpec {
                authorized_keys: Some(vec!["ssh-ed25519 AAAA\nssh-rsa BBBB".into()]),
                ..spec("camille")
            },
            UserSpec {
                shell: Some("bash".into()),
                ..spec("camille")
            },
            UserSpec {
                groups: Some(vec!["-G".into()]),
                ..spec("camille")
            },
        ] {
            let sys = TestHost::fresh();
            assert!(
                matches!(run(&sys, false, &spec), Err(Error::Invalid(_))),
                "{spec:?}"
            );
            assert!(sys.commands().is_empty());
        }
    }

    /// bravo with the `leaving` account, its shadow as given.
    fn leaving_host(shadow: &str) -> TestHost {
        TestHost::new(PASSWD_LEAVING, GROUP_LEAVING).with_shadow(shadow)
    }

    fn locked(name: &str, locked: bool) -> UserSpec {
        UserSpec {
            locked: Some(locked),
            ..spec(name)
        }
    }

    #[test]
    fn shadow_lock_state_reads_alike_on_every_release() {
        let fixtures = [
            (
                include_str!("testdata/etc-shadow-leaving-active-bullseye.txt"),
                false,
            ),
            (SHADOW_ACTIVE, false),
            (
                include_str!("testdata/etc-shadow-leaving-active-trixie.txt"),
                false,
            ),
            (
                include_str!("testdata/etc-shadow-leaving-locked-bullseye.txt"),
                true,
            ),
            (SHADOW_LOCKED, true),
            (
                include_str!("testdata/etc-shadow-leaving-locked-trixie.txt"),
                true,
            ),
        ];
        for (text, expired) in fixtures {
            assert_eq!(
                shadow_of(text, "leaving"),
                Some(Shadow {
                    expired,
                    locked_hash: false
                })
            );
            // Another account with its bare `!` from useradd: not locked.
            assert_eq!(shadow_of(text, "dominique").map(|s| s.expired), Some(false));
        }
        assert_eq!(
            shadow_of(SHADOW_LOCKED_WITH_PASSWORD, "leaving"),
            Some(Shadow {
                expired: true,
                locked_hash: true
            })
        );
        assert_eq!(shadow_of(SHADOW_ACTIVE, "nosuchuser"), None);
    }

    #[test]
    fn leaving_admin_is_locked_in_the_same_usermod_as_shell_and_groups() {
        let sys = TestHost::with_homes(PASSWD_LEAVING, GROUP_LEAVING).with_shadow(SHADOW_ACTIVE);
        let ssh = sys.path("home/camille/.ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
        sys.set_owner(&ssh, 1000, 1001);
        let file = ssh.join("authorized_keys");
        fs::write(&file, KEYS).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        sys.set_owner(&file, 1000, 1001);
        let spec = UserSpec {
            shell: Some("/usr/sbin/nologin".into()),
            groups: Some(vec![]),
            authorized_keys: Some(vec![]),
            locked: Some(true),
            ..spec("camille")
        };
        // The change lines, as the journal records them.
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec![
                "shell /bin/bash -> /usr/sbin/nologin",
                "groups sudo -> (none)",
                "lock the account (password locked, expired)",
                "authorized_keys: +0 -2 keys",
            ]
        );
        let ran = sys.rec.ran.borrow();
        assert_eq!(ran.len(), 1);
        assert_eq!(
            ran[0].argv,
            vec![
                "usermod",
                "--shell",
                "/usr/sbin/nologin",
                "--groups",
                "",
                "--lock",
                "--expiredate",
                "1",
                "camille"
            ]
        );
        assert_eq!(fs::read_to_string(&file).unwrap(), "");
    }

    #[test]
    fn locked_user_asked_locked_changes_nothing() {
        let sys = leaving_host(SHADOW_LOCKED);
        assert_eq!(
            run(&sys, false, &locked("leaving", true)).unwrap(),
            Vec::<String>::new()
        );
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn bare_bang_password_is_not_a_locked_account() {
        // useradd left `leaving:!:...` with no expiry: asked unlocked, it is.
        let sys = leaving_host(SHADOW_ACTIVE);
        assert_eq!(
            run(&sys, false, &locked("leaving", false)).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            run(&sys, false, &locked("leaving", true)).unwrap(),
            vec!["lock the account (password locked, expired)"]
        );
        let ran = sys.rec.ran.borrow();
        assert_eq!(
            ran[0].argv,
            vec!["usermod", "--lock", "--expiredate", "1", "leaving"]
        );
    }

    #[test]
    fn unlocking_clears_the_expiry_without_unlocking_a_bare_bang() {
        // usermod --unlock on `!` refuses: "unlocking the user's password
        // would result in a passwordless account".
        let sys = leaving_host(SHADOW_LOCKED);
        assert_eq!(
            run(&sys, false, &locked("leaving", false)).unwrap(),
            vec!["unlock the account"]
        );
        let ran = sys.rec.ran.borrow();
        assert_eq!(ran.len(), 1);
        assert_eq!(ran[0].argv, vec!["usermod", "--expiredate", "", "leaving"]);
    }

    #[test]
    fn unlocking_a_locked_password_hash_also_unlocks_the_password() {
        let sys = leaving_host(SHADOW_LOCKED_WITH_PASSWORD);
        assert_eq!(
            run(&sys, false, &locked("leaving", false)).unwrap(),
            vec!["unlock the account"]
        );
        let ran = sys.rec.ran.borrow();
        assert_eq!(
            ran[0].argv,
            vec!["usermod", "--expiredate", "", "--unlock", "leaving"]
        );
    }

    #[test]
    fn check_mode_reports_a_lock_and_runs_nothing() {
        let sys = leaving_host(SHADOW_ACTIVE);
        assert_eq!(
            run(&sys, true, &locked("leaving", true)).unwrap(),
            vec!["lock the account (password locked, expired)"]
        );
        let sys = leaving_host(SHADOW_LOCKED);
        assert_eq!(
            run(&sys, true, &locked("leaving", false)).unwrap(),
            vec!["unlock the account"]
        );
        assert!(sys.commands().is_empty());
        let sys = TestHost::fresh();
        assert_eq!(
            run(&sys, true, &locked("leaving", true)).unwrap(),
            vec![
                "create user leaving",
                "lock the account (password locked, expired)"
            ]
        );
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn new_locked_user_is_created_then_locked() {
        let sys = TestHost::fresh();
        assert_eq!(
            run(&sys, false, &locked("leaving", true)).unwrap(),
            vec![
                "create user leaving",
                "lock the account (password locked, expired)"
            ]
        );
        assert_eq!(
            sys.commands(),
            vec![
                "useradd --user-group --create-home --home-dir /home/leaving --shell /bin/bash \
                 leaving",
                "usermod --lock --expiredate 1 leaving",
            ]
        );
        // Asked unlocked, a new account needs nothing more.
        let sys = TestHost::fresh();
        assert_eq!(
            run(&sys, false, &locked("leaving", false)).unwrap(),
            vec!["create user leaving"]
        );
    }

    #[test]
    fn locking_an_account_missing_from_shadow_is_refused() {
        let sys = TestHost::with_users();
        let err = run(&sys, false, &locked("camille", true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no entry in /etc/shadow"), "{err}");
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn locked_is_ignored_for_an_absent_user() {
        let sys = leaving_host(SHADOW_LOCKED);
        let spec = UserSpec {
            state: Presence::Absent,
            ..locked("leaving", true)
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["remove user leaving (home /home/leaving kept)"]
        );
        assert_eq!(sys.commands(), vec!["userdel leaving"]);
    }
}
