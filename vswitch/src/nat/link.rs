//! Routing between linked networks (`vswitchctl network link A B`): the gateway of A forwards
//! to an address of B's subnet as a plain router does, no NAT, the TTL decremented, the frame
//! readdressed from B's gateway MAC to the neighbour's MAC and sent straight to its port.
//! Networks are isolated unless linked (`network_isolated`), as Docker's are.
//!
//! Neighbours come from the shared [`super::inside::InsideNeigh`] table, learned from ARP to a
//! gateway (requests for it, replies to it) and from the senders of routed packets. A packet
//! for a neighbour not known yet is held (a few per worker, as a kernel's neighbour queue
//! holds them) while B's gateway asks for it with a broadcast ARP request into B (rate-limited);
//! the answer releases it, on this worker at once, or at the next tick where the answer reached
//! another worker. Unanswered for [`HOLD_SECS`] seconds, it is dropped as
//! `route_neigh_unresolved`.

use super::router::{self, RateLimit};
use super::stage::Step;
use crate::config::{GatewayConf, NetId, Snapshot};
use crate::graph::{out_to, Io};
use crate::output::reachable;
use crate::trace::Detail;
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::named_counters;
use dataplane::pool::{Buf, Pool};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Packets a worker holds for unresolved neighbours at most.
const HELD: usize = 16;
/// Seconds a held packet waits for its neighbour (the ARP request is repeated every tick).
pub const HOLD_SECS: u64 = 3;
/// ARP requests per second a worker sends into the networks at most (and its burst).
const ARP_RATE: u32 = 100;

named_counters! {
    /// Why routing between networks drops a frame.
    pub enum LinkDrop {
        /// A packet for a neighbour that did not answer ARP in time, or with no room left to
        /// hold it while asking.
        Unresolved => "route_neigh_unresolved",
        /// ARP to a gateway's MAC that is neither a request for it nor a reply to it.
        ArpIgnored => "gw_arp_ignored",
    }
}

named_counters! {
    /// What routing between networks did.
    pub enum LinkEvent {
        /// Packets routed from one network into a linked one.
        Routed => "routed_between_networks",
        /// ARP requests a gateway sent into its network for a neighbour.
        ArpAsked => "gw_arp_requests_sent",
        /// Neighbours learned from ARP replies to a gateway.
        Learned => "gw_neigh_learned",
    }
}

/// A packet waiting for its neighbour.
struct Held {
    buf: Buf,
    net: NetId,
    dst: Ipv4Addr,
    gw_mac: [u8; 6],
    since_ns: u64,
}

/// Routing between linked networks on one worker (a part of the `l3-router` stage).
pub struct Linker {
    pool: Arc<Pool>,
    held: [Option<Held>; HELD],
    arp_limit: RateLimit,
    drops: Counters<LinkDrop>,
    ev: Counters<LinkEvent>,
}

/// The stage name traces and drops are recorded under.
const NAME: &str = "l3-router";

impl Linker {
    /// Registers its counters under the router's name.
    pub fn new(pool: Arc<Pool>, layout: &mut dataplane::graph::CounterLayout) -> Linker {
        Linker {
            pool,
            held: Default::default(),
            arp_limit: RateLimit::new(ARP_RATE, ARP_RATE),
            drops: layout.register(NAME, CounterKind::Drop),
            ev: layout.register(NAME, CounterKind::Event),
        }
    }

    /// Readdresses `b` (routed into network `net`, whose gateway MAC is `gw_mac`) to `mac`
    /// and decrements its TTL.
    fn readdress(&self, b: &mut Buf, mac: [u8; 6], gw_mac: [u8; 6]) {
        let f = self.pool.data_mut(b);
        let _ = router::dec_ttl(f);
        let _ = router::set_macs(f, mac, gw_mac);
    }

    /// Where `(net, ip)` is, if known and its port is still in `net`.
    fn resolve(cfg: &Snapshot, net: NetId, ip: Ipv4Addr, now: u64) -> Option<([u8; 6], u16)> {
        let (mac, port) = cfg.inside.lookup(net, ip, now as u32)?;
        (cfg.port(port).and_then(|p| p.net) == Some(net)).then_some((mac, port))
    }

    /// Routes `b` (IPv4 header `h`, from `port` of network `net`) into the linked network
    /// `dnet` (gateway `dgw`). The caller checked the link, the TTL and the addresses.
    #[allow(clippy::too_many_arguments)]
    pub fn route<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        mut b: Buf,
        h: &router::Hdr,
        net: NetId,
        port: u16,
        dnet: NetId,
        dgw: &GatewayConf,
    ) -> Step {
        let cfg = io.cfg;
        let now = io.cx.now;
        // The sender: its answers then need no ARP.
        if let Some(smac) = self
            .pool
            .data(&b)
            .get(6..12)
            .and_then(|m| <[u8; 6]>::try_from(m).ok())
        {
            cfg.inside.learn(net, h.src, smac, port, now as u32);
        }
        if let Some((mac, to)) = Self::resolve(cfg, dnet, h.dst, now) {
            self.readdress(&mut b, mac, dgw.mac);
            self.ev.inc(io.cx.stats, LinkEvent::Routed);
            io.rec::<T>(NAME, &b, Detail::Route("routed into a linked network"));
            return Ok(Some((b, out_to(cfg, to))));
        }
        let Some(slot) = self.held.iter_mut().find(|s| s.is_none()) else {
            return Err((b, self.drops.index(LinkDrop::Unresolved)));
        };
        io.rec::<T>(
            NAME,
            &b,
            Detail::Route("linked network: neighbour unknown, held while ARP asks"),
        );
        *slot = Some(Held {
            buf: b,
            net: dnet,
            dst: h.dst,
            gw_mac: dgw.mac,
            since_ns: io.cx.now_ns,
        });
        self.ask(io, frames, dnet, dgw, h.dst);
        Ok(None)
    }

    /// An ARP frame to the gateway `gw` of `net` (its MAC) that is not a request for it: a
    /// reply (the neighbour is learned, what waited for it released) or an announcement.
    pub fn arp_to_gateway<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        mut b: Buf,
        gw: &GatewayConf,
        net: NetId,
        port: u16,
    ) -> Step {
        use crate::neigh::ArpAction;
        let (ip, mac) = match crate::neigh::handle_arp(self.pool.data_mut(&mut b), gw.mac, gw.ip) {
            ArpAction::Learned { ip, mac } | ArpAction::Announced { ip, mac } => (ip, mac),
            _ => return Err((b, self.drops.index(LinkDrop::ArpIgnored))),
        };
        if !gw.contains(ip) {
            return Err((b, self.drops.index(LinkDrop::ArpIgnored)));
        }
        io.cfg.inside.learn(net, ip, mac, port, io.cx.now as u32);
        self.ev.inc(io.cx.stats, LinkEvent::Learned);
        io.rec::<T>(
            NAME,
            &b,
            Detail::Arp("reply to the gateway: neighbour learned"),
        );
        io.cx.cache.free(b);
        self.release::<T>(io, frames);
        Ok(None)
    }

    /// Sends what waited for a neighbour now known; drops what waited too long; asks again
    /// for the others (at most once per call).
    pub fn release<const T: bool>(&mut self, io: &mut Io<'_, '_>, frames: &mut Frames) {
        if self.held.iter().all(Option::is_none) {
            return;
        }
        let cfg = io.cfg;
        let now_ns = io.cx.now_ns;
        for i in 0..HELD {
            let Some(h) = self.held[i].take() else {
                continue;
            };
            if let Some((mac, to)) = Self::resolve(cfg, h.net, h.dst, io.cx.now) {
                let mut b = h.buf;
                self.readdress(&mut b, mac, h.gw_mac);
                self.ev.inc(io.cx.stats, LinkEvent::Routed);
                io.rec::<T>(
                    NAME,
                    &b,
                    Detail::Route("held packet: neighbour answered, routed"),
                );
                if let Err(b) = frames.emit(b, out_to(cfg, to)) {
                    io.drop_buf::<T>(NAME, b, self.drops.index(LinkDrop::Unresolved));
                }
            } else if now_ns.saturating_sub(h.since_ns) > HOLD_SECS * 1_000_000_000 {
                io.drop_buf::<T>(NAME, h.buf, self.drops.index(LinkDrop::Unresolved));
            } else {
                self.held[i] = Some(h);
            }
        }
    }

    /// Once a second: releases or drops held packets, and asks again for the neighbours
    /// still unknown.
    pub fn tick(&mut self, io: &mut Io<'_, '_>, frames: &mut Frames) {
        self.release::<false>(io, frames);
        let mut asked: [Option<(NetId, Ipv4Addr)>; HELD] = [None; HELD];
        for i in 0..HELD {
            let Some((net, dst)) = self.held[i].as_ref().map(|h| (h.net, h.dst)) else {
                continue;
            };
            if asked.contains(&Some((net, dst))) {
                continue;
            }
            asked[i] = Some((net, dst));
            if let Some(gw) = io.cfg.gateway(net).copied() {
                self.ask(io, frames, net, &gw, dst);
            }
        }
    }

    /// Broadcasts an ARP request for `ip` from gateway `gw` into network `net` (to every port
    /// of it the flood stage would use), within the rate limit.
    fn ask(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        net: NetId,
        gw: &GatewayConf,
        ip: Ipv4Addr,
    ) {
        if !self.arp_limit.allow(io.cx.now_ns) {
            return;
        }
        let cfg = io.cfg;
        let ports: &[u16] = cfg.net(net).map_or(&[], |n| &n.ports);
        let targets = || ports.iter().copied().filter(|&p| reachable(io.cx, cfg, p));
        let Some(last) = targets().next_back() else {
            return;
        };
        let Some(mut a) = io.cx.cache.alloc() else {
            return;
        };
        let pool = &*self.pool;
        pool.set_len(&mut a, 60);
        let f = pool.data_mut(&mut a);
        f.fill(0);
        if crate::neigh::arp_request(f, gw.mac, gw.ip, ip, None).is_none() {
            io.cx.cache.free(a);
            return;
        }
        self.ev.inc(io.cx.stats, LinkEvent::ArpAsked);
        for p in ports.iter().copied().filter(|&p| p != last) {
            if !reachable(io.cx, cfg, p) {
                continue;
            }
            if let Some(c) = io.cx.cache.clone_buf(&a) {
                if let Err(c) = frames.emit(c, out_to(cfg, p)) {
                    io.cx.cache.free(c);
                }
            }
        }
        if let Err(a) = frames.emit(a, out_to(cfg, last)) {
            io.cx.cache.free(a);
        }
    }
}
