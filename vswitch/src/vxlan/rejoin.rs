//! Putting the inner TCP segments of opened ESP-in-UDP super-frames back together.
//!
//! A peer seals every inner TCP segment on its own (ESP per wire packet) and its TAP uplink
//! merges the sealed datagrams into UDP super-frames; the local kernel hands them over whole.
//! Once each datagram is opened where it lies (its cleartext: the VXLAN datagram, UDP header,
//! VXLAN header, inner frame), the segments that may be merged (the rules of
//! [`dataplane::gro`]: one flow, in order; behind VXLAN headers that agree) are gathered into a [`Run`]: the first datagram's outer Ethernet and IPv4 headers,
//! its cleartext, then every later segment's TCP payload. Finished, a run is the VXLAN
//! super-frame the local kernel's VXLAN device would hand over a TAP uplink with tunnel GSO,
//! and it goes through decapsulation, the bridge and out to a container's TAP as one frame.
//!
//! The code here is byte logic over one buffer's data: no allocation, no panics on any input.

use super::{UDP_LEN, VXLAN_LEN};
use crate::esp::sa::patch_ipv4;
use dataplane::gro::{self, Seg};
use dataplane::offload::{VnetHdr, VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4};

/// UDP and VXLAN headers in front of the inner Ethernet frame.
pub const TNL: usize = UDP_LEN + VXLAN_LEN;

/// The inner TCP segment of the cleartext VXLAN datagram `d` (UDP header, VXLAN header, inner
/// frame), if it may take part in a run: a UDP length that describes `d` exactly, no UDP
/// checksum, an inner segment [`gro::segment_authenticated`] takes. Its TCP checksum is not
/// verified: the ICV that just verified over the whole datagram vouches for every byte the
/// peer sealed, as Linux takes NAT-T transport-mode ESP's inner checksums as unnecessary.
#[must_use]
pub fn segment(d: &[u8]) -> Option<Seg> {
    let udp_len = d
        .get(4..6)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
    if d.len() <= TNL || udp_len != Some(d.len()) || d.get(6..8) != Some(&[0, 0]) {
        return None;
    }
    gro::segment_authenticated(d.get(TNL..)?)
}

/// Segments being gathered in one buffer: its data holds, from `start`, the outer Ethernet and
/// IPv4 headers (`ip_end` bytes), the first segment's cleartext, then the later payloads, up to
/// `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The first segment, and the last appended.
    pub first: Seg,
    pub last: Seg,
    /// Segments in the run.
    pub count: usize,
    /// Where the outer Ethernet header starts.
    pub start: usize,
    /// Length of the outer Ethernet and IPv4 headers.
    pub ip_end: usize,
    /// Where the run ends.
    pub end: usize,
}

impl Run {
    /// A run of the one segment `seg`, whose outer headers start at `start` and whose cleartext
    /// (`len` bytes) follows them.
    #[must_use]
    pub fn new(seg: Seg, start: usize, ip_end: usize, len: usize) -> Run {
        Run {
            first: seg,
            last: seg,
            count: 1,
            start,
            ip_end,
            end: start + ip_end + len,
        }
    }

    /// Bytes of the cleartext datagram `d` that a run leaves out when it appends it (its UDP,
    /// VXLAN and inner headers).
    #[must_use]
    pub fn skip(&self) -> usize {
        TNL + self.first.hdr_len
    }

    /// Whether the cleartext datagram `d`, whose segment is `seg`, may be appended: `data` is
    /// the run's buffer (at most `cap` bytes long), the VXLAN headers agree (ports, VNI), the
    /// segment follows the last ([`gro::follows`]), and the outer IPv4 packet stays within
    /// 65 535 bytes.
    #[must_use]
    pub fn takes(&self, data: &[u8], cap: usize, d: &[u8], seg: &Seg) -> bool {
        let Some(h) = data.get(self.start + self.ip_end..self.end) else {
            return false;
        };
        let grown = self.end + seg.payload;
        grown <= cap
            && grown
                .checked_sub(self.start + 14)
                .is_some_and(|ip| ip <= usize::from(u16::MAX))
            && d.get(0..4) == h.get(0..4)
            && d.get(8..TNL) == h.get(8..TNL)
            && match (h.get(TNL..), d.get(TNL..)) {
                (Some(hi), Some(di)) => gro::follows(hi, &self.first, &self.last, di, seg),
                _ => false,
            }
    }

    /// Records that `seg`'s payload was appended at the end.
    pub fn appended(&mut self, seg: Seg) {
        self.end += seg.payload;
        self.last = seg;
        self.count += 1;
    }

    /// Finishes the run in `data` (the outer IPv4 and UDP lengths, the IPv4 header checksum;
    /// for more than one segment the inner headers as [`gro::finish_head`] does) and returns
    /// the offload facts of the frame `data[start..end]`: a UDP tunnel super-frame of TCP, or
    /// none for one segment. `None` if the lengths do not fit (not for a run [`Run::takes`]
    /// built).
    #[must_use]
    pub fn finish(&self, data: &mut [u8]) -> Option<VnetHdr> {
        let ip_end = self.ip_end;
        let f = data.get_mut(self.start..self.end)?;
        let udp_len = u16::try_from(f.len().checked_sub(ip_end)?).ok()?;
        f.get_mut(ip_end + 4..ip_end + 6)?
            .copy_from_slice(&udp_len.to_be_bytes());
        let total = u16::try_from(f.len().checked_sub(14)?).ok()?;
        patch_ipv4(f.get_mut(14..ip_end)?, 17, total);
        if self.count == 1 {
            return Some(VnetHdr::default());
        }
        let at = ip_end + TNL;
        let inner_len = f.len().checked_sub(at)?;
        let i = gro::finish_head(f.get_mut(at..)?, inner_len, &self.first, self.last.psh)?;
        let at16 = u16::try_from(at).ok()?;
        Some(VnetHdr {
            gso_type: i.gso_type | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
            hdr_len: i.hdr_len.checked_add(at16)?,
            csum_start: i.csum_start.checked_add(at16)?,
            outer_th: u16::try_from(ip_end).ok()?,
            inner_nh: at16.checked_add(14)?,
            ..i
        })
    }
}
