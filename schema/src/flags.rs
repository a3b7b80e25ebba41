//! The flags an RST event can carry (DESIGN.md, "RST classification").
//!
//! Stored as a bitset: one `u32` on the wire and in ClickHouse, an array of names in
//! JSON. Bit positions are part of the stored data: append new flags, never renumber.

use std::fmt;

macro_rules! flags {
    ($( $(#[$doc:meta])* $variant:ident = $bit:literal => $name:literal ),+ $(,)?) => {
        /// One RST flag.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum RstFlag { $( $(#[$doc])* $variant = $bit ),+ }

        impl RstFlag {
            /// Every flag, in bit order.
            pub const ALL: &'static [RstFlag] = &[ $( RstFlag::$variant ),+ ];

            /// The flag's stable name (JSON, SQL, documentation).
            pub const fn as_str(self) -> &'static str {
                match self { $( RstFlag::$variant => $name ),+ }
            }

            /// Looks a flag up by its name.
            pub fn from_name(s: &str) -> Option<RstFlag> {
                match s { $( $name => Some(RstFlag::$variant), )+ _ => None }
            }

            /// The flag's bit in [`RstFlags`].
            pub const fn bit(self) -> u32 { 1u32 << (self as u8) }
        }
    };
}

flags! {
    /// seq equals the receiver's next expected sequence number (RFC 9293 §3.10.7.4).
    SeqExact = 0 => "seq_exact",
    /// seq is inside the receive window but not exact: an RFC 5961 receiver answers with
    /// a challenge ACK instead of resetting.
    SeqInWindow = 1 => "seq_in_window",
    /// seq is outside the receive window: a compliant receiver ignores the RST.
    SeqOutOfWindow = 2 => "seq_out_of_window",
    /// A FIN was already seen in the flow.
    AfterFin = 3 => "after_fin",
    /// The flow was silent longer than the idle threshold before the RST.
    Idle = 4 => "idle",
    /// The RST carries payload.
    WithPayload = 5 => "with_payload",
    /// SYN and RST set together (malformed).
    SynRst = 6 => "syn_rst",
    /// FIN and RST set together.
    FinRst = 7 => "fin_rst",
    /// The flow had sequence gaps: injection signals are unreliable.
    Lossy = 8 => "lossy",
    /// The purported sender kept sending after its RST.
    DataAfter = 9 => "data_after",
    /// RST seq is below data the sender had already sent.
    SeqBehind = 10 => "seq_behind",
    /// Back-to-back RSTs with increasing seq beyond anything sent.
    MultiSeq = 11 => "multi_seq",
    /// A burst of RSTs with differing ACK numbers.
    MultiAck = 12 => "multi_ack",
    /// TTL off the sender's baseline in this flow.
    TtlMismatch = 13 => "ttl_mismatch",
    /// IP ID off the sender's recent IP IDs in this flow.
    IpidMismatch = 14 => "ipid_mismatch",
    /// The same side sent both a bare RST and an RST/ACK.
    RstAndRstack = 15 => "rst_and_rstack",
    /// The RST's TCP checksum is wrong: the receiver drops it, so it did not reset
    /// anything (the sensor verifies SYN/FIN/RST checksums unless told not to).
    BadChecksum = 16 => "bad_checksum",
}

/// A set of [`RstFlag`]s.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
pub struct RstFlags(pub u32);

impl RstFlags {
    /// No flags.
    pub const EMPTY: RstFlags = RstFlags(0);

    /// Whether `f` is set.
    #[inline]
    pub fn contains(self, f: RstFlag) -> bool {
        self.0 & f.bit() != 0
    }

    /// Sets `f`.
    #[inline]
    pub fn insert(&mut self, f: RstFlag) {
        self.0 |= f.bit();
    }

    /// Clears `f`.
    #[inline]
    pub fn remove(&mut self, f: RstFlag) {
        self.0 &= !f.bit();
    }

    /// Sets or clears `f`.
    #[inline]
    pub fn set(&mut self, f: RstFlag, on: bool) {
        if on {
            self.insert(f)
        } else {
            self.remove(f)
        }
    }

    /// The flags that are set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = RstFlag> {
        RstFlag::ALL
            .iter()
            .copied()
            .filter(move |f| self.contains(*f))
    }

    /// The names of the flags that are set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(RstFlag::as_str).collect()
    }
}

impl FromIterator<RstFlag> for RstFlags {
    fn from_iter<I: IntoIterator<Item = RstFlag>>(iter: I) -> Self {
        let mut s = RstFlags::EMPTY;
        for f in iter {
            s.insert(f);
        }
        s
    }
}

impl fmt::Debug for RstFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl serde::Serialize for RstFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(RstFlag::as_str))
    }
}

impl<'de> serde::Deserialize<'de> for RstFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = <Vec<std::borrow::Cow<'de, str>> as serde::Deserialize>::deserialize(d)?;
        names
            .iter()
            .map(|n| {
                RstFlag::from_name(n)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown RST flag {n:?}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_distinct_and_names_round_trip() {
        let mut seen = 0u32;
        for f in RstFlag::ALL {
            assert_eq!(seen & f.bit(), 0, "{f:?} reuses a bit");
            seen |= f.bit();
            assert_eq!(RstFlag::from_name(f.as_str()), Some(*f));
        }
    }

    #[test]
    fn json_is_an_array_of_names_in_bit_order() {
        let s: RstFlags = [RstFlag::DataAfter, RstFlag::SeqExact]
            .into_iter()
            .collect();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"["seq_exact","data_after"]"#
        );
        let back: RstFlags = serde_json::from_str(r#"["data_after","seq_exact"]"#).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<RstFlags>(r#"["nope"]"#).is_err());
    }
}
