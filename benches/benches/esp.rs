//! ESP sealing and opening per core, next to the raw AES-GCM of the crypto crate (ring)
//! on the same sizes, in the same run.
//!
//! Sizes are the UDP datagram that ESP protects (VXLAN header and inner frame included): 64,
//! 1400 and 9000 bytes. Throughput is in bytes of that datagram.
//!
//! - `raw_seal_N`: `LessSafeKey::seal_in_place_separate_tag` over N bytes with an 8-byte AAD
//!   (AES-128-GCM): the floor.
//! - `seal_N`: `Sa::seal` on an Ethernet + IPv4 + N-byte datagram in a buffer with headroom and
//!   tailroom: moves the 34 header bytes, writes ESP header, IV, padding and trailer, encrypts
//!   in place, writes the ICV, patches the IPv4 header. The harness puts the 34 header bytes
//!   back before each round (the payload is encrypted again as it is; its content does not
//!   matter to the cipher).
//! - `raw_open_N` / `open_N`: both copy the same sealed packet into the buffer first (open
//!   decrypts in place), then the raw one opens N + 2 bytes plus ICV, ours parses the outer
//!   headers, decrypts and verifies, checks the trailer and moves the headers back (what
//!   `underlay-in` does per packet besides the anti-replay window's two bit operations).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;
use vswitch::esp::sa::{self, Sa};

const SIZES: [usize; 3] = [64, 1400, 9000];
const HEAD: usize = 64;
const MAT: [u8; 20] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0xca, 0xfe, 0xba, 0xbe,
];
const A: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);

/// Ethernet + IPv4 (A -> B, UDP) + an n-byte datagram.
fn frame(n: usize) -> Vec<u8> {
    let mut f = vec![0u8; 34 + n];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + n) as u16;
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 192, 168, 50, 1, 192, 168, 50, 2,
    ]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    for (i, b) in f[34..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

fn esp(c: &mut Criterion) {
    let mut g = c.benchmark_group("esp");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    let sa = Sa::with_material(&MAT, 0x1234, A, B, 1, 1000).unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &MAT[..16]).unwrap());
    let nonce = || Nonce::assume_unique_for_key([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0, 0, 0, 0, 1]);
    let aad = [0u8, 0, 0x12, 0x34, 0, 0, 0, 1];
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let f = frame(n);
        let mut slot = vec![0u8; HEAD + f.len() + 64];

        // Seal.
        let mut buf = vec![7u8; n + 2];
        g.bench_function(format!("raw_seal_{n}"), |b| {
            b.iter(|| {
                let tag = key
                    .seal_in_place_separate_tag(nonce(), Aad::from(aad), black_box(&mut buf))
                    .unwrap();
                let _ = black_box(tag);
            })
        });
        slot[HEAD..HEAD + f.len()].copy_from_slice(&f);
        g.bench_function(format!("seal_{n}"), |b| {
            b.iter(|| {
                slot[HEAD..HEAD + 34].copy_from_slice(&f[..34]);
                let r = sa.seal(1, black_box(&mut slot), HEAD, f.len()).unwrap();
                black_box(r);
            })
        });

        // Open: one sealed packet, copied in before each round.
        slot[HEAD..HEAD + f.len()].copy_from_slice(&f);
        let (off, len) = sa.seal(1, &mut slot, HEAD, f.len()).unwrap();
        let sealed = slot[off..off + len].to_vec();
        let p = sa::parse(&sealed).unwrap();
        let mut work = sealed.clone();
        let ct = p.ip_end + sa::PREFIX_LEN;
        let iv: [u8; 8] = sealed[ct - 8..ct].try_into().unwrap();
        let mut nb = [0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0, 0, 0, 0, 0];
        nb[4..].copy_from_slice(&iv);
        let aad_in: [u8; 8] = sealed[p.ip_end..p.ip_end + 8].try_into().unwrap();
        // Both open what was sealed (checked once, outside the measurement).
        {
            let mut w = sealed.clone();
            let (body, icv) = w[ct..].split_at_mut(len - ct - sa::ICV_LEN);
            let nonce = Nonce::assume_unique_for_key(nb);
            let tag = Tag::try_from(&icv[..]).unwrap();
            assert!(key
                .open_in_place_separate_tag(nonce, Aad::from(aad_in), tag, body, 0..)
                .is_ok());
        }
        g.bench_function(format!("raw_open_{n}"), |b| {
            b.iter(|| {
                work.copy_from_slice(&sealed);
                let (body, icv) = work[ct..].split_at_mut(len - ct - sa::ICV_LEN);
                let tag = Tag::try_from(&icv[..]).unwrap();
                let r = key.open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nb),
                    Aad::from(aad_in),
                    tag,
                    black_box(body),
                    0..,
                );
                black_box(r.is_ok());
            })
        });
        g.bench_function(format!("open_{n}"), |b| {
            b.iter(|| {
                work.copy_from_slice(&sealed);
                let p = sa::parse(black_box(&work)).unwrap();
                sa.decrypt(&mut work, &p).unwrap();
                black_box(sa::strip(&mut work, &p).unwrap());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, esp);
criterion_main!(benches);
