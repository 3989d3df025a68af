//! The `l3-router` stage: the gateway of every network that has one, and source NAT to the
//! uplink address.
//!
//! It has three entries (the [`Next`] argument says which):
//! * [`FROM_NET`]: what `vlan-input` receives on a port of a network with a gateway. ARP
//!   requests for the gateway address are answered; frames to the gateway's MAC are routed;
//!   everything else goes on to the bridge untouched.
//! * [`FROM_UPLINK`]: IPv4 to the uplink address that is not VXLAN (`underlay-in` sends it
//!   here): return traffic, translated back and sent to the inside endpoint.
//! * [`RESUME`]: a translated frame whose uplink next hop has just resolved (it was held by the
//!   underlay host).
//!
//! Return traffic for a session another worker owns is collected and handed to that worker at
//! the end of the burst ([`super::handoff`]); the owner runs it in through [`FROM_UPLINK`].
//!
//! Routing out of a network, in order, each failure a named drop: a well-formed IPv4 header;
//! a source inside the network's subnet (else `martian_source`); the gateway address itself
//! (ICMP echo and DNS answered, anything else `gateway_unsupported`); a unicast destination
//! outside the network's subnet (`route_not_unicast`, `route_same_network`); in another
//! network's subnet, routed there without NAT if the two are linked (`network link`,
//! [`super::link`]), else `network_isolated`; a network that is not `--internal`;
//! an uplink address; TTL above 1 (else ICMP time exceeded, rate-limited); a size within the
//! uplink MTU (else, with DF, ICMP fragmentation needed with the uplink MTU; without DF the
//! packet is dropped as `route_too_big`: the gateway does not fragment); then NAT, the TTL
//! decrement and the next hop (the uplink's gateway, or the destination on the uplink's
//! subnet), resolved by the underlay host. A TCP super-frame (TSO) is measured by the segments
//! it will be cut into (headers and its MSS); it leaves whole and is cut later.
//!
//! Return traffic: martian sources dropped (127/8, 0/8, multicast, the uplink address, any
//! network's subnet), then NAT's lookup by the outside endpoint; the session remembers the
//! inside endpoint's MAC and port (refreshed by every packet it sends), so the frame goes
//! straight to that port with no ARP in the network.

use super::router::{self, RateLimit, RouteDrop, RouteEvent};
use super::translate::{self, Kind, NatDrop, Way};
use super::Nat;
use crate::config::{GatewayConf, NetId, Snapshot};
use crate::graph::{out_to, Env, Io, Node, Stage};
use crate::host::Resolve;
use crate::trace::Detail;
use dataplane::burst::{Burst, Next, BURST};
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::offload::VIRTIO_NET_HDR_F_NEEDS_CSUM;
use dataplane::pool::{Buf, Pool};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Entry: from a port of a network with a gateway.
pub const FROM_NET: u16 = 0;
/// Entry: from the uplink, to the uplink address, not VXLAN.
pub const FROM_UPLINK: u16 = 1;
/// Entry: a translated frame back from next-hop resolution.
pub const RESUME: u16 = 2;

/// ICMP errors per second a worker sends at most (and its burst).
const ICMP_RATE: u32 = 100;
/// Sessions from which a burst's lookups are prefetched (below, about a megabyte of sessions
/// and index stays in the caches).
const PREFETCH_FROM: u32 = 16_384;
/// Sessions swept for expiry per tick.
const EXPIRE_BUDGET: u32 = 65_536;

/// A NAT session as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// Network.
    pub net: NetId,
    /// Protocol number.
    pub proto: u8,
    /// Inside endpoint.
    pub inside: (Ipv4Addr, u16),
    /// Outside endpoint.
    pub outside: (Ipv4Addr, u16),
    /// Last remote.
    pub remote: (Ipv4Addr, u16),
    /// State name.
    pub state: &'static str,
    /// Seconds since it was created.
    pub age: u64,
    /// Seconds until it expires unless refreshed.
    pub expires_in: u64,
}

/// A worker's NAT figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TableInfo {
    /// Live sessions.
    pub sessions: u32,
    /// Of which embryonic.
    pub embryonic: u32,
    /// Most sessions.
    pub capacity: u32,
    /// Created since start.
    pub created: u64,
    /// Expired since start.
    pub expired: u64,
    /// Evicted since start.
    pub evicted: u64,
    /// Created per second over the last tick.
    pub created_rate: f64,
    /// Expired per second over the last tick.
    pub expired_rate: f64,
    /// Evicted per second over the last tick.
    pub evicted_rate: f64,
}

/// The router's state on one worker.
pub struct Router {
    pub(crate) pool: Arc<Pool>,
    /// The worker's NAT (allocated at the first configuration with a gateway).
    pub nat: Nat,
    /// Rings to and from the other workers (None with one worker).
    pub handoff: Option<super::handoff::Handoff>,
    icmp_limit: RateLimit,
    /// Whether the table has been allocated at its configured size.
    sized: bool,
    /// The address sessions were made for (a new uplink address forgets them).
    ext_ip: Option<Ipv4Addr>,
    expired: u64,
    /// Totals at the last tick and when it was (ns), for rates.
    last: (u64, u64, u64, u64),
    rates: (f64, f64, f64),
    pub(crate) drops: Counters<RouteDrop>,
    nat_drops: Counters<NatDrop>,
    ev: Counters<RouteEvent>,
    dns_drops: Counters<crate::dns::DnsDrop>,
    dns_ev: Counters<crate::dns::DnsEvent>,
    /// Routing between linked networks.
    link: super::link::Linker,
    /// The load balancer (services).
    pub lb: crate::service::stage::Lb,
}

#[inline]
fn ip_at(d: &[u8], at: usize) -> Ipv4Addr {
    d.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from)
}

/// Whether `frame` is an ARP request for `ip`.
#[inline]
fn arp_request_for(frame: &[u8], ip: Ipv4Addr) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x06])
        && frame.get(20..22) == Some(&[0, 1])
        && frame.get(38..42) == Some(&ip.octets())
}

/// Where a frame that entered on `port` goes first (`vlan-input` asks): the router when the
/// port's network has a gateway and the frame is for it (to the gateway's MAC, or a broadcast
/// ARP request for its address); other frames go straight to the bridge, so traffic within a
/// network pays one comparison for the gateway.
#[inline]
pub fn entry(cfg: &Snapshot, port: u16, frame: &[u8]) -> Option<Next> {
    let net = cfg.port(port)?.net?;
    let gw = cfg.gateway(net)?;
    let dst = frame.get(0..6)?;
    let ours = dst == gw.mac
        || crate::service::stage::to_ingress(cfg, net, dst)
        || (dst == [0xff; 6]
            && (arp_request_for(frame, gw.ip)
                || crate::service::stage::arp_for_vip(cfg, net, frame)));
    ours.then_some(Next::to(Node::Router as u16, FROM_NET))
}

/// What became of a frame: on to a node, consumed (held for its next hop), or dropped under a
/// counter.
pub(crate) type Step = Result<Option<(Buf, Next)>, (Buf, usize)>;

impl Stage for Router {
    const NAME: &'static str = "l3-router";

    fn new(env: &mut Env<'_>) -> Router {
        Router {
            pool: env.pool.clone(),
            // A token table until a gateway is configured (the real one is made then).
            nat: Nat::new(1, super::seed(1)),
            handoff: None,
            icmp_limit: RateLimit::new(ICMP_RATE, ICMP_RATE),
            sized: false,
            ext_ip: None,
            expired: 0,
            last: (0, 0, 0, 0),
            rates: (0.0, 0.0, 0.0),
            drops: env.layout.register(Self::NAME, CounterKind::Drop),
            nat_drops: env.layout.register(Self::NAME, CounterKind::Drop),
            ev: env.layout.register(Self::NAME, CounterKind::Event),
            dns_drops: env.layout.register(Self::NAME, CounterKind::Drop),
            dns_ev: env.layout.register(Self::NAME, CounterKind::Event),
            link: super::link::Linker::new(env.pool.clone(), env.layout),
            lb: crate::service::stage::Lb::new(env),
        }
    }

    fn run<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        input: &mut Burst,
        out: &mut Burst,
    ) {
        self.prefetch(io.cfg, input);
        for (b, next) in input.drain_next() {
            let step = match next.arg {
                FROM_NET => self.route_out::<T>(io, frames, b),
                // Handed over by another worker: a network's frame (a service's) comes back in
                // here too, told apart by the port it arrived on.
                FROM_UPLINK
                    if io
                        .host
                        .uplink()
                        .is_some_and(|u| u.port != self.pool.port(&b)) =>
                {
                    self.route_out::<T>(io, frames, b)
                }
                FROM_UPLINK => self.route_in::<T>(io, b),
                _ => self.send_up::<T>(io, frames, b),
            };
            match step {
                // Cannot fail: the output holds no more than the input did.
                Ok(Some((b, next))) => {
                    let _ = out.push_next(b, next);
                }
                Ok(None) => {}
                Err((b, counter)) => io.drop_buf::<T>(Self::NAME, b, counter),
            }
        }
        if let Some(h) = &mut self.handoff {
            let lost = h.flush(io.cx.cache);
            if lost > 0 {
                let i = self.nat_drops.index(NatDrop::HandoffFull);
                io.cx.stats.pipeline.at(i).add(lost);
            }
        }
    }

    fn configure(&mut self, io: &mut Io<'_, '_>) {
        let cfg = io.cfg;
        let want = cfg.nat.sessions.max(1);
        let any = cfg.gateways.iter().any(Option::is_some);
        if any && (!self.sized || self.nat.table.capacity() != want) {
            // Allocated here, on a configuration change, never per packet.
            let seed = super::seed(u64::from(io.cx.worker));
            let stats = self.nat.stats;
            self.nat = Nat::new(want, seed);
            self.nat.stats = stats;
            self.sized = true;
        }
        self.nat.cfg = cfg.nat;
        self.nat.worker = io.cx.worker;
        self.nat.workers = cfg.workers.max(1);
        self.nat.reserved_udp = cfg.uplink.map(|u| u.vxlan_port);
        let ended = self.lb.configure(cfg, io.cx.now, io.cx.worker);
        if ended > 0 {
            self.lb
                .ev
                .get(io.cx.stats, crate::service::stage::SvcEvent::Ended)
                .add(u64::from(ended));
        }
        let ext = cfg.uplink.map(|u| u.ip);
        if ext != self.ext_ip {
            self.nat.table.clear();
            self.ext_ip = ext;
        }
    }

    fn tick(&mut self, io: &mut Io<'_, '_>, frames: &mut Frames) {
        self.link.tick(io, frames);
        if self.lb.conns.capacity() > 1 || !io.cfg.services.is_empty() {
            self.svc_tick(io, frames);
        }
        let n = self.nat.table.expire(io.cx.now, EXPIRE_BUDGET);
        self.expired += u64::from(n);
        self.ev
            .get(io.cx.stats, RouteEvent::SessionExpired)
            .add(u64::from(n));
        let (c, e, x, t) = self.last;
        let now_ns = io.cx.now_ns;
        let s = self.nat.stats;
        if t != 0 && now_ns > t {
            let dt = (now_ns - t) as f64 / 1e9;
            self.rates = (
                s.created.saturating_sub(c) as f64 / dt,
                self.expired.saturating_sub(x) as f64 / dt,
                s.evicted.saturating_sub(e) as f64 / dt,
            );
        }
        self.last = (s.created, s.evicted, self.expired, now_ns);
        io.cx
            .stats
            .gauges
            .at(crate::counters::Gauge::NatSessions as usize)
            .set(u64::from(self.nat.table.len()));
    }
}

impl Router {
    /// Starts the cache misses of a burst's NAT lookups before any is needed (as the bridge
    /// does): hashes every frame's key and prefetches its index line, then the session it most
    /// likely names. With a large table the misses of 32 frames then overlap.
    #[inline]
    fn prefetch(&self, cfg: &Snapshot, input: &Burst) {
        self.svc_prefetch(cfg, input);
        let pool = &*self.pool;
        let t = &self.nat.table;
        // A small table stays in the caches: the extra pass would only cost.
        if !self.sized || t.len() < PREFETCH_FROM {
            return;
        }
        let mut hashes = [(0u32, 0u8); BURST];
        for ((b, next), h) in input
            .bufs()
            .iter()
            .zip(input.next.iter())
            .zip(hashes.iter_mut())
        {
            let d = pool.data(b);
            *h = match next.arg {
                FROM_NET => {
                    let Some(net) = cfg.port(pool.port(b)).and_then(|p| p.net) else {
                        continue;
                    };
                    let Ok(f) = translate::parse(d, 14, Way::Out, None) else {
                        continue;
                    };
                    let k = t.hash_in(&Nat::inside_key(&f, net));
                    t.prefetch_out(k);
                    (k, 1)
                }
                FROM_UPLINK => {
                    let Ok(f) = translate::parse(d, 14, Way::In, None) else {
                        continue;
                    };
                    let k = t.hash_out(&Nat::outside_key(&f));
                    t.prefetch_in(k);
                    (k, 2)
                }
                _ => continue,
            };
        }
        for &(k, way) in &hashes[..input.len()] {
            match way {
                1 => t.prefetch_session_out(k),
                2 => t.prefetch_session_in(k),
                _ => {}
            }
        }
    }

    /// The worker's figures at `now`.
    pub fn info(&self) -> TableInfo {
        let s = self.nat.stats;
        TableInfo {
            sessions: self.nat.table.len(),
            embryonic: self.nat.table.embryonic(),
            // Before the first gateway the table is a one-slot placeholder: no capacity.
            capacity: if self.sized {
                self.nat.table.capacity()
            } else {
                0
            },
            created: s.created,
            expired: self.expired,
            evicted: s.evicted,
            created_rate: self.rates.0,
            expired_rate: self.rates.1,
            evicted_rate: self.rates.2,
        }
    }

    /// Up to `limit` sessions (of network `net`, or all) at `now`.
    pub fn sessions(&self, net: Option<NetId>, limit: usize, now: u64) -> Vec<SessionInfo> {
        let mut v = Vec::new();
        self.nat.table.for_each(now, |s| {
            if v.len() < limit && net.is_none_or(|n| n == s.net) {
                v.push(SessionInfo {
                    net: s.net,
                    proto: s.proto,
                    inside: (Ipv4Addr::from(s.int_ip), s.int_port),
                    outside: (Ipv4Addr::from(s.ext_ip), s.ext_port),
                    remote: (Ipv4Addr::from(s.remote_ip), s.remote_port),
                    state: s.state().name(),
                    age: now.saturating_sub(s.created),
                    expires_in: s.expires.saturating_sub(now),
                });
            }
        });
        v
    }

    #[inline]
    pub(crate) fn drop_nat(&self, b: Buf, why: NatDrop) -> Step {
        Err((b, self.nat_drops.index(why)))
    }

    #[inline]
    fn drop_route(&self, b: Buf, why: RouteDrop) -> Step {
        Err((b, self.drops.index(why)))
    }

    /// A frame from a port of a network with a gateway.
    #[inline]
    fn route_out<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        mut b: Buf,
    ) -> Step {
        let pool = &*self.pool;
        let cfg = io.cfg;
        let bridge = Next::to(Node::Bridge as u16, 0);
        let port = pool.port(&b);
        let Some(net) = cfg.port(port).and_then(|p| p.net) else {
            return Ok(Some((b, bridge)));
        };
        let Some(gw) = cfg.gateway(net).copied() else {
            return Ok(Some((b, bridge)));
        };
        let has_svc = !cfg.services.is_empty();
        if has_svc {
            b = match self.svc_arp::<T>(io, b, net, &gw, port) {
                Ok(step) => return step,
                Err(b) => b,
            };
        }
        let pool = &*self.pool;
        let d = pool.data(&b);
        if arp_request_for(d, gw.ip) {
            if let crate::neigh::ArpAction::Reply { len, learn } =
                crate::neigh::handle_arp(pool.data_mut(&mut b), gw.mac, gw.ip)
            {
                if let Some((ip, mac)) = learn.filter(|&(ip, _)| gw.contains(ip)) {
                    cfg.inside.learn(net, ip, mac, port, io.cx.now as u32);
                }
                pool.set_len(&mut b, len);
                self.ev.inc(io.cx.stats, RouteEvent::ArpReplied);
                io.rec::<T>(
                    Self::NAME,
                    &b,
                    Detail::Arp("request for the gateway: replied"),
                );
                return Ok(Some((b, out_to(cfg, port))));
            }
            return Ok(Some((b, bridge)));
        }
        if d.get(0..6) != Some(&gw.mac)
            && !(has_svc && crate::service::stage::to_ingress(cfg, net, d.get(0..6).unwrap_or(&[])))
        {
            return Ok(Some((b, bridge)));
        }
        if d.get(12..14) == Some(&[0x08, 0x06]) {
            return self.link.arp_to_gateway::<T>(io, frames, b, &gw, net, port);
        }
        let Some(h) = router::header(d) else {
            if d.get(12..14) != Some(&[0x08, 0x00]) {
                return self.drop_nat(b, NatDrop::NotIpv4);
            }
            return self.drop_route(b, RouteDrop::BadIp);
        };
        let off = pool.offload(&b);
        let gso = off.is_tcp_gso();
        if !gso && (h.len < h.ihl || 14 + h.len > d.len()) {
            return self.drop_route(b, RouteDrop::BadIp);
        }
        if !gw.contains(h.src) {
            return self.drop_route(b, RouteDrop::Martian);
        }
        if has_svc {
            b = match self.svc_from_net::<T>(io, frames, b, net, port, &h) {
                Ok(step) => return step,
                Err(b) => b,
            };
        }
        let pool = &*self.pool;
        let d = pool.data(&b);
        if h.dst == gw.ip {
            if router::echo_reply(pool.data_mut(&mut b), &h, gw.mac).is_some() {
                self.ev.inc(io.cx.stats, RouteEvent::EchoReplied);
                io.rec::<T>(
                    Self::NAME,
                    &b,
                    Detail::Route("echo request to the gateway: replied"),
                );
                pool.set_offload(&mut b, Default::default());
                return Ok(Some((b, out_to(cfg, port))));
            }
            if crate::dns::is_query(pool.data(&b), &h) {
                return self.dns::<T>(io, b, &h, &gw, net, port);
            }
            return self.drop_route(b, RouteDrop::ToGateway);
        }
        if router::not_unicast(h.dst) {
            return self.drop_route(b, RouteDrop::NotUnicast);
        }
        if gw.contains(h.dst) {
            return self.drop_route(b, RouteDrop::SameNetwork);
        }
        if let Some((dnet, dgw)) = cfg.net_of_ip(h.dst) {
            if !cfg.linked(net, dnet) {
                return self.drop_route(b, RouteDrop::Isolated);
            }
            let dgw = *dgw;
            if h.dst == dgw.ip {
                // The other gateway's address answers echo too, as a router's every address does.
                if router::echo_reply(pool.data_mut(&mut b), &h, gw.mac).is_some() {
                    self.ev.inc(io.cx.stats, RouteEvent::EchoReplied);
                    pool.set_offload(&mut b, Default::default());
                    return Ok(Some((b, out_to(cfg, port))));
                }
                return self.drop_route(b, RouteDrop::ToGateway);
            }
            if h.ttl <= 1 {
                return self.icmp_error::<T>(io, b, &h, &gw, port, (11, 0, 0));
            }
            return self
                .link
                .route::<T>(io, frames, b, &h, net, port, dnet, &dgw);
        }
        if gw.internal {
            return self.drop_route(b, RouteDrop::Internal);
        }
        let Some(up) = io.host.uplink() else {
            return self.drop_route(b, RouteDrop::NoRoute);
        };
        if h.dst == up.ip || up.next_hop(h.dst).is_none() {
            return self.drop_route(b, RouteDrop::NoRoute);
        }
        if h.ttl <= 1 {
            return self.icmp_error::<T>(io, b, &h, &gw, port, (11, 0, 0));
        }
        // A super-frame is judged by the segments it will be cut into.
        let size = if gso {
            let d = pool.data(&b);
            let tcp_hdr = d
                .get(14 + h.ihl + 12)
                .map_or(20, |o| usize::from(o >> 4) * 4);
            h.ihl + tcp_hdr + usize::from(off.gso_size)
        } else {
            h.len
        };
        if size > up.mtu as usize {
            if h.df {
                let mtu = u16::try_from(up.mtu).unwrap_or(u16::MAX);
                return self.icmp_error::<T>(io, b, &h, &gw, port, (3, 4, mtu));
            }
            return self.drop_route(b, RouteDrop::TooBig);
        }
        let partial = (off.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0)
            .then(|| (usize::from(off.csum_start), usize::from(off.csum_offset)));
        let src_mac: [u8; 6] = d
            .get(6..12)
            .and_then(|m| m.try_into().ok())
            .unwrap_or([0; 6]);
        let f = match translate::parse(d, 14, Way::Out, partial) {
            Ok(f) => f,
            Err(why) => return self.drop_nat(b, why),
        };
        let hash = self.nat.table.hash_in(&Nat::inside_key(&f, net));
        let before = self.nat.stats;
        let ext = u32::from(up.ip);
        let now = io.cx.now;
        let slot = match self
            .nat
            .outbound(pool.data_mut(&mut b), &f, net, hash, ext, now)
        {
            Ok(i) => i,
            Err(why) => return self.drop_nat(b, why),
        };
        self.count_new(io, before);
        let s = self.nat.table.get_mut(slot);
        s.mac = src_mac;
        s.port = port;
        let (ext_port, state) = (s.ext_port, s.state());
        let data = pool.data_mut(&mut b);
        let _ = router::dec_ttl(data);
        let _ = router::set_macs(data, [0; 6], up.mac);
        self.ev.inc(io.cx.stats, RouteEvent::RoutedOut);
        if T {
            let what = Detail::Nat {
                what: "source translated",
                from: (h.src, f.sport),
                to: (up.ip, ext_port),
                state: state.name(),
            };
            io.rec::<T>(Self::NAME, &b, what);
        }
        self.send_up::<T>(io, frames, b)
    }

    /// Counts what the NAT core did since `before`.
    #[inline]
    fn count_new(&self, io: &mut Io<'_, '_>, before: super::NatStats) {
        let s = self.nat.stats;
        if s.created != before.created {
            self.ev.inc(io.cx.stats, RouteEvent::SessionCreated);
        }
        if s.evicted != before.evicted {
            self.ev.inc(io.cx.stats, RouteEvent::SessionEvicted);
        }
    }

    /// Sends a translated frame to its next hop beyond the uplink (held while it resolves).
    pub(crate) fn send_up<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        b: Buf,
    ) -> Step {
        let pool = &*self.pool;
        let Some(up) = io.host.uplink() else {
            return self.drop_route(b, RouteDrop::NoRoute);
        };
        let dst = ip_at(pool.data(&b), 30);
        let Some(hop) = up.next_hop(dst) else {
            return self.drop_route(b, RouteDrop::NoRoute);
        };
        let id = (T && pool.traced(&b)).then(|| pool.word(&b, crate::trace::TRACE_WORD));
        let resume = Next::to(Node::Router as u16, RESUME);
        match io.host.resolve(io.cx, frames, hop, b, resume) {
            Resolve::Known(mac, mut b) => {
                let _ = router::set_macs(pool.data_mut(&mut b), mac, up.mac);
                Ok(Some((b, Next::to(Node::Tx as u16, up.port))))
            }
            Resolve::Held => {
                if let Some(id) = id {
                    let what = Detail::Neigh {
                        ip: hop,
                        state: "resolving: held until it answers",
                    };
                    io.trace.record(id, io.cx.worker, Self::NAME, what);
                }
                Ok(None)
            }
            Resolve::Drop(b, why) => Err((b, why)),
        }
    }

    /// Return traffic (or ICMP errors) from the uplink.
    #[inline]
    fn route_in<const T: bool>(&mut self, io: &mut Io<'_, '_>, mut b: Buf) -> Step {
        let pool = &*self.pool;
        let cfg = io.cfg;
        let Some(up) = io.host.uplink() else {
            return self.drop_route(b, RouteDrop::NoRoute);
        };
        let d = pool.data(&b);
        let Some(h) = router::header(d) else {
            return self.drop_route(b, RouteDrop::BadIp);
        };
        if router::martian_outside(h.src) || h.src == up.ip || cfg.net_of_ip(h.src).is_some() {
            return self.drop_route(b, RouteDrop::Martian);
        }
        if h.dst != up.ip {
            return self.drop_route(b, RouteDrop::NotForUs);
        }
        b = match self.svc_from_uplink::<T>(io, b, &h) {
            Ok(step) => return step,
            Err(b) => b,
        };
        let pool = &*self.pool;
        let d = pool.data(&b);
        let off = pool.offload(&b);
        let partial = (off.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0)
            .then(|| (usize::from(off.csum_start), usize::from(off.csum_offset)));
        let f = match translate::parse(d, 14, Way::In, partial) {
            Ok(f) => f,
            Err(why) => return self.drop_nat(b, why),
        };
        let port = match f.kind {
            Kind::IcmpError(inner) => inner.sport,
            _ => f.dport,
        };
        let owner = self.nat.owner(port);
        if owner != self.nat.worker {
            let Some(h) = &mut self.handoff else {
                return self.drop_nat(b, NatDrop::OtherWorker);
            };
            return match h.queue(usize::from(owner), b) {
                Ok(()) => {
                    self.ev.inc(io.cx.stats, RouteEvent::HandedOff);
                    Ok(None)
                }
                Err(b) => self.drop_nat(b, NatDrop::OtherWorker),
            };
        }
        let hash = self.nat.table.hash_out(&Nat::outside_key(&f));
        let now = io.cx.now;
        let slot = match self.nat.inbound(pool.data_mut(&mut b), &f, hash, now) {
            Ok(i) => i,
            Err(why) => return self.drop_nat(b, why),
        };
        let s = *self.nat.table.get(slot);
        if h.ttl <= 1 {
            return self.drop_route(b, RouteDrop::TtlExpired);
        }
        let (Some(gw), Some(pc)) = (cfg.gateway(s.net), cfg.port(s.port)) else {
            return self.drop_route(b, RouteDrop::Gone);
        };
        if pc.net != Some(s.net) {
            return self.drop_route(b, RouteDrop::Gone);
        }
        let data = pool.data_mut(&mut b);
        let _ = router::dec_ttl(data);
        let _ = router::set_macs(data, s.mac, gw.mac);
        self.ev.inc(io.cx.stats, RouteEvent::RoutedIn);
        if T {
            let what = Detail::Nat {
                what: "destination translated back",
                from: (up.ip, f.dport),
                to: (Ipv4Addr::from(s.int_ip), s.int_port),
                state: s.state().name(),
            };
            io.rec::<T>(Self::NAME, &b, what);
        }
        Ok(Some((b, out_to(cfg, s.port))))
    }

    /// Answers a DNS query to the gateway in place (`crate::dns`).
    #[cold]
    fn dns<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        mut b: Buf,
        h: &router::Hdr,
        gw: &GatewayConf,
        net: crate::config::NetId,
        port: u16,
    ) -> Step {
        let pool = &*self.pool;
        let len = pool.len(&b);
        let off = pool.offset(&b);
        let names = io.cfg.names.net(net);
        let Some(buf) = pool.slot_mut(&mut b).get_mut(off..) else {
            return Err((b, self.dns_drops.index(crate::dns::DnsDrop::Malformed)));
        };
        match crate::dns::answer(buf, len, h, gw, names) {
            Ok(a) => {
                pool.set_len(&mut b, a.len);
                pool.set_offload(&mut b, Default::default());
                self.dns_ev.inc(io.cx.stats, a.event);
                io.rec::<T>(
                    Self::NAME,
                    &b,
                    Detail::Route(match a.rcode {
                        0 => "DNS query to the gateway: answered",
                        3 => "DNS query to the gateway: NXDOMAIN",
                        5 => "DNS query to the gateway: REFUSED (not a name of this network)",
                        _ => "DNS query to the gateway: FORMERR/NOTIMP",
                    }),
                );
                Ok(Some((b, out_to(io.cfg, port))))
            }
            Err(why) => Err((b, self.dns_drops.index(why))),
        }
    }

    /// Turns `b` into an ICMP error (`what`: type, code, MTU) back to its sender on `port`, or
    /// drops it when the rate limit says no.
    fn icmp_error<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        mut b: Buf,
        h: &router::Hdr,
        gw: &GatewayConf,
        port: u16,
        what: (u8, u8, u16),
    ) -> Step {
        let (ty, code, mtu) = what;
        let (drop, ev) = if ty == 11 {
            (RouteDrop::TtlExpired, RouteEvent::TimeExceededSent)
        } else {
            (RouteDrop::FragNeeded, RouteEvent::FragNeededSent)
        };
        if !self.icmp_limit.allow(io.cx.now_ns) {
            return self.drop_route(b, drop);
        }
        let pool = &*self.pool;
        let d = pool.data(&b);
        let n = router::quote_len(d, h);
        let mut saved = [0u8; 68];
        let (Some(q), Some(dst)) = (d.get(14..14 + n), saved.get_mut(..n)) else {
            return self.drop_route(b, drop);
        };
        dst.copy_from_slice(q);
        let to_mac: [u8; 6] = d
            .get(6..12)
            .and_then(|m| m.try_into().ok())
            .unwrap_or([0; 6]);
        let len = router::error_len(n);
        pool.set_offload(&mut b, Default::default());
        pool.set_len(&mut b, len);
        let frame = pool.data_mut(&mut b);
        let Some(len) = router::icmp_error(
            frame,
            &saved[..n],
            ty,
            code,
            mtu,
            gw.ip,
            gw.mac,
            h.src,
            to_mac,
        ) else {
            return self.drop_route(b, drop);
        };
        pool.set_len(&mut b, len);
        self.ev.inc(io.cx.stats, ev);
        let why = if ty == 11 {
            "TTL expired: ICMP time exceeded sent back"
        } else {
            "too big with DF: ICMP fragmentation needed sent back"
        };
        io.rec::<T>(Self::NAME, &b, Detail::Route(why));
        Ok(Some((b, out_to(io.cfg, port))))
    }
}
