//! Shutdown leaves the interface as it was: SIGTERM and SIGINT detach the XDP program;
//! after kill -9 (the BPF link dies with the process) a new `run` starts cleanly; a
//! stale program attached through netlink is replaced.

use crate::live_common;

use live_common::*;
use std::process::Command;
use std::time::Duration;

fn attached(iface: &str) -> rstwatch_xdp::AttachedXdp {
    let idx = rstwatch_xdp::ifindex(iface).unwrap();
    rstwatch_xdp::query_xdp(idx).unwrap()
}

/// Sends a few RSTs and returns how many the sensor then reports as captured.
fn send_some(veth: &Veth, n: u32) -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            tcp4_frame(
                [203, 0, 113, 7],
                [192, 0, 2, 9],
                443,
                30000 + i as u16,
                i,
                RST,
                &[],
            )
        })
        .collect();
    veth.send_frames(frames.clone());
    frames
}

fn stop_with(sig: libc::c_int, name: &str) {
    if should_skip(name) {
        return;
    }
    let veth = Veth::new();
    let s =
        Sensor::start(None, &["--iface", &veth.host]).unwrap_or_else(|o| panic!("{}", o.stderr));
    assert!(attached(&veth.host).any(), "program attached while running");
    send_some(&veth, 10);
    std::thread::sleep(Duration::from_millis(300));
    s.signal(sig);
    let o = s.collect();
    o.assert_success();
    assert!(o.stderr.contains("XDP program detached"), "{}", o.stderr);
    assert!(o.stderr.contains("q0 rx=10 dropped=0"), "{}", o.stderr);
    // unsolicited RSTs reported, flushed at shutdown
    assert_eq!(
        o.stdout.matches("\"type\":\"rst\"").count(),
        10,
        "{}",
        o.stdout
    );
    assert!(
        !attached(&veth.host).any(),
        "no XDP program left after {name}"
    );
}

#[test]
fn live_sigterm_detaches() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    stop_with(libc::SIGTERM, "live_sigterm_detaches");
}

#[test]
fn live_sigint_detaches() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    stop_with(libc::SIGINT, "live_sigint_detaches");
}

#[test]
fn live_kill9_then_restart() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_kill9_then_restart") {
        return;
    }
    let veth = Veth::new();
    let s =
        Sensor::start(None, &["--iface", &veth.host]).unwrap_or_else(|o| panic!("{}", o.stderr));
    s.signal(libc::SIGKILL);
    let o = s.collect();
    assert!(!o.status.success());
    // The program was held by a BPF link owned by the dead process: gone with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while attached(&veth.host).any() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!attached(&veth.host).any(), "kill -9 left a program behind");
    // A new run starts cleanly and captures.
    let s = Sensor::start(None, &["--iface", &veth.host])
        .unwrap_or_else(|o| panic!("restart failed: {}", o.stderr));
    send_some(&veth, 5);
    std::thread::sleep(Duration::from_millis(300));
    let o = s.stop();
    o.assert_success();
    assert_eq!(
        o.stdout.matches("\"type\":\"rst\"").count(),
        5,
        "{}",
        o.stdout
    );
}

/// A program attached through netlink (as `ip link set ... xdp` does, or an older
/// sensor killed mid-run) is replaced with a log line.
#[test]
fn live_replaces_stale_program() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_replaces_stale_program") {
        return;
    }
    let Some(clang) = which("clang") else {
        panic!("clang is needed (it builds the XDP program too)");
    };
    let veth = Veth::new();
    let dir = std::env::temp_dir().join(format!("rstwatch-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("pass.c");
    std::fs::write(
        &src,
        "__attribute__((section(\"xdp\"), used)) int pass(void *ctx) { return 2; }\n\
         char _license[] __attribute__((section(\"license\"), used)) = \"GPL\";\n",
    )
    .unwrap();
    let obj = dir.join("pass.o");
    let st = Command::new(clang)
        .args(["-O2", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("ip")
        .args(["link", "set", "dev", &veth.host, "xdpgeneric", "obj"])
        .arg(&obj)
        .args(["sec", "xdp"])
        .status()
        .unwrap();
    assert!(st.success(), "ip link set xdpgeneric failed");
    let stale = attached(&veth.host);
    assert!(stale.generic_prog_id != 0);

    let s =
        Sensor::start(None, &["--iface", &veth.host]).unwrap_or_else(|o| panic!("{}", o.stderr));
    assert!(
        s.stderr_now().contains(&format!(
            "replaced a stale XDP program (id {}",
            stale.generic_prog_id
        )),
        "{}",
        s.stderr_now()
    );
    send_some(&veth, 3);
    std::thread::sleep(Duration::from_millis(300));
    let o = s.stop();
    o.assert_success();
    assert_eq!(o.stdout.matches("\"type\":\"rst\"").count(), 3);
    assert!(!attached(&veth.host).any());
    let _ = std::fs::remove_dir_all(dir);
}

/// A second sensor on the same interface is refused while the first runs.
#[test]
fn live_second_sensor_refused() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_second_sensor_refused") {
        return;
    }
    let veth = Veth::new();
    let s =
        Sensor::start(None, &["--iface", &veth.host]).unwrap_or_else(|o| panic!("{}", o.stderr));
    let o = sensor_cmd(&["run", "--iface", &veth.host]);
    assert!(!o.status.success());
    assert!(
        o.stderr.contains("another `rstwatch-sensor run`"),
        "{}",
        o.stderr
    );
    let o = s.stop();
    assert!(
        o.status.success(),
        "the first one still shuts down cleanly: {}",
        o.stderr
    );
}

/// When the reader of stdout goes away (`run ... | head -1`), the sensor stops by
/// itself, cleanly, and exits 0.
#[test]
fn live_stops_when_stdout_closes() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_stops_when_stdout_closes") {
        return;
    }
    use std::io::{BufRead, BufReader};
    let veth = Veth::new();
    let mut child = Command::new(sensor_bin())
        .args(["run", "--iface", &veth.host])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("capturing on") {
        line.clear();
    }
    let err_rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    send_some(&veth, 1);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("\"type\":\"rst\""), "{first}");
    drop(out); // the reader goes away
               // Keep the events coming until the sensor notices the closed pipe.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "sensor kept running");
        send_some(&veth, 20);
        std::thread::sleep(Duration::from_millis(700));
    };
    let err = err_rest.join().unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(err.contains("stdout was closed"), "{err}");
    assert!(err.contains("XDP program detached"), "{err}");
    assert!(!attached(&veth.host).any());
}
