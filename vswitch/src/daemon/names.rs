//! `endpoint add|rm|ls`: the names the gateways' DNS answers (`crate::dns`), and the snapshot's
//! name table compiled from them and from the services.

use super::*;
use crate::dns::Names;
use std::net::Ipv4Addr;

/// Most names (name and address pairs) the daemon holds, all networks together.
const MAX_ENDPOINTS: usize = 100_000;
/// The TTL of an endpoint's answer: short, as containers come and go.
const ENDPOINT_TTL: u32 = 60;
/// The TTL of a service VIP's answer (a VIP lives as long as its service; Docker's figure).
const SERVICE_VIP_TTL: u32 = 600;

impl Desired {
    /// The desired state with name `e` added, or why not.
    pub(super) fn add_endpoint(&self, e: EndpointSpec) -> Result<Desired, ErrorBody> {
        let inval = |m: String| err(ErrorCode::InvalidArgument, m);
        control::text::check_dns_name(&e.name).map_err(inval)?;
        let net = self
            .nets
            .get(&e.network)
            .ok_or_else(|| no_network(&e.network))?;
        let ip: Ipv4Addr =
            e.ip.parse()
                .map_err(|_| inval(format!("'{}' is not an IPv4 address", e.ip)))?;
        let Ok(Some((subnet, prefix, gw))) = nat::gateway_of(&net.spec) else {
            return Err(inval(format!(
                "network '{}' has no --subnet, so no gateway answers DNS on it; create it with --subnet",
                e.network
            )));
        };
        if !control::text::same_prefix(ip, subnet, prefix) || ip == gw {
            return Err(inval(format!(
                "{ip} is not a host address of network '{}' ({subnet}/{prefix}, gateway {gw})",
                e.network
            )));
        }
        let spec = EndpointSpec {
            name: e.name.to_ascii_lowercase(),
            network: e.network,
            ip: ip.to_string(),
        };
        if self.endpoints.contains(&spec) {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "'{}' already resolves to {} on network '{}'",
                    spec.name, spec.ip, spec.network
                ),
            ));
        }
        if self.endpoints.len() >= MAX_ENDPOINTS {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "too many names ({MAX_ENDPOINTS}); remove some with vswitchctl endpoint rm"
                ),
            ));
        }
        let mut next = self.clone();
        next.endpoints.push(spec);
        Ok(next)
    }

    /// The desired state without name `a.name` on `a.network` (every address of it, or only
    /// `a.ip`), or why not.
    pub(super) fn remove_endpoint(&self, a: &EndpointRmArgs) -> Result<Desired, ErrorBody> {
        if !self.nets.contains_key(&a.network) {
            return Err(no_network(&a.network));
        }
        let name = a.name.to_ascii_lowercase();
        let hit = |e: &EndpointSpec| {
            e.network == a.network && e.name == name && a.ip.as_ref().is_none_or(|ip| *ip == e.ip)
        };
        if !self.endpoints.iter().any(hit) {
            let at =
                a.ip.as_ref()
                    .map(|ip| format!(" at {ip}"))
                    .unwrap_or_default();
            return Err(err(
                ErrorCode::NotFound,
                format!(
                    "no name '{}'{at} on network '{}'; see vswitchctl endpoint ls --network {}",
                    a.name, a.network, a.network
                ),
            ));
        }
        let mut next = self.clone();
        next.endpoints.retain(|e| !hit(e));
        Ok(next)
    }

    /// The snapshot's name table: every endpoint under its network.
    pub(super) fn compile_names(&self, snap: &mut Snapshot) {
        let mut names = Names::default();
        for e in &self.endpoints {
            let (Some(n), Ok(ip)) = (self.nets.get(&e.network), e.ip.parse::<Ipv4Addr>()) else {
                continue;
            };
            names
                .net_mut(n.id, &n.spec.name)
                .add(&e.name, &[ip], false, ENDPOINT_TTL);
        }
        // Services: the name answers the VIP (`--endpoint-mode dnsrr`: every backend that
        // takes new connections, shuffled per query), and `tasks.NAME` every such backend, as
        // Docker's DNS does.
        for s in self.services.values() {
            let Some(n) = self.nets.get(&s.spec.network) else {
                continue;
            };
            let backends: Vec<Ipv4Addr> = s
                .spec
                .backends
                .iter()
                .filter(|b| !b.down && b.weight != Some(0))
                .filter_map(|b| b.ip.parse().ok())
                .collect();
            let net = names.net_mut(n.id, &n.spec.name);
            let vip = s
                .spec
                .vip
                .as_deref()
                .and_then(|v| v.parse::<Ipv4Addr>().ok());
            match vip {
                Some(vip) if s.spec.endpoint_mode.as_deref() != Some("dnsrr") => {
                    net.add(&s.spec.name, &[vip], false, SERVICE_VIP_TTL);
                }
                _ => net.add(&s.spec.name, &backends, true, 0),
            }
            net.add(&format!("tasks.{}", s.spec.name), &backends, true, 0);
        }
        snap.names = std::sync::Arc::new(names);
    }
}

impl Daemon {
    /// `endpoint.add`, `endpoint.rm`, `endpoint.ls`.
    pub(super) fn endpoint_handle(&mut self, c: &str, a: &Value) -> Result<Value, ErrorBody> {
        match c {
            cmd::ENDPOINT_ADD => {
                let e: EndpointSpec = parse_args(c, a)?;
                let next = self.desired.add_endpoint(e)?;
                self.commit(next)?;
                Ok(Value::Null)
            }
            cmd::ENDPOINT_RM => {
                let r: EndpointRmArgs = parse_args(c, a)?;
                let next = self.desired.remove_endpoint(&r)?;
                self.commit(next)?;
                Ok(Value::Null)
            }
            _ => {
                let l: EndpointLsArgs = parse_args(c, a)?;
                if let Some(n) = &l.network {
                    if !self.desired.nets.contains_key(n) {
                        return Err(no_network(n));
                    }
                }
                let list: Vec<&EndpointSpec> = self
                    .desired
                    .endpoints
                    .iter()
                    .filter(|e| l.network.as_ref().is_none_or(|n| *n == e.network))
                    .collect();
                serde_json::to_value(list)
                    .map_err(|e| err(ErrorCode::Internal, format!("encode reply: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: Option<&str>) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            subnet: subnet.map(str::to_string),
            gateway: None,
            vni: None,
            encrypted: false,
            esp_encap: None,
            mac_limit: None,
            aging_secs: None,
            learn_remote: None,
            internal: false,
            scope: None,
        }
    }

    fn ep(name: &str, network: &str, ip: &str) -> EndpointSpec {
        EndpointSpec {
            name: name.into(),
            network: network.into(),
            ip: ip.into(),
        }
    }

    #[test]
    fn endpoints_are_checked_scoped_and_compiled() {
        let d = Desired::default()
            .create_network(net("blue", Some("10.1.0.0/24")))
            .unwrap()
            .create_network(net("red", Some("10.2.0.0/24")))
            .unwrap()
            .create_network(net("l2", None))
            .unwrap();
        let d = d.add_endpoint(ep("Web", "blue", "10.1.0.5")).unwrap();
        let d = d.add_endpoint(ep("web", "blue", "10.1.0.6")).unwrap();
        let d = d.add_endpoint(ep("db", "red", "10.2.0.9")).unwrap();
        for (bad, says) in [
            (ep("web", "blue", "10.1.0.5"), "already resolves"),
            (ep("x", "nope", "10.1.0.5"), "does not exist"),
            (ep("x", "l2", "10.1.0.5"), "has no --subnet"),
            (ep("x", "blue", "10.2.0.5"), "not a host address"),
            (ep("x", "blue", "10.1.0.1"), "not a host address"),
            (ep("x", "blue", "ten"), "not an IPv4 address"),
            (ep("bad name", "blue", "10.1.0.7"), "not a valid DNS name"),
            (ep("a..b", "blue", "10.1.0.7"), "not a valid DNS name"),
        ] {
            let e = d.add_endpoint(bad).unwrap_err();
            assert!(e.message.contains(says), "{e}");
        }
        let snap = d.compile(1, 1500);
        let blue = d.nets["blue"].id;
        let red = d.nets["red"].id;
        let b = snap.names.net(blue).unwrap();
        assert_eq!(
            &*b.get(b"web").unwrap().addrs,
            &[Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(10, 1, 0, 6)]
        );
        assert!(b.get(b"db").is_none(), "names stay in their network");
        assert!(snap.names.net(red).unwrap().get(b"db").is_some());
        assert_eq!(d.export().endpoints.len(), 3);

        let one = EndpointRmArgs {
            name: "WEB".into(),
            network: "blue".into(),
            ip: Some("10.1.0.5".into()),
        };
        let d2 = d.remove_endpoint(&one).unwrap();
        assert_eq!(d2.endpoints.len(), 2);
        let e = d2.remove_endpoint(&one).unwrap_err();
        assert!(e.message.contains("no name 'WEB' at 10.1.0.5"), "{e}");
        let all = EndpointRmArgs { ip: None, ..one };
        assert_eq!(d.remove_endpoint(&all).unwrap().endpoints.len(), 1);
        // A network takes its names with it.
        let d3 = d.remove_network("red").unwrap();
        assert!(d3.endpoints.iter().all(|e| e.network != "red"));
    }
}
