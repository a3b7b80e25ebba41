//! Per-flow state: what the sensor remembers about one TCP connection.
//!
//! A [`Flow`] is 116 bytes, packed at 4-byte alignment: with the hash index that makes
//! about 127 bytes per flow at a table's capacity (the 128-byte budget in issue 2,
//! measured by `benches` `engine_bench`). Keep it that way: every field here is paid a
//! million times per core.

mod history;
mod key;
mod state;
mod table;

pub use history::History;
pub use key::{hash_key, End, FlowKey};
pub use state::{dflags, seq_ge, seq_gt, seq_lt, DirState, EndpointState, Role, NO_WSCALE};
pub use table::{FlowTable, TableStats, MAX_CAPACITY};

use rstwatch_schema::{CloseReason, ConnState, FlowRecord};

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
}

/// One tracked TCP flow.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
pub struct Flow {
    pub key: FlowKey,
    /// First packet, microseconds since the epoch.
    pub first_us: i64,
    /// Last packet.
    pub last_us: i64,
    pub history: History,
    /// Indexed by [`Role`]: originator first.
    pub dirs: [DirState; 2],
    /// Zeek endpoint states: originator in the low nibble, responder in the high.
    pub states: u8,
    pub bits: u8,
    pub rst_count: u16,
}

const _: () = assert!(std::mem::size_of::<Flow>() == 116);

impl Flow {
    /// A new flow whose first packet is at `ts_us`, originator at `orig` end of `key`.
    pub fn new(key: FlowKey, orig: End, ts_us: i64) -> Flow {
        Flow {
            key,
            first_us: ts_us,
            last_us: ts_us,
            history: History::default(),
            dirs: [DirState::default(); 2],
            states: 0,
            bits: bits::LIVE | if orig == End::Hi { bits::ORIG_IS_HI } else { 0 },
            rst_count: 0,
        }
    }

    #[inline]
    pub fn is_live(&self) -> bool {
        self.bits & bits::LIVE != 0
    }

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

    #[inline]
    pub fn state(&self, r: Role) -> EndpointState {
        EndpointState::from_nibble(match r {
            Role::Orig => self.states & 0xf,
            Role::Resp => self.states >> 4,
        })
    }

    #[inline]
    pub fn set_state(&mut self, r: Role, s: EndpointState) {
        self.states = match r {
            Role::Orig => (self.states & 0xf0) | s as u8,
            Role::Resp => (self.states & 0x0f) | ((s as u8) << 4),
        };
    }

    #[inline]
    pub fn dir(&self, r: Role) -> &DirState {
        &self.dirs[r as usize]
    }

    #[inline]
    pub fn dir_mut(&mut self, r: Role) -> &mut DirState {
        &mut self.dirs[r as usize]
    }

    /// A stable identifier of this flow (key and start time), shared by its RST events
    /// and its flow record so they can be joined.
    pub fn uid(&self) -> u64 {
        let first = self.first_us;
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
    /// capture; a flow that saw an RST or FINs says so instead).
    pub fn record(&self, trigger: CloseReason) -> FlowRecord {
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
            ts_start_us: self.first_us,
            ts_end_us: self.last_us,
            orig_h,
            orig_p,
            resp_h,
            resp_p,
            vlan: key.vlan(),
            inner_vlan: key.inner_vlan(),
            conn_state: self.conn_state(),
            history: self.history.to_string(),
            orig_pkts: u64::from(self.dirs[0].pkts),
            resp_pkts: u64::from(self.dirs[1].pkts),
            orig_bytes: self.dirs[0].payload_bytes(),
            resp_bytes: self.dirs[1].payload_bytes(),
            rst_count: u32::from(self.rst_count),
            close,
            flow_uid: self.uid(),
            cause: None,
        }
    }
}

/// Idle timeouts in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub half_open_us: i64,
    pub established_us: i64,
    pub closed_us: i64,
}

impl Timeouts {
    pub fn from_config(c: &crate::EngineConfig) -> Timeouts {
        Timeouts {
            half_open_us: i64::from(c.timeout_half_open_s) * 1_000_000,
            established_us: i64::from(c.timeout_established_s) * 1_000_000,
            closed_us: i64::from(c.timeout_closed_s) * 1_000_000,
        }
    }
}
