//! The stage graph engine with toy stages: a graph is a list of stages, each registering its own
//! counters; adding one (here `Ttl`, between `Classify` and `Sink`) takes its own code and one
//! line in the list, and no other stage changes. Also checks the dispatcher's contract: whole
//! bursts move when they agree, mixed ones are split, extra buffers a stage emits are carried,
//! re-entry is bounded, and every buffer ends sent or counted.

use dataplane::burst::{Burst, Next, BURST};
use dataplane::counters::WorkerStats;
use dataplane::graph::{dispatch, CounterKind, CounterLayout, Counters, DropCause, Frames, Nodes};
use dataplane::named_counters;
use dataplane::pool::{Buf, Pool, PoolCache};
use std::sync::Arc;

/// What every toy stage may touch.
struct X {
    cache: PoolCache,
    stats: WorkerStats,
    /// Buffers that reached the sink, by first byte.
    sunk: Vec<u8>,
    /// Node runs, in order (to see bursts move whole).
    runs: Vec<(u16, usize)>,
    recirc: usize,
    no_frame: usize,
}

trait ToyStage {
    fn run(&mut self, x: &mut X, frames: &mut Frames, input: &mut Burst, out: &mut Burst);
}

/// Declares a toy graph: one line per stage, in rank order (as `vswitch::graph`'s list does).
macro_rules! toy_graph {
    ($($field:ident => $node:ident: $ty:ty = $init:expr,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        enum Node { $($node,)* }
        const NODES: usize = [$(Node::$node,)*].len();
        struct Graph { $($field: $ty,)* }
        impl Graph {
            fn new(layout: &mut CounterLayout) -> Graph {
                Graph { $($field: $init(layout),)* }
            }
        }
        impl Nodes<X> for Graph {
            fn run<const T: bool>(&mut self, node: u16, x: &mut X, f: &mut Frames, i: &mut Burst, o: &mut Burst) {
                x.runs.push((node, i.len()));
                $(if node == Node::$node as u16 { return self.$field.run(x, f, i, o); })*
            }
            fn drop<const T: bool>(&mut self, x: &mut X, b: Buf, why: DropCause) {
                let c = match why {
                    DropCause::Counter(c) => usize::from(c),
                    DropCause::Recirculation => x.recirc,
                    DropCause::NoFrame => x.no_frame,
                };
                x.stats.pipeline.at(c).inc();
                x.cache.free(b);
            }
        }
    };
}

named_counters! {
    /// Classifier drops.
    enum ClassifyDrop {
        /// Empty frame.
        Empty => "toy_empty",
    }
}

named_counters! {
    /// TTL stage drops.
    enum TtlDrop {
        /// Second byte reached zero.
        Expired => "toy_ttl_expired",
    }
}

named_counters! {
    /// Graph drops.
    enum GraphDrop {
        /// Re-entry limit.
        Recirc => "toy_recirculation",
        /// No burst free.
        NoFrame => "toy_no_frame",
    }
}

/// Sends frames whose first byte is even to the TTL stage, odd ones straight to the sink, and
/// makes a copy of frames starting with 0xCB.
struct Classify {
    drops: Counters<ClassifyDrop>,
}

impl ToyStage for Classify {
    fn run(&mut self, x: &mut X, frames: &mut Frames, input: &mut Burst, out: &mut Burst) {
        let pool = x.cache.pool().clone();
        for (b, _) in input.drain_next() {
            let Some(&first) = pool.data(&b).first() else {
                let _ = out.push_next(b, self.drops.drop(ClassifyDrop::Empty));
                continue;
            };
            if first == 0xCB {
                let c = x.cache.clone_buf(&b).unwrap();
                frames.emit(c, Next::to(Node::Sink as u16, 0)).unwrap();
            }
            let next = if first % 2 == 0 {
                Node::Ttl
            } else {
                Node::Sink
            };
            let _ = out.push_next(b, Next::to(next as u16, 0));
        }
    }
}

/// Decrements the second byte; at zero the frame is dropped; above 1 it goes round again
/// through the classifier (an edge back: a re-entry).
struct Ttl {
    drops: Counters<TtlDrop>,
}

impl ToyStage for Ttl {
    fn run(&mut self, x: &mut X, _frames: &mut Frames, input: &mut Burst, out: &mut Burst) {
        let pool = x.cache.pool().clone();
        for (mut b, _) in input.drain_next() {
            let d = pool.data_mut(&mut b);
            let ttl = d.get(1).copied().unwrap_or(0);
            let next = match ttl {
                0 | 1 => self.drops.drop(TtlDrop::Expired),
                2 => Next::to(Node::Sink as u16, 0),
                _ => Next::to(Node::Classify as u16, 0),
            };
            if let Some(t) = d.get_mut(1) {
                *t = ttl.saturating_sub(1);
            }
            let _ = out.push_next(b, next);
        }
    }
}

struct Sink;

impl ToyStage for Sink {
    fn run(&mut self, x: &mut X, _frames: &mut Frames, input: &mut Burst, _out: &mut Burst) {
        for (b, _) in input.drain_next() {
            let first = x.cache.pool().data(&b).first().copied().unwrap_or(0);
            x.sunk.push(first);
            x.cache.free(b);
        }
    }
}

toy_graph! {
    classify => Classify: Classify = |l: &mut CounterLayout| Classify { drops: l.register("toy-classify", CounterKind::Drop) },
    ttl => Ttl: Ttl = |l: &mut CounterLayout| Ttl { drops: l.register("toy-ttl", CounterKind::Drop) },
    sink => Sink: Sink = |_: &mut CounterLayout| Sink,
}

fn setup() -> (Graph, X, Frames, CounterLayout) {
    let pool: Arc<Pool> = Pool::new(512).unwrap();
    let mut layout = CounterLayout::new();
    let g: Counters<GraphDrop> = layout.register("toy-graph", CounterKind::Drop);
    let graph = Graph::new(&mut layout);
    let x = X {
        cache: PoolCache::new(pool),
        stats: WorkerStats::new(layout.len(), 4),
        sunk: Vec::new(),
        runs: Vec::new(),
        recirc: g.index(GraphDrop::Recirc),
        no_frame: g.index(GraphDrop::NoFrame),
    };
    (graph, x, Frames::new(NODES, 16), layout)
}

fn burst(x: &mut X, frames: &[&[u8]]) -> Burst {
    let mut b = Burst::new();
    for f in frames {
        let mut buf = x.cache.alloc().unwrap();
        assert!(x.cache.pool().fill(&mut buf, f));
        b.push_next(buf, Next::to(Node::Classify as u16, 0))
            .unwrap();
    }
    b
}

fn count(x: &X, layout: &CounterLayout, name: &str) -> u64 {
    x.stats.pipeline.at(layout.index_of(name).unwrap()).get()
}

#[test]
fn stages_register_their_counters_in_list_order() {
    let (_, _, _, layout) = setup();
    let names: Vec<(&str, &str)> = layout.entries().iter().map(|e| (e.stage, e.name)).collect();
    assert_eq!(
        names,
        [
            ("toy-graph", "toy_recirculation"),
            ("toy-graph", "toy_no_frame"),
            ("toy-classify", "toy_empty"),
            ("toy-ttl", "toy_ttl_expired"),
        ]
    );
}

#[test]
fn a_burst_that_agrees_moves_whole_and_a_mixed_one_is_split() {
    let (mut graph, mut x, mut frames, _) = setup();
    let frames_odd: Vec<[u8; 2]> = (0..BURST as u8).map(|i| [2 * i + 1, 9]).collect();
    let refs: Vec<&[u8]> = frames_odd.iter().map(|f| &f[..]).collect();
    let mut b = burst(&mut x, &refs);
    frames.enqueue(Node::Classify as u16, &mut b, |_, _| panic!("no room"));
    assert!(b.is_empty());
    dispatch::<_, _, false>(&mut graph, &mut x, &mut frames, 4);
    // One run of each node, with the whole burst.
    assert_eq!(x.runs, [(0, BURST), (2, BURST)]);
    assert_eq!(x.sunk.len(), BURST);

    x.runs.clear();
    x.sunk.clear();
    let mut b = burst(&mut x, &[&[1, 9], &[2, 2], &[3, 9], &[4, 2]]);
    frames.enqueue(Node::Classify as u16, &mut b, |_, _| panic!("no room"));
    dispatch::<_, _, false>(&mut graph, &mut x, &mut frames, 4);
    assert_eq!(x.runs, [(0, 4), (1, 2), (2, 4)]);
    // Order is kept within each path.
    assert_eq!(x.sunk, [1, 3, 2, 4]);
}

#[test]
fn extra_buffers_are_carried_reentry_is_bounded_and_every_buffer_is_accounted_for() {
    let (mut graph, mut x, mut frames, layout) = setup();
    let before = x.cache.pool().available() + x.cache.cached();
    // 0xCB is copied; [6, 3] goes round once (TTL 3 -> 2 -> sink); [8, 200] loops until the
    // pass limit; [10, 1] expires; the empty frame is dropped by the classifier.
    let mut b = burst(&mut x, &[&[0xCB, 9], &[6, 3], &[8, 200], &[10, 1], &[]]);
    frames.enqueue(Node::Classify as u16, &mut b, |_, _| panic!("no room"));
    dispatch::<_, _, false>(&mut graph, &mut x, &mut frames, 3);
    x.sunk.sort_unstable();
    assert_eq!(x.sunk, [6, 0xCB, 0xCB]);
    assert_eq!(count(&x, &layout, "toy_empty"), 1);
    assert_eq!(count(&x, &layout, "toy_ttl_expired"), 1);
    assert_eq!(count(&x, &layout, "toy_recirculation"), 1);
    assert_eq!(count(&x, &layout, "toy_no_frame"), 0);
    assert!(!frames.busy());
    assert_eq!(x.cache.pool().available() + x.cache.cached(), before);
}
