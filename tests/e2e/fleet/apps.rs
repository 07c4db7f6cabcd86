//! The web applications of the fleet, checked on their hosts: every active
//! tenant's vhost answers with the tenant's name, has its php-fpm pool and
//! its database (whose user logs in with the password of the tenant's own
//! config), and an archived tenant is no longer served but keeps its data
//! and database.

use libtest_mimic::Failed;

use super::{Test, fleet};

pub const TESTS: &[(&str, Test)] = &[
    (
        "fleet::apps::nextcloud_tenants_are_served_each_with_its_pool_and_database",
        nextcloud_tenants_are_served_each_with_its_pool_and_database,
    ),
    (
        "fleet::apps::an_archived_nextcloud_is_not_served_and_keeps_its_data",
        an_archived_nextcloud_is_not_served_and_keeps_its_data,
    ),
    (
        "fleet::apps::nextcloud_background_jobs_run_from_their_timer",
        nextcloud_background_jobs_run_from_their_timer,
    ),
    (
        "fleet::apps::an_apply_limited_to_one_tenant_touches_only_it",
        an_apply_limited_to_one_tenant_touches_only_it,
    ),
    (
        "fleet::apps::nextcloud_signs_documents_for_the_fleets_document_server",
        nextcloud_signs_documents_for_the_fleets_document_server,
    ),
    (
        "fleet::apps::the_site_is_served_on_web",
        the_site_is_served_on_web,
    ),
    (
        "fleet::apps::usage_counts_the_nextcloud_tenants",
        usage_counts_the_nextcloud_tenants,
    ),
];

/// The example Nextcloud tenants of inventory/girofle.yaml: name, domain.
const ACTIVE: &[(&str, &str)] = &[
    ("amap-lyon", "cloud.amap-lyon.example.org"),
    ("ecole-vive", "cloud.ecole-vive.example.org"),
    ("velo-cite", "nuage.velo-cite.example.org"),
];
const ARCHIVED: (&str, &str) = ("chorale-do", "cloud.chorale-do.example.org");
const HOST: &str = "nextcloud-data";

/// `curl` on the host itself, through nginx and TLS, for `domain`:
/// prints the status code, then the body.
fn https(host: &str, domain: &str, path: &str) -> Result<(u16, String), Failed> {
    super::https(host, domain, path, "")
}

/// The tenant's database password as its own config holds it.
fn db_password_command(tenant: &str) -> String {
    format!(
        "php -r 'include \"/var/lib/nextcloud/{tenant}/config/clou.config.php\"; echo $CONFIG[\"dbpassword\"];'"
    )
}

fn nextcloud_tenants_are_served_each_with_its_pool_and_database() -> Result<(), Failed> {
    let lab = fleet()?;
    for (name, domain) in ACTIVE {
        super::serves_tenant(HOST, domain, name)?;
        let (code, status) = https(HOST, domain, "/status.php")?;
        assert_eq!(code, 200, "{domain}/status.php: {status}");
        assert!(status.contains("\"installed\":true"), "{domain}: {status}");

        // Its pool, as its own user, behind a socket only nginx may use.
        super::check_pool(HOST, "nextcloud", name)?;

        // Its database: the tenant's user logs in with its config's password.
        let db = format!("nextcloud_{}", name.replace('-', "_"));
        let users = lab.ssh_ok(
            HOST,
            &format!(
                "PGPASSWORD=\"$({})\" psql -X -w -h localhost -U {db} -d {db} -Atc 'select uid from oc_users'",
                db_password_command(name)
            ),
        );
        assert_eq!(users.trim(), "admin", "{db}");
        // And another tenant's user may not connect to it.
        let other = if *name == "amap-lyon" {
            "ecole-vive"
        } else {
            "amap-lyon"
        };
        let other_db = format!("nextcloud_{}", other.replace('-', "_"));
        let refused = lab.ssh(
            HOST,
            &format!(
                "PGPASSWORD=\"$({})\" psql -X -w -h localhost -U {other_db} -d {db} -Atc 'select 1'",
                db_password_command(other)
            ),
        );
        assert!(!refused.status.success(), "{other_db} reached {db}");
    }
    Ok(())
}

fn an_archived_nextcloud_is_not_served_and_keeps_its_data() -> Result<(), Failed> {
    let lab = fleet()?;
    let (name, domain) = ARCHIVED;
    let (code, body) = https(HOST, domain, "/")?;
    assert!(
        !body.contains(name),
        "{domain} is archived but answered {code}: {body}"
    );
    let user = format!("nextcloud-{name}");
    let state = lab.ssh_ok(
        HOST,
        &format!(
            "test ! -e /etc/nginx/sites-enabled/nextcloud-{name}.conf && echo no vhost; \
             test ! -e /etc/php/8.2/fpm/pool.d/{user}.conf && echo no pool; \
             systemctl is-active nextcloud-cron@{name}.timer || true; \
             test -d /var/lib/nextcloud/{name}/data && echo data kept; \
             sudo -u postgres psql -Atc \"select datname from pg_database where datname = 'nextcloud_chorale_do'\""
        ),
    );
    assert_eq!(
        state.lines().collect::<Vec<_>>(),
        [
            "no vhost",
            "no pool",
            "inactive",
            "data kept",
            "nextcloud_chorale_do"
        ],
        "{state}"
    );
    Ok(())
}

/// The per-tenant timer runs Nextcloud's cron.php as the tenant, which
/// records its run in the tenant's own database.
fn nextcloud_background_jobs_run_from_their_timer() -> Result<(), Failed> {
    let lab = fleet()?;
    let (name, _) = ACTIVE[0];
    let db = format!("nextcloud_{}", name.replace('-', "_"));
    let lastcron = format!(
        "PGPASSWORD=\"$({})\" psql -X -w -h localhost -U {db} -d {db} -Atc \"select configvalue from oc_appconfig where appid = 'core' and configkey = 'lastcron'\"",
        db_password_command(name)
    );
    let before: u64 = lab.ssh_ok(HOST, &lastcron).trim().parse().unwrap_or(0);
    let timer = lab.ssh_ok(HOST, &format!("systemctl is-enabled nextcloud-cron@{name}.timer; systemctl is-active nextcloud-cron@{name}.timer"));
    assert_eq!(timer, "enabled\nactive\n");
    std::thread::sleep(std::time::Duration::from_secs(1));
    lab.ssh_ok(
        HOST,
        &format!("systemctl start nextcloud-cron@{name}.service"),
    );
    let after: u64 = lab.ssh_ok(HOST, &lastcron).trim().parse()?;
    assert!(after > before, "lastcron {before} -> {after}");
    Ok(())
}

fn the_site_is_served_on_web() -> Result<(), Failed> {
    let (code, body) = https("web", "girofle.example.org", "/")?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Girofle"), "{body}");
    // A name no vhost serves gets nothing (the catch-all closes it).
    let (code, body) = https("web", "unknown.example.org", "/")?;
    assert_eq!(code, 0, "an unknown name answered {code}: {body}");
    Ok(())
}

/// The usage table counts active tenants as accounts, and measures users
/// in each tenant's database.
fn usage_counts_the_nextcloud_tenants() -> Result<(), Failed> {
    let table = super::usage_table()?;
    let row = table["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["service"] == "Nextcloud"))
        .ok_or_else(|| format!("no Nextcloud row in {table}"))?;
    assert_eq!(row["accounts"], 3, "{table}");
    // One admin account per installed instance, the archived one included.
    assert_eq!(row["users"], 4, "{table}");
    Ok(())
}

/// `--tenant amap-lyon` converges that instance's resources only: two
/// tenants' pools are edited by hand, one apply puts back amap-lyon's and
/// leaves ecole-vive's as it was; a whole apply then mends the other.
fn an_apply_limited_to_one_tenant_touches_only_it() -> Result<(), Failed> {
    let lab = fleet()?;
    let pool = |name: &str| format!("/etc/php/8.2/fpm/pool.d/nextcloud-{name}.conf");
    let edited = |name: &str| -> Result<bool, Failed> {
        let out = lab.ssh_ok(
            HOST,
            &format!("grep -c '^; edited by hand' {} || true", pool(name)),
        );
        Ok(out.trim() != "0")
    };
    for name in ["amap-lyon", "ecole-vive"] {
        lab.ssh_ok(HOST, &format!("echo '; edited by hand' >> {}", pool(name)));
    }
    let one = lab.apply(&["--json", "--tenant", "nextcloud/amap-lyon"]);
    one.expect_code(0);
    assert!(!edited("amap-lyon")?, "amap-lyon's pool is converged again");
    assert!(edited("ecole-vive")?, "ecole-vive's pool was not touched");
    // Only the hosts serving the tenant took part.
    let hosts: Vec<String> = one
        .events()
        .into_iter()
        .filter(|e| e["event"] == "host")
        .filter_map(|e| e["host"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(hosts, [HOST], "{}", one.stdout);

    lab.apply(&[]).expect_code(0);
    assert!(
        !edited("ecole-vive")?,
        "a whole apply converges ecole-vive too"
    );
    Ok(())
}

/// Each instance is set up for the fleet's ONLYOFFICE server: from
/// nextcloud-data, a request signed with the secret the instance holds
/// (read from its own database) crosses the firewall and the document
/// server's nginx, and is accepted; the document server's answer to an
/// unsigned one is a refusal.
fn nextcloud_signs_documents_for_the_fleets_document_server() -> Result<(), Failed> {
    let lab = fleet()?;
    let office = lab.address("onlyoffice")?;
    let domain = "office.girofle.example.org";
    for (name, _) in ACTIVE {
        let url = lab.ssh_ok(
            HOST,
            &format!("girofle-occ {name} config:app:get onlyoffice DocumentServerUrl"),
        );
        assert_eq!(url.trim(), format!("https://{domain}/"), "{name}");
        // A JWT as the app signs it (HS256), with the instance's secret.
        let answer = lab.ssh_ok(
            HOST,
            &format!(
                r#"secret="$(girofle-occ {name} config:app:get onlyoffice jwt_secret)"
token=$(SECRET="$secret" php -r '
$b = fn($s) => rtrim(strtr(base64_encode($s), "+/", "-_"), "=");
$signing = $b(json_encode(["alg" => "HS256", "typ" => "JWT"])) . "." . $b(json_encode(["payload" => ["c" => "version"], "exp" => time() + 300]));
echo $signing, ".", $b(hash_hmac("sha256", $signing, getenv("SECRET"), true));')
curl -sk --max-time 20 --resolve {domain}:443:{office} -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $token" --data '{{"c":"version"}}' https://{domain}/command"#
            ),
        );
        let answer: serde_json::Value = serde_json::from_str(answer.trim())
            .map_err(|e| format!("{name}: the document server answered {answer:?}: {e}"))?;
        assert_eq!(
            answer["error"], 0,
            "{name}: signed request refused: {answer}"
        );
    }
    let unsigned = lab.ssh_ok(
        HOST,
        &format!("curl -sk --max-time 20 --resolve {domain}:443:{office} -X POST -H 'Content-Type: application/json' --data '{{\"c\":\"version\"}}' https://{domain}/command"),
    );
    assert!(
        unsigned.contains("\"error\": 6") || unsigned.contains("\"error\":6"),
        "{unsigned}"
    );
    Ok(())
}
