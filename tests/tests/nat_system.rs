//! The gateway and source NAT through the real daemon and real kernel stacks: "containers"
//! (namespaces with TAP ports) on `--subnet` networks, and a "server" namespace beyond the
//! uplink (the uplink TAP's kernel side), which is also the uplink's next hop. Everything the
//! tests make has a unique name and goes when the test ends, passed or failed; every traffic
//! loop is bounded in count and time.

use control::proto::cmd;
use dataplane::sys::netns;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;
use tests::{attach_tap, bin, can_run_system_tests, TempDir};
use vswitch::testbed::{tcp_transfer, unique_name, DaemonProcess, Netns};

/// The uplink's own address (the NAT address) and the server's, on the uplink's subnet.
const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// A server address off the uplink's subnet: reached through the uplink's `--gateway`.
const FAR_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

use tests::call;

/// A daemon with an uplink into a fresh "server" namespace.
fn rig(tag: &str) -> (TempDir, DaemonProcess, Netns) {
    rig_mtu(tag, None)
}

/// [`rig`], with the uplink's MTU when given.
fn rig_mtu(tag: &str, mtu: Option<u32>) -> (TempDir, DaemonProcess, Netns) {
    rig_with(tag, mtu, &[])
}

/// [`rig_mtu`], with extra daemon flags.
fn rig_with(tag: &str, mtu: Option<u32>, flags: &[&str]) -> (TempDir, DaemonProcess, Netns) {
    let tmp = TempDir::new(tag);
    let d = DaemonProcess::start_with(&bin("vswitchd"), &tmp.0, None, flags).unwrap();
    let server = Netns::create(&unique_name("vssrv")).unwrap();
    let up = unique_name("vsup");
    let mut port = json!({"name": up, "type": "tap", "netns": server.name()});
    if let Some(m) = mtu {
        port["mtu"] = json!(m);
    }
    call(&d, cmd::PORT_ADD, port);
    server
        .ip(&["addr", "add", &format!("{SERVER_IP}/24"), "dev", &up])
        .unwrap();
    server
        .ip(&["addr", "add", &format!("{FAR_IP}/32"), "dev", "lo"])
        .unwrap();
    call(
        &d,
        cmd::UPLINK_SET,
        json!({"port": up, "ip": format!("{UPLINK_IP}/24"), "gateway": SERVER_IP.to_string()}),
    );
    (tmp, d, server)
}

/// A container on `network` with `ip`/24 and its default route through `gw`.
fn container(d: &DaemonProcess, network: &str, ip: Ipv4Addr, gw: Ipv4Addr) -> (Netns, String) {
    let (ns, port) = attach_tap(d, network, "vsn", ip);
    ns.ip(&["route", "add", "default", "via", &gw.to_string()])
        .unwrap();
    (ns, port)
}

fn drops(d: &DaemonProcess) -> Value {
    call(d, cmd::STATS, json!({}))
}

/// The byte at offset `i` of a download.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// The server (listening on `ip` in `server`) sends `bytes` to a client in `client`, which
/// checks every byte: a download through NAT. Bounded by `timeout`.
fn download(server: &Netns, ip: Ipv4Addr, client: &Netns, bytes: u64, timeout: Duration) {
    let listener = netns::run_in(Some(&server.path()), || {
        TcpListener::bind(SocketAddr::from((ip, 0)))
    })
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut c, _) = listener.accept()?;
        c.set_write_timeout(Some(timeout))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0u64;
        while at < bytes {
            let n = (bytes - at).min(buf.len() as u64) as usize;
            for (k, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(at + k as u64);
            }
            c.write_all(&buf[..n])?;
            at += n as u64;
        }
        Ok(())
    });
    let got = netns::run_in(Some(&client.path()), move || -> std::io::Result<u64> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0u64;
        while std::time::Instant::now() < deadline {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for (k, b) in buf[..n].iter().enumerate() {
                if *b != pattern(at + k as u64) {
                    return Err(std::io::Error::other(format!(
                        "corrupted at {}",
                        at + k as u64
                    )));
                }
            }
            at += n as u64;
        }
        Ok(at)
    })
    .unwrap();
    sender.join().unwrap().unwrap();
    assert_eq!(got, bytes, "download incomplete");
}

/// Runs `ping ARGS` (iputils) in `ns`; its output, stdout and stderr together.
fn ping(ns: &Netns, args: &[&str]) -> String {
    let mut all = vec!["ping"];
    all.extend_from_slice(args);
    let out = ns.exec(&all).unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Binds a UDP socket to `addr` inside `ns`.
fn udp_in(ns: &Netns, addr: SocketAddr) -> UdpSocket {
    let s = netns::run_in(Some(&ns.path()), || UdpSocket::bind(addr)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Sends `msg` from `sock` to `to` until an answer comes (at most 5 tries); returns it.
fn ask(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    for _ in 0..5 {
        sock.send_to(msg, to).ok()?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

#[test]
fn containers_reach_a_server_beyond_the_uplink_through_nat() {
    if !can_run_system_tests("containers_reach_a_server_beyond_the_uplink_through_nat") {
        return;
    }
    let (_tmp, d, server) = rig("nat");
    // The gateway defaults to the subnet's first address.
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "blue", "subnet": "10.81.0.0/24"}),
    );
    let gw = Ipv4Addr::new(10, 81, 0, 1);
    let (c1, c1_port) = container(&d, "blue", Ipv4Addr::new(10, 81, 0, 2), gw);
    let (c2, _) = container(&d, "blue", Ipv4Addr::new(10, 81, 0, 3), gw);

    // The gateway answers ARP and ping itself.
    assert!(
        c1.ping(gw, 3).unwrap(),
        "ping to the gateway failed; log:\n{}\nstats: {}",
        d.log_tail(),
        drops(&d)
    );
    // Out through NAT: on the uplink's subnet, and beyond its next hop.
    for dst in [SERVER_IP, FAR_IP] {
        assert!(
            c1.ping(dst, 3).unwrap(),
            "ping {dst} through NAT failed; stats: {}",
            drops(&d)
        );
    }

    // TCP: the server sees the uplink address; bytes go both ways.
    let listener = netns::run_in(Some(&server.path()), || {
        TcpListener::bind(SocketAddr::from((FAR_IP, 0)))
    })
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn({
        let p = c1.path();
        move || {
            netns::run_in(Some(&p), move || {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"hello server")?;
                let mut back = [0u8; 12];
                s.read_exact(&mut back)?;
                Ok(back)
            })
        }
    });
    listener.set_nonblocking(false).unwrap();
    let (mut conn, peer) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 12];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello server");
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(UPLINK_IP),
        "the server sees only the uplink address"
    );
    conn.write_all(b"hello client").unwrap();
    assert_eq!(&client.join().unwrap().unwrap(), b"hello client");

    // A checked bulk transfer each way (super-frames and partial checksums from the TAPs).
    let t = tcp_transfer(
        &server.path(),
        FAR_IP,
        &c1.path(),
        32 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer out failed: {e}; stats: {}", drops(&d)));
    eprintln!(
        "32 MB container -> server through NAT: {:.0} Mbit/s",
        t.mbps()
    );
    download(&server, FAR_IP, &c1, 32 << 20, Duration::from_secs(60));

    // The trace names the NAT decision.
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(bin("vswitchctl"))
            .args(["--socket", d.socket().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ctl(&["trace", "add", "4", "--port", &c1_port]);
    assert!(c1.ping(FAR_IP, 1).unwrap());
    let t = ctl(&["trace", "show"]);
    assert!(
        t.contains("l3-router") && t.contains("NAT: source translated: 10.81.0.2:"),
        "{t}"
    );

    // UDP both ways, two containers on the same source port told apart by their mappings.
    let srv = udp_in(&server, SocketAddr::from((SERVER_IP, 0)));
    let srv_addr = srv.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        // Bounded: stops after 20 datagrams or a quiet 3 s.
        srv.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        for _ in 0..20 {
            let Ok((n, from)) = srv.recv_from(&mut buf) else {
                break;
            };
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = srv.send_to(&reply, from);
            if !seen.contains(&from) {
                seen.push(from);
            }
        }
        seen
    });
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let u1 = udp_in(&c1, SocketAddr::from((Ipv4Addr::new(10, 81, 0, 2), port)));
    let u2 = udp_in(&c2, SocketAddr::from((Ipv4Addr::new(10, 81, 0, 3), port)));
    assert_eq!(ask(&u1, srv_addr, b"c1").as_deref(), Some(&b"echo:c1"[..]));
    assert_eq!(ask(&u2, srv_addr, b"c2").as_deref(), Some(&b"echo:c2"[..]));
    assert_eq!(
        ask(&u1, srv_addr, b"c1 again").as_deref(),
        Some(&b"echo:c1 again"[..])
    );
    let seen = echo.join().unwrap();
    assert_eq!(seen.len(), 2, "two mappings: {seen:?}");
    assert!(seen
        .iter()
        .all(|a| a.ip() == std::net::IpAddr::V4(UPLINK_IP)));
    assert_ne!(seen[0].port(), seen[1].port());

    // nat ls and nat stats show the sessions.
    let ls = call(&d, cmd::NAT_LS, json!({"network": "blue"}));
    let list = ls.as_array().unwrap();
    assert!(
        list.iter().any(|s| s["proto"] == "udp"
            && s["inside"] == format!("10.81.0.3:{port}")
            && s["state"] == "replied"),
        "{ls:#}"
    );
    assert!(list.iter().any(|s| s["proto"] == "tcp"), "{ls:#}");
    assert!(list.iter().any(|s| s["proto"] == "icmp"), "{ls:#}");
    let st = call(&d, cmd::NAT_STATS, json!({}));
    assert!(st["sessions"].as_u64().unwrap() >= 4, "{st:#}");
    assert!(st["created"].as_u64().unwrap() >= 4, "{st:#}");
    assert_eq!(st["settings"]["tcp_established"], 7440);
    let set = call(&d, cmd::NAT_SET, json!({"udp": 30}));
    assert_eq!(set["udp"], 30);
    // The CLI shows the same.
    let out = std::process::Command::new(bin("vswitchctl"))
        .args([
            "--socket",
            d.socket().to_str().unwrap(),
            "nat",
            "ls",
            "--limit",
            "50",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("OUTSIDE"), "{text}");
    assert!(text.contains(&format!("{UPLINK_IP}:")), "{text}");
}

#[test]
fn internal_networks_and_other_networks_are_out_of_reach() {
    if !can_run_system_tests("internal_networks_and_other_networks_are_out_of_reach") {
        return;
    }
    let (_tmp, d, _server) = rig("natiso");
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "blue", "subnet": "10.84.0.0/24"}),
    );
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "red", "subnet": "10.85.0.0/24", "gateway": "10.85.0.254"}),
    );
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "iso", "subnet": "10.86.0.0/24", "internal": true}),
    );
    let e = d
        .client()
        .unwrap()
        .call(
            cmd::NETWORK_CREATE,
            json!({"name": "dup", "subnet": "10.84.0.128/25"}),
        )
        .unwrap_err();
    assert!(e.to_string().contains("overlaps network 'blue'"), "{e}");

    let (b, _) = container(
        &d,
        "blue",
        Ipv4Addr::new(10, 84, 0, 2),
        Ipv4Addr::new(10, 84, 0, 1),
    );
    let (r, _) = container(
        &d,
        "red",
        Ipv4Addr::new(10, 85, 0, 2),
        Ipv4Addr::new(10, 85, 0, 254),
    );
    let (i, _) = container(
        &d,
        "iso",
        Ipv4Addr::new(10, 86, 0, 2),
        Ipv4Addr::new(10, 86, 0, 1),
    );
    // Each reaches its own gateway; blue and red get out.
    assert!(
        i.ping(Ipv4Addr::new(10, 86, 0, 1), 2).unwrap(),
        "stats: {}",
        drops(&d)
    );
    assert!(r.ping(Ipv4Addr::new(10, 85, 0, 254), 2).unwrap());
    assert!(b.ping(SERVER_IP, 2).unwrap(), "stats: {}", drops(&d));
    assert!(r.ping(FAR_IP, 2).unwrap(), "stats: {}", drops(&d));
    // The internal network has no way out; networks do not reach each other.
    assert!(
        !i.ping(SERVER_IP, 2).unwrap(),
        "an --internal network got out"
    );
    assert!(
        !b.ping(Ipv4Addr::new(10, 85, 0, 2), 2).unwrap(),
        "blue reached red"
    );
    assert!(
        !r.ping(Ipv4Addr::new(10, 84, 0, 2), 2).unwrap(),
        "red reached blue"
    );
    let out = std::process::Command::new(bin("vswitchctl"))
        .args(["--socket", d.socket().to_str().unwrap(), "stats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("internal_network"), "{text}");
    assert!(text.contains("network_isolated"), "{text}");
}

#[test]
fn the_gateway_answers_ttl_expiry_and_path_mtu_discovery_works_through_it() {
    if !can_run_system_tests(
        "the_gateway_answers_ttl_expiry_and_path_mtu_discovery_works_through_it",
    ) {
        return;
    }
    // The uplink is narrower (1400) than the network (1500).
    let (_tmp, d, server) = rig_mtu("natmtu", Some(1400));
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "blue", "subnet": "10.87.0.0/24"}),
    );
    let gw = Ipv4Addr::new(10, 87, 0, 1);
    let (c, _) = container(&d, "blue", Ipv4Addr::new(10, 87, 0, 2), gw);
    assert!(c.ping(FAR_IP, 2).unwrap(), "stats: {}", drops(&d));

    let out = ping(
        &c,
        &["-c", "1", "-W", "2", "-t", "1", "-n", &FAR_IP.to_string()],
    );
    assert!(
        out.contains("From 10.87.0.1") && out.contains("Time to live exceeded"),
        "{out}"
    );
    // DF and too big: the gateway says how big may pass, and the kernel learns it.
    let out = ping(
        &c,
        &[
            "-c",
            "2",
            "-i",
            "0.3",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1450",
            "-n",
            &FAR_IP.to_string(),
        ],
    );
    assert!(
        out.contains("mtu = 1400") || out.contains("mtu=1400"),
        "{out}"
    );
    let route = c.ip(&["route", "get", &FAR_IP.to_string()]).unwrap();
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    assert!(route.contains("mtu 1400"), "{route}");
    let out = ping(
        &c,
        &[
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1372",
            "-n",
            &FAR_IP.to_string(),
        ],
    );
    assert!(out.contains("1 received"), "{out}");
    // TCP (super-frames cut to a 1448-byte MSS would not fit) learns it too and completes.
    tcp_transfer(
        &server.path(),
        FAR_IP,
        &c.path(),
        8 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer failed: {e}; stats: {}", drops(&d)));
    let st = drops(&d).to_string();
    assert!(
        st.contains("icmp_frag_needed_sent") || st.contains("frag"),
        "{st}"
    );
}

#[test]
fn a_flood_of_new_flows_evicts_only_its_own_sessions() {
    if !can_run_system_tests("a_flood_of_new_flows_evicts_only_its_own_sessions") {
        return;
    }
    let (_tmp, d, server) = rig("natflood");
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "blue", "subnet": "10.88.0.0/24"}),
    );
    // A small table: 64 sessions.
    call(&d, cmd::NAT_SET, json!({"sessions": 64}));
    let gw = Ipv4Addr::new(10, 88, 0, 1);
    let (c1, _) = container(&d, "blue", Ipv4Addr::new(10, 88, 0, 2), gw);
    let (c2, _) = container(&d, "blue", Ipv4Addr::new(10, 88, 0, 3), gw);
    assert!(c1.ping(SERVER_IP, 2).unwrap(), "stats: {}", drops(&d));
    // An established connection that stays open (and idle) through the flood.
    let listener = netns::run_in(Some(&server.path()), || {
        TcpListener::bind(SocketAddr::from((FAR_IP, 0)))
    })
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = netns::run_in(Some(&c1.path()), move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // From outside, a SYN flood at the uplink address (300 ports, each connect given up after
    // a few milliseconds): no session matches, so it opens none and each SYN is dropped by name.
    let syns = std::thread::spawn({
        let p = server.path();
        move || {
            netns::run_in(Some(&p), || {
                for k in 0..300u16 {
                    let to = SocketAddr::from((UPLINK_IP, 20_000 + k));
                    let _ = TcpStream::connect_timeout(&to, Duration::from_millis(3));
                }
                Ok(())
            })
        }
    });
    // The flood: UDP from 2000 source ports to a port where nothing answers (the server's
    // port unreachable errors leave the sessions embryonic), bounded in count and time.
    let flood = std::thread::spawn({
        let p = c2.path();
        move || {
            netns::run_in(Some(&p), || {
                let start = std::time::Instant::now();
                for _ in 0..2000 {
                    if start.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    let s = UdpSocket::bind((Ipv4Addr::new(10, 88, 0, 3), 0))?;
                    let _ = s.send_to(b"x", (SERVER_IP, 9));
                    std::thread::sleep(Duration::from_micros(500));
                }
                Ok(())
            })
        }
    });
    tcp_transfer(
        &server.path(),
        FAR_IP,
        &c1.path(),
        16 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer under the flood failed: {e}; stats: {}", drops(&d)));
    flood.join().unwrap().unwrap();
    syns.join().unwrap().unwrap();
    let no_session = drops(&d)["drops"]["nat_no_session"].as_u64().unwrap_or(0);
    assert!(
        no_session >= 300,
        "the outside SYNs are dropped by name: {no_session}"
    );
    let st = call(&d, cmd::NAT_STATS, json!({}));
    assert!(st["sessions"].as_u64().unwrap() <= 64, "{st:#}");
    assert!(st["evicted"].as_u64().unwrap() > 0, "{st:#}");
    // The idle, established connection opened before the flood still carries bytes.
    held.write_all(b"still there?").unwrap();
    let mut back = [0u8; 12];
    peer.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still there?");
    peer.write_all(b"yes, here..!").unwrap();
    held.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"yes, here..!");
}

#[test]
fn two_workers_carry_every_flow_through_nat() {
    if !can_run_system_tests("two_workers_carry_every_flow_through_nat") {
        return;
    }
    let (_tmp, d, server) = rig_with("nat2w", None, &["--cores", "0,1"]);
    assert_eq!(
        call(&d, cmd::STATUS, json!({}))["workers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "blue", "subnet": "10.89.0.0/24"}),
    );
    let gw = Ipv4Addr::new(10, 89, 0, 1);
    let (c, _) = container(&d, "blue", Ipv4Addr::new(10, 89, 0, 2), gw);
    assert!(c.ping(FAR_IP, 2).unwrap(), "stats: {}", drops(&d));
    // 32 UDP flows, each answered: whichever worker's uplink queue an answer arrives on, it
    // reaches the session's owner.
    let srv = udp_in(&server, SocketAddr::from((SERVER_IP, 0)));
    let srv_addr = srv.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        srv.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        for _ in 0..200 {
            let Ok((n, from)) = srv.recv_from(&mut buf) else {
                break;
            };
            let _ = srv.send_to(&buf[..n], from);
        }
    });
    let mut answered = 0;
    for k in 0..32u16 {
        let s = udp_in(&c, SocketAddr::from((Ipv4Addr::new(10, 89, 0, 2), 0)));
        let msg = format!("flow {k}");
        if ask(&s, srv_addr, msg.as_bytes()).as_deref() == Some(msg.as_bytes()) {
            answered += 1;
        }
    }
    echo.join().unwrap();
    assert_eq!(answered, 32, "stats: {}", drops(&d));
    tcp_transfer(
        &server.path(),
        FAR_IP,
        &c.path(),
        16 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer failed: {e}; stats: {}", drops(&d)));
    download(&server, FAR_IP, &c, 16 << 20, Duration::from_secs(60));
    let stats = drops(&d);
    let handed: u64 = stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["counters"]["nat_handed_off"].as_u64())
        .sum();
    eprintln!("frames handed to their session's owner: {handed}");
    let st = stats.to_string();
    assert!(
        !st.contains("nat_other_worker") && !st.contains("nat_handoff_full"),
        "{st}"
    );
}
