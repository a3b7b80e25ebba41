//! Addresses as 16 bytes: IPv6 as is, IPv4 as an IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`).
//!
//! One fixed-size form for both families keeps flow keys, wire records and ClickHouse
//! columns (`IPv6` / `FixedString(16)`) the same size, and sorts IPv4 together.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address in its 16-byte IPv6 (mapped) form.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq, Hash))]
pub struct IpBytes(pub [u8; 16]);

const V4_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl IpBytes {
    /// The mapped form of an IPv4 address given as its four bytes.
    #[inline]
    pub const fn from_v4(b: [u8; 4]) -> Self {
        // Built as one number, not byte by byte: the parsers store it in one 16-byte
        // store, which the flow key's loads right after can be forwarded from. Written
        // as 16 bytes, it was stored in three pieces, and every packet's key waited for
        // them to reach the cache (`engine_bench` 4-6 % faster at 1,000 and 1 M flows,
        // `replay --workers 2` 0.92 of the CPU; benches/RESULTS.md).
        let v = (0xffff_u128 << 32) | u32::from_be_bytes(b) as u128;
        IpBytes(v.to_be_bytes())
    }

    /// True when this is an IPv4-mapped address.
    #[inline]
    pub fn is_v4(&self) -> bool {
        self.0[..12] == V4_PREFIX
    }

    /// The address as the standard library type, IPv4 when mapped.
    pub fn to_ip(self) -> IpAddr {
        if self.is_v4() {
            IpAddr::V4(Ipv4Addr::new(
                self.0[12], self.0[13], self.0[14], self.0[15],
            ))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.0))
        }
    }

    /// Back from the archived form.
    pub fn from_archived(a: &ArchivedIpBytes) -> Self {
        IpBytes(a.0)
    }
}

impl From<IpAddr> for IpBytes {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpBytes::from_v4(v4.octets()),
            IpAddr::V6(v6) => IpBytes(v6.octets()),
        }
    }
}

impl fmt::Display for IpBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_ip().fmt(f)
    }
}

impl fmt::Debug for IpBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_ip().fmt(f)
    }
}

impl std::str::FromStr for IpBytes {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<IpAddr>().map(IpBytes::from)
    }
}

impl serde::Serialize for IpBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_is_mapped_and_prints_as_v4() {
        let a: IpBytes = "192.0.2.7".parse().unwrap();
        assert!(a.is_v4());
        assert_eq!(a.to_string(), "192.0.2.7");
        assert_eq!(a, IpBytes::from_v4([192, 0, 2, 7]));
    }

    #[test]
    fn from_v4_is_the_standard_mapped_form() {
        for b in [
            [0; 4],
            [255; 4],
            [192, 0, 2, 7],
            [1, 2, 3, 4],
            [128, 0, 0, 1],
        ] {
            let mapped = Ipv4Addr::from(b).to_ipv6_mapped().octets();
            assert_eq!(IpBytes::from_v4(b).0, mapped, "{b:?}");
        }
    }

    #[test]
    fn v6_round_trips() {
        let a: IpBytes = "2001:db8::1".parse().unwrap();
        assert!(!a.is_v4());
        assert_eq!(a.to_string(), "2001:db8::1");
    }
}
