//! The VXLAN stages of the graph: `underlay-in` takes what the uplink receives (VXLAN for us is
//! decapsulated and enters the bridge on its peer's tunnel port; ARP goes to the underlay host;
//! everything else is dropped by name), and `vxlan-encap` sends a frame through a tunnel port:
//! it asks the underlay host for the next hop's MAC (the frame may be held while it resolves
//! and comes back here when it has), patches the tunnel's precomputed outer header with it and
//! encapsulates in the headroom.
//!
//! Each remote VTEP of an overlay network is a tunnel port: the bridge learns MACs behind it and
//! floods to it like any port (head-end replication).

use super::rejoin::{self, Run};
use super::{DecapDrop, EncapError, Tunnel, TunnelParams};
use crate::esp::{self, open::Opener, OpenDrop, OpenEvent};
use crate::graph::{Env, Io, Node, Stage, FLAG_COPY, FLAG_FWD};
use crate::host::{ArpRx, Resolve};
use crate::trace::Detail;
use dataplane::burst::{Burst, Next, BURST};
use dataplane::graph::{CounterKind, Counters, Frames};
use dataplane::named_counters;
use dataplane::offload::{
    TcpSegments, VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_TUNNEL,
    VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
};
use dataplane::pool::{Buf, Pool};
use dataplane::port::{PortId, MAX_PORTS};
use dataplane::swoffload::{self, TxCaps};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The most bytes a run may take in its buffer: a large slot's, less the headroom.
const RUN_MAX: usize = dataplane::pool::LARGE_SLOT_SIZE - dataplane::pool::HEADROOM;

/// Makes room for `need` bytes in the frame of `b` (a run's buffer whose first `used` bytes
/// count): a small buffer outgrown moves to a large one. False if there is none left.
fn grow(
    pool: &Pool,
    cache: &mut dataplane::pool::PoolCache,
    b: &mut Buf,
    used: usize,
    need: usize,
) -> bool {
    if pool.data(b).len() >= need {
        return true;
    }
    let Some(mut l) = pool.alloc_large() else {
        return false;
    };
    pool.extend_to_slot(&mut l);
    let (Some(to), Some(from)) = (
        pool.data_mut(&mut l).get_mut(..used),
        pool.data(b).get(..used),
    ) else {
        pool.free_shared(l);
        return false;
    };
    to.copy_from_slice(from);
    pool.set_flags(&mut l, pool.flags(b));
    pool.set_port(&mut l, pool.port(b));
    if pool.data(&l).len() < need {
        pool.free_shared(l);
        return false;
    }
    cache.free(std::mem::replace(b, l));
    true
}

/// Finishes run `r` in `b` ([`Run::finish`]): its frame and offload facts set; false (nothing
/// set) if it cannot be.
fn finish_run(pool: &Pool, b: &mut Buf, r: &Run) -> bool {
    let off = pool.offset(b);
    // Offload offsets are kept as 16 bits from the slot's start: a run that starts far into a
    // large buffer (late in its super-frame) moves to the front first.
    let mut r = *r;
    if off + r.start + r.ip_end + rejoin::TNL + r.first.hdr_len >= usize::from(u16::MAX) {
        pool.data_mut(b).copy_within(r.start..r.end, 0);
        r.end -= r.start;
        r.start = 0;
    }
    let Some(o) = r.finish(pool.data_mut(b)) else {
        return false;
    };
    pool.set_frame(b, off + r.start, r.end - r.start);
    pool.set_offload(b, o);
    true
}

/// Most datagrams in one UDP super-frame.
const UDP_MAX: usize = dataplane::offload::UDP_MAX_SEGMENTS;

/// Buffer flag: a frame re-entering encapsulation after its next hop resolved (its tunnel's
/// transmit counters already counted it).
const FLAG_HELD: u8 = 1 << 3;

named_counters! {
    /// Events of the underlay input.
    pub enum DecapEvent {
        /// Frames decapsulated from VXLAN.
        VxlanDecap => "vxlan_decap",
        /// UDP tunnel super-frames from a TAP uplink decapsulated whole (their inner TCP
        /// super-frame goes on as one frame).
        VxlanDecapGso => "vxlan_decap_gso",
        /// UDP super-frames from a TAP uplink with UDP segmentation offload (e.g. ESP in UDP
        /// merged by the sending switch) cut back into their datagrams, each opened on its own.
        UdpGsoCut => "udp_gso_cut",
        /// UDP super-frames of ESP in UDP opened where they lay, whose inner TCP segments went
        /// on as one VXLAN super-frame (each datagram still opened and checked on its own).
        UdpGsoOpenedWhole => "udp_gso_opened_whole",
    }
}

/// The uplink's input stage.
pub struct UnderlayIn {
    /// The buffer pool (held, so that running clones no `Arc`: no shared atomic per burst).
    pool: std::sync::Arc<dataplane::pool::Pool>,
    drops: Counters<DecapDrop>,
    ev: Counters<DecapEvent>,
    esp_drops: Counters<OpenDrop>,
    esp_ev: Counters<OpenEvent>,
    /// This worker's anti-replay windows.
    opener: Opener,
    /// Room for cutting UDP super-frames (taken out while one is cut; never empty between).
    cutting: Option<Cutting>,
}

/// Room for taking one UDP super-frame apart (cut, or opened whole), made once.
struct Cutting {
    /// Its datagrams (capacity for the most one carries, so pushing never allocates).
    segs: Vec<Buf>,
    /// What one datagram became, before it joins the output.
    spill: Burst,
}

impl Stage for UnderlayIn {
    const NAME: &'static str = "underlay-in";

    fn new(env: &mut Env<'_>) -> UnderlayIn {
        UnderlayIn {
            pool: env.pool.clone(),
            drops: env.layout.register(Self::NAME, CounterKind::Drop),
            ev: env.layout.register(Self::NAME, CounterKind::Event),
            esp_drops: env.layout.register("esp-open", CounterKind::Drop),
            esp_ev: env.layout.register("esp-open", CounterKind::Event),
            opener: Opener::default(),
            cutting: Some(Cutting {
                segs: Vec::with_capacity(dataplane::offload::UDP_MAX_SEGMENTS + 2),
                spill: Burst::new(),
            }),
        }
    }

    fn configure(&mut self, io: &mut Io<'_, '_>) {
        self.opener.configure(&io.cfg.esp);
    }

    fn run<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        input: &mut Burst,
        out: &mut Burst,
    ) {
        let pool = &*self.pool;
        // Taken out for the loop (no allocation: a move of its vector) so `one` borrows self.
        let mut opener = std::mem::take(&mut self.opener);
        let Some(mut room) = self.cutting.take() else {
            // (Never: the room is always there between runs.)
            for (b, _) in input.drain_next() {
                io.drop_buf::<T>(Self::NAME, b, self.drops.index(DecapDrop::BadUdpGso));
            }
            self.opener = opener;
            return;
        };
        let c = &mut room;
        // A run of opened segments that the next super-frame of this burst may extend.
        let mut held: Option<(Buf, Run)> = None;
        for (b, _) in input.drain_next() {
            if pool.is_udp_gso(&b) {
                let r = self.open_whole::<T>(io, frames, pool, &mut opener, c, &mut held, b, out);
                if let Err(b) = r {
                    self.release::<T>(io, frames, pool, &mut opener, c, &mut held, out);
                    self.cut::<T>(io, frames, pool, &mut opener, c, b, out);
                }
                continue;
            }
            if held.is_some() {
                self.release::<T>(io, frames, pool, &mut opener, c, &mut held, out);
            }
            // (A super-frame before it may have filled the output.)
            let spilled = out.len() >= BURST;
            let to = if spilled { &mut c.spill } else { &mut *out };
            self.one::<T>(io, frames, pool, &mut opener, b, to, None);
            if spilled {
                self.join::<T>(io, frames, &mut c.spill, out);
            }
        }
        self.release::<T>(io, frames, pool, &mut opener, c, &mut held, out);
        self.cutting = Some(room);
        opener.flush(&io.cfg.esp);
        self.opener = opener;
        io.host.take_learned(io.seen);
    }
}

impl UnderlayIn {
    /// A UDP super-frame (the local kernel handed a burst of datagrams of one flow over in one
    /// read): cut back into its datagrams, each then taken as [`UnderlayIn::one`] takes a frame
    /// (so each ESP packet is opened on its own, with its own replay check and ICV).
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn cut<const T: bool>(
        &self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        pool: &Pool,
        opener: &mut Opener,
        room: &mut Cutting,
        b: Buf,
        out: &mut Burst,
    ) {
        let flags = pool.flags(&b);
        let trace_word = pool.word(&b, crate::trace::TRACE_WORD);
        let Cutting { segs, spill } = room;
        // Pushing stays within the capacity: the cut refuses more than UDP_MAX_SEGMENTS.
        let r = swoffload::resolve(io.cx.cache, b, TxCaps::Plain, |_, s| segs.push(s));
        match r {
            Ok(_) => self.ev.inc(io.cx.stats, DecapEvent::UdpGsoCut),
            Err(_) => io.count_drop(self.drops.index(DecapDrop::BadUdpGso), flags),
        }
        // Datagrams cut before a failure go on, as the ones before a loss on a wire would.
        for mut s in segs.drain(..) {
            pool.set_flags(&mut s, flags);
            pool.set_word(&mut s, crate::trace::TRACE_WORD, trace_word);
            self.one_outlined::<T>(io, frames, pool, opener, s, spill, None);
            self.join::<T>(io, frames, spill, out);
        }
    }

    /// Moves what one frame of a super-frame became from `spill` to the output, in order
    /// ([`Frames::push_in_order`]: a super-frame may make more frames than it holds).
    fn join<const T: bool>(
        &self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        spill: &mut Burst,
        out: &mut Burst,
    ) {
        let i = io.g.drop.index(crate::graph::GraphDrop::NoFrame);
        for (s, next) in spill.drain_next() {
            frames.push_in_order(out, s, next, |s| io.drop_buf::<T>(Self::NAME, s, i));
        }
    }

    /// Finishes the run `r` in `b` and sends it on as [`UnderlayIn::one`] takes an opened
    /// frame (dropped by name if it cannot be finished, which a run built here never is).
    #[allow(clippy::too_many_arguments)]
    fn send_run<const T: bool>(
        &self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        pool: &Pool,
        opener: &mut Opener,
        spill: &mut Burst,
        mut b: Buf,
        r: &Run,
        out: &mut Burst,
    ) {
        if !finish_run(pool, &mut b, r) {
            return io.drop_buf::<T>(Self::NAME, b, self.drops.index(DecapDrop::BadUdpGso));
        }
        self.one_outlined::<T>(io, frames, pool, opener, b, spill, Some(true));
        self.join::<T>(io, frames, spill, out);
    }

    /// An ESP-in-UDP super-frame for us (a peer's burst of sealed packets, merged by its TAP
    /// uplink's UDP segmentation offload): every datagram is opened where it lies, with its
    /// own replay check and ICV as if it had come alone, and the inner TCP segments that may
    /// be merged are gathered into runs ([`rejoin`]) that go on as one VXLAN super-frame each,
    /// instead of a frame per datagram merged again on the way out:
    /// - the first run of the super-frame is built where it lies (its later payloads moved
    ///   down behind the first segment);
    /// - a run that does not start there is copied into a buffer of its own (a small one,
    ///   moved to a large one when it grows);
    /// - the last run may be `held` for the next super-frame of the burst, which appends to it
    ///   what follows (the peer's TAP cuts its UDP super-frames at 64 KiB, which is not where
    ///   the inner TCP super-frames end); [`UnderlayIn::release`] sends it at the latest at the
    ///   burst's end;
    /// - what opened but may not be merged (another flow, ARP) is copied into a frame alone.
    ///
    /// Returns the frame untouched when it is not such a super-frame (or is traced: a traced
    /// super-frame is cut, so that each datagram's record stands alone).
    ///
    /// [`rejoin`]: super::rejoin
    #[allow(clippy::too_many_arguments)]
    fn open_whole<const T: bool>(
        &self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        pool: &Pool,
        opener: &mut Opener,
        room: &mut Cutting,
        held: &mut Option<(Buf, Run)>,
        mut b: Buf,
        out: &mut Burst,
    ) -> Result<(), Buf> {
        use esp::sa::{self, PREFIX_LEN};
        if T && pool.traced(&b) {
            return Err(b);
        }
        let Some(up) = io.host.uplink() else {
            return Err(b);
        };
        let data = pool.data(&b);
        if data.get(0..6) != Some(&up.mac)
            || sa::encap_of(data) != Some(true)
            || data.get(30..34) != Some(&up.ip.octets())
        {
            return Err(b);
        }
        let Ok(plan) = dataplane::offload::UdpSegments::plan(
            data,
            &pool.offload(&b),
            dataplane::pool::MAX_FRAME,
        ) else {
            return Err(b);
        };
        let (ip_end, base, mss, len) = (plan.l4_off, plan.l4_off + 8, plan.mss, data.len());
        let span = |k: usize| (base + k * mss, (base + (k + 1) * mss).min(len));
        // Only ESP (no zero SPI: a keepalive or IKE) in a frame the cut would take.
        if plan.ipv6 || plan.l3_off != 14 || plan.count > UDP_MAX {
            return Err(b);
        }
        let esp_only = (0..plan.count).all(|k| {
            let (s, _) = span(k);
            data.get(s..s + 4).is_some_and(|spi| spi != [0; 4])
        });
        if !esp_only {
            return Err(b);
        }
        let src = Ipv4Addr::new(data[26], data[27], data[28], data[29]);
        let flags = pool.flags(&b);
        let cfg = io.cfg;
        // Where each datagram's cleartext lies, and its length (none: it did not open, the
        // drop is counted).
        let mut clear = [None::<(usize, usize)>; UDP_MAX];
        for (k, c) in clear.iter_mut().enumerate().take(plan.count) {
            let (s, e) = span(k);
            let Some(payload) = pool.data_mut(&mut b).get_mut(s..e) else {
                break;
            };
            let r = sa::parse_payload(payload, src).and_then(|p| {
                opener.open_parsed(&cfg.esp, payload, &p)?;
                sa::plaintext_len(payload, &p)
            });
            match r {
                Ok(n) => {
                    self.esp_ev.inc(io.cx.stats, OpenEvent::Opened);
                    *c = Some((s + PREFIX_LEN, n));
                }
                Err(why) => io.count_drop(self.esp_drops.index(why), flags),
            }
        }
        self.ev.inc(io.cx.stats, DecapEvent::UdpGsoOpenedWhole);
        let Cutting { segs, spill } = room;
        // The run built where it lies, whether it ended, and its place among `segs` (the
        // frames made of this super-frame, in order, ready to go on).
        let (mut here, mut here_ended, mut here_at) = (None::<Run>, false, 0);
        for &(at, n) in clear.iter().take(plan.count).flatten() {
            let data = pool.data(&b);
            // The outer headers: where they were, or in front of the run built here.
            let hdrs = here.map_or(0, |r| r.start);
            let Some(d) = data.get(at..at + n) else {
                // (Cannot be: the cleartext lies inside its datagram.)
                io.count_drop(self.drops.index(DecapDrop::BadUdpGso), flags);
                continue;
            };
            let seg = rejoin::segment(d);
            if let Some(seg) = seg {
                // Appended to the run being built, here or held (the skip is under `n`: a
                // run takes only segments with its first one's header length).
                if let Some(r) = here.as_mut().filter(|_| !here_ended) {
                    let skip = r.skip();
                    if skip < n && r.takes(data, data.len(), d, &seg) {
                        pool.data_mut(&mut b).copy_within(at + skip..at + n, r.end);
                        r.appended(seg);
                        continue;
                    }
                } else if let Some((hb, r)) = held.as_mut() {
                    let (skip, hd) = (r.skip(), pool.data(hb));
                    // From the same peer (the outer addresses name the tunnel and the SA).
                    let same = r.ip_end == ip_end
                        && hd.get(r.start + 26..r.start + 34) == data.get(hdrs + 26..hdrs + 34);
                    if same
                        && skip < n
                        && r.takes(hd, RUN_MAX, d, &seg)
                        && grow(pool, io.cx.cache, hb, r.end, r.end + n - skip)
                    {
                        if let Some(to) = pool.data_mut(hb).get_mut(r.end..r.end + n - skip) {
                            to.copy_from_slice(&d[skip..]);
                            r.appended(seg);
                            continue;
                        }
                    }
                }
            }
            // The run being built ends here.
            if here.is_some() && !here_ended {
                here_ended = true;
            } else if let Some((mut hb, r)) = held.take() {
                if finish_run(pool, &mut hb, &r) {
                    segs.push(hb);
                } else {
                    io.cx.cache.free(hb);
                    io.count_drop(self.drops.index(DecapDrop::BadUdpGso), flags);
                }
            }
            match seg {
                Some(seg) if here.is_none() => {
                    // A run starts here: the outer headers move right in front of it.
                    pool.data_mut(&mut b).copy_within(0..ip_end, at - ip_end);
                    here = Some(Run::new(seg, at - ip_end, ip_end, n));
                    here_at = segs.len();
                }
                _ => {
                    // In a buffer of its own (a run moves to a large one when it grows).
                    let Some(mut nb) = io.cx.cache.alloc() else {
                        io.count_drop(self.drops.index(DecapDrop::BadUdpGso), flags);
                        continue;
                    };
                    if seg.is_some() {
                        pool.extend_to_slot(&mut nb);
                    } else {
                        pool.set_len(&mut nb, ip_end + n);
                    }
                    let data = pool.data(&b);
                    let Some(to) = pool.data_mut(&mut nb).get_mut(..ip_end + n) else {
                        io.cx.cache.free(nb);
                        io.count_drop(self.drops.index(DecapDrop::BadUdpGso), flags);
                        continue;
                    };
                    to[..ip_end].copy_from_slice(&data[hdrs..hdrs + ip_end]);
                    to[ip_end..].copy_from_slice(&data[at..at + n]);
                    pool.set_flags(&mut nb, flags);
                    pool.set_port(&mut nb, pool.port(&b));
                    match seg {
                        Some(seg) => *held = Some((nb, Run::new(seg, 0, ip_end, n))),
                        None => {
                            // Alone, as opened: only the outer IPv4 header follows its length
                            // (what it carried is judged as it came).
                            let total = u16::try_from(ip_end - 14 + n).unwrap_or(u16::MAX);
                            if let Some(ip) = pool.data_mut(&mut nb).get_mut(14..ip_end) {
                                esp::sa::patch_ipv4(ip, 17, total);
                            }
                            segs.push(nb);
                        }
                    }
                }
            }
        }
        // Everything of this super-frame is read: the run built here goes on (or is held, if
        // it is the last thing in it), in its place among the rest.
        let mut rest = 0..segs.len();
        match here {
            Some(r) if !here_ended => {
                pool.extend_to_slot(&mut b);
                // (None held: a run built here ended any held one.)
                if let Some((hb, hr)) = held.replace((b, r)) {
                    self.send_run::<T>(io, frames, pool, opener, spill, hb, &hr, out);
                }
            }
            Some(r) => {
                for s in segs.drain(..here_at) {
                    self.one_outlined::<T>(io, frames, pool, opener, s, spill, Some(true));
                    self.join::<T>(io, frames, spill, out);
                }
                self.send_run::<T>(io, frames, pool, opener, spill, b, &r, out);
                rest = 0..segs.len();
            }
            None => io.cx.cache.free(b),
        }
        for s in segs.drain(rest) {
            self.one_outlined::<T>(io, frames, pool, opener, s, spill, Some(true));
            self.join::<T>(io, frames, spill, out);
        }
        Ok(())
    }

    /// Sends the run `held` for the next super-frame on (before any other frame, and at the
    /// end of the burst: nothing is held past it).
    #[allow(clippy::too_many_arguments)]
    fn release<const T: bool>(
        &self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        pool: &Pool,
        opener: &mut Opener,
        room: &mut Cutting,
        held: &mut Option<(Buf, Run)>,
        out: &mut Burst,
    ) {
        if let Some((b, r)) = held.take() {
            self.send_run::<T>(io, frames, pool, opener, &mut room.spill, b, &r, out);
        }
    }

    /// [`UnderlayIn::one`] for the frames a super-frame makes (out of line, so that `one` is
    /// inlined only here and into the burst loop).
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn one_outlined<const T: bool>(
        &self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        pool: &Pool,
        opener: &mut Opener,
        b: Buf,
        out: &mut Burst,
        opened: Option<bool>,
    ) {
        self.one::<T>(io, frames, pool, opener, b, out, opened);
    }

    // Always: with a second caller (`cut`) the compiler stopped inlining it into the burst
    // loop, and decapsulation cost 8% more instructions per burst (callgrind).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn one<const T: bool>(
        &self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        pool: &Pool,
        opener: &mut Opener,
        mut b: Buf,
        out: &mut Burst,
        opened: Option<bool>,
    ) {
        let Some(up) = io.host.uplink() else {
            return io.drop_buf::<T>(Self::NAME, b, self.drops.index(DecapDrop::NotVxlan));
        };
        let to_us = pool.data(&b).get(0..6).is_some_and(|d| d == up.mac);
        // ESP for our address is opened first; what it carried is judged as VXLAN below.
        // `sealed`: it came in ESP, in UDP (RFC 3948) or not (`opened`: it was opened already,
        // as part of a super-frame).
        let mut sealed: Option<bool> = opened;
        if to_us
            && sealed.is_none()
            && esp::sa::encap_of(pool.data(&b)).is_some()
            && pool.data(&b).get(30..34) == Some(&up.ip.octets())
        {
            let cfg = io.cfg;
            match opener.open(&cfg.esp, pool.data_mut(&mut b)) {
                Ok(o) => {
                    pool.trim_front(&mut b, o.trim);
                    pool.set_len(&mut b, o.len);
                    pool.set_offload(&mut b, Default::default());
                    self.esp_ev.inc(io.cx.stats, OpenEvent::Opened);
                    if T {
                        let what = Detail::EspOpen {
                            spi: o.spi,
                            seq: o.seq,
                        };
                        io.rec::<T>("esp-open", &b, what);
                    }
                    sealed = Some(o.udp);
                }
                Err(why) => {
                    return io.drop_buf::<T>("esp-open", b, self.esp_drops.index(why));
                }
            }
        }
        let data = pool.data(&b);
        if to_us {
            // From a TAP uplink with offloads, the local kernel may leave the outer UDP checksum
            // partial (NEEDS_CSUM) or vouch for it (DATA_VALID): nothing to verify then.
            let trusted = pool.offload(&b).flags
                & (dataplane::offload::VIRTIO_NET_HDR_F_NEEDS_CSUM
                    | dataplane::offload::VIRTIO_NET_HDR_F_DATA_VALID)
                != 0;
            match super::classify_with(data, up.ip, up.vxlan_port, trusted) {
                Ok(d) => {
                    let Some(net) = io.cfg.net_of_vni(d.vni) else {
                        let i = self.drops.index(DecapDrop::UnknownVni);
                        return io.drop_buf::<T>(Self::NAME, b, i);
                    };
                    // Never cleartext: with or without peers and keys. And only the
                    // encapsulation the network sends.
                    if let Some(n) = io.cfg.net(net).filter(|n| n.encrypted) {
                        let why = match sealed {
                            None => Some(OpenDrop::Cleartext),
                            Some(udp) if udp != n.esp_udp => Some(OpenDrop::WrongEncap),
                            Some(_) => None,
                        };
                        if let Some(why) = why {
                            let i = self.esp_drops.index(why);
                            return io.drop_buf::<T>("esp-open", b, i);
                        }
                    }
                    let Some(tunnel) = io.cfg.tunnel_port(net, d.src_ip) else {
                        let i = self.drops.index(DecapDrop::UnknownVtep);
                        return io.drop_buf::<T>(Self::NAME, b, i);
                    };
                    if !super::decap(pool, &mut b, &d) {
                        let i = self.drops.index(DecapDrop::TruncatedInner);
                        return io.drop_buf::<T>(Self::NAME, b, i);
                    }
                    // The local kernel may leave the inner L4 checksum partial (its VXLAN device
                    // encapsulated a CHECKSUM_PARTIAL frame): that stays with the inner frame, to
                    // be passed on or completed. A checksum offset outside it was the outer's.
                    let o = pool.offload(&b);
                    if o.is_tunnel_gso() {
                        // A VXLAN super-frame (the local kernel's VXLAN device sent it whole
                        // over a TAP uplink with tunnel GSO): its inner TCP super-frame goes on
                        // whole, with the inner offload facts only.
                        let inner = o.gso_type & !VIRTIO_NET_HDR_GSO_UDP_TUNNEL;
                        let ok = usize::from(o.inner_nh) == super::INNER_ETH_LEN
                            && o.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
                            && usize::from(o.csum_start) < pool.len(&b)
                            && VnetHdr {
                                gso_type: inner,
                                ..Default::default()
                            }
                            .is_tcp_gso();
                        if !ok {
                            let i = self.drops.index(DecapDrop::BadGso);
                            return io.drop_buf::<T>(Self::NAME, b, i);
                        }
                        let o = VnetHdr {
                            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                            gso_type: inner,
                            hdr_len: 0,
                            outer_th: 0,
                            inner_nh: 0,
                            ..o
                        };
                        pool.set_offload(&mut b, o);
                        self.ev.inc(io.cx.stats, DecapEvent::VxlanDecapGso);
                    } else if usize::from(o.csum_start) >= pool.len(&b) || o.gso_type != 0 {
                        pool.set_offload(&mut b, Default::default());
                    } else if !o.is_plain() {
                        // The header length the kernel gave was the outer frame's.
                        pool.set_offload(&mut b, VnetHdr { hdr_len: 0, ..o });
                    }
                    self.ev.inc(io.cx.stats, DecapEvent::VxlanDecap);
                    let c = io.cx.stats.port(tunnel);
                    c.rx_packets.inc();
                    c.rx_bytes.add(pool.len(&b) as u64);
                    pool.set_port(&mut b, tunnel);
                    if T {
                        let what = Detail::Decap {
                            vni: d.vni,
                            vtep: d.src_ip,
                            tunnel,
                        };
                        io.rec::<T>(Self::NAME, &b, what);
                    }
                    // To the bridge, unless it is for this host's ingress address of a service
                    // (the routing mesh: `service::stage::entry_from_tunnel`).
                    let next =
                        crate::service::stage::entry_from_tunnel(io.cfg, tunnel, pool.data(&b))
                            .unwrap_or(Next::to(Node::Bridge as u16, 0));
                    // Cannot fail: the output holds no more than the input did.
                    let _ = out.push_next(b, next);
                    return;
                }
                Err(DecapDrop::NotVxlan) => {}
                Err(why) => return io.drop_buf::<T>(Self::NAME, b, self.drops.index(why)),
            }
        }
        // The host answers ping on its uplink address (before NAT's return path: an echo
        // request is never a translated flow's return traffic).
        let b = if to_us && data.get(12..14) == Some(&[0x08, 0x00]) && data.get(23) == Some(&1) {
            match io.host.echo_input(io.cx, b) {
                Ok(b) => {
                    io.rec::<T>(
                        Self::NAME,
                        &b,
                        Detail::Host("ICMP echo request to the uplink address: replied"),
                    );
                    // Cannot fail: the output holds no more than the input did.
                    let _ = out.push_next(b, Next::to(Node::Tx as u16, up.port));
                    return;
                }
                Err(b) => b,
            }
        } else {
            b
        };
        let data = pool.data(&b);
        if to_us && data.get(12..14) == Some(&[0x08, 0x00]) && !io.cfg.gateways.is_empty() {
            // IPv4 to our MAC that is not VXLAN, with some network routed out: NAT's return
            // traffic, for the router.
            let next = Next::to(Node::Router as u16, crate::nat::stage::FROM_UPLINK);
            let _ = out.push_next(b, next);
            return;
        }
        let is_arp = data.get(12..14) == Some(&[0x08, 0x06]);
        if !is_arp || !(to_us || data.first().is_some_and(|d| d & 1 == 1)) {
            return io.drop_buf::<T>(Self::NAME, b, self.drops.index(DecapDrop::NotVxlan));
        }
        let id = (T && pool.traced(&b)).then(|| pool.word(&b, crate::trace::TRACE_WORD));
        match io.host.arp_input(io.cx, frames, b) {
            ArpRx::Reply(b) => {
                io.rec::<T>(Self::NAME, &b, Detail::Arp("request for us: replied"));
                let _ = out.push_next(b, Next::to(Node::Tx as u16, up.port));
            }
            ArpRx::Done => {
                if let Some(id) = id {
                    let w = io.cx.worker;
                    io.trace
                        .record(id, w, Self::NAME, Detail::Arp("consumed by the host"));
                }
            }
        }
    }
}

named_counters! {
    /// Why the encapsulation stage drops a frame (besides [`EncapError`]).
    pub enum TunnelDrop {
        /// A VTEP outside the uplink's subnet and no gateway to reach it.
        NoRoute => "vxlan_no_route",
        /// A frame from a TAP with offloads whose checksum or TCP segmentation could not be done
        /// in software before it entered a tunnel (malformed super-frame, no buffers).
        OffloadFailed => "offload_failed",
        /// Segments of a TCP super-frame lost after another segment of it left (one count
        /// per segment; the frame itself counts as forwarded, and on the tunnel port's
        /// `tx_dropped`), e.g. the graph out of bursts, or a segment still too big.
        SegmentLost => "vxlan_segment_lost",
    }
}

named_counters! {
    /// Events of the encapsulation stage.
    pub enum EncapEvent {
        /// Frames encapsulated in VXLAN.
        VxlanEncap => "vxlan_encap",
        /// TCP super-frames whose segment size was lowered to fit the tunnel (segments of
        /// any size are valid TCP; the sender's own MTU was larger than the overlay's).
        MssClamped => "vxlan_mss_clamped",
        /// TCP super-frames encapsulated whole, for an uplink that takes UDP tunnel GSO (one
        /// write carries what would otherwise be up to 45 packets).
        GsoWhole => "vxlan_encap_gso",
    }
}

/// The encapsulation stage's state on one worker: one precomputed tunnel per tunnel port.
pub struct Encap {
    pool: Arc<Pool>,
    tunnels: Vec<Option<Tunnel>>,
    /// Segments of a TCP super-frame on their way into a tunnel (capacity for the most
    /// segments one super-frame is cut into, so pushing never allocates).
    segments: Vec<Buf>,
    errors: Counters<EncapError>,
    drops: Counters<TunnelDrop>,
    ev: Counters<EncapEvent>,
    /// Within one run: the last tunnel port whose next hop was known, with that hop, its MAC
    /// and how the tunnel's network seals (the frames of a burst mostly share a tunnel: one
    /// neighbour lookup and one configuration lookup for all of them).
    hop_cache: Option<(PortId, Ipv4Addr, [u8; 6], Sealing)>,
}

impl Stage for Encap {
    const NAME: &'static str = "vxlan-encap";

    fn new(env: &mut Env<'_>) -> Encap {
        Encap {
            pool: env.pool.clone(),
            tunnels: (0..MAX_PORTS).map(|_| None).collect(),
            segments: Vec::with_capacity(dataplane::offload::MAX_SEGMENTS),
            errors: env.layout.register(Self::NAME, CounterKind::Drop),
            drops: env.layout.register(Self::NAME, CounterKind::Drop),
            ev: env.layout.register(Self::NAME, CounterKind::Event),
            hop_cache: None,
        }
    }

    fn run<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        input: &mut Burst,
        out: &mut Burst,
    ) {
        // Neighbours and configuration may change between runs, never within one.
        self.hop_cache = None;
        for (mut b, next) in input.drain_next() {
            let port = next.arg;
            if self.pool.has_offload(&b) && !self.whole::<T>(io, port, &mut b) {
                self.segments::<T>(io, frames, port, b, out);
                continue;
            }
            match self.one::<T>(io, frames, port, b) {
                Ok(Some((b, next))) => {
                    // In order: a super-frame's segments before it may have filled the output.
                    let i = io.g.drop.index(crate::graph::GraphDrop::NoFrame);
                    frames.push_in_order(out, b, next, |b| io.drop_buf::<T>(Self::NAME, b, i));
                }
                Ok(None) => {}
                Err((b, why)) => io.drop_buf::<T>(Self::NAME, b, why),
            }
        }
    }

    /// Rebuilds the tunnels of a new configuration (keeping next-hop MACs already known).
    fn configure(&mut self, io: &mut Io<'_, '_>) {
        let cfg = io.cfg;
        // A tunnel port that went away or now leads elsewhere (ids are reused) must not send
        // what was held for it: drop every held frame, counted. Rare; next hops resolve again
        // on the next frame.
        let moved = self.tunnels.iter().enumerate().any(|(id, slot)| {
            slot.as_ref().is_some_and(|t| {
                cfg.port(id as PortId)
                    .and_then(|p| p.tunnel)
                    .is_none_or(|c| c.vtep != t.params().remote_ip || c.vni != t.params().vni)
            })
        });
        if moved {
            io.host.drop_held(io.cx.cache, io.cx.stats);
        }
        for (id, slot) in self.tunnels.iter_mut().enumerate() {
            let want = match (cfg.uplink, cfg.port(id as PortId).and_then(|p| p.tunnel)) {
                (Some(up), Some(t)) => Some(TunnelParams {
                    local_mac: up.mac,
                    remote_mac: slot.as_ref().map_or([0; 6], |t| t.params().remote_mac),
                    local_ip: up.ip,
                    remote_ip: t.vtep,
                    vni: t.vni,
                    dst_port: up.vxlan_port,
                    ttl: super::DEFAULT_TTL,
                    mtu: up.mtu,
                }),
                _ => None,
            };
            match want {
                Some(p) if slot.as_ref().map(|t| *t.params()) != Some(p) => {
                    *slot = Some(Tunnel::new(p))
                }
                Some(_) => {}
                None => *slot = None,
            }
        }
    }
}

/// How a tunnel's frames leave: as they are, or through `esp-seal` (ESP in IP protocol 50, or
/// ESP in UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sealing {
    Plain,
    Esp,
    EspUdp,
}

/// What became of one frame: sent on (with its next node), held, or dropped (with the counter).
type Outcome = Result<Option<(Buf, Next)>, (Buf, usize)>;

impl Encap {
    /// Encapsulates `b` for tunnel port `port`, or holds it until the next hop resolves.
    #[inline]
    fn one<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        port: PortId,
        mut b: Buf,
    ) -> Outcome {
        let pool = &*self.pool;
        let (Some(up), Some(Some(tunnel))) =
            (io.host.uplink(), self.tunnels.get_mut(port as usize))
        else {
            return Err((b, io.g.drop.index(crate::graph::GraphDrop::PortDown)));
        };
        let Some(hop) = up.next_hop(tunnel.params().remote_ip) else {
            return Err((b, self.drops.index(TunnelDrop::NoRoute)));
        };
        let len = pool.len(&b) as u64;
        let flags = pool.flags(&b);
        // The common case: this run already found the tunnel's next hop.
        let cached = self
            .hop_cache
            .filter(|&(p, h, _, _)| p == port && h == hop)
            .map(|(_, _, mac, enc)| (mac, enc));
        let id = (T && pool.traced(&b)).then(|| pool.word(&b, crate::trace::TRACE_WORD));
        let resolved = match cached {
            Some((mac, _)) => Resolve::Known(mac, b),
            None => {
                // While held, the frame has left the bridge: counted as forwarded (or as a
                // flood copy that made it) now, and on the tunnel port, not again when it
                // comes back.
                pool.set_flags(&mut b, (flags & !(FLAG_FWD | FLAG_COPY)) | FLAG_HELD);
                let resume = Next::to(Node::Encap as u16, port);
                io.host.resolve(io.cx, frames, hop, b, resume)
            }
        };
        match resolved {
            Resolve::Known(mac, mut b) => {
                if cached.is_none() || flags & FLAG_HELD != 0 {
                    pool.set_flags(&mut b, flags & !FLAG_HELD);
                }
                if tunnel.params().remote_mac != mac {
                    tunnel.set_remote_mac(mac);
                }
                let hash = super::flow_hash(pool.data(&b));
                // Only a super-frame `whole` accepted comes here with offload work.
                if pool.has_offload(&b) {
                    if let Err(e) = tunnel.encap_super(pool, &mut b, hash) {
                        return Err((b, self.errors.index(e)));
                    }
                    let o = pool.offload(&b);
                    let tunnelled = VnetHdr {
                        gso_type: o.gso_type | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
                        outer_th: (super::OUTER_ETH_LEN + super::OUTER_IP_LEN) as u16,
                        inner_nh: (super::OUTER_LEN + super::INNER_ETH_LEN) as u16,
                        ..o
                    };
                    pool.set_offload(&mut b, tunnelled);
                    self.ev.inc(io.cx.stats, EncapEvent::GsoWhole);
                } else if let Err(e) = tunnel.encap(pool, &mut b, hash) {
                    return Err((b, self.errors.index(e)));
                }
                self.ev.inc(io.cx.stats, EncapEvent::VxlanEncap);
                if flags & FLAG_HELD == 0 {
                    let c = io.cx.stats.port(port);
                    c.tx_packets.inc();
                    c.tx_bytes.add(len);
                }
                if T {
                    let p = tunnel.params();
                    let (vni, vtep) = (p.vni, p.remote_ip);
                    io.rec::<T>(Self::NAME, &b, Detail::Encap { vni, vtep, hop });
                }
                // An encrypted network's frames leave only sealed.
                let sealing = match cached {
                    Some((_, s)) => s,
                    None => {
                        let s = match io.cfg.port(port).and_then(|p| p.tunnel) {
                            Some(t) if t.encrypted && t.esp_udp => Sealing::EspUdp,
                            Some(t) if t.encrypted => Sealing::Esp,
                            _ => Sealing::Plain,
                        };
                        self.hop_cache = Some((port, hop, mac, s));
                        s
                    }
                };
                let node = match sealing {
                    Sealing::Plain => Node::Tx,
                    Sealing::Esp => Node::EspSeal,
                    Sealing::EspUdp => {
                        let f = pool.flags(&b) | esp::FLAG_UDP;
                        pool.set_flags(&mut b, f);
                        Node::EspSeal
                    }
                };
                Ok(Some((b, Next::to(node as u16, up.port))))
            }
            Resolve::Held => {
                io.sent(flags);
                let c = io.cx.stats.port(port);
                c.tx_packets.inc();
                c.tx_bytes.add(len);
                if let Some(id) = id {
                    let what = Detail::Neigh {
                        ip: hop,
                        state: "resolving: held until it answers",
                    };
                    io.trace.record(id, io.cx.worker, Self::NAME, what);
                }
                Ok(None)
            }
            Resolve::Drop(mut b, why) => {
                pool.set_flags(&mut b, flags & !FLAG_HELD);
                if T {
                    let state = io.host.state_name(hop);
                    io.rec::<T>(Self::NAME, &b, Detail::Neigh { ip: hop, state });
                }
                Err((b, why))
            }
        }
    }

    /// Whether the frame with offload work in `b` may be encapsulated whole: a TCP super-frame
    /// with a partial checksum at its (untagged) TCP header, into a plain (not encrypted)
    /// tunnel, for an uplink that takes UDP tunnel super-frames. Its segment size is lowered
    /// here if a segment would not fit the tunnel. Otherwise (false) it is finished in
    /// software first, as [`Encap::segments`] does.
    /// The largest inner frame tunnel port `port` carries: what fits the uplink MTU with
    /// VXLAN's headers, and ESP's too for an encrypted network.
    fn max_inner(&self, io: &Io<'_, '_>, port: PortId) -> Option<usize> {
        let max = self.tunnels.get(port as usize)?.as_ref()?.max_inner_frame();
        match (io.cfg.port(port).and_then(|p| p.tunnel), io.host.uplink()) {
            (Some(t), Some(up)) if t.encrypted => {
                let esp = crate::esp::overlay_mtu_encap(up.mtu, t.esp_udp) as usize;
                Some(max.min(esp + super::INNER_ETH_LEN))
            }
            _ => Some(max),
        }
    }

    #[inline]
    fn whole<const T: bool>(&mut self, io: &mut Io<'_, '_>, port: PortId, b: &mut Buf) -> bool {
        let pool = &*self.pool;
        let Some(up) = io.host.uplink() else {
            return false;
        };
        let mut o = pool.offload(b);
        if !o.is_tcp_gso() || o.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
            return false;
        }
        // ESP seals each wire packet: an encrypted network's super-frame goes on whole only
        // to be sealed into UDP super-frames (ESP in UDP, an uplink with USO; `esp-seal` cuts
        // it), and its segments must fit the uplink sealed. Otherwise it is cut first.
        match io.cfg.port(port).and_then(|p| p.tunnel) {
            Some(t) if !t.encrypted && up.tunnel_gso => {}
            Some(t) if t.encrypted && t.esp_udp && up.uso && !(T && pool.traced(b)) => {}
            _ => return false,
        }
        let Some(max) = self.max_inner(io, port) else {
            return false;
        };
        let Ok(plan) = TcpSegments::plan(pool.data(b), &o, usize::from(u16::MAX) + 18) else {
            return false;
        };
        if plan.l3_off != super::INNER_ETH_LEN || usize::from(o.csum_start) != plan.l4_off {
            return false;
        }
        if plan.hdr_len + plan.mss > max {
            let Some(fit) = max.checked_sub(plan.hdr_len).filter(|&f| f > 0) else {
                return false;
            };
            o.gso_size = u16::try_from(fit).unwrap_or(u16::MAX);
            self.ev.inc(io.cx.stats, EncapEvent::MssClamped);
        }
        // The header length as a hint for the kernel: exactly the headers.
        o.hdr_len = u16::try_from(plan.hdr_len).unwrap_or(0);
        pool.set_offload(b, o);
        true
    }

    /// A frame with offload work: finished in software first (the checksum completed, a
    /// super-frame cut to its MSS), since once encapsulated its TCP header is hidden from
    /// whatever could do it later. The frame counts as sent once one segment is; segments lost
    /// after that count on the tunnel port (`tx_dropped`), as a queue refusing part of a burst
    /// would.
    #[cold]
    fn segments<const T: bool>(
        &mut self,
        io: &mut Io<'_, '_>,
        frames: &mut Frames,
        port: PortId,
        b: Buf,
        out: &mut Burst,
    ) {
        let pool = self.pool.clone();
        let mut b = b;
        let flags = pool.flags(&b);
        let (trace_word, word0) = (pool.word(&b, crate::trace::TRACE_WORD), pool.word(&b, 0));
        // Segments that would not fit the tunnel are cut smaller instead (a sender whose MTU
        // is above the overlay's): each must fit as an inner frame.
        let max_inner = self.max_inner(io, port);
        let mut o = pool.offload(&b);
        if let (Some(max), true) = (max_inner, o.is_tcp_gso()) {
            if let Ok(plan) = TcpSegments::plan(pool.data(&b), &o, usize::from(u16::MAX) + 18) {
                let fit = max.saturating_sub(plan.hdr_len);
                if plan.hdr_len + plan.mss > max && fit > 0 {
                    o.gso_size = u16::try_from(fit).unwrap_or(u16::MAX);
                    pool.set_offload(&mut b, o);
                    self.ev.inc(io.cx.stats, EncapEvent::MssClamped);
                }
            }
        }
        let mut segs = std::mem::take(&mut self.segments);
        // Pushing stays within the capacity: no super-frame is cut into more than MAX_SEGMENTS.
        let r = swoffload::resolve(io.cx.cache, b, TxCaps::Plain, |_, s| segs.push(s));
        let (mut sent, mut lost, mut first_err) = (false, 0u64, None);
        for (i, mut s) in segs.drain(..).enumerate() {
            // Only the first segment carries the forwarded mark: the frame counts once.
            let f = if i == 0 { flags } else { flags & !FLAG_FWD };
            pool.set_flags(&mut s, f);
            pool.set_word(&mut s, crate::trace::TRACE_WORD, trace_word);
            pool.set_word(&mut s, 0, word0);
            match self.one::<T>(io, frames, port, s) {
                Ok(Some((s, next))) => {
                    sent = true;
                    // Behind what the output holds (frames of the burst before this one).
                    let mut no_frame = 0u64;
                    frames.push_in_order(out, s, next, |s| {
                        io.cx.cache.free(s);
                        no_frame += 1;
                    });
                    lost += no_frame;
                }
                Ok(None) => sent = true,
                Err((s, why)) => {
                    io.cx.cache.free(s);
                    lost += 1;
                    first_err.get_or_insert(why);
                }
            }
        }
        self.segments = segs;
        let c = io.cx.stats.port(port);
        if r.is_ok_and(|r| r.cut) {
            c.tx_segmented.inc();
        }
        if sent {
            c.tx_dropped.add(lost);
            if lost > 0 {
                let i = self.drops.index(TunnelDrop::SegmentLost);
                io.cx.stats.pipeline.at(i).add(lost);
            }
            if r.is_err() {
                c.tx_offload_dropped.inc();
            }
            return;
        }
        match (r, first_err) {
            (Err(_), _) => io.count_drop(self.drops.index(TunnelDrop::OffloadFailed), flags),
            (Ok(_), Some(why)) => io.count_drop(why, flags),
            // Nothing emitted and nothing failed cannot happen (a resolved frame emits one).
            (Ok(_), None) => {}
        }
    }
}
