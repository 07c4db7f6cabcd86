//! The forums host: Mattermost teams and Discourse forums, checked on the
//! host over ssh. Every active tenant's vhost answers through nginx and
//! TLS with the tenant's name, its unit is active and listens on 127.0.0.1
//! only, its database exists and its user logs in with the password of the
//! tenant's own config (config.json, the launcher's containers/NAME.yml),
//! and the page shows what the database holds; an archived tenant is not
//! served (no vhost, unit stopped and disabled) but keeps its data, config
//! and database.

use libtest_mimic::Failed;

use super::{Test, fleet};

pub const TESTS: &[(&str, Test)] = &[
    (
        "fleet::forums::mattermost_tenants_are_served_each_with_its_unit_and_database",
        mattermost_tenants_are_served_each_with_its_unit_and_database,
    ),
    (
        "fleet::forums::an_archived_mattermost_is_not_served_and_keeps_its_data",
        an_archived_mattermost_is_not_served_and_keeps_its_data,
    ),
    (
        "fleet::forums::discourse_forums_are_served_each_with_its_unit_and_database",
        discourse_forums_are_served_each_with_its_unit_and_database,
    ),
    (
        "fleet::forums::pages_show_what_the_tenant_database_holds",
        pages_show_what_the_tenant_database_holds,
    ),
];

const HOST: &str = "forums";

/// The example tenants of the inventory: name, domain, port.
const MATTERMOST: &[(&str, &str, u16)] = &[("amap-lyon", "chat.amap-lyon.example.org", 8065)];
const MATTERMOST_ARCHIVED: (&str, &str, u16) = ("chorale-do", "chat.chorale-do.example.org", 8066);
const DISCOURSE: &[(&str, &str, u16)] = &[
    ("ecole-vive", "forum.ecole-vive.example.org", 8101),
    ("repair-cafe", "forum.repair-cafe.example.org", 8102),
];

/// Database and role of a tenant, as the postgresql role names them.
fn ident(app: &str, name: &str) -> String {
    format!("{app}_{}", name.replace('-', "_"))
}

/// `curl` on the host itself, through nginx and TLS, for `domain`: the
/// status code (0 when nothing answered) and the body.
fn https(domain: &str, path: &str) -> Result<(u16, String), Failed> {
    super::https(HOST, domain, path, "")
}

/// The shell words printing a Mattermost tenant's database password, read
/// from its config.json's DataSource.
fn mattermost_password(name: &str) -> String {
    format!(
        "sed -n 's|.*\"DataSource\": *\"postgres://[^:]*:\\([^@]*\\)@.*|\\1|p' /etc/mattermost/{name}.json"
    )
}

/// The same for a forum, from the launcher's container definition.
fn discourse_password(name: &str) -> String {
    format!(
        "sed -n \"s|^ *DISCOURSE_DB_PASSWORD: *'\\(.*\\)'\\$|\\1|p\" /etc/discourse/containers/{name}.yml"
    )
}

/// Runs `sql` in the tenant's database as its own role, with the password
/// printed by `password` (a shell command): psql's output.
fn psql_as_tenant(db: &str, password: &str, sql: &str) -> Result<String, Failed> {
    let lab = fleet()?;
    let out = lab.ssh(
        HOST,
        &format!(
            "pw=$({password}); test -n \"$pw\" || {{ echo 'no password in the config' >&2; exit 3; }}; \
             PGPASSWORD=\"$pw\" psql -X -w -h localhost -U {db} -d {db} -Atc \"{sql}\""
        ),
    );
    if !out.status.success() {
        return Err(format!(
            "{db}: cannot log in with the config's password ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Every listening socket on `port`, as `ss` prints the local address.
fn listeners(port: u16) -> Result<Vec<String>, Failed> {
    let out = fleet()?.ssh_ok(
        HOST,
        &format!("ss -Hltn 'sport = :{port}' | awk '{{print $4}}'"),
    );
    Ok(out.lines().map(str::to_owned).collect())
}

fn unit_state(unit: &str) -> Result<(String, String), Failed> {
    let lab = fleet()?;
    let active = lab.ssh(HOST, &format!("systemctl is-active {unit}"));
    let enabled = lab.ssh(HOST, &format!("systemctl is-enabled {unit}"));
    Ok((
        String::from_utf8_lossy(&active.stdout).trim().to_owned(),
        String::from_utf8_lossy(&enabled.stdout).trim().to_owned(),
    ))
}

fn assert_served_on_loopback(unit: &str, port: u16) -> Result<(), Failed> {
    let (active, enabled) = unit_state(unit)?;
    assert_eq!(active, "active", "{unit}");
    assert_eq!(enabled, "enabled", "{unit}");
    let listening = listeners(port)?;
    assert!(
        !listening.is_empty(),
        "{unit}: nothing listens on port {port}"
    );
    assert!(
        listening.iter().all(|l| l == &format!("127.0.0.1:{port}")),
        "{unit}: port {port} must be on 127.0.0.1 only: {listening:?}"
    );
    Ok(())
}

fn mattermost_tenants_are_served_each_with_its_unit_and_database() -> Result<(), Failed> {
    let lab = fleet()?;
    for (name, domain, port) in MATTERMOST {
        let (code, body) = https(domain, "/")?;
        assert_eq!(code, 200, "{domain}: {body}");
        assert!(
            body.contains(&format!("<title>{name}</title>")),
            "{domain}: {body}"
        );
        let (code, ping) = https(domain, "/api/v4/system/ping")?;
        assert_eq!(code, 200, "{domain} ping: {ping}");
        assert!(ping.contains("\"status\":\"OK\""), "{domain} ping: {ping}");

        let unit = format!("mattermost@{name}.service");
        assert_served_on_loopback(&unit, *port)?;
        // The server runs as the tenant's own user, from the shared code.
        let user = lab.ssh_ok(
            HOST,
            &format!("ps -o user= -p \"$(systemctl show -p MainPID --value {unit})\""),
        );
        assert_eq!(user.trim(), format!("mattermost-{name}"), "{unit}");
        let exe = lab.ssh_ok(HOST, &format!("systemctl show -p ExecStart --value {unit}"));
        assert!(
            exe.contains("/srv/mattermost/current/bin/mattermost")
                && exe.contains(&format!("/etc/mattermost/{name}.json")),
            "{unit}: {exe}"
        );
        // Its config is the tenant's to read, not to write.
        let mode = lab.ssh_ok(
            HOST,
            &format!("stat -c '%U:%G %a' /etc/mattermost/{name}.json"),
        );
        assert_eq!(mode.trim(), format!("root:mattermost-{name} 640"));

        let db = ident("mattermost", name);
        let tables = psql_as_tenant(
            &db,
            &mattermost_password(name),
            "select count(*) from pg_tables where tablename = 'users'",
        )?;
        assert_eq!(tables, "1", "{db}: the server made its users table");
    }
    Ok(())
}

fn an_archived_mattermost_is_not_served_and_keeps_its_data() -> Result<(), Failed> {
    let lab = fleet()?;
    let (name, domain, port) = MATTERMOST_ARCHIVED;
    let vhost = lab.ssh(
        HOST,
        &format!(
            "test -e /etc/nginx/sites-enabled/mattermost-{name}.conf || test -e /etc/nginx/sites-available/mattermost-{name}.conf"
        ),
    );
    assert!(!vhost.status.success(), "{name} still has a vhost");
    let (code, body) = https(domain, "/")?;
    assert!(
        code != 200 && !body.contains(name),
        "{domain} is still served ({code}): {body}"
    );
    let (active, enabled) = unit_state(&format!("mattermost@{name}.service"))?;
    assert_ne!(active, "active", "mattermost@{name} still runs");
    assert_eq!(enabled, "disabled", "mattermost@{name}");
    assert!(
        listeners(port)?.is_empty(),
        "something still listens on {port}"
    );

    // Its data, config and database stay.
    lab.ssh_ok(
        HOST,
        &format!(
            "test -d /var/lib/mattermost/{name}/data && test -f /etc/mattermost/{name}.json && id mattermost-{name}"
        ),
    );
    let db = ident("mattermost", name);
    assert_eq!(
        psql_as_tenant(&db, &mattermost_password(name), "select 1")?,
        "1"
    );
    Ok(())
}

fn discourse_forums_are_served_each_with_its_unit_and_database() -> Result<(), Failed> {
    let lab = fleet()?;
    for (name, domain, port) in DISCOURSE {
        let (code, body) = https(domain, "/")?;
        assert_eq!(code, 200, "{domain}: {body}");
        assert!(
            body.contains(&format!("<title>{name}</title>")),
            "{domain}: {body}"
        );
        let (code, status) = https(domain, "/srv/status")?;
        assert_eq!((code, status.trim()), (200, "ok"), "{domain}/srv/status");

        let unit = format!("discourse@{name}.service");
        assert_served_on_loopback(&unit, *port)?;
        let exe = lab.ssh_ok(HOST, &format!("systemctl show -p ExecStart --value {unit}"));
        assert!(exe.contains(&format!("start {name}")), "{unit}: {exe}");

        // The launcher's definition, where the launcher looks for it.
        let yml = lab.ssh_ok(
            HOST,
            &format!(
                "stat -c '%U %a' /etc/discourse/containers/{name}.yml && cat /srv/discourse/current/containers/{name}.yml"
            ),
        );
        assert!(yml.starts_with("root 600"), "{name}.yml: {yml}");
        for expected in [
            format!("DISCOURSE_HOSTNAME: '{domain}'"),
            "DISCOURSE_SMTP_ADDRESS: 'mail-exit'".to_owned(),
            format!("- \"127.0.0.1:{port}:80\""),
            format!("host: /var/lib/discourse/{name}/shared"),
        ] {
            assert!(
                yml.contains(&expected),
                "{name}.yml lacks {expected}:\n{yml}"
            );
        }
        lab.ssh_ok(
            HOST,
            &format!("test -d /var/lib/discourse/{name}/shared/uploads"),
        );

        let db = ident("discourse", name);
        let title = psql_as_tenant(
            &db,
            &discourse_password(name),
            "select value from site_settings where name = 'title'",
        )?;
        assert_eq!(title, *name, "{db}: the bootstrap set the forum's title");
    }
    Ok(())
}

/// A user added to a tenant's database shows on its page at once: the
/// application reads the database it was configured with.
fn pages_show_what_the_tenant_database_holds() -> Result<(), Failed> {
    let lab = fleet()?;
    let (name, domain, _) = MATTERMOST[0];
    lab.ssh_ok(
        HOST,
        &format!(
            "cd /srv/mattermost/current && runuser -u mattermost-{name} -- bin/mattermost --config /etc/mattermost/{name}.json user create fleet-test fleet-test@example.org"
        ),
    );
    let db = ident("mattermost", name);
    let users = psql_as_tenant(
        &db,
        &mattermost_password(name),
        "select count(*) from users where deleteat = 0",
    )?;
    assert_ne!(users, "0", "{db}: the user was not created");
    let (_, body) = https(domain, "/")?;
    assert!(
        body.contains(&format!(": {users} active users")),
        "{domain}: {body}"
    );

    // The stand-in's own command (these tests run on the lab only).
    let (name, domain, _) = DISCOURSE[0];
    lab.ssh_ok(
        HOST,
        &format!("cd /srv/discourse/current && lab/discourse-lab user create {name} fleet-test"),
    );
    let db = ident("discourse", name);
    let users = psql_as_tenant(
        &db,
        &discourse_password(name),
        "select count(*) from users where id > 0 and not staged",
    )?;
    assert_ne!(users, "0", "{db}: the user was not created");
    let (_, body) = https(domain, "/")?;
    assert!(
        body.contains(&format!(": {users} users.")),
        "{domain}: {body}"
    );
    Ok(())
}
