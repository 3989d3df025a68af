//! Per-worker counters: single writer (the worker), many readers (the control thread).
//!
//! Concurrency contract: only the owning worker writes a counter, with a relaxed load and store
//! (no locked read-modify-write on the hot path); the control thread reads with relaxed loads and
//! sums over workers. Each worker's block is cache-line aligned so workers never share a line.

use std::sync::atomic::{AtomicU64, Ordering};

/// One counter.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this (single writer).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Sets the value (a gauge). Only the owning worker may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Declares an enum of named counters: a `COUNT`, an `ALL` list and a `name()` per variant,
/// generated once from one list (as VPP's `foreach_..._error` lists are).
#[macro_export]
macro_rules! named_counters {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[doc = $d:literal])* $var:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        $vis enum $name { $($(#[doc = $d])* $var,)* }
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];
            /// Number of variants.
            pub const COUNT: usize = Self::ALL.len();
            /// The counter's name as users see it.
            pub const fn name(self) -> &'static str {
                match self { $($name::$var => $s,)* }
            }
        }
        impl $crate::graph::NamedCounters for $name {
            const ALL: &'static [$name] = $name::ALL;
            #[inline]
            fn name(self) -> &'static str {
                $name::name(self)
            }
            #[inline]
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// A fixed block of counters indexed by a [`named_counters!`] enum.
#[repr(align(64))]
pub struct CounterBlock {
    vals: Box<[Counter]>,
}

impl CounterBlock {
    /// A block of `n` zeroed counters.
    pub fn new(n: usize) -> CounterBlock {
        CounterBlock {
            vals: (0..n).map(|_| Counter::default()).collect(),
        }
    }

    /// Counter `i`; an out-of-range index (a programming error) lands on a scratch counter.
    #[inline]
    pub fn at(&self, i: usize) -> &Counter {
        static SCRATCH: Counter = Counter(AtomicU64::new(0));
        self.vals.get(i).unwrap_or(&SCRATCH)
    }

    /// Number of counters.
    pub fn len(&self) -> usize {
        self.vals.len()
    }

    /// Whether the block is empty.
    pub fn is_empty(&self) -> bool {
        self.vals.is_empty()
    }
}

/// Counters of one port on one worker.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct PortCounters {
    /// Frames received from the port.
    pub rx_packets: Counter,
    /// Bytes received from the port.
    pub rx_bytes: Counter,
    /// Frames the port accepted for transmission.
    pub tx_packets: Counter,
    /// Bytes the port accepted for transmission.
    pub tx_bytes: Counter,
    /// Frames the port refused (queue full, device gone); they are freed.
    pub tx_dropped: Counter,
    /// Frames lost on receive (too large for a buffer, read error).
    pub rx_errors: Counter,
    /// Frames dropped because the offload work they carried could not be done in software for
    /// a port without offloads (malformed super-frame, no buffers for its segments).
    pub tx_offload_dropped: Counter,
    /// TCP super-frames cut into segments in software for a port without offloads.
    pub tx_segmented: Counter,
    /// UDP super-frames written to a TAP with UDP segmentation offload, each made of several
    /// datagrams of a transmit burst ([`crate::gro::udp_segment`]).
    pub tx_uso_merged: Counter,
    /// Received frames whose partial TCP/UDP checksum (left by a local stack with transmit
    /// checksum offload, on a veth) was completed.
    pub rx_csum_completed: Counter,
    /// Set to 1 when the device behind a queue of the port went away under it (a TAP deleted:
    /// reads fail with EBADFD); that queue is no longer read or written.
    pub device_gone: Counter,
}

named_counters! {
    /// Events of the worker loop itself.
    pub enum WorkerEvent {
        /// Loop iterations.
        Loops => "loops",
        /// Loop iterations that received nothing.
        IdleLoops => "idle_loops",
        /// Times the worker slept on its ports' descriptors.
        Sleeps => "sleeps",
        /// Configuration snapshots applied.
        ConfigApplied => "config_applied",
        /// Nanoseconds spent in loop iterations that moved frames (threaded workers only).
        BusyNs => "busy_ns",
        /// Nanoseconds spent polling empty queues, yielding or asleep (threaded workers only).
        IdleNs => "idle_ns",
    }
}

/// Gauges a pipeline may publish per worker (table sizes): their meaning is the pipeline's.
pub const GAUGES: usize = 8;

/// Everything one worker counts; shared read-only with the control thread.
pub struct WorkerStats {
    /// Worker-loop events, indexed by [`WorkerEvent`].
    pub worker: CounterBlock,
    /// Pipeline counters (drops and events), indexed by the pipeline's own enum.
    pub pipeline: CounterBlock,
    /// Per-port counters, indexed by port id.
    pub ports: Box<[PortCounters]>,
    /// Gauges (set, not added), indexed by the pipeline's own list; [`GAUGES`] of them.
    pub gauges: CounterBlock,
}

impl WorkerStats {
    /// Counters for `pipeline_counters` pipeline counters and `max_ports` ports.
    pub fn new(pipeline_counters: usize, max_ports: usize) -> WorkerStats {
        WorkerStats {
            worker: CounterBlock::new(WorkerEvent::COUNT),
            pipeline: CounterBlock::new(pipeline_counters),
            ports: (0..max_ports).map(|_| PortCounters::default()).collect(),
            gauges: CounterBlock::new(GAUGES),
        }
    }

    /// Port `id`'s counters (a scratch block for an out-of-range id).
    #[inline]
    pub fn port(&self, id: u16) -> &PortCounters {
        static SCRATCH: PortCounters = PortCounters {
            rx_packets: Counter(AtomicU64::new(0)),
            rx_bytes: Counter(AtomicU64::new(0)),
            tx_packets: Counter(AtomicU64::new(0)),
            tx_bytes: Counter(AtomicU64::new(0)),
            tx_dropped: Counter(AtomicU64::new(0)),
            rx_errors: Counter(AtomicU64::new(0)),
            tx_offload_dropped: Counter(AtomicU64::new(0)),
            tx_segmented: Counter(AtomicU64::new(0)),
            tx_uso_merged: Counter(AtomicU64::new(0)),
            rx_csum_completed: Counter(AtomicU64::new(0)),
            device_gone: Counter(AtomicU64::new(0)),
        };
        self.ports.get(id as usize).unwrap_or(&SCRATCH)
    }

    /// Worker event counter.
    #[inline]
    pub fn event(&self, e: WorkerEvent) -> &Counter {
        self.worker.at(e as usize)
    }
}
