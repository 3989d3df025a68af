//! IEEE 802.1Q VLAN tag.
//!
//! In a tagged frame the tag's TPID sits where the ethertype would be, so smoltcp's
//! `EthernetFrame` reports the TPID as its ethertype and its payload starts at the TCI. This view
//! starts there too: 2 bytes of TCI (PCP 3 bits, DEI 1 bit, VID 12 bits) and the 2-byte
//! encapsulated ethertype, then the payload (the inner ethertype may itself be a TPID, for
//! stacked tags).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | PCP |D|         VID           |     Encapsulated EtherType    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::fmt;

use super::field::{Field, Rest};
use super::{be16, Error, EthernetProtocol, Result};

/// TPID of an 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad service tag (the outer tag of `QinQ`).
pub const TPID_8021AD: u16 = 0x88A8;
/// Pre-standard QinQ TPID still seen on some equipment.
pub const TPID_QINQ_LEGACY: u16 = 0x9100;

/// Length of the view's header: TCI and encapsulated ethertype.
pub const HEADER_LEN: usize = field::ETHERTYPE.end;

/// Highest VID a tag may carry; 0xFFF is reserved and never transmitted.
pub const VID_MAX: u16 = 4094;
/// VID 0: a priority tag, carrying PCP/DEI but no VLAN membership.
pub const VID_PRIORITY: u16 = 0;

const VID_MASK: u16 = 0x0FFF;
const DEI_BIT: u16 = 0x1000;
const PCP_SHIFT: u32 = 13;

/// Whether `ethertype` is one of the TPIDs that announce a VLAN tag.
#[inline]
#[must_use]
pub const fn is_tpid(ethertype: u16) -> bool {
    matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY)
}

mod field {
    use super::{Field, Rest};

    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = ETHERTYPE.end..;
}

/// A read/write view of a VLAN tag (TCI + encapsulated ethertype) and what follows it.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

// Indexing with `field::*` below cannot panic once `check_len` has passed: every field ends at
// or before HEADER_LEN.
impl<T: AsRef<[u8]>> Packet<T> {
    /// Imbue a raw octet buffer with VLAN tag structure, without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Shorthand for [`Packet::new_unchecked`] followed by [`Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensure that no accessor will panic: `Err(Truncated)` if the buffer is shorter than the tag.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consume the view, returning the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole tag control information field.
    #[inline]
    pub fn tci(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::TCI])
    }

    /// Priority code point (802.1p), 0..=7.
    #[inline]
    pub fn pcp(&self) -> u8 {
        self.buffer.as_ref()[field::TCI.start] >> 5
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & DEI_BIT != 0
    }

    /// VLAN identifier, 0..=4095.
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & VID_MASK
    }

    /// The ethertype of what the tag encapsulates.
    #[inline]
    pub fn ethertype(&self) -> EthernetProtocol {
        EthernetProtocol::from(be16(&self.buffer.as_ref()[field::ETHERTYPE]))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// What follows the tag: the inner L3 packet, or another tag.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the whole tag control information field.
    #[inline]
    pub fn set_tci(&mut self, value: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&value.to_be_bytes());
    }

    /// Set the priority code point; bits above the low three are ignored.
    #[inline]
    pub fn set_pcp(&mut self, value: u8) {
        let tci = (self.tci() & !(0x7 << PCP_SHIFT)) | (u16::from(value & 0x7) << PCP_SHIFT);
        self.set_tci(tci);
    }

    /// Set the drop eligible indicator.
    #[inline]
    pub fn set_dei(&mut self, value: bool) {
        let tci = (self.tci() & !DEI_BIT) | if value { DEI_BIT } else { 0 };
        self.set_tci(tci);
    }

    /// Set the VLAN identifier; bits above the low twelve are ignored.
    #[inline]
    pub fn set_vid(&mut self, value: u16) {
        let tci = (self.tci() & !VID_MASK) | (value & VID_MASK);
        self.set_tci(tci);
    }

    /// Set the encapsulated ethertype.
    #[inline]
    pub fn set_ethertype(&mut self, value: EthernetProtocol) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Mutable access to what follows the tag.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A high-level representation of a VLAN tag.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Hash)]
pub struct Repr {
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 0 (priority tag) or 1..=4094.
    pub vid: u16,
    /// Ethertype of the encapsulated packet.
    pub ethertype: EthernetProtocol,
}

impl Repr {
    /// Parse a VLAN tag; `Err(Malformed)` for the reserved VID 0xFFF.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let vid = packet.vid();
        if vid > VID_MAX {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            pcp: packet.pcp(),
            dei: packet.dei(),
            vid,
            ethertype: packet.ethertype(),
        })
    }

    /// Length of the tag this representation emits.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// The TCI this representation emits; out-of-range `pcp` and `vid` bits are masked off.
    #[inline]
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << PCP_SHIFT)
            | if self.dei { DEI_BIT } else { 0 }
            | (self.vid & VID_MASK)
    }

    /// Emit the tag into the first [`HEADER_LEN`] bytes of `packet`; the payload is untouched.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_tci(self.tci());
        packet.set_ethertype(self.ethertype);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VLAN vid={} pcp={} dei={} type={}",
            self.vid, self.pcp, self.dei as u8, self.ethertype
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PCP 5, DEI 1, VID 100 (0x064), inner IPv4, then two payload bytes.
    /// TCI = 101 1 0000 0110 0100 = 0xB064.
    const TAG: [u8; 6] = [0xb0, 0x64, 0x08, 0x00, 0xde, 0xad];

    /// PCP 0, DEI 0, VID 4094 (0xFFE), inner 802.1Q tag (stacked), no payload.
    const INNER_TAGGED: [u8; 4] = [0x0f, 0xfe, 0x81, 0x00];

    #[test]
    fn parses_golden_tag() {
        let packet = Packet::new_checked(&TAG[..]).unwrap();
        assert_eq!(packet.tci(), 0xB064);
        assert_eq!(packet.pcp(), 5);
        assert!(packet.dei());
        assert_eq!(packet.vid(), 100);
        assert_eq!(packet.ethertype(), EthernetProtocol::Ipv4);
        assert_eq!(packet.payload(), &[0xde, 0xad]);

        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                pcp: 5,
                dei: true,
                vid: 100,
                ethertype: EthernetProtocol::Ipv4
            }
        );
        assert_eq!(repr.buffer_len(), 4);
        assert_eq!(repr.to_string(), "VLAN vid=100 pcp=5 dei=1 type=IPv4");
    }

    #[test]
    fn emits_golden_tag() {
        let repr = Repr::parse(&Packet::new_checked(&TAG[..]).unwrap()).unwrap();
        let mut out = [0xffu8; 6];
        out[4..].copy_from_slice(&TAG[4..]);
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, TAG);
    }

    #[test]
    fn stacked_tag_round_trip() {
        let packet = Packet::new_checked(&INNER_TAGGED[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.vid, VID_MAX);
        assert_eq!((repr.pcp, repr.dei), (0, false));
        assert_eq!(repr.ethertype, EthernetProtocol::Unknown(TPID_8021Q));
        assert!(is_tpid(u16::from(repr.ethertype)));
        assert!(packet.payload().is_empty());
        let mut out = [0u8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, INNER_TAGGED);
    }

    #[test]
    fn setters_touch_only_their_bits() {
        let mut buf = [0u8; 4];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_vid(0xFFFF);
        assert_eq!(packet.tci(), 0x0FFF);
        packet.set_pcp(0xFF);
        assert_eq!(packet.tci(), 0xEFFF);
        packet.set_dei(true);
        assert_eq!(packet.tci(), 0xFFFF);
        packet.set_vid(0);
        packet.set_dei(false);
        assert_eq!(packet.tci(), 0xE000);
        packet.set_pcp(0);
        packet.set_ethertype(EthernetProtocol::Arp);
        assert_eq!(buf, [0x00, 0x00, 0x08, 0x06]);
    }

    #[test]
    fn truncated_and_reserved_are_rejected() {
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&TAG[..n]), Err(Error::Truncated));
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&TAG[..n])),
                Err(Error::Truncated)
            );
        }
        let reserved = [0x0f, 0xff, 0x08, 0x00];
        let packet = Packet::new_checked(&reserved[..]).unwrap();
        assert_eq!(packet.vid(), 0xFFF);
        assert_eq!(Repr::parse(&packet), Err(Error::Malformed));
    }

    #[test]
    fn tpids() {
        assert!(is_tpid(0x8100) && is_tpid(0x88A8) && is_tpid(0x9100));
        assert!(!is_tpid(0x0800));
    }
}
