//! Synthetic records for the report's unit tests.

use rstwatch_schema::{
    Anomaly, AnomalyKind, Cause, CloseReason, ConnState, Dir, FlowRecord, RstClass, RstEvent,
    RstFlag, RstFlags,
};

/// 2026-01-01T00:00:00Z, the `gen` default start.
pub(super) const T0_US: i64 = 1_767_225_600_000_000;

/// An RST sent by the server `src:sport` (dir `resp`) at `T0_US`, cause unknown.
pub(super) fn rst(src: &str, sport: u16, dst: &str, dport: u16) -> RstEvent {
    RstEvent {
        ts_us: T0_US,
        src: src.parse().unwrap(),
        sport,
        dst: dst.parse().unwrap(),
        dport,
        vlan: 0,
        inner_vlan: 0,
        dir: Dir::Resp,
        class: RstClass::Abort,
        flags: RstFlags::EMPTY,
        suspect: false,
        seq: 1,
        ack: 0,
        ack_flag: false,
        ttl: 64,
        ip_id: 0,
        payload_len: 0,
        flow_uid: 0,
        cause: Cause::Unknown,
        cause_detail: String::new(),
        silence_ms: 0,
        encap: rstwatch_schema::Encap::None,
        tunnel_id: 0,
    }
}

/// A server RST with the given cause, `secs` after `T0_US`, with `flags`.
pub(super) fn rst_at(
    cause: Cause,
    server: &str,
    client: &str,
    secs: f64,
    flags: &[RstFlag],
) -> RstEvent {
    let (saddr, sport) = split(server);
    let (caddr, cport) = split(client);
    let mut ev = rst(saddr, sport, caddr, cport);
    ev.cause = cause;
    ev.ts_us = T0_US + (secs * 1e6) as i64;
    for f in flags {
        ev.flags.insert(*f);
    }
    ev
}

/// A flow record closed by an RST of `cause` (`None`: closed without one).
pub(super) fn flow(cause: Option<Cause>) -> FlowRecord {
    FlowRecord {
        ts_start_us: T0_US,
        ts_end_us: T0_US + 1_000_000,
        orig_h: "192.0.2.10".parse().unwrap(),
        orig_p: 40000,
        resp_h: "203.0.113.5".parse().unwrap(),
        resp_p: 443,
        vlan: 0,
        inner_vlan: 0,
        conn_state: if cause.is_some() {
            ConnState::Rstr
        } else {
            ConnState::Sf
        },
        history: "ShADadR".into(),
        orig_pkts: 3,
        resp_pkts: 3,
        orig_bytes: 10,
        resp_bytes: 10,
        rst_count: u32::from(cause.is_some()),
        close: if cause.is_some() {
            CloseReason::Rst
        } else {
            CloseReason::Fin
        },
        flow_uid: 0,
        cause,
        encap: rstwatch_schema::Encap::None,
        tunnel_id: 0,
    }
}

pub(super) fn anomaly(kind: AnomalyKind, subject: &str, detail: &str) -> Anomaly {
    Anomaly {
        ts_us: T0_US,
        kind,
        subject: subject.into(),
        value: 30.0,
        baseline: 25.0,
        detail: detail.into(),
    }
}

/// `"addr:port"` or `"[v6]:port"` split in two.
fn split(ep: &str) -> (&str, u16) {
    let (a, p) = ep.rsplit_once(':').unwrap();
    (
        a.trim_start_matches('[').trim_end_matches(']'),
        p.parse().unwrap(),
    )
}
