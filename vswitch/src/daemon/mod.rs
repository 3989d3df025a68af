//! `vswitchd`: owns the configuration, the devices and the workers, and answers the control
//! socket. Every accepted change is persisted before it is acknowledged, then published to the
//! workers as a new snapshot.
//!
//! # Desired state and the one commit path
//!
//! The daemon holds two things side by side:
//! - a [`Desired`] value (`desired.rs`): the whole configuration as specs, plus the ids allocated
//!   to them that must stay stable (network, port and tunnel ids). It is small and cloned per
//!   command; it only ever changes by being replaced whole;
//! - the runtime beside it: each port's device, queues, error and counter base
//!   ([`PortRuntime`]), the workers, traces, captures, rates.
//!
//! A command that changes the configuration is a validation function over [`Desired`]: it takes
//! the current one and its arguments and returns the next one, or the error the operator sees
//! (`Desired::create_network`, `add_port`, `remove_port`, `add_fdb`, `set_uplink`, `add_peer`,
//! ...). It touches no device, worker or file, so a refused command has nothing to undo. The
//! handler then hands the result to [`Daemon::commit`] (`commit.rs`), which
//! 1. reconciles devices: opens those of ports that are new (the uplink's first, so overlay
//!    ports get the MTU it implies), keeps those of unchanged ports, and notes those of removed
//!    ports; if one cannot be opened, it closes what it opened and returns the error: nothing
//!    changed;
//! 2. persists the new state atomically (`os::write_atomic`); if that fails, it closes what step
//!    1 opened (removing the devices it created) and returns the error: nothing changed;
//! 3. swaps the new state in, hands the new ports' queues to the workers, compiles the snapshot
//!    (`Desired::compile`, each resource file adding its share) and publishes it, and only then
//!    takes the removed ports' queues back and destroys their devices.
//!
//! Rollback is therefore never written per handler: until step 2 succeeds the daemon's state is
//! the old value, untouched. `config import` validates the whole document into one new
//! [`Desired`] and commits once, so an import either happens whole or not at all (a device that
//! cannot be made or a full disk included). The start-up restore validates each object against
//! what was restored before it, leaves out what fails (keeping a copy of the document) and
//! commits once without rewriting the file, bringing ports whose device cannot be opened up down
//! ([`commit::Mode::Restore`]). A distributed store would feed the same path.
//!
//! # Adding a feature's control part
//!
//! One file under `daemon/`, named after the feature, holding: its fields in [`Desired`] (specs
//! and any ids it allocates), its validation functions (`impl Desired { fn ...(&self, args) ->
//! Result<Desired, ErrorBody> }`), its share of snapshot compilation (`fn compile_...(&self,
//! snap)`, called from `Desired::compile`), and thin handlers that validate, commit and answer.
//! Its objects then persist, export, import, restore and roll back with everything else. A
//! feature that owns devices adds its open/attach/release steps to the commit path as ports do
//! (`Daemon::open_port`, `attach_port`, `release_port`).

mod capture;
mod cluster;
mod commit;
mod desired;
mod device;
mod fdb;
mod journal;
mod keys;
mod locate;
mod metrics;
mod names;
mod nat;
mod networks;
pub mod os;
mod overlay;
mod ports;
pub mod server;
mod service;
mod state;
mod stats;
mod trace;

use crate::bridge::LearnSync;
use crate::config::{self, NetConf, NetId, PortConf, Snapshot};
use crate::pipeline::{Request as WorkerRequest, Switch};
use commit::Mode;
use control::proto::*;
use control::text::{check_name, format_mac, parse_mac};
use dataplane::counters::WorkerEvent;
use dataplane::pool::{Pool, MAX_FRAME};
use dataplane::port::remote::RemoteTx;
use dataplane::port::tap::TapDevice;
use dataplane::port::{PortId, PortIo, MAX_PORTS};
use dataplane::sys::netns;
use dataplane::worker::{self, Command, Worker, WorkerHandle};
use desired::{no_network, no_port, Desired, Limits, NetState, PortRuntime, PortState};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// With offloads, ask for UDP tunnel segmentation offload too (`--tap-tunnel-gso`).
    pub tap_tunnel_gso: bool,
    /// With offloads, ask for UDP segmentation offload on ports in no network (`--tap-uso`).
    pub tap_uso: bool,
    /// With offloads, merge the TCP segments of a transmit burst (`--tap-gro`).
    pub tap_gro: bool,
    /// Write TAP transmit bursts through io_uring (`--tap-uring`).
    pub tap_uring: bool,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// The cluster store (`--store`).
    pub store: Option<crate::store::agent::StoreConfig>,
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
        c.tx_uso_merged = c.tx_uso_merged.wrapping_add(p.tx_uso_merged.get());
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
        tx_uso_merged: now.tx_uso_merged.wrapping_sub(base.tx_uso_merged),
        rx_csum_completed: now.rx_csum_completed.wrapping_sub(base.rx_csum_completed),
        ..PortCounters::default()
    }
}

fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, msg)
}

/// The daemon's state.
pub struct Daemon {
    opts: Options,
    started: Instant,
    pool: Arc<Pool>,
    workers: Vec<WorkerHandle<Switch>>,
    /// The configuration, as last committed (replaced whole by [`Daemon::commit`], never
    /// changed in place).
    desired: Desired,
    /// Each configured port's device, queues, error and counter base, by port name: the same
    /// names as `desired.ports` between commits.
    runtime: BTreeMap<String, PortRuntime>,
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
    /// ESP security associations, kept across snapshots (`keys.rs`).
    sas: keys::SaCache,
    /// Neighbours inside the networks, shared by the workers' routers (one table for the
    /// daemon's life, in every snapshot).
    inside: Arc<crate::nat::inside::InsideNeigh>,
    /// The cluster store agent (`--store`; started by the control loop).
    store: Option<crate::store::agent::Handle>,
    /// Set around a commit of the store's share only: its state file write waits for the
    /// next tick ([`Daemon::flush_state`]).
    defer_persist: bool,
    /// The committed state is not yet in the state file.
    persist_due: bool,
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
        let mut handoffs =
            crate::nat::handoff::build(&pool, cores.len(), crate::nat::handoff::RING).into_iter();
        for (i, core) in cores.iter().enumerate() {
            let mut switch = Switch::new(pool.clone(), opts.fdb_size);
            switch.set_trace(trace.clone());
            if cores.len() > 1 {
                switch.router.handoff = handoffs.next();
            }
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
        // NAT's hand-off rings wake their owner: every worker learns how, now that all run.
        if workers.len() > 1 {
            let wake: Vec<_> = workers
                .iter()
                .map(|w| (w.shared.clone(), w.waker()))
                .collect();
            for w in &workers {
                w.send(Command::Request(WorkerRequest::NatPeers(wake.clone())));
            }
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
            desired: Desired::default(),
            runtime: BTreeMap::new(),
            trace,
            trace_log: Vec::new(),
            gen: 0,
            rate: None,
            pps: (0, 0),
            worker_pps: vec![0; n],
            worker_rx_last: vec![0; n],
            metrics,
            captures: capture::Captures::default(),
            sas: keys::SaCache::default(),
            inside: Arc::default(),
            store: None,
            defer_persist: false,
            persist_due: false,
        };
        d.restore()?;
        Ok(d)
    }

    /// What validation needs to know about this daemon.
    fn limits(&self) -> Limits {
        Limits {
            workers: self.workers.len() as u16,
            large_capacity: self.pool.large_capacity() as usize,
            tap_offload: self.opts.tap_offload,
        }
    }

    /// Publishes a new snapshot and waits until every worker applied it.
    fn publish(&mut self) {
        self.gen += 1;
        self.refresh_metrics();
        let mut snap = self.desired.compile(self.gen, self.uplink_mtu());
        if let Some(u) = snap.uplink.as_mut() {
            u.tunnel_gso = self.uplink_tunnel_gso();
            u.uso = self.uplink_uso();
        }
        snap.esp = self.esp_ring();
        snap.inside = self.inside.clone();
        snap.workers = u16::try_from(self.workers.len()).unwrap_or(u16::MAX);
        let snap = Arc::new(snap);
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
                self.desired
                    .ports
                    .values()
                    .map(|p| metrics::PortView {
                        name: p.spec.name.clone(),
                        id: p.id,
                        base: self
                            .runtime
                            .get(&p.spec.name)
                            .map(|r| r.base.clone())
                            .unwrap_or_default(),
                    })
                    .collect(),
            );
        }
    }

    /// Marks AF_XDP ports whose interface disappeared as down (once, with a log line); their
    /// queues stay with the workers, which count what they can no longer send.
    fn watch_interfaces(&mut self) {
        for (name, p) in self.runtime.iter_mut() {
            let Some(d) = &p.device else { continue };
            let afxdp = self
                .desired
                .ports
                .get(name)
                .is_some_and(|s| s.spec.kind == PortType::Afxdp);
            if p.error.is_none() && afxdp && !d.exists() {
                tracing::error!(port = %name, device = d.name(), "interface disappeared; port is down");
                p.error = Some(format!("interface '{}' disappeared", d.name()));
            }
            // A TAP may move between namespaces (a container engine renames and moves it), so
            // its name is no proof; a worker whose reads fail with EBADFD is: it was deleted.
            let id = self.desired.ports.get(name).map(|s| s.id);
            let gone = id.is_some_and(|id| {
                self.workers
                    .iter()
                    .any(|w| w.stats.port(id).device_gone.get() > 0)
            });
            if p.error.is_none() && !afxdp && gone {
                tracing::error!(port = %name, device = d.name(), "TAP device deleted under the port; port is down");
                p.error = Some(format!(
                    "device '{}' was deleted (its namespace went away, or someone removed it); \
                     remove the port (vswitchctl port rm {name}) and add it again",
                    d.name()
                ));
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
                let mut spec: NetworkSpec = parse_args(c, a)?;
                if spec.scope == Some(Scope::Global) {
                    spec = self.claim_global(spec)?;
                }
                let name = spec.name.clone();
                self.network_create(spec)?;
                to_value(serde_json::to_value(self.network_info(&name)?))
            }
            cmd::NETWORK_LS => {
                let list: Result<Vec<_>, _> = {
                    // One MAC table dump for the whole list, not one per network.
                    let dump = self.dump_fdb(None).unwrap_or_default();
                    self.desired
                        .nets
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
                self.port_add(spec)?;
                to_value(serde_json::to_value(self.port_info(&name)?))
            }
            cmd::PORT_LS => {
                let mut ps: Vec<&PortState> = self.desired.ports.values().collect();
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
            cmd::PORT_LOCATE => {
                let a: PortLocateArgs = parse_args(c, a)?;
                let name = a.name.clone();
                self.port_locate(a)?;
                to_value(serde_json::to_value(self.port_info(&name)?))
            }
            cmd::FDB_LS => {
                let a: FdbLsArgs = parse_args(c, a)?;
                to_value(serde_json::to_value(self.fdb_ls(&a)?))
            }
            cmd::FDB_ADD => {
                let a: StaticFdb = parse_args(c, a)?;
                self.fdb_add(a)?;
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
            cmd::CONFIG_EXPORT => {
                let a: ExportArgs = parse_args(c, a)?;
                let mut doc = self.export();
                if !a.include_secrets {
                    doc.keys.clear();
                }
                to_value(serde_json::to_value(doc))
            }
            cmd::KEY_ADD => {
                // Not `parse_args`: a decoding error may quote the value, the key included.
                let a: KeyAdd = serde_json::from_value(a.clone()).map_err(|_| {
                    err(
                        ErrorCode::InvalidArgument,
                        r#"invalid arguments for key.add: expected {"tag": N, "key": "HEX"}"#,
                    )
                })?;
                self.key_add(a)?;
                Ok(Value::Null)
            }
            cmd::KEY_PRIMARY => {
                let a: KeyTag = parse_args(c, a)?;
                self.key_primary(a.tag)?;
                Ok(Value::Null)
            }
            cmd::KEY_RM => {
                let a: KeyTag = parse_args(c, a)?;
                self.key_rm(a.tag)?;
                Ok(Value::Null)
            }
            cmd::KEY_LS => to_value(serde_json::to_value(self.key_ls())),
            cmd::CONFIG_IMPORT => {
                let doc: ConfigDoc = parse_args(c, a)?;
                to_value(serde_json::to_value(self.import(doc)?))
            }
            cmd::UPLINK_SET => {
                let spec: UplinkSpec = parse_args(c, a)?;
                self.uplink_set(spec)?;
                to_value(serde_json::to_value(self.uplink_info()))
            }
            cmd::UPLINK_SHOW => to_value(serde_json::to_value(self.uplink_info())),
            cmd::PEER_ADD => {
                let p: PeerSpec = parse_args(c, a)?;
                self.peer_add(p)?;
                Ok(Value::Null)
            }
            cmd::PEER_RM => {
                let p: PeerSpec = parse_args(c, a)?;
                self.peer_rm(p)?;
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
            cmd::NAT_SET | cmd::NAT_LS | cmd::NAT_STATS => self.nat_handle(c, a),
            cmd::ENDPOINT_ADD | cmd::ENDPOINT_RM | cmd::ENDPOINT_LS => self.endpoint_handle(c, a),
            cmd::NETWORK_LINK | cmd::NETWORK_UNLINK => {
                let l: NetLink = parse_args(c, a)?;
                let next = if c == cmd::NETWORK_LINK {
                    self.desired.link_networks(&l)?
                } else {
                    self.desired.unlink_networks(&l)?
                };
                self.commit(next)?;
                tracing::info!(a = %l.a, b = %l.b, "{}", if c == cmd::NETWORK_LINK { "networks linked" } else { "networks unlinked" });
                Ok(Value::Null)
            }
            cmd::SERVICE_CREATE
            | cmd::SERVICE_LS
            | cmd::SERVICE_INSPECT
            | cmd::SERVICE_RM
            | cmd::SERVICE_BACKEND_ADD
            | cmd::SERVICE_BACKEND_SET
            | cmd::SERVICE_BACKEND_RM => self.service_handle(c, a),
            cmd::CLUSTER_LS => to_value(serde_json::to_value(self.cluster_ls()?)),
            cmd::CLUSTER_APPLY => {
                // Not `parse_args`: a decoding error may quote a value, a key included.
                let a: ClusterApply = serde_json::from_value(a.clone()).map_err(|_| {
                    err(
                        ErrorCode::InvalidArgument,
                        "invalid arguments for cluster.apply (the store agent's batch; see control::proto::ClusterApply)",
                    )
                })?;
                to_value(serde_json::to_value(self.cluster_apply(a)?))
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

    /// Stops the workers and removes the devices this daemon holds; the state stays on disk.
    pub fn shutdown(&mut self) {
        self.stop(true);
    }

    /// Stops the workers; with `remove_devices` removes the devices the daemon holds (a clean
    /// stop), without it leaves them for the next daemon (an upgrade: persistent TAPs keep the
    /// containers' interfaces, addresses and routes).
    pub fn stop(&mut self, remove_devices: bool) {
        self.stop_store(remove_devices);
        self.flush_state();
        if let Some((_, mut server)) = self.metrics.take() {
            server.stop();
        }
        for w in self.workers.iter_mut() {
            w.stop();
        }
        if !remove_devices {
            for (_, p) in std::mem::take(&mut self.runtime) {
                // Closing the queues (the TAP devices persist); XDP links go with the process.
                drop(p.device);
            }
            tracing::info!(
                "stopped for an upgrade: devices kept, configuration kept in {}",
                self.opts.state_dir.display()
            );
            return;
        }
        for (name, p) in std::mem::take(&mut self.runtime) {
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
pub use service::ServiceName;

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
            tap_tunnel_gso: true,
            tap_uso: true,
            tap_gro: true,
            tap_uring: false,
            metrics: None,
            store: None,
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
    fn keys_are_added_made_primary_listed_removed_and_kept_secret() {
        let dir = scratch("keys");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        let k1 = "000102030405060708090a0b0c0d0e0f10111213";
        let k2 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100a1b2c3d4";
        call(
            &mut d,
            cmd::NETWORK_CREATE,
            json!({"name": "sec", "vni": 9, "encrypted": true}),
        )
        .unwrap();
        // Bad material: the message says how to mend it and never repeats what was given.
        let secretish = "00112233445566778899aabbccddeeff0011";
        let e = call(&mut d, cmd::KEY_ADD, json!({"tag": 1, "key": secretish})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("40 or 72 hex digits"), "{e}");
        assert!(!e.message.contains(secretish), "{e}");
        let e = call(
            &mut d,
            cmd::KEY_ADD,
            json!({"tag": 1, "key": 987654321987u64}),
        )
        .unwrap_err();
        assert!(!e.message.contains("987654321987"), "{e}");
        call(&mut d, cmd::KEY_ADD, json!({"tag": 1, "key": k1})).unwrap();
        call(&mut d, cmd::KEY_ADD, json!({"tag": 2, "key": k2})).unwrap();
        let e = call(&mut d, cmd::KEY_ADD, json!({"tag": 2, "key": k1})).unwrap_err();
        assert_eq!(e.code, ErrorCode::AlreadyExists);
        assert!(!e.message.contains(k1), "{e}");
        let e = call(&mut d, cmd::KEY_PRIMARY, json!({"tag": 3})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        call(&mut d, cmd::KEY_PRIMARY, json!({"tag": 1})).unwrap();
        let e = call(&mut d, cmd::KEY_RM, json!({"tag": 1})).unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "the primary cannot go");
        call(&mut d, cmd::KEY_PRIMARY, json!({"tag": 2})).unwrap();
        call(&mut d, cmd::KEY_RM, json!({"tag": 1})).unwrap();
        let ls = call(&mut d, cmd::KEY_LS, Value::Null).unwrap();
        let text = ls.to_string();
        assert_eq!(ls[0]["tag"], 2);
        assert_eq!(ls[0]["primary"], true);
        assert_eq!(ls[0]["bits"], 256);
        assert!(!text.contains(&k2[..16]), "{text}");
        // Export leaves keys out unless asked; the state file has them, owner-only.
        let doc = call(&mut d, cmd::CONFIG_EXPORT, Value::Null)
            .unwrap()
            .to_string();
        assert!(!doc.contains(&k2[..16]) && !doc.contains("keys"), "{doc}");
        let doc = call(&mut d, cmd::CONFIG_EXPORT, json!({"include_secrets": true})).unwrap();
        assert_eq!(doc["keys"][0]["key"], k2);
        let file = dir.0.join("config.json");
        assert!(std::fs::read_to_string(&file).unwrap().contains(k2));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!format!("{:?}", d.desired).contains(&k2[..16]));
        d.shutdown();
        drop(d);
        // Restored with the primary.
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        let ls = call(&mut d, cmd::KEY_LS, Value::Null).unwrap();
        assert_eq!(ls[0]["tag"], 2);
        assert_eq!(ls[0]["primary"], true);
        let info = call(&mut d, cmd::NETWORK_INSPECT, json!({"name": "sec"})).unwrap();
        assert_eq!(info["mtu"], 1416);
        d.shutdown();
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
            json!({"name": "o", "encrypted": true}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("--vni"), "{e}");
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
    fn the_stores_batches_add_replace_and_remove_only_what_the_store_made() {
        let dir = scratch("cluster");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        call(
            &mut d,
            cmd::NETWORK_CREATE,
            json!({"name": "mine", "vni": 7}),
        )
        .unwrap();
        call(
            &mut d,
            cmd::PEER_ADD,
            json!({"network": "mine", "vtep": "192.168.5.9"}),
        )
        .unwrap();
        // Without --store: cluster ls and global networks say how to get one.
        let e = call(&mut d, cmd::CLUSTER_LS, Value::Null).unwrap_err();
        assert!(e.message.contains("--store"), "{e}");
        let e = call(
            &mut d,
            cmd::NETWORK_CREATE,
            json!({"name": "g", "vni": 8, "scope": "global"}),
        )
        .unwrap_err();
        assert!(e.message.contains("--store"), "{e}");
        let ov = json!({"name": "ov", "vni": 100, "scope": "global"});
        let batch = json!({
            "replace": true,
            "networks": [ov, {"name": "mine", "vni": 9, "scope": "global"}],
            "peers_add": [{"network": "ov", "vtep": "192.168.5.2"}, {"network": "ov", "vtep": "192.168.5.3"}],
            "fdb_add": [
                {"network": "ov", "mac": "02:00:00:00:00:02", "vtep": "192.168.5.2"},
                {"network": "ov", "mac": "02:00:00:00:00:03", "vtep": "192.168.5.3"},
                {"network": "nope", "mac": "02:00:00:00:00:04", "vtep": "192.168.5.3"},
            ],
        });
        let r = call(&mut d, cmd::CLUSTER_APPLY, batch).unwrap();
        let refused: Vec<String> = serde_json::from_value(r["refused"].clone()).unwrap();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains("'mine'") && refused[0].contains("another definition"));
        assert!(refused[1].contains("nope"));
        let peers = call(&mut d, cmd::PEER_LS, Value::Null).unwrap();
        assert_eq!(peers.as_array().unwrap().len(), 3);
        assert_eq!(peers[1]["origin"], "store");
        // The network went to the state file at once, peers and MACs by the next tick.
        let file = dir.0.join("config.json");
        let saved = std::fs::read_to_string(&file).unwrap();
        assert!(saved.contains("\"ov\""), "{saved}");
        let peers_only = json!({"peers_add": [{"network": "ov", "vtep": "192.168.5.4"}]});
        call(&mut d, cmd::CLUSTER_APPLY, peers_only).unwrap();
        assert!(!std::fs::read_to_string(&file)
            .unwrap()
            .contains("192.168.5.4"));
        d.flush_state();
        assert!(std::fs::read_to_string(&file)
            .unwrap()
            .contains("192.168.5.4"));
        call(
            &mut d,
            cmd::CLUSTER_APPLY,
            json!({"peers_rm": [{"network": "ov", "vtep": "192.168.5.4"}]}),
        )
        .unwrap();
        assert!(
            peers[0].get("origin").is_none(),
            "the operator's stays unmarked"
        );
        // A delta: one host went.
        call(
            &mut d,
            cmd::CLUSTER_APPLY,
            json!({
                "peers_rm": [{"network": "ov", "vtep": "192.168.5.3"}],
                "fdb_rm": [{"network": "ov", "mac": "02:00:00:00:00:03"}],
            }),
        )
        .unwrap();
        let fdb = call(&mut d, cmd::FDB_LS, json!({"network": "ov"})).unwrap();
        assert_eq!(fdb.as_array().unwrap().len(), 1, "{fdb}");
        // A replace with nothing removes every store entry, and only those; it persisted.
        call(&mut d, cmd::CLUSTER_APPLY, json!({"replace": true})).unwrap();
        let peers = call(&mut d, cmd::PEER_LS, Value::Null).unwrap();
        assert_eq!(peers.as_array().unwrap().len(), 1, "{peers}");
        assert_eq!(peers[0]["vtep"], "192.168.5.9");
        // Keys: added for receive, then primary, then the old one removed, in one batch each.
        let k1 = "000102030405060708090a0b0c0d0e0f10111213";
        let k2 = "101112131415161718191a1b1c1d1e1f20212223";
        for (keys, want) in [
            (json!([{"tag": 1, "key": k1}]), vec![(1, false)]),
            (
                json!([{"tag": 1, "key": k1, "primary": true}]),
                vec![(1, true)],
            ),
            (
                json!([{"tag": 1, "key": k1, "primary": true}, {"tag": 2, "key": k2}]),
                vec![(1, true), (2, false)],
            ),
            (
                json!([{"tag": 1, "key": k1}, {"tag": 2, "key": k2, "primary": true}]),
                vec![(1, false), (2, true)],
            ),
            (
                json!([{"tag": 2, "key": k2, "primary": true}]),
                vec![(2, true)],
            ),
        ] {
            call(&mut d, cmd::CLUSTER_APPLY, json!({"keys": keys})).unwrap();
            let ls = call(&mut d, cmd::KEY_LS, Value::Null).unwrap();
            let got: Vec<(u64, bool)> = ls
                .as_array()
                .unwrap()
                .iter()
                .map(|k| (k["tag"].as_u64().unwrap(), k["primary"] == true))
                .collect();
            let want: Vec<(u64, bool)> = want.into_iter().collect();
            assert_eq!(got, want);
        }
        // A malformed batch is refused without quoting it.
        let e = call(
            &mut d,
            cmd::CLUSTER_APPLY,
            json!({"keys": [{"tag": "x", "key": k1}]}),
        )
        .unwrap_err();
        assert!(!e.message.contains(k1), "{e}");
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
    fn esp_in_udp_is_kept_exported_and_needs_an_encrypted_network() {
        let dir = scratch("espudp");
        let spec = json!({"name": "sec", "vni": 9, "encrypted": true, "esp_encap": "udp"});
        {
            let mut d = Daemon::start(opts(&dir.0)).unwrap();
            let e = call(
                &mut d,
                cmd::NETWORK_CREATE,
                json!({"name": "x", "vni": 8, "esp_encap": "udp"}),
            )
            .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument);
            assert!(e.message.contains("add --encrypted"), "{e}");
            call(&mut d, cmd::NETWORK_CREATE, spec.clone()).unwrap();
            d.shutdown();
        }
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        let n = call(&mut d, cmd::NETWORK_INSPECT, json!({"name": "sec"})).unwrap();
        assert_eq!(n["esp_encap"], "udp", "{n}");
        let doc = call(&mut d, cmd::CONFIG_EXPORT, Value::Null).unwrap();
        assert_eq!(doc["networks"][0]["esp_encap"], "udp", "{doc}");
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
            esp_encap: None,
            mac_limit: None,
            aging_secs: None,
            internal: false,
            scope: None,
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

    /// Whether this test process may create TAP devices (root with /dev/net/tun).
    fn can_make_taps() -> bool {
        os::euid() == 0 && Path::new("/dev/net/tun").exists()
    }

    fn link_exists(name: &str) -> bool {
        Path::new("/sys/class/net").join(name).exists()
    }

    /// What a failed commit must leave as it was: the desired state, the ports that hold a
    /// runtime, the snapshot generation, and how many snapshots each worker applied.
    fn observe(d: &Daemon) -> (Desired, Vec<String>, u64, Vec<u64>) {
        (
            d.desired.clone(),
            d.runtime.keys().cloned().collect(),
            d.gen,
            d.workers
                .iter()
                .map(|w| w.stats.event(WorkerEvent::ConfigApplied).get())
                .collect(),
        )
    }

    #[test]
    fn a_commit_whose_persist_fails_changes_nothing_and_removes_the_device_it_made() {
        let dir = scratch("persist");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        call(&mut d, cmd::NETWORK_CREATE, json!({"name": "blue"})).unwrap();
        let tap = format!("utpf{}", std::process::id() % 100_000);
        let taps = can_make_taps();
        if taps {
            call(
                &mut d,
                cmd::PORT_ADD,
                json!({"name": tap, "type": "tap", "network": "blue"}),
            )
            .unwrap();
            assert!(link_exists(&tap));
        }
        let on_disk = std::fs::read(dir.0.join("config.json")).unwrap();
        // A state directory under a regular file: no write can succeed there, root or not.
        std::fs::write(dir.0.join("file"), b"").unwrap();
        let good = std::mem::replace(&mut d.opts.state_dir, dir.0.join("file").join("sub"));
        let before = observe(&d);

        let mut refused = vec![
            call(&mut d, cmd::NETWORK_CREATE, json!({"name": "red"})).unwrap_err(),
            call(&mut d, cmd::NETWORK_RM, json!({"name": "green"})).unwrap_err(),
        ];
        assert_eq!(refused.pop().unwrap().code, ErrorCode::NotFound);
        let tap2 = format!("utpg{}", std::process::id() % 100_000);
        if taps {
            refused.push(
                call(&mut d, cmd::PORT_ADD, json!({"name": tap2, "type": "tap"})).unwrap_err(),
            );
            refused.push(call(&mut d, cmd::PORT_RM, json!({"name": tap})).unwrap_err());
            refused.push(
                call(
                    &mut d,
                    cmd::FDB_ADD,
                    json!({"network": "blue", "mac": "02:00:00:00:00:01", "port": tap}),
                )
                .unwrap_err(),
            );
        }
        for e in &refused {
            assert_eq!(e.code, ErrorCode::System, "{e}");
            assert!(
                e.message.contains("cannot persist the change to")
                    && e.message.contains("the change was not made"),
                "{e}"
            );
        }
        assert!(observe(&d) == before, "a failed commit changed the daemon");
        assert_eq!(std::fs::read(dir.0.join("config.json")).unwrap(), on_disk);
        if taps {
            assert!(!link_exists(&tap2), "the new port's TAP was left behind");
            assert!(link_exists(&tap), "the port that stays lost its TAP");
            let info = call(&mut d, cmd::PORT_INSPECT, json!({"name": tap})).unwrap();
            assert!(info["state"].as_str().unwrap().starts_with("up"), "{info}");
        }

        // With the disk back, the same change goes through.
        d.opts.state_dir = good;
        call(&mut d, cmd::NETWORK_CREATE, json!({"name": "red"})).unwrap();
        assert_eq!(d.gen, before.2 + 1);
        if taps {
            call(&mut d, cmd::PORT_RM, json!({"name": tap})).unwrap();
            assert!(!link_exists(&tap));
        }
        d.shutdown();
    }

    #[test]
    fn a_device_that_cannot_be_opened_fails_the_whole_import_and_leaves_nothing_behind() {
        let dir = scratch("devfail");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        let before = observe(&d);
        let tap = format!("utdf{}", std::process::id() % 100_000);
        let mut ports = Vec::new();
        if can_make_taps() {
            ports.push(json!({"name": tap, "type": "tap", "network": "blue"}));
        }
        ports.push(
            json!({"name": "x", "type": "afxdp", "ifname": "vs-no-such-if", "network": "blue"}),
        );
        let doc = json!({
            "version": CONFIG_VERSION,
            "networks": [{"name": "blue"}],
            "ports": ports,
            "fdb": [], "peers": [],
        });
        let e = call(&mut d, cmd::CONFIG_IMPORT, doc).unwrap_err();
        assert_eq!(e.code, ErrorCode::System, "{e}");
        assert!(
            e.message.contains("'vs-no-such-if'") && e.message.contains("nothing was imported"),
            "{e}"
        );
        assert!(observe(&d) == before, "a failed import changed the daemon");
        assert!(
            !link_exists(&tap),
            "the TAP the import made was left behind"
        );
        assert!(
            !dir.0.join("config.json").exists(),
            "a failed import was persisted"
        );

        // A single command the same: the port is not there, nothing was published.
        let e = call(
            &mut d,
            cmd::PORT_ADD,
            json!({"name": "x", "type": "afxdp", "ifname": "vs-no-such-if"}),
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("cannot bind AF_XDP sockets to 'vs-no-such-if'"),
            "{e}"
        );
        assert!(observe(&d) == before);

        // An object that fails validation late (after others were accepted) fails it all too.
        let doc = json!({
            "version": CONFIG_VERSION,
            "networks": [{"name": "green"}],
            "ports": [{"name": "p", "type": "tap", "network": "green", "mtu": 9000}],
            "fdb": [], "peers": [],
        });
        let e = call(&mut d, cmd::CONFIG_IMPORT, doc).unwrap_err();
        assert!(e.message.contains("--mtu 9000"), "{e}");
        assert!(observe(&d) == before);
        assert!(call(&mut d, cmd::NETWORK_INSPECT, json!({"name": "green"})).is_err());
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

    #[test]
    fn a_peer_that_would_get_no_tunnel_port_is_refused_not_accepted_inert() {
        let dir = scratch("tunnels");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        // Every port id taken by a tunnel: one import of MAX_PORTS peers (one commit).
        let peers: Vec<Value> = (0..MAX_PORTS)
            .map(|i| json!({"network": "o", "vtep": format!("10.9.{}.{}", i / 250, i % 250 + 1)}))
            .collect();
        call(
            &mut d,
            cmd::CONFIG_IMPORT,
            json!({"version": 1, "networks": [{"name": "o", "vni": 7}], "peers": peers}),
        )
        .unwrap();
        assert_eq!(d.desired.tunnel_ids.len(), MAX_PORTS);
        let e = call(
            &mut d,
            cmd::PEER_ADD,
            json!({"network": "o", "vtep": "10.10.0.1"}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{e}");
        assert!(
            e.message.contains("10.10.0.1") && e.message.contains("remove a peer"),
            "{e}"
        );
        // Nothing of it was kept, in memory or on disk.
        assert!(!d.desired.peers.iter().any(|p| p.vtep == "10.10.0.1"));
        let saved = std::fs::read_to_string(state_file(&dir.0)).unwrap();
        assert!(!saved.contains("10.10.0.1"));
        // A remote MAC towards a new VTEP needs a tunnel too.
        let e = call(
            &mut d,
            cmd::FDB_ADD,
            json!({"network": "o", "mac": "02:00:00:00:00:01", "vtep": "10.10.0.2"}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{e}");
        // Freeing one makes room.
        call(
            &mut d,
            cmd::PEER_RM,
            json!({"network": "o", "vtep": "10.9.0.1"}),
        )
        .unwrap();
        call(
            &mut d,
            cmd::PEER_ADD,
            json!({"network": "o", "vtep": "10.10.0.1"}),
        )
        .unwrap();
        d.shutdown();
    }

    #[test]
    fn a_netns_path_that_is_a_fifo_or_a_plain_file_is_refused_without_blocking() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = scratch("fifo");
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        let fifo = dir.0.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Should the open block after all, a writer unblocks it after 10 s so the test ends
        // (and fails on the time) instead of hanging.
        let unblock = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(10));
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo);
            })
        };
        let plain = dir.0.join("plain");
        std::fs::write(&plain, b"not a namespace").unwrap();
        for path in [&fifo, &plain] {
            let t = std::time::Instant::now();
            let e = call(
                &mut d,
                cmd::PORT_ADD,
                json!({"name": "x", "type": "tap", "netns": path.to_str().unwrap()}),
            )
            .unwrap_err();
            assert!(t.elapsed() < std::time::Duration::from_secs(5), "{e}");
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
            assert!(e.message.contains("not a network namespace"), "{e}");
        }
        assert!(call(&mut d, cmd::PORT_LS, Value::Null)
            .unwrap()
            .as_array()
            .is_some_and(|a| a.is_empty()));
        d.shutdown();
        drop(unblock);
    }

    #[test]
    fn restore_checks_the_state_as_import_does_and_keeps_what_it_refuses() {
        let dir = scratch("restore-check");
        let file = state_file(&dir.0);
        // A format this daemon does not read: it does not start, and says what to do.
        std::fs::write(&file, r#"{"version": 99, "networks": [{"name": "blue"}]}"#).unwrap();
        let e = Daemon::start(opts(&dir.0))
            .err()
            .expect("a version 99 file is refused");
        let e = e.to_string();
        assert!(
            e.contains("version 99") && e.contains("move the file away"),
            "{e}"
        );

        // A port naming a network that does not exist is not restored (it would join any
        // network later created with that name), nor is one whose name is invalid; the rest is.
        std::fs::write(
            &file,
            r#"{"version": 1, "networks": [{"name": "blue"}],
                "ports": [{"name": "ghost", "type": "vlan", "network": "nowhere"},
                          {"name": "bad name", "type": "tap"}]}"#,
        )
        .unwrap();
        let mut d = Daemon::start(opts(&dir.0)).unwrap();
        assert!(d.desired.nets.contains_key("blue"));
        assert!(!d.desired.ports.contains_key("ghost"));
        assert!(!d.desired.ports.contains_key("bad name"));
        let kept: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("unrestored"))
            .collect();
        assert_eq!(
            kept.len(),
            1,
            "the refused objects are kept aside in a copy"
        );
        // A network created later with that name does not pick the ghost port up.
        call(&mut d, cmd::NETWORK_CREATE, json!({"name": "nowhere"})).unwrap();
        assert!(!d.desired.ports.contains_key("ghost"));
        d.shutdown();
    }
}
