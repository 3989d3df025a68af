//! The steady state of the forwarding path allocates nothing on the heap: a counting global
//! allocator watches a worker switch ten thousand bursts of unicast and flooded traffic.
//!
//! Counting is per thread and only while armed, so the test harness's other threads (and this
//! thread's own setup) do not disturb the count.

use dataplane::burst::{Burst, BURST};
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use vswitch::config::{NetConf, PortConf, Snapshot};
use vswitch::counters::{drop_index, event_index, DropReason, Event};
use vswitch::pipeline::Switch;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static FREES: Cell<u64> = const { Cell::new(0) };
}

/// Counts this thread's heap operations while it is armed; otherwise just `System`.
struct CountingAlloc;

impl CountingAlloc {
    #[inline]
    fn note(counter: &'static std::thread::LocalKey<Cell<u64>>) {
        // `try_with`: during thread teardown the thread-locals may be gone; then nothing counts.
        // The cells are const-initialised without destructors, so touching them never allocates.
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            let _ = counter.try_with(|c| c.set(c.get() + 1));
        }
    }
}

// SAFETY: every operation is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the bookkeeping only touches thread-local cells and never allocates or unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(&ALLOCS);
        // SAFETY: the caller upholds `alloc`'s contract for `layout`; passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(&ALLOCS);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(&ALLOCS);
        // SAFETY: `ptr` came from this allocator (hence from `System`) with `layout`, as the
        // caller guarantees; the new size is the caller's to vouch for.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::note(&FREES);
        // SAFETY: `ptr` came from this allocator (hence from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` armed; returns the (allocations, deallocations) this thread made meanwhile.
fn counting<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    ALLOCS.with(|c| c.set(0));
    FREES.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, ALLOCS.with(Cell::get), FREES.with(Cell::get))
}

const PORTS: usize = 3;
const WARMUP_ROUNDS: u64 = 500;
const ARMED_ROUNDS: u64 = 10_000;
/// Of every eight frames a port sends, one is a broadcast; the rest are unicast.
const BROADCAST_EVERY: usize = 8;

fn mac(port: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 1 + port as u8]
}

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; repr.buffer_len() + 50];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf));
    buf
}

/// Everything the loop touches, built before arming.
struct Bench {
    worker: Worker<Switch>,
    peers: Vec<MemPeer>,
    cache: PoolCache,
    burst: Burst,
    /// Frames each port sends in one round, one per burst slot.
    frames: Vec<Vec<Vec<u8>>>,
}

impl Bench {
    /// One round: a full burst into every port, one worker iteration, every peer drained.
    /// Returns false if anything did not fit (which would make the count meaningless).
    fn round(&mut self, now: u64) -> bool {
        let pool = self.cache.pool().clone();
        let mut ok = true;
        for (peer, frames) in self.peers.iter_mut().zip(&self.frames) {
            for f in frames {
                let Some(mut b) = self.cache.alloc() else {
                    return false;
                };
                ok &= pool.fill(&mut b, f);
                if let Err(b) = self.burst.push(b) {
                    self.cache.free(b);
                    ok = false;
                }
            }
            ok &= peer.send_burst(&mut self.burst) == BURST;
            self.burst.free_all(&mut self.cache);
        }
        self.worker.poll_once(now);
        for peer in &mut self.peers {
            // Bounded: a peer holds at most its ring's capacity.
            for _ in 0..64 {
                if peer.recv_burst(&mut self.burst) == 0 {
                    break;
                }
                self.burst.free_all(&mut self.cache);
            }
            ok &= peer.pending() == 0;
        }
        ok
    }

    fn event(&self, e: Event) -> u64 {
        self.worker.stats().pipeline.at(event_index(e)).get()
    }
}

#[test]
fn counting_allocator_sees_this_threads_allocations() {
    let (_, allocs, frees) = counting(|| drop(std::hint::black_box(Vec::<u64>::with_capacity(8))));
    assert_eq!((allocs, frees), (1, 1));
}

#[test]
fn forwarding_and_flooding_allocate_nothing_in_steady_state() {
    let pool = Pool::new(8192).expect("map the buffer pool");
    let (mut worker, tx) = Worker::new(
        0,
        pool.clone(),
        Switch::new(pool.clone(), 4096),
        Arc::new(Snapshot::default()),
    );
    let mut peers = Vec::new();
    for port in 0..PORTS {
        let (io, peer) = mem::pair(pool.clone(), 512);
        tx.send((
            port as u64 + 1,
            Command::Attach {
                port: port as PortId,
                io: PortIo::Mem(io),
                rx: true,
            },
        ))
        .expect("worker channel open");
        peers.push(peer);
    }
    let ports: Vec<PortId> = (0..PORTS as PortId).collect();
    let snap = Snapshot {
        gen: 1,
        ports: ports
            .iter()
            .map(|_| {
                Some(PortConf {
                    net: Some(1),
                    mac_limit: 4096,
                    ..Default::default()
                })
            })
            .collect(),
        nets: vec![
            None,
            Some(NetConf {
                ports,
                mac_limit: 65_536,
                aging_secs: 300,
                statics: Vec::new(),
                encrypted: false,
                esp_udp: false,
            }),
        ],
        ..Default::default()
    };
    tx.send((PORTS as u64 + 1, Command::Config(Arc::new(snap))))
        .expect("worker channel open");
    // A capture on port 0 that nobody reads: its ring fills in the warm-up, so the measured
    // rounds take the tapped path and the ring-full path on every burst of that port.
    let filter = dataplane::capture::Filter {
        rx: true,
        tx: true,
        vid: None,
    };
    let capture = Arc::new(dataplane::capture::Capture::new(256, 64, filter, None).expect("ring"));
    tx.send((
        PORTS as u64 + 2,
        Command::Tap {
            port: 0,
            capture: capture.clone(),
        },
    ))
    .expect("worker channel open");
    worker.poll_once(1);

    // Port p's host sends to the other two hosts in turn, and every eighth frame is a broadcast.
    let frames = (0..PORTS)
        .map(|p| {
            (0..BURST)
                .map(|i| {
                    let dst = if i % BROADCAST_EVERY == 0 {
                        [0xff; 6]
                    } else {
                        mac((p + 1 + i % 2) % PORTS)
                    };
                    frame(dst, mac(p))
                })
                .collect()
        })
        .collect();
    let mut bench = Bench {
        worker,
        peers,
        cache: PoolCache::new(pool.clone()),
        burst: Burst::new(),
        frames,
    };

    // Warm up: learn every MAC, let caches and output bursts reach their steady state.
    for r in 0..WARMUP_ROUNDS {
        assert!(bench.round(1 + r / 100), "warm-up round {r} fit");
    }
    let (fwd0, flood0) = (bench.event(Event::Forwarded), bench.event(Event::Flooded));

    // Time moves on every thousand rounds, so timers (aging) and entry refreshes run too.
    let start = 1 + WARMUP_ROUNDS / 100;
    let (all_fit, allocs, frees) = counting(|| {
        let mut ok = true;
        for r in 0..ARMED_ROUNDS {
            ok &= bench.round(start + r / 1000);
        }
        ok
    });

    assert!(
        all_fit,
        "every burst fit its ring and the pool never ran dry"
    );
    let broadcasts = (BURST / BROADCAST_EVERY) as u64;
    let per_round = PORTS as u64 * BURST as u64;
    assert_eq!(
        bench.event(Event::Forwarded) - fwd0,
        ARMED_ROUNDS * (per_round - PORTS as u64 * broadcasts)
    );
    assert_eq!(
        bench.event(Event::Flooded) - flood0,
        ARMED_ROUNDS * PORTS as u64 * broadcasts
    );
    let drops: u64 = DropReason::ALL
        .iter()
        .map(|&d| bench.worker.stats().pipeline.at(drop_index(d)).get())
        .sum();
    assert_eq!(drops, 0);
    assert_eq!(allocs, 0, "heap allocations while forwarding");
    assert_eq!(frees, 0, "heap frees while forwarding");
    assert!(
        capture.missed() > 0,
        "the capture's ring was full while measured"
    );
}

/// ESP sealing and opening in place (the cores `esp-seal` and `underlay-in` run per packet)
/// allocate nothing on the Rust heap. (AWS-LC's own C allocations, if any, are not seen by a
/// Rust global allocator; its AES-GCM seal and open on a prepared key make none.)
#[test]
fn esp_seal_and_open_allocate_nothing() {
    use std::net::Ipv4Addr;
    use vswitch::esp::{open::Opener, ring::EspConf, sa::Sa};
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let master = [7u8; 20];
    let tx = Sa::new(&master, a, b, 1, 1).unwrap();
    let conf = EspConf::new(
        vec![],
        vec![Arc::new(Sa::new(&master, a, b, 1, 0).unwrap())],
    );
    let mut opener = Opener::default();
    opener.configure(&conf);
    let mut frame = vec![0u8; 34 + 1400];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[26..30].copy_from_slice(&a.octets());
    frame[30..34].copy_from_slice(&b.octets());
    let mut slot = vec![0u8; 64 + frame.len() + 64];
    let ((), allocs, frees) = counting(|| {
        for n in 1..=10_000u64 {
            slot[64..64 + frame.len()].copy_from_slice(&frame);
            let (off, len) = tx.seal(n, &mut slot, 64, frame.len()).unwrap();
            let o = opener.open(&conf, &mut slot[off..off + len]).unwrap();
            assert_eq!(o.len, frame.len());
        }
        opener.flush(&conf);
    });
    assert_eq!((allocs, frees), (0, 0));
}

/// Load balancing (`l3-router`'s service path) allocates nothing per packet: new connections to
/// a published port (each evicting the oldest embryonic one of a full table, placed by Maglev),
/// and packets of established ones, through the whole graph on one worker.
#[test]
fn load_balancing_allocates_nothing_per_packet() {
    use std::net::Ipv4Addr;
    use vswitch::config::{GatewayConf, UplinkConf};
    use vswitch::service::{maglev, Backend, PortMap, ServiceTable, Svc};
    const UPLINK: PortId = 0;
    const ACCESS: PortId = 1;
    let our_mac = [0x02, 0, 0, 0, 0x01, 0x01];
    let our_ip = Ipv4Addr::new(192, 168, 50, 1);
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    let pool = Pool::new(8192).expect("map the buffer pool");
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
        .unwrap();
        peers.push(peer);
    }
    let backends: Vec<Backend> = (0..16u32)
        .map(|i| Backend {
            ip: Ipv4Addr::from(0x0a00_000a + i),
            weight: 1 + i % 3,
            down: false,
        })
        .collect();
    let svc = Svc::new(
        "lb".into(),
        1,
        None,
        Vec::new(),
        vec![PortMap {
            proto: 17,
            port: 8080,
            target: 80,
        }],
        false,
        backends.clone(),
        maglev::size_for(backends.len()),
    );
    let mut ports = vec![None; 2];
    ports[UPLINK as usize] = Some(PortConf::default());
    ports[ACCESS as usize] = Some(PortConf::access(Some(1), 1024));
    let snap = Snapshot {
        gen: 1,
        ports,
        nets: vec![
            None,
            Some(NetConf {
                ports: vec![ACCESS],
                mac_limit: 1024,
                aging_secs: 300,
                statics: Vec::new(),
                encrypted: false,
                esp_udp: false,
            }),
        ],
        uplink: Some(UplinkConf {
            port: UPLINK,
            mac: our_mac,
            ip: our_ip,
            prefix: 24,
            gateway: Some(Ipv4Addr::new(192, 168, 50, 254)),
            vxlan_port: 4789,
            mtu: 1500,
            tunnel_gso: false,
            uso: false,
        }),
        gateways: vec![
            None,
            Some(GatewayConf {
                ip: gw,
                subnet: Ipv4Addr::new(10, 0, 0, 0),
                prefix: 8,
                mac: GatewayConf::mac_of(1),
                internal: false,
            }),
        ],
        nat: vswitch::nat::NatConfig {
            sessions: 4096,
            ..Default::default()
        },
        workers: 1,
        services: Arc::new(ServiceTable::new(vec![svc])),
        ..Default::default()
    };
    tx.send((10, Command::Config(Arc::new(snap)))).unwrap();
    worker.poll_once(1);
    let mut cache = PoolCache::new(pool.clone());
    // The backends announce themselves (ARP requests for the gateway).
    for (i, b) in backends.iter().enumerate() {
        let bmac = [0x02, 0xbe, 0, 0, 0, i as u8];
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&bmac);
        f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
        f.extend_from_slice(&bmac);
        f.extend_from_slice(&b.ip.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&gw.octets());
        assert!(peers[1].send(&mut cache, &f));
    }
    worker.poll_once(1);
    while peers[1].recv(&mut cache).is_some() {}
    // UDP from client k (198.18.0.0/15, 64 ports per address) to the published port.
    let udp = |k: u32| -> Vec<u8> {
        let src = Ipv4Addr::from(0xc612_0000 + (k >> 6));
        let sport = 1024 + (k & 63) as u16;
        let mut f = vec![0u8; 64];
        f[0..6].copy_from_slice(&our_mac);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0xfe, 0xfe]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&50u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&src.octets());
        f[30..34].copy_from_slice(&our_ip.octets());
        let c = dataplane::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&8080u16.to_be_bytes());
        f[38..40].copy_from_slice(&30u16.to_be_bytes());
        f
    };
    // Half of each burst from 1024 clients seen again and again (found in the table while
    // they last), half from clients never seen (64 K of them cycling through a 4 K table of
    // unanswered, so embryonic, flows: every new one evicts the oldest).
    // The frames, built before counting.
    let steady: Vec<Vec<u8>> = (0..1024).map(udp).collect();
    let fresh: Vec<Vec<u8>> = (0..65_536).map(|k| udp(1_000_000 + k)).collect();
    let mut burst = Burst::new();
    let mut next_new = 0usize;
    let mut round = |cache: &mut PoolCache, peers: &mut Vec<MemPeer>, r: usize| -> bool {
        let mut ok = true;
        for i in 0..BURST {
            let f = if i % 2 == 0 {
                &steady[(r * 16 + i / 2) % steady.len()]
            } else {
                next_new = (next_new + 1) % fresh.len();
                &fresh[next_new]
            };
            let Some(mut b) = cache.alloc() else {
                return false;
            };
            ok &= pool.fill(&mut b, f);
            if let Err(b) = burst.push(b) {
                cache.free(b);
                ok = false;
            }
        }
        ok &= peers[0].send_burst(&mut burst) == BURST;
        burst.free_all(cache);
        worker.poll_once(1);
        let got = peers[1].recv_burst(&mut burst);
        burst.free_all(cache);
        ok && got == BURST
    };
    for r in 0..500 {
        assert!(round(&mut cache, &mut peers, r), "warm-up round {r}");
    }
    let (ok, allocs, frees) = counting(|| {
        let mut ok = true;
        for r in 0..2000 {
            ok &= round(&mut cache, &mut peers, r);
        }
        ok
    });
    assert!(ok, "every frame reached a backend");
    assert_eq!((allocs, frees), (0, 0), "the load balancer allocated");
    let lb = worker.pipeline().router.lb.len();
    assert_eq!(lb, 4096, "the table stayed full, evicting embryos");
}
