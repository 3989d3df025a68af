//! Security associations: key derivation, SPI derivation, and sealing and opening an ESP packet
//! in place (RFC 4303 transport mode around the VXLAN UDP datagram, AES-GCM per RFC 4106).
//!
//! Keys: the user gives RFC 4106 keying material per tag (16 or 32 bytes of AES key, then the
//! 4-byte salt). Every host derives, for each tag and each ordered pair of VTEPs (source,
//! destination), without negotiation:
//!
//! - the SPI: the first 4 bytes of SHA-256(`"vswitch-esp-spi-v1"` || source IPv4 || destination
//!   IPv4 || tag as 4 bytes big-endian), read big-endian; values below 256 (reserved by IANA, 0
//!   forbidden on the wire) get bit 8 set;
//! - the SA's own keying material (same length as the tag's): HKDF-SHA256 (RFC 5869) with salt
//!   `"vswitch-esp-v1"`, the tag's material as input keying material and info = source IPv4 ||
//!   destination IPv4 || tag (4 bytes big-endian).
//!
//! One SA per direction per peer, each with its own key, so an IV is unique per key as long as
//! it is unique per SA. The explicit IV is `iv_base + n` where `n` = 1, 2, ... numbers the SA's
//! packets (its low 32 bits are the ESP sequence number) and `iv_base` is the wall clock in
//! nanoseconds when the SA was made: no SA sends a packet per nanosecond, so after a restart the
//! IVs start above every IV used before (as long as the clock is not set back). A sequence number
//! that would pass 2^32 - 1 stops the SA (`esp_seq_exhausted`; no extended sequence numbers):
//! rotate the key.
//!
//! ESP in UDP (RFC 3948), a network's opt-in encapsulation: the same ESP packet behind an
//! 8-byte UDP header (source and destination port [`NAT_T_PORT`], checksum zero as RFC 3948
//! allows for IPv4: the ICV protects the packet), the outer IPv4 protocol UDP. On receive, UDP
//! to port 4500 whose first 4 bytes (the SPI) are not zero is ESP (zero marks IKE, which is not
//! ours); its UDP checksum is not checked (the ICV is).

use super::{OpenDrop, SealDrop};
use dataplane::wire::esp::Trailer;
use dataplane::wire::IpProtocol;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use ring::{digest, hkdf};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// ESP header: SPI and sequence number.
pub const HEADER_LEN: usize = dataplane::wire::esp::HEADER_LEN;
/// Explicit IV (RFC 4106).
pub const IV_LEN: usize = 8;
/// Integrity check value.
pub const ICV_LEN: usize = 16;
/// Bytes inserted in front of the UDP datagram: ESP header and IV.
pub const PREFIX_LEN: usize = HEADER_LEN + IV_LEN;
/// The UDP header in front of the ESP header in ESP-in-UDP (RFC 3948).
pub const UDP_ENCAP_LEN: usize = 8;
/// The UDP port of ESP in UDP (RFC 3948, "NAT-T").
pub const NAT_T_PORT: u16 = 4500;
/// Most bytes sealing adds to a datagram: header, IV, up to 3 bytes of padding, pad length and
/// next header, ICV (37).
pub const MAX_OVERHEAD: usize = PREFIX_LEN + 3 + dataplane::wire::esp::TRAILER_LEN + ICV_LEN;

const ETH_LEN: usize = 14;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_UDP: u8 = 17;

/// RFC 4106 keying material lengths accepted: AES-128 or AES-256 key, then a 4-byte salt.
pub const KEY_LENS: [usize; 2] = [20, 36];

/// Length of the frame [`Sa::seal`] makes of a `len`-byte frame whose IPv4 header ends at
/// `ip_end` (so that a stage can judge the MTU before spending a sequence number).
pub const fn sealed_len(len: usize, ip_end: usize) -> usize {
    let p = len.saturating_sub(ip_end);
    let t = Trailer::for_payload(p, 4, IpProtocol::Udp);
    ip_end + PREFIX_LEN + p + t.buffer_len() + ICV_LEN
}

/// The SPI both ends use for packets from `src` to `dst` under key `tag` (see the module).
pub fn derive_spi(src: Ipv4Addr, dst: Ipv4Addr, tag: u32) -> u32 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"vswitch-esp-spi-v1");
    ctx.update(&src.octets());
    ctx.update(&dst.octets());
    ctx.update(&tag.to_be_bytes());
    let d = ctx.finish();
    let mut b = [0u8; 4];
    // A SHA-256 digest is 32 bytes.
    b.copy_from_slice(&d.as_ref()[..4]);
    let v = u32::from_be_bytes(b);
    if v < 256 {
        v | 0x100
    } else {
        v
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The SA's keying material derived from the tag's `master` (see the module); `None` when
/// `master` is not 20 or 36 bytes.
pub fn derive_key(master: &[u8], src: Ipv4Addr, dst: Ipv4Addr, tag: u32) -> Option<Vec<u8>> {
    if !KEY_LENS.contains(&master.len()) {
        return None;
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"vswitch-esp-v1").extract(master);
    let mut info = [0u8; 12];
    info[..4].copy_from_slice(&src.octets());
    info[4..8].copy_from_slice(&dst.octets());
    info[8..].copy_from_slice(&tag.to_be_bytes());
    let mut out = vec![0u8; master.len()];
    let infos = [&info[..]];
    prk.expand(&infos, Len(out.len()))
        .ok()?
        .fill(&mut out)
        .ok()?;
    Some(out)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One security association (one direction towards or from one peer, one key tag).
///
/// Shared (`Arc`) by every worker and kept across configuration snapshots while its key and
/// peer stay, so its packet counter never starts again under the same key. Sending workers
/// reserve packet numbers with one atomic add per burst; receive windows are per worker (see
/// [`super::open`]).
pub struct Sa {
    /// SPI.
    pub spi: u32,
    /// The key tag it was derived from.
    pub tag: u32,
    /// Source VTEP.
    pub src: Ipv4Addr,
    /// Destination VTEP.
    pub dst: Ipv4Addr,
    /// Unique among the SAs this process made (per-worker state follows it across snapshots).
    pub id: u64,
    key: LessSafeKey,
    salt: [u8; 4],
    iv_base: u64,
    /// Next packet number to hand out (sending).
    next: AtomicU64,
    /// Packets accepted (receiving).
    rx: AtomicU64,
    /// Whether the sequence-exhausted warning was logged.
    warned: AtomicBool,
}

impl fmt::Debug for Sa {
    // Never the key or the salt.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sa {{ spi: {:#010x}, tag: {}, {} -> {} }}",
            self.spi, self.tag, self.src, self.dst
        )
    }
}

/// Why sealing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// Named drop.
    Drop(SealDrop),
}

impl Sa {
    /// The SA for packets from `src` to `dst` under the tag's keying material `master`, whose
    /// IVs start above `iv_base` (wall clock in ns; see the module). `None` if `master` is not
    /// 20 or 36 bytes.
    pub fn new(master: &[u8], src: Ipv4Addr, dst: Ipv4Addr, tag: u32, iv_base: u64) -> Option<Sa> {
        let mat = derive_key(master, src, dst, tag)?;
        Self::with_material(&mat, derive_spi(src, dst, tag), src, dst, tag, iv_base)
    }

    /// An SA with its own keying material `mat` (key then salt) and `spi`, as given.
    pub fn with_material(
        mat: &[u8],
        spi: u32,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        tag: u32,
        iv_base: u64,
    ) -> Option<Sa> {
        let (key, salt) = mat.split_last_chunk::<4>()?;
        let alg = match key.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            _ => return None,
        };
        let key = LessSafeKey::new(UnboundKey::new(alg, key).ok()?);
        Some(Sa {
            spi,
            tag,
            src,
            dst,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            key,
            salt: *salt,
            iv_base,
            next: AtomicU64::new(1),
            rx: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        })
    }

    /// Reserves `k` packet numbers; returns the first. One atomic add per burst.
    #[inline]
    pub fn reserve(&self, k: u64) -> u64 {
        self.next.fetch_add(k, Ordering::Relaxed)
    }

    /// Packets sent (numbers handed out; a burst's unused reservation counts).
    pub fn tx_packets(&self) -> u64 {
        self.next.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// Packets accepted.
    pub fn rx_packets(&self) -> u64 {
        self.rx.load(Ordering::Relaxed)
    }

    /// Adds `k` accepted packets (once per run of a burst).
    #[inline]
    pub fn add_rx(&self, k: u64) {
        self.rx.fetch_add(k, Ordering::Relaxed);
    }

    /// Whether this is the first time the SA ran out of sequence numbers (for one log line).
    pub fn first_exhaustion(&self) -> bool {
        !self.warned.swap(true, Ordering::Relaxed)
    }

    #[inline]
    fn nonce(&self, iv: &[u8; IV_LEN]) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(n)
    }

    /// Seals packet number `n`: `slot[off..off + len]` is an Ethernet + IPv4 + UDP (VXLAN)
    /// frame; the ESP header and IV go in front of the UDP header (the Ethernet and IPv4
    /// headers move 16 bytes into the headroom), padding, trailer and ICV behind the datagram
    /// (into the tailroom), the datagram is encrypted in place and the IPv4 header patched.
    /// Returns the sealed frame's offset and length.
    pub fn seal(
        &self,
        n: u64,
        slot: &mut [u8],
        off: usize,
        len: usize,
    ) -> Result<(usize, usize), SealDrop> {
        self.seal_encap(n, slot, off, len, false)
    }

    /// As [`Sa::seal`]; with `udp`, the ESP packet goes behind a UDP header (RFC 3948: ports
    /// [`NAT_T_PORT`], checksum zero) and the frame grows by [`UDP_ENCAP_LEN`] more.
    pub fn seal_encap(
        &self,
        n: u64,
        slot: &mut [u8],
        off: usize,
        len: usize,
        udp: bool,
    ) -> Result<(usize, usize), SealDrop> {
        let encap = if udp { UDP_ENCAP_LEN } else { 0 };
        // Before anything moves (as `seal_at` would find).
        if u32::try_from(n).is_err() {
            return Err(SealDrop::SeqExhausted);
        }
        let frame = slot
            .get(off..off.saturating_add(len))
            .ok_or(SealDrop::NoRoom)?;
        if frame.get(12..14) != Some(&[0x08, 0x00]) {
            return Err(SealDrop::NotIpv4);
        }
        let ihl = usize::from(frame.get(ETH_LEN).ok_or(SealDrop::NotIpv4)? & 0x0f) * 4;
        let ip_end = ETH_LEN + ihl;
        let p = len.checked_sub(ip_end).ok_or(SealDrop::NotIpv4)?;
        if ihl < 20 {
            return Err(SealDrop::NotIpv4);
        }
        let new_len = sealed_len(len, ip_end) + encap;
        let new_off = off
            .checked_sub(encap + PREFIX_LEN)
            .ok_or(SealDrop::NoRoom)?;
        let out = slot
            .get_mut(new_off..new_off + new_len)
            .ok_or(SealDrop::NoRoom)?;
        out.copy_within(encap + PREFIX_LEN..encap + PREFIX_LEN + ip_end, 0);
        let (hdrs, rest) = out.split_at_mut(ip_end);
        let (udp_hdr, rest) = rest.split_at_mut(encap);
        if udp {
            let udp_len = u16::try_from(new_len - ip_end).map_err(|_| SealDrop::TooBig)?;
            udp_hdr[0..2].copy_from_slice(&NAT_T_PORT.to_be_bytes());
            udp_hdr[2..4].copy_from_slice(&NAT_T_PORT.to_be_bytes());
            udp_hdr[4..6].copy_from_slice(&udp_len.to_be_bytes());
            udp_hdr[6..8].copy_from_slice(&[0, 0]);
        }
        self.seal_at(n, rest, p)?;
        let total = u16::try_from(new_len - ETH_LEN).map_err(|_| SealDrop::TooBig)?;
        let proto = if udp { IPPROTO_UDP } else { IPPROTO_ESP };
        patch_ipv4(&mut hdrs[ETH_LEN..], proto, total);
        Ok((new_off, new_len))
    }

    /// Seals packet number `n` where it lies: `esp` starts where the ESP header goes, the
    /// datagram (`len` bytes) follows header and IV (at [`PREFIX_LEN`]); padding, trailer and
    /// ICV are written behind it. Returns the ESP packet's length.
    pub fn seal_at(&self, n: u64, esp: &mut [u8], len: usize) -> Result<usize, SealDrop> {
        let seq = u32::try_from(n).map_err(|_| SealDrop::SeqExhausted)?;
        let trailer = Trailer::for_payload(len, 4, IpProtocol::Udp);
        let ct_len = len + trailer.buffer_len();
        let total = PREFIX_LEN + ct_len + ICV_LEN;
        let esp = esp.get_mut(..total).ok_or(SealDrop::NoRoom)?;
        let (prefix, rest) = esp.split_at_mut(PREFIX_LEN);
        let (ct, icv) = rest.split_at_mut(ct_len);
        let iv = self.iv_base.wrapping_add(n).to_be_bytes();
        prefix[..4].copy_from_slice(&self.spi.to_be_bytes());
        prefix[4..8].copy_from_slice(&seq.to_be_bytes());
        prefix[8..].copy_from_slice(&iv);
        // Cannot fail: `ct` holds the datagram and the trailer exactly.
        let _ = trailer.emit(&mut ct[len..]);
        let mut aad = [0u8; HEADER_LEN];
        aad.copy_from_slice(&prefix[..HEADER_LEN]);
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(&iv), Aad::from(aad), ct)
            .map_err(|_| SealDrop::NoRoom)?;
        icv.copy_from_slice(tag.as_ref());
        Ok(total)
    }

    /// Authenticates and decrypts `p` in place (see [`parse`]); on success the datagram and
    /// trailer are cleartext in `frame`.
    #[inline]
    pub fn decrypt(&self, frame: &mut [u8], p: &EspIn) -> Result<(), OpenDrop> {
        let mut aad = [0u8; HEADER_LEN];
        let mut iv = [0u8; IV_LEN];
        let hdr = frame
            .get(p.esp_off..p.esp_off + PREFIX_LEN)
            .ok_or(OpenDrop::Runt)?;
        aad.copy_from_slice(&hdr[..HEADER_LEN]);
        iv.copy_from_slice(&hdr[HEADER_LEN..]);
        let body = frame
            .get_mut(p.esp_off + PREFIX_LEN..p.end)
            .ok_or(OpenDrop::Runt)?;
        let (ct, icv) = body
            .split_last_chunk_mut::<ICV_LEN>()
            .ok_or(OpenDrop::Runt)?;
        let tag = ring::aead::Tag::from(*icv);
        self.key
            .open_in_place_separate_tag(self.nonce(&iv), Aad::from(aad), tag, ct, 0..)
            .map(|_| ())
            .map_err(|_| OpenDrop::BadIcv)
    }
}

/// An ESP packet's outer facts, read before decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspIn {
    /// End of the IPv4 header (from the frame start).
    pub ip_end: usize,
    /// Start of the ESP header: `ip_end`, or 8 bytes on in ESP in UDP.
    pub esp_off: usize,
    /// End of the IPv4 packet (its total length; Ethernet padding after it is ignored).
    pub end: usize,
    /// Outer source address.
    pub src: Ipv4Addr,
    /// SPI.
    pub spi: u32,
    /// Sequence number.
    pub seq: u32,
    /// Explicit IV, as a number.
    pub iv: u64,
}

/// Whether `frame` (Ethernet) is an IPv4 ESP packet.
#[inline]
pub fn is_esp(frame: &[u8]) -> bool {
    encap_of(frame).is_some()
}

/// How `frame` (Ethernet) carries ESP: `Some(false)` IPv4 protocol 50, `Some(true)` ESP in
/// UDP (IPv4 UDP to port [`NAT_T_PORT`] whose first 4 payload bytes, the SPI, are not zero);
/// `None` if it is not ESP.
#[inline]
pub fn encap_of(frame: &[u8]) -> Option<bool> {
    if frame.get(12..14) != Some(&[0x08, 0x00]) {
        return None;
    }
    match *frame.get(ETH_LEN + 9)? {
        IPPROTO_ESP => Some(false),
        IPPROTO_UDP => {
            let ip_end = ETH_LEN + usize::from(frame.get(ETH_LEN)? & 0x0f) * 4;
            // The port first: VXLAN (every other UDP frame for us) stops there.
            if frame.get(ip_end + 2..ip_end + 4)? != NAT_T_PORT.to_be_bytes() {
                return None;
            }
            let spi = frame.get(ip_end + UDP_ENCAP_LEN..ip_end + UDP_ENCAP_LEN + 4)?;
            (spi != [0; 4]).then_some(true)
        }
        _ => None,
    }
}

/// Reads the outer IPv4 (and UDP) and ESP headers of `frame`, an IPv4 ESP packet ([`is_esp`])
/// for us.
pub fn parse(frame: &[u8]) -> Result<EspIn, OpenDrop> {
    let ip = frame.get(ETH_LEN..ETH_LEN + 20).ok_or(OpenDrop::Runt)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return Err(OpenDrop::Runt);
    }
    // More fragments, or an offset: we do not reassemble.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(OpenDrop::Fragment);
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let ip_end = ETH_LEN + ihl;
    let end = ETH_LEN + total;
    let esp_off = match ip[9] {
        IPPROTO_UDP => ip_end + UDP_ENCAP_LEN,
        _ => ip_end,
    };
    // Header, IV, at least the trailer, and the ICV.
    let min = esp_off + PREFIX_LEN + dataplane::wire::esp::TRAILER_LEN + ICV_LEN;
    if end < min || frame.len() < end {
        return Err(OpenDrop::Runt);
    }
    if esp_off != ip_end {
        // The UDP length must say where the packet ends, as the IPv4 length does.
        let udp_len = frame.get(ip_end + 4..ip_end + 6).ok_or(OpenDrop::Runt)?;
        if usize::from(u16::from_be_bytes([udp_len[0], udp_len[1]])) != end - ip_end {
            return Err(OpenDrop::Runt);
        }
    }
    let h = frame
        .get(esp_off..esp_off + PREFIX_LEN)
        .ok_or(OpenDrop::Runt)?;
    let rd = |r: std::ops::Range<usize>| h.get(r).unwrap_or(&[]);
    let spi = u32::from_be_bytes(rd(0..4).try_into().map_err(|_| OpenDrop::Runt)?);
    let seq = u32::from_be_bytes(rd(4..8).try_into().map_err(|_| OpenDrop::Runt)?);
    let iv = u64::from_be_bytes(rd(8..16).try_into().map_err(|_| OpenDrop::Runt)?);
    Ok(EspIn {
        ip_end,
        esp_off,
        end,
        src,
        spi,
        seq,
        iv,
    })
}

/// Reads the ESP header of one datagram of a UDP super-frame, whose outer headers were read
/// once for all: `payload` is the datagram's payload (ESP header, IV, ciphertext, ICV), `src`
/// the outer source. The offsets of the result count from `payload`'s start.
pub fn parse_payload(payload: &[u8], src: Ipv4Addr) -> Result<EspIn, OpenDrop> {
    if payload.len() < PREFIX_LEN + dataplane::wire::esp::TRAILER_LEN + ICV_LEN {
        return Err(OpenDrop::Runt);
    }
    let rd = |r: std::ops::Range<usize>| payload.get(r).unwrap_or(&[]);
    Ok(EspIn {
        ip_end: 0,
        esp_off: 0,
        end: payload.len(),
        src,
        spi: u32::from_be_bytes(rd(0..4).try_into().map_err(|_| OpenDrop::Runt)?),
        seq: u32::from_be_bytes(rd(4..8).try_into().map_err(|_| OpenDrop::Runt)?),
        iv: u64::from_be_bytes(rd(8..16).try_into().map_err(|_| OpenDrop::Runt)?),
    })
}

/// After [`Sa::decrypt`]: checks the trailer (padding, next header UDP) and returns the length
/// of the datagram it ends, which starts [`PREFIX_LEN`] bytes after the ESP header.
pub fn plaintext_len(frame: &[u8], p: &EspIn) -> Result<usize, OpenDrop> {
    let pt = frame
        .get(p.esp_off + PREFIX_LEN..p.end.saturating_sub(ICV_LEN))
        .ok_or(OpenDrop::Runt)?;
    let (t, data_len) = Trailer::parse(pt).map_err(|_| OpenDrop::BadPadding)?;
    if t.next_header != IpProtocol::Udp {
        return Err(OpenDrop::BadNextHeader);
    }
    Ok(data_len)
}

/// After [`Sa::decrypt`]: checks the trailer and turns `frame` back into the Ethernet + IPv4 +
/// UDP frame it carried, moving the Ethernet and IPv4 headers forward over the ESP header and
/// IV (and the UDP header of ESP in UDP). Returns the new frame's start within `frame` and its
/// length.
pub fn strip(frame: &mut [u8], p: &EspIn) -> Result<(usize, usize), OpenDrop> {
    let data_len = plaintext_len(frame, p)?;
    let shift = p.esp_off - p.ip_end + PREFIX_LEN;
    frame.copy_within(0..p.ip_end, shift);
    let ihl = p.ip_end - ETH_LEN;
    let total = u16::try_from(ihl + data_len).map_err(|_| OpenDrop::Runt)?;
    let ip = frame
        .get_mut(shift + ETH_LEN..shift + p.ip_end)
        .ok_or(OpenDrop::Runt)?;
    patch_ipv4(ip, IPPROTO_UDP, total);
    Ok((shift, p.ip_end + data_len))
}

/// Sets an IPv4 header's protocol and total length and recomputes its checksum.
pub fn patch_ipv4(ip: &mut [u8], proto: u8, total: u16) {
    if ip.len() < 20 {
        return;
    }
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[9] = proto;
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = dataplane::checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}
