//! The state on disk: restore at start, export, persist (the commit path's step), `config import`.

use super::*;

impl Daemon {
    pub(super) fn state_file(&self) -> PathBuf {
        self.opts.state_dir.join("config.json")
    }

    /// Takes back the persisted configuration: each object is validated against what was
    /// restored before it, what fails is left out (with a log line, and a copy of the whole
    /// document kept beside it), and the rest is committed once, without persisting (the file
    /// stays as it was until the next accepted change). A port whose device cannot be opened
    /// comes back down, with the reason.
    pub(super) fn restore(&mut self) -> Result<(), String> {
        let path = self.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.journal_recover();
                return Ok(());
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let doc: ConfigDoc = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a valid configuration ({e}); fix or move it away to start empty",
                path.display()
            )
        })?;
        if doc.version != CONFIG_VERSION {
            return Err(format!(
                "{} has format version {}, and this vswitchd reads version {CONFIG_VERSION}; \
                 start the vswitchd that wrote it, or move the file away to start empty",
                path.display(),
                doc.version
            ));
        }
        let lim = self.limits();
        let mut next = self.desired.clone();
        let mut failed = 0;
        let mut take = |next: &mut Desired, what: &str, r: Result<Desired, ErrorBody>| match r {
            Ok(d) => *next = d,
            Err(e) => {
                tracing::error!(error = %e, "cannot restore {what}");
                failed += 1;
            }
        };
        for n in doc.networks {
            let what = format!("network '{}'", n.name);
            let r = next.create_network(n);
            take(&mut next, &what, r);
        }
        for p in doc.ports {
            let what = format!("port '{}'", p.name);
            let r = next.restore_port(&lim, p);
            take(&mut next, &what, r);
        }
        // The uplink after its port; the devices are opened at commit, with the uplink known, so
        // ports in overlay networks get the overlay MTU it implies.
        if let Some(u) = doc.uplink {
            let r = next.set_uplink(u);
            take(&mut next, "the uplink", r);
        }
        for p in doc.peers {
            let r = next.add_peer(p);
            take(&mut next, "a peer", r);
        }
        // In place, in one pass (a clone of the state per entry would cost a square).
        let mut refused = 0;
        let _ = next.add_fdb_many(&doc.fdb, |f, r| {
            if let Err(e) = r {
                tracing::error!(error = %e, mac = %f.mac, network = %f.network, "cannot restore a static MAC entry");
                refused += 1;
            }
            Ok(())
        });
        for k in doc.keys {
            let what = format!("key {}", k.tag);
            let r = next.add_key(k);
            take(&mut next, &what, r);
        }
        if let Some(n) = doc.nat {
            let r = next.set_nat(&n);
            take(&mut next, "the NAT settings", r);
        }
        for e in doc.endpoints {
            let what = format!("name '{}' on network '{}'", e.name, e.network);
            let r = next.add_endpoint(e);
            take(&mut next, &what, r);
        }
        for l in doc.links {
            let what = format!("the link of networks '{}' and '{}'", l.a, l.b);
            let r = next.link_networks(&l);
            take(&mut next, &what, r);
        }
        for s in doc.services {
            let what = format!("service '{}'", s.name);
            let r = next.create_service(s);
            take(&mut next, &what, r);
        }
        failed += refused;
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
        self.commit_as(next, Mode::Restore)
            .map_err(|e| format!("cannot restore the configuration: {e}"))?;
        self.journal_recover();
        for name in self.desired.ports.keys() {
            tracing::info!(port = %name, "port restored");
        }
        tracing::info!(
            networks = self.desired.nets.len(),
            ports = self.desired.ports.len(),
            "configuration restored"
        );
        Ok(())
    }

    /// The configuration as one document.
    pub fn export(&self) -> ConfigDoc {
        self.desired.export()
    }

    /// Writes `d` as the state file, atomically (the commit path's persist step).
    pub(super) fn persist(&self, d: &Desired) -> Result<(), ErrorBody> {
        let doc = d.export();
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

    /// Creates what the document has and the daemon lacks; identical objects are left alone.
    /// The whole document is validated into one new desired state and committed once: a
    /// conflicting object, an invalid one, a device that cannot be made or a state file that
    /// cannot be written fails the whole import, and nothing changes.
    pub(super) fn import(&mut self, doc: ConfigDoc) -> Result<ImportSummary, ErrorBody> {
        if doc.version != CONFIG_VERSION {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!(
                    "document version {} is not supported (expected {CONFIG_VERSION})",
                    doc.version
                ),
            ));
        }
        let have = &self.desired;
        let mut summary = ImportSummary::default();
        let mut new_nets = Vec::new();
        for n in &doc.networks {
            match have.nets.get(&n.name) {
                Some(h) if h.spec == *n => summary.unchanged += 1,
                Some(_) => {
                    return Err(err(ErrorCode::Conflict, format!("network '{}' exists with other settings; remove it or edit the document", n.name)));
                }
                None => {
                    networks::check_network_spec(n)?;
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
            match have.ports.get(&p.name) {
                Some(h) if h.spec == *p => summary.unchanged += 1,
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
                        if !have.nets.contains_key(n) && !new_nets.iter().any(|x| &x.name == n) {
                            return Err(no_network(n));
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
        let lim = self.limits();
        let mut next = have.clone();
        let validated = (|| -> Result<(), ErrorBody> {
            for n in new_nets {
                next = next.create_network(n.clone())?;
                summary.created += 1;
            }
            new_ports.sort_by_key(|p| p.kind == PortType::Vlan);
            for p in new_ports {
                next = next.add_port(&lim, p.clone())?;
                summary.created += 1;
            }
            next.add_fdb_many(&doc.fdb, |_, r| {
                if r? {
                    summary.created += 1;
                } else {
                    summary.unchanged += 1;
                }
                Ok(())
            })?;
            if let Some(u) = &doc.uplink {
                let same = next.uplink.as_ref().is_some_and(|have| {
                    have.port == u.port
                        && have.ip == u.ip
                        && have.gateway == u.gateway
                        && have.vxlan_port == u.vxlan_port
                });
                if same {
                    summary.unchanged += 1;
                } else {
                    next = next.set_uplink(u.clone())?;
                    summary.created += 1;
                }
            }
            for p in &doc.peers {
                if next
                    .peers
                    .iter()
                    .any(|q| q.network == p.network && q.vtep == p.vtep)
                {
                    summary.unchanged += 1;
                    continue;
                }
                next = next.add_peer(p.clone())?;
                summary.created += 1;
            }
            for k in &doc.keys {
                match next.keys.iter().find(|h| h.tag == k.tag) {
                    Some(h) if h.key == k.key => summary.unchanged += 1,
                    Some(_) => {
                        return Err(err(
                            ErrorCode::Conflict,
                            format!(
                                "key {} exists with other material; remove it or edit the document",
                                k.tag
                            ),
                        ))
                    }
                    None => {
                        next = next.add_key(k.clone())?;
                        summary.created += 1;
                    }
                }
            }
            if let Some(n) = &doc.nat {
                let was = next.nat.clone();
                next = next.set_nat(n)?;
                if next.nat == was {
                    summary.unchanged += 1;
                } else {
                    summary.created += 1;
                }
            }
            for e in &doc.endpoints {
                let mut lower = e.clone();
                lower.name = lower.name.to_ascii_lowercase();
                if next.endpoints.contains(&lower) {
                    summary.unchanged += 1;
                    continue;
                }
                next = next.add_endpoint(e.clone())?;
                summary.created += 1;
            }
            for l in &doc.links {
                match next.link_networks(l) {
                    Ok(d) => {
                        next = d;
                        summary.created += 1;
                    }
                    Err(e) if e.code == ErrorCode::Conflict => summary.unchanged += 1,
                    Err(e) => return Err(e),
                }
            }
            for s in &doc.services {
                match next.services.get(&s.name) {
                    Some(h) if h.spec == *s => summary.unchanged += 1,
                    Some(_) => {
                        return Err(err(
                            ErrorCode::Conflict,
                            format!(
                                "service '{}' exists with other settings; remove it or edit the document",
                                s.name
                            ),
                        ))
                    }
                    None => {
                        next = next.create_service(s.clone())?;
                        summary.created += 1;
                    }
                }
            }
            Ok(())
        })();
        validated
            .and_then(|()| self.commit(next))
            .map_err(|e| ErrorBody::new(e.code, format!("{} (nothing was imported)", e.message)))?;
        Ok(summary)
    }
}
