//! The switch pipeline a worker runs: the stages of `vswitch` composed behind
//! `dataplane::worker::Pipeline`.

use crate::bridge::fdb::DumpEntry;
use crate::bridge::Bridge;
use crate::config::{NetId, Snapshot};
use crate::counters::COUNTERS;
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

/// The pipeline: today the L2 bridge.
pub struct Switch {
    /// The bridge stage.
    pub bridge: Bridge,
}

impl Switch {
    /// A pipeline whose MAC table holds `fdb_capacity` entries.
    pub fn new(pool: Arc<Pool>, fdb_capacity: u32) -> Switch {
        Switch {
            bridge: Bridge::new(pool, fdb_capacity),
        }
    }
}

impl Pipeline for Switch {
    type Config = Snapshot;
    type Request = Request;
    const COUNTERS: usize = COUNTERS;

    #[inline]
    fn rx(&mut self, cx: &mut Context<'_>, cfg: &Snapshot, port: PortId, burst: &mut Burst) {
        self.bridge.rx(cx, cfg, port, burst);
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
