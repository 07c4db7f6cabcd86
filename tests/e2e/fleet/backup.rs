//! Backups: borgmatic on a client creates an archive in its own
//! append-only repository on the backup host, with a dump of the host's
//! databases, and the success marker the health check watches is renewed.

use libtest_mimic::Failed;

use super::{Test, fleet};

pub const TESTS: &[(&str, Test)] = &[
    (
        "fleet::backup::a_client_backup_lands_on_the_backup_host",
        a_client_backup_lands_on_the_backup_host,
    ),
    (
        "fleet::backup::a_client_key_cannot_reach_another_repository",
        a_client_key_cannot_reach_another_repository,
    ),
];

const CLIENT: &str = "nextcloud-data";

fn a_client_backup_lands_on_the_backup_host() -> Result<(), Failed> {
    let lab = fleet()?;
    let marker = "stat -c %Y /var/lib/girofle/backup.ok 2>/dev/null || echo 0";
    let before: u64 = lab.ssh_ok(CLIENT, marker).trim().parse()?;
    // A file to find in the archive, in a backed-up directory.
    let proof = lab.ssh_ok(
        CLIENT,
        "mkdir -p /srv/clou-e2e && head -c 64 /dev/urandom | sha256sum | cut -d' ' -f1 | tee /srv/clou-e2e/proof",
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    lab.ssh_ok(CLIENT, "systemctl start borgmatic.service");
    let after: u64 = lab.ssh_ok(CLIENT, marker).trim().parse()?;
    assert!(
        after > before,
        "the marker was renewed: {before} -> {after}"
    );

    // On the backup host itself, with the client's passphrase: the newest
    // archive holds the file, byte for byte.
    let passphrase = lab.ssh_ok(
        CLIENT,
        "sed -n 's/^ *encryption_passphrase: \"\\(.*\\)\"$/\\1/p' /etc/borgmatic/config.yaml",
    );
    let passphrase = passphrase.trim();
    assert_eq!(
        passphrase.len(),
        32,
        "the passphrase is in the client's config"
    );
    let repo = format!("/srv/borg/{CLIENT}");
    let env = format!("BORG_PASSPHRASE='{passphrase}' BORG_RELOCATED_REPO_ACCESS_IS_OK=yes");
    let last = lab.ssh_ok(
        "backup",
        &format!("{env} borg list --last 1 --format '{{archive}}' {repo}"),
    );
    let last = last.trim();
    assert!(last.starts_with(CLIENT), "{last}");
    let restored = lab.ssh_ok(
        "backup",
        &format!("{env} borg extract --stdout {repo}::{last} srv/clou-e2e/proof"),
    );
    assert_eq!(restored, proof);
    // The host's databases are in the archive as a dump (pg_dumpall
    // streamed by borgmatic), not as a running server's files.
    let dump = lab.ssh_ok(
        "backup",
        &format!(
            "{env} borg extract --stdout {repo}::{last} var/lib/borgmatic/postgresql_databases/localhost/all | grep -c 'CREATE DATABASE nextcloud_amap_lyon'"
        ),
    );
    assert_eq!(dump.trim(), "1", "the Nextcloud databases are dumped");
    // The repository is the borg account's, and that account's key for
    // this client may only run an append-only `borg serve` of it.
    let keys = lab.ssh_ok(
        "backup",
        &format!("stat -c %U {repo}; grep -cF 'command=\"borg serve --append-only --restrict-to-repository {repo}\",restrict ' /var/lib/borg/.ssh/authorized_keys"),
    );
    assert_eq!(keys, "borg\n1\n");
    Ok(())
}

/// A client's key is tied to its own repository: asking for another's is
/// refused by the server, whatever the client says.
fn a_client_key_cannot_reach_another_repository() -> Result<(), Failed> {
    let lab = fleet()?;
    let out = lab.ssh(
        CLIENT,
        "BORG_RSH='ssh -i /etc/borgmatic/ssh_key -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=/etc/borgmatic/known_hosts -o StrictHostKeyChecking=accept-new' \
         BORG_PASSPHRASE=x borg list ssh://borg@backup/srv/borg/web",
    );
    assert!(
        !out.status.success(),
        "another client's repository was reachable"
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("not allowed")
            || text.contains("restrict")
            || text.contains("PermissionDenied"),
        "{text}"
    );
    Ok(())
}
