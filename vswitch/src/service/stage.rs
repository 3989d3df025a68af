//! The services' dataplane, run inside the `l3-router` stage (`crate::nat::stage`): the worker's
//! connection table and backend neighbour cache ([`Lb`]), and the three hooks the router calls.
//!
//! * [`Router::svc_arp`]: ARP on a network with services: requests for a VIP are answered with
//!   the gateway's MAC (so containers send VIP traffic to the gateway); ARP from a backend's
//!   address teaches the cache its MAC and port (answers to the gateway's own requests are
//!   consumed here).
//! * [`Router::svc_from_net`]: a packet routed by a network's gateway: a backend's reply on a
//!   known connection (translated back), or a connection to a VIP of the client's network or
//!   to a port published on the uplink address (hairpin).
//! * [`Router::svc_from_uplink`]: a packet from beyond the uplink to a published port.
//!
//! A new connection (TCP: a SYN) is placed by the service's Maglev table on the flow's hash;
//! later packets follow the connection table, never the Maglev table, so a connection keeps
//! its backend whatever the table becomes. Each refusal is a named drop (`service_*`); a
//! trace shows the decision as a NAT step ("load balanced ...").
//!
//! Backends are resolved by ARP from the gateway (from this host's ingress address when the
//! network has one), once a second per unresolved backend, from the tick; a connection that
//! finds its backend unresolved loses its first packet (`service_backend_unresolved`) and TCP
//! sends its SYN again.
//!
//! Also here: resets for segments of no connection ([`rst_in_place`]), the health checks
//! (worker 0 sends a SYN per checked backend port from the tick, [`syn`]; answers are handed to
//! it), and the routing mesh's entry from the overlay ([`entry_from_tunnel`]).

use super::conn::{Conn, Conns, Inserted, Tuple, UPLINK};
use super::{maglev, ServiceTable};
use crate::config::{GatewayConf, NetId, Snapshot};
use crate::graph::{out_to, Env, Io};
use crate::nat::router::{self, Hdr, RouteDrop};
use crate::nat::stage::{Router, Step};
use crate::nat::table::{mix, tcp_flags, Dir, State};
use crate::nat::translate::{self, Flow, Side, Way};
use crate::nat::{proto, Rng};
use crate::trace::Detail;
use dataplane::burst::Next;
use dataplane::checksum::{checksum, fold, pseudo_header_v4, sum16};
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::named_counters;
use dataplane::offload::VIRTIO_NET_HDR_F_NEEDS_CSUM;
use dataplane::pool::Buf;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

named_counters! {
    /// Why the load balancer refuses a packet.
    pub enum SvcDrop {
        /// A new connection to a service none of whose backends takes new connections (no
        /// backend, all down, all draining).
        NoBackend => "service_no_backend",
        /// A TCP segment without SYN that matches no connection (its connection ended, or it
        /// never existed), when no reset can be sent (it was a reset itself).
        NotSyn => "service_tcp_not_syn",
        /// The chosen backend's MAC is not known yet (asked for by ARP).
        Unresolved => "service_backend_unresolved",
        /// The connection table is full of established connections.
        TableFull => "service_table_full",
        /// No free gateway port to translate a client's source to (hairpin, VIP).
        PortsExhausted => "service_ports_exhausted",
        /// For a connection another worker owns, with no ring to hand it over.
        OtherWorker => "service_other_worker",
        /// The service's network has no gateway any more.
        NoGateway => "service_no_gateway",
        /// Maglev chose a backend on another host, and the service has no `--ingress-ip` to
        /// translate the client to (its answer could not come back).
        NoIngress => "service_remote_needs_ingress_ip",
    }
}

named_counters! {
    /// What the load balancer counts.
    pub enum SvcEvent {
        /// Connections created (each placed by Maglev).
        Created => "service_connection_created",
        /// Connections expired (idle) or ended (drained backend's time up).
        Expired => "service_connection_expired",
        /// Embryonic or closed connections evicted for a new one (the table was full).
        Evicted => "service_connection_evicted",
        /// Connections of a removed backend given an end (or reset at once).
        Ended => "service_connection_ended",
        /// ARP requests for a VIP answered.
        VipArpReplied => "service_vip_arp_replied",
        /// ARP requests sent for backends.
        ArpSent => "service_arp_requests",
        /// Backend MACs learned.
        Learned => "service_backend_learned",
        /// Packets handed to the worker that owns their connection.
        HandedOff => "service_handed_off",
        /// TCP resets sent for segments of no connection (an ended one, a reset backend's).
        ResetSent => "service_reset_sent",
        /// Health-check SYNs sent to backends.
        CheckSent => "service_check_sent",
        /// Health checks answered by a SYN-ACK (the backend listens).
        CheckPassed => "service_check_passed",
        /// Health checks answered by a reset, or not answered before the next.
        CheckFailed => "service_check_failed",
    }
}

/// Random source-port picks tried for a source-translated connection.
const PORT_TRIES: u32 = 64;
/// Connections swept for expiry per tick.
const EXPIRE_BUDGET: u32 = 65_536;
/// Slots a `--mode host` service looks at past a remote backend's for a local one.
const HOST_MODE_TRIES: u32 = 64;
/// Connections from which a burst's lookups are prefetched.
const PREFETCH_FROM: u32 = 8_192;
/// Most ARP requests (one per backend, a copy per port) per tick.
const ARP_PER_TICK: usize = 32;
/// Unresolved endpoints wanted by connections remembered between ticks at most.
const URGENT: usize = 16;

/// Health-check failures in a row that make a backend unhealthy.
pub const CHECK_FAILS: u8 = 2;

/// One health-checked backend port (worker 0 checks them all).
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// Seconds between checks.
    interval: u32,
    /// When the next check goes.
    next: u64,
    /// A check is out and unanswered.
    waiting: bool,
    /// Failures in a row.
    fails: u8,
    /// The sequence number of the SYN out.
    seq: u32,
}

/// A health check's key: network, backend address, port.
pub type CheckKey = (NetId, u32, u16);

/// A connection as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnCount {
    /// Service name.
    pub service: String,
    /// Backend address.
    pub backend: Ipv4Addr,
    /// Live connections.
    pub conns: u64,
}

/// One worker's load balancer state.
pub struct Lb {
    /// Connections.
    pub conns: Conns,
    sized: bool,
    /// Per endpoint of `table`: the backend's MAC and port, once known.
    neigh: Vec<Option<([u8; 6], u16)>>,
    /// When each endpoint was last asked for.
    asked: Vec<u64>,
    /// Endpoints a connection found unresolved since the last tick: asked for first.
    urgent: [usize; URGENT],
    /// How many of `urgent` are set.
    n_urgent: usize,
    /// Where the next tick's round robin of unresolved endpoints starts.
    arp_cursor: usize,
    /// Removed backends whose connections drain: `(network, address, until)`, sorted; their
    /// replies are looked for as the current backends' are.
    retired: Vec<(NetId, u32, u64)>,
    /// Health checks (worker 0 sends them; replies are handed to it).
    probes: HashMap<CheckKey, Probe>,
    /// The gateway port health checks come from (just below NAT's range).
    probe_port: u16,
    table: Arc<ServiceTable>,
    rng: Rng,
    /// Drops.
    pub drops: Counters<SvcDrop>,
    /// Events.
    pub ev: Counters<SvcEvent>,
}

impl Lb {
    /// An empty load balancer (its table is made with the first service).
    pub fn new(env: &mut Env<'_>) -> Lb {
        Lb {
            conns: Conns::new(1, 1),
            sized: false,
            neigh: Vec::new(),
            asked: Vec::new(),
            urgent: [0; URGENT],
            n_urgent: 0,
            arp_cursor: 0,
            retired: Vec::new(),
            probes: HashMap::new(),
            probe_port: 0,
            table: Arc::default(),
            rng: Rng::new(crate::nat::seed(7)),
            drops: env.layout.register("l3-router", CounterKind::Drop),
            ev: env.layout.register("l3-router", CounterKind::Event),
        }
    }

    /// A new configuration: sizes the table, carries the neighbour cache over, and ends the
    /// connections of removed backends (at once, or after their drain timeout) and of removed
    /// services. Returns how many connections were given an end.
    pub fn configure(&mut self, cfg: &Snapshot, now: u64, worker: u16) -> u32 {
        let new = cfg.services.clone();
        let want = cfg.nat.sessions.max(1);
        if !new.is_empty() && (!self.sized || self.conns.capacity() != want) {
            // On a configuration change, never per packet.
            self.conns = Conns::new(want, crate::nat::seed(u64::from(worker) ^ 0x5e41));
            self.sized = true;
        }
        self.probe_port = cfg.nat.port_lo.saturating_sub(1);
        if Arc::ptr_eq(&new, &self.table) {
            return 0;
        }
        if *new == *self.table {
            // A commit that did not touch the services: nothing to carry over or end.
            self.table = new;
            return 0;
        }
        // The health checks wanted now, keeping the state of those that stay.
        let mut probes = HashMap::new();
        for sv in new.services.iter().filter(|s| s.check_interval > 0) {
            for b in &sv.backends {
                let k = (sv.net, b.ip.to_bits(), sv.check_port);
                let p = self.probes.get(&k).copied().unwrap_or_default();
                let e: &mut Probe = probes.entry(k).or_insert(p);
                e.interval = if e.interval == 0 {
                    sv.check_interval
                } else {
                    e.interval.min(sv.check_interval)
                };
            }
        }
        self.probes = probes;
        let old = std::mem::replace(&mut self.table, new);
        let new = self.table.clone();
        let mut neigh = vec![None; new.endpoints.len()];
        let mut asked = vec![0; new.endpoints.len()];
        for (i, e) in new.endpoints.iter().enumerate() {
            if let Ok(j) = old.endpoints.binary_search(e) {
                neigh[i] = self.neigh.get(j).copied().flatten();
                asked[i] = self.asked.get(j).copied().unwrap_or(0);
            }
        }
        self.neigh = neigh;
        self.asked = asked;
        let map: Vec<Option<u16>> = old.services.iter().map(|s| new.index_of(&s.name)).collect();
        let mut retired = std::mem::take(&mut self.retired);
        retired.retain(|&(n, ip, _)| new.endpoint(n, ip).is_none());
        let ended = self.conns.end_where(now, |c| {
            let Some(&Some(i)) = map.get(usize::from(c.svc)) else {
                return Some(0);
            };
            c.svc = i;
            let s = new.services.get(usize::from(i))?;
            let ip = Ipv4Addr::from(c.reply.src);
            if s.has_backend(ip) {
                return None;
            }
            let secs = s
                .removed
                .iter()
                .find(|r| r.0 == ip)
                .map_or(s.drain, |r| r.1);
            if secs > 0 && new.endpoint(c.reply.net, c.reply.src).is_none() {
                retired.push((
                    c.reply.net,
                    c.reply.src,
                    now.saturating_add(u64::from(secs)),
                ));
            }
            Some(secs)
        });
        retired.sort_unstable();
        retired.dedup_by_key(|r| (r.0, r.1));
        self.retired = retired;
        ended
    }

    /// Whether `ip` on `net` is a backend, current or draining after its removal.
    #[inline]
    fn is_backend(&self, st: &ServiceTable, net: NetId, ip: u32) -> bool {
        st.endpoint(net, ip).is_some()
            || (!self.retired.is_empty()
                && self
                    .retired
                    .binary_search_by_key(&(net, ip), |r| (r.0, r.1))
                    .is_ok())
    }

    /// Open connections per service and backend.
    pub fn counts(&self, now: u64) -> Vec<ConnCount> {
        let mut m: HashMap<(u16, u32), u64> = HashMap::new();
        // Closed connections only waiting out their timer are not counted.
        self.conns.for_each(now, |_, c| {
            if !matches!(c.state(), State::TimeWait | State::Reset) {
                *m.entry((c.svc, c.reply.src)).or_default() += 1;
            }
        });
        m.into_iter()
            .filter_map(|((s, ip), n)| {
                Some(ConnCount {
                    service: self.table.services.get(usize::from(s))?.name.clone(),
                    backend: Ipv4Addr::from(ip),
                    conns: n,
                })
            })
            .collect()
    }

    /// Every health-checked backend port and whether it is healthy (fewer than
    /// [`CHECK_FAILS`] failures in a row).
    pub fn health(&self) -> Vec<(CheckKey, bool)> {
        self.probes
            .iter()
            .map(|(k, p)| (*k, p.fails < CHECK_FAILS))
            .collect()
    }

    /// Live connections.
    pub fn len(&self) -> u32 {
        self.conns.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

#[inline]
fn u32_at(d: &[u8], at: usize) -> u32 {
    d.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

#[inline]
fn mac_at(d: &[u8], at: usize) -> [u8; 6] {
    d.get(at..at + 6)
        .and_then(|m| m.try_into().ok())
        .unwrap_or([0; 6])
}

/// Whether `frame` is a broadcast ARP request for a VIP or this host's ingress address of
/// network `net` (`vlan-input` sends those to the router).
#[inline]
pub fn arp_for_vip(cfg: &Snapshot, net: NetId, frame: &[u8]) -> bool {
    let st = &cfg.services;
    (!st.vip_addrs.is_empty() || !st.ingress.is_empty())
        && frame.get(12..14) == Some(&[0x08, 0x06])
        && frame.get(20..22) == Some(&[0, 1])
        && (st.is_vip(net, u32_at(frame, 38)) || st.ingress_of(net) == Some(u32_at(frame, 38)))
}

/// Whether `dst` is the MAC of this host's ingress address on `net`.
#[inline]
pub fn to_ingress(cfg: &Snapshot, net: NetId, dst: &[u8]) -> bool {
    !cfg.services.ingress.is_empty()
        && cfg
            .services
            .ingress_of(net)
            .is_some_and(|ip| dst == super::ingress_mac(ip))
}

/// Where a frame decapsulated from tunnel `port` goes first (`underlay-in` asks): the router
/// when it is for this host's ingress address (its MAC, or a broadcast ARP request for it: a
/// backend on another host answering a connection of the routing mesh); else the bridge.
#[inline]
pub fn entry_from_tunnel(cfg: &Snapshot, port: u16, frame: &[u8]) -> Option<Next> {
    if cfg.services.ingress.is_empty() {
        return None;
    }
    let net = cfg.port(port)?.net?;
    let ip = cfg.services.ingress_of(net)?;
    let dst = frame.get(0..6)?;
    let ours = dst == super::ingress_mac(ip)
        || (dst == [0xff; 6]
            && frame.get(12..14) == Some(&[0x08, 0x06])
            && frame.get(20..22) == Some(&[0, 1])
            && u32_at(frame, 38) == ip);
    ours.then_some(Next::to(
        crate::graph::Node::Router as u16,
        crate::nat::stage::FROM_NET,
    ))
}

impl Router {
    /// The worker that owns a connection whose client is `ip:port`.
    #[inline]
    fn client_owner(&self, ip: u32, port: u16) -> u16 {
        let n = self.nat.workers.max(1);
        if n <= 1 {
            return self.nat.worker;
        }
        // The remainder is below `n`, a u16.
        #[allow(clippy::cast_possible_truncation)]
        let w = (mix((u64::from(ip) << 16) ^ u64::from(port) ^ 0x0c1e_0000) % u64::from(n)) as u16;
        w
    }

    /// Starts the cache misses of a burst's connection lookups before any is needed (as NAT's
    /// prefetch does): a published port's packets from the uplink and backends' replies, once
    /// the table is large enough to miss the caches.
    #[inline]
    pub(crate) fn svc_prefetch(&self, cfg: &Snapshot, input: &dataplane::burst::Burst) {
        let t = &self.lb.conns;
        let st = &*cfg.services;
        if t.len() < PREFETCH_FROM || st.is_empty() {
            return;
        }
        let pool = &*self.pool;
        let mut hashes = [(0u32, 0u8); dataplane::burst::BURST];
        for ((b, next), h) in input
            .bufs()
            .iter()
            .zip(input.next.iter())
            .zip(hashes.iter_mut())
        {
            let d = pool.data(b);
            let Ok(f) = translate::parse(d, 14, Way::In, None) else {
                continue;
            };
            if f.proto != proto::TCP && f.proto != proto::UDP {
                continue;
            }
            *h = if next.arg == crate::nat::stage::FROM_UPLINK {
                if st.published(f.proto, f.dport).is_none() {
                    continue;
                }
                let k = Tuple {
                    net: UPLINK,
                    proto: f.proto,
                    src: f.src,
                    sport: f.sport,
                    dst: f.dst,
                    dport: f.dport,
                };
                let x = t.hash_orig(&k);
                t.prefetch_orig(x);
                (x, 1)
            } else {
                let Some(net) = cfg.port(pool.port(b)).and_then(|p| p.net) else {
                    continue;
                };
                if !self.lb.is_backend(st, net, f.src) {
                    continue;
                }
                let k = Tuple {
                    net,
                    proto: f.proto,
                    src: f.src,
                    sport: f.sport,
                    dst: f.dst,
                    dport: f.dport,
                };
                let x = t.hash_reply(&k);
                t.prefetch_reply(x);
                (x, 2)
            };
        }
        for &(x, way) in &hashes[..input.len()] {
            match way {
                1 => t.prefetch_conn(x),
                2 => t.prefetch_conn_reply(x),
                _ => {}
            }
        }
    }

    /// Hands `b` to worker `owner`.
    fn hand_to(&mut self, io: &mut Io<'_, '_>, owner: u16, b: Buf) -> Step {
        let Some(h) = &mut self.handoff else {
            return Err((b, self.lb.drops.index(SvcDrop::OtherWorker)));
        };
        match h.queue(usize::from(owner), b) {
            Ok(()) => {
                self.lb.ev.inc(io.cx.stats, SvcEvent::HandedOff);
                Ok(None)
            }
            Err(b) => Err((b, self.lb.drops.index(SvcDrop::OtherWorker))),
        }
    }

    /// ARP on port `port` of network `net` (see the module doc); `Err(b)`: not the load
    /// balancer's, the gateway goes on with it.
    pub(crate) fn svc_arp<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        mut b: Buf,
        net: NetId,
        gw: &GatewayConf,
        port: u16,
    ) -> Result<Step, Buf> {
        let pool = &*self.pool;
        let cfg = io.cfg;
        let d = pool.data(&b);
        if d.get(12..14) != Some(&[0x08, 0x06]) || d.len() < 42 {
            return Err(b);
        }
        let op = d
            .get(20..22)
            .map_or(0, |o| u16::from_be_bytes([o[0], o[1]]));
        let (sha, spa, tpa) = (mac_at(d, 22), u32_at(d, 28), u32_at(d, 38));
        if let Some(ep) = cfg.services.endpoint(net, spa) {
            if sha[0] & 1 == 0 && sha != [0; 6] {
                // Routing between linked networks finds it there too.
                cfg.inside
                    .learn(net, Ipv4Addr::from(spa), sha, port, io.cx.now as u32);
                if let Some(slot) = self.lb.neigh.get_mut(ep) {
                    if *slot != Some((sha, port)) {
                        *slot = Some((sha, port));
                        self.lb.ev.inc(io.cx.stats, SvcEvent::Learned);
                    }
                }
            }
            let ingress = cfg.services.ingress_of(net);
            let to_us = (d.get(0..6) == Some(&gw.mac) && tpa == gw.ip.to_bits())
                || ingress.is_some_and(|ip| {
                    tpa == ip && d.get(0..6) == Some(&super::ingress_mac(ip)[..])
                });
            if op == 2 && to_us {
                io.rec::<T>(
                    "l3-router",
                    &b,
                    Detail::Arp("a backend answered the gateway: learned"),
                );
                io.cx.cache.free(b);
                return Ok(Ok(None));
            }
        }
        let ingress = cfg.services.ingress_of(net).filter(|&ip| ip == tpa);
        if op == 1 && (ingress.is_some() || cfg.services.is_vip(net, tpa)) {
            let vip = Ipv4Addr::from(tpa);
            let mac = ingress.map_or(gw.mac, super::ingress_mac);
            if let crate::neigh::ArpAction::Reply { len, .. } =
                crate::neigh::handle_arp(pool.data_mut(&mut b), mac, vip)
            {
                pool.set_len(&mut b, len);
                self.lb.ev.inc(io.cx.stats, SvcEvent::VipArpReplied);
                io.rec::<T>(
                    "l3-router",
                    &b,
                    Detail::Arp("request for a service VIP: replied with the gateway's MAC"),
                );
                return Ok(Ok(Some((b, out_to(cfg, port)))));
            }
        }
        Err(b)
    }

    /// An IPv4 packet routed by the gateway `gw` of network `net`, from port `port` (header
    /// `h`, source in the subnet): a backend's reply, or a connection to a VIP or a published
    /// port; `Err(b)`: neither, the gateway goes on with it.
    pub(crate) fn svc_from_net<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        mut b: Buf,
        net: NetId,
        port: u16,
        h: &Hdr,
    ) -> Result<Step, Buf> {
        let cfg = io.cfg;
        let st = &*cfg.services;
        if h.proto != proto::TCP && h.proto != proto::UDP {
            return Err(b);
        }
        if h.proto == proto::TCP
            && !self.lb.probes.is_empty()
            && cfg.gateway(net).is_some_and(|g| g.ip == h.dst)
        {
            b = match self.svc_check_reply::<T>(io, b, net, port) {
                Ok(step) => return Ok(step),
                Err(b) => b,
            };
        }
        let (src, dst) = (h.src.to_bits(), h.dst.to_bits());
        let up = io.host.uplink();
        let from_backend = self.lb.is_backend(st, net, src);
        let to_vip = st.is_vip(net, dst);
        let to_uplink = up.is_some_and(|u| u.ip == h.dst) && !st.published.is_empty();
        if !(from_backend || to_vip || to_uplink) {
            return Err(b);
        }
        let pool = &*self.pool;
        let off = pool.offload(&b);
        let partial = (off.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0)
            .then(|| (usize::from(off.csum_start), usize::from(off.csum_offset)));
        let Ok(f) = translate::parse(pool.data(&b), 14, Way::Out, partial) else {
            return Err(b);
        };
        if from_backend {
            let k = Tuple {
                net,
                proto: f.proto,
                src,
                sport: f.sport,
                dst,
                dport: f.dport,
            };
            // A source-translated reply names its owner by its port; one that kept the
            // client's address, by the client. Ordinary traffic of a backend that lands on
            // another worker this way is routed there as it would be here.
            let gw_dst =
                cfg.gateway(net).is_some_and(|g| g.ip == h.dst) || st.ingress_of(net) == Some(dst);
            let owner = if gw_dst {
                self.nat.owner(f.dport)
            } else {
                self.client_owner(dst, f.dport)
            };
            if owner != self.nat.worker {
                return Ok(self.hand_to(io, owner, b));
            }
            let hash = self.lb.conns.hash_reply(&k);
            if let Some(i) = self.lb.conns.find_reply(&k, hash, io.cx.now) {
                let mac = mac_at(pool.data(&b), 6);
                return Ok(self.svc_reply::<T>(io, frames, b, &f, h, i, mac, port));
            }
            if !(to_vip || to_uplink) {
                return Err(b);
            }
        }
        let found = if to_vip {
            st.vip(dst, f.proto, f.dport).filter(|(s, _)| {
                st.services
                    .get(usize::from(*s))
                    .is_some_and(|s| s.net == net)
            })
        } else if to_uplink {
            st.published(f.proto, f.dport)
        } else {
            None
        };
        let Some((svc, target)) = found else {
            return Err(b);
        };
        let mac = mac_at(pool.data(&b), 6);
        Ok(self.svc_orig::<T>(io, b, &f, h.ttl, (net, mac, port), svc, target))
    }

    /// A packet from beyond the uplink to the uplink address (header `h`): a published port's
    /// connection; `Err(b)`: not one, NAT goes on with it.
    pub(crate) fn svc_from_uplink<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        b: Buf,
        h: &Hdr,
    ) -> Result<Step, Buf> {
        let st = &*io.cfg.services;
        if st.published.is_empty() || (h.proto != proto::TCP && h.proto != proto::UDP) {
            return Err(b);
        }
        let pool = &*self.pool;
        let off = pool.offload(&b);
        let partial = (off.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0)
            .then(|| (usize::from(off.csum_start), usize::from(off.csum_offset)));
        let Ok(f) = translate::parse(pool.data(&b), 14, Way::In, partial) else {
            return Err(b);
        };
        let Some((svc, target)) = st.published(f.proto, f.dport) else {
            return Err(b);
        };
        Ok(self.svc_orig::<T>(io, b, &f, h.ttl, (UPLINK, [0; 6], u16::MAX), svc, target))
    }

    /// A client's packet (`client`: its network, MAC and port; [`UPLINK`] beyond the uplink)
    /// to service `svc`, whose backends listen on `target`: to its connection's backend, or,
    /// for a new connection, to the backend Maglev picks.
    #[allow(clippy::too_many_arguments)]
    fn svc_orig<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        mut b: Buf,
        f: &Flow,
        ttl: u8,
        client: (NetId, [u8; 6], u16),
        svc: u16,
        target: u16,
    ) -> Step {
        let cfg = io.cfg;
        let st = &*cfg.services;
        let (client_net, client_mac, client_port) = client;
        let owner = self.client_owner(f.src, f.sport);
        if owner != self.nat.worker {
            return self.hand_to(io, owner, b);
        }
        let key = Tuple {
            net: client_net,
            proto: f.proto,
            src: f.src,
            sport: f.sport,
            dst: f.dst,
            dport: f.dport,
        };
        let now = io.cx.now;
        let t = cfg.nat.timeouts;
        let drop = |lb: &Lb, b: Buf, why: SvcDrop| Err((b, lb.drops.index(why)));
        // Before anything is made for it: a packet that dies here takes no connection or port.
        if ttl <= 1 {
            return Err((b, self.drops.index(RouteDrop::TtlExpired)));
        }
        let hash = self.lb.conns.hash_orig(&key);
        let (i, new) = match self.lb.conns.find_orig(&key, hash, now) {
            Some(i) => (i, None),
            None => {
                if f.proto == proto::TCP
                    && (f.tcp_flags & tcp_flags::SYN == 0 || f.tcp_flags & tcp_flags::ACK != 0)
                {
                    return self.svc_reset::<T>(io, b, f, client);
                }
                let Some(s) = st.services.get(usize::from(svc)) else {
                    return drop(&self.lb, b, SvcDrop::NoBackend);
                };
                let Some(gw) = cfg.gateway(s.net) else {
                    return drop(&self.lb, b, SvcDrop::NoGateway);
                };
                let fh = maglev::flow_hash(f.proto, f.src, f.sport, f.dst, f.dport);
                let Some((mut slot, mut be)) = s.pick(fh) else {
                    return drop(&self.lb, b, SvcDrop::NoBackend);
                };
                // This worker's cache, else what any worker learned (a backend's ARP answer
                // lands on whichever worker's queue the kernel chose for it).
                let neigh = |lb: &Lb, ip: Ipv4Addr| {
                    st.endpoint(s.net, ip.to_bits())
                        .and_then(|e| lb.neigh.get(e).copied().flatten())
                        .or_else(|| cfg.inside.lookup(s.net, ip, now as u32))
                };
                // `--mode host`: a backend known to be behind a tunnel (on another host) is
                // passed over for the next slots' (a few, in table order: still the same
                // choice on every worker).
                if s.host_mode {
                    let remote = |lb: &Lb, ip| {
                        neigh(lb, ip)
                            .is_some_and(|(_, p)| cfg.port(p).is_some_and(|c| c.tunnel.is_some()))
                    };
                    let mut tries = 0;
                    while remote(&self.lb, be.ip) {
                        tries += 1;
                        let next = (slot + 1) % s.table.len().max(1);
                        let Some(b2) = s
                            .table
                            .get(next)
                            .and_then(|&i| s.backends.get(usize::from(i)))
                        else {
                            break;
                        };
                        (slot, be) = (next, b2);
                        if tries >= HOST_MODE_TRIES {
                            return drop(&self.lb, b, SvcDrop::NoBackend);
                        }
                    }
                }
                let be_ip = be.ip.to_bits();
                let Some((bmac, bport)) = neigh(&self.lb, be.ip) else {
                    // Asked for first at the next tick, before the round robin of the others.
                    if let Some(e) = st.endpoint(s.net, be.ip.to_bits()) {
                        self.lb.want(e);
                    }
                    return drop(&self.lb, b, SvcDrop::Unresolved);
                };
                // Client and backend on one subnet: the backend must answer through us. A
                // backend on another host (behind a tunnel) answers its own host's gateway
                // unless the client is translated to this host's ingress address.
                let remote = cfg.port(bport).is_some_and(|p| p.tunnel.is_some());
                let snat = client_net == s.net || remote;
                let snat_ip = if remote {
                    match s.ingress {
                        Some(ip) => ip.to_bits(),
                        None => return drop(&self.lb, b, SvcDrop::NoIngress),
                    }
                } else {
                    gw.ip.to_bits()
                };
                let mut reply = Tuple {
                    net: s.net,
                    proto: f.proto,
                    src: be_ip,
                    sport: target,
                    dst: f.src,
                    dport: f.sport,
                };
                if snat {
                    reply.dst = snat_ip;
                    let Some(p) = self.svc_port(&reply) else {
                        return drop(&self.lb, b, SvcDrop::PortsExhausted);
                    };
                    reply.dport = p;
                }
                let c = Conn {
                    orig: key,
                    reply,
                    svc,
                    client_mac,
                    client_port,
                    backend_mac: bmac,
                    backend_port: bport,
                    ..Conn::default()
                };
                let state = if f.proto == proto::TCP {
                    State::SynSent
                } else {
                    State::New
                };
                match self.lb.conns.insert(c, state, now, &t) {
                    Inserted::Ok(i, evicted) => {
                        self.lb.ev.inc(io.cx.stats, SvcEvent::Created);
                        if evicted {
                            self.lb.ev.inc(io.cx.stats, SvcEvent::Evicted);
                        }
                        (i, Some(slot))
                    }
                    Inserted::Full => return drop(&self.lb, b, SvcDrop::TableFull),
                }
            }
        };
        let state = self.lb.conns.track(i, Dir::Out, f.tcp_flags, now, &t);
        let c = *self.lb.conns.get(i);
        let Some((gw_net, gw)) = st
            .services
            .get(usize::from(c.svc))
            .and_then(|s| Some((s.net, *cfg.gateway(s.net)?)))
        else {
            return drop(&self.lb, b, SvcDrop::NoGateway);
        };
        let pool = &*self.pool;
        let data = pool.data_mut(&mut b);
        if let Err(why) = translate::rewrite(data, f, Side::Dst, c.reply.src, c.reply.sport) {
            return self.drop_nat(b, why);
        }
        if c.reply.dst != f.src {
            if let Err(why) = translate::rewrite(data, f, Side::Src, c.reply.dst, c.reply.dport) {
                return self.drop_nat(b, why);
            }
        }
        let _ = router::dec_ttl(data);
        let from = if c.reply.dst != gw.ip.to_bits() && st.ingress_of(gw_net) == Some(c.reply.dst) {
            super::ingress_mac(c.reply.dst)
        } else {
            gw.mac
        };
        let _ = router::set_macs(data, c.backend_mac, from);
        if T {
            let what = Detail::Nat {
                what: if new.is_some() {
                    "load balanced: Maglev picked the backend of a new connection"
                } else {
                    "load balanced: to the connection's backend"
                },
                from: (Ipv4Addr::from(f.dst), f.dport),
                to: (Ipv4Addr::from(c.reply.src), c.reply.sport),
                state: state.name(),
            };
            io.rec::<T>("l3-router", &b, what);
        }
        Ok(Some((b, out_to(cfg, c.backend_port))))
    }

    /// Answers a TCP segment of no connection with a reset to its sender, in place (RFC 9293
    /// section 3.10.7.1), so that the client of an ended connection learns at once; a reset
    /// is not answered (`service_tcp_not_syn`).
    fn svc_reset<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        mut b: Buf,
        f: &Flow,
        client: (NetId, [u8; 6], u16),
    ) -> Step {
        let pool = &*self.pool;
        let out = if client.0 == UPLINK {
            io.host
                .uplink()
                .map(|u| Next::to(crate::graph::Node::Tx as u16, u.port))
        } else {
            Some(out_to(io.cfg, client.2))
        };
        let (Some(out), Some(len)) = (out, rst_in_place(pool.data_mut(&mut b), f)) else {
            return Err((b, self.lb.drops.index(SvcDrop::NotSyn)));
        };
        pool.set_len(&mut b, len);
        pool.set_offload(&mut b, Default::default());
        self.lb.ev.inc(io.cx.stats, SvcEvent::ResetSent);
        io.rec::<T>(
            "l3-router",
            &b,
            Detail::Route("load balancer: a segment of no connection: reset sent back"),
        );
        Ok(Some((b, out)))
    }

    /// A backend's answer to a health check (to the gateway's probe port): a SYN-ACK passes
    /// (and is answered with a reset, so the backend forgets the half-open connection), a reset
    /// fails. Handed to worker 0, which keeps the checks. `Err(b)`: not an answer.
    fn svc_check_reply<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        mut b: Buf,
        net: NetId,
        port: u16,
    ) -> Result<Step, Buf> {
        let pool = &*self.pool;
        let Ok(f) = translate::parse(pool.data(&b), 14, Way::Out, None) else {
            return Err(b);
        };
        if f.dport != self.lb.probe_port || self.lb.probe_port == 0 {
            return Err(b);
        }
        if self.nat.worker != 0 {
            return Ok(self.hand_to(io, 0, b));
        }
        let Some(p) = self.lb.probes.get_mut(&(net, f.src, f.sport)) else {
            return Ok(Err((b, self.lb.drops.index(SvcDrop::NotSyn))));
        };
        let ack = pool
            .data(&b)
            .get(f.l4 + 8..f.l4 + 12)
            .and_then(|x| <[u8; 4]>::try_from(x).ok())
            .map_or(0, u32::from_be_bytes);
        let syn_ack = tcp_flags::SYN | tcp_flags::ACK;
        let passed = f.tcp_flags & syn_ack == syn_ack && ack == p.seq.wrapping_add(1);
        let failed = f.tcp_flags & tcp_flags::RST != 0;
        if p.waiting && (passed || failed) {
            p.waiting = false;
            if passed {
                p.fails = 0;
                self.lb.ev.inc(io.cx.stats, SvcEvent::CheckPassed);
            } else {
                p.fails = p.fails.saturating_add(1);
                self.lb.ev.inc(io.cx.stats, SvcEvent::CheckFailed);
            }
        }
        io.rec::<T>(
            "l3-router",
            &b,
            Detail::Route(if passed {
                "health check: the backend answered SYN-ACK (passed)"
            } else {
                "health check: the backend refused (failed)"
            }),
        );
        if passed {
            if let Some(len) = rst_in_place(pool.data_mut(&mut b), &f) {
                pool.set_len(&mut b, len);
                pool.set_offload(&mut b, Default::default());
                return Ok(Ok(Some((b, out_to(io.cfg, port)))));
            }
        }
        io.cx.cache.free(b);
        Ok(Ok(None))
    }

    /// A free gateway port for a source-translated connection with reply key `k` (its
    /// `dport` is what is chosen), in this worker's share of NAT's range.
    fn svc_port(&mut self, k: &Tuple) -> Option<u16> {
        let (lo, hi) = (
            u32::from(self.nat.cfg.port_lo),
            u32::from(self.nat.cfg.port_hi),
        );
        let (w, n) = (
            u32::from(self.nat.worker),
            u32::from(self.nat.workers.max(1)),
        );
        let first = lo + w;
        if first > hi {
            return None;
        }
        let count = (hi - first) / n + 1;
        for _ in 0..PORT_TRIES {
            // Below `count`, and the port at most `hi`, a u16.
            #[allow(clippy::cast_possible_truncation)]
            let p = (first + (self.lb.rng.next_u64() % u64::from(count)) as u32 * n) as u16;
            let mut t = *k;
            t.dport = p;
            if !self.lb.conns.reply_taken(&t) {
                return Some(p);
            }
        }
        None
    }

    /// A backend's reply on connection `i` (its MAC `mac`, from `port`): translated back to
    /// come from the service address, to the client.
    #[allow(clippy::too_many_arguments)]
    fn svc_reply<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        mut b: Buf,
        f: &Flow,
        h: &Hdr,
        i: u32,
        mac: [u8; 6],
        port: u16,
    ) -> Step {
        let cfg = io.cfg;
        let now = io.cx.now;
        let t = cfg.nat.timeouts;
        if h.ttl <= 1 {
            return Err((b, self.drops.index(RouteDrop::TtlExpired)));
        }
        let state = self.lb.conns.track(i, Dir::In, f.tcp_flags, now, &t);
        let c = self.lb.conns.get_mut(i);
        c.backend_mac = mac;
        c.backend_port = port;
        let c = *c;
        let pool = &*self.pool;
        let data = pool.data_mut(&mut b);
        if let Err(why) = translate::rewrite(data, f, Side::Src, c.orig.dst, c.orig.dport) {
            return self.drop_nat(b, why);
        }
        if c.reply.dst != c.orig.src {
            if let Err(why) = translate::rewrite(data, f, Side::Dst, c.orig.src, c.orig.sport) {
                return self.drop_nat(b, why);
            }
        }
        let _ = router::dec_ttl(data);
        if T {
            let what = Detail::Nat {
                what: "load balanced: a backend's reply, from the service address",
                from: (Ipv4Addr::from(c.reply.src), c.reply.sport),
                to: (Ipv4Addr::from(c.orig.dst), c.orig.dport),
                state: state.name(),
            };
            io.rec::<T>("l3-router", &b, what);
        }
        if c.orig.net == UPLINK {
            return self.send_up::<T>(io, frames, b);
        }
        let Some(gw) = cfg.gateway(c.orig.net).copied() else {
            return Err((b, self.drops.index(RouteDrop::Gone)));
        };
        let _ = router::set_macs(pool.data_mut(&mut b), c.client_mac, gw.mac);
        Ok(Some((b, out_to(cfg, c.client_port))))
    }

    /// The load balancer's timers: expiry, and ARP for unresolved backends.
    pub(crate) fn svc_tick(&mut self, io: &mut Io<'_, '_>, frames: &mut Frames) {
        let n = self.lb.conns.expire(io.cx.now, EXPIRE_BUDGET);
        if n > 0 {
            self.lb
                .ev
                .get(io.cx.stats, SvcEvent::Expired)
                .add(u64::from(n));
        }
        let now = io.cx.now;
        self.lb.retired.retain(|r| r.2 > now);
        if self.nat.worker == 0 && !self.lb.probes.is_empty() {
            self.lb.check(io, frames, now);
        }
        // The endpoints connections are waiting for first, then a round robin of the other
        // unresolved ones from where the last tick stopped: every backend gets asked for
        // however many never answer.
        // What other workers learned (the shared table) resolves endpoints here first.
        let table = self.lb.table.clone();
        for (e, &(net, ip)) in table.endpoints.iter().enumerate() {
            if self.lb.neigh.get(e).is_some_and(Option::is_none) {
                if let Some(found) = io.cfg.inside.lookup(net, Ipv4Addr::from(ip), now as u32) {
                    self.lb.neigh[e] = Some(found);
                }
            }
        }
        let mut sent = 0;
        let urgent = std::mem::replace(&mut self.lb.n_urgent, 0);
        for k in 0..urgent.min(URGENT) {
            let e = self.lb.urgent[k];
            if sent < ARP_PER_TICK && self.lb.due(e, now) {
                self.lb.asked[e] = now;
                self.lb.arp(io, frames, e);
                sent += 1;
            }
        }
        let n = self.lb.neigh.len();
        let start = self.lb.arp_cursor;
        for k in 0..n {
            if sent >= ARP_PER_TICK {
                self.lb.arp_cursor = (start + k) % n;
                return;
            }
            let e = (start + k) % n;
            if self.lb.due(e, now) {
                self.lb.asked[e] = now;
                self.lb.arp(io, frames, e);
                sent += 1;
            }
        }
        self.lb.arp_cursor = 0;
    }
}

impl Lb {
    /// Endpoint `e` is wanted by a connection (from the packet path: no allocation).
    #[inline]
    fn want(&mut self, e: usize) {
        if self.n_urgent < URGENT && !self.urgent[..self.n_urgent].contains(&e) {
            self.urgent[self.n_urgent] = e;
            self.n_urgent += 1;
        }
    }

    /// Whether endpoint `e` is unresolved and was not asked for this second.
    fn due(&self, e: usize, now: u64) -> bool {
        self.neigh.get(e).is_some_and(Option::is_none)
            && self.asked.get(e).is_some_and(|&a| a < now)
    }

    /// Sends the health checks that are due (worker 0, from the tick): a TCP SYN from the
    /// gateway's probe port to each checked backend port; one unanswered since the last counts
    /// as failed.
    fn check(&mut self, io: &mut Io<'_, '_>, frames: &mut Frames, now: u64) {
        let cfg = io.cfg;
        let sport = self.probe_port;
        for (&(net, ip, port), p) in self.probes.iter_mut() {
            if now < p.next {
                continue;
            }
            p.next = now.saturating_add(u64::from(p.interval.max(1)));
            if p.waiting {
                p.fails = p.fails.saturating_add(1);
                self.ev.inc(io.cx.stats, SvcEvent::CheckFailed);
            }
            p.waiting = true;
            let neigh = self
                .table
                .endpoint(net, ip)
                .and_then(|e| self.neigh.get(e).copied().flatten());
            let (Some((mac, out)), Some(gw)) = (neigh, cfg.gateway(net)) else {
                continue;
            };
            // Truncation intended: any 32 bits will do for a sequence number.
            #[allow(clippy::cast_possible_truncation)]
            let seq = self.rng.next_u64() as u32;
            p.seq = seq;
            let pool = io.cx.cache.pool().clone();
            let Some(mut b) = io.cx.cache.alloc() else {
                return;
            };
            let Some(len) = syn(
                pool.rx_space(&mut b),
                (gw.mac, mac),
                (gw.ip.to_bits(), sport),
                (ip, port),
                seq,
            ) else {
                io.cx.cache.free(b);
                return;
            };
            pool.set_len(&mut b, len);
            pool.set_port(&mut b, out);
            if let Err(b) = frames.emit(b, out_to(cfg, out)) {
                io.cx.cache.free(b);
                return;
            }
            self.ev.inc(io.cx.stats, SvcEvent::CheckSent);
        }
    }

    /// Sends an ARP request for endpoint `e` from its network's gateway, a copy to every port
    /// of the network (tunnels included: a backend may be on another host of an overlay).
    fn arp(&mut self, io: &mut Io<'_, '_>, frames: &mut Frames, e: usize) {
        let cfg = io.cfg;
        let Some(&(net, ip)) = self.table.endpoints.get(e) else {
            return;
        };
        let (Some(gw), Some(nc)) = (cfg.gateway(net), cfg.net(net)) else {
            return;
        };
        // From the ingress address when the network has one: a backend on another host then
        // answers across the overlay to this host (the gateway's MAC is every host's).
        let (smac, sip) = match self.table.ingress_of(net) {
            Some(i) => (super::ingress_mac(i), Ipv4Addr::from(i)),
            None => (gw.mac, gw.ip),
        };
        for &p in nc.ports.iter().take(64) {
            let pool = io.cx.cache.pool().clone();
            let Some(mut b) = io.cx.cache.alloc() else {
                return;
            };
            let Some(len) =
                crate::neigh::arp_request(pool.rx_space(&mut b), smac, sip, ip.into(), None)
            else {
                io.cx.cache.free(b);
                return;
            };
            pool.set_len(&mut b, len);
            pool.set_port(&mut b, p);
            if let Err(b) = frames.emit(b, out_to(cfg, p)) {
                io.cx.cache.free(b);
                return;
            }
        }
        self.ev.inc(io.cx.stats, SvcEvent::ArpSent);
    }
}

/// Writes a TCP SYN (no options, window 1024) into `buf`: `macs` (source, destination),
/// `from` and `to` as (address, port). Returns the frame's length.
pub fn syn(
    buf: &mut [u8],
    macs: ([u8; 6], [u8; 6]),
    from: (u32, u16),
    to: (u32, u16),
    seq: u32,
) -> Option<usize> {
    let out = buf.get_mut(..54)?;
    out[0..6].copy_from_slice(&macs.1);
    out[6..12].copy_from_slice(&macs.0);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    out[14..26].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, proto::TCP, 0, 0]);
    out[26..30].copy_from_slice(&from.0.to_be_bytes());
    out[30..34].copy_from_slice(&to.0.to_be_bytes());
    let c = checksum(&out[14..34]);
    out[24..26].copy_from_slice(&c.to_be_bytes());
    out[34..36].copy_from_slice(&from.1.to_be_bytes());
    out[36..38].copy_from_slice(&to.1.to_be_bytes());
    out[38..42].copy_from_slice(&seq.to_be_bytes());
    out[42..46].copy_from_slice(&[0; 4]);
    out[46..54].copy_from_slice(&[5 << 4, tcp_flags::SYN, 0x04, 0x00, 0, 0, 0, 0]);
    let ph = pseudo_header_v4(Ipv4Addr::from(from.0), Ipv4Addr::from(to.0), proto::TCP, 20);
    let c = !fold(sum16(&out[34..54], ph));
    out[50..52].copy_from_slice(&c.to_be_bytes());
    Some(54)
}

/// Turns the TCP segment `f` of `frame` into the reset its sender should get from a closed
/// port (RFC 9293 section 3.10.7.1): addresses, ports and MACs swapped; with the segment's ACK
/// `<SEQ=SEG.ACK><CTL=RST>`, else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`; no options, no
/// data, checksums computed whole. Returns the frame's new length; `None` for a reset (never
/// answered) or a frame too short.
pub fn rst_in_place(frame: &mut [u8], f: &Flow) -> Option<usize> {
    if f.proto != proto::TCP || f.tcp_flags & tcp_flags::RST != 0 {
        return None;
    }
    let be32 = |d: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
    };
    let seq = be32(frame, f.l4 + 4)?;
    let ack = be32(frame, f.l4 + 8)?;
    let doff = usize::from(*frame.get(f.l4 + 12)? >> 4) * 4;
    let data = f.end.checked_sub(f.l4 + doff)?;
    let (dst_mac, src_mac) = (mac_at(frame, 6), mac_at(frame, 0));
    let (seq, ack, flags) = if f.tcp_flags & tcp_flags::ACK != 0 {
        (ack, 0, tcp_flags::RST)
    } else {
        let len = data
            + usize::from(f.tcp_flags & tcp_flags::SYN != 0)
            + usize::from(f.tcp_flags & tcp_flags::FIN != 0);
        // Sequence numbers wrap: the length is added modulo 2^32.
        #[allow(clippy::cast_possible_truncation)]
        let a = seq.wrapping_add(len as u32);
        (0, a, tcp_flags::RST | tcp_flags::ACK)
    };
    let out = frame.get_mut(..54)?;
    out[0..6].copy_from_slice(&dst_mac);
    out[6..12].copy_from_slice(&src_mac);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = [0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, proto::TCP, 0, 0];
    out[14..26].copy_from_slice(&ip);
    out[26..30].copy_from_slice(&f.dst.to_be_bytes());
    out[30..34].copy_from_slice(&f.src.to_be_bytes());
    let c = checksum(&out[14..34]);
    out[24..26].copy_from_slice(&c.to_be_bytes());
    out[34..36].copy_from_slice(&f.dport.to_be_bytes());
    out[36..38].copy_from_slice(&f.sport.to_be_bytes());
    out[38..42].copy_from_slice(&seq.to_be_bytes());
    out[42..46].copy_from_slice(&ack.to_be_bytes());
    out[46..54].copy_from_slice(&[5 << 4, flags, 0, 0, 0, 0, 0, 0]);
    let ph = pseudo_header_v4(Ipv4Addr::from(f.dst), Ipv4Addr::from(f.src), proto::TCP, 20);
    let c = !fold(sum16(&out[34..54], ph));
    out[50..52].copy_from_slice(&c.to_be_bytes());
    Some(54)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};

    /// A TCP segment with `flags`, `seq`, `ack` and `data` payload bytes, from 192.0.2.1:40000
    /// to 10.1.0.254:80.
    fn segment(flags: u8, seq: u32, ack: u32, data: usize) -> Vec<u8> {
        let total = 20 + 20 + data;
        let mut f = vec![0u8; 14 + total];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[192, 0, 2, 1]);
        f[30..34].copy_from_slice(&[10, 1, 0, 254]);
        let c = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f[42..46].copy_from_slice(&ack.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        f
    }

    #[test]
    fn resets_answer_segments_of_no_connection_as_rfc_9293_says() {
        // With ACK: SEQ = SEG.ACK, RST only.
        let mut f = segment(tcp_flags::ACK | 0x08, 1000, 5000, 10);
        let fl = translate::parse(&f, 14, Way::In, None).unwrap();
        let n = rst_in_place(&mut f, &fl).unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr().octets(), [10, 1, 0, 254]);
        assert_eq!(ip.dst_addr().octets(), [192, 0, 2, 1]);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(
            &IpAddress::Ipv4(ip.src_addr()),
            &IpAddress::Ipv4(ip.dst_addr())
        ));
        assert!(tcp.rst() && !tcp.ack());
        assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 40000));
        assert_eq!(u32::from_be_bytes(f[38..42].try_into().unwrap()), 5000);
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2]);
        // Without ACK: ACK = SEG.SEQ + SEG.LEN (a FIN counts one).
        let mut f = segment(tcp_flags::FIN, 7, 0, 3);
        let fl = translate::parse(&f, 14, Way::In, None).unwrap();
        rst_in_place(&mut f, &fl).unwrap();
        assert_eq!(f[47], tcp_flags::RST | tcp_flags::ACK);
        assert_eq!(u32::from_be_bytes(f[42..46].try_into().unwrap()), 7 + 3 + 1);
        // A reset is never answered.
        let mut f = segment(tcp_flags::RST, 7, 0, 0);
        let fl = translate::parse(&f, 14, Way::In, None).unwrap();
        assert_eq!(rst_in_place(&mut f, &fl), None);
    }
}
