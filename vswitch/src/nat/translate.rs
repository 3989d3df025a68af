//! Parsing and rewriting the packets NAT translates, in place, on Ethernet frames.
//!
//! What is translated: IPv4 TCP and UDP (by port), ICMP echo (by identifier; requests going out,
//! replies coming in), and ICMP errors (destination unreachable, time exceeded, parameter
//! problem) about a translated flow, whose embedded header is rewritten as RFC 5508 section 4.2
//! asks: the embedded packet went the other way, so an error coming in has the mapping as its
//! embedded *source*, and one going out has the inside endpoint as its embedded *destination*.
//!
//! Checksums (dataplane::checksum):
//! * The IPv4 header checksum and the TCP/UDP checksums are updated incrementally (RFC 1624
//!   eqn. 3) for the changed address and port: a packet costs a few adds whatever its size, and
//!   a wrong checksum stays wrong (the receiver still drops it).
//! * A UDP checksum of 0 (none) stays 0; an update that gives 0 is sent as 0xFFFF.
//! * A *partial* checksum (the frame came from a TAP with offloads and carries
//!   `VIRTIO_NET_HDR_F_NEEDS_CSUM`): the field holds only the folded pseudo-header sum, and
//!   whoever completes it later sums the L4 bytes, the new port included. So only the address
//!   change is applied to it, uncomplemented (`!update32(!field, old, new)`). A TCP super-frame
//!   (TSO) always has a partial checksum: it is translated whole, headers only, and cut later
//!   (by the kernel behind the output TAP, or by the output stage in software).
//! * ICMP checksums cover no pseudo-header: an echo identifier change is one `update16`; an
//!   ICMP error (rare, at most a few hundred bytes) has its checksum recomputed whole after the
//!   embedded header is rewritten.
//!
//! Every check is in [`parse`]; after it, the rewrites cannot fail for want of bytes (they
//! still check, never panic). Fragments are not translated (no reassembly): they are dropped as
//! `nat_fragment`.

use super::proto;
use dataplane::checksum::{checksum, update16, update32};
use dataplane::named_counters;

named_counters! {
    /// Why NAT refuses a packet.
    pub enum NatDrop {
        /// Not IPv4 (the gateway routes IPv4 only).
        NotIpv4 => "nat_not_ipv4",
        /// IPv4 header shorter than 20 bytes, a bad version or length fields beyond the frame.
        BadIpHeader => "nat_bad_ip_header",
        /// An IPv4 fragment (fragments are not reassembled, so they cannot be translated).
        Fragment => "nat_fragment",
        /// TCP/UDP/ICMP header cut short.
        Truncated => "nat_truncated",
        /// A protocol other than TCP, UDP and ICMP.
        Protocol => "nat_unsupported_protocol",
        /// ICMP other than echo (request out, reply in) and errors about a flow.
        IcmpType => "nat_icmp_unsupported",
        /// A partial checksum whose place is not the TCP/UDP checksum field.
        BadOffload => "nat_bad_offload",
        /// Returning traffic (or an ICMP error) that matches no session.
        NoSession => "nat_no_session",
        /// A TCP segment without SYN that would start a session.
        TcpNotSyn => "nat_tcp_not_syn",
        /// No free outside port in this worker's share of the range.
        PortsExhausted => "nat_ports_exhausted",
        /// The session table is full of sessions that are not embryonic.
        TableFull => "nat_table_full",
        /// Returning traffic for a session another worker owns, with no ring to hand it over
        /// (a worker driven alone, as in tests), or that ring's collection full.
        OtherWorker => "nat_other_worker",
        /// Handed-over frames the owner's ring had no room for.
        HandoffFull => "nat_handoff_full",
    }
}

/// Which way a packet goes through NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From a network out of the uplink (source translated).
    Out,
    /// From the uplink into a network (destination translated back).
    In,
}

/// The header fields of a packet embedded in an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inner {
    /// Offset of its IPv4 header in the frame.
    pub l3: usize,
    /// Offset of its L4 header.
    pub l4: usize,
    /// Its protocol.
    pub proto: u8,
    /// Its source address.
    pub src: u32,
    /// Its destination address.
    pub dst: u32,
    /// Its source port (ICMP echo: identifier).
    pub sport: u16,
    /// Its destination port (ICMP echo: identifier).
    pub dport: u16,
}

/// What kind of packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP or UDP.
    Ports,
    /// ICMP echo request or reply.
    Echo,
    /// An ICMP error about the embedded packet.
    IcmpError(Inner),
}

/// A parsed IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Offset of the IPv4 header in the frame.
    pub l3: usize,
    /// Offset of the L4 header.
    pub l4: usize,
    /// End of the IP packet in the frame (`l3 + total length`).
    pub end: usize,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Source port (ICMP echo: identifier).
    pub sport: u16,
    /// Destination port (ICMP echo: identifier).
    pub dport: u16,
    /// TCP flags (0 for others).
    pub tcp_flags: u8,
    /// Time to live.
    pub ttl: u8,
    /// Don't Fragment set.
    pub df: bool,
    /// ICMP type (0 for others).
    pub icmp_type: u8,
    /// The L4 checksum is partial (see the module doc).
    pub partial: bool,
    /// What kind.
    pub kind: Kind,
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

#[inline]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) -> Option<()> {
    b.get_mut(at..at.checked_add(2)?)?
        .copy_from_slice(&v.to_be_bytes());
    Some(())
}

#[inline]
fn put32(b: &mut [u8], at: usize, v: u32) -> Option<()> {
    b.get_mut(at..at.checked_add(4)?)?
        .copy_from_slice(&v.to_be_bytes());
    Some(())
}

/// ICMP types.
pub mod icmp {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACH: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
}

/// The fixed part of an IPv4 header: (header length, total length, protocol, src, dst,
/// flags/fragment word, ttl).
type IpHdr = (usize, usize, u8, u32, u32, u16, u8);

/// The fixed part of the IPv4 header at `l3`.
fn ip_header(b: &[u8], l3: usize) -> Result<IpHdr, NatDrop> {
    let vihl = *b.get(l3).ok_or(NatDrop::BadIpHeader)?;
    if vihl >> 4 != 4 {
        return Err(NatDrop::BadIpHeader);
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(be16(b, l3 + 2).ok_or(NatDrop::BadIpHeader)?);
    if ihl < 20 || b.len() < l3 + ihl {
        return Err(NatDrop::BadIpHeader);
    }
    let frag = be16(b, l3 + 6).ok_or(NatDrop::BadIpHeader)?;
    let ttl = *b.get(l3 + 8).ok_or(NatDrop::BadIpHeader)?;
    let p = *b.get(l3 + 9).ok_or(NatDrop::BadIpHeader)?;
    let src = be32(b, l3 + 12).ok_or(NatDrop::BadIpHeader)?;
    let dst = be32(b, l3 + 16).ok_or(NatDrop::BadIpHeader)?;
    Ok((ihl, total, p, src, dst, frag, ttl))
}

/// Parses the IPv4 packet after the Ethernet header (`l3`, 14 once VLAN tags are gone) of
/// `frame`, going `way`. `partial` is the frame's `(csum_start, csum_offset)` when its L4
/// checksum is partial.
pub fn parse(
    frame: &[u8],
    l3: usize,
    way: Way,
    partial: Option<(usize, usize)>,
) -> Result<Flow, NatDrop> {
    let et = be16(frame, l3.wrapping_sub(2)).ok_or(NatDrop::NotIpv4)?;
    if et != 0x0800 {
        return Err(NatDrop::NotIpv4);
    }
    let (ihl, total, p, src, dst, frag, ttl) = ip_header(frame, l3)?;
    // A super-frame from a TAP may carry 0 or a capped total length; trust the frame then.
    let end = if total == 0 && partial.is_some() {
        frame.len()
    } else {
        if total < ihl || l3 + total > frame.len() {
            return Err(NatDrop::BadIpHeader);
        }
        l3 + total
    };
    if frag & 0x3fff != 0 {
        return Err(NatDrop::Fragment);
    }
    let l4 = l3 + ihl;
    let seg = frame.get(l4..end).ok_or(NatDrop::BadIpHeader)?;
    let mut f = Flow {
        l3,
        l4,
        end,
        proto: p,
        src,
        dst,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        ttl,
        df: frag & 0x4000 != 0,
        icmp_type: 0,
        partial: false,
        kind: Kind::Ports,
    };
    let csum_field = match p {
        proto::TCP => {
            if seg.len() < 20 {
                return Err(NatDrop::Truncated);
            }
            f.sport = be16(seg, 0).ok_or(NatDrop::Truncated)?;
            f.dport = be16(seg, 2).ok_or(NatDrop::Truncated)?;
            f.tcp_flags = *seg.get(13).ok_or(NatDrop::Truncated)?;
            l4 + 16
        }
        proto::UDP => {
            if seg.len() < 8 {
                return Err(NatDrop::Truncated);
            }
            f.sport = be16(seg, 0).ok_or(NatDrop::Truncated)?;
            f.dport = be16(seg, 2).ok_or(NatDrop::Truncated)?;
            l4 + 6
        }
        proto::ICMP => {
            if seg.len() < 8 {
                return Err(NatDrop::Truncated);
            }
            let ty = *seg.first().ok_or(NatDrop::Truncated)?;
            f.icmp_type = ty;
            match (ty, way) {
                (icmp::ECHO_REQUEST, Way::Out) | (icmp::ECHO_REPLY, Way::In) => {
                    let id = be16(seg, 4).ok_or(NatDrop::Truncated)?;
                    (f.sport, f.dport, f.kind) = (id, id, Kind::Echo);
                }
                (icmp::DEST_UNREACH | icmp::TIME_EXCEEDED | icmp::PARAM_PROBLEM, _) => {
                    f.kind = Kind::IcmpError(inner(frame, l4 + 8, end)?);
                }
                _ => return Err(NatDrop::IcmpType),
            }
            l4 + 2
        }
        _ => return Err(NatDrop::Protocol),
    };
    if let Some((start, off)) = partial {
        if start != l4 || start.checked_add(off) != Some(csum_field) || p == proto::ICMP {
            return Err(NatDrop::BadOffload);
        }
        f.partial = true;
    }
    Ok(f)
}

/// The packet embedded in an ICMP error at `l3`, up to `end`: its IP header and the first 8
/// bytes of its L4 header (all RFC 792 promises).
fn inner(frame: &[u8], l3: usize, end: usize) -> Result<Inner, NatDrop> {
    let b = frame.get(..end).ok_or(NatDrop::Truncated)?;
    let (ihl, _, p, src, dst, frag, _) = ip_header(b, l3).map_err(|_| NatDrop::Truncated)?;
    if frag & 0x1fff != 0 {
        return Err(NatDrop::Fragment);
    }
    let l4 = l3 + ihl;
    if b.len() < l4 + 8 {
        return Err(NatDrop::Truncated);
    }
    let (sport, dport) = match p {
        proto::TCP | proto::UDP => (
            be16(b, l4).ok_or(NatDrop::Truncated)?,
            be16(b, l4 + 2).ok_or(NatDrop::Truncated)?,
        ),
        proto::ICMP => {
            let id = be16(b, l4 + 4).ok_or(NatDrop::Truncated)?;
            (id, id)
        }
        _ => return Err(NatDrop::Protocol),
    };
    Ok(Inner {
        l3,
        l4,
        proto: p,
        src,
        dst,
        sport,
        dport,
    })
}

/// Which endpoint of a packet is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source (outbound SNAT).
    Src,
    /// The destination (inbound, back to the inside).
    Dst,
}

/// Rewrites the IP header's address on `side` to `ip` (header checksum updated); returns the
/// old address.
#[inline]
fn set_addr(frame: &mut [u8], l3: usize, side: Side, ip: u32) -> Option<u32> {
    let at = l3 + if side == Side::Src { 12 } else { 16 };
    let old = be32(frame, at)?;
    put32(frame, at, ip)?;
    let c = be16(frame, l3 + 10)?;
    put16(frame, l3 + 10, update32(c, old, ip))?;
    Some(old)
}

/// Rewrites an L4 port/identifier at `port_at` and the checksum at `csum_at` for an address
/// change `old_ip` -> `ip` (counted only if `pseudo`: TCP/UDP) and the port change.
#[inline]
#[allow(clippy::too_many_arguments)]
fn set_port(
    frame: &mut [u8],
    port_at: usize,
    csum_at: usize,
    port: u16,
    old_ip: u32,
    ip: u32,
    pseudo: bool,
    udp: bool,
) -> Option<()> {
    let old_port = be16(frame, port_at)?;
    let c = be16(frame, csum_at)?;
    put16(frame, port_at, port)?;
    if udp && c == 0 {
        return Some(());
    }
    let mut c = if pseudo { update32(c, old_ip, ip) } else { c };
    c = update16(c, old_port, port);
    if udp && c == 0 {
        c = 0xffff;
    }
    put16(frame, csum_at, c)
}

/// Translates the `side` endpoint of TCP/UDP/echo packet `f` to `ip`:`port` in place.
pub fn rewrite(frame: &mut [u8], f: &Flow, side: Side, ip: u32, port: u16) -> Result<(), NatDrop> {
    let old_ip = set_addr(frame, f.l3, side, ip).ok_or(NatDrop::BadIpHeader)?;
    let port_off = if side == Side::Src { 0 } else { 2 };
    let done = match (f.proto, f.kind) {
        (proto::ICMP, _) => {
            // The identifier sits at +4 in both directions; no pseudo-header.
            let (id_at, csum_at) = (f.l4 + 4, f.l4 + 2);
            set_port(frame, id_at, csum_at, port, 0, 0, false, false)
        }
        (_, _) if f.partial => {
            // Only the pseudo-header part (the address) is in a partial checksum.
            let csum_at = f.l4 + if f.proto == proto::TCP { 16 } else { 6 };
            let c = be16(frame, csum_at).ok_or(NatDrop::Truncated)?;
            put16(frame, f.l4 + port_off, port).ok_or(NatDrop::Truncated)?;
            put16(frame, csum_at, !update32(!c, old_ip, ip))
        }
        (proto::TCP, _) => set_port(
            frame,
            f.l4 + port_off,
            f.l4 + 16,
            port,
            old_ip,
            ip,
            true,
            false,
        ),
        _ => set_port(
            frame,
            f.l4 + port_off,
            f.l4 + 6,
            port,
            old_ip,
            ip,
            true,
            true,
        ),
    };
    done.ok_or(NatDrop::Truncated)
}

/// Rewrites the embedded packet's `side` endpoint to `ip`:`port` (its header checksum and,
/// where the bytes are there, its L4 checksum updated).
fn rewrite_inner(frame: &mut [u8], inner: &Inner, side: Side, ip: u32, port: u16) -> Option<()> {
    let old_ip = set_addr(frame, inner.l3, side, ip)?;
    let port_off = if side == Side::Src { 0 } else { 2 };
    match inner.proto {
        proto::ICMP => set_port(frame, inner.l4 + 4, inner.l4 + 2, port, 0, 0, false, false),
        proto::TCP if frame.len() >= inner.l4 + 18 => set_port(
            frame,
            inner.l4 + port_off,
            inner.l4 + 16,
            port,
            old_ip,
            ip,
            true,
            false,
        ),
        proto::TCP => put16(frame, inner.l4 + port_off, port),
        _ => set_port(
            frame,
            inner.l4 + port_off,
            inner.l4 + 6,
            port,
            old_ip,
            ip,
            true,
            true,
        ),
    }
}

/// Recomputes the ICMP checksum of `f` over its whole message.
fn icmp_checksum(frame: &mut [u8], f: &Flow) -> Option<()> {
    put16(frame, f.l4 + 2, 0)?;
    let c = checksum(frame.get(f.l4..f.end)?);
    put16(frame, f.l4 + 2, c)
}

/// An ICMP error coming in about an outbound flow: its embedded source (the mapping) becomes
/// the inside endpoint `ip`:`port`, and so does the outer destination.
pub fn icmp_error_in(
    frame: &mut [u8],
    f: &Flow,
    inner: &Inner,
    ip: u32,
    port: u16,
) -> Result<(), NatDrop> {
    icmp_error(frame, f, inner, Side::Src, Side::Dst, ip, port)
}

/// An ICMP error going out about an inbound flow: its embedded destination (the inside
/// endpoint) becomes the mapping `ip`:`port`, and so does the outer source.
pub fn icmp_error_out(
    frame: &mut [u8],
    f: &Flow,
    inner: &Inner,
    ip: u32,
    port: u16,
) -> Result<(), NatDrop> {
    icmp_error(frame, f, inner, Side::Dst, Side::Src, ip, port)
}

/// Rewrites the embedded header's `inner_side` and the outer header's `outer_side` to
/// `ip`:`port` (the port only inside), then the ICMP checksum.
fn icmp_error(
    frame: &mut [u8],
    f: &Flow,
    inner: &Inner,
    inner_side: Side,
    outer_side: Side,
    ip: u32,
    port: u16,
) -> Result<(), NatDrop> {
    let buf = frame.get_mut(..f.end).ok_or(NatDrop::Truncated)?;
    rewrite_inner(buf, inner, inner_side, ip, port).ok_or(NatDrop::Truncated)?;
    set_addr(frame, f.l3, outer_side, ip).ok_or(NatDrop::BadIpHeader)?;
    icmp_checksum(frame, f).ok_or(NatDrop::Truncated)
}
