//! `fdb ls|add|rm`: the MAC table, as the workers hold it, and static entries (validation over
//! [`Desired`] and their share of the snapshot).

use super::*;

impl Daemon {
    pub(super) fn dump_fdb(&self, net: Option<NetId>) -> Result<Vec<FdbEntry>, ErrorBody> {
        self.dump_fdb_page(net, None, usize::MAX)
    }

    /// The first `limit` entries after `after` (all workers' tables merged), in (network id,
    /// MAC) order. Each worker returns only its own first `limit`, so a page costs the control
    /// thread O(workers x limit), not O(table).
    pub(super) fn dump_fdb_page(
        &self,
        net: Option<NetId>,
        after: Option<(NetId, [u8; 6])>,
        limit: usize,
    ) -> Result<Vec<FdbEntry>, ErrorBody> {
        let net_names: HashMap<NetId, &str> = self
            .desired
            .nets
            .values()
            .map(|n| (n.id, n.spec.name.as_str()))
            .collect();
        let port_names: HashMap<PortId, &str> = self
            .desired
            .ports
            .values()
            .map(|p| (p.id, p.spec.name.as_str()))
            .collect();
        // Each worker learns on its own; merge, static first, then the freshest sighting.
        let mut merged: BTreeMap<(NetId, [u8; 6]), (PortId, bool, u64)> = BTreeMap::new();
        for w in &self.workers {
            let (tx, rx) = crossbeam::channel::bounded(1);
            w.send(Command::Request(WorkerRequest::FdbDump {
                net,
                after,
                limit,
                reply: tx,
            }));
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
            .take(limit)
            .filter_map(|((n, mac), (port, is_static, age))| {
                Some(FdbEntry {
                    network: net_names.get(&n)?.to_string(),
                    mac: format_mac(&mac),
                    port: port_names.get(&port).map(|s| s.to_string()),
                    vtep: self.desired.tunnel_of(port).map(|(_, ip)| ip.to_string()),
                    kind: if is_static { "static" } else { "learned" }.to_string(),
                    age_secs: (!is_static).then_some(age),
                })
            })
            .collect())
    }

    /// `fdb ls`: a page, or the whole table when it is small enough for one reply.
    pub(super) fn fdb_ls(&self, a: &FdbLsArgs) -> Result<Vec<FdbEntry>, ErrorBody> {
        let net = match a.network.as_deref() {
            Some(n) => Some(self.desired.nets.get(n).ok_or_else(|| no_network(n))?.id),
            None => None,
        };
        let after = match &a.after {
            None => None,
            Some(c) => {
                let id = self
                    .desired
                    .nets
                    .get(&c.network)
                    .map(|n| n.id)
                    .ok_or_else(|| {
                        err(
                            ErrorCode::NotFound,
                            format!(
                            "the cursor's network '{}' no longer exists; list again from the start",
                            c.network
                        ),
                        )
                    })?;
                let mac = parse_mac(&c.mac)
                    .map_err(|m| err(ErrorCode::InvalidArgument, format!("cursor: {m}")))?;
                Some((id, mac))
            }
        };
        let page = match a.limit {
            Some(l) if l == 0 || l > FDB_PAGE_MAX => {
                return Err(err(
                    ErrorCode::InvalidArgument,
                    format!("limit {l} is out of range; give 1 to {FDB_PAGE_MAX}"),
                ))
            }
            Some(l) => l as usize,
            None => FDB_PAGE_MAX as usize + 1,
        };
        let entries = self.dump_fdb_page(net, after, page)?;
        if a.limit.is_none() && entries.len() > FDB_PAGE_MAX as usize {
            return Err(err(
                ErrorCode::TooLong,
                format!(
                    "the MAC table holds more than {FDB_PAGE_MAX} entries, too many for one \
                     reply; ask for pages with \"limit\" and \"after\" (vswitchctl fdb ls \
                     pages by itself)"
                ),
            ));
        }
        Ok(entries)
    }

    pub(super) fn fdb_add(&mut self, f: StaticFdb) -> Result<(), ErrorBody> {
        let next = self.desired.add_fdb(f)?;
        self.commit(next)
    }

    /// A static entry is removed from the desired state; a learned one is forgotten by the
    /// workers (nothing to persist).
    pub(super) fn fdb_rm(&mut self, a: FdbRmArgs) -> Result<(), ErrorBody> {
        let mac = parse_mac(&a.mac).map_err(|m| err(ErrorCode::InvalidArgument, m))?;
        let net = self
            .desired
            .nets
            .get(&a.network)
            .ok_or_else(|| no_network(&a.network))?
            .id;
        let text = format_mac(&mac);
        if let Some(next) = self.desired.remove_fdb(&a.network, &text) {
            return self.commit(next);
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
}

/// Validation: the desired state with a static entry more or less, or why not.
impl Desired {
    pub(super) fn add_fdb(&self, f: StaticFdb) -> Result<Desired, ErrorBody> {
        let f = self.check_fdb(f)?;
        if self
            .fdb
            .iter()
            .any(|e| e.network == f.network && e.mac == f.mac)
        {
            return Err(fdb_exists(&f));
        }
        let mut next = self.clone();
        next.fdb.push(f);
        Ok(next)
    }

    /// Adds many static entries in place (import, restore): each checked as [`Desired::add_fdb`]
    /// does, in time linear in the table, not its square. An entry identical to one present is
    /// skipped; `on` hears of each entry's fate (`Ok(true)`: added, `Ok(false)`: unchanged),
    /// and returning an error from it stops the whole batch.
    pub(super) fn add_fdb_many<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a StaticFdb>,
        mut on: impl FnMut(&StaticFdb, Result<bool, ErrorBody>) -> Result<(), ErrorBody>,
    ) -> Result<(), ErrorBody> {
        let mut have: HashMap<(String, String), usize> = self
            .fdb
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.network.clone(), e.mac.clone()), i))
            .collect();
        for given in entries {
            let r = self.check_fdb(given.clone()).and_then(|f| {
                let key = (f.network.clone(), f.mac.clone());
                match have.get(&key).and_then(|&i| self.fdb.get(i)) {
                    Some(e) if e.port == f.port && e.vtep == f.vtep => Ok(false),
                    Some(_) => Err(fdb_exists(&f)),
                    None => {
                        have.insert(key, self.fdb.len());
                        self.fdb.push(f);
                        Ok(true)
                    }
                }
            });
            on(given, r)?;
        }
        Ok(())
    }

    /// A static entry's own checks, against networks and ports; the entry in canonical form.
    pub(super) fn check_fdb(&self, mut f: StaticFdb) -> Result<StaticFdb, ErrorBody> {
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
            return Err(no_network(&f.network));
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
                let port = self.ports.get(p).ok_or_else(|| no_port(p))?;
                if port.spec.network.as_deref() != Some(f.network.as_str()) {
                    return Err(err(
                        ErrorCode::Conflict,
                        format!("port '{p}' is not in network '{}'", f.network),
                    ));
                }
            }
        }
        Ok(f)
    }

    /// Without the static entry for `mac` (canonical text) in `network`; `None` when there is
    /// none (the MAC may still be learned).
    pub(super) fn remove_fdb(&self, network: &str, mac: &str) -> Option<Desired> {
        let i = self
            .fdb
            .iter()
            .position(|e| e.network == network && e.mac == mac)?;
        let mut next = self.clone();
        next.fdb.remove(i);
        Some(next)
    }

    /// The static entries on ports (those on VTEPs are the overlay's share).
    pub(super) fn compile_fdb(&self, snap: &mut Snapshot) {
        for f in &self.fdb {
            let (Some(n), Some(p), Ok(mac)) = (
                self.nets.get(&f.network),
                f.port.as_ref().and_then(|p| self.ports.get(p)),
                parse_mac(&f.mac),
            ) else {
                continue;
            };
            if let Some(Some(nc)) = snap.nets.get_mut(n.id as usize) {
                nc.statics.push((mac, p.id));
            }
        }
    }
}

fn fdb_exists(f: &StaticFdb) -> ErrorBody {
    err(
        ErrorCode::AlreadyExists,
        format!(
            "a static entry for {} in network '{}' exists; remove it first with vswitchctl fdb rm",
            f.mac, f.network
        ),
    )
}
