//! The virtio-net offload logic and the partial-checksum completion of AF_XDP ports on veth, on
//! arbitrary input (what a container may hand over):
//! `[12-byte virtio-net header, max_frame (2 bytes), frame...]`. Nothing may panic; a plan that
//! is accepted must write every segment into exactly `seg_len` bytes, each segment no longer than
//! `max_frame`, and the segments' TCP payloads must add up to the plan's payload. The same
//! frame is also tried as a VXLAN tunnel super-frame (outer UDP at 34, inner IP at 64: every
//! planned segment written within `max_frame`) and by software GRO (a segment it accepts, TCP
//! over IPv4 or IPv6, is finished without a panic, its headers alone as the whole frame's), and as a UDP super-frame (every planned datagram written within
//! `max_frame`, their payloads adding up; a datagram the UDP merge accepts is finished).

use dataplane::gro;
use dataplane::offload::{
    complete_checksum, fix_partial_checksum, CsumCheck, TcpSegments, TunnelSegments, UdpSegments,
    VnetHdr, VIRTIO_NET_HDR_GSO_UDP_L4, VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4, VNET_HDR_LEN,
};

/// One input: must not panic; the checks above hold.
pub fn run(input: &[u8]) {
    let Some(hdr) = input.get(..VNET_HDR_LEN).and_then(VnetHdr::parse) else {
        return;
    };
    let [m0, m1, frame @ ..] = &input[VNET_HDR_LEN..] else {
        return;
    };
    let max_frame = usize::from(u16::from_le_bytes([*m0, *m1]));

    let mut copy = frame.to_vec();
    if complete_checksum(&mut copy, hdr.csum_start.into(), hdr.csum_offset.into()).is_err() {
        assert_eq!(
            copy, frame,
            "a refused checksum completion leaves the frame alone"
        );
    }

    // Partial-checksum completion changes at most the two bytes of a checksum field, and only
    // when it says it completed one.
    let mut fixed = frame.to_vec();
    let r = fix_partial_checksum(&mut fixed);
    let changed = fixed.iter().zip(frame).filter(|(a, b)| a != b).count();
    match r {
        CsumCheck::Completed => assert!(changed <= 2),
        _ => assert_eq!(changed, 0, "{r:?} leaves the frame alone"),
    }

    let tnl = VnetHdr {
        gso_type: hdr.gso_type | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
        outer_th: 34,
        inner_nh: 64,
        ..hdr
    };
    if let Ok(p) = TunnelSegments::plan(frame, &tnl, max_frame) {
        let mut out = vec![0u8; max_frame];
        for i in 0..p.count() {
            let n = p
                .write_segment(frame, i, &mut out)
                .expect("a planned tunnel segment can be written");
            assert!(n <= max_frame);
        }
    }
    if let Some(seg) = gro::segment(frame) {
        assert_eq!(seg.hdr_len + seg.payload, frame.len());
        let mut c = frame.to_vec();
        let whole = gro::finish(&mut c, &seg, seg.psh);
        assert!(whole.is_some());
        // Finishing only the headers (a gathered write) does what finishing the frame does.
        let mut head = frame[..seg.hdr_len].to_vec();
        assert_eq!(
            gro::finish_head(&mut head, frame.len(), &seg, seg.psh),
            whole
        );
        assert_eq!(head[..], c[..seg.hdr_len]);
    }

    let udp = VnetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
        ..hdr
    };
    if let Ok(p) = UdpSegments::plan(frame, &udp, max_frame) {
        let mut out = vec![0u8; max_frame];
        let mut payload = 0;
        for i in 0..p.count {
            let n = p
                .write_segment(frame, i, &mut out)
                .expect("a planned datagram can be written");
            assert!(n <= max_frame);
            payload += n - (p.l4_off + 8);
        }
        assert_eq!(payload, p.payload);
    }
    if let Some(seg) = gro::udp_segment(frame) {
        assert_eq!(seg.hdr_len + seg.payload, frame.len());
        let mut c = frame.to_vec();
        assert!(gro::finish(&mut c, &seg, false).is_some());
    }

    let Ok(plan) = TcpSegments::plan(frame, &hdr, max_frame) else {
        return;
    };
    assert!(plan.count >= 1);
    let mut out = vec![0u8; max_frame];
    let mut payload = 0;
    for i in 0..plan.count {
        let want = plan.seg_len(i);
        assert!(want <= max_frame && want >= plan.hdr_len);
        let n = plan
            .write_segment(frame, i, &mut out[..want])
            .expect("a planned segment can be written");
        assert_eq!(n, want);
        payload += n - plan.hdr_len;
    }
    assert_eq!(payload, plan.payload);
}
