//! Routing between linked networks (`network link`) through the real daemon and real kernel
//! stacks: two `--subnet` networks are isolated until linked; linked, their containers reach
//! each other through the gateways with their own addresses (no NAT), the first packet held
//! while the far gateway asks ARP for a container that never spoke; unlinked, isolated again.
//! Everything the test makes has a unique name and goes when it ends, passed or failed.

use control::proto::cmd;
use dataplane::sys::netns;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use tests::{attach_tap, bin, can_run_system_tests, ctl_ok, TempDir};
use vswitch::testbed::{tcp_transfer, DaemonProcess, Netns};

use tests::call;

use tests::worker_counter as counter;

fn container(d: &DaemonProcess, net: &str, ip: Ipv4Addr, gw: Ipv4Addr) -> Netns {
    let (ns, _) = attach_tap(d, net, "vsrt", ip);
    ns.ip(&["route", "add", "default", "via", &gw.to_string()])
        .unwrap();
    ns
}

#[test]
fn linked_networks_route_to_each_other_and_unlinked_ones_do_not() {
    if !can_run_system_tests("linked_networks_route_to_each_other_and_unlinked_ones_do_not") {
        return;
    }
    let tmp = TempDir::new("route");
    let d = DaemonProcess::start_with(&bin("vswitchd"), &tmp.0, None, &[]).unwrap();
    for (n, s) in [("blue", "10.88.0.0/24"), ("red", "10.89.0.0/24")] {
        call(&d, cmd::NETWORK_CREATE, json!({"name": n, "subnet": s}));
    }
    let (ip1, ip2) = (Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 89, 0, 2));
    let c1 = container(&d, "blue", ip1, Ipv4Addr::new(10, 88, 0, 1));
    let c2 = container(&d, "red", ip2, Ipv4Addr::new(10, 89, 0, 1));

    // Isolated by default.
    assert!(!c1.ping(ip2, 2).unwrap(), "networks must be isolated");
    assert!(counter(&d, "network_isolated") >= 2);

    ctl_ok(&d, &["network", "link", "blue", "red"]);
    let inspect = ctl_ok(&d, &["network", "inspect", "blue"]);
    assert!(
        inspect.contains("linked to") && inspect.contains("red"),
        "{inspect}"
    );
    // c2 never spoke: the first packet waits while red's gateway asks ARP for it.
    let r = c1.ping_icmp(ip2, 3, Duration::from_secs(2)).unwrap();
    assert_eq!(
        r.received(),
        3,
        "every ping, the first one held, must come back; log:\n{}",
        d.log_tail()
    );
    assert!(counter(&d, "gw_arp_requests_sent") >= 1);
    assert!(counter(&d, "routed_between_networks") >= 6);
    assert_eq!(counter(&d, "route_neigh_unresolved"), 0);
    // The far gateway's address answers too.
    assert!(c1.ping(Ipv4Addr::new(10, 89, 0, 1), 1).unwrap());

    // TCP: no NAT, the server sees the client's own address; then a checked bulk transfer.
    let listener = netns::run_in(Some(&c2.path()), || {
        TcpListener::bind(SocketAddr::from((ip2, 0)))
    })
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn({
        let p = c1.path();
        move || {
            netns::run_in(Some(&p), move || -> std::io::Result<()> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                s.write_all(b"across")?;
                Ok(())
            })
        }
    });
    let (mut conn, peer) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 6];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"across");
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(ip1),
        "routed, not translated"
    );
    client.join().unwrap().unwrap();
    let t = tcp_transfer(
        &c2.path(),
        ip2,
        &c1.path(),
        16 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer between linked networks: {e}"));
    eprintln!("16 MB between linked networks: {:.0} Mbit/s", t.mbps());

    // The link persists in the configuration; unlinked, isolated again.
    let doc = call(&d, cmd::CONFIG_EXPORT, json!({}));
    assert_eq!(doc["links"], json!([{"a": "blue", "b": "red"}]), "{doc}");
    ctl_ok(&d, &["network", "unlink", "red", "blue"]);
    assert!(
        !c1.ping(ip2, 2).unwrap(),
        "unlinked networks must be isolated"
    );
    let bad = std::process::Command::new(bin("vswitchctl"))
        .args(["--socket", d.socket().to_str().unwrap()])
        .args(["network", "unlink", "red", "blue"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("are not linked"),
        "{err}"
    );
}
