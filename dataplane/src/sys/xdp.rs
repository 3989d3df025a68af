//! AF_XDP sockets: UMEM registration, the four rings (fill, completion, rx, tx) mapped into our
//! address space, bind, and the wake-up kicks.
//!
//! Ring protocol (as in the kernel's `xsk_queue.h` and libbpf's `xsk.h`): each ring is a
//! power-of-two array of descriptors with a producer and a consumer index, free-running `u32`s
//! compared with wrapping arithmetic. We produce on the fill and tx rings and consume the rx and
//! completion rings; the kernel does the opposite. A producer writes descriptors, then publishes
//! the producer index with a release store; a consumer reads the producer index with an acquire
//! load, reads the descriptors, then publishes its consumer index with a release store, which
//! hands the slots back. Indices are cached locally so that a burst costs one acquire load and
//! one release store per ring, never one per packet.
//!
//! Ownership: an [`XskSocket`] owns its descriptor and its four mappings. The mappings are
//! dropped before the descriptor (field order), and only then does closing the descriptor
//! release the socket: a mapping holds a reference on the socket's file, so a socket whose rings
//! are still mapped stays alive after `close`. Once the last reference goes, the kernel has
//! unbound the socket (`synchronize_net` in `xsk_release`) and writes no more frames into the
//! UMEM, so whoever tracked the frames lent to the kernel may reuse them.

use super::cvt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// One rx or tx descriptor.
pub type XdpDesc = libc::xdp_desc;

/// Ring sizes (entries, each a power of two).
#[derive(Debug, Clone, Copy)]
pub struct RingSizes {
    /// Fill ring (frames lent to the kernel for receiving).
    pub fill: u32,
    /// Completion ring (transmitted frames handed back).
    pub comp: u32,
    /// Receive ring.
    pub rx: u32,
    /// Transmit ring.
    pub tx: u32,
}

/// How to bind: let the kernel choose, or insist on a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy where the driver supports it, copy mode otherwise (the kernel's choice).
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero-copy only; the bind fails where the driver cannot.
    ZeroCopy,
}

/// A private mapping of one ring, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, pgoff: u64) -> io::Result<Mapping> {
        let off = libc::off_t::try_from(pgoff).map_err(|_| io::Error::other("ring offset"))?;
        // SAFETY: a shared mapping of the socket's ring at the offset the kernel defines for it,
        // no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // A forked child must not keep the socket alive through a copy of its rings (the
        // descriptor itself is close-on-exec). Best effort: the result changes nothing here.
        // SAFETY: advice on a mapping this function just created, of exactly this length.
        unsafe {
            libc::madvise(ptr, len, libc::MADV_DONTFORK);
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this length; the ring that points into
        // it is being dropped with it.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Pointers into one mapped ring.
struct RingPtrs<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    _map: Mapping,
    _t: PhantomData<T>,
}

impl<T> RingPtrs<T> {
    fn new(fd: RawFd, off: &libc::xdp_ring_offset, size: u32, pgoff: u64) -> io::Result<Self> {
        let bad = || io::Error::other("kernel reported ring offsets outside the ring");
        let desc_off = usize::try_from(off.desc).map_err(|_| bad())?;
        let len = desc_off
            .checked_add(size as usize * std::mem::size_of::<T>())
            .ok_or_else(bad)?;
        for o in [off.producer, off.consumer, off.flags] {
            let o = usize::try_from(o).map_err(|_| bad())?;
            if o % 4 != 0 || o + 4 > len {
                return Err(bad());
            }
        }
        if desc_off % std::mem::align_of::<T>() != 0 {
            return Err(bad());
        }
        let map = Mapping::new(fd, len, pgoff)?;
        let base = map.ptr;
        // SAFETY: all four offsets were checked above to lie inside the `len`-byte mapping and
        // to be suitably aligned (the mapping itself is page-aligned).
        let (producer, consumer, flags, descs) = unsafe {
            (
                base.add(off.producer as usize).cast(),
                base.add(off.consumer as usize).cast(),
                base.add(off.flags as usize).cast(),
                base.add(desc_off).cast(),
            )
        };
        Ok(RingPtrs {
            producer,
            consumer,
            flags,
            descs,
            mask: size - 1,
            size,
            _map: map,
            _t: PhantomData,
        })
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points inside the live mapping (checked in `new`), 4-byte aligned; the kernel
        // accesses it only atomically (`smp_load_acquire`/`smp_store_release`).
        unsafe { &*self.producer }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { &*self.consumer }
    }

    #[inline]
    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { &*self.flags }
    }
}

/// A ring we produce on (fill, tx).
pub struct ProdRing<T> {
    r: RingPtrs<T>,
    /// Our producer index: published up to here after `submit`.
    prod: u32,
    /// Entries reserved (written or about to be) and not yet submitted.
    reserved: u32,
    /// The kernel's consumer index plus the ring size, as last read.
    cons_end: u32,
}

impl<T: Copy> ProdRing<T> {
    fn new(r: RingPtrs<T>) -> Self {
        let prod = r.producer().load(Ordering::Relaxed);
        let cons_end = r.consumer().load(Ordering::Acquire).wrapping_add(r.size);
        ProdRing {
            r,
            prod,
            reserved: 0,
            cons_end,
        }
    }

    /// Free entries (at least `want` if that many are free; reads the kernel's index only when
    /// the cached view shows fewer).
    #[inline]
    pub fn free(&mut self, want: u32) -> u32 {
        let used_end = self.prod.wrapping_add(self.reserved);
        let free = self.cons_end.wrapping_sub(used_end);
        if free >= want {
            return free;
        }
        self.cons_end = self
            .r
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.r.size);
        self.cons_end.wrapping_sub(used_end)
    }

    /// Reserves up to `n` entries; returns how many were granted. Fill them with [`Self::write`]
    /// (indices `0..granted` after earlier unsubmitted ones) and publish with [`Self::submit`].
    #[inline]
    pub fn reserve(&mut self, n: u32) -> u32 {
        let k = self.free(n).min(n);
        self.reserved += k;
        k
    }

    /// Writes reserved entry `i` (counted from the first unsubmitted entry). Out-of-range
    /// indices are ignored: they would land on entries the kernel may be reading.
    #[inline]
    pub fn write(&mut self, i: u32, v: T) {
        if i >= self.reserved {
            return;
        }
        let slot = (self.prod.wrapping_add(i) & self.r.mask) as usize;
        // SAFETY: `slot <= mask < size`, inside the descriptor array of the live mapping; the
        // entry is reserved (between our published producer index and the kernel's consumer
        // index plus size), so the kernel does not read it until `submit` publishes it.
        unsafe { self.r.descs.add(slot).write_volatile(v) }
    }

    /// Gives back the last `n` reserved entries, unwritten.
    #[inline]
    pub fn cancel(&mut self, n: u32) {
        self.reserved -= n.min(self.reserved);
    }

    /// Publishes every reserved entry to the kernel.
    #[inline]
    pub fn submit(&mut self) {
        if self.reserved == 0 {
            return;
        }
        self.prod = self.prod.wrapping_add(self.reserved);
        self.reserved = 0;
        self.r.producer().store(self.prod, Ordering::Release);
    }

    /// Entries published and not yet consumed by the kernel.
    #[inline]
    pub fn outstanding(&self) -> u32 {
        self.prod
            .wrapping_sub(self.r.consumer().load(Ordering::Acquire))
            .min(self.r.size)
    }

    /// Whether the kernel asks to be woken (`XDP_RING_NEED_WAKEUP`) to process this ring.
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.r.flags().load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Ring size.
    #[inline]
    pub fn size(&self) -> u32 {
        self.r.size
    }
}

/// A ring we consume (rx, completion).
pub struct ConsRing<T> {
    r: RingPtrs<T>,
    /// Our consumer index: released up to here.
    cons: u32,
    /// Entries peeked and not yet released.
    peeked: u32,
    /// The kernel's producer index as last read.
    prod: u32,
}

impl<T: Copy> ConsRing<T> {
    fn new(r: RingPtrs<T>) -> Self {
        let cons = r.consumer().load(Ordering::Relaxed);
        let prod = r.producer().load(Ordering::Acquire);
        ConsRing {
            r,
            cons,
            peeked: 0,
            prod,
        }
    }

    /// Makes up to `n` more entries readable with [`Self::read`]; returns how many.
    #[inline]
    pub fn peek(&mut self, n: u32) -> u32 {
        let start = self.cons.wrapping_add(self.peeked);
        let mut avail = self.prod.wrapping_sub(start);
        if avail < n {
            self.prod = self.r.producer().load(Ordering::Acquire);
            avail = self.prod.wrapping_sub(start);
        }
        // A kernel that published more than the ring holds is not trusted beyond the ring.
        let k = avail.min(n).min(self.r.size - self.peeked.min(self.r.size));
        self.peeked += k;
        k
    }

    /// Reads peeked entry `i` (counted from the first unreleased entry); `None` out of range.
    #[inline]
    pub fn read(&self, i: u32) -> Option<T> {
        if i >= self.peeked {
            return None;
        }
        let slot = (self.cons.wrapping_add(i) & self.r.mask) as usize;
        // SAFETY: `slot < size`, inside the descriptor array of the live mapping; the entry lies
        // between our consumer index and the producer index read with acquire ordering, so the
        // kernel wrote it before publishing and will not touch it until we release it.
        Some(unsafe { self.r.descs.add(slot).read_volatile() })
    }

    /// Hands every peeked entry back to the kernel.
    #[inline]
    pub fn release(&mut self) {
        if self.peeked == 0 {
            return;
        }
        self.cons = self.cons.wrapping_add(self.peeked);
        self.peeked = 0;
        self.r.consumer().store(self.cons, Ordering::Release);
    }
}

/// Counters the kernel keeps for a socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for other reasons (for example, too large for a frame).
    pub rx_dropped: u64,
    /// Fill-ring descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// Tx descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the tx ring empty when kicked.
    pub tx_ring_empty_descs: u64,
}

/// An AF_XDP socket with its own UMEM and four mapped rings.
///
/// Field order matters: the rings are unmapped before the descriptor closes (see module doc).
pub struct XskSocket {
    /// Fill ring: frame addresses lent to the kernel for receiving.
    pub fill: ProdRing<u64>,
    /// Completion ring: transmitted frame addresses handed back.
    pub comp: ConsRing<u64>,
    /// Receive ring.
    pub rx: ConsRing<XdpDesc>,
    /// Transmit ring.
    pub tx: ProdRing<XdpDesc>,
    fd: OwnedFd,
    zero_copy: bool,
}

// SAFETY: the socket and its mappings are not tied to a thread; the ring pointers are used only
// through `&mut self` (one owner at a time), and the kernel side synchronises through the atomics.
unsafe impl Send for XskSocket {}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a readable `T` for the duration of the call and its exact size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            std::ptr::from_ref(v).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Reads socket option `opt` into `v`; returns the length the kernel wrote.
fn getsockopt<T>(fd: &OwnedFd, opt: libc::c_int, v: &mut T) -> io::Result<usize> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is a writable `T` and `len` holds its size, so the kernel writes at most that.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            std::ptr::from_mut(v).cast(),
            &mut len,
        )
    })?;
    Ok(len as usize)
}

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl XskSocket {
    /// Creates a socket in the calling thread's namespace, registers `len` bytes at `addr` as
    /// its UMEM in chunks of `chunk` bytes (no UMEM headroom: the kernel puts a received frame
    /// `XDP_PACKET_HEADROOM` = 256 bytes into its chunk) and maps its rings.
    ///
    /// # Safety
    /// `addr..addr + len` must stay mapped for the socket's life, and the caller must not hold
    /// Rust references to a chunk while its address is on the fill or tx ring (the kernel
    /// writes received frames into chunks lent on the fill ring).
    pub unsafe fn new(addr: *mut u8, len: usize, chunk: u32, sizes: RingSizes) -> io::Result<Self> {
        for s in [sizes.fill, sizes.comp, sizes.rx, sizes.tx] {
            if !s.is_power_of_two() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("AF_XDP ring size {s} is not a power of two"),
                ));
            }
        }
        // SAFETY: plain socket creation; the result is checked.
        let fd = cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })
            .map_err(|e| {
                let hint = match e.raw_os_error() {
                    Some(libc::EAFNOSUPPORT) => " (kernel without CONFIG_XDP_SOCKETS)",
                    Some(libc::EPERM) => " (needs CAP_NET_RAW, or root)",
                    _ => "",
                };
                io::Error::new(e.kind(), format!("create AF_XDP socket: {e}{hint}"))
            })?;
        // SAFETY: `socket` just returned this descriptor and nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let reg = libc::xdp_umem_reg {
            addr: addr as u64,
            len: len as u64,
            chunk_size: chunk,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::ENOMEM) | Some(libc::EPERM) => {
                    " (the UMEM is locked memory: raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK)"
                }
                Some(libc::EINVAL) => " (region must be page-aligned, a whole number of chunks)",
                _ => "",
            };
            io::Error::new(
                e.kind(),
                format!("register {len}-byte UMEM ({chunk}-byte chunks): {e}{hint}"),
            )
        })?;
        for (opt, n) in [
            (libc::XDP_UMEM_FILL_RING, sizes.fill),
            (libc::XDP_UMEM_COMPLETION_RING, sizes.comp),
            (libc::XDP_RX_RING, sizes.rx),
            (libc::XDP_TX_RING, sizes.tx),
        ] {
            setsockopt(&fd, opt, &(n as libc::c_int)).map_err(|e| ctx("size AF_XDP ring", e))?;
        }
        let zero = libc::xdp_ring_offset {
            producer: 0,
            consumer: 0,
            desc: 0,
            flags: 0,
        };
        let mut off = libc::xdp_mmap_offsets {
            rx: zero,
            tx: zero,
            fr: zero,
            cr: zero,
        };
        let got = getsockopt(&fd, libc::XDP_MMAP_OFFSETS, &mut off)
            .map_err(|e| ctx("read AF_XDP ring offsets", e))?;
        if got != std::mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(io::Error::other(
                "kernel AF_XDP lacks ring flags (need_wakeup); Linux 5.4 or later is required",
            ));
        }
        let raw = fd.as_raw_fd();
        let map = |e| ctx("map AF_XDP ring", e);
        let fill =
            RingPtrs::new(raw, &off.fr, sizes.fill, libc::XDP_UMEM_PGOFF_FILL_RING).map_err(map)?;
        let comp = RingPtrs::new(
            raw,
            &off.cr,
            sizes.comp,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )
        .map_err(map)?;
        let rx =
            RingPtrs::new(raw, &off.rx, sizes.rx, libc::XDP_PGOFF_RX_RING as u64).map_err(map)?;
        let tx = RingPtrs::new(
            raw,
            &off.tx,
            sizes.tx,
            libc::XDP_PGOFF_TX_RING as u32 as u64,
        )
        .map_err(map)?;
        Ok(XskSocket {
            fill: ProdRing::new(fill),
            comp: ConsRing::new(comp),
            rx: ConsRing::new(rx),
            tx: ProdRing::new(tx),
            fd,
            zero_copy: false,
        })
    }

    /// Binds to queue `queue` of interface `ifindex` (in the namespace the socket was created
    /// in), with `XDP_USE_NEED_WAKEUP`; records whether the kernel chose zero-copy.
    pub fn bind(&mut self, ifindex: u32, queue: u32, mode: BindMode) -> io::Result<()> {
        let mode_flag = match mode {
            BindMode::Auto => 0,
            BindMode::Copy => libc::XDP_COPY,
            BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
        };
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP | mode_flag,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a `sockaddr_xdp` and its exact size is passed.
        cvt(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                std::ptr::from_ref(&sa).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        })?;
        let mut opts = libc::xdp_options { flags: 0 };
        getsockopt(&self.fd, libc::XDP_OPTIONS, &mut opts)?;
        self.zero_copy = opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0;
        Ok(())
    }

    /// Whether the bound socket runs in zero-copy mode.
    #[inline]
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Asks the kernel to process the tx ring (`sendto`, non-blocking). `Ok(false)` means it
    /// stopped early (busy, out of buffers, or its per-call budget spent): kick again later.
    #[inline]
    pub fn kick_tx(&self) -> io::Result<bool> {
        // SAFETY: a zero-length send with no buffer and no address, as the AF_XDP ABI defines.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r >= 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR) => Ok(false),
            _ => Err(e),
        }
    }

    /// Asks the kernel to process the fill ring (`recvfrom`, non-blocking).
    #[inline]
    pub fn kick_rx(&self) -> io::Result<()> {
        // SAFETY: a zero-length receive with no buffer and no address, as the AF_XDP ABI defines.
        let r = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR) => Ok(()),
            _ => Err(e),
        }
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XskStats> {
        xsk_stats(&self.fd)
    }

    /// The socket's descriptor (for the XSKMAP and for polling).
    #[inline]
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// The kernel's counters (`XDP_STATISTICS`) for the AF_XDP socket `fd` (any descriptor of it).
pub fn xsk_stats(fd: &OwnedFd) -> io::Result<XskStats> {
    let mut s = libc::xdp_statistics {
        rx_dropped: 0,
        rx_invalid_descs: 0,
        tx_invalid_descs: 0,
        rx_ring_full: 0,
        rx_fill_ring_empty_descs: 0,
        tx_ring_empty_descs: 0,
    };
    getsockopt(fd, libc::XDP_STATISTICS, &mut s)?;
    Ok(XskStats {
        rx_dropped: s.rx_dropped,
        rx_invalid_descs: s.rx_invalid_descs,
        tx_invalid_descs: s.tx_invalid_descs,
        rx_ring_full: s.rx_ring_full,
        rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: s.tx_ring_empty_descs,
    })
}

/// The index of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface '{name}' in this network namespace ({e})"),
        ));
    }
    Ok(i)
}
