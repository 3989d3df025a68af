//! The connection table of load-balanced flows, one per worker: a protocol core (no I/O, `now`
//! as an argument), the service counterpart of NAT's session table (`crate::nat::table`), whose
//! index, TCP state machine and timeouts it reuses.
//!
//! A connection has two keys, both full 5-tuples plus a network:
//! * the *original* direction, as the client sent it: client address and port to the service
//!   address (VIP or uplink address) and port, on the client's network ([`UPLINK`] for a
//!   client beyond the uplink);
//! * the *reply* direction, as the backend sends it: backend address and target port to the
//!   address the backend saw (the client's own, or the gateway's when source-translated), on
//!   the backend's network.
//!
//! The backend is chosen once, when the connection is created, and kept for its life whatever
//! happens to the service's table afterwards (connection tracking). A connection whose backend
//! was removed gets an end time (`ends`, the drain timeout); it goes at that time whatever its
//! state. Nothing is allocated after [`Conns::new`]. As in NAT's table, connections that are
//! embryonic (a SYN only; UDP not yet answered) or closed (TIME_WAIT, reset) are kept on a list,
//! oldest first; a full table evicts the oldest of them for a new connection, and refuses only
//! when every connection is established: a SYN flood at a published port pushes out its own
//! kind, never an established connection.

use crate::nat::table::{
    list_push, list_unlink, mix, prefetch, tcp_next, Dir, Index, Linked, State,
};
use crate::nat::{proto, Timeouts};

/// No slot.
use crate::nat::table::NIL;

/// The "network" of a client beyond the uplink.
pub const UPLINK: u16 = u16::MAX;

/// A direction's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tuple {
    /// Network the packet arrives from ([`UPLINK`] for the uplink).
    pub net: u16,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: u32,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: u32,
    /// Destination port.
    pub dport: u16,
}

impl Tuple {
    #[inline]
    fn hash(&self, seed: u64) -> u32 {
        let a = (u64::from(self.src) << 32) | (u64::from(self.sport) << 16) | u64::from(self.net);
        let b = (u64::from(self.dst) << 32) | (u64::from(self.dport) << 16) | u64::from(self.proto);
        // Truncation intended: 32 bits of a 64-bit hash.
        #[allow(clippy::cast_possible_truncation)]
        let h = mix(a ^ mix(b ^ seed)) as u32;
        h
    }
}

/// One load-balanced connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conn {
    /// Original direction (client to service).
    pub orig: Tuple,
    /// Reply direction (backend to what it saw as the client).
    pub reply: Tuple,
    /// Service index in the snapshot's service table.
    pub svc: u16,
    /// The backend's endpoint index (see `ServiceTable::endpoints`).
    pub ep: u32,
    /// The client's MAC and port, when it is on a network (port `u16::MAX` beyond the uplink).
    pub client_mac: [u8; 6],
    /// The client's port.
    pub client_port: u16,
    /// The backend's MAC and port.
    pub backend_mac: [u8; 6],
    /// The backend's port.
    pub backend_port: u16,
    pub(crate) state: u8,
    pub(crate) fins: u8,
    pub(crate) live: bool,
    /// Expires unless refreshed (seconds).
    pub expires: u64,
    /// Ends whatever its state (the drain timeout of a removed backend; `u64::MAX`: never).
    pub ends: u64,
    /// Created (seconds).
    pub created: u64,
    pub(crate) next: u32,
    pub(crate) prev: u32,
}

impl Linked for Conn {
    #[inline]
    fn links(&mut self) -> (&mut u32, &mut u32) {
        (&mut self.prev, &mut self.next)
    }
}

impl Conn {
    /// Its TCP (or UDP) state.
    #[inline]
    pub fn state(&self) -> State {
        State::from_u8(self.state)
    }

    /// Whether it is still alive at `now`.
    #[inline]
    pub fn alive(&self, now: u64) -> bool {
        self.live && self.expires > now && self.ends > now
    }
}

/// A worker's connection table.
pub struct Conns {
    slots: Vec<Conn>,
    /// The evictable list (embryonic or closed), oldest first.
    head: u32,
    tail: u32,
    orig_idx: Index,
    reply_idx: Index,
    free: u32,
    len: u32,
    seed: u64,
    sweep: u32,
}

/// What became of an insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// In this slot (`true`: an embryonic or closed connection was evicted for it).
    Ok(u32, bool),
    /// No room.
    Full,
}

impl Conns {
    /// A table of at most `capacity` connections (at least 1).
    pub fn new(capacity: u32, seed: u64) -> Conns {
        let capacity = capacity.max(1);
        let mut slots = vec![Conn::default(); capacity as usize];
        for (i, s) in slots.iter_mut().enumerate() {
            // The slab is no longer than u32::MAX.
            s.next = if i + 1 < capacity as usize {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        Conns {
            slots,
            head: NIL,
            tail: NIL,
            orig_idx: Index::new(capacity),
            reply_idx: Index::new(capacity),
            free: 0,
            len: 0,
            seed,
            sweep: 0,
        }
    }

    /// Live connections (expired ones not yet swept included).
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether there are none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most connections.
    #[inline]
    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The hash of an original-direction key.
    #[inline]
    pub fn hash_orig(&self, k: &Tuple) -> u32 {
        k.hash(self.seed)
    }

    /// The hash of a reply-direction key.
    #[inline]
    pub fn hash_reply(&self, k: &Tuple) -> u32 {
        k.hash(self.seed.rotate_left(29) ^ 0x7265_706c_7900_0001)
    }

    /// Starts loading the index line of original key hash `h`.
    #[inline]
    pub fn prefetch_orig(&self, h: u32) {
        self.orig_idx.prefetch(h);
    }

    /// Connection `i`.
    #[inline]
    pub fn get(&self, i: u32) -> &Conn {
        &self.slots[i as usize]
    }

    /// Connection `i`, to change.
    #[inline]
    pub fn get_mut(&mut self, i: u32) -> &mut Conn {
        &mut self.slots[i as usize]
    }

    /// The live connection whose original key is `k` (hash `h`) at `now`; an expired one is
    /// removed and missed.
    #[inline]
    pub fn find_orig(&mut self, k: &Tuple, h: u32, now: u64) -> Option<u32> {
        let slots = &self.slots;
        let (_, i) = self.orig_idx.find(h, |s| slots[s as usize].orig == *k)?;
        self.live(i, now)
    }

    /// The live connection whose reply key is `k` (hash `h`).
    #[inline]
    pub fn find_reply(&mut self, k: &Tuple, h: u32, now: u64) -> Option<u32> {
        let slots = &self.slots;
        let (_, i) = self.reply_idx.find(h, |s| slots[s as usize].reply == *k)?;
        self.live(i, now)
    }

    /// Whether a reply key is taken (a source port for translation is free when it is not).
    #[inline]
    pub fn reply_taken(&self, k: &Tuple) -> bool {
        let slots = &self.slots;
        self.reply_idx
            .find(self.hash_reply(k), |s| slots[s as usize].reply == *k)
            .is_some()
    }

    #[inline]
    fn live(&mut self, i: u32, now: u64) -> Option<u32> {
        if !self.get(i).alive(now) {
            self.remove(i);
            return None;
        }
        Some(i)
    }

    /// Adds `c` (its keys absent: the caller looked), in `state` at `now`.
    pub fn insert(&mut self, mut c: Conn, state: State, now: u64, t: &Timeouts) -> Inserted {
        let mut evicted = false;
        if self.free == NIL {
            if self.head == NIL {
                return Inserted::Full;
            }
            self.remove(self.head);
            evicted = true;
        }
        let i = self.free;
        self.free = self.slots[i as usize].next;
        c.state = state as u8;
        c.fins = 0;
        c.live = true;
        c.created = now;
        c.expires = now.saturating_add(u64::from(state.timeout(c.orig.proto, t)));
        c.ends = u64::MAX;
        c.next = NIL;
        c.prev = NIL;
        let (ho, hr) = (self.hash_orig(&c.orig), self.hash_reply(&c.reply));
        self.slots[i as usize] = c;
        self.len += 1;
        self.orig_idx.insert(ho, i);
        self.reply_idx.insert(hr, i);
        if state.evictable() {
            self.push(i);
        }
        Inserted::Ok(i, evicted)
    }

    fn push(&mut self, i: u32) {
        list_push(&mut self.slots, (&mut self.head, &mut self.tail), i);
    }

    fn unlink(&mut self, i: u32) {
        list_unlink(&mut self.slots, (&mut self.head, &mut self.tail), i);
    }

    /// Removes connection `i` (a no-op for a free slot).
    pub fn remove(&mut self, i: u32) {
        let Some(c) = self.slots.get(i as usize).copied() else {
            return;
        };
        if !c.live {
            return;
        }
        if c.state().evictable() {
            self.unlink(i);
        }
        let (ho, hr) = (self.hash_orig(&c.orig), self.hash_reply(&c.reply));
        if let Some((at, _)) = self.orig_idx.find(ho, |x| x == i) {
            self.orig_idx.remove_at(at);
        }
        if let Some((at, _)) = self.reply_idx.find(hr, |x| x == i) {
            self.reply_idx.remove_at(at);
        }
        let s = &mut self.slots[i as usize];
        s.live = false;
        s.next = self.free;
        self.free = i;
        self.len -= 1;
    }

    /// Tracks a packet of connection `i` (`Dir::Out`: original direction, `Dir::In`: reply)
    /// with TCP `flags`: moves its state on and pushes its expiry out.
    #[inline]
    pub fn track(&mut self, i: u32, dir: Dir, flags: u8, now: u64, t: &Timeouts) -> State {
        let c = &mut self.slots[i as usize];
        let (old, p) = (c.state(), c.orig.proto);
        let new = if p == proto::TCP {
            tcp_next(old, c.fins, dir, flags)
        } else if dir == Dir::In {
            State::Replied
        } else {
            old
        };
        if p == proto::TCP {
            if flags & crate::nat::table::tcp_flags::FIN != 0 {
                c.fins |= if dir == Dir::Out { 1 } else { 2 };
            }
            if new == State::SynSent {
                c.fins = 0;
            }
        }
        c.state = new as u8;
        c.expires = now.saturating_add(u64::from(new.timeout(p, t)));
        match (old.evictable(), new.evictable()) {
            (true, false) => self.unlink(i),
            (false, true) => self.push(i),
            _ => {}
        }
        new
    }

    /// Sweeps up to `budget` slots for expired or ended connections, resuming where the last
    /// call stopped; returns how many went.
    pub fn expire(&mut self, now: u64, budget: u32) -> u32 {
        let n = self.capacity();
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            let i = self.sweep;
            self.sweep = if i + 1 >= n { 0 } else { i + 1 };
            let c = &self.slots[i as usize];
            if c.live && !c.alive(now) {
                self.remove(i);
                removed += 1;
            }
        }
        removed
    }

    /// Calls `f` with the slot and connection of every live connection at `now`.
    pub fn for_each(&self, now: u64, mut f: impl FnMut(u32, &Conn)) {
        for (i, c) in self.slots.iter().enumerate() {
            if c.alive(now) {
                // The slab is no longer than u32::MAX.
                f(i as u32, c);
            }
        }
    }

    /// Gives every connection `f` says (`Some(secs)`) an end at `now + secs` at the latest
    /// (0: removed at once). Runs on a configuration change, never per packet.
    pub fn end_where(&mut self, now: u64, mut f: impl FnMut(&mut Conn) -> Option<u32>) -> u32 {
        let mut n = 0;
        for i in 0..self.capacity() {
            let c = &mut self.slots[i as usize];
            if !c.live {
                continue;
            }
            let Some(secs) = f(c) else { continue };
            // Counted once: a connection already given an end is not ended again.
            if c.ends == u64::MAX || secs == 0 {
                n += 1;
            }
            if secs == 0 {
                self.remove(i);
            } else {
                let c = &mut self.slots[i as usize];
                c.ends = c.ends.min(now.saturating_add(u64::from(secs)));
            }
        }
        n
    }

    /// Starts loading the index line of reply key hash `h`.
    #[inline]
    pub fn prefetch_reply(&self, h: u32) {
        self.reply_idx.prefetch(h);
    }

    /// Starts loading the connection that reply hash `h` most likely names.
    #[inline]
    pub fn prefetch_conn_reply(&self, h: u32) {
        self.prefetch_slot(self.reply_idx.at(h));
    }

    /// Starts loading the connection that original hash `h` most likely names.
    #[inline]
    pub fn prefetch_conn(&self, h: u32) {
        self.prefetch_slot(self.orig_idx.at(h));
    }

    #[inline]
    fn prefetch_slot(&self, cell: u64) {
        #[allow(clippy::cast_possible_truncation)]
        let slot = (cell as u32).wrapping_sub(1);
        if let Some(c) = self.slots.get(slot as usize) {
            // A connection spans two cache lines.
            let p: *const u8 = (c as *const Conn).cast();
            prefetch(p);
            prefetch(p.wrapping_add(64));
        }
    }

    /// Drops every connection.
    pub fn clear(&mut self) {
        for i in 0..self.capacity() {
            self.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::table::tcp_flags::*;

    const T: Timeouts = Timeouts::DEFAULT;

    fn conn(cport: u16) -> Conn {
        Conn {
            orig: Tuple {
                net: UPLINK,
                proto: proto::TCP,
                src: 0xc0a8_0101,
                sport: cport,
                dst: 0xc0a8_0102,
                dport: 8080,
            },
            reply: Tuple {
                net: 1,
                proto: proto::TCP,
                src: 0x0a01_0003,
                sport: 80,
                dst: 0xc0a8_0101,
                dport: cport,
            },
            ..Conn::default()
        }
    }

    #[test]
    fn both_keys_find_the_connection_and_state_follows_tcp() {
        let mut t = Conns::new(4, 9);
        let c = conn(40000);
        let Inserted::Ok(i, _) = t.insert(c, State::SynSent, 10, &T) else {
            panic!()
        };
        assert_eq!(t.find_orig(&c.orig, t.hash_orig(&c.orig), 11), Some(i));
        assert_eq!(t.find_reply(&c.reply, t.hash_reply(&c.reply), 11), Some(i));
        assert!(t.reply_taken(&c.reply));
        assert_eq!(t.track(i, Dir::In, SYN | ACK, 11, &T), State::Established);
        assert_eq!(t.get(i).expires, 11 + u64::from(T.tcp_established));
        assert_eq!(t.track(i, Dir::Out, FIN | ACK, 12, &T), State::FinWait);
        assert_eq!(t.track(i, Dir::In, FIN | ACK, 12, &T), State::TimeWait);
        let other = conn(40001);
        assert_eq!(t.find_orig(&other.orig, t.hash_orig(&other.orig), 12), None);
        t.remove(i);
        assert!(t.is_empty());
        assert_eq!(t.find_orig(&c.orig, t.hash_orig(&c.orig), 12), None);
    }

    #[test]
    fn full_table_evicts_embryos_only_and_drain_ends_connections() {
        let mut t = Conns::new(2, 1);
        let Inserted::Ok(a, false) = t.insert(conn(1), State::SynSent, 0, &T) else {
            panic!()
        };
        let Inserted::Ok(b, false) = t.insert(conn(2), State::SynSent, 0, &T) else {
            panic!()
        };
        // A flood of SYNs evicts the oldest embryo; established ones stay.
        let Inserted::Ok(_, true) = t.insert(conn(3), State::SynSent, 0, &T) else {
            panic!()
        };
        let c1 = conn(1);
        assert_eq!(t.find_orig(&c1.orig, t.hash_orig(&c1.orig), 0), None);
        assert_eq!(t.get(a).orig.sport, 3, "its slot reused");
        let c3 = conn(3);
        let i3 = t.find_orig(&c3.orig, t.hash_orig(&c3.orig), 0).unwrap();
        t.track(i3, Dir::In, SYN | ACK, 0, &T);
        t.track(b, Dir::In, SYN | ACK, 0, &T);
        assert_eq!(t.insert(conn(4), State::SynSent, 0, &T), Inserted::Full);
        t.remove(i3);
        t.insert(conn(1), State::SynSent, 0, &T);
        // Port 1's backend is removed with a 30 s drain, port 2's with none (reset).
        let n = t.end_where(100, |c| Some(if c.orig.sport == 1 { 30 } else { 0 }));
        assert_eq!(n, 2);
        assert_eq!(t.len(), 1);
        let c = conn(1);
        assert!(t.find_orig(&c.orig, t.hash_orig(&c.orig), 129).is_some());
        assert_eq!(t.expire(130, 10), 1);
        assert!(t.is_empty());
    }
}
