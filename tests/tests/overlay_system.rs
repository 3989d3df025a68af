//! Overlay networks through the real daemon: interop with the Linux kernel's own VXLAN device as
//! the remote VTEP, and two daemons, each in its own "host" namespace, joined by an underlay.

use control::proto::{cmd, StatsInfo};
use serde_json::json;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{tcp_transfer, unique_name, DaemonProcess, Netns, OverlayHosts};

fn call(d: &DaemonProcess, command: &str, args: serde_json::Value) -> serde_json::Value {
    d.client()
        .unwrap()
        .call(command, args.clone())
        .unwrap_or_else(|e| panic!("{command} {args}: {e}; daemon log:\n{}", d.log_tail()))
}

/// A container namespace on `network` of daemon `d`, with `ip`/24.
fn container(d: &DaemonProcess, network: &str, ip: Ipv4Addr) -> (Netns, String) {
    let ns = Netns::create(&unique_name("vsc")).unwrap();
    let port = unique_name("ovp");
    call(
        d,
        cmd::PORT_ADD,
        json!({"name": port, "type": "tap", "network": network, "netns": ns.name()}),
    );
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &port])
        .unwrap();
    (ns, port)
}

fn mtu_of(ns: &Netns, dev: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            return words.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        }
    }
    0
}

/// Whether port `port` of `d` says it takes UDP tunnel super-frames.
fn tunnel_gso(d: &DaemonProcess, port: &str) -> bool {
    let info = call(d, cmd::PORT_INSPECT, json!({"name": port}));
    info["state"]
        .as_str()
        .is_some_and(|s| s.contains("udp-tunnel-gso"))
}

/// The worker counters of `d` (one worker).
fn worker_counters(d: &DaemonProcess) -> std::collections::BTreeMap<String, u64> {
    let stats: StatsInfo = serde_json::from_value(call(d, cmd::STATS, json!({}))).unwrap();
    stats.workers[0].counters.clone()
}

/// With UDP tunnel GSO on the TAP uplink (the default, where the kernel has it: 6.17+), TCP
/// super-frames cross the uplink whole in both directions: ours encapsulated once, the
/// kernel VXLAN device's decapsulated whole.
#[test]
fn interoperates_with_the_kernels_vxlan_device() {
    if !can_run_system_tests("interoperates_with_the_kernels_vxlan_device") {
        return;
    }
    kernel_vtep(&[], "vxk");
}

/// The fallback: a TAP uplink without tunnel GSO (as on a kernel before 6.17): super-frames are
/// cut before encapsulation and arrive cut by the kernel; the transfers are the same.
#[test]
fn interoperates_with_the_kernels_vxlan_device_without_tunnel_gso() {
    if !can_run_system_tests("interoperates_with_the_kernels_vxlan_device_without_tunnel_gso") {
        return;
    }
    kernel_vtep(&["--tap-tunnel-gso", "off"], "vxn");
}

fn kernel_vtep(flags: &[&str], tag: &str) {
    let tmp = TempDir::new(tag);
    let d = DaemonProcess::start_with(&bin("vswitchd"), &tmp.0, None, flags).unwrap();
    // The remote host: its underlay address on the far side of our uplink TAP, and the kernel's
    // VXLAN device as its VTEP, with an overlay address of its own.
    let remote = Netns::create(&unique_name("vsrem")).unwrap();
    let uplink = unique_name("upl");
    call(
        &d,
        cmd::PORT_ADD,
        json!({"name": uplink, "type": "tap", "netns": remote.name()}),
    );
    remote
        .ip(&["addr", "add", "192.168.70.2/24", "dev", &uplink])
        .unwrap();
    remote
        .ip(&[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "100",
            "local",
            "192.168.70.2",
            "remote",
            "192.168.70.1",
            "dstport",
            "4789",
            "dev",
            &uplink,
        ])
        .unwrap();
    remote
        .ip(&["addr", "add", "10.70.0.2/24", "dev", "vx0"])
        .unwrap();
    remote.ip(&["link", "set", "vx0", "up"]).unwrap();

    call(
        &d,
        cmd::UPLINK_SET,
        json!({"port": uplink, "ip": "192.168.70.1/24"}),
    );
    call(&d, cmd::NETWORK_CREATE, json!({"name": "ov", "vni": 100}));
    call(
        &d,
        cmd::PEER_ADD,
        json!({"network": "ov", "vtep": "192.168.70.2"}),
    );
    let (c, port) = container(&d, "ov", Ipv4Addr::new(10, 70, 0, 1));
    assert_eq!(
        mtu_of(&c, &port),
        1450,
        "a port in an overlay network gets the overlay MTU"
    );
    let info = call(&d, cmd::NETWORK_INSPECT, json!({"name": "ov"}));
    assert_eq!(info["mtu"], 1450);

    // tcpdump on the underlay decodes what we send as VXLAN.
    let dump = Command::new("timeout")
        .args([
            "10",
            "ip",
            "netns",
            "exec",
            remote.name(),
            "tcpdump",
            "-l",
            "-nn",
            "-i",
            &uplink,
            "-c",
            "4",
        ])
        .args(["udp", "port", "4789"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    std::thread::sleep(Duration::from_millis(700));

    let peer = Ipv4Addr::new(10, 70, 0, 2);
    assert!(
        c.ping(peer, 3).unwrap(),
        "ping over VXLAN to the kernel's VTEP failed; log:\n{}\nstats: {}",
        std::fs::read_to_string(d.log()).unwrap_or_default(),
        call(&d, cmd::STATS, json!({}))
    );
    let to_remote = tcp_transfer(
        &remote.path(),
        peer,
        &c.path(),
        20 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| {
        panic!(
            "TCP to the kernel VTEP: {e}; stats: {}",
            call(&d, cmd::STATS, json!({}))
        )
    });
    let from_remote = tcp_transfer(
        &c.path(),
        Ipv4Addr::new(10, 70, 0, 1),
        &remote.path(),
        20 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("TCP from the kernel VTEP: {e}"));
    eprintln!(
        "VXLAN TCP: {:.0} Mbit/s out, {:.0} Mbit/s in",
        to_remote.mbps(),
        from_remote.mbps()
    );

    match dump {
        Ok(child) => {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("VXLAN, flags [I] (0x08), vni 100"),
                "tcpdump printed: {text}"
            );
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("tcpdump: {e}"),
        Err(e) => eprintln!("tcpdump not available ({e}); skipping the decode check"),
    }

    let w = &worker_counters(&d);
    let gso = tunnel_gso(&d, &uplink);
    assert_eq!(gso, flags.is_empty() && tunnel_gso(&d, &port), "{w:?}");
    let n = |k: &str| w.get(k).copied().unwrap_or(0);
    // 20 MB each way: at least 300 super-frames, or 14 000 segments.
    let least = if gso { 100 } else { 1000 };
    assert!(n("vxlan_encap") > least, "{w:?}");
    assert!(n("vxlan_decap") > least, "{w:?}");
    if gso {
        assert!(
            n("vxlan_encap_gso") > least,
            "super-frames encapsulated whole: {w:?}"
        );
        assert!(
            n("vxlan_decap_gso") > least,
            "super-frames decapsulated whole: {w:?}"
        );
    } else {
        assert_eq!(n("vxlan_encap_gso") + n("vxlan_decap_gso"), 0, "{w:?}");
    }
    assert_eq!(n("vxlan_bad_gso") + n("offload_failed"), 0, "{w:?}");
    assert!(
        w.get("arp_replied").copied().unwrap_or(0) >= 1,
        "the kernel asked for our VTEP address: {w:?}"
    );
    let fdb = call(&d, cmd::FDB_LS, json!({"network": "ov"}));
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["vtep"] == "192.168.70.2"),
        "the remote MAC is learned behind the VTEP: {fdb}"
    );
    let up = call(&d, cmd::UPLINK_SHOW, json!({}));
    assert!(
        up["neighbours"].to_string().contains("192.168.70.2"),
        "{up}"
    );
}

#[test]
fn two_switches_carry_an_overlay_between_hosts_and_keep_overlays_apart() {
    if !can_run_system_tests("two_switches_carry_an_overlay_between_hosts_and_keep_overlays_apart")
    {
        return;
    }
    two_switches(&[], "hosts");
}

/// As above, with the TAP uplinks opened without tunnel GSO (the fallback: cut, then
/// encapsulated; one switch's super-frames reach the other as MTU-sized packets).
#[test]
fn two_switches_carry_an_overlay_without_tunnel_gso() {
    if !can_run_system_tests("two_switches_carry_an_overlay_without_tunnel_gso") {
        return;
    }
    two_switches(&["--tap-tunnel-gso", "off"], "hostsn");
}

fn two_switches(flags: &[&str], tag: &str) {
    let tmp = TempDir::new(tag);
    let nets = [("ov1", 300, false), ("ov2", 400, false)];
    let bed = OverlayHosts::with_flags(&bin("vswitchd"), &tmp.0, &nets, flags).unwrap();
    let (a1, _) = bed
        .container(0, "ov1", Ipv4Addr::new(10, 80, 1, 1))
        .unwrap();
    let (b1, _) = bed
        .container(1, "ov1", Ipv4Addr::new(10, 80, 1, 2))
        .unwrap();
    // Same subnet on the second overlay: only the VNI keeps it apart.
    let (a2, _) = bed
        .container(0, "ov2", Ipv4Addr::new(10, 80, 1, 3))
        .unwrap();
    let (b2, _) = bed
        .container(1, "ov2", Ipv4Addr::new(10, 80, 1, 4))
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ok = false;
    while !ok && Instant::now() < deadline {
        ok = a1.ping(Ipv4Addr::new(10, 80, 1, 2), 1).unwrap();
    }
    assert!(
        ok,
        "no ping across the overlay; host 1 log:\n{}\nhost 2 log:\n{}",
        bed.daemons[0].log_tail(),
        bed.daemons[1].log_tail()
    );
    assert!(
        a2.ping(Ipv4Addr::new(10, 80, 1, 4), 2).unwrap(),
        "second overlay failed"
    );
    assert!(
        !a1.ping(Ipv4Addr::new(10, 80, 1, 4), 2).unwrap(),
        "ov1 reached ov2"
    );
    assert!(
        !b2.ping(Ipv4Addr::new(10, 80, 1, 2), 2).unwrap(),
        "ov2 reached ov1"
    );
    let t = tcp_transfer(
        &b1.path(),
        Ipv4Addr::new(10, 80, 1, 2),
        &a1.path(),
        20 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("TCP across the overlay: {e}"));
    let back = tcp_transfer(
        &a1.path(),
        Ipv4Addr::new(10, 80, 1, 1),
        &b1.path(),
        20 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("TCP back across the overlay: {e}"));
    eprintln!(
        "host to host over VXLAN: {:.0} / {:.0} Mbit/s",
        t.mbps(),
        back.mbps()
    );
    for (i, d) in bed.daemons.iter().enumerate() {
        let w = &worker_counters(d);
        let n = |k: &str| w.get(k).copied().unwrap_or(0);
        let gso = tunnel_gso(d, &format!("uplink{}", i + 1));
        let gso_off = flags
            .windows(2)
            .any(|w| w == ["--tap-tunnel-gso", "off"] || w == ["--tap-offload", "off"]);
        assert!(!gso || !gso_off, "--tap-tunnel-gso off was not taken");
        if gso {
            assert!(n("vxlan_encap_gso") > 100, "{w:?}");
            assert!(n("vxlan_decap_gso") > 100, "{w:?}");
        } else {
            assert_eq!(n("vxlan_encap_gso") + n("vxlan_decap_gso"), 0, "{w:?}");
        }
        assert_eq!(n("vxlan_bad_gso") + n("offload_failed"), 0, "{w:?}");
    }
    // ARP (broadcast) crossed: each side learned the other's container behind the VTEP.
    let fdb = call(&bed.daemons[0], cmd::FDB_LS, json!({"network": "ov1"}));
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["vtep"] == "192.168.80.2"),
        "{fdb}"
    );
}

/// Frames the kernel received on `dev` in `ns` (each write into a TAP is one).
fn kernel_rx_packets(ns: &Netns, dev: &str) -> u64 {
    let out = ns.ip(&["-j", "-s", "link", "show", "dev", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
}

/// An encrypted overlay cuts every super-frame before sealing; the receiving switch merges the
/// opened segments of a burst again (software GRO) before writing them to the container's TAP:
/// the container's kernel receives far fewer frames than the switch forwarded, and every byte
/// arrives. With `--tap-gro off`, one write per segment.
#[test]
fn opened_esp_segments_reach_the_container_merged() {
    if !can_run_system_tests("opened_esp_segments_reach_the_container_merged") {
        return;
    }
    for (flags, merged) in [(&[][..], true), (&["--tap-gro", "off"][..], false)] {
        let tmp = TempDir::new(if merged { "gro" } else { "nogro" });
        let nets = [("sec", 500, true)];
        let bed = OverlayHosts::with_flags(&bin("vswitchd"), &tmp.0, &nets, flags).unwrap();
        for d in &bed.daemons {
            call(
                d,
                cmd::KEY_ADD,
                json!({"tag": 1, "key": "000102030405060708090a0b0c0d0e0f10111213"}),
            );
            call(d, cmd::KEY_PRIMARY, json!({"tag": 1}));
        }
        let (a, port_a) = bed
            .container(0, "sec", Ipv4Addr::new(10, 85, 0, 1))
            .unwrap();
        let (b, _) = bed
            .container(1, "sec", Ipv4Addr::new(10, 85, 0, 2))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ok = false;
        while !ok && Instant::now() < deadline {
            ok = b.ping(Ipv4Addr::new(10, 85, 0, 1), 1).unwrap();
        }
        assert!(ok, "no ping across the encrypted overlay");
        let before = kernel_rx_packets(&a, &port_a);
        let sent_before = port_tx(&bed.daemons[0], &port_a);
        tcp_transfer(
            &a.path(),
            Ipv4Addr::new(10, 85, 0, 1),
            &b.path(),
            20 << 20,
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("TCP across the encrypted overlay: {e}"));
        let writes = kernel_rx_packets(&a, &port_a) - before;
        let segments = port_tx(&bed.daemons[0], &port_a) - sent_before;
        eprintln!("gro {merged}: {segments} segments forwarded, {writes} frames received");
        assert!(
            segments > 14_000,
            "20 MB in segments of at most 1416: {segments}"
        );
        if merged {
            assert!(
                writes * 2 < segments,
                "{writes} writes for {segments} segments"
            );
        } else {
            assert!(
                writes >= segments,
                "{writes} writes for {segments} segments"
            );
        }
        let w = worker_counters(&bed.daemons[0]);
        assert_eq!(w.get("esp_bad_icv").copied().unwrap_or(0), 0, "{w:?}");
    }
}

/// Frames port `port` of `d` transmitted.
fn port_tx(d: &DaemonProcess, port: &str) -> u64 {
    let stats: StatsInfo = serde_json::from_value(call(d, cmd::STATS, json!({}))).unwrap();
    stats
        .ports
        .iter()
        .find(|p| p.name == port)
        .map_or(0, |p| p.counters.tx_packets)
}

/// The same with every TAP read and write going through io_uring (multishot reads into provided
/// buffers, a burst of writes per system call): with tunnel GSO (super-frames read into the
/// ring's large buffers), with offloads but without tunnel GSO, and without offloads (small
/// buffers, every frame a plain write request).
#[test]
fn two_switches_carry_an_overlay_through_io_uring() {
    if !can_run_system_tests("two_switches_carry_an_overlay_through_io_uring") {
        return;
    }
    two_switches(&["--tap-uring", "on"], "hostsug");
    two_switches(&["--tap-uring", "on", "--tap-tunnel-gso", "off"], "hostsu");
    two_switches(&["--tap-uring", "on", "--tap-offload", "off"], "hostsuo");
}
