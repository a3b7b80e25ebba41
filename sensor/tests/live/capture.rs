//! Real AF_XDP capture on a veth pair: what is sent is what is received.

use crate::live_common;

use live_common::*;
use rstwatch_xdp::{query_xdp, ModeRequest, XdpProgram, XskConfig, XskSocket};
use std::time::{Duration, Instant};

fn capture_roundtrip(mode: ModeRequest, expect: &str) {
    let test = format!("capture_roundtrip_{expect}");
    if should_skip(&test) {
        return;
    }
    let veth = Veth::new();
    let mut prog = XdpProgram::attach(&veth.host, mode, false).expect("attach XDP");
    assert_eq!(prog.mode().as_str(), expect);
    let ifindex = prog.ifindex();
    let attached = query_xdp(ifindex).unwrap();
    assert!(attached.any(), "program visible on the interface");

    let mut sock = XskSocket::open(&veth.host, 0, &XskConfig::default()).expect("socket");
    prog.register(0, sock.fd()).expect("register");

    // 2000 TCP/IPv4 frames of varying size, 50 VLAN-tagged TCP/IPv6, 300 UDP.
    let mut tcp: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            tcp4_frame(
                [192, 0, 2, 1],
                [198, 51, 100, 2],
                40000 + (i % 500) as u16,
                80,
                i,
                0x18,
                &vec![(i % 251) as u8; (i % 1400) as usize],
            )
        })
        .collect();
    tcp.extend((0..50u32).map(|i| tcp6_vlan_frame(100, 50000 + i as u16, i)));
    let udp: Vec<Vec<u8>> = (0..300u16).map(udp4_frame).collect();
    let mut all = Vec::new();
    let mut ti = tcp.iter();
    for (i, u) in udp.iter().enumerate() {
        all.push(u.clone());
        for _ in 0..(if i < 299 { 7 } else { 0 }) {
            if let Some(t) = ti.next() {
                all.push(t.clone());
            }
        }
    }
    all.extend(ti.cloned());
    let expected_tcp = tcp.len();

    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let sender = {
        let ns = veth.ns.clone();
        let peer = veth.peer.clone();
        std::thread::spawn(move || {
            let path = format!("/var/run/netns/{ns}");
            let f = std::fs::File::open(path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: setns on an open namespace file only changes this thread's
            // network namespace; `f` outlives the call.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            send_raw(&peer, &all);
        })
    };
    let mut got: Vec<(Vec<u8>, i64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < expected_tcp && Instant::now() < deadline {
        if sock.wait(100) {
            sock.recv(|f| got.push((f.data.to_vec(), f.ts_ns)));
        }
    }
    sender.join().unwrap();
    // Anything extra would show up now.
    std::thread::sleep(Duration::from_millis(200));
    sock.recv(|f| got.push((f.data.to_vec(), f.ts_ns)));
    let t1 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;

    assert_eq!(got.len(), expected_tcp, "every TCP frame, nothing else");
    for (i, (g, want)) in got.iter().zip(tcp.iter()).enumerate() {
        assert_eq!(&g.0, want, "frame {i} differs (order or content)");
        assert!(
            g.1 >= t0 - 1_000_000 && g.1 <= t1,
            "timestamp of frame {i} out of range"
        );
    }
    let st = sock.stats();
    assert_eq!(st.rx_frames, expected_tcp as u64);
    assert_eq!(st.rx_no_meta, 0, "XDP stamped every frame");
    assert_eq!(st.rx_dropped, 0);
    let pc = prog.counters();
    assert_eq!(pc.tcp, expected_tcp as u64);
    assert_eq!(pc.non_tcp_dropped, 300);

    prog.detach().unwrap();
    assert!(
        !query_xdp(ifindex).unwrap().any(),
        "nothing left after detach"
    );
    drop(sock);
}

#[test]
fn capture_roundtrip_native() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    capture_roundtrip(ModeRequest::Native, "native");
}

#[test]
fn capture_roundtrip_generic() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    capture_roundtrip(ModeRequest::Generic, "generic");
}

/// `pass_non_tcp`: non-TCP frames go to the host stack (counted), TCP still to the socket.
#[test]
fn capture_pass_non_tcp() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("capture_pass_non_tcp") {
        return;
    }
    let veth = Veth::new();
    let mut prog = XdpProgram::attach(&veth.host, ModeRequest::Auto, true).expect("attach");
    let mut sock = XskSocket::open(&veth.host, 0, &XskConfig::default()).expect("socket");
    prog.register(0, sock.fd()).expect("register");
    let mut frames: Vec<Vec<u8>> = (0..40u16).map(udp4_frame).collect();
    frames.extend(
        (0..60u32).map(|i| tcp4_frame([192, 0, 2, 1], [198, 51, 100, 2], 40000, 80, i, 0x10, &[])),
    );
    veth.send_frames(frames);
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < 60 && Instant::now() < deadline {
        if sock.wait(100) {
            got += sock.recv(|_| {});
        }
    }
    assert_eq!(got, 60);
    let pc = prog.counters();
    assert_eq!(pc.non_tcp_passed, 40);
    assert_eq!(pc.non_tcp_dropped, 0);
    assert_eq!(pc.tcp, 60);
}
