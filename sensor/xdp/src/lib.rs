//! Live capture for rstwatch: the XDP program and the AF_XDP sockets behind it.
//!
//! ```text
//! NIC queue q ─XDP prog (TCP only, timestamp in metadata)─▶ XSKMAP[q] ─▶ XskSocket (UMEM of queue q)
//!                                    └─ everything else: drop (mirror port) or pass
//! ```
//!
//! * [`XdpProgram`] loads the program (compiled from `bpf/rstwatch_xdp.c` by the build),
//!   attaches it in native driver mode or, failing that, generic (SKB) mode, replaces a
//!   stale program left by a killed predecessor, registers sockets in its XSKMAP and
//!   detaches on [`XdpProgram::detach`] (or drop).
//! * [`XskSocket`] is one AF_XDP socket with its own UMEM for one receive queue:
//!   `XDP_USE_NEED_WAKEUP`, optional busy polling, batch receive. [`XskSocket::recv`]
//!   lends each received frame to a callback as a `&[u8]` borrowed from the UMEM (no
//!   copy) with its arrival timestamp, then returns the frame to the fill ring.
//!
//! Everything needs CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON (the verifier asks for it on
//! current kernels: loading failed with EACCES without it on 6.18), CAP_NET_RAW and
//! CAP_IPC_LOCK (or root);
//! errors say so ([`Error::Permission`]).

mod iface;
mod netlink;
mod prog;
mod xsk;

pub use iface::{ifindex, online_cpus, rx_queue_count};
pub use netlink::{query_xdp, AttachedXdp};
pub use prog::{AttachMode, ModeRequest, NonTcp, ProgCounters, TunnelPortFilter, XdpProgram};
pub use xsk::{BusyPoll, Frame, XskConfig, XskSocket, XskStats, ZeroCopy};

/// What can go wrong setting up live capture. Each message names the interface and says
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The interface does not exist.
    #[error("no network interface named {name:?}{}", available_hint(.available))]
    NoSuchInterface {
        /// The name asked for.
        name: String,
        /// Interfaces that exist.
        available: Vec<String>,
    },
    #[error(
        "permission denied while {what}: live capture needs CAP_NET_ADMIN, CAP_BPF, \
         CAP_PERFMON, CAP_NET_RAW and CAP_IPC_LOCK (run as root or grant them, e.g. \
         `setcap cap_net_admin,cap_bpf,cap_perfmon,cap_net_raw,cap_ipc_lock+ep rstwatch-sensor`)"
    )]
    /// Missing privileges for `what`.
    Permission {
        /// What was being done.
        what: String,
    },
    /// The interface or driver does not support XDP in this mode.
    #[error("XDP is not supported on {iface} in {mode} mode: {detail}")]
    XdpUnsupported {
        /// Interface name.
        iface: String,
        /// Attach mode asked for.
        mode: &'static str,
        /// What the kernel said.
        detail: String,
    },
    #[error(
        "queue {queue} is out of range on {iface}: it has {count} receive queue(s) \
         (0..={})",
        .count.saturating_sub(1)
    )]
    /// The interface has fewer receive queues.
    QueueOutOfRange {
        /// Interface name.
        iface: String,
        /// Queue asked for.
        queue: u32,
        /// Queues it has.
        count: u32,
    },
    #[error(
        "{iface} already has XDP program id {prog_id} attached through a BPF link held by \
         another process (another `rstwatch-sensor run` on this interface?)"
    )]
    /// Another XDP program is attached.
    Busy {
        /// Interface name.
        iface: String,
        /// The attached program's id.
        prog_id: u32,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Loading or attaching the BPF program failed.
    #[error("{what}: {detail}")]
    Bpf {
        /// What was being done.
        what: String,
        /// What the loader or kernel said.
        detail: String,
    },
}

fn available_hint(v: &[String]) -> String {
    if v.is_empty() {
        String::new()
    } else {
        format!(" (interfaces here: {})", v.join(", "))
    }
}

impl Error {
    /// Wraps an OS error, turning EPERM/EACCES into [`Error::Permission`].
    pub(crate) fn os(what: impl Into<String>, err: std::io::Error) -> Error {
        let what = what.into();
        match err.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission { what },
            _ => Error::Io { what, source: err },
        }
    }
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Raises RLIMIT_MEMLOCK as far as allowed: UMEM pages are charged against it unless
/// the process has CAP_IPC_LOCK. Failure is not an error by itself (the UMEM
/// registration will say so if it matters).
pub fn raise_memlock_limit() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut cur) == 0 {
                cur.rlim_cur = cur.rlim_max;
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &cur);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names() {
        assert_eq!("auto".parse::<ModeRequest>(), Ok(ModeRequest::Auto));
        assert_eq!("native".parse::<ModeRequest>(), Ok(ModeRequest::Native));
        assert_eq!("drv".parse::<ModeRequest>(), Ok(ModeRequest::Native));
        assert_eq!("generic".parse::<ModeRequest>(), Ok(ModeRequest::Generic));
        assert_eq!("skb".parse::<ModeRequest>(), Ok(ModeRequest::Generic));
        assert!("turbo"
            .parse::<ModeRequest>()
            .unwrap_err()
            .contains("turbo"));
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = Error::QueueOutOfRange {
            iface: "eth1".into(),
            queue: 4,
            count: 2,
        };
        assert_eq!(
            e.to_string(),
            "queue 4 is out of range on eth1: it has 2 receive queue(s) (0..=1)"
        );
        let e = Error::os("loading", std::io::Error::from_raw_os_error(libc::EPERM));
        let m = e.to_string();
        for cap in [
            "CAP_NET_ADMIN",
            "CAP_BPF",
            "CAP_PERFMON",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK",
        ] {
            assert!(m.contains(cap), "{m}");
        }
        let e = Error::NoSuchInterface {
            name: "nope0".into(),
            available: vec!["lo".into(), "eth0".into()],
        };
        assert_eq!(
            e.to_string(),
            "no network interface named \"nope0\" (interfaces here: lo, eth0)"
        );
    }

    #[test]
    fn interface_lookup() {
        assert!(matches!(
            ifindex("rstw-no-such-if"),
            Err(Error::NoSuchInterface { .. })
        ));
        assert!(ifindex("lo").is_ok());
        assert!(!online_cpus().is_empty());
    }
}
