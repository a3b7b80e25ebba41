//! Link layers: Ethernet II with 802.1Q / 802.1ad tags, Linux cooked capture (SLL and
//! SLL2), BSD loopback, and raw IP.

use super::{be16, Reject};

/// The link-layer header type of captured frames (pcap `LINKTYPE_*` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101) and DLT_RAW (12, 14): IPv4 or IPv6 by version nibble.
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): 4-byte address family, host or
    /// network byte order.
    Null,
    /// Anything else; every frame is rejected as `unsupported_link_type`.
    Other(u32),
}

impl LinkType {
    /// From a pcap/pcapng link-type number.
    pub fn from_linktype(v: u32) -> LinkType {
        match v {
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 | 108 => LinkType::Null,
            v => LinkType::Other(v),
        }
    }

    /// The pcap link-type number (for writing captures).
    pub fn to_linktype(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::RawIp => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Null => 0,
            LinkType::Other(v) => v,
        }
    }
}

pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
/// Pseudo ethertype for raw IP: decide by the version nibble.
pub(crate) const ETH_RAW: u16 = 0;
/// MPLS unicast and multicast label stacks (RFC 3032).
pub(crate) const ETH_MPLS_UC: u16 = 0x8847;
pub(crate) const ETH_MPLS_MC: u16 = 0x8848;
/// PPPoE session stage (RFC 2516).
pub(crate) const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_8021Q: u16 = 0x8100;
const ETH_8021AD: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
/// More tags than this is not a frame anyone sends on purpose.
const MAX_VLAN_TAGS: usize = 4;

/// The network-layer part of a frame.
#[derive(Clone, Copy)]
pub(crate) struct L3<'a> {
    /// What `bytes` holds (EtherType; [`ETH_RAW`] when the version nibble decides).
    pub(crate) ethertype: u16,
    /// The network-layer bytes.
    pub(crate) bytes: &'a [u8],
    /// Outer VLAN id (0: untagged).
    pub(crate) vlan: u16,
    /// Inner VLAN id of a QinQ frame (0: none).
    pub(crate) inner_vlan: u16,
    /// The link-layer source address as a number (48-bit MAC), 0 when the link type
    /// has none (raw IP, loopback) or it is not a 6-byte address.
    pub(crate) src_mac: u64,
}

impl<'a> L3<'a> {
    /// A network layer with no VLAN tags and no link-layer source address.
    pub(crate) fn bare(ethertype: u16, bytes: &'a [u8]) -> L3<'a> {
        L3 {
            ethertype,
            bytes,
            vlan: 0,
            inner_vlan: 0,
            src_mac: 0,
        }
    }

    fn with_src_mac(mut self, mac: u64) -> L3<'a> {
        self.src_mac = mac;
        self
    }
}

/// The 6-byte address at `at` as a number, 0 past the end.
#[inline]
pub(crate) fn mac_at(f: &[u8], at: usize) -> u64 {
    match f.get(at..at + 6) {
        Some(m) => u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]),
        None => 0,
    }
}

/// The source address of a cooked capture header when it is a 6-byte one (Ethernet).
#[inline]
fn sll_mac(f: &[u8], len_at: usize, addr_at: usize) -> u64 {
    match be16(f, len_at).map(|l| l & 0xff) {
        Some(6) => mac_at(f, addr_at),
        _ => 0,
    }
}

// Always: the tunnel decoder calls this too, which must not cost plain frames
// their inlined fast path.
#[inline(always)]
pub(crate) fn strip(link: LinkType, f: &[u8]) -> Result<L3<'_>, Reject> {
    match link {
        LinkType::Ethernet => {
            let et = be16(f, 12).ok_or(Reject::TruncatedLink)?;
            // The frame holds at least 14 bytes here: one 8-byte load, no byte shuffling.
            let w = u64::from_be_bytes([f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11]]);
            Ok(ethertype_chain(et, &f[14..])?.with_src_mac(w & 0xffff_ffff_ffff))
        }
        LinkType::RawIp => Ok(L3::bare(ETH_RAW, f)),
        LinkType::Ipv4 => Ok(L3::bare(ETH_IPV4, f)),
        LinkType::Ipv6 => Ok(L3::bare(ETH_IPV6, f)),
        LinkType::LinuxSll => {
            // 16-byte header: packet type, ARPHRD, address length, 8 address bytes,
            // protocol (an ethertype) in the last two bytes.
            let et = be16(f, 14).ok_or(Reject::TruncatedLink)?;
            Ok(ethertype_chain(et, &f[16..])?.with_src_mac(sll_mac(f, 4, 6)))
        }
        LinkType::LinuxSll2 => {
            // 20-byte header; protocol first, address length at 11, address at 12.
            let et = be16(f, 0).ok_or(Reject::TruncatedLink)?;
            if f.len() < 20 {
                return Err(Reject::TruncatedLink);
            }
            Ok(ethertype_chain(et, &f[20..])?.with_src_mac(sll_mac(f, 10, 12)))
        }
        LinkType::Null => {
            let fam = f.get(0..4).ok_or(Reject::TruncatedLink)?;
            // The family is in the writer's byte order; accept both.
            let le = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let be = u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let et = match (le, be) {
                (2, _) | (_, 2) => ETH_IPV4,
                // AF_INET6 differs between systems: 24 (BSDs), 28 (FreeBSD), 30 (macOS), 10 (Linux).
                (24 | 28 | 30 | 10, _) | (_, 24 | 28 | 30 | 10) => ETH_IPV6,
                _ => return Err(Reject::NotIp),
            };
            Ok(L3::bare(et, &f[4..]))
        }
        LinkType::Other(_) => Err(Reject::UnsupportedLinkType),
    }
}

/// Follows VLAN tags to the network layer.
// Always: the tunnel decoder calls this too, which must not cost plain frames
// their inlined fast path.
#[inline(always)]
pub(crate) fn ethertype_chain(mut et: u16, mut rest: &[u8]) -> Result<L3<'_>, Reject> {
    let mut tags = [0u16; 2];
    let mut n = 0;
    while matches!(et, ETH_8021Q | ETH_8021AD | ETH_QINQ_OLD) {
        if n == MAX_VLAN_TAGS {
            return Err(Reject::NotIp);
        }
        let tci = be16(rest, 0).ok_or(Reject::TruncatedLink)?;
        et = be16(rest, 2).ok_or(Reject::TruncatedLink)?;
        if n < 2 {
            tags[n] = tci & 0x0fff;
        }
        n += 1;
        rest = &rest[4..];
    }
    // MPLS and PPPoE are handed on too: `parse` peels them when IP parsing fails
    // (off the plain-Ethernet fast path, see `tunnel`).
    match et {
        ETH_IPV4 | ETH_IPV6 | ETH_MPLS_UC | ETH_MPLS_MC | ETH_PPPOE_SESSION => Ok(L3 {
            vlan: tags[0],
            inner_vlan: tags[1],
            ..L3::bare(et, rest)
        }),
        _ => Err(Reject::NotIp),
    }
}
