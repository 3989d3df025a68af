//! virtio-net offloads done in software, for TAP ports opened with `IFF_VNET_HDR`.
//!
//! A TAP with `IFF_VNET_HDR` (and `TUNSETVNETHDRSZ` 12) puts a 12-byte `virtio_net_hdr_v1`
//! ([`VnetHdr`], [`VNET_HDR_LEN`]) in front of every frame. Through it the guest or the kernel
//! hands the switch two kinds of unfinished work:
//!
//! * **Partial checksums** (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, Linux's `CHECKSUM_PARTIAL`): the L4
//!   checksum field holds only the pseudo-header sum, and the receiver must sum the bytes from
//!   `csum_start` to the end of the frame and store the complement at `csum_start +
//!   csum_offset`. [`complete_checksum`] does that.
//! * **Segmentation offload** (`gso_type` TCPV4/TCPV6, TSO/GSO): one TCP "super-frame" of up
//!   to 64 KiB whose payload must be cut into `gso_size`-byte segments, each with a copy of the
//!   headers. [`TcpSegments::plan`] checks the headers and plans the cut;
//!   [`TcpSegments::write_segment`] writes one complete, checksummed segment.
//!
//! The switch uses these when such a frame leaves through a port that cannot take the offload
//! itself. The code here is pure byte logic: it never allocates, has no `unsafe`, and never
//! panics whatever the input (it sees wire data and guest-controlled headers); every failure is
//! an [`OffloadError`], which the caller counts as a drop.
//!
//! References:
//! * Virtual I/O Device (VIRTIO) specification 1.x, section 5.1.6 "Device Operation"
//!   (`struct virtio_net_hdr`, the checksum and GSO rules for transmitted packets).
//! * Linux `include/uapi/linux/virtio_net.h` (the flag and GSO type values, the v1 layout with
//!   `num_buffers`).
//! * RFC 793 / RFC 9293 (TCP: sequence numbers, flags, checksum over the pseudo-header), with
//!   the usual TSO rules as Linux's `tcp_gso_segment` applies them: sequence numbers advance by
//!   the bytes sent before, FIN and PSH only on the last segment, CWR only on the first.
//! * RFC 791 (IPv4: total length, identification, header checksum) and RFC 8200 (IPv6: payload
//!   length, the upper-layer pseudo-header of section 8.1).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::{checksum, fold, pseudo_header_v4, pseudo_header_v6, sum16};
use crate::wire::{be16_at, be32_at};

/// Bytes of the virtio-net header in front of every frame on a TAP with IFF_VNET_HDR (TUNSETVNETHDRSZ 12).
pub const VNET_HDR_LEN: usize = 12;
/// `flags` bit: the L4 checksum is partial and must be completed from `csum_start`/`csum_offset`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags` bit (receive side): the checksum has already been validated.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `gso_type`: no segmentation offload.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 segmentation offload (TSO).
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO); not segmented here.
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6 segmentation offload.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO, Linux 6.2+ with `TUN_F_USO4`/`TUN_F_USO6`): a
/// UDP super-frame whose payload is cut every `gso_size` bytes into datagrams of their own
/// (not IP fragments), each with the same headers; needs [`VIRTIO_NET_HDR_F_NEEDS_CSUM`] at the
/// UDP header.
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// Most datagrams one UDP super-frame may carry (the kernel's `UDP_MAX_SEGMENTS`, which it
/// checks when a TAP writer hands one over).
pub const UDP_MAX_SEGMENTS: usize = 64;
/// `gso_type` bit: the TCP super-frame carries ECN's CWR flag (keep it on the first segment).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;
/// `gso_type` bit: the super-frame is a UDP tunnel (VXLAN) packet with an IPv4 outer header
/// whose inner packet is the GSO type in the low bits (Linux 6.17+, `TUN_F_UDP_TUNNEL_GSO`).
pub const VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// `gso_type` bit: as [`VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`], with an IPv6 outer header.
pub const VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
/// Both UDP tunnel bits of `gso_type`.
pub const VIRTIO_NET_HDR_GSO_UDP_TUNNEL: u8 =
    VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6;
/// `flags` bit: the outer UDP checksum of a tunnel super-frame is to be filled in per segment
/// (`TUN_F_UDP_TUNNEL_GSO_CSUM`); without it the outer UDP checksum stays zero.
pub const VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM: u8 = 8;
/// Bytes of the virtio-net header with the UDP tunnel fields (`struct
/// virtio_net_hdr_v1_hash_tunnel`, `TUNSETVNETHDRSZ` 24): the 12 of [`VNET_HDR_LEN`], 8 of hash
/// report (unused, zero), then `outer_th_offset` (byte 20) and `inner_nh_offset` (byte 22).
pub const VNET_HDR_TNL_LEN: usize = 24;

/// The most segments [`TcpSegments::plan`] accepts for one super-frame.
pub const MAX_SEGMENTS: usize = 1024;

/// Ethertype of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86DD;
/// TPIDs of the VLAN tags walked over: 802.1Q, 802.1ad and the old pre-standard QinQ value.
const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88A8, 0x9100];
/// Most VLAN tags accepted in front of the IP header.
const MAX_VLAN_TAGS: usize = 2;
/// Bytes of an Ethernet header without tags.
const ETH_HDR_LEN: usize = 14;
/// IP protocol number / IPv6 next header of TCP.
const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
const IPPROTO_UDP: u8 = 17;
/// Bytes of a TCP header without options.
const TCP_MIN_HDR_LEN: usize = 20;
/// Bytes of an IPv4 header without options.
const IPV4_MIN_HDR_LEN: usize = 20;
/// Bytes of the fixed IPv6 header.
const IPV6_HDR_LEN: usize = 40;
/// Offset of the checksum field within the TCP header.
const TCP_CSUM_OFFSET: usize = 16;
/// TCP flag bits in byte 13 of the header.
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The offload facts of one frame, as carried in the virtio-net header. Offsets are from the frame's first byte (the Ethernet header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*` bits.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type, possibly with [`VIRTIO_NET_HDR_GSO_ECN`] or'ed in.
    pub gso_type: u8,
    /// Length of the headers as the sender saw them. Advisory only: Linux fills in the length
    /// of the linear part of the buffer, which may be more than the headers, so nothing here
    /// relies on it.
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS) of a GSO frame.
    pub gso_size: u16,
    /// Where the checksummed range starts (with [`VIRTIO_NET_HDR_F_NEEDS_CSUM`]).
    pub csum_start: u16,
    /// Where the checksum field sits, counted from `csum_start`.
    pub csum_offset: u16,
    /// Where the outer transport (UDP) header starts in a UDP tunnel super-frame (0 otherwise);
    /// the 24-byte header's `outer_th_offset`.
    pub outer_th: u16,
    /// Where the inner network header starts in a UDP tunnel super-frame (0 otherwise); the
    /// 24-byte header's `inner_nh_offset`. The inner Ethernet header counts as tunnel header.
    pub inner_nh: u16,
}

/// Reads a little-endian u16 at `at`.
fn le16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    bytes.try_into().ok().map(u16::from_le_bytes)
}

/// Finishes the IPv4 header at `l3` (header ends at `l4`) of segment `i` of a cut super-frame,
/// `total` bytes from the frame's start: its total length, its identification advanced by `i`
/// (modulo 2^16) and its header checksum. None if the frame is too short for it.
fn ipv4_segment_header(out: &mut [u8], l3: usize, l4: usize, total: usize, i: usize) -> Option<()> {
    let total_len = u16::try_from(total.checked_sub(l3)?).ok()?;
    put(out, l3 + 2, &total_len.to_be_bytes())?;
    // Identification advances by one per segment, modulo 2^16.
    let id = be16_at(out, l3 + 4)?.wrapping_add((i & 0xFFFF) as u16);
    put(out, l3 + 4, &id.to_be_bytes())?;
    put(out, l3 + 10, &[0, 0])?;
    let ip_csum = checksum(out.get(l3..l4)?);
    put(out, l3 + 10, &ip_csum.to_be_bytes())
}

/// Writes `bytes` at `at`; None (and nothing written) if they do not fit.
fn put(b: &mut [u8], at: usize, bytes: &[u8]) -> Option<()> {
    let dst = b.get_mut(at..at.checked_add(bytes.len())?)?;
    dst.copy_from_slice(bytes);
    Some(())
}

/// Reads `N` bytes at `at`.
fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

impl VnetHdr {
    /// Parses the 12-byte header (fields are little-endian, as on a modern virtio/TAP with
    /// `TUNSETVNETLE` or on x86 — they are always read as little-endian here; `num_buffers` is
    /// ignored). None if `b.len() < VNET_HDR_LEN`.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        Some(VnetHdr {
            flags: *b.first()?,
            gso_type: *b.get(1)?,
            hdr_len: le16(b, 2)?,
            gso_size: le16(b, 4)?,
            csum_start: le16(b, 6)?,
            csum_offset: le16(b, 8)?,
            outer_th: 0,
            inner_nh: 0,
        })
    }

    /// Parses a header of `len` bytes ([`VNET_HDR_LEN`] or [`VNET_HDR_TNL_LEN`]): with 24
    /// bytes the tunnel offsets too. None if `b` is shorter than `len`.
    #[must_use]
    pub fn parse_len(b: &[u8], len: usize) -> Option<VnetHdr> {
        let mut h = VnetHdr::parse(b)?;
        if len >= VNET_HDR_TNL_LEN {
            h.outer_th = le16(b, 20)?;
            h.inner_nh = le16(b, 22)?;
        }
        Some(h)
    }

    /// Writes the header into `out[..len]` ([`VNET_HDR_LEN`] or [`VNET_HDR_TNL_LEN`]; with 24
    /// bytes the hash fields are zero and the tunnel offsets follow). Returns false, writing
    /// nothing, if `out` is shorter than `len` or `len` is neither.
    pub fn write_len(&self, out: &mut [u8], len: usize) -> bool {
        if len == VNET_HDR_LEN {
            return self.write(out);
        }
        let Some(out) = out
            .get_mut(..VNET_HDR_TNL_LEN)
            .filter(|_| len == VNET_HDR_TNL_LEN)
        else {
            return false;
        };
        let mut bytes = [0u8; VNET_HDR_TNL_LEN];
        self.write(&mut bytes);
        bytes[20..22].copy_from_slice(&self.outer_th.to_le_bytes());
        bytes[22..24].copy_from_slice(&self.inner_nh.to_le_bytes());
        out.copy_from_slice(&bytes);
        true
    }

    /// True if the frame is a UDP tunnel super-frame (either tunnel bit of `gso_type`).
    #[must_use]
    pub fn is_tunnel_gso(&self) -> bool {
        self.gso_type & VIRTIO_NET_HDR_GSO_UDP_TUNNEL != 0
    }

    /// Writes the header into `out[..12]`, little-endian, with `num_buffers` 0 (the TAP ignores
    /// it on transmit). Returns false, writing nothing, if `out` is shorter than 12 bytes.
    pub fn write(&self, out: &mut [u8]) -> bool {
        let Some(out) = out.get_mut(..VNET_HDR_LEN) else {
            return false;
        };
        let mut bytes = [0u8; VNET_HDR_LEN];
        bytes[0] = self.flags;
        bytes[1] = self.gso_type;
        bytes[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        bytes[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        bytes[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        bytes[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        // bytes[10..12]: num_buffers = 0.
        out.copy_from_slice(&bytes);
        true
    }

    /// True if nothing is asked of the receiver: no GSO (the ECN bit alone does not count) and
    /// no [`VIRTIO_NET_HDR_F_NEEDS_CSUM`]. [`VIRTIO_NET_HDR_F_DATA_VALID`] asks nothing.
    #[must_use]
    pub fn is_plain(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0
            && self.gso_type & !VIRTIO_NET_HDR_GSO_ECN == VIRTIO_NET_HDR_GSO_NONE
    }

    /// True if the frame is a UDP super-frame ([`VIRTIO_NET_HDR_GSO_UDP_L4`]).
    #[must_use]
    pub fn is_udp_gso(&self) -> bool {
        self.gso_type & !VIRTIO_NET_HDR_GSO_ECN == VIRTIO_NET_HDR_GSO_UDP_L4
    }

    /// True if gso_type (with the ECN bit masked) is TCPV4 or TCPV6.
    #[must_use]
    pub fn is_tcp_gso(&self) -> bool {
        matches!(
            self.gso_type & !VIRTIO_NET_HDR_GSO_ECN,
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6
        )
    }
}

/// Why an offload could not be carried out (each becomes a named drop counter upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// csum_start/csum_offset point outside the frame.
    BadCsumOffset,
    /// A GSO type we do not segment (UDP fragmentation offload, unknown types).
    UnsupportedGso,
    /// The headers of a GSO frame are not Ethernet [+ up to two 802.1Q/802.1ad tags] + IPv4/IPv6 + TCP as the header says, or lengths disagree.
    BadGsoHeader,
    /// gso_size is 0, or a segment would not fit the caller's `max_frame`.
    BadGsoSize,
}

impl std::fmt::Display for OffloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadCsumOffset => "checksum offsets outside the frame",
            Self::UnsupportedGso => "unsupported GSO type",
            Self::BadGsoHeader => "GSO frame headers malformed or inconsistent",
            Self::BadGsoSize => "GSO segment size zero or segments too large",
        })
    }
}

impl std::error::Error for OffloadError {}

/// Completes a partial L4 checksum in place (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
///
/// The 16-bit field at `csum_start + csum_offset` holds the pseudo-header sum already (folded,
/// not complemented, as Linux leaves it for `CHECKSUM_PARTIAL`). The result is
/// `!fold(sum16(&frame[csum_start..], 0))`, summed over the whole range *including* the field's
/// current value (which is the seed), stored big-endian in the field.
///
/// The L4 protocol is not known here, so the computed value is stored as is, 0x0000 included:
/// UDP over IPv4 would want a computed 0x0000 sent as 0xFFFF, but senders never leave UDP
/// partial with a seed that gives it, and a UDP receiver accepts either form.
///
/// # Errors
/// [`OffloadError::BadCsumOffset`] if `csum_start > frame.len()` or
/// `csum_start + csum_offset + 2 > frame.len()`; the frame is then left unchanged.
pub fn complete_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), OffloadError> {
    let field = csum_start
        .checked_add(csum_offset)
        .ok_or(OffloadError::BadCsumOffset)?;
    let range = frame.get(csum_start..).ok_or(OffloadError::BadCsumOffset)?;
    // Check the field's place before writing anything.
    be16_at(frame, field).ok_or(OffloadError::BadCsumOffset)?;
    let csum = !fold(sum16(range, 0));
    put(frame, field, &csum.to_be_bytes()).ok_or(OffloadError::BadCsumOffset)
}

/// What [`fix_partial_checksum`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsumCheck {
    /// Not TCP or UDP over unfragmented IPv4/IPv6 (or UDP over IPv4 without a checksum).
    NotL4,
    /// The checksum field does not hold a partial checksum: left alone, unverified (a receiver
    /// judges it as it would any frame).
    NotPartial,
    /// The field looks partial, but the checksum verifies as it is: left alone.
    Valid,
    /// The checksum held only the pseudo-header sum a local stack leaves for offload; it is
    /// complete now.
    Completed,
}

/// Finds a TCP or UDP checksum that a local stack left partial (as Linux does for a device with
/// transmit checksum offload, such as a veth, whose frames then reach an AF_XDP socket without
/// the metadata that says so) and completes it.
///
/// A partial checksum holds exactly the folded pseudo-header sum. Only a field that does is
/// looked at further (so the common case costs a header's worth of work, not a payload's): if
/// the checksum verifies as it is (a complete checksum that happens to equal that value), it is
/// left alone; otherwise it is completed. A complete checksum is therefore never changed.
pub fn fix_partial_checksum(frame: &mut [u8]) -> CsumCheck {
    let Ok((l3, ethertype)) = walk_l2(frame) else {
        return CsumCheck::NotL4;
    };
    let Some((l4, l4_len, proto, pseudo)) = l4_of(frame, l3, ethertype) else {
        return CsumCheck::NotL4;
    };
    let field = l4
        + if proto == IPPROTO_TCP {
            TCP_CSUM_OFFSET
        } else {
            6
        };
    let (Some(seg), Some(old)) = (frame.get(l4..l4 + l4_len), be16_at(frame, field)) else {
        return CsumCheck::NotL4;
    };
    if proto == IPPROTO_UDP && old == 0 && ethertype == ETHERTYPE_IPV4 {
        return CsumCheck::NotL4;
    }
    let partial = fold(pseudo);
    if old != partial && !(partial == 0xFFFF && old == 0) {
        return CsumCheck::NotPartial;
    }
    let sum = fold(sum16(seg, pseudo));
    if sum == 0xFFFF {
        return CsumCheck::Valid;
    }
    // The sum with the field zeroed: take the field's value back out (one's complement
    // subtraction is adding its complement).
    let mut csum = !fold(u32::from(sum) + u32::from(!old));
    if proto == IPPROTO_UDP && csum == 0 {
        csum = 0xFFFF;
    }
    match put(frame, field, &csum.to_be_bytes()) {
        Some(()) => CsumCheck::Completed,
        None => CsumCheck::NotL4,
    }
}

/// The L4 header of an unfragmented IPv4 or IPv6 (no extension headers) packet at `l3` carrying
/// TCP or UDP: its offset, length (from the IP header), protocol and pseudo-header sum.
fn l4_of(frame: &[u8], l3: usize, ethertype: u16) -> Option<(usize, usize, u8, u32)> {
    let ip = frame.get(l3..)?;
    let (l4, l4_len, proto, pseudo) = match ethertype {
        ETHERTYPE_IPV4 => {
            let (&vihl, &proto) = (ip.first()?, ip.get(9)?);
            let ihl = usize::from(vihl & 0x0f) * 4;
            let total = usize::from(be16_at(ip, 2)?);
            let frag = be16_at(ip, 6)?;
            if vihl >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN || total < ihl || frag & 0x3fff != 0 {
                return None;
            }
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
            let len = total - ihl;
            let pseudo = pseudo_header_v4(src, dst, proto, u16::try_from(len).ok()?);
            (l3 + ihl, len, proto, pseudo)
        }
        ETHERTYPE_IPV6 => {
            let proto = *ip.get(6)?;
            let len = usize::from(be16_at(ip, 4)?);
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
            let pseudo = pseudo_header_v6(&src, &dst, proto, u32::try_from(len).ok()?);
            (l3 + IPV6_HDR_LEN, len, proto, pseudo)
        }
        _ => return None,
    };
    let min = match proto {
        IPPROTO_TCP => TCP_MIN_HDR_LEN,
        IPPROTO_UDP => 8,
        _ => return None,
    };
    if l4_len < min || l4.checked_add(l4_len)? > frame.len() {
        return None;
    }
    Some((l4, l4_len, proto, pseudo))
}

/// Finds the IP header behind the Ethernet header and up to [`MAX_VLAN_TAGS`] VLAN tags:
/// returns its offset and its ethertype.
fn walk_l2(frame: &[u8]) -> Result<(usize, u16), OffloadError> {
    let bad = OffloadError::BadGsoHeader;
    // The ethertype (or a tag's TPID) of the untagged header sits at bytes 12..14.
    let mut type_off = ETH_HDR_LEN - 2;
    let mut tags = 0;
    loop {
        let ethertype = be16_at(frame, type_off).ok_or(bad)?;
        if !VLAN_TPIDS.contains(&ethertype) {
            return Ok((type_off + 2, ethertype));
        }
        if tags == MAX_VLAN_TAGS {
            return Err(bad);
        }
        tags += 1;
        // A tag is TPID + TCI; the inner ethertype follows the TCI.
        type_off += 4;
    }
}

/// A plan for cutting one TCP super-frame into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegments {
    /// Offset of the IP header (after Ethernet and any VLAN tags).
    pub l3_off: usize,
    /// Offset of the TCP header.
    pub l4_off: usize,
    /// Bytes of all headers (Ethernet through TCP options): copied in front of every segment.
    pub hdr_len: usize,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// Payload bytes per segment (the last may be shorter).
    pub mss: usize,
    /// Number of segments (>= 1).
    pub count: usize,
    /// TCP payload bytes in the super-frame.
    pub payload: usize,
}

impl TcpSegments {
    /// Plans the segmentation of `frame` (the Ethernet frame, without the virtio-net header)
    /// described by `hdr`.
    ///
    /// `hdr` must ask for TCP GSO: TCPV4 expects an IPv4 header, TCPV6 an IPv6 one. The IP
    /// header is found by walking the Ethernet header and up to two VLAN tags (TPIDs 0x8100,
    /// 0x88A8, 0x9100). IPv4 must carry TCP and not be a fragment; its options are copied into
    /// every segment. IPv6 must have no extension headers (next header TCP). The TCP header
    /// length comes from its data offset (at least 20 bytes, within the packet).
    ///
    /// The TCP offset is taken from the IP header (IHL, or the fixed 40 bytes of IPv6); when
    /// [`VIRTIO_NET_HDR_F_NEEDS_CSUM`] is set, `csum_start` names the same offset in a
    /// consistent header, and an inconsistent one is not trusted (every segment's checksum is
    /// recomputed in full anyway). `hdr.hdr_len` is advisory and not used.
    ///
    /// The payload ends where the IP header's length says (IPv4 total length, IPv6 payload
    /// length); bytes after that are link padding and are not sent. `mss` is `hdr.gso_size`;
    /// `count` is `ceil(payload / mss)`, and 1 for a payload of at most one MSS, an empty
    /// payload included.
    ///
    /// # Errors
    /// * [`OffloadError::UnsupportedGso`] if `hdr` does not ask for TCP GSO.
    /// * [`OffloadError::BadGsoSize`] if `gso_size` is 0, the longest segment (headers plus
    ///   `min(mss, payload)`) exceeds `max_frame`, or there would be more than
    ///   [`MAX_SEGMENTS`] segments.
    /// * [`OffloadError::BadGsoHeader`] if the headers are not as described above, or the IP
    ///   length runs past the frame.
    pub fn plan(
        frame: &[u8],
        hdr: &VnetHdr,
        max_frame: usize,
    ) -> Result<TcpSegments, OffloadError> {
        let bad = OffloadError::BadGsoHeader;
        let ipv6 = match hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
            VIRTIO_NET_HDR_GSO_TCPV4 => false,
            VIRTIO_NET_HDR_GSO_TCPV6 => true,
            _ => return Err(OffloadError::UnsupportedGso),
        };
        let mss = usize::from(hdr.gso_size);
        if mss == 0 {
            return Err(OffloadError::BadGsoSize);
        }

        let (l3_off, ethertype) = walk_l2(frame)?;
        // `ip_end` is where the IP packet ends according to its own length field.
        let (l4_off, ip_end) = if ipv6 {
            if ethertype != ETHERTYPE_IPV6 {
                return Err(bad);
            }
            let version = frame.get(l3_off).ok_or(bad)? >> 4;
            let payload_len = usize::from(be16_at(frame, l3_off + 4).ok_or(bad)?);
            let next_header = *frame.get(l3_off + 6).ok_or(bad)?;
            if version != 6 || next_header != IPPROTO_TCP {
                return Err(bad);
            }
            let l4_off = l3_off + IPV6_HDR_LEN;
            (l4_off, l4_off + payload_len)
        } else {
            if ethertype != ETHERTYPE_IPV4 {
                return Err(bad);
            }
            let ver_ihl = *frame.get(l3_off).ok_or(bad)?;
            let ihl = usize::from(ver_ihl & 0x0F) * 4;
            let total_len = usize::from(be16_at(frame, l3_off + 2).ok_or(bad)?);
            let frag = be16_at(frame, l3_off + 6).ok_or(bad)?;
            let proto = *frame.get(l3_off + 9).ok_or(bad)?;
            // MF set or a fragment offset: a fragment cannot be segmented.
            let fragment = frag & 0x3FFF != 0;
            if ver_ihl >> 4 != 4
                || ihl < IPV4_MIN_HDR_LEN
                || total_len < ihl
                || fragment
                || proto != IPPROTO_TCP
            {
                return Err(bad);
            }
            (l3_off + ihl, l3_off + total_len)
        };
        // Everything up to `ip_end` must be there; the whole IP header thereby is.
        if ip_end > frame.len() || l4_off + TCP_MIN_HDR_LEN > ip_end {
            return Err(bad);
        }

        let data_offset = frame.get(l4_off + 12).ok_or(bad)? >> 4;
        let hdr_len = l4_off + usize::from(data_offset) * 4;
        if usize::from(data_offset) * 4 < TCP_MIN_HDR_LEN || hdr_len > ip_end {
            return Err(bad);
        }
        let payload = ip_end - hdr_len;

        let count = payload.div_ceil(mss).max(1);
        if count > MAX_SEGMENTS || hdr_len + payload.min(mss) > max_frame {
            return Err(OffloadError::BadGsoSize);
        }
        Ok(TcpSegments {
            l3_off,
            l4_off,
            hdr_len,
            ipv6,
            mss,
            count,
            payload,
        })
    }

    /// Offset into the payload and length of segment `i`'s payload; None if `i >= count`.
    fn seg_payload(&self, i: usize) -> Option<(usize, usize)> {
        if i >= self.count {
            return None;
        }
        let start = i.checked_mul(self.mss)?;
        Some((start, self.mss.min(self.payload.saturating_sub(start))))
    }

    /// Length in bytes of segment `i` (headers included); 0 if `i >= count`.
    #[must_use]
    pub fn seg_len(&self, i: usize) -> usize {
        self.seg_payload(i)
            .map_or(0, |(_, len)| self.hdr_len.saturating_add(len))
    }

    /// Writes segment `i` (0-based, < count) of `frame` into `out` and returns its length.
    ///
    /// `frame` must be the frame this plan was made from. The segment is a complete, valid
    /// frame: the same L2 headers; IPv4: total length fixed, identification = original + `i`
    /// (wrapping), header checksum recomputed; IPv6: payload length fixed; TCP: sequence
    /// number = original + `i * mss` (wrapping), FIN and PSH only on the last segment, CWR
    /// only on the first, and the checksum computed in full over the pseudo-header, the TCP
    /// header and the payload (whatever the super-frame's checksum field held is overwritten).
    ///
    /// # Errors
    /// * [`OffloadError::BadGsoSize`] if `i >= count` or `out` is shorter than
    ///   [`seg_len(i)`](Self::seg_len).
    /// * [`OffloadError::BadGsoHeader`] if `frame` is too short for the plan, or the plan's
    ///   offsets do not describe IP and TCP headers (a plan not made by [`plan`](Self::plan)).
    pub fn write_segment(
        &self,
        frame: &[u8],
        i: usize,
        out: &mut [u8],
    ) -> Result<usize, OffloadError> {
        let bad = OffloadError::BadGsoHeader;
        let (start, len) = self.seg_payload(i).ok_or(OffloadError::BadGsoSize)?;
        let (l3, l4, hdr_len) = (self.l3_off, self.l4_off, self.hdr_len);
        let ip_hdr_min = if self.ipv6 {
            IPV6_HDR_LEN
        } else {
            IPV4_MIN_HDR_LEN
        };
        let geometry_ok = l3.checked_add(ip_hdr_min).is_some_and(|end| end <= l4)
            && l4
                .checked_add(TCP_MIN_HDR_LEN)
                .is_some_and(|end| end <= hdr_len);
        if !geometry_ok {
            return Err(bad);
        }

        let total = hdr_len.checked_add(len).ok_or(bad)?;
        let src_start = hdr_len.checked_add(start).ok_or(bad)?;
        let src_payload = frame
            .get(src_start..src_start.checked_add(len).ok_or(bad)?)
            .ok_or(bad)?;
        let src_headers = frame.get(..hdr_len).ok_or(bad)?;
        let out = out.get_mut(..total).ok_or(OffloadError::BadGsoSize)?;
        let (out_headers, out_payload) = out.split_at_mut_checked(hdr_len).ok_or(bad)?;
        out_headers.copy_from_slice(src_headers);
        out_payload.copy_from_slice(src_payload);

        // Lengths: both fit, as the segment is no longer than the super-frame's IP packet.
        let tcp_len = total - l4;
        let pseudo = if self.ipv6 {
            let payload_len = u16::try_from(total - l3 - IPV6_HDR_LEN).map_err(|_| bad)?;
            put(out, l3 + 4, &payload_len.to_be_bytes()).ok_or(bad)?;
            let src = Ipv6Addr::from(array::<16>(out, l3 + 8).ok_or(bad)?);
            let dst = Ipv6Addr::from(array::<16>(out, l3 + 24).ok_or(bad)?);
            let tcp_len = u32::try_from(tcp_len).map_err(|_| bad)?;
            pseudo_header_v6(&src, &dst, IPPROTO_TCP, tcp_len)
        } else {
            ipv4_segment_header(out, l3, l4, total, i).ok_or(bad)?;
            let src = Ipv4Addr::from(array::<4>(out, l3 + 12).ok_or(bad)?);
            let dst = Ipv4Addr::from(array::<4>(out, l3 + 16).ok_or(bad)?);
            let tcp_len = u16::try_from(tcp_len).map_err(|_| bad)?;
            pseudo_header_v4(src, dst, IPPROTO_TCP, tcp_len)
        };

        // Sequence numbers advance by the payload sent before, modulo 2^32.
        let step = u32::try_from(start & 0xFFFF_FFFF).map_err(|_| bad)?;
        let seq = be32_at(out, l4 + 4).ok_or(bad)?.wrapping_add(step);
        put(out, l4 + 4, &seq.to_be_bytes()).ok_or(bad)?;
        let mut flags = *out.get(l4 + 13).ok_or(bad)?;
        if i + 1 < self.count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        put(out, l4 + 13, &[flags]).ok_or(bad)?;
        put(out, l4 + TCP_CSUM_OFFSET, &[0, 0]).ok_or(bad)?;
        let tcp_csum = !fold(sum16(out.get(l4..).ok_or(bad)?, pseudo));
        put(out, l4 + TCP_CSUM_OFFSET, &tcp_csum.to_be_bytes()).ok_or(bad)?;
        Ok(total)
    }
}

/// A plan for cutting one UDP tunnel super-frame ([`VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`] or
/// `_IPV6`: a TCP super-frame inside UDP, e.g. VXLAN) into complete wire packets, as the kernel
/// would: every segment is the outer headers (copied, lengths fixed) around one segment of the
/// inner TCP super-frame ([`TcpSegments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSegments {
    /// The inner plan, over the frame from [`TunnelSegments::prefix`] on (the inner
    /// Ethernet header, 14 bytes in front of `inner_nh`).
    pub inner: TcpSegments,
    /// Bytes of outer headers copied in front of every inner segment.
    pub prefix: usize,
    /// Offset of the outer IP header.
    pub outer_l3: usize,
    /// Offset of the outer UDP header.
    pub outer_th: usize,
    /// The outer header is IPv6 (else IPv4).
    pub outer_ipv6: bool,
    /// The outer UDP checksum is computed per segment (always for IPv6; for IPv4 only with
    /// [`VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`], else it is zero).
    pub udp_csum: bool,
}

impl TunnelSegments {
    /// Plans the segmentation of the tunnel super-frame `frame` described by `hdr`: the
    /// outer IP header (behind Ethernet and up to two VLAN tags) must be the version the tunnel
    /// bit says, carry UDP right at `outer_th` and not be a fragment; `inner_nh` must leave
    /// room for the UDP header and an inner Ethernet header, whose ethertype (the two bytes in
    /// front of `inner_nh`) names the inner IP version; the inner packet is then planned as
    /// [`TcpSegments::plan`] does, each whole segment (outer headers included) within
    /// `max_frame`.
    ///
    /// # Errors
    /// [`OffloadError::UnsupportedGso`] without a (single) tunnel bit, else as
    /// [`TcpSegments::plan`], [`OffloadError::BadGsoHeader`] for outer headers as above.
    pub fn plan(
        frame: &[u8],
        hdr: &VnetHdr,
        max_frame: usize,
    ) -> Result<TunnelSegments, OffloadError> {
        let bad = OffloadError::BadGsoHeader;
        let outer_ipv6 = match hdr.gso_type & VIRTIO_NET_HDR_GSO_UDP_TUNNEL {
            VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4 => false,
            VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6 => true,
            _ => return Err(OffloadError::UnsupportedGso),
        };
        let (outer_l3, ethertype) = walk_l2(frame)?;
        let outer_th = usize::from(hdr.outer_th);
        let inner_nh = usize::from(hdr.inner_nh);
        let first = *frame.get(outer_l3).ok_or(bad)?;
        let (l4, proto) = if outer_ipv6 {
            if ethertype != ETHERTYPE_IPV6 || first >> 4 != 6 {
                return Err(bad);
            }
            (
                outer_l3 + IPV6_HDR_LEN,
                *frame.get(outer_l3 + 6).ok_or(bad)?,
            )
        } else {
            let ihl = usize::from(first & 0x0F) * 4;
            let frag = be16_at(frame, outer_l3 + 6).ok_or(bad)?;
            if ethertype != ETHERTYPE_IPV4
                || first >> 4 != 4
                || ihl < IPV4_MIN_HDR_LEN
                || frag & 0x3FFF != 0
            {
                return Err(bad);
            }
            (outer_l3 + ihl, *frame.get(outer_l3 + 9).ok_or(bad)?)
        };
        if l4 != outer_th || proto != IPPROTO_UDP || inner_nh < outer_th + 8 + ETH_HDR_LEN {
            return Err(bad);
        }
        let prefix = inner_nh - ETH_HDR_LEN;
        let inner_hdr = VnetHdr {
            gso_type: hdr.gso_type & !VIRTIO_NET_HDR_GSO_UDP_TUNNEL,
            csum_start: hdr
                .csum_start
                .saturating_sub(u16::try_from(prefix).map_err(|_| bad)?),
            hdr_len: 0,
            outer_th: 0,
            inner_nh: 0,
            ..*hdr
        };
        let max_inner = max_frame
            .checked_sub(prefix)
            .ok_or(OffloadError::BadGsoSize)?;
        let inner = TcpSegments::plan(frame.get(prefix..).ok_or(bad)?, &inner_hdr, max_inner)?;
        if inner.l3_off != ETH_HDR_LEN {
            // A "tag" in front of the inner IP header: not the inner Ethernet header we expect.
            return Err(bad);
        }
        Ok(TunnelSegments {
            inner,
            prefix,
            outer_l3,
            outer_th,
            outer_ipv6,
            udp_csum: outer_ipv6 || hdr.flags & VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM != 0,
        })
    }

    /// Number of segments (>= 1).
    #[must_use]
    pub fn count(&self) -> usize {
        self.inner.count
    }

    /// Writes segment `i` of `frame` into `out` and returns its length: the outer headers with
    /// the IP length (IPv4: identification + `i` and the header checksum too) and the UDP
    /// length fixed, the UDP checksum computed or zero, around inner segment `i` written as
    /// [`TcpSegments::write_segment`] writes it.
    ///
    /// # Errors
    /// As [`TcpSegments::write_segment`].
    pub fn write_segment(
        &self,
        frame: &[u8],
        i: usize,
        out: &mut [u8],
    ) -> Result<usize, OffloadError> {
        let bad = OffloadError::BadGsoHeader;
        let p = self.prefix;
        let inner_src = frame.get(p..).ok_or(bad)?;
        let n = self.inner.write_segment(
            inner_src,
            i,
            out.get_mut(p..).ok_or(OffloadError::BadGsoSize)?,
        )?;
        put(out, 0, frame.get(..p).ok_or(bad)?).ok_or(bad)?;
        let total = p.checked_add(n).ok_or(bad)?;
        let (l3, th) = (self.outer_l3, self.outer_th);
        let udp_len = u16::try_from(total - th).map_err(|_| bad)?;
        let pseudo = if self.outer_ipv6 {
            let payload_len = u16::try_from(total - l3 - IPV6_HDR_LEN).map_err(|_| bad)?;
            put(out, l3 + 4, &payload_len.to_be_bytes()).ok_or(bad)?;
            let src = Ipv6Addr::from(array::<16>(out, l3 + 8).ok_or(bad)?);
            let dst = Ipv6Addr::from(array::<16>(out, l3 + 24).ok_or(bad)?);
            pseudo_header_v6(&src, &dst, IPPROTO_UDP, u32::from(udp_len))
        } else {
            ipv4_segment_header(out, l3, th, total, i).ok_or(bad)?;
            let src = Ipv4Addr::from(array::<4>(out, l3 + 12).ok_or(bad)?);
            let dst = Ipv4Addr::from(array::<4>(out, l3 + 16).ok_or(bad)?);
            pseudo_header_v4(src, dst, IPPROTO_UDP, udp_len)
        };
        put(out, th + 4, &udp_len.to_be_bytes()).ok_or(bad)?;
        put(out, th + 6, &[0, 0]).ok_or(bad)?;
        if self.udp_csum {
            // A computed zero is sent as all ones (RFC 768): zero means "no checksum".
            let c = !fold(sum16(out.get(th..total).ok_or(bad)?, pseudo));
            let c = if c == 0 { 0xFFFF } else { c };
            put(out, th + 6, &c.to_be_bytes()).ok_or(bad)?;
        }
        Ok(total)
    }
}

/// A plan for cutting one UDP super-frame ([`VIRTIO_NET_HDR_GSO_UDP_L4`]) back into the
/// datagrams it was made of, as the kernel's `__udp_gso_segment` would: every segment is the
/// headers (Ethernet, up to two VLAN tags, IPv4 or IPv6, UDP; copied) in front of the next
/// `gso_size` bytes of payload (the last segment takes what is left), with the IP length (IPv4:
/// identification + segment index, header checksum) and UDP length fixed. The UDP checksum is
/// computed over IPv6; over IPv4 it is zero ("none", RFC 768): the super-frame's checksum was
/// only partial (it never crossed a wire) or vouched for by the kernel, so a pass over every
/// byte would check nothing (ESP in UDP, what these carry, sends zero anyway, its ICV checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSegments {
    /// Offset of the IP header.
    pub l3_off: usize,
    /// Offset of the UDP header (the headers copied in front of every segment end 8 bytes on).
    pub l4_off: usize,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// Payload bytes per segment.
    pub mss: usize,
    /// Payload bytes in all.
    pub payload: usize,
    /// Number of segments (>= 1).
    pub count: usize,
}

impl UdpSegments {
    /// Plans the cut of `frame` described by `hdr`: a [`VIRTIO_NET_HDR_GSO_UDP_L4`] frame with
    /// its checksum partial at the UDP header (`NEEDS_CSUM`, `csum_start` the UDP header,
    /// `csum_offset` 6, as the kernel requires of a writer), IPv4 (no fragment) or IPv6 without
    /// extension headers carrying UDP, IP and UDP lengths that describe the frame exactly, at
    /// most [`UDP_MAX_SEGMENTS`] segments, each within `max_frame`. (A frame the kernel vouches
    /// for with `DATA_VALID` instead of a partial checksum is accepted too.)
    ///
    /// # Errors
    /// [`OffloadError::UnsupportedGso`] for another GSO type, [`OffloadError::BadCsumOffset`]
    /// for checksum facts other than the above, [`OffloadError::BadGsoHeader`] for headers or
    /// lengths that disagree, [`OffloadError::BadGsoSize`] for a zero `gso_size`, too many
    /// segments or a segment over `max_frame`.
    pub fn plan(
        frame: &[u8],
        hdr: &VnetHdr,
        max_frame: usize,
    ) -> Result<UdpSegments, OffloadError> {
        let bad = OffloadError::BadGsoHeader;
        if !hdr.is_udp_gso() {
            return Err(OffloadError::UnsupportedGso);
        }
        let (l3_off, ethertype) = walk_l2(frame)?;
        let first = *frame.get(l3_off).ok_or(bad)?;
        let (l4_off, proto, ip_len, ipv6) = match ethertype {
            ETHERTYPE_IPV4 => {
                let ihl = usize::from(first & 0x0F) * 4;
                let frag = be16_at(frame, l3_off + 6).ok_or(bad)?;
                if first >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN || frag & 0x3FFF != 0 {
                    return Err(bad);
                }
                let total = usize::from(be16_at(frame, l3_off + 2).ok_or(bad)?);
                let proto = *frame.get(l3_off + 9).ok_or(bad)?;
                (l3_off + ihl, proto, l3_off + total, false)
            }
            ETHERTYPE_IPV6 => {
                if first >> 4 != 6 {
                    return Err(bad);
                }
                let payload = usize::from(be16_at(frame, l3_off + 4).ok_or(bad)?);
                let proto = *frame.get(l3_off + 6).ok_or(bad)?;
                let l4 = l3_off + IPV6_HDR_LEN;
                (l4, proto, l4 + payload, true)
            }
            _ => return Err(bad),
        };
        if proto != IPPROTO_UDP || ip_len != frame.len() {
            return Err(bad);
        }
        let udp_len = usize::from(be16_at(frame, l4_off + 4).ok_or(bad)?);
        let payload = frame.len().checked_sub(l4_off + 8).ok_or(bad)?;
        if udp_len != payload + 8 {
            return Err(bad);
        }
        // Partial at the UDP header (what a writer must give, and what a local stack's
        // super-frame carries when read), or vouched for by the kernel: every segment's
        // checksum is computed here either way.
        let partial = hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
        let at_udp = usize::from(hdr.csum_start) == l4_off && hdr.csum_offset == 6;
        if (partial && !at_udp) || (!partial && hdr.flags & VIRTIO_NET_HDR_F_DATA_VALID == 0) {
            return Err(OffloadError::BadCsumOffset);
        }
        let mss = usize::from(hdr.gso_size);
        if mss == 0 || l4_off + 8 + mss > max_frame {
            return Err(OffloadError::BadGsoSize);
        }
        let count = payload.div_ceil(mss).max(1);
        if count > UDP_MAX_SEGMENTS {
            return Err(OffloadError::BadGsoSize);
        }
        Ok(UdpSegments {
            l3_off,
            l4_off,
            ipv6,
            mss,
            payload,
            count,
        })
    }

    /// Payload bytes of segment `i` (0 past the last).
    #[must_use]
    pub fn seg_payload(&self, i: usize) -> usize {
        let start = i.saturating_mul(self.mss);
        self.payload.saturating_sub(start).min(self.mss)
    }

    /// Writes segment `i` of `frame` into `out` and returns its length.
    ///
    /// # Errors
    /// [`OffloadError::BadGsoSize`] if `out` is too small or `i` is past the last segment,
    /// [`OffloadError::BadGsoHeader`] if `frame` is not the one planned.
    pub fn write_segment(
        &self,
        frame: &[u8],
        i: usize,
        out: &mut [u8],
    ) -> Result<usize, OffloadError> {
        let bad = OffloadError::BadGsoHeader;
        let small = OffloadError::BadGsoSize;
        if i >= self.count {
            return Err(small);
        }
        let (l3, th) = (self.l3_off, self.l4_off);
        let hdrs = th + 8;
        let n = self.seg_payload(i);
        let start = hdrs + i * self.mss;
        let total = hdrs + n;
        let src = frame.get(start..start + n).ok_or(bad)?;
        put(out, 0, frame.get(..hdrs).ok_or(bad)?).ok_or(small)?;
        put(out, hdrs, src).ok_or(small)?;
        let udp_len = u16::try_from(n + 8).map_err(|_| bad)?;
        let pseudo = if self.ipv6 {
            put(out, l3 + 4, &udp_len.to_be_bytes()).ok_or(bad)?;
            let src = Ipv6Addr::from(array::<16>(out, l3 + 8).ok_or(bad)?);
            let dst = Ipv6Addr::from(array::<16>(out, l3 + 24).ok_or(bad)?);
            pseudo_header_v6(&src, &dst, IPPROTO_UDP, u32::from(udp_len))
        } else {
            ipv4_segment_header(out, l3, th, total, i).ok_or(bad)?;
            // No checksum over IPv4 (see the type's documentation).
            0
        };
        put(out, th + 4, &udp_len.to_be_bytes()).ok_or(bad)?;
        put(out, th + 6, &[0, 0]).ok_or(bad)?;
        if self.ipv6 {
            // A computed zero is sent as all ones (RFC 768): zero means "no checksum".
            let c = !fold(sum16(out.get(th..total).ok_or(bad)?, pseudo));
            let c = if c == 0 { 0xFFFF } else { c };
            put(out, th + 6, &c.to_be_bytes()).ok_or(bad)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    // The PRNG's output is cut to field widths on purpose.
    #![allow(clippy::cast_possible_truncation)]

    use super::*;
    use smoltcp::wire::{EthernetFrame, IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket};

    /// xorshift64: deterministic, dependency-free randomness.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const TCP_ACK: u8 = 0x10;

    fn src6() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }

    fn dst6() -> Ipv6Addr {
        "2001:db8:ffff::2".parse().unwrap()
    }

    /// The payload byte at `i`: a pattern that does not repeat every 256 bytes.
    fn pattern(i: usize) -> u8 {
        (i.wrapping_mul(7) ^ (i / 251)) as u8
    }

    /// What a test super-frame looks like.
    struct Spec {
        ipv6: bool,
        /// TPIDs of VLAN tags to put in front of the IP header.
        tags: Vec<u16>,
        payload: usize,
        seq: u32,
        flags: u8,
    }

    impl Spec {
        fn new(ipv6: bool, payload: usize) -> Spec {
            Spec {
                ipv6,
                tags: Vec::new(),
                payload,
                seq: 1000,
                flags: TCP_ACK,
            }
        }
    }

    /// Builds Ethernet [+ tags] + IPv4 (id 0x1234, DF) or IPv6 + TCP with 12 bytes of
    /// timestamp options + the pattern payload. The TCP checksum field is left zero.
    fn build(spec: &Spec) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        for (n, tpid) in spec.tags.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + n as u16).to_be_bytes());
        }
        let tcp_len = 32 + spec.payload;
        if spec.ipv6 {
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[IPPROTO_TCP, 64]);
            f.extend_from_slice(&src6().octets());
            f.extend_from_slice(&dst6().octets());
        } else {
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let start = f.len();
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, IPPROTO_TCP, 0, 0]);
            f.extend_from_slice(&SRC4.octets());
            f.extend_from_slice(&DST4.octets());
            let csum = checksum(&f[start..]);
            f[start + 10..start + 12].copy_from_slice(&csum.to_be_bytes());
        }
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&80u16.to_be_bytes());
        f.extend_from_slice(&spec.seq.to_be_bytes());
        f.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        f.extend_from_slice(&[8 << 4, spec.flags, 0xff, 0xff, 0, 0, 0, 0]);
        // NOP, NOP, timestamps (kind 8, length 10).
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0x11, 0x22, 0, 0, 0x33, 0x44]);
        f.extend((0..spec.payload).map(pattern));
        f
    }

    fn l3_of(spec: &Spec) -> usize {
        14 + 4 * spec.tags.len()
    }

    fn gso_hdr(ipv6: bool, gso_size: u16, l4: usize) -> VnetHdr {
        VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: if ipv6 {
                VIRTIO_NET_HDR_GSO_TCPV6
            } else {
                VIRTIO_NET_HDR_GSO_TCPV4
            },
            hdr_len: (l4 + 32) as u16,
            gso_size,
            csum_start: l4 as u16,
            csum_offset: 16,
            ..Default::default()
        }
    }

    /// Segments `spec`'s super-frame and checks every segment with smoltcp.
    fn check_segmentation(spec: &Spec, gso_size: u16) {
        let frame = build(spec);
        let l3 = l3_of(spec);
        let l4 = l3 + if spec.ipv6 { 40 } else { 20 };
        let hdr = gso_hdr(spec.ipv6, gso_size, l4);
        let plan = TcpSegments::plan(&frame, &hdr, 1514).unwrap();
        let mss = usize::from(gso_size);
        assert_eq!(
            plan,
            TcpSegments {
                l3_off: l3,
                l4_off: l4,
                hdr_len: l4 + 32,
                ipv6: spec.ipv6,
                mss,
                count: spec.payload.div_ceil(mss).max(1),
                payload: spec.payload,
            }
        );

        let mut joined = Vec::new();
        let mut total_len = 0;
        for i in 0..plan.count {
            let mut seg = vec![0u8; plan.seg_len(i)];
            let n = plan.write_segment(&frame, i, &mut seg).unwrap();
            assert_eq!(n, seg.len());
            total_len += n;
            let last = i + 1 == plan.count;
            let want_payload = if last { spec.payload - i * mss } else { mss };
            assert_eq!(n, plan.hdr_len + want_payload, "segment {i}");
            assert!(n <= 1514);
            // L2 headers are unchanged.
            assert_eq!(seg[..l3], frame[..l3]);
            if spec.tags.is_empty() {
                let eth = EthernetFrame::new_checked(&seg[..]).unwrap();
                let want = if spec.ipv6 { 0x86DD } else { 0x0800 };
                assert_eq!(u16::from(eth.ethertype()), want);
            }
            let (tcp_bytes, src, dst) = if spec.ipv6 {
                let ip = Ipv6Packet::new_checked(&seg[l3..]).unwrap();
                assert_eq!(usize::from(ip.payload_len()), n - l3 - 40);
                assert_eq!(ip.hop_limit(), 64);
                let (s, d) = (ip.src_addr(), ip.dst_addr());
                (ip.payload(), IpAddress::Ipv6(s), IpAddress::Ipv6(d))
            } else {
                let ip = Ipv4Packet::new_checked(&seg[l3..]).unwrap();
                assert!(ip.verify_checksum(), "segment {i}: IPv4 header checksum");
                assert_eq!(usize::from(ip.total_len()), n - l3);
                assert_eq!(ip.ident(), 0x1234u16.wrapping_add(i as u16));
                assert!(ip.dont_frag());
                let (s, d) = (ip.src_addr(), ip.dst_addr());
                (ip.payload(), IpAddress::Ipv4(s), IpAddress::Ipv4(d))
            };
            let tcp = TcpPacket::new_checked(tcp_bytes).unwrap();
            assert!(tcp.verify_checksum(&src, &dst), "segment {i}: TCP checksum");
            assert_eq!(tcp.header_len(), 32);
            assert_eq!(tcp.options(), &frame[l4 + 20..l4 + 32]);
            assert_eq!(
                tcp.seq_number().0 as u32,
                spec.seq.wrapping_add((i * mss) as u32),
                "segment {i}: sequence number"
            );
            assert_eq!(tcp.ack_number().0 as u32, 0x0102_0304);
            assert!(tcp.ack());
            assert_eq!(tcp.fin(), last && spec.flags & TCP_FIN != 0);
            assert_eq!(tcp.psh(), last && spec.flags & TCP_PSH != 0);
            assert_eq!(tcp.cwr(), i == 0 && spec.flags & TCP_CWR != 0);
            joined.extend_from_slice(tcp.payload());
        }
        assert_eq!(joined, &frame[plan.hdr_len..], "payloads concatenate back");
        assert_eq!(total_len, plan.count * plan.hdr_len + spec.payload);
    }

    #[test]
    fn vnet_hdr_golden_bytes_round_trip() {
        let hdr = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        let golden = [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0];
        let mut out = [0xEEu8; 14];
        assert!(hdr.write(&mut out));
        assert_eq!(out[..12], golden);
        assert_eq!(out[12..], [0xEE, 0xEE], "nothing written past 12 bytes");
        assert_eq!(VnetHdr::parse(&golden), Some(hdr));
        // Trailing bytes (the frame) and num_buffers are ignored.
        let mut with_frame = golden.to_vec();
        with_frame[10] = 7;
        with_frame.extend_from_slice(&[0xAB; 20]);
        assert_eq!(VnetHdr::parse(&with_frame), Some(hdr));
    }

    /// `inner` in an outer Ethernet / IPv4 (or IPv6) / UDP / VXLAN header, the lengths the
    /// super-frame's, the UDP checksum zero.
    fn in_vxlan(inner: &[u8], ipv6: bool) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x22, 0x02, 0, 0, 0, 0, 0x11];
        let udp_len = (8 + 8 + inner.len()) as u16;
        if ipv6 {
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&udp_len.to_be_bytes());
            f.extend_from_slice(&[IPPROTO_UDP, 64]);
            f.extend_from_slice(&src6().octets());
            f.extend_from_slice(&dst6().octets());
        } else {
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&(20 + udp_len).to_be_bytes());
            f.extend_from_slice(&[0x77, 0x00, 0x40, 0x00, 64, IPPROTO_UDP, 0, 0]);
            f.extend_from_slice(&SRC4.octets());
            f.extend_from_slice(&DST4.octets());
            let csum = checksum(&f[14..34]);
            f[24..26].copy_from_slice(&csum.to_be_bytes());
        }
        f.extend_from_slice(&50000u16.to_be_bytes());
        f.extend_from_slice(&4789u16.to_be_bytes());
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0x10, 0x68, 0]);
        f.extend_from_slice(inner);
        f
    }

    /// A VXLAN super-frame is cut into the packets the kernel would send: each the outer
    /// headers (IPv4: lengths, identification and checksum fixed; IPv6: payload length) and a
    /// UDP checksum (zero unless asked for, always for IPv6) around the inner plan's segment.
    #[test]
    fn tunnel_super_frames_are_cut_into_outer_and_inner_valid_packets() {
        use smoltcp::wire::UdpPacket;
        for (outer6, inner6, csum_flag) in [
            (false, false, false),
            (false, false, true),
            (false, true, false),
            (true, false, false),
        ] {
            let spec = Spec::new(inner6, 3000);
            let inner = build(&spec);
            let frame = in_vxlan(&inner, outer6);
            let ol = if outer6 { 54 + 8 + 8 } else { 34 + 8 + 8 };
            let inner_l4 = 14 + if inner6 { 40 } else { 20 };
            let tunnel_bit = if outer6 {
                VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6
            } else {
                VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
            };
            let mut hdr = gso_hdr(inner6, 1000, ol + inner_l4);
            hdr.gso_type |= tunnel_bit;
            hdr.outer_th = (ol - 16) as u16;
            hdr.inner_nh = (ol + 14) as u16;
            if csum_flag {
                hdr.flags |= VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM;
            }
            let plan = TunnelSegments::plan(&frame, &hdr, 1600).unwrap();
            assert_eq!((plan.count(), plan.prefix), (3, ol));
            assert_eq!(plan.udp_csum, csum_flag || outer6);
            let want = TcpSegments::plan(&inner, &gso_hdr(inner6, 1000, inner_l4), 1600).unwrap();
            assert_eq!(plan.inner, want);
            for i in 0..3 {
                let mut seg = vec![0u8; 1600];
                let n = plan.write_segment(&frame, i, &mut seg).unwrap();
                let seg = &seg[..n];
                let mut alone = vec![0u8; 1600];
                let m = want.write_segment(&inner, i, &mut alone).unwrap();
                assert_eq!(&seg[ol..], &alone[..m], "the inner segment, as cut alone");
                assert_eq!(&seg[..12], &frame[..12]);
                let udp_off = ol - 16;
                let (src, dst) = if outer6 {
                    let ip = Ipv6Packet::new_checked(&seg[14..]).unwrap();
                    assert_eq!(usize::from(ip.payload_len()), n - 54);
                    (
                        IpAddress::Ipv6(ip.src_addr()),
                        IpAddress::Ipv6(ip.dst_addr()),
                    )
                } else {
                    let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
                    assert!(ip.verify_checksum());
                    assert_eq!(usize::from(ip.total_len()), n - 14);
                    assert_eq!(ip.ident(), 0x7700 + i as u16);
                    (
                        IpAddress::Ipv4(ip.src_addr()),
                        IpAddress::Ipv4(ip.dst_addr()),
                    )
                };
                let udp = UdpPacket::new_checked(&seg[udp_off..]).unwrap();
                assert_eq!(usize::from(udp.len()), n - udp_off);
                assert_eq!(udp.dst_port(), 4789);
                if csum_flag || outer6 {
                    assert!(udp.verify_checksum(&src, &dst), "UDP checksum");
                } else {
                    assert_eq!(udp.checksum(), 0);
                }
            }
        }
    }

    #[test]
    fn tunnel_plans_refuse_what_does_not_describe_the_frame() {
        let inner = build(&Spec::new(false, 3000));
        let frame = in_vxlan(&inner, false);
        let mut hdr = gso_hdr(false, 1000, 84);
        hdr.gso_type |= VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4;
        hdr.outer_th = 34;
        hdr.inner_nh = 64;
        assert!(TunnelSegments::plan(&frame, &hdr, 1600).is_ok());
        let cases = [
            (
                VnetHdr {
                    outer_th: 30,
                    ..hdr
                },
                OffloadError::BadGsoHeader,
            ),
            (
                VnetHdr {
                    inner_nh: 50,
                    ..hdr
                },
                OffloadError::BadGsoHeader,
            ),
            (
                VnetHdr {
                    inner_nh: 60,
                    ..hdr
                },
                OffloadError::BadGsoHeader,
            ),
            (
                VnetHdr {
                    gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6,
                    ..hdr
                },
                OffloadError::BadGsoHeader,
            ),
            (
                VnetHdr {
                    gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL,
                    ..hdr
                },
                OffloadError::UnsupportedGso,
            ),
            (
                VnetHdr {
                    gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
                    ..hdr
                },
                OffloadError::UnsupportedGso,
            ),
            (VnetHdr { gso_size: 0, ..hdr }, OffloadError::BadGsoSize),
        ];
        for (h, e) in cases {
            assert_eq!(TunnelSegments::plan(&frame, &h, 1600), Err(e), "{h:?}");
        }
        // Segments that would not fit the port.
        assert_eq!(
            TunnelSegments::plan(&frame, &hdr, 1100),
            Err(OffloadError::BadGsoSize)
        );
        // Truncated frames never panic.
        for n in 0..frame.len().min(200) {
            let _ = TunnelSegments::plan(&frame[..n], &hdr, 1600);
        }
        let mut bad_proto = frame.clone();
        bad_proto[23] = IPPROTO_TCP;
        assert_eq!(
            TunnelSegments::plan(&bad_proto, &hdr, 1600),
            Err(OffloadError::BadGsoHeader)
        );
    }

    /// The 24-byte tunnel header as the kernel's VXLAN device sent one over a TAP (a TCPv4
    /// super-frame in IPv4 VXLAN: outer UDP at 34, inner IPv4 at 64, inner TCP at 84).
    #[test]
    fn tunnel_vnet_hdr_golden_bytes_round_trip() {
        let hdr = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
            hdr_len: 116,
            gso_size: 1398,
            csum_start: 84,
            csum_offset: 16,
            outer_th: 34,
            inner_nh: 64,
        };
        let golden = [
            1, 0x21, 116, 0, 0x76, 0x05, 84, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 34, 0, 64, 0,
        ];
        let mut out = [0xEEu8; 26];
        assert!(hdr.write_len(&mut out, VNET_HDR_TNL_LEN));
        assert_eq!(out[..24], golden);
        assert_eq!(out[24..], [0xEE, 0xEE], "nothing written past 24 bytes");
        assert_eq!(VnetHdr::parse_len(&golden, VNET_HDR_TNL_LEN), Some(hdr));
        assert!(hdr.is_tunnel_gso() && !hdr.is_tcp_gso() && !hdr.is_plain());
        // Read as a 12-byte header, the offsets are not there.
        let short = VnetHdr::parse_len(&golden, VNET_HDR_LEN).unwrap();
        assert_eq!((short.outer_th, short.inner_nh), (0, 0));
        assert!(!hdr.write_len(&mut [0u8; 23], VNET_HDR_TNL_LEN));
        assert!(!hdr.write_len(&mut out, 16), "only 12 or 24 bytes");
        assert_eq!(VnetHdr::parse_len(&golden[..23], VNET_HDR_TNL_LEN), None);
    }

    #[test]
    fn vnet_hdr_short_buffers() {
        assert_eq!(VnetHdr::parse(&[0; 11]), None);
        assert_eq!(VnetHdr::parse(&[]), None);
        let mut short = [0x55u8; 11];
        assert!(!VnetHdr::default().write(&mut short));
        assert_eq!(short, [0x55; 11], "nothing written");
        let parsed = VnetHdr::parse(&[0; 12]).unwrap();
        assert_eq!(parsed, VnetHdr::default());
    }

    #[test]
    fn vnet_hdr_predicates() {
        let mut h = VnetHdr::default();
        assert!(h.is_plain());
        assert!(!h.is_tcp_gso());
        h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
        assert!(h.is_plain(), "DATA_VALID asks nothing");
        h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        assert!(!h.is_plain());
        h.flags = 0;
        for (gso, tcp) in [
            (VIRTIO_NET_HDR_GSO_TCPV4, true),
            (VIRTIO_NET_HDR_GSO_TCPV6, true),
            (VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, true),
            (VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN, true),
            (VIRTIO_NET_HDR_GSO_UDP, false),
            (5, false),
        ] {
            h.gso_type = gso;
            assert_eq!(h.is_tcp_gso(), tcp, "gso_type {gso:#x}");
            assert!(!h.is_plain(), "gso_type {gso:#x}");
        }
    }

    /// Seeds the TCP checksum field with the folded, uncomplemented pseudo-header sum, as
    /// Linux does for CHECKSUM_PARTIAL.
    fn seed_partial(frame: &mut [u8], l4: usize, pseudo: u32) {
        frame[l4 + 16..l4 + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
    }

    #[test]
    fn complete_checksum_ipv4_tcp_even_and_odd() {
        for payload in [0, 1, 100, 1001] {
            let spec = Spec::new(false, payload);
            let mut frame = build(&spec);
            let l4 = 34;
            let tcp_len = (frame.len() - l4) as u16;
            seed_partial(&mut frame, l4, pseudo_header_v4(SRC4, DST4, 6, tcp_len));
            complete_checksum(&mut frame, l4, 16).unwrap();
            let tcp = TcpPacket::new_checked(&frame[l4..]).unwrap();
            assert!(
                tcp.verify_checksum(&IpAddress::Ipv4(SRC4), &IpAddress::Ipv4(DST4)),
                "payload {payload}"
            );
            // The field is the one a full computation gives.
            let got = u16::from_be_bytes([frame[l4 + 16], frame[l4 + 17]]);
            frame[l4 + 16..l4 + 18].fill(0);
            let full = !fold(sum16(
                &frame[l4..],
                pseudo_header_v4(SRC4, DST4, 6, tcp_len),
            ));
            assert_eq!(got, full);
        }
    }

    #[test]
    fn complete_checksum_ipv6_tcp() {
        let spec = Spec::new(true, 777);
        let mut frame = build(&spec);
        let l4 = 54;
        let tcp_len = (frame.len() - l4) as u32;
        seed_partial(
            &mut frame,
            l4,
            pseudo_header_v6(&src6(), &dst6(), 6, tcp_len),
        );
        complete_checksum(&mut frame, l4, 16).unwrap();
        let tcp = TcpPacket::new_checked(&frame[l4..]).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::Ipv6(src6()), &IpAddress::Ipv6(dst6())));
    }

    #[test]
    fn complete_checksum_rejects_offsets_outside_the_frame() {
        let mut frame = build(&Spec::new(false, 10));
        let orig = frame.clone();
        let len = frame.len();
        for (start, offset) in [
            (len + 1, 0),
            (len, 0),
            (len - 1, 0),
            (len - 2, 1),
            (34, len),
            (usize::MAX, 16),
            (34, usize::MAX),
            (usize::MAX, usize::MAX),
        ] {
            assert_eq!(
                complete_checksum(&mut frame, start, offset),
                Err(OffloadError::BadCsumOffset),
                "start {start} offset {offset}"
            );
            assert_eq!(frame, orig, "unchanged on error");
        }
        // The last two bytes are a valid place for the field.
        assert_eq!(complete_checksum(&mut frame, len - 2, 0), Ok(()));
        assert_eq!(
            complete_checksum(&mut [], 0, 0),
            Err(OffloadError::BadCsumOffset)
        );
    }

    #[test]
    fn segments_ipv4_with_options_wrap_and_flags() {
        let spec = Spec {
            seq: u32::MAX - 3000,
            flags: TCP_PSH | TCP_ACK | TCP_FIN,
            ..Spec::new(false, 10_000)
        };
        check_segmentation(&spec, 1448);
        // 10000 = 6 * 1448 + 1312: seven segments.
        let frame = build(&spec);
        let plan = TcpSegments::plan(&frame, &gso_hdr(false, 1448, 34), 1514).unwrap();
        assert_eq!(plan.count, 7);
        assert_eq!(plan.seg_len(6), 66 + 1312);
        assert_eq!(plan.seg_len(7), 0);
    }

    #[test]
    fn segments_ipv6() {
        let spec = Spec {
            seq: u32::MAX - 100,
            flags: TCP_PSH | TCP_ACK | TCP_FIN | TCP_CWR,
            ..Spec::new(true, 10_000)
        };
        check_segmentation(&spec, 1428);
    }

    #[test]
    fn segments_with_one_vlan_tag() {
        let spec = Spec {
            tags: vec![0x8100],
            flags: TCP_PSH | TCP_ACK | TCP_CWR,
            ..Spec::new(false, 5000)
        };
        check_segmentation(&spec, 1444);
        let spec6 = Spec {
            tags: vec![0x8100],
            ..Spec::new(true, 3000)
        };
        check_segmentation(&spec6, 1420);
    }

    #[test]
    fn segments_with_two_vlan_tags() {
        for outer in [0x88A8, 0x9100, 0x8100] {
            let spec = Spec {
                tags: vec![outer, 0x8100],
                flags: TCP_ACK | TCP_FIN,
                ..Spec::new(false, 4000)
            };
            check_segmentation(&spec, 1440);
        }
    }

    #[test]
    fn exact_multiple_and_small_payloads() {
        // Exactly 3 * mss: three full segments.
        check_segmentation(&Spec::new(false, 3 * 1448), 1448);
        // Payload below one MSS, and an empty payload: one segment.
        check_segmentation(&Spec::new(false, 500), 1448);
        check_segmentation(&Spec::new(true, 0), 1448);
        let frame = build(&Spec::new(false, 0));
        let plan = TcpSegments::plan(&frame, &gso_hdr(false, 1448, 34), 1514).unwrap();
        assert_eq!((plan.count, plan.payload, plan.seg_len(0)), (1, 0, 66));
        let mut out = vec![0; 66];
        assert_eq!(plan.write_segment(&frame, 0, &mut out), Ok(66));
    }

    #[test]
    fn ecn_gso_type_keeps_cwr_on_first_segment_only() {
        let spec = Spec {
            flags: TCP_ACK | TCP_CWR,
            ..Spec::new(false, 3000)
        };
        let frame = build(&spec);
        let mut hdr = gso_hdr(false, 1000, 34);
        hdr.gso_type |= VIRTIO_NET_HDR_GSO_ECN;
        let plan = TcpSegments::plan(&frame, &hdr, 1514).unwrap();
        assert_eq!(plan.count, 3);
        for i in 0..3 {
            let mut seg = vec![0; plan.seg_len(i)];
            plan.write_segment(&frame, i, &mut seg).unwrap();
            assert_eq!(seg[34 + 13] & TCP_CWR != 0, i == 0);
        }
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let spec = Spec::new(false, 3000);
        let mut frame = build(&spec);
        frame.extend_from_slice(&[0xAA; 6]);
        let plan = TcpSegments::plan(&frame, &gso_hdr(false, 1448, 34), 1514).unwrap();
        assert_eq!(plan.payload, 3000);
        assert_eq!(plan.count, 3);
        let mut seg = vec![0; plan.seg_len(2)];
        plan.write_segment(&frame, 2, &mut seg).unwrap();
        assert_eq!(seg.len(), 66 + 3000 - 2 * 1448);
        assert_eq!(seg[66..], frame[66 + 2896..66 + 3000]);
    }

    #[test]
    fn csum_start_is_cross_checked_not_trusted() {
        let frame = build(&Spec::new(false, 3000));
        let good = TcpSegments::plan(&frame, &gso_hdr(false, 1448, 34), 1514).unwrap();
        for (flags, start, offset) in [
            (VIRTIO_NET_HDR_F_NEEDS_CSUM, 40, 16),
            (VIRTIO_NET_HDR_F_NEEDS_CSUM, 34, 6),
            (VIRTIO_NET_HDR_F_NEEDS_CSUM, 9999, 16),
            (0, 0, 0),
        ] {
            let hdr = VnetHdr {
                flags,
                csum_start: start,
                csum_offset: offset,
                hdr_len: 0,
                ..gso_hdr(false, 1448, 34)
            };
            assert_eq!(TcpSegments::plan(&frame, &hdr, 1514), Ok(good));
        }
    }

    #[test]
    fn plan_errors() {
        let v4 = build(&Spec::new(false, 3000));
        let v6 = build(&Spec::new(true, 3000));
        let h4 = gso_hdr(false, 1448, 34);
        let h6 = gso_hdr(true, 1448, 54);
        let plan = |f: &[u8], h: &VnetHdr| TcpSegments::plan(f, h, 1514);

        // gso_size 0.
        let zero = VnetHdr { gso_size: 0, ..h4 };
        assert_eq!(plan(&v4, &zero), Err(OffloadError::BadGsoSize));
        // UDP, none and unknown types.
        for gso_type in [VIRTIO_NET_HDR_GSO_UDP, VIRTIO_NET_HDR_GSO_NONE, 2, 5, 0x7F] {
            let h = VnetHdr { gso_type, ..h4 };
            assert_eq!(plan(&v4, &h), Err(OffloadError::UnsupportedGso));
        }
        // Family mismatch.
        assert_eq!(plan(&v4, &h6), Err(OffloadError::BadGsoHeader));
        assert_eq!(plan(&v6, &h4), Err(OffloadError::BadGsoHeader));
        // Truncated anywhere in the headers, and truncated payload (IP length too long).
        for cut in [
            0,
            5,
            13,
            14,
            20,
            33,
            34,
            40,
            53,
            60,
            65,
            66,
            1000,
            v4.len() - 1,
        ] {
            assert_eq!(
                plan(&v4[..cut], &h4),
                Err(OffloadError::BadGsoHeader),
                "cut {cut}"
            );
        }
        for cut in [14, 40, 53, 54, 73, 85, v6.len() - 1] {
            assert_eq!(
                plan(&v6[..cut], &h6),
                Err(OffloadError::BadGsoHeader),
                "cut {cut}"
            );
        }
        // max_frame too small for a full segment.
        assert_eq!(
            TcpSegments::plan(&v4, &h4, 1513),
            Err(OffloadError::BadGsoSize)
        );
        assert!(TcpSegments::plan(&v4, &h4, 1514).is_ok());
        // Too many segments.
        let big = build(&Spec::new(false, 10_000));
        let tiny = VnetHdr { gso_size: 9, ..h4 };
        assert_eq!(plan(&big, &tiny), Err(OffloadError::BadGsoSize));
        let ok = VnetHdr { gso_size: 10, ..h4 };
        assert_eq!(plan(&big, &ok).map(|p| p.count), Ok(1000));

        // Header field corruptions, each on its own.
        let corrupt = |f: &[u8], h: &VnetHdr, at: usize, val: u8| {
            let mut f = f.to_vec();
            f[at] = val;
            TcpSegments::plan(&f, h, 1514)
        };
        let bad = Err(OffloadError::BadGsoHeader);
        assert_eq!(corrupt(&v4, &h4, 12, 0x86), bad, "unknown ethertype");
        assert_eq!(corrupt(&v4, &h4, 14, 0x65), bad, "IP version 6 in IPv4");
        assert_eq!(corrupt(&v4, &h4, 14, 0x44), bad, "IHL 4");
        assert_eq!(corrupt(&v4, &h4, 14 + 9, 17), bad, "UDP in IPv4");
        assert_eq!(corrupt(&v4, &h4, 14 + 6, 0x60), bad, "MF set");
        assert_eq!(corrupt(&v4, &h4, 14 + 7, 0x01), bad, "fragment offset");
        assert_eq!(corrupt(&v4, &h4, 34 + 12, 0x40), bad, "TCP data offset 4");
        let mut short_total = v4.clone();
        short_total[16..18].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(plan(&short_total, &h4), bad, "total length below IP header");
        short_total[16..18].copy_from_slice(&(20u16 + 31).to_be_bytes());
        assert_eq!(plan(&short_total, &h4), bad, "total length cuts TCP header");
        assert_eq!(corrupt(&v4, &h4, 16, 0xFF), bad, "total length past frame");
        assert_eq!(corrupt(&v6, &h6, 14, 0x40), bad, "IP version 4 in IPv6");
        assert_eq!(corrupt(&v6, &h6, 14 + 6, 0), bad, "hop-by-hop header");
        assert_eq!(corrupt(&v6, &h6, 14 + 6, 44), bad, "fragment header");
        assert_eq!(
            corrupt(&v6, &h6, 18, 0xFF),
            bad,
            "payload length past frame"
        );
        let mut no_payload_len = v6.clone();
        no_payload_len[18..20].fill(0);
        assert_eq!(
            plan(&no_payload_len, &h6),
            bad,
            "jumbogram payload length 0"
        );

        // Three VLAN tags are one too many.
        let spec = Spec {
            tags: vec![0x88A8, 0x8100, 0x8100],
            ..Spec::new(false, 100)
        };
        let h = gso_hdr(false, 1448, 14 + 12 + 20);
        assert_eq!(plan(&build(&spec), &h), bad);
    }

    #[test]
    fn write_segment_errors() {
        let frame = build(&Spec::new(false, 3000));
        let plan = TcpSegments::plan(&frame, &gso_hdr(false, 1448, 34), 1514).unwrap();
        let mut out = vec![0u8; 2000];
        // Index past the end.
        assert_eq!(
            plan.write_segment(&frame, 3, &mut out),
            Err(OffloadError::BadGsoSize)
        );
        assert_eq!(
            plan.write_segment(&frame, usize::MAX, &mut out),
            Err(OffloadError::BadGsoSize)
        );
        // Output one byte short.
        let need = plan.seg_len(0);
        assert_eq!(
            plan.write_segment(&frame, 0, &mut out[..need - 1]),
            Err(OffloadError::BadGsoSize)
        );
        assert_eq!(plan.write_segment(&frame, 0, &mut out[..need]), Ok(need));
        // A frame shorter than the plan.
        assert_eq!(
            plan.write_segment(&frame[..frame.len() - 1], 2, &mut out),
            Err(OffloadError::BadGsoHeader)
        );
        assert_eq!(
            plan.write_segment(&frame[..50], 0, &mut out),
            Err(OffloadError::BadGsoHeader)
        );
        // Plans whose offsets do not describe headers.
        for broken in [
            TcpSegments { l4_off: 20, ..plan },
            TcpSegments { l4_off: 50, ..plan },
            TcpSegments {
                hdr_len: 40,
                ..plan
            },
            TcpSegments { ipv6: true, ..plan },
            TcpSegments {
                l3_off: usize::MAX,
                ..plan
            },
            TcpSegments {
                hdr_len: usize::MAX,
                ..plan
            },
        ] {
            assert_eq!(
                broken.write_segment(&frame, 0, &mut out),
                Err(OffloadError::BadGsoHeader),
                "{broken:?}"
            );
        }
    }

    fn random_hdr(rng: &mut XorShift) -> VnetHdr {
        let gso_types = [
            VIRTIO_NET_HDR_GSO_TCPV4,
            VIRTIO_NET_HDR_GSO_TCPV6,
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
            VIRTIO_NET_HDR_GSO_UDP,
            rng.next() as u8,
        ];
        let gso_size = match rng.below(4) {
            0 => rng.next() as u16,
            1 => 0,
            _ => 1 + rng.below(2000) as u16,
        };
        VnetHdr {
            flags: rng.next() as u8,
            gso_type: gso_types[rng.below(gso_types.len())],
            hdr_len: rng.next() as u16,
            gso_size,
            csum_start: rng.below(120) as u16,
            csum_offset: rng.below(40) as u16,
            ..Default::default()
        }
    }

    /// Checks that a segment's IPv4 header checksum and TCP checksum verify.
    fn segment_verifies(plan: &TcpSegments, seg: &[u8]) -> bool {
        let (l3, l4) = (plan.l3_off, plan.l4_off);
        let tcp = &seg[l4..];
        if plan.ipv6 {
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&seg[l3 + 8..l3 + 24]).unwrap());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&seg[l3 + 24..l3 + 40]).unwrap());
            let ph = pseudo_header_v6(&src, &dst, 6, tcp.len() as u32);
            fold(sum16(tcp, ph)) == 0xFFFF
        } else {
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&seg[l3 + 12..l3 + 16]).unwrap());
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&seg[l3 + 16..l3 + 20]).unwrap());
            let ph = pseudo_header_v4(src, dst, 6, tcp.len() as u16);
            fold(sum16(&seg[l3..l4], 0)) == 0xFFFF && fold(sum16(tcp, ph)) == 0xFFFF
        }
    }

    /// Random bytes, and valid super-frames with random corruptions and truncations: nothing
    /// panics, and a successful plan always writes every segment.
    #[test]
    fn no_panic_on_random_input() {
        let mut rng = XorShift(0x0DDB_1A5E_5BAD_5EED);
        let mut planned = 0;
        let mut out = vec![0u8; 70_000];
        for round in 0..4000 {
            let mut frame = if round % 3 == 0 {
                let len = rng.below(200);
                (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
            } else {
                let tag_choices = [0x8100, 0x88A8, 0x9100, 0x0800];
                let spec = Spec {
                    ipv6: rng.below(2) == 0,
                    tags: (0..rng.below(4))
                        .map(|_| tag_choices[rng.below(tag_choices.len())])
                        .collect(),
                    payload: rng.below(4000),
                    seq: rng.next() as u32,
                    flags: rng.next() as u8,
                };
                let mut f = build(&spec);
                for _ in 0..rng.below(3) {
                    let at = rng.below(f.len().min(100));
                    f[at] = rng.next() as u8;
                }
                if rng.below(4) == 0 {
                    f.truncate(rng.below(f.len() + 1));
                }
                f
            };
            let mut hdr = random_hdr(&mut rng);
            if round % 3 != 0 && rng.below(2) == 0 {
                // Usually declare the family the frame has, so that plans succeed.
                let v6 = frame.get(12..14) == Some(&[0x86, 0xDD][..]);
                hdr.gso_type = if v6 {
                    VIRTIO_NET_HDR_GSO_TCPV6
                } else {
                    VIRTIO_NET_HDR_GSO_TCPV4
                };
            }
            let max_frame = [60, 1514, 9018, 70_000, 70_000][rng.below(5)];

            let _ = complete_checksum(
                &mut frame,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            );
            let _ = complete_checksum(&mut frame, rng.next() as usize, rng.next() as usize);

            if let Ok(plan) = TcpSegments::plan(&frame, &hdr, max_frame) {
                planned += 1;
                assert!(plan.count >= 1 && plan.count <= MAX_SEGMENTS);
                for i in 0..plan.count {
                    let n = plan.seg_len(i);
                    assert!(n <= max_frame);
                    let seg = &mut out[..n];
                    assert_eq!(plan.write_segment(&frame, i, seg), Ok(n), "{plan:?} {i}");
                    assert!(segment_verifies(&plan, seg), "{plan:?} {i}");
                }
                assert_eq!(plan.seg_len(plan.count), 0);
            }

            // Arbitrary plans (the fields are public) must not panic either.
            let fields = [0, 1, 14, 34, 54, 66, 1448, usize::MAX, rng.below(100)];
            let mut pick = || fields[rng.below(fields.len())];
            let arbitrary = TcpSegments {
                l3_off: pick(),
                l4_off: pick(),
                hdr_len: pick(),
                ipv6: round % 2 == 0,
                mss: pick(),
                count: pick(),
                payload: pick(),
            };
            let i = [0, 1, rng.below(4), usize::MAX][rng.below(4)];
            let _ = arbitrary.seg_len(i);
            let _ = arbitrary.write_segment(&frame, i, &mut out[..rng.below(3000)]);
        }
        assert!(planned > 200, "only {planned} plans succeeded");
    }

    #[test]
    fn partial_checksums_are_completed_and_good_ones_left_alone() {
        for ipv6 in [false, true] {
            for payload in [0, 1, 100, 1001] {
                let spec = Spec::new(ipv6, payload);
                let mut f = build(&spec);
                // What a stack with checksum offload hands over: the folded pseudo-header sum.
                let l4 = if ipv6 { 54 } else { 34 };
                let len = f.len() - l4;
                let pseudo = if ipv6 {
                    pseudo_header_v6(&src6(), &dst6(), 6, len as u32)
                } else {
                    pseudo_header_v4(SRC4, DST4, 6, len as u16)
                };
                seed_partial(&mut f, l4, pseudo);
                let mut good = f.clone();
                complete_checksum(&mut good, l4, 16).unwrap();
                let mut g = good.clone();
                let r = fix_partial_checksum(&mut g);
                assert!(r == CsumCheck::NotPartial || r == CsumCheck::Valid, "{r:?}");
                assert_eq!(g, good, "a valid frame is not touched");
                let r = fix_partial_checksum(&mut f);
                assert!(
                    r == CsumCheck::Completed || (r == CsumCheck::Valid && f == good),
                    "{r:?}"
                );
                assert_eq!(
                    f, good,
                    "completed to the full checksum (v6 {ipv6}, {payload})"
                );
                // A checksum that is neither right nor partial is left alone.
                let mut bad = good.clone();
                bad[l4 + 16] ^= 0x55;
                let before = bad.clone();
                assert_eq!(fix_partial_checksum(&mut bad), CsumCheck::NotPartial);
                assert_eq!(bad, before);
            }
        }
        // Not TCP/UDP over IP, or cut short: nothing to do, nothing changed.
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(fix_partial_checksum(&mut arp), CsumCheck::NotL4);
        let spec = Spec::new(false, 100);
        let mut short = build(&spec);
        short.truncate(40);
        assert_eq!(fix_partial_checksum(&mut short), CsumCheck::NotL4);
    }

    #[test]
    fn fix_partial_checksum_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let spec = Spec::new(false, 64);
        let base = build(&spec);
        for round in 0..4000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = if round % 2 == 0 {
                base.clone()
            } else {
                vec![0u8; (x % 200) as usize]
            };
            for k in 0..(x % 6) {
                let i = ((x >> (8 * k)) as usize) % f.len().max(1);
                if let Some(b) = f.get_mut(i) {
                    *b = (x >> (3 * k)) as u8;
                }
            }
            let _ = fix_partial_checksum(&mut f);
        }
    }
}
