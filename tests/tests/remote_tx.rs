//! Transmit hand-off between workers: a worker without a queue of its own on a port (an AF_XDP
//! interface with fewer queues than workers) sends through a ring that the queue's owner drains.

use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem;
use dataplane::port::remote::RemoteTx;
use dataplane::port::PortIo;
use dataplane::ring::ring;
use dataplane::worker::{Command, Worker};
use std::sync::Arc;
use vswitch::config::{NetConf, PortConf, Snapshot};
use vswitch::counters::{event_index, Event};
use vswitch::pipeline::Switch;

fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, tag);
    f
}

#[test]
fn a_worker_without_a_queue_sends_through_the_owner() {
    let pool = Pool::new(1024).unwrap();
    let mut cache = PoolCache::new(pool.clone());
    let snap = Arc::new(Snapshot {
        gen: 1,
        ports: vec![Some(PortConf::access(Some(1), 100)); 2],
        nets: vec![
            None,
            Some(NetConf {
                ports: vec![0, 1],
                mac_limit: 100,
                aging_secs: 300,
                statics: vec![],
                encrypted: false,
                esp_udp: false,
            }),
        ],
        ..Default::default()
    });
    // Worker 0 owns port 0's only queue; worker 1 receives on port 1 and has no queue on port 0.
    let (mut w0, tx0) = Worker::new(
        0,
        pool.clone(),
        Switch::new(pool.clone(), 1024),
        snap.clone(),
    );
    let (mut w1, tx1) = Worker::new(
        1,
        pool.clone(),
        Switch::new(pool.clone(), 1024),
        snap.clone(),
    );
    let (p0, mut peer0) = mem::pair(pool.clone(), 64);
    let (p1, mut peer1) = mem::pair(pool.clone(), 64);
    let (ring_tx, ring_rx) = ring(pool.clone(), 4);
    let (back_tx, back_rx) = ring(pool.clone(), 64);
    tx0.send((
        1,
        Command::Attach {
            port: 0,
            io: PortIo::Mem(p0),
            rx: true,
        },
    ))
    .unwrap();
    tx0.send((
        2,
        Command::Inbound {
            port: 0,
            ring: ring_rx,
        },
    ))
    .unwrap();
    tx1.send((
        1,
        Command::Attach {
            port: 1,
            io: PortIo::Mem(p1),
            rx: true,
        },
    ))
    .unwrap();
    tx1.send((
        2,
        Command::Attach {
            port: 0,
            io: PortIo::Remote(RemoteTx::new(ring_tx, None)),
            rx: false,
        },
    ))
    .unwrap();
    // And the other way round for port 1, which worker 1 owns.
    tx0.send((
        3,
        Command::Attach {
            port: 1,
            io: PortIo::Remote(RemoteTx::new(back_tx, None)),
            rx: false,
        },
    ))
    .unwrap();
    tx1.send((
        3,
        Command::Inbound {
            port: 1,
            ring: back_rx,
        },
    ))
    .unwrap();
    w0.poll_once(1);
    w1.poll_once(1);

    let (a, b) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    // B, behind port 1 (worker 1), broadcasts: the flood to port 0 goes through the ring.
    let bcast = frame([0xff; 6], b, 1);
    assert!(peer1.send(&mut cache, &bcast));
    w1.poll_once(1);
    assert!(
        peer0.recv(&mut cache).is_none(),
        "nothing reaches port 0 before its owner runs"
    );
    w0.poll_once(1);
    assert_eq!(peer0.recv(&mut cache), Some(bcast));
    // Unicast to A, learned behind port 0 from its own frame (which worker 0 floods to port 1).
    assert!(peer0.send(&mut cache, &frame(b, a, 2)));
    w0.poll_once(1);
    w1.poll_once(1);
    assert_eq!(peer1.recv(&mut cache), Some(frame(b, a, 2)));
    // Worker 1 has not seen A itself, so it floods; the copy still arrives through the ring.
    let uni = frame(a, b, 3);
    assert!(peer1.send(&mut cache, &uni));
    w1.poll_once(1);
    w0.poll_once(1);
    assert_eq!(peer0.recv(&mut cache), Some(uni));
    // The owner counts what it sent on its port; the ring refuses what does not fit (4 slots).
    assert_eq!(w0.stats().port(0).tx_packets.get(), 2);
    for i in 0..8u8 {
        assert!(peer1.send(&mut cache, &frame([0xff; 6], b, 10 + i)));
    }
    w1.poll_once(1);
    assert_eq!(
        w1.stats().port(0).tx_dropped.get(),
        4,
        "a full ring drops, counted"
    );
    w0.poll_once(1);
    let mut got = 0;
    while peer0.recv(&mut cache).is_some() {
        got += 1;
    }
    assert_eq!(got, 4);
    assert!(w1.stats().pipeline.at(event_index(Event::Flooded)).get() >= 3);
}
