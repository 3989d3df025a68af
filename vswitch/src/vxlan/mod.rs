//! VXLAN overlay (RFC 7348): the protocol cores of a VTEP, as buffer transforms that do no I/O.
//!
//! A VXLAN network spans hosts by carrying each inner Ethernet frame in an outer
//! Ethernet / IPv4 / UDP / VXLAN header (RFC 7348 section 5) across the underlay, from the VTEP
//! address of one host's uplink to another's. The VXLAN header holds a 24-bit VNI that names the
//! overlay network; its I flag says the VNI is valid, every other bit is reserved, sent as zero
//! and ignored on receipt.
//!
//! * [`encap`]: a [`Tunnel`] holds the 50-byte outer header of one (local VTEP, remote VTEP,
//!   VNI) precomputed, with the IPv4 header checksum computed for a zero total length, so that
//!   encapsulating is a copy into the buffer's headroom plus a few stores and one RFC 1624
//!   incremental checksum update. The UDP source port comes from a hash of the inner flow
//!   ([`flow_hash`]) in the dynamic range 49152-65535, so that the underlay's ECMP hashing keeps a
//!   flow on one path (RFC 7348 section 5, "Source Port"). The UDP checksum is sent as zero, as
//!   the RFC recommends for IPv4. The DF bit is set and the frame is never fragmented: one that
//!   does not fit the uplink MTU is refused ([`EncapError::TooBig`]).
//! * [`decap`]: [`classify`] validates a frame received on the uplink and says either where the
//!   inner frame is, or why it is not ours ([`DecapDrop::NotVxlan`], handed on to ARP) or why
//!   it is dropped (every other [`DecapDrop`], each a named counter). [`decap()`] then trims the
//!   outer headers off the buffer. Whether the VNI and the source VTEP are known is the
//!   caller's check (it holds the configuration); [`DecapDrop::UnknownVni`] and
//!   [`DecapDrop::UnknownVtep`] name those drops.
//!
//! Next-hop resolution on the underlay (ARP, with timeouts) is in [`crate::neigh`]: a tunnel's
//! remote MAC is that of its next hop, and [`Tunnel::set_remote_mac`] follows it when it changes.
//!
//! MTU: the outer IPv4 packet is the inner frame plus 36 bytes (IPv4 20, UDP 8, VXLAN 8), so an
//! uplink with IP MTU `m` carries inner frames of up to `m - 36` bytes, which is an inner IP MTU
//! of `m - 50` ([`overlay_mtu`]): the 50 bytes of [`OUTER_LEN`], as Linux's vxlan device does.

pub mod decap;
pub mod encap;
pub mod rejoin;
pub mod stage;

pub use decap::{classify, classify_with, decap, Decap, DecapDrop};
pub use encap::{flow_hash, src_port, EncapError, Tunnel, TunnelParams};

/// The IANA-assigned VXLAN UDP destination port (RFC 7348 section 5).
pub const DEFAULT_PORT: u16 = dataplane::wire::vxlan::UDP_PORT;

/// Outer Ethernet header length (no VLAN tag on the underlay).
pub const OUTER_ETH_LEN: usize = 14;
/// Outer IPv4 header length (no options are sent).
pub const OUTER_IP_LEN: usize = 20;
/// UDP header length.
pub const UDP_LEN: usize = 8;
/// VXLAN header length.
pub const VXLAN_LEN: usize = dataplane::wire::VXLAN_HEADER_LEN;

/// Bytes prepended to an inner frame: Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const OUTER_LEN: usize = OUTER_ETH_LEN + OUTER_IP_LEN + UDP_LEN + VXLAN_LEN;

/// Bytes the outer IPv4 packet adds to the inner frame: IPv4 20 + UDP 8 + VXLAN 8.
pub const IP_OVERHEAD: usize = OUTER_IP_LEN + UDP_LEN + VXLAN_LEN;

/// Lowest UDP source port used (the start of the dynamic range, RFC 6335).
pub const SRC_PORT_MIN: u16 = 49152;
/// Number of UDP source ports used: 49152..=65535.
pub const SRC_PORT_RANGE: u32 = 16384;

/// Default TTL of the outer IPv4 header.
pub const DEFAULT_TTL: u8 = 64;

/// Inner Ethernet header length (the overlay's frames are untagged).
pub const INNER_ETH_LEN: usize = 14;

/// The overlay network's IP MTU on an uplink of IP MTU `uplink_mtu`: 50 bytes less (0 if the
/// uplink is too small to carry anything).
#[inline]
#[must_use]
pub const fn overlay_mtu(uplink_mtu: u32) -> u32 {
    uplink_mtu.saturating_sub(OUTER_LEN as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_constants_add_up() {
        assert_eq!(OUTER_LEN, 50);
        assert_eq!(IP_OVERHEAD, 36);
        assert_eq!(OUTER_LEN, IP_OVERHEAD + OUTER_ETH_LEN);
        assert_eq!(overlay_mtu(1500), 1450);
        assert_eq!(overlay_mtu(9000), 8950);
        assert_eq!(overlay_mtu(40), 0);
        assert_eq!(u32::from(SRC_PORT_MIN) + SRC_PORT_RANGE, 65536);
        assert_eq!(DEFAULT_PORT, 4789);
        const { assert!(OUTER_LEN <= dataplane::pool::HEADROOM) };
    }
}
