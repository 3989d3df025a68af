//! VXLAN encapsulation and decapsulation through the whole pipeline: one worker, 64-byte inner
//! frames, 32 per round.
//!
//! Topology: port 0 is the uplink (192.168.50.1/24), port 1 an access port in overlay network 1
//! (VNI 100), port 1000 the tunnel to the peer VTEP 192.168.50.2 (a peer of network 1, its
//! neighbour entry resolved before measuring).
//!
//! `encap_64B`: 32 frames from host A on the access port to host R, statically behind the
//! tunnel: each goes through the bridge (learn A, look up R) and out of the uplink encapsulated
//! (neighbour lookup, flow hash, 50-byte header into the headroom). The harness takes the VXLAN
//! frames from the uplink's peer, trims the 50 outer bytes off to get the inner frames back and
//! sends them again.
//!
//! `decap_64B`: 32 VXLAN frames from the peer VTEP on the uplink, carrying frames from R to A
//! (static on the access port): each is validated, decapsulated and switched (learn R on the
//! tunnel, look up A) out of the access port. The harness prepends the 50-byte outer header
//! again, copied from the one it built, and sends them again.
//!
//! Nothing allocates in either round: the same 32 buffers circulate.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::burst::{Burst, BURST};
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch::config::{NetConf, PortConf, Snapshot, TunnelConf, UplinkConf};
use vswitch::counters::{drop_counters, event_index, Event};
use vswitch::pipeline::Switch;

const UPLINK: PortId = 0;
const ACCESS: PortId = 1;
const TUNNEL: PortId = 1000;
const VNI: u32 = 100;
const OUTER: usize = 50;
const INNER: usize = 64;
const NOW: u64 = 1;

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
/// Local host on the access port.
const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// Remote host behind the peer VTEP.
const R: [u8; 6] = [0x02, 0, 0, 0, 0, 0x1a];

/// RFC 1071 checksum.
fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 64-byte Ethernet / IPv4 / UDP frame from `src` to `dst`; `flow` picks the UDP source port.
fn inner(dst: [u8; 6], src: [u8; 6], flow: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (INNER - 14) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(10_000 + flow).to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(INNER, 0);
    f
}

/// The outer header of VXLAN from the peer to us around a 64-byte inner frame.
fn outer_from_peer() -> [u8; OUTER] {
    let mut h = [0u8; OUTER];
    let ip_len = (OUTER - 14 + INNER) as u16;
    h[0..6].copy_from_slice(&OUR_MAC);
    h[6..12].copy_from_slice(&PEER_MAC);
    h[12..14].copy_from_slice(&[0x08, 0x00]);
    h[14] = 0x45;
    h[16..18].copy_from_slice(&ip_len.to_be_bytes());
    h[20] = 0x40;
    h[22] = 64;
    h[23] = 17;
    h[26..30].copy_from_slice(&PEER_IP.octets());
    h[30..34].copy_from_slice(&OUR_IP.octets());
    let c = csum(&h[14..34]);
    h[24..26].copy_from_slice(&c.to_be_bytes());
    h[34..36].copy_from_slice(&50_000u16.to_be_bytes());
    h[36..38].copy_from_slice(&4789u16.to_be_bytes());
    h[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    h[42] = 0x08;
    h[46..49].copy_from_slice(&VNI.to_be_bytes()[1..]);
    h
}

/// An ARP reply from the peer to us, so that its MAC is known before measuring.
fn peer_arp_reply() -> Vec<u8> {
    let mut f = OUR_MAC.to_vec();
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02]);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&PEER_IP.octets());
    f.extend_from_slice(&OUR_MAC);
    f.extend_from_slice(&OUR_IP.octets());
    f
}

fn snapshot(statics: Vec<([u8; 6], PortId)>) -> Snapshot {
    let mut ports = vec![None; TUNNEL as usize + 1];
    ports[UPLINK as usize] = Some(PortConf::default());
    ports[ACCESS as usize] = Some(PortConf::access(Some(1), 1024));
    ports[TUNNEL as usize] = Some(PortConf {
        net: Some(1),
        mac_limit: 1024,
        tunnel: Some(TunnelConf {
            vtep: PEER_IP,
            vni: VNI,
            encrypted: false,
            esp_udp: false,
        }),
        ..Default::default()
    });
    Snapshot {
        gen: 1,
        ports,
        nets: vec![
            None,
            Some(NetConf {
                ports: vec![ACCESS, TUNNEL],
                mac_limit: 1024,
                aging_secs: 300,
                statics,
                encrypted: false,
                esp_udp: false,
            }),
        ],
        uplink: Some(UplinkConf {
            port: UPLINK,
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix: 24,
            gateway: None,
            vxlan_port: 4789,
            mtu: 1500,
            tunnel_gso: false,
            uso: false,
        }),
        vnis: vec![(VNI, 1)],
        tunnels: vec![((1, u32::from(PEER_IP)), TUNNEL)],
        ..Default::default()
    }
}

struct Rig {
    worker: Worker<Switch>,
    uplink: MemPeer,
    access: MemPeer,
    pool: Arc<Pool>,
    burst: Burst,
    header: [u8; OUTER],
}

impl Rig {
    fn new(statics: Vec<([u8; 6], PortId)>) -> Rig {
        let pool = Pool::new(4096).expect("map the buffer pool");
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
        tx.send((10, Command::Config(Arc::new(snapshot(statics)))))
            .expect("worker channel open");
        worker.poll_once(NOW);
        let access = peers.pop().expect("access peer");
        let mut uplink = peers.pop().expect("uplink peer");
        let mut cache = PoolCache::new(pool.clone());
        assert!(uplink.send(&mut cache, &peer_arp_reply()));
        worker.poll_once(NOW);
        assert_eq!(
            worker.pipeline().overlay.neighbours(),
            vec![(PEER_IP, PEER_MAC)],
            "peer resolved"
        );
        assert_eq!(uplink.pending(), 0);
        let mut burst = Burst::new();
        for _ in 0..BURST {
            assert!(burst.push(cache.alloc().expect("a buffer")).is_ok());
        }
        Rig {
            worker,
            uplink,
            access,
            pool,
            burst,
            header: outer_from_peer(),
        }
    }

    /// 32 frames in on the access port, 32 VXLAN frames out of the uplink, trimmed back.
    #[inline]
    fn encap_round(&mut self) {
        self.access.send_burst(&mut self.burst);
        self.worker.poll_once(NOW);
        self.uplink.recv_burst(&mut self.burst);
        for b in self.burst.bufs_mut() {
            self.pool.trim_front(b, OUTER);
        }
    }

    /// 32 VXLAN frames in on the uplink, 32 inner frames out of the access port, re-wrapped.
    #[inline]
    fn decap_round(&mut self) {
        self.uplink.send_burst(&mut self.burst);
        self.worker.poll_once(NOW);
        self.access.recv_burst(&mut self.burst);
        for b in self.burst.bufs_mut() {
            if let Some(d) = self.pool.prepend(b, OUTER) {
                d[..OUTER].copy_from_slice(&self.header);
            }
        }
    }

    fn event(&self, e: Event) -> u64 {
        self.worker.stats().pipeline.at(event_index(e)).get()
    }

    fn check(&self, name: &str) {
        assert_eq!(self.burst.len(), BURST, "{name}: every frame came back");
        let drops: Vec<(&str, u64)> = drop_counters()
            .map(|(i, n)| (n, self.worker.stats().pipeline.at(i).get()))
            .filter(|&(_, v)| v > 0)
            .collect();
        assert!(drops.is_empty(), "{name}: dropped {drops:?}");
    }
}

fn vxlan(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan");
    g.throughput(Throughput::Elements(BURST as u64));

    let mut rig = Rig::new(vec![(R, TUNNEL)]);
    for (i, b) in rig.burst.bufs_mut().iter_mut().enumerate() {
        assert!(rig.pool.fill(b, &inner(R, A, i as u16)));
    }
    let want: Vec<Vec<u8>> = rig
        .burst
        .bufs()
        .iter()
        .map(|b| rig.pool.data(b).to_vec())
        .collect();
    // One round outside the measurement, checked byte for byte.
    rig.encap_round();
    let got: Vec<Vec<u8>> = rig
        .burst
        .bufs()
        .iter()
        .map(|b| rig.pool.data(b).to_vec())
        .collect();
    assert_eq!(got, want, "encap_64B: the inner frames come back whole");
    g.bench_function("encap_64B", |b| b.iter(|| rig.encap_round()));
    rig.check("encap_64B");
    assert!(rig.event(Event::VxlanEncap) >= BURST as u64);
    drop(rig);

    let mut rig = Rig::new(vec![(A, ACCESS)]);
    let header = rig.header;
    for (i, b) in rig.burst.bufs_mut().iter_mut().enumerate() {
        let mut f = header.to_vec();
        f.extend_from_slice(&inner(A, R, i as u16));
        assert!(rig.pool.fill(b, &f));
    }
    let want: Vec<Vec<u8>> = rig
        .burst
        .bufs()
        .iter()
        .map(|b| rig.pool.data(b).to_vec())
        .collect();
    rig.decap_round();
    let got: Vec<Vec<u8>> = rig
        .burst
        .bufs()
        .iter()
        .map(|b| rig.pool.data(b).to_vec())
        .collect();
    assert_eq!(got, want, "decap_64B: the frames come back whole");
    g.bench_function("decap_64B", |b| b.iter(|| rig.decap_round()));
    rig.check("decap_64B");
    assert!(rig.event(Event::VxlanDecap) >= BURST as u64);
    g.finish();
}

criterion_group!(benches, vxlan);
criterion_main!(benches);
