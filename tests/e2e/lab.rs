//! The lab: three hosts, one per Debian release, each checked from the
//! outside over ssh; at the very end ([`LAST`]) torn down, and nothing may
//! be left.

use std::collections::BTreeSet;

use libtest_mimic::Failed;

use crate::{lab, mark_down};

/// In order: the last one takes the lab down.
pub const TESTS: &[(&str, crate::Test)] = &[
    (
        "lab::each_host_boots_its_release_with_systemd_and_sshd",
        each_host_boots_its_release_with_systemd_and_sshd,
    ),
    (
        "lab::each_host_has_its_own_name_and_address",
        each_host_has_its_own_name_and_address,
    ),
    (
        "lab::hosts_have_no_route_out_of_the_lab",
        hosts_have_no_route_out_of_the_lab,
    ),
    (
        "lab::hosts_reach_each_other_by_name",
        hosts_reach_each_other_by_name,
    ),
    (
        "lab::hosts_install_and_upgrade_from_the_lab_repository",
        hosts_install_and_upgrade_from_the_lab_repository,
    ),
    (
        "lab::extra_disk_is_a_block_device_in_the_host",
        extra_disk_is_a_block_device_in_the_host,
    ),
    (
        "lab::status_lists_every_host_up",
        status_lists_every_host_up,
    ),
    (
        "lab::ssh_runs_a_command_on_the_named_host",
        ssh_runs_a_command_on_the_named_host,
    ),
    (
        "lab::inventory_overlay_points_at_the_lab_hosts",
        inventory_overlay_points_at_the_lab_hosts,
    ),
    (
        "lab::up_again_leaves_running_hosts_alone",
        up_again_leaves_running_hosts_alone,
    ),
];

/// Run after every other test: it takes the lab down.
pub const LAST: &[(&str, crate::Test)] = &[(
    "lab::down_leaves_nothing_behind",
    down_leaves_nothing_behind,
)];

const RELEASES: &[(&str, &str)] = &[
    ("alpha", "bullseye"),
    ("bravo", "bookworm"),
    ("charlie", "trixie"),
];

fn each_host_boots_its_release_with_systemd_and_sshd() -> Result<(), Failed> {
    let lab = lab()?;
    for (host, release) in RELEASES {
        let out = lab.ssh_ok(
            host,
            ". /etc/os-release; echo $VERSION_CODENAME; cat /proc/1/comm; \
             systemctl is-system-running --wait; systemctl is-active ssh",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [*release, "systemd", "running", "active"],
            "on {host}"
        );
    }
    Ok(())
}

fn each_host_has_its_own_name_and_address() -> Result<(), Failed> {
    let lab = lab()?;
    let state = lab.state()?;
    let mut seen = BTreeSet::new();
    // The spare lets no lab key in: onboard's test looks at it.
    for h in state.hosts.iter().filter(|h| !h.spare) {
        let out = lab.ssh_ok(
            &h.name,
            "hostname; ip -4 -o addr show dev eth0; readlink /proc/self/ns/net",
        );
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(h.name.as_str()));
        let addr = lines.next().unwrap_or_default();
        assert!(
            addr.contains(&format!(" {}/24 ", h.address)),
            "{}: {addr}",
            h.name
        );
        let netns = lines.next().unwrap_or_default().to_owned();
        assert!(seen.insert(netns), "{} shares a network namespace", h.name);
    }
    let ours = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
    assert!(
        !seen.contains(ours.to_string_lossy().as_ref()),
        "a host uses this machine's namespace"
    );
    Ok(())
}

fn hosts_have_no_route_out_of_the_lab() -> Result<(), Failed> {
    let lab = lab()?;
    for (host, _) in RELEASES {
        let routes = lab.ssh_ok(host, "ip -4 route; ip -6 route | grep -v '^fe80' || true");
        assert!(
            !routes.contains("default"),
            "{host} has a default route:\n{routes}"
        );
        // `ip route get` only asks the kernel's routing table; no packet leaves.
        let out = lab.ssh(host, "ip route get 192.0.2.1");
        assert!(!out.status.success(), "{host} has a route to 192.0.2.1");
        assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
    }
    Ok(())
}

fn hosts_reach_each_other_by_name() -> Result<(), Failed> {
    let lab = lab()?;
    // bash's /dev/tcp: a TCP connection to the peer's sshd, by name.
    let banner = lab.ssh_ok(
        "alpha",
        "timeout 5 bash -c 'exec 3<>/dev/tcp/charlie/22; head -c 4 <&3'",
    );
    assert_eq!(banner, "SSH-");
    Ok(())
}

fn hosts_install_and_upgrade_from_the_lab_repository() -> Result<(), Failed> {
    let lab = lab()?;
    for (host, _) in RELEASES {
        lab.ssh_ok(host, "apt-get -q update");
        // A package mirrored from Debian for this release, with its dependencies.
        lab.ssh_ok(
            host,
            "DEBIAN_FRONTEND=noninteractive apt-get -q -y install sudo",
        );
        assert!(
            lab.ssh_ok(host, "dpkg-query -W -f '${Status}' sudo")
                .contains("install ok installed")
        );
        // The lab's own package, version 1, then the upgrade to version 2.
        lab.ssh_ok(
            host,
            "DEBIAN_FRONTEND=noninteractive apt-get -q -y install clou-lab-hello=1.0-1",
        );
        assert_eq!(
            lab.ssh_ok(host, "cat /run/clou-lab-hello/version").trim(),
            "1.0"
        );
        assert_eq!(
            lab.ssh_ok(host, "systemctl is-active clou-lab-hello")
                .trim(),
            "active"
        );
        let upgradable = lab.ssh_ok(host, "apt list --upgradable 2>/dev/null");
        assert!(
            upgradable.contains("clou-lab-hello/"),
            "{host}: {upgradable}"
        );
        lab.ssh_ok(host, "DEBIAN_FRONTEND=noninteractive apt-get -q -y upgrade");
        assert_eq!(
            lab.ssh_ok(host, "cat /run/clou-lab-hello/version").trim(),
            "2.0"
        );
    }
    Ok(())
}

fn extra_disk_is_a_block_device_in_the_host() -> Result<(), Failed> {
    let lab = lab()?;
    let size = lab.ssh_ok("bravo", "test -b /dev/vdb && blockdev --getsize64 /dev/vdb");
    assert_eq!(size.trim(), (1u64 << 30).to_string());
    // Writable: a filesystem can be made on it from inside the host.
    lab.ssh_ok(
        "bravo",
        "dd if=/dev/zero of=/dev/vdb bs=1M count=1 status=none",
    );
    let out = lab.ssh("alpha", "test -b /dev/vdb");
    assert!(
        !out.status.success(),
        "alpha has no extra disk in the inventory"
    );
    Ok(())
}

fn status_lists_every_host_up() -> Result<(), Failed> {
    let lab = lab()?;
    let out = lab.clou_ok(&["lab", "status", "--json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    // The three hosts, then the spare (root's password in the lab's files).
    assert_eq!(rows.len(), 4, "{out}");
    for ((host, release), row) in RELEASES.iter().zip(&rows) {
        assert_eq!(row["name"], *host);
        assert_eq!(row["release"], *release);
        assert_eq!(row["running"], true);
        assert_eq!(row["ssh"], true);
        assert_eq!(row["spare_password"], serde_json::Value::Null);
    }
    assert_eq!(rows[3]["name"], "delta");
    assert_eq!(rows[3]["ssh"], true);
    let password = rows[3]["spare_password"].as_str().unwrap_or_default();
    let mode = std::fs::metadata(password).map_err(|e| format!("{password}: {e}"))?;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    Ok(())
}

fn ssh_runs_a_command_on_the_named_host() -> Result<(), Failed> {
    let lab = lab()?;
    for (host, release) in RELEASES {
        let out = lab.clou_ok(&[
            "lab",
            "ssh",
            host,
            "--",
            "sh",
            "-c",
            ". /etc/os-release; echo $(hostname) $VERSION_CODENAME",
        ]);
        assert_eq!(out.trim(), format!("{host} {release}"));
    }
    // A host that is not in the lab is refused by name, with a hint.
    let out = lab.clou(&["lab", "ssh", "nosuchhost", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no lab host named \"nosuchhost\""), "{err}");
    Ok(())
}

fn inventory_overlay_points_at_the_lab_hosts() -> Result<(), Failed> {
    let lab = lab()?;
    let inv =
        clou::inventory::Inventory::load(&lab.lab.inventory_path()).map_err(|e| e.to_string())?;
    let prod = clou::inventory::Inventory::load(&lab.inventory).map_err(|e| e.to_string())?;
    let state = lab.state()?;
    assert_eq!(inv.hosts.len(), prod.hosts.len());
    assert_eq!(
        inv.groups.keys().collect::<Vec<_>>(),
        prod.groups.keys().collect::<Vec<_>>()
    );
    for h in &inv.hosts {
        let lab_host = state.host(&h.name).ok_or("host missing from the lab")?;
        assert_eq!(h.address, lab_host.address.to_string());
        assert_eq!(h.release, lab_host.release);
    }
    // Its known_hosts holds each host's real key: OpenSSH, checking strictly
    // against that file only, gets in.
    let known = inv.known_hosts.ok_or("the overlay names no known_hosts")?;
    let key = inv.identity.ok_or("the overlay names no identity")?;
    for h in &inv.hosts {
        let out = clou::lab::openssh(&known, &key, &format!("{}@{}", h.user, h.address))
            .arg("hostname")
            .output()
            .map_err(|e| e.to_string())?;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            h.name,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn up_again_leaves_running_hosts_alone() -> Result<(), Failed> {
    let lab = lab()?;
    let boot_id = |h: &str| lab.ssh_ok(h, "cat /proc/sys/kernel/random/boot_id");
    let before: Vec<String> = lab.hosts().iter().map(|h| boot_id(h)).collect();
    lab.clou_ok(&["lab", "up"]);
    let after: Vec<String> = lab.hosts().iter().map(|h| boot_id(h)).collect();
    assert_eq!(
        before, after,
        "a second `clou lab up` rebooted a running host"
    );
    Ok(())
}

fn down_leaves_nothing_behind() -> Result<(), Failed> {
    let lab = lab()?;
    let state = lab.state()?;
    lab.clou_ok(&["lab", "down", "--purge"]);
    mark_down();
    // Processes: no live systemd-nspawn for any of the lab's machines.
    for h in &state.hosts {
        let pid = h.pid.ok_or("a host had no pid")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = !stat.is_empty()
            && !stat
                .rsplit_once(')')
                .is_some_and(|(_, s)| s.trim_start().starts_with('Z'));
        assert!(!alive, "{} (pid {pid}) still runs", h.name);
    }
    // Mounts: nothing under the lab's directory.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let dir = lab.lab.dir();
    assert!(
        !mounts.contains(dir.to_string_lossy().as_ref()),
        "mounts left under {}",
        dir.display()
    );
    // Links, namespaces, loop devices.
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .map_err(|e| e.to_string())?;
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&state.bridge),
        "bridge {} left",
        state.bridge
    );
    for h in &state.hosts {
        assert!(
            !links.contains(&format!(" {}@", h.veth)) && !links.contains(&format!(" {}:", h.veth))
        );
        assert!(
            !std::path::Path::new("/run/netns").join(&h.netns).exists(),
            "netns {} left",
            h.netns
        );
        for d in &h.disks {
            let dev = d.device.trim_start_matches("/dev/");
            let backing = std::fs::read_to_string(format!("/sys/block/{dev}/loop/backing_file"))
                .unwrap_or_default();
            assert!(
                !backing.contains(&d.image.to_string_lossy().into_owned()),
                "{} still attached",
                d.device
            );
        }
        for cg in &h.cgroups {
            assert!(!cg.exists(), "cgroup {} left", cg.display());
        }
    }
    assert!(!lab.lab.state_path().exists(), "--purge keeps no state");
    Ok(())
}
