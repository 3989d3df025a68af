//! Scenario tests of the L2 bridge: a worker driven step by step in the test thread, in-memory
//! ports, frames built from smoltcp `Repr`s, exact bytes checked on every port, a fake clock.

use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use vswitch::config::{
    NetConf, NetId, PortConf, Snapshot, DEFAULT_AGING_SECS, DEFAULT_NET_MAC_LIMIT,
    DEFAULT_PORT_MAC_LIMIT,
};
use vswitch::counters::{drop_index, event_index, DropReason, Event};
use vswitch::pipeline::Switch;

// ---------------------------------------------------------------------------------------------
// The rig: one worker, its in-memory ports, a fake clock.
// ---------------------------------------------------------------------------------------------

/// Buffers in each test's pool.
const POOL_BUFFERS: u32 = 8192;
/// Buffers each in-memory ring holds, each way.
const RING: usize = 1024;
/// Default MAC table capacity for scenario rigs.
const FDB: u32 = 16_384;
/// Most `poll_once` calls one `run` may make before the test declares the worker stuck.
const MAX_POLLS: usize = 10_000;

/// Frames each port's peer collected, by port; ports that got nothing are absent.
type Deliveries = BTreeMap<PortId, Vec<Vec<u8>>>;

struct Rig {
    pool: Arc<Pool>,
    cache: PoolCache,
    worker: Worker<Switch>,
    command: Box<dyn FnMut(Command<Switch>)>,
    peers: BTreeMap<PortId, MemPeer>,
    now: u64,
}

impl Rig {
    /// A worker with a MAC table of `fdb_capacity` entries, ports `ports` attached, `snap`
    /// published, at time 1.
    fn new(fdb_capacity: u32, ports: &[PortId], snap: Snapshot) -> Rig {
        Rig::with_pool(POOL_BUFFERS, fdb_capacity, ports, snap)
    }

    /// As [`Rig::new`], with a pool of `buffers` buffers.
    fn with_pool(buffers: u32, fdb_capacity: u32, ports: &[PortId], snap: Snapshot) -> Rig {
        let pool = Pool::new(buffers).expect("map the buffer pool");
        let (worker, tx) = Worker::new(
            0,
            pool.clone(),
            Switch::new(pool.clone(), fdb_capacity),
            Arc::new(Snapshot::default()),
        );
        let mut seq = 0u64;
        let command = Box::new(move |cmd| {
            seq += 1;
            tx.send((seq, cmd))
                .expect("the worker's command channel is open");
        });
        let mut rig = Rig {
            cache: PoolCache::new(pool.clone()),
            pool,
            worker,
            command,
            peers: BTreeMap::new(),
            now: 1,
        };
        for &p in ports {
            rig.attach(p);
        }
        rig.publish(snap);
        rig
    }

    fn attach(&mut self, port: PortId) {
        let (io, peer) = mem::pair(self.pool.clone(), RING);
        (self.command)(Command::Attach {
            port,
            io: PortIo::Mem(io),
            rx: true,
        });
        self.peers.insert(port, peer);
        self.run();
    }

    /// Takes the port's queue away from the worker; the test keeps the peer to see that nothing
    /// more arrives on it.
    fn detach(&mut self, port: PortId) {
        (self.command)(Command::Detach(port));
        self.run();
    }

    fn publish(&mut self, snap: Snapshot) {
        (self.command)(Command::Config(Arc::new(snap)));
        self.run();
    }

    /// Sets the fake clock (seconds).
    fn at(&mut self, now: u64) {
        self.now = now;
    }

    /// Puts `frame` on the wire of `port` without running the worker.
    fn inject(&mut self, port: PortId, frame: &[u8]) {
        let peer = self
            .peers
            .get_mut(&port)
            .expect("port attached by the test");
        assert!(
            peer.send(&mut self.cache, frame),
            "port {port}'s receive ring took the frame"
        );
    }

    /// Runs the worker until every port's receive ring is empty (commands and timers included).
    fn run(&mut self) {
        for _ in 0..MAX_POLLS {
            if self.worker.poll_once(self.now) == 0 {
                return;
            }
        }
        panic!("the worker still had frames to receive after {MAX_POLLS} polls");
    }

    /// Injects `frame` on `port` and runs the worker.
    fn send(&mut self, port: PortId, frame: &[u8]) {
        self.inject(port, frame);
        self.run();
    }

    /// Injects `frame` on `port`, runs the worker and returns what every port received.
    fn exchange(&mut self, port: PortId, frame: &[u8]) -> Deliveries {
        self.send(port, frame);
        self.deliveries()
    }

    /// Everything the peers collected since the last call, by port.
    fn deliveries(&mut self) -> Deliveries {
        let mut out = Deliveries::new();
        for (&port, peer) in &mut self.peers {
            let mut got = Vec::new();
            for _ in 0..RING {
                match peer.recv(&mut self.cache) {
                    Some(f) => got.push(f),
                    None => break,
                }
            }
            if !got.is_empty() {
                out.insert(port, got);
            }
        }
        out
    }

    fn dropped(&self, why: DropReason) -> u64 {
        self.worker.stats().pipeline.at(drop_index(why)).get()
    }

    /// A pipeline counter by its name (drops and events alike).
    fn counter(&self, name: &str) -> u64 {
        let i = vswitch::counters::layout()
            .index_of(name)
            .unwrap_or_else(|| panic!("no counter named {name}"));
        self.worker.stats().pipeline.at(i).get()
    }

    fn all_drops(&self) -> u64 {
        DropReason::ALL.iter().map(|&d| self.dropped(d)).sum()
    }

    fn events(&self, e: Event) -> u64 {
        self.worker.stats().pipeline.at(event_index(e)).get()
    }

    fn lookup(&self, net: NetId, mac: [u8; 6]) -> Option<PortId> {
        self.worker.pipeline().bridge.fdb.lookup(net, &mac)
    }

    fn port_learned(&self, port: PortId) -> u32 {
        self.worker.pipeline().bridge.fdb.port_learned(port)
    }

    fn rx_packets(&self, port: PortId) -> u64 {
        self.worker.stats().port(port).rx_packets.get()
    }
}

/// The expected deliveries: `frame` on each of `ports`, once.
fn to_each(ports: &[PortId], frame: &[u8]) -> Deliveries {
    ports.iter().map(|&p| (p, vec![frame.to_vec()])).collect()
}

// ---------------------------------------------------------------------------------------------
// Topologies.
// ---------------------------------------------------------------------------------------------

/// Builds a [`Snapshot`]: networks with default limits unless a test narrows them.
struct Topo(Snapshot);

impl Topo {
    fn new(gen: u64) -> Topo {
        Topo(Snapshot {
            gen,
            ports: Vec::new(),
            nets: Vec::new(),
            ..Default::default()
        })
    }

    fn port_conf(&mut self, port: PortId) -> &mut Option<PortConf> {
        let i = usize::from(port);
        if self.0.ports.len() <= i {
            self.0.ports.resize(i + 1, None);
        }
        &mut self.0.ports[i]
    }

    fn net_conf(&mut self, net: NetId) -> &mut NetConf {
        self.0.nets[usize::from(net)]
            .as_mut()
            .expect("network declared first")
    }

    /// Network `net` with `ports` (any order; the flood list is kept in id order).
    fn net(mut self, net: NetId, ports: &[PortId]) -> Topo {
        for &p in ports {
            *self.port_conf(p) = Some(PortConf {
                net: Some(net),
                mac_limit: DEFAULT_PORT_MAC_LIMIT,
                ..Default::default()
            });
        }
        let i = usize::from(net);
        if self.0.nets.len() <= i {
            self.0.nets.resize(i + 1, None);
        }
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        self.0.nets[i] = Some(NetConf {
            ports,
            mac_limit: DEFAULT_NET_MAC_LIMIT,
            aging_secs: DEFAULT_AGING_SECS,
            statics: Vec::new(),
            encrypted: false,
            esp_udp: false,
        });
        self
    }

    /// A configured port that belongs to no network.
    fn unbound(mut self, port: PortId) -> Topo {
        *self.port_conf(port) = Some(PortConf {
            net: None,
            mac_limit: DEFAULT_PORT_MAC_LIMIT,
            ..Default::default()
        });
        self
    }

    fn port_mac_limit(mut self, port: PortId, limit: u32) -> Topo {
        self.port_conf(port)
            .as_mut()
            .expect("port declared first")
            .mac_limit = limit;
        self
    }

    fn mtu(mut self, port: PortId, mtu: u32) -> Topo {
        self.port_conf(port)
            .as_mut()
            .expect("port declared first")
            .mtu = mtu;
        self
    }

    fn net_mac_limit(mut self, net: NetId, limit: u32) -> Topo {
        self.net_conf(net).mac_limit = limit;
        self
    }

    fn aging(mut self, net: NetId, secs: u32) -> Topo {
        self.net_conf(net).aging_secs = secs;
        self
    }

    fn static_mac(mut self, net: NetId, mac: [u8; 6], port: PortId) -> Topo {
        self.net_conf(net).statics.push((mac, port));
        self
    }

    fn build(self) -> Snapshot {
        self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------------------------

const BROADCAST: [u8; 6] = [0xff; 6];
/// The MAC of the IPv4 group 224.0.0.251 (mDNS).
const MDNS_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];

/// A station: a locally administered unicast MAC and an address in 10.0.0.0/16.
#[derive(Debug, Clone, Copy)]
struct Host {
    mac: [u8; 6],
    ip: Ipv4Address,
}

fn host(n: u16) -> Host {
    let [hi, lo] = n.to_be_bytes();
    Host {
        mac: [0x02, 0x00, 0x00, 0x00, hi, lo],
        ip: Ipv4Address::new(10, 0, hi, lo),
    }
}

/// A locally administered unicast MAC from 48 random bits.
fn random_mac(rng: &mut XorShift) -> [u8; 6] {
    let b = rng.next().to_be_bytes();
    [(b[2] & 0xfc) | 0x02, b[3], b[4], b[5], b[6], b[7]]
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf);
    repr.emit(&mut frame);
    frame.payload_mut().copy_from_slice(payload);
    buf
}

fn arp(
    op: ArpOperation,
    dst: [u8; 6],
    from: &Host,
    target_mac: [u8; 6],
    target_ip: Ipv4Address,
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(from.mac),
        source_protocol_addr: from.ip,
        target_hardware_addr: EthernetAddress(target_mac),
        target_protocol_addr: target_ip,
    };
    let mut payload = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut payload));
    ethernet(dst, from.mac, EthernetProtocol::Arp, &payload)
}

impl Host {
    /// "Who has `ip`?", broadcast.
    fn who_has(&self, ip: Ipv4Address) -> Vec<u8> {
        arp(ArpOperation::Request, BROADCAST, self, [0; 6], ip)
    }

    /// "`self.ip` is at `self.mac`", unicast to `to`.
    fn arp_reply(&self, to: &Host) -> Vec<u8> {
        arp(ArpOperation::Reply, to.mac, self, to.mac, to.ip)
    }

    /// An ICMP echo request to `to`.
    fn ping(&self, to: &Host, seq: u16) -> Vec<u8> {
        self.ping_raw(to.mac, to.ip, seq)
    }

    /// An ICMP echo request to `ip` behind `mac` (unicast or a group's MAC).
    fn ping_raw(&self, mac: [u8; 6], ip: Ipv4Address, seq: u16) -> Vec<u8> {
        let caps = ChecksumCapabilities::default();
        let icmp = Icmpv4Repr::EchoRequest {
            ident: 0x5657,
            seq_no: seq,
            data: b"vswitch scenario",
        };
        let ipr = Ipv4Repr {
            src_addr: self.ip,
            dst_addr: ip,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut payload = vec![0u8; ipr.buffer_len() + icmp.buffer_len()];
        let mut packet = Ipv4Packet::new_unchecked(&mut payload);
        ipr.emit(&mut packet, &caps);
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(packet.payload_mut()),
            &caps,
        );
        ethernet(mac, self.mac, EthernetProtocol::Ipv4, &payload)
    }
}

/// A deterministic xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// Learning and forwarding.
// ---------------------------------------------------------------------------------------------

#[test]
fn learns_source_then_forwards_unicast_to_exactly_one_port() {
    let mut rig = Rig::new(
        FDB,
        &[0, 1, 2, 3],
        Topo::new(1).net(1, &[0, 1, 2, 3]).build(),
    );
    let (a, b) = (host(1), host(2));

    let request = a.who_has(b.ip);
    assert_eq!(
        rig.exchange(0, &request),
        to_each(&[1, 2, 3], &request),
        "unknown: flooded"
    );
    assert_eq!(rig.lookup(1, a.mac), Some(0));

    let reply = b.arp_reply(&a);
    assert_eq!(
        rig.exchange(2, &reply),
        to_each(&[0], &reply),
        "a was learned on port 0"
    );
    assert_eq!(rig.lookup(1, b.mac), Some(2));

    let ping = a.ping(&b, 1);
    assert_eq!(
        rig.exchange(0, &ping),
        to_each(&[2], &ping),
        "b was learned on port 2"
    );

    assert_eq!(rig.events(Event::MacLearned), 2);
    assert_eq!(rig.events(Event::Forwarded), 2);
    assert_eq!(rig.events(Event::Flooded), 1);
    assert_eq!(rig.events(Event::FloodCopies), 2);
    assert_eq!(rig.events(Event::UnknownUnicast), 0);
    assert_eq!(rig.all_drops(), 0);
    assert_eq!(rig.worker.stats().port(2).tx_packets.get(), 2);
    assert_eq!(rig.worker.stats().port(0).tx_packets.get(), 1);
    assert_eq!(rig.worker.stats().port(0).rx_packets.get(), 2);
}

#[test]
fn floods_broadcast_multicast_and_unknown_unicast_only_within_network() {
    let snap = Topo::new(1).net(1, &[0, 1, 2]).net(2, &[3, 4]).build();
    let mut rig = Rig::new(FDB, &[0, 1, 2, 3, 4], snap);
    let (a, stranger) = (host(1), host(99));

    let broadcast = a.who_has(stranger.ip);
    assert_eq!(rig.exchange(1, &broadcast), to_each(&[0, 2], &broadcast));

    let multicast = a.ping_raw(MDNS_MAC, Ipv4Address::new(224, 0, 0, 251), 1);
    assert_eq!(rig.exchange(1, &multicast), to_each(&[0, 2], &multicast));

    let unknown = a.ping(&stranger, 2);
    assert_eq!(rig.exchange(1, &unknown), to_each(&[0, 2], &unknown));

    assert_eq!(rig.events(Event::Flooded), 3);
    assert_eq!(rig.events(Event::UnknownUnicast), 1);
    assert_eq!(rig.events(Event::FloodCopies), 3);
    for p in [3, 4] {
        assert_eq!(
            rig.worker.stats().port(p).tx_packets.get(),
            0,
            "port {p} is in another network"
        );
    }
    assert_eq!(
        rig.worker.stats().port(1).tx_packets.get(),
        0,
        "never back to the ingress port"
    );
}

#[test]
fn same_mac_in_two_networks_is_kept_apart() {
    let snap = Topo::new(1).net(1, &[0, 1]).net(2, &[2, 3]).build();
    let mut rig = Rig::new(FDB, &[0, 1, 2, 3], snap);
    // Two stations with the same MACs (cloned VMs), one pair per network.
    let (a, b) = (host(1), host(2));

    rig.send(0, &a.who_has(b.ip));
    rig.send(2, &a.who_has(b.ip));
    rig.send(1, &b.arp_reply(&a));
    rig.send(3, &b.arp_reply(&a));
    rig.deliveries();
    assert_eq!(rig.lookup(1, a.mac), Some(0));
    assert_eq!(rig.lookup(2, a.mac), Some(2));
    assert_eq!(rig.lookup(1, b.mac), Some(1));
    assert_eq!(rig.lookup(2, b.mac), Some(3));
    assert_eq!(
        rig.events(Event::MacMoved),
        0,
        "the same MAC in another network is no station move"
    );
    assert_eq!(rig.events(Event::MacLearned), 4);

    let ping1 = b.ping(&a, 1);
    assert_eq!(rig.exchange(1, &ping1), to_each(&[0], &ping1));
    let ping2 = b.ping(&a, 2);
    assert_eq!(rig.exchange(3, &ping2), to_each(&[2], &ping2));
    let ping3 = a.ping(&b, 3);
    assert_eq!(rig.exchange(2, &ping3), to_each(&[3], &ping3));
}

#[test]
fn station_move_makes_forwarding_follow_the_mac() {
    let mut rig = Rig::new(FDB, &[0, 1, 2], Topo::new(1).net(1, &[0, 1, 2]).build());
    let (a, b) = (host(1), host(2));
    rig.send(0, &a.who_has(b.ip));
    rig.send(1, &b.arp_reply(&a));
    rig.deliveries();

    // a migrates to port 2 and announces itself (gratuitous ARP).
    let garp = a.who_has(a.ip);
    assert_eq!(rig.exchange(2, &garp), to_each(&[0, 1], &garp));
    assert_eq!(rig.events(Event::MacMoved), 1);
    assert_eq!(rig.lookup(1, a.mac), Some(2));
    assert_eq!((rig.port_learned(0), rig.port_learned(2)), (0, 1));

    let ping = b.ping(&a, 1);
    assert_eq!(rig.exchange(1, &ping), to_each(&[2], &ping));
}

// ---------------------------------------------------------------------------------------------
// Aging, with the fake clock.
// ---------------------------------------------------------------------------------------------

#[test]
fn aged_entry_is_forgotten_and_traffic_to_it_floods_again() {
    let snap = Topo::new(1).net(1, &[0, 1, 2]).aging(1, 30).build();
    let mut rig = Rig::new(FDB, &[0, 1, 2], snap);
    let (a, b) = (host(1), host(2));

    rig.at(100);
    rig.send(0, &a.who_has(b.ip));
    rig.deliveries();

    rig.at(129);
    rig.run();
    assert_eq!(
        rig.lookup(1, a.mac),
        Some(0),
        "29 s after it was last seen it is still known"
    );
    let ping = b.ping(&a, 1);
    assert_eq!(rig.exchange(1, &ping), to_each(&[0], &ping));

    rig.at(130);
    rig.run();
    assert_eq!(
        rig.lookup(1, a.mac),
        None,
        "gone once aging_secs have passed"
    );
    assert_eq!(
        rig.events(Event::MacAged),
        1,
        "b was learned at 129 and stays"
    );
    assert_eq!(rig.lookup(1, b.mac), Some(1));

    let ping = b.ping(&a, 2);
    assert_eq!(
        rig.exchange(1, &ping),
        to_each(&[0, 2], &ping),
        "unknown again: flooded"
    );
    assert_eq!(rig.events(Event::UnknownUnicast), 1);
}

#[test]
fn refreshed_entry_survives_aging() {
    let snap = Topo::new(1).net(1, &[0, 1, 2]).aging(1, 30).build();
    let mut rig = Rig::new(FDB, &[0, 1, 2], snap);
    let (a, b) = (host(1), host(2));

    rig.at(100);
    rig.send(0, &a.who_has(b.ip));
    rig.send(1, &b.arp_reply(&a));
    rig.at(120);
    rig.send(0, &a.ping(&b, 1));
    rig.deliveries();

    rig.at(130);
    rig.run();
    assert_eq!(rig.lookup(1, b.mac), None, "b was last seen at 100");
    assert_eq!(rig.lookup(1, a.mac), Some(0), "a was refreshed at 120");
    assert_eq!(rig.events(Event::MacAged), 1);

    let ping = b.ping(&a, 2);
    assert_eq!(rig.exchange(1, &ping), to_each(&[0], &ping));

    rig.at(149);
    rig.run();
    assert_eq!(rig.lookup(1, a.mac), Some(0));
    rig.at(150);
    rig.run();
    assert_eq!(
        rig.lookup(1, a.mac),
        None,
        "30 s after the refresh it goes too"
    );
}

// ---------------------------------------------------------------------------------------------
// Static entries.
// ---------------------------------------------------------------------------------------------

#[test]
fn static_entry_forwards_and_is_not_moved_by_traffic_from_another_port() {
    let gateway = host(254);
    let snap = Topo::new(1)
        .net(1, &[0, 1, 2])
        .aging(1, 10)
        .static_mac(1, gateway.mac, 2)
        .build();
    let mut rig = Rig::new(FDB, &[0, 1, 2], snap);
    let a = host(1);

    let ping = a.ping(&gateway, 1);
    assert_eq!(
        rig.exchange(0, &ping),
        to_each(&[2], &ping),
        "never seen, but static on port 2"
    );

    // Someone on port 1 spoofs the gateway's MAC: forwarded, not learned.
    let spoof = gateway.arp_reply(&a);
    assert_eq!(rig.exchange(1, &spoof), to_each(&[0], &spoof));
    assert_eq!(rig.events(Event::MacStaticConflict), 1);
    assert_eq!(rig.events(Event::MacMoved), 0);
    assert_eq!(rig.lookup(1, gateway.mac), Some(2));

    let ping = a.ping(&gateway, 2);
    assert_eq!(rig.exchange(0, &ping), to_each(&[2], &ping));

    // Static entries never age.
    rig.at(10_000);
    rig.run();
    assert_eq!(rig.lookup(1, a.mac), None, "the learned entry aged");
    assert_eq!(
        rig.lookup(1, gateway.mac),
        Some(2),
        "the static one did not"
    );
    assert_eq!(
        rig.port_learned(2),
        0,
        "statics do not count against the port's limit"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits.
// ---------------------------------------------------------------------------------------------

/// Sends `count` frames from random source MACs on `port` to `dst`, in bounded chunks, draining
/// the peers as it goes; returns the first and last source MACs.
fn flood_random_sources(
    rig: &mut Rig,
    port: PortId,
    dst: &Host,
    count: usize,
    seed: u64,
) -> ([u8; 6], [u8; 6]) {
    let mut rng = XorShift(seed);
    let (mut first, mut last) = ([0; 6], [0; 6]);
    let mut sent = 0;
    while sent < count {
        let chunk = (count - sent).min(256);
        for i in 0..chunk {
            let src = random_mac(&mut rng);
            if sent + i == 0 {
                first = src;
            }
            last = src;
            let frame = ethernet(dst.mac, src, EthernetProtocol::Ipv4, &[0x45; 46]);
            rig.inject(port, &frame);
        }
        rig.run();
        rig.deliveries();
        sent += chunk;
    }
    (first, last)
}

/// Twelve hosts, four on each of ports 1, 2 and 3, learned by one broadcast each.
fn settle_quiet_hosts(rig: &mut Rig) -> Vec<(Host, PortId)> {
    let mut hosts = Vec::new();
    for port in 1..=3u16 {
        for k in 0..4u16 {
            let h = host(port * 16 + k);
            rig.send(port, &h.who_has(host(1).ip));
            hosts.push((h, port));
        }
    }
    rig.deliveries();
    hosts
}

#[test]
fn port_flooding_random_source_macs_evicts_only_its_own_entries() {
    let snap = Topo::new(1)
        .net(1, &[0, 1, 2, 3])
        .port_mac_limit(0, 1000)
        .build();
    let mut rig = Rig::new(FDB, &[0, 1, 2, 3], snap);
    let quiet = settle_quiet_hosts(&mut rig);

    let (first, last) =
        flood_random_sources(&mut rig, 0, &quiet[0].0, 10_000, 0x9e37_79b9_7f4a_7c15);

    assert_eq!(rig.port_learned(0), 1000, "held at the port's limit");
    assert_eq!(rig.events(Event::MacEvictedPortLimit), 9_000);
    assert_eq!(rig.events(Event::MacLearned), 12 + 10_000);
    assert_eq!(rig.lookup(1, first), None, "the oldest went");
    assert_eq!(rig.lookup(1, last), Some(0), "the newest stays");
    assert_eq!(
        rig.events(Event::Forwarded),
        10_000,
        "every flood frame went to exactly one port"
    );

    let probe = host(500);
    for (i, (h, port)) in quiet.iter().enumerate() {
        assert_eq!(
            rig.lookup(1, h.mac),
            Some(*port),
            "{h:?} stays on port {port}"
        );
        let ping = probe.ping(h, i as u16);
        assert_eq!(rig.exchange(0, &ping), to_each(&[*port], &ping));
    }
    for p in 1..=3 {
        assert_eq!(rig.port_learned(p), 4);
    }
}

#[test]
fn network_limit_evicts_from_the_port_with_most_macs() {
    let snap = Topo::new(1)
        .net(1, &[0, 1, 2, 3])
        .net_mac_limit(1, 100)
        .build();
    let mut rig = Rig::new(FDB, &[0, 1, 2, 3], snap);
    let quiet = settle_quiet_hosts(&mut rig);

    flood_random_sources(&mut rig, 0, &quiet[0].0, 1000, 0x2545_f491_4f6c_dd1d);

    assert_eq!(rig.worker.pipeline().bridge.fdb.net_learned(1), 100);
    assert_eq!(rig.port_learned(0), 100 - 12);
    assert_eq!(rig.events(Event::MacEvictedNetworkLimit), 1000 - (100 - 12));
    let probe = host(500);
    for (i, (h, port)) in quiet.iter().enumerate() {
        assert_eq!(
            rig.lookup(1, h.mac),
            Some(*port),
            "{h:?} stays on port {port}"
        );
        let ping = probe.ping(h, i as u16);
        assert_eq!(rig.exchange(0, &ping), to_each(&[*port], &ping));
    }
}

#[test]
fn full_table_evicts_from_the_port_with_most_macs() {
    let mut rig = Rig::new(
        64,
        &[0, 1, 2, 3],
        Topo::new(1).net(1, &[0, 1, 2, 3]).build(),
    );
    let quiet = settle_quiet_hosts(&mut rig);

    flood_random_sources(&mut rig, 0, &quiet[0].0, 500, 7);

    assert_eq!(rig.worker.pipeline().bridge.fdb.len(), 64);
    assert_eq!(rig.port_learned(0), 64 - 12);
    assert_eq!(rig.events(Event::MacEvictedTableFull), 500 - (64 - 12));
    for (h, port) in &quiet {
        assert_eq!(rig.lookup(1, h.mac), Some(*port));
    }
}

#[test]
fn port_with_mac_limit_zero_learns_nothing_but_still_forwards() {
    let snap = Topo::new(1).net(1, &[0, 1]).port_mac_limit(0, 0).build();
    let mut rig = Rig::new(FDB, &[0, 1], snap);
    let (a, b) = (host(1), host(2));
    rig.send(1, &b.who_has(a.ip));
    rig.deliveries();

    let ping = a.ping(&b, 1);
    assert_eq!(rig.exchange(0, &ping), to_each(&[1], &ping));
    assert_eq!(rig.lookup(1, a.mac), None);
    assert_eq!(rig.events(Event::MacLearnRefused), 1);
}

// ---------------------------------------------------------------------------------------------
// Drops, each under its name.
// ---------------------------------------------------------------------------------------------

#[test]
fn frame_shorter_than_ethernet_header_drops_as_eth_too_short() {
    let mut rig = Rig::new(FDB, &[0, 1], Topo::new(1).net(1, &[0, 1]).build());
    let header = ethernet(BROADCAST, host(1).mac, EthernetProtocol::Arp, &[]);
    assert_eq!(header.len(), 14);
    for len in [0, 1, 6, 12, 13] {
        rig.inject(0, &header[..len]);
    }
    rig.run();
    assert_eq!(rig.deliveries(), Deliveries::new());
    assert_eq!(rig.dropped(DropReason::EthTooShort), 5);
    assert_eq!(rig.events(Event::MacLearned), 0);

    assert_eq!(
        rig.exchange(0, &header),
        to_each(&[1], &header),
        "a bare 14-byte header is a frame"
    );
    assert_eq!(rig.dropped(DropReason::EthTooShort), 5);
}

#[test]
fn multicast_broadcast_or_zero_source_drops_as_src_mac_invalid() {
    let mut rig = Rig::new(FDB, &[0, 1], Topo::new(1).net(1, &[0, 1]).build());
    for src in [MDNS_MAC, BROADCAST, [0; 6], [0x03, 0, 0, 0, 0, 1]] {
        rig.inject(
            0,
            &ethernet(BROADCAST, src, EthernetProtocol::Arp, &[0; 28]),
        );
    }
    rig.run();
    assert_eq!(rig.deliveries(), Deliveries::new());
    assert_eq!(rig.dropped(DropReason::SrcMacInvalid), 4);
    assert_eq!(rig.events(Event::MacLearned), 0);
    assert!(rig.worker.pipeline().bridge.fdb.is_empty());
}

#[test]
fn frame_on_port_without_network_drops_as_no_network() {
    // Port 2 is configured but in no network; port 3 is attached but not configured at all.
    let snap = Topo::new(1).net(1, &[0, 1]).unbound(2).build();
    let mut rig = Rig::new(FDB, &[0, 1, 2, 3], snap);
    let a = host(1);
    rig.inject(2, &a.who_has(host(2).ip));
    rig.inject(3, &a.who_has(host(2).ip));
    rig.run();
    assert_eq!(rig.deliveries(), Deliveries::new());
    assert_eq!(rig.dropped(DropReason::NoNetwork), 2);
    assert_eq!(rig.lookup(1, a.mac), None);
    assert!(rig.worker.pipeline().bridge.fdb.is_empty());
}

#[test]
fn destination_behind_ingress_port_drops_as_dst_is_ingress() {
    let mut rig = Rig::new(FDB, &[0, 1], Topo::new(1).net(1, &[0, 1]).build());
    // a and b sit behind the same port (a hub or a nested switch).
    let (a, b) = (host(1), host(2));
    rig.send(0, &a.who_has(b.ip));
    rig.send(0, &b.arp_reply(&a));
    assert_eq!(rig.deliveries(), to_each(&[1], &a.who_has(b.ip)));
    assert_eq!(
        rig.dropped(DropReason::DstIsIngress),
        1,
        "the reply to a stays off the wire"
    );

    rig.send(0, &a.ping(&b, 1));
    assert_eq!(rig.deliveries(), Deliveries::new());
    assert_eq!(rig.dropped(DropReason::DstIsIngress), 2);
}

#[test]
fn flood_from_lone_port_drops_as_no_destination() {
    let snap = Topo::new(1).net(1, &[0, 1]).net(2, &[2]).build();
    let mut rig = Rig::new(FDB, &[0, 1, 2], snap);
    let a = host(1);
    rig.inject(2, &a.who_has(host(2).ip));
    rig.inject(2, &a.ping(&host(3), 1));
    rig.run();
    assert_eq!(rig.deliveries(), Deliveries::new());
    assert_eq!(rig.dropped(DropReason::NoDestination), 2);
    assert_eq!(rig.events(Event::Flooded), 0);
    assert_eq!(rig.events(Event::UnknownUnicast), 1);
}

#[test]
fn flood_into_network_whose_other_ports_are_not_attached_drops_as_no_destination() {
    // Port 1 is configured in the network but has no queue on this worker.
    let mut rig = Rig::new(FDB, &[0], Topo::new(1).net(1, &[0, 1]).build());
    rig.send(0, &host(1).who_has(host(2).ip));
    assert_eq!(rig.dropped(DropReason::NoDestination), 1);
    assert_eq!(rig.worker.stats().port(1).tx_packets.get(), 0);
}

// ---------------------------------------------------------------------------------------------
// Ports coming and going.
// ---------------------------------------------------------------------------------------------

#[test]
fn removed_port_gets_nothing_and_its_macs_are_flushed() {
    let mut rig = Rig::new(FDB, &[0, 1, 2], Topo::new(1).net(1, &[0, 1, 2]).build());
    let (a, b, c) = (host(1), host(2), host(3));
    rig.send(0, &a.who_has(b.ip));
    rig.send(1, &b.arp_reply(&a));
    rig.send(2, &c.who_has(a.ip));
    rig.send(2, &host(4).who_has(a.ip));
    rig.deliveries();
    assert_eq!(rig.port_learned(2), 2);

    rig.publish(Topo::new(2).net(1, &[0, 1]).build());
    rig.detach(2);
    assert_eq!(rig.port_learned(2), 0);
    assert_eq!(rig.lookup(1, c.mac), None);
    assert_eq!(rig.lookup(1, host(4).mac), None);
    assert_eq!(rig.lookup(1, a.mac), Some(0), "other ports keep their MACs");

    let broadcast = a.who_has(c.ip);
    assert_eq!(rig.exchange(0, &broadcast), to_each(&[1], &broadcast));
    let ping = a.ping(&c, 1);
    assert_eq!(
        rig.exchange(0, &ping),
        to_each(&[1], &ping),
        "c is unknown now: flooded to port 1 only"
    );

    // What the removed port's wire still carries is never received.
    let rx_before = rig.rx_packets(2);
    rig.send(2, &c.ping(&a, 2));
    assert_eq!(rig.rx_packets(2), rx_before);
    assert_eq!(rig.deliveries(), Deliveries::new());
    assert_eq!(rig.all_drops(), 0);
}

#[test]
fn unicast_to_port_detached_before_reconfiguration_drops_as_port_down() {
    let mut rig = Rig::new(FDB, &[0, 1, 2], Topo::new(1).net(1, &[0, 1, 2]).build());
    let (a, c) = (host(1), host(3));
    rig.send(2, &c.who_has(a.ip));
    rig.deliveries();

    // The queue goes first; the snapshot that removes the port is not published yet.
    rig.detach(2);
    rig.send(0, &a.ping(&c, 1));
    assert_eq!(rig.dropped(DropReason::PortDown), 1);
    let broadcast = a.who_has(c.ip);
    assert_eq!(
        rig.exchange(0, &broadcast),
        to_each(&[1], &broadcast),
        "floods skip the port"
    );
}

// ---------------------------------------------------------------------------------------------
// Accounting.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_received_frame_is_forwarded_flooded_or_counted_as_a_drop() {
    // Net 1: ports 0-3 (port 8 configured, never attached); net 2: ports 4, 5; port 6 in no
    // network; port 7 alone in net 3.
    let snap = Topo::new(1)
        .net(1, &[0, 1, 2, 3, 8])
        .net(2, &[4, 5])
        .unbound(6)
        .net(3, &[7])
        .build();
    let mut rig = Rig::new(FDB, &[0, 1, 2, 3, 4, 5, 6, 7], snap.clone());
    let net_of = |p: PortId| snap.port(p).and_then(|c| c.net).unwrap_or(0);

    // Two hosts behind each port 0-5, one behind 6 and 7.
    let homes: Vec<(Host, PortId)> = (0..14u16)
        .map(|i| (host(100 + i), if i < 12 { i / 2 } else { i - 6 }))
        .collect();
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    let mut delivered = 0u64;
    let mut attached: Vec<PortId> = (0..8).collect();
    const FRAMES: usize = 20_480;
    const CHUNK: usize = 64;

    for chunk in 0..FRAMES / CHUNK {
        if chunk == FRAMES / CHUNK / 2 {
            // Port 3's queue goes away mid-run: unicast to its hosts becomes port_down.
            rig.detach(3);
            attached.retain(|&p| p != 3);
        }
        for _ in 0..CHUNK {
            let (src_host, home) = homes[rng.below(homes.len() as u64) as usize];
            // Mostly from its home port; sometimes from elsewhere (a station move).
            let mut port = if rng.below(50) == 0 {
                rng.below(8) as PortId
            } else {
                home
            };
            if !attached.contains(&port) {
                port = attached[rng.below(attached.len() as u64) as usize];
            }
            let src = match rng.below(40) {
                0 => MDNS_MAC,
                1 => [0; 6],
                _ => src_host.mac,
            };
            let dst = match rng.below(20) {
                0..=2 => BROADCAST,
                3..=4 => MDNS_MAC,
                5..=7 => random_mac(&mut rng),
                _ => homes[rng.below(homes.len() as u64) as usize].0.mac,
            };
            // Payload marks the ingress port and its network, to check where copies may go.
            let payload_len = 2 + rng.below(100) as usize;
            let mut payload: Vec<u8> = (0..payload_len).map(|_| rng.next() as u8).collect();
            payload[0] = port as u8;
            payload[1] = net_of(port) as u8;
            let mut frame = ethernet(dst, src, EthernetProtocol::Ipv4, &payload);
            if rng.below(20) == 0 {
                frame.truncate(rng.below(14) as usize);
            }
            rig.inject(port, &frame);
        }
        rig.run();
        for (port, frames) in rig.deliveries() {
            for f in frames {
                assert!(f.len() >= 16, "only whole frames leave");
                assert_ne!(f[14], port as u8, "never back to the ingress port");
                assert_eq!(u16::from(f[15]), net_of(port), "never into another network");
                delivered += 1;
            }
        }
    }

    let rx: u64 = (0..9).map(|p| rig.rx_packets(p)).sum();
    let forwarded = rig.events(Event::Forwarded);
    let flooded = rig.events(Event::Flooded);
    let copies = rig.events(Event::FloodCopies);
    assert_eq!(rx, FRAMES as u64);
    assert_eq!(
        rx,
        forwarded + flooded + rig.all_drops(),
        "received = forwarded + flooded + drops"
    );
    assert_eq!(
        delivered,
        forwarded + flooded + copies,
        "on the wire = forwarded + flooded + copies"
    );
    let tx: u64 = (0..9)
        .map(|p| rig.worker.stats().port(p).tx_packets.get())
        .sum();
    let tx_dropped: u64 = (0..9)
        .map(|p| rig.worker.stats().port(p).tx_dropped.get())
        .sum();
    assert_eq!((tx, tx_dropped), (delivered, 0));
    for why in [
        DropReason::EthTooShort,
        DropReason::SrcMacInvalid,
        DropReason::NoNetwork,
        DropReason::DstIsIngress,
        DropReason::PortDown,
        DropReason::NoDestination,
    ] {
        assert!(rig.dropped(why) > 0, "the mix exercised {}", why.name());
    }
    assert_eq!(rig.events(Event::FloodCopyNoBuffers), 0);
    assert!(rig.events(Event::MacMoved) > 0 && rig.events(Event::UnknownUnicast) > 0);

    // Nothing leaked: every buffer is back in the pool or a cache.
    let held = rig.pool.available() + rig.cache.cached() + rig.worker.cache().cached();
    assert_eq!(held, rig.pool.capacity() as usize);
}

// ---------------------------------------------------------------------------------------------
// Reconfiguration of limits, and station moves onto ports at their limit.
// ---------------------------------------------------------------------------------------------

#[test]
fn shrinking_port_mac_limit_evicts_the_oldest_down_to_the_new_limit() {
    let mut rig = Rig::new(FDB, &[0, 1], Topo::new(1).net(1, &[0, 1]).build());
    let (first, last) = flood_random_sources(&mut rig, 0, &host(2), 50, 3);
    assert_eq!(rig.port_learned(0), 50);

    rig.publish(Topo::new(2).net(1, &[0, 1]).port_mac_limit(0, 10).build());
    assert_eq!(rig.port_learned(0), 10);
    assert_eq!(rig.lookup(1, first), None);
    assert_eq!(rig.lookup(1, last), Some(0));
}

#[test]
fn shrinking_network_mac_limit_evicts_down_to_the_new_limit() {
    let mut rig = Rig::new(FDB, &[0, 1], Topo::new(1).net(1, &[0, 1]).build());
    flood_random_sources(&mut rig, 0, &host(2), 50, 3);
    assert_eq!(rig.worker.pipeline().bridge.fdb.net_learned(1), 50);

    rig.publish(Topo::new(2).net(1, &[0, 1]).net_mac_limit(1, 10).build());
    assert_eq!(rig.worker.pipeline().bridge.fdb.net_learned(1), 10);
}

#[test]
fn station_move_onto_port_with_mac_limit_zero_is_refused() {
    let snap = Topo::new(1).net(1, &[0, 1, 2]).port_mac_limit(0, 0).build();
    let mut rig = Rig::new(FDB, &[0, 1, 2], snap);
    let a = host(1);
    rig.send(1, &a.who_has(host(2).ip));
    rig.send(0, &a.who_has(host(2).ip));
    assert_eq!(rig.port_learned(0), 0, "port 0 may learn nothing");
    assert_eq!(rig.events(Event::MacLearnRefused), 1);
}

#[test]
fn station_move_onto_full_port_counts_the_eviction() {
    let snap = Topo::new(1).net(1, &[0, 1, 2]).port_mac_limit(0, 2).build();
    let mut rig = Rig::new(FDB, &[0, 1, 2], snap);
    rig.send(0, &host(10).who_has(host(2).ip));
    rig.send(0, &host(11).who_has(host(2).ip));
    let a = host(1);
    rig.send(1, &a.who_has(host(2).ip));
    rig.send(0, &a.who_has(host(2).ip));
    assert_eq!(rig.lookup(1, a.mac), Some(0));
    assert_eq!(
        rig.lookup(1, host(10).mac),
        None,
        "the port's oldest MAC made room"
    );
    assert_eq!(rig.port_learned(0), 2);
    assert_eq!(rig.events(Event::MacEvictedPortLimit), 1);
}

#[test]
fn flood_short_of_buffers_keeps_the_accounting_invariant() {
    // 64 buffers, and the test's own cache takes them all from the shared ring on its first
    // allocation: the worker finds none for flood copies.
    let mut rig = Rig::with_pool(
        64,
        FDB,
        &[0, 1, 2, 3],
        Topo::new(1).net(1, &[0, 1, 2, 3]).build(),
    );
    let frame = host(1).who_has(host(2).ip);
    assert_eq!(
        rig.exchange(0, &frame),
        to_each(&[3], &frame),
        "the original still goes out"
    );
    assert!(rig.events(Event::FloodCopyNoBuffers) > 0);
    let rx = rig.rx_packets(0);
    assert_eq!(
        rx,
        rig.events(Event::Forwarded) + rig.events(Event::Flooded) + rig.all_drops()
    );
}

#[test]
fn link_local_group_frames_are_consumed_not_forwarded_or_learned() {
    let mut rig = Rig::new(FDB, &[0, 1, 2], Topo::new(1).net(1, &[0, 1, 2]).build());
    let (a, b) = (host(1), host(2));
    let src = [0x02, 0, 0, 0, 0, 0x77];
    // STP, PAUSE, LACP (slow protocols), EAPOL, LLDP, and the last reserved address.
    let reserved: [(u8, u16); 6] = [
        (0x00, 0x0026),
        (0x01, 0x8808),
        (0x02, 0x8809),
        (0x03, 0x888e),
        (0x0e, 0x88cc),
        (0x0f, 0x0800),
    ];
    for (last, ethertype) in reserved {
        let f = ethernet(
            [0x01, 0x80, 0xc2, 0, 0, last],
            src,
            EthernetProtocol::Unknown(ethertype),
            &[0u8; 46],
        );
        assert_eq!(
            rig.exchange(0, &f),
            Deliveries::new(),
            "01:80:c2:00:00:{last:02x}"
        );
    }
    assert_eq!(rig.counter("link_local_dst"), reserved.len() as u64);
    assert_eq!(
        rig.lookup(1, src),
        None,
        "a link-local frame's source is not learned"
    );

    // The group just above the reserved block is ordinary multicast: flooded.
    let above = ethernet(
        [0x01, 0x80, 0xc2, 0, 0, 0x10],
        src,
        EthernetProtocol::Unknown(0x88b5),
        &[0u8; 46],
    );
    assert_eq!(rig.exchange(0, &above), to_each(&[1, 2], &above));

    // Traffic beside it is untouched.
    let request = a.who_has(b.ip);
    assert_eq!(rig.exchange(0, &request), to_each(&[1, 2], &request));
    let reply = b.arp_reply(&a);
    assert_eq!(rig.exchange(1, &reply), to_each(&[0], &reply));
    assert_eq!(rig.counter("link_local_dst"), reserved.len() as u64);
}

#[test]
fn frames_longer_than_a_ports_mtu_are_dropped_by_name_on_the_way_in_and_out() {
    let snap = Topo::new(1)
        .net(1, &[0, 1, 2])
        .mtu(0, 9000)
        .mtu(1, 1500)
        .mtu(2, 1500)
        .build();
    let mut rig = Rig::new(FDB, &[0, 1, 2], snap);
    let (a, b, c) = (host(1), host(2), host(3));
    // Everyone is learned first.
    for (h, port) in [(a, 0), (b, 1), (c, 2)] {
        rig.send(port, &h.who_has(Ipv4Address::new(10, 0, 9, 9)));
    }
    rig.deliveries();
    let frame = |from: &Host, dst: [u8; 6], len: usize| {
        ethernet(dst, from.mac, EthernetProtocol::Ipv4, &vec![0x45; len - 14])
    };

    // Exactly MTU + 14 passes; one byte more does not, towards a 1500 port from a 9000 one.
    let fits = frame(&a, b.mac, 1514);
    assert_eq!(rig.exchange(0, &fits), to_each(&[1], &fits));
    // (In-memory ports carry frames up to a small buffer's size, about 1.7 KB.)
    for len in [1515, 1600, 1700] {
        assert_eq!(
            rig.exchange(0, &frame(&a, b.mac, len)),
            Deliveries::new(),
            "{len}"
        );
    }
    assert_eq!(rig.counter("tx_oversize"), 3);
    // A jumbo broadcast: both copies refused, each counted, and as failed flood copies.
    assert_eq!(
        rig.exchange(0, &frame(&a, BROADCAST, 1700)),
        Deliveries::new()
    );
    assert_eq!(rig.counter("tx_oversize"), 5);
    assert_eq!(rig.events(Event::FloodCopyFailed), 2);

    // A container behind a 1500 port that raised its own MTU: refused as it comes in.
    let big = frame(&b, a.mac, 1600);
    assert_eq!(rig.exchange(1, &big), Deliveries::new());
    assert_eq!(rig.counter("rx_oversize"), 1);
    // Within the MTU from the same port: delivered, and to the jumbo port too.
    let ok = frame(&b, a.mac, 1500);
    assert_eq!(rig.exchange(1, &ok), to_each(&[0], &ok));
    let jumbo_ok = frame(&a, c.mac, 1514);
    assert_eq!(rig.exchange(0, &jumbo_ok), to_each(&[2], &jumbo_ok));
}

/// The bad-input matrix at layer 2 (issue 15): each row is a frame from host A's port with the
/// outcome the switch must give it, a named drop or delivery byte for byte, while a ping between
/// two other hosts goes through before and after every row.
#[test]
fn bad_input_matrix_each_row_named_and_legitimate_traffic_untouched() {
    let snap = Topo::new(1)
        .net(1, &[0, 1, 2, 3])
        .mtu(0, 1500)
        .mtu(1, 1500)
        .mtu(2, 1500)
        .mtu(3, 1500)
        .build();
    let mut rig = Rig::new(FDB, &[0, 1, 2, 3], snap);
    let (a, b, c, d) = (host(1), host(2), host(3), host(4));
    for (h, port) in [(a, 0), (b, 1), (c, 2), (d, 3)] {
        rig.send(port, &h.who_has(Ipv4Address::new(10, 0, 9, 9)));
    }
    rig.deliveries();
    let good = |rig: &mut Rig, seq: u16, row: &str| {
        let ping = c.ping(&d, seq);
        assert_eq!(
            rig.exchange(2, &ping),
            to_each(&[3], &ping),
            "legitimate ping around {row}"
        );
    };
    let ipv4 = |payload_len: usize, ihl: u8, proto: u8, ttl: u8, total: Option<u16>| {
        let mut ip = vec![0u8; 20 + payload_len];
        ip[0] = 0x40 | ihl;
        let tl = total.unwrap_or((20 + payload_len) as u16);
        ip[2..4].copy_from_slice(&tl.to_be_bytes());
        ip[8] = ttl;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&a.ip.octets());
        ip[16..20].copy_from_slice(&b.ip.octets());
        ethernet(b.mac, a.mac, EthernetProtocol::Ipv4, &ip)
    };
    let mut tagged = ethernet(b.mac, a.mac, EthernetProtocol::Ipv4, &[0u8; 46]);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    let mut qinq = ethernet(b.mac, a.mac, EthernetProtocol::Ipv4, &[0u8; 46]);
    qinq.splice(12..12, [0x88, 0xa8, 0x00, 0x64]);
    let padded = |n: usize| {
        let mut f = ipv4(8, 5, 17, 64, None);
        f.extend(std::iter::repeat_n(0xab, n));
        f
    };
    // (row, frame, the drop counter it must land in; None: delivered to B unchanged)
    let rows: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("runt of 10 bytes", vec![0x02; 10], Some("eth_too_short")),
        (
            "13 bytes, no EtherType",
            a.ping(&b, 1)[..13].to_vec(),
            Some("eth_too_short"),
        ),
        (
            "multicast source MAC",
            ethernet(
                b.mac,
                [0x01, 0, 0x5e, 0, 0, 1],
                EthernetProtocol::Ipv4,
                &[0; 46],
            ),
            Some("src_mac_invalid"),
        ),
        (
            "zero source MAC",
            ethernet(b.mac, [0; 6], EthernetProtocol::Ipv4, &[0; 46]),
            Some("src_mac_invalid"),
        ),
        (
            "STP BPDU",
            ethernet(
                [0x01, 0x80, 0xc2, 0, 0, 0],
                a.mac,
                EthernetProtocol::Unknown(0x0026),
                &[0; 46],
            ),
            Some("link_local_dst"),
        ),
        (
            "oversize 1 600 bytes on MTU 1 500",
            ethernet(b.mac, a.mac, EthernetProtocol::Ipv4, &[0; 1586]),
            Some("rx_oversize"),
        ),
        (
            "802.1Q tag on an access port",
            tagged,
            Some("vlan_tag_on_access"),
        ),
        ("802.1ad outer tag", qinq, Some("vlan_qinq")),
        (
            "IPv4 IHL < 5 (layer 2 forwards it as it is)",
            ipv4(26, 4, 17, 64, None),
            None,
        ),
        (
            "IPv4 total length beyond the frame",
            ipv4(26, 5, 17, 64, Some(1400)),
            None,
        ),
        (
            "IPv4 protocol 0 (CVE-2023-1668)",
            ipv4(26, 5, 0, 64, None),
            None,
        ),
        ("IPv4 TTL 0", ipv4(26, 5, 17, 0, None), None),
        ("L2 padding of 1 byte", padded(1), None),
        ("L2 padding of 255 bytes", padded(255), None),
        (
            "L2 padding of 256 bytes (CVE-2020-35498)",
            padded(256),
            None,
        ),
    ];
    for (i, (row, frame, drop)) in rows.iter().enumerate() {
        good(&mut rig, 2 * i as u16, row);
        let before = drop.map(|n| rig.counter(n));
        let got = rig.exchange(0, frame);
        match drop {
            Some(name) => {
                assert_eq!(got, Deliveries::new(), "{row}: nothing delivered");
                assert_eq!(
                    rig.counter(name),
                    before.unwrap() + 1,
                    "{row}: counted as {name}"
                );
            }
            None => assert_eq!(got, to_each(&[1], frame), "{row}: delivered byte for byte"),
        }
        good(&mut rig, 2 * i as u16 + 1, row);
    }
}
