//! TAP device ioctls: create or attach queues, persistence, MTU and link state.

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const TUN_PATH: &[u8] = b"/dev/net/tun\0";

/// `struct ifreq` as the TUN and SIOC* ioctls read it: a name and a 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name '{name}' must be 1 to 15 bytes"),
            ));
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        r.name[..bytes.len()].copy_from_slice(bytes);
        Ok(r)
    }
}

/// Opens one queue of TAP device `name` (multi-queue, no packet info, non-blocking), creating
/// the device if it does not exist in the calling thread's namespace. With `vnet_hdr`, every
/// frame read or written carries a virtio-net header in front (see [`set_offloads`]); the flag
/// belongs to the device, so every queue must be opened the same way.
pub fn open_queue(name: &str, vnet_hdr: bool) -> io::Result<OwnedFd> {
    let mut req = IfReq::new(name)?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    let flags = flags as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: a NUL-terminated constant path; the result is checked.
    let fd = cvt(unsafe {
        libc::open(
            TUN_PATH.as_ptr().cast(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is laid out as.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) }).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EINVAL) {
            " (an interface of that name exists and is not a multi-queue TAP)"
        } else {
            ""
        };
        io::Error::new(e.kind(), format!("attach TAP '{name}': {e}{hint}"))
    })?;
    Ok(fd)
}

/// With `Some(hdr_len)`: sets the virtio-net header size to `hdr_len` bytes and tells the kernel
/// which offloads the reader of this device takes: partial checksums and TCP segmentation (IPv4
/// and IPv6), so the stack on the other side may hand over super-frames of up to 64 KiB. With
/// `None`: takes every offload back (a persistent device keeps what an earlier open set).
pub fn set_offloads(fd: &OwnedFd, hdr_len: Option<usize>) -> io::Result<()> {
    let features = match hdr_len {
        Some(len) => {
            let sz = libc::c_int::try_from(len).map_err(|_| io::Error::other("bad header size"))?;
            // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which points at `sz`.
            cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &sz) })
                .map_err(|e| io::Error::new(e.kind(), format!("TUNSETVNETHDRSZ: {e}")))?;
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        }
        None => 0,
    };
    // SAFETY: TUNSETOFFLOAD takes the feature bits as an integer argument by value.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(features),
        )
    })
    .map_err(|e| io::Error::new(e.kind(), format!("TUNSETOFFLOAD: {e}")))?;
    Ok(())
}

/// `TUN_F_UDP_TUNNEL_GSO` (Linux 6.17+): the reader takes UDP tunnel super-frames.
pub const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x080;
/// `TUN_F_UDP_TUNNEL_GSO_CSUM` (Linux 6.17+): ... with the outer UDP checksum to fill in.
pub const TUN_F_UDP_TUNNEL_GSO_CSUM: libc::c_uint = 0x100;

/// `TUN_F_USO4` (Linux 6.2+): the reader takes UDP super-frames over IPv4 (needs `TUN_F_CSUM`).
pub const TUN_F_USO4: libc::c_uint = 0x20;
/// `TUN_F_USO6` (Linux 6.2+): ... over IPv6.
pub const TUN_F_USO6: libc::c_uint = 0x40;

/// Tries the offloads of [`set_offloads`] plus `extra` feature bits (e.g. [`TUN_F_USO4`] |
/// [`TUN_F_USO6`], the UDP tunnel bits) with a `hdr_len`-byte virtio-net header. Returns
/// whether the kernel took the combination; when it refused it (EINVAL: a kernel without one
/// of the bits), the header size may be `hdr_len` and the features are whatever they were:
/// the caller tries a smaller set or [`set_offloads`].
pub fn try_offloads(fd: &OwnedFd, hdr_len: usize, extra: libc::c_uint) -> io::Result<bool> {
    let sz = libc::c_int::try_from(hdr_len).map_err(|_| io::Error::other("bad header size"))?;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which points at `sz`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &sz) })
        .map_err(|e| io::Error::new(e.kind(), format!("TUNSETVNETHDRSZ: {e}")))?;
    let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | extra;
    // SAFETY: TUNSETOFFLOAD takes the feature bits as an integer argument by value.
    let r = cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(features),
        )
    });
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(io::Error::new(e.kind(), format!("TUNSETOFFLOAD: {e}"))),
    }
}

/// The device's flags as the kernel has them (`TUNGETIFF`), e.g. whether `IFF_VNET_HDR` is on.
pub fn flags(fd: &OwnedFd) -> io::Result<i32> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    // SAFETY: TUNGETIFF writes a `struct ifreq`, which `req` is laid out as.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req) })?;
    Ok(i32::from(i16::from_ne_bytes([req.data[0], req.data[1]])))
}

/// Makes the device outlive its file descriptors (`true`) or go away with them (`false`).
pub fn set_persist(fd: &OwnedFd, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer argument by value.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETPERSIST,
            libc::c_ulong::from(persist),
        )
    })
    .map(|_| ())
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the result is checked.
    let s = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `s` was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// Sets the MTU of interface `name` in the calling thread's namespace.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let s = ctl_socket()?;
    let mut req = IfReq::new(name)?;
    let mtu = i32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    req.data[..4].copy_from_slice(&mtu.to_ne_bytes());
    // SAFETY: SIOCSIFMTU reads a `struct ifreq` with `ifr_mtu` in the union, as laid out here.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFMTU, &mut req) }).map(|_| ())
}

/// The MTU of interface `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let s = ctl_socket()?;
    let mut req = IfReq::new(name)?;
    // SAFETY: SIOCGIFMTU fills `ifr_mtu` of a `struct ifreq`, as laid out here.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFMTU, &mut req) })?;
    let mut b = [0u8; 4];
    b.copy_from_slice(&req.data[..4]);
    Ok(i32::from_ne_bytes(b).max(0) as u32)
}

/// Sets interface `name` administratively up.
pub fn set_up(name: &str) -> io::Result<()> {
    let s = ctl_socket()?;
    let mut req = IfReq::new(name)?;
    // SAFETY: SIOCGIFFLAGS fills `ifr_flags` of a `struct ifreq`, as laid out here.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | libc::IFF_UP as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: SIOCSIFFLAGS reads `ifr_flags` of a `struct ifreq`, as laid out here.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) }).map(|_| ())
}

/// Whether interface `name` exists in the calling thread's namespace.
pub fn exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Duplicates a descriptor (close-on-exec).
pub fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fd.try_clone()
}

/// The device's name as the kernel has it now (`TUNGETIFF`): a container engine may have renamed
/// it since it was opened.
pub fn current_name(fd: &OwnedFd) -> io::Result<String> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    // SAFETY: TUNGETIFF writes a `struct ifreq`, which `req` is laid out as.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req) })?;
    let end = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    // In range: `end` is at most the array's length.
    Ok(String::from_utf8_lossy(&req.name[..end]).into_owned())
}

/// A descriptor of the network namespace the device lives in now (`TUNGETDEVNETNS`, Linux
/// 5.2): it follows the device when a container engine moves it.
pub fn device_netns(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new descriptor; checked.
    let ns = cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETDEVNETNS) })?;
    // SAFETY: `ns` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ns) })
}
