//! The state on disk: restore at start, export, persist before acknowledging, `config import`.

use super::*;

impl Daemon {
    pub(super) fn state_file(&self) -> PathBuf {
        self.opts.state_dir.join("config.json")
    }

    pub(super) fn restore(&mut self) -> Result<(), String> {
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

    pub(super) fn persist(&self) -> Result<(), ErrorBody> {
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

    /// Creates what the document has and the daemon lacks; identical objects are left alone and a
    /// conflicting one fails the whole import before anything changes.
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
}
