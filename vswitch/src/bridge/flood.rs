//! The flood stage: broadcast, multicast and unknown unicast go to every other port of the
//! ingress port's network (never beyond it), as copies for all but the last port, which gets
//! the original. Split horizon: what came from one VTEP is never replicated to the others
//! (every VTEP replicates its own traffic to all peers; relaying would duplicate, and loop).

use crate::graph::{out_to, Env, GraphDrop, Io, Stage, FLAG_COPY};
use crate::output::reachable;
use crate::trace::Detail;
use dataplane::burst::Burst;
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::named_counters;
use dataplane::pool::MAX_FRAME;
use dataplane::port::PortId;

/// Large buffers a flood never copies into (at most; an eighth of a small pool): they stay for
/// the TAP queues' next super-frames.
pub const FLOOD_LARGE_RESERVE: usize = 32;

named_counters! {
    /// Why the flood stage drops a frame.
    pub enum FloodDrop {
        /// Flooded in a network with no other port.
        NoDestination => "no_destination",
    }
}

named_counters! {
    /// What the flood stage did.
    pub enum FloodEvent {
        /// Frames flooded (broadcast, multicast, unknown unicast), once per frame.
        Flooded => "flooded",
        /// Extra copies made for flooding.
        FloodCopies => "flood_copies",
        /// Flood copies not made because the pool had no free buffer (the frame still went to
        /// the ports that got a copy).
        FloodCopyNoBuffers => "flood_copy_no_buffers",
    }
}

/// The flood stage (stateless but for its counters).
pub struct Flood {
    /// The buffer pool (held, so that running clones no `Arc`: no shared atomic per burst).
    pool: std::sync::Arc<dataplane::pool::Pool>,
    drops: Counters<FloodDrop>,
    ev: Counters<FloodEvent>,
}

impl Stage for Flood {
    const NAME: &'static str = "l2-flood";

    fn new(env: &mut Env<'_>) -> Flood {
        Flood {
            pool: env.pool.clone(),
            drops: env.layout.register(Self::NAME, CounterKind::Drop),
            ev: env.layout.register(Self::NAME, CounterKind::Event),
        }
    }

    fn run<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        input: &mut Burst,
        out: &mut Burst,
    ) {
        let pool = &*self.pool;
        let cfg = io.cfg;
        let no_frame = io.g.drop.index(GraphDrop::NoFrame);
        for (mut b, _) in input.drain_next() {
            let ingress = pool.port(&b);
            let ports: &[PortId] = cfg
                .port(ingress)
                .and_then(|p| p.net)
                .and_then(|n| cfg.net(n))
                .map_or(&[], |n| &n.ports);
            let from_tunnel = cfg.port(ingress).is_some_and(|p| p.tunnel.is_some());
            let eligible = |cx: &dataplane::worker::Context<'_>, p: PortId| {
                p != ingress
                    && !(from_tunnel && cfg.port(p).is_some_and(|c| c.tunnel.is_some()))
                    && reachable(cx, cfg, p)
            };
            let Some(last) = ports.iter().rposition(|&p| eligible(io.cx, p)) else {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(FloodDrop::NoDestination));
                continue;
            };
            self.ev.inc(io.cx.stats, FloodEvent::Flooded);
            // A super-frame's copy takes a large buffer: never the last ones, which the TAP
            // queues need to receive super-frames at all (a flood of them could drain the pool).
            let large = pool.len(&b) > MAX_FRAME;
            let reserve = (pool.large_capacity() as usize / 8).clamp(1, FLOOD_LARGE_RESERVE);
            let mut copies = 0u16;
            for &o in ports.get(..last).unwrap_or(&[]) {
                if !eligible(io.cx, o) {
                    continue;
                }
                if large && pool.large_available() <= reserve {
                    self.ev.inc(io.cx.stats, FloodEvent::FloodCopyNoBuffers);
                    continue;
                }
                match io.cx.cache.clone_buf(&b) {
                    Some(mut c) => {
                        self.ev.inc(io.cx.stats, FloodEvent::FloodCopies);
                        copies = copies.saturating_add(1);
                        let f = pool.flags(&c);
                        pool.set_flags(&mut c, f | FLAG_COPY);
                        if let Err(c) = frames.emit(c, out_to(cfg, o)) {
                            io.drop_buf::<T>(Self::NAME, c, no_frame);
                        }
                    }
                    None => self.ev.inc(io.cx.stats, FloodEvent::FloodCopyNoBuffers),
                }
            }
            io.rec::<T>(Self::NAME, &b, Detail::Flood { copies });
            let f = pool.flags(&b);
            pool.set_flags(&mut b, f | FLAG_COPY);
            let to = ports.get(last).copied().unwrap_or(PortId::MAX);
            // Cannot fail: the output holds no more than the input did.
            let _ = out.push_next(b, out_to(cfg, to));
        }
    }
}
