//! A bounded single-producer single-consumer ring of buffers with burst operations: one
//! acquire/release pair per burst, not per packet (DPDK's rte_ring bulk mode, SPSC flavour).
//!
//! Built on the typed hand-off ring ([`crate::handoff`], whose concurrency contract applies):
//! items are buffers' raw handles. Buffers left in the ring when both halves drop are returned
//! to the pool by the last one.

use crate::burst::Burst;
use crate::handoff::{self, Receiver, Sender};
use crate::pool::{Buf, Pool};
use std::sync::Arc;

/// The sending half.
pub struct Producer {
    tx: Sender<u32>,
}

/// The receiving half.
pub struct Consumer {
    rx: Receiver<u32>,
}

/// A ring with room for at least `capacity` buffers.
pub fn ring(pool: Arc<Pool>, capacity: usize) -> (Producer, Consumer) {
    let leftover = move |raw: u32| {
        // SAFETY: an item left in the ring is a buffer the producer handed over (turned into
        // its raw handle) and nobody consumed; the ring hands each leftover out exactly once.
        pool.free_shared(unsafe { Buf::from_raw(raw) });
    };
    let (tx, rx) = handoff::handoff(capacity, 0, Some(Box::new(leftover)));
    (Producer { tx }, Consumer { rx })
}

impl Producer {
    /// Moves as many buffers of `burst` as fit into the ring, in order; the rest stay in `burst`
    /// (at its front). Returns how many were moved.
    pub fn push_burst(&mut self, burst: &mut Burst) -> usize {
        let n = self.tx.room().min(burst.len());
        let mut drained = burst.drain_front(n);
        // `room` only grows until we push (the consumer alone frees slots), so all `n` fit.
        self.tx.push_with(n, || drained.next().map(Buf::into_raw))
    }

    /// Pushes one buffer; gives it back if the ring is full.
    pub fn push(&mut self, b: Buf) -> Result<(), Buf> {
        if self.tx.room() == 0 {
            return Err(b);
        }
        // Cannot fail: there is room, and only this producer fills it.
        let _ = self.tx.push(b.into_raw());
        Ok(())
    }
}

impl Consumer {
    /// Moves up to `burst.room()` buffers from the ring into `burst`; returns how many.
    pub fn pop_burst(&mut self, burst: &mut Burst) -> usize {
        self.rx.pop_with(burst.room(), |raw| {
            // SAFETY: every item in the ring is the raw handle of a buffer the producer gave up
            // ownership of; popping it hands that ownership here, once.
            let b = unsafe { Buf::from_raw(raw) };
            // Cannot fail: at most `room` items are popped.
            let _ = burst.push(b);
        })
    }

    /// Pops one buffer.
    pub fn pop(&mut self) -> Option<Buf> {
        // SAFETY: as in `pop_burst`.
        self.rx.pop().map(|raw| unsafe { Buf::from_raw(raw) })
    }

    /// Buffers waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
