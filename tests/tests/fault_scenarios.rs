//! TCP through a port that loses, corrupts, truncates, duplicates and reorders frames: two
//! smoltcp TCP/IP stacks on in-memory ports of one worker, one port wearing
//! `dataplane::port::fault::FaultPort`, a fake clock. Every byte must arrive, in order, and the
//! switch's counters must account for every frame it received.

use dataplane::burst::Burst;
use dataplane::pool::{Pool, PoolCache};
use dataplane::port::fault::{FaultPlan, FaultPort, FaultRates, FaultStats};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vswitch::config::{NetConf, PortConf, Snapshot};
use vswitch::counters::{drop_counters, event_index, Event};
use vswitch::pipeline::Switch;

/// A smoltcp device over queues of whole frames (filled from and drained into a `MemPeer`).
#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// A host: a stack, its device queues and its port's far end.
struct Host {
    iface: Interface,
    dev: Queues,
    peer: MemPeer,
}

impl Host {
    fn new(peer: MemPeer, mac: [u8; 6], ip: [u8; 4], now: Instant) -> Host {
        let mut dev = Queues::default();
        let mut iface = Interface::new(Config::new(EthernetAddress(mac).into()), &mut dev, now);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24))
                .unwrap();
        });
        Host { iface, dev, peer }
    }

    /// Moves frames between the port and the stack, and lets the stack run.
    fn poll(&mut self, cache: &mut PoolCache, sockets: &mut SocketSet<'_>, now: Instant) {
        while let Some(f) = self.peer.recv(cache) {
            self.dev.rx.push_back(f);
        }
        self.iface.poll(now, &mut self.dev, sockets);
        while let Some(f) = self.dev.tx.pop_front() {
            // A full ring is a lost frame, which TCP repairs.
            let _ = self.peer.send(cache, &f);
        }
    }
}

const PORT_A: PortId = 1;
const PORT_B: PortId = 2;

fn topology() -> Snapshot {
    let mut ports = vec![None; 3];
    ports[PORT_A as usize] = Some(PortConf::access(Some(1), 100));
    ports[PORT_B as usize] = Some(PortConf::access(Some(1), 100));
    Snapshot {
        gen: 1,
        ports,
        nets: vec![
            None,
            Some(NetConf {
                ports: vec![PORT_A, PORT_B],
                mac_limit: 100,
                aging_secs: 300,
                statics: Vec::new(),
                encrypted: false,
                esp_udp: false,
            }),
        ],
        ..Default::default()
    }
}

/// Moves `total` bytes from A to B over TCP with `plan` on A's port; returns what B received,
/// the fault counters and the worker (for its counters).
fn transfer(plan: FaultPlan, total: usize) -> (Vec<u8>, Arc<FaultStats>, Worker<Switch>) {
    let pool = Pool::new(4096).unwrap();
    let mut cache = PoolCache::new(pool.clone());
    let (mut worker, tx) = Worker::new(
        0,
        pool.clone(),
        Switch::new(pool.clone(), 1024),
        Arc::new(Snapshot::default()),
    );
    let faults = Arc::new(FaultStats::default());
    let (io_a, peer_a) = mem::pair(pool.clone(), 512);
    let (io_b, peer_b) = mem::pair(pool.clone(), 512);
    let wrapped = FaultPort::new(PortIo::Mem(io_a), plan, faults.clone());
    let mut seq = 0;
    let mut command = |w: &mut Worker<Switch>, c| {
        seq += 1;
        tx.send((seq, c)).unwrap();
        w.poll_once(1);
    };
    command(
        &mut worker,
        Command::Attach {
            port: PORT_A,
            io: PortIo::Fault(Box::new(wrapped)),
            rx: true,
        },
    );
    command(
        &mut worker,
        Command::Attach {
            port: PORT_B,
            io: PortIo::Mem(io_b),
            rx: true,
        },
    );
    command(&mut worker, Command::Config(Arc::new(topology())));

    let mut now = Instant::from_millis(0);
    let mut a = Host::new(peer_a, [0x02, 0, 0, 0, 0, 0xa1], [10, 5, 0, 1], now);
    let mut b = Host::new(peer_b, [0x02, 0, 0, 0, 0, 0xb2], [10, 5, 0, 2], now);
    let mut sa = SocketSet::new(vec![]);
    let mut sb = SocketSet::new(vec![]);
    let buf = || tcp::SocketBuffer::new(vec![0u8; 64 * 1024]);
    let ha = sa.add(tcp::Socket::new(buf(), buf()));
    let hb = sb.add(tcp::Socket::new(buf(), buf()));
    sb.get_mut::<tcp::Socket>(hb).listen(5201).unwrap();
    sa.get_mut::<tcp::Socket>(ha)
        .connect(a.iface.context(), (IpAddress::v4(10, 5, 0, 2), 5201), 40000)
        .unwrap();

    let data: Vec<u8> = (0..total).map(|i| (i * 131 % 251) as u8).collect();
    let (mut sent, mut got) = (0usize, Vec::with_capacity(total));
    // Bounded in steps and in (fake) time: 2 ms a step, at most 200 000 steps.
    for _ in 0..200_000 {
        a.poll(&mut cache, &mut sa, now);
        let s = sa.get_mut::<tcp::Socket>(ha);
        if sent < total && s.can_send() {
            sent += s.send_slice(&data[sent..]).unwrap_or(0);
            if sent == total {
                s.close();
            }
        }
        a.poll(&mut cache, &mut sa, now);
        for _ in 0..8 {
            if worker.poll_once(now.secs() as u64 + 1) == 0 {
                break;
            }
        }
        b.poll(&mut cache, &mut sb, now);
        let r = sb.get_mut::<tcp::Socket>(hb);
        while r.can_recv() {
            let mut chunk = [0u8; 16384];
            match r.recv_slice(&mut chunk) {
                Ok(n) if n > 0 => got.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        b.poll(&mut cache, &mut sb, now);
        for _ in 0..8 {
            if worker.poll_once(now.secs() as u64 + 1) == 0 {
                break;
            }
        }
        if got.len() == total {
            break;
        }
        now += Duration::from_millis(2);
    }
    // What is still in flight goes back to the pool.
    while a.peer.recv(&mut cache).is_some() {}
    while b.peer.recv(&mut cache).is_some() {}
    let mut scratch = Burst::new();
    scratch.free_all(&mut cache);
    (got, faults, worker)
}

fn rates(ppm: u32) -> FaultRates {
    FaultRates {
        drop: ppm,
        corrupt: ppm,
        truncate: ppm,
        duplicate: ppm,
        reorder: ppm,
    }
}

#[test]
fn tcp_through_a_port_that_drops_corrupts_truncates_duplicates_and_reorders_delivers_every_byte() {
    let total = 2 << 20;
    let data: Vec<u8> = (0..total).map(|i| (i * 131 % 251) as u8).collect();
    // 1% of every fault, both ways, on A's port.
    let plan = FaultPlan {
        rx: rates(10_000),
        tx: rates(10_000),
        seed: 0x5eed_f00d,
    };
    let (got, faults, worker) = transfer(plan, total);
    assert_eq!(got.len(), total, "every byte arrived");
    assert!(got == data, "in order and unchanged");
    for way in [&faults.rx, &faults.tx] {
        for (name, c) in [
            ("dropped", &way.dropped),
            ("corrupted", &way.corrupted),
            ("truncated", &way.truncated),
            ("duplicated", &way.duplicated),
            ("reordered", &way.reordered),
        ] {
            assert!(c.load(Ordering::Relaxed) > 0, "no frame was {name}");
        }
    }
    // Every frame the switch received was forwarded, flooded or dropped by name. (A's port
    // counts what it took off its ring; the faults on receive then dropped and added some.)
    let stats = worker.stats();
    let rx = &faults.rx;
    let received = stats.port(PORT_A).rx_packets.get() - rx.dropped.load(Ordering::Relaxed)
        + rx.duplicated.load(Ordering::Relaxed)
        + stats.port(PORT_B).rx_packets.get();
    let ev = |e: Event| stats.pipeline.at(event_index(e)).get();
    let drops: u64 = drop_counters()
        .map(|(i, _)| stats.pipeline.at(i).get())
        .sum();
    assert_eq!(
        received,
        ev(Event::Forwarded) + ev(Event::Flooded) + drops - ev(Event::FloodCopyFailed),
        "received = forwarded + flooded + drops"
    );
    let line = |w: &dataplane::port::fault::FaultCounters| {
        format!(
            "{} dropped, {} corrupted, {} truncated, {} duplicated, {} reordered",
            w.dropped.load(Ordering::Relaxed),
            w.corrupted.load(Ordering::Relaxed),
            w.truncated.load(Ordering::Relaxed),
            w.duplicated.load(Ordering::Relaxed),
            w.reordered.load(Ordering::Relaxed),
        )
    };
    eprintln!(
        "{} faults injected (in: {}; out: {}); the switch received {received} frames",
        faults.total(),
        line(&faults.rx),
        line(&faults.tx),
    );
}

#[test]
fn without_faults_the_wrapper_changes_nothing() {
    let total = 256 << 10;
    let (got, faults, _) = transfer(FaultPlan::default(), total);
    assert_eq!(got.len(), total);
    assert_eq!(faults.total(), 0);
}
