//! Services' load balancing on one core, through the whole graph on one worker over in-memory
//! ports: 32 UDP frames at a time from clients beyond the uplink to a published port, in on the
//! uplink, through `underlay-in` and `l3-router` (the service lookup, the connection table,
//! Maglev for a new connection, destination translation, TTL) and out of the backends' access
//! port. Each round refills the 32 buffers from pristine 64-byte frames (copies counted in the
//! time).
//!
//! * `service/new_connections/B` (B = 3 and 1000 backends): every frame opens a connection (a
//!   client port never seen, or long since evicted) in a full table of 32 K embryonic
//!   connections, so each one also evicts the oldest: the Maglev pick, two index entries, the
//!   translation.
//! * `service/established_64B/B`: frames of 16 K established connections (answered once),
//!   drawn at random.
//! * `service/maglev_build/B`: building a service's table (the control thread's work on every
//!   backend change), B = 3, 100 and 1000.
//!
//! It also prints the share of flows moved when one backend of 100 is removed (from the
//! tables, and measured on 1 M random flows).
//!
//! Run: `cargo bench -p benches --bench service`.

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
use vswitch::nat::NatConfig;
use vswitch::pipeline::Switch;
use vswitch::service::{maglev, Backend, PortMap, ServiceTable, Svc};

const BURST: usize = 32;
const FRAME: usize = 64;
const UPLINK: PortId = 0;
const ACCESS: PortId = 1;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const HOP_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 254);
const PUBLISHED: u16 = 8080;

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

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Client `k` beyond the uplink: addresses in 198.18.0.0/15, 64 ports each.
fn client(k: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc612_0000 + (k >> 6)),
        1024 + (k & 63) as u16,
    )
}

/// Backend `i`: 10.0.(i >> 8).(i & 255) + 10.
fn backend(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_000a + i)
}

fn arp_from(mac: [u8; 6], ip: Ipv4Addr, gw: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&gw.octets());
    f
}

struct Pipe {
    worker: Worker<Switch>,
    uplink: MemPeer,
    access: MemPeer,
    pool: Arc<Pool>,
    burst: Burst,
    cache: PoolCache,
}

impl Pipe {
    fn new(backends: u32, conns: u32) -> Pipe {
        let pool = Pool::new(8192).expect("map the buffer pool");
        let (mut worker, tx) = Worker::new(
            0,
            pool.clone(),
            Switch::new(pool.clone(), 4096),
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
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let mut ports = vec![None; 2];
        ports[UPLINK as usize] = Some(PortConf::default());
        ports[ACCESS as usize] = Some(PortConf::access(Some(1), 4096));
        let svc = Svc::new(
            "bench".into(),
            1,
            None,
            Vec::new(),
            vec![PortMap {
                proto: 17,
                port: PUBLISHED,
                target: 80,
            }],
            false,
            (0..backends)
                .map(|i| Backend {
                    ip: backend(i),
                    weight: 1,
                    down: false,
                })
                .collect(),
            maglev::size_for(backends as usize),
        );
        let snap = Snapshot {
            gen: 1,
            ports,
            nets: vec![
                None,
                Some(NetConf {
                    ports: vec![ACCESS],
                    mac_limit: 4096,
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
                    ip: gw,
                    subnet: Ipv4Addr::new(10, 0, 0, 0),
                    prefix: 8,
                    mac: GatewayConf::mac_of(1),
                    internal: false,
                }),
            ],
            nat: NatConfig {
                sessions: conns,
                ..NatConfig::default()
            },
            workers: 1,
            services: Arc::new(ServiceTable::new(vec![svc])),
            ..Default::default()
        };
        tx.send((10, Command::Config(Arc::new(snap))))
            .expect("worker channel open");
        worker.poll_once(1);
        let mut access = peers.pop().expect("access peer");
        let uplink = peers.pop().expect("uplink peer");
        let mut cache = PoolCache::new(pool.clone());
        // Every backend announces itself (an ARP request for the gateway): learned.
        for chunk in (0..backends).collect::<Vec<_>>().chunks(BURST) {
            for &i in chunk {
                let mac = [0x02, 0xbe, 0, 0, (i >> 8) as u8, i as u8];
                assert!(access.send(&mut cache, &arp_from(mac, backend(i), gw)));
            }
            worker.poll_once(1);
            while access.recv(&mut cache).is_some() {}
        }
        let mut p = Pipe {
            worker,
            uplink,
            access,
            pool,
            burst: Burst::new(),
            cache,
        };
        for _ in 0..BURST {
            let b = p.cache.alloc().expect("a buffer");
            assert!(p.burst.push(b).is_ok());
        }
        p
    }

    /// Refills the burst from `frames` (at the indexes `at`), sends it in on the uplink, runs
    /// the worker and takes what came out of the access port.
    #[inline]
    fn round(&mut self, frames: &[[u8; FRAME]], at: impl Iterator<Item = usize>) -> usize {
        for (b, i) in self.burst.bufs_mut().iter_mut().zip(at) {
            self.pool.fill(b, &frames[i]);
        }
        self.uplink.send_burst(&mut self.burst);
        self.worker.poll_once(1);
        self.access.recv_burst(&mut self.burst);
        let n = self.burst.len();
        // Top the burst up again (drops are freed by the switch).
        while self.burst.len() < BURST {
            let b = self.cache.alloc().expect("a buffer");
            let _ = self.burst.push(b);
        }
        n
    }

    fn drops(&self) -> Vec<(&'static str, u64)> {
        vswitch::counters::drop_counters()
            .map(|(i, n)| (n, self.worker.stats().pipeline.at(i).get()))
            .filter(|&(_, v)| v > 0)
            .collect()
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        for b in self.burst.drain() {
            self.cache.free(b);
        }
    }
}

fn balance(c: &mut Criterion) {
    let mut g = c.benchmark_group("service");
    g.throughput(Throughput::Elements(BURST as u64));
    for backends in [3u32, 1000] {
        // New connections: 256 K client endpoints cycling through a 32 K table.
        const KEYS: usize = 1 << 18;
        let mut p = Pipe::new(backends, 32 * 1024);
        let frames: Vec<[u8; FRAME]> = (0..KEYS as u32)
            .map(|k| frame_between((OUR_MAC, HOP_MAC), client(k), (OUR_IP, PUBLISHED)))
            .collect();
        let mut next = 0usize;
        for _ in 0..(32 * 1024 / BURST) {
            p.round(&frames, next..next + BURST);
            next += BURST;
        }
        g.bench_function(BenchmarkId::new("new_connections", backends), |b| {
            b.iter(|| {
                let n = p.round(&frames, next..next + BURST);
                next = (next + BURST) % KEYS;
                n
            })
        });
        assert!(p.drops().is_empty(), "dropped {:?}", p.drops());

        // Established: 16 K connections, each answered once by its backend.
        let conns_env = std::env::var("SVC_CONNS").ok().and_then(|v| v.parse().ok());
        let conns_n: u32 = conns_env.unwrap_or(16 * 1024);
        #[allow(non_snake_case)]
        let CONNS: u32 = conns_n;
        let mut p = Pipe::new(backends, 64 * 1024);
        let frames: Vec<[u8; FRAME]> = (0..CONNS)
            .map(|k| frame_between((OUR_MAC, HOP_MAC), client(k), (OUR_IP, PUBLISHED)))
            .collect();
        let gw_mac = GatewayConf::mac_of(1);
        // The next hop first: the answers leave on the uplink at once.
        let mut arp = OUR_MAC.to_vec();
        arp.extend_from_slice(&HOP_MAC);
        arp.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02]);
        arp.extend_from_slice(&HOP_MAC);
        arp.extend_from_slice(&HOP_IP.octets());
        arp.extend_from_slice(&OUR_MAC);
        arp.extend_from_slice(&OUR_IP.octets());
        assert!(p.uplink.send(&mut p.cache, &arp));
        p.worker.poll_once(1);
        for k in (0..CONNS as usize).step_by(BURST) {
            p.round(&frames, k..k + BURST);
            // The answers, from the backends as the connections placed them.
            let mut answers = Vec::new();
            for b in p.burst.bufs() {
                let d = p.pool.data(b);
                let be = Ipv4Addr::new(d[30], d[31], d[32], d[33]);
                let dst = Ipv4Addr::new(d[26], d[27], d[28], d[29]);
                let dport = u16::from_be_bytes([d[34], d[35]]);
                let mac: [u8; 6] = d[0..6].try_into().expect("six bytes");
                answers.push(frame_between((gw_mac, mac), (be, 80), (dst, dport)));
            }
            for a in &answers {
                assert!(p.access.send(&mut p.cache, a));
            }
            p.worker.poll_once(1);
            while p.uplink.recv(&mut p.cache).is_some() {}
        }
        let mut rng = 0x77u64;
        let order: Vec<[usize; BURST]> = (0..1024)
            .map(|_| {
                let mut a = [0usize; BURST];
                for x in &mut a {
                    *x = (xorshift(&mut rng) % u64::from(CONNS)) as usize;
                }
                a
            })
            .collect();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("established_64B", backends), |b| {
            b.iter(|| {
                let n = p.round(&frames, order[i].iter().copied());
                i = (i + 1) % order.len();
                n
            })
        });
        assert!(p.drops().is_empty(), "dropped {:?}", p.drops());
        assert_eq!(
            p.worker.pipeline().router.lb.len(),
            CONNS,
            "no connection created or lost"
        );
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("service");
    for n in [3u32, 100, 1000] {
        let members: Vec<maglev::Member> = (0..n)
            .map(|i| maglev::Member {
                key: u64::from(backend(i).to_bits()),
                weight: 1,
            })
            .collect();
        let m = maglev::size_for(n as usize);
        g.bench_function(BenchmarkId::new("maglev_build", n), |b| {
            b.iter(|| maglev::build(&members, m))
        });
    }
    g.finish();
    // The share of flows moved when one backend of 100 goes (not a timing).
    let all: Vec<maglev::Member> = (0..100)
        .map(|i| maglev::Member {
            key: u64::from(backend(i).to_bits()),
            weight: 1,
        })
        .collect();
    let mut rest = all.clone();
    rest[37].weight = 0;
    for m in [maglev::size_for(100), 65521] {
        let (a, b) = (maglev::build(&all, m), maglev::build(&rest, m));
        let (must, extra) = maglev::moved(&a, &b, Some(37));
        let mut rng = 0x9u64;
        let flows = 1_000_000;
        let moved = (0..flows)
            .filter(|_| {
                let h = xorshift(&mut rng);
                let s = maglev::slot(h, a.len());
                a[s] != b[s]
            })
            .count();
        eprintln!(
            "1 of 100 backends removed, table {m}: {:.2} % of slots moved ({:.2} % had to, {:.2} % more); {:.2} % of 1 M random flows",
            (must + extra) as f64 * 100.0 / f64::from(m),
            must as f64 * 100.0 / f64::from(m),
            extra as f64 * 100.0 / f64::from(m),
            moved as f64 * 100.0 / f64::from(flows)
        );
    }
}

criterion_group!(benches, balance, build);
criterion_main!(benches);
