//! The lab network: one bridge on this machine, and for each host its own
//! network namespace joined to the bridge by a veth pair.
//!
//! The namespaces have no default route and this machine does not forward
//! for them, so lab hosts reach each other and this machine, nothing else.

use std::net::Ipv4Addr;
use std::process::Command;

use super::LabError;
use crate::process;

/// A /24 subnet for one lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    base: [u8; 3],
}

impl Subnet {
    /// Parses `a.b.c.0/24`.
    pub fn parse(text: &str) -> Result<Subnet, LabError> {
        let bad = || LabError::BadSubnet(text.to_owned());
        let (addr, len) = text.split_once('/').ok_or_else(bad)?;
        if len != "24" {
            return Err(bad());
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let [a, b, c, d] = addr.octets();
        if d != 0 || !addr.is_private() {
            return Err(bad());
        }
        Ok(Subnet { base: [a, b, c] })
    }

    /// The address of host number `n` (0 is this machine, on the bridge).
    pub fn address(&self, n: u8) -> Ipv4Addr {
        let [a, b, c] = self.base;
        Ipv4Addr::new(a, b, c, n)
    }

    /// The bridge's own address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.address(1)
    }

    /// Address of the `index`th host of the lab (0-based): .11, .12, ...
    pub fn host(&self, index: usize) -> Result<Ipv4Addr, LabError> {
        u8::try_from(index + 11)
            .ok()
            .filter(|n| *n < 255)
            .map(|n| self.address(n))
            .ok_or(LabError::TooManyHosts)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.base;
        write!(f, "{a}.{b}.{c}.0/24")
    }
}

fn ip() -> Command {
    Command::new("ip")
}

fn link_exists(name: &str) -> bool {
    process::run(ip().args(["link", "show", "dev", name])).is_ok()
}

/// Creates the bridge with the gateway address, if it is not there.
pub fn ensure_bridge(bridge: &str, subnet: &Subnet) -> Result<(), LabError> {
    if !link_exists(bridge) {
        process::run(ip().args(["link", "add", bridge, "type", "bridge"]))?;
        let addr = format!("{}/24", subnet.gateway());
        process::run(ip().args(["addr", "add", &addr, "dev", bridge]))?;
    }
    process::run(ip().args(["link", "set", bridge, "up"]))?;
    Ok(())
}

/// Removes the bridge if it exists.
pub fn remove_bridge(bridge: &str) -> Result<(), LabError> {
    if link_exists(bridge) {
        process::run(ip().args(["link", "del", bridge]))?;
    }
    Ok(())
}

/// Whether a named network namespace exists.
pub fn netns_exists(netns: &str) -> bool {
    std::path::Path::new("/run/netns").join(netns).exists()
}

/// Creates the host's namespace and its link to the bridge: `eth0` inside
/// with the host's address, `veth` outside on the bridge.
pub fn ensure_host_link(
    netns: &str,
    veth: &str,
    bridge: &str,
    address: Ipv4Addr,
) -> Result<(), LabError> {
    if !netns_exists(netns) {
        process::run(ip().args(["netns", "add", netns]))?;
    }
    if !link_exists(veth) {
        process::run(ip().args([
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ]))?;
    }
    process::run(ip().args(["link", "set", veth, "master", bridge, "up"]))?;
    let inside = |args: &[&str]| process::run(ip().args(["-n", netns]).args(args));
    let cidr = format!("{address}/24");
    let current =
        process::stdout(ip().args(["-n", netns, "-4", "-o", "addr", "show", "dev", "eth0"]))?;
    if !current.contains(&format!(" {cidr} ")) {
        inside(&["addr", "add", &cidr, "dev", "eth0"])?;
    }
    inside(&["link", "set", "eth0", "up"])?;
    inside(&["link", "set", "lo", "up"])?;
    Ok(())
}

/// Removes the host's namespace (its veth pair goes with it).
pub fn remove_host_link(netns: &str, veth: &str) -> Result<(), LabError> {
    if link_exists(veth) {
        process::run(ip().args(["link", "del", veth]))?;
    }
    if netns_exists(netns) {
        process::run(ip().args(["netns", "del", netns]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_private_slash_24() {
        let s = Subnet::parse("10.99.0.0/24").expect("valid");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(s.host(0).expect("first"), Ipv4Addr::new(10, 99, 0, 11));
        assert_eq!(s.to_string(), "10.99.0.0/24");
    }

    #[test]
    fn refuses_public_or_odd_subnets() {
        for bad in ["8.8.8.0/24", "10.99.0.0/16", "10.99.0.5/24", "nonsense"] {
            assert!(Subnet::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_subnet_holds_at_most_244_hosts() {
        let s = Subnet::parse("10.99.0.0/24").expect("valid");
        assert!(s.host(243).is_ok());
        assert!(s.host(244).is_err());
    }
}
