//! `network create|ls|inspect|rm`: bridge domains.

use super::*;

pub(super) fn check_network_spec(spec: &NetworkSpec) -> Result<(), ErrorBody> {
    check_name("network", &spec.name, 64).map_err(|m| err(ErrorCode::InvalidArgument, m))?;
    if spec.encrypted && spec.vni.is_none() {
        return Err(err(
            ErrorCode::InvalidArgument,
            "an encrypted network needs a VNI: only overlay traffic is encrypted; add --vni N",
        ));
    }
    if spec.esp_encap.is_some() && !spec.encrypted {
        return Err(err(
            ErrorCode::InvalidArgument,
            "--esp-encap (esp_encap) chooses how ESP travels and needs an encrypted network; add --encrypted",
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

/// Validation: the desired state with one more network, or why not.
impl Desired {
    pub(super) fn create_network(&self, spec: NetworkSpec) -> Result<Desired, ErrorBody> {
        check_network_spec(&spec)?;
        self.check_vni(&spec)?;
        super::nat::check_gateway(&spec, self)?;
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
        let mut next = self.clone();
        next.nets.insert(spec.name.clone(), NetState { spec, id });
        Ok(next)
    }

    /// Removing a network takes its static entries, peers and DNS names with it; its ports must
    /// go first.
    pub(super) fn remove_network(&self, name: &str) -> Result<Desired, ErrorBody> {
        if !self.nets.contains_key(name) {
            return Err(no_network(name));
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
        let svcs: Vec<&str> = self
            .services
            .values()
            .filter(|s| s.spec.network == name)
            .map(|s| s.spec.name.as_str())
            .collect();
        if !svcs.is_empty() {
            return Err(err(
                ErrorCode::Conflict,
                format!("network '{name}' still has services {}; remove them first (vswitchctl service rm NAME)", svcs.join(", ")),
            ));
        }
        let mut next = self.clone();
        next.nets.remove(name);
        next.fdb.retain(|f| f.network != name);
        next.peers.retain(|p| p.network != name);
        next.endpoints.retain(|e| e.network != name);
        next.links.retain(|l| l.a != name && l.b != name);
        Ok(next)
    }

    /// The snapshot's network table (ports, statics and tunnels are added by their files).
    pub(super) fn compile_networks(&self, snap: &mut Snapshot) {
        let max_net = self
            .nets
            .values()
            .map(|n| n.id as usize + 1)
            .max()
            .unwrap_or(0);
        snap.nets = vec![None; max_net];
        for n in self.nets.values() {
            // In range: the vector was sized by the largest id.
            snap.nets[n.id as usize] = Some(NetConf {
                ports: Vec::new(),
                mac_limit: n.spec.mac_limit.unwrap_or(config::DEFAULT_NET_MAC_LIMIT),
                aging_secs: n.spec.aging_secs.unwrap_or(config::DEFAULT_AGING_SECS),
                statics: Vec::new(),
                encrypted: n.spec.encrypted,
                esp_udp: n.spec.esp_encap == Some(control::proto::EspEncap::Udp),
            });
        }
        self.compile_gateways(snap);
    }
}

impl Daemon {
    pub(super) fn network_create(&mut self, spec: NetworkSpec) -> Result<(), ErrorBody> {
        let name = spec.name.clone();
        let next = self.desired.create_network(spec)?;
        let id = next.nets.get(&name).map(|n| n.id);
        self.commit(next)?;
        tracing::info!(network = %name, id, "network created");
        Ok(())
    }

    pub(super) fn network_rm(&mut self, name: &str) -> Result<(), ErrorBody> {
        let next = self.desired.remove_network(name)?;
        let id = self.desired.nets.get(name).map(|n| n.id);
        self.commit(next)?;
        if let Some(id) = id {
            // Its id may serve another network next: what was learned in it goes.
            self.inside.forget_net(id);
        }
        tracing::info!(network = %name, "network removed");
        Ok(())
    }

    pub(super) fn network_info(&self, name: &str) -> Result<NetworkInfo, ErrorBody> {
        let id = self
            .desired
            .nets
            .get(name)
            .ok_or_else(|| no_network(name))?
            .id;
        let dump = self.dump_fdb(Some(id)).unwrap_or_default();
        self.network_info_from(name, &dump)
    }

    pub(super) fn network_info_from(
        &self,
        name: &str,
        dump: &[FdbEntry],
    ) -> Result<NetworkInfo, ErrorBody> {
        let d = &self.desired;
        let n = d.nets.get(name).ok_or_else(|| no_network(name))?;
        let mut ports: Vec<&PortState> = d
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
            static_macs: d.fdb.iter().filter(|f| f.network == name).count() as u64,
            effective_mac_limit: n.spec.mac_limit.unwrap_or(config::DEFAULT_NET_MAC_LIMIT),
            effective_aging_secs: n.spec.aging_secs.unwrap_or(config::DEFAULT_AGING_SECS),
            mtu: n.spec.vni.map(|_| {
                if n.spec.encrypted {
                    let udp = n.spec.esp_encap == Some(control::proto::EspEncap::Udp);
                    crate::esp::overlay_mtu_encap(self.uplink_mtu(), udp)
                } else {
                    self.overlay_mtu()
                }
            }),
            peers: d
                .peers
                .iter()
                .filter(|p| p.network == name)
                .map(|p| p.vtep.clone())
                .collect(),
            links: d
                .links
                .iter()
                .filter_map(|l| {
                    (l.a == name)
                        .then(|| l.b.clone())
                        .or_else(|| (l.b == name).then(|| l.a.clone()))
                })
                .collect(),
        })
    }
}
