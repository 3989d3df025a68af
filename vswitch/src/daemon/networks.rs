//! `network create|ls|inspect|rm`: bridge domains.

use super::*;

impl Daemon {
    pub(super) fn check_network_spec(spec: &NetworkSpec) -> Result<(), ErrorBody> {
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

    pub(super) fn network_create(
        &mut self,
        spec: NetworkSpec,
        persist: bool,
    ) -> Result<(), ErrorBody> {
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

    pub(super) fn network_rm(&mut self, name: &str) -> Result<(), ErrorBody> {
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

    pub(super) fn no_network(&self, name: &str) -> ErrorBody {
        err(
            ErrorCode::NotFound,
            format!(
                "network '{name}' does not exist; create it with: vswitchctl network create {name}"
            ),
        )
    }

    pub(super) fn network_info(&self, name: &str) -> Result<NetworkInfo, ErrorBody> {
        let id = self.nets.get(name).ok_or_else(|| self.no_network(name))?.id;
        let dump = self.dump_fdb(Some(id)).unwrap_or_default();
        self.network_info_from(name, &dump)
    }

    pub(super) fn network_info_from(
        &self,
        name: &str,
        dump: &[FdbEntry],
    ) -> Result<NetworkInfo, ErrorBody> {
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
}
