//! The switch pipeline's named counters: why frames were dropped, and what happened to them.
//!
//! Invariant the tests check: frames received = frames forwarded + frames flooded + drops
//! (+ frames still queued), where a flooded frame counts once however many copies it made.

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

/// Size of the pipeline's counter block.
pub const COUNTERS: usize = DropReason::COUNT + Event::COUNT;
