//! Internet checksum helpers (RFC 1071) and incremental updates (RFC 1624).
//!
//! A *sum* (`u32`) is a partial one's complement sum that can be carried across calls
//! ([`sum16`] takes the previous one as `initial`); [`fold`] reduces it to 16 bits and the
//! checksum field holds the complement of that (`!fold(sum)`), which [`checksum`] returns.
//! Verifying a received header is `fold(sum16(header, 0)) == 0xFFFF`.
//!
//! The incremental updates use RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which (unlike the
//! older RFC 1141 form) never turns a correct 0x0000 into 0xFFFF. UDP over IPv4 gives 0x0000 the
//! meaning "no checksum": callers must leave such a field alone rather than update it, and must
//! transmit a computed 0x0000 as 0xFFFF.
//!
//! Nothing here panics or allocates, whatever the input.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Add `data`, read as big-endian 16-bit words (an odd last byte padded with a zero byte),
/// to the one's complement partial sum `initial`.
///
/// The body is summed as native-endian 32-bit words into eight 64-bit lanes, which the compiler
/// turns into vector adds: a one's complement sum does not depend on byte order except for one
/// swap of the folded result (RFC 1071 section 2 (B)), and since 2^16 = 1 (mod 0xFFFF) a 32-bit
/// word adds the same as its two 16-bit halves. Per 1 400-byte segment this is what every cut
/// TCP segment and every sealed ESP packet pays, so it is on the encrypted overlay's hot path.
#[inline]
#[must_use]
#[allow(clippy::cast_possible_truncation)] // The final cast is lossless, see below.
pub fn sum16(data: &[u8], initial: u32) -> u32 {
    const BLOCK: usize = 32;
    let mut acc = u64::from(initial);
    // A header (under 32 bytes) skips the lanes and costs what the plain loop did.
    let rest = if data.len() >= BLOCK {
        let (body, rest) = data.split_at(data.len() - data.len() % BLOCK);
        acc += u64::from(sum_blocks(body));
        rest
    } else {
        data
    };
    // The rest as big-endian 32-bit words, then 16.
    let mut words = rest.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut pairs = words.remainder().chunks_exact(2);
    for w in &mut pairs {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    // Two end-around-carry folds bring any u64 into u32 range.
    acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
    acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
    // The second fold leaves at most 0xFFFF_FFFF, so the cast is lossless.
    acc as u32
}

/// The one's complement sum of `body` (a multiple of 32 bytes) as big-endian 16-bit words,
/// folded to 16 bits: summed in native order in eight lanes, then byte-swapped once.
#[inline]
#[allow(clippy::cast_possible_truncation)] // Folded to 16 bits before the cast.
fn sum_blocks(body: &[u8]) -> u16 {
    const LANES: usize = 8;
    let mut lanes = [0u64; LANES];
    for b in body.chunks_exact(4 * LANES) {
        // `chunks_exact` yields slices of exactly 32 bytes, so the indexing cannot panic.
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = [b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]];
            *lane += u64::from(u32::from_ne_bytes(w));
        }
    }
    // No lane can overflow below 2^32 blocks (128 GiB), and their sum below 2^29 blocks (16 GiB).
    let native = lanes.iter().sum::<u64>();
    // Fold the native-order sum to 16 bits; on a little-endian machine that is the big-endian
    // sum byte-swapped.
    let mut n = (native & 0xFFFF_FFFF) + (native >> 32);
    n = (n & 0xFFFF_FFFF) + (n >> 32);
    n = (n & 0xFFFF) + (n >> 16);
    n = (n & 0xFFFF) + (n >> 16);
    if cfg!(target_endian = "little") {
        (n as u16).swap_bytes()
    } else {
        n as u16
    }
}

/// Fold a partial sum to 16 bits with end-around carry (not complemented).
#[inline]
#[must_use]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xFFFF) + (sum >> 16);
    let s = (s & 0xFFFF) + (s >> 16);
    // Two folds of a u32 leave at most 0xFFFF: the high half is zero.
    let [_, _, hi, lo] = s.to_be_bytes();
    u16::from_be_bytes([hi, lo])
}

/// The Internet checksum of `data`: the value to store in a zeroed checksum field.
#[inline]
#[must_use]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum16(data, 0))
}

/// Partial sum of the IPv4 pseudo-header for TCP/UDP: addresses, protocol and the L4 length.
#[inline]
#[must_use]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(proto)
        + u32::from(len)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1) for TCP/UDP/ICMPv6.
#[inline]
#[must_use]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let s = sum16(&src.octets(), 0);
    let s = sum16(&dst.octets(), s);
    // Both terms are at most 0xFFFF after folding, so the additions cannot overflow.
    u32::from(fold(s)) + u32::from(fold(len)) + u32::from(next_header)
}

/// RFC 1624 eqn. 3 for one changed 16-bit word: `HC' = ~(~HC + ~m + m')`.
///
/// The result equals full recomputation whenever the data other than the checksum field is not
/// all zero afterwards (full computation gives 0xFFFF for all-zero data, this gives 0x0000).
#[inline]
#[must_use]
pub const fn update16(old_csum: u16, old: u16, new: u16) -> u16 {
    // Three terms of at most 0xFFFF each cannot overflow a u32.
    !fold(!old_csum as u32 + !old as u32 + new as u32)
}

/// RFC 1624 eqn. 3 for a changed 32-bit field (an IPv4 address, as `u32::from(addr)`).
#[inline]
#[must_use]
pub const fn update32(old_csum: u16, old: u32, new: u32) -> u16 {
    let [a, b, c, d] = old.to_be_bytes();
    let (old_hi, old_lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    let [a, b, c, d] = new.to_be_bytes();
    let (new_hi, new_lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    // Five terms of at most 0xFFFF each cannot overflow a u32.
    let sum = !old_csum as u32 + !old_hi as u32 + !old_lo as u32 + new_hi as u32 + new_lo as u32;
    !fold(sum)
}

/// RFC 1624 eqn. 3 for a changed field of several words, `old` replaced by `new`.
///
/// The field must start at an even offset of the checksummed data and `old` and `new` should
/// have the same length; an odd last byte is treated as [`sum16`] treats it, and a length
/// mismatch behaves as if the shorter one were padded with zero bytes.
#[inline]
#[must_use]
pub fn update_bytes(old_csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let removed = !fold(sum16(old, 0));
    let added = fold(sum16(new, 0));
    // Three terms of at most 0xFFFF each cannot overflow a u32.
    !fold(u32::from(!old_csum) + u32::from(removed) + u32::from(added))
}

#[cfg(test)]
mod tests {
    // The PRNG's output is cut to field widths on purpose.
    #![allow(clippy::cast_possible_truncation)]

    use super::*;

    /// xorshift64: deterministic, dependency-free randomness for property tests.
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

        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next() as u8;
            }
        }
    }

    /// Full checksum of `data` with the checksum field at `at` zeroed.
    fn full(data: &[u8], at: usize) -> u16 {
        let mut copy = data.to_vec();
        copy[at] = 0;
        copy[at + 1] = 0;
        checksum(&copy)
    }

    fn store(data: &mut [u8], at: usize, csum: u16) {
        data[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    }

    fn word(data: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([data[at], data[at + 1]])
    }

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn sum_is_independent_of_how_data_is_split() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        for cut in (0..=data.len()).step_by(2) {
            let s = sum16(&data[cut..], sum16(&data[..cut], 0));
            assert_eq!(fold(s), 0xddf2, "cut at {cut}");
        }
    }

    #[test]
    fn odd_length_pads_last_byte_with_zero() {
        assert_eq!(fold(sum16(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
        assert_eq!(fold(sum16(&[0xab], 0)), 0xab00);
        assert_eq!(sum16(&[], 7), 7);
    }

    /// The straightforward RFC 1071 loop, for comparison.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc = 0u64;
        for w in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        while acc > 0xFFFF {
            acc = (acc & 0xFFFF) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn vector_sum_matches_the_plain_loop() {
        // Every length up to a few blocks past 1 500, random bytes and all-ones (most carries).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut data = vec![0u8; 1_600];
        for b in &mut data {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let ones = vec![0xFFu8; 1_600];
        for len in 0..=data.len() {
            for buf in [&data[..len], &ones[..len], &data[1..len.max(1)]] {
                assert_eq!(
                    fold(sum16(buf, 0)),
                    reference_sum(buf),
                    "length {}",
                    buf.len()
                );
                let init = 0xFFFF_FFF0;
                let want = fold(fold(init).into()) as u32 + reference_sum(buf) as u32;
                assert_eq!(fold(sum16(buf, init)), fold(want), "length {}", buf.len());
            }
        }
    }

    #[test]
    fn end_around_carry() {
        assert_eq!(fold(sum16(&[0xff, 0xff, 0x00, 0x01], 0)), 0x0001);
        assert_eq!(fold(0xFFFF_FFFF), 0xFFFF);
        assert_eq!(fold(0x0001_FFFF), 0x0001);
        // Large inputs cannot overflow the accumulator.
        let big = vec![0xffu8; 1 << 20];
        assert_eq!(fold(sum16(&big, u32::MAX)), 0xFFFF);
    }

    #[test]
    fn ipv4_header_golden_checksum() {
        // Classic example header: 192.168.0.1 -> 192.168.0.199, TTL 64, UDP, checksum 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        store(&mut hdr, 10, 0xb861);
        assert_eq!(fold(sum16(&hdr, 0)), 0xFFFF, "a correct header verifies");
        assert_eq!(checksum(&hdr), 0);
    }

    #[test]
    fn udp_pseudo_header_golden_checksum() {
        // UDP 10.0.0.1:1234 -> 10.0.0.2:80, payload "hi"; checksum computed by hand:
        // pseudo 0x0a00+0x0001+0x0a00+0x0002+0x0011+0x000a = 0x141e,
        // udp 0x04d2+0x0050+0x000a+0x6869 = 0x6d95, total 0x81b3, checksum 0x7e4c.
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let udp = [0x04, 0xd2, 0x00, 0x50, 0x00, 0x0a, 0x00, 0x00, b'h', b'i'];
        let ph = pseudo_header_v4(src, dst, 17, 10);
        assert_eq!(fold(ph), 0x141e);
        assert_eq!(!fold(sum16(&udp, ph)), 0x7e4c);
    }

    #[test]
    fn ipv6_pseudo_header_matches_layout() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&0x0001_0010u32.to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(
            fold(pseudo_header_v6(&src, &dst, 17, 0x0001_0010)),
            fold(sum16(&pseudo, 0))
        );
    }

    #[test]
    fn rfc1624_example_gives_zero_not_ffff() {
        // RFC 1624 section 4: other words sum to 0xCD7A, m = 0x5555 becomes m' = 0x3285.
        let hc = !fold(0xCD7A + 0x5555);
        assert_eq!(hc, 0xDD2F);
        let recomputed = !fold(0xCD7A + 0x3285);
        assert_eq!(recomputed, 0x0000);
        assert_eq!(update16(hc, 0x5555, 0x3285), 0x0000);
        // RFC 1141's eqn. 2 would have produced 0xFFFF here.
        let eqn2 = fold(u32::from(hc) + 0x5555 + u32::from(!0x3285u16));
        assert_eq!(eqn2, 0xFFFF);
        // And back again.
        assert_eq!(update16(0x0000, 0x3285, 0x5555), 0xDD2F);
    }

    #[test]
    fn update_forms_agree() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..10_000 {
            let hc = rng.next() as u16;
            let old = rng.next() as u32;
            let new = rng.next() as u32;
            let by16 = update16(
                update16(hc, (old >> 16) as u16, (new >> 16) as u16),
                old as u16,
                new as u16,
            );
            let by32 = update32(hc, old, new);
            let bytes = update_bytes(hc, &old.to_be_bytes(), &new.to_be_bytes());
            assert_eq!(by32, bytes);
            // Chained 16-bit updates differ at most in the representation of zero.
            assert_eq!(u32::from(by16) % 0xFFFF, u32::from(by32) % 0xFFFF);
        }
    }

    /// Change random words of random headers; the update must equal recomputation exactly.
    #[test]
    fn incremental_update_equals_recomputation() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for round in 0..20_000 {
            let len = 2 * (3 + rng.below(30));
            let mut hdr = vec![0u8; len];
            rng.fill(&mut hdr);
            // The last word never changes and is never zero, as no real header is all zero
            // (see `all_zero_header_is_the_one_exception`).
            hdr[len - 2] |= 0x40;
            let words = len / 2 - 1;
            let at = 2 * rng.below(words);
            let mut field = 2 * rng.below(words);
            if field == at {
                field = (field + 2) % (len - 2);
            }
            let old_csum = full(&hdr, at);
            store(&mut hdr, at, old_csum);

            match round % 3 {
                0 => {
                    let old = word(&hdr, field);
                    let new = rng.next() as u16;
                    hdr[field..field + 2].copy_from_slice(&new.to_be_bytes());
                    assert_eq!(
                        update16(old_csum, old, new),
                        full(&hdr, at),
                        "round {round}"
                    );
                }
                1 if len >= 8 => {
                    // A 4-byte field at an even offset, clear of the checksum.
                    let start = if at >= 4 { 0 } else { 4 };
                    let old: [u8; 4] = hdr[start..start + 4].try_into().unwrap();
                    let mut new = [0u8; 4];
                    rng.fill(&mut new);
                    new[0] |= 0x01;
                    hdr[start..start + 4].copy_from_slice(&new);
                    let got = update32(old_csum, u32::from_be_bytes(old), u32::from_be_bytes(new));
                    assert_eq!(got, full(&hdr, at), "round {round}");
                }
                _ => {
                    // A 16-byte field (an IPv6 address) when it fits before the checksum.
                    let n = (at.min(16)) & !1;
                    if n == 0 {
                        continue;
                    }
                    let old = hdr[..n].to_vec();
                    let mut new = vec![0u8; n];
                    rng.fill(&mut new);
                    new[0] |= 0x01;
                    hdr[..n].copy_from_slice(&new);
                    assert_eq!(
                        update_bytes(old_csum, &old, &new),
                        full(&hdr, at),
                        "round {round}"
                    );
                }
            }
        }
    }

    /// Eqn. 3 is exact unless the data other than the checksum becomes all zero: full
    /// computation then gives 0xFFFF and eqn. 3 gives 0x0000. No real header is all zero.
    #[test]
    fn all_zero_header_is_the_one_exception() {
        let hdr = [0x00, 0x00, 0x12, 0x34];
        let old_csum = full(&hdr, 0);
        assert_eq!(old_csum, 0xEDCB);
        assert_eq!(full(&[0, 0, 0, 0], 0), 0xFFFF);
        assert_eq!(update16(old_csum, 0x1234, 0x0000), 0x0000);
    }

    /// RFC 1624's edge cases: old or new checksum 0x0000 (sum 0xFFFF), and fields that are
    /// 0x0000 or 0xFFFF before or after.
    #[test]
    fn incremental_update_edge_cases() {
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        let specials = [0x0000u16, 0xFFFF, 0x0001, 0xFFFE, 0x8000];
        for round in 0..5_000 {
            // Words: [fixed, checksum, field, balance, random...].
            let mut hdr = vec![0u8; 16];
            rng.fill(&mut hdr);
            hdr[0] = 0x45;
            let old_field = specials[rng.below(specials.len())];
            let new_field = specials[rng.below(specials.len())];
            hdr[4..6].copy_from_slice(&old_field.to_be_bytes());
            // Pick the balance word so that, before or after the change, the sum of the other
            // words is 0xFFFF and the checksum therefore 0x0000.
            let target_new = round % 2 == 0;
            let base = {
                let mut c = hdr.clone();
                c[2..4].fill(0);
                c[6..8].fill(0);
                if target_new {
                    c[4..6].copy_from_slice(&new_field.to_be_bytes());
                }
                fold(sum16(&c, 0))
            };
            hdr[6..8].copy_from_slice(&(!base).to_be_bytes());

            let old_csum = full(&hdr, 2);
            if !target_new {
                assert_eq!(old_csum, 0x0000);
            }
            store(&mut hdr, 2, old_csum);
            hdr[4..6].copy_from_slice(&new_field.to_be_bytes());
            let expect = full(&hdr, 2);
            if target_new {
                assert_eq!(expect, 0x0000);
            }
            let got = update16(old_csum, old_field, new_field);
            assert_eq!(
                got, expect,
                "round {round}: {old_field:#x} -> {new_field:#x}"
            );
            assert_ne!(got, 0xFFFF, "a computed checksum is never -0");
            store(&mut hdr, 2, got);
            assert_eq!(fold(sum16(&hdr, 0)), 0xFFFF, "round {round}: verifies");
        }
    }

    #[test]
    fn nat_rewrite_of_address_updates_ip_and_udp_checksums() {
        let src = Ipv4Addr::new(192, 168, 1, 10);
        let nat = Ipv4Addr::new(203, 0, 113, 7);
        let dst = Ipv4Addr::new(198, 51, 100, 1);
        let udp = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];
        let l4 = |s: Ipv4Addr| !fold(sum16(&udp, pseudo_header_v4(s, dst, 17, 12)));
        let before = l4(src);
        let after = update32(before, u32::from(src), u32::from(nat));
        assert_eq!(after, l4(nat));
        let bytes = update_bytes(before, &src.octets(), &nat.octets());
        assert_eq!(bytes, l4(nat));
    }
}
