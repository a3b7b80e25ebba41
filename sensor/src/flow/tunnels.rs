//! The tunnel identities of one engine's flows, as small slots kept in the flow key.
//!
//! A remote mirror delivers the same inner addresses from different networks (two VPCs
//! mirrored over VXLAN with different VNIs, two ERSPAN sessions), so the flow key must
//! tell them apart. The key has no room for a 24-bit VNI: the flow is 116 bytes, the
//! budget is full, and the key's only spare bits are the 8 above its two 12-bit VLAN
//! ids. Those 8 bits hold a slot of this table, which maps each slot to the
//! (encapsulation, tunnel identity) it stands for:
//! - slot 0 is "no tunnel": plain frames pay nothing (no lookup);
//! - slots 1-254 are handed out on first sight and counted by the flows that use them;
//!   a slot no flow uses is reused for a new identity (mirror sessions are long-lived
//!   and few: 254 live at once per worker is plenty);
//! - when all 254 are in use, a new identity goes to slot 255, shared, and every such
//!   flow is counted (`tunnel_slot_overflow`): flows of different tunnels may then meet
//!   in one flow, never silently. Their records carry no tunnel identity.
//!
//! Slots are per engine: the fan-out hash uses the inner four-tuple only, so both
//! directions of a flow reach one worker whatever its tunnel, and that worker's table
//! alone names the slot. Records carry the identity itself, never the slot.

use crate::parse::Packet;
use rstwatch_schema::Encap;
use std::collections::HashMap;

/// Shared slot of identities that found no free slot.
const OVERFLOW: u8 = 255;

/// What a slot stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TunnelIdentity {
    /// The innermost encapsulation.
    pub encap: Encap,
    /// The layer the id belongs to (`Encap::None`: no id, or ids are not kept).
    pub id_of: Encap,
    /// The tunnel id (VNI, GRE key, ERSPAN session, MPLS label, PPPoE session).
    pub id: u32,
}

/// Slot allocation for one engine.
pub struct TunnelSlots {
    /// Keep the tunnel id in the key (false: flows are told apart by encapsulation
    /// only, for mirrors whose sessions carry the same traffic).
    keep_id: bool,
    by_identity: HashMap<TunnelIdentity, u8>,
    identity: [TunnelIdentity; 256],
    /// Live flows per slot.
    flows: [u32; 256],
    /// The epoch a slot was last handed out in: a slot handed out in the current epoch
    /// or the one before may belong to a flow about to be created (the batch paths
    /// compute a chunk's keys first, and the next chunk's before that chunk's flows are
    /// updated: an epoch a chunk).
    stamp: [u64; 256],
    epoch: u64,
    /// Flows put in the shared overflow slot.
    pub overflow: u64,
}

impl TunnelSlots {
    /// An empty slot table; `keep_id` puts the tunnel id in the key.
    pub fn new(keep_id: bool) -> TunnelSlots {
        TunnelSlots {
            keep_id,
            by_identity: HashMap::new(),
            identity: [TunnelIdentity::default(); 256],
            flows: [0; 256],
            stamp: [0; 256],
            // Two epochs past a slot never handed out (stamp 0).
            epoch: 2,
            overflow: 0,
        }
    }

    /// Starts a new epoch: slots handed out before the previous one and used by no flow
    /// may be reused.
    #[inline]
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
    }

    /// The slot of `p`'s tunnel (0 for a plain frame).
    #[inline]
    pub fn slot_of(&mut self, p: &Packet) -> u8 {
        if p.encap == Encap::None {
            return 0;
        }
        self.slot_of_identity(self.identity_of(p))
    }

    fn identity_of(&self, p: &Packet) -> TunnelIdentity {
        if self.keep_id {
            TunnelIdentity {
                encap: p.encap,
                id_of: p.tunnel_of,
                id: p.tunnel_id,
            }
        } else {
            TunnelIdentity {
                encap: p.encap,
                ..TunnelIdentity::default()
            }
        }
    }

    #[cold]
    fn slot_of_identity(&mut self, t: TunnelIdentity) -> u8 {
        if let Some(&s) = self.by_identity.get(&t) {
            self.stamp[usize::from(s)] = self.epoch;
            return s;
        }
        let free = (1..OVERFLOW).find(|&s| {
            let i = usize::from(s);
            self.flows[i] == 0 && self.stamp[i] + 1 < self.epoch
        });
        let Some(s) = free else {
            return OVERFLOW;
        };
        let i = usize::from(s);
        if self.stamp[i] != 0 {
            self.by_identity.remove(&self.identity[i]);
        }
        self.identity[i] = t;
        self.stamp[i] = self.epoch;
        self.by_identity.insert(t, s);
        s
    }

    /// A flow in `slot` was created.
    #[inline]
    pub fn hold(&mut self, slot: u8) {
        if slot == OVERFLOW {
            self.overflow += 1;
        }
        if slot != 0 {
            self.flows[usize::from(slot)] += 1;
        }
    }

    /// A flow in `slot` ended.
    #[inline]
    pub fn release(&mut self, slot: u8) {
        if slot != 0 {
            let n = &mut self.flows[usize::from(slot)];
            *n = n.saturating_sub(1);
        }
    }

    /// What `slot` stands for (the overflow slot: the encapsulation unknown).
    pub fn identity(&self, slot: u8) -> TunnelIdentity {
        if slot == OVERFLOW {
            return TunnelIdentity::default();
        }
        self.identity[usize::from(slot)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::{build, Wire};
    use crate::parse::{parse, LinkType, ParseOptions};

    fn packet(encap: Encap, id: u32) -> Packet {
        let a = "192.0.2.1".parse().unwrap();
        let b = "203.0.113.1".parse().unwrap();
        let f = build(&Wire::tcp(a, 1000, b, 80, 0x02, 1, 0));
        let mut p = parse(LinkType::Ethernet, &f, ParseOptions::default()).unwrap();
        p.encap = encap;
        p.tunnel_id = id;
        p.tunnel_of = if encap.has_id() { encap } else { Encap::None };
        p
    }

    #[test]
    fn plain_frames_take_slot_zero() {
        let mut t = TunnelSlots::new(true);
        assert_eq!(t.slot_of(&packet(Encap::None, 0)), 0);
    }

    #[test]
    fn two_vnis_get_two_slots_and_keep_them() {
        let mut t = TunnelSlots::new(true);
        let a = t.slot_of(&packet(Encap::Vxlan, 7));
        let b = t.slot_of(&packet(Encap::Vxlan, 8));
        assert_ne!(a, b);
        assert_eq!(t.slot_of(&packet(Encap::Vxlan, 7)), a);
        assert_eq!(t.identity(a).id, 7);
        assert_eq!(t.identity(b).encap, Encap::Vxlan);
    }

    #[test]
    fn same_number_in_two_encapsulations_differs() {
        let mut t = TunnelSlots::new(true);
        assert_ne!(
            t.slot_of(&packet(Encap::Vxlan, 7)),
            t.slot_of(&packet(Encap::Geneve, 7))
        );
    }

    #[test]
    fn ids_left_out_of_the_key_share_a_slot_per_encapsulation() {
        let mut t = TunnelSlots::new(false);
        let a = t.slot_of(&packet(Encap::Vxlan, 7));
        assert_eq!(t.slot_of(&packet(Encap::Vxlan, 8)), a);
        assert_ne!(t.slot_of(&packet(Encap::Gre, 0)), a);
        assert_eq!(t.identity(a).id, 0);
    }

    #[test]
    fn full_table_overflows_counted_and_frees_unused_slots_later() {
        let mut t = TunnelSlots::new(true);
        for id in 0..254 {
            let s = t.slot_of(&packet(Encap::Vxlan, id));
            assert_ne!(s, OVERFLOW);
            t.hold(s);
        }
        let s = t.slot_of(&packet(Encap::Vxlan, 999));
        assert_eq!(s, OVERFLOW);
        t.hold(s);
        assert_eq!(t.overflow, 1);
        // One flow ends: its slot is reused two epochs later, not in the same one nor the
        // next (the batch paths key a chunk before the one before it is updated).
        let first = t.slot_of(&packet(Encap::Vxlan, 0));
        t.release(first);
        assert_eq!(t.slot_of(&packet(Encap::Vxlan, 1000)), OVERFLOW);
        t.next_epoch();
        assert_eq!(t.slot_of(&packet(Encap::Vxlan, 1000)), OVERFLOW);
        t.next_epoch();
        assert_eq!(t.slot_of(&packet(Encap::Vxlan, 1000)), first);
        assert_eq!(t.identity(first).id, 1000);
    }
}
