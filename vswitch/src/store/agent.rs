//! The store agent: a thread inside `vswitchd` that keeps this host's keys in etcd (on a lease
//! it renews), watches the prefix, and hands the daemon what the store asks of it as
//! `cluster.apply` requests, which the control thread serves with the same handler as
//! `vswitchctl`'s (validated, persisted and rolled back like an operator's change).
//!
//! Why a thread in the daemon and not a separate agent process on the control socket: it goes and
//! comes with the daemon (no second service to supervise), it is told of local changes at once
//! rather than by polling, and a `network create --scope global` can ask it synchronously for the
//! store's create-if-absent without a second connection back. It still touches the daemon only
//! through requests of the control protocol: nothing bypasses validation or the commit path.
//! The agent never waits for the control thread (requests go through a channel and a waker),
//! and the control thread waits for the agent only during a global `network create` (bounded).
//!
//! When the store is unreachable nothing changes in the dataplane: the daemon keeps the last
//! state; local changes wait in [`core::Local`] and are published on return; the watch resumes
//! from the last revision seen (a re-list if etcd compacted it away).

use super::core::{self, Derived, Layout, Local, View};
use super::etcd::{Etcd, WatchMsg};
use control::proto::{ClusterApply, ClusterHost, ClusterInfo, NetworkSpec};
use crossbeam::channel::{self, Receiver, Sender};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Subnets of global networks made without `--subnet` are /24s of this /16.
pub const SUBNET_POOL: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 0);
/// Keys read per page when listing.
const PAGE: i64 = 10_000;
/// Each store request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between attempts while the store is unreachable.
const RETRY: Duration = Duration::from_secs(1);

/// The store settings from the command line.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// As given (`etcd://HOST:PORT[,HOST:PORT...]`).
    pub url: String,
    /// The endpoints it names.
    pub endpoints: Vec<SocketAddr>,
    /// This host's id.
    pub host_id: String,
    /// Key prefix.
    pub prefix: String,
    /// Lease TTL in seconds.
    pub ttl: u64,
    /// Seconds between key rotations (the leader's).
    pub rotate_secs: u64,
}

impl StoreConfig {
    /// Parses `--store` with `--host-id`, `--store-prefix`, `--store-ttl` and
    /// `--store-key-rotation`.
    pub fn parse(
        url: &str,
        host_id: &str,
        prefix: &str,
        ttl: u64,
        rotate_secs: u64,
    ) -> Result<StoreConfig, String> {
        let rest = url.strip_prefix("etcd://").ok_or_else(|| {
            format!("--store '{url}' is not an etcd URL; give etcd://HOST:PORT[,HOST:PORT...]")
        })?;
        let mut endpoints = Vec::new();
        for hp in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let addrs = hp.to_socket_addrs().map_err(|e| {
                format!("--store: cannot resolve '{hp}': {e}; give HOST:PORT, e.g. 127.0.0.1:2379")
            })?;
            endpoints.extend(addrs.take(1));
        }
        if endpoints.is_empty() {
            return Err("--store names no endpoint; give etcd://HOST:PORT".into());
        }
        control::text::check_name("host id", host_id, 64).map_err(|e| format!("--host-id: {e}"))?;
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return Err(format!(
                "--store-prefix '{prefix}' must start with '/' and name something, e.g. /vswitch"
            ));
        }
        if !(5..=300).contains(&ttl) {
            return Err(format!(
                "--store-ttl {ttl} is out of range; give 5 to 300 seconds"
            ));
        }
        if rotate_secs < 2 {
            return Err("--store-key-rotation must be at least 2 seconds".into());
        }
        Ok(StoreConfig {
            url: url.to_string(),
            endpoints,
            host_id: host_id.to_string(),
            prefix: prefix.to_string(),
            ttl,
            rotate_secs,
        })
    }
}

/// What the daemon tells the agent.
pub enum ToAgent {
    /// This host's state as the store should know it (sent when it changes).
    Local(Local),
    /// `network create --scope global`: claim it in the store; the spec as claimed (with its
    /// allocated subnet) or why not.
    Create(
        NetworkSpec,
        std::time::Instant,
        Sender<Result<NetworkSpec, String>>,
    ),
    /// Stop; with `true` revoke the lease first (a clean stop: this host's keys go at once),
    /// with `false` leave them to the next daemon (an upgrade).
    Stop(bool),
}

/// A batch for the daemon and where to say how it went.
pub type ApplyMsg = (ClusterApply, Sender<Result<(), String>>);

/// The daemon's side of a running agent.
pub struct Handle {
    tx: Sender<ToAgent>,
    /// Batches for the daemon's handler.
    pub applies: Receiver<ApplyMsg>,
    /// The store and the hosts as the agent last saw them.
    pub info: Arc<Mutex<ClusterInfo>>,
    thread: Option<std::thread::JoinHandle<()>>,
    last_local: Option<Local>,
}

impl Handle {
    /// Tells the agent this host's state, if it changed since last told.
    pub fn set_local(&mut self, local: Local) {
        if self.last_local.as_ref() != Some(&local) {
            self.last_local = Some(local.clone());
            let _ = self.tx.send(ToAgent::Local(local));
        }
    }

    /// This host's state as last told.
    pub fn last_local(&self) -> Option<&Local> {
        self.last_local.as_ref()
    }

    /// Claims a global network in the store (waits at most `wait`).
    pub fn create(&self, spec: NetworkSpec, wait: Duration) -> Result<NetworkSpec, String> {
        let (tx, rx) = channel::bounded(1);
        // Past the deadline the agent drops the claim unmade: the user, told to try again,
        // does not then find the network claimed by the attempt that timed out.
        let deadline = std::time::Instant::now() + wait;
        self.tx
            .send(ToAgent::Create(spec, deadline, tx))
            .map_err(|_| "the store agent is not running (see the daemon log)".to_string())?;
        rx.recv_timeout(wait).map_err(|_| {
            "the store did not answer in time; a claim not yet under way is dropped (see vswitchctl network ls); try again".to_string()
        })?
    }

    /// Stops the agent; with `revoke` its lease ends, so its keys go at once.
    pub fn stop(&mut self, revoke: bool) {
        let _ = self.tx.send(ToAgent::Stop(revoke));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop(false);
    }
}

/// Starts the agent; `wake` tells the control thread that a batch waits in `applies`.
pub fn spawn(cfg: StoreConfig, wake: Box<dyn Fn() + Send>) -> Result<Handle, String> {
    let (tx, rx) = channel::unbounded();
    let (atx, arx) = channel::unbounded();
    let info = Arc::new(Mutex::new(ClusterInfo {
        prefix: cfg.prefix.clone(),
        lease_ttl_secs: cfg.ttl,
        ..ClusterInfo::default()
    }));
    if let Ok(mut i) = info.lock() {
        i.store.endpoints = cfg.url.clone();
        i.store.host_id = cfg.host_id.clone();
        i.store.error = Some("connecting".into());
    }
    let agent = Agent {
        etcd: Etcd::new(cfg.endpoints.clone(), REQUEST_TIMEOUT),
        layout: Layout::new(&cfg.prefix),
        cfg,
        info: info.clone(),
        rx,
        to_daemon: atx,
        wake,
        view: None,
        sent: None,
        inflight: None,
        dirty: false,
        lease: 0,
        since: 0,
        local: Local::default(),
        published: BTreeMap::new(),
        watch: None,
        watch_closer: None,
        connected: false,
        next_keepalive: Instant::now(),
        next_retry: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name("store-agent".into())
        .spawn(move || agent.run())
        .map_err(|e| format!("cannot start the store agent: {e}"))?;
    Ok(Handle {
        tx,
        applies: arx,
        info,
        thread: Some(thread),
        last_local: None,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Agent {
    cfg: StoreConfig,
    etcd: Etcd,
    layout: Layout,
    info: Arc<Mutex<ClusterInfo>>,
    rx: Receiver<ToAgent>,
    to_daemon: Sender<ApplyMsg>,
    wake: Box<dyn Fn() + Send>,
    /// The store as seen; `None`: list it.
    view: Option<View>,
    /// What the daemon has been given (the batch in flight included); `None`: give it
    /// everything (replace).
    sent: Option<Derived>,
    /// The batch the daemon is working on.
    inflight: Option<Receiver<Result<(), String>>>,
    /// The view changed since the daemon was last given a batch.
    dirty: bool,
    lease: i64,
    since: u64,
    local: Local,
    /// This host's keys as the store has them.
    published: BTreeMap<String, Vec<u8>>,
    watch: Option<Receiver<Result<WatchMsg, String>>>,
    /// Ends the watch's connection, so that its reader thread goes at once.
    watch_closer: Option<std::net::TcpStream>,
    connected: bool,
    next_keepalive: Instant,
    next_retry: Instant,
}

impl Agent {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            if !self.connected && now >= self.next_retry {
                match self.connect() {
                    Ok(()) => {
                        tracing::info!(store = %self.cfg.url, host = %self.cfg.host_id, revision = self.revision(), "store connected");
                        self.connected = true;
                        self.set_reachable(None);
                    }
                    Err(e) => self.lost(e),
                }
            }
            let due = if self.connected {
                self.next_keepalive
            } else {
                self.next_retry
            };
            let wait = due
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            let never = channel::never();
            let watch = self.watch.clone().unwrap_or_else(channel::never);
            let inflight = self.inflight.clone().unwrap_or_else(|| never.clone());
            channel::select! {
                recv(self.rx) -> m => match m {
                    Ok(ToAgent::Stop(revoke)) => {
                        if revoke && self.connected && self.lease != 0 {
                            let _ = self.etcd.revoke(self.lease);
                        }
                        self.end_watch();
                        return;
                    }
                    Err(_) => {
                        if self.connected && self.lease != 0 {
                            let _ = self.etcd.revoke(self.lease);
                        }
                        self.end_watch();
                        return;
                    }
                    Ok(ToAgent::Local(l)) => {
                        if l.vtep != self.local.vtep {
                            // Which hosts are "others" depends on it: derive everything again.
                            if let Some(v) = self.view.as_mut() {
                                v.touched.all = true;
                            }
                            self.dirty = true;
                        }
                        self.local = l;
                    }
                    Ok(ToAgent::Create(spec, deadline, reply)) => {
                        if std::time::Instant::now() >= deadline {
                            tracing::warn!(network = %spec.name, "a global network's claim came after its caller gave up; not made");
                        } else {
                            let r = self.create(spec);
                            let _ = reply.send(r);
                        }
                    }
                },
                recv(watch) -> m => match m {
                    Ok(Ok(msg)) => {
                        self.on_watch(msg);
                        // Take what else has come before acting: one batch for a burst.
                        while let Some(Ok(Ok(msg))) = self.watch.as_ref().map(|w| w.try_recv()) {
                            self.on_watch(msg);
                        }
                    }
                    Ok(Err(e)) => self.lost(e),
                    Err(_) => self.lost("the watch reader ended".into()),
                },
                recv(inflight) -> m => {
                    self.inflight = None;
                    match m {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "the daemon refused the store's batch; will resend all");
                            self.sent = None;
                            self.dirty = true;
                        }
                        Err(_) => {
                            self.sent = None;
                            self.dirty = true;
                        }
                    }
                },
                default(wait) => {},
            }
            if self.connected && Instant::now() >= self.next_keepalive {
                if let Err(e) = self.keepalive() {
                    self.lost(e);
                }
            }
            if self.connected {
                if let Err(e) = self.publish().and_then(|()| self.lead()) {
                    self.lost(e);
                }
            }
            self.give_daemon();
            self.update_info();
        }
    }

    fn revision(&self) -> i64 {
        self.view.as_ref().map_or(0, |v| v.revision)
    }

    fn set_reachable(&self, error: Option<String>) {
        if let Ok(mut i) = self.info.lock() {
            i.store.reachable = error.is_none();
            i.store.error = error;
        }
    }

    /// The store went away (or a call failed): the dataplane keeps its state; retry later.
    fn lost(&mut self, e: String) {
        if self.connected {
            tracing::warn!(error = %e, "store unreachable; forwarding continues on the last state, changes wait");
        } else {
            tracing::debug!(error = %e, "store still unreachable");
        }
        self.connected = false;
        self.end_watch();
        self.next_retry = Instant::now() + RETRY;
        self.set_reachable(Some(e));
    }

    /// (Re)connects: renews or takes a lease, publishes this host's keys, lists the prefix if
    /// needed and watches from the revision after the last seen.
    fn connect(&mut self) -> Result<(), String> {
        if self.lease != 0 && self.etcd.keepalive(self.lease)? <= 0 {
            tracing::info!(
                lease = self.lease,
                "store lease expired while away; taking a new one"
            );
            self.lease = 0;
        }
        if self.lease == 0 {
            self.lease = self.etcd.grant(self.cfg.ttl)?;
            self.since = unix_now();
            self.published.clear();
        }
        self.next_keepalive = Instant::now() + Duration::from_secs(self.cfg.ttl / 3);
        self.publish()?;
        self.start_watch()
    }

    fn start_watch(&mut self) -> Result<(), String> {
        if self.view.is_none() {
            let (kvs, rev) = self.etcd.list(self.layout.prefix(), PAGE)?;
            let view = View::from_list(&self.layout, &kvs, rev);
            if view.malformed > 0 {
                tracing::warn!(
                    count = view.malformed,
                    "store values that cannot be read were skipped"
                );
            }
            tracing::info!(keys = kvs.len(), revision = rev, "store listed");
            self.view = Some(view);
            self.sent = None;
            self.dirty = true;
        }
        let from = self.revision() + 1;
        // A watch waits for events as long as the store is up; the keepalive notices a store
        // that is gone, and the reader then ends with the connection.
        let mut w = self
            .etcd
            .watch(self.layout.prefix(), from, Duration::from_secs(3600))?;
        self.watch_closer = w.closer();
        let (tx, rx) = channel::bounded(1024);
        std::thread::Builder::new()
            .name("store-watch".into())
            .spawn(move || loop {
                let m = w.next_msg();
                let end = m.is_err();
                if tx.send(m).is_err() || end {
                    return;
                }
            })
            .map_err(|e| format!("cannot start the watch reader: {e}"))?;
        self.watch = Some(rx);
        Ok(())
    }

    /// Drops the watch and closes its connection (its reader thread ends with it).
    fn end_watch(&mut self) {
        self.watch = None;
        if let Some(s) = self.watch_closer.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn on_watch(&mut self, msg: WatchMsg) {
        if msg.compact_revision != 0 || msg.canceled {
            tracing::info!(
                from = self.revision() + 1,
                compacted = msg.compact_revision,
                "the store compacted past our revision; listing again"
            );
            self.view = None;
            self.end_watch();
            if let Err(e) = self.start_watch() {
                self.lost(e);
            }
            return;
        }
        if let Some(v) = self.view.as_mut() {
            if v.apply(&self.layout, &msg.events, msg.revision) {
                self.dirty = true;
            }
        }
    }

    fn keepalive(&mut self) -> Result<(), String> {
        let ttl = self.etcd.keepalive(self.lease)?;
        if ttl <= 0 {
            // Our keys went with it; take a new lease and publish them again.
            tracing::warn!(lease = self.lease, "store lease expired; registering again");
            self.lease = self.etcd.grant(self.cfg.ttl)?;
            self.since = unix_now();
            self.published.clear();
        }
        self.next_keepalive = Instant::now() + Duration::from_secs((self.cfg.ttl / 3).max(1));
        Ok(())
    }

    /// Brings this host's keys in the store to what [`Local`] says.
    fn publish(&mut self) -> Result<(), String> {
        let want = core::own_keys(&self.layout, &self.cfg.host_id, &self.local, self.since);
        let (puts, dels) = core::publish_diff(&self.published, &want);
        for (k, v) in puts {
            self.etcd.put(&k, &v, self.lease)?;
            self.published.insert(k, v);
        }
        for k in dels {
            self.etcd.delete(&k)?;
            self.published.remove(&k);
        }
        Ok(())
    }

    /// Keys of encrypted networks: takes the leadership when nobody holds it; as the leader,
    /// takes the next step of [`core::leader_step`]. Every write is conditional on still being
    /// the leader, so a host that lost it (its lease expired while away) writes nothing.
    fn lead(&mut self) -> Result<(), String> {
        use super::etcd::{cmp_absent, cmp_value, op_delete, op_put};
        let Some(view) = &self.view else {
            return Ok(());
        };
        let me = self.cfg.host_id.as_bytes();
        let leader_key = self.layout.leader();
        match view.leader.as_deref() {
            None => {
                if self.etcd.txn(
                    vec![cmp_absent(&leader_key)],
                    vec![op_put(&leader_key, me, self.lease)],
                )? {
                    tracing::info!(host = %self.cfg.host_id, "this host is the store's key leader");
                }
                return Ok(());
            }
            Some(l) if l.as_bytes() != me => return Ok(()),
            Some(_) => {}
        }
        let Some(step) = core::leader_step(view, unix_now(), self.cfg.rotate_secs) else {
            return Ok(());
        };
        let am_leader = cmp_value(&leader_key, me);
        match step {
            core::KeyStep::Add(tag) => {
                let mut material = [0u8; 36];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut material)
                    .map_err(|_| "no random numbers for a new key".to_string())?;
                let hex: String = material.iter().map(|b| format!("{b:02x}")).collect();
                let rec = core::KeyRec {
                    key: hex,
                    added: unix_now(),
                };
                let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
                let k = self.layout.key(tag);
                if self
                    .etcd
                    .txn(vec![am_leader, cmp_absent(&k)], vec![op_put(&k, &body, 0)])?
                {
                    tracing::info!(
                        tag,
                        "key leader: new key written (hosts install it for receive)"
                    );
                }
            }
            core::KeyStep::Primary(tag) => {
                let k = self.layout.key_primary();
                self.etcd.txn(
                    vec![am_leader],
                    vec![op_put(&k, tag.to_string().as_bytes(), 0)],
                )?;
                tracing::info!(
                    tag,
                    "key leader: every host has the key; it is now the primary"
                );
            }
            core::KeyStep::Remove(tag) => {
                self.etcd
                    .txn(vec![am_leader], vec![op_delete(&self.layout.key(tag))])?;
                tracing::info!(
                    tag,
                    "key leader: every host sends with the new key; old key removed"
                );
            }
        }
        Ok(())
    }

    /// Gives the daemon the next batch when the last one is done and the view moved.
    fn give_daemon(&mut self) {
        if self.inflight.is_some() || !self.dirty {
            return;
        }
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let t = Instant::now();
        let (me, vtep) = (self.cfg.host_id.as_str(), self.local.vtep);
        let batch = match self.sent.as_mut() {
            Some(sent) => core::derive_delta(view, me, vtep, sent),
            None => {
                view.touched = core::Touched::default();
                let new = core::derive(view, me, vtep);
                let b = core::full(&new);
                self.sent = Some(new);
                b
            }
        };
        self.dirty = false;
        if batch.is_empty() {
            return;
        }
        tracing::debug!(
            replace = batch.replace,
            peers = batch.peers_add.len() + batch.peers_rm.len(),
            macs = batch.fdb_add.len() + batch.fdb_rm.len(),
            us = t.elapsed().as_micros() as u64,
            "store batch for the daemon"
        );
        let (tx, rx) = channel::bounded(1);
        if self.to_daemon.send((batch, tx)).is_ok() {
            (self.wake)();
            self.inflight = Some(rx);
        } else {
            self.sent = None;
        }
    }

    /// `network create --scope global`: claims name, VNI and subnet at once (an etcd
    /// transaction that puts them only if none exists), allocating a subnet when none is given.
    fn create(&mut self, mut spec: NetworkSpec) -> Result<NetworkSpec, String> {
        core::check_global(&spec)?;
        if !self.connected {
            let why = self
                .info
                .lock()
                .ok()
                .and_then(|i| i.store.error.clone())
                .unwrap_or_default();
            return Err(format!(
                "the store is unreachable ({why}); a global network needs it to stay unique across hosts: try again when `vswitchctl cluster ls` says it is reachable"
            ));
        }
        let vni = spec.vni.unwrap_or(0);
        let given_subnet = spec.subnet.is_some();
        for _ in 0..16 {
            if !given_subnet {
                let prefix = format!("{}subnets/", self.layout.prefix());
                let (kvs, _) = self.etcd.list(&prefix, PAGE)?;
                let taken: BTreeSet<String> = kvs
                    .iter()
                    .filter_map(|k| k.key.strip_prefix(&prefix).map(str::to_string))
                    .collect();
                spec.subnet = Some(core::free_subnet(SUBNET_POOL, &taken).ok_or(
                    "no free /24 left in 10.210.0.0/16 for a global network; give --subnet",
                )?);
            }
            let subnet = spec.subnet.clone().unwrap_or_default();
            let body = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
            let (nk, vk, sk) = (
                self.layout.network(&spec.name),
                self.layout.vni(vni),
                self.layout.subnet(&subnet),
            );
            let ok = self.etcd.put_if_absent(
                &[&nk, &vk, &sk],
                &[
                    (&nk, &body, 0),
                    (&vk, spec.name.as_bytes(), 0),
                    (&sk, spec.name.as_bytes(), 0),
                ],
            )?;
            if ok {
                tracing::info!(network = %spec.name, vni, subnet = %subnet, "global network claimed in the store");
                return Ok(spec);
            }
            // Which claim failed says what to mend.
            let get = |e: &mut Etcd, k: &str| -> Result<Option<Vec<u8>>, String> {
                let end = super::etcd::prefix_end(k.as_bytes());
                let (kvs, _, _) = e.range(k.as_bytes(), &end, 0, 1)?;
                Ok(kvs.into_iter().find(|kv| kv.key == k).map(|kv| kv.value))
            };
            if let Some(v) = get(&mut self.etcd, &nk)? {
                if serde_json::from_slice::<NetworkSpec>(&v).ok().as_ref() == Some(&spec) {
                    return Ok(spec);
                }
                return Err(format!(
                    "network '{}' already exists in the store with another definition; pick another name",
                    spec.name
                ));
            }
            if let Some(v) = get(&mut self.etcd, &vk)? {
                return Err(format!(
                    "VNI {vni} is network '{}' in the store; pick another --vni",
                    String::from_utf8_lossy(&v)
                ));
            }
            if given_subnet && get(&mut self.etcd, &sk)?.is_some() {
                return Err(format!(
                    "subnet {subnet} is taken by another network in the store; pick another --subnet"
                ));
            }
            // Another host took the subnet we picked in the meantime: pick again.
        }
        Err("could not allocate a subnet (the store kept changing); try again".into())
    }

    fn update_info(&self) {
        let Ok(mut i) = self.info.lock() else { return };
        i.store.revision = self.revision();
        i.store.pending = !self.connected
            && core::own_keys(&self.layout, &self.cfg.host_id, &self.local, self.since)
                != self.published;
        if let Some(v) = &self.view {
            // O(hosts): cheap beside what each batch costs.
            let now = unix_now();
            i.hosts = v
                .hosts
                .iter()
                .map(|(id, h)| ClusterHost {
                    id: id.clone(),
                    vtep: h.vtep.map(|v| v.to_string()).unwrap_or_default(),
                    lease_age_secs: now.saturating_sub(h.since),
                    endpoints: v.endpoints_of(id),
                    me: *id == self.cfg.host_id,
                })
                .collect();
            i.networks = v.networks.len() as u32;
            i.leader = v.leader.clone();
            i.key_primary = v.primary;
            i.endpoints = v.endpoints.len() as u64;
        }
    }
}
