//! `vswitchd`: owns the configuration, the devices and the workers, and answers the control
//! socket. Every accepted change is persisted before it is acknowledged, then published to the
//! workers as a new snapshot.

mod capture;
mod device;
mod metrics;
pub mod os;
mod overlay;
pub mod server;
mod trace;

use crate::bridge::LearnSync;
use crate::config::{self, NetConf, NetId, PortConf, Snapshot};
use crate::counters::{event_index, Event};
use crate::pipeline::{Request as WorkerRequest, Switch};
use control::proto::*;
use control::text::{check_name, format_mac, parse_mac};
use dataplane::counters::WorkerEvent;
use dataplane::pool::{Pool, MAX_FRAME};
use dataplane::port::remote::RemoteTx;
use dataplane::port::tap::TapDevice;
use dataplane::port::{PortId, PortIo, MAX_PORTS};
use dataplane::sys::netns;
use dataplane::worker::{self, Command, Worker, WorkerHandle};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// MTU of a port that names none.
const DEFAULT_MTU: u32 = 1500;
/// How long the control thread waits for workers to apply a change.
const WORKER_WAIT: Duration = Duration::from_secs(5);
/// Largest MTU a TAP port may have (a frame must fit in one buffer).
pub const MAX_MTU: u32 = (MAX_FRAME - 18) as u32 - 1;
/// Large buffers kept beyond one per TAP queue, for super-frames on their way through.
pub const LARGE_RESERVE: usize = 64;

/// Daemon settings from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Control socket path.
    pub socket: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// Cores for workers (None: the default choice).
    pub cores: Option<Vec<usize>>,
    /// Group allowed to use the socket besides root.
    pub group: Option<String>,
    /// Packet buffers in the pool.
    pub buffers: u32,
    /// MAC table entries per worker.
    pub fdb_size: u32,
    /// Large buffers (for TCP super-frames) in the pool.
    pub large_buffers: u32,
    /// Open TAP ports with virtio-net offloads.
    pub tap_offload: bool,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
}

/// The kernel's drop counters of an AF_XDP port's sockets, as port counters (zero otherwise).
fn kernel_drops(device: Option<&device::Device>) -> PortCounters {
    match device.and_then(device::Device::kernel_stats) {
        Some(k) => PortCounters {
            rx_ring_full: k.rx_ring_full,
            rx_fill_empty: k.rx_fill_ring_empty_descs,
            rx_kernel_dropped: k.rx_dropped + k.rx_invalid_descs + k.tx_invalid_descs,
            ..PortCounters::default()
        },
        None => PortCounters::default(),
    }
}

/// Port `id`'s switch counters summed over workers (the kernel's AF_XDP counters are not here:
/// see [`kernel_drops`]). Wrapping sums: counters wrap, they never panic.
fn sum_port<'a>(
    workers: impl Iterator<Item = &'a dataplane::counters::WorkerStats>,
    id: PortId,
) -> PortCounters {
    let mut c = PortCounters::default();
    for w in workers {
        let p = w.port(id);
        c.rx_packets = c.rx_packets.wrapping_add(p.rx_packets.get());
        c.rx_bytes = c.rx_bytes.wrapping_add(p.rx_bytes.get());
        c.tx_packets = c.tx_packets.wrapping_add(p.tx_packets.get());
        c.tx_bytes = c.tx_bytes.wrapping_add(p.tx_bytes.get());
        c.tx_dropped = c.tx_dropped.wrapping_add(p.tx_dropped.get());
        c.rx_errors = c.rx_errors.wrapping_add(p.rx_errors.get());
        c.tx_offload_dropped = c
            .tx_offload_dropped
            .wrapping_add(p.tx_offload_dropped.get());
        c.tx_segmented = c.tx_segmented.wrapping_add(p.tx_segmented.get());
        c.rx_csum_completed = c.rx_csum_completed.wrapping_add(p.rx_csum_completed.get());
    }
    c
}

/// Switch counters since `base` (a port's values when it was added; ids are reused and
/// counters are not reset). The kernel's AF_XDP counters are left zero.
fn counters_since(now: &PortCounters, base: &PortCounters) -> PortCounters {
    PortCounters {
        rx_packets: now.rx_packets.wrapping_sub(base.rx_packets),
        rx_bytes: now.rx_bytes.wrapping_sub(base.rx_bytes),
        tx_packets: now.tx_packets.wrapping_sub(base.tx_packets),
        tx_bytes: now.tx_bytes.wrapping_sub(base.tx_bytes),
        tx_dropped: now.tx_dropped.wrapping_sub(base.tx_dropped),
        rx_errors: now.rx_errors.wrapping_sub(base.rx_errors),
        tx_offload_dropped: now.tx_offload_dropped.wrapping_sub(base.tx_offload_dropped),
        tx_segmented: now.tx_segmented.wrapping_sub(base.tx_segmented),
        rx_csum_completed: now.rx_csum_completed.wrapping_sub(base.rx_csum_completed),
        ..PortCounters::default()
    }
}

fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, msg)
}

struct NetState {
    spec: NetworkSpec,
    id: NetId,
}

struct PortState {
    spec: PortSpec,
    id: PortId,
    device: Option<device::Device>,
    queues: u16,
    error: Option<String>,
    /// Counter values when the port was added (ids are reused; counters are not reset).
    base: PortCounters,
}

/// The daemon's state.
pub struct Daemon {
    opts: Options,
    started: Instant,
    pool: Arc<Pool>,
    workers: Vec<WorkerHandle<Switch>>,
    nets: BTreeMap<String, NetState>,
    ports: BTreeMap<String, PortState>,
    fdb: Vec<StaticFdb>,
    /// The underlay address (MAC filled in).
    uplink: Option<UplinkSpec>,
    /// Remote VTEPs of overlay networks.
    peers: Vec<PeerSpec>,
    /// Port ids of tunnels, by (network, remote VTEP); allocated from the top of the id space.
    tunnel_ids: BTreeMap<(String, std::net::Ipv4Addr), PortId>,
    /// Packet tracing shared with the workers.
    trace: Arc<crate::trace::TraceCtl>,
    /// Trace records collected from the workers.
    trace_log: Vec<crate::trace::TraceRec>,
    gen: u64,
    rate: Option<(Instant, u64, u64)>,
    pps: (u64, u64),
    worker_pps: Vec<u64>,
    worker_rx_last: Vec<u64>,
    /// The metrics thread and the port list it reads (`--metrics`).
    metrics: Option<(Arc<metrics::View>, metrics::Server)>,
    /// Running packet captures (`capture.*`).
    captures: capture::Captures,
}

/// Chooses worker cores: the given list, else all but core 0 when there are more than two,
/// else the last core. `dataplane::core_affinity::get_core_ids` reads the calling thread's affinity, so this
/// runs once, before any thread is pinned.
fn choose_cores(
    wanted: Option<&[usize]>,
) -> Result<Vec<Option<dataplane::core_affinity::CoreId>>, String> {
    let avail = dataplane::core_affinity::get_core_ids().unwrap_or_default();
    match wanted {
        Some(list) => list
            .iter()
            .map(|&c| {
                avail.iter().find(|a| a.id == c).copied().map(Some).ok_or_else(|| {
                    let ids: Vec<String> = avail.iter().map(|a| a.id.to_string()).collect();
                    format!("core {c} is not available to this process (available: {}); fix --cores", ids.join(","))
                })
            })
            .collect(),
        None if avail.len() > 2 => Ok(avail.iter().filter(|c| c.id != 0).copied().map(Some).collect()),
        None => Ok(vec![avail.last().copied()]),
    }
}

fn parse_args<T: DeserializeOwned>(cmd: &str, args: &Value) -> Result<T, ErrorBody> {
    let v = if args.is_null() {
        Value::Object(Default::default())
    } else {
        args.clone()
    };
    serde_json::from_value(v).map_err(|e| {
        err(
            ErrorCode::InvalidArgument,
            format!("invalid arguments for {cmd}: {e}"),
        )
    })
}

impl Daemon {
    /// Starts the workers and restores the persisted configuration.
    pub fn start(opts: Options) -> Result<Daemon, String> {
        let cores = choose_cores(opts.cores.as_deref())?;
        let metrics_listener = opts.metrics.map(metrics::bind).transpose()?;
        let large = if opts.tap_offload {
            opts.large_buffers
        } else {
            0
        };
        let pool = Pool::with_large(opts.buffers, large).map_err(|e| {
            format!(
                "cannot map {} packet buffers: {e}; lower --buffers",
                opts.buffers
            )
        })?;
        let snap = Arc::new(Snapshot::default());
        let mut workers = Vec::new();
        let inboxes = LearnSync::inboxes(cores.len(), 4096);
        let trace = Arc::new(crate::trace::TraceCtl::default());
        for (i, core) in cores.iter().enumerate() {
            let mut switch = Switch::new(pool.clone(), opts.fdb_size);
            switch.set_trace(trace.clone());
            if cores.len() > 1 {
                switch.bridge.set_sync(LearnSync {
                    me: i,
                    inboxes: inboxes.clone(),
                });
            }
            let (w, tx) = Worker::new(i as u16, pool.clone(), switch, snap.clone());
            let h =
                worker::spawn(w, tx, *core).map_err(|e| format!("cannot start worker {i}: {e}"))?;
            tracing::info!(worker = i, core = core.map(|c| c.id), "worker started");
            workers.push(h);
        }
        let n = workers.len();
        let started = Instant::now();
        let metrics = match metrics_listener {
            Some(l) => {
                let view = metrics::View::new(
                    workers.iter().map(|w| (w.id, w.stats.clone())).collect(),
                    started,
                );
                Some((view.clone(), metrics::Server::spawn(l, view)?))
            }
            None => None,
        };
        let mut d = Daemon {
            opts,
            started,
            pool,
            workers,
            nets: BTreeMap::new(),
            ports: BTreeMap::new(),
            fdb: Vec::new(),
            uplink: None,
            peers: Vec::new(),
            tunnel_ids: BTreeMap::new(),
            trace,
            trace_log: Vec::new(),
            gen: 0,
            rate: None,
            pps: (0, 0),
            worker_pps: vec![0; n],
            worker_rx_last: vec![0; n],
            metrics,
            captures: capture::Captures::default(),
        };
        d.restore()?;
        Ok(d)
    }

    fn state_file(&self) -> PathBuf {
        self.opts.state_dir.join("config.json")
    }

    fn restore(&mut self) -> Result<(), String> {
        let path = self.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let doc: ConfigDoc = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a valid configuration ({e}); fix or move it away to start empty",
                path.display()
            )
        })?;
        let mut failed = 0;
        let mut fail = |what: &str, e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "cannot restore {what}");
            failed += 1;
        };
        for n in doc.networks {
            let name = n.name.clone();
            if let Err(e) = self.network_create(n, false) {
                fail(&format!("network '{name}'"), &e);
            }
        }
        // The uplink first (as it was accepted), so that ports in overlay networks get the
        // overlay MTU it implies; it is checked again once its port exists.
        self.uplink = doc.uplink.clone();
        for p in doc.ports {
            let name = p.name.clone();
            match self.port_add(p, false) {
                Ok(_) => tracing::info!(port = %name, "port restored"),
                Err(e) => fail(&format!("port '{name}'"), &e),
            }
        }
        if let Some(u) = doc.uplink {
            if let Err(e) = self.uplink_set(u, false) {
                self.uplink = None;
                fail("the uplink", &e);
            }
        }
        for p in doc.peers {
            if let Err(e) = self.peer_add(p, false) {
                fail("a peer", &e);
            }
        }
        for f in doc.fdb {
            if let Err(e) = self.fdb_add(f, false) {
                fail("a static MAC entry", &e);
            }
        }
        if failed > 0 {
            // The next accepted change rewrites the state without what could not be restored;
            // keep the whole document for the operator.
            let keep = path.with_extension(format!("json.unrestored-{}", std::process::id()));
            match std::fs::copy(&path, &keep) {
                Ok(_) => tracing::warn!(
                    "{failed} object(s) could not be restored; the state as it was is kept in {}",
                    keep.display()
                ),
                Err(e) => tracing::error!(error = %e, "cannot keep a copy of the state"),
            }
        }
        self.publish();
        tracing::info!(
            networks = self.nets.len(),
            ports = self.ports.len(),
            "configuration restored"
        );
        Ok(())
    }

    /// The configuration as one document.
    pub fn export(&self) -> ConfigDoc {
        let mut ports: Vec<PortSpec> = self.ports.values().map(|p| p.spec.clone()).collect();
        // Trunks before their subinterfaces, so that a restore or import can add them in order.
        ports.sort_by_key(|p| {
            (
                p.kind == PortType::Vlan,
                self.ports.get(&p.name).map(|s| s.id),
            )
        });
        ConfigDoc {
            version: CONFIG_VERSION,
            networks: self.nets.values().map(|n| n.spec.clone()).collect(),
            ports,
            fdb: self.fdb.clone(),
            uplink: self.uplink.clone(),
            peers: self.peers.clone(),
        }
    }

    fn persist(&self) -> Result<(), ErrorBody> {
        let doc = self.export();
        let data = serde_json::to_vec_pretty(&doc)
            .map_err(|e| err(ErrorCode::Internal, format!("encode state: {e}")))?;
        os::write_atomic(&self.state_file(), &data).map_err(|e| {
            err(
                ErrorCode::System,
                format!(
                    "cannot persist the change to {}: {e}; the change was not made",
                    self.state_file().display()
                ),
            )
        })
    }

    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            gen: self.gen,
            ..Default::default()
        };
        let max_port = self
            .ports
            .values()
            .map(|p| p.id as usize + 1)
            .max()
            .unwrap_or(0);
        let max_net = self
            .nets
            .values()
            .map(|n| n.id as usize + 1)
            .max()
            .unwrap_or(0);
        snap.ports = vec![None; max_port];
        snap.nets = vec![None; max_net];
        for n in self.nets.values() {
            snap.nets[n.id as usize] = Some(NetConf {
                ports: Vec::new(),
                mac_limit: n.spec.mac_limit.unwrap_or(config::DEFAULT_NET_MAC_LIMIT),
                aging_secs: n.spec.aging_secs.unwrap_or(config::DEFAULT_AGING_SECS),
                statics: Vec::new(),
            });
        }
        let mut ids: Vec<&PortState> = self.ports.values().collect();
        ids.sort_by_key(|p| p.id);
        for p in ids {
            let net = p
                .spec
                .network
                .as_ref()
                .and_then(|n| self.nets.get(n))
                .map(|n| n.id);
            let parent = self
                .vlan_parent(&p.spec)
                .map(|(parent, vid)| (parent.id, vid));
            let subs: Vec<(u16, PortId)> = self
                .ports
                .values()
                .filter_map(|q| match self.vlan_parent(&q.spec) {
                    Some((parent, vid)) if parent.id == p.id => Some((vid, q.id)),
                    _ => None,
                })
                .collect();
            let vlans = (!subs.is_empty()).then(|| {
                let mut map = vec![config::NO_PORT; 4096];
                for (vid, id) in subs {
                    map[vid as usize & 0xfff] = id;
                }
                std::sync::Arc::from(map)
            });
            snap.ports[p.id as usize] = Some(PortConf {
                net,
                mac_limit: p.spec.mac_limit.unwrap_or(config::DEFAULT_PORT_MAC_LIMIT),
                mtu: p.spec.mtu.unwrap_or(DEFAULT_MTU),
                parent,
                vlans,
                ..Default::default()
            });
            if let Some(Some(nc)) = net.map(|n| &mut snap.nets[n as usize]) {
                nc.ports.push(p.id);
            }
        }
        for f in &self.fdb {
            let (Some(n), Some(p), Ok(mac)) = (
                self.nets.get(&f.network),
                f.port.as_ref().and_then(|p| self.ports.get(p)),
                parse_mac(&f.mac),
            ) else {
                continue;
            };
            if let Some(nc) = snap.nets[n.id as usize].as_mut() {
                nc.statics.push((mac, p.id));
            }
        }
        self.snapshot_overlay(&mut snap);
        snap
    }

    /// Publishes a new snapshot and waits until every worker applied it.
    fn publish(&mut self) {
        self.sync_tunnels();
        self.gen += 1;
        self.refresh_metrics();
        let snap = Arc::new(self.snapshot());
        let seqs: Vec<u64> = self
            .workers
            .iter_mut()
            .map(|w| w.send(Command::Config(snap.clone())))
            .collect();
        for (w, seq) in self.workers.iter().zip(seqs) {
            if !w.wait(seq, WORKER_WAIT) {
                tracing::error!(
                    worker = w.id,
                    "worker did not apply the configuration in time"
                );
            }
        }
    }

    /// Gives the metrics thread the current port list (names, ids, bases).
    fn refresh_metrics(&self) {
        if let Some((view, _)) = &self.metrics {
            view.set_ports(
                self.ports
                    .values()
                    .map(|p| metrics::PortView {
                        name: p.spec.name.clone(),
                        id: p.id,
                        base: p.base.clone(),
                    })
                    .collect(),
            );
        }
    }

    fn port_counters(&self, id: PortId) -> PortCounters {
        sum_port(self.workers.iter().map(|w| &*w.stats), id)
    }

    fn port_counters_since(&self, p: &PortState) -> PortCounters {
        // The kernel's counters belong to the port's own sockets: no base to subtract.
        let k = kernel_drops(p.device.as_ref());
        PortCounters {
            rx_ring_full: k.rx_ring_full,
            rx_fill_empty: k.rx_fill_empty,
            rx_kernel_dropped: k.rx_kernel_dropped,
            ..counters_since(&self.port_counters(p.id), &p.base)
        }
    }

    /// Samples packet rates; called about once a second.
    pub fn sample_rates(&mut self) {
        self.watch_interfaces();
        let (rx, tx) = self.ports.values().fold((0u64, 0u64), |(r, t), p| {
            let c = self.port_counters_since(p);
            (r + c.rx_packets, t + c.tx_packets)
        });
        let now = Instant::now();
        if let Some((t0, rx0, tx0)) = self.rate {
            let dt = now.duration_since(t0).as_secs_f64().max(0.001);
            self.pps = (
                (rx.saturating_sub(rx0) as f64 / dt) as u64,
                (tx.saturating_sub(tx0) as f64 / dt) as u64,
            );
            for (i, w) in self.workers.iter().enumerate() {
                let total: u64 = w.stats.ports.iter().map(|p| p.rx_packets.get()).sum();
                self.worker_pps[i] =
                    (total.saturating_sub(self.worker_rx_last[i]) as f64 / dt) as u64;
                self.worker_rx_last[i] = total;
            }
        }
        self.rate = Some((now, rx, tx));
    }

    /// Marks AF_XDP ports whose interface disappeared as down (once, with a log line); their
    /// queues stay with the workers, which count what they can no longer send.
    fn watch_interfaces(&mut self) {
        for p in self.ports.values_mut() {
            let Some(d) = &p.device else { continue };
            if p.error.is_none() && p.spec.kind == PortType::Afxdp && !d.exists() {
                tracing::error!(port = %p.spec.name, device = d.name(), "interface disappeared; port is down");
                p.error = Some(format!("interface '{}' disappeared", d.name()));
            }
        }
    }

    /// Handles one request.
    pub fn handle(&mut self, req: &Request) -> Result<Value, ErrorBody> {
        let a = &req.args;
        let c = req.cmd.as_str();
        let to_value = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| err(ErrorCode::Internal, format!("encode reply: {e}")))
        };
        match c {
            cmd::STATUS => to_value(serde_json::to_value(self.status())),
            cmd::NETWORK_CREATE => {
                let spec: NetworkSpec = parse_args(c, a)?;
                let name = spec.name.clone();
                self.network_create(spec, true)?;
                self.publish();
                to_value(serde_json::to_value(self.network_info(&name)?))
            }
            cmd::NETWORK_LS => {
                let list: Result<Vec<_>, _> = {
                    // One MAC table dump for the whole list, not one per network.
                    let dump = self.dump_fdb(None).unwrap_or_default();
                    self.nets
                        .keys()
                        .map(|n| self.network_info_from(n, &dump))
                        .collect()
                };
                to_value(serde_json::to_value(list?))
            }
            cmd::NETWORK_INSPECT => {
                let a: NameArgs = parse_args(c, a)?;
                to_value(serde_json::to_value(self.network_info(&a.name)?))
            }
            cmd::NETWORK_RM => {
                let a: NameArgs = parse_args(c, a)?;
                self.network_rm(&a.name)?;
                Ok(Value::Null)
            }
            cmd::PORT_ADD => {
                let spec: PortSpec = parse_args(c, a)?;
                let name = spec.name.clone();
                self.port_add(spec, true)?;
                self.publish();
                to_value(serde_json::to_value(self.port_info(&name)?))
            }
            cmd::PORT_LS => {
                let mut ps: Vec<&PortState> = self.ports.values().collect();
                ps.sort_by_key(|p| p.id);
                let list: Result<Vec<_>, _> = {
                    let dump = self.dump_fdb(None).unwrap_or_default();
                    ps.iter()
                        .map(|p| self.port_info_from(&p.spec.name, &dump))
                        .collect()
                };
                to_value(serde_json::to_value(list?))
            }
            cmd::PORT_INSPECT => {
                let a: NameArgs = parse_args(c, a)?;
                to_value(serde_json::to_value(self.port_info(&a.name)?))
            }
            cmd::PORT_RM => {
                let a: NameArgs = parse_args(c, a)?;
                self.port_rm(&a.name)?;
                Ok(Value::Null)
            }
            cmd::FDB_LS => {
                let a: FdbLsArgs = parse_args(c, a)?;
                to_value(serde_json::to_value(self.fdb_ls(a.network.as_deref())?))
            }
            cmd::FDB_ADD => {
                let a: StaticFdb = parse_args(c, a)?;
                self.fdb_add(a, true)?;
                self.publish();
                Ok(Value::Null)
            }
            cmd::FDB_RM => {
                let a: FdbRmArgs = parse_args(c, a)?;
                self.fdb_rm(a)?;
                Ok(Value::Null)
            }
            cmd::STATS => {
                let a: StatsArgs = parse_args(c, a)?;
                to_value(serde_json::to_value(self.stats(a.port.as_deref())?))
            }
            cmd::CONFIG_EXPORT => to_value(serde_json::to_value(self.export())),
            cmd::CONFIG_IMPORT => {
                let doc: ConfigDoc = parse_args(c, a)?;
                to_value(serde_json::to_value(self.import(doc)?))
            }
            cmd::UPLINK_SET => {
                let spec: UplinkSpec = parse_args(c, a)?;
                self.uplink_set(spec, true)?;
                self.publish();
                to_value(serde_json::to_value(self.uplink_info()))
            }
            cmd::UPLINK_SHOW => to_value(serde_json::to_value(self.uplink_info())),
            cmd::PEER_ADD => {
                let p: PeerSpec = parse_args(c, a)?;
                self.peer_add(p, true)?;
                self.publish();
                Ok(Value::Null)
            }
            cmd::PEER_RM => {
                let p: PeerSpec = parse_args(c, a)?;
                self.peer_rm(p)?;
                self.publish();
                Ok(Value::Null)
            }
            cmd::TRACE_ADD => {
                let a: TraceAddArgs = parse_args(c, a)?;
                to_value(serde_json::to_value(self.trace_add(a)?))
            }
            cmd::TRACE_SHOW => to_value(serde_json::to_value(self.trace_show())),
            cmd::TRACE_CLEAR => {
                self.trace_clear();
                Ok(Value::Null)
            }
            cmd::PEER_LS => {
                let a: PeerLsArgs = parse_args(c, a)?;
                to_value(serde_json::to_value(self.peer_ls(a.network.as_deref())?))
            }
            cmd::CAPTURE_START => {
                let a: CaptureStart = parse_args(c, a)?;
                to_value(serde_json::to_value(self.capture_start(a)?))
            }
            cmd::CAPTURE_READ => {
                let a: CaptureRead = parse_args(c, a)?;
                to_value(serde_json::to_value(self.capture_read(a)?))
            }
            cmd::CAPTURE_STOP => {
                let a: CaptureId = parse_args(c, a)?;
                to_value(serde_json::to_value(self.capture_stop(a)?))
            }
            other => Err(err(
                ErrorCode::UnknownCommand,
                format!(
                    "unknown command '{other}'; known commands: {}",
                    cmd::ALL.join(", ")
                ),
            )),
        }
    }

    fn status(&self) -> StatusInfo {
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            pid: std::process::id(),
            workers: self
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| WorkerInfo {
                    id: w.id,
                    core: w.shared.core.load(Ordering::Relaxed) as usize,
                    pinned: w.shared.pinned.load(Ordering::Relaxed),
                    queues: w.shared.rx_queues.load(Ordering::Relaxed) as u32,
                    sleeps: w.stats.event(WorkerEvent::Sleeps).get(),
                    rx_pps: self.worker_pps.get(i).copied().unwrap_or(0),
                })
                .collect(),
            networks: self.nets.len() as u32,
            ports: self.ports.len() as u32,
            rx_pps: self.pps.0,
            tx_pps: self.pps.1,
        }
    }

    fn check_network_spec(spec: &NetworkSpec) -> Result<(), ErrorBody> {
        check_name("network", &spec.name, 64).map_err(|m| err(ErrorCode::InvalidArgument, m))?;
        if spec.encrypted {
            return Err(err(
                ErrorCode::Unsupported,
                "encrypted overlays (--encrypted) are not available in this version; create the network without it",
            ));
        }
        if let Some(s) = &spec.subnet {
            parse_cidr(s).map_err(|m| err(ErrorCode::InvalidArgument, m))?;
        }
        if let Some(g) = &spec.gateway {
            let ip: std::net::Ipv4Addr = g.parse().map_err(|_| {
                err(
                    ErrorCode::InvalidArgument,
                    format!("gateway '{g}' is not an IPv4 address"),
                )
            })?;
            if let Some(s) = &spec.subnet {
                let (net, len) = parse_cidr(s).map_err(|m| err(ErrorCode::InvalidArgument, m))?;
                if !control::text::same_prefix(ip, net, len) {
                    return Err(err(
                        ErrorCode::InvalidArgument,
                        format!("gateway {g} is outside subnet {s}"),
                    ));
                }
            }
        }
        if spec.aging_secs == Some(0) {
            return Err(err(
                ErrorCode::InvalidArgument,
                "--aging must be at least 1 second",
            ));
        }
        Ok(())
    }

    fn network_create(&mut self, spec: NetworkSpec, persist: bool) -> Result<(), ErrorBody> {
        Self::check_network_spec(&spec)?;
        self.check_vni(&spec)?;
        if self.nets.contains_key(&spec.name) {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!(
                    "network '{}' already exists; pick another name or remove it first",
                    spec.name
                ),
            ));
        }
        let used: Vec<NetId> = self.nets.values().map(|n| n.id).collect();
        let id = (1..crate::bridge::MAX_NETS as NetId)
            .find(|i| !used.contains(i))
            .ok_or_else(|| err(ErrorCode::Conflict, "too many networks; remove one first"))?;
        let name = spec.name.clone();
        self.nets.insert(name.clone(), NetState { spec, id });
        if persist {
            if let Err(e) = self.persist() {
                self.nets.remove(&name);
                return Err(e);
            }
            tracing::info!(network = %name, id, "network created");
        }
        Ok(())
    }

    fn network_rm(&mut self, name: &str) -> Result<(), ErrorBody> {
        if !self.nets.contains_key(name) {
            return Err(self.no_network(name));
        }
        let users: Vec<&str> = self
            .ports
            .values()
            .filter(|p| p.spec.network.as_deref() == Some(name))
            .map(|p| p.spec.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(err(
                ErrorCode::Conflict,
                format!("network '{name}' still has ports {}; remove them first (vswitchctl port rm NAME)", users.join(", ")),
            ));
        }
        let old = self.nets.remove(name);
        let old_fdb = self.fdb.clone();
        let old_peers = self.peers.clone();
        self.fdb.retain(|f| f.network != name);
        self.peers.retain(|p| p.network != name);
        if let Err(e) = self.persist() {
            if let Some(o) = old {
                self.nets.insert(name.to_string(), o);
            }
            self.fdb = old_fdb;
            self.peers = old_peers;
            return Err(e);
        }
        self.publish();
        tracing::info!(network = %name, "network removed");
        Ok(())
    }

    fn no_network(&self, name: &str) -> ErrorBody {
        err(
            ErrorCode::NotFound,
            format!(
                "network '{name}' does not exist; create it with: vswitchctl network create {name}"
            ),
        )
    }

    fn no_port(&self, name: &str) -> ErrorBody {
        err(
            ErrorCode::NotFound,
            format!("port '{name}' does not exist; see vswitchctl port ls"),
        )
    }

    fn network_info(&self, name: &str) -> Result<NetworkInfo, ErrorBody> {
        let id = self.nets.get(name).ok_or_else(|| self.no_network(name))?.id;
        let dump = self.dump_fdb(Some(id)).unwrap_or_default();
        self.network_info_from(name, &dump)
    }

    fn network_info_from(&self, name: &str, dump: &[FdbEntry]) -> Result<NetworkInfo, ErrorBody> {
        let n = self.nets.get(name).ok_or_else(|| self.no_network(name))?;
        let mut ports: Vec<&PortState> = self
            .ports
            .values()
            .filter(|p| p.spec.network.as_deref() == Some(name))
            .collect();
        ports.sort_by_key(|p| p.id);
        let entries: Vec<&FdbEntry> = dump.iter().filter(|e| e.network == name).collect();
        Ok(NetworkInfo {
            spec: n.spec.clone(),
            id: n.id,
            ports: ports.iter().map(|p| p.spec.name.clone()).collect(),
            learned_macs: entries.iter().filter(|e| e.kind == "learned").count() as u64,
            static_macs: self.fdb.iter().filter(|f| f.network == name).count() as u64,
            effective_mac_limit: n.spec.mac_limit.unwrap_or(config::DEFAULT_NET_MAC_LIMIT),
            effective_aging_secs: n.spec.aging_secs.unwrap_or(config::DEFAULT_AGING_SECS),
            mtu: n.spec.vni.map(|_| self.overlay_mtu()),
            peers: self
                .peers
                .iter()
                .filter(|p| p.network == name)
                .map(|p| p.vtep.clone())
                .collect(),
        })
    }

    /// The parent port and VID of a VLAN subinterface spec (`PARENT.VID`).
    fn vlan_parent(&self, spec: &PortSpec) -> Option<(&PortState, u16)> {
        if spec.kind != PortType::Vlan {
            return None;
        }
        let (parent, vid) = control::text::vlan_subinterface(&spec.name)?;
        let vid = Some(vid).filter(|v| (1..=4094).contains(v))?;
        Some((self.ports.get(parent)?, vid))
    }

    fn check_vlan_spec(&self, spec: &PortSpec) -> Result<(), ErrorBody> {
        let inval = |m: String| err(ErrorCode::InvalidArgument, m);
        let Some((parent, vid)) = spec.name.rsplit_once('.') else {
            return Err(inval(format!(
                "a VLAN subinterface is named PARENT.VID (e.g. uplink.10), not '{}'",
                spec.name
            )));
        };
        let vid: u16 = vid.parse().map_err(|_| {
            inval(format!(
                "'{vid}' in '{}' is not a VLAN id; use 1 to 4094",
                spec.name
            ))
        })?;
        if !(1..=4094).contains(&vid) {
            return Err(inval(format!(
                "VLAN id {vid} is out of range; use 1 to 4094 (0 means untagged: give the trunk port itself a --network for its native VLAN)"
            )));
        }
        let Some(p) = self.ports.get(parent) else {
            return Err(err(
                ErrorCode::NotFound,
                format!("trunk port '{parent}' does not exist; add it first (vswitchctl port add {parent} --type tap)"),
            ));
        };
        if p.spec.kind == PortType::Vlan {
            return Err(inval(format!(
                "'{parent}' is itself a subinterface; stacked VLANs are not supported"
            )));
        }
        if let Some(other) = self.ports.values().find(|q| {
            self.vlan_parent(&q.spec)
                .is_some_and(|(pp, v)| pp.id == p.id && v == vid)
        }) {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!(
                    "VLAN {vid} on '{parent}' is already subinterface '{}'",
                    other.spec.name
                ),
            ));
        }
        if self.ports.contains_key(&spec.name) {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!("port '{}' already exists", spec.name),
            ));
        }
        for (flag, given) in [
            ("--ifname", spec.ifname.is_some()),
            ("--queues", spec.queues.is_some()),
            ("--mtu", spec.mtu.is_some()),
            ("--netns", spec.netns.is_some()),
        ] {
            if given {
                return Err(inval(format!(
                    "a VLAN subinterface has no device of its own: drop {flag} (set it on the trunk port '{parent}')"
                )));
            }
        }
        if let Some(n) = &spec.network {
            if !self.nets.contains_key(n) {
                return Err(self.no_network(n));
            }
        }
        Ok(())
    }

    fn check_port_spec(&self, spec: &PortSpec) -> Result<(), ErrorBody> {
        let inval = |m: String| err(ErrorCode::InvalidArgument, m);
        check_name("port", &spec.name, 15).map_err(inval)?;
        if let Some(i) = &spec.ifname {
            check_name("interface", i, 15).map_err(inval)?;
        }
        if spec.kind == PortType::Afxdp {
            if spec.ifname.is_none() {
                return Err(inval(format!(
                    "an AF_XDP port binds to an existing interface: add --ifname IF (e.g. vswitchctl port add {} --type afxdp --ifname eth1)",
                    spec.name
                )));
            }
            if spec.mtu.is_some() {
                return Err(inval(
                    "an AF_XDP port uses its interface's MTU: drop --mtu and set it with `ip link set IF mtu N`".into(),
                ));
            }
            let workers = self.workers.len() as u16;
            if spec.queues.is_some_and(|q| q < workers) {
                return Err(inval(format!(
                    "an AF_XDP port needs one queue per worker ({workers} here), since a worker can only send through a queue of its own; drop --queues, or start vswitchd with fewer --cores"
                )));
            }
        }
        if spec.kind == PortType::Vlan {
            return self.check_vlan_spec(spec);
        }
        if self.ports.contains_key(&spec.name) {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!(
                    "port '{}' already exists; pick another name or remove it first",
                    spec.name
                ),
            ));
        }
        let ifname = spec.ifname.as_deref().unwrap_or(&spec.name);
        if let Some(other) = self.ports.values().find(|p| {
            p.spec.ifname.as_deref().unwrap_or(&p.spec.name) == ifname && p.spec.netns == spec.netns
        }) {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!(
                    "interface '{ifname}' is already used by port '{}'",
                    other.spec.name
                ),
            ));
        }
        if let Some(n) = &spec.network {
            if !self.nets.contains_key(n) {
                return Err(self.no_network(n));
            }
        }
        let workers = self.workers.len() as u16;
        if let Some(q) = spec.queues {
            if q == 0 || q > workers {
                return Err(inval(format!(
                    "--queues {q} is out of range: this daemon has {workers} worker(s) and each queue needs one; use 1 to {workers}, or start vswitchd with more --cores"
                )));
            }
        }
        if let Some(m) = spec.mtu {
            if !(68..=MAX_MTU).contains(&m) {
                return Err(inval(format!("--mtu {m} is out of range; use 68 to {MAX_MTU} (a frame must fit one {MAX_FRAME}-byte buffer)")));
            }
        }
        if let Some(ns) = &spec.netns {
            if ns.is_empty() {
                return Err(inval(
                    "--netns is empty; give a namespace name (ip netns list) or path".into(),
                ));
            }
            let p = netns::path_of(ns);
            if !p.exists() {
                return Err(err(
                    ErrorCode::NotFound,
                    format!("network namespace '{ns}' does not exist ({} is missing); create it with: ip netns add {ns}", p.display()),
                ));
            }
        }
        Ok(())
    }

    /// Adds a port; with `persist` a failure leaves nothing behind.
    fn port_add(&mut self, spec: PortSpec, persist: bool) -> Result<(), ErrorBody> {
        if persist {
            self.check_port_spec(&spec)?;
        } else if self.ports.contains_key(&spec.name) {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!("duplicate port '{}' in state", spec.name),
            ));
        }
        let used: Vec<PortId> = self
            .ports
            .values()
            .map(|p| p.id)
            .chain(self.tunnel_ids.values().copied())
            .collect();
        let id = (0..MAX_PORTS as PortId)
            .find(|i| !used.contains(i))
            .ok_or_else(|| {
                err(
                    ErrorCode::Conflict,
                    format!("too many ports (most {MAX_PORTS}); remove one first"),
                )
            })?;
        let workers = self.workers.len() as u16;
        let queues = spec.queues.unwrap_or(workers).clamp(1, workers.max(1));
        if spec.kind == PortType::Tap && self.opts.tap_offload {
            // Each worker's queue of a TAP with offloads keeps one large buffer ready for the
            // next super-frame; without it, super-frames the kernel was promised it could send
            // would be cut short. Keep a reserve for frames in flight.
            let taps = self
                .ports
                .values()
                .filter(|p| p.spec.kind == PortType::Tap)
                .count()
                + 1;
            let need = taps * usize::from(workers.max(1)) + LARGE_RESERVE;
            let have = self.pool.large_capacity() as usize;
            if need > have {
                return Err(err(
                    ErrorCode::Conflict,
                    format!(
                        "{taps} TAP ports with offloads on {workers} workers need {need} large \
                         buffers, the daemon has {have}; restart vswitchd with --large-buffers \
                         {need} or more, or with --tap-offload off"
                    ),
                ));
            }
        }
        let ifname = spec.ifname.clone().unwrap_or_else(|| spec.name.clone());
        let ns_path = spec.netns.as_deref().map(netns::path_of);
        let opened = if spec.kind == PortType::Vlan {
            // A subinterface has no device: it sends and receives through its trunk.
            Err(std::io::Error::other("subinterface"))
        } else {
            // A port in an overlay network gets the overlay's MTU unless it names one, so its
            // frames fit in VXLAN on the uplink (as Docker sets a container's MTU on overlays).
            let in_overlay = spec
                .network
                .as_ref()
                .and_then(|n| self.nets.get(n))
                .is_some_and(|n| n.spec.vni.is_some());
            let mtu = spec.mtu.or(in_overlay.then(|| self.overlay_mtu()));
            match spec.kind {
                PortType::Afxdp => {
                    // One queue per worker is the default; an interface with fewer (a veth has
                    // one) gets as many as it has, and the other workers hand their transmits
                    // to a queue's owner.
                    let name = ifname.clone();
                    let have = netns::run_in(ns_path.as_deref(), move || {
                        dataplane::sys::ethtool::rx_queues(&name)
                    })
                    .unwrap_or(1);
                    let q = if spec.queues.is_some() {
                        queues
                    } else {
                        queues.min(have as u16).max(1)
                    };
                    device::open_afxdp(&ifname, ns_path.as_deref(), q, &self.pool)
                }
                _ => TapDevice::open(
                    &ifname,
                    ns_path.as_deref(),
                    queues,
                    mtu,
                    self.opts.tap_offload,
                )
                .map(device::Device::Tap),
            }
        };
        let (device, error) = match opened {
            Ok(d) => (Some(d), None),
            Err(_) if spec.kind == PortType::Vlan => (None, None),
            Err(e) if persist => {
                let what = if spec.kind == PortType::Afxdp {
                    "bind AF_XDP sockets to"
                } else {
                    "create TAP device"
                };
                return Err(err(
                    ErrorCode::System,
                    format!("cannot {what} '{ifname}': {e}"),
                ));
            }
            Err(e) => {
                tracing::error!(port = %spec.name, error = %e, "port is down");
                (None, Some(e.to_string()))
            }
        };
        let name = spec.name.clone();
        let base = self.port_counters(id);
        let queues = device
            .as_ref()
            .map_or(queues, |d| d.queue_count().max(1) as u16);
        self.ports.insert(
            name.clone(),
            PortState {
                spec,
                id,
                device,
                queues,
                error,
                base,
            },
        );
        if persist {
            if let Err(e) = self.persist() {
                if let Some(p) = self.ports.remove(&name) {
                    if let Some(d) = p.device.filter(|d| d.created()) {
                        let _ = d.destroy();
                    }
                }
                return Err(e);
            }
        }
        if let Some(p) = self.ports.get_mut(&name) {
            if let Some(d) = &mut p.device {
                tracing::info!(port = %name, device = d.name(), created = d.created(), mode = d.mode(), queues, "port attached");
                let owned = d.queue_count().max(1);
                for w in self.workers.iter() {
                    match d.queue_for(w.id as usize) {
                        Ok(None) => {
                            // No queue of its own here: hand transmits to the queue's owner.
                            let Some(owner) = self.workers.get(w.id as usize % owned) else {
                                continue;
                            };
                            let (tx, rx) = dataplane::ring::ring(self.pool.clone(), 1024);
                            owner.send(Command::Inbound { port: id, ring: rx });
                            let remote =
                                RemoteTx::new(tx, Some((owner.shared.clone(), owner.waker())));
                            w.send(Command::Attach {
                                port: id,
                                io: PortIo::Remote(remote),
                                rx: false,
                            });
                        }
                        Ok(Some(io)) => {
                            w.send(Command::Attach {
                                port: id,
                                io,
                                rx: w.id < queues,
                            });
                        }
                        Err(e) => {
                            tracing::error!(port = %name, worker = w.id, error = %e, "cannot hand queue to worker")
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn port_rm(&mut self, name: &str) -> Result<(), ErrorBody> {
        if self.uplink.as_ref().is_some_and(|u| u.port == name) {
            return Err(err(
                ErrorCode::Conflict,
                format!("port '{name}' is the uplink; set the uplink on another port first"),
            ));
        }
        let Some(id) = self.ports.get(name).map(|p| p.id) else {
            return Err(self.no_port(name));
        };
        let subs: Vec<&str> = self
            .ports
            .values()
            .filter(|q| self.vlan_parent(&q.spec).is_some_and(|(pp, _)| pp.id == id))
            .map(|q| q.spec.name.as_str())
            .collect();
        if !subs.is_empty() {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "port '{name}' is the trunk of subinterfaces {}; remove them first (vswitchctl port rm NAME)",
                    subs.join(", ")
                ),
            ));
        }
        let Some(p) = self.ports.remove(name) else {
            return Err(self.no_port(name));
        };
        let old_fdb = self.fdb.clone();
        self.fdb.retain(|f| f.port.as_deref() != Some(name));
        if let Err(e) = self.persist() {
            self.ports.insert(name.to_string(), p);
            self.fdb = old_fdb;
            return Err(e);
        }
        // Stop forwarding to it first, then take the queues away, then delete the device.
        self.publish();
        self.captures_port_removed(p.id, name);
        let seqs: Vec<u64> = self
            .workers
            .iter_mut()
            .map(|w| w.send(Command::Detach(p.id)))
            .collect();
        for (w, seq) in self.workers.iter().zip(seqs) {
            if !w.wait(seq, WORKER_WAIT) {
                tracing::error!(worker = w.id, "worker did not release the port in time");
            }
        }
        if let Some(d) = p.device {
            let dev = d.name().to_string();
            if let Err(e) = d.destroy() {
                tracing::warn!(port = %name, device = %dev, error = %e, "cannot clear persistence of device");
            }
        }
        tracing::info!(port = %name, "port removed");
        Ok(())
    }

    fn port_info(&self, name: &str) -> Result<PortInfo, ErrorBody> {
        self.ports.get(name).ok_or_else(|| self.no_port(name))?;
        let dump = self.dump_fdb(None).unwrap_or_default();
        self.port_info_from(name, &dump)
    }

    fn port_info_from(&self, name: &str, dump: &[FdbEntry]) -> Result<PortInfo, ErrorBody> {
        let p = self.ports.get(name).ok_or_else(|| self.no_port(name))?;
        let learned = dump
            .iter()
            .filter(|e| e.kind == "learned" && e.port.as_deref() == Some(name))
            .count() as u64;
        // A subinterface shows its trunk's device, MTU and state.
        let dev_port = self.vlan_parent(&p.spec).map_or(p, |(parent, _)| parent);
        let device = dev_port
            .spec
            .ifname
            .clone()
            .unwrap_or_else(|| dev_port.spec.name.clone());
        let effective_mtu = match &dev_port.device {
            Some(d) => d.mtu().unwrap_or(dev_port.spec.mtu.unwrap_or(DEFAULT_MTU)),
            None => dev_port.spec.mtu.unwrap_or(DEFAULT_MTU),
        };
        let state = match (&dev_port.device, &dev_port.error) {
            (Some(_), Some(e)) => format!("down: {e}"),
            (Some(d), None) => match d.mode() {
                Some(m) => format!("up ({m})"),
                None => "up".to_string(),
            },
            (None, Some(e)) => format!("down: {e}"),
            (None, None) => "down".to_string(),
        };
        let queue_workers = match &p.device {
            Some(_) => (0..p.queues)
                .map(|q| q % self.workers.len().max(1) as u16)
                .collect(),
            None => Vec::new(),
        };
        Ok(PortInfo {
            spec: p.spec.clone(),
            id: p.id,
            device,
            state,
            queue_count: p.device.as_ref().map_or(0, |d| d.queue_count() as u16),
            queue_workers,
            effective_mtu,
            learned_macs: learned,
            counters: self.port_counters_since(p),
        })
    }

    fn dump_fdb(&self, net: Option<NetId>) -> Result<Vec<FdbEntry>, ErrorBody> {
        let net_names: HashMap<NetId, &str> = self
            .nets
            .values()
            .map(|n| (n.id, n.spec.name.as_str()))
            .collect();
        let port_names: HashMap<PortId, &str> = self
            .ports
            .values()
            .map(|p| (p.id, p.spec.name.as_str()))
            .collect();
        // Each worker learns on its own; merge, static first, then the freshest sighting.
        let mut merged: BTreeMap<(NetId, [u8; 6]), (PortId, bool, u64)> = BTreeMap::new();
        for w in &self.workers {
            let (tx, rx) = crossbeam::channel::bounded(1);
            w.send(Command::Request(WorkerRequest::FdbDump { net, reply: tx }));
            let (entries, now) = rx.recv_timeout(WORKER_WAIT).map_err(|_| {
                err(
                    ErrorCode::Internal,
                    format!("worker {} did not answer; see the daemon log", w.id),
                )
            })?;
            for e in entries {
                let age = now.saturating_sub(e.last_seen);
                let slot = merged
                    .entry((e.net, e.mac))
                    .or_insert((e.port, e.is_static, age));
                if e.is_static || (!slot.1 && age < slot.2) {
                    *slot = (e.port, e.is_static, age);
                }
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|((n, mac), (port, is_static, age))| {
                Some(FdbEntry {
                    network: net_names.get(&n)?.to_string(),
                    mac: format_mac(&mac),
                    port: port_names.get(&port).map(|s| s.to_string()),
                    vtep: self.tunnel_of(port).map(|(_, ip)| ip.to_string()),
                    kind: if is_static { "static" } else { "learned" }.to_string(),
                    age_secs: (!is_static).then_some(age),
                })
            })
            .collect())
    }

    fn fdb_ls(&self, network: Option<&str>) -> Result<Vec<FdbEntry>, ErrorBody> {
        let net = match network {
            Some(n) => Some(self.nets.get(n).ok_or_else(|| self.no_network(n))?.id),
            None => None,
        };
        self.dump_fdb(net)
    }

    fn fdb_add(&mut self, mut f: StaticFdb, persist: bool) -> Result<(), ErrorBody> {
        let mac = parse_mac(&f.mac).map_err(|m| err(ErrorCode::InvalidArgument, m))?;
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!(
                    "{} is a multicast or zero MAC; a static entry needs a unicast MAC",
                    f.mac
                ),
            ));
        }
        f.mac = format_mac(&mac);
        if !self.nets.contains_key(&f.network) {
            return Err(self.no_network(&f.network));
        }
        match (&f.port, &f.vtep) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(err(
                    ErrorCode::InvalidArgument,
                    "give exactly one of --port or --vtep",
                ));
            }
            (None, Some(v)) => {
                if self
                    .nets
                    .get(&f.network)
                    .is_some_and(|n| n.spec.vni.is_none())
                {
                    return Err(err(
                        ErrorCode::Conflict,
                        format!("network '{}' is not an overlay network; --vtep needs one made with --vni", f.network),
                    ));
                }
                let ip: std::net::Ipv4Addr = v.parse().map_err(|_| {
                    err(
                        ErrorCode::InvalidArgument,
                        format!("VTEP '{v}' is not an IPv4 address"),
                    )
                })?;
                f.vtep = Some(ip.to_string());
            }
            (Some(p), None) => {
                let port = self.ports.get(p).ok_or_else(|| self.no_port(p))?;
                if port.spec.network.as_deref() != Some(f.network.as_str()) {
                    return Err(err(
                        ErrorCode::Conflict,
                        format!("port '{p}' is not in network '{}'", f.network),
                    ));
                }
            }
        }
        if self
            .fdb
            .iter()
            .any(|e| e.network == f.network && e.mac == f.mac)
        {
            return Err(err(
                ErrorCode::AlreadyExists,
                format!("a static entry for {} in network '{}' exists; remove it first with vswitchctl fdb rm", f.mac, f.network),
            ));
        }
        self.fdb.push(f);
        if persist {
            if let Err(e) = self.persist() {
                self.fdb.pop();
                return Err(e);
            }
        }
        Ok(())
    }

    fn fdb_rm(&mut self, a: FdbRmArgs) -> Result<(), ErrorBody> {
        let mac = parse_mac(&a.mac).map_err(|m| err(ErrorCode::InvalidArgument, m))?;
        let net = self
            .nets
            .get(&a.network)
            .ok_or_else(|| self.no_network(&a.network))?
            .id;
        let text = format_mac(&mac);
        if let Some(i) = self
            .fdb
            .iter()
            .position(|e| e.network == a.network && e.mac == text)
        {
            let old = self.fdb.remove(i);
            if let Err(e) = self.persist() {
                self.fdb.insert(i, old);
                return Err(e);
            }
            self.publish();
            return Ok(());
        }
        let known = self.dump_fdb(Some(net))?.iter().any(|e| e.mac == text);
        if !known {
            return Err(err(
                ErrorCode::NotFound,
                format!(
                    "MAC {text} is not in network '{}'s table; see vswitchctl fdb ls",
                    a.network
                ),
            ));
        }
        for w in &self.workers {
            w.send(Command::Request(WorkerRequest::FdbRemove { net, mac }));
        }
        Ok(())
    }

    fn stats(&self, port: Option<&str>) -> Result<StatsInfo, ErrorBody> {
        let mut ports: Vec<&PortState> = match port {
            Some(p) => vec![self.ports.get(p).ok_or_else(|| self.no_port(p))?],
            None => self.ports.values().collect(),
        };
        ports.sort_by_key(|p| p.id);
        let mut drops = BTreeMap::new();
        let mut workers = Vec::new();
        for w in &self.workers {
            let mut counters = BTreeMap::new();
            for (i, name) in crate::counters::drop_counters() {
                let v = w.stats.pipeline.at(i).get();
                if v > 0 {
                    counters.insert(name.to_string(), v);
                    *drops.entry(name.to_string()).or_insert(0) += v;
                }
            }
            for e in Event::ALL {
                let v = w.stats.pipeline.at(event_index(*e)).get();
                if v > 0 {
                    counters.insert(e.name().to_string(), v);
                }
            }
            for e in WorkerEvent::ALL {
                let v = w.stats.event(*e).get();
                if v > 0 {
                    counters.insert(e.name().to_string(), v);
                }
            }
            // Frames this worker moved, over all its queues (`vswitchctl top` rates them).
            let (rx, tx) = w.stats.ports.iter().fold((0u64, 0u64), |(r, t), p| {
                (
                    r.wrapping_add(p.rx_packets.get()),
                    t.wrapping_add(p.tx_packets.get()),
                )
            });
            for (name, v) in [("rx_packets", rx), ("tx_packets", tx)] {
                if v > 0 {
                    counters.insert(name.to_string(), v);
                }
            }
            workers.push(WorkerStats { id: w.id, counters });
        }
        let port_stats: Vec<PortStats> = ports
            .iter()
            .map(|p| PortStats {
                name: p.spec.name.clone(),
                counters: self.port_counters_since(p),
            })
            .collect();
        for (k, v) in [
            (
                "tx_dropped",
                port_stats
                    .iter()
                    .map(|p| p.counters.tx_dropped)
                    .sum::<u64>(),
            ),
            (
                "rx_errors",
                port_stats.iter().map(|p| p.counters.rx_errors).sum::<u64>(),
            ),
            (
                "tx_offload_dropped",
                port_stats
                    .iter()
                    .map(|p| p.counters.tx_offload_dropped)
                    .sum::<u64>(),
            ),
            (
                "rx_ring_full",
                port_stats.iter().map(|p| p.counters.rx_ring_full).sum(),
            ),
            (
                "rx_fill_empty",
                port_stats.iter().map(|p| p.counters.rx_fill_empty).sum(),
            ),
            (
                "rx_kernel_dropped",
                port_stats
                    .iter()
                    .map(|p| p.counters.rx_kernel_dropped)
                    .sum(),
            ),
        ] {
            if v > 0 {
                drops.insert(k.to_string(), v);
            }
        }
        Ok(StatsInfo {
            ports: port_stats,
            workers,
            drops,
        })
    }

    /// Creates what the document has and the daemon lacks; identical objects are left alone and a
    /// conflicting one fails the whole import before anything changes.
    fn import(&mut self, doc: ConfigDoc) -> Result<ImportSummary, ErrorBody> {
        if doc.version != CONFIG_VERSION {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!(
                    "document version {} is not supported (expected {CONFIG_VERSION})",
                    doc.version
                ),
            ));
        }
        let mut summary = ImportSummary::default();
        let mut new_nets = Vec::new();
        for n in &doc.networks {
            match self.nets.get(&n.name) {
                Some(have) if have.spec == *n => summary.unchanged += 1,
                Some(_) => {
                    return Err(err(ErrorCode::Conflict, format!("network '{}' exists with other settings; remove it or edit the document", n.name)));
                }
                None => {
                    Self::check_network_spec(n)?;
                    if new_nets.iter().any(|x: &&NetworkSpec| x.name == n.name) {
                        return Err(err(
                            ErrorCode::InvalidArgument,
                            format!("network '{}' appears twice in the document", n.name),
                        ));
                    }
                    new_nets.push(n);
                }
            }
        }
        let mut new_ports = Vec::new();
        for p in &doc.ports {
            match self.ports.get(&p.name) {
                Some(have) if have.spec == *p => summary.unchanged += 1,
                Some(_) => {
                    return Err(err(
                        ErrorCode::Conflict,
                        format!(
                            "port '{}' exists with other settings; remove it or edit the document",
                            p.name
                        ),
                    ));
                }
                None => {
                    if let Some(n) = &p.network {
                        if !self.nets.contains_key(n) && !new_nets.iter().any(|x| &x.name == n) {
                            return Err(self.no_network(n));
                        }
                    }
                    if new_ports.iter().any(|x: &&PortSpec| x.name == p.name) {
                        return Err(err(
                            ErrorCode::InvalidArgument,
                            format!("port '{}' appears twice in the document", p.name),
                        ));
                    }
                    new_ports.push(p);
                }
            }
        }
        // Everything below was checked against the document and the running configuration;
        // what can still fail is the system (a device that cannot be made, a full disk). Then
        // the import stops there, what it created stays (persisted and published), and the
        // error says how far it got.
        let applied = (|| -> Result<(), ErrorBody> {
            for n in new_nets {
                self.network_create(n.clone(), true)?;
                summary.created += 1;
            }
            new_ports.sort_by_key(|p| p.kind == PortType::Vlan);
            for p in new_ports {
                self.port_add(p.clone(), true)?;
                summary.created += 1;
            }
            for f in &doc.fdb {
                let mac = parse_mac(&f.mac)
                    .map(|m| format_mac(&m))
                    .unwrap_or_default();
                if self.fdb.iter().any(|e| {
                    e.network == f.network && e.mac == mac && e.port == f.port && e.vtep == f.vtep
                }) {
                    summary.unchanged += 1;
                    continue;
                }
                self.fdb_add(f.clone(), true)?;
                summary.created += 1;
            }
            if let Some(u) = &doc.uplink {
                let same = self.uplink.as_ref().is_some_and(|have| {
                    have.port == u.port
                        && have.ip == u.ip
                        && have.gateway == u.gateway
                        && have.vxlan_port == u.vxlan_port
                });
                if same {
                    summary.unchanged += 1;
                } else {
                    self.uplink_set(u.clone(), true)?;
                    summary.created += 1;
                }
            }
            for p in &doc.peers {
                if self
                    .peers
                    .iter()
                    .any(|q| q.network == p.network && q.vtep == p.vtep)
                {
                    summary.unchanged += 1;
                    continue;
                }
                self.peer_add(p.clone(), true)?;
                summary.created += 1;
            }
            Ok(())
        })();
        self.publish();
        match applied {
            Ok(()) => Ok(summary),
            Err(e) => Err(ErrorBody::new(
                e.code,
                format!(
                    "{} (import stopped there; {} object(s) created before it were kept)",
                    e.message, summary.created
                ),
            )),
        }
    }

    /// Stops the workers and removes the devices this daemon holds; the state stays on disk.
    pub fn shutdown(&mut self) {
        self.stop(true);
    }

    /// Stops the workers; with `remove_devices` removes the devices the daemon holds (a clean
    /// stop), without it leaves them for the next daemon (an upgrade: persistent TAPs keep the
    /// containers' interfaces, addresses and routes).
    pub fn stop(&mut self, remove_devices: bool) {
        if let Some((_, mut server)) = self.metrics.take() {
            server.stop();
        }
        for w in self.workers.iter_mut() {
            w.stop();
        }
        if !remove_devices {
            for (_, p) in std::mem::take(&mut self.ports) {
                // Closing the queues (the TAP devices persist); XDP links go with the process.
                drop(p.device);
            }
            tracing::info!(
                "stopped for an upgrade: devices kept, configuration kept in {}",
                self.opts.state_dir.display()
            );
            return;
        }
        for (name, p) in std::mem::take(&mut self.ports) {
            if let Some(d) = p.device {
                if let Err(e) = d.destroy() {
                    tracing::warn!(port = %name, error = %e, "cannot remove device");
                }
            }
        }
        tracing::info!(
            "stopped; configuration kept in {}",
            self.opts.state_dir.display()
        );
    }

    /// Tells the daemon which control connection the next requests come from.
    pub fn set_connection(&mut self, conn: usize) {
        self.captures.conn = conn;
    }

    /// A control connection closed: what it started for itself (captures) ends.
    pub fn connection_closed(&mut self, conn: usize) {
        self.captures_conn_closed(conn);
    }

    /// Socket settings.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The pool (for status and tests).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

pub use control::text::parse_cidr;

/// The path helper used by the daemon and the demo for the state file.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn opts(dir: &Path) -> Options {
        Options {
            socket: dir.join("s.sock"),
            state_dir: dir.to_path_buf(),
            cores: None,
            group: None,
            buffers: 256,
            fdb_size: 1024,
            large_buffers: 128,
            tap_offload: true,
            metrics: None,
        }
    }

    fn scratch(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("vswitchd-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn call(d: &mut Daemon, cmd: &str, args: Value) -> Result<Value, ErrorBody> {
        d.handle(&Request {
            id: 1,
            cmd: cmd.into(),
            args,
        })
    }

    #[test]
    fn networks_are_created_listed_refused_twice_and_removed() {
        let dir = scratch("net");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        let info = call(
            &mut d,
            cmd::NETWORK_CREATE,
            json!({"name": "blue", "subnet": "10.1.0.0/24", "aging_secs": 60}),
        )
        .unwrap();
        assert_eq!(info["effective_aging_secs"], 60);
        assert_eq!(info["effective_mac_limit"], config::DEFAULT_NET_MAC_LIMIT);
        let e = call(&mut d, cmd::NETWORK_CREATE, json!({"name": "blue"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::AlreadyExists);
        let e = call(&mut d, cmd::NETWORK_CREATE, json!({"name": "bad name"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = call(
            &mut d,
            cmd::NETWORK_CREATE,
            json!({"name": "g", "subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}),
        )
        .unwrap_err();
        assert!(e.message.contains("outside subnet"), "{e}");
        let e = call(
            &mut d,
            cmd::NETWORK_CREATE,
            json!({"name": "o", "vni": 5, "encrypted": true}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        let e = call(
            &mut d,
            cmd::NETWORK_CREATE,
            json!({"name": "o", "vni": 1 << 24}),
        )
        .unwrap_err();
        assert!(e.message.contains("out of range"), "{e}");
        assert_eq!(
            call(&mut d, cmd::NETWORK_LS, Value::Null)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        call(&mut d, cmd::NETWORK_RM, json!({"name": "blue"})).unwrap();
        let e = call(&mut d, cmd::NETWORK_INSPECT, json!({"name": "blue"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("vswitchctl network create blue"), "{e}");
        d.shutdown();
    }

    #[test]
    fn tap_ports_with_offloads_need_a_spare_large_buffer_per_worker() {
        let dir = scratch("large");
        let o = Options {
            large_buffers: 10,
            ..opts(&dir.0)
        };
        let mut d = Daemon::start(o).unwrap();
        let e = call(&mut d, cmd::PORT_ADD, json!({"name": "p", "type": "tap"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(
            e.message.contains("--large-buffers") && e.message.contains("--tap-offload off"),
            "{e}"
        );
        assert!(call(&mut d, cmd::PORT_LS, Value::Null)
            .unwrap()
            .as_array()
            .is_some_and(|a| a.is_empty()));
    }

    #[test]
    fn capture_refuses_bad_input_with_a_way_to_mend_it() {
        let dir = scratch("cap");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        for (args, hint) in [
            (json!({"port": "p1", "snaplen": 0}), "give 1 to 65535"),
            (json!({"port": "p1", "snaplen": 70000}), "give 1 to 65535"),
            (json!({"port": "p1", "count": 0}), "positive count"),
            (json!({"port": "p1", "ring": 0}), "snapshots"),
            (json!({"port": "p1"}), "does not exist"),
            (
                json!({"port": "p1", "direction": "up"}),
                "invalid arguments",
            ),
        ] {
            let e = call(&mut d, cmd::CAPTURE_START, args.clone()).unwrap_err();
            assert!(e.message.contains(hint), "{args}: {e}");
        }
        let e = call(&mut d, cmd::CAPTURE_READ, json!({"id": 7})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        let e = call(&mut d, cmd::CAPTURE_STOP, json!({"id": 7})).unwrap_err();
        assert!(e.message.contains("start a new one"), "{e}");
        d.shutdown();
    }

    #[test]
    fn bad_arguments_and_unknown_commands_are_clear_errors() {
        let dir = scratch("args");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        let e = call(&mut d, "network.explode", Value::Null).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        assert!(e.message.contains("network.create"));
        let e = call(
            &mut d,
            cmd::NETWORK_CREATE,
            json!({"name": "x", "colour": "red"}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("colour"), "{e}");
        let e = call(&mut d, cmd::NETWORK_CREATE, json!(42)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = call(
            &mut d,
            cmd::PORT_ADD,
            json!({"name": "p", "type": "tap", "network": "nope"}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        let e = call(&mut d, cmd::PORT_ADD, json!({"name": "p", "type": "afxdp"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("--ifname"), "{e}");
        let e = call(
            &mut d,
            cmd::PORT_ADD,
            json!({"name": "p", "type": "tap", "mtu": 9000}),
        )
        .unwrap_err();
        assert!(e.message.contains("--mtu 9000"), "{e}");
        let e = call(
            &mut d,
            cmd::PORT_ADD,
            json!({"name": "p", "type": "tap", "queues": 99}),
        )
        .unwrap_err();
        assert!(e.message.contains("--queues 99"), "{e}");
        call(&mut d, cmd::NETWORK_CREATE, json!({"name": "blue"})).unwrap();
        let e = call(
            &mut d,
            cmd::FDB_ADD,
            json!({"network": "blue", "mac": "01:00:5e:00:00:01", "port": "p"}),
        )
        .unwrap_err();
        assert!(e.message.contains("multicast"), "{e}");
        let e = call(
            &mut d,
            cmd::FDB_RM,
            json!({"network": "blue", "mac": "02:00:00:00:00:01"}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        // The daemon still answers.
        assert!(call(&mut d, cmd::STATUS, Value::Null).is_ok());
        d.shutdown();
    }

    #[test]
    fn state_survives_a_restart_and_import_refuses_conflicts_before_changing_anything() {
        let dir = scratch("state");
        {
            let mut d = Daemon::start(opts(&dir.0)).unwrap();
            call(
                &mut d,
                cmd::NETWORK_CREATE,
                json!({"name": "blue", "mac_limit": 10}),
            )
            .unwrap();
            call(&mut d, cmd::NETWORK_CREATE, json!({"name": "red"})).unwrap();
            d.shutdown();
        }
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        let doc: ConfigDoc =
            serde_json::from_value(call(&mut d, cmd::CONFIG_EXPORT, Value::Null).unwrap()).unwrap();
        assert_eq!(doc.networks.len(), 2);
        assert_eq!(doc.networks[0].mac_limit, Some(10));

        let mut conflicting = doc.clone();
        conflicting.networks.push(NetworkSpec {
            learn_remote: None,
            name: "green".into(),
            subnet: None,
            gateway: None,
            vni: None,
            encrypted: false,
            mac_limit: None,
            aging_secs: None,
        });
        conflicting.networks[0].mac_limit = Some(11);
        let e = call(
            &mut d,
            cmd::CONFIG_IMPORT,
            serde_json::to_value(&conflicting).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(
            call(&mut d, cmd::NETWORK_INSPECT, json!({"name": "green"})).is_err(),
            "import was not atomic"
        );

        conflicting.networks[0].mac_limit = Some(10);
        let s: ImportSummary = serde_json::from_value(
            call(
                &mut d,
                cmd::CONFIG_IMPORT,
                serde_json::to_value(&conflicting).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!((s.created, s.unchanged), (1, 2));
        d.shutdown();
    }

    #[test]
    fn a_corrupt_state_file_stops_the_start_with_a_clear_message() {
        let dir = scratch("corrupt");
        std::fs::write(dir.0.join("config.json"), b"{not json").unwrap();
        let e = Daemon::start(opts(&dir.0)).err().unwrap();
        assert!(
            e.contains("is not a valid configuration") && e.contains("move it away"),
            "{e}"
        );
    }
}
