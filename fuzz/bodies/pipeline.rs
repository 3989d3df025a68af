//! The switch pipeline over arbitrary frames: three in-memory ports on one network and one port
//! on no network. Nothing may panic, every buffer comes back, and the accounting holds:
//! frames received = forwarded + flooded + drops.

use dataplane::burst::Burst;
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::{mem, PortIo};
use dataplane::worker::{Command, Worker};
use std::sync::Arc;
use vswitch::config::{NetConf, PortConf, Snapshot};
use vswitch::counters::{event_index, Event};
use vswitch::pipeline::Switch;

const PORTS: u16 = 4;

/// One input: must not panic; the checks above hold.
pub fn run(data: &[u8]) {
    let pool = Pool::new(512).unwrap();
    let mut cache = PoolCache::new(pool.clone());
    let mut ports = vec![
        Some(PortConf {
            net: Some(1),
            mac_limit: 8,
            ..Default::default()
        });
        PORTS as usize
    ];
    ports[3] = Some(PortConf {
        net: None,
        mac_limit: 8,
        ..Default::default()
    });
    let snap = Arc::new(Snapshot {
        gen: 1,
        ports,
        nets: vec![
            None,
            Some(NetConf {
                ports: vec![0, 1, 2],
                mac_limit: 16,
                aging_secs: 5,
                statics: vec![([2, 0, 0, 0, 0, 9], 2)],
                encrypted: false,
                esp_udp: false,
            }),
        ],
        ..Default::default()
    });
    let (mut w, tx) = Worker::new(0, pool.clone(), Switch::new(pool.clone(), 64), snap.clone());
    let mut peers = Vec::new();
    for port in 0..PORTS {
        let (p, peer) = mem::pair(pool.clone(), 64);
        tx.send((
            u64::from(port) + 1,
            Command::Attach {
                port,
                io: PortIo::Mem(p),
                rx: true,
            },
        ))
        .unwrap();
        peers.push(peer);
    }
    tx.send((100, Command::Config(snap))).unwrap();
    w.poll_once(0);

    // Input: records of [port, time step, len, bytes...].
    let (mut rest, mut now, mut sent) = (data, 0u64, 0u64);
    let mut out = Burst::new();
    while let [port, step, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        now += u64::from(*step % 8);
        if peers[(*port % PORTS as u8) as usize].send(&mut cache, frame) {
            sent += 1;
        }
        w.poll_once(now);
        for p in peers.iter_mut() {
            while p.recv_burst(&mut out) > 0 {
                out.free_all(&mut cache);
            }
        }
    }
    let s = w.stats();
    let c = |e: Event| s.pipeline.at(event_index(e)).get();
    // Every drop any stage registered (failed flood copies are counted there too, and once
    // more as `flood_copy_failed`).
    let drops: u64 = vswitch::counters::drop_counters()
        .map(|(i, _)| s.pipeline.at(i).get())
        .sum();
    assert_eq!(
        sent,
        c(Event::Forwarded) + c(Event::Flooded) + drops - c(Event::FloodCopyFailed),
        "accounting"
    );
    drop(w);
    drop(peers);
    drop(cache);
    assert_eq!(
        pool.available(),
        pool.capacity() as usize,
        "a buffer leaked"
    );
}
