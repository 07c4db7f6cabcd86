//! The fleet's outgoing mail: a host hands a message to mail-exit, which
//! relays it to the next hop (here a sink on the lab's bridge, set as
//! `mail_relayhost`); a message to a mailing list goes out to each member.

use std::time::Duration;

use clou_tests::smtp::{Mail, Sink};
use libtest_mimic::Failed;

use super::{Test, fleet};

pub const TESTS: &[(&str, Test)] = &[(
    "fleet::mail::mail_exit_relays_the_fleets_mail_and_runs_the_lists",
    mail_exit_relays_the_fleets_mail_and_runs_the_lists,
)];

/// Sends a message from `host` to mail-exit's port 25 with curl's SMTP
/// client (an application would do the same).
fn send(host: &str, from: &str, to: &str, subject: &str) -> Result<(), Failed> {
    fleet()?.ssh_ok(
        host,
        &format!(
            "printf 'From: {from}\\r\\nTo: {to}\\r\\nSubject: {subject}\\r\\n\\r\\nSent by the clou tests.\\r\\n' > /tmp/clou-e2e.eml && \
             curl -sS --max-time 20 smtp://mail-exit:25/{host} --mail-from {from} --mail-rcpt {to} -T /tmp/clou-e2e.eml"
        ),
    );
    Ok(())
}

/// Every message the sink gets within `wait`, until `want` have come.
fn collect(sink: &Sink, want: usize, wait: Duration) -> Vec<Mail> {
    let deadline = std::time::Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < want {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match sink.next(left) {
            Some(mail) => got.push(mail),
            None => break,
        }
    }
    got
}

fn mail_exit_relays_the_fleets_mail_and_runs_the_lists() -> Result<(), Failed> {
    let lab = fleet()?;
    let sink = Sink::start(&lab.bridge()?)?;
    let (ip, port) = sink.address.rsplit_once(':').ok_or("no sink port")?;
    let relayhost = format!("mail_relayhost=[{ip}]:{port}");
    // What an earlier run left queued would reach this sink too.
    lab.ssh_ok("mail-exit", "postsuper -d ALL 2>/dev/null");
    lab.apply(&["--limit", "mail-exit", "-e", &relayhost])
        .expect_code(0);
    let result = (|| -> Result<(), Failed> {
        let mail_exit = lab.address("mail-exit")?.to_string();

        send(
            "nextcloud-data",
            "cloud@girofle.example.org",
            "someone@example.net",
            "relayed by mail-exit",
        )?;
        let got = collect(&sink, 1, Duration::from_secs(60));
        let mail = got
            .first()
            .ok_or("the relay delivered nothing to the sink")?;
        assert_eq!(mail.peer, mail_exit, "mail-exit handed it over");
        assert_eq!(mail.from, "cloud@girofle.example.org");
        assert_eq!(mail.to, ["someone@example.net"]);
        assert!(
            mail.data.contains("Subject: relayed by mail-exit"),
            "{}",
            mail.data
        );
        assert!(
            mail.data.contains("Received: from nextcloud-data"),
            "{}",
            mail.data
        );

        // The Racines' list: a member writes, every member gets it (mlmmj
        // sends one message per recipient through the same relay).
        send(
            "web",
            "camille@girofle.example.org",
            "racines@lists.girofle.example.org",
            "to the list",
        )?;
        let got = collect(&sink, 6, Duration::from_secs(90));
        let mut to: Vec<String> = got
            .iter()
            .filter(|m| m.data.contains("Subject: to the list"))
            .flat_map(|m| m.to.clone())
            .collect();
        to.sort();
        assert_eq!(
            to,
            [
                "alix@girofle.example.org",
                "camille@girofle.example.org",
                "dominique@girofle.example.org",
                "morgan@girofle.example.org",
                "sacha@girofle.example.org",
                "yanis@girofle.example.org"
            ],
            "{got:?}"
        );
        // An address at the lists' domain that is no list is refused at once.
        let refused = lab.ssh(
            "web",
            "curl -sS --max-time 20 smtp://mail-exit:25/web --mail-from camille@girofle.example.org --mail-rcpt nolist@lists.girofle.example.org -T /tmp/clou-e2e.eml",
        );
        assert!(!refused.status.success(), "an unknown list was accepted");
        Ok(())
    })();
    // Back to the inventory's relay, whatever happened.
    lab.apply(&["--limit", "mail-exit"]).expect_code(0);
    result
}
