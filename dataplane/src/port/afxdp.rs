//! AF_XDP ports. An [`AfXdpDevice`] is the control thread's handle on an existing interface: it
//! owns our XDP redirect program, the BPF link that attaches it, the XSKMAP it redirects through
//! and, until a worker takes them, one AF_XDP socket per queue. Each worker gets an
//! [`AfXdpQueue`]: the socket and its four rings move into it (rings are single-producer,
//! single-consumer memory shared with the kernel; a duplicated descriptor would not make a
//! second set), while the device keeps the program, link and map alive.
//!
//! UMEM: each queue's socket registers the whole packet pool ([`Pool::region`]) as its own UMEM,
//! in [`SLOT_SIZE`] chunks with no UMEM headroom. The kernel accepts the same memory registered
//! by several sockets (each registration pins the pages once more), so XDP_SHARED_UMEM is not
//! needed and every queue has its own fill and completion rings. A received frame starts at
//! chunk + `XDP_PACKET_HEADROOM` (256) = [`HEADROOM`], so the pool's buffer for a descriptor has
//! its full headroom and is never copied; a transmitted buffer is described by
//! [`Pool::frame_addr`], wherever its frame starts in the slot.
//!
//! Ownership of slots: a slot whose address is on the fill ring, or on the tx ring waiting for
//! its completion, belongs to the kernel; the queue forgets its [`Buf`] and sets the slot's bit
//! in a bitset over the pool (allocated once, at open). A descriptor the kernel hands back is
//! turned into a buffer only if its slot's bit is set, and the bit is cleared, so a bad or
//! repeated address can never make two buffers of one slot. [`Port::release`] (or dropping the
//! queue) first closes the socket, after which the kernel no longer touches the UMEM, and then
//! returns every slot still marked to the pool.
//!
//! One window remains: a child process forked by another thread holds a copy of the socket's
//! descriptor until it calls `exec` (close-on-exec), so a socket closed in that window is
//! released by the kernel only at the child's `exec`. Spawn children with `posix_spawn` (what
//! `std::process::Command` does) and that window is short; nothing closes it entirely.
//!
//! Frame size: chunks are 2048 bytes and the kernel drops a received frame larger than
//! 2048 - 256 = 1792 bytes (no multi-buffer). `open` refuses an interface whose MTU exceeds
//! [`MAX_MTU`] = 1792 - 14 (Ethernet) - 4 (one VLAN tag) = 1774, naming the limit; it does not
//! change the MTU itself.
//!
//! Modes: the program is attached in native (driver) mode, which veth supports, and in generic
//! (skb) mode where the driver refuses; the socket binds zero-copy where the driver offers it and
//! in copy mode otherwise (veth: copy). [`AfXdpDevice::mode`] says which.
//!
//! The program is attached with a BPF link: it is detached when the device drops, and by the
//! kernel when the process dies, however it dies.
//!
//! Checksums and segmentation: with default offloads a veth peer hands over TCP and UDP frames
//! with a partial checksum (only the pseudo-header sum, the kernel expecting the receiver to
//! finish it) and TCP super-frames of up to 64 KB (TSO). AF_XDP sees raw bytes: the first arrive
//! at the far end with a bad checksum and are dropped there, the second are dropped by the
//! kernel as larger than a frame (`XskStats::rx_dropped`). Both were seen here, each breaking TCP
//! on its own; ICMP is unaffected. TCP through an AF_XDP port needs transmit checksum offload off
//! on the veth in each container (`ethtool -K <veth> tx off`, which turns TSO off with it; GSO
//! then segments in software and fills the checksums in).

use super::Port;
use crate::burst::{Burst, BURST};
use crate::counters::PortCounters;
use crate::offload::{fix_partial_checksum, CsumCheck};
use crate::pool::{Buf, Pool, PoolCache, HEADROOM, MAX_FRAME, SLOT_SIZE};
use crate::sys::xdp::{BindMode, RingSizes, XdpDesc, XskSocket, XskStats};
use crate::sys::{bpf, ethtool, netns, tap, xdp};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Entries in each of a socket's four rings.
pub const RING_SIZE: u32 = 2048;
/// Largest interface MTU an AF_XDP port accepts: a slot's frame space less an Ethernet header
/// and one VLAN tag.
pub const MAX_MTU: u32 = (MAX_FRAME - 14 - 4) as u32;
/// Most frames a queue keeps on its fill ring. It also keeps at most a quarter of the pool
/// (shared by its queues), so that a small pool is not swallowed by the rings.
pub const FILL_TARGET: u32 = RING_SIZE;
/// Completions reaped per call.
const COMP_BATCH: u32 = 256;

const PROG_NAME: &str = "vsw_xsk_redir";
const MAP_NAME: &str = "vsw_xsks";

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAttach {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// After the driver, on socket buffers (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl XdpAttach {
    /// `"native"` or `"generic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpAttach::Native => "native",
            XdpAttach::Generic => "generic",
        }
    }
}

/// How a device's XDP program and sockets run, for `port inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfXdpMode {
    /// Native or generic XDP.
    pub attach: XdpAttach,
    /// Whether every socket runs zero-copy (otherwise the kernel copies frames into the UMEM).
    pub zero_copy: bool,
    /// Whether received TCP/UDP checksums that a local stack left partial are completed (the
    /// interface is a veth, whose peer may have transmit checksum offload on).
    pub fix_csum: bool,
}

impl AfXdpMode {
    /// `"zero-copy"` or `"copy"`.
    pub fn copy_str(&self) -> &'static str {
        if self.zero_copy {
            "zero-copy"
        } else {
            "copy"
        }
    }
}

impl fmt::Display for AfXdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.attach.as_str(), self.copy_str())?;
        if self.fix_csum {
            write!(f, ", completes partial checksums")?;
        }
        Ok(())
    }
}

/// The control thread's handle on an interface driven through AF_XDP.
///
/// Field order matters on drop: `Drop` detaches the link first; the queues not handed out close
/// their sockets before the map and program go.
pub struct AfXdpDevice {
    name: String,
    netns: Option<PathBuf>,
    ifindex: u32,
    mode: AfXdpMode,
    queues: Vec<Option<AfXdpQueue>>,
    /// A second descriptor of each queue's socket, for reading the kernel's counters from the
    /// control thread while the workers own the sockets.
    stat_fds: Vec<OwnedFd>,
    link: OwnedFd,
    _prog: OwnedFd,
    _xskmap: OwnedFd,
}

impl AfXdpDevice {
    /// Binds `queues` AF_XDP sockets to queues `0..queues` of interface `ifname` in namespace
    /// `netns` (None: the caller's), with the pool as UMEM, and attaches the redirect program
    /// (native XDP, else generic).
    pub fn open(
        ifname: &str,
        netns: Option<&Path>,
        queues: u16,
        pool: &Arc<Pool>,
    ) -> io::Result<AfXdpDevice> {
        let queues = queues.max(1);
        let name = ifname.to_string();
        let fill_target =
            (pool.capacity() / 4 / u32::from(queues)).clamp(2 * BURST as u32, FILL_TARGET);
        let xskmap = bpf::create_xskmap(MAP_NAME, u32::from(queues))?;
        let insns = bpf::xsk_redirect_program(&xskmap);
        let prog = bpf::load_xdp_program(PROG_NAME, &insns)?;
        let (ifindex, qs, stat_fds, link, attach, fix_csum) = netns::run_in(netns, || {
            let ifindex = xdp::ifindex(&name)?;
            let mtu = tap::mtu(&name)
                .map_err(|e| io::Error::new(e.kind(), format!("read MTU of '{name}': {e}")))?;
            if mtu > MAX_MTU {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "interface '{name}' has MTU {mtu}, above the {MAX_MTU} an AF_XDP port \
                         takes ({SLOT_SIZE}-byte buffers less {HEADROOM} bytes of headroom, an \
                         Ethernet header and a VLAN tag); lower it with \
                         `ip link set {name} mtu {MAX_MTU}`"
                    ),
                ));
            }
            // A veth's peer may hand over partial checksums (transmit checksum offload, on by
            // default), and nothing in an AF_XDP descriptor says so: complete them on receive.
            let fix_csum = ethtool::driver(&name).is_ok_and(|d| d == "veth");
            // Each queue's fill ring is stocked before the program is attached, so that no
            // frame is redirected to a socket with nowhere to put it.
            let mut qs = Vec::with_capacity(usize::from(queues));
            let mut stat_fds = Vec::with_capacity(usize::from(queues));
            for q in 0..u32::from(queues) {
                let s = open_socket(pool, ifindex, q)
                    .map_err(|e| io::Error::new(e.kind(), format!("'{name}' queue {q}: {e}")))?;
                bpf::map_update_fd(&xskmap, q, s.fd())?;
                stat_fds.push(s.fd().try_clone()?);
                let mut queue = AfXdpQueue::new(s, pool.clone(), q, fill_target);
                queue.fix_csum = fix_csum;
                queue.refill(|| pool.alloc_shared());
                qs.push(Some(queue));
            }
            let (link, attach) = attach_program(&prog, ifindex, &name)?;
            Ok((ifindex, qs, stat_fds, link, attach, fix_csum))
        })?;
        let zero_copy = qs.iter().flatten().all(AfXdpQueue::zero_copy);
        Ok(AfXdpDevice {
            name,
            netns: netns.map(Path::to_path_buf),
            ifindex,
            mode: AfXdpMode {
                attach,
                zero_copy,
                fix_csum,
            },
            queues: qs,
            stat_fds,
            link,
            _prog: prog,
            _xskmap: xskmap,
        })
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace the interface lives in.
    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    /// Interface index (in its namespace).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Number of queues bound.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Native or generic XDP, copy or zero-copy.
    pub fn mode(&self) -> AfXdpMode {
        self.mode
    }

    /// The kernel's counters summed over the port's sockets: frames it dropped before they
    /// reached a queue (rx ring full, no fill buffer, invalid descriptors).
    pub fn kernel_stats(&self) -> XskStats {
        let mut t = XskStats::default();
        for s in self
            .stat_fds
            .iter()
            .filter_map(|fd| xdp::xsk_stats(fd).ok())
        {
            t.rx_dropped += s.rx_dropped;
            t.rx_invalid_descs += s.rx_invalid_descs;
            t.tx_invalid_descs += s.tx_invalid_descs;
            t.rx_ring_full += s.rx_ring_full;
            t.rx_fill_ring_empty_descs += s.rx_fill_ring_empty_descs;
            t.tx_ring_empty_descs += s.tx_ring_empty_descs;
        }
        t
    }

    /// Hands queue `i` to a worker; each queue can be taken once.
    pub fn queue(&mut self, i: usize) -> io::Result<AfXdpQueue> {
        let n = self.queues.len();
        let slot = self.queues.get_mut(i).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("AF_XDP port '{}' has {n} queues, not {}", self.name, i + 1),
            )
        })?;
        slot.take().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("queue {i} of AF_XDP port '{}' is already taken", self.name),
            )
        })
    }
}

impl Drop for AfXdpDevice {
    fn drop(&mut self) {
        // Detaching now, rather than when the last descriptor of the link closes, also covers a
        // descriptor inherited by a child that has not exec'd yet. Closing the link right after
        // detaches the program anyway, so an error here changes nothing.
        let _ = bpf::link_detach(&self.link);
    }
}

/// Creates, sizes and binds queue `q`'s socket, its UMEM being the pool.
fn open_socket(pool: &Pool, ifindex: u32, q: u32) -> io::Result<XskSocket> {
    let (base, len) = pool.region();
    let sizes = RingSizes {
        fill: RING_SIZE,
        comp: RING_SIZE,
        rx: RING_SIZE,
        tx: RING_SIZE,
    };
    // SAFETY: the region stays mapped while the socket lives: the socket ends up in an
    // `AfXdpQueue` that holds an `Arc<Pool>`, and field order drops the socket before that Arc.
    // Chunks reach the kernel only as buffers whose `Buf` the queue forgot, so no Rust reference
    // to a chunk exists while the kernel may write it.
    let mut s = unsafe { XskSocket::new(base, len, SLOT_SIZE as u32, sizes) }?;
    s.bind(ifindex, q, BindMode::Auto).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EINVAL) => " (the interface may have fewer queues than asked for)",
            Some(libc::EBUSY) => " (another AF_XDP socket is bound to this queue)",
            _ => "",
        };
        io::Error::new(e.kind(), format!("bind AF_XDP socket: {e}{hint}"))
    })?;
    Ok(s)
}

/// Attaches `prog` to `ifindex` natively, else generically; returns the link and the mode.
fn attach_program(prog: &OwnedFd, ifindex: u32, name: &str) -> io::Result<(OwnedFd, XdpAttach)> {
    let native = match bpf::link_xdp(prog, ifindex, bpf::XDP_FLAGS_DRV_MODE) {
        Ok(link) => return Ok((link, XdpAttach::Native)),
        Err(e) => e,
    };
    match bpf::link_xdp(prog, ifindex, bpf::XDP_FLAGS_SKB_MODE) {
        Ok(link) => Ok((link, XdpAttach::Generic)),
        Err(e) => {
            let hint = match (native.raw_os_error(), e.raw_os_error()) {
                (Some(libc::EBUSY | libc::EEXIST), _) | (_, Some(libc::EBUSY | libc::EEXIST)) => {
                    format!(
                        " ('{name}' already has an XDP program: see `ip link show {name}`; \
                         if it is stale, `ip link set {name} xdp off`)"
                    )
                }
                (_, Some(libc::EPERM)) => " (needs CAP_NET_ADMIN and CAP_BPF, or root)".into(),
                _ => String::new(),
            };
            Err(io::Error::new(
                e.kind(),
                format!(
                    "attach XDP program to '{name}': native mode: {native}; generic mode: {e}{hint}"
                ),
            ))
        }
    }
}

/// A bitset over the pool's slots: which are lent to the kernel.
struct Lent {
    words: Box<[u64]>,
    slots: usize,
}

impl Lent {
    fn new(slots: usize) -> Lent {
        Lent {
            words: vec![0; slots.div_ceil(64)].into_boxed_slice(),
            slots,
        }
    }

    /// The slot containing region offset `addr`, if it is in the pool.
    #[inline]
    fn slot_of(&self, addr: u64) -> Option<usize> {
        let s = usize::try_from(addr / SLOT_SIZE as u64).ok()?;
        (s < self.slots).then_some(s)
    }

    #[inline]
    fn set(&mut self, slot: usize) {
        if let Some(w) = self.words.get_mut(slot / 64) {
            *w |= 1 << (slot % 64);
        }
    }

    /// Clears the bit of `slot`; whether it was set.
    #[inline]
    fn take(&mut self, slot: usize) -> bool {
        let Some(w) = self.words.get_mut(slot / 64) else {
            return false;
        };
        let bit = 1u64 << (slot % 64);
        let was = *w & bit != 0;
        *w &= !bit;
        was
    }

    /// Clears every bit, calling `f` with each slot that was set.
    fn drain(&mut self, mut f: impl FnMut(usize)) {
        for (i, w) in self.words.iter_mut().enumerate() {
            while *w != 0 {
                let b = w.trailing_zeros() as usize;
                *w &= *w - 1;
                f(i * 64 + b);
            }
        }
    }
}

/// One queue of an AF_XDP port, as a worker holds it.
///
/// Field order matters on drop: the socket closes before the bitset's slots go back to the pool
/// (see `Drop`), and before the `Arc<Pool>` that keeps the UMEM mapped.
pub struct AfXdpQueue {
    /// Boxed: the rings' state is large, and a worker's port enum should stay small.
    sock: Option<Box<XskSocket>>,
    lent: Lent,
    pool: Arc<Pool>,
    queue_id: u32,
    zero_copy: bool,
    /// Frames to keep on the fill ring.
    fill_target: u32,
    /// The last tx kick stopped early: kick again on the next poll.
    kick_pending: bool,
    /// The last tx kick failed hard (interface down or gone).
    down: bool,
    /// Complete partial L4 checksums of received frames (see [`AfXdpMode::fix_csum`]).
    fix_csum: bool,
}

impl AfXdpQueue {
    fn new(sock: XskSocket, pool: Arc<Pool>, queue_id: u32, fill_target: u32) -> AfXdpQueue {
        AfXdpQueue {
            zero_copy: sock.zero_copy(),
            sock: Some(Box::new(sock)),
            lent: Lent::new(pool.capacity() as usize),
            pool,
            queue_id,
            fill_target,
            kick_pending: false,
            down: false,
            fix_csum: false,
        }
    }

    /// The interface queue this socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Whether the socket runs zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Whether the last transmit kick failed because the interface is down or gone (frames
    /// then wait in the tx ring, and further ones are dropped once it is full).
    pub fn down(&self) -> bool {
        self.down
    }

    /// The kernel's counters for this socket (`None` after release).
    pub fn xsk_stats(&self) -> Option<io::Result<XskStats>> {
        self.sock.as_ref().map(|s| s.stats())
    }

    /// Tops the fill ring up to the target with buffers from `alloc`, when it has fallen a
    /// burst or more below it.
    fn refill(&mut self, mut alloc: impl FnMut() -> Option<Buf>) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        let size = sock.fill.size();
        let idle = size - self.fill_target.min(size);
        let free = sock.fill.free(idle + BURST as u32);
        if free < idle + BURST as u32 {
            return;
        }
        let want = sock.fill.reserve(free - idle);
        let mut done = 0;
        while done < want {
            let Some(b) = alloc() else { break };
            let addr = self.pool.slot_addr(&b);
            if let Some(s) = self.lent.slot_of(addr) {
                self.lent.set(s);
            }
            let _ = b.into_raw();
            sock.fill.write(done, addr);
            done += 1;
        }
        sock.fill.cancel(want - done);
        sock.fill.submit();
    }

    /// Returns transmitted frames to the cache.
    fn reap_completions(&mut self, cache: &mut PoolCache) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        let n = sock.comp.peek(COMP_BATCH);
        for i in 0..n {
            let Some(addr) = sock.comp.read(i) else { break };
            // An address that was not lent (never, from a sane kernel) is ignored: freeing it
            // would make a second buffer of a slot someone else owns.
            let Some(slot) = self.lent.slot_of(addr) else {
                continue;
            };
            if self.lent.take(slot) {
                // SAFETY: the slot's bit was set, so its buffer was forgotten when lent and has
                // not been rebuilt since (the bit is now clear, so it will not be again).
                if let Some(b) = unsafe { self.pool.buf_at(addr, 0) } {
                    cache.free(b);
                }
            }
        }
        sock.comp.release();
    }

    /// Kicks the kernel to transmit; notes whether to kick again.
    fn kick_tx(&mut self) {
        let Some(sock) = self.sock.as_ref() else {
            return;
        };
        match sock.kick_tx() {
            Ok(done) => {
                self.kick_pending = !done;
                self.down = false;
            }
            Err(_) => {
                self.kick_pending = false;
                self.down = true;
            }
        }
    }
}

impl Port for AfXdpQueue {
    fn rx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        self.reap_completions(cache);
        let Some(sock) = self.sock.as_mut() else {
            return 0;
        };
        let (mut n, mut bytes, mut errors, mut completed) = (0usize, 0u64, 0u64, 0u64);
        let got = sock.rx.peek(burst.room() as u32);
        for i in 0..got {
            let Some(d) = sock.rx.read(i) else { break };
            let Some(slot) = self.lent.slot_of(d.addr) else {
                errors += 1;
                continue;
            };
            if !self.lent.take(slot) {
                // Not ours to rebuild (a repeated or forged address): drop the descriptor only.
                errors += 1;
                continue;
            }
            let b = if d.options == 0 {
                // SAFETY: the slot's bit was set, so its buffer was forgotten when lent on the
                // fill ring and has not been rebuilt since; the bit is now clear.
                unsafe { self.pool.buf_at(d.addr, d.len as usize) }
            } else {
                None
            };
            match b {
                Some(mut b) if d.len > 0 => {
                    if self.fix_csum
                        && fix_partial_checksum(self.pool.data_mut(&mut b)) == CsumCheck::Completed
                    {
                        completed += 1;
                    }
                    bytes += u64::from(d.len);
                    n += 1;
                    if let Err(b) = burst.push(b) {
                        // Cannot happen: at most `room` descriptors were peeked.
                        cache.free(b);
                    }
                }
                other => {
                    // Empty, multi-buffer or overrunning its slot: drop it and recover the slot.
                    errors += 1;
                    let b = match other {
                        Some(b) => Some(b),
                        // SAFETY: as above; `b` was not built, so this is the only rebuild.
                        None => unsafe { self.pool.buf_at((slot * SLOT_SIZE) as u64, 0) },
                    };
                    if let Some(b) = b {
                        cache.free(b);
                    }
                }
            }
        }
        sock.rx.release();
        let rx_kick = sock.fill.needs_wakeup();
        self.refill(|| cache.alloc());
        if rx_kick {
            if let Some(sock) = self.sock.as_ref() {
                let _ = sock.kick_rx();
            }
        }
        if self.kick_pending {
            self.kick_tx();
        }
        c.rx_packets.add(n as u64);
        c.rx_bytes.add(bytes);
        c.rx_errors.add(errors);
        if completed > 0 {
            c.rx_csum_completed.add(completed);
        }
        n
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, burst: &mut Burst, c: &PortCounters) -> usize {
        self.reap_completions(cache);
        let Some(sock) = self.sock.as_mut() else {
            c.tx_dropped.add(burst.len() as u64);
            burst.free_all(cache);
            return 0;
        };
        let granted = sock.tx.reserve(burst.len() as u32);
        let (mut sent, mut bytes, mut dropped) = (0u32, 0u64, 0u64);
        for b in burst.drain() {
            let len = self.pool.len(&b);
            // A large buffer lies outside the UMEM: the worker copies frames out of those before
            // they get here (`Ports::enqueue`); never hand the kernel an address it cannot use.
            if sent >= granted || len == 0 || self.pool.is_large(&b) {
                dropped += 1;
                cache.free(b);
                continue;
            }
            let addr = self.pool.frame_addr(&b);
            if let Some(s) = self.lent.slot_of(addr) {
                self.lent.set(s);
            }
            let _ = b.into_raw();
            sock.tx.write(
                sent,
                XdpDesc {
                    addr,
                    len: len as u32,
                    options: 0,
                },
            );
            sent += 1;
            bytes += len as u64;
        }
        sock.tx.cancel(granted - sent);
        sock.tx.submit();
        if sent > 0 && (!self.zero_copy || sock.tx.needs_wakeup()) {
            self.kick_tx();
        }
        c.tx_packets.add(u64::from(sent));
        c.tx_bytes.add(bytes);
        c.tx_dropped.add(dropped);
        sent as usize
    }

    fn raw_fd(&self) -> Option<RawFd> {
        self.sock.as_ref().map(|s| s.fd().as_raw_fd())
    }

    fn release(&mut self, cache: &mut PoolCache) {
        // Close first: once the socket is gone the kernel writes no more frames into the UMEM.
        let Some(sock) = self.sock.take() else {
            return;
        };
        drop(sock);
        let pool = &self.pool;
        self.lent.drain(|slot| {
            // SAFETY: the slot was lent (its buffer forgotten) and the kernel, whose socket is
            // now closed, will not hand it back; draining clears the bit, so this is the only
            // rebuild.
            if let Some(b) = unsafe { pool.buf_at((slot * SLOT_SIZE) as u64, 0) } {
                cache.free(b);
            }
        });
    }
}

impl Drop for AfXdpQueue {
    fn drop(&mut self) {
        // Same as `release`, for a queue dropped without it: the slots go to the shared ring.
        let Some(sock) = self.sock.take() else {
            return;
        };
        drop(sock);
        let pool = &self.pool;
        self.lent.drain(|slot| {
            // SAFETY: as in `release`.
            if let Some(b) = unsafe { pool.buf_at((slot * SLOT_SIZE) as u64, 0) } {
                pool.free_shared(b);
            }
        });
    }
}
