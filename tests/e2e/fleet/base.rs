//! The base role on the eight hosts: the firewall lets in what the hosts'
//! roles declare and refuses the rest, a leaving admin is locked out
//! everywhere, and time sync and security upgrades are set up.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use libtest_mimic::Failed;

use super::{Test, fleet};

pub const TESTS: &[(&str, Test)] = &[
    (
        "fleet::base::the_firewall_lets_in_declared_ports_and_refuses_others",
        the_firewall_lets_in_declared_ports_and_refuses_others,
    ),
    (
        "fleet::base::removing_an_admin_locks_the_account_on_every_host",
        removing_an_admin_locks_the_account_on_every_host,
    ),
    (
        "fleet::base::time_sync_and_security_upgrades_on_every_host",
        time_sync_and_security_upgrades_on_every_host,
    ),
];

/// Whether this machine (on the lab's bridge, in no inventory group)
/// can open a TCP connection to `host:port`.
fn reaches(host: &str, port: u16) -> Result<bool, Failed> {
    let address = SocketAddr::from((fleet()?.address(host)?, port));
    Ok(TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok())
}

/// Whether `from` (a lab host) can open a TCP connection to `to:port`
/// within 3 s (bash's /dev/tcp: every host has bash, not every host curl).
fn host_reaches(from: &str, to: &str, port: u16) -> Result<bool, Failed> {
    let out = fleet()?.ssh(
        from,
        &format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{to}/{port}' && echo connected"),
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "connected")
}

fn the_firewall_lets_in_declared_ports_and_refuses_others() -> Result<(), Failed> {
    let lab = fleet()?;
    // Declared for everyone: the web role's 80 and 443, and SSH.
    assert!(reaches("web", 443)?, "web:443 (role web) is open");
    assert!(reaches("nextcloud-data", 80)?, "nextcloud-data:80 is open");
    assert!(reaches("backup", 22)?, "backup:22 (SSH) is open");
    // node_exporter is declared for the monitoring group (web) only.
    assert!(
        host_reaches("web", "nextcloud-data", 9100)?,
        "the monitoring host scrapes node_exporter"
    );
    assert!(
        !host_reaches("mail-exit", "nextcloud-data", 9100)?,
        "mail-exit is not the monitoring: node_exporter refuses it"
    );
    assert!(!reaches("nextcloud-data", 9100)?, "nor this machine");
    // Mail relaying is declared for the fleet only.
    assert!(
        host_reaches_smtp("forums", "mail-exit")?,
        "forums may hand mail to mail-exit"
    );
    assert!(
        !reaches("mail-exit", 25)?,
        "this machine is not in the fleet"
    );
    // A port nobody declared, with a server listening on every address:
    // it answers on the host itself, and the firewall drops it from outside.
    lab.ssh_ok(
        "nextcloud-data",
        "systemd-run --unit=clou-e2e-probe --quiet php -S 0.0.0.0:8081 -t /tmp && sleep 1 && curl -s -o /dev/null --max-time 3 http://127.0.0.1:8081/",
    );
    let outside = reaches("nextcloud-data", 8081);
    let neighbour = host_reaches("web", "nextcloud-data", 8081);
    lab.ssh_ok("nextcloud-data", "systemctl stop clou-e2e-probe");
    assert!(!outside?, "8081 is refused from outside");
    assert!(!neighbour?, "8081 is refused from another host");
    // The ruleset itself says where each port comes from.
    let rules = lab.ssh_ok("nextcloud-data", "nft list table inet girofle");
    assert!(rules.contains("policy drop"), "{rules}");
    assert!(
        rules.contains(&format!(
            "ip saddr {} tcp dport 9100 accept comment \"base\"",
            lab.address("web")?
        )),
        "{rules}"
    );
    Ok(())
}

/// Whether `from` can open an SMTP session on `to`:25 (the banner).
fn host_reaches_smtp(from: &str, to: &str) -> Result<bool, Failed> {
    let out = fleet()?.ssh(
        from,
        &format!("timeout 5 bash -c 'exec 3<>/dev/tcp/{to}/25 && head -c 3 <&3'"),
    );
    Ok(String::from_utf8_lossy(&out.stdout) == "220")
}

fn removing_an_admin_locks_the_account_on_every_host() -> Result<(), Failed> {
    let lab = fleet()?;
    let hosts = lab.hosts();
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    crate::apply::an_admin_leaves(lab, &hosts)
}

fn time_sync_and_security_upgrades_on_every_host() -> Result<(), Failed> {
    let lab = fleet()?;
    for host in lab.hosts() {
        let out = lab.ssh_ok(
            &host,
            "systemctl is-active chrony nftables; \
             apt-config dump Unattended-Upgrade::Origins-Pattern; \
             apt-config dump APT::Periodic::Unattended-Upgrade",
        );
        assert!(out.starts_with("active\nactive\n"), "{host}: {out}");
        assert!(
            out.contains("codename=${distro_codename}-security,label=Debian-Security"),
            "{host}: security updates only: {out}"
        );
        assert!(
            out.contains("APT::Periodic::Unattended-Upgrade \"1\";"),
            "{host}: {out}"
        );
        // chrony talks NTP even where it may not steer the clock (the lab).
        let sources = lab.ssh_ok(&host, "chronyc -n sources | head -1");
        assert!(sources.contains("MS Name/IP address"), "{host}: {sources}");
    }
    Ok(())
}
