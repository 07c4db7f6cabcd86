//! The wire contract between the `clou` controller and `clou-agent`.
//!
//! # Layout
//!
//! The controller opens one exec channel per host and runs the agent there.
//! Both sides then speak newline-delimited JSON over the channel: every line
//! is one [`Message`]. The first message in each direction is a [`Hello`], so
//! that a controller and an agent built from different versions of this crate
//! notice it before anything is done on the host.
//!
//! This crate holds plain data only (serde types and their documentation); it
//! does no I/O, so both the async controller and the blocking agent use it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use serde::{Deserialize, Serialize};

/// Version of the wire protocol. Bumped on any incompatible change; both
/// sides refuse to go on when the versions differ.
pub const PROTOCOL_VERSION: u32 = 1;

/// One line on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// The opening handshake, sent first by both sides.
    Hello(Hello),
}

/// The opening handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// The sender's program version (`CARGO_PKG_VERSION`), for messages.
    pub version: String,
}

impl Hello {
    /// The hello of this build.
    pub fn current(version: &str) -> Self {
        Hello {
            protocol: PROTOCOL_VERSION,
            version: version.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_as_one_json_line() {
        let msg = Message::Hello(Hello::current("0.1.0"));
        let line = serde_json::to_string(&msg).expect("serialise");
        assert_eq!(line, r#"{"type":"hello","protocol":1,"version":"0.1.0"}"#);
        let back: Message = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, msg);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let line = r#"{"type":"hello","protocol":1,"version":"0.1.0","extra":true}"#;
        assert!(serde_json::from_str::<Message>(line).is_err());
    }
}
