//! Packet capture through the real daemon and CLI: `vswitchctl capture` on TAP ports and on an
//! overlay's uplink, read back by tcpdump and tshark; a capture nobody reads never holds up
//! forwarding. Need root; see `tests::can_run_system_tests`.

use control::proto::{cmd, CaptureBatch, CaptureStarted, CaptureSummary};
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{unique_name, DaemonProcess, Netns};

fn call(d: &DaemonProcess, command: &str, args: serde_json::Value) -> serde_json::Value {
    d.client()
        .unwrap()
        .call(command, args.clone())
        .unwrap_or_else(|e| panic!("{command} {args}: {e}; daemon log:\n{}", d.log_tail()))
}

/// Children this test started, killed (by their own PID) and reaped on drop, so a failing
/// assertion leaves nothing running.
struct Children(Vec<Child>);

impl Children {
    /// Waits at most `timeout` for child `i` to exit and returns its output.
    fn wait(&mut self, i: usize, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            let c = &mut self.0[i];
            if c.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "child {i} did not finish within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let c = self.0.remove(i);
        c.wait_with_output().unwrap()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A namespace with a TAP port on `network`, `ip`/24, and no IPv6 (whose router solicitations
/// and listener reports would take the places of a counted capture).
fn host(d: &DaemonProcess, network: &str, ip: Ipv4Addr) -> (Netns, String) {
    let ns = Netns::create(&unique_name("vcap")).unwrap();
    for key in ["all", "default"] {
        ns.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
        ])
        .unwrap();
    }
    let port = unique_name("cap");
    call(
        d,
        cmd::PORT_ADD,
        json!({"name": port, "type": "tap", "network": network, "netns": ns.name()}),
    );
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &port])
        .unwrap();
    (ns, port)
}

/// Two hosts on one network that already reach each other (ARP resolved).
fn two_hosts(d: &DaemonProcess, net: &str, subnet: u8) -> [(Netns, String); 2] {
    call(d, cmd::NETWORK_CREATE, json!({"name": net}));
    let a = host(d, net, Ipv4Addr::new(10, subnet, 0, 1));
    let b = host(d, net, Ipv4Addr::new(10, subnet, 0, 2));
    assert!(
        a.0.ping(Ipv4Addr::new(10, subnet, 0, 2), 3).unwrap(),
        "a cannot reach b; log:\n{}",
        d.log_tail()
    );
    [a, b]
}

/// `vswitchctl --socket S capture ARGS...` as a child, its stdout piped.
fn capture_cli(d: &DaemonProcess, args: &[&str]) -> Child {
    Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(d.socket())
        .arg("capture")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 10 s) until the daemon logged `n` capture starts: the taps are attached.
fn wait_started(d: &DaemonProcess, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(d.log()).unwrap_or_default();
        if log.matches("capture started").count() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no capture started; log:\n{}",
            d.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tcpdump_file(path: &Path) -> String {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpdump could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn captures_a_ping_to_a_pcap_file_that_tcpdump_reads() {
    if !can_run_system_tests("captures_a_ping_to_a_pcap_file_that_tcpdump_reads") {
        return;
    }
    let tmp = TempDir::new("capf");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    let [(a, pa), _b] = two_hosts(&d, "blue", 81);
    let file = tmp.0.join("ping.pcap");
    let mut kids = Children(vec![capture_cli(
        &d,
        &[&pa, "--count", "6", "-w", file.to_str().unwrap()],
    )]);
    wait_started(&d, 1);
    let rep = a
        .ping_icmp(Ipv4Addr::new(10, 81, 0, 2), 3, Duration::from_secs(2))
        .unwrap();
    assert_eq!(rep.received(), 3, "{rep:?}");
    let out = kids.wait(0, Duration::from_secs(20));
    assert!(out.status.success(), "capture failed: {}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("6 packets captured, 0 packets missed"),
        "summary: {}",
        stderr_of(&out)
    );
    let text = tcpdump_file(&file);
    assert!(
        text.contains("10.81.0.1 > 10.81.0.2: ICMP echo request")
            && text.contains("10.81.0.2 > 10.81.0.1: ICMP echo reply"),
        "tcpdump printed:\n{text}"
    );
    assert_eq!(text.lines().count(), 6, "tcpdump printed:\n{text}");
    // The nanosecond pcap magic, little-endian.
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes[..4], [0x4d, 0x3c, 0xb2, 0xa1]);
}

#[test]
fn captures_to_stdout_for_tcpdump_reading_a_pipe() {
    if !can_run_system_tests("captures_to_stdout_for_tcpdump_reading_a_pipe") {
        return;
    }
    let tmp = TempDir::new("capp");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    let [(a, _pa), (_b, pb)] = two_hosts(&d, "blue", 82);
    let mut ctl = capture_cli(&d, &[&pb, "--direction", "tx", "-c", "4", "-w", "-"]);
    let pipe = ctl.stdout.take().unwrap();
    let dump = Command::new("tcpdump")
        .args(["-nn", "-r", "-"])
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kids = Children(vec![ctl, dump]);
    wait_started(&d, 1);
    let rep = a
        .ping_icmp(Ipv4Addr::new(10, 82, 0, 2), 4, Duration::from_secs(2))
        .unwrap();
    assert_eq!(rep.received(), 4, "{rep:?}");
    let ctl_out = kids.wait(0, Duration::from_secs(20));
    assert!(
        ctl_out.status.success(),
        "capture failed: {}",
        stderr_of(&ctl_out)
    );
    let out = kids.wait(0, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    // Transmitted on b's port: the requests a sends to b, not b's replies.
    assert_eq!(
        text.matches("10.82.0.1 > 10.82.0.2: ICMP echo request")
            .count(),
        4,
        "tcpdump printed:\n{text}\n{}",
        stderr_of(&out)
    );
    assert!(!text.contains("echo reply"), "tcpdump printed:\n{text}");
}

#[test]
fn captures_vxlan_on_the_uplink_that_tshark_decodes() {
    if !can_run_system_tests("captures_vxlan_on_the_uplink_that_tshark_decodes") {
        return;
    }
    if Command::new("tshark").arg("-v").output().is_err() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "tshark is not installed (CI installs it in .ci/run)"
        );
        eprintln!(
            "SKIPPED captures_vxlan_on_the_uplink_that_tshark_decodes: tshark is not installed"
        );
        return;
    }
    let tmp = TempDir::new("capv");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    // The remote host: the kernel's VXLAN device as its VTEP behind our uplink TAP.
    let remote = Netns::create(&unique_name("vcrem")).unwrap();
    let uplink = unique_name("cupl");
    call(
        &d,
        cmd::PORT_ADD,
        json!({"name": uplink, "type": "tap", "netns": remote.name()}),
    );
    remote
        .ip(&["addr", "add", "192.168.83.2/24", "dev", &uplink])
        .unwrap();
    remote
        .ip(&[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "183",
            "local",
            "192.168.83.2",
            "remote",
            "192.168.83.1",
            "dstport",
            "4789",
            "dev",
            &uplink,
        ])
        .unwrap();
    remote
        .ip(&["addr", "add", "10.83.0.2/24", "dev", "vx0"])
        .unwrap();
    remote.ip(&["link", "set", "vx0", "up"]).unwrap();
    call(
        &d,
        cmd::UPLINK_SET,
        json!({"port": uplink, "ip": "192.168.83.1/24"}),
    );
    call(&d, cmd::NETWORK_CREATE, json!({"name": "ov", "vni": 183}));
    call(
        &d,
        cmd::PEER_ADD,
        json!({"network": "ov", "vtep": "192.168.83.2"}),
    );
    let (c, _port) = host(&d, "ov", Ipv4Addr::new(10, 83, 0, 1));
    let peer = Ipv4Addr::new(10, 83, 0, 2);
    assert!(
        c.ping(peer, 3).unwrap(),
        "ping over VXLAN failed; log:\n{}",
        d.log_tail()
    );

    let file = tmp.0.join("uplink.pcap");
    let mut kids = Children(vec![capture_cli(
        &d,
        &[&uplink, "-c", "4", "-w", file.to_str().unwrap()],
    )]);
    wait_started(&d, 1);
    let rep = c.ping_icmp(peer, 3, Duration::from_secs(2)).unwrap();
    assert!(rep.received() >= 2, "{rep:?}");
    let out = kids.wait(0, Duration::from_secs(20));
    assert!(out.status.success(), "capture failed: {}", stderr_of(&out));
    let t = Command::new("tshark")
        .args(["-r"])
        .arg(&file)
        .args([
            "-d",
            "udp.port==4789,vxlan",
            "-T",
            "fields",
            "-e",
            "vxlan.vni",
        ])
        .output()
        .unwrap();
    let vnis = String::from_utf8_lossy(&t.stdout);
    assert!(
        vnis.lines().filter(|l| l.trim() == "183").count() >= 2,
        "tshark printed VNIs:\n{vnis}\nstderr: {}\ntcpdump: {}",
        String::from_utf8_lossy(&t.stderr),
        tcpdump_file(&file)
    );
}

#[test]
fn a_capture_nobody_reads_misses_frames_but_never_holds_up_forwarding() {
    if !can_run_system_tests("a_capture_nobody_reads_misses_frames_but_never_holds_up_forwarding") {
        return;
    }
    let tmp = TempDir::new("caps");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    let [(a, pa), (_b, pb)] = two_hosts(&d, "blue", 84);
    // A ring of 16 snapshots, started over the protocol and then never read.
    let mut c = d.client().unwrap();
    let started: CaptureStarted = serde_json::from_value(
        c.call(cmd::CAPTURE_START, json!({"port": pa, "ring": 16}))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(started.ring, 16);
    // 300 echo requests and their replies: 600 frames through the tapped port.
    let out = a
        .exec(&["ping", "-q", "-f", "-c", "300", "-W", "2", "10.84.0.2"])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("300 packets transmitted, 300 received"),
        "forwarding lost frames while the capture was full: {text}"
    );
    let batch: CaptureBatch = serde_json::from_value(
        c.call(cmd::CAPTURE_READ, json!({"id": started.id, "max": 4}))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(batch.packets.len(), 4);
    assert!(!batch.done);
    assert!(
        batch.missed >= 500 && batch.captured == 16,
        "captured {} missed {}",
        batch.captured,
        batch.missed
    );
    let s: CaptureSummary = serde_json::from_value(
        c.call(cmd::CAPTURE_STOP, json!({"id": started.id}))
            .unwrap(),
    )
    .unwrap();
    assert_eq!((s.captured, s.unread), (16, 12));
    assert!(s.missed >= 500, "{s:?}");
    let e = c
        .call(cmd::CAPTURE_READ, json!({"id": started.id}))
        .unwrap_err();
    assert!(e.message.contains("no capture"), "{e}");

    // Removing a captured port ends its capture; what was taken can still be read.
    let id = c
        .call(cmd::CAPTURE_START, json!({"port": pb, "direction": "rx"}))
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    call(&d, cmd::PORT_RM, json!({"name": pb}));
    let batch: CaptureBatch =
        serde_json::from_value(c.call(cmd::CAPTURE_READ, json!({"id": id})).unwrap()).unwrap();
    assert!(batch.done, "{batch:?}");
    assert!(
        batch
            .ended
            .as_deref()
            .is_some_and(|e| e.contains("removed")),
        "{batch:?}"
    );
    c.call(cmd::CAPTURE_STOP, json!({"id": id})).unwrap();
}

#[test]
fn captures_are_limited_checked_and_end_with_their_connection() {
    if !can_run_system_tests("captures_are_limited_checked_and_end_with_their_connection") {
        return;
    }
    let tmp = TempDir::new("capl");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    let [(_a, pa), _b] = two_hosts(&d, "blue", 85);
    let mut c = d.client().unwrap();
    for (args, hint) in [
        (json!({"port": "nope"}), "port ls"),
        (json!({"port": pa, "snaplen": 0}), "1 to 65535"),
        (json!({"port": pa, "snaplen": 65536}), "1 to 65535"),
        (json!({"port": pa, "count": 0}), "positive count"),
    ] {
        let e = c.call(cmd::CAPTURE_START, args.clone()).unwrap_err();
        assert!(e.message.contains(hint), "{args}: {e}");
    }
    let max = control::proto::CAPTURE_MAX;
    for _ in 0..max {
        c.call(cmd::CAPTURE_START, json!({"port": pa, "snaplen": 128}))
            .unwrap();
    }
    let e = c.call(cmd::CAPTURE_START, json!({"port": pa})).unwrap_err();
    assert!(e.message.contains("stop one first"), "{e}");
    drop(c);
    // The daemon ends them when it sees the connection close.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = d.client().unwrap();
    loop {
        match c.call(cmd::CAPTURE_START, json!({"port": pa})) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(e.message.contains("stop one first"), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("captures outlived their connection: {e}"),
        }
    }
}
