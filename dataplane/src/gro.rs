//! Software receive coalescing (GRO) for TAP transmit: consecutive in-order TCP segments of one
//! flow within one burst become one TCP super-frame, written once with a TSO virtio-net header
//! (the kernel on the far side hands it to the container's stack whole, as its own GRO would).
//!
//! Bounded by construction: only frames of the burst being transmitted are merged, nothing is
//! held past it. The rules are those of Linux's `tcp_gro_receive`, narrowed: IPv4 without
//! options, not a fragment, DF set (so identifications need not follow each other), the same
//! addresses, TOS, TTL and ports, or IPv6 with TCP straight behind the fixed header (no
//! extension headers), the same traffic class, flow label, hop limit, addresses and ports;
//! TCP with only ACK (PSH allowed on the last segment merged),
//! the same acknowledgement, window and options bytes, sequence numbers following each other,
//! every segment but the last exactly the first one's payload size, no link padding, and a TCP
//! checksum that verifies (a corrupt segment is never hidden inside a super-frame: it is
//! written alone, for the receiver to drop; [`segment_authenticated`] skips that check for a
//! segment an ESP ICV vouched for). The result's TCP checksum is left partial
//! (`NEEDS_CSUM`), as a local stack would hand it over.
//!
//! UDP (for a TAP that took `TUN_F_USO4`, see [`udp_segment`]): consecutive datagrams of one
//! 5-tuple (IPv4 without options, not a fragment, the same MACs, TOS, DF, TTL, addresses and
//! ports) whose payloads are all the first one's size, the last perhaps shorter, become one UDP
//! super-frame written with a `VIRTIO_NET_HDR_GSO_UDP_L4` header: sealed ESP-in-UDP packets
//! of one cut TCP super-frame leave in one write, as WireGuard's and Tailscale's UDP GSO do. At
//! most [`UDP_MAX_SEGMENTS`] datagrams (the kernel refuses more); a datagram whose non-zero
//! checksum does not verify is written alone.
//!
//! The code here is pure byte logic: no allocation, no `unsafe`, no panics on any input.

use crate::checksum::{checksum, fold, pseudo_header_v4, pseudo_header_v6, sum16};
pub use crate::offload::UDP_MAX_SEGMENTS;
use crate::offload::{
    VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
};
use crate::wire::{be16_at, be32_at};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Bytes of Ethernet + IPv4 (no options) in front of the TCP header.
const L4: usize = 14 + 20;
/// Bytes of Ethernet + IPv6 (no extension headers) in front of the TCP header.
const L6: usize = 14 + 40;
/// TCP flag bits.
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// What one segment says about itself, for [`follows`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seg {
    /// Bytes of all headers (Ethernet, IPv4, TCP with options).
    pub hdr_len: usize,
    /// TCP payload bytes.
    pub payload: usize,
    /// Sequence number.
    pub seq: u32,
    /// PSH set (the segment ends a merge).
    pub psh: bool,
    /// A UDP datagram ([`udp_segment`]), not a TCP segment.
    pub udp: bool,
    /// TCP over IPv6 (else over IPv4).
    pub v6: bool,
}

impl Seg {
    /// Where the TCP or UDP header starts.
    fn l4(&self) -> usize {
        if self.v6 {
            L6
        } else {
            L4
        }
    }
}

/// Bytes of Ethernet + IPv4 (no options) + UDP in front of a datagram's payload.
const UDP_HDRS: usize = L4 + 8;

/// The segment in `frame` if it may take part in a merge (see the module documentation),
/// its TCP checksum verified.
#[must_use]
pub fn segment(frame: &[u8]) -> Option<Seg> {
    segment_with(frame, true)
}

/// As [`segment`], the TCP checksum not verified: for a segment whose integrity something
/// stronger vouches for (an ESP ICV that verified over it, as Linux takes NAT-T transport-mode
/// ESP's inner checksums as unnecessary).
#[must_use]
pub fn segment_authenticated(frame: &[u8]) -> Option<Seg> {
    segment_with(frame, false)
}

/// [`segment`], with or without verifying the TCP checksum.
fn segment_with(frame: &[u8], verify: bool) -> Option<Seg> {
    if be16_at(frame, 12)? == 0x86DD {
        return segment_v6(frame, verify);
    }
    if be16_at(frame, 12)? != 0x0800 || *frame.get(14)? != 0x45 || *frame.get(23)? != 6 {
        return None;
    }
    // DF only: no fragment, and identifications need not follow each other.
    if be16_at(frame, 20)? != 0x4000 {
        return None;
    }
    let total = usize::from(be16_at(frame, 16)?);
    if total + 14 != frame.len() {
        return None;
    }
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(frame.get(26..30)?).ok()?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(frame.get(30..34)?).ok()?);
    let len = u16::try_from(frame.len().checked_sub(L4)?).ok()?;
    tcp_segment(
        frame,
        L4,
        verify.then(|| pseudo_header_v4(src, dst, 6, len)),
    )
}

/// [`segment`] for TCP over IPv6: TCP right behind the fixed header, a payload length that
/// describes the frame exactly.
fn segment_v6(frame: &[u8], verify: bool) -> Option<Seg> {
    if *frame.get(14)? >> 4 != 6 || *frame.get(20)? != 6 {
        return None;
    }
    let plen = usize::from(be16_at(frame, 18)?);
    if plen + L6 != frame.len() {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(frame.get(22..38)?).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(frame.get(38..54)?).ok()?);
    let len = u32::try_from(plen).ok()?;
    tcp_segment(
        frame,
        L6,
        verify.then(|| pseudo_header_v6(&src, &dst, 6, len)),
    )
}

/// The TCP part of [`segment`], the TCP header at `l4` and `pseudo` its pseudo-header sum
/// (none: the checksum is not verified): only ACK (and PSH), a payload, and a checksum that
/// verifies.
fn tcp_segment(frame: &[u8], l4: usize, pseudo: Option<u32>) -> Option<Seg> {
    let doff = usize::from(frame.get(l4 + 12)? >> 4) * 4;
    let flags = *frame.get(l4 + 13)?;
    let hdr_len = l4 + doff;
    if doff < 20 || hdr_len >= frame.len() || flags & !PSH != ACK {
        return None;
    }
    if let Some(pseudo) = pseudo {
        if fold(sum16(frame.get(l4..)?, pseudo)) != 0xFFFF {
            return None;
        }
    }
    Some(Seg {
        hdr_len,
        payload: frame.len() - hdr_len,
        seq: be32_at(frame, l4 + 4)?,
        psh: flags & PSH != 0,
        udp: false,
        v6: l4 == L6,
    })
}

/// The UDP datagram in `frame` if it may take part in a UDP merge (see the module
/// documentation): IPv4 without options, not a fragment, lengths that describe the frame
/// exactly, a payload, and a checksum that is zero (none, as ESP in UDP sends) or verifies.
#[must_use]
pub fn udp_segment(frame: &[u8]) -> Option<Seg> {
    if be16_at(frame, 12)? != 0x0800 || *frame.get(14)? != 0x45 || *frame.get(23)? != 17 {
        return None;
    }
    if be16_at(frame, 20)? & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(be16_at(frame, 16)?);
    let udp_len = usize::from(be16_at(frame, L4 + 4)?);
    if total + 14 != frame.len() || udp_len + L4 != frame.len() || frame.len() <= UDP_HDRS {
        return None;
    }
    if be16_at(frame, L4 + 6)? != 0 {
        let src = Ipv4Addr::from(<[u8; 4]>::try_from(frame.get(26..30)?).ok()?);
        let dst = Ipv4Addr::from(<[u8; 4]>::try_from(frame.get(30..34)?).ok()?);
        let udp = frame.get(L4..)?;
        let len = u16::try_from(udp.len()).ok()?;
        if fold(sum16(udp, pseudo_header_v4(src, dst, 17, len))) != 0xFFFF {
            return None;
        }
    }
    Some(Seg {
        hdr_len: UDP_HDRS,
        payload: frame.len() - UDP_HDRS,
        seq: 0,
        psh: false,
        udp: true,
        v6: false,
    })
}

/// Whether datagram `next` (in `frame`) may be appended to the UDP merge whose first datagram
/// is `first` (in `head`), whose last was `last`: the same 5-tuple and IP fields (all but the
/// lengths, identification and checksums), every datagram but the last the first's size.
#[must_use]
fn udp_follows(head: &[u8], first: &Seg, last: &Seg, frame: &[u8], next: &Seg) -> bool {
    let same = |a: usize, b: usize| head.get(a..b).is_some_and(|h| frame.get(a..b) == Some(h));
    next.udp
        && last.payload == first.payload
        && next.payload <= first.payload
        // MACs, ethertype, version, TOS; flags and fragment offset; TTL, protocol;
        // addresses and ports.
        && same(0, 16)
        && same(20, 24)
        && same(26, UDP_HDRS - 4)
}

/// Whether segment `next` (in `frame`) may be appended to the merge whose first segment is
/// `first` (in `head`, whose header bytes the merge keeps), whose last segment was `last`.
#[must_use]
pub fn follows(head: &[u8], first: &Seg, last: &Seg, frame: &[u8], next: &Seg) -> bool {
    if first.udp {
        return udp_follows(head, first, last, frame, next);
    }
    let same = |a: usize, b: usize| head.get(a..b).is_some_and(|h| frame.get(a..b) == Some(h));
    let l4 = first.l4();
    let ip_same = if first.v6 {
        // MACs and ethertype; version, traffic class, flow label; next header, hop limit,
        // addresses (all but the payload length).
        next.v6 && same(0, 18) && same(20, L6 + 4)
    } else {
        // MACs and ethertype; version, TOS; TTL, protocol; addresses; ports (all but the
        // lengths, identification and checksum).
        !next.v6 && same(0, 16) && same(22, 24) && same(26, L4 + 4)
    };
    !last.psh
        && !next.udp
        && ip_same
        && last.payload == first.payload
        && next.payload <= first.payload
        && next.hdr_len == first.hdr_len
        && last.seq.wrapping_add(last.payload as u32) == next.seq
        // The acknowledgement, data offset, window, and the options (all but seq, flags and
        // the checksum).
        && same(l4 + 8, l4 + 13)
        && same(l4 + 14, l4 + 16)
        && same(l4 + 18, first.hdr_len)
}

/// Finishes a merged super-frame of `frame.len()` bytes in place (a UDP merge: as the module
/// documentation says; a TCP one: its first segment's headers,
/// then every payload, the last segment's PSH folded into the flags): IPv4 total length and
/// header checksum, the TCP checksum left partial. Returns the offload facts to write it with.
/// None (the frame unchanged) if it is not IPv4/TCP as [`segment`] accepted or too long.
#[must_use]
pub fn finish(frame: &mut [u8], first: &Seg, psh: bool) -> Option<VnetHdr> {
    let len = frame.len();
    finish_head(frame, len, first, psh)
}

/// As [`finish`], for a super-frame of `len` bytes of which `head` holds the start (at least
/// the first segment's headers): the rest is written behind it without being copied here.
#[must_use]
pub fn finish_head(frame: &mut [u8], len: usize, first: &Seg, psh: bool) -> Option<VnetHdr> {
    if frame.len() < first.hdr_len {
        return None;
    }
    let l4 = first.l4();
    let l4_len = u16::try_from(len.checked_sub(l4)?).ok()?;
    // The IP lengths and the pseudo-header: IPv6's payload length (no header checksum), or
    // IPv4's total length and header checksum.
    let proto = if first.udp { 17 } else { 6 };
    let pseudo = if first.v6 {
        frame
            .get_mut(18..20)?
            .copy_from_slice(&l4_len.to_be_bytes());
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(frame.get(22..38)?).ok()?);
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(frame.get(38..54)?).ok()?);
        pseudo_header_v6(&src, &dst, proto, u32::from(l4_len))
    } else {
        let total = u16::try_from(len.checked_sub(14)?).ok()?;
        frame.get_mut(16..18)?.copy_from_slice(&total.to_be_bytes());
        frame.get_mut(24..26)?.copy_from_slice(&[0, 0]);
        let ip = checksum(frame.get(14..L4)?);
        frame.get_mut(24..26)?.copy_from_slice(&ip.to_be_bytes());
        let src = Ipv4Addr::from(<[u8; 4]>::try_from(frame.get(26..30)?).ok()?);
        let dst = Ipv4Addr::from(<[u8; 4]>::try_from(frame.get(30..34)?).ok()?);
        pseudo_header_v4(src, dst, proto, l4_len)
    };
    // UDP: its length field, the checksum at 6 (the kernel adjusts it per datagram); TCP: the
    // last segment's PSH, the checksum at 16.
    let (gso_type, csum_offset) = if first.udp {
        frame
            .get_mut(l4 + 4..l4 + 6)?
            .copy_from_slice(&l4_len.to_be_bytes());
        (VIRTIO_NET_HDR_GSO_UDP_L4, 6)
    } else {
        if psh {
            *frame.get_mut(l4 + 13)? |= PSH;
        }
        let tso = if first.v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        };
        (tso, 16)
    };
    let at = l4 + usize::from(csum_offset);
    frame
        .get_mut(at..at + 2)?
        .copy_from_slice(&fold(pseudo).to_be_bytes());
    Some(VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type,
        hdr_len: u16::try_from(first.hdr_len).ok()?,
        gso_size: u16::try_from(first.payload).ok()?,
        csum_start: u16::try_from(l4).ok()?,
        csum_offset,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::{complete_checksum, TcpSegments};

    /// A TCPv4 super-frame (DF, timestamps) with `payload` bytes and its TSO facts.
    fn super_frame(payload: usize, flags: u8) -> (Vec<u8>, VnetHdr) {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 32 + payload) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0, 7]);
        f.extend_from_slice(&[0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        f.extend((0..payload).map(|i| (i * 7 + i / 251) as u8));
        let ol = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        (f, ol)
    }

    /// The `count` segments `write` makes, each into a buffer of its own.
    fn segments(
        count: usize,
        write: impl Fn(usize, &mut [u8]) -> Result<usize, crate::offload::OffloadError>,
    ) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let mut s = vec![0u8; 2000];
                let n = write(i, &mut s).unwrap();
                s.truncate(n);
                s
            })
            .collect()
    }

    fn cut(f: &[u8], ol: &VnetHdr) -> Vec<Vec<u8>> {
        let plan = TcpSegments::plan(f, ol, 2000).unwrap();
        segments(plan.count, |i, out| plan.write_segment(f, i, out))
    }

    /// Merges TCP `segs` as the TAP does, returning the super-frame and its facts.
    fn merge(segs: &[Vec<u8>]) -> Option<(Vec<u8>, VnetHdr)> {
        merge_by(segs, segment)
    }

    /// Merges `segs`, each taken by `classify` ([`segment`] or [`udp_segment`]), all or
    /// nothing, as the TAP does.
    fn merge_by(
        segs: &[Vec<u8>],
        classify: fn(&[u8]) -> Option<Seg>,
    ) -> Option<(Vec<u8>, VnetHdr)> {
        let first = classify(&segs[0])?;
        let mut out = segs[0].clone();
        let mut last = first;
        for s in &segs[1..] {
            let next = classify(s)?;
            if !follows(&out, &first, &last, s, &next) {
                return None;
            }
            out.extend_from_slice(&s[next.hdr_len..]);
            last = next;
        }
        let ol = finish(&mut out, &first, last.psh)?;
        Some((out, ol))
    }

    /// Cutting a super-frame and merging the segments gives back the super-frame (its IP
    /// identification and partial checksum as a stack hands them over), and cutting that
    /// again gives the same segments.
    #[test]
    fn merging_segments_gives_back_the_super_frame() {
        let (f, ol) = super_frame(4500, ACK | PSH);
        let segs = cut(&f, &ol);
        assert_eq!(segs.len(), 5);
        let (merged, mol) = merge(&segs).unwrap();
        assert_eq!(merged.len(), f.len());
        assert_eq!(mol, ol);
        // Differs from the original only where a stack's would: nothing (same id, partial sum).
        let mut want = f.clone();
        let partial = fold(pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            (f.len() - 34) as u16,
        ));
        want[50..52].copy_from_slice(&partial.to_be_bytes());
        assert_eq!(merged, want);
        assert_eq!(cut(&merged, &mol), segs);
        let mut done = merged.clone();
        complete_checksum(&mut done, 34, 16).unwrap();
        assert!(segment(&done).is_some(), "the completed checksum verifies");
    }

    /// A TCPv6 super-frame (timestamps) with `payload` bytes and its TSO facts.
    fn super_frame_v6(payload: usize, flags: u8) -> (Vec<u8>, VnetHdr) {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        let plen = (32 + payload) as u16;
        f.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
        f.extend_from_slice(&plen.to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend_from_slice(&V6_SRC.octets());
        f.extend_from_slice(&V6_DST.octets());
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0, 7]);
        f.extend_from_slice(&[0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        f.extend((0..payload).map(|i| (i * 11 + i / 253) as u8));
        let partial = fold(pseudo_header_v6(&V6_SRC, &V6_DST, 6, u32::from(plen)));
        f[L6 + 16..L6 + 18].copy_from_slice(&partial.to_be_bytes());
        let ol = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
            hdr_len: (L6 + 32) as u16,
            gso_size: 1000,
            csum_start: L6 as u16,
            csum_offset: 16,
            ..Default::default()
        };
        (f, ol)
    }

    const V6_SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const V6_DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    /// The IPv4 test's round trip, for TCP over IPv6: cut, merged back to the super-frame as a stack
    /// hands it over (payload length, partial checksum), cut again to the same segments, and
    /// the completed checksum verifies.
    #[test]
    fn merging_ipv6_segments_gives_back_the_super_frame() {
        let (f, ol) = super_frame_v6(4500, ACK | PSH);
        let segs = cut(&f, &ol);
        assert_eq!(segs.len(), 5);
        assert!(segs.iter().all(|s| segment(s).is_some_and(|g| g.v6)));
        let (merged, mol) = merge(&segs).unwrap();
        assert_eq!(mol, ol);
        assert_eq!(merged, f);
        assert_eq!(cut(&merged, &mol), segs);
        let mut done = merged.clone();
        complete_checksum(&mut done, L6, 16).unwrap();
        assert!(segment(&done).is_some(), "the completed checksum verifies");
    }

    /// What stops an IPv6 merge: another flow label or hop limit, an extension header, a bad
    /// checksum, a gap in the sequence, and IPv4 and IPv6 segments never mix.
    #[test]
    fn ipv6_segments_that_differ_are_not_merged() {
        let (f, ol) = super_frame_v6(3000, ACK);
        let segs = cut(&f, &ol);
        assert!(merge(&segs).is_some());
        let recsum6 = |s: &mut Vec<u8>| {
            s[L6 + 16..L6 + 18].copy_from_slice(&[0, 0]);
            let c = !fold(sum16(
                &s[L6..],
                pseudo_header_v6(&V6_SRC, &V6_DST, 6, (s.len() - L6) as u32),
            ));
            s[L6 + 16..L6 + 18].copy_from_slice(&c.to_be_bytes());
        };
        for (what, at, v) in [("flow label", 17, 0x99u8), ("hop limit", 21, 63)] {
            let mut other = segs.clone();
            other[1][at] = v;
            assert!(merge(&other).is_none(), "{what} differs");
        }
        let mut ext = segs.clone();
        ext[0][20] = 0; // hop-by-hop options next: not TCP straight behind the header
        assert!(segment(&ext[0]).is_none(), "extension header");
        let mut bad = segs.clone();
        bad[1][L6 + 40] ^= 1;
        assert!(segment(&bad[1]).is_none(), "bad checksum");
        let mut gap = segs.clone();
        let seq = be32_at(&gap[2], L6 + 4).unwrap().wrapping_add(1);
        gap[2][L6 + 4..L6 + 8].copy_from_slice(&seq.to_be_bytes());
        recsum6(&mut gap[2]);
        assert!(segment(&gap[2]).is_some());
        assert!(merge(&gap).is_none(), "sequence gap");
        let (f4, ol4) = super_frame(1000, ACK);
        let mut mixed = segs.clone();
        mixed[1] = cut(&f4, &ol4)[0].clone();
        assert!(merge(&mixed).is_none(), "IPv4 after IPv6");
        // Random bytes behind an IPv6 ethertype never panic.
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..200 {
            let mut r: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if len > 14 {
                r[12] = 0x86;
                r[13] = 0xdd;
                r[14] = 0x60;
            }
            let _ = segment(&r);
        }
    }

    /// Finishing only the head of a merge (the payloads written behind it from elsewhere)
    /// changes the same bytes and gives the same facts as finishing the whole frame.
    #[test]
    fn finishing_the_head_is_finishing_the_frame() {
        for (f, ol) in [
            super_frame(4500, ACK | PSH),
            super_frame_v6(4500, ACK | PSH),
        ] {
            let segs = cut(&f, &ol);
            let first = segment(&segs[0]).unwrap();
            let last = segment(segs.last().unwrap()).unwrap();
            let mut whole = segs[0].clone();
            for s in &segs[1..] {
                whole.extend_from_slice(&s[first.hdr_len..]);
            }
            let len = whole.len();
            let want = finish(&mut whole, &first, last.psh).unwrap();
            let mut head = segs[0][..first.hdr_len].to_vec();
            let got = finish_head(&mut head, len, &first, last.psh).unwrap();
            assert_eq!(got, want);
            assert_eq!(head[..], whole[..first.hdr_len]);
            assert!(finish_head(&mut head[..first.hdr_len - 1], len, &first, false).is_none());
        }
    }

    /// Recomputes the TCP checksum of segment `s` in full.
    fn recsum(s: &mut [u8]) {
        s[50..52].copy_from_slice(&[0, 0]);
        let src = Ipv4Addr::new(s[26], s[27], s[28], s[29]);
        let dst = Ipv4Addr::new(s[30], s[31], s[32], s[33]);
        let c = !fold(sum16(
            &s[34..],
            pseudo_header_v4(src, dst, 6, (s.len() - 34) as u16),
        ));
        s[50..52].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn what_is_not_merged() {
        let (f, ol) = super_frame(3000, ACK);
        let segs = cut(&f, &ol);
        assert!(merge(&segs).is_some());
        // Out of order, a gap, a short segment before the last, a corrupt checksum.
        assert!(merge(&[segs[1].clone(), segs[0].clone()]).is_none());
        assert!(merge(&[segs[0].clone(), segs[2].clone()]).is_none());
        let (g, gol) = super_frame(2500, ACK);
        let short = cut(&g, &gol);
        assert!(merge(&[short[2].clone(), segs[1].clone()]).is_none());
        let mut bad = segs[1].clone();
        bad[80] ^= 1;
        assert!(segment(&bad).is_none());
        // Unless something stronger vouched for it (an ESP ICV): then only the checksum is
        // not looked at.
        assert_eq!(
            segment_authenticated(&bad),
            segment(&segs[1]),
            "the same facts, checksum unread"
        );
        let mut syn = segs[1].clone();
        syn[47] = 0x12;
        assert!(
            segment_authenticated(&syn).is_none(),
            "still only ACK and PSH"
        );
        // Another flow (port), another ack, other options or window (checksums fixed, so only
        // the comparison refuses them); SYN or FIN; no DF; padding.
        let first = segment(&segs[0]).unwrap();
        for (at, v) in [
            (35usize, 0x41u8),
            (45, 9),
            (60, 0x99),
            (49, 0x33),
            (15, 0x10),
        ] {
            let mut other = segs[1].clone();
            other[at] = v;
            if at == 15 {
                other[24..26].copy_from_slice(&[0, 0]);
                let c = checksum(&other[14..34]);
                other[24..26].copy_from_slice(&c.to_be_bytes());
            }
            recsum(&mut other);
            let next = segment(&other).expect("a valid segment on its own");
            assert!(
                !follows(&segs[0], &first, &first, &other, &next),
                "byte {at} = {v:#x}"
            );
        }
        for flags in [0x12u8, 0x11, 0x14, 0x18 | 0x20] {
            let mut other = segs[1].clone();
            other[47] = flags;
            recsum(&mut other);
            assert!(segment(&other).is_none(), "flags {flags:#x}");
        }
        let mut frag = segs[0].clone();
        frag[20] = 0;
        assert!(segment(&frag).is_none());
        let mut padded = segs[0].clone();
        padded.push(0);
        assert!(segment(&padded).is_none());
        // PSH ends a merge: nothing follows a segment that has it.
        let mut psh = segs[0].clone();
        psh[47] |= PSH;
        recsum(&mut psh);
        let p = segment(&psh).unwrap();
        assert!(p.psh);
        assert!(!follows(
            &psh,
            &p,
            &p,
            &segs[1],
            &segment(&segs[1]).unwrap()
        ));
        // Never a panic on short frames.
        for n in 0..segs[0].len() {
            let _ = segment(&segs[0][..n]);
            let mut s = segs[0][..n].to_vec();
            let _ = finish(&mut s, &segment(&segs[0]).unwrap(), false);
        }
    }

    /// Ethernet + IPv4 (DF, id `id`) + UDP 4500 -> 4500 with `payload` bytes seeded by `k`;
    /// with `csum` a computed UDP checksum, else zero (as ESP in UDP sends).
    fn datagram(payload: usize, k: u8, id: u16, csum: bool) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 8 + payload) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&[0x11, 0x94, 0x11, 0x94]);
        f.extend_from_slice(&(8 + payload as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend((0..payload).map(|i| (i as u8).wrapping_mul(31) ^ k));
        if csum {
            let sum = fold(sum16(
                &f[L4..],
                pseudo_header_v4(
                    Ipv4Addr::new(10, 0, 0, 1),
                    Ipv4Addr::new(10, 0, 0, 2),
                    17,
                    (8 + payload) as u16,
                ),
            ));
            let c = if !sum == 0 { 0xFFFF } else { !sum };
            f[L4 + 6..L4 + 8].copy_from_slice(&c.to_be_bytes());
        }
        f
    }

    /// Merges UDP `dgrams` as the TAP does (all or nothing here), returning the super-frame.
    fn merge_udp(dgrams: &[Vec<u8>]) -> Option<(Vec<u8>, VnetHdr)> {
        merge_by(dgrams, udp_segment)
    }

    fn cut_udp(f: &[u8], ol: &VnetHdr) -> Vec<Vec<u8>> {
        let plan = crate::offload::UdpSegments::plan(f, ol, 2000).unwrap();
        segments(plan.count, |i, out| plan.write_segment(f, i, out))
    }

    /// The UDP checksum of `f` verifies.
    fn udp_ok(f: &[u8]) -> bool {
        let src = Ipv4Addr::from(<[u8; 4]>::try_from(&f[26..30]).unwrap());
        let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&f[30..34]).unwrap());
        let len = (f.len() - L4) as u16;
        fold(sum16(&f[L4..], pseudo_header_v4(src, dst, 17, len))) == 0xFFFF
    }

    /// Equal-sized datagrams of one flow (the last shorter) merge into one UDP super-frame
    /// with the facts the kernel wants (`GSO_UDP_L4`, `gso_size` the payload, checksum partial
    /// at the UDP header), and cutting it gives every datagram back: the same headers and
    /// payload, identifications counting up from the first, IPv4 checksums valid, no UDP
    /// checksum (zero).
    #[test]
    fn udp_datagrams_merge_into_a_super_frame_that_cuts_back_into_them() {
        for csum in [false, true] {
            let mut d: Vec<Vec<u8>> = (0..5)
                .map(|i| datagram(1400, i, 7 + u16::from(i), csum))
                .collect();
            d.push(datagram(900, 9, 12, csum));
            let (sf, ol) = merge_udp(&d).unwrap();
            assert_eq!(sf.len(), 42 + 5 * 1400 + 900);
            assert_eq!(
                ol,
                VnetHdr {
                    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                    gso_type: crate::offload::VIRTIO_NET_HDR_GSO_UDP_L4,
                    hdr_len: 42,
                    gso_size: 1400,
                    csum_start: 34,
                    csum_offset: 6,
                    ..Default::default()
                }
            );
            assert_eq!(checksum(&sf[14..34]), 0, "IPv4 header checksum");
            assert_eq!(usize::from(be16_at(&sf, 16).unwrap()), sf.len() - 14);
            assert_eq!(usize::from(be16_at(&sf, L4 + 4).unwrap()), sf.len() - L4);
            // The partial checksum: the pseudo-header sum over the whole length, which the
            // kernel adjusts per datagram; completing it gives a valid checksum.
            let pseudo = fold(pseudo_header_v4(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                17,
                (sf.len() - L4) as u16,
            ));
            assert_eq!(be16_at(&sf, L4 + 6), Some(pseudo));
            let mut done = sf.clone();
            crate::offload::complete_checksum(&mut done, 34, 6).unwrap();
            assert!(udp_ok(&done));
            let back = cut_udp(&sf, &ol);
            assert_eq!(back.len(), d.len());
            for (i, (b, o)) in back.iter().zip(&d).enumerate() {
                assert_eq!(b.len(), o.len(), "datagram {i}");
                assert_eq!(b[..18], o[..18]);
                assert_eq!(be16_at(b, 18), Some(7 + i as u16), "identification");
                assert_eq!(b[20..24], o[20..24]);
                assert_eq!(checksum(&b[14..34]), 0);
                assert_eq!(b[26..40], o[26..40]);
                assert_eq!(b[42..], o[42..], "payload {i}");
                // Over IPv4 the cut sends no checksum (RFC 768's zero): nothing to verify.
                assert_eq!(be16_at(b, L4 + 6), Some(0), "checksum of {i}");
            }
            // And the datagrams cut merge into the same super-frame again.
            let (again, ol2) = merge_udp(&back).unwrap();
            assert_eq!((&again[42..], ol2), (&sf[42..], ol));
        }
    }

    #[test]
    fn udp_merge_refuses_what_would_not_cut_back_the_same() {
        let a = datagram(1000, 1, 1, false);
        let first = udp_segment(&a).unwrap();
        let joins = |f: &[u8]| udp_segment(f).is_some_and(|n| follows(&a, &first, &first, f, &n));
        assert!(joins(&datagram(1000, 2, 2, false)));
        assert!(joins(&datagram(10, 2, 2, true)), "a shorter last one");
        assert!(!joins(&datagram(1001, 2, 2, false)), "a larger one");
        let mut other = datagram(1000, 2, 2, false);
        other[37] = 0x95;
        assert!(!joins(&other), "another port");
        let mut other = datagram(1000, 2, 2, false);
        other[33] = 3;
        assert!(!joins(&other), "another address");
        let mut other = datagram(1000, 2, 2, false);
        other[22] = 63;
        assert!(!joins(&other), "another TTL");
        // Nothing follows a shorter datagram.
        let short = datagram(500, 2, 2, false);
        let s = udp_segment(&short).unwrap();
        assert!(!follows(&a, &first, &s, &a, &first));
        // Not merged at all: a fragment, IPv4 options, link padding, lengths that disagree,
        // no payload, a checksum that does not verify, TCP.
        let mut frag = datagram(1000, 1, 1, false);
        frag[20] = 0x20;
        assert!(udp_segment(&frag).is_none());
        let mut opts = datagram(1000, 1, 1, false);
        opts[14] = 0x46;
        assert!(udp_segment(&opts).is_none());
        let mut padded = datagram(1000, 1, 1, false);
        padded.push(0);
        assert!(udp_segment(&padded).is_none());
        let mut len = datagram(1000, 1, 1, false);
        len[39] ^= 1;
        assert!(udp_segment(&len).is_none());
        assert!(udp_segment(&datagram(0, 1, 1, false)).is_none());
        let mut corrupt = datagram(1000, 1, 1, true);
        corrupt[100] ^= 1;
        assert!(udp_segment(&corrupt).is_none());
        let (sf, sol) = super_frame(100, ACK);
        let tcp = cut(&sf, &sol).remove(0);
        assert!(udp_segment(&tcp).is_none());
        // TCP and UDP never mix in one merge.
        let t = segment(&tcp).unwrap();
        assert!(!follows(&tcp, &t, &t, &a, &first));
        assert!(!follows(&a, &first, &first, &tcp, &t));
        for n in 0..a.len() {
            let _ = udp_segment(&a[..n]);
            let mut s = a[..n].to_vec();
            let _ = finish(&mut s, &first, false);
        }
    }

    /// The cut takes only a UDP super-frame whose facts and headers describe it; anything else
    /// is refused under a named error, never a panic.
    #[test]
    fn udp_cut_refuses_malformed_super_frames() {
        use crate::offload::{OffloadError as E, UdpSegments, VIRTIO_NET_HDR_F_DATA_VALID};
        let d: Vec<Vec<u8>> = (0..4).map(|i| datagram(1000, i, 1, false)).collect();
        let (sf, ol) = merge_udp(&d).unwrap();
        let plan = |f: &[u8], o: &VnetHdr| UdpSegments::plan(f, o, 2000).map(|p| p.count);
        assert_eq!(plan(&sf, &ol), Ok(4));
        let tcp = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            ..ol
        };
        assert_eq!(plan(&sf, &tcp), Err(E::UnsupportedGso));
        let off = VnetHdr {
            csum_start: 14,
            ..ol
        };
        assert_eq!(plan(&sf, &off), Err(E::BadCsumOffset));
        let off = VnetHdr {
            csum_offset: 16,
            ..ol
        };
        assert_eq!(plan(&sf, &off), Err(E::BadCsumOffset));
        let none = VnetHdr { flags: 0, ..ol };
        assert_eq!(plan(&sf, &none), Err(E::BadCsumOffset));
        let valid = VnetHdr {
            flags: VIRTIO_NET_HDR_F_DATA_VALID,
            ..ol
        };
        assert_eq!(plan(&sf, &valid), Ok(4), "vouched for by the kernel");
        assert_eq!(
            plan(&sf, &VnetHdr { gso_size: 0, ..ol }),
            Err(E::BadGsoSize)
        );
        assert_eq!(
            plan(&sf, &VnetHdr { gso_size: 62, ..ol }),
            Err(E::BadGsoSize),
            "65 segments"
        );
        assert_eq!(plan(&sf, &VnetHdr { gso_size: 63, ..ol }), Ok(64));
        assert_eq!(
            UdpSegments::plan(&sf, &ol, 1000).map(|p| p.count),
            Err(E::BadGsoSize),
            "a segment over the frame limit"
        );
        let mut bad = sf.clone();
        bad[39] ^= 1;
        assert_eq!(plan(&bad, &ol), Err(E::BadGsoHeader), "UDP length");
        let mut bad = sf.clone();
        bad[17] ^= 1;
        assert_eq!(plan(&bad, &ol), Err(E::BadGsoHeader), "IPv4 length");
        let mut bad = sf.clone();
        bad[23] = 6;
        assert_eq!(plan(&bad, &ol), Err(E::BadGsoHeader), "not UDP");
        let mut bad = sf.clone();
        bad[20] = 0x20;
        assert_eq!(plan(&bad, &ol), Err(E::BadGsoHeader), "a fragment");
        for n in 0..sf.len() {
            assert!(plan(&sf[..n], &ol).is_err());
        }
        // Writing never panics: a segment index past the end, an output too small.
        let p = UdpSegments::plan(&sf, &ol, 2000).unwrap();
        let mut out = vec![0u8; 2000];
        assert_eq!(p.write_segment(&sf, 4, &mut out), Err(E::BadGsoSize));
        assert_eq!(p.write_segment(&sf, 0, &mut out[..100]), Err(E::BadGsoSize));
        assert!(p.write_segment(&sf[..500], 1, &mut out).is_err());
    }
}
