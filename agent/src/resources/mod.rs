//! Resource kinds: one file each, all behind [`Kind`].
//!
//! Every kind follows the same flow: read the current state, compute the
//! list of differences ([`Kind::differences`]), apply exactly those
//! ([`Kind::apply`]), report them. Check mode stops after the differences.
//! [`converge`] is that flow; [`evaluate`] is the one `match` that picks the
//! kind, so adding a kind is adding a file, a variant in
//! `clou_protocol::Resource` and a line there.
//!
//! Packages are the exception that proves the rule: all package resources of
//! a plan form one [`package::Batch`], converged at the first of them in one
//! apt transaction (the engine does that).
//!
//! What the path kinds share (owner, group and mode, parent directories,
//! diffs, hashes) lives in [`paths`], which is not a kind.

pub mod archive;
pub mod command;
pub mod directory;
pub mod file;
pub mod group;
pub mod line;
pub mod package;
pub mod paths;
pub mod release;
pub mod service;
pub mod symlink;
pub mod user;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::Path;

use clou_protocol::Resource;

use crate::accounts::Accounts;
use crate::system::{Cmd, Output, System};

/// What a resource could not do, in words for the admin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A program exited non-zero (or could not start).
    #[error("`{command}` failed ({status}){}", if .tail.is_empty() { String::new() } else { format!(":\n{}", .tail) })]
    Command {
        command: String,
        status: String,
        tail: String,
    },
    /// The spec cannot be met as written, or the host is not in a state the
    /// resource will touch (a directory where a file should be...).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An `Io` error builder for `map_err`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// What one run of the agent remembers across resources.
#[derive(Debug, Default)]
pub struct RunState {
    /// A systemd unit file changed: `daemon-reload` before the next service.
    pub units_changed: bool,
    /// Things earlier resources created, or in check mode would create:
    /// `user:NAME`, `group:NAME`, `path:/abs`, `package:NAME`, `unit:NAME`.
    /// In check mode a later resource that needs one of them reports what
    /// it would do instead of failing ("would install, would start").
    pub planned: HashSet<String>,
    /// The resource that just failed put everything back as it was (a
    /// tenant's `release` rolled back): with the plan's `keep_going`, the
    /// run goes on instead of skipping the rest.
    pub contained_failure: bool,
    /// The release an `archive` resource's `current` pointed to before this
    /// run switched it, by dest: what tenants without a link of their own
    /// (the shared-tree layout before per-tenant releases) were running.
    pub shared_before: std::collections::HashMap<String, String>,
}

/// What a resource gets to work with.
pub struct Ctx<'a> {
    pub sys: &'a dyn System,
    /// Check mode: compute differences, change nothing.
    pub check: bool,
    /// Produce a unified diff of content changes (false for secrets).
    pub want_diff: bool,
    /// The resource's content is secret: never put it in a change line.
    pub sensitive: bool,
    pub run: &'a mut RunState,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("check", &self.check)
            .field("want_diff", &self.want_diff)
            .field("sensitive", &self.sensitive)
            .field("run", &self.run)
            .finish()
    }
}

impl Ctx<'_> {
    /// Runs a program; a non-zero exit is an [`Error::Command`].
    pub fn run_ok(&self, cmd: &Cmd) -> Result<Output, Error> {
        let out = self.run(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(command_failed(cmd, &out))
        }
    }

    /// Runs a program; only failing to start it is an error.
    pub fn run(&self, cmd: &Cmd) -> Result<Output, Error> {
        self.sys.run(cmd).map_err(|err| Error::Command {
            command: cmd.display(),
            status: format!("could not start: {err}"),
            tail: String::new(),
        })
    }

    /// The host's accounts, read now (earlier resources may have added some).
    pub fn accounts(&self) -> Result<Accounts, Error> {
        Accounts::read(self.sys).map_err(Error::io("cannot read /etc/passwd or /etc/group"))
    }

    /// Was `key` (e.g. `user:www-data`) planned by an earlier resource?
    pub fn planned(&self, key: &str) -> bool {
        self.run.planned.contains(key)
    }

    /// Records that this resource creates (or would create) `key`.
    pub fn plan(&mut self, key: String) {
        self.run.planned.insert(key);
    }

    /// The uid of `name`. `Ok(None)` in check mode when an earlier resource
    /// would create the user; an error when it does not exist otherwise.
    pub fn uid(&self, accounts: &Accounts, name: &str) -> Result<Option<u32>, Error> {
        if let Some(user) = accounts.user(name) {
            return Ok(Some(user.uid));
        }
        if self.check && self.planned(&format!("user:{name}")) {
            return Ok(None);
        }
        Err(Error::Invalid(format!(
            "user {name:?} does not exist on this host; declare a `user` resource before this one"
        )))
    }

    /// The gid of `name`, like [`Ctx::uid`].
    pub fn gid(&self, accounts: &Accounts, name: &str) -> Result<Option<u32>, Error> {
        if let Some(group) = accounts.group(name) {
            return Ok(Some(group.gid));
        }
        if self.check
            && (self.planned(&format!("group:{name}")) || self.planned(&format!("user:{name}")))
        {
            return Ok(None);
        }
        Err(Error::Invalid(format!(
            "group {name:?} does not exist on this host; declare a `group` resource before this one"
        )))
    }

    /// In check mode, whether a missing `path` is explained by an earlier
    /// resource that would create it (or one of its parents).
    pub fn path_planned(&self, path: &Path) -> bool {
        self.check
            && path
                .ancestors()
                .any(|p| self.planned(&format!("path:{}", p.display())))
    }
}

/// The error for a program that exited non-zero.
pub fn command_failed(cmd: &Cmd, out: &Output) -> Error {
    Error::Command {
        command: cmd.display(),
        status: match out.code {
            Some(code) => format!("exit {code}"),
            None => "killed by a signal".to_owned(),
        },
        tail: out.tail(),
    }
}

/// The differences a kind found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Differences<C> {
    /// One entry per thing to change; empty means already as asked.
    pub changes: Vec<C>,
    /// A unified diff of the content, when asked for and relevant.
    pub diff: Option<String>,
}

impl<C> Differences<C> {
    /// Nothing to do.
    pub fn none() -> Self {
        Differences {
            changes: Vec::new(),
            diff: None,
        }
    }

    /// These changes, no content diff.
    pub fn of(changes: Vec<C>) -> Self {
        Differences {
            changes,
            diff: None,
        }
    }
}

/// One resource kind.
pub trait Kind {
    /// One difference between what is and what is asked. Its `Display` is
    /// the change line shown to the admin and written to the journal: it
    /// says the old and new value (or hash), never a secret.
    type Change: fmt::Display;

    /// Reads the current state and lists what differs. Changes nothing.
    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<Self::Change>, Error>;

    /// Applies exactly `diff` (never called with no changes, nor in check
    /// mode).
    fn apply(&self, ctx: &mut Ctx<'_>, diff: &Differences<Self::Change>) -> Result<(), Error>;
}

/// What converging one resource did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Change lines; empty when the resource was already as asked.
    pub changes: Vec<String>,
    pub diff: Option<String>,
}

/// Read, compare, apply, report: the flow every kind follows.
pub fn converge<K: Kind + ?Sized>(kind: &K, ctx: &mut Ctx<'_>) -> Result<Outcome, Error> {
    let diff = kind.differences(ctx)?;
    if !diff.changes.is_empty() && !ctx.check {
        kind.apply(ctx, &diff)?;
    }
    Ok(Outcome {
        changes: diff.changes.iter().map(ToString::to_string).collect(),
        diff: diff.diff,
    })
}

/// Converges one resource (packages go through [`package::Batch`] instead).
pub fn evaluate(resource: &Resource, ctx: &mut Ctx<'_>) -> Result<Outcome, Error> {
    match resource {
        Resource::File(spec) => converge(spec, ctx),
        Resource::Directory(spec) => converge(spec, ctx),
        Resource::Symlink(spec) => converge(spec, ctx),
        Resource::Line(spec) => converge(spec, ctx),
        Resource::Package(spec) => converge(&package::Batch::new(vec![spec.clone()]), ctx),
        Resource::Service(spec) => converge(spec, ctx),
        Resource::User(spec) => converge(spec, ctx),
        Resource::Group(spec) => converge(spec, ctx),
        Resource::Command(spec) => converge(spec, ctx),
        Resource::Archive(spec) => converge(spec, ctx),
        Resource::Release(spec) => converge(spec, ctx),
    }
}

/// Refuses a path that is not absolute or has `..` in it.
pub fn absolute(path: &str) -> Result<&Path, Error> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(Error::Invalid(format!(
            "{path:?} is not an absolute path without `..`"
        )));
    }
    Ok(p)
}
