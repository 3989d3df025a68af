//! `trace add|show|clear`: the control side of packet tracing (see [`crate::trace`]). Records
//! come from the workers through the shared [`TraceCtl`]; this keeps them (a bounded number),
//! groups them by packet and turns each into a line a person reads: port names, counter names,
//! MAC and IP addresses.

use super::{err, no_port, Daemon};
use crate::trace::{Detail, TraceRec, MAX_PACKETS};
use control::proto::{ErrorBody, ErrorCode, TraceAddArgs, TraceInfo, TracePacket, TraceStep};
use control::text::format_mac;
use dataplane::port::PortId;

/// Records kept for `trace show` (the oldest go first).
const KEPT: usize = 65_536;

impl Daemon {
    /// Arms tracing of the next packets.
    pub(super) fn trace_add(&mut self, a: TraceAddArgs) -> Result<TraceInfo, ErrorBody> {
        if a.count == 0 || a.count > MAX_PACKETS {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!(
                    "trace add takes 1 to {MAX_PACKETS} packets, not {}",
                    a.count
                ),
            ));
        }
        let port = match &a.port {
            Some(p) => Some(self.trace_port_id(p)?),
            None => None,
        };
        let remaining = self.trace.arm(a.count, port);
        Ok(TraceInfo {
            remaining,
            lost: self.trace.lost(),
            packets: Vec::new(),
        })
    }

    /// The traces collected so far.
    pub(super) fn trace_show(&mut self) -> TraceInfo {
        self.trace.drain(&mut self.trace_log);
        if self.trace_log.len() > KEPT {
            let extra = self.trace_log.len() - KEPT;
            self.trace_log.drain(..extra);
        }
        let mut recs: Vec<&TraceRec> = self.trace_log.iter().collect();
        // Records of one packet from one worker are in order; across workers (a hand-off) the
        // clock orders them.
        recs.sort_by_key(|r| (r.id, r.ns));
        let mut packets: Vec<TracePacket> = Vec::new();
        for r in recs {
            let step = TraceStep {
                worker: r.worker,
                ns: r.ns,
                stage: r.stage.to_string(),
                detail: self.describe(&r.what),
            };
            match packets.last_mut() {
                Some(p) if p.id == r.id => p.steps.push(step),
                _ => packets.push(TracePacket {
                    id: r.id,
                    steps: vec![step],
                }),
            }
        }
        TraceInfo {
            remaining: self.trace.remaining(),
            lost: self.trace.lost(),
            packets,
        }
    }

    /// Stops tracing and forgets what was collected.
    pub(super) fn trace_clear(&mut self) {
        self.trace.clear();
        self.trace_log.clear();
    }

    /// The port id of a port name a trace may start from (physical ports only: a subinterface's
    /// frames arrive on its trunk).
    fn trace_port_id(&self, name: &str) -> Result<PortId, ErrorBody> {
        let p = self.desired.ports.get(name).ok_or_else(|| no_port(name))?;
        if let Some((parent, _)) = name.rsplit_once('.') {
            if self.desired.ports.contains_key(parent) {
                return Err(err(
                    ErrorCode::InvalidArgument,
                    format!(
                        "'{name}' is a subinterface; its frames arrive on trunk '{parent}': trace with --port {parent}"
                    ),
                ));
            }
        }
        Ok(p.id)
    }

    /// A port's name for traces: its own, or `vxlan:NETWORK:VTEP` for a tunnel.
    fn port_label(&self, id: PortId) -> String {
        if let Some(p) = self.desired.ports.values().find(|p| p.id == id) {
            return p.spec.name.clone();
        }
        if let Some((net, vtep)) = self.desired.tunnel_of(id) {
            return format!("vxlan:{net}:{vtep}");
        }
        format!("port#{id}")
    }

    fn describe(&self, d: &Detail) -> String {
        match *d {
            Detail::Rx {
                port,
                len,
                dst,
                src,
                ethertype,
            } => format!(
                "received on {}: {len} bytes {} > {} type 0x{ethertype:04x}",
                self.port_label(port),
                format_mac(&src),
                format_mac(&dst)
            ),
            Detail::VlanIn { vid: 0, port } => {
                format!("untagged: enters the bridge on {}", self.port_label(port))
            }
            Detail::VlanIn { vid, port } => format!(
                "tag {vid} popped: enters the bridge on {}",
                self.port_label(port)
            ),
            Detail::VlanPush { vid, parent } => format!(
                "tag {vid} pushed: leaves through trunk {}",
                self.port_label(parent)
            ),
            Detail::Learn { mac, port, result } => format!(
                "source {} on {}: {result}",
                format_mac(&mac),
                self.port_label(port)
            ),
            Detail::Lookup { mac, port: Some(p) } => format!(
                "destination {} is behind {}",
                format_mac(&mac),
                self.port_label(p)
            ),
            Detail::Lookup { mac, port: None } if mac[0] & 1 != 0 => {
                let kind = if mac == [0xff; 6] {
                    "broadcast"
                } else {
                    "multicast"
                };
                format!("destination {}: {kind}, flooded", format_mac(&mac))
            }
            Detail::Lookup { mac, port: None } => {
                format!("destination {}: unknown, flooded", format_mac(&mac))
            }
            Detail::Flood { copies } => format!("flooded: {copies} copies and the original"),
            Detail::Decap { vni, vtep, tunnel } => format!(
                "VXLAN VNI {vni} from VTEP {vtep} decapsulated: enters the bridge on {}",
                self.port_label(tunnel)
            ),
            Detail::Encap { vni, vtep, hop } => {
                format!("VXLAN VNI {vni} to VTEP {vtep} encapsulated, next hop {hop}")
            }
            Detail::Neigh { ip, state } => format!("next hop {ip}: {state}"),
            Detail::EspSeal { spi, seq } => format!("ESP sealed: SPI {spi:#010x} seq {seq}"),
            Detail::EspOpen { spi, seq } => {
                format!("ESP opened: SPI {spi:#010x} seq {seq}, ICV verified")
            }
            Detail::Arp(s) => format!("ARP: {s}"),
            Detail::Host(s) => s.to_string(),
            Detail::Nat {
                what,
                from,
                to,
                state,
            } => format!(
                "NAT: {what}: {}:{} -> {}:{} (session {state})",
                from.0, from.1, to.0, to.1
            ),
            Detail::Route(s) => format!("router: {s}"),
            Detail::Tx { port } => format!("queued on {}", self.port_label(port)),
            Detail::Drop(i) => {
                let name = crate::counters::layout()
                    .entries()
                    .get(usize::from(i))
                    .map_or("unknown", |e| e.name);
                format!("dropped: {name}")
            }
        }
    }
}
