//! The pages the host's roles serve (`checks: - http:` in role.yaml): each
//! is asked of the host itself with curl, the URL's name resolved to
//! 127.0.0.1, and must answer 2xx or 3xx in time. A page that does not is
//! critical: the service is down for its users even if its unit runs.
//!
//! curl rather than an HTTP client in the agent: it is on every host with
//! a web server (roles/web installs it), speaks every TLS nginx does, and
//! `--resolve` keeps the name (Host and SNI) while choosing the address.

use clou_protocol::health::{Finding, HttpCheck, Severity};

use super::{Probe, ProbeCtx};
use crate::system::Cmd;

const PROBE: &str = "http";

/// The HTTP checks.
#[derive(Debug)]
pub struct Http;

impl Probe for Http {
    fn name(&self) -> &'static str {
        PROBE
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        ctx.settings
            .http
            .iter()
            .map(|check| match command(check) {
                Ok(cmd) => judge(check, &cmd, ctx.sys.run(&cmd)),
                Err(why) => Finding::new(PROBE, &check.url, Severity::Unknown, why),
            })
            .collect()
    }
}

/// The curl command for a check.
pub fn command(check: &HttpCheck) -> Result<Cmd, String> {
    let (host, port) = split_url(&check.url).ok_or_else(|| {
        format!(
            "{:?} is not an http:// or https:// URL; fix the `checks:` of the host's roles",
            check.url
        )
    })?;
    let timeout = check.timeout_secs.max(1).to_string();
    let mut argv = vec![
        "curl".to_owned(),
        "--silent".into(),
        "--show-error".into(),
        "--output".into(),
        "/dev/null".into(),
        "--write-out".into(),
        "%{http_code}".into(),
        "--max-time".into(),
        timeout,
        "--proto".into(),
        "=http,https".into(),
    ];
    if host != "localhost" && host.parse::<std::net::IpAddr>().is_err() {
        argv.push("--resolve".into());
        argv.push(format!("{host}:{port}:127.0.0.1"));
    }
    if check.insecure {
        argv.push("--insecure".into());
    }
    argv.push(check.url.clone());
    Ok(Cmd {
        argv,
        timeout: Some(std::time::Duration::from_secs(
            check.timeout_secs.max(1) + 5,
        )),
        ..Cmd::default()
    }
    .env("LC_ALL", "C"))
}

/// Host and port of an http(s) URL.
fn split_url(url: &str) -> Option<(&str, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // [v6]:port, or host:port.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    Some((host, port))
}

fn judge(check: &HttpCheck, cmd: &Cmd, result: std::io::Result<crate::system::Output>) -> Finding {
    let url = &check.url;
    let out = match result {
        Ok(out) => out,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Finding::new(
                PROBE,
                url,
                Severity::Unknown,
                "curl is not installed, so the page cannot be asked for: install curl \
                 (roles/web does)",
            );
        }
        Err(err) => {
            return Finding::new(
                PROBE,
                url,
                Severity::Unknown,
                format!("cannot run `{}`: {err}", cmd.display()),
            );
        }
    };
    let code: u16 = out.stdout_text().trim().parse().unwrap_or(0);
    let finding = match code {
        200..=399 => Finding::new(PROBE, url, Severity::Ok, format!("{url} answers {code}")),
        0 => Finding::new(
            PROBE,
            url,
            Severity::Crit,
            format!(
                "{url} does not answer{}: {}; is the web server running, and its vhost \
                 enabled?",
                if out.timed_out() {
                    format!(" within {} s", check.timeout_secs)
                } else {
                    String::new()
                },
                first_line(&String::from_utf8_lossy(&out.stderr))
            ),
        ),
        _ => Finding::new(
            PROBE,
            url,
            Severity::Crit,
            format!(
                "{url} answers {code}: the application behind it is failing; its logs \
                 (and nginx's error.log) say why"
            ),
        ),
    };
    finding.fact("status", code)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("no error message").trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::testing::Recorder;

    fn check(url: &str) -> HttpCheck {
        HttpCheck {
            url: url.into(),
            insecure: false,
            timeout_secs: 10,
        }
    }

    #[test]
    fn the_name_is_resolved_to_the_host_itself() {
        let cmd = command(&check("https://cloud.girofle.org/status.php")).unwrap();
        let line = cmd.display();
        assert!(
            line.contains("--resolve cloud.girofle.org:443:127.0.0.1"),
            "{line}"
        );
        assert!(line.ends_with(" https://cloud.girofle.org/status.php"));
        assert!(!line.contains("--insecure"));
        let cmd = command(&HttpCheck {
            insecure: true,
            ..check("http://wiki.example:8080/")
        })
        .unwrap();
        let line = cmd.display();
        assert!(
            line.contains("--resolve wiki.example:8080:127.0.0.1"),
            "{line}"
        );
        assert!(line.contains("--insecure"));
        let line = command(&check("http://127.0.0.1:9090/-/ready"))
            .unwrap()
            .display();
        assert!(!line.contains("--resolve"), "{line}");
    }

    #[test]
    fn what_is_not_an_http_url_is_refused() {
        for bad in [
            "ftp://x/",
            "cloud.example/",
            "https:///x",
            "https://u@h/",
            "https://h:99999/",
        ] {
            assert!(command(&check(bad)).is_err(), "{bad}");
        }
    }

    fn run(code: i32, stdout: &str) -> Finding {
        let sys = Recorder::new();
        sys.reply(&["curl"], code, stdout);
        let settings = clou_protocol::health::CheckSettings {
            http: vec![check("https://cloud.girofle.org/")],
            ..Default::default()
        };
        let disks = super::super::disks::Disks::default();
        let ctx = ProbeCtx {
            sys: &sys,
            settings: &settings,
            disks: &disks,
        };
        Http.run(&ctx).remove(0)
    }

    #[test]
    fn two_and_three_hundreds_pass_the_rest_is_critical() {
        assert_eq!(
            run(0, include_str!("testdata/curl/curl-write-out-200.txt")).severity,
            Severity::Ok
        );
        let missing = run(0, include_str!("testdata/curl/curl-write-out-404.txt"));
        assert_eq!(missing.severity, Severity::Crit);
        assert!(
            missing.message.contains("answers 404"),
            "{}",
            missing.message
        );
        assert_eq!(missing.facts["status"], "404");
        let down = run(7, include_str!("testdata/curl/curl-write-out-refused.txt"));
        assert_eq!(down.severity, Severity::Crit);
        assert!(down.message.contains("does not answer"), "{}", down.message);
    }
}
