//! System tests: the real `vswitchd` and `vswitchctl` binaries, real kernel peers in network
//! namespaces made here. Need root; see `tests::can_run_system_tests`.

use control::proto::{cmd, PortInfo, StatsInfo};
use serde_json::json;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{tcp_transfer, unique_name, DaemonProcess, Netns, SIGKILL, SIGTERM};

struct Host {
    ns: Netns,
    port: String,
    ip: Ipv4Addr,
}

/// Makes a namespace, a TAP port for it on `network`, and gives it `ip`/24.
fn attach(d: &DaemonProcess, network: &str, ip: Ipv4Addr) -> Host {
    let ns = Netns::create(&unique_name("vst")).unwrap();
    let port = unique_name("vsp");
    let mut c = d.client().unwrap();
    c.call(
        cmd::PORT_ADD,
        json!({"name": port, "type": "tap", "network": network, "netns": ns.name()}),
    )
    .unwrap_or_else(|e| panic!("port add: {e}; daemon log:\n{}", d.log_tail()));
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &port])
        .unwrap();
    Host { ns, port, ip }
}

fn ctl(d: &DaemonProcess, args: &[&str]) -> std::process::Output {
    Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .output()
        .unwrap()
}

fn stats(d: &DaemonProcess) -> StatsInfo {
    serde_json::from_value(d.client().unwrap().call(cmd::STATS, json!({})).unwrap()).unwrap()
}

#[test]
fn two_namespaces_ping_and_move_100mb_over_tcp() {
    if !can_run_system_tests("two_namespaces_ping_and_move_100mb_over_tcp") {
        return;
    }
    let tmp = TempDir::new("tcp");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    d.client()
        .unwrap()
        .call(
            cmd::NETWORK_CREATE,
            json!({"name": "blue", "subnet": "10.61.0.0/24", "gateway": "10.61.0.254"}),
        )
        .unwrap();
    let a = attach(&d, "blue", Ipv4Addr::new(10, 61, 0, 1));
    let b = attach(&d, "blue", Ipv4Addr::new(10, 61, 0, 2));
    assert!(
        a.ns.ping(b.ip, 3).unwrap(),
        "ping a -> b failed; log:\n{}",
        d.log_tail()
    );
    assert!(b.ns.ping(a.ip, 3).unwrap(), "ping b -> a failed");
    let t = tcp_transfer(
        &a.ns.path(),
        a.ip,
        &b.ns.path(),
        100 << 20,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("TCP transfer failed: {e}; log:\n{}", d.log_tail()));
    assert_eq!(t.bytes, 100 << 20);
    eprintln!(
        "100 MB in {:.2} s ({:.0} Mbit/s)",
        t.elapsed.as_secs_f64(),
        t.mbps()
    );

    let s = stats(&d);
    let pa = s.ports.iter().find(|p| p.name == a.port).unwrap();
    assert!(
        pa.counters.rx_bytes > 0 && pa.counters.tx_bytes > 100 << 20,
        "{pa:?}"
    );
    let fdb = ctl(&d, &["--json", "fdb", "ls", "--network", "blue"]);
    assert!(fdb.status.success());
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&fdb.stdout).unwrap();
    let ports: Vec<&str> = entries.iter().filter_map(|e| e["port"].as_str()).collect();
    assert!(
        ports.contains(&a.port.as_str()) && ports.contains(&b.port.as_str()),
        "{entries:?}"
    );
}

#[test]
fn two_networks_stay_isolated() {
    if !can_run_system_tests("two_networks_stay_isolated") {
        return;
    }
    let tmp = TempDir::new("iso");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    let mut c = d.client().unwrap();
    c.call(cmd::NETWORK_CREATE, json!({"name": "red"})).unwrap();
    c.call(cmd::NETWORK_CREATE, json!({"name": "green"}))
        .unwrap();
    // Same subnet on both networks: only the bridge keeps them apart.
    let r1 = attach(&d, "red", Ipv4Addr::new(10, 62, 0, 1));
    let r2 = attach(&d, "red", Ipv4Addr::new(10, 62, 0, 2));
    let g1 = attach(&d, "green", Ipv4Addr::new(10, 62, 0, 3));
    assert!(r1.ns.ping(r2.ip, 2).unwrap(), "same network must reach");
    assert!(!r1.ns.ping(g1.ip, 2).unwrap(), "red reached green");
    assert!(!g1.ns.ping(r2.ip, 2).unwrap(), "green reached red");
    let s = stats(&d);
    let g = s.ports.iter().find(|p| p.name == g1.port).unwrap();
    // Green's port may only ever have transmitted green's own broadcasts back... there are none.
    assert_eq!(
        g.counters.tx_packets, 0,
        "a red frame left through green's port: {g:?}"
    );
    let _ = r2;
}

#[test]
fn bad_commands_get_one_line_errors_and_the_daemon_carries_on() {
    if !can_run_system_tests("bad_commands_get_one_line_errors_and_the_daemon_carries_on") {
        return;
    }
    let tmp = TempDir::new("err");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    assert!(ctl(&d, &["network", "create", "blue"]).status.success());
    let port = unique_name("vsp");
    assert!(ctl(
        &d,
        &["port", "add", &port, "--type", "tap", "--network", "blue"]
    )
    .status
    .success());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["port", "add", "p1", "--type", "tap", "--network", "nosuch"],
            "network 'nosuch' does not exist",
        ),
        (
            vec!["port", "add", &port, "--type", "tap", "--network", "blue"],
            "already exists",
        ),
        (
            vec![
                "fdb",
                "add",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:00:zz",
                "--port",
                &port,
            ],
            "is not a MAC address",
        ),
        (vec!["network", "inspect", "nosuch"], "does not exist"),
        (vec!["network", "rm", "blue"], "still has ports"),
        (
            vec![
                "port",
                "add",
                "p2",
                "--type",
                "tap",
                "--netns",
                "vs-no-such-ns",
            ],
            "does not exist",
        ),
    ];
    for (args, want) in cases {
        let out = ctl(&d, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    // Malformed lines on the raw socket: each gets an error reply; the connection carries on.
    let mut c = d.client().unwrap();
    c.send_raw(b"this is not json\n").unwrap();
    let r = c.read_reply().unwrap();
    assert!(!r.ok && r.error.unwrap().message.contains("malformed request"));
    c.send_raw(b"{\"id\": 9, \"cmd\": \"no.such\"}\n").unwrap();
    let r = c.read_reply().unwrap();
    assert_eq!(r.id, 9);
    assert!(!r.ok);
    let mut long = vec![b'x'; control::proto::MAX_LINE + 10];
    long.push(b'\n');
    c.send_raw(&long).unwrap();
    let r = c.read_reply().unwrap();
    assert_eq!(r.error.unwrap().code, control::proto::ErrorCode::TooLong);
    assert!(
        c.call(cmd::STATUS, json!({})).is_ok(),
        "connection still serves"
    );
    assert!(ctl(&d, &["status"]).status.success(), "daemon still serves");
}

#[test]
fn restart_after_kill_9_restores_config_and_traffic() {
    if !can_run_system_tests("restart_after_kill_9_restores_config_and_traffic") {
        return;
    }
    let tmp = TempDir::new("restart");
    let mut d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    d.client()
        .unwrap()
        .call(
            cmd::NETWORK_CREATE,
            json!({"name": "blue", "aging_secs": 120}),
        )
        .unwrap();
    let a = attach(&d, "blue", Ipv4Addr::new(10, 63, 0, 1));
    let b = attach(&d, "blue", Ipv4Addr::new(10, 63, 0, 2));
    assert!(a.ns.ping(b.ip, 2).unwrap());
    let before = ctl(&d, &["--json", "config", "export"]);

    d.signal(SIGKILL).unwrap();
    // The devices, their addresses and routes survive inside the namespaces.
    let addr = a.ns.ip(&["-br", "addr", "show", "dev", &a.port]).unwrap();
    assert!(String::from_utf8_lossy(&addr.stdout).contains("10.63.0.1/24"));

    d.restart().unwrap();
    let after = ctl(&d, &["--json", "config", "export"]);
    assert_eq!(
        before.stdout, after.stdout,
        "configuration differs after restart"
    );
    assert!(
        a.ns.ping(b.ip, 3).unwrap(),
        "no traffic after restart; log:\n{}",
        d.log_tail()
    );
    let t = tcp_transfer(
        &b.ns.path(),
        b.ip,
        &a.ns.path(),
        10 << 20,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(t.bytes, 10 << 20);

    // port rm removes the device.
    let out = ctl(&d, &["port", "rm", &b.port]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        b.ns.ip(&["link", "show", "dev", &b.port]).is_err(),
        "device still exists"
    );
    let info: PortInfo = serde_json::from_value(
        d.client()
            .unwrap()
            .call(cmd::PORT_INSPECT, json!({"name": a.port}))
            .unwrap(),
    )
    .unwrap();
    // UDP tunnel GSO where the kernel has it (6.17+); io_uring (the default) where the kernel
    // lets the daemon use it (6.7+ for multishot reads).
    let state = info
        .state
        .strip_suffix("; io_uring)")
        .map_or(info.state.clone(), |s| format!("{s})"));
    assert!(
        state == "up (offloads: csum, tso4, tso6)"
            || state == "up (offloads: csum, tso4, tso6, udp-tunnel-gso)",
        "{}",
        info.state
    );
    assert!(
        info.state.ends_with("; io_uring)"),
        "io_uring not in use on this kernel (6.18 here): {}",
        info.state
    );

    // SIGTERM removes the devices and keeps the state.
    assert!(d.signal(SIGTERM).unwrap().success());
    assert!(
        a.ns.ip(&["link", "show", "dev", &a.port]).is_err(),
        "device left behind after SIGTERM"
    );
    let state = std::fs::read_to_string(d.state_dir().join("config.json")).unwrap();
    assert!(
        state.contains(&a.port) && !state.contains(&b.port),
        "{state}"
    );
}

#[test]
fn socket_refuses_users_who_are_not_root_or_in_the_group() {
    if !can_run_system_tests("socket_refuses_users_who_are_not_root_or_in_the_group") {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        panic!("setpriv (util-linux) is needed to run a client as another user");
    }
    let tmp = TempDir::new("perm");
    // The directory must be reachable by the unprivileged user for the test to reach the socket.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode");
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin("vswitchctl"))
            .arg("--socket")
            .arg(d.socket())
            .args(args)
            .output()
            .unwrap()
    };
    // File permissions stop it first...
    let out = as_nobody(&["status"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    // ...and with the file opened up, the peer-credential check still refuses.
    std::fs::set_permissions(d.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("permission denied") && err.lines().count() == 1,
        "{err}"
    );
    assert!(ctl(&d, &["status"]).status.success(), "root still gets in");
}
