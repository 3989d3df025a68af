//! The soak mode (`testbed --soak SECONDS`): the real daemon under mixed legitimate traffic and
//! faults for a long time, its memory sampled throughout.
//!
//! Topology (namespaces and devices made here, removed at the end on every path): a network
//! `soak` (10.97.0.0/24, gateway 10.97.0.1) with containers A and B (TAP ports), a faulty
//! container F on the same network, and an uplink TAP into a "server" namespace (192.168.97.1;
//! the uplink address 192.168.97.2 is the NAT address).
//!
//! Legitimate, checked: TCP transfers A -> B one after another (every byte checked), and ICMP
//! echo A -> server through NAT every 100 ms (every one must come back). Faults, all the time:
//! F sends malformed and hostile frames at about 2 000 per second (runts, bad IPv4 headers,
//! fragments, DNS garbage to the gateway, TCP without SYN through NAT, STP, oversize, spoofed
//! sources) through a raw socket; every 2 s the configuration churns (a DNS name added and
//! removed, a port added and removed, a network created and removed) and a control client sends
//! garbage lines. Every `sample` the daemon's resident memory and its drops by reason are
//! recorded.
//!
//! It fails when a transfer fails or loses a byte, a ping is lost, a configuration change is
//! refused, or the daemon's memory after the first quarter grows by more than 8 MiB.

use super::contenders::vswitchd_exe;
use super::net;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::testbed::{tcp_transfer, unique_name, DaemonProcess, Netns};

/// Allowed growth of the daemon's resident memory after the first quarter of the run.
const RSS_SLACK_KB: u64 = 8 * 1024;

/// What a soak run saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Seconds run.
    pub seconds: f64,
    /// TCP transfers completed, and their bytes (all checked).
    pub transfers: u64,
    /// Bytes moved by them.
    pub bytes: u64,
    /// Pings sent through NAT, and lost.
    pub pings: u64,
    /// Pings that did not come back.
    pub pings_lost: u64,
    /// Hostile frames sent.
    pub bad_frames: u64,
    /// Configuration changes made (and undone).
    pub changes: u64,
    /// (seconds since start, resident KiB) samples.
    pub rss: Vec<(f64, u64)>,
    /// Drops by reason at the end.
    pub drops: BTreeMap<String, u64>,
}

fn call(d: &DaemonProcess, cmd: &str, args: Value) -> Result<Value, String> {
    d.client()?
        .call(cmd, args)
        .map_err(|e| format!("{cmd}: {e}"))
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A raw packet socket on `dev` inside `ns`.
fn raw_socket(ns: &Netns, dev: &str) -> Result<OwnedFd, String> {
    let dev = dev.to_string();
    dataplane::sys::netns::run_in(Some(&ns.path()), move || {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                i32::from((libc::ETH_P_ALL as u16).to_be()),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(dev).map_err(std::io::Error::other)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set below describe the device.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(sock)
    })
    .map_err(|e| format!("raw socket on {}: {e}", ns.name()))
}

/// The hostile frames F sends, from its MAC `src` (the gateway's MAC is `gw`).
fn hostile(src: [u8; 6], gw: [u8; 6]) -> Vec<Vec<u8>> {
    let eth = |dst: [u8; 6], src: [u8; 6], ty: u16, body: &[u8]| {
        let mut f = Vec::with_capacity(14 + body.len());
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ty.to_be_bytes());
        f.extend_from_slice(body);
        f
    };
    let ip = |s: [u8; 4], d: [u8; 4], proto: u8, ttl: u8, frag: u16, ihl: u8, body: &[u8]| {
        let mut h = vec![0u8; 20];
        h[0] = 0x40 | ihl;
        h[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[8] = ttl;
        h[9] = proto;
        h[12..16].copy_from_slice(&s);
        h[16..20].copy_from_slice(&d);
        let c = !dataplane::checksum::fold(dataplane::checksum::sum16(&h, 0));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(body);
        h
    };
    let me = [10, 97, 0, 4];
    let far = [192, 168, 97, 1];
    let gwip = [10, 97, 0, 1];
    let udp = [0x13, 0x88, 0, 53, 0, 8, 0, 0];
    let ack = [
        0x13, 0x88, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let mut dns = vec![0x13, 0x88, 0, 53, 0, 20, 0, 0];
    dns.extend_from_slice(&[0xde, 0xad, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let v4 = 0x0800;
    vec![
        vec![0x02; 10],
        eth(gw, src, v4, &ip(me, far, 17, 64, 0, 4, &udp)),
        eth(gw, src, v4, &ip(me, far, 0, 64, 0, 5, &udp)),
        eth(gw, src, v4, &ip(me, far, 17, 1, 0, 5, &udp)),
        eth(gw, src, v4, &ip(me, far, 17, 64, 0x2000, 5, &udp)),
        eth(gw, src, v4, &ip(me, far, 17, 64, 0x0010, 5, &udp)),
        eth(gw, src, v4, &ip(me, gwip, 17, 64, 0, 5, &dns)),
        eth(gw, src, v4, &ip(me, far, 6, 64, 0, 5, &ack)),
        eth(gw, src, v4, &ip([10, 9, 9, 9], far, 17, 64, 0, 5, &udp)),
        eth([1, 0x80, 0xc2, 0, 0, 0], src, 0x0026, &[0; 46]),
        eth([0xff; 6], src, 0x88a8, &[0; 46]),
        eth(gw, src, v4, &ip(me, far, 17, 64, 0, 5, &[0u8; 1600])),
        eth([0xff; 6], [0; 6], v4, &[0; 46]),
    ]
}

/// Runs the soak for `seconds`, sampling every `sample`.
pub fn soak(seconds: f64, sample: Duration) -> Result<SoakReport, String> {
    let exe = vswitchd_exe()?;
    let scratch = std::env::temp_dir().join(unique_name("soak"));
    let out = soak_in(&exe, &scratch, seconds, sample);
    let _ = std::fs::remove_dir_all(&scratch);
    out
}

fn soak_in(
    exe: &std::path::Path,
    scratch: &std::path::Path,
    seconds: f64,
    sample: Duration,
) -> Result<SoakReport, String> {
    let d = DaemonProcess::start(exe, scratch)?;
    let pid = d.pid().ok_or("no daemon pid")?;
    let server = Netns::create(&unique_name("vssoaks"))?;
    let up = unique_name("vssoup");
    call(
        &d,
        "port.add",
        json!({"name": up, "type": "tap", "netns": server.name()}),
    )?;
    server.ip(&["addr", "add", "192.168.97.1/24", "dev", &up])?;
    call(
        &d,
        "uplink.set",
        json!({"port": up, "ip": "192.168.97.2/24", "gateway": "192.168.97.1"}),
    )?;
    call(
        &d,
        "network.create",
        json!({"name": "soak", "subnet": "10.97.0.0/24"}),
    )?;
    let attach = |last: u8| -> Result<(Netns, String), String> {
        let ns = Netns::create(&unique_name("vssoak"))?;
        let port = unique_name("vssoap");
        call(
            &d,
            "port.add",
            json!({"name": port, "type": "tap", "network": "soak", "netns": ns.name()}),
        )?;
        ns.ip(&["addr", "add", &format!("10.97.0.{last}/24"), "dev", &port])?;
        ns.ip(&["route", "add", "default", "via", "10.97.0.1"])?;
        Ok((ns, port))
    };
    let (a, _) = attach(2)?;
    let (b, _) = attach(3)?;
    let (f, fport) = attach(4)?;
    let info = call(&d, "network.inspect", json!({"name": "soak"}))?;
    let id = info["id"]
        .as_u64()
        .and_then(|i| u16::try_from(i).ok())
        .ok_or("no network id")?;
    let gw_mac = vswitch::config::GatewayConf::mac_of(id);
    let f_mac = net::mac_of(f.name(), &fport)?;
    let raw = raw_socket(&f, &fport)?;
    // Warm the paths: ARP for the gateway and each other.
    let far = Ipv4Addr::new(192, 168, 97, 1);
    if !a.ping(far, 3)? || !a.ping(Ipv4Addr::new(10, 97, 0, 3), 3)? {
        return Err(format!("no traffic at the start; log:\n{}", d.log_tail()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut report = SoakReport::default();
    let bad = Arc::new(AtomicU64::new(0));

    // Faults: hostile frames from F, about 2 000 a second.
    let faults = std::thread::spawn({
        let (stop, bad) = (stop.clone(), bad.clone());
        let frames = hostile(f_mac, gw_mac);
        move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    let fr = &frames[i % frames.len()];
                    i += 1;
                    // SAFETY: sending a buffer of the length given on our own socket.
                    let n = unsafe { libc::send(raw.as_raw_fd(), fr.as_ptr().cast(), fr.len(), 0) };
                    if n > 0 {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });

    // Legitimate TCP, A -> B, transfer after transfer, every byte checked.
    let tcp = std::thread::spawn({
        let (stop, ap, bp) = (stop.clone(), a.path(), b.path());
        move || -> Result<(u64, u64), String> {
            let (mut n, mut bytes) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let t = tcp_transfer(
                    &bp,
                    Ipv4Addr::new(10, 97, 0, 3),
                    &ap,
                    8 << 20,
                    Duration::from_secs(60),
                )?;
                n += 1;
                bytes += t.bytes;
            }
            Ok((n, bytes))
        }
    });

    let start = Instant::now();
    let mut next_sample = start;
    let mut next_churn = start + Duration::from_secs(2);
    let mut churn_n = 0u64;
    let mut failure: Option<String> = None;
    while Instant::now() < deadline && !net::stopping() {
        // A ping through NAT every 100 ms, each awaited.
        let r = a.ping_icmp(far, 1, Duration::from_secs(1))?;
        report.pings += 1;
        report.pings_lost += u64::from(r.received() == 0);
        if Instant::now() >= next_sample {
            report
                .rss
                .push((start.elapsed().as_secs_f64(), rss_kb(pid)));
            next_sample += sample;
        }
        if Instant::now() >= next_churn {
            next_churn += Duration::from_secs(2);
            churn_n += 1;
            let name = format!("svc{churn_n}");
            let port = unique_name("vssoc");
            let steps: Vec<(&str, Value)> = vec![
                (
                    "endpoint.add",
                    json!({"name": name, "network": "soak", "ip": "10.97.0.50"}),
                ),
                (
                    "network.create",
                    json!({"name": format!("churn{churn_n}"), "subnet": "10.98.0.0/24"}),
                ),
                (
                    "port.add",
                    json!({"name": port, "type": "tap", "network": format!("churn{churn_n}")}),
                ),
                ("port.rm", json!({"name": port})),
                ("network.rm", json!({"name": format!("churn{churn_n}")})),
                ("endpoint.rm", json!({"name": name, "network": "soak"})),
            ];
            for (cmd, args) in steps {
                if let Err(e) = call(&d, cmd, args) {
                    failure.get_or_insert(format!("configuration change refused: {e}"));
                }
                report.changes += 1;
            }
            // A client that sends garbage, then goes.
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(d.socket()) {
                use std::io::Write;
                let _ = s.write_all(b"not json\n{\"id\":1,\"cmd\":\"nope\"}\n\xff\xfe\n");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = faults.join();
    match tcp.join() {
        Ok(Ok((n, bytes))) => {
            report.transfers = n;
            report.bytes = bytes;
        }
        Ok(Err(e)) => {
            failure.get_or_insert(format!("a TCP transfer failed: {e}"));
        }
        Err(_) => {
            failure.get_or_insert("the TCP thread panicked".to_string());
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.bad_frames = bad.load(Ordering::Relaxed);
    report.rss.push((report.seconds, rss_kb(pid)));
    if let Ok(s) = call(&d, "stats", json!({})) {
        if let Some(m) = s["drops"].as_object() {
            report.drops = m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect();
        }
    }
    // Everything the daemon made goes with it; the namespaces with their handles.
    drop(d);
    if let Some(e) = failure {
        return Err(e);
    }
    if report.pings_lost > 0 {
        return Err(format!(
            "{} of {} pings through NAT lost under the faults",
            report.pings_lost, report.pings
        ));
    }
    if report.transfers == 0 {
        return Err("no TCP transfer completed".into());
    }
    let quarter = report.seconds / 4.0;
    let base = report
        .rss
        .iter()
        .find(|(t, _)| *t >= quarter)
        .map_or(0, |&(_, kb)| kb);
    let peak = report.rss.iter().map(|&(_, kb)| kb).max().unwrap_or(0);
    if base > 0 && peak > base + RSS_SLACK_KB {
        return Err(format!(
            "the daemon's memory grew from {base} KiB to {peak} KiB after the first quarter"
        ));
    }
    Ok(report)
}

/// The report as text.
pub fn render(r: &SoakReport) -> String {
    let mut s = format!(
        "soak: {:.0} s; {} TCP transfers A -> B, {} MiB, every byte checked; {} pings through NAT, {} lost; \
         {} hostile frames; {} configuration changes\n",
        r.seconds,
        r.transfers,
        r.bytes >> 20,
        r.pings,
        r.pings_lost,
        r.bad_frames,
        r.changes
    );
    s.push_str("daemon resident memory (s: KiB):");
    for (t, kb) in &r.rss {
        s.push_str(&format!(" {t:.0}: {kb}"));
    }
    s.push_str("\ndrops by reason:\n");
    let mut v: Vec<_> = r.drops.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    for (k, n) in v {
        s.push_str(&format!("  {k:<28} {n}\n"));
    }
    s
}
