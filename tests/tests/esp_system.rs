//! Encrypted overlays through the real daemons: two hosts (namespaces joined by an underlay),
//! two `vswitchd`, an encrypted network beside a plain one. Checked with implementations that
//! are not ours: tshark decrypts the uplink capture (RFC 4106) and finds the VNI and the inner
//! packets, python3-cryptography verifies the ICVs (tshark 4.0 does not check AES-GCM ICVs),
//! scapy builds ESP packets we must accept, and injects cleartext VXLAN we must drop.

use control::proto::cmd;
use serde_json::json;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{tcp_transfer, DaemonProcess, Netns, OverlayHosts};

const KEY1: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f901122334";
const KEY2: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff5eed5eed";
const KEY7: &str = "77777777777777777777777777777777deadbeef";
const H1: &str = "192.168.80.1";
const H2: &str = "192.168.80.2";

use tests::call;

fn ctl(d: &DaemonProcess, args: &[&str]) -> String {
    tests::ctl_ok(d, args)
}

use tests::worker_counter as counter;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/esp_peer.py")
}

/// Whether tshark, scapy and python3-cryptography are here (under CI they must be).
fn have_tools(test: &str) -> bool {
    let py = Command::new("/usr/bin/python3")
        .args(["-c", "import scapy.all, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    let tshark = Command::new("tshark").arg("-v").output().is_ok();
    if py && tshark {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{test}: tshark, python3-scapy and python3-cryptography are needed (.ci/run installs them)"
    );
    eprintln!("SKIPPED {test}: needs tshark, python3-scapy and python3-cryptography");
    false
}

fn py(args: &[&str]) -> Output {
    Command::new("/usr/bin/python3")
        .arg(script())
        .args(args)
        .output()
        .unwrap()
}

/// (SPI, SA keying material) for `src` -> `dst` under `tag`, derived by the Python peer.
fn derive(src: &str, dst: &str, tag: u32, key: &str) -> (String, String) {
    let out = py(&["derive", src, dst, &tag.to_string(), key]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut w = text.split_whitespace();
    (w.next().unwrap().to_string(), w.next().unwrap().to_string())
}

/// tshark on `file` decrypting both directions of `tag`, printing `fields`.
fn tshark(file: &Path, tag: u32, key: &str, fields: &[&str]) -> String {
    tshark_with(file, tag, key, fields, &[])
}

/// As [`tshark`], each field's first occurrence only (the outer header's, where the decrypted
/// packet repeats a field).
fn tshark_first(file: &Path, tag: u32, key: &str, fields: &[&str]) -> String {
    tshark_with(file, tag, key, fields, &["-E", "occurrence=f"])
}

fn tshark_with(file: &Path, tag: u32, key: &str, fields: &[&str], extra: &[&str]) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args([
        "-o",
        "esp.enable_encryption_decode:TRUE",
        "-o",
        "esp.enable_authentication_check:TRUE",
    ]);
    for (s, d) in [(H1, H2), (H2, H1)] {
        let (spi, k) = derive(s, d, tag, key);
        cmd.arg("-o").arg(format!(
            "uat:esp_sa:\"IPv4\",\"{s}\",\"{d}\",\"0x{spi}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{k}\",\"NULL\",\"\""
        ));
    }
    cmd.args(["-T", "fields", "-E", "separator=,"]).args(extra);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `vswitchctl capture PORT -w FILE [ARGS]` as a child.
fn capture(d: &DaemonProcess, port: &str, file: &Path, extra: &[&str]) -> Child {
    let c = Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["capture", port, "-w"])
        .arg(file)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(d.log())
        .unwrap_or_default()
        .contains("capture started")
    {
        assert!(Instant::now() < deadline, "no capture started");
        std::thread::sleep(Duration::from_millis(20));
    }
    c
}

/// Stops a capture child (SIGTERM finishes the file) and waits for it.
fn finish(mut c: Child) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mac_of(ns: &Netns, dev: &str) -> String {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut w = text.split_whitespace();
    while let Some(x) = w.next() {
        if x == "link/ether" {
            return w.next().unwrap().to_string();
        }
    }
    panic!("no MAC in {text}")
}

fn mtu_of(ns: &Netns, dev: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut w = text.split_whitespace();
    while let Some(x) = w.next() {
        if x == "mtu" {
            return w.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        }
    }
    0
}

/// A container on each host in `network`, at 10.`net`.0.1 (host 1) and 10.`net`.0.2 (host 2),
/// each with its port's name.
fn container_pair(
    bed: &OverlayHosts,
    network: &str,
    net: u8,
) -> ((Netns, String), (Netns, String)) {
    let a = bed
        .container(0, network, Ipv4Addr::new(10, net, 0, 1))
        .unwrap();
    let b = bed
        .container(1, network, Ipv4Addr::new(10, net, 0, 2))
        .unwrap();
    (a, b)
}

/// A UDP socket bound to `ip` inside namespace `ns`.
fn udp_bind(ns: &Path, ip: Ipv4Addr) -> UdpSocket {
    dataplane::sys::netns::run_in(Some(ns), move || UdpSocket::bind((ip, 0))).unwrap()
}

fn ping_until(ns: &Netns, dst: Ipv4Addr, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ns.ping(dst, 1).unwrap() {
            return true;
        }
    }
    false
}

/// Adds receive-only key 7 on host 1 and has scapy send `text` under it (script mode
/// `mode`, which sends it twice) to a UDP socket of container `a1` (10.90.0.1, MAC `a1_mac`):
/// the first copy is delivered, the second dropped as `esp_replay`. Returns the socket and its
/// port for more.
fn scapy_packet_arrives(
    bed: &OverlayHosts,
    a1: &Netns,
    a1_mac: &str,
    mode: &str,
    text: &str,
) -> (UdpSocket, u16) {
    let h1 = &bed.daemons[0];
    ctl(h1, &["key", "add", "--tag", "7", "--key", KEY7]);
    let sock = udp_bind(&a1.path(), Ipv4Addr::new(10, 90, 0, 1));
    let port = sock.local_addr().unwrap().port();
    inject(bed, mode, 7, 500, a1_mac, "10.90.0.1", port, text);
    let mut buf = [0u8; 64];
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("scapy's packet ({mode}) was not delivered: {e}"));
    assert_eq!(&buf[..n], text.as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counter(h1, "esp_replay"), 1);
    (sock, port)
}

/// Sends, from host 2's underlay bridge, what scapy builds: `mode` "clear" (VXLAN in the clear
/// from host 2's VTEP address), "" (ESP under `tag`), "replay" (the same ESP packet twice) or
/// "wrongkey". The inner frame is a UDP datagram with `payload` to `dst_ip`:`port` at `dst_mac`.
#[allow(clippy::too_many_arguments)]
fn inject(
    bed: &OverlayHosts,
    mode: &str,
    tag: u32,
    vni: u32,
    dst_mac: &str,
    dst_ip: &str,
    port: u16,
    payload: &str,
) {
    let up = call(&bed.daemons[0], cmd::UPLINK_SHOW, json!({}));
    let mac = up["mac"].as_str().unwrap().to_string();
    let out = bed.hosts[1]
        .exec(&[
            "/usr/bin/python3",
            script().to_str().unwrap(),
            "inject",
            "br0",
            &mac,
            H2,
            H1,
            &tag.to_string(),
            KEY7,
            &vni.to_string(),
            dst_mac,
            "10.90.0.77",
            dst_ip,
            &port.to_string(),
            payload,
            mode,
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn encrypted_overlay_is_standard_esp_that_others_read_and_write() {
    let name = "encrypted_overlay_is_standard_esp_that_others_read_and_write";
    if !can_run_system_tests(name) || !have_tools(name) {
        return;
    }
    let tmp = TempDir::new("esp");
    let bed = OverlayHosts::with_networks(
        &bin("vswitchd"),
        &tmp.0,
        &[("sec", 500, true), ("plain", 600, false)],
    )
    .unwrap();
    let ((a1, p1), (b1, _)) = container_pair(&bed, "sec", 90);
    let ((a2, p2), (b2, _)) = container_pair(&bed, "plain", 91);
    let [h1, h2] = &bed.daemons;
    assert_eq!(
        mtu_of(&a1, &p1),
        1416,
        "encrypted overlay MTU: 1500 - 50 - 34"
    );
    assert_eq!(mtu_of(&a2, &p2), 1450);

    // No key yet: nothing crosses, nothing is sent in the clear, cleartext is refused.
    assert!(
        !a1.ping(Ipv4Addr::new(10, 90, 0, 2), 2).unwrap(),
        "crossed without a key"
    );
    assert!(counter(h1, "esp_no_key") > 0);
    let a1_mac = mac_of(&a1, &p1);
    inject(&bed, "clear", 0, 500, &a1_mac, "10.90.0.1", 9, "cleartext");
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(h1, "esp_cleartext") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        counter(h1, "esp_cleartext"),
        1,
        "cleartext VXLAN without keys; stats: {}",
        call(h1, cmd::STATS, json!({}))
    );

    // Receive first everywhere, then send: nothing arrives before its key.
    for d in [h1, h2] {
        ctl(d, &["key", "add", "--tag", "1", "--key", KEY1]);
    }
    for d in [h1, h2] {
        ctl(d, &["key", "primary", "--tag", "1"]);
    }
    assert!(
        ping_until(&a1, Ipv4Addr::new(10, 90, 0, 2), 10),
        "no ping across the encrypted overlay; host 1 log:\n{}\nhost 2 log:\n{}",
        h1.log_tail(),
        h2.log_tail()
    );
    let ls = ctl(h1, &["key", "ls"]);
    assert!(ls.contains("yes") && !ls.contains(&KEY1[..12]), "{ls}");
    assert!(!std::fs::read_to_string(h1.log())
        .unwrap()
        .contains(&KEY1[..12]));

    // The uplink capture: only ESP; tshark decrypts it to VXLAN VNI 500 carrying the pings.
    let file = tmp.0.join("esp.pcap");
    let cap = capture(h1, "uplink1", &file, &["-c", "12"]);
    let rep = a1
        .ping_icmp(Ipv4Addr::new(10, 90, 0, 2), 4, Duration::from_secs(2))
        .unwrap();
    assert!(rep.received() >= 3, "{rep:?}");
    finish(cap);
    let rows = tshark(
        &file,
        1,
        KEY1,
        &["ip.proto", "esp.spi", "vxlan.vni", "icmp.type"],
    );
    let esp: Vec<&str> = rows.lines().filter(|l| l.starts_with("50,")).collect();
    // The encrypted network's traffic is ESP only: VNI 500 never outside ESP (the plain
    // network's VNI 600 and the hosts' own IGMP may pass).
    assert!(
        !rows
            .lines()
            .any(|l| l.split(',').nth(2) == Some("500") && !l.starts_with("50,")),
        "VNI 500 in the clear on the uplink:\n{rows}"
    );
    assert!(
        esp.iter().filter(|l| l.ends_with(",500,8")).count() >= 3
            && esp.iter().filter(|l| l.ends_with(",500,0")).count() >= 3,
        "tshark did not find the requests and replies in VNI 500:\n{rows}"
    );
    for (s, d) in [(H1, H2), (H2, H1)] {
        let out = py(&["verify", file.to_str().unwrap(), s, d, "1", KEY1]);
        let good: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(
            out.status.success() && good >= 3,
            "ICVs {s} -> {d}: {good} good; {out:?}"
        );
    }

    // Cleartext with peers and keys: still dropped.
    inject(&bed, "clear", 0, 500, &a1_mac, "10.90.0.1", 9, "cleartext");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counter(h1, "esp_cleartext"), 2);

    // scapy's ESP (a receive-only key 7 on host 1) is accepted and delivered; a replay and a
    // packet under the wrong key are dropped by name.
    let (sock, port) = scapy_packet_arrives(&bed, &a1, &a1_mac, "replay", "made-by-scapy");
    let mut buf = [0u8; 64];
    inject(
        &bed,
        "wrongkey",
        7,
        500,
        &a1_mac,
        "10.90.0.1",
        port,
        "forged",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counter(h1, "esp_bad_icv"), 1);
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        sock.recv(&mut buf).is_err(),
        "a replay or forgery was delivered"
    );

    // Trace shows sealing and opening with SPI and sequence number.
    call(h1, cmd::TRACE_ADD, json!({"count": 1, "port": p1}));
    assert!(a1.ping(Ipv4Addr::new(10, 90, 0, 2), 1).unwrap());
    let trace = ctl(h1, &["trace", "show"]);
    assert!(trace.contains("ESP sealed: SPI 0x"), "{trace}");
    call(h1, cmd::TRACE_CLEAR, json!({}));
    call(h1, cmd::TRACE_ADD, json!({"count": 5, "port": "uplink1"}));
    assert!(a1.ping(Ipv4Addr::new(10, 90, 0, 2), 1).unwrap());
    let trace = ctl(h1, &["trace", "show"]);
    assert!(trace.contains("ESP opened: SPI 0x"), "{trace}");
    assert!(trace.contains("VXLAN VNI 500 from VTEP"), "{trace}");

    // A checked TCP transfer on each overlay, in the same run.
    let enc = tcp_transfer(
        &b1.path(),
        Ipv4Addr::new(10, 90, 0, 2),
        &a1.path(),
        20 << 20,
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("TCP over the encrypted overlay: {e}; {}", h1.log_tail()));
    let plain = tcp_transfer(
        &b2.path(),
        Ipv4Addr::new(10, 91, 0, 2),
        &a2.path(),
        20 << 20,
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("TCP over the plain overlay: {e}"));
    eprintln!(
        "TCP host to host: encrypted {:.0} Mbit/s, plain {:.0} Mbit/s, ratio {:.2}",
        enc.mbps(),
        plain.mbps(),
        enc.mbps() / plain.mbps()
    );
    let (sealed, opened) = (counter(h1, "esp_sealed"), counter(h2, "esp_opened"));
    assert!(
        sealed > 1000 && opened > 1000,
        "sealed {sealed}, opened {opened}"
    );
    for bad in [
        "esp_unknown_spi",
        "esp_outside_window",
        "esp_no_room",
        "esp_too_big",
    ] {
        assert_eq!(counter(h1, bad) + counter(h2, bad), 0, "{bad}");
    }
}

#[test]
fn key_rotation_during_a_transfer_loses_nothing_and_sends_no_cleartext() {
    let name = "key_rotation_during_a_transfer_loses_nothing_and_sends_no_cleartext";
    if !can_run_system_tests(name) || !have_tools(name) {
        return;
    }
    let tmp = TempDir::new("esprot");
    let bed = OverlayHosts::with_networks(&bin("vswitchd"), &tmp.0, &[("sec", 510, true)]).unwrap();
    let ((a, _), (b, _)) = container_pair(&bed, "sec", 92);
    let [h1, h2] = &bed.daemons;
    // Receive first everywhere, then send: nothing arrives before its key.
    for d in [h1, h2] {
        ctl(d, &["key", "add", "--tag", "1", "--key", KEY1]);
    }
    for d in [h1, h2] {
        ctl(d, &["key", "primary", "--tag", "1"]);
    }
    assert!(
        ping_until(&a, Ipv4Addr::new(10, 92, 0, 2), 10),
        "{}",
        h1.log_tail()
    );
    // What was dropped before the keys were there (IPv6 solicitations, ARP) is not the
    // rotation's.
    let names = [
        "esp_unknown_spi",
        "esp_bad_icv",
        "esp_replay",
        "esp_outside_window",
        "esp_no_key",
        "esp_cleartext",
    ];
    let before: Vec<Vec<u64>> = [h1, h2]
        .iter()
        .map(|d| names.iter().map(|n| counter(d, n)).collect())
        .collect();

    // What each switch sends on its uplink, for the whole rotation.
    let file = tmp.0.join("rot.pcap");
    let file2 = tmp.0.join("rot2.pcap");
    let cap = capture(h1, "uplink1", &file, &["-s", "128", "--direction", "tx"]);
    let cap2 = capture(h2, "uplink2", &file2, &["-s", "128", "--direction", "tx"]);
    let (bp, ap) = (b.path(), a.path());
    let transfer = std::thread::spawn(move || {
        tcp_transfer(
            &bp,
            Ipv4Addr::new(10, 92, 0, 2),
            &ap,
            200 << 20,
            Duration::from_secs(120),
        )
    });
    // Rotate once the transfer is flowing, in steps short enough to end well before it does.
    let sealed = counter(h1, "esp_sealed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(h1, "esp_sealed") < sealed + 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let step = Duration::from_millis(150);
    // Add everywhere, then primary on each host (host 2 first here), then remove the old key.
    for d in [h1, h2] {
        ctl(d, &["key", "add", "--tag", "2", "--key", KEY2]);
    }
    std::thread::sleep(step);
    ctl(h2, &["key", "primary", "--tag", "2"]);
    std::thread::sleep(step);
    ctl(h1, &["key", "primary", "--tag", "2"]);
    std::thread::sleep(step);
    for d in [h1, h2] {
        ctl(d, &["key", "rm", "--tag", "1"]);
    }
    assert!(
        !transfer.is_finished(),
        "the transfer ended before the rotation did: nothing was tested (make it longer)"
    );
    let t = transfer
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("TCP across the rotation: {e}; host 1:\n{}", h1.log_tail()));
    eprintln!("TCP across a key rotation: {:.0} Mbit/s", t.mbps());
    finish(cap);
    finish(cap2);
    for (i, d) in [h1, h2].into_iter().enumerate() {
        for (j, bad) in names.iter().enumerate() {
            assert_eq!(
                counter(d, bad),
                before[i][j],
                "{bad}; log:\n{}",
                d.log_tail()
            );
        }
    }
    let ls = ctl(h1, &["--json", "key", "ls"]);
    let keys: serde_json::Value = serde_json::from_str(&ls).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["tag"], 2);
    assert!(keys[0]["tx_packets"].as_u64().unwrap() > 0);
    // Nothing in the clear at any point: every IPv4 packet on the uplink was ESP, under both keys.
    let protos = tshark(&file, 2, KEY2, &["ip.proto", "esp.spi"]);
    let protos2 = tshark(&file2, 2, KEY2, &["ip.proto", "esp.spi"]);
    assert!(protos.lines().count() > 1000, "{}", protos.lines().count());
    assert!(protos2.lines().count() > 100, "{}", protos2.lines().count());
    for p in [&protos, &protos2] {
        assert!(
            p.lines()
                .all(|l| l.starts_with(',') || l.starts_with("50,")),
            "sent in the clear during the rotation: {:?}",
            p.lines()
                .find(|l| !l.starts_with(',') && !l.starts_with("50,"))
        );
    }
    let spis: std::collections::BTreeSet<&str> =
        protos.lines().filter_map(|l| l.split(',').nth(1)).collect();
    let (old, _) = derive(H1, H2, 1, KEY1);
    let (new, _) = derive(H1, H2, 2, KEY2);
    let has = |s: &str| spis.iter().any(|x| x.trim_start_matches("0x") == s);
    assert!(
        has(&old) && has(&new),
        "SPIs seen: {spis:?}, old {old}, new {new}"
    );
}

#[test]
fn a_restarted_peer_is_accepted_again_and_never_reuses_an_iv() {
    let name = "a_restarted_peer_is_accepted_again_and_never_reuses_an_iv";
    if !can_run_system_tests(name) || !have_tools(name) {
        return;
    }
    let tmp = TempDir::new("esprst");
    let mut bed =
        OverlayHosts::with_networks(&bin("vswitchd"), &tmp.0, &[("sec", 520, true)]).unwrap();
    let ((a, _), (_b, _)) = container_pair(&bed, "sec", 93);
    // Receive first everywhere, then send: nothing arrives before its key.
    for d in &bed.daemons {
        ctl(d, &["key", "add", "--tag", "1", "--key", KEY1]);
    }
    for d in &bed.daemons {
        ctl(d, &["key", "primary", "--tag", "1"]);
    }
    let peer = Ipv4Addr::new(10, 93, 0, 2);
    assert!(ping_until(&a, peer, 10), "{}", bed.daemons[0].log_tail());
    // Host 2's packets to host 1, before and after its restart.
    let file = tmp.0.join("rst.pcap");
    let cap = capture(&bed.daemons[0], "uplink1", &file, &["--direction", "rx"]);
    // Enough traffic that host 2's sequence numbers are past where a restart starts them.
    let rep = a.ping_icmp(peer, 20, Duration::from_secs(2)).unwrap();
    assert!(rep.received() >= 18, "{rep:?}");

    // Host 2's daemon stops for an upgrade (its devices stay) and starts again from its state
    // file: keys restored, its SAs numbered from 1 again with IVs above every earlier one.
    bed.daemons[1].signal(libc::SIGUSR1).unwrap();
    bed.daemons[1].restart().unwrap();
    assert!(
        ping_until(&a, peer, 10),
        "no ping after the peer restarted; host 1:\n{}",
        bed.daemons[0].log_tail()
    );
    let rep = a.ping_icmp(peer, 5, Duration::from_secs(2)).unwrap();
    assert!(rep.received() >= 4, "{rep:?}");
    finish(cap);
    // Its new packets (numbered from 1 again, inside host 1's window) were taken as a restart,
    // not as replays.
    for bad in ["esp_replay", "esp_outside_window", "esp_bad_icv"] {
        assert_eq!(counter(&bed.daemons[0], bad), 0, "{bad}");
    }
    // Every IV host 2 used under its SA, before and after the restart, is distinct.
    let (spi, _) = derive(H2, H1, 1, KEY1);
    let rows = tshark(&file, 1, KEY1, &["esp.spi", "esp.iv"]);
    let ivs: Vec<&str> = rows
        .lines()
        .filter(|l| l.trim_start_matches("0x").starts_with(&spi))
        .filter_map(|l| l.split(',').nth(1))
        .collect();
    let unique: std::collections::BTreeSet<&&str> = ivs.iter().collect();
    assert!(ivs.len() >= 4, "{rows}");
    assert_eq!(unique.len(), ivs.len(), "an IV repeated: {ivs:?}");
}

/// A port's switch counters from `stats`.
fn port_counters(d: &DaemonProcess, port: &str) -> control::proto::PortCounters {
    let stats: control::proto::StatsInfo =
        serde_json::from_value(call(d, cmd::STATS, json!({}))).unwrap();
    stats
        .ports
        .into_iter()
        .find(|p| p.name == port)
        .unwrap_or_else(|| panic!("no port {port} in stats"))
        .counters
}

/// ESP in UDP (RFC 3948, `--esp-encap udp`): a checked TCP transfer between two switches whose
/// TAP uplinks write and read UDP super-frames (UDP segmentation offload): the sealed packets of
/// a cut super-frame leave in one write, arrive in one read and are cut back, each opened on
/// its own. tshark decodes the uplink capture as UDP-encapsulated ESP and decrypts it to the
/// VNI and the inner TCP; nothing of the network leaves in the clear or as IP protocol 50;
/// scapy's ESP in UDP is accepted (its replay dropped), its protocol-50 ESP and cleartext VXLAN
/// for the network are dropped by name.
#[test]
fn encrypted_overlay_in_udp_moves_super_frames_that_others_decrypt() {
    let name = "encrypted_overlay_in_udp_moves_super_frames_that_others_decrypt";
    if !can_run_system_tests(name) || !have_tools(name) {
        return;
    }
    let tmp = TempDir::new("espudp");
    let bed = OverlayHosts::with_specs(
        &bin("vswitchd"),
        &tmp.0,
        &[json!({"name": "sec", "vni": 500, "encrypted": true, "esp_encap": "udp"})],
        &[],
    )
    .unwrap();
    let ((a1, p1), (b1, _)) = container_pair(&bed, "sec", 90);
    let [h1, h2] = &bed.daemons;
    assert_eq!(
        mtu_of(&a1, &p1),
        1408,
        "ESP-in-UDP overlay MTU: 1500 - 50 - 34 - 8"
    );
    let ls = ctl(h1, &["network", "ls"]);
    assert!(ls.contains("500 (encrypted, ESP in UDP)"), "{ls}");
    let up = ctl(h1, &["port", "inspect", "uplink1"]);
    if !up.contains("uso4, uso6") {
        // A kernel before 6.2 refuses USO: ESP in UDP still works, a packet per write.
        eprintln!("note: the kernel refused UDP segmentation offload on the TAP uplink:\n{up}");
    }
    let uso = up.contains("uso4, uso6");
    for d in [h1, h2] {
        ctl(d, &["key", "add", "--tag", "1", "--key", KEY1]);
    }
    for d in [h1, h2] {
        ctl(d, &["key", "primary", "--tag", "1"]);
    }
    assert!(
        ping_until(&a1, Ipv4Addr::new(10, 90, 0, 2), 10),
        "no ping across the ESP-in-UDP overlay; host 1 log:\n{}\nhost 2 log:\n{}",
        h1.log_tail(),
        h2.log_tail()
    );

    // The uplink capture during a transfer (what host 1 sends, before its TAP merges it, and
    // what it reads): UDP 4500 only, decrypted by tshark to VNI 500 and the inner TCP.
    let file = tmp.0.join("espudp.pcap");
    let cap = capture(h1, "uplink1", &file, &["-c", "400"]);
    let t = tcp_transfer(
        &b1.path(),
        Ipv4Addr::new(10, 90, 0, 2),
        &a1.path(),
        4 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("TCP over ESP in UDP: {e}; {}", h1.log_tail()));
    finish(cap);
    let rows = tshark_first(
        &file,
        1,
        KEY1,
        &[
            "ip.proto",
            "udp.dstport",
            "esp.spi",
            "vxlan.vni",
            "tcp.dstport",
        ],
    );
    assert!(
        !rows.lines().any(|l| l.starts_with("50,")),
        "IP protocol 50 on a network of ESP in UDP:\n{rows}"
    );
    assert!(
        !rows
            .lines()
            .any(|l| l.split(',').nth(3) == Some("500") && l.split(',').nth(2) == Some("")),
        "VNI 500 in the clear on the uplink:\n{rows}"
    );
    let tcp_in_esp = rows
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f.len() == 5
                && f[0] == "17"
                && f[1] == "4500"
                && !f[2].is_empty()
                && f[3] == "500"
                && !f[4].is_empty()
        })
        .count();
    assert!(
        tcp_in_esp >= 100,
        "tshark did not decrypt UDP-encapsulated ESP to TCP in VNI 500 ({tcp_in_esp} rows):\n{}",
        rows.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    let out = py(&["verify", file.to_str().unwrap(), H1, H2, "1", KEY1]);
    let good: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        out.status.success() && good >= 100,
        "ICVs {H1} -> {H2}: {good} good; {out:?}"
    );

    // A longer checked transfer: super-frames cross both ways of the uplinks.
    let big = tcp_transfer(
        &b1.path(),
        Ipv4Addr::new(10, 90, 0, 2),
        &a1.path(),
        64 << 20,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("TCP over ESP in UDP: {e}; {}", h1.log_tail()));
    let (sealed, opened) = (counter(h1, "esp_sealed"), counter(h2, "esp_opened"));
    let merged = port_counters(h1, "uplink1").tx_uso_merged;
    let sealed_whole = counter(h1, "esp_sealed_whole");
    let cut = counter(h2, "udp_gso_cut");
    let whole = counter(h2, "udp_gso_opened_whole");
    eprintln!(
        "ESP in UDP: {:.0} and {:.0} Mbit/s; sealed {sealed}, opened {opened}; TCP super-frames \
         sealed whole {sealed_whole}, UDP super-frames merged {merged} (host 1), opened whole \
         {whole}, cut {cut} (host 2)",
        t.mbps(),
        big.mbps()
    );
    assert!(
        sealed > 1000 && opened > 1000,
        "sealed {sealed}, opened {opened}"
    );
    if uso {
        // The container's TCP super-frames leave sealed into UDP super-frames, which host 2
        // opens where they lie.
        assert!(
            sealed_whole > 100 && whole > 100,
            "super-frames: {sealed_whole} sealed whole on host 1, {whole} opened whole on host 2"
        );
    }
    for bad in [
        "esp_unknown_spi",
        "esp_outside_window",
        "esp_bad_icv",
        "esp_replay",
        "esp_wrong_encap",
        "esp_no_room",
        "esp_too_big",
        "udp_gso_bad",
    ] {
        assert_eq!(counter(h1, bad) + counter(h2, bad), 0, "{bad}");
    }

    // Others' packets: scapy's ESP in UDP (receive-only key 7) is accepted, its replay is
    // dropped; its protocol-50 ESP and cleartext VXLAN for the network are dropped by name.
    let a1_mac = mac_of(&a1, &p1);
    let (sock, port) = scapy_packet_arrives(&bed, &a1, &a1_mac, "udp-replay", "scapy-in-udp");
    let mut buf = [0u8; 64];
    let wrong = counter(h1, "esp_wrong_encap");
    // (Under a fresh tag: sequence number 1 of tag 7's SA was taken above.)
    ctl(h1, &["key", "add", "--tag", "8", "--key", KEY7]);
    inject(&bed, "", 8, 500, &a1_mac, "10.90.0.1", port, "protocol-50");
    let clear = counter(h1, "esp_cleartext");
    inject(
        &bed,
        "clear",
        0,
        500,
        &a1_mac,
        "10.90.0.1",
        port,
        "cleartext",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while (counter(h1, "esp_wrong_encap") == wrong || counter(h1, "esp_cleartext") == clear)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counter(h1, "esp_wrong_encap"), wrong + 1);
    assert_eq!(counter(h1, "esp_cleartext"), clear + 1);
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        sock.recv(&mut buf).is_err(),
        "protocol-50 ESP or cleartext was delivered to a network of ESP in UDP"
    );
}
