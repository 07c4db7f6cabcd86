//! The document server and the mail server, checked on their hosts: the
//! ONLYOFFICE document server answers its health check through its vhost
//! and accepts a command signed with its configured JWT secret but not one
//! signed with another; mailcow's unit runs with its rendered config, each
//! active domain is provisioned through mailcow's API (the lab's stand-in
//! of it, see roles/mailcow/lab-artifact), an archived domain is no longer
//! served but keeps its mail, and the mail ports are in the firewall.

use libtest_mimic::Failed;

use super::{Test, fleet, https};

pub const TESTS: &[(&str, Test)] = &[
    (
        "fleet::office_mail::the_document_server_answers_its_healthcheck_through_its_vhost",
        the_document_server_answers_its_healthcheck_through_its_vhost,
    ),
    (
        "fleet::office_mail::the_document_server_accepts_only_requests_signed_with_its_secret",
        the_document_server_accepts_only_requests_signed_with_its_secret,
    ),
    (
        "fleet::office_mail::mailcow_runs_with_its_config_and_provisions_each_active_domain",
        mailcow_runs_with_its_config_and_provisions_each_active_domain,
    ),
    (
        "fleet::office_mail::mail_to_a_mailbox_of_an_active_domain_lands_in_its_vmail",
        mail_to_a_mailbox_of_an_active_domain_lands_in_its_vmail,
    ),
    (
        "fleet::office_mail::an_archived_mail_domain_is_not_served_and_keeps_its_data",
        an_archived_mail_domain_is_not_served_and_keeps_its_data,
    ),
    (
        "fleet::office_mail::the_mail_ports_are_in_the_firewall",
        the_mail_ports_are_in_the_firewall,
    ),
];

const OFFICE_HOST: &str = "onlyoffice";
const OFFICE_DOMAIN: &str = "office.girofle.example.org";
const MAIL_HOST: &str = "mail";
/// The mailcow tenants of the inventory: name, domain.
const ACTIVE: &[(&str, &str)] = &[
    ("girofle", "girofle.example.org"),
    ("amap-lyon", "amap-lyon.example.org"),
    ("velo-cite", "velo-cite.example.org"),
];
const ARCHIVED: (&str, &str) = ("chorale-do", "chorale-do.example.org");
/// What mailcow publishes (roles/mailcow `ports:`).
const MAIL_PORTS: &[u16] = &[25, 465, 587, 143, 993, 110, 995, 4190, 80, 443];

/// A shell command printing a HS256 JWT of `{"payload": {"c": "version"}}`
/// signed with `secret`, or with the inbox secret of the host's local.json
/// when `secret` is None (what the Nextcloud instances are given).
fn jwt_command(secret: Option<&str>) -> String {
    let secret = secret.unwrap_or("CONFIGURED");
    format!(
        r#"python3 - '{secret}' <<'PY'
import base64, hashlib, hmac, json, sys, time
secret = sys.argv[1]
if secret == "CONFIGURED":
    with open("/etc/onlyoffice/documentserver/local.json") as f:
        secret = json.load(f)["services"]["CoAuthoring"]["secret"]["inbox"]["string"]
enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
signing = enc({{"alg": "HS256", "typ": "JWT"}}) + "." + enc({{"payload": {{"c": "version"}}, "exp": int(time.time()) + 300}})
sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
print(signing + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode())
PY"#
    )
}

/// The command service's answer (its `error` field) to `{"c": "version"}`
/// carrying `token` (none: no Authorization header).
fn command(token: Option<&str>) -> Result<(u16, serde_json::Value), Failed> {
    let auth = token
        .map(|t| format!("-H 'Authorization: Bearer {t}'"))
        .unwrap_or_default();
    let (code, body) = https(
        OFFICE_HOST,
        OFFICE_DOMAIN,
        "/command",
        &format!(
            "-X POST -H 'Content-Type: application/json' --data '{{\"c\":\"version\"}}' {auth}"
        ),
    )?;
    let json = serde_json::from_str(body.trim())
        .map_err(|e| format!("the command service answered {code} {body:?}: {e}"))?;
    Ok((code, json))
}

fn the_document_server_answers_its_healthcheck_through_its_vhost() -> Result<(), Failed> {
    let lab = fleet()?;
    let active = lab.ssh(
        OFFICE_HOST,
        "systemctl is-active onlyoffice-documentserver.service",
    );
    assert_eq!(String::from_utf8_lossy(&active.stdout).trim(), "active");
    let (code, body) = https(OFFICE_HOST, OFFICE_DOMAIN, "/healthcheck", "")?;
    assert_eq!(
        (code, body.trim()),
        (200, "true"),
        "healthcheck through nginx"
    );
    // Plain HTTP redirects to HTTPS; the server itself is on loopback only.
    let out = lab.ssh_ok(
        OFFICE_HOST,
        &format!("curl -s -o /dev/null -w '%{{http_code}}' --resolve {OFFICE_DOMAIN}:80:127.0.0.1 http://{OFFICE_DOMAIN}/healthcheck"),
    );
    assert_eq!(out.trim(), "301");
    let listen = lab.ssh_ok(OFFICE_HOST, "ss -Hltn 'sport = :8000'");
    assert!(
        listen.contains("127.0.0.1:8000") && !listen.contains("0.0.0.0:8000"),
        "the document server listens on loopback only:\n{listen}"
    );
    Ok(())
}

fn the_document_server_accepts_only_requests_signed_with_its_secret() -> Result<(), Failed> {
    let lab = fleet()?;
    // JWT is on in the rendered config, with the secret the image's
    // entrypoint gets too.
    let conf = lab.ssh_ok(OFFICE_HOST, "cat /etc/onlyoffice/documentserver/local.json");
    let conf: serde_json::Value = serde_json::from_str(&conf)?;
    let co = &conf["services"]["CoAuthoring"];
    assert_eq!(co["token"]["enable"]["request"]["inbox"], true, "{conf}");
    assert_eq!(co["token"]["enable"]["browser"], true, "{conf}");
    let secret = co["secret"]["inbox"]["string"]
        .as_str()
        .ok_or("no inbox secret in local.json")?;
    assert_eq!(secret.len(), 32, "a derived secret, not upstream's default");
    let env = lab.ssh_ok(OFFICE_HOST, "cat /etc/onlyoffice/documentserver/jwt.env");
    assert!(
        env.contains(&format!("JWT_SECRET={secret}\n")),
        "jwt.env agrees"
    );
    let mode = lab.ssh_ok(
        OFFICE_HOST,
        "stat -c '%a %U:%G' /etc/onlyoffice/documentserver/local.json",
    );
    assert_eq!(mode.trim(), "640 root:ds");

    let good = lab.ssh_ok(OFFICE_HOST, &jwt_command(None));
    let (code, answer) = command(Some(good.trim()))?;
    assert_eq!(code, 200);
    assert_eq!(
        answer["error"], 0,
        "signed with the configured secret: {answer}"
    );
    assert!(answer["version"].is_string(), "{answer}");

    let bad = lab.ssh_ok(
        OFFICE_HOST,
        &jwt_command(Some("not-the-configured-secret-00000")),
    );
    let (_, answer) = command(Some(bad.trim()))?;
    assert_eq!(answer["error"], 6, "signed with another secret: {answer}");
    let (_, answer) = command(None)?;
    assert_eq!(answer["error"], 6, "no token: {answer}");
    Ok(())
}

/// mailcow's API on the mail host, with the API key of its mailcow.conf
/// (`key` None) or another: the HTTP status and the JSON body.
fn api(path: &str, key: Option<&str>) -> Result<(u16, serde_json::Value), Failed> {
    let key = key.unwrap_or("CONFIGURED");
    let out = fleet()?.ssh_ok(
        MAIL_HOST,
        &format!(
            r#"python3 - '{key}' '{path}' <<'PY'
import sys, urllib.error, urllib.request
key, path = sys.argv[1], sys.argv[2]
if key == "CONFIGURED":
    with open("/opt/mailcow/mailcow.conf") as f:
        key = [l.strip().split("=", 1)[1] for l in f if l.startswith("API_KEY=")][0]
req = urllib.request.Request("http://127.0.0.1:80/api/v1/" + path, headers={{"X-API-Key": key}})
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
PY"#
        ),
    );
    let (code, body) = out.split_once('\n').ok_or("no answer from the API")?;
    let json = serde_json::from_str(body.trim())
        .map_err(|e| format!("the API answered {code} {body:?}: {e}"))?;
    Ok((code.trim().parse().unwrap_or(0), json))
}

/// The reply of the mail host's SMTP port to `RCPT TO:<rcpt>`.
fn rcpt(rcpt: &str) -> Result<u16, Failed> {
    let out = fleet()?.ssh_ok(
        MAIL_HOST,
        &format!(
            r#"python3 - '{rcpt}' <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", 25, timeout=20)
s.ehlo("e2e.example.net")
s.mail("e2e@example.net")
print(s.rcpt(sys.argv[1])[0])
s.quit()
PY"#
        ),
    );
    Ok(out.trim().parse()?)
}

fn conf_value(conf: &str, key: &str) -> String {
    conf.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_owned()
}

fn mailcow_runs_with_its_config_and_provisions_each_active_domain() -> Result<(), Failed> {
    let lab = fleet()?;
    let active = lab.ssh(MAIL_HOST, "systemctl is-active mailcow.service");
    assert_eq!(String::from_utf8_lossy(&active.stdout).trim(), "active");
    // The compose project reads the rendered config through its .env link.
    let links = lab.ssh_ok(
        MAIL_HOST,
        "readlink /opt/mailcow/current/.env /opt/mailcow/current/mailcow.conf /opt/mailcow/current/docker-compose.override.yml",
    );
    assert_eq!(
        links.lines().collect::<Vec<_>>(),
        [
            "/opt/mailcow/mailcow.conf",
            "/opt/mailcow/mailcow.conf",
            "/opt/mailcow/docker-compose.override.yml"
        ]
    );
    let mode = lab.ssh_ok(MAIL_HOST, "stat -c '%a %U' /opt/mailcow/mailcow.conf");
    assert_eq!(mode.trim(), "600 root", "mailcow.conf holds secrets");
    let conf = lab.ssh_ok(MAIL_HOST, "cat /opt/mailcow/current/.env");
    assert_eq!(
        conf_value(&conf, "MAILCOW_HOSTNAME"),
        "mail.girofle.example.org"
    );
    for key in ["DBPASS", "DBROOT", "REDISPASS", "API_KEY"] {
        let value = conf_value(&conf, key);
        assert!(value.len() >= 16, "{key} is a derived secret: {value:?}");
    }
    let api_key = conf_value(&conf, "API_KEY");
    assert!(
        api_key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "API_KEY in the characters mailcow accepts: {api_key}"
    );
    assert_eq!(conf_value(&conf, "SOGO_URL_ENCRYPTION_KEY").len(), 16);
    let san = conf_value(&conf, "ADDITIONAL_SAN");
    for (_, domain) in ACTIVE {
        assert!(
            san.split(',')
                .any(|n| n == format!("autodiscover.{domain}")),
            "{domain} in ADDITIONAL_SAN: {san}"
        );
    }
    assert!(
        !san.contains(ARCHIVED.1),
        "archived domain in ADDITIONAL_SAN: {san}"
    );
    assert!(!san.ends_with(','), "{san}");

    // The API takes only mailcow.conf's key.
    let (code, _) = api("get/domain/all", Some("not-the-key"))?;
    assert_eq!(code, 401, "a wrong API key is refused");
    for (name, domain) in ACTIVE {
        let (code, got) = api(&format!("get/domain/{domain}"), None)?;
        assert_eq!(code, 200);
        assert_eq!(got["domain_name"], *domain, "{domain} provisioned: {got}");
        assert_eq!(got["active"], 1, "{domain} active: {got}");
        assert_eq!(got["description"], *name, "{got}");
        assert!(
            got["max_quota_for_domain"].as_u64().unwrap_or(0) > 0,
            "{domain} has its quota: {got}"
        );
    }
    // velo-cite sets `mailboxes: 5` in the inventory.
    let (_, got) = api("get/domain/velo-cite.example.org", None)?;
    assert_eq!(got["max_num_mboxes_for_domain"], 5, "{got}");
    assert_eq!(
        got["max_quota_for_domain"].as_u64(),
        Some(2 * 1024 * 1024 * 1024),
        "quota 2G: {got}"
    );
    Ok(())
}

fn mail_to_a_mailbox_of_an_active_domain_lands_in_its_vmail() -> Result<(), Failed> {
    let lab = fleet()?;
    let (_, domain) = ACTIVE[0];
    // A mailbox, as a domain's admin would add it in mailcow's UI.
    lab.ssh_ok(
        MAIL_HOST,
        &format!(
            r#"python3 - '{domain}' <<'PY'
import json, sys, urllib.request
with open("/opt/mailcow/mailcow.conf") as f:
    key = [l.strip().split("=", 1)[1] for l in f if l.startswith("API_KEY=")][0]
body = {{"local_part": "e2e", "domain": sys.argv[1], "name": "e2e", "quota": 100, "active": 1,
         "password": "e2e-lab-only", "password2": "e2e-lab-only"}}
req = urllib.request.Request("http://127.0.0.1:80/api/v1/add/mailbox", data=json.dumps(body).encode(),
                             headers={{"X-API-Key": key, "Content-Type": "application/json"}}, method="POST")
print(urllib.request.urlopen(req, timeout=20).read().decode())
PY"#
        ),
    );
    let (_, boxes) = api(&format!("get/mailbox/all/{domain}"), None)?;
    assert!(
        boxes
            .as_array()
            .is_some_and(|b| b.iter().any(|m| m["username"] == format!("e2e@{domain}"))),
        "{boxes}"
    );
    assert_eq!(rcpt(&format!("nobody@{domain}"))?, 550, "unknown mailbox");
    let before = lab.ssh_ok(
        MAIL_HOST,
        &format!("ls /var/lib/mailcow/vmail/{domain}/e2e/Maildir/new | wc -l"),
    );
    lab.ssh_ok(
        MAIL_HOST,
        &format!(
            r#"python3 - 'e2e@{domain}' <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", 25, timeout=20)
s.sendmail("e2e@example.net", [sys.argv[1]], "Subject: e2e\r\n\r\nfrom the clou tests\r\n")
s.quit()
PY"#
        ),
    );
    let after = lab.ssh_ok(
        MAIL_HOST,
        &format!("ls /var/lib/mailcow/vmail/{domain}/e2e/Maildir/new | wc -l"),
    );
    assert_eq!(
        after.trim().parse::<u32>()?,
        before.trim().parse::<u32>()? + 1,
        "the message is in the mailbox's Maildir"
    );
    let owner = lab.ssh_ok(
        MAIL_HOST,
        &format!("stat -c '%u:%g' /var/lib/mailcow/vmail/{domain}/e2e/Maildir"),
    );
    assert_eq!(owner.trim(), "5000:5000", "mailcow's vmail owns the mail");
    Ok(())
}

fn an_archived_mail_domain_is_not_served_and_keeps_its_data() -> Result<(), Failed> {
    let lab = fleet()?;
    let (_, domain) = ARCHIVED;
    let (code, got) = api(&format!("get/domain/{domain}"), None)?;
    assert_eq!(code, 200);
    let served = got["domain_name"] == domain && got["active"] != 0;
    assert!(
        !served,
        "archived {domain} is not an active mailcow domain: {got}"
    );
    assert_eq!(
        rcpt(&format!("someone@{domain}"))?,
        554,
        "its mail is refused"
    );
    // An active domain's mail is taken (the domain is known: the mailbox
    // decides).
    assert_ne!(rcpt(&format!("someone@{}", ACTIVE[1].1))?, 554);
    let data = lab.ssh_ok(
        MAIL_HOST,
        &format!("stat -c '%F %U' /var/lib/mailcow/vmail/{domain}"),
    );
    assert_eq!(data.trim(), "directory vmail", "its mail stays");
    Ok(())
}

fn the_mail_ports_are_in_the_firewall() -> Result<(), Failed> {
    let lab = fleet()?;
    let rules = lab.ssh_ok(MAIL_HOST, "nft list ruleset");
    for port in MAIL_PORTS {
        assert!(
            rules
                .lines()
                .any(|l| l.trim().starts_with(&format!("tcp dport {port} accept"))),
            "port {port} open on {MAIL_HOST}:\n{rules}"
        );
    }
    // The document server's own port stays closed (nginx is in front).
    let rules = lab.ssh_ok(OFFICE_HOST, "nft list ruleset");
    assert!(!rules.contains("dport 8000"), "{rules}");
    assert!(rules.contains("tcp dport 443 accept"), "{rules}");
    Ok(())
}
