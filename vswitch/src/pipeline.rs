//! The switch pipeline a worker runs: the stages of `vswitch` composed behind
//! `dataplane::worker::Pipeline`.

use crate::bridge::fdb::DumpEntry;
use crate::bridge::Bridge;
use crate::config::{NetId, Snapshot};
use crate::counters::{drop_index, COUNTERS};
use crate::vlan;
use crossbeam::channel::Sender;
use dataplane::burst::Burst;
use dataplane::pool::Pool;
use dataplane::port::PortId;
use dataplane::worker::{Context, Pipeline};
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
    pool: Arc<Pool>,
    /// Frames of one burst that enter the bridge on the same (logical) port.
    group: Burst,
}

impl Switch {
    /// A pipeline whose MAC table holds `fdb_capacity` entries.
    pub fn new(pool: Arc<Pool>, fdb_capacity: u32) -> Switch {
        Switch {
            bridge: Bridge::new(pool.clone(), fdb_capacity),
            pool,
            group: Burst::new(),
        }
    }
}

impl Pipeline for Switch {
    type Config = Snapshot;
    type Request = Request;
    const COUNTERS: usize = COUNTERS;

    #[inline]
    fn rx(&mut self, cx: &mut Context<'_>, cfg: &Snapshot, port: PortId, burst: &mut Burst) {
        let Some(pc) = cfg.port(port) else {
            // Unconfigured: the bridge drops the burst by name.
            self.bridge.rx(cx, cfg, port, burst);
            return;
        };
        // Split the burst into runs that enter the bridge on the same logical port (a trunk's
        // frames mostly share one VLAN, so this is usually one run).
        let mut current = port;
        for mut b in burst.drain() {
            match vlan::ingress(&self.pool, port, pc, &mut b) {
                Ok(to) => {
                    if to != current && !self.group.is_empty() {
                        self.bridge.rx(cx, cfg, current, &mut self.group);
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
        if !self.group.is_empty() {
            self.bridge.rx(cx, cfg, current, &mut self.group);
        }
    }

    fn configure(&mut self, _cx: &mut Context<'_>, cfg: &Snapshot) {
        self.bridge.configure(cfg);
    }

    fn tick(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) {
        self.bridge.tick(cx.stats, cfg, cx.now);
    }

    fn request(&mut self, cx: &mut Context<'_>, _cfg: &Snapshot, req: Request) {
        match req {
            Request::FdbDump { net, reply } => {
                let _ = reply.send((self.bridge.fdb.dump(net), cx.now));
            }
            Request::FdbRemove { net, mac } => {
                self.bridge.fdb.remove(net, &mac);
            }
        }
    }
}
