//! Syscall wrappers, one module per facility.

pub mod bpf;
pub mod ethtool;
pub mod netns;
pub mod tap;
pub mod xdp;

/// Turns a `-1` return into the thread's `errno`.
pub(crate) fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
