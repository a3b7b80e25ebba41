//! The reader's choice of worker: the symmetric flow hash of live fan-out
//! ([`fanout_hash_with`]), read for plain TCP frames from the Ethernet, VLAN, IP and
//! TCP headers alone. The engine parses every frame in full anyway; the reader, the
//! one thread all frames pass through, should not do it a second time.
//!
//! The key is built by the same code as fan-out's ([`FlowKey::between`], which
//! [`FlowKey::of`] calls on a parsed packet), hashed by the same
//! [`hash_key`](crate::flow::hash_key): a frame the full parse reads gets the same
//! value.
//! Anything else (tunnels, MPLS, PPPoE, IPv6 extension headers, fragments, more than
//! two VLAN tags, other link types) goes through the full parse as before. A frame
//! read here that the full parse would reject still reaches some engine, which counts
//! why: only frames of one flow have to meet, and a rejected frame is in no flow.

use crate::engine::fanout_hash_with;
use crate::flow::{FlowKey, KeyHasher};
use crate::parse::{be16, LinkType, ParseOptions};
use rstwatch_schema::IpBytes;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;

/// The flow hash of frames, for the reader.
pub(super) struct FlowHash {
    opts: ParseOptions,
    /// [`hash_key`](crate::flow::hash_key)'s hasher, looked up once for every frame.
    hasher: KeyHasher,
}

impl FlowHash {
    pub(super) fn new(opts: ParseOptions) -> FlowHash {
        FlowHash {
            opts,
            hasher: KeyHasher::get(),
        }
    }

    /// The fan-out hash of `frame`, `None` when it is not TCP (or not parseable).
    #[inline]
    pub(super) fn of(&self, link: LinkType, frame: &[u8]) -> Option<u64> {
        if link == LinkType::Ethernet {
            if let Some((src, dst, vlans)) = plain_tcp(frame) {
                return Some(self.hasher.hash(&FlowKey::between(src, dst, vlans).0));
            }
        }
        fanout_hash_with(link, frame, self.opts)
    }
}

/// One end of a segment: address and port.
type Endpoint = (IpBytes, u16);

/// Source, destination and VLAN ids (outer, inner) of a plain TCP segment in an
/// Ethernet frame with at most two VLAN tags; `None` for any other frame.
#[inline]
fn plain_tcp(f: &[u8]) -> Option<(Endpoint, Endpoint, (u16, u16))> {
    let mut et = be16(f, 12)?;
    let mut at = 14;
    let mut tags = [0u16; 2];
    for tag in &mut tags {
        if !is_vlan(et) {
            break;
        }
        *tag = be16(f, at)? & 0x0fff;
        et = be16(f, at + 2)?;
        at += 4;
    }
    if is_vlan(et) {
        return None;
    }
    let ip = f.get(at..)?;
    let (src, dst, l4) = match et {
        ETH_IPV4 => v4(ip)?,
        ETH_IPV6 => v6(ip)?,
        _ => return None,
    };
    Some(((src, be16(l4, 0)?), (dst, be16(l4, 2)?), (tags[0], tags[1])))
}

/// 802.1Q, 802.1ad and the old QinQ tag types (as the parser's VLAN chain).
#[inline]
fn is_vlan(et: u16) -> bool {
    matches!(et, 0x8100 | 0x88a8 | 0x9100)
}

/// Addresses and TCP bytes of an unfragmented (or first-fragment) IPv4 TCP packet.
#[inline]
fn v4(b: &[u8]) -> Option<(IpBytes, IpBytes, &[u8])> {
    if b.len() < 20 || b[0] >> 4 != 4 || b[9] != PROTO_TCP {
        return None;
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(be16(b, 2)?);
    if ihl < 20 || total < ihl || be16(b, 6)? & 0x1fff != 0 {
        return None;
    }
    Some((
        IpBytes::from_v4([b[12], b[13], b[14], b[15]]),
        IpBytes::from_v4([b[16], b[17], b[18], b[19]]),
        b.get(ihl..)?,
    ))
}

/// Addresses and TCP bytes of an IPv6 packet whose first next header is TCP.
#[inline]
fn v6(b: &[u8]) -> Option<(IpBytes, IpBytes, &[u8])> {
    if b.len() < 40 || b[0] >> 4 != 6 || b[6] != PROTO_TCP {
        return None;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&b[8..24]);
    dst.copy_from_slice(&b[24..40]);
    Some((IpBytes(src), IpBytes(dst), &b[40..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fanout_index;
    use crate::gen::encap::wrap;
    use crate::gen::packet::{build, damaged, Wire, ACK, PSH, SYN};
    use rstwatch_schema::Encap;
    use std::net::IpAddr;

    const ETH: LinkType = LinkType::Ethernet;
    /// Every encapsulation `gen --encap` can wrap a frame in.
    fn tunnels() -> impl Iterator<Item = Encap> {
        Encap::ALL.iter().copied().filter(|&e| e != Encap::None)
    }

    fn opts() -> ParseOptions {
        ParseOptions {
            verify_checksum: false,
            tunnel_ports: crate::config::EngineConfig::default()
                .encap
                .ports()
                .unwrap_or_default(),
        }
    }

    /// Both directions of a v4 and a v6 connection: a SYN and a data segment.
    fn segments() -> Vec<(Vec<u8>, Vec<u8>)> {
        let pairs: [(IpAddr, IpAddr); 2] = [
            (
                "192.0.2.1".parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
            ),
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2:7".parse().unwrap(),
            ),
        ];
        let mut out = vec![];
        for (a, b) in pairs {
            for (flags, payload) in [(SYN, &[][..]), (ACK | PSH, &[7u8; 100][..])] {
                let fwd = build(&Wire {
                    payload,
                    ..Wire::tcp(a, 40000, b, 443, flags, 1, 0)
                });
                let rev = build(&Wire {
                    payload,
                    ..Wire::tcp(b, 443, a, 40000, flags | ACK, 9, 2)
                });
                out.push((fwd, rev));
            }
        }
        out
    }

    /// `f` with VLAN tags (tag type, id) inserted after the MAC addresses.
    fn tagged(f: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
        let mut t = f[..12].to_vec();
        for &(tpid, id) in tags {
            t.extend_from_slice(&tpid.to_be_bytes());
            t.extend_from_slice(&id.to_be_bytes());
        }
        t.extend_from_slice(&f[12..]);
        t
    }

    /// An IPv4 frame with 8 bytes of options (NOPs) in its IP header.
    fn with_ip_options(f: &[u8]) -> Vec<u8> {
        let mut t = f[..34].to_vec();
        t.extend_from_slice(&[1u8; 8]);
        t.extend_from_slice(&f[34..]);
        t[14] = 0x47;
        let total = u16::from_be_bytes([t[16], t[17]]) + 8;
        t[16..18].copy_from_slice(&total.to_be_bytes());
        t
    }

    /// An IPv6 frame with a hop-by-hop header before TCP.
    fn with_v6_extension(f: &[u8]) -> Vec<u8> {
        let mut t = f[..54].to_vec();
        t.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        t.extend_from_slice(&f[54..]);
        t[20] = 0;
        let len = u16::from_be_bytes([t[18], t[19]]) + 8;
        t[18..20].copy_from_slice(&len.to_be_bytes());
        t
    }

    /// `f` (IPv4) with its flags and fragment offset field set to `v`.
    fn fragment(f: &[u8], v: u16) -> Vec<u8> {
        let mut t = f.to_vec();
        t[20..22].copy_from_slice(&v.to_be_bytes());
        t
    }

    fn is_v4(f: &[u8]) -> bool {
        f[12..14] == [0x08, 0x00]
    }

    /// Every form of a segment the reader sees: (frame, read from the headers alone).
    fn forms(f: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let mut out = vec![
            (f.to_vec(), true),
            (tagged(f, &[(0x8100, 10)]), true),
            (tagged(f, &[(0x88a8, 20), (0x8100, 0x3005)]), true),
            (tagged(f, &[(0x9100, 30), (0x8100, 31)]), true),
            (tagged(f, &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)]), false),
        ];
        if is_v4(f) {
            out.push((with_ip_options(f), true));
            // More fragments: the first fragment still has the ports.
            out.push((fragment(f, 0x2000), true));
            out.push((fragment(f, 0x2010), false));
        } else {
            out.push((with_v6_extension(f), false));
        }
        for encap in tunnels() {
            out.push((wrap(f, encap, 1), false));
        }
        out
    }

    /// Every form gets the fan-out hash; plain ones are read from the headers, the
    /// others by the full parse; both directions meet.
    #[test]
    fn the_reader_hash_is_the_fanout_hash() {
        let h = FlowHash::new(opts());
        for (fwd, rev) in segments() {
            let (fwd_forms, rev_forms) = (forms(&fwd), forms(&rev));
            for ((f, fast), (r, _)) in fwd_forms.iter().zip(&rev_forms) {
                let full = fanout_hash_with(ETH, f, opts());
                let ours = h.of(ETH, f);
                // Later fragments have no ports: not TCP to fan-out either.
                assert_eq!(ours, full, "{f:02x?}");
                assert_eq!(plain_tcp(f).is_some(), *fast, "{f:02x?}");
                assert_eq!(h.of(ETH, r), ours, "reverse of {f:02x?}");
            }
        }
    }

    /// The workers' shares of many flows, by [`fanout_index`] of their key hash, are
    /// even (within 5 % of 1/n for 240,000 flows, where chance alone strays under 1 %
    /// at one standard deviation), and every index is a worker's.
    #[test]
    fn fanout_index_spreads_flows_evenly() {
        let hasher = KeyHasher::get();
        let client = IpBytes::from_v4([192, 0, 2, 1]);
        let hashes: Vec<u64> = (0..240_000u32)
            .map(|i| {
                let server = IpBytes::from_v4([198, 51, 100, (i % 200) as u8]);
                let port = 1024 + (i / 200) as u16;
                hasher.hash(&FlowKey::between((client, port), (server, 443), (0, 0)).0)
            })
            .collect();
        for n in [1usize, 2, 3, 4, 7, 16] {
            let mut shares = vec![0usize; n];
            for &x in &hashes {
                shares[fanout_index(x, n)] += 1;
            }
            let even = hashes.len() as f64 / n as f64;
            for (w, &c) in shares.iter().enumerate() {
                let off = (c as f64 - even).abs() / even;
                assert!(
                    off < 0.05,
                    "{n} workers: worker {w} has {c} flows, {even:.0} even"
                );
            }
        }
    }

    /// Tunnelled frames are keyed by their inner flow, as live fan-out keys them.
    #[test]
    fn tunnelled_flows_meet_their_plain_form() {
        let h = FlowHash::new(opts());
        for (fwd, _) in segments() {
            let plain = h.of(ETH, &fwd).expect("TCP");
            for encap in tunnels() {
                let f = wrap(&fwd, encap, 1);
                assert_eq!(h.of(ETH, &f), Some(plain), "{encap:?}");
            }
        }
    }

    /// Cut short or with any header byte changed: whenever the parser reads a frame,
    /// the reader's hash is fan-out's.
    #[test]
    fn damaged_frames_hash_as_fanout_whenever_parsed() {
        let h = FlowHash::new(opts());
        let (mut parsed, mut fast) = (0, 0);
        for (fwd, _) in segments() {
            for (f, _) in forms(&fwd).into_iter().take(8) {
                let values = [0x00, 0xff, 0x06, 0x08, 0x45, 0x46, 0x60, 0x81, 0x86];
                for m in damaged(&f, 90, &values) {
                    let full = fanout_hash_with(ETH, &m, opts());
                    if full.is_some() {
                        parsed += 1;
                        fast += usize::from(plain_tcp(&m).is_some());
                        assert_eq!(h.of(ETH, &m), full, "{m:02x?}");
                    }
                }
            }
        }
        assert!(
            parsed > 10_000 && fast > 5_000,
            "{parsed} parsed, {fast} fast"
        );
    }
}
