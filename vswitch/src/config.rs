//! The configuration snapshot that workers forward against: immutable once published.
//!
//! The control thread builds a new [`Snapshot`] for every accepted change and publishes it to
//! every worker (see `dataplane::worker`); a worker holds one snapshot for a whole burst.

use dataplane::port::PortId;

/// Network (bridge domain) id.
pub type NetId = u16;

/// Default most learned MACs per network.
pub const DEFAULT_NET_MAC_LIMIT: u32 = 65_536;
/// Default most learned MACs per port.
pub const DEFAULT_PORT_MAC_LIMIT: u32 = 4_096;
/// Default MAC aging time in seconds.
pub const DEFAULT_AGING_SECS: u32 = 300;

/// A port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConf {
    /// Network the port belongs to.
    pub net: Option<NetId>,
    /// Most learned MACs behind this port.
    pub mac_limit: u32,
}

/// A network as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    /// Ports in the network, in id order (the flood list).
    pub ports: Vec<PortId>,
    /// Most learned MACs in the network.
    pub mac_limit: u32,
    /// Seconds before an unrefreshed learned MAC goes.
    pub aging_secs: u32,
    /// Static MAC entries: (MAC, port).
    pub statics: Vec<([u8; 6], PortId)>,
}

/// One published configuration.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Generation, increasing with every publication.
    pub gen: u64,
    /// Ports by id.
    pub ports: Vec<Option<PortConf>>,
    /// Networks by id.
    pub nets: Vec<Option<NetConf>>,
}

impl Snapshot {
    /// Port `id`, if configured.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortConf> {
        self.ports.get(id as usize).and_then(Option::as_ref)
    }

    /// Network `id`, if configured.
    #[inline]
    pub fn net(&self, id: NetId) -> Option<&NetConf> {
        self.nets.get(id as usize).and_then(Option::as_ref)
    }
}
