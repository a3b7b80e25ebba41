//! Per-flow state: what the sensor remembers about one TCP connection.
//!
//! A [`Flow`] is 116 bytes, packed at 4-byte alignment: with the hash index (at most
//! 12 bytes per flow, see `index`) that makes at most 128 bytes per flow at a table's
//! capacity (the budget in issue 2, measured by `benches` `engine_bench`). Keep it that way: every field here is paid a
//! million times per core.
//!
//! What the cause rules needed (issue 7) was found inside the same 116 bytes:
//! - the start time is kept as seconds plus a 20-bit microsecond fraction (lossless),
//!   which frees a byte for the handshake RTT ([`RttCode`], log scale, ±4.5 %) and four
//!   bits for the cause of the flow's first RST;
//! - `rst_count` became one byte (saturating; counts past 255 continue in the cold
//!   per-flow memo, `crate::evidence::memo`, so records stay exact);
//! - the freed byte holds an 8-bit tag of the responder's source MAC (a changed MAC is
//!   missed with probability 1/255: a false negative, never a false positive);
//! - three flow bits: who sent the latest payload, whether that sender has sent only
//!   payload since, and whether the flow has a memo entry.
//!
//! Rare evidence (a silence before a segment, FINs after idle, data after a FIN) lives
//! in that memo, a bounded side table written only when such an event happens.

mod history;
mod index;
mod key;
mod state;
mod sweep_hints;
mod table;
mod tunnels;

pub use history::History;
pub use key::{hash_key, mix64, End, FlowKey, KeyHasher};
pub use state::{dflags, seq_ge, seq_gt, seq_lt, DirState, EndpointState, Role, NO_WSCALE};
pub use table::{FlowTable, TableStats, MAX_CAPACITY};
pub use tunnels::{TunnelIdentity, TunnelSlots};

use rstwatch_schema::{Cause, CloseReason, ConnState, FlowRecord};

/// Flow-level bits (`Flow::bits`).
pub mod bits {
    /// The slot holds a flow.
    pub const LIVE: u8 = 1 << 0;
    /// The originator is the key's `hi` end.
    pub const ORIG_IS_HI: u8 = 1 << 1;
    /// RSTs of this flow are being held for their verdict.
    pub const HAS_PENDING: u8 = 1 << 2;
    /// Handshake completed, or picked up midstream with traffic both ways.
    pub const ESTABLISHED: u8 = 1 << 3;
    /// Letters were dropped from the history (more than it holds).
    pub const HISTORY_FULL: u8 = 1 << 4;
    /// The flow has an entry in the engine's cold evidence memo.
    pub const HAS_MEMO: u8 = 1 << 5;
    /// The latest payload in the flow was sent by the responder (else the originator).
    pub const LAST_PAYLOAD_RESP: u8 = 1 << 6;
    /// The sender of the latest payload has sent nothing but payload since (a pure ACK,
    /// keep-alive or FIN from it clears this): its peer has not answered yet.
    pub const LAST_PAYLOAD_FRESH: u8 = 1 << 7;
}

/// A handshake round-trip time in one byte: `1 + round(8 * log2(µs))`, 0 = unknown.
/// Covers 1 µs to about an hour in steps of 9 % (±4.5 %), plenty for "within one RTT".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RttCode(pub u8);

impl RttCode {
    /// Encodes a round-trip time in microseconds (below 1 µs counts as 1 µs).
    pub fn encode(us: i64) -> RttCode {
        let us = us.max(1) as f64;
        RttCode((1.0 + (8.0 * us.log2()).round()).clamp(1.0, 255.0) as u8)
    }

    /// The RTT in microseconds, `None` when unknown.
    pub fn us(self) -> Option<i64> {
        (self.0 != 0).then(|| (f64::from(self.0 - 1) / 8.0).exp2().round() as i64)
    }
}

/// Whether `to - from >= span`, in exact arithmetic: `to >= from + span`, the sum
/// checked rather than widened. Out of `i64`'s range the sum is above every `to` when
/// `span` is positive and below every one when it is negative. The same answer as
/// comparing 128-bit differences (or the saturated `i64` one) in fewer instructions:
/// the idle tests of every packet use it (`gap_tests` holds it to the 128-bit form).
#[inline]
pub fn gap_at_least(from: i64, to: i64, span: i64) -> bool {
    match from.checked_add(span) {
        Some(end) => to >= end,
        None => span < 0,
    }
}

/// An 8-bit tag of a MAC address, never 0 (0 = unknown).
#[inline]
pub fn mac_tag(mac: u64) -> u8 {
    if mac == 0 {
        return 0;
    }
    let h = mac.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
    (h as u8) | ((h == 0) as u8)
}

/// One tracked TCP flow.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
pub struct Flow {
    /// The direction-free key: addresses, ports, VLANs, tunnel slot.
    pub key: FlowKey,
    /// First packet: whole seconds since the epoch (see [`Flow::first_us`]).
    first_s: u32,
    /// Little-endian 24 bits: the first packet's microseconds within its second (low
    /// 20 bits), and the cause code of the flow's first RST plus one (high 4 bits).
    first_frac: [u8; 3],
    /// Handshake RTT: SYN to the handshake-completing ACK at the sensor.
    pub rtt: RttCode,
    /// Last packet, microseconds since the epoch.
    pub last_us: i64,
    /// Zeek's history letters, in order of first occurrence.
    pub history: History,
    /// Indexed by [`Role`]: originator first.
    pub dirs: [DirState; 2],
    /// Zeek endpoint states: originator in the low nibble, responder in the high.
    pub states: u8,
    /// Flow-level bits (`bits::*`): live, originator side, memo, payload seen.
    pub bits: u8,
    /// RSTs seen, saturating at 255 (the memo continues the count).
    pub rst_count: u8,
    /// [`mac_tag`] of the responder's source MAC on its first non-RST packet.
    pub resp_mac: u8,
}

const _: () = assert!(std::mem::size_of::<Flow>() == 116);

impl Flow {
    /// A new flow whose first packet is at `ts_us`, originator at `orig` end of `key`.
    pub fn new(key: FlowKey, orig: End, ts_us: i64) -> Flow {
        // Seconds saturate to the u32 range (pcap timestamps are u32 seconds anyway).
        let secs = ts_us.div_euclid(1_000_000).clamp(0, i64::from(u32::MAX));
        let frac = if ts_us < 0 {
            0
        } else {
            ts_us.rem_euclid(1_000_000) as u32
        };
        let f = frac.to_le_bytes();
        Flow {
            key,
            first_s: secs as u32,
            first_frac: [f[0], f[1], f[2]],
            rtt: RttCode::default(),
            last_us: ts_us,
            history: History::default(),
            dirs: [DirState::default(); 2],
            states: 0,
            bits: bits::LIVE | if orig == End::Hi { bits::ORIG_IS_HI } else { 0 },
            rst_count: 0,
            resp_mac: 0,
        }
    }

    fn frac_word(&self) -> u32 {
        let f = self.first_frac;
        u32::from_le_bytes([f[0], f[1], f[2], 0])
    }

    fn set_frac_word(&mut self, w: u32) {
        let b = w.to_le_bytes();
        self.first_frac = [b[0], b[1], b[2]];
    }

    /// The first packet's time, microseconds since the epoch.
    #[inline]
    pub fn first_us(&self) -> i64 {
        i64::from(self.first_s) * 1_000_000 + i64::from(self.frac_word() & 0x000f_ffff)
    }

    /// The cause of the flow's first RST, once that RST has been released.
    pub fn first_cause(&self) -> Option<Cause> {
        match self.frac_word() >> 20 {
            0 => None,
            c => Cause::ALL.get(c as usize - 1).copied(),
        }
    }

    /// Records the cause of the flow's first RST (later calls change nothing).
    pub fn note_cause(&mut self, c: Cause) {
        let w = self.frac_word();
        if w >> 20 == 0 {
            self.set_frac_word((w & 0x000f_ffff) | (u32::from(c.code()) + 1) << 20);
        }
    }

    /// When the handshake completed (first packet + RTT), if it was seen.
    pub fn established_us(&self) -> Option<i64> {
        self.rtt.us().map(|rtt| self.first_us() + rtt)
    }

    /// The role that sent the latest payload, if any payload was seen.
    pub fn last_payload_role(&self) -> Option<Role> {
        if self.dirs[0].payload_bytes() == 0 && self.dirs[1].payload_bytes() == 0 {
            return None;
        }
        Some(if self.has(bits::LAST_PAYLOAD_RESP) {
            Role::Resp
        } else {
            Role::Orig
        })
    }

    /// True while the slot holds a tracked flow.
    #[inline]
    pub fn is_live(&self) -> bool {
        self.bits & bits::LIVE != 0
    }

    /// True when flow bit `bit` (`bits::*`) is set.
    #[inline]
    pub fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// The role of the key end `e`.
    #[inline]
    pub fn role_of(&self, e: End) -> Role {
        let orig_is_hi = self.has(bits::ORIG_IS_HI);
        match (e, orig_is_hi) {
            (End::Hi, true) | (End::Lo, false) => Role::Orig,
            _ => Role::Resp,
        }
    }

    /// The key end that plays role `r`.
    #[inline]
    pub fn end_of(&self, r: Role) -> End {
        let orig = if self.has(bits::ORIG_IS_HI) {
            End::Hi
        } else {
            End::Lo
        };
        match r {
            Role::Orig => orig,
            Role::Resp => orig.other(),
        }
    }

    /// The endpoint state of role `r`.
    #[inline]
    pub fn state(&self, r: Role) -> EndpointState {
        EndpointState::from_nibble(match r {
            Role::Orig => self.states & 0xf,
            Role::Resp => self.states >> 4,
        })
    }

    /// Whether role `r`'s endpoint state is `Partial` or a later one (not `Inactive`,
    /// `SynSent` or `SynAckSent`). Read from the nibble itself, without decoding it
    /// through [`EndpointState::from_nibble`]'s table: the in-order path asks on every
    /// packet.
    #[inline]
    pub fn past_handshake(&self, r: Role) -> bool {
        let n = match r {
            Role::Orig => self.states & 0xf,
            Role::Resp => self.states >> 4,
        };
        // Unknown nibbles read as `Inactive`, as `state` reads them.
        (EndpointState::Partial as u8..EndpointState::ALL.len() as u8).contains(&n)
    }

    /// Sets the endpoint state of role `r`.
    #[inline]
    pub fn set_state(&mut self, r: Role, s: EndpointState) {
        self.states = match r {
            Role::Orig => (self.states & 0xf0) | s as u8,
            Role::Resp => (self.states & 0x0f) | ((s as u8) << 4),
        };
    }

    /// The per-direction state of the side playing `r`.
    #[inline]
    pub fn dir(&self, r: Role) -> &DirState {
        &self.dirs[r as usize]
    }

    /// The per-direction state of the side playing `r`, to update.
    #[inline]
    pub fn dir_mut(&mut self, r: Role) -> &mut DirState {
        &mut self.dirs[r as usize]
    }

    /// A stable identifier of this flow (key and start time), shared by its RST events
    /// and its flow record so they can be joined.
    pub fn uid(&self) -> u64 {
        let first = self.first_us();
        let k = self.key;
        hash_key(&k) ^ (first as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// Zeek's `conn_state`, computed from the endpoint states exactly as Zeek's
    /// `base/protocols/conn/main.zeek` does.
    pub fn conn_state(&self) -> ConnState {
        use EndpointState as S;
        let os = self.state(Role::Orig);
        let rs = self.state(Role::Resp);
        let o_inactive = matches!(os, S::Inactive | S::Partial);
        let r_inactive = matches!(rs, S::Inactive | S::Partial);
        if rs == S::Reset {
            let no_data = self.dirs[0].payload_bytes() == 0 && self.dirs[1].payload_bytes() == 0;
            if matches!(os, S::SynSent | S::SynAckSent) || (os == S::Reset && no_data) {
                ConnState::Rej
            } else if o_inactive {
                ConnState::Rstrh
            } else {
                ConnState::Rstr
            }
        } else if os == S::Reset {
            if r_inactive {
                if self.history_is_syn_then_rst() {
                    ConnState::Rstos0
                } else {
                    ConnState::Oth
                }
            } else {
                ConnState::Rsto
            }
        } else if rs == S::Closed && os == S::Closed {
            ConnState::Sf
        } else if os == S::Closed {
            if r_inactive {
                ConnState::Sh
            } else {
                ConnState::S2
            }
        } else if rs == S::Closed {
            if o_inactive {
                ConnState::Shr
            } else {
                ConnState::S3
            }
        } else if os == S::SynSent && rs == S::Inactive {
            ConnState::S0
        } else if os == S::Established && rs == S::Established {
            ConnState::S1
        } else {
            ConnState::Oth
        }
    }

    /// Zeek's `/\^?S[^HAFGIQ]*R.*/` test on the history.
    fn history_is_syn_then_rst(&self) -> bool {
        let mut it = self.history.letters().peekable();
        if it.peek() == Some(&b'^') {
            it.next();
        }
        if it.next() != Some(b'S') {
            return false;
        }
        for c in it {
            match c {
                b'R' => return true,
                b'H' | b'A' | b'F' | b'G' | b'I' | b'Q' => return false,
                _ => {}
            }
        }
        false
    }

    /// Is the flow past its idle timeout at `now_us`? Exact whatever the values
    /// ([`gap_at_least`]); every packet on a known flow asks.
    #[inline]
    pub fn expired_at(&self, now_us: i64, t: &Timeouts) -> bool {
        gap_at_least(self.last_us, now_us, self.timeout_us(t))
    }

    /// Idle timeout class: closed after FIN or RST, established, or half-open.
    pub fn timeout_us(&self, t: &Timeouts) -> i64 {
        let any = self.dirs[0].flags | self.dirs[1].flags;
        if any & (dflags::FIN | dflags::RST) != 0 {
            t.closed_us
        } else if self.has(bits::ESTABLISHED) {
            t.established_us
        } else {
            t.half_open_us
        }
    }

    /// The flow record for this flow, closed for `trigger` (timeout, eviction or end of
    /// capture; a flow that saw an RST or FINs says so instead). `more_rsts` are RSTs
    /// counted past `rst_count`'s 255 (kept in the memo).
    pub fn record(&self, trigger: CloseReason, more_rsts: u32) -> FlowRecord {
        let any = self.dirs[0].flags | self.dirs[1].flags;
        let close = if trigger == CloseReason::Evicted {
            CloseReason::Evicted
        } else if any & dflags::RST != 0 {
            CloseReason::Rst
        } else if any & dflags::FIN != 0 {
            CloseReason::Fin
        } else {
            trigger
        };
        let key = self.key;
        let (orig_h, orig_p) = key.end(self.end_of(Role::Orig));
        let (resp_h, resp_p) = key.end(self.end_of(Role::Resp));
        FlowRecord {
            ts_start_us: self.first_us(),
            ts_end_us: self.last_us,
            orig_h,
            orig_p,
            resp_h,
            resp_p,
            vlan: key.vlan(),
            inner_vlan: key.inner_vlan(),
            conn_state: self.conn_state(),
            history: self.history.text(),
            orig_pkts: u64::from(self.dirs[0].pkts),
            resp_pkts: u64::from(self.dirs[1].pkts),
            orig_bytes: self.dirs[0].payload_bytes(),
            resp_bytes: self.dirs[1].payload_bytes(),
            rst_count: u32::from(self.rst_count).saturating_add(more_rsts),
            close,
            flow_uid: self.uid(),
            // The first RST's cause; a flow that saw an RST whose cause was never
            // decided (it is still held: cannot happen at close) says `unknown`.
            cause: match self.first_cause() {
                Some(c) => Some(c),
                None if any & dflags::RST != 0 => Some(Cause::Unknown),
                None => None,
            },
            // Filled in by the engine from its tunnel table (the key holds an index).
            encap: rstwatch_schema::Encap::None,
            tunnel_id: 0,
        }
    }
}

/// Idle timeouts in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Flows that never completed a handshake.
    pub half_open_us: i64,
    /// Established flows (the idle memory the idle-timeout cause needs).
    pub established_us: i64,
    /// Flows closed by FIN or RST (kept for late segments and follow-up RSTs).
    pub closed_us: i64,
}

impl Timeouts {
    /// The engine configuration's timeouts, in microseconds.
    pub fn from_config(c: &crate::EngineConfig) -> Timeouts {
        Timeouts {
            half_open_us: i64::from(c.timeout_half_open_s) * 1_000_000,
            established_us: i64::from(c.timeout_established_s) * 1_000_000,
            closed_us: i64::from(c.timeout_closed_s) * 1_000_000,
        }
    }
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    #[test]
    fn gap_at_least_is_the_exact_difference_at_every_edge() {
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            -1_000_000,
            -1,
            0,
            1,
            300_000_000,
            i64::MAX - 1,
            i64::MAX,
        ];
        for &from in &edges {
            for &to in &edges {
                for &span in &edges {
                    let exact = i128::from(to) - i128::from(from) >= i128::from(span);
                    assert_eq!(gap_at_least(from, to, span), exact, "{from} {to} {span}");
                }
            }
        }
    }

    #[test]
    fn past_handshake_agrees_with_the_decoded_state_for_every_nibble() {
        let key = FlowKey::default();
        let mut flow = Flow::new(key, End::Lo, 0);
        for states in 0..=u8::MAX {
            flow.states = states;
            for r in [Role::Orig, Role::Resp] {
                let decoded = !matches!(
                    flow.state(r),
                    EndpointState::Inactive | EndpointState::SynSent | EndpointState::SynAckSent
                );
                assert_eq!(flow.past_handshake(r), decoded, "{states:#04x} {r:?}");
            }
        }
    }
}
