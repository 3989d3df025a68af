//! `vswitchd --metrics` against the real thing: `promtool check metrics` on a scrape, and a real
//! Prometheus server that scrapes the daemon and answers a query for a port's counter. Needs
//! root (namespaces, TAP devices) and Debian's `prometheus` package (`prometheus`, `promtool`).

use control::proto::cmd;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{unique_name, DaemonProcess, Netns};

/// Longest wait for Prometheus to start and scrape the daemon.
const SCRAPE_WAIT: Duration = Duration::from_secs(60);

/// Whether Prometheus's programs are installed; without them the test is skipped (a failure
/// under `CI=true`, where `.ci/run` installs them).
fn have_prometheus(test: &str) -> bool {
    let missing: Vec<&str> = ["prometheus", "promtool"]
        .into_iter()
        .filter(|p| Command::new(p).arg("--version").output().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (apt-get install prometheus)",
        missing.join(" and ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: cannot run under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// A local TCP address nobody listens on right now.
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `GET path` over HTTP/1.0 (so that no server answers in chunks): status line and body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(String, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("reply is not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// A Prometheus server we started; killed by its pid (our child) and reaped on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: vswitch\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = free_addr();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, addr, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Child::kill signals this child's own pid, which stays ours until it is reaped below.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `vswitch_port_rx_packets_total{port=port}` in a Prometheus query reply.
fn port_value(reply: &Value, port: &str) -> Option<f64> {
    reply["data"]["result"]
        .as_array()?
        .iter()
        .find(|r| r["metric"]["port"] == port)?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn prometheus_scrapes_port_counters_that_promtool_accepts() {
    let test = "prometheus_scrapes_port_counters_that_promtool_accepts";
    if !can_run_system_tests(test) || !have_prometheus(test) {
        return;
    }
    let tmp = TempDir::new("metrics");
    let metrics = free_addr();
    let d = DaemonProcess::start_with(
        &bin("vswitchd"),
        &tmp.0,
        None,
        &["--metrics", &metrics.to_string()],
    )
    .unwrap();
    let mut c = d.client().unwrap();
    c.call(
        cmd::NETWORK_CREATE,
        json!({"name": "mon", "subnet": "10.71.0.0/24", "gateway": "10.71.0.254"}),
    )
    .unwrap();
    let mut hosts = Vec::new();
    for i in 1..=2u8 {
        let ns = Netns::create(&unique_name("vsm")).unwrap();
        let port = unique_name("vsmp");
        c.call(
            cmd::PORT_ADD,
            json!({"name": port, "type": "tap", "network": "mon", "netns": ns.name()}),
        )
        .unwrap_or_else(|e| panic!("port add: {e}; daemon log:\n{}", d.log_tail()));
        ns.ip(&["addr", "add", &format!("10.71.0.{i}/24"), "dev", &port])
            .unwrap();
        hosts.push((ns, port));
    }
    let (a_ns, a_port) = &hosts[0];
    assert!(
        a_ns.ping(Ipv4Addr::new(10, 71, 0, 2), 3).unwrap(),
        "ping failed; log:\n{}",
        d.log_tail()
    );

    // (1) One scrape, as Prometheus would see it, passes promtool's parser and linter.
    let (status, body) = http_get(metrics, "/metrics").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let line = body
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "vswitch_port_rx_packets_total{{port=\"{a_port}\"}} "
            ))
        })
        .unwrap_or_else(|| panic!("no rx series for {a_port}:\n{body}"));
    let rx: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(rx > 0, "{line}");
    for family in [
        "vswitch_drops_total",
        "vswitch_events_total",
        "vswitch_worker_busy_seconds_total",
        "vswitch_worker_idle_seconds_total",
        "vswitch_fdb_entries",
        "vswitch_build_info",
    ] {
        assert!(
            body.contains(&format!("\n# TYPE {family} ")),
            "{family} missing"
        );
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(http_get(metrics, "/")
        .unwrap()
        .0
        .starts_with("HTTP/1.1 404 "));

    // (2) A real Prometheus scrapes the daemon; the port's counter comes back through its API.
    let prom = Prometheus::start(&tmp.0, metrics);
    let query = "/api/v1/query?query=vswitch_port_rx_packets_total";
    let deadline = Instant::now() + SCRAPE_WAIT;
    let value = loop {
        if let Ok((status, body)) = http_get(prom.addr, query) {
            if status.contains(" 200 ") {
                let reply: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("query reply is not JSON ({e}): {body}"));
                if let Some(v) = port_value(&reply, a_port) {
                    break v;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus had no vswitch_port_rx_packets_total{{port=\"{a_port}\"}} within {SCRAPE_WAIT:?}; its log:\n{}\ndaemon log:\n{}",
            prom.log_tail(),
            d.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(value > 0.0, "value {value}");
    let (_, up) = http_get(prom.addr, "/api/v1/query?query=up%7Bjob%3D%22vswitch%22%7D").unwrap();
    assert!(
        up.contains("\"value\":[") && up.contains(",\"1\"]"),
        "target not up: {up}"
    );
    drop(prom);
}

/// Runs `vswitchd` with `--metrics value` on a scratch socket and state; it must not start.
fn refused_start(tmp: &TempDir, value: &str) -> String {
    let out = Command::new(bin("vswitchd"))
        .arg("--socket")
        .arg(tmp.0.join("s.sock"))
        .arg("--state-dir")
        .arg(tmp.0.join("state"))
        .args(["--buffers", "256", "--metrics", value])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with --metrics {value}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(!tmp.0.join("s.sock").exists(), "socket left behind");
    errors[0].to_string()
}

#[test]
fn a_bad_or_taken_metrics_address_stops_the_start_in_one_line() {
    let tmp = TempDir::new("metrics-bad");
    let e = refused_start(&tmp, "localhost");
    assert!(
        e.contains("--metrics 'localhost' is not an address and port")
            && e.contains("127.0.0.1:9477"),
        "{e}"
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = refused_start(&tmp, &addr);
    assert!(
        e.contains(&format!("cannot listen for metrics on {addr}")) && e.contains("--metrics"),
        "{e}"
    );
}
