//! Traffic generator for the live-capture benchmarks: sends the frames of a capture file
//! in a loop out of an interface at a given packet rate, in batches: `sendmmsg()` of up
//! to 256 frames on an AF_PACKET socket (default), or a PACKET_MMAP TX ring (TPACKET_V2)
//! where one `send()` flushes a whole batch of ring slots; both with PACKET_QDISC_BYPASS.
//! Paged skbs from the TX ring cost a veth receiver running XDP more than the linear
//! skbs of sendmmsg (veth copies them into a page with XDP headroom first).
//!
//! ```text
//! xdp_gen --iface veth1 --pcap mixed.pcap --rate 500000 --duration 5 [--netns NS] [--core 0] [--method sendmmsg|mmap]
//! ```
//! Prints one line: `sent=N secs=S pps=R`.

#[path = "../xdp_common.rs"]
mod xdp_common;

use anyhow::{bail, Context};
use clap::Parser;
use std::time::{Duration, Instant};

/// Traffic generator: sends a capture's frames in a loop out of an interface at a given packet rate.
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
    /// How to hand frames to the kernel: `mmap` (PACKET_MMAP TX ring: one send() per
    /// batch; frames leave as paged skbs) or `sendmmsg` (one sendmmsg() per batch of
    /// linear skbs, cheaper for a receiver that runs XDP on a veth).
    #[arg(long, default_value = "sendmmsg")]
    method: String,
}

/// Batches of frames through sendmmsg(2) on an AF_PACKET socket with qdisc bypass.
struct MmsgSender {
    fd: libc::c_int,
    ifindex: i32,
}

impl Drop for MmsgSender {
    fn drop(&mut self) {
        // SAFETY: our descriptor.
        unsafe { libc::close(self.fd) };
    }
}

impl MmsgSender {
    fn open(iface: &str) -> anyhow::Result<MmsgSender> {
        let (fd, idx) = packet_socket(iface)?;
        let s = MmsgSender { fd, ifindex: idx };
        setopt(fd, PACKET_QDISC_BYPASS, &1i32, "PACKET_QDISC_BYPASS")?;
        Ok(s)
    }

    /// Sends up to `n` frames (looping over `frames` from `*pos`); returns how many went.
    fn send(&mut self, frames: &[Vec<u8>], pos: &mut usize, n: u64) -> anyhow::Result<u64> {
        // SAFETY: zeroed sockaddr_ll is valid; filled below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = self.ifindex;
        let n = n.min(256) as usize;
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(n);
        for k in 0..n {
            let f = &frames[(*pos + k) % frames.len()];
            iov.push(libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            });
        }
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: zeroed msghdr, then pointed at our iovec and address.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = &mut sa as *mut libc::sockaddr_ll as *mut libc::c_void;
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                h
            })
            .collect();
        // SAFETY: msgs point at live iovecs and frames.
        let r = unsafe { libc::sendmmsg(self.fd, msgs.as_mut_ptr(), n as u32, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) {
                return Ok(0);
            }
            bail!("sendmmsg: {e}");
        }
        *pos = (*pos + r as usize) % frames.len();
        Ok(r as u64)
    }
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

/// An AF_PACKET raw socket for sending on `iface`, and the interface's index. The
/// caller owns the descriptor (both senders wrap it at once, so Drop closes it).
fn packet_socket(iface: &str) -> anyhow::Result<(libc::c_int, i32)> {
    let c = std::ffi::CString::new(iface)?;
    // SAFETY: plain syscalls, results checked.
    unsafe {
        let idx = libc::if_nametoindex(c.as_ptr());
        if idx == 0 {
            bail!("no interface {iface}");
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        Ok((fd, idx as i32))
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
        let (fd, idx) = packet_socket(iface)?;
        // SAFETY: plain syscalls with checked results.
        unsafe {
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
            sa.sll_ifindex = idx;
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
    let mmap = match a.method.as_str() {
        "mmap" => true,
        "sendmmsg" => false,
        m => bail!("--method: mmap or sendmmsg, not {m:?}"),
    };
    let mut ring = if mmap {
        Some(TxRing::open(&a.iface).with_context(|| format!("TX ring on {}", a.iface))?)
    } else {
        None
    };
    let mut mmsg = if mmap {
        None
    } else {
        Some(MmsgSender::open(&a.iface).with_context(|| format!("socket on {}", a.iface))?)
    };
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
        if let Some(ring) = ring.as_mut() {
            let k = ring.fill(&frames, &mut pos, want)?;
            sent += k;
            ring.flush()?;
        } else if let Some(m) = mmsg.as_mut() {
            sent += m.send(&frames, &mut pos, want)?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Let the kernel finish what is queued.
    let drain = Instant::now();
    if let Some(ring) = ring.as_ref() {
        while ring.pending() && drain.elapsed() < Duration::from_secs(2) {
            ring.flush()?;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    println!("sent={sent} secs={secs:.3} pps={:.0}", sent as f64 / secs);
    Ok(())
}
