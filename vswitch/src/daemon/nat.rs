//! `nat set|ls|stats`, and the gateways and NAT settings of the snapshot: each network with a
//! subnet gets a gateway (the given `--gateway`, or the subnet's first address) that routes
//! out through the uplink with source NAT, unless the network is `--internal`.

use super::*;
use crate::config::GatewayConf;
use crate::nat::{NatConfig, Timeouts, DEFAULT_PORTS, DEFAULT_SESSIONS};
use std::net::Ipv4Addr;

/// `nat ls` shows at most this many sessions unless told otherwise.
const DEFAULT_LS_LIMIT: u32 = 1000;
/// Most sessions per worker `nat set --sessions` accepts (64 bytes each, plus 16 of index).
const MAX_SESSIONS: u32 = 1 << 24;

/// The gateway of a network spec: its subnet, prefix and gateway address, if it has a subnet.
pub(super) fn gateway_of(spec: &NetworkSpec) -> Result<Option<(Ipv4Addr, u8, Ipv4Addr)>, String> {
    let Some(s) = &spec.subnet else {
        return Ok(None);
    };
    let (addr, len) = control::text::parse_cidr(s)?;
    let net = Ipv4Addr::from(addr.to_bits() & control::text::prefix_mask(len));
    let gw = match &spec.gateway {
        Some(g) => g
            .parse()
            .map_err(|_| format!("gateway '{g}' is not an IPv4 address"))?,
        None if len >= 31 => {
            return Err(format!(
                "subnet {s} has no room for a gateway and hosts; use a prefix of /30 or shorter"
            ))
        }
        None => Ipv4Addr::from(net.to_bits() + 1),
    };
    Ok(Some((net, len, gw)))
}

/// Checks what `network create` asks of the gateway (beyond the subnet's syntax): a gateway
/// that is a host address of the subnet, `--internal` only with a subnet, and a subnet that
/// overlaps no other network's.
pub(super) fn check_gateway(spec: &NetworkSpec, others: &Desired) -> Result<(), ErrorBody> {
    let inval = |m: String| err(ErrorCode::InvalidArgument, m);
    let Some((net, len, gw)) = gateway_of(spec).map_err(inval)? else {
        if spec.internal {
            return Err(inval(
                "--internal needs a --subnet (the network's gateway is what it has no way out of)"
                    .into(),
            ));
        }
        return Ok(());
    };
    let bcast = net.to_bits() | !control::text::prefix_mask(len);
    if len < 31 && (gw == net || gw.to_bits() == bcast) {
        return Err(inval(format!(
            "gateway {gw} is the subnet's network or broadcast address; give a host address"
        )));
    }
    for other in others.nets.values() {
        let Ok(Some((o_net, o_len, _))) = gateway_of(&other.spec) else {
            continue;
        };
        let l = len.min(o_len);
        if control::text::same_prefix(net, o_net, l) {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "subnet {} overlaps network '{}' ({}); networks must not share addresses",
                    spec.subnet.as_deref().unwrap_or_default(),
                    other.spec.name,
                    other.spec.subnet.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// The effective settings: the defaults overlaid with `s`.
fn effective(s: Option<&NatSettings>) -> NatConfig {
    let d = Timeouts::DEFAULT;
    let s = s.cloned().unwrap_or_default();
    NatConfig {
        timeouts: Timeouts {
            tcp_syn: s.tcp_syn.unwrap_or(d.tcp_syn),
            tcp_established: s.tcp_established.unwrap_or(d.tcp_established),
            tcp_fin: s.tcp_fin.unwrap_or(d.tcp_fin),
            tcp_time_wait: s.tcp_time_wait.unwrap_or(d.tcp_time_wait),
            tcp_rst: s.tcp_rst.unwrap_or(d.tcp_rst),
            udp: s.udp.unwrap_or(d.udp),
            icmp: s.icmp.unwrap_or(d.icmp),
        },
        port_lo: s.port_min.unwrap_or(DEFAULT_PORTS.0),
        port_hi: s.port_max.unwrap_or(DEFAULT_PORTS.1),
        sessions: s.sessions.unwrap_or(DEFAULT_SESSIONS),
    }
}

/// The effective settings of `s` (for other files' checks).
pub(super) fn effective_of(s: Option<&NatSettings>) -> NatConfig {
    effective(s)
}

/// All settings in effect, as the protocol shows them.
fn shown(c: &NatConfig) -> NatSettings {
    let t = c.timeouts;
    NatSettings {
        tcp_syn: Some(t.tcp_syn),
        tcp_established: Some(t.tcp_established),
        tcp_fin: Some(t.tcp_fin),
        tcp_time_wait: Some(t.tcp_time_wait),
        tcp_rst: Some(t.tcp_rst),
        udp: Some(t.udp),
        icmp: Some(t.icmp),
        port_min: Some(c.port_lo),
        port_max: Some(c.port_hi),
        sessions: Some(c.sessions),
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        crate::nat::proto::TCP => "tcp",
        crate::nat::proto::UDP => "udp",
        _ => "icmp",
    }
}

impl Desired {
    /// The desired state with NAT settings `s` laid over the current ones, or why not.
    pub(super) fn set_nat(&self, s: &NatSettings) -> Result<Desired, ErrorBody> {
        let inval = |m: String| err(ErrorCode::InvalidArgument, m);
        let mut merged = self.nat.clone().unwrap_or_default();
        let timeouts = [
            ("--tcp-syn", s.tcp_syn, &mut merged.tcp_syn),
            (
                "--tcp-established",
                s.tcp_established,
                &mut merged.tcp_established,
            ),
            ("--tcp-fin", s.tcp_fin, &mut merged.tcp_fin),
            (
                "--tcp-time-wait",
                s.tcp_time_wait,
                &mut merged.tcp_time_wait,
            ),
            ("--tcp-rst", s.tcp_rst, &mut merged.tcp_rst),
            ("--udp", s.udp, &mut merged.udp),
            ("--icmp", s.icmp, &mut merged.icmp),
        ];
        for (flag, v, slot) in timeouts {
            if let Some(v) = v {
                if v == 0 || v > 86_400 * 7 {
                    return Err(inval(format!(
                        "{flag} {v} is out of range; give 1 to 604800 seconds"
                    )));
                }
                *slot = Some(v);
            }
        }
        if let Some(p) = s.port_min {
            merged.port_min = Some(p);
        }
        if let Some(p) = s.port_max {
            merged.port_max = Some(p);
        }
        if let Some(n) = s.sessions {
            if n == 0 || n > MAX_SESSIONS {
                return Err(inval(format!(
                    "--sessions {n} is out of range; give 1 to {MAX_SESSIONS} per worker"
                )));
            }
            merged.sessions = Some(n);
        }
        let c = effective(Some(&merged));
        if c.port_lo < 1024 || c.port_lo > c.port_hi {
            return Err(inval(format!(
                "port range {}-{} is not valid; give 1024 <= --port-min <= --port-max",
                c.port_lo, c.port_hi
            )));
        }
        if let Some((svc, p)) = self.published_in(c.port_lo, c.port_hi) {
            return Err(inval(format!(
                "port range {}-{} takes port {p}, published by service '{svc}'; leave it out of the range",
                c.port_lo, c.port_hi
            )));
        }
        let mut next = self.clone();
        next.nat = (merged != NatSettings::default()).then_some(merged);
        Ok(next)
    }

    /// The snapshot's gateways (one per network with a subnet).
    pub(super) fn compile_gateways(&self, snap: &mut Snapshot) {
        let mut gws: Vec<Option<GatewayConf>> = Vec::new();
        for n in self.nets.values() {
            let Ok(Some((subnet, prefix, ip))) = gateway_of(&n.spec) else {
                continue;
            };
            let i = usize::from(n.id);
            if gws.len() <= i {
                gws.resize(i + 1, None);
            }
            gws[i] = Some(GatewayConf {
                ip,
                subnet,
                prefix,
                mac: GatewayConf::mac_of(n.id),
                internal: n.spec.internal,
            });
        }
        snap.gateways = gws;
    }

    /// The snapshot's NAT settings.
    pub(super) fn compile_nat(&self, snap: &mut Snapshot) {
        snap.nat = effective(self.nat.as_ref());
    }

    /// The desired state with networks `l.a` and `l.b` routed to each other, or why not.
    pub(super) fn link_networks(&self, l: &NetLink) -> Result<Desired, ErrorBody> {
        let pair = self.link_pair(l)?;
        if self.links.contains(&pair) {
            return Err(err(
                ErrorCode::Conflict,
                format!("networks '{}' and '{}' are already linked", l.a, l.b),
            ));
        }
        for n in [&pair.a, &pair.b] {
            let spec = &self.nets[n].spec;
            if !matches!(gateway_of(spec), Ok(Some(_))) {
                return Err(err(
                    ErrorCode::InvalidArgument,
                    format!("network '{n}' has no --subnet, so no gateway to route through; only networks with a subnet can be linked"),
                ));
            }
        }
        let mut next = self.clone();
        next.links.push(pair);
        next.links.sort();
        Ok(next)
    }

    /// The desired state without the link between `l.a` and `l.b`, or why not.
    pub(super) fn unlink_networks(&self, l: &NetLink) -> Result<Desired, ErrorBody> {
        let pair = self.link_pair(l)?;
        if !self.links.contains(&pair) {
            return Err(err(
                ErrorCode::NotFound,
                format!(
                    "networks '{}' and '{}' are not linked; see vswitchctl network inspect {}",
                    l.a, l.b, l.a
                ),
            ));
        }
        let mut next = self.clone();
        next.links.retain(|x| *x != pair);
        Ok(next)
    }

    /// `l` in its stored order (`a < b`), both networks checked.
    fn link_pair(&self, l: &NetLink) -> Result<NetLink, ErrorBody> {
        for n in [&l.a, &l.b] {
            if !self.nets.contains_key(n) {
                return Err(no_network(n));
            }
        }
        if l.a == l.b {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!("cannot link network '{}' to itself; name two networks", l.a),
            ));
        }
        let (a, b) = if l.a < l.b {
            (&l.a, &l.b)
        } else {
            (&l.b, &l.a)
        };
        Ok(NetLink {
            a: a.clone(),
            b: b.clone(),
        })
    }

    /// The snapshot's links, by network id, both ways round.
    pub(super) fn compile_links(&self, snap: &mut Snapshot) {
        let mut v = Vec::with_capacity(self.links.len() * 2);
        for l in &self.links {
            if let (Some(a), Some(b)) = (self.nets.get(&l.a), self.nets.get(&l.b)) {
                v.push((a.id, b.id));
                v.push((b.id, a.id));
            }
        }
        v.sort_unstable();
        snap.links = v;
    }
}

impl Daemon {
    /// `nat.set`, `nat.ls`, `nat.stats`.
    pub(super) fn nat_handle(&mut self, c: &str, a: &Value) -> Result<Value, ErrorBody> {
        let to_value = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| err(ErrorCode::Internal, format!("encode reply: {e}")))
        };
        match c {
            cmd::NAT_SET => {
                let s: NatSettings = parse_args(c, a)?;
                if s == NatSettings::default() {
                    return Err(err(
                        ErrorCode::InvalidArgument,
                        "nat set changes nothing; give a setting, e.g. --tcp-established 7440",
                    ));
                }
                let next = self.desired.set_nat(&s)?;
                self.commit(next)?;
                tracing::info!("NAT settings changed");
                to_value(serde_json::to_value(shown(&effective(
                    self.desired.nat.as_ref(),
                ))))
            }
            cmd::NAT_LS => {
                let a: NatLsArgs = parse_args(c, a)?;
                to_value(serde_json::to_value(self.nat_ls(&a)?))
            }
            _ => to_value(serde_json::to_value(self.nat_stats()?)),
        }
    }

    fn nat_ls(&self, a: &NatLsArgs) -> Result<Vec<NatSession>, ErrorBody> {
        let net = match &a.network {
            Some(n) => Some(self.desired.nets.get(n).ok_or_else(|| no_network(n))?.id),
            None => None,
        };
        let limit = a.limit.unwrap_or(DEFAULT_LS_LIMIT) as usize;
        let names: HashMap<NetId, &str> = self
            .desired
            .nets
            .values()
            .map(|n| (n.id, n.spec.name.as_str()))
            .collect();
        let mut out = Vec::new();
        for w in &self.workers {
            if out.len() >= limit {
                break;
            }
            let (tx, rx) = crossbeam::channel::bounded(1);
            let left = limit - out.len();
            w.send(Command::Request(WorkerRequest::NatSessions {
                net,
                limit: left,
                reply: tx,
            }));
            let list = rx.recv_timeout(WORKER_WAIT).map_err(|_| {
                err(
                    ErrorCode::Internal,
                    format!("worker {} did not answer; see the daemon log", w.id),
                )
            })?;
            let ep = |(ip, port): (Ipv4Addr, u16)| format!("{ip}:{port}");
            out.extend(list.into_iter().map(|s| NatSession {
                network: names.get(&s.net).map_or("-", |n| n).to_string(),
                proto: proto_name(s.proto).to_string(),
                inside: ep(s.inside),
                outside: ep(s.outside),
                remote: ep(s.remote),
                state: s.state.to_string(),
                age_secs: s.age,
                expires_secs: s.expires_in,
                worker: w.id,
            }));
        }
        Ok(out)
    }

    fn nat_stats(&self) -> Result<NatStatsInfo, ErrorBody> {
        let mut info = NatStatsInfo {
            settings: shown(&effective(self.desired.nat.as_ref())),
            ..Default::default()
        };
        for w in &self.workers {
            let (tx, rx) = crossbeam::channel::bounded(1);
            w.send(Command::Request(WorkerRequest::NatInfo { reply: tx }));
            let t = rx.recv_timeout(WORKER_WAIT).map_err(|_| {
                err(
                    ErrorCode::Internal,
                    format!("worker {} did not answer; see the daemon log", w.id),
                )
            })?;
            info.sessions += u64::from(t.sessions);
            info.embryonic += u64::from(t.embryonic);
            info.capacity += u64::from(t.capacity);
            info.created += t.created;
            info.expired += t.expired;
            info.evicted += t.evicted;
            info.created_per_sec += t.created_rate;
            info.expired_per_sec += t.expired_rate;
            info.evicted_per_sec += t.evicted_rate;
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: Option<&str>, gateway: Option<&str>, internal: bool) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            subnet: subnet.map(str::to_string),
            gateway: gateway.map(str::to_string),
            vni: None,
            encrypted: false,
            esp_encap: None,
            mac_limit: None,
            aging_secs: None,
            learn_remote: None,
            internal,
            scope: None,
        }
    }

    #[test]
    fn gateways_default_to_the_first_address_and_are_checked() {
        let d = Desired::default()
            .create_network(net("blue", Some("10.1.0.0/24"), None, false))
            .unwrap()
            .create_network(net("vault", Some("10.9.0.0/24"), Some("10.9.0.254"), true))
            .unwrap()
            .create_network(net("l2", None, None, false))
            .unwrap();
        let snap = d.compile(1, 1500);
        let gws: Vec<_> = snap.gateways.iter().flatten().collect();
        assert_eq!(gws.len(), 2);
        assert_eq!(gws[0].ip, Ipv4Addr::new(10, 1, 0, 1));
        assert!(!gws[0].internal);
        assert_eq!(gws[1].ip, Ipv4Addr::new(10, 9, 0, 254));
        assert!(gws[1].internal);
        assert_ne!(gws[0].mac, gws[1].mac);

        let e = d
            .create_network(net("dup", Some("10.1.0.128/25"), None, false))
            .unwrap_err();
        assert!(e.message.contains("overlaps network 'blue'"), "{e}");
        let e = d.create_network(net("i", None, None, true)).unwrap_err();
        assert!(e.message.contains("--internal needs a --subnet"), "{e}");
        let e = d
            .create_network(net("b", Some("10.2.0.0/24"), Some("10.2.0.255"), false))
            .unwrap_err();
        assert!(e.message.contains("broadcast"), "{e}");
        let e = d
            .create_network(net("p", Some("10.3.0.0/31"), None, false))
            .unwrap_err();
        assert!(e.message.contains("no room for a gateway"), "{e}");
    }

    #[test]
    fn nat_settings_merge_validate_and_reach_the_snapshot() {
        let d = Desired::default();
        let s = NatSettings {
            tcp_established: Some(100),
            port_min: Some(40000),
            ..Default::default()
        };
        let d = d.set_nat(&s).unwrap();
        let d = d
            .set_nat(&NatSettings {
                udp: Some(30),
                ..Default::default()
            })
            .unwrap();
        let c = d.compile(1, 1500).nat;
        assert_eq!(c.timeouts.tcp_established, 100);
        assert_eq!(c.timeouts.udp, 30);
        assert_eq!(c.timeouts.icmp, 60);
        assert_eq!((c.port_lo, c.port_hi), (40000, 60999));
        assert_eq!(d.export().nat, d.nat);

        for (bad, says) in [
            (
                NatSettings {
                    udp: Some(0),
                    ..Default::default()
                },
                "--udp 0 is out of range",
            ),
            (
                NatSettings {
                    port_min: Some(62000),
                    ..Default::default()
                },
                "port range 62000-60999",
            ),
            (
                NatSettings {
                    port_min: Some(80),
                    ..Default::default()
                },
                "1024 <= --port-min",
            ),
            (
                NatSettings {
                    sessions: Some(0),
                    ..Default::default()
                },
                "--sessions 0",
            ),
        ] {
            let e = d.set_nat(&bad).unwrap_err();
            assert!(e.message.contains(says), "{e}");
        }
    }
}
