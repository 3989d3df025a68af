//! Scenario tests of 802.1Q trunks over in-memory ports: exact bytes out, named drops.
//!
//! Topology: port 0 is a trunk with subinterfaces 10 (port 10 -> network 1) and 20 (port 20 ->
//! network 2), and optionally a native VLAN in network 3; port 1 is an access port in network 1,
//! port 2 an access port in network 2, port 3 an access port in network 3.

use dataplane::burst::Burst;
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use std::collections::BTreeMap;
use std::sync::Arc;
use vswitch::config::{NetConf, PortConf, Snapshot, NO_PORT};
use vswitch::counters::{drop_index, event_index, DropReason, Event};
use vswitch::pipeline::Switch;

const TRUNK: PortId = 0;
const ACCESS_10: PortId = 1;
const ACCESS_20: PortId = 2;
const ACCESS_NATIVE: PortId = 3;
const SUB_10: PortId = 10;
const SUB_20: PortId = 20;

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const BCAST: [u8; 6] = [0xff; 6];

fn untagged(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut i = 0u8;
    while f.len() < len {
        f.push(i);
        i = i.wrapping_add(1);
    }
    f
}

fn tagged(tpid: u16, pcp: u8, vid: u16, inner: &[u8]) -> Vec<u8> {
    let mut f = inner[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&((u16::from(pcp) << 13) | vid).to_be_bytes());
    f.extend_from_slice(&inner[12..]);
    f
}

struct Rig {
    cache: PoolCache,
    worker: Worker<Switch>,
    tx: crossbeam::channel::Sender<(u64, Command<Switch>)>,
    seq: u64,
    peers: BTreeMap<PortId, MemPeer>,
}

fn snapshot(native: bool, trunk_mtu: u32) -> Snapshot {
    let mut map = vec![NO_PORT; 4096];
    map[10] = SUB_10;
    map[20] = SUB_20;
    let mut ports = vec![None; 21];
    ports[TRUNK as usize] = Some(PortConf {
        net: native.then_some(3),
        mtu: trunk_mtu,
        vlans: Some(Arc::from(map)),
        ..Default::default()
    });
    ports[SUB_10 as usize] = Some(PortConf {
        net: Some(1),
        parent: Some((TRUNK, 10)),
        ..Default::default()
    });
    ports[SUB_20 as usize] = Some(PortConf {
        net: Some(2),
        parent: Some((TRUNK, 20)),
        ..Default::default()
    });
    ports[ACCESS_10 as usize] = Some(PortConf::access(Some(1), 100));
    ports[ACCESS_20 as usize] = Some(PortConf::access(Some(2), 100));
    ports[ACCESS_NATIVE as usize] = Some(PortConf::access(Some(3), 100));
    let net = |ports: Vec<PortId>| {
        Some(NetConf {
            ports,
            mac_limit: 1000,
            aging_secs: 300,
            statics: vec![],
            encrypted: false,
            esp_udp: false,
        })
    };
    let mut nets = vec![
        None,
        net(vec![ACCESS_10, SUB_10]),
        net(vec![ACCESS_20, SUB_20]),
        None,
    ];
    nets[3] = net(if native {
        vec![TRUNK, ACCESS_NATIVE]
    } else {
        vec![ACCESS_NATIVE]
    });
    Snapshot {
        gen: 1,
        ports,
        nets,
        ..Default::default()
    }
}

impl Rig {
    fn new(native: bool) -> Rig {
        Rig::with(snapshot(native, 1500))
    }

    fn with(snap: Snapshot) -> Rig {
        let pool = Pool::new(2048).unwrap();
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
        };
        for port in [TRUNK, ACCESS_10, ACCESS_20, ACCESS_NATIVE] {
            let (io, peer) = mem::pair(pool.clone(), 256);
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
        self.worker.poll_once(1);
    }

    /// Sends `frame` on `port`, runs the worker, returns what every port received.
    fn exchange(&mut self, port: PortId, frame: &[u8]) -> BTreeMap<PortId, Vec<Vec<u8>>> {
        assert!(self
            .peers
            .get_mut(&port)
            .unwrap()
            .send(&mut self.cache, frame));
        self.worker.poll_once(1);
        let mut out = BTreeMap::new();
        for (&p, peer) in self.peers.iter_mut() {
            while let Some(f) = peer.recv(&mut self.cache) {
                out.entry(p).or_insert_with(Vec::new).push(f);
            }
        }
        out
    }

    fn dropped(&self, why: DropReason) -> u64 {
        self.worker.stats().pipeline.at(drop_index(why)).get()
    }

    fn event(&self, e: Event) -> u64 {
        self.worker.stats().pipeline.at(event_index(e)).get()
    }
}

fn only(port: PortId, frame: Vec<u8>) -> BTreeMap<PortId, Vec<Vec<u8>>> {
    BTreeMap::from([(port, vec![frame])])
}

#[test]
fn tagged_frame_enters_its_vlans_network_untagged() {
    let mut rig = Rig::new(false);
    let inner = untagged(BCAST, A, 64);
    assert_eq!(
        rig.exchange(TRUNK, &tagged(0x8100, 0, 10, &inner)),
        only(ACCESS_10, inner.clone())
    );
    assert_eq!(
        rig.exchange(TRUNK, &tagged(0x8100, 0, 20, &inner)),
        only(ACCESS_20, inner)
    );
}

#[test]
fn frame_leaving_a_subinterface_is_tagged_with_its_vid_and_pcp_is_kept() {
    let mut rig = Rig::new(false);
    // A (behind the trunk, VLAN 10) speaks first, with priority 5, so the switch learns it.
    let from_a = untagged(BCAST, A, 64);
    rig.exchange(TRUNK, &tagged(0x8100, 5, 10, &from_a));
    // B answers from the access port: out of the trunk tagged 10, priority 0 (B set none).
    let to_a = untagged(A, B, 64);
    assert_eq!(
        rig.exchange(ACCESS_10, &to_a),
        only(TRUNK, tagged(0x8100, 0, 10, &to_a))
    );
    // On an access port the priority is only metadata: the frame leaves untagged.
    let bcast = untagged(BCAST, A, 80);
    assert_eq!(
        rig.exchange(TRUNK, &tagged(0x8100, 3, 10, &bcast)),
        only(ACCESS_10, bcast)
    );
}

#[test]
fn pcp_survives_from_one_trunk_vlan_to_the_same_network_on_the_trunk() {
    // Two subinterfaces of one trunk in the same network: a frame goes in on VLAN 10 with PCP 6
    // and out on VLAN 20 with PCP 6.
    let mut snap = snapshot(false, 1500);
    if let Some(Some(p)) = snap.ports.get_mut(SUB_20 as usize) {
        p.net = Some(1);
    }
    snap.nets[1] = Some(NetConf {
        ports: vec![ACCESS_10, SUB_10, SUB_20],
        mac_limit: 1000,
        aging_secs: 300,
        statics: vec![],
        encrypted: false,
        esp_udp: false,
    });
    snap.nets[2] = Some(NetConf {
        ports: vec![ACCESS_20],
        mac_limit: 1000,
        aging_secs: 300,
        statics: vec![],
        encrypted: false,
        esp_udp: false,
    });
    let mut rig = Rig::with(snap);
    let inner = untagged(BCAST, A, 64);
    let out = rig.exchange(TRUNK, &tagged(0x8100, 6, 10, &inner));
    assert_eq!(out.get(&TRUNK), Some(&vec![tagged(0x8100, 6, 20, &inner)]));
    assert_eq!(out.get(&ACCESS_10), Some(&vec![inner]));
}

#[test]
fn vlans_stay_apart_even_with_the_same_macs() {
    let mut rig = Rig::new(false);
    rig.exchange(TRUNK, &tagged(0x8100, 0, 10, &untagged(BCAST, A, 64)));
    rig.exchange(TRUNK, &tagged(0x8100, 0, 20, &untagged(BCAST, A, 64)));
    // B on access 20 talks to A: the frame goes out tagged 20, never 10, never to access 10.
    let to_a = untagged(A, B, 64);
    assert_eq!(
        rig.exchange(ACCESS_20, &to_a),
        only(TRUNK, tagged(0x8100, 0, 20, &to_a))
    );
    // Flooding from access 10 reaches only the trunk tagged 10.
    let b = untagged(BCAST, B, 64);
    assert_eq!(
        rig.exchange(ACCESS_10, &b),
        only(TRUNK, tagged(0x8100, 0, 10, &b))
    );
}

#[test]
fn native_vlan_carries_untagged_and_priority_tagged_frames() {
    let mut rig = Rig::new(true);
    let f = untagged(BCAST, A, 64);
    assert_eq!(rig.exchange(TRUNK, &f), only(ACCESS_NATIVE, f.clone()));
    assert_eq!(
        rig.exchange(TRUNK, &tagged(0x8100, 4, 0, &f)),
        only(ACCESS_NATIVE, f.clone())
    );
    // The way back is untagged.
    let back = untagged(A, B, 64);
    assert_eq!(rig.exchange(ACCESS_NATIVE, &back), only(TRUNK, back));
}

#[test]
fn bad_tags_are_dropped_by_name_and_reach_no_vlan() {
    let mut rig = Rig::new(false);
    let f = untagged(BCAST, A, 64);
    let cases: Vec<(PortId, Vec<u8>, DropReason)> = vec![
        (TRUNK, f.clone(), DropReason::VlanUntaggedOnTrunk),
        (
            TRUNK,
            tagged(0x8100, 0, 0, &f),
            DropReason::VlanUntaggedOnTrunk,
        ),
        (TRUNK, tagged(0x8100, 0, 30, &f), DropReason::VlanUnknownVid),
        (
            TRUNK,
            tagged(0x8100, 0, 4095, &f),
            DropReason::VlanReservedVid,
        ),
        (TRUNK, tagged(0x88a8, 0, 10, &f), DropReason::VlanQinq),
        (TRUNK, tagged(0x9100, 0, 10, &f), DropReason::VlanQinq),
        (
            TRUNK,
            tagged(0x8100, 0, 10, &tagged(0x8100, 0, 20, &f)),
            DropReason::VlanStacked,
        ),
        (
            ACCESS_10,
            tagged(0x8100, 0, 10, &f),
            DropReason::VlanTagOnAccess,
        ),
        (
            TRUNK,
            tagged(0x8100, 0, 10, &f)[..16].to_vec(),
            DropReason::VlanTruncated,
        ),
        (
            TRUNK,
            tagged(0x8100, 0, 10, &untagged(BCAST, A, 1515)),
            DropReason::VlanOversize,
        ),
    ];
    for (port, frame, why) in cases {
        let before = rig.dropped(why);
        assert!(
            rig.exchange(port, &frame).is_empty(),
            "{} got through",
            why.name()
        );
        assert_eq!(rig.dropped(why), before + 1, "{}", why.name());
    }
    // The largest legal tagged frame (MTU 1500 + 18) passes.
    let max = untagged(BCAST, A, 1514);
    assert_eq!(
        rig.exchange(TRUNK, &tagged(0x8100, 0, 10, &max)),
        only(ACCESS_10, max)
    );
}

#[test]
fn subinterfaces_have_their_own_counters_and_macs() {
    let mut rig = Rig::new(false);
    rig.exchange(TRUNK, &tagged(0x8100, 0, 10, &untagged(BCAST, A, 64)));
    rig.exchange(ACCESS_10, &untagged(A, B, 100));
    let s = rig.worker.stats();
    assert_eq!(
        (
            s.port(SUB_10).rx_packets.get(),
            s.port(SUB_10).rx_bytes.get()
        ),
        (1, 64)
    );
    assert_eq!(
        (
            s.port(SUB_10).tx_packets.get(),
            s.port(SUB_10).tx_bytes.get()
        ),
        (1, 100)
    );
    assert_eq!(
        s.port(SUB_20).rx_packets.get() + s.port(SUB_20).tx_packets.get(),
        0
    );
    // The trunk's own counters see the tagged bytes.
    assert_eq!(
        (s.port(TRUNK).rx_bytes.get(), s.port(TRUNK).tx_bytes.get()),
        (68, 104)
    );
    let fdb = rig.worker.pipeline().bridge.fdb.dump(None);
    assert!(
        fdb.iter()
            .any(|e| e.mac == A && e.port == SUB_10 && e.net == 1),
        "{fdb:?}"
    );
    assert_eq!(rig.event(Event::Forwarded), 1);
}

#[test]
fn a_mixed_burst_is_split_by_vlan_without_losing_order() {
    let mut rig = Rig::new(false);
    let frames: Vec<Vec<u8>> = (0..32u8)
        .map(|i| {
            let mut inner = untagged(BCAST, [0x02, 0, 0, 0, 1, i], 64);
            inner[20] = i;
            tagged(0x8100, 0, if i % 3 == 0 { 20 } else { 10 }, &inner)
        })
        .collect();
    let mut burst = Burst::new();
    for f in &frames {
        let mut b = rig.cache.alloc().unwrap();
        assert!(rig.cache.pool().fill(&mut b, f));
        burst.push(b).unwrap();
    }
    assert_eq!(
        rig.peers.get_mut(&TRUNK).unwrap().send_burst(&mut burst),
        32
    );
    rig.worker.poll_once(1);
    let mut got = BTreeMap::new();
    for (&p, peer) in rig.peers.iter_mut() {
        while let Some(f) = peer.recv(&mut rig.cache) {
            got.entry(p).or_insert_with(Vec::new).push(f[20]);
        }
    }
    let want10: Vec<u8> = (0..32).filter(|i| i % 3 != 0).collect();
    let want20: Vec<u8> = (0..32).filter(|i| i % 3 == 0).collect();
    assert_eq!(got.get(&ACCESS_10), Some(&want10));
    assert_eq!(got.get(&ACCESS_20), Some(&want20));
    assert_eq!(got.len(), 2);
}

#[test]
fn a_capture_on_a_subinterface_sees_its_trunks_frames_of_that_vid_tagged_both_ways() {
    use dataplane::capture::{Capture, Direction, Filter};
    let mut rig = Rig::new(false);
    // What the daemon does for `capture TRUNK.10`: tap the trunk, keep VID 10.
    let filter = Filter {
        rx: true,
        tx: true,
        vid: Some(10),
    };
    let cap = Arc::new(Capture::new(128, 16, filter, None).unwrap());
    rig.command(Command::Tap {
        port: TRUNK,
        capture: cap.clone(),
    });
    let from_a = tagged(0x8100, 0, 10, &untagged(BCAST, A, 64));
    rig.exchange(TRUNK, &from_a);
    rig.exchange(TRUNK, &tagged(0x8100, 0, 20, &untagged(BCAST, A, 64)));
    let to_a = untagged(A, B, 64);
    let out = rig.exchange(ACCESS_10, &to_a);
    let on_wire = out.get(&TRUNK).and_then(|f| f.first()).cloned().unwrap();
    let mut seen = Vec::new();
    while let Some(r) = cap.pop() {
        assert_eq!(r.port(), TRUNK);
        seen.push((r.direction(), r.data().to_vec()));
    }
    assert_eq!(
        seen,
        vec![(Direction::Rx, from_a), (Direction::Tx, on_wire)],
        "VLAN 20 is not shown; frames are shown tagged, as on the wire"
    );
    rig.command(Command::Untap(cap.clone()));
    rig.exchange(TRUNK, &tagged(0x8100, 0, 10, &untagged(BCAST, A, 64)));
    assert_eq!(cap.pending(), 0, "an untapped capture sees nothing");
    assert_eq!(Arc::strong_count(&cap), 1, "the worker let go of it");
}
