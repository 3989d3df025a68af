//! The underlay's neighbour table (IPv4 -> MAC, RFC 826 ARP) and the ARP helpers of the
//! uplink: answering requests for the uplink's address in place, and building requests.
//!
//! The table is a protocol core: it does no I/O and takes time (`now`, monotonic seconds, the
//! worker's clock) as an argument; the caller sends the requests it asks for and transmits or
//! frees the buffers it hands back. Everything is allocated in [`NeighTable::new`]: a
//! fixed-capacity open-addressing index (linear probing, backward-shift deletion) over a slab of
//! entries, and a bounded FIFO of pending buffers per entry.
//!
//! An entry's life, with the default [`NeighConfig`]:
//!
//! ```text
//!   lookup miss ──> Incomplete ──(reply)──> Reachable ──(30 s, unused)──> gone
//!    (request 1)     │  (request every 1 s,     │  ▲
//!                    │   3 in all)              │  │(reply)
//!                    ▼                     (30 s, used)
//!                  Failed <──(3 unanswered)── Probe (MAC still used, unicast requests)
//!                    │ (3 s: lookups answer Failed)
//!                    ▼
//!                  gone
//! ```
//!
//! An entry that was looked up since it was last confirmed is reconfirmed with unicast
//! requests while its MAC stays in use (Linux's STALE/PROBE, without a traffic hiccup every
//! 30 s); one nobody used just goes. Time is whole seconds, so an interval may be up to a second
//! short of its nominal length.
//!
//! Capacity: a lookup miss in a full table first evicts a failed entry, then a reachable one
//! nobody has used since it was learned; if there is none, it answers [`Resolution::Full`].
//! Learning never evicts, so ARP traffic from the underlay cannot push out the neighbours we
//! are resolving.

use std::net::Ipv4Addr;

use dataplane::named_counters;
use dataplane::pool::Buf;
use dataplane::wire::ethernet::{is_unicast, BROADCAST};
use dataplane::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
};

/// Length of an ARP frame for IPv4 over Ethernet, unpadded: 14 + 28.
pub const ARP_FRAME_LEN: usize = 42;

/// Timeouts (seconds) and limits of a [`NeighTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighConfig {
    /// How long a confirmed MAC is used without reconfirmation.
    pub reachable: u64,
    /// Interval between requests while resolving or reconfirming.
    pub retry: u64,
    /// Requests sent before giving up (at least 1).
    pub max_tries: u8,
    /// How long a failed entry answers [`Resolution::Failed`] before a lookup may start
    /// resolving again.
    pub failed_hold: u64,
    /// Buffers queued per unresolved entry; beyond that [`NeighTable::queue`] refuses them.
    pub queue_len: u16,
}

impl Default for NeighConfig {
    fn default() -> Self {
        NeighConfig {
            reachable: 30,
            retry: 1,
            max_tries: 3,
            failed_hold: 3,
            queue_len: 3,
        }
    }
}

/// The state of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighState {
    /// Requests sent, no answer yet; buffers may wait in its queue.
    Incomplete,
    /// MAC confirmed within the reachable time.
    Reachable,
    /// Reachable time over and the MAC was in use: still used while unicast requests
    /// reconfirm it.
    Probe,
    /// No answer to any request; lookups answer [`Resolution::Failed`] until it goes.
    Failed,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Resolution {
    /// Send to this MAC.
    Known([u8; 6]),
    /// Being resolved: queue the buffer ([`NeighTable::queue`]) or drop it; send a broadcast
    /// request first if `send_request` (the lookup that started resolution).
    Resolve {
        /// This lookup started resolution: send the first request now.
        send_request: bool,
    },
    /// Resolution failed recently: drop ([`NeighDrop::Failed`]).
    Failed,
    /// No room for a new entry: drop ([`NeighDrop::TableFull`]).
    Full,
}

/// What learning a (IP, MAC) pair did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Learn {
    /// A new entry (nobody was waiting for it).
    New,
    /// An entry being resolved (or failed) is now reachable; this many queued buffers were
    /// handed to `release`, oldest first, to be sent to the MAC.
    Resolved(u16),
    /// The known MAC was reconfirmed.
    Confirmed,
    /// The MAC changed: tunnels using the old one must follow
    /// ([`crate::vxlan::Tunnel::set_remote_mac`]).
    Changed,
    /// Not stored: another MAC was claimed for a neighbour whose MAC is confirmed or being
    /// reconfirmed. The known MAC stays in use and is reconfirmed at once (unicast requests);
    /// only if it stops answering does the entry fail and a broadcast resolution take
    /// whichever MAC answers then. A forged ARP reply so cannot divert an underlay neighbour
    /// (a peer VTEP) while the real one answers, and a real change costs about `max_tries`
    /// retry intervals.
    Disputed,
    /// Not stored: the table is full (learning never evicts).
    Full,
    /// Not stored: [`NeighTable::update`] of an address with no entry.
    Unknown,
    /// Not stored: the MAC is multicast, broadcast or zero.
    Invalid,
}

/// What [`NeighTable::tick`] asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeighEvent<P> {
    /// Send an ARP request for `ip`: broadcast, or to `unicast` when reconfirming a known MAC.
    Request {
        /// Address to resolve.
        ip: Ipv4Addr,
        /// Ethernet destination of the request; `None` for broadcast.
        unicast: Option<[u8; 6]>,
    },
    /// Resolution of `ip` failed (its queued buffers follow as `Dropped`).
    Failed(Ipv4Addr),
    /// A buffer that waited for an entry that failed: free it and count
    /// [`NeighDrop::Failed`].
    Dropped(P),
    /// An entry nobody used went at the end of its reachable time.
    Expired(Ipv4Addr),
}

named_counters! {
    /// Why a frame bound for the underlay was dropped for want of a next-hop MAC.
    pub enum NeighDrop {
        /// The next hop did not answer ARP.
        Failed => "neigh_failed",
        /// The next hop's queue of frames waiting for resolution was full.
        QueueFull => "neigh_queue_full",
        /// The neighbour table had no room for the next hop.
        TableFull => "neigh_table_full",
    }
}

/// One entry, as [`NeighTable::get`] and [`NeighTable::for_each`] report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry {
    /// The neighbour's address.
    pub ip: Ipv4Addr,
    /// Its MAC, once known.
    pub mac: Option<[u8; 6]>,
    /// State.
    pub state: NeighState,
    /// When the state next changes (next request, end of reachable time, end of failure).
    pub deadline: u64,
    /// Buffers waiting for resolution.
    pub queued: u16,
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: Ipv4Addr,
    mac: [u8; 6],
    /// `None`: on the free list.
    state: Option<NeighState>,
    /// Requests sent in this round of resolution or reconfirmation.
    tries: u8,
    /// Looked up since last confirmed.
    used: bool,
    deadline: u64,
    q_head: u16,
    q_len: u16,
}

const FREE_ENTRY: Entry = Entry {
    ip: Ipv4Addr::UNSPECIFIED,
    mac: [0; 6],
    state: None,
    tries: 0,
    used: false,
    deadline: 0,
    q_head: 0,
    q_len: 0,
};

/// The neighbour table of one worker's uplink. `P` is what waits for resolution: a [`Buf`]
/// in the pipeline (a plain value in tests).
pub struct NeighTable<P = Buf> {
    cfg: NeighConfig,
    /// Entry index per slot, or `NIL`; a power of two, at least twice the capacity.
    slots: Box<[u32]>,
    shift: u32,
    /// Odd multiplier of the index hash, random per table so probe chains cannot be aimed at.
    mul: u32,
    entries: Box<[Entry]>,
    /// Free entry indices; never grows past its initial capacity.
    free: Vec<u32>,
    /// `queue_len` pending buffers per entry, a ring each.
    queue: Box<[Option<P>]>,
}

impl<P> NeighTable<P> {
    /// A table for `capacity` neighbours (clamped to 4..=65536). Allocates everything, once.
    pub fn new(capacity: usize, cfg: NeighConfig) -> NeighTable<P> {
        let capacity = capacity.clamp(4, 1 << 16);
        let cfg = NeighConfig {
            max_tries: cfg.max_tries.max(1),
            queue_len: cfg.queue_len.min(1024),
            ..cfg
        };
        let nslots = (capacity * 2).next_power_of_two();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        NeighTable {
            cfg,
            slots: vec![NIL; nslots].into_boxed_slice(),
            shift: 32 - nslots.trailing_zeros(),
            mul: (seed.wrapping_mul(0x9e37_79b9) ^ std::process::id()) | 1,
            entries: vec![FREE_ENTRY; capacity].into_boxed_slice(),
            free: (0..capacity as u32).rev().collect(),
            queue: (0..capacity * usize::from(cfg.queue_len))
                .map(|_| None)
                .collect(),
        }
    }

    /// The configuration in force (after clamping).
    #[must_use]
    pub fn config(&self) -> &NeighConfig {
        &self.cfg
    }

    /// Entries in use.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most entries.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    fn home(&self, ip: Ipv4Addr) -> usize {
        (u32::from(ip).wrapping_mul(self.mul) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Slot and entry index of `ip`.
    #[inline]
    fn find(&self, ip: Ipv4Addr) -> Option<(usize, usize)> {
        let mut s = self.home(ip);
        // The index is at most half full, so an empty slot ends every probe; the bound is
        // only a belt to those braces.
        for _ in 0..self.slots.len() {
            let i = *self.slots.get(s)?;
            if i == NIL {
                return None;
            }
            if self.entries.get(i as usize)?.ip == ip {
                return Some((s, i as usize));
            }
            s = (s + 1) & self.mask();
        }
        None
    }

    /// Takes a free entry for `ip` in state `state` and indexes it; `None` if the table is
    /// full (after evicting, if `evict`).
    fn insert(&mut self, ip: Ipv4Addr, state: NeighState, evict: bool) -> Option<usize> {
        if self.free.is_empty() && evict {
            self.evict_one();
        }
        let i = self.free.pop()? as usize;
        let mut s = self.home(ip);
        while self.slots[s] != NIL {
            // Terminates: at most `capacity` of the `2 * capacity` slots are taken.
            s = (s + 1) & self.mask();
        }
        self.slots[s] = i as u32;
        self.entries[i] = Entry {
            ip,
            state: Some(state),
            ..FREE_ENTRY
        };
        Some(i)
    }

    /// Frees entry `i` (whose queue must be empty) and closes its gap in the index.
    fn remove_at(&mut self, slot: usize, i: usize) {
        debug_assert_eq!(self.entries[i].q_len, 0, "queued buffers would be lost");
        let mask = self.mask();
        let mut hole = slot;
        let mut j = slot;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j];
            if k == NIL {
                break;
            }
            let home = self.home(self.entries[k as usize].ip);
            // The entry at `j` may fill the hole if the hole lies on its probe path home..=j.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = k;
                hole = j;
            }
        }
        self.slots[hole] = NIL;
        self.entries[i] = FREE_ENTRY;
        // Cannot exceed the capacity reserved in `new`: `i` was taken from this list.
        self.free.push(i as u32);
    }

    /// Evicts one failed entry, else one reachable entry unused since it was learned.
    fn evict_one(&mut self) {
        let pick = |want: NeighState| {
            self.entries
                .iter()
                .position(|e| e.state == Some(want) && (want == NeighState::Failed || !e.used))
        };
        let Some(i) = pick(NeighState::Failed).or_else(|| pick(NeighState::Reachable)) else {
            return;
        };
        if let Some((s, i)) = self.find(self.entries[i].ip) {
            self.remove_at(s, i);
        }
    }

    /// The MAC to send to `ip` at `now`, or what to do instead. A miss starts resolution.
    /// Call it for every frame (or burst) sent to the next hop: it is what keeps an entry in
    /// use alive. Allocates nothing.
    #[inline]
    pub fn lookup(&mut self, ip: Ipv4Addr, now: u64) -> Resolution {
        let Some((s, i)) = self.find(ip) else {
            let retry = self.cfg.retry;
            return match self.insert(ip, NeighState::Incomplete, true) {
                Some(i) => {
                    let e = &mut self.entries[i];
                    e.tries = 1;
                    e.deadline = now.saturating_add(retry);
                    Resolution::Resolve { send_request: true }
                }
                None => Resolution::Full,
            };
        };
        let e = &mut self.entries[i];
        match e.state {
            Some(NeighState::Reachable | NeighState::Probe) => {
                e.used = true;
                Resolution::Known(e.mac)
            }
            Some(NeighState::Incomplete) => Resolution::Resolve {
                send_request: false,
            },
            Some(NeighState::Failed) if now < e.deadline => Resolution::Failed,
            Some(NeighState::Failed) | None => {
                // The hold is over: resolve afresh.
                self.remove_at(s, i);
                self.lookup(ip, now)
            }
        }
    }

    /// Queues `p` to wait for `ip`'s resolution; gives it back if `ip` is not being resolved
    /// or its queue is full (drop it and count [`NeighDrop::QueueFull`]).
    #[inline]
    pub fn queue(&mut self, ip: Ipv4Addr, p: P) -> Result<(), P> {
        let ql = usize::from(self.cfg.queue_len);
        let Some((_, i)) = self.find(ip) else {
            return Err(p);
        };
        let e = &mut self.entries[i];
        if e.state != Some(NeighState::Incomplete) || usize::from(e.q_len) >= ql {
            return Err(p);
        }
        let at = i * ql + (usize::from(e.q_head) + usize::from(e.q_len)) % ql;
        e.q_len += 1;
        match self.queue.get_mut(at) {
            Some(cell) => {
                *cell = Some(p);
                Ok(())
            }
            None => Err(p),
        }
    }

    /// Hands entry `i`'s queued buffers to `f`, oldest first; returns how many.
    fn drain(&mut self, i: usize, mut f: impl FnMut(P)) -> u16 {
        let ql = usize::from(self.cfg.queue_len);
        let e = &mut self.entries[i];
        let n = e.q_len;
        for k in 0..usize::from(n) {
            let at = i * ql + (usize::from(e.q_head) + k) % ql;
            if let Some(p) = self.queue.get_mut(at).and_then(Option::take) {
                f(p);
            }
        }
        e.q_head = 0;
        e.q_len = 0;
        n
    }

    /// Records that `ip` is at `mac` (an ARP reply or request aimed at us); creates the entry if
    /// there is room. Buffers that waited for `ip` go to `release`, to be sent to `mac`.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: u64, release: impl FnMut(P)) -> Learn {
        self.learn_inner(ip, mac, now, true, release)
    }

    /// As [`NeighTable::learn`], but only for an address already in the table (a gratuitous
    /// ARP announcement): returns [`Learn::Unknown`] otherwise.
    pub fn update(
        &mut self,
        ip: Ipv4Addr,
        mac: [u8; 6],
        now: u64,
        release: impl FnMut(P),
    ) -> Learn {
        self.learn_inner(ip, mac, now, false, release)
    }

    fn learn_inner(
        &mut self,
        ip: Ipv4Addr,
        mac: [u8; 6],
        now: u64,
        create: bool,
        release: impl FnMut(P),
    ) -> Learn {
        if !is_unicast(&mac) || mac == [0; 6] {
            return Learn::Invalid;
        }
        let (i, prev) = match self.find(ip) {
            Some((_, i)) => (i, self.entries[i].state),
            None if create => match self.insert(ip, NeighState::Reachable, false) {
                Some(i) => (i, None),
                None => return Learn::Full,
            },
            None => return Learn::Unknown,
        };
        let old_mac = self.entries[i].mac;
        if matches!(prev, Some(NeighState::Reachable | NeighState::Probe)) && old_mac != mac {
            let e = &mut self.entries[i];
            if e.state == Some(NeighState::Reachable) {
                // Reconfirm the known MAC now, as if its reachable time were over and it
                // were in use.
                e.state = Some(NeighState::Probe);
                e.tries = 0;
                e.deadline = now;
            }
            return Learn::Disputed;
        }
        let released = self.drain(i, release);
        let e = &mut self.entries[i];
        e.mac = mac;
        e.state = Some(NeighState::Reachable);
        e.tries = 0;
        e.used = false;
        e.deadline = now.saturating_add(self.cfg.reachable);
        match prev {
            None => Learn::New,
            Some(NeighState::Incomplete | NeighState::Failed) => Learn::Resolved(released),
            Some(NeighState::Reachable | NeighState::Probe) if old_mac == mac => Learn::Confirmed,
            // Refused above; kept for completeness of the match.
            Some(NeighState::Reachable | NeighState::Probe) => Learn::Changed,
        }
    }

    /// Forgets `ip`; its queued buffers go to `release`. Returns whether it was there.
    pub fn remove(&mut self, ip: Ipv4Addr, release: impl FnMut(P)) -> bool {
        let Some((s, i)) = self.find(ip) else {
            return false;
        };
        self.drain(i, release);
        self.remove_at(s, i);
        true
    }

    /// Advances every entry's timers to `now`; `f` gets the requests to send, the failures,
    /// the buffers to drop and the expiries. Call it about once a second; it walks the whole
    /// table.
    pub fn tick(&mut self, now: u64, mut f: impl FnMut(NeighEvent<P>)) {
        let cfg = self.cfg;
        for i in 0..self.entries.len() {
            let e = self.entries[i];
            let Some(state) = e.state else { continue };
            if now < e.deadline {
                continue;
            }
            let retry = |e: &mut Entry, unicast| {
                e.tries += 1;
                e.deadline = now.saturating_add(cfg.retry);
                NeighEvent::Request { ip: e.ip, unicast }
            };
            match state {
                NeighState::Incomplete | NeighState::Probe if e.tries < cfg.max_tries => {
                    let unicast = (state == NeighState::Probe).then_some(e.mac);
                    f(retry(&mut self.entries[i], unicast));
                }
                NeighState::Incomplete | NeighState::Probe => {
                    f(NeighEvent::Failed(e.ip));
                    self.drain(i, |p| f(NeighEvent::Dropped(p)));
                    let e = &mut self.entries[i];
                    e.state = Some(NeighState::Failed);
                    e.deadline = now.saturating_add(cfg.failed_hold);
                }
                NeighState::Reachable if e.used => {
                    let e = &mut self.entries[i];
                    e.state = Some(NeighState::Probe);
                    e.tries = 0;
                    e.used = false;
                    let mac = e.mac;
                    f(retry(e, Some(mac)));
                }
                NeighState::Reachable | NeighState::Failed => {
                    if state == NeighState::Reachable {
                        f(NeighEvent::Expired(e.ip));
                    }
                    if let Some((s, i)) = self.find(e.ip) {
                        self.remove_at(s, i);
                    }
                }
            }
        }
    }

    /// The entry for `ip`, if any.
    #[must_use]
    pub fn get(&self, ip: Ipv4Addr) -> Option<NeighEntry> {
        let (_, i) = self.find(ip)?;
        self.entries.get(i).and_then(Self::report)
    }

    /// Calls `f` with every entry (control path: `neigh show`).
    pub fn for_each(&self, mut f: impl FnMut(NeighEntry)) {
        self.entries
            .iter()
            .filter_map(Self::report)
            .for_each(&mut f);
    }

    fn report(e: &Entry) -> Option<NeighEntry> {
        let state = e.state?;
        Some(NeighEntry {
            ip: e.ip,
            mac: matches!(state, NeighState::Reachable | NeighState::Probe).then_some(e.mac),
            state,
            deadline: e.deadline,
            queued: e.q_len,
        })
    }
}

named_counters! {
    /// Why an ARP frame received on the uplink was not answered or learned from.
    pub enum ArpIgnore {
        /// Not an ARP frame (or shorter than an Ethernet header).
        NotArp => "arp_not_arp",
        /// Truncated, or not Ethernet/IPv4 ARP.
        Malformed => "arp_malformed",
        /// Neither request nor reply.
        BadOp => "arp_bad_op",
        /// Sent to another host: another target address, or unicast to another MAC.
        NotForUs => "arp_not_for_us",
        /// Our own frame come back.
        FromSelf => "arp_from_self",
        /// Sender MAC multicast or zero, or sender address unusable.
        BadSender => "arp_bad_sender",
        /// Another host claims our address.
        Conflict => "arp_address_conflict",
        /// Claims another MAC for a neighbour whose MAC is confirmed (a forged reply, or a
        /// real change): refused, and the known MAC reconfirmed at once ([`Learn::Disputed`]).
        Disputed => "arp_mac_change_refused",
    }
}

/// What to do with an ARP frame received on the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ArpAction {
    /// A request for our address: the frame has been rewritten in place into the reply, `len`
    /// bytes long (set the buffer's length to it and send it back out of the uplink); then
    /// [`NeighTable::learn`] the sender, if `learn` (RFC 826 merges the requester's address).
    Reply {
        /// Length of the reply frame (42).
        len: usize,
        /// The requester's (IP, MAC), unless it was an address probe from 0.0.0.0 (RFC 5227).
        learn: Option<(Ipv4Addr, [u8; 6])>,
    },
    /// A reply to us: [`NeighTable::learn`] it.
    Learned {
        /// The sender's address.
        ip: Ipv4Addr,
        /// Its MAC.
        mac: [u8; 6],
    },
    /// A gratuitous announcement: [`NeighTable::update`] an existing entry with it.
    Announced {
        /// The announced address.
        ip: Ipv4Addr,
        /// Its MAC.
        mac: [u8; 6],
    },
    /// Nothing to do; count why.
    Ignore(ArpIgnore),
}

/// Handles an ARP frame received on the uplink whose address is `our_ip` at `our_mac`.
///
/// A request for `our_ip` is answered in place: `frame` becomes the reply (its first 42 bytes;
/// anything after is padding the caller cuts), so the same buffer goes back out and nothing is
/// allocated. Other frames are not modified.
#[inline]
pub fn handle_arp(frame: &mut [u8], our_mac: [u8; 6], our_ip: Ipv4Addr) -> ArpAction {
    use ArpAction::Ignore;
    let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
        return Ignore(ArpIgnore::NotArp);
    };
    if eth.ethertype() != EthernetProtocol::Arp {
        return Ignore(ArpIgnore::NotArp);
    }
    let dst = eth.dst_addr().0;
    let Ok(ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: spa,
        target_protocol_addr: tpa,
        ..
    }) = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p))
    else {
        return Ignore(ArpIgnore::Malformed);
    };
    if !matches!(operation, ArpOperation::Request | ArpOperation::Reply) {
        return Ignore(ArpIgnore::BadOp);
    }
    if dst != BROADCAST && dst != our_mac {
        return Ignore(ArpIgnore::NotForUs);
    }
    if sha == our_mac {
        return Ignore(ArpIgnore::FromSelf);
    }
    if !is_unicast(&sha) || sha == [0; 6] || spa.is_broadcast() || spa.is_multicast() {
        return Ignore(ArpIgnore::BadSender);
    }
    if spa == our_ip {
        return Ignore(ArpIgnore::Conflict);
    }
    let request = operation == ArpOperation::Request;
    if tpa == our_ip && request {
        let learn = (!spa.is_unspecified()).then_some((spa, sha));
        return match write_arp(frame, ArpOperation::Reply, our_mac, our_ip, sha, spa, sha) {
            Some(len) => ArpAction::Reply { len, learn },
            None => Ignore(ArpIgnore::Malformed),
        };
    }
    if spa.is_unspecified() {
        return Ignore(ArpIgnore::BadSender);
    }
    if tpa == our_ip {
        return ArpAction::Learned { ip: spa, mac: sha };
    }
    if tpa == spa {
        return ArpAction::Announced { ip: spa, mac: sha };
    }
    Ignore(ArpIgnore::NotForUs)
}

/// Writes an ARP request for `target_ip` into `buf`: broadcast, or to `unicast` when
/// reconfirming a known MAC ([`NeighEvent::Request`]). Returns the frame length (42, unpadded),
/// or `None` if `buf` is shorter.
pub fn arp_request(
    buf: &mut [u8],
    our_mac: [u8; 6],
    our_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
    unicast: Option<[u8; 6]>,
) -> Option<usize> {
    let dst = unicast.unwrap_or(BROADCAST);
    write_arp(
        buf,
        ArpOperation::Request,
        our_mac,
        our_ip,
        [0; 6],
        target_ip,
        dst,
    )
}

/// Writes a 42-byte Ethernet + ARP frame from us into the front of `buf`.
fn write_arp(
    buf: &mut [u8],
    operation: ArpOperation,
    our_mac: [u8; 6],
    our_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
    eth_dst: [u8; 6],
) -> Option<usize> {
    let frame = buf.get_mut(..ARP_FRAME_LEN)?;
    // 42 bytes hold the 14-byte Ethernet header and the 28-byte ARP packet the setters write.
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(EthernetAddress(eth_dst));
    eth.set_src_addr(EthernetAddress(our_mac));
    eth.set_ethertype(EthernetProtocol::Arp);
    ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: EthernetAddress(our_mac),
        source_protocol_addr: our_ip,
        target_hardware_addr: EthernetAddress(target_mac),
        target_protocol_addr: target_ip,
    }
    .emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    Some(ARP_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_A2: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa2];
    const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    type Table = NeighTable<u32>;

    fn table(cap: usize) -> Table {
        NeighTable::new(cap, NeighConfig::default())
    }

    /// Runs a tick and returns its events.
    fn tick(t: &mut Table, now: u64) -> Vec<NeighEvent<u32>> {
        let mut v = Vec::new();
        t.tick(now, |e| v.push(e));
        v
    }

    fn learn(t: &mut Table, ip: Ipv4Addr, mac: [u8; 6], now: u64) -> (Learn, Vec<u32>) {
        let mut v = Vec::new();
        let r = t.learn(ip, mac, now, |p| v.push(p));
        (r, v)
    }

    fn req(ip: Ipv4Addr) -> NeighEvent<u32> {
        NeighEvent::Request { ip, unicast: None }
    }

    #[test]
    fn resolves_retries_then_fails_and_drops_the_queue() {
        let mut t = table(8);
        assert_eq!(t.lookup(A, 0), Resolution::Resolve { send_request: true });
        assert_eq!(
            t.lookup(A, 0),
            Resolution::Resolve {
                send_request: false
            }
        );
        assert_eq!(t.queue(A, 1), Ok(()));
        assert_eq!(t.queue(A, 2), Ok(()));
        assert_eq!(t.queue(A, 3), Ok(()));
        assert_eq!(t.queue(A, 4), Err(4), "queue of 3");
        assert_eq!(t.queue(B, 5), Err(5), "not being resolved");
        assert_eq!(t.get(A).unwrap().queued, 3);

        assert_eq!(tick(&mut t, 0), vec![]);
        assert_eq!(tick(&mut t, 1), vec![req(A)], "second request");
        assert_eq!(tick(&mut t, 1), vec![]);
        assert_eq!(tick(&mut t, 2), vec![req(A)], "third request");
        assert_eq!(
            tick(&mut t, 3),
            vec![
                NeighEvent::Failed(A),
                NeighEvent::Dropped(1),
                NeighEvent::Dropped(2),
                NeighEvent::Dropped(3),
            ]
        );
        assert_eq!(t.get(A).unwrap().state, NeighState::Failed);
        assert_eq!(t.lookup(A, 3), Resolution::Failed);
        assert_eq!(t.lookup(A, 5), Resolution::Failed);
        assert_eq!(t.queue(A, 6), Err(6));
        // The hold ends: the next lookup starts over.
        assert_eq!(t.lookup(A, 6), Resolution::Resolve { send_request: true });
        assert_eq!(t.get(A).unwrap().state, NeighState::Incomplete);

        // Or the tick removes the failed entry.
        let mut t = table(8);
        let _ = t.lookup(A, 0);
        for now in 1..=3 {
            tick(&mut t, now);
        }
        assert_eq!(tick(&mut t, 5), vec![]);
        assert_eq!(tick(&mut t, 6), vec![]);
        assert!(t.get(A).is_none() && t.is_empty());
    }

    #[test]
    fn learning_resolves_and_releases_the_queue_in_order() {
        let mut t = table(8);
        let _ = t.lookup(A, 10);
        t.queue(A, 7).unwrap();
        t.queue(A, 8).unwrap();
        assert_eq!(
            learn(&mut t, A, MAC_A, 10),
            (Learn::Resolved(2), vec![7, 8])
        );
        assert_eq!(t.lookup(A, 11), Resolution::Known(MAC_A));
        assert_eq!(t.queue(A, 9), Err(9), "resolved: send, do not queue");
        let e = t.get(A).unwrap();
        assert_eq!(
            e,
            NeighEntry {
                ip: A,
                mac: Some(MAC_A),
                state: NeighState::Reachable,
                deadline: 40,
                queued: 0,
            }
        );
        assert_eq!(tick(&mut t, 39), vec![]);
        // The queue ring wraps correctly after a drain.
        let _ = t.lookup(B, 12);
        for p in 0..3 {
            t.queue(B, p).unwrap();
        }
        assert_eq!(learn(&mut t, B, MAC_A2, 12).1, vec![0, 1, 2]);
    }

    #[test]
    fn unused_entry_expires_at_the_end_of_its_reachable_time() {
        let mut t = table(8);
        assert_eq!(learn(&mut t, A, MAC_A, 100), (Learn::New, vec![]));
        assert_eq!(tick(&mut t, 129), vec![]);
        assert_eq!(tick(&mut t, 130), vec![NeighEvent::Expired(A)]);
        assert!(t.get(A).is_none());
        assert_eq!(t.lookup(A, 131), Resolution::Resolve { send_request: true });
    }

    #[test]
    fn used_entry_is_reconfirmed_by_unicast_probes_while_still_used() {
        let mut t = table(8);
        let _ = learn(&mut t, A, MAC_A, 0);
        assert_eq!(t.lookup(A, 5), Resolution::Known(MAC_A));
        let probe = NeighEvent::Request {
            ip: A,
            unicast: Some(MAC_A),
        };
        assert_eq!(tick(&mut t, 30), vec![probe.clone()]);
        assert_eq!(t.get(A).unwrap().state, NeighState::Probe);
        assert_eq!(t.lookup(A, 30), Resolution::Known(MAC_A), "no hiccup");
        assert_eq!(tick(&mut t, 31), vec![probe.clone()]);
        assert_eq!(learn(&mut t, A, MAC_A, 31), (Learn::Confirmed, vec![]));
        assert_eq!(t.get(A).unwrap().state, NeighState::Reachable);
        assert_eq!(t.get(A).unwrap().deadline, 61);
        // Unused this time: it just goes.
        assert_eq!(tick(&mut t, 61), vec![NeighEvent::Expired(A)]);
    }

    #[test]
    fn unanswered_probes_fail_the_entry() {
        let mut t = table(8);
        let _ = learn(&mut t, A, MAC_A, 0);
        let _ = t.lookup(A, 1);
        let probe = NeighEvent::Request {
            ip: A,
            unicast: Some(MAC_A),
        };
        assert_eq!(tick(&mut t, 30), vec![probe.clone()]);
        assert_eq!(tick(&mut t, 31), vec![probe.clone()]);
        assert_eq!(tick(&mut t, 32), vec![probe.clone()]);
        assert_eq!(tick(&mut t, 33), vec![NeighEvent::Failed(A)]);
        assert_eq!(t.lookup(A, 33), Resolution::Failed);
        // A late answer still brings it back.
        assert_eq!(learn(&mut t, A, MAC_A, 34), (Learn::Resolved(0), vec![]));
        assert_eq!(t.lookup(A, 34), Resolution::Known(MAC_A));
    }

    #[test]
    fn a_claimed_mac_change_is_refused_while_the_known_mac_answers() {
        let mut t = table(8);
        let _ = learn(&mut t, A, MAC_A, 0);
        // A forged reply (or announcement) for a confirmed neighbour changes nothing...
        assert_eq!(learn(&mut t, A, MAC_A2, 1), (Learn::Disputed, vec![]));
        assert_eq!(t.lookup(A, 1), Resolution::Known(MAC_A));
        let mut sink = |_| {};
        assert_eq!(t.update(A, MAC_A2, 1, &mut sink), Learn::Disputed);
        // ...but has the known MAC reconfirmed at once, by unicast.
        let probe = NeighEvent::Request {
            ip: A,
            unicast: Some(MAC_A),
        };
        assert_eq!(tick(&mut t, 1), vec![probe.clone()]);
        // The real neighbour answers: it stays.
        assert_eq!(learn(&mut t, A, MAC_A, 1), (Learn::Confirmed, vec![]));
        assert_eq!(t.lookup(A, 2), Resolution::Known(MAC_A));
        assert_eq!(tick(&mut t, 2), vec![]);
    }

    #[test]
    fn a_real_mac_change_is_taken_once_the_old_mac_stops_answering() {
        let mut t = table(8);
        let _ = learn(&mut t, A, MAC_A, 0);
        assert_eq!(learn(&mut t, A, MAC_A2, 10), (Learn::Disputed, vec![]));
        let probe = NeighEvent::Request {
            ip: A,
            unicast: Some(MAC_A),
        };
        assert_eq!(tick(&mut t, 10), vec![probe.clone()]);
        // While probing, the other MAC is still refused.
        assert_eq!(learn(&mut t, A, MAC_A2, 10), (Learn::Disputed, vec![]));
        assert_eq!(tick(&mut t, 11), vec![probe.clone()]);
        assert_eq!(tick(&mut t, 12), vec![probe.clone()]);
        assert_eq!(tick(&mut t, 13), vec![NeighEvent::Failed(A)]);
        // Resolution starts over and takes the MAC that answers now.
        assert_eq!(learn(&mut t, A, MAC_A2, 14), (Learn::Resolved(0), vec![]));
        assert_eq!(t.lookup(A, 14), Resolution::Known(MAC_A2));
    }

    #[test]
    fn mac_learning_edge_cases() {
        let mut t = table(8);
        let _ = learn(&mut t, A, MAC_A, 0);
        let mut sink = |_| {};
        assert_eq!(t.update(B, MAC_A, 2, &mut sink), Learn::Unknown);
        assert!(t.get(B).is_none());
        assert_eq!(t.learn(B, [0xff; 6], 2, &mut sink), Learn::Invalid);
        assert_eq!(
            t.learn(B, [0x01, 0, 0x5e, 0, 0, 1], 2, &mut sink),
            Learn::Invalid
        );
        assert_eq!(t.learn(B, [0; 6], 2, &mut sink), Learn::Invalid);
        assert!(t.get(B).is_none());
    }

    #[test]
    fn remove_hands_back_queued_buffers() {
        let mut t = table(8);
        let _ = t.lookup(A, 0);
        t.queue(A, 42).unwrap();
        let mut got = Vec::new();
        assert!(t.remove(A, |p| got.push(p)));
        assert_eq!(got, vec![42]);
        assert!(!t.remove(A, |_| {}));
        assert!(t.is_empty());
    }

    fn ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 + n)
    }

    #[test]
    fn full_table_evicts_failed_then_unused_entries_only() {
        let mut t = table(4);
        assert_eq!(t.capacity(), 4);
        for n in 0..4 {
            assert_eq!(
                t.lookup(ip(n), 0),
                Resolution::Resolve { send_request: true }
            );
        }
        // Four resolutions in progress: nothing can go.
        assert_eq!(t.lookup(ip(4), 0), Resolution::Full);
        assert_eq!(learn(&mut t, ip(5), MAC_A, 0), (Learn::Full, vec![]));
        assert_eq!(t.len(), 4);

        // ip(0) fails; the next newcomer takes its place.
        let _ = learn(&mut t, ip(1), MAC_A, 0);
        let _ = learn(&mut t, ip(2), MAC_A, 0);
        let _ = learn(&mut t, ip(3), MAC_A, 0);
        for now in 1..=3 {
            tick(&mut t, now);
        }
        assert_eq!(t.get(ip(0)).unwrap().state, NeighState::Failed);
        assert_eq!(
            t.lookup(ip(4), 3),
            Resolution::Resolve { send_request: true }
        );
        assert!(t.get(ip(0)).is_none());

        // Learned entries that are in use stay; an unused one is evicted.
        assert_eq!(t.lookup(ip(1), 3), Resolution::Known(MAC_A));
        assert_eq!(t.lookup(ip(2), 3), Resolution::Known(MAC_A));
        assert_eq!(
            t.lookup(ip(5), 3),
            Resolution::Resolve { send_request: true }
        );
        assert!(t.get(ip(3)).is_none(), "the unused one went");
        assert_eq!(t.lookup(ip(6), 3), Resolution::Full);
        assert_eq!(t.len(), 4);
        for n in [1, 2, 4, 5] {
            assert!(t.get(ip(n)).is_some());
        }
    }

    #[test]
    fn zero_queue_length_queues_nothing() {
        let mut t: Table = NeighTable::new(
            4,
            NeighConfig {
                queue_len: 0,
                max_tries: 0,
                ..NeighConfig::default()
            },
        );
        assert_eq!(t.config().max_tries, 1, "clamped");
        let _ = t.lookup(A, 0);
        assert_eq!(t.queue(A, 1), Err(1));
        assert_eq!(tick(&mut t, 1), vec![NeighEvent::Failed(A)]);
    }

    /// The index agrees with a model through many random inserts and removals (backward-shift
    /// deletion keeps every probe chain intact).
    #[test]
    fn index_matches_a_model_under_churn() {
        let mut t = table(64);
        let mut model: HashMap<Ipv4Addr, [u8; 6]> = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct addresses, clustered so probe chains collide.
            let a = ip((x % 96) as u32 * 256);
            let mac = [0x02, 0, 0, 0, (x >> 8) as u8, (x >> 16) as u8 & 0xfe];
            match (x >> 32) % 3 {
                0 => {
                    let r = t.learn(a, mac, step, |_| {});
                    // A confirmed entry keeps its MAC against another claim (`Disputed`).
                    if !matches!(r, Learn::Full | Learn::Disputed) {
                        model.insert(a, mac);
                    }
                }
                1 => {
                    assert_eq!(t.remove(a, |_| {}), model.remove(&a).is_some());
                }
                _ => {
                    let got = t.get(a).and_then(|e| e.mac);
                    assert_eq!(got, model.get(&a).copied(), "step {step}");
                }
            }
            assert_eq!(t.len(), model.len());
        }
        let mut seen = 0;
        t.for_each(|e| {
            assert_eq!(model.get(&e.ip), e.mac.as_ref());
            seen += 1;
        });
        assert_eq!(seen, model.len());
    }

    // ARP.

    /// Broadcast request "who has 192.0.2.1, tell 192.0.2.10" from MAC_A, padded to 60 bytes.
    fn request_for_us() -> Vec<u8> {
        let mut f = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x08,
            0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
            0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00, 0x02, 0x0a, //
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x01,
        ];
        f.resize(60, 0);
        f
    }

    /// The reply to it, by hand.
    const REPLY: [u8; 42] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x01, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00, 0x02, 0x0a,
    ];

    #[test]
    fn answers_a_request_for_our_address_in_place() {
        let mut f = request_for_us();
        assert_eq!(
            handle_arp(&mut f, OUR_MAC, OUR_IP),
            ArpAction::Reply {
                len: 42,
                learn: Some((A, MAC_A)),
            }
        );
        assert_eq!(f[..42], REPLY);
        assert_eq!(f[42..], [0; 18], "padding untouched");
        // smoltcp agrees it is a reply from us to A.
        let eth = EthernetFrame::new_checked(&f[..42]).unwrap();
        let repr = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        assert_eq!(
            repr,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(OUR_MAC),
                source_protocol_addr: OUR_IP,
                target_hardware_addr: EthernetAddress(MAC_A),
                target_protocol_addr: A,
            }
        );
        // Unicast to us works too; the reply itself, fed back, is ours.
        let mut u = request_for_us();
        u[..6].copy_from_slice(&OUR_MAC);
        assert!(matches!(
            handle_arp(&mut u, OUR_MAC, OUR_IP),
            ArpAction::Reply { .. }
        ));
        assert_eq!(
            handle_arp(&mut f, OUR_MAC, OUR_IP),
            ArpAction::Ignore(ArpIgnore::NotForUs)
        );
    }

    #[test]
    fn answers_an_address_probe_without_learning() {
        let mut f = request_for_us();
        f[28..32].fill(0); // sender 0.0.0.0 (RFC 5227 probe)
        assert_eq!(
            handle_arp(&mut f, OUR_MAC, OUR_IP),
            ArpAction::Reply {
                len: 42,
                learn: None,
            }
        );
        assert_eq!(f[38..42], [0, 0, 0, 0], "answered to 0.0.0.0 at its MAC");
        assert_eq!(f[..6], MAC_A);
    }

    #[test]
    fn learns_from_replies_and_announcements() {
        let mut r = request_for_us();
        r[..6].copy_from_slice(&OUR_MAC);
        r[21] = 2; // reply
        r[32..38].copy_from_slice(&OUR_MAC);
        let before = r.clone();
        assert_eq!(
            handle_arp(&mut r, OUR_MAC, OUR_IP),
            ArpAction::Learned { ip: A, mac: MAC_A }
        );
        assert_eq!(r, before, "not modified");

        // Gratuitous: sender and target both A, request or reply.
        for op in [1, 2] {
            let mut g = request_for_us();
            g[21] = op;
            g[38..42].copy_from_slice(&A.octets());
            assert_eq!(
                handle_arp(&mut g, OUR_MAC, OUR_IP),
                ArpAction::Announced { ip: A, mac: MAC_A }
            );
        }
    }

    #[test]
    fn ignores_what_is_not_for_us_and_says_why() {
        let ours = |f: &mut Vec<u8>| handle_arp(f, OUR_MAC, OUR_IP);
        let ignore = ArpAction::Ignore;

        let mut ip = request_for_us();
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(ours(&mut ip), ignore(ArpIgnore::NotArp));
        assert_eq!(ours(&mut vec![0xff; 13]), ignore(ArpIgnore::NotArp));
        for n in 14..42 {
            let mut short = request_for_us()[..n].to_vec();
            assert_eq!(ours(&mut short), ignore(ArpIgnore::Malformed), "{n} bytes");
        }
        let mut hw = request_for_us();
        hw[15] = 6; // hardware type 6
        assert_eq!(ours(&mut hw), ignore(ArpIgnore::Malformed));
        let mut op = request_for_us();
        op[21] = 3;
        assert_eq!(ours(&mut op), ignore(ArpIgnore::BadOp));
        let mut other = request_for_us();
        other[41] = 99;
        assert_eq!(ours(&mut other), ignore(ArpIgnore::NotForUs));
        let mut unicast_elsewhere = request_for_us();
        unicast_elsewhere[..6].copy_from_slice(&MAC_A2);
        assert_eq!(ours(&mut unicast_elsewhere), ignore(ArpIgnore::NotForUs));
        let mut echo = request_for_us();
        echo[6..12].copy_from_slice(&OUR_MAC);
        echo[22..28].copy_from_slice(&OUR_MAC);
        assert_eq!(ours(&mut echo), ignore(ArpIgnore::FromSelf));
        let mut mc = request_for_us();
        mc[22] = 0x01;
        assert_eq!(ours(&mut mc), ignore(ArpIgnore::BadSender));
        let mut zero = request_for_us();
        zero[22..28].fill(0);
        assert_eq!(ours(&mut zero), ignore(ArpIgnore::BadSender));
        let mut bcast_ip = request_for_us();
        bcast_ip[28..32].fill(0xff);
        assert_eq!(ours(&mut bcast_ip), ignore(ArpIgnore::BadSender));
        let mut unspec_reply = request_for_us();
        unspec_reply[21] = 2;
        unspec_reply[28..32].fill(0);
        assert_eq!(ours(&mut unspec_reply), ignore(ArpIgnore::BadSender));
        let mut conflict = request_for_us();
        conflict[28..32].copy_from_slice(&OUR_IP.octets());
        assert_eq!(ours(&mut conflict), ignore(ArpIgnore::Conflict));

        let names: std::collections::HashSet<_> = ArpIgnore::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), ArpIgnore::COUNT);
        assert_eq!(NeighDrop::QueueFull.name(), "neigh_queue_full");
    }

    #[test]
    fn builds_requests() {
        let mut buf = [0xaau8; 64];
        assert_eq!(arp_request(&mut buf, OUR_MAC, OUR_IP, A, None), Some(42));
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
            0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x01, //
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x0a,
        ];
        assert_eq!(buf[..42], want);
        assert_eq!(buf[42..], [0xaa; 22]);
        // The request the table asked for is one a peer answering it would accept.
        let mut f = buf[..42].to_vec();
        assert_eq!(
            handle_arp(&mut f, MAC_A, A),
            ArpAction::Reply {
                len: 42,
                learn: Some((OUR_IP, OUR_MAC)),
            }
        );
        // And its reply teaches us A.
        assert_eq!(
            handle_arp(&mut f, OUR_MAC, OUR_IP),
            ArpAction::Learned { ip: A, mac: MAC_A }
        );

        assert_eq!(
            arp_request(&mut buf, OUR_MAC, OUR_IP, A, Some(MAC_A)),
            Some(42)
        );
        assert_eq!(buf[..6], MAC_A);
        assert_eq!(buf[32..38], [0; 6]);
        assert_eq!(arp_request(&mut buf[..41], OUR_MAC, OUR_IP, A, None), None);
    }
}
