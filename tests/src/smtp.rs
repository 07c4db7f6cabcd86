//! A mail sink for the end-to-end tests: a small SMTP server on the lab's
//! bridge that takes every message it is given and hands it to the test,
//! so that a relay's delivery is checked where the mail lands, not in the
//! relay's own logs.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The SMTP client's address (who handed the message over).
    pub peer: String,
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body, dot-unstuffed.
    pub data: String,
}

/// A running sink: its address and what it received.
#[derive(Debug)]
pub struct Sink {
    pub address: String,
    received: mpsc::Receiver<Mail>,
}

impl Sink {
    /// Listens on `ip` (any free port) and serves every connection in a
    /// thread of its own until the test ends.
    pub fn start(ip: &str) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(format!("{ip}:0"))?;
        let address = listener.local_addr()?.to_string();
        let (tx, received) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &tx);
                });
            }
        });
        Ok(Sink { address, received })
    }

    /// The next message, if one arrives within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Mail> {
        self.received.recv_timeout(timeout).ok()
    }
}

/// One SMTP session (RFC 5321's minimum: EHLO/HELO, MAIL, RCPT, DATA,
/// RSET, NOOP, QUIT), each message sent to the test.
fn serve(stream: TcpStream, tx: &mpsc::Sender<Mail>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let peer = stream.peer_addr()?.ip().to_string();
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 sink.lab ESMTP clou test sink\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            out.write_all(b"250-sink.lab\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?;
        } else if upper.starts_with("HELO") {
            out.write_all(b"250 sink.lab\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = address_of(&command["MAIL FROM:".len()..]);
            to.clear();
            out.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(address_of(&command["RCPT TO:".len()..]));
            out.write_all(b"250 ok\r\n")?;
        } else if upper == "DATA" {
            out.write_all(b"354 end with .\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                data.push_str(text.strip_prefix('.').unwrap_or(text));
                data.push('\n');
            }
            let _ = tx.send(Mail {
                peer: peer.clone(),
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            out.write_all(b"250 queued\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            out.write_all(b"250 ok\r\n")?;
        } else {
            out.write_all(b"502 not implemented\r\n")?;
        }
    }
}

/// `<a@b> SIZE=12` -> `a@b`.
fn address_of(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(open), Some(close)) if open < close => arg[open + 1..close].to_owned(),
        _ => arg.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session as Postfix's smtp client speaks it, on loopback.
    #[test]
    fn a_message_is_received_with_its_envelope() {
        let sink = Sink::start("127.0.0.1").unwrap();
        let stream = TcpStream::connect(&sink.address).unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream);
        let mut reply = || {
            let mut l = String::new();
            lines.read_line(&mut l).unwrap();
            l
        };
        assert!(reply().starts_with("220"));
        out.write_all(b"EHLO relay\r\n").unwrap();
        while !reply().starts_with("250 ") {}
        for command in ["MAIL FROM:<a@x.org> SIZE=10", "RCPT TO:<b@y.org>", "DATA"] {
            out.write_all(format!("{command}\r\n").as_bytes()).unwrap();
            reply();
        }
        out.write_all(b"Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
            .unwrap();
        let mail = sink.next(Duration::from_secs(5)).unwrap();
        assert_eq!(mail.from, "a@x.org");
        assert_eq!(mail.to, ["b@y.org"]);
        assert_eq!(mail.data, "Subject: hi\n\n.dot\n");
        assert_eq!(mail.peer, "127.0.0.1");
    }
}
