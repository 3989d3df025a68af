//! A port whose queue another worker owns (an AF_XDP interface with fewer queues than there
//! are workers): this worker's transmits go, in bursts, into a ring that the owner drains and
//! sends on its own queue. Frames are never copied; the buffers change hands.
//!
//! Wakeup contract: the owner may be asleep in epoll. It sets [`WorkerShared::sleeping`], then
//! (after a SeqCst fence) looks at its inbound rings once more before it sleeps; a sender pushes,
//! then (after a SeqCst fence) reads `sleeping` and wakes the owner if it is set. One of the two
//! always sees the other, so no burst waits for the owner's next timeout.

use super::Port;
use crate::burst::Burst;
use crate::counters::PortCounters;
use crate::pool::PoolCache;
use crate::ring::Producer;
use crate::worker::WorkerShared;
use std::os::fd::RawFd;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

/// The sending side, held by a worker without a queue of its own on the port.
pub struct RemoteTx {
    ring: Producer,
    owner: Option<(Arc<WorkerShared>, Arc<mio::Waker>)>,
}

impl RemoteTx {
    /// Sends into `ring`; `owner` (its shared state and waker) is woken when it sleeps. Without
    /// one (a worker driven step by step in a test) nobody is woken.
    pub fn new(ring: Producer, owner: Option<(Arc<WorkerShared>, Arc<mio::Waker>)>) -> RemoteTx {
        RemoteTx { ring, owner }
    }
}

impl Port for RemoteTx {
    fn rx_burst(&mut self, _cache: &mut PoolCache, _burst: &mut Burst, _c: &PortCounters) -> usize {
        0
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let sent = self.ring.push_burst(burst);
        if !burst.is_empty() {
            // The owner is behind: count what does not fit as refused by the port.
            c.tx_dropped.add(burst.len() as u64);
            burst.free_all(cache);
        }
        if sent > 0 {
            if let Some((shared, waker)) = &self.owner {
                fence(Ordering::SeqCst);
                if shared.sleeping.load(Ordering::SeqCst) {
                    let _ = waker.wake();
                }
            }
        }
        sent
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn release(&mut self, _cache: &mut PoolCache) {}
}
