//! Return traffic of a NAT session that arrived on a worker other than the session's owner:
//! handed to the owner, in bursts, through single-producer rings (`dataplane::ring`), one per
//! ordered pair of workers. The owner runs it through its router as if its own uplink queue
//! had received it.
//!
//! The owner is known from the destination port alone (see `nat`'s module doc), so the worker
//! that received the frame decides without looking at any table. Frames for one owner are
//! collected while a burst is processed and pushed once at its end: one publication and at most
//! one wakeup per owner per burst. Wakeup contract (as `dataplane::port::remote` states it):
//! the sender pushes, fences, and wakes the owner if it announced that it sleeps; the owner
//! announces, fences, and looks at its rings once more (`Pipeline::pending`) before it sleeps.
//! A full ring drops what does not fit, counted as `nat_handoff_full`.

use dataplane::burst::{Burst, BURST};
use dataplane::pool::{Buf, Pool, PoolCache};
use dataplane::ring::{self, Consumer, Producer};
use dataplane::worker::WorkerShared;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

/// Buffers a ring between two workers holds.
pub const RING: usize = 1024;

/// How to wake a worker: its shared state and its waker.
pub type Wake = (Arc<WorkerShared>, Arc<mio::Waker>);

/// One worker's ends of the hand-off rings.
pub struct Handoff {
    me: usize,
    /// To each worker (None for this one).
    to: Vec<Option<Producer>>,
    /// How to wake each worker, once the daemon has told (None before, or for this one).
    wake: Vec<Option<Wake>>,
    /// From each other worker.
    from: Vec<Consumer>,
    /// Frames collected during a burst, per owner.
    out: Vec<Burst>,
}

/// The rings for `n` workers: entry `i` is worker `i`'s ends.
pub fn build(pool: &Arc<Pool>, n: usize, capacity: usize) -> Vec<Handoff> {
    let mut hs: Vec<Handoff> = (0..n)
        .map(|me| Handoff {
            me,
            to: (0..n).map(|_| None).collect(),
            wake: (0..n).map(|_| None).collect(),
            from: Vec::with_capacity(n.saturating_sub(1)),
            out: (0..n).map(|_| Burst::new()).collect(),
        })
        .collect();
    for a in 0..n {
        for b in 0..n {
            if a == b {
                continue;
            }
            let (p, c) = ring::ring(pool.clone(), capacity);
            hs[a].to[b] = Some(p);
            hs[b].from.push(c);
        }
    }
    hs
}

impl Handoff {
    /// This worker's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Learns how to wake every worker (index = worker id).
    pub fn set_wake(&mut self, wake: Vec<Wake>) {
        for (i, w) in wake.into_iter().enumerate() {
            if i != self.me {
                if let Some(slot) = self.wake.get_mut(i) {
                    *slot = Some(w);
                }
            }
        }
    }

    /// Collects `b` for worker `owner`; pushes that worker's collection first when it is full.
    /// Gives `b` back when `owner` is not a worker or its ring is full.
    pub fn queue(&mut self, owner: usize, b: Buf) -> Result<(), Buf> {
        if owner == self.me || self.to.get(owner).is_none_or(Option::is_none) {
            return Err(b);
        }
        if self.out.get(owner).is_some_and(|o| o.len() >= BURST) {
            self.push(owner);
        }
        match self.out.get_mut(owner) {
            Some(o) => o.push(b),
            None => Err(b),
        }
    }

    /// Pushes worker `owner`'s collection and wakes it if it sleeps; what does not fit stays.
    fn push(&mut self, owner: usize) {
        let (Some(Some(p)), Some(o)) = (self.to.get_mut(owner), self.out.get_mut(owner)) else {
            return;
        };
        if p.push_burst(o) > 0 {
            if let Some(Some((shared, waker))) = self.wake.get(owner) {
                fence(Ordering::SeqCst);
                if shared.sleeping.load(Ordering::SeqCst) {
                    let _ = waker.wake();
                }
            }
        }
    }

    /// Pushes every collection (at the end of a burst); frees what the rings refuse and returns
    /// how many that was.
    pub fn flush(&mut self, cache: &mut PoolCache) -> u64 {
        let mut lost = 0;
        for owner in 0..self.out.len() {
            if self.out[owner].is_empty() {
                continue;
            }
            self.push(owner);
            let o = &mut self.out[owner];
            lost += o.len() as u64;
            o.free_all(cache);
        }
        lost
    }

    /// Whether frames from other workers wait.
    pub fn pending(&self) -> bool {
        self.from.iter().any(|c| !c.is_empty())
    }

    /// Moves waiting frames from other workers into `burst` (up to its room); returns how many.
    pub fn take(&mut self, burst: &mut Burst) -> usize {
        let mut n = 0;
        for c in &mut self.from {
            if burst.room() == 0 {
                break;
            }
            n += c.pop_burst(burst);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reach_their_owner_in_bursts_and_full_rings_drop_by_count() {
        let pool = Pool::new(256).unwrap();
        let mut cache = PoolCache::new(pool.clone());
        let mut hs = build(&pool, 3, 64);
        let mut h2 = hs.pop().unwrap();
        let mut h1 = hs.pop().unwrap();
        let mut h0 = hs.pop().unwrap();
        assert!(
            h0.queue(0, cache.alloc().unwrap()).is_err(),
            "not to itself"
        );
        for _ in 0..40 {
            h0.queue(2, cache.alloc().unwrap()).unwrap();
        }
        // 32 went at once when the collection filled; the rest at the flush.
        assert!(h2.pending() && !h1.pending());
        assert_eq!(h0.flush(&mut cache), 0);
        let mut b = Burst::new();
        assert_eq!(h2.take(&mut b), 32);
        b.free_all(&mut cache);
        assert_eq!(h2.take(&mut b), 8);
        b.free_all(&mut cache);
        assert!(!h2.pending());
        // A ring of 64: what does not fit is given back or freed at the flush, and counted.
        let mut refused = 0;
        for _ in 0..100 {
            if let Err(b) = h1.queue(0, cache.alloc().unwrap()) {
                cache.free(b);
                refused += 1;
            }
        }
        assert_eq!(refused + h1.flush(&mut cache), 100 - 64);
        let mut got = 0;
        while h0.take(&mut b) > 0 {
            got += b.len();
            b.free_all(&mut cache);
        }
        assert_eq!(got, 64);
    }
}
