//! TAP reads through io_uring (`--tap-uring on`, [`dataplane::port::uring_rx`]): every frame
//! the kernel sends out of a TAP arrives once, whole and in order, with and without virtio-net
//! headers, and releasing the queue gives every provided buffer back to the pool.
//!
//! The kernel end of the TAP lives in a namespace of the test's own with a permanent neighbour
//! entry, and a UDP socket there sends numbered datagrams of varying length through it.

use dataplane::burst::Burst;
use dataplane::counters::PortCounters;
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::tap::{TapDevice, TapFeatures};
use dataplane::port::Port;
use dataplane::sys::netns;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use tests::can_run_system_tests;
use vswitch::testbed::{unique_name, Netns};

/// Datagrams sent per case.
const COUNT: u32 = 3000;
/// The UDP port they go to.
const PORT: u16 = 9999;

/// The payload of datagram `i`: its number, then bytes derived from it; 4 to ~1400 bytes.
fn payload(i: u32) -> Vec<u8> {
    let len = 4 + (i as usize * 37) % 1400;
    let mut p: Vec<u8> = (0..len).map(|k| (k as u32 ^ i) as u8).collect();
    p[..4].copy_from_slice(&i.to_be_bytes());
    p
}

/// The datagram number of `frame` if it is one of ours (IPv4, UDP to [`PORT`]) and whole.
fn datagram(frame: &[u8]) -> Option<u32> {
    if frame.len() < 14 + 20 + 8 + 4 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = frame.get(14 + ihl..)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != PORT {
        return None;
    }
    let data = udp.get(8..)?;
    let i = u32::from_be_bytes(data.get(..4)?.try_into().ok()?);
    assert_eq!(data, &payload(i)[..], "datagram {i} arrived changed");
    Some(i)
}

fn reads_every_frame(offloads: bool) {
    let ns = Netns::create(&unique_name("tu")).expect("namespace");
    let dev = TapDevice::open(
        "tu0",
        Some(&ns.path()),
        1,
        Some(1500),
        TapFeatures {
            offloads,
            uring: true,
            ..TapFeatures::default()
        },
    )
    .expect("open the TAP");
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "tu0"])
        .expect("address");
    ns.ip(&[
        "neigh",
        "add",
        "10.77.0.2",
        "lladdr",
        "02:00:00:00:77:02",
        "dev",
        "tu0",
        "nud",
        "permanent",
    ])
    .expect("neighbour");
    let pool = Pool::with_large(4096, 64).expect("pool");
    let mut cache = PoolCache::new(pool.clone());
    let mut q = dev.queue(0).expect("queue");
    let counters = PortCounters::default();

    let path = ns.path();
    let sender = std::thread::spawn(move || {
        netns::run_in(Some(&path), || {
            let s = UdpSocket::bind("10.77.0.1:0")?;
            for i in 0..COUNT {
                s.send_to(&payload(i), ("10.77.0.2", PORT))?;
                if i % 16 == 15 {
                    // Paced: the TAP's queue holds 500 frames and the reader is one thread.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        })
    });

    let mut next = 0u32;
    let mut burst = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while next < COUNT && Instant::now() < deadline {
        if q.rx_burst(&mut cache, &mut burst, &counters) == 0 {
            std::thread::yield_now();
        }
        for b in burst.drain() {
            if let Some(i) = datagram(pool.data(&b)) {
                assert_eq!(
                    i, next,
                    "datagrams out of order or lost (offloads {offloads})"
                );
                next += 1;
            }
            cache.free(b);
        }
    }
    sender.join().expect("sender").expect("send");
    assert!(q.uring_reads(), "the queue fell back to plain reads");
    assert_eq!(next, COUNT, "datagrams read (offloads {offloads})");
    assert_eq!(counters.rx_errors.get(), 0, "receive errors");

    q.release(&mut cache);
    drop(q);
    drop(cache);
    assert_eq!(
        pool.available() as u32,
        pool.capacity(),
        "small buffers not given back"
    );
    assert_eq!(
        pool.large_available() as u32,
        pool.large_capacity(),
        "large buffers not given back"
    );
    dev.destroy().expect("destroy");
}

#[test]
fn io_uring_reads_every_frame_without_offloads() {
    if !can_run_system_tests("io_uring_reads_every_frame_without_offloads") {
        return;
    }
    reads_every_frame(false);
}

#[test]
fn io_uring_reads_every_frame_with_offloads() {
    if !can_run_system_tests("io_uring_reads_every_frame_with_offloads") {
        return;
    }
    reads_every_frame(true);
}
