//! Typed hand-off rings between workers: a bounded single-producer single-consumer ring of
//! `Copy` items with burst operations, one acquire/release pair per burst, not per item (DPDK's
//! rte_ring bulk mode, SPSC flavour). Carries buffers ([`crate::ring`] is built on it), and any
//! small record a feature hands to another worker with them (a buffer and a session id, a
//! sighting).
//!
//! Concurrency contract: exactly one [`Sender`] and one [`Receiver`] exist per ring (neither is
//! `Clone`). The sender writes slots then publishes `tail` with a release store; the receiver
//! reads `tail` with an acquire load, reads slots, then publishes `head` with a release store.
//! Items left in the ring when both halves are gone are handed to the ring's leftover function
//! (buffers go back to their pool), by whichever half drops last.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What becomes of items still in a ring when it goes.
pub type Leftover<T> = Box<dyn Fn(T) + Send + Sync>;

struct Shared<T: Copy> {
    slots: Box<[UnsafeCell<T>]>,
    mask: usize,
    head: crossbeam::utils::CachePadded<AtomicUsize>,
    tail: crossbeam::utils::CachePadded<AtomicUsize>,
    leftover: Option<Leftover<T>>,
}

// SAFETY: a slot is written only by the sender while it lies outside [head, tail) and read only
// by the receiver while inside it; the release/acquire pairs on head and tail order those
// accesses. Items are `Send`, so moving them between the two threads is sound.
unsafe impl<T: Copy + Send> Sync for Shared<T> {}
// SAFETY: see `Sync`.
unsafe impl<T: Copy + Send> Send for Shared<T> {}

impl<T: Copy> Drop for Shared<T> {
    fn drop(&mut self) {
        let Some(f) = &self.leftover else { return };
        let (head, tail) = (*self.head.get_mut(), *self.tail.get_mut());
        let mut i = head;
        while i != tail {
            f(*self.slots[i & self.mask].get_mut());
            i = i.wrapping_add(1);
        }
    }
}

/// The sending half.
pub struct Sender<T: Copy> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub struct Receiver<T: Copy> {
    shared: Arc<Shared<T>>,
}

/// A ring with room for at least `capacity` items (`fill` initialises the slots); items still
/// in it when both halves are gone go to `leftover`.
pub fn handoff<T: Copy + Send>(
    capacity: usize,
    fill: T,
    leftover: Option<Leftover<T>>,
) -> (Sender<T>, Receiver<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let shared = Arc::new(Shared {
        slots: (0..cap).map(|_| UnsafeCell::new(fill)).collect(),
        mask: cap - 1,
        head: Default::default(),
        tail: Default::default(),
        leftover,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T: Copy + Send> Sender<T> {
    /// Room for this many more items now.
    #[inline]
    pub fn room(&self) -> usize {
        let s = &*self.shared;
        let tail = s.tail.load(Ordering::Relaxed);
        s.slots.len() - tail.wrapping_sub(s.head.load(Ordering::Acquire))
    }

    /// Pushes up to `n` items (fewer when the ring fills or `next` runs out), in order, taking
    /// each from `next()`; returns how many were pushed. One publication for all of them.
    #[inline]
    pub fn push_with(&mut self, n: usize, mut next: impl FnMut() -> Option<T>) -> usize {
        let s = &*self.shared;
        let tail = s.tail.load(Ordering::Relaxed);
        let head = s.head.load(Ordering::Acquire);
        let room = s.slots.len() - tail.wrapping_sub(head);
        let mut i = tail;
        for _ in 0..room.min(n) {
            let Some(item) = next() else { break };
            // SAFETY: slot `i` is outside [head, tail) (there is room), so the receiver does
            // not read it until the release store of `tail` below; `i & mask` is below
            // `slots.len()`, which is `mask + 1` (a power of two, fixed at construction).
            unsafe { *s.slots.get_unchecked(i & s.mask).get() = item };
            i = i.wrapping_add(1);
        }
        s.tail.store(i, Ordering::Release);
        i.wrapping_sub(tail)
    }

    /// Pushes as many of `items` as fit, in order; returns how many.
    #[inline]
    pub fn push_slice(&mut self, items: &[T]) -> usize {
        let mut it = items.iter().copied();
        self.push_with(items.len(), || it.next())
    }

    /// Pushes one item; gives it back if the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        let mut once = Some(item);
        if self.push_with(1, || once.take()) == 1 {
            Ok(())
        } else {
            Err(item)
        }
    }
}

impl<T: Copy + Send> Receiver<T> {
    /// Pops up to `max` items, in order, handing each to `f`; returns how many. One publication
    /// for all of them.
    #[inline]
    pub fn pop_with(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let s = &*self.shared;
        let head = s.head.load(Ordering::Relaxed);
        let tail = s.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(max);
        for k in 0..n {
            let i = head.wrapping_add(k);
            // SAFETY: slot `i` lies in [head, tail), published by the sender's release store
            // that our acquire load of `tail` observed; `i & mask` is below `slots.len()`
            // (`mask + 1`, fixed at construction).
            f(unsafe { *s.slots.get_unchecked(i & s.mask).get() });
        }
        s.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Pops one item.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let mut out = None;
        self.pop_with(1, |t| out = Some(t));
        out
    }

    /// Items waiting.
    #[inline]
    pub fn len(&self) -> usize {
        let s = &*self.shared;
        s.tail
            .load(Ordering::Acquire)
            .wrapping_sub(s.head.load(Ordering::Relaxed))
    }

    /// Whether nothing waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn bursts_keep_order_and_stop_at_capacity() {
        let (mut tx, mut rx) = handoff::<(u32, u16)>(4, (0, 0), None);
        let items: Vec<(u32, u16)> = (0..6).map(|i| (i, i as u16 * 10)).collect();
        assert_eq!(tx.push_slice(&items), 4);
        assert_eq!(tx.push((9, 9)), Err((9, 9)));
        let mut got = Vec::new();
        assert_eq!(rx.pop_with(3, |t| got.push(t)), 3);
        assert_eq!(got, items[..3]);
        assert_eq!(tx.push_slice(&items[4..]), 2);
        assert_eq!(rx.len(), 3);
        got.clear();
        while let Some(t) = rx.pop() {
            got.push(t);
        }
        assert_eq!(got, [items[3], items[4], items[5]]);
    }

    #[test]
    fn items_left_behind_go_to_the_leftover_function_once() {
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let (mut tx, rx) = handoff::<u64>(
            8,
            0,
            Some(Box::new(move |v| {
                s.fetch_add(v, Ordering::Relaxed);
            })),
        );
        tx.push_slice(&[1, 2, 4]);
        drop(rx);
        assert_eq!(
            seen.load(Ordering::Relaxed),
            0,
            "the sender still holds the ring"
        );
        drop(tx);
        assert_eq!(seen.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn a_million_items_cross_threads_in_order() {
        let (mut tx, mut rx) = handoff::<u64>(256, 0, None);
        let n = 1_000_000u64;
        let t = std::thread::spawn(move || {
            let mut next = 0u64;
            while next < n {
                let mut v = next;
                let pushed = tx.push_with(32, || {
                    let x = v;
                    v += 1;
                    (x < n).then_some(x)
                });
                next += pushed as u64;
            }
        });
        let mut expect = 0u64;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while expect < n && std::time::Instant::now() < deadline {
            rx.pop_with(64, |v| {
                assert_eq!(v, expect);
                expect += 1;
            });
        }
        t.join().unwrap();
        assert_eq!(expect, n);
    }
}
