//! Neighbours inside the networks, for routing between linked networks (`network link`): which
//! MAC, behind which port, has an address of a network's subnet.
//!
//! One table for all workers: an ARP reply to a gateway arrives on whichever worker reads the
//! queue the kernel chose for it, which need not be the worker holding the packet that asked.
//! The table is lock-free: a direct-mapped array of slots of three atomic words. A writer takes
//! a slot by swapping its key for a busy mark (compare-and-swap; a writer that finds the slot
//! busy skips the write, it never waits), fills it and publishes the key again; a reader reads
//! key, value, key and accepts the value only if the key was the same, not busy, both times.
//! Subnets never overlap (`network create` refuses it), so an address alone names its
//! network; the network id is in the key all the same, so that an entry learned before a
//! network was removed and another made with the same subnet is not taken for the new one's.
//! A collision replaces the older entry (it is learned again from the next ARP).

use crate::config::NetId;
use std::net::Ipv4Addr;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Slots (a power of two).
const SLOTS: usize = 4096;
/// A slot being written.
const BUSY: u64 = u64::MAX;
/// An entry older than this (seconds) is not used: the neighbour is asked again.
pub const MAX_AGE: u32 = 300;

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    val: AtomicU64,
    seen: AtomicU32,
}

/// The shared table (see the module doc).
pub struct InsideNeigh {
    slots: Box<[Slot]>,
}

impl Default for InsideNeigh {
    fn default() -> Self {
        InsideNeigh {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

impl std::fmt::Debug for InsideNeigh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InsideNeigh")
    }
}

/// The bits of a key word that name the entry; the 15 above them count its writes, so that a
/// reader that saw the same key word twice knows no write came in between (no ABA).
const ID: u64 = (1 << 49) - 1;

/// The key of (network, address): never 0 (empty); with any write count, never [`BUSY`] (the
/// broadcast address is never learned).
#[inline]
fn key(net: NetId, ip: Ipv4Addr) -> u64 {
    (1 << 48) | (u64::from(net) << 32) | u64::from(ip.to_bits())
}

#[inline]
fn slot_of(k: u64) -> usize {
    (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize & (SLOTS - 1)
}

#[inline]
fn pack(mac: [u8; 6], port: u16) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&mac);
    b[6..].copy_from_slice(&port.to_be_bytes());
    u64::from_be_bytes(b)
}

#[inline]
fn unpack(v: u64) -> ([u8; 6], u16) {
    let b = v.to_be_bytes();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[..6]);
    (mac, u16::from_be_bytes([b[6], b[7]]))
}

impl InsideNeigh {
    /// Records that `ip` of network `net` is `mac` behind `port`, seen at `now` (seconds).
    /// Writes nothing when the slot already says so and was refreshed within the last second
    /// (no cache line bounces between workers for a busy flow), or when another worker is
    /// writing the slot.
    pub fn learn(&self, net: NetId, ip: Ipv4Addr, mac: [u8; 6], port: u16, now: u32) {
        if ip.is_broadcast() {
            return;
        }
        let k = key(net, ip);
        let s = &self.slots[slot_of(k)];
        let v = pack(mac, port);
        let cur = s.key.load(Ordering::Acquire);
        if cur & ID == k
            && cur != BUSY
            && s.val.load(Ordering::Relaxed) == v
            && now.saturating_sub(s.seen.load(Ordering::Relaxed)) < 1
        {
            return;
        }
        if cur == BUSY
            || s.key
                .compare_exchange(cur, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // The busy mark is visible before the new value (a seqlock's writer fence), so a
        // reader that saw the old key twice cannot have read the new value in between.
        fence(Ordering::Release);
        s.val.store(v, Ordering::Relaxed);
        s.seen.store(now, Ordering::Relaxed);
        let writes = ((cur >> 49).wrapping_add(1) & 0x7fff) << 49;
        s.key.store(writes | k, Ordering::Release);
    }

    /// The MAC and port of `ip` in network `net`, if learned within [`MAX_AGE`] of `now`.
    #[inline]
    pub fn lookup(&self, net: NetId, ip: Ipv4Addr, now: u32) -> Option<([u8; 6], u16)> {
        let k = key(net, ip);
        let s = &self.slots[slot_of(k)];
        let k1 = s.key.load(Ordering::Acquire);
        if k1 & ID != k || k1 == BUSY {
            return None;
        }
        let v = s.val.load(Ordering::Relaxed);
        let seen = s.seen.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if s.key.load(Ordering::Relaxed) != k1 || now.saturating_sub(seen) > MAX_AGE {
            return None;
        }
        Some(unpack(v))
    }

    /// Forgets every entry of network `net` (a removed or unlinked network).
    pub fn forget_net(&self, net: NetId) {
        for s in self.slots.iter() {
            let k = s.key.load(Ordering::Acquire);
            if k != 0 && k != BUSY && (k >> 32) & 0xffff == u64::from(net) {
                // Empty (no entry bit), the write count kept.
                let _ = s
                    .key
                    .compare_exchange(k, k & !ID, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn learns_refreshes_ages_and_forgets() {
        let t = InsideNeigh::default();
        let ip = Ipv4Addr::new(10, 2, 0, 5);
        assert_eq!(t.lookup(1, ip, 10), None);
        t.learn(1, ip, [2, 0, 0, 0, 0, 5], 7, 10);
        assert_eq!(t.lookup(1, ip, 10), Some(([2, 0, 0, 0, 0, 5], 7)));
        assert_eq!(t.lookup(2, ip, 10), None, "another network's");
        assert_eq!(t.lookup(1, ip, 10 + MAX_AGE + 1), None, "too old");
        t.learn(1, ip, [2, 0, 0, 0, 0, 6], 8, 20);
        assert_eq!(t.lookup(1, ip, 20), Some(([2, 0, 0, 0, 0, 6], 8)), "moved");
        t.forget_net(1);
        assert_eq!(t.lookup(1, ip, 20), None);
    }

    #[test]
    fn readers_never_see_a_torn_entry() {
        // Two writers put consistent pairs (MAC's last byte == port) for the same address;
        // a reader must only ever see a pair that one of them wrote.
        let t = Arc::new(InsideNeigh::default());
        let ip = Ipv4Addr::new(10, 2, 0, 9);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2u8)
            .map(|w| {
                let (t, stop) = (t.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0u32;
                    while !stop.load(Ordering::Relaxed) && i < 2_000_000 {
                        let p = (w * 100) + (i % 50) as u8;
                        t.learn(3, ip, [2, 0, 0, 0, 0, p], u16::from(p), i);
                        i += 1;
                    }
                })
            })
            .collect();
        for n in 0..200_000u32 {
            if let Some((mac, port)) = t.lookup(3, ip, n / 100) {
                assert_eq!(u16::from(mac[5]), port);
            }
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    }
}
