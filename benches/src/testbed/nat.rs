//! The NAT contender pair: what Docker does for a container's way out (a Linux bridge holding
//! the network's gateway address, the kernel routing out of the host's interface and iptables
//! `MASQUERADE` translating the source, netfilter connection tracking included) against
//! vswitchd's own gateway (a `--subnet` network whose gateway routes out of the uplink with
//! source NAT), in the testbed's generator and sink namespaces, the same shape both ways:
//!
//! ```text
//!  natbridge:
//!  gen ns                        dut ns                                          sink ns
//!  gen0 10.81.0.2 ==veth== dg -[brnat 10.81.0.1] -> route, MASQUERADE -> ds 10.82.0.1 ==veth== sink0 10.82.0.2
//!       via 10.81.0.1
//!
//!  nattap:
//!  gen ns                                  (vswitchd in dut ns)                  sink ns
//!  ng 10.83.0.2 ==TAP== [network nat 10.83.0.0/24, gateway 10.83.0.1 | uplink 10.84.0.1] ==TAP== nu 10.84.0.2
//!     via 10.83.0.1
//! ```
//!
//! The kernel side uses the testbed's veths (as the `bridge` contender does), ours TAP ports
//! whose kernel ends sit in the same two namespaces (as the `tap` contender does), since that
//! is how a container meets each: a veth into the host's bridge, a TAP from the switch. The
//! generator sends one UDP flow (one NAT session) from the container's address to the
//! server's, to the gateway's MAC; the sink counts what arrives, translated. TCP runs from the
//! container's namespace to a server in the sink's, through the translation.
//!
//! Everything the pair adds is removed when it ends, whatever happened: addresses and routes
//! in the generator's and sink's namespaces, the bridge, addresses, sysctl and iptables rules
//! in the DUT namespace (which is the testbed's own: deleting it, as the testbed does at the
//! end, takes any rule with it), the daemon and its TAP devices.
//!
//! The generator rewrites its frame before each transmission for this pair
//! ([`super::traffic::PpsPath::rewrite`]): the kernel's router changes the live-frames pages in
//! place (MACs, TTL, the translated source) and they come back to the generator that way.
//! `TESTBED_NAT_DEBUG=1` prints the DUT namespace's counters (`nstat`, links, `iptables-save
//! -c`, conntrack) after the small-packet runs: where the generator's frames went.

use super::contenders::{
    call, daemon_stats, pps_runs, tcp_series, vswitchd_exe, Config, Guard, Outcome,
};
use super::net::{self, run, stopping, Testbed};
use super::traffic::{self, XdpLink};
use dataplane::sys::bpf;
use serde_json::json;
use std::any::Any;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

/// What the NAT contenders' ratios are taken against.
pub const KERNEL_NAME: &str = "linux bridge+masquerade";

/// One side's plan: the container's and the server's addresses, the gateway and the uplink.
struct Plan {
    container: [u8; 4],
    gateway: [u8; 4],
    uplink: [u8; 4],
    server: [u8; 4],
}

const KERNEL: Plan = Plan {
    container: [10, 81, 0, 2],
    gateway: [10, 81, 0, 1],
    uplink: [10, 82, 0, 1],
    server: [10, 82, 0, 2],
};

const OURS: Plan = Plan {
    container: [10, 83, 0, 2],
    gateway: [10, 83, 0, 1],
    uplink: [10, 84, 0, 1],
    server: [10, 84, 0, 2],
};

fn dotted(ip: [u8; 4]) -> String {
    Ipv4Addr::from(ip).to_string()
}

fn subnet(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.0/24", ip[0], ip[1], ip[2])
}

fn cidr(ip: [u8; 4]) -> String {
    format!("{}/24", dotted(ip))
}

/// Commands run (in namespace `.0`, through `ip netns exec`) when dropped, last first, their
/// errors ignored: the undo list of what a contender set up.
struct Undo(String, Vec<Vec<String>>);

impl Undo {
    fn new(ns: &str) -> Undo {
        Undo(ns.to_string(), Vec::new())
    }

    /// Runs `args` in the namespace and, once it worked, remembers `back` to undo it.
    fn exec(&mut self, args: &[&str], back: &[&str]) -> Result<(), String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args))?;
        if !back.is_empty() {
            self.1.push(back.iter().map(|s| s.to_string()).collect());
        }
        Ok(())
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for c in self.1.iter().rev() {
            let _ = run(Command::new("ip")
                .args(["netns", "exec", &self.0])
                .args(c.iter()));
        }
    }
}

/// The MAC that namespace `ns` resolved for `ip` (its neighbour table, after a ping).
fn neigh_mac(ns: &str, ip: [u8; 4]) -> Result<[u8; 6], String> {
    let out = run(Command::new("ip").args(["-n", ns, "-j", "neigh", "show", &dotted(ip)]))?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("ip -j neigh: {e}"))?;
    let s = v
        .get(0)
        .and_then(|e| e.get("lladdr"))
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("{ns} has not resolved {}", dotted(ip)))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC {s}"));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC {s}"))?;
    }
    Ok(mac)
}

/// Where one NAT contender's container and server ends are.
struct Ends {
    /// The container's namespace and interface (the generator's).
    gen: (String, String),
    /// The server's namespace and interface (the sink's).
    sink: (String, String),
}

/// Measures one NAT contender once it is set up: the path checked with a ping, then the
/// small-packet runs (before each, `refresh` lets the gateway reconfirm the server's MAC, as
/// the sink's drop program also drops ARP while it counts), then TCP.
fn measure(
    tb: &Testbed,
    cfg: &Config,
    out: &mut Outcome,
    plan: &Plan,
    ends: &Ends,
    mut during_pps: impl FnMut() -> Result<Guard, String>,
    mut refresh: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let server = Ipv4Addr::from(plan.server);
    if !tb.gen.ping(server, 2)? {
        return Err(format!(
            "ping {} -> {server} through NAT failed: no path",
            dotted(plan.container)
        ));
    }
    let gw_mac = neigh_mac(&ends.gen.0, plan.gateway)?;
    for i in 0..cfg.runs {
        if stopping() {
            return Err("stopped".into());
        }
        refresh()?;
        let mut held = Vec::new();
        pps_runs(
            cfg,
            out,
            (&ends.gen.0, &ends.gen.1),
            (&ends.sink.0, &ends.sink.1),
            (gw_mac, plan.server),
            plan.container,
            i..i + 1,
            true,
            || {
                held = during_pps()?;
                Ok(())
            },
        )?;
        drop(held);
    }
    if std::env::var_os("TESTBED_NAT_DEBUG").is_some() {
        for c in [
            "nstat -az | grep -v ' 0 ' ",
            "ip -s -s link",
            "iptables-save -c",
            "cat /proc/net/nf_conntrack 2>/dev/null | head",
            "ip neigh",
            "sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter",
        ] {
            let o = run(Command::new("ip").args(["netns", "exec", tb.dut.name(), "sh", "-c", c]));
            println!("--- {c}\n{}", o.unwrap_or_else(|e| e));
        }
    }
    tcp_series(cfg, out, &ends.gen.0, &ends.sink.0, plan.server);
    Ok(())
}

/// Docker's way out: a Linux bridge `brnat` in the DUT namespace with `dg` as its port and the
/// gateway address, routing out of `ds` (the host's interface) with Docker's iptables rules
/// (`MASQUERADE` for the network's subnet leaving by another interface, `FORWARD` accepting
/// what leaves the bridge and what comes back to it).
pub fn kernel_nat(tb: &Testbed, cfg: &Config) -> Outcome {
    let mut out = Outcome::new(
        KERNEL_NAME,
        "gen0 10.81.0.2 ==veth== dg [bridge brnat 10.81.0.1, routing, iptables MASQUERADE] ds 10.82.0.1 ==veth== sink0 10.82.0.2; default offloads",
    );
    out.versus = Some(KERNEL_NAME.into());
    if !net::have("iptables") {
        return out.skip("iptables is not installed (apt install iptables)");
    }
    let p = &KERNEL;
    let (g, s) = (&tb.gen_link, &tb.sink_link);
    let r = (|| {
        let mut ends_undo = (Undo::new(tb.gen.name()), Undo::new(tb.sink.name()));
        let (gu, su) = (&mut ends_undo.0, &mut ends_undo.1);
        let (c, sv) = (cidr(p.container), cidr(p.server));
        let far = subnet(p.server);
        let gw = dotted(p.gateway);
        gu.exec(
            &["ip", "addr", "add", &c, "dev", &g.outer.1],
            &["ip", "addr", "del", &c, "dev", &g.outer.1],
        )?;
        gu.exec(
            &["ip", "route", "add", &far, "via", &gw],
            &["ip", "route", "del", &far],
        )?;
        su.exec(
            &["ip", "addr", "add", &sv, "dev", &s.outer.1],
            &["ip", "addr", "del", &sv, "dev", &s.outer.1],
        )?;

        let mut dut = Undo::new(tb.dut.name());
        let (dg, ds) = (g.inner.1.as_str(), s.inner.1.as_str());
        dut.exec(
            &["ip", "link", "add", "brnat", "type", "bridge"],
            &["ip", "link", "del", "brnat"],
        )?;
        dut.exec(
            &["ip", "link", "set", dg, "master", "brnat"],
            &["ip", "link", "set", dg, "nomaster"],
        )?;
        let gwc = cidr(p.gateway);
        dut.exec(&["ip", "addr", "add", &gwc, "dev", "brnat"], &[])?;
        dut.exec(&["ip", "link", "set", "brnat", "up"], &[])?;
        let up = cidr(p.uplink);
        dut.exec(
            &["ip", "addr", "add", &up, "dev", ds],
            &["ip", "addr", "del", &up, "dev", ds],
        )?;
        dut.exec(
            &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            &["sysctl", "-qw", "net.ipv4.ip_forward=0"],
        )?;
        // Docker's rules for a bridge network (`docker0` here `brnat`).
        let src = subnet(p.container);
        let masq = [
            "POSTROUTING",
            "-s",
            &src,
            "!",
            "-o",
            "brnat",
            "-j",
            "MASQUERADE",
        ];
        let a: Vec<&str> = ["iptables", "-t", "nat", "-A"]
            .iter()
            .chain(&masq)
            .copied()
            .collect();
        let d: Vec<&str> = ["iptables", "-t", "nat", "-D"]
            .iter()
            .chain(&masq)
            .copied()
            .collect();
        dut.exec(&a, &d)?;
        let back = [
            "FORWARD",
            "-o",
            "brnat",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ];
        let out_of = ["FORWARD", "-i", "brnat", "!", "-o", "brnat", "-j", "ACCEPT"];
        for rule in [&back[..], &out_of[..]] {
            let a: Vec<&str> = ["iptables", "-A"].iter().chain(rule).copied().collect();
            let d: Vec<&str> = ["iptables", "-D"].iter().chain(rule).copied().collect();
            dut.exec(&a, &d)?;
        }
        // The server's MAC, fixed: the sink's drop program drops ARP while it counts, and a
        // kernel neighbour entry goes stale within 15-45 s, then fails its probes.
        let smac = net::mac_of(&s.outer.0, &s.outer.1)?;
        let smac = smac.map(|b| format!("{b:02x}")).join(":");
        let server = dotted(p.server);
        dut.exec(
            &[
                "ip",
                "neigh",
                "replace",
                &server,
                "lladdr",
                &smac,
                "dev",
                ds,
                "nud",
                "permanent",
            ],
            &["ip", "neigh", "del", &server, "dev", ds],
        )?;
        // The bridge port forwards once out of the learning states (no STP: at once).
        net::sleep(Duration::from_millis(200));
        out.notes.push(format!(
            "server's MAC permanent in the DUT's neighbour table; iptables: {}",
            run(Command::new("iptables").arg("--version"))
                .unwrap_or_default()
                .trim()
        ));

        let pass = traffic::action_program("tb_nat_pass", bpf::XDP_PASS)?;
        let ends = Ends {
            gen: g.outer.clone(),
            sink: s.outer.clone(),
        };
        let dut_ns = tb.dut.name().to_string();
        let dg_name = dg.to_string();
        let mut napi_note = None;
        let r = measure(
            tb,
            cfg,
            &mut out,
            p,
            &ends,
            // A veth takes the generator's `ndo_xdp_xmit` only while it has NAPI; with
            // --threaded-napi that NAPI (the bridge, routing and netfilter) moves to the DUT core.
            || {
                let link = XdpLink::attach(&pass, &dut_ns, &dg_name)?;
                if cfg.threaded_napi {
                    let pid = net::threaded_napi(&dut_ns, &dg_name, cfg.dut_core)?;
                    napi_note = Some(format!(
                        "receive work of {dg_name} in NAPI thread {pid} on core {}",
                        cfg.dut_core
                    ));
                }
                Ok(vec![Box::new(link) as Box<dyn Any>])
            },
            || Ok(()),
        );
        out.notes.extend(napi_note);
        if let Ok(v) = run(Command::new("ip").args([
            "netns",
            "exec",
            &dut_ns,
            "iptables",
            "-t",
            "nat",
            "-L",
            "POSTROUTING",
            "-v",
            "-n",
            "-x",
        ])) {
            if let Some(l) = v.lines().find(|l| l.contains("MASQUERADE")) {
                let f: Vec<&str> = l.split_whitespace().collect();
                out.notes.push(format!(
                    "MASQUERADE rule matched {} new connections",
                    f.first().unwrap_or(&"?")
                ));
            }
        }
        drop(dut);
        drop(ends_undo);
        r
    })();
    if let Err(e) = r {
        out.notes.push(e);
    }
    out
}

/// vswitchd's gateway: a TAP port `ng` in network `nat` (10.83.0.0/24, gateway 10.83.0.1) with
/// its kernel end in the generator's namespace, and the uplink, a TAP port `nu` with its kernel
/// end (the server, 10.84.0.2) in the sink's, the uplink address 10.84.0.1 the NAT address.
pub fn vswitchd_nat(tb: &Testbed, cfg: &Config) -> Outcome {
    let id = std::process::id() % 100_000;
    let (ng, nu) = (format!("ng{id}"), format!("nu{id}"));
    let mut out = Outcome::new(
        "vswitchd nat tap",
        "gen ng 10.83.0.2 ==TAP== [vswitchd: network 10.83.0.0/24, gateway, source NAT, uplink 10.84.0.1] ==TAP== nu 10.84.0.2 sink; default offloads",
    );
    out.versus = Some(KERNEL_NAME.into());
    let exe = match vswitchd_exe() {
        Ok(e) => e,
        Err(e) => return out.skip(e),
    };
    let dir = cfg.scratch.join("vswitchd-nat");
    let p = &OURS;
    let r = (|| {
        let d = vswitch::testbed::DaemonProcess::start_in(&exe, &dir, Some(tb.dut.name()))?;
        call(
            &d,
            "network.create",
            json!({"name": "nat", "subnet": subnet(p.container)}),
        )?;
        call(
            &d,
            "port.add",
            json!({"name": ng, "type": "tap", "netns": tb.gen.name(), "network": "nat"}),
        )?;
        call(
            &d,
            "port.add",
            json!({"name": nu, "type": "tap", "netns": tb.sink.name()}),
        )?;
        call(&d, "uplink.set", json!({"port": nu, "ip": cidr(p.uplink)}))?;
        // The TAP devices go with the daemon; the route goes with its device.
        tb.gen
            .ip(&["addr", "add", &cidr(p.container), "dev", &ng])?;
        tb.gen.ip(&["link", "set", &ng, "up"])?;
        tb.gen
            .ip(&["route", "add", &subnet(p.server), "via", &dotted(p.gateway)])?;
        tb.sink.ip(&["addr", "add", &cidr(p.server), "dev", &nu])?;
        tb.sink.ip(&["link", "set", &nu, "up"])?;
        let ends = Ends {
            gen: (tb.gen.name().into(), ng.clone()),
            sink: (tb.sink.name().into(), nu.clone()),
        };
        let uplink = Ipv4Addr::from(p.uplink);
        let r = measure(
            tb,
            cfg,
            &mut out,
            p,
            &ends,
            || Ok(Vec::new()),
            // The server asks for the uplink's MAC afresh: the daemon learns the asker
            // (RFC 826), which reconfirms the server's MAC for the next 30 s.
            // (The uplink address answers ARP, not echo requests: the daemon drops the
            // request itself as `nat_icmp_unsupported`, once per run.)
            || {
                let _ = tb.sink.ip(&["neigh", "flush", "dev", &nu]);
                let _ = tb.sink.ping_icmp(uplink, 1, Duration::from_millis(100));
                neigh_mac(tb.sink.name(), p.uplink)
                    .map(|_| ())
                    .map_err(|e| format!("the server no longer resolves the uplink: {e}"))
            },
        );
        out.notes.push(daemon_stats(&d));
        if let Ok(v) = call(&d, "nat.stats", json!({})) {
            out.notes.push(format!(
                "nat: {} sessions created, {} live",
                v.get("created").unwrap_or(&json!(null)),
                v.get("sessions").unwrap_or(&json!(null))
            ));
        }
        drop(d);
        r
    })();
    if let Err(e) = r {
        out.notes.push(e);
    }
    out
}
