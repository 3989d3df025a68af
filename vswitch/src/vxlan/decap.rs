//! VXLAN decapsulation: validate a frame received on the uplink, then trim the outer headers.
//!
//! [`classify`] reads the outer headers straight from the bytes (every read is a checked
//! `get`, so no input can make it panic) and sorts the frame into one of three outcomes:
//!
//! * [`Decap`]: VXLAN for us, with the VNI, the source VTEP and where the inner frame lies;
//! * [`DecapDrop::NotVxlan`]: not addressed to our VTEP as VXLAN at all (ARP, other IPv4
//!   destinations or protocols, other UDP ports): the caller hands it to ARP handling or drops
//!   it as not for us;
//! * any other [`DecapDrop`]: addressed to our VXLAN port but bad, dropped with that counter.
//!
//! The checks, in order:
//!
//! 1. Ethernet type IPv4, else `NotVxlan` (a runt without an EtherType too).
//! 2. At least 20 bytes of IPv4 header with version 4, else `BadOuter`.
//! 3. Destination is the local VTEP address and protocol UDP, else `NotVxlan`.
//! 4. IHL at least 5 and the header within the frame; total length covers the header and lies
//!    within the frame (Ethernet padding after it is ignored), else `BadOuter`.
//! 5. Not a fragment (MF clear, offset zero), else `Fragment`: we never reassemble, the
//!    underlay MTU must carry whole packets (RFC 7348 section 4.3).
//! 6. A whole UDP header, else `BadOuter`; UDP destination port is ours, else `NotVxlan`.
//! 7. IPv4 header checksum valid, else `BadChecksum`.
//! 8. UDP length at least 8 and within the IPv4 payload, else `BadOuter`; bytes past the UDP
//!    length are ignored, as Linux does.
//! 9. UDP checksum zero (none, RFC 7348's recommendation) or valid, else `BadChecksum`; any
//!    valid value is accepted, whatever source port it came with.
//! 10. A whole VXLAN header, else `BadOuter`; I flag set, else `BadFlags`. Reserved bits are
//!     ignored (RFC 7348 section 5).
//! 11. An inner frame of at least 14 bytes, else `TruncatedInner`.
//! 12. Inner EtherType not a VLAN tag (0x8100, 0x88a8, 0x9100), else `InnerTagged`: an overlay
//!     network is one untagged segment (RFC 7348 section 6.1 leaves inner tags to be dropped).
//! 13. Inner frame not itself VXLAN (IPv4 or IPv6 carrying UDP to port 4789 or to our port),
//!     else `VxlanInVxlan`.
//!
//! The caller then checks the VNI and the source VTEP against its configuration
//! ([`DecapDrop::UnknownVni`], [`DecapDrop::UnknownVtep`]) and calls [`decap()`].

use std::net::Ipv4Addr;

use dataplane::checksum::{fold, pseudo_header_v4, sum16};
use dataplane::named_counters;
use dataplane::pool::{Buf, Pool};
use dataplane::wire::{be16_at, VxlanPacket};

use super::{DEFAULT_PORT, INNER_ETH_LEN, OUTER_ETH_LEN, OUTER_IP_LEN, UDP_LEN, VXLAN_LEN};

named_counters! {
    /// Why a frame received on the uplink is not decapsulated; each (but `NotVxlan`, which the
    /// caller passes on) is a drop counter of the same name.
    pub enum DecapDrop {
        /// Not VXLAN addressed to us: not IPv4, not to our VTEP address, not UDP, or not to our
        /// VXLAN port. Handed to ARP handling, or dropped under this name.
        NotVxlan => "uplink_not_for_us",
        /// Outer IPv4 or UDP header malformed or truncated, lengths inconsistent with the
        /// frame, or no room for the VXLAN header.
        BadOuter => "vxlan_bad_outer",
        /// An outer IPv4 fragment (never reassembled).
        Fragment => "vxlan_fragment",
        /// Outer IPv4 header checksum or non-zero UDP checksum wrong.
        BadChecksum => "vxlan_bad_checksum",
        /// VXLAN I flag clear.
        BadFlags => "vxlan_bad_flags",
        /// Inner frame shorter than an Ethernet header.
        TruncatedInner => "vxlan_truncated_inner",
        /// Inner frame carries a VLAN tag (802.1Q, 802.1ad or legacy Q-in-Q).
        InnerTagged => "vxlan_inner_tagged",
        /// Inner frame is itself VXLAN.
        VxlanInVxlan => "vxlan_in_vxlan",
        /// VNI of no network on this switch (the caller's check).
        UnknownVni => "vxlan_unknown_vni",
        /// Source VTEP is not a peer of the VNI's network (the caller's check).
        UnknownVtep => "vxlan_unknown_vtep",
        /// A UDP tunnel super-frame from a TAP uplink whose offload facts do not describe a
        /// TCP super-frame right behind the VXLAN header (the caller's check).
        BadGso => "vxlan_bad_gso",
        /// A UDP super-frame from a TAP uplink with UDP segmentation offload that could not be
        /// cut back into datagrams: headers or offload facts that do not describe one, or no
        /// buffers (or graph bursts) for its datagrams (one count per datagram lost).
        BadUdpGso => "udp_gso_bad",
    }
}

/// A valid VXLAN frame for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap {
    /// The 24-bit VNI.
    pub vni: u32,
    /// The outer source address: the sending VTEP.
    pub src_ip: Ipv4Addr,
    /// Offset of the inner Ethernet frame from the outer frame's start (50 without IPv4
    /// options).
    pub inner_offset: usize,
    /// Length of the inner frame (as the UDP length says; padding after it is not included).
    pub inner_len: usize,
}

#[inline]
fn ipv4_at(d: &[u8], at: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(*d.get(at..)?.first_chunk::<4>()?))
}

/// Validates `frame`, received on the uplink of VTEP address `local_ip`, as VXLAN to UDP port
/// `port`; see the module docs for the checks and their order. Allocates nothing.
#[inline]
pub fn classify(frame: &[u8], local_ip: Ipv4Addr, port: u16) -> Result<Decap, DecapDrop> {
    classify_with(frame, local_ip, port, false)
}

/// [`classify`], skipping the UDP checksum when `udp_csum_trusted` (the frame came from the
/// local kernel through a TAP with offloads, which may leave that checksum partial).
pub fn classify_with(
    frame: &[u8],
    local_ip: Ipv4Addr,
    port: u16,
    udp_csum_trusted: bool,
) -> Result<Decap, DecapDrop> {
    use DecapDrop::*;

    if be16_at(frame, 12) != Some(0x0800) {
        return Err(NotVxlan);
    }
    let ip = frame.get(OUTER_ETH_LEN..).unwrap_or(&[]);
    let (Some(&vihl), Some(&proto), Some(dst)) = (ip.first(), ip.get(9), ipv4_at(ip, 16)) else {
        return Err(BadOuter);
    };
    if vihl >> 4 != 4 {
        return Err(BadOuter);
    }
    if dst != local_ip || proto != 17 {
        return Err(NotVxlan);
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(be16_at(ip, 2).unwrap_or(0));
    if ihl < OUTER_IP_LEN || total < ihl || total > ip.len() {
        return Err(BadOuter);
    }
    // `ihl <= total <= ip.len()`, so both slices exist; `get` keeps it panic-free regardless.
    let (Some(header), Some(l4)) = (ip.get(..ihl), ip.get(ihl..total)) else {
        return Err(BadOuter);
    };
    let frag = be16_at(ip, 6).unwrap_or(0);
    if frag & 0x3fff != 0 {
        return Err(Fragment);
    }
    let (Some(udp_dport), Some(udp_len), Some(udp_csum)) =
        (be16_at(l4, 2), be16_at(l4, 4), be16_at(l4, 6))
    else {
        return Err(BadOuter);
    };
    if udp_dport != port {
        return Err(NotVxlan);
    }
    if fold(sum16(header, 0)) != 0xffff {
        return Err(BadChecksum);
    }
    let Some(udp) = l4
        .get(..usize::from(udp_len))
        .filter(|u| u.len() >= UDP_LEN)
    else {
        return Err(BadOuter);
    };
    let src = ipv4_at(ip, 12).unwrap_or(Ipv4Addr::UNSPECIFIED);
    if udp_csum != 0
        && !udp_csum_trusted
        && fold(sum16(udp, pseudo_header_v4(src, dst, 17, udp_len))) != 0xffff
    {
        return Err(BadChecksum);
    }
    let Ok(vx) = VxlanPacket::new_checked(udp.get(UDP_LEN..).unwrap_or(&[])) else {
        return Err(BadOuter);
    };
    if !vx.vni_valid() {
        return Err(BadFlags);
    }
    let inner = vx.payload();
    let Some(inner_type) = be16_at(inner, 12) else {
        return Err(TruncatedInner);
    };
    match inner_type {
        t if dataplane::wire::vlan::is_tpid(t) => return Err(InnerTagged),
        0x0800 | 0x86dd
            if inner_udp_dport(inner, inner_type)
                .is_some_and(|p| p == DEFAULT_PORT || p == port) =>
        {
            return Err(VxlanInVxlan);
        }
        _ => {}
    }
    Ok(Decap {
        vni: vx.vni(),
        src_ip: src,
        inner_offset: OUTER_ETH_LEN + ihl + UDP_LEN + VXLAN_LEN,
        inner_len: inner.len(),
    })
}

/// The UDP destination port of an inner IPv4 (first fragment) or IPv6 (UDP as the first next
/// header) packet, if it is one.
#[inline]
fn inner_udp_dport(inner: &[u8], ethertype: u16) -> Option<u16> {
    let ip = inner.get(INNER_ETH_LEN..)?;
    if ethertype == 0x0800 {
        let vihl = *ip.first()?;
        let frag = be16_at(ip, 6)?;
        if vihl >> 4 != 4 || *ip.get(9)? != 17 || frag & 0x1fff != 0 {
            return None;
        }
        be16_at(ip, usize::from(vihl & 0x0f) * 4 + 2)
    } else {
        if *ip.get(6)? != 17 {
            return None;
        }
        be16_at(ip, 40 + 2)
    }
}

/// Trims the outer headers off `b` as `d` (from [`classify`] of this buffer's frame) says,
/// leaving the inner frame; `false` (and `b` unchanged) if the frame is shorter than that.
#[inline]
#[must_use]
pub fn decap(pool: &Pool, b: &mut Buf, d: &Decap) -> bool {
    let fits = d
        .inner_offset
        .checked_add(d.inner_len)
        .is_some_and(|end| end <= pool.len(b));
    if !fits || !pool.trim_front(b, d.inner_offset) {
        return false;
    }
    pool.set_len(b, d.inner_len);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vxlan::{flow_hash, Tunnel, TunnelParams};
    use dataplane::checksum::checksum;

    const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const PORT: u16 = 4789;

    /// VXLAN from 192.0.2.2:50000 to 192.0.2.1:4789, VNI 0x123456, carrying the 14-byte
    /// Ethernet header 02:..:0b <- 02:..:0a type 0x0800 and the payload "hello" (19 bytes).
    /// Built by hand: IPv4 total length 20 + 8 + 8 + 19 = 55 (0x37); checksum 0x4500 + 0x0037 +
    /// 0x4000 + 0x4011 + 0xc000 + 0x0202 + 0xc000 + 0x0201 = 0x2494b, folded 0x494d,
    /// complemented 0xb6b2. UDP length 35 (0x23), checksum zero.
    const GOLDEN: [u8; 69] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, //
        0x45, 0x00, 0x00, 0x37, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb6, 0xb2, //
        0xc0, 0x00, 0x02, 0x02, 0xc0, 0x00, 0x02, 0x01, //
        0xc3, 0x50, 0x12, 0xb5, 0x00, 0x23, 0x00, 0x00, //
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x00, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x08, 0x00, //
        b'h', b'e', b'l', b'l', b'o',
    ];

    /// Rewrites the IPv4 header checksum of an outer frame after a test changed the header.
    fn fix_ip_csum(f: &mut [u8]) {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        f[24..26].fill(0);
        let c = checksum(&f[14..14 + ihl]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }

    /// Sets the UDP checksum of an outer frame (no IPv4 options) to the correct value.
    fn fill_udp_csum(f: &mut [u8]) {
        let ulen = u16::from_be_bytes([f[38], f[39]]);
        f[40..42].fill(0);
        let ph = pseudo_header_v4(ipv4_at(f, 26).unwrap(), ipv4_at(f, 30).unwrap(), 17, ulen);
        let mut c = !fold(sum16(&f[34..34 + usize::from(ulen)], ph));
        if c == 0 {
            c = 0xffff;
        }
        f[40..42].copy_from_slice(&c.to_be_bytes());
    }

    /// GOLDEN with its inner frame replaced by `inner`, lengths and checksum fixed.
    fn with_inner(inner: &[u8]) -> Vec<u8> {
        let mut f = GOLDEN[..50].to_vec();
        f.extend_from_slice(inner);
        let ip_len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
        fix_ip_csum(&mut f);
        f
    }

    fn expect_ok(f: &[u8]) -> Decap {
        classify(f, LOCAL_IP, PORT).unwrap()
    }

    fn expect(f: &[u8], want: DecapDrop) {
        assert_eq!(classify(f, LOCAL_IP, PORT), Err(want));
    }

    #[test]
    fn golden_frame_classifies_and_decaps() {
        let mut ip = GOLDEN[14..34].to_vec();
        ip[10..12].fill(0);
        assert_eq!(checksum(&ip), 0xb6b2, "hand-computed checksum");

        let d = expect_ok(&GOLDEN);
        assert_eq!(
            d,
            Decap {
                vni: 0x12_3456,
                src_ip: REMOTE_IP,
                inner_offset: 50,
                inner_len: 19,
            }
        );
        let pool = Pool::new(64).unwrap();
        let mut b = pool.alloc_shared().unwrap();
        assert!(pool.fill(&mut b, &GOLDEN));
        assert!(decap(&pool, &mut b, &d));
        assert_eq!(pool.data(&b), &GOLDEN[50..]);
        pool.free_shared(b);
    }

    #[test]
    fn round_trip_encap_classify_decap_gives_the_inner_frame() {
        let t = Tunnel::new(TunnelParams {
            local_mac: [0x02, 0, 0, 0, 0, 0x02],
            remote_mac: [0x02, 0, 0, 0, 0, 0x01],
            local_ip: REMOTE_IP,
            remote_ip: LOCAL_IP,
            vni: 4242,
            ..TunnelParams::default()
        });
        let pool = Pool::new(64).unwrap();
        let mut b = pool.alloc_shared().unwrap();
        for len in [14usize, 15, 60, 64, 100, 1000, t.max_inner_frame()] {
            let inner: Vec<u8> = (0..len)
                .map(|i| if i == 12 { 0x08 } else { (i * 7) as u8 })
                .collect();
            assert!(pool.fill(&mut b, &inner));
            t.encap(&pool, &mut b, flow_hash(&inner)).unwrap();
            let d = classify(pool.data(&b), LOCAL_IP, PORT).unwrap();
            assert_eq!((d.vni, d.src_ip, d.inner_len), (4242, REMOTE_IP, len));
            assert!(decap(&pool, &mut b, &d));
            assert_eq!(pool.data(&b), &inner[..], "inner length {len}");
        }
        pool.free_shared(b);
    }

    #[test]
    fn valid_udp_checksum_and_reserved_bits_are_accepted() {
        let mut f = GOLDEN.to_vec();
        f[42] = 0xff; // every flag bit
        f[43..46].fill(0xff);
        f[49] = 0xff;
        fill_udp_csum(&mut f);
        assert_ne!(f[40..42], [0, 0]);
        assert_eq!(expect_ok(&f).vni, 0x12_3456);
        // Any source port, and a checksum sent as 0xffff (a computed zero) verifies too.
        let mut g = GOLDEN.to_vec();
        for sport in 0..=u16::MAX {
            g[34..36].copy_from_slice(&sport.to_be_bytes());
            fill_udp_csum(&mut g);
            if g[40..42] == [0xff, 0xff] {
                break;
            }
        }
        assert_eq!(g[40..42], [0xff, 0xff]);
        assert!(classify(&g, LOCAL_IP, PORT).is_ok());
    }

    #[test]
    fn ethernet_padding_and_ip_options_are_handled() {
        let mut f = GOLDEN.to_vec();
        f.extend_from_slice(&[0xee; 8]);
        let d = expect_ok(&f);
        assert_eq!((d.inner_offset, d.inner_len), (50, 19));
        let pool = Pool::new(64).unwrap();
        let mut b = pool.alloc_shared().unwrap();
        assert!(pool.fill(&mut b, &f));
        assert!(decap(&pool, &mut b, &d));
        assert_eq!(pool.data(&b), &GOLDEN[50..], "padding cut");

        // IHL 6: four bytes of options (NOP NOP NOP EOL).
        let mut o = GOLDEN[..34].to_vec();
        o.extend_from_slice(&[1, 1, 1, 0]);
        o.extend_from_slice(&GOLDEN[34..]);
        o[14] = 0x46;
        o[16..18].copy_from_slice(&59u16.to_be_bytes());
        fix_ip_csum(&mut o);
        let d = expect_ok(&o);
        assert_eq!((d.inner_offset, d.inner_len), (54, 19));
        assert!(pool.fill(&mut b, &o));
        assert!(decap(&pool, &mut b, &d));
        assert_eq!(pool.data(&b), &GOLDEN[50..]);

        // UDP length shorter than the IPv4 payload: the rest is ignored.
        let mut s = GOLDEN.to_vec();
        s[38..40].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(expect_ok(&s).inner_len, 14);

        // A `Decap` that does not fit the buffer leaves it alone.
        let bad = Decap {
            inner_len: 100,
            ..d
        };
        assert!(pool.fill(&mut b, &o));
        assert!(!decap(&pool, &mut b, &bad));
        assert_eq!(pool.data(&b), &o[..]);
        pool.free_shared(b);
    }

    #[test]
    fn not_for_us_is_told_apart_from_bad_vxlan() {
        // ARP, a runt, and an empty frame.
        let mut arp = GOLDEN.to_vec();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        expect(&arp, DecapDrop::NotVxlan);
        expect(&GOLDEN[..13], DecapDrop::NotVxlan);
        expect(&[], DecapDrop::NotVxlan);
        // Another destination address.
        assert_eq!(
            classify(&GOLDEN, Ipv4Addr::new(192, 0, 2, 9), PORT),
            Err(DecapDrop::NotVxlan)
        );
        // TCP instead of UDP.
        let mut tcp = GOLDEN.to_vec();
        tcp[23] = 6;
        fix_ip_csum(&mut tcp);
        expect(&tcp, DecapDrop::NotVxlan);
        // Another UDP port; and ours configured differently.
        assert_eq!(classify(&GOLDEN, LOCAL_IP, 8472), Err(DecapDrop::NotVxlan));
        let mut other = GOLDEN.to_vec();
        other[36..38].copy_from_slice(&8472u16.to_be_bytes());
        fix_ip_csum(&mut other);
        expect(&other, DecapDrop::NotVxlan);
        assert!(classify(&other, LOCAL_IP, 8472).is_ok());
        // Not ours even with a bad IPv4 checksum: only our VXLAN port's traffic is judged.
        let mut bad_other = other.clone();
        bad_other[24] ^= 0xff;
        expect(&bad_other, DecapDrop::NotVxlan);
    }

    #[test]
    fn bad_outer_headers_are_dropped() {
        // IPv4 header cut short, at every length under 20.
        for n in 14..34 {
            expect(&GOLDEN[..n], DecapDrop::BadOuter);
        }
        // Version 6 under an IPv4 EtherType.
        let mut v = GOLDEN.to_vec();
        v[14] = 0x65;
        expect(&v, DecapDrop::BadOuter);
        // IHL under 5, and past the frame.
        let mut ihl = GOLDEN.to_vec();
        ihl[14] = 0x44;
        expect(&ihl, DecapDrop::BadOuter);
        let mut long = GOLDEN[..40].to_vec();
        long[14] = 0x4f;
        expect(&long, DecapDrop::BadOuter);
        // Total length past the frame, and under the header length.
        let mut tl = GOLDEN.to_vec();
        tl[16..18].copy_from_slice(&56u16.to_be_bytes());
        fix_ip_csum(&mut tl);
        expect(&tl, DecapDrop::BadOuter);
        expect(&GOLDEN[..68], DecapDrop::BadOuter);
        tl[16..18].copy_from_slice(&19u16.to_be_bytes());
        fix_ip_csum(&mut tl);
        expect(&tl, DecapDrop::BadOuter);
        // Total length leaves no whole UDP header.
        let mut nu = GOLDEN.to_vec();
        nu[16..18].copy_from_slice(&27u16.to_be_bytes());
        fix_ip_csum(&mut nu);
        expect(&nu, DecapDrop::BadOuter);
        // UDP length under 8, and past the IPv4 payload.
        let mut ul = GOLDEN.to_vec();
        ul[38..40].copy_from_slice(&7u16.to_be_bytes());
        expect(&ul, DecapDrop::BadOuter);
        ul[38..40].copy_from_slice(&36u16.to_be_bytes());
        expect(&ul, DecapDrop::BadOuter);
        // UDP payload shorter than a VXLAN header.
        let mut vx = GOLDEN.to_vec();
        vx[38..40].copy_from_slice(&15u16.to_be_bytes());
        expect(&vx, DecapDrop::BadOuter);
    }

    #[test]
    fn fragments_are_dropped() {
        for flags in [0x2000u16, 0x0001, 0x3fff, 0x6000] {
            let mut f = GOLDEN.to_vec();
            f[20..22].copy_from_slice(&flags.to_be_bytes());
            fix_ip_csum(&mut f);
            expect(&f, DecapDrop::Fragment);
        }
        // DF alone is fine (GOLDEN has it); DF clear too.
        let mut f = GOLDEN.to_vec();
        f[20..22].fill(0);
        fix_ip_csum(&mut f);
        assert!(classify(&f, LOCAL_IP, PORT).is_ok());
    }

    #[test]
    fn bad_checksums_are_dropped() {
        let mut ip = GOLDEN.to_vec();
        ip[25] ^= 0x01;
        expect(&ip, DecapDrop::BadChecksum);
        let mut ttl = GOLDEN.to_vec();
        ttl[22] = 1; // checksum not updated
        expect(&ttl, DecapDrop::BadChecksum);
        let mut udp = GOLDEN.to_vec();
        fill_udp_csum(&mut udp);
        udp[41] ^= 0x01;
        expect(&udp, DecapDrop::BadChecksum);
        let mut body = GOLDEN.to_vec();
        fill_udp_csum(&mut body);
        body[68] ^= 0x20; // one inner byte
        expect(&body, DecapDrop::BadChecksum);
    }

    #[test]
    fn i_flag_clear_is_bad_flags() {
        let mut f = GOLDEN.to_vec();
        f[42] = 0xf7;
        expect(&f, DecapDrop::BadFlags);
        f[42] = 0x00;
        expect(&f, DecapDrop::BadFlags);
    }

    #[test]
    fn truncated_inner_frames_are_dropped() {
        for n in 0..14 {
            expect(&with_inner(&GOLDEN[50..50 + n]), DecapDrop::TruncatedInner);
        }
        assert!(classify(&with_inner(&GOLDEN[50..64]), LOCAL_IP, PORT).is_ok());
    }

    #[test]
    fn tagged_inner_frames_are_dropped() {
        for tpid in [0x8100u16, 0x88a8, 0x9100] {
            let mut inner = GOLDEN[50..].to_vec();
            inner[12..14].copy_from_slice(&tpid.to_be_bytes());
            expect(&with_inner(&inner), DecapDrop::InnerTagged);
        }
    }

    /// An inner Ethernet + IPv4 + UDP header to `dport`, then a few bytes.
    fn inner_v4_udp(dport: u16) -> Vec<u8> {
        let mut f = GOLDEN[50..64].to_vec();
        f.extend_from_slice(&[
            0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[0xc0, 0x00]);
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 16, 0, 0, 0x08, 0, 0, 0, 0, 0, 1, 0]);
        f
    }

    #[test]
    fn vxlan_in_vxlan_is_dropped() {
        expect(&with_inner(&inner_v4_udp(4789)), DecapDrop::VxlanInVxlan);
        // Our configured port counts too, and 4789 stays forbidden under another port.
        let mut f = with_inner(&inner_v4_udp(8472));
        f[36..38].copy_from_slice(&8472u16.to_be_bytes());
        fix_ip_csum(&mut f);
        assert_eq!(classify(&f, LOCAL_IP, 8472), Err(DecapDrop::VxlanInVxlan));
        let mut g = with_inner(&inner_v4_udp(4789));
        g[36..38].copy_from_slice(&8472u16.to_be_bytes());
        fix_ip_csum(&mut g);
        assert_eq!(classify(&g, LOCAL_IP, 8472), Err(DecapDrop::VxlanInVxlan));
        // Other UDP traffic, and a later fragment whose bytes happen to read 4789, pass.
        assert!(classify(&with_inner(&inner_v4_udp(53)), LOCAL_IP, PORT).is_ok());
        let mut frag = inner_v4_udp(4789);
        frag[14 + 7] = 0x10;
        assert!(classify(&with_inner(&frag), LOCAL_IP, PORT).is_ok());
        // IPv6 carrying UDP to 4789.
        let mut v6 = GOLDEN[50..64].to_vec();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut h6 = [0u8; 40];
        h6[0] = 0x60;
        h6[5] = 16;
        h6[6] = 17;
        v6.extend_from_slice(&h6);
        v6.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb5, 0, 16, 0, 0]);
        expect(&with_inner(&v6), DecapDrop::VxlanInVxlan);
        // Inner headers cut short are not mistaken for anything.
        let inner = inner_v4_udp(4789);
        for n in 14..inner.len() {
            let r = classify(&with_inner(&inner[..n]), LOCAL_IP, PORT);
            assert_eq!(r.is_ok(), n < 14 + 24, "inner length {n}: {r:?}");
        }
    }

    #[test]
    fn every_drop_has_a_distinct_name() {
        let names: std::collections::HashSet<_> = DecapDrop::ALL.iter().map(|d| d.name()).collect();
        assert_eq!(names.len(), DecapDrop::COUNT);
        assert_eq!(DecapDrop::UnknownVni.name(), "vxlan_unknown_vni");
        assert_eq!(DecapDrop::UnknownVtep.name(), "vxlan_unknown_vtep");
        assert_eq!(DecapDrop::NotVxlan.name(), "uplink_not_for_us");
        for d in DecapDrop::ALL {
            // The uplink's own reasons (before any VXLAN is looked at) are not VXLAN's.
            let uplink = [DecapDrop::NotVxlan, DecapDrop::BadUdpGso];
            assert!(d.name().starts_with("vxlan_") || uplink.contains(d));
        }
    }

    /// Every prefix and every single-byte corruption of a valid frame classifies without
    /// panicking, and whatever is accepted decaps to a slice inside the frame.
    #[test]
    fn never_panics_on_mangled_frames() {
        let mut f = GOLDEN.to_vec();
        fill_udp_csum(&mut f);
        for n in 0..=f.len() {
            if let Ok(d) = classify(&f[..n], LOCAL_IP, PORT) {
                assert!(d.inner_offset + d.inner_len <= n);
            }
        }
        for i in 0..f.len() {
            for v in [0x00, 0x01, 0x0f, 0x45, 0x80, 0xff] {
                let mut g = f.clone();
                g[i] = v;
                if let Ok(d) = classify(&g, LOCAL_IP, PORT) {
                    assert!(d.inner_offset + d.inner_len <= g.len());
                }
            }
        }
    }
}
