//! Every `unsafe` of the sensor crate (issue 8), each with the reason it is sound:
//! thread pinning, signal handlers, huge-page hints, cache prefetch, the cycle counter and mapped
//! capture files ([`mapping`]). The rest of the crate calls these safe functions.
//! (The AF_XDP rings and UMEM live in the `rstwatch-xdp` crate.)

mod mapping;

pub use mapping::{page_size, FileMapping};

/// CPU time the calling thread has used, in nanoseconds (0 if the clock fails).
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if r != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A cycle count for timing short stretches of code: the time-stamp counter where
/// there is one (constant-rate on the hosts this runs on), else nanoseconds.
#[inline(always)]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a counter; it has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }
}

/// Restricts the calling thread to `cores` (cores at or past `CPU_SETSIZE` are
/// refused).
pub fn pin_thread(cores: &[usize]) -> std::io::Result<()> {
    if let Some(c) = cores.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(std::io::Error::other(format!(
            "core {c} is beyond CPU_SETSIZE"
        )));
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET is called only for cores
    // below CPU_SETSIZE (checked above); sched_setaffinity reads the set it is given.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Installs `handler` for each of `signals` (with `SA_RESTART`). The handler must
/// only do async-signal-safe things (touch atomics, call [`reraise_default`]).
pub fn on_signals(signals: &[libc::c_int], handler: extern "C" fn(libc::c_int)) {
    for &sig in signals {
        // SAFETY: a zeroed sigaction is valid once its fields are set; the handler is
        // an `extern "C" fn(c_int)`, the form sa_sigaction takes without SA_SIGINFO.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// From a signal handler: restores `sig`'s default action and raises it again.
pub fn reraise_default(sig: libc::c_int) {
    // SAFETY: signal(2) and raise(3) are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Calls `each` with an address in every cache line of `*p`: its first line, the next
/// one, and its last byte's (a 116-byte flow at any offset spans up to three). A value
/// no larger than its alignment never crosses a line (an index bucket): one address.
#[inline(always)]
fn each_line_of<T>(p: *const T, mut each: impl FnMut(*const u8)) {
    let b = p as *const u8;
    let size = std::mem::size_of::<T>().max(1);
    each(b);
    if size > 64 {
        each(b.wrapping_add(64));
    }
    if size > std::mem::align_of::<T>() {
        each(b.wrapping_add(size - 1));
    }
}

/// Hints the CPU to bring every cache line of `*p` into the cache.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    each_line_of(p, prefetch_to_l1);
}

/// [`prefetch`] into the second-level cache.
#[inline(always)]
pub fn prefetch_all_to_l2<T>(p: *const T) {
    each_line_of(p, prefetch_to_l2);
}

/// Hints the CPU to bring the cache line at `p` into the first-level cache.
#[inline(always)]
fn prefetch_to_l1(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is only a hint; it never faults, even on a bad address (the
    // callers compute theirs with wrapping arithmetic).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch(p as *const i8, _MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Hints the CPU to bring the cache line at `p` into the second-level cache but not
/// the first: for a stream read once, far ahead of use (a mapped capture's bytes, most
/// of them payload no one reads), which would otherwise push the flows and index lines
/// the engine is working on out of L1. Against `prefetch` there, replay of the
/// 2,000,000-frame benchmark capture took ~5 % less CPU (RESULTS.md).
#[inline(always)]
pub fn prefetch_to_l2(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is only a hint; it never faults, even on a bad address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch(p as *const i8, _MM_HINT_T1);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Has the kernel back `[ptr, ptr + bytes)` with writable memory now
/// (`MADV_POPULATE_WRITE`, Linux 5.14), for memory that is read before it is first
/// written. Otherwise each such page is first mapped to the shared zero page, then
/// copied on the first write, and with other threads of the process running that copy
/// is a TLB shootdown: an interrupt to every other core (a VM exit each, in a VM).
/// A hint only: on an older kernel nothing changes but speed.
pub fn populate_for_write(ptr: *const u8, bytes: usize) {
    let (start, len) = whole_pages(ptr, bytes);
    if len == 0 {
        return;
    }
    // SAFETY: the range lies inside one live, writable allocation of the caller's;
    // populating changes no contents and no protections.
    unsafe {
        libc::madvise(start, len, libc::MADV_POPULATE_WRITE);
    }
}

/// Asks the kernel for a pipe buffer of `bytes` on the pipe `fd` reads from
/// (`F_SETPIPE_SZ`); returns the size it has now. A capture piped in through the
/// default 64 KiB buffer makes the writer and the reader wake each other every 64
/// KiB: on this VM `cat capture.pcap | rstwatch-sensor replay -` spent 3–4 s in the
/// kernel for 1.3 GB, ~1 s with a 1 MiB buffer (RESULTS.md). Unprivileged processes
/// may ask for up to `/proc/sys/fs/pipe-max-size` (1 MiB by default).
pub fn grow_pipe(fd: &impl std::os::fd::AsRawFd, bytes: usize) -> std::io::Result<usize> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl on a descriptor the caller holds open; F_SETPIPE_SZ changes only
    // the pipe's capacity, and fails harmlessly on anything that is not a pipe.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Asks the kernel to back `[ptr, ptr + bytes)` with transparent huge pages (where
/// THP is in `madvise` mode, the usual default). Flows are touched in random order;
/// with 4 KiB pages nearly every lookup in a large table also misses the TLB, which in
/// a VM costs a nested page walk. A hint only: failure changes nothing but speed.
pub fn advise_huge_pages(ptr: *const u8, bytes: usize) {
    if bytes < (4 << 20) {
        return;
    }
    let (start, len) = whole_pages(ptr, bytes);
    // SAFETY: the range lies inside one live allocation of the caller's; MADV_HUGEPAGE
    // changes no contents and no protections.
    unsafe {
        libc::madvise(start, len, libc::MADV_HUGEPAGE);
    }
}

/// The whole 4 KiB pages inside `[ptr, ptr + bytes)` (what `madvise` takes): their
/// first address and their length, 0 when there is none.
fn whole_pages(ptr: *const u8, bytes: usize) -> (*mut libc::c_void, usize) {
    const PAGE: usize = 4096;
    let start = ptr as usize;
    let aligned = start.next_multiple_of(PAGE);
    let len = (start + bytes).saturating_sub(aligned) / PAGE * PAGE;
    (aligned as *mut libc::c_void, len)
}

#[cfg(test)]
mod tests {
    use super::whole_pages;

    /// Only whole pages inside the range: the partial pages at either end are left
    /// out, and a range inside one page gives nothing.
    #[test]
    fn whole_pages_are_the_aligned_inside_of_a_range() {
        let at = |a: usize| a as *const u8;
        assert_eq!(whole_pages(at(0x1000), 0x3000), (0x1000 as _, 0x3000));
        assert_eq!(whole_pages(at(0x1001), 0x3000), (0x2000 as _, 0x2000));
        assert_eq!(whole_pages(at(0x1fff), 0x2002), (0x2000 as _, 0x2000));
        assert_eq!(whole_pages(at(0x1001), 0xffe).1, 0);
        assert_eq!(whole_pages(at(0x1001), 0).1, 0);
    }

    /// A pipe grows to the size asked for (1 MiB is within every process's default
    /// limit); a regular file is refused, which `source::open` ignores.
    #[test]
    fn a_pipe_grows_and_a_file_is_refused() {
        let (reader, _writer) = std::io::pipe().unwrap();
        assert!(super::grow_pipe(&reader, 1 << 20).unwrap() >= 1 << 20);
        let file = tempfile::tempfile().unwrap();
        assert!(super::grow_pipe(&file, 1 << 20).is_err());
    }
}
