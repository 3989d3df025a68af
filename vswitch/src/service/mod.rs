//! Services: L4 load balancing in the gateway (Docker's service VIPs and published ports).
//!
//! * [`maglev`]: weighted consistent hashing, a protocol core (why Maglev: see there).
//! * [`conn`]: the per-worker connection table (connection tracking: a connection keeps its
//!   backend for life), a protocol core with `now` as an argument.
//! * [`ServiceTable`]: what the snapshot carries: every service with its backends and Maglev
//!   table, and sorted lookups by VIP, by published port and by backend address.
//! * [`stage`]: the dataplane, run by the `l3-router` stage (`crate::nat::stage`) at three
//!   points: a packet to a VIP or to a published port of the uplink address (a new or known
//!   connection, destination translated to its backend), a backend's reply (translated back
//!   to come from the VIP or the published port) and ARP (the VIPs answer with the gateway's
//!   MAC; backends are resolved by ARP from the gateway and learned from their replies).
//!
//! Which address the backend sees (source translation):
//! * a client beyond the uplink (published port, either mode): its own address; the backend's
//!   reply goes to its default gateway, the switch, which translates it back;
//! * a client on another network (published port of its own host): its own address, for the
//!   same reason;
//! * a client on the service's own network (its VIP, or a published port of its own host:
//!   hairpin): the gateway's address, with a port from the worker's share of NAT's range.
//!   Client and backend share a subnet, so without it the backend would answer the client
//!   directly, from its own address, and the client would drop the answer;
//! * a backend on another host of an overlay network (the routing mesh): this host's
//!   `--ingress-ip` on the network (its own MAC too), since the backend's default gateway is
//!   its own host's; decapsulated frames for that address come to the router
//!   ([`stage::entry_from_tunnel`]).
//!
//! Workers: a connection belongs to the worker chosen by a hash of the client's address and
//! port (the same on every worker); a source-translated reply names its owner by its port (as
//! NAT's do). Packets that arrive elsewhere are handed to the owner through NAT's rings.

pub mod conn;
pub mod maglev;
pub mod stage;

use crate::config::NetId;
use std::net::Ipv4Addr;

/// A published or VIP port: protocol, the port clients use, the backends' port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortMap {
    /// IP protocol (TCP or UDP).
    pub proto: u8,
    /// The port clients connect to.
    pub port: u16,
    /// The backends' port.
    pub target: u16,
}

/// A backend's state as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Its address (on the service's network).
    pub ip: Ipv4Addr,
    /// Relative weight (0: draining, no new connections).
    pub weight: u32,
    /// Marked down: no new connections.
    pub down: bool,
}

impl Backend {
    /// Whether it takes new connections.
    #[inline]
    pub fn takes_new(&self) -> bool {
        self.weight > 0 && !self.down
    }
}

/// One service as the workers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svc {
    /// Its name.
    pub name: String,
    /// Its network (where the VIP and the backends are).
    pub net: NetId,
    /// Its VIP.
    pub vip: Option<Ipv4Addr>,
    /// Ports of the VIP.
    pub ports: Vec<PortMap>,
    /// Ports published on the uplink address.
    pub publish: Vec<PortMap>,
    /// `--mode host`: only local backends (the same as ingress until remote backends exist).
    pub host_mode: bool,
    /// Backends, in address order (the Maglev table holds indexes into this).
    pub backends: Vec<Backend>,
    /// The Maglev table.
    pub table: Vec<u16>,
    /// Seconds a removed backend's connections may go on (0: reset at once).
    pub drain: u32,
    /// Backends removed with their own drain timeout: (address, seconds).
    pub removed: Vec<(Ipv4Addr, u32)>,
    /// `--endpoint-mode dnsrr`: its name resolves to every backend's address (no VIP).
    pub dnsrr: bool,
    /// Active health check: seconds between TCP connects to `check_port` (0: none).
    pub check_interval: u32,
    /// The backends' port the health check connects to.
    pub check_port: u16,
    /// This host's address on the network for backends on other hosts (routing mesh).
    pub ingress: Option<Ipv4Addr>,
}

impl Svc {
    /// A service with backends (sorted here) and a Maglev table of `table_size` slots.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        net: NetId,
        vip: Option<Ipv4Addr>,
        ports: Vec<PortMap>,
        publish: Vec<PortMap>,
        host_mode: bool,
        mut backends: Vec<Backend>,
        table_size: u32,
    ) -> Svc {
        backends.sort_by_key(|b| b.ip);
        let members: Vec<maglev::Member> = backends
            .iter()
            .map(|b| maglev::Member {
                key: u64::from(b.ip.to_bits()),
                weight: if b.takes_new() { b.weight } else { 0 },
            })
            .collect();
        let table = maglev::build(&members, table_size);
        Svc {
            name,
            net,
            vip,
            ports,
            publish,
            host_mode,
            backends,
            table,
            drain: 0,
            removed: Vec::new(),
            dnsrr: false,
            check_interval: 0,
            check_port: 0,
            ingress: None,
        }
    }

    /// The backend for a flow of `hash`, if any takes new connections.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<(usize, &Backend)> {
        let s = maglev::slot(hash, self.table.len());
        let i = usize::from(*self.table.get(s)?);
        self.backends.get(i).map(|b| (s, b))
    }

    /// Whether `ip` is one of its backends.
    #[inline]
    pub fn has_backend(&self, ip: Ipv4Addr) -> bool {
        self.backends.binary_search_by_key(&ip, |b| b.ip).is_ok()
    }
}

/// A VIP port's key: address, protocol, port.
pub type VipKey = (u32, u8, u16);
/// What a VIP or published port leads to: the service's index and the backends' port.
pub type Target = (u16, u16);

/// Every service, with the lookups the dataplane needs (built by the control thread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTable {
    /// Services; a connection names its service by index here.
    pub services: Vec<Svc>,
    /// `(VIP, proto, port)` -> `(service, target port)`, sorted.
    pub vips: Vec<(VipKey, Target)>,
    /// `(proto, port)` published on the uplink -> `(service, target port)`, sorted.
    pub published: Vec<((u8, u16), Target)>,
    /// Backend endpoints `(network, address)`, sorted and unique (the neighbour cache's index).
    pub endpoints: Vec<(NetId, u32)>,
    /// VIPs `(network, address)`, sorted (answered in ARP).
    pub vip_addrs: Vec<(NetId, u32)>,
    /// This host's ingress addresses `(network, address)`, sorted (answered in ARP with
    /// [`ingress_mac`]).
    pub ingress: Vec<(NetId, u32)>,
}

/// The MAC of this host's ingress address `ip`: locally administered, from its last two
/// bytes, so that hosts with different ingress addresses on a network differ.
pub fn ingress_mac(ip: u32) -> [u8; 6] {
    let b = ip.to_be_bytes();
    [0x02, 0x76, 0x73, 0x69, b[2], b[3]]
}

impl ServiceTable {
    /// The table for `services`.
    pub fn new(services: Vec<Svc>) -> ServiceTable {
        let mut t = ServiceTable::default();
        for (i, s) in services.iter().enumerate() {
            // At most u16::MAX services (the daemon refuses more).
            let id = i as u16;
            if let Some(v) = s.vip {
                t.vip_addrs.push((s.net, v.to_bits()));
                for p in &s.ports {
                    t.vips
                        .push(((v.to_bits(), p.proto, p.port), (id, p.target)));
                }
            }
            for p in &s.publish {
                t.published.push(((p.proto, p.port), (id, p.target)));
            }
            for b in &s.backends {
                t.endpoints.push((s.net, b.ip.to_bits()));
            }
            if let Some(ip) = s.ingress {
                t.ingress.push((s.net, ip.to_bits()));
            }
        }
        t.ingress.sort_unstable();
        t.ingress.dedup();
        t.vips.sort_unstable();
        t.published.sort_unstable();
        t.endpoints.sort_unstable();
        t.endpoints.dedup();
        t.vip_addrs.sort_unstable();
        t.vip_addrs.dedup();
        t.services = services;
        t
    }

    /// Whether there is no service.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The service and target port of VIP `ip:port`.
    #[inline]
    pub fn vip(&self, ip: u32, proto_: u8, port: u16) -> Option<(u16, u16)> {
        let i = self
            .vips
            .binary_search_by_key(&(ip, proto_, port), |e| e.0)
            .ok()?;
        self.vips.get(i).map(|e| e.1)
    }

    /// The service and target port published on `port`.
    #[inline]
    pub fn published(&self, proto_: u8, port: u16) -> Option<(u16, u16)> {
        let i = self
            .published
            .binary_search_by_key(&(proto_, port), |e| e.0)
            .ok()?;
        self.published.get(i).map(|e| e.1)
    }

    /// The endpoint index of backend address `ip` on `net`.
    #[inline]
    pub fn endpoint(&self, net: NetId, ip: u32) -> Option<usize> {
        self.endpoints.binary_search(&(net, ip)).ok()
    }

    /// This host's ingress address on `net`, if it has one.
    #[inline]
    pub fn ingress_of(&self, net: NetId) -> Option<u32> {
        let i = self.ingress.partition_point(|e| e.0 < net);
        self.ingress.get(i).filter(|e| e.0 == net).map(|e| e.1)
    }

    /// Whether `ip` is a VIP on `net`.
    #[inline]
    pub fn is_vip(&self, net: NetId, ip: u32) -> bool {
        self.vip_addrs.binary_search(&(net, ip)).is_ok()
    }

    /// The service named `name` on network `net` (what a DNS stage answers from: its `vip`, or
    /// with `dnsrr` its `backends`' addresses).
    pub fn by_name(&self, net: NetId, name: &str) -> Option<&Svc> {
        self.services
            .iter()
            .find(|s| s.net == net && s.name.eq_ignore_ascii_case(name))
    }

    /// The index of the service named `name`.
    pub fn index_of(&self, name: &str) -> Option<u16> {
        // At most u16::MAX services.
        #[allow(clippy::cast_possible_truncation)]
        self.services
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::proto;

    fn svc(name: &str, vip: u8, publish: u16) -> Svc {
        Svc::new(
            name.into(),
            1,
            Some(Ipv4Addr::new(10, 1, 0, vip)),
            vec![PortMap {
                proto: proto::TCP,
                port: 80,
                target: 8080,
            }],
            vec![PortMap {
                proto: proto::TCP,
                port: publish,
                target: 8080,
            }],
            false,
            vec![
                Backend {
                    ip: Ipv4Addr::new(10, 1, 0, 5),
                    weight: 1,
                    down: false,
                },
                Backend {
                    ip: Ipv4Addr::new(10, 1, 0, 3),
                    weight: 2,
                    down: true,
                },
            ],
            1021,
        )
    }

    #[test]
    fn lookups_find_vips_published_ports_and_backends() {
        let t = ServiceTable::new(vec![svc("web", 100, 8080), svc("api", 101, 9090)]);
        let vip = u32::from(Ipv4Addr::new(10, 1, 0, 101));
        assert_eq!(t.vip(vip, proto::TCP, 80), Some((1, 8080)));
        assert_eq!(t.vip(vip, proto::UDP, 80), None);
        assert_eq!(t.published(proto::TCP, 8080), Some((0, 8080)));
        assert_eq!(t.published(proto::TCP, 8081), None);
        assert!(t.is_vip(1, vip));
        assert!(!t.is_vip(2, vip));
        assert_eq!(t.endpoints.len(), 2);
        assert!(t
            .endpoint(1, u32::from(Ipv4Addr::new(10, 1, 0, 3)))
            .is_some());
        // Backends sorted; the down one gets no slot.
        let s = &t.services[0];
        assert_eq!(s.backends[0].ip, Ipv4Addr::new(10, 1, 0, 3));
        assert!(s.table.iter().all(|&i| i == 1));
        assert_eq!(s.pick(12345).map(|(_, b)| b.ip.octets()[3]), Some(5));
        assert_eq!(t.index_of("api"), Some(1));
    }
}
