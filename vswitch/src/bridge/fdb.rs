//! The MAC table (forwarding database) of all bridge domains of one worker.
//!
//! A fixed-capacity open-addressing hash table (linear probing, backward-shift deletion) keyed by
//! (network, MAC), allocated once at start: learning never allocates. Each 16-byte slot carries
//! the output port, so a lookup touches one cache line; the slab entry behind it holds the
//! learning time and the links of its port's LRU list, touched only when an entry is learned,
//! moved, or refreshed (at most once per second per entry).
//!
//! Limits and eviction: a port may hold at most its limit of learned MACs, a network at most its
//! limit. A new MAC beyond the port's limit replaces that port's least recently seen MAC; beyond
//! the network's limit, the least recently seen MAC of the port with the most MACs in that
//! network; in a full table, that of the port with the most MACs overall. So a port flooding
//! random source MACs only ever pushes out its own entries (or those of a port even larger),
//! never the few MACs of the other ports. Static entries are never aged, moved or evicted.
//!
//! Time is an argument (`now`, seconds): aging is tested with a fake clock.

use dataplane::hugemem::HugeArray;

/// Network id (bridge domain).
pub type NetId = u16;
/// Port id.
pub type PortId = u16;

const EMPTY: u64 = u64::MAX;
const NIL: u32 = u32::MAX;
const FLAG_STATIC: u8 = 1;

#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Slot {
    key: u64,
    entry: u32,
    port: PortId,
    /// Low 16 bits of the second the entry was last refreshed: refresh at most once a second.
    tick: u16,
}

const EMPTY_SLOT: Slot = Slot {
    key: EMPTY,
    entry: NIL,
    port: 0,
    tick: 0,
};

#[derive(Clone, Copy)]
struct Entry {
    key: u64,
    last_seen: u64,
    prev: u32,
    next: u32,
    port: PortId,
    flags: u8,
}

#[derive(Clone, Copy)]
struct PortList {
    head: u32,
    tail: u32,
    count: u32,
    net: NetId,
}

const EMPTY_LIST: PortList = PortList {
    head: NIL,
    tail: NIL,
    count: 0,
    net: 0,
};

/// What learning a source MAC did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// Known on this port already.
    Known,
    /// Known on this port; its age was reset (happens at most once a second per entry).
    Refreshed,
    /// New entry.
    Learned,
    /// New entry that pushed out another one because a limit was reached.
    LearnedEvicting(Evicted),
    /// The MAC moved from another port to this one.
    Moved,
    /// The MAC moved here and pushed out another entry because a limit was reached.
    MovedEvicting(Evicted),
    /// The MAC is static on another port; not learned.
    StaticConflict,
    /// The table is full and nothing could be evicted; not learned.
    Full,
}

/// Which limit made an eviction necessary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// The port's limit.
    PortLimit,
    /// The network's limit.
    NetworkLimit,
    /// The table's capacity.
    TableFull,
}

/// A (network, MAC) key with its home slot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    key: u64,
    home: usize,
}

/// Limits that apply to one learning decision.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Most learned MACs on the ingress port.
    pub port: u32,
    /// Most learned MACs in the network.
    pub network: u32,
    /// Ports of the network (candidates for network-limit eviction).
    pub network_ports: &'a [PortId],
}

/// One entry as [`MacTable::dump`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpEntry {
    /// Network.
    pub net: NetId,
    /// MAC address.
    pub mac: [u8; 6],
    /// Port.
    pub port: PortId,
    /// Static entry.
    pub is_static: bool,
    /// Second of the last refresh.
    pub last_seen: u64,
}

/// The MAC table.
pub struct MacTable {
    slots: HugeArray<Slot>,
    shift: u32,
    entries: HugeArray<Entry>,
    free: u32,
    len: u32,
    ports: Box<[PortList]>,
    net_learned: Box<[u32]>,
    seed: u64,
}

#[inline]
fn key_of(net: NetId, mac: &[u8; 6]) -> u64 {
    (u64::from(net) << 48)
        | u64::from(mac[0]) << 40
        | u64::from(mac[1]) << 32
        | u64::from(mac[2]) << 24
        | u64::from(mac[3]) << 16
        | u64::from(mac[4]) << 8
        | u64::from(mac[5])
}

#[inline]
fn mac_of(key: u64) -> [u8; 6] {
    let b = key.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

impl MacTable {
    /// A table for `capacity` entries (static and learned), `max_ports` ports and `max_nets`
    /// networks. Everything is allocated here, once.
    pub fn new(capacity: u32, max_ports: usize, max_nets: usize) -> MacTable {
        let capacity = capacity.clamp(16, 1 << 26);
        let nslots = (capacity as usize * 2).next_power_of_two();
        let blank = Entry {
            key: EMPTY,
            last_seen: 0,
            prev: NIL,
            next: NIL,
            port: 0,
            flags: 0,
        };
        let mut entries = HugeArray::new(capacity as usize, blank);
        // The free list threads every entry in order.
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = if i + 1 < capacity as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        let seed = {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            (t ^ (std::process::id() as u64).rotate_left(32)) | 1
        };
        MacTable {
            slots: HugeArray::new(nslots, EMPTY_SLOT),
            shift: 64 - nslots.trailing_zeros(),
            entries,
            free: 0,
            len: 0,
            ports: vec![EMPTY_LIST; max_ports].into_boxed_slice(),
            net_learned: vec![0; max_nets].into_boxed_slice(),
            seed,
        }
    }

    /// Entries (static and learned).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most entries the table holds.
    pub fn capacity(&self) -> u32 {
        self.entries.len() as u32
    }

    /// Learned MACs behind `port`.
    pub fn port_learned(&self, port: PortId) -> u32 {
        self.ports.get(port as usize).map_or(0, |l| l.count)
    }

    /// Learned MACs in `net`.
    pub fn net_learned(&self, net: NetId) -> u32 {
        self.net_learned.get(net as usize).copied().unwrap_or(0)
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // A keyed multiply-xorshift: spreads MACs that differ only in low bits, and a random seed
        // keeps an attacker from aiming a flood of MACs at one probe chain.
        let mut h = (key ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (h >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        self.find_from(key, self.home(key))
    }

    #[inline]
    fn find_from(&self, key: u64, home: usize) -> Option<usize> {
        let mask = self.mask();
        let mut i = home & mask;
        loop {
            // `i` is always masked into range.
            let s = &self.slots[i];
            if s.key == key {
                return Some(i);
            }
            if s.key == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The key and home slot of (`net`, `mac`): computed once per frame, then handed to
    /// [`MacTable::prefetch_slot`], [`MacTable::lookup_probe`] and [`MacTable::learn_probe`].
    #[inline]
    pub fn probe(&self, net: NetId, mac: &[u8; 6]) -> Probe {
        let key = key_of(net, mac);
        Probe {
            key,
            home: self.home(key),
        }
    }

    /// Hints the CPU to load the slot for (`net`, `mac`) ahead of a lookup.
    #[inline]
    pub fn prefetch(&self, net: NetId, mac: &[u8; 6]) {
        self.prefetch_slot(&self.probe(net, mac));
    }

    /// Hints the CPU to load a probe's home slot.
    #[inline]
    pub fn prefetch_slot(&self, p: &Probe) {
        let i = p.home & self.mask();
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.slots.as_ptr().wrapping_add(i).cast::<i8>();
            // SAFETY: prefetch is a hint that never faults, whatever the address; `i` is in range.
            unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    /// The port behind (`net`, `mac`).
    #[inline]
    pub fn lookup(&self, net: NetId, mac: &[u8; 6]) -> Option<PortId> {
        self.lookup_probe(&self.probe(net, mac))
    }

    /// The port behind a probe's key.
    #[inline]
    pub fn lookup_probe(&self, p: &Probe) -> Option<PortId> {
        self.find_from(p.key, p.home).map(|i| self.slots[i].port)
    }

    /// Learns that `mac` in `net` was seen on `port` at `now`.
    #[inline]
    pub fn learn(
        &mut self,
        net: NetId,
        mac: &[u8; 6],
        port: PortId,
        now: u64,
        limits: &Limits<'_>,
    ) -> Learn {
        self.learn_probe(&self.probe(net, mac), port, now, limits)
    }

    /// [`MacTable::learn`] with the probe already computed.
    #[inline]
    pub fn learn_probe(&mut self, p: &Probe, port: PortId, now: u64, limits: &Limits<'_>) -> Learn {
        let key = p.key;
        let net = (key >> 48) as NetId;
        if let Some(i) = self.find_from(key, p.home) {
            let s = self.slots[i];
            if s.port == port {
                if s.tick != now as u16 {
                    self.slots[i].tick = now as u16;
                    if let Some(e) = self.entries.get_mut(s.entry as usize) {
                        if e.flags & FLAG_STATIC == 0 {
                            e.last_seen = now;
                            self.touch(s.entry, port);
                            return Learn::Refreshed;
                        }
                    }
                }
                return Learn::Known;
            }
            if self
                .entries
                .get(s.entry as usize)
                .is_some_and(|e| e.flags & FLAG_STATIC != 0)
            {
                return Learn::StaticConflict;
            }
            if limits.port == 0 {
                // The MAC left its old port for one that may learn nothing: forget where it
                // was, so that frames to it flood (and reach it) instead of going astray.
                self.remove_key(key);
                return Learn::Full;
            }
            // Station move: leave the old port's list, join the new port's under its limit.
            self.unlink(s.entry);
            let evicted = (self.port_learned(port) >= limits.port && self.evict_oldest_of(port))
                .then_some(Evicted::PortLimit);
            // The eviction may have shifted slots: find ours again.
            let Some(i) = self.find(key) else {
                return Learn::Full;
            };
            self.slots[i].port = port;
            self.slots[i].tick = now as u16;
            if let Some(e) = self.entries.get_mut(s.entry as usize) {
                e.port = port;
                e.last_seen = now;
            }
            self.link_tail(s.entry, port, net);
            return match evicted {
                Some(why) => Learn::MovedEvicting(why),
                None => Learn::Moved,
            };
        }
        let mut evicted = None;
        if self.port_learned(port) >= limits.port {
            if limits.port == 0 || !self.evict_oldest_of(port) {
                return Learn::Full;
            }
            evicted = Some(Evicted::PortLimit);
        } else if self.net_learned(net) >= limits.network {
            if !self.evict_from_largest(limits.network_ports) {
                return Learn::Full;
            }
            evicted = Some(Evicted::NetworkLimit);
        } else if self.free == NIL {
            let victim = (0..self.ports.len()).max_by_key(|&p| self.ports[p].count);
            match victim {
                Some(p) if self.ports[p].count > 0 && self.evict_oldest_of(p as PortId) => {
                    evicted = Some(Evicted::TableFull)
                }
                _ => return Learn::Full,
            }
        }
        match self.insert(key, port, now, 0) {
            Some(e) => {
                self.link_tail(e, port, net);
                match evicted {
                    Some(why) => Learn::LearnedEvicting(why),
                    None => Learn::Learned,
                }
            }
            None => Learn::Full,
        }
    }

    /// Adds or replaces a static entry; `false` if the table is full.
    pub fn set_static(&mut self, net: NetId, mac: &[u8; 6], port: PortId) -> bool {
        let key = key_of(net, mac);
        self.remove_key(key);
        if self.free == NIL {
            return false;
        }
        self.insert(key, port, 0, FLAG_STATIC).is_some()
    }

    /// Removes the entry for (`net`, `mac`); returns whether one existed.
    pub fn remove(&mut self, net: NetId, mac: &[u8; 6]) -> bool {
        self.remove_key(key_of(net, mac))
    }

    /// Removes every learned entry of `port` (it left its network or was removed).
    pub fn flush_port(&mut self, port: PortId) -> u32 {
        let mut n = 0;
        while self.evict_oldest_of(port) {
            n += 1;
        }
        n
    }

    /// Removes the least recently seen learned entry of whichever of `ports` has the most
    /// learned entries; `false` if none has any.
    pub fn evict_from_largest(&mut self, ports: &[PortId]) -> bool {
        let victim = ports.iter().copied().max_by_key(|&p| self.port_learned(p));
        match victim {
            Some(p) if self.port_learned(p) > 0 => self.evict_oldest_of(p),
            _ => false,
        }
    }

    /// Removes the least recently seen learned entry of `port`, if it has one.
    pub fn flush_oldest(&mut self, port: PortId) -> Option<()> {
        self.evict_oldest_of(port).then_some(())
    }

    /// Removes every entry, static or learned, that points at `port`.
    pub fn purge_port(&mut self, port: PortId) {
        self.flush_port(port);
        let statics: Vec<u64> = self
            .entries
            .iter()
            .filter(|e| e.key != EMPTY && e.flags & FLAG_STATIC != 0 && e.port == port)
            .map(|e| e.key)
            .collect();
        for k in statics {
            self.remove_key(k);
        }
    }

    /// Removes learned entries of `ports` last seen `aging` seconds or more before `now`, at most
    /// `budget` of them (so one call never stalls the worker); returns how many went.
    pub fn expire(&mut self, now: u64, aging: impl Fn(PortId) -> u64, budget: u32) -> u32 {
        let mut n = 0;
        for p in 0..self.ports.len() {
            let age = aging(p as PortId);
            loop {
                let head = self.ports[p].head;
                let Some(e) = self.entries.get(head as usize) else {
                    break;
                };
                if now.saturating_sub(e.last_seen) < age || n >= budget {
                    break;
                }
                let key = e.key;
                self.remove_key(key);
                n += 1;
            }
            if n >= budget {
                break;
            }
        }
        n
    }

    /// The first `limit` entries (of `net`, or all) in (network, MAC) order that come after
    /// `after`; O(table) time, whatever the page size.
    pub fn dump_page(
        &self,
        net: Option<NetId>,
        after: Option<(NetId, [u8; 6])>,
        limit: usize,
    ) -> Vec<DumpEntry> {
        let after = after.map(|(n, mac)| key_of(n, &mac));
        let mut page: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| {
                e.key != EMPTY
                    && net.is_none_or(|n| (e.key >> 48) as NetId == n)
                    && after.is_none_or(|a| e.key > a)
            })
            .collect();
        if page.len() > limit {
            page.select_nth_unstable_by_key(limit, |e| e.key);
            page.truncate(limit);
        }
        page.sort_unstable_by_key(|e| e.key);
        page.into_iter()
            .map(|e| DumpEntry {
                net: (e.key >> 48) as NetId,
                mac: mac_of(e.key),
                port: e.port,
                is_static: e.flags & FLAG_STATIC != 0,
                last_seen: e.last_seen,
            })
            .collect()
    }

    /// Every entry, optionally only of `net`, in (network, MAC) order.
    pub fn dump(&self, net: Option<NetId>) -> Vec<DumpEntry> {
        self.dump_page(net, None, usize::MAX)
    }

    fn insert(&mut self, key: u64, port: PortId, now: u64, flags: u8) -> Option<u32> {
        let e = self.free;
        let entry = self.entries.get_mut(e as usize)?;
        self.free = entry.next;
        *entry = Entry {
            key,
            last_seen: now,
            prev: NIL,
            next: NIL,
            port,
            flags,
        };
        let mask = self.mask();
        let mut i = self.home(key);
        while self.slots[i].key != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot {
            key,
            entry: e,
            port,
            tick: now as u16,
        };
        self.len += 1;
        Some(e)
    }

    fn remove_key(&mut self, key: u64) -> bool {
        let Some(mut i) = self.find(key) else {
            return false;
        };
        let e = self.slots[i].entry;
        if self
            .entries
            .get(e as usize)
            .is_some_and(|x| x.flags & FLAG_STATIC == 0)
        {
            self.unlink(e);
        }
        if let Some(x) = self.entries.get_mut(e as usize) {
            x.key = EMPTY;
            x.flags = 0;
            x.next = self.free;
            self.free = e;
        }
        self.len -= 1;
        // Backward-shift deletion: pull later members of the probe chain into the hole so that
        // lookups never need tombstones.
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j].key;
            if k == EMPTY {
                break;
            }
            let home = self.home(k);
            // Move slot j into hole i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots[i] = self.slots[j];
                i = j;
            }
        }
        self.slots[i] = EMPTY_SLOT;
        true
    }

    fn evict_oldest_of(&mut self, port: PortId) -> bool {
        let Some(list) = self.ports.get(port as usize) else {
            return false;
        };
        let Some(e) = self.entries.get(list.head as usize) else {
            return false;
        };
        let key = e.key;
        self.remove_key(key)
    }

    fn link_tail(&mut self, e: u32, port: PortId, net: NetId) {
        let Some(list) = self.ports.get_mut(port as usize) else {
            return;
        };
        let old_tail = list.tail;
        list.tail = e;
        if list.head == NIL {
            list.head = e;
        }
        list.count += 1;
        list.net = net;
        if let Some(t) = self.entries.get_mut(old_tail as usize) {
            t.next = e;
        }
        if let Some(x) = self.entries.get_mut(e as usize) {
            x.prev = old_tail;
            x.next = NIL;
        }
        if let Some(c) = self.net_learned.get_mut(net as usize) {
            *c += 1;
        }
    }

    fn unlink(&mut self, e: u32) {
        let Some(&x) = self.entries.get(e as usize) else {
            return;
        };
        let Some(list) = self.ports.get_mut(x.port as usize) else {
            return;
        };
        if list.head == e {
            list.head = x.next;
        }
        if list.tail == e {
            list.tail = x.prev;
        }
        list.count = list.count.saturating_sub(1);
        let net = (x.key >> 48) as usize;
        if let Some(p) = self.entries.get_mut(x.prev as usize) {
            p.next = x.next;
        }
        if let Some(n) = self.entries.get_mut(x.next as usize) {
            n.prev = x.prev;
        }
        if let Some(c) = self.net_learned.get_mut(net) {
            *c = c.saturating_sub(1);
        }
        if let Some(y) = self.entries.get_mut(e as usize) {
            y.prev = NIL;
            y.next = NIL;
        }
    }

    fn touch(&mut self, e: u32, port: PortId) {
        let net = self.ports.get(port as usize).map_or(0, |l| l.net);
        if self.ports.get(port as usize).is_some_and(|l| l.tail == e) {
            return;
        }
        self.unlink(e);
        self.link_tail(e, port, net);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u32) -> [u8; 6] {
        let b = i.to_be_bytes();
        [0x02, 0, b[0], b[1], b[2], b[3]]
    }

    const WIDE: Limits<'static> = Limits {
        port: u32::MAX,
        network: u32::MAX,
        network_ports: &[],
    };

    #[test]
    fn learns_looks_up_and_removes() {
        let mut t = MacTable::new(1024, 16, 4);
        assert_eq!(t.learn(1, &mac(1), 3, 0, &WIDE), Learn::Learned);
        assert_eq!(t.learn(1, &mac(1), 3, 0, &WIDE), Learn::Known);
        assert_eq!(t.lookup(1, &mac(1)), Some(3));
        assert_eq!(
            t.lookup(2, &mac(1)),
            None,
            "networks are separate key spaces"
        );
        assert!(t.remove(1, &mac(1)));
        assert_eq!(t.lookup(1, &mac(1)), None);
        assert_eq!(t.port_learned(3), 0);
        assert_eq!(t.net_learned(1), 0);
    }

    #[test]
    fn many_inserts_and_removes_keep_every_key_findable() {
        let mut t = MacTable::new(4096, 16, 4);
        for i in 0..4000 {
            assert_eq!(
                t.learn(1, &mac(i), (i % 8) as PortId, 0, &WIDE),
                Learn::Learned
            );
        }
        for i in (0..4000).step_by(3) {
            assert!(t.remove(1, &mac(i)));
        }
        for i in 0..4000 {
            let want = if i % 3 == 0 {
                None
            } else {
                Some((i % 8) as PortId)
            };
            assert_eq!(t.lookup(1, &mac(i)), want, "mac {i}");
        }
        for i in (0..4000).step_by(3) {
            assert_eq!(t.learn(1, &mac(i), 9, 0, &WIDE), Learn::Learned);
        }
        assert_eq!(t.len(), 4000);
        assert_eq!(t.dump(None).len(), 4000);
    }

    #[test]
    fn station_move_changes_port_and_counts() {
        let mut t = MacTable::new(64, 16, 4);
        t.learn(1, &mac(1), 1, 0, &WIDE);
        assert_eq!(t.learn(1, &mac(1), 2, 1, &WIDE), Learn::Moved);
        assert_eq!(t.lookup(1, &mac(1)), Some(2));
        assert_eq!((t.port_learned(1), t.port_learned(2)), (0, 1));
    }

    #[test]
    fn ages_out_unrefreshed_entries_only() {
        let mut t = MacTable::new(64, 16, 4);
        t.learn(1, &mac(1), 1, 0, &WIDE);
        t.learn(1, &mac(2), 1, 0, &WIDE);
        assert_eq!(t.learn(1, &mac(2), 1, 200, &WIDE), Learn::Refreshed);
        assert_eq!(t.expire(299, |_| 300, 100), 0);
        assert_eq!(t.expire(300, |_| 300, 100), 1);
        assert_eq!(t.lookup(1, &mac(1)), None);
        assert_eq!(t.lookup(1, &mac(2)), Some(1));
        assert_eq!(t.expire(500, |_| 300, 100), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn static_entries_do_not_move_age_or_count() {
        let mut t = MacTable::new(64, 16, 4);
        assert!(t.set_static(1, &mac(7), 4));
        assert_eq!(t.learn(1, &mac(7), 5, 0, &WIDE), Learn::StaticConflict);
        assert_eq!(t.lookup(1, &mac(7)), Some(4));
        assert_eq!(t.expire(10_000, |_| 1, 100), 0);
        assert_eq!(t.port_learned(4), 0);
        t.purge_port(4);
        assert_eq!(t.lookup(1, &mac(7)), None);
    }

    #[test]
    fn port_limit_evicts_own_oldest() {
        let mut t = MacTable::new(1024, 16, 4);
        let lim = Limits {
            port: 3,
            network: 100,
            network_ports: &[1, 2],
        };
        t.learn(1, &mac(100), 2, 0, &lim);
        for i in 0..3 {
            assert_eq!(t.learn(1, &mac(i), 1, i as u64, &lim), Learn::Learned);
        }
        assert_eq!(
            t.learn(1, &mac(3), 1, 5, &lim),
            Learn::LearnedEvicting(Evicted::PortLimit)
        );
        assert_eq!(t.lookup(1, &mac(0)), None);
        assert_eq!(t.lookup(1, &mac(3)), Some(1));
        assert_eq!(t.lookup(1, &mac(100)), Some(2));
        assert_eq!(t.port_learned(1), 3);
    }

    #[test]
    fn network_limit_evicts_from_the_largest_port() {
        let mut t = MacTable::new(1024, 16, 4);
        let lim = Limits {
            port: 1000,
            network: 10,
            network_ports: &[1, 2, 3],
        };
        t.learn(1, &mac(900), 2, 0, &lim);
        t.learn(1, &mac(901), 3, 0, &lim);
        for i in 0..100 {
            t.learn(1, &mac(i), 1, 1, &lim);
        }
        assert_eq!(t.net_learned(1), 10);
        assert_eq!(t.lookup(1, &mac(900)), Some(2));
        assert_eq!(t.lookup(1, &mac(901)), Some(3));
        assert_eq!(t.lookup(1, &mac(99)), Some(1));
    }

    #[test]
    fn full_table_evicts_from_the_largest_port() {
        let mut t = MacTable::new(16, 16, 4);
        t.learn(1, &mac(900), 2, 0, &WIDE);
        for i in 0..100 {
            let r = t.learn(1, &mac(i), 1, 0, &WIDE);
            assert!(
                matches!(
                    r,
                    Learn::Learned | Learn::LearnedEvicting(Evicted::TableFull)
                ),
                "{r:?}"
            );
        }
        assert_eq!(t.len(), 16);
        assert_eq!(t.lookup(1, &mac(900)), Some(2));
    }

    #[test]
    fn refresh_moves_entry_to_the_young_end() {
        let mut t = MacTable::new(64, 16, 4);
        let lim = Limits {
            port: 2,
            network: 100,
            network_ports: &[1],
        };
        t.learn(1, &mac(1), 1, 0, &lim);
        t.learn(1, &mac(2), 1, 1, &lim);
        t.learn(1, &mac(1), 1, 2, &lim);
        t.learn(1, &mac(3), 1, 3, &lim);
        assert_eq!(t.lookup(1, &mac(1)), Some(1), "refreshed entry survives");
        assert_eq!(t.lookup(1, &mac(2)), None, "oldest goes");
    }
}
