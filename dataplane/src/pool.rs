//! The packet buffer pool: one mmap'd region of fixed slots, handed out as `u32` indices.
//!
//! Each slot is [`SLOT_SIZE`] bytes: [`HEADROOM`] bytes of headroom (so VXLAN, ESP and VLAN
//! headers can be prepended without moving the payload), then up to [`MAX_FRAME`] bytes of frame.
//! Per-buffer metadata (data offset, length, ingress port, offload work) lives in a parallel array.
//!
//! A pool may also hold *large* slots ([`LARGE_SLOT_SIZE`]) in a second mapping, for TCP
//! super-frames that TAP ports with virtio-net offloads read and write (up to 64 KiB). Their
//! indices follow the small ones; they are never part of the AF_XDP region ([`Pool::region`]),
//! so a port that transmits from the region must see only small buffers ([`Pool::is_large`]).
//!
//! Concurrency contract: the free list is a lock-free bounded ring ([`ArrayQueue`]) shared by
//! every thread; each worker puts a [`PoolCache`] in front of it so that the steady state moves
//! indices between a worker-local stack and the ring only in batches. A [`Buf`] is an owned,
//! non-cloneable handle: whoever holds it has exclusive access to its slot and metadata, which is
//! what makes the safe accessors sound. Memory is reclaimed when the last `Arc<Pool>` drops.

use crate::offload::VnetHdr;
use crossbeam::queue::ArrayQueue;
use std::cell::UnsafeCell;
use std::sync::Arc;

/// Bytes per slot (an AF_XDP frame size).
pub const SLOT_SIZE: usize = 2048;
/// Bytes reserved in front of a received frame for encapsulation headers.
pub const HEADROOM: usize = 256;
/// Largest frame a slot holds.
pub const MAX_FRAME: usize = SLOT_SIZE - HEADROOM;
/// Buffers a worker's cache holds before it returns half to the shared ring.
pub const CACHE_MAX: usize = 512;
/// Buffers moved between a cache and the shared ring at once.
pub const CACHE_BATCH: usize = 128;

/// Most buffers in one pool: indices carry an 8-bit pool tag in their top bits.
pub const MAX_BUFFERS: u32 = 1 << 24;
/// Bytes per large slot: headroom, then a 64 KiB IP packet with its Ethernet and VLAN headers.
pub const LARGE_SLOT_SIZE: usize = 68 * 1024;
/// Largest frame a large slot holds.
pub const LARGE_MAX_FRAME: usize = LARGE_SLOT_SIZE - HEADROOM;
/// Most large buffers in one pool.
pub const MAX_LARGE: u32 = 1 << 14;

/// Tags of the pools alive now (bit `t` for tag `t`, 1..=255): two live pools never share one,
/// so a buffer can never pass for another pool's.
static TAGS_IN_USE: std::sync::Mutex<[u64; 4]> = std::sync::Mutex::new([1, 0, 0, 0]);

fn take_tag() -> Option<u32> {
    let mut used = TAGS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    let t = (1..256u32).find(|&t| used[(t / 64) as usize] & (1 << (t % 64)) == 0)?;
    used[(t / 64) as usize] |= 1 << (t % 64);
    Some(t)
}

fn give_back_tag(t: u32) {
    let mut used = TAGS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    used[(t / 64) as usize & 3] &= !(1 << (t % 64));
}

/// Metadata kept for each buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    /// Offset of the frame's first byte from the slot start.
    off: u32,
    /// Frame length.
    len: u32,
    /// Port the frame arrived on (set by the receiving worker).
    port: u16,
    /// 802.1p priority the frame carried (kept across tag pop and push).
    pcp: u8,
    /// Offload work the frame carries (checksum to complete, segmentation), with `csum_start`
    /// and `hdr_len` kept as offsets from the slot start so that pushing or popping headers in
    /// front of the frame leaves them pointing at the same bytes.
    ol: VnetHdr,
    /// Flag bits: [`FLAG_TRACE`] is the engine's, the rest belong to the features.
    flags: u8,
    /// Opaque per-feature words (DPDK's dynamic fields): a session id, an SA index, a resume
    /// point. The engine copies them with the buffer and never reads them.
    words: [u32; META_WORDS],
}

/// Flag bit: the buffer is being traced (every stage it passes records what it did).
pub const FLAG_TRACE: u8 = 1;
/// Per-buffer opaque metadata words (see [`Pool::word`]).
pub const META_WORDS: usize = 2;

/// An owned packet buffer. Not `Clone`: holding it is the right to touch its slot.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a buffer that is dropped instead of freed is lost to the pool"]
#[repr(transparent)]
pub struct Buf(u32);

impl Buf {
    /// The raw handle (pool tag and slot index), for rings that carry `u32`s.
    #[inline]
    pub fn into_raw(self) -> u32 {
        self.0
    }

    /// Rebuilds a buffer from [`Buf::into_raw`].
    ///
    /// # Safety
    /// `raw` must come from `into_raw` of a buffer that was not freed or rebuilt since, so that
    /// exactly one `Buf` for the slot exists again.
    #[inline]
    pub unsafe fn from_raw(raw: u32) -> Buf {
        Buf(raw)
    }

    #[inline]
    fn slot(&self) -> usize {
        (self.0 & (MAX_BUFFERS - 1)) as usize
    }
}

/// The shared pool.
pub struct Pool {
    base: *mut u8,
    map_len: usize,
    /// The large slots' mapping (null when there are none).
    lbase: *mut u8,
    lmap_len: usize,
    meta: Box<[UnsafeCell<Meta>]>,
    free: ArrayQueue<u32>,
    /// Free large slots (their indices start at `count`).
    lfree: ArrayQueue<u32>,
    tag: u32,
    count: u32,
    large: u32,
    /// `count + large`: slots (and metadata entries) in all.
    slots: u32,
}

// SAFETY: slots and metadata are only reached through an owned `Buf`, which one thread holds at
// a time; the free rings are themselves thread-safe. The two mappings' base pointers are never
// changed or reallocated while the pool lives.
unsafe impl Send for Pool {}
// SAFETY: see `Send`: shared access is only to the thread-safe ring and immutable fields.
unsafe impl Sync for Pool {}

impl Pool {
    /// Maps a pool of `count` buffers (rounded up to at least 64) and no large ones.
    pub fn new(count: u32) -> std::io::Result<Arc<Pool>> {
        Pool::with_large(count, 0)
    }

    /// Maps a pool of `count` buffers (at least 64) and `large` large buffers (at most
    /// [`MAX_LARGE`]; 0 for none).
    pub fn with_large(count: u32, large: u32) -> std::io::Result<Arc<Pool>> {
        let count = count.clamp(64, MAX_BUFFERS - 1 - MAX_LARGE);
        let large = large.min(MAX_LARGE);
        let map_len = count as usize * SLOT_SIZE;
        let lmap_len = large as usize * LARGE_SLOT_SIZE;
        let Some(tag_no) = take_tag() else {
            return Err(std::io::Error::other("255 packet pools are alive already"));
        };
        let base = match map(map_len) {
            Ok(p) => p,
            Err(e) => {
                give_back_tag(tag_no);
                return Err(e);
            }
        };
        let lbase = if large == 0 {
            std::ptr::null_mut()
        } else {
            match map(lmap_len) {
                Ok(p) => p,
                Err(e) => {
                    // SAFETY: `base` was mapped just above with `map_len` bytes, and nothing
                    // refers to it yet.
                    unsafe { libc::munmap(base.cast(), map_len) };
                    give_back_tag(tag_no);
                    return Err(e);
                }
            }
        };
        let tag = tag_no << 24;
        let free = ArrayQueue::new(count as usize);
        for i in 0..count {
            // Cannot fail: the ring has room for exactly `count` entries.
            let _ = free.push(tag | i);
        }
        let lfree = ArrayQueue::new(large.max(1) as usize);
        for i in 0..large {
            // Cannot fail: the ring has room for exactly `large` entries.
            let _ = lfree.push(tag | (count + i));
        }
        let meta = (0..count + large)
            .map(|_| UnsafeCell::new(Meta::default()))
            .collect();
        Ok(Arc::new(Pool {
            base,
            map_len,
            lbase,
            lmap_len,
            meta,
            free,
            lfree,
            tag,
            count,
            large,
            slots: count + large,
        }))
    }

    /// Total (small) buffers in the pool.
    pub fn capacity(&self) -> u32 {
        self.count
    }

    /// Total large buffers in the pool.
    pub fn large_capacity(&self) -> u32 {
        self.large
    }

    /// Large buffers now in the shared ring.
    pub fn large_available(&self) -> usize {
        if self.large == 0 {
            0
        } else {
            self.lfree.len()
        }
    }

    /// Whether `b` is a large buffer (outside the AF_XDP region).
    #[inline]
    pub fn is_large(&self, b: &Buf) -> bool {
        self.check(b) >= self.count as usize
    }

    #[inline]
    fn slot_size(&self, i: usize) -> usize {
        if i < self.count as usize {
            SLOT_SIZE
        } else {
            LARGE_SLOT_SIZE
        }
    }

    /// Buffers now in the shared ring (not counting those in worker caches).
    pub fn available(&self) -> usize {
        self.free.len()
    }

    #[inline]
    fn check(&self, b: &Buf) -> usize {
        // A `Buf` of another pool would alias a slot here: refuse it loudly (a bug, not input).
        // Tags are unique among live pools, and the index bound makes the accessors' pointer
        // arithmetic safe even so.
        // One subtraction checks both: the difference is below `slots` (< 2^24) exactly when
        // the tag byte is ours and the slot index is in range (a smaller raw value wraps to at
        // least 2^32 - tag >= 2^24, a larger tag leaves at least 2^24).
        let i = b.0.wrapping_sub(self.tag);
        assert!(
            i < self.slots,
            "buffer used with a pool that did not allocate it"
        );
        i as usize
    }

    #[inline]
    fn meta(&self, b: &Buf) -> Meta {
        let i = self.check(b);
        // SAFETY: `check` proved the slot index is ours and in range (tag matches, index below
        // count + large, the length of `meta`); the holder of `b` is the only accessor of it.
        unsafe { *self.meta.get_unchecked(i).get() }
    }

    #[inline]
    fn meta_mut<'a>(&'a self, b: &'a mut Buf) -> &'a mut Meta {
        let i = self.check(b);
        // SAFETY: as in `meta` (`i` is below the length of `meta`); `&mut Buf` makes this the
        // only live reference.
        unsafe { &mut *self.meta.get_unchecked(i).get() }
    }

    /// Start of slot `i`.
    ///
    /// # Safety
    /// `i` must be below `count + large` (as [`Pool::check`] proves).
    #[inline]
    unsafe fn slot_ptr(&self, i: usize) -> *mut u8 {
        if i < self.count as usize {
            // SAFETY: i < count, so the offset lies inside the small mapping.
            unsafe { self.base.add(i * SLOT_SIZE) }
        } else {
            // SAFETY: count <= i < count + large (the caller's promise), so the offset lies
            // inside the large mapping, which exists whenever large > 0.
            unsafe { self.lbase.add((i - self.count as usize) * LARGE_SLOT_SIZE) }
        }
    }

    /// The whole slot of `b`, headroom included.
    #[inline]
    pub fn slot_mut<'a>(&'a self, b: &'a mut Buf) -> &'a mut [u8] {
        let i = self.check(b);
        // SAFETY: slot `i` lies inside one of the mappings (`check`), spans `slot_size(i)`
        // bytes, and `&mut Buf` grants exclusive access to it for the lifetime of the borrow.
        unsafe { std::slice::from_raw_parts_mut(self.slot_ptr(i), self.slot_size(i)) }
    }

    #[inline]
    fn slot<'a>(&'a self, b: &'a Buf) -> &'a [u8] {
        let i = self.check(b);
        // SAFETY: as in `slot_mut`; no `&mut` to the slot can coexist with this `&Buf` borrow.
        unsafe { std::slice::from_raw_parts(self.slot_ptr(i), self.slot_size(i)) }
    }

    /// The frame bytes of `b`.
    #[inline]
    pub fn data<'a>(&'a self, b: &'a Buf) -> &'a [u8] {
        let m = self.meta(b);
        let (off, len) = (m.off as usize, m.len as usize);
        // Offsets are only set through `set_frame`/`prepend`/`trim_front`, which keep them in range.
        &self.slot(b)[off..off + len]
    }

    /// The frame bytes of `b`, writable.
    #[inline]
    pub fn data_mut<'a>(&'a self, b: &'a mut Buf) -> &'a mut [u8] {
        let m = self.meta(b);
        let (off, len) = (m.off as usize, m.len as usize);
        &mut self.slot_mut(b)[off..off + len]
    }

    /// Where the frame of `b` starts within its slot ([`Pool::slot_mut`]).
    #[inline]
    pub fn offset(&self, b: &Buf) -> usize {
        self.meta(b).off as usize
    }

    /// Frame length of `b`.
    #[inline]
    pub fn len(&self, b: &Buf) -> usize {
        self.meta(b).len as usize
    }

    /// Sets the frame to `len` bytes starting at `off` from the slot start (clamped to the slot).
    #[inline]
    pub fn set_frame(&self, b: &mut Buf, off: usize, len: usize) {
        let size = self.slot_size(self.check(b));
        let off = off.min(size);
        let len = len.min(size - off);
        let m = self.meta_mut(b);
        // Slots are at most LARGE_SLOT_SIZE bytes: both fit a u32.
        m.off = off as u32;
        m.len = len as u32;
    }

    /// Makes the frame run from its start to the end of the slot: room to build a frame into
    /// (its real length is set once it is built).
    #[inline]
    pub fn extend_to_slot(&self, b: &mut Buf) {
        let off = self.meta(b).off as usize;
        let size = self.slot_size(self.check(b));
        self.set_frame(b, off, size.saturating_sub(off));
    }

    /// Sets the frame length, keeping the start (the receive path: start is at [`HEADROOM`]).
    #[inline]
    pub fn set_len(&self, b: &mut Buf, len: usize) {
        let off = self.meta(b).off as usize;
        self.set_frame(b, off, len);
    }

    /// Writable space for a frame received into `b`: from [`HEADROOM`] to the slot end.
    #[inline]
    pub fn rx_space<'a>(&'a self, b: &'a mut Buf) -> &'a mut [u8] {
        &mut self.slot_mut(b)[HEADROOM..]
    }

    /// Grows the frame by `n` bytes at the front, into the headroom; `None` if there is no room.
    #[inline]
    pub fn prepend<'a>(&'a self, b: &'a mut Buf, n: usize) -> Option<&'a mut [u8]> {
        let m = self.meta(b);
        let off = (m.off as usize).checked_sub(n)?;
        self.set_frame(b, off, m.len as usize + n);
        Some(self.data_mut(b))
    }

    /// Removes `n` bytes from the front of the frame; `false` if the frame is shorter.
    #[inline]
    pub fn trim_front(&self, b: &mut Buf, n: usize) -> bool {
        let m = self.meta(b);
        if (m.len as usize) < n {
            return false;
        }
        self.set_frame(b, m.off as usize + n, m.len as usize - n);
        true
    }

    /// The port `b` arrived on.
    #[inline]
    pub fn port(&self, b: &Buf) -> u16 {
        self.meta(b).port
    }

    /// The offload work `b` carries (all zero for most frames), with `csum_start` and `hdr_len`
    /// counted from the frame's first byte as it is now. A `csum_start` that lies in front of the
    /// frame (its headers were trimmed away) reads as `u16::MAX`, which no frame reaches.
    #[inline]
    pub fn offload(&self, b: &Buf) -> VnetHdr {
        let m = self.meta(b);
        if m.ol.is_plain() {
            return VnetHdr::default();
        }
        // u16::MAX marks an offset that did not fit when it was recorded: it stays unreachable.
        let rel = |abs: u16| {
            // 0 is "not given" (no real offset lies in the headroom); u16::MAX is unreachable.
            if abs == 0 || abs == u16::MAX {
                return abs;
            }
            u32::from(abs)
                .checked_sub(m.off)
                .map_or(u16::MAX, |v| u16::try_from(v).unwrap_or(u16::MAX))
        };
        VnetHdr {
            csum_start: rel(m.ol.csum_start),
            hdr_len: rel(m.ol.hdr_len),
            outer_th: rel(m.ol.outer_th),
            inner_nh: rel(m.ol.inner_nh),
            ..m.ol
        }
    }

    /// Whether `b` carries offload work (a checksum to complete or a super-frame to cut).
    #[inline]
    pub fn has_offload(&self, b: &Buf) -> bool {
        !self.meta(b).ol.is_plain()
    }

    /// Whether `b` is a UDP super-frame (see [`VnetHdr::is_udp_gso`]).
    #[inline]
    pub fn is_udp_gso(&self, b: &Buf) -> bool {
        self.meta(b).ol.is_udp_gso()
    }

    /// Whether `b` is a UDP tunnel super-frame (see [`VnetHdr::is_tunnel_gso`]).
    #[inline]
    pub fn is_tunnel_gso(&self, b: &Buf) -> bool {
        self.meta(b).ol.is_tunnel_gso()
    }

    /// Records the offload work `b` carries; offsets count from the frame's first byte now.
    #[inline]
    pub fn set_offload(&self, b: &mut Buf, o: VnetHdr) {
        let m = self.meta_mut(b);
        let abs = |rel: u16| {
            if rel == 0 {
                return 0;
            }
            u16::try_from(m.off + u32::from(rel))
                .ok()
                .filter(|&a| a != u16::MAX)
                .unwrap_or(u16::MAX)
        };
        m.ol = VnetHdr {
            csum_start: abs(o.csum_start),
            hdr_len: abs(o.hdr_len),
            outer_th: abs(o.outer_th),
            inner_nh: abs(o.inner_nh),
            ..o
        };
    }

    /// The 802.1p priority recorded for `b` (0 unless a stage set it).
    #[inline]
    pub fn pcp(&self, b: &Buf) -> u8 {
        self.meta(b).pcp
    }

    /// Records `b`'s 802.1p priority.
    #[inline]
    pub fn set_pcp(&self, b: &mut Buf, pcp: u8) {
        self.meta_mut(b).pcp = pcp & 7;
    }

    /// Records the port `b` arrived on.
    #[inline]
    pub fn set_port(&self, b: &mut Buf, port: u16) {
        self.meta_mut(b).port = port;
    }

    /// The buffer's flag bits ([`FLAG_TRACE`] and the features' own).
    #[inline]
    pub fn flags(&self, b: &Buf) -> u8 {
        self.meta(b).flags
    }

    /// Sets the buffer's flag bits.
    #[inline]
    pub fn set_flags(&self, b: &mut Buf, flags: u8) {
        self.meta_mut(b).flags = flags;
    }

    /// Whether the buffer is traced.
    #[inline]
    pub fn traced(&self, b: &Buf) -> bool {
        self.meta(b).flags & FLAG_TRACE != 0
    }

    /// Opaque per-feature word `i` (0 for an index out of range).
    #[inline]
    pub fn word(&self, b: &Buf, i: usize) -> u32 {
        self.meta(b).words.get(i).copied().unwrap_or(0)
    }

    /// Sets opaque per-feature word `i` (ignored for an index out of range).
    #[inline]
    pub fn set_word(&self, b: &mut Buf, i: usize, v: u32) {
        if let Some(w) = self.meta_mut(b).words.get_mut(i) {
            *w = v;
        }
    }

    /// Copies `frame` into `b` at [`HEADROOM`]; `false` (and `b` unchanged) if it does not fit.
    #[inline]
    pub fn fill(&self, b: &mut Buf, frame: &[u8]) -> bool {
        let Some(dst) = self.rx_space(b).get_mut(..frame.len()) else {
            return false;
        };
        dst.copy_from_slice(frame);
        self.set_frame(b, HEADROOM, frame.len());
        true
    }

    /// The pool's memory: base address and length in bytes (for registering it as an AF_XDP
    /// UMEM, so frames are never copied between a socket and the pipeline).
    pub fn region(&self) -> (*mut u8, usize) {
        (self.base, self.map_len)
    }

    /// Offset of `b`'s frame from the region start (an AF_XDP descriptor address). Only small
    /// buffers lie in the region: for a large one ([`Pool::is_large`]) the value is meaningless.
    #[inline]
    pub fn frame_addr(&self, b: &Buf) -> u64 {
        let m = self.meta(b);
        debug_assert!(!self.is_large(b), "a large buffer has no AF_XDP address");
        (b.slot() * SLOT_SIZE + m.off as usize) as u64
    }

    /// Offset of `b`'s slot from the region start (small buffers only, as for `frame_addr`).
    #[inline]
    pub fn slot_addr(&self, b: &Buf) -> u64 {
        self.check(b);
        (b.slot() * SLOT_SIZE) as u64
    }

    /// Rebuilds the buffer whose slot contains region offset `addr`, with its frame set to `len`
    /// bytes at `addr`; `None` if `addr` lies outside the pool or the frame would overrun its slot.
    ///
    /// # Safety
    /// The slot must be owned by the caller: handed out as a buffer that was turned into an
    /// address with [`Pool::slot_addr`] or [`Pool::frame_addr`] and [`Buf::into_raw`]-style
    /// forgotten, and not rebuilt since (the kernel gives each address back exactly once).
    #[inline]
    pub unsafe fn buf_at(&self, addr: u64, len: usize) -> Option<Buf> {
        let addr = usize::try_from(addr).ok()?;
        let slot = addr / SLOT_SIZE;
        let off = addr % SLOT_SIZE;
        if slot >= self.count as usize || off + len > SLOT_SIZE {
            return None;
        }
        let mut b = Buf(self.tag | slot as u32);
        *self.meta_mut(&mut b) = Meta::default();
        self.set_frame(&mut b, off, len);
        Some(b)
    }

    /// Clears `b`'s metadata and gives it an empty frame at [`HEADROOM`].
    #[inline]
    fn reset(&self, b: &mut Buf) {
        *self.meta_mut(b) = Meta {
            off: HEADROOM as u32,
            len: 0,
            port: 0,
            pcp: 0,
            ol: VnetHdr::default(),
            flags: 0,
            words: [0; META_WORDS],
        };
    }

    /// Takes a buffer straight from the shared ring (control paths; workers use a [`PoolCache`]).
    pub fn alloc_shared(&self) -> Option<Buf> {
        let mut b = Buf(self.free.pop()?);
        self.reset(&mut b);
        Some(b)
    }

    /// Takes a large buffer from the shared ring; `None` when there are none (left).
    #[inline]
    pub fn alloc_large(&self) -> Option<Buf> {
        if self.large == 0 {
            return None;
        }
        let mut b = Buf(self.lfree.pop()?);
        self.reset(&mut b);
        Some(b)
    }

    /// Returns a buffer straight to the shared ring.
    pub fn free_shared(&self, b: Buf) {
        if self.check(&b) >= self.count as usize {
            // Cannot fail: the large ring holds every large buffer of the pool.
            let _ = self.lfree.push(b.0);
        } else {
            // Cannot fail: the ring holds every buffer of the pool, so there is always room.
            let _ = self.free.push(b.0);
        }
    }
}

/// An anonymous private mapping of `len` bytes, advised for huge pages.
fn map(len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    crate::hugemem::advise_huge(p.cast(), len);
    Ok(p.cast())
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `with_large` with this length and nothing refers to
        // it once the last `Arc<Pool>` is gone.
        unsafe {
            libc::munmap(self.base.cast(), self.map_len);
        }
        if !self.lbase.is_null() {
            // SAFETY: as above, for the large slots' mapping.
            unsafe {
                libc::munmap(self.lbase.cast(), self.lmap_len);
            }
        }
        give_back_tag(self.tag >> 24);
    }
}

/// A worker's private cache in front of the shared ring (DPDK's mempool cache).
pub struct PoolCache {
    pool: Arc<Pool>,
    stash: Vec<u32>,
}

impl PoolCache {
    /// A cache over `pool`; allocates its stack once, here.
    pub fn new(pool: Arc<Pool>) -> PoolCache {
        PoolCache {
            pool,
            stash: Vec::with_capacity(CACHE_MAX),
        }
    }

    /// The shared pool, for data access.
    #[inline]
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// A buffer with an empty frame at [`HEADROOM`], or `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&mut self) -> Option<Buf> {
        if self.stash.is_empty() {
            while self.stash.len() < CACHE_BATCH {
                match self.pool.free.pop() {
                    Some(i) => self.stash.push(i),
                    None => break,
                }
            }
        }
        let mut b = Buf(self.stash.pop()?);
        self.pool.reset(&mut b);
        Some(b)
    }

    /// Returns a buffer.
    #[inline]
    pub fn free(&mut self, b: Buf) {
        if self.pool.check(&b) >= self.pool.count as usize {
            self.pool.free_shared(b);
            return;
        }
        if self.stash.len() >= CACHE_MAX {
            self.spill(CACHE_BATCH);
        }
        self.stash.push(b.0);
    }

    fn spill(&mut self, n: usize) {
        for _ in 0..n {
            let Some(i) = self.stash.pop() else { break };
            // Cannot fail: the ring has room for every buffer of the pool.
            let _ = self.pool.free.push(i);
        }
    }

    /// A copy of `b` (frame, priority, ingress port and offload work) in a new buffer of a class
    /// that holds it: a small one when the frame fits, else a large one. `None` when the pool
    /// has no buffer of that class left.
    pub fn clone_buf(&mut self, b: &Buf) -> Option<Buf> {
        let pool = Arc::clone(&self.pool);
        let data = pool.data(b);
        let mut c = if data.len() <= MAX_FRAME {
            self.alloc()?
        } else {
            pool.alloc_large()?
        };
        if !pool.fill(&mut c, data) {
            self.free(c);
            return None;
        }
        pool.set_pcp(&mut c, pool.pcp(b));
        pool.set_port(&mut c, pool.port(b));
        pool.set_offload(&mut c, pool.offload(b));
        let (flags, words) = (pool.meta(b).flags, pool.meta(b).words);
        let m = pool.meta_mut(&mut c);
        m.flags = flags;
        m.words = words;
        Some(c)
    }

    /// Buffers held by this cache.
    pub fn cached(&self) -> usize {
        self.stash.len()
    }
}

impl Drop for PoolCache {
    fn drop(&mut self) {
        let n = self.stash.len();
        self.spill(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_fill_prepend_trim_free() {
        let pool = Pool::new(64).unwrap();
        let mut cache = PoolCache::new(pool.clone());
        let mut b = cache.alloc().unwrap();
        assert!(pool.fill(&mut b, &[1, 2, 3, 4]));
        assert_eq!(pool.data(&b), &[1, 2, 3, 4]);
        let hdr = pool.prepend(&mut b, 2).unwrap();
        hdr[..2].copy_from_slice(&[9, 9]);
        assert_eq!(pool.data(&b), &[9, 9, 1, 2, 3, 4]);
        assert!(pool.trim_front(&mut b, 3));
        assert_eq!(pool.data(&b), &[2, 3, 4]);
        assert!(!pool.trim_front(&mut b, 4));
        assert!(pool.prepend(&mut b, HEADROOM + 10).is_none());
        assert!(!pool.fill(&mut b, &[0u8; MAX_FRAME + 1]));
        cache.free(b);
        drop(cache);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn exhaustion_returns_none_and_recovers() {
        let pool = Pool::new(64).unwrap();
        let mut cache = PoolCache::new(pool.clone());
        let mut held = Vec::new();
        while let Some(b) = cache.alloc() {
            held.push(b);
        }
        assert_eq!(held.len(), 64);
        for b in held {
            cache.free(b);
        }
        assert!(cache.alloc().is_some_and(|b| {
            cache.free(b);
            true
        }));
    }

    #[test]
    #[should_panic(expected = "did not allocate")]
    fn refuses_a_buffer_of_another_pool() {
        let a = Pool::new(64).unwrap();
        let b = Pool::new(64).unwrap();
        let buf = a.alloc_shared().unwrap();
        b.free_shared(buf);
    }
}
