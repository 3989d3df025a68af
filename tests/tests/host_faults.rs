//! Faults of the host under a running daemon: a TAP device deleted under its port, a full disk
//! when a change is saved. Real `vswitchd`, namespaces made here; needs root.

use control::proto::{cmd, PortInfo};
use serde_json::json;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{DaemonProcess, Netns};

fn port_info(d: &DaemonProcess, name: &str) -> PortInfo {
    let v = d
        .client()
        .unwrap()
        .call(cmd::PORT_INSPECT, json!({"name": name}))
        .unwrap();
    serde_json::from_value(v).unwrap()
}

fn attach(d: &DaemonProcess, net: &str, ip: Ipv4Addr) -> (Netns, String) {
    tests::attach_tap(d, net, "vhf", ip)
}

#[test]
fn a_tap_deleted_under_its_port_brings_the_port_down_and_nothing_else() {
    let name = "a_tap_deleted_under_its_port_brings_the_port_down_and_nothing_else";
    if !can_run_system_tests(name) {
        return;
    }
    let tmp = TempDir::new("tapgone");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    d.client()
        .unwrap()
        .call(cmd::NETWORK_CREATE, json!({"name": "hf"}))
        .unwrap();
    let ip = |n| Ipv4Addr::new(10, 63, 0, n);
    let (a, _pa) = attach(&d, "hf", ip(1));
    let (b, pb) = attach(&d, "hf", ip(2));
    let (c, _pc) = attach(&d, "hf", ip(3));
    assert!(a.ping(ip(2), 3).unwrap(), "a -> b before");

    // B's device is deleted from inside its namespace (a container engine tearing down).
    b.ip(&["link", "del", &pb]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let info = loop {
        let info = port_info(&d, &pb);
        if info.state.starts_with("down") || Instant::now() > deadline {
            break info;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        info.state.contains("was deleted") && info.state.contains("port rm"),
        "{}",
        info.state
    );
    // The dead queue is left alone: a handful of failed reads, not a spin on them.
    std::thread::sleep(Duration::from_secs(1));
    let errors = port_info(&d, &pb).counters.rx_errors;
    assert!(errors <= 4, "{errors} read errors after the device went");
    // Everyone else carries on; frames for B are dropped, counted on its port.
    assert!(a.ping(ip(3), 3).unwrap(), "a -> c after");
    assert!(c.ping(ip(1), 3).unwrap(), "c -> a after");
    // The port can be removed and added again, and works.
    let mut cl = d.client().unwrap();
    cl.call(cmd::PORT_RM, json!({"name": pb})).unwrap();
    cl.call(
        cmd::PORT_ADD,
        json!({"name": pb, "type": "tap", "network": "hf", "netns": b.name()}),
    )
    .unwrap();
    b.ip(&["addr", "add", &format!("{}/24", ip(2)), "dev", &pb])
        .unwrap();
    assert!(port_info(&d, &pb).state.starts_with("up"));
    // B's new device has a new MAC: A must not keep the old one from its ARP cache.
    a.ip(&["neigh", "flush", "all"]).unwrap();
    assert!(a.ping(ip(2), 3).unwrap(), "a -> b again");
}

/// A tmpfs mounted for the test, lazily unmounted when it ends (even on failure).
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_the_change_and_leaves_the_running_configuration_alone() {
    let name = "a_full_disk_refuses_the_change_and_leaves_the_running_configuration_alone";
    if !can_run_system_tests(name) {
        return;
    }
    let tmp = TempDir::new("diskfull");
    let state = tmp.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount a 256 KiB tmpfs for the state directory");
    let _mount = Mount(state.clone());
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    let mut c = d.client().unwrap();
    c.call(cmd::NETWORK_CREATE, json!({"name": "kept"}))
        .unwrap();
    // Fill the disk.
    let filler = state.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 512 << 10]);
    let e = c
        .call(cmd::NETWORK_CREATE, json!({"name": "lost"}))
        .unwrap_err();
    assert!(
        e.message.contains("cannot persist") && e.message.contains("was not made"),
        "{e}"
    );
    let nets = c.call(cmd::NETWORK_LS, json!(null)).unwrap();
    let names: Vec<&str> = nets
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["kept"],
        "the running configuration is unchanged"
    );
    // The state file still holds what was accepted.
    let saved = std::fs::read_to_string(state.join("config.json")).unwrap();
    assert!(saved.contains("kept") && !saved.contains("lost"), "{saved}");
    // With room again, the same change goes through.
    std::fs::remove_file(&filler).unwrap();
    c.call(cmd::NETWORK_CREATE, json!({"name": "lost"}))
        .unwrap();
}

#[test]
fn a_transfer_across_a_kill_9_and_restart_loses_no_byte_and_traffic_resumes_at_once() {
    let name = "a_transfer_across_a_kill_9_and_restart_loses_no_byte_and_traffic_resumes_at_once";
    if !can_run_system_tests(name) {
        return;
    }
    use vswitch::testbed::{tcp_transfer, SIGKILL};
    let tmp = TempDir::new("kill9");
    let mut d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    d.client()
        .unwrap()
        .call(cmd::NETWORK_CREATE, json!({"name": "k9"}))
        .unwrap();
    let ip = |n| Ipv4Addr::new(10, 64, 0, n);
    let (a, _pa) = attach(&d, "k9", ip(1));
    let (b, _pb) = attach(&d, "k9", ip(2));
    assert!(a.ping(ip(2), 3).unwrap(), "a -> b before");
    // A checked 1 GiB transfer runs while the daemon is killed and started again.
    let (server, client) = (b.path(), a.path());
    let transfer = std::thread::spawn(move || {
        tcp_transfer(&server, ip(2), &client, 1 << 30, Duration::from_secs(120))
    });
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        !transfer.is_finished(),
        "the transfer ended before the kill: make it longer"
    );
    d.signal(SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.restart().unwrap();
    // Ready means answering; the first ping after it must get through.
    let ready = Instant::now();
    assert!(
        a.ping(ip(2), 1).unwrap(),
        "no traffic right after the restart; log:\n{}",
        d.log_tail()
    );
    eprintln!(
        "first ping answered {:?} after the daemon was ready",
        ready.elapsed()
    );
    assert!(
        ready.elapsed() < Duration::from_secs(1),
        "{:?}",
        ready.elapsed()
    );
    let t = transfer
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("transfer across the restart: {e}; log:\n{}", d.log_tail()));
    assert_eq!(t.bytes, 1 << 30, "every byte, checked");
    eprintln!("1 GiB across the restart in {:?}", t.elapsed);
}

/// Names of the host's interfaces that start with `prefix`.
fn links_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Removes the host interfaces this test made, whatever became of the daemon.
struct Links(String);

impl Drop for Links {
    fn drop(&mut self) {
        for l in links_with(&self.0) {
            let _ = Command::new("ip").args(["link", "del", &l]).status();
        }
    }
}

#[test]
fn a_kill_9_in_the_middle_of_changes_keeps_every_acknowledged_one_and_leaves_no_device() {
    let name =
        "a_kill_9_in_the_middle_of_changes_keeps_every_acknowledged_one_and_leaves_no_device";
    if !can_run_system_tests(name) {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use vswitch::testbed::SIGKILL;
    let prefix = format!("k9c{}", std::process::id() % 100_000);
    let _cleanup = Links(prefix.clone());
    let tmp = TempDir::new("k9chg");

    // The journal's recovery, made certain: a device named in the journal of a change never
    // saved (here, one made by hand) is removed when the daemon starts; one in a port stays.
    let stray = format!("{prefix}s");
    let st = Command::new("ip")
        .args(["tuntap", "add", "dev", &stray, "mode", "tap", "multi_queue"])
        .status()
        .unwrap();
    assert!(st.success());
    let state = tmp.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("devices-pending.json"),
        format!("[{{\"name\": \"{stray}\"}}]"),
    )
    .unwrap();
    let mut d = DaemonProcess::start(&bin("vswitchd"), &tmp.0).unwrap();
    assert!(
        links_with(&stray).is_empty(),
        "the stray device was removed"
    );
    assert!(!state.join("devices-pending.json").exists());
    d.client()
        .unwrap()
        .call(cmd::NETWORK_CREATE, json!({"name": "kc"}))
        .unwrap();

    // Changes one after another, each acknowledged only once saved; the daemon killed in the
    // middle of them, three times.
    for round in 0..3u32 {
        let sock = d.socket();
        let stop = Arc::new(AtomicBool::new(false));
        let adder = std::thread::spawn({
            let (prefix, stop) = (prefix.clone(), stop.clone());
            move || {
                let mut acked = Vec::new();
                for i in 0..300 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let port = format!("{prefix}r{round}x{i}");
                    let Ok(mut c) = control::client::Client::connect(&sock) else {
                        break;
                    };
                    let r = c.call(
                        cmd::PORT_ADD,
                        json!({"name": port, "type": "tap", "network": "kc"}),
                    );
                    if r.is_err() {
                        break;
                    }
                    acked.push(port);
                }
                acked
            }
        });
        std::thread::sleep(Duration::from_millis(150 + 120 * u64::from(round)));
        d.signal(SIGKILL).unwrap();
        stop.store(true, Ordering::Relaxed);
        let acked = adder.join().unwrap();
        assert!(
            !acked.is_empty(),
            "round {round}: no change made before the kill"
        );
        std::thread::sleep(Duration::from_millis(200));
        d.restart().unwrap();
        let ports: Vec<String> = d
            .client()
            .unwrap()
            .call(cmd::PORT_LS, json!({}))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        for a in &acked {
            assert!(
                ports.contains(a),
                "round {round}: acknowledged port {a} lost"
            );
        }
        let this_round = ports
            .iter()
            .filter(|p| p.starts_with(&format!("{prefix}r{round}x")))
            .count();
        assert!(
            this_round <= acked.len() + 1,
            "round {round}: {this_round} ports for {} acknowledged changes",
            acked.len()
        );
        // No device of ours that no port has.
        for l in links_with(&prefix) {
            assert!(
                ports.contains(&l),
                "round {round}: device {l} left in no port; log:\n{}",
                d.log_tail()
            );
        }
        eprintln!(
            "round {round}: {} changes acknowledged before the kill, all kept",
            acked.len()
        );
    }
}
