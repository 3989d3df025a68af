//! Large tables in anonymous memory backed by huge pages where the kernel allows it.
//!
//! Flow and MAC tables are probed at random; with 4 KiB pages a table of tens of megabytes misses
//! the TLB on nearly every probe, and the page walk costs as much as the cache miss itself. The
//! memory is mapped 2 MiB-aligned and marked `MADV_HUGEPAGE`, so transparent huge pages apply
//! even where the system setting is `madvise`; where they are unavailable this is plain memory.

use std::ops::{Deref, DerefMut};

const HUGE: usize = 2 << 20;

/// Marks `[ptr, ptr + len)` as a candidate for transparent huge pages (best effort).
pub fn advise_huge(ptr: *mut u8, len: usize) {
    // SAFETY: madvise only changes the kernel's paging policy for a range this process mapped;
    // a failure (unsupported, unaligned) leaves the memory as it was, so the result is ignored.
    unsafe {
        libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE);
    }
}

/// A fixed-length array of `T` in its own huge-page-friendly mapping.
pub struct HugeArray<T: Copy> {
    ptr: *mut T,
    len: usize,
    map_len: usize,
}

// SAFETY: the array owns its mapping exclusively, like a `Box<[T]>`.
unsafe impl<T: Copy + Send> Send for HugeArray<T> {}
// SAFETY: shared access only yields `&[T]`, like a `Box<[T]>`.
unsafe impl<T: Copy + Sync> Sync for HugeArray<T> {}

impl<T: Copy> HugeArray<T> {
    /// `len` copies of `fill`. Panics only if the system is out of memory, like `vec!`.
    pub fn new(len: usize, fill: T) -> HugeArray<T> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("array size overflows")
            .max(1);
        let map_len = bytes.div_ceil(HUGE) * HUGE;
        // Map one extra huge page so the array can start on a 2 MiB boundary.
        let raw_len = map_len + HUGE;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                raw_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            raw != libc::MAP_FAILED,
            "cannot map {raw_len} bytes: {}",
            std::io::Error::last_os_error()
        );
        let start = (raw as usize).next_multiple_of(HUGE);
        let head = start - raw as usize;
        let tail = raw_len - head - map_len;
        // SAFETY: trimming the unaligned head and the unused tail of our own fresh mapping.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((start + map_len) as *mut libc::c_void, tail);
            }
        }
        advise_huge(start as *mut u8, map_len);
        let ptr = start as *mut T;
        for i in 0..len {
            // SAFETY: `i < len` and the mapping holds `len` values of `T`, suitably aligned
            // (2 MiB alignment satisfies any `T`).
            unsafe { ptr.add(i).write(fill) };
        }
        HugeArray { ptr, len, map_len }
    }
}

impl<T: Copy> Deref for HugeArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialised values that live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Copy> DerefMut for HugeArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: Copy> Drop for HugeArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the aligned range `new` kept; nothing refers to it any more.
        unsafe {
            libc::munmap(self.ptr.cast(), self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_and_changes_values() {
        let mut a = HugeArray::new(1000, 7u64);
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|&v| v == 7));
        a[999] = 1;
        assert_eq!(a[999], 1);
        assert_eq!(a.as_ptr() as usize % HUGE, 0);
        let empty: HugeArray<u8> = HugeArray::new(0, 0);
        assert!(empty.is_empty());
    }
}
