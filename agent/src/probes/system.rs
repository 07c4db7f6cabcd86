//! The `system` probe: load, memory, uptime, a pending reboot and pending
//! security updates.
//!
//! Load is judged per CPU over 15 minutes (a short peak is not a problem),
//! except in a container, where `/proc/loadavg` is the whole machine's:
//! every container on it would report the same load as its own (the lab's
//! hosts all warned at once while another lab converged), so there it is
//! only shown.
//! memory by `MemAvailable`, the kernel's own estimate of what programs can
//! still get without swapping. Security updates are counted with a
//! simulated `apt-get upgrade` against the apt lists as they are (no
//! `apt-get update`: a health check changes nothing).

use clou_protocol::health::{Finding, Severity, Thresholds};

use super::{Probe, ProbeCtx};
use crate::system::Cmd;

/// The `system` probe.
#[derive(Debug, Clone, Copy)]
pub struct SystemProbe;

/// The 15-minute load average from `/proc/loadavg`.
pub fn load15(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().nth(2)?.parse().ok()
}

/// Online CPUs from `/sys/devices/system/cpu/online` (`0-3,6`).
pub fn cpus(online: &str) -> usize {
    online
        .trim()
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|range| match range.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

/// `(MemTotal, MemAvailable)` in kB from `/proc/meminfo`.
pub fn memory(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Packages a simulated upgrade would install, and how many of them come
/// from a security archive (`Inst pkg [old] (new Debian-Security:12/stable-security [amd64])`).
pub fn upgrades(simulation: &str) -> (usize, usize) {
    let inst: Vec<&str> = simulation
        .lines()
        .filter(|l| l.starts_with("Inst "))
        .collect();
    let security = inst
        .iter()
        .filter(|l| l.contains("-security") || l.contains("Debian-Security"))
        .count();
    (inst.len(), security)
}

/// The load finding: `load` (15 minutes) on `n` CPUs, judged against `t`
/// unless this host is a `container` (its kind), where it is the machine's.
pub fn load_finding(load: f64, n: usize, container: Option<&str>, t: &Thresholds) -> Finding {
    let per_cpu = load / n as f64;
    let text = format!("load {load:.2} over 15 minutes on {n} CPUs ({per_cpu:.2} per CPU)");
    let (severity, text) = match container {
        Some(kind) => (
            Severity::Ok,
            format!("{text}, the whole machine's: this host is a {kind} container"),
        ),
        None if per_cpu >= t.load_crit_per_cpu => (Severity::Crit, text),
        None if per_cpu >= t.load_warn_per_cpu => (Severity::Warn, text),
        None => (Severity::Ok, text),
    };
    Finding::new("system", "load", severity, text)
        .fact("load15", format!("{load:.2}"))
        .fact("cpus", n)
}

impl Probe for SystemProbe {
    fn name(&self) -> &'static str {
        "system"
    }

    fn run(&self, ctx: &ProbeCtx<'_>) -> Vec<Finding> {
        let read = |path: &str| ctx.sys.read_text(path);
        let t = &ctx.settings.thresholds;
        let mut findings = Vec::new();

        let n = read("/sys/devices/system/cpu/online")
            .map(|s| cpus(&s))
            .unwrap_or(1);
        if let Some(load) = read("/proc/loadavg").and_then(|s| load15(&s)) {
            // systemd writes what kind of container it runs in there.
            let container = read("/run/systemd/container")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
            findings.push(load_finding(load, n, container.as_deref(), t));
        }

        if let Some((total, available)) = read("/proc/meminfo").and_then(|s| memory(&s)) {
            let percent = if total == 0 {
                100.0
            } else {
                available as f64 * 100.0 / total as f64
            };
            let severity = if percent <= t.mem_crit_available_percent {
                Severity::Crit
            } else if percent <= t.mem_warn_available_percent {
                Severity::Warn
            } else {
                Severity::Ok
            };
            findings.push(
                Finding::new(
                    "system",
                    "memory",
                    severity,
                    format!(
                        "{} MB of {} MB available ({percent:.0} %)",
                        available / 1024,
                        total / 1024
                    ),
                )
                .fact("available_percent", format!("{percent:.1}")),
            );
        }

        if let Some(uptime) =
            read("/proc/uptime").and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        {
            let days = uptime / 86_400.0;
            findings.push(
                Finding::new(
                    "system",
                    "uptime",
                    Severity::Ok,
                    format!("up {days:.1} days"),
                )
                .fact("uptime_seconds", uptime as u64),
            );
        }

        // Debian packages that need a reboot (kernel, libc...) say so here.
        if let Ok(Some(_)) = ctx.sys.stat(std::path::Path::new("/run/reboot-required")) {
            let why = read("/run/reboot-required.pkgs").unwrap_or_default();
            let packages: Vec<&str> = why.lines().collect();
            findings.push(Finding::new(
                "system",
                "reboot",
                Severity::Warn,
                if packages.is_empty() {
                    "a reboot is required to finish an upgrade".to_owned()
                } else {
                    format!(
                        "a reboot is required to finish upgrading {}",
                        packages.join(", ")
                    )
                },
            ));
        }

        let simulate =
            Cmd::new(["apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade"]).env("LC_ALL", "C");
        match ctx.sys.run(&simulate) {
            Ok(out) if out.success() => {
                let (all, security) = upgrades(&out.stdout_text());
                let severity = if security > 0 {
                    Severity::Warn
                } else {
                    Severity::Ok
                };
                findings.push(
                    Finding::new(
                        "system",
                        "updates",
                        severity,
                        if security > 0 {
                            format!("{security} security updates pending ({all} updates in all): deploy them")
                        } else {
                            format!("no security update pending ({all} other updates)")
                        },
                    )
                    .fact("security_updates", security)
                    .fact("updates", all),
                );
            }
            Ok(out) => findings.push(Finding::new(
                "system",
                "updates",
                Severity::Unknown,
                format!("cannot count pending updates: {}", out.tail()),
            )),
            Err(err) => findings.push(Finding::new(
                "system",
                "updates",
                Severity::Unknown,
                format!("cannot run apt-get: {err}"),
            )),
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(load15("1.21 3.17 2.41 1/218 1431\n"), Some(2.41));
        assert_eq!(cpus("0-1\n"), 2);
        assert_eq!(cpus("0-3,6,8-9\n"), 7);
        assert_eq!(cpus(""), 1);
        let meminfo = include_str!("testdata/system/meminfo-bookworm-lab-web.txt");
        let (total, available) = memory(meminfo).unwrap();
        assert!(total > available && available > 0);
    }

    #[test]
    fn load_is_judged_per_cpu_except_in_a_container() {
        let t = Thresholds::default();
        // /proc/loadavg read on a lab host while the lab converged: 4.80.
        assert_eq!(load_finding(4.8, 2, None, &t).severity, Severity::Warn);
        assert_eq!(load_finding(8.0, 2, None, &t).severity, Severity::Crit);
        assert_eq!(load_finding(3.9, 2, None, &t).severity, Severity::Ok);
        let shared = load_finding(9.0, 2, Some("systemd-nspawn"), &t);
        assert_eq!(shared.severity, Severity::Ok);
        assert!(
            shared.message.contains("whole machine's") && shared.message.contains("systemd-nspawn"),
            "{}",
            shared.message
        );
    }

    #[test]
    fn security_updates_are_counted_from_a_real_simulation() {
        let sim = include_str!("testdata/system/apt-get-s-upgrade-bookworm-devmachine.txt");
        // Counted independently with grep when the file was captured.
        assert_eq!(upgrades(sim), (121, 78));
    }
}
