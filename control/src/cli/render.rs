//! Results as people read them: tables for lists, `key: value` lines for one object.

use super::check::VXLAN_PORT_DEFAULT;
use super::plan::Show;
use super::table::{key_values, left, right, Table};
use super::CliError;
use control::proto::{
    ClusterInfo, ConfigDoc, FdbEntry, ImportSummary, KeyInfo, NetworkInfo, PeerSpec, PortInfo,
    StatsInfo, StatusInfo, StoreStatus, TraceInfo, UplinkInfo,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Renders a command's result for a human; the text ends in a newline unless it is empty.
pub(crate) fn human(cmd: &str, show: &Show, result: Value) -> Result<String, CliError> {
    Ok(match show {
        Show::Status => status(&decode(cmd, result)?),
        Show::NetworkCreated => {
            let n: NetworkInfo = decode(cmd, result)?;
            format!("network '{}' created (id {})\n", n.spec.name, n.id)
        }
        Show::Networks => networks(&decode::<Vec<NetworkInfo>>(cmd, result)?),
        Show::Network => network(&decode(cmd, result)?),
        Show::PortAdded => {
            let p: PortInfo = decode(cmd, result)?;
            format!(
                "port '{}' added (device {}, {})\n",
                p.spec.name, p.device, p.state
            )
        }
        Show::Ports => ports(&decode::<Vec<PortInfo>>(cmd, result)?),
        Show::Port => port(&decode(cmd, result)?),
        Show::Fdb => fdb(&decode::<Vec<FdbEntry>>(cmd, result)?),
        Show::UplinkSet => {
            let u: UplinkInfo = decode(cmd, result)?;
            format!(
                "uplink set on port '{}': {} (mac {}, overlay mtu {})\n",
                u.spec.port,
                u.spec.ip,
                or_dash(u.spec.mac.as_deref()),
                u.overlay_mtu
            )
        }
        Show::Uplink => match decode::<Option<UplinkInfo>>(cmd, result)? {
            Some(u) => uplink(&u),
            None => "no uplink set\n".to_string(),
        },
        Show::Peers => peers(&decode::<Vec<PeerSpec>>(cmd, result)?),
        Show::Cluster => cluster(&decode(cmd, result)?),
        Show::Keys => keys(&decode::<Vec<KeyInfo>>(cmd, result)?),
        // `top` renders its own rates; one sample alone is the counters.
        Show::Stats | Show::Top { .. } => stats(&decode(cmd, result)?),
        Show::Done(line) => format!("{line}\n"),
        Show::TraceArmed => {
            let t: TraceInfo = decode(cmd, result)?;
            format!(
                "tracing the next {} packets; see vswitchctl trace show\n",
                t.remaining
            )
        }
        Show::Trace => trace(&decode(cmd, result)?),
        // `capture` writes pcap, never a rendered result.
        Show::Capture(_) => String::new(),
        Show::ServiceCreated | Show::Services | Show::Service => {
            super::service::render(show, cmd, result)?
        }
        Show::NatSessions | Show::NatStats | Show::NatSettings => {
            super::nat::render(show, cmd, result)?
        }
        Show::Endpoints => super::endpoint::render(cmd, result)?,
        Show::Export(_) => pretty(&decode::<ConfigDoc>(cmd, result)?)?,
        Show::Imported(file) => {
            let s: ImportSummary = decode(cmd, result)?;
            format!(
                "imported {}: {} created, {} unchanged\n",
                file.display(),
                s.created,
                s.unchanged
            )
        }
    })
}

/// Traced packets: one block each, a line per stage with the time since the packet arrived.
fn trace(t: &TraceInfo) -> String {
    let mut out = String::new();
    for p in &t.packets {
        let start = p.steps.first().map_or(0, |s| s.ns);
        let workers: std::collections::BTreeSet<u16> = p.steps.iter().map(|s| s.worker).collect();
        let ws: Vec<String> = workers.iter().map(u16::to_string).collect();
        out.push_str(&format!("packet {} (worker {})\n", p.id, ws.join(", ")));
        for s in &p.steps {
            let dt = s.ns.saturating_sub(start);
            out.push_str(&format!("  {:>+9} ns  {:<12} {}\n", dt, s.stage, s.detail));
        }
    }
    if t.packets.is_empty() {
        out.push_str("no packets traced yet\n");
    }
    if t.remaining > 0 {
        out.push_str(&format!("{} more packets to trace\n", t.remaining));
    }
    if t.lost > 0 {
        out.push_str(&format!(
            "{} trace records lost (the daemon's queue was full): show more often\n",
            t.lost
        ));
    }
    out
}

/// Pretty JSON followed by a newline.
pub(crate) fn pretty(v: &impl serde::Serialize) -> Result<String, CliError> {
    let mut text = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// Decodes a result into the type its command promises.
pub(crate) fn decode<T: DeserializeOwned>(cmd: &str, v: Value) -> Result<T, CliError> {
    serde_json::from_value(v).map_err(|e| {
        CliError::Failed(format!(
            "cannot decode the daemon's reply to {cmd}: {e}; are vswitchctl and vswitchd the same version?"
        ))
    })
}

/// `-` for an absent value.
fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_string()
}

/// A span of seconds as its two largest units: `45s`, `3m05s`, `2h03m`, `4d07h`.
pub(crate) fn duration(secs: u64) -> String {
    let (m, s) = (secs / 60, secs % 60);
    let (h, m) = (m / 60, m % 60);
    let (d, h) = (h / 24, h % 24);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

fn status(s: &StatusInfo) -> String {
    let mut out = key_values(&[
        ("version", s.version.clone()),
        ("pid", s.pid.to_string()),
        ("uptime", duration(s.uptime_secs)),
        ("networks", s.networks.to_string()),
        ("ports", s.ports.to_string()),
        ("rx pps", s.rx_pps.to_string()),
        ("tx pps", s.tx_pps.to_string()),
    ]);
    if let Some(st) = &s.store {
        out.push_str(&key_values(&[
            ("store", format!("{} ({})", st.endpoints, store_line(st))),
            ("store revision", st.revision.to_string()),
        ]));
    }
    let mut t = Table::new(&[
        right("WORKER"),
        right("CORE"),
        left("PINNED"),
        right("QUEUES"),
        right("SLEEPS"),
        right("RX_PPS"),
    ]);
    for w in &s.workers {
        t.row([
            w.id.to_string(),
            w.core.to_string(),
            if w.pinned { "yes" } else { "no" }.to_string(),
            w.queues.to_string(),
            w.sleeps.to_string(),
            w.rx_pps.to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    out
}

fn vni(n: &NetworkInfo) -> String {
    match (n.spec.vni, n.spec.encrypted) {
        (Some(v), true) if n.spec.esp_encap == Some(control::proto::EspEncap::Udp) => {
            format!("{v} (encrypted, ESP in UDP)")
        }
        (Some(v), true) => format!("{v} (encrypted)"),
        (Some(v), false) => v.to_string(),
        (None, _) => "-".to_string(),
    }
}

fn networks(list: &[NetworkInfo]) -> String {
    let mut t = Table::new(&[
        left("NAME"),
        right("ID"),
        left("VNI"),
        left("SUBNET"),
        right("MTU"),
        right("PORTS"),
        right("MACS"),
    ]);
    for n in list {
        t.row([
            n.spec.name.clone(),
            n.id.to_string(),
            vni(n),
            or_dash(n.spec.subnet.as_deref()),
            n.mtu.map_or_else(|| "-".to_string(), |m| m.to_string()),
            n.ports.len().to_string(),
            n.learned_macs.saturating_add(n.static_macs).to_string(),
        ]);
    }
    t.render()
}

/// A list joined with commas, or `-` when empty.
fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

fn network(n: &NetworkInfo) -> String {
    let mut pairs = vec![
        ("name", n.spec.name.clone()),
        ("id", n.id.to_string()),
        ("vni", vni(n)),
        ("subnet", or_dash(n.spec.subnet.as_deref())),
        ("gateway", or_dash(n.spec.gateway.as_deref())),
    ];
    if let Some(mtu) = n.mtu {
        pairs.push(("mtu", mtu.to_string()));
    }
    pairs.push(("ports", list_or_dash(&n.ports)));
    pairs.push(("peers", list_or_dash(&n.peers)));
    if !n.links.is_empty() {
        pairs.push(("linked to", n.links.join(", ")));
    }
    if n.spec.vni.is_some() {
        let learn = n.spec.learn_remote.unwrap_or(true);
        pairs.push(("learn remote", if learn { "yes" } else { "no" }.to_string()));
    }
    pairs.extend([
        (
            "learned macs",
            format!("{} (limit {})", n.learned_macs, n.effective_mac_limit),
        ),
        ("static macs", n.static_macs.to_string()),
        ("aging", duration(u64::from(n.effective_aging_secs))),
    ]);
    key_values(&pairs)
}

fn ports(list: &[PortInfo]) -> String {
    let mut t = Table::new(&[
        left("NAME"),
        left("TYPE"),
        left("DEVICE"),
        left("NETWORK"),
        left("NETNS"),
        left("STATE"),
        right("QUEUES"),
        right("RX_PKTS"),
        right("TX_PKTS"),
    ]);
    for p in list {
        t.row([
            p.spec.name.clone(),
            p.spec.kind.to_string(),
            p.device.clone(),
            or_dash(p.spec.network.as_deref()),
            or_dash(p.spec.netns.as_deref()),
            p.state.clone(),
            p.queue_count.to_string(),
            p.counters.rx_packets.to_string(),
            p.counters.tx_packets.to_string(),
        ]);
    }
    t.render()
}

fn port(p: &PortInfo) -> String {
    let workers: Vec<String> = p.queue_workers.iter().map(u16::to_string).collect();
    let c = &p.counters;
    key_values(&[
        ("name", p.spec.name.clone()),
        ("id", p.id.to_string()),
        ("type", p.spec.kind.to_string()),
        ("device", p.device.clone()),
        ("network", or_dash(p.spec.network.as_deref())),
        ("netns", or_dash(p.spec.netns.as_deref())),
        ("state", p.state.clone()),
        ("mtu", p.effective_mtu.to_string()),
        ("queues", p.queue_count.to_string()),
        (
            "queue workers",
            if workers.is_empty() {
                "-".into()
            } else {
                workers.join(", ")
            },
        ),
        ("learned macs", p.learned_macs.to_string()),
        (
            "mac limit",
            p.spec
                .mac_limit
                .map_or_else(|| "default".into(), |l| l.to_string()),
        ),
        (
            "rx",
            format!("{} packets, {} bytes", c.rx_packets, c.rx_bytes),
        ),
        (
            "tx",
            format!("{} packets, {} bytes", c.tx_packets, c.tx_bytes),
        ),
        ("tx dropped", c.tx_dropped.to_string()),
        ("rx errors", c.rx_errors.to_string()),
        (
            "kernel drops",
            format!(
                "{} rx ring full, {} fill ring empty, {} other (AF_XDP sockets)",
                c.rx_ring_full, c.rx_fill_empty, c.rx_kernel_dropped
            ),
        ),
        (
            "offloads",
            format!(
                "{} super-frames cut in software, {} frames dropped, {} partial checksums \
                 completed, {} UDP super-frames merged",
                c.tx_segmented, c.tx_offload_dropped, c.rx_csum_completed, c.tx_uso_merged
            ),
        ),
    ])
}

fn fdb(list: &[FdbEntry]) -> String {
    let mut t = Table::new(&[
        left("NETWORK"),
        left("MAC"),
        left("PORT/VTEP"),
        left("KIND"),
        right("AGE"),
    ]);
    for e in list {
        t.row([
            e.network.clone(),
            e.mac.clone(),
            or_dash(e.port.as_deref().or(e.vtep.as_deref())),
            e.kind.clone(),
            e.age_secs.map_or_else(|| "-".to_string(), duration),
        ]);
    }
    t.render()
}

fn uplink(u: &UplinkInfo) -> String {
    let port = match u.spec.vxlan_port {
        Some(p) => p.to_string(),
        None => format!("{VXLAN_PORT_DEFAULT} (default)"),
    };
    let mut out = key_values(&[
        ("port", u.spec.port.clone()),
        ("ip", u.spec.ip.clone()),
        ("gateway", or_dash(u.spec.gateway.as_deref())),
        ("mac", or_dash(u.spec.mac.as_deref())),
        ("vxlan port", port),
        ("overlay mtu", u.overlay_mtu.to_string()),
    ]);
    let mut t = Table::new(&[left("NEIGHBOUR"), left("MAC")]);
    for (ip, mac) in &u.neighbours {
        t.row([ip, mac]);
    }
    out.push('\n');
    out.push_str(&t.render());
    out
}

fn peers(list: &[PeerSpec]) -> String {
    // ORIGIN only where the cluster store programmed some of them.
    if !list.iter().any(|p| p.origin.is_some()) {
        let mut t = Table::new(&[left("NETWORK"), left("VTEP")]);
        for p in list {
            t.row([p.network.clone(), p.vtep.clone()]);
        }
        return t.render();
    }
    let mut t = Table::new(&[left("NETWORK"), left("VTEP"), left("ORIGIN")]);
    for p in list {
        t.row([
            p.network.clone(),
            p.vtep.clone(),
            or_dash(p.origin.as_deref()),
        ]);
    }
    t.render()
}

fn store_line(s: &StoreStatus) -> String {
    match (&s.error, s.reachable) {
        (_, true) => "reachable".to_string(),
        (Some(e), false) => format!("UNREACHABLE ({e}); forwarding continues on the last state"),
        (None, false) => "UNREACHABLE".to_string(),
    }
}

fn cluster(c: &ClusterInfo) -> String {
    let mut out = key_values(&[
        (
            "store",
            format!("{} ({})", c.store.endpoints, store_line(&c.store)),
        ),
        ("host id", c.store.host_id.clone()),
        ("prefix", c.prefix.clone()),
        ("revision", c.store.revision.to_string()),
        ("lease ttl", format!("{}s", c.lease_ttl_secs)),
        ("networks", c.networks.to_string()),
        ("endpoints", c.endpoints.to_string()),
        ("key leader", or_dash(c.leader.as_deref())),
        (
            "primary key",
            c.key_primary.map_or("-".into(), |t| t.to_string()),
        ),
        (
            "pending",
            if c.store.pending {
                "local changes wait for the store"
            } else {
                "none"
            }
            .to_string(),
        ),
    ]);
    let mut t = Table::new(&[
        left("HOST"),
        left("UNDERLAY"),
        right("LEASE_AGE"),
        right("ENDPOINTS"),
    ]);
    for h in &c.hosts {
        let id = if h.me {
            format!("{} (this host)", h.id)
        } else {
            h.id.clone()
        };
        t.row([
            id,
            if h.vtep.is_empty() {
                "-".into()
            } else {
                h.vtep.clone()
            },
            duration(h.lease_age_secs),
            h.endpoints.to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    out
}

fn keys(list: &[KeyInfo]) -> String {
    let mut t = Table::new(&[
        right("TAG"),
        left("PRIMARY"),
        left("AES"),
        right("AGE"),
        right("TX_PKTS"),
        right("RX_PKTS"),
    ]);
    for k in list {
        t.row([
            k.tag.to_string(),
            if k.primary { "yes" } else { "-" }.to_string(),
            k.bits.to_string(),
            format!("{}s", k.age_secs),
            k.tx_packets.to_string(),
            k.rx_packets.to_string(),
        ]);
    }
    t.render()
}

fn stats(s: &StatsInfo) -> String {
    let mut ports = Table::new(&[
        left("PORT"),
        right("RX_PKTS"),
        right("RX_BYTES"),
        right("TX_PKTS"),
        right("TX_BYTES"),
        right("RX_DROPPED"),
        right("TX_DROPPED"),
    ]);
    for p in &s.ports {
        let c = &p.counters;
        ports.row([
            p.name.clone(),
            c.rx_packets.to_string(),
            c.rx_bytes.to_string(),
            c.tx_packets.to_string(),
            c.tx_bytes.to_string(),
            (c.rx_errors + c.rx_ring_full + c.rx_kernel_dropped).to_string(),
            (c.tx_dropped + c.tx_offload_dropped).to_string(),
        ]);
    }
    let mut out = ports.render();

    // One row per counter name any worker has, one column per worker.
    let mut names: Vec<&str> = s
        .workers
        .iter()
        .flat_map(|w| w.counters.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut columns = vec![left("COUNTER")];
    columns.extend(s.workers.iter().map(|w| right(format!("WORKER{}", w.id))));
    let mut workers = Table::new(&columns);
    for name in &names {
        let values = s
            .workers
            .iter()
            .map(|w| w.counters.get(*name).copied().unwrap_or(0).to_string());
        workers.row(std::iter::once(name.to_string()).chain(values));
    }
    out.push('\n');
    out.push_str(&workers.render());

    let mut drops = Table::new(&[left("DROP"), right("PACKETS")]);
    for (reason, n) in &s.drops {
        drops.row([reason.clone(), n.to_string()]);
    }
    out.push('\n');
    out.push_str(&drops.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn show(show: Show, result: Value) -> String {
        human("test", &show, result).unwrap()
    }

    fn net_json() -> Value {
        json!({"name": "blue", "subnet": "10.1.0.0/24", "vni": 100, "encrypted": true, "id": 1,
               "learn_remote": false, "ports": ["tap0", "tap1"], "learned_macs": 3,
               "static_macs": 1, "effective_mac_limit": 65536, "effective_aging_secs": 300,
               "mtu": 1450, "peers": ["192.0.2.7", "192.0.2.8"]})
    }

    fn port_json() -> Value {
        json!({"name": "tap0", "type": "tap", "network": "blue", "netns": "ns1", "id": 2,
               "device": "tap0", "state": "up", "queue_count": 2, "queue_workers": [0, 1],
               "effective_mtu": 1500, "learned_macs": 1,
               "counters": {"rx_packets": 10, "rx_bytes": 1000, "tx_packets": 12345,
                            "tx_bytes": 2000, "tx_dropped": 0}})
    }

    #[test]
    fn durations_use_their_two_largest_units() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(2 * 3600 + 3 * 60 + 9), "2h03m");
        assert_eq!(duration(4 * 86400 + 7 * 3600), "4d07h");
        assert_eq!(duration(u64::MAX), format!("{}d07h", u64::MAX / 86400));
    }

    #[test]
    fn network_ls_is_a_table() {
        let plain = json!({"name": "red", "id": 12, "ports": [], "learned_macs": 0,
                           "static_macs": 0, "effective_mac_limit": 10, "effective_aging_secs": 30});
        assert_eq!(
            show(Show::Networks, json!([net_json(), plain])),
            "NAME  ID  VNI              SUBNET        MTU  PORTS  MACS\n\
             blue   1  100 (encrypted)  10.1.0.0/24  1450      2     4\n\
             red   12  -                -               -      0     0\n"
        );
        assert_eq!(
            show(Show::Networks, json!([])),
            "NAME  ID  VNI  SUBNET  MTU  PORTS  MACS\n"
        );
    }

    #[test]
    fn network_inspect_is_key_values() {
        assert_eq!(
            show(Show::Network, net_json()),
            "name:         blue\n\
             id:           1\n\
             vni:          100 (encrypted)\n\
             subnet:       10.1.0.0/24\n\
             gateway:      -\n\
             mtu:          1450\n\
             ports:        tap0, tap1\n\
             peers:        192.0.2.7, 192.0.2.8\n\
             learn remote: no\n\
             learned macs: 3 (limit 65536)\n\
             static macs:  1\n\
             aging:        5m00s\n"
        );
    }

    #[test]
    fn network_inspect_without_overlay_shows_no_mtu_and_dashes() {
        let plain = json!({"name": "red", "id": 12, "ports": [], "learned_macs": 0,
                           "static_macs": 0, "effective_mac_limit": 10, "effective_aging_secs": 30});
        assert_eq!(
            show(Show::Network, plain),
            "name:         red\n\
             id:           12\n\
             vni:          -\n\
             subnet:       -\n\
             gateway:      -\n\
             ports:        -\n\
             peers:        -\n\
             learned macs: 0 (limit 10)\n\
             static macs:  0\n\
             aging:        30s\n"
        );
        let mut overlay = net_json();
        overlay.as_object_mut().unwrap().remove("learn_remote");
        assert!(show(Show::Network, overlay).contains("\nlearn remote: yes\n"));
    }

    fn uplink_json() -> Value {
        json!({"port": "up0", "ip": "192.168.1.10/24", "gateway": "192.168.1.1",
               "mac": "02:00:00:00:00:0a", "overlay_mtu": 1450,
               "neighbours": [["192.168.1.1", "02:00:00:00:00:01"],
                              ["192.168.1.20", "02:00:00:00:00:14"]]})
    }

    #[test]
    fn uplink_show_is_key_values_then_neighbours() {
        assert_eq!(
            show(Show::Uplink, uplink_json()),
            "port:        up0\n\
             ip:          192.168.1.10/24\n\
             gateway:     192.168.1.1\n\
             mac:         02:00:00:00:00:0a\n\
             vxlan port:  4789 (default)\n\
             overlay mtu: 1450\n\
             \n\
             NEIGHBOUR     MAC\n\
             192.168.1.1   02:00:00:00:00:01\n\
             192.168.1.20  02:00:00:00:00:14\n"
        );
        let bare = json!({"port": "up0", "ip": "10.0.0.2/31", "vxlan_port": 8472,
                          "overlay_mtu": 8950, "neighbours": []});
        assert_eq!(
            show(Show::Uplink, bare),
            "port:        up0\n\
             ip:          10.0.0.2/31\n\
             gateway:     -\n\
             mac:         -\n\
             vxlan port:  8472\n\
             overlay mtu: 8950\n\
             \n\
             NEIGHBOUR  MAC\n"
        );
        assert_eq!(show(Show::Uplink, Value::Null), "no uplink set\n");
    }

    #[test]
    fn uplink_set_confirms_with_mac_and_overlay_mtu() {
        assert_eq!(
            show(Show::UplinkSet, uplink_json()),
            "uplink set on port 'up0': 192.168.1.10/24 (mac 02:00:00:00:00:0a, overlay mtu 1450)\n"
        );
    }

    #[test]
    fn peer_ls_is_a_table() {
        let peers = json!([{"network": "blue", "vtep": "192.0.2.7"},
                           {"network": "overlay-2", "vtep": "198.51.100.20", "origin": "store"}]);
        assert_eq!(
            show(Show::Peers, peers),
            "NETWORK    VTEP           ORIGIN\n\
             blue       192.0.2.7      -\n\
             overlay-2  198.51.100.20  store\n"
        );
        assert_eq!(show(Show::Peers, json!([])), "NETWORK  VTEP\n");
        let mine = json!([{"network": "blue", "vtep": "192.0.2.7"}]);
        assert_eq!(
            show(Show::Peers, mine),
            "NETWORK  VTEP\n\
             blue     192.0.2.7\n"
        );
    }

    #[test]
    fn port_ls_is_a_table() {
        let down = json!({"name": "x0", "type": "afxdp", "ifname": "eth1", "id": 3,
                          "device": "eth1", "state": "down: no such device", "queue_count": 0,
                          "queue_workers": [], "effective_mtu": 1500, "learned_macs": 0,
                          "counters": {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0,
                                       "tx_bytes": 0, "tx_dropped": 0}});
        assert_eq!(
            show(Show::Ports, json!([port_json(), down])),
            "NAME  TYPE   DEVICE  NETWORK  NETNS  STATE                 QUEUES  RX_PKTS  TX_PKTS\n\
             tap0  tap    tap0    blue     ns1    up                         2       10    12345\n\
             x0    afxdp  eth1    -        -      down: no such device       0        0        0\n"
        );
    }

    #[test]
    fn port_inspect_and_confirmations() {
        let text = show(Show::Port, port_json());
        assert!(
            text.starts_with("name:          tap0\nid:            2\ntype:          tap\n"),
            "{text}"
        );
        assert!(text.contains("queue workers: 0, 1\n"), "{text}");
        assert!(text.contains("mac limit:     default\n"), "{text}");
        assert!(
            text.contains("tx:            12345 packets, 2000 bytes\ntx dropped:    0\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "kernel drops:  0 rx ring full, 0 fill ring empty, 0 other (AF_XDP sockets)\n\
                 offloads:      0 super-frames cut in software, 0 frames dropped, \
                 0 partial checksums completed, 0 UDP super-frames merged\n"
            ),
            "{text}"
        );
        assert_eq!(
            show(Show::PortAdded, port_json()),
            "port 'tap0' added (device tap0, up)\n"
        );
        assert_eq!(
            show(Show::NetworkCreated, net_json()),
            "network 'blue' created (id 1)\n"
        );
    }

    #[test]
    fn fdb_ls_shows_port_or_vtep_and_age() {
        let entries = json!([
            {"network": "blue", "mac": "02:00:00:00:00:01", "port": "tap0", "kind": "learned", "age_secs": 75},
            {"network": "blue", "mac": "02:00:00:00:00:02", "vtep": "192.0.2.9", "kind": "static"}
        ]);
        assert_eq!(
            show(Show::Fdb, entries),
            "NETWORK  MAC                PORT/VTEP  KIND       AGE\n\
             blue     02:00:00:00:00:01  tap0       learned  1m15s\n\
             blue     02:00:00:00:00:02  192.0.2.9  static       -\n"
        );
    }

    #[test]
    fn stats_show_ports_then_workers_by_counter_then_drops() {
        let stats = json!({
            "ports": [{"name": "tap0", "rx_packets": 5, "rx_bytes": 500, "tx_packets": 6,
                       "tx_bytes": 600, "tx_dropped": 1}],
            "workers": [{"id": 0, "counters": {"rx_batches": 3}},
                        {"id": 1, "counters": {"flood": 2, "rx_batches": 40}}],
            "drops": {"no_network": 7, "mac_limit": 1}
        });
        assert_eq!(
            show(Show::Stats, stats),
            "PORT  RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  RX_DROPPED  TX_DROPPED\n\
             tap0        5       500        6       600           0           1\n\
             \n\
             COUNTER     WORKER0  WORKER1\n\
             flood             0        2\n\
             rx_batches        3       40\n\
             \n\
             DROP        PACKETS\n\
             mac_limit         1\n\
             no_network        7\n"
        );
    }

    #[test]
    fn status_shows_fields_then_workers() {
        let status = json!({"version": "0.1.0", "uptime_secs": 3725, "pid": 42,
            "workers": [{"id": 0, "core": 1, "pinned": true, "queues": 2, "sleeps": 9, "rx_pps": 100}],
            "networks": 1, "ports": 2, "rx_pps": 100, "tx_pps": 90});
        assert_eq!(
            show(Show::Status, status),
            "version:  0.1.0\n\
             pid:      42\n\
             uptime:   1h02m\n\
             networks: 1\n\
             ports:    2\n\
             rx pps:   100\n\
             tx pps:   90\n\
             \n\
             WORKER  CORE  PINNED  QUEUES  SLEEPS  RX_PPS\n     \
                  0     1  yes          2       9     100\n"
        );
    }

    #[test]
    fn import_and_export_results() {
        let file = std::path::PathBuf::from("/tmp/c.json");
        assert_eq!(
            show(Show::Imported(file), json!({"created": 3, "unchanged": 1})),
            "imported /tmp/c.json: 3 created, 1 unchanged\n"
        );
        let doc = json!({"version": 1, "networks": [], "ports": [], "fdb": []});
        let text = show(Show::Export(None), doc.clone());
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), doc);
    }

    #[test]
    fn a_result_of_the_wrong_shape_names_the_command() {
        let err = human("network.ls", &Show::Networks, json!({"oops": 1})).unwrap_err();
        let CliError::Failed(msg) = err else {
            panic!("{err:?}")
        };
        assert!(
            msg.starts_with("cannot decode the daemon's reply to network.ls: "),
            "{msg}"
        );
    }
}
