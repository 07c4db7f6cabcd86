//! The resource kinds, as the agent receives them.
//!
//! A role author writes these same fields in `role.yaml`, under the kind's
//! name (`- file: {path: /etc/motd, content: "hello"}`); the controller only
//! replaces `template:` and `source:` by the rendered `content`. Every field
//! is documented here because this is the reference for role authors.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One resource: a kind and its spec. Adding a kind is adding a variant here
/// and a file in the agent's `resources` module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    File(FileSpec),
    Directory(DirectorySpec),
    Symlink(SymlinkSpec),
    Line(LineSpec),
    Package(PackageSpec),
    Service(ServiceSpec),
    User(UserSpec),
    Group(GroupSpec),
    Command(CommandSpec),
    Archive(ArchiveSpec),
    Release(ReleaseSpec),
}

impl Resource {
    /// The kind's name as written in roles (`file`, `package`...).
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::File(_) => "file",
            Resource::Directory(_) => "directory",
            Resource::Symlink(_) => "symlink",
            Resource::Line(_) => "line",
            Resource::Package(_) => "package",
            Resource::Service(_) => "service",
            Resource::User(_) => "user",
            Resource::Group(_) => "group",
            Resource::Command(_) => "command",
            Resource::Archive(_) => "archive",
            Resource::Release(_) => "release",
        }
    }

    /// What the resource is about: a path, a package, a unit... Together
    /// with the kind it names the resource in reports (`file:/etc/motd`).
    pub fn subject(&self) -> String {
        match self {
            Resource::File(s) => s.path.clone(),
            Resource::Directory(s) => s.path.clone(),
            Resource::Symlink(s) => s.path.clone(),
            Resource::Line(s) => s.path.clone(),
            Resource::Package(s) => s.name.clone(),
            Resource::Service(s) => s.name.clone(),
            Resource::User(s) => s.name.clone(),
            Resource::Group(s) => s.name.clone(),
            Resource::Command(s) => s.argv.join(" "),
            Resource::Archive(s) => s.dest.clone(),
            Resource::Release(s) => format!("{}/tenants/{}", s.dest, s.tenant),
        }
    }
}

/// Whether a thing must exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    #[default]
    Present,
    Absent,
}

impl Presence {
    fn is_present(&self) -> bool {
        *self == Presence::Present
    }
}

/// A regular file.
///
/// ```yaml
/// - file:
///     path: /etc/ssh/sshd_config.d/clou.conf
///     template: sshd.conf.hbs      # or content: "...", or source: files/x
///     owner: root
///     group: root
///     mode: "0644"
///     notify: [reload ssh]
/// ```
///
/// Written atomically: a temporary file in the same directory, then a
/// rename. The parent directory must exist (declare a `directory` first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path.
    pub path: String,
    /// `present` (default) or `absent`.
    #[serde(default, skip_serializing_if = "Presence::is_present")]
    pub state: Presence,
    /// The whole content. Without it, only owner, group and mode are managed
    /// (and an absent file is created empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Owner name (default: root for a new file, unchanged otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Group name (default: root for a new file, unchanged otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Octal mode as a quoted string, e.g. "0640" (default: 0644 for a new
    /// file, unchanged otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Keep the previous content as `PATH.clou-TIMESTAMP` when replacing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup: bool,
    /// A command that checks the new content before it replaces the old,
    /// with `%s` standing for a temporary copy, e.g.
    /// `[visudo, -c, -f, "%s"]` or `[sshd, -t, -f, "%s"]`. When it fails the
    /// file is left as it was and the resource fails. (Not run in check
    /// mode, which writes nothing.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Vec<String>>,
}

/// File content on the wire: text as is, anything else in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Text(String),
    Base64(String),
}

/// A directory.
///
/// ```yaml
/// - directory: {path: /srv/backups, owner: root, mode: "0750"}
/// ```
///
/// Missing parents are created too (owned by root, mode 0755). `absent`
/// removes the directory only when it is empty, so nothing is lost by a typo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    /// Absolute path.
    pub path: String,
    /// `present` (default) or `absent` (only when empty).
    #[serde(default, skip_serializing_if = "Presence::is_present")]
    pub state: Presence,
    /// Owner name (default: root when created, unchanged otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Group name (default: root when created, unchanged otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Octal mode as a quoted string (default: 0755 when created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

/// A symbolic link.
///
/// ```yaml
/// - symlink: {path: /etc/nginx/sites-enabled/wiki, target: ../sites-available/wiki}
/// ```
///
/// Replaced atomically when it points elsewhere. A regular file or a
/// directory in its place is an error, never silently removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkSpec {
    /// Absolute path of the link.
    pub path: String,
    /// What the link points to, as stored in the link (may be relative).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// `present` (default) or `absent`.
    #[serde(default, skip_serializing_if = "Presence::is_present")]
    pub state: Presence,
}

/// One line in a file that is otherwise left alone.
///
/// ```yaml
/// - line:
///     path: /etc/default/grub
///     regexp: '^GRUB_TIMEOUT='
///     line: GRUB_TIMEOUT=2
/// ```
///
/// `present`: the last line matching `regexp` is replaced by `line`; with no
/// match (or no `regexp`) and no identical line, `line` is appended.
/// `absent`: every line matching `regexp` (or equal to `line`) is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSpec {
    /// Absolute path of the file; it must exist unless `create` is true.
    pub path: String,
    /// The line, without its newline. Required for `present`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// A regular expression (Rust `regex` syntax) the line to replace or
    /// remove matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
    /// `present` (default) or `absent`.
    #[serde(default, skip_serializing_if = "Presence::is_present")]
    pub state: Presence,
    /// Create the file (root, 0644) when it does not exist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

/// A Debian package, through apt.
///
/// ```yaml
/// - package: {name: nginx}
/// - package: {name: clou-lab-hello, version: "2.0-1"}
/// - package: {name: telnet, state: absent}
/// ```
///
/// All package changes of a plan happen in one apt transaction, at the
/// place of the first package resource; `apt-get update` runs only when a
/// package or version is unknown to the apt cache or the cache is older
/// than an hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    /// The package name.
    pub name: String,
    /// `present` (default), `absent` (purged) or `latest`.
    #[serde(default, skip_serializing_if = "PackageState::is_present")]
    pub state: PackageState,
    /// An exact version (`present` only), e.g. "2.0-1"; a downgrade is done
    /// if needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What a package must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageState {
    #[default]
    Present,
    Absent,
    Latest,
}

impl PackageState {
    fn is_present(&self) -> bool {
        *self == PackageState::Present
    }
}

/// A systemd service.
///
/// ```yaml
/// - service: {name: nginx, enabled: true, state: running}
/// handlers:
///   reload nginx:
///     service: {name: nginx, action: reload}
/// ```
///
/// When a unit file changed earlier in the plan, `systemctl daemon-reload`
/// runs once before the next service resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unit name; `.service` is implied.
    pub name: String,
    /// Started at boot or not (unchanged when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `running` or `stopped` (unchanged when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ServiceState>,
    /// Run this every time (for handlers): `restart`, `reload` or
    /// `reload_or_restart`. A stopped service is started instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ServiceAction>,
}

/// Whether a service must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Running,
    Stopped,
}

/// An unconditional action on a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAction {
    Restart,
    Reload,
    ReloadOrRestart,
}

/// A local user account.
///
/// ```yaml
/// - user:
///     name: camille
///     groups: [sudo]
///     shell: /bin/bash
///     authorized_keys: ["ssh-ed25519 AAAA... camille@portable"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// `present` (default) or `absent` (the home directory is kept).
    #[serde(default, skip_serializing_if = "Presence::is_present")]
    pub state: Presence,
    /// Numeric uid, only used when creating the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Primary group (default: a group of the user's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Supplementary groups: exactly these (others are removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Login shell (default: /bin/bash when created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Home directory (default: /home/NAME when created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// A system account (uid below 1000, no aging).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// Exactly these keys in `~/.ssh/authorized_keys` (unmanaged when
    /// omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_keys: Option<Vec<String>>,
    /// true: the account can no longer log in: its password is locked and
    /// the account expired (`usermod --lock --expiredate 1`), which also
    /// stops SSH key logins through PAM; pair it with `authorized_keys: []`
    /// and a nologin shell. false: not expired (and the password unlocked
    /// when it has one). Unchanged when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
}

/// A local group.
///
/// ```yaml
/// - group: {name: racines}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name.
    pub name: String,
    /// `present` (default) or `absent`.
    #[serde(default, skip_serializing_if = "Presence::is_present")]
    pub state: Presence,
    /// Numeric gid, only used when creating the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// A system group (gid below 1000).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
}

/// A command, run only when its guards say so. "Changed" means it ran.
///
/// ```yaml
/// - command:
///     argv: [occ, maintenance:repair]
///     unless: [test, -e, /srv/nextcloud/.repaired]
/// ```
///
/// Without any guard it runs on every apply (and reports changed every
/// time): give it a guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Program and arguments; never through a shell (write
    /// `[sh, -c, "..."]` when you need one).
    pub argv: Vec<String>,
    /// Skip when this path exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Skip when this command succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<Vec<String>>,
    /// Run only when this command succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onlyif: Option<Vec<String>>,
    /// Working directory (default: /).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Seconds the command (and each guard) may run before it and
    /// everything it started are killed and the resource fails (default
    /// 1800): a hung command must not hold the host's lock for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// A release archive, downloaded, checked and unpacked side by side.
///
/// ```yaml
/// - archive:
///     url: https://fossil.kd2.org/paheko/uv/paheko-1.3.12.tar.gz
///     sha256: 4f2c...
///     dest: /opt/paheko
///     version: "1.3.12"
/// ```
///
/// Unpacks into `DEST/releases/VERSION`, then points `DEST/current` there
/// with an atomic rename. The previous `keep` releases stay for rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSpec {
    /// `https://`, `http://` or `file://` URL of a `.tar`, `.tar.gz`,
    /// `.tar.xz`, `.tar.bz2` or `.tar.zst` archive.
    pub url: String,
    /// Expected SHA-256 of the archive, in hex. Required: nothing unverified
    /// is ever unpacked.
    pub sha256: String,
    /// Absolute directory holding `releases/` and `current`.
    pub dest: String,
    /// Name of this release's directory.
    pub version: String,
    /// Leading path components to drop when unpacking (default 1, the
    /// usual `project-1.2/` top directory).
    #[serde(default = "default_strip")]
    pub strip_components: u32,
    /// Owner of the unpacked files (default root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Group of the unpacked files (default root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// How many previous releases to keep besides the current one.
    #[serde(default = "default_keep")]
    pub keep: u32,
}

/// One tenant's release of an application, switched with the
/// application's own upgrade procedure.
///
/// ```yaml
/// - release:
///     for_each: tenants.nextcloud
///     tenant: "{{item.name}}"
///     dest: /srv/nextcloud            # the `archive` resource's dest
///     version: "{{nextcloud_version}}"
///     installed: "/var/lib/nextcloud/{{item.name}}/config/config.php"
///     backup_dir: "/var/backups/clou/nextcloud/{{item.name}}"
///     maintenance_on: [girofle-occ, "{{item.name}}", maintenance:mode, --on]
///     backup: [girofle-nextcloud-backup, save, "{{item.name}}"]
///     upgrade: [girofle-occ, "{{item.name}}", upgrade]
///     restore: [girofle-nextcloud-backup, restore, "{{item.name}}"]
///     maintenance_off: [girofle-occ, "{{item.name}}", maintenance:mode, --off]
/// ```
///
/// The tenant's code is the link `DEST/tenants/TENANT`, pointing to
/// `releases/VERSION` (unpacked by an `archive` resource before this one).
/// When the link already points there, nothing runs. A tenant not yet
/// installed (no `installed` path) only gets its link. An installed one is
/// upgraded: maintenance on, backup, link switched, upgrade step,
/// maintenance off. When the backup or the upgrade step fails, the link is
/// put back, `restore` runs, maintenance is turned off, and the resource
/// fails with the step's output; the plan's other tenants are then skipped
/// unless the plan says `keep_going`. A downgrade is refused: the
/// tenant's database has been migrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    /// The tenant's name, which names its link.
    pub tenant: String,
    /// Absolute directory holding `releases/` (the `archive`'s dest).
    pub dest: String,
    /// The release the tenant must run.
    pub version: String,
    /// A path that exists once the tenant's application is installed:
    /// before that there is nothing to upgrade.
    pub installed: String,
    /// Where the backup goes (created root-only): what `backup` writes and
    /// `restore` reads. The last one is kept until the next upgrade.
    pub backup_dir: String,
    pub maintenance_on: Vec<String>,
    pub backup: Vec<String>,
    pub upgrade: Vec<String>,
    pub restore: Vec<String>,
    pub maintenance_off: Vec<String>,
    /// Seconds each step may run before it is killed (default 1800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

fn default_strip() -> u32 {
    1
}

fn default_keep() -> u32 {
    2
}

/// A file mode such as 0644, written as an octal string in roles ("0644").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(pub u32);

impl Mode {
    /// Parses "644", "0644" or "2775". Refuses what is not octal or has
    /// bits beyond 07777.
    pub fn parse(text: &str) -> Result<Mode, String> {
        let digits = text.trim();
        let valid =
            (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if valid && bits <= 0o7777 => Ok(Mode(bits)),
            _ => Err(format!(
                "mode {text:?} is not an octal file mode; write it as a quoted string such as \"0644\""
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A bare YAML number (mode: 644) is refused too: whether 0644 is
        // octal or decimal differs between YAML versions.
        let text = String::deserialize(deserializer)?;
        Mode::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(Mode::parse("0644"), Ok(Mode(0o644)));
        assert_eq!(Mode::parse("2775"), Ok(Mode(0o2775)));
        assert_eq!(Mode::parse("640"), Ok(Mode(0o640)));
        for bad in ["999", "0o644", "rw-r--r--", "", "77777", "64"] {
            let err = Mode::parse(bad).unwrap_err();
            assert!(err.contains("quoted string"), "{bad}: {err}");
        }
        assert_eq!(Mode(0o640).to_string(), "0640");
    }

    #[test]
    fn resources_are_externally_tagged() {
        let json = r#"{"package":{"name":"nginx"}}"#;
        let res: Resource = serde_json::from_str(json).unwrap();
        assert_eq!(res.kind(), "package");
        assert_eq!(res.subject(), "nginx");
        assert_eq!(serde_json::to_string(&res).unwrap(), json);
    }

    #[test]
    fn mode_round_trips_as_string() {
        let json = r#"{"file":{"path":"/etc/motd","content":{"text":"hi\n"},"mode":"0640"}}"#;
        let res: Resource = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&res).unwrap(), json);
    }
}
