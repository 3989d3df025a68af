//! The daemon's side of overlay networks: the uplink address, remote VTEPs (peers), and the
//! tunnel ports the pipeline sees for them. Validation over [`Desired`], tunnel id allocation,
//! and the overlay's share of the snapshot.

use super::desired::{no_network, no_port, Desired, NetState};
use super::{device, err, Daemon, DEFAULT_MTU};
use crate::config::{self, PortConf, Snapshot, TunnelConf, UplinkConf};
use crate::pipeline::Request as WorkerRequest;
use crate::vxlan;
use control::proto::*;
use control::text::{format_mac, parse_mac};
use dataplane::port::{PortId, MAX_PORTS};
use dataplane::worker::Command;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use control::proto::VNI_MAX;

fn parse_ip(what: &str, s: &str) -> Result<Ipv4Addr, ErrorBody> {
    let ip: Ipv4Addr = s.parse().map_err(|_| {
        err(
            ErrorCode::InvalidArgument,
            format!("{what} '{s}' is not an IPv4 address"),
        )
    })?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return Err(err(
            ErrorCode::InvalidArgument,
            format!("{what} {ip} must be a unicast address"),
        ));
    }
    Ok(ip)
}

/// A random locally administered unicast MAC for the switch's underlay presence.
fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id()).rotate_left(40);
    let mut x = seed | 1;
    for b in m.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    m[0] = (m[0] & 0xfc) | 0x02;
    m
}

/// The uplink's MTU in `d`: what its device (`device_of` its port name) has now (an AF_XDP
/// interface's MTU is set outside the daemon), else what its port asked for, else 1500.
pub(super) fn uplink_mtu_of<'a>(
    d: &Desired,
    device_of: impl Fn(&str) -> Option<&'a device::Device>,
) -> u32 {
    let Some(port) = d.uplink.as_ref().and_then(|u| d.ports.get(&u.port)) else {
        return DEFAULT_MTU;
    };
    device_of(&port.spec.name)
        .and_then(|d| d.mtu().ok())
        .or(port.spec.mtu)
        .unwrap_or(DEFAULT_MTU)
}

impl Daemon {
    /// The overlay MTU: the uplink port's MTU minus the VXLAN overhead.
    pub(super) fn overlay_mtu(&self) -> u32 {
        vxlan::overlay_mtu(self.uplink_mtu())
    }

    /// Whether the uplink's device takes UDP tunnel super-frames (a TAP with tunnel GSO).
    pub(super) fn uplink_tunnel_gso(&self) -> bool {
        self.uplink_device_is(device::Device::tunnel_gso)
    }

    /// Whether the uplink's device takes UDP super-frames (a TAP with USO).
    pub(super) fn uplink_uso(&self) -> bool {
        self.uplink_device_is(device::Device::uso)
    }

    /// Whether the uplink's device (if it has one now) is as `what` says.
    fn uplink_device_is(&self, what: impl Fn(&device::Device) -> bool) -> bool {
        let Some(port) = self
            .desired
            .uplink
            .as_ref()
            .and_then(|u| self.desired.ports.get(&u.port))
        else {
            return false;
        };
        self.runtime
            .get(&port.spec.name)
            .and_then(|r| r.device.as_ref())
            .is_some_and(what)
    }

    /// The uplink's MTU as it is now.
    pub(super) fn uplink_mtu(&self) -> u32 {
        uplink_mtu_of(&self.desired, |name| {
            self.runtime.get(name).and_then(|r| r.device.as_ref())
        })
    }

    /// `uplink set`.
    pub(super) fn uplink_set(&mut self, spec: UplinkSpec) -> Result<(), ErrorBody> {
        let next = self.desired.set_uplink(spec)?;
        self.commit(next)
    }

    /// `uplink show`.
    pub(super) fn uplink_info(&self) -> Option<UplinkInfo> {
        let spec = self.desired.uplink.clone()?;
        let mut neighbours = Vec::new();
        if let Some(w) = self.workers.first() {
            let (tx, rx) = crossbeam::channel::bounded(1);
            w.send(Command::Request(WorkerRequest::Neighbours { reply: tx }));
            if let Ok(list) = rx.recv_timeout(Duration::from_secs(5)) {
                neighbours = list
                    .into_iter()
                    .map(|(ip, mac)| (ip.to_string(), format_mac(&mac)))
                    .collect();
            }
        }
        Some(UplinkInfo {
            spec,
            overlay_mtu: self.overlay_mtu(),
            neighbours,
        })
    }

    /// `peer add`.
    pub(super) fn peer_add(&mut self, p: PeerSpec) -> Result<(), ErrorBody> {
        let next = self.desired.add_peer(p)?;
        self.commit(next)
    }

    /// `peer rm`.
    pub(super) fn peer_rm(&mut self, p: PeerSpec) -> Result<(), ErrorBody> {
        let next = self.desired.remove_peer(p)?;
        self.commit(next)
    }

    /// `peer ls`.
    pub(super) fn peer_ls(&self, network: Option<&str>) -> Result<Vec<PeerSpec>, ErrorBody> {
        if let Some(n) = network {
            self.desired.nets.get(n).ok_or_else(|| no_network(n))?;
        }
        Ok(self
            .desired
            .peers
            .iter()
            .filter(|p| network.is_none_or(|n| p.network == n))
            .cloned()
            .collect())
    }
}

/// Validation of the uplink and peers, tunnel ids, and the overlay's share of the snapshot.
impl Desired {
    pub(super) fn check_vni(&self, spec: &NetworkSpec) -> Result<(), ErrorBody> {
        let Some(vni) = spec.vni else {
            if spec.learn_remote.is_some() {
                return Err(err(
                    ErrorCode::InvalidArgument,
                    "--no-learn-remote applies to overlay networks; add --vni N",
                ));
            }
            return Ok(());
        };
        if vni == 0 || vni > VNI_MAX {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!("VNI {vni} is out of range; use 1 to {VNI_MAX}"),
            ));
        }
        if let Some(other) = self
            .nets
            .values()
            .find(|n| n.spec.vni == Some(vni) && n.spec.name != spec.name)
        {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!("VNI {vni} is already network '{}'", other.spec.name),
            ));
        }
        Ok(())
    }

    fn overlay_net(&self, name: &str) -> Result<&NetState, ErrorBody> {
        let n = self.nets.get(name).ok_or_else(|| no_network(name))?;
        if n.spec.vni.is_none() {
            return Err(err(
                ErrorCode::Conflict,
                format!("network '{name}' is not an overlay network (it has no --vni)"),
            ));
        }
        Ok(n)
    }

    /// `uplink set`: the uplink keeps its MAC unless one is given.
    pub(super) fn set_uplink(&self, mut spec: UplinkSpec) -> Result<Desired, ErrorBody> {
        let inval = |m: String| err(ErrorCode::InvalidArgument, m);
        let (ip, prefix) = super::parse_cidr(&spec.ip).map_err(inval)?;
        if prefix == 0 {
            return Err(inval(format!(
                "'{}' needs a prefix length of 1 to 32",
                spec.ip
            )));
        }
        parse_ip("uplink address", &ip.to_string())?;
        if let Some(g) = &spec.gateway {
            let gw = parse_ip("gateway", g)?;
            let cfg = UplinkConf {
                port: 0,
                mac: [0; 6],
                ip,
                prefix,
                gateway: None,
                vxlan_port: 0,
                mtu: 0,
                tunnel_gso: false,
                uso: false,
            };
            if cfg.next_hop(gw) != Some(gw) {
                return Err(inval(format!("gateway {gw} is outside {}", spec.ip)));
            }
        }
        if spec.vxlan_port == Some(0) {
            return Err(inval("--vxlan-port must be 1 to 65535".into()));
        }
        let port = self
            .ports
            .get(&spec.port)
            .ok_or_else(|| no_port(&spec.port))?;
        if port.spec.kind == PortType::Vlan {
            return Err(inval(format!(
                "'{}' is a VLAN subinterface; the uplink must be a TAP or AF_XDP port",
                spec.port
            )));
        }
        if port.spec.network.is_some() {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "port '{}' is in network '{}'; an uplink belongs to no network",
                    spec.port,
                    port.spec.network.as_deref().unwrap_or("")
                ),
            ));
        }
        if self.ports.values().any(|q| {
            self.vlan_parent(&q.spec)
                .is_some_and(|(p, _)| p.id == port.id)
        }) {
            return Err(err(
                ErrorCode::Conflict,
                format!("port '{}' is a trunk; pick another uplink", spec.port),
            ));
        }
        let mac = match &spec.mac {
            Some(m) => parse_mac(m).map_err(inval)?,
            None => self
                .uplink
                .as_ref()
                .and_then(|u| u.mac.as_deref())
                .and_then(|m| parse_mac(m).ok())
                .unwrap_or_else(random_mac),
        };
        if mac[0] & 1 != 0 {
            return Err(inval("the uplink MAC must be unicast".into()));
        }
        spec.mac = Some(format_mac(&mac));
        spec.ip = format!("{ip}/{prefix}");
        let mut next = self.clone();
        next.uplink = Some(spec);
        Ok(next)
    }

    /// `peer add`.
    pub(super) fn add_peer(&self, p: PeerSpec) -> Result<Desired, ErrorBody> {
        let p = self.check_peer(p)?;
        let mut next = self.clone();
        next.peers.push(p);
        Ok(next)
    }

    /// A peer's checks against the networks, the peers and the uplink; the peer in canonical
    /// form (without cloning the state: the store adds hundreds at once).
    pub(super) fn check_peer(&self, mut p: PeerSpec) -> Result<PeerSpec, ErrorBody> {
        self.overlay_net(&p.network)?;
        let ip = parse_ip("VTEP", &p.vtep)?;
        p.vtep = ip.to_string();
        if self
            .peers
            .iter()
            .any(|q| q.network == p.network && q.vtep == p.vtep)
        {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!("{ip} is already a peer of network '{}'", p.network),
            ));
        }
        if let Some(up) = &self.uplink {
            if super::parse_cidr(&up.ip).is_ok_and(|(own, _)| own == ip) {
                return Err(err(
                    ErrorCode::InvalidArgument,
                    format!("{ip} is this switch's own uplink address"),
                ));
            }
        }
        Ok(p)
    }

    /// `peer rm`.
    pub(super) fn remove_peer(&self, p: PeerSpec) -> Result<Desired, ErrorBody> {
        let ip = parse_ip("VTEP", &p.vtep)?;
        let Some(i) = self
            .peers
            .iter()
            .position(|q| q.network == p.network && q.vtep == ip.to_string())
        else {
            return Err(err(
                ErrorCode::NotFound,
                format!(
                    "{ip} is not a peer of network '{}'; see vswitchctl peer ls",
                    p.network
                ),
            ));
        };
        let mut next = self.clone();
        next.peers.remove(i);
        Ok(next)
    }

    /// Gives every (network, VTEP) that needs a tunnel port an id, and frees the ids no longer
    /// needed. Tunnel ids come from the top of the id space; port ids from the bottom. Returns
    /// the (network, VTEP) pairs left without a tunnel because every id is taken.
    #[must_use]
    pub(super) fn sync_tunnels(&mut self) -> Vec<(String, Ipv4Addr)> {
        let mut starved = Vec::new();
        // Borrowed keys: a hundred thousand remote MACs behind a thousand VTEPs (a cluster
        // store's share) must not cost a hundred thousand string copies per change.
        let mut want: BTreeSet<(&str, Ipv4Addr)> = BTreeSet::new();
        for p in &self.peers {
            if let Ok(ip) = p.vtep.parse() {
                want.insert((p.network.as_str(), ip));
            }
        }
        for f in &self.fdb {
            if let Some(ip) = f.vtep.as_deref().and_then(|v| v.parse().ok()) {
                want.insert((f.network.as_str(), ip));
            }
        }
        want.retain(|(n, _)| self.nets.get(*n).is_some_and(|n| n.spec.vni.is_some()));
        let want: BTreeSet<(String, Ipv4Addr)> = want
            .into_iter()
            .map(|(n, ip)| (n.to_string(), ip))
            .collect();
        self.tunnel_ids.retain(|k, _| want.contains(k));
        for k in want {
            if self.tunnel_ids.contains_key(&k) {
                continue;
            }
            let used: BTreeSet<PortId> = self
                .ports
                .values()
                .map(|p| p.id)
                .chain(self.tunnel_ids.values().copied())
                .collect();
            match (0..MAX_PORTS as PortId).rev().find(|i| !used.contains(i)) {
                Some(id) => {
                    self.tunnel_ids.insert(k, id);
                }
                None => starved.push(k),
            }
        }
        starved
    }

    /// Whether `id` belongs to a tunnel.
    pub(super) fn tunnel_of(&self, id: PortId) -> Option<&(String, Ipv4Addr)> {
        self.tunnel_ids
            .iter()
            .find(|(_, &v)| v == id)
            .map(|(k, _)| k)
    }

    /// Adds the uplink, VNIs and tunnel ports to a snapshot whose ports and networks are filled.
    pub(super) fn compile_overlay(&self, snap: &mut Snapshot, uplink_mtu: u32) {
        snap.uplink = self.uplink.as_ref().and_then(|u| {
            let port = self.ports.get(&u.port)?;
            let (ip, prefix) = super::parse_cidr(&u.ip).ok()?;
            Some(UplinkConf {
                port: port.id,
                mac: parse_mac(u.mac.as_deref()?).ok()?,
                ip,
                prefix,
                gateway: u.gateway.as_deref().and_then(|g| g.parse().ok()),
                vxlan_port: u.vxlan_port.unwrap_or(vxlan::DEFAULT_PORT),
                mtu: uplink_mtu,
                // Filled in by the daemon from the device (runtime, not configuration).
                tunnel_gso: false,
                uso: false,
            })
        });
        snap.vnis = self
            .nets
            .values()
            .filter_map(|n| Some((n.spec.vni?, n.id)))
            .collect();
        snap.vnis.sort_unstable();
        let max = self
            .tunnel_ids
            .values()
            .map(|&i| i as usize + 1)
            .max()
            .unwrap_or(0);
        if snap.ports.len() < max {
            snap.ports.resize(max, None);
        }
        // Indexes first: thousands of tunnels times a hundred thousand remote MACs (a cluster
        // store's share) must not cost their product.
        let mut macs_behind: HashMap<(&str, &str), Vec<[u8; 6]>> = HashMap::new();
        for f in &self.fdb {
            if let (Some(v), Ok(mac)) = (f.vtep.as_deref(), parse_mac(&f.mac)) {
                macs_behind
                    .entry((f.network.as_str(), v))
                    .or_default()
                    .push(mac);
            }
        }
        let peers: HashSet<(&str, &str)> = self
            .peers
            .iter()
            .map(|p| (p.network.as_str(), p.vtep.as_str()))
            .collect();
        let mut grown = BTreeSet::new();
        for ((net_name, vtep), &id) in &self.tunnel_ids {
            let Some(n) = self.nets.get(net_name) else {
                continue;
            };
            let Some(vni) = n.spec.vni else { continue };
            let limit = n.spec.mac_limit.unwrap_or(config::DEFAULT_NET_MAC_LIMIT);
            snap.ports[id as usize] = Some(PortConf {
                net: Some(n.id),
                mac_limit: limit,
                tunnel: Some(TunnelConf {
                    vtep: *vtep,
                    vni,
                    encrypted: n.spec.encrypted,
                    esp_udp: n.spec.esp_encap == Some(control::proto::EspEncap::Udp),
                }),
                learn: n.spec.learn_remote.unwrap_or(true),
                ..Default::default()
            });
            snap.tunnels.push(((n.id, u32::from(*vtep)), id));
            let vtep_text = vtep.to_string();
            let is_peer = peers.contains(&(net_name.as_str(), vtep_text.as_str()));
            if let Some(Some(nc)) = snap.nets.get_mut(n.id as usize) {
                if is_peer {
                    nc.ports.push(id);
                    grown.insert(n.id);
                }
                if let Some(macs) = macs_behind.get(&(net_name.as_str(), vtep_text.as_str())) {
                    nc.statics.extend(macs.iter().map(|&mac| (mac, id)));
                }
            }
        }
        for id in grown {
            if let Some(Some(nc)) = snap.nets.get_mut(id as usize) {
                nc.ports.sort_unstable();
            }
        }
        snap.tunnels.sort_unstable();
    }
}
