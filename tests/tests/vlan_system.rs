//! VLAN trunks through the real daemon. This kernel cannot make 802.1Q devices, so the far end of
//! the trunk is a raw AF_PACKET socket in the trunk's namespace: the test writes tagged frames on
//! it and reads tagged frames back (the kernel moves a received tag into packet metadata, read
//! with PACKET_AUXDATA). Two VLANs on one trunk reach two networks and stay apart; tcpdump
//! decodes a capture of what came back with the tags intact.

use control::proto::{cmd, StatsInfo};
use serde_json::json;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{unique_name, DaemonProcess, Netns};

const X_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x01];
const X_IP: Ipv4Addr = Ipv4Addr::new(10, 40, 0, 99);
const C_IP: Ipv4Addr = Ipv4Addr::new(10, 40, 0, 1);

/// A raw packet socket on interface `ifname` inside namespace `ns`, with auxiliary data (the
/// VLAN tag the kernel took off) and a 200 ms receive timeout.
fn raw_socket(ns: &Path, ifname: &str) -> OwnedFd {
    let fd = tests::packet_socket(ns, ifname).expect("packet socket");
    let one: libc::c_int = 1;
    // SAFETY: setting integer socket options on our socket.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            std::ptr::addr_of!(one).cast(),
            4,
        );
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    fd
}

fn send(fd: &OwnedFd, frame: &[u8]) {
    // SAFETY: writing a valid buffer on a bound packet socket.
    let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    assert_eq!(
        n,
        frame.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
}

#[repr(C)]
struct AuxData {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    net: u16,
    vlan_tci: u16,
    vlan_tpid: u16,
}
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

/// Receives one frame, with its tag put back where the kernel took it from.
fn recv(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    let mut ctrl = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctrl);
    // SAFETY: receiving into the buffers described by `msg`.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    // SAFETY: walking the control messages the kernel wrote into `ctrl`, as CMSG_* define.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                let aux = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<AuxData>());
                if aux.status & TP_STATUS_VLAN_VALID != 0 && buf.len() >= 12 {
                    let tpid = if aux.vlan_tpid == 0 {
                        0x8100
                    } else {
                        aux.vlan_tpid
                    };
                    let mut tag = tpid.to_be_bytes().to_vec();
                    tag.extend_from_slice(&aux.vlan_tci.to_be_bytes());
                    buf.splice(12..12, tag);
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some(buf)
}

/// An ARP request from X for `target`, tagged `vid`.
fn arp_request(vid: u16, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&X_MAC);
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&X_MAC);
    f.extend_from_slice(&X_IP.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// Waits for a tagged ARP reply to X; returns (VID, sender MAC, the whole frame).
fn arp_reply(fd: &OwnedFd) -> Option<(u16, [u8; 6], Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let Some(f) = recv(fd) else { continue };
        if f.len() >= 46
            && f[12..14] == [0x81, 0x00]
            && f[16..18] == [0x08, 0x06]
            && f[24..26] == [0, 2]
        {
            let vid = u16::from_be_bytes([f[14], f[15]]) & 0x0fff;
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&f[26..32]);
            if f[0..6] == X_MAC {
                return Some((vid, mac, f));
            }
        }
    }
    None
}

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns.ip(&["-br", "link", "show", "dev", dev]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = text.split_whitespace().nth(2).unwrap();
    control::text::parse_mac(field).unwrap()
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes());
    hdr.extend_from_slice(&0u32.to_le_bytes());
    hdr.extend_from_slice(&65535u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    f.write_all(&hdr).unwrap();
    for fr in frames {
        let mut rec = Vec::new();
        for v in [1u32, 0, fr.len() as u32, fr.len() as u32] {
            rec.extend_from_slice(&v.to_le_bytes());
        }
        f.write_all(&rec).unwrap();
        f.write_all(fr).unwrap();
    }
}

#[test]
fn two_vlans_on_one_trunk_reach_two_networks_and_stay_apart() {
    if !can_run_system_tests("two_vlans_on_one_trunk_reach_two_networks_and_stay_apart") {
        return;
    }
    let tmp = TempDir::new("vlan");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    let mut c = d.client().unwrap();
    for n in ["lan10", "lan20"] {
        c.call(cmd::NETWORK_CREATE, json!({"name": n})).unwrap();
    }
    let trunk_ns = Netns::create(&unique_name("vstrk")).unwrap();
    let trunk = unique_name("trk");
    c.call(
        cmd::PORT_ADD,
        json!({"name": trunk, "type": "tap", "netns": trunk_ns.name()}),
    )
    .unwrap();
    for vid in [10, 20] {
        let sub = format!("{trunk}.{vid}");
        c.call(
            cmd::PORT_ADD,
            json!({"name": sub, "type": "vlan", "network": format!("lan{vid}")}),
        )
        .unwrap_or_else(|e| panic!("{sub}: {e}"));
    }
    // One container per VLAN, both with the same address: only the VLAN tells them apart.
    let mut containers = Vec::new();
    for vid in [10u16, 20] {
        let ns = Netns::create(&unique_name("vsacc")).unwrap();
        let port = unique_name("acc");
        c.call(cmd::PORT_ADD, json!({"name": port, "type": "tap", "network": format!("lan{vid}"), "netns": ns.name()}))
            .unwrap();
        ns.ip(&["addr", "add", &format!("{C_IP}/24"), "dev", &port])
            .unwrap();
        let mac = mac_of(&ns, &port);
        containers.push((vid, ns, port, mac));
    }

    let sock = raw_socket(&trunk_ns.path(), &trunk);
    let mut capture = Vec::new();
    for (vid, _, _, mac) in &containers {
        send(&sock, &arp_request(*vid, C_IP));
        let (got_vid, from, frame) = arp_reply(&sock)
            .unwrap_or_else(|| panic!("no ARP reply on VLAN {vid}; log:\n{}", d.log_tail()));
        assert_eq!(got_vid, *vid, "reply came back on the wrong VLAN");
        assert_eq!(
            &from, mac,
            "VLAN {vid} was answered by the other VLAN's container"
        );
        capture.push(frame);
    }
    // An unknown VLAN reaches nobody and is counted.
    send(&sock, &arp_request(30, C_IP));
    assert!(arp_reply(&sock).is_none(), "VLAN 30 got an answer");
    let stats: StatsInfo = serde_json::from_value(c.call(cmd::STATS, json!({})).unwrap()).unwrap();
    assert!(
        stats.drops.get("vlan_unknown_vid").copied().unwrap_or(0) >= 1,
        "{:?}",
        stats.drops
    );
    let sub10 = stats
        .ports
        .iter()
        .find(|p| p.name == format!("{trunk}.10"))
        .unwrap();
    assert!(
        sub10.counters.rx_packets >= 1 && sub10.counters.tx_packets >= 1,
        "{sub10:?}"
    );

    // An independent decoder sees the tags.
    let pcap = tmp.0.join("trunk.pcap");
    write_pcap(&pcap, &capture);
    match Command::new("tcpdump")
        .args(["-nn", "-e", "-r"])
        .arg(&pcap)
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("vlan 10") && text.contains("vlan 20"),
                "tcpdump printed: {text}"
            );
            assert!(
                text.contains("Reply 10.40.0.1 is-at"),
                "tcpdump printed: {text}"
            );
        }
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("tcpdump is not installed")
        }
        Err(_) => eprintln!("tcpdump not installed: skipping the decode check"),
    }

    // A trunk with subinterfaces cannot be removed before them.
    let e = c.call(cmd::PORT_RM, json!({"name": trunk})).unwrap_err();
    assert!(e.message.contains("subinterfaces"), "{e}");
}
