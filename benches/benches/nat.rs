//! Source NAT's core on one core: the session table and in-place translation
//! (`vswitch::nat`), without ports or the rest of the graph.
//!
//! `nat/established_64B/N`: N established UDP sessions (N = 1 K, 100 K, 1 M), and bursts of 32
//! 64-byte frames of sessions drawn at random among them, translated outbound: parse, hash,
//! prefetch the index cells of the burst, then the sessions, then look up, track (refresh the
//! timeout) and rewrite address, port and both checksums incrementally. Each round first copies
//! its 32 frames from a pristine array laid out in the order they are used (as a NIC would
//! write fresh frames), which is counted in the time. For 1 M sessions the outside address is
//! one of 32 (a single address has only 64 K ports per protocol); the daemon uses one.
//!
//! `nat/new_sessions`: every frame opens a session (UDP, inside endpoints never seen or long
//! since evicted) in a full table of 32 K embryonic sessions, so each one also evicts the oldest:
//! a random free port is found, both index entries are written, the frame translated (frames
//! copied from a pristine array too).
//!
//! `nat_pipeline/out_64B/N` and `nat_pipeline/in_64B/N`: the same through the whole graph on
//! one worker over in-memory ports (N = 1 K and 64 K established UDP sessions): 32 frames from
//! containers to the gateway's MAC in on an access port, through `vlan-input` and `l3-router`
//! (routing checks, NAT, TTL, next hop) and out of the uplink; and 32 answers in on the uplink,
//! through `underlay-in` and `l3-router`, out of the access port. Each round refills the 32
//! buffers from pristine frames (64-byte copies, counted in the time), sessions drawn at random.
//!
//! Run: `cargo bench -p benches --bench nat`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::burst::Burst;
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch::config::{GatewayConf, NetConf, PortConf, Snapshot, UplinkConf};
use vswitch::nat::translate::{self, Flow, Way};
use vswitch::nat::{Nat, NatConfig};
use vswitch::pipeline::Switch;

const BURST: usize = 32;
const FRAME: usize = 64;
const NET: u16 = 1;
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const NOW: u64 = 100;

/// A 64-byte Ethernet + IPv4 + UDP frame from `src`:`port` to REMOTE:53.
fn frame(src: Ipv4Addr, port: u16) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let payload = FRAME - 14 - 20 - 8;
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: REMOTE,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload,
        hop_limit: 64,
    };
    let caps = ChecksumCapabilities::default();
    let mut pkt = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.emit(&mut pkt, &caps);
    let udp = UdpRepr {
        src_port: port,
        dst_port: 53,
    };
    udp.emit(
        &mut UdpPacket::new_unchecked(pkt.payload_mut()),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(REMOTE),
        payload,
        |p| p.fill(0x5a),
        &caps,
    );
    f
}

/// Inside endpoint `k`: 10.(k >> 24).(k >> 16).(k >> 8) ... spread over addresses and ports.
fn inside(k: u32) -> (Ipv4Addr, u16) {
    let ip = Ipv4Addr::from(0x0a00_0000 | (k >> 6));
    (ip, 1024 + (k & 63) as u16)
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Translates one burst of `work` outbound (the stage's three passes).
#[inline]
fn outbound_burst(nat: &mut Nat, work: &mut [[u8; FRAME]; BURST], ext: &[u32]) -> usize {
    let mut flows: [Option<(Flow, u32)>; BURST] = [None; BURST];
    for (f, slot) in work.iter().zip(flows.iter_mut()) {
        if let Ok(fl) = translate::parse(f, 14, Way::Out, None) {
            let h = nat.table.hash_in(&Nat::inside_key(&fl, NET));
            nat.table.prefetch_out(h);
            *slot = Some((fl, h));
        }
    }
    for (_, h) in flows.iter().flatten() {
        nat.table.prefetch_session_out(*h);
    }
    let mut ok = 0;
    for (f, slot) in work.iter_mut().zip(flows.iter()) {
        if let Some((fl, h)) = slot {
            let e = ext[(fl.src as usize) % ext.len()];
            ok += usize::from(nat.outbound(f, fl, NET, *h, e, NOW).is_ok());
        }
    }
    ok
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(BURST as u64));
    for sessions in [1_000u32, 100_000, 1_000_000] {
        let mut nat = Nat::new(sessions, 7);
        nat.cfg = NatConfig {
            port_lo: 1024,
            port_hi: 65535,
            ..NatConfig::default()
        };
        let ext: Vec<u32> = (0..32u32).map(|i| 0xc0a8_3200 | (i + 1)).collect();
        // Open every session (a first packet each), then answer it so it is established.
        let mut f = [[0u8; FRAME]; BURST];
        for k in 0..sessions {
            let (ip, port) = inside(k);
            f[0] = frame(ip, port);
            let fl = translate::parse(&f[0], 14, Way::Out, None).expect("frame");
            let h = nat.table.hash_in(&Nat::inside_key(&fl, NET));
            let e = ext[(fl.src as usize) % ext.len()];
            let i = nat.outbound(&mut f[0], &fl, NET, h, e, 1).expect("session");
            nat.table
                .track(i, vswitch::nat::table::Dir::In, 0, 1, &nat.cfg.timeouts);
        }
        assert_eq!(nat.table.len(), sessions);
        // The frames of the measured rounds, in the order they are sent: random sessions.
        let rounds = (sessions as usize).clamp(64 * BURST, 1 << 20) / BURST;
        let mut rng = 0x1234_5678u64;
        let pristine: Vec<[u8; FRAME]> = (0..rounds * BURST)
            .map(|_| {
                let (ip, port) = inside((xorshift(&mut rng) % u64::from(sessions)) as u32);
                frame(ip, port)
            })
            .collect();
        let mut work = [[0u8; FRAME]; BURST];
        let mut at = 0usize;
        g.bench_function(BenchmarkId::new("established_64B", sessions), |b| {
            b.iter(|| {
                let src = &pristine[at * BURST..(at + 1) * BURST];
                work.copy_from_slice(src);
                at = if at + 1 == rounds { 0 } else { at + 1 };
                let ok = outbound_burst(&mut nat, &mut work, &ext);
                debug_assert_eq!(ok, BURST);
                ok
            })
        });
        assert_eq!(nat.table.len(), sessions, "no session was created or lost");
    }
    g.finish();
}

fn new_sessions(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(BURST as u64));
    const CAP: u32 = 32 * 1024;
    let mut nat = Nat::new(CAP, 9);
    nat.cfg = NatConfig {
        port_lo: 1024,
        port_hi: 65535,
        ..NatConfig::default()
    };
    let ext = [0xc0a8_3202u32];
    // Inside endpoints cycle through 256 K keys (8 times the table), so a key comes back long
    // after its session was evicted; their frames are built before measuring.
    const KEYS: usize = 1 << 18;
    let pristine: Vec<[u8; FRAME]> = (0..KEYS as u32)
        .map(|k| {
            let (ip, port) = inside(k);
            frame(ip, port)
        })
        .collect();
    let mut next = 0usize;
    let mut work = [[0u8; FRAME]; BURST];
    let fill = |nat: &mut Nat, work: &mut [[u8; FRAME]; BURST], next: &mut usize| {
        work.copy_from_slice(&pristine[*next..*next + BURST]);
        *next = (*next + BURST) % KEYS;
        outbound_burst(nat, work, &ext)
    };
    while nat.table.len() < CAP {
        fill(&mut nat, &mut work, &mut next);
    }
    g.bench_function("new_sessions", |b| {
        b.iter(|| fill(&mut nat, &mut work, &mut next))
    });
    // Every session past the table's size evicted one (none when filtered out).
    assert_eq!(
        nat.stats.evicted,
        nat.stats.created.saturating_sub(u64::from(CAP))
    );
    g.finish();
}

const UPLINK: PortId = 0;
const ACCESS: PortId = 1;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const HOP_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 254);
const C_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];

/// A 64-byte UDP frame between the given MACs and endpoints.
fn frame_between(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    let payload = FRAME - 14 - 20 - 8;
    let ip = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload,
        hop_limit: 64,
    };
    f[0..6].copy_from_slice(&macs.0);
    f[6..12].copy_from_slice(&macs.1);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let caps = ChecksumCapabilities::default();
    let mut pkt = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.emit(&mut pkt, &caps);
    UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    }
    .emit(
        &mut UdpPacket::new_unchecked(pkt.payload_mut()),
        &IpAddress::Ipv4(src.0),
        &IpAddress::Ipv4(dst.0),
        payload,
        |p| p.fill(0x5a),
        &caps,
    );
    f
}

/// Inside endpoint `k` of the pipeline rig: addresses in 10.0.0.0/8, 64 ports each.
fn container(k: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x0a00_0100 + (k >> 6)),
        1024 + (k & 63) as u16,
    )
}

struct Pipe {
    worker: Worker<Switch>,
    uplink: MemPeer,
    access: MemPeer,
    pool: Arc<Pool>,
    burst: Burst,
}

impl Pipe {
    fn new(sessions: u32) -> (Pipe, Vec<[u8; FRAME]>, Vec<[u8; FRAME]>) {
        let pool = Pool::new(8192).expect("map the buffer pool");
        let (mut worker, tx) = Worker::new(
            0,
            pool.clone(),
            Switch::new(pool.clone(), 1024),
            Arc::new(Snapshot::default()),
        );
        let mut peers = Vec::new();
        for port in [UPLINK, ACCESS] {
            let (io, peer) = mem::pair(pool.clone(), 256);
            tx.send((
                u64::from(port) + 1,
                Command::Attach {
                    port,
                    io: PortIo::Mem(io),
                    rx: true,
                },
            ))
            .expect("worker channel open");
            peers.push(peer);
        }
        let mut ports = vec![None; 2];
        ports[UPLINK as usize] = Some(PortConf::default());
        ports[ACCESS as usize] = Some(PortConf::access(Some(1), 1024));
        let snap = Snapshot {
            gen: 1,
            ports,
            nets: vec![
                None,
                Some(NetConf {
                    ports: vec![ACCESS],
                    mac_limit: 1024,
                    aging_secs: 300,
                    statics: Vec::new(),
                    encrypted: false,
                    esp_udp: false,
                }),
            ],
            uplink: Some(UplinkConf {
                port: UPLINK,
                mac: OUR_MAC,
                ip: OUR_IP,
                prefix: 24,
                gateway: Some(HOP_IP),
                vxlan_port: 4789,
                mtu: 1500,
                tunnel_gso: false,
                uso: false,
            }),
            gateways: vec![
                None,
                Some(GatewayConf {
                    ip: Ipv4Addr::new(10, 0, 0, 1),
                    subnet: Ipv4Addr::new(10, 0, 0, 0),
                    prefix: 8,
                    mac: GatewayConf::mac_of(1),
                    internal: false,
                }),
            ],
            nat: NatConfig {
                port_lo: 1024,
                port_hi: 65535,
                sessions: sessions.max(1024),
                ..NatConfig::default()
            },
            workers: 1,
            ..Default::default()
        };
        tx.send((10, Command::Config(Arc::new(snap))))
            .expect("worker channel open");
        worker.poll_once(1);
        let access = peers.pop().expect("access peer");
        let uplink = peers.pop().expect("uplink peer");
        let mut p = Pipe {
            worker,
            uplink,
            access,
            pool: pool.clone(),
            burst: Burst::new(),
        };
        let mut cache = PoolCache::new(pool);
        // The next hop first, then every session opened and answered through the graph.
        let mut arp = OUR_MAC.to_vec();
        arp.extend_from_slice(&HOP_MAC);
        arp.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02]);
        arp.extend_from_slice(&HOP_MAC);
        arp.extend_from_slice(&HOP_IP.octets());
        arp.extend_from_slice(&OUR_MAC);
        arp.extend_from_slice(&OUR_IP.octets());
        assert!(p.uplink.send(&mut cache, &arp));
        p.worker.poll_once(1);
        let out_frames: Vec<[u8; FRAME]> = (0..sessions)
            .map(|k| frame_between((GatewayConf::mac_of(1), C_MAC), container(k), (REMOTE, 53)))
            .collect();
        let mut ext = vec![0u16; sessions as usize];
        for (chunk, ports) in out_frames.chunks(BURST).zip(ext.chunks_mut(BURST)) {
            for f in chunk {
                assert!(p.access.send(&mut cache, f));
            }
            p.worker.poll_once(1);
            for port in ports.iter_mut() {
                let got = p.uplink.recv(&mut cache).expect("translated");
                *port = u16::from_be_bytes([got[34], got[35]]);
            }
        }
        let in_frames: Vec<[u8; FRAME]> = ext
            .iter()
            .map(|&port| frame_between((OUR_MAC, HOP_MAC), (REMOTE, 53), (OUR_IP, port)))
            .collect();
        for chunk in in_frames.chunks(BURST) {
            for f in chunk {
                assert!(p.uplink.send(&mut cache, f));
            }
            p.worker.poll_once(1);
            while p.access.recv(&mut cache).is_some() {}
        }
        let info = p.worker.pipeline().router.info();
        let drops: Vec<(&str, u64)> = vswitch::counters::drop_counters()
            .map(|(i, n)| (n, p.worker.stats().pipeline.at(i).get()))
            .filter(|&(_, v)| v > 0)
            .collect();
        assert_eq!(
            (info.sessions, info.embryonic),
            (sessions, 0),
            "set up with drops {drops:?}"
        );
        for _ in 0..BURST {
            assert!(p.burst.push(cache.alloc().expect("a buffer")).is_ok());
        }
        (p, out_frames, in_frames)
    }

    /// Refills the burst from `frames` at `at`, sends it on `into`, runs the worker, takes the
    /// burst back from `from`.
    #[inline]
    fn round(&mut self, frames: &[[u8; FRAME]], at: &[u32; BURST], out: bool) {
        for (b, &i) in self.burst.bufs_mut().iter_mut().zip(at.iter()) {
            self.pool.fill(b, &frames[i as usize]);
        }
        let (into, from) = if out {
            (&mut self.access, &mut self.uplink)
        } else {
            (&mut self.uplink, &mut self.access)
        };
        into.send_burst(&mut self.burst);
        self.worker.poll_once(1);
        from.recv_burst(&mut self.burst);
    }
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat_pipeline");
    g.throughput(Throughput::Elements(BURST as u64));
    for sessions in [1_000u32, 64_000] {
        let (mut p, out_frames, in_frames) = Pipe::new(sessions);
        let mut rng = 0x51u64;
        let order: Vec<[u32; BURST]> = (0..1024)
            .map(|_| {
                let mut a = [0u32; BURST];
                for x in &mut a {
                    *x = (xorshift(&mut rng) % u64::from(sessions)) as u32;
                }
                a
            })
            .collect();
        for (name, frames, out) in [
            ("out_64B", &out_frames, true),
            ("in_64B", &in_frames, false),
        ] {
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(name, sessions), |b| {
                b.iter(|| {
                    p.round(frames, &order[i], out);
                    i = (i + 1) % order.len();
                })
            });
            assert_eq!(p.burst.len(), BURST, "{name}: every frame came through");
        }
        let info = p.worker.pipeline().router.info();
        assert_eq!(info.sessions, sessions, "no session was created or lost");
        let drops: Vec<(&str, u64)> = vswitch::counters::drop_counters()
            .map(|(i, n)| (n, p.worker.stats().pipeline.at(i).get()))
            .filter(|&(_, v)| v > 0)
            .collect();
        assert!(drops.is_empty(), "dropped {drops:?}");
    }
    g.finish();
}

criterion_group!(benches, established, new_sessions, pipeline);
criterion_main!(benches);
