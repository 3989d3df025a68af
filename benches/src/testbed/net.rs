//! The testbed's plumbing: namespaces and veth pairs made for one run, interface counters, CPU
//! pinning, offload switches and threaded NAPI. Everything made here lives in namespaces this
//! process created; deleting a namespace deletes its veth ends and their peers, so dropping a
//! [`Testbed`] removes all of it.

use dataplane::sys::netns;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vswitch::testbed::{unique_name, Netns};

/// Set by SIGINT/SIGTERM: every loop of the harness checks it and winds down, so the drop
/// guards run and nothing is left behind.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to [`STOP`].
pub fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// Whether a stop was asked for.
pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleeps `d`, waking early when a stop is asked for; whether it slept the whole time.
pub fn sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    while !stopping() {
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
    false
}

/// Runs a command; its stdout, or its stderr as the error.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `prog` is on the PATH.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// Pins the calling thread to `core` (ignored where the core does not exist).
pub fn pin_thread(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it for core < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if core < 1024 {
            libc::CPU_SET(core, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// Pins thread or process `pid` to `core`; whether it worked.
pub fn pin_pid(pid: i32, core: usize) -> bool {
    if core >= 1024 {
        return false;
    }
    // SAFETY: as in `pin_thread`; sched_setaffinity on another pid only changes its CPU mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Gives `pid` the real-time FIFO class at `prio`, so it runs as soon as it is woken on its core,
/// the way softirq work would, instead of waiting for a busy task there to be preempted.
pub fn realtime(pid: i32, prio: i32) -> bool {
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: sched_setscheduler reads `param` and changes only the scheduling class of `pid`.
    unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) == 0 }
}

/// Number of CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One veth pair's two ends: `(namespace, name)` each.
#[derive(Debug, Clone)]
pub struct Veth {
    /// The end in the generator's or the sink's namespace.
    pub outer: (String, String),
    /// The end facing the device under test.
    pub inner: (String, String),
}

/// The namespaces and veth pairs of one run:
///
/// ```text
///  gen ns                 dut ns                   sink ns
///  gen0 10.77.0.1 ====== dg<id>  [contender]  ds<id> ====== sink0 10.77.0.2
///  gc0  10.78.0.1 ============================================ sc0 10.78.0.2   (ceiling, no DUT)
/// ```
pub struct Testbed {
    /// The generator's namespace.
    pub gen: Netns,
    /// The device under test's namespace.
    pub dut: Netns,
    /// The sink's namespace.
    pub sink: Netns,
    /// generator <-> DUT.
    pub gen_link: Veth,
    /// DUT <-> sink.
    pub sink_link: Veth,
    /// generator <-> sink directly: the ceiling.
    pub direct: Veth,
}

/// Address of the generator's end of the DUT path.
pub const GEN_IP: [u8; 4] = [10, 77, 0, 1];
/// Address of the sink's end of the DUT path.
pub const SINK_IP: [u8; 4] = [10, 77, 0, 2];
/// Addresses of the direct pair.
pub const DIRECT_IPS: [[u8; 4]; 2] = [[10, 78, 0, 1], [10, 78, 0, 2]];

fn cidr(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}/24", ip[0], ip[1], ip[2], ip[3])
}

impl Testbed {
    /// Makes the three namespaces and the three veth pairs, addressed and up.
    pub fn build() -> Result<Testbed, String> {
        let gen = Netns::create(&unique_name("tbgen"))?;
        let dut = Netns::create(&unique_name("tbdut"))?;
        let sink = Netns::create(&unique_name("tbsnk"))?;
        let id = std::process::id() % 100_000;
        let (dg, ds) = (format!("dg{id}"), format!("ds{id}"));
        let tb = Testbed {
            gen_link: Veth {
                outer: (gen.name().into(), "gen0".into()),
                inner: (dut.name().into(), dg),
            },
            sink_link: Veth {
                outer: (sink.name().into(), "sink0".into()),
                inner: (dut.name().into(), ds),
            },
            direct: Veth {
                outer: (gen.name().into(), "gc0".into()),
                inner: (sink.name().into(), "sc0".into()),
            },
            gen,
            dut,
            sink,
        };
        for v in [&tb.gen_link, &tb.sink_link, &tb.direct] {
            run(Command::new("ip").args([
                "-n", &v.inner.0, "link", "add", &v.inner.1, "type", "veth", "peer", "name",
                &v.outer.1, "netns", &v.outer.0,
            ]))?;
            for (ns, dev) in [&v.inner, &v.outer] {
                run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]))?;
            }
        }
        tb.gen.ip(&["addr", "add", &cidr(GEN_IP), "dev", "gen0"])?;
        tb.sink
            .ip(&["addr", "add", &cidr(SINK_IP), "dev", "sink0"])?;
        tb.gen
            .ip(&["addr", "add", &cidr(DIRECT_IPS[0]), "dev", "gc0"])?;
        tb.sink
            .ip(&["addr", "add", &cidr(DIRECT_IPS[1]), "dev", "sc0"])?;
        Ok(tb)
    }
}

/// The path of namespace `ns`.
pub fn ns_path(ns: &str) -> PathBuf {
    netns::path_of(ns)
}

/// `ip -n NS -j -s link show DEV`, parsed.
fn link_json(ns: &str, dev: &str) -> Result<serde_json::Value, String> {
    let out =
        run(Command::new("ip").args(["-n", ns, "-j", "-s", "-d", "link", "show", "dev", dev]))?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("ip -j link: {e}"))?;
    v.get(0)
        .cloned()
        .ok_or_else(|| format!("no interface {dev} in {ns}"))
}

/// Packets received by `dev` in `ns` (its `rx_packets`; a veth counts frames its XDP program
/// dropped there too).
pub fn rx_packets(ns: &str, dev: &str) -> Result<u64, String> {
    link_json(ns, dev)?
        .pointer("/stats64/rx/packets")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("no rx counter for {dev}"))
}

/// Whether `dev` in `ns` is a TUN/TAP device.
pub fn is_tap(ns: &str, dev: &str) -> bool {
    link_json(ns, dev).is_ok_and(|v| {
        v.pointer("/linkinfo/info_kind")
            .and_then(serde_json::Value::as_str)
            == Some("tun")
    })
}

/// The MAC address of `dev` in `ns`.
pub fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6], String> {
    let v = link_json(ns, dev)?;
    let s = v
        .get("address")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("no address on {dev}"))?;
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

/// The interface index of `dev` in `ns`.
pub fn ifindex(ns: &str, dev: &str) -> Result<u32, String> {
    link_json(ns, dev)?
        .get("ifindex")
        .and_then(serde_json::Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| format!("no ifindex for {dev}"))
}

/// Turns transmit checksum offload on `dev` in `ns` on or off, as `ethtool -K DEV tx on|off`
/// does (off also turns TSO off, since TSO needs it; on gives it back).
pub fn set_tx_checksum(ns: &str, dev: &str, on: bool) -> Result<(), String> {
    let name = dev.to_string();
    netns::run_in(Some(&ns_path(ns)), move || {
        dataplane::sys::ethtool::set_tx_checksum(&name, on)
    })
    .map_err(|e| {
        format!(
            "tx checksum {} on {dev}: {e}",
            if on { "on" } else { "off" }
        )
    })
}

/// Moves the NAPI context of `dev` in `ns` (which exists while an XDP program is attached to a
/// veth) into a kernel thread and pins that thread to `core`, so the kernel's receive work for
/// the device is charged to that core rather than to whichever CPU transmitted into it.
/// Returns the thread's pid.
pub fn threaded_napi(ns: &str, dev: &str, core: usize) -> Result<i32, String> {
    run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{dev}/threaded"),
    ]))?;
    // The thread is named `napi/DEV-ID`, cut to 15 bytes.
    let prefix: String = format!("napi/{dev}-").chars().take(15).collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut found = None;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                // The newest one: a NAPI context re-created when a program was re-attached gets
                // a new thread, and the old one may not have exited yet.
                if comm.trim_end().starts_with(&prefix) && found.is_none_or(|f| pid > f) {
                    found = Some(pid);
                }
            }
        }
        if let Some(pid) = found {
            if pin_pid(pid, core) {
                return Ok(pid);
            }
            return Err(format!("cannot pin {prefix} (pid {pid}) to core {core}"));
        }
        if Instant::now() > deadline {
            return Err(format!("no NAPI thread for {dev} in {ns}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
