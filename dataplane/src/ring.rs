//! A bounded single-producer single-consumer ring of buffers with burst operations: one
//! acquire/release pair per burst, not per packet (DPDK's rte_ring bulk mode, SPSC flavour).
//!
//! Concurrency contract: exactly one [`Producer`] and one [`Consumer`] exist per ring (neither is
//! `Clone`). The producer writes slots then publishes `tail` with a release store; the consumer
//! reads `tail` with an acquire load, reads slots, then publishes `head` with a release store.
//! Buffers left in the ring when both halves drop are returned to the pool by the last one.

use crate::burst::Burst;
use crate::pool::{Buf, Pool};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Shared {
    slots: Box<[UnsafeCell<u32>]>,
    mask: usize,
    head: crossbeam::utils::CachePadded<AtomicUsize>,
    tail: crossbeam::utils::CachePadded<AtomicUsize>,
    pool: Arc<Pool>,
}

// SAFETY: a slot is written only by the producer while it lies outside [head, tail) and read only
// by the consumer while inside it; the release/acquire pairs on head and tail order those accesses.
unsafe impl Sync for Shared {}
// SAFETY: see `Sync`; the contents are plain integers.
unsafe impl Send for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        let (head, tail) = (*self.head.get_mut(), *self.tail.get_mut());
        for i in head..tail {
            let raw = *self.slots[i & self.mask].get_mut();
            // SAFETY: slots in [head, tail) hold buffers the producer handed over and nobody
            // consumed; this is the last owner of the ring, so each is rebuilt exactly once.
            self.pool.free_shared(unsafe { Buf::from_raw(raw) });
        }
    }
}

/// The sending half.
pub struct Producer {
    shared: Arc<Shared>,
}

/// The receiving half.
pub struct Consumer {
    shared: Arc<Shared>,
}

/// A ring with room for at least `capacity` buffers.
pub fn ring(pool: Arc<Pool>, capacity: usize) -> (Producer, Consumer) {
    let cap = capacity.max(2).next_power_of_two();
    let shared = Arc::new(Shared {
        slots: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
        mask: cap - 1,
        head: Default::default(),
        tail: Default::default(),
        pool,
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

impl Producer {
    /// Moves as many buffers of `burst` as fit into the ring, in order; the rest stay in `burst`
    /// (at its front). Returns how many were moved.
    pub fn push_burst(&mut self, burst: &mut Burst) -> usize {
        let s = &*self.shared;
        let tail = s.tail.load(Ordering::Relaxed);
        let head = s.head.load(Ordering::Acquire);
        let room = s.slots.len() - tail.wrapping_sub(head);
        let n = room.min(burst.len());
        if n == 0 {
            return 0;
        }
        let mut i = tail;
        for b in burst.drain_front(n) {
            // SAFETY: slot `i` is outside [head, tail) (there is room), so the consumer does
            // not read it until the release store of `tail` below.
            unsafe { *s.slots[i & s.mask].get() = b.into_raw() };
            i = i.wrapping_add(1);
        }
        s.tail.store(i, Ordering::Release);
        n
    }

    /// Pushes one buffer; gives it back if the ring is full.
    pub fn push(&mut self, b: Buf) -> Result<(), Buf> {
        let s = &*self.shared;
        let tail = s.tail.load(Ordering::Relaxed);
        let head = s.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= s.slots.len() {
            return Err(b);
        }
        // SAFETY: as in `push_burst`: the slot is free and unseen by the consumer until published.
        unsafe { *s.slots[tail & s.mask].get() = b.into_raw() };
        s.tail.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }
}

impl Consumer {
    /// Moves up to `burst.room()` buffers from the ring into `burst`; returns how many.
    pub fn pop_burst(&mut self, burst: &mut Burst) -> usize {
        let s = &*self.shared;
        let head = s.head.load(Ordering::Relaxed);
        let tail = s.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(burst.room());
        for k in 0..n {
            let i = head.wrapping_add(k);
            // SAFETY: slot `i` lies in [head, tail), published by the producer's release store
            // that our acquire load of `tail` observed; it holds an owned buffer handle.
            let b = unsafe { Buf::from_raw(*s.slots[i & s.mask].get()) };
            // Cannot fail: n <= room.
            let _ = burst.push(b);
        }
        s.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Pops one buffer.
    pub fn pop(&mut self) -> Option<Buf> {
        let s = &*self.shared;
        let head = s.head.load(Ordering::Relaxed);
        let tail = s.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        // SAFETY: as in `pop_burst`.
        let b = unsafe { Buf::from_raw(*s.slots[head & s.mask].get()) };
        s.head.store(head.wrapping_add(1), Ordering::Release);
        Some(b)
    }

    /// Buffers waiting.
    pub fn len(&self) -> usize {
        let s = &*self.shared;
        s.tail
            .load(Ordering::Acquire)
            .wrapping_sub(s.head.load(Ordering::Relaxed))
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
