//! Merged TAP transmit written as one gathered write ([`dataplane::port::tap`], [`dataplane::gro`]):
//! in-order TCP segments of one flow in a burst, and equal-sized UDP datagrams of one 5-tuple,
//! leave as one super-frame whose payload is every segment's payload in order, through io_uring
//! and through plain `writev`; a segment that does not follow starts a frame of its own; every
//! buffer goes back to the pool.
//!
//! The kernel end of the TAP lives in a namespace of the test's own; a packet socket bound to
//! it there receives each frame the switch wrote, super-frames whole.

use dataplane::burst::Burst;
use dataplane::checksum::{checksum, fold, pseudo_header_v4, pseudo_header_v6, sum16};
use dataplane::counters::PortCounters;
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::tap::{TapDevice, TapFeatures};
use dataplane::port::Port;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use tests::can_run_system_tests;
use vswitch::testbed::{unique_name, Netns};

const SRC: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const DST: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, 2);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, 1);

/// Ethernet + IPv4 (DF) headers for `l4` bytes of protocol `proto`.
fn eth_ip(proto: u8, l4: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0x78, 1, 2, 0, 0, 0, 0x78, 2, 0x08, 0x00];
    let total = (20 + l4) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&SRC.octets());
    f.extend_from_slice(&DST.octets());
    let c = checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// A TCP header (ACK, PSH if `psh`, timestamps; checksum zero) at `seq`, then `payload`.
fn tcp_l4(seq: u32, payload: &[u8], psh: bool) -> Vec<u8> {
    let mut l4 = vec![0x9c, 0x40, 0x14, 0x51];
    l4.extend_from_slice(&seq.to_be_bytes());
    let flags = 0x10 | if psh { 0x08 } else { 0 };
    l4.extend_from_slice(&[0, 0, 0, 7, 0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
    l4.extend_from_slice(&[1, 1, 8, 10, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    l4.extend_from_slice(payload);
    l4
}

/// A TCP segment over IPv4 ([`tcp_l4`]) with its checksum.
fn tcp(seq: u32, payload: &[u8], psh: bool) -> Vec<u8> {
    let mut l4 = tcp_l4(seq, payload, psh);
    let c = !fold(sum16(&l4, pseudo_header_v4(SRC, DST, 6, l4.len() as u16)));
    l4[16..18].copy_from_slice(&c.to_be_bytes());
    let mut f = eth_ip(6, l4.len());
    f.extend_from_slice(&l4);
    f
}

/// The same over IPv6.
fn tcp6(seq: u32, payload: &[u8], psh: bool) -> Vec<u8> {
    let mut l4 = tcp_l4(seq, payload, psh);
    let ph = pseudo_header_v6(&SRC6, &DST6, 6, l4.len() as u32);
    let c = !fold(sum16(&l4, ph));
    l4[16..18].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![
        2, 0, 0, 0, 0x78, 1, 2, 0, 0, 0, 0x78, 2, 0x86, 0xdd, 0x60, 0, 0, 0,
    ];
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[6, 64]);
    f.extend_from_slice(&SRC6.octets());
    f.extend_from_slice(&DST6.octets());
    f.extend_from_slice(&l4);
    f
}

/// A UDP datagram (no checksum, as ESP in UDP) carrying `payload`.
fn udp(payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0x11, 0x94, 0x11, 0x94];
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    let mut f = eth_ip(17, l4.len());
    f.extend_from_slice(&l4);
    f
}

/// `len` bytes numbered from `at`.
fn bytes(at: usize, len: usize) -> Vec<u8> {
    (at..at + len).map(|i| (i * 13 + i / 256) as u8).collect()
}

/// The frames of protocol `proto` from [`SRC`] (or, for 0, TCP from [`SRC6`]) the socket
/// holds, waiting up to a second for `want` of them.
fn receive(fd: &OwnedFd, proto: u8, want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    let deadline = Instant::now() + Duration::from_secs(1);
    while got.len() < want && Instant::now() < deadline {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let f = &buf[..n as usize];
        let v4 = f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == proto;
        let v6 = f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 6;
        if (v4 && f[26..30] == SRC.octets()) || (proto == 0 && v6 && f[22..38] == SRC6.octets()) {
            got.push(f.to_vec());
        }
    }
    got
}

/// Writes `frames` as one transmit burst on a queue of `q`.
fn send(
    q: &mut dataplane::port::tap::TapQueue,
    pool: &Pool,
    cache: &mut PoolCache,
    frames: &[Vec<u8>],
    c: &PortCounters,
) {
    let mut burst = Burst::new();
    for f in frames {
        let mut b = cache.alloc().expect("buffer");
        assert!(pool.fill(&mut b, f), "frame fits a buffer");
        burst.push(b).expect("burst room");
    }
    let sent = q.tx_burst(cache, &mut burst, c);
    assert_eq!(sent, frames.len(), "frames taken");
    burst.free_all(cache);
}

/// Writes `frames` as the worker does when more than a burst is headed for the port in one
/// iteration: full bursts with [`Port::tx_burst_more`], the last with [`Port::tx_burst`].
fn send_more(
    q: &mut dataplane::port::tap::TapQueue,
    pool: &Pool,
    cache: &mut PoolCache,
    frames: &[Vec<u8>],
    c: &PortCounters,
) {
    let chunks: Vec<&[Vec<u8>]> = frames.chunks(dataplane::burst::BURST).collect();
    for (i, part) in chunks.iter().enumerate() {
        let mut burst = Burst::new();
        for f in part.iter() {
            let mut b = cache.alloc().expect("buffer");
            assert!(pool.fill(&mut b, f), "frame fits a buffer");
            burst.push(b).expect("burst room");
        }
        if i + 1 < chunks.len() {
            q.tx_burst_more(cache, &mut burst, c);
        } else {
            q.tx_burst(cache, &mut burst, c);
        }
        assert!(burst.is_empty(), "the burst was taken");
    }
}

fn gathers(uring: bool) {
    let ns = Netns::create(&unique_name("tg")).expect("namespace");
    let dev = TapDevice::open(
        "tg0",
        Some(&ns.path()),
        1,
        Some(1500),
        TapFeatures {
            offloads: true,
            gro: true,
            uso: true,
            uring,
            ..TapFeatures::default()
        },
    )
    .expect("open the TAP");
    ns.ip(&["link", "set", "tg0", "up"]).expect("up");
    let sock = tests::packet_socket(&ns.path(), "tg0").expect("packet socket");
    let pool = Pool::with_large(1024, 16).expect("pool");
    let mut cache = PoolCache::new(pool.clone());
    let mut q = dev.queue(0).expect("queue");
    let c = PortCounters::default();

    // 20 TCP segments of 1 400 bytes, the last shorter with PSH, then one that does not follow
    // (a gap in the sequence): two frames, the first a super-frame of all 20 payloads.
    let (mss, base) = (1400usize, 1_000_000u32);
    let mut segs = Vec::new();
    for i in 0..20 {
        let len = if i == 19 { 600 } else { mss };
        let seq = base + (i * mss) as u32;
        segs.push(tcp(seq, &bytes(i * mss, len), i == 19));
    }
    segs.push(tcp(base + 100_000, &bytes(0, 100), false));
    send(&mut q, &pool, &mut cache, &segs, &c);
    let got = receive(&sock, 6, 2);
    assert_eq!(
        got.len(),
        2,
        "frames received for 21 segments (uring {uring})"
    );
    let whole = &got[0];
    let payload = &whole[14 + 20 + 32..];
    assert_eq!(
        payload,
        &bytes(0, 19 * mss + 600)[..],
        "merged TCP payload (uring {uring})"
    );
    let total = u16::from_be_bytes([whole[16], whole[17]]) as usize;
    assert_eq!(
        total + 14,
        whole.len(),
        "IPv4 total length of the super-frame"
    );
    assert_eq!(
        fold(sum16(&whole[14..34], 0)),
        0xFFFF,
        "IPv4 header checksum"
    );
    assert_eq!(whole[14 + 20 + 13] & 0x08, 0x08, "the last segment's PSH");
    assert_eq!(
        &got[1][14 + 20 + 32..],
        &bytes(0, 100)[..],
        "the segment that did not follow"
    );

    // The same over IPv6.
    let mut segs6 = Vec::new();
    for i in 0..20 {
        let len = if i == 19 { 600 } else { mss };
        segs6.push(tcp6(base + (i * mss) as u32, &bytes(i * mss, len), i == 19));
    }
    send(&mut q, &pool, &mut cache, &segs6, &c);
    let got = receive(&sock, 0, 1);
    assert_eq!(
        got.len(),
        1,
        "frames received for 20 IPv6 segments (uring {uring})"
    );
    assert_eq!(
        &got[0][14 + 40 + 32..],
        &bytes(0, 19 * mss + 600)[..],
        "merged IPv6 payload"
    );
    let plen = u16::from_be_bytes([got[0][18], got[0][19]]) as usize;
    assert_eq!(
        plen + 54,
        got[0].len(),
        "IPv6 payload length of the super-frame"
    );

    // 30 datagrams of 1 200 bytes and a shorter last: one UDP super-frame.
    let mut dgrams: Vec<Vec<u8>> = (0..30).map(|i| udp(&bytes(i * 1200, 1200))).collect();
    dgrams.push(udp(&bytes(30 * 1200, 500)));
    send(&mut q, &pool, &mut cache, &dgrams, &c);
    let got = receive(&sock, 17, 1);
    assert_eq!(
        got.len(),
        1,
        "frames received for 31 datagrams (uring {uring})"
    );
    assert_eq!(
        &got[0][14 + 20 + 8..],
        &bytes(0, 30 * 1200 + 500)[..],
        "merged UDP payload"
    );
    assert_eq!(c.tx_uso_merged.get(), 1, "UDP merges counted");
    assert_eq!(
        c.tx_packets.get(),
        21 + 20 + 31,
        "segments counted one by one"
    );
    assert_eq!(c.tx_dropped.get(), 0, "nothing dropped");

    // More than a burst in one worker iteration: 40 TCP segments (32 + 8) and 50 datagrams
    // (32 + 18) each leave as one super-frame, the merge held over the burst boundary.
    let segs: Vec<Vec<u8>> = (0..40)
        .map(|i| tcp(base + (i * mss) as u32, &bytes(i * mss, mss), false))
        .collect();
    send_more(&mut q, &pool, &mut cache, &segs, &c);
    let got = receive(&sock, 6, 1);
    assert_eq!(
        got.len(),
        1,
        "frames received for 40 segments over two bursts (uring {uring})"
    );
    assert_eq!(
        &got[0][14 + 20 + 32..],
        &bytes(0, 40 * mss)[..],
        "merged over two bursts"
    );
    let dgrams: Vec<Vec<u8>> = (0..50).map(|i| udp(&bytes(i * 1200, 1200))).collect();
    send_more(&mut q, &pool, &mut cache, &dgrams, &c);
    let got = receive(&sock, 17, 1);
    assert_eq!(
        got.len(),
        1,
        "frames received for 50 datagrams over two bursts"
    );
    assert_eq!(
        &got[0][14 + 20 + 8..],
        &bytes(0, 50 * 1200)[..],
        "UDP merged over two bursts"
    );
    assert_eq!(
        c.tx_packets.get(),
        21 + 20 + 31 + 40 + 50,
        "segments counted one by one"
    );
    assert_eq!(c.tx_dropped.get(), 0, "nothing dropped");

    // A merge still held back when the queue is released goes back to the pool (checked
    // below with every other buffer).
    let mut burst = Burst::new();
    for i in 0..4 {
        let mut b = cache.alloc().expect("buffer");
        assert!(pool.fill(&mut b, &tcp(base + (i * mss) as u32, &bytes(0, mss), false)));
        burst.push(b).expect("room");
    }
    q.tx_burst_more(&mut cache, &mut burst, &c);

    assert_eq!(
        q.uring_writes(),
        uring,
        "writes went through io_uring or not as asked"
    );
    q.release(&mut cache);
    drop(q);
    drop(cache);
    assert_eq!(
        pool.available() as u32,
        pool.capacity(),
        "buffers not given back"
    );
    dev.destroy().expect("destroy");
}

#[test]
fn merged_segments_leave_in_one_gathered_write_through_io_uring() {
    if !can_run_system_tests("tap_gather") {
        return;
    }
    gathers(true);
}

#[test]
fn merged_segments_leave_in_one_gathered_write_through_plain_writes() {
    if !can_run_system_tests("tap_gather") {
        return;
    }
    gathers(false);
}
