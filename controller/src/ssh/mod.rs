//! SSH to hosts, with russh: one connection per host, strict host keys.
//!
//! - [`Target`] is how to reach a host: address, port, user, keys, jump
//!   hosts; built from the inventory and `~/.ssh/config` ([`config`]).
//! - [`connect`] opens the connection, checks the host key against
//!   [`known_hosts`] (refusing unknown and changed keys with both
//!   fingerprints), and logs in with the inventory's key, the config's
//!   `IdentityFile`s, the ssh-agent's keys and the usual `~/.ssh/id_*`.
//! - [`Session::exec`] runs one command on an exec channel and gives its
//!   stdin, stdout lines and stderr lines.

pub mod config;
pub mod known_hosts;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::mpsc;

use crate::inventory::{Host, Inventory, raw::Become};
use known_hosts::{HostKeys, Verdict, fingerprint};

/// How long to wait for a host to answer at all.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct Target {
    /// The inventory name (for messages and known_hosts lookups).
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Run commands through `sudo -n`.
    pub sudo: bool,
    /// Private key files to try, in order.
    pub identities: Vec<PathBuf>,
    /// Try the ssh-agent's keys too.
    pub use_agent: bool,
    /// Hosts to jump through, first hop first.
    pub jumps: Vec<Target>,
    /// A password to log in with when no key is accepted: only a new
    /// server's first contact (`clou onboard`) has one.
    pub password: Option<Password>,
}

/// A login password. It is never shown: not in `Debug`, logs nor errors.
#[derive(Clone)]
pub struct Password(Arc<String>);

impl Password {
    pub fn new(text: String) -> Password {
        Password(Arc::new(text))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(hidden)")
    }
}

impl Target {
    /// The target for an inventory host. A lab inventory uses exactly its
    /// own key and address; otherwise `~/.ssh/config` fills in what the
    /// inventory leaves at its default (user root, port 22, address = name).
    pub fn for_host(inventory: &Inventory, host: &Host, ssh_config: &config::SshConfig) -> Target {
        let sudo = host.become_ == Become::Sudo;
        if let Some(identity) = &inventory.identity {
            return Target {
                name: host.name.clone(),
                address: host.address.clone(),
                port: host.port,
                user: host.user.clone(),
                sudo,
                identities: vec![identity.clone()],
                use_agent: false,
                jumps: Vec::new(),
                password: None,
            };
        }
        let local_user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let cfg = ssh_config.lookup(&host.address, &local_user);
        let user = match (&cfg.user, host.user.as_str()) {
            (Some(u), "root") => u.clone(),
            _ => host.user.clone(),
        };
        let port = match (cfg.port, host.port) {
            (Some(p), 22) => p,
            _ => host.port,
        };
        let mut identities = cfg.identity_files.clone();
        if let Some(home) = std::env::home_dir() {
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let path = home.join(".ssh").join(name);
                if !identities.contains(&path) {
                    identities.push(path);
                }
            }
        }
        let jumps = cfg
            .proxy_jump
            .iter()
            .map(|jump| {
                let jcfg = ssh_config.lookup(&jump.host, &local_user);
                Target {
                    name: jump.host.clone(),
                    address: jcfg.hostname.clone().unwrap_or_else(|| jump.host.clone()),
                    port: jump.port.or(jcfg.port).unwrap_or(22),
                    user: jump
                        .user
                        .clone()
                        .or(jcfg.user.clone())
                        .unwrap_or_else(|| local_user.clone()),
                    sudo: false,
                    identities: identities.clone(),
                    use_agent: true,
                    jumps: Vec::new(),
                    password: None,
                }
            })
            .collect();
        Target {
            name: host.name.clone(),
            address: cfg.hostname.clone().unwrap_or_else(|| host.address.clone()),
            port,
            // A `User` from ~/.ssh/config that is not root needs sudo too.
            sudo: sudo || user != "root",
            user,
            identities,
            use_agent: true,
            jumps,
            password: None,
        }
    }
}

/// Why a host could not be reached. Nothing was done on it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach {address}:{port}: {reason}")]
    Unreachable {
        address: String,
        port: u16,
        reason: String,
    },
    #[error(
        "host key of {name} ({address}) is unknown: it offers {offered}\n  \
         hint: check this fingerprint with the hosting provider or on the console \
         (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run \
         `clou hosts trust {name} --fingerprint {offered}`"
    )]
    UnknownKey {
        name: String,
        address: String,
        offered: String,
    },
    #[error(
        "HOST KEY CHANGED for {name} ({address}): it offers {offered}, but {recorded}\n  \
         hint: this may be a reinstalled server or an attack; check the new fingerprint \
         on the console before running `clou hosts trust {name} --fingerprint {offered}`"
    )]
    ChangedKey {
        name: String,
        address: String,
        offered: String,
        recorded: String,
    },
    #[error(
        "cannot log in to {address} as {user}: nothing was accepted (tried {tried})\n  \
         hint: add your public key to ~{user}/.ssh/authorized_keys there, or load it in ssh-agent"
    )]
    Auth {
        address: String,
        user: String,
        tried: String,
    },
    #[error(
        "no host key of {name} ({address}) is recorded in {files}: not connecting\n  \
         hint: run `clou hosts trust {name}` to see its fingerprint, check it on the \
         console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run \
         `clou hosts trust {name} --fingerprint SHA256:...`"
    )]
    NoKnownKey {
        name: String,
        address: String,
        files: String,
    },
    #[error(
        "the host key of {name} ({address}) is REVOKED ({at}): refusing it\n  \
         hint: a revoked key must never be used again; reinstall the server's keys"
    )]
    RevokedKey {
        name: String,
        address: String,
        at: String,
    },
    #[error("ssh to {address} failed: {reason}")]
    Ssh { address: String, reason: String },
}

/// What the key checker saw, kept for the error message.
#[derive(Debug, Default)]
struct KeyProblem {
    offered: String,
    verdict: Option<Verdict>,
}

struct Checker {
    keys: Arc<HostKeys>,
    names: Vec<String>,
    port: u16,
    problem: Arc<Mutex<KeyProblem>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Host certificates would need a CA to trust; clou pins keys.
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            tracing::warn!("the host offered a certificate; clou only accepts pinned host keys");
            return Ok(false);
        };
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let verdict = self.keys.check(&names, self.port, key);
        let ok = verdict == Verdict::Known;
        if let Ok(mut problem) = self.problem.lock() {
            problem.offered = fingerprint(key);
            problem.verdict = Some(verdict);
        }
        Ok(ok)
    }
}

/// An open, authenticated connection.
pub struct Session {
    handle: Handle<Checker>,
    /// The jump host's session, kept open while this one lives.
    _jump: Option<Box<Session>>,
    /// The host key the server offered (for `clou hosts trust`).
    pub offered_key: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("offered_key", &self.offered_key)
            .finish()
    }
}

fn ssh_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(600)),
        keepalive_interval: Some(Duration::from_secs(15)),
        nodelay: true,
        ..Default::default()
    })
}

/// Connects and logs in (through the jump hosts, if any).
pub fn connect<'a>(
    target: &'a Target,
    keys: Arc<HostKeys>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Session, ConnectError>> + Send + 'a>> {
    Box::pin(async move {
        let problem = Arc::new(Mutex::new(KeyProblem::default()));
        let mut names = vec![target.address.clone()];
        if target.name != target.address {
            names.push(target.name.clone());
        }
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        if !keys.has_any(&name_refs, target.port) {
            return Err(ConnectError::NoKnownKey {
                name: target.name.clone(),
                address: target.address.clone(),
                files: keys.describe(),
            });
        }
        let checker = Checker {
            keys: keys.clone(),
            names,
            port: target.port,
            problem: problem.clone(),
        };
        let unreachable = |reason: String| ConnectError::Unreachable {
            address: target.address.clone(),
            port: target.port,
            reason,
        };
        let (handle, jump) = if let Some((last, first)) = target.jumps.split_last() {
            // Connect through the chain: each hop opens a direct-tcpip
            // channel to the next.
            let mut hop = connect_chain(first, last, keys.clone()).await?;
            let channel = hop
                .handle
                .channel_open_direct_tcpip(
                    target.address.clone(),
                    u32::from(target.port),
                    "127.0.0.1",
                    0,
                )
                .await
                .map_err(|e| unreachable(format!("through {}: {e}", last.address)))?;
            let stream = channel.into_stream();
            let handle = tokio::time::timeout(
                CONNECT_TIMEOUT,
                client::connect_stream(ssh_config(), stream, checker),
            )
            .await
            .map_err(|_| unreachable("no answer within 10 s".into()))?;
            hop.offered_key.clear();
            (handle, Some(Box::new(hop)))
        } else {
            let addr = (target.address.as_str(), target.port);
            let handle = tokio::time::timeout(
                CONNECT_TIMEOUT,
                client::connect(ssh_config(), addr, checker),
            )
            .await
            .map_err(|_| unreachable("no answer within 10 s".into()))?;
            (handle, None)
        };
        let mut handle = match handle {
            Ok(handle) => handle,
            Err(err) => {
                let seen = problem
                    .lock()
                    .map(|p| (p.offered.clone(), p.verdict.clone()));
                return Err(match seen {
                    Ok((offered, Some(Verdict::Unknown))) => ConnectError::UnknownKey {
                        name: target.name.clone(),
                        address: target.address.clone(),
                        offered,
                    },
                    Ok((offered, Some(Verdict::Changed(recorded)))) => ConnectError::ChangedKey {
                        name: target.name.clone(),
                        address: target.address.clone(),
                        offered,
                        recorded: recorded
                            .iter()
                            .map(|(at, fp)| format!("{at} records {fp}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    },
                    Ok((_, Some(Verdict::Revoked(at)))) => ConnectError::RevokedKey {
                        name: target.name.clone(),
                        address: target.address.clone(),
                        at,
                    },
                    _ => match err {
                        russh::Error::IO(io) => unreachable(io.to_string()),
                        other => ConnectError::Ssh {
                            address: target.address.clone(),
                            reason: other.to_string(),
                        },
                    },
                });
            }
        };
        authenticate(&mut handle, target).await?;
        let offered_key = problem
            .lock()
            .map(|p| p.offered.clone())
            .unwrap_or_default();
        Ok(Session {
            handle,
            _jump: jump,
            offered_key,
        })
    })
}

/// Connects to `last` through the hops in `first`.
async fn connect_chain(
    first: &[Target],
    last: &Target,
    keys: Arc<HostKeys>,
) -> Result<Session, ConnectError> {
    let mut hop = last.clone();
    hop.jumps = first.to_vec();
    connect(&hop, keys).await
}

async fn authenticate(handle: &mut Handle<Checker>, target: &Target) -> Result<(), ConnectError> {
    let mut tried = Vec::new();
    let ssh_err = |e: russh::Error| ConnectError::Ssh {
        address: target.address.clone(),
        reason: e.to_string(),
    };
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(ssh_err)?
        .flatten();
    // A password is only set for a new server that took none of the keys
    // already: it goes first, before sshd's MaxAuthTries runs out.
    if let Some(password) = &target.password {
        tried.push("a password".into());
        let result = handle
            .authenticate_password(target.user.clone(), password.0.as_str())
            .await
            .map_err(ssh_err)?;
        if result.success() {
            return Ok(());
        }
    }
    for path in &target.identities {
        if !path.exists() {
            continue;
        }
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(key) => key,
            Err(err) => {
                tracing::debug!("{}: cannot use {}: {err}", target.name, path.display());
                continue;
            }
        };
        tried.push(path.display().to_string());
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
        let result = handle
            .authenticate_publickey(target.user.clone(), key)
            .await
            .map_err(ssh_err)?;
        if result.success() {
            return Ok(());
        }
    }
    if target.use_agent
        && let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await
    {
        let identities = agent.request_identities().await.unwrap_or_default();
        for identity in identities {
            let russh::keys::agent::AgentIdentity::PublicKey { key, comment } = identity else {
                continue;
            };
            tried.push(format!("agent key {comment}"));
            match handle
                .authenticate_publickey_with(target.user.clone(), key, rsa_hash, &mut agent)
                .await
            {
                Ok(result) if result.success() => return Ok(()),
                Ok(_) => {}
                Err(err) => tracing::debug!("{}: agent key refused: {err}", target.name),
            }
        }
    }
    Err(ConnectError::Auth {
        address: target.address.clone(),
        user: target.user.clone(),
        tried: if tried.is_empty() {
            "no key found".into()
        } else {
            tried.join(", ")
        },
    })
}

struct KeyGrabber {
    key: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for KeyGrabber {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = offered
            && let Ok(mut slot) = self.key.lock()
        {
            *slot = Some(key.clone());
        }
        // Never go further: this connection only learns the key.
        Ok(false)
    }
}

/// The host key a host offers, without logging in (for `clou hosts trust`,
/// which records it only if it matches the fingerprint the admin checked).
pub async fn fetch_host_key(
    target: &Target,
    keys: Arc<HostKeys>,
) -> Result<PublicKey, ConnectError> {
    let slot = Arc::new(Mutex::new(None));
    let grabber = KeyGrabber { key: slot.clone() };
    let unreachable = |reason: String| ConnectError::Unreachable {
        address: target.address.clone(),
        port: target.port,
        reason,
    };
    // Behind a jump host, ask through it (the jump host's own key must be
    // known already: trust it first).
    let mut _hop = None;
    let result = if let Some((last, first)) = target.jumps.split_last() {
        let hop = connect_chain(first, last, keys).await?;
        let channel = hop
            .handle
            .channel_open_direct_tcpip(
                target.address.clone(),
                u32::from(target.port),
                "127.0.0.1",
                0,
            )
            .await
            .map_err(|e| unreachable(format!("through {}: {e}", last.address)))?;
        _hop = Some(hop);
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            client::connect_stream(ssh_config(), channel.into_stream(), grabber),
        )
        .await
    } else {
        let addr = (target.address.as_str(), target.port);
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            client::connect(ssh_config(), addr, grabber),
        )
        .await
    };
    if let Ok(Some(key)) = slot.lock().map(|mut s| s.take()) {
        return Ok(key);
    }
    Err(unreachable(match result {
        Err(_) => "no answer within 10 s".to_owned(),
        Ok(Err(err)) => err.to_string(),
        Ok(Ok(_)) => "the host offered no plain host key".to_owned(),
    }))
}

/// What an exec channel sends back.
#[derive(Debug)]
pub enum Event {
    /// One line of stdout (without its newline).
    Stdout(String),
    /// One line of stderr.
    Stderr(String),
    /// The exit code; the last event.
    Exit(Option<u32>),
}

/// A running command.
#[derive(Debug)]
pub struct Exec {
    input: mpsc::Sender<Input>,
    /// Its output, line by line.
    pub events: mpsc::Receiver<Event>,
}

#[derive(Debug)]
enum Input {
    Data(Vec<u8>),
    Eof,
}

impl Exec {
    /// Sends bytes to the command's stdin.
    pub async fn send(&self, data: Vec<u8>) -> bool {
        self.input.send(Input::Data(data)).await.is_ok()
    }

    /// Closes the command's stdin.
    pub async fn close(&self) {
        let _ = self.input.send(Input::Eof).await;
    }
}

impl Session {
    /// Runs `command` (a shell command line, as ssh always is) on a new
    /// exec channel of this connection.
    pub async fn exec(&self, command: &str) -> Result<Exec, russh::Error> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let (in_tx, mut in_rx) = mpsc::channel::<Input>(16);
        let (ev_tx, ev_rx) = mpsc::channel::<Event>(256);
        tokio::spawn(async move {
            let mut out = LineBuffer::default();
            let mut err = LineBuffer::default();
            let mut code = None;
            let mut input_open = true;
            loop {
                tokio::select! {
                    input = in_rx.recv(), if input_open => match input {
                        Some(Input::Data(data)) => {
                            if channel.data(&data[..]).await.is_err() {
                                input_open = false;
                            }
                        }
                        Some(Input::Eof) | None => {
                            let _ = channel.eof().await;
                            input_open = false;
                        }
                    },
                    msg = channel.wait() => match msg {
                        Some(ChannelMsg::Data { data }) => {
                            for line in out.push(&data) {
                                let _ = ev_tx.send(Event::Stdout(line)).await;
                            }
                        }
                        Some(ChannelMsg::ExtendedData { data, .. }) => {
                            for line in err.push(&data) {
                                let _ = ev_tx.send(Event::Stderr(line)).await;
                            }
                        }
                        Some(ChannelMsg::ExitStatus { exit_status }) => code = Some(exit_status),
                        Some(_) => {}
                        None => break,
                    },
                }
            }
            if let Some(line) = out.rest() {
                let _ = ev_tx.send(Event::Stdout(line)).await;
            }
            if let Some(line) = err.rest() {
                let _ = ev_tx.send(Event::Stderr(line)).await;
            }
            let _ = ev_tx.send(Event::Exit(code)).await;
        });
        Ok(Exec {
            input: in_tx,
            events: ev_rx,
        })
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "clou is done", "en")
            .await;
    }
}

/// Splits a byte stream into lines.
#[derive(Debug, Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        lines
    }

    fn rest(&mut self) -> Option<String> {
        (!self.pending.is_empty())
            .then(|| String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned())
    }
}

/// Wraps a command for the host's way of getting root.
pub fn as_root(target: &Target, script: &str) -> String {
    let quoted = crate::process::shell_quote(script);
    if target.sudo {
        format!("sudo -n sh -c {quoted}")
    } else {
        format!("sh -c {quoted}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks() {
        let mut buf = LineBuffer::default();
        assert_eq!(buf.push(b"{\"a\":"), Vec::<String>::new());
        assert_eq!(buf.push(b"1}\n{\"b\""), vec!["{\"a\":1}"]);
        assert_eq!(buf.push(b":2}\nrest"), vec!["{\"b\":2}"]);
        assert_eq!(buf.rest().as_deref(), Some("rest"));
    }
}
