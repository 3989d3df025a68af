//! The switch pipeline a worker runs: the stages of `vswitch` composed behind
//! `dataplane::worker::Pipeline`.

use crate::bridge::fdb::DumpEntry;
use crate::bridge::Bridge;
use crate::config::{NetId, Snapshot};
use crate::counters::{drop_index, Gauge, COUNTERS};
use crate::overlay::{Overlay, UplinkRx};
use crate::vlan;
use crossbeam::channel::Sender;
use dataplane::burst::Burst;
use dataplane::pool::Pool;
use dataplane::port::PortId;
use dataplane::worker::{Context, Pipeline};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Control requests a worker answers.
pub enum Request {
    /// Every MAC table entry (of one network, or all), with the worker's clock.
    FdbDump {
        /// Only this network.
        net: Option<NetId>,
        /// Where the answer goes: the entries and the worker's `now`.
        reply: Sender<(Vec<DumpEntry>, u64)>,
    },
    /// The underlay neighbours this worker resolved.
    Neighbours {
        /// Where the answer goes.
        reply: Sender<Vec<(Ipv4Addr, [u8; 6])>>,
    },
    /// Forget one MAC.
    FdbRemove {
        /// Network.
        net: NetId,
        /// MAC.
        mac: [u8; 6],
    },
}

/// The pipeline: VLAN classification, then the L2 bridge, then output (a tag pushed for a
/// subinterface).
pub struct Switch {
    /// The bridge stage.
    pub bridge: Bridge,
    /// The overlay stage (VXLAN tunnels, the switch's underlay address).
    pub overlay: Overlay,
    pool: Arc<Pool>,
    /// Frames of one burst that enter the bridge on the same (logical) port.
    group: Burst,
    /// Underlay neighbours other workers learned, between inbox and overlay (allocated once).
    neigh_sightings: Vec<(Ipv4Addr, [u8; 6])>,
}

impl Switch {
    /// A pipeline whose MAC table holds `fdb_capacity` entries.
    pub fn new(pool: Arc<Pool>, fdb_capacity: u32) -> Switch {
        Switch {
            bridge: Bridge::new(pool.clone(), fdb_capacity),
            overlay: Overlay::new(pool.clone()),
            pool,
            group: Burst::new(),
            neigh_sightings: Vec::with_capacity(64),
        }
    }

    /// Applies what the other workers learned.
    fn apply_inbox(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) {
        if !self.bridge.has_sync() {
            return;
        }
        self.bridge
            .apply_inbox(cx.stats, cfg, cx.now, &mut self.neigh_sightings);
        for (ip, mac) in self.neigh_sightings.drain(..) {
            self.overlay.learn_neighbour(cx, ip, mac);
        }
    }

    /// Hands the current group to the bridge.
    #[inline]
    fn flush_group(&mut self, cx: &mut Context<'_>, cfg: &Snapshot, port: PortId) {
        if !self.group.is_empty() {
            self.bridge
                .rx(cx, cfg, &mut self.overlay, port, &mut self.group);
        }
    }

    /// Frames from the underlay: VXLAN into the bridge on tunnel ports, ARP to the overlay.
    fn uplink_rx(&mut self, cx: &mut Context<'_>, cfg: &Snapshot, burst: &mut Burst) {
        let mut current = PortId::MAX;
        for b in burst.drain() {
            match self.overlay.uplink_rx(cx, cfg, b) {
                UplinkRx::Inner(to, b) => {
                    if to != current {
                        self.flush_group(cx, cfg, current);
                    }
                    current = to;
                    // Cannot fail: the group never holds more than the burst it came from.
                    let _ = self.group.push(b);
                }
                UplinkRx::Done => {}
                UplinkRx::Learned(ip, mac) => {
                    self.bridge.post(cx.stats, Overlay::sighting(ip, mac))
                }
            }
        }
        self.flush_group(cx, cfg, current);
    }
}

impl Pipeline for Switch {
    type Config = Snapshot;
    type Request = Request;
    const COUNTERS: usize = COUNTERS;

    #[inline]
    fn rx(&mut self, cx: &mut Context<'_>, cfg: &Snapshot, port: PortId, burst: &mut Burst) {
        self.apply_inbox(cx, cfg);
        if cfg.uplink.is_some_and(|u| u.port == port) {
            self.uplink_rx(cx, cfg, burst);
            return;
        }
        let Some(pc) = cfg.port(port) else {
            // Unconfigured: the bridge drops the burst by name.
            self.bridge.rx(cx, cfg, &mut self.overlay, port, burst);
            return;
        };
        // Split the burst into runs that enter the bridge on the same logical port (a trunk's
        // frames mostly share one VLAN, so this is usually one run).
        let mut current = port;
        for mut b in burst.drain() {
            match vlan::ingress(&self.pool, port, pc, &mut b) {
                Ok(to) => {
                    if to != current {
                        self.flush_group(cx, cfg, current);
                    }
                    current = to;
                    if to != port {
                        let c = cx.stats.port(to);
                        c.rx_packets.inc();
                        c.rx_bytes.add(self.pool.len(&b) as u64);
                    }
                    // Cannot fail: the group never holds more than the burst it came from.
                    let _ = self.group.push(b);
                }
                Err(why) => {
                    cx.stats.pipeline.at(drop_index(why)).inc();
                    cx.cache.free(b);
                }
            }
        }
        self.flush_group(cx, cfg, current);
    }

    fn configure(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) {
        self.bridge.configure(cfg);
        self.overlay.configure(cfg, cx.cache, cx.stats);
    }

    fn tick(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) {
        self.apply_inbox(cx, cfg);
        self.bridge.tick(cx.stats, cfg, cx.now);
        self.overlay.tick(cx);
        let g = &cx.stats.gauges;
        g.at(Gauge::FdbEntries as usize)
            .set(u64::from(self.bridge.fdb.len()));
        g.at(Gauge::NeighEntries as usize)
            .set(self.overlay.neigh_len() as u64);
    }

    fn request(&mut self, cx: &mut Context<'_>, _cfg: &Snapshot, req: Request) {
        match req {
            Request::FdbDump { net, reply } => {
                let _ = reply.send((self.bridge.fdb.dump(net), cx.now));
            }
            Request::FdbRemove { net, mac } => {
                self.bridge.fdb.remove(net, &mac);
            }
            Request::Neighbours { reply } => {
                let _ = reply.send(self.overlay.neighbours());
            }
        }
    }
}
