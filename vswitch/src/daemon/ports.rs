//! `port add|ls|inspect|rm`: TAP and AF_XDP ports and VLAN subinterfaces. Validation over
//! [`Desired`], the ports' share of the snapshot, and what the commit path calls to open a port's
//! device, hand its queues to the workers and take them back.

use super::*;

/// Validation: the desired state with a port more or less, or why not.
impl Desired {
    /// The parent port and VID of a VLAN subinterface spec (`PARENT.VID`).
    pub(super) fn vlan_parent(&self, spec: &PortSpec) -> Option<(&PortState, u16)> {
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
                return Err(no_network(n));
            }
        }
        Ok(())
    }

    /// Every check on a port's spec. With `host` false (a restore), the checks that depend on
    /// the host as it is now (the namespace exists, the workers that the queues need) are left
    /// to the device's opening, where a failure brings the port up down with its reason
    /// instead of losing it; what the document itself says is checked as for a command.
    fn check_port_spec(&self, lim: &Limits, spec: &PortSpec, host: bool) -> Result<(), ErrorBody> {
        let inval = |m: String| err(ErrorCode::InvalidArgument, m);
        check_name("port", &spec.name, 15).map_err(inval)?;
        if let Some(i) = &spec.ifname {
            check_name("interface", i, 15).map_err(inval)?;
        }
        let workers = lim.workers;
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
                return Err(no_network(n));
            }
        }
        if let Some(q) = spec.queues {
            if q == 0 || (host && q > workers) {
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
        if let Some(ns) = spec.netns.as_ref().filter(|_| host) {
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
            // Opened without blocking and checked to be a namespace: a FIFO here once hung
            // the control thread until someone wrote to it.
            if let Err(e) = netns::open(&p) {
                return Err(inval(format!("--netns {ns}: {e}")));
            }
        }
        Ok(())
    }

    /// `port add`: every check on the spec, then [`Desired::place_port`].
    pub(super) fn add_port(&self, lim: &Limits, spec: PortSpec) -> Result<Desired, ErrorBody> {
        self.check_port_spec(lim, &spec, true)?;
        self.place_port(lim, spec)
    }

    /// A port of a restored state file: the document's checks, then [`Desired::place_port`].
    pub(super) fn restore_port(&self, lim: &Limits, spec: PortSpec) -> Result<Desired, ErrorBody> {
        self.check_port_spec(lim, &spec, false)?;
        self.place_port(lim, spec)
    }

    /// Gives a port an id and checks what the daemon's resources allow; the spec itself is taken
    /// as it is (a restore takes back what was accepted before, even if the host changed since).
    pub(super) fn place_port(&self, lim: &Limits, spec: PortSpec) -> Result<Desired, ErrorBody> {
        if self.ports.contains_key(&spec.name) {
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
        if spec.kind == PortType::Tap && lim.tap_offload {
            // Each worker's queue of a TAP with offloads keeps one large buffer ready for the
            // next super-frame; without it, super-frames the kernel was promised it could send
            // would be cut short. Keep a reserve for frames in flight.
            let workers = lim.workers;
            let taps = self
                .ports
                .values()
                .filter(|p| p.spec.kind == PortType::Tap)
                .count()
                + 1;
            let need = taps * usize::from(workers.max(1)) + LARGE_RESERVE;
            let have = lim.large_capacity;
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
        let mut next = self.clone();
        next.ports.insert(spec.name.clone(), PortState { spec, id });
        Ok(next)
    }

    /// `port rm`: not the uplink, not a trunk with subinterfaces; its static entries go with it.
    pub(super) fn remove_port(&self, name: &str) -> Result<Desired, ErrorBody> {
        if self.uplink.as_ref().is_some_and(|u| u.port == name) {
            return Err(err(
                ErrorCode::Conflict,
                format!("port '{name}' is the uplink; set the uplink on another port first"),
            ));
        }
        let Some(id) = self.ports.get(name).map(|p| p.id) else {
            return Err(no_port(name));
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
        let mut next = self.clone();
        next.ports.remove(name);
        next.fdb.retain(|f| f.port.as_deref() != Some(name));
        Ok(next)
    }

    /// The snapshot's ports (in id order), their networks' port lists and VLAN maps.
    pub(super) fn compile_ports(&self, snap: &mut Snapshot) {
        let max_port = self
            .ports
            .values()
            .map(|p| p.id as usize + 1)
            .max()
            .unwrap_or(0);
        snap.ports = vec![None; max_port];
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
            // In range: the vector was sized by the largest id.
            snap.ports[p.id as usize] = Some(PortConf {
                net,
                mac_limit: p.spec.mac_limit.unwrap_or(config::DEFAULT_PORT_MAC_LIMIT),
                mtu: p.spec.mtu.unwrap_or(DEFAULT_MTU),
                parent,
                vlans,
                ..Default::default()
            });
            if let Some(Some(nc)) = net.and_then(|n| snap.nets.get_mut(n as usize)) {
                nc.ports.push(p.id);
            }
        }
    }
}

/// The handlers, and the port's share of the commit path.
impl Daemon {
    pub(super) fn port_add(&mut self, spec: PortSpec) -> Result<(), ErrorBody> {
        let next = self.desired.add_port(&self.limits(), spec)?;
        self.commit(next)
    }

    pub(super) fn port_rm(&mut self, name: &str) -> Result<(), ErrorBody> {
        let next = self.desired.remove_port(name)?;
        self.commit(next)?;
        tracing::info!(port = %name, "port removed");
        Ok(())
    }

    /// Opens port `p`'s device as `next` wants it (`uplink_mtu`: the MTU its uplink will have).
    /// With `strict` a device that cannot be opened is the error; otherwise (a restore) the port
    /// comes up down, with the reason.
    pub(super) fn open_port(
        &self,
        next: &Desired,
        p: &PortState,
        uplink_mtu: u32,
        strict: bool,
    ) -> Result<PortRuntime, ErrorBody> {
        let spec = &p.spec;
        let workers = self.workers.len() as u16;
        let queues = spec.queues.unwrap_or(workers).clamp(1, workers.max(1));
        let ifname = spec.ifname.clone().unwrap_or_else(|| spec.name.clone());
        let ns_path = spec.netns.as_deref().map(netns::path_of);
        let opened = if spec.kind == PortType::Vlan {
            // A subinterface has no device: it sends and receives through its trunk.
            Err(std::io::Error::other("subinterface"))
        } else {
            // A port in an overlay network gets the overlay's MTU unless it names one, so its
            // frames fit in VXLAN on the uplink (as Docker sets a container's MTU on overlays).
            // An encrypted network's ports leave room for ESP too.
            let net = spec.network.as_ref().and_then(|n| next.nets.get(n));
            let in_overlay = net.is_some_and(|n| n.spec.vni.is_some());
            let encrypted = net.is_some_and(|n| n.spec.encrypted);
            let udp = net.is_some_and(|n| n.spec.esp_encap == Some(control::proto::EspEncap::Udp));
            let mtu = spec.mtu.or(in_overlay.then(|| {
                if encrypted {
                    crate::esp::overlay_mtu_encap(uplink_mtu, udp)
                } else {
                    crate::vxlan::overlay_mtu(uplink_mtu)
                }
            }));
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
                    dataplane::port::tap::TapFeatures {
                        offloads: self.opts.tap_offload,
                        tunnel_gso: self.opts.tap_tunnel_gso,
                        gro: self.opts.tap_gro,
                        // Only an uplink (a port in no network) carries ESP in UDP; on a
                        // container's port, a UDP super-frame would only be cut again.
                        uso: self.opts.tap_uso && spec.network.is_none(),
                        uring: self.opts.tap_uring,
                    },
                )
                .map(device::Device::Tap),
            }
        };
        let (device, error) = match opened {
            Ok(d) => (Some(d), None),
            Err(_) if spec.kind == PortType::Vlan => (None, None),
            Err(e) if strict => {
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
        let queues = device
            .as_ref()
            .map_or(queues, |d| d.queue_count().max(1) as u16);
        Ok(PortRuntime {
            device,
            queues,
            error,
            base: self.port_counters(p.id),
        })
    }

    /// Hands an opened port's queues to the workers (before the snapshot that names the port).
    pub(super) fn attach_port(&self, name: &str, id: PortId, rt: &mut PortRuntime) {
        let queues = rt.queues;
        let Some(d) = &mut rt.device else { return };
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
                    let remote = RemoteTx::new(tx, Some((owner.shared.clone(), owner.waker())));
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

    /// Takes a removed port away (after the snapshot without it): its captures end, the
    /// workers drop its queues, then its device goes.
    pub(super) fn release_port(&mut self, name: &str, id: PortId, rt: PortRuntime) {
        self.captures_port_removed(id, name);
        let seqs: Vec<u64> = self
            .workers
            .iter_mut()
            .map(|w| w.send(Command::Detach(id)))
            .collect();
        for (w, seq) in self.workers.iter().zip(seqs) {
            if !w.wait(seq, WORKER_WAIT) {
                tracing::error!(worker = w.id, "worker did not release the port in time");
            }
        }
        if let Some(d) = rt.device {
            let dev = d.name().to_string();
            if let Err(e) = d.destroy() {
                tracing::warn!(port = %name, device = %dev, error = %e, "cannot clear persistence of device");
            }
        }
    }

    pub(super) fn port_info(&self, name: &str) -> Result<PortInfo, ErrorBody> {
        self.desired.ports.get(name).ok_or_else(|| no_port(name))?;
        let dump = self.dump_fdb(None).unwrap_or_default();
        self.port_info_from(name, &dump)
    }

    pub(super) fn port_info_from(
        &self,
        name: &str,
        dump: &[FdbEntry],
    ) -> Result<PortInfo, ErrorBody> {
        let p = self.desired.ports.get(name).ok_or_else(|| no_port(name))?;
        let learned = dump
            .iter()
            .filter(|e| e.kind == "learned" && e.port.as_deref() == Some(name))
            .count() as u64;
        // A subinterface shows its trunk's device, MTU and state.
        let dev_port = self
            .desired
            .vlan_parent(&p.spec)
            .map_or(p, |(parent, _)| parent);
        let dev_rt = self.runtime.get(&dev_port.spec.name);
        let dev = dev_rt.and_then(|r| r.device.as_ref());
        let dev_error = dev_rt.and_then(|r| r.error.as_ref());
        let device = dev_port
            .spec
            .ifname
            .clone()
            .unwrap_or_else(|| dev_port.spec.name.clone());
        let effective_mtu = match dev {
            Some(d) => d.mtu().unwrap_or(dev_port.spec.mtu.unwrap_or(DEFAULT_MTU)),
            None => dev_port.spec.mtu.unwrap_or(DEFAULT_MTU),
        };
        let state = match (dev, dev_error) {
            (Some(_), Some(e)) => format!("down: {e}"),
            (Some(d), None) => match d.mode() {
                Some(m) => format!("up ({m})"),
                None => "up".to_string(),
            },
            (None, Some(e)) => format!("down: {e}"),
            (None, None) => "down".to_string(),
        };
        let own = self.runtime.get(name);
        let own_dev = own.and_then(|r| r.device.as_ref());
        let queue_workers = match (own, own_dev) {
            (Some(r), Some(_)) => (0..r.queues)
                .map(|q| q % self.workers.len().max(1) as u16)
                .collect(),
            _ => Vec::new(),
        };
        Ok(PortInfo {
            spec: p.spec.clone(),
            id: p.id,
            device,
            state,
            queue_count: own_dev.map_or(0, |d| d.queue_count() as u16),
            queue_workers,
            effective_mtu,
            learned_macs: learned,
            counters: self.port_counters_since(p),
        })
    }
}
