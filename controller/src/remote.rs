//! Running the agent on a host: one request, its answers streamed back.
//!
//! The agent is started with a script that checks its hash first; when it
//! is missing (or not this build's), the script exits 97, the agent is
//! uploaded over the same connection, and started again. Then hellos are
//! exchanged (protocol versions must match), the request (a plan or a
//! health check) is sent, and every message and log line the agent writes
//! is handed to the caller until the agent exits.

use anyhow::Context;
use clou_protocol::{Hello, Message};

use crate::agent_bin;
use crate::ssh::{self, Event, Target};

/// What the agent said, or did.
#[derive(Debug)]
// One event at a time flows to a callback: boxing the message would buy
// nothing but an allocation per report.
#[allow(clippy::large_enum_variant)]
pub enum AgentEvent {
    /// The agent had to be uploaded first.
    Uploading,
    /// A line the agent (or the start script) wrote on stderr.
    Log(String),
    /// A message after the hello.
    Message(Message),
}

/// Exit code of the start script when the host lacks this agent.
const AGENT_MISSING: u32 = 97;

/// The shell script that checks the agent by hash and runs it; exit 97
/// says "upload it first". Only constants and a hex digest go in it.
pub fn run_script() -> String {
    let sha = agent_bin::sha256();
    let path = agent_bin::remote_path();
    format!(
        "f={path}; if [ -x \"$f\" ] && echo \"{sha}  $f\" | sha256sum --check --status 2>/dev/null; \
         then exec \"$f\" serve; fi; echo 'clou: no valid agent {sha}' >&2; exit {AGENT_MISSING}"
    )
}

/// The script that receives the agent on stdin, checks its hash and puts
/// it in place atomically.
pub fn upload_script() -> String {
    let sha = agent_bin::sha256();
    let dir = agent_bin::clou_agent_state_dir();
    let path = agent_bin::remote_path();
    format!(
        "set -e; umask 077; mkdir -p {dir}; chmod 700 {dir}; t=$(mktemp {dir}/.upload.XXXXXX); \
         trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; \
         echo \"{sha}  $t\" | sha256sum --check --status || {{ echo 'clou: the uploaded agent is corrupt' >&2; exit 1; }}; \
         chmod 700 \"$t\"; mv -f \"$t\" {path}; trap - EXIT"
    )
}

/// Sends `request` to the host's agent and hands every event to
/// `on_event`; `is_last` says which message ends the exchange (an agent
/// that exits before sending one is an error).
pub async fn exchange(
    session: &ssh::Session,
    target: &Target,
    request: &Message,
    is_last: fn(&Message) -> bool,
    on_event: &mut (dyn FnMut(AgentEvent) + Send),
) -> anyhow::Result<()> {
    let host = &target.name;
    let hello = line(&Message::Hello(Hello::current(crate::VERSION)))?;
    for attempt in 0..2 {
        let mut exec = session.exec(&ssh::as_root(target, &run_script())).await?;
        exec.send(hello.clone()).await;
        let mut stderr_tail: Vec<String> = Vec::new();
        let mut said_hello = false;
        let mut finished = false;
        while let Some(event) = exec.events.recv().await {
            match event {
                Event::Stderr(text) => {
                    stderr_tail.push(text.clone());
                    if stderr_tail.len() > 8 {
                        stderr_tail.remove(0);
                    }
                    on_event(AgentEvent::Log(text));
                }
                Event::Stdout(text) => {
                    let message: Message = serde_json::from_str(&text).with_context(|| {
                        format!(
                            "the agent on {host} sent something that is not a message: {text:?}"
                        )
                    })?;
                    match message {
                        Message::Hello(theirs) if !said_hello => {
                            if theirs.protocol != clou_protocol::PROTOCOL_VERSION {
                                anyhow::bail!(
                                    "the agent on {host} speaks protocol {}, clou speaks {}",
                                    theirs.protocol,
                                    clou_protocol::PROTOCOL_VERSION
                                );
                            }
                            said_hello = true;
                            exec.send(line(request)?).await;
                            exec.close().await;
                        }
                        message => {
                            finished |= is_last(&message);
                            on_event(AgentEvent::Message(message));
                        }
                    }
                }
                Event::Exit(code) => {
                    if finished {
                        return Ok(());
                    }
                    if code == Some(AGENT_MISSING) && !said_hello && attempt == 0 {
                        on_event(AgentEvent::Uploading);
                        upload(session, target).await?;
                        break;
                    }
                    anyhow::bail!(
                        "the agent on {host} stopped before finishing (exit {}){}",
                        code.map(|c| c.to_string())
                            .unwrap_or_else(|| "unknown".into()),
                        if stderr_tail.is_empty() {
                            String::new()
                        } else {
                            format!(":\n    {}", stderr_tail.join("\n    "))
                        }
                    );
                }
            }
        }
        if finished {
            return Ok(());
        }
    }
    anyhow::bail!("the agent on {host} could not be started after uploading it")
}

/// Sends each host its request (one connection per host, all in
/// parallel) and returns each host's last message, or why there is none.
/// For the read-only exchanges (health, usage); `apply` has its own loop
/// for progress and reports.
pub fn ask_all(
    inventory: &crate::inventory::Inventory,
    hosts: &[crate::inventory::Host],
    mut requests: std::collections::BTreeMap<String, Message>,
    is_last: fn(&Message) -> bool,
) -> anyhow::Result<Vec<(String, Result<Message, String>)>> {
    use std::sync::Arc;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let keys = Arc::new(crate::ssh::known_hosts::HostKeys::for_inventory(inventory));
    let ssh_config = crate::ssh::config::SshConfig::load_default();
    Ok(runtime.block_on(async {
        let mut tasks = Vec::new();
        for host in hosts {
            let target = Target::for_host(inventory, host, &ssh_config);
            let keys = keys.clone();
            let request = requests.remove(&host.name);
            tasks.push(tokio::spawn(async move {
                let Some(request) = request else {
                    return Err("nothing to ask".to_owned());
                };
                let session = ssh::connect(&target, keys)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut last = None;
                let result = exchange(&session, &target, &request, is_last, &mut |event| {
                    if let AgentEvent::Message(message) = event
                        && is_last(&message)
                    {
                        last = Some(message);
                    }
                })
                .await;
                session.close().await;
                result.map_err(|e| format!("{e:#}"))?;
                last.ok_or_else(|| "the agent sent no answer".to_owned())
            }));
        }
        let mut results = Vec::new();
        for (task, host) in tasks.into_iter().zip(hosts) {
            let answer = task
                .await
                .unwrap_or_else(|err| Err(format!("the exchange stopped: {err}")));
            results.push((host.name.clone(), answer));
        }
        results
    }))
}

/// One host's connection, kept for the whole rollout (and opened again
/// after a reboot).
pub struct Link {
    pub target: Target,
    keys: std::sync::Arc<crate::ssh::known_hosts::HostKeys>,
    session: Option<ssh::Session>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("host", &self.target.name)
            .finish()
    }
}

impl Link {
    /// A link that connects on first use.
    pub fn new(target: Target, keys: std::sync::Arc<crate::ssh::known_hosts::HostKeys>) -> Link {
        Link {
            target,
            keys,
            session: None,
        }
    }

    /// Sends one request and returns the agent's last message.
    pub async fn ask(&mut self, request: &Message) -> Result<Message, String> {
        if self.session.is_none() {
            let session = ssh::connect(&self.target, self.keys.clone())
                .await
                .map_err(|e| e.to_string())?;
            self.session = Some(session);
        }
        let Some(session) = &self.session else {
            return Err("no connection".into());
        };
        let mut last = None;
        let result = exchange(session, &self.target, request, is_last, &mut |event| {
            if let AgentEvent::Message(message) = event
                && is_last(&message)
            {
                last = Some(message);
            }
        })
        .await;
        if let Err(err) = result {
            // The connection may be what failed: open a new one next time.
            if let Some(session) = self.session.take() {
                session.close().await;
            }
            return Err(format!("{err:#}"));
        }
        match last {
            Some(Message::Refused(refused)) => Err(refused.reason),
            Some(message) => Ok(message),
            None => Err("the agent sent no answer".into()),
        }
    }

    /// An upgrade look (refreshing the lists when `update`).
    pub async fn look(
        &mut self,
        run_id: &str,
        update: bool,
        packages: &[String],
    ) -> Result<clou_protocol::UpgradeReport, String> {
        let request = Message::Upgrade(clou_protocol::UpgradeRequest {
            run_id: run_id.to_owned(),
            admin: crate::apply::admin(),
            check: true,
            update,
            packages: packages.to_vec(),
            approved: std::collections::BTreeMap::new(),
        });
        match self.ask(&request).await? {
            Message::Upgraded(report) => match &report.error {
                Some(error) => Err(error.clone()),
                None => Ok(report),
            },
            other => Err(format!("the agent answered {other:?} to an upgrade look")),
        }
    }

    /// A health check.
    pub async fn health(
        &mut self,
        settings: &clou_protocol::health::CheckSettings,
    ) -> Result<clou_protocol::HealthReport, String> {
        let request = Message::Check(clou_protocol::CheckRequest {
            settings: settings.clone(),
        });
        match self.ask(&request).await? {
            Message::Health(report) => Ok(report),
            other => Err(format!("the agent answered {other:?} to a health check")),
        }
    }

    /// Closes the connection (the next request opens a new one).
    pub async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}

/// The messages that end an exchange of a [`Link`].
pub fn is_last(message: &Message) -> bool {
    matches!(
        message,
        Message::Upgraded(_)
            | Message::Health(_)
            | Message::Rebooting(_)
            | Message::DiskReport(_)
            | Message::Refused(_)
    )
}

async fn upload(session: &ssh::Session, target: &Target) -> anyhow::Result<()> {
    let mut exec = session
        .exec(&ssh::as_root(target, &upload_script()))
        .await?;
    for chunk in agent_bin::BYTES.chunks(32 * 1024) {
        if !exec.send(chunk.to_vec()).await {
            break;
        }
    }
    exec.close().await;
    let mut errors = Vec::new();
    while let Some(event) = exec.events.recv().await {
        match event {
            Event::Stderr(text) | Event::Stdout(text) => errors.push(text),
            Event::Exit(Some(0)) => return Ok(()),
            Event::Exit(code) => {
                anyhow::bail!(
                    "uploading the agent to {} failed (exit {code:?}): {}{}",
                    target.name,
                    errors.join(" "),
                    if target.sudo {
                        "\n  hint: the SSH user needs passwordless sudo (sudo -n)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    anyhow::bail!(
        "the connection to {} closed during the agent upload",
        target.name
    )
}

fn line(message: &Message) -> anyhow::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(message)?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_only_constants_and_the_digest() {
        let run = run_script();
        assert!(run.contains(agent_bin::sha256()));
        assert!(run.contains("exit 97"));
        let upload = upload_script();
        assert!(upload.contains("sha256sum --check"));
        assert!(upload.contains("mv -f"));
    }
}
