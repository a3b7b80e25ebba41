//! The canonical, direction-free flow key.
//!
//! Both directions of a flow map to the same key: the (address, port) pairs are put in a
//! fixed order, so any hash of the key is symmetric. That is what lets fan-out send both
//! directions to the same worker and the flow table find a flow from either side.

use crate::parse::Packet;
use rstwatch_schema::IpBytes;
use std::hash::BuildHasher;
use std::hint::select_unpredictable;

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
        FlowKey::between((p.src, p.sport), (p.dst, p.dport), (p.vlan, p.inner_vlan))
    }

    /// The key of the flow of a segment from `src` to `dst` (address, port) with VLAN
    /// ids `vlans` (outer, inner), and which end sent it: [`FlowKey::of`] for a caller
    /// that has read only these fields (the `--workers` reader).
    #[inline(always)]
    pub fn between(
        (src, sport): (IpBytes, u16),
        (dst, dport): (IpBytes, u16),
        (vlan, inner_vlan): (u16, u16),
    ) -> (FlowKey, End) {
        let vlans = (u32::from(vlan & 0x0fff) << 12) | u32::from(inner_vlan & 0x0fff);
        // Numeric comparison of the big-endian addresses is the byte order, without a
        // byte-by-byte compare on the packet path.
        let (s, d) = (u128::from_be_bytes(src.0), u128::from_be_bytes(dst.0));
        // Branch-free: which end a packet came from is a coin flip from one packet to
        // the next (either direction of any flow), so a branch here was mispredicted on
        // about half of all packets (RESULTS.md, "Branches no predictor follows").
        // `(s, sport) > (d, dport)` with `|` and `&`, as a tuple compare short-circuits;
        // the selects are conditional moves.
        let swap = (s > d) | ((s == d) & (sport > dport));
        // The addresses are chosen as the numbers just compared, not as the 16-byte
        // arrays: those the compiler loaded again with 16-byte loads, which cannot be
        // forwarded from the parser's 8-byte stores of the packet a moment before, so
        // each key waited for them to reach the cache.
        let (lo, hi) = (
            select_unpredictable(swap, d, s),
            select_unpredictable(swap, s, d),
        );
        let key = FlowKey {
            lo: IpBytes(lo.to_be_bytes()),
            hi: IpBytes(hi.to_be_bytes()),
            lo_port: select_unpredictable(swap, dport, sport),
            hi_port: select_unpredictable(swap, sport, dport),
            vlans,
        };
        let end = select_unpredictable(swap, End::Hi, End::Lo);
        (key, end)
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

/// The SplitMix64 finaliser: a bijection of 64-bit values whose every output bit
/// depends on every input bit. Also the synthetic generator's PRNG step (`gen`).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The order [`FlowKey::of`] computes without branches, as a plain tuple compare of
    /// the address bytes and ports.
    fn reference(p: &Packet) -> (IpBytes, u16, IpBytes, u16, End) {
        if (p.src.0, p.sport) <= (p.dst.0, p.dport) {
            (p.src, p.sport, p.dst, p.dport, End::Lo)
        } else {
            (p.dst, p.dport, p.src, p.sport, End::Hi)
        }
    }

    fn packet(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Packet {
        Packet {
            src: IpBytes(src),
            dst: IpBytes(dst),
            sport,
            dport,
            vlan: 5,
            inner_vlan: 7,
            ..Packet::EMPTY
        }
    }

    #[test]
    fn orders_the_ends_as_a_tuple_compare_and_both_directions_share_the_key() {
        let mut rng = fastrand::Rng::with_seed(7);
        let addr = |rng: &mut fastrand::Rng| {
            let mut a = [0u8; 16];
            // Mostly addresses that differ only in their last bytes, as on one network,
            // where the compare is decided late; some that differ in the first byte.
            match rng.u8(..6) {
                0 => rng.fill(&mut a),
                // IPv4, mapped.
                1 | 2 => a = IpBytes::from_v4([192, 0, 2, rng.u8(..4)]).0,
                3 => a = IpBytes::from_v4([rng.u8(..), 0, 2, 1]).0,
                _ => a[15] = rng.u8(..4),
            }
            a
        };
        let mut cases = vec![
            packet([0; 16], 0, [0; 16], 0),
            packet([0xff; 16], u16::MAX, [0xff; 16], u16::MAX),
            packet([1; 16], 80, [1; 16], 81),
            packet([1; 16], 81, [1; 16], 80),
        ];
        for _ in 0..20_000 {
            let (s, d) = (addr(&mut rng), addr(&mut rng));
            let ports =
                |rng: &mut fastrand::Rng| [80, 443, 0, u16::MAX, rng.u16(..)][rng.usize(..5)];
            cases.push(packet(s, ports(&mut rng), d, ports(&mut rng)));
        }
        for p in cases {
            let (key, end) = FlowKey::of(&p);
            let (lo, lo_port, hi, hi_port, want_end) = reference(&p);
            assert_eq!(
                (key.lo, key.lo_port, key.hi, key.hi_port),
                (lo, lo_port, hi, hi_port)
            );
            assert_eq!(end, want_end, "{p:?}");
            assert_eq!((key.vlan(), key.inner_vlan()), (5, 7));
            let back = packet(p.dst.0, p.dport, p.src.0, p.sport);
            let (back_key, back_end) = FlowKey::of(&back);
            assert_eq!(back_key, key);
            // A packet to itself (same address and port) is one end seen twice.
            if (p.src, p.sport) != (p.dst, p.dport) {
                assert_eq!(back_end, end.other());
            }
        }
    }
}
