//! `vswitchctl top --once` against the real daemon while a TCP transfer runs through it.

use control::proto::cmd;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;
use tests::{attach_tap, bin, can_run_system_tests, TempDir};
use vswitch::testbed::{tcp_transfer, DaemonProcess, Netns};

fn attach(d: &DaemonProcess, ip: Ipv4Addr) -> (Netns, String) {
    attach_tap(d, "blue", "vtop", ip)
}

#[test]
fn top_once_shows_rates_and_worker_load_under_traffic() {
    if !can_run_system_tests("top_once_shows_rates_and_worker_load_under_traffic") {
        return;
    }
    let tmp = TempDir::new("top");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    d.client()
        .unwrap()
        .call(cmd::NETWORK_CREATE, json!({"name": "blue"}))
        .unwrap();
    let (a, pa) = attach(&d, Ipv4Addr::new(10, 65, 0, 1));
    let (b, pb) = attach(&d, Ipv4Addr::new(10, 65, 0, 2));
    assert!(a.ping(Ipv4Addr::new(10, 65, 0, 2), 2).unwrap());

    // A bounded transfer (at most 1 GB or 60 s) keeps the switch busy while top samples.
    let (ap, bp) = (a.path(), b.path());
    let transfer = std::thread::spawn(move || {
        tcp_transfer(
            &ap,
            Ipv4Addr::new(10, 65, 0, 1),
            &bp,
            1 << 30,
            Duration::from_secs(60),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["--json", "top", "--once"])
        .output()
        .unwrap();
    let human = Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["top", "--once"])
        .output()
        .unwrap();
    // The transfer's result does not matter here (it may be cut short by its time limit).
    let _ = transfer.join();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = |name: &str| {
        r["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {r:#}"))
    };
    // b sends the data, a the acknowledgements.
    assert!(port(&pb)["rx_pps"].as_f64().unwrap() > 100.0, "{r:#}");
    assert!(port(&pb)["rx_bps"].as_f64().unwrap() > 1e6, "{r:#}");
    assert!(port(&pa)["tx_pps"].as_f64().unwrap() > 100.0, "{r:#}");
    let w = &r["workers"][0];
    assert!(w["rx_pps"].as_f64().unwrap() > 100.0, "{r:#}");
    let busy = w["busy_pct"].as_f64().unwrap();
    let idle = w["idle_pct"].as_f64().unwrap();
    assert!(busy > 0.0 && (busy + idle - 100.0).abs() < 1.0, "{r:#}");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success() && text.contains(&pb), "{text}");
}
