//! Remote-mirroring and carrier encapsulations, peeled down to the mirrored frame
//! (issue 11): ERSPAN I/II/III and GRE, VXLAN and Geneve over UDP, MPLS label stacks,
//! PPPoE sessions, with VLAN tags inside and outside.
//!
//! Off the fast path: [`super::parse`] tries plain IP/TCP first and comes here only when
//! that fails (an MPLS or PPPoE ethertype, or IP carrying something other than TCP), so
//! plain Ethernet pays nothing but one more arm in the ethertype match.
//!
//! Each step removes one encapsulation and hands on a network layer ([`L3`]): its
//! ethertype, bytes, VLAN tags and source MAC. Those of the mirrored frame win: an inner
//! Ethernet header (VXLAN, ERSPAN, an Ethernet pseudowire) brings its own; IP carried
//! straight in GRE/Geneve/ERSPAN has none (0: the outer header belongs to the tunnel
//! endpoints, not to the mirrored hosts); MPLS and PPPoE are the mirrored frame itself,
//! so their own link header stays. At most [`MAX_TUNNEL_DEPTH`] encapsulations are
//! peeled (AWS GWLB: Geneve around VXLAN is two), and at most [`MAX_MPLS_LABELS`] MPLS
//! labels; deeper is counted as `tunnel_too_deep`.
//!
//! References: GRE RFC 2784/2890; ERSPAN draft-foschiano-erspan-03 (type I, II, III);
//! VXLAN RFC 7348; Geneve RFC 8926; MPLS RFC 3032, Ethernet pseudowire RFC 4448 (control
//! word); PPPoE RFC 2516.

use super::ip::{self, IpView};
use super::link::{
    self, LinkType, ETH_IPV4, ETH_IPV6, ETH_MPLS_MC, ETH_MPLS_UC, ETH_PPPOE_SESSION, ETH_RAW, L3,
};
use super::{be16, ParseOptions, Reject};
use rstwatch_schema::Encap;

/// Encapsulations peeled from one frame at most (each GRE, ERSPAN, UDP tunnel, MPLS
/// stack or PPPoE session counts one).
pub const MAX_TUNNEL_DEPTH: usize = 4;
/// Labels in one MPLS stack at most (carrier stacks are 2-4 deep).
pub const MAX_MPLS_LABELS: usize = 8;

const PROTO_GRE: u8 = 47;
const PROTO_UDP: u8 = 17;
const GRE_ETH_BRIDGING: u16 = 0x6558;
const GRE_ERSPAN_1_2: u16 = 0x88be;
const GRE_ERSPAN_3: u16 = 0x22eb;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// UDP destination ports of VXLAN and Geneve (up to four each; 0 = unused slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelPorts {
    /// VXLAN ports.
    pub vxlan: [u16; 4],
    /// Geneve ports.
    pub geneve: [u16; 4],
}

impl Default for TunnelPorts {
    /// The IANA ports: VXLAN 4789 (AWS Traffic Mirroring), Geneve 6081 (AWS GWLB).
    fn default() -> Self {
        TunnelPorts {
            vxlan: [4789, 0, 0, 0],
            geneve: [6081, 0, 0, 0],
        }
    }
}

impl TunnelPorts {
    /// Ports from lists; more than four of a kind, or port 0, is an error.
    pub fn from_lists(vxlan: &[u16], geneve: &[u16]) -> Result<TunnelPorts, String> {
        fn slots(name: &str, l: &[u16]) -> Result<[u16; 4], String> {
            if l.len() > 4 || l.contains(&0) {
                return Err(format!("{name}: at most 4 ports, each 1 to 65535"));
            }
            let mut a = [0u16; 4];
            a[..l.len()].copy_from_slice(l);
            Ok(a)
        }
        Ok(TunnelPorts {
            vxlan: slots("vxlan_ports", vxlan)?,
            geneve: slots("geneve_ports", geneve)?,
        })
    }
}

/// What was peeled to reach the mirrored frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tunnel {
    /// The innermost encapsulation.
    pub encap: Encap,
    /// The identity (VNI, ERSPAN session) of the innermost layer that has one.
    pub id: u32,
    /// Which encapsulation `id` belongs to (`Encap::None`: no identity).
    pub id_of: Encap,
}

/// One encapsulation removed: the network layer inside it.
struct Peeled<'a> {
    l3: L3<'a>,
    encap: Encap,
    /// The layer's identity, if it has one.
    id: Option<u32>,
}

/// Called when `l3` did not parse as IP/TCP (`first` says why): peels encapsulations
/// until a TCP segment, or returns the rejection that applies.
#[inline]
pub(crate) fn parse_beyond<'a>(
    mut l3: L3<'a>,
    first: Reject,
    opts: &ParseOptions,
) -> Result<(IpView<'a>, L3<'a>, Tunnel), Reject> {
    let mut why = first;
    let mut t = Tunnel::default();
    let mut depth = 0;
    loop {
        let Some(next) = peel(&l3, why, opts)? else {
            return Err(why);
        };
        depth += 1;
        if depth > MAX_TUNNEL_DEPTH {
            return Err(Reject::TunnelTooDeep);
        }
        t.encap = next.encap;
        if let Some(id) = next.id {
            t.id = id;
            t.id_of = next.encap;
        }
        l3 = next.l3;
        match ip::parse(l3.ethertype, l3.bytes) {
            Ok(ip) => return Ok((ip, l3, t)),
            Err(r) => why = r,
        }
    }
}

/// Removes the encapsulation `l3` is, if it is one (`why`: its IP parse's rejection).
#[inline]
fn peel<'a>(l3: &L3<'a>, why: Reject, opts: &ParseOptions) -> Result<Option<Peeled<'a>>, Reject> {
    match l3.ethertype {
        ETH_MPLS_UC | ETH_MPLS_MC => mpls(l3).map(Some),
        ETH_PPPOE_SESSION => pppoe(l3).map(Some),
        ETH_IPV4 | ETH_IPV6 | ETH_RAW if why == Reject::NotTcp => match ip::payload(l3.bytes) {
            Some((PROTO_GRE, b)) => gre(b).map(Some),
            Some((PROTO_UDP, b)) => udp(b, opts),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// The Ethernet frame at `b` (a mirrored frame inside a tunnel).
fn ethernet(b: &[u8], encap: Encap, id: Option<u32>) -> Result<Peeled<'_>, Reject> {
    let l3 = link::strip(LinkType::Ethernet, b).map_err(|r| match r {
        Reject::TruncatedLink => Reject::TruncatedTunnel,
        r => r,
    })?;
    Ok(Peeled { l3, encap, id })
}

/// A network layer carried without a link header (IP in GRE, in Geneve, in ERSPAN III).
fn bare(ethertype: u16, b: &[u8], encap: Encap, id: Option<u32>) -> Peeled<'_> {
    Peeled {
        l3: L3::bare(ethertype, b),
        encap,
        id,
    }
}

/// GRE (RFC 2784/2890): optional checksum, key and sequence words, then by protocol:
/// Ethernet, IP, MPLS, or ERSPAN.
fn gre(b: &[u8]) -> Result<Peeled<'_>, Reject> {
    let flags = be16(b, 0).ok_or(Reject::TruncatedTunnel)?;
    let proto = be16(b, 2).ok_or(Reject::TruncatedTunnel)?;
    // Version 0 only (1 is PPTP's enhanced GRE); the routing bit is obsolete (RFC 2784).
    if flags & 0x0007 != 0 || flags & 0x4000 != 0 {
        return Err(Reject::BadTunnelHeader);
    }
    let has_seq = flags & 0x1000 != 0;
    let words = [0x8000u16, 0x2000, 0x1000]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count();
    let rest = b.get(4 + 4 * words..).ok_or(Reject::TruncatedTunnel)?;
    match proto {
        GRE_ETH_BRIDGING => ethernet(rest, Encap::Gre, None),
        ETH_IPV4 | ETH_IPV6 | ETH_MPLS_UC | ETH_MPLS_MC => Ok(bare(proto, rest, Encap::Gre, None)),
        // Type I has no sequence number and no ERSPAN header; type II has both.
        GRE_ERSPAN_1_2 if !has_seq => ethernet(rest, Encap::Erspan1, None),
        GRE_ERSPAN_1_2 => erspan2(rest),
        GRE_ERSPAN_3 => erspan3(rest),
        _ => Err(Reject::UnknownGreProtocol),
    }
}

/// The 10-bit ERSPAN session ID (bytes 2-3 of the type II and III headers).
fn erspan_session(b: &[u8]) -> u32 {
    u32::from(u16::from_be_bytes([b[2], b[3]]) & 0x03ff)
}

/// ERSPAN type II: 8 bytes (version 1, VLAN, CoS, encapsulation, T, session ID, index).
fn erspan2(b: &[u8]) -> Result<Peeled<'_>, Reject> {
    let h = b.get(..8).ok_or(Reject::TruncatedTunnel)?;
    if h[0] >> 4 != 1 {
        return Err(Reject::BadTunnelHeader);
    }
    ethernet(&b[8..], Encap::Erspan2, Some(erspan_session(h)))
}

/// ERSPAN type III: 12 bytes (version 2, ..., session ID, timestamp, SGT, P, frame type,
/// hardware ID, D, granularity, O) plus 8 bytes of platform sub-header when O is set.
fn erspan3(b: &[u8]) -> Result<Peeled<'_>, Reject> {
    let h = b.get(..12).ok_or(Reject::TruncatedTunnel)?;
    if h[0] >> 4 != 2 {
        return Err(Reject::BadTunnelHeader);
    }
    let len = if h[11] & 1 != 0 { 20 } else { 12 };
    let rest = b.get(len..).ok_or(Reject::TruncatedTunnel)?;
    let id = Some(erspan_session(h));
    match (h[10] >> 2) & 0x1f {
        0 => ethernet(rest, Encap::Erspan3, id),
        2 => Ok(bare(ETH_RAW, rest, Encap::Erspan3, id)),
        _ => Err(Reject::UnknownTunnelPayload),
    }
}

/// UDP to a VXLAN or Geneve port; `None` for any other UDP (not a tunnel: `not_tcp`).
fn udp<'a>(b: &'a [u8], opts: &ParseOptions) -> Result<Option<Peeled<'a>>, Reject> {
    let dport = be16(b, 2).ok_or(Reject::NotTcp)?;
    let ports = &opts.tunnel_ports;
    if ports.vxlan.contains(&dport) {
        vxlan(b.get(8..).ok_or(Reject::TruncatedTunnel)?).map(Some)
    } else if ports.geneve.contains(&dport) {
        geneve(b.get(8..).ok_or(Reject::TruncatedTunnel)?).map(Some)
    } else {
        Ok(None)
    }
}

/// The 24-bit VNI in bytes 4-6 of a VXLAN or Geneve header.
fn vni(h: &[u8]) -> u32 {
    u32::from_be_bytes([0, h[4], h[5], h[6]])
}

/// VXLAN (RFC 7348): 8 bytes, the I flag says the VNI is valid; Ethernet inside.
fn vxlan(b: &[u8]) -> Result<Peeled<'_>, Reject> {
    let h = b.get(..8).ok_or(Reject::TruncatedTunnel)?;
    if h[0] & 0x08 == 0 {
        return Err(Reject::BadTunnelHeader);
    }
    ethernet(&b[8..], Encap::Vxlan, Some(vni(h)))
}

/// Geneve (RFC 8926): 8 bytes plus options (skipped by their length), then Ethernet
/// or IP by the protocol field.
fn geneve(b: &[u8]) -> Result<Peeled<'_>, Reject> {
    let h = b.get(..8).ok_or(Reject::TruncatedTunnel)?;
    if h[0] >> 6 != 0 {
        return Err(Reject::BadTunnelHeader);
    }
    let opt_len = usize::from(h[0] & 0x3f) * 4;
    let rest = b.get(8 + opt_len..).ok_or(Reject::TruncatedTunnel)?;
    let id = Some(vni(h));
    match u16::from_be_bytes([h[2], h[3]]) {
        GRE_ETH_BRIDGING => ethernet(rest, Encap::Geneve, id),
        p @ (ETH_IPV4 | ETH_IPV6) => Ok(bare(p, rest, Encap::Geneve, id)),
        _ => Err(Reject::UnknownTunnelPayload),
    }
}

/// An MPLS label stack (RFC 3032) down to the bottom-of-stack label, then IPv4 or IPv6
/// by the first nibble, or an Ethernet pseudowire (RFC 4448): after a control word when
/// the nibble is 0, else directly (the heuristic Wireshark uses by default).
fn mpls<'a>(l3: &L3<'a>) -> Result<Peeled<'a>, Reject> {
    let b = l3.bytes;
    let mut at = 0;
    loop {
        let entry = b.get(at..at + 4).ok_or(Reject::TruncatedTunnel)?;
        at += 4;
        if entry[2] & 1 != 0 {
            break;
        }
        if at / 4 == MAX_MPLS_LABELS {
            return Err(Reject::TunnelTooDeep);
        }
    }
    let rest = &b[at..];
    let first = *rest.first().ok_or(Reject::TruncatedTunnel)?;
    match first >> 4 {
        // The labelled packet is the mirrored frame: its link header stays.
        4 | 6 => Ok(Peeled {
            l3: L3 {
                ethertype: if first >> 4 == 4 { ETH_IPV4 } else { ETH_IPV6 },
                bytes: rest,
                ..*l3
            },
            encap: Encap::Mpls,
            id: None,
        }),
        0 => ethernet(
            rest.get(4..).ok_or(Reject::TruncatedTunnel)?,
            Encap::Mpls,
            None,
        ),
        _ => ethernet(rest, Encap::Mpls, None),
    }
}

/// A PPPoE session frame (RFC 2516): 6-byte header (version/type 0x11, code 0, session,
/// length), then the PPP protocol: IPv4 or IPv6 (anything else, LCP, IPCP, ..., is not
/// IP, like ARP on Ethernet).
fn pppoe<'a>(l3: &L3<'a>) -> Result<Peeled<'a>, Reject> {
    let b = l3.bytes;
    let h = b.get(..8).ok_or(Reject::TruncatedTunnel)?;
    if h[0] != 0x11 || h[1] != 0 {
        return Err(Reject::BadTunnelHeader);
    }
    let ethertype = match u16::from_be_bytes([h[6], h[7]]) {
        PPP_IPV4 => ETH_IPV4,
        PPP_IPV6 => ETH_IPV6,
        _ => return Err(Reject::NotIp),
    };
    Ok(Peeled {
        l3: L3 {
            ethertype,
            bytes: &b[8..],
            ..*l3
        },
        encap: Encap::Pppoe,
        id: None,
    })
}
