//! The gateway's embedded DNS through the real daemon, asked by the C library's own resolver
//! (`getent` in a namespace whose `/etc/resolv.conf` names the gateway: `ip netns exec` binds
//! `/etc/netns/NAME/resolv.conf` over it). Everything the test makes has a unique name and goes
//! when it ends, passed or failed; every query is bounded by the resolver's timeout.

use control::proto::cmd;
use serde_json::json;
use std::net::Ipv4Addr;
use tests::{attach_tap, bin, can_run_system_tests, ctl_ok, TempDir};
use vswitch::testbed::{DaemonProcess, Netns};

use tests::call;

/// `/etc/netns/NAME/`, holding the namespace's resolv.conf; removed on drop.
struct NetnsEtc(std::path::PathBuf);

impl NetnsEtc {
    fn new(ns: &Netns, nameserver: Ipv4Addr) -> NetnsEtc {
        let dir = std::path::Path::new("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir).unwrap();
        let etc = NetnsEtc(dir);
        std::fs::write(
            etc.0.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:2\n"),
        )
        .unwrap();
        etc
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `getent ahostsv4 NAME` in `ns`: the distinct addresses, or None when it does not resolve.
fn resolve(ns: &Netns, name: &str) -> Option<Vec<Ipv4Addr>> {
    let out = ns.exec(&["getent", "ahostsv4", name]).unwrap();
    if !out.status.success() {
        return None;
    }
    let mut v: Vec<Ipv4Addr> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    v.sort();
    v.dedup();
    Some(v)
}

use tests::worker_counter;

#[test]
fn the_gateway_answers_names_of_its_own_network_only() {
    if !can_run_system_tests("the_gateway_answers_names_of_its_own_network_only") {
        return;
    }
    let tmp = TempDir::new("dns");
    let d = DaemonProcess::start_with(&bin("vswitchd"), &tmp.0, None, &[]).unwrap();
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "blue", "subnet": "10.86.0.0/24"}),
    );
    call(
        &d,
        cmd::NETWORK_CREATE,
        json!({"name": "red", "subnet": "10.87.0.0/24"}),
    );
    let (c1, _) = attach_tap(&d, "blue", "vsdns", Ipv4Addr::new(10, 86, 0, 2));
    let (c2, _) = attach_tap(&d, "red", "vsdns", Ipv4Addr::new(10, 87, 0, 2));
    let _e1 = NetnsEtc::new(&c1, Ipv4Addr::new(10, 86, 0, 1));
    let _e2 = NetnsEtc::new(&c2, Ipv4Addr::new(10, 87, 0, 1));

    let s = d.socket().to_string_lossy().into_owned();
    let ctl = |args: &[&str]| ctl_ok(&d, args);
    ctl(&[
        "endpoint",
        "add",
        "web",
        "--network",
        "blue",
        "--ip",
        "10.86.0.50",
    ]);
    ctl(&[
        "endpoint",
        "add",
        "Web",
        "--network",
        "blue",
        "--ip",
        "10.86.0.51",
    ]);
    ctl(&[
        "endpoint",
        "add",
        "db",
        "--network",
        "red",
        "--ip",
        "10.87.0.9",
    ]);
    let ls = ctl(&["endpoint", "ls", "--network", "blue"]);
    assert!(
        ls.contains("10.86.0.50") && ls.contains("10.86.0.51"),
        "{ls}"
    );
    assert!(!ls.contains("10.87.0.9"), "{ls}");

    let web = vec![Ipv4Addr::new(10, 86, 0, 50), Ipv4Addr::new(10, 86, 0, 51)];
    assert_eq!(
        resolve(&c1, "web").as_ref(),
        Some(&web),
        "log:\n{}",
        d.log_tail()
    );
    assert_eq!(resolve(&c1, "WEB.blue").as_ref(), Some(&web));
    // Isolation: red's name is unknown on blue, and blue's on red.
    assert_eq!(resolve(&c1, "db"), None);
    assert_eq!(resolve(&c2, "web"), None);
    assert_eq!(resolve(&c2, "db"), Some(vec![Ipv4Addr::new(10, 87, 0, 9)]));
    assert!(worker_counter(&d, "dns_answered") >= 3);
    assert!(worker_counter(&d, "dns_nxdomain") >= 2);
    // Not our domain: refused (the resolver would move on to its next server).
    assert_eq!(resolve(&c1, "example.com"), None);
    assert!(worker_counter(&d, "dns_refused") >= 1);

    // Garbage to port 53 of the gateway: dropped by name, and the next query is answered.
    let before = worker_counter(&d, "dns_malformed");
    let out = c1
        .exec(&[
            "/usr/bin/python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             for p in [b'', b'\\x01', b'\\x00'*11, b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\xc0\\x0c']:\n\
             \x20   s.sendto(p, ('10.86.0.1', 53))\n",
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while worker_counter(&d, "dns_malformed") < before + 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(worker_counter(&d, "dns_malformed"), before + 4);
    assert_eq!(resolve(&c1, "web").as_ref(), Some(&web));

    // A service: its name answers its VIP, `tasks.NAME` its backends.
    let created = call(
        &d,
        cmd::SERVICE_CREATE,
        json!({"name": "api", "network": "blue", "vip": "10.86.0.200", "ports": ["80"]}),
    );
    assert_eq!(created["vip"], json!("10.86.0.200"), "{created}");
    ctl(&["service", "backend", "add", "api", "--ip", "10.86.0.60"]);
    ctl(&["service", "backend", "add", "api", "--ip", "10.86.0.61"]);
    assert_eq!(
        resolve(&c1, "api"),
        Some(vec![Ipv4Addr::new(10, 86, 0, 200)])
    );
    assert_eq!(
        resolve(&c1, "tasks.api"),
        Some(vec![
            Ipv4Addr::new(10, 86, 0, 60),
            Ipv4Addr::new(10, 86, 0, 61)
        ])
    );
    assert_eq!(
        resolve(&c2, "api"),
        None,
        "a service's name stays in its network"
    );
    ctl(&["service", "rm", "api"]);
    assert_eq!(resolve(&c1, "api"), None);

    // Names persist in the configuration; removing one makes it unknown.
    let doc = call(&d, cmd::CONFIG_EXPORT, json!({}));
    assert_eq!(doc["endpoints"].as_array().map(Vec::len), Some(3), "{doc}");
    ctl(&[
        "endpoint",
        "rm",
        "web",
        "--network",
        "blue",
        "--ip",
        "10.86.0.50",
    ]);
    assert_eq!(
        resolve(&c1, "web"),
        Some(vec![Ipv4Addr::new(10, 86, 0, 51)])
    );
    ctl(&["endpoint", "rm", "web", "--network", "blue"]);
    assert_eq!(resolve(&c1, "web"), None);
    let bad = std::process::Command::new(bin("vswitchctl"))
        .args(["--socket", &s, "endpoint", "add", "x", "--network", "blue"])
        .args(["--ip", "10.87.0.5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("not a host address"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
