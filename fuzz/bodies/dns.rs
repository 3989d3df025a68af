//! Feeds arbitrary DNS messages to the gateway's embedded DNS (`vswitch::dns`), wrapped in a
//! UDP datagram to port 53 of a gateway. Nothing may panic; a query that is answered must come
//! back as a well-formed reply: from the gateway's port 53 to the sender, IPv4 and UDP
//! checksums right, the DNS message within 512 bytes, its ID the query's, QR set, and answers
//! only for names the network has.

use dataplane::checksum::{fold, pseudo_header_v4, sum16};
use std::net::Ipv4Addr;
use vswitch::config::GatewayConf;
use vswitch::dns::{answer, is_query, NetNames};
use vswitch::nat::router::header;

const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);

fn names() -> NetNames {
    let mut n = NetNames::new("blue");
    n.add("web", &[Ipv4Addr::new(10, 1, 0, 100)], false, 600);
    let many: Vec<Ipv4Addr> = (0..40u32)
        .map(|i| Ipv4Addr::from(0x0a01_0200 + i))
        .collect();
    n.add("tasks.web", &many, true, 0);
    n
}

/// One input: the first byte picks the IPv4 header length (options), the rest is the DNS
/// message.
pub fn run(data: &[u8]) {
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let opts = usize::from(sel & 3) * 4;
    let ihl = 20 + opts;
    let gw = GatewayConf {
        ip: GW,
        subnet: Ipv4Addr::new(10, 1, 0, 0),
        prefix: 24,
        mac: GatewayConf::mac_of(1),
        internal: false,
    };
    let mut f = Vec::with_capacity(2048);
    f.extend_from_slice(&gw.mac);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 7, 0x08, 0x00]);
    let total = (ihl + 8 + msg.len()).min(65535) as u16;
    let mut ip = vec![0u8; ihl];
    ip[0] = 0x40 | (ihl / 4) as u8;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&CLIENT.octets());
    ip[16..20].copy_from_slice(&GW.octets());
    f.extend_from_slice(&ip);
    let ulen = (8 + msg.len()).min(65535) as u16;
    f.extend_from_slice(&[0x9c, 0x40, 0, 53]);
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(msg);
    let len = f.len();
    f.resize(len.max(2048), 0);
    let Some(h) = header(&f) else {
        return;
    };
    assert!(is_query(&f, &h));
    let n = names();
    let Ok(a) = answer(&mut f, len, &h, &gw, Some(&n)) else {
        return;
    };
    let r = &f[..a.len];
    assert_eq!(fold(sum16(&r[14..34], 0)), 0xffff, "IPv4 checksum");
    let ulen = u16::from_be_bytes([r[38], r[39]]);
    assert_eq!(usize::from(ulen), r.len() - 34);
    let ph = pseudo_header_v4(GW, CLIENT, 17, ulen);
    assert_eq!(fold(sum16(&r[34..], ph)), 0xffff, "UDP checksum");
    assert_eq!((&r[34..36], &r[36..38]), (&[0, 53][..], &[0x9c, 0x40][..]));
    let m = &r[42..];
    assert!(m.len() <= 512, "reply of {} bytes", m.len());
    assert_eq!(&m[0..2], &msg[0..2], "the query's ID");
    assert!(m[2] & 0x80 != 0, "QR");
    let an = u16::from_be_bytes([m[6], m[7]]);
    assert_eq!(an, u16::from(a.answers));
    if an > 0 {
        assert_eq!(a.rcode, 0);
        for i in 0..usize::from(an) {
            let rr = &m[m.len() - 16 * (usize::from(an) - i)..][..16];
            let ip = Ipv4Addr::new(rr[12], rr[13], rr[14], rr[15]);
            assert!(
                ip == Ipv4Addr::new(10, 1, 0, 100) || (ip.octets()[..3] == [10, 1, 2]),
                "answered {ip}"
            );
        }
    }
}
