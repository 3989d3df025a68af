//! Ports: where bursts come from and go to. One trait, and a static enum of the kinds a worker
//! holds, so that dispatch is a `match` per burst, never a `dyn` call per packet.

pub mod afxdp;
pub mod fault;
pub mod mem;
pub mod remote;
pub mod tap;
pub mod uring_rx;

use crate::burst::Burst;
use crate::counters::PortCounters;
use crate::pool::PoolCache;
use std::os::fd::RawFd;

/// Port index within the switch (`u16`, dense, reused after removal).
pub type PortId = u16;

/// Most ports a switch holds.
pub const MAX_PORTS: usize = 1024;

/// A source and sink of bursts.
pub trait Port {
    /// Receives up to `burst.room()` frames into `burst`; returns how many arrived.
    fn rx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize;
    /// Transmits every buffer of `burst`, leaving it empty: each is sent or dropped and counted.
    /// Returns how many were sent.
    fn tx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize;
    /// As [`Port::tx_burst`], where more frames for the port follow before the worker's flush
    /// in the same iteration: the port may hold the burst's last frames back (a merge still
    /// open) for the next `tx_burst`, which sends them. Returns how many were sent.
    fn tx_burst_more(
        &mut self,
        cache: &mut PoolCache,
        burst: &mut Burst,
        c: &PortCounters,
    ) -> usize {
        self.tx_burst(cache, burst, c)
    }
    /// A descriptor that becomes readable when frames wait (for idle sleeping), if any.
    fn raw_fd(&self) -> Option<RawFd>;
    /// Returns any buffers the port holds to the pool before it is dropped.
    fn release(&mut self, cache: &mut PoolCache);
    /// Whether the device behind the port is gone for good (nothing will ever arrive): the
    /// worker then sleeps without waiting on it.
    fn dead(&self) -> bool {
        false
    }
}

/// The port kinds a worker holds.
pub enum PortIo {
    /// A queue of a TAP device.
    Tap(tap::TapQueue),
    /// One end of an in-memory port pair.
    Mem(mem::MemPort),
    /// A queue of an AF_XDP port.
    AfXdp(afxdp::AfXdpQueue),
    /// Transmit-only: a ring into the worker that owns the port's queue.
    Remote(remote::RemoteTx),
    /// Another port wearing injected faults (tests).
    Fault(Box<fault::FaultPort>),
}

impl PortIo {
    /// What the port can transmit: offload work and large buffers, finished frames from any
    /// buffer, or finished frames from the AF_XDP region only.
    pub fn tx_caps(&self) -> crate::swoffload::TxCaps {
        use crate::swoffload::TxCaps;
        match self {
            PortIo::Tap(p) if p.tunnel_gso() && p.uso() => TxCaps::OffloadTunnelUso,
            PortIo::Tap(p) if p.tunnel_gso() => TxCaps::OffloadTunnel,
            PortIo::Tap(p) if p.uso() => TxCaps::OffloadUso,
            PortIo::Tap(p) if p.offloads() => TxCaps::Offload,
            PortIo::Mem(p) => p.caps(),
            PortIo::Tap(_) => TxCaps::Plain,
            // A remote transmit feeds an AF_XDP queue on another worker.
            PortIo::AfXdp(_) | PortIo::Remote(_) => TxCaps::Region,
            PortIo::Fault(p) => p.inner().tx_caps(),
        }
    }
}

impl Port for PortIo {
    #[inline]
    fn rx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        match self {
            PortIo::Tap(p) => p.rx_burst(cache, burst, c),
            PortIo::Mem(p) => p.rx_burst(cache, burst, c),
            PortIo::AfXdp(p) => p.rx_burst(cache, burst, c),
            PortIo::Remote(p) => p.rx_burst(cache, burst, c),
            PortIo::Fault(p) => p.rx_burst(cache, burst, c),
        }
    }

    #[inline]
    fn tx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        match self {
            PortIo::Tap(p) => p.tx_burst(cache, burst, c),
            PortIo::Mem(p) => p.tx_burst(cache, burst, c),
            PortIo::AfXdp(p) => p.tx_burst(cache, burst, c),
            PortIo::Remote(p) => p.tx_burst(cache, burst, c),
            PortIo::Fault(p) => p.tx_burst(cache, burst, c),
        }
    }

    #[inline]
    fn tx_burst_more(
        &mut self,
        cache: &mut PoolCache,
        burst: &mut Burst,
        c: &PortCounters,
    ) -> usize {
        match self {
            PortIo::Tap(p) => p.tx_burst_more(cache, burst, c),
            _ => self.tx_burst(cache, burst, c),
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        match self {
            PortIo::Tap(p) => p.raw_fd(),
            PortIo::Mem(p) => p.raw_fd(),
            PortIo::AfXdp(p) => p.raw_fd(),
            PortIo::Remote(p) => p.raw_fd(),
            PortIo::Fault(p) => p.raw_fd(),
        }
    }

    fn dead(&self) -> bool {
        match self {
            PortIo::Tap(p) => p.dead(),
            PortIo::Fault(p) => p.dead(),
            _ => false,
        }
    }

    fn release(&mut self, cache: &mut PoolCache) {
        match self {
            PortIo::Tap(p) => p.release(cache),
            PortIo::Mem(p) => p.release(cache),
            PortIo::AfXdp(p) => p.release(cache),
            PortIo::Remote(p) => p.release(cache),
            PortIo::Fault(p) => p.release(cache),
        }
    }
}
