//! TAP ports. A [`TapDevice`] is the control thread's handle on a persistent multi-queue TAP
//! device (it owns one descriptor per queue); each worker gets a [`TapQueue`], a duplicate of one
//! queue's descriptor, and reads and writes frames on it without blocking.
//!
//! The device persists across daemon crashes (`TUNSETPERSIST`), so the interface, its addresses
//! and routes inside a container's namespace survive a `kill -9`; a restarted daemon re-attaches
//! to it by name inside that namespace. [`TapDevice::destroy`] removes it.

use super::Port;
use crate::burst::Burst;
use crate::counters::PortCounters;
use crate::pool::{Buf, PoolCache, MAX_FRAME};
use crate::sys::{netns, tap as sys};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The control thread's handle on a TAP device.
pub struct TapDevice {
    name: String,
    netns: Option<PathBuf>,
    queues: Vec<OwnedFd>,
    created: bool,
}

impl TapDevice {
    /// Attaches `queues` queues to TAP device `name` in namespace `netns` (None: the daemon's),
    /// creating it if it does not exist, makes it persistent, sets `mtu` and brings it up.
    pub fn open(
        name: &str,
        netns: Option<&Path>,
        queues: u16,
        mtu: Option<u32>,
    ) -> io::Result<TapDevice> {
        let queues = queues.max(1);
        let owned_name = name.to_string();
        let (fds, created) = netns::run_in(netns, move || {
            let created = !sys::exists(&owned_name);
            let mut fds = Vec::with_capacity(queues as usize);
            for _ in 0..queues {
                fds.push(sys::open_queue(&owned_name)?);
            }
            // Persistence comes last: if anything before fails, closing the descriptors takes a
            // device made here away again instead of leaving it behind.
            if let Some(m) = mtu {
                if sys::mtu(&owned_name)? != m {
                    sys::set_mtu(&owned_name, m).map_err(|e| {
                        io::Error::new(e.kind(), format!("set MTU {m} on '{owned_name}': {e}"))
                    })?;
                }
            }
            sys::set_up(&owned_name)?;
            if let Some(first) = fds.first() {
                sys::set_persist(first, true)?;
            }
            Ok((fds, created))
        })?;
        Ok(TapDevice {
            name: name.to_string(),
            netns: netns.map(Path::to_path_buf),
            queues: fds,
            created,
        })
    }

    /// Device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace the device lives in.
    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    /// Whether `open` created the device (as opposed to re-attaching to an existing one).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Number of queues held.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The device's MTU as the kernel has it now.
    pub fn mtu(&self) -> io::Result<u32> {
        let name = self.name.clone();
        netns::run_in(self.netns.as_deref(), move || sys::mtu(&name))
    }

    /// A worker's handle on queue `i` (modulo the queue count).
    pub fn queue(&self, i: usize) -> io::Result<TapQueue> {
        let fd = self
            .queues
            .get(i % self.queues.len().max(1))
            .ok_or_else(|| io::Error::other("TAP device has no queues"))?;
        Ok(TapQueue {
            fd: sys::dup(fd)?,
            spare: None,
        })
    }

    /// Removes the device: clears persistence and closes the control thread's descriptors; the
    /// kernel deletes it once the workers have closed theirs too.
    pub fn destroy(self) -> io::Result<()> {
        match self.queues.first() {
            Some(fd) => sys::set_persist(fd, false),
            None => Ok(()),
        }
    }
}

/// One queue of a TAP device, as a worker holds it.
pub struct TapQueue {
    fd: OwnedFd,
    /// A buffer kept across bursts so that an empty read does not cost an alloc and a free.
    spare: Option<Buf>,
}

impl Port for TapQueue {
    fn rx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let mut n = 0;
        let mut bytes = 0u64;
        while !burst.is_full() {
            let Some(mut b) = self.spare.take().or_else(|| cache.alloc()) else {
                break;
            };
            let space = cache.pool().rx_space(&mut b);
            // SAFETY: `space` is a writable region of `space.len()` bytes owned through `b`.
            let r =
                unsafe { libc::read(self.fd.as_raw_fd(), space.as_mut_ptr().cast(), space.len()) };
            if r <= 0 {
                self.spare = Some(b);
                if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    c.rx_errors.inc();
                }
                break;
            }
            let len = r as usize;
            if len >= MAX_FRAME {
                // The frame filled the buffer: it may have been cut short. Never forward that.
                c.rx_errors.inc();
                self.spare = Some(b);
                continue;
            }
            cache.pool().set_len(&mut b, len);
            bytes += len as u64;
            n += 1;
            // Cannot fail: the loop runs only while the burst has room.
            let _ = burst.push(b);
        }
        c.rx_packets.add(n as u64);
        c.rx_bytes.add(bytes);
        n
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let (mut sent, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        for b in burst.drain() {
            let data = cache.pool().data(&b);
            // SAFETY: `data` is a readable region of `data.len()` bytes owned through `b`.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if r == data.len() as isize {
                sent += 1;
                bytes += data.len() as u64;
            } else {
                dropped += 1;
            }
            cache.free(b);
        }
        c.tx_packets.add(sent);
        c.tx_bytes.add(bytes);
        c.tx_dropped.add(dropped);
        sent as usize
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn release(&mut self, cache: &mut PoolCache) {
        if let Some(b) = self.spare.take() {
            cache.free(b);
        }
    }
}
