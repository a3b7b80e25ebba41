//! Loading the XDP program, attaching it (native first, generic as fallback), replacing
//! a stale one, registering sockets, detaching.

use crate::netlink::{self, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use crate::{iface, Error, Result};
use aya::maps::{MapData, PerCpuArray, XskMap};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rstwatch_xdp.o"));
const PROG_NAME: &str = "rstwatch_xdp";

/// Which attach mode the caller wants.
///
/// Deserialized through [`FromStr`](std::str::FromStr) (`try_from = "String"`) so a
/// configuration file accepts the same aliases as the command line and a bad value
/// says "unknown XDP mode".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ModeRequest {
    /// Native driver mode, else generic mode (logged).
    #[default]
    Auto,
    /// Native (driver) mode.
    #[cfg_attr(feature = "clap", value(alias = "drv", alias = "driver"))]
    Native,
    /// Generic (SKB) mode.
    #[cfg_attr(feature = "clap", value(alias = "skb"))]
    Generic,
}

impl TryFrom<String> for ModeRequest {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for ModeRequest {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(ModeRequest::Auto),
            "native" | "drv" | "driver" => Ok(ModeRequest::Native),
            "generic" | "skb" => Ok(ModeRequest::Generic),
            _ => Err(format!(
                "unknown XDP mode {s:?} (expected native, generic or auto)"
            )),
        }
    }
}

/// What the XDP program does with frames that are not TCP (nor a tunnel carrying TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum NonTcp {
    /// Drop them in the driver (counted): a mirror port's host stack needs none of them.
    #[default]
    Drop,
    /// Hand them to the host stack (counted), e.g. when the port also carries management.
    Pass,
}

impl NonTcp {
    /// Whether the program passes non-TCP frames (its `rstwatch_pass_non_tcp` global).
    pub fn passes(self) -> bool {
        self == NonTcp::Pass
    }
}

/// The mode the program actually runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

impl AttachMode {
    /// Its name (`native`, `generic`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// The XDP program's own counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgCounters {
    /// TCP frames handed to the XSKMAP redirect.
    pub tcp: u64,
    /// Non-TCP frames dropped.
    pub non_tcp_dropped: u64,
    /// Non-TCP frames passed to the host stack.
    pub non_tcp_passed: u64,
    /// TCP frames that could not carry a timestamp (stamped in user space instead).
    pub no_meta: u64,
    /// Tunnel frames (GRE, VXLAN/Geneve ports, MPLS, PPPoE) handed to the redirect, to
    /// be decoded in user space.
    pub tunnel: u64,
}

/// Which UDP destination ports the program hands up as VXLAN and Geneve tunnels (up
/// to four each, 0 = unused slot); the engine's parser must use the same lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelPortFilter {
    /// UDP ports decoded as VXLAN (0: unused slot).
    pub vxlan: [u16; 4],
    /// UDP ports decoded as Geneve (0: unused slot).
    pub geneve: [u16; 4],
}

impl Default for TunnelPortFilter {
    fn default() -> Self {
        TunnelPortFilter {
            vxlan: [4789, 0, 0, 0],
            geneve: [6081, 0, 0, 0],
        }
    }
}

/// The loaded and attached XDP program of one interface.
pub struct XdpProgram {
    ebpf: Ebpf,
    link: Option<aya::programs::xdp::XdpLinkId>,
    ifname: String,
    ifindex: u32,
    mode: AttachMode,
    prog_id: u32,
}

fn ebpf_err(what: &str, e: EbpfError) -> Error {
    if let EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. }) = &e {
        if matches!(
            io_error.raw_os_error(),
            Some(libc::EPERM) | Some(libc::EACCES)
        ) {
            return Error::Permission {
                what: what.to_string(),
            };
        }
    }
    let detail = format!("{e}");
    if detail.contains("Operation not permitted") || detail.contains("Permission denied") {
        return Error::Permission {
            what: what.to_string(),
        };
    }
    Error::Bpf {
        what: what.to_string(),
        detail,
    }
}

fn prog_err(what: &str, e: ProgramError) -> Error {
    let io = match &e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        _ => None,
    };
    if matches!(io, Some(libc::EPERM) | Some(libc::EACCES)) {
        return Error::Permission {
            what: what.to_string(),
        };
    }
    let mut detail = format!("{e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        detail.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::Bpf {
        what: what.to_string(),
        detail,
    }
}

fn errno_of(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => {
            // netlink errors carry the errno in their io::Error source
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    return io.raw_os_error();
                }
                src = s.source();
            }
            None
        }
    }
}

impl XdpProgram {
    /// Loads the program and attaches it to `ifname`.
    ///
    /// `pass_non_tcp`: what happens to frames that are not TCP (false: drop, the right
    /// thing on a mirror port; true: hand them to the host stack).
    ///
    /// A program already attached through netlink (left by a killed predecessor or
    /// another tool) is replaced, with a log line. A program held by a live BPF link is
    /// [`Error::Busy`]. A program we attach ourselves is held by a BPF link: it goes away
    /// when this process exits, even by `kill -9`.
    pub fn attach(ifname: &str, req: ModeRequest, pass_non_tcp: bool) -> Result<XdpProgram> {
        Self::attach_with_ports(ifname, req, pass_non_tcp, TunnelPortFilter::default())
    }

    /// [`XdpProgram::attach`] with other VXLAN/Geneve ports than the IANA ones.
    pub fn attach_with_ports(
        ifname: &str,
        req: ModeRequest,
        pass_non_tcp: bool,
        ports: TunnelPortFilter,
    ) -> Result<XdpProgram> {
        let ifindex = iface::ifindex(ifname)?;
        crate::raise_memlock_limit();
        remove_stale(ifname, ifindex)?;

        let pass: u32 = pass_non_tcp as u32;
        let mut ebpf = EbpfLoader::new()
            .override_global("rstwatch_pass_non_tcp", &pass, true)
            .override_global("rstwatch_vxlan_ports", &ports.vxlan, true)
            .override_global("rstwatch_geneve_ports", &ports.geneve, true)
            .load(PROGRAM)
            .map_err(|e| ebpf_err("loading the XDP program", e))?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_NAME)
            .ok_or_else(|| Error::Bpf {
                what: "loading the XDP program".into(),
                detail: format!("program {PROG_NAME} missing from the object"),
            })?
            .try_into()
            .map_err(|e| prog_err("loading the XDP program", e))?;
        prog.load()
            .map_err(|e| prog_err("loading the XDP program into the kernel", e))?;
        let prog_id = prog.info().map(|i| i.id()).unwrap_or(0);

        let try_mode = |prog: &mut Xdp, mode: AttachMode| {
            let m = match mode {
                AttachMode::Native => XdpMode::Driver,
                AttachMode::Generic => XdpMode::Skb,
            };
            prog.attach_to_if_index(ifindex, m)
        };
        let unsupported = |mode: AttachMode, e: &ProgramError| Error::XdpUnsupported {
            iface: ifname.to_string(),
            mode: mode.as_str(),
            detail: describe(e),
        };
        let (link, mode) = match req {
            ModeRequest::Native | ModeRequest::Auto => match try_mode(prog, AttachMode::Native) {
                Ok(l) => (l, AttachMode::Native),
                Err(e) if req == ModeRequest::Auto && !is_perm(&e) => {
                    log::warn!(
                            "{ifname}: native XDP attach failed ({}), falling back to generic (SKB) mode",
                            describe(&e)
                        );
                    let l = try_mode(prog, AttachMode::Generic).map_err(|e| {
                        if is_perm(&e) {
                            prog_err("attaching the XDP program", e)
                        } else {
                            unsupported(AttachMode::Generic, &e)
                        }
                    })?;
                    (l, AttachMode::Generic)
                }
                Err(e) if is_perm(&e) => return Err(prog_err("attaching the XDP program", e)),
                Err(e) => return Err(unsupported(AttachMode::Native, &e)),
            },
            ModeRequest::Generic => match try_mode(prog, AttachMode::Generic) {
                Ok(l) => (l, AttachMode::Generic),
                Err(e) if is_perm(&e) => return Err(prog_err("attaching the XDP program", e)),
                Err(e) => return Err(unsupported(AttachMode::Generic, &e)),
            },
        };
        log::info!(
            "{ifname}: XDP program id {prog_id} attached in {} mode{}",
            mode.as_str(),
            if pass_non_tcp {
                " (non-TCP frames passed to the stack)"
            } else {
                " (non-TCP frames dropped)"
            }
        );
        Ok(XdpProgram {
            ebpf,
            link: Some(link),
            ifname: ifname.to_string(),
            ifindex,
            mode,
            prog_id,
        })
    }

    /// The mode it is attached in.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The kernel's id of the loaded program.
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// Puts `socket_fd` (an AF_XDP socket bound to `queue`) in the XSKMAP: TCP frames
    /// arriving on that queue go to it from now on.
    pub fn register(&mut self, queue: u32, socket_fd: RawFd) -> Result<()> {
        let map = self
            .ebpf
            .map_mut("rstwatch_xsks")
            .ok_or_else(|| Error::Bpf {
                what: "registering a socket".into(),
                detail: "map rstwatch_xsks missing".into(),
            })?;
        let mut xsks: XskMap<&mut MapData> = XskMap::try_from(map).map_err(|e| Error::Bpf {
            what: "registering a socket".into(),
            detail: format!("{e}"),
        })?;
        if queue >= xsks.len() {
            return Err(Error::QueueOutOfRange {
                iface: self.ifname.clone(),
                queue,
                count: xsks.len(),
            });
        }
        // SAFETY: the caller's socket is open for the duration of this call.
        let fd = unsafe { BorrowedFd::borrow_raw(socket_fd) };
        xsks.set(queue, fd.as_raw_fd(), 0).map_err(|e| Error::Bpf {
            what: format!("registering the socket of queue {queue}"),
            detail: format!("{e}"),
        })
    }

    /// The program's counters summed over CPUs.
    pub fn counters(&self) -> ProgCounters {
        let mut out = ProgCounters::default();
        let Some(map) = self.ebpf.map("rstwatch_counters") else {
            return out;
        };
        let Ok(arr) = PerCpuArray::<&MapData, u64>::try_from(map) else {
            return out;
        };
        let sum = |i: u32| -> u64 { arr.get(&i, 0).map(|v| v.iter().copied().sum()).unwrap_or(0) };
        out.tcp = sum(0);
        out.non_tcp_dropped = sum(1);
        out.non_tcp_passed = sum(2);
        out.no_meta = sum(3);
        out.tunnel = sum(4);
        out
    }

    /// Detaches the program from the interface (before the sockets close, so no frame is
    /// redirected to a dying socket). Idempotent; also done on drop.
    pub fn detach(&mut self) -> Result<()> {
        let Some(link) = self.link.take() else {
            return Ok(());
        };
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROG_NAME)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| Error::Bpf {
                what: "detaching the XDP program".into(),
                detail: "program vanished".into(),
            })?;
        prog.detach(link)
            .map_err(|e| prog_err("detaching the XDP program", e))?;
        log::info!("{}: XDP program detached", self.ifname);
        Ok(())
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::error!("{}: {e}", self.ifname);
        }
    }
}

fn is_perm(e: &ProgramError) -> bool {
    matches!(errno_of(e), Some(libc::EPERM) | Some(libc::EACCES))
}

fn describe(e: &ProgramError) -> String {
    let mut s = format!("{e}");
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

/// Removes an XDP program left on the interface through netlink. One held by a live BPF
/// link cannot be removed: [`Error::Busy`].
fn remove_stale(ifname: &str, ifindex: u32) -> Result<()> {
    let cur = match netlink::query_xdp(ifindex) {
        Ok(c) => c,
        Err(e) => {
            log::debug!("{ifname}: cannot query attached XDP programs: {e}");
            return Ok(());
        }
    };
    for (id, flags, mode) in [
        (cur.native_prog_id, XDP_FLAGS_DRV_MODE, "native"),
        (cur.generic_prog_id, XDP_FLAGS_SKB_MODE, "generic"),
    ] {
        if id == 0 {
            continue;
        }
        match netlink::detach_xdp(ifindex, flags) {
            Ok(()) => log::warn!(
                "{ifname}: replaced a stale XDP program (id {id}, {mode} mode) left on the interface"
            ),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(Error::Busy {
                    iface: ifname.to_string(),
                    prog_id: id,
                })
            }
            Err(e) => return Err(Error::os(format!("removing XDP program {id} from {ifname}"), e)),
        }
    }
    Ok(())
}
