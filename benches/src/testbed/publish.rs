//! The published-port pair: what `docker run -p 8080:80` programs (a Linux bridge holding the
//! network's gateway, the kernel routing, iptables `DNAT` from the host's address to the
//! container, netfilter connection tracking) against vswitchd's service (a published port on
//! the uplink address, load-balanced in the gateway over one backend), in the testbed's
//! generator (the backend "container") and sink (a client beyond the host) namespaces:
//!
//! ```text
//!  pubbridge:
//!  gen ns (backend)                 dut ns                                      sink ns (client)
//!  gen0 10.85.0.2 ==veth== dg -[brpub 10.85.0.1] <- route, DNAT <- ds 10.86.0.1 ==veth== sink0 10.86.0.2
//!
//!  pubtap:
//!  gen ns (backend)                     (vswitchd in dut ns)                    sink ns (client)
//!  pg 10.87.0.2 ==TAP== [network pub 10.87.0.0/24 | service: uplink 10.88.0.1:8080,8081] ==TAP== pu 10.88.0.2
//! ```
//!
//! Two figures, each run `runs` times: the connection rate (one client thread in the sink
//! namespace connecting to port 8081 of the host's address, reading the backend's one byte and
//! closing with a reset, so that neither end's TIME_WAIT nor conntrack's fills up; the backend's
//! accept loop on 7000), and TCP throughput (iperf3 from the client to port 8080, the backend's
//! iperf3 server on 5201). The connection rate is printed and kept in the notes (the testbed's
//! table has packet-rate and TCP columns only).
//!
//! Everything the pair adds is removed when it ends, on every path.

use super::contenders::{call, daemon_stats, vswitchd_exe, Config, Outcome, Reaped};
use super::net::{self, run, stopping, Testbed};
use dataplane::sys::netns;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the pair's ratios are taken against.
pub const KERNEL_NAME: &str = "linux bridge+dnat";

/// Published ports and the backend's.
const IPERF_FRONT: u16 = 8080;
const IPERF_BACK: u16 = 5201;
const CONN_FRONT: u16 = 8081;
const CONN_BACK: u16 = 7000;

/// Commands run in a namespace when dropped, last first (the undo list).
struct Undo(String, Vec<Vec<String>>);

impl Undo {
    fn new(ns: &str) -> Undo {
        Undo(ns.to_string(), Vec::new())
    }

    fn exec(&mut self, args: &[&str], back: &[&str]) -> Result<(), String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args))?;
        if !back.is_empty() {
            self.1.push(back.iter().map(|s| s.to_string()).collect());
        }
        Ok(())
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for c in self.1.iter().rev() {
            let _ = run(Command::new("ip")
                .args(["netns", "exec", &self.0])
                .args(c.iter()));
        }
    }
}

/// The backend's accept loop: one byte per connection, then close. Stops with `stop`.
fn accept_loop(
    ns: &str,
    ip: Ipv4Addr,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<u64>, String> {
    let l = netns::run_in(Some(&net::ns_path(ns)), || {
        TcpListener::bind(SocketAddr::from((ip, CONN_BACK)))
    })
    .map_err(|e| format!("backend listen: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, _)) => {
                    let _ = c.write_all(b"x");
                    n += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        n
    }))
}

/// Makes closing `s` send a reset (SO_LINGER 0): no TIME_WAIT left behind.
fn reset_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this function's caller owns, with a pointer to a live
    // `linger` and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Connections per second from `ns` to `front` over `secs` (each: connect, one byte, reset).
fn conn_rate(ns: &str, front: Ipv4Addr, secs: f64) -> Result<f64, String> {
    let to = SocketAddr::from((front, CONN_FRONT));
    let path = net::ns_path(ns);
    let secs = Duration::from_secs_f64(secs);
    netns::run_in(Some(&path), move || {
        let start = Instant::now();
        let mut n = 0u64;
        let mut failed = 0u64;
        while start.elapsed() < secs {
            let ok = (|| -> std::io::Result<()> {
                let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b)?;
                reset_on_close(&s);
                Ok(())
            })();
            if ok.is_ok() {
                n += 1;
            } else {
                failed += 1;
                if failed > 100 {
                    return Err(std::io::Error::other(format!(
                        "{failed} connections failed ({n} worked)"
                    )));
                }
            }
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })
    .map_err(|e| format!("connection rate: {e}"))
}

/// TCP Gbit/s from `ns` to `front`:8080 by iperf3 (the server already listening behind it).
fn iperf3(ns: &str, front: Ipv4Addr, secs: f64) -> Result<f64, String> {
    let secs = format!("{}", secs.ceil().max(1.0));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "iperf3",
            "-c",
            &front.to_string(),
            "-J",
        ])
        .args(["-p", &IPERF_FRONT.to_string(), "-t", &secs])
        .args(["--connect-timeout", "2000"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run iperf3: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("iperf3 printed no report ({e})"))?;
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .filter(|b| *b > 0.0)
        .map(|b| b / 1e9)
        .ok_or_else(|| {
            format!(
                "iperf3: {}",
                v.get("error")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("no received throughput")
            )
        })
}

/// Both figures, `cfg.runs` times each, into `out`.
fn measure(
    cfg: &Config,
    out: &mut Outcome,
    backend: (&str, Ipv4Addr),
    client: &str,
    front: Ipv4Addr,
) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = accept_loop(backend.0, backend.1, stop.clone())?;
    let mut rates = Vec::new();
    let r = (|| {
        for i in 0..cfg.runs {
            if stopping() {
                return Err("stopped".to_string());
            }
            let r = conn_rate(client, front, cfg.seconds)?;
            println!("    connection run {}: {r:.0} connections/s", i + 1);
            rates.push(r);
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let accepted = acceptor.join().unwrap_or(0);
    r?;
    out.notes.push(format!(
        "connections/s: one client thread, each connection reads one byte and closes with a reset ({accepted} accepted)"
    ));
    out.cps = rates;
    if !net::have("iperf3") {
        out.notes
            .push("tcp: iperf3 not installed (apt install iperf3)".into());
        return Ok(());
    }
    let _server = Reaped::spawn(
        "iperf3 server",
        Command::new("ip")
            .args(["netns", "exec", backend.0, "iperf3", "-s", "-A", "0"])
            .args(["-B", &backend.1.to_string(), "-p", &IPERF_BACK.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    net::sleep(Duration::from_millis(300));
    for i in 0..cfg.runs {
        if stopping() {
            break;
        }
        match iperf3(client, front, cfg.tcp_seconds) {
            Ok(g) => {
                println!("    tcp run {}: {g:.2} Gbit/s (iperf3)", i + 1);
                out.gbps.push(g);
            }
            Err(e) => out.notes.push(format!("tcp run {}: {e}", i + 1)),
        }
    }
    Ok(())
}

/// `docker run -p`: a bridge `brpub` holding the gateway, DNAT of the host's ports to the
/// container in the DUT namespace (Docker's rules: a `DOCKER` chain reached from `PREROUTING`
/// for the host's address, `DNAT` per published port, `FORWARD` accepting the published
/// traffic and what comes back, `MASQUERADE` for the network's own way out).
pub fn kernel_publish(tb: &Testbed, cfg: &Config) -> Outcome {
    let mut out = Outcome::new(
        KERNEL_NAME,
        "sink0 10.86.0.2 (client) ==veth== ds 10.86.0.1 [iptables DNAT :8080,:8081, routing, bridge brpub 10.85.0.1] dg ==veth== gen0 10.85.0.2 (backend)",
    );
    out.versus = Some(KERNEL_NAME.into());
    if !net::have("iptables") {
        return out.skip("iptables is not installed (apt install iptables)");
    }
    let (g, s) = (&tb.gen_link, &tb.sink_link);
    let r = (|| {
        let mut gu = Undo::new(tb.gen.name());
        let mut su = Undo::new(tb.sink.name());
        gu.exec(
            &["ip", "addr", "add", "10.85.0.2/24", "dev", &g.outer.1],
            &["ip", "addr", "del", "10.85.0.2/24", "dev", &g.outer.1],
        )?;
        gu.exec(
            &["ip", "route", "add", "10.86.0.0/24", "via", "10.85.0.1"],
            &["ip", "route", "del", "10.86.0.0/24"],
        )?;
        su.exec(
            &["ip", "addr", "add", "10.86.0.2/24", "dev", &s.outer.1],
            &["ip", "addr", "del", "10.86.0.2/24", "dev", &s.outer.1],
        )?;
        su.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"], &[])?;
        let mut dut = Undo::new(tb.dut.name());
        let (dg, ds) = (g.inner.1.as_str(), s.inner.1.as_str());
        dut.exec(
            &["ip", "link", "add", "brpub", "type", "bridge"],
            &["ip", "link", "del", "brpub"],
        )?;
        dut.exec(
            &["ip", "link", "set", dg, "master", "brpub"],
            &["ip", "link", "set", dg, "nomaster"],
        )?;
        dut.exec(&["ip", "addr", "add", "10.85.0.1/24", "dev", "brpub"], &[])?;
        dut.exec(&["ip", "link", "set", "brpub", "up"], &[])?;
        dut.exec(
            &["ip", "addr", "add", "10.86.0.1/24", "dev", ds],
            &["ip", "addr", "del", "10.86.0.1/24", "dev", ds],
        )?;
        dut.exec(
            &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            &["sysctl", "-qw", "net.ipv4.ip_forward=0"],
        )?;
        dut.exec(
            &["iptables", "-t", "nat", "-N", "DOCKER"],
            &["iptables", "-t", "nat", "-X", "DOCKER"],
        )?;
        let jump = ["PREROUTING", "-d", "10.86.0.1/32", "-j", "DOCKER"];
        let mut rules: Vec<(Vec<&str>, bool)> = vec![(jump.to_vec(), true)];
        let (i8080, i8081) = (
            format!("10.85.0.2:{IPERF_BACK}"),
            format!("10.85.0.2:{CONN_BACK}"),
        );
        let (f8080, f8081) = (IPERF_FRONT.to_string(), CONN_FRONT.to_string());
        for (front, to) in [(&f8080, &i8080), (&f8081, &i8081)] {
            rules.push((
                vec![
                    "DOCKER",
                    "!",
                    "-i",
                    "brpub",
                    "-p",
                    "tcp",
                    "--dport",
                    front,
                    "-j",
                    "DNAT",
                    "--to-destination",
                    to,
                ],
                true,
            ));
        }
        rules.push((
            vec![
                "POSTROUTING",
                "-s",
                "10.85.0.0/24",
                "!",
                "-o",
                "brpub",
                "-j",
                "MASQUERADE",
            ],
            true,
        ));
        rules.push((
            vec![
                "FORWARD",
                "-o",
                "brpub",
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
            false,
        ));
        rules.push((
            vec![
                "FORWARD",
                "-d",
                "10.85.0.2/32",
                "!",
                "-i",
                "brpub",
                "-o",
                "brpub",
                "-p",
                "tcp",
                "-j",
                "ACCEPT",
            ],
            false,
        ));
        rules.push((
            vec!["FORWARD", "-i", "brpub", "!", "-o", "brpub", "-j", "ACCEPT"],
            false,
        ));
        for (rule, nat) in &rules {
            let table: &[&str] = if *nat { &["-t", "nat"] } else { &[] };
            let a: Vec<&str> = ["iptables"]
                .iter()
                .chain(table)
                .chain(&["-A"])
                .chain(rule)
                .copied()
                .collect();
            let d: Vec<&str> = ["iptables"]
                .iter()
                .chain(table)
                .chain(&["-D"])
                .chain(rule)
                .copied()
                .collect();
            dut.exec(&a, &d)?;
        }
        net::sleep(Duration::from_millis(200));
        let r = measure(
            cfg,
            &mut out,
            (tb.gen.name(), Ipv4Addr::new(10, 85, 0, 2)),
            tb.sink.name(),
            Ipv4Addr::new(10, 86, 0, 1),
        );
        drop(dut);
        drop((gu, su));
        r
    })();
    if let Err(e) = r {
        out.notes.push(e);
    }
    out
}

/// vswitchd: a TAP port `pg` in network `pub` (10.87.0.0/24) with its kernel end, the backend,
/// in the generator's namespace; the uplink TAP `pu` (10.88.0.1) with its kernel end, the
/// client, in the sink's; a service publishing 8080 and 8081 over the one backend.
pub fn vswitchd_publish(tb: &Testbed, cfg: &Config) -> Outcome {
    let id = std::process::id() % 100_000;
    let (pg, pu) = (format!("pg{id}"), format!("pu{id}"));
    let mut out = Outcome::new(
        "vswitchd published port",
        "pu 10.88.0.2 (client) ==TAP== [vswitchd: uplink 10.88.0.1 :8080,:8081 -> service -> network 10.87.0.0/24] ==TAP== pg 10.87.0.2 (backend)",
    );
    out.versus = Some(KERNEL_NAME.into());
    let exe = match vswitchd_exe() {
        Ok(e) => e,
        Err(e) => return out.skip(e),
    };
    let dir = cfg.scratch.join("vswitchd-publish");
    let r = (|| {
        let d = vswitch::testbed::DaemonProcess::start_in(&exe, &dir, Some(tb.dut.name()))?;
        call(
            &d,
            "network.create",
            json!({"name": "pub", "subnet": "10.87.0.0/24"}),
        )?;
        call(
            &d,
            "port.add",
            json!({"name": pg, "type": "tap", "netns": tb.gen.name(), "network": "pub"}),
        )?;
        call(
            &d,
            "port.add",
            json!({"name": pu, "type": "tap", "netns": tb.sink.name()}),
        )?;
        call(&d, "uplink.set", json!({"port": pu, "ip": "10.88.0.1/24"}))?;
        call(
            &d,
            "service.create",
            json!({"name": "pub", "network": "pub",
                   "publish": [format!("{IPERF_FRONT}:{IPERF_BACK}"), format!("{CONN_FRONT}:{CONN_BACK}")]}),
        )?;
        call(
            &d,
            "service.backend.add",
            json!({"service": "pub", "ip": "10.87.0.2"}),
        )?;
        tb.gen.ip(&["addr", "add", "10.87.0.2/24", "dev", &pg])?;
        tb.gen.ip(&["link", "set", &pg, "up"])?;
        tb.gen
            .ip(&["route", "add", "10.88.0.0/24", "via", "10.87.0.1"])?;
        tb.sink.ip(&["addr", "add", "10.88.0.2/24", "dev", &pu])?;
        tb.sink.ip(&["link", "set", &pu, "up"])?;
        let _ = run(Command::new("ip").args([
            "netns",
            "exec",
            tb.sink.name(),
            "sysctl",
            "-qw",
            "net.ipv4.tcp_tw_reuse=1",
        ]));
        // The backend announces itself to the gateway (the switch also asks by ARP).
        let _ = tb.gen.ping(Ipv4Addr::new(10, 87, 0, 1), 1);
        let r = measure(
            cfg,
            &mut out,
            (tb.gen.name(), Ipv4Addr::new(10, 87, 0, 2)),
            tb.sink.name(),
            Ipv4Addr::new(10, 88, 0, 1),
        );
        out.notes.push(daemon_stats(&d));
        drop(d);
        r
    })();
    if let Err(e) = r {
        out.notes.push(e);
    }
    out
}
