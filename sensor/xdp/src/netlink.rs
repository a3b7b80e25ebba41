//! Just enough rtnetlink to see which XDP program sits on an interface and to remove a
//! stale one (attached through netlink by a predecessor that was killed, or by another
//! tool). A program attached through a BPF link is owned by that link's holder and cannot
//! be removed this way; the kernel answers EBUSY, which we report as such.

use std::io;

const NETLINK_ROUTE: libc::c_int = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The XDP programs attached to an interface (ids; 0 = none in that mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachedXdp {
    /// Program id attached in native mode (0: none).
    pub native_prog_id: u32,
    /// Program id attached in generic mode (0: none).
    pub generic_prog_id: u32,
    /// A program is offloaded to the NIC.
    pub offload: bool,
}

impl AttachedXdp {
    /// Whether any XDP program is attached.
    pub fn any(&self) -> bool {
        self.native_prog_id != 0 || self.generic_prog_id != 0 || self.offload
    }
}

struct Nl(libc::c_int);

impl Drop for Nl {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

impl Nl {
    fn open() -> io::Result<Nl> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Nl(fd))
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_nl addresses the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address.
        let r = unsafe {
            libc::sendto(
                self.0,
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: valid buffer.
        let r = unsafe { libc::recv(self.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn header(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by finish()
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // pid
}

fn ifinfomsg(buf: &mut Vec<u8>, ifindex: u32) {
    buf.push(libc::AF_UNSPEC as u8);
    buf.push(0);
    buf.extend_from_slice(&0u16.to_ne_bytes()); // type
    buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // flags
    buf.extend_from_slice(&0u32.to_ne_bytes()); // change
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align4(buf.len()), 0);
}

fn finish(buf: &mut [u8]) {
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
}

fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Iterates (type, payload) over a run of netlink attributes.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = rd_u16(b, 0)? as usize;
        let ty = rd_u16(b, 2)? & !NLA_F_NESTED;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[align4(len).min(b.len())..];
        Some((ty, payload))
    })
}

/// Which XDP programs are attached to interface `ifindex`.
pub fn query_xdp(ifindex: u32) -> io::Result<AttachedXdp> {
    let nl = Nl::open()?;
    let mut msg = Vec::with_capacity(64);
    header(&mut msg, RTM_GETLINK, NLM_F_REQUEST, 1);
    ifinfomsg(&mut msg, ifindex);
    finish(&mut msg);
    nl.send(&msg)?;
    let mut buf = vec![0u8; 65536];
    let n = nl.recv(&mut buf)?;
    let mut b = &buf[..n];
    while b.len() >= 16 {
        let len = rd_u32(b, 0).unwrap_or(0) as usize;
        let ty = rd_u16(b, 4).unwrap_or(0);
        if len < 16 || len > b.len() {
            break;
        }
        let m = &b[..len];
        match ty {
            NLMSG_ERROR => {
                let code = rd_u32(m, 16).unwrap_or(0) as i32;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
            }
            RTM_NEWLINK => {
                let mut out = AttachedXdp::default();
                for (t, p) in attrs(m.get(32..).unwrap_or(&[])) {
                    if t != IFLA_XDP {
                        continue;
                    }
                    let mut single_id = 0;
                    let mut attached = 0u8;
                    for (t2, p2) in attrs(p) {
                        match t2 {
                            IFLA_XDP_ATTACHED => attached = p2.first().copied().unwrap_or(0),
                            IFLA_XDP_PROG_ID => single_id = rd_u32(p2, 0).unwrap_or(0),
                            IFLA_XDP_DRV_PROG_ID => out.native_prog_id = rd_u32(p2, 0).unwrap_or(0),
                            IFLA_XDP_SKB_PROG_ID => {
                                out.generic_prog_id = rd_u32(p2, 0).unwrap_or(0)
                            }
                            _ => {}
                        }
                    }
                    // XDP_ATTACHED_DRV = 1, SKB = 2, HW = 3, MULTI = 4
                    match attached {
                        1 if out.native_prog_id == 0 => out.native_prog_id = single_id,
                        2 if out.generic_prog_id == 0 => out.generic_prog_id = single_id,
                        3 | 4 => out.offload = attached == 3 || out.offload,
                        _ => {}
                    }
                }
                return Ok(out);
            }
            NLMSG_DONE => break,
            _ => {}
        }
        b = &b[align4(len).min(b.len())..];
    }
    Err(io::Error::other("no RTM_NEWLINK answer from the kernel"))
}

/// Removes the XDP program attached in the given mode (`XDP_FLAGS_SKB_MODE` or
/// `XDP_FLAGS_DRV_MODE`). EBUSY means a BPF link owns it.
pub(crate) fn detach_xdp(ifindex: u32, mode_flags: u32) -> io::Result<()> {
    let nl = Nl::open()?;
    let mut msg = Vec::with_capacity(64);
    header(&mut msg, RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 2);
    ifinfomsg(&mut msg, ifindex);
    let mut nested = Vec::with_capacity(24);
    attr(&mut nested, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    attr(&mut nested, IFLA_XDP_FLAGS, &mode_flags.to_ne_bytes());
    attr(&mut msg, IFLA_XDP | NLA_F_NESTED, &nested);
    finish(&mut msg);
    nl.send(&msg)?;
    let mut buf = vec![0u8; 8192];
    let n = nl.recv(&mut buf)?;
    let b = &buf[..n];
    if rd_u16(b, 4) == Some(NLMSG_ERROR) {
        let code = rd_u32(b, 16).unwrap_or(0) as i32;
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
        return Ok(());
    }
    Err(io::Error::other("unexpected netlink answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_stop_at_garbage() {
        let mut nested = Vec::new();
        attr(&mut nested, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
        attr(
            &mut nested,
            IFLA_XDP_FLAGS,
            &XDP_FLAGS_SKB_MODE.to_ne_bytes(),
        );
        let mut buf = Vec::new();
        attr(&mut buf, IFLA_XDP | NLA_F_NESTED, &nested);
        attr(&mut buf, 3, b"eth0\0");
        let top: Vec<_> = attrs(&buf).collect();
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].0, IFLA_XDP, "nested flag masked off");
        let inner: Vec<_> = attrs(top[0].1).collect();
        assert_eq!(inner[0], (IFLA_XDP_FD, &(-1i32).to_ne_bytes()[..]));
        assert_eq!(rd_u32(inner[1].1, 0), Some(XDP_FLAGS_SKB_MODE));
        assert_eq!(top[1].1, b"eth0\0");
        // A length running past the buffer ends the walk instead of reading beyond it.
        let bad = [0xff, 0x00, 0x01, 0x00, 0, 0];
        assert_eq!(attrs(&bad).count(), 0);
        assert_eq!(attrs(&[1, 0]).count(), 0);
    }

    #[test]
    fn query_of_loopback_works_unprivileged() {
        // RTM_GETLINK needs no capability; loopback is ifindex 1 in every namespace.
        let a = query_xdp(1).expect("query lo");
        assert!(!a.offload);
    }
}
