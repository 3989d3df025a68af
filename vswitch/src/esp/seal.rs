//! The `esp-seal` stage: frames that `vxlan-encap` made for a tunnel of an encrypted network
//! come here (never to the uplink directly) and leave sealed in ESP for the uplink's output.
//!
//! Per buffer: the sending SA of the outer destination (the primary key's; none: `esp_no_key`,
//! nothing is sent), a packet number from the SA (reserved for the rest of the burst with one
//! atomic add), sealing in place, the uplink MTU. TCP super-frames were already cut by
//! `vxlan-encap` (each segment is its own ESP packet).

use super::{sa, SealDrop, SealEvent, FLAG_UDP};
use crate::graph::{Env, Io, Node, Stage};
use crate::trace::Detail;
use dataplane::burst::{Burst, Next, BURST};
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::pool::Pool;
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
        _frames: &mut Frames,
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
                    // Cannot fail: the output holds no more than the input did.
                    let _ = out.push_next(b, Next::to(Node::Tx as u16, next.arg));
                }
                Err(why) => {
                    if why == SealDrop::SeqExhausted && sa.first_exhaustion() {
                        tracing::warn!(
                            spi = format_args!("{:#010x}", sa.spi),
                            tag = sa.tag,
                            peer = %sa.dst,
                            "ESP SA used up its 2^32 sequence numbers; nothing more is sent with it: rotate the key (vswitchctl key add --tag NEW, key primary --tag NEW)"
                        );
                    }
                    io.drop_buf::<T>(Self::NAME, b, self.drops.index(why));
                }
            }
        }
    }
}
