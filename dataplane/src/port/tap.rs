//! TAP ports. A [`TapDevice`] is the control thread's handle on a persistent multi-queue TAP
//! device (it owns one descriptor per queue); each worker gets a [`TapQueue`], a duplicate of one
//! queue's descriptor, and reads and writes frames on it without blocking.
//!
//! With offloads ([`TapDevice::open`]'s `offloads`), every frame crosses the descriptor behind a
//! 12-byte virtio-net header and the kernel may hand over TCP super-frames of up to 64 KiB and
//! frames with a partial checksum: they are read into the pool's large buffers when the frame
//! may not fit a small one, carried through the switch with their offload facts in the buffer's
//! metadata, written as they are to another TAP with offloads, and finished in software
//! ([`crate::swoffload`]) for any other port. That is what lets TCP between two containers on
//! TAP ports move 64 KiB per system call instead of one MTU-sized frame.
//!
//! The device persists across daemon crashes (`TUNSETPERSIST`), so the interface, its addresses
//! and routes inside a container's namespace survive a `kill -9`; a restarted daemon re-attaches
//! to it by name inside that namespace. [`TapDevice::destroy`] removes it.

use super::Port;
use crate::burst::Burst;
use crate::counters::PortCounters;
use crate::offload::{VnetHdr, VNET_HDR_LEN};
use crate::pool::{Buf, PoolCache, HEADROOM, MAX_FRAME};
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
    offloads: bool,
}

impl TapDevice {
    /// Attaches `queues` queues to TAP device `name` in namespace `netns` (None: the daemon's),
    /// creating it if it does not exist, makes it persistent, sets `mtu` and brings it up. With
    /// `offloads`, frames carry virtio-net headers and the kernel may hand over TCP super-frames
    /// and partial checksums (see the module documentation).
    pub fn open(
        name: &str,
        netns: Option<&Path>,
        queues: u16,
        mtu: Option<u32>,
        offloads: bool,
    ) -> io::Result<TapDevice> {
        let queues = queues.max(1);
        let owned_name = name.to_string();
        let (fds, created) = netns::run_in(netns, move || {
            let created = !sys::exists(&owned_name);
            let mut fds = Vec::with_capacity(queues as usize);
            for _ in 0..queues {
                fds.push(sys::open_queue(&owned_name, offloads)?);
            }
            if let Some(first) = fds.first() {
                // The kernel keeps a device's flags while any queue of it is attached: a queue
                // held elsewhere with other settings would make every frame misread.
                let vnet = sys::flags(first)? & libc::IFF_VNET_HDR != 0;
                if vnet != offloads {
                    return Err(io::Error::other(format!(
                        "TAP '{owned_name}' is attached elsewhere with virtio-net headers {}; \
                         detach that process or match --tap-offload",
                        if vnet { "on" } else { "off" }
                    )));
                }
                sys::set_offloads(first, offloads.then_some(VNET_HDR_LEN))?;
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
            offloads,
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

    /// Whether frames cross the device with virtio-net headers and offloads.
    pub fn offloads(&self) -> bool {
        self.offloads
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
            spare_large: None,
            offloads: self.offloads,
            dead: false,
        })
    }

    /// Where the device is now, seen through its own descriptor: its current name and a
    /// descriptor of its current namespace (a container engine may have renamed and moved it).
    pub fn location(&self) -> io::Result<(String, std::os::fd::OwnedFd)> {
        let fd = self
            .queues
            .first()
            .ok_or_else(|| io::Error::other("TAP device has no queues"))?;
        Ok((sys::current_name(fd)?, sys::device_netns(fd)?))
    }

    /// Records that the device is now `name` in namespace `netns` (see [`TapDevice::location`]).
    pub fn relocated(&mut self, name: &str, netns: Option<&Path>) {
        self.name = name.to_string();
        self.netns = netns.map(Path::to_path_buf);
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
    /// A large buffer kept for the next super-frame (offloads only).
    spare_large: Option<Buf>,
    /// Frames carry virtio-net headers.
    offloads: bool,
    /// The device was deleted under the queue (reads failed with EBADFD): nothing is read or
    /// written any more, and the descriptor is not waited on.
    dead: bool,
}

impl TapQueue {
    /// Counts a failed read; a deleted device (EBADFD) kills the queue, counted once.
    #[cold]
    fn read_failed(&mut self, c: &PortCounters) {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return;
        }
        c.rx_errors.inc();
        if e.raw_os_error() == Some(libc::EBADFD) {
            self.dead = true;
            c.device_gone.set(1);
        }
    }

    /// Whether the device is gone (see [`TapQueue::read_failed`]).
    pub fn dead(&self) -> bool {
        self.dead
    }

    /// Whether frames cross this queue with virtio-net headers and offloads.
    pub fn offloads(&self) -> bool {
        self.offloads
    }

    /// Receive with virtio-net headers, one `readv` per frame into two places: a small buffer
    /// (the header lands in the 12 bytes in front of the frame's start) and, past the small
    /// buffer's end, the rest of a spare large buffer. A frame that fits the small buffer (every
    /// frame but a super-frame) stays there and the large buffer stays spare; a super-frame
    /// moves into the large buffer (its first part copied over, a few hundredths of its bytes),
    /// so large buffers hold only super-frames.
    fn rx_offload(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let pool = std::sync::Arc::clone(cache.pool());
        let (mut n, mut bytes) = (0, 0u64);
        while !burst.is_full() {
            let Some(mut b) = self.spare.take().or_else(|| cache.alloc()) else {
                break;
            };
            if self.spare_large.is_none() {
                self.spare_large = pool.alloc_large();
            }
            let head = &mut pool.slot_mut(&mut b)[HEADROOM - VNET_HDR_LEN..];
            let head_len = head.len();
            let mut iov = [
                libc::iovec {
                    iov_base: head.as_mut_ptr().cast(),
                    iov_len: head_len,
                },
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            ];
            let mut parts = 1;
            if let Some(l) = self.spare_large.as_mut() {
                // The large buffer's bytes from where the small buffer's frame space ends.
                let tail = &mut pool.slot_mut(l)[HEADROOM + MAX_FRAME..];
                iov[1] = libc::iovec {
                    iov_base: tail.as_mut_ptr().cast(),
                    iov_len: tail.len(),
                };
                parts = 2;
            }
            let room = iov[0].iov_len + iov[1].iov_len;
            // SAFETY: both iovecs describe writable regions owned through `b` and the spare
            // large buffer, which stay alive and untouched for the duration of the call.
            let r = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), parts) };
            if r <= 0 {
                self.spare = Some(b);
                if r < 0 {
                    self.read_failed(c);
                }
                break;
            }
            let total = r as usize;
            let hdr = VnetHdr::parse(&pool.slot_mut(&mut b)[HEADROOM - VNET_HDR_LEN..HEADROOM]);
            let (Some(hdr), true) = (hdr, total > VNET_HDR_LEN && total < room) else {
                // No header, or the frame filled every byte offered and may have been cut short.
                c.rx_errors.inc();
                self.spare = Some(b);
                continue;
            };
            let len = total - VNET_HDR_LEN;
            let mut frame = b;
            if total > head_len {
                // A super-frame: its head is in the small buffer, the rest in the large one.
                let Some(mut l) = self.spare_large.take() else {
                    c.rx_errors.inc();
                    self.spare = Some(frame);
                    continue;
                };
                let src = &pool.slot_mut(&mut frame)[HEADROOM..HEADROOM + MAX_FRAME];
                pool.slot_mut(&mut l)[HEADROOM..HEADROOM + MAX_FRAME].copy_from_slice(src);
                self.spare = Some(frame);
                frame = l;
            }
            pool.set_frame(&mut frame, HEADROOM, len);
            if !hdr.is_plain() {
                pool.set_offload(&mut frame, hdr);
            }
            bytes += len as u64;
            n += 1;
            // Cannot fail: the loop runs only while the burst has room.
            let _ = burst.push(frame);
        }
        c.rx_packets.add(n as u64);
        c.rx_bytes.add(bytes);
        n
    }

    /// Transmit with virtio-net headers: the header goes into the headroom in front of the
    /// frame, so each frame is one write.
    fn tx_offload(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let pool = std::sync::Arc::clone(cache.pool());
        let (mut sent, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        for mut b in burst.drain() {
            let mut hdr = pool.offload(&b);
            let len = pool.len(&b);
            // A header length is only a hint for the kernel, but one past the frame is refused.
            if usize::from(hdr.hdr_len) > len {
                hdr.hdr_len = 0;
            }
            let ok = match pool.prepend(&mut b, VNET_HDR_LEN) {
                Some(d) => {
                    hdr.write(d);
                    // SAFETY: `d` is a readable region of `d.len()` bytes owned through `b`.
                    let r = unsafe { libc::write(self.fd.as_raw_fd(), d.as_ptr().cast(), d.len()) };
                    r == d.len() as isize
                }
                None => false,
            };
            if ok {
                sent += 1;
                bytes += len as u64;
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
}

impl Port for TapQueue {
    fn rx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        if self.dead {
            return 0;
        }
        if self.offloads {
            return self.rx_offload(cache, burst, c);
        }
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
                if r < 0 {
                    self.read_failed(c);
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
        if self.dead {
            c.tx_dropped.add(burst.len() as u64);
            burst.free_all(cache);
            return 0;
        }
        if self.offloads {
            return self.tx_offload(cache, burst, c);
        }
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
        // A dead queue's descriptor reports an error to every poll: never wait on it.
        (!self.dead).then(|| self.fd.as_raw_fd())
    }

    fn dead(&self) -> bool {
        self.dead
    }

    fn release(&mut self, cache: &mut PoolCache) {
        if let Some(b) = self.spare.take() {
            cache.free(b);
        }
        if let Some(b) = self.spare_large.take() {
            cache.free(b);
        }
    }
}
