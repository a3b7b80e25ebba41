//! Wraps generated frames the way a remote mirror delivers them (`gen --encap`): the
//! same scenario as seen by a sensor fed over ERSPAN, GRE, VXLAN or Geneve, or on a
//! carrier link with MPLS or PPPoE. `replay` of the wrapped capture must give the same
//! records as the plain one (apart from `encap` and `tunnel_id`).
//!
//! Tunnels (GRE, ERSPAN, VXLAN, Geneve) carry the whole mirrored Ethernet frame from
//! the mirror source 192.0.2.250 to the sensor 192.0.2.251 in IPv4; MPLS and PPPoE
//! replace the frame's ethertype and put their header in front of its IP packet. Every
//! optional part the decoder must skip is present: the GRE sequence number, ERSPAN III's
//! platform sub-header, a Geneve option, a two-label MPLS stack.

use super::packet::{finish, sum};
use super::Frame;
use rstwatch_schema::Encap;

/// VXLAN and Geneve VNI of wrapped captures.
pub const GEN_VNI: u32 = 4242;
/// ERSPAN session ID of wrapped captures (10 bits).
pub const GEN_ERSPAN_SESSION: u16 = 42;

const MIRROR_SRC: [u8; 4] = [192, 0, 2, 250];
const SENSOR: [u8; 4] = [192, 0, 2, 251];
const OUTER_SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 1];
const OUTER_DST_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 2];
const MIN_FRAME: usize = 60;

/// Wraps every frame in `encap` (`Encap::None` leaves them as they are).
pub fn wrap_frames(frames: &mut [Frame], encap: Encap) {
    for (i, f) in frames.iter_mut().enumerate() {
        f.data = wrap(&f.data, encap, i as u32);
    }
}

/// One Ethernet frame wrapped in `encap`; `seq` is its number (GRE sequence field).
/// The tunnel identity is [`GEN_VNI`] or [`GEN_ERSPAN_SESSION`].
pub fn wrap(frame: &[u8], encap: Encap, seq: u32) -> Vec<u8> {
    let id = match encap {
        Encap::Erspan2 | Encap::Erspan3 => u32::from(GEN_ERSPAN_SESSION),
        _ => GEN_VNI,
    };
    wrap_with_id(frame, encap, seq, id)
}

/// [`wrap`] with tunnel identity `id` (a VNI, 24 bits, or an ERSPAN session, 10 bits;
/// ignored by the encapsulations that have none).
pub fn wrap_with_id(frame: &[u8], encap: Encap, seq: u32, id: u32) -> Vec<u8> {
    match encap {
        Encap::None => frame.to_vec(),
        Encap::Gre => gre(frame, 0x6558, 0, &[]),
        Encap::Erspan1 => gre(frame, 0x88be, 0, &[]),
        Encap::Erspan2 => gre(frame, 0x88be, seq, &erspan2_header(id as u16)),
        Encap::Erspan3 => gre(frame, 0x22eb, seq, &erspan3_header(id as u16, seq)),
        Encap::Vxlan => udp(frame, 4789, &vxlan_header(id)),
        Encap::Geneve => udp(frame, 6081, &geneve_header(id)),
        Encap::Mpls => relink(frame, 0x8847, |_| {
            // Label 16 (not bottom), label 17 (bottom of stack), TTL 64 each.
            vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x11, 0x40]
        }),
        Encap::Pppoe => relink(frame, 0x8864, |ip| {
            let ppp = if ip.first().is_some_and(|b| b >> 4 == 6) {
                0x0057u16
            } else {
                0x0021
            };
            let mut h = vec![0x11, 0x00, 0x00, 0x01];
            h.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
            h.extend_from_slice(&ppp.to_be_bytes());
            h
        }),
    }
}

/// GRE around a whole Ethernet frame; a sequence number (and the S bit) when
/// `erspan` is not empty (ERSPAN II and III have one, type I and plain GRE do not).
fn gre(frame: &[u8], proto: u16, seq: u32, erspan: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(16 + frame.len());
    let flags: u16 = if erspan.is_empty() { 0 } else { 0x1000 };
    inner.extend_from_slice(&flags.to_be_bytes());
    inner.extend_from_slice(&proto.to_be_bytes());
    if !erspan.is_empty() {
        inner.extend_from_slice(&seq.to_be_bytes());
        inner.extend_from_slice(erspan);
    }
    inner.extend_from_slice(frame);
    outer_ipv4(47, &inner)
}

/// ERSPAN II: version 1, VLAN 0, CoS 0, En 0, T 0, session, index 0.
fn erspan2_header(session: u16) -> [u8; 8] {
    let s = session.to_be_bytes();
    [0x10, 0x00, s[0] & 0x03, s[1], 0, 0, 0, 0]
}

/// ERSPAN III: version 2, session, a timestamp, frame type 0 (Ethernet), hardware ID
/// 1, O set with an 8-byte platform sub-header (platform ID 3, all zero otherwise).
fn erspan3_header(session: u16, ts: u32) -> [u8; 20] {
    let s = session.to_be_bytes();
    let t = ts.to_be_bytes();
    let mut h = [0u8; 20];
    h[..12].copy_from_slice(&[
        0x20,
        0x00,
        s[0] & 0x03,
        s[1],
        t[0],
        t[1],
        t[2],
        t[3],
        0,
        0,
        0x00,
        0x11,
    ]);
    h[12] = 3 << 2;
    h
}

fn vxlan_header(vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// Geneve with one 8-byte option (class 0x0108, type 1, 4 bytes of data).
fn geneve_header(vni: u32) -> [u8; 16] {
    let v = vni.to_be_bytes();
    [
        0x02, 0x00, 0x65, 0x58, v[1], v[2], v[3], 0, 0x01, 0x08, 0x01, 0x01, 0xde, 0xad, 0xbe, 0xef,
    ]
}

/// UDP (checksum 0, allowed over IPv4) to `dport` around `header` and the frame.
fn udp(frame: &[u8], dport: u16, header: &[u8]) -> Vec<u8> {
    let len = 8 + header.len() + frame.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&49152u16.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(header);
    u.extend_from_slice(frame);
    outer_ipv4(17, &u)
}

/// An Ethernet frame from the mirror source to the sensor with IPv4 around `payload`.
fn outer_ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + payload.len());
    f.extend_from_slice(&OUTER_DST_MAC);
    f.extend_from_slice(&OUTER_SRC_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&MIRROR_SRC);
    ip[16..20].copy_from_slice(&SENSOR);
    let c = finish(sum(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}

/// The same frame with `ethertype` and `header(ip)` between its link header (MACs and
/// VLAN tags) and its IP packet (trimmed of Ethernet padding). A frame that is not
/// Ethernet with IP is returned as it is.
fn relink(frame: &[u8], ethertype: u16, header: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let mut at = 12;
    while matches!(be16(at), Some(0x8100 | 0x88a8 | 0x9100)) {
        at += 4;
    }
    let Some(ip) = frame.get(at + 2..).filter(|ip| ip.len() >= 20) else {
        return frame.to_vec();
    };
    let ip_len = match ip[0] >> 4 {
        6 => 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])),
        4 => usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        _ => return frame.to_vec(),
    };
    let ip = &ip[..ip_len.min(ip.len())];
    let mut f = frame[..at].to_vec();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&header(ip));
    f.extend_from_slice(ip);
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::{build, Wire};
    use crate::parse::{parse, LinkType, ParseOptions};

    fn plain() -> Vec<u8> {
        let a = "192.0.2.1".parse().unwrap();
        let b = "203.0.113.1".parse().unwrap();
        build(&Wire {
            payload: b"hello",
            ..Wire::tcp(a, 40000, b, 443, 0x18, 1000, 2000)
        })
    }

    #[test]
    fn short_or_foreign_frames_are_wrapped_without_panicking() {
        for f in [vec![], vec![0u8; 13], vec![0u8; 40]] {
            for &e in Encap::ALL {
                let _ = wrap(&f, e, 1);
            }
        }
    }

    #[test]
    fn every_wrapping_parses_back_to_the_same_segment() {
        let opts = ParseOptions {
            verify_checksum: true,
            ..ParseOptions::default()
        };
        let want = parse(LinkType::Ethernet, &plain(), opts).unwrap();
        for &e in Encap::ALL {
            let got = parse(LinkType::Ethernet, &wrap(&plain(), e, 9), opts)
                .unwrap_or_else(|r| panic!("{e:?}: {r:?}"));
            assert_eq!(got.encap, e, "{e:?}");
            let id = match e {
                Encap::Vxlan | Encap::Geneve => GEN_VNI,
                Encap::Erspan2 | Encap::Erspan3 => u32::from(GEN_ERSPAN_SESSION),
                _ => 0,
            };
            assert_eq!(got.tunnel_id, id, "{e:?}");
            assert_eq!(
                (
                    got.src,
                    got.dst,
                    got.sport,
                    got.dport,
                    got.seq,
                    got.payload_len
                ),
                (
                    want.src,
                    want.dst,
                    want.sport,
                    want.dport,
                    want.seq,
                    want.payload_len
                ),
                "{e:?}"
            );
            assert!(!got.bad_checksum, "{e:?}");
            // The mirrored frame's MAC, except where none is carried.
            assert_eq!(got.src_mac, want.src_mac, "{e:?}");
        }
    }
}
