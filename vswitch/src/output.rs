//! Where a frame leaves: a physical port's queue, or a subinterface's parent trunk with the tag
//! pushed. Stages send through here so that they never need to know which kind a port is.

use crate::config::Snapshot;
use crate::counters::{DropIdx, DropReason};
use crate::overlay::Overlay;
use crate::vlan;
use dataplane::pool::{Buf, Pool};
use dataplane::port::PortId;
use dataplane::swoffload::{self, TxCaps};
use dataplane::worker::Context;

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

/// Sends a frame with offload work into a tunnel: finished in software first (the checksum
/// completed, a super-frame cut to its MSS), since once encapsulated its TCP header is hidden
/// from whatever could do it later. Fails only if nothing could be sent.
#[cold]
fn send_segments(
    cx: &mut Context<'_>,
    pool: &Pool,
    overlay: &mut Overlay,
    port: PortId,
    b: Buf,
) -> Result<(), DropIdx> {
    let mut segs = std::mem::take(&mut overlay.segments);
    // Pushing stays within the capacity: no super-frame is cut into more than MAX_SEGMENTS.
    let r = swoffload::resolve(cx.cache, b, TxCaps::Plain, |_, s| segs.push(s));
    // The frame counts as sent once one segment is; segments lost after that count on the
    // tunnel port (`tx_dropped`), as a queue refusing part of a burst would.
    let (mut sent, mut lost, mut first_err) = (false, 0u64, None);
    for s in segs.drain(..) {
        let len = pool.len(&s) as u64;
        match overlay.send(cx, port, s) {
            Ok(()) => {
                sent = true;
                let c = cx.stats.port(port);
                c.tx_packets.inc();
                c.tx_bytes.add(len);
            }
            Err(e) => {
                lost += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    overlay.segments = segs;
    let c = cx.stats.port(port);
    if r.is_ok_and(|r| r.cut) {
        c.tx_segmented.inc();
    }
    if sent {
        c.tx_dropped.add(lost);
        if r.is_err() {
            c.tx_offload_dropped.inc();
        }
        return Ok(());
    }
    match (r, first_err) {
        (Err(_), _) => Err(DropReason::OffloadFailed.into()),
        (Ok(_), Some(e)) => Err(e),
        // Nothing emitted and nothing failed cannot happen (a resolved frame emits one).
        (Ok(_), None) => Ok(()),
    }
}

/// Sends `b` out of `port`. On failure `b` is freed and the reason returned for the caller to
/// count (or not: a flood copy that fails is not a dropped frame).
#[inline]
pub fn send(
    cx: &mut Context<'_>,
    cfg: &Snapshot,
    pool: &Pool,
    overlay: &mut Overlay,
    port: PortId,
    mut b: Buf,
) -> Result<(), DropIdx> {
    let pc = cfg.port(port);
    if pc.is_some_and(|p| p.tunnel.is_some()) {
        if pool.has_offload(&b) {
            return send_segments(cx, pool, overlay, port, b);
        }
        let len = pool.len(&b) as u64;
        overlay.send(cx, port, b)?;
        let c = cx.stats.port(port);
        c.tx_packets.inc();
        c.tx_bytes.add(len);
        return Ok(());
    }
    let Some((parent, vid)) = pc.and_then(|p| p.parent) else {
        return if cx.ports.enqueue(cx.cache, cx.stats, port, b) {
            Ok(())
        } else {
            Err(DropReason::PortDown.into())
        };
    };
    let len = pool.len(&b) as u64;
    let pcp = pool.pcp(&b);
    if !vlan::push(pool, &mut b, vid, pcp) {
        cx.cache.free(b);
        return Err(DropReason::NoHeadroom.into());
    }
    if !cx.ports.enqueue(cx.cache, cx.stats, parent, b) {
        return Err(DropReason::PortDown.into());
    }
    let c = cx.stats.port(port);
    c.tx_packets.inc();
    c.tx_bytes.add(len);
    Ok(())
}
