//! Test harness for live capture: a network namespace with a veth pair.
//!
//! The capture side stays in the test's own namespace, up, with no IP address (IPv6
//! disabled, so the kernel sends nothing on it); its peer lives in a namespace created
//! for the test, and frames are injected there. Deleting the namespace deletes the pair,
//! so cleanup is one step and happens on drop, also when a test fails.
//!
//! Tests skip (with a printed reason) only when not root or when the kernel has no
//! AF_XDP; in CI (`CI=true`) or with `RSTWATCH_REQUIRE_XDP=1` those cases fail instead.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Which test module holds the gate, and how many of its tests are running.
static GATE: std::sync::Mutex<(Option<&'static str>, usize)> = std::sync::Mutex::new((None, 0));
static GATE_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// Held while a test runs: tests of the same module run together, tests of another
/// module wait until they are all done (as when each module was its own binary).
pub(crate) struct Gate;

/// Waits until no other module's tests run, then admits this one.
pub(crate) fn one_file_at_a_time(module: &'static str) -> Gate {
    let mut g = GATE.lock().unwrap_or_else(|p| p.into_inner());
    while g.0.is_some_and(|m| m != module) {
        g = GATE_FREED.wait(g).unwrap_or_else(|p| p.into_inner());
    }
    g.0 = Some(module);
    g.1 += 1;
    Gate
}

impl Drop for Gate {
    fn drop(&mut self) {
        let mut g = GATE.lock().unwrap_or_else(|p| p.into_inner());
        g.1 -= 1;
        if g.1 == 0 {
            g.0 = None;
            GATE_FREED.notify_all();
        }
    }
}

/// Why live tests cannot run here, or None when they can.
pub(crate) fn skip_reason() -> Option<String> {
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
    // SAFETY: `fd` is a socket this function opened above and closes once.
    unsafe { libc::close(fd) };
    if !Path::new("/usr/sbin/ip").exists()
        && !Path::new("/sbin/ip").exists()
        && which("ip").is_none()
    {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

pub(crate) fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|f| f.is_file())
    })
}

/// Returns true (after printing why) when the calling test should skip.
pub(crate) fn should_skip(test: &str) -> bool {
    match skip_reason() {
        None => false,
        Some(r)
            if std::env::var_os("RSTWATCH_REQUIRE_XDP").is_some()
                || std::env::var("CI").is_ok_and(|v| v == "true") =>
        {
            panic!("{test}: cannot run in CI (CI=true or RSTWATCH_REQUIRE_XDP set): {r}")
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
pub(crate) struct Veth {
    pub ns: String,
    pub host: String,
    pub peer: String,
}

impl Veth {
    pub(crate) fn new() -> Veth {
        Veth::with_queues(1)
    }

    /// A pair whose ends have `queues` receive and transmit queues each (the kernel's
    /// flow hash, symmetric, picks the queue of each frame sent from the peer).
    pub(crate) fn with_queues(queues: u32) -> Veth {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let v = Veth {
            ns: format!("rstw-test-{id}"),
            host: format!("rwc{id}"),
            peer: format!("rwp{id}"),
        };
        // Build it; on any failure Drop removes what exists.
        ip(&["netns", "add", &v.ns]).expect("create namespace");
        let q = queues.to_string();
        ip(&[
            "link",
            "add",
            &v.host,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &v.peer,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &v.ns,
        ])
        .expect("create veth pair");
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.host),
            "1",
        );
        ip(&["link", "set", "dev", &v.host, "up"]).expect("host side up");
        ip(&["-n", &v.ns, "link", "set", "dev", "lo", "up"]).expect("lo up");
        // No IPv6 on the peer either: no router solicitations or DAD probes that a
        // test would count (written from inside the namespace: /proc/sys/net is
        // per namespace).
        let knob = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.peer);
        v.in_ns(move || {
            let _ = std::fs::write(knob, "1");
        });
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
    pub(crate) fn in_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
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
    pub(crate) fn send_frames(&self, frames: Vec<Vec<u8>>) {
        let peer = self.peer.clone();
        self.in_ns(move || send_raw(&peer, &frames));
    }

    /// Replays a capture file out of the peer with tcpreplay.
    pub(crate) fn tcpreplay(&self, file: &Path, extra: &[&str]) {
        start_where_windows_start();
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
pub(crate) fn send_raw(ifname: &str, frames: &[Vec<u8>]) {
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
pub(crate) fn tcp4_frame(
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
pub(crate) fn udp4_frame(n: u16) -> Vec<u8> {
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
pub(crate) fn tcp6_vlan_frame(vlan: u16, sport: u16, seq: u32) -> Vec<u8> {
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
pub(crate) fn sensor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rstwatch-sensor"))
}

/// Internet checksum over `data` starting from `sum`.
fn csum(mut sum: u32, data: &[u8]) -> u32 {
    let mut c = data.chunks_exact(2);
    for w in &mut c {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [b] = c.remainder() {
        sum += (*b as u32) << 8;
    }
    sum
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// One TCP segment of a synthetic conversation, with correct checksums.
#[derive(Clone, Copy)]
pub(crate) struct Seg<'a> {
    pub src: &'a [u8],
    pub dst: &'a [u8],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: &'a [u8],
    pub vlan: Option<u16>,
    pub ttl: u8,
}

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;

/// Builds the Ethernet frame of a segment (IPv4 or IPv6 by address length).
pub(crate) fn segment(s: Seg) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if let Some(v) = s.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    let v6 = s.src.len() == 16;
    f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let tcp_len = 20 + s.payload.len();
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&s.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&s.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&s.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&s.ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = s.flags;
    tcp[14..16].copy_from_slice(&29200u16.to_be_bytes());
    tcp.extend_from_slice(s.payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(s.src);
    pseudo.extend_from_slice(s.dst);
    if v6 {
        pseudo.extend_from_slice(&(tcp_len as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 6]);
    } else {
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    }
    let c = fold(csum(csum(0, &pseudo), &tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    if v6 {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        ip[6] = 6;
        ip[7] = s.ttl;
        ip[8..24].copy_from_slice(s.src);
        ip[24..40].copy_from_slice(s.dst);
        f.extend_from_slice(&ip);
    } else {
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(s.seq as u16 ^ s.sport).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = s.ttl;
        ip[9] = 6;
        ip[12..16].copy_from_slice(s.src);
        ip[16..20].copy_from_slice(s.dst);
        let c = fold(csum(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
    }
    f.extend_from_slice(&tcp);
    f
}

/// A synthetic capture with every RST class and a few flags: handshakes closed by FIN,
/// aborts from either side, rejects, half-open aborts, unsolicited RSTs, data after an
/// RST, IPv6 and VLAN-tagged flows, and some UDP noise. Frames are 100 µs apart, so
/// the result does not depend on the replay speed.
pub(crate) fn synthetic_frames(flows: u32) -> Vec<Vec<u8>> {
    synthetic_frames_opt(flows, true)
}

/// [`synthetic_frames`], optionally without VLAN tags (the veth's transmit queue pick,
/// the kernel's flow hash, is not symmetric for VLAN-tagged frames sent from a packet
/// socket, so multi-queue tests leave them out).
pub(crate) fn synthetic_frames_opt(flows: u32, with_vlan: bool) -> Vec<Vec<u8>> {
    let v4 = |a: [u8; 3], last: u32| vec![a[0], a[1], a[2], (1 + last % 200) as u8];
    let v6 = |hi: u8, last: u32| {
        let mut a = vec![0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[14] = hi;
        a[15] = (1 + last % 200) as u8;
        a
    };
    let body = [0x41u8; 300];
    let mut out = Vec::new();
    for i in 0..flows {
        let kind = i % 8;
        let sport = 20000 + i as u16;
        let (c, s) = if kind == 6 {
            (v6(0, i), v6(0xff, 0))
        } else {
            (v4([192, 0, 2], i), v4([198, 51, 100], i % 50))
        };
        let t = v4([203, 0, 113], 8);
        let vlan = (with_vlan && kind == 7).then_some(100 + (i % 3) as u16);
        let dport = if kind == 2 { 8080 } else { 443 };
        #[allow(clippy::too_many_arguments)]
        let seg = |src: &[u8],
                   dst: &[u8],
                   sp: u16,
                   dp: u16,
                   seq: u32,
                   ack: u32,
                   flags: u8,
                   payload: &[u8]| {
            segment(Seg {
                src,
                dst,
                sport: sp,
                dport: dp,
                seq,
                ack,
                flags,
                payload,
                vlan,
                ttl: 64,
            })
        };
        let (isn_c, isn_s) = (1000 + i * 7919, 5_000_000 + i * 104_729);
        match kind {
            // rejected connection attempt
            2 => {
                out.push(seg(&c, &s, sport, dport, isn_c, 0, SYN, &[]));
                out.push(seg(&s, &c, dport, sport, 0, isn_c + 1, RST | ACK, &[]));
            }
            // SYN, SYN-ACK, RST from the client: half-open abort (scan pattern)
            3 => {
                out.push(seg(&c, &s, sport, dport, isn_c, 0, SYN, &[]));
                out.push(seg(&s, &c, dport, sport, isn_s, isn_c + 1, SYN | ACK, &[]));
                out.push(seg(&c, &s, sport, dport, isn_c + 1, 0, RST, &[]));
            }
            // unsolicited RST (no state)
            4 => out.push(seg(&t, &c, 443, sport, 77_000 + i, 0, RST | ACK, &[])),
            _ => {
                out.push(seg(&c, &s, sport, dport, isn_c, 0, SYN, &[]));
                out.push(seg(&s, &c, dport, sport, isn_s, isn_c + 1, SYN | ACK, &[]));
                out.push(seg(&c, &s, sport, dport, isn_c + 1, isn_s + 1, ACK, &[]));
                out.push(seg(
                    &c,
                    &s,
                    sport,
                    dport,
                    isn_c + 1,
                    isn_s + 1,
                    PSH | ACK,
                    &body[..100],
                ));
                out.push(seg(
                    &s,
                    &c,
                    dport,
                    sport,
                    isn_s + 1,
                    isn_c + 101,
                    PSH | ACK,
                    &body,
                ));
                match kind {
                    // server aborts
                    0 => out.push(seg(
                        &s,
                        &c,
                        dport,
                        sport,
                        isn_s + 301,
                        isn_c + 101,
                        RST | ACK,
                        &[],
                    )),
                    // client aborts, then keeps sending (data after reset)
                    5 => {
                        out.push(seg(&c, &s, sport, dport, isn_c + 101, 0, RST, &[]));
                        out.push(seg(
                            &c,
                            &s,
                            sport,
                            dport,
                            isn_c + 101,
                            isn_s + 301,
                            PSH | ACK,
                            &body[..50],
                        ));
                    }
                    // orderly close
                    _ => {
                        out.push(seg(
                            &c,
                            &s,
                            sport,
                            dport,
                            isn_c + 101,
                            isn_s + 301,
                            FIN | ACK,
                            &[],
                        ));
                        out.push(seg(
                            &s,
                            &c,
                            dport,
                            sport,
                            isn_s + 301,
                            isn_c + 102,
                            FIN | ACK,
                            &[],
                        ));
                        out.push(seg(
                            &c,
                            &s,
                            sport,
                            dport,
                            isn_c + 102,
                            isn_s + 302,
                            ACK,
                            &[],
                        ));
                        if kind == 1 {
                            // a stray RST after the close
                            out.push(seg(&s, &c, dport, sport, isn_s + 302, 0, RST, &[]));
                        }
                    }
                }
            }
        }
        if i % 5 == 0 {
            out.push(udp4_frame(i as u16));
        }
    }
    out
}

/// Writes frames as a pcap (Ethernet), 100 µs apart from `start_s`.
/// Writes, next to `capture`, a configuration that holds RSTs for 20 s instead of 500 ms
/// and returns its path. RSTs are held for evidence from later packets (`data_after`
/// makes the synthetic capture's forged RSTs `injection`) for `verdict_delay_ms` of
/// *packet* time. Live, that time is the clock's, and tcpreplay on a loaded machine can
/// stall longer than 500 ms between an RST and the data after it, and the verdict then
/// comes early (the likeliest cause of `live_vxlan_matches_replay` failing about one
/// run in thirty; its failure output was not kept). Held this long,
/// the verdicts wait for every frame and come at the sensor's final flush, so a live vs
/// replay comparison compares the decoding, not the machine's scheduling.
pub(crate) fn held_verdicts_config(capture: &Path) -> PathBuf {
    let p = capture.with_extension("held.toml");
    std::fs::write(&p, "[engine]\nverdict_delay_ms = 20000\n").expect("write config");
    p
}

/// Waits until just after a whole second of the wall clock (and not in the last two
/// seconds of a 5-minute window). Live capture stamps frames with the clock, and the
/// detectors count in tumbling windows aligned to it (per-second service rates, the
/// 300 s scan and backscatter window); the test captures start on a whole second and
/// last well under one, so a replay started here is cut into windows where `replay` of
/// the file cuts it. Started at a random moment, a capture could straddle a boundary,
/// and a burst counted in two halves would not cross its threshold (the synthetic
/// capture's backscatter is exactly at its threshold of 25 addresses).
pub(crate) fn start_where_windows_start() {
    use std::time::{SystemTime, UNIX_EPOCH};
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let into_second = now.subsec_micros();
        let into_window = now.as_secs() % 300;
        if (5_000..100_000).contains(&into_second) && into_window < 298 {
            return;
        }
        let wait_us = if into_second < 5_000 {
            5_000 - u64::from(into_second) + 1_000
        } else {
            1_000_000 - u64::from(into_second) + 10_000
        };
        std::thread::sleep(std::time::Duration::from_micros(wait_us));
    }
}

pub(crate) fn write_pcap(path: &Path, frames: &[Vec<u8>], start_s: u32) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&0i32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        let us = i as u64 * 100;
        b.extend_from_slice(&(start_s + (us / 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).expect("write pcap");
}

/// A running `rstwatch-sensor run`, its output collected in the background.
pub(crate) struct Sensor {
    pub child: std::process::Child,
    out: Option<std::thread::JoinHandle<String>>,
    err: std::sync::Arc<std::sync::Mutex<String>>,
    err_thread: Option<std::thread::JoinHandle<()>>,
}

/// What a sensor run produced.
pub(crate) struct SensorOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl SensorOutput {
    /// Asserts the sensor exited with status 0, showing its stderr when not.
    pub(crate) fn assert_success(&self) {
        assert!(
            self.status.success(),
            "sensor exit {:?}:\n{}",
            self.status,
            self.stderr
        );
    }

    /// The last `final: stats` line the sensor logged at shutdown ("" when none).
    pub(crate) fn final_stats(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.contains("final: stats"))
            .unwrap_or("")
    }
}

impl Sensor {
    /// Starts the sensor (optionally inside namespace `ns`) and waits until it says it is
    /// capturing (or exits).
    pub(crate) fn start(ns: Option<&str>, args: &[&str]) -> Result<Sensor, SensorOutput> {
        use std::io::{BufRead, Read};
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(sensor_bin());
                c
            }
            None => Command::new(sensor_bin()),
        };
        cmd.arg("run")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start rstwatch-sensor");
        let mut stdout = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let err2 = err.clone();
        let err_thread = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains(": capturing on ") {
                    let _ = ready_tx.send(());
                }
                let mut e = err2.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        let mut s = Sensor {
            child,
            out: Some(out),
            err,
            err_thread: Some(err_thread),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                return Ok(s);
            }
            if let Ok(Some(_)) = s.child.try_wait() {
                return Err(s.collect());
            }
            if Instant::now() > deadline {
                let _ = s.child.kill();
                let o = s.collect();
                panic!("sensor did not start within 30 s:\n{}", o.stderr);
            }
        }
    }

    pub(crate) fn stderr_now(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    pub(crate) fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then waits (30 s at most) and collects the output.
    pub(crate) fn stop(self) -> SensorOutput {
        self.signal(libc::SIGTERM);
        self.collect()
    }

    /// Waits (30 s at most) for the sensor to exit and collects the output.
    pub(crate) fn collect(mut self) -> SensorOutput {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sensor did not exit within 30 s:\n{}", self.stderr_now());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.out.take().unwrap().join().unwrap();
        self.err_thread.take().unwrap().join().unwrap();
        let stderr = self.stderr_now();
        SensorOutput {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a sensor subcommand to completion.
pub(crate) fn sensor_cmd(args: &[&str]) -> SensorOutput {
    let o = Command::new(sensor_bin())
        .args(args)
        .output()
        .expect("run rstwatch-sensor");
    SensorOutput {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// How `cause` is compared between live capture and replay.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Causes {
    /// Exactly (one engine: the same packets in the same order give the same causes,
    /// given a config whose time windows do not depend on the injection rate).
    Exact,
    /// Not at all: with several workers, where an aggregate rule (`scan`,
    /// `backscatter`) starts to apply depends on the order in which the workers' RSTs
    /// reach the output stage.
    Ignored,
}

/// JSON-lines records as a multiset of canonical strings, timestamps, per-run ids and
/// what is measured from timestamps (`silence_ms`, `cause_detail`, which quotes
/// durations, and an anomaly's value, baseline and detail) left out: live capture
/// stamps frames when they arrive, not as the pcap says.
pub(crate) fn canonical(jsonl: &str, causes: Causes) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
        if let Some(o) = v.as_object_mut() {
            for k in [
                "ts",
                "ts_start",
                "ts_end",
                "flow_uid",
                "uid",
                "silence_ms",
                "cause_detail",
            ] {
                o.remove(k);
            }
            if causes == Causes::Ignored {
                o.remove("cause");
            }
            if o.get("type").and_then(|t| t.as_str()) == Some("anomaly") {
                // What an anomaly measured (a rate, a baseline, the sentence quoting
                // them) comes from packet spacing too; which anomaly, about whom, stays.
                for k in ["value", "baseline", "detail"] {
                    o.remove(k);
                }
            }
        }
        *m.entry(v.to_string()).or_insert(0) += 1;
    }
    m
}

/// Asserts two JSON-lines outputs hold the same records (timestamps aside), showing the
/// differences when not.
pub(crate) fn assert_same_records(replay: &str, live: &str, causes: Causes) {
    let a = canonical(replay, causes);
    let b = canonical(live, causes);
    if a != b {
        let mut msg = String::new();
        for (k, &n) in &a {
            let m = b.get(k).copied().unwrap_or(0);
            if m != n {
                msg.push_str(&format!("replay {n} × live {m} × {k}\n"));
            }
        }
        for (k, &m) in &b {
            if !a.contains_key(k) {
                msg.push_str(&format!("replay 0 × live {m} × {k}\n"));
            }
        }
        panic!("live capture and replay differ:\n{msg}");
    }
}

/// A free TCP port on loopback (for --metrics-listen), below the ephemeral range.
pub(crate) use rstwatch_collector::testing::free_port;

/// GET http://127.0.0.1:port/path, body only.
pub(crate) fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    write!(c, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(s)
}
