//! Shared by the live-capture benchmark tools (`xdp_gen`, `xdp_drop`, `xdp_bench`):
//! pcap loading, namespace entry, pinning, clocks.

#![allow(dead_code)]

use std::path::Path;

/// Frames of a pcap or pcapng file (Ethernet), in file order.
pub(crate) fn load_frames(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use anyhow::Context;
    let data = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::new();
    if data.len() >= 4 && data[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = pcap_file::pcapng::PcapNgReader::new(&data[..])
            .with_context(|| format!("{}: not a pcapng file", path.display()))?;
        while let Some(b) = r.next_block() {
            let b = b.with_context(|| format!("{}: corrupt pcapng", path.display()))?;
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = b {
                out.push(p.data.to_vec());
            }
        }
    } else {
        let mut r = pcap_file::pcap::PcapReader::new(&data[..])
            .with_context(|| format!("{}: not a pcap file", path.display()))?;
        while let Some(p) = r.next_packet() {
            let p = p.with_context(|| format!("{}: corrupt pcap", path.display()))?;
            out.push(p.data.to_vec());
        }
    }
    anyhow::ensure!(!out.is_empty(), "{}: no packets", path.display());
    Ok(out)
}

/// Moves the calling thread into network namespace `ns` (`ip netns` name).
pub(crate) fn enter_netns(ns: &str) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))
        .map_err(|e| anyhow::anyhow!("namespace {ns}: {e}"))?;
    // SAFETY: setns on the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        anyhow::bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to one core (the sensor's own `sys::pin_thread`).
pub(crate) fn pin(core: usize) -> anyhow::Result<()> {
    rstwatch_sensor::sys::pin_thread(&[core])
        .map_err(|e| anyhow::anyhow!("pin to core {core}: {e}"))
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// SIGINT/SIGTERM set a flag ([`stopped`]).
pub(crate) fn install_stop_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: handler touches an atomic only.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub(crate) fn stopped() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}
