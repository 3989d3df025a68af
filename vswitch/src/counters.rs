//! The switch pipeline's named counters: why frames were dropped, and what happened to them.
//!
//! Invariant the tests check: frames received = frames forwarded + frames flooded + drops minus
//! failed flood copies (plus frames still queued), where a flooded frame counts once however many
//! copies it made, and a copy that fails on its way out is counted under its drop reason and as
//! `flood_copy_failed`. A frame a tunnel holds while its next hop resolves (`neigh_queued`) has
//! left the bridge and counts as forwarded (or as a flood copy); if it is dropped while it waits
//! (resolution failed, its tunnel went away, the uplink address changed) that counts where a
//! frame a port refuses does: as `neigh_queue_dropped` and in the uplink port's `tx_dropped`,
//! never as a second pipeline drop.

use crate::neigh::{ArpIgnore, NeighDrop};
use crate::vxlan::{DecapDrop, EncapError};
use dataplane::named_counters;

named_counters! {
    /// Reasons a frame is dropped; each is a counter of the same name.
    pub enum DropReason {
        /// Shorter than an Ethernet header (14 bytes).
        EthTooShort => "eth_too_short",
        /// Source MAC is multicast, broadcast or all zeros.
        SrcMacInvalid => "src_mac_invalid",
        /// Arrived on a port that belongs to no network.
        NoNetwork => "no_network",
        /// Destination MAC is behind the port the frame came from.
        DstIsIngress => "dst_is_ingress",
        /// Output port has no queue on this worker (being added or removed).
        PortDown => "port_down",
        /// Flooded in a network with no other port.
        NoDestination => "no_destination",
        /// 802.1Q tag cut short (frame under 18 bytes).
        VlanTruncated => "vlan_truncated",
        /// Tagged frame on an access port (VID 0, priority-tagged, is accepted as untagged).
        VlanTagOnAccess => "vlan_tag_on_access",
        /// Tagged with a VID that has no subinterface on this trunk.
        VlanUnknownVid => "vlan_unknown_vid",
        /// Tagged with the reserved VID 4095.
        VlanReservedVid => "vlan_reserved_vid",
        /// Two or more stacked tags (Q-in-Q inside 802.1Q).
        VlanStacked => "vlan_stacked",
        /// An 802.1ad (0x88A8) or legacy Q-in-Q (0x9100) outer tag.
        VlanQinq => "vlan_qinq",
        /// Untagged frame on a trunk without a native VLAN.
        VlanUntaggedOnTrunk => "vlan_untagged_on_trunk",
        /// Tagged frame longer than the trunk's MTU + 18 (header and tag).
        VlanOversize => "vlan_oversize",
        /// No headroom left to push a tag (never expected: buffers keep 256 bytes).
        NoHeadroom => "no_headroom",
        /// A VTEP outside the uplink's subnet and no gateway to reach it.
        NoRoute => "vxlan_no_route",
        /// Unicast from one VTEP to a MAC behind another (split horizon: never relayed).
        TunnelToTunnel => "vxlan_split_horizon",
        /// A frame from a TAP with offloads whose checksum or TCP segmentation could not be done
        /// in software before it entered a tunnel (malformed super-frame, no buffers).
        OffloadFailed => "offload_failed",
    }
}

named_counters! {
    /// Things that happened to frames and MAC entries (not drops).
    pub enum Event {
        /// Unicast frames sent to the one port their destination MAC is behind.
        Forwarded => "forwarded",
        /// Frames flooded (broadcast, multicast, unknown unicast), once per frame.
        Flooded => "flooded",
        /// Unknown-unicast frames among the flooded ones.
        UnknownUnicast => "unknown_unicast",
        /// Extra copies made for flooding.
        FloodCopies => "flood_copies",
        /// Flood copies not made because the pool had no free buffer (the frame still went to
        /// the ports that got a copy).
        FloodCopyNoBuffers => "flood_copy_no_buffers",
        /// Flood copies (or the original) that failed on their way out; each is also counted
        /// under its drop reason (e.g. `vxlan_too_big`).
        FloodCopyFailed => "flood_copy_failed",
        /// MACs learned.
        MacLearned => "mac_learned",
        /// MACs that moved to another port (station moves).
        MacMoved => "mac_moved",
        /// MACs evicted because their port reached its limit.
        MacEvictedPortLimit => "mac_evicted_port_limit",
        /// MACs evicted because their network reached its limit.
        MacEvictedNetworkLimit => "mac_evicted_network_limit",
        /// MACs evicted because the table was full.
        MacEvictedTableFull => "mac_evicted_table_full",
        /// Source MACs not learned (limit 0 or table full with nothing to evict).
        MacLearnRefused => "mac_learn_refused",
        /// Frames whose source MAC is static on another port (forwarded, not learned).
        MacStaticConflict => "mac_static_conflict",
        /// Learned MACs removed by aging.
        MacAged => "mac_aged",
        /// MACs learned from another worker's sighting.
        MacSynced => "mac_synced",
        /// Sightings not passed to another worker because its inbox was full.
        MacSyncOverflow => "mac_sync_overflow",
        /// Frames encapsulated in VXLAN.
        VxlanEncap => "vxlan_encap",
        /// Frames decapsulated from VXLAN.
        VxlanDecap => "vxlan_decap",
        /// Frames held while their tunnel's next hop is resolved.
        NeighQueued => "neigh_queued",
        /// Held frames dropped while they waited (resolution failed, tunnel removed, uplink
        /// address changed); also counted in the uplink port's `tx_dropped`.
        NeighQueueDropped => "neigh_queue_dropped",
        /// ARP requests for the uplink address answered.
        ArpReplied => "arp_replied",
        /// ARP frames consumed to learn an underlay neighbour.
        ArpLearned => "arp_learned",
        /// ARP requests sent to resolve underlay next hops.
        ArpRequests => "arp_requests",
    }
}

named_counters! {
    /// Gauges each worker publishes (in `WorkerStats::gauges`), refreshed every tick.
    pub enum Gauge {
        /// Entries in this worker's MAC table (learned and static).
        FdbEntries => "fdb_entries",
        /// Entries in this worker's underlay neighbour table.
        NeighEntries => "neigh_entries",
    }
}

/// Index of a drop counter in the pipeline's counter block.
#[inline]
pub const fn drop_index(d: DropReason) -> usize {
    d as usize
}

/// Index of an event counter in the pipeline's counter block.
#[inline]
pub const fn event_index(e: Event) -> usize {
    DropReason::COUNT + e as usize
}

/// A counter of the pipeline's block: every drop reason of every stage maps to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropIdx(pub usize);

const DECAP_BASE: usize = DropReason::COUNT + Event::COUNT;
const ENCAP_BASE: usize = DECAP_BASE + DecapDrop::COUNT;
const NEIGH_BASE: usize = ENCAP_BASE + EncapError::COUNT;
const ARP_BASE: usize = NEIGH_BASE + NeighDrop::COUNT;

impl From<DropReason> for DropIdx {
    fn from(d: DropReason) -> Self {
        DropIdx(d as usize)
    }
}
impl From<DecapDrop> for DropIdx {
    fn from(d: DecapDrop) -> Self {
        DropIdx(DECAP_BASE + d as usize)
    }
}
impl From<EncapError> for DropIdx {
    fn from(d: EncapError) -> Self {
        DropIdx(ENCAP_BASE + d as usize)
    }
}
impl From<NeighDrop> for DropIdx {
    fn from(d: NeighDrop) -> Self {
        DropIdx(NEIGH_BASE + d as usize)
    }
}
impl From<ArpIgnore> for DropIdx {
    fn from(d: ArpIgnore) -> Self {
        DropIdx(ARP_BASE + d as usize)
    }
}

/// Size of the pipeline's counter block.
pub const COUNTERS: usize = ARP_BASE + ArpIgnore::COUNT;

/// Every drop counter: its index in the block and its name.
pub fn drop_counters() -> impl Iterator<Item = (usize, &'static str)> {
    let a = DropReason::ALL
        .iter()
        .map(|&d| (DropIdx::from(d).0, d.name()));
    let b = DecapDrop::ALL
        .iter()
        .map(|&d| (DropIdx::from(d).0, d.name()));
    let c = EncapError::ALL
        .iter()
        .map(|&d| (DropIdx::from(d).0, d.name()));
    let e = NeighDrop::ALL
        .iter()
        .map(|&d| (DropIdx::from(d).0, d.name()));
    let f = ArpIgnore::ALL
        .iter()
        .map(|&d| (DropIdx::from(d).0, d.name()));
    a.chain(b).chain(c).chain(e).chain(f)
}
