//! Interface and CPU facts: index by name, receive queue count, online CPUs.

use crate::{Error, Result};
use std::ffi::CString;

/// The interface index of `name`, or [`Error::NoSuchInterface`] listing what exists.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name).map_err(|_| Error::NoSuchInterface {
        name: name.to_string(),
        available: vec![],
    })?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 || name.len() >= libc::IF_NAMESIZE {
        return Err(Error::NoSuchInterface {
            name: name.to_string(),
            available: interface_names(),
        });
    }
    Ok(idx)
}

fn interface_names() -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            out.push(
                std::ffi::CStr::from_ptr((*p).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}

/// Number of receive queues of `name`: ethtool's channel count when the driver reports
/// it, else the `rx-N` entries in sysfs; `None` when neither is available (sysfs of
/// another network namespace, for instance).
pub fn rx_queue_count(name: &str) -> Option<u32> {
    if let Some(n) = ethtool_rx_channels(name) {
        return Some(n);
    }
    let dir = std::fs::read_dir(format!("/sys/class/net/{name}/queues")).ok()?;
    let n = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    (n > 0).then_some(n as u32)
}

#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IF_NAMESIZE],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

fn ethtool_rx_channels(name: &str) -> Option<u32> {
    if name.len() >= libc::IF_NAMESIZE {
        return None;
    }
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut ifr = IfreqData {
        name: [0; libc::IF_NAMESIZE],
        data: &mut ch as *mut EthtoolChannels as *mut libc::c_void,
        _pad: [0; 16],
    };
    for (d, s) in ifr.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: socket/ioctl/close with valid pointers; the ioctl writes into `ch` only.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let r = libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr);
        libc::close(fd);
        if r != 0 {
            return None;
        }
    }
    let n = ch.rx_count + ch.combined_count;
    (n > 0).then_some(n)
}

/// CPUs this process may run on (the affinity mask of the first thread that asks,
/// remembered: threads later pinned to a subset do not shrink it), ascending.
pub fn online_cpus() -> Vec<usize> {
    static CPUS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CPUS.get_or_init(affinity_cpus).clone()
}

fn affinity_cpus() -> Vec<usize> {
    // SAFETY: zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}
