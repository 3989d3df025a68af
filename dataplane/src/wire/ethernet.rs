//! Ethernet helpers the bridge needs that smoltcp's `EthernetFrame` lacks: MAC addresses as
//! plain arrays and as `u64` keys for learning tables, and header reads on raw frames that
//! return `None` instead of panicking on runt frames.

/// Length of an Ethernet II header: destination, source, ethertype.
pub const ETH_HDR_LEN: usize = 14;

/// Length of a MAC address.
pub const ETH_ADDR_LEN: usize = 6;

/// The broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Whether the group bit (I/G, the least significant bit of the first octet) is set;
/// true for broadcast too.
#[inline]
#[must_use]
pub const fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 0x01 != 0
}

/// Whether `mac` is ff:ff:ff:ff:ff:ff.
#[inline]
#[must_use]
pub fn is_broadcast(mac: &[u8; 6]) -> bool {
    *mac == BROADCAST
}

/// Whether `mac` is an individual (unicast) address; a bridge learns only these as sources.
#[inline]
#[must_use]
pub const fn is_unicast(mac: &[u8; 6]) -> bool {
    !is_multicast(mac)
}

/// Whether the locally administered bit (U/L) is set.
#[inline]
#[must_use]
pub const fn is_local(mac: &[u8; 6]) -> bool {
    mac[0] & 0x02 != 0
}

/// A MAC address as the low 48 bits of a `u64`, first octet most significant, so that keys
/// compare like the byte arrays do.
#[inline]
#[must_use]
pub const fn mac_to_u64(mac: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

/// The inverse of [`mac_to_u64`]; the upper 16 bits of `v` are ignored.
#[inline]
#[must_use]
pub const fn u64_to_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// The destination address of a frame, or `None` if it is shorter than a MAC address.
#[inline]
#[must_use]
pub fn dst_mac(frame: &[u8]) -> Option<[u8; 6]> {
    match frame {
        [a, b, c, d, e, f, ..] => Some([*a, *b, *c, *d, *e, *f]),
        _ => None,
    }
}

/// The source address of a frame, or `None` if it is shorter than two MAC addresses.
#[inline]
#[must_use]
pub fn src_mac(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(ETH_ADDR_LEN..).and_then(dst_mac)
}

/// The ethertype (or TPID of an outer VLAN tag) of a frame, or `None` if it is shorter
/// than an Ethernet header.
#[inline]
#[must_use]
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    match frame.get(2 * ETH_ADDR_LEN..ETH_HDR_LEN)? {
        [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unicast IPv4 frame header 02:00:00:00:00:02 <- 02:00:00:00:00:01.
    const HEADER: [u8; 14] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
    ];

    #[test]
    fn classifies_addresses() {
        assert!(is_multicast(&BROADCAST));
        assert!(is_broadcast(&BROADCAST));
        assert!(!is_unicast(&BROADCAST));
        let mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
        assert!(is_multicast(&mcast) && !is_broadcast(&mcast));
        let ucast = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
        assert!(is_unicast(&ucast) && is_local(&ucast) && !is_multicast(&ucast));
        assert!(!is_local(&[0x00, 0x1b, 0x21, 0x00, 0x00, 0x01]));
    }

    #[test]
    fn mac_u64_round_trip_and_order() {
        let mac = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc];
        assert_eq!(mac_to_u64(&mac), 0x1234_5678_9abc);
        assert_eq!(u64_to_mac(0x1234_5678_9abc), mac);
        assert_eq!(u64_to_mac(0xffff_1234_5678_9abc), mac, "upper bits ignored");
        assert_eq!(mac_to_u64(&BROADCAST), 0xffff_ffff_ffff);

        let a = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff];
        let b = [0x01, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert!(a < b && mac_to_u64(&a) < mac_to_u64(&b));
    }

    #[test]
    fn reads_header_fields() {
        assert_eq!(dst_mac(&HEADER), Some([0x02, 0, 0, 0, 0, 0x02]));
        assert_eq!(src_mac(&HEADER), Some([0x02, 0, 0, 0, 0, 0x01]));
        assert_eq!(ethertype(&HEADER), Some(0x0800));
        assert_eq!(HEADER.len(), ETH_HDR_LEN);
    }

    #[test]
    fn runt_frames_read_as_none() {
        for n in 0..ETH_HDR_LEN {
            let frame = &HEADER[..n];
            assert_eq!(dst_mac(frame).is_some(), n >= 6);
            assert_eq!(src_mac(frame).is_some(), n >= 12);
            assert_eq!(ethertype(frame), None);
        }
    }
}
