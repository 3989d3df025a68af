//! Bursts: up to [`BURST`] buffers that travel through a stage together, with a parallel array
//! of next-stage indices (VPP's `next` vector).

use crate::pool::{Buf, PoolCache};

/// Most buffers in one burst.
pub const BURST: usize = 32;

/// A burst of owned buffers. Its storage is allocated once, at construction.
pub struct Burst {
    bufs: Vec<Buf>,
    /// Per-buffer next stage or output chosen by the stage that last ran; meaning is per stage.
    pub next: [u16; BURST],
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
            next: [0; BURST],
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
        self.bufs.push(b);
        Ok(())
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
