//! Source NAT's core on one core: the session table and in-place translation
//! (`vswitch::nat`), without ports or the rest of the graph.
//!
//! `nat/established_64B/N`: N established UDP sessions (N = 1 K, 100 K, 1 M), and bursts of 32
//! 64-byte frames of sessions drawn at random among them, translated outbound: parse, hash,
//! prefetch the index cells of the burst, then the sessions, then look up, track (refresh the
//! timeout) and rewrite address, port and both checksums incrementally. Each round first copies
//! its 32 frames from a pristine array laid out in the order they are used (as a NIC would
//! write fresh frames), which is counted in the time. For 1 M sessions the outside address is
//! one of 32 (a single address has only 64 K ports per protocol); the daemon uses one.
//!
//! `nat/new_sessions`: every frame opens a session (UDP, inside endpoints never seen or long
//! since evicted) in a full table of 32 K embryonic sessions, so each one also evicts the oldest:
//! a random free port is found, both index entries are written, the frame translated (frames
//! copied from a pristine array too).
//!
//! Run: `cargo bench -p benches --bench nat`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};
use std::net::Ipv4Addr;
use vswitch::nat::translate::{self, Flow, Way};
use vswitch::nat::{Nat, NatConfig};

const BURST: usize = 32;
const FRAME: usize = 64;
const NET: u16 = 1;
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const NOW: u64 = 100;

/// A 64-byte Ethernet + IPv4 + UDP frame from `src`:`port` to REMOTE:53.
fn frame(src: Ipv4Addr, port: u16) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let payload = FRAME - 14 - 20 - 8;
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: REMOTE,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload,
        hop_limit: 64,
    };
    let caps = ChecksumCapabilities::default();
    let mut pkt = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.emit(&mut pkt, &caps);
    let udp = UdpRepr {
        src_port: port,
        dst_port: 53,
    };
    udp.emit(
        &mut UdpPacket::new_unchecked(pkt.payload_mut()),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(REMOTE),
        payload,
        |p| p.fill(0x5a),
        &caps,
    );
    f
}

/// Inside endpoint `k`: 10.(k >> 24).(k >> 16).(k >> 8) ... spread over addresses and ports.
fn inside(k: u32) -> (Ipv4Addr, u16) {
    let ip = Ipv4Addr::from(0x0a00_0000 | (k >> 6));
    (ip, 1024 + (k & 63) as u16)
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Translates one burst of `work` outbound (the stage's three passes).
#[inline]
fn outbound_burst(nat: &mut Nat, work: &mut [[u8; FRAME]; BURST], ext: &[u32]) -> usize {
    let mut flows: [Option<(Flow, u32)>; BURST] = [None; BURST];
    for (f, slot) in work.iter().zip(flows.iter_mut()) {
        if let Ok(fl) = translate::parse(f, 14, Way::Out, None) {
            let h = nat.table.hash_in(&Nat::inside_key(&fl, NET));
            nat.table.prefetch_out(h);
            *slot = Some((fl, h));
        }
    }
    for (_, h) in flows.iter().flatten() {
        nat.table.prefetch_session_out(*h);
    }
    let mut ok = 0;
    for (f, slot) in work.iter_mut().zip(flows.iter()) {
        if let Some((fl, h)) = slot {
            let e = ext[(fl.src as usize) % ext.len()];
            ok += usize::from(nat.outbound(f, fl, NET, *h, e, NOW).is_ok());
        }
    }
    ok
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(BURST as u64));
    for sessions in [1_000u32, 100_000, 1_000_000] {
        let mut nat = Nat::new(sessions, 7);
        nat.cfg = NatConfig {
            port_lo: 1024,
            port_hi: 65535,
            ..NatConfig::default()
        };
        let ext: Vec<u32> = (0..32u32).map(|i| 0xc0a8_3200 | (i + 1)).collect();
        // Open every session (a first packet each), then answer it so it is established.
        let mut f = [[0u8; FRAME]; BURST];
        for k in 0..sessions {
            let (ip, port) = inside(k);
            f[0] = frame(ip, port);
            let fl = translate::parse(&f[0], 14, Way::Out, None).expect("frame");
            let h = nat.table.hash_in(&Nat::inside_key(&fl, NET));
            let e = ext[(fl.src as usize) % ext.len()];
            let i = nat.outbound(&mut f[0], &fl, NET, h, e, 1).expect("session");
            nat.table
                .track(i, vswitch::nat::table::Dir::In, 0, 1, &nat.cfg.timeouts);
        }
        assert_eq!(nat.table.len(), sessions);
        // The frames of the measured rounds, in the order they are sent: random sessions.
        let rounds = (sessions as usize).clamp(64 * BURST, 1 << 20) / BURST;
        let mut rng = 0x1234_5678u64;
        let pristine: Vec<[u8; FRAME]> = (0..rounds * BURST)
            .map(|_| {
                let (ip, port) = inside((xorshift(&mut rng) % u64::from(sessions)) as u32);
                frame(ip, port)
            })
            .collect();
        let mut work = [[0u8; FRAME]; BURST];
        let mut at = 0usize;
        g.bench_function(BenchmarkId::new("established_64B", sessions), |b| {
            b.iter(|| {
                let src = &pristine[at * BURST..(at + 1) * BURST];
                work.copy_from_slice(src);
                at = if at + 1 == rounds { 0 } else { at + 1 };
                let ok = outbound_burst(&mut nat, &mut work, &ext);
                debug_assert_eq!(ok, BURST);
                ok
            })
        });
        assert_eq!(nat.table.len(), sessions, "no session was created or lost");
    }
    g.finish();
}

fn new_sessions(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(BURST as u64));
    const CAP: u32 = 32 * 1024;
    let mut nat = Nat::new(CAP, 9);
    nat.cfg = NatConfig {
        port_lo: 1024,
        port_hi: 65535,
        ..NatConfig::default()
    };
    let ext = [0xc0a8_3202u32];
    // Inside endpoints cycle through 256 K keys (8 times the table), so a key comes back long
    // after its session was evicted; their frames are built before measuring.
    const KEYS: usize = 1 << 18;
    let pristine: Vec<[u8; FRAME]> = (0..KEYS as u32)
        .map(|k| {
            let (ip, port) = inside(k);
            frame(ip, port)
        })
        .collect();
    let mut next = 0usize;
    let mut work = [[0u8; FRAME]; BURST];
    let fill = |nat: &mut Nat, work: &mut [[u8; FRAME]; BURST], next: &mut usize| {
        work.copy_from_slice(&pristine[*next..*next + BURST]);
        *next = (*next + BURST) % KEYS;
        outbound_burst(nat, work, &ext)
    };
    while nat.table.len() < CAP {
        fill(&mut nat, &mut work, &mut next);
    }
    g.bench_function("new_sessions", |b| {
        b.iter(|| fill(&mut nat, &mut work, &mut next))
    });
    assert!(nat.stats.evicted > 0);
    g.finish();
}

criterion_group!(benches, established, new_sessions);
criterion_main!(benches);
