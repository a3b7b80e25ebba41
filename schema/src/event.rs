//! The RST event: one per TCP RST packet the sensor sees.

use crate::str_enum::str_enum;
use crate::{Anomaly, Cause, Encap, FlowRecord, IpBytes, RstFlags};

str_enum! {
    /// Which side of the flow sent the RST. The originator is the SYN sender, else the
    /// first packet's sender, unless Zeek's likely-server-port heuristic flipped it.
    pub enum Dir {
        /// The originator (the SYN sender).
        Orig = 0 => "orig",
        /// The responder.
        Resp = 1 => "resp",
        /// No flow state to tell (an unsolicited RST).
        Unknown = 2 => "unknown",
    }
}

str_enum! {
    /// The base class of an RST (DESIGN.md, "RST classification").
    pub enum RstClass {
        /// Answers a SYN when no SYN-ACK was seen (closed port, refused). Zeek: REJ.
        Reject = 0 => "reject",
        /// Handshake started but not completed, not a reject (SYN, SYN-ACK, RST: the
        /// SYN-scan pattern). Zeek: RSTOS0, RSTRH.
        HandshakeAbort = 1 => "handshake_abort",
        /// After the handshake completed: "connection reset by peer". Zeek: RSTO/RSTR.
        Abort = 2 => "abort",
        /// No state for the four-tuple (midstream pickup, backscatter, after a failover).
        Unsolicited = 3 => "unsolicited",
    }
}

/// One TCP RST packet, classified.
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
pub struct RstEvent {
    /// Packet timestamp, microseconds since the epoch (JSON: RFC 3339 UTC).
    #[serde(rename = "ts", with = "crate::timefmt")]
    pub ts_us: i64,
    /// The RST packet's own source address.
    pub src: IpBytes,
    /// Source port of the RST packet.
    pub sport: u16,
    /// The RST packet's own destination address.
    pub dst: IpBytes,
    /// Destination port of the RST packet.
    pub dport: u16,
    /// Outer 802.1Q VLAN id, 0 when untagged.
    pub vlan: u16,
    /// Inner VLAN id of a QinQ frame, 0 when absent.
    pub inner_vlan: u16,
    /// Which side sent it.
    pub dir: Dir,
    /// Base class.
    pub class: RstClass,
    /// Flags (sequence validity, injection evidence, ...).
    pub flags: RstFlags,
    /// Injection evidence strong enough to call the RST forged (see the sensor's
    /// `classify::verdict` docs for the rule).
    pub suspect: bool,
    /// The RST's sequence number.
    pub seq: u32,
    /// The ACK number; meaningful only when `ack_flag` is set.
    pub ack: u32,
    /// RST/ACK rather than a bare RST.
    pub ack_flag: bool,
    /// IP TTL (hop limit) of the RST.
    pub ttl: u8,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// TCP payload bytes the RST carried.
    pub payload_len: u16,
    /// Identifies the flow record this RST belongs to (0 when unsolicited and no flow
    /// was kept).
    pub flow_uid: u64,
    /// Why it was sent (schema version 2).
    #[serde(default)]
    pub cause: Cause,
    /// One short sentence with the numbers behind `cause`.
    #[serde(default)]
    pub cause_detail: String,
    /// Milliseconds since the flow's previous packet (0 when the RST opened the flow).
    #[serde(default)]
    pub silence_ms: u64,
    /// The encapsulation the RST arrived in (`""`: plain, a local SPAN port).
    #[serde(default)]
    pub encap: Encap,
    /// The tunnel identity: VXLAN/Geneve VNI or ERSPAN session ID (0 when none).
    #[serde(default)]
    pub tunnel_id: u32,
}

impl RstEvent {
    /// An RST from `src` to `dst` with the given direction and class and every other
    /// field zero or empty; tests and tools start from this and set what they need.
    pub fn new(
        ts_us: i64,
        src: (IpBytes, u16),
        dst: (IpBytes, u16),
        dir: Dir,
        class: RstClass,
    ) -> RstEvent {
        RstEvent {
            ts_us,
            src: src.0,
            sport: src.1,
            dst: dst.0,
            dport: dst.1,
            vlan: 0,
            inner_vlan: 0,
            dir,
            class,
            flags: RstFlags::EMPTY,
            suspect: false,
            seq: 0,
            ack: 0,
            ack_flag: false,
            ttl: 0,
            ip_id: 0,
            payload_len: 0,
            flow_uid: 0,
            cause: Cause::Unknown,
            cause_detail: String::new(),
            silence_ms: 0,
            encap: Encap::None,
            tunnel_id: 0,
        }
    }
}

/// Any record of the offline contract, tagged with `"type"` in JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    /// An RST event.
    Rst(RstEvent),
    /// A flow record.
    Flow(FlowRecord),
    /// An aggregate anomaly.
    Anomaly(Anomaly),
}
