//! Test harness for live capture: a network namespace with a veth pair.
//!
//! The capture side stays in the test's own namespace, up, with no IP address (IPv6
//! disabled, so the kernel sends nothing on it); its peer lives in a namespace created
//! for the test, and frames are injected there. Deleting the namespace deletes the pair,
//! so cleanup is one step and happens on drop, also when a test fails.
//!
//! Tests skip (with a printed reason) only when not root or when the kernel has no
//! AF_XDP; with `RSTWATCH_REQUIRE_XDP=1` (CI) those cases fail instead.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Why live tests cannot run here, or None when they can.
pub fn skip_reason() -> Option<String> {
    // SAFETY: trivial syscalls.
    if unsafe { libc::geteuid() } != 0 {
        return Some("live capture tests need root (network namespaces, XDP, AF_XDP)".into());
    }
    // SAFETY: socket/close.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Some(format!(
            "AF_XDP sockets unavailable: {}",
            std::io::Error::last_os_error()
        ));
    }
    unsafe { libc::close(fd) };
    if !Path::new("/usr/sbin/ip").exists()
        && !Path::new("/sbin/ip").exists()
        && which("ip").is_none()
    {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|f| f.is_file())
    })
}

/// Returns true (after printing why) when the calling test should skip.
pub fn should_skip(test: &str) -> bool {
    match skip_reason() {
        None => false,
        Some(r) if std::env::var_os("RSTWATCH_REQUIRE_XDP").is_some() => {
            panic!("{test}: cannot run and RSTWATCH_REQUIRE_XDP is set: {r}")
        }
        Some(r) => {
            eprintln!("SKIPPED {test}: {r}");
            println!("SKIPPED {test}: {r}");
            true
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A veth pair: `host` in our namespace (capture side), `peer` in namespace `ns`.
pub struct Veth {
    pub ns: String,
    pub host: String,
    pub peer: String,
}

impl Veth {
    pub fn new() -> Veth {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let v = Veth {
            ns: format!("rstw-test-{id}"),
            host: format!("rwc{id}"),
            peer: format!("rwp{id}"),
        };
        // Build it; on any failure Drop removes what exists.
        ip(&["netns", "add", &v.ns]).expect("create namespace");
        ip(&[
            "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer, "netns", &v.ns,
        ])
        .expect("create veth pair");
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.host),
            "1",
        );
        ip(&["link", "set", "dev", &v.host, "up"]).expect("host side up");
        ip(&["-n", &v.ns, "link", "set", "dev", "lo", "up"]).expect("lo up");
        let _ = Command::new("ip")
            .args(["netns", "exec", &v.ns, "sysctl", "-qw"])
            .arg(format!("net.ipv6.conf.{}.disable_ipv6=1", v.peer))
            .status();
        ip(&["-n", &v.ns, "link", "set", "dev", &v.peer, "up"]).expect("peer up");
        v.wait_up();
        v
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(s) =
                std::fs::read_to_string(format!("/sys/class/net/{}/operstate", self.host))
            {
                if s.trim() == "up" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `f` on a thread inside the peer's namespace.
    pub fn in_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open netns");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only.
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// Sends raw Ethernet frames out of the peer (so they arrive on `host`).
    pub fn send_frames(&self, frames: Vec<Vec<u8>>) {
        let peer = self.peer.clone();
        self.in_ns(move || send_raw(&peer, &frames));
    }

    /// Replays a capture file out of the peer with tcpreplay.
    pub fn tcpreplay(&self, file: &Path, extra: &[&str]) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "tcpreplay",
                "-q",
                "-i",
                &self.peer,
            ])
            .args(extra)
            .arg(file)
            .output()
            .expect("run tcpreplay");
        assert!(
            out.status.success(),
            "tcpreplay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting the namespace destroys the peer and with it the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Sends frames through an AF_PACKET socket bound to `ifname` (current namespace).
pub fn send_raw(ifname: &str, frames: &[Vec<u8>]) {
    let c = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: straightforward socket calls with valid buffers.
    unsafe {
        let idx = libc::if_nametoindex(c.as_ptr());
        assert!(idx != 0, "no interface {ifname}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = idx as i32;
        sa.sll_halen = 6;
        for (i, f) in frames.iter().enumerate() {
            loop {
                let r = libc::sendto(
                    fd,
                    f.as_ptr() as *const libc::c_void,
                    f.len(),
                    0,
                    &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                if r >= 0 {
                    break;
                }
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) || e.raw_os_error() == Some(libc::EAGAIN)
                {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                panic!("send frame {i} on {ifname}: {e}");
            }
            // Pace a little so a test never depends on queue sizes.
            if i % 256 == 255 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        libc::close(fd);
    }
}

/// Ethernet + IPv4 + TCP frame between documentation addresses.
pub fn tcp4_frame(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(54 + payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let tot = (20 + 20 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let mut s: u32 = 0;
    for c in ip.chunks(2) {
        s += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    ip[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(payload);
    f
}

/// Ethernet + IPv4 + UDP frame (something the XDP program must not hand over).
pub fn udp4_frame(n: u16) -> Vec<u8> {
    let mut f = tcp4_frame(
        [192, 0, 2, 1],
        [198, 51, 100, 2],
        5353,
        53,
        n as u32,
        0,
        &[0; 8],
    );
    f[14 + 9] = 17;
    f
}

/// Ethernet + 802.1Q + IPv6 + TCP frame.
pub fn tcp6_vlan_frame(vlan: u16, sport: u16, seq: u32) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x81, 0x00];
    f.extend_from_slice(&vlan.to_be_bytes());
    f.extend_from_slice(&[0x86, 0xdd]);
    let mut ip6 = [0u8; 40];
    ip6[0] = 0x60;
    ip6[4..6].copy_from_slice(&20u16.to_be_bytes());
    ip6[6] = 6;
    ip6[7] = 64;
    ip6[8..12].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    ip6[23] = 1;
    ip6[24..28].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    ip6[39] = 2;
    f.extend_from_slice(&ip6);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x04;
    f.extend_from_slice(&tcp);
    f
}

/// Path of the sensor binary built for these tests.
pub fn sensor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rstwatch-sensor"))
}
