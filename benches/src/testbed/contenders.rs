//! The contenders and how each is set up on the testbed's veth pairs, measured, and taken down.
//!
//! Every contender forwards between the same two DUT-side veth ends (`dg`, `ds`) in the DUT
//! namespace, except the TAP ports of vswitchd (see [`vswitchd_tap`]). The generator always runs
//! on core 0; the contender on core 1 (the daemon's worker, OVS's PMD thread, testpmd's
//! forwarding lcore, and, with threaded NAPI, the kernel's receive work on the DUT's ingress
//! veth, which for the kernel bridge is the bridge itself).

use super::net::{self, run, set_tx_checksum, stopping, Testbed, Veth};
use super::traffic::{self, measure_pps, measure_tcp, udp_frame, Counter, PpsPath, XdpLink};
use dataplane::sys::bpf;
use serde_json::json;
use std::any::Any;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vswitch::testbed::DaemonProcess;

/// The harness's knobs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Runs per metric.
    pub runs: usize,
    /// Seconds counted per small-packet run.
    pub seconds: f64,
    /// Seconds before counting starts.
    pub warmup: f64,
    /// Seconds per TCP transfer.
    pub tcp_seconds: f64,
    /// Put the DUT's ingress veth receive work in a NAPI thread pinned to the DUT's core.
    pub threaded_napi: bool,
    /// Put the sink's receive work (its XDP drop program) in a NAPI thread pinned to this core
    /// rather than on whichever core transmitted into the sink.
    pub sink_napi_core: Option<usize>,
    /// Core of the device under test.
    pub dut_core: usize,
    /// Where scratch files (daemon sockets, OVS databases, logs) go.
    pub scratch: PathBuf,
}

/// What one contender measured, or why it was skipped.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Short name for the table.
    pub name: String,
    /// How it is wired.
    pub topology: String,
    /// Packets per second at the sink, one per run.
    pub pps: Vec<f64>,
    /// Packets per second the generator offered, one per run.
    pub offered: Vec<f64>,
    /// TCP throughput in Gbit/s, one per run.
    pub gbps: Vec<f64>,
    /// Connections per second (the published-port pair), one per run.
    pub cps: Vec<f64>,
    /// Why it was not measured at all.
    pub skipped: Option<String>,
    /// What went wrong or is worth knowing, one line each.
    pub notes: Vec<String>,
    /// A peer that may be missing or broken without failing the run (OVS, testpmd).
    pub optional: bool,
    /// The contender its ratios are taken against (default: the Linux bridge).
    pub versus: Option<String>,
}

impl Outcome {
    pub(super) fn new(name: &str, topology: &str) -> Outcome {
        Outcome {
            name: name.into(),
            topology: topology.into(),
            ..Outcome::default()
        }
    }

    pub(super) fn skip(mut self, why: impl Into<String>) -> Outcome {
        self.skipped = Some(why.into());
        self
    }

    /// The JSON form, raw numbers included.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "topology": self.topology,
            "pps": self.pps,
            "offered_pps": self.offered,
            "tcp_gbps": self.gbps,
            "connections_per_sec": self.cps,
            "skipped": self.skipped,
            "notes": self.notes,
            "optional": self.optional,
            "versus": self.versus,
        })
    }
}

/// Keeps whatever a contender set up alive until dropped.
pub(super) type Guard = Vec<Box<dyn Any>>;

/// Turns tx checksum offload back on when dropped.
struct CsumGuard(Vec<(String, String)>);

impl Drop for CsumGuard {
    fn drop(&mut self) {
        for (ns, dev) in &self.0 {
            let _ = set_tx_checksum(ns, dev, true);
        }
    }
}

/// Turns tx checksum offload off on the namespaces' ends of `links` until the guard drops.
/// OVS and testpmd forward frames as they are, and a veth hands over TCP with a partial
/// checksum that nobody in their path completes, so the far end drops it. vswitchd completes
/// such checksums on veth, but gets the same setting: every contender runs under the same
/// conditions.
fn csum_off(links: &[&Veth]) -> Result<CsumGuard, String> {
    let mut g = CsumGuard(Vec::new());
    for v in links {
        set_tx_checksum(&v.outer.0, &v.outer.1, false)?;
        g.0.push(v.outer.clone());
    }
    Ok(g)
}

/// A child process (started through `ip netns exec`, which execs it) killed on drop.
pub struct Reaped {
    child: Child,
    what: String,
}

impl Reaped {
    pub(super) fn spawn(what: &str, cmd: &mut Command) -> Result<Reaped, String> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Reaped {
            child,
            what: what.into(),
        })
    }

    pub(super) fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!("{} exited ({st})", self.what)),
            Err(e) => Err(format!("{}: {e}", self.what)),
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, not yet reaped, so the pid is still its.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Measures `runs` small-packet runs from `gen` to `sink`; `prepare` runs once the sink's drop
/// program is attached (the contender's XDP programs exist by then, so NAPI threads can move).
pub(super) fn pps_series(
    cfg: &Config,
    out: &mut Outcome,
    gen: (&str, &str),
    sink: (&str, &str),
    dst: ([u8; 6], [u8; 4]),
    src_ip: [u8; 4],
    prepare: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    pps_runs(
        cfg,
        out,
        gen,
        sink,
        dst,
        src_ip,
        0..cfg.runs,
        false,
        prepare,
    )
}

/// [`pps_series`] for the runs numbered `runs` only (the sink's drop program attached for
/// them and detached after), with the generator rewriting its frame each time if `rewrite`
/// (see [`PpsPath::rewrite`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn pps_runs(
    cfg: &Config,
    out: &mut Outcome,
    gen: (&str, &str),
    sink: (&str, &str),
    dst: ([u8; 6], [u8; 4]),
    src_ip: [u8; 4],
    runs: std::ops::Range<usize>,
    rewrite: bool,
    prepare: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let src_mac = net::mac_of(gen.0, gen.1)?;
    let frame = udp_frame(src_mac, dst.0, src_ip, dst.1);
    // A TAP does not count what XDP dropped: count in a map there.
    let tap = net::is_tap(sink.0, sink.1);
    let map = if tap {
        Some(bpf::create_counter_map("tb_sink_cnt").map_err(|e| e.to_string())?)
    } else {
        None
    };
    let drop = match &map {
        Some(m) => bpf::load_xdp_program("tb_sink_cnt", &bpf::counting_drop_program(m))
            .map_err(|e| format!("load counting drop program: {e}"))?,
        None => traffic::action_program("tb_sink_drop", bpf::XDP_DROP)?,
    };
    let _sink = XdpLink::attach(&drop, sink.0, sink.1)?;
    // A TAP sink's XDP runs in the writer's context (no NAPI to move).
    if let Some(core) = cfg.sink_napi_core.filter(|_| !tap) {
        let pid = net::threaded_napi(sink.0, sink.1, core)?;
        if !net::realtime(pid, 50) {
            return Err(format!(
                "cannot make the sink's NAPI thread {pid} SCHED_FIFO"
            ));
        }
        let note = format!(
            "sink receive work ({}) in NAPI thread {pid}, SCHED_FIFO on core {core}",
            sink.1
        );
        if !out.notes.contains(&note) {
            out.notes.push(note);
        }
    }
    prepare()?;
    let path = PpsPath {
        gen,
        sink: match &map {
            Some(m) => Counter::Map(m),
            None => Counter::Iface(sink.0, sink.1),
        },
        frame: &frame,
        rewrite,
    };
    for i in runs {
        if stopping() {
            return Err("stopped".into());
        }
        match measure_pps(&path, secs(cfg.warmup), secs(cfg.seconds)) {
            Ok(r) => {
                println!(
                    "    pps run {}: {:.3} Mpps at the sink ({:.3} Mpps offered)",
                    i + 1,
                    r.sink_pps / 1e6,
                    r.offered_pps / 1e6
                );
                out.pps.push(r.sink_pps);
                out.offered.push(r.offered_pps);
            }
            Err(e) => out.notes.push(format!("pps run {}: {e}", i + 1)),
        }
    }
    Ok(())
}

/// One iperf3 run (one stream, `seconds` long) from `gen_ns` to a one-off server in `sink_ns`,
/// both pinned to core 0 (the generator's); returns what the server received, in Gbit/s.
fn measure_iperf3(
    gen_ns: &str,
    sink_ns: &str,
    sink_ip: [u8; 4],
    seconds: f64,
    run_no: usize,
) -> Result<f64, String> {
    let ip = std::net::Ipv4Addr::from(sink_ip).to_string();
    // A port of its own per run: the last run's one-off server may still be going away.
    let port = (20000 + (std::process::id() as usize % 1000) * 40 + run_no % 40).to_string();
    let mut server = Reaped::spawn(
        "iperf3 server",
        Command::new("ip")
            .args(["netns", "exec", sink_ns, "iperf3", "-s", "-1", "-A", "0"])
            .args(["-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let secs = format!("{}", seconds.ceil().max(1.0));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let out = Command::new("ip")
            .args([
                "netns", "exec", gen_ns, "iperf3", "-c", &ip, "-J", "-A", "0",
            ])
            .args(["-p", &port, "-t", &secs, "--connect-timeout", "1000"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run iperf3: {e}"))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("iperf3 printed no report ({e})"))?;
        if let Some(b) = v
            .pointer("/end/sum_received/bits_per_second")
            .and_then(serde_json::Value::as_f64)
            .filter(|b| *b > 0.0)
        {
            return Ok(b / 1e9);
        }
        let why = v
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no received throughput in its report")
            .to_string();
        // The server may not listen yet: a refused connection is retried for a moment.
        if !why.contains("unable to connect") || std::time::Instant::now() > deadline {
            return Err(format!("iperf3: {why}"));
        }
        server.alive()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Measures `runs` TCP runs from `gen_ns` to `sink_ip` in `sink_ns`: a checked transfer first
/// (every byte compared, so a switch that corrupts data fails here), then iperf3 where it is
/// installed, else checked transfers sized by that first one to last about `tcp_seconds`.
pub(super) fn tcp_series(
    cfg: &Config,
    out: &mut Outcome,
    gen_ns: &str,
    sink_ns: &str,
    sink_ip: [u8; 4],
) {
    let probe_bytes = 32 << 20;
    let timeout = Duration::from_secs_f64(30.0 + cfg.tcp_seconds * 4.0);
    let probe = match measure_tcp(gen_ns, sink_ns, sink_ip, probe_bytes, timeout) {
        Ok(g) => g,
        Err(e) => {
            out.notes.push(format!("tcp: {e}"));
            return;
        }
    };
    if net::have("iperf3") {
        let note = format!("tcp: 32 MiB checked ({probe:.2} Gbit/s); figures from iperf3, one stream, both ends on core 0");
        out.notes.push(note);
        for i in 0..cfg.runs {
            if stopping() {
                return;
            }
            match measure_iperf3(gen_ns, sink_ns, sink_ip, cfg.tcp_seconds, i) {
                Ok(g) => {
                    println!("    tcp run {}: {g:.2} Gbit/s (iperf3)", i + 1);
                    out.gbps.push(g);
                }
                Err(e) => out.notes.push(format!("tcp run {}: {e}", i + 1)),
            }
        }
        return;
    }
    out.notes
        .push("tcp: iperf3 not installed (apt install iperf3); checked transfers instead".into());
    let bytes = traffic::bytes_for(probe, cfg.tcp_seconds);
    for i in 0..cfg.runs {
        if stopping() {
            return;
        }
        match measure_tcp(gen_ns, sink_ns, sink_ip, bytes, timeout) {
            Ok(g) => {
                println!(
                    "    tcp run {}: {g:.2} Gbit/s ({} MiB checked)",
                    i + 1,
                    bytes >> 20
                );
                out.gbps.push(g);
            }
            Err(e) => out.notes.push(format!("tcp run {}: {e}", i + 1)),
        }
    }
}

/// The generator straight into the sink over one veth pair: the most any contender can reach.
pub fn ceiling(tb: &Testbed, cfg: &Config) -> Outcome {
    let mut out = Outcome::new(
        "ceiling (no DUT)",
        "gen gc0 ==veth== sc0 sink: generator straight into the sink's XDP drop",
    );
    let d = &tb.direct;
    let r = (|| {
        let dst = (net::mac_of(&d.inner.0, &d.inner.1)?, net::DIRECT_IPS[1]);
        let (g, s) = (
            (d.outer.0.as_str(), d.outer.1.as_str()),
            (d.inner.0.as_str(), d.inner.1.as_str()),
        );
        pps_series(cfg, &mut out, g, s, dst, net::DIRECT_IPS[0], || Ok(()))?;
        tcp_series(cfg, &mut out, &d.outer.0, &d.inner.0, net::DIRECT_IPS[1]);
        Ok::<(), String>(())
    })();
    if let Err(e) = r {
        out.notes.push(e);
    }
    out
}

/// Measures a contender that forwards between `dg` and `ds`: `start` sets it up and returns
/// what keeps it alive; `dg_needs_xdp` attaches an `XDP_PASS` program to `dg` during the
/// small-packet runs (a veth accepts `ndo_xdp_xmit` from the generator only while it has NAPI).
fn veth_contender(
    tb: &Testbed,
    cfg: &Config,
    mut out: Outcome,
    userspace: bool,
    start: impl FnOnce(&Testbed) -> Result<Guard, String>,
) -> Outcome {
    let (g, s) = (&tb.gen_link, &tb.sink_link);
    let r = (|| {
        let _csum = if userspace {
            out.notes
                .push("tx checksum offload (and so TSO) off on gen0 and sink0".into());
            Some(csum_off(&[g, s])?)
        } else {
            None
        };
        let mut guard = start(tb)?;
        let dst = (net::mac_of(&s.outer.0, &s.outer.1)?, net::SINK_IP);
        // Let learning switches learn the sink's MAC (and check the path works at all).
        if !tb.sink.ping(std::net::Ipv4Addr::from(net::GEN_IP), 2)? {
            out.notes
                .push("ping sink -> gen failed before the runs".into());
        }
        let pass = if userspace {
            None
        } else {
            Some(traffic::action_program("tb_dut_pass", bpf::XDP_PASS)?)
        };
        let mut napi_note = None;
        pps_series(
            cfg,
            &mut out,
            (&g.outer.0, &g.outer.1),
            (&s.outer.0, &s.outer.1),
            dst,
            net::GEN_IP,
            || {
                if let Some(p) = &pass {
                    guard.push(Box::new(XdpLink::attach(p, &g.inner.0, &g.inner.1)?));
                }
                if cfg.threaded_napi {
                    let pid = net::threaded_napi(&g.inner.0, &g.inner.1, cfg.dut_core)?;
                    napi_note = Some(format!(
                        "receive work of {} in NAPI thread {pid} on core {}",
                        g.inner.1, cfg.dut_core
                    ));
                }
                Ok(())
            },
        )?;
        out.notes.extend(napi_note);
        // The XDP_PASS program goes with the sink's drop program; TCP runs without either.
        guard.retain(|b| !b.is::<XdpLink>());
        tcp_series(cfg, &mut out, &g.outer.0, &s.outer.0, net::SINK_IP);
        for d in guard
            .iter()
            .filter_map(|b| b.downcast_ref::<DaemonProcess>())
        {
            out.notes.push(daemon_stats(d));
        }
        drop(guard);
        Ok::<(), String>(())
    })();
    if let Err(e) = r {
        out.notes.push(e);
    }
    out
}

/// The Linux bridge (what Docker's default network uses) in the DUT namespace.
pub fn kernel_bridge(tb: &Testbed, cfg: &Config) -> Outcome {
    let out = Outcome::new(
        "linux bridge",
        "gen0 ==veth== dg [bridge br0] ds ==veth== sink0; default offloads",
    );
    veth_contender(tb, cfg, out, false, |tb| {
        let dut = &tb.dut;
        dut.ip(&["link", "add", "br0", "type", "bridge"])?;
        // Deleted with the namespace, or here when the guard drops.
        struct Bridge(String);
        impl Drop for Bridge {
            fn drop(&mut self) {
                let _ = run(Command::new("ip").args(["-n", &self.0, "link", "del", "br0"]));
            }
        }
        let g: Guard = vec![Box::new(Bridge(dut.name().into()))];
        for dev in [&tb.gen_link.inner.1, &tb.sink_link.inner.1] {
            dut.ip(&["link", "set", dev, "master", "br0"])?;
        }
        dut.ip(&["link", "set", "br0", "up"])?;
        // Forwarding starts once the ports leave the learning states (no STP: at once).
        net::sleep(Duration::from_millis(200));
        Ok(g)
    })
}

/// Finds (and, under `cargo run`, builds) the `vswitchd` binary next to this one.
pub fn vswitchd_exe() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let dir = me.parent().ok_or("no directory for my binary")?;
    let exe = dir.join("vswitchd");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "vswitch", "--bin", "vswitchd"]);
        if release {
            cmd.arg("--release");
        }
        run(&mut cmd).map_err(|e| format!("building vswitchd: {e}"))?;
    }
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(format!(
            "no vswitchd at {}: build it (cargo build --release -p vswitch --bin vswitchd)",
            exe.display()
        ))
    }
}

pub(super) fn call(
    d: &DaemonProcess,
    cmd: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, String> {
    d.client()?
        .call(cmd, args)
        .map_err(|e| format!("{cmd}: {}", e.message))
}

/// The daemon's port counters and drop reasons, as one line.
pub(super) fn daemon_stats(d: &DaemonProcess) -> String {
    let v = match call(d, "stats", json!({})) {
        Ok(v) => v,
        Err(e) => return format!("daemon stats: {e}"),
    };
    let mut line = String::from("daemon counters:");
    for p in v
        .get("ports")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let name = p.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        line.push_str(&format!(" {name}["));
        if let Some(c) = p.as_object() {
            let kv: Vec<String> = c
                .iter()
                .filter(|(k, v)| *k != "name" && v.as_u64().is_some_and(|n| n > 0))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line.push_str(&kv.join(" "));
        }
        line.push(']');
    }
    if let Some(d) = v.get("drops") {
        line.push_str(&format!(" drops={d}"));
    }
    line
}

/// CPU time the daemon's worker threads have had so far, in ns (`/proc/PID/task/*/schedstat`):
/// what a worker costs per frame, whatever else shares its core.
pub(super) fn worker_cpu_ns(d: &DaemonProcess) -> Option<u64> {
    let pid = d.pid()?;
    let mut sum = None;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("worker-") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
        sum = Some(sum.unwrap_or(0) + ns);
    }
    sum
}

/// Frames the daemon has sent out of its port `name`.
pub(super) fn port_tx_packets(d: &DaemonProcess, name: &str) -> Option<u64> {
    let v = call(d, "stats", json!({})).ok()?;
    v.get("ports")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(name))?
        .get("tx_packets")?
        .as_u64()
}

/// Whether the daemon knows AF_XDP ports (it refuses an unknown `type`).
fn daemon_has_afxdp(d: &DaemonProcess) -> bool {
    match call(d, "port.add", json!({"name": "probe", "type": "afxdp"})) {
        Ok(_) => {
            let _ = call(d, "port.rm", json!({"name": "probe"}));
            true
        }
        Err(e) => e.contains("--ifname") || e.contains("ifname"),
    }
}

/// vswitchd with AF_XDP ports on `dg` and `ds`, its one worker on the last core.
pub fn vswitchd_afxdp(tb: &Testbed, cfg: &Config) -> Outcome {
    let out = Outcome::new(
        "vswitchd afxdp",
        "gen0 ==veth== dg [vswitchd: AF_XDP dg, ds] ds ==veth== sink0; gen0/sink0 tx csum off",
    );
    let exe = match vswitchd_exe() {
        Ok(e) => e,
        Err(e) => return out.skip(e),
    };
    let dir = cfg.scratch.join("vswitchd-afxdp");
    let probe = DaemonProcess::start_in(&exe, &dir.join("probe"), Some(tb.dut.name()));
    match probe {
        Ok(d) if daemon_has_afxdp(&d) => {}
        Ok(_) => {
            return out.skip("this vswitchd has no `--type afxdp` ports yet");
        }
        Err(e) => return out.skip(format!("vswitchd does not start: {e}")),
    }
    veth_contender(tb, cfg, out, true, |tb| {
        let d = DaemonProcess::start_in(&exe, &dir, Some(tb.dut.name()))?;
        call(&d, "network.create", json!({"name": "tb"}))?;
        for (name, v) in [("g", &tb.gen_link), ("s", &tb.sink_link)] {
            call(
                &d,
                "port.add",
                json!({"name": name, "type": "afxdp", "ifname": v.inner.1, "network": "tb"}),
            )?;
        }
        Ok(vec![Box::new(d) as Box<dyn Any>])
    })
}

/// vswitchd with TAP ports whose kernel ends live in the generator's and the sink's
/// namespaces, as a VM's or container's TAP would: the generator runs live-frames `XDP_TX` on
/// its TAP, which queues the frames straight to the daemon's reader (`tun_xdp_xmit`), so no
/// kernel hop sits between generator and switch; the sink drops with XDP on the far TAP.
pub fn vswitchd_tap(tb: &Testbed, cfg: &Config) -> Outcome {
    tap_with(
        tb,
        cfg,
        "vswitchd tap",
        "gen tg ==TAP== [vswitchd] ==TAP== ts sink (10.79.0.0/24); default offloads and io_uring",
        &[],
    )
}

/// As [`vswitchd_tap`], plain reads and writes (`--tap-uring off`).
pub fn vswitchd_tap_plain(tb: &Testbed, cfg: &Config) -> Outcome {
    tap_with(
        tb,
        cfg,
        "vswitchd tap, plain I/O",
        "as tap, --tap-uring off (a read or write system call per frame)",
        &["--tap-uring", "off"],
    )
}

fn tap_with(tb: &Testbed, cfg: &Config, name: &str, topology: &str, flags: &[&str]) -> Outcome {
    let id = std::process::id() % 100_000;
    let (tg, ts) = (format!("tg{id}"), format!("ts{id}"));
    let mut out = Outcome::new(name, topology);
    let exe = match vswitchd_exe() {
        Ok(e) => e,
        Err(e) => return out.skip(e),
    };
    let dir = cfg.scratch.join(format!("vswitchd-tap{}", flags.len()));
    let ips = [[10, 79, 0, 1], [10, 79, 0, 2]];
    let r = (|| {
        let d = DaemonProcess::start_with(&exe, &dir, Some(tb.dut.name()), flags)?;
        call(&d, "network.create", json!({"name": "tb"}))?;
        for (name, dev, ns, ip) in [("g", &tg, &tb.gen, ips[0]), ("s", &ts, &tb.sink, ips[1])] {
            call(
                &d,
                "port.add",
                json!({"name": name, "type": "tap", "ifname": dev, "netns": ns.name(), "network": "tb"}),
            )?;
            let cidr = format!("{}.{}.{}.{}/24", ip[0], ip[1], ip[2], ip[3]);
            ns.ip(&["addr", "add", &cidr, "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        if !tb.sink.ping(std::net::Ipv4Addr::from(ips[0]), 2)? {
            out.notes.push("ping sink -> gen over TAP failed".into());
        }
        let dst = (net::mac_of(tb.sink.name(), &ts)?, ips[1]);
        let before = (worker_cpu_ns(&d), port_tx_packets(&d, "s"));
        pps_series(
            cfg,
            &mut out,
            (tb.gen.name(), &tg),
            (tb.sink.name(), &ts),
            dst,
            ips[0],
            || Ok(()),
        )?;
        if let ((Some(c0), Some(f0)), Some(c1), Some(f1)) =
            (before, worker_cpu_ns(&d), port_tx_packets(&d, "s"))
        {
            let frames = f1.saturating_sub(f0).max(1);
            let ns = c1.saturating_sub(c0) as f64 / frames as f64;
            out.notes.push(format!(
                "worker CPU time per 64-byte frame forwarded: {ns:.0} ns ({:.2} Mpps per core of \
                 worker time), over every pps run",
                1e3 / ns.max(1.0)
            ));
        }
        tcp_series(cfg, &mut out, tb.gen.name(), tb.sink.name(), ips[1]);
        out.notes.push(daemon_stats(&d));
        drop(d);
        Ok::<(), String>(())
    })();
    if let Err(e) = r {
        out.notes.push(e);
    }
    out
}

/// How to get the optional peers.
pub const INSTALL_HINT: &str =
    "apt install openvswitch-switch dpdk-dev (dpdk-testpmd is in dpdk-dev)";

/// A private Open vSwitch: ovsdb-server and ovs-vswitchd started by hand in a scratch directory
/// of its own (database, sockets, pid and log files), inside one namespace; its bridges are
/// userspace (`datapath_type=netdev`) ones.
pub(super) struct Ovs {
    vsd: Reaped,
    _server: Reaped,
    dir: String,
    ns: String,
}

/// Where and how an [`Ovs`] runs.
pub(super) struct OvsPlacement<'a> {
    /// The namespace both daemons run in.
    pub ns: &'a str,
    /// The core of the PMD threads (`pmd-cpu-mask`).
    pub pmd_core: usize,
    /// Pin every thread of ovs-vswitchd (the main thread polls its TAP and system ports) to
    /// this core; `None`: wherever the scheduler puts them.
    pub pin: Option<usize>,
    /// `other_config` settings, `key=value` each.
    pub extra: &'a [&'a str],
}

impl Ovs {
    /// Finds the tools and the schema, or says why OVS is skipped.
    pub(super) fn available() -> Result<&'static str, String> {
        let tools = [
            "ovsdb-tool",
            "ovsdb-server",
            "ovs-vswitchd",
            "ovs-vsctl",
            "ovs-appctl",
        ];
        if let Some(t) = tools.iter().find(|t| !net::have(t)) {
            return Err(format!("`{t}` not installed ({INSTALL_HINT})"));
        }
        ["/usr/share/openvswitch/vswitch.ovsschema"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .ok_or_else(|| "no vswitch.ovsschema under /usr/share/openvswitch".to_string())
    }

    /// The installed ovs-vswitchd's version, `(major, minor)`.
    pub(super) fn version() -> Result<(u32, u32), String> {
        let out = run(Command::new("ovs-vswitchd").arg("--version"))?;
        // "ovs-vswitchd (Open vSwitch) 3.1.0"
        let v = out
            .lines()
            .next()
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_default();
        let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(format!("cannot read a version in {:?}", out.trim())),
        }
    }

    pub(super) fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        ovs_vsctl(&self.dir, args)
    }

    /// `ovs-appctl` against this ovs-vswitchd.
    pub(super) fn appctl(&self, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new("ovs-appctl");
        c.arg(format!("--target={}/ovs-vswitchd.ctl", self.dir))
            .arg("--timeout=10")
            .args(args);
        ovs_env(&mut c, &self.dir);
        run(&mut c)
    }

    /// Whether ovs-vswitchd still runs.
    pub(super) fn alive(&mut self) -> Result<(), String> {
        self.vsd.alive()
    }

    /// Starts both daemons as `at` says, with `dir` for their files.
    pub(super) fn start(schema: &str, dir: &Path, at: &OvsPlacement) -> Result<Ovs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let d = dir.to_string_lossy().to_string();
        let db = format!("{d}/conf.db");
        run(Command::new("ovsdb-tool").args(["create", &db, schema]))?;
        let spawn = |what: &str, args: &[String], pin: Option<usize>| -> Result<Reaped, String> {
            let logf = std::fs::File::create(dir.join(format!("{what}.out")))
                .map_err(|e| e.to_string())?;
            let mut c = Command::new("ip");
            c.args(["netns", "exec", at.ns, what])
                .args(args)
                .arg(format!("--unixctl={d}/{what}.ctl"))
                .arg(format!("--log-file={d}/{what}.log"))
                .arg(format!("--pidfile={d}/{what}.pid"))
                .stdout(logf.try_clone().map_err(|e| e.to_string())?)
                .stderr(logf);
            ovs_env(&mut c, &d);
            if let Some(core) = pin.filter(|&c| c < 1024) {
                // SAFETY: between fork and exec the closure only makes one system call
                // (sched_setaffinity, async-signal-safe) on a set built on its own stack; the
                // mask is inherited through `ip netns exec`'s exec and by every thread the
                // daemon makes.
                unsafe {
                    c.pre_exec(move || {
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_SET(core, &mut set);
                        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                        Ok(())
                    });
                }
            }
            Reaped::spawn(what, &mut c)
        };
        let server = spawn(
            "ovsdb-server",
            &[db, format!("--remote=punix:{d}/db.sock")],
            None,
        )?;
        let mut ok = false;
        for _ in 0..100 {
            if ovs_vsctl(&d, &["--no-wait", "init"]).is_ok() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !ok {
            return Err("ovsdb-server did not answer".into());
        }
        let mask = format!("other_config:pmd-cpu-mask=0x{:x}", 1u64 << at.pmd_core);
        let mut set = vec!["--no-wait", "set", "Open_vSwitch", ".", mask.as_str()];
        set.extend_from_slice(at.extra);
        ovs_vsctl(&d, &set)?;
        let vsd = spawn("ovs-vswitchd", &[format!("unix:{d}/db.sock")], at.pin)?;
        Ok(Ovs {
            vsd,
            _server: server,
            dir: d,
            ns: at.ns.to_string(),
        })
    }

    /// Adds a userspace bridge.
    pub(super) fn add_bridge(&self, br: &str) -> Result<(), String> {
        let set = ["set", "bridge", br, "datapath_type=netdev"];
        self.vsctl(&[&["add-br", br, "--"][..], &set].concat())
            .map(drop)
    }

    /// Adds a `type=tap` port `dev` to `br`, waits for OVS to make the TAP in its namespace,
    /// and moves the TAP's kernel end into `to`.
    pub(super) fn add_tap(&self, br: &str, dev: &str, to: &str) -> Result<(), String> {
        self.vsctl(&[
            "add-port",
            br,
            dev,
            "--",
            "set",
            "interface",
            dev,
            "type=tap",
        ])?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let here = || run(Command::new("ip").args(["-n", &self.ns, "link", "show", "dev", dev]));
        while here().is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!("OVS did not create TAP {dev}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        run(Command::new("ip").args(["-n", &self.ns, "link", "set", dev, "netns", to])).map(drop)
    }
}

/// Points OVS's tools at the scratch directory `dir`.
fn ovs_env(c: &mut Command, dir: &str) {
    c.env("OVS_RUNDIR", dir)
        .env("OVS_LOGDIR", dir)
        .env("OVS_DBDIR", dir)
        .env("OVS_SYSCONFDIR", dir);
}

/// `ovs-vsctl` against the database of the OVS in `dir`.
fn ovs_vsctl(dir: &str, args: &[&str]) -> Result<String, String> {
    let mut c = Command::new("ovs-vsctl");
    c.arg(format!("--db=unix:{dir}/db.sock"))
        .arg("--timeout=10")
        .args(args);
    ovs_env(&mut c, dir);
    run(&mut c)
}

/// Open vSwitch's userspace datapath (`datapath_type=netdev`) with `type=afxdp` ports, its own
/// ovsdb-server and ovs-vswitchd started by hand in a scratch directory, PMD on the DUT core.
pub fn ovs(tb: &Testbed, cfg: &Config) -> Outcome {
    let mut out = Outcome::new(
        "ovs netdev afxdp",
        "gen0 ==veth== dg [ovs-vswitchd netdev: afxdp dg, ds] ds ==veth== sink0; gen0/sink0 tx csum off",
    );
    out.optional = true;
    let schema = match Ovs::available() {
        Ok(s) => s,
        Err(e) => return out.skip(e),
    };
    let dir = cfg.scratch.join("ovs");
    let core = cfg.dut_core;
    let start = move |tb: &Testbed| -> Result<Guard, String> {
        let at = OvsPlacement {
            ns: tb.dut.name(),
            pmd_core: core,
            pin: None,
            extra: &[],
        };
        let mut ovs = Ovs::start(schema, &dir, &at)?;
        ovs.add_bridge("br0")?;
        for v in [&tb.gen_link, &tb.sink_link] {
            ovs.vsctl(&[
                "add-port",
                "br0",
                &v.inner.1,
                "--",
                "set",
                "interface",
                &v.inner.1,
                "type=afxdp",
            ])?;
        }
        ovs.alive()?;
        // Give the PMD thread a moment to poll its new rx queues.
        net::sleep(Duration::from_millis(500));
        Ok(vec![Box::new(ovs) as Box<dyn Any>])
    };
    veth_contender(tb, cfg, out, true, start)
}

/// Open vSwitch's userspace datapath with `type=tap` ports and userspace TSO
/// (`userspace-tso-enable=true`): the peer to compare vswitchd's TAP ports with offloads
/// against. OVS makes the TAPs in the DUT namespace; their kernel ends are then moved into the
/// generator's and the sink's namespaces, as the vswitchd TAP contender has them.
pub fn ovs_tap(tb: &Testbed, cfg: &Config) -> Outcome {
    let id = std::process::id() % 100_000;
    let (og, os) = (format!("og{id}"), format!("os{id}"));
    let mut out = Outcome::new(
        "ovs netdev tap tso",
        "gen og ==TAP== [ovs-vswitchd netdev, userspace TSO] ==TAP== os sink (10.78.0.0/24)",
    );
    out.optional = true;
    let schema = match Ovs::available() {
        Ok(s) => s,
        Err(e) => return out.skip(e),
    };
    let dir = cfg.scratch.join("ovs-tap");
    let ips = [[10, 78, 0, 1], [10, 78, 0, 2]];
    let r = (|| {
        let at = OvsPlacement {
            ns: tb.dut.name(),
            pmd_core: cfg.dut_core,
            pin: None,
            extra: &["other_config:userspace-tso-enable=true"],
        };
        let mut ovs = Ovs::start(schema, &dir, &at)?;
        ovs.add_bridge("br0")?;
        for (dev, ns, ip) in [(&og, &tb.gen, ips[0]), (&os, &tb.sink, ips[1])] {
            ovs.add_tap("br0", dev, ns.name())?;
            let cidr = format!("{}.{}.{}.{}/24", ip[0], ip[1], ip[2], ip[3]);
            ns.ip(&["addr", "add", &cidr, "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        ovs.alive()?;
        net::sleep(Duration::from_millis(500));
        if !tb.sink.ping(std::net::Ipv4Addr::from(ips[0]), 2)? {
            out.notes
                .push("ping sink -> gen over OVS TAPs failed".into());
        }
        let dst = (net::mac_of(tb.sink.name(), &os)?, ips[1]);
        pps_series(
            cfg,
            &mut out,
            (tb.gen.name(), &og),
            (tb.sink.name(), &os),
            dst,
            ips[0],
            || Ok(()),
        )?;
        tcp_series(cfg, &mut out, tb.gen.name(), tb.sink.name(), ips[1]);
        ovs.alive()?;
        drop(ovs);
        Ok::<(), String>(())
    })();
    if let Err(e) = r {
        out.notes.push(e);
    }
    out
}

/// `dpdk-testpmd` in io-forward mode between two `net_af_xdp` ports on `dg` and `ds`, without
/// huge pages or PCI devices, its forwarding lcore on the DUT core.
pub fn testpmd(tb: &Testbed, cfg: &Config) -> Outcome {
    let mut out = Outcome::new(
        "dpdk-testpmd af_xdp",
        "gen0 ==veth== dg [testpmd io-fwd: net_af_xdp dg, ds] ds ==veth== sink0; gen0/sink0 tx csum off",
    );
    out.optional = true;
    if !net::have("dpdk-testpmd") {
        return out.skip(format!("`dpdk-testpmd` not installed ({INSTALL_HINT})"));
    }
    if cfg.dut_core == 0 {
        return out.skip("testpmd needs two cores (main lcore 0, forwarding lcore 1)");
    }
    let dir = cfg.scratch.join("testpmd");
    let core = cfg.dut_core;
    let start = move |tb: &Testbed| -> Result<Guard, String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let lcores = format!("0,{core}");
        let v0 = format!(
            "--vdev=net_af_xdp0,iface={},start_queue=0,queue_count=1",
            tb.gen_link.inner.1
        );
        let v1 = format!(
            "--vdev=net_af_xdp1,iface={},start_queue=0,queue_count=1",
            tb.sink_link.inner.1
        );
        let file_prefix = format!("--file-prefix=tb{}", std::process::id());
        let mut p = {
            let log = dir.join("testpmd.out");
            let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
            let mut c = Command::new("ip");
            c.args([
                "netns",
                "exec",
                tb.dut.name(),
                "dpdk-testpmd",
                "-l",
                &lcores,
            ])
            .args([
                "--no-huge",
                "--no-pci",
                "-m",
                "1024",
                &file_prefix,
                &v0,
                &v1,
                "--",
            ])
            .args([
                "--forward-mode=io",
                "--auto-start",
                "--nb-cores=1",
                "--stats-period=0",
            ])
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf);
            // testpmd waits on stdin in non-interactive mode: keep a pipe open.
            c.stdin(Stdio::piped());
            let child = c
                .spawn()
                .map_err(|e| format!("cannot start dpdk-testpmd: {e}"))?;
            Reaped {
                child,
                what: "dpdk-testpmd".into(),
            }
        };
        // Up to 15 s for the ports to come up (testpmd prints "Press enter to exit").
        for _ in 0..150 {
            p.alive().map_err(|e| {
                let log = std::fs::read_to_string(dir.join("testpmd.out")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                format!(
                    "{e}: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )
            })?;
            let log = std::fs::read_to_string(dir.join("testpmd.out")).unwrap_or_default();
            if log.contains("Press enter to exit") || log.contains("io packet forwarding") {
                return Ok(vec![Box::new(p) as Box<dyn Any>]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("dpdk-testpmd did not start forwarding within 15 s".into())
    };
    veth_contender(tb, cfg, out, true, start)
}
