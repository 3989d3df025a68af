//! Batched TAP receive through io_uring: one multishot read per queue, fed from a ring of
//! provided buffers that are the pool's own, so a burst of frames costs one `io_uring_enter`
//! and often none.
//!
//! How it works. The ring is made by the worker that reads the queue (on its first receive:
//! the ring is `SINGLE_ISSUER` and `DEFER_TASKRUN`, so the kernel does the reads only inside
//! that thread's `io_uring_enter`, never in an interrupt of it). One `READ_MULTISHOT` entry stays
//! armed on the TAP descriptor; when a frame arrives the kernel queues the read as task work and
//! sets `IORING_SQ_TASKRUN` in the shared ring (`TASKRUN_FLAG`). [`RxRing::poll`] looks at that
//! flag (a load, no system call) and enters the kernel only when it is set: the kernel then reads
//! every waiting frame, each into the next provided buffer, and posts one completion per frame
//! naming the buffer. The worker takes those buffers as the frames and provides fresh ones from
//! the pool in their place (the same buffer again when the frame was copied out).
//!
//! Buffers: without virtio-net headers the provided buffers are small pool buffers and a frame
//! stays where the kernel put it (no copy). With offloads a frame may be a 64 KiB super-frame,
//! and a read into too small a buffer loses the frame, so the provided buffers are large; a
//! frame that fits a small buffer (every frame but a super-frame) is copied into one and the
//! large buffer goes straight back into the ring, a super-frame keeps its large buffer.
//!
//! When the ring runs out of buffers (more frames waited than it holds) the kernel ends the
//! multishot read (`ENOBUFS`); the next poll arms it again. Where io_uring, `DEFER_TASKRUN`
//! (Linux 6.1), multishot reads (6.7) or the buffers are not there, [`RxRing::new`] says so and
//! the queue reads with one `read` per frame as before.

use crate::pool::{Buf, PoolCache, LARGE_SLOT_SIZE, SLOT_SIZE};
use io_uring::{cqueue, opcode, types, IoUring};
use std::os::fd::RawFd;

/// `user_data` of the multishot read's completions.
const RX_TAG: u64 = 1;
/// `user_data` of the cancellation sent when the ring is released.
const CANCEL_TAG: u64 = 2;
/// `io_uring_enter` flag: run pending work and reap completions (the uapi's value).
const IORING_ENTER_GETEVENTS: u32 = 1;
/// The one buffer group of a ring.
const BGID: u16 = 0;
/// Provided small buffers per queue without offloads (a page of ring entries).
pub const SMALL_ENTRIES: u16 = 64;
/// Provided large buffers per queue with offloads (16 x 68 KiB).
pub const LARGE_ENTRIES: u16 = 16;
/// Most times one poll arms the read again after the ring ran dry.
const MAX_ROUNDS: usize = 4;

/// A frame the ring read: its buffer and the bytes the kernel wrote, from the offset the ring
/// was made with ([`RxRing::new`]'s `off`).
pub struct Read {
    /// The buffer (small without offloads, large with).
    pub buf: Buf,
    /// Bytes read (virtio-net header included with offloads).
    pub len: usize,
    /// Bytes the buffer offered: a read of this many may have been cut short.
    pub room: usize,
}

/// A queue's receive ring.
pub struct RxRing {
    ring: IoUring,
    /// The provided-buffer ring's entries (a private anonymous mapping of `map_len` bytes).
    entries: *mut types::BufRingEntry,
    map_len: usize,
    /// The buffer behind each buffer id; `None` while it is out (taken as a frame, not yet
    /// replaced).
    slots: Box<[Option<Buf>]>,
    mask: u16,
    /// The next entry to fill (published to the kernel by [`RxRing::publish`]).
    tail: u16,
    /// Whether the multishot read is armed.
    armed: bool,
    /// Provided buffers are large (offloads).
    large: bool,
    /// Where in a slot reads land.
    off: usize,
    /// Some buffer id has no buffer (the pool was dry when its frame was taken).
    missing: bool,
}

// SAFETY: the raw pointer is to a mapping owned by the ring and touched only through `&mut self`;
// the ring moves between threads only before its first use (it is made in the worker).
unsafe impl Send for RxRing {}

impl RxRing {
    /// Makes a ring for reading a queue with buffers from `cache`, reads landing `off` bytes into
    /// each slot (where a virtio-net header or the frame starts); `large`: provide large buffers.
    /// Must be called on the thread that will poll. `None` where the kernel or the pool cannot
    /// do it (the caller reads plainly).
    pub fn new(cache: &mut PoolCache, off: usize, large: bool) -> Option<Box<RxRing>> {
        let n = if large { LARGE_ENTRIES } else { SMALL_ENTRIES };
        if off >= SLOT_SIZE || (large && cache.pool().large_available() < usize::from(n) * 2) {
            return None;
        }
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(u32::from(n) * 4)
            .build(8)
            .ok()?;
        let map_len = usize::from(n) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let mut r = Box::new(RxRing {
            ring,
            entries: p.cast(),
            map_len,
            slots: (0..n).map(|_| None).collect(),
            mask: n - 1,
            tail: 0,
            armed: false,
            large,
            off,
            missing: false,
        });
        for bid in 0..n {
            let Some(b) = r.fresh(cache) else {
                r.release(cache);
                return None;
            };
            r.provide(cache, bid, b);
        }
        r.publish();
        // SAFETY: the entries live in the mapping made above, page-aligned, `n` (a power of
        // two) entries long; it stays mapped until the ring is dropped, after the kernel's
        // registration has gone with the ring's descriptor.
        let reg = unsafe {
            r.ring
                .submitter()
                .register_buf_ring_with_flags(r.entries as u64, n, BGID, 0)
        };
        if reg.is_err() {
            r.release(cache);
            return None;
        }
        Some(r)
    }

    /// A new buffer of the ring's kind.
    fn fresh(&self, cache: &mut PoolCache) -> Option<Buf> {
        if self.large {
            cache.pool().alloc_large()
        } else {
            cache.alloc()
        }
    }

    /// Bytes a provided buffer offers.
    fn room(&self) -> usize {
        if self.large {
            LARGE_SLOT_SIZE - self.off
        } else {
            SLOT_SIZE - self.off
        }
    }

    /// Puts `b` into the ring as buffer `bid` (seen by the kernel once published).
    fn provide(&mut self, cache: &mut PoolCache, bid: u16, mut b: Buf) {
        let room = self.room() as u32;
        let addr = cache.pool().slot_mut(&mut b)[self.off..].as_mut_ptr() as u64;
        let i = usize::from(self.tail & self.mask);
        // SAFETY: `i` < the ring's entry count, so the entry lies in the mapping; the kernel
        // reads entries only up to the published tail, and this one is past it until
        // `publish`.
        let e = unsafe { &mut *self.entries.add(i) };
        e.set_addr(addr);
        e.set_len(room);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        if let Some(slot) = self.slots.get_mut(usize::from(bid)) {
            // The slot was emptied when its buffer was taken (or is being filled first).
            if let Some(old) = slot.replace(b) {
                cache.free(old);
            }
        }
    }

    /// Makes the entries provided so far visible to the kernel.
    fn publish(&mut self) {
        // SAFETY: the tail field lies in the first entry of the mapping (the kernel's layout);
        // it is written only here, and read by the kernel as an atomic.
        let tail = unsafe { types::BufRingEntry::tail(self.entries).cast_mut() };
        // SAFETY: `tail` is a valid, aligned u16 in the mapping; the release store orders the
        // entries written before it ahead of the kernel seeing the new tail.
        let atomic = unsafe { std::sync::atomic::AtomicU16::from_ptr(tail) };
        atomic.store(self.tail, std::sync::atomic::Ordering::Release);
    }

    /// Reads the frames waiting on `fd` (at most `room`), giving each to `take`, which
    /// returns the buffer if it is to go back into the ring as it is (the frame was copied out,
    /// or dropped) and `None` if it kept it (a fresh one takes its place). Returns how many
    /// frames were read, or the errno of a failed read that ends the queue (EBADFD: the device
    /// is gone).
    pub fn poll(
        &mut self,
        fd: RawFd,
        cache: &mut PoolCache,
        room: usize,
        mut take: impl FnMut(&mut PoolCache, Read) -> Option<Buf>,
    ) -> Result<usize, i32> {
        if self.missing {
            self.refill(cache);
            self.publish();
        }
        let mut got = 0;
        for _ in 0..MAX_ROUNDS {
            if !self.armed {
                let sqe = opcode::ReadMulti::new(types::Fd(fd), 0, BGID)
                    .build()
                    .user_data(RX_TAG);
                // SAFETY: the read writes only into provided buffers, each owned by `slots`
                // until its completion hands it over; the descriptor outlives the ring (the
                // queue drops the ring first).
                if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                    return Err(libc::ENOSPC);
                }
                self.armed = true;
            }
            let pending = self.ring.submission().len();
            if pending > 0 || self.ring.submission().taskrun() {
                // SAFETY: no argument is passed; entries pushed above are complete.
                let r = unsafe {
                    self.ring.submitter().enter::<libc::sigset_t>(
                        pending as u32,
                        0,
                        IORING_ENTER_GETEVENTS,
                        None,
                    )
                };
                if let Err(e) = r {
                    if e.raw_os_error() != Some(libc::EINTR)
                        && e.raw_os_error() != Some(libc::EAGAIN)
                    {
                        return Err(e.raw_os_error().unwrap_or(libc::EIO));
                    }
                }
            }
            let (n, err) = self.reap(cache, room - got, &mut take);
            got += n;
            self.publish();
            if let Some(e) = err {
                return Err(e);
            }
            // Armed still: everything waiting was read. Disarmed with room left: the ring ran
            // dry (ENOBUFS), so more may wait.
            if self.armed || got >= room {
                break;
            }
        }
        Ok(got)
    }

    /// Takes up to `room` completions; a failed read other than ENOBUFS is returned.
    fn reap(
        &mut self,
        cache: &mut PoolCache,
        room: usize,
        take: &mut impl FnMut(&mut PoolCache, Read) -> Option<Buf>,
    ) -> (usize, Option<i32>) {
        let mut n = 0;
        let mut err = None;
        let rbytes = self.room();
        while n < room {
            let Some(cqe) = self.ring.completion().next() else {
                break;
            };
            if cqe.user_data() != RX_TAG {
                continue;
            }
            let flags = cqe.flags();
            if !cqueue::more(flags) {
                self.armed = false;
            }
            let res = cqe.result();
            let Some(bid) = cqueue::buffer_select(flags) else {
                if res < 0 && res != -libc::ENOBUFS {
                    err = Some(-res);
                    break;
                }
                continue;
            };
            let Some(b) = self.slots.get_mut(usize::from(bid)).and_then(Option::take) else {
                continue;
            };
            if res <= 0 {
                // A buffer picked for a failed (or empty) read goes back as it is.
                self.provide(cache, bid, b);
                if res < 0 && res != -libc::ENOBUFS {
                    err = Some(-res);
                    break;
                }
                continue;
            }
            n += 1;
            let back = take(
                cache,
                Read {
                    buf: b,
                    len: res as usize,
                    room: rbytes,
                },
            );
            match back.or_else(|| self.fresh(cache)) {
                Some(b) => self.provide(cache, bid, b),
                // The pool is dry: the ring holds one buffer fewer until `refill`.
                None => self.missing = true,
            }
        }
        (n, err)
    }

    /// Provides a buffer for every id whose buffer was taken when the pool had none to put
    /// in its place.
    #[cold]
    fn refill(&mut self, cache: &mut PoolCache) {
        self.missing = false;
        for bid in 0..self.slots.len() {
            if self.slots.get(bid).is_some_and(Option::is_none) {
                match self.fresh(cache) {
                    Some(b) => self.provide(cache, bid as u16, b),
                    None => {
                        self.missing = true;
                        return;
                    }
                }
            }
        }
    }

    /// Cancels the read, waits for the kernel to let go of the buffers and gives them back.
    pub fn release(&mut self, cache: &mut PoolCache) {
        if self.armed {
            let sqe = opcode::AsyncCancel::new(RX_TAG)
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancellation carries no buffers.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                // Bounded: the read's last completion and the cancellation's.
                for _ in 0..4 {
                    if self.ring.submit_and_wait(1).is_err() {
                        break;
                    }
                    let mut done = false;
                    for cqe in self.ring.completion() {
                        if cqe.user_data() == RX_TAG && !cqueue::more(cqe.flags()) {
                            done = true;
                        }
                    }
                    if done {
                        break;
                    }
                }
            }
            self.armed = false;
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        for s in self.slots.iter_mut() {
            if let Some(b) = s.take() {
                cache.free(b);
            }
        }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with `map_len` bytes; the kernel pinned its
        // pages at registration, so unmapping our view cannot pull them from under it.
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}
