//! Scenario tests of VXLAN overlays over in-memory ports: exact bytes on the underlay and in the
//! overlay, named drops, neighbour resolution on the uplink.
//!
//! Topology: port 0 is the uplink (192.168.50.1/24 at `OUR_MAC`, VXLAN on 4789, IP MTU 1500);
//! port 1 is an access port in overlay network 1 (VNI 100), port 2 one in overlay network 2
//! (VNI 200). The remote VTEP 192.168.50.2 is a peer of both networks, as tunnel port 1000 in
//! network 1 and tunnel port 1001 in network 2 (ids from the top of the port-id space, peers in
//! their network's flood list, as the daemon builds them). Some tests add a second peer of
//! network 1, 192.168.50.3, as tunnel port 1002.
//!
//! Every frame is built here by hand and every checksum recomputed here, independently of the
//! engine's helpers.

use dataplane::burst::Burst;
use dataplane::offload::{
    TcpSegments, VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
};
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::swoffload::TxCaps;
use dataplane::worker::{Command, Worker};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch::config::{NetConf, NetId, PortConf, Snapshot, TunnelConf, UplinkConf};
use vswitch::counters::{drop_counters, event_index, Event};
use vswitch::pipeline::Switch;

const UPLINK: PortId = 0;
const ACCESS_1: PortId = 1;
const ACCESS_2: PortId = 2;
/// Network 1's tunnel to `PEER_IP`.
const TUN_1: PortId = 1000;
/// Network 2's tunnel to `PEER_IP`.
const TUN_2: PortId = 1001;
/// Network 1's tunnel to `PEER3_IP` (only where a test adds it).
const TUN_1B: PortId = 1002;

const VNI_1: u32 = 100;
const VNI_2: u32 = 200;
const VXLAN_PORT: u16 = 4789;

const OUR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x02, 0x02];
const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const PEER3_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x03, 0x03];
const PEER3_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 3);
const GW_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xfe, 0xfe];
const GW_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 254);
const FAR_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 8, 7);

/// A local host behind an access port.
const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// Another local host.
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
/// A remote host behind the peer VTEP.
const R: [u8; 6] = [0x02, 0, 0, 0, 0, 0x1a];
/// A remote host programmed statically.
const S: [u8; 6] = [0x02, 0, 0, 0, 0, 0x5a];
const BCAST: [u8; 6] = [0xff; 6];

/// The clock the worker runs at unless a test moves it.
const NOW: u64 = 1;
/// Ring size of every in-memory port, and so the most frames one port can hold.
const RING: usize = 256;

/// Inner frame: `dst`, `src`, the local experimental EtherType 0x88b5 (so that nothing parses
/// past L2), a byte counter as payload, `len` bytes in all.
fn inner(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    let mut i = 0u8;
    while f.len() < len {
        f.push(i);
        i = i.wrapping_add(1);
    }
    f.truncate(len);
    f
}

/// RFC 1071 checksum over `data` (the test's own, not the engine's).
fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u32::from(u16::from_be_bytes([c[0], c[1]]))
        } else {
            u32::from(c[0]) << 8
        };
        sum += w;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Recomputes the outer IPv4 header checksum (IHL from the header) in place.
fn fix_ip_csum(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24..26].fill(0);
    let c = csum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Writes a correct UDP checksum (pseudo-header included) into an outer frame without options.
fn fill_udp_csum(f: &mut [u8]) {
    let ulen = usize::from(u16::from_be_bytes([f[38], f[39]]));
    f[40..42].fill(0);
    let mut ph = Vec::new();
    ph.extend_from_slice(&f[26..34]);
    ph.extend_from_slice(&[0, 17]);
    ph.extend_from_slice(&(ulen as u16).to_be_bytes());
    ph.extend_from_slice(&f[34..34 + ulen]);
    let mut c = csum(&ph);
    if c == 0 {
        c = 0xffff;
    }
    f[40..42].copy_from_slice(&c.to_be_bytes());
}

/// The outer headers of a VXLAN frame a test sends on the uplink.
#[derive(Clone, Copy)]
struct Outer {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    vni: u32,
}

/// VXLAN from the peer VTEP to us with `vni`.
fn from_peer(vni: u32) -> Outer {
    Outer {
        dst_mac: OUR_MAC,
        src_mac: PEER_MAC,
        src_ip: PEER_IP,
        dst_ip: OUR_IP,
        sport: 50_000,
        dport: VXLAN_PORT,
        flags: 0x08,
        vni,
    }
}

/// `inner` in VXLAN as `o` says: lengths and IPv4 checksum right, UDP checksum zero.
fn vxlan(o: Outer, inner: &[u8]) -> Vec<u8> {
    let ip_len = (20 + 8 + 8 + inner.len()) as u16;
    let mut f = Vec::with_capacity(50 + inner.len());
    f.extend_from_slice(&o.dst_mac);
    f.extend_from_slice(&o.src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0x00]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0]);
    f.extend_from_slice(&o.src_ip.octets());
    f.extend_from_slice(&o.dst_ip.octets());
    f.extend_from_slice(&o.sport.to_be_bytes());
    f.extend_from_slice(&o.dport.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[o.flags, 0, 0, 0]);
    f.extend_from_slice(&o.vni.to_be_bytes()[1..]);
    f.push(0);
    f.extend_from_slice(inner);
    fix_ip_csum(&mut f);
    f
}

/// An Ethernet + ARP (IPv4 over Ethernet) frame, 42 bytes.
fn arp(
    op: u16,
    eth_dst: [u8; 6],
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

/// The broadcast request the switch sends to resolve `ip`.
fn our_request(ip: Ipv4Addr) -> Vec<u8> {
    arp(1, BCAST, OUR_MAC, OUR_IP, [0; 6], ip)
}

/// A reply from `ip` at `mac` to us.
fn reply_to_us(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp(2, OUR_MAC, mac, ip, OUR_MAC, OUR_IP)
}

/// Checks every field of a VXLAN frame the switch sent towards `dst_ip` via next hop `dst_mac`
/// and that it carries `inner` unchanged; returns the UDP source port.
fn check_encap(f: &[u8], inner: &[u8], vni: u32, dst_mac: [u8; 6], dst_ip: Ipv4Addr) -> u16 {
    assert_eq!(f.len(), 50 + inner.len(), "outer frame length");
    // Ethernet.
    assert_eq!(f[0..6], dst_mac, "outer destination MAC: the next hop's");
    assert_eq!(f[6..12], OUR_MAC, "outer source MAC: the uplink's");
    assert_eq!(f[12..14], [0x08, 0x00], "outer EtherType IPv4");
    // IPv4.
    assert_eq!(f[14], 0x45, "IPv4, no options");
    let total = u16::from_be_bytes([f[16], f[17]]);
    assert_eq!(
        usize::from(total),
        20 + 8 + 8 + inner.len(),
        "IPv4 total length"
    );
    assert_eq!(
        u16::from_be_bytes([f[20], f[21]]),
        0x4000,
        "DF set, not a fragment"
    );
    assert_eq!(f[22], 64, "TTL");
    assert_eq!(f[23], 17, "protocol UDP");
    let mut hdr = f[14..34].to_vec();
    hdr[10..12].fill(0);
    assert_eq!(
        u16::from_be_bytes([f[24], f[25]]),
        csum(&hdr),
        "IPv4 header checksum, fully recomputed"
    );
    assert_eq!(f[26..30], OUR_IP.octets(), "outer source address");
    assert_eq!(f[30..34], dst_ip.octets(), "outer destination address");
    // UDP.
    let sport = u16::from_be_bytes([f[34], f[35]]);
    assert!(sport >= 49152, "UDP source port {sport} in 49152..=65535");
    assert_eq!(u16::from_be_bytes([f[36], f[37]]), VXLAN_PORT, "UDP dport");
    assert_eq!(
        usize::from(u16::from_be_bytes([f[38], f[39]])),
        8 + 8 + inner.len(),
        "UDP length"
    );
    assert_eq!(f[40..42], [0, 0], "UDP checksum zero");
    // VXLAN.
    assert_eq!(f[42], 0x08, "I flag only");
    assert_eq!(f[43..46], [0, 0, 0], "reserved");
    assert_eq!(f[46..49], vni.to_be_bytes()[1..], "VNI");
    assert_eq!(f[49], 0, "reserved");
    assert_eq!(&f[50..], inner, "inner frame byte-identical");
    sport
}

fn netconf(ports: Vec<PortId>) -> NetConf {
    NetConf {
        ports,
        mac_limit: 1000,
        aging_secs: 300,
        statics: vec![],
        encrypted: false,
        esp_udp: false,
    }
}

/// Uplink, two overlay networks with an access port each, no tunnels.
fn base() -> Snapshot {
    let mut ports = vec![None; 1024];
    ports[UPLINK as usize] = Some(PortConf::default());
    ports[ACCESS_1 as usize] = Some(PortConf::access(Some(1), 100));
    ports[ACCESS_2 as usize] = Some(PortConf::access(Some(2), 100));
    Snapshot {
        gen: 1,
        ports,
        nets: vec![
            None,
            Some(netconf(vec![ACCESS_1])),
            Some(netconf(vec![ACCESS_2])),
        ],
        uplink: Some(UplinkConf {
            port: UPLINK,
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix: 24,
            gateway: None,
            vxlan_port: VXLAN_PORT,
            mtu: 1500,
            tunnel_gso: false,
            uso: false,
        }),
        vnis: vec![(VNI_1, 1), (VNI_2, 2)],
        tunnels: vec![],
        ..Default::default()
    }
}

/// Adds tunnel port `id` of network `net` towards `vtep`, a peer (in the flood list) if `peer`.
fn add_tunnel(s: &mut Snapshot, id: PortId, net: NetId, vtep: Ipv4Addr, peer: bool) {
    let vni = s
        .vnis
        .iter()
        .find(|&&(_, n)| n == net)
        .map(|&(v, _)| v)
        .expect("an overlay network");
    s.ports[id as usize] = Some(PortConf {
        net: Some(net),
        mac_limit: 1000,
        tunnel: Some(TunnelConf {
            vtep,
            vni,
            encrypted: false,
            esp_udp: false,
        }),
        learn: true,
        ..Default::default()
    });
    s.tunnels.push(((net, u32::from(vtep)), id));
    s.tunnels.sort_unstable();
    if peer {
        let nc = s.nets[net as usize].as_mut().expect("network");
        nc.ports.push(id);
        nc.ports.sort_unstable();
    }
}

fn port_conf(s: &mut Snapshot, id: PortId) -> &mut PortConf {
    s.ports[id as usize].as_mut().expect("port")
}

fn net_conf(s: &mut Snapshot, id: NetId) -> &mut NetConf {
    s.nets[id as usize].as_mut().expect("network")
}

/// The standard topology: `PEER_IP` a peer of both networks.
fn snapshot() -> Snapshot {
    let mut s = base();
    add_tunnel(&mut s, TUN_1, 1, PEER_IP, true);
    add_tunnel(&mut s, TUN_2, 2, PEER_IP, true);
    s
}

/// The standard topology plus `PEER3_IP` as a second peer of network 1.
fn snapshot_two_peers() -> Snapshot {
    let mut s = snapshot();
    add_tunnel(&mut s, TUN_1B, 1, PEER3_IP, true);
    s
}

type Out = BTreeMap<PortId, Vec<Vec<u8>>>;
/// What ports transmitted, with the offload facts each frame carried.
type OutOffload = BTreeMap<PortId, Vec<(Vec<u8>, VnetHdr)>>;

fn only(port: PortId, frames: Vec<Vec<u8>>) -> Out {
    BTreeMap::from([(port, frames)])
}

struct Rig {
    cache: PoolCache,
    worker: Worker<Switch>,
    tx: crossbeam::channel::Sender<(u64, Command<Switch>)>,
    seq: u64,
    peers: BTreeMap<PortId, MemPeer>,
    now: u64,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(snapshot())
    }

    fn with(snap: Snapshot) -> Rig {
        Rig::with_caps(snap, &[])
    }

    /// As [`Rig::with`], ports named in `caps` taking what a port with those caps takes (the
    /// others only finished frames).
    fn with_caps(snap: Snapshot, caps: &[(PortId, TxCaps)]) -> Rig {
        // A few large buffers: for super-frames bigger than a small slot.
        let pool = Pool::with_large(2048, 8).unwrap();
        let (worker, tx) = Worker::new(
            0,
            pool.clone(),
            Switch::new(pool.clone(), 1024),
            Arc::new(Snapshot::default()),
        );
        let mut rig = Rig {
            cache: PoolCache::new(pool.clone()),
            worker,
            tx,
            seq: 0,
            peers: BTreeMap::new(),
            now: NOW,
        };
        for port in [UPLINK, ACCESS_1, ACCESS_2] {
            let (io, peer) = mem::pair(pool.clone(), RING);
            let c = caps.iter().find(|&&(p, _)| p == port).map(|&(_, c)| c);
            let io = io.with_caps(c.unwrap_or(TxCaps::Plain));
            rig.command(Command::Attach {
                port,
                io: PortIo::Mem(io),
                rx: true,
            });
            rig.peers.insert(port, peer);
        }
        rig.command(Command::Config(Arc::new(snap)));
        rig
    }

    fn command(&mut self, c: Command<Switch>) {
        self.seq += 1;
        self.tx.send((self.seq, c)).unwrap();
        self.worker.poll_once(self.now);
    }

    /// Runs the worker once and returns what every port transmitted.
    fn run(&mut self) -> Out {
        self.worker.poll_once(self.now);
        let mut out = BTreeMap::new();
        for (&p, peer) in self.peers.iter_mut() {
            for _ in 0..RING {
                let Some(f) = peer.recv(&mut self.cache) else {
                    break;
                };
                out.entry(p).or_insert_with(Vec::new).push(f);
            }
        }
        out
    }

    /// Sends `frame` with offload facts `ol` on `port` (as a TAP with offloads hands it over),
    /// runs the worker, returns what every port transmitted with the offload facts it carried.
    fn exchange_offload(&mut self, port: PortId, frame: &[u8], ol: VnetHdr) -> OutOffload {
        self.exchange_offload_burst(port, &[(frame.to_vec(), ol)])
    }

    /// As [`Rig::exchange_offload`], for several frames that arrive in one burst.
    fn exchange_offload_burst(&mut self, port: PortId, sent: &[(Vec<u8>, VnetHdr)]) -> OutOffload {
        let pool = self.cache.pool().clone();
        let mut burst = Burst::new();
        for (frame, ol) in sent {
            let mut b = if frame.len() > dataplane::pool::MAX_FRAME {
                pool.alloc_large().unwrap()
            } else {
                self.cache.alloc().unwrap()
            };
            assert!(pool.fill(&mut b, frame));
            pool.set_offload(&mut b, *ol);
            assert!(burst.push(b).is_ok());
        }
        let n = self.peers.get_mut(&port).unwrap().send_burst(&mut burst);
        assert_eq!(n, sent.len());
        self.worker.poll_once(self.now);
        let mut out = BTreeMap::new();
        for (&p, peer) in self.peers.iter_mut() {
            let mut burst = Burst::new();
            while peer.recv_burst(&mut burst) > 0 {
                for b in burst.drain() {
                    let f = (pool.data(&b).to_vec(), pool.offload(&b));
                    out.entry(p).or_insert_with(Vec::new).push(f);
                    self.cache.free(b);
                }
            }
        }
        out
    }

    /// Sends `frame` on `port`, runs the worker, returns what every port transmitted.
    fn exchange(&mut self, port: PortId, frame: &[u8]) -> Out {
        assert!(self
            .peers
            .get_mut(&port)
            .unwrap()
            .send(&mut self.cache, frame));
        self.run()
    }

    /// Moves the clock to `now` and runs the worker (its timers fire on a new second).
    fn advance(&mut self, now: u64) -> Out {
        self.now = now;
        self.run()
    }

    /// Tells the switch that `ip` is at `mac` with an unsolicited ARP reply on the uplink.
    fn resolve(&mut self, mac: [u8; 6], ip: Ipv4Addr) {
        let before = self.event(Event::ArpLearned);
        assert_eq!(self.exchange(UPLINK, &reply_to_us(mac, ip)), Out::new());
        assert_eq!(self.event(Event::ArpLearned), before + 1);
    }

    /// Any pipeline counter by name (panics on a name that is not one).
    fn event_named(&self, name: &str) -> u64 {
        let i = vswitch::counters::layout()
            .index_of(name)
            .unwrap_or_else(|| panic!("no counter named {name}"));
        self.worker.stats().pipeline.at(i).get()
    }

    /// Drop counter `name` (panics on a name that is not one).
    fn dropped(&self, name: &str) -> u64 {
        let (idx, _) = drop_counters()
            .find(|&(_, n)| n == name)
            .unwrap_or_else(|| panic!("no drop counter named {name}"));
        self.worker.stats().pipeline.at(idx).get()
    }

    /// Every drop counter that is not zero, by name.
    fn drops(&self) -> BTreeMap<&'static str, u64> {
        drop_counters()
            .map(|(i, n)| (n, self.worker.stats().pipeline.at(i).get()))
            .filter(|&(_, v)| v > 0)
            .collect()
    }

    fn event(&self, e: Event) -> u64 {
        self.worker.stats().pipeline.at(event_index(e)).get()
    }

    /// The port the MAC table has `mac` behind in `net`, and whether it is static.
    fn fdb(&self, net: NetId, mac: [u8; 6]) -> Option<(PortId, bool)> {
        self.worker
            .pipeline()
            .bridge
            .fdb
            .dump(Some(net))
            .into_iter()
            .find(|e| e.mac == mac)
            .map(|e| (e.port, e.is_static))
    }
}

// (a) Neighbour resolution and encapsulation.

#[test]
fn first_frame_to_a_peer_waits_for_arp_then_leaves_encapsulated() {
    let mut rig = Rig::new();
    let f = inner(BCAST, A, 64);
    // The only other port of network 1 is the tunnel: the frame waits while the switch asks.
    assert_eq!(
        rig.exchange(ACCESS_1, &f),
        only(UPLINK, vec![our_request(PEER_IP)])
    );
    assert_eq!(rig.event(Event::NeighQueued), 1);
    assert_eq!(rig.event(Event::ArpRequests), 1);
    assert_eq!(rig.event(Event::VxlanEncap), 0);

    // The reply releases it, encapsulated towards the MAC the reply gave.
    let out = rig.exchange(UPLINK, &reply_to_us(PEER_MAC, PEER_IP));
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![UPLINK]);
    let frames = &out[&UPLINK];
    assert_eq!(frames.len(), 1);
    check_encap(&frames[0], &f, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(rig.event(Event::VxlanEncap), 1);
    assert_eq!(rig.event(Event::ArpLearned), 1);

    // Now resolved: the next frame goes straight out, with no new request.
    let out = rig.exchange(ACCESS_1, &f);
    let frames = &out[&UPLINK];
    assert_eq!((out.len(), frames.len()), (1, 1));
    check_encap(&frames[0], &f, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(rig.event(Event::ArpRequests), 1);
    assert_eq!(rig.event(Event::NeighQueued), 1);
    assert_eq!(rig.drops(), BTreeMap::new());
    // The tunnel port counts what it carried (inner bytes).
    let c = rig.worker.stats().port(TUN_1);
    assert_eq!((c.tx_packets.get(), c.tx_bytes.get()), (2, 128));
}

#[test]
fn one_flow_keeps_one_source_port_and_flows_spread() {
    let mut rig = Rig::new();
    rig.resolve(PEER_MAC, PEER_IP);
    let mut ports = std::collections::BTreeSet::new();
    for i in 0..16u8 {
        let mut f = inner(BCAST, [0x02, 0, 0, 0, 1, i], 80);
        f[20] = i;
        let a = rig.exchange(ACCESS_1, &f);
        let b = rig.exchange(ACCESS_1, &f);
        let pa = check_encap(&a[&UPLINK][0], &f, VNI_1, PEER_MAC, PEER_IP);
        let pb = check_encap(&b[&UPLINK][0], &f, VNI_1, PEER_MAC, PEER_IP);
        assert_eq!(pa, pb, "same inner flow, same source port");
        ports.insert(pa);
    }
    assert!(ports.len() > 4, "16 flows on {} source ports", ports.len());
}

#[test]
fn frames_wait_for_resolution_in_order_up_to_the_queue_limit() {
    // Unicast to a static remote MAC, so that the refused frame is a counted drop (see
    // `flooded_frames_dropped_by_the_overlay_are_counted` for flooded ones).
    let mut s = snapshot();
    net_conf(&mut s, 1).statics.push((S, TUN_1));
    let mut rig = Rig::with(s);
    let frames: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            let mut f = inner(S, A, 70);
            f[30] = i;
            f
        })
        .collect();
    assert_eq!(
        rig.exchange(ACCESS_1, &frames[0]),
        only(UPLINK, vec![our_request(PEER_IP)])
    );
    for f in &frames[1..] {
        assert_eq!(rig.exchange(ACCESS_1, f), Out::new(), "one request only");
    }
    assert_eq!(rig.event(Event::NeighQueued), 3);
    assert_eq!(rig.dropped("neigh_queue_full"), 1);
    let out = rig.exchange(UPLINK, &reply_to_us(PEER_MAC, PEER_IP));
    let got = &out[&UPLINK];
    assert_eq!(got.len(), 3);
    for (g, f) in got.iter().zip(&frames[..3]) {
        check_encap(g, f, VNI_1, PEER_MAC, PEER_IP);
    }
}

#[test]
fn unanswered_peer_is_retried_then_waiting_frames_are_dropped() {
    let mut s = snapshot();
    net_conf(&mut s, 1).statics.push((S, TUN_1));
    let mut rig = Rig::with(s);
    let f = inner(S, A, 64);
    assert_eq!(
        rig.exchange(ACCESS_1, &f),
        only(UPLINK, vec![our_request(PEER_IP)])
    );
    // Retries once a second, three requests in all, then the frame is dropped by name.
    assert_eq!(
        rig.advance(NOW + 1),
        only(UPLINK, vec![our_request(PEER_IP)])
    );
    assert_eq!(
        rig.advance(NOW + 2),
        only(UPLINK, vec![our_request(PEER_IP)])
    );
    assert_eq!(rig.advance(NOW + 3), Out::new());
    // It left the bridge as forwarded: it counts where a refused frame would, not twice.
    assert_eq!(rig.event(Event::NeighQueueDropped), 1);
    assert_eq!(rig.worker.stats().port(UPLINK).tx_dropped.get(), 1);
    assert_eq!(rig.dropped("neigh_failed"), 0);
    // While the failure holds, frames are dropped at once; no request goes out.
    assert_eq!(rig.exchange(ACCESS_1, &f), Out::new());
    assert_eq!(rig.dropped("neigh_failed"), 1);
    assert_eq!(rig.event(Event::NeighQueueDropped), 1);
    assert_eq!(rig.event(Event::ArpRequests), 3);
    assert_eq!(rig.event(Event::VxlanEncap), 0);
}

#[test]
fn vtep_off_subnet_goes_via_the_gateway_or_is_dropped_without_one() {
    let mut s = base();
    add_tunnel(&mut s, TUN_1, 1, FAR_IP, true);
    s.uplink.as_mut().unwrap().gateway = Some(GW_IP);
    let mut rig = Rig::with(s.clone());
    let f = inner(BCAST, A, 64);
    assert_eq!(
        rig.exchange(ACCESS_1, &f),
        only(UPLINK, vec![our_request(GW_IP)])
    );
    let out = rig.exchange(UPLINK, &reply_to_us(GW_MAC, GW_IP));
    check_encap(&out[&UPLINK][0], &f, VNI_1, GW_MAC, FAR_IP);

    // Without a gateway the far VTEP is unreachable: dropped by name, no ARP for anything.
    s.uplink.as_mut().unwrap().gateway = None;
    net_conf(&mut s, 1).statics.push((S, TUN_1));
    let mut rig = Rig::with(s);
    assert_eq!(rig.exchange(ACCESS_1, &inner(S, A, 64)), Out::new());
    assert_eq!(rig.dropped("vxlan_no_route"), 1);
    assert_eq!(rig.event(Event::ArpRequests), 0);
}

#[test]
fn tunnels_of_two_networks_to_one_vtep_share_its_resolution() {
    let mut rig = Rig::new();
    let f1 = inner(BCAST, A, 64);
    let f2 = inner(BCAST, B, 64);
    assert_eq!(
        rig.exchange(ACCESS_1, &f1),
        only(UPLINK, vec![our_request(PEER_IP)])
    );
    assert_eq!(rig.exchange(ACCESS_2, &f2), Out::new(), "already asked");
    assert_eq!(rig.event(Event::NeighQueued), 2);
    // One reply releases both, each in its own network's VNI.
    let out = rig.exchange(UPLINK, &reply_to_us(PEER_MAC, PEER_IP));
    let got = &out[&UPLINK];
    assert_eq!(got.len(), 2);
    check_encap(&got[0], &f1, VNI_1, PEER_MAC, PEER_IP);
    check_encap(&got[1], &f2, VNI_2, PEER_MAC, PEER_IP);
}

#[test]
fn tunnels_follow_a_peer_whose_mac_changes_once_the_old_mac_stops_answering() {
    let mut rig = Rig::new();
    rig.resolve(PEER_MAC, PEER_IP);
    let f = inner(BCAST, A, 64);
    check_encap(
        &rig.exchange(ACCESS_1, &f)[&UPLINK][0],
        &f,
        VNI_1,
        PEER_MAC,
        PEER_IP,
    );
    // A gratuitous ARP claims a new MAC for the peer (a failover, or a forgery): refused by
    // name, traffic stays on the confirmed MAC, which is reconfirmed at once by unicast.
    let moved = [0x02, 0, 0, 0, 0x22, 0x22];
    let garp = arp(1, BCAST, moved, PEER_IP, [0; 6], PEER_IP);
    assert_eq!(rig.exchange(UPLINK, &garp), Out::new());
    assert_eq!(rig.dropped("arp_mac_change_refused"), 1);
    check_encap(
        &rig.exchange(ACCESS_1, &f)[&UPLINK][0],
        &f,
        VNI_1,
        PEER_MAC,
        PEER_IP,
    );
    let probe = arp(1, PEER_MAC, OUR_MAC, OUR_IP, [0; 6], PEER_IP);
    // The old MAC never answers: three probes, then the entry fails.
    for s in 1..=3 {
        assert_eq!(
            rig.advance(NOW + s),
            only(UPLINK, vec![probe.clone()]),
            "probe {s}"
        );
    }
    assert_eq!(rig.advance(NOW + 4), Out::new());
    // After the failed entry's hold, the next frame resolves by broadcast and the MAC that
    // answers now is taken; both networks' tunnels follow it.
    rig.advance(NOW + 8);
    let out = rig.exchange(ACCESS_1, &f);
    assert_eq!(out, only(UPLINK, vec![our_request(PEER_IP)]));
    assert_eq!(rig.exchange(UPLINK, &reply_to_us(moved, PEER_IP)).len(), 1);
    check_encap(
        &rig.exchange(ACCESS_2, &f)[&UPLINK][0],
        &f,
        VNI_2,
        moved,
        PEER_IP,
    );
    // A gratuitous ARP about an address nobody resolves creates nothing.
    let other = Ipv4Addr::new(192, 168, 50, 40);
    let garp = arp(1, BCAST, moved, other, [0; 6], other);
    assert_eq!(rig.exchange(UPLINK, &garp), Out::new());
    let n = rig.worker.pipeline().overlay.neighbours();
    assert_eq!(n, vec![(PEER_IP, moved)]);
}

#[test]
fn a_forged_arp_reply_for_a_peer_cannot_divert_its_tunnel_while_the_peer_answers() {
    let mut rig = Rig::new();
    rig.resolve(PEER_MAC, PEER_IP);
    let f = inner(BCAST, A, 64);
    let forger = [0x02, 0, 0, 0, 0x66, 0x66];
    for round in 0..3u64 {
        // The forgery (an unsolicited reply to us) is refused...
        assert_eq!(
            rig.exchange(UPLINK, &reply_to_us(forger, PEER_IP)),
            Out::new()
        );
        // ...the real peer answers the unicast probe that follows...
        let probe = arp(1, PEER_MAC, OUR_MAC, OUR_IP, [0; 6], PEER_IP);
        assert_eq!(
            rig.advance(NOW + 1 + round * 2),
            only(UPLINK, vec![probe]),
            "round {round}"
        );
        assert_eq!(
            rig.exchange(UPLINK, &reply_to_us(PEER_MAC, PEER_IP)),
            Out::new()
        );
        // ...and traffic never leaves for the forger.
        check_encap(
            &rig.exchange(ACCESS_1, &f)[&UPLINK][0],
            &f,
            VNI_1,
            PEER_MAC,
            PEER_IP,
        );
        rig.advance(NOW + 2 + round * 2);
    }
    assert_eq!(rig.dropped("arp_mac_change_refused"), 3);
    assert_eq!(
        rig.worker.pipeline().overlay.neighbours(),
        vec![(PEER_IP, PEER_MAC)]
    );
}

// (b) ARP for the uplink address.

#[test]
fn switch_answers_arp_for_its_uplink_address_and_learns_the_asker() {
    let mut rig = Rig::new();
    let req = arp(1, BCAST, PEER_MAC, PEER_IP, [0; 6], OUR_IP);
    let want = arp(2, PEER_MAC, OUR_MAC, OUR_IP, PEER_MAC, PEER_IP);
    assert_eq!(rig.exchange(UPLINK, &req), only(UPLINK, vec![want.clone()]));
    assert_eq!(rig.event(Event::ArpReplied), 1);
    // Padded to the Ethernet minimum: the reply is still exactly 42 bytes.
    let mut padded = req.clone();
    padded.resize(60, 0);
    assert_eq!(rig.exchange(UPLINK, &padded), only(UPLINK, vec![want]));
    assert_eq!(rig.event(Event::ArpReplied), 2);
    // The asker was learned: traffic to it needs no request of its own.
    let f = inner(BCAST, A, 64);
    let out = rig.exchange(ACCESS_1, &f);
    check_encap(&out[&UPLINK][0], &f, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(rig.event(Event::ArpRequests), 0);
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn arp_for_other_addresses_is_ignored_by_name() {
    let mut rig = Rig::new();
    let other = Ipv4Addr::new(192, 168, 50, 99);
    let req = arp(1, BCAST, PEER_MAC, PEER_IP, [0; 6], other);
    assert_eq!(rig.exchange(UPLINK, &req), Out::new());
    assert_eq!(rig.dropped("arp_not_for_us"), 1);
    assert_eq!(rig.event(Event::ArpReplied), 0);
    // A broadcast reply (gratuitous-style) about a third address: not for us either.
    let rep = arp(2, BCAST, PEER_MAC, PEER_IP, B, other);
    assert_eq!(rig.exchange(UPLINK, &rep), Out::new());
    assert_eq!(rig.dropped("arp_not_for_us"), 2);
    // ARP unicast to another MAC never reaches ARP handling: the uplink is not for it.
    let uni = arp(1, B, PEER_MAC, PEER_IP, [0; 6], OUR_IP);
    assert_eq!(rig.exchange(UPLINK, &uni), Out::new());
    assert_eq!(rig.dropped("uplink_not_for_us"), 1);
    assert_eq!(rig.event(Event::ArpReplied), 0);
    // Someone claiming our address is a conflict, not an answer.
    let claim = arp(1, BCAST, PEER_MAC, OUR_IP, [0; 6], OUR_IP);
    assert_eq!(rig.exchange(UPLINK, &claim), Out::new());
    assert_eq!(rig.dropped("arp_address_conflict"), 1);
    assert!(rig.worker.pipeline().overlay.neighbours().is_empty());
}

// (c) Decapsulation and remote learning.

#[test]
fn vxlan_from_a_peer_reaches_only_its_networks_access_port() {
    let mut rig = Rig::new();
    let f = inner(BCAST, R, 64);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &f)),
        only(ACCESS_1, vec![f.clone()])
    );
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_2), &f)),
        only(ACCESS_2, vec![f.clone()])
    );
    assert_eq!(rig.event(Event::VxlanDecap), 2);
    let c = rig.worker.stats().port(TUN_1);
    assert_eq!((c.rx_packets.get(), c.rx_bytes.get()), (1, 64));
    // Nothing went back to the peer (the frame came from its tunnel) and nothing was dropped.
    assert_eq!(rig.event(Event::VxlanEncap), 0);
    assert_eq!(rig.drops(), BTreeMap::new());
    // A large inner frame (the most the uplink MTU carries) comes through whole.
    let big = inner(BCAST, R, 1464);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &big)),
        only(ACCESS_1, vec![big])
    );
}

#[test]
fn remote_mac_is_learned_on_the_tunnel_then_unicast_to_it_is_encapsulated() {
    let mut rig = Rig::new();
    rig.resolve(PEER_MAC, PEER_IP);
    let from_r = inner(BCAST, R, 64);
    rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &from_r));
    assert_eq!(rig.fdb(1, R), Some((TUN_1, false)));
    assert_eq!(rig.fdb(2, R), None, "learned in its own network only");
    // A learned the same way on its access port.
    rig.exchange(ACCESS_1, &inner(BCAST, A, 64));
    // Unicast A -> R: one VXLAN frame to the peer, no flood.
    let to_r = inner(R, A, 90);
    let before = rig.event(Event::Flooded);
    let out = rig.exchange(ACCESS_1, &to_r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[&UPLINK].len(), 1);
    check_encap(&out[&UPLINK][0], &to_r, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(rig.event(Event::Flooded), before);
    // And R -> A comes out of A's port only.
    let to_a = inner(A, R, 90);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &to_a)),
        only(ACCESS_1, vec![to_a])
    );
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn with_learn_remote_off_remote_macs_are_not_learned() {
    let mut s = snapshot();
    port_conf(&mut s, TUN_1).learn = false;
    let mut rig = Rig::with(s);
    rig.resolve(PEER_MAC, PEER_IP);
    let learned = rig.event(Event::MacLearned);
    let from_r = inner(BCAST, R, 64);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &from_r)),
        only(ACCESS_1, vec![from_r])
    );
    assert_eq!(rig.fdb(1, R), None);
    assert_eq!(rig.event(Event::MacLearned), learned);
    // So unicast to R is unknown: flooded, which here reaches the peer all the same.
    let to_r = inner(R, A, 64);
    let uu = rig.event(Event::UnknownUnicast);
    let out = rig.exchange(ACCESS_1, &to_r);
    check_encap(&out[&UPLINK][0], &to_r, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(rig.event(Event::UnknownUnicast), uu + 1);
    // Network 2 still learns from its tunnel.
    rig.exchange(UPLINK, &vxlan(from_peer(VNI_2), &inner(BCAST, R, 64)));
    assert_eq!(rig.fdb(2, R), Some((TUN_2, false)));
}

// (d) Decapsulation drops.

/// An inner Ethernet + IPv4 + UDP packet to UDP port `dport`.
fn inner_udp(dport: u16) -> Vec<u8> {
    let mut f = R.to_vec();
    f.extend_from_slice(&A);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![
        0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 16, 0, 0]);
    f.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]);
    f
}

/// Every bad frame on the uplink, with the drop counter it must move.
fn bad_uplink_frames() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let good_inner = inner(BCAST, R, 64);
    let good = vxlan(from_peer(VNI_1), &good_inner);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut g = good.clone();
        f(&mut g);
        g
    };
    let mut tagged = good_inner.clone();
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    let mut v6 = good.clone();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    vec![
        (
            "I flag clear",
            "vxlan_bad_flags",
            vxlan(
                Outer {
                    flags: 0x00,
                    ..from_peer(VNI_1)
                },
                &good_inner,
            ),
        ),
        (
            "only reserved flags set",
            "vxlan_bad_flags",
            vxlan(
                Outer {
                    flags: 0xf7,
                    ..from_peer(VNI_1)
                },
                &good_inner,
            ),
        ),
        (
            "unknown VNI",
            "vxlan_unknown_vni",
            vxlan(from_peer(300), &good_inner),
        ),
        (
            "unknown source VTEP",
            "vxlan_unknown_vtep",
            vxlan(
                Outer {
                    src_ip: Ipv4Addr::new(192, 168, 50, 9),
                    ..from_peer(VNI_1)
                },
                &good_inner,
            ),
        ),
        (
            "truncated inner frame (13 bytes)",
            "vxlan_truncated_inner",
            vxlan(from_peer(VNI_1), &good_inner[..13]),
        ),
        (
            "empty inner frame",
            "vxlan_truncated_inner",
            vxlan(from_peer(VNI_1), &[]),
        ),
        (
            "802.1Q-tagged inner frame",
            "vxlan_inner_tagged",
            vxlan(from_peer(VNI_1), &tagged),
        ),
        (
            "VXLAN in VXLAN",
            "vxlan_in_vxlan",
            vxlan(from_peer(VNI_1), &inner_udp(4789)),
        ),
        (
            "IPv4 total length past the frame",
            "vxlan_bad_outer",
            with(&|g| {
                let t = u16::from_be_bytes([g[16], g[17]]) + 1;
                g[16..18].copy_from_slice(&t.to_be_bytes());
                fix_ip_csum(g);
            }),
        ),
        (
            "IPv4 total length under the header",
            "vxlan_bad_outer",
            with(&|g| {
                g[16..18].copy_from_slice(&19u16.to_be_bytes());
                fix_ip_csum(g);
            }),
        ),
        (
            "UDP length under 8",
            "vxlan_bad_outer",
            with(&|g| g[38..40].copy_from_slice(&7u16.to_be_bytes())),
        ),
        (
            "UDP length past the IPv4 payload",
            "vxlan_bad_outer",
            with(&|g| {
                let u = u16::from_be_bytes([g[38], g[39]]) + 1;
                g[38..40].copy_from_slice(&u.to_be_bytes());
            }),
        ),
        (
            "no room for the VXLAN header",
            "vxlan_bad_outer",
            with(&|g| g[38..40].copy_from_slice(&12u16.to_be_bytes())),
        ),
        (
            "outer IPv4 header cut short",
            "vxlan_bad_outer",
            good[..30].to_vec(),
        ),
        (
            "outer fragment (MF)",
            "vxlan_fragment",
            with(&|g| {
                g[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
                fix_ip_csum(g);
            }),
        ),
        (
            "bad IPv4 header checksum",
            "vxlan_bad_checksum",
            with(&|g| g[25] ^= 0x01),
        ),
        (
            "bad non-zero UDP checksum",
            "vxlan_bad_checksum",
            with(&|g| {
                fill_udp_csum(g);
                g[41] ^= 0x01;
            }),
        ),
        (
            "not for us: another UDP port",
            "uplink_not_for_us",
            vxlan(
                Outer {
                    dport: 4790,
                    ..from_peer(VNI_1)
                },
                &good_inner,
            ),
        ),
        (
            "not for us: another IPv4 destination",
            "uplink_not_for_us",
            vxlan(
                Outer {
                    dst_ip: Ipv4Addr::new(192, 168, 50, 77),
                    ..from_peer(VNI_1)
                },
                &good_inner,
            ),
        ),
        (
            "not for us: another destination MAC",
            "uplink_not_for_us",
            vxlan(
                Outer {
                    dst_mac: B,
                    ..from_peer(VNI_1)
                },
                &good_inner,
            ),
        ),
        ("not for us: IPv6 EtherType", "uplink_not_for_us", v6),
        ("not for us: runt", "uplink_not_for_us", good[..10].to_vec()),
    ]
}

#[test]
fn bad_vxlan_is_dropped_by_name_and_reaches_no_port() {
    let mut rig = Rig::new();
    rig.resolve(PEER_MAC, PEER_IP);
    for (what, name, frame) in bad_uplink_frames() {
        let before = rig.dropped(name);
        let total: u64 = rig.drops().values().sum();
        assert_eq!(
            rig.exchange(UPLINK, &frame),
            Out::new(),
            "{what} got through"
        );
        assert_eq!(rig.dropped(name), before + 1, "{what}: {name}");
        assert_eq!(
            rig.drops().values().sum::<u64>(),
            total + 1,
            "{what}: one drop, one counter"
        );
    }
    assert_eq!(rig.event(Event::VxlanDecap), 0);
    assert_eq!(rig.fdb(1, R), None, "nothing learned from a dropped frame");
    let c = rig.worker.stats().port(TUN_1);
    assert_eq!(c.rx_packets.get(), 0);
    // The rig still works.
    let f = inner(BCAST, R, 64);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &f)),
        only(ACCESS_1, vec![f])
    );
}

#[test]
fn peer_of_one_network_cannot_inject_into_another() {
    // 192.168.50.3 is a peer of network 1 only: VNI 200 from it is an unknown VTEP.
    let mut rig = Rig::with(snapshot_two_peers());
    let f = inner(BCAST, R, 64);
    let o = Outer {
        src_ip: PEER3_IP,
        src_mac: PEER3_MAC,
        ..from_peer(VNI_2)
    };
    assert_eq!(rig.exchange(UPLINK, &vxlan(o, &f)), Out::new());
    assert_eq!(rig.dropped("vxlan_unknown_vtep"), 1);
}

#[test]
fn reserved_bits_any_source_port_and_a_valid_udp_checksum_are_accepted() {
    let mut rig = Rig::new();
    let f = inner(BCAST, R, 64);
    let mut g = vxlan(
        Outer {
            flags: 0xff,
            sport: 1234,
            ..from_peer(VNI_1)
        },
        &f,
    );
    g[43..46].fill(0xff);
    g[49] = 0xff;
    fill_udp_csum(&mut g);
    assert_ne!(g[40..42], [0, 0]);
    assert_eq!(rig.exchange(UPLINK, &g), only(ACCESS_1, vec![f.clone()]));
    // Ethernet padding after the IPv4 packet is not part of the inner frame.
    let mut padded = vxlan(from_peer(VNI_1), &f);
    padded.extend_from_slice(&[0xee; 6]);
    assert_eq!(rig.exchange(UPLINK, &padded), only(ACCESS_1, vec![f]));
    assert_eq!(rig.drops(), BTreeMap::new());
}

// (e) Head-end replication and the overlay MTU.

#[test]
fn broadcast_is_replicated_once_to_each_peer_of_its_network_only() {
    let mut rig = Rig::with(snapshot_two_peers());
    rig.resolve(PEER_MAC, PEER_IP);
    rig.resolve(PEER3_MAC, PEER3_IP);
    for f in [inner(BCAST, A, 64), inner(R, A, 100)] {
        let out = rig.exchange(ACCESS_1, &f);
        assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![UPLINK]);
        let mut got = out[&UPLINK].clone();
        assert_eq!(got.len(), 2, "one copy per peer of network 1");
        got.sort_by_key(|g| g[33]);
        check_encap(&got[0], &f, VNI_1, PEER_MAC, PEER_IP);
        check_encap(&got[1], &f, VNI_1, PEER3_MAC, PEER3_IP);
    }
    // Network 2's broadcast goes only to its own peer, with its own VNI.
    let f = inner(BCAST, B, 64);
    let out = rig.exchange(ACCESS_2, &f);
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![UPLINK]);
    assert_eq!(out[&UPLINK].len(), 1);
    check_encap(&out[&UPLINK][0], &f, VNI_2, PEER_MAC, PEER_IP);
    assert_eq!(rig.event(Event::VxlanEncap), 5);
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn first_broadcast_resolves_every_peer_and_each_copy_waits_for_its_own() {
    let mut rig = Rig::with(snapshot_two_peers());
    let f = inner(BCAST, A, 64);
    let out = rig.exchange(ACCESS_1, &f);
    let mut reqs = out[&UPLINK].clone();
    reqs.sort();
    let mut want = vec![our_request(PEER_IP), our_request(PEER3_IP)];
    want.sort();
    assert_eq!((out.len(), reqs), (1, want));
    assert_eq!(rig.event(Event::NeighQueued), 2);
    let out = rig.exchange(UPLINK, &reply_to_us(PEER3_MAC, PEER3_IP));
    check_encap(&out[&UPLINK][0], &f, VNI_1, PEER3_MAC, PEER3_IP);
    assert_eq!(out[&UPLINK].len(), 1);
    let out = rig.exchange(UPLINK, &reply_to_us(PEER_MAC, PEER_IP));
    check_encap(&out[&UPLINK][0], &f, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(out[&UPLINK].len(), 1);
}

#[test]
fn inner_frame_over_the_overlay_mtu_is_dropped_as_too_big() {
    let mut s = snapshot();
    net_conf(&mut s, 1).statics.push((S, TUN_1));
    let mut rig = Rig::with(s);
    rig.resolve(PEER_MAC, PEER_IP);
    // Overlay MTU 1500 - 50 = 1450: an inner frame of 14 + 1450 bytes fits exactly.
    let max = inner(S, A, 14 + 1450);
    let out = rig.exchange(ACCESS_1, &max);
    assert_eq!(out[&UPLINK].len(), 1);
    check_encap(&out[&UPLINK][0], &max, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(
        out[&UPLINK][0].len() - 14,
        1500,
        "outer IPv4 packet = uplink MTU"
    );
    let over = inner(S, A, 14 + 1451);
    assert_eq!(rig.exchange(ACCESS_1, &over), Out::new());
    assert_eq!(rig.dropped("vxlan_too_big"), 1);
    assert_eq!(
        rig.drops(),
        BTreeMap::from([("vxlan_too_big", 1)]),
        "never fragmented, nothing else"
    );
    // A smaller uplink MTU shrinks the overlay with it.
    let mut s = snapshot();
    net_conf(&mut s, 1).statics.push((S, TUN_1));
    s.uplink.as_mut().unwrap().mtu = 1000;
    let mut rig = Rig::with(s);
    rig.resolve(PEER_MAC, PEER_IP);
    assert_eq!(rig.exchange(ACCESS_1, &inner(S, A, 14 + 951)), Out::new());
    assert_eq!(rig.dropped("vxlan_too_big"), 1);
    let out = rig.exchange(ACCESS_1, &inner(S, A, 14 + 950));
    assert_eq!(out[&UPLINK].len(), 1);
}

#[test]

fn flooded_frames_dropped_by_the_overlay_are_counted() {
    // The issue: "a frame that would not fit is dropped and counted". In an overlay network
    // broadcast and unknown unicast are flooded to the tunnels, so a big unknown-unicast frame
    // vanishes without a trace.
    let mut rig = Rig::new();
    rig.resolve(PEER_MAC, PEER_IP);
    let over = inner(BCAST, A, 14 + 1451);
    assert_eq!(rig.exchange(ACCESS_1, &over), Out::new());
    assert_eq!(rig.dropped("vxlan_too_big"), 1, "broadcast");
    let over = inner(R, A, 14 + 1451);
    assert_eq!(rig.exchange(ACCESS_1, &over), Out::new());
    assert_eq!(rig.dropped("vxlan_too_big"), 2, "unknown unicast");
    // Likewise a copy refused by a full neighbour queue.
    let mut rig = Rig::new();
    for _ in 0..4 {
        rig.exchange(ACCESS_1, &inner(BCAST, A, 64));
    }
    assert_eq!(rig.event(Event::NeighQueued), 3);
    assert_eq!(rig.dropped("neigh_queue_full"), 1);
}

#[test]

fn frames_from_a_peer_are_not_replicated_to_other_peers() {
    // Full-mesh head-end replication: every VTEP sends to every peer itself, so a VTEP must
    // never relay what one peer sent to another (RFC 7348 section 4.2; Linux's vxlan device
    // never does). Relaying duplicates every broadcast, and among three such switches loops it.
    let mut rig = Rig::with(snapshot_two_peers());
    rig.resolve(PEER_MAC, PEER_IP);
    rig.resolve(PEER3_MAC, PEER3_IP);
    let f = inner(BCAST, R, 64);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &f)),
        only(ACCESS_1, vec![f])
    );
    // Unknown unicast likewise.
    let u = inner(B, R, 64);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &u)),
        only(ACCESS_1, vec![u])
    );
    // And unicast to a MAC behind another peer is not relayed between tunnels either.
    let r3 = [0x02, 0, 0, 0, 0, 0x3a];
    let o3 = Outer {
        src_ip: PEER3_IP,
        src_mac: PEER3_MAC,
        ..from_peer(VNI_1)
    };
    rig.exchange(UPLINK, &vxlan(o3, &inner(BCAST, r3, 64)));
    assert_eq!(rig.fdb(1, r3), Some((TUN_1B, false)));
    let to_r3 = inner(r3, R, 64);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &to_r3)),
        Out::new()
    );
}

// (f) Static remote entries.

#[test]
fn static_remote_entry_sends_unicast_encapsulated_without_learning() {
    let mut s = snapshot();
    net_conf(&mut s, 1).statics.push((S, TUN_1));
    // A control plane that programs entries usually turns learning off too.
    port_conf(&mut s, TUN_1).learn = false;
    let mut rig = Rig::with(s);
    assert_eq!(rig.fdb(1, S), Some((TUN_1, true)));
    rig.resolve(PEER_MAC, PEER_IP);
    let to_s = inner(S, A, 64);
    let out = rig.exchange(ACCESS_1, &to_s);
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![UPLINK]);
    assert_eq!(out[&UPLINK].len(), 1);
    check_encap(&out[&UPLINK][0], &to_s, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(rig.event(Event::Forwarded), 1);
    assert_eq!(rig.event(Event::Flooded), 0);
    assert_eq!(rig.event(Event::UnknownUnicast), 0);
    // Only A (local) was learned; S stays static on the tunnel.
    assert_eq!(rig.event(Event::MacLearned), 1);
    assert_eq!(rig.fdb(1, S), Some((TUN_1, true)));
    // Network 2 does not know S: there it is unknown unicast, flooded to its own peer.
    let out = rig.exchange(ACCESS_2, &inner(S, B, 64));
    check_encap(&out[&UPLINK][0], &inner(S, B, 64), VNI_2, PEER_MAC, PEER_IP);
    assert_eq!(rig.event(Event::UnknownUnicast), 1);
    // S speaking from the peer does not move it or learn anything.
    let from_s = inner(A, S, 64);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &from_s)),
        only(ACCESS_1, vec![from_s])
    );
    assert_eq!(rig.fdb(1, S), Some((TUN_1, true)));
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn static_entry_before_resolution_waits_like_any_frame() {
    let mut s = snapshot();
    net_conf(&mut s, 1).statics.push((S, TUN_1));
    let mut rig = Rig::with(s);
    let to_s = inner(S, A, 64);
    assert_eq!(
        rig.exchange(ACCESS_1, &to_s),
        only(UPLINK, vec![our_request(PEER_IP)])
    );
    let out = rig.exchange(UPLINK, &reply_to_us(PEER_MAC, PEER_IP));
    check_encap(&out[&UPLINK][0], &to_s, VNI_1, PEER_MAC, PEER_IP);
}

/// A TCP/IPv4 frame from `A` to `dst` with `payload`, its checksum left partial (the pseudo
/// header's sum), as a TAP with offloads hands over a super-frame.
fn tcp_super_frame(dst: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&A);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + 20 + payload.len()).unwrap();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    fix_ip_csum(&mut f);
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    // Partial checksum: the folded pseudo-header sum, as the sender's stack leaves it.
    let mut sum: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + u32::from(total - 20);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[50..52].copy_from_slice(&(sum as u16).to_be_bytes());
    f
}

#[test]
fn a_super_frame_with_segments_too_big_for_the_overlay_is_cut_to_fit_and_loses_nothing() {
    let mut snap = snapshot();
    net_conf(&mut snap, 1).statics.push((S, TUN_1));
    let mut rig = Rig::with(snap);
    rig.resolve(PEER_MAC, PEER_IP);
    // A sender whose MTU is 1500 on an overlay of 1450: 1460-byte segments would make
    // 1514-byte inner frames, 50 more than the tunnel carries.
    let payload: Vec<u8> = (0..1600u32).map(|i| (i * 7 + 3) as u8).collect();
    let frame = tcp_super_frame(S, &payload);
    let pool = rig.cache.pool().clone();
    let mut b = rig.cache.alloc().unwrap();
    assert!(pool.fill(&mut b, &frame));
    pool.set_offload(
        &mut b,
        VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1460,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        },
    );
    let mut burst = Burst::new();
    assert!(burst.push(b).is_ok());
    assert_eq!(
        rig.peers.get_mut(&ACCESS_1).unwrap().send_burst(&mut burst),
        1
    );
    let out = rig.run();
    let sent = &out[&UPLINK];
    assert_eq!(sent.len(), 2, "both segments left");
    let mut got = Vec::new();
    for f in sent {
        assert!(f.len() <= 14 + 1500, "fits the uplink: {}", f.len());
        // Outer Ethernet, IPv4, UDP, VXLAN: 50 bytes; inner Ethernet, IPv4, TCP: 54.
        got.extend_from_slice(&f[50 + 54..]);
    }
    assert!(got == payload, "the payload arrives whole, in order");
    assert_eq!(rig.event_named("vxlan_mss_clamped"), 1);
    assert_eq!(rig.dropped("vxlan_segment_lost"), 0);
    assert_eq!(rig.dropped("vxlan_too_big"), 0);
}

// (e) Encrypted overlays: network 1 encrypted, ESP around the VXLAN datagram.

/// The tag's keying material in these tests (AES-128 + salt).
const MASTER: [u8; 20] = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0xca, 0xfe, 0xba, 0xbe,
];

/// The standard topology with network 1 encrypted and, with `key`, SAs of tag 1 both ways with
/// `PEER_IP` (the one towards it primary). Returns also the peer's own sending SA.
fn encrypted(key: bool) -> (Snapshot, Arc<vswitch::esp::sa::Sa>) {
    use vswitch::esp::{ring::EspConf, sa::Sa};
    let mut s = snapshot();
    net_conf(&mut s, 1).encrypted = true;
    if let Some(t) = port_conf(&mut s, TUN_1).tunnel.as_mut() {
        t.encrypted = true;
    }
    let peer_tx = Arc::new(Sa::new(&MASTER, PEER_IP, OUR_IP, 1, 5_000).unwrap());
    if key {
        let tx = Arc::new(Sa::new(&MASTER, OUR_IP, PEER_IP, 1, 1_000).unwrap());
        let rx = Arc::new(Sa::new(&MASTER, PEER_IP, OUR_IP, 1, 0).unwrap());
        s.esp = Arc::new(EspConf::new(vec![tx], vec![rx]));
    }
    (s, peer_tx)
}

/// `frame` (VXLAN from the peer) sealed by the peer's SA as packet `n`.
fn sealed_by(sa: &vswitch::esp::sa::Sa, n: u64, frame: &[u8]) -> Vec<u8> {
    let mut slot = vec![0u8; 64 + frame.len() + 64];
    slot[64..64 + frame.len()].copy_from_slice(frame);
    let (off, len) = sa.seal(n, &mut slot, 64, frame.len()).unwrap();
    slot[off..off + len].to_vec()
}

#[test]
fn encrypted_network_sends_only_esp_that_the_peer_opens() {
    use vswitch::esp::{open::Opener, ring::EspConf, sa::Sa};
    let (snap, _) = encrypted(true);
    let mut rig = Rig::with(snap);
    rig.resolve(PEER_MAC, PEER_IP);
    // The peer's view: its receiving SA for what we send.
    let peer_rx = Sa::new(&MASTER, OUR_IP, PEER_IP, 1, 0).unwrap();
    let peer = EspConf::new(vec![], vec![Arc::new(peer_rx)]);
    let mut opener = Opener::default();
    for (i, len) in [64usize, 100, 1000, 1413 + 14, 1416 + 14]
        .into_iter()
        .enumerate()
    {
        let f = inner(BCAST, A, len);
        let out = rig.exchange(ACCESS_1, &f);
        let frames = &out[&UPLINK];
        assert_eq!((out.len(), frames.len()), (1, 1));
        let mut p = frames[0].clone();
        assert_eq!(p[23], 50, "IP protocol ESP");
        assert!(p.len() - 14 <= 1500, "fits the uplink MTU");
        assert_eq!(
            u32::from_be_bytes([p[34], p[35], p[36], p[37]]),
            vswitch::esp::sa::derive_spi(OUR_IP, PEER_IP, 1)
        );
        assert_eq!(
            u32::from_be_bytes([p[38], p[39], p[40], p[41]]),
            i as u32 + 1
        );
        let o = opener.open(&peer, &mut p).unwrap();
        check_encap(&p[o.trim..o.trim + o.len], &f, VNI_1, PEER_MAC, PEER_IP);
    }
    // Network 2 is not encrypted: plain VXLAN.
    let f = inner(BCAST, B, 64);
    let out = rig.exchange(ACCESS_2, &f);
    check_encap(&out[&UPLINK][0], &f, VNI_2, PEER_MAC, PEER_IP);
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn esp_from_the_peer_is_opened_and_delivered_replays_are_not() {
    let (snap, peer_tx) = encrypted(true);
    let mut rig = Rig::with(snap);
    let f = inner(BCAST, R, 200);
    let p1 = sealed_by(&peer_tx, 1, &vxlan(from_peer(VNI_1), &f));
    assert_eq!(rig.exchange(UPLINK, &p1), only(ACCESS_1, vec![f.clone()]));
    assert_eq!(rig.exchange(UPLINK, &p1), Out::new());
    assert_eq!(rig.dropped("esp_replay"), 1);
    let mut bad = sealed_by(&peer_tx, 2, &vxlan(from_peer(VNI_1), &f));
    let n = bad.len() - 20;
    bad[n] ^= 1;
    assert_eq!(rig.exchange(UPLINK, &bad), Out::new());
    assert_eq!(rig.dropped("esp_bad_icv"), 1);
    // The failure did not use up sequence number 2.
    let p2 = sealed_by(&peer_tx, 2, &vxlan(from_peer(VNI_1), &f));
    assert_eq!(rig.exchange(UPLINK, &p2), only(ACCESS_1, vec![f.clone()]));
    assert_eq!(
        rig.fdb(1, R),
        Some((TUN_1, false)),
        "learned behind the tunnel"
    );
}

#[test]
fn cleartext_for_an_encrypted_vni_is_dropped_with_or_without_keys_and_peers() {
    let f = inner(BCAST, R, 64);
    // With keys and the peer.
    let (snap, _) = encrypted(true);
    let mut rig = Rig::with(snap);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &f)),
        Out::new()
    );
    assert_eq!(rig.dropped("esp_cleartext"), 1);
    // Network 2 still takes cleartext.
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_2), &f)),
        only(ACCESS_2, vec![f.clone()])
    );
    // No keys.
    let (snap, _) = encrypted(false);
    let mut rig = Rig::with(snap);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &f)),
        Out::new()
    );
    assert_eq!(rig.dropped("esp_cleartext"), 1);
    // No peers at all.
    let mut s = base();
    net_conf(&mut s, 1).encrypted = true;
    let mut rig = Rig::with(s);
    assert_eq!(
        rig.exchange(UPLINK, &vxlan(from_peer(VNI_1), &f)),
        Out::new()
    );
    assert_eq!(rig.dropped("esp_cleartext"), 1);
    assert_eq!(rig.drops().values().sum::<u64>(), 1);
}

#[test]
fn without_a_primary_key_nothing_is_sent() {
    let (snap, _) = encrypted(false);
    let mut rig = Rig::with(snap);
    rig.resolve(PEER_MAC, PEER_IP);
    for _ in 0..3 {
        assert_eq!(rig.exchange(ACCESS_1, &inner(BCAST, A, 64)), Out::new());
    }
    assert_eq!(rig.dropped("esp_no_key"), 3);
}

#[test]
fn flooding_to_two_encrypted_peers_numbers_each_sa_without_gaps() {
    use vswitch::esp::{ring::EspConf, sa::Sa};
    let mut s = snapshot_two_peers();
    net_conf(&mut s, 1).encrypted = true;
    for t in [TUN_1, TUN_1B] {
        if let Some(t) = port_conf(&mut s, t).tunnel.as_mut() {
            t.encrypted = true;
        }
    }
    let tx: Vec<_> = [PEER_IP, PEER3_IP]
        .into_iter()
        .map(|p| Arc::new(Sa::new(&MASTER, OUR_IP, p, 1, 1).unwrap()))
        .collect();
    s.esp = Arc::new(EspConf::new(tx, vec![]));
    let mut rig = Rig::with(s);
    rig.resolve(PEER_MAC, PEER_IP);
    rig.resolve(PEER3_MAC, PEER3_IP);
    let mut seqs: BTreeMap<[u8; 4], Vec<u32>> = BTreeMap::new();
    for i in 0..5u8 {
        let out = rig.exchange(ACCESS_1, &inner(BCAST, [0x02, 0, 0, 0, 7, i], 80));
        for p in &out[&UPLINK] {
            assert_eq!(p[23], 50);
            let dst = [p[30], p[31], p[32], p[33]];
            seqs.entry(dst)
                .or_default()
                .push(u32::from_be_bytes([p[38], p[39], p[40], p[41]]));
        }
    }
    assert_eq!(seqs.get(&PEER_IP.octets()), Some(&vec![1, 2, 3, 4, 5]));
    assert_eq!(seqs.get(&PEER3_IP.octets()), Some(&vec![1, 2, 3, 4, 5]));
}

#[test]
fn a_frame_too_big_once_sealed_is_dropped_before_it_spends_a_sequence_number() {
    let (snap, _) = encrypted(true);
    let mut rig = Rig::with(snap);
    rig.resolve(PEER_MAC, PEER_IP);
    // 1417 bytes of IPv4 fit VXLAN (1450) but not ESP (1416).
    assert_eq!(
        rig.exchange(ACCESS_1, &inner(BCAST, A, 1417 + 14)),
        Out::new()
    );
    assert_eq!(rig.dropped("esp_too_big"), 1);
    let out = rig.exchange(ACCESS_1, &inner(BCAST, A, 1416 + 14));
    let p = &out[&UPLINK][0];
    assert_eq!(p.len() - 14, 1500);
    assert_eq!(
        u32::from_be_bytes([p[38], p[39], p[40], p[41]]),
        1,
        "no number spent"
    );
}

#[test]
fn the_uplink_address_answers_ping_and_nothing_else_is_answered() {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};
    let mut rig = Rig::new();
    let caps = ChecksumCapabilities::default();
    let echo = |dst: Ipv4Addr, ttl: u8| {
        let icmp = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 7,
            data: b"are you there",
        };
        let ip = Ipv4Repr {
            src_addr: PEER_IP,
            dst_addr: dst,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: ttl,
        };
        let mut f = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
        f[..6].copy_from_slice(&OUR_MAC);
        f[6..12].copy_from_slice(&PEER_MAC);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.emit(&mut p, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
        f
    };
    let out = rig.exchange(UPLINK, &echo(OUR_IP, 3));
    let reply = &out[&UPLINK][0];
    assert_eq!(&reply[..6], &PEER_MAC, "back to the sender");
    assert_eq!(&reply[6..12], &OUR_MAC);
    let ip = Ipv4Packet::new_checked(&reply[14..]).unwrap();
    assert!(ip.verify_checksum());
    let repr = Ipv4Repr::parse(&ip, &caps).unwrap();
    assert_eq!(
        (repr.src_addr, repr.dst_addr, repr.hop_limit),
        (OUR_IP, PEER_IP, 64)
    );
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        Icmpv4Repr::parse(&icmp, &caps).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 7,
            data: b"are you there",
        },
        "a valid reply, checksum verified"
    );
    assert_eq!(rig.event_named("uplink_echo_replied"), 1);
    // An echo request for another address is not ours to answer.
    let other = rig.exchange(UPLINK, &echo(Ipv4Addr::new(192, 168, 50, 77), 3));
    assert_eq!(other, Out::new());
    assert_eq!(rig.event_named("uplink_echo_replied"), 1);
}

// (g) UDP tunnel GSO: a TAP uplink that takes VXLAN super-frames whole.

/// The offload facts of a TCPv4 super-frame from [`tcp_super_frame`], as a container's TAP
/// hands it over.
fn tso(gso_size: u16) -> VnetHdr {
    VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 54,
        gso_size,
        csum_start: 34,
        csum_offset: 16,
        ..Default::default()
    }
}

/// The standard topology with an uplink that takes tunnel super-frames, `S` behind `TUN_1`.
fn tunnel_gso_snapshot() -> Snapshot {
    let mut snap = snapshot();
    net_conf(&mut snap, 1).statics.push((S, TUN_1));
    if let Some(u) = snap.uplink.as_mut() {
        u.tunnel_gso = true;
    }
    snap
}

/// The payload of the inner super-frame `inner` cut as `ol` says: each segment's inner frame
/// fits `max`, and the payload comes back whole.
fn cut_payload(inner: &[u8], ol: &VnetHdr, max: usize) -> Vec<u8> {
    let plan = TcpSegments::plan(inner, ol, max).expect("a valid super-frame");
    let mut got = Vec::new();
    for i in 0..plan.count {
        let mut seg = vec![0u8; max];
        let n = plan.write_segment(inner, i, &mut seg).unwrap();
        assert!(n <= max, "segment {i}: {n} bytes");
        got.extend_from_slice(&seg[plan.hdr_len..n]);
    }
    got
}

#[test]
fn a_super_frame_enters_the_tunnel_whole_for_an_uplink_with_tunnel_gso() {
    let mut rig = Rig::with_caps(
        tunnel_gso_snapshot(),
        &[(UPLINK, TxCaps::OffloadTunnel), (ACCESS_1, TxCaps::Offload)],
    );
    rig.resolve(PEER_MAC, PEER_IP);
    let payload: Vec<u8> = (0..1600u32).map(|i| (i * 13 + 5) as u8).collect();
    let frame = tcp_super_frame(S, &payload);
    // Segments of 1460 would not fit the overlay (1464-byte inner frames): lowered to 1410.
    let out = rig.exchange_offload(ACCESS_1, &frame, tso(1460));
    let sent = &out[&UPLINK];
    assert_eq!(
        (out.len(), sent.len()),
        (1, 1),
        "one write for the whole super-frame"
    );
    let (f, ol) = &sent[0];
    // The outer lengths are the super-frame's (the kernel rewrites them per segment), the
    // IPv4 checksum valid for them, the UDP checksum zero; the inner frame unchanged.
    check_encap(f, &frame, VNI_1, PEER_MAC, PEER_IP);
    assert_eq!(
        *ol,
        VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
            hdr_len: 50 + 54,
            gso_size: 1410,
            csum_start: 84,
            csum_offset: 16,
            outer_th: 34,
            inner_nh: 64,
        }
    );
    // What the kernel will cut: every segment fits the tunnel, the payload arrives whole.
    let inner_ol = VnetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        csum_start: 34,
        ..*ol
    };
    assert_eq!(cut_payload(&f[50..], &inner_ol, 1464), payload);
    assert_eq!(rig.event_named("vxlan_encap_gso"), 1);
    assert_eq!(rig.event_named("vxlan_mss_clamped"), 1);
    assert_eq!(rig.event(Event::VxlanEncap), 1);
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn without_tunnel_gso_on_the_uplink_a_super_frame_is_cut_before_encapsulation() {
    let mut snap = tunnel_gso_snapshot();
    if let Some(u) = snap.uplink.as_mut() {
        u.tunnel_gso = false;
    }
    let mut rig = Rig::with_caps(snap, &[(UPLINK, TxCaps::Offload)]);
    rig.resolve(PEER_MAC, PEER_IP);
    let payload: Vec<u8> = (0..1600u32).map(|i| (i * 11 + 1) as u8).collect();
    let out = rig.exchange_offload(ACCESS_1, &tcp_super_frame(S, &payload), tso(600));
    let sent = &out[&UPLINK];
    assert_eq!(sent.len(), 3, "600 + 600 + 400");
    let mut got = Vec::new();
    for (f, ol) in sent {
        assert_eq!(*ol, VnetHdr::default(), "finished packets");
        got.extend_from_slice(&f[50 + 54..]);
    }
    assert_eq!(got, payload);
    assert_eq!(rig.event_named("vxlan_encap_gso"), 0);
    assert_eq!(rig.event(Event::VxlanEncap), 3);
}

#[test]
fn an_encrypted_network_cuts_before_sealing_even_with_tunnel_gso() {
    let (mut snap, _) = encrypted(true);
    net_conf(&mut snap, 1).statics.push((S, TUN_1));
    if let Some(u) = snap.uplink.as_mut() {
        u.tunnel_gso = true;
    }
    let mut rig = Rig::with_caps(snap, &[(UPLINK, TxCaps::OffloadTunnel)]);
    rig.resolve(PEER_MAC, PEER_IP);
    let payload: Vec<u8> = (0..1600u32).map(|i| i as u8).collect();
    let out = rig.exchange_offload(ACCESS_1, &tcp_super_frame(S, &payload), tso(600));
    let sent = &out[&UPLINK];
    assert_eq!(sent.len(), 3, "one ESP packet per segment");
    for (i, (f, ol)) in sent.iter().enumerate() {
        assert_eq!(f[23], 50, "IP protocol ESP");
        assert_eq!(
            u32::from_be_bytes([f[38], f[39], f[40], f[41]]),
            i as u32 + 1
        );
        assert_eq!(*ol, VnetHdr::default());
    }
    assert_eq!(rig.event_named("vxlan_encap_gso"), 0);
    assert_eq!(rig.drops(), BTreeMap::new());
}

/// A VXLAN super-frame from the peer carrying `frame` (a TCP super-frame to `S`... from `A`),
/// with the facts the kernel's VXLAN device gives it on a TAP with tunnel GSO.
fn vxlan_super_frame(frame: &[u8], gso_size: u16) -> (Vec<u8>, VnetHdr) {
    let f = vxlan(from_peer(VNI_1), frame);
    let ol = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
        hdr_len: 50 + 54,
        gso_size,
        csum_start: 84,
        csum_offset: 16,
        outer_th: 34,
        inner_nh: 64,
    };
    (f, ol)
}

#[test]
fn a_vxlan_super_frame_from_the_uplink_reaches_a_tap_whole_and_others_cut() {
    let mut snap = snapshot();
    net_conf(&mut snap, 1).statics.push((A, ACCESS_1));
    let mut rig = Rig::with_caps(snap, &[(ACCESS_1, TxCaps::Offload)]);
    let payload: Vec<u8> = (0..1500u32).map(|i| (i * 7) as u8).collect();
    let mut frame = tcp_super_frame(A, &payload);
    frame[6..12].copy_from_slice(&R);
    let (f, ol) = vxlan_super_frame(&frame, 500);
    let out = rig.exchange_offload(UPLINK, &f, ol);
    let got = &out[&ACCESS_1];
    assert_eq!((out.len(), got.len()), (1, 1), "delivered whole");
    assert_eq!(got[0].0, frame);
    assert_eq!(
        got[0].1,
        VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 0,
            gso_size: 500,
            csum_start: 34,
            csum_offset: 16,
            outer_th: 0,
            inner_nh: 0,
        },
        "only the inner facts"
    );
    assert_eq!(rig.event_named("vxlan_decap_gso"), 1);
    assert_eq!(rig.event(Event::VxlanDecap), 1);

    // To a port that takes only finished frames: cut into valid segments there.
    let mut snap = snapshot();
    net_conf(&mut snap, 1).statics.push((A, ACCESS_1));
    let mut rig = Rig::with(snap);
    let out = rig.exchange_offload(UPLINK, &f, ol);
    let got = &out[&ACCESS_1];
    assert_eq!(got.len(), 3, "500 + 500 + 500");
    let mut data = Vec::new();
    for (seg, sol) in got {
        assert_eq!(*sol, VnetHdr::default());
        data.extend_from_slice(&seg[54..]);
    }
    assert_eq!(data, payload);
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn a_vxlan_super_frame_whose_facts_do_not_fit_is_dropped_by_name() {
    let mut snap = snapshot();
    net_conf(&mut snap, 1).statics.push((A, ACCESS_1));
    let mut rig = Rig::with_caps(snap, &[(ACCESS_1, TxCaps::Offload)]);
    let payload = vec![0x5a; 1200];
    let (f, ol) = vxlan_super_frame(&tcp_super_frame(A, &payload), 500);
    for bad in [
        VnetHdr { inner_nh: 60, ..ol },
        VnetHdr { flags: 0, ..ol },
        VnetHdr {
            gso_type: 3 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
            ..ol
        },
        VnetHdr {
            csum_start: 5000,
            ..ol
        },
    ] {
        assert_eq!(rig.exchange_offload(UPLINK, &f, bad), OutOffload::new());
    }
    assert_eq!(rig.dropped("vxlan_bad_gso"), 4);
    assert_eq!(rig.event_named("vxlan_decap_gso"), 0);
}

/// `frame` (VXLAN from the peer) sealed by the peer's SA as packet `n`, in UDP (RFC 3948).
fn sealed_in_udp_by(sa: &vswitch::esp::sa::Sa, n: u64, frame: &[u8]) -> Vec<u8> {
    let mut slot = vec![0u8; 64 + frame.len() + 64];
    slot[64..64 + frame.len()].copy_from_slice(frame);
    let (off, len) = sa.seal_encap(n, &mut slot, 64, frame.len(), true).unwrap();
    slot[off..off + len].to_vec()
}

/// The UDP super-frame the local kernel hands over for `datagrams` (Ethernet + IPv4 + UDP, all
/// but the last of one size, one 5-tuple), with its offload facts: the first one's headers,
/// lengths for the whole, then every payload.
fn udp_super_frame(datagrams: &[Vec<u8>]) -> (Vec<u8>, VnetHdr) {
    let mut f = datagrams[0][..42].to_vec();
    for d in datagrams {
        f.extend_from_slice(&d[42..]);
    }
    let total = u16::try_from(f.len() - 14).unwrap();
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[38..40].copy_from_slice(&(total - 20).to_be_bytes());
    fix_ip_csum(&mut f);
    let ol = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: dataplane::offload::VIRTIO_NET_HDR_GSO_UDP_L4,
        hdr_len: 42,
        gso_size: u16::try_from(datagrams[0].len() - 42).unwrap(),
        csum_start: 34,
        csum_offset: 6,
        ..Default::default()
    };
    (f, ol)
}

/// Network 1 encrypted with ESP in UDP; the access port takes TCP super-frames. Returns the rig
/// and the peer's sending SA.
fn esp_in_udp_rig() -> (Rig, Arc<vswitch::esp::sa::Sa>) {
    let (mut snap, peer_tx) = encrypted(true);
    net_conf(&mut snap, 1).esp_udp = true;
    if let Some(t) = port_conf(&mut snap, TUN_1).tunnel.as_mut() {
        t.esp_udp = true;
    }
    (
        Rig::with_caps(snap, &[(ACCESS_1, TxCaps::Offload)]),
        peer_tx,
    )
}

/// A flow's TCP segments of 1 000 payload bytes (the last shorter, with PSH), each finished,
/// cut from one super-frame from A to B (flooded to the access port) carrying `payload`, and sealed by `sa` from packet `first_n`
/// on as the peer sends them: VXLAN in ESP in UDP.
fn sealed_segments(
    sa: &vswitch::esp::sa::Sa,
    first_n: u64,
    payload: &[u8],
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    sealed_segments_from(sa, first_n, payload, from_peer(VNI_1))
}

/// As [`sealed_segments`], in VXLAN as `outer` says.
fn sealed_segments_from(
    sa: &vswitch::esp::sa::Sa,
    first_n: u64,
    payload: &[u8],
    outer: Outer,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let sf = tcp_super_frame(B, payload);
    let plan = TcpSegments::plan(&sf, &tso(1000), 2000).unwrap();
    let segs: Vec<Vec<u8>> = (0..plan.count)
        .map(|i| {
            let mut seg = vec![0u8; 2000];
            let n = plan.write_segment(&sf, i, &mut seg).unwrap();
            seg.truncate(n);
            seg
        })
        .collect();
    let sealed = segs
        .iter()
        .enumerate()
        .map(|(i, seg)| sealed_in_udp_by(sa, first_n + i as u64, &vxlan(outer, seg)))
        .collect();
    (segs, sealed)
}

#[test]
fn an_esp_in_udp_super_frame_is_opened_in_place_and_goes_on_as_one_tcp_super_frame() {
    let (mut rig, peer_tx) = esp_in_udp_rig();
    let payload: Vec<u8> = (0..9500u32).map(|i| (i * 11 + i / 253) as u8).collect();
    let (segs, sealed) = sealed_segments(&peer_tx, 1, &payload);
    assert_eq!(segs.len(), 10);
    let (sf, ol) = udp_super_frame(&sealed);
    let out = rig.exchange_offload(UPLINK, &sf, ol);
    assert!(
        out.contains_key(&ACCESS_1),
        "{:?}: {:?}",
        out.keys(),
        rig.drops()
    );
    let got = &out[&ACCESS_1];
    assert_eq!((out.len(), got.len()), (1, 1), "one frame for ten segments");
    let (f, o) = &got[0];
    assert_eq!(
        *o,
        VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        }
    );
    // The first segment's headers, lengths for the whole, the payload whole and in order.
    assert_eq!(f[..16], segs[0][..16]);
    assert_eq!(
        usize::from(u16::from_be_bytes([f[16], f[17]])),
        f.len() - 14
    );
    assert_eq!(csum(&f[14..34]), 0, "inner IPv4 header checksum");
    assert_eq!(f[47] & 0x08, 0x08, "the last segment's PSH");
    assert_eq!(cut_payload(f, o, 2000), payload);
    assert_eq!(rig.event_named("esp_opened"), 10);
    assert_eq!(rig.event_named("udp_gso_opened_whole"), 1);
    assert_eq!(rig.event_named("udp_gso_cut"), 0);
    assert_eq!(rig.drops(), BTreeMap::new());
    assert_eq!(
        rig.fdb(1, A),
        Some((TUN_1, false)),
        "learned behind the tunnel"
    );

    // The same super-frame again: every datagram a replay, each dropped on its own.
    let out = rig.exchange_offload(UPLINK, &sf, ol);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(rig.dropped("esp_replay"), 10);
}

#[test]
fn in_an_esp_in_udp_super_frame_a_bad_datagram_is_dropped_alone_and_the_rest_delivered() {
    let (mut rig, peer_tx) = esp_in_udp_rig();
    let payload: Vec<u8> = (0..7200u32).map(|i| (i * 5 + 1) as u8).collect();
    let (segs, mut sealed) = sealed_segments(&peer_tx, 1, &payload);
    assert_eq!(segs.len(), 8);
    // Datagram 3 changed on the way (its ICV fails); datagram 6 replaced by a non-TCP frame
    // (an inner frame of another kind, sealed in its place).
    let n = sealed[3].len() - 20;
    sealed[3][n] ^= 1;
    let other = inner(B, R, 1000 + 54);
    sealed[6] = sealed_in_udp_by(&peer_tx, 7, &vxlan(from_peer(VNI_1), &other));
    let (sf, ol) = udp_super_frame(&sealed);
    let out = rig.exchange_offload(UPLINK, &sf, ol);
    let got = &out[&ACCESS_1];
    assert_eq!(out.len(), 1);
    // Segments 0-2 merged, 4-5 merged, then the other frame and 7 alone, in order.
    assert_eq!(
        got.len(),
        4,
        "{:?}",
        got.iter().map(|g| g.0.len()).collect::<Vec<_>>()
    );
    for ((f, o), range) in got[..2].iter().zip([0..3000, 4000..6000]) {
        assert_eq!((o.gso_type, o.gso_size), (VIRTIO_NET_HDR_GSO_TCPV4, 1000));
        let merged = cut_payload(f, o, 2000);
        assert!(merged == payload[range], "{} bytes merged", merged.len());
    }
    let alone: Vec<&Vec<u8>> = got[2..].iter().map(|(f, _)| f).collect();
    assert_eq!(alone, vec![&other, &segs[7]]);
    assert!(got[2..].iter().all(|(_, o)| *o == VnetHdr::default()));
    assert_eq!(rig.dropped("esp_bad_icv"), 1);
    assert_eq!(rig.event_named("esp_opened"), 7);
    assert_eq!(rig.event_named("udp_gso_opened_whole"), 1);
    assert_eq!(rig.drops(), BTreeMap::from([("esp_bad_icv", 1)]));

    // A super-frame whose first datagram fails: the run starts at the next one.
    let (_, mut sealed) = sealed_segments(&peer_tx, 9, &payload[..3000]);
    let n = sealed[0].len() - 20;
    sealed[0][n] ^= 1;
    let (sf, ol) = udp_super_frame(&sealed);
    let out = rig.exchange_offload(UPLINK, &sf, ol);
    let got = &out[&ACCESS_1];
    assert_eq!(got.len(), 1);
    assert_eq!(cut_payload(&got[0].0, &got[0].1, 2000), payload[1000..3000]);
    assert_eq!(rig.dropped("esp_bad_icv"), 2);
}

#[test]
fn segments_of_one_flow_split_over_two_esp_in_udp_super_frames_go_on_as_one() {
    let (mut rig, peer_tx) = esp_in_udp_rig();
    let payload: Vec<u8> = (0..12_000u32).map(|i| (i * 3 + i / 97) as u8).collect();
    let (segs, sealed) = sealed_segments(&peer_tx, 1, &payload);
    assert_eq!(segs.len(), 12);
    // The peer's TAP cut its UDP super-frames after 7 datagrams, the inner flow goes on.
    let (a, b) = sealed.split_at(7);
    let burst = [udp_super_frame(a), udp_super_frame(b)];
    let out = rig.exchange_offload_burst(UPLINK, &burst);
    let got = &out[&ACCESS_1];
    assert_eq!(got.len(), 1, "one frame for both super-frames");
    let (f, o) = &got[0];
    assert_eq!((o.gso_type, o.gso_size), (VIRTIO_NET_HDR_GSO_TCPV4, 1000));
    assert!(
        cut_payload(f, o, 2000) == payload,
        "the payload whole and in order"
    );
    assert_eq!(rig.event_named("udp_gso_opened_whole"), 2);
    assert_eq!(rig.drops(), BTreeMap::new());

    // Two flows' segments taking turns, and a super-frame that starts with another flow: each
    // flow's run ends where the other's starts; nothing is lost or reordered within a flow.
    let (segs1, _) = sealed_segments(&peer_tx, 13, &payload[..4000]);
    let other_flow = |seg: &Vec<u8>| {
        let mut seg = seg.clone();
        seg[36..38].copy_from_slice(&0x9c41u16.to_be_bytes());
        // The TCP checksum follows the source port's change (+1).
        let c = u16::from_be_bytes([seg[50], seg[51]]);
        let (c, carry) = c.overflowing_sub(1);
        let c = if carry { c.wrapping_sub(1) } else { c };
        seg[50..52].copy_from_slice(&c.to_be_bytes());
        seg
    };
    let segs2: Vec<Vec<u8>> = segs1.iter().map(other_flow).collect();
    let mut sealed = Vec::new();
    let mut n = 17;
    for (x, y) in segs1.iter().zip(&segs2) {
        for seg in [y, x] {
            sealed.push(sealed_in_udp_by(&peer_tx, n, &vxlan(from_peer(VNI_1), seg)));
            n += 1;
        }
    }
    let out = rig.exchange_offload_burst(UPLINK, &[udp_super_frame(&sealed)]);
    let got: Vec<Vec<u8>> = out[&ACCESS_1].iter().map(|(f, _)| f.clone()).collect();
    let want: Vec<Vec<u8>> = segs2
        .iter()
        .zip(&segs1)
        .flat_map(|(y, x)| [y.clone(), x.clone()])
        .collect();
    assert_eq!(got, want, "each segment alone, in order");
    assert_eq!(rig.drops(), BTreeMap::new());
}

/// Network 1 encrypted with ESP in UDP, `S` behind `TUN_1`, the peer resolved; with `uso`
/// the uplink takes UDP super-frames (so super-frames are sealed whole), the access port TCP
/// super-frames.
fn esp_in_udp_sender_rig(uso: bool) -> Rig {
    let (mut snap, _) = encrypted(true);
    net_conf(&mut snap, 1).esp_udp = true;
    net_conf(&mut snap, 1).statics.push((S, TUN_1));
    if let Some(t) = port_conf(&mut snap, TUN_1).tunnel.as_mut() {
        t.esp_udp = true;
    }
    if let Some(u) = snap.uplink.as_mut() {
        u.uso = uso;
    }
    let uplink = if uso {
        TxCaps::OffloadTunnelUso
    } else {
        TxCaps::Plain
    };
    let mut rig = Rig::with_caps(snap, &[(UPLINK, uplink), (ACCESS_1, TxCaps::Offload)]);
    rig.resolve(PEER_MAC, PEER_IP);
    rig
}

/// The wire packets `f` stands for: a UDP super-frame's datagrams as the kernel cuts them, or
/// `f` itself.
fn wire_packets(f: &[u8], ol: &VnetHdr) -> Vec<Vec<u8>> {
    if !ol.is_udp_gso() {
        return vec![f.to_vec()];
    }
    let plan = dataplane::offload::UdpSegments::plan(f, ol, 2000)
        .expect("a UDP super-frame the kernel takes");
    (0..plan.count)
        .map(|k| {
            let mut p = vec![0u8; 2000];
            let n = plan.write_segment(f, k, &mut p).unwrap();
            p.truncate(n);
            p
        })
        .collect()
}

#[test]
fn an_encrypted_super_frame_is_sealed_into_udp_super_frames_the_peer_opens() {
    use dataplane::offload::VIRTIO_NET_HDR_GSO_UDP_L4;
    use vswitch::esp::{open::Opener, ring::EspConf, sa::Sa};
    let mut rig = esp_in_udp_sender_rig(true);
    let payload: Vec<u8> = (0..65_000u32).map(|i| (i * 7 + i / 509) as u8).collect();
    let frame = tcp_super_frame(S, &payload);
    let out = rig.exchange_offload(ACCESS_1, &frame, tso(1460));
    // Segments of 1 368 bytes (1 422-byte inner frames: the ESP-in-UDP overlay's 1 408 plus
    // Ethernet), 48 of them; a 1 472-byte ESP packet each, 44 to a UDP super-frame.
    let sent = &out[&UPLINK];
    assert_eq!((out.len(), sent.len()), (1, 2), "two UDP super-frames");
    let want = TcpSegments::plan(&frame, &tso(1368), 2000).unwrap();
    assert_eq!(want.count, 48);
    let peer_rx = Sa::new(&MASTER, OUR_IP, PEER_IP, 1, 0).unwrap();
    let peer = EspConf::new(vec![], vec![Arc::new(peer_rx)]);
    let mut opener = Opener::default();
    let mut i = 0;
    for ((f, ol), count) in sent.iter().zip([44, 4]) {
        assert_eq!(
            (
                ol.flags,
                ol.gso_type,
                ol.gso_size,
                ol.csum_start,
                ol.csum_offset
            ),
            (
                VIRTIO_NET_HDR_F_NEEDS_CSUM,
                VIRTIO_NET_HDR_GSO_UDP_L4,
                1472,
                34,
                6
            )
        );
        assert_eq!(&f[36..38], &4500u16.to_be_bytes(), "to the NAT-T port");
        let packets = wire_packets(f, ol);
        assert_eq!(packets.len(), count);
        for mut p in packets {
            assert!(p.len() - 14 <= 1500, "fits the uplink MTU");
            let o = opener.open(&peer, &mut p).expect("the peer opens it");
            assert_eq!(o.seq, i as u32 + 1, "sequence numbers in order");
            let mut seg = vec![0u8; 2000];
            let m = want.write_segment(&frame, i, &mut seg).unwrap();
            check_encap(
                &p[o.trim..o.trim + o.len],
                &seg[..m],
                VNI_1,
                PEER_MAC,
                PEER_IP,
            );
            i += 1;
        }
    }
    assert_eq!(i, 48);
    assert_eq!(rig.event_named("esp_sealed"), 48);
    assert_eq!(rig.event_named("esp_sealed_whole"), 1);
    assert_eq!(rig.drops(), BTreeMap::new());

    // Without USO on the uplink the super-frame is cut before encapsulation: one ESP packet
    // per frame, as before.
    let mut rig = esp_in_udp_sender_rig(false);
    let out = rig.exchange_offload(ACCESS_1, &frame, tso(1460));
    assert_eq!(out[&UPLINK].len(), 48, "{:?}", rig.drops());
    assert!(out[&UPLINK].iter().all(|(_, o)| *o == VnetHdr::default()));
    assert_eq!(rig.event_named("esp_sealed_whole"), 0);
}

/// Network 1 encrypted with ESP in UDP with two peers, `PEER_IP` (`TUN_1`) and `PEER3_IP`
/// (`TUN_1B`); the access port takes TCP super-frames. Returns the rig and the two peers'
/// sending SAs.
fn two_peer_esp_in_udp_rig() -> (Rig, Arc<vswitch::esp::sa::Sa>, vswitch::esp::sa::Sa) {
    use vswitch::esp::{ring::EspConf, sa::Sa};
    let (mut snap, peer_tx) = encrypted(true);
    add_tunnel(&mut snap, TUN_1B, 1, PEER3_IP, true);
    for t in [TUN_1, TUN_1B] {
        if let Some(c) = port_conf(&mut snap, t).tunnel.as_mut() {
            c.encrypted = true;
            c.esp_udp = true;
        }
    }
    net_conf(&mut snap, 1).esp_udp = true;
    let tx = Arc::new(Sa::new(&MASTER, OUR_IP, PEER_IP, 1, 1_000).unwrap());
    let rx = Arc::new(Sa::new(&MASTER, PEER_IP, OUR_IP, 1, 0).unwrap());
    let rx3 = Arc::new(Sa::new(&MASTER, PEER3_IP, OUR_IP, 1, 0).unwrap());
    snap.esp = Arc::new(EspConf::new(vec![tx], vec![rx, rx3]));
    let peer3_tx = Sa::new(&MASTER, PEER3_IP, OUR_IP, 1, 9_000).unwrap();
    let rig = Rig::with_caps(snap, &[(ACCESS_1, TxCaps::Offload)]);
    (rig, peer_tx, peer3_tx)
}

#[test]
fn a_held_run_takes_nothing_from_another_peer() {
    let (mut rig, peer_tx, peer3_tx) = two_peer_esp_in_udp_rig();
    // The first 7 segments of a flow from the peer, the next 5 (the same inner flow) from
    // another peer, in one burst: the second peer's do not join the first's held run.
    let payload: Vec<u8> = (0..12_000u32).map(|i| (i * 13 + 7) as u8).collect();
    let (_, sealed) = sealed_segments(&peer_tx, 1, &payload);
    let from3 = Outer {
        src_mac: PEER3_MAC,
        src_ip: PEER3_IP,
        ..from_peer(VNI_1)
    };
    let (_, sealed3) = sealed_segments_from(&peer3_tx, 1, &payload, from3);
    let burst = [
        udp_super_frame(&sealed[..7]),
        udp_super_frame(&sealed3[7..]),
    ];
    let out = rig.exchange_offload_burst(UPLINK, &burst);
    let got = &out[&ACCESS_1];
    assert_eq!(got.len(), 2, "one frame per peer");
    assert!(cut_payload(&got[0].0, &got[0].1, 2000) == payload[..7000]);
    assert!(cut_payload(&got[1].0, &got[1].1, 2000) == payload[7000..]);
    let c = rig.worker.stats().port(TUN_1B);
    assert_eq!(
        c.rx_packets.get(),
        1,
        "the second came through the other peer's tunnel"
    );
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn a_super_frame_that_fills_the_output_loses_nothing_behind_it() {
    let (mut rig, peer_tx, _) = two_peer_esp_in_udp_rig();
    // A super-frame of 40 datagrams that each go alone (two flows taking turns, each with
    // gaps) fills the stage's output; a plain ESP-in-UDP packet behind it in the same burst
    // still arrives, and all in order.
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 13 + 7) as u8).collect();
    let (segs, _) = sealed_segments(&peer_tx, 100, &payload);
    let mut sealed = Vec::new();
    let mut want = Vec::new();
    let mut n = 200;
    for k in 0..40 {
        let mut seg = segs[k % 10].clone();
        // Every other one to another destination port (its TCP checksum follows the change).
        if k % 2 == 1 {
            seg[36..38].copy_from_slice(&0x1452u16.to_be_bytes());
            let c = u16::from_be_bytes([seg[50], seg[51]]);
            let (c, carry) = c.overflowing_sub(1);
            let c = if carry { c.wrapping_sub(1) } else { c };
            seg[50..52].copy_from_slice(&c.to_be_bytes());
        }
        sealed.push(sealed_in_udp_by(
            &peer_tx,
            n,
            &vxlan(from_peer(VNI_1), &seg),
        ));
        want.push(seg);
        n += 1;
    }
    let alone = sealed_in_udp_by(&peer_tx, n, &vxlan(from_peer(VNI_1), &segs[0]));
    want.push(segs[0].clone());
    let burst = [udp_super_frame(&sealed), (alone, VnetHdr::default())];
    let out = rig.exchange_offload_burst(UPLINK, &burst);
    let got: Vec<Vec<u8>> = out[&ACCESS_1].iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(
        got.len(),
        41,
        "every frame, the plain one behind the super-frame too"
    );
    assert!(got == want, "in order");
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn sequence_numbers_follow_the_wire_order_around_a_super_frame_sealed_whole() {
    use vswitch::esp::{open::Opener, ring::EspConf, sa::Sa};
    let mut rig = esp_in_udp_sender_rig(true);
    // A small frame, a super-frame of 10 segments, a small frame: one burst, one SA.
    let payload: Vec<u8> = (0..13_680u32).map(|i| (i * 5 + 3) as u8).collect();
    let small = inner(S, A, 100);
    let burst = [
        (small.clone(), VnetHdr::default()),
        (tcp_super_frame(S, &payload), tso(1368)),
        (small, VnetHdr::default()),
    ];
    let out = rig.exchange_offload_burst(ACCESS_1, &burst);
    let sent = &out[&UPLINK];
    assert_eq!(sent.len(), 3);
    let peer_rx = Sa::new(&MASTER, OUR_IP, PEER_IP, 1, 0).unwrap();
    let peer = EspConf::new(vec![], vec![Arc::new(peer_rx)]);
    let mut opener = Opener::default();
    let mut seqs = Vec::new();
    for (f, ol) in sent {
        for mut p in wire_packets(f, ol) {
            seqs.push(opener.open(&peer, &mut p).expect("the peer opens it").seq);
        }
    }
    assert_eq!(seqs.len(), 12);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers rise in wire order: {seqs:?}"
    );
    assert_eq!(rig.drops(), BTreeMap::new());
}

#[test]
fn a_frame_before_a_super_frame_cut_for_the_tunnel_leaves_before_its_segments() {
    let mut snap = snapshot();
    net_conf(&mut snap, 1).statics.push((S, TUN_1));
    let mut rig = Rig::with_caps(snap, &[(ACCESS_1, TxCaps::Offload)]);
    rig.resolve(PEER_MAC, PEER_IP);
    // One burst: a small frame, then a super-frame of 40 segments cut before encapsulation
    // (no tunnel GSO on the uplink): more frames than the stage's output holds.
    let small = inner(S, A, 100);
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i * 3 + 1) as u8).collect();
    let burst = [
        (small.clone(), VnetHdr::default()),
        (tcp_super_frame(S, &payload), tso(1000)),
    ];
    let out = rig.exchange_offload_burst(ACCESS_1, &burst);
    let sent = &out[&UPLINK];
    assert_eq!(sent.len(), 41);
    check_encap(&sent[0].0, &small, VNI_1, PEER_MAC, PEER_IP);
    let seqs: Vec<u32> = sent[1..]
        .iter()
        .map(|(f, _)| u32::from_be_bytes([f[88], f[89], f[90], f[91]]))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1000),
        "segments in order: {seqs:?}"
    );
    assert_eq!(rig.drops(), BTreeMap::new());
}
