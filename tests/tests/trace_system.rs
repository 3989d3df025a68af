//! Packet tracing through the real daemon and CLI: `trace add`, a ping, `trace show`.

use control::proto::{cmd, TraceInfo, TracePacket};
use serde_json::json;
use std::net::Ipv4Addr;
use std::process::Command;
use tests::{attach_tap, bin, can_run_system_tests, TempDir};
use vswitch::testbed::{DaemonProcess, Netns};

struct Host {
    ns: Netns,
    port: String,
}

fn attach(d: &DaemonProcess, network: &str, ip: Ipv4Addr) -> Host {
    let (ns, port) = attach_tap(d, network, "vtr", ip);
    Host { ns, port }
}

fn ctl(d: &DaemonProcess, args: &[&str]) -> String {
    tests::ctl_ok(d, args)
}

fn trace(d: &DaemonProcess) -> TraceInfo {
    serde_json::from_str(&ctl(d, &["--json", "trace", "show"])).unwrap()
}

fn stages(p: &TracePacket) -> Vec<&str> {
    p.steps.iter().map(|s| s.stage.as_str()).collect()
}

/// The traced packet whose reception line says it is IPv4 (the namespaces also send IPv6
/// neighbour discovery of their own).
fn ipv4(t: &TraceInfo) -> Option<&TracePacket> {
    t.packets.iter().find(|p| {
        p.steps
            .first()
            .is_some_and(|s| s.detail.contains("type 0x0800"))
    })
}

#[test]
fn trace_of_a_ping_shows_every_stage_in_order_and_names_a_drop() {
    if !can_run_system_tests("trace_of_a_ping_shows_every_stage_in_order_and_names_a_drop") {
        return;
    }
    let tmp = TempDir::new("trace");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    for (net, subnet) in [("blue", "10.62.0.0/24"), ("red", "10.63.0.0/24")] {
        d.client()
            .unwrap()
            .call(
                cmd::NETWORK_CREATE,
                // The hosts use .1: the gateway (the subnet's first address by default) moves.
                json!({"name": net, "subnet": subnet, "gateway": subnet.replace(".0/24", ".254")}),
            )
            .unwrap();
    }
    let a = attach(&d, "blue", Ipv4Addr::new(10, 62, 0, 1));
    let b = attach(&d, "blue", Ipv4Addr::new(10, 62, 0, 2));
    // Same subnet, other network: the switch must never carry a's frames to it.
    let _c = attach(&d, "red", Ipv4Addr::new(10, 62, 0, 3));
    // Learn both MACs (and fill the namespaces' ARP caches) first.
    assert!(
        a.ns.ping(Ipv4Addr::new(10, 62, 0, 2), 2).unwrap(),
        "log:\n{}",
        d.log_tail()
    );

    // A unicast echo request: received, classified, switched to b's port, queued there.
    let armed = ctl(&d, &["trace", "add", "20", "--port", &a.port]);
    assert!(armed.contains("tracing the next 20 packets"), "{armed}");
    assert!(a.ns.ping(Ipv4Addr::new(10, 62, 0, 2), 1).unwrap());
    let t = trace(&d);
    let p = ipv4(&t).unwrap_or_else(|| panic!("no IPv4 packet traced: {t:#?}"));
    assert_eq!(
        stages(p),
        [
            "port-input",
            "vlan-input",
            "l2-bridge",
            "l2-bridge",
            "port-output"
        ],
        "{p:#?}"
    );
    let details: Vec<&str> = p.steps.iter().map(|s| s.detail.as_str()).collect();
    assert!(
        details[0].contains(&format!("received on {}", a.port)),
        "{details:?}"
    );
    assert!(details[1].starts_with("untagged"), "{details:?}");
    assert!(
        details[3].contains(&format!("is behind {}", b.port)),
        "{details:?}"
    );
    assert_eq!(details[4], format!("queued on {}", b.port));
    assert!(p.steps.windows(2).all(|w| w[0].ns <= w[1].ns));
    // Only a's packets were traced.
    for p in &t.packets {
        assert!(p.steps[0].detail.contains(&a.port), "{p:#?}");
    }
    let human = ctl(&d, &["trace", "show"]);
    assert!(
        human.contains("l2-bridge") && human.contains(" ns "),
        "{human}"
    );

    // A ping to the host in the other network: its ARP request is flooded within blue, where
    // only b could take it; b gets it, but nothing reaches red. From a port alone in its
    // network, the flood has nowhere to go, and the trace names the drop.
    ctl(&d, &["trace", "clear"]);
    assert!(trace(&d).packets.is_empty());
    ctl(&d, &["port", "rm", &b.port]);
    ctl(&d, &["trace", "add", "20", "--port", &a.port]);
    assert!(!a.ns.ping(Ipv4Addr::new(10, 62, 0, 3), 1).unwrap());
    let t = trace(&d);
    let arp = t
        .packets
        .iter()
        .find(|p| p.steps[0].detail.contains("type 0x0806"))
        .unwrap_or_else(|| panic!("no ARP traced: {t:#?}"));
    let last = arp.steps.last().unwrap();
    assert_eq!(last.detail, "dropped: no_destination", "{arp:#?}");
    assert_eq!(
        stages(arp),
        [
            "port-input",
            "vlan-input",
            "l2-bridge",
            "l2-bridge",
            "l2-flood"
        ],
        "{arp:#?}"
    );

    // Bad input is a one-line error that says how to mend it.
    let out = Command::new(bin("vswitchctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["trace", "add", "5", "--port", "nosuchport"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.starts_with("error: ") && e.contains("port ls"), "{e}");
}
