//! The generator, the sink and the two measurements (small-packet rate and TCP throughput).
//!
//! Generator: an XDP program that returns `XDP_TX`, run with `BPF_PROG_RUN` in live-frames mode
//! bound to the generator's interface, so the kernel transmits each copy of one 60-byte frame
//! (a 64-byte Ethernet frame with its FCS) out of it, about 8 Mpps on one core here. The thread
//! that runs it sits in the generator's namespace, pinned to core 0.
//!
//! Sink: an XDP program that returns `XDP_DROP` on the far end; the rate is the growth of that
//! interface's `rx_packets` over the measured window.

use super::net::{self, ns_path, pin_thread, stopping};
use dataplane::sys::bpf;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes handed to the interface per frame: 64 on the wire with the 4-byte FCS.
pub const FRAME_LEN: usize = 60;
/// Frames one `BPF_PROG_RUN` call sends; small enough that a stop is seen within ~0.1 s.
const REPEAT: u32 = 1 << 18;
/// Frames the kernel hands to the driver at once.
const BATCH: u32 = 256;

/// A UDP/IPv4 frame of [`FRAME_LEN`] bytes from `src` to `dst` (port 9, discard).
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (FRAME_LEN - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&9u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    // UDP checksum 0: none, which IPv4 allows.
    f
}

/// A loaded XDP program that returns one action.
pub fn action_program(name: &str, action: i32) -> Result<OwnedFd, String> {
    bpf::load_xdp_program(name, &bpf::xdp_action_program(action))
        .map_err(|e| format!("load {name}: {e}"))
}

/// An XDP program attached to an interface of a namespace through a BPF link; detached when
/// dropped (and by the kernel if this process dies).
pub struct XdpLink {
    _link: OwnedFd,
}

impl XdpLink {
    /// Attaches `prog` to `dev` in `ns`, native mode first, generic if the driver refuses.
    pub fn attach(prog: &OwnedFd, ns: &str, dev: &str) -> Result<XdpLink, String> {
        let ifindex = net::ifindex(ns, dev)?;
        netns::run_in(Some(&ns_path(ns)), || {
            bpf::link_xdp(prog, ifindex, bpf::XDP_FLAGS_DRV_MODE)
                .or_else(|_| bpf::link_xdp(prog, ifindex, bpf::XDP_FLAGS_SKB_MODE))
        })
        .map(|l| XdpLink { _link: l })
        .map_err(|e| format!("attach XDP to {dev} in {ns}: {e}"))
    }
}

use dataplane::sys::netns;

/// What one generator run offered.
#[derive(Debug, Clone, Copy)]
pub struct Offered {
    /// Frames the kernel ran the program for.
    pub frames: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

/// A generator thread: live-frames `XDP_TX` on `dev` in `ns` until stopped.
pub struct Generator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<Offered, String>>>,
}

impl Generator {
    /// Starts sending `frame` out of `dev` in `ns` from a thread pinned to `core`; it stops by
    /// itself after `limit`. With `rewrite`, the program writes the frame afresh each time
    /// (see [`PpsPath::rewrite`]).
    pub fn start(
        ns: &str,
        dev: &str,
        frame: Vec<u8>,
        core: usize,
        limit: Duration,
        rewrite: bool,
    ) -> Result<Generator, String> {
        let prog = if rewrite {
            bpf::load_xdp_program("tb_gen_rewrite", &bpf::xdp_tx_rewrite_program(&frame))
                .map_err(|e| format!("load tb_gen_rewrite: {e}"))?
        } else {
            action_program("tb_gen_tx", bpf::XDP_TX)?
        };
        let ifindex = net::ifindex(ns, dev)?;
        let path = ns_path(ns);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || -> Result<Offered, String> {
            pin_thread(core);
            netns::run_in(Some(&path), move || {
                // `run_in`'s thread inherits the pinned CPU mask of this one.
                let start = Instant::now();
                let mut frames = 0u64;
                while !stop2.load(Ordering::Relaxed) && !stopping() && start.elapsed() < limit {
                    match bpf::xdp_run_live(&prog, ifindex, &frame, REPEAT, BATCH) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                    frames += u64::from(REPEAT);
                    sent2.store(frames, Ordering::Relaxed);
                }
                Ok(Offered {
                    frames,
                    elapsed: start.elapsed(),
                })
            })
            .map_err(|e| e.to_string())
        });
        Ok(Generator {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the thread and returns what it offered.
    pub fn finish(mut self) -> Result<Offered, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| "generator thread panicked".to_string())?,
            None => Err("generator already finished".into()),
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How the sink counts.
pub enum Counter<'a> {
    /// The interface's `rx_packets` (a veth counts what its XDP program dropped).
    Iface(&'a str, &'a str),
    /// The counter map of a counting drop program (a TAP does not count what XDP dropped).
    Map(&'a OwnedFd),
}

impl Counter<'_> {
    fn read(&self) -> Result<u64, String> {
        match self {
            Counter::Iface(ns, dev) => net::rx_packets(ns, dev),
            Counter::Map(m) => bpf::read_counter(m).map_err(|e| format!("read sink counter: {e}")),
        }
    }
}

/// Where one small-packet measurement sends and counts.
pub struct PpsPath<'a> {
    /// Generator namespace and interface.
    pub gen: (&'a str, &'a str),
    /// The sink's counter (its drop program attached by the caller).
    pub sink: Counter<'a>,
    /// The frame to send.
    pub frame: &'a [u8],
    /// Write the frame afresh before each transmission: a live-frames page goes back to the
    /// generator as the device under test left it, and a router (the NAT contenders) rewrites
    /// MACs, TTL and addresses in place; resent as it came back, the frame is addressed to the
    /// sink's MAC, which the gateway drops. A bridge changes nothing, so the others send
    /// without this (one store per 4 bytes).
    pub rewrite: bool,
}

/// What one small-packet run measured.
#[derive(Debug, Clone, Copy)]
pub struct PpsRun {
    /// Packets per second that reached the sink.
    pub sink_pps: f64,
    /// Packets per second the generator offered.
    pub offered_pps: f64,
}

/// Runs the generator for `warmup + seconds` and counts the sink over the last `seconds`.
pub fn measure_pps(p: &PpsPath, warmup: Duration, seconds: Duration) -> Result<PpsRun, String> {
    let limit = warmup + seconds + Duration::from_secs(5);
    let g = Generator::start(p.gen.0, p.gen.1, p.frame.to_vec(), 0, limit, p.rewrite)?;
    if !net::sleep(warmup) {
        return Err("stopped".into());
    }
    let (c0, t0, s0) = (p.sink.read()?, Instant::now(), g.sent());
    if !net::sleep(seconds) {
        return Err("stopped".into());
    }
    let (c1, t1, s1) = (p.sink.read()?, Instant::now(), g.sent());
    let offered = g.finish()?;
    if offered.frames == 0 {
        return Err("the generator sent nothing".into());
    }
    let dt = (t1 - t0).as_secs_f64().max(1e-3);
    Ok(PpsRun {
        sink_pps: c1.saturating_sub(c0) as f64 / dt,
        offered_pps: s1.saturating_sub(s0) as f64 / dt,
    })
}

/// One checked TCP transfer from the generator's namespace to the sink's, sized to last about
/// `seconds` at the rate `probe_gbps` measured before, with both ends pinned to core 0.
pub fn measure_tcp(
    gen_ns: &str,
    sink_ns: &str,
    sink_ip: [u8; 4],
    bytes: u64,
    timeout: Duration,
) -> Result<f64, String> {
    let (g, s) = (ns_path(gen_ns), ns_path(sink_ns));
    let ip = Ipv4Addr::from(sink_ip);
    std::thread::spawn(move || {
        // The receiver thread that `tcp_transfer` spawns inherits this mask.
        pin_thread(0);
        vswitch::testbed::tcp_transfer(&s, ip, &g, bytes, timeout)
    })
    .join()
    .map_err(|_| "transfer thread panicked".to_string())?
    .map(|t| t.mbps() / 1000.0)
}

/// Bytes for a transfer of about `seconds` at `gbps`, within 16 MiB..16 GiB.
pub fn bytes_for(gbps: f64, seconds: f64) -> u64 {
    let b = gbps * 1e9 / 8.0 * seconds;
    (b as u64).clamp(16 << 20, 16 << 30)
}

/// Pings `dst` from `ns` once (so switches learn the sender's MAC); the result is ignored.
pub fn ping_once(ns: &vswitch::testbed::Netns, dst: [u8; 4]) {
    let _ = ns.ping(Ipv4Addr::from(dst), 1);
}
