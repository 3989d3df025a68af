//! An in-memory port pair (like OVS's netdev-dummy or VPP's packet generator): the worker holds
//! a [`MemPort`], a test or benchmark holds the [`MemPeer`] and injects and collects frames.

use super::Port;
use crate::burst::Burst;
use crate::counters::PortCounters;
use crate::pool::{Pool, PoolCache};
use crate::ring::{ring, Consumer, Producer};
use std::os::fd::RawFd;
use std::sync::Arc;

/// The worker's end.
pub struct MemPort {
    rx: Consumer,
    tx: Producer,
    /// What the port says it transmits (default: finished frames only).
    caps: crate::swoffload::TxCaps,
}

/// The test's end: what it sends arrives on the port's receive side; what the port transmits
/// waits here.
pub struct MemPeer {
    tx: Producer,
    rx: Consumer,
}

/// A connected pair whose rings hold `capacity` buffers each way.
pub fn pair(pool: Arc<Pool>, capacity: usize) -> (MemPort, MemPeer) {
    let (to_port, port_rx) = ring(pool.clone(), capacity);
    let (port_tx, to_peer) = ring(pool, capacity);
    (
        MemPort {
            rx: port_rx,
            tx: port_tx,
            caps: crate::swoffload::TxCaps::Plain,
        },
        MemPeer {
            tx: to_port,
            rx: to_peer,
        },
    )
}

impl MemPort {
    /// Makes the port take what a port with `caps` takes (e.g. offload work, as a TAP with
    /// virtio-net headers would): tests see the frames with their offload facts.
    #[must_use]
    pub fn with_caps(mut self, caps: crate::swoffload::TxCaps) -> MemPort {
        self.caps = caps;
        self
    }

    /// What the port transmits.
    pub fn caps(&self) -> crate::swoffload::TxCaps {
        self.caps
    }
}

impl Port for MemPort {
    #[inline]
    fn rx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let start = burst.len();
        let n = self.rx.pop_burst(burst);
        let pool = cache.pool();
        let bytes: usize = burst.bufs()[start..].iter().map(|b| pool.len(b)).sum();
        c.rx_packets.add(n as u64);
        c.rx_bytes.add(bytes as u64);
        n
    }

    #[inline]
    fn tx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let all: usize = burst.bufs().iter().map(|b| cache.pool().len(b)).sum();
        let sent = self.tx.push_burst(burst);
        let unsent: usize = burst.bufs().iter().map(|b| cache.pool().len(b)).sum();
        c.tx_packets.add(sent as u64);
        c.tx_bytes.add((all - unsent) as u64);
        c.tx_dropped.add(burst.len() as u64);
        burst.free_all(cache);
        sent
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn release(&mut self, _cache: &mut PoolCache) {}
}

impl MemPeer {
    /// Copies `frame` into a buffer and sends it to the port; `false` if the pool or ring is full
    /// or the frame is larger than a buffer.
    pub fn send(&mut self, cache: &mut PoolCache, frame: &[u8]) -> bool {
        let Some(mut b) = cache.alloc() else {
            return false;
        };
        if !cache.pool().fill(&mut b, frame) {
            cache.free(b);
            return false;
        }
        match self.tx.push(b) {
            Ok(()) => true,
            Err(b) => {
                cache.free(b);
                false
            }
        }
    }

    /// Sends every buffer of `burst` that fits; returns how many.
    pub fn send_burst(&mut self, burst: &mut Burst) -> usize {
        self.tx.push_burst(burst)
    }

    /// Takes the next frame the port transmitted, as bytes.
    pub fn recv(&mut self, cache: &mut PoolCache) -> Option<Vec<u8>> {
        let b = self.rx.pop()?;
        let v = cache.pool().data(&b).to_vec();
        cache.free(b);
        Some(v)
    }

    /// Takes up to `burst.room()` transmitted buffers.
    pub fn recv_burst(&mut self, burst: &mut Burst) -> usize {
        self.rx.pop_burst(burst)
    }

    /// Frames waiting to be collected.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }
}
