//! Per-direction TCP state (one [`DirState`] for each side of a flow) and Zeek's
//! endpoint states.

/// Originator (SYN sender, or first sender unless flipped) or responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The originator.
    Orig = 0,
    /// The responder.
    Resp = 1,
}

impl Role {
    /// The opposite role.
    #[inline]
    pub fn other(self) -> Role {
        match self {
            Role::Orig => Role::Resp,
            Role::Resp => Role::Orig,
        }
    }

    /// Zeek's history letter case for this role.
    #[inline]
    pub fn letter(self, upper: u8) -> u8 {
        match self {
            Role::Orig => upper,
            Role::Resp => upper.to_ascii_lowercase(),
        }
    }
}

/// Zeek's TCP endpoint states (`TCP_INACTIVE` ... `TCP_RESET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EndpointState {
    /// Nothing seen from this side yet.
    Inactive = 0,
    /// Sent a SYN.
    SynSent = 1,
    /// Sent a SYN-ACK.
    SynAckSent = 2,
    /// Sent data without a handshake seen (a midstream flow).
    Partial = 3,
    /// The handshake completed.
    Established = 4,
    /// Sent a FIN.
    Closed = 5,
    /// Sent an RST.
    Reset = 6,
}

impl EndpointState {
    /// Every state, in the order of their numbers.
    pub const ALL: [EndpointState; 7] = [
        EndpointState::Inactive,
        EndpointState::SynSent,
        EndpointState::SynAckSent,
        EndpointState::Partial,
        EndpointState::Established,
        EndpointState::Closed,
        EndpointState::Reset,
    ];

    /// The state stored in a nibble of `Flow::states` (unknown values read as `Inactive`).
    /// A table, not a `match`: every packet decodes both sides' states, and the match
    /// compiled to a compare chain (~12 instructions a packet, callgrind).
    #[inline]
    pub fn from_nibble(n: u8) -> EndpointState {
        const BY_NIBBLE: [EndpointState; 16] = {
            let mut t = [EndpointState::Inactive; 16];
            let mut i = 0;
            while i < EndpointState::ALL.len() {
                let s = EndpointState::ALL[i];
                t[s as usize] = s;
                i += 1;
            }
            t
        };
        BY_NIBBLE[usize::from(n & 0x0f)]
    }
}

/// Bits of [`DirState::flags`].
pub mod dflags {
    /// This side sent at least one counted packet.
    pub const SEEN: u16 = 1 << 0;
    /// Sent a SYN without ACK.
    pub const SYN: u16 = 1 << 1;
    /// Sent a SYN-ACK.
    pub const SYNACK: u16 = 1 << 2;
    /// Sent a FIN.
    pub const FIN: u16 = 1 << 3;
    /// Sent an RST (with or without ACK).
    pub const RST: u16 = 1 << 4;
    /// Sent an RST without ACK.
    pub const RST_BARE: u16 = 1 << 5;
    /// Sent an RST with ACK.
    pub const RST_ACK: u16 = 1 << 6;
    /// Sequence gap: packets of this side were missed.
    pub const LOSSY: u16 = 1 << 7;
    /// History letters recorded once per side ('A', 'D') or tracked for repeats.
    pub const H_A: u16 = 1 << 8;
    /// History letter 'D' (data) recorded for this side.
    pub const H_D: u16 = 1 << 9;
    /// History letter 'S' (SYN) recorded for this side.
    pub const H_S: u16 = 1 << 10;
    /// History letter 'F' (FIN) recorded.
    pub const H_F: u16 = 1 << 11;
    /// History letter 'R' (RST) recorded.
    pub const H_R: u16 = 1 << 12;
    /// Sent something other than an RST (so TTL / IP ID baselines exist).
    pub const SENT_NON_RST: u16 = 1 << 13;
    /// Baseline: the first non-RST packet had DF set.
    pub const DF: u16 = 1 << 14;
    /// Sent an ACK (so `ack` is meaningful).
    pub const ACKED: u16 = 1 << 15;
}

/// One direction of a flow: what its sender has sent.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct DirState {
    /// First payload sequence number (ISN + 1, or the first seq seen midstream).
    pub base: u32,
    /// Highest sequence number sent, plus one (SYN and FIN count one each).
    pub next_seq: u32,
    /// Highest acknowledgment number this side sent (the peer's data it has received).
    pub ack: u32,
    /// Packets sent by this side.
    pub pkts: u32,
    /// Last raw window field.
    pub win: u16,
    /// Last IPv4 ID (IPv6: fragment id or 0).
    pub ip_id: u16,
    /// What this side has sent (`dirflags::*`).
    pub flags: u16,
    /// TTL / hop limit of this side's first non-RST packet.
    pub ttl: u8,
    /// Low nibble: window scale from the SYN (15 = none); high nibble: times the
    /// sequence space wrapped (saturating), for byte counts beyond 4 GiB.
    pub ws: u8,
}

/// `ws` low nibble meaning "no window scale option".
pub const NO_WSCALE: u8 = 0x0f;

impl DirState {
    /// True when flag `f` (`dirflags::*`) is set.
    #[inline]
    pub fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    /// The window scale this side's SYN offered, if any.
    #[inline]
    pub fn wscale(&self) -> Option<u8> {
        match self.ws & 0x0f {
            NO_WSCALE => None,
            s => Some(s),
        }
    }

    /// Payload bytes in sequence space, as Zeek counts them (SYN and FIN excluded).
    pub fn payload_bytes(&self) -> u64 {
        if !self.has(dflags::SEEN) {
            return 0;
        }
        let span = self.next_seq.wrapping_sub(self.base);
        let wraps = u64::from(self.ws >> 4);
        let fin = u64::from(self.has(dflags::FIN));
        (wraps << 32 | u64::from(span)).saturating_sub(fin)
    }

    /// Advances `next_seq` to `end` when `end` is ahead, counting wraps of the
    /// sequence space relative to `base`.
    #[inline]
    pub fn advance(&mut self, end: u32) {
        if seq_gt(end, self.next_seq) {
            let before = self.next_seq.wrapping_sub(self.base);
            let after = end.wrapping_sub(self.base);
            if after < before && (self.ws >> 4) < 0x0f {
                self.ws += 0x10;
            }
            self.next_seq = end;
        }
    }
}

/// `a > b` in sequence-number arithmetic (RFC 9293 §3.4).
#[inline]
pub fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `a < b` in sequence-number arithmetic.
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a >= b` in sequence-number arithmetic.
#[inline]
pub fn seq_ge(a: u32, b: u32) -> bool {
    !seq_lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::EndpointState as S;

    #[test]
    fn every_state_reads_back_from_its_nibble_and_the_rest_read_as_inactive() {
        // Exhaustive: a new state fails to compile here until it is in `ALL`.
        let place = |s: S| match s {
            S::Inactive | S::SynSent | S::SynAckSent | S::Partial => s as usize,
            S::Established | S::Closed | S::Reset => s as usize,
        };
        for (i, s) in S::ALL.into_iter().enumerate() {
            assert_eq!(place(s), i);
        }
        for s in S::ALL {
            assert_eq!(S::from_nibble(s as u8), s);
        }
        for n in S::ALL.len() as u8..16 {
            assert_eq!(S::from_nibble(n), S::Inactive, "nibble {n}");
        }
    }
}
