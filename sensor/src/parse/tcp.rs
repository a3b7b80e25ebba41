//! The TCP header and the options the tracker uses (window scale; MSS, SACK-permitted
//! and timestamps are walked over and checked for sane lengths).

use super::ip::IpView;
use super::{Packet, Reject};

/// TCP header flags (the low 8 bits of the flags field).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers (opens a connection).
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push buffered data to the application.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is significant.
    pub const URG: u8 = 0x20;

    /// FIN is set.
    #[inline]
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// SYN is set.
    #[inline]
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// RST is set.
    #[inline]
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// ACK is set.
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

// Always: the tunnel decoder calls this too, which must not cost plain frames
// their inlined fast path.
#[inline(always)]
pub(crate) fn parse_into(ip: &IpView<'_>, p: &mut Packet) -> Result<(), Reject> {
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
    // Options are walked on SYN and RST segments only: MSS, window scale and
    // SACK-permitted mean something only on a SYN (RFC 7323 §2.2, RFC 2018), and the
    // tracker uses nothing from the timestamps of data segments, which would cost a
    // walk on every packet of a bulk transfer.
    let opts = if hlen > 20 && (flags.syn() || flags.rst()) {
        let mut o = options(&t[20..hlen]);
        if !flags.syn() {
            o.wscale = None;
        }
        o
    } else {
        TcpOptions::default()
    };
    *p = Packet {
        src: ip.src,
        dst: ip.dst,
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        vlan: 0,
        inner_vlan: 0,
        src_mac: 0,
        encap: rstwatch_schema::Encap::None,
        tunnel_id: 0,
        tunnel_of: rstwatch_schema::Encap::None,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        flags,
        window: u16::from_be_bytes([t[14], t[15]]),
        opts,
        payload_len: ip.l4_len - hlen as u32,
        ttl: ip.ttl,
        ip_id: ip.ip_id,
        df: ip.df,
        is_v6: ip.is_v6,
        bad_checksum: false,
    };
    Ok(())
}

/// The TCP options the sensor reads (RFC 9293 MSS, RFC 7323 window scale and
/// timestamps, RFC 2018 SACK-permitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN segments only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN segments only; capped at 14 as RFC 7323 §2.3 says).
    pub wscale: Option<u8>,
    /// SACK-permitted was offered (SYN segments only).
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// The option list was cut short or had an impossible length; the walk stopped
    /// there, as a receiver's would.
    pub malformed: bool,
}

const OPT_MSS: u8 = 2;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_TIMESTAMPS: u8 = 8;

/// Walks the option list. Options of the wrong length are ignored (a receiver would
/// not act on them either); a length that runs past the header ends the walk.
// Out of line: SYNs and RSTs only, and the hot path stays small (the compiler chose
// this itself while `parse` had one caller).
#[inline(never)]
fn options(mut o: &[u8]) -> TcpOptions {
    let mut out = TcpOptions::default();
    while let Some(&kind) = o.first() {
        match kind {
            OPT_END => break,
            OPT_NOP => o = &o[1..],
            _ => {
                let Some(len) = o.get(1).map(|&l| usize::from(l)) else {
                    out.malformed = true;
                    break;
                };
                if len < 2 || len > o.len() {
                    out.malformed = true;
                    break;
                }
                let body = &o[2..len];
                match (kind, body.len()) {
                    (OPT_MSS, 2) => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                    (OPT_WSCALE, 1) => out.wscale = Some(body[0].min(14)),
                    (OPT_SACK_PERMITTED, 0) => out.sack_permitted = true,
                    (OPT_TIMESTAMPS, 8) => {
                        let v = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                        let e = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                        out.timestamps = Some((v, e));
                    }
                    _ => {}
                }
                o = &o[len..];
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_syn_options() {
        // Linux SYN: MSS, SACK-permitted, timestamps, NOP, window scale.
        let o = options(&[
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((256, 0)));
        assert_eq!(o.wscale, Some(7));
        assert!(!o.malformed);
    }

    #[test]
    fn caps_the_window_scale_and_stops_at_bad_lengths() {
        assert_eq!(options(&[3, 3, 30]).wscale, Some(14));
        let o = options(&[2, 4, 5, 0xb4, 8, 40, 0, 0]);
        assert_eq!(o.mss, Some(1460));
        assert!(o.malformed && o.timestamps.is_none());
        assert!(options(&[2]).malformed);
        assert!(options(&[2, 1]).malformed);
        // Wrong length for the kind: ignored, not malformed.
        let o = options(&[2, 3, 5, 1, 1]);
        assert_eq!(o.mss, None);
        assert!(!o.malformed);
        // End of list stops the walk.
        assert_eq!(options(&[0, 2, 4, 5, 0xb4]).mss, None);
    }
}
