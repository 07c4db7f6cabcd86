//! An application upgrade rolled out per tenant, on the fleet's Nextcloud
//! host: the lab packs the stand-in's next release beside the one the
//! fleet runs, and `clou apply -e nextcloud_version=...` takes each tenant
//! through maintenance, backup, switch, `occ upgrade` and maintenance off.
//! One tenant is made to fail its migration half-way: it is rolled back
//! (link, database, config.php) and the run stops there; `--keep-going`
//! upgrades the ones after it. Everything is checked on the host: links,
//! config.php, the database tables, the pages, the backup and the journal.
//!
//! BookStack's wikis go through the same resource with Laravel's own
//! procedure (`artisan down`, a MariaDB dump, `artisan migrate`, `artisan
//! up`).
//!
//! It runs last of the fleet's tests: after it the fleet runs the next
//! release, which a plain apply would refuse to downgrade.

use libtest_mimic::Failed;

use super::{Test, fleet};

pub const TESTS: &[(&str, Test)] = &[
    (
        "fleet::app_upgrade::nextcloud_upgrades_tenant_by_tenant_and_rolls_back_a_failed_one",
        nextcloud_upgrades_tenant_by_tenant_and_rolls_back_a_failed_one,
    ),
    (
        "fleet::app_upgrade::a_bookstack_wiki_whose_migration_fails_is_rolled_back",
        a_bookstack_wiki_whose_migration_fails_is_rolled_back,
    ),
];

const HOST: &str = "nextcloud-data";
/// The active tenants, in the inventory's order (the plan's order).
const TENANTS: [(&str, &str); 3] = [
    ("amap-lyon", "cloud.amap-lyon.example.org"),
    ("ecole-vive", "cloud.ecole-vive.example.org"),
    ("velo-cite", "nuage.velo-cite.example.org"),
];
const FAILING: &str = "ecole-vive";

/// What the host says of one tenant.
#[derive(Debug, PartialEq)]
struct Seen {
    /// The release its link points to.
    release: String,
    /// config.php's version (what its database was migrated to).
    version: String,
    maintenance: bool,
    /// The versions the stand-in's migration recorded in the database.
    migrations: Vec<String>,
    /// status.php's HTTP code through nginx.
    page: u16,
}

fn seen(name: &str, domain: &str) -> Result<Seen, Failed> {
    let lab = fleet()?;
    let release = lab.ssh_ok(HOST, &format!("readlink /srv/nextcloud/tenants/{name}"));
    let config = format!("/var/lib/nextcloud/{name}/config/config.php");
    let php = |key: &str| {
        lab.ssh_ok(
            HOST,
            &format!(
                "php -r 'include \"{config}\"; echo var_export($CONFIG[\"{key}\"] ?? null, true);'"
            ),
        )
    };
    let db = format!("nextcloud_{}", name.replace('-', "_"));
    let migrations = lab.ssh_ok(
        HOST,
        &format!(
            "runuser -u postgres -- psql -X -At -d {db} -c \"select version from oc_lab_migrations order by version\" 2>/dev/null || true"
        ),
    );
    let (page, _) = super::https(HOST, domain, "/status.php", "")?;
    Ok(Seen {
        release: release.trim().trim_start_matches("../releases/").to_owned(),
        version: php("version").trim().trim_matches('\'').to_owned(),
        maintenance: php("maintenance").trim() == "true",
        migrations: migrations.lines().map(str::to_owned).collect(),
        page,
    })
}

/// A tenant as it was before: its release, migrated to it, serving.
fn untouched(release: &str) -> Seen {
    Seen {
        release: release.to_owned(),
        version: release.to_owned(),
        maintenance: false,
        migrations: Vec::new(),
        page: 200,
    }
}

fn upgraded(release: &str) -> Seen {
    Seen {
        migrations: vec![release.to_owned()],
        ..untouched(release)
    }
}

fn nextcloud_upgrades_tenant_by_tenant_and_rolls_back_a_failed_one() -> Result<(), Failed> {
    let lab = fleet()?;
    let current = seen(TENANTS[0].0, TENANTS[0].1)?.release;
    let next = clou::lab::artifacts::next_version(&current);
    let file = format!("artifacts/nextcloud-{next}.tar.gz");
    let sha = lab.ssh_ok(
        HOST,
        &format!(
            "sha256sum {}/{file} | cut -d' ' -f1",
            clou::lab::repo::MOUNT_POINT
        ),
    );
    let pin = [
        format!("nextcloud_version={next}"),
        format!("nextcloud_url={}", clou::lab::repo::url_of(&file)),
        format!("nextcloud_sha256={}", sha.trim()),
    ];
    let apply_on = |limit: &str, more: &[&str]| {
        let mut args = vec!["--limit", limit];
        for p in &pin {
            args.extend(["-e", p.as_str()]);
        }
        args.extend_from_slice(more);
        lab.apply(&args)
    };
    let apply = |more: &[&str]| {
        let mut args = vec!["--json"];
        args.extend_from_slice(more);
        apply_on(HOST, &args)
    };
    for (name, domain) in TENANTS {
        assert_eq!(seen(name, domain)?, untouched(&current), "{name} before");
    }
    lab.ssh_ok(
        HOST,
        &format!("touch /var/lib/nextcloud/{FAILING}/config/fail-upgrade"),
    );

    // Check mode says what would happen and does nothing.
    apply(&["--check"]).expect_code(0);
    for (name, domain) in TENANTS {
        assert_eq!(
            seen(name, domain)?,
            untouched(&current),
            "{name} after --check"
        );
    }

    // The first tenant is upgraded, the failing one rolled back with the
    // migration's own words, the last one not attempted.
    let run = apply(&[]);
    run.expect_code(1);
    let events = run.events();
    let report = |name: &str| {
        events
            .iter()
            .find(|e| {
                e["event"] == "resource"
                    && e["id"] == format!("nextcloud/release:/srv/nextcloud/tenants/{name}")
            })
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(report("amap-lyon")["status"], "changed", "{}", run.stdout);
    let failed = report(FAILING);
    assert_eq!(failed["status"], "failed", "{}", run.stdout);
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("rolled back to {current}")),
        "{error}"
    );
    assert!(
        error.contains("Duplicate table"),
        "the upgrade step's output: {error}"
    );
    assert_eq!(report("velo-cite")["status"], "skipped", "{}", run.stdout);

    assert_eq!(seen("amap-lyon", TENANTS[0].1)?, upgraded(&next));
    assert_eq!(
        seen(FAILING, TENANTS[1].1)?,
        untouched(&current),
        "the failed tenant is as it was: its migration's table was taken away with the restore"
    );
    assert_eq!(seen("velo-cite", TENANTS[2].1)?, untouched(&current));
    let backup = lab.ssh_ok(
        HOST,
        &format!("stat -c '%a %U' /var/backups/clou/nextcloud/{FAILING} && test -s /var/backups/clou/nextcloud/{FAILING}/database.dump && echo dumped"),
    );
    assert_eq!(backup.trim(), "700 root\ndumped", "the backup is root's");
    let journal = lab.ssh_ok(
        HOST,
        "grep -F 'upgrade tenant amap-lyon' /var/lib/clou/journal.jsonl | tail -n 1",
    );
    assert!(
        journal.contains(&format!("{current} -> {next}")),
        "before and after in the host's journal: {journal}"
    );

    // --keep-going: the failing tenant is tried (and rolled back) again,
    // the one after it upgraded.
    let run = apply(&["--keep-going"]);
    run.expect_code(1);
    assert_eq!(seen(FAILING, TENANTS[1].1)?, untouched(&current));
    assert_eq!(seen("velo-cite", TENANTS[2].1)?, upgraded(&next));

    // Its migration mended, but the new release's pages fail there (a
    // fatal error in its code): the upgrade itself works, then the health
    // gate finds the tenant's declared page answering 500 and the rollout,
    // one host at a time, stops before web.
    lab.ssh_ok(
        HOST,
        &format!(
            "cd /var/lib/nextcloud/{FAILING}/config && rm fail-upgrade && touch broken-{next}"
        ),
    );
    let gated = apply_on(
        &format!("{HOST},web"),
        &["--serial", "1", "--settle", "1", "--gate-timeout", "4"],
    );
    gated.expect_code(1);
    let said = format!("{}{}", gated.stdout, gated.stderr);
    assert!(said.contains(&format!("batch 1/2: {HOST}")), "{said}");
    assert!(
        said.contains(&format!("{HOST}: FAILED its health gate")),
        "{said}"
    );
    assert!(
        said.contains(TENANTS[1].1),
        "the page that failed is named: {said}"
    );
    assert!(
        said.contains("the rollout stopped after batch 1 of 2"),
        "{said}"
    );
    assert!(!said.contains("batch 2/2"), "web is not touched: {said}");
    assert_eq!(seen(FAILING, TENANTS[1].1)?.release, next);

    // The page mended: all three run the new release, with nothing left
    // to do.
    lab.ssh_ok(
        HOST,
        &format!("rm /var/lib/nextcloud/{FAILING}/config/broken-{next}"),
    );
    for (name, domain) in TENANTS {
        assert_eq!(seen(name, domain)?, upgraded(&next), "{name} at the end");
    }
    let again = apply(&[]);
    again.expect_code(0);
    assert_eq!(again.host(HOST)["changed"], 0, "{}", again.stdout);

    // Back to the release before: refused, nothing run.
    let mut args = vec!["--json", "--limit", HOST, "-e"];
    let old = format!("nextcloud_version={current}");
    args.push(&old);
    let down = lab.apply(&args);
    down.expect_code(1);
    assert!(down.stdout.contains("never downgrades"), "{}", down.stdout);
    for (name, domain) in TENANTS {
        assert_eq!(
            seen(name, domain)?,
            upgraded(&next),
            "{name} after the refused downgrade"
        );
    }
    Ok(())
}

/// What `web` says of one wiki: its release, the stand-in's per-release
/// migrations in its database, whether it is down, and its page's code.
fn wiki(name: &str, domain: Option<&str>) -> Result<(String, Vec<String>, bool, u16), Failed> {
    let lab = fleet()?;
    let release = lab.ssh_ok("web", &format!("readlink /srv/bookstack/tenants/{name}"));
    let db = format!("bookstack_{}", name.replace('-', "_"));
    let migrations = lab.ssh_ok(
        "web",
        &format!("mariadb -BN -e 'select version from lab_migrations order by version' {db}"),
    );
    let down = lab
        .ssh(
            "web",
            &format!("test -e /var/lib/bookstack/{name}/storage/framework/down"),
        )
        .status
        .success();
    let page = match domain {
        Some(domain) => super::https("web", domain, "/", "")?.0,
        None => 0,
    };
    Ok((
        release.trim().trim_start_matches("../releases/").to_owned(),
        migrations.lines().map(str::to_owned).collect(),
        down,
        page,
    ))
}

/// The wiki ecole-vive fails its migration: it is rolled back (release,
/// database), back up and serving, and the archived wiki after it is not
/// attempted; mended, both are upgraded.
fn a_bookstack_wiki_whose_migration_fails_is_rolled_back() -> Result<(), Failed> {
    let lab = fleet()?;
    let (active, archived) = (("ecole-vive", "wiki.ecole-vive.example.org"), "velo-cite");
    let (current, migrations, ..) = wiki(active.0, Some(active.1))?;
    assert_eq!(
        migrations.as_slice(),
        std::slice::from_ref(&current),
        "the first migration ran {current}'s"
    );
    let next = clou::lab::artifacts::next_version(&current);
    let file = format!("artifacts/bookstack-{next}.tar.gz");
    let sha = lab.ssh_ok(
        "web",
        &format!(
            "sha256sum {}/{file} | cut -d' ' -f1",
            clou::lab::repo::MOUNT_POINT
        ),
    );
    let pin = [
        format!("bookstack_version={next}"),
        format!("bookstack_url={}", clou::lab::repo::url_of(&file)),
        format!("bookstack_sha256={}", sha.trim()),
    ];
    let apply = || {
        let mut args = vec!["--json", "--limit", "web"];
        for p in &pin {
            args.extend(["-e", p.as_str()]);
        }
        lab.apply(&args)
    };
    lab.ssh_ok(
        "web",
        &format!("touch /var/lib/bookstack/{}/storage/fail-upgrade", active.0),
    );

    let run = apply();
    run.expect_code(1);
    let failed = run
        .events()
        .into_iter()
        .find(|e| e["id"] == format!("bookstack/release:/srv/bookstack/tenants/{}", active.0))
        .unwrap_or_default();
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("rolled back to {current}")),
        "{}",
        run.stdout
    );
    assert!(
        error.contains("Base table or view already exists"),
        "{error}"
    );
    assert_eq!(
        wiki(active.0, Some(active.1))?,
        (current.clone(), vec![current.clone()], false, 200),
        "rolled back: its release, no trace of the failed migration, up and serving"
    );
    assert_eq!(wiki(archived, None)?.0, current, "not attempted");

    lab.ssh_ok(
        "web",
        &format!("rm /var/lib/bookstack/{}/storage/fail-upgrade", active.0),
    );
    apply().expect_code(0);
    assert_eq!(
        wiki(active.0, Some(active.1))?,
        (
            next.clone(),
            vec![current.clone(), next.clone()],
            false,
            200
        )
    );
    let (release, migrations, ..) = wiki(archived, None)?;
    assert_eq!((release, migrations), (next.clone(), vec![current, next]));
    Ok(())
}
