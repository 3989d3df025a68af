//! Scenario tests of the gateway over in-memory ports, two workers driven step by step: the
//! exact frames a container's packet becomes on the uplink and its answer becomes back in the
//! network, and return traffic that arrives on the worker that does not own the session,
//! handed to the owner through NAT's hand-off ring.
//!
//! Topology (the same on both workers, as queues of the same ports): port 0 is the uplink
//! (192.168.50.1/24, next hop 192.168.50.254), port 1 an access port of network 1, whose
//! gateway is 10.1.0.1/24.

use dataplane::pool::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPeer};
use dataplane::port::{PortId, PortIo};
use dataplane::worker::{Command, Worker};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use std::sync::Arc;
use vswitch::config::{GatewayConf, NetConf, PortConf, Snapshot, UplinkConf};
use vswitch::pipeline::Switch;

const UPLINK: PortId = 0;
const ACCESS: PortId = 1;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const OUR_IP: Ipv4Address = Ipv4Address::new(192, 168, 50, 1);
const HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const HOP_IP: Ipv4Address = Ipv4Address::new(192, 168, 50, 254);
const C_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
const C_IP: Ipv4Address = Ipv4Address::new(10, 1, 0, 2);
const GW_IP: Ipv4Address = Ipv4Address::new(10, 1, 0, 1);
const FAR_IP: Ipv4Address = Ipv4Address::new(198, 51, 100, 7);

fn gw_mac() -> [u8; 6] {
    GatewayConf::mac_of(1)
}

fn snapshot() -> Snapshot {
    let mut ports = vec![None; 2];
    ports[UPLINK as usize] = Some(PortConf::default());
    ports[ACCESS as usize] = Some(PortConf::access(Some(1), 100));
    Snapshot {
        gen: 1,
        ports,
        nets: vec![
            None,
            Some(NetConf {
                ports: vec![ACCESS],
                mac_limit: 100,
                aging_secs: 300,
                statics: Vec::new(),
                encrypted: false,
                esp_udp: false,
            }),
        ],
        uplink: Some(UplinkConf {
            port: UPLINK,
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix: 24,
            gateway: Some(HOP_IP),
            vxlan_port: 4789,
            mtu: 1500,
            tunnel_gso: false,
            uso: false,
        }),
        gateways: vec![
            None,
            Some(GatewayConf {
                ip: GW_IP,
                subnet: Ipv4Address::new(10, 1, 0, 0),
                prefix: 24,
                mac: gw_mac(),
                internal: false,
            }),
        ],
        workers: 2,
        ..Default::default()
    }
}

fn eth(dst: [u8; 6], src: [u8; 6], proto: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let r = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype: proto,
    };
    let mut f = vec![0u8; 14 + payload.len()];
    r.emit(&mut EthernetFrame::new_unchecked(&mut f));
    f[14..].copy_from_slice(payload);
    f
}

fn udp(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Address, u16),
    dst: (Ipv4Address, u16),
    ttl: u8,
) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let data = b"through the gateway";
    let ip = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: 8 + data.len(),
        hop_limit: ttl,
    };
    let mut b = vec![0u8; 20 + 8 + data.len()];
    let mut p = Ipv4Packet::new_unchecked(&mut b);
    ip.emit(&mut p, &caps);
    UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    }
    .emit(
        &mut UdpPacket::new_unchecked(p.payload_mut()),
        &IpAddress::Ipv4(src.0),
        &IpAddress::Ipv4(dst.0),
        data.len(),
        |d| d.copy_from_slice(data),
        &caps,
    );
    eth(macs.0, macs.1, EthernetProtocol::Ipv4, &b)
}

fn arp_reply() -> Vec<u8> {
    let r = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(HOP_MAC),
        source_protocol_addr: HOP_IP,
        target_hardware_addr: EthernetAddress(OUR_MAC),
        target_protocol_addr: OUR_IP,
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut ArpPacket::new_unchecked(&mut b));
    eth(OUR_MAC, HOP_MAC, EthernetProtocol::Arp, &b)
}

/// One worker with its queues of both ports.
struct One {
    worker: Worker<Switch>,
    tx: crossbeam::channel::Sender<(u64, Command<Switch>)>,
    seq: u64,
    uplink: MemPeer,
    access: MemPeer,
}

impl One {
    fn command(&mut self, c: Command<Switch>) {
        self.seq += 1;
        self.tx.send((self.seq, c)).unwrap();
        self.worker.poll_once(1);
    }

    fn counter(&self, name: &str) -> u64 {
        let i = vswitch::counters::layout().index_of(name).expect(name);
        self.worker.stats().pipeline.at(i).get()
    }
}

fn two_workers() -> (PoolCache, One, One) {
    let pool = Pool::new(1024).unwrap();
    let mut handoffs = vswitch::nat::handoff::build(&pool, 2, 64).into_iter();
    let mut ones = Vec::new();
    for id in 0..2u16 {
        let mut sw = Switch::new(pool.clone(), 256);
        sw.router.handoff = handoffs.next();
        let (worker, tx) = Worker::new(id, pool.clone(), sw, Arc::new(Snapshot::default()));
        let (u, uplink) = mem::pair(pool.clone(), 64);
        let (a, access) = mem::pair(pool.clone(), 64);
        let mut one = One {
            worker,
            tx,
            seq: 0,
            uplink,
            access,
        };
        one.command(Command::Attach {
            port: UPLINK,
            io: PortIo::Mem(u),
            rx: true,
        });
        one.command(Command::Attach {
            port: ACCESS,
            io: PortIo::Mem(a),
            rx: true,
        });
        one.command(Command::Config(Arc::new(snapshot())));
        ones.push(one);
    }
    let w1 = ones.pop().unwrap();
    let w0 = ones.pop().unwrap();
    (PoolCache::new(pool), w0, w1)
}

#[test]
fn return_traffic_on_the_other_worker_is_handed_to_the_sessions_owner() {
    let (mut cache, mut w0, mut w1) = two_workers();
    // The container sends through its gateway on worker 0's queue; the next hop resolves.
    let out = udp((gw_mac(), C_MAC), (C_IP, 5353), (FAR_IP, 53), 64);
    assert!(w0.access.send(&mut cache, &out));
    w0.worker.poll_once(1);
    let arp = w0
        .uplink
        .recv(&mut cache)
        .expect("an ARP request for the next hop");
    assert_eq!(&arp[12..14], &[0x08, 0x06]);
    assert!(w0.uplink.send(&mut cache, &arp_reply()));
    w0.worker.poll_once(1);
    let sent = w0.uplink.recv(&mut cache).expect("the translated datagram");
    let port = u16::from_be_bytes([sent[34], sent[35]]);
    assert_eq!(
        sent,
        udp((HOP_MAC, OUR_MAC), (OUR_IP, port), (FAR_IP, 53), 63),
        "source translated, TTL decremented, to the next hop's MAC"
    );
    // Worker 0 of 2 hands out the even offsets of the range.
    assert_eq!((port - vswitch::nat::DEFAULT_PORTS.0) % 2, 0);

    // The answer arrives on worker 1's queue: handed over, translated back on worker 0.
    let back = udp((OUR_MAC, HOP_MAC), (FAR_IP, 53), (OUR_IP, port), 60);
    assert!(w1.uplink.send(&mut cache, &back));
    w1.worker.poll_once(1);
    assert_eq!(w1.counter("nat_handed_off"), 1);
    assert!(w1.access.recv(&mut cache).is_none());
    w0.worker.poll_once(1);
    let got = w0
        .access
        .recv(&mut cache)
        .expect("the answer, back in the network");
    assert_eq!(got, udp((C_MAC, gw_mac()), (FAR_IP, 53), (C_IP, 5353), 59));
    assert_eq!(w0.counter("routed_in"), 1);
    assert_eq!(
        w1.counter("nat_no_session") + w0.counter("nat_no_session"),
        0
    );
}

#[test]
fn return_traffic_without_a_session_is_dropped_by_name_on_either_worker() {
    let (mut cache, mut w0, mut w1) = two_workers();
    let lo = vswitch::nat::DEFAULT_PORTS.0;
    // Worker 1 owns the odd offsets of the range: it refuses lo + 1 itself, and hands lo + 2
    // to worker 0, which refuses it there.
    for port in [lo + 1, lo + 2] {
        let back = udp((OUR_MAC, HOP_MAC), (FAR_IP, 53), (OUR_IP, port), 60);
        assert!(w1.uplink.send(&mut cache, &back));
    }
    w1.worker.poll_once(1);
    w0.worker.poll_once(1);
    assert_eq!(w1.counter("nat_no_session"), 1);
    assert_eq!(w1.counter("nat_handed_off"), 1);
    assert_eq!(w0.counter("nat_no_session"), 1);
    // A martian: the uplink address as source.
    let spoof = udp((OUR_MAC, HOP_MAC), (OUR_IP, 53), (OUR_IP, lo), 60);
    assert!(w0.uplink.send(&mut cache, &spoof));
    w0.worker.poll_once(1);
    assert_eq!(w0.counter("martian_source"), 1);
}

/// An IPv4 packet from `src` to `dst` with the given header fields and `payload` (checksum
/// right unless the fields make no header), in a frame to the gateway's MAC.
#[allow(clippy::too_many_arguments)]
fn raw_ip(
    src: Ipv4Address,
    dst: Ipv4Address,
    proto: u8,
    ttl: u8,
    frag: u16,
    ihl: u8,
    total: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let mut ip = vec![0u8; 20 + payload.len()];
    ip[0] = 0x40 | ihl;
    let tl = total.unwrap_or((20 + payload.len()) as u16);
    ip[2..4].copy_from_slice(&tl.to_be_bytes());
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    ip[8] = ttl;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = !dataplane::checksum::fold(dataplane::checksum::sum16(&ip[..20], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..].copy_from_slice(payload);
    eth(gw_mac(), C_MAC, EthernetProtocol::Ipv4, &ip)
}

/// The gateway's bad-input matrix (issue 15): each row is a frame from a container to its
/// gateway, or from outside to the uplink address, with the named drop it must land in (or the
/// ICMP error it must draw back to the sender), while a legitimate UDP flow through NAT is
/// translated before and after every row, and its answers come back.
#[test]
fn gateway_bad_input_matrix_each_row_named_and_the_legitimate_flow_untouched() {
    let (mut cache, mut w0, _w1) = two_workers();
    // The legitimate flow: the next hop resolves once.
    let good_out = udp((gw_mac(), C_MAC), (C_IP, 5353), (FAR_IP, 53), 64);
    assert!(w0.access.send(&mut cache, &good_out));
    w0.worker.poll_once(1);
    w0.uplink.recv(&mut cache).expect("ARP for the next hop");
    assert!(w0.uplink.send(&mut cache, &arp_reply()));
    w0.worker.poll_once(1);
    let first = w0.uplink.recv(&mut cache).expect("the first datagram");
    let port = u16::from_be_bytes([first[34], first[35]]);
    let good = |w: &mut One, cache: &mut PoolCache, row: &str| {
        assert!(w.access.send(cache, &good_out));
        w.worker.poll_once(1);
        let sent = w.uplink.recv(cache);
        assert_eq!(
            sent,
            Some(udp((HOP_MAC, OUR_MAC), (OUR_IP, port), (FAR_IP, 53), 63)),
            "legitimate flow out around {row}"
        );
        let back = udp((OUR_MAC, HOP_MAC), (FAR_IP, 53), (OUR_IP, port), 60);
        assert!(w.uplink.send(cache, &back));
        w.worker.poll_once(1);
        assert_eq!(
            w.access.recv(cache),
            Some(udp((C_MAC, gw_mac()), (FAR_IP, 53), (C_IP, 5353), 59)),
            "legitimate answer in around {row}"
        );
        assert!(w.access.recv(cache).is_none() && w.uplink.recv(cache).is_none());
    };
    let udp8 = [0x13, 0x88, 0, 53, 0, 8, 0, 0];
    let (df, mf) = (0x4000u16, 0x2000u16);
    let far = |proto: u8, ttl: u8, frag: u16, payload: &[u8]| {
        raw_ip(C_IP, FAR_IP, proto, ttl, frag, 5, None, payload)
    };
    let mut big = udp8.to_vec();
    big.resize(1480 + 8, 0);
    big[4..6].copy_from_slice(&((1488u16).to_be_bytes()));
    let mut dns_bad = vec![0x13, 0x88, 0, 53, 0, 12, 0, 0];
    dns_bad.extend_from_slice(&[1, 2, 3, 4]);
    let ack_only = [
        0x13, 0x88, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let ipv6 = eth(gw_mac(), C_MAC, EthernetProtocol::Ipv6, &[0x60; 48]);
    let from_outside = |src: Ipv4Address| udp((OUR_MAC, HOP_MAC), (src, 53), (OUR_IP, port), 60);
    // (row, frame, on the uplink?, counter that must rise; an ICMP type back to the sender)
    type Row = (&'static str, Vec<u8>, bool, &'static str, Option<u8>);
    let rows: Vec<Row> = vec![
        (
            "IHL < 5",
            raw_ip(C_IP, FAR_IP, 17, 64, 0, 4, None, &udp8),
            false,
            "route_bad_ip",
            None,
        ),
        (
            "total length beyond the frame",
            raw_ip(C_IP, FAR_IP, 17, 64, 0, 5, Some(1400), &udp8),
            false,
            "route_bad_ip",
            None,
        ),
        (
            "protocol 0 (CVE-2023-1668)",
            far(0, 64, 0, &udp8),
            false,
            "nat_unsupported_protocol",
            None,
        ),
        (
            "TTL 1",
            far(17, 1, 0, &udp8),
            false,
            "icmp_time_exceeded_sent",
            Some(11),
        ),
        (
            "TTL 0",
            far(17, 0, 0, &udp8),
            false,
            "icmp_time_exceeded_sent",
            Some(11),
        ),
        (
            "first fragment",
            far(17, 64, mf, &udp8),
            false,
            "nat_fragment",
            None,
        ),
        (
            "middle fragment",
            far(17, 64, mf | 100, &udp8),
            false,
            "nat_fragment",
            None,
        ),
        (
            "last fragment, never completed",
            far(17, 64, 200, &udp8),
            false,
            "nat_fragment",
            None,
        ),
        (
            "overlapping fragment",
            far(17, 64, mf | 1, &udp8),
            false,
            "nat_fragment",
            None,
        ),
        (
            "1 508 bytes with DF over MTU 1 500",
            far(17, 64, df, &big),
            false,
            "icmp_frag_needed_sent",
            Some(3),
        ),
        (
            "1 508 bytes without DF",
            far(17, 64, 0, &big),
            false,
            "route_too_big",
            None,
        ),
        (
            "source outside the subnet",
            raw_ip(
                Ipv4Address::new(10, 9, 9, 9),
                FAR_IP,
                17,
                64,
                0,
                5,
                None,
                &udp8,
            ),
            false,
            "martian_source",
            None,
        ),
        (
            "to the broadcast address",
            raw_ip(
                C_IP,
                Ipv4Address::new(255, 255, 255, 255),
                17,
                64,
                0,
                5,
                None,
                &udp8,
            ),
            false,
            "route_not_unicast",
            None,
        ),
        (
            "to its own subnet through the gateway",
            raw_ip(
                C_IP,
                Ipv4Address::new(10, 1, 0, 9),
                17,
                64,
                0,
                5,
                None,
                &udp8,
            ),
            false,
            "route_same_network",
            None,
        ),
        (
            "UDP to the gateway, not DNS",
            raw_ip(
                C_IP,
                GW_IP,
                17,
                64,
                0,
                5,
                None,
                &[0x13, 0x88, 0x1f, 0x90, 0, 8, 0, 0],
            ),
            false,
            "gateway_unsupported",
            None,
        ),
        (
            "DNS to the gateway, not a DNS message",
            raw_ip(C_IP, GW_IP, 17, 64, 0, 5, None, &dns_bad),
            false,
            "dns_malformed",
            None,
        ),
        (
            "TCP without a SYN",
            far(6, 64, 0, &ack_only),
            false,
            "nat_tcp_not_syn",
            None,
        ),
        (
            "IPv6 to the gateway's MAC",
            ipv6,
            false,
            "nat_not_ipv4",
            None,
        ),
        (
            "from outside: 127.0.0.1",
            from_outside(Ipv4Address::new(127, 0, 0, 1)),
            true,
            "martian_source",
            None,
        ),
        (
            "from outside: a network's subnet",
            from_outside(C_IP),
            true,
            "martian_source",
            None,
        ),
        (
            "from outside: a port with no session",
            udp((OUR_MAC, HOP_MAC), (FAR_IP, 53), (OUR_IP, port + 2), 60),
            true,
            "nat_no_session",
            None,
        ),
    ];
    for (row, frame, on_uplink, counter, icmp) in &rows {
        good(&mut w0, &mut cache, row);
        let before = w0.counter(counter);
        let sent = if *on_uplink {
            w0.uplink.send(&mut cache, frame)
        } else {
            w0.access.send(&mut cache, frame)
        };
        assert!(sent, "{row}: could not send");
        w0.worker.poll_once(1);
        assert_eq!(
            w0.counter(counter),
            before + 1,
            "{row}: counted as {counter}"
        );
        assert!(
            w0.uplink.recv(&mut cache).is_none(),
            "{row}: nothing leaves on the uplink"
        );
        let back = w0.access.recv(&mut cache);
        match icmp {
            Some(t) => {
                let b = back.unwrap_or_else(|| panic!("{row}: an ICMP error back"));
                assert_eq!(
                    (b[23], b[34]),
                    (1, *t),
                    "{row}: ICMP type {t} to the sender"
                );
                assert_eq!(&b[0..6], &C_MAC);
            }
            None => assert!(back.is_none(), "{row}: nothing back in the network"),
        }
        good(&mut w0, &mut cache, row);
    }
}
