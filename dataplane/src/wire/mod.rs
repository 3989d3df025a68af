//! Checked views over packet bytes, in smoltcp's `wire` style.
//!
//! Ethernet, ARP, IPv4/IPv6, UDP, TCP and ICMPv4 come from [`smoltcp::wire`] and are re-exported
//! here so that the rest of the workspace names one module. The protocols smoltcp lacks have a
//! file each, written the same way: [`vlan`] (802.1Q tag), [`vxlan`] (RFC 7348) and [`esp`]
//! (RFC 4303), plus small helpers for the bridge in [`ethernet`].
//!
//! Each of our views is a `Packet<T: AsRef<[u8]>>` over a buffer that starts at its header:
//!
//! * `Packet::new_checked` is for untrusted bytes: it succeeds only if `check_len` does.
//! * Once `check_len` has returned `Ok(())`, **no accessor or setter panics**, whatever the bytes
//!   hold, as long as the buffer is not shortened. Every field lies inside the fixed header whose
//!   length `check_len` verified, and `payload` is the (possibly empty) rest.
//! * `Packet::new_unchecked` is for buffers we are about to emit into; their accessors panic if
//!   the buffer is shorter than the header, which is a bug in the caller, never a property of
//!   received input.
//! * `Repr::parse` never panics and returns an [`Error`]; `Repr::emit` never panics when the
//!   buffer is at least `Repr::buffer_len()` octets long.
//!
//! Errors are the small payload-free [`Error`] enum so that each maps to a named drop counter.
//! smoltcp's own parsers return `smoltcp::wire::Error`, which converts into [`Error::Malformed`].

use core::fmt;

pub mod esp;
pub mod ethernet;
pub mod vlan;
pub mod vxlan;

pub use smoltcp::phy::{Checksum, ChecksumCapabilities};
pub use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame,
    EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, Icmpv4Repr,
    Icmpv4TimeExceeded, IpAddress, IpProtocol, IpVersion, Ipv4Address, Ipv4Cidr, Ipv4Packet,
    Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    UdpPacket, UdpRepr, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN, TCP_HEADER_LEN,
    UDP_HEADER_LEN,
};

pub use self::esp::{
    Packet as EspPacket, Repr as EspRepr, Trailer as EspTrailer, HEADER_LEN as ESP_HEADER_LEN,
};
pub use self::vlan::{Packet as VlanPacket, Repr as VlanRepr, HEADER_LEN as VLAN_HEADER_LEN};
pub use self::vxlan::{Packet as VxlanPacket, Repr as VxlanRepr, HEADER_LEN as VXLAN_HEADER_LEN};

/// Byte ranges of header fields, as in smoltcp.
mod field {
    pub type Field = ::core::ops::Range<usize>;
    pub type Rest = ::core::ops::RangeFrom<usize>;
}

/// Why a view or `Repr` rejected its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field says.
    Truncated,
    /// A field holds a value the protocol forbids.
    Malformed,
    /// A flag the protocol requires is clear (VXLAN's I flag).
    BadFlags,
}

impl Error {
    /// Short snake_case name, usable as part of a drop counter's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::BadFlags => "bad_flags",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Error {}

impl From<smoltcp::wire::Error> for Error {
    /// smoltcp does not tell truncation from other faults, so everything is `Malformed`.
    fn from(_: smoltcp::wire::Error) -> Self {
        Error::Malformed
    }
}

/// Result of parsing wire bytes.
pub type Result<T> = core::result::Result<T, Error>;

/// The big-endian u16 at byte `at` of `d`, or `None` if `d` is too short: for stages that read
/// fields at offsets they computed from the frame.
#[inline]
pub fn be16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*d.get(at..)?.first_chunk::<2>()?))
}

/// The big-endian u32 at byte `at` of `d`, or `None` if `d` is too short.
#[inline]
pub fn be32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*d.get(at..)?.first_chunk::<4>()?))
}

/// Big-endian u16 from a two-byte field slice; a shorter slice (impossible for the fixed field
/// ranges used here) reads as zero rather than panicking.
#[inline]
fn be16(b: &[u8]) -> u16 {
    match b {
        [x, y, ..] => u16::from_be_bytes([*x, *y]),
        _ => 0,
    }
}

/// Big-endian u32 from a four-byte field slice; a shorter slice reads as zero.
#[inline]
fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// Golden-byte round trips for the smoltcp views we use, so every wire view has a vector.
#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    const IP_A: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const IP_B: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

    /// Broadcast ARP request "who has 10.0.0.2, tell 10.0.0.1" from 02:00:00:00:00:01.
    const ARP_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet/IPv4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, // target
    ];

    /// IPv4/UDP 10.0.0.1:1234 -> 10.0.0.2:80, payload "hi", as smoltcp emits it (ident 0, DF).
    /// IPv4 checksum 0x26cd and UDP checksum 0x7e4c computed by hand.
    const IPV4_UDP: [u8; 30] = [
        0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0xcd, // IPv4 ...
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, // ... addresses
        0x04, 0xd2, 0x00, 0x50, 0x00, 0x0a, 0x7e, 0x4c, // UDP
        b'h', b'i',
    ];

    /// ICMPv4 echo request ident 0x1234, seq 1, data "abcd"; checksum 0x2104.
    const ICMP_ECHO: [u8; 12] = [
        0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    /// TCP 10.0.0.1:40000 -> 10.0.0.2:80, PSH|ACK, seq 1, ack 2, window 512, "hi";
    /// checksum 0x94cb over the pseudo-header.
    const TCP_PSH: [u8; 22] = [
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x50, 0x18, 0x02,
        0x00, 0x94, 0xcb, 0x00, 0x00, b'h', b'i',
    ];

    #[test]
    fn error_names() {
        assert_eq!(Error::Truncated.to_string(), "truncated");
        assert_eq!(Error::Malformed.as_str(), "malformed");
        assert_eq!(Error::BadFlags.to_string(), "bad_flags");
        assert_eq!(Error::from(smoltcp::wire::Error), Error::Malformed);
    }

    #[test]
    fn ethernet_golden_round_trip() {
        let frame = EthernetFrame::new_checked(&ARP_REQUEST[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.src_addr(), EthernetAddress(MAC_A));
        assert_eq!(frame.ethertype(), EthernetProtocol::Arp);
        assert_eq!(frame.payload().len(), 28);
        let repr = EthernetRepr::parse(&frame).unwrap();

        let mut out = [0u8; 14];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(out[..], ARP_REQUEST[..14]);
        assert!(EthernetFrame::new_checked(&ARP_REQUEST[..13]).is_err());
    }

    #[test]
    fn arp_golden_round_trip() {
        let packet = ArpPacket::new_checked(&ARP_REQUEST[14..]).unwrap();
        let repr = ArpRepr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: EthernetAddress(MAC_A),
                source_protocol_addr: IP_A,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: IP_B,
            }
        );
        let mut out = vec![0xAAu8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(out[..], ARP_REQUEST[14..]);
        assert!(ArpPacket::new_checked(&ARP_REQUEST[14..41]).is_err());
    }

    #[test]
    fn ipv4_udp_golden_round_trip() {
        let caps = ChecksumCapabilities::default();
        let ip = Ipv4Packet::new_checked(&IPV4_UDP[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.checksum(), 0x26cd);
        let ip_repr = Ipv4Repr::parse(&ip, &caps).unwrap();
        assert_eq!(
            ip_repr,
            Ipv4Repr {
                src_addr: IP_A,
                dst_addr: IP_B,
                next_header: IpProtocol::Udp,
                payload_len: 10,
                hop_limit: 64,
            }
        );
        assert_eq!(
            crate::checksum::checksum(
                &{
                    let mut h = IPV4_UDP;
                    h[10..12].fill(0);
                    h
                }[..20]
            ),
            0x26cd
        );

        let (src, dst) = (IpAddress::Ipv4(IP_A), IpAddress::Ipv4(IP_B));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        let udp_repr = UdpRepr::parse(&udp, &src, &dst, &caps).unwrap();
        assert_eq!(
            udp_repr,
            UdpRepr {
                src_port: 1234,
                dst_port: 80
            }
        );
        assert_eq!(udp.payload(), b"hi");

        let mut out = [0u8; 30];
        ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), &caps);
        udp_repr.emit(
            &mut UdpPacket::new_unchecked(&mut out[20..]),
            &src,
            &dst,
            2,
            |p| p.copy_from_slice(b"hi"),
            &caps,
        );
        assert_eq!(out, IPV4_UDP);

        assert!(Ipv4Packet::new_checked(&IPV4_UDP[..19]).is_err());
        assert!(
            Ipv4Packet::new_checked(&IPV4_UDP[..29]).is_err(),
            "total_len says 30"
        );
        assert!(UdpPacket::new_checked(&IPV4_UDP[20..27]).is_err());
    }

    #[test]
    fn icmpv4_echo_golden_round_trip() {
        let caps = ChecksumCapabilities::default();
        let packet = Icmpv4Packet::new_checked(&ICMP_ECHO[..]).unwrap();
        assert!(packet.verify_checksum());
        let repr = Icmpv4Repr::parse(&packet, &caps).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcd",
            }
        );
        let mut out = [0u8; 12];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]), &caps);
        assert_eq!(out, ICMP_ECHO);
        assert!(Icmpv4Packet::new_checked(&ICMP_ECHO[..7]).is_err());
    }

    #[test]
    fn tcp_golden_round_trip() {
        let caps = ChecksumCapabilities::default();
        let (src, dst) = (IpAddress::Ipv4(IP_A), IpAddress::Ipv4(IP_B));
        let packet = TcpPacket::new_checked(&TCP_PSH[..]).unwrap();
        assert!(packet.verify_checksum(&src, &dst));
        let repr = TcpRepr::parse(&packet, &src, &dst, &caps).unwrap();
        assert_eq!(repr.src_port, 40000);
        assert_eq!(repr.dst_port, 80);
        assert_eq!(repr.control, TcpControl::Psh);
        assert_eq!(repr.seq_number, TcpSeqNumber(1));
        assert_eq!(repr.ack_number, Some(TcpSeqNumber(2)));
        assert_eq!(repr.window_len, 512);
        assert_eq!(repr.payload, b"hi");

        let mut out = [0u8; 22];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut out[..]),
            &src,
            &dst,
            &caps,
        );
        assert_eq!(out, TCP_PSH);
        assert!(TcpPacket::new_checked(&TCP_PSH[..19]).is_err());
    }
}
