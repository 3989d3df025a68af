//! The `bpf(2)` syscall: XSKMAP maps, loading a hand-assembled XDP program, and attaching it to
//! an interface with a BPF link.
//!
//! No libbpf and no clang: each command's `union bpf_attr` member is a `#[repr(C)]` struct laid
//! out as in `linux/bpf.h` (field offsets checked against the header), passed with its own size;
//! the kernel zero-extends a shorter attribute, so only the fields named here are ever non-zero.
//! Every descriptor the kernel returns is close-on-exec and owned by an [`OwnedFd`].
//!
//! An XDP program attached through a link (`BPF_LINK_CREATE`) is detached by the kernel when the
//! last descriptor of the link closes, including when the process dies: a daemon killed with
//! `kill -9` leaves no program behind, unlike one attached with netlink.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_LINK_DETACH: libc::c_int = 34;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`'s `BPF_XDP`.
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, run on the socket buffer after the driver.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, run by the driver before any socket buffer exists.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `XDP_PASS`: hand the frame to the kernel's stack.
pub const XDP_PASS: i32 = 2;
/// Helper number of `bpf_redirect_map`.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `src_reg` of a `ld_imm64` whose immediate is a map file descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;

// Instruction classes, sizes, modes and operations (`linux/bpf_common.h`, `linux/bpf.h`).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// Destination register in the low nibble, source register in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
}

/// The XDP program that sends each frame to the AF_XDP socket of its receive queue:
///
/// ```text
/// r2 = *(u32 *)(r1 + 16)          ; ctx->rx_queue_index
/// r1 = map_fd ll                  ; the XSKMAP (ld_imm64, BPF_PSEUDO_MAP_FD)
/// r3 = XDP_PASS                   ; what to do when the queue has no socket
/// call bpf_redirect_map           ; XDP_REDIRECT, or XDP_PASS from the flags' low bits
/// exit                            ; return it
/// ```
pub fn xsk_redirect_program(xskmap: &OwnedFd) -> [Insn; 6] {
    [
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        Insn::new(
            BPF_LD | BPF_DW | BPF_IMM,
            1,
            BPF_PSEUDO_MAP_FD,
            0,
            xskmap.as_raw_fd(),
        ),
        Insn::new(0, 0, 0, 0, 0),
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),
        Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

/// `bpf_attr` for `BPF_MAP_CREATE`.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `bpf_attr` for `BPF_MAP_*_ELEM`.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `bpf_attr` for `BPF_LINK_CREATE` (the part an XDP link uses).
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `bpf_attr` for `BPF_LINK_DETACH`.
#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// Calls `bpf(cmd, attr, sizeof attr)`.
///
/// # Safety
/// `T` must be the `bpf_attr` member the kernel reads for `cmd`, and every pointer inside
/// `attr` must be valid for what `cmd` does with it for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller guarantees that `attr` is the right attribute for `cmd`; the size passed
    // is exactly the size of `T`, so the kernel reads no further than `attr`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wraps a descriptor number returned by `bpf()`.
fn owned(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(r).map_err(|_| io::Error::other("bpf() returned no fd"))?;
    // SAFETY: `bpf()` just returned this descriptor (close-on-exec) and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// Adds a hint for the errno values that mean "not allowed here".
fn perm_hint(what: &str, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => " (needs CAP_BPF and CAP_NET_ADMIN, or root)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

/// Creates an XSKMAP of `entries` entries (key: queue index, value: AF_XDP socket fd).
pub fn create_xskmap(name: &str, entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries.max(1),
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: name16(name),
    };
    // SAFETY: `MapCreateAttr` is the `BPF_MAP_CREATE` member of `bpf_attr`; it holds no pointers.
    let r = unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map_err(|e| perm_hint("create XSKMAP", e))?;
    owned(r)
}

/// Sets `map[key] = fd` (an AF_XDP socket into an XSKMAP).
pub fn map_update_fd(map: &OwnedFd, key: u32, fd: &OwnedFd) -> io::Result<()> {
    let value: u32 = fd.as_raw_fd() as u32;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: std::ptr::from_ref(&value) as u64,
        flags: 0, // BPF_ANY
    };
    // SAFETY: `MapElemAttr` is the `BPF_MAP_UPDATE_ELEM` member; `key` and `value` point at
    // 4-byte locals (the map's key and value sizes) that outlive the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }
        .map(|_| ())
        .map_err(|e| perm_hint("insert socket into XSKMAP", e))
}

/// Removes `map[key]`.
pub fn map_delete(map: &OwnedFd, key: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: 0,
        flags: 0,
    };
    // SAFETY: `MapElemAttr` is the `BPF_MAP_DELETE_ELEM` member; `key` points at a 4-byte local
    // that outlives the call.
    unsafe { bpf(BPF_MAP_DELETE_ELEM, &mut attr) }.map(|_| ())
}

/// Size of the verifier log asked for when a load fails.
const LOG_SIZE: usize = 64 * 1024;

/// Loads an XDP program named `name`. On failure the error carries the verifier's log.
pub fn load_xdp_program(name: &str, insns: &[Insn]) -> io::Result<OwnedFd> {
    match load(name, insns, None) {
        Ok(fd) => Ok(fd),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) => {
            // Load again with the verifier's log to say why (allocation only on this error path).
            let mut log = vec![0u8; LOG_SIZE];
            match load(name, insns, Some(&mut log)) {
                Ok(fd) => Ok(fd),
                Err(e2) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    Err(io::Error::new(
                        e2.kind(),
                        format!("load XDP program: {e2}; verifier says: {}", text.trim()),
                    ))
                }
            }
        }
        Err(e) => Err(perm_hint("load XDP program", e)),
    }
}

fn load(name: &str, insns: &[Insn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    const LICENSE: &[u8] = b"GPL\0";
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?;
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name16(name),
        prog_ifindex: 0,
        expected_attach_type: BPF_XDP,
    };
    // SAFETY: `ProgLoadAttr` is the `BPF_PROG_LOAD` member; `insns` points at `insn_cnt`
    // instructions, `license` at a NUL-terminated string and `log_buf` (when set) at `log_size`
    // writable bytes, all of which outlive the call.
    let r = unsafe { bpf(BPF_PROG_LOAD, &mut attr) }?;
    owned(r)
}

/// Attaches XDP program `prog` to interface `ifindex` of the calling thread's namespace with a
/// BPF link, in the mode `flags` names ([`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]).
/// The program stays attached while the returned link descriptor is open.
pub fn link_xdp(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    // SAFETY: `LinkCreateAttr` is the leading part of the `BPF_LINK_CREATE` member; it holds
    // no pointers and the rest of the member is zero-extended by the kernel.
    let r = unsafe { bpf(BPF_LINK_CREATE, &mut attr) }?;
    owned(r)
}

/// Detaches the program of link `link` now, even if other descriptors of the link exist.
pub fn link_detach(link: &OwnedFd) -> io::Result<()> {
    let mut attr = LinkDetachAttr {
        link_fd: link.as_raw_fd() as u32,
    };
    // SAFETY: `LinkDetachAttr` is the `BPF_LINK_DETACH` member; it holds no pointers.
    unsafe { bpf(BPF_LINK_DETACH, &mut attr) }.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_layouts_match_linux_bpf_h() {
        // Offsets from `offsetof(union bpf_attr, ...)` in the uapi header.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, flags), 12);
        assert_eq!(std::mem::offset_of!(MapElemAttr, key), 8);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn redirect_program_encodes_as_expected() {
        // Any descriptor stands in for the map: only its number is encoded.
        let fd = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let p = xsk_redirect_program(&fd);
        assert_eq!(p[0], Insn::new(0x61, 2, 1, 16, 0));
        assert_eq!(p[1].code, 0x18);
        assert_eq!(p[1].regs, 0x11);
        assert_eq!(p[1].imm, fd.as_raw_fd());
        assert_eq!(p[3], Insn::new(0xb7, 3, 0, 0, 2));
        assert_eq!(p[4], Insn::new(0x85, 0, 0, 0, 51));
        assert_eq!(p[5], Insn::new(0x95, 0, 0, 0, 0));
    }
}

// --- Programs and commands for traffic generation and sinks (the testbed harness). ---

const BPF_PROG_TEST_RUN: libc::c_int = 10;

/// `XDP_DROP`: free the frame in the driver.
pub const XDP_DROP: i32 = 1;
/// `XDP_TX`: send the frame back out of the interface it arrived on. In a live-frames test run
/// ([`xdp_run_live`]) it sends the frame out of the interface the run is bound to.
pub const XDP_TX: i32 = 3;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: a test run whose frames really go where the program says.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// Most frames one live-frames run hands to the driver at once (`TEST_XDP_MAX_BATCH`).
pub const XDP_LIVE_MAX_BATCH: u32 = 256;

/// An XDP program that returns `action` for every frame (`r0 = action; exit`): with
/// [`XDP_DROP`] it is a sink that frees frames as early as the kernel can, with [`XDP_TX`] the
/// body of a live-frames generator, with [`XDP_PASS`] a no-op that still gives a veth its NAPI
/// context (which `ndo_xdp_xmit` into that veth needs).
pub fn xdp_action_program(action: i32) -> [Insn; 2] {
    [
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, action),
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

/// An XDP program that writes `frame` over the packet, then returns `XDP_TX`: a generator
/// for [`xdp_run_live`] whose frames may come back changed. Live-frames mode re-initialises a
/// page only when it is first allocated, so a frame that the stack changed after `XDP_PASS`
/// (a router rewrites MACs, TTL and, with NAT, addresses) returns to the generator changed;
/// this program puts it back each time. A packet shorter than `frame` is sent as it is.
///
/// ```text
/// r2 = *(u32 *)(r1 + 0)           ; ctx->data
/// r3 = *(u32 *)(r1 + 4)           ; ctx->data_end
/// r4 = r2
/// r4 += len(frame)
/// if r4 > r3 goto tx              ; the verifier's bounds check
/// *(u32 *)(r2 + 0) = ...          ; one store per 4 bytes, bytes for the tail
/// ...
/// tx: r0 = XDP_TX
/// exit
/// ```
pub fn xdp_tx_rewrite_program(frame: &[u8]) -> Vec<Insn> {
    const BPF_ST: u8 = 0x02;
    const BPF_B: u8 = 0x10;
    const BPF_X: u8 = 0x08;
    const BPF_ADD: u8 = 0x00;
    const BPF_JGT: u8 = 0x20;
    // Kept within what one branch offset and the verifier take with ease.
    let frame = &frame[..frame.len().min(1024)];
    let mut stores = Vec::new();
    let words = frame.chunks_exact(4);
    let tail = words.remainder();
    for (i, w) in words.enumerate() {
        let v = i32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
        stores.push(Insn::new(BPF_ST | BPF_MEM | BPF_W, 2, 0, (i * 4) as i16, v));
    }
    let base = frame.len() - tail.len();
    for (i, b) in tail.iter().enumerate() {
        stores.push(Insn::new(
            BPF_ST | BPF_MEM | BPF_B,
            2,
            0,
            (base + i) as i16,
            i32::from(*b),
        ));
    }
    let mut p = vec![
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0),
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, 3, 1, 4, 0),
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 4, 2, 0, 0),
        Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 4, 0, 0, frame.len() as i32),
        Insn::new(BPF_JMP | BPF_JGT | BPF_X, 4, 3, stores.len() as i16, 0),
    ];
    p.extend(stores);
    p.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, XDP_TX));
    p.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    p
}

/// `struct xdp_md`, the context of an XDP test run.
#[repr(C)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// `bpf_attr` for `BPF_PROG_TEST_RUN`.
#[repr(C)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Runs XDP program `prog` `repeat` times in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`) as
/// if each frame, a copy of `frame`, had arrived on queue 0 of interface `ifindex` of the calling
/// thread's namespace: what the program returns is carried out, so [`XDP_TX`] transmits the
/// frame out of that interface (`ndo_xdp_xmit`; a veth needs an XDP program or GRO on its peer
/// for that, else the frames are dropped). Frames go to the driver `batch` at a time (1 to
/// [`XDP_LIVE_MAX_BATCH`]). Runs on the calling CPU and returns early on a pending signal.
pub fn xdp_run_live(
    prog: &OwnedFd,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
    batch: u32,
) -> io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| io::Error::other("frame too long"))?;
    let ctx = XdpMd {
        data: 0,
        data_end: len,
        data_meta: 0,
        ingress_ifindex: ifindex,
        rx_queue_index: 0,
        egress_ifindex: 0,
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        retval: 0,
        data_size_in: len,
        data_size_out: 0,
        data_in: frame.as_ptr() as u64,
        data_out: 0,
        repeat,
        duration: 0,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_size_out: 0,
        ctx_in: std::ptr::from_ref(&ctx) as u64,
        ctx_out: 0,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        cpu: 0,
        batch_size: batch.clamp(1, XDP_LIVE_MAX_BATCH),
        _pad: 0,
    };
    // SAFETY: `TestRunAttr` is the `BPF_PROG_TEST_RUN` member; `data_in` points at `len`
    // readable bytes and `ctx_in` at a `struct xdp_md`, both outliving the call; live-frames mode
    // writes nothing back through `data_out` or `ctx_out`, which are null.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }
        .map(|_| ())
        .map_err(|e| perm_hint("live-frames XDP test run", e))
}

/// `BPF_MAP_LOOKUP_ELEM`.
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
/// `BPF_MAP_TYPE_ARRAY`.
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// Creates an array map of one 8-byte counter (key 0), for [`counting_drop_program`].
pub fn create_counter_map(name: &str) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: name16(name),
    };
    // SAFETY: `MapCreateAttr` is the `BPF_MAP_CREATE` member of `bpf_attr`; it holds no pointers.
    let r =
        unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map_err(|e| perm_hint("create array map", e))?;
    owned(r)
}

/// Reads the counter of a map made by [`create_counter_map`].
pub fn read_counter(map: &OwnedFd) -> io::Result<u64> {
    let key: u32 = 0;
    let mut value: u64 = 0;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: std::ptr::from_mut(&mut value) as u64,
        flags: 0,
    };
    // SAFETY: `MapElemAttr` is the `BPF_MAP_LOOKUP_ELEM` member; `key` points at a 4-byte local
    // and `value` at a writable 8-byte local (the map's sizes), both outliving the call.
    unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) }?;
    Ok(value)
}

/// An XDP program that counts each frame in `map[0]` (made by [`create_counter_map`]) and
/// drops it, for devices whose own counters skip what XDP dropped (TAP):
///
/// ```text
/// *(u32 *)(r10 - 4) = 0           ; the key, on the stack
/// r2 = r10; r2 += -4
/// r1 = map_fd ll
/// call bpf_map_lookup_elem
/// if r0 == 0 goto +2
/// r1 = 1; lock *(u64 *)(r0 + 0) += r1
/// r0 = XDP_DROP; exit
/// ```
pub fn counting_drop_program(map: &OwnedFd) -> [Insn; 11] {
    const BPF_ST: u8 = 0x02;
    const BPF_STX: u8 = 0x03;
    const BPF_ADD: u8 = 0x00;
    const BPF_X: u8 = 0x08;
    const BPF_JEQ: u8 = 0x10;
    const BPF_ATOMIC: u8 = 0xc0;
    const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
    [
        Insn::new(BPF_ST | BPF_MEM | BPF_W, 10, 0, -4, 0),
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0),
        Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -4),
        Insn::new(
            BPF_LD | BPF_DW | BPF_IMM,
            1,
            BPF_PSEUDO_MAP_FD,
            0,
            map.as_raw_fd(),
        ),
        Insn::new(0, 0, 0, 0, 0),
        Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM),
        Insn::new(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2, 0),
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 1, 0, 0, 1),
        Insn::new(BPF_STX | BPF_DW | BPF_ATOMIC, 0, 1, 0, 0),
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, XDP_DROP),
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

#[cfg(test)]
mod generator_tests {
    use super::*;

    #[test]
    fn the_rewriting_generator_stores_every_byte_then_transmits() {
        let frame: Vec<u8> = (1..=62).collect();
        let p = xdp_tx_rewrite_program(&frame);
        // 5 to bound-check, 15 words and 2 tail bytes, 2 to return.
        assert_eq!(p.len(), 5 + 15 + 2 + 2);
        assert_eq!(p[4].off, 17, "the bounds check jumps over every store");
        assert_eq!(p[5].imm, i32::from_ne_bytes([1, 2, 3, 4]));
        assert_eq!((p[20].off, p[20].imm), (60, 61));
        assert_eq!((p[21].off, p[21].imm), (61, 62));
        assert_eq!(p[22].imm, XDP_TX);
    }

    #[test]
    fn the_kernel_verifier_accepts_the_rewriting_generator() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI runs as root: loading a BPF program must be tested there"
            );
            println!("skipped: loading a BPF program needs root");
            return;
        }
        let frame: Vec<u8> = (0..63).collect();
        load_xdp_program("tb_rewrite_test", &xdp_tx_rewrite_program(&frame))
            .expect("the verifier refused the rewriting generator");
    }

    #[test]
    fn test_run_attribute_matches_linux_bpf_h() {
        assert_eq!(std::mem::offset_of!(TestRunAttr, data_in), 16);
        assert_eq!(std::mem::offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(std::mem::offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(std::mem::offset_of!(TestRunAttr, flags), 64);
        assert_eq!(std::mem::offset_of!(TestRunAttr, batch_size), 72);
        assert_eq!(std::mem::size_of::<XdpMd>(), 24);
    }

    #[test]
    fn action_program_returns_its_action() {
        let p = xdp_action_program(XDP_DROP);
        assert_eq!(p[0], Insn::new(0xb7, 0, 0, 0, 1));
        assert_eq!(p[1], Insn::new(0x95, 0, 0, 0, 0));
    }
}
