//! Two workers share what they learn: a MAC seen only by worker A is forwarded, not flooded, by
//! worker B.

use dataplane::pool::{Pool, PoolCache};
use dataplane::port::{mem, PortIo};
use dataplane::worker::{Command, Worker};
use std::sync::Arc;
use vswitch::bridge::LearnSync;
use vswitch::config::{NetConf, PortConf, Snapshot};
use vswitch::counters::{event_index, Event};
use vswitch::pipeline::Switch;

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, 0xab);
    f
}

#[test]
fn a_mac_learned_on_one_worker_is_known_to_the_other() {
    let pool = Pool::new(1024).unwrap();
    let mut cache = PoolCache::new(pool.clone());
    let inboxes = LearnSync::inboxes(2, 64);
    let snap = Arc::new(Snapshot {
        gen: 1,
        ports: vec![
            Some(PortConf {
                net: Some(1),
                mac_limit: 100,
                ..Default::default()
            });
            3
        ],
        nets: vec![
            None,
            Some(NetConf {
                ports: vec![0, 1, 2],
                mac_limit: 1000,
                aging_secs: 300,
                statics: vec![],
                encrypted: false,
                esp_udp: false,
            }),
        ],
        ..Default::default()
    });
    // Worker 0 receives on port 0, worker 1 on port 1; both can transmit on every port.
    let mut workers = Vec::new();
    let mut peers: Vec<Vec<mem::MemPeer>> = Vec::new();
    for w in 0..2u16 {
        let mut sw = Switch::new(pool.clone(), 1024);
        sw.bridge.set_sync(LearnSync {
            me: w as usize,
            inboxes: inboxes.clone(),
        });
        let (mut worker, tx) = Worker::new(w, pool.clone(), sw, snap.clone());
        let mut my_peers = Vec::new();
        for port in 0..3u16 {
            let (p, peer) = mem::pair(pool.clone(), 64);
            tx.send((
                u64::from(port) + 1,
                Command::Attach {
                    port,
                    io: PortIo::Mem(p),
                    rx: port == w,
                },
            ))
            .unwrap();
            my_peers.push(peer);
        }
        tx.send((10, Command::Config(snap.clone()))).unwrap();
        worker.poll_once(0);
        workers.push((worker, tx));
        peers.push(my_peers);
    }
    let (a, b) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    // A speaks on port 0 (worker 0): flooded, and learned by worker 0.
    assert!(peers[0][0].send(&mut cache, &frame(b, a)));
    workers[0].0.poll_once(1);
    // B answers on port 1 (worker 1), which never saw A itself.
    assert!(peers[1][1].send(&mut cache, &frame(a, b)));
    workers[1].0.poll_once(1);
    let got = peers[1][0]
        .recv(&mut cache)
        .expect("worker 1 forwarded to A's port");
    assert_eq!(got, frame(a, b));
    assert!(
        peers[1][2].recv(&mut cache).is_none(),
        "worker 1 flooded instead of forwarding"
    );
    let stats = workers[1].0.stats();
    assert_eq!(stats.pipeline.at(event_index(Event::MacSynced)).get(), 1);
    assert_eq!(stats.pipeline.at(event_index(Event::Forwarded)).get(), 1);
    assert_eq!(stats.pipeline.at(event_index(Event::Flooded)).get(), 0);
    // Drain what worker 0 flooded so every buffer goes back.
    while peers[0][1].recv(&mut cache).is_some() || peers[0][2].recv(&mut cache).is_some() {}
}
