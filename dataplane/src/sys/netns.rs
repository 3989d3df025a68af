//! Network namespaces: run a closure with the calling thread inside another namespace.
//!
//! `setns(2)` changes only the calling thread's namespace, so each call runs on a short-lived
//! scoped thread that enters the namespace and ends; the caller's namespace never changes.
//! Sockets and TAP queues opened there stay bound to that namespace after the thread ends.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where iproute2 keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The path of namespace `ns`: a name under [`NETNS_RUN_DIR`], or a path as given.
pub fn path_of(ns: &str) -> PathBuf {
    if ns.contains('/') {
        PathBuf::from(ns)
    } else {
        Path::new(NETNS_RUN_DIR).join(ns)
    }
}

/// `statfs` magic of the nsfs file system, where namespace files live.
const NSFS_MAGIC: libc::c_long = 0x6e73_6673;

/// Opens `ns` and checks that it is a namespace file: without blocking (a FIFO or a device
/// named as a namespace must not hang the caller; the control plane calls this), and refusing
/// anything that is not on nsfs with an error that says what a namespace path looks like.
pub fn open(ns: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(ns)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("network namespace {} cannot be opened: {e}", ns.display()),
            )
        })?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is an open descriptor for the whole call and `st` a valid, writable
    // `statfs` the kernel fills.
    super::cvt(unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) })?;
    // The field's integer type differs between C libraries; the magic fits either.
    #[allow(clippy::unnecessary_cast)]
    if st.f_type as libc::c_long != NSFS_MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is not a network namespace (use a name from `ip netns list`, a file under \
                 {NETNS_RUN_DIR}, or /proc/PID/ns/net)",
                ns.display()
            ),
        ));
    }
    Ok(file)
}

/// Runs `f` on a thread inside namespace `ns` (or the caller's own namespace when `None`).
pub fn run_in<T: Send>(
    ns: Option<&Path>,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    let Some(ns) = ns else { return f() };
    let file = open(ns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `file` is an open namespace file descriptor for the duration of the call;
            // setns only affects this short-lived thread.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            super::cvt(r).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot enter network namespace {}: {e}", ns.display()),
                )
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace worker thread panicked")))
    })
}

/// Whether two namespace descriptors name the same namespace (same nsfs inode).
pub fn same(a: &impl AsRawFd, b: &impl AsRawFd) -> std::io::Result<bool> {
    let stat = |fd: libc::c_int| {
        // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open for the call and `st` a valid, writable `stat`.
        super::cvt(unsafe { libc::fstat(fd, &mut st) }).map(|_| (st.st_dev, st.st_ino))
    };
    Ok(stat(a.as_raw_fd())? == stat(b.as_raw_fd())?)
}
