//! Checks made before the socket is touched, so that a mistyped command fails at once with one line
//! that says how to mend it. The daemon checks everything again; these catch only what is certain.

use control::proto::{ConfigDoc, NetworkSpec, PeerSpec, PortSpec, PortType, StaticFdb, UplinkSpec};
use control::text;
use std::net::{IpAddr, Ipv4Addr};

/// Longest network name.
pub(crate) const NETWORK_NAME_MAX: usize = 64;
/// Longest port name (it is also the default device name, so IFNAMSIZ - 1).
pub(crate) const PORT_NAME_MAX: usize = 15;
/// Longest Linux interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
/// Largest VXLAN network identifier (24 bits).
pub(crate) const VNI_MAX: u32 = control::proto::VNI_MAX;
/// Smallest MTU an IPv4 interface may have.
const MTU_MIN: u32 = 68;
/// Largest MTU a Linux device takes.
const MTU_MAX: u32 = 65535;
/// Longest `stats --watch` interval, in seconds.
pub(crate) const INTERVAL_MAX_SECS: u64 = 3600;
/// UDP port of VXLAN when the uplink names none (IANA).
pub(crate) const VXLAN_PORT_DEFAULT: u16 = 4789;

/// Checks a network name.
pub(crate) fn network_name(s: &str) -> Result<(), String> {
    text::check_name("network", s, NETWORK_NAME_MAX)
}

/// Checks a port name.
pub(crate) fn port_name(s: &str) -> Result<(), String> {
    text::check_name("port", s, PORT_NAME_MAX)
}

/// Parses a MAC address and returns it in the canonical `aa:bb:cc:dd:ee:ff` form.
pub(crate) fn mac(s: &str) -> Result<String, String> {
    text::parse_mac(s).map(|m| text::format_mac(&m))
}

/// Checks a VXLAN network identifier.
pub(crate) fn vni(n: u32) -> Result<(), String> {
    if n == 0 || n > VNI_MAX {
        return Err(format!("VNI {n} is out of range; use 1 to {VNI_MAX}"));
    }
    Ok(())
}

/// Checks a Linux interface name the way the kernel does (`dev_valid_name`).
fn ifname(s: &str) -> Result<(), String> {
    let bad_char = s
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if s.is_empty() || s.len() > IFNAME_MAX || s == "." || s == ".." || bad_char {
        return Err(format!(
            "'{s}' is not a valid interface name; use 1 to {IFNAME_MAX} characters without '/', ':' or spaces"
        ));
    }
    Ok(())
}

/// Parses an IPv4 subnet `a.b.c.d/len`.
fn subnet(s: &str) -> Result<(Ipv4Addr, u8), String> {
    text::parse_cidr(s)
}

/// Parses an IPv4 address.
fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an IPv4 address; write e.g. 10.1.0.1"))
}

/// The netmask of a prefix length (at most 32) as a number.
fn mask(len: u8) -> u32 {
    text::prefix_mask(len)
}

/// Whether `addr` lies in `net/len`.
fn contains((net, len): (Ipv4Addr, u8), addr: Ipv4Addr) -> bool {
    text::same_prefix(net, addr, len)
}

/// Checks a network's settings (from `network create` or a configuration document).
pub(crate) fn network_spec(spec: &NetworkSpec) -> Result<(), String> {
    network_name(&spec.name)?;
    let net = spec.subnet.as_deref().map(subnet).transpose()?;
    if let Some(gw) = spec.gateway.as_deref() {
        let addr = ipv4(gw)?;
        if let Some(net @ (base, len)) = net {
            if !contains(net, addr) {
                return Err(format!(
                    "gateway {addr} is outside subnet {base}/{len}; pick an address inside it"
                ));
            }
        }
    }
    if let Some(n) = spec.vni {
        vni(n)?;
    }
    if spec.encrypted && spec.vni.is_none() {
        return Err(
            "an encrypted network needs a VNI: only overlay traffic is encrypted; add --vni N"
                .to_string(),
        );
    }
    if spec.esp_encap.is_some() && !spec.encrypted {
        return Err(
            "--esp-encap (esp_encap) chooses how ESP travels and needs an encrypted network; add --encrypted"
                .to_string(),
        );
    }
    // Only turning learning off is refused: `true` is the default and harmless anywhere.
    if spec.learn_remote == Some(false) && spec.vni.is_none() {
        return Err(
            "--no-learn-remote (learn_remote false) needs a VNI: only overlay networks learn remote MACs; add --vni N"
                .to_string(),
        );
    }
    Ok(())
}

/// Checks a `--vxlan-port` value and narrows it to a UDP port.
pub(crate) fn vxlan_port(n: u32) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!(
            "VXLAN port {n} is out of range; use 1 to 65535 (the standard port is {VXLAN_PORT_DEFAULT})"
        )),
    }
}

/// Checks that an address can belong to one host: not 0.0.0.0, multicast or 255.255.255.255.
fn unicast(what: &str, addr: Ipv4Addr) -> Result<(), String> {
    let kind = if addr.is_unspecified() {
        "the unspecified address"
    } else if addr.is_multicast() {
        "a multicast address"
    } else if addr.is_broadcast() {
        "the broadcast address"
    } else {
        return Ok(());
    };
    Err(format!(
        "{what} {addr} is {kind}; give one host's unicast IPv4 address"
    ))
}

/// Parses a remote VTEP's address: an IPv4 unicast address.
pub(crate) fn vtep(s: &str) -> Result<Ipv4Addr, String> {
    let addr: Ipv4Addr = s.parse().map_err(|_| {
        format!(
            "'{s}' is not an IPv4 address; give the remote VTEP's underlay address, e.g. 192.0.2.7"
        )
    })?;
    unicast("VTEP", addr)?;
    Ok(addr)
}

/// Checks keying material for `key add`: 40 or 72 hex digits (RFC 4106: a 16- or 32-byte AES
/// key, then a 4-byte salt). The message never repeats the material.
pub(crate) fn key_material(hex: &str) -> Result<(), String> {
    let h = hex.trim();
    let h = h.strip_prefix("0x").unwrap_or(h);
    if (h.len() == 40 || h.len() == 72) && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("--key must be 40 or 72 hex digits (RFC 4106: a 16- or 32-byte AES key, then a 4-byte salt), e.g. from: od -An -tx1 -N20 /dev/urandom | tr -d ' \\n'".into())
    }
}

/// Checks a peer (from `peer add`/`peer rm` or a configuration document).
pub(crate) fn peer_spec(peer: &PeerSpec) -> Result<(), String> {
    network_name(&peer.network)?;
    vtep(&peer.vtep).map(drop)
}

/// Which reserved address of `addr/len` `addr` is, if any: a prefix up to /30 keeps its first
/// (network) and last (broadcast) addresses from hosts; /31 and /32 have none.
fn reserved_in_prefix(addr: Ipv4Addr, len: u8) -> Option<&'static str> {
    if len > 30 {
        return None;
    }
    let host = u32::from(addr) & !mask(len);
    if host == 0 {
        Some("network")
    } else if host == !mask(len) {
        Some("broadcast")
    } else {
        None
    }
}

/// Parses an interface address `a.b.c.d/len` (len 1 to 32): a unicast address that is not the
/// network or broadcast address of its prefix.
pub(crate) fn host_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || {
        format!(
            "'{s}' is not an IPv4 address with a prefix length; write address/prefix, e.g. 192.168.1.10/24"
        )
    };
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(1..=32).contains(&len) {
        return Err(format!(
            "prefix length {len} in '{s}' is out of range; use 1 to 32"
        ));
    }
    unicast("address", addr)?;
    if let Some(which) = reserved_in_prefix(addr, len) {
        return Err(format!(
            "{addr} is the {which} address of its prefix /{len}; give the host's own address, e.g. {}/{len}",
            Ipv4Addr::from((u32::from(addr) & mask(len)) + 1)
        ));
    }
    Ok((addr, len))
}

/// Checks the uplink's settings (from `uplink set` or a configuration document).
pub(crate) fn uplink_spec(spec: &UplinkSpec) -> Result<(), String> {
    port_name(&spec.port)?;
    let (addr, len) = host_cidr(&spec.ip)?;
    if let Some(gw) = spec.gateway.as_deref() {
        let gw = ipv4(gw)?;
        unicast("gateway", gw)?;
        if !contains((addr, len), gw) {
            let net = Ipv4Addr::from(u32::from(addr) & mask(len));
            return Err(format!(
                "gateway {gw} is outside the uplink's prefix {net}/{len}; pick an address inside it"
            ));
        }
        if gw == addr {
            return Err(format!(
                "gateway {gw} is the uplink's own address; give the next hop's address"
            ));
        }
        if let Some(which) = reserved_in_prefix(gw, len) {
            return Err(format!(
                "gateway {gw} is the {which} address of the uplink's prefix; give the next hop's address"
            ));
        }
    }
    if spec.vxlan_port == Some(0) {
        return Err(vxlan_port(0).unwrap_err());
    }
    if let Some(m) = spec.mac.as_deref() {
        let bytes = text::parse_mac(m)?;
        if bytes[0] & 1 != 0 || bytes == [0; 6] {
            return Err(format!(
                "uplink MAC {m} is not a unicast address; use one whose first byte is even, e.g. 02:00:00:00:00:01"
            ));
        }
    }
    Ok(())
}

/// Checks a port's settings (from `port add` or a configuration document).
/// The parent and VID of a subinterface name `PARENT.VID`, if the name has that shape.
pub(crate) fn vlan_subinterface(name: &str) -> Option<(&str, u16)> {
    text::vlan_subinterface(name)
}

pub(crate) fn port_spec(spec: &PortSpec) -> Result<(), String> {
    port_name(&spec.name)?;
    if spec.kind == PortType::Vlan {
        let Some((_, vid)) = vlan_subinterface(&spec.name) else {
            return Err(format!(
                "a VLAN subinterface is named PARENT.VID (e.g. uplink.10), not '{}'",
                spec.name
            ));
        };
        if !(1..=4094).contains(&vid) {
            return Err(format!("VLAN id {vid} is out of range; use 1 to 4094"));
        }
    }
    if let Some(i) = spec.ifname.as_deref() {
        ifname(i)?;
    }
    if spec.queues == Some(0) {
        return Err("a port needs at least one queue; use --queues 1 or more".to_string());
    }
    if let Some(net) = spec.network.as_deref() {
        network_name(net)?;
    }
    if let Some(mtu) = spec.mtu {
        if !(MTU_MIN..=MTU_MAX).contains(&mtu) {
            return Err(format!(
                "MTU {mtu} is out of range; use {MTU_MIN} to {MTU_MAX}"
            ));
        }
    }
    if let Some(ns) = spec.netns.as_deref() {
        if ns.is_empty() || ns.chars().any(char::is_control) {
            return Err(format!(
                "'{}' is not a network namespace; give a name under /run/netns or a path",
                ns.escape_default()
            ));
        }
    }
    Ok(())
}

/// Checks a static MAC table entry (from `fdb add` or a configuration document).
pub(crate) fn static_fdb(entry: &StaticFdb) -> Result<(), String> {
    network_name(&entry.network)?;
    mac(&entry.mac)?;
    match (entry.port.as_deref(), entry.vtep.as_deref()) {
        (Some(p), None) => port_name(p),
        (None, Some(v)) => v
            .parse::<IpAddr>()
            .map(drop)
            .map_err(|_| format!("'{v}' is not an IP address; give the remote VTEP's address")),
        _ => Err("say where the MAC lives with exactly one of --port P or --vtep IP".to_string()),
    }
}

/// Checks every object in a configuration document; the error names the offending entry.
pub(crate) fn config_doc(doc: &ConfigDoc) -> Result<(), String> {
    for (i, n) in doc.networks.iter().enumerate() {
        network_spec(n).map_err(|e| format!("networks[{i}]: {e}"))?;
    }
    for (i, p) in doc.ports.iter().enumerate() {
        port_spec(p).map_err(|e| format!("ports[{i}]: {e}"))?;
    }
    for (i, f) in doc.fdb.iter().enumerate() {
        static_fdb(f).map_err(|e| format!("fdb[{i}]: {e}"))?;
    }
    if let Some(u) = &doc.uplink {
        uplink_spec(u).map_err(|e| format!("uplink: {e}"))?;
    }
    for (i, p) in doc.peers.iter().enumerate() {
        peer_spec(p).map_err(|e| format!("peers[{i}]: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::proto::PortType;

    fn net(name: &str) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            subnet: None,
            gateway: None,
            vni: None,
            encrypted: false,
            esp_encap: None,
            mac_limit: None,
            aging_secs: None,
            learn_remote: None,
            internal: false,
            scope: None,
        }
    }

    fn port(name: &str) -> PortSpec {
        PortSpec {
            name: name.into(),
            kind: PortType::Tap,
            ifname: None,
            queues: None,
            network: None,
            mtu: None,
            netns: None,
            mac_limit: None,
        }
    }

    fn fdb(port: Option<&str>, vtep: Option<&str>) -> StaticFdb {
        StaticFdb {
            network: "blue".into(),
            mac: "02:00:00:00:00:01".into(),
            port: port.map(Into::into),
            vtep: vtep.map(Into::into),
            origin: None,
        }
    }

    #[test]
    fn vni_must_fit_24_bits_and_not_be_zero() {
        assert!(vni(1).is_ok());
        assert!(vni(VNI_MAX).is_ok());
        assert_eq!(
            vni(0).unwrap_err(),
            "VNI 0 is out of range; use 1 to 16777215"
        );
        assert!(vni(VNI_MAX + 1).is_err());
    }

    #[test]
    fn encrypted_network_needs_a_vni() {
        let mut n = net("blue");
        n.encrypted = true;
        assert!(network_spec(&n).unwrap_err().contains("--vni"));
        n.vni = Some(100);
        assert!(network_spec(&n).is_ok());
    }

    #[test]
    fn network_names_are_limited_to_64_characters() {
        assert!(network_spec(&net(&"n".repeat(64))).is_ok());
        assert!(network_spec(&net(&"n".repeat(65))).is_err());
        assert!(network_spec(&net("bad name")).is_err());
    }

    #[test]
    fn subnet_and_gateway_must_parse_and_agree() {
        let mut n = net("blue");
        n.subnet = Some("10.1.0.0/24".into());
        n.gateway = Some("10.1.0.1".into());
        assert!(network_spec(&n).is_ok());
        n.gateway = Some("10.2.0.1".into());
        assert_eq!(
            network_spec(&n).unwrap_err(),
            "gateway 10.2.0.1 is outside subnet 10.1.0.0/24; pick an address inside it"
        );
        n.gateway = Some("10.1.0".into());
        assert!(network_spec(&n)
            .unwrap_err()
            .contains("not an IPv4 address"));
        n.gateway = None;
        for bad in [
            "10.1.0.0",
            "10.1.0.0/33",
            "10.1.0/24",
            "fd00::/64",
            "10.1.0.0/x",
        ] {
            n.subnet = Some(bad.into());
            assert!(
                network_spec(&n).unwrap_err().contains("not an IPv4 subnet"),
                "{bad}"
            );
        }
        n.subnet = Some("0.0.0.0/0".into());
        n.gateway = Some("192.0.2.1".into());
        assert!(network_spec(&n).is_ok());
    }

    #[test]
    fn port_names_are_limited_to_15_characters() {
        assert!(port_spec(&port("p23456789012345")).is_ok());
        assert!(port_spec(&port("p234567890123456")).is_err());
    }

    #[test]
    fn port_settings_are_range_checked() {
        let mut p = port("tap0");
        p.queues = Some(0);
        assert!(port_spec(&p).is_err());
        p.queues = Some(4);
        p.mtu = Some(67);
        assert!(port_spec(&p).is_err());
        p.mtu = Some(9000);
        p.ifname = Some("eth0:1".into());
        assert!(port_spec(&p).is_err());
        p.ifname = Some("enp1s0f0".into());
        p.network = Some("bad net".into());
        assert!(port_spec(&p).is_err());
        p.network = Some("blue".into());
        p.netns = Some(String::new());
        assert!(port_spec(&p).is_err());
        p.netns = Some("/var/run/netns/ns1".into());
        assert!(port_spec(&p).is_ok());
    }

    #[test]
    fn macs_are_checked_and_made_canonical() {
        assert_eq!(mac("02-42-AC-11-00-02").unwrap(), "02:42:ac:11:00:02");
        assert!(mac("02:42:ac:11:00").is_err());
    }

    #[test]
    fn static_entry_needs_exactly_one_of_port_and_vtep() {
        assert!(static_fdb(&fdb(Some("tap0"), None)).is_ok());
        assert!(static_fdb(&fdb(None, Some("192.0.2.7"))).is_ok());
        assert!(static_fdb(&fdb(None, Some("2001:db8::7"))).is_ok());
        assert!(static_fdb(&fdb(None, None))
            .unwrap_err()
            .contains("exactly one"));
        assert!(static_fdb(&fdb(Some("tap0"), Some("192.0.2.7")))
            .unwrap_err()
            .contains("exactly one"));
        assert!(static_fdb(&fdb(None, Some("host.example"))).is_err());
    }

    fn uplink(ip: &str, gateway: Option<&str>) -> UplinkSpec {
        UplinkSpec {
            port: "up0".into(),
            ip: ip.into(),
            gateway: gateway.map(Into::into),
            vxlan_port: None,
            mac: None,
        }
    }

    fn peer(network: &str, vtep: &str) -> PeerSpec {
        PeerSpec {
            network: network.into(),
            vtep: vtep.into(),
            origin: None,
        }
    }

    #[test]
    fn no_learn_remote_needs_a_vni() {
        let mut n = net("blue");
        n.learn_remote = Some(false);
        assert!(network_spec(&n).unwrap_err().contains("needs a VNI"));
        n.vni = Some(7);
        assert!(network_spec(&n).is_ok());
        // Learning on is the default, so saying so is fine anywhere.
        n.vni = None;
        n.learn_remote = Some(true);
        assert!(network_spec(&n).is_ok());
    }

    #[test]
    fn uplink_address_is_an_ipv4_host_address_with_a_prefix() {
        for good in [
            "192.168.1.10/24",
            "10.0.0.1/8",
            "10.0.0.1/30",
            "10.0.0.2/30",
            "10.0.0.0/31",
            "10.0.0.1/31",
            "10.0.0.0/32",
            "192.0.2.255/32",
            "1.2.3.4/1",
        ] {
            assert_eq!(host_cidr(good).map(drop), Ok(()), "{good}");
        }
        for bad in [
            "192.168.1.10",
            "192.168.1.10/",
            "192.168.1/24",
            "fd00::1/64",
            "192.168.1.10/x",
            "192.168.1.10/-1",
            "192.168.1.10/300",
        ] {
            assert!(
                host_cidr(bad)
                    .unwrap_err()
                    .contains("is not an IPv4 address with a prefix length"),
                "{bad}"
            );
        }
        assert_eq!(
            host_cidr("192.168.1.10/0").unwrap_err(),
            "prefix length 0 in '192.168.1.10/0' is out of range; use 1 to 32"
        );
        assert!(host_cidr("192.168.1.10/33")
            .unwrap_err()
            .contains("use 1 to 32"));
        assert_eq!(
            host_cidr("192.168.1.0/24").unwrap_err(),
            "192.168.1.0 is the network address of its prefix /24; give the host's own address, e.g. 192.168.1.1/24"
        );
        assert!(host_cidr("192.168.1.255/24")
            .unwrap_err()
            .starts_with("192.168.1.255 is the broadcast address"));
        assert!(host_cidr("10.0.0.3/30")
            .unwrap_err()
            .contains("broadcast address"));
        assert!(host_cidr("0.0.0.0/32").unwrap_err().contains("unspecified"));
        assert!(host_cidr("224.0.0.1/32").unwrap_err().contains("multicast"));
        assert!(host_cidr("255.255.255.255/32")
            .unwrap_err()
            .contains("broadcast"));
    }

    #[test]
    fn uplink_gateway_is_a_host_inside_the_prefix() {
        assert!(uplink_spec(&uplink("192.168.1.10/24", Some("192.168.1.1"))).is_ok());
        assert!(uplink_spec(&uplink("192.168.1.10/24", None)).is_ok());
        assert_eq!(
            uplink_spec(&uplink("192.168.1.10/24", Some("192.168.2.1"))).unwrap_err(),
            "gateway 192.168.2.1 is outside the uplink's prefix 192.168.1.0/24; pick an address inside it"
        );
        assert!(
            uplink_spec(&uplink("192.168.1.10/24", Some("192.168.1.10")))
                .unwrap_err()
                .contains("own address")
        );
        assert!(uplink_spec(&uplink("192.168.1.10/24", Some("192.168.1.0")))
            .unwrap_err()
            .contains("network address"));
        assert!(
            uplink_spec(&uplink("192.168.1.10/24", Some("192.168.1.255")))
                .unwrap_err()
                .contains("broadcast address")
        );
        assert!(uplink_spec(&uplink("192.168.1.10/24", Some("gw.example")))
            .unwrap_err()
            .contains("not an IPv4 address"));
        // A /31 has two hosts and no reserved addresses; a /32 has no room for a gateway.
        assert!(uplink_spec(&uplink("10.0.0.0/31", Some("10.0.0.1"))).is_ok());
        assert!(uplink_spec(&uplink("10.0.0.1/32", Some("10.0.0.2")))
            .unwrap_err()
            .contains("outside"));
    }

    #[test]
    fn uplink_port_vxlan_port_and_mac_are_checked() {
        let mut u = uplink("192.168.1.10/24", None);
        u.port = "bad/port".into();
        assert!(uplink_spec(&u)
            .unwrap_err()
            .contains("not a valid port name"));
        u.port = "up0".into();
        u.vxlan_port = Some(0);
        assert!(uplink_spec(&u).unwrap_err().contains("use 1 to 65535"));
        u.vxlan_port = Some(8472);
        u.mac = Some("02:00:00:00:00:0a".into());
        assert!(uplink_spec(&u).is_ok());
        u.mac = Some("01:00:5e:00:00:01".into());
        assert!(uplink_spec(&u).unwrap_err().contains("not a unicast"));
        u.mac = Some("00:00:00:00:00:00".into());
        assert!(uplink_spec(&u).unwrap_err().contains("not a unicast"));
        u.mac = Some("02:00".into());
        assert!(uplink_spec(&u).unwrap_err().contains("not a MAC address"));
        assert_eq!(vxlan_port(4789), Ok(4789));
        assert_eq!(vxlan_port(65535), Ok(65535));
        assert!(vxlan_port(0).is_err());
        assert!(vxlan_port(65536).is_err());
    }

    #[test]
    fn vteps_are_ipv4_unicast_addresses() {
        assert!(peer_spec(&peer("blue", "192.0.2.7")).is_ok());
        assert!(peer_spec(&peer("blue", "10.255.255.255")).is_ok());
        assert_eq!(
            peer_spec(&peer("blue", "239.1.1.1")).unwrap_err(),
            "VTEP 239.1.1.1 is a multicast address; give one host's unicast IPv4 address"
        );
        assert!(peer_spec(&peer("blue", "0.0.0.0"))
            .unwrap_err()
            .contains("unspecified"));
        assert!(peer_spec(&peer("blue", "255.255.255.255"))
            .unwrap_err()
            .contains("broadcast"));
        for bad in ["2001:db8::7", "192.0.2", "host.example", ""] {
            assert!(
                peer_spec(&peer("blue", bad))
                    .unwrap_err()
                    .contains("not an IPv4 address"),
                "{bad}"
            );
        }
        assert!(peer_spec(&peer("bad net", "192.0.2.7"))
            .unwrap_err()
            .contains("not a valid network name"));
    }

    #[test]
    fn document_checks_uplink_and_peers() {
        let mut doc = ConfigDoc {
            uplink: Some(uplink("192.168.1.10/24", Some("192.168.1.1"))),
            ..ConfigDoc::default()
        };
        doc.peers.push(peer("blue", "192.0.2.7"));
        assert!(config_doc(&doc).is_ok());
        doc.peers.push(peer("blue", "224.0.0.5"));
        assert!(config_doc(&doc)
            .unwrap_err()
            .starts_with("peers[1]: VTEP 224.0.0.5 is a multicast address"));
        doc.peers.pop();
        doc.uplink = Some(uplink("192.168.1.10/24", Some("10.0.0.1")));
        assert!(config_doc(&doc)
            .unwrap_err()
            .starts_with("uplink: gateway 10.0.0.1 is outside"));
        doc.uplink = Some(uplink("192.168.1.0/24", None));
        assert!(config_doc(&doc)
            .unwrap_err()
            .starts_with("uplink: 192.168.1.0 is the network address"));
    }

    #[test]
    fn document_errors_name_the_entry() {
        let mut doc = ConfigDoc::default();
        doc.networks.push(net("blue"));
        doc.ports.push(port("tap0"));
        doc.ports.push(port("bad name"));
        assert!(config_doc(&doc)
            .unwrap_err()
            .starts_with("ports[1]: 'bad name' is not a valid port name"));
        doc.ports.pop();
        doc.fdb.push(fdb(None, None));
        assert!(config_doc(&doc).unwrap_err().starts_with("fdb[0]: "));
        doc.fdb.clear();
        assert!(config_doc(&doc).is_ok());
    }
}
