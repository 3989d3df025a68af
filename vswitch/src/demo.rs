//! `vswitchd demo`: what a newcomer runs first. It makes two "containers" (network namespaces),
//! starts a switch of its own (this same binary, on a private socket and state directory),
//! attaches both containers to one network through TAP ports, shows ping and a checked TCP
//! transfer across the switch with the switch's counters; then an overlay network between two
//! "hosts", each with a switch of its own, carrying ping and TCP in VXLAN; then a published
//! port spreading connections over three backends (a service); and removes everything it made.

use crate::testbed::{tcp_transfer, unique_name, DaemonProcess, Netns, OverlayHosts};
use control::client::Client;
use control::proto::{cmd, FdbEntry, StatsInfo};
use serde_json::json;
use std::net::Ipv4Addr;
use std::time::Duration;

fn step(msg: &str) {
    println!("\n==> {msg}");
}

fn call(
    c: &mut Client,
    command: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, String> {
    c.call(command, args)
        .map_err(|e| format!("{command}: {}", e.message))
}

/// Where `program` is on `PATH`, if it is there and executable.
fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs this same demo again under sudo, in place of this process; returns only on failure.
fn run_again_with_sudo(bytes: u64) -> String {
    use std::os::unix::process::CommandExt;
    const WHY: &str = "the demo makes network namespaces and TAP devices, which needs root";
    let Some(sudo) = find_in_path("sudo") else {
        return format!("{WHY}; run it as root (sudo is not installed)");
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return format!("{WHY}, and I cannot find my own binary to run with sudo: {e}"),
    };
    eprintln!("The demo needs root (network namespaces, TAP devices): running it again with sudo.");
    // `--no-sudo`: should sudo not make us root, the second run fails instead of asking again.
    let e = std::process::Command::new(&sudo)
        .arg("--")
        .arg(&exe)
        .args(["demo", "--no-sudo", "--bytes", &bytes.to_string()])
        .exec();
    format!("{WHY}; running it with {} failed: {e}", sudo.display())
}

/// Runs the demo, moving `bytes` over TCP. Not run as root, it runs itself again under sudo
/// when `sudo_if_needed` and sudo is installed, and fails with a clear reason otherwise.
pub fn run(bytes: u64, sudo_if_needed: bool) -> Result<(), String> {
    if !crate::testbed::is_root() {
        if sudo_if_needed {
            return Err(run_again_with_sudo(bytes));
        }
        return Err(
            "the demo makes network namespaces and TAP devices, which needs root; run it as root \
             or with sudo"
                .into(),
        );
    }
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        return Err(
            "the demo needs iproute2's `ip` command; install it (apt install iproute2)".into(),
        );
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let dir = std::env::temp_dir().join(format!("vswitch-demo-{}", std::process::id()));
    let result = run_in(&exe, &dir, bytes);
    let _ = std::fs::remove_dir_all(&dir);
    match &result {
        Ok(()) => {
            println!("\nDemo finished: namespaces, TAP devices and the demo switch are gone.")
        }
        Err(_) => println!("\nDemo failed; everything it made has been removed."),
    }
    result
}

fn run_in(exe: &std::path::Path, dir: &std::path::Path, bytes: u64) -> Result<(), String> {
    step("Creating two containers (network namespaces)");
    let a = Netns::create(&unique_name("vsdemo-a"))?;
    let b = Netns::create(&unique_name("vsdemo-b"))?;
    println!("    {} and {}", a.name(), b.name());

    step("Starting a private vswitchd");
    let daemon = DaemonProcess::start(exe, dir)?;
    println!(
        "    pid {}, socket {}",
        daemon.pid().unwrap_or(0),
        daemon.socket().display()
    );
    let mut c = daemon.client()?;

    step("Creating network 'demo' and attaching both containers through TAP ports");
    call(
        &mut c,
        cmd::NETWORK_CREATE,
        json!({"name": "demo", "subnet": "10.200.0.0/24", "gateway": "10.200.0.254"}),
    )?;
    let (ip_a, ip_b) = (Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2));
    let mut port_names = Vec::new();
    for (ns, ip) in [(&a, ip_a), (&b, ip_b)] {
        let port = unique_name("vsd");
        call(
            &mut c,
            cmd::PORT_ADD,
            json!({"name": port, "type": "tap", "network": "demo", "netns": ns.name()}),
        )?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &port])?;
        println!(
            "    port {port}: TAP device inside {} with address {ip}/24",
            ns.name()
        );
        port_names.push(port);
    }

    step(&format!("ping {ip_b} from {}", a.name()));
    let r = a.ping_icmp(ip_b, 3, Duration::from_secs(1))?;
    print!("{}", indent(&r.to_string()));
    if r.received() == 0 {
        return Err(format!(
            "ping across the switch failed: no reply from {ip_b}"
        ));
    }

    step(&format!(
        "TCP: {} MB from {} to {}, every byte checked",
        bytes >> 20,
        b.name(),
        a.name()
    ));
    let t = tcp_transfer(&a.path(), ip_a, &b.path(), bytes, Duration::from_secs(120))?;
    println!(
        "    {} bytes in {:.2} s: {:.0} Mbit/s",
        t.bytes,
        t.elapsed.as_secs_f64(),
        t.mbps()
    );

    step("The switch's MAC table (vswitchctl fdb ls)");
    let fdb: Vec<FdbEntry> =
        serde_json::from_value(call(&mut c, cmd::FDB_LS, json!({}))?).map_err(|e| e.to_string())?;
    for e in &fdb {
        println!(
            "    {}  {}  {}  {}",
            e.network,
            e.mac,
            e.port.as_deref().unwrap_or("-"),
            e.kind
        );
    }

    step("The switch's counters (vswitchctl stats)");
    let stats: StatsInfo =
        serde_json::from_value(call(&mut c, cmd::STATS, json!({}))?).map_err(|e| e.to_string())?;
    println!(
        "    {:<12} {:>10} {:>14} {:>10} {:>14}",
        "PORT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES"
    );
    for p in &stats.ports {
        let k = &p.counters;
        println!(
            "    {:<12} {:>10} {:>14} {:>10} {:>14}",
            p.name, k.rx_packets, k.rx_bytes, k.tx_packets, k.tx_bytes
        );
    }
    for w in &stats.workers {
        let interesting: Vec<String> = w
            .counters
            .iter()
            .filter(|(k, _)| !k.contains("loops"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("    worker {}: {}", w.id, interesting.join(" "));
    }
    if stats.drops.is_empty() {
        println!("    drops: none");
    } else {
        let d: Vec<String> = stats
            .drops
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("    drops: {}", d.join(" "));
    }

    step("Cleaning up the first switch");
    for p in &port_names {
        call(&mut c, cmd::PORT_RM, json!({"name": p}))?;
    }
    drop(daemon);
    drop((a, b));

    overlay(exe, dir)?;
    services(exe, dir)
}

/// A backend's server for the services part: writes `NAME\n` on every connection, then closes.
/// Stops when `stop` is set, or after 60 s.
fn greeter(
    ns: &Netns,
    name: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    use std::io::Write;
    let l = dataplane::sys::netns::run_in(Some(&ns.path()), || {
        std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8080))
    })
    .map_err(|e| format!("listen in {}: {e}", ns.name()))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(std::thread::spawn(move || {
        let end = std::time::Instant::now() + Duration::from_secs(60);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < end {
            match l.accept() {
                Ok((mut c, _)) => {
                    let _ = c.set_nonblocking(false);
                    let _ = writeln!(c, "{name}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }))
}

/// Part three: a published port on the uplink address, load-balanced over three backends.
fn services(exe: &std::path::Path, dir: &std::path::Path) -> Result<(), String> {
    use std::io::BufRead;
    step("Services: a switch with an uplink, three backend containers, a client beyond the uplink");
    let daemon = DaemonProcess::start(exe, &dir.join("services"))?;
    let mut c = daemon.client()?;
    let client = Netns::create(&unique_name("vsdemo-cl"))?;
    let up = unique_name("vsdup");
    call(
        &mut c,
        cmd::PORT_ADD,
        json!({"name": up, "type": "tap", "netns": client.name()}),
    )?;
    client.ip(&["addr", "add", "192.168.210.1/24", "dev", &up])?;
    call(
        &mut c,
        cmd::UPLINK_SET,
        json!({"port": up, "ip": "192.168.210.2/24", "gateway": "192.168.210.1"}),
    )?;
    call(
        &mut c,
        cmd::NETWORK_CREATE,
        json!({"name": "web", "subnet": "10.210.0.0/24"}),
    )?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut backends = Vec::new();
    let mut servers = Vec::new();
    for (i, name) in ["web-1", "web-2", "web-3"].into_iter().enumerate() {
        let ns = Netns::create(&unique_name("vsdemo-w"))?;
        let port = unique_name("vsdw");
        call(
            &mut c,
            cmd::PORT_ADD,
            json!({"name": port, "type": "tap", "network": "web", "netns": ns.name()}),
        )?;
        let ip = Ipv4Addr::new(10, 210, 0, 11 + i as u8);
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &port])?;
        ns.ip(&["route", "add", "default", "via", "10.210.0.1"])?;
        servers.push(greeter(&ns, name, stop.clone())?);
        println!("    backend {name}: {ip}:8080 in {}", ns.name());
        backends.push(ns);
    }
    step("vswitchctl service create front --network web --publish 8080:8080, three backends (weights 1, 1, 2)");
    call(
        &mut c,
        cmd::SERVICE_CREATE,
        json!({"name": "front", "network": "web", "publish": ["8080:8080"]}),
    )?;
    for (i, w) in [1, 1, 2].into_iter().enumerate() {
        call(
            &mut c,
            cmd::SERVICE_BACKEND_ADD,
            json!({"service": "front", "ip": format!("10.210.0.{}", 11 + i), "weight": w}),
        )?;
    }
    step("40 connections from the client to 192.168.210.2:8080");
    let to = std::net::SocketAddr::from((Ipv4Addr::new(192, 168, 210, 2), 8080));
    let mut count = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..40 {
        let got = dataplane::sys::netns::run_in(Some(&client.path()), || {
            let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut line = String::new();
            std::io::BufReader::new(s).read_line(&mut line)?;
            Ok(line.trim().to_string())
        });
        match got {
            Ok(name) => *count.entry(name).or_default() += 1,
            Err(e) => println!("    a connection failed: {e}"),
        }
    }
    for (name, n) in &count {
        println!("    {name}: {n} connections {}", "#".repeat(*n as usize));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in servers {
        let _ = s.join();
    }
    let info: control::proto::ServiceInfo = serde_json::from_value(call(
        &mut c,
        cmd::SERVICE_INSPECT,
        json!({"name": "front"}),
    )?)
    .map_err(|e| e.to_string())?;
    step("vswitchctl service inspect front");
    for b in &info.backends {
        println!(
            "    {}  weight {}  {}  {:.1}% of new connections (Maglev, {} slots)",
            b.ip, b.weight, b.state, b.share, info.table_size
        );
    }
    if count.len() < 3 {
        return Err(format!(
            "the connections did not spread over the three backends: {count:?}"
        ));
    }
    step("Cleaning up the services part");
    drop(c);
    drop(daemon);
    drop((client, backends));
    Ok(())
}

/// Part two: an overlay network between two hosts, each with its own switch.
fn overlay(exe: &std::path::Path, dir: &std::path::Path) -> Result<(), String> {
    step("Overlay: two hosts (namespaces joined by an underlay veth), a switch on each, network 'ov' (VNI 4242)");
    let bed = OverlayHosts::new(exe, &dir.join("overlay"), &[("ov", 4242)])?;
    println!(
        "    host 1: underlay 192.168.80.1, switch pid {}",
        bed.daemons[0].pid().unwrap_or(0)
    );
    println!(
        "    host 2: underlay 192.168.80.2, switch pid {}",
        bed.daemons[1].pid().unwrap_or(0)
    );
    let (ip1, ip2) = (Ipv4Addr::new(10, 201, 0, 1), Ipv4Addr::new(10, 201, 0, 2));
    let (c1, _) = bed.container(0, "ov", ip1)?;
    let (c2, _) = bed.container(1, "ov", ip2)?;
    println!(
        "    container {} on host 1 ({ip1}), container {} on host 2 ({ip2}), MTU 1450",
        c1.name(),
        c2.name()
    );

    step(&format!(
        "ping {ip2} across the overlay (VXLAN over the underlay)"
    ));
    let r = c1.ping_icmp(ip2, 3, Duration::from_secs(2))?;
    print!("{}", indent(&r.to_string()));
    if r.received() == 0 {
        return Err(format!(
            "ping across the overlay failed: no reply from {ip2}"
        ));
    }
    step("TCP: 20 MB from host 2 to host 1 over VXLAN, every byte checked");
    let t = tcp_transfer(
        &c1.path(),
        ip1,
        &c2.path(),
        20 << 20,
        Duration::from_secs(60),
    )?;
    println!(
        "    {} bytes in {:.2} s: {:.0} Mbit/s",
        t.bytes,
        t.elapsed.as_secs_f64(),
        t.mbps()
    );

    step("Host 1's switch: MAC table and overlay counters");
    let mut c = bed.daemons[0].client()?;
    let fdb: Vec<FdbEntry> =
        serde_json::from_value(call(&mut c, cmd::FDB_LS, json!({}))?).map_err(|e| e.to_string())?;
    for e in &fdb {
        let behind = e
            .port
            .clone()
            .or(e.vtep.as_ref().map(|v| format!("vtep {v}")))
            .unwrap_or_default();
        println!("    {}  {}  {}  {}", e.network, e.mac, behind, e.kind);
    }
    let stats: StatsInfo =
        serde_json::from_value(call(&mut c, cmd::STATS, json!({}))?).map_err(|e| e.to_string())?;
    for w in &stats.workers {
        let shown: Vec<String> = w
            .counters
            .iter()
            .filter(|(k, _)| {
                k.starts_with("vxlan") || k.starts_with("arp") || k.starts_with("neigh")
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("    worker {}: {}", w.id, shown.join(" "));
    }
    step("Cleaning up the overlay");
    drop((c1, c2));
    drop(bed);
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}
