//! Zero-copy parsing of captured frames down to the TCP header.
//!
//! Hand-written rather than built on `etherparse`: this is the hot path (every packet, at
//! up to 15 Mpps per core), and the tracker needs only a dozen fields. We read them in
//! place from the frame, decide as early as possible that a packet is not ours, and
//! name the reason for every rejection so it can be counted ([`Reject`]).
//!
//! Untrusted bytes are read the way smoltcp's `wire` module reads them: each header's
//! fixed part is length-checked once (`if b.len() < 20 { return Err(TruncatedIp) }`),
//! after which its fixed offsets are indexed directly; anything whose position depends
//! on the packet (IP options, extension headers, TCP options, tunnel headers) is read
//! with `slice::get` or [`be16`], which give `None` past the end. A malformed frame
//! therefore becomes a [`Reject`], never a panic; `sensor/tests/offline/parse_fuzz.rs`
//! throws random and mutated frames at [`parse`] to hold that. The commonest frame
//! (untagged Ethernet, IPv4 without options, a TCP segment without SYN, FIN or RST)
//! is read first by `plain.rs` behind a single length check; every other frame, and
//! any frame it doubts, goes through the layers here.

mod ip;
mod link;
mod parsed;
mod plain;
mod tcp;
mod tunnel;

pub use link::LinkType;
pub use parsed::ParsedBatch;
pub(crate) use plain::HEADERS as PLAIN_HEADER_BYTES;
pub use tcp::{TcpFlags, TcpOptions};
pub use tunnel::{Tunnel, TunnelPorts, MAX_MPLS_LABELS, MAX_TUNNEL_DEPTH};

use link::L3;
use rstwatch_schema::{Encap, IpBytes};

/// The fields of one TCP segment that the tracker and classifier use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address (IPv4 as v4-mapped).
    pub src: IpBytes,
    /// Destination address.
    pub dst: IpBytes,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// Outer VLAN id (0 when untagged) of the mirrored frame (inside any tunnel).
    pub vlan: u16,
    /// Inner VLAN id of a QinQ frame (0 when absent).
    pub inner_vlan: u16,
    /// Link-layer source address (48-bit MAC as a number) of the mirrored frame, 0 when
    /// the capture has none (or the tunnel carried bare IP).
    pub src_mac: u64,
    /// The innermost encapsulation removed to reach the segment (`None`: plain).
    pub encap: Encap,
    /// The tunnel identity (VNI, ERSPAN session ID) of the innermost layer with one.
    pub tunnel_id: u32,
    /// The encapsulation `tunnel_id` belongs to (`None`: no identity).
    pub tunnel_of: Encap,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when `flags` has ACK).
    pub ack: u32,
    /// TCP flags.
    pub flags: TcpFlags,
    /// The raw (unscaled) window field.
    pub window: u16,
    /// The TCP options, read on SYN and RST segments (empty on others).
    pub opts: TcpOptions,
    /// Payload length according to the IP header (not the captured length: a snap
    /// length cut does not make a segment shorter on the wire).
    pub payload_len: u32,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// IPv4 don't-fragment bit (false for IPv6).
    pub df: bool,
    /// Carried in IPv6.
    pub is_v6: bool,
    /// The TCP checksum was verified and is wrong (only checked when asked, see
    /// [`ParseOptions::verify_checksum`]).
    pub bad_checksum: bool,
}

impl Packet {
    /// A placeholder (all zeros) for arrays that [`parse_into`] fills.
    pub const EMPTY: Packet = Packet {
        src: IpBytes([0; 16]),
        dst: IpBytes([0; 16]),
        sport: 0,
        dport: 0,
        vlan: 0,
        inner_vlan: 0,
        src_mac: 0,
        encap: Encap::None,
        tunnel_id: 0,
        tunnel_of: Encap::None,
        seq: 0,
        ack: 0,
        flags: TcpFlags(0),
        window: 0,
        opts: TcpOptions {
            mss: None,
            wscale: None,
            sack_permitted: false,
            timestamps: None,
            malformed: false,
        },
        payload_len: 0,
        ttl: 0,
        ip_id: 0,
        df: false,
        is_v6: false,
        bad_checksum: false,
    };
}

/// Why a frame was not turned into a [`Packet`]. Every variant is a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reject {
    /// Frame ends inside a link-layer header.
    TruncatedLink = 0,
    /// Link type this sensor does not decode.
    UnsupportedLinkType,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp,
    /// Frame ends inside the IP header.
    TruncatedIp,
    /// IPv4 header length below 20 bytes or beyond the packet.
    BadIhl,
    /// IP version field does not match the link layer's claim.
    BadIpVersion,
    /// IPv4 total length / IPv6 payload length smaller than the headers.
    BadIpLength,
    /// Not TCP (UDP, ICMP, ...).
    NotTcp,
    /// A non-first IP fragment: carries no TCP header.
    LaterFragment,
    /// A first fragment too short to hold the whole TCP header.
    ShortFirstFragment,
    /// IPv6 extension header chain too long or malformed.
    BadIpv6Ext,
    /// Frame ends inside the TCP header.
    TruncatedTcp,
    /// TCP data offset below 5 or beyond the segment.
    BadTcpOffset,
    /// More nested encapsulations (or MPLS labels) than the decoder peels.
    TunnelTooDeep,
    /// GRE carrying a protocol other than Ethernet, IP, MPLS or ERSPAN.
    UnknownGreProtocol,
    /// Frame ends inside a tunnel header (or the frame inside it has no link header).
    TruncatedTunnel,
    /// A tunnel header with a version or flags this decoder does not know.
    BadTunnelHeader,
    /// ERSPAN III or Geneve carrying a frame type other than Ethernet or IP.
    UnknownTunnelPayload,
}

impl Reject {
    /// Every variant, in counter order.
    pub const ALL: &'static [Reject] = &[
        Reject::TruncatedLink,
        Reject::UnsupportedLinkType,
        Reject::NotIp,
        Reject::TruncatedIp,
        Reject::BadIhl,
        Reject::BadIpVersion,
        Reject::BadIpLength,
        Reject::NotTcp,
        Reject::LaterFragment,
        Reject::ShortFirstFragment,
        Reject::BadIpv6Ext,
        Reject::TruncatedTcp,
        Reject::BadTcpOffset,
        Reject::TunnelTooDeep,
        Reject::UnknownGreProtocol,
        Reject::TruncatedTunnel,
        Reject::BadTunnelHeader,
        Reject::UnknownTunnelPayload,
    ];

    /// Counter name, as shown by `replay --stats` and exported as metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reject::TruncatedLink => "truncated_link",
            Reject::UnsupportedLinkType => "unsupported_link_type",
            Reject::NotIp => "not_ip",
            Reject::TruncatedIp => "truncated_ip",
            Reject::BadIhl => "bad_ihl",
            Reject::BadIpVersion => "bad_ip_version",
            Reject::BadIpLength => "bad_ip_length",
            Reject::NotTcp => "not_tcp",
            Reject::LaterFragment => "later_fragment",
            Reject::ShortFirstFragment => "short_first_fragment",
            Reject::BadIpv6Ext => "bad_ipv6_ext",
            Reject::TruncatedTcp => "truncated_tcp",
            Reject::BadTcpOffset => "bad_tcp_offset",
            Reject::TunnelTooDeep => "tunnel_too_deep",
            Reject::UnknownGreProtocol => "unknown_gre_protocol",
            Reject::TruncatedTunnel => "truncated_tunnel",
            Reject::BadTunnelHeader => "bad_tunnel_header",
            Reject::UnknownTunnelPayload => "unknown_tunnel_payload",
        }
    }
}

/// Knobs of the parser.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Verify the TCP checksum of control segments (SYN, FIN, RST). Those are the ones
    /// that change flow state, and a forged RST with a bad checksum is discarded by the
    /// receiver, so it matters for the verdict; data segments are not checked, which
    /// keeps the per-packet cost flat on bulk traffic.
    pub verify_checksum: bool,
    /// UDP ports decoded as VXLAN and Geneve.
    pub tunnel_ports: TunnelPorts,
}

/// Parses one captured frame of link type `link`.
#[inline]
pub fn parse(link: LinkType, frame: &[u8], opts: ParseOptions) -> Result<Packet, Reject> {
    let mut p = Packet::EMPTY;
    parse_into(link, frame, opts, &mut p)?;
    Ok(p)
}

/// [`parse`] writing the packet into `p` (every field; unchanged on a rejection): the
/// engine's batch path parses into its array in place, where returning a `Packet`
/// cost ~110 instructions a frame in moves of it and of the IP view (callgrind).
#[inline]
pub fn parse_into(
    link: LinkType,
    frame: &[u8],
    opts: ParseOptions,
    p: &mut Packet,
) -> Result<(), Reject> {
    // Most frames are plain Ethernet/IPv4/TCP data or acknowledgments (`plain.rs`).
    if link == LinkType::Ethernet && plain::parse_into(frame, p) {
        return Ok(());
    }
    general_into(link, frame, opts, p)
}

/// [`parse_into`] for every kind of frame, without the plain frame's shortcut.
#[inline(always)]
fn general_into(
    link: LinkType,
    frame: &[u8],
    opts: ParseOptions,
    p: &mut Packet,
) -> Result<(), Reject> {
    let l3 = link::strip(link, frame)?;
    match ip::parse(l3.ethertype, l3.bytes) {
        Ok(ip) => segment(&ip, &l3, opts, p),
        // Not plain IP/TCP: perhaps a tunnel (cold: plain Ethernet never gets here).
        Err(r) => tunnelled(l3, r, opts, p),
    }
}

/// The TCP segment in `ip` with the link-layer fields of `l3`, into `p`.
#[inline(always)]
fn segment(
    ip: &ip::IpView<'_>,
    l3: &L3<'_>,
    opts: ParseOptions,
    p: &mut Packet,
) -> Result<(), Reject> {
    tcp::parse_into(ip, p)?;
    p.vlan = l3.vlan;
    p.inner_vlan = l3.inner_vlan;
    p.src_mac = l3.src_mac;
    if opts.verify_checksum && p.flags.is_control() {
        p.bad_checksum = !tcp::checksum_ok(ip);
    }
    Ok(())
}

/// [`parse_into`] for a frame whose network layer `l3` was not IP/TCP (`why`): peels
/// the tunnels around the mirrored frame, then reads its segment.
#[cold]
#[inline(never)]
fn tunnelled(l3: L3<'_>, why: Reject, opts: ParseOptions, p: &mut Packet) -> Result<(), Reject> {
    let (ip, l3, t) = tunnel::parse_beyond(l3, why, &opts)?;
    segment(&ip, &l3, opts, p)?;
    p.encap = t.encap;
    p.tunnel_id = t.id;
    p.tunnel_of = t.id_of;
    Ok(())
}

/// Reads a big-endian `u16` at `at`, or `None` past the end.
#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}
