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
//! With `tunnel` as well, [`TapDevice::open`] asks for UDP tunnel segmentation offload (Linux
//! 6.17+, `TUN_F_UDP_TUNNEL_GSO`) with the 24-byte header that carries the tunnel's offsets.
//! Where the kernel takes it, a VXLAN super-frame crosses the descriptor whole in both
//! directions: the switch writes a container's 64 KiB super-frame encapsulated once, and the
//! local kernel's VXLAN device hands over encapsulated super-frames (see
//! [`crate::offload::VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`]). Where it does not (an older
//! kernel), the device is opened as without `tunnel`.
//!
//! With `uso` as well, it asks for UDP segmentation offload (Linux 6.2+, `TUN_F_USO4 |
//! TUN_F_USO6`) alongside: on transmit, consecutive datagrams of one 5-tuple of equal size in a
//! burst (the sealed ESP-in-UDP packets of one cut TCP super-frame) are merged into one UDP
//! super-frame and written once ([`crate::gro::udp_segment`]); the kernel may hand over UDP
//! super-frames in turn, which the pipeline cuts ([`crate::offload::UdpSegments`]).
//!
//! On transmit, with offloads, consecutive in-order TCP segments of one flow in a burst are
//! merged into one super-frame first (software GRO, [`crate::gro`]), and with
//! [`TapFeatures::uring`] a burst's writes are submitted to the kernel with one `io_uring_enter`.
//!
//! The device persists across daemon crashes (`TUNSETPERSIST`), so the interface, its addresses
//! and routes inside a container's namespace survive a `kill -9`; a restarted daemon re-attaches
//! to it by name inside that namespace. [`TapDevice::destroy`] removes it.

use super::uring_rx::RxRing;
use super::Port;
use crate::burst::Burst;
use crate::burst::BURST;
use crate::counters::PortCounters;
use crate::gro;
use crate::offload::{VnetHdr, VNET_HDR_LEN, VNET_HDR_TNL_LEN};
use crate::pool::{Buf, Pool, PoolCache, HEADROOM, MAX_FRAME};
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
    /// The kernel took UDP tunnel segmentation offload (24-byte headers).
    tunnel_gso: bool,
    /// Merge TCP segments of a transmit burst (with offloads only).
    gro: bool,
    /// The kernel took UDP segmentation offload (`TUN_F_USO4 | TUN_F_USO6`).
    uso: bool,
    /// Each queue writes through io_uring, a burst per `io_uring_enter`.
    uring: bool,
}

/// What a TAP device is opened with ([`TapDevice::open`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapFeatures {
    /// Virtio-net headers: TCP super-frames and partial checksums cross the device.
    pub offloads: bool,
    /// With `offloads`: ask for UDP tunnel super-frames too (where the kernel has them).
    pub tunnel_gso: bool,
    /// With `offloads`: merge the TCP segments of each transmit burst (software GRO).
    pub gro: bool,
    /// With `offloads`: ask for UDP segmentation offload too (where the kernel has it), and
    /// merge equal-sized datagrams of one 5-tuple in each transmit burst.
    pub uso: bool,
    /// Write each transmit burst through io_uring (one system call for the burst) where the
    /// kernel allows io_uring; plain `write`s otherwise.
    pub uring: bool,
}

impl TapDevice {
    /// Attaches `queues` queues to TAP device `name` in namespace `netns` (None: the daemon's),
    /// creating it if it does not exist, makes it persistent, sets `mtu` and brings it up. With
    /// `features.offloads`, frames carry virtio-net headers and the kernel may hand over TCP
    /// super-frames and partial checksums (see the module documentation); with `tunnel_gso`
    /// too, UDP tunnel super-frames where the kernel supports them ([`TapDevice::tunnel_gso`]
    /// says whether); with `gro` too, consecutive TCP segments of a flow in a transmit burst are
    /// merged; with `uring`, transmit bursts are written through io_uring.
    pub fn open(
        name: &str,
        netns: Option<&Path>,
        queues: u16,
        mtu: Option<u32>,
        features: TapFeatures,
    ) -> io::Result<TapDevice> {
        let TapFeatures {
            offloads,
            tunnel_gso: tunnel,
            gro,
            uso,
            uring,
        } = features;
        let queues = queues.max(1);
        let owned_name = name.to_string();
        let (fds, created, (tunnel_gso, uso)) = netns::run_in(netns, move || {
            let created = !sys::exists(&owned_name);
            let mut got = (false, false);
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
                got = negotiate(first, offloads, tunnel, uso)?;
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
            Ok((fds, created, got))
        })?;
        Ok(TapDevice {
            name: name.to_string(),
            netns: netns.map(Path::to_path_buf),
            queues: fds,
            created,
            offloads,
            tunnel_gso,
            gro: gro && offloads,
            uso,
            uring: uring && uring_usable(),
        })
    }

    /// Whether the queues read and write through io_uring (asked for, and the kernel lets this
    /// process make rings that do multishot reads; a queue may still fall back to plain reads if
    /// the pool cannot fill its ring).
    pub fn uring(&self) -> bool {
        self.uring
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

    /// Whether UDP tunnel super-frames cross the device (the kernel took `TUN_F_UDP_TUNNEL_GSO`).
    pub fn tunnel_gso(&self) -> bool {
        self.tunnel_gso
    }

    /// Whether UDP super-frames cross the device (the kernel took `TUN_F_USO4 | TUN_F_USO6`).
    pub fn uso(&self) -> bool {
        self.uso
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
        let fd = sys::dup(fd)?;
        let uring = if self.uring {
            Uring::new(fd.as_raw_fd())
        } else {
            None
        };
        Ok(TapQueue {
            fd,
            spare: None,
            spare_large: None,
            offloads: self.offloads,
            hdr_len: if self.tunnel_gso {
                VNET_HDR_TNL_LEN
            } else {
                VNET_HDR_LEN
            },
            tunnel_gso: self.tunnel_gso,
            gro: self.gro,
            uso: self.uso,
            uring,
            chain: Vec::with_capacity(CHAIN_MAX),
            carry: None,
            rx_ring: if self.uring {
                RxRingState::Wanted
            } else {
                RxRingState::Off
            },
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
    /// Bytes of each virtio-net header (with offloads): 12, or 24 with tunnel offsets.
    hdr_len: usize,
    /// UDP tunnel super-frames cross the queue.
    tunnel_gso: bool,
    /// Transmit bursts' TCP segments are merged ([`crate::gro`]).
    gro: bool,
    /// UDP super-frames cross the queue: transmit bursts' equal-sized datagrams of one
    /// 5-tuple are merged ([`crate::gro::udp_segment`]).
    uso: bool,
    /// Writes go through io_uring, a burst at a time (None: plain `write`s). Boxed: the ring
    /// is large and made once per queue.
    uring: Option<Box<Uring>>,
    /// The merge in progress' later segments (its first is held by the merge): written behind
    /// the first one's headers and payload in one gathered write, never copied. At most
    /// [`CHAIN_MAX`].
    chain: Vec<Buf>,
    /// A merge held back by [`Port::tx_burst_more`] for the next transmit burst of the same
    /// worker iteration (its later segments in `chain`).
    carry: Option<Merge>,
    /// Reads go through io_uring ([`super::uring_rx`]): made by the worker on its first read.
    rx_ring: RxRingState,
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

    /// Whether UDP tunnel super-frames cross this queue (24-byte headers).
    pub fn tunnel_gso(&self) -> bool {
        self.tunnel_gso
    }

    /// Whether UDP super-frames cross this queue (the kernel took USO).
    pub fn uso(&self) -> bool {
        self.uso
    }

    /// Gives the receive ring's buffers back and closes it; reads are plain from then on.
    #[cold]
    fn drop_rx_ring(&mut self, cache: &mut PoolCache) {
        if let RxRingState::On(mut r) = std::mem::replace(&mut self.rx_ring, RxRingState::Off) {
            r.release(cache);
        }
    }

    /// Whether writes go through io_uring (else plain `write`/`writev`).
    pub fn uring_writes(&self) -> bool {
        self.uring.is_some()
    }

    /// Whether reads go through io_uring now (made on the first read where asked for and the
    /// kernel allows it).
    pub fn uring_reads(&self) -> bool {
        matches!(self.rx_ring, RxRingState::On(_))
    }

    /// Receive with virtio-net headers, one `readv` per frame into two places: a small buffer
    /// (the header lands in the 12 or 24 bytes in front of the frame's start) and, past the small
    /// buffer's end, the rest of a spare large buffer. A frame that fits the small buffer (every
    /// frame but a super-frame) stays there and the large buffer stays spare; a super-frame
    /// moves into the large buffer (its first part copied over, a few hundredths of its bytes),
    /// so large buffers hold only super-frames.
    fn rx_offload(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        let pool = std::sync::Arc::clone(cache.pool());
        let hdr_len = self.hdr_len;
        let (mut n, mut bytes) = (0, 0u64);
        while !burst.is_full() {
            let Some(mut b) = self.spare.take().or_else(|| cache.alloc()) else {
                break;
            };
            if self.spare_large.is_none() {
                self.spare_large = pool.alloc_large();
            }
            let head = &mut pool.slot_mut(&mut b)[HEADROOM - hdr_len..];
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
            let hdr = VnetHdr::parse_len(&pool.slot_mut(&mut b)[HEADROOM - hdr_len..], hdr_len);
            let (Some(hdr), true) = (hdr, total > hdr_len && total < room) else {
                // No header, or the frame filled every byte offered and may have been cut short.
                c.rx_errors.inc();
                self.spare = Some(b);
                continue;
            };
            let len = total - hdr_len;
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

    /// Receive through the queue's io_uring ([`super::uring_rx`]): the frames the kernel has
    /// read into provided buffers since the last call, entering the kernel only when it has
    /// reads to do. Without offloads a frame stays in the buffer it was read into; with them, a
    /// frame that fits a small buffer is copied into one and its large buffer goes back into the
    /// ring. Falls back to plain reads where the ring cannot be made.
    fn rx_uring(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        if matches!(self.rx_ring, RxRingState::Wanted) {
            let off = if self.offloads {
                HEADROOM - self.hdr_len
            } else {
                HEADROOM
            };
            self.rx_ring = match RxRing::new(cache, off, self.offloads) {
                Some(r) => RxRingState::On(r),
                None => RxRingState::Off,
            };
        }
        let RxRingState::On(ring) = &mut self.rx_ring else {
            return self.rx_burst(cache, burst, c);
        };
        let pool = std::sync::Arc::clone(cache.pool());
        let (offloads, hdr_len) = (self.offloads, self.hdr_len);
        let (mut bytes, mut errors) = (0u64, 0u64);
        let (room, before) = (burst.room(), burst.len());
        let r = ring.poll(self.fd.as_raw_fd(), cache, room, |cache, rd| {
            let mut buf = rd.buf;
            if rd.len >= rd.room {
                // The frame filled every byte offered and may have been cut short.
                errors += 1;
                return Some(buf);
            }
            if !offloads {
                pool.set_frame(&mut buf, HEADROOM, rd.len);
                bytes += rd.len as u64;
                return burst.push(buf).err();
            }
            let hdr = VnetHdr::parse_len(&pool.slot_mut(&mut buf)[HEADROOM - hdr_len..], hdr_len);
            let (Some(hdr), true) = (hdr, rd.len > hdr_len) else {
                errors += 1;
                return Some(buf);
            };
            let len = rd.len - hdr_len;
            let (mut frame, back) = if len <= MAX_FRAME {
                // Every frame but a super-frame: into a small buffer, the large one back.
                let Some(mut small) = cache.alloc() else {
                    errors += 1;
                    return Some(buf);
                };
                let src = &pool.slot_mut(&mut buf)[HEADROOM..HEADROOM + len];
                pool.slot_mut(&mut small)[HEADROOM..HEADROOM + len].copy_from_slice(src);
                (small, Some(buf))
            } else {
                (buf, None)
            };
            pool.set_frame(&mut frame, HEADROOM, len);
            if !hdr.is_plain() {
                pool.set_offload(&mut frame, hdr);
            }
            bytes += len as u64;
            match burst.push(frame) {
                Ok(()) => back,
                // Cannot happen (the ring hands over at most `room` frames): free it.
                Err(f) => {
                    cache.free(f);
                    back
                }
            }
        });
        if let Err(e) = r {
            c.rx_errors.inc();
            if e == libc::EBADFD {
                self.dead = true;
                c.device_gone.set(1);
            } else {
                // The ring itself failed (not the device): read plainly from now on.
                self.drop_rx_ring(cache);
            }
        }
        let n = burst.len() - before;
        c.rx_errors.add(errors);
        c.rx_packets.add(n as u64);
        c.rx_bytes.add(bytes);
        n
    }

    /// Transmit with virtio-net headers: the header goes into the headroom in front of the
    /// frame, so each frame is one write. With GRO, consecutive in-order TCP segments of one
    /// flow in the burst are merged into one super-frame ([`crate::gro`]), written once with a
    /// TSO header, and with USO a 5-tuple's datagrams likewise: the first segment's headers are
    /// finished for the whole and the others' payloads follow in the same gathered write
    /// (`writev`), so nothing is copied in user space. Counters still count the segments.
    ///
    /// With `more` (frames follow before the worker's flush, [`Port::tx_burst_more`]) a merge
    /// still open at the burst's end is kept for the next burst, so that the segments of one
    /// cut super-frame (up to 45 of 1 448 bytes) leave in one write, not in one per burst.
    fn tx_offload(
        &mut self,
        cache: &mut PoolCache,
        burst: &mut Burst,
        c: &PortCounters,
        more: bool,
    ) -> usize {
        let pool = std::sync::Arc::clone(cache.pool());
        let mut t = TxTally::default();
        // The merge in progress: its first buffer, first and last segment, segments in it,
        // and its length as one frame; the later segments wait in `self.chain`.
        let mut merge: Option<Merge> = self.carry.take();
        for b in burst.drain() {
            let seg = if (self.gro || self.uso) && !pool.has_offload(&b) {
                let d = pool.data(&b);
                let tcp = if self.gro { gro::segment(d) } else { None };
                tcp.or_else(|| self.uso.then(|| gro::udp_segment(d)).flatten())
            } else {
                None
            };
            if let (Some(m), Some(next)) = (merge.as_mut(), seg) {
                let fits = m.len + next.payload <= usize::from(u16::MAX) + 14
                    && self.chain.len() < CHAIN_MAX
                    && (!next.udp || m.n < gro::UDP_MAX_SEGMENTS as u64);
                if fits && gro::follows(pool.data(&m.head), &m.first, &m.last, pool.data(&b), &next)
                {
                    self.chain.push(b);
                    m.len += next.payload;
                    m.last = next;
                    m.n += 1;
                    continue;
                }
            }
            if let Some(m) = merge.take() {
                self.flush_merge(&pool, cache, m, &mut t);
            }
            match seg {
                Some(s) => {
                    let len = pool.len(&b);
                    merge = Some(Merge {
                        head: b,
                        first: s,
                        last: s,
                        n: 1,
                        len,
                    });
                }
                None => {
                    let w = Span::one(pool.len(&b));
                    self.write_one(&pool, cache, b, w, &mut t);
                }
            }
        }
        if more {
            self.carry = merge.take();
        } else if let Some(m) = merge.take() {
            self.flush_merge(&pool, cache, m, &mut t);
        }
        self.flush_uring(cache, &mut t);
        c.tx_packets.add(t.sent);
        c.tx_bytes.add(t.bytes);
        c.tx_dropped.add(t.dropped);
        c.tx_uso_merged.add(t.uso_merged);
        t.sent as usize
    }

    /// Writes a merge: a super-frame (the first segment's headers finished for the whole, the
    /// others' payloads in `self.chain`) if segments joined, else the one segment as it is.
    fn flush_merge(&mut self, pool: &Pool, cache: &mut PoolCache, mut m: Merge, t: &mut TxTally) {
        if m.n > 1 {
            match gro::finish_head(pool.data_mut(&mut m.head), m.len, &m.first, m.last.psh) {
                Some(o) => {
                    pool.set_offload(&mut m.head, o);
                    t.uso_merged += u64::from(m.first.udp);
                }
                None => {
                    // Cannot happen for segments `gro` accepted; were it to, each goes alone.
                    let mut chain = std::mem::take(&mut self.chain);
                    let w = Span::one(pool.len(&m.head));
                    self.write_one(pool, cache, m.head, w, t);
                    for b in chain.drain(..) {
                        let w = Span::one(pool.len(&b));
                        self.write_one(pool, cache, b, w, t);
                    }
                    self.chain = chain;
                    return;
                }
            }
        }
        let w = Span {
            frames: m.n,
            len: m.len,
            skip: m.first.hdr_len,
        };
        self.write_one(pool, cache, m.head, w, t);
    }

    /// Writes `b`, with its virtio-net header when the queue has offloads, followed by the
    /// payloads of the buffers in `self.chain` (a merge's later segments: one gathered write;
    /// `w` says what the whole stands for), and frees them; through io_uring, it is queued
    /// instead and written (and freed) by [`TapQueue::flush_uring`], which the burst's end calls.
    fn write_one(
        &mut self,
        pool: &Pool,
        cache: &mut PoolCache,
        mut b: Buf,
        w: Span,
        t: &mut TxTally,
    ) {
        let Span {
            frames: n,
            len,
            skip,
        } = w;
        // What the chain adds behind `b`'s frame.
        let tail = len.saturating_sub(pool.len(&b));
        if self.offloads {
            let hdr_len = self.hdr_len;
            let mut hdr = pool.offload(&b);
            // A header length is only a hint for the kernel, but one past the frame is refused.
            if usize::from(hdr.hdr_len) > len {
                hdr.hdr_len = 0;
            }
            match pool.prepend(&mut b, hdr_len) {
                Some(d) => {
                    hdr.write_len(d, hdr_len);
                }
                None => {
                    t.dropped += n;
                    cache.free(b);
                    self.free_chain(cache);
                    return;
                }
            }
        }
        let parts = 1 + self.chain.len();
        if self.uring.as_ref().is_some_and(|u| {
            u.inflight.len() >= URING_BATCH || u.iovs.len() + parts > u.iovs.capacity()
        }) {
            self.flush_uring(cache, t);
        }
        let fd = self.fd.as_raw_fd();
        let head = pool.data(&b);
        let dlen = head.len() + tail;
        let Ok(wlen) = u32::try_from(dlen) else {
            t.dropped += n;
            cache.free(b);
            self.free_chain(cache);
            return;
        };
        if let Some(u) = self.uring.as_mut() {
            let sqe = if parts == 1 {
                if u.fixed {
                    io_uring::opcode::Write::new(io_uring::types::Fixed(0), head.as_ptr(), wlen)
                        .build()
                } else {
                    io_uring::opcode::Write::new(io_uring::types::Fd(fd), head.as_ptr(), wlen)
                        .build()
                }
            } else {
                // Room was made above: pushing stays within the capacity, so the vectors of
                // entries already queued do not move.
                let start = u.iovs.len();
                u.iovs.push(IoVec(iovec_of(head)));
                for f in &self.chain {
                    u.iovs.push(IoVec(iovec_of(
                        pool.data(f).get(skip..).unwrap_or_default(),
                    )));
                }
                // `IoVec` is a transparent wrapper of `libc::iovec`.
                let v = u.iovs[start..].as_ptr().cast::<libc::iovec>();
                // `parts` is at most CHAIN_MAX + 1.
                let cnt = parts as u32;
                if u.fixed {
                    io_uring::opcode::Writev::new(io_uring::types::Fixed(0), v, cnt).build()
                } else {
                    io_uring::opcode::Writev::new(io_uring::types::Fd(fd), v, cnt).build()
                }
            }
            .user_data(u.inflight.len() as u64);
            // SAFETY: the entry points at `wlen` readable bytes of `b`'s slot, or at iovecs in
            // `u.iovs` (not moved or changed before the flush: see above) over `b` and the
            // buffers of the chain; `b` is held in `inflight` and the chain's buffers in `held`
            // (never freed or written) until `flush_uring` has reaped the entry's completion;
            // a ring that fails first never gives them (or the iovecs) back.
            if unsafe { u.ring.submission().push(&sqe) }.is_ok() {
                u.inflight.push((b, n, len, dlen));
                u.held.append(&mut self.chain);
                return;
            }
            // The submission queue is full (cannot happen below URING_BATCH): what is queued
            // goes first, then this frame directly, so the order holds.
            if parts > 1 {
                let keep = u.iovs.len() - parts;
                u.iovs.truncate(keep);
            }
            self.flush_uring(cache, t);
        }
        let head = pool.data(&b);
        let r = if self.chain.is_empty() {
            // SAFETY: `head` is a readable region of `head.len()` bytes owned through `b`.
            unsafe { libc::write(fd, head.as_ptr().cast(), head.len()) }
        } else {
            let mut iov = [iovec_of(&[]); CHAIN_MAX + 1];
            iov[0] = iovec_of(head);
            for (v, f) in iov[1..].iter_mut().zip(&self.chain) {
                *v = iovec_of(pool.data(f).get(skip..).unwrap_or_default());
            }
            // SAFETY: the first `parts` iovecs describe readable regions of `b` and of the
            // chain's buffers, all held until the call returns; `parts` <= CHAIN_MAX + 1 = the
            // array's length.
            unsafe { libc::writev(fd, iov.as_ptr(), parts as libc::c_int) }
        };
        if r == dlen as isize {
            t.sent += n;
            t.bytes += len as u64;
        } else {
            t.dropped += n;
        }
        cache.free(b);
        self.free_chain(cache);
    }

    /// Frees the buffers of the merge chain.
    fn free_chain(&mut self, cache: &mut PoolCache) {
        for f in self.chain.drain(..) {
            cache.free(f);
        }
    }

    /// Submits the queued writes with one system call, waits for them, counts what the kernel
    /// took and frees the buffers. A ring that fails is dropped (the queue writes plainly from
    /// then on); what it had not completed is kept from the pool (see below).
    fn flush_uring(&mut self, cache: &mut PoolCache, t: &mut TxTally) {
        let Some(u) = self.uring.as_mut() else {
            return;
        };
        if u.inflight.is_empty() {
            return;
        }
        let want = u.inflight.len();
        let mut results = [i32::MIN; URING_BATCH];
        let mut reaped = 0;
        let mut failed = false;
        while reaped < want {
            match u.ring.submit_and_wait(want - reaped) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
            for cqe in u.ring.completion() {
                if let Some(r) = results.get_mut(cqe.user_data() as usize) {
                    *r = cqe.result();
                    reaped += 1;
                }
            }
        }
        let mut inflight = std::mem::take(&mut u.inflight);
        let mut held = std::mem::take(&mut u.held);
        // A write without a completion may still be read by the kernel after the ring's
        // descriptor is closed (its teardown runs in the background): its buffers, the held
        // ones and the iovecs are then never given back (lost to the pool, counted dropped)
        // rather than reused under it. The queue writes plainly from then on.
        let unfinished = failed && results.iter().take(want).any(|&r| r == i32::MIN);
        if unfinished {
            std::mem::forget(std::mem::take(&mut u.iovs));
        }
        u.iovs.clear();
        if failed {
            self.uring = None;
        }
        for (i, (b, n, len, wlen)) in inflight.drain(..).enumerate() {
            let r = results.get(i).copied().unwrap_or(i32::MIN);
            if usize::try_from(r).is_ok_and(|r| r == wlen) {
                t.sent += n;
                t.bytes += len as u64;
            } else {
                t.dropped += n;
            }
            if r != i32::MIN {
                cache.free(b);
            }
        }
        if unfinished {
            held.clear();
        }
        for b in held.drain(..) {
            cache.free(b);
        }
        if let Some(u) = self.uring.as_mut() {
            // The vectors' capacity goes back: no allocation on the next burst.
            u.inflight = inflight;
            u.held = held;
        }
    }
}

/// Most writes queued on a queue's io_uring before they are submitted.
const URING_BATCH: usize = 64;

/// Most segments a merge writes behind its first: the kernel's limit for UDP
/// (`UDP_MAX_SEGMENTS`); a TCP merge stops at 64 KB before it.
const CHAIN_MAX: usize = gro::UDP_MAX_SEGMENTS - 1;

/// Sets the device's offloads: none without `offloads`; else the most of UDP tunnel GSO
/// (`tunnel`) and UDP segmentation offload (`uso`) that the kernel takes on top of checksums and
/// TSO, trying smaller sets where it refuses a combination (EINVAL). Returns (tunnel GSO, USO)
/// as taken.
fn negotiate(fd: &OwnedFd, offloads: bool, tunnel: bool, uso: bool) -> io::Result<(bool, bool)> {
    if !offloads {
        sys::set_offloads(fd, None)?;
        return Ok((false, false));
    }
    let uso_bits = sys::TUN_F_USO4 | sys::TUN_F_USO6;
    let tnl_bits = sys::TUN_F_UDP_TUNNEL_GSO | sys::TUN_F_UDP_TUNNEL_GSO_CSUM;
    let tries = [
        (true, true, VNET_HDR_TNL_LEN, tnl_bits | uso_bits),
        (true, false, VNET_HDR_TNL_LEN, tnl_bits),
        (false, true, VNET_HDR_LEN, uso_bits),
    ];
    for (t, u, len, bits) in tries {
        if (t && !tunnel) || (u && !uso) {
            continue;
        }
        if sys::try_offloads(fd, len, bits)? {
            return Ok((t, u));
        }
    }
    sys::set_offloads(fd, Some(VNET_HDR_LEN))?;
    Ok((false, false))
}

/// A queue's io_uring for batched writes.
struct Uring {
    ring: io_uring::IoUring,
    /// The queue's descriptor is registered with the ring as fixed file 0 (the kernel skips
    /// looking it up for every write).
    fixed: bool,
    /// Buffers whose writes are queued or in flight: the buffer, the frames it stands for, the
    /// frame's length and the bytes written (with the virtio-net header).
    inflight: Vec<(Buf, u64, usize, usize)>,
    /// The buffers of gathered writes after their first (whose entry is in `inflight`), held
    /// until the flush.
    held: Vec<Buf>,
    /// The iovecs of the queued gathered writes; never grown past its capacity, so that
    /// queued entries' pointers into it stay good until the flush.
    iovs: Vec<IoVec>,
}

/// An iovec that a queue's ring keeps for a queued gathered write.
#[repr(transparent)]
struct IoVec(libc::iovec);

// SAFETY: an `IoVec` only points into pool buffers that its queue holds (in `inflight` and
// `held`) while the iovec is in use; it moves between threads with its queue, as those do.
unsafe impl Send for IoVec {}

/// The iovec of `d`.
fn iovec_of(d: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: d.as_ptr().cast_mut().cast(),
        iov_len: d.len(),
    }
}

impl Uring {
    /// A ring of [`URING_BATCH`] entries writing to `fd`, or None where io_uring is not
    /// allowed.
    fn new(fd: RawFd) -> Option<Box<Uring>> {
        let ring = io_uring::IoUring::new(URING_BATCH as u32).ok()?;
        let fixed = ring.submitter().register_files(&[fd]).is_ok();
        Some(Box::new(Uring {
            ring,
            fixed,
            inflight: Vec::with_capacity(URING_BATCH),
            held: Vec::with_capacity(2 * CHAIN_MAX + BURST),
            iovs: Vec::with_capacity(2 * (CHAIN_MAX + 1)),
        }))
    }
}

/// Whether this process may make io_uring rings whose kernel has multishot reads (6.7+): probed
/// once per device opened (io_uring may be switched off by sysctl or a seccomp profile).
fn uring_usable() -> bool {
    let Ok(ring) = io_uring::IoUring::new(2) else {
        return false;
    };
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).is_ok()
        && probe.is_supported(io_uring::opcode::ReadMulti::CODE)
        && probe.is_supported(io_uring::opcode::Write::CODE)
}

/// Whether and how a queue reads through io_uring.
enum RxRingState {
    /// Plain reads.
    Off,
    /// io_uring asked for; the ring is made on the worker's first read.
    Wanted,
    /// Reading through this ring.
    On(Box<RxRing>),
}

impl Drop for Uring {
    fn drop(&mut self) {
        if self.fixed {
            // Now, not when the kernel gets round to tearing the closed ring down: the
            // registration holds the TAP open, and a removed port's device must go with it.
            let _ = self.ring.submitter().unregister_files();
        }
    }
}

/// What one write stands for: `frames` frames, `len` bytes as one frame, and `skip` header
/// bytes of each buffer in the queue's chain that the gathered write leaves out.
#[derive(Clone, Copy)]
struct Span {
    frames: u64,
    len: usize,
    skip: usize,
}

impl Span {
    /// One frame of `len` bytes, nothing chained.
    fn one(len: usize) -> Span {
        Span {
            frames: 1,
            len,
            skip: 0,
        }
    }
}

/// A merge in progress ([`TapQueue::tx_offload`]); its later segments wait in the queue's
/// chain.
struct Merge {
    /// The first segment's buffer, whose headers become the super-frame's.
    head: Buf,
    first: gro::Seg,
    last: gro::Seg,
    /// Segments in it.
    n: u64,
    /// Its length as one frame.
    len: usize,
}

/// What one transmit burst did.
#[derive(Default)]
struct TxTally {
    sent: u64,
    bytes: u64,
    dropped: u64,
    /// UDP super-frames made by merging.
    uso_merged: u64,
}

impl Port for TapQueue {
    fn rx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        if self.dead {
            return 0;
        }
        if !matches!(self.rx_ring, RxRingState::Off) {
            return self.rx_uring(cache, burst, c);
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
            if let Some(m) = self.carry.take() {
                c.tx_dropped.add(m.n);
                cache.free(m.head);
                self.free_chain(cache);
            }
            return 0;
        }
        if self.offloads {
            return self.tx_offload(cache, burst, c, false);
        }
        let pool = std::sync::Arc::clone(cache.pool());
        let mut t = TxTally::default();
        for b in burst.drain() {
            let w = Span::one(pool.len(&b));
            self.write_one(&pool, cache, b, w, &mut t);
        }
        self.flush_uring(cache, &mut t);
        c.tx_packets.add(t.sent);
        c.tx_bytes.add(t.bytes);
        c.tx_dropped.add(t.dropped);
        t.sent as usize
    }

    fn raw_fd(&self) -> Option<RawFd> {
        // A dead queue's descriptor reports an error to every poll: never wait on it.
        (!self.dead).then(|| self.fd.as_raw_fd())
    }

    fn dead(&self) -> bool {
        self.dead
    }

    fn tx_burst_more(
        &mut self,
        cache: &mut PoolCache,
        burst: &mut Burst,
        c: &PortCounters,
    ) -> usize {
        if self.offloads && !self.dead {
            return self.tx_offload(cache, burst, c, true);
        }
        self.tx_burst(cache, burst, c)
    }

    fn release(&mut self, cache: &mut PoolCache) {
        if let Some(m) = self.carry.take() {
            cache.free(m.head);
        }
        self.free_chain(cache);
        self.drop_rx_ring(cache);
        if let Some(b) = self.spare.take() {
            cache.free(b);
        }
        if let Some(b) = self.spare_large.take() {
            cache.free(b);
        }
    }
}
