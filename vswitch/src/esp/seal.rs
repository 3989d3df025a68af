//! The `esp-seal` stage: frames that `vxlan-encap` made for a tunnel of an encrypted network
//! come here (never to the uplink directly) and leave sealed in ESP for the uplink's output.
//!
//! Per buffer: the sending SA of the outer destination (the primary key's; none: `esp_no_key`,
//! nothing is sent), a packet number from the SA (reserved for the rest of the burst with one
//! atomic add), sealing in place, the uplink MTU. TCP super-frames were already cut by
//! `vxlan-encap` (each segment is its own ESP packet), except for a network of ESP in UDP over
//! an uplink with USO: there a VXLAN super-frame comes whole and is cut and sealed here,
//! straight into UDP super-frames ([`Seal::seal_whole`]).

use super::sa::{self, Sa};
use super::{SealDrop, SealEvent, FLAG_UDP};
use crate::graph::{Env, GraphDrop, Io, Node, Stage, FLAG_FWD};
use crate::trace::Detail;
use crate::trace::TRACE_WORD;
use dataplane::burst::{Burst, Next, BURST};
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::gro::{self, Seg};
use dataplane::offload::{TunnelSegments, VnetHdr, UDP_MAX_SEGMENTS};
use dataplane::pool::{Buf, Pool, PoolCache};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The sealing stage.
pub struct Seal {
    pool: Arc<Pool>,
    drops: Counters<SealDrop>,
    ev: Counters<SealEvent>,
}

impl Stage for Seal {
    const NAME: &'static str = "esp-seal";

    fn new(env: &mut Env<'_>) -> Seal {
        Seal {
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
        let esp = &*cfg.esp;
        let mtu = io.cfg.uplink.map_or(0, |u| u.mtu as usize);
        // Each buffer's outer destination (which names its SA), so that a reservation takes
        // exactly the numbers the rest of the burst needs for that SA: no gaps, one atomic add
        // per SA per burst.
        let mut dsts = [0u32; BURST];
        for (d, b) in dsts.iter_mut().zip(input.bufs()) {
            *d = match pool.data(b).get(30..34) {
                // (A super-frame reserves its own numbers.)
                _ if pool.is_tunnel_gso(b) => 0,
                Some(&[a, b2, c, e]) => u32::from_be_bytes([a, b2, c, e]),
                _ => 0,
            };
        }
        let total = input.len().min(BURST);
        // The current reservation: (SA id, next number, end).
        let mut resv: (u64, u64, u64) = (0, 0, 0);
        for (i, (mut b, next)) in input.drain_next().enumerate() {
            let d = pool.data(&b);
            let dst = match d.get(30..34) {
                Some(&[a, b2, c, e]) => Ipv4Addr::new(a, b2, c, e),
                _ => {
                    io.drop_buf::<T>(Self::NAME, b, self.drops.index(SealDrop::NotIpv4));
                    continue;
                }
            };
            let Some(sa) = esp.tx_for(dst) else {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(SealDrop::NoKey));
                continue;
            };
            if pool.is_tunnel_gso(&b) {
                self.seal_whole::<T>(io, frames, b, sa, mtu, next.arg, out);
                // What follows takes numbers after the super-frame's (a gap is harmless; going
                // out behind higher numbers could leave the peer's window).
                resv = (0, 0, 0);
                continue;
            }
            // Judged before sealing, so a frame too big spends no sequence number. The header
            // length is the one `vxlan-encap` writes (20 bytes).
            let len = pool.len(&b);
            let flags = pool.flags(&b);
            let udp = flags & FLAG_UDP != 0;
            let encap = if udp { sa::UDP_ENCAP_LEN } else { 0 };
            if mtu != 0 && (sa::sealed_len(len, 34) + encap).saturating_sub(14) > mtu {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(SealDrop::TooBig));
                continue;
            }
            if resv.0 != sa.id || resv.1 >= resv.2 {
                let want = u32::from(dst);
                let rest = dsts.get(i..total).unwrap_or(&[]);
                let k = rest.iter().filter(|&&d| d == want).count().max(1) as u64;
                let first = sa.reserve(k);
                resv = (sa.id, first, first.saturating_add(k));
            }
            let n = resv.1;
            resv.1 += 1;
            let off = pool.offset(&b);
            match sa.seal_encap(n, pool.slot_mut(&mut b), off, len, udp) {
                Ok((off, len)) => {
                    pool.set_frame(&mut b, off, len);
                    if udp {
                        pool.set_flags(&mut b, flags & !FLAG_UDP);
                    }
                    self.ev.inc(io.cx.stats, SealEvent::Sealed);
                    if T {
                        let what = Detail::EspSeal {
                            spi: sa.spi,
                            seq: n as u32,
                        };
                        io.rec::<T>(Self::NAME, &b, what);
                    }
                    // (A super-frame before may have made more than one frame.)
                    let next = Next::to(Node::Tx as u16, next.arg);
                    let i = io.g.drop.index(GraphDrop::NoFrame);
                    frames.push_in_order(out, b, next, |b| io.drop_buf::<T>(Self::NAME, b, i));
                }
                Err(why) => {
                    if why == SealDrop::SeqExhausted {
                        exhausted(sa);
                    }
                    io.drop_buf::<T>(Self::NAME, b, self.drops.index(why));
                }
            }
        }
    }
}

/// Says once per SA that its sequence numbers are used up.
#[cold]
fn exhausted(sa: &Sa) {
    if sa.first_exhaustion() {
        tracing::warn!(
            spi = format_args!("{:#010x}", sa.spi),
            tag = sa.tag,
            peer = %sa.dst,
            "ESP SA used up its 2^32 sequence numbers; nothing more is sent with it: rotate the key (vswitchctl key add --tag NEW, key primary --tag NEW)"
        );
    }
}

/// Ethernet + IPv4 (no options) + UDP in front of a UDP super-frame's datagrams.
const UDP_HDRS: usize = 42;

impl Seal {
    /// A VXLAN super-frame of TCP (from `vxlan-encap`, for a network of ESP in UDP over an
    /// uplink with USO): cut and sealed straight into UDP super-frames, as many as 64 KiB
    /// takes. Each segment is written where its ESP packet goes (the last first, so that one
    /// segment's scratch outer headers fall where the one before will put its trailer and
    /// ICV), sealed in place with its own sequence number (the super-frame's numbers reserved
    /// at once), and the UDP super-frame's headers go in front last; the uplink's TAP hands it
    /// to the kernel in one write, which cuts it into the datagrams as they were sealed.
    #[allow(clippy::too_many_arguments)]
    fn seal_whole<const T: bool>(
        &self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        b: Buf,
        sa: &Sa,
        mtu: usize,
        port: u16,
        out: &mut Burst,
    ) {
        let pool = &*self.pool;
        let data = pool.data(&b);
        let plan = TunnelSegments::plan(data, &pool.offload(&b), usize::from(u16::MAX))
            .ok()
            .filter(|p| !p.outer_ipv6 && p.outer_l3 == 14 && p.outer_th == 34 && !p.udp_csum);
        let Some(plan) = plan else {
            return io.drop_buf::<T>(Self::NAME, b, self.drops.index(SealDrop::NotIpv4));
        };
        let count = plan.count();
        // A full segment's cleartext (the VXLAN datagram) and its sealed ESP packet.
        let clear = plan.prefix - 34 + plan.inner.hdr_len + plan.inner.mss;
        let full = sa::sealed_len(34 + clear, 34) - 34;
        if mtu != 0 && 20 + sa::UDP_ENCAP_LEN + full > mtu {
            return io.drop_buf::<T>(Self::NAME, b, self.drops.index(SealDrop::TooBig));
        }
        let first = sa.reserve(count as u64);
        if u32::try_from(first + count as u64 - 1).is_err() {
            exhausted(sa);
            return io.drop_buf::<T>(Self::NAME, b, self.drops.index(SealDrop::SeqExhausted));
        }
        let per = ((usize::from(u16::MAX) - 28) / full).clamp(1, UDP_MAX_SEGMENTS);
        let flags = pool.flags(&b) & !FLAG_UDP;
        let (word0, trace_word) = (pool.word(&b, 0), pool.word(&b, TRACE_WORD));
        let mut sealed = 0u64;
        // The forwarded mark goes with the first UDP super-frame that leaves: counted once.
        let mut fwd = flags & FLAG_FWD;
        for start in (0..count).step_by(per) {
            let end = (start + per).min(count);
            match self.seal_chunk(io.cx.cache, &b, &plan, sa, first, start..end, full) {
                Ok(mut c) => {
                    sealed += (end - start) as u64;
                    pool.set_flags(&mut c, (flags & !FLAG_FWD) | fwd);
                    fwd = 0;
                    pool.set_word(&mut c, 0, word0);
                    pool.set_word(&mut c, TRACE_WORD, trace_word);
                    if T {
                        let what = Detail::EspSeal {
                            spi: sa.spi,
                            seq: (first + start as u64) as u32,
                        };
                        io.rec::<T>(Self::NAME, &b, what);
                    }
                    let next = Next::to(Node::Tx as u16, port);
                    let i = io.g.drop.index(GraphDrop::NoFrame);
                    frames.push_in_order(out, c, next, |c| io.drop_buf::<T>(Self::NAME, c, i));
                }
                Err(why) => {
                    // Each packet of the chunk is lost.
                    let i = self.drops.index(why);
                    io.count_drop(i, flags);
                    io.cx.stats.pipeline.at(i).add((end - start - 1) as u64);
                }
            }
        }
        io.cx
            .stats
            .pipeline
            .at(self.ev.index(SealEvent::Sealed))
            .add(sealed);
        self.ev.inc(io.cx.stats, SealEvent::SealedWhole);
        io.cx.cache.free(b);
    }

    /// Segments `range` of super-frame `b` (see [`Seal::seal_whole`]) sealed into one UDP
    /// super-frame in a large buffer (one datagram: a plain frame, in any buffer); no buffer
    /// is `esp_no_buffer`, a segment that cannot be written `esp_no_room`.
    #[allow(clippy::too_many_arguments)]
    fn seal_chunk(
        &self,
        cache: &mut PoolCache,
        b: &Buf,
        plan: &TunnelSegments,
        sa: &Sa,
        first: u64,
        range: std::ops::Range<usize>,
        full: usize,
    ) -> Result<Buf, SealDrop> {
        let pool = &*self.pool;
        let c = match range.len() {
            1 => pool.alloc_large().or_else(|| cache.alloc()),
            _ => pool.alloc_large(),
        };
        let Some(mut c) = c else {
            return Err(SealDrop::NoBuffer);
        };
        pool.extend_to_slot(&mut c);
        let src = pool.data(b);
        let to = pool.data_mut(&mut c);
        let mut end = 0;
        let written = range.clone().rev().try_for_each(|i| {
            let at = UDP_HDRS + (i - range.start) * full;
            let n = plan
                .write_segment(src, i, to.get_mut(at + sa::PREFIX_LEN - 34..)?)
                .ok()?;
            let len = sa
                .seal_at(first + i as u64, to.get_mut(at..)?, n.checked_sub(34)?)
                .ok()?;
            // Every datagram but the last is a full segment's.
            if i + 1 < range.end && len != full {
                return None;
            }
            end = end.max(at + len);
            Some(())
        });
        let done = written.and_then(|()| {
            to.get_mut(..34)?.copy_from_slice(src.get(..34)?);
            to.get_mut(34..38)?
                .copy_from_slice(&[0x11, 0x94, 0x11, 0x94]);
            if range.len() == 1 {
                let udp_len = u16::try_from(end - 34).ok()?;
                to.get_mut(38..40)?.copy_from_slice(&udp_len.to_be_bytes());
                to.get_mut(40..42)?.copy_from_slice(&[0, 0]);
                let total = u16::try_from(end - 14).ok()?;
                sa::patch_ipv4(to.get_mut(14..34)?, 17, total);
                return Some(VnetHdr::default());
            }
            let seg = Seg {
                hdr_len: UDP_HDRS,
                payload: full,
                udp: true,
                ..Seg::default()
            };
            gro::finish_head(to.get_mut(..end)?, end, &seg, false)
        });
        match done {
            Some(o) => {
                pool.set_len(&mut c, end);
                pool.set_offload(&mut c, o);
                pool.set_port(&mut c, pool.port(b));
                Ok(c)
            }
            None => {
                cache.free(c);
                Err(SealDrop::NoRoom)
            }
        }
    }
}
