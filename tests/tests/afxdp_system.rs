//! AF_XDP ports through the real daemon: two containers on veths whose switch-side ends the
//! daemon binds with AF_XDP; ping and a checked 100 MB TCP transfer; an interface deleted under
//! the daemon; no XDP program left behind after `kill -9`.
//!
//! TCP through any userspace switch on veth needs the container side's transmit checksum offload
//! off (`ethtool -K IF tx off`, which also turns TSO off): with it on, veth hands over partial
//! checksums and TSO super-frames that only the kernel's own stack knows how to finish.

use control::proto::{cmd, PortInfo, StatsInfo};
use serde_json::json;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{tcp_transfer, unique_name, DaemonProcess, Netns, SIGKILL};

fn call(d: &DaemonProcess, command: &str, args: serde_json::Value) -> serde_json::Value {
    d.client()
        .unwrap()
        .call(command, args.clone())
        .unwrap_or_else(|e| panic!("{command} {args}: {e}; daemon log:\n{}", d.log_tail()))
}

struct Bed {
    switch_ns: Netns,
    a: Netns,
    b: Netns,
    a_if: String,
    b_if: String,
}

/// Two containers, each on a veth whose other end lives in the switch's namespace, with their
/// transmit checksum offload off.
fn bed() -> Bed {
    bed_with(true)
}

/// As [`bed`]; `tx_off` false leaves the containers' offloads at the kernel's defaults.
fn bed_with(tx_off: bool) -> Bed {
    let switch_ns = Netns::create(&unique_name("vsxs")).unwrap();
    let a = Netns::create(&unique_name("vsxa")).unwrap();
    let b = Netns::create(&unique_name("vsxb")).unwrap();
    let (a_if, b_if) = (unique_name("xa"), unique_name("xb"));
    for (ns, sw_if, ip) in [(&a, &a_if, "10.90.0.1/24"), (&b, &b_if, "10.90.0.2/24")] {
        switch_ns
            .ip(&[
                "link",
                "add",
                sw_if,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])
            .unwrap();
        switch_ns.ip(&["link", "set", sw_if, "up"]).unwrap();
        ns.ip(&["addr", "add", ip, "dev", "eth0"]).unwrap();
        ns.ip(&["link", "set", "eth0", "up"]).unwrap();
        if !tx_off {
            continue;
        }
        let out = ns.exec(&["ethtool", "-K", "eth0", "tx", "off"]).unwrap();
        assert!(
            out.status.success(),
            "ethtool -K eth0 tx off: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Bed {
        switch_ns,
        a,
        b,
        a_if,
        b_if,
    }
}

fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    let out = ns.ip(&["link", "show", "dev", dev]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// A checked 50 MB TCP transfer from `a` to `b` (at `b_ip`) and one back (to `a_ip`).
fn tcp_both_ways(d: &DaemonProcess, what: &str, a: (&Netns, Ipv4Addr), b: (&Netns, Ipv4Addr)) {
    for (from, (to, to_ip)) in [(a.0, b), (b.0, a)] {
        let t = tcp_transfer(
            &to.path(),
            to_ip,
            &from.path(),
            50 << 20,
            Duration::from_secs(90),
        )
        .unwrap_or_else(|e| panic!("TCP to {to_ip}: {e}; log:\n{}", d.log_tail()));
        eprintln!("{what}, to {to_ip}: {:.0} Mbit/s", t.mbps());
    }
}

/// Asserts that `ethtool -k` in `ns` shows `feature` for `dev`.
fn assert_feature(ns: &Netns, dev: &str, feature: &str) {
    let out = ns.exec(&["ethtool", "-k", dev]).unwrap();
    let feats = String::from_utf8_lossy(&out.stdout);
    assert!(feats.contains(feature), "{dev}: want {feature} in {feats}");
}

#[test]
fn afxdp_ports_carry_ping_and_tcp_and_leave_nothing_behind() {
    if !can_run_system_tests("afxdp_ports_carry_ping_and_tcp_and_leave_nothing_behind") {
        return;
    }
    if Command::new("ethtool").arg("--version").output().is_err() {
        panic!(
            "ethtool is needed to turn off the containers' checksum offload (apt install ethtool)"
        );
    }
    let tmp = TempDir::new("xdp");
    let bed = bed();
    let mut d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    call(&d, cmd::NETWORK_CREATE, json!({"name": "x"}));
    let ns = bed.switch_ns.name();
    call(
        &d,
        cmd::PORT_ADD,
        json!({"name": "pa", "type": "afxdp", "ifname": bed.a_if, "netns": ns, "network": "x"}),
    );
    call(
        &d,
        cmd::PORT_ADD,
        json!({"name": "pb", "type": "afxdp", "ifname": bed.b_if, "netns": ns, "network": "x"}),
    );
    let info: PortInfo =
        serde_json::from_value(call(&d, cmd::PORT_INSPECT, json!({"name": "pa"}))).unwrap();
    assert!(
        info.state.starts_with("up (") && info.state.contains("copy"),
        "{}",
        info.state
    );
    assert!(xdp_attached(&bed.switch_ns, &bed.a_if));

    assert!(
        bed.a.ping(Ipv4Addr::new(10, 90, 0, 2), 3).unwrap(),
        "ping over AF_XDP; log:\n{}",
        d.log_tail()
    );
    let t = tcp_transfer(
        &bed.b.path(),
        Ipv4Addr::new(10, 90, 0, 2),
        &bed.a.path(),
        100 << 20,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("TCP over AF_XDP: {e}; log:\n{}", d.log_tail()));
    eprintln!(
        "AF_XDP: 100 MB in {:.2} s ({:.0} Mbit/s)",
        t.elapsed.as_secs_f64(),
        t.mbps()
    );

    // The interface goes away under the daemon: that port goes down, the daemon carries on.
    bed.switch_ns.ip(&["link", "del", &bed.b_if]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut state = String::new();
    while Instant::now() < deadline {
        let info: PortInfo =
            serde_json::from_value(call(&d, cmd::PORT_INSPECT, json!({"name": "pb"}))).unwrap();
        state = info.state;
        if state.starts_with("down") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        state.contains("disappeared"),
        "port state after the interface went: {state}"
    );
    assert!(!bed.a.ping(Ipv4Addr::new(10, 90, 0, 2), 1).unwrap());
    call(&d, cmd::STATUS, json!({}));

    // kill -9: the BPF link dies with the process, so no program stays on the interface.
    d.signal(SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(&bed.switch_ns, &bed.a_if) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !xdp_attached(&bed.switch_ns, &bed.a_if),
        "an XDP program was left on the interface"
    );
}

#[test]
fn two_workers_share_single_queue_afxdp_ports() {
    if !can_run_system_tests("two_workers_share_single_queue_afxdp_ports") {
        return;
    }
    if Command::new("ethtool").arg("--version").output().is_err() {
        panic!(
            "ethtool is needed to turn off the containers' checksum offload (apt install ethtool)"
        );
    }
    let tmp = TempDir::new("xdp2");
    let bed = bed();
    // Two workers, and veths with one queue each: one worker owns each port's queue, the other
    // hands its transmits over.
    let d = DaemonProcess::start_with(&bin("vswitchd"), &tmp.0, None, &["--cores", "0,1"]).unwrap();
    let status = call(&d, cmd::STATUS, json!({}));
    assert_eq!(
        status["workers"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    call(&d, cmd::NETWORK_CREATE, json!({"name": "x"}));
    let ns = bed.switch_ns.name();
    for (name, ifname) in [("pa", &bed.a_if), ("pb", &bed.b_if)] {
        call(
            &d,
            cmd::PORT_ADD,
            json!({"name": name, "type": "afxdp", "ifname": ifname, "netns": ns, "network": "x"}),
        );
        let info: PortInfo =
            serde_json::from_value(call(&d, cmd::PORT_INSPECT, json!({"name": name}))).unwrap();
        assert_eq!(info.queue_count, 1, "a veth has one queue");
    }
    assert!(
        bed.a.ping(Ipv4Addr::new(10, 90, 0, 2), 3).unwrap(),
        "ping; log:\n{}",
        d.log_tail()
    );
    let t = tcp_transfer(
        &bed.b.path(),
        Ipv4Addr::new(10, 90, 0, 2),
        &bed.a.path(),
        20 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| {
        panic!(
            "TCP over AF_XDP with two workers: {e}; log:\n{}",
            d.log_tail()
        )
    });
    assert_eq!(t.bytes, 20 << 20);
}

/// A container on a TAP port with offloads sends TCP super-frames (TSO) and partial checksums;
/// the switch cuts and finishes them in software for an AF_XDP port, and passes the AF_XDP
/// side's plain frames to the TAP. Every byte is checked both ways, and the counters show the
/// software segmentation happened and nothing was lost to it.
#[test]
fn tap_super_frames_are_cut_for_an_afxdp_port() {
    if !can_run_system_tests("tap_super_frames_are_cut_for_an_afxdp_port") {
        return;
    }
    let tmp = TempDir::new("xdptso");
    let bed = bed();
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    call(&d, cmd::NETWORK_CREATE, json!({"name": "x"}));
    call(
        &d,
        cmd::PORT_ADD,
        json!({"name": "pb", "type": "afxdp", "ifname": bed.b_if, "netns": bed.switch_ns.name(), "network": "x"}),
    );
    let tap = unique_name("xt");
    call(
        &d,
        cmd::PORT_ADD,
        json!({"name": tap, "type": "tap", "netns": bed.a.name(), "network": "x"}),
    );
    // The container's TAP replaces its veth for this test.
    bed.a.ip(&["link", "set", "eth0", "down"]).unwrap();
    bed.a
        .ip(&["addr", "add", "10.90.0.3/24", "dev", &tap])
        .unwrap();
    // The TAP offers TSO to its container.
    assert_feature(&bed.a, &tap, "tcp-segmentation-offload: on");
    assert!(
        bed.a.ping(Ipv4Addr::new(10, 90, 0, 2), 3).unwrap(),
        "ping TAP -> AF_XDP; log:\n{}",
        d.log_tail()
    );
    tcp_both_ways(
        &d,
        "TAP/AF_XDP",
        (&bed.a, Ipv4Addr::new(10, 90, 0, 3)),
        (&bed.b, Ipv4Addr::new(10, 90, 0, 2)),
    );
    let stats: StatsInfo = serde_json::from_value(call(&d, cmd::STATS, json!({}))).unwrap();
    let port = |name: &str| {
        stats
            .ports
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} in {stats:?}"))
            .counters
            .clone()
    };
    let pb = port("pb");
    assert!(
        pb.tx_segmented > 0,
        "super-frames from the TAP were cut for the AF_XDP port: {pb:?}"
    );
    assert_eq!(pb.tx_offload_dropped, 0, "{pb:?}");
    assert_eq!(port(&tap).tx_dropped, 0, "{:?}", port(&tap));
}

/// With the containers' default offloads (transmit checksum on), a veth hands over partial
/// TCP checksums that nothing in AF_XDP marks: the switch completes them, so TCP works both ways
/// without `ethtool -K eth0 tx off`.
#[test]
fn afxdp_tcp_works_with_the_containers_default_offloads() {
    if !can_run_system_tests("afxdp_tcp_works_with_the_containers_default_offloads") {
        return;
    }
    let tmp = TempDir::new("xdpdef");
    let bed = bed_with(false);
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    call(&d, cmd::NETWORK_CREATE, json!({"name": "x"}));
    let ns = bed.switch_ns.name();
    for (name, ifname) in [("pa", &bed.a_if), ("pb", &bed.b_if)] {
        call(
            &d,
            cmd::PORT_ADD,
            json!({"name": name, "type": "afxdp", "ifname": ifname, "netns": ns, "network": "x"}),
        );
    }
    let info: PortInfo =
        serde_json::from_value(call(&d, cmd::PORT_INSPECT, json!({"name": "pa"}))).unwrap();
    assert!(
        info.state.contains("completes partial checksums"),
        "{}",
        info.state
    );
    // The container keeps its default checksum offload.
    assert_feature(&bed.a, "eth0", "tx-checksumming: on");
    assert!(
        bed.a.ping(Ipv4Addr::new(10, 90, 0, 2), 3).unwrap(),
        "ping; log:\n{}",
        d.log_tail()
    );
    tcp_both_ways(
        &d,
        "AF_XDP, default offloads",
        (&bed.a, Ipv4Addr::new(10, 90, 0, 1)),
        (&bed.b, Ipv4Addr::new(10, 90, 0, 2)),
    );
    let stats: StatsInfo = serde_json::from_value(call(&d, cmd::STATS, json!({}))).unwrap();
    let completed: u64 = stats
        .ports
        .iter()
        .map(|p| p.counters.rx_csum_completed)
        .sum();
    assert!(
        completed > 1000,
        "partial checksums were completed on receive: {stats:?}"
    );
}
