//! Encrypted overlays: standard ESP (RFC 4303) in transport mode around the VXLAN UDP datagram,
//! AES-GCM with a 16-byte ICV (RFC 4106), as Docker's encrypted overlay puts it on the wire.
//!
//! ```text
//!  plain:    | Ethernet | IPv4 (17) | UDP | VXLAN | inner frame |
//!  sealed:   | Ethernet | IPv4 (50) | SPI | seq | IV | UDP | VXLAN | inner frame | pad | pl | nh | ICV |
//!                                   '-- AAD --'         '-------- encrypted -----------------'
//! ```
//!
//! - [`sa`]: the protocol core: SPI and per-SA key derivation (both ends agree without
//!   negotiation), sealing and opening in place (no copy, no allocation).
//! - [`replay`]: the anti-replay window (1984 packets), checked before decryption, advanced
//!   only after the ICV verifies.
//! - [`ring`]: the SAs of a configuration snapshot (sending: the primary key's SA per peer;
//!   receiving: every key's SA per peer, by SPI).
//! - [`seal`]: the `esp-seal` stage, after `vxlan-encap`; [`open`]: what `underlay-in` calls
//!   before VXLAN decapsulation.
//!
//! ESP in UDP (RFC 3948, port 4500) is a network's opt-in encapsulation
//! (`--esp-encap udp`): the same ESP packet behind a UDP header, so that a TAP uplink with UDP
//! segmentation offload takes a burst of them in one write ([`dataplane::gro`]); see [`sa`].
//! A network receives only the encapsulation it sends (`esp_wrong_encap`).
//!
//! Never cleartext: a tunnel of an encrypted network sends only through `esp-seal` (no primary
//! key: `esp_no_key`), and `underlay-in` drops VXLAN for an encrypted network's VNI that did not
//! arrive in ESP (`esp_cleartext`), whether or not peers or keys exist.

pub mod open;
pub mod replay;
pub mod ring;
pub mod sa;
pub mod seal;

use dataplane::named_counters;

/// Overlay MTU of an encrypted network: the largest inner IPv4 packet whose sealed packet fits
/// the uplink MTU. Sealed, an inner packet of m bytes takes 20 bytes of outer IPv4, 16 of ESP
/// header and IV, 30 of UDP, VXLAN and inner Ethernet, m, 2 of pad length and next header and
/// 16 of ICV, with m padded to a multiple of 4: 84 + m rounded up. So the MTU is the uplink's
/// less 84, rounded down to a multiple of 4: 1416 for a 1500 uplink (uplink - 50 - 34).
pub const fn overlay_mtu(uplink_mtu: u32) -> u32 {
    let fixed = (crate::vxlan::OUTER_LEN + sa::PREFIX_LEN + 2 + sa::ICV_LEN) as u32;
    uplink_mtu.saturating_sub(fixed) & !3
}

/// As [`overlay_mtu`], for a network whose ESP goes in UDP (RFC 3948): 8 bytes less, 1408 for
/// a 1500 uplink.
pub const fn overlay_mtu_encap(uplink_mtu: u32, udp: bool) -> u32 {
    let encap = if udp { sa::UDP_ENCAP_LEN as u32 } else { 0 };
    overlay_mtu(uplink_mtu.saturating_sub(encap))
}

/// Buffer flag (set by `vxlan-encap`, read by `esp-seal`): the frame's network sends ESP in UDP.
pub const FLAG_UDP: u8 = 1 << 4;

named_counters! {
    /// Why an ESP packet (or cleartext VXLAN) from the underlay is dropped.
    pub enum OpenDrop {
        /// Shorter than IPv4 + ESP header + IV + trailer + ICV, or a bad outer IPv4 header.
        Runt => "esp_runt",
        /// An outer IPv4 fragment (not reassembled).
        Fragment => "esp_fragment",
        /// No receive SA with this SPI from this source.
        UnknownSpi => "esp_unknown_spi",
        /// A sequence number already received.
        Replay => "esp_replay",
        /// A sequence number older than the anti-replay window.
        OutsideWindow => "esp_outside_window",
        /// The ICV did not verify: wrong key, or a changed packet.
        BadIcv => "esp_bad_icv",
        /// Decrypted padding that is not 1, 2, 3, ... or longer than the payload.
        BadPadding => "esp_bad_padding",
        /// A next header other than UDP (17).
        BadNextHeader => "esp_bad_next_header",
        /// Cleartext VXLAN for an encrypted network's VNI.
        Cleartext => "esp_cleartext",
        /// ESP that verified but came in the other encapsulation than its network's (IP
        /// protocol 50 for a network of ESP in UDP, or the reverse).
        WrongEncap => "esp_wrong_encap",
    }
}

named_counters! {
    /// ESP packets opened.
    pub enum OpenEvent {
        /// Packets that verified and were decrypted.
        Opened => "esp_opened",
    }
}

named_counters! {
    /// Why a frame for an encrypted tunnel is not sent.
    pub enum SealDrop {
        /// No primary key (or no uplink address to derive the SA from): nothing goes out in
        /// cleartext instead.
        NoKey => "esp_no_key",
        /// The SA's 32-bit sequence numbers are used up: rotate the key.
        SeqExhausted => "esp_seq_exhausted",
        /// Sealed, the packet would exceed the uplink MTU.
        TooBig => "esp_too_big",
        /// No headroom or tailroom left in the buffer.
        NoRoom => "esp_no_room",
        /// Not an Ethernet + IPv4 frame (cannot come from VXLAN encapsulation).
        NotIpv4 => "esp_not_ipv4",
        /// No buffer left in the pool for a super-frame's sealed packets.
        NoBuffer => "esp_no_buffer",
    }
}

named_counters! {
    /// ESP packets sealed.
    pub enum SealEvent {
        /// Packets encrypted and sent on.
        Sealed => "esp_sealed",
        /// TCP super-frames cut and sealed straight into UDP super-frames (ESP in UDP over
        /// an uplink with USO).
        SealedWhole => "esp_sealed_whole",
    }
}

/// Wall clock in nanoseconds since the Unix epoch (an SA's IV base; see [`sa`]).
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
