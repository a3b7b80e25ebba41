//! Traffic generator for the live-capture benchmarks: sends the frames of a capture file
//! in a loop out of an interface at a given packet rate, through a PACKET_MMAP TX ring
//! (TPACKET_V2, PACKET_QDISC_BYPASS): one `send()` flushes a whole batch of ring slots,
//! which is what lets one core saturate a veth pair (tcpreplay: ~250 kpps here).
//!
//! ```text
//! xdp_gen --iface veth1 --pcap mixed.pcap --rate 500000 --duration 5 [--netns NS] [--core 0]
//! ```
//! Prints one line: `sent=N secs=S pps=R`.

#[path = "../xdp_common.rs"]
mod xdp_common;

use anyhow::{bail, Context};
use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Interface to send on.
    #[arg(long)]
    iface: String,
    /// Capture file whose frames are sent, in a loop.
    #[arg(long)]
    pcap: std::path::PathBuf,
    /// Packets per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds to send.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many packets (0: no limit).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Network namespace to send from (`ip netns` name).
    #[arg(long)]
    netns: Option<String>,
    /// Core to pin the sender to.
    #[arg(long)]
    core: Option<usize>,
}

const FRAME_SIZE: u32 = 2048;
const FRAME_NR: u32 = 4096;
const BLOCK_SIZE: u32 = 1 << 16;
const DATA_OFF: usize = 32; // TPACKET_ALIGN(sizeof(struct tpacket2_hdr))
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const TPACKET_V2: libc::c_int = 1;

#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

struct TxRing {
    fd: libc::c_int,
    map: *mut u8,
    len: usize,
    next: u32,
}

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: our mapping and descriptor.
        unsafe {
            libc::munmap(self.map as *mut libc::c_void, self.len);
            libc::close(self.fd);
        }
    }
}

fn setopt<T>(fd: libc::c_int, opt: libc::c_int, v: &T, what: &str) -> anyhow::Result<()> {
    // SAFETY: valid option buffer.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            opt,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl TxRing {
    fn open(iface: &str) -> anyhow::Result<TxRing> {
        let c = std::ffi::CString::new(iface)?;
        // SAFETY: plain syscalls with checked results.
        unsafe {
            let idx = libc::if_nametoindex(c.as_ptr());
            if idx == 0 {
                bail!("no interface {iface}");
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
            }
            let mut ring = TxRing {
                fd,
                map: std::ptr::null_mut(),
                len: 0,
                next: 0,
            };
            setopt(fd, PACKET_VERSION, &TPACKET_V2, "PACKET_VERSION")?;
            setopt(fd, PACKET_QDISC_BYPASS, &1i32, "PACKET_QDISC_BYPASS")?;
            let req = TpacketReq {
                block_size: BLOCK_SIZE,
                block_nr: FRAME_NR * FRAME_SIZE / BLOCK_SIZE,
                frame_size: FRAME_SIZE,
                frame_nr: FRAME_NR,
            };
            setopt(fd, PACKET_TX_RING, &req, "PACKET_TX_RING")?;
            let len = (FRAME_NR * FRAME_SIZE) as usize;
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            if map == libc::MAP_FAILED {
                bail!("mmap TX ring: {}", std::io::Error::last_os_error());
            }
            ring.map = map as *mut u8;
            ring.len = len;
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sa.sll_ifindex = idx as i32;
            if libc::bind(
                fd,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            ) != 0
            {
                bail!("bind to {iface}: {}", std::io::Error::last_os_error());
            }
            Ok(ring)
        }
    }

    fn status(&self, i: u32) -> *mut u32 {
        // SAFETY: i < FRAME_NR; the header starts each frame.
        unsafe { self.map.add((i * FRAME_SIZE) as usize) as *mut u32 }
    }

    /// Puts up to `n` frames from `frames` (starting at `*pos`, looping) in free slots.
    fn fill(&mut self, frames: &[Vec<u8>], pos: &mut usize, n: u64) -> anyhow::Result<u64> {
        let mut k = 0;
        while k < n {
            let st = self.status(self.next);
            // SAFETY: the status word is shared with the kernel: volatile access.
            let s = unsafe { std::ptr::read_volatile(st) };
            if s == TP_STATUS_WRONG_FORMAT {
                bail!("kernel rejected a frame (TP_STATUS_WRONG_FORMAT)");
            }
            if s != TP_STATUS_AVAILABLE {
                break; // ring full: the kernel is still sending
            }
            let f = &frames[*pos];
            *pos = (*pos + 1) % frames.len();
            let len = f.len().min(FRAME_SIZE as usize - DATA_OFF);
            // SAFETY: slot `next` is ours (AVAILABLE) until we mark it SEND_REQUEST.
            unsafe {
                let base = self.map.add((self.next * FRAME_SIZE) as usize);
                std::ptr::copy_nonoverlapping(f.as_ptr(), base.add(DATA_OFF), len);
                std::ptr::write_volatile(base.add(4) as *mut u32, len as u32); // tp_len
                std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
                std::ptr::write_volatile(st, TP_STATUS_SEND_REQUEST);
            }
            self.next = (self.next + 1) % FRAME_NR;
            k += 1;
        }
        Ok(k)
    }

    fn flush(&self) -> anyhow::Result<()> {
        // SAFETY: send with no buffer: transmit every SEND_REQUEST slot.
        let r = unsafe { libc::send(self.fd, std::ptr::null(), 0, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) {
                bail!("send: {e}");
            }
        }
        Ok(())
    }

    fn pending(&self) -> bool {
        (0..FRAME_NR).any(|i| {
            // SAFETY: status words of our ring.
            let s = unsafe { std::ptr::read_volatile(self.status(i)) };
            s == TP_STATUS_SEND_REQUEST || s == TP_STATUS_SENDING
        })
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let frames = xdp_common::load_frames(&a.pcap)?;
    if let Some(ns) = &a.netns {
        xdp_common::enter_netns(ns)?;
    }
    if let Some(c) = a.core {
        xdp_common::pin(c)?;
    }
    xdp_common::install_stop_handler();
    let mut ring = TxRing::open(&a.iface).with_context(|| format!("TX ring on {}", a.iface))?;
    let mut pos = 0usize;
    let mut sent: u64 = 0;
    let limit = Duration::from_secs_f64(a.duration);
    let start = Instant::now();
    const BATCH: u64 = 256;
    loop {
        let el = start.elapsed();
        if el >= limit || xdp_common::stopped() || (a.count > 0 && sent >= a.count) {
            break;
        }
        let mut want = if a.rate == 0 {
            BATCH
        } else {
            let due = (a.rate as f64 * el.as_secs_f64()) as u64;
            due.saturating_sub(sent).min(BATCH)
        };
        if a.count > 0 {
            want = want.min(a.count - sent);
        }
        if want == 0 {
            std::hint::spin_loop();
            continue;
        }
        let k = ring.fill(&frames, &mut pos, want)?;
        sent += k;
        ring.flush()?;
    }
    let secs = start.elapsed().as_secs_f64();
    // Let the kernel finish what is queued.
    let drain = Instant::now();
    while ring.pending() && drain.elapsed() < Duration::from_secs(2) {
        ring.flush()?;
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("sent={sent} secs={secs:.3} pps={:.0}", sent as f64 / secs);
    Ok(())
}
