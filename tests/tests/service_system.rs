//! Services (load balancing in the gateway) through the real daemon and real kernel stacks:
//! backend "containers" (namespaces with TAP ports) on a `--subnet` network, each serving a
//! distinguishable reply from a small TCP server of the test, and clients beyond the uplink
//! (the uplink TAP's namespace), on the service's network and on another network. Every name is
//! unique, everything goes when the test ends, and every traffic loop is bounded in count and
//! time.

use control::proto::cmd;
use dataplane::sys::netns;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::{attach_tap, bin, can_run_system_tests, ctl_ok, TempDir};
use vswitch::testbed::{unique_name, DaemonProcess, Netns};

const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 78, 2);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 78, 1);
/// The backends' port.
const TARGET: u16 = 8080;

use tests::call;

/// A daemon with an uplink into a fresh "client" namespace (the uplink's next hop too).
fn rig(tag: &str) -> (TempDir, DaemonProcess, Netns) {
    rig_with(tag, &[])
}

/// [`rig`] with extra daemon flags.
fn rig_with(tag: &str, flags: &[&str]) -> (TempDir, DaemonProcess, Netns) {
    let tmp = TempDir::new(tag);
    let d = DaemonProcess::start_with(&bin("vswitchd"), &tmp.0, None, flags).unwrap();
    let client = Netns::create(&unique_name("vscli")).unwrap();
    let up = unique_name("vsup");
    call(
        &d,
        cmd::PORT_ADD,
        json!({"name": up, "type": "tap", "netns": client.name()}),
    );
    client
        .ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", &up])
        .unwrap();
    call(
        &d,
        cmd::UPLINK_SET,
        json!({"port": up, "ip": format!("{UPLINK_IP}/24"), "gateway": CLIENT_IP.to_string()}),
    );
    (tmp, d, client)
}

/// A container on `network` with `ip`/24 and its default route through `gw`.
fn container(d: &DaemonProcess, network: &str, ip: Ipv4Addr, gw: Ipv4Addr) -> Netns {
    let (ns, _) = attach_tap(d, network, "vsb", ip);
    ns.ip(&["route", "add", "default", "via", &gw.to_string()])
        .unwrap();
    ns
}

/// A backend's server: on every connection it writes `NAME PEER-ADDRESS\n`, then echoes what
/// it reads until the client closes. Stops when `stop` is set (checked every 10 ms) or after
/// 120 s.
fn serve(ns: &Netns, name: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let l = netns::run_in(Some(&ns.path()), || {
        TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, TARGET)))
    })
    .unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            match l.accept() {
                Ok((mut c, peer)) => {
                    std::thread::spawn(move || {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                        let _ = writeln!(c, "{name} {}", peer.ip());
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = c.read(&mut buf) {
                            if n == 0 || c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

/// An open connection to a service: the backend's name and the address it saw.
struct Conn {
    s: BufReader<TcpStream>,
    backend: String,
    seen: String,
}

/// Connects from `ns` to `to`; reads the backend's greeting.
fn open(ns: &Netns, to: SocketAddr) -> std::io::Result<Conn> {
    let s = netns::run_in(Some(&ns.path()), || {
        TcpStream::connect_timeout(&to, Duration::from_secs(4))
    })?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut s = BufReader::new(s);
    let mut line = String::new();
    s.read_line(&mut line)?;
    let mut w = line.split_whitespace();
    let backend = w.next().unwrap_or_default().to_string();
    let seen = w.next().unwrap_or_default().to_string();
    Ok(Conn { s, backend, seen })
}

impl Conn {
    /// Sends `n` patterned bytes and checks the echo.
    fn echo(&mut self, n: usize, salt: u8) -> std::io::Result<()> {
        let data: Vec<u8> = (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect();
        self.s.get_mut().write_all(&data)?;
        let mut back = vec![0u8; n];
        self.s.read_exact(&mut back)?;
        if back != data {
            return Err(std::io::Error::other("echo differs"));
        }
        Ok(())
    }
}

/// One checked exchange: connect, greeting, 2 KB echoed, close.
fn once(ns: &Netns, to: SocketAddr, salt: u8) -> Result<(String, String), String> {
    let mut c = open(ns, to).map_err(|e| format!("connect {to}: {e}"))?;
    c.echo(2048, salt).map_err(|e| format!("echo: {e}"))?;
    Ok((c.backend, c.seen))
}

/// [`once`], tried up to 5 times (the first may wait for a backend's ARP).
fn retry(d: &DaemonProcess, ns: &Netns, to: SocketAddr) -> (String, String) {
    let mut last = String::new();
    for k in 0..5 {
        match once(ns, to, k) {
            Ok(r) => return r,
            Err(e) => last = e,
        }
    }
    panic!("{to}: {last}; stats: {}", stats(d))
}

/// The byte at offset `i` of a bulk transfer.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// A backend in `ns` sends `bytes` of [`pattern`] to one client on `port`; the client in
/// `client` connects to `to` and checks every byte. Returns Mbit/s.
fn bulk(ns: &Netns, port: u16, client: &Netns, to: SocketAddr, bytes: u64) -> f64 {
    let l = netns::run_in(Some(&ns.path()), || {
        TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
    })
    .unwrap();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut c, _) = l.accept()?;
        c.set_write_timeout(Some(Duration::from_secs(30)))?;
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
    let start = Instant::now();
    let got = netns::run_in(Some(&client.path()), move || -> std::io::Result<u64> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0u64;
        while Instant::now() < deadline {
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
    assert_eq!(got, bytes, "transfer incomplete");
    bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e6
}

fn stats(d: &DaemonProcess) -> Value {
    call(d, cmd::STATS, json!({}))
}

#[test]
fn published_port_spreads_by_weight_keeps_the_client_address_and_drains() {
    if !can_run_system_tests("published_port_spreads_by_weight_keeps_the_client_address_and_drains")
    {
        return;
    }
    let (_tmp, d, client) = rig("svcpub");
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "web", "subnet": "10.82.0.0/24"}),
    );
    let gw = Ipv4Addr::new(10, 82, 0, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let names = ["b1", "b2", "b3"];
    let mut backends = Vec::new();
    let mut servers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ip = Ipv4Addr::new(10, 82, 0, 11 + i as u8);
        let ns = container(&d, "web", ip, gw);
        servers.push(serve(&ns, name, stop.clone()));
        backends.push((ns, ip));
    }
    ctl_ok(
        &d,
        &[
            "service",
            "create",
            "front",
            "--network",
            "web",
            "--publish",
            "8080:8080",
        ],
    );
    for (i, (_, ip)) in backends.iter().enumerate() {
        let w = (i + 1).to_string();
        ctl_ok(
            &d,
            &[
                "service",
                "backend",
                "add",
                "front",
                "--ip",
                &ip.to_string(),
                "--weight",
                &w,
            ],
        );
    }
    let to = SocketAddr::from((UPLINK_IP, 8080));
    // The first connection may wait for a backend's ARP (a SYN sent again after a second).
    let mut first = None;
    for k in 0..5 {
        match once(&client, to, k) {
            Ok(r) => {
                first = Some(r);
                break;
            }
            Err(e) => eprintln!("warm-up: {e}"),
        }
    }
    assert!(
        first.is_some(),
        "no connection through the published port; stats: {}\nlog: {}",
        stats(&d),
        d.log_tail()
    );

    // The spread against the weights 1:2:3, every transfer checked, the client's own address
    // seen by every backend.
    let n = 360;
    let mut count: HashMap<String, u32> = HashMap::new();
    for k in 0..n {
        let (b, seen) = once(&client, to, k as u8)
            .unwrap_or_else(|e| panic!("connection {k}: {e}; stats: {}", stats(&d)));
        assert_eq!(seen, CLIENT_IP.to_string(), "the backend sees the client");
        *count.entry(b).or_default() += 1;
    }
    eprintln!("{n} connections over weights 1:2:3: {count:?}");
    for (i, name) in names.iter().enumerate() {
        let got = f64::from(count.get(*name).copied().unwrap_or(0)) / f64::from(n);
        let want = (i + 1) as f64 / 6.0;
        // Four standard deviations of a binomial share.
        let sd = (want * (1.0 - want) / f64::from(n)).sqrt();
        assert!(
            (got - want).abs() < 4.0 * sd + 0.01,
            "{name}: share {got:.3}, weight says {want:.3}: {count:?}"
        );
    }

    // A bulk transfer from a backend through the published port, every byte checked (the
    // backend's TSO super-frames and partial checksums translated on the way out).
    ctl_ok(
        &d,
        &[
            "service",
            "create",
            "bulk",
            "--network",
            "web",
            "--publish",
            "9000:9000",
        ],
    );
    ctl_ok(
        &d,
        &["service", "backend", "add", "bulk", "--ip", "10.82.0.11"],
    );
    let mbps = bulk(
        &backends[0].0,
        9000,
        &client,
        SocketAddr::from((UPLINK_IP, 9000)),
        32 << 20,
    );
    eprintln!("32 MB from a backend through the published port: {mbps:.0} Mbit/s");

    // Long-lived connections; then b3 drains (weight 0): no new connection reaches it, the
    // old ones go on; then it is removed (default drain timeout): they still go on.
    let mut long: Vec<Conn> = (0..12)
        .map(|_| open(&client, to).expect("long-lived connection"))
        .collect();
    // The steps below need one on b2 and one on b3 (each misses all 12 with p < 1%): bounded.
    for _ in 0..48 {
        if ["b2", "b3"]
            .iter()
            .all(|b| long.iter().any(|c| c.backend == *b))
        {
            break;
        }
        long.push(open(&client, to).expect("long-lived connection"));
    }
    assert!(long.iter().any(|c| c.backend == "b3"), "none on b3");
    ctl_ok(
        &d,
        &[
            "service",
            "backend",
            "set",
            "front",
            "--ip",
            "10.82.0.13",
            "--weight",
            "0",
        ],
    );
    for k in 0..40 {
        let (b, _) = once(&client, to, k).unwrap();
        assert_ne!(b, "b3", "a draining backend got a new connection");
    }
    for (k, c) in long.iter_mut().enumerate() {
        c.echo(1000, k as u8)
            .unwrap_or_else(|e| panic!("drained connection to {}: {e}", c.backend));
    }
    let inspect = ctl_ok(&d, &["service", "inspect", "front"]);
    assert!(
        inspect.contains("draining") && inspect.contains("CONNECTIONS"),
        "{inspect}"
    );
    let info = call(&d, cmd::SERVICE_INSPECT, json!({"name": "front"}));
    let on_b3 = long.iter().filter(|c| c.backend == "b3").count() as u64;
    let b3 = info["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["ip"] == "10.82.0.13")
        .unwrap();
    assert!(b3["connections"].as_u64().unwrap() >= on_b3, "{info:#}");
    ctl_ok(
        &d,
        &["service", "backend", "rm", "front", "--ip", "10.82.0.13"],
    );
    for (k, c) in long.iter_mut().enumerate() {
        c.echo(3000, k as u8 ^ 0x55)
            .unwrap_or_else(|e| panic!("connection to removed {}: {e}", c.backend));
    }

    // b2 goes down: new connections only to b1; then b2 is removed with --drain-timeout 0:
    // its connections are reset (their next segment is answered with a TCP reset).
    ctl_ok(
        &d,
        &[
            "service",
            "backend",
            "set",
            "front",
            "--ip",
            "10.82.0.12",
            "--down",
        ],
    );
    for k in 0..20 {
        assert_eq!(once(&client, to, k).unwrap().0, "b1");
    }
    ctl_ok(
        &d,
        &[
            "service",
            "backend",
            "rm",
            "front",
            "--ip",
            "10.82.0.12",
            "--drain-timeout",
            "0",
        ],
    );
    let on_b2 = long.iter_mut().find(|c| c.backend == "b2");
    let on_b2 = on_b2.expect("no long-lived connection landed on b2 (weight 2 of 6, 12 tries)");
    let e = on_b2
        .echo(100, 1)
        .expect_err("a connection of a backend removed with --drain-timeout 0 went on");
    let s = stats(&d).to_string();
    assert!(
        e.kind() == std::io::ErrorKind::ConnectionReset && s.contains("service_reset_sent"),
        "not reset ({e}): {s}"
    );
    drop(long);
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap();
    }
}

#[test]
fn containers_reach_a_service_by_vip_and_hairpin() {
    if !can_run_system_tests("containers_reach_a_service_by_vip_and_hairpin") {
        return;
    }
    let (_tmp, mut d, client) = rig("svcvip");
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "app", "subnet": "10.83.0.0/24"}),
    );
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "other", "subnet": "10.84.0.0/24"}),
    );
    let gw = Ipv4Addr::new(10, 83, 0, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let b1 = container(&d, "app", Ipv4Addr::new(10, 83, 0, 11), gw);
    let b2 = container(&d, "app", Ipv4Addr::new(10, 83, 0, 12), gw);
    let servers = vec![
        serve(&b1, "b1", stop.clone()),
        serve(&b2, "b2", stop.clone()),
    ];
    let c = container(&d, "app", Ipv4Addr::new(10, 83, 0, 20), gw);
    let far = container(
        &d,
        "other",
        Ipv4Addr::new(10, 84, 0, 20),
        Ipv4Addr::new(10, 84, 0, 1),
    );
    let created = ctl_ok(
        &d,
        &[
            "service",
            "create",
            "api",
            "--network",
            "app",
            "--port",
            "80:8080",
            "--publish",
            "9090:8080",
            "--vip",
            "10.83.0.100",
        ],
    );
    assert!(created.contains("10.83.0.100"), "{created}");
    for ip in ["10.83.0.11", "10.83.0.12"] {
        ctl_ok(&d, &["service", "backend", "add", "api", "--ip", ip]);
    }
    let vip = SocketAddr::from((Ipv4Addr::new(10, 83, 0, 100), 80));
    let published = SocketAddr::from((UPLINK_IP, 9090));
    // By VIP from the service's own network: the backend sees the gateway (hairpin SNAT).
    let mut seen = HashMap::new();
    retry(&d, &c, vip);
    for k in 0..40 {
        let (b, addr) = once(&c, vip, k).unwrap();
        assert_eq!(addr, gw.to_string());
        *seen.entry(b).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both backends get VIP connections: {seen:?}");
    // A backend reaching its own service's VIP, landing on itself or the other.
    for k in 0..10 {
        once(&b1, vip, k).unwrap();
    }
    // The published port from the service's own network (hairpin) and from another network
    // (whose address the backend sees).
    assert_eq!(retry(&d, &c, published).1, gw.to_string());
    assert_eq!(retry(&d, &far, published).1, "10.84.0.20");
    // From beyond the uplink.
    assert_eq!(retry(&d, &client, published).1, CLIENT_IP.to_string());
    // The trace shows the load-balancing decision.
    ctl_ok(&d, &["trace", "add", "1"]);
    once(&client, published, 3).unwrap();
    let t = ctl_ok(&d, &["trace", "show"]);
    assert!(t.contains("load balanced"), "{t}");

    // The service is in the exported configuration, and comes back after a restart.
    let doc = call(&d, cmd::CONFIG_EXPORT, json!({}));
    assert_eq!(doc["services"][0]["name"], "api", "{doc:#}");
    assert_eq!(doc["services"][0]["backends"].as_array().unwrap().len(), 2);
    d.restart().unwrap();
    let ls = ctl_ok(&d, &["service", "ls"]);
    assert!(ls.contains("api") && ls.contains("10.83.0.100"), "{ls}");
    retry(&d, &c, vip);
    ctl_ok(&d, &["service", "rm", "api"]);
    assert!(
        once(&c, vip, 0).is_err(),
        "the VIP answers after service rm"
    );
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap();
    }
}

#[test]
fn two_workers_balance_every_connection() {
    if !can_run_system_tests("two_workers_balance_every_connection") {
        return;
    }
    let (_tmp, d, client) = rig_with("svc2w", &["--cores", "0,1"]);
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "pair", "subnet": "10.85.0.0/24"}),
    );
    let gw = Ipv4Addr::new(10, 85, 0, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let b1 = container(&d, "pair", Ipv4Addr::new(10, 85, 0, 11), gw);
    let b2 = container(&d, "pair", Ipv4Addr::new(10, 85, 0, 12), gw);
    let servers = vec![
        serve(&b1, "b1", stop.clone()),
        serve(&b2, "b2", stop.clone()),
    ];
    let c = container(&d, "pair", Ipv4Addr::new(10, 85, 0, 20), gw);
    ctl_ok(
        &d,
        &[
            "service",
            "create",
            "duo",
            "--network",
            "pair",
            "--port",
            "80:8080",
            "--publish",
            "8081:8080",
        ],
    );
    for ip in ["10.85.0.11", "10.85.0.12"] {
        ctl_ok(&d, &["service", "backend", "add", "duo", "--ip", ip]);
    }
    let info = call(&d, cmd::SERVICE_INSPECT, json!({"name": "duo"}));
    let vip: Ipv4Addr = info["vip"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        vip,
        Ipv4Addr::new(10, 85, 0, 254),
        "the highest free address"
    );
    let published = SocketAddr::from((UPLINK_IP, 8081));
    let by_vip = SocketAddr::from((vip, 80));
    retry(&d, &client, published);
    retry(&d, &c, by_vip);
    // Whichever worker a packet arrives on, it reaches its connection's owner.
    for k in 0..80 {
        once(&client, published, k)
            .unwrap_or_else(|e| panic!("published {k}: {e}; stats: {}", stats(&d)));
        if k % 2 == 0 {
            once(&c, by_vip, k).unwrap_or_else(|e| panic!("vip {k}: {e}; stats: {}", stats(&d)));
        }
    }
    let st = stats(&d);
    let handed: u64 = st["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["counters"]["service_handed_off"].as_u64())
        .sum();
    eprintln!("packets handed to their connection's owner: {handed}");
    assert!(!st.to_string().contains("service_other_worker"), "{st}");
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap();
    }
}

/// The state `service inspect` gives backend `ip` of `svc`.
fn backend_state(d: &DaemonProcess, svc: &str, ip: &str) -> String {
    let info = call(d, cmd::SERVICE_INSPECT, json!({"name": svc}));
    info["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["ip"] == ip)
        .map(|b| b["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Waits (at most 15 s) for backend `ip` of `svc` to be in `state`.
fn wait_state(d: &DaemonProcess, svc: &str, ip: &str, state: &str) {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if backend_state(d, svc, ip) == state {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{ip} never became {state}: {}; stats: {}",
        backend_state(d, svc, ip),
        stats(d)
    );
}

#[test]
fn health_checks_take_a_dead_backend_out_and_back() {
    if !can_run_system_tests("health_checks_take_a_dead_backend_out_and_back") {
        return;
    }
    let (_tmp, d, client) = rig("svchc");
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "hc", "subnet": "10.86.0.0/24"}),
    );
    let gw = Ipv4Addr::new(10, 86, 0, 1);
    let b1 = container(&d, "hc", Ipv4Addr::new(10, 86, 0, 11), gw);
    let b2 = container(&d, "hc", Ipv4Addr::new(10, 86, 0, 12), gw);
    let (stop1, stop2) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let s1 = serve(&b1, "b1", stop1.clone());
    let s2 = serve(&b2, "b2", stop2.clone());
    ctl_ok(
        &d,
        &[
            "service",
            "create",
            "hc",
            "--network",
            "hc",
            "--publish",
            "9191:8080",
            "--check",
            "tcp",
            "--interval",
            "1",
        ],
    );
    for ip in ["10.86.0.11", "10.86.0.12"] {
        ctl_ok(&d, &["service", "backend", "add", "hc", "--ip", ip]);
    }
    let to = SocketAddr::from((UPLINK_IP, 9191));
    retry(&d, &client, to);
    assert_eq!(backend_state(&d, "hc", "10.86.0.12"), "up");
    // b2's server stops (its port answers SYNs with resets): it fails its checks and gets
    // no new connection.
    stop2.store(true, Ordering::Relaxed);
    s2.join().unwrap();
    wait_state(&d, "hc", "10.86.0.12", "unhealthy");
    for k in 0..20 {
        let (b, _) = once(&client, to, k)
            .unwrap_or_else(|e| panic!("connection {k}: {e}; stats: {}", stats(&d)));
        assert_eq!(b, "b1", "an unhealthy backend got a new connection");
    }
    // It listens again: it passes and comes back.
    let stop3 = Arc::new(AtomicBool::new(false));
    let s3 = serve(&b2, "b2", stop3.clone());
    wait_state(&d, "hc", "10.86.0.12", "up");
    let mut seen = HashMap::new();
    for k in 0..30 {
        *seen.entry(once(&client, to, k).unwrap().0).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "b2 is back: {seen:?}");
    let inspect = ctl_ok(&d, &["service", "inspect", "hc"]);
    assert!(inspect.contains("tcp every 1s"), "{inspect}");
    stop1.store(true, Ordering::Relaxed);
    stop3.store(true, Ordering::Relaxed);
    s1.join().unwrap();
    s3.join().unwrap();
}

#[test]
fn ingress_mode_reaches_a_backend_on_another_host_over_the_overlay() {
    if !can_run_system_tests("ingress_mode_reaches_a_backend_on_another_host_over_the_overlay") {
        return;
    }
    let tmp = TempDir::new("svcmesh");
    let bed = vswitch::testbed::OverlayHosts::new(&bin("vswitchd"), &tmp.0, &[]).unwrap();
    for (i, d) in bed.daemons.iter().enumerate() {
        call(
            d,
            cmd::NETWORK_CREATE,
            json!({"name": "mesh", "vni": 4301, "subnet": "10.90.0.0/24"}),
        );
        call(
            d,
            cmd::PEER_ADD,
            json!({"network": "mesh", "vtep": format!("192.168.80.{}", 2 - i)}),
        );
    }
    let gw = "10.90.0.1";
    let stop = Arc::new(AtomicBool::new(false));
    let (local, _) = bed
        .container(0, "mesh", Ipv4Addr::new(10, 90, 0, 11))
        .unwrap();
    let (remote, _) = bed
        .container(1, "mesh", Ipv4Addr::new(10, 90, 0, 12))
        .unwrap();
    for ns in [&local, &remote] {
        ns.ip(&["route", "add", "default", "via", gw]).unwrap();
    }
    let servers = vec![
        serve(&local, "local", stop.clone()),
        serve(&remote, "remote", stop.clone()),
    ];
    // The client: host 1's own namespace, on the underlay beside the uplink.
    let client = &bed.hosts[0];
    client
        .ip(&["addr", "add", "192.168.80.101/24", "dev", "br0"])
        .unwrap();
    let d = &bed.daemons[0];
    ctl_ok(
        d,
        &[
            "service",
            "create",
            "web",
            "--network",
            "mesh",
            "--publish",
            "8080:8080",
            "--ingress-ip",
            "10.90.0.251",
        ],
    );
    for ip in ["10.90.0.11", "10.90.0.12"] {
        ctl_ok(d, &["service", "backend", "add", "web", "--ip", ip]);
    }
    let to = SocketAddr::from((Ipv4Addr::new(192, 168, 80, 1), 8080));
    retry(d, client, to);
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut count: HashMap<String, u32> = HashMap::new();
    for k in 0..40 {
        let (b, addr) = once(client, to, k)
            .unwrap_or_else(|e| panic!("connection {k}: {e}; stats: {}", stats(d)));
        *count.entry(b.clone()).or_default() += 1;
        seen.insert(b, addr);
    }
    eprintln!("40 connections: {count:?}, seen as {seen:?}");
    assert_eq!(count.len(), 2, "both hosts' backends: {count:?}");
    // The local backend sees the client; the one on the other host, this host's ingress
    // address (its answer must come back here, not to its own host's gateway).
    assert_eq!(seen["local"], "192.168.80.101");
    assert_eq!(seen["remote"], "10.90.0.251");
    // `--mode host`: the same backends, only the local one takes connections.
    ctl_ok(
        d,
        &[
            "service",
            "create",
            "web-host",
            "--network",
            "mesh",
            "--publish",
            "8082:8080",
            "--mode",
            "host",
            "--ingress-ip",
            "10.90.0.251",
        ],
    );
    for ip in ["10.90.0.11", "10.90.0.12"] {
        ctl_ok(d, &["service", "backend", "add", "web-host", "--ip", ip]);
    }
    let to = SocketAddr::from((Ipv4Addr::new(192, 168, 80, 1), 8082));
    for k in 0..20 {
        let (b, _) = once(client, to, k)
            .unwrap_or_else(|e| panic!("host mode {k}: {e}; stats: {}", stats(d)));
        assert_eq!(
            b, "local",
            "a host-mode service chose another host's backend"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap();
    }
}
