//! BookStack wikis and Paheko instances on `web`, checked on the host: every
//! active tenant's vhost answers with the tenant's name through its own
//! php-fpm pool and config, BookStack's database user logs in with the
//! password of the wiki's own `.env`, Paheko's SQLite file is the tenant's,
//! and an archived tenant is no longer served but keeps its data and
//! database.

use libtest_mimic::Failed;

use super::{Test, fleet};

pub const TESTS: &[(&str, Test)] = &[
    (
        "fleet::webapps::bookstack_wikis_are_served_each_with_its_pool_env_and_database",
        bookstack_wikis_are_served_each_with_its_pool_env_and_database,
    ),
    (
        "fleet::webapps::an_archived_wiki_is_not_served_and_keeps_its_data_and_database",
        an_archived_wiki_is_not_served_and_keeps_its_data_and_database,
    ),
    (
        "fleet::webapps::paheko_instances_are_served_each_with_its_pool_and_database_file",
        paheko_instances_are_served_each_with_its_pool_and_database_file,
    ),
    (
        "fleet::webapps::paheko_daily_tasks_run_from_their_timer",
        paheko_daily_tasks_run_from_their_timer,
    ),
    (
        "fleet::webapps::usage_counts_wikis_and_paheko_instances",
        usage_counts_wikis_and_paheko_instances,
    ),
];

const HOST: &str = "web";
/// The example tenants of inventory/girofle.yaml: name, domain.
const WIKIS: &[(&str, &str)] = &[("ecole-vive", "wiki.ecole-vive.example.org")];
const ARCHIVED_WIKI: (&str, &str) = ("velo-cite", "doc.velo-cite.example.org");
const PAHEKOS: &[(&str, &str)] = &[
    ("amap-lyon", "compta.amap-lyon.example.org"),
    ("chorale-do", "gestion.chorale-do.example.org"),
];

/// `curl` on the host itself, through nginx and TLS, for `domain`:
/// the status code (0 when nothing answered), then the body.
fn https(domain: &str, path: &str) -> Result<(u16, String), Failed> {
    super::https(HOST, domain, path, "")
}

/// A MariaDB query as the wiki's database user, with the password of the
/// wiki's own `.env` (`creds_of`: whose credentials; `db`: the database).
fn mariadb_as(creds_of: &str, db: &str, sql: &str) -> String {
    let env = format!("/var/lib/bookstack/{creds_of}/.env");
    format!(
        "mariadb -h localhost -u \"$(sed -n 's/^DB_USERNAME=//p' {env})\" -p\"$(sed -n 's/^DB_PASSWORD=//p' {env})\" -BN {db} -e \"{sql}\""
    )
}

fn bookstack_db(name: &str) -> String {
    format!("bookstack_{}", name.replace('-', "_"))
}

fn bookstack_wikis_are_served_each_with_its_pool_env_and_database() -> Result<(), Failed> {
    let lab = fleet()?;
    for (name, domain) in WIKIS {
        super::serves_tenant(HOST, domain, name)?;
        super::check_pool(HOST, "bookstack", name)?;

        // Its config: root's, readable by the tenant only, with its URL.
        let env = lab.ssh_ok(
            HOST,
            &format!(
                "stat -c '%U %G %a' /var/lib/bookstack/{name}/.env; grep -E '^(APP_URL|DB_DATABASE|LARAVEL_STORAGE_PATH)=' /var/lib/bookstack/{name}/.env"
            ),
        );
        assert_eq!(
            env.lines().collect::<Vec<_>>(),
            [
                format!("root bookstack-{name} 640").as_str(),
                format!("APP_URL=https://{domain}").as_str(),
                format!("DB_DATABASE={}", bookstack_db(name)).as_str(),
                format!("LARAVEL_STORAGE_PATH=/var/lib/bookstack/{name}/storage").as_str(),
            ],
            "{env}"
        );
        // The request's session landed in the tenant's storage, owned by
        // the tenant; the shared code tree's storage stays empty of it.
        let sessions = lab.ssh_ok(
            HOST,
            &format!(
                "find /var/lib/bookstack/{name}/storage/framework/sessions -type f -user bookstack-{name} | wc -l; find -L /srv/bookstack/current/storage -type f ! -name README | wc -l"
            ),
        );
        let counts: Vec<u32> = sessions
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        assert!(
            counts.len() == 2 && counts[0] >= 1 && counts[1] == 0,
            "{sessions}"
        );

        // Its database: the user of the .env logs in; migrated, named, and
        // upstream's default admin no longer has the password "password".
        let db = bookstack_db(name);
        let users = lab.ssh_ok(
            HOST,
            &mariadb_as(
                name,
                &db,
                "select email from users where system_name is null",
            ),
        );
        assert_eq!(users.trim(), "admin@admin.com", "{db}");
        let named = lab.ssh_ok(
            HOST,
            &mariadb_as(
                name,
                &db,
                "select value from settings where setting_key = 'app-name'",
            ),
        );
        assert_eq!(named.trim(), *name, "{db}");
        let default_password = lab.ssh(
            HOST,
            &format!(
                "HASH=\"$({})\" php -r 'exit(password_verify(\"password\", getenv(\"HASH\")) ? 0 : 1);'",
                mariadb_as(name, &db, "select password from users where email = 'admin@admin.com'")
            ),
        );
        assert!(
            !default_password.status.success(),
            "{db}: admin@admin.com still has upstream's default password"
        );
        // Another wiki's user may not reach it.
        let refused = lab.ssh(HOST, &mariadb_as(ARCHIVED_WIKI.0, &db, "select 1"));
        assert!(
            !refused.status.success(),
            "{} reached {db}",
            ARCHIVED_WIKI.0
        );
    }
    Ok(())
}

fn an_archived_wiki_is_not_served_and_keeps_its_data_and_database() -> Result<(), Failed> {
    let lab = fleet()?;
    let (name, domain) = ARCHIVED_WIKI;
    let (code, body) = https(domain, "/")?;
    assert!(
        !body.contains(name),
        "{domain} is archived but answered {code}: {body}"
    );
    let user = format!("bookstack-{name}");
    let state = lab.ssh_ok(
        HOST,
        &format!(
            "test ! -e /etc/nginx/sites-enabled/{user}.conf && echo no vhost; \
             test ! -e /etc/php/8.2/fpm/pool.d/{user}.conf && echo no pool; \
             test ! -e /run/php/{user}.sock && echo no socket; \
             test ! -e /etc/bookstack/sites/{domain} && echo no link; \
             test -f /var/lib/bookstack/{name}/.env && echo env kept; \
             test -d /var/lib/bookstack/{name}/storage/uploads/images && echo uploads kept"
        ),
    );
    assert_eq!(
        state.lines().collect::<Vec<_>>(),
        [
            "no vhost",
            "no pool",
            "no socket",
            "no link",
            "env kept",
            "uploads kept"
        ],
        "{state}"
    );
    // Its database and user stay, and the .env's password still logs in.
    let db = bookstack_db(name);
    let users = lab.ssh_ok(
        HOST,
        &mariadb_as(
            name,
            &db,
            "select count(*) from users where system_name is null",
        ),
    );
    assert_eq!(users.trim(), "1", "{db}");
    Ok(())
}

fn paheko_instances_are_served_each_with_its_pool_and_database_file() -> Result<(), Failed> {
    let lab = fleet()?;
    let mut keys = Vec::new();
    for (name, domain) in PAHEKOS {
        super::serves_tenant(HOST, domain, name)?;
        super::check_pool(HOST, "paheko", name)?;

        // Its config names its own data and URL; root's, the tenant reads it.
        let config = format!("/var/lib/paheko/{name}/config.local.php");
        let state = lab.ssh_ok(
            HOST,
            &format!(
                "stat -c '%U %G %a' {config}; grep -c \"DATA_ROOT = '/var/lib/paheko/{name}/data'\" {config}; grep -c \"WWW_URL = 'https://{domain}/'\" {config}; sed -n \"s/^const SECRET_KEY = '\\(.*\\)';/\\1/p\" {config}"
            ),
        );
        let lines: Vec<&str> = state.lines().collect();
        assert_eq!(
            lines[..3],
            [format!("root paheko-{name} 640").as_str(), "1", "1"],
            "{state}"
        );
        keys.push(lines.get(3).copied().unwrap_or("").to_owned());

        // Its SQLite file is the tenant's, with the first member in it.
        let db = format!("/var/lib/paheko/{name}/data/association.sqlite");
        let members = lab.ssh_ok(
            HOST,
            &format!(
                "stat -c '%U' {db}; php -r '$db = new SQLite3($argv[1], SQLITE3_OPEN_READONLY); echo $db->querySingle(\"SELECT count(*) FROM users\"), \"\\n\", $db->querySingle(\"SELECT value FROM config WHERE key = \\x27org_name\\x27\"), \"\\n\";' {db}"
            ),
        );
        assert_eq!(
            members.lines().collect::<Vec<_>>(),
            [format!("paheko-{name}").as_str(), "1", *name],
            "{members}"
        );
        // Another tenant's user cannot read it.
        let other = if *name == "amap-lyon" {
            "chorale-do"
        } else {
            "amap-lyon"
        };
        let refused = lab.ssh(
            HOST,
            &format!("runuser -u paheko-{other} -- cat {db} > /dev/null"),
        );
        assert!(!refused.status.success(), "paheko-{other} read {db}");
    }
    assert!(
        keys.iter().all(|k| k.len() == 32) && keys[0] != keys[1],
        "{keys:?}"
    );
    // The shared code tree holds no instance's data, and a process that
    // names no tenant gets an error, not a database of its own.
    let shared = lab.ssh(
        HOST,
        "cd /tmp && runuser -u paheko-amap-lyon -- php /srv/paheko/current/bin/paheko version; echo rc=$?; ls /srv/paheko/current/data",
    );
    let out = String::from_utf8_lossy(&shared.stdout);
    assert!(
        out.contains("rc=1") && !out.contains("association.sqlite"),
        "{out}"
    );
    Ok(())
}

/// Upstream's daily tasks run as the tenant from the tenant's timer.
fn paheko_daily_tasks_run_from_their_timer() -> Result<(), Failed> {
    let lab = fleet()?;
    for (name, _) in PAHEKOS {
        let timer = lab.ssh_ok(
            HOST,
            &format!("systemctl is-enabled paheko-cron@{name}.timer; systemctl is-active paheko-cron@{name}.timer"),
        );
        assert_eq!(timer, "enabled\nactive\n", "{name}");
        let run = lab.ssh_ok(
            HOST,
            &format!("systemctl start paheko-cron@{name}.service; systemctl show -p Result,ExecMainStatus,User paheko-cron@{name}.service"),
        );
        assert!(
            run.contains("Result=success") && run.contains("ExecMainStatus=0"),
            "{name}: {run}"
        );
        assert!(
            run.contains(&format!("User=paheko-{name}")),
            "{name}: {run}"
        );
    }
    Ok(())
}

/// The usage table: active tenants as accounts, users from each tenant's
/// database (the archived wiki's admin included: its data is kept).
fn usage_counts_wikis_and_paheko_instances() -> Result<(), Failed> {
    let table = super::usage_table()?;
    let row = |service: &str| {
        table["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["service"] == service))
            .cloned()
            .ok_or_else(|| format!("no {service} row in {table}"))
    };
    let bookstack = row("Bookstack")?;
    assert_eq!(bookstack["accounts"], 1, "{table}");
    assert_eq!(bookstack["users"], 2, "{table}");
    let paheko = row("Paheko")?;
    assert_eq!(paheko["accounts"], 2, "{table}");
    assert_eq!(paheko["users"], 2, "{table}");
    Ok(())
}
