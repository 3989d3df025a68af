//! Feeds arbitrary bytes to every checked constructor and `Repr::parse` in `dataplane::wire`
//! (our VLAN, VXLAN and ESP views and the smoltcp views we re-export). Nothing may panic; every
//! successful parse is emitted into a fresh buffer and parsed again, and the two `Repr`s (and,
//! where the format has no slack, the bytes) must be identical.

use dataplane::wire::{
    esp, ethernet, vlan, vxlan, ArpPacket, ArpRepr, ChecksumCapabilities, EthernetAddress,
    EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address, Ipv4Packet,
    Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr, ETHERNET_HEADER_LEN,
    UDP_HEADER_LEN,
};

/// One input: must not panic; the checks above hold.
pub fn run(data: &[u8]) {
    vlan_view(data);
    vxlan_view(data);
    esp_view(data);
    esp_trailer(data);
    ethernet_helpers(data);
    smoltcp_l2(data);
    smoltcp_l3(data);
    let (a, b) = (
        IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)),
        IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)),
    );
    smoltcp_l4(data, a, b);
    smoltcp_icmpv4(data);
}

fn vlan_view(data: &[u8]) {
    let unchecked = vlan::Packet::new_unchecked(data);
    let checked = vlan::Packet::new_checked(data);
    assert_eq!(checked.is_ok(), unchecked.check_len().is_ok());
    let Ok(packet) = checked else {
        assert!(vlan::Repr::parse(&unchecked).is_err());
        return;
    };
    let _ = (packet.tci(), packet.pcp(), packet.dei(), packet.vid());
    let _ = (packet.ethertype(), packet.payload());
    let Ok(repr) = vlan::Repr::parse(&packet) else {
        assert!(packet.vid() > vlan::VID_MAX);
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut vlan::Packet::new_unchecked(&mut out[..]));
    assert_eq!(out[..], data[..vlan::HEADER_LEN], "VLAN emit is byte-exact");
    let again = vlan::Repr::parse(&vlan::Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(repr, again);
}

fn vxlan_view(data: &[u8]) {
    let unchecked = vxlan::Packet::new_unchecked(data);
    let checked = vxlan::Packet::new_checked(data);
    assert_eq!(checked.is_ok(), unchecked.check_len().is_ok());
    let Ok(packet) = checked else {
        assert!(vxlan::Repr::parse(&unchecked).is_err());
        return;
    };
    let _ = (packet.flags(), packet.reserved_is_zero(), packet.payload());
    let repr = match vxlan::Repr::parse(&packet) {
        Ok(repr) => repr,
        Err(e) => {
            assert_eq!(e, dataplane::wire::Error::BadFlags);
            assert!(!packet.vni_valid());
            return;
        }
    };
    assert!(repr.vni <= vxlan::VNI_MAX);
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut vxlan::Packet::new_unchecked(&mut out[..]));
    assert_eq!(out[..], repr.to_bytes()[..]);
    if packet.reserved_is_zero() {
        assert_eq!(
            out[..],
            data[..vxlan::HEADER_LEN],
            "VXLAN emit is byte-exact"
        );
    }
    let again = vxlan::Repr::parse(&vxlan::Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(repr, again);
}

fn esp_view(data: &[u8]) {
    let unchecked = esp::Packet::new_unchecked(data);
    let checked = esp::Packet::new_checked(data);
    assert_eq!(checked.is_ok(), unchecked.check_len().is_ok());
    let Ok(packet) = checked else {
        assert!(esp::Repr::parse(&unchecked).is_err());
        return;
    };
    let _ = (packet.spi(), packet.sequence_number(), packet.payload());
    let Ok(repr) = esp::Repr::parse(&packet) else {
        assert_eq!(packet.spi(), 0);
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut esp::Packet::new_unchecked(&mut out[..]));
    assert_eq!(out[..], data[..esp::HEADER_LEN], "ESP emit is byte-exact");
    let again = esp::Repr::parse(&esp::Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(repr, again);
}

fn esp_trailer(data: &[u8]) {
    let Ok((trailer, data_len)) = esp::Trailer::parse(data) else {
        return;
    };
    assert_eq!(data_len + trailer.buffer_len(), data.len());
    let mut out = data[..data_len].to_vec();
    out.resize(data.len(), 0);
    trailer.emit(&mut out[data_len..]).unwrap();
    assert_eq!(out, data, "ESP trailer emit is byte-exact");
    assert_eq!(esp::Trailer::parse(&out), Ok((trailer, data_len)));
}

fn ethernet_helpers(data: &[u8]) {
    let _ = (ethernet::src_mac(data), ethernet::ethertype(data));
    if let Some(mac) = ethernet::dst_mac(data) {
        assert_eq!(ethernet::u64_to_mac(ethernet::mac_to_u64(&mac)), mac);
        let smol = EthernetAddress(mac);
        assert_eq!(ethernet::is_multicast(&mac), smol.is_multicast());
        assert_eq!(ethernet::is_broadcast(&mac), smol.is_broadcast());
        assert_eq!(ethernet::is_unicast(&mac), !smol.is_multicast());
        assert_eq!(ethernet::is_local(&mac), smol.is_local());
    }
}

fn smoltcp_l2(data: &[u8]) {
    if let Ok(frame) = EthernetFrame::new_checked(data) {
        let repr = EthernetRepr::parse(&frame).unwrap();
        let mut out = [0u8; ETHERNET_HEADER_LEN];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(out[..], data[..ETHERNET_HEADER_LEN]);
        assert_eq!(
            ethernet::ethertype(data),
            Some(u16::from(frame.ethertype()))
        );
        if vlan::is_tpid(u16::from(frame.ethertype())) {
            vlan_view(frame.payload());
        }
    }

    if let Ok(packet) = ArpPacket::new_checked(data) {
        if let Ok(repr) = ArpRepr::parse(&packet) {
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
            assert_eq!(out[..], data[..repr.buffer_len()]);
            let again = ArpRepr::parse(&ArpPacket::new_checked(&out[..]).unwrap()).unwrap();
            assert_eq!(repr, again);
        }
    }
}

fn smoltcp_l3(data: &[u8]) {
    let caps = ChecksumCapabilities::default();

    if let Ok(packet) = Ipv4Packet::new_checked(data) {
        if let Ok(repr) = Ipv4Repr::parse(&packet, &caps) {
            let payload = packet.payload();
            assert_eq!(payload.len(), repr.payload_len);
            let mut out = vec![0u8; repr.buffer_len() + repr.payload_len];
            let mut emitted = Ipv4Packet::new_unchecked(&mut out[..]);
            repr.emit(&mut emitted, &caps);
            emitted.payload_mut().copy_from_slice(payload);
            let reparsed = Ipv4Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Ipv4Repr::parse(&reparsed, &caps), Ok(repr));
            assert_eq!(reparsed.payload(), payload);
            smoltcp_l4(
                payload,
                IpAddress::Ipv4(repr.src_addr),
                IpAddress::Ipv4(repr.dst_addr),
            );
        }
    }

    if let Ok(packet) = Ipv6Packet::new_checked(data) {
        if let Ok(repr) = Ipv6Repr::parse(&packet) {
            let payload = packet.payload();
            assert_eq!(payload.len(), repr.payload_len);
            let mut out = vec![0u8; repr.buffer_len() + repr.payload_len];
            let mut emitted = Ipv6Packet::new_unchecked(&mut out[..]);
            repr.emit(&mut emitted);
            emitted.payload_mut().copy_from_slice(payload);
            let reparsed = Ipv6Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Ipv6Repr::parse(&reparsed), Ok(repr));
            assert_eq!(reparsed.payload(), payload);
        }
    }
}

fn smoltcp_l4(data: &[u8], src: IpAddress, dst: IpAddress) {
    let caps = ChecksumCapabilities::default();

    if let Ok(packet) = UdpPacket::new_checked(data) {
        if let Ok(repr) = UdpRepr::parse(&packet, &src, &dst, &caps) {
            let payload = packet.payload();
            let mut out = vec![0u8; UDP_HEADER_LEN + payload.len()];
            repr.emit(
                &mut UdpPacket::new_unchecked(&mut out[..]),
                &src,
                &dst,
                payload.len(),
                |p| p.copy_from_slice(payload),
                &caps,
            );
            let reparsed = UdpPacket::new_checked(&out[..]).unwrap();
            assert_eq!(UdpRepr::parse(&reparsed, &src, &dst, &caps), Ok(repr));
            assert_eq!(reparsed.payload(), payload);
        }
    }

    if let Ok(packet) = TcpPacket::new_checked(data) {
        if let Ok(repr) = TcpRepr::parse(&packet, &src, &dst, &caps) {
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(
                &mut TcpPacket::new_unchecked(&mut out[..]),
                &src,
                &dst,
                &caps,
            );
            let reparsed = TcpPacket::new_checked(&out[..]).unwrap();
            let again = TcpRepr::parse(&reparsed, &src, &dst, &caps).unwrap();
            // smoltcp emits SACK ranges only on an ACK without SACK-permitted.
            let mut expect = repr;
            if expect.sack_permitted || expect.ack_number.is_none() {
                expect.sack_ranges = [None; 3];
            }
            assert_eq!(again, expect);
        }
    }
}

fn smoltcp_icmpv4(data: &[u8]) {
    let caps = ChecksumCapabilities::default();
    if let Ok(packet) = Icmpv4Packet::new_checked(data) {
        if let Ok(repr) = Icmpv4Repr::parse(&packet, &caps) {
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]), &caps);
            let reparsed = Icmpv4Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&reparsed, &caps), Ok(repr));
        }
    }
}
