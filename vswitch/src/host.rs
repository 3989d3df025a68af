//! The underlay host: the switch's own presence on the underlay network, a service beside the
//! graph that every stage sending to the underlay uses (VXLAN now; ESP, the router and NAT
//! later). It answers ARP for the uplink address, learns neighbours from ARP, and resolves next
//! hops: a frame whose next hop is not known yet is held (a few per next hop) while an ARP
//! request goes out, and re-enters the graph at the node it asked for (its "resume" node) once
//! the reply comes; if resolution fails it is dropped and counted. The state machine itself is
//! [`crate::neigh`] (no I/O, time as an argument); this file is its I/O: buffers, the uplink
//! port, counters.
//!
//! Requests and replies it makes leave through the graph's output stage like any frame (emitted
//! to `Node::Tx` on the uplink port).

use crate::config::{Snapshot, UplinkConf};
use crate::graph::Node;
use crate::neigh::{self, ArpAction, ArpIgnore, NeighConfig, NeighDrop, NeighEvent, NeighTable};
use dataplane::burst::Next;
use dataplane::counters::WorkerStats;
use dataplane::graph::{CounterKind, CounterLayout, Counters, Frames};
use dataplane::named_counters;
use dataplane::pool::{Buf, Pool, PoolCache};
use dataplane::port::PortId;
use dataplane::worker::Context;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Underlay neighbours per worker.
const NEIGH_CAPACITY: usize = 1024;
/// The metadata word a held buffer keeps its resume node in.
const RESUME_WORD: usize = 0;

named_counters! {
    /// What the underlay host did.
    pub enum HostEvent {
        /// Frames held while their next hop is resolved.
        NeighQueued => "neigh_queued",
        /// Held frames dropped while they waited (resolution failed, tunnel removed, uplink
        /// address changed); also counted in the uplink port's `tx_dropped`.
        NeighQueueDropped => "neigh_queue_dropped",
        /// ARP requests for the uplink address answered.
        ArpReplied => "arp_replied",
        /// ARP frames consumed to learn an underlay neighbour.
        ArpLearned => "arp_learned",
        /// ARP requests sent to resolve underlay next hops.
        ArpRequests => "arp_requests",
        /// ICMP echo requests to the uplink address answered (the host answers ping).
        EchoReplied => "uplink_echo_replied",
    }
}

/// Turns `frame`, an ICMP echo request to `our_ip` over Ethernet, into its reply in place
/// (addresses swapped, type 0, TTL 64, checksums updated) and returns its length; `None` (the
/// frame untouched) for anything else: not IPv4 ICMP echo to us, options-bearing or fragmented
/// packets, a broadcast or multicast sender, a length that runs past the frame.
pub fn echo_reply_in_place(frame: &mut [u8], our_mac: [u8; 6], our_ip: Ipv4Addr) -> Option<usize> {
    const IP: usize = 14;
    if frame.get(12..14)? != [0x08, 0x00] || *frame.get(IP)? != 0x45 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([
        *frame.get(IP + 2)?,
        *frame.get(IP + 3)?,
    ]));
    let frag = u16::from_be_bytes([*frame.get(IP + 6)?, *frame.get(IP + 7)?]) & 0x3fff;
    if total < 20 + 8 || IP + total > frame.len() || frag != 0 || *frame.get(IP + 9)? != 1 {
        return None;
    }
    let src: [u8; 4] = frame.get(IP + 12..IP + 16)?.try_into().ok()?;
    let src_ip = Ipv4Addr::from(src);
    if frame.get(IP + 16..IP + 20)? != our_ip.octets()
        || src_ip.is_broadcast()
        || src_ip.is_multicast()
        || src_ip.is_unspecified()
        || frame.get(6)? & 1 != 0
    {
        return None;
    }
    let icmp = IP + 20;
    if frame.get(icmp..icmp + 2)? != [8, 0] {
        return None;
    }
    // Ethernet: back to the sender, from us.
    let (dst, rest) = frame.split_at_mut(6);
    dst.copy_from_slice(rest.get(..6)?);
    rest.get_mut(..6)?.copy_from_slice(&our_mac);
    // IPv4: addresses swapped (the header sum does not change), a fresh TTL, the sum again.
    frame.get_mut(IP + 16..IP + 20)?.copy_from_slice(&src);
    frame
        .get_mut(IP + 12..IP + 16)?
        .copy_from_slice(&our_ip.octets());
    *frame.get_mut(IP + 8)? = 64;
    frame.get_mut(IP + 10..IP + 12)?.fill(0);
    let sum = dataplane::checksum::fold(dataplane::checksum::sum16(frame.get(IP..IP + 20)?, 0));
    frame
        .get_mut(IP + 10..IP + 12)?
        .copy_from_slice(&(!sum).to_be_bytes());
    // ICMP: type 8 to 0 lowers the 16-bit word 0x0800 by 0x0800 (RFC 1624 update).
    let old = u16::from_be_bytes([*frame.get(icmp + 2)?, *frame.get(icmp + 3)?]);
    *frame.get_mut(icmp)? = 0;
    let new = dataplane::checksum::update16(old, 0x0800, 0x0000);
    frame
        .get_mut(icmp + 2..icmp + 4)?
        .copy_from_slice(&new.to_be_bytes());
    Some(IP + total)
}

/// What became of a frame that needs a next hop.
pub enum Resolve {
    /// The next hop is at this MAC: send the frame now.
    Known([u8; 6], Buf),
    /// Held until the next hop answers; it re-enters the graph then.
    Held,
    /// Not sendable: drop it under this counter.
    Drop(Buf, usize),
}

/// What became of an ARP frame received on the uplink.
pub enum ArpRx {
    /// A reply to send out of the uplink.
    Reply(Buf),
    /// Consumed (learned from, or dropped and counted).
    Done,
}

/// The underlay host's state on one worker.
pub struct Host {
    pool: Arc<Pool>,
    neigh: NeighTable<Buf>,
    uplink: Option<UplinkConf>,
    /// Drop counters of next-hop resolution.
    pub neigh_drops: Counters<NeighDrop>,
    /// Drop counters of ARP input.
    pub arp_drops: Counters<ArpIgnore>,
    /// Events.
    pub ev: Counters<HostEvent>,
    /// Neighbours learned from ARP since the caller last took them (for the other workers).
    learned: Vec<(Ipv4Addr, [u8; 6])>,
}

/// Counts a frame dropped while it waited for its next hop: it left the bridge as forwarded, so
/// like a frame a port refuses it counts on the port it was headed for, not as a pipeline drop.
fn queue_dropped(ev: Counters<HostEvent>, stats: &WorkerStats, uplink: Option<PortId>) {
    ev.inc(stats, HostEvent::NeighQueueDropped);
    if let Some(p) = uplink {
        stats.port(p).tx_dropped.inc();
    }
}

/// Sends a held frame on to its resume node.
fn release(frames: &mut Frames, pool: &Pool, cache: &mut PoolCache, b: Buf) {
    let w = pool.word(&b, RESUME_WORD);
    let next = Next::to((w >> 16) as u16, (w & 0xffff) as u16);
    if let Err(b) = frames.emit(b, next) {
        cache.free(b);
    }
}

impl Host {
    /// No uplink yet. Allocates its tables once, here.
    pub fn new(pool: Arc<Pool>, layout: &mut CounterLayout) -> Host {
        Host {
            pool,
            neigh: NeighTable::new(NEIGH_CAPACITY, NeighConfig::default()),
            uplink: None,
            neigh_drops: layout.register("underlay-host", CounterKind::Drop),
            arp_drops: layout.register("underlay-host", CounterKind::Drop),
            ev: layout.register("underlay-host", CounterKind::Event),
            learned: Vec::with_capacity(64),
        }
    }

    /// The underlay address, when set.
    #[inline]
    pub fn uplink(&self) -> Option<UplinkConf> {
        self.uplink
    }

    /// Entries in the neighbour table (resolved or not).
    pub fn neigh_len(&self) -> usize {
        self.neigh.len()
    }

    /// Neighbours resolved now: (IP, MAC).
    pub fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        let mut v = Vec::new();
        self.neigh.for_each(|e| {
            if let Some(mac) = e.mac {
                v.push((e.ip, mac));
            }
        });
        v
    }

    /// The state of next hop `ip`, for traces.
    pub fn state_name(&self, ip: Ipv4Addr) -> &'static str {
        match self.neigh.get(ip).map(|e| e.state) {
            None => "unknown",
            Some(neigh::NeighState::Incomplete) => "incomplete",
            Some(neigh::NeighState::Reachable) => "reachable",
            Some(neigh::NeighState::Probe) => "probe",
            Some(neigh::NeighState::Failed) => "failed",
        }
    }

    /// Follows a new configuration: a new underlay address makes every neighbour stale (the
    /// frames they held are dropped and counted).
    pub fn configure(&mut self, cfg: &Snapshot, cache: &mut PoolCache, stats: &WorkerStats) {
        if self.uplink.map(|u| (u.ip, u.mac)) != cfg.uplink.map(|u| (u.ip, u.mac)) {
            let mut ips = Vec::new();
            self.neigh.for_each(|e| ips.push(e.ip));
            let (ev, uplink) = (self.ev, self.uplink.map(|u| u.port));
            for ip in ips {
                self.neigh.remove(ip, |b| {
                    queue_dropped(ev, stats, uplink);
                    cache.free(b);
                });
            }
        }
        self.uplink = cfg.uplink;
    }

    /// Drops every held frame, counted (their destinations changed under them).
    pub fn drop_held(&mut self, cache: &mut PoolCache, stats: &WorkerStats) {
        let mut waiting = Vec::new();
        self.neigh.for_each(|e| {
            if e.queued > 0 {
                waiting.push(e.ip);
            }
        });
        let (ev, uplink) = (self.ev, self.uplink.map(|u| u.port));
        for ip in waiting {
            self.neigh.remove(ip, |b| {
                queue_dropped(ev, stats, uplink);
                cache.free(b);
            });
        }
    }

    /// Resolves next hop `hop` for `b`. An unresolved hop holds `b` (an ARP request goes out
    /// when one is due); it re-enters the graph at `resume` once the hop answers.
    pub fn resolve(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut Frames,
        hop: Ipv4Addr,
        mut b: Buf,
        resume: Next,
    ) -> Resolve {
        let Some(up) = self.uplink else {
            return Resolve::Drop(b, self.neigh_drops.index(NeighDrop::Failed));
        };
        match self.neigh.lookup(hop, cx.now) {
            neigh::Resolution::Known(mac) => Resolve::Known(mac, b),
            neigh::Resolution::Resolve { send_request } => {
                if send_request {
                    let (pool, ev) = (&*self.pool, self.ev);
                    arp_out(pool, ev, cx.cache, cx.stats, frames, &up, hop, None);
                }
                let w = (u32::from(resume.node) << 16) | u32::from(resume.arg);
                self.pool.set_word(&mut b, RESUME_WORD, w);
                match self.neigh.queue(hop, b) {
                    Ok(()) => {
                        self.ev.inc(cx.stats, HostEvent::NeighQueued);
                        Resolve::Held
                    }
                    Err(b) => Resolve::Drop(b, self.neigh_drops.index(NeighDrop::QueueFull)),
                }
            }
            neigh::Resolution::Failed => {
                Resolve::Drop(b, self.neigh_drops.index(NeighDrop::Failed))
            }
            neigh::Resolution::Full => {
                Resolve::Drop(b, self.neigh_drops.index(NeighDrop::TableFull))
            }
        }
    }

    /// Learns that neighbour `ip` is at `mac`; what waited for it re-enters the graph.
    pub fn learn(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut Frames,
        ip: Ipv4Addr,
        mac: [u8; 6],
    ) -> neigh::Learn {
        if self.uplink.is_none() {
            return neigh::Learn::Unknown;
        }
        let pool = &*self.pool;
        let cache = &mut *cx.cache;
        self.neigh
            .learn(ip, mac, cx.now, |b| release(frames, pool, cache, b))
    }

    /// Counts an ARP frame whose MAC claim the table refused ([`neigh::Learn::Disputed`]);
    /// whether it was refused.
    fn disputed(&self, cx: &Context<'_>, r: neigh::Learn) -> bool {
        let refused = r == neigh::Learn::Disputed;
        if refused {
            cx.stats
                .pipeline
                .at(self.arp_drops.index(ArpIgnore::Disputed))
                .inc();
        }
        refused
    }

    /// Neighbours learned from ARP since the last call, for the other workers.
    pub fn take_learned(&mut self, into: &mut Vec<(Ipv4Addr, [u8; 6])>) {
        for l in self.learned.drain(..) {
            if into.len() < into.capacity() {
                into.push(l);
            }
        }
    }

    /// Handles an ARP frame received on the uplink (`to_us`: unicast to our MAC).
    pub fn arp_input(&mut self, cx: &mut Context<'_>, frames: &mut Frames, mut b: Buf) -> ArpRx {
        let Some(up) = self.uplink else {
            cx.stats
                .pipeline
                .at(self.arp_drops.index(ArpIgnore::NotArp))
                .inc();
            cx.cache.free(b);
            return ArpRx::Done;
        };
        let pool = self.pool.clone();
        match neigh::handle_arp(pool.data_mut(&mut b), up.mac, up.ip) {
            ArpAction::Reply { len, learn } => {
                pool.set_len(&mut b, len);
                self.ev.inc(cx.stats, HostEvent::ArpReplied);
                if let Some((ip, mac)) = learn {
                    let r = self.learn(cx, frames, ip, mac);
                    if !self.disputed(cx, r) {
                        self.note_learned(ip, mac);
                    }
                }
                ArpRx::Reply(b)
            }
            ArpAction::Learned { ip, mac } => {
                cx.cache.free(b);
                let r = self.learn(cx, frames, ip, mac);
                if !self.disputed(cx, r) {
                    self.ev.inc(cx.stats, HostEvent::ArpLearned);
                    self.note_learned(ip, mac);
                }
                ArpRx::Done
            }
            ArpAction::Announced { ip, mac } => {
                cx.cache.free(b);
                let pool = &*self.pool;
                let cache = &mut *cx.cache;
                let r = self
                    .neigh
                    .update(ip, mac, cx.now, |q| release(frames, pool, cache, q));
                if !self.disputed(cx, r) {
                    self.ev.inc(cx.stats, HostEvent::ArpLearned);
                }
                ArpRx::Done
            }
            ArpAction::Ignore(why) => {
                cx.stats.pipeline.at(self.arp_drops.index(why)).inc();
                cx.cache.free(b);
                ArpRx::Done
            }
        }
    }

    /// Answers `b` in place when it is an ICMP echo request to the uplink address; gives it back
    /// otherwise. The answer goes out of the uplink as it came in.
    pub fn echo_input(&mut self, cx: &mut Context<'_>, mut b: Buf) -> Result<Buf, Buf> {
        let Some(up) = self.uplink else {
            return Err(b);
        };
        match echo_reply_in_place(self.pool.data_mut(&mut b), up.mac, up.ip) {
            Some(len) => {
                self.pool.set_len(&mut b, len);
                self.pool.set_offload(&mut b, Default::default());
                self.ev.inc(cx.stats, HostEvent::EchoReplied);
                Ok(b)
            }
            None => Err(b),
        }
    }

    fn note_learned(&mut self, ip: Ipv4Addr, mac: [u8; 6]) {
        if self.learned.len() < self.learned.capacity() {
            self.learned.push((ip, mac));
        }
    }

    /// Timers: retries, failures, reconfirmation of next hops.
    pub fn tick(&mut self, cx: &mut Context<'_>, frames: &mut Frames) {
        let Some(up) = self.uplink else { return };
        let now = cx.now;
        let (ev, pool, stats, cache) = (self.ev, &*self.pool, cx.stats, &mut *cx.cache);
        self.neigh.tick(now, |e| match e {
            NeighEvent::Request { ip, unicast } => {
                arp_out(pool, ev, cache, stats, frames, &up, ip, unicast);
            }
            NeighEvent::Dropped(b) => {
                queue_dropped(ev, stats, Some(up.port));
                cache.free(b);
            }
            NeighEvent::Failed(_) | NeighEvent::Expired(_) => {}
        });
    }
}

/// Emits an ARP request for `ip` towards the uplink.
#[allow(clippy::too_many_arguments)]
fn arp_out(
    pool: &Pool,
    ev: Counters<HostEvent>,
    cache: &mut PoolCache,
    stats: &WorkerStats,
    frames: &mut Frames,
    up: &UplinkConf,
    ip: Ipv4Addr,
    unicast: Option<[u8; 6]>,
) {
    let Some(mut b) = cache.alloc() else { return };
    let Some(len) = neigh::arp_request(pool.rx_space(&mut b), up.mac, up.ip, ip, unicast) else {
        cache.free(b);
        return;
    };
    pool.set_len(&mut b, len);
    ev.inc(stats, HostEvent::ArpRequests);
    if let Err(b) = frames.emit(b, Next::to(Node::Tx as u16, up.port)) {
        cache.free(b);
    }
}
