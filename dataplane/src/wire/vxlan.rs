//! VXLAN header (RFC 7348 section 5), carried in UDP to port 4789; the payload is an
//! inner Ethernet frame.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The I flag must be set for a valid VNI; the reserved fields must be sent as zero and ignored
//! on receipt, so [`Repr::parse`] rejects only a clear I flag ([`Error::BadFlags`]).

use core::fmt;

use super::field::{Field, Rest};
use super::{be32, Error, Result};

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;

/// The IANA-assigned UDP destination port.
pub const UDP_PORT: u16 = 4789;

/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;

/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00FF_FFFF;

mod field {
    use super::{Field, Rest};

    pub const FLAGS: usize = 0;
    pub const RESERVED_1: Field = 1..4;
    /// The VNI occupies bytes 4..7; it is read as a u32 with the trailing reserved byte.
    pub const VNI_WORD: Field = 4..8;
    pub const RESERVED_2: usize = 7;
    pub const PAYLOAD: Rest = super::HEADER_LEN..;
}

/// A read/write view of a VXLAN header and the inner frame after it.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

// Indexing with `field::*` below cannot panic once `check_len` has passed: every field ends at
// or before HEADER_LEN.
impl<T: AsRef<[u8]>> Packet<T> {
    /// Imbue a raw octet buffer with VXLAN structure, without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Shorthand for [`Packet::new_unchecked`] followed by [`Packet::check_len`]; flags are
    /// not examined (that is [`Repr::parse`]'s job).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensure that no accessor will panic: `Err(Truncated)` if shorter than the header.
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

    /// The flags octet.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag (valid VNI) is set.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VXLAN network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::VNI_WORD]) >> 8
    }

    /// Whether every reserved bit (flags other than I, and both reserved fields) is zero.
    #[inline]
    pub fn reserved_is_zero(&self) -> bool {
        let data = self.buffer.as_ref();
        data[field::FLAGS] & !FLAG_I == 0
            && data[field::RESERVED_1].iter().all(|&b| b == 0)
            && data[field::RESERVED_2] == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the flags octet.
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Set the VNI; bits above the low 24 are ignored, the trailing reserved byte is kept.
    #[inline]
    pub fn set_vni(&mut self, value: u32) {
        let data = self.buffer.as_mut();
        let reserved = data[field::RESERVED_2];
        let word = ((value & VNI_MAX) << 8) | u32::from(reserved);
        data[field::VNI_WORD].copy_from_slice(&word.to_be_bytes());
    }

    /// Zero both reserved fields (the flags octet is left alone).
    #[inline]
    pub fn clear_reserved(&mut self) {
        let data = self.buffer.as_mut();
        data[field::RESERVED_1].fill(0);
        data[field::RESERVED_2] = 0;
    }

    /// Mutable access to the inner frame.
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

/// A high-level representation of a VXLAN header.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Hash)]
pub struct Repr {
    /// VXLAN network identifier, 0..=0xFF_FFFF.
    pub vni: u32,
}

impl Repr {
    /// Parse a VXLAN header: `Err(BadFlags)` if the I flag is clear; reserved bits are ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.vni_valid() {
            return Err(Error::BadFlags);
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// Length of the header this representation emits.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// The eight header bytes, for callers that precompute an outer header template.
    #[inline]
    pub const fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let v = (self.vni & VNI_MAX).to_be_bytes();
        [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
    }

    /// Emit the header (I flag set, reserved zero, VNI masked to 24 bits); payload untouched.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VXLAN vni={}", self.vni)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// I flag, VNI 0x123456 (1193046), then the first two bytes of an inner frame.
    const HEADER: [u8; 10] = [0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x00, 0xff, 0xff];

    /// Same VNI with every reserved bit set: valid, the reserved bits are ignored.
    const RESERVED_SET: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0x12, 0x34, 0x56, 0xff];

    #[test]
    fn parses_golden_header() {
        let packet = Packet::new_checked(&HEADER[..]).unwrap();
        assert_eq!(packet.flags(), FLAG_I);
        assert!(packet.vni_valid());
        assert!(packet.reserved_is_zero());
        assert_eq!(packet.vni(), 0x12_3456);
        assert_eq!(packet.payload(), &[0xff, 0xff]);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr, Repr { vni: 0x12_3456 });
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        assert_eq!(repr.to_string(), "VXLAN vni=1193046");
    }

    #[test]
    fn emits_golden_header() {
        let repr = Repr { vni: 0x12_3456 };
        let mut out = [0xaau8; 10];
        out[8..].copy_from_slice(&HEADER[8..]);
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, HEADER);
        assert_eq!(repr.to_bytes()[..], HEADER[..8]);
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let packet = Packet::new_checked(&RESERVED_SET[..]).unwrap();
        assert!(!packet.reserved_is_zero());
        assert_eq!(packet.vni(), 0x12_3456);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr, Repr { vni: 0x12_3456 });
        let mut out = [0u8; 8];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..], HEADER[..8], "emit zeroes the reserved bits");
    }

    #[test]
    fn clear_i_flag_is_bad_flags() {
        let mut bytes = HEADER;
        bytes[0] = 0xf7; // everything but I
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.vni_valid());
        assert_eq!(Repr::parse(&packet), Err(Error::BadFlags));
    }

    #[test]
    fn truncated_is_rejected() {
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&HEADER[..n]), Err(Error::Truncated));
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&HEADER[..n])),
                Err(Error::Truncated)
            );
        }
        assert!(Packet::new_checked(&HEADER[..HEADER_LEN])
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn vni_setter_masks_and_keeps_reserved_byte() {
        let mut buf = RESERVED_SET;
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_vni(0xAB00_0001);
        assert_eq!(packet.vni(), 1);
        assert_eq!(buf[4..], [0x00, 0x00, 0x01, 0xff]);
        assert_eq!(
            Repr { vni: u32::MAX }.to_bytes()[4..],
            [0xff, 0xff, 0xff, 0x00]
        );
    }
}
