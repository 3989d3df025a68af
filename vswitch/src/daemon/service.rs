//! `service create|ls|inspect|rm` and `service backend add|set|rm`: services (load balancing in
//! the gateway, `crate::service`) as part of the desired state, and their share of the
//! snapshot.
//!
//! A service lives on one network with a subnet (its gateway does the work). Its VIP defaults
//! to the highest free host address of the subnet (Docker takes VIPs from the subnet too); the
//! chosen address is stored, so it survives restarts. Published ports must lie outside NAT's
//! outside port range (a NAT session could otherwise be given the same port) and a UDP one may
//! not be the uplink's VXLAN port. The Maglev table size only grows while a service lives (a
//! new size reshuffles every slot; see `service::maglev`); a restart sizes it for the
//! backends it has.
//!
//! A removed backend's connections go on for the drain timeout (`--drain-timeout` of
//! `service backend rm`, else the service's, default 300 s; 0 resets them at once): the
//! workers give them an end when the snapshot without the backend arrives. The per-removal
//! timeouts are runtime state, not persisted.

use super::*;
use crate::service::{maglev, Backend, PortMap, ServiceTable, Svc};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Seconds a removed backend's connections go on unless told otherwise.
pub(super) const DEFAULT_DRAIN: u32 = 300;
/// Most services.
const MAX_SERVICES: usize = 4096;
/// Highest weight.
const MAX_WEIGHT: u32 = 10_000;
/// Seconds between health checks unless told.
const DEFAULT_CHECK_INTERVAL: u32 = 5;

/// A service as configured, with the size of its Maglev table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SvcState {
    pub(super) spec: ServiceSpec,
    pub(super) table_size: u32,
}

/// One service as a name server sees it ([`Daemon::service_names`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    /// The network the name belongs to (it resolves only there).
    pub network: String,
    /// The service's name.
    pub name: String,
    /// Its VIP (none with `dnsrr`).
    pub vip: Option<Ipv4Addr>,
    /// `--endpoint-mode dnsrr`: the name resolves to every backend's address.
    pub dnsrr: bool,
    /// Backends that take new connections (up, weight above 0).
    pub backends: Vec<Ipv4Addr>,
}

fn inval(m: String) -> ErrorBody {
    err(ErrorCode::InvalidArgument, m)
}

fn no_service(name: &str) -> ErrorBody {
    err(
        ErrorCode::NotFound,
        format!("service '{name}' does not exist; see vswitchctl service ls"),
    )
}

fn parse_ip(what: &str, s: &str) -> Result<Ipv4Addr, ErrorBody> {
    s.parse()
        .map_err(|_| inval(format!("{what} '{s}' is not an IPv4 address")))
}

fn proto_of(m: &PortMapping) -> u8 {
    if m.udp {
        crate::nat::proto::UDP
    } else {
        crate::nat::proto::TCP
    }
}

fn maps(list: &[String], need_target: bool) -> Result<Vec<PortMapping>, ErrorBody> {
    list.iter()
        .map(|p| PortMapping::parse(p, need_target).map_err(inval))
        .collect()
}

impl Desired {
    /// The network, subnet and gateway of a service spec.
    fn service_net(
        &self,
        spec: &ServiceSpec,
    ) -> Result<(NetId, Ipv4Addr, u8, Ipv4Addr), ErrorBody> {
        let n = self
            .nets
            .get(&spec.network)
            .ok_or_else(|| no_network(&spec.network))?;
        match super::nat::gateway_of(&n.spec).map_err(inval)? {
            Some((subnet, prefix, gw)) => Ok((n.id, subnet, prefix, gw)),
            None => Err(inval(format!(
                "network '{}' has no subnet, so no gateway to balance in; create the service on a network made with --subnet",
                spec.network
            ))),
        }
    }

    /// Every VIP in use, but `except`'s.
    fn vips(&self, except: &str) -> Vec<Ipv4Addr> {
        self.services
            .values()
            .filter(|s| s.spec.name != except)
            .filter_map(|s| s.spec.vip.as_deref()?.parse().ok())
            .collect()
    }

    /// A published port of some service in `lo..=hi`, if any (`nat set` must not take it).
    pub(super) fn published_in(&self, lo: u16, hi: u16) -> Option<(String, u16)> {
        self.services.values().find_map(|s| {
            s.spec.publish.iter().find_map(|p| {
                let m = PortMapping::parse(p, true).ok()?;
                (lo..=hi)
                    .contains(&m.port)
                    .then(|| (s.spec.name.clone(), m.port))
            })
        })
    }

    /// Checks backend `b` of `spec` (on a subnet with gateway `gw`); returns its address.
    fn check_backend(
        spec: &ServiceSpec,
        (subnet, prefix, gw): (Ipv4Addr, u8, Ipv4Addr),
        b: &BackendSpec,
    ) -> Result<Ipv4Addr, ErrorBody> {
        let ip = parse_ip("backend", &b.ip)?;
        if !control::text::same_prefix(ip, subnet, prefix) || ip == gw {
            return Err(inval(format!(
                "backend {ip} is not a host address of network '{}' ({subnet}/{prefix}, gateway {gw}); give a container's address on it",
                spec.network
            )));
        }
        if spec.vip.as_deref() == Some(&ip.to_string())
            || spec.ingress_ip.as_deref() == Some(&ip.to_string())
        {
            return Err(inval(format!(
                "backend {ip} is the service's VIP or ingress address; give a container's address"
            )));
        }
        if b.weight.is_some_and(|w| w > MAX_WEIGHT) {
            return Err(inval(format!(
                "--weight {} is out of range; give 0 (drain) to {MAX_WEIGHT}",
                b.weight.unwrap_or_default()
            )));
        }
        Ok(ip)
    }

    /// The desired state with service `spec` (and its backends, when restored) added.
    pub(super) fn create_service(&self, mut spec: ServiceSpec) -> Result<Desired, ErrorBody> {
        check_name("service", &spec.name, 63).map_err(inval)?;
        if self.services.contains_key(&spec.name) {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "service '{}' exists; remove it first (vswitchctl service rm {}) or pick another name",
                    spec.name, spec.name
                ),
            ));
        }
        if self.services.len() >= MAX_SERVICES {
            return Err(inval(format!(
                "there are {MAX_SERVICES} services, the most a switch holds; remove one first"
            )));
        }
        let (_, subnet, prefix, gw) = self.service_net(&spec)?;
        match spec.mode.as_deref() {
            None | Some("ingress" | "host") => {}
            Some(m) => return Err(inval(format!("--mode '{m}' is not ingress or host"))),
        }
        let dnsrr = match spec.endpoint_mode.as_deref() {
            None | Some("vip") => false,
            Some("dnsrr") => true,
            Some(m) => return Err(inval(format!("--endpoint-mode '{m}' is not vip or dnsrr"))),
        };
        let ports = maps(&spec.ports, false)?;
        let publish = maps(&spec.publish, true)?;
        for (i, p) in ports.iter().enumerate() {
            if ports[..i]
                .iter()
                .any(|q| q.port == p.port && q.udp == p.udp)
            {
                return Err(inval(format!("--port {p} is given twice")));
            }
        }
        let nat = super::nat::effective_of(self.nat.as_ref());
        let vxlan = self
            .uplink
            .as_ref()
            .map_or(4789, |u| u.vxlan_port.unwrap_or(4789));
        for (i, p) in publish.iter().enumerate() {
            let dup = publish[..i]
                .iter()
                .any(|q| q.port == p.port && q.udp == p.udp);
            let other = self.services.values().find(|s| {
                maps(&s.spec.publish, true)
                    .unwrap_or_default()
                    .iter()
                    .any(|q| q.port == p.port && q.udp == p.udp)
            });
            if dup {
                return Err(inval(format!("--publish {p} is given twice")));
            }
            if let Some(o) = other {
                return Err(err(
                    ErrorCode::Conflict,
                    format!(
                        "port {} is already published by service '{}'; pick another",
                        p.port, o.spec.name
                    ),
                ));
            }
            if (nat.port_lo..=nat.port_hi).contains(&p.port) {
                return Err(inval(format!(
                    "--publish {p}: port {} is in NAT's outside port range {}-{}; pick a port outside it, or move the range with vswitchctl nat set --port-min/--port-max",
                    p.port, nat.port_lo, nat.port_hi
                )));
            }
            if p.udp && p.port == vxlan {
                return Err(inval(format!(
                    "--publish {p}: UDP port {vxlan} is the uplink's VXLAN port; pick another"
                )));
            }
        }
        match spec.check.as_deref() {
            None if spec.check_interval.is_some() => {
                return Err(inval(
                    "--interval sets how often --check runs; give --check tcp too".into(),
                ))
            }
            None => {}
            Some("tcp") => {
                if check_port(&ports, &publish).is_none() {
                    return Err(inval(
                        "--check tcp connects to the backends' TCP port; give a TCP --port or --publish".into(),
                    ));
                }
                if spec.check_interval.is_some_and(|i| i == 0 || i > 3600) {
                    return Err(inval(format!(
                        "--interval {} is out of range; give 1 to 3600 seconds",
                        spec.check_interval.unwrap_or_default()
                    )));
                }
            }
            Some(c) => {
                return Err(inval(format!(
                    "--check '{c}' is not a check this switch runs; give --check tcp"
                )))
            }
        }
        let taken = self.vips(&spec.name);
        let bcast = Ipv4Addr::from(subnet.to_bits() | !control::text::prefix_mask(prefix));
        if dnsrr {
            if spec.vip.is_some() || !ports.is_empty() {
                return Err(inval(
                    "--endpoint-mode dnsrr has no VIP; leave out --vip and --port (use --publish for published ports)".into(),
                ));
            }
        } else if let Some(v) = spec.vip.as_deref() {
            let ip = parse_ip("--vip", v)?;
            if !control::text::same_prefix(ip, subnet, prefix)
                || ip == gw
                || ip == subnet
                || ip == bcast
            {
                return Err(inval(format!(
                    "--vip {ip} is not a free host address of network '{}' ({subnet}/{prefix}, gateway {gw})",
                    spec.network
                )));
            }
            if taken.contains(&ip) {
                return Err(err(
                    ErrorCode::Conflict,
                    format!("--vip {ip} is another service's VIP; pick another"),
                ));
            }
            spec.vip = Some(ip.to_string());
        } else {
            // The highest free host address of the subnet.
            let backends: Vec<Ipv4Addr> = spec
                .backends
                .iter()
                .filter_map(|b| b.ip.parse().ok())
                .collect();
            let lo = subnet.to_bits().saturating_add(1);
            let mut a = bcast.to_bits().saturating_sub(1);
            let ip = loop {
                if a < lo {
                    return Err(inval(format!(
                        "network '{}' has no free address for a VIP; give one with --vip",
                        spec.network
                    )));
                }
                let ip = Ipv4Addr::from(a);
                if ip != gw && !taken.contains(&ip) && !backends.contains(&ip) {
                    break ip;
                }
                a -= 1;
            };
            spec.vip = Some(ip.to_string());
        }
        if let Some(v) = spec.ingress_ip.as_deref() {
            let ip = parse_ip("--ingress-ip", v)?;
            let vip = spec.vip.as_deref().and_then(|v| v.parse::<Ipv4Addr>().ok());
            if !control::text::same_prefix(ip, subnet, prefix)
                || ip == gw
                || ip == subnet
                || ip == bcast
                || Some(ip) == vip
                || taken.contains(&ip)
            {
                return Err(inval(format!(
                    "--ingress-ip {ip} is not a free host address of network '{}' ({subnet}/{prefix}, gateway {gw}); give this host's own address on it, different on every host",
                    spec.network
                )));
            }
            if let Some(o) = self.services.values().find(|o| {
                o.spec.network == spec.network
                    && o.spec
                        .ingress_ip
                        .as_deref()
                        .is_some_and(|x| x != ip.to_string())
            }) {
                return Err(err(
                    ErrorCode::Conflict,
                    format!(
                        "network '{}' has ingress address {} (service '{}'); a host has one per network: give the same",
                        spec.network,
                        o.spec.ingress_ip.as_deref().unwrap_or_default(),
                        o.spec.name
                    ),
                ));
            }
            spec.ingress_ip = Some(ip.to_string());
        }
        if spec.backends.len() > maglev::MAX_BACKENDS {
            return Err(inval(format!(
                "a service has at most {} backends",
                maglev::MAX_BACKENDS
            )));
        }
        let mut seen = Vec::new();
        for b in &mut spec.backends {
            let ip = Self::check_backend(
                &spec_view(&spec.network, &spec.vip, &spec.ingress_ip),
                (subnet, prefix, gw),
                b,
            )?;
            if seen.contains(&ip) {
                return Err(inval(format!("backend {ip} is given twice")));
            }
            seen.push(ip);
            b.ip = ip.to_string();
        }
        let mut next = self.clone();
        let table_size = maglev::size_for(spec.backends.len());
        next.svc_removed.retain(|(s, _), _| *s != spec.name);
        next.services
            .insert(spec.name.clone(), SvcState { spec, table_size });
        Ok(next)
    }

    /// The desired state without service `name`.
    pub(super) fn remove_service(&self, name: &str) -> Result<Desired, ErrorBody> {
        if !self.services.contains_key(name) {
            return Err(no_service(name));
        }
        let mut next = self.clone();
        next.services.remove(name);
        next.svc_removed.retain(|(s, _), _| s != name);
        next.svc_unhealthy.retain(|(s, _)| s != name);
        Ok(next)
    }

    /// The desired state with backend `a` added to its service.
    pub(super) fn add_backend(&self, a: &BackendArgs) -> Result<Desired, ErrorBody> {
        let s = self
            .services
            .get(&a.service)
            .ok_or_else(|| no_service(&a.service))?;
        let (_, subnet, prefix, gw) = self.service_net(&s.spec)?;
        let b = BackendSpec {
            ip: a.ip.clone(),
            weight: a.weight,
            down: a.down.unwrap_or(false),
        };
        let ip = Self::check_backend(&s.spec, (subnet, prefix, gw), &b)?;
        if s.spec.backends.iter().any(|x| x.ip == ip.to_string()) {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "backend {ip} is already in service '{}'; change it with vswitchctl service backend set",
                    a.service
                ),
            ));
        }
        if s.spec.backends.len() >= maglev::MAX_BACKENDS {
            return Err(inval(format!(
                "service '{}' has {} backends, the most a service takes",
                a.service,
                maglev::MAX_BACKENDS
            )));
        }
        let mut next = self.clone();
        let st = next
            .services
            .get_mut(&a.service)
            .ok_or_else(|| no_service(&a.service))?;
        st.spec.backends.push(BackendSpec {
            ip: ip.to_string(),
            ..b
        });
        st.table_size = st.table_size.max(maglev::size_for(st.spec.backends.len()));
        next.svc_removed.remove(&(a.service.clone(), ip));
        Ok(next)
    }

    /// The desired state with backend `a.ip`'s weight or state changed.
    pub(super) fn set_backend(&self, a: &BackendArgs) -> Result<Desired, ErrorBody> {
        if a.weight.is_none() && a.down.is_none() {
            return Err(inval(
                "service backend set changes nothing; give --weight W, --down or --up".into(),
            ));
        }
        let ip = parse_ip("backend", &a.ip)?.to_string();
        let mut next = self.clone();
        let st = next
            .services
            .get_mut(&a.service)
            .ok_or_else(|| no_service(&a.service))?;
        let b = st
            .spec
            .backends
            .iter_mut()
            .find(|b| b.ip == ip)
            .ok_or_else(|| {
                err(
                    ErrorCode::NotFound,
                    format!(
                        "backend {ip} is not in service '{}'; add it with vswitchctl service backend add",
                        a.service
                    ),
                )
            })?;
        if let Some(w) = a.weight {
            if w > MAX_WEIGHT {
                return Err(inval(format!(
                    "--weight {w} is out of range; give 0 (drain) to {MAX_WEIGHT}"
                )));
            }
            b.weight = Some(w);
        }
        if let Some(d) = a.down {
            b.down = d;
        }
        Ok(next)
    }

    /// The desired state without backend `a.ip` (its connections drain for `a.drain_timeout`).
    pub(super) fn remove_backend(&self, a: &BackendArgs) -> Result<Desired, ErrorBody> {
        let ip = parse_ip("backend", &a.ip)?;
        let mut next = self.clone();
        let st = next
            .services
            .get_mut(&a.service)
            .ok_or_else(|| no_service(&a.service))?;
        let before = st.spec.backends.len();
        st.spec.backends.retain(|b| b.ip != ip.to_string());
        if st.spec.backends.len() == before {
            return Err(err(
                ErrorCode::NotFound,
                format!("backend {ip} is not in service '{}'", a.service),
            ));
        }
        if let Some(d) = a.drain_timeout {
            next.svc_removed.insert((a.service.clone(), ip), d);
        }
        next.svc_unhealthy.remove(&(a.service.clone(), ip));
        Ok(next)
    }

    /// The services of the snapshot.
    pub(super) fn compile_services(&self, snap: &mut Snapshot) {
        let mut list = Vec::with_capacity(self.services.len());
        for s in self.services.values() {
            let Some(net) = self.nets.get(&s.spec.network) else {
                continue;
            };
            let pm = |list: &[String], need: bool| -> Vec<PortMap> {
                maps(list, need)
                    .unwrap_or_default()
                    .iter()
                    .map(|m| PortMap {
                        proto: proto_of(m),
                        port: m.port,
                        target: m.target,
                    })
                    .collect()
            };
            let backends = s
                .spec
                .backends
                .iter()
                .filter_map(|b| {
                    let ip: Ipv4Addr = b.ip.parse().ok()?;
                    let sick = self.svc_unhealthy.contains(&(s.spec.name.clone(), ip));
                    Some(Backend {
                        ip,
                        weight: b.weight.unwrap_or(1),
                        down: b.down || sick,
                    })
                })
                .collect();
            let mut svc = Svc::new(
                s.spec.name.clone(),
                net.id,
                s.spec.vip.as_deref().and_then(|v| v.parse().ok()),
                pm(&s.spec.ports, false),
                pm(&s.spec.publish, true),
                s.spec.mode.as_deref() == Some("host"),
                backends,
                s.table_size,
            );
            svc.drain = s.spec.drain_timeout.unwrap_or(DEFAULT_DRAIN);
            svc.dnsrr = s.spec.endpoint_mode.as_deref() == Some("dnsrr");
            svc.ingress = s.spec.ingress_ip.as_deref().and_then(|v| v.parse().ok());
            if s.spec.check.is_some() {
                let ports = maps(&s.spec.ports, false).unwrap_or_default();
                let publish = maps(&s.spec.publish, true).unwrap_or_default();
                if let Some(p) = check_port(&ports, &publish) {
                    svc.check_port = p;
                    svc.check_interval = s.spec.check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL);
                }
            }
            svc.removed = self
                .svc_removed
                .iter()
                .filter(|((n, _), _)| *n == s.spec.name)
                .map(|((_, ip), d)| (*ip, *d))
                .collect();
            list.push(svc);
        }
        snap.services = std::sync::Arc::new(ServiceTable::new(list));
    }

    /// What `service ls` shows of service `s` (`counts`: live connections per backend).
    fn service_info(&self, s: &SvcState, counts: Option<&HashMap<Ipv4Addr, u64>>) -> ServiceInfo {
        let show = |list: &[String], need: bool| -> Vec<String> {
            maps(list, need)
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let backends: Vec<Backend> = s
            .spec
            .backends
            .iter()
            .filter_map(|b| {
                Some(Backend {
                    ip: b.ip.parse().ok()?,
                    weight: b.weight.unwrap_or(1),
                    down: b.down,
                })
            })
            .collect();
        let svc = Svc::new(
            String::new(),
            0,
            None,
            Vec::new(),
            Vec::new(),
            false,
            backends,
            s.table_size,
        );
        let mut slots = vec![0u64; svc.backends.len()];
        for &i in &svc.table {
            if let Some(c) = slots.get_mut(usize::from(i)) {
                *c += 1;
            }
        }
        let total_slots = svc.table.len().max(1) as f64;
        let mut conns = 0;
        let backends = svc
            .backends
            .iter()
            .zip(&slots)
            .map(|(b, &n)| {
                let c = counts.and_then(|m| m.get(&b.ip)).copied().unwrap_or(0);
                conns += c;
                let sick = self.svc_unhealthy.contains(&(s.spec.name.clone(), b.ip));
                BackendInfo {
                    ip: b.ip.to_string(),
                    weight: b.weight,
                    state: if b.down {
                        "down"
                    } else if sick {
                        "unhealthy"
                    } else if b.weight == 0 {
                        "draining"
                    } else {
                        "up"
                    }
                    .into(),
                    share: n as f64 * 100.0 / total_slots,
                    connections: c,
                }
            })
            .collect();
        ServiceInfo {
            name: s.spec.name.clone(),
            network: s.spec.network.clone(),
            vip: s.spec.vip.clone(),
            ports: show(&s.spec.ports, false),
            publish: show(&s.spec.publish, true),
            mode: s.spec.mode.clone().unwrap_or_else(|| "ingress".into()),
            endpoint_mode: s.spec.endpoint_mode.clone().unwrap_or_else(|| "vip".into()),
            drain_timeout: s.spec.drain_timeout.unwrap_or(DEFAULT_DRAIN),
            check: s.spec.check.as_ref().map(|c| {
                format!(
                    "{c} every {}s",
                    s.spec.check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL)
                )
            }),
            ingress_ip: s.spec.ingress_ip.clone(),
            table_size: s.table_size,
            backends,
            connections: counts.map_or(0, |m| m.values().sum()),
        }
    }
}

/// The backends' port a `tcp` check connects to: the first TCP target.
fn check_port(ports: &[PortMapping], publish: &[PortMapping]) -> Option<u16> {
    ports
        .iter()
        .chain(publish)
        .find(|m| !m.udp)
        .map(|m| m.target)
}

/// A spec with only what [`Desired::check_backend`] reads.
fn spec_view(network: &str, vip: &Option<String>, ingress: &Option<String>) -> ServiceSpec {
    ServiceSpec {
        network: network.to_string(),
        vip: vip.clone(),
        ingress_ip: ingress.clone(),
        ..Default::default()
    }
}

impl Daemon {
    /// Every service as a name server sees it: per network, name, VIP, endpoint mode and the
    /// backends that take new connections (for a DNS stage to answer from).
    pub fn service_names(&self) -> Vec<ServiceName> {
        self.desired
            .services
            .values()
            .map(|s| ServiceName {
                network: s.spec.network.clone(),
                name: s.spec.name.clone(),
                vip: s.spec.vip.as_deref().and_then(|v| v.parse().ok()),
                dnsrr: s.spec.endpoint_mode.as_deref() == Some("dnsrr"),
                backends: s
                    .spec
                    .backends
                    .iter()
                    .filter(|b| !b.down && b.weight != Some(0))
                    .filter_map(|b| b.ip.parse().ok())
                    .collect(),
            })
            .collect()
    }

    /// Takes the health checks' verdicts from worker 0 (which runs them) about once a second:
    /// a backend that failed [`crate::service::stage::CHECK_FAILS`] in a row takes no new
    /// connections until one passes. The verdicts are runtime state, not persisted.
    pub(super) fn service_health(&mut self) {
        if !self
            .desired
            .services
            .values()
            .any(|s| s.spec.check.is_some())
        {
            return;
        }
        let Some(w) = self.workers.first() else {
            return;
        };
        let (tx, rx) = crossbeam::channel::bounded(1);
        w.send(Command::Request(WorkerRequest::ServiceHealth { reply: tx }));
        let Ok(list) = rx.recv_timeout(WORKER_WAIT) else {
            tracing::warn!("worker 0 did not give the health checks' verdicts");
            return;
        };
        let ids: HashMap<&str, NetId> = self
            .desired
            .nets
            .iter()
            .map(|(n, s)| (n.as_str(), s.id))
            .collect();
        let sick_keys: HashSet<(NetId, u32, u16)> = list
            .into_iter()
            .filter(|(_, healthy)| !healthy)
            .map(|(k, _)| k)
            .collect();
        let mut sick = BTreeSet::new();
        for s in self
            .desired
            .services
            .values()
            .filter(|s| s.spec.check.is_some())
        {
            let Some(&net) = ids.get(s.spec.network.as_str()) else {
                continue;
            };
            let ports = maps(&s.spec.ports, false).unwrap_or_default();
            let publish = maps(&s.spec.publish, true).unwrap_or_default();
            let Some(port) = check_port(&ports, &publish) else {
                continue;
            };
            for b in &s.spec.backends {
                let Ok(ip) = b.ip.parse::<Ipv4Addr>() else {
                    continue;
                };
                if sick_keys.contains(&(net, ip.to_bits(), port)) {
                    sick.insert((s.spec.name.clone(), ip));
                }
            }
        }
        if sick == self.desired.svc_unhealthy {
            return;
        }
        for (s, ip) in sick.difference(&self.desired.svc_unhealthy) {
            tracing::warn!(service = %s, backend = %ip, "backend failed its health checks: no new connections");
        }
        for (s, ip) in self.desired.svc_unhealthy.difference(&sick) {
            tracing::info!(service = %s, backend = %ip, "backend passes its health check again");
        }
        let mut next = self.desired.clone();
        next.svc_unhealthy = sick;
        if let Err(e) = self.commit(next) {
            tracing::error!(error = %e, "cannot apply the health checks' verdicts");
        }
    }

    /// Live connections per backend of service `name`, from every worker.
    fn service_counts(&self, name: &str) -> Result<HashMap<Ipv4Addr, u64>, ErrorBody> {
        let mut m = HashMap::new();
        for w in &self.workers {
            let (tx, rx) = crossbeam::channel::bounded(1);
            w.send(Command::Request(WorkerRequest::ServiceConns { reply: tx }));
            let list = rx.recv_timeout(WORKER_WAIT).map_err(|_| {
                err(
                    ErrorCode::Internal,
                    format!("worker {} did not answer; see the daemon log", w.id),
                )
            })?;
            for c in list.into_iter().filter(|c| c.service == name) {
                *m.entry(c.backend).or_default() += c.conns;
            }
        }
        Ok(m)
    }

    /// `service.*`.
    pub(super) fn service_handle(&mut self, c: &str, a: &Value) -> Result<Value, ErrorBody> {
        let to_value = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| err(ErrorCode::Internal, format!("encode reply: {e}")))
        };
        let info = |d: &Daemon, name: &str| -> Result<Value, ErrorBody> {
            let s = d
                .desired
                .services
                .get(name)
                .ok_or_else(|| no_service(name))?;
            to_value(serde_json::to_value(d.desired.service_info(s, None)))
        };
        match c {
            cmd::SERVICE_CREATE => {
                let spec: ServiceSpec = parse_args(c, a)?;
                let name = spec.name.clone();
                let next = self.desired.create_service(spec)?;
                self.commit(next)?;
                tracing::info!(service = %name, "service created");
                info(self, &name)
            }
            cmd::SERVICE_LS => {
                let list: Vec<ServiceInfo> = self
                    .desired
                    .services
                    .values()
                    .map(|s| self.desired.service_info(s, None))
                    .collect();
                to_value(serde_json::to_value(list))
            }
            cmd::SERVICE_INSPECT => {
                let a: NameArgs = parse_args(c, a)?;
                let s = self
                    .desired
                    .services
                    .get(&a.name)
                    .ok_or_else(|| no_service(&a.name))?;
                let counts = self.service_counts(&a.name)?;
                to_value(serde_json::to_value(
                    self.desired.service_info(s, Some(&counts)),
                ))
            }
            cmd::SERVICE_RM => {
                let a: NameArgs = parse_args(c, a)?;
                let next = self.desired.remove_service(&a.name)?;
                self.commit(next)?;
                tracing::info!(service = %a.name, "service removed");
                Ok(Value::Null)
            }
            _ => {
                let args: BackendArgs = parse_args(c, a)?;
                let next = match c {
                    cmd::SERVICE_BACKEND_ADD => self.desired.add_backend(&args)?,
                    cmd::SERVICE_BACKEND_SET => self.desired.set_backend(&args)?,
                    _ => self.desired.remove_backend(&args)?,
                };
                self.commit(next)?;
                tracing::info!(service = %args.service, backend = %args.ip, "{c}");
                info(self, &args.service)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(d: &Desired) -> Desired {
        d.create_network(NetworkSpec {
            name: "blue".into(),
            subnet: Some("10.1.0.0/24".into()),
            gateway: None,
            vni: None,
            encrypted: false,
            esp_encap: None,
            mac_limit: None,
            aging_secs: None,
            learn_remote: None,
            internal: false,
            scope: None,
        })
        .unwrap()
    }

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            network: "blue".into(),
            ports: vec!["80:8080".into()],
            publish: vec!["8080:8080/tcp".into()],
            ..Default::default()
        }
    }

    fn backend(ip: &str, weight: Option<u32>) -> BackendArgs {
        BackendArgs {
            service: "web".into(),
            ip: ip.into(),
            weight,
            ..Default::default()
        }
    }

    #[test]
    fn services_validate_choose_a_vip_and_reach_the_snapshot() {
        let d = net(&Desired::default());
        let d = d.create_service(spec("web")).unwrap();
        assert_eq!(
            d.services["web"].spec.vip.as_deref(),
            Some("10.1.0.254"),
            "the highest free address"
        );
        let d = d.add_backend(&backend("10.1.0.3", Some(2))).unwrap();
        let d = d.add_backend(&backend("10.1.0.4", None)).unwrap();
        let d = d
            .set_backend(&BackendArgs {
                down: Some(true),
                ..backend("10.1.0.4", None)
            })
            .unwrap();
        let snap = d.compile(1, 1500);
        let t = &snap.services;
        assert_eq!(t.services.len(), 1);
        let s = &t.services[0];
        assert_eq!(s.backends.len(), 2);
        assert!(
            s.table.iter().all(|&i| i == 0),
            "the down backend has no slot"
        );
        assert_eq!(t.published(crate::nat::proto::TCP, 8080), Some((0, 8080)));
        assert!(t.is_vip(s.net, u32::from(Ipv4Addr::new(10, 1, 0, 254))));
        assert_eq!(d.export().services.len(), 1);
        assert_eq!(d.export().services[0].backends.len(), 2);

        // A second service takes the next VIP down; errors say how to mend.
        let d2 = d.create_service(ServiceSpec {
            publish: vec![],
            ..spec("api")
        });
        assert_eq!(
            d2.unwrap().services["api"].spec.vip.as_deref(),
            Some("10.1.0.253")
        );
        for (bad, says) in [
            (spec("web"), "exists"),
            (
                ServiceSpec {
                    publish: vec!["8080:80".into()],
                    ..spec("x")
                },
                "already published by service 'web'",
            ),
            (
                ServiceSpec {
                    publish: vec!["40000:80".into()],
                    ..spec("x")
                },
                "NAT's outside port range",
            ),
            (
                ServiceSpec {
                    publish: vec!["9000".into()],
                    ..spec("x")
                },
                "needs a target",
            ),
            (
                ServiceSpec {
                    vip: Some("10.2.0.5".into()),
                    publish: vec![],
                    ..spec("x")
                },
                "not a free host address",
            ),
            (
                ServiceSpec {
                    endpoint_mode: Some("dnsrr".into()),
                    publish: vec![],
                    ..spec("x")
                },
                "dnsrr has no VIP",
            ),
            (
                ServiceSpec {
                    network: "red".into(),
                    ..spec("x")
                },
                "does not exist",
            ),
        ] {
            let e = d.create_service(bad).unwrap_err();
            assert!(e.message.contains(says), "{e}");
        }
        // The ingress address: a free host address, one per network.
        let d3 = d
            .create_service(ServiceSpec {
                publish: vec![],
                ingress_ip: Some("10.1.0.250".into()),
                check: Some("tcp".into()),
                ..spec("mesh")
            })
            .unwrap();
        assert_eq!(
            d3.compile(9, 1500).services.ingress_of(1),
            Some(u32::from(Ipv4Addr::new(10, 1, 0, 250)))
        );
        let e = d3
            .create_service(ServiceSpec {
                publish: vec![],
                ingress_ip: Some("10.1.0.249".into()),
                ..spec("mesh2")
            })
            .unwrap_err();
        assert!(e.message.contains("one per network"), "{e}");
        let e = d
            .create_service(ServiceSpec {
                publish: vec![],
                ingress_ip: Some("10.1.0.1".into()),
                ..spec("x")
            })
            .unwrap_err();
        assert!(e.message.contains("--ingress-ip 10.1.0.1"), "{e}");
        let e = d
            .create_service(ServiceSpec {
                check_interval: Some(3),
                publish: vec![],
                ..spec("x")
            })
            .unwrap_err();
        assert!(e.message.contains("give --check tcp"), "{e}");
        let e = d.add_backend(&backend("10.9.0.3", None)).unwrap_err();
        assert!(e.message.contains("not a host address"), "{e}");
        let e = d.add_backend(&backend("10.1.0.3", None)).unwrap_err();
        assert!(e.message.contains("already in service"), "{e}");
        let e = d.set_backend(&backend("10.1.0.3", None)).unwrap_err();
        assert!(e.message.contains("changes nothing"), "{e}");

        // Removal with a drain timeout reaches the workers' snapshot.
        let d = d
            .remove_backend(&BackendArgs {
                drain_timeout: Some(5),
                ..backend("10.1.0.3", None)
            })
            .unwrap();
        let snap = d.compile(2, 1500);
        assert_eq!(
            snap.services.services[0].removed,
            vec![(Ipv4Addr::new(10, 1, 0, 3), 5)]
        );
        let e = d.remove_network("blue").unwrap_err();
        assert!(e.message.contains("service"), "{e}");
        let d = d.remove_service("web").unwrap();
        assert!(d.compile(3, 1500).services.is_empty());
    }
}
