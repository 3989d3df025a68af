//! The little interface configuration the CNI plugin does inside a container's namespace: an
//! IPv4 address, link up, routes, and reading back the MAC and address (CHECK). Old-style
//! `ioctl`s on a datagram socket are enough for IPv4 and need no netlink library.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Runs `f` on a short-lived thread inside the network namespace at `ns` (the caller's
/// namespace never changes: `setns` moves only the calling thread).
pub fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let file = std::fs::File::open(ns).map_err(|e| {
        io::Error::new(e.kind(), format!("network namespace {}: {e}", ns.display()))
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `file` is an open descriptor for the whole call; setns affects only this
            // short-lived thread.
            cvt(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot enter {}: {e}", ns.display()))
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// `struct ifreq`: a name and a 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name '{name}' must be 1 to 15 bytes"),
            ));
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        r.name[..b.len()].copy_from_slice(b);
        Ok(r)
    }

    /// Puts an IPv4 `sockaddr_in` in the union.
    fn set_in(&mut self, a: Ipv4Addr) {
        self.data = [0; 24];
        self.data[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        self.data[4..8].copy_from_slice(&a.octets());
    }

    fn get_in(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.data[4], self.data[5], self.data[6], self.data[7])
    }
}

fn sock() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; checked.
    let s = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `s` was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

fn ioctl(s: &OwnedFd, req: libc::c_ulong, r: &mut IfReq, what: &str) -> io::Result<()> {
    // SAFETY: every request used here reads or writes one `struct ifreq`, which `r` is laid
    // out as, and `s` is an open socket.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), req as _, r as *mut IfReq) })
        .map(|_| ())
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// The netmask of a prefix length.
fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(crate::text::prefix_mask(prefix))
}

/// Brings `ifname` up (in the calling thread's namespace).
pub fn set_up(ifname: &str) -> io::Result<()> {
    let s = sock()?;
    let mut r = IfReq::new(ifname)?;
    ioctl(&s, libc::SIOCGIFFLAGS, &mut r, "read link flags")?;
    let flags = i16::from_ne_bytes([r.data[0], r.data[1]]) | libc::IFF_UP as i16;
    r.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(&s, libc::SIOCSIFFLAGS, &mut r, "set link up")
}

/// Gives `ifname` the address `addr/prefix` (in the calling thread's namespace).
pub fn set_ipv4(ifname: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let s = sock()?;
    let mut r = IfReq::new(ifname)?;
    r.set_in(addr);
    ioctl(&s, libc::SIOCSIFADDR, &mut r, "set address")?;
    r.set_in(mask(prefix));
    ioctl(&s, libc::SIOCSIFNETMASK, &mut r, "set netmask")
}

/// `ifname`'s IPv4 address and prefix length, if it has one.
pub fn ipv4(ifname: &str) -> io::Result<Option<(Ipv4Addr, u8)>> {
    let s = sock()?;
    let mut r = IfReq::new(ifname)?;
    if let Err(e) = ioctl(&s, libc::SIOCGIFADDR, &mut r, "read address") {
        // The wrapped error keeps the kind, not the number.
        return if e.kind() == io::ErrorKind::AddrNotAvailable {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let addr = r.get_in();
    ioctl(&s, libc::SIOCGIFNETMASK, &mut r, "read netmask")?;
    let prefix = u32::from(r.get_in()).count_ones() as u8;
    Ok(Some((addr, prefix)))
}

/// `ifname`'s MAC address.
pub fn mac(ifname: &str) -> io::Result<[u8; 6]> {
    let s = sock()?;
    let mut r = IfReq::new(ifname)?;
    ioctl(&s, libc::SIOCGIFHWADDR, &mut r, "read MAC")?;
    let mut m = [0u8; 6];
    // The union holds a `sockaddr`: two bytes of family, then the address.
    m.copy_from_slice(&r.data[2..8]);
    Ok(m)
}

/// Adds a route to `dst/prefix` via `gw` out of `ifname` (in the calling thread's namespace).
pub fn add_route(ifname: &str, dst: Ipv4Addr, prefix: u8, gw: Option<Ipv4Addr>) -> io::Result<()> {
    let s = sock()?;
    let sa = |a: Ipv4Addr| {
        // SAFETY: an all-zero `sockaddr_in` is a valid value of this plain C struct.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        // SAFETY: `sockaddr_in` and `sockaddr` are both 16 bytes; the kernel reads it by family.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
    };
    let dev =
        std::ffi::CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero `rtentry` is a valid value of this plain C struct.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sa(dst);
    rt.rt_genmask = sa(mask(prefix));
    rt.rt_flags = libc::RTF_UP;
    if let Some(g) = gw {
        rt.rt_gateway = sa(g);
        rt.rt_flags |= libc::RTF_GATEWAY;
    }
    rt.rt_dev = dev.as_ptr().cast_mut();
    // SAFETY: SIOCADDRT reads one `struct rtentry`; `rt_dev` points at `dev`, alive for the call.
    match cvt(unsafe {
        libc::ioctl(
            s.as_raw_fd(),
            libc::SIOCADDRT as _,
            &rt as *const libc::rtentry,
        )
    }) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("add route {dst}/{prefix}: {e}"),
        )),
    }
}
