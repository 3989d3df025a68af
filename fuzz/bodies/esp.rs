//! Feeds arbitrary bytes to ESP opening (what `underlay-in` does with a protocol-50 packet for
//! us) against a ring with one SA whose SPI and source the input may hit, and seals arbitrary
//! datagrams then opens them; opens arbitrary datagrams of a UDP super-frame where they lie and
//! gathers arbitrary cleartext into a run, as `underlay-in` does. Nothing may panic; a failure
//! is one of the named drops; whatever opens must come back as it was sealed.

use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch::esp::open::Opener;
use vswitch::esp::ring::EspConf;
use vswitch::esp::sa::{self, Sa};
use vswitch::vxlan::rejoin::{self, Run};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// One input: must not panic; the checks above hold.
pub fn run(data: &[u8]) {
    let mat = [9u8; 20];
    let tx = Sa::with_material(&mat, 0x1234, A, B, 1, 5).unwrap();
    let rx = Sa::with_material(&mat, 0x1234, A, B, 1, 0).unwrap();
    let conf = EspConf::new(vec![], vec![Arc::new(rx)]);
    let mut o = Opener::default();
    o.configure(&conf);

    // Arbitrary bytes as a received frame.
    let mut f = data.to_vec();
    if let Ok(r) = o.open(&conf, &mut f) {
        assert!(r.trim + r.len <= f.len());
    }

    // Arbitrary bytes as the datagrams of a UDP super-frame, each opened where it lies.
    let mut sf = data.to_vec();
    let mut o = Opener::default();
    for d in sf.chunks_mut(97) {
        if let Ok(p) = sa::parse_payload(d, A) {
            if o.open_parsed(&conf, d, &p).is_ok() {
                let n = sa::plaintext_len(d, &p).unwrap_or(0);
                assert!(n <= d.len());
            }
        }
    }

    // Arbitrary bytes as cleartext VXLAN datagrams gathered into a run behind 34 bytes of
    // outer headers; the run stays within its buffer and finishes without panicking.
    let mut buf = vec![0u8; 34];
    buf.extend_from_slice(data);
    buf.resize(buf.len() + 4096, 0);
    if let Some(seg) = rejoin::segment(data) {
        let mut r = Run::new(seg, 0, 34, data.len());
        let cap = buf.len();
        let mut rest = data.to_vec();
        rest.rotate_left(data.len() / 2);
        for d in [data, &rest[..]] {
            let Some(s) = rejoin::segment(d) else {
                continue;
            };
            if r.takes(&buf, cap, d, &s) {
                let skip = r.skip();
                assert!(r.end + d.len() - skip <= cap);
                buf[r.end..r.end + d.len() - skip].copy_from_slice(&d[skip..]);
                r.appended(s);
            }
        }
        if let Some(ol) = r.finish(&mut buf) {
            assert!(usize::from(ol.csum_start) <= r.end - r.start);
        }
    }

    // Arbitrary bytes as the datagram of a frame we seal, then open.
    let mut frame = vec![0u8; 34];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[23] = 17;
    frame[26..30].copy_from_slice(&A.octets());
    frame[30..34].copy_from_slice(&B.octets());
    frame.extend_from_slice(data);
    let mut slot = vec![0u8; 64 + frame.len() + 64];
    slot[64..64 + frame.len()].copy_from_slice(&frame);
    let Ok((off, len)) = tx.seal(1, &mut slot, 64, frame.len()) else {
        return;
    };
    let mut o = Opener::default();
    let pkt = &mut slot[off..off + len];
    let r = o.open(&conf, pkt).expect("what we sealed opens");
    let out = &pkt[r.trim..r.trim + r.len];
    assert_eq!(&out[34..], data);
}
