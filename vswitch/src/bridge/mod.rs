//! The L2 bridge: MAC learning, forwarding, flooding within a network, aging.
//!
//! One stage over a burst, in two passes: the first validates each frame and prefetches the MAC
//! table slots of its source and destination, the second learns and decides, so that with a
//! large table the cache misses of 32 frames overlap instead of adding up.
//!
//! A frame never leaves its network: the table is keyed by (network, MAC) and a flood goes only
//! to the ports of the ingress port's network.

pub mod fdb;
pub mod flood;

use crate::config::{NetId, Snapshot};
use crate::graph::{out_to, Env, Io, Node, Stage, FLAG_FWD};
use crate::trace::Detail;
use dataplane::burst::{Burst, Next, BURST};
use dataplane::counters::WorkerStats;
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::named_counters;
use dataplane::pool::Pool;
use dataplane::port::{PortId, MAX_PORTS};
use fdb::{Evicted, Learn, Limits, MacTable, Probe};
use std::sync::Arc;

named_counters! {
    /// Why the bridge drops a frame.
    pub enum BridgeDrop {
        /// Shorter than an Ethernet header (14 bytes).
        EthTooShort => "eth_too_short",
        /// Source MAC is multicast, broadcast or all zeros.
        SrcMacInvalid => "src_mac_invalid",
        /// Arrived on a port that belongs to no network.
        NoNetwork => "no_network",
        /// Destination MAC is behind the port the frame came from.
        DstIsIngress => "dst_is_ingress",
        /// Unicast from one VTEP to a MAC behind another (split horizon: never relayed).
        TunnelToTunnel => "vxlan_split_horizon",
        /// Destination is an IEEE 802.1D link-local group address (01:80:c2:00:00:00-0f: STP,
        /// PAUSE, LACP, EAPOL, LLDP): a bridge consumes these and never forwards them (as the
        /// Linux bridge and Open vSwitch by default); the source is not learned either.
        LinkLocal => "link_local_dst",
    }
}

named_counters! {
    /// What the bridge did (not drops).
    pub enum BridgeEvent {
        /// Unknown-unicast frames among the flooded ones.
        UnknownUnicast => "unknown_unicast",
        /// MACs learned.
        MacLearned => "mac_learned",
        /// MACs that moved to another port (station moves).
        MacMoved => "mac_moved",
        /// MACs evicted because their port reached its limit.
        MacEvictedPortLimit => "mac_evicted_port_limit",
        /// MACs evicted because their network reached its limit.
        MacEvictedNetworkLimit => "mac_evicted_network_limit",
        /// MACs evicted because the table was full.
        MacEvictedTableFull => "mac_evicted_table_full",
        /// Source MACs not learned (limit 0 or table full with nothing to evict).
        MacLearnRefused => "mac_learn_refused",
        /// Frames whose source MAC is static on another port (forwarded, not learned).
        MacStaticConflict => "mac_static_conflict",
        /// Learned MACs removed by aging.
        MacAged => "mac_aged",
        /// MACs learned from another worker's sighting.
        MacSynced => "mac_synced",
        /// Sightings not passed to another worker because its inbox was full.
        MacSyncOverflow => "mac_sync_overflow",
    }
}

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
    drops: Counters<BridgeDrop>,
    ev: Counters<BridgeEvent>,
}

#[inline]
fn is_tunnel(cfg: &Snapshot, port: PortId) -> bool {
    cfg.port(port).is_some_and(|p| p.tunnel.is_some())
}

fn evicted_event(why: Evicted) -> BridgeEvent {
    match why {
        Evicted::PortLimit => BridgeEvent::MacEvictedPortLimit,
        Evicted::NetworkLimit => BridgeEvent::MacEvictedNetworkLimit,
        Evicted::TableFull => BridgeEvent::MacEvictedTableFull,
    }
}

fn learn_name(l: &Learn) -> &'static str {
    match l {
        Learn::Known => "known",
        Learn::Refreshed => "refreshed",
        Learn::Learned | Learn::LearnedEvicting(_) => "learned",
        Learn::Moved | Learn::MovedEvicting(_) => "moved",
        Learn::StaticConflict => "static elsewhere: not learned",
        Learn::Full => "refused: limit",
    }
}

/// Whether `mac` is one of the sixteen IEEE 802.1D reserved link-local group addresses.
#[inline]
pub fn is_link_local(mac: &[u8; 6]) -> bool {
    mac[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && mac[5] & 0xf0 == 0
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
    /// Shares learning with other workers.
    pub fn set_sync(&mut self, sync: LearnSync) {
        self.sync = Some(sync);
    }

    /// Posts a sighting to the other workers.
    pub fn post(&self, stats: &WorkerStats, ev: LearnEvent) {
        let Some(sync) = &self.sync else { return };
        for (i, q) in sync.inboxes.iter().enumerate() {
            if i != sync.me && q.push(ev).is_err() {
                self.ev.inc(stats, BridgeEvent::MacSyncOverflow);
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
                self.ev.inc(stats, BridgeEvent::MacSynced);
            }
        }
    }

    /// Whether learning is shared with other workers.
    pub fn has_sync(&self) -> bool {
        self.sync.is_some()
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
        // Sets, not scans: tens of thousands of static entries must not cost a square.
        let wanted_keys: std::collections::HashSet<(NetId, [u8; 6])> =
            wanted.iter().map(|w| (w.0, w.1)).collect();
        let had: std::collections::HashSet<&(NetId, [u8; 6], PortId)> =
            self.statics.iter().collect();
        for old in &self.statics {
            if !wanted_keys.contains(&(old.0, old.1)) {
                self.fdb.remove(old.0, &old.1);
            }
        }
        for w in &wanted {
            if !had.contains(w) {
                self.fdb.set_static(w.0, &w.1, w.2);
            }
        }
        drop(had);
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
        self.ev.get(stats, BridgeEvent::MacAged).add(u64::from(n));
        n
    }
}

impl Stage for Bridge {
    const NAME: &'static str = "l2-bridge";

    fn new(env: &mut Env<'_>) -> Bridge {
        Bridge {
            pool: env.pool.clone(),
            fdb: MacTable::new(env.fdb_capacity, MAX_PORTS, MAX_NETS),
            port_net: vec![None; MAX_PORTS].into_boxed_slice(),
            statics: Vec::new(),
            sync: None,
            drops: env.layout.register(Self::NAME, CounterKind::Drop),
            ev: env.layout.register(Self::NAME, CounterKind::Event),
        }
    }

    /// Learns and decides, in two passes: the first validates each frame and prefetches the
    /// MAC table slots of its source and destination, the second learns and decides.
    fn run<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        _frames: &mut Frames,
        input: &mut Burst,
        out: &mut Burst,
    ) {
        let cfg = io.cfg;
        let pool = &*self.pool;
        let mut probes = [(Probe::default(), Probe::default()); BURST];
        let mut last: (PortId, Option<NetId>) = (PortId::MAX, None);
        for (b, pr) in input.bufs().iter().zip(probes.iter_mut()) {
            let port = pool.port(b);
            if port != last.0 {
                last = (port, cfg.port(port).and_then(|p| p.net));
            }
            let Some(net_id) = last.1 else { continue };
            if let Some((dst, src)) = macs(pool.data(b)) {
                *pr = (self.fdb.probe(net_id, &dst), self.fdb.probe(net_id, &src));
                self.fdb.prefetch_slot(&pr.1);
                if dst[0] & 1 == 0 {
                    self.fdb.prefetch_slot(&pr.0);
                }
            }
        }

        let flood = Next::to(Node::Flood as u16, 0);
        // The ingress port's configuration, looked up once per run of frames from one port.
        let mut cur = (PortId::MAX, None);
        for ((mut b, _), (dst_probe, src_probe)) in input.drain_next().zip(probes.iter()) {
            let port = pool.port(&b);
            if port != cur.0 {
                let pc = cfg.port(port);
                let net = pc.and_then(|p| p.net).and_then(|n| Some((n, cfg.net(n)?)));
                cur = (port, pc.zip(net));
            }
            let Some((pconf, (net_id, net))) = cur.1 else {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(BridgeDrop::NoNetwork));
                continue;
            };
            let Some((dst, src)) = macs(pool.data(&b)) else {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(BridgeDrop::EthTooShort));
                continue;
            };
            if src[0] & 1 != 0 || src == [0; 6] {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(BridgeDrop::SrcMacInvalid));
                continue;
            }
            if dst[0] == 0x01 && is_link_local(&dst) {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(BridgeDrop::LinkLocal));
                continue;
            }
            let limits = Limits {
                port: pconf.mac_limit,
                network: net.mac_limit,
                network_ports: &net.ports,
            };
            let learned = if pconf.learn {
                self.fdb.learn_probe(src_probe, port, io.cx.now, &limits)
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
                    io.cx.stats,
                    LearnEvent::Mac {
                        net: net_id,
                        port,
                        mac: src,
                    },
                );
            }
            let stats = io.cx.stats;
            match learned {
                Learn::Known | Learn::Refreshed => {}
                Learn::Learned => self.ev.inc(stats, BridgeEvent::MacLearned),
                Learn::LearnedEvicting(why) => {
                    self.ev.inc(stats, BridgeEvent::MacLearned);
                    self.ev.inc(stats, evicted_event(why));
                }
                Learn::Moved => self.ev.inc(stats, BridgeEvent::MacMoved),
                Learn::MovedEvicting(why) => {
                    self.ev.inc(stats, BridgeEvent::MacMoved);
                    self.ev.inc(stats, evicted_event(why));
                }
                Learn::StaticConflict => self.ev.inc(stats, BridgeEvent::MacStaticConflict),
                Learn::Full => self.ev.inc(stats, BridgeEvent::MacLearnRefused),
            }
            if T && pconf.learn {
                let result = learn_name(&learned);
                io.rec::<T>(
                    Self::NAME,
                    &b,
                    Detail::Learn {
                        mac: src,
                        port,
                        result,
                    },
                );
            }
            if dst[0] & 1 != 0 {
                io.rec::<T>(
                    Self::NAME,
                    &b,
                    Detail::Lookup {
                        mac: dst,
                        port: None,
                    },
                );
                // Cannot fail: the output holds no more than the input did.
                let _ = out.push_next(b, flood);
                continue;
            }
            let found = self.fdb.lookup_probe(dst_probe);
            io.rec::<T>(
                Self::NAME,
                &b,
                Detail::Lookup {
                    mac: dst,
                    port: found,
                },
            );
            match found {
                Some(o) if o == port => {
                    io.drop_buf::<T>(Self::NAME, b, self.drops.index(BridgeDrop::DstIsIngress))
                }
                Some(o) if pconf.tunnel.is_some() && is_tunnel(cfg, o) => {
                    let i = self.drops.index(BridgeDrop::TunnelToTunnel);
                    io.drop_buf::<T>(Self::NAME, b, i)
                }
                Some(o) => {
                    let f = pool.flags(&b);
                    pool.set_flags(&mut b, f | FLAG_FWD);
                    let _ = out.push_next(b, out_to(cfg, o));
                }
                None => {
                    self.ev.inc(stats, BridgeEvent::UnknownUnicast);
                    let _ = out.push_next(b, flood);
                }
            }
        }
    }

    fn configure(&mut self, io: &mut Io<'_, '_>) {
        Bridge::configure(self, io.cfg);
    }

    fn tick(&mut self, io: &mut Io<'_, '_>, _frames: &mut Frames) {
        Bridge::tick(self, io.cx.stats, io.cfg, io.cx.now);
    }
}
