//! Bursts: up to [`BURST`] buffers that travel through a stage together, with a parallel array
//! of next-stage indices (VPP's `next` vector).

use crate::pool::{Buf, PoolCache};

/// Where a buffer goes next: a node of the pipeline's graph and an argument for it (an output
/// port, a tunnel, a drop counter). What nodes and arguments mean is the pipeline's; the engine
/// only knows [`Next::DROP`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Next {
    /// Node index in the pipeline's graph, or [`Next::DROP`].
    pub node: u16,
    /// The node's argument.
    pub arg: u16,
}

impl Next {
    /// The node that frees a buffer and counts it under counter `arg`.
    pub const DROP: u16 = u16::MAX;

    /// To node `node` with argument `arg`.
    #[inline]
    pub const fn to(node: u16, arg: u16) -> Next {
        Next { node, arg }
    }

    /// Dropped, counted under pipeline counter `counter`.
    #[inline]
    pub const fn drop(counter: u16) -> Next {
        Next {
            node: Self::DROP,
            arg: counter,
        }
    }
}

/// Most buffers in one burst.
pub const BURST: usize = 32;

/// A burst of owned buffers. Its storage is allocated once, at construction.
pub struct Burst {
    bufs: Vec<Buf>,
    /// Per-buffer next node: set by the stage that last ran (with [`Burst::push_next`]), read by
    /// the dispatcher and, for its argument, by the node the buffer goes to.
    pub next: [Next; BURST],
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    /// An empty burst.
    pub fn new() -> Burst {
        Burst {
            bufs: Vec::with_capacity(BURST),
            next: [Next::default(); BURST],
        }
    }

    /// Buffers held.
    #[inline]
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Whether the burst holds nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Whether no more buffers fit.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.bufs.len() >= BURST
    }

    /// Room left.
    #[inline]
    pub fn room(&self) -> usize {
        BURST - self.bufs.len()
    }

    /// Adds a buffer; gives it back if the burst is full.
    #[inline]
    pub fn push(&mut self, b: Buf) -> Result<(), Buf> {
        if self.is_full() {
            return Err(b);
        }
        self.put(b);
        Ok(())
    }

    /// Appends `b`; the caller has checked that the burst is not full.
    #[inline(always)]
    fn put(&mut self, b: Buf) {
        let i = self.bufs.len();
        debug_assert!(i < BURST && self.bufs.capacity() >= BURST);
        // SAFETY: the caller checked `i < BURST`, and `bufs` was allocated with capacity
        // `BURST` in `new` and is never shrunk or replaced (bursts are swapped whole), so slot
        // `i` is allocated and unused; `set_len` then covers exactly the written elements. This
        // skips `Vec::push`'s growth path, which the compiler cannot prove dead.
        unsafe {
            self.bufs.as_mut_ptr().add(i).write(b);
            self.bufs.set_len(i + 1);
        }
    }

    /// Adds a buffer with its next node; gives it back if the burst is full.
    #[inline]
    pub fn push_next(&mut self, b: Buf, next: Next) -> Result<(), Buf> {
        let i = self.bufs.len();
        let Some(slot) = self.next.get_mut(i) else {
            return Err(b);
        };
        *slot = next;
        // `i` indexes `next`, so it is below BURST.
        self.put(b);
        Ok(())
    }

    /// The next node every buffer goes to, when they all go to the same one (the dispatcher
    /// then moves the burst whole, DPDK's "home run"; each buffer keeps its own argument);
    /// `None` when they differ or the burst is empty.
    #[inline]
    pub fn common_node(&self) -> Option<u16> {
        let n = self.next.get(..self.bufs.len())?;
        let first = n.first()?.node;
        // Without an early exit, so the compiler can vectorise it (a burst is 32 at most).
        let differ = n.iter().fold(0, |acc, x| acc | (x.node ^ first));
        (differ == 0).then_some(first)
    }

    /// Takes every buffer out with its next node, in order, leaving the burst empty.
    #[inline]
    pub fn drain_next(&mut self) -> impl Iterator<Item = (Buf, Next)> + '_ {
        let next = &self.next;
        self.bufs.drain(..).zip(next.iter().copied())
    }

    /// Removes the last buffer.
    #[inline]
    pub fn pop(&mut self) -> Option<Buf> {
        self.bufs.pop()
    }

    /// The buffers, in order.
    #[inline]
    pub fn bufs(&self) -> &[Buf] {
        &self.bufs
    }

    /// The buffers, writable.
    #[inline]
    pub fn bufs_mut(&mut self) -> &mut [Buf] {
        &mut self.bufs
    }

    /// Takes every buffer out, in order, leaving the burst empty (no allocation).
    #[inline]
    pub fn drain(&mut self) -> std::vec::Drain<'_, Buf> {
        self.bufs.drain(..)
    }

    /// Takes the first `n` buffers out (all if fewer), keeping the rest in order.
    #[inline]
    pub fn drain_front(&mut self, n: usize) -> std::vec::Drain<'_, Buf> {
        let n = n.min(self.bufs.len());
        self.bufs.drain(..n)
    }

    /// Frees every buffer held.
    pub fn free_all(&mut self, cache: &mut PoolCache) {
        for b in self.bufs.drain(..) {
            cache.free(b);
        }
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        // Buffers still held here are lost to the pool; owners free them before dropping.
        debug_assert!(
            self.bufs.is_empty() || std::thread::panicking(),
            "burst dropped holding {} buffers",
            self.bufs.len()
        );
    }
}
