//! The overlay contenders: TCP between two "containers" on two "hosts" whose only link is one
//! veth pair (the underlay), carried in VXLAN (VNI 4200) by
//!
//! * `vxkernel`: the kernel on both hosts, the way Docker's overlay driver does it: each
//!   container's veth in a bridge with a kernel `vxlan` device on the underlay veth;
//! * `vxtap`: vswitchd on both hosts, its uplink a TAP device in a bridge with the underlay
//!   veth, the containers on its TAP ports (UDP tunnel GSO on where the kernel has it);
//! * `vxtapplain`: as `vxtap`, plain TAP reads and writes (`--tap-uring off`);
//! * `vxtapcut`: the same with `--tap-tunnel-gso off` (super-frames cut before encapsulation:
//!   the path before tunnel GSO, and the one for kernels without it);
//! * `vxvtep` / `vxvtepin`: vswitchd on host 1, the kernel on host 2; ours sending, then
//!   receiving;
//! * `vxesp`: vswitchd on both hosts, the network encrypted (ESP, AES-128-GCM); `vxespnogro`
//!   the same with `--tap-gro off`;
//! * `vxafxdp`: vswitchd on both hosts with AF_XDP uplinks on the underlay veth itself;
//! * `vxovs`: Open vSwitch's userspace datapath on both hosts (where installed): a private
//!   ovsdb-server and ovs-vswitchd per host, `br-phy` owning the underlay veth (an `afxdp` port
//!   by default) with the VTEP's address on its internal port, `br-int` with the container's
//!   `tap` port and a `vxlan` port.
//!
//! ```text
//!  host 1                                                host 2
//!  c1 10.91.0.1 --veth/TAP-- [VTEP 192.168.91.1] u ==veth== u [VTEP 192.168.91.2] --veth/TAP-- c2 10.91.0.2
//! ```
//!
//! The containers' MTU is the overlay's (1450; 1416 encrypted). TCP is [`tcp_series`] from c1
//! to c2 (a checked transfer, then iperf3 on core 0); the daemons run where they run by
//! default (the last core on a 2-core machine; OVS is pinned there too). The small-packet rate
//! is [`pps_series`]: the testbed's generator (live-frames `XDP_TX`, core 0) on c1's interface
//! (the veth for the kernel, the TAP's kernel end for vswitchd and OVS) sends 64-byte UDP
//! frames addressed to c2's MAC and address, and the sink's drop program on c2's interface
//! counts what crossed the overlay. Ratios are to `vxkernel` in the same run. Everything is
//! made in namespaces of its own, and goes (daemons first, then namespaces) when the contender
//! ends, whatever happened.

use super::contenders::{
    call, daemon_stats, pps_series, tcp_series, vswitchd_exe, Config, Outcome, Ovs, OvsPlacement,
};
use super::net::{self, stopping};
use super::traffic::{self, XdpLink};
use dataplane::sys::bpf;
use serde_json::json;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use vswitch::testbed::{unique_name, wait_passing, DaemonProcess, Netns};

/// What the overlay contenders' ratios are taken against.
pub const KERNEL_NAME: &str = "kernel vxlan x2 (docker)";

/// The overlay's VNI.
const VNI: u32 = 4200;
/// A fixed AES-128 key and salt for the encrypted contender (a benchmark, not a secret).
const KEY: &str = "000102030405060708090a0b0c0d0e0f10111213";

/// Who carries the overlay on a host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Vtep {
    /// The kernel's vxlan device, bridged with the container's veth.
    Kernel,
    /// vswitchd with a TAP uplink; extra daemon flags; encrypted network.
    Ours(&'static [&'static str], bool),
    /// vswitchd with an AF_XDP uplink on the underlay veth itself.
    OursXdp,
    /// Open vSwitch's userspace datapath; its uplink port type, and userspace TSO on or off.
    Ovs(&'static str, bool),
    /// As `Ours(&[], true)`, the network's ESP in UDP (`--esp-encap udp`, RFC 3948).
    OursEspUdp,
}

/// One host: its namespace, its container's, and its daemon if ours or OVS's (dropped first).
struct Host {
    daemon: Option<DaemonProcess>,
    ovs: Option<Ovs>,
    container: Netns,
    ns: Netns,
    /// The container's interface.
    dev: &'static str,
    /// The host's end of the container's veth, which needs an XDP program while the generator
    /// sends from the container (a veth takes `ndo_xdp_xmit` only while its peer has NAPI).
    pass: Option<&'static str>,
}

/// The core host `i`'s switch is put on: `TESTBED_OVERLAY_CORES=A,B` puts host 1's on core A
/// and host 2's on core B; `None`: where it places itself.
fn overlay_core(i: u8) -> Option<String> {
    let cores = std::env::var("TESTBED_OVERLAY_CORES").ok()?;
    cores
        .split(',')
        .nth(usize::from(i - 1))
        .map(|c| c.trim().to_string())
}

/// The container address of host `i` (1 or 2).
fn container_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 91, 0, i)
}

/// Builds host `i` (1 or 2) of the pair in `ns`, whose underlay veth end is `u`.
fn host(cfg: &Config, i: u8, ns: Netns, vtep: Vtep) -> Result<Host, String> {
    let (vtep, esp_udp) = match vtep {
        Vtep::OursEspUdp => (Vtep::Ours(&[], true), true),
        v => (v, false),
    };
    let other = 3 - i;
    let me = format!("192.168.91.{i}");
    let peer = format!("192.168.91.{other}");
    let container = Netns::create(&unique_name("vxc"))?;
    let cip = format!("{}/24", container_ip(i));
    match vtep {
        Vtep::Kernel => {
            ns.ip(&["addr", "add", &format!("{me}/24"), "dev", "u"])?;
            ns.ip(&["link", "set", "u", "up"])?;
            let vni = VNI.to_string();
            ns.ip(&[
                "link", "add", "vx0", "type", "vxlan", "id", &vni, "local", &me, "remote", &peer,
                "dstport", "4789", "dev", "u",
            ])?;
            ns.ip(&["link", "add", "brov", "type", "bridge"])?;
            ns.ip(&["link", "set", "vx0", "master", "brov", "up"])?;
            ns.ip(&["link", "set", "brov", "up"])?;
            ns.ip(&[
                "link",
                "add",
                "cv",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                container.name(),
            ])?;
            ns.ip(&["link", "set", "cv", "master", "brov", "up"])?;
            container.ip(&["link", "set", "eth0", "mtu", "1450"])?;
            container.ip(&["addr", "add", &cip, "dev", "eth0"])?;
            container.ip(&["link", "set", "eth0", "up"])?;
            wait_passing(&ns, &["u", "cv", "brov"], Duration::from_secs(5))?;
            Ok(Host {
                daemon: None,
                ovs: None,
                container,
                ns,
                dev: "eth0",
                pass: Some("cv"),
            })
        }
        // Taken as `Ours(&[], true)` with `esp_udp` above.
        Vtep::OursEspUdp => Err("ESP in UDP is built as Ours".into()),
        Vtep::OursXdp => {
            let exe = vswitchd_exe()?;
            let dir = cfg.scratch.join(unique_name("vxd"));
            let d = DaemonProcess::start_with(&exe, &dir, Some(ns.name()), &[])?;
            let host = Host {
                daemon: None,
                ovs: None,
                container,
                ns,
                dev: "c",
                pass: None,
            };
            call(
                &d,
                "port.add",
                json!({"name": "uplink", "type": "afxdp", "ifname": "u"}),
            )?;
            call(
                &d,
                "uplink.set",
                json!({"port": "uplink", "ip": format!("{me}/24")}),
            )?;
            call(&d, "network.create", json!({"name": "ov", "vni": VNI}))?;
            call(&d, "peer.add", json!({"network": "ov", "vtep": peer}))?;
            call(
                &d,
                "port.add",
                json!({"name": "c", "type": "tap", "network": "ov", "netns": host.container.name()}),
            )?;
            host.container.ip(&["addr", "add", &cip, "dev", "c"])?;
            Ok(Host {
                daemon: Some(d),
                ..host
            })
        }
        Vtep::Ours(flags, encrypted) => {
            let exe = vswitchd_exe()?;
            let dir = cfg.scratch.join(unique_name("vxd"));
            ns.ip(&["link", "add", "br0", "type", "bridge"])?;
            ns.ip(&["link", "set", "br0", "up"])?;
            ns.ip(&["link", "set", "u", "master", "br0", "up"])?;
            let core = overlay_core(i);
            let mut all: Vec<&str> = flags.to_vec();
            if let Some(c) = core.as_deref() {
                all.extend_from_slice(&["--cores", c]);
            }
            let d = DaemonProcess::start_with(&exe, &dir, Some(ns.name()), &all)?;
            let host = Host {
                daemon: None,
                ovs: None,
                container,
                ns,
                dev: "c",
                pass: None,
            };
            call(&d, "port.add", json!({"name": "uplink", "type": "tap"}))?;
            host.ns.ip(&["link", "set", "uplink", "master", "br0"])?;
            call(
                &d,
                "uplink.set",
                json!({"port": "uplink", "ip": format!("{me}/24")}),
            )?;
            let mut net = json!({"name": "ov", "vni": VNI, "encrypted": encrypted});
            if esp_udp {
                net["esp_encap"] = "udp".into();
            }
            call(&d, "network.create", net)?;
            call(&d, "peer.add", json!({"network": "ov", "vtep": peer}))?;
            if encrypted {
                call(&d, "key.add", json!({"tag": 1, "key": KEY}))?;
                call(&d, "key.primary", json!({"tag": 1}))?;
            }
            call(
                &d,
                "port.add",
                json!({"name": "c", "type": "tap", "network": "ov", "netns": host.container.name()}),
            )?;
            host.container.ip(&["addr", "add", &cip, "dev", "c"])?;
            wait_passing(&host.ns, &["u", "uplink", "br0"], Duration::from_secs(5))?;
            Ok(Host {
                daemon: Some(d),
                ..host
            })
        }
        Vtep::Ovs(uplink, tso) => {
            let schema = Ovs::available()?;
            let core = match overlay_core(i) {
                Some(c) => c
                    .parse::<usize>()
                    .map_err(|_| format!("TESTBED_OVERLAY_CORES: {c} is not a core number"))?,
                None => net::cores().saturating_sub(1),
            };
            let extra: &[&str] = if tso {
                &["other_config:userspace-tso-enable=true"]
            } else {
                &[]
            };
            let at = OvsPlacement {
                ns: ns.name(),
                pmd_core: core,
                pin: Some(core),
                extra,
            };
            let mut ovs = Ovs::start(schema, &cfg.scratch.join(unique_name("vxovs")), &at)?;
            // The underlay: br-phy owns the veth; the VTEP's address on its internal port gives
            // OVS's router the route (it reads the namespace's routing table) and OVS learns
            // the far VTEP's MAC from the ARP answers it snoops on br-phy.
            ovs.add_bridge("br-phy")?;
            let ty = format!("type={uplink}");
            ovs.vsctl(&[
                "add-port",
                "br-phy",
                "u",
                "--",
                "set",
                "interface",
                "u",
                &ty,
            ])?;
            ns.ip(&["addr", "add", &format!("{me}/24"), "dev", "br-phy"])?;
            ns.ip(&["link", "set", "br-phy", "up"])?;
            ovs.add_bridge("br-int")?;
            let remote = format!("options:remote_ip={peer}");
            let key = format!("options:key={VNI}");
            ovs.vsctl(&[
                "add-port",
                "br-int",
                "vx0",
                "--",
                "set",
                "interface",
                "vx0",
                "type=vxlan",
                &remote,
                &key,
            ])?;
            ovs.add_tap("br-int", "c", container.name())?;
            container.ip(&["link", "set", "c", "mtu", "1450"])?;
            container.ip(&["addr", "add", &cip, "dev", "c"])?;
            container.ip(&["link", "set", "c", "up"])?;
            ovs.alive()?;
            Ok(Host {
                daemon: None,
                ovs: Some(ovs),
                container,
                ns,
                dev: "c",
                pass: None,
            })
        }
    }
}

/// The two hosts joined by one veth pair.
fn pair(cfg: &Config, a: Vtep, b: Vtep) -> Result<[Host; 2], String> {
    let h1 = Netns::create(&unique_name("vxh"))?;
    let h2 = Netns::create(&unique_name("vxh"))?;
    h1.ip(&[
        "link",
        "add",
        "u",
        "type",
        "veth",
        "peer",
        "name",
        "u",
        "netns",
        h2.name(),
    ])?;
    h1.ip(&["link", "set", "u", "up"])?;
    h2.ip(&["link", "set", "u", "up"])?;
    // Host 2 first: its end of the veth must be up for host 1's bridge port to pass.
    let h2 = host(cfg, 2, h2, b)?;
    let h1 = host(cfg, 1, h1, a)?;
    Ok([h1, h2])
}

/// Runs one overlay contender: builds the pair, waits for a ping across, measures TCP from
/// host `from`'s container (1 or 2) to the other's.
fn contender(cfg: &Config, name: &str, topology: &str, a: Vtep, b: Vtep, from: u8) -> Outcome {
    let mut out = Outcome::new(name, topology);
    out.versus = Some(KERNEL_NAME.into());
    if stopping() {
        return out.skip("stopping");
    }
    let hosts = match pair(cfg, a, b) {
        Ok(h) => h,
        Err(e) => {
            out.notes.push(format!("setup: {e}"));
            return out;
        }
    };
    let (src, dst) = if from == 1 {
        (&hosts[0], &hosts[1])
    } else {
        (&hosts[1], &hosts[0])
    };
    let dst_ip = container_ip(3 - from);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut up = false;
    while !up && Instant::now() < deadline && !stopping() {
        up = src.container.ping(dst_ip, 1).unwrap_or(false);
    }
    if !up {
        out.notes
            .push(format!("no ping across the overlay to {dst_ip}"));
        return out;
    }
    tcp_series(
        cfg,
        &mut out,
        src.container.name(),
        dst.container.name(),
        dst_ip.octets(),
    );
    if let Err(e) = overlay_pps(cfg, &mut out, src, dst, from) {
        out.notes.push(format!("pps: {e}"));
    }
    for (i, h) in hosts.iter().enumerate() {
        if let Some(d) = &h.daemon {
            let n = |k: &str| {
                call(d, "stats", json!({}))
                    .ok()
                    .and_then(|v| v.pointer(&format!("/workers/0/counters/{k}"))?.as_u64())
                    .unwrap_or(0)
            };
            out.notes.push(format!(
                "host {}: vxlan_encap_gso {}, vxlan_decap_gso {}; {}",
                i + 1,
                n("vxlan_encap_gso"),
                n("vxlan_decap_gso"),
                daemon_stats(d)
            ));
        }
    }
    for (i, h) in hosts.iter().enumerate() {
        if let Some(o) = &h.ovs {
            out.notes.push(format!("host {}: {}", i + 1, ovs_drops(o)));
        }
    }
    out
}

/// 64-byte frames from `src`'s container to `dst`'s (`from` is `src`'s number) across the
/// overlay, counted at `dst`'s container.
fn overlay_pps(
    cfg: &Config,
    out: &mut Outcome,
    src: &Host,
    dst: &Host,
    from: u8,
) -> Result<(), String> {
    let (src_ns, dst_ns) = (src.container.name(), dst.container.name());
    let dst_mac = net::mac_of(dst_ns, dst.dev)?;
    // The switches learned c2's MAC from the ping and the TCP runs; one more ping keeps it.
    let dst_ip = container_ip(3 - from);
    traffic::ping_once(&src.container, dst_ip.octets());
    let pass = match src.pass {
        Some(dev) => Some((traffic::action_program("tb_ov_pass", bpf::XDP_PASS)?, dev)),
        None => None,
    };
    let mut links = Vec::new();
    pps_series(
        cfg,
        out,
        (src_ns, src.dev),
        (dst_ns, dst.dev),
        (dst_mac, dst_ip.octets()),
        container_ip(from).octets(),
        || {
            if let Some((p, dev)) = &pass {
                links.push(XdpLink::attach(p, src.ns.name(), dev)?);
            }
            Ok(())
        },
    )
}

/// The drop counters of an OVS that are not zero, as one line.
fn ovs_drops(o: &Ovs) -> String {
    match o.appctl(&["coverage/show"]) {
        Ok(s) => {
            let drops: Vec<String> = s
                .lines()
                .filter(|l| l.contains("drop"))
                .filter_map(|l| {
                    let name = l.split_whitespace().next()?;
                    let total = l.rsplit("total:").next()?.trim();
                    (total != "0").then(|| format!("{name}={total}"))
                })
                .collect();
            if drops.is_empty() {
                "ovs drop counters: none".into()
            } else {
                format!("ovs drop counters: {}", drops.join(" "))
            }
        }
        Err(e) => format!("ovs coverage/show: {e}"),
    }
}

/// The kernel's VXLAN on both hosts (Docker's overlay).
pub fn kernel(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    contender(
        cfg,
        KERNEL_NAME,
        "container veth - bridge - kernel vxlan == veth == kernel vxlan - bridge - container veth",
        Vtep::Kernel,
        Vtep::Kernel,
        1,
    )
}

/// vswitchd on both hosts, TAP uplinks with tunnel GSO where the kernel has it.
pub fn ours(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    both_hosts(
        cfg,
        "vswitchd x2, TAP uplinks",
        "container TAP - vswitchd - TAP uplink/bridge == veth == bridge/TAP uplink - vswitchd - container TAP",
        Vtep::Ours(&[], false),
    )
}

/// The same carrier on both hosts, TCP from host 1.
fn both_hosts(cfg: &Config, name: &str, topology: &str, vtep: Vtep) -> Outcome {
    contender(cfg, name, topology, vtep, vtep, 1)
}

/// vswitchd on both hosts, tunnel GSO refused: super-frames cut before encapsulation.
pub fn ours_cut(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    const OFF: &[&str] = &["--tap-tunnel-gso", "off"];
    both_hosts(
        cfg,
        "vswitchd x2, no tnl GSO",
        "as vxtap, --tap-tunnel-gso off (cut before encapsulation)",
        Vtep::Ours(OFF, false),
    )
}

/// As `vxtap`, plain TAP reads and writes (`--tap-uring off`: a system call per frame).
pub fn ours_plain(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    const PLAIN: &[&str] = &["--tap-uring", "off"];
    both_hosts(
        cfg,
        "vswitchd x2, plain TAP I/O",
        "as vxtap, --tap-uring off (a read or write system call per frame)",
        Vtep::Ours(PLAIN, false),
    )
}

/// vswitchd on host 1 sending to the kernel's VTEP on host 2.
pub fn vtep_out(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    contender(
        cfg,
        "vswitchd -> kernel vtep",
        "vswitchd (TAP uplink) on host 1 to the kernel's vxlan on host 2",
        Vtep::Ours(&[], false),
        Vtep::Kernel,
        1,
    )
}

/// The kernel's VTEP on host 2 sending to vswitchd on host 1.
pub fn vtep_in(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    contender(
        cfg,
        "kernel vtep -> vswitchd",
        "the kernel's vxlan on host 2 to vswitchd (TAP uplink) on host 1",
        Vtep::Ours(&[], false),
        Vtep::Kernel,
        2,
    )
}

/// vswitchd on both hosts, the network encrypted.
pub fn encrypted(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    both_hosts(
        cfg,
        "vswitchd x2, encrypted",
        "as vxtap, ESP (AES-128-GCM) around every VXLAN packet",
        Vtep::Ours(&[], true),
    )
}

/// vswitchd on both hosts, the network encrypted, its ESP in UDP (UDP GSO on the TAP uplinks).
pub fn encrypted_udp(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    both_hosts(
        cfg,
        "vswitchd x2, ESP in UDP",
        "as vxesp, --esp-encap udp: ESP in UDP 4500, a burst of sealed packets per TAP write (USO)",
        Vtep::OursEspUdp,
    )
}

/// vswitchd on both hosts, the network encrypted, without software GRO into the TAPs.
pub fn encrypted_no_gro(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    const OFF: &[&str] = &["--tap-gro", "off"];
    both_hosts(
        cfg,
        "vswitchd x2, esp, no GRO",
        "as vxesp, --tap-gro off (one TAP write per opened packet)",
        Vtep::Ours(OFF, true),
    )
}

/// vswitchd on both hosts with AF_XDP uplinks on the underlay veth (super-frames cut before
/// encapsulation; the receiver's GRO merges them again for the container's TAP).
pub fn ours_xdp(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    both_hosts(
        cfg,
        "vswitchd x2, AF_XDP",
        "container TAP - vswitchd - AF_XDP on the underlay veth == veth - AF_XDP - vswitchd - container TAP",
        Vtep::OursXdp,
    )
}

/// The uplink port type OVS's userspace VXLAN uses on the underlay veth:
/// `TESTBED_OVS_UPLINK=afxdp|system` (default afxdp).
fn ovs_uplink() -> Result<&'static str, String> {
    match std::env::var("TESTBED_OVS_UPLINK").as_deref() {
        Err(_) | Ok("afxdp") => Ok("afxdp"),
        Ok("system") => Ok("system"),
        Ok(other) => Err(format!("TESTBED_OVS_UPLINK={other}: use afxdp or system")),
    }
}

/// Open vSwitch's userspace VXLAN on both hosts, where it is installed.
pub fn ovs(_tb: &super::net::Testbed, cfg: &Config) -> Outcome {
    let name = "ovs userspace vxlan x2";
    let skip = |why: String| {
        let mut o = Outcome::new(name, "-");
        o.optional = true;
        o.skip(why)
    };
    if let Err(e) = Ovs::available() {
        return skip(e);
    }
    let (uplink, version) = match (ovs_uplink(), Ovs::version()) {
        (Ok(u), Ok(v)) => (u, v),
        (Err(e), _) | (_, Err(e)) => return skip(e),
    };
    // Before 3.3, OVS drops every packet that carries offload flags at a tunnel port
    // ("Tunneling packets with HW offload flags is not supported"): with userspace TSO the
    // containers' TAPs hand it partial checksums and super-frames, and nothing crosses.
    let tso = version >= (3, 3);
    let topology = format!(
        "container TAP - ovs-vswitchd netdev br-int - vxlan - br-phy {uplink} == veth == the same on host 2"
    );
    let mut out = contender(
        cfg,
        name,
        &topology,
        Vtep::Ovs(uplink, tso),
        Vtep::Ovs(uplink, tso),
        1,
    );
    out.optional = true;
    out.notes.insert(
        0,
        format!(
            "Open vSwitch {}.{}: userspace TSO {}; br-phy's uplink type={uplink}; each ovs-vswitchd pinned to one core with its PMD",
            version.0,
            version.1,
            if tso {
                "on"
            } else {
                "off (OVS before 3.3 drops offloaded packets at tunnel ports)"
            }
        ),
    );
    out
}
