//! Builds Ethernet / IPv4 / IPv6 / TCP frames by hand, with correct IPv4 header and TCP
//! checksums, and the TCP options real stacks put on their segments.
//!
//! [`build`], [`Wire`] and the flag constants are public so that benchmarks and tests
//! can craft frames of their own (no TCP state: every field is the caller's).

use std::net::IpAddr;

/// TCP FIN flag.
pub const FIN: u8 = 0x01;
/// TCP SYN flag.
pub const SYN: u8 = 0x02;
/// TCP RST flag.
pub const RST: u8 = 0x04;
/// TCP PSH flag.
pub const PSH: u8 = 0x08;
/// TCP ACK flag.
pub const ACK: u8 = 0x10;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
/// Frames shorter than this are padded with zeros, as on the wire (a SPAN port delivers
/// padded frames; the padding is not TCP payload).
const MIN_FRAME: usize = 60;

/// Everything that ends up in one frame.
pub struct Wire<'a> {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IP source (v4 or v6; both ends the same family).
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (ignored for IPv6).
    pub ip_id: u16,
    /// IPv4 don't-fragment bit (ignored for IPv6).
    pub df: bool,
    /// IPv6 flow label (ignored for IPv4).
    pub flow_label: u32,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (sent as is, whatever the ACK flag).
    pub ack: u32,
    /// TCP flags ([`FIN`], [`SYN`], [`RST`], [`PSH`], [`ACK`]).
    pub flags: u8,
    /// Advertised window (unscaled).
    pub window: u16,
    /// TCP options, a multiple of 4 bytes long.
    pub options: &'a [u8],
    /// TCP payload.
    pub payload: &'a [u8],
}

impl Wire<'static> {
    /// A TCP segment with no options and no payload between locally administered MACs,
    /// TTL 64, DF set, IP ID 0 and a 65535 window; set the rest with struct update
    /// syntax (`Wire { payload: &data, ..Wire::tcp(...) }`).
    pub fn tcp(
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    ) -> Self {
        Wire {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src,
            dst,
            ttl: 64,
            ip_id: 0,
            df: true,
            flow_label: 0,
            sport,
            dport,
            seq,
            ack,
            flags,
            window: 65535,
            options: &[],
            payload: &[],
        }
    }
}

/// Damaged copies of `frame` for parser tests: cut at every length, and with each of
/// its first `first` bytes replaced by each of `values` and by itself with its lowest
/// or highest bit flipped.
pub fn damaged(frame: &[u8], first: usize, values: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..=frame.len()).map(|n| frame[..n].to_vec()).collect();
    for at in 0..frame.len().min(first) {
        let flips = [frame[at] ^ 0x01, frame[at] ^ 0x80];
        for &v in values.iter().chain(&flips) {
            let mut m = frame.to_vec();
            m[at] = v;
            out.push(m);
        }
    }
    out
}

/// Serialises `w` into a complete Ethernet frame.
pub fn build(w: &Wire<'_>) -> Vec<u8> {
    debug_assert!(w.options.len() & 3 == 0 && w.options.len() <= 40);
    let tcp_hlen = 20 + w.options.len();
    let tcp_len = tcp_hlen + w.payload.len();
    let ip_hlen = if w.src.is_ipv6() { 40 } else { 20 };
    let total = 14 + ip_hlen + tcp_len;
    let mut f = Vec::with_capacity(total.max(MIN_FRAME));
    f.extend_from_slice(&w.dst_mac);
    f.extend_from_slice(&w.src_mac);
    match (w.src, w.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&ETH_IPV4.to_be_bytes());
            let ip_start = f.len();
            f.push(0x45);
            f.push(0);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&w.ip_id.to_be_bytes());
            f.extend_from_slice(&(if w.df { 0x4000u16 } else { 0 }).to_be_bytes());
            f.push(w.ttl);
            f.push(PROTO_TCP);
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            let c = finish(sum(&f[ip_start..ip_start + 20], 0));
            f[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&ETH_IPV6.to_be_bytes());
            f.extend_from_slice(&(0x6000_0000u32 | (w.flow_label & 0x000f_ffff)).to_be_bytes());
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.push(PROTO_TCP);
            f.push(w.ttl);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed address families in one packet"),
    }
    let tcp_start = f.len();
    f.extend_from_slice(&w.sport.to_be_bytes());
    f.extend_from_slice(&w.dport.to_be_bytes());
    f.extend_from_slice(&w.seq.to_be_bytes());
    f.extend_from_slice(&w.ack.to_be_bytes());
    f.push(((tcp_hlen / 4) as u8) << 4);
    f.push(w.flags);
    f.extend_from_slice(&w.window.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(w.options);
    f.extend_from_slice(w.payload);
    let c = tcp_checksum(w.src, w.dst, &f[tcp_start..]);
    f[tcp_start + 16..tcp_start + 18].copy_from_slice(&c.to_be_bytes());
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

/// The TCP checksum over the pseudo-header and `segment`: the value to store when the
/// segment's checksum field is zero, and 0 when the segment already carries a correct one.
pub(crate) fn tcp_checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> u16 {
    let mut s = 0u64;
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s = sum(&a.octets(), s);
            s = sum(&b.octets(), s);
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            s = sum(&a.octets(), s);
            s = sum(&b.octets(), s);
        }
        _ => panic!("mixed address families in one packet"),
    }
    s += u64::from(PROTO_TCP) + segment.len() as u64;
    finish(sum(segment, s))
}

/// The one's complement sum of `b` as big-endian 16-bit words, added to `acc` (not yet
/// folded).
pub(crate) fn sum(b: &[u8], mut acc: u64) -> u64 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits and complements it.
pub(crate) fn finish(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Which stack's option layout to write on SYN and SYN-ACK segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptLayout {
    /// Linux: MSS, SACK-permitted + timestamps, NOP + window scale.
    Linux,
    /// Windows: MSS, NOP + window scale, NOP NOP SACK-permitted (no timestamps).
    Windows,
    /// A raw-socket scanner (nmap's SYN scan): MSS only.
    MssOnly,
}

/// Options of a SYN or SYN-ACK. `ts` is `(tsval, tsecr)`.
pub(crate) fn syn_options(
    layout: OptLayout,
    mss: u16,
    sack: bool,
    ts: Option<(u32, u32)>,
    wscale: Option<u8>,
) -> Vec<u8> {
    let mut o = Vec::with_capacity(20);
    o.extend_from_slice(&[2, 4]);
    o.extend_from_slice(&mss.to_be_bytes());
    match layout {
        OptLayout::MssOnly => {}
        OptLayout::Linux => {
            match (ts, sack) {
                (Some((v, e)), true) => {
                    o.extend_from_slice(&[4, 2, 8, 10]);
                    o.extend_from_slice(&v.to_be_bytes());
                    o.extend_from_slice(&e.to_be_bytes());
                }
                (Some((v, e)), false) => {
                    o.extend_from_slice(&[1, 1, 8, 10]);
                    o.extend_from_slice(&v.to_be_bytes());
                    o.extend_from_slice(&e.to_be_bytes());
                }
                (None, _) => {}
            }
            if let Some(ws) = wscale {
                o.extend_from_slice(&[1, 3, 3, ws]);
            }
            if sack && ts.is_none() {
                o.extend_from_slice(&[1, 1, 4, 2]);
            }
        }
        OptLayout::Windows => {
            if let Some(ws) = wscale {
                o.extend_from_slice(&[1, 3, 3, ws]);
            }
            if sack {
                o.extend_from_slice(&[1, 1, 4, 2]);
            }
            if let Some((v, e)) = ts {
                o.extend_from_slice(&[1, 1, 8, 10]);
                o.extend_from_slice(&v.to_be_bytes());
                o.extend_from_slice(&e.to_be_bytes());
            }
        }
    }
    o
}

/// The timestamp option of a non-SYN segment: NOP NOP TS.
pub(crate) fn ts_option(tsval: u32, tsecr: u32) -> [u8; 12] {
    let mut o = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
    o[4..8].copy_from_slice(&tsval.to_be_bytes());
    o[8..12].copy_from_slice(&tsecr.to_be_bytes());
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_rst_frame_is_padded_and_checksums_verify() {
        let w = Wire {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: "192.0.2.1".parse().unwrap(),
            dst: "203.0.113.5".parse().unwrap(),
            ttl: 64,
            ip_id: 0,
            df: true,
            flow_label: 0,
            sport: 80,
            dport: 40000,
            seq: 0,
            ack: 1001,
            flags: RST | ACK,
            window: 0,
            options: &[],
            payload: &[],
        };
        let f = build(&w);
        assert_eq!(f.len(), 60);
        // IPv4 header sums to 0xffff (checksum complement 0).
        assert_eq!(finish(sum(&f[14..34], 0)), 0);
        assert_eq!(tcp_checksum(w.src, w.dst, &f[34..54]), 0);
    }

    #[test]
    fn ipv6_frame_checksum_verifies_with_odd_payload() {
        let w = Wire {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            ttl: 64,
            ip_id: 0,
            df: false,
            flow_label: 0x12345,
            sport: 1234,
            dport: 443,
            seq: 7,
            ack: 9,
            flags: PSH | ACK,
            window: 502,
            options: &ts_option(1, 2),
            payload: b"hello",
        };
        let f = build(&w);
        assert_eq!(f.len(), 14 + 40 + 32 + 5);
        assert_eq!(tcp_checksum(w.src, w.dst, &f[54..]), 0);
    }

    #[test]
    fn syn_option_lengths_are_word_aligned() {
        for layout in [OptLayout::Linux, OptLayout::Windows, OptLayout::MssOnly] {
            for sack in [false, true] {
                for ts in [None, Some((1, 0))] {
                    for ws in [None, Some(7)] {
                        let o = syn_options(layout, 1460, sack, ts, ws);
                        assert_eq!(o.len() % 4, 0, "{layout:?} {sack} {ts:?} {ws:?}");
                        assert!(o.len() <= 40);
                    }
                }
            }
        }
        assert_eq!(
            syn_options(OptLayout::Linux, 1460, true, Some((1, 0)), Some(7)).len(),
            20
        );
    }
}
