//! One AF_XDP socket with its own UMEM, bound to one receive queue.

use crate::{iface, Error, Result};
use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use xdpilone::xdp::XdpDesc;
use xdpilone::{BufIdx, DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

/// Magic word the XDP program writes after its timestamp in the frame metadata.
const META_MAGIC: u32 = 0x5253_5457;
const META_LEN: u64 = 16;

/// Zero-copy bind policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ZeroCopy {
    /// Zero-copy when the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    /// Always copy mode.
    Off,
    /// Zero-copy or fail.
    Required,
}

/// Busy polling (`SO_PREFER_BUSY_POLL`): the worker drives the driver's NAPI loop itself
/// instead of waiting for interrupts. Only worth it on a dedicated core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL`: microseconds to busy-poll per call.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per busy-poll round.
    pub budget: u32,
}

/// Socket and UMEM sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskConfig {
    /// Bytes per UMEM frame (2048 or 4096; the largest frame received is this minus the
    /// 256-byte XDP headroom).
    pub frame_size: u32,
    /// Frames in the UMEM (memory = frame_size × frame_count, locked).
    pub frame_count: u32,
    /// Entries in the receive ring and in the fill ring (power of two).
    pub ring_size: u32,
    /// Frames taken from the receive ring per [`XskSocket::recv`] call at most.
    pub batch: u32,
    /// Whether to ask for zero-copy.
    pub zero_copy: ZeroCopy,
    /// Busy polling settings; None: interrupts.
    pub busy_poll: Option<BusyPoll>,
    /// Wake-up coalescing, microseconds: while frames are flowing, [`XskSocket::wait`]
    /// sleeps this long for more to gather before it polls again, instead of being woken
    /// for every few frames (0: off). Bounds the wake-up rate to 1/coalesce; the rings
    /// buffer far longer than that.
    pub coalesce_us: u32,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frame_size: 2048,
            frame_count: 32768,
            ring_size: 16384,
            batch: 64,
            zero_copy: ZeroCopy::Auto,
            busy_poll: None,
            coalesce_us: 50,
        }
    }
}

/// One received frame, borrowed from the UMEM for the duration of the callback.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The frame's bytes, in UMEM.
    pub data: &'a [u8],
    /// Arrival time, nanoseconds since the Unix epoch (CLOCK_REALTIME).
    pub ts_ns: i64,
}

impl Frame<'_> {
    /// Arrival time in microseconds since the Unix epoch.
    pub fn ts_us(&self) -> i64 {
        self.ts_ns.div_euclid(1000)
    }
}

/// Counters of one socket: ours, and the kernel's `XDP_STATISTICS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive calls that returned at least one frame.
    pub rx_batches: u64,
    /// Frames whose timestamp was taken in user space (no XDP metadata).
    pub rx_no_meta: u64,
    /// Descriptors pointing outside the UMEM (never expected; counted, skipped).
    pub rx_bad_desc: u64,
    /// Kernel: frames dropped for lack of room (rx ring full or no fill frame).
    pub rx_dropped: u64,
    /// XDP_STATISTICS rx_invalid_descs.
    pub rx_invalid_descs: u64,
    /// XDP_STATISTICS rx_ring_full: receive ring full.
    pub rx_ring_full: u64,
    /// XDP_STATISTICS rx_fill_ring_empty_descs: no fill frame available.
    pub rx_fill_ring_empty_descs: u64,
}

/// Anonymous, page-aligned memory for the UMEM.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> std::io::Result<Area> {
        // SAFETY: anonymous private mapping; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Area {
            ptr: NonNull::new(p as *mut u8).expect("mmap returned NULL"),
            len,
        })
    }

    fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range; the kernel's UMEM registration is gone by
        // now (fields drop in declaration order: rings and sockets before the area).
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// An AF_XDP socket and its UMEM for one queue of one interface.
pub struct XskSocket {
    // Drop order matters: rings, then the sockets and UMEM, then the memory.
    rx: RingRx,
    dq: DeviceQueue,
    _user: User,
    _umem: Umem,
    area: Area,
    free: Vec<u64>,
    frame_size: u32,
    batch: u32,
    busy_poll: bool,
    zero_copy: bool,
    clock_off_ns: i64,
    coalesce_us: u32,
    last_got: u32,
    queue: u32,
    ifname: String,
    stats: XskStats,
    /// The frames of one [`XskSocket::recv_batch`], kept for its allocation (empty
    /// between calls).
    scratch: Vec<Frame<'static>>,
    /// The descriptors of one [`XskSocket::recv_batch`], likewise.
    descs: Vec<XdpDesc>,
}

// SAFETY: every part (UMEM memory, rings, file descriptors shared through Arcs among the
// parts) is owned by this one value and moves with it; nothing is shared with another
// thread. xdpilone leaves `Umem` !Send only because it holds a raw pointer to the area.
unsafe impl Send for XskSocket {}

fn errno(e: xdpilone::Errno) -> i32 {
    e.get_raw().abs()
}

fn io(e: xdpilone::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno(e))
}

impl XskSocket {
    /// Creates the UMEM and the socket and binds it to `queue` of `ifname` (zero-copy
    /// if allowed and supported, else copy mode), with `XDP_USE_NEED_WAKEUP`.
    /// The fill ring is stocked; frames arrive once the socket is registered with
    /// [`crate::XdpProgram::register`].
    pub fn open(ifname: &str, queue: u32, cfg: &XskConfig) -> Result<XskSocket> {
        iface::ifindex(ifname)?;
        if let Some(count) = iface::rx_queue_count(ifname) {
            if queue >= count {
                return Err(Error::QueueOutOfRange {
                    iface: ifname.to_string(),
                    queue,
                    count,
                });
            }
        }
        if !cfg.ring_size.is_power_of_two() || cfg.ring_size < 64 {
            return Err(Error::Bpf {
                what: "AF_XDP socket setup".into(),
                detail: format!("ring size {} is not a power of two >= 64", cfg.ring_size),
            });
        }
        if !(cfg.frame_size == 2048 || cfg.frame_size == 4096) {
            return Err(Error::Bpf {
                what: "AF_XDP socket setup".into(),
                detail: format!("frame size {} is not 2048 or 4096", cfg.frame_size),
            });
        }
        crate::raise_memlock_limit();
        // A socket of a process that just exited may still hold the queue for a moment
        // (the kernel releases its UMEM from deferred work): EBUSY, retried for 3 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut logged = false;
        loop {
            match Self::open_once(ifname, queue, cfg) {
                Err(Error::Io { source, .. })
                    if source.raw_os_error() == Some(libc::EBUSY)
                        && std::time::Instant::now() < deadline =>
                {
                    if !logged {
                        log::info!(
                            "{ifname} queue {queue}: busy (a previous socket is still being \
                             released), retrying"
                        );
                        logged = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => return r,
            }
        }
    }

    fn open_once(ifname: &str, queue: u32, cfg: &XskConfig) -> Result<XskSocket> {
        let try_zc = cfg.zero_copy != ZeroCopy::Off;
        if try_zc {
            match Self::open_with(ifname, queue, cfg, true) {
                Ok(s) => return Ok(s),
                Err(e) if cfg.zero_copy == ZeroCopy::Required => return Err(e),
                Err(Error::Permission { what }) => return Err(Error::Permission { what }),
                Err(e) => log::debug!(
                    "{ifname} queue {queue}: zero-copy bind failed ({e}), using copy mode"
                ),
            }
        }
        Self::open_with(ifname, queue, cfg, false)
    }

    fn open_with(ifname: &str, queue: u32, cfg: &XskConfig, zc: bool) -> Result<XskSocket> {
        let ctx = |what: &str| format!("{what} ({ifname} queue {queue})");
        let frame_count = cfg.frame_count.max(cfg.ring_size * 2);
        let len = cfg.frame_size as usize * frame_count as usize;
        let area = Area::new(len).map_err(|e| Error::os(ctx("allocating the UMEM"), e))?;
        let ucfg = UmemConfig {
            fill_size: cfg.ring_size,
            complete_size: 64,
            frame_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page-aligned (mmap), valid for `len` bytes and outlives the
        // Umem (field order in XskSocket).
        let umem = unsafe { Umem::new(ucfg, area.as_slice_ptr()) }
            .map_err(|e| Error::os(ctx("registering the UMEM"), io(e)))?;
        let cname = CString::new(ifname).map_err(|_| Error::NoSuchInterface {
            name: ifname.into(),
            available: vec![],
        })?;
        let mut info = IfInfo::invalid();
        info.from_name(&cname)
            .map_err(|e| Error::os(ctx("looking up the interface"), io(e)))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem)
            .map_err(|e| Error::os(ctx("creating the AF_XDP socket"), io(e)))?;
        let mut dq = umem
            .fq_cq(&sock)
            .map_err(|e| Error::os(ctx("creating the fill/completion rings"), io(e)))?;
        let bind_flags = SocketConfig::XDP_BIND_NEED_WAKEUP
            | if zc {
                SocketConfig::XDP_BIND_ZEROCOPY
            } else {
                SocketConfig::XDP_BIND_COPY
            };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(cfg.ring_size),
                    tx_size: None,
                    bind_flags,
                },
            )
            .map_err(|e| Error::os(ctx("creating the receive ring"), io(e)))?;
        let rx = user
            .map_rx()
            .map_err(|e| Error::os(ctx("mapping the receive ring"), io(e)))?;

        let mut free: Vec<u64> = (0..frame_count)
            .rev()
            .filter_map(|i| umem.frame(BufIdx(i)).map(|c| c.offset))
            .collect();
        {
            let mut w = dq.fill(cfg.ring_size);
            let n = w.insert(free.iter().rev().copied());
            w.commit();
            free.truncate(free.len() - n as usize);
        }
        umem.bind(&user).map_err(|e| {
            let e = io(e);
            match e.raw_os_error() {
                Some(libc::EINVAL) if !zc => Error::Io {
                    what: ctx("binding the AF_XDP socket (queue id out of range, or XDP not usable on this interface?)"),
                    source: e,
                },
                _ => Error::os(ctx("binding the AF_XDP socket"), e),
            }
        })?;
        let fd = rx.as_raw_fd();
        let zero_copy = xdp_options_zerocopy(fd);
        if let Some(bp) = cfg.busy_poll {
            set_busy_poll(fd, bp).map_err(|e| Error::os(ctx("enabling busy polling"), e))?;
        }
        log::info!(
            "{ifname} queue {queue}: AF_XDP socket bound in {} mode, {} frames of {} bytes{}",
            if zero_copy { "zero-copy" } else { "copy" },
            frame_count,
            cfg.frame_size,
            match cfg.busy_poll {
                Some(bp) => format!(", busy polling ({} us, budget {})", bp.usecs, bp.budget),
                None => String::new(),
            }
        );
        Ok(XskSocket {
            rx,
            dq,
            _user: user,
            _umem: umem,
            area,
            free,
            frame_size: cfg.frame_size,
            batch: cfg.batch.max(1),
            busy_poll: cfg.busy_poll.is_some(),
            zero_copy,
            clock_off_ns: realtime_minus_monotonic(),
            coalesce_us: cfg.coalesce_us,
            last_got: 0,
            queue,
            ifname: ifname.to_string(),
            stats: XskStats::default(),
            scratch: Vec::with_capacity(cfg.batch.max(1) as usize),
            descs: Vec::with_capacity(cfg.batch.max(1) as usize),
        })
    }

    /// The socket descriptor (for the XSKMAP).
    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// The receive queue it is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The interface it is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Whether the kernel granted zero-copy.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Whether busy polling is on ([`XskSocket::wait`] then never sleeps).
    pub fn is_busy_polling(&self) -> bool {
        self.busy_poll
    }

    /// Re-reads the offset between CLOCK_MONOTONIC (XDP timestamps) and CLOCK_REALTIME;
    /// call now and then (once a second) so wall-clock steps are followed.
    pub fn refresh_clock(&mut self) {
        self.clock_off_ns = realtime_minus_monotonic();
    }

    /// Takes up to one batch of frames from the receive ring, lends each to `f`, then
    /// gives them all back to the fill ring. Returns the number of frames.
    pub fn recv<F: FnMut(Frame<'_>)>(&mut self, mut f: F) -> u32 {
        let XskSocket {
            rx,
            area,
            free,
            frame_size,
            batch,
            clock_off_ns,
            stats,
            ..
        } = self;
        let mut rd = DescReader::new(area, *frame_size, *clock_off_ns);
        let mut n = 0u32;
        {
            let mut reader = rx.receive(*batch);
            while let Some(desc) = reader.read() {
                if let Some(frame) = rd.frame(desc, stats, free) {
                    f(frame);
                    n += 1;
                }
            }
            reader.release();
        }
        self.finish_recv(n)
    }

    /// Takes up to one batch of frames from the receive ring and lends them to `f` all
    /// at once, as one slice borrowed from the UMEM (no copy), in arrival order; once
    /// `f` returns they go back to the fill ring. `f` is not called when the ring is
    /// empty. Returns the number of frames.
    pub fn recv_batch<F: FnOnce(&[Frame<'_>])>(&mut self, f: F) -> u32 {
        let XskSocket {
            rx,
            area,
            free,
            frame_size,
            batch,
            clock_off_ns,
            stats,
            scratch,
            descs,
            ..
        } = self;
        let mut rd = DescReader::new(area, *frame_size, *clock_off_ns);
        let mut frames: Vec<Frame<'_>> = std::mem::take(scratch);
        {
            let mut reader = rx.receive(*batch);
            while let Some(desc) = reader.read() {
                descs.push(desc);
            }
            // The ring's slots go back to the kernel now (the descriptors are copied);
            // the frames' chunks only after `f`, through the fill ring.
            reader.release();
        }
        // The kernel wrote each frame and its metadata from another core (veth: the
        // sender's; a NIC: the one taking its interrupt), so the first read of each is
        // a miss: ask for all of them before reading the first, so that the misses
        // overlap instead of coming one per frame.
        for d in descs.iter() {
            rd.prefetch(*d);
        }
        for &desc in descs.iter() {
            if let Some(frame) = rd.frame(desc, stats, free) {
                frames.push(frame);
            }
        }
        descs.clear();
        let n = frames.len() as u32;
        if n > 0 {
            f(&frames);
        }
        *scratch = unborrowed(frames);
        self.finish_recv(n)
    }

    /// After a receive: counts the batch, returns its chunks to the fill ring and wakes
    /// the driver if it asked to be.
    fn finish_recv(&mut self, n: u32) -> u32 {
        let XskSocket {
            dq, free, stats, ..
        } = self;
        if n > 0 {
            stats.rx_frames += n as u64;
            stats.rx_batches += 1;
        }
        if !free.is_empty() {
            let mut w = dq.fill(free.len() as u32);
            let k = w.insert(free.iter().rev().copied());
            w.commit();
            free.truncate(free.len() - k as usize);
        }
        if dq.needs_wakeup() {
            dq.wake();
        }
        self.last_got = n;
        n
    }

    /// Waits up to `timeout_ms` for frames (poll), or, with busy polling, drives the
    /// driver once without sleeping. Returns whether frames are ready.
    pub fn wait(&mut self, timeout_ms: i32) -> bool {
        if self.rx.available() > 0 {
            return true;
        }
        let fd = self.rx.as_raw_fd();
        if self.busy_poll {
            // SAFETY: zero-length non-blocking recvfrom on our socket: runs busy polling.
            unsafe {
                libc::recvfrom(
                    fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            return self.rx.available() > 0;
        }
        if self.coalesce_us > 0 && self.last_got > 0 {
            // Frames were flowing a moment ago: let more gather rather than be woken
            // for each one.
            self.last_got = 0;
            std::thread::sleep(std::time::Duration::from_micros(self.coalesce_us as u64));
            if self.rx.available() > 0 {
                return true;
            }
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        r > 0 && (p.revents & libc::POLLIN) != 0
    }

    /// Our counters and the kernel's `XDP_STATISTICS` for this socket.
    pub fn stats(&self) -> XskStats {
        let mut s = self.stats;
        if let Ok(k) = self.dq.statistics_v2() {
            s.rx_dropped = k.rx_dropped;
            s.rx_invalid_descs = k.rx_invalid_descs;
            s.rx_ring_full = k.rx_ring_full;
            s.rx_fill_ring_empty_descs = k.rx_fill_ring_empty_descs;
        }
        s
    }
}

/// Turns receive descriptors into frames: checks each lies inside one UMEM chunk, reads
/// the XDP program's timestamp, and notes the chunk for the fill ring.
struct DescReader<'a> {
    area: &'a Area,
    frame_size: u64,
    clock_off_ns: i64,
    /// Wall-clock time read once per batch for frames without metadata.
    now_fallback: Option<i64>,
}

impl<'a> DescReader<'a> {
    fn new(area: &'a Area, frame_size: u32, clock_off_ns: i64) -> Self {
        DescReader {
            area,
            frame_size: frame_size as u64,
            clock_off_ns,
            now_fallback: None,
        }
    }

    /// Asks for the cache lines of `desc`'s metadata and the frame's first bytes (a
    /// hint: an address outside the area is harmless, [`DescReader::frame`] checks).
    #[inline]
    fn prefetch(&self, desc: XdpDesc) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let at = self.area.ptr.as_ptr().wrapping_add(desc.addr as usize);
            // SAFETY: prefetching is only a hint; it never faults, even on a bad
            // address, and the addresses are computed with wrapping arithmetic.
            unsafe {
                _mm_prefetch(at.wrapping_sub(META_LEN as usize) as *const i8, _MM_HINT_T0);
                _mm_prefetch(at as *const i8, _MM_HINT_T0);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = desc;
    }

    /// The frame `desc` points at, borrowed from the UMEM, or None for a descriptor
    /// outside it (counted). Either way its chunk is pushed on `free`; the caller must
    /// be done with the frame before `free` goes to the fill ring.
    #[inline]
    fn frame(
        &mut self,
        desc: XdpDesc,
        stats: &mut XskStats,
        free: &mut Vec<u64>,
    ) -> Option<Frame<'a>> {
        let (area, fs) = (self.area, self.frame_size);
        let end = desc.addr.checked_add(desc.len as u64);
        let chunk = desc.addr - desc.addr % fs;
        if end.is_none_or(|e| e > area.len as u64 || e > chunk + fs) {
            stats.rx_bad_desc += 1;
            if (chunk as usize) < area.len {
                free.push(chunk);
            }
            return None;
        }
        let base = area.ptr.as_ptr();
        // SAFETY: [addr, addr+len) lies inside the area (checked above) and inside one
        // chunk that the kernel handed to us through the rx ring; it will not write
        // there until we put the chunk back on the fill ring, after the frame's last use.
        let data =
            unsafe { std::slice::from_raw_parts(base.add(desc.addr as usize), desc.len as usize) };
        let mut ts_ns = None;
        if desc.addr - chunk >= META_LEN {
            // SAFETY: the 16 metadata bytes precede the frame in the same chunk.
            unsafe {
                let m = base.add((desc.addr - META_LEN) as usize);
                let magic = std::ptr::read_unaligned(m.add(8) as *const u32);
                if magic == META_MAGIC {
                    let mono = std::ptr::read_unaligned(m as *const u64);
                    ts_ns = Some(mono as i64 + self.clock_off_ns);
                    // Clear it so a later frame in this chunk without metadata does not
                    // inherit a stale stamp.
                    std::ptr::write_unaligned(m.add(8) as *mut u32, 0);
                }
            }
        }
        let ts_ns = match ts_ns {
            Some(t) => t,
            None => {
                stats.rx_no_meta += 1;
                *self.now_fallback.get_or_insert_with(realtime_ns)
            }
        };
        stats.rx_bytes += desc.len as u64;
        free.push(chunk);
        Some(Frame { data, ts_ns })
    }
}

/// Empties `v` and gives back its allocation free of the frames' borrow (the element
/// types have one layout, so the standard library's in-place collect keeps the buffer).
fn unborrowed(mut v: Vec<Frame<'_>>) -> Vec<Frame<'static>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("emptied")).collect()
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn realtime_minus_monotonic() -> i64 {
    // Bracket the realtime read between two monotonic reads; take the midpoint.
    let m1 = clock_ns(libc::CLOCK_MONOTONIC);
    let r = clock_ns(libc::CLOCK_REALTIME);
    let m2 = clock_ns(libc::CLOCK_MONOTONIC);
    r - (m1 + (m2 - m1) / 2)
}

const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

fn xdp_options_zerocopy(fd: RawFd) -> bool {
    let mut flags: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: valid buffer and length.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            &mut flags as *mut u32 as *mut libc::c_void,
            &mut len,
        )
    };
    r == 0 && flags & XDP_OPTIONS_ZEROCOPY != 0
}

const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

fn set_busy_poll(fd: RawFd, bp: BusyPoll) -> std::io::Result<()> {
    for (opt, val) in [
        (SO_PREFER_BUSY_POLL, 1i32),
        (SO_BUSY_POLL, bp.usecs as i32),
        (SO_BUSY_POLL_BUDGET, bp.budget as i32),
    ] {
        // SAFETY: valid int option.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &val as *const i32 as *const libc::c_void,
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_scratch_keeps_its_allocation() {
        let bytes = [1u8, 2, 3];
        let mut v: Vec<Frame<'_>> = Vec::with_capacity(64);
        let before = v.as_ptr() as usize;
        v.extend((0..64).map(|i| Frame {
            data: &bytes,
            ts_ns: i,
        }));
        let back = unborrowed(v);
        assert!(back.is_empty());
        assert_eq!(back.capacity(), 64);
        assert_eq!(back.as_ptr() as usize, before);
    }
}
