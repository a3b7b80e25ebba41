//! Why an RST was sent: one cause per RST (DESIGN.md, "Why was it reset: causes").
//!
//! [`decide`] tries the rules in the table's order; the first that fits wins. Each rule
//! is one function below, named after its cause, returning the one-line detail with
//! the numbers behind it. The evidence comes from [`super::evidence`]; thresholds from
//! `[engine.cause]` (see `config::CauseConfig` for the defaults and why).
//!
//! | order | cause | rule |
//! |---|---|---|
//! | 1 | injection | `suspect` |
//! | – | (the first RST's) | a follow-up RST: the resetter had already reset the flow and answers a segment that crossed its first RST (Linux sends a bare RST with the same seq); it carries the first RST's cause |
//! | 2 | scan | the source crossed the scan thresholds: its rejects, and its own RST after a SYN-ACK |
//! | 3 | backscatter | unsolicited RST/ACK from a remote that crossed the backscatter threshold |
//! | 4 | refused | class `reject` |
//! | 5 | connect_race | client RST, no client payload, a parallel connection established ≤ `race_reset_ms` before, SYNs ≤ `race_window_ms` apart |
//! | 6 | server_overload | bare server RST at ISN+1, no server payload, ≤ `overload_rst_ms` + RTT after the handshake, on ≥ `overload_flows` flows of the service in `overload_window_s` |
//! | 7 | state_loss | server RST from a MAC other than the server's in this flow; or the host was silent ≥ `reboot_silence_s`, client data unanswered, ≥ `reboot_flows` flows |
//! | 8 | keepalive_race | resetter's FIN after ≥ `keepalive_idle_s` silence, crossed by peer payload, the RST answers it |
//! | 9 | idle_timeout | flag `idle` (silence > `idle_threshold_s` before the RST or the segment it answers) |
//! | 10 | middlebox | `ttl_mismatch` without injection evidence |
//! | 11 | write_after_close | resetter's FIN, peer payload after (or crossing) it, the RST answers it |
//! | 12 | unread_data_close | no resetter FIN; the peer's payload ≤ `unread_window_ms` before, or crossing the RST (within one RTT and `unread_window_ms`), or a zero window |
//! | 13 | abort | class `abort` |
//! | 14 | unknown | anything else |

use super::evidence::{CauseSettings, Evidence};
use crate::anomaly::Detectors;
use crate::evidence::bursts::BurstCounter;
use crate::evidence::Service;
use rstwatch_schema::{Cause, Dir, IpBytes, RstClass, RstEvent, RstFlag};

/// Cross-flow state the rules read when an RST is released.
pub struct Aggregates<'a> {
    /// Scan and backscatter crossings.
    pub detectors: &'a Detectors,
    /// Accept-queue overflow bursts per service.
    pub overload: &'a BurstCounter<Service>,
    /// Reboot bursts per server host.
    pub reboot: &'a BurstCounter<IpBytes>,
    /// The cause thresholds, in µs.
    pub settings: &'a CauseSettings,
}

/// The cause of `ev` and its one-line detail.
pub fn decide(ev: &RstEvent, e: &Evidence, agg: &Aggregates) -> (Cause, String) {
    type Rule = fn(&RstEvent, &Evidence, &Aggregates) -> Option<String>;
    const RULES: [(Cause, Rule); 13] = [
        (Cause::Injection, injection),
        (Cause::Scan, scan),
        (Cause::Backscatter, backscatter),
        (Cause::Refused, refused),
        (Cause::ConnectRace, connect_race),
        (Cause::ServerOverload, server_overload),
        (Cause::StateLoss, state_loss),
        (Cause::KeepaliveRace, keepalive_race),
        (Cause::IdleTimeout, idle_timeout),
        (Cause::Middlebox, middlebox),
        (Cause::WriteAfterClose, write_after_close),
        (Cause::UnreadDataClose, unread_data_close),
        (Cause::Abort, abort),
    ];
    if let Some(first) = e.first_cause.filter(|_| e.follow_up && !ev.suspect) {
        return (
            first,
            format!(
                "follow-up: answers a segment that crossed the {side}'s first RST ({first})",
                side = side(e)
            ),
        );
    }
    for (cause, rule) in RULES {
        if let Some(detail) = rule(ev, e, agg) {
            return (cause, detail);
        }
    }
    (Cause::Unknown, unknown(ev, e))
}

/// Several workers: each engine's detectors see only its share of a scanner's probes,
/// so the output stage, whose detectors see every RST, applies the two aggregate rules
/// again (`scan`, `backscatter`) and raises an RST's cause when they fit and precede it.
/// Returns whether the cause changed.
pub fn refine(ev: &mut RstEvent, detectors: &Detectors) -> bool {
    if ev.cause <= Cause::Backscatter {
        return false;
    }
    let found = scan_by(ev, detectors)
        .map(|d| (Cause::Scan, d))
        .or_else(|| backscatter_by(ev, detectors).map(|d| (Cause::Backscatter, d)));
    match found {
        Some((c, d)) => {
            ev.cause = c;
            ev.cause_detail = d;
            true
        }
        None => false,
    }
}

fn side(e: &Evidence) -> &'static str {
    if e.from_server {
        "server"
    } else {
        "client"
    }
}

fn peer(e: &Evidence) -> &'static str {
    if e.from_server {
        "client"
    } else {
        "server"
    }
}

/// "12.3 ms", "4 s": durations for details.
fn dur(us: i64) -> String {
    let us = us.max(0);
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 10_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{} s", us / 1_000_000)
    }
}

fn ttl_note(ev: &RstEvent, e: &Evidence) -> String {
    if e.ttl_baseline != 0 && ev.ttl != e.ttl_baseline {
        format!(
            ", RST TTL {} vs the {}'s {}",
            ev.ttl,
            side(e),
            e.ttl_baseline
        )
    } else {
        String::new()
    }
}

fn injection(ev: &RstEvent, e: &Evidence, _: &Aggregates) -> Option<String> {
    if !ev.suspect {
        return None;
    }
    let signals: Vec<&str> = [
        RstFlag::DataAfter,
        RstFlag::TtlMismatch,
        RstFlag::IpidMismatch,
        RstFlag::SeqBehind,
        RstFlag::MultiSeq,
        RstFlag::MultiAck,
    ]
    .iter()
    .filter(|f| ev.flags.contains(**f))
    .map(|f| f.as_str())
    .collect();
    // The TTL against the impersonated side's baseline: the cookbook's
    // `suspected_injections.sql` reads the delta from here.
    Some(format!(
        "forged RST: {}{}",
        signals.join(", "),
        ttl_note(ev, e)
    ))
}

/// The scanner behind a probe's RST, as the scan detector counts it.
fn scanner_of(ev: &RstEvent) -> Option<IpBytes> {
    match (ev.class, ev.dir) {
        (RstClass::Reject, _) => Some(ev.dst),
        (RstClass::HandshakeAbort, Dir::Orig) => Some(ev.src),
        _ => None,
    }
}

fn scan(ev: &RstEvent, _: &Evidence, agg: &Aggregates) -> Option<String> {
    scan_by(ev, agg.detectors)
}

fn scan_by(ev: &RstEvent, detectors: &Detectors) -> Option<String> {
    let s = scanner_of(ev)?;
    let port = if ev.class == RstClass::Reject {
        ev.sport
    } else {
        ev.dport
    };
    detectors
        .is_scanner(&s)
        .then(|| format!("{s} crossed the scan thresholds; this probe hit port {port}"))
}

fn backscatter(ev: &RstEvent, _: &Evidence, agg: &Aggregates) -> Option<String> {
    backscatter_by(ev, agg.detectors)
}

fn backscatter_by(ev: &RstEvent, detectors: &Detectors) -> Option<String> {
    (ev.class == RstClass::Unsolicited && ev.ack_flag && detectors.is_backscatter_source(&ev.src))
        .then(|| {
            format!(
                "unsolicited RST/ACK from {}, which sprays many local addresses",
                ev.src
            )
        })
}

fn refused(ev: &RstEvent, e: &Evidence, _: &Aggregates) -> Option<String> {
    (ev.class == RstClass::Reject).then(|| {
        format!(
            "SYN to port {} answered by RST {} later",
            ev.sport,
            dur(e.silence_us)
        )
    })
}

fn connect_race(_: &RstEvent, e: &Evidence, _: &Aggregates) -> Option<String> {
    let w = e.race?;
    Some(format!(
        "client dropped this attempt {} after its parallel connection to {}:{} was established (SYNs {} apart)",
        dur(w.after_est_us),
        w.server,
        w.server_port,
        dur(w.syn_gap_us)
    ))
}

fn server_overload(ev: &RstEvent, e: &Evidence, agg: &Aggregates) -> Option<String> {
    if !e.overload_candidate {
        return None;
    }
    let n = agg.overload.reached(&(e.server, e.server_port), ev.ts_us)?;
    Some(format!(
        "bare RST at ISN+1 {} after the handshake, no data sent; {n} flows of port {} so reset",
        dur(e.since_established_us.unwrap_or(0)),
        e.server_port
    ))
}

fn state_loss(ev: &RstEvent, e: &Evidence, agg: &Aggregates) -> Option<String> {
    if e.mac_changed {
        return Some(format!(
            "server RST from another MAC ({}) than the server's earlier packets in this flow",
            crate::evidence::macs::Mac(e.rst_mac)
        ));
    }
    if !e.reboot_candidate {
        return None;
    }
    let c = e.comeback?;
    let n = agg.reboot.reached(&e.server, ev.ts_us)?;
    Some(format!(
        "server host silent {} on every flow, client data unanswered; {n} flows reset after it returned",
        dur(c.gap_us)
    ))
}

fn keepalive_race(_: &RstEvent, e: &Evidence, agg: &Aggregates) -> Option<String> {
    let idle = e.fin_idle_us?;
    let bytes = e.peer_data_after_fin?;
    (idle >= agg.settings.keepalive_idle_us && e.fin_crossed && e.answers_peer_data).then(|| {
        format!(
            "{} closed after {} idle; the {}'s {bytes} bytes crossed its FIN",
            side(e),
            dur(idle),
            peer(e)
        )
    })
}

fn idle_timeout(ev: &RstEvent, e: &Evidence, _: &Aggregates) -> Option<String> {
    if !ev.flags.contains(RstFlag::Idle) {
        return None;
    }
    let when = if e.silence_before_segment {
        "before the segment it answers"
    } else {
        "before the RST"
    };
    Some(format!(
        "silent {} {when}{}",
        dur(e.silence_us),
        ttl_note(ev, e)
    ))
}

/// Evidence that the RST was forged rather than sent by a device on the path.
const INJECTION_EVIDENCE: [RstFlag; 4] = [
    RstFlag::DataAfter,
    RstFlag::SeqBehind,
    RstFlag::MultiSeq,
    RstFlag::MultiAck,
];

fn middlebox(ev: &RstEvent, e: &Evidence, _: &Aggregates) -> Option<String> {
    let f = ev.flags;
    (f.contains(RstFlag::TtlMismatch) && !INJECTION_EVIDENCE.iter().any(|x| f.contains(*x))).then(
        || {
            let hops = i16::from(e.ttl_baseline) - i16::from(ev.ttl);
            format!(
                "RST TTL {} vs the {}'s {} ({} hop{} {}): sent by a device on the path",
                ev.ttl,
                side(e),
                e.ttl_baseline,
                hops.abs(),
                if hops.abs() == 1 { "" } else { "s" },
                if hops > 0 { "further" } else { "closer" }
            )
        },
    )
}

fn write_after_close(_: &RstEvent, e: &Evidence, _: &Aggregates) -> Option<String> {
    let bytes = e.peer_data_after_fin?;
    (e.resetter_fin && e.answers_peer_data).then(|| {
        format!(
            "the {} sent {bytes} bytes after the {}'s FIN",
            peer(e),
            side(e)
        )
    })
}

fn unread_data_close(_: &RstEvent, e: &Evidence, agg: &Aggregates) -> Option<String> {
    if e.resetter_fin || !e.known {
        return None;
    }
    if let Some(lag) = e
        .peer_payload_lag_us
        .filter(|&l| l <= agg.settings.unread_window_us)
    {
        return Some(format!(
            "the {} closed {} after the {}'s latest data ({} bytes sent in all), unread",
            side(e),
            dur(lag),
            peer(e),
            e.peer_sent
        ));
    }
    if let Some(after) = e
        .peer_data_after_rst_us
        .filter(|&a| a <= e.crossing_window_us(agg.settings.unread_window_us))
    {
        return Some(format!(
            "the {}'s data crossed the RST ({} after it): it was still sending",
            peer(e),
            dur(after)
        ));
    }
    e.zero_window.then(|| {
        format!(
            "the {} advertised a zero window (not reading) before it reset",
            side(e)
        )
    })
}

fn abort(ev: &RstEvent, e: &Evidence, _: &Aggregates) -> Option<String> {
    (ev.class == RstClass::Abort).then(|| {
        format!(
            "{} aborted after {} bytes sent and {} received{}",
            side(e),
            e.resetter_sent,
            e.peer_sent,
            ttl_note(ev, e)
        )
    })
}

fn unknown(ev: &RstEvent, e: &Evidence) -> String {
    match ev.class {
        _ if !e.known => {
            "no state for this four-tuple (midstream, backscatter or after a failover)".into()
        }
        RstClass::Unsolicited => "only one side of this flow was seen".into(),
        RstClass::HandshakeAbort => "handshake aborted outside a race or a scan".into(),
        _ => "no rule fits".into(),
    }
}
