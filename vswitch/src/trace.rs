//! Packet tracing: the next N packets (from one port, or any) record every stage they pass, with
//! its decision, the worker and a nanosecond timestamp.
//!
//! Arming is shared: [`TraceCtl`] holds how many packets are still to be traced and from which
//! port; a worker reads that once per received burst (one relaxed load, the only cost while
//! tracing is off) and, when armed, claims packets one at a time (a compare-and-swap each, only
//! then), marks them with [`dataplane::pool::FLAG_TRACE`] and a trace id in the buffer's last
//! metadata word, and runs the burst through the stage bodies instantiated with tracing
//! (`const TRACE: bool`, as VPP's `do_trace`). Records are small `Copy` values pushed into one
//! bounded lock-free queue that the control thread drains; when it is full, records are lost and
//! counted, forwarding is never held up. Flood copies keep their original's id, so a trace shows
//! every branch of a flooded packet.

use crossbeam::queue::ArrayQueue;
use dataplane::burst::Burst;
use dataplane::pool::{Pool, FLAG_TRACE, META_WORDS};
use dataplane::port::PortId;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The metadata word that holds a traced buffer's trace id.
pub const TRACE_WORD: usize = META_WORDS - 1;
/// Records kept until the control thread collects them.
pub const RECORDS: usize = 8192;
/// Most packets one `trace add` may ask for.
pub const MAX_PACKETS: u32 = 1000;
/// `port` value meaning any port.
const ANY_PORT: u32 = u32::MAX;

/// What a stage did with a traced packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Received on `port`: its length and Ethernet header.
    Rx {
        /// Port.
        port: PortId,
        /// Frame length.
        len: u32,
        /// Destination MAC.
        dst: [u8; 6],
        /// Source MAC.
        src: [u8; 6],
        /// EtherType (the tag's TPID for a tagged frame).
        ethertype: u16,
    },
    /// Entered as a frame of `port`, after popping tag `vid` (0: untagged, no change).
    VlanIn {
        /// VID popped (0 when untagged).
        vid: u16,
        /// The (logical) port it enters the bridge on.
        port: PortId,
    },
    /// A tag was pushed for subinterface `port`; the frame leaves through `parent`.
    VlanPush {
        /// VID.
        vid: u16,
        /// The trunk.
        parent: PortId,
    },
    /// Source MAC learning.
    Learn {
        /// The source MAC.
        mac: [u8; 6],
        /// Where it was seen.
        port: PortId,
        /// What learning did (`learned`, `known`, `moved`, ...).
        result: &'static str,
    },
    /// Destination lookup.
    Lookup {
        /// The destination MAC.
        mac: [u8; 6],
        /// The port it is behind; `None` for unknown (flooded), broadcast or multicast.
        port: Option<PortId>,
    },
    /// Flooded: copies made (the original goes to one more port).
    Flood {
        /// Copies.
        copies: u16,
    },
    /// Decapsulated from VXLAN.
    Decap {
        /// VNI.
        vni: u32,
        /// Remote VTEP.
        vtep: Ipv4Addr,
        /// The tunnel port the inner frame enters the bridge on.
        tunnel: PortId,
    },
    /// Encapsulated into VXLAN.
    Encap {
        /// VNI.
        vni: u32,
        /// Remote VTEP.
        vtep: Ipv4Addr,
        /// The underlay next hop.
        hop: Ipv4Addr,
    },
    /// The underlay next hop's state when the packet needed it.
    Neigh {
        /// Next hop.
        ip: Ipv4Addr,
        /// `reachable`, `resolving (held)`, `failed`, ...
        state: &'static str,
    },
    /// Sealed in ESP.
    EspSeal {
        /// SPI.
        spi: u32,
        /// Sequence number.
        seq: u32,
    },
    /// Opened from ESP (verified and decrypted).
    EspOpen {
        /// SPI.
        spi: u32,
        /// Sequence number.
        seq: u32,
    },
    /// ARP for the underlay host.
    Arp(&'static str),
    /// Something else the underlay host did with a frame for it.
    Host(&'static str),
    /// A NAT decision: an endpoint translated.
    Nat {
        /// What was done.
        what: &'static str,
        /// The endpoint before.
        from: (Ipv4Addr, u16),
        /// The endpoint after.
        to: (Ipv4Addr, u16),
        /// The session's state after the packet.
        state: &'static str,
    },
    /// A routing decision of the gateway.
    Route(&'static str),
    /// Queued for transmission on `port`.
    Tx {
        /// Port.
        port: PortId,
    },
    /// Dropped under pipeline counter `0` (its name comes from the counter layout).
    Drop(u16),
}

/// One record: what stage `stage` did with packet `id`, on `worker`, at `ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRec {
    /// Trace id (1, 2, ... since the daemon started).
    pub id: u32,
    /// Worker.
    pub worker: u16,
    /// Nanoseconds since the trace clock's epoch.
    pub ns: u64,
    /// Stage name.
    pub stage: &'static str,
    /// What it did.
    pub what: Detail,
}

/// Tracing state shared by the control thread and every worker.
pub struct TraceCtl {
    remaining: AtomicU32,
    port: AtomicU32,
    next_id: AtomicU32,
    recs: ArrayQueue<TraceRec>,
    lost: AtomicU64,
    epoch: Instant,
}

impl Default for TraceCtl {
    fn default() -> Self {
        TraceCtl {
            remaining: AtomicU32::new(0),
            port: AtomicU32::new(ANY_PORT),
            next_id: AtomicU32::new(1),
            recs: ArrayQueue::new(RECORDS),
            lost: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl TraceCtl {
    /// Traces the next `n` packets received on `port` (any port when `None`), in addition to
    /// any still armed. Returns the number now armed.
    pub fn arm(&self, n: u32, port: Option<PortId>) -> u32 {
        self.port
            .store(port.map_or(ANY_PORT, u32::from), Ordering::Relaxed);
        let n = n.min(MAX_PACKETS);
        let prev = self.remaining.fetch_add(n, Ordering::AcqRel);
        prev.saturating_add(n)
    }

    /// Stops tracing and forgets uncollected records.
    pub fn clear(&self) {
        self.remaining.store(0, Ordering::Release);
        while self.recs.pop().is_some() {}
    }

    /// Packets still to be traced.
    pub fn remaining(&self) -> u32 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Records lost because the queue was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Moves every record collected so far into `into`.
    pub fn drain(&self, into: &mut Vec<TraceRec>) {
        while let Some(r) = self.recs.pop() {
            into.push(r);
        }
    }

    /// Whether packets are to be traced (checked once per burst).
    #[inline]
    pub fn armed(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) != 0
    }

    /// Claims one packet from `port` for tracing: its id, or `None` when the budget is spent
    /// or the port is not the one asked for.
    fn claim(&self, port: PortId) -> Option<u32> {
        let want = self.port.load(Ordering::Relaxed);
        if want != ANY_PORT && want != u32::from(port) {
            return None;
        }
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |r| r.checked_sub(1))
            .ok()?;
        Some(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A worker's handle on the shared tracing state.
pub struct Tracer {
    ctl: Arc<TraceCtl>,
}

impl Tracer {
    /// A tracer that reports to `ctl`.
    pub fn new(ctl: Arc<TraceCtl>) -> Tracer {
        Tracer { ctl }
    }

    /// The shared state.
    pub fn ctl(&self) -> &Arc<TraceCtl> {
        &self.ctl
    }

    /// Whether tracing is armed (one relaxed load).
    #[inline]
    pub fn armed(&self) -> bool {
        self.ctl.armed()
    }

    /// Marks the packets of `burst` (received on `port`) that are to be traced and records
    /// their reception; returns whether any was marked.
    pub fn mark(&mut self, pool: &Pool, burst: &mut Burst, port: PortId, worker: u16) -> bool {
        let mut any = false;
        for b in burst.bufs_mut() {
            let Some(id) = self.ctl.claim(port) else {
                break;
            };
            pool.set_flags(b, pool.flags(b) | FLAG_TRACE);
            pool.set_word(b, TRACE_WORD, id);
            let d = pool.data(b);
            let mac = |o: usize| {
                let mut m = [0u8; 6];
                if let Some(s) = d.get(o..o + 6) {
                    m.copy_from_slice(s);
                }
                m
            };
            let what = Detail::Rx {
                port,
                len: d.len() as u32,
                dst: mac(0),
                src: mac(6),
                ethertype: dataplane::wire::be16_at(d, 12).unwrap_or(0),
            };
            self.record(id, worker, "port-input", what);
            any = true;
        }
        any
    }

    /// Records what `stage` did with packet `id`.
    #[inline]
    pub fn record(&mut self, id: u32, worker: u16, stage: &'static str, what: Detail) {
        let r = TraceRec {
            id,
            worker,
            ns: self.ctl.now_ns(),
            stage,
            what,
        };
        if self.ctl.recs.push(r).is_err() {
            self.ctl.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}
