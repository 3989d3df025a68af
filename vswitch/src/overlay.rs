//! The overlay stage: VXLAN tunnels over the uplink, and the switch's own presence on the
//! underlay (it answers ARP for the uplink address and resolves next hops itself).
//!
//! Each remote VTEP of an overlay network is a tunnel port: the bridge learns MACs behind it and
//! floods to it like any port (head-end replication). Sending to a tunnel port resolves the
//! underlay next hop (the VTEP, or the gateway), patches the tunnel's precomputed outer header
//! with the next hop's MAC when it changed, and encapsulates in the headroom. Frames that find
//! the next hop unresolved wait in the neighbour table (a few per next hop) while an ARP request
//! goes out; when the reply comes they are sent, and when resolution fails they are dropped and
//! counted (`neigh_failed`).
//!
//! On the uplink, VXLAN to our address from a known peer of a known VNI is decapsulated and
//! enters the bridge on that peer's tunnel port; ARP is answered or learned from; everything else
//! is dropped by name.

use crate::bridge::LearnEvent;
use crate::config::{Snapshot, UplinkConf};
use crate::counters::{event_index, DropIdx, DropReason, Event};
use crate::neigh::{self, ArpAction, NeighConfig, NeighDrop, NeighEvent, NeighTable, Resolution};
use crate::vxlan::{self, DecapDrop, Tunnel, TunnelParams};
use dataplane::counters::WorkerStats;
use dataplane::offload::VnetHdr;
use dataplane::pool::{Buf, Pool, PoolCache};
use dataplane::port::{PortId, MAX_PORTS};
use dataplane::worker::{Context, Ports};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Underlay neighbours per worker.
const NEIGH_CAPACITY: usize = 1024;

#[inline]
fn count(stats: &WorkerStats, idx: impl Into<DropIdx>) {
    stats.pipeline.at(idx.into().0).inc();
}

#[inline]
fn event(stats: &WorkerStats, e: Event) {
    stats.pipeline.at(event_index(e)).inc();
}

/// Counts a frame dropped while it waited for its next hop: it left the bridge as forwarded, so
/// like a frame a port refuses it counts on the port it was headed for, not as a pipeline drop.
fn queue_dropped(stats: &WorkerStats, uplink: Option<PortId>) {
    event(stats, Event::NeighQueueDropped);
    if let Some(p) = uplink {
        stats.port(p).tx_dropped.inc();
    }
}

/// What became of a frame received on the uplink.
pub enum UplinkRx {
    /// Decapsulated: it enters the bridge on this tunnel port.
    Inner(PortId, Buf),
    /// Consumed (answered, learned from, or dropped and counted).
    Done,
    /// A neighbour was learned: post it to the other workers.
    Learned(Ipv4Addr, [u8; 6]),
}

/// The overlay state of one worker.
pub struct Overlay {
    pool: Arc<Pool>,
    neigh: NeighTable<Buf>,
    tunnels: Vec<Option<Tunnel>>,
    uplink: Option<UplinkConf>,
    /// Segments of a TCP super-frame on their way into a tunnel (capacity for the most
    /// segments one super-frame is cut into, so pushing never allocates).
    pub(crate) segments: Vec<Buf>,
}

impl Overlay {
    /// Empty: no uplink, no tunnels. Allocates its tables once, here.
    pub fn new(pool: Arc<Pool>) -> Overlay {
        Overlay {
            pool,
            neigh: NeighTable::new(NEIGH_CAPACITY, NeighConfig::default()),
            tunnels: (0..MAX_PORTS).map(|_| None).collect(),
            uplink: None,
            segments: Vec::with_capacity(dataplane::offload::MAX_SEGMENTS),
        }
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

    /// Rebuilds the tunnels of a new configuration (keeping next-hop MACs already known).
    pub fn configure(&mut self, cfg: &Snapshot, cache: &mut PoolCache, stats: &WorkerStats) {
        // A tunnel port that went away or now leads elsewhere (ids are reused) must not send
        // what was queued for it: drop every waiting frame, counted. Rare; next hops resolve
        // again on the next frame.
        let moved = self.tunnels.iter().enumerate().any(|(id, slot)| {
            slot.as_ref().is_some_and(|t| {
                cfg.port(id as PortId)
                    .and_then(|p| p.tunnel)
                    .is_none_or(|c| c.vtep != t.params().remote_ip || c.vni != t.params().vni)
            })
        });
        if moved {
            let mut waiting = Vec::new();
            self.neigh.for_each(|e| {
                if e.queued > 0 {
                    waiting.push(e.ip);
                }
            });
            let uplink = self.uplink.map(|u| u.port);
            for ip in waiting {
                self.neigh.remove(ip, |b| {
                    queue_dropped(stats, uplink);
                    cache.free(b);
                });
            }
        }
        if self.uplink.map(|u| (u.ip, u.mac)) != cfg.uplink.map(|u| (u.ip, u.mac)) {
            // A new underlay address: what was resolved for the old one no longer applies.
            let ips: Vec<Ipv4Addr> = {
                let mut v = Vec::new();
                self.neigh.for_each(|e| v.push(e.ip));
                v
            };
            let uplink = self.uplink.map(|u| u.port);
            for ip in ips {
                self.neigh.remove(ip, |b| {
                    queue_dropped(stats, uplink);
                    cache.free(b);
                });
            }
        }
        self.uplink = cfg.uplink;
        for (id, slot) in self.tunnels.iter_mut().enumerate() {
            let want = match (cfg.uplink, cfg.port(id as PortId).and_then(|p| p.tunnel)) {
                (Some(up), Some(t)) => Some(TunnelParams {
                    local_mac: up.mac,
                    remote_mac: slot.as_ref().map_or([0; 6], |t| t.params().remote_mac),
                    local_ip: up.ip,
                    remote_ip: t.vtep,
                    vni: t.vni,
                    dst_port: up.vxlan_port,
                    ttl: vxlan::DEFAULT_TTL,
                    mtu: up.mtu,
                }),
                _ => None,
            };
            match want {
                Some(p) if slot.as_ref().map(|t| *t.params()) != Some(p) => {
                    *slot = Some(Tunnel::new(p))
                }
                Some(_) => {}
                None => *slot = None,
            }
        }
    }

    /// Whether `port` is a tunnel this worker can send on.
    #[inline]
    pub fn is_tunnel(&self, port: PortId) -> bool {
        matches!(self.tunnels.get(port as usize), Some(Some(_)))
    }

    /// Sends `b` through tunnel port `port`: encapsulated now, or queued until the next hop is
    /// resolved. On failure `b` is freed and the reason returned.
    pub fn send(&mut self, cx: &mut Context<'_>, port: PortId, mut b: Buf) -> Result<(), DropIdx> {
        let pool = &*self.pool;
        let (Some(up), Some(Some(tunnel))) = (self.uplink, self.tunnels.get_mut(port as usize))
        else {
            cx.cache.free(b);
            return Err(DropReason::PortDown.into());
        };
        let Some(hop) = up.next_hop(tunnel.params().remote_ip) else {
            cx.cache.free(b);
            return Err(DropReason::NoRoute.into());
        };
        match self.neigh.lookup(hop, cx.now) {
            Resolution::Known(mac) => {
                if tunnel.params().remote_mac != mac {
                    tunnel.set_remote_mac(mac);
                }
                let hash = vxlan::flow_hash(pool.data(&b));
                if let Err(e) = tunnel.encap(pool, &mut b, hash) {
                    cx.cache.free(b);
                    return Err(e.into());
                }
                event(cx.stats, Event::VxlanEncap);
                if cx.ports.enqueue(cx.cache, cx.stats, up.port, b) {
                    Ok(())
                } else {
                    Err(DropReason::PortDown.into())
                }
            }
            Resolution::Resolve { send_request } => {
                if send_request {
                    arp_request(cx, &up, hop, None);
                }
                // The buffer remembers its tunnel while it waits.
                pool.set_port(&mut b, port);
                match self.neigh.queue(hop, b) {
                    Ok(()) => {
                        event(cx.stats, Event::NeighQueued);
                        Ok(())
                    }
                    Err(b) => {
                        cx.cache.free(b);
                        Err(NeighDrop::QueueFull.into())
                    }
                }
            }
            Resolution::Failed => {
                cx.cache.free(b);
                Err(NeighDrop::Failed.into())
            }
            Resolution::Full => {
                cx.cache.free(b);
                Err(NeighDrop::TableFull.into())
            }
        }
    }

    /// Learns that underlay neighbour `ip` is at `mac` and sends what waited for it.
    pub fn learn_neighbour(&mut self, cx: &mut Context<'_>, ip: Ipv4Addr, mac: [u8; 6]) {
        let Some(up) = self.uplink else { return };
        let now = cx.now;
        let (pool, tunnels) = (&*self.pool, &mut self.tunnels);
        let Context {
            cache,
            ports,
            stats,
            ..
        } = cx;
        let _ = self.neigh.learn(ip, mac, now, |b| {
            send_released(pool, tunnels, cache, ports, stats, &up, mac, b)
        });
    }

    /// Handles a frame received on the uplink.
    pub fn uplink_rx(&mut self, cx: &mut Context<'_>, cfg: &Snapshot, mut b: Buf) -> UplinkRx {
        let Some(up) = self.uplink else {
            count(cx.stats, DecapDrop::NotVxlan);
            cx.cache.free(b);
            return UplinkRx::Done;
        };
        let pool = &*self.pool;
        let data = pool.data(&b);
        let to_us = data.get(0..6).is_some_and(|d| d == up.mac);
        if to_us {
            // From a TAP uplink with offloads, the local kernel may leave the outer UDP checksum
            // partial (NEEDS_CSUM) or vouch for it (DATA_VALID): nothing to verify then.
            let trusted = pool.offload(&b).flags
                & (dataplane::offload::VIRTIO_NET_HDR_F_NEEDS_CSUM
                    | dataplane::offload::VIRTIO_NET_HDR_F_DATA_VALID)
                != 0;
            match vxlan::classify_with(data, up.ip, up.vxlan_port, trusted) {
                Ok(d) => {
                    let Some(net) = cfg.net_of_vni(d.vni) else {
                        return self.drop(cx, b, DecapDrop::UnknownVni);
                    };
                    let Some(tunnel) = cfg.tunnel_port(net, d.src_ip) else {
                        return self.drop(cx, b, DecapDrop::UnknownVtep);
                    };
                    if !vxlan::decap(pool, &mut b, &d) {
                        return self.drop(cx, b, DecapDrop::TruncatedInner);
                    }
                    // The local kernel may leave the inner L4 checksum partial (its VXLAN device
                    // encapsulated a CHECKSUM_PARTIAL frame): that stays with the inner frame, to
                    // be passed on or completed. A checksum offset outside it was the outer's.
                    let o = pool.offload(&b);
                    if usize::from(o.csum_start) >= pool.len(&b) || o.gso_type != 0 {
                        pool.set_offload(&mut b, Default::default());
                    } else if !o.is_plain() {
                        // The header length the kernel gave was the outer frame's.
                        pool.set_offload(&mut b, VnetHdr { hdr_len: 0, ..o });
                    }
                    event(cx.stats, Event::VxlanDecap);
                    let c = cx.stats.port(tunnel);
                    c.rx_packets.inc();
                    c.rx_bytes.add(pool.len(&b) as u64);
                    return UplinkRx::Inner(tunnel, b);
                }
                Err(DecapDrop::NotVxlan) => {}
                Err(why) => return self.drop(cx, b, why),
            }
        }
        let is_arp = data.get(12..14) == Some(&[0x08, 0x06]);
        if !is_arp || !(to_us || data.first().is_some_and(|d| d & 1 == 1)) {
            return self.drop(cx, b, DecapDrop::NotVxlan);
        }
        match neigh::handle_arp(pool.data_mut(&mut b), up.mac, up.ip) {
            ArpAction::Reply { len, learn } => {
                pool.set_len(&mut b, len);
                event(cx.stats, Event::ArpReplied);
                if !cx.ports.enqueue(cx.cache, cx.stats, up.port, b) {
                    count(cx.stats, DropReason::PortDown);
                }
                if let Some((ip, mac)) = learn {
                    self.learn_neighbour(cx, ip, mac);
                    return UplinkRx::Learned(ip, mac);
                }
                UplinkRx::Done
            }
            ArpAction::Learned { ip, mac } => {
                event(cx.stats, Event::ArpLearned);
                cx.cache.free(b);
                self.learn_neighbour(cx, ip, mac);
                UplinkRx::Learned(ip, mac)
            }
            ArpAction::Announced { ip, mac } => {
                event(cx.stats, Event::ArpLearned);
                cx.cache.free(b);
                let now = cx.now;
                let (pool, tunnels) = (&*self.pool, &mut self.tunnels);
                let Context {
                    cache,
                    ports,
                    stats,
                    ..
                } = cx;
                let _ = self.neigh.update(ip, mac, now, |q| {
                    send_released(pool, tunnels, cache, ports, stats, &up, mac, q)
                });
                UplinkRx::Done
            }
            ArpAction::Ignore(why) => {
                count(cx.stats, why);
                cx.cache.free(b);
                UplinkRx::Done
            }
        }
    }

    fn drop(&self, cx: &mut Context<'_>, b: Buf, why: impl Into<DropIdx>) -> UplinkRx {
        count(cx.stats, why);
        cx.cache.free(b);
        UplinkRx::Done
    }

    /// Timers: retries, failures, reconfirmation of next hops.
    pub fn tick(&mut self, cx: &mut Context<'_>) {
        let Some(up) = self.uplink else { return };
        let Context {
            cache,
            ports,
            stats,
            now,
            ..
        } = cx;
        let now = *now;
        self.neigh.tick(now, |ev| match ev {
            NeighEvent::Request { ip, unicast } => {
                send_arp_request(cache, ports, stats, &up, ip, unicast);
            }
            NeighEvent::Dropped(b) => {
                queue_dropped(stats, Some(up.port));
                cache.free(b);
            }
            NeighEvent::Failed(_) | NeighEvent::Expired(_) => {}
        });
    }

    /// A neighbour sighting for the other workers.
    pub fn sighting(ip: Ipv4Addr, mac: [u8; 6]) -> LearnEvent {
        LearnEvent::Neigh { ip, mac }
    }
}

/// Encapsulates and sends a buffer that waited for its next hop.
#[allow(clippy::too_many_arguments)]
fn send_released(
    pool: &Pool,
    tunnels: &mut [Option<Tunnel>],
    cache: &mut PoolCache,
    ports: &mut Ports,
    stats: &WorkerStats,
    up: &UplinkConf,
    mac: [u8; 6],
    mut b: Buf,
) {
    let port = pool.port(&b);
    let Some(Some(t)) = tunnels.get_mut(port as usize) else {
        count(stats, DropReason::PortDown);
        cache.free(b);
        return;
    };
    if t.params().remote_mac != mac {
        t.set_remote_mac(mac);
    }
    let hash = vxlan::flow_hash(pool.data(&b));
    match t.encap(pool, &mut b, hash) {
        Ok(()) => {
            event(stats, Event::VxlanEncap);
            if !ports.enqueue(cache, stats, up.port, b) {
                count(stats, DropReason::PortDown);
            }
        }
        Err(e) => {
            count(stats, e);
            cache.free(b);
        }
    }
}

fn arp_request(cx: &mut Context<'_>, up: &UplinkConf, ip: Ipv4Addr, unicast: Option<[u8; 6]>) {
    send_arp_request(cx.cache, cx.ports, cx.stats, up, ip, unicast);
}

fn send_arp_request(
    cache: &mut PoolCache,
    ports: &mut Ports,
    stats: &WorkerStats,
    up: &UplinkConf,
    ip: Ipv4Addr,
    unicast: Option<[u8; 6]>,
) {
    let Some(mut b) = cache.alloc() else { return };
    let written = {
        let pool = cache.pool();
        let n = neigh::arp_request(pool.rx_space(&mut b), up.mac, up.ip, ip, unicast);
        if let Some(len) = n {
            pool.set_len(&mut b, len);
        }
        n
    };
    match written {
        Some(_) => {
            event(stats, Event::ArpRequests);
            if !ports.enqueue(cache, stats, up.port, b) {
                count(stats, DropReason::PortDown);
            }
        }
        None => cache.free(b),
    }
}
