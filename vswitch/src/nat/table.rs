//! The session table: connection tracking for source NAT, one table per worker.
//!
//! A session is a NAT mapping (RFC 4787 section 4.1, RFC 5382 section 2.2): an inside endpoint
//! (network, protocol, address, port or ICMP identifier) bound to an outside one (address, port
//! or identifier). Mapping is endpoint-independent: every packet an inside endpoint sends uses
//! its one mapping, whoever it goes to. Filtering is endpoint-independent too: any remote may
//! send to the outside endpoint while the mapping lives. The session keeps the last remote it
//! saw (for `nat ls`) and the connection-tracking state that sets its timeout.
//!
//! Layout (nothing is allocated after [`Table::new`]):
//! * `slots`: the sessions, a fixed slab of 64-byte entries, with a free list threaded through
//!   unused ones. The slab and the indexes are in huge-page-friendly mappings
//!   (`dataplane::hugemem`): random probes into tens of megabytes would otherwise miss the TLB
//!   as often as the cache.
//! * `out_idx` and `in_idx`: two open-addressing hash indexes (linear probing, backward-shift
//!   deletion, at most half full) from the inside key and from the outside key to a slot. Each
//!   index entry is 8 bytes, the key's hash beside the slot number, so a probe touches the
//!   session itself only on a hash match. A lookup is one index line and one session line
//!   whatever the table's size; [`Table::prefetch_out`] lets a stage start both misses of a
//!   burst before it needs them.
//! * the evictable list: doubly linked, oldest first, of the sessions that are *embryonic* (a
//!   TCP connection whose handshake has not finished, a UDP or ICMP mapping that has had no
//!   answer) or *closed* (TIME_WAIT or reset, only waiting out their timer, RFC 7857 section
//!   2.2). When the table is full a new session evicts the oldest of them; if there is none it
//!   is refused. So a SYN flood or a port scan can only push out its own kind, never an
//!   established connection or an answered UDP flow (the issue's "embryonic entries are
//!   evicted first").
//!
//! Expiry is lazy and incremental: a lookup that finds an expired session removes it and
//! misses, and [`Table::expire`] sweeps a bounded number of slots per call, resuming where it
//! stopped, so a timer tick stays short whatever the table's size.
//!
//! Time is an argument (`now`, seconds of a monotonic clock): no I/O, no clock reads.

use super::{proto, Timeouts};
use dataplane::hugemem::HugeArray;

/// No slot (list ends, free list end).
pub(crate) const NIL: u32 = u32::MAX;

/// An entry of a slab threaded on a doubly linked list by slot number (the evictable lists of
/// this table and of the services' connection table).
pub(crate) trait Linked {
    /// The previous and next slots (`NIL` at the ends).
    fn links(&mut self) -> (&mut u32, &mut u32);
}

/// Appends slot `i` of `slots` to the list `(head, tail)`.
pub(crate) fn list_push<T: Linked>(slots: &mut [T], ends: (&mut u32, &mut u32), i: u32) {
    let (head, tail) = ends;
    let last = *tail;
    {
        let (prev, next) = slots[i as usize].links();
        *prev = last;
        *next = NIL;
    }
    if last == NIL {
        *head = i;
    } else {
        *slots[last as usize].links().1 = i;
    }
    *tail = i;
}

/// Takes slot `i` of `slots` out of the list `(head, tail)`.
pub(crate) fn list_unlink<T: Linked>(slots: &mut [T], ends: (&mut u32, &mut u32), i: u32) {
    let (head, tail) = ends;
    let (p, n) = {
        let (prev, next) = slots[i as usize].links();
        (*prev, *next)
    };
    if p == NIL {
        *head = n;
    } else {
        *slots[p as usize].links().1 = n;
    }
    if n == NIL {
        *tail = p;
    } else {
        *slots[n as usize].links().0 = p;
    }
    let (prev, next) = slots[i as usize].links();
    *prev = NIL;
    *next = NIL;
}

/// Connection-tracking state of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// UDP or ICMP: only the inside has spoken (embryonic).
    New,
    /// UDP or ICMP: the outside answered.
    Replied,
    /// TCP: SYN from one side only (embryonic).
    SynSent,
    /// TCP: SYN seen from both sides.
    Established,
    /// TCP: FIN seen from one side (RFC 5382's transitory state).
    FinWait,
    /// TCP: FIN seen from both sides: 2 MSL before the mapping goes.
    TimeWait,
    /// TCP: a reset was seen.
    Reset,
}

impl State {
    /// The state's name, as `nat ls` shows it.
    pub fn name(self) -> &'static str {
        match self {
            State::New => "new",
            State::Replied => "replied",
            State::SynSent => "syn_sent",
            State::Established => "established",
            State::FinWait => "fin_wait",
            State::TimeWait => "time_wait",
            State::Reset => "reset",
        }
    }

    /// Whether the session is embryonic: a handshake not finished, or no answer yet.
    #[inline]
    pub fn embryonic(self) -> bool {
        matches!(self, State::New | State::SynSent)
    }

    /// Whether the session may be evicted to make room: embryonic, or closed (TIME_WAIT,
    /// reset) and only waiting out its timer.
    #[inline]
    pub fn evictable(self) -> bool {
        matches!(
            self,
            State::New | State::SynSent | State::TimeWait | State::Reset
        )
    }

    pub(crate) fn from_u8(v: u8) -> State {
        match v {
            0 => State::New,
            1 => State::Replied,
            2 => State::SynSent,
            3 => State::Established,
            4 => State::FinWait,
            5 => State::TimeWait,
            _ => State::Reset,
        }
    }

    /// Seconds this state lets an idle session live.
    #[inline]
    pub fn timeout(self, proto_: u8, t: &Timeouts) -> u32 {
        match self {
            State::New | State::Replied if proto_ == proto::ICMP => t.icmp,
            State::New | State::Replied => t.udp,
            State::SynSent => t.tcp_syn,
            State::Established => t.tcp_established,
            State::FinWait => t.tcp_fin,
            State::TimeWait => t.tcp_time_wait,
            State::Reset => t.tcp_rst,
        }
    }
}

/// Which way a packet of a session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the inside endpoint out.
    Out,
    /// From outside to the mapping.
    In,
}

/// An inside endpoint: the key of the outbound direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inside {
    /// The network the endpoint is on.
    pub net: u16,
    /// IP protocol number (TCP, UDP, ICMP).
    pub proto: u8,
    /// Its address.
    pub ip: u32,
    /// Its port, or the ICMP echo identifier.
    pub port: u16,
}

/// An outside endpoint: the key of the inbound direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outside {
    /// IP protocol number.
    pub proto: u8,
    /// The translated address (the uplink's).
    pub ip: u32,
    /// The translated port or identifier.
    pub port: u16,
}

/// One session (64 bytes, one cache line).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct Session {
    /// Inside address.
    pub int_ip: u32,
    /// Outside (translated) address.
    pub ext_ip: u32,
    /// Inside port or identifier.
    pub int_port: u16,
    /// Outside port or identifier.
    pub ext_port: u16,
    /// Network of the inside endpoint.
    pub net: u16,
    /// IP protocol.
    pub proto: u8,
    state: u8,
    /// When the session expires unless a packet refreshes it (seconds).
    pub expires: u64,
    /// The inside endpoint's MAC, where return traffic goes.
    pub mac: [u8; 6],
    /// The port the inside endpoint was last seen on.
    pub port: u16,
    /// The last remote address the session talked to.
    pub remote_ip: u32,
    /// The last remote port.
    pub remote_port: u16,
    /// TCP: FIN seen outbound (bit 0) and inbound (bit 1).
    fins: u8,
    live: bool,
    /// When the session was created (seconds).
    pub created: u64,
    prev: u32,
    next: u32,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            int_ip: 0,
            ext_ip: 0,
            int_port: 0,
            ext_port: 0,
            net: 0,
            proto: 0,
            state: 0,
            expires: 0,
            mac: [0; 6],
            port: 0,
            remote_ip: 0,
            remote_port: 0,
            fins: 0,
            live: false,
            created: 0,
            prev: NIL,
            next: NIL,
        }
    }
}

impl Linked for Session {
    #[inline]
    fn links(&mut self) -> (&mut u32, &mut u32) {
        (&mut self.prev, &mut self.next)
    }
}

impl Session {
    /// Its connection-tracking state.
    #[inline]
    pub fn state(&self) -> State {
        State::from_u8(self.state)
    }

    /// The inside key.
    #[inline]
    pub fn inside(&self) -> Inside {
        Inside {
            net: self.net,
            proto: self.proto,
            ip: self.int_ip,
            port: self.int_port,
        }
    }

    /// The outside key.
    #[inline]
    pub fn outside(&self) -> Outside {
        Outside {
            proto: self.proto,
            ip: self.ext_ip,
            port: self.ext_port,
        }
    }
}

/// What became of an insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// In slot `0`; `1`: an embryonic session was evicted to make room.
    Ok(u32, bool),
    /// The table is full of sessions that are not embryonic.
    Full,
}

/// TCP flag bits (RFC 9293).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

#[inline]
pub(crate) fn mix(mut x: u64) -> u64 {
    // A 64-bit finaliser (murmur3's fmix64): every input bit affects every output bit.
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// One hash index: slot number + 1 in the low half (0: empty), the key's hash in the high half.
pub(crate) struct Index {
    cells: HugeArray<u64>,
    mask: u32,
}

impl Index {
    pub(crate) fn new(capacity: u32) -> Index {
        // At most half full: probe sequences stay short.
        let n = (u64::from(capacity.max(1)) * 2).next_power_of_two();
        Index {
            cells: HugeArray::new(n as usize, 0u64),
            mask: (n - 1) as u32,
        }
    }

    #[inline]
    pub(crate) fn at(&self, i: u32) -> u64 {
        // In range: every index is masked by `mask`, which is `cells.len() - 1`.
        self.cells[(i & self.mask) as usize]
    }

    #[inline]
    pub(crate) fn prefetch(&self, hash: u32) {
        let p = self
            .cells
            .as_ptr()
            .wrapping_add((hash & self.mask) as usize);
        prefetch(p.cast());
    }

    /// Cells holding `hash`, in probe order, until an empty cell.
    #[inline]
    pub(crate) fn find(
        &self,
        hash: u32,
        mut matches: impl FnMut(u32) -> bool,
    ) -> Option<(u32, u32)> {
        let mut i = hash & self.mask;
        loop {
            let c = self.at(i);
            if c == 0 {
                return None;
            }
            // Truncation intended: the halves of a cell.
            #[allow(clippy::cast_possible_truncation)]
            let (h, slot) = ((c >> 32) as u32, (c as u32).wrapping_sub(1));
            if h == hash && matches(slot) {
                return Some((i & self.mask, slot));
            }
            i = i.wrapping_add(1);
        }
    }

    pub(crate) fn insert(&mut self, hash: u32, slot: u32) {
        let mut i = hash & self.mask;
        while self.at(i) != 0 {
            i = i.wrapping_add(1);
        }
        self.cells[(i & self.mask) as usize] = (u64::from(hash) << 32) | u64::from(slot + 1);
    }

    /// Empties cell `i` and shifts later members of its cluster back (no tombstones).
    pub(crate) fn remove_at(&mut self, mut i: u32) {
        let mask = self.mask;
        loop {
            self.cells[(i & mask) as usize] = 0;
            let mut j = i;
            loop {
                j = j.wrapping_add(1) & mask;
                let c = self.at(j);
                if c == 0 {
                    return;
                }
                #[allow(clippy::cast_possible_truncation)]
                let home = ((c >> 32) as u32) & mask;
                // The entry at j may move to i if its home is not cyclically within (i, j].
                let dist_home = j.wrapping_sub(home) & mask;
                let dist_i = j.wrapping_sub(i) & mask;
                if dist_home >= dist_i {
                    self.cells[(i & mask) as usize] = c;
                    i = j;
                    break;
                }
            }
        }
    }
}

#[inline]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A worker's session table.
pub struct Table {
    slots: HugeArray<Session>,
    out_idx: Index,
    in_idx: Index,
    free: u32,
    len: u32,
    embryo_head: u32,
    embryo_tail: u32,
    embryos: u32,
    seed: u64,
    sweep: u32,
}

impl Table {
    /// A table of at most `capacity` sessions (at least 1), hashing with `seed` (a random
    /// seed keeps a sender from choosing colliding keys).
    pub fn new(capacity: u32, seed: u64) -> Table {
        let capacity = capacity.max(1);
        let mut slots = HugeArray::new(capacity as usize, Session::default());
        for (i, s) in slots.iter_mut().enumerate() {
            // Threads the free list; `i + 1` fits, the slab is no longer than u32::MAX.
            s.next = if i + 1 < capacity as usize {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        Table {
            slots,
            out_idx: Index::new(capacity),
            in_idx: Index::new(capacity),
            free: 0,
            len: 0,
            embryo_head: NIL,
            embryo_tail: NIL,
            embryos: 0,
            seed,
            sweep: 0,
        }
    }

    /// Live sessions (expired ones not yet swept included).
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether there are none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most sessions.
    #[inline]
    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The hash of an inside key.
    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    pub fn hash_in(&self, k: &Inside) -> u32 {
        let a = (u64::from(k.ip) << 32) | (u64::from(k.port) << 16) | u64::from(k.net);
        mix(a ^ self.seed ^ (u64::from(k.proto) << 56)) as u32
    }

    /// The hash of an outside key.
    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    pub fn hash_out(&self, k: &Outside) -> u32 {
        let a = (u64::from(k.ip) << 32) | (u64::from(k.port) << 16) | u64::from(k.proto);
        mix(a ^ self.seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15) as u32
    }

    /// Starts loading the index line for inside key hash `h` (see the module doc).
    #[inline]
    pub fn prefetch_out(&self, h: u32) {
        self.out_idx.prefetch(h);
    }

    /// Starts loading the session that inside key hash `h` most likely names (the first
    /// candidate of its index cell, read after [`Table::prefetch_out`] brought it in).
    #[inline]
    pub fn prefetch_session_out(&self, h: u32) {
        self.prefetch_session(self.out_idx.at(h));
    }

    /// As [`Table::prefetch_session_out`], for an outside key hash.
    #[inline]
    pub fn prefetch_session_in(&self, h: u32) {
        self.prefetch_session(self.in_idx.at(h));
    }

    #[inline]
    fn prefetch_session(&self, cell: u64) {
        // Truncation intended: the slot half of the cell.
        #[allow(clippy::cast_possible_truncation)]
        let slot = (cell as u32).wrapping_sub(1);
        if let Some(s) = self.slots.get(slot as usize) {
            prefetch((s as *const Session).cast());
        }
    }

    /// Starts loading the index line for outside key hash `h`.
    #[inline]
    pub fn prefetch_in(&self, h: u32) {
        self.in_idx.prefetch(h);
    }

    /// Session `i`.
    #[inline]
    pub fn get(&self, i: u32) -> &Session {
        // In range: slot numbers come from this table's indexes or iteration.
        &self.slots[i as usize]
    }

    /// Session `i`, to update its return path.
    #[inline]
    pub fn get_mut(&mut self, i: u32) -> &mut Session {
        &mut self.slots[i as usize]
    }

    /// The live session of inside endpoint `k` (hash `h`), removing it if it expired.
    #[inline]
    pub fn find_out(&mut self, k: &Inside, h: u32, now: u64) -> Option<u32> {
        let slots = &self.slots;
        let (_, i) = self.out_idx.find(h, |s| {
            let e = &slots[s as usize];
            e.int_ip == k.ip && e.int_port == k.port && e.net == k.net && e.proto == k.proto
        })?;
        self.live(i, now)
    }

    /// The live session of outside endpoint `k` (hash `h`), removing it if it expired.
    #[inline]
    pub fn find_in(&mut self, k: &Outside, h: u32, now: u64) -> Option<u32> {
        let slots = &self.slots;
        let (_, i) = self.in_idx.find(h, |s| {
            let e = &slots[s as usize];
            e.ext_port == k.port && e.ext_ip == k.ip && e.proto == k.proto
        })?;
        self.live(i, now)
    }

    /// Whether outside endpoint `k` is taken (expired sessions count until swept).
    #[inline]
    pub fn outside_taken(&self, k: &Outside) -> bool {
        let slots = &self.slots;
        self.in_idx
            .find(self.hash_out(k), |s| {
                let e = &slots[s as usize];
                e.ext_port == k.port && e.ext_ip == k.ip && e.proto == k.proto
            })
            .is_some()
    }

    #[inline]
    fn live(&mut self, i: u32, now: u64) -> Option<u32> {
        if self.get(i).expires <= now {
            self.remove(i);
            return None;
        }
        Some(i)
    }

    /// Adds a session from `inside` to `outside` in `state`, created at `now`. Evicts the oldest
    /// embryonic session when full; refuses when none is. The caller has checked that neither
    /// key is present.
    pub fn insert(
        &mut self,
        inside: Inside,
        outside: Outside,
        state: State,
        now: u64,
        t: &Timeouts,
    ) -> Inserted {
        let mut evicted = false;
        if self.free == NIL {
            if self.embryo_head == NIL {
                return Inserted::Full;
            }
            self.remove(self.embryo_head);
            evicted = true;
        }
        let i = self.free;
        let s = &mut self.slots[i as usize];
        self.free = s.next;
        *s = Session {
            int_ip: inside.ip,
            ext_ip: outside.ip,
            int_port: inside.port,
            ext_port: outside.port,
            net: inside.net,
            proto: inside.proto,
            state: state as u8,
            expires: now.saturating_add(u64::from(state.timeout(inside.proto, t))),
            live: true,
            created: now,
            ..Session::default()
        };
        self.len += 1;
        let (ho, hi) = (self.hash_in(&inside), self.hash_out(&outside));
        self.out_idx.insert(ho, i);
        self.in_idx.insert(hi, i);
        if state.evictable() {
            self.embryo_push(i);
        }
        self.embryos += u32::from(state.embryonic());
        Inserted::Ok(i, evicted)
    }

    /// Removes session `i` (a no-op for a free slot).
    pub fn remove(&mut self, i: u32) {
        let Some(s) = self.slots.get(i as usize).copied() else {
            return;
        };
        if !s.live {
            return;
        }
        if s.state().evictable() {
            self.embryo_unlink(i);
        }
        self.embryos -= u32::from(s.state().embryonic());
        let (ho, hi) = (self.hash_in(&s.inside()), self.hash_out(&s.outside()));
        if let Some((at, _)) = self.out_idx.find(ho, |x| x == i) {
            self.out_idx.remove_at(at);
        }
        if let Some((at, _)) = self.in_idx.find(hi, |x| x == i) {
            self.in_idx.remove_at(at);
        }
        let s = &mut self.slots[i as usize];
        s.live = false;
        s.next = self.free;
        self.free = i;
        self.len -= 1;
    }

    fn embryo_push(&mut self, i: u32) {
        list_push(
            &mut self.slots,
            (&mut self.embryo_head, &mut self.embryo_tail),
            i,
        );
    }

    fn embryo_unlink(&mut self, i: u32) {
        list_unlink(
            &mut self.slots,
            (&mut self.embryo_head, &mut self.embryo_tail),
            i,
        );
    }

    /// Tracks a packet of session `i` going `dir` (with `flags`, TCP's, 0 otherwise): moves the
    /// state on and pushes the expiry out. Returns the new state.
    #[inline]
    pub fn track(&mut self, i: u32, dir: Dir, flags: u8, now: u64, t: &Timeouts) -> State {
        let s = &self.slots[i as usize];
        let (old, proto_) = (s.state(), s.proto);
        let new = if proto_ == proto::TCP {
            tcp_next(old, s.fins, dir, flags)
        } else if dir == Dir::In {
            State::Replied
        } else {
            old
        };
        if new != old {
            match (old.evictable(), new.evictable()) {
                (true, false) => self.embryo_unlink(i),
                (false, true) => self.embryo_push(i),
                _ => {}
            }
            self.embryos = self.embryos + u32::from(new.embryonic()) - u32::from(old.embryonic());
        }
        let s = &mut self.slots[i as usize];
        if proto_ == proto::TCP {
            if flags & tcp_flags::FIN != 0 {
                s.fins |= if dir == Dir::Out { 1 } else { 2 };
            }
            if flags & (tcp_flags::SYN | tcp_flags::RST) != 0 && new == State::SynSent {
                s.fins = 0;
            }
        }
        s.state = new as u8;
        s.expires = now.saturating_add(u64::from(new.timeout(proto_, t)));
        new
    }

    /// Sweeps up to `budget` slots for expired sessions, resuming where the last call
    /// stopped; returns how many were removed.
    pub fn expire(&mut self, now: u64, budget: u32) -> u32 {
        let n = self.capacity();
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            let i = self.sweep;
            self.sweep = if i + 1 >= n { 0 } else { i + 1 };
            let s = &self.slots[i as usize];
            if s.live && s.expires <= now {
                self.remove(i);
                removed += 1;
            }
        }
        removed
    }

    /// Calls `f` with every live, unexpired session (slot order).
    pub fn for_each(&self, now: u64, mut f: impl FnMut(&Session)) {
        for s in self.slots.iter().filter(|s| s.live && s.expires > now) {
            f(s);
        }
    }

    /// Live sessions that are embryonic.
    #[inline]
    pub fn embryonic(&self) -> u32 {
        self.embryos
    }

    /// Live sessions that may be evicted (embryonic or closed), counted along their list.
    pub fn evictable(&self) -> u32 {
        let mut n = 0;
        let mut i = self.embryo_head;
        while i != NIL {
            n += 1;
            i = self.slots[i as usize].next;
        }
        n
    }

    /// Drops every session.
    pub fn clear(&mut self) {
        for i in 0..self.capacity() {
            self.remove(i);
        }
    }
}

/// TCP's next state after a packet going `dir` with `flags` (`fins`: FINs seen so far).
pub(crate) fn tcp_next(old: State, fins: u8, dir: Dir, flags: u8) -> State {
    use tcp_flags::*;
    if flags & RST != 0 {
        return State::Reset;
    }
    if flags & SYN != 0 {
        return match (old, dir) {
            // The other side's SYN (a SYN-ACK, or a simultaneous open): both have spoken.
            (State::SynSent, Dir::In) => State::Established,
            (State::SynSent, Dir::Out) => State::SynSent,
            // A new connection on a mapping whose last one ended.
            (State::TimeWait | State::Reset | State::New | State::Replied, _) => State::SynSent,
            (s, _) => s,
        };
    }
    if flags & FIN != 0 {
        let bit = if dir == Dir::Out { 1 } else { 2 };
        if (fins | bit) == 3 {
            return State::TimeWait;
        }
        return match old {
            State::Established | State::SynSent => State::FinWait,
            s => s,
        };
    }
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts::DEFAULT;

    fn inside(port: u16) -> Inside {
        Inside {
            net: 1,
            proto: proto::TCP,
            ip: 0x0a00_0002,
            port,
        }
    }

    fn outside(port: u16) -> Outside {
        Outside {
            proto: proto::TCP,
            ip: 0xc0a8_0002,
            port,
        }
    }

    fn add(t: &mut Table, port: u16, state: State, now: u64) -> Inserted {
        t.insert(inside(port), outside(port + 1000), state, now, &T)
    }

    #[test]
    fn finds_both_ways_and_forgets_on_remove() {
        let mut t = Table::new(8, 1);
        let Inserted::Ok(i, false) = add(&mut t, 1, State::SynSent, 0) else {
            panic!("inserted")
        };
        let h = t.hash_in(&inside(1));
        assert_eq!(t.find_out(&inside(1), h, 1), Some(i));
        let h = t.hash_out(&outside(1001));
        assert_eq!(t.find_in(&outside(1001), h, 1), Some(i));
        assert_eq!(
            t.find_in(&outside(1002), t.hash_out(&outside(1002)), 1),
            None
        );
        t.remove(i);
        assert_eq!(t.find_out(&inside(1), t.hash_in(&inside(1)), 1), None);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_evicts_oldest_embryonic_and_never_an_established_one() {
        let mut t = Table::new(4, 7);
        for p in 0..2 {
            let Inserted::Ok(i, _) = add(&mut t, p, State::SynSent, 0) else {
                panic!()
            };
            t.track(i, Dir::In, tcp_flags::SYN | tcp_flags::ACK, 0, &T);
        }
        for p in 2..4 {
            add(&mut t, p, State::SynSent, u64::from(p));
        }
        assert_eq!(t.embryonic(), 2);
        // A flood of new SYNs replaces embryonic sessions only, oldest first.
        assert!(matches!(
            add(&mut t, 10, State::SynSent, 5),
            Inserted::Ok(_, true)
        ));
        assert!(t.find_out(&inside(2), t.hash_in(&inside(2)), 5).is_none());
        assert!(t.find_out(&inside(3), t.hash_in(&inside(3)), 5).is_some());
        for p in 11..100 {
            assert!(matches!(
                add(&mut t, p, State::SynSent, 6),
                Inserted::Ok(_, true)
            ));
        }
        for p in 0..2 {
            let i = t
                .find_out(&inside(p), t.hash_in(&inside(p)), 7)
                .expect("kept");
            assert_eq!(t.get(i).state(), State::Established);
        }
        assert_eq!(t.len(), 4);
        // Full of established sessions: refused.
        let mut t = Table::new(1, 7);
        let Inserted::Ok(i, _) = add(&mut t, 0, State::SynSent, 0) else {
            panic!()
        };
        t.track(i, Dir::In, tcp_flags::SYN | tcp_flags::ACK, 0, &T);
        assert_eq!(add(&mut t, 1, State::SynSent, 0), Inserted::Full);
    }

    #[test]
    fn closed_sessions_go_before_established_ones() {
        let mut t = Table::new(2, 5);
        let Inserted::Ok(a, _) = add(&mut t, 1, State::SynSent, 0) else {
            panic!()
        };
        t.track(a, Dir::In, tcp_flags::SYN | tcp_flags::ACK, 0, &T);
        let Inserted::Ok(b, _) = add(&mut t, 2, State::SynSent, 0) else {
            panic!()
        };
        t.track(b, Dir::In, tcp_flags::SYN | tcp_flags::ACK, 0, &T);
        t.track(b, Dir::In, tcp_flags::RST, 1, &T);
        assert_eq!((t.embryonic(), t.evictable()), (0, 1));
        assert!(matches!(
            add(&mut t, 3, State::SynSent, 2),
            Inserted::Ok(_, true)
        ));
        assert!(t.find_out(&inside(1), t.hash_in(&inside(1)), 2).is_some());
        assert!(t.find_out(&inside(2), t.hash_in(&inside(2)), 2).is_none());
    }

    #[test]
    fn tcp_states_follow_the_handshake_and_the_close_with_their_timeouts() {
        let mut t = Table::new(4, 3);
        let Inserted::Ok(i, _) = add(&mut t, 5, State::SynSent, 100) else {
            panic!()
        };
        assert_eq!(t.get(i).expires, 100 + u64::from(T.tcp_syn));
        let s = t.track(i, Dir::In, tcp_flags::SYN | tcp_flags::ACK, 101, &T);
        assert_eq!(s, State::Established);
        assert_eq!(t.get(i).expires, 101 + 7440);
        assert_eq!(
            t.track(i, Dir::Out, tcp_flags::ACK, 102, &T),
            State::Established
        );
        let s = t.track(i, Dir::Out, tcp_flags::FIN | tcp_flags::ACK, 103, &T);
        assert_eq!(s, State::FinWait);
        assert_eq!(t.get(i).expires, 103 + u64::from(T.tcp_fin));
        let s = t.track(i, Dir::In, tcp_flags::FIN | tcp_flags::ACK, 104, &T);
        assert_eq!(s, State::TimeWait);
        assert_eq!(t.get(i).expires, 104 + u64::from(T.tcp_time_wait));
        // A new connection from the same inside port reuses the mapping.
        assert_eq!(
            t.track(i, Dir::Out, tcp_flags::SYN, 105, &T),
            State::SynSent
        );
        assert_eq!(t.embryonic(), 1);
        assert_eq!(t.track(i, Dir::In, tcp_flags::RST, 106, &T), State::Reset);
        assert_eq!(t.embryonic(), 0);
        assert_eq!(t.get(i).expires, 106 + u64::from(T.tcp_rst));
    }

    #[test]
    fn udp_and_icmp_become_replied_and_expire_with_a_fake_clock() {
        let mut t = Table::new(4, 3);
        let k = Inside {
            proto: proto::UDP,
            ..inside(9)
        };
        let o = Outside {
            proto: proto::UDP,
            ..outside(9)
        };
        let Inserted::Ok(i, _) = t.insert(k, o, State::New, 0, &T) else {
            panic!()
        };
        assert_eq!(t.embryonic(), 1);
        assert_eq!(t.track(i, Dir::In, 0, 10, &T), State::Replied);
        assert_eq!(t.embryonic(), 0);
        let h = t.hash_in(&k);
        assert!(t.find_out(&k, h, 10 + u64::from(T.udp) - 1).is_some());
        // Lazily removed at lookup once expired.
        assert!(t.find_out(&k, h, 10 + u64::from(T.udp)).is_none());
        assert!(t.is_empty());
        let k = Inside {
            proto: proto::ICMP,
            ..inside(9)
        };
        let o = Outside {
            proto: proto::ICMP,
            ..outside(9)
        };
        let Inserted::Ok(i, _) = t.insert(k, o, State::New, 0, &T) else {
            panic!()
        };
        assert_eq!(t.get(i).expires, u64::from(T.icmp));
        assert_eq!(t.expire(u64::from(T.icmp) - 1, 100), 0);
        assert_eq!(t.expire(u64::from(T.icmp), 100), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn index_survives_churn_with_collisions() {
        // Many inserts and removals in a small table exercise backward-shift deletion.
        let mut t = Table::new(64, 0);
        let mut live = std::collections::BTreeSet::new();
        let mut x = 12345u64;
        for round in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let p = (x % 200) as u16;
            let h = t.hash_in(&inside(p));
            match t.find_out(&inside(p), h, round) {
                Some(i) => {
                    t.remove(i);
                    live.remove(&p);
                }
                None => {
                    if t.len() < 64 {
                        let Inserted::Ok(i, _) = add(&mut t, p, State::SynSent, round) else {
                            panic!()
                        };
                        t.track(i, Dir::In, tcp_flags::SYN, round, &T);
                        live.insert(p);
                    }
                }
            }
            assert_eq!(t.len() as usize, live.len());
        }
        for &p in &live {
            let h = t.hash_out(&outside(p + 1000));
            assert!(t.find_in(&outside(p + 1000), h, 20_000).is_some(), "{p}");
        }
    }
}
