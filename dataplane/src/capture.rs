//! Packet capture taps at the port boundary (DPDK's pdump callbacks): a worker copies the first
//! `snaplen` bytes of frames it receives on, or transmits on, a tapped port into a [`Capture`]
//! ring; the control thread drains the ring and hands the records to whoever asked.
//!
//! Concurrency contract. A `Capture` is shared (`Arc`) by the workers that tap a port
//! (producers) and the control thread (the one consumer). Its slab holds `slots` fixed slots of
//! `snaplen` bytes plus metadata, allocated once. Every slot index is, at any time, in exactly
//! one of three places: the `free` queue, the `filled` queue, or held by one thread. A producer
//! pops an index from `free` (the slot is then its own), writes it, and pushes it on `filled`;
//! the consumer pops it from `filled`, reads it, and pushes it back on `free` (when the
//! [`Record`] drops). The queues' push (release) and pop (acquire) order the slot's bytes
//! between the two threads, so a slot is never written and read at once. When `free` is empty
//! the producer counts the frame in `missed` and moves on: forwarding never waits for the
//! reader, and the producer never allocates. Memory is reclaimed when the last `Arc` drops: the
//! daemon's, after every worker has applied the `Untap` (or the port's `Detach`).
//!
//! One ring per capture, shared by every worker that taps it (the queues are multi-producer):
//! the control thread then drains one queue per capture, and records come out in about the
//! order they were taken. Only captured frames touch the shared queues; a port without a tap
//! costs one branch per burst.

use crate::pool::{Buf, Pool};
use crate::port::PortId;
use crossbeam::queue::ArrayQueue;
use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest snapshot length a capture may ask for (pcap's customary limit for Ethernet).
pub const MAX_SNAPLEN: usize = 65535;
/// Bytes a capture ring aims for; the slot count follows from the snapshot length.
pub const RING_BYTES: usize = 32 << 20;
/// Fewest slots a ring has, however long its snapshots.
pub const MIN_SLOTS: usize = 64;
/// Most slots a ring has, however short its snapshots.
pub const MAX_SLOTS: usize = 8192;

/// Which way a frame was going when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received on the port.
    Rx,
    /// Transmitted on the port.
    Tx,
}

/// What a capture keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// Frames received on the port.
    pub rx: bool,
    /// Frames transmitted on the port.
    pub tx: bool,
    /// Only frames whose outer 802.1Q tag carries this VLAN id (a subinterface's trunk).
    pub vid: Option<u16>,
}

/// Why a capture cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureError {
    /// The snapshot length is 0 or over [`MAX_SNAPLEN`].
    BadSnaplen,
    /// The ring has fewer than one slot or more than [`MAX_SLOTS`].
    BadSlots,
}

#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    ts_ns: u64,
    orig_len: u32,
    cap_len: u32,
    port: PortId,
    dir_tx: bool,
}

/// A capture ring: a fixed slab of snapshot slots and the free/filled index queues.
pub struct Capture {
    snaplen: usize,
    slots: usize,
    /// `slots * snaplen` bytes, from `Box<[u8]>::into_raw`; freed in `Drop`.
    data: NonNull<u8>,
    meta: Box<[UnsafeCell<Meta>]>,
    free: ArrayQueue<u32>,
    filled: ArrayQueue<u32>,
    filter: Filter,
    /// Frames to take before the capture is complete (`u64::MAX`: no end).
    limit: u64,
    /// Frames taken: slots claimed, counting those being written (may pass `limit` briefly).
    taken: AtomicU64,
    /// Frames written and on `filled` (trails `taken` while a producer copies).
    published: AtomicU64,
    /// Frames that matched while no slot was free (the reader fell behind).
    missed: AtomicU64,
}

// SAFETY: the slab is reached only through slot indices, and an index is owned by one thread at
// a time (the module's concurrency contract); the queues and counters are thread-safe.
unsafe impl Send for Capture {}
// SAFETY: as for `Send`: shared access never touches a slot another thread holds.
unsafe impl Sync for Capture {}

impl Capture {
    /// A ring of `slots` snapshots of up to `snaplen` bytes, keeping frames that pass `filter`
    /// until `limit` are taken (`None`: no end).
    pub fn new(
        snaplen: usize,
        slots: usize,
        filter: Filter,
        limit: Option<u64>,
    ) -> Result<Capture, CaptureError> {
        if snaplen == 0 || snaplen > MAX_SNAPLEN {
            return Err(CaptureError::BadSnaplen);
        }
        if slots == 0 || slots > MAX_SLOTS {
            return Err(CaptureError::BadSlots);
        }
        // Zeroed memory comes from calloc: pages are only mapped as snapshots touch them.
        let slab = vec![0u8; slots * snaplen].into_boxed_slice();
        let data = NonNull::new(Box::into_raw(slab).cast::<u8>()).ok_or(CaptureError::BadSlots)?;
        let free = ArrayQueue::new(slots);
        for i in 0..slots as u32 {
            // Cannot fail: the queue holds exactly `slots` indices.
            let _ = free.push(i);
        }
        Ok(Capture {
            snaplen,
            slots,
            data,
            meta: (0..slots)
                .map(|_| UnsafeCell::new(Meta::default()))
                .collect(),
            free,
            filled: ArrayQueue::new(slots),
            filter,
            limit: limit.unwrap_or(u64::MAX),
            taken: AtomicU64::new(0),
            published: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        })
    }

    /// The slot count that fits [`RING_BYTES`] for `snaplen`, within the slot bounds.
    pub fn default_slots(snaplen: usize) -> usize {
        (RING_BYTES / snaplen.max(1)).clamp(MIN_SLOTS, MAX_SLOTS)
    }

    /// What the capture keeps.
    #[inline]
    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// The snapshot length.
    #[inline]
    pub fn snaplen(&self) -> usize {
        self.snaplen
    }

    /// Slots in the ring.
    #[inline]
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Frames taken so far.
    #[inline]
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed).min(self.limit)
    }

    /// Frames lost because the ring was full.
    #[inline]
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Whether the count was reached and every frame of it is on the ring: nothing more will
    /// come, so a reader that finds the ring empty after this is done.
    #[inline]
    pub fn complete(&self) -> bool {
        self.published.load(Ordering::Acquire) >= self.limit
    }

    /// Whether a frame taken now would be kept by the VLAN filter.
    #[inline]
    fn matches(&self, frame: &[u8]) -> bool {
        match self.filter.vid {
            None => true,
            Some(vid) => match frame.get(12..16) {
                Some(&[0x81, 0x00, hi, lo]) => u16::from_be_bytes([hi, lo]) & 0x0fff == vid,
                _ => false,
            },
        }
    }

    /// Takes snapshots of `bufs` (a burst on `port`, going `dir`, at `ts_ns` real-time
    /// nanoseconds). The worker calls it once per burst of a tapped port; it never blocks or
    /// allocates.
    pub fn tap(&self, pool: &Pool, bufs: &[Buf], port: PortId, dir: Direction, ts_ns: u64) {
        for b in bufs {
            let frame = pool.data(b);
            if !self.matches(frame) {
                continue;
            }
            if self.taken.load(Ordering::Relaxed) >= self.limit {
                return;
            }
            if pool.is_udp_gso(b) {
                self.take_datagrams(frame, &pool.offload(b), port, dir, ts_ns);
                continue;
            }
            self.take(frame, port, dir, ts_ns);
        }
    }

    /// A UDP super-frame is shown as the datagrams it stands for, each as it goes on the wire
    /// (one UDP header for all of them would not decode as any packet: an ESP-in-UDP capture
    /// could not be decrypted). Taken whole if it cannot be cut (no datagram bigger than a
    /// jumbo frame is cut here).
    fn take_datagrams(
        &self,
        frame: &[u8],
        ol: &crate::offload::VnetHdr,
        port: PortId,
        dir: Direction,
        ts_ns: u64,
    ) {
        const DGRAM_MAX: usize = 9216;
        let Ok(plan) = crate::offload::UdpSegments::plan(frame, ol, DGRAM_MAX) else {
            return self.take(frame, port, dir, ts_ns);
        };
        let mut d = [0u8; DGRAM_MAX];
        for k in 0..plan.count {
            if self.taken.load(Ordering::Relaxed) >= self.limit {
                return;
            }
            match plan.write_segment(frame, k, &mut d) {
                Ok(n) => self.take(d.get(..n).unwrap_or(&[]), port, dir, ts_ns),
                Err(_) => return,
            }
        }
    }

    /// Copies one frame into a free slot, or counts it missed.
    fn take(&self, frame: &[u8], port: PortId, dir: Direction, ts_ns: u64) {
        let Some(i) = self.free.pop() else {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.taken.fetch_add(1, Ordering::Relaxed) >= self.limit {
            // Another worker took the last one first.
            let _ = self.free.push(i);
            return;
        }
        let n = frame.len().min(self.snaplen);
        let idx = i as usize;
        // SAFETY: `i` came off `free`, so this thread owns slot `i` until it pushes it on
        // `filled`; `idx < slots`, so the slot's `snaplen` bytes lie inside the slab, and
        // `n <= snaplen`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.data.as_ptr().add(idx * self.snaplen),
                n,
            );
        }
        if let Some(cell) = self.meta.get(idx) {
            // SAFETY: slot `i` is owned here (above); nobody else reads or writes its metadata.
            unsafe {
                *cell.get() = Meta {
                    ts_ns,
                    orig_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
                    cap_len: n as u32,
                    port,
                    dir_tx: dir == Direction::Tx,
                };
            }
        }
        // Cannot fail: the queues together hold each of the `slots` indices at most once.
        let _ = self.filled.push(i);
        self.published.fetch_add(1, Ordering::Release);
    }

    /// The oldest snapshot not read yet; its slot goes back to the ring when it drops.
    pub fn pop(&self) -> Option<Record<'_>> {
        let idx = self.filled.pop()?;
        Some(Record { cap: self, idx })
    }

    /// Snapshots waiting to be read.
    pub fn pending(&self) -> usize {
        self.filled.len()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let len = self.slots * self.snaplen;
        let slab = std::ptr::slice_from_raw_parts_mut(self.data.as_ptr(), len);
        // SAFETY: `data` came from `Box::into_raw` of a `[u8]` of exactly `len` bytes, and is
        // freed only here, once, when no thread can hold a slot any more (`&mut self`).
        drop(unsafe { Box::from_raw(slab) });
    }
}

/// One snapshot, read by the consumer.
pub struct Record<'a> {
    cap: &'a Capture,
    idx: u32,
}

impl Record<'_> {
    fn meta(&self) -> Meta {
        match self.cap.meta.get(self.idx as usize) {
            // SAFETY: the slot came off `filled`: this record owns it until it drops, and the
            // producer's writes happened before its push (queue release/acquire).
            Some(cell) => unsafe { *cell.get() },
            None => Meta::default(),
        }
    }

    /// Real-time nanoseconds since the Unix epoch when the frame was taken.
    pub fn ts_ns(&self) -> u64 {
        self.meta().ts_ns
    }

    /// The frame's length on the wire.
    pub fn orig_len(&self) -> u32 {
        self.meta().orig_len
    }

    /// The port it was taken on.
    pub fn port(&self) -> PortId {
        self.meta().port
    }

    /// Which way it was going.
    pub fn direction(&self) -> Direction {
        if self.meta().dir_tx {
            Direction::Tx
        } else {
            Direction::Rx
        }
    }

    /// The snapshot: the frame's first `min(orig_len, snaplen)` bytes.
    pub fn data(&self) -> &[u8] {
        let n = (self.meta().cap_len as usize).min(self.cap.snaplen);
        let idx = self.idx as usize;
        if idx >= self.cap.slots {
            return &[];
        }
        // SAFETY: `idx < slots` and `n <= snaplen`, so the bytes lie inside the slab; the slot
        // is owned by this record (see `meta`) and nobody writes it while the borrow lives.
        unsafe { std::slice::from_raw_parts(self.cap.data.as_ptr().add(idx * self.cap.snaplen), n) }
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        // Cannot fail: the index came off `filled`, so `free` has room for it.
        let _ = self.cap.free.push(self.idx);
    }
}

/// Real time (`CLOCK_REALTIME`) in nanoseconds since the Unix epoch, for capture timestamps.
/// Read once per tapped burst (a vDSO call, no syscall).
#[inline]
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolCache;

    const ALL: Filter = Filter {
        rx: true,
        tx: true,
        vid: None,
    };

    fn frames(cache: &mut PoolCache, n: usize, len: usize) -> Vec<Buf> {
        (0..n)
            .map(|i| {
                let mut b = cache.alloc().unwrap();
                let frame: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                assert!(cache.pool().fill(&mut b, &frame));
                b
            })
            .collect()
    }

    #[test]
    fn a_udp_super_frame_shows_as_its_datagrams() {
        use crate::offload::{VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4};
        let pool = Pool::with_large(64, 2).unwrap();
        // Three datagrams of 1 000, 1 000 and 300 payload bytes behind one header.
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total = (20 + 8 + 2300) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = crate::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&[0x11, 0x94, 0x11, 0x94]);
        f.extend_from_slice(&(total - 20).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend((0..2300u32).map(|i| (i / 1000) as u8 + 1));
        let mut b = pool.alloc_large().unwrap();
        assert!(pool.fill(&mut b, &f));
        let ol = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
            hdr_len: 42,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 6,
            ..Default::default()
        };
        pool.set_offload(&mut b, ol);
        let cap = Capture::new(2048, 8, ALL, None).unwrap();
        cap.tap(&pool, std::slice::from_ref(&b), 1, Direction::Tx, 7);
        assert_eq!(cap.taken(), 3, "one record per datagram");
        for (k, len) in [(1u8, 1000usize), (2, 1000), (3, 300)] {
            let r = cap.pop().unwrap();
            let d = r.data();
            assert_eq!(d.len(), 42 + len);
            assert_eq!(usize::from(u16::from_be_bytes([d[16], d[17]])), 28 + len);
            assert_eq!(usize::from(u16::from_be_bytes([d[38], d[39]])), 8 + len);
            assert_eq!(
                crate::checksum::checksum(&d[14..34]),
                0,
                "IPv4 header checksum"
            );
            assert!(d[42..].iter().all(|&x| x == k), "datagram {k}'s payload");
        }
        pool.free_shared(b);
    }

    #[test]
    fn full_ring_counts_missed_and_slots_come_back() {
        let pool = Pool::new(64).unwrap();
        let mut cache = PoolCache::new(pool.clone());
        let bufs = frames(&mut cache, 6, 100);
        let cap = Capture::new(64, 4, ALL, None).unwrap();
        cap.tap(&pool, &bufs, 3, Direction::Rx, 42);
        assert_eq!((cap.taken(), cap.missed(), cap.pending()), (4, 2, 4));
        {
            let r = cap.pop().unwrap();
            assert_eq!((r.ts_ns(), r.orig_len(), r.port()), (42, 100, 3));
            assert_eq!(r.direction(), Direction::Rx);
            assert_eq!(r.data().len(), 64, "cut to the snapshot length");
            assert_eq!(r.data()[..3], [0, 1, 2]);
            let r2 = cap.pop().unwrap();
            assert_eq!(r2.data()[0], 1, "records come out in order");
        }
        // Two slots came back: two more frames fit, the third is missed.
        cap.tap(&pool, &bufs[..3], 3, Direction::Tx, 43);
        assert_eq!((cap.taken(), cap.missed(), cap.pending()), (6, 3, 4));
        while let Some(r) = cap.pop() {
            drop(r);
        }
        assert_eq!(cap.pending(), 0);
        cap.tap(&pool, &bufs[..4], 3, Direction::Tx, 44);
        assert_eq!(cap.pending(), 4, "every slot is free again");
        for b in bufs {
            cache.free(b);
        }
    }

    #[test]
    fn a_count_ends_the_capture_and_the_vlan_filter_keeps_one_vid() {
        let pool = Pool::new(64).unwrap();
        let mut cache = PoolCache::new(pool.clone());
        let mut tagged = |vid: u16| {
            let mut f = vec![0u8; 60];
            f[12..14].copy_from_slice(&[0x81, 0x00]);
            f[14..16].copy_from_slice(&vid.to_be_bytes());
            let mut b = cache.alloc().unwrap();
            assert!(pool.fill(&mut b, &f));
            b
        };
        let bufs = vec![tagged(10), tagged(20), tagged(10), tagged(10)];
        let f = Filter {
            vid: Some(10),
            ..ALL
        };
        let cap = Capture::new(1500, 8, f, Some(2)).unwrap();
        cap.tap(&pool, &bufs, 0, Direction::Rx, 1);
        assert_eq!((cap.taken(), cap.missed()), (2, 0));
        assert!(cap.complete());
        while let Some(r) = cap.pop() {
            assert_eq!(r.data()[14..16], [0, 10]);
        }
        for b in bufs {
            cache.free(b);
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(
            Capture::new(0, 4, ALL, None).err(),
            Some(CaptureError::BadSnaplen)
        );
        assert_eq!(
            Capture::new(MAX_SNAPLEN + 1, 4, ALL, None).err(),
            Some(CaptureError::BadSnaplen)
        );
        assert_eq!(
            Capture::new(64, 0, ALL, None).err(),
            Some(CaptureError::BadSlots)
        );
        assert_eq!(Capture::default_slots(MAX_SNAPLEN), 512);
        assert_eq!(Capture::default_slots(64), MAX_SLOTS);
    }
}
