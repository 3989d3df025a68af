//! The switch pipeline's named counters: why frames were dropped, and what happened to them.
//!
//! Each stage owns its counters: it declares them (`named_counters!`) in its own file and
//! registers them when the graph is built ([`crate::graph`]); the block layout comes from that
//! registration ([`layout`]), never from offsets summed by hand. [`DropReason`] and [`Event`]
//! below are the names the bridge, VLAN and VXLAN stages used before the graph, kept so that
//! code which names a counter by enum (tests, benchmarks) still can: each resolves to the
//! counter of the same name in the layout ([`drop_index`], [`event_index`]).
//!
//! Invariant the tests check: frames received = frames forwarded + frames flooded + drops minus
//! failed flood copies (plus frames still queued), where a flooded frame counts once however many
//! copies it made, and a copy that fails on its way out is counted under its drop reason and as
//! `flood_copy_failed`. A frame a tunnel holds while its next hop resolves (`neigh_queued`) has
//! left the bridge and counts as forwarded (or as a flood copy); if it is dropped while it waits
//! (resolution failed, its tunnel went away, the uplink address changed) that counts where a
//! frame a port refuses does: as `neigh_queue_dropped` and in the uplink port's `tx_dropped`,
//! never as a second pipeline drop.

use dataplane::graph::{CounterKind, CounterLayout};
use dataplane::named_counters;
use std::sync::LazyLock;

named_counters! {
    /// Drop reasons by their pre-graph names (see the module doc; each stage documents its own).
    #[allow(missing_docs)]
    pub enum DropReason {
        EthTooShort => "eth_too_short",
        SrcMacInvalid => "src_mac_invalid",
        NoNetwork => "no_network",
        DstIsIngress => "dst_is_ingress",
        PortDown => "port_down",
        NoDestination => "no_destination",
        VlanTruncated => "vlan_truncated",
        VlanTagOnAccess => "vlan_tag_on_access",
        VlanUnknownVid => "vlan_unknown_vid",
        VlanReservedVid => "vlan_reserved_vid",
        VlanStacked => "vlan_stacked",
        VlanQinq => "vlan_qinq",
        VlanUntaggedOnTrunk => "vlan_untagged_on_trunk",
        VlanOversize => "vlan_oversize",
        NoHeadroom => "no_headroom",
        NoRoute => "vxlan_no_route",
        TunnelToTunnel => "vxlan_split_horizon",
        OffloadFailed => "offload_failed",
    }
}

named_counters! {
    /// Events by their pre-graph names (see the module doc; each stage documents its own).
    #[allow(missing_docs)]
    pub enum Event {
        Forwarded => "forwarded",
        Flooded => "flooded",
        UnknownUnicast => "unknown_unicast",
        FloodCopies => "flood_copies",
        FloodCopyNoBuffers => "flood_copy_no_buffers",
        FloodCopyFailed => "flood_copy_failed",
        MacLearned => "mac_learned",
        MacMoved => "mac_moved",
        MacEvictedPortLimit => "mac_evicted_port_limit",
        MacEvictedNetworkLimit => "mac_evicted_network_limit",
        MacEvictedTableFull => "mac_evicted_table_full",
        MacLearnRefused => "mac_learn_refused",
        MacStaticConflict => "mac_static_conflict",
        MacAged => "mac_aged",
        MacSynced => "mac_synced",
        MacSyncOverflow => "mac_sync_overflow",
        VxlanEncap => "vxlan_encap",
        VxlanDecap => "vxlan_decap",
        NeighQueued => "neigh_queued",
        NeighQueueDropped => "neigh_queue_dropped",
        ArpReplied => "arp_replied",
        ArpLearned => "arp_learned",
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
        /// Sessions in this worker's NAT table.
        NatSessions => "nat_sessions",
    }
}

/// The counter layout every worker's pipeline block has (the graph's registration, run once).
pub fn layout() -> &'static CounterLayout {
    static LAYOUT: LazyLock<CounterLayout> = LazyLock::new(crate::pipeline::counter_layout);
    &LAYOUT
}

/// Index of the counter named `name` (a scratch index past the block when there is none).
fn index_of(name: &str) -> usize {
    let l = layout();
    l.index_of(name).unwrap_or(l.len())
}

/// Index of a drop counter in the pipeline's counter block.
pub fn drop_index(d: DropReason) -> usize {
    index_of(d.name())
}

/// Index of an event counter in the pipeline's counter block.
pub fn event_index(e: Event) -> usize {
    index_of(e.name())
}

/// Size of the pipeline's counter block.
pub fn counters() -> usize {
    layout().len()
}

/// Every drop counter: its index in the block and its name.
pub fn drop_counters() -> impl Iterator<Item = (usize, &'static str)> {
    kind_counters(CounterKind::Drop)
}

/// Every event counter (each stage's, the legacy [`Event`] names among them): its index in
/// the block and its name.
pub fn event_counters() -> impl Iterator<Item = (usize, &'static str)> {
    kind_counters(CounterKind::Event)
}

fn kind_counters(kind: CounterKind) -> impl Iterator<Item = (usize, &'static str)> {
    layout()
        .entries()
        .iter()
        .enumerate()
        .filter(move |(_, e)| e.kind == kind)
        .map(|(i, e)| (i, e.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_legacy_name_is_a_registered_counter_of_its_kind() {
        let l = layout();
        for d in DropReason::ALL {
            let i = l
                .index_of(d.name())
                .unwrap_or_else(|| panic!("{}", d.name()));
            assert_eq!(l.entries()[i].kind, CounterKind::Drop, "{}", d.name());
        }
        for e in Event::ALL {
            let i = l
                .index_of(e.name())
                .unwrap_or_else(|| panic!("{}", e.name()));
            assert_eq!(l.entries()[i].kind, CounterKind::Event, "{}", e.name());
        }
    }

    #[test]
    fn counter_names_are_unique() {
        let l = layout();
        for (i, e) in l.entries().iter().enumerate() {
            assert_eq!(l.index_of(e.name), Some(i), "{} registered twice", e.name);
        }
        assert!(l.len() < usize::from(u16::MAX));
    }
}
