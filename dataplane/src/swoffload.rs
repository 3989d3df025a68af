//! Offload work done in software, for frames headed to a port that cannot take it.
//!
//! A TAP port with virtio-net headers hands the switch TCP super-frames (up to 64 KiB, cut by the
//! receiver) and frames whose L4 checksum is only partial. Another TAP with offloads takes them
//! as they are. Anything else (an AF_XDP port, a TAP without offloads, a tunnel, whose outer
//! headers would hide the inner TCP from any later cutting) needs finished frames: [`resolve`]
//! completes the checksum in place, or cuts the super-frame into MSS-sized frames in small
//! buffers, and moves a frame out of a large buffer when the port transmits only from the pool's
//! AF_XDP region. A UDP tunnel super-frame (VXLAN with a TCP super-frame inside, from a TAP with
//! tunnel GSO) passes only to a TAP that takes those ([`TxCaps::OffloadTunnel`]); for any other
//! port it is cut with its outer headers ([`crate::offload::TunnelSegments`]). A UDP super-frame
//! (`VIRTIO_NET_HDR_GSO_UDP_L4`, from a TAP uplink with UDP segmentation offload) is cut back
//! into its datagrams for every port ([`crate::offload::UdpSegments`]): only a TAP's own
//! transmit merge makes those, after this point.
//!
//! Nothing here allocates memory; the segments come from the worker's buffer cache.

use crate::offload::{
    complete_checksum, OffloadError, TcpSegments, TunnelSegments, UdpSegments,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
};
use crate::pool::{Buf, PoolCache, HEADROOM, MAX_FRAME};

/// What a port can transmit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxCaps {
    /// Offload work and large buffers pass as they are (a TAP with virtio-net headers), except
    /// UDP tunnel super-frames.
    Offload,
    /// As [`TxCaps::Offload`], UDP tunnel super-frames too (a TAP with `TUN_F_UDP_TUNNEL_GSO`).
    OffloadTunnel,
    /// As [`TxCaps::Offload`], UDP super-frames too (a TAP with `TUN_F_USO4`).
    OffloadUso,
    /// Everything: UDP tunnel super-frames and UDP super-frames too (a TAP with both).
    OffloadTunnelUso,
    /// Finished frames, from any buffer (a TAP without offloads, an in-memory port).
    Plain,
    /// Finished frames in small buffers only: the port transmits from the AF_XDP region.
    Region,
}

impl TxCaps {
    /// Whether a frame with offload facts `o` (and in any buffer) passes as it is.
    #[inline]
    #[must_use]
    pub fn takes(self, o: &crate::offload::VnetHdr) -> bool {
        self.passes(o.is_tunnel_gso(), o.is_udp_gso())
    }

    /// Whether frame `b` must be finished in software ([`resolve`]) before a port with these
    /// caps sends it: frames with offload work it does not take ([`TxCaps::takes`]), and for
    /// the AF_XDP region frames in large buffers. Reads the buffer's metadata only.
    #[inline]
    #[must_use]
    pub fn must_finish(self, pool: &crate::pool::Pool, b: &Buf) -> bool {
        match self {
            TxCaps::Plain => pool.has_offload(b),
            TxCaps::Region => pool.has_offload(b) || pool.is_large(b),
            _ => !self.passes(pool.is_tunnel_gso(b), pool.is_udp_gso(b)),
        }
    }

    /// Whether offload work of these kinds passes as it is (a TCP super-frame or a partial
    /// checksum passes wherever offloads do).
    #[inline]
    fn passes(self, tunnel_gso: bool, udp_gso: bool) -> bool {
        match self {
            TxCaps::OffloadTunnelUso => true,
            TxCaps::OffloadTunnel => !udp_gso,
            TxCaps::OffloadUso => !tunnel_gso,
            TxCaps::Offload => !tunnel_gso && !udp_gso,
            TxCaps::Plain | TxCaps::Region => false,
        }
    }
}

/// How a super-frame is cut.
enum Plan {
    /// A TCP super-frame.
    Tcp(TcpSegments),
    /// A TCP super-frame in a UDP tunnel.
    Tunnel(TunnelSegments),
    /// A UDP super-frame.
    Udp(UdpSegments),
}

impl Plan {
    fn count(&self) -> usize {
        match self {
            Plan::Tcp(p) => p.count,
            Plan::Tunnel(p) => p.count(),
            Plan::Udp(p) => p.count,
        }
    }

    fn write_segment(&self, frame: &[u8], i: usize, out: &mut [u8]) -> Result<usize, OffloadError> {
        match self {
            Plan::Tcp(p) => p.write_segment(frame, i, out),
            Plan::Tunnel(p) => p.write_segment(frame, i, out),
            Plan::Udp(p) => p.write_segment(frame, i, out),
        }
    }
}

/// What [`resolve`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// Frames handed on.
    pub frames: usize,
    /// A TCP super-frame was cut into segments (perhaps just one).
    pub cut: bool,
}

/// Why a frame's offload work could not be done; the frame was freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// The frame's offload facts do not describe it (see [`OffloadError`]).
    Offload(OffloadError),
    /// The pool had no buffer for a segment or for the copy out of a large buffer.
    NoBuffers,
    /// A frame with no segmentation to do is larger than a small buffer.
    TooBig,
}

/// Hands `b` to `emit` as frames a port with `caps` can send, doing any offload work first.
/// Returns how many frames were emitted and whether a super-frame was cut, or why it could not
/// all be (segments emitted before a failure stay emitted, as a lost segment would be on a
/// wire, and TCP retransmits; `b` is freed either way).
pub fn resolve(
    cache: &mut PoolCache,
    mut b: Buf,
    caps: TxCaps,
    mut emit: impl FnMut(&mut PoolCache, Buf),
) -> Result<Resolved, ResolveError> {
    let pool = std::sync::Arc::clone(cache.pool());
    let o = pool.offload(&b);
    if caps.takes(&o) {
        emit(cache, b);
        return Ok(Resolved {
            frames: 1,
            cut: false,
        });
    }
    if o.gso_type & !VIRTIO_NET_HDR_GSO_ECN != 0 {
        // A TCP super-frame, or one in a UDP tunnel (cut with its outer headers, as the
        // kernel would have done had the port not offered tunnel GSO).
        let plan = if o.is_tunnel_gso() {
            TunnelSegments::plan(pool.data(&b), &o, MAX_FRAME).map(Plan::Tunnel)
        } else if o.is_tcp_gso() {
            TcpSegments::plan(pool.data(&b), &o, MAX_FRAME).map(Plan::Tcp)
        } else if o.is_udp_gso() {
            UdpSegments::plan(pool.data(&b), &o, MAX_FRAME).map(Plan::Udp)
        } else {
            Err(OffloadError::UnsupportedGso)
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                cache.free(b);
                return Err(ResolveError::Offload(e));
            }
        };
        let count = plan.count();
        let (pcp, port) = (pool.pcp(&b), pool.port(&b));
        for i in 0..count {
            let Some(mut s) = cache.alloc() else {
                cache.free(b);
                return Err(ResolveError::NoBuffers);
            };
            let written = plan.write_segment(pool.data(&b), i, pool.rx_space(&mut s));
            match written {
                Ok(n) => {
                    pool.set_frame(&mut s, HEADROOM, n);
                    pool.set_pcp(&mut s, pcp);
                    pool.set_port(&mut s, port);
                    emit(cache, s);
                }
                Err(e) => {
                    cache.free(s);
                    cache.free(b);
                    return Err(ResolveError::Offload(e));
                }
            }
        }
        cache.free(b);
        return Ok(Resolved {
            frames: count,
            cut: true,
        });
    }
    if o.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        let r = complete_checksum(
            pool.data_mut(&mut b),
            usize::from(o.csum_start),
            usize::from(o.csum_offset),
        );
        if let Err(e) = r {
            cache.free(b);
            return Err(ResolveError::Offload(e));
        }
    }
    pool.set_offload(&mut b, Default::default());
    if caps == TxCaps::Region && pool.is_large(&b) {
        if pool.len(&b) > MAX_FRAME {
            cache.free(b);
            return Err(ResolveError::TooBig);
        }
        let Some(c) = cache.clone_buf(&b) else {
            cache.free(b);
            return Err(ResolveError::NoBuffers);
        };
        cache.free(b);
        b = c;
    }
    emit(cache, b);
    Ok(Resolved {
        frames: 1,
        cut: false,
    })
}
