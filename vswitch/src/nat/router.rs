//! The gateway's own protocol work on frames, in place (no I/O, time as an argument): the
//! routing checks of an IPv4 header, answers to ICMP echo for the gateway address, TTL
//! decrement, and the ICMP errors a router sends (time exceeded, fragmentation needed, RFC 792
//! and RFC 1191) under a token-bucket rate limit (RFC 1812 section 4.3.2.8).

use dataplane::checksum::{checksum, update16};
use dataplane::named_counters;
use std::net::Ipv4Addr;

named_counters! {
    /// Why the router drops a frame.
    pub enum RouteDrop {
        /// Not a well-formed IPv4 header (version, header or total length).
        BadIp => "route_bad_ip",
        /// From a network: a source address outside the network's subnet. From the uplink: a
        /// source of 127.0.0.0/8, 0.0.0.0/8, multicast, the uplink address itself, or a
        /// network's subnet (moby#41872).
        Martian => "martian_source",
        /// To the gateway address, but neither an ICMP echo request nor a DNS query (nothing
        /// else listens there).
        ToGateway => "gateway_unsupported",
        /// To an address of the network's own subnet through the gateway.
        SameNetwork => "route_same_network",
        /// To another network's subnet: networks are isolated from each other unless linked
        /// (`network link`).
        Isolated => "network_isolated",
        /// From an `--internal` network, which has no way out.
        Internal => "internal_network",
        /// To a broadcast, multicast or reserved destination.
        NotUnicast => "route_not_unicast",
        /// No uplink address set (`uplink set`), or no next hop towards the destination.
        NoRoute => "no_route",
        /// TTL ran out here (the ICMP time exceeded was rate-limited away, or the packet came
        /// from the uplink, where no error is sent).
        TtlExpired => "ttl_expired",
        /// Larger than the next hop's MTU with DF set (the ICMP fragmentation needed was
        /// rate-limited away).
        FragNeeded => "frag_needed",
        /// Larger than the next hop's MTU without DF: the gateway does not fragment.
        TooBig => "route_too_big",
        /// From the uplink, not to the uplink address.
        NotForUs => "route_not_for_us",
        /// Return traffic whose inside endpoint's port left its network, or a network that lost
        /// its gateway.
        Gone => "route_inside_gone",
    }
}

named_counters! {
    /// What the router did.
    pub enum RouteEvent {
        /// ARP requests for a gateway address answered.
        ArpReplied => "gw_arp_replied",
        /// ICMP echo requests to a gateway address answered.
        EchoReplied => "gw_echo_replied",
        /// Packets routed out of a network through the uplink (translated).
        RoutedOut => "routed_out",
        /// Packets routed back into a network (translated back).
        RoutedIn => "routed_in",
        /// ICMP time exceeded sent.
        TimeExceededSent => "icmp_time_exceeded_sent",
        /// ICMP fragmentation needed sent.
        FragNeededSent => "icmp_frag_needed_sent",
        /// NAT sessions created.
        SessionCreated => "nat_session_created",
        /// NAT sessions expired.
        SessionExpired => "nat_session_expired",
        /// Embryonic NAT sessions evicted to make room.
        SessionEvicted => "nat_session_evicted",
        /// Return traffic handed to the worker that owns its session.
        HandedOff => "nat_handed_off",
    }
}

/// The fields of an IPv4 header the router looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hdr {
    /// Source.
    pub src: Ipv4Addr,
    /// Destination.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Don't Fragment.
    pub df: bool,
    /// Total length.
    pub len: usize,
    /// Protocol.
    pub proto: u8,
    /// Header length.
    pub ihl: usize,
}

/// Reads the IPv4 header at offset 14 of `frame` (Ethernet, no tag).
pub fn header(frame: &[u8]) -> Option<Hdr> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let h = frame.get(14..34)?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || frame.len() < 14 + ihl {
        return None;
    }
    Some(Hdr {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        ttl: h[8],
        df: h[6] & 0x40 != 0,
        len,
        proto: h[9],
        ihl,
    })
}

/// Whether `ip` may be the source of a packet from outside (see [`RouteDrop::Martian`]).
pub fn martian_outside(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 127 || o[0] == 0 || ip.is_multicast() || ip.is_broadcast() || o[0] >= 240
}

/// Whether `ip` may not be a destination the gateway routes to.
pub fn not_unicast(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_multicast() || ip.is_broadcast() || o[0] == 0 || o[0] == 127 || o[0] >= 240
}

/// Decrements the TTL of the IPv4 header at 14 (checksum updated incrementally).
#[inline]
pub fn dec_ttl(frame: &mut [u8]) -> Option<()> {
    let w = frame.get_mut(22..24)?;
    let old = u16::from_be_bytes([w[0], w[1]]);
    let new = old.wrapping_sub(0x100);
    w.copy_from_slice(&new.to_be_bytes());
    let c = frame.get_mut(24..26)?;
    let sum = update16(u16::from_be_bytes([c[0], c[1]]), old, new);
    c.copy_from_slice(&sum.to_be_bytes());
    Some(())
}

/// Sets the Ethernet addresses.
#[inline]
pub fn set_macs(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) -> Option<()> {
    frame.get_mut(0..6)?.copy_from_slice(&dst);
    frame.get_mut(6..12)?.copy_from_slice(&src);
    Some(())
}

/// Turns an ICMP echo request to the gateway (`frame`, header `h`) into the reply, in place,
/// from `gw_mac`. None if it is not an echo request.
pub fn echo_reply(frame: &mut [u8], h: &Hdr, gw_mac: [u8; 6]) -> Option<()> {
    if h.proto != super::proto::ICMP {
        return None;
    }
    let l4 = 14 + h.ihl;
    let end = 14 + h.len;
    if frame.len() < end || end < l4 + 8 || *frame.get(l4)? != 8 {
        return None;
    }
    let src_mac: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    set_macs(frame, src_mac, gw_mac)?;
    // Addresses swap; the TTL is ours now; the header checksum is recomputed (20-60 bytes).
    let (s, d) = (h.src.octets(), h.dst.octets());
    frame.get_mut(26..30)?.copy_from_slice(&d);
    frame.get_mut(30..34)?.copy_from_slice(&s);
    *frame.get_mut(22)? = 64;
    frame.get_mut(24..26)?.copy_from_slice(&[0, 0]);
    let c = checksum(frame.get(14..l4)?);
    frame.get_mut(24..26)?.copy_from_slice(&c.to_be_bytes());
    // Type 8 -> 0: one word of the ICMP checksum.
    *frame.get_mut(l4)? = 0;
    let c = u16::from_be_bytes([*frame.get(l4 + 2)?, *frame.get(l4 + 3)?]);
    let c = update16(c, 0x0800, 0x0000);
    frame
        .get_mut(l4 + 2..l4 + 4)?
        .copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// Most bytes of the offending packet an ICMP error quotes: its header (up to 60) and 8 more.
const QUOTE: usize = 68;

/// ICMP error frame length for a quote of `n` bytes.
pub fn error_len(n: usize) -> usize {
    14 + 20 + 8 + n
}

/// How many bytes of the packet with header `h` an error quotes.
pub fn quote_len(frame: &[u8], h: &Hdr) -> usize {
    (h.ihl + 8).min(QUOTE).min(frame.len().saturating_sub(14))
}

/// Rewrites `frame` (whose buffer is at least [`error_len`] long; `quote` bytes of the original
/// IP packet were copied out before, into `saved`) into ICMP error `ty`/`code` from `from`
/// (the gateway, at `gw_mac`) back to the original sender at `to_mac`, `to`. `mtu` goes into
/// bytes 6-7 (fragmentation needed). Returns the new length.
#[allow(clippy::too_many_arguments)]
pub fn icmp_error(
    frame: &mut [u8],
    saved: &[u8],
    ty: u8,
    code: u8,
    mtu: u16,
    from: Ipv4Addr,
    gw_mac: [u8; 6],
    to: Ipv4Addr,
    to_mac: [u8; 6],
) -> Option<usize> {
    let n = saved.len();
    let len = error_len(n);
    let f = frame.get_mut(..len)?;
    set_macs(f, to_mac, gw_mac)?;
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + 8 + n).ok()?;
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[0; 20]);
    ip[0] = 0x45;
    ip[1] = 0xc0; // internetwork control precedence, as routers send errors
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = super::proto::ICMP;
    ip[12..16].copy_from_slice(&from.octets());
    ip[16..20].copy_from_slice(&to.octets());
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut f[34..];
    icmp[..8].copy_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..8 + n].copy_from_slice(saved);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// A token bucket: `rate` tokens per second, at most `burst` saved.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    rate: u64,
    burst: u64,
    /// Tokens, in units of 1/`rate` seconds scaled by 1e9 (so refills are exact integers).
    tokens: u64,
    last_ns: u64,
}

impl RateLimit {
    /// `rate` per second, bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate: u64::from(rate.max(1)),
            burst: u64::from(burst.max(1)),
            tokens: u64::from(burst.max(1)) * 1_000_000_000,
            last_ns: 0,
        }
    }

    /// Whether one more may go at `now_ns` (takes a token if so).
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let cap = self.burst * 1_000_000_000;
        let dt = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.tokens = self
            .tokens
            .saturating_add(dt.saturating_mul(self.rate))
            .min(cap);
        if self.tokens >= 1_000_000_000 {
            self.tokens -= 1_000_000_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};

    const GW: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
    const C: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
    const GW_MAC: [u8; 6] = [2, 0x76, 0x73, 0x67, 0, 1];
    const C_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn frame(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        icmp: &Icmpv4Repr,
        ttl: u8,
        macs: ([u8; 6], [u8; 6]),
    ) -> Vec<u8> {
        let caps = ChecksumCapabilities::default();
        let r = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: ttl,
        };
        let mut f = vec![0u8; 14 + r.buffer_len() + icmp.buffer_len()];
        set_macs(&mut f, macs.0, macs.1).unwrap();
        f[12..14].copy_from_slice(&[8, 0]);
        let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
        r.emit(&mut p, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
        f
    }

    fn echo(request: bool) -> Icmpv4Repr<'static> {
        if request {
            Icmpv4Repr::EchoRequest {
                ident: 7,
                seq_no: 3,
                data: b"gateway",
            }
        } else {
            Icmpv4Repr::EchoReply {
                ident: 7,
                seq_no: 3,
                data: b"gateway",
            }
        }
    }

    #[test]
    fn gateway_answers_echo_with_exact_bytes() {
        let mut f = frame(C, GW, &echo(true), 64, (GW_MAC, C_MAC));
        let h = header(&f).unwrap();
        echo_reply(&mut f, &h, GW_MAC).unwrap();
        let mut want = frame(GW, C, &echo(false), 64, (C_MAC, GW_MAC));
        // smoltcp's header sets DF; ours keeps the request's flags (also DF here).
        want[20..22].copy_from_slice(&f[20..22]);
        assert_eq!(f, want);
    }

    #[test]
    fn time_exceeded_and_frag_needed_quote_the_packet() {
        let orig = frame(
            C,
            Ipv4Addr::new(8, 8, 8, 8),
            &echo(true),
            1,
            (GW_MAC, C_MAC),
        );
        let h = header(&orig).unwrap();
        let n = quote_len(&orig, &h);
        assert_eq!(n, 28);
        let saved = orig[14..14 + n].to_vec();
        for (ty, code, mtu) in [(11u8, 0u8, 0u16), (3, 4, 1400)] {
            let mut f = orig.clone();
            f.resize(error_len(n), 0);
            let len = icmp_error(&mut f, &saved, ty, code, mtu, GW, GW_MAC, C, C_MAC).unwrap();
            assert_eq!(len, 14 + 20 + 8 + 28);
            assert_eq!((&f[0..6], &f[6..12]), (&C_MAC[..], &GW_MAC[..]));
            let p = Ipv4Packet::new_checked(&f[14..len]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!((p.src_addr(), p.dst_addr(), p.hop_limit()), (GW, C, 64));
            let icmp = Icmpv4Packet::new_checked(p.payload()).unwrap();
            assert!(icmp.verify_checksum());
            // smoltcp's Icmpv4Repr cannot parse a quote cut to 8 bytes of payload (RFC 792's
            // minimum), so the fields are checked by hand.
            let b = p.payload();
            assert_eq!((b[0], b[1]), (ty, code));
            assert_eq!(&b[6..8], &mtu.to_be_bytes());
            assert_eq!(&b[8..], &saved[..]);
        }
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_right() {
        let mut f = frame(
            C,
            Ipv4Addr::new(1, 1, 1, 1),
            &echo(true),
            9,
            (GW_MAC, C_MAC),
        );
        dec_ttl(&mut f).unwrap();
        let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(p.hop_limit(), 8);
        assert!(p.verify_checksum());
    }

    #[test]
    fn rate_limit_refills_with_a_fake_clock() {
        let mut r = RateLimit::new(10, 2);
        assert!(r.allow(0) && r.allow(0) && !r.allow(0));
        assert!(!r.allow(50_000_000));
        assert!(r.allow(100_000_000));
        assert!(!r.allow(100_000_000));
        assert!(r.allow(10_000_000_000) && r.allow(10_000_000_000) && !r.allow(10_000_000_000));
    }

    #[test]
    fn martians_are_named() {
        for ip in [
            "127.0.0.1",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
        ] {
            assert!(martian_outside(ip.parse().unwrap()), "{ip}");
        }
        assert!(!martian_outside(Ipv4Addr::new(8, 8, 8, 8)));
    }
}
