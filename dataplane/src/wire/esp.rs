//! ESP header and trailer (RFC 4303).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ----
//! |               Security Parameters Index (SPI)                 | ^Int.
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
//! |                      Sequence Number                          | |ered
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ | ----
//! |                    Payload Data* (variable)                   | |   ^
//! ~                                                               ~ |   |
//! +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Conf.
//! |               |     Padding (0-255 bytes)                     | |Cov-
//! +-+-+-+-+-+-+-+-+               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |ered*
//! |                               |  Pad Length   | Next Header   | v   v
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ------
//! |         Integrity Check Value-ICV   (variable)                |
//! ```
//!
//! [`Packet`] views the cleartext header; its payload is everything after it (IV, ciphertext
//! and ICV, whose sizes depend on the SA). [`Trailer`] parses and emits the padding, pad length
//! and next header at the end of the *decrypted* payload, once the ICV has been removed.

use core::fmt;

use super::field::{Field, Rest};
use super::{be32, Error, IpProtocol, Result};

/// Length of the ESP header: SPI and sequence number.
pub const HEADER_LEN: usize = field::SEQ.end;

/// Length of the fixed part of the trailer: pad length and next header.
pub const TRAILER_LEN: usize = 2;

/// Next header of a tunnel-mode payload that is an IPv4 packet.
pub const NEXT_HEADER_IPV4: IpProtocol = IpProtocol::Unknown(4);
/// Next header of a tunnel-mode payload that is an IPv6 packet.
pub const NEXT_HEADER_IPV6: IpProtocol = IpProtocol::Unknown(41);
/// Next header of a dummy packet (RFC 4303 section 2.6), which the receiver must discard.
pub const NEXT_HEADER_NONE: IpProtocol = IpProtocol::Ipv6NoNxt;

mod field {
    use super::{Field, Rest};

    pub const SPI: Field = 0..4;
    pub const SEQ: Field = 4..8;
    pub const PAYLOAD: Rest = SEQ.end..;
}

/// A read/write view of an ESP packet: cleartext header, then the protected payload.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

// Indexing with `field::*` below cannot panic once `check_len` has passed: every field ends at
// or before HEADER_LEN.
impl<T: AsRef<[u8]>> Packet<T> {
    /// Imbue a raw octet buffer with ESP structure, without checking its length.
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

    /// The security parameters index.
    #[inline]
    pub fn spi(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SPI])
    }

    /// The (low 32 bits of the) sequence number.
    #[inline]
    pub fn sequence_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The protected part: IV, ciphertext and ICV.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the security parameters index.
    #[inline]
    pub fn set_spi(&mut self, value: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&value.to_be_bytes());
    }

    /// Set the sequence number.
    #[inline]
    pub fn set_sequence_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&value.to_be_bytes());
    }

    /// Mutable access to the protected part, for in-place sealing and opening.
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

/// A high-level representation of an ESP header.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Hash)]
pub struct Repr {
    /// Security parameters index; never 0 on the wire.
    pub spi: u32,
    /// Sequence number (low 32 bits when extended sequence numbers are in use).
    pub sequence_number: u32,
}

impl Repr {
    /// Parse an ESP header: `Err(Malformed)` for SPI 0, which RFC 4303 reserves for local use
    /// and forbids on the wire.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let spi = packet.spi();
        if spi == 0 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            spi,
            sequence_number: packet.sequence_number(),
        })
    }

    /// Length of the header this representation emits.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Emit the header; the payload is untouched.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_spi(self.spi);
        packet.set_sequence_number(self.sequence_number);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ESP spi={:#010x} seq={}", self.spi, self.sequence_number)
    }
}

/// The end of a decrypted ESP payload: `pad_len` bytes of padding (1, 2, 3, ... as RFC 4303
/// section 2.4 prescribes by default), the pad length and the next header.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Hash)]
pub struct Trailer {
    /// Number of padding bytes before the pad length octet.
    pub pad_len: u8,
    /// Protocol of the payload data; [`NEXT_HEADER_NONE`] marks a dummy packet to discard.
    pub next_header: IpProtocol,
}

impl Trailer {
    /// Parse the trailer at the end of `plaintext` (decrypted, ICV removed) and return it with
    /// the length of the payload data in front of the padding.
    ///
    /// `Err(Truncated)` if `plaintext` cannot hold the trailer; `Err(Malformed)` if the pad
    /// length reaches beyond the start or the padding bytes are not 1, 2, 3, ...
    pub fn parse(plaintext: &[u8]) -> Result<(Trailer, usize)> {
        let [body @ .., pad_len, next_header] = plaintext else {
            return Err(Error::Truncated);
        };
        let data_len = body
            .len()
            .checked_sub(usize::from(*pad_len))
            .ok_or(Error::Malformed)?;
        let padding = body.get(data_len..).ok_or(Error::Malformed)?;
        // The expected byte for position i is i + 1, which fits a u8 as there are at most 255.
        if !padding
            .iter()
            .zip(1u8..)
            .all(|(&b, expected)| b == expected)
        {
            return Err(Error::Malformed);
        }
        Ok((
            Trailer {
                pad_len: *pad_len,
                next_header: IpProtocol::from(*next_header),
            },
            data_len,
        ))
    }

    /// The trailer for `payload_len` bytes of payload data, padded so that data plus trailer
    /// is a multiple of `align` bytes (4 at least for ESP; the cipher's block size if larger).
    /// An `align` of 0 counts as 1.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // The one cast is lossless, see below.
    pub const fn for_payload(payload_len: usize, align: u8, next_header: IpProtocol) -> Trailer {
        let align = if align == 0 { 1 } else { align as usize };
        let rem = (payload_len % align + TRAILER_LEN % align) % align;
        // (align - rem) % align < align <= 255, so the cast is lossless.
        let pad_len = ((align - rem) % align) as u8;
        Trailer {
            pad_len,
            next_header,
        }
    }

    /// Length of the padding and trailer this emits.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        self.pad_len as usize + TRAILER_LEN
    }

    /// Write padding, pad length and next header into the first [`Trailer::buffer_len`] bytes
    /// of `buf`; `Err(Truncated)`, writing nothing, if `buf` is shorter.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let out = buf.get_mut(..self.buffer_len()).ok_or(Error::Truncated)?;
        let Some((padding, tail)) = out.split_last_chunk_mut::<TRAILER_LEN>() else {
            return Err(Error::Truncated);
        };
        for (b, value) in padding.iter_mut().zip(1u8..) {
            *b = value;
        }
        *tail = [self.pad_len, u8::from(self.next_header)];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPI 0x00001000, sequence 1, then 4 bytes standing for IV/ciphertext/ICV.
    const HEADER: [u8; 12] = [
        0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef,
    ];

    /// Decrypted tunnel-mode payload: 5 bytes of data, padding 1 2 3, pad length 3, next
    /// header 4 (IPv4). More padding than alignment needs, which a receiver must accept.
    const PLAINTEXT: [u8; 10] = [0x45, 0x00, 0x00, 0x14, 0x99, 0x01, 0x02, 0x03, 0x03, 0x04];

    #[test]
    fn parses_golden_header() {
        let packet = Packet::new_checked(&HEADER[..]).unwrap();
        assert_eq!(packet.spi(), 0x1000);
        assert_eq!(packet.sequence_number(), 1);
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                spi: 0x1000,
                sequence_number: 1
            }
        );
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        assert_eq!(repr.to_string(), "ESP spi=0x00001000 seq=1");
    }

    #[test]
    fn emits_golden_header() {
        let repr = Repr {
            spi: 0x1000,
            sequence_number: 1,
        };
        let mut out = [0xffu8; 12];
        out[8..].copy_from_slice(&HEADER[8..]);
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, HEADER);
    }

    #[test]
    fn setters_and_payload_mut() {
        let mut buf = [0u8; 10];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_spi(0xfedc_ba98);
        packet.set_sequence_number(0x0102_0304);
        packet.payload_mut().copy_from_slice(&[7, 8]);
        assert_eq!(buf, [0xfe, 0xdc, 0xba, 0x98, 1, 2, 3, 4, 7, 8]);
    }

    #[test]
    fn truncated_and_zero_spi_are_rejected() {
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&HEADER[..n]), Err(Error::Truncated));
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&HEADER[..n])),
                Err(Error::Truncated)
            );
        }
        let zero = [0u8, 0, 0, 0, 0, 0, 0, 9];
        assert_eq!(
            Repr::parse(&Packet::new_checked(&zero[..]).unwrap()),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn parses_golden_trailer() {
        let (trailer, data_len) = Trailer::parse(&PLAINTEXT).unwrap();
        assert_eq!(
            trailer,
            Trailer {
                pad_len: 3,
                next_header: NEXT_HEADER_IPV4
            }
        );
        assert_eq!(data_len, 5);
        assert_eq!(trailer.buffer_len(), 5);

        let mut out = [0u8; 10];
        out[..5].copy_from_slice(&PLAINTEXT[..5]);
        trailer.emit(&mut out[5..]).unwrap();
        assert_eq!(out, PLAINTEXT);
    }

    #[test]
    fn trailer_without_padding() {
        let (trailer, data_len) = Trailer::parse(&[0xaa, 0xbb, 0x00, 0x11]).unwrap();
        assert_eq!(trailer.next_header, IpProtocol::Udp);
        assert_eq!((trailer.pad_len, data_len), (0, 2));
        let (trailer, data_len) = Trailer::parse(&[0x00, 0x3b]).unwrap();
        assert_eq!(trailer.next_header, NEXT_HEADER_NONE);
        assert_eq!(data_len, 0);
    }

    #[test]
    fn bad_trailers_are_rejected() {
        assert_eq!(Trailer::parse(&[]), Err(Error::Truncated));
        assert_eq!(Trailer::parse(&[0x04]), Err(Error::Truncated));
        // Pad length 1 with nothing in front of the trailer.
        assert_eq!(Trailer::parse(&[0x01, 0x04]), Err(Error::Malformed));
        // Pad length 255 in a short buffer.
        assert_eq!(
            Trailer::parse(&[1, 2, 3, 0xff, 0x04]),
            Err(Error::Malformed)
        );
        // Padding not 1, 2, 3.
        assert_eq!(
            Trailer::parse(&[0x45, 1, 3, 2, 3, 4]),
            Err(Error::Malformed)
        );
        assert_eq!(
            Trailer::parse(&[0x45, 0, 0, 0, 3, 4]),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn trailer_emit_checks_room() {
        let trailer = Trailer {
            pad_len: 3,
            next_header: NEXT_HEADER_IPV6,
        };
        let mut short = [0u8; 4];
        assert_eq!(trailer.emit(&mut short), Err(Error::Truncated));
        assert_eq!(short, [0; 4], "nothing written");
        let mut long = [0xeeu8; 7];
        trailer.emit(&mut long).unwrap();
        assert_eq!(long, [1, 2, 3, 3, 41, 0xee, 0xee]);
    }

    #[test]
    fn padding_aligns_data_and_trailer() {
        for payload_len in 0..64usize {
            for align in [0u8, 1, 4, 8, 16, 255] {
                let t = Trailer::for_payload(payload_len, align, NEXT_HEADER_IPV4);
                let a = usize::from(align.max(1));
                assert_eq!((payload_len + t.buffer_len()) % a, 0);
                assert!(usize::from(t.pad_len) < a);

                let mut buf = vec![0x5au8; payload_len + t.buffer_len()];
                t.emit(&mut buf[payload_len..]).unwrap();
                assert_eq!(Trailer::parse(&buf), Ok((t, payload_len)));
            }
        }
        assert_eq!(Trailer::for_payload(5, 4, NEXT_HEADER_IPV4).pad_len, 1);
        assert_eq!(Trailer::for_payload(6, 4, NEXT_HEADER_IPV4).pad_len, 0);
        assert_eq!(
            Trailer::for_payload(usize::MAX, 16, NEXT_HEADER_IPV4).pad_len,
            15
        );
    }
}
