//! The TCP header and the options the tracker uses (window scale; MSS, SACK-permitted
//! and timestamps are walked over and checked for sane lengths).

use super::ip::IpView;
use super::{Packet, Reject};

/// TCP header flags (the low 8 bits of the flags field).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;

    #[inline]
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    #[inline]
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    /// SYN, FIN or RST: a segment that changes connection state.
    #[inline]
    pub fn is_control(self) -> bool {
        self.0 & (Self::SYN | Self::FIN | Self::RST) != 0
    }
}

impl std::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [(u8, char); 6] = [
            (TcpFlags::SYN, 'S'),
            (TcpFlags::ACK, 'A'),
            (TcpFlags::FIN, 'F'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::URG, 'U'),
        ];
        for (bit, c) in NAMES {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_WSCALE: u8 = 3;

#[inline]
pub(crate) fn parse(ip: &IpView<'_>) -> Result<Packet, Reject> {
    let t = ip.l4;
    if t.len() < 20 {
        return Err(if ip.l4_len < 20 {
            Reject::BadIpLength
        } else {
            Reject::TruncatedTcp
        });
    }
    let hlen = usize::from(t[12] >> 4) * 4;
    if hlen < 20 || hlen as u32 > ip.l4_len {
        return Err(Reject::BadTcpOffset);
    }
    if t.len() < hlen {
        return Err(Reject::TruncatedTcp);
    }
    let flags = TcpFlags(t[13]);
    let wscale = if flags.syn() && hlen > 20 {
        window_scale(&t[20..hlen])
    } else {
        None
    };
    Ok(Packet {
        src: ip.src,
        dst: ip.dst,
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        vlan: 0,
        inner_vlan: 0,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        flags,
        window: u16::from_be_bytes([t[14], t[15]]),
        wscale,
        payload_len: ip.l4_len - hlen as u32,
        ttl: ip.ttl,
        ip_id: ip.ip_id,
        df: ip.df,
        is_v6: ip.is_v6,
        bad_checksum: false,
    })
}

/// Walks the options for window scale. A malformed option list ends the walk: the
/// option is then treated as absent (RFC 7323: no scaling), as a receiver would.
#[inline]
fn window_scale(mut o: &[u8]) -> Option<u8> {
    while let Some(&kind) = o.first() {
        match kind {
            OPT_END => return None,
            OPT_NOP => o = &o[1..],
            _ => {
                let len = usize::from(*o.get(1)?);
                if len < 2 || len > o.len() {
                    return None;
                }
                if kind == OPT_WSCALE && len == 3 {
                    // RFC 7323 §2.3: shifts above 14 are used as 14.
                    return Some(o[2].min(14));
                }
                o = &o[len..];
            }
        }
    }
    None
}

/// Verifies the TCP checksum over the pseudo-header and the captured segment. A
/// segment cut short by the snap length cannot be verified and counts as fine.
pub(crate) fn checksum_ok(ip: &IpView<'_>) -> bool {
    if (ip.l4.len() as u32) < ip.l4_len {
        return true;
    }
    let mut sum: u64 = 0;
    let (src, dst): (&[u8], &[u8]) = if ip.is_v6 {
        (&ip.src.0, &ip.dst.0)
    } else {
        (&ip.src.0[12..], &ip.dst.0[12..])
    };
    sum += ones_sum(src) + ones_sum(dst);
    sum += 6 + u64::from(ip.l4_len);
    sum += ones_sum(ip.l4);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

fn ones_sum(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u64::from(*last) << 8;
    }
    s
}
