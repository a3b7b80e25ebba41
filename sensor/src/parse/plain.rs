//! The frame nearly every packet is, read in one pass: untagged Ethernet, an IPv4
//! header without options that is not a fragment, and a TCP segment with none of SYN,
//! FIN and RST (data and acknowledgments).
//!
//! Why by hand beside the general decoder: that one hands views from layer to layer
//! (VLAN tags, tunnels, IPv6 extension headers, options of control segments, checksums)
//! and checks each length as it goes, ~210 instructions a frame by callgrind. Here the
//! link and IP fields sit at fixed offsets behind one length check, and the TCP header
//! is read by the general decoder's own `tcp::parse_into`. Anything else (tags,
//! options, fragments, control segments, damage) returns `false` and goes to the
//! general decoder; `tests::same_result_as_the_general_decoder` holds the two to the
//! same packet on valid and damaged frames.

use super::ip::IpView;
use super::{tcp, Packet, TcpFlags};
use rstwatch_schema::IpBytes;

/// Ethernet (14 bytes), IPv4 without options (20) and TCP's fixed header (20): the
/// headers of the frame this reads, and what `Engine::process_batch` prefetches.
pub(crate) const HEADERS: usize = 54;
const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;

/// Reads `frame` (link type Ethernet) into `p` if it has the plain shape above, as
/// the general decoder would; `false` (and `p` untouched) otherwise.
#[inline(always)]
pub(super) fn parse_into(frame: &[u8], p: &mut Packet) -> bool {
    let Some(h) = frame.first_chunk::<HEADERS>() else {
        return false;
    };
    // Ethertype IPv4; version 4 with a 20-byte header; protocol TCP.
    if h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 || h[23] != 6 {
        return false;
    }
    let frag = u16::from_be_bytes([h[20], h[21]]);
    // More fragments or an offset: the general decoder's rules for fragments.
    if frag & 0x3fff != 0 {
        return false;
    }
    // Control segments are the general decoder's: it reads their options and checksums.
    if TcpFlags(h[47]).is_control() {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([h[16], h[17]]));
    if total < IP_LEN {
        return false;
    }
    // The IP packet's bytes that were captured (a snap length or a short frame cuts
    // them; Ethernet padding is past `total`).
    let end = ETH_LEN + total.min(frame.len() - ETH_LEN);
    let ip = IpView {
        src: IpBytes::from_v4([h[26], h[27], h[28], h[29]]),
        dst: IpBytes::from_v4([h[30], h[31], h[32], h[33]]),
        l4: &frame[ETH_LEN + IP_LEN..end],
        l4_len: (total - IP_LEN) as u32,
        ttl: h[22],
        ip_id: u16::from_be_bytes([h[18], h[19]]),
        df: frag & 0x4000 != 0,
        is_v6: false,
    };
    // The TCP header as the general decoder reads it (a bad length is its to reject).
    if tcp::parse_into(&ip, p).is_err() {
        return false;
    }
    p.src_mac = u64::from_be_bytes([0, 0, h[6], h[7], h[8], h[9], h[10], h[11]]);
    true
}

#[cfg(test)]
mod tests {
    use super::super::{general_into, LinkType, ParseOptions};
    use super::*;
    use crate::gen::packet::{build, damaged, Wire, ACK, FIN, PSH, RST, SYN};
    use std::net::IpAddr;

    /// Frames of every kind the fast path must take or leave: v4 and v6, each flag
    /// combination, with and without TCP options and payload, Ethernet padding.
    fn frames() -> Vec<Vec<u8>> {
        let v4: (IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        );
        let v6: (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut out = vec![];
        for (a, b) in [v4, v6] {
            for flags in [
                ACK,
                ACK | PSH,
                0,
                SYN,
                SYN | ACK,
                FIN | ACK,
                RST,
                RST | ACK,
                0xff,
            ] {
                for options in [&[][..], &ts[..]] {
                    for payload in [&[][..], &[7u8; 3][..], &[9u8; 600][..]] {
                        let w = Wire {
                            options,
                            payload,
                            df: payload.len() != 3,
                            ip_id: 0x1234,
                            ..Wire::tcp(a, 40000, b, 443, flags, 0xfedc_ba98, 77)
                        };
                        let f = build(&w);
                        let mut padded = f.clone();
                        padded.extend_from_slice(&[0; 6]);
                        out.push(f);
                        out.push(padded);
                    }
                }
            }
        }
        out
    }

    fn both(frame: &[u8]) -> (Option<Packet>, Result<Packet, super::super::Reject>) {
        let mut fast = Packet::EMPTY;
        let fast = parse_into(frame, &mut fast).then_some(fast);
        let mut general = Packet::EMPTY;
        let opts = ParseOptions {
            verify_checksum: true,
            ..ParseOptions::default()
        };
        let general = general_into(LinkType::Ethernet, frame, opts, &mut general).map(|_| general);
        (fast, general)
    }

    /// Whenever the fast path takes a frame it reads what the general decoder reads:
    /// the frames above, each cut at every length and with every one of its first 70
    /// bytes replaced by values that matter to the checks.
    #[test]
    fn same_result_as_the_general_decoder() {
        let (mut taken, mut left) = (0, 0);
        for f in frames() {
            let values = [0x00, 0xff, 0x06, 0x08, 0x10, 0x20, 0x40, 0x45, 0x50, 0x60];
            for m in damaged(&f, 70, &values) {
                match both(&m) {
                    (Some(fast), general) => {
                        taken += 1;
                        assert_eq!(Ok(fast), general, "{m:02x?}");
                    }
                    (None, _) => left += 1,
                }
            }
        }
        assert!(taken > 5_000 && left > 50_000, "{taken} taken, {left} left");
    }

    /// The shapes it takes and leaves, one by one.
    #[test]
    fn takes_plain_data_and_acks_only() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "198.51.100.7".parse().unwrap();
        let data = build(&Wire {
            payload: b"hello",
            ..Wire::tcp(a, 40000, b, 443, ACK | PSH, 1, 2)
        });
        let (fast, _) = both(&data);
        let p = fast.expect("plain data segment");
        assert_eq!(
            (p.sport, p.dport, p.seq, p.ack, p.payload_len),
            (40000, 443, 1, 2, 5)
        );
        for flags in [SYN, FIN | ACK, RST | ACK] {
            let f = build(&Wire::tcp(a, 40000, b, 443, flags, 1, 2));
            assert_eq!(both(&f).0, None, "flags {flags:#x}");
        }
        let mut tagged = data[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&data[12..]);
        assert_eq!(both(&tagged).0, None, "VLAN tag");
        let mut fragment = data.clone();
        fragment[20] |= 0x20;
        assert_eq!(both(&fragment).0, None, "more fragments");
    }
}
