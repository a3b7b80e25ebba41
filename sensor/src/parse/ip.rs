//! IPv4 (with options and fragments) and IPv6 (with extension headers) down to TCP.

use super::link::{ETH_IPV4, ETH_IPV6, ETH_RAW};
use super::{be16, Reject};
use rstwatch_schema::IpBytes;

const PROTO_TCP: u8 = 6;
/// A longer IPv6 extension chain is almost certainly an evasion attempt or garbage.
const MAX_V6_EXT: usize = 8;

/// An IP packet known to carry a TCP header at the start of `l4`.
pub(crate) struct IpView<'a> {
    pub(crate) src: IpBytes,
    pub(crate) dst: IpBytes,
    /// Captured TCP bytes (header and whatever payload was captured), cut at the IP
    /// length so Ethernet padding is never mistaken for payload.
    pub(crate) l4: &'a [u8],
    /// TCP segment length (header + payload) according to the IP header.
    pub(crate) l4_len: u32,
    pub(crate) ttl: u8,
    pub(crate) ip_id: u16,
    pub(crate) df: bool,
    pub(crate) is_v6: bool,
}

// Always: the tunnel decoder calls this too, which must not cost plain frames
// their inlined fast path.
#[inline(always)]
pub(crate) fn parse(ethertype: u16, b: &[u8]) -> Result<IpView<'_>, Reject> {
    let version = b.first().ok_or(Reject::TruncatedIp)? >> 4;
    match (ethertype, version) {
        (ETH_IPV4 | ETH_RAW, 4) => v4(b),
        (ETH_IPV6 | ETH_RAW, 6) => v6(b),
        (ETH_RAW, _) => Err(Reject::NotIp),
        _ => Err(Reject::BadIpVersion),
    }
}

// Always: the tunnel decoder calls this too, which must not cost plain frames
// their inlined fast path.
#[inline(always)]
fn v4(b: &[u8]) -> Result<IpView<'_>, Reject> {
    if b.len() < 20 {
        return Err(Reject::TruncatedIp);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(Reject::BadIhl);
    }
    if b.len() < ihl {
        return Err(Reject::TruncatedIp);
    }
    let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if total < ihl {
        return Err(Reject::BadIpLength);
    }
    if b[9] != PROTO_TCP {
        return Err(Reject::NotTcp);
    }
    let frag = u16::from_be_bytes([b[6], b[7]]);
    let offset = frag & 0x1fff;
    let more_fragments = frag & 0x2000 != 0;
    if offset != 0 {
        return Err(Reject::LaterFragment);
    }
    let end = total.min(b.len());
    let l4 = &b[ihl..end];
    if more_fragments && l4.len() < 20 {
        return Err(Reject::ShortFirstFragment);
    }
    Ok(IpView {
        src: IpBytes::from_v4([b[12], b[13], b[14], b[15]]),
        dst: IpBytes::from_v4([b[16], b[17], b[18], b[19]]),
        l4,
        l4_len: (total - ihl) as u32,
        ttl: b[8],
        ip_id: u16::from_be_bytes([b[4], b[5]]),
        df: frag & 0x4000 != 0,
        is_v6: false,
    })
}

// Always: the tunnel decoder calls this too, which must not cost plain frames
// their inlined fast path.
#[inline(always)]
fn v6(b: &[u8]) -> Result<IpView<'_>, Reject> {
    if b.len() < 40 {
        return Err(Reject::TruncatedIp);
    }
    let payload_len = usize::from(u16::from_be_bytes([b[4], b[5]]));
    // A payload length of 0 means a jumbogram (hop-by-hop option); take what was captured.
    let wire_end = if payload_len == 0 {
        b.len()
    } else {
        40 + payload_len
    };
    let end = wire_end.min(b.len());
    let mut next = b[6];
    let mut at = 40usize;
    let mut fragment_id = 0u16;
    for _ in 0..=MAX_V6_EXT {
        match next {
            PROTO_TCP => {
                if at > end {
                    return Err(Reject::BadIpLength);
                }
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src.copy_from_slice(&b[8..24]);
                dst.copy_from_slice(&b[24..40]);
                return Ok(IpView {
                    src: IpBytes(src),
                    dst: IpBytes(dst),
                    l4: &b[at..end],
                    l4_len: wire_end.saturating_sub(at) as u32,
                    ttl: b[7],
                    ip_id: fragment_id,
                    df: false,
                    is_v6: true,
                });
            }
            // Hop-by-hop, routing, destination options: length in 8-byte units, +1.
            0 | 43 | 60 => {
                let n = *b.get(at + 1).ok_or(Reject::TruncatedIp)?;
                next = b[at];
                at += (usize::from(n) + 1) * 8;
            }
            // Fragment header: fixed 8 bytes.
            44 => {
                let fo = be16(b, at + 2).ok_or(Reject::TruncatedIp)?;
                if fo >> 3 != 0 {
                    return Err(Reject::LaterFragment);
                }
                fragment_id = be16(b, at + 6).ok_or(Reject::TruncatedIp)?;
                next = b[at];
                at += 8;
                if fo & 1 != 0 && end.saturating_sub(at) < 20 {
                    return Err(Reject::ShortFirstFragment);
                }
            }
            // Authentication header: length in 4-byte units, +2.
            51 => {
                let n = *b.get(at + 1).ok_or(Reject::TruncatedIp)?;
                next = b[at];
                at += (usize::from(n) + 2) * 4;
            }
            _ => return Err(Reject::NotTcp),
        }
        if at > end {
            return Err(Reject::TruncatedIp);
        }
    }
    Err(Reject::BadIpv6Ext)
}

/// The transport protocol and its captured bytes (cut at the IP length) of an IP packet
/// that `parse` found not to be TCP: how the tunnel decoder reaches GRE and UDP.
/// `None` when there is no such payload to look at (a later fragment, an IPv6
/// extension header before it; a tunnel is never sent that way in practice).
pub(crate) fn payload(b: &[u8]) -> Option<(u8, &[u8])> {
    match b.first()? >> 4 {
        4 => {
            let ihl = usize::from(b[0] & 0x0f) * 4;
            let total = usize::from(be16(b, 2)?);
            let frag = be16(b, 6)?;
            if frag & 0x1fff != 0 || ihl < 20 || total < ihl {
                return None;
            }
            let end = total.min(b.len());
            Some((*b.get(9)?, b.get(ihl..end)?))
        }
        6 => {
            let len = usize::from(be16(b, 4)?);
            let end = (40 + len).min(b.len());
            Some((*b.get(6)?, b.get(40..end)?))
        }
        _ => None,
    }
}
