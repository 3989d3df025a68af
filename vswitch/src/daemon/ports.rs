//! `port add|ls|inspect|rm`: TAP and AF_XDP ports and VLAN subinterfaces, with their devices and worker queues.

use super::*;

impl Daemon {
    /// The parent port and VID of a VLAN subinterface spec (`PARENT.VID`).
    pub(super) fn vlan_parent(&self, spec: &PortSpec) -> Option<(&PortState, u16)> {
        if spec.kind != PortType::Vlan {
            return None;
        }
        let (parent, vid) = control::text::vlan_subinterface(&spec.name)?;
        let vid = Some(vid).filter(|v| (1..=4094).contains(v))?;
        Some((self.ports.get(parent)?, vid))
    }

    pub(super) fn check_vlan_spec(&self, spec: &PortSpec) -> Result<(), ErrorBody> {
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

    pub(super) fn check_port_spec(&self, spec: &PortSpec) -> Result<(), ErrorBody> {
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
    pub(super) fn port_add(&mut self, spec: PortSpec, persist: bool) -> Result<(), ErrorBody> {
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

    pub(super) fn port_rm(&mut self, name: &str) -> Result<(), ErrorBody> {
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

    pub(super) fn no_port(&self, name: &str) -> ErrorBody {
        err(
            ErrorCode::NotFound,
            format!("port '{name}' does not exist; see vswitchctl port ls"),
        )
    }

    pub(super) fn port_info(&self, name: &str) -> Result<PortInfo, ErrorBody> {
        self.ports.get(name).ok_or_else(|| self.no_port(name))?;
        let dump = self.dump_fdb(None).unwrap_or_default();
        self.port_info_from(name, &dump)
    }

    pub(super) fn port_info_from(
        &self,
        name: &str,
        dump: &[FdbEntry],
    ) -> Result<PortInfo, ErrorBody> {
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
}
