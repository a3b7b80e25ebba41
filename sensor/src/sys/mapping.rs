//! Read-only mappings of capture files, guarded against the file shrinking under them.
//!
//! Why map: `replay` reading a pcap with `read` has the kernel copy every byte into its
//! buffer (`_copy_to_iter`: a quarter of a one-engine replay's CPU time and half the
//! `--workers` reader's, RESULTS.md), while the sensor looks at the first ~100 bytes
//! of each frame.
//!
//! The danger: when a mapped file is truncated (a rotating `tcpdump -C`, a copy cut
//! short while it is replayed), touching a page past its new end raises SIGBUS, whose
//! default action kills the process; `read` would just have returned fewer bytes. The
//! guard: a SIGBUS handler that, for an address inside a mapping made here, maps a page
//! of zeros over the vanished page and marks the mapping's file as changed; the load
//! then completes, reading zeros, and the reader reports the file as changed while it
//! was read (the caller checks [`FileMapping::new`]'s flag). A SIGBUS anywhere else
//! keeps its default action. (The rest of the page that holds the new end reads as
//! zeros without a fault, as the kernel always serves a file's last page: a reader
//! may see up to a page of zeros before the fault that tells it.)

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

/// Mappings alive at once (`replay` holds a few windows per worker).
const SLOTS: usize = 1024;

/// One live mapping: its address range and its file's "changed" flag.
struct Slot {
    /// First address; 0 when the slot is free.
    start: AtomicUsize,
    /// One past the last address; 0 while the slot is being filled or emptied.
    end: AtomicUsize,
    /// The `AtomicBool` inside the mapping's `Arc` (kept alive by the mapping).
    changed: AtomicPtr<AtomicBool>,
}

static SLOTS_IN_USE: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        changed: AtomicPtr::new(std::ptr::null_mut()),
    }
}; SLOTS];

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();

/// `len` bytes of a file from a page-aligned offset, mapped read-only.
pub struct FileMapping {
    ptr: *mut libc::c_void,
    len: usize,
    slot: usize,
    /// Holds the flag the slot points to.
    _changed: Arc<AtomicBool>,
}

// SAFETY: the mapping is read-only memory owned by this value; reading it from
// several threads at once is fine, and unmapping happens once, in `drop`.
unsafe impl Send for FileMapping {}
// SAFETY: as above: `&FileMapping` only gives out `&[u8]`.
unsafe impl Sync for FileMapping {}

/// The size of a page; mapping offsets are multiples of it. The first call also
/// installs the SIGBUS guard, which reads the page size too ([`FileMapping::new`]
/// calls this before its first mapping).
pub fn page_size() -> usize {
    INSTALL.call_once(install_guard);
    PAGE_SIZE.load(Ordering::Relaxed)
}

impl FileMapping {
    /// Maps `len` (> 0) bytes of `file` from `offset`, a multiple of [`page_size`].
    /// `changed` is set when a page of the mapping vanished (the file shrank) and
    /// was read as zeros.
    pub fn new(
        file: &File,
        offset: u64,
        len: usize,
        changed: &Arc<AtomicBool>,
    ) -> io::Result<FileMapping> {
        let page = page_size() as u64;
        if len == 0 || !offset.is_multiple_of(page) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh shared read-only mapping chosen by the kernel (no fixed
        // address), of a file descriptor that is open for the duration of the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = ptr as usize;
        let Some(slot) = (0..SLOTS).find(|&i| {
            SLOTS_IN_USE[i]
                .start
                .compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        }) else {
            // SAFETY: the mapping made above, not yet handed out.
            unsafe { libc::munmap(ptr, len) };
            return Err(io::Error::other("too many capture file mappings at once"));
        };
        let s = &SLOTS_IN_USE[slot];
        s.changed
            .store(Arc::as_ptr(changed).cast_mut(), Ordering::SeqCst);
        s.end.store(start + len, Ordering::SeqCst);
        Ok(FileMapping {
            ptr,
            len,
            slot,
            _changed: changed.clone(),
        })
    }
}

impl std::ops::Deref for FileMapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes at `ptr` for as long as `self` lives. Another
        // process may write the file meanwhile (then these bytes change, as with a
        // `read` racing the writer) or shrink it (then the guard puts zeros in place).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        let s = &SLOTS_IN_USE[self.slot];
        s.end.store(0, Ordering::SeqCst);
        s.changed.store(std::ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: the mapping made in `new`; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
        s.start.store(0, Ordering::SeqCst);
    }
}

fn install_guard() {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        PAGE_SIZE.store(page as usize, Ordering::Relaxed);
    }
    // SAFETY: a zeroed sigaction is valid once its fields are set; with SA_SIGINFO the
    // handler has the three-argument form `on_sigbus` has.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// The SIGBUS handler. Async-signal-safe: atomics and `mmap` (a plain system call on
/// Linux) only.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &SLOTS_IN_USE {
        let (start, end) = (s.start.load(Ordering::SeqCst), s.end.load(Ordering::SeqCst));
        if start == 0 || addr < start || addr >= end {
            continue;
        }
        let page = PAGE_SIZE.load(Ordering::Relaxed);
        let at = addr & !(page - 1);
        // SAFETY: `at` is a page inside a live mapping made by `FileMapping::new` (the
        // faulting thread is reading it, so it cannot be unmapped meanwhile); Rust
        // code only ever reads it as bytes. Mapping zeros over that one page with
        // MAP_FIXED replaces nothing else.
        let r = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            break;
        }
        let changed = s.changed.load(Ordering::SeqCst);
        if !changed.is_null() {
            // SAFETY: the flag lives in an `Arc` the mapping holds (see above).
            unsafe { (*changed).store(true, Ordering::SeqCst) };
        }
        return;
    }
    super::reraise_default(sig);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A file truncated while mapped: the pages past its new end read as zeros (no
    /// SIGBUS), the pages before keep their bytes, and the file is marked changed.
    #[test]
    fn a_file_that_shrinks_while_mapped_reads_zeros_and_is_marked() {
        let page = page_size();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![0xab; 3 * page]).unwrap();
        let changed = Arc::new(AtomicBool::new(false));
        let m = FileMapping::new(&f, 0, 3 * page, &changed).unwrap();
        assert!(m.iter().all(|&b| b == 0xab));
        assert!(!changed.load(Ordering::SeqCst));
        f.set_len(page as u64).unwrap();
        assert!(m[..page].iter().all(|&b| b == 0xab));
        assert_eq!(m[2 * page + 5], 0);
        assert!(m[page..].iter().all(|&b| b == 0));
        assert!(changed.load(Ordering::SeqCst));
        // A second mapping of the same file, from a page-aligned offset.
        let fresh = Arc::new(AtomicBool::new(false));
        f.set_len(2 * page as u64).unwrap();
        let m2 = FileMapping::new(&f, page as u64, page, &fresh).unwrap();
        assert_eq!(m2.len(), page);
        assert!(!fresh.load(Ordering::SeqCst));
        assert!(FileMapping::new(&f, 1, page, &fresh).is_err());
    }
}
