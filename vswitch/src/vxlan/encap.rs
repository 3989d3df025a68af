//! VXLAN encapsulation: a precomputed outer header per tunnel, prepended into the headroom.
//!
//! The outer header of a tunnel differs between packets in four fields only: the IPv4 total
//! length, the IPv4 header checksum, the UDP source port and the UDP length. [`Tunnel::new`]
//! builds the other 46 bytes once, with the IPv4 checksum computed for a total length of zero;
//! [`Tunnel::encap`] copies the template, stores the lengths and the port, and patches the
//! checksum for the length with one RFC 1624 update. The identification is zero with DF set
//! (RFC 6864 section 4.1: an atomic datagram's ID carries no meaning), so it never changes.
//!
//! Layout of the 50 bytes (offsets from the outer frame's start):
//!
//! ```text
//!  0..14  Ethernet: dst = next hop's MAC, src = uplink MAC, type 0x0800
//! 14..34  IPv4: 45 00 | total length | ident 0 | DF | TTL | 17 | checksum | src | dst
//! 34..42  UDP: source port (flow hash) | destination port | length | checksum 0
//! 42..50  VXLAN: flags I | reserved | VNI | reserved
//! ```

use std::net::Ipv4Addr;

use dataplane::checksum;
use dataplane::named_counters;
use dataplane::pool::{Buf, Pool};
use dataplane::wire::{be16_at, be32_at, VxlanRepr};

use super::{
    DEFAULT_PORT, DEFAULT_TTL, IP_OVERHEAD, OUTER_ETH_LEN, OUTER_LEN, SRC_PORT_MIN, SRC_PORT_RANGE,
    UDP_LEN, VXLAN_LEN,
};

named_counters! {
    /// Why a frame was not encapsulated; each is a drop counter of the same name.
    pub enum EncapError {
        /// The inner frame does not fit the uplink MTU once encapsulated (never fragmented).
        TooBig => "vxlan_too_big",
        /// Fewer than 50 bytes of headroom in front of the frame (never expected: buffers
        /// keep 256).
        NoHeadroom => "vxlan_no_headroom",
    }
}

/// Field offsets inside the 50-byte outer header.
mod off {
    pub const ETH_DST: usize = 0;
    pub const ETH_SRC: usize = 6;
    pub const ETH_TYPE: usize = 12;
    pub const IP: usize = 14;
    pub const IP_TOTAL_LEN: usize = IP + 2;
    pub const IP_FLAGS: usize = IP + 6;
    pub const IP_TTL: usize = IP + 8;
    pub const IP_PROTO: usize = IP + 9;
    pub const IP_CSUM: usize = IP + 10;
    pub const IP_SRC: usize = IP + 12;
    pub const IP_DST: usize = IP + 16;
    pub const UDP: usize = 34;
    pub const UDP_SPORT: usize = UDP;
    pub const UDP_DPORT: usize = UDP + 2;
    pub const UDP_LEN: usize = UDP + 4;
    pub const VXLAN: usize = 42;
}

/// What a tunnel is made of. `Default` gives port 4789, TTL 64, MTU 1500 and zero addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelParams {
    /// The uplink's MAC (outer source).
    pub local_mac: [u8; 6],
    /// The next hop's MAC on the underlay (outer destination): the remote VTEP's own MAC when
    /// it is on the uplink's subnet, else the gateway's.
    pub remote_mac: [u8; 6],
    /// The uplink's IPv4 address (outer source, our VTEP).
    pub local_ip: Ipv4Addr,
    /// The remote VTEP's IPv4 address.
    pub remote_ip: Ipv4Addr,
    /// VXLAN network identifier; only the low 24 bits are sent.
    pub vni: u32,
    /// UDP destination port.
    pub dst_port: u16,
    /// Outer TTL.
    pub ttl: u8,
    /// The uplink's IP MTU: outer IPv4 packets never exceed it (capped at 65535).
    pub mtu: u32,
}

impl Default for TunnelParams {
    fn default() -> Self {
        TunnelParams {
            local_mac: [0; 6],
            remote_mac: [0; 6],
            local_ip: Ipv4Addr::UNSPECIFIED,
            remote_ip: Ipv4Addr::UNSPECIFIED,
            vni: 0,
            dst_port: DEFAULT_PORT,
            ttl: DEFAULT_TTL,
            mtu: 1500,
        }
    }
}

/// One tunnel's precomputed outer header. Immutable on the hot path: build a new one (or call
/// [`Tunnel::set_remote_mac`] on the control side) when the next hop changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    template: [u8; OUTER_LEN],
    /// IPv4 header checksum of the template, whose total length is zero.
    ip_csum0: u16,
    /// Longest inner frame: uplink MTU - 36.
    max_inner: usize,
    params: TunnelParams,
}

impl Tunnel {
    /// Precomputes the outer header for `p`.
    #[must_use]
    pub fn new(p: TunnelParams) -> Tunnel {
        let mut t = [0u8; OUTER_LEN];
        t[off::ETH_DST..off::ETH_DST + 6].copy_from_slice(&p.remote_mac);
        t[off::ETH_SRC..off::ETH_SRC + 6].copy_from_slice(&p.local_mac);
        t[off::ETH_TYPE..off::ETH_TYPE + 2].copy_from_slice(&0x0800u16.to_be_bytes());
        // Version 4, IHL 5, DSCP/ECN 0; total length and ident stay zero.
        t[off::IP] = 0x45;
        t[off::IP_FLAGS..off::IP_FLAGS + 2].copy_from_slice(&0x4000u16.to_be_bytes());
        t[off::IP_TTL] = p.ttl;
        t[off::IP_PROTO] = 17;
        t[off::IP_SRC..off::IP_SRC + 4].copy_from_slice(&p.local_ip.octets());
        t[off::IP_DST..off::IP_DST + 4].copy_from_slice(&p.remote_ip.octets());
        let ip_csum0 = checksum::checksum(&t[off::IP..off::UDP]);
        t[off::IP_CSUM..off::IP_CSUM + 2].copy_from_slice(&ip_csum0.to_be_bytes());
        t[off::UDP_DPORT..off::UDP_DPORT + 2].copy_from_slice(&p.dst_port.to_be_bytes());
        t[off::VXLAN..].copy_from_slice(&VxlanRepr { vni: p.vni }.to_bytes());
        let mtu = p.mtu.min(u32::from(u16::MAX)) as usize;
        Tunnel {
            template: t,
            ip_csum0,
            max_inner: mtu.saturating_sub(IP_OVERHEAD),
            params: p,
        }
    }

    /// What the tunnel was built from.
    #[inline]
    #[must_use]
    pub fn params(&self) -> &TunnelParams {
        &self.params
    }

    /// The precomputed outer header (total lengths, UDP source port zero).
    #[inline]
    #[must_use]
    pub fn header(&self) -> &[u8; OUTER_LEN] {
        &self.template
    }

    /// Longest inner frame (Ethernet header included) the tunnel carries: uplink MTU - 36.
    #[inline]
    #[must_use]
    pub fn max_inner_frame(&self) -> usize {
        self.max_inner
    }

    /// Points the tunnel at a new next-hop MAC (the MAC is not covered by any checksum).
    pub fn set_remote_mac(&mut self, mac: [u8; 6]) {
        self.params.remote_mac = mac;
        self.template[off::ETH_DST..off::ETH_DST + 6].copy_from_slice(&mac);
    }

    /// Encapsulates the frame in `b` in place: prepends the outer header into the headroom.
    ///
    /// `flow_hash` is [`flow_hash`] of the inner frame (computed by the caller, which may
    /// already have it). On error the buffer is unchanged. Allocates nothing.
    #[inline]
    pub fn encap(&self, pool: &Pool, b: &mut Buf, flow_hash: u32) -> Result<(), EncapError> {
        if pool.len(b) > self.max_inner {
            return Err(EncapError::TooBig);
        }
        self.prepend_outer(pool, b, flow_hash)
    }

    /// Encapsulates a TCP super-frame whole, for an uplink that cuts it after encapsulation
    /// (UDP tunnel GSO): as [`Tunnel::encap`], but the MTU applies to each segment, which the
    /// caller has checked, and only the outer IPv4 total length must fit its 16 bits. The
    /// lengths written are the super-frame's; the segmenting side rewrites them per segment.
    #[inline]
    pub fn encap_super(&self, pool: &Pool, b: &mut Buf, flow_hash: u32) -> Result<(), EncapError> {
        if pool.len(b) + IP_OVERHEAD > usize::from(u16::MAX) {
            return Err(EncapError::TooBig);
        }
        self.prepend_outer(pool, b, flow_hash)
    }

    /// Writes the outer header in front of an inner frame of at most 65535 - 36 bytes.
    #[inline]
    fn prepend_outer(&self, pool: &Pool, b: &mut Buf, flow_hash: u32) -> Result<(), EncapError> {
        let inner = pool.len(b);
        // Both callers keep `inner` <= 65535 - 36, so both lengths fit 16 bits.
        let ip_len = (inner + IP_OVERHEAD) as u16;
        let udp_len = (inner + UDP_LEN + VXLAN_LEN) as u16;
        let Some(hdr) = pool
            .prepend(b, OUTER_LEN)
            .and_then(|d| d.first_chunk_mut::<OUTER_LEN>())
        else {
            return Err(EncapError::NoHeadroom);
        };
        *hdr = self.template;
        hdr[off::IP_TOTAL_LEN..off::IP_TOTAL_LEN + 2].copy_from_slice(&ip_len.to_be_bytes());
        let csum = checksum::update16(self.ip_csum0, 0, ip_len);
        hdr[off::IP_CSUM..off::IP_CSUM + 2].copy_from_slice(&csum.to_be_bytes());
        hdr[off::UDP_SPORT..off::UDP_SPORT + 2].copy_from_slice(&src_port(flow_hash).to_be_bytes());
        hdr[off::UDP_LEN..off::UDP_LEN + 2].copy_from_slice(&udp_len.to_be_bytes());
        Ok(())
    }
}

/// The UDP source port for a flow hash: 49152 + (hash % 16384).
#[inline]
#[must_use]
pub const fn src_port(flow_hash: u32) -> u16 {
    // The remainder is below 16384, so the sum is at most 65535.
    SRC_PORT_MIN + (flow_hash % SRC_PORT_RANGE) as u16
}

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h.rotate_left(23) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline]
fn be64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(*d.get(at..)?.first_chunk::<8>()?))
}

/// Whether IP protocol `p` carries 16-bit ports first in its header (TCP, UDP, SCTP,
/// UDP-Lite).
#[inline]
fn has_ports(p: u8) -> bool {
    matches!(p, 6 | 17 | 132 | 136)
}

/// A cheap hash of the inner flow, so that every frame of one flow gets one UDP source port.
///
/// It covers the inner MACs and EtherType and, for IPv4, the addresses and protocol and, when
/// the packet is not a fragment, the TCP/UDP/SCTP ports (fragments of a flow hash alike); for
/// IPv6 the addresses and the next header, and the ports if that is TCP/UDP/SCTP directly.
/// Whatever it cannot read (a runt frame) simply does not contribute. Never panics.
#[inline]
#[must_use]
pub fn flow_hash(inner: &[u8]) -> u32 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    h = mix(h, be64_at(inner, 0).unwrap_or(0));
    h = mix(h, be32_at(inner, 8).unwrap_or(0).into());
    let ethertype = be16_at(inner, 12).unwrap_or(0);
    h = mix(h, ethertype.into());
    let ip = inner.get(OUTER_ETH_LEN..).unwrap_or(&[]);
    match ethertype {
        0x0800 => {
            if let (Some(addrs), Some(&proto), Some(&vihl), Some(frag)) =
                (be64_at(ip, 12), ip.get(9), ip.first(), be16_at(ip, 6))
            {
                h = mix(h, addrs);
                h = mix(h, proto.into());
                let ihl = usize::from(vihl & 0x0f) * 4;
                // Ports only in the first fragment: MF clear and offset zero.
                if has_ports(proto) && frag & 0x3fff == 0 {
                    if let Some(ports) = be32_at(ip, ihl) {
                        h = mix(h, ports.into());
                    }
                }
            }
        }
        0x86dd => {
            if let (Some(&next), Some(addrs)) = (ip.get(6), ip.get(8..40)) {
                for w in addrs.chunks_exact(8) {
                    h = mix(h, be64_at(w, 0).unwrap_or(0));
                }
                h = mix(h, next.into());
                if has_ports(next) {
                    if let Some(ports) = be32_at(ip, 40) {
                        h = mix(h, ports.into());
                    }
                }
            }
        }
        _ => {}
    }
    // Final avalanche (murmur3's fmix64), so the low bits used for the port depend on all.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    // Keeping the low 32 bits is the point of the cast.
    h as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::checksum::{fold, sum16};
    use dataplane::wire::{
        ChecksumCapabilities, EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress,
        IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, VxlanPacket,
    };
    use std::collections::HashSet;

    const LOCAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const REMOTE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// Inner frame: broadcast ARP "who has 10.0.0.2, tell 10.0.0.1" (42 bytes).
    const INNER_ARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0xaa, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0xaa, 0x0a, 0x00, 0x00, 0x01, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    /// The outer header `INNER_ARP` gets in tunnel 192.0.2.1 -> 192.0.2.2, VNI 42, flow hash
    /// 0x1234_5678. Built by hand:
    /// IPv4 total length 42 + 36 = 78 (0x004e); checksum: 0x4500 + 0x004e + 0x4000 + 0x4011 +
    /// 0xc000 + 0x0201 + 0xc000 + 0x0202 = 0x24962, folded 0x4964, complemented 0xb69b.
    /// UDP source port 49152 + 0x1234_5678 % 16384 = 0xc000 + 0x1678 = 0xd678; length 58.
    const GOLDEN_OUTER: [u8; 50] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, //
        0x45, 0x00, 0x00, 0x4e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb6, 0x9b, //
        0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00, 0x02, 0x02, //
        0xd6, 0x78, 0x12, 0xb5, 0x00, 0x3a, 0x00, 0x00, //
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00,
    ];

    fn params() -> TunnelParams {
        TunnelParams {
            local_mac: LOCAL_MAC,
            remote_mac: REMOTE_MAC,
            local_ip: LOCAL_IP,
            remote_ip: REMOTE_IP,
            vni: 42,
            ..TunnelParams::default()
        }
    }

    fn encapsulated(t: &Tunnel, inner: &[u8], hash: u32) -> Result<Vec<u8>, EncapError> {
        let pool = Pool::new(64).unwrap();
        let mut b = pool.alloc_shared().unwrap();
        assert!(pool.fill(&mut b, inner));
        let r = t.encap(&pool, &mut b, hash);
        let out = pool.data(&b).to_vec();
        pool.free_shared(b);
        r.map(|()| out)
    }

    /// A TCP/IPv4 frame 10.0.0.1:sport -> 10.0.0.2:dport between two fixed MACs.
    fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[..6].copy_from_slice(&REMOTE_MAC);
        f[6..12].copy_from_slice(&LOCAL_MAC);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[20] = 0x40;
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&src.octets());
        f[30..34].copy_from_slice(&dst.octets());
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn golden_outer_header() {
        // Independent check of the hand-computed IPv4 checksum.
        let mut ip = GOLDEN_OUTER[14..34].to_vec();
        ip[10..12].fill(0);
        assert_eq!(checksum::checksum(&ip), 0xb69b);

        let t = Tunnel::new(params());
        let out = encapsulated(&t, &INNER_ARP, 0x1234_5678).unwrap();
        assert_eq!(out.len(), 50 + 42);
        assert_eq!(out[..50], GOLDEN_OUTER);
        assert_eq!(out[50..], INNER_ARP);
        assert_eq!(fold(sum16(&out[14..34], 0)), 0xffff, "header verifies");
    }

    #[test]
    fn template_checksum_is_for_zero_length() {
        let t = Tunnel::new(params());
        let h = t.header();
        assert_eq!(h[16..18], [0, 0]);
        assert_eq!(fold(sum16(&h[14..34], 0)), 0xffff);
        assert_eq!(h[34..36], [0, 0], "source port is per packet");
    }

    #[test]
    fn incremental_checksum_equals_full_for_every_length() {
        for p in [
            params(),
            TunnelParams {
                local_ip: Ipv4Addr::new(255, 255, 255, 254),
                remote_ip: Ipv4Addr::new(0, 0, 0, 1),
                ttl: 255,
                mtu: 9000,
                ..params()
            },
        ] {
            let t = Tunnel::new(p);
            let pool = Pool::new(64).unwrap();
            let mut b = pool.alloc_shared().unwrap();
            for len in 0..=t.max_inner_frame().min(dataplane::pool::MAX_FRAME) {
                pool.set_frame(&mut b, dataplane::pool::HEADROOM, len);
                t.encap(&pool, &mut b, len as u32).unwrap();
                let d = pool.data(&b);
                let mut ip = d[14..34].to_vec();
                let sent = u16::from_be_bytes([ip[10], ip[11]]);
                ip[10..12].fill(0);
                assert_eq!(sent, checksum::checksum(&ip), "inner length {len}");
                assert_eq!(usize::from(u16::from_be_bytes([d[16], d[17]])), len + 36);
                assert_eq!(usize::from(u16::from_be_bytes([d[38], d[39]])), len + 16);
            }
            pool.free_shared(b);
        }
    }

    /// smoltcp's checked views, an independent parser, accept what we emit.
    #[test]
    fn smoltcp_parses_the_outer_packet() {
        let inner = tcp_frame(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            40000,
            80,
        );
        let t = Tunnel::new(TunnelParams {
            vni: 0xab_cdef,
            dst_port: 8472,
            ttl: 7,
            ..params()
        });
        let hash = flow_hash(&inner);
        let out = encapsulated(&t, &inner, hash).unwrap();

        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress(REMOTE_MAC));
        assert_eq!(eth.src_addr(), EthernetAddress(LOCAL_MAC));
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert!(ip.dont_frag() && !ip.more_frags() && ip.frag_offset() == 0);
        assert_eq!(ip.ident(), 0);
        let caps = ChecksumCapabilities::default();
        let repr = Ipv4Repr::parse(&ip, &caps).unwrap();
        assert_eq!(repr.src_addr, LOCAL_IP);
        assert_eq!(repr.dst_addr, REMOTE_IP);
        assert_eq!(repr.next_header, IpProtocol::Udp);
        assert_eq!(repr.hop_limit, 7);
        assert_eq!(repr.payload_len, inner.len() + 16);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.checksum(), 0);
        let (s, d) = (IpAddress::Ipv4(LOCAL_IP), IpAddress::Ipv4(REMOTE_IP));
        assert!(udp.verify_checksum(&s, &d), "zero means none");
        let urepr = UdpRepr::parse(&udp, &s, &d, &caps).unwrap();
        assert_eq!(urepr.src_port, src_port(hash));
        assert_eq!(urepr.dst_port, 8472);
        let vx = VxlanPacket::new_checked(udp.payload()).unwrap();
        assert!(vx.vni_valid() && vx.reserved_is_zero());
        assert_eq!(vx.vni(), 0xab_cdef);
        assert_eq!(vx.payload(), &inner[..]);
    }

    #[test]
    fn refuses_frames_over_the_mtu_and_leaves_them_alone() {
        let t = Tunnel::new(TunnelParams {
            mtu: 1500,
            ..params()
        });
        assert_eq!(t.max_inner_frame(), 1464);
        assert!(encapsulated(&t, &[0u8; 1464], 0).is_ok());
        assert_eq!(encapsulated(&t, &[0u8; 1465], 0), Err(EncapError::TooBig));

        let pool = Pool::new(64).unwrap();
        let mut b = pool.alloc_shared().unwrap();
        assert!(pool.fill(&mut b, &[7u8; 1465]));
        assert_eq!(t.encap(&pool, &mut b, 0), Err(EncapError::TooBig));
        assert_eq!(pool.data(&b), &[7u8; 1465][..], "unchanged");
        pool.free_shared(b);

        let tiny = Tunnel::new(TunnelParams {
            mtu: 30,
            ..params()
        });
        assert_eq!(tiny.max_inner_frame(), 0);
        assert_eq!(encapsulated(&tiny, &[1], 0), Err(EncapError::TooBig));
        let huge = Tunnel::new(TunnelParams {
            mtu: u32::MAX,
            ..params()
        });
        assert_eq!(huge.max_inner_frame(), 65535 - 36);
    }

    #[test]
    fn refuses_without_headroom() {
        let t = Tunnel::new(params());
        let pool = Pool::new(64).unwrap();
        let mut b = pool.alloc_shared().unwrap();
        pool.set_frame(&mut b, 49, 60);
        let before = pool.data(&b).to_vec();
        assert_eq!(t.encap(&pool, &mut b, 0), Err(EncapError::NoHeadroom));
        assert_eq!(pool.data(&b), &before[..]);
        pool.set_frame(&mut b, 50, 60);
        assert_eq!(t.encap(&pool, &mut b, 0), Ok(()));
        assert_eq!(pool.len(&b), 110);
        pool.free_shared(b);
        assert_eq!(EncapError::TooBig.name(), "vxlan_too_big");
        assert_eq!(EncapError::NoHeadroom.name(), "vxlan_no_headroom");
        assert_eq!(EncapError::COUNT, 2);
    }

    #[test]
    fn next_hop_change_patches_only_the_mac() {
        let mut t = Tunnel::new(params());
        let before = *t.header();
        t.set_remote_mac([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        assert_eq!(t.header()[..6], [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        assert_eq!(t.header()[6..], before[6..]);
        assert_eq!(t.params().remote_mac, [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        assert_eq!(
            t,
            Tunnel::new(TunnelParams {
                remote_mac: [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee],
                ..params()
            })
        );
    }

    #[test]
    fn vni_is_masked_to_24_bits() {
        let t = Tunnel::new(TunnelParams {
            vni: 0xff12_3456,
            ..params()
        });
        assert_eq!(t.header()[42..], [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    }

    #[test]
    fn source_port_range() {
        assert_eq!(src_port(0), 49152);
        assert_eq!(src_port(16383), 65535);
        assert_eq!(src_port(16384), 49152);
        assert_eq!(src_port(u32::MAX), 65535);
    }

    #[test]
    fn flow_hash_is_stable_per_flow() {
        let a = tcp_frame(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            40000,
            80,
        );
        let mut a_later = a.clone();
        a_later.extend_from_slice(b"payload differs");
        a_later[18] = 0x12; // ident
        a_later[22] = 3; // TTL
        assert_eq!(flow_hash(&a), flow_hash(&a_later));
        let b = tcp_frame(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            40001,
            80,
        );
        assert_ne!(flow_hash(&a), flow_hash(&b));
        let c = tcp_frame(
            Ipv4Addr::new(10, 0, 0, 3),
            Ipv4Addr::new(10, 0, 0, 2),
            40000,
            80,
        );
        assert_ne!(flow_hash(&a), flow_hash(&c));

        // Fragments of one flow hash alike: ports are left out when MF or the offset is set.
        let mut first = a.clone();
        first[20] = 0x20; // MF
        let mut later = a.clone();
        later[20] = 0x00;
        later[21] = 0xb9; // offset 185
        later[34..38].copy_from_slice(b"junk");
        assert_eq!(flow_hash(&first), flow_hash(&later));
    }

    #[test]
    fn flow_hash_never_panics_on_short_or_odd_frames() {
        let a = tcp_frame(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 1, 2);
        for n in 0..=a.len() {
            let _ = flow_hash(&a[..n]);
        }
        let mut v6 = [0u8; 14 + 40 + 8];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[14 + 6] = 17;
        for n in 0..=v6.len() {
            let _ = flow_hash(&v6[..n]);
        }
        let mut opts = a.clone();
        opts[14] = 0x4f; // IHL 15: ports would be past the end
        let _ = flow_hash(&opts);
    }

    #[test]
    fn flow_hash_spreads_flows_over_source_ports() {
        // 4096 flows that differ only in the TCP source port: the birthday bound for 16384
        // ports gives about 470 collisions, so nearly all ports differ.
        let mut ports = HashSet::new();
        let mut buckets = [0u32; 16];
        for sport in 0..4096u16 {
            let f = tcp_frame(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                30000 + sport,
                443,
            );
            let p = src_port(flow_hash(&f));
            assert!(p >= 49152);
            ports.insert(p);
            buckets[usize::from((p - 49152) >> 10)] += 1;
        }
        assert!(ports.len() > 3400, "{} distinct ports", ports.len());
        for (i, n) in buckets.iter().enumerate() {
            assert!((192..=320).contains(n), "bucket {i} has {n} of 4096");
        }

        // Flows that differ only in the inner source IPv6 address spread too.
        let mut ports = HashSet::new();
        for i in 0..1024u16 {
            let mut f = vec![0u8; 14 + 40 + 8];
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            f[14 + 6] = 17;
            f[14 + 8 + 14..14 + 8 + 16].copy_from_slice(&i.to_be_bytes());
            ports.insert(src_port(flow_hash(&f)));
        }
        assert!(ports.len() > 950, "{} distinct ports", ports.len());
    }
}
