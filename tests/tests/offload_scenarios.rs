//! Scenario tests of offload work done in software: TCP super-frames (TSO/GSO) and frames with a
//! partial L4 checksum, as a TAP port with virtio-net offloads hands them to the switch, leave
//! through in-memory ports (which take only finished frames) and must arrive cut into MSS-sized,
//! fully checksummed segments, or with the checksum completed. One worker driven step by step,
//! frames built by hand, every segment checked byte for byte and with smoltcp, counters and
//! buffer accounting checked after each scenario.

use dataplane::burst::Burst;
use dataplane::checksum::{fold, pseudo_header_v4, pseudo_header_v6, sum16};
use dataplane::offload::{
    VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
};
use dataplane::pool::{Pool, PoolCache, MAX_FRAME};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::swoffload::TxCaps;
use dataplane::worker::{Command, Worker};
use smoltcp::wire::{EthernetFrame, IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use vswitch::config::{
    NetConf, NetId, PortConf, Snapshot, DEFAULT_AGING_SECS, DEFAULT_NET_MAC_LIMIT,
    DEFAULT_PORT_MAC_LIMIT,
};
use vswitch::counters::{drop_index, event_index, DropReason, Event};
use vswitch::pipeline::Switch;

// ---------------------------------------------------------------------------------------------
// The rig: one worker, its in-memory ports, a pool with large buffers.
// ---------------------------------------------------------------------------------------------

/// Small buffers in each test's pool.
const POOL_BUFFERS: u32 = 4096;
/// Large buffers in each test's pool.
const LARGE_BUFFERS: u32 = 16;
/// Buffers each in-memory ring holds, each way.
const RING: usize = 1024;
/// MAC table capacity.
const FDB: u32 = 1024;
/// Most `poll_once` calls one `run` may make before the test declares the worker stuck.
const MAX_POLLS: usize = 10_000;
/// The largest frame a standard Ethernet port sends (1500-byte MTU, untagged).
const ETH_MAX: usize = 1514;

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
    /// A worker over a pool of [`POOL_BUFFERS`] small and [`LARGE_BUFFERS`] large buffers,
    /// ports `ports` attached (in-memory: they take only finished frames), `snap` published.
    fn new(ports: &[PortId], snap: Snapshot) -> Rig {
        Rig::with_caps(ports, snap, &[])
    }

    /// As [`Rig::new`], the ports in `caps` taking what a port with those caps takes.
    fn with_caps(ports: &[PortId], snap: Snapshot, caps: &[(PortId, TxCaps)]) -> Rig {
        let pool = Pool::with_large(POOL_BUFFERS, LARGE_BUFFERS).expect("map the buffer pool");
        assert_eq!(pool.large_capacity(), LARGE_BUFFERS);
        let (worker, tx) = Worker::new(
            0,
            pool.clone(),
            Switch::new(pool.clone(), FDB),
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
            let (io, peer) = mem::pair(rig.pool.clone(), RING);
            let c = caps.iter().find(|&&(q, _)| q == p).map(|&(_, c)| c);
            let io = io.with_caps(c.unwrap_or(TxCaps::Plain));
            (rig.command)(Command::Attach {
                port: p,
                io: PortIo::Mem(io),
                rx: true,
            });
            rig.peers.insert(p, peer);
            rig.run();
        }
        (rig.command)(Command::Config(Arc::new(snap)));
        rig.run();
        rig
    }

    /// Runs the worker until every port's receive ring is empty.
    fn run(&mut self) {
        for _ in 0..MAX_POLLS {
            if self.worker.poll_once(self.now) == 0 {
                return;
            }
        }
        panic!("the worker still had frames to receive after {MAX_POLLS} polls");
    }

    /// Puts an ordinary frame (no offload work) on the wire of `port` and runs the worker.
    fn send(&mut self, port: PortId, frame: &[u8]) {
        let peer = self
            .peers
            .get_mut(&port)
            .expect("port attached by the test");
        assert!(
            peer.send(&mut self.cache, frame),
            "port {port}'s receive ring took the frame"
        );
        self.run();
    }

    /// Puts `frame` carrying the offload facts `ol` on the wire of `port` (in a large buffer
    /// when `large`, else a small one), as a TAP with offloads would hand it over, and runs the
    /// worker.
    fn send_offload(&mut self, port: PortId, frame: &[u8], ol: VnetHdr, large: bool) {
        let pool = self.pool.clone();
        let mut b = if large {
            pool.alloc_large().expect("a free large buffer")
        } else {
            self.cache.alloc().expect("a free small buffer")
        };
        assert_eq!(pool.is_large(&b), large);
        assert!(pool.fill(&mut b, frame), "the frame fits its buffer");
        pool.set_offload(&mut b, ol);
        assert!(pool.has_offload(&b));
        assert_eq!(pool.offload(&b), ol, "offload facts read back as set");
        let mut burst = Burst::new();
        burst
            .push(b)
            .unwrap_or_else(|_| panic!("an empty burst takes a buffer"));
        let peer = self
            .peers
            .get_mut(&port)
            .expect("port attached by the test");
        assert_eq!(peer.send_burst(&mut burst), 1, "port {port}'s ring took it");
        assert!(burst.is_empty());
        self.run();
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

    fn segmented(&self, port: PortId) -> u64 {
        self.worker.stats().port(port).tx_segmented.get()
    }

    fn offload_dropped(&self, port: PortId) -> u64 {
        self.worker.stats().port(port).tx_offload_dropped.get()
    }

    fn tx_packets(&self, port: PortId) -> u64 {
        self.worker.stats().port(port).tx_packets.get()
    }

    fn tx_dropped(&self, port: PortId) -> u64 {
        self.worker.stats().port(port).tx_dropped.get()
    }

    fn events(&self, e: Event) -> u64 {
        self.worker.stats().pipeline.at(event_index(e)).get()
    }

    fn all_drops(&self) -> u64 {
        DropReason::ALL
            .iter()
            .map(|&d| self.worker.stats().pipeline.at(drop_index(d)).get())
            .sum()
    }

    /// Every buffer, small and large, is back in the pool or a cache, and no peer holds frames.
    fn assert_no_leak(&mut self) {
        for (port, peer) in &self.peers {
            assert_eq!(peer.pending(), 0, "port {port} holds uncollected frames");
        }
        let held = self.pool.available() + self.cache.cached() + self.worker.cache().cached();
        assert_eq!(
            held,
            self.pool.capacity() as usize,
            "small buffers back in the pool or a cache"
        );
        assert_eq!(
            self.pool.large_available(),
            LARGE_BUFFERS as usize,
            "large buffers back in the pool"
        );
    }
}

/// A snapshot with network `net` holding `ports` (access ports, default limits).
fn topo(net: NetId, ports: &[PortId]) -> Snapshot {
    let mut snap = Snapshot {
        gen: 1,
        ports: Vec::new(),
        nets: Vec::new(),
        ..Default::default()
    };
    let top = usize::from(*ports.iter().max().expect("some ports"));
    snap.ports.resize(top + 1, None);
    for &p in ports {
        snap.ports[usize::from(p)] = Some(PortConf {
            net: Some(net),
            mac_limit: DEFAULT_PORT_MAC_LIMIT,
            ..Default::default()
        });
    }
    snap.nets.resize(usize::from(net) + 1, None);
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    snap.nets[usize::from(net)] = Some(NetConf {
        ports: sorted,
        mac_limit: DEFAULT_NET_MAC_LIMIT,
        aging_secs: DEFAULT_AGING_SECS,
        statics: Vec::new(),
        encrypted: false,
        esp_udp: false,
    });
    snap
}

// ---------------------------------------------------------------------------------------------
// Frames, built byte by byte.
// ---------------------------------------------------------------------------------------------

/// The TCP sender (behind port 1).
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// The TCP receiver (behind port 2 once learned).
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
/// A station nobody has heard of.
const MAC_UNKNOWN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

const IP4_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP4_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const IP6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const IP6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

const ETH_HDR: usize = 14;
const IPV4_HDR: usize = 20;
const IPV6_HDR: usize = 40;
/// TCP header with NOP, NOP, timestamps (12 bytes of options).
const TCP_HDR: usize = 32;
/// Offset of the checksum field in the TCP header.
const TCP_CSUM: usize = 16;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// A first sequence number close to 2^32, so that the segments' numbers wrap.
const SEQ: u32 = 0xFFFF_C000;
const ACK: u32 = 0x0102_0304;
const IP_ID: u16 = 0xFFFE;

/// How the TCP checksum field of a built frame is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csum {
    /// The complete checksum.
    Full,
    /// What Linux leaves for CHECKSUM_PARTIAL: the folded, not complemented, pseudo-header sum
    /// (with the L4 length).
    Partial,
}

/// One TCP segment (or super-frame) from A to `dst`.
#[derive(Debug, Clone)]
struct Tcp {
    dst: [u8; 6],
    ipv6: bool,
    seq: u32,
    ip_id: u16,
    flags: u8,
    payload: Vec<u8>,
    csum: Csum,
}

impl Tcp {
    fn new(dst: [u8; 6], ipv6: bool, payload: Vec<u8>) -> Tcp {
        Tcp {
            dst,
            ipv6,
            seq: SEQ,
            ip_id: IP_ID,
            flags: TCP_ACK | TCP_PSH,
            payload,
            csum: Csum::Partial,
        }
    }

    fn l4_off(&self) -> usize {
        ETH_HDR + if self.ipv6 { IPV6_HDR } else { IPV4_HDR }
    }

    fn hdr_len(&self) -> usize {
        self.l4_off() + TCP_HDR
    }

    fn build(&self) -> Vec<u8> {
        let l4_len = TCP_HDR + self.payload.len();
        let mut f = Vec::with_capacity(self.hdr_len() + self.payload.len());
        f.extend_from_slice(&self.dst);
        f.extend_from_slice(&MAC_A);
        let pseudo = if self.ipv6 {
            f.extend_from_slice(&0x86DDu16.to_be_bytes());
            // Version 6, traffic class 0x28, flow label 0x1_2345.
            f.extend_from_slice(&[0x62, 0x81, 0x23, 0x45]);
            f.extend_from_slice(&u16::try_from(l4_len).unwrap().to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&IP6_A.octets());
            f.extend_from_slice(&IP6_B.octets());
            pseudo_header_v6(&IP6_A, &IP6_B, 6, u32::try_from(l4_len).unwrap())
        } else {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let ip_start = f.len();
            f.extend_from_slice(&[0x45, 0x10]);
            f.extend_from_slice(&u16::try_from(IPV4_HDR + l4_len).unwrap().to_be_bytes());
            f.extend_from_slice(&self.ip_id.to_be_bytes());
            // Don't fragment.
            f.extend_from_slice(&0x4000u16.to_be_bytes());
            f.extend_from_slice(&[64, 6, 0, 0]);
            f.extend_from_slice(&IP4_A.octets());
            f.extend_from_slice(&IP4_B.octets());
            let csum = !fold(sum16(&f[ip_start..], 0));
            f[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());
            pseudo_header_v4(IP4_A, IP4_B, 6, u16::try_from(l4_len).unwrap())
        };
        let l4 = f.len();
        assert_eq!(l4, self.l4_off());
        f.extend_from_slice(&40_000u16.to_be_bytes());
        f.extend_from_slice(&5201u16.to_be_bytes());
        f.extend_from_slice(&self.seq.to_be_bytes());
        f.extend_from_slice(&ACK.to_be_bytes());
        f.extend_from_slice(&[((TCP_HDR / 4) as u8) << 4, self.flags]);
        f.extend_from_slice(&0x01F5u16.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        // NOP, NOP, timestamps (kind 8, length 10, TSval, TSecr).
        f.extend_from_slice(&[1, 1, 8, 10]);
        f.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        f.extend_from_slice(&0x5566_7788u32.to_be_bytes());
        assert_eq!(f.len(), self.hdr_len());
        f.extend_from_slice(&self.payload);
        let field = match self.csum {
            Csum::Partial => fold(pseudo),
            Csum::Full => !fold(sum16(&f[l4..], pseudo)),
        };
        f[l4 + TCP_CSUM..l4 + TCP_CSUM + 2].copy_from_slice(&field.to_be_bytes());
        f
    }

    /// The virtio-net header a TAP with offloads hands over with this frame: a partial
    /// checksum, and TCP segmentation into `gso_size`-byte segments unless `gso_size` is 0.
    fn vnet(&self, gso_size: u16) -> VnetHdr {
        let gso_type = match (gso_size, self.ipv6) {
            (0, _) => 0,
            (_, false) => VIRTIO_NET_HDR_GSO_TCPV4,
            (_, true) => VIRTIO_NET_HDR_GSO_TCPV6,
        };
        VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type,
            hdr_len: u16::try_from(self.hdr_len()).unwrap(),
            gso_size,
            csum_start: u16::try_from(self.l4_off()).unwrap(),
            csum_offset: TCP_CSUM as u16,
            ..Default::default()
        }
    }

    /// The segments a correct TSO engine makes of this super-frame with `mss`-byte payloads:
    /// the same headers, sequence numbers advancing by the bytes before, IPv4 identification
    /// advancing by one, PSH and FIN only on the last, full checksums.
    fn segments(&self, mss: usize) -> Vec<Vec<u8>> {
        let chunks: Vec<&[u8]> = self.payload.chunks(mss).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let flags = if i == last {
                    self.flags
                } else {
                    self.flags & !(TCP_PSH | TCP_FIN)
                };
                Tcp {
                    seq: self.seq.wrapping_add(u32::try_from(i * mss).unwrap()),
                    ip_id: self.ip_id.wrapping_add(u16::try_from(i).unwrap()),
                    flags,
                    payload: chunk.to_vec(),
                    csum: Csum::Full,
                    ..self.clone()
                }
                .build()
            })
            .collect()
    }
}

/// `len` payload bytes whose value depends on their position (no period shorter than 64 KiB).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8) ^ ((i / 251) as u8).rotate_left(3))
        .collect()
}

/// An ordinary frame from `src` (an ARP-ish broadcast is not needed: any frame teaches the
/// switch its source MAC), sent to `dst`.
fn hello(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    // A local experimental ethertype, zero payload padded to the Ethernet minimum.
    f.extend_from_slice(&0x88B5u16.to_be_bytes());
    f.resize(60, 0);
    f
}

/// Checks every segment independently of the expected bytes: at most [`ETH_MAX`] bytes, valid
/// IP and TCP checksums (smoltcp), consecutive sequence numbers, ACK on all, PSH only on the
/// last, the original L2/L3/L4 header fields kept, and the payloads concatenated equal to
/// `super_frame`'s. Returns the number of segments.
fn check_segments(super_frame: &Tcp, segs: &[Vec<u8>], mss: usize) -> usize {
    assert!(!segs.is_empty(), "no segments");
    let mut payload = Vec::new();
    let mut next_seq = super_frame.seq;
    let last = segs.len() - 1;
    for (i, s) in segs.iter().enumerate() {
        assert!(s.len() <= ETH_MAX, "segment {i} is {} bytes", s.len());
        assert_eq!(s[..12], super_frame.build()[..12], "segment {i} MACs");
        let eth = EthernetFrame::new_checked(&s[..]).expect("an Ethernet frame");
        let (tcp_bytes, src, dst) = if super_frame.ipv6 {
            assert_eq!(s[12..14], [0x86, 0xDD], "segment {i} ethertype");
            let ip = Ipv6Packet::new_checked(eth.payload()).expect("an IPv6 packet");
            assert_eq!(ip.next_header(), smoltcp::wire::IpProtocol::Tcp);
            assert_eq!(ip.hop_limit(), 64);
            assert_eq!(ip.traffic_class(), 0x28);
            assert_eq!(ip.flow_label(), 0x1_2345);
            let len = usize::from(ip.payload_len());
            assert_eq!(IPV6_HDR + len + ETH_HDR, s.len(), "segment {i} length");
            (
                &eth.payload()[IPV6_HDR..IPV6_HDR + len],
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
            )
        } else {
            assert_eq!(s[12..14], [0x08, 0x00], "segment {i} ethertype");
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("an IPv4 packet");
            assert!(ip.verify_checksum(), "segment {i}: IPv4 header checksum");
            assert_eq!(ip.next_header(), smoltcp::wire::IpProtocol::Tcp);
            assert_eq!(usize::from(ip.total_len()) + ETH_HDR, s.len());
            assert!(ip.dont_frag() && !ip.more_frags() && ip.frag_offset() == 0);
            assert_eq!(ip.hop_limit(), 64);
            assert_eq!(
                ip.ident(),
                super_frame.ip_id.wrapping_add(i as u16),
                "segment {i}: identification advances by one"
            );
            let len = usize::from(ip.total_len());
            (
                &eth.payload()[IPV4_HDR..len],
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            )
        };
        let tcp = TcpPacket::new_checked(tcp_bytes).expect("a TCP segment");
        assert!(tcp.verify_checksum(&src, &dst), "segment {i}: TCP checksum");
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40_000, 5201));
        assert_eq!(
            tcp.seq_number().0 as u32,
            next_seq,
            "segment {i}: sequence number"
        );
        assert_eq!(tcp.ack_number().0 as u32, ACK);
        assert!(tcp.ack(), "segment {i}: ACK");
        assert_eq!(tcp.psh(), i == last, "segment {i}: PSH only on the last");
        assert!(!tcp.fin() && !tcp.syn() && !tcp.rst());
        assert_eq!(usize::from(tcp.header_len()), TCP_HDR);
        assert_eq!(
            tcp.options(),
            &[1, 1, 8, 10, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
            "segment {i}: timestamps copied"
        );
        assert_eq!(tcp.window_len(), 0x01F5);
        let data = tcp.payload();
        if i < last {
            assert_eq!(data.len(), mss, "segment {i} carries a full MSS");
        } else {
            assert!(!data.is_empty() && data.len() <= mss);
        }
        next_seq = next_seq.wrapping_add(data.len() as u32);
        payload.extend_from_slice(data);
    }
    assert_eq!(
        payload, super_frame.payload,
        "the segments' payloads concatenated are the original payload"
    );
    segs.len()
}

/// A TCP super-frame from port 1 to a MAC learned behind port 2: cut into MSS-sized, valid
/// segments on port 2 only, counted once as segmented; every buffer comes back.
fn super_frame_to_learned_mac(ipv6: bool, payload: usize, mss: u16) {
    let mut rig = Rig::new(&[1, 2], topo(1, &[1, 2]));
    rig.send(2, &hello(MAC_A, MAC_B));
    assert_eq!(
        rig.deliveries(),
        Deliveries::from([(1, vec![hello(MAC_A, MAC_B)])]),
        "the hello from B is flooded to port 1"
    );
    assert_eq!(rig.worker.pipeline().bridge.fdb.lookup(1, &MAC_B), Some(2));
    let (tx2, segmented_before) = (rig.tx_packets(2), rig.segmented(2));
    assert_eq!((tx2, segmented_before), (0, 0));

    let tcp = Tcp::new(MAC_B, ipv6, pattern(payload));
    let frame = tcp.build();
    assert!(
        frame.len() > MAX_FRAME,
        "the super-frame needs a large buffer"
    );
    rig.send_offload(1, &frame, tcp.vnet(mss), true);

    let got = rig.deliveries();
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        vec![2],
        "delivered on port 2 only"
    );
    let segs = &got[&2];
    let mss = usize::from(mss);
    assert_eq!(segs.len(), payload.div_ceil(mss), "ceil(payload / MSS)");
    assert_eq!(check_segments(&tcp, segs, mss), payload.div_ceil(mss));
    let expected = tcp.segments(mss);
    for (i, (s, e)) in segs.iter().zip(&expected).enumerate() {
        assert!(s == e, "segment {i} differs from what TSO would send");
    }

    assert_eq!(rig.segmented(2), 1, "one super-frame cut");
    assert_eq!(rig.offload_dropped(2), 0);
    assert_eq!(rig.tx_packets(2), segs.len() as u64);
    assert_eq!(rig.tx_dropped(2), 0);
    assert_eq!((rig.segmented(1), rig.tx_packets(1)), (0, 1));
    assert_eq!(rig.events(Event::Forwarded), 1);
    assert_eq!(rig.events(Event::Flooded), 1, "only the hello was flooded");
    assert_eq!(rig.all_drops(), 0);
    rig.assert_no_leak();
}

// ---------------------------------------------------------------------------------------------
// The scenarios.
// ---------------------------------------------------------------------------------------------

#[test]
fn tcpv4_super_frame_is_cut_into_valid_segments_for_a_plain_port() {
    super_frame_to_learned_mac(false, 20_000, 1448);
}

#[test]
fn tcpv6_super_frame_is_cut_into_valid_segments_for_a_plain_port() {
    // MSS 1428 (1500 - 40 - 20 - 12): 14 full segments and one of 8 bytes.
    super_frame_to_learned_mac(true, 20_000, 1428);
}

#[test]
fn partial_checksum_is_completed_and_nothing_else_changes() {
    let mut rig = Rig::new(&[1, 2], topo(1, &[1, 2]));
    rig.send(2, &hello(MAC_A, MAC_B));
    rig.deliveries();

    let tcp = Tcp::new(MAC_B, false, pattern(700));
    let frame = tcp.build();
    let finished = Tcp {
        csum: Csum::Full,
        ..tcp.clone()
    }
    .build();
    let field = tcp.l4_off() + TCP_CSUM;
    assert_ne!(
        frame[field..field + 2],
        finished[field..field + 2],
        "the partial checksum is not already the full one"
    );
    rig.send_offload(1, &frame, tcp.vnet(0), false);

    let got = rig.deliveries();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(got[&2].len(), 1, "delivered once");
    let out = &got[&2][0];
    assert_eq!(out.len(), frame.len());
    assert_eq!(out[..field], frame[..field], "headers untouched");
    assert_eq!(out[field + 2..], frame[field + 2..], "the rest untouched");
    assert_eq!(*out, finished, "the checksum field holds the full checksum");
    let ip = Ipv4Packet::new_checked(&out[ETH_HDR..]).unwrap();
    assert!(ip.verify_checksum());
    let tcp_pkt = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp_pkt.verify_checksum(&IpAddress::Ipv4(IP4_A), &IpAddress::Ipv4(IP4_B)));

    assert_eq!(rig.segmented(2), 0, "one frame is no segmentation");
    assert_eq!(rig.offload_dropped(2), 0);
    assert_eq!(rig.tx_packets(2), 1);
    assert_eq!(rig.all_drops(), 0);
    rig.assert_no_leak();
}

/// An IPv4/UDP frame of `payload` bytes from A to B.
fn udp_frame(payload: usize) -> Vec<u8> {
    let udp_len = 8 + payload;
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&u16::try_from(IPV4_HDR + udp_len).unwrap().to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&IP4_A.octets());
    f.extend_from_slice(&IP4_B.octets());
    let csum = !fold(sum16(&f[ETH_HDR..], 0));
    f[ETH_HDR + 10..ETH_HDR + 12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&5000u16.to_be_bytes());
    f.extend_from_slice(&5001u16.to_be_bytes());
    f.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    let pseudo = pseudo_header_v4(IP4_A, IP4_B, 17, u16::try_from(udp_len).unwrap());
    f.extend_from_slice(&fold(pseudo).to_be_bytes());
    f.extend_from_slice(&pattern(payload));
    f
}

#[test]
fn tcp_gso_on_a_udp_frame_is_dropped_and_counted() {
    let mut rig = Rig::new(&[1, 2], topo(1, &[1, 2]));
    rig.send(2, &hello(MAC_A, MAC_B));
    rig.deliveries();

    let frame = udp_frame(4000);
    let l4 = ETH_HDR + IPV4_HDR;
    let lying = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: u16::try_from(l4 + 8).unwrap(),
        gso_size: 1448,
        csum_start: u16::try_from(l4).unwrap(),
        csum_offset: 6,
        ..Default::default()
    };
    rig.send_offload(1, &frame, lying, true);
    assert_eq!(rig.deliveries(), Deliveries::new(), "nothing delivered");
    assert_eq!(rig.offload_dropped(2), 1);
    assert_eq!(rig.segmented(2), 0);
    assert_eq!(rig.tx_packets(2), 0);
    rig.assert_no_leak();

    // UDP fragmentation offload is not done in software either: dropped the same way.
    let ufo = VnetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_UDP,
        ..lying
    };
    rig.send_offload(1, &frame, ufo, true);
    assert_eq!(rig.deliveries(), Deliveries::new(), "nothing delivered");
    assert_eq!(rig.offload_dropped(2), 2);
    assert_eq!((rig.segmented(2), rig.tx_packets(2)), (0, 0));
    assert_eq!(rig.offload_dropped(1), 0);
    rig.assert_no_leak();

    // The port still works: an ordinary frame afterwards goes through.
    rig.send(1, &hello(MAC_B, MAC_A));
    assert_eq!(
        rig.deliveries(),
        Deliveries::from([(2, vec![hello(MAC_B, MAC_A)])])
    );
    rig.assert_no_leak();
}

#[test]
fn flooded_super_frame_is_cut_for_every_port() {
    let mut rig = Rig::new(&[1, 2, 3], topo(1, &[1, 2, 3]));
    let tcp = Tcp::new(MAC_UNKNOWN, false, pattern(20_000));
    rig.send_offload(1, &tcp.build(), tcp.vnet(1448), true);

    let got = rig.deliveries();
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        vec![2, 3],
        "flooded to every other port"
    );
    let expected = tcp.segments(1448);
    assert_eq!(expected.len(), 14);
    for port in [2, 3] {
        let segs = &got[&port];
        assert_eq!(check_segments(&tcp, segs, 1448), 14, "port {port}");
        assert!(*segs == expected, "port {port}'s segments are TSO's");
        assert_eq!(rig.segmented(port), 1, "port {port}");
        assert_eq!(rig.offload_dropped(port), 0, "port {port}");
        assert_eq!(rig.tx_packets(port), 14, "port {port}");
    }
    assert_eq!(got[&2], got[&3], "identical segments on both ports");
    assert_eq!(rig.events(Event::Flooded), 1);
    assert_eq!(rig.events(Event::UnknownUnicast), 1);
    assert_eq!(rig.events(Event::FloodCopies), 1);
    assert_eq!(rig.events(Event::FloodCopyNoBuffers), 0);
    assert_eq!(rig.all_drops(), 0);
    rig.assert_no_leak();
}

#[test]
fn flood_copies_never_take_the_last_large_buffers() {
    let mut rig = Rig::new(&[1, 2, 3], topo(1, &[1, 2, 3]));
    // Hold all but three large buffers; the super-frame takes one, leaving two: the reserve of a
    // 16-buffer pool (an eighth), which a flood copy may not touch.
    let held: Vec<_> = (0..LARGE_BUFFERS - 3)
        .map(|_| rig.pool.alloc_large().expect("a free large buffer"))
        .collect();
    let tcp = Tcp::new(MAC_UNKNOWN, false, pattern(20_000));
    rig.send_offload(1, &tcp.build(), tcp.vnet(1448), true);

    let got = rig.deliveries();
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        vec![3],
        "only the last port, which gets the original, receives it"
    );
    assert_eq!(check_segments(&tcp, &got[&3], 1448), 14);
    assert_eq!(rig.events(Event::Flooded), 1);
    assert_eq!(rig.events(Event::FloodCopies), 0);
    assert_eq!(rig.events(Event::FloodCopyNoBuffers), 1);
    for b in held {
        rig.pool.free_shared(b);
    }
    rig.assert_no_leak();
}

#[test]
fn super_frame_in_a_small_buffer_is_cut_too() {
    let mut rig = Rig::new(&[1, 2], topo(1, &[1, 2]));
    rig.send(2, &hello(MAC_A, MAC_B));
    rig.deliveries();

    let tcp = Tcp::new(MAC_B, false, pattern(1000));
    let frame = tcp.build();
    assert!(frame.len() <= MAX_FRAME);
    rig.send_offload(1, &frame, tcp.vnet(400), false);

    let got = rig.deliveries();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![2]);
    let segs = &got[&2];
    assert_eq!(check_segments(&tcp, segs, 400), 3);
    assert_eq!(
        segs.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![66 + 400, 66 + 400, 66 + 200]
    );
    assert!(*segs == tcp.segments(400));
    assert_eq!(rig.segmented(2), 1);
    assert_eq!(rig.offload_dropped(2), 0);
    assert_eq!(rig.tx_packets(2), 3);
    assert_eq!(rig.all_drops(), 0);
    rig.assert_no_leak();
}

/// The segment checks catch what a broken segmenter would get wrong, so the scenarios above
/// cannot pass vacuously.
#[test]
fn segment_checks_reject_broken_segments() {
    let tcp = Tcp::new(MAC_B, false, pattern(1000));
    let good = tcp.segments(400);
    assert_eq!(check_segments(&tcp, &good, 400), 3);
    let rejects = |segs: Vec<Vec<u8>>, what: &str| {
        let r = std::panic::catch_unwind(|| check_segments(&tcp, &segs, 400));
        assert!(r.is_err(), "the checks accept {what}");
    };
    let l4 = tcp.l4_off();
    let mut flipped = good.clone();
    flipped[1][l4 + TCP_HDR + 7] ^= 1;
    rejects(flipped, "a payload byte changed (bad TCP checksum)");
    let mut ip_csum = good.clone();
    ip_csum[0][ETH_HDR + 10] ^= 0x40;
    rejects(ip_csum, "a bad IPv4 header checksum");
    rejects(good[..2].to_vec(), "a missing last segment");
    rejects(
        vec![good[0].clone(), good[2].clone(), good[1].clone()],
        "segments out of order",
    );
    // The first segment built with the super-frame's flags (ACK|PSH) left as they are.
    let mut with_psh = good.clone();
    with_psh[0] = Tcp {
        payload: tcp.payload[..400].to_vec(),
        csum: Csum::Full,
        ..tcp.clone()
    }
    .build();
    rejects(with_psh, "PSH on a segment before the last");
    rejects(
        Tcp {
            csum: Csum::Full,
            ..tcp.clone()
        }
        .segments(500),
        "segments cut at another MSS",
    );
    rejects(vec![tcp.build()], "the super-frame itself");
}

/// `inner` in VXLAN from IP4_A to IP4_B (outer MACs A -> B), lengths for the whole frame,
/// UDP checksum zero: what a container running its own VXLAN device hands over with tunnel GSO.
fn container_vxlan(inner: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let udp_len = u16::try_from(16 + inner.len()).unwrap();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(20 + udp_len).to_be_bytes());
    f.extend_from_slice(&[0x55, 0x00, 0x40, 0x00, 64, 17, 0, 0]);
    f.extend_from_slice(&IP4_A.octets());
    f.extend_from_slice(&IP4_B.octets());
    let c = !fold(sum16(&f[14..34], 0));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&50_000u16.to_be_bytes());
    f.extend_from_slice(&4789u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0x30, 0x39, 0]);
    f.extend_from_slice(inner);
    f
}

/// A UDP tunnel super-frame (a container's own VXLAN over its TAP, with tunnel GSO): to a TAP
/// that takes tunnel super-frames it passes whole; to a port that does not, it is cut in
/// software with its outer headers, every packet what the kernel would have sent.
#[test]
fn a_tunnel_super_frame_passes_whole_or_is_cut_with_its_outer_headers() {
    use dataplane::offload::{
        VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4, VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6,
    };
    let tcp = Tcp::new([0x02, 0, 0, 0, 0, 0x77], false, pattern(4000));
    let frame = container_vxlan(&tcp.build());
    let inner_ol = tcp.vnet(1000);
    let ol = VnetHdr {
        gso_type: inner_ol.gso_type | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
        csum_start: inner_ol.csum_start + 50,
        hdr_len: inner_ol.hdr_len + 50,
        outer_th: 34,
        inner_nh: 64,
        ..inner_ol
    };
    for (caps, whole) in [
        (TxCaps::OffloadTunnel, true),
        (TxCaps::Offload, false),
        (TxCaps::Plain, false),
    ] {
        let mut rig = Rig::with_caps(&[1, 2], topo(1, &[1, 2]), &[(2, caps)]);
        rig.send(2, &hello(MAC_A, MAC_B));
        let _ = rig.deliveries();
        rig.send_offload(1, &frame, ol, true);
        let got = rig.deliveries();
        let out = &got[&2];
        if whole {
            assert_eq!(out, &vec![frame.clone()], "{caps:?}: whole");
            assert_eq!(rig.segmented(2), 0);
        } else {
            assert_eq!(out.len(), 4, "{caps:?}: cut");
            let inner = check_segments(
                &tcp,
                &out.iter().map(|f| f[50..].to_vec()).collect::<Vec<_>>(),
                1000,
            );
            assert_eq!(inner, 4);
            for (i, f) in out.iter().enumerate() {
                assert_eq!(&f[..14], &frame[..14]);
                let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
                assert!(ip.verify_checksum());
                assert_eq!(usize::from(ip.total_len()), f.len() - 14);
                assert_eq!(ip.ident(), 0x5500 + i as u16);
                assert_eq!(
                    usize::from(u16::from_be_bytes([f[38], f[39]])),
                    f.len() - 34,
                    "UDP length"
                );
                assert_eq!(
                    &f[40..50],
                    &frame[40..50],
                    "UDP checksum zero, VXLAN header"
                );
                assert_eq!(&f[50..50 + 14], &frame[50..50 + 14], "inner Ethernet");
            }
            assert_eq!(rig.segmented(2), 1);
        }
        assert_eq!(rig.offload_dropped(2), 0);
        assert_eq!(rig.all_drops(), 0);
        rig.assert_no_leak();
    }
    // A tunnel bit for both outer versions describes no frame: dropped, counted.
    let mut rig = Rig::new(&[1, 2], topo(1, &[1, 2]));
    rig.send(2, &hello(MAC_A, MAC_B));
    let _ = rig.deliveries();
    let both = VnetHdr {
        gso_type: ol.gso_type | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6,
        ..ol
    };
    rig.send_offload(1, &frame, both, true);
    assert_eq!(rig.deliveries(), Deliveries::new());
    assert_eq!(rig.offload_dropped(2), 1);
    rig.assert_no_leak();
}
