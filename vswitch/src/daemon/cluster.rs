//! The daemon's side of the cluster store (`--store`): `cluster.apply` (the agent's batches, each
//! validated over [`Desired`] and committed once), `cluster ls`, the store's line in `status`,
//! global networks claimed before they are made, and this host's state told to the agent.

use super::*;
use crate::store::agent;
use crate::store::core::Local;

/// How long `network create --scope global` waits for the store.
const CLAIM_WAIT: Duration = Duration::from_secs(8);

fn is_store(origin: &Option<String>) -> bool {
    origin.as_deref() == Some(ORIGIN_STORE)
}

/// `d` with the store's keys: new tags added for receive, then the primary switched, then the
/// tags the store no longer has removed (issue 10's order; the store's leader paces the steps).
fn store_keys(mut d: Desired, keys: &[KeySpec], refused: &mut Vec<String>) -> Desired {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_secs());
    for k in keys {
        match d.keys.iter().find(|x| x.tag == k.tag) {
            Some(x) if x.key.eq_ignore_ascii_case(&k.key) => {}
            Some(_) => refused.push(format!(
                "key {}: a different key with this tag is installed here; remove it (vswitchctl key rm --tag {})",
                k.tag, k.tag
            )),
            None => {
                let spec = KeySpec {
                    tag: k.tag,
                    key: k.key.clone(),
                    primary: false,
                    added: now,
                };
                match d.add_key(spec) {
                    Ok(n) => d = n,
                    Err(e) => refused.push(format!("key {}: {}", k.tag, e.message)),
                }
            }
        }
    }
    if let Some(p) = keys.iter().find(|k| k.primary) {
        if d.keys.iter().any(|x| x.tag == p.tag && !x.primary) {
            match d.set_primary_key(p.tag) {
                Ok(n) => d = n,
                Err(e) => refused.push(format!("key {}: {}", p.tag, e.message)),
            }
        }
    }
    let gone: Vec<u32> = d
        .keys
        .iter()
        .filter(|x| !keys.iter().any(|k| k.tag == x.tag))
        .map(|x| x.tag)
        .collect();
    for tag in gone {
        match d.remove_key(tag) {
            Ok(n) => d = n,
            Err(e) => refused.push(format!("key {tag}: {}", e.message)),
        }
    }
    d
}

impl Daemon {
    /// Starts the store agent when the daemon runs with `--store`; `wake` wakes the control
    /// loop when the agent has a batch for it.
    pub fn start_store(&mut self, wake: Box<dyn Fn() + Send>) -> Result<(), String> {
        let Some(cfg) = self.opts.store.clone() else {
            return Ok(());
        };
        tracing::info!(store = %cfg.url, host = %cfg.host_id, prefix = %cfg.prefix, ttl = cfg.ttl, "cluster store agent starting");
        self.store = Some(agent::spawn(cfg, wake)?);
        self.tell_store();
        Ok(())
    }

    /// Writes the state file if a store batch left it behind (each second, and at a stop). A
    /// failure is logged and retried; the running state is unaffected.
    pub fn flush_state(&mut self) {
        if !self.persist_due {
            return;
        }
        match self.persist(&self.desired) {
            Ok(()) => self.persist_due = false,
            Err(e) => {
                tracing::error!(error = %e.message, "cannot write the store's changes to the state file; will retry")
            }
        }
    }

    /// Stops the agent; a clean stop (`revoke`) takes this host's keys out of the store at once.
    pub(super) fn stop_store(&mut self, revoke: bool) {
        if let Some(mut s) = self.store.take() {
            s.stop(revoke);
        }
    }

    /// Serves the batches the agent left: each through [`Daemon::cluster_apply`], what the
    /// `cluster.apply` request runs (the batch is handed over as a value, not encoded as JSON
    /// and decoded again: a list of 100 000 entries spent most of its time there).
    pub fn serve_store(&mut self) {
        let batches: Vec<agent::ApplyMsg> = match &self.store {
            Some(h) => h.applies.try_iter().collect(),
            None => return,
        };
        for (batch, done) in batches {
            let t = Instant::now();
            let r = match self.cluster_apply(batch) {
                Ok(a) => {
                    if let Some(first) = a.refused.first() {
                        tracing::warn!(
                            refused = a.refused.len(),
                            first = %first,
                            "store items refused (the rest applied)"
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(error = %e.message, "the store's batch was refused");
                    Err(e.message)
                }
            };
            tracing::debug!(us = t.elapsed().as_micros() as u64, "store batch served");
            let _ = done.send(r);
        }
        self.tell_store();
    }

    /// Tells the agent this host's state after a commit: the MACs behind its ports as last
    /// read (reading the tables costs a dump; [`Daemon::tell_store_all`] does it each second).
    pub fn tell_store(&mut self) {
        self.tell_store_as(false);
    }

    /// Tells the agent this host's state with the MACs read from the tables (each second).
    pub fn tell_store_all(&mut self) {
        self.tell_store_as(true);
    }

    fn tell_store_as(&mut self, read_tables: bool) {
        let Some(h) = &self.store else {
            return;
        };
        let mut local = self.local_view(read_tables);
        if !read_tables {
            if let Some(last) = h.last_local() {
                local.endpoints = last
                    .endpoints
                    .iter()
                    .filter(|(n, _)| local.members.contains(n))
                    .cloned()
                    .collect();
            }
        }
        if let Some(h) = self.store.as_mut() {
            h.set_local(local);
        }
    }

    /// This host as the store should know it: its uplink address, the global networks it has
    /// ports in, and (with `read_tables`) the MACs behind those ports.
    fn local_view(&self, read_tables: bool) -> Local {
        let mut l = Local {
            vtep: self
                .desired
                .uplink
                .as_ref()
                .and_then(|u| parse_cidr(&u.ip).ok())
                .map(|(ip, _)| ip),
            keys: crate::store::core::KeyAck {
                tags: self.desired.keys.iter().map(|k| k.tag).collect(),
                primary: self.desired.keys.iter().find(|k| k.primary).map(|k| k.tag),
            },
            ..Local::default()
        };
        for n in self.desired.nets.values() {
            if n.spec.scope != Some(Scope::Global) {
                continue;
            }
            let has_ports = self
                .desired
                .ports
                .values()
                .any(|p| p.spec.network.as_deref() == Some(n.spec.name.as_str()));
            if !has_ports {
                continue;
            }
            l.members.insert(n.spec.name.clone());
            if !read_tables {
                continue;
            }
            for e in self.dump_fdb(Some(n.id)).unwrap_or_default() {
                if e.port.is_some() {
                    if let Ok(mac) = parse_mac(&e.mac) {
                        l.endpoints.insert((n.spec.name.clone(), mac));
                    }
                }
            }
        }
        l
    }

    /// `status`'s store line.
    pub(super) fn store_status(&self) -> Option<StoreStatus> {
        let s = self.store.as_ref()?;
        s.info.lock().ok().map(|i| i.store.clone())
    }

    /// `cluster ls`.
    pub(super) fn cluster_ls(&self) -> Result<ClusterInfo, ErrorBody> {
        let s = self.store.as_ref().ok_or_else(|| {
            err(
                ErrorCode::Conflict,
                "this daemon runs without a cluster store; start it with --store etcd://HOST:PORT --host-id NAME",
            )
        })?;
        s.info.lock().map(|i| i.clone()).map_err(|_| {
            err(
                ErrorCode::Internal,
                "the store agent failed; see the daemon log",
            )
        })
    }

    /// `network create --scope global`: checked here first, then claimed in the store (name, VNI
    /// and subnet, allocated when not given); the spec to create.
    pub(super) fn claim_global(&self, spec: NetworkSpec) -> Result<NetworkSpec, ErrorBody> {
        let Some(s) = &self.store else {
            return Err(err(
                ErrorCode::InvalidArgument,
                "--scope global needs a cluster store; start vswitchd with --store etcd://HOST:PORT --host-id NAME, or leave --scope out",
            ));
        };
        crate::store::core::check_global(&spec).map_err(|m| err(ErrorCode::InvalidArgument, m))?;
        self.desired.create_network(spec.clone())?;
        s.create(spec, CLAIM_WAIT)
            .map_err(|m| err(ErrorCode::Conflict, m))
    }

    /// `cluster.apply`: one batch from the store, validated item by item (an item refused is
    /// reported, the rest applied) and committed once.
    pub(super) fn cluster_apply(&mut self, a: ClusterApply) -> Result<ClusterApplied, ErrorBody> {
        let t = Instant::now();
        let only_soft = a.networks.is_empty() && a.keys.is_none();
        let mut next = self.desired.clone();
        let mut refused = Vec::new();
        for mut spec in a.networks {
            spec.scope = Some(Scope::Global);
            match next.nets.get(&spec.name) {
                Some(n) if n.spec == spec => {}
                Some(_) => refused.push(format!(
                    "network '{}': a network of that name exists here with another definition; remove or rename it to join the cluster's",
                    spec.name
                )),
                None => match next.create_network(spec.clone()) {
                    Ok(d) => next = d,
                    Err(e) => refused.push(format!("network '{}': {}", spec.name, e.message)),
                },
            }
        }
        if a.replace {
            next.peers.retain(|p| !is_store(&p.origin));
            next.fdb.retain(|f| !is_store(&f.origin));
        } else {
            let peers: HashSet<(&str, &str)> = a
                .peers_rm
                .iter()
                .map(|p| (p.network.as_str(), p.vtep.as_str()))
                .collect();
            next.peers.retain(|p| {
                !(is_store(&p.origin) && peers.contains(&(p.network.as_str(), p.vtep.as_str())))
            });
            let macs: HashSet<(&str, &str)> = a
                .fdb_rm
                .iter()
                .map(|f| (f.network.as_str(), f.mac.as_str()))
                .collect();
            next.fdb.retain(|f| {
                !(is_store(&f.origin) && macs.contains(&(f.network.as_str(), f.mac.as_str())))
            });
        }
        for mut p in a.peers_add {
            p.origin = Some(ORIGIN_STORE.into());
            match next.check_peer(p.clone()) {
                Ok(p) => next.peers.push(p),
                Err(e) if e.code == ErrorCode::AlreadyExists => {}
                Err(e) => {
                    refused.push(format!("peer {} of '{}': {}", p.vtep, p.network, e.message))
                }
            }
        }
        let adds: Vec<StaticFdb> = a
            .fdb_add
            .into_iter()
            .map(|mut f| {
                f.origin = Some(ORIGIN_STORE.into());
                f
            })
            .collect();
        if adds.len() <= 16 {
            // One change (the common case): a scan, not an index of the whole table.
            for f in adds {
                let r = next.check_fdb(f.clone()).and_then(|f| {
                    match next
                        .fdb
                        .iter()
                        .find(|e| e.network == f.network && e.mac == f.mac)
                    {
                        Some(e) if e.port == f.port && e.vtep == f.vtep => Ok(None),
                        Some(_) => Err(err(
                            ErrorCode::AlreadyExists,
                            format!("a static entry for {} exists", f.mac),
                        )),
                        None => Ok(Some(f)),
                    }
                });
                match r {
                    Ok(Some(f)) => next.fdb.push(f),
                    Ok(None) => {}
                    Err(e) => refused.push(format!("{} in '{}': {}", f.mac, f.network, e.message)),
                }
            }
        } else {
            next.add_fdb_many(&adds, |f, r| {
                if let Err(e) = r {
                    refused.push(format!("{} in '{}': {}", f.mac, f.network, e.message));
                }
                Ok(())
            })?;
        }
        if let Some(keys) = a.keys {
            next = store_keys(next, &keys, &mut refused);
        }
        let validated = t.elapsed();
        if next != self.desired {
            // Peers and remote MACs only: the store holds them and gives them again after a
            // restart, so the state file is written by the next tick rather than per change
            // (100 000 entries cost 0.1 s to write and sync). Networks and keys are written now.
            self.defer_persist = only_soft;
            let r = self.commit(next);
            self.defer_persist = false;
            r?;
        }
        tracing::debug!(
            validate_us = validated.as_micros() as u64,
            commit_us = (t.elapsed() - validated).as_micros() as u64,
            "cluster.apply"
        );
        Ok(ClusterApplied { refused })
    }
}
