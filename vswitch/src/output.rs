//! Where a frame leaves: a physical port's queue, or a subinterface's parent trunk with the tag
//! pushed. Stages send through here so that they never need to know which kind a port is.

use crate::config::Snapshot;
use crate::counters::DropReason;
use crate::vlan;
use dataplane::pool::{Buf, Pool};
use dataplane::port::PortId;
use dataplane::worker::Context;

/// Whether this worker can send on `port` (for a subinterface: on its parent).
#[inline]
pub fn reachable(cx: &Context<'_>, cfg: &Snapshot, port: PortId) -> bool {
    match cfg.port(port).and_then(|p| p.parent) {
        Some((parent, _)) => cx.ports.has(parent),
        None => cx.ports.has(port),
    }
}

/// Sends `b` out of `port`. On failure `b` is freed and the reason returned for the caller to
/// count (or not: a flood copy that fails is not a dropped frame).
#[inline]
pub fn send(
    cx: &mut Context<'_>,
    cfg: &Snapshot,
    pool: &Pool,
    port: PortId,
    mut b: Buf,
) -> Result<(), DropReason> {
    let Some((parent, vid)) = cfg.port(port).and_then(|p| p.parent) else {
        return if cx.ports.enqueue(cx.cache, cx.stats, port, b) {
            Ok(())
        } else {
            Err(DropReason::PortDown)
        };
    };
    let len = pool.len(&b) as u64;
    let pcp = pool.pcp(&b);
    if !vlan::push(pool, &mut b, vid, pcp) {
        cx.cache.free(b);
        return Err(DropReason::NoHeadroom);
    }
    if !cx.ports.enqueue(cx.cache, cx.stats, parent, b) {
        return Err(DropReason::PortDown);
    }
    let c = cx.stats.port(port);
    c.tx_packets.inc();
    c.tx_bytes.add(len);
    Ok(())
}
