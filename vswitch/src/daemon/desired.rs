//! The desired state: the whole configuration as specs, plus the ids allocated to them that must
//! stay stable while the objects live (network ids, port ids, tunnel ids). It is a plain value:
//! the validation functions of each resource file take one and return the next, and
//! [`Daemon::commit`](super::Daemon::commit) makes one real. Nothing here touches a device, a
//! worker or the disk.

use super::*;

/// A network as configured, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NetState {
    pub(super) spec: NetworkSpec,
    pub(super) id: NetId,
}

/// A port as configured, with its id (its device and counters are in [`PortRuntime`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortState {
    pub(super) spec: PortSpec,
    pub(super) id: PortId,
}

/// The configuration the daemon is asked to hold. Small (tens of objects), so a command clones
/// it, changes the clone and hands it to the commit path; the daemon's copy only ever changes by
/// being replaced whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Desired {
    pub(super) nets: BTreeMap<String, NetState>,
    pub(super) ports: BTreeMap<String, PortState>,
    pub(super) fdb: Vec<StaticFdb>,
    /// The underlay address (MAC filled in).
    pub(super) uplink: Option<UplinkSpec>,
    /// Remote VTEPs of overlay networks.
    pub(super) peers: Vec<PeerSpec>,
    /// Port ids of tunnels, by (network, remote VTEP); allocated from the top of the id space
    /// (see [`Desired::sync_tunnels`]). Not persisted: derived from peers and static entries.
    pub(super) tunnel_ids: BTreeMap<(String, std::net::Ipv4Addr), PortId>,
    /// Overlay encryption keys, by tag.
    pub(super) keys: Vec<KeySpec>,
    /// NAT settings changed from their defaults (`nat set`).
    pub(super) nat: Option<NatSettings>,
    /// Names the gateways' DNS answers (`endpoint add`), lowercase.
    pub(super) endpoints: Vec<EndpointSpec>,
    /// Networks routed to each other (`network link`), each pair with `a < b`, sorted.
    pub(super) links: Vec<NetLink>,
    /// Services, by name.
    pub(super) services: BTreeMap<String, super::service::SvcState>,
    /// Drain timeouts of backends removed with one, by (service, address). Not persisted.
    pub(super) svc_removed: BTreeMap<(String, std::net::Ipv4Addr), u32>,
    /// Backends failing their health checks, by (service, address). Not persisted.
    pub(super) svc_unhealthy: std::collections::BTreeSet<(String, std::net::Ipv4Addr)>,
}

/// What validation needs to know about the daemon besides the desired state; fixed at start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Workers running (each port queue belongs to one).
    pub(super) workers: u16,
    /// Large buffers in the pool (TAP ports with offloads keep one per worker queue).
    pub(super) large_capacity: usize,
    /// Whether TAP ports open with virtio-net offloads.
    pub(super) tap_offload: bool,
}

/// A port's runtime: what the daemon holds for it beside its spec. Lives in the daemon, never in
/// [`Desired`]; made and destroyed by the commit path only.
pub(super) struct PortRuntime {
    pub(super) device: Option<device::Device>,
    pub(super) queues: u16,
    pub(super) error: Option<String>,
    /// Counter values when the port was added (ids are reused; counters are not reset).
    pub(super) base: PortCounters,
}

pub(super) fn no_network(name: &str) -> ErrorBody {
    err(
        ErrorCode::NotFound,
        format!(
            "network '{name}' does not exist; create it with: vswitchctl network create {name}"
        ),
    )
}

pub(super) fn no_port(name: &str) -> ErrorBody {
    err(
        ErrorCode::NotFound,
        format!("port '{name}' does not exist; see vswitchctl port ls"),
    )
}

impl Desired {
    /// The configuration as one document (what is persisted and exported).
    pub(super) fn export(&self) -> ConfigDoc {
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
            keys: self.keys.clone(),
            nat: self.nat.clone(),
            endpoints: self.endpoints.clone(),
            links: self.links.clone(),
            services: self.services.values().map(|s| s.spec.clone()).collect(),
        }
    }

    /// Compiles the snapshot the workers run on: each resource file adds its share.
    /// `uplink_mtu` is the uplink device's MTU as the kernel has it (runtime, not config).
    pub(super) fn compile(&self, gen: u64, uplink_mtu: u32) -> Snapshot {
        let mut snap = Snapshot {
            gen,
            ..Default::default()
        };
        self.compile_networks(&mut snap);
        self.compile_ports(&mut snap);
        self.compile_fdb(&mut snap);
        self.compile_overlay(&mut snap, uplink_mtu);
        self.compile_nat(&mut snap);
        self.compile_names(&mut snap);
        self.compile_links(&mut snap);
        self.compile_services(&mut snap);
        snap
    }
}
