//! The configuration snapshot that workers forward against: immutable once published.
//!
//! The control thread builds a new [`Snapshot`] for every accepted change and publishes it to
//! every worker (see `dataplane::worker`); a worker holds one snapshot for a whole burst.

use dataplane::port::PortId;
use std::net::Ipv4Addr;

/// Network (bridge domain) id.
pub type NetId = u16;

/// Default most learned MACs per network.
pub const DEFAULT_NET_MAC_LIMIT: u32 = 65_536;
/// Default most learned MACs per port.
pub const DEFAULT_PORT_MAC_LIMIT: u32 = 4_096;
/// Default MAC aging time in seconds.
pub const DEFAULT_AGING_SECS: u32 = 300;

/// No port (in a trunk's VLAN map).
pub const NO_PORT: PortId = PortId::MAX;

/// A port as the pipeline sees it. A physical port with a VLAN map is a trunk (its `net`, if
/// any, is the native VLAN); without one it is an access port. A subinterface is a logical port
/// with a parent trunk and a VID; it has no queues of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConf {
    /// Network the port belongs to (for a trunk: the native VLAN's network).
    pub net: Option<NetId>,
    /// Most learned MACs behind this port.
    pub mac_limit: u32,
    /// Device MTU; a tagged frame longer than MTU + 18 bytes is dropped (0: no check).
    pub mtu: u32,
    /// For a subinterface: its trunk port and VID.
    pub parent: Option<(PortId, u16)>,
    /// For a trunk: the subinterface port of each VID (4096 entries, [`NO_PORT`] where none).
    pub vlans: Option<std::sync::Arc<[PortId]>>,
    /// For a VXLAN tunnel (a remote VTEP of an overlay network): where it goes.
    pub tunnel: Option<TunnelConf>,
    /// Whether source MACs seen on this port are learned.
    pub learn: bool,
}

/// A tunnel port: frames sent to it are encapsulated towards `vtep` with `vni`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelConf {
    /// The remote VTEP.
    pub vtep: Ipv4Addr,
    /// The network's VNI.
    pub vni: u32,
    /// Whether the network is encrypted: encapsulated frames go to `esp-seal`.
    pub encrypted: bool,
    /// With `encrypted`: ESP goes in UDP (RFC 3948), not as IP protocol 50.
    pub esp_udp: bool,
}

/// The host's underlay address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkConf {
    /// The port facing the underlay.
    pub port: PortId,
    /// The switch's own MAC on the underlay.
    pub mac: [u8; 6],
    /// Its address.
    pub ip: Ipv4Addr,
    /// Prefix length of the underlay subnet.
    pub prefix: u8,
    /// Next hop for VTEPs outside the subnet.
    pub gateway: Option<Ipv4Addr>,
    /// VXLAN UDP port.
    pub vxlan_port: u16,
    /// The uplink's IP MTU.
    pub mtu: u32,
    /// The uplink takes VXLAN super-frames whole (a TAP with UDP tunnel GSO): a TCP
    /// super-frame is encapsulated whole instead of cut first.
    pub tunnel_gso: bool,
    /// The uplink takes UDP super-frames (a TAP with UDP segmentation offload): an encrypted
    /// network's TCP super-frame (ESP in UDP) is sealed into UDP super-frames instead of cut
    /// before encapsulation.
    pub uso: bool,
}

impl UplinkConf {
    /// The underlay next hop towards `dst`: itself on the subnet, else the gateway.
    #[inline]
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if control::text::same_prefix(dst, self.ip, self.prefix) {
            Some(dst)
        } else {
            self.gateway
        }
    }
}

impl Default for PortConf {
    fn default() -> Self {
        PortConf {
            net: None,
            mac_limit: DEFAULT_PORT_MAC_LIMIT,
            mtu: 0,
            parent: None,
            vlans: None,
            tunnel: None,
            learn: true,
        }
    }
}

impl PortConf {
    /// An access port in `net` with `mac_limit`.
    pub fn access(net: Option<NetId>, mac_limit: u32) -> PortConf {
        PortConf {
            net,
            mac_limit,
            ..Default::default()
        }
    }

    /// The subinterface for `vid` when this port is a trunk.
    #[inline]
    pub fn vlan_port(&self, vid: u16) -> Option<PortId> {
        let p = *self.vlans.as_ref()?.get(vid as usize)?;
        (p != NO_PORT).then_some(p)
    }

    /// Whether this port is a trunk (has subinterfaces).
    #[inline]
    pub fn is_trunk(&self) -> bool {
        self.vlans.is_some()
    }
}

/// A network as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    /// Ports in the network, in id order (the flood list).
    pub ports: Vec<PortId>,
    /// Most learned MACs in the network.
    pub mac_limit: u32,
    /// Seconds before an unrefreshed learned MAC goes.
    pub aging_secs: u32,
    /// Static MAC entries: (MAC, port).
    pub statics: Vec<([u8; 6], PortId)>,
    /// An encrypted overlay: VXLAN for its VNI is accepted only out of ESP.
    pub encrypted: bool,
    /// With `encrypted`: its ESP comes in UDP (RFC 3948); ESP as IP protocol 50 for it is
    /// dropped (and the reverse without).
    pub esp_udp: bool,
}

/// A network's gateway: the switch's own address on the network, which routes out of it
/// (`crate::nat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayConf {
    /// The gateway address (answered in ARP and ICMP echo).
    pub ip: Ipv4Addr,
    /// The network's subnet.
    pub subnet: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The gateway's MAC on the network.
    pub mac: [u8; 6],
    /// No way out (Docker's `--internal`): only the gateway itself answers.
    pub internal: bool,
}

impl GatewayConf {
    /// Whether `ip` is in the network's subnet.
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        control::text::same_prefix(ip, self.subnet, self.prefix)
    }

    /// The gateway MAC of network `net`: locally administered, unique per network.
    pub fn mac_of(net: NetId) -> [u8; 6] {
        let [hi, lo] = net.to_be_bytes();
        [0x02, 0x76, 0x73, 0x67, hi, lo]
    }
}

/// One published configuration.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Generation, increasing with every publication.
    pub gen: u64,
    /// Ports by id.
    pub ports: Vec<Option<PortConf>>,
    /// Networks by id.
    pub nets: Vec<Option<NetConf>>,
    /// The underlay address, when set.
    pub uplink: Option<UplinkConf>,
    /// Overlay networks by VNI, sorted by VNI.
    pub vnis: Vec<(u32, NetId)>,
    /// Tunnel ports by (network, remote VTEP), sorted.
    pub tunnels: Vec<((NetId, u32), PortId)>,
    /// ESP security associations (encrypted overlays).
    pub esp: std::sync::Arc<crate::esp::ring::EspConf>,
    /// Gateways by network id (empty when no network has one).
    pub gateways: Vec<Option<GatewayConf>>,
    /// NAT settings.
    pub nat: crate::nat::NatConfig,
    /// Workers that split the NAT port range (0 counts as 1).
    pub workers: u16,
    /// Names the gateways' DNS answers, per network.
    pub names: std::sync::Arc<crate::dns::Names>,
    /// Pairs of networks whose gateways route between them (`network link`), both ways
    /// round, sorted.
    pub links: Vec<(NetId, NetId)>,
    /// Neighbours inside the networks, learned by every worker's router (shared, lock-free;
    /// the same table in every snapshot the daemon publishes).
    pub inside: std::sync::Arc<crate::nat::inside::InsideNeigh>,
    /// Services (load balancing in the gateway).
    pub services: std::sync::Arc<crate::service::ServiceTable>,
}

impl Snapshot {
    /// Port `id`, if configured.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortConf> {
        self.ports.get(id as usize).and_then(Option::as_ref)
    }

    /// The overlay network carrying `vni`.
    #[inline]
    pub fn net_of_vni(&self, vni: u32) -> Option<NetId> {
        let i = self.vnis.binary_search_by_key(&vni, |&(v, _)| v).ok()?;
        self.vnis.get(i).map(|&(_, n)| n)
    }

    /// The tunnel port of network `net` towards `vtep`.
    #[inline]
    pub fn tunnel_port(&self, net: NetId, vtep: Ipv4Addr) -> Option<PortId> {
        let key = (net, u32::from(vtep));
        let i = self.tunnels.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        self.tunnels.get(i).map(|&(_, p)| p)
    }

    /// The gateway of network `id`, if it has one.
    #[inline]
    pub fn gateway(&self, id: NetId) -> Option<&GatewayConf> {
        self.gateways.get(id as usize).and_then(Option::as_ref)
    }

    /// Whether the gateways route between networks `a` and `b` (`network link`).
    #[inline]
    pub fn linked(&self, a: NetId, b: NetId) -> bool {
        !self.links.is_empty() && self.links.binary_search(&(a, b)).is_ok()
    }

    /// The network whose subnet holds `ip`, with its gateway.
    #[inline]
    pub fn net_of_ip(&self, ip: Ipv4Addr) -> Option<(NetId, &GatewayConf)> {
        self.gateways.iter().enumerate().find_map(|(i, g)| {
            g.as_ref()
                .filter(|g| g.contains(ip))
                .map(|g| (i as NetId, g))
        })
    }

    /// Network `id`, if configured.
    #[inline]
    pub fn net(&self, id: NetId) -> Option<&NetConf> {
        self.nets.get(id as usize).and_then(Option::as_ref)
    }
}
