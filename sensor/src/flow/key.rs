//! The canonical, direction-free flow key.
//!
//! Both directions of a flow map to the same key: the (address, port) pairs are put in a
//! fixed order, so any hash of the key is symmetric. That is what lets fan-out send both
//! directions to the same worker and the flow table find a flow from either side.

use crate::parse::Packet;
use rstwatch_schema::IpBytes;
use std::hash::BuildHasher;

/// Addresses, ports, VLAN ids and tunnel slot of a flow, lower (address, port) pair
/// first.
#[derive(Debug, Clone, Copy, Eq, Default)]
#[repr(C)]
pub struct FlowKey {
    /// The lower address of the (address, port) pairs.
    pub lo: IpBytes,
    /// The higher address.
    pub hi: IpBytes,
    /// The lower pair's port.
    pub lo_port: u16,
    /// The higher pair's port.
    pub hi_port: u16,
    /// Bits 24-31: the tunnel slot (`super::tunnels`: 0 = no tunnel; a per-engine index
    /// of the (encapsulation, tunnel identity) the flow arrived in, so inner addresses
    /// that overlap in two VXLAN networks or ERSPAN sessions stay two flows).
    /// Bits 12-23: outer VLAN id; bits 0-11: inner VLAN id (12 bits each, 802.1Q).
    vlans: u32,
}

impl FlowKey {
    /// The key as three machine words: equality and hashing read these instead of going
    /// field by field (this runs for every packet, several times).
    #[inline(always)]
    fn words(&self) -> (u128, u128, u64) {
        (
            u128::from_ne_bytes(self.lo.0),
            u128::from_ne_bytes(self.hi.0),
            u64::from(self.lo_port) | u64::from(self.hi_port) << 16 | u64::from(self.vlans) << 32,
        )
    }
}

impl PartialEq for FlowKey {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        self.words() == other.words()
    }
}

impl std::hash::Hash for FlowKey {
    #[inline(always)]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let (a, b, c) = self.words();
        h.write_u128(a);
        h.write_u128(b);
        h.write_u64(c);
    }
}

/// Which end of the key a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The lower (address, port) pair.
    Lo = 0,
    /// The higher (address, port) pair.
    Hi = 1,
}

impl FlowKey {
    /// The key of `p`'s flow and which end sent `p`.
    #[inline]
    pub fn of(p: &Packet) -> (FlowKey, End) {
        let vlans = (u32::from(p.vlan & 0x0fff) << 12) | u32::from(p.inner_vlan & 0x0fff);
        // Numeric comparison of the big-endian addresses is the byte order, without a
        // byte-by-byte compare on the packet path.
        let (s, d) = (u128::from_be_bytes(p.src.0), u128::from_be_bytes(p.dst.0));
        if (s, p.sport) <= (d, p.dport) {
            (
                FlowKey {
                    lo: p.src,
                    hi: p.dst,
                    lo_port: p.sport,
                    hi_port: p.dport,
                    vlans,
                },
                End::Lo,
            )
        } else {
            (
                FlowKey {
                    lo: p.dst,
                    hi: p.src,
                    lo_port: p.dport,
                    hi_port: p.sport,
                    vlans,
                },
                End::Hi,
            )
        }
    }

    /// Address and port of one end.
    #[inline]
    pub fn end(&self, e: End) -> (IpBytes, u16) {
        match e {
            End::Lo => (self.lo, self.lo_port),
            End::Hi => (self.hi, self.hi_port),
        }
    }

    /// The outer VLAN id (0: none).
    pub fn vlan(&self) -> u16 {
        ((self.vlans >> 12) & 0x0fff) as u16
    }

    /// The inner VLAN id of QinQ (0: none).
    pub fn inner_vlan(&self) -> u16 {
        (self.vlans & 0x0fff) as u16
    }

    /// The tunnel slot (0: the flow arrived in no tunnel, or the engine keeps none).
    pub fn tunnel_slot(&self) -> u8 {
        (self.vlans >> 24) as u8
    }

    /// The same key in tunnel slot `slot`.
    #[inline]
    pub fn in_tunnel_slot(mut self, slot: u8) -> FlowKey {
        self.vlans = (self.vlans & 0x00ff_ffff) | u32::from(slot) << 24;
        self
    }
}

impl End {
    /// The opposite end.
    #[inline]
    pub fn other(self) -> End {
        match self {
            End::Lo => End::Hi,
            End::Hi => End::Lo,
        }
    }
}

/// The hasher of flow keys. One fixed instance per process (not per table) so that the
/// fan-out core and the workers agree on a key's hash.
fn hasher() -> &'static hashbrown::DefaultHashBuilder {
    static H: std::sync::OnceLock<hashbrown::DefaultHashBuilder> = std::sync::OnceLock::new();
    H.get_or_init(hashbrown::DefaultHashBuilder::default)
}

/// The symmetric hash of a key.
#[inline]
pub fn hash_key(k: &FlowKey) -> u64 {
    KeyHasher::get().hash(k)
}

/// [`hash_key`] for many keys: the process's hasher is looked up once (its
/// `OnceLock` check cost ~10 instructions a packet in the engine's batch loop).
#[derive(Clone, Copy)]
pub struct KeyHasher(&'static hashbrown::DefaultHashBuilder);

impl KeyHasher {
    /// The process's hasher of flow keys.
    #[inline]
    pub fn get() -> KeyHasher {
        KeyHasher(hasher())
    }

    /// The symmetric hash of `k`, as [`hash_key`] gives it.
    #[inline]
    pub fn hash(self, k: &FlowKey) -> u64 {
        self.0.hash_one(k)
    }
}
