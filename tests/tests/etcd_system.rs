//! The multi-host control plane on etcd (issue 14): a real etcd (Debian's `etcd-server`, started
//! by hand in a namespace of its own) and three daemons in three "host" namespaces on one
//! underlay; no `peer add`, no `fdb add`: everything comes from the store.
//!
//! Underlay: a "core" namespace holds a bridge and etcd (192.168.90.254:2379); each host joins
//! it with a veth into its own bridge, where its daemon's uplink TAP (192.168.90.N) sits beside
//! the host kernel's own address (192.168.90.1N, which the daemon's store agent uses to reach
//! etcd).

use serde_json::json;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::{bin, can_run_system_tests, TempDir};
use vswitch::testbed::{tcp_transfer, unique_name, wait_passing, DaemonProcess, Netns, SIGKILL};

/// The hosts' lease TTL (etcd's minimum is about 2 s with its default timings).
const TTL: u64 = 5;
const ETCD_IP: &str = "192.168.90.254";
/// Seconds between key rotations of encrypted global networks.
const ROTATE: u64 = 4;

/// etcd in the core namespace; stopped by its pid on drop.
struct Etcd {
    core: String,
    data: std::path::PathBuf,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Etcd {
    fn start(core: &Netns, dir: &Path) -> Etcd {
        let mut e = Etcd {
            core: core.name().to_string(),
            data: dir.join("etcd-data"),
            log: dir.join("etcd.log"),
            child: None,
        };
        e.restart();
        e
    }

    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let client = format!("http://{ETCD_IP}:2379");
        // `ip netns exec` execs etcd: the child's pid is etcd's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.core, "etcd", "--name", "core"])
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "core=http://127.0.0.1:2380"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child, not yet reaped, so its pid is not reused.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

use tests::call;

/// Waits (at most `limit`) until `ok` holds; how long it took, or `None`.
fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    for _ in 0..100_000 {
        if ok() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn has_peer(d: &DaemonProcess, vtep: &str) -> bool {
    call(d, "peer.ls", json!({}))
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p["vtep"] == vtep))
}

fn mac_of(ns: &Netns, dev: &str) -> String {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut w = text.split_whitespace();
    while let Some(x) = w.next() {
        if x == "link/ether" {
            return w.next().unwrap_or("").to_string();
        }
    }
    panic!("no MAC for {dev}: {text}");
}

/// A static entry from the store for `mac` behind `vtep` in `d`'s table.
fn has_remote_mac(d: &DaemonProcess, mac: &str, vtep: &str) -> bool {
    call(d, "fdb.ls", json!({"network": "ov"}))
        .as_array()
        .is_some_and(|a| {
            a.iter()
                .any(|e| e["mac"] == mac && e["vtep"] == vtep && e["kind"] == "static")
        })
}

struct Host {
    _ns: Netns,
    d: DaemonProcess,
}

/// Host `n` (1-3): its namespace joined to the core bridge, its daemon on the store, its uplink.
fn host(core: &Netns, dir: &Path, n: u8) -> Host {
    let ns = Netns::create(&unique_name(&format!("vsh{n}"))).unwrap();
    let veth = unique_name("vse");
    core.ip(&[
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        "underlay",
        "netns",
        ns.name(),
    ])
    .unwrap();
    core.ip(&["link", "set", &veth, "master", "br0", "up"])
        .unwrap();
    ns.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    ns.ip(&["link", "set", "underlay", "master", "br0", "up"])
        .unwrap();
    ns.ip(&["addr", "add", &format!("192.168.90.1{n}/24"), "dev", "br0"])
        .unwrap();
    ns.ip(&["link", "set", "br0", "up"]).unwrap();
    let d = DaemonProcess::start_with(
        &bin("vswitchd"),
        &dir.join(format!("host{n}")),
        Some(ns.name()),
        &[
            "--store",
            &format!("etcd://{ETCD_IP}:2379"),
            "--host-id",
            &format!("h{n}"),
            "--store-ttl",
            &TTL.to_string(),
            "--store-key-rotation",
            &ROTATE.to_string(),
        ],
    )
    .unwrap();
    let uplink = format!("uplink{n}");
    call(&d, "port.add", json!({"name": uplink, "type": "tap"}));
    ns.ip(&["link", "set", &uplink, "master", "br0"]).unwrap();
    call(
        &d,
        "uplink.set",
        json!({"port": uplink, "ip": format!("192.168.90.{n}/24")}),
    );
    wait_passing(&ns, &["underlay", &uplink, "br0"], Duration::from_secs(5)).unwrap();
    Host { _ns: ns, d }
}

/// A container on network `ov` of `h` with `ip`/24; answers ARP retries fast (0.1 s), so that
/// reachability is the store's delay, not the kernel's one-second ARP retry.
fn container(h: &Host, ip: Ipv4Addr) -> (Netns, String) {
    container_on(h, "ov", ip)
}

fn container_on(h: &Host, net: &str, ip: Ipv4Addr) -> (Netns, String) {
    let ns = Netns::create(&unique_name("vsc")).unwrap();
    let port = unique_name("etp");
    call(
        &h.d,
        "port.add",
        json!({"name": port, "type": "tap", "network": net, "netns": ns.name()}),
    );
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &port])
        .unwrap();
    let _ = ns.exec(&[
        "sysctl",
        "-qw",
        &format!("net.ipv4.neigh.{port}.retrans_time_ms=100"),
    ]);
    (ns, port)
}

#[test]
fn three_hosts_share_networks_peers_and_macs_through_etcd() {
    if !can_run_system_tests("three_hosts_share_networks_peers_and_macs_through_etcd") {
        return;
    }
    if Command::new("etcd").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "etcd is not installed (Debian: etcd-server)"
        );
        eprintln!("SKIPPED: etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let tmp = TempDir::new("etcd");
    let core = Netns::create(&unique_name("vscore")).unwrap();
    core.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    core.ip(&["addr", "add", &format!("{ETCD_IP}/24"), "dev", "br0"])
        .unwrap();
    core.ip(&["link", "set", "br0", "up"]).unwrap();
    let mut etcd = Etcd::start(&core, &tmp.0);
    // Host 2 first, so that it takes the key leadership and its death moves it.
    let second = host(&core, &tmp.0, 2);
    assert!(
        wait_for(Duration::from_secs(10), || call(
            &second.d,
            "cluster.ls",
            json!({})
        )["leader"]
            == "h2")
        .is_some(),
        "host 2 did not take the leadership: {}",
        second.d.log_tail()
    );
    let first = host(&core, &tmp.0, 1);
    let hosts: Vec<Host> = vec![first, second, host(&core, &tmp.0, 3)];
    let [h1, h2, h3] = &hosts[..] else {
        unreachable!()
    };
    for h in &hosts {
        let ok = wait_for(Duration::from_secs(15), || {
            call(&h.d, "cluster.ls", json!({}))["hosts"]
                .as_array()
                .is_some_and(|a| a.len() == 3)
        });
        assert!(
            ok.is_some(),
            "the hosts did not all register: {}\nlog:\n{}\netcd:\n{}",
            call(&h.d, "cluster.ls", json!({})),
            h.d.log_tail(),
            etcd.log_tail()
        );
    }

    // A global network made on host 1 appears on the others, with the subnet the store gave.
    let made = call(
        &h1.d,
        "network.create",
        json!({"name": "ov", "vni": 900, "scope": "global"}),
    );
    assert_eq!(made["subnet"], "10.210.0.0/24", "{made}");
    for h in [h2, h3] {
        assert!(
            wait_for(Duration::from_secs(5), || {
                h.d.client()
                    .unwrap()
                    .call("network.inspect", json!({"name": "ov"}))
                    .is_ok()
            })
            .is_some(),
            "the global network did not reach a host: {}",
            h.d.log_tail()
        );
    }
    // The same VNI, or the same name, made elsewhere is refused by the store.
    let e =
        h2.d.client()
            .unwrap()
            .call(
                "network.create",
                json!({"name": "other", "vni": 900, "scope": "global"}),
            )
            .unwrap_err();
    assert!(e.message.contains("VNI 900"), "{e}");

    let ip = |n: u8| Ipv4Addr::new(10, 210, 0, n);
    let (c1, _) = container(h1, ip(11));
    let (c2, _) = container(h2, ip(12));

    // Host 3's first container: reachable from host 1 as soon as the store says so.
    let t0 = Instant::now();
    let (c3, p3) = container(h3, ip(13));
    let peer_in =
        wait_for(Duration::from_secs(5), || has_peer(&h1.d, "192.168.90.3")).map(|_| t0.elapsed());
    let mut reached = None;
    for _ in 0..50 {
        if c1
            .ping_icmp(ip(13), 1, Duration::from_millis(150))
            .unwrap()
            .received()
            > 0
        {
            reached = Some(t0.elapsed());
            break;
        }
    }
    eprintln!("host 3's container: peer on host 1 after {peer_in:?}, first ping from host 1 after {reached:?}");
    let peer_in = peer_in.expect("host 1 never got host 3 as a peer");
    assert!(
        peer_in < Duration::from_secs(1),
        "the store took {peer_in:?} to bring host 3 to host 1"
    );
    let reached = reached.unwrap_or_else(|| {
        panic!(
            "host 1 never reached host 3; h1 log:\n{}\nh3 log:\n{}",
            h1.d.log_tail(),
            h3.d.log_tail()
        )
    });
    assert!(
        reached < Duration::from_secs(2),
        "host 3's container answered host 1 only after {reached:?}"
    );

    // Containers on the two hosts that did not make the network: ping and checked TCP, and
    // not one `peer add` anywhere.
    assert!(c2.ping(ip(13), 3).unwrap(), "host 2 cannot reach host 3");
    let t = tcp_transfer(
        &c3.path(),
        ip(13),
        &c2.path(),
        20 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("TCP host 2 -> host 3: {e}"));
    eprintln!("TCP between hosts 2 and 3: {:.0} Mbit/s", t.mbps());
    let peers = call(&h2.d, "peer.ls", json!({}));
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["origin"] == "store"),
        "{peers}"
    );

    // Endpoints are published: host 1 holds host 3's container MAC as a static entry.
    let m3 = mac_of(&c3, &p3);
    assert!(
        wait_for(Duration::from_secs(5), || has_remote_mac(
            &h1.d,
            &m3,
            "192.168.90.3"
        ))
        .is_some(),
        "host 3's MAC {m3} never came to host 1: {}",
        call(&h1.d, "fdb.ls", json!({"network": "ov"}))
    );

    // An encrypted global network: the elected leader writes its keys, every host installs
    // them, and rotates them every ROTATE seconds without losing a packet.
    call(
        &h1.d,
        "network.create",
        json!({"name": "sec", "vni": 901, "scope": "global", "encrypted": true}),
    );
    let sip = |n: u8| Ipv4Addr::new(10, 210, 1, n);
    assert!(
        wait_for(Duration::from_secs(5), || h3
            .d
            .client()
            .unwrap()
            .call("network.inspect", json!({"name": "sec"}))
            .is_ok())
        .is_some(),
        "the encrypted network did not reach host 3"
    );
    let (s1, _) = container_on(h1, "sec", sip(11));
    let (_s3, _) = container_on(h3, "sec", sip(13));
    let primary = |d: &DaemonProcess| call(d, "cluster.ls", json!({}))["key_primary"].as_u64();
    let keyed = wait_for(Duration::from_secs(10), || {
        hosts.iter().all(|h| {
            call(&h.d, "key.ls", json!({}))
                .as_array()
                .is_some_and(|a| a.iter().any(|k| k["primary"] == true))
        })
    });
    assert!(
        keyed.is_some(),
        "the store's keys never reached every host: {}\n{}",
        call(&h1.d, "cluster.ls", json!({})),
        h1.d.log_tail()
    );
    let first_key = primary(&h1.d).expect("a primary key");
    assert!(
        wait_for(Duration::from_secs(5), || s1.ping(sip(13), 1).unwrap()).is_some(),
        "no ping over the encrypted global network"
    );
    let rotated = std::thread::scope(|s| {
        let pinger = s.spawn(|| s1.ping_icmp(sip(13), 50, Duration::from_secs(1)).unwrap());
        let rotated = wait_for(Duration::from_secs(ROTATE * 3), || {
            primary(&h1.d).is_some_and(|p| p > first_key)
                && hosts.iter().all(|h| {
                    call(&h.d, "key.ls", json!({}))
                        .as_array()
                        .is_some_and(|a| a.len() == 1 && a[0]["tag"].as_u64() > Some(first_key))
                })
        });
        let report = pinger.join().unwrap();
        eprintln!(
            "key rotation {first_key} -> {:?} under a ping over the encrypted network: {}/{} answered",
            primary(&h1.d),
            report.received(),
            report.transmitted
        );
        assert!(report.all_answered(), "a rotation lost packets");
        rotated
    });
    assert!(
        rotated.is_some(),
        "no rotation in {} s: {}",
        ROTATE * 3,
        call(&h1.d, "cluster.ls", json!({}))
    );
    let leader = call(&h1.d, "cluster.ls", json!({}))["leader"].clone();

    // The store goes away: traffic goes on, status says so, a change made meanwhile (a new
    // container on host 3) arrives once it is back.
    std::thread::scope(|s| {
        let pinger = s.spawn(|| c1.ping_icmp(ip(13), 60, Duration::from_secs(1)).unwrap());
        std::thread::sleep(Duration::from_millis(500));
        etcd.stop();
        let down = wait_for(Duration::from_secs(TTL + 3), || {
            call(&h1.d, "status", json!({}))["store"]["reachable"] == false
        });
        assert!(
            down.is_some(),
            "status never said the store was unreachable"
        );
        let (c4, p4) = container(h3, ip(14));
        assert!(c4.ping(ip(13), 2).unwrap(), "host 3 local traffic");
        let m4 = mac_of(&c4, &p4);
        std::thread::sleep(Duration::from_millis(1500));
        let st = call(&h3.d, "cluster.ls", json!({}));
        assert_eq!(st["store"]["pending"], true, "{st}");
        etcd.restart();
        let back = wait_for(Duration::from_secs(15), || {
            has_remote_mac(&h1.d, &m4, "192.168.90.3")
        });
        eprintln!("store restarted: the change made meanwhile arrived after {back:?}");
        assert!(
            back.is_some(),
            "the change made while the store was away never arrived: {}\nh3 log:\n{}\nh1 log:\n{}",
            call(&h3.d, "cluster.ls", json!({})),
            h3.d.log_tail(),
            h1.d.log_tail()
        );
        let report = pinger.join().unwrap();
        eprintln!(
            "ping host 1 -> host 3 across the store's absence: {}/{}",
            report.received(),
            report.transmitted
        );
        assert!(
            report.all_answered(),
            "traffic stopped while the store was away"
        );
        drop(c4);
    });
    assert_eq!(call(&h1.d, "status", json!({}))["store"]["reachable"], true);

    // Host 2 dies: it leaves every other host within the lease's TTL.
    let mut hosts = hosts;
    hosts[1].d.signal(SIGKILL).unwrap();
    let (h1, h3) = (&hosts[0], &hosts[2]);
    let gone = wait_for(Duration::from_secs(TTL + 5), || {
        !has_peer(&h1.d, "192.168.90.2")
            && !has_peer(&h3.d, "192.168.90.2")
            && call(&h1.d, "cluster.ls", json!({}))["hosts"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
    });
    eprintln!("host 2 killed: gone from the others after {gone:?} (TTL {TTL} s)");
    let gone = gone.unwrap_or_else(|| {
        panic!(
            "host 2 never left: {}",
            call(&h1.d, "cluster.ls", json!({}))
        )
    });
    assert!(
        gone <= Duration::from_secs(TTL + 2),
        "host 2 took {gone:?} to leave (TTL {TTL} s; etcd checks expiry every 0.5 s)"
    );
    let fdb = call(&h1.d, "fdb.ls", json!({"network": "ov"}));
    assert!(
        !fdb.to_string().contains("192.168.90.2"),
        "host 2's MACs stayed: {fdb}"
    );
    // Had host 2 the key leadership, another host has it now.
    let now_leader = call(&h1.d, "cluster.ls", json!({}))["leader"].clone();
    eprintln!("key leader before: {leader}, after host 2 died: {now_leader}");
    assert_eq!(leader, "h2");
    assert!(
        wait_for(Duration::from_secs(TTL + 5), || {
            let l = call(&h1.d, "cluster.ls", json!({}))["leader"].clone();
            l.is_string() && l != "h2"
        })
        .is_some(),
        "nobody took the leadership after host 2"
    );
    // The new leader goes on rotating.
    let before = primary(&h1.d).unwrap_or(0);
    assert!(
        wait_for(Duration::from_secs(ROTATE * 3), || primary(&h1.d)
            .is_some_and(|p| p > before))
        .is_some(),
        "no rotation under the new leader: {}",
        call(&h1.d, "cluster.ls", json!({}))
    );
    assert!(c1.ping(ip(13), 2).unwrap(), "hosts 1 and 3 still talk");
    drop(hosts);
    drop(etcd);
}
