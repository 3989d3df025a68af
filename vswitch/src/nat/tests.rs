//! NAT core tests: frames built with smoltcp's wire builders go through [`Nat`], and what comes
//! out is compared byte for byte with the frame smoltcp builds for the translated addresses
//! (so every checksum is checked against a full recomputation). Time is a plain number.

use super::table::State;
use super::translate::{self, NatDrop, Way};
use super::{proto, Nat};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable,
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

const IN1: Ipv4Address = Ipv4Address::new(10, 9, 0, 2);
const IN2: Ipv4Address = Ipv4Address::new(10, 9, 0, 3);
const EXT: Ipv4Address = Ipv4Address::new(192, 168, 50, 2);
const REMOTE: Ipv4Address = Ipv4Address::new(198, 51, 100, 7);
const REMOTE2: Ipv4Address = Ipv4Address::new(203, 0, 113, 9);
const NET: u16 = 3;

fn u(ip: Ipv4Address) -> u32 {
    u32::from(ip)
}

fn eth(payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut f = vec![0u8; 14 + payload.len()];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut f));
    f[14..].copy_from_slice(payload);
    f
}

fn ip(src: Ipv4Address, dst: Ipv4Address, p: IpProtocol, l4: &[u8], ttl: u8) -> Vec<u8> {
    let r = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: p,
        payload_len: l4.len(),
        hop_limit: ttl,
    };
    let mut b = vec![0u8; r.buffer_len() + l4.len()];
    let mut pkt = Ipv4Packet::new_unchecked(&mut b);
    r.emit(&mut pkt, &ChecksumCapabilities::default());
    pkt.payload_mut().copy_from_slice(l4);
    b
}

fn tcp_l4(src: (Ipv4Address, u16), dst: (Ipv4Address, u16), ctl: TcpControl, ack: bool) -> Vec<u8> {
    let r = TcpRepr {
        src_port: src.1,
        dst_port: dst.1,
        control: ctl,
        seq_number: TcpSeqNumber(1000),
        ack_number: ack.then_some(TcpSeqNumber(77)),
        window_len: 5000,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: b"hello through the gateway",
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(
        &mut TcpPacket::new_unchecked(&mut b),
        &IpAddress::Ipv4(src.0),
        &IpAddress::Ipv4(dst.0),
        &ChecksumCapabilities::default(),
    );
    b
}

fn tcp(src: (Ipv4Address, u16), dst: (Ipv4Address, u16), ctl: TcpControl, ack: bool) -> Vec<u8> {
    eth(&ip(
        src.0,
        dst.0,
        IpProtocol::Tcp,
        &tcp_l4(src, dst, ctl, ack),
        64,
    ))
}

fn udp_l4(src: (Ipv4Address, u16), dst: (Ipv4Address, u16), data: &[u8]) -> Vec<u8> {
    let r = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let mut b = vec![0u8; 8 + data.len()];
    r.emit(
        &mut UdpPacket::new_unchecked(&mut b),
        &IpAddress::Ipv4(src.0),
        &IpAddress::Ipv4(dst.0),
        data.len(),
        |p| p.copy_from_slice(data),
        &ChecksumCapabilities::default(),
    );
    b
}

fn udp(src: (Ipv4Address, u16), dst: (Ipv4Address, u16)) -> Vec<u8> {
    eth(&ip(
        src.0,
        dst.0,
        IpProtocol::Udp,
        &udp_l4(src, dst, b"datagram"),
        64,
    ))
}

fn icmp_l4(r: &Icmpv4Repr) -> Vec<u8> {
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(
        &mut Icmpv4Packet::new_unchecked(&mut b),
        &ChecksumCapabilities::default(),
    );
    b
}

fn echo(src: Ipv4Address, dst: Ipv4Address, ident: u16, request: bool) -> Vec<u8> {
    let r = if request {
        Icmpv4Repr::EchoRequest {
            ident,
            seq_no: 1,
            data: b"ping",
        }
    } else {
        Icmpv4Repr::EchoReply {
            ident,
            seq_no: 1,
            data: b"ping",
        }
    };
    eth(&ip(src, dst, IpProtocol::Icmp, &icmp_l4(&r), 64))
}

fn nat() -> Nat {
    Nat::new(1024, 42)
}

fn out(n: &mut Nat, frame: &mut [u8], now: u64) -> Result<u32, NatDrop> {
    let f = translate::parse(frame, 14, Way::Out, None)?;
    let h = n.table.hash_in(&Nat::inside_key(&f, NET));
    n.outbound(frame, &f, NET, h, u(EXT), now)
}

fn inb(n: &mut Nat, frame: &mut [u8], now: u64) -> Result<u32, NatDrop> {
    let f = translate::parse(frame, 14, Way::In, None)?;
    let h = n.table.hash_out(&Nat::outside_key(&f));
    n.inbound(frame, &f, h, now)
}

#[test]
fn tcp_connection_is_translated_both_ways_with_exact_bytes() {
    let mut n = nat();
    let mut syn = tcp((IN1, 40000), (REMOTE, 80), TcpControl::Syn, false);
    let i = out(&mut n, &mut syn, 10).expect("translated");
    let s = *n.table.get(i);
    assert_eq!((s.ext_ip, s.state()), (u(EXT), State::SynSent));
    assert!((32768..=60999).contains(&s.ext_port));
    let p = s.ext_port;
    assert_eq!(syn, tcp((EXT, p), (REMOTE, 80), TcpControl::Syn, false));

    let mut synack = tcp((REMOTE, 80), (EXT, p), TcpControl::Syn, true);
    assert_eq!(inb(&mut n, &mut synack, 11), Ok(i));
    assert_eq!(
        synack,
        tcp((REMOTE, 80), (IN1, 40000), TcpControl::Syn, true)
    );
    assert_eq!(n.table.get(i).state(), State::Established);

    // The same inside endpoint keeps its mapping (endpoint-independent mapping) towards
    // another remote, and any remote may reach it (endpoint-independent filtering).
    let mut data = tcp((IN1, 40000), (REMOTE2, 443), TcpControl::Psh, true);
    assert_eq!(out(&mut n, &mut data, 12), Ok(i));
    assert_eq!(data, tcp((EXT, p), (REMOTE2, 443), TcpControl::Psh, true));
    let mut back = tcp((REMOTE2, 443), (EXT, p), TcpControl::None, true);
    assert_eq!(inb(&mut n, &mut back, 13), Ok(i));
    assert_eq!(
        back,
        tcp((REMOTE2, 443), (IN1, 40000), TcpControl::None, true)
    );
}

#[test]
fn two_inside_hosts_with_the_same_port_get_different_mappings() {
    let mut n = nat();
    let mut a = udp((IN1, 5000), (REMOTE, 53));
    let mut b = udp((IN2, 5000), (REMOTE, 53));
    let ia = out(&mut n, &mut a, 0).expect("a");
    let ib = out(&mut n, &mut b, 0).expect("b");
    let (pa, pb) = (n.table.get(ia).ext_port, n.table.get(ib).ext_port);
    assert_ne!(pa, pb);
    assert_eq!(a, udp((EXT, pa), (REMOTE, 53)));
    let mut reply = udp((REMOTE, 53), (EXT, pb));
    assert_eq!(inb(&mut n, &mut reply, 1), Ok(ib));
    assert_eq!(reply, udp((REMOTE, 53), (IN2, 5000)));
    assert_eq!(n.table.get(ib).state(), State::Replied);
}

#[test]
fn udp_without_checksum_keeps_none() {
    let mut n = nat();
    let mut f = udp((IN1, 7), (REMOTE, 9));
    f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let i = out(&mut n, &mut f, 0).expect("translated");
    let p = n.table.get(i).ext_port;
    let mut want = udp((EXT, p), (REMOTE, 9));
    want[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    assert_eq!(f, want);
}

#[test]
fn icmp_echo_is_translated_by_identifier() {
    let mut n = nat();
    let mut req = echo(IN1, REMOTE, 0x1234, true);
    let i = out(&mut n, &mut req, 0).expect("translated");
    let id = n.table.get(i).ext_port;
    assert_eq!(req, echo(EXT, REMOTE, id, true));
    let mut rep = echo(REMOTE, EXT, id, false);
    assert_eq!(inb(&mut n, &mut rep, 1), Ok(i));
    assert_eq!(rep, echo(REMOTE, IN1, 0x1234, false));
    // An echo request from outside opens nothing.
    let mut probe = echo(REMOTE, EXT, id, true);
    assert_eq!(
        translate::parse(&probe, 14, Way::In, None).err(),
        Some(NatDrop::IcmpType)
    );
    assert_eq!(inb(&mut n, &mut probe, 1), Err(NatDrop::IcmpType));
}

#[test]
fn partial_checksum_gets_only_the_address_change() {
    // A frame from a TAP with offloads: the TCP checksum field holds the folded pseudo-header
    // sum, and the checksum is completed after NAT.
    let partial_frame = |src: (Ipv4Address, u16), dst: (Ipv4Address, u16)| {
        let mut f = tcp(src, dst, TcpControl::Psh, true);
        let l4_len = f.len() - 34;
        let ph = dataplane::checksum::pseudo_header_v4(src.0, dst.0, 6, l4_len as u16);
        let seed = dataplane::checksum::fold(ph);
        f[34 + 16..34 + 18].copy_from_slice(&seed.to_be_bytes());
        f
    };
    let mut n = nat();
    let mut syn = tcp((IN1, 40000), (REMOTE, 80), TcpControl::Syn, false);
    let i = out(&mut n, &mut syn, 0).expect("session");
    let p = n.table.get(i).ext_port;
    let mut f = partial_frame((IN1, 40000), (REMOTE, 80));
    let pf = translate::parse(&f, 14, Way::Out, Some((34, 16))).expect("parsed");
    assert!(pf.partial);
    let h = n.table.hash_in(&Nat::inside_key(&pf, NET));
    assert_eq!(n.outbound(&mut f, &pf, NET, h, u(EXT), 1), Ok(i));
    assert_eq!(f, partial_frame((EXT, p), (REMOTE, 80)));
    dataplane::offload::complete_checksum(&mut f, 34, 16).expect("completed");
    assert_eq!(f, tcp((EXT, p), (REMOTE, 80), TcpControl::Psh, true));
    // A checksum offset that is not the TCP checksum field is refused by name.
    assert_eq!(
        translate::parse(&f, 14, Way::Out, Some((34, 6))).err(),
        Some(NatDrop::BadOffload)
    );
}

#[test]
fn icmp_error_about_a_natted_flow_is_translated_with_its_embedded_header() {
    let mut n = nat();
    let orig_l4 = udp_l4((IN1, 5353), (REMOTE, 9999), b"datagram");
    let mut f = udp((IN1, 5353), (REMOTE, 9999));
    let i = out(&mut n, &mut f, 0).expect("translated");
    let p = n.table.get(i).ext_port;
    let sent_l4 = udp_l4((EXT, p), (REMOTE, 9999), b"datagram");
    let header = |src| Ipv4Repr {
        src_addr: src,
        dst_addr: REMOTE,
        next_header: IpProtocol::Udp,
        payload_len: orig_l4.len(),
        hop_limit: 64,
    };
    let err = |src, l4: &[u8], outer_dst| {
        let r = Icmpv4Repr::DstUnreachable {
            reason: Icmpv4DstUnreachable::PortUnreachable,
            header: header(src),
            data: &l4[..8],
        };
        eth(&ip(REMOTE, outer_dst, IpProtocol::Icmp, &icmp_l4(&r), 64))
    };
    // The remote says "port unreachable" about what it got: the translated datagram.
    let mut e = err(EXT, &sent_l4, EXT);
    assert_eq!(inb(&mut n, &mut e, 1), Ok(i));
    assert_eq!(e, err(IN1, &orig_l4, IN1));
    // An error about an unknown flow is dropped by name.
    let mut e = err(EXT, &udp_l4((EXT, 1), (REMOTE, 9999), b"datagram"), EXT);
    assert_eq!(inb(&mut n, &mut e, 1), Err(NatDrop::NoSession));
}

#[test]
fn icmp_error_going_out_about_an_inbound_flow_is_translated() {
    let mut n = nat();
    let mut f = udp((IN1, 6000), (REMOTE, 53));
    let i = out(&mut n, &mut f, 0).expect("translated");
    let p = n.table.get(i).ext_port;
    // The reply comes in, and the container answers it with "port unreachable".
    let reply_l4 = |dst| udp_l4((REMOTE, 53), dst, b"datagram");
    let err = |src, embedded_dst: (Ipv4Address, u16)| {
        let l4 = reply_l4(embedded_dst);
        let r = Icmpv4Repr::DstUnreachable {
            reason: Icmpv4DstUnreachable::PortUnreachable,
            header: Ipv4Repr {
                src_addr: REMOTE,
                dst_addr: embedded_dst.0,
                next_header: IpProtocol::Udp,
                payload_len: l4.len(),
                hop_limit: 63,
            },
            data: &l4[..8],
        };
        eth(&ip(src, REMOTE, IpProtocol::Icmp, &icmp_l4(&r), 64))
    };
    let mut e = err(IN1, (IN1, 6000));
    assert_eq!(out(&mut n, &mut e, 1), Ok(i));
    assert_eq!(e, err(EXT, (EXT, p)));
}

#[test]
fn new_tcp_needs_a_syn_and_fragments_are_refused() {
    let mut n = nat();
    let mut f = tcp((IN1, 1), (REMOTE, 80), TcpControl::None, true);
    assert_eq!(out(&mut n, &mut f, 0), Err(NatDrop::TcpNotSyn));
    let mut f = udp((IN1, 1), (REMOTE, 80));
    f[14 + 6] = 0x20; // more fragments
    assert_eq!(
        translate::parse(&f, 14, Way::Out, None).err(),
        Some(NatDrop::Fragment)
    );
    let mut back = udp((REMOTE, 80), (EXT, 40000));
    assert_eq!(inb(&mut n, &mut back, 0), Err(NatDrop::NoSession));
    assert!(n.table.is_empty());
}

#[test]
fn ports_come_from_the_range_and_this_workers_share() {
    let mut n = nat();
    n.cfg.port_lo = 2000;
    n.cfg.port_hi = 2009;
    n.worker = 1;
    n.workers = 2;
    let mut seen = std::collections::BTreeSet::new();
    for k in 0..5u16 {
        let mut f = udp((IN1, 100 + k), (REMOTE, 53));
        let i = out(&mut n, &mut f, 0).expect("a port");
        let p = n.table.get(i).ext_port;
        assert!((2000..=2009).contains(&p) && (p - 2000) % 2 == 1, "{p}");
        assert_eq!(n.owner(p), 1);
        seen.insert(p);
    }
    assert_eq!(seen.len(), 5);
    let mut f = udp((IN1, 200), (REMOTE, 53));
    assert_eq!(out(&mut n, &mut f, 0), Err(NatDrop::PortsExhausted));
}

#[test]
fn the_reserved_udp_port_is_never_handed_out() {
    let mut n = nat();
    n.cfg.port_lo = 4788;
    n.cfg.port_hi = 4790;
    n.reserved_udp = Some(4789);
    let mut ports = Vec::new();
    for k in 0..2u16 {
        let mut f = udp((IN1, 100 + k), (REMOTE, 53));
        let i = out(&mut n, &mut f, 0).expect("a port");
        ports.push(n.table.get(i).ext_port);
    }
    ports.sort();
    assert_eq!(ports, [4788, 4790]);
    let mut f = udp((IN1, 300), (REMOTE, 53));
    assert_eq!(out(&mut n, &mut f, 0), Err(NatDrop::PortsExhausted));
    // Other protocols may use it.
    let mut f = echo(IN1, REMOTE, 9, true);
    assert!(out(&mut n, &mut f, 0).is_ok());
}

#[test]
fn parse_never_panics_on_truncations() {
    let frames = [
        tcp((IN1, 1), (REMOTE, 2), TcpControl::Syn, false),
        udp((IN1, 1), (REMOTE, 2)),
        echo(IN1, REMOTE, 5, true),
    ];
    let mut n = nat();
    for f in &frames {
        for len in 0..f.len() {
            let mut cut = f[..len].to_vec();
            let _ = out(&mut n, &mut cut, 0);
            let _ = inb(&mut n, &mut cut, 0);
        }
    }
    assert_eq!(proto::TCP, 6);
}

#[test]
fn mutated_frames_never_panic_and_keep_a_valid_header_checksum_valid() {
    // A deterministic stand-in for the fuzz target (fuzz/fuzz_targets/nat.rs) that runs in CI.
    let seeds = [
        tcp((IN1, 1), (REMOTE, 2), TcpControl::Syn, false),
        tcp((REMOTE, 2), (EXT, 40000), TcpControl::Syn, true),
        udp((IN1, 1), (REMOTE, 2)),
        echo(IN1, REMOTE, 5, true),
        echo(REMOTE, EXT, 5, false),
    ];
    let header_ok = |f: &[u8]| -> Option<bool> {
        let ihl = usize::from(f.get(14)? & 0x0f) * 4;
        let h = f.get(14..14 + ihl)?;
        Some(dataplane::checksum::fold(dataplane::checksum::sum16(h, 0)) == 0xffff)
    };
    let mut n = Nat::new(64, 3);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000u64 {
        let mut f = seeds[(rnd() % seeds.len() as u64) as usize].clone();
        for _ in 0..(rnd() % 4) {
            let at = (rnd() % f.len() as u64) as usize;
            f[at] = rnd() as u8;
        }
        if rnd() % 8 == 0 {
            let len = (rnd() % f.len() as u64) as usize;
            f.truncate(len);
        }
        let before = header_ok(&f);
        let r = if round % 2 == 0 {
            out(&mut n, &mut f, round / 100)
        } else {
            inb(&mut n, &mut f, round / 100)
        };
        if r.is_ok() && before == Some(true) {
            assert_eq!(header_ok(&f), Some(true), "round {round}");
        }
    }
}
