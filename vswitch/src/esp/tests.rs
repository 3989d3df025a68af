//! The ESP core against golden vectors (computed with Python's `cryptography` and `hashlib`,
//! an implementation that is not ours) and VPP-style anti-replay cases: each bad packet dropped
//! under its own name, the window unmoved by failures.

use super::open::Opener;
use super::ring::EspConf;
use super::sa::{self, Sa};
use super::{OpenDrop, SealDrop};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use std::net::Ipv4Addr;
use std::sync::Arc;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Ethernet + IPv4 (10.0.0.1 -> 10.0.0.2, id 0x1234, DF) + UDP 50000 -> 4789 + 18 bytes.
const PLAIN: &str = "02000000000202000000000108004500002e12344000401114890a0000010a000002c35012b5001a000056584c414e2d697368207061796c6f616421";
/// PLAIN sealed with key 10..1f, salt cafebabe, SPI 0x1234, seq 1, IV 0x1001.
const SEALED: &str = "02000000000202000000000108004500005012344000403214460a0000010a00000200001234000000010000000000001001e32e6a27648807ab9370288fb66276445954690373d8584925869c32fdb2529c42e492cacc0e81c6801f10d8";

fn material() -> Vec<u8> {
    let mut m: Vec<u8> = (0x10..0x20).collect();
    m.extend_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
    m
}

fn golden_sa() -> Sa {
    Sa::with_material(&material(), 0x1234, A, B, 1, 0x1000).unwrap()
}

/// Seals `frame` as packet `n` of `sa` in a buffer with 64 bytes of headroom and room behind.
fn seal(sa: &Sa, n: u64, frame: &[u8]) -> Result<Vec<u8>, SealDrop> {
    let mut slot = vec![0u8; 64 + frame.len() + 64];
    slot[64..64 + frame.len()].copy_from_slice(frame);
    let (off, len) = sa.seal(n, &mut slot, 64, frame.len())?;
    Ok(slot[off..off + len].to_vec())
}

fn ring(rx: Sa) -> EspConf {
    EspConf::new(Vec::new(), vec![Arc::new(rx)])
}

fn open(o: &mut Opener, conf: &EspConf, pkt: &[u8]) -> Result<Vec<u8>, OpenDrop> {
    let mut f = pkt.to_vec();
    let r = o.open(conf, &mut f)?;
    Ok(f[r.trim..r.trim + r.len].to_vec())
}

/// An ESP packet from A to B with SPI 0x1234 built by hand: `plaintext` is what gets
/// encrypted (datagram, padding, pad length, next header), under the golden key.
fn raw(seq: u32, iv: u64, plaintext: &[u8]) -> Vec<u8> {
    let m = material();
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &m[..16]).unwrap());
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&m[16..]);
    nonce[4..].copy_from_slice(&iv.to_be_bytes());
    let mut aad = [0u8; 8];
    aad[..4].copy_from_slice(&0x1234u32.to_be_bytes());
    aad[4..].copy_from_slice(&seq.to_be_bytes());
    let mut ct = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut ct)
        .unwrap();
    let mut esp = aad.to_vec();
    esp.extend_from_slice(&iv.to_be_bytes());
    esp.extend_from_slice(&ct);
    esp.extend_from_slice(tag.as_ref());
    let plain = hex(PLAIN);
    let mut f = plain[..34].to_vec();
    let total = (20 + esp.len()) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[23] = 50;
    f.extend_from_slice(&esp);
    f
}

#[test]
fn spi_and_key_derivation_match_golden() {
    assert_eq!(sa::derive_spi(A, B, 1), 0x3478_8bc2);
    assert_eq!(sa::derive_spi(B, A, 1), 0xdb14_b8b9);
    let m20: Vec<u8> = (0..20).collect();
    assert_eq!(
        sa::derive_key(&m20, A, B, 1).unwrap(),
        hex("5f5c640dfe1c5d42f4a01663465ca132bcf7893b")
    );
    let m36: Vec<u8> = (0..36).collect();
    assert_eq!(
        sa::derive_key(&m36, A, B, 7).unwrap(),
        hex("9c202cc9fa5769b09d129b2c453a5589aeb9d8e5cec7b812dd0858c097dfe9a1c9322db3")
    );
    assert!(sa::derive_key(&m20[..16], A, B, 1).is_none());
    // Reserved SPIs are never derived.
    for tag in 0..2000 {
        assert!(sa::derive_spi(A, B, tag) >= 256);
    }
}

#[test]
fn seals_golden_packet_in_place() {
    let sealed = seal(&golden_sa(), 1, &hex(PLAIN)).unwrap();
    assert_eq!(sealed, hex(SEALED));
}

#[test]
fn opens_golden_packet() {
    let conf = ring(golden_sa());
    let mut o = Opener::default();
    o.configure(&conf);
    assert_eq!(open(&mut o, &conf, &hex(SEALED)), Ok(hex(PLAIN)));
    o.flush(&conf);
    assert_eq!(conf.rx()[0].1.rx_packets(), 1);
}

#[test]
fn round_trips_with_derived_keys_at_every_size() {
    for master_len in sa::KEY_LENS {
        let master: Vec<u8> = (0..master_len as u8).map(|x| x ^ 0x5a).collect();
        let tx = Sa::new(&master, A, B, 3, super::wall_ns()).unwrap();
        let rx = Sa::new(&master, A, B, 3, 0).unwrap();
        assert_eq!(tx.spi, rx.spi);
        let conf = ring(rx);
        let mut o = Opener::default();
        for (i, payload) in [0usize, 1, 2, 3, 4, 64, 1400, 1773, 9000]
            .into_iter()
            .enumerate()
        {
            let mut f = hex(PLAIN)[..42].to_vec();
            f.extend((0..payload).map(|x| x as u8));
            let total = (f.len() - 14) as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = dataplane::checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            let sealed = seal(&tx, i as u64 + 1, &f).unwrap();
            assert_eq!((sealed.len() - 14 - 20 - 16 - 16) % 4, 0, "4-byte aligned");
            assert!(sealed.len() <= f.len() + sa::MAX_OVERHEAD);
            assert_eq!(sealed.len(), sa::sealed_len(f.len(), 34));
            // The IPv4 header of the sealed packet is valid: protocol 50, length, checksum.
            assert_eq!(sealed[23], 50);
            assert_eq!(
                usize::from(u16::from_be_bytes([sealed[16], sealed[17]])),
                sealed.len() - 14
            );
            assert_eq!(dataplane::checksum::checksum(&sealed[14..34]), 0);
            let opened = open(&mut o, &conf, &sealed).unwrap();
            assert_eq!(dataplane::checksum::checksum(&opened[14..34]), 0);
            assert_eq!(opened, f, "payload {payload}");
        }
    }
}

#[test]
fn no_room_and_exhausted_sequence_numbers_refuse_to_seal() {
    let sa = golden_sa();
    let plain = hex(PLAIN);
    assert_eq!(seal(&sa, 1 << 32, &plain), Err(SealDrop::SeqExhausted));
    assert!(seal(&sa, u64::from(u32::MAX), &plain).is_ok());
    let mut slot = vec![0u8; 8 + plain.len() + 64];
    slot[8..8 + plain.len()].copy_from_slice(&plain);
    assert_eq!(sa.seal(1, &mut slot, 8, plain.len()), Err(SealDrop::NoRoom));
    let mut slot = vec![0u8; 64 + plain.len() + 8];
    slot[64..64 + plain.len()].copy_from_slice(&plain);
    assert_eq!(
        sa.seal(1, &mut slot, 64, plain.len()),
        Err(SealDrop::NoRoom)
    );
    assert!(sa.first_exhaustion());
    assert!(!sa.first_exhaustion());
}

/// Opens `pkt` expecting `want`, then proves the window did not move: the valid packet with
/// sequence `probe` is still accepted afterwards when `probe` is given.
fn expect_drop(o: &mut Opener, conf: &EspConf, pkt: &[u8], want: OpenDrop) {
    assert_eq!(open(o, conf, pkt), Err(want));
}

#[test]
fn bad_packets_dropped_by_name_and_window_unmoved() {
    let tx = golden_sa();
    let conf = ring(golden_sa());
    let mut o = Opener::default();
    let plain = hex(PLAIN);
    let pkt = |n: u64| seal(&tx, n, &plain).unwrap();

    // In order, then a gap (7 and 8 later, out of order).
    for n in [1, 2, 3, 4, 5, 6, 9, 10] {
        assert_eq!(open(&mut o, &conf, &pkt(n)), Ok(plain.clone()), "seq {n}");
    }
    // Duplicate of the last packet, replay of an older one inside the window.
    expect_drop(&mut o, &conf, &pkt(10), OpenDrop::Replay);
    expect_drop(&mut o, &conf, &pkt(3), OpenDrop::Replay);

    // Bit flips: in the ciphertext, the ICV, the IV, the sequence number (7 is fresh, so the
    // window passes it and the ICV catches it).
    for at in [60, 70] {
        let mut p = pkt(7);
        p[at] ^= 1;
        expect_drop(&mut o, &conf, &p, OpenDrop::BadIcv);
    }
    let mut p = pkt(7);
    let last = p.len() - 1;
    p[last] ^= 0x80;
    expect_drop(&mut o, &conf, &p, OpenDrop::BadIcv);
    let mut p = pkt(7);
    p[49] ^= 4;
    expect_drop(&mut o, &conf, &p, OpenDrop::BadIcv);
    let mut p = pkt(8);
    p[41] = 7;
    expect_drop(&mut o, &conf, &p, OpenDrop::BadIcv);

    // Wrong key: same SPI and peer, other key material.
    let mut wrong = material();
    wrong[0] ^= 0xff;
    let bad = Sa::with_material(&wrong, 0x1234, A, B, 1, 0x9000).unwrap();
    expect_drop(
        &mut o,
        &conf,
        &seal(&bad, 7, &plain).unwrap(),
        OpenDrop::BadIcv,
    );

    // Truncated: every length short of the whole packet.
    let full = pkt(7);
    for cut in [0, 13, 33, 40, 49, 51, full.len() - 1] {
        assert_eq!(
            open(&mut o, &conf, &full[..cut]),
            Err(OpenDrop::Runt),
            "cut at {cut}"
        );
    }
    // An IPv4 length shorter than ESP needs.
    let mut p = pkt(7);
    p[16..18].copy_from_slice(&40u16.to_be_bytes());
    expect_drop(&mut o, &conf, &p, OpenDrop::Runt);
    // A fragment.
    let mut p = pkt(7);
    p[20] |= 0x20;
    expect_drop(&mut o, &conf, &p, OpenDrop::Fragment);

    // Unknown SPI; right SPI from another source.
    let mut p = pkt(7);
    p[34..38].copy_from_slice(&0x9999u32.to_be_bytes());
    expect_drop(&mut o, &conf, &p, OpenDrop::UnknownSpi);
    let mut p = pkt(7);
    p[26..30].copy_from_slice(&[10, 0, 0, 9]);
    expect_drop(&mut o, &conf, &p, OpenDrop::UnknownSpi);

    // Authentic packets with a bad trailer: padding not 1, 2, ..; next header not UDP.
    let mut pt = plain[34..].to_vec();
    pt.extend_from_slice(&[9, 9, 2, 17]);
    expect_drop(
        &mut o,
        &conf,
        &raw(11, 0x1000 + 11, &pt),
        OpenDrop::BadPadding,
    );
    let mut pt = plain[34..].to_vec();
    pt.extend_from_slice(&[0, 6]);
    expect_drop(
        &mut o,
        &conf,
        &raw(12, 0x1000 + 12, &pt),
        OpenDrop::BadNextHeader,
    );

    // None of the failures moved the window or marked 7 or 8 as seen.
    for n in [7, 8] {
        assert_eq!(open(&mut o, &conf, &pkt(n)), Ok(plain.clone()), "seq {n}");
    }

    // Outside the window: far ahead, then an old one.
    assert!(open(&mut o, &conf, &pkt(5000)).is_ok());
    expect_drop(&mut o, &conf, &pkt(13), OpenDrop::OutsideWindow);
    assert!(
        open(&mut o, &conf, &pkt(5000 - 1000)).is_ok(),
        "1000 back is inside"
    );
}

#[test]
fn accepts_a_restarted_sender_but_not_a_replay() {
    let conf = ring(golden_sa());
    let mut o = Opener::default();
    let plain = hex(PLAIN);
    let before = golden_sa();
    for n in 1..=3000 {
        open(&mut o, &conf, &seal(&before, n, &plain).unwrap()).unwrap();
    }
    // The same sender after a restart: numbering from 1 again, IVs above every earlier one.
    let after = Sa::with_material(&material(), 0x1234, A, B, 1, 0x1000 + 1_000_000).unwrap();
    expect_drop(
        &mut o,
        &conf,
        &seal(&before, 1, &plain).unwrap(),
        OpenDrop::OutsideWindow,
    );
    expect_drop(
        &mut o,
        &conf,
        &seal(&before, 2999, &plain).unwrap(),
        OpenDrop::Replay,
    );
    assert_eq!(
        open(&mut o, &conf, &seal(&after, 1, &plain).unwrap()),
        Ok(plain.clone())
    );
    assert_eq!(
        open(&mut o, &conf, &seal(&after, 2, &plain).unwrap()),
        Ok(plain.clone())
    );
    expect_drop(
        &mut o,
        &conf,
        &seal(&after, 1, &plain).unwrap(),
        OpenDrop::Replay,
    );
    // A packet from before the restart, numbered ahead of the fresh window, is still a replay.
    let old = seal(&before, 2500, &plain).unwrap();
    expect_drop(&mut o, &conf, &old, OpenDrop::OutsideWindow);
    assert_eq!(
        open(&mut o, &conf, &seal(&after, 3, &plain).unwrap()),
        Ok(plain.clone())
    );
}

#[test]
fn overlay_mtu_leaves_room_for_esp() {
    assert_eq!(super::overlay_mtu(1500), 1416);
    assert_eq!(super::overlay_mtu(9000), 8916);
    assert_eq!(super::overlay_mtu(1501), 1416);
    assert_eq!(super::overlay_mtu(60), 0);
    // Every inner packet up to it fits the uplink; one byte more does not.
    for uplink in [1500usize, 1501, 1502, 1503, 9000] {
        let mtu = super::overlay_mtu(uplink as u32) as usize;
        let sealed_ip = |m: usize| sa::sealed_len(14 + 20 + 8 + 8 + 14 + m, 34) - 14;
        assert!((mtu - 3..=mtu).all(|m| sealed_ip(m) <= uplink), "{uplink}");
        assert!(sealed_ip(mtu + 1) > uplink, "{uplink}");
    }
}

/// Seals `frame` as packet `n` of `sa` in ESP in UDP (RFC 3948).
fn seal_udp(sa: &Sa, n: u64, frame: &[u8]) -> Result<Vec<u8>, SealDrop> {
    let mut slot = vec![0u8; 64 + frame.len() + 64];
    slot[64..64 + frame.len()].copy_from_slice(frame);
    let (off, len) = sa.seal_encap(n, &mut slot, 64, frame.len(), true)?;
    Ok(slot[off..off + len].to_vec())
}

#[test]
fn esp_in_udp_is_the_same_esp_packet_behind_a_udp_header_to_4500() {
    let plain = hex(PLAIN);
    let esp = seal(&golden_sa(), 1, &plain).unwrap();
    let udp = seal_udp(&golden_sa(), 1, &plain).unwrap();
    assert_eq!(udp.len(), esp.len() + sa::UDP_ENCAP_LEN);
    // IPv4: protocol UDP, length 8 more, valid checksum; the rest of the header as in ESP.
    assert_eq!(udp[23], 17);
    assert_eq!(
        usize::from(u16::from_be_bytes([udp[16], udp[17]])),
        udp.len() - 14
    );
    assert_eq!(dataplane::checksum::checksum(&udp[14..34]), 0);
    assert_eq!(udp[..16], esp[..16]);
    assert_eq!(udp[18..23], esp[18..23]);
    assert_eq!(udp[26..34], esp[26..34]);
    // UDP 4500 -> 4500, its length to the end, checksum zero; then ESP byte for byte (the
    // golden vector's SPI, sequence number, IV, ciphertext and ICV).
    assert_eq!(&udp[34..38], &[0x11, 0x94, 0x11, 0x94]);
    assert_eq!(
        usize::from(u16::from_be_bytes([udp[38], udp[39]])),
        udp.len() - 34
    );
    assert_eq!(&udp[40..42], &[0, 0]);
    assert_eq!(&udp[42..], &esp[34..]);
    assert_eq!(esp, hex(SEALED));
    assert_eq!(sa::encap_of(&udp), Some(true));
    assert_eq!(sa::encap_of(&esp), Some(false));
    assert_eq!(sa::encap_of(&plain), None, "VXLAN is not ESP");
    // UDP to 4500 with a zero SPI is IKE's non-ESP marker, not ESP.
    let mut ike = udp.clone();
    ike[42..46].copy_from_slice(&[0; 4]);
    assert_eq!(sa::encap_of(&ike), None);

    // Opened as ESP is: the frame it carried comes back whole, marked as from UDP.
    let conf = ring(golden_sa());
    let mut o = Opener::default();
    o.configure(&conf);
    let mut f = udp.clone();
    let r = o.open(&conf, &mut f).unwrap();
    assert!(r.udp && (r.spi, r.seq) == (0x1234, 1));
    assert_eq!(&f[r.trim..r.trim + r.len], &plain[..]);
    let mut f = esp.clone();
    let mut o50 = Opener::default();
    assert!(!o50.open(&conf, &mut f).unwrap().udp);
    // The same checks as for protocol 50: a replay, a changed byte, a UDP length that
    // disagrees with the IPv4 length, truncation at every length; never a panic.
    assert_eq!(open(&mut o, &conf, &udp), Err(OpenDrop::Replay));
    let two = seal_udp(&golden_sa(), 2, &plain).unwrap();
    let mut bad = two.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(open(&mut o, &conf, &bad), Err(OpenDrop::BadIcv));
    let mut bad = two.clone();
    bad[39] ^= 4;
    assert_eq!(open(&mut o, &conf, &bad), Err(OpenDrop::Runt));
    for n in 0..two.len() {
        let mut cut = two[..n].to_vec();
        let _ = o.open(&conf, &mut cut);
    }
    assert_eq!(open(&mut o, &conf, &two).unwrap(), plain);
}

#[test]
fn esp_in_udp_overlay_mtu_leaves_8_bytes_more() {
    assert_eq!(super::overlay_mtu_encap(1500, false), 1416);
    assert_eq!(super::overlay_mtu_encap(1500, true), 1408);
    assert_eq!(super::overlay_mtu_encap(40, true), 0);
    for uplink in [1500usize, 1501, 1502, 1503, 9000] {
        let mtu = super::overlay_mtu_encap(uplink as u32, true) as usize;
        let sealed_ip =
            |m: usize| sa::sealed_len(14 + 20 + 8 + 8 + 14 + m, 34) + sa::UDP_ENCAP_LEN - 14;
        assert!((mtu - 3..=mtu).all(|m| sealed_ip(m) <= uplink), "{uplink}");
        assert!(sealed_ip(mtu + 1) > uplink, "{uplink}");
    }
}
