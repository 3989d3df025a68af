//! Podman (CNI backend) on the switch, end to end, and the CNI plugin called directly.
//!
//! A private Podman runs busybox-static containers on a network that is a conflist naming the
//! `vswitch` plugin with `host-local` IPAM: they ping each other by name (the gateway's DNS,
//! which the plugin feeds the names Podman passes) and move a checked TCP transfer; `vswitchd`
//! is killed with SIGKILL and restarted under them and traffic resumes; removing them leaves no
//! port, no DNS name and no address lease; `-p` says it needs the services feature. The
//! direct calls run ADD, CHECK (which Podman never calls), DEL and VERSION the way a runtime
//! does, against a namespace the test made, and check the CNI error objects.

use control::proto::{cmd, PortInfo};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use tests::engines::{busybox_rootfs_tar, eventually, have_tools, nc_transfer, Podman};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{unique_name, DaemonProcess, Netns, SIGKILL};

const IMAGE: &str = "vsbusybox:test";

/// The plugin's configuration for network `name` on subnet `10.x.y.0/24`.
fn plugin_conf(name: &str, subnet: &str, gateway: &str, socket: &Path, ipam_dir: &Path) -> Value {
    json!({
        "type": "vswitch",
        "socket": socket,
        "network": name,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet, "gateway": gateway}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": ipam_dir,
        },
        "capabilities": {"portMappings": true},
    })
}

fn ports(d: &DaemonProcess) -> Vec<PortInfo> {
    d.client()
        .unwrap()
        .call_typed(cmd::PORT_LS, &json!({}))
        .unwrap()
}

fn endpoints(d: &DaemonProcess) -> Vec<Value> {
    d.client()
        .unwrap()
        .call_typed(cmd::ENDPOINT_LS, &json!({}))
        .unwrap()
}

/// Address leases host-local holds for `net` (one file per address).
fn leases(ipam_dir: &Path, net: &str) -> usize {
    std::fs::read_dir(ipam_dir.join(net)).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok()
            })
            .count()
    })
}

#[test]
fn podman_containers_talk_through_the_switch_survive_its_kill_9_and_leave_nothing_behind() {
    let name =
        "podman_containers_talk_through_the_switch_survive_its_kill_9_and_leave_nothing_behind";
    if !can_run_system_tests(name)
        || !have_tools(
            name,
            &["podman", "/usr/lib/cni/host-local", "/bin/busybox", "tar"],
        )
    {
        return;
    }
    let tmp = TempDir::new("podman");
    let mut d = DaemonProcess::start(&bin("vswitchd"), &tmp.0.join("vs")).unwrap();
    let podman = Podman::new(&tmp.0.join("podman"));
    let net = unique_name("vspn");
    let ipam_dir = tmp.0.join("ipam");
    let mut plugin = plugin_conf(&net, "10.96.0.0/24", "10.96.0.1", &d.socket(), &ipam_dir);
    plugin.as_object_mut().unwrap().remove("network");
    let conflist = json!({"cniVersion": "1.0.0", "name": net, "plugins": [plugin]});
    std::fs::write(
        podman.net_dir().join(format!("{net}.conflist")),
        conflist.to_string(),
    )
    .unwrap();
    let tar = busybox_rootfs_tar(&tmp.0);
    podman.ok(&[
        "import",
        "--change",
        "ENV PATH=/bin",
        tar.to_str().unwrap(),
        IMAGE,
    ]);

    let (p1, p2) = (unique_name("vp1"), unique_name("vp2"));
    for p in [&p1, &p2] {
        // The gateway answers DNS for the names the plugin registered.
        podman.ok(&[
            "run",
            "-d",
            "--name",
            p,
            "--network",
            &net,
            "--dns",
            "10.96.0.1",
            IMAGE,
            "sleep",
            "600",
        ]);
    }
    let ps = ports(&d);
    assert_eq!(ps.len(), 2, "{ps:#?}");
    for p in &ps {
        assert_eq!(p.device, "eth0");
        assert!(
            p.spec
                .netns
                .as_deref()
                .is_some_and(|n| n.starts_with("/run/netns/")),
            "{p:?}"
        );
    }
    assert_eq!(
        endpoints(&d).len(),
        2,
        "the plugin registers each container's name"
    );
    let exec = |args: &[&str]| podman.podman(args);
    let ping = |from: &str, to: &str| {
        eventually(10, || {
            exec(&["exec", from, "ping", "-c", "1", "-W", "1", to])
                .status
                .success()
        })
    };
    assert!(
        ping(&p2, &p1),
        "{p2} cannot ping {p1} by name; log:\n{}",
        d.log_tail()
    );
    nc_transfer(&exec, &p2, &p1, &p1, 5001, 4_000_000);

    // kill -9 under running containers: the TAPs persist in Podman's namespaces.
    d.signal(SIGKILL).unwrap();
    d.restart().unwrap();
    assert!(
        ports(&d).iter().all(|p| p.state.starts_with("up")),
        "{:#?}",
        ports(&d)
    );
    assert!(
        ping(&p1, &p2),
        "no traffic after kill -9 and restart; log:\n{}",
        d.log_tail()
    );
    nc_transfer(&exec, &p1, &p2, &p2, 5002, 4_000_000);

    // -p: a daemon without services (issue 12) refuses it with the reason, and ADD undoes
    // itself; one with services publishes it (and DEL takes it back).
    let services = match d.client().unwrap().call("service.ls", json!({})) {
        Ok(_) => true,
        Err(e) if e.code == control::proto::ErrorCode::UnknownCommand => false,
        Err(e) => panic!("service.ls: {e}"),
    };
    let out = podman.podman(&[
        "run",
        "--rm",
        "-p",
        "8080:80",
        "--network",
        &net,
        IMAGE,
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(services, "this daemon has services: -p must be published");
    assert!(out.status.success(), "{err}");
    assert_eq!(ports(&d).len(), 2);
    podman.ok(&["rm", "--force", "--time", "0", &p1, &p2]);
    assert!(ports(&d).is_empty(), "{:#?}", ports(&d));
    assert!(endpoints(&d).is_empty(), "{:?}", endpoints(&d));
    assert_eq!(
        leases(&ipam_dir, &net),
        0,
        "host-local still holds addresses"
    );
    drop(podman);
}

/// Runs the plugin as a runtime does.
fn cni(command: &str, container: &str, netns: &str, conf: &Value) -> (Output, Value) {
    let mut child = Command::new(bin("vswitch-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

#[test]
fn cni_add_check_del_and_version_with_host_local_ipam_as_a_runtime_calls_them() {
    let name = "cni_add_check_del_and_version_with_host_local_ipam_as_a_runtime_calls_them";
    if !can_run_system_tests(name) || !have_tools(name, &["/usr/lib/cni/host-local"]) {
        return;
    }
    let tmp = TempDir::new("cni");
    let d = DaemonProcess::start(&bin("vswitchd"), &tmp.0.join("vs")).unwrap();
    let net = unique_name("vscn");
    let ipam_dir = tmp.0.join("ipam");
    let mut conf = plugin_conf(&net, "10.97.0.0/24", "10.97.0.1", &d.socket(), &ipam_dir);
    conf["cniVersion"] = json!("1.0.0");
    conf["name"] = json!(net);
    let ns = Netns::create(&unique_name("vscni")).unwrap();
    let nspath = ns.path();
    let nspath = nspath.to_str().unwrap();
    let id = format!("{:064x}", std::process::id());

    let (out, v) = cni("VERSION", "", "dummy", &json!({}));
    assert!(out.status.success());
    assert!(v["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));

    // ADD: the switch's network is made from the range, the port inside the namespace.
    let (out, result) = cni("ADD", &id, nspath, &conf);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(result["interfaces"][0]["sandbox"], nspath);
    let addr = result["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(
        addr.starts_with("10.97.0.") && addr.ends_with("/24"),
        "{result}"
    );
    assert_eq!(result["ips"][0]["interface"], 0);
    assert_eq!(leases(&ipam_dir, &net), 1);
    let shown = String::from_utf8_lossy(
        &ns.ip(&["-4", "addr", "show", "dev", "eth0"])
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(shown.contains(&addr), "{shown}");
    let routes = String::from_utf8_lossy(&ns.ip(&["route"]).unwrap().stdout).to_string();
    assert!(routes.contains("default via 10.97.0.1"), "{routes}");
    // The gateway (the switch) answers through the new port.
    assert!(
        ns.ping(std::net::Ipv4Addr::new(10, 97, 0, 1), 3).unwrap(),
        "{}",
        d.log_tail()
    );

    // CHECK against the result passes...
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    let (out, _) = cni("CHECK", &id, nspath, &with_prev);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // ...and fails, as CNI error JSON, once the interface lost its address.
    ns.ip(&["addr", "flush", "dev", "eth0"]).unwrap();
    let (out, e) = cni("CHECK", &id, nspath, &with_prev);
    assert!(!out.status.success());
    assert_eq!(e["code"], json!(control::engine::cni::E_CHECK), "{e}");
    assert!(
        e["msg"].as_str().unwrap().contains("has address none"),
        "{e}"
    );
    // A port the daemon lost is reported too.
    d.client()
        .unwrap()
        .call(
            cmd::PORT_RM,
            json!({"name": control::engine::cni::port_name(&id, "eth0")}),
        )
        .unwrap();
    let (_, e) = cni("CHECK", &id, nspath, &with_prev);
    assert!(e["msg"].as_str().unwrap().contains("is missing"), "{e}");

    // DEL releases the address and is idempotent (a runtime may call it again).
    for _ in 0..2 {
        let (out, _) = cni("DEL", &id, nspath, &with_prev);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(leases(&ipam_dir, &net), 0);
    assert!(ports(&d).is_empty());

    // Errors are CNI error objects with the spec's codes.
    let (out, e) = cni("ADD", &id, "", &conf);
    assert!(!out.status.success());
    assert_eq!(e["code"], 4, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("CNI_NETNS"), "{e}");
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.1.0");
    let (_, e) = cni("ADD", &id, nspath, &old);
    assert_eq!(e["code"], 1, "{e}");
    let mut no_ipam = conf.clone();
    no_ipam.as_object_mut().unwrap().remove("ipam");
    let (_, e) = cni("ADD", &id, nspath, &no_ipam);
    assert_eq!(e["code"], 7, "{e}");
    let mut dead = conf.clone();
    dead["socket"] = json!(tmp.0.join("nobody.sock"));
    let (_, e) = cni("ADD", &id, nspath, &dead);
    assert_eq!(
        e["code"], 11,
        "a daemon that does not answer: try again later; {e}"
    );
    assert_eq!(leases(&ipam_dir, &net), 0, "a failed ADD keeps no address");
}
