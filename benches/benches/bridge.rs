//! L2 bridge throughput: one worker switching 64-byte frames between in-memory ports with MAC
//! tables of 1K, 64K and 1M learned entries; and the MAC table's raw lookup and learn-hit rates.
//!
//! The measured loop allocates nothing: a fixed set of 32 buffers circulates. Each iteration
//! rewrites their destination MACs (drawn pseudo-randomly from the learned ones, so a large table
//! really misses the cache), injects them into the ingress port as one burst, runs one worker
//! iteration, and collects them from the egress ports for the next round.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::burst::{Burst, BURST};
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr};
use std::hint::black_box;
use std::sync::Arc;
use vswitch::bridge::fdb::{Limits, MacTable};
use vswitch::config::{NetConf, PortConf, Snapshot};
use vswitch::counters::{drop_index, event_index, DropReason, Event};
use vswitch::pipeline::Switch;

/// MAC table sizes (learned entries), as in the README's table.
const SIZES: [u32; 3] = [1 << 10, 1 << 16, 1 << 20];
/// Egress ports the learned MACs are spread over; port 0 is the ingress.
const EGRESS: u16 = 15;
/// Source MACs the ingress traffic uses.
const SOURCES: u8 = 8;
/// Frame length.
const FRAME_LEN: usize = 64;
/// The fake clock: constant, so the measured loop runs no timers.
const NOW: u64 = 1;

/// The `i`th learned MAC (behind egress port `1 + i % EGRESS`).
#[inline]
fn learned_mac(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x10, b[0], b[1], b[2], b[3]]
}

#[inline]
fn egress_of(i: u32) -> PortId {
    1 + (i % u32::from(EGRESS)) as PortId
}

fn source_mac(j: u8) -> [u8; 6] {
    [0x02, 0x20, 0, 0, 0, j]
}

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; FRAME_LEN];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf));
    buf
}

/// A deterministic xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (multiply-shift, no division).
    #[inline]
    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// One worker, an ingress port, `EGRESS` egress ports and `entries` learned MACs.
struct Rig {
    worker: Worker<Switch>,
    ingress: MemPeer,
    egress: Vec<MemPeer>,
    cache: PoolCache,
    burst: Burst,
    rng: XorShift,
    entries: u32,
}

impl Rig {
    fn new(entries: u32) -> Rig {
        let pool = Pool::new(8192).expect("map the buffer pool");
        let switch = Switch::new(pool.clone(), entries + 1024);
        let (mut worker, tx) = Worker::new(0, pool.clone(), switch, Arc::new(Snapshot::default()));
        let mut seq = 0;
        let mut command = |cmd| {
            seq += 1;
            tx.send((seq, cmd)).expect("worker channel open");
        };
        let mut peers = Vec::new();
        for port in 0..=EGRESS {
            let (io, peer) = mem::pair(pool.clone(), 1024);
            command(Command::Attach {
                port,
                io: PortIo::Mem(io),
                rx: true,
            });
            peers.push(peer);
        }
        let ports: Vec<PortId> = (0..=EGRESS).collect();
        let wide = Some(PortConf {
            net: Some(1),
            mac_limit: u32::MAX,
            ..Default::default()
        });
        command(Command::Config(Arc::new(Snapshot {
            gen: 1,
            ports: ports.iter().map(|_| wide.clone()).collect(),
            nets: vec![
                None,
                Some(NetConf {
                    ports,
                    mac_limit: u32::MAX,
                    aging_secs: 300,
                    statics: Vec::new(),
                    encrypted: false,
                    esp_udp: false,
                }),
            ],
            ..Default::default()
        })));
        worker.poll_once(NOW);
        let mut egress = peers.split_off(1);
        let mut ingress = peers.pop().expect("port 0");
        let mut cache = PoolCache::new(pool);

        // Learn the ingress sources (flooded once each), then every egress MAC by one frame to
        // the first source.
        for j in 0..SOURCES {
            assert!(ingress.send(&mut cache, &frame([0xff; 6], source_mac(j))));
        }
        let mut template = frame(source_mac(0), [0; 6]);
        let mut queued = 0;
        for i in 0..entries {
            template[6..12].copy_from_slice(&learned_mac(i));
            assert!(egress[usize::from(egress_of(i) - 1)].send(&mut cache, &template));
            queued += 1;
            if queued == 32 * usize::from(EGRESS) || i + 1 == entries {
                run(&mut worker);
                drain(&mut ingress, &mut egress, &mut cache);
                queued = 0;
            }
        }
        run(&mut worker);
        drain(&mut ingress, &mut egress, &mut cache);
        let fdb = &worker.pipeline().bridge.fdb;
        assert_eq!(fdb.len(), entries + u32::from(SOURCES), "every MAC learned");

        // The circulating burst.
        let mut burst = Burst::new();
        for k in 0..BURST {
            let mut b = cache.alloc().expect("a buffer");
            assert!(cache.pool().fill(
                &mut b,
                &frame(learned_mac(0), source_mac(k as u8 % SOURCES))
            ));
            assert!(burst.push(b).is_ok());
        }
        Rig {
            worker,
            ingress,
            egress,
            cache,
            burst,
            rng: XorShift(0x9e37_79b9_7f4a_7c15),
            entries,
        }
    }

    /// One measured round: 32 frames in on port 0, switched, collected from the egress ports.
    #[inline]
    fn round(&mut self) {
        let pool = self.cache.pool();
        for b in self.burst.bufs_mut() {
            let i = self.rng.below(self.entries);
            pool.data_mut(b)[..6].copy_from_slice(&learned_mac(i));
        }
        self.ingress.send_burst(&mut self.burst);
        self.worker.poll_once(NOW);
        for peer in &mut self.egress {
            if self.burst.is_full() {
                break;
            }
            peer.recv_burst(&mut self.burst);
        }
    }

    fn counter(&self, i: usize) -> u64 {
        self.worker.stats().pipeline.at(i).get()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.burst.free_all(&mut self.cache);
        drain(&mut self.ingress, &mut self.egress, &mut self.cache);
    }
}

/// Polls until no port has anything left to receive (bounded).
fn run(worker: &mut Worker<Switch>) {
    for _ in 0..100_000 {
        if worker.poll_once(NOW) == 0 {
            return;
        }
    }
    panic!("worker never went idle");
}

/// Frees whatever the peers collected.
fn drain(ingress: &mut MemPeer, egress: &mut [MemPeer], cache: &mut PoolCache) {
    let mut burst = Burst::new();
    for peer in std::iter::once(ingress).chain(egress.iter_mut()) {
        while peer.recv_burst(&mut burst) > 0 {
            burst.free_all(cache);
        }
    }
}

fn bridge(c: &mut Criterion) {
    let mut group = c.benchmark_group("bridge");
    group.throughput(Throughput::Elements(BURST as u64));
    for entries in SIZES {
        let mut rig = Rig::new(entries);
        let fwd0 = rig.counter(event_index(Event::Forwarded));
        // Whether this size ran (a filter on the command line may skip it).
        let mut ran = false;
        group.bench_function(BenchmarkId::new("l2_forward_64B", entries), |b| {
            ran = true;
            b.iter(|| rig.round())
        });
        // A measurement is only worth something if every frame went to exactly one port.
        let drops: u64 = DropReason::ALL
            .iter()
            .map(|&d| rig.counter(drop_index(d)))
            .sum();
        assert_eq!(drops, 0, "drops while benchmarking");
        assert_eq!(rig.counter(event_index(Event::Flooded)), u64::from(SOURCES));
        assert!(!ran || rig.counter(event_index(Event::Forwarded)) > fwd0);
        assert_eq!(rig.burst.len(), BURST, "every frame came back");
    }
    group.finish();
}

/// A table of `entries` learned MACs spread over the egress ports.
fn filled_table(entries: u32) -> MacTable {
    let mut t = MacTable::new(entries + 1024, usize::from(EGRESS) + 1, 4);
    let limits = Limits {
        port: u32::MAX,
        network: u32::MAX,
        network_ports: &[],
    };
    for i in 0..entries {
        t.learn(1, &learned_mac(i), egress_of(i), 0, &limits);
    }
    assert_eq!(t.len(), entries);
    t
}

fn fdb(c: &mut Criterion) {
    const OPS: u32 = 1024;
    let mut group = c.benchmark_group("fdb");
    group.throughput(Throughput::Elements(u64::from(OPS)));
    let limits = Limits {
        port: u32::MAX,
        network: u32::MAX,
        network_ports: &[],
    };
    for entries in SIZES {
        let mut t = filled_table(entries);
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        group.bench_function(BenchmarkId::new("lookup", entries), |b| {
            b.iter(|| {
                let mut hits = 0u32;
                for _ in 0..OPS {
                    let mac = learned_mac(rng.below(entries));
                    hits += u32::from(t.lookup(1, black_box(&mac)).is_some());
                }
                black_box(hits)
            })
        });
        group.bench_function(BenchmarkId::new("learn_hit", entries), |b| {
            b.iter(|| {
                for _ in 0..OPS {
                    let i = rng.below(entries);
                    black_box(t.learn(1, black_box(&learned_mac(i)), egress_of(i), 0, &limits));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bridge, fdb);
criterion_main!(benches);
