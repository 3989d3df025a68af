//! The cluster store at scale (issue 14): a generator writes a simulated cluster of 1 000 hosts
//! and 100 000 endpoints into a real etcd while one real `vswitchd --store` watches; measured:
//! the time until its tables hold them all, its memory, and how long one change takes to reach
//! its MAC table (p50/p99). Not run in CI (it needs etcd and takes a minute); run it with
//!
//! ```text
//! cargo build --release -p vswitch --bin vswitchd
//! sudo -E cargo bench -p benches --bench etcd_scale        # ETCD_SCALE_HOSTS / _ENDPOINTS / _CHANGES
//! ```
//!
//! etcd runs on loopback ports chosen free, with a data directory of its own, stopped by its pid.
//! The daemon needs no uplink or ports: every simulated host is a remote VTEP (a tunnel) and
//! every endpoint a remote MAC in the workers' tables.

use control::client::Client;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vswitch::store::base64;
use vswitch::store::etcd::Etcd;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Kills (SIGTERM, then SIGKILL) a child we started, by its pid, on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped, so its pid is not reused.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..200 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn vswitchd() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/release/deps/etcd_scale-HASH -> target/release/vswitchd
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("vswitchd"))
        .expect("inside target/");
    assert!(
        p.exists(),
        "{} is missing: cargo build --release -p vswitch --bin vswitchd",
        p.display()
    );
    p
}

fn call(c: &mut Client, cmd: &str, args: Value) -> Value {
    c.call(cmd, args.clone())
        .unwrap_or_else(|e| panic!("{cmd} {args}: {}", e.message))
}

/// Puts `kvs` in transactions of at most 128 operations (etcd's default limit).
fn put_all(e: &mut Etcd, kvs: &[(String, Vec<u8>)]) {
    for chunk in kvs.chunks(128) {
        let ops: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| {
                json!({"request_put": {"key": base64::encode(k.as_bytes()), "value": base64::encode(v)}})
            })
            .collect();
        e.call("/v3/kv/txn", &json!({"success": ops})).expect("txn");
    }
}

fn mac_of(i: u64) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x5c, b[4], b[5], b[6], b[7]]
}

fn mac_text(m: &[u8; 6]) -> String {
    control::text::format_mac(m)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !vswitch::testbed::is_root() {
        eprintln!("etcd_scale: skipped: vswitchd needs root (sudo -E cargo bench -p benches --bench etcd_scale)");
        return;
    }
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!("etcd_scale: skipped: etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let hosts = env_or("ETCD_SCALE_HOSTS", 1000);
    let endpoints = env_or("ETCD_SCALE_ENDPOINTS", 100_000);
    let changes = env_or("ETCD_SCALE_CHANGES", 200);
    let per_host = endpoints.div_ceil(hosts.max(1));

    let dir = std::env::temp_dir().join(vswitch::testbed::unique_name("vswitch-etcd-scale-"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cport, pport) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{cport}");
    let peer_url = format!("http://127.0.0.1:{pport}");
    let etcd_log = std::fs::File::create(dir.join("etcd.log")).unwrap();
    let etcd_proc = Proc(
        Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .args(["--quota-backend-bytes", &(4u64 << 30).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(etcd_log)
            .spawn()
            .expect("etcd starts"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{cport}").parse().unwrap();
    let mut e = Etcd::new(vec![addr], Duration::from_secs(10));
    let up = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        e.range(b"x", b"", 0, 1).is_ok()
    });
    assert!(
        up,
        "etcd did not start; see {}",
        dir.join("etcd.log").display()
    );

    let sock = dir.join("vswitchd.sock");
    let start_daemon = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("vswitchd.log"))
            .unwrap();
        let d = Proc(
            Command::new(vswitchd())
                .arg("--socket")
                .arg(&sock)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .args(["--store", &format!("etcd://127.0.0.1:{cport}")])
                .args(["--host-id", "bench", "--buffers", "4096"])
                .args([
                    "--log-level",
                    "info,vswitch::store=debug,vswitch::daemon::cluster=debug,vswitch::daemon::commit=debug",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("vswitchd starts"),
        );
        let mut c = None;
        for _ in 0..400 {
            if let Ok(mut cl) = Client::connect(&sock) {
                if cl.call("status", Value::Null).is_ok() {
                    c = Some(cl);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        (d, c.expect("vswitchd answers"))
    };
    let (d, mut c) = start_daemon();
    let pid = d.0.id();
    for _ in 0..200 {
        if call(&mut c, "cluster.ls", json!({}))["store"]["reachable"] == true {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    call(
        &mut c,
        "network.create",
        json!({"name": "ov", "vni": 4242, "scope": "global", "subnet": "10.250.0.0/16"}),
    );
    std::thread::sleep(Duration::from_millis(500));
    let rss0 = rss_kib(pid);

    // The simulated cluster, written as fast as etcd takes it while the daemon watches.
    let vtep = |h: usize| format!("10.{}.{}.{}", 100 + h / 65536, (h / 256) % 256, h % 256);
    let mut kvs: Vec<(String, Vec<u8>)> = Vec::with_capacity(endpoints + 2 * hosts);
    for h in 0..hosts {
        kvs.push((
            format!("/vswitch/hosts/sim{h}"),
            format!(r#"{{"vtep":"{}","since":1}}"#, vtep(h)).into_bytes(),
        ));
        kvs.push((format!("/vswitch/members/ov/sim{h}"), Vec::new()));
    }
    let mut n = 0u64;
    'outer: for h in 0..hosts {
        for _ in 0..per_host {
            if n as usize >= endpoints {
                break 'outer;
            }
            let m = mac_text(&mac_of(n));
            kvs.push((
                format!("/vswitch/endpoints/ov/sim{h}/{m}"),
                format!(r#"{{"mac":"{m}"}}"#).into_bytes(),
            ));
            n += 1;
        }
    }
    let t0 = Instant::now();
    put_all(&mut e, &kvs);
    let written = t0.elapsed();
    let mut held = None;
    let mut last = Value::Null;
    for _ in 0..6000 {
        last = call(&mut c, "network.inspect", json!({"name": "ov"}));
        if last["static_macs"].as_u64() == Some(n)
            && last["peers"].as_array().map(Vec::len) == Some(hosts)
        {
            held = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = held.unwrap_or_else(|| {
        panic!(
            "the daemon never held them all: {} static MACs, {} peers; log in {}",
            last["static_macs"],
            last["peers"].as_array().map_or(0, Vec::len),
            dir.display()
        )
    });
    let rss1 = rss_kib(pid);
    // The workers' tables, not just the configuration: page through them.
    let mut in_table = 0u64;
    let mut after: Option<Value> = None;
    loop {
        let mut args = json!({"network": "ov", "limit": 1024});
        if let Some(a) = &after {
            args["after"] = a.clone();
        }
        let page = call(&mut c, "fdb.ls", args);
        let page = page.as_array().cloned().unwrap_or_default();
        in_table += page.iter().filter(|e| e["kind"] == "static").count() as u64;
        match page.last() {
            Some(l) if page.len() == 1024 => {
                after = Some(json!({"network": "ov", "mac": l["mac"]}))
            }
            _ => break,
        }
    }

    // One change at a time: a new endpoint on some host, until the daemon's table has it.
    let mut lat = Vec::with_capacity(changes);
    for i in 0..changes {
        let idx = 1_000_000 + i as u64;
        let mac = mac_of(idx);
        let prev = mac_of(idx - 1);
        let m = mac_text(&mac);
        let key = format!("/vswitch/endpoints/ov/sim{}/{m}", i % hosts.max(1));
        let t = Instant::now();
        e.put(&key, format!(r#"{{"mac":"{m}"}}"#).as_bytes(), 0)
            .expect("put");
        let mut seen = false;
        for _ in 0..20_000 {
            let page = call(
                &mut c,
                "fdb.ls",
                json!({"network": "ov", "limit": 1, "after": {"network": "ov", "mac": mac_text(&prev)}}),
            );
            if page[0]["mac"] == m.as_str() {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        assert!(seen, "change {i} never arrived");
        lat.push(t.elapsed());
    }
    lat.sort();
    let info = call(&mut c, "cluster.ls", json!({}));
    let total = n + changes as u64;
    // A restart: the state file brings the last state back at once; the agent lists the store
    // again and replaces its share (here: identical, so nothing to commit).
    drop(c);
    drop(d);
    let t = Instant::now();
    let (d, mut c) = start_daemon();
    let answering = t.elapsed();
    let restored = call(&mut c, "network.inspect", json!({"name": "ov"}))["static_macs"].as_u64();
    let mut listed = None;
    for _ in 0..2400 {
        let i = call(&mut c, "cluster.ls", json!({}));
        if i["endpoints"].as_u64() == Some(total) {
            listed = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    println!("etcd_scale: {hosts} hosts, {n} endpoints, one daemon watching (release build)");
    println!(
        "  generator wrote them in        {:.2} s",
        written.as_secs_f64()
    );
    println!(
        "  daemon tables held them all at {:.2} s after the first write",
        held.as_secs_f64()
    );
    println!("  static MACs in the workers' tables: {in_table}; peers (tunnels): {hosts}");
    println!(
        "  daemon RSS {} MiB before, {} MiB after (+{} MiB)",
        rss0 / 1024,
        rss1 / 1024,
        rss1.saturating_sub(rss0) / 1024
    );
    println!(
        "  one change (put -> in the MAC table), {} changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("  store revision seen: {}", info["store"]["revision"]);
    println!(
        "  restart: answering after {:.2} s with {} static MACs from the state file; store listed again after {:.2} s",
        answering.as_secs_f64(),
        restored.unwrap_or(0),
        listed.map_or(f64::NAN, |l| l.as_secs_f64())
    );
    drop(c);
    drop(d);
    drop(etcd_proc);
    // The daemon's debug lines time each batch's steps (agent, validation, persist, publish).
    if let Ok(keep) = std::env::var("ETCD_SCALE_KEEP_LOG") {
        let _ = std::fs::copy(dir.join("vswitchd.log"), keep);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
