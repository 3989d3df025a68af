//! The stage graph: a pipeline is a set of nodes (stages), each a function over a burst that
//! decides, per buffer, the next node; the dispatcher moves buffers between nodes in bursts (VPP's
//! node graph and next vectors, DPDK's graph library).
//!
//! How it runs: a received burst enters its entry node's queue of pending bursts
//! ([`Frames::enqueue`]). [`dispatch`] visits the nodes in rank order (their index), runs each on
//! every burst pending for it, and moves what the node emitted on: when every buffer of the
//! node's output names the same next node (the usual case) the output burst moves whole, a swap
//! of two `Burst` values; otherwise each buffer is appended to the pending burst of its own next
//! node. A node may also emit buffers beyond its input (a flood's copies, a super-frame's
//! segments, frames released by a resolved neighbour) with [`Frames::emit`]. Buffers sent to
//! [`Next::DROP`] are handed to the pipeline's drop handler at once, with the counter the stage
//! named.
//!
//! Edges normally point forward (to a higher rank), so one sweep finishes a burst. An edge back
//! (re-entry: decapsulated frames into the bridge, later routed frames into it) is processed in
//! a further sweep; sweeps are bounded by `max_passes` (OVS bounds recirculation the same way),
//! and whatever is still pending after the last one is dropped under the pipeline's recirculation
//! counter.
//!
//! Memory: every burst the graph uses comes from a free list allocated once ([`Frames::new`]);
//! when it runs dry (only a pathological flood fan-out could do that) [`Frames::emit`] gives the
//! buffer back for the caller to drop and count.
//!
//! Counters: each stage registers its named drop and event counters in a [`CounterLayout`] when
//! the pipeline is built and keeps the returned [`Counters`] handle (a base offset into the
//! worker's pipeline counter block); nothing sums offsets by hand, and the control plane reads
//! the names back from the same layout.

use crate::burst::{Burst, Next, BURST};
use crate::counters::{Counter, WorkerStats};
use crate::pool::{Buf, PoolCache};
use std::borrow::BorrowMut;
use std::marker::PhantomData;

/// The pending bursts of every node and the free bursts they are taken from. Bursts are boxed
/// (allocated once, in [`Frames::new`]) so that moving one between lists, or a node's whole
/// output on to the next node, moves a pointer, not the burst's 150-odd bytes.
// Boxes inside vectors on purpose (see above): clippy's `vec_box` assumes elements are not moved.
#[allow(clippy::vec_box)]
pub struct Frames {
    pending: Box<[Vec<Box<Burst>>]>,
    free: Vec<Box<Burst>>,
    /// Swapped with a node's pending list while the node runs (so that what it emits to
    /// itself waits for the next sweep), keeping its capacity.
    spare: Vec<Box<Burst>>,
    /// A node's output (scratch, empty between nodes); taken out while [`dispatch`] runs.
    out: Option<Box<Burst>>,
}

impl Frames {
    /// Frames for a graph of `nodes` nodes with `bursts` bursts in all (allocated here, once).
    pub fn new(nodes: usize, bursts: usize) -> Frames {
        Frames {
            pending: (0..nodes).map(|_| Vec::with_capacity(bursts)).collect(),
            free: (0..bursts).map(|_| Box::new(Burst::new())).collect(),
            spare: Vec::with_capacity(bursts),
            out: Some(Box::new(Burst::new())),
        }
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.pending.len()
    }

    /// Appends `b` to the pending bursts of `next.node`, remembering `next`. Gives `b` back
    /// when the node does not exist or no burst is free; the caller drops it.
    #[inline]
    pub fn emit(&mut self, b: Buf, next: Next) -> Result<(), Buf> {
        let Some(list) = self.pending.get_mut(next.node as usize) else {
            return Err(b);
        };
        if list.last().is_none_or(|l| l.is_full()) {
            match self.free.pop() {
                Some(f) => list.push(f),
                None => return Err(b),
            }
        }
        match list.last_mut() {
            Some(l) => l.push_next(b, next),
            None => Err(b),
        }
    }

    /// Puts `b` (going to `next`) on a stage's output `out`, keeping the order when `out` is
    /// full (a stage that turns one frame into many): what `out` holds is emitted first, then
    /// `b` goes on the emptied `out`. (After the stage, [`dispatch`] moves `out` behind what the
    /// stage emitted; emitting `b` alone would put it ahead of `out`.) `dropped` gets the
    /// buffers no pending burst was free for.
    #[inline]
    pub fn push_in_order(
        &mut self,
        out: &mut Burst,
        b: Buf,
        next: Next,
        mut dropped: impl FnMut(Buf),
    ) {
        let Err(b) = out.push_next(b, next) else {
            return;
        };
        for (o, n) in out.drain_next() {
            if let Err(o) = self.emit(o, n) {
                dropped(o);
            }
        }
        if let Err(b) = out.push_next(b, next) {
            dropped(b);
        }
    }

    /// Moves the whole of `burst` (whose buffers all go to `node`) to that node's pending list,
    /// leaving `burst` empty: appended to the last pending burst when that has room, else its
    /// contents trade places with a free burst's. Falls back to per-buffer [`Frames::emit`]
    /// when no burst is free; buffers that still find no room come back through `dropped`.
    #[inline]
    pub fn enqueue(&mut self, node: u16, burst: &mut Burst, dropped: impl FnMut(Buf, Next)) {
        self.enqueue_with(node, burst, dropped, |fresh, burst| {
            std::mem::swap(&mut **fresh, burst)
        });
    }

    /// [`Frames::enqueue`] of a boxed burst: a whole move trades the boxes.
    #[inline]
    fn enqueue_box(&mut self, node: u16, burst: &mut Box<Burst>, dropped: impl FnMut(Buf, Next)) {
        self.enqueue_with(node, burst, dropped, std::mem::swap);
    }

    #[inline(always)]
    fn enqueue_with<B: BorrowMut<Burst>>(
        &mut self,
        node: u16,
        burst: &mut B,
        mut dropped: impl FnMut(Buf, Next),
        trade: impl FnOnce(&mut Box<Burst>, &mut B),
    ) {
        let burst_ref: &mut Burst = burst.borrow_mut();
        if burst_ref.is_empty() {
            return;
        }
        let Some(list) = self.pending.get_mut(node as usize) else {
            for (b, n) in burst_ref.drain_next() {
                dropped(b, n);
            }
            return;
        };
        // Appended to the node's last pending burst when it fits (fewer, fuller runs of the
        // node), else moved whole.
        let len = burst_ref.len();
        if let Some(last) = list.last_mut().filter(|l| l.room() >= len) {
            for (b, n) in burst_ref.drain_next() {
                if let Err(b) = last.push_next(b, n) {
                    dropped(b, n);
                }
            }
            return;
        }
        if let Some(mut fresh) = self.free.pop() {
            trade(&mut fresh, burst);
            list.push(fresh);
            return;
        }
        let burst_ref: &mut Burst = burst.borrow_mut();
        for (b, n) in burst_ref.drain_next() {
            if let Err(b) = self.emit(b, n) {
                dropped(b, n);
            }
        }
    }

    /// Whether any node has work pending.
    pub fn busy(&self) -> bool {
        self.pending.iter().any(|l| !l.is_empty())
    }

    #[inline]
    fn recycle(&mut self, b: Box<Burst>) {
        debug_assert!(b.is_empty());
        self.free.push(b);
    }
}

/// A pipeline's nodes, run by [`dispatch`]. `X` is what every node may touch during one dispatch
/// (the worker's context, the configuration, shared services).
pub trait Nodes<X> {
    /// Runs node `node` over `input` (which it must empty), pushing what goes on into `out`
    /// with [`Burst::push_next`] and anything beyond its input with [`Frames::emit`]. With
    /// `TRACE`, traced buffers record what the node did.
    fn run<const TRACE: bool>(
        &mut self,
        node: u16,
        x: &mut X,
        frames: &mut Frames,
        input: &mut Burst,
        out: &mut Burst,
    );

    /// Frees `b` and counts it: `next.arg` is the counter a stage named, or `recirc` when the
    /// pass limit was reached, or `no_frame` when the graph had no burst left for it.
    fn drop<const TRACE: bool>(&mut self, x: &mut X, b: Buf, why: DropCause);
}

/// Why the dispatcher drops a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// A stage sent it to [`Next::DROP`] with this pipeline counter.
    Counter(u16),
    /// Still pending after the last sweep allowed.
    Recirculation,
    /// No free burst to carry it.
    NoFrame,
}

/// Runs every pending burst through the graph: at most `max_passes` sweeps over the nodes in
/// rank order.
pub fn dispatch<X, N: Nodes<X>, const TRACE: bool>(
    nodes: &mut N,
    x: &mut X,
    frames: &mut Frames,
    max_passes: u32,
) {
    // Only a nested dispatch (which nothing does) could find it gone.
    let Some(mut out) = frames.out.take() else {
        return;
    };
    for _ in 0..max_passes {
        for node in 0..frames.nodes() {
            if frames.pending.get(node).is_none_or(|l| l.is_empty()) {
                continue;
            }
            // The node's list is swapped out, so what it emits to itself waits for the next
            // sweep instead of growing the list being walked.
            let mut list = std::mem::take(&mut frames.spare);
            std::mem::swap(&mut list, &mut frames.pending[node]);
            for mut input in list.drain(..) {
                nodes.run::<TRACE>(node as u16, x, frames, &mut input, &mut out);
                // A node that left buffers behind broke its contract; they must not leak.
                for (b, _) in input.drain_next() {
                    nodes.drop::<TRACE>(x, b, DropCause::Recirculation);
                }
                frames.recycle(input);
                scatter::<X, N, TRACE>(nodes, x, frames, &mut out);
            }
            frames.spare = list;
        }
        if !frames.busy() {
            frames.out = Some(out);
            return;
        }
    }
    frames.out = Some(out);
    for node in 0..frames.nodes() {
        let mut list = std::mem::take(&mut frames.pending[node]);
        for mut burst in list.drain(..) {
            for (b, _) in burst.drain_next() {
                nodes.drop::<TRACE>(x, b, DropCause::Recirculation);
            }
            frames.recycle(burst);
        }
        frames.pending[node] = list;
    }
}

/// Moves a node's output on: whole when it agrees on its next node, else buffer by buffer.
#[inline]
fn scatter<X, N: Nodes<X>, const TRACE: bool>(
    nodes: &mut N,
    x: &mut X,
    frames: &mut Frames,
    out: &mut Box<Burst>,
) {
    match out.common_node() {
        None => {}
        Some(Next::DROP) => {
            for (b, n) in out.drain_next() {
                nodes.drop::<TRACE>(x, b, DropCause::Counter(n.arg));
            }
        }
        Some(node) => frames.enqueue_box(node, out, |b, _| {
            nodes.drop::<TRACE>(x, b, DropCause::NoFrame)
        }),
    }
    if out.is_empty() {
        return;
    }
    for (b, n) in out.drain_next() {
        if n.node == Next::DROP {
            nodes.drop::<TRACE>(x, b, DropCause::Counter(n.arg));
        } else if let Err(b) = frames.emit(b, n) {
            nodes.drop::<TRACE>(x, b, DropCause::NoFrame);
        }
    }
}

/// Enough bursts for a graph of `nodes` nodes to fan a full burst out to every port of a large
/// network (a flood of 32 frames to 64 ports is 64 bursts) with room to spare.
pub const fn default_bursts(nodes: usize) -> usize {
    nodes * 4 + 2 * BURST * 2
}

/// A set of named counters (implemented by [`crate::named_counters!`]).
pub trait NamedCounters: Copy + 'static {
    /// Every variant, in order.
    const ALL: &'static [Self];
    /// The counter's name as users see it.
    fn name(self) -> &'static str;
    /// The variant's position in [`NamedCounters::ALL`].
    fn index(self) -> usize;
}

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// Frames dropped (each frame under one reason).
    Drop,
    /// Things that happened (not drops).
    Event,
}

/// One registered counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterInfo {
    /// The stage that registered it.
    pub stage: &'static str,
    /// Its name.
    pub name: &'static str,
    /// Drop or event.
    pub kind: CounterKind,
}

/// The pipeline's counter block layout, built by the stages registering their counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterLayout {
    entries: Vec<CounterInfo>,
}

impl CounterLayout {
    /// An empty layout.
    pub fn new() -> CounterLayout {
        CounterLayout::default()
    }

    /// Registers every counter of `E` for `stage`; the handle indexes them in a worker's block.
    pub fn register<E: NamedCounters>(
        &mut self,
        stage: &'static str,
        kind: CounterKind,
    ) -> Counters<E> {
        let base = self.entries.len();
        self.entries.extend(E::ALL.iter().map(|e| CounterInfo {
            stage,
            name: e.name(),
            kind,
        }));
        Counters {
            base,
            _e: PhantomData,
        }
    }

    /// Counters registered, in block order.
    pub fn entries(&self) -> &[CounterInfo] {
        &self.entries
    }

    /// Size of the block.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Index of the counter named `name` (names are unique across stages).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.name == name)
    }
}

/// A stage's handle on its counters: where they start in the worker's pipeline block.
pub struct Counters<E> {
    base: usize,
    _e: PhantomData<fn() -> E>,
}

impl<E> Clone for Counters<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Counters<E> {}

impl<E: NamedCounters> Counters<E> {
    /// Counter `e` of this worker.
    #[inline]
    pub fn get(self, stats: &WorkerStats, e: E) -> &Counter {
        stats.pipeline.at(self.base + e.index())
    }

    /// Adds one to counter `e`.
    #[inline]
    pub fn inc(self, stats: &WorkerStats, e: E) {
        self.get(stats, e).inc();
    }

    /// The block index of counter `e` (a drop's [`Next::drop`] argument).
    #[inline]
    pub fn index(self, e: E) -> usize {
        self.base + e.index()
    }

    /// [`Next::drop`] for counter `e`.
    #[inline]
    pub fn drop(self, e: E) -> Next {
        // Blocks are far smaller than 65536 counters (checked when the layout is built).
        Next::drop((self.base + e.index()) as u16)
    }
}

/// Frees `b` into `cache` and counts it in `stats` under block counter `counter`.
#[inline]
pub fn free_counted(cache: &mut PoolCache, stats: &WorkerStats, b: Buf, counter: usize) {
    stats.pipeline.at(counter).inc();
    cache.free(b);
}
