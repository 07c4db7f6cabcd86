//! `clou-agent`: the small program the controller runs on every host.
//!
//! # Layout
//!
//! - `run` reads the command line and dispatches.
//! - `serve` speaks the wire protocol of `clou-protocol` on stdin/stdout:
//!   stdout is the wire, so nothing else may print there; logs go to stderr.
//!
//! The agent is plain blocking code: it does one thing at a time on one
//! host, and a runtime would only make it larger.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::io::{BufRead, Write};
use std::process::ExitCode;

pub mod accounts;
pub mod resources;
pub mod system;

use clou_protocol::{Hello, Message, PROTOCOL_VERSION};

/// The agent's own version, sent in its hello.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What can go wrong while talking to the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading from or writing to the controller failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the controller sent a line that is not a valid message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the controller closed the channel before saying hello")]
    NoHello,
    #[error(
        "the controller speaks protocol {theirs}, this agent speaks {ours}: \
         upload the agent that matches the controller"
    )]
    ProtocolMismatch { ours: u32, theirs: u32 },
    #[error("unknown command {0:?}; usage: clou-agent [--version | serve]")]
    Usage(String),
}

/// Runs the agent with its arguments (without the program name).
pub fn run(args: &[String], input: impl BufRead, output: impl Write) -> Result<ExitCode, Error> {
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => {
            let mut output = output;
            writeln!(output, "clou-agent {VERSION} (protocol {PROTOCOL_VERSION})")?;
            Ok(ExitCode::SUCCESS)
        }
        Some("serve") | None => serve(input, output).map(|()| ExitCode::SUCCESS),
        Some(other) => Err(Error::Usage(other.to_owned())),
    }
}

/// Speaks the wire protocol: hello first, both ways.
pub fn serve(mut input: impl BufRead, mut output: impl Write) -> Result<(), Error> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(Error::NoHello);
    }
    let Message::Hello(theirs) = serde_json::from_str(&line)? else {
        return Err(Error::NoHello);
    };
    if theirs.protocol != PROTOCOL_VERSION {
        return Err(Error::ProtocolMismatch {
            ours: PROTOCOL_VERSION,
            theirs: theirs.protocol,
        });
    }
    serde_json::to_writer(&mut output, &Message::Hello(Hello::current(VERSION)))?;
    output.write_all(b"\n")?;
    output.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_line(protocol: u32) -> String {
        let hello = Hello {
            protocol,
            version: "test".into(),
        };
        serde_json::to_string(&Message::Hello(hello)).expect("serialise") + "\n"
    }

    #[test]
    fn answers_hello_with_its_own() {
        let mut out = Vec::new();
        serve(hello_line(PROTOCOL_VERSION).as_bytes(), &mut out).expect("serve");
        let reply: Message = serde_json::from_slice(&out).expect("reply is JSON");
        assert_eq!(reply, Message::Hello(Hello::current(VERSION)));
    }

    #[test]
    fn refuses_another_protocol_version() {
        let mut out = Vec::new();
        let err = serve(hello_line(PROTOCOL_VERSION + 1).as_bytes(), &mut out).unwrap_err();
        assert!(matches!(err, Error::ProtocolMismatch { .. }), "{err}");
        assert!(
            out.is_empty(),
            "nothing may be written after a refused hello"
        );
    }

    #[test]
    fn truncated_json_is_a_decode_error() {
        let err = serve(&b"{\"type\":\"hel"[..], Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
    }
}
