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

/// Runs `f` on a thread inside namespace `ns` (or the caller's own namespace when `None`).
pub fn run_in<T: Send>(
    ns: Option<&Path>,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    let Some(ns) = ns else { return f() };
    let file = File::open(ns).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("network namespace {} cannot be opened: {e}", ns.display()),
        )
    })?;
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
