//! The output stage: where a frame leaves. A physical port's queue, or for a subinterface its
//! parent trunk with the tag pushed. Frames for tunnel ports go to `vxlan-encap` instead (the
//! bridge and the flood send them there); one that arrives here anyway is passed on to it.

use crate::config::Snapshot;
use crate::graph::{out_to, Env, GraphDrop, GraphEvent, Io, Stage, FLAG_FWD};
use crate::trace::Detail;
use crate::vlan;
use dataplane::burst::Burst;
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::named_counters;
use dataplane::port::PortId;
use dataplane::worker::Context;

named_counters! {
    /// Why the output stage drops a frame (a refused queue is `port_down`, the graph's).
    pub enum TxDrop {
        /// No headroom left to push a tag (never expected: buffers keep 256 bytes).
        NoHeadroom => "no_headroom",
        /// Longer than the output port's MTU + 14 (a frame from a port with a larger MTU; the
        /// Linux bridge drops these too). A TCP super-frame is judged by its segments.
        TxOversize => "tx_oversize",
    }
}

/// Whether this worker can send on `port` (for a subinterface: on its parent; for a tunnel: on
/// the uplink).
#[inline]
pub fn reachable(cx: &Context<'_>, cfg: &Snapshot, port: PortId) -> bool {
    let Some(pc) = cfg.port(port) else {
        return false;
    };
    if let Some((parent, _)) = pc.parent {
        return cx.ports.has(parent);
    }
    if pc.tunnel.is_some() {
        return cfg.uplink.is_some_and(|u| cx.ports.has(u.port));
    }
    cx.ports.has(port)
}

/// The output stage.
pub struct Output {
    /// The buffer pool (held, so that running clones no `Arc`: no shared atomic per burst).
    pool: std::sync::Arc<dataplane::pool::Pool>,
    drops: Counters<TxDrop>,
}

impl Stage for Output {
    const NAME: &'static str = "port-output";

    fn new(env: &mut Env<'_>) -> Output {
        Output {
            pool: env.pool.clone(),
            drops: env.layout.register(Self::NAME, CounterKind::Drop),
        }
    }

    #[inline]
    fn run<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        input: &mut Burst,
        _out: &mut Burst,
    ) {
        let pool = &*self.pool;
        let port_down = io.g.drop.index(GraphDrop::PortDown);
        // Forwarded unicast frames that left, counted once per burst.
        let mut fwd = 0u64;
        let uplink = io.cfg.uplink.map_or(PortId::MAX, |u| u.port);
        for (mut b, next) in input.drain_next() {
            let port = next.arg;
            let pc = io.cfg.port(port);
            if pc.is_some_and(|p| p.tunnel.is_some()) {
                if let Err(b) = frames.emit(b, out_to(io.cfg, port)) {
                    io.drop_buf::<T>(Self::NAME, b, port_down);
                }
                continue;
            }
            let flags = pool.flags(&b);
            // The uplink's frames were sized against its device MTU by encapsulation already.
            if let Some(p) = pc.filter(|_| uplink != port) {
                if !vlan::fits_mtu(pool, &b, p.mtu, vlan::ETH_HDR) {
                    io.drop_buf::<T>(Self::NAME, b, self.drops.index(TxDrop::TxOversize));
                    continue;
                }
            }
            let Some((parent, vid)) = pc.and_then(|p| p.parent) else {
                io.rec::<T>(Self::NAME, &b, Detail::Tx { port });
                if io.cx.ports.enqueue(io.cx.cache, io.cx.stats, port, b) {
                    fwd += u64::from(flags & FLAG_FWD != 0);
                } else {
                    io.count_drop(port_down, flags);
                }
                continue;
            };
            let len = pool.len(&b) as u64;
            let pcp = pool.pcp(&b);
            if !vlan::push(pool, &mut b, vid, pcp) {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(TxDrop::NoHeadroom));
                continue;
            }
            if T {
                io.rec::<T>(Self::NAME, &b, Detail::VlanPush { vid, parent });
                io.rec::<T>(Self::NAME, &b, Detail::Tx { port: parent });
            }
            if !io.cx.ports.enqueue(io.cx.cache, io.cx.stats, parent, b) {
                io.count_drop(port_down, flags);
                continue;
            }
            fwd += u64::from(flags & FLAG_FWD != 0);
            let c = io.cx.stats.port(port);
            c.tx_packets.inc();
            c.tx_bytes.add(len);
        }
        if fwd > 0 {
            io.g.ev.get(io.cx.stats, GraphEvent::Forwarded).add(fwd);
        }
    }
}
