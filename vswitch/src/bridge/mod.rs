//! The L2 bridge: MAC learning, forwarding, flooding within a network, aging.
//!
//! One stage over a burst, in two passes: the first validates each frame and prefetches the MAC
//! table slots of its source and destination, the second learns and decides, so that with a
//! large table the cache misses of 32 frames overlap instead of adding up.
//!
//! A frame never leaves its network: the table is keyed by (network, MAC) and a flood goes only
//! to the ports of the ingress port's network.

pub mod fdb;

use crate::config::{NetId, Snapshot};
use crate::counters::{drop_index, event_index, DropReason, Event};
use crate::output;
use crate::overlay::Overlay;
use dataplane::burst::Burst;
use dataplane::burst::BURST;
use dataplane::counters::WorkerStats;
use dataplane::pool::{Buf, Pool, MAX_FRAME};
use dataplane::port::{PortId, MAX_PORTS};
use dataplane::worker::Context;
use fdb::{Evicted, Learn, Limits, MacTable, Probe};
use std::sync::Arc;

/// Most networks (ids are `u16`, 0 unused).
pub const MAX_NETS: usize = 4096;
/// Learned entries aged per tick at most (keeps one tick short).
const AGING_BUDGET: u32 = 16_384;

/// A sighting passed between workers (see [`LearnSync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnEvent {
    /// A MAC was seen on a port.
    Mac {
        /// Network.
        net: NetId,
        /// Port the MAC was seen on.
        port: PortId,
        /// The MAC.
        mac: [u8; 6],
    },
    /// An underlay neighbour answered ARP.
    Neigh {
        /// Its address.
        ip: std::net::Ipv4Addr,
        /// Its MAC.
        mac: [u8; 6],
    },
}

/// Learning shared between workers. Each worker keeps its own MAC table (no locks, no shared
/// cache lines per packet), but with several workers a MAC seen only by worker A would stay
/// unknown, and flooded, on worker B. So a worker that learns, moves or refreshes an entry (a
/// refresh happens at most once a second per entry) posts the sighting to every other worker's
/// inbox, a bounded lock-free queue; each worker applies its inbox before its next burst.
/// A full inbox drops the sighting (counted as `mac_sync_overflow`): the receiver floods to that
/// MAC until the next refresh reaches it, which is correct, only slower.
pub struct LearnSync {
    /// This worker's index in `inboxes`.
    pub me: usize,
    /// One inbox per worker.
    pub inboxes: Arc<[crossbeam::queue::ArrayQueue<LearnEvent>]>,
}

impl LearnSync {
    /// Inboxes for `workers` workers holding `capacity` sightings each; give worker `i` the
    /// `LearnSync { me: i, inboxes: inboxes.clone() }`.
    pub fn inboxes(
        workers: usize,
        capacity: usize,
    ) -> Arc<[crossbeam::queue::ArrayQueue<LearnEvent>]> {
        (0..workers)
            .map(|_| crossbeam::queue::ArrayQueue::new(capacity.max(1)))
            .collect()
    }
}

/// The bridge stage's state on one worker.
pub struct Bridge {
    pool: Arc<Pool>,
    /// The MAC table.
    pub fdb: MacTable,
    /// Network each port was in at the last configuration, to flush entries when it changes.
    port_net: Box<[Option<NetId>]>,
    /// Static entries installed from the last configuration.
    statics: Vec<(NetId, [u8; 6], PortId)>,
    /// Learning shared with the other workers, when there are any.
    sync: Option<LearnSync>,
}

#[inline]
fn drop_frame(cx: &mut Context<'_>, b: Buf, why: DropReason) {
    cx.stats.pipeline.at(drop_index(why)).inc();
    cx.cache.free(b);
}

#[inline]
fn event(stats: &WorkerStats, e: Event) {
    stats.pipeline.at(event_index(e)).inc();
}

#[inline]
fn is_tunnel(cfg: &Snapshot, port: PortId) -> bool {
    cfg.port(port).is_some_and(|p| p.tunnel.is_some())
}

/// Large buffers a flood never copies into (at most; an eighth of a small pool): they stay for
/// the TAP queues' next super-frames.
pub const FLOOD_LARGE_RESERVE: usize = 32;

/// Counts a flood copy that could not be sent under its reason, and as a failed copy, so that
/// `received = forwarded + flooded + drops - flood_copy_failed` still counts frames.
#[inline]
fn copy_result(cx: &Context<'_>, r: Result<(), crate::counters::DropIdx>) {
    if let Err(why) = r {
        cx.stats.pipeline.at(why.0).inc();
        event(cx.stats, Event::FloodCopyFailed);
    }
}

fn evicted_event(why: Evicted) -> Event {
    match why {
        Evicted::PortLimit => Event::MacEvictedPortLimit,
        Evicted::NetworkLimit => Event::MacEvictedNetworkLimit,
        Evicted::TableFull => Event::MacEvictedTableFull,
    }
}

#[inline]
fn macs(d: &[u8]) -> Option<([u8; 6], [u8; 6])> {
    let dst: [u8; 6] = d.get(0..6)?.try_into().ok()?;
    let src: [u8; 6] = d.get(6..12)?.try_into().ok()?;
    // An Ethernet header also needs its two EtherType bytes.
    d.get(13)?;
    Some((dst, src))
}

impl Bridge {
    /// A bridge whose MAC table holds `fdb_capacity` entries.
    pub fn new(pool: Arc<Pool>, fdb_capacity: u32) -> Bridge {
        Bridge {
            pool,
            fdb: MacTable::new(fdb_capacity, MAX_PORTS, MAX_NETS),
            port_net: vec![None; MAX_PORTS].into_boxed_slice(),
            statics: Vec::new(),
            sync: None,
        }
    }

    /// Shares learning with other workers.
    pub fn set_sync(&mut self, sync: LearnSync) {
        self.sync = Some(sync);
    }

    /// Posts a sighting to the other workers.
    pub fn post(&self, stats: &WorkerStats, ev: LearnEvent) {
        let Some(sync) = &self.sync else { return };
        for (i, q) in sync.inboxes.iter().enumerate() {
            if i != sync.me && q.push(ev).is_err() {
                event(stats, Event::MacSyncOverflow);
            }
        }
    }

    /// Applies the MAC sightings other workers posted; underlay neighbour sightings go into
    /// `neigh` (up to its capacity; it is allocated by the caller once).
    pub fn apply_inbox(
        &mut self,
        stats: &WorkerStats,
        cfg: &Snapshot,
        now: u64,
        neigh: &mut Vec<(std::net::Ipv4Addr, [u8; 6])>,
    ) {
        let Some(sync) = &self.sync else { return };
        let Some(inbox) = sync.inboxes.get(sync.me) else {
            return;
        };
        while let Some(ev) = inbox.pop() {
            let (net_id, port, mac) = match ev {
                LearnEvent::Mac { net, port, mac } => (net, port, mac),
                LearnEvent::Neigh { ip, mac } => {
                    if neigh.len() < neigh.capacity() {
                        neigh.push((ip, mac));
                    }
                    continue;
                }
            };
            // A sighting from before a reconfiguration may name a port that left the network.
            let (Some(pc), Some(net)) = (cfg.port(port), cfg.net(net_id)) else {
                continue;
            };
            if pc.net != Some(net_id) {
                continue;
            }
            let limits = Limits {
                port: pc.mac_limit,
                network: net.mac_limit,
                network_ports: &net.ports,
            };
            if let Learn::Learned | Learn::LearnedEvicting(_) =
                self.fdb.learn(net_id, &mac, port, now, &limits)
            {
                event(stats, Event::MacSynced);
            }
        }
    }

    /// Whether learning is shared with other workers.
    pub fn has_sync(&self) -> bool {
        self.sync.is_some()
    }

    /// Switches a burst received on `port`.
    pub fn rx(
        &mut self,
        cx: &mut Context<'_>,
        cfg: &Snapshot,
        overlay: &mut Overlay,
        port: PortId,
        burst: &mut Burst,
    ) {
        let Some(net_id) = cfg.port(port).and_then(|p| p.net) else {
            for b in burst.drain() {
                drop_frame(cx, b, DropReason::NoNetwork);
            }
            return;
        };
        let (Some(net), Some(pconf)) = (cfg.net(net_id), cfg.port(port)) else {
            for b in burst.drain() {
                drop_frame(cx, b, DropReason::NoNetwork);
            }
            return;
        };
        let limits = Limits {
            port: pconf.mac_limit,
            network: net.mac_limit,
            network_ports: &net.ports,
        };

        // Pass 1: hash every frame's MACs and prefetch their slots; pass 2 finds them cached.
        let mut probes = [(Probe::default(), Probe::default()); BURST];
        for (b, pr) in burst.bufs().iter().zip(probes.iter_mut()) {
            if let Some((dst, src)) = macs(self.pool.data(b)) {
                *pr = (self.fdb.probe(net_id, &dst), self.fdb.probe(net_id, &src));
                self.fdb.prefetch_slot(&pr.1);
                if dst[0] & 1 == 0 {
                    self.fdb.prefetch_slot(&pr.0);
                }
            }
        }

        for (b, (dst_probe, src_probe)) in burst.drain().zip(probes.iter()) {
            let Some((dst, src)) = macs(self.pool.data(&b)) else {
                drop_frame(cx, b, DropReason::EthTooShort);
                continue;
            };
            if src[0] & 1 != 0 || src == [0; 6] {
                drop_frame(cx, b, DropReason::SrcMacInvalid);
                continue;
            }
            let learned = if pconf.learn {
                self.fdb.learn_probe(src_probe, port, cx.now, &limits)
            } else {
                Learn::Known
            };
            if let Learn::Learned
            | Learn::LearnedEvicting(_)
            | Learn::Moved
            | Learn::MovedEvicting(_)
            | Learn::Refreshed = learned
            {
                self.post(
                    cx.stats,
                    LearnEvent::Mac {
                        net: net_id,
                        port,
                        mac: src,
                    },
                );
            }
            match learned {
                Learn::Known | Learn::Refreshed => {}
                Learn::Learned => event(cx.stats, Event::MacLearned),
                Learn::LearnedEvicting(why) => {
                    event(cx.stats, Event::MacLearned);
                    event(cx.stats, evicted_event(why));
                }
                Learn::Moved => event(cx.stats, Event::MacMoved),
                Learn::MovedEvicting(why) => {
                    event(cx.stats, Event::MacMoved);
                    event(cx.stats, evicted_event(why));
                }
                Learn::StaticConflict => event(cx.stats, Event::MacStaticConflict),
                Learn::Full => event(cx.stats, Event::MacLearnRefused),
            }
            if dst[0] & 1 == 0 {
                match self.fdb.lookup_probe(dst_probe) {
                    Some(out) if out == port => drop_frame(cx, b, DropReason::DstIsIngress),
                    Some(out) if pconf.tunnel.is_some() && is_tunnel(cfg, out) => {
                        drop_frame(cx, b, DropReason::TunnelToTunnel)
                    }
                    Some(out) => match output::send(cx, cfg, &self.pool, overlay, out, b) {
                        Ok(()) => event(cx.stats, Event::Forwarded),
                        Err(why) => cx.stats.pipeline.at(why.0).inc(),
                    },
                    None => {
                        event(cx.stats, Event::UnknownUnicast);
                        self.flood(cx, cfg, overlay, &net.ports, port, b);
                    }
                }
            } else {
                self.flood(cx, cfg, overlay, &net.ports, port, b);
            }
        }
    }

    /// Sends `b` to every port of the network but `ingress`: copies for all but the last.
    fn flood(
        &self,
        cx: &mut Context<'_>,
        cfg: &Snapshot,
        overlay: &mut Overlay,
        ports: &[PortId],
        ingress: PortId,
        b: Buf,
    ) {
        // Split horizon: what came from one VTEP is never replicated to the others (every VTEP
        // replicates its own traffic to all peers; relaying would duplicate, and loop).
        let from_tunnel = is_tunnel(cfg, ingress);
        let eligible = |cx: &Context<'_>, p: PortId| {
            p != ingress && !(from_tunnel && is_tunnel(cfg, p)) && output::reachable(cx, cfg, p)
        };
        let Some(last) = ports.iter().rposition(|&p| eligible(cx, p)) else {
            drop_frame(cx, b, DropReason::NoDestination);
            return;
        };
        event(cx.stats, Event::Flooded);
        for &out in &ports[..last] {
            if !eligible(cx, out) {
                continue;
            }
            // A super-frame's copy takes a large buffer: never the last ones, which the TAP
            // queues need to receive super-frames at all (a flood of them could drain the pool).
            let large = self.pool.len(&b) > MAX_FRAME;
            let reserve = (self.pool.large_capacity() as usize / 8).clamp(1, FLOOD_LARGE_RESERVE);
            if large && self.pool.large_available() <= reserve {
                event(cx.stats, Event::FloodCopyNoBuffers);
                continue;
            }
            match cx.cache.clone_buf(&b) {
                Some(c) => {
                    event(cx.stats, Event::FloodCopies);
                    let r = output::send(cx, cfg, &self.pool, overlay, out, c);
                    copy_result(cx, r);
                }
                None => event(cx.stats, Event::FloodCopyNoBuffers),
            }
        }
        let r = output::send(cx, cfg, &self.pool, overlay, ports[last], b);
        copy_result(cx, r);
    }

    /// Reconciles the MAC table with a new configuration: entries of ports that left their
    /// network go, limits that shrank are enforced, static entries follow the configuration.
    pub fn configure(&mut self, cfg: &Snapshot) {
        for p in 0..MAX_PORTS {
            let id = p as PortId;
            let conf = cfg.port(id);
            let net = conf.and_then(|c| c.net);
            if self.port_net[p] != net {
                self.fdb.flush_port(id);
                self.port_net[p] = net;
            }
            if let Some(c) = conf {
                while self.fdb.port_learned(id) > c.mac_limit {
                    if self.fdb.flush_oldest(id).is_none() {
                        break;
                    }
                }
            }
        }
        for (id, net) in cfg.nets.iter().enumerate() {
            if let Some(n) = net {
                while self.fdb.net_learned(id as NetId) > n.mac_limit {
                    if !self.fdb.evict_from_largest(&n.ports) {
                        break;
                    }
                }
            }
        }
        let mut wanted: Vec<(NetId, [u8; 6], PortId)> = Vec::new();
        for (id, net) in cfg.nets.iter().enumerate() {
            if let Some(n) = net {
                wanted.extend(
                    n.statics
                        .iter()
                        .map(|&(mac, port)| (id as NetId, mac, port)),
                );
            }
        }
        for old in &self.statics {
            if !wanted.iter().any(|w| w.0 == old.0 && w.1 == old.1) {
                self.fdb.remove(old.0, &old.1);
            }
        }
        for w in &wanted {
            if !self.statics.contains(w) {
                self.fdb.set_static(w.0, &w.1, w.2);
            }
        }
        self.statics = wanted;
    }

    /// Ages out learned MACs; returns how many went.
    pub fn tick(&mut self, stats: &WorkerStats, cfg: &Snapshot, now: u64) -> u32 {
        let aging = |p: PortId| {
            cfg.port(p)
                .and_then(|c| c.net)
                .and_then(|n| cfg.net(n))
                .map_or(0, |n| u64::from(n.aging_secs))
        };
        let n = self.fdb.expire(now, aging, AGING_BUDGET);
        stats
            .pipeline
            .at(event_index(Event::MacAged))
            .add(u64::from(n));
        n
    }
}
