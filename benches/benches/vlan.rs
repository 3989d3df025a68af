//! 802.1Q trunk switching next to the plain bridge: one worker, 64-byte frames bouncing between
//! two hosts, one behind port 0 and one behind port 1, 32 each way per round.
//!
//! `trunk_access`: port 0 is a trunk (host A on VLAN 10), port 1 an access port (host B); every
//! frame from A has its tag popped, every frame to A gets one pushed. `access_access`: both
//! ports are access ports, so the difference is the cost of the tags. The harness swaps the MAC
//! addresses of the 32 circulating frames between directions (the same cost in both variants).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::burst::{Burst, BURST};
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use std::sync::Arc;
use vswitch::config::{NetConf, PortConf, Snapshot, NO_PORT};
use vswitch::counters::{drop_index, DropReason};
use vswitch::pipeline::Switch;

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const NOW: u64 = 1;

struct Rig {
    worker: Worker<Switch>,
    peers: Vec<MemPeer>,
    cache: PoolCache,
    burst: Burst,
}

fn frame(dst: [u8; 6], src: [u8; 6], tag: Option<u16>) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    if let Some(vid) = tag {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(if tag.is_some() { 68 } else { 64 }, 0);
    f
}

impl Rig {
    fn new(trunk: bool) -> Rig {
        let pool = Pool::new(4096).expect("map the buffer pool");
        let (mut worker, tx) = Worker::new(
            0,
            pool.clone(),
            Switch::new(pool.clone(), 1024),
            Arc::new(Snapshot::default()),
        );
        let mut peers = Vec::new();
        for port in 0..2u16 {
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
        let mut ports = vec![None; 11];
        let a_port: PortId = if trunk { 10 } else { 0 };
        if trunk {
            let mut map = vec![NO_PORT; 4096];
            map[10] = 10;
            ports[0] = Some(PortConf {
                vlans: Some(Arc::from(map)),
                mtu: 1500,
                ..Default::default()
            });
            ports[10] = Some(PortConf {
                net: Some(1),
                parent: Some((0, 10)),
                ..Default::default()
            });
        } else {
            ports[0] = Some(PortConf::access(Some(1), 1024));
        }
        ports[1] = Some(PortConf::access(Some(1), 1024));
        let nets = vec![
            None,
            Some(NetConf {
                ports: vec![1, a_port],
                mac_limit: 1024,
                aging_secs: 300,
                statics: vec![],
                encrypted: false,
                esp_udp: false,
            }),
        ];
        tx.send((
            10,
            Command::Config(Arc::new(Snapshot {
                gen: 1,
                ports,
                nets,
                ..Default::default()
            })),
        ))
        .expect("worker channel open");
        worker.poll_once(NOW);
        let mut cache = PoolCache::new(pool);
        // Both hosts speak once so each is learned.
        let tag = trunk.then_some(10);
        assert!(peers[0].send(&mut cache, &frame([0xff; 6], A, tag)));
        assert!(peers[1].send(&mut cache, &frame([0xff; 6], B, None)));
        worker.poll_once(NOW);
        for p in peers.iter_mut() {
            while p.recv(&mut cache).is_some() {}
        }
        let mut burst = Burst::new();
        for _ in 0..BURST {
            let mut b = cache.alloc().expect("a buffer");
            assert!(cache.pool().fill(&mut b, &frame(B, A, tag)));
            assert!(burst.push(b).is_ok());
        }
        Rig {
            worker,
            peers,
            cache,
            burst,
        }
    }

    #[inline]
    fn swap_macs(&mut self, dst: [u8; 6], src: [u8; 6]) {
        let pool = self.cache.pool();
        for b in self.burst.bufs_mut() {
            let d = pool.data_mut(b);
            d[..6].copy_from_slice(&dst);
            d[6..12].copy_from_slice(&src);
        }
    }

    /// 32 frames A -> B, then 32 frames B -> A.
    #[inline]
    fn round(&mut self) {
        self.peers[0].send_burst(&mut self.burst);
        self.worker.poll_once(NOW);
        self.peers[1].recv_burst(&mut self.burst);
        self.swap_macs(A, B);
        self.peers[1].send_burst(&mut self.burst);
        self.worker.poll_once(NOW);
        self.peers[0].recv_burst(&mut self.burst);
        self.swap_macs(B, A);
    }
}

fn vlan(c: &mut Criterion) {
    let mut g = c.benchmark_group("vlan");
    g.throughput(Throughput::Elements(2 * BURST as u64));
    for (name, trunk) in [("access_access_64B", false), ("trunk_access_64B", true)] {
        let mut rig = Rig::new(trunk);
        g.bench_function(name, |b| b.iter(|| rig.round()));
        assert_eq!(rig.burst.len(), BURST, "{name}: every frame came back");
        let drops: u64 = DropReason::ALL
            .iter()
            .map(|d| rig.worker.stats().pipeline.at(drop_index(*d)).get())
            .sum();
        assert_eq!(drops, 0, "{name}: nothing dropped");
    }
    g.finish();
}

criterion_group!(benches, vlan);
criterion_main!(benches);
