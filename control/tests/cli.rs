//! Runs the built `vswitchctl` against a fake daemon: a thread that accepts one connection on a
//! temporary Unix socket, checks the one request line, and answers with a canned reply.

use control::proto::{ErrorBody, ErrorCode, Reply, Request};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest any one step may take before the test gives up.
const LIMIT: Duration = Duration::from_secs(20);
/// Pause between polls of a non-blocking socket or a running child.
const POLL: Duration = Duration::from_millis(5);

/// A socket path unique to this process and test, removed on drop.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("vswitchctl-test-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The reply the fake daemon sends.
enum Answer {
    Ok(Value),
    Err(ErrorCode, &'static str),
}

/// Binds `path` and serves one request on a thread: asserts its `cmd` and `args`, sends `answer`.
fn fake_daemon(path: &Path, cmd: &'static str, args: Value, answer: Answer) -> JoinHandle<()> {
    fake_session(path, vec![(cmd, args, answer)])
}

/// Like [`fake_daemon`] for several requests on one connection, which it then closes.
fn fake_session(path: &Path, exchanges: Vec<(&'static str, Value, Answer)>) -> JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("bind the fake daemon's socket");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    thread::spawn(move || {
        let deadline = Instant::now() + LIMIT;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "vswitchctl never connected");
                    thread::sleep(POLL);
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        stream.set_read_timeout(Some(LIMIT)).expect("read timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        for (cmd, args, answer) in exchanges {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read the request line");
            let req: Request = serde_json::from_str(line.trim_end()).expect("request is JSON");
            assert_eq!(req.cmd, cmd, "command sent");
            assert_eq!(req.args, args, "arguments sent");
            let reply = match answer {
                Answer::Ok(v) => Reply::ok(req.id, v),
                Answer::Err(code, msg) => Reply::err(req.id, ErrorBody::new(code, msg)),
            };
            let mut text = serde_json::to_string(&reply).expect("encode reply");
            text.push('\n');
            (&stream).write_all(text.as_bytes()).expect("send reply");
        }
    })
}

/// Runs `vswitchctl --socket PATH ARGS...`, killing it if it outlives [`LIMIT`].
fn vswitchctl(socket: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("VSWITCH_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vswitchctl");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for vswitchctl") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vswitchctl {args:?} ran longer than {LIMIT:?}");
        }
        thread::sleep(POLL);
    };
    // The outputs are small enough to fit in the pipes, so reading after exit cannot block.
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_end(&mut stderr)
        .expect("read stderr");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Waits for the fake daemon and re-raises its assertion failures.
fn join(daemon: JoinHandle<()>) {
    if let Err(panic) = daemon.join() {
        std::panic::resume_unwind(panic);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Asserts that the command failed with `code` and exactly one `error:` line on stderr.
fn assert_one_error_line(out: &Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status; stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(
        stderr.starts_with("error: ") && stderr.ends_with('\n'),
        "{stderr:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {:?}",
        text(&out.stdout)
    );
    stderr
}

fn network_info() -> Value {
    json!({"name": "blue", "subnet": "10.1.0.0/24", "vni": 100, "encrypted": true, "id": 1,
           "ports": [], "learned_macs": 0, "static_macs": 0, "effective_mac_limit": 65536,
           "effective_aging_secs": 300})
}

#[test]
fn network_create_sends_its_settings_and_confirms() {
    let sock = SocketPath::new();
    let daemon = fake_daemon(
        &sock.0,
        "network.create",
        json!({"name": "blue", "subnet": "10.1.0.0/24", "vni": 100, "encrypted": true}),
        Answer::Ok(network_info()),
    );
    let out = vswitchctl(
        &sock.0,
        &[
            "network",
            "create",
            "blue",
            "--subnet",
            "10.1.0.0/24",
            "--vni",
            "100",
            "--encrypted",
        ],
    );
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "network 'blue' created (id 1)\n");
    assert!(out.stderr.is_empty());
}

#[test]
fn daemon_error_is_one_line_and_exit_1() {
    let sock = SocketPath::new();
    let daemon = fake_daemon(
        &sock.0,
        "network.inspect",
        json!({"name": "blue"}),
        Answer::Err(ErrorCode::NotFound, "network 'blue' does not exist"),
    );
    let out = vswitchctl(&sock.0, &["network", "inspect", "blue"]);
    join(daemon);
    let stderr = assert_one_error_line(&out, 1);
    assert_eq!(stderr, "error: network 'blue' does not exist\n");
}

#[test]
fn json_flag_prints_the_result_as_sent() {
    let sock = SocketPath::new();
    let result = json!([network_info()]);
    let daemon = fake_daemon(&sock.0, "network.ls", json!({}), Answer::Ok(result.clone()));
    let out = vswitchctl(&sock.0, &["network", "ls", "--json"]);
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(printed, result);
}

#[test]
fn port_ls_prints_a_table() {
    let sock = SocketPath::new();
    let port = json!({"name": "tap0", "type": "tap", "network": "blue", "id": 2,
        "device": "tap0", "state": "up", "queue_count": 1, "queue_workers": [0],
        "effective_mtu": 1500, "learned_macs": 0,
        "counters": {"rx_packets": 7, "rx_bytes": 700, "tx_packets": 8, "tx_bytes": 800,
                     "tx_dropped": 0}});
    let daemon = fake_daemon(&sock.0, "port.ls", json!({}), Answer::Ok(json!([port])));
    let out = vswitchctl(&sock.0, &["port", "ls"]);
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "NAME  TYPE  DEVICE  NETWORK  NETNS  STATE  QUEUES  RX_PKTS  TX_PKTS\n\
         tap0  tap   tap0    blue     -      up          1        7        8\n"
    );
}

#[test]
fn fdb_rm_sends_a_canonical_mac_and_prints_nothing_with_json() {
    let sock = SocketPath::new();
    let daemon = fake_daemon(
        &sock.0,
        "fdb.rm",
        json!({"network": "blue", "mac": "02:aa:00:00:00:01"}),
        Answer::Ok(Value::Null),
    );
    let out = vswitchctl(
        &sock.0,
        &[
            "--json",
            "fdb",
            "rm",
            "--network",
            "blue",
            "--mac",
            "02-AA-0-0-0-1",
        ],
    );
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn bad_mac_is_rejected_without_connecting() {
    let stderr = assert_rejected_without_connecting(&[
        "fdb",
        "add",
        "--network",
        "blue",
        "--mac",
        "02:42:zz:11:00:02",
        "--port",
        "tap0",
    ]);
    assert!(
        stderr.contains("'02:42:zz:11:00:02' is not a MAC address"),
        "{stderr}"
    );
}

#[test]
fn encrypted_without_vni_is_rejected_in_one_line() {
    let sock = SocketPath::new();
    let out = vswitchctl(&sock.0, &["network", "create", "blue", "--encrypted"]);
    let stderr = assert_one_error_line(&out, 2);
    assert!(stderr.contains("--vni"), "{stderr}");
}

#[test]
fn missing_socket_is_one_line_with_a_hint() {
    let sock = SocketPath::new();
    let out = vswitchctl(&sock.0, &["status"]);
    let stderr = assert_one_error_line(&out, 1);
    assert!(
        stderr.starts_with(&format!("error: cannot connect to {}: ", sock.0.display())),
        "{stderr}"
    );
    assert!(stderr.contains("is vswitchd running?"), "{stderr}");
}

#[test]
fn malformed_config_file_is_named_with_its_position() {
    let sock = SocketPath::new();
    let file = sock.0.with_extension("json");
    std::fs::write(&file, "{\"version\": 1,\n  \"networks\": 7}\n").expect("write file");
    let out = vswitchctl(
        &sock.0,
        &["config", "import", file.to_str().expect("UTF-8 path")],
    );
    let _ = std::fs::remove_file(&file);
    let stderr = assert_one_error_line(&out, 1);
    assert!(
        stderr.starts_with(&format!(
            "error: {} is not a configuration document: ",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("line 2 column"), "{stderr}");
}

#[test]
fn config_import_sends_the_parsed_document() {
    let sock = SocketPath::new();
    let file = sock.0.with_extension("json");
    let doc = json!({"version": 1, "networks": [{"name": "blue", "vni": 5}],
                     "ports": [{"name": "tap0", "type": "tap", "network": "blue"}], "fdb": []});
    std::fs::write(&file, serde_json::to_string_pretty(&doc).expect("encode")).expect("write file");
    let daemon = fake_daemon(
        &sock.0,
        "config.import",
        doc,
        Answer::Ok(json!({"created": 2, "unchanged": 0})),
    );
    let out = vswitchctl(
        &sock.0,
        &["config", "import", file.to_str().expect("UTF-8 path")],
    );
    let _ = std::fs::remove_file(&file);
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("imported {}: 2 created, 0 unchanged\n", file.display())
    );
}

#[test]
fn syntax_errors_keep_clap_usage_and_exit_2() {
    let sock = SocketPath::new();
    let out = vswitchctl(&sock.0, &["port", "add", "tap0", "--type", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--type") && stderr.contains("possible values"),
        "{stderr}"
    );
}

#[test]
fn port_add_needs_a_type_unless_it_names_a_subinterface() {
    let sock = SocketPath::new();
    let out = vswitchctl(&sock.0, &["port", "add", "tap0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("--type tap"),
        "{stderr}"
    );
    let out = vswitchctl(&sock.0, &["port", "add", "uplink.4095", "--network", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("1 to 4094"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn stats_watch_repeats_until_the_daemon_goes_away() {
    let sock = SocketPath::new();
    let stats = |rx: u64| {
        json!({"ports": [{"name": "tap0", "rx_packets": rx, "rx_bytes": 0, "tx_packets": 0,
                          "tx_bytes": 0, "tx_dropped": 0}],
               "workers": [], "drops": {}})
    };
    let args = json!({"port": "tap0"});
    let daemon = fake_session(
        &sock.0,
        vec![
            ("stats", args.clone(), Answer::Ok(stats(1))),
            ("stats", args, Answer::Ok(stats(2))),
        ],
    );
    let out = vswitchctl(
        &sock.0,
        &["stats", "--port", "tap0", "--watch", "--interval", "1"],
    );
    join(daemon);
    let stdout = text(&out.stdout);
    let frame = |rx: u64| {
        format!(
            "PORT  RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  RX_DROPPED  TX_DROPPED\n\
             tap0  {rx:>7}         0        0         0           0           0\n\
             \nCOUNTER\n\nDROP  PACKETS\n"
        )
    };
    assert_eq!(stdout, format!("{}\n{}", frame(1), frame(2)));
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert_eq!(out.status.code(), Some(1));
    // Depending on timing, the third request meets a closed socket or a closed connection.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: send to daemon: ")
            || stderr == "error: the daemon closed the connection; see its log\n",
        "{stderr}"
    );
}

/// Runs a command that must fail locally: one `error:` line, exit 2, and no connection made.
fn assert_rejected_without_connecting(args: &[&str]) -> String {
    let sock = SocketPath::new();
    let listener = UnixListener::bind(&sock.0).expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let out = vswitchctl(&sock.0, args);
    let stderr = assert_one_error_line(&out, 2);
    // vswitchctl has exited, so a connection it made would be waiting in the backlog.
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("vswitchctl {args:?} connected anyway: {other:?}"),
    }
    stderr
}

#[test]
fn uplink_set_sends_its_settings_and_confirms() {
    let sock = SocketPath::new();
    let daemon = fake_daemon(
        &sock.0,
        "uplink.set",
        json!({"port": "up0", "ip": "192.168.1.10/24", "gateway": "192.168.1.1",
               "vxlan_port": 8472}),
        Answer::Ok(
            json!({"port": "up0", "ip": "192.168.1.10/24", "gateway": "192.168.1.1",
                          "vxlan_port": 8472, "mac": "02:00:00:00:00:0a",
                          "overlay_mtu": 1450, "neighbours": []}),
        ),
    );
    let out = vswitchctl(
        &sock.0,
        &[
            "uplink",
            "set",
            "up0",
            "--ip",
            "192.168.1.10/24",
            "--gateway",
            "192.168.1.1",
            "--vxlan-port",
            "8472",
        ],
    );
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "uplink set on port 'up0': 192.168.1.10/24 (mac 02:00:00:00:00:0a, overlay mtu 1450)\n"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn uplink_show_says_when_none_is_set() {
    let sock = SocketPath::new();
    let daemon = fake_daemon(&sock.0, "uplink.show", json!({}), Answer::Ok(Value::Null));
    let out = vswitchctl(&sock.0, &["uplink", "show"]);
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "no uplink set\n");
    assert!(out.stderr.is_empty());
}

#[test]
fn uplink_show_prints_settings_and_neighbours() {
    let sock = SocketPath::new();
    let daemon = fake_daemon(
        &sock.0,
        "uplink.show",
        json!({}),
        Answer::Ok(
            json!({"port": "up0", "ip": "192.168.1.10/24", "mac": "02:00:00:00:00:0a",
                          "overlay_mtu": 1450,
                          "neighbours": [["192.168.1.20", "02:00:00:00:00:14"]]}),
        ),
    );
    let out = vswitchctl(&sock.0, &["uplink", "show"]);
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "port:        up0\n\
         ip:          192.168.1.10/24\n\
         gateway:     -\n\
         mac:         02:00:00:00:00:0a\n\
         vxlan port:  4789 (default)\n\
         overlay mtu: 1450\n\
         \n\
         NEIGHBOUR     MAC\n\
         192.168.1.20  02:00:00:00:00:14\n"
    );
}

#[test]
fn peer_add_sends_network_and_vtep() {
    let sock = SocketPath::new();
    let daemon = fake_daemon(
        &sock.0,
        "peer.add",
        json!({"network": "blue", "vtep": "192.0.2.7"}),
        Answer::Ok(Value::Null),
    );
    let out = vswitchctl(
        &sock.0,
        &["peer", "add", "--network", "blue", "--vtep", "192.0.2.7"],
    );
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "peer 192.0.2.7 added to network 'blue'\n"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn peer_ls_prints_a_table() {
    let sock = SocketPath::new();
    let daemon = fake_daemon(
        &sock.0,
        "peer.ls",
        json!({"network": "blue"}),
        Answer::Ok(json!([{"network": "blue", "vtep": "192.0.2.7"},
                          {"network": "blue", "vtep": "198.51.100.20"}])),
    );
    let out = vswitchctl(&sock.0, &["peer", "ls", "--network", "blue"]);
    join(daemon);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "NETWORK  VTEP\n\
         blue     192.0.2.7\n\
         blue     198.51.100.20\n"
    );
}

#[test]
fn bad_overlay_values_are_rejected_in_one_line_without_connecting() {
    let stderr =
        assert_rejected_without_connecting(&["uplink", "set", "up0", "--ip", "192.168.1.10"]);
    assert!(
        stderr.contains("'192.168.1.10' is not an IPv4 address with a prefix length"),
        "{stderr}"
    );
    let stderr = assert_rejected_without_connecting(&[
        "uplink",
        "set",
        "up0",
        "--ip",
        "192.168.1.10/24",
        "--gateway",
        "192.168.2.1",
    ]);
    assert_eq!(
        stderr,
        "error: gateway 192.168.2.1 is outside the uplink's prefix 192.168.1.0/24; pick an address inside it\n"
    );
    let stderr = assert_rejected_without_connecting(&[
        "peer",
        "add",
        "--network",
        "blue",
        "--vtep",
        "239.1.1.1",
    ]);
    assert_eq!(
        stderr,
        "error: VTEP 239.1.1.1 is a multicast address; give one host's unicast IPv4 address\n"
    );
    let stderr =
        assert_rejected_without_connecting(&["network", "create", "blue", "--no-learn-remote"]);
    assert!(stderr.contains("--vni"), "{stderr}");
}

#[test]
fn top_once_samples_twice_and_prints_rates_as_json() {
    let sock = SocketPath::new();
    let stats = |rx: u64, busy: u64, drops: u64| {
        json!({"ports": [{"name": "tap0", "rx_packets": rx, "rx_bytes": rx * 100,
                          "tx_packets": 0, "tx_bytes": 0, "tx_dropped": 0}],
               "workers": [{"id": 0, "counters": {"busy_ns": busy, "idle_ns": 3 * busy,
                                                  "rx_packets": rx}}],
               "drops": {"no_network": drops}})
    };
    let daemon = fake_session(
        &sock.0,
        vec![
            ("stats", json!({}), Answer::Ok(stats(1000, 1_000_000, 5))),
            ("stats", json!({}), Answer::Ok(stats(1100, 2_000_000, 15))),
        ],
    );
    let started = Instant::now();
    let out = vswitchctl(&sock.0, &["--json", "top", "--once"]);
    join(daemon);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "no interval between samples"
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let secs = r["interval_secs"].as_f64().expect("interval");
    assert!((1.0..LIMIT.as_secs_f64()).contains(&secs), "{r}");
    let port = &r["ports"][0];
    assert_eq!(port["name"], "tap0");
    let close = |v: &Value, want: f64| (v.as_f64().expect("number") - want / secs).abs() < 1e-6;
    assert!(close(&port["rx_pps"], 100.0), "{r}");
    assert!(close(&port["rx_bps"], 80_000.0), "{r}");
    assert!(close(&port["tx_pps"], 0.0), "{r}");
    let worker = &r["workers"][0];
    assert_eq!(worker["busy_pct"], 25.0);
    assert_eq!(worker["idle_pct"], 75.0);
    assert_eq!(r["drops"][0]["reason"], "no_network");
    assert!(close(&r["drops"][0]["pps"], 10.0), "{r}");
}

#[test]
fn top_once_prints_one_frame_of_tables() {
    let sock = SocketPath::new();
    let stats = json!({"ports": [{"name": "tap0", "rx_packets": 7, "rx_bytes": 700,
                                  "tx_packets": 0, "tx_bytes": 0, "tx_dropped": 0}],
                       "workers": [{"id": 0, "counters": {}}], "drops": {}});
    let daemon = fake_session(
        &sock.0,
        vec![
            ("stats", json!({}), Answer::Ok(stats.clone())),
            ("stats", json!({}), Answer::Ok(stats)),
        ],
    );
    let out = vswitchctl(&sock.0, &["top", "--once"]);
    join(daemon);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("rates over 1."), "{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no terminal codes into a pipe: {stdout:?}"
    );
    let tables = stdout.split_once("\n\n").expect("heading line").1;
    assert_eq!(
        tables,
        "PORT  RX_PKT/S  RX_BIT/S  TX_PKT/S  TX_BIT/S  DROP/S\n\
         tap0         0         0         0         0       0\n\
         \n\
         WORKER  RX_PKT/S  BUSY  IDLE\n\
         0              0     -     -\n\
         \n\
         DROP  PKT/S\n"
    );
}

#[test]
fn top_rejects_a_bad_interval_without_connecting() {
    let err = assert_rejected_without_connecting(&["top", "--interval", "0"]);
    assert!(err.contains("interval 0 is out of range"), "{err}");
}
