//! Upgrading in place: SIGUSR1 stops the daemon but leaves its TAP devices (the containers keep
//! their interfaces, addresses and routes); the next daemon re-attaches and traffic flows again.
//! SIGTERM, by contrast, removes the devices.

use control::proto::cmd;
use serde_json::json;
use std::net::Ipv4Addr;
use tests::{attach_tap, bin, can_run_system_tests, TempDir};
use vswitch::testbed::{DaemonProcess, Netns, SIGTERM};

fn attach(d: &DaemonProcess, ip: Ipv4Addr) -> (Netns, String) {
    attach_tap(d, "blue", "vup", ip)
}

fn has_device(ns: &Netns, dev: &str) -> bool {
    ns.ip(&["link", "show", "dev", dev])
        .is_ok_and(|o| o.status.success())
}

#[test]
fn sigusr1_keeps_the_devices_for_the_next_daemon_and_sigterm_removes_them() {
    if !can_run_system_tests(
        "sigusr1_keeps_the_devices_for_the_next_daemon_and_sigterm_removes_them",
    ) {
        return;
    }
    let tmp = TempDir::new("upgrade");
    let mut d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    d.client()
        .unwrap()
        .call(cmd::NETWORK_CREATE, json!({"name": "blue"}))
        .unwrap();
    let (a, pa) = attach(&d, Ipv4Addr::new(10, 64, 0, 1));
    let (b, pb) = attach(&d, Ipv4Addr::new(10, 64, 0, 2));
    assert!(
        a.ping(Ipv4Addr::new(10, 64, 0, 2), 3).unwrap(),
        "log:\n{}",
        d.log_tail()
    );

    let st = d.signal(libc::SIGUSR1).unwrap();
    assert!(st.success(), "exit status {st}; log:\n{}", d.log_tail());
    assert!(
        d.log_tail().contains("stopped for an upgrade"),
        "{}",
        d.log_tail()
    );
    for (ns, dev) in [(&a, &pa), (&b, &pb)] {
        assert!(has_device(ns, dev), "{dev} went away with the daemon");
        let addr = ns.ip(&["-br", "addr", "show", "dev", dev]).unwrap();
        assert!(String::from_utf8_lossy(&addr.stdout).contains("10.64.0."));
    }

    // The "new version" starts on the same state and re-attaches to the same devices.
    d.restart().unwrap();
    assert!(
        a.ping(Ipv4Addr::new(10, 64, 0, 2), 3).unwrap(),
        "no traffic after the upgrade; log:\n{}",
        d.log_tail()
    );

    d.signal(SIGTERM).unwrap();
    assert!(
        !has_device(&a, &pa) && !has_device(&b, &pb),
        "SIGTERM left devices behind"
    );
}
