//! The switch's stage graph: which stages exist, in which order they run, and what every stage
//! may touch while it runs.
//!
//! ```text
//!   port rx ──► vlan-input ──┐                      ┌──► vxlan-encap ──(esp-seal)──┐
//!                            ├──► l2-bridge ──┬─────┤                              ├──► port-output ──► port tx
//!   uplink rx ► underlay-in ─┘                └► l2-flood ─────────────────────────┘
//!        (ESP open, VXLAN decap, ARP)    (copies to every port: to port-output or vxlan-encap)
//! ```
//!
//! A stage is a struct that implements [`Stage`]: `run` takes a burst, decides for each buffer
//! its next node ([`Node`], with an argument such as the output port) and pushes it into its
//! output with [`Burst::push_next`], or drops it under one of its own named counters. Stages
//! never call each other and never see one another's state: the bridge says "to port 3" or "to
//! tunnel 7" and knows nothing of VXLAN. The dispatcher (`dataplane::graph::dispatch`) moves
//! the output on, the whole burst at once when every buffer agrees. Services that several
//! stages use sit beside the graph in [`Io`]: the underlay host ([`crate::host::Host`]: ARP for
//! the uplink address, next-hop resolution with held frames), the trace recorder, the
//! neighbour sightings other workers get.
//!
//! Adding a stage:
//! 1. Write it in a file of its own (`esp/seal.rs`, `nat/stage.rs`, ...): a struct, a
//!    `named_counters!` enum of its drops (and one of its events), registered in `Stage::new`
//!    with `env.layout.register`, and `Stage::run` (instantiated with and without tracing:
//!    record with `io.trace` only under `if T`).
//! 2. Add one line to the [`stages!`] list below, at the rank it runs in (edges should point
//!    to later lines; an edge back is a re-entry, bounded by [`MAX_PASSES`]).
//! 3. Point some existing decision at it: a new `Node` variant is what other stages emit.
//!
//! Re-entry: decapsulated frames enter the bridge after the underlay input, which is forward.
//! Any edge backwards (a router sending into the bridge) is handled in a further sweep; after
//! [`MAX_PASSES`] sweeps what is left is dropped as `graph_recirculation_limit`.

use crate::config::Snapshot;
use crate::host::Host;
use crate::trace::{Detail, Tracer};
use dataplane::burst::{Burst, Next};
use dataplane::graph::{CounterKind, CounterLayout, Counters, DropCause, Frames, Nodes};
use dataplane::named_counters;
use dataplane::pool::{Buf, Pool};
use dataplane::port::PortId;
use dataplane::worker::Context;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Most sweeps over the graph per dispatch (OVS's recirculation bound).
pub const MAX_PASSES: u32 = 4;

/// Buffer flag: a unicast frame the bridge forwarded; `forwarded` counts it when it leaves (or
/// waits for its next hop), once.
pub const FLAG_FWD: u8 = 1 << 1;
/// Buffer flag: a flood copy (or a flood's original); a drop on its way out also counts as
/// `flood_copy_failed`.
pub const FLAG_COPY: u8 = 1 << 2;

named_counters! {
    /// What the graph itself counts: the fate of bridged frames, and its own limits.
    pub enum GraphEvent {
        /// Unicast frames sent to the one port their destination MAC is behind.
        Forwarded => "forwarded",
        /// Flood copies (or the original) that failed on their way out; each is also counted
        /// under its drop reason (e.g. `vxlan_too_big`).
        FloodCopyFailed => "flood_copy_failed",
    }
}

named_counters! {
    /// Drops of the graph itself.
    pub enum GraphDrop {
        /// Output port has no queue on this worker (being added or removed), or a tunnel port
        /// without an uplink.
        PortDown => "port_down",
        /// Still going round after the most sweeps a dispatch allows (a re-entry loop).
        Recirculation => "graph_recirculation_limit",
        /// No free burst to carry a buffer on (a flood fan-out beyond the graph's bursts).
        NoFrame => "graph_no_frame",
    }
}

/// What stages get when they are built.
pub struct Env<'a> {
    /// The buffer pool.
    pub pool: &'a Arc<Pool>,
    /// Where stages register their counters.
    pub layout: &'a mut CounterLayout,
    /// MAC table entries (the bridge's size).
    pub fdb_capacity: u32,
}

/// What every stage may touch during one dispatch.
pub struct Io<'a, 'c> {
    /// The worker: buffers, output queues, counters, clock.
    pub cx: &'a mut Context<'c>,
    /// The configuration this burst is forwarded against.
    pub cfg: &'a Snapshot,
    /// The underlay host.
    pub host: &'a mut Host,
    /// The trace recorder.
    pub trace: &'a mut Tracer,
    /// Underlay neighbours learned during this dispatch, for the other workers.
    pub seen: &'a mut Vec<(Ipv4Addr, [u8; 6])>,
    /// The graph's own counters.
    pub g: GraphCounters,
}

/// Handles on the graph's own counters.
#[derive(Clone, Copy)]
pub struct GraphCounters {
    /// Events.
    pub ev: Counters<GraphEvent>,
    /// Drops.
    pub drop: Counters<GraphDrop>,
}

impl GraphCounters {
    /// Registers the graph's counters.
    pub fn register(layout: &mut CounterLayout) -> GraphCounters {
        GraphCounters {
            ev: layout.register("graph", CounterKind::Event),
            drop: layout.register("graph", CounterKind::Drop),
        }
    }
}

impl Io<'_, '_> {
    /// Records `what` for `b` at `node` when tracing and `b` is traced.
    #[inline]
    pub fn rec<const T: bool>(&mut self, stage: &'static str, b: &Buf, what: Detail) {
        if T && self.cx.cache.pool().traced(b) {
            let id = self.cx.cache.pool().word(b, crate::trace::TRACE_WORD);
            self.trace.record(id, self.cx.worker, stage, what);
        }
    }

    /// A buffer with `flags` left the switch (or waits for its next hop): counts `forwarded`
    /// for a forwarded unicast frame.
    #[inline]
    pub fn sent(&mut self, flags: u8) {
        if flags & FLAG_FWD != 0 {
            self.g.ev.inc(self.cx.stats, GraphEvent::Forwarded);
        }
    }

    /// Counts a drop whose buffer is already gone (a port refused it): under `counter`, and
    /// as a failed flood copy when `flags` say it was one.
    #[inline]
    pub fn count_drop(&mut self, counter: usize, flags: u8) {
        self.cx.stats.pipeline.at(counter).inc();
        if flags & FLAG_COPY != 0 {
            self.g.ev.inc(self.cx.stats, GraphEvent::FloodCopyFailed);
        }
    }

    /// Frees `b` and counts it under `counter` (see [`Io::count_drop`]); records the drop when
    /// traced.
    #[inline]
    pub fn drop_buf<const T: bool>(&mut self, stage: &'static str, b: Buf, counter: usize) {
        self.rec::<T>(stage, &b, Detail::Drop(counter as u16));
        let flags = self.cx.cache.pool().flags(&b);
        self.cx.cache.free(b);
        self.count_drop(counter, flags);
    }
}

/// Where a frame for `port` goes: the encapsulation stage for a tunnel, else the output stage.
#[inline]
pub fn out_to(cfg: &Snapshot, port: PortId) -> Next {
    if cfg.port(port).is_some_and(|p| p.tunnel.is_some()) {
        Next::to(Node::Encap as u16, port)
    } else {
        Next::to(Node::Tx as u16, port)
    }
}

/// A stage of the graph.
pub trait Stage: Sized {
    /// The stage's name, as traces show it.
    const NAME: &'static str;
    /// Builds the stage's state for one worker, registering its counters.
    fn new(env: &mut Env<'_>) -> Self;
    /// Processes `input` (emptying it) into `out` and, for buffers beyond its input, `frames`.
    fn run<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        input: &mut Burst,
        out: &mut Burst,
    );
    /// A new configuration was published (`io.cfg`).
    fn configure(&mut self, _io: &mut Io<'_, '_>) {}
    /// About once a second: timers. May emit frames (they are dispatched after).
    fn tick(&mut self, _io: &mut Io<'_, '_>, _frames: &mut Frames) {}
}

/// Declares the graph: one line per stage, `field => Variant: Type`, in rank order.
macro_rules! stages {
    ($($(#[doc = $d:literal])* $field:ident => $node:ident : $ty:ty,)*) => {
        /// The graph's nodes, in rank order (the order the dispatcher visits them).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u16)]
        pub enum Node { $($(#[doc = $d])* $node,)* }

        impl Node {
            /// Every node, in rank order.
            pub const ALL: &'static [Node] = &[$(Node::$node,)*];
            /// Number of nodes.
            pub const COUNT: usize = Self::ALL.len();
            /// The node's stage name.
            pub fn name(self) -> &'static str {
                match self { $(Node::$node => <$ty as Stage>::NAME,)* }
            }
            /// The node with index `i`.
            pub fn from_index(i: u16) -> Option<Node> {
                Self::ALL.get(i as usize).copied()
            }
        }

        /// Every stage's state on one worker.
        pub struct Stages { $($(#[doc = $d])* pub $field: $ty,)* }

        impl Stages {
            /// Builds every stage, in rank order (which is also the counter layout's order).
            pub fn new(env: &mut Env<'_>) -> Stages {
                Stages { $($field: <$ty as Stage>::new(env),)* }
            }
            /// Hands a new configuration to every stage.
            pub fn configure(&mut self, io: &mut Io<'_, '_>) {
                $(Stage::configure(&mut self.$field, io);)*
            }
            /// Runs every stage's timers.
            pub fn tick(&mut self, io: &mut Io<'_, '_>, frames: &mut Frames) {
                $(Stage::tick(&mut self.$field, io, frames);)*
            }
        }

        impl<'a, 'c> Nodes<Io<'a, 'c>> for Stages {
            #[inline(always)]
            fn run<const T: bool>(
                &mut self,
                node: u16,
                io: &mut Io<'a, 'c>,
                frames: &mut Frames,
                input: &mut Burst,
                out: &mut Burst,
            ) {
                $(if node == Node::$node as u16 {
                    return Stage::run::<T>(&mut self.$field, io, frames, input, out);
                })*
            }

            #[inline]
            fn drop<const T: bool>(&mut self, io: &mut Io<'a, 'c>, b: Buf, why: DropCause) {
                let counter = match why {
                    DropCause::Counter(c) => usize::from(c),
                    DropCause::Recirculation => io.g.drop.index(GraphDrop::Recirculation),
                    DropCause::NoFrame => io.g.drop.index(GraphDrop::NoFrame),
                };
                io.drop_buf::<T>("drop", b, counter);
            }
        }
    };
}

stages! {
    /// 802.1Q classification of frames from ports other than the uplink.
    vlan_in => VlanIn: crate::vlan::VlanIn,
    /// The uplink's input: VXLAN decapsulation, ARP for the underlay host.
    underlay_in => UnderlayIn: crate::vxlan::stage::UnderlayIn,
    /// The gateway: ARP and echo for its address, routing out (source NAT) and back.
    router => Router: crate::nat::stage::Router,
    /// MAC learning and forwarding decisions.
    bridge => Bridge: crate::bridge::Bridge,
    /// Flooding: copies to every other port of the network.
    flood => Flood: crate::bridge::flood::Flood,
    /// VXLAN encapsulation towards a tunnel's next hop.
    encap => Encap: crate::vxlan::stage::Encap,
    /// ESP sealing of encapsulated frames of encrypted networks.
    seal => EspSeal: crate::esp::seal::Seal,
    /// Transmission: VLAN tag push for a subinterface, then the port's queue.
    tx => Tx: crate::output::Output,
}
