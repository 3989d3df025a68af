//! The switch pipeline a worker runs: the stage graph of [`crate::graph`] behind
//! `dataplane::worker::Pipeline`, with the services beside it (the underlay host, learning
//! shared between workers, the trace recorder).

use crate::bridge::fdb::DumpEntry;
use crate::bridge::LearnEvent;
use crate::config::{NetId, Snapshot};
use crate::counters::Gauge;
use crate::graph::{Env, GraphCounters, GraphDrop, Io, Node, Stages, MAX_PASSES};
use crate::host::Host;
use crate::trace::{TraceCtl, Tracer};
use crossbeam::channel::Sender;
use dataplane::burst::Burst;
use dataplane::graph::{default_bursts, dispatch, CounterLayout, Frames};
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
        /// Only entries after this (network, MAC).
        after: Option<(NetId, [u8; 6])>,
        /// At most this many, the first in (network, MAC) order.
        limit: usize,
        /// Where the answer goes: the entries and the worker's `now`.
        reply: Sender<(Vec<DumpEntry>, u64)>,
    },
    /// The underlay neighbours this worker resolved.
    Neighbours {
        /// Where the answer goes.
        reply: Sender<Vec<(Ipv4Addr, [u8; 6])>>,
    },
    /// NAT sessions (of one network, or all), at most `limit`.
    NatSessions {
        /// Only this network.
        net: Option<NetId>,
        /// At most this many.
        limit: usize,
        /// Where the answer goes.
        reply: Sender<Vec<crate::nat::stage::SessionInfo>>,
    },
    /// How to wake every worker, for NAT's hand-off rings (index = worker id).
    NatPeers(Vec<crate::nat::handoff::Wake>),
    /// The health checks' verdicts (worker 0 runs them).
    ServiceHealth {
        /// Where the answer goes.
        reply: Sender<Vec<(crate::service::stage::CheckKey, bool)>>,
    },
    /// Live load-balanced connections per service and backend.
    ServiceConns {
        /// Where the answer goes.
        reply: Sender<Vec<crate::service::stage::ConnCount>>,
    },
    /// The NAT table's figures.
    NatInfo {
        /// Where the answer goes.
        reply: Sender<crate::nat::stage::TableInfo>,
    },
    /// Forget one MAC.
    FdbRemove {
        /// Network.
        net: NetId,
        /// MAC.
        mac: [u8; 6],
    },
}

/// The pipeline: the stages (reachable as fields through `Deref`, e.g. `switch.bridge`), and
/// the services they share.
pub struct Switch {
    stages: Stages,
    /// The underlay host (ARP, next hops with held frames). Named `overlay` as before the
    /// graph, when VXLAN was all there was of it.
    pub overlay: Host,
    pool: Arc<Pool>,
    frames: Frames,
    /// Frames handed over by other workers, between their ring and the graph (empty between
    /// uses).
    scratch: Burst,
    tracer: Tracer,
    g: GraphCounters,
    counters: usize,
    /// Underlay neighbours learned here, for the other workers (allocated once).
    seen: Vec<(Ipv4Addr, [u8; 6])>,
    /// Underlay neighbours other workers learned, between inbox and host (allocated once).
    neigh_sightings: Vec<(Ipv4Addr, [u8; 6])>,
}

impl std::ops::Deref for Switch {
    type Target = Stages;
    fn deref(&self) -> &Stages {
        &self.stages
    }
}

impl std::ops::DerefMut for Switch {
    fn deref_mut(&mut self) -> &mut Stages {
        &mut self.stages
    }
}

/// Builds the graph's counters, host and stages, in the one order that defines the layout.
fn build(pool: &Arc<Pool>, fdb_capacity: u32) -> (CounterLayout, GraphCounters, Host, Stages) {
    let mut layout = CounterLayout::new();
    let g = GraphCounters::register(&mut layout);
    let host = Host::new(pool.clone(), &mut layout);
    let stages = Stages::new(&mut Env {
        pool,
        layout: &mut layout,
        fdb_capacity,
    });
    (layout, g, host, stages)
}

/// The counter layout of every [`Switch`] (built once, on a scratch pool, for the control
/// plane's names).
pub fn counter_layout() -> CounterLayout {
    match Pool::new(64) {
        Ok(pool) => build(&pool, 64).0,
        Err(_) => CounterLayout::new(),
    }
}

/// What the stages of `$sw` may touch during one dispatch (a macro, so that the borrows of the
/// switch's fields stay disjoint from its stages').
macro_rules! io {
    ($sw:ident, $cx:expr, $cfg:expr) => {
        Io {
            cx: $cx,
            cfg: $cfg,
            host: &mut $sw.overlay,
            trace: &mut $sw.tracer,
            seen: &mut $sw.seen,
            g: $sw.g,
        }
    };
}

impl Switch {
    /// A pipeline whose MAC table holds `fdb_capacity` entries.
    pub fn new(pool: Arc<Pool>, fdb_capacity: u32) -> Switch {
        let (layout, g, host, stages) = build(&pool, fdb_capacity);
        Switch {
            stages,
            overlay: host,
            frames: Frames::new(Node::COUNT, default_bursts(Node::COUNT)),
            scratch: Burst::new(),
            tracer: Tracer::new(Arc::new(TraceCtl::default())),
            g,
            counters: layout.len(),
            seen: Vec::with_capacity(64),
            neigh_sightings: Vec::with_capacity(64),
            pool,
        }
    }

    /// Reports traces to `ctl` (the daemon shares one among its workers).
    pub fn set_trace(&mut self, ctl: Arc<TraceCtl>) {
        self.tracer = Tracer::new(ctl);
    }

    /// Applies what the other workers learned (neighbours release what waited for them).
    fn apply_inbox(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) {
        if !self.stages.bridge.has_sync() {
            return;
        }
        self.stages
            .bridge
            .apply_inbox(cx.stats, cfg, cx.now, &mut self.neigh_sightings);
        for (ip, mac) in self.neigh_sightings.drain(..) {
            // A sighting that disagrees with a MAC this worker confirmed starts its
            // reconfirmation here too (see `neigh::Learn::Disputed`); nothing else to do.
            let _ = self.overlay.learn(cx, &mut self.frames, ip, mac);
        }
    }

    /// Runs everything pending through the graph, then posts what was learned.
    fn run(&mut self, cx: &mut Context<'_>, cfg: &Snapshot, traced: bool) {
        if self.frames.busy() {
            let mut io = io!(self, cx, cfg);
            let (st, fr) = (&mut self.stages, &mut self.frames);
            if traced {
                dispatch::<_, _, true>(st, &mut io, fr, MAX_PASSES);
            } else {
                dispatch::<_, _, false>(st, &mut io, fr, MAX_PASSES);
            }
        }
        for (ip, mac) in self.seen.drain(..) {
            self.stages
                .bridge
                .post(cx.stats, LearnEvent::Neigh { ip, mac });
        }
    }
}

impl Switch {
    /// Runs the NAT return traffic other workers handed over through the router.
    #[cold]
    fn handed_over(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) -> usize {
        let Some(mut h) = self.stages.router.handoff.take() else {
            return 0;
        };
        let next = dataplane::burst::Next::to(Node::Router as u16, crate::nat::stage::FROM_UPLINK);
        let no_frame = self.g.drop.index(GraphDrop::NoFrame);
        let mut total = 0;
        // Bounded: at most a few bursts per loop iteration, the rest waits for the next.
        for _ in 0..4 {
            let n = h.take(&mut self.scratch);
            if n == 0 {
                break;
            }
            total += n;
            for b in self.scratch.drain() {
                if let Err(b) = self.frames.emit(b, next) {
                    dataplane::graph::free_counted(cx.cache, cx.stats, b, no_frame);
                }
            }
            self.stages.router.handoff = Some(h);
            self.run(cx, cfg, false);
            let Some(again) = self.stages.router.handoff.take() else {
                return total;
            };
            h = again;
        }
        self.stages.router.handoff = Some(h);
        total
    }
}

impl Pipeline for Switch {
    type Config = Snapshot;
    type Request = Request;

    fn counters(&self) -> usize {
        self.counters
    }

    #[inline]
    fn rx(&mut self, cx: &mut Context<'_>, cfg: &Snapshot, port: PortId, burst: &mut Burst) {
        self.apply_inbox(cx, cfg);
        let entry = if cfg.uplink.is_some_and(|u| u.port == port) {
            Node::UnderlayIn
        } else {
            Node::VlanIn
        };
        let traced = self.tracer.armed() && self.tracer.mark(&self.pool, burst, port, cx.worker);
        let no_frame = self.g.drop.index(GraphDrop::NoFrame);
        self.frames.enqueue(entry as u16, burst, |b, _| {
            dataplane::graph::free_counted(cx.cache, cx.stats, b, no_frame)
        });
        self.run(cx, cfg, traced || self.tracer.armed());
    }

    fn configure(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) {
        self.overlay.configure(cfg, cx.cache, cx.stats);
        let mut io = io!(self, cx, cfg);
        self.stages.configure(&mut io);
    }

    fn tick(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) {
        self.apply_inbox(cx, cfg);
        {
            let mut io = io!(self, cx, cfg);
            self.stages.tick(&mut io, &mut self.frames);
        }
        self.overlay.tick(cx, &mut self.frames);
        self.run(cx, cfg, false);
        let g = &cx.stats.gauges;
        g.at(Gauge::FdbEntries as usize)
            .set(u64::from(self.stages.bridge.fdb.len()));
        g.at(Gauge::NeighEntries as usize)
            .set(self.overlay.neigh_len() as u64);
    }

    fn poll(&mut self, cx: &mut Context<'_>, cfg: &Snapshot) -> usize {
        let Some(h) = self.stages.router.handoff.as_ref() else {
            return 0;
        };
        if !h.pending() {
            return 0;
        }
        self.handed_over(cx, cfg)
    }

    fn pending(&self) -> bool {
        self.stages
            .router
            .handoff
            .as_ref()
            .is_some_and(|h| h.pending())
    }

    fn request(&mut self, cx: &mut Context<'_>, _cfg: &Snapshot, req: Request) {
        match req {
            Request::FdbDump {
                net,
                after,
                limit,
                reply,
            } => {
                let page = self.stages.bridge.fdb.dump_page(net, after, limit);
                let _ = reply.send((page, cx.now));
            }
            Request::FdbRemove { net, mac } => {
                self.stages.bridge.fdb.remove(net, &mac);
            }
            Request::Neighbours { reply } => {
                let _ = reply.send(self.overlay.neighbours());
            }
            Request::NatSessions { net, limit, reply } => {
                let _ = reply.send(self.stages.router.sessions(net, limit, cx.now));
            }
            Request::ServiceHealth { reply } => {
                let _ = reply.send(self.stages.router.lb.health());
            }
            Request::ServiceConns { reply } => {
                let _ = reply.send(self.stages.router.lb.counts(cx.now));
            }
            Request::NatInfo { reply } => {
                let _ = reply.send(self.stages.router.info());
            }
            Request::NatPeers(wake) => {
                if let Some(h) = &mut self.stages.router.handoff {
                    h.set_wake(wake);
                }
            }
        }
    }
}
