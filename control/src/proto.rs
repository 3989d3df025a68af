//! The control protocol: JSON lines over a Unix stream socket.
//!
//! A request is one line `{"id": 7, "cmd": "network.create", "args": {...}}`; the reply is one
//! line `{"id": 7, "ok": true, "result": ...}` or
//! `{"id": 7, "ok": false, "error": {"code": "not_found", "message": "..."}}`.
//! These types are shared by the daemon and the CLI so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest request line the daemon accepts (1 MiB); longer lines get a `too_long` error.
pub const MAX_LINE: usize = 1 << 20;

/// Default control socket path (`$VSWITCH_SOCKET` overrides it).
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";

/// Largest VXLAN network identifier (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// Version of the configuration document written by `config export` and the state directory.
pub const CONFIG_VERSION: u32 = 1;

/// One request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the reply.
    #[serde(default)]
    pub id: u64,
    /// Command name, e.g. `network.create`; see [`Command`].
    pub cmd: String,
    /// Command arguments; an object whose shape depends on `cmd`.
    #[serde(default)]
    pub args: serde_json::Value,
}

/// One reply line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id (0 when the request could not be parsed far enough to know it).
    pub id: u64,
    /// Whether the command succeeded.
    pub ok: bool,
    /// The command's result when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why the command failed when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    /// A successful reply.
    pub fn ok(id: u64, result: serde_json::Value) -> Self {
        Reply {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failed reply.
    pub fn err(id: u64, error: ErrorBody) -> Self {
        Reply {
            id,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// Machine-readable class of a failure; the message says what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not valid JSON or not a request object.
    BadRequest,
    /// The line is longer than [`MAX_LINE`].
    TooLong,
    /// `cmd` names no command.
    UnknownCommand,
    /// An argument is missing, malformed or out of range.
    InvalidArgument,
    /// A named object does not exist.
    NotFound,
    /// An object with that name or key exists already.
    AlreadyExists,
    /// The request conflicts with existing configuration (e.g. removing a network that has ports).
    Conflict,
    /// The caller's credentials do not allow control of the daemon.
    PermissionDenied,
    /// The feature exists in the interface but not in this build.
    Unsupported,
    /// The operating system refused an operation (device creation, namespace, file).
    System,
    /// A bug in the daemon; the message says what happened.
    Internal,
}

/// The error half of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Class of failure.
    pub code: ErrorCode,
    /// One line that says what was wrong and how to mend it.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// Every command name the daemon understands, with its argument and result types.
pub mod cmd {
    /// `{}` -> [`super::StatusInfo`]
    pub const STATUS: &str = "status";
    /// [`super::NetworkSpec`] -> [`super::NetworkInfo`]
    pub const NETWORK_CREATE: &str = "network.create";
    /// `{}` -> `[NetworkInfo]`
    pub const NETWORK_LS: &str = "network.ls";
    /// [`super::NameArgs`] -> [`super::NetworkInfo`]
    pub const NETWORK_INSPECT: &str = "network.inspect";
    /// [`super::NameArgs`] -> `null`
    pub const NETWORK_RM: &str = "network.rm";
    /// [`super::PortSpec`] -> [`super::PortInfo`]
    pub const PORT_ADD: &str = "port.add";
    /// `{}` -> `[PortInfo]`
    pub const PORT_LS: &str = "port.ls";
    /// [`super::NameArgs`] -> [`super::PortInfo`]
    pub const PORT_INSPECT: &str = "port.inspect";
    /// [`super::NameArgs`] -> `null`
    pub const PORT_RM: &str = "port.rm";
    /// [`super::PortLocateArgs`] -> [`super::PortInfo`]
    pub const PORT_LOCATE: &str = "port.locate";
    /// [`super::FdbLsArgs`] -> `[FdbEntry]`
    pub const FDB_LS: &str = "fdb.ls";
    /// [`super::StaticFdb`] -> `null`
    pub const FDB_ADD: &str = "fdb.add";
    /// [`super::FdbRmArgs`] -> `null`
    pub const FDB_RM: &str = "fdb.rm";
    /// [`super::StatsArgs`] -> [`super::StatsInfo`]
    pub const STATS: &str = "stats";
    /// `{}` -> [`super::ConfigDoc`]
    pub const CONFIG_EXPORT: &str = "config.export";
    /// [`super::ConfigDoc`] -> [`super::ImportSummary`]
    pub const CONFIG_IMPORT: &str = "config.import";
    /// [`super::UplinkSpec`] -> [`super::UplinkInfo`]
    pub const UPLINK_SET: &str = "uplink.set";
    /// `{}` -> [`super::UplinkInfo`] (or `null` when none is set)
    pub const UPLINK_SHOW: &str = "uplink.show";
    /// [`super::PeerSpec`] -> `null`
    pub const PEER_ADD: &str = "peer.add";
    /// [`super::PeerSpec`] -> `null`
    pub const PEER_RM: &str = "peer.rm";
    /// [`super::PeerLsArgs`] -> `[PeerSpec]`
    pub const PEER_LS: &str = "peer.ls";
    /// [`super::TraceAddArgs`] -> [`super::TraceInfo`] (with no packets)
    pub const TRACE_ADD: &str = "trace.add";
    /// `{}` -> [`super::TraceInfo`]
    pub const TRACE_SHOW: &str = "trace.show";
    /// `{}` -> `null`
    pub const TRACE_CLEAR: &str = "trace.clear";
    /// [`super::CaptureStart`] -> [`super::CaptureStarted`]
    pub const CAPTURE_START: &str = "capture.start";
    /// [`super::CaptureRead`] -> [`super::CaptureBatch`]
    pub const CAPTURE_READ: &str = "capture.read";
    /// [`super::CaptureId`] -> [`super::CaptureSummary`]
    pub const CAPTURE_STOP: &str = "capture.stop";
    /// [`super::KeyAdd`] -> null
    pub const KEY_ADD: &str = "key.add";
    /// [`super::KeyTag`] -> null
    pub const KEY_PRIMARY: &str = "key.primary";
    /// [`super::KeyTag`] -> null
    pub const KEY_RM: &str = "key.rm";
    /// null -> `Vec<`[`super::KeyInfo`]`>`
    pub const KEY_LS: &str = "key.ls";
    /// [`super::NatSettings`] (fields to change) -> [`super::NatSettings`] (all in effect)
    pub const NAT_SET: &str = "nat.set";
    /// [`super::NatLsArgs`] -> `[NatSession]`
    pub const NAT_LS: &str = "nat.ls";
    /// `{}` -> [`super::NatStatsInfo`]
    pub const NAT_STATS: &str = "nat.stats";
    /// [`super::NetLink`] -> `null`
    pub const NETWORK_LINK: &str = "network.link";
    /// [`super::NetLink`] -> `null`
    pub const NETWORK_UNLINK: &str = "network.unlink";
    /// [`super::EndpointSpec`] -> `null`
    pub const ENDPOINT_ADD: &str = "endpoint.add";
    /// [`super::EndpointRmArgs`] -> `null`
    pub const ENDPOINT_RM: &str = "endpoint.rm";
    /// [`super::EndpointLsArgs`] -> `[EndpointSpec]`
    pub const ENDPOINT_LS: &str = "endpoint.ls";
    /// [`super::ServiceSpec`] (no backends) -> [`super::ServiceInfo`]
    pub const SERVICE_CREATE: &str = "service.create";
    /// `{}` -> `[ServiceInfo]`
    pub const SERVICE_LS: &str = "service.ls";
    /// [`super::NameArgs`] -> [`super::ServiceInfo`] (with connections per backend)
    pub const SERVICE_INSPECT: &str = "service.inspect";
    /// [`super::NameArgs`] -> `null`
    pub const SERVICE_RM: &str = "service.rm";
    /// [`super::BackendArgs`] -> [`super::ServiceInfo`]
    pub const SERVICE_BACKEND_ADD: &str = "service.backend.add";
    /// [`super::BackendArgs`] (fields to change) -> [`super::ServiceInfo`]
    pub const SERVICE_BACKEND_SET: &str = "service.backend.set";
    /// [`super::BackendArgs`] (`ip`, optional `drain_timeout`) -> [`super::ServiceInfo`]
    pub const SERVICE_BACKEND_RM: &str = "service.backend.rm";
    /// `{}` -> [`super::ClusterInfo`]
    pub const CLUSTER_LS: &str = "cluster.ls";
    /// [`super::ClusterApply`] -> [`super::ClusterApplied`] (sent by the daemon's own store
    /// agent: what the store asks of this host, as one batch committed once)
    pub const CLUSTER_APPLY: &str = "cluster.apply";

    /// All command names, for `unknown command` messages.
    pub const ALL: &[&str] = &[
        STATUS,
        NETWORK_CREATE,
        NETWORK_LS,
        NETWORK_INSPECT,
        NETWORK_RM,
        PORT_ADD,
        PORT_LS,
        PORT_INSPECT,
        PORT_RM,
        PORT_LOCATE,
        FDB_LS,
        FDB_ADD,
        FDB_RM,
        STATS,
        CONFIG_EXPORT,
        CONFIG_IMPORT,
        UPLINK_SET,
        UPLINK_SHOW,
        PEER_ADD,
        PEER_RM,
        PEER_LS,
        TRACE_ADD,
        TRACE_SHOW,
        TRACE_CLEAR,
        CAPTURE_START,
        CAPTURE_READ,
        CAPTURE_STOP,
        KEY_ADD,
        KEY_PRIMARY,
        KEY_RM,
        KEY_LS,
        NAT_SET,
        NAT_LS,
        NAT_STATS,
        ENDPOINT_ADD,
        ENDPOINT_RM,
        ENDPOINT_LS,
        NETWORK_LINK,
        NETWORK_UNLINK,
        SERVICE_CREATE,
        SERVICE_LS,
        SERVICE_INSPECT,
        SERVICE_RM,
        SERVICE_BACKEND_ADD,
        SERVICE_BACKEND_SET,
        SERVICE_BACKEND_RM,
        CLUSTER_LS,
        CLUSTER_APPLY,
    ];
}

/// `trace add`: follow the next `count` packets (from `port`, or from any port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceAddArgs {
    /// Packets to trace (1..=1000).
    pub count: u32,
    /// Only packets received on this port (a port, subinterface or the uplink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// One stage a traced packet passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// Worker that ran the stage.
    pub worker: u16,
    /// Nanoseconds on the daemon's trace clock.
    pub ns: u64,
    /// Stage name.
    pub stage: String,
    /// What the stage did.
    pub detail: String,
}

/// A traced packet: every stage it passed, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracePacket {
    /// Trace id.
    pub id: u32,
    /// Stages, in the order they ran.
    pub steps: Vec<TraceStep>,
}

/// The trace state: packets traced so far and what is still armed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceInfo {
    /// Packets still to be traced.
    pub remaining: u32,
    /// Records lost because the daemon's trace queue was full.
    pub lost: u64,
    /// Packets traced, oldest first.
    pub packets: Vec<TracePacket>,
}

/// Arguments that name one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameArgs {
    /// The object's name.
    pub name: String,
}

/// A network (bridge domain) as configured; also the `network.create` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Unique name, 1-64 characters of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// IPv4 subnet in CIDR notation (informational for a pure L2 network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Gateway address inside the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// VXLAN network identifier: makes this an overlay network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Encrypt overlay traffic (needs `vni`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// How an encrypted network's ESP travels (needs `encrypted`): `esp` (IP protocol 50, the
    /// default, as Docker's) or `udp` (ESP in UDP port 4500, RFC 3948: a TAP uplink with UDP
    /// segmentation offload takes a burst of it in one write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp_encap: Option<EspEncap>,
    /// Most learned MAC addresses in this network (default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit: Option<u32>,
    /// Seconds an unrefreshed learned MAC stays in the table (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aging_secs: Option<u32>,
    /// Overlay networks: learn remote MACs from decapsulated frames (default true). Turn it off
    /// when a control plane programs every remote MAC with `fdb add --vtep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn_remote: Option<bool>,
    /// No way out through the gateway (Docker's `--internal`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// `global`: the network is published in the cluster store (`--store`) and exists on every
    /// host; its VNI and subnet are unique across the cluster (a subnet is allocated when none
    /// is given). Default `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// How an encrypted network's ESP packets travel between hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EspEncap {
    /// IP protocol 50 (RFC 4303), as Docker's encrypted overlay.
    Esp,
    /// ESP in UDP, port 4500 (RFC 3948).
    Udp,
}

/// Where a network exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// On this host only.
    Local,
    /// On every host of the cluster store.
    Global,
}

/// Who made a peer or static entry: `store` marks those the cluster store's agent programs
/// (replaced as the store changes); absent: an operator's.
pub const ORIGIN_STORE: &str = "store";

/// Kind of port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortType {
    /// A TAP device owned by the daemon.
    Tap,
    /// An AF_XDP socket bound to an existing interface.
    Afxdp,
    /// A VLAN subinterface `PARENT.VID` of a trunk port: frames tagged VID on PARENT.
    Vlan,
}

impl std::fmt::Display for PortType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortType::Tap => "tap",
            PortType::Afxdp => "afxdp",
            PortType::Vlan => "vlan",
        })
    }
}

/// A port as configured; also the `port.add` arguments. A port named `PARENT.VID` of type
/// `vlan` is a subinterface: frames tagged VID on port PARENT belong to its network, and PARENT
/// becomes a trunk whose own `network`, if any, is the native VLAN for untagged frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Unique name, 1-15 characters of `[A-Za-z0-9_.-]` (it is also the default device name).
    pub name: String,
    /// Port type.
    #[serde(rename = "type")]
    pub kind: PortType,
    /// Kernel interface name (default: the port name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// Number of queues (default: one per worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u16>,
    /// Network the port belongs to; a port without one drops what it receives (`no_network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// MTU of the device (default 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Network namespace (a name under /run/netns, or a path) the kernel side lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Most MAC addresses this port may have learned at once (default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit: Option<u32>,
}

/// `port.locate`: a container engine moved the port's TAP device into namespace `netns` (and
/// may have renamed it); the daemon checks that through the device's own descriptor and records
/// the namespace and the device's current name, so a restarted daemon finds it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortLocateArgs {
    /// The port.
    pub name: String,
    /// Where the device should be now: a namespace name or path (Docker's sandbox key), or
    /// none for the daemon's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The engine renames the device too (Docker: `eth` + a number): until its name starts
    /// with this, it is not where it is going yet and nothing is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname_prefix: Option<String>,
}

/// A static MAC table entry; also the `fdb.add` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFdb {
    /// Network name.
    pub network: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Port the MAC lives behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Remote VTEP the MAC lives behind (overlay networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
    /// `store` for entries the cluster store programs ([`ORIGIN_STORE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// `fdb.ls` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbLsArgs {
    /// Only this network's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// At most this many entries (1 to [`FDB_PAGE_MAX`]). Without it the whole table comes
    /// back, and a table of more than [`FDB_PAGE_MAX`] entries is refused: page through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only the entries after this one in the order the daemon lists them (by network, then
    /// MAC): give the last entry of the previous page to get the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<FdbCursor>,
}

/// Largest page of `fdb.ls`, and the largest table it returns whole.
pub const FDB_PAGE_MAX: u32 = 1024;

/// Where a page of `fdb.ls` starts: after this entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbCursor {
    /// Network name.
    pub network: String,
    /// MAC address.
    pub mac: String,
}

/// `fdb.rm` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbRmArgs {
    /// Network name.
    pub network: String,
    /// MAC address.
    pub mac: String,
}

/// `stats` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    /// Only this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// The whole configuration as one document (`config export`, `config import`, the state file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDoc {
    /// Document format version ([`CONFIG_VERSION`]).
    pub version: u32,
    /// Networks.
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Static MAC table entries.
    #[serde(default)]
    pub fdb: Vec<StaticFdb>,
    /// The host's address on its uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkSpec>,
    /// Remote VTEPs of overlay networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerSpec>,
    /// NAT settings changed from their defaults (`nat set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatSettings>,
    /// Overlay encryption keys (in the state file; in `config export` only with
    /// `--include-secrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeySpec>,
    /// Names the gateways' DNS answers (`endpoint add`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSpec>,
    /// Pairs of networks routed to each other (`network link`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<NetLink>,
    /// Services (load balancing), with their backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
}

/// An overlay encryption key as configured (`key add`, the state file).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The key's tag (its SPIs are derived from it).
    pub tag: u32,
    /// RFC 4106 keying material in hex: 16 or 32 bytes of AES key, then the 4-byte salt.
    pub key: String,
    /// Whether this is the sending key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary: bool,
    /// When it was added (seconds since the Unix epoch).
    #[serde(default)]
    pub added: u64,
}

impl std::fmt::Debug for KeySpec {
    // Never the key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySpec")
            .field("tag", &self.tag)
            .field("primary", &self.primary)
            .field("added", &self.added)
            .finish_non_exhaustive()
    }
}

/// `key.add` arguments.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAdd {
    /// Tag.
    pub tag: u32,
    /// Keying material in hex (see [`KeySpec::key`]).
    pub key: String,
}

impl std::fmt::Debug for KeyAdd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAdd")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// `key.primary` / `key.rm` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyTag {
    /// Tag.
    pub tag: u32,
}

/// `key.ls` entry: never key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Tag.
    pub tag: u32,
    /// Whether it is the sending key.
    pub primary: bool,
    /// Seconds since it was added.
    pub age_secs: u64,
    /// AES key size in bits (128 or 256).
    pub bits: u32,
    /// Packets sealed with it.
    pub tx_packets: u64,
    /// Packets opened with it.
    pub rx_packets: u64,
}

/// `config.export` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportArgs {
    /// Include key material (`--include-secrets`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_secrets: bool,
}

/// The host's underlay address (`uplink set`): the VXLAN source address, answered for in ARP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSpec {
    /// The port that faces the underlay (a TAP or AF_XDP port in no network).
    pub port: String,
    /// Address and prefix, e.g. `192.168.1.10/24`.
    pub ip: String,
    /// Next hop for VTEPs outside the prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// UDP destination port of VXLAN (default 4789).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
    /// The switch's own MAC on the underlay (chosen by the daemon when absent, then kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// A remote VTEP of an overlay network (`peer add`): it receives the network's broadcast,
/// multicast and unknown-unicast frames (head-end replication), and the switch accepts VXLAN
/// from it for that network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// Overlay network.
    pub network: String,
    /// The VTEP's underlay IPv4 address.
    pub vtep: String,
    /// `store` for peers the cluster store programs ([`ORIGIN_STORE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// `peer.ls` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerLsArgs {
    /// Only this network's peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// `uplink.show` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkInfo {
    /// The configuration (with the MAC filled in).
    #[serde(flatten)]
    pub spec: UplinkSpec,
    /// MTU of overlay networks carried over this uplink (uplink MTU - 50).
    pub overlay_mtu: u32,
    /// Underlay neighbours resolved: `ip -> mac` (from worker 0).
    pub neighbours: Vec<(String, String)>,
}

impl Default for ConfigDoc {
    fn default() -> Self {
        ConfigDoc {
            version: CONFIG_VERSION,
            networks: Vec::new(),
            ports: Vec::new(),
            fdb: Vec::new(),
            uplink: None,
            peers: Vec::new(),
            keys: Vec::new(),
            nat: None,
            endpoints: Vec::new(),
            links: Vec::new(),
            services: Vec::new(),
        }
    }
}

/// What `config.import` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Objects created.
    pub created: u32,
    /// Objects that existed with the same settings and were left alone.
    pub unchanged: u32,
}

/// `network.inspect` / `network.ls` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The configuration.
    #[serde(flatten)]
    pub spec: NetworkSpec,
    /// Internal id (stable while the daemon runs).
    pub id: u16,
    /// Names of the ports in this network.
    pub ports: Vec<String>,
    /// Learned MAC addresses now in the table.
    pub learned_macs: u64,
    /// Static MAC table entries.
    pub static_macs: u64,
    /// Effective limit on learned MACs (the configured one or the default).
    pub effective_mac_limit: u32,
    /// Effective aging time in seconds.
    pub effective_aging_secs: u32,
    /// Largest frame payload the network carries (overlay: the uplink's MTU - 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Remote VTEPs (overlay networks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Networks its gateway routes to (`network link`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// `port.inspect` / `port.ls` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The configuration.
    #[serde(flatten)]
    pub spec: PortSpec,
    /// Internal id (stable while the daemon runs).
    pub id: u16,
    /// Kernel interface name in use.
    pub device: String,
    /// `up`, or `down: <reason>`.
    pub state: String,
    /// Queues opened.
    pub queue_count: u16,
    /// Worker index owning each queue.
    pub queue_workers: Vec<u16>,
    /// Effective MTU.
    pub effective_mtu: u32,
    /// Learned MACs behind this port now.
    pub learned_macs: u64,
    /// Counters for this port.
    pub counters: PortCounters,
}

/// Per-port counters, summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// Frames received from the device.
    pub rx_packets: u64,
    /// Bytes received from the device.
    pub rx_bytes: u64,
    /// Frames handed to the device.
    pub tx_packets: u64,
    /// Bytes handed to the device.
    pub tx_bytes: u64,
    /// Frames meant for the device that it refused (queue full, device gone).
    pub tx_dropped: u64,
    /// Frames lost on receive (larger than a buffer, read errors).
    #[serde(default)]
    pub rx_errors: u64,
    /// Frames dropped because their offload work (checksum, TCP segmentation) could not be done
    /// in software for a device without offloads.
    #[serde(default)]
    pub tx_offload_dropped: u64,
    /// TCP super-frames (from TAP ports with offloads) cut into segments for a device without.
    #[serde(default)]
    pub tx_segmented: u64,
    /// UDP super-frames written to a TAP with UDP segmentation offload, each made of several
    /// datagrams (e.g. sealed ESP-in-UDP packets) merged in software.
    #[serde(default)]
    pub tx_uso_merged: u64,
    /// Received frames whose partial TCP/UDP checksum (from a veth peer with transmit checksum
    /// offload) the switch completed.
    #[serde(default)]
    pub rx_csum_completed: u64,
    /// AF_XDP: frames the kernel dropped because a socket's rx ring was full (the workers did
    /// not keep up), since the port's sockets were bound.
    #[serde(default)]
    pub rx_ring_full: u64,
    /// AF_XDP: times the kernel found a socket's fill ring empty (no buffer to receive into).
    #[serde(default)]
    pub rx_fill_empty: u64,
    /// AF_XDP: frames the kernel dropped at a socket (no fill buffer, larger than a buffer)
    /// plus descriptors it found invalid.
    #[serde(default)]
    pub rx_kernel_dropped: u64,
}

/// One MAC table entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// Network name.
    pub network: String,
    /// MAC address.
    pub mac: String,
    /// Port name the MAC is behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Remote VTEP the MAC is behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
    /// `learned` or `static`.
    pub kind: String,
    /// Seconds since the entry was last refreshed (learned entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
}

/// One worker in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Worker index.
    pub id: u16,
    /// Core it is pinned to.
    pub core: usize,
    /// Whether it is pinned (pinning can fail in restricted cpusets).
    pub pinned: bool,
    /// Ports' queues it polls.
    pub queues: u32,
    /// Times it went to sleep because it was idle.
    pub sleeps: u64,
    /// Packets received per second over the last interval.
    pub rx_pps: u64,
}

/// `status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Daemon version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Process id of the daemon.
    pub pid: u32,
    /// Workers.
    pub workers: Vec<WorkerInfo>,
    /// Number of networks.
    pub networks: u32,
    /// Number of ports.
    pub ports: u32,
    /// Packets received per second over all ports, last interval.
    pub rx_pps: u64,
    /// Packets transmitted per second over all ports, last interval.
    pub tx_pps: u64,
    /// The cluster store, when the daemon runs with `--store`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
}

/// The cluster store as `status` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The store's endpoints as given (`etcd://HOST:PORT,...`).
    pub endpoints: String,
    /// This host's id in the store.
    pub host_id: String,
    /// Whether the last exchange with the store succeeded.
    pub reachable: bool,
    /// Why it is unreachable (or the last error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last store revision this host has seen.
    pub revision: i64,
    /// Local changes waiting to be published (while the store is unreachable).
    pub pending: bool,
}

/// `cluster.ls`: the hosts the store knows, as this host last saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The store's state.
    pub store: StoreStatus,
    /// The key prefix.
    pub prefix: String,
    /// The TTL of hosts' leases, in seconds.
    pub lease_ttl_secs: u64,
    /// Hosts alive in the store (with a live lease).
    pub hosts: Vec<ClusterHost>,
    /// Global networks in the store.
    pub networks: u32,
    /// Endpoints in the store, all hosts together.
    pub endpoints: u64,
    /// The host that writes encryption keys (the store's leader election).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The key tag every host sends with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_primary: Option<u32>,
}

/// One host of `cluster.ls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHost {
    /// Its id (`--host-id`).
    pub id: String,
    /// Its underlay address (VTEP); empty until it has an uplink.
    pub vtep: String,
    /// Seconds since it registered its lease (its daemon's start or its return).
    pub lease_age_secs: u64,
    /// Its endpoints in the store.
    pub endpoints: u64,
    /// This host.
    pub me: bool,
}

/// `cluster.apply`: what the store asks of this host, as one batch (the store agent's request).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterApply {
    /// Replace every store-made peer and static entry with those given (after a (re)list).
    #[serde(default)]
    pub replace: bool,
    /// Global networks to have (created when absent).
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// Store peers to remove.
    #[serde(default)]
    pub peers_rm: Vec<PeerSpec>,
    /// Store static entries to remove.
    #[serde(default)]
    pub fdb_rm: Vec<FdbRmArgs>,
    /// Peers to add.
    #[serde(default)]
    pub peers_add: Vec<PeerSpec>,
    /// Static entries (remote MACs) to add.
    #[serde(default)]
    pub fdb_add: Vec<StaticFdb>,
    /// The encryption keys the store's leader distributes: when given, this host's keys
    /// become these (new ones added for receive, the primary switched, the others removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeySpec>>,
}

impl ClusterApply {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        !self.replace
            && self.networks.is_empty()
            && self.peers_rm.is_empty()
            && self.fdb_rm.is_empty()
            && self.peers_add.is_empty()
            && self.fdb_add.is_empty()
            && self.keys.is_none()
    }
}

/// `cluster.apply`'s reply: the items refused (each with why), the rest applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterApplied {
    /// One line per refused item.
    pub refused: Vec<String>,
}

/// Counters of one port in `stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// Port name.
    pub name: String,
    /// Counters.
    #[serde(flatten)]
    pub counters: PortCounters,
}

/// Counters of one worker in `stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Worker index.
    pub id: u16,
    /// Named counters (events and drops) that are not zero.
    pub counters: BTreeMap<String, u64>,
}

/// `stats` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsInfo {
    /// Per-port counters.
    pub ports: Vec<PortStats>,
    /// Per-worker counters.
    pub workers: Vec<WorkerStats>,
    /// Drops by reason, summed over workers (only reasons that occurred).
    pub drops: BTreeMap<String, u64>,
}

/// Largest snapshot length of a capture.
pub const CAPTURE_MAX_SNAPLEN: u32 = 65535;
/// Snapshot length of a capture that names none (whole frames up to 64 KiB).
pub const CAPTURE_DEFAULT_SNAPLEN: u32 = 65535;
/// Most captures the daemon runs at once.
pub const CAPTURE_MAX: usize = 8;
/// Most packets one `capture.read` returns.
pub const CAPTURE_MAX_READ: u32 = 4096;

/// Which frames of a port a capture takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureDirection {
    /// Frames the switch receives on the port.
    Rx,
    /// Frames the switch transmits on the port.
    Tx,
    /// Both.
    #[default]
    Both,
}

/// `capture.start` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureStart {
    /// Port name; a subinterface `PARENT.VID` captures its trunk's frames tagged VID.
    pub port: String,
    /// Which frames [default: both].
    #[serde(default)]
    pub direction: CaptureDirection,
    /// Bytes kept of each frame, 1-65535 [default: 65535].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u32>,
    /// Stop taking frames after this many [default: no end].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Snapshots the ring holds before frames are missed [default: from the snapshot length].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<u32>,
}

/// `capture.start` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStarted {
    /// Names the capture in `capture.read` and `capture.stop`.
    pub id: u64,
    /// Bytes kept of each frame.
    pub snaplen: u32,
    /// Snapshots the ring holds.
    pub ring: u32,
}

/// `capture.read` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRead {
    /// The capture.
    pub id: u64,
    /// Most packets to return [default and limit: 4096]; fewer come when they are large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedPacket {
    /// Real time it was taken, in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Its length on the wire (the data may be shorter: the snapshot length).
    pub orig_len: u32,
    /// `rx` or `tx`.
    pub direction: CaptureDirection,
    /// The captured bytes, in lower-case hex.
    pub data: String,
}

/// `capture.read` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureBatch {
    /// Frames taken since the last read, oldest first.
    pub packets: Vec<CapturedPacket>,
    /// Frames taken so far (read or waiting).
    pub captured: u64,
    /// Frames lost so far because the ring was full (the reader fell behind).
    pub missed: u64,
    /// Nothing more will come: the count was reached (and read), or the port went away.
    pub done: bool,
    /// Why the capture ended early, when it did (e.g. the port was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// `capture.stop` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureId {
    /// The capture.
    pub id: u64,
}

/// `capture.stop` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSummary {
    /// Frames taken.
    pub captured: u64,
    /// Frames lost because the ring was full.
    pub missed: u64,
    /// Frames taken but never read (dropped at stop).
    pub unread: u64,
}

/// NAT settings. As `nat.set` arguments only the fields given change; as its reply (and in
/// `nat.stats`) every field is the value in effect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSettings {
    /// Seconds a TCP session with a SYN from one side only stays (default 240).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_syn: Option<u32>,
    /// Seconds an idle established TCP session stays (default 7440, RFC 5382).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_established: Option<u32>,
    /// Seconds after a FIN from one side (default 240).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_fin: Option<u32>,
    /// Seconds after FINs from both sides (default 240).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_time_wait: Option<u32>,
    /// Seconds after a RST (default 240).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_rst: Option<u32>,
    /// Seconds an idle UDP session stays (default 300, RFC 4787).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<u32>,
    /// Seconds an idle ICMP echo session stays (default 60, RFC 5508).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<u32>,
    /// Lowest outside port (default 32768).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_min: Option<u16>,
    /// Highest outside port (default 60999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_max: Option<u16>,
    /// Most sessions per worker (default 65536; a change empties the tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u32>,
}

/// `nat.ls` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatLsArgs {
    /// Only sessions of this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// At most this many (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One NAT session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatSession {
    /// The inside endpoint's network.
    pub network: String,
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// Inside endpoint `ip:port` (ICMP: the echo identifier).
    pub inside: String,
    /// Outside (translated) endpoint.
    pub outside: String,
    /// The last remote endpoint it talked to.
    pub remote: String,
    /// Connection-tracking state (`syn_sent`, `established`, `fin_wait`, `time_wait`, `reset`,
    /// `new`, `replied`).
    pub state: String,
    /// Seconds since it was created.
    pub age_secs: u64,
    /// Seconds until it expires unless a packet refreshes it.
    pub expires_secs: u64,
    /// The worker that owns it.
    pub worker: u16,
}

/// `nat.stats` result: every worker's table together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NatStatsInfo {
    /// Live sessions.
    pub sessions: u64,
    /// Of which embryonic (handshake not done, or no answer yet): evicted first when full.
    pub embryonic: u64,
    /// Most sessions (all workers).
    pub capacity: u64,
    /// Sessions created since the daemon started.
    pub created: u64,
    /// Sessions expired.
    pub expired: u64,
    /// Embryonic sessions evicted to make room.
    pub evicted: u64,
    /// Created per second (over the workers' last second).
    pub created_per_sec: f64,
    /// Expired per second.
    pub expired_per_sec: f64,
    /// Evicted per second.
    pub evicted_per_sec: f64,
    /// The settings in effect.
    pub settings: NatSettings,
}

/// A name the gateway's DNS answers on a network (`endpoint add`): `name` (and
/// `name.NETWORK`) resolves to `ip` for queries from that network only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// The DNS name (letters, digits, `-`, `_`, dots between labels; case-insensitive).
    pub name: String,
    /// The network it belongs to (one with a `--subnet`).
    pub network: String,
    /// Its IPv4 address, in the network's subnet.
    pub ip: String,
}

/// `endpoint.rm` arguments: the name on the network, every address of it unless `ip` is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRmArgs {
    /// The name.
    pub name: String,
    /// Its network.
    pub network: String,
    /// Only this address of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// `endpoint.ls` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointLsArgs {
    /// Only this network's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// Two networks whose gateways route between them (`network link A B`; the order does not
/// matter).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetLink {
    /// One network.
    pub a: String,
    /// The other.
    pub b: String,
}

/// A service: `service.create` arguments (without backends) and the service as configured (in
/// the state file, with its backends).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Its name.
    pub name: String,
    /// The network its VIP and backends are on (one with a subnet).
    pub network: String,
    /// The VIP (default: the highest free address of the subnet; none with `dnsrr`). The
    /// daemon stores the address it chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
    /// Ports of the VIP: `P[:T][/tcp|udp]` (T defaults to P, the protocol to tcp).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Ports published on the uplink address: `P:T[/tcp|udp]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// `ingress` (default: every host publishes) or `host` (only local backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `vip` (default: the name resolves to the VIP) or `dnsrr` (to every backend's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<String>,
    /// Seconds a removed backend's connections may go on before they are reset (default
    /// 300; 0: reset at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<u32>,
    /// Active health check from the switch: `tcp` (a TCP connect to the backends' first TCP
    /// port, from the gateway's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Seconds between health checks (default 5); two failed in a row mark a backend down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<u32>,
    /// This host's own address on the service's (overlay) network, different on every host:
    /// a client's connection to a backend on another host is translated to it (the routing
    /// mesh), so that the backend's answer comes back here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_ip: Option<String>,
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendSpec>,
}

/// A backend as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Its address, on the service's network.
    pub ip: String,
    /// Relative weight (default 1; 0: draining, no new connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Marked down: no new connections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub down: bool,
}

/// `service.backend.add|set|rm` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendArgs {
    /// The service.
    pub service: String,
    /// The backend's address.
    pub ip: String,
    /// Weight (add: default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Down (true) or up (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<bool>,
    /// `rm`: seconds its connections may go on (default: the service's drain timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<u32>,
}

/// A service as `service.ls` and `service.inspect` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Name.
    pub name: String,
    /// Network.
    pub network: String,
    /// VIP (none with `dnsrr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
    /// VIP ports, `P:T/proto`.
    pub ports: Vec<String>,
    /// Published ports, `P:T/proto`.
    pub publish: Vec<String>,
    /// `ingress` or `host`.
    pub mode: String,
    /// `vip` or `dnsrr`.
    pub endpoint_mode: String,
    /// Seconds a removed backend's connections may go on.
    pub drain_timeout: u32,
    /// The active health check (`tcp every 5s`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// This host's ingress address on the network (routing mesh), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_ip: Option<String>,
    /// Slots of its Maglev table.
    pub table_size: u32,
    /// Backends.
    pub backends: Vec<BackendInfo>,
    /// Live connections (`service.inspect` only).
    #[serde(default)]
    pub connections: u64,
}

/// A backend as `service.inspect` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Address.
    pub ip: String,
    /// Weight.
    pub weight: u32,
    /// `up`, `draining` (weight 0), `down` (marked so) or `unhealthy` (failing its health
    /// check).
    pub state: String,
    /// Share of new connections, in percent (its share of the Maglev table).
    pub share: f64,
    /// Live connections (`service.inspect` only).
    #[serde(default)]
    pub connections: u64,
}

/// A published or VIP port, parsed: `P[:T][/tcp|udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// The port clients use.
    pub port: u16,
    /// The backends' port.
    pub target: u16,
    /// `true` for UDP, `false` for TCP.
    pub udp: bool,
}

impl PortMapping {
    /// Parses `P[:T][/tcp|udp]`; `need_target`: T must be given (published ports).
    pub fn parse(s: &str, need_target: bool) -> Result<PortMapping, String> {
        let (ports, proto) = match s.split_once('/') {
            Some((p, pr)) => (p, pr),
            None => (s, "tcp"),
        };
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            other => {
                return Err(format!(
                    "port '{s}': protocol '{other}' is not tcp or udp; write e.g. 8080:80/tcp"
                ))
            }
        };
        let num = |x: &str| -> Result<u16, String> {
            match x.parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(format!(
                    "port '{s}': '{x}' is not a port (1-65535); write e.g. 8080:80/tcp"
                )),
            }
        };
        let (port, target) = match ports.split_once(':') {
            Some((p, t)) => (num(p)?, num(t)?),
            None if need_target => {
                return Err(format!(
                    "published port '{s}' needs a target: write PUBLISHED:TARGET, e.g. 8080:80"
                ))
            }
            None => {
                let p = num(ports)?;
                (p, p)
            }
        };
        Ok(PortMapping { port, target, udp })
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = if self.udp { "udp" } else { "tcp" };
        write!(f, "{}:{}/{proto}", self.port, self.target)
    }
}
