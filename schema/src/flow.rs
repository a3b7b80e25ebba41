//! The flow record: one per TCP flow when it ends (FIN, RST, timeout, eviction, or the end
//! of the capture), in Zeek conn.log terms so analysts can cross-check with Zeek.

use crate::str_enum::str_enum;
use crate::{Cause, Encap, IpBytes};

str_enum! {
    /// Zeek's `conn_state` for TCP.
    pub enum ConnState {
        /// Connection attempt seen, no reply.
        S0 = 0 => "S0",
        /// Established, not terminated.
        S1 = 1 => "S1",
        /// Normal establishment and termination.
        Sf = 2 => "SF",
        /// Connection attempt rejected.
        Rej = 3 => "REJ",
        /// Established, originator sent FIN, nothing from the responder.
        S2 = 4 => "S2",
        /// Established, responder sent FIN, nothing from the originator.
        S3 = 5 => "S3",
        /// Established, originator aborted (sent an RST).
        Rsto = 6 => "RSTO",
        /// Established, responder aborted.
        Rstr = 7 => "RSTR",
        /// Originator sent a SYN followed by an RST; no SYN-ACK from the responder.
        Rstos0 = 8 => "RSTOS0",
        /// Responder sent a SYN-ACK followed by an RST; no SYN from the originator.
        Rstrh = 9 => "RSTRH",
        /// Originator sent a SYN followed by a FIN; no SYN-ACK.
        Sh = 10 => "SH",
        /// Responder sent a SYN-ACK followed by a FIN; no SYN from the originator.
        Shr = 11 => "SHR",
        /// No SYN seen, just midstream traffic.
        Oth = 12 => "OTH",
    }
}

str_enum! {
    /// Why the sensor closed its record of the flow.
    pub enum CloseReason {
        /// Closed with FIN.
        Fin = 0 => "fin",
        /// Ended by an RST.
        Rst = 1 => "rst",
        /// Idle longer than its state's timeout.
        Timeout = 2 => "timeout",
        /// The flow table was full and this flow was the oldest idle one.
        Evicted = 3 => "evicted",
        /// Still open when the capture or file ended.
        EndOfCapture = 4 => "end_of_capture",
    }
}

/// One TCP flow, summarised when it ends.
#[derive(
    Debug,
    Clone,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct FlowRecord {
    /// First packet, µs since the epoch.
    #[serde(rename = "ts_start", with = "crate::timefmt")]
    pub ts_start_us: i64,
    /// Last packet, µs since the epoch.
    #[serde(rename = "ts_end", with = "crate::timefmt")]
    pub ts_end_us: i64,
    /// Originator address.
    pub orig_h: IpBytes,
    /// Originator port.
    pub orig_p: u16,
    /// Responder address.
    pub resp_h: IpBytes,
    /// Responder port.
    pub resp_p: u16,
    /// Outer VLAN id (0: none).
    pub vlan: u16,
    /// Inner VLAN id of QinQ (0: none).
    pub inner_vlan: u16,
    /// Zeek's `conn_state`.
    pub conn_state: ConnState,
    /// Zeek's history letters (upper case: originator, lower case: responder).
    pub history: String,
    /// Packets from the originator.
    pub orig_pkts: u64,
    /// Packets from the responder.
    pub resp_pkts: u64,
    /// Payload bytes by sequence space, as Zeek counts them.
    pub orig_bytes: u64,
    /// Payload bytes from the responder.
    pub resp_bytes: u64,
    /// RSTs seen in the flow.
    pub rst_count: u32,
    /// Why the record was closed.
    pub close: CloseReason,
    /// Joins the flow to its RST events (`flow_uid` there).
    pub flow_uid: u64,
    /// The cause of the flow's first RST; `None` (JSON `""`) when no RST closed it
    /// (schema version 2).
    #[serde(with = "crate::cause::opt_name", default)]
    pub cause: Option<Cause>,
    /// The encapsulation the flow's packets arrived in (`""`: plain).
    #[serde(default)]
    pub encap: Encap,
    /// The tunnel identity: VXLAN/Geneve VNI or ERSPAN session ID (0 when none, or
    /// when the tunnel identity is configured out of the flow key).
    #[serde(default)]
    pub tunnel_id: u32,
}
