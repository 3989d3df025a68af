//! A port wrapper that injects faults, for tests: any port can wear it (as DPDK's and OVS's test
//! drivers wrap a real device). What the wrapped port receives, and what is given it to send,
//! is dropped, corrupted (one byte flipped), truncated, duplicated or reordered (swapped with its
//! neighbour) at the rates its [`FaultPlan`] gives, by a seeded generator, so a failing test
//! replays exactly.
//!
//! Accounting: the wrapped port counts what crossed it (on receive, before the faults: what the
//! switch then sees is that, less `rx.dropped`, plus `rx.duplicated`); the wrapper counts what it
//! did each way in [`FaultStats`] (shared with the test that made it). A frame the wrapper drops on receive
//! never reaches the switch, as a frame lost on the wire would not; one dropped on transmit is
//! not sent. A duplicate is a second buffer (taken from the worker's cache; when none is free the
//! duplicate is skipped, never the original).

use super::{Port, PortIo};
use crate::burst::Burst;
use crate::counters::PortCounters;
use crate::pool::PoolCache;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Fault rates, each in parts per million of frames, for one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultRates {
    /// Frames dropped.
    pub drop: u32,
    /// Frames with one byte flipped (at a random offset).
    pub corrupt: u32,
    /// Frames cut to a random shorter length (at least one byte).
    pub truncate: u32,
    /// Frames sent or received twice.
    pub duplicate: u32,
    /// Frames swapped with the next one of their burst.
    pub reorder: u32,
}

/// What a [`FaultPort`] does, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// On frames the port receives.
    pub rx: FaultRates,
    /// On frames the port is given to send.
    pub tx: FaultRates,
    /// Seed of the generator.
    pub seed: u64,
}

/// What the wrapper did. Written by the worker, read by anyone (relaxed: counters).
#[derive(Debug, Default)]
pub struct FaultCounters {
    /// Frames dropped.
    pub dropped: AtomicU64,
    /// Frames corrupted.
    pub corrupted: AtomicU64,
    /// Frames truncated.
    pub truncated: AtomicU64,
    /// Extra copies made.
    pub duplicated: AtomicU64,
    /// Pairs swapped.
    pub reordered: AtomicU64,
}

/// What the wrapper did, each way.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// To frames the port received.
    pub rx: FaultCounters,
    /// To frames given it to send.
    pub tx: FaultCounters,
}

impl FaultStats {
    /// Every fault, both ways.
    pub fn total(&self) -> u64 {
        self.rx.total() + self.tx.total()
    }
}

impl FaultCounters {
    fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Every fault, summed.
    pub fn total(&self) -> u64 {
        [
            &self.dropped,
            &self.corrupted,
            &self.truncated,
            &self.duplicated,
            &self.reordered,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// A port wearing faults.
pub struct FaultPort {
    inner: PortIo,
    plan: FaultPlan,
    rng: u64,
    counters: Arc<FaultStats>,
    /// A burst's worth of buffers being reworked (allocated once).
    work: Burst,
}

impl FaultPort {
    /// Wraps `inner` with `plan`; the counters are shared with the caller.
    pub fn new(inner: PortIo, plan: FaultPlan, counters: Arc<FaultStats>) -> FaultPort {
        FaultPort {
            inner,
            plan,
            // xorshift must not start at zero.
            rng: plan.seed | 1,
            counters,
            work: Burst::new(),
        }
    }

    /// The wrapped port.
    pub fn inner(&self) -> &PortIo {
        &self.inner
    }

    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Whether an event of `ppm` parts per million happens now.
    #[inline]
    fn hit(&mut self, ppm: u32) -> bool {
        ppm > 0 && (self.next() % 1_000_000) < u64::from(ppm)
    }

    /// Applies `rates` to the frames of `burst` from index `start` on.
    fn apply(
        &mut self,
        cache: &mut PoolCache,
        burst: &mut Burst,
        start: usize,
        rates: FaultRates,
        rx: bool,
    ) {
        let stats = self.counters.clone();
        let counters = if rx { &stats.rx } else { &stats.tx };
        if rates == FaultRates::default() || burst.len() <= start {
            return;
        }
        let mut work = std::mem::take(&mut self.work);
        let keep = burst.len().saturating_sub(start);
        // Move the frames to work on aside, then put back what survives, in order.
        let mut moved = 0;
        while burst.len() > start {
            match burst.pop() {
                Some(b) => {
                    let _ = work.push(b);
                    moved += 1;
                }
                None => break,
            }
        }
        debug_assert_eq!(moved, keep);
        // `work` holds them last-first: reverse by popping.
        let pool = cache.pool().clone();
        let mut swap_pending = None;
        while let Some(mut b) = work.pop() {
            if self.hit(rates.drop) {
                FaultCounters::add(&counters.dropped, 1);
                cache.free(b);
                continue;
            }
            let len = pool.len(&b);
            if len > 0 && self.hit(rates.corrupt) {
                let at = (self.next() % len as u64) as usize;
                let bit = 1u8 << (self.next() % 8);
                if let Some(byte) = pool.data_mut(&mut b).get_mut(at) {
                    *byte ^= bit;
                }
                FaultCounters::add(&counters.corrupted, 1);
            }
            if len > 1 && self.hit(rates.truncate) {
                let to = 1 + (self.next() % (len as u64 - 1)) as usize;
                pool.set_len(&mut b, to);
                FaultCounters::add(&counters.truncated, 1);
            }
            let copy = if self.hit(rates.duplicate) {
                cache.clone_buf(&b)
            } else {
                None
            };
            if self.hit(rates.reorder) && swap_pending.is_none() && !work.is_empty() {
                // Goes out after the next frame.
                swap_pending = Some(b);
                FaultCounters::add(&counters.reordered, 1);
            } else {
                push_or_free(cache, burst, b);
                if let Some(late) = swap_pending.take() {
                    push_or_free(cache, burst, late);
                }
            }
            if let Some(c) = copy {
                FaultCounters::add(&counters.duplicated, 1);
                push_or_free(cache, burst, c);
            }
        }
        if let Some(late) = swap_pending.take() {
            push_or_free(cache, burst, late);
        }
        self.work = work;
    }
}

/// Adds `b` to `burst`, or frees it when the burst is full (a duplicate beyond a full burst).
fn push_or_free(cache: &mut PoolCache, burst: &mut Burst, b: crate::pool::Buf) {
    if let Err(b) = burst.push(b) {
        cache.free(b);
    }
}

impl Port for FaultPort {
    fn rx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let start = burst.len();
        self.inner.rx_burst(cache, burst, c);
        let rates = self.plan.rx;
        self.apply(cache, burst, start, rates, true);
        burst.len().saturating_sub(start)
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let rates = self.plan.tx;
        self.apply(cache, burst, 0, rates, false);
        self.inner.tx_burst(cache, burst, c)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        self.inner.raw_fd()
    }

    fn dead(&self) -> bool {
        self.inner.dead()
    }

    fn release(&mut self, cache: &mut PoolCache) {
        self.work.free_all(cache);
        self.inner.release(cache);
    }
}
