//! The engine's counters. Every frame read ends in exactly one of: accepted as TCP, or
//! one rejection reason; so `frames == tcp + sum(rejected)` always holds, and nothing
//! is dropped without a name.

use crate::parse::Reject;
use rstwatch_schema::Cause;

/// An engine's counters, each a plain number; the engine names them for stats and metrics.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Frames handed to the engine.
    pub frames: u64,
    /// Frames parsed as TCP.
    pub tcp: u64,
    /// Frames rejected, by reason (`Reject as usize`).
    pub rejected: [u64; Reject::ALL.len()],
    /// TCP segments with RST set.
    pub rst: u64,
    /// TCP control segments whose checksum was wrong (not used for state).
    pub bad_checksum: u64,
    /// RSTs released before their verdict delay because too many were held.
    pub rst_released_early: u64,
    /// History letters dropped because the history was full.
    pub history_truncated: u64,
    /// Flows closed: by reason.
    pub flows_closed_fin: u64,
    /// Flows closed by an RST.
    pub flows_closed_rst: u64,
    /// Flows closed by their idle timeout.
    pub flows_timed_out: u64,
    /// Flows evicted from a full table.
    pub flows_evicted: u64,
    /// Flows still open at the end of the capture.
    pub flows_end_of_capture: u64,
    /// Established flows evicted (table full) before their idle memory ran out.
    pub flows_forgotten_early: u64,
    /// RSTs released, by cause (`Cause as usize`).
    pub causes: [u64; Cause::ALL.len()],
    /// Flows ended in which a side acknowledged or sent data (not mere SYNs or RSTs:
    /// a scan's or backscatter's flows are one-sided by nature).
    pub flows_conversing: u64,
    /// Of those, flows of which only one direction was seen: the mirror may be missing
    /// a direction (asymmetric routing, a half-duplex mirror port).
    pub flows_one_sided: u64,
}

/// Adds the named counters `more` into `sum`, name by name, new names at the end: the
/// totals of several engines (live fan-out's workers, `replay --workers`' lanes) in
/// the first engine's order.
pub fn add_named(sum: &mut Vec<(&'static str, u64)>, more: &[(&'static str, u64)]) {
    for &(k, v) in more {
        match sum.iter_mut().find(|(n, _)| *n == k) {
            Some((_, s)) => *s += v,
            None => sum.push((k, v)),
        }
    }
}

impl Counters {
    /// Sum of all rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Every counter by name, rejections as `rejected.<reason>`.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![
            ("frames", self.frames),
            ("tcp", self.tcp),
            ("rejected", self.rejected_total()),
        ];
        for r in Reject::ALL {
            v.push((reject_counter_name(*r), self.rejected[*r as usize]));
        }
        v.extend([
            ("rst", self.rst),
            ("bad_checksum", self.bad_checksum),
            ("rst_released_early", self.rst_released_early),
            ("history_truncated", self.history_truncated),
            ("flows_closed_fin", self.flows_closed_fin),
            ("flows_closed_rst", self.flows_closed_rst),
            ("flows_timed_out", self.flows_timed_out),
            ("flows_evicted", self.flows_evicted),
            ("flows_end_of_capture", self.flows_end_of_capture),
            ("flows_forgotten_early", self.flows_forgotten_early),
            ("flows_conversing", self.flows_conversing),
            ("flows_one_sided", self.flows_one_sided),
        ]);
        for c in Cause::ALL {
            v.push((cause_counter_name(*c), self.causes[*c as usize]));
        }
        v
    }
}

/// Conversing flows needed before the one-sided warning is given.
pub const ONE_SIDED_MIN_FLOWS: u64 = 10;
/// Share of conversing flows seen one-sided (percent) from which the warning is given.
pub const ONE_SIDED_WARN_PERCENT: u64 = 20;

/// The warning for an operator whose mirror delivers one direction only, from named
/// counters (one engine's or summed over workers); `None` when the mirror looks whole.
pub fn one_sided_warning(counters: &[(&str, u64)]) -> Option<String> {
    let get = |name: &str| {
        counters
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    let (all, one) = (get("flows_conversing"), get("flows_one_sided"));
    if all < ONE_SIDED_MIN_FLOWS || one * 100 < all * ONE_SIDED_WARN_PERCENT {
        return None;
    }
    Some(format!(
        "{} % of flows seen in one direction only ({one} of {all}): is the mirror missing a direction?",
        one * 100 / all
    ))
}

/// `cause.<name>`: RSTs released with that cause.
fn cause_counter_name(c: Cause) -> &'static str {
    const NAMES: [&str; Cause::ALL.len()] = [
        "cause.injection",
        "cause.scan",
        "cause.backscatter",
        "cause.refused",
        "cause.connect_race",
        "cause.server_overload",
        "cause.state_loss",
        "cause.keepalive_race",
        "cause.idle_timeout",
        "cause.middlebox",
        "cause.write_after_close",
        "cause.unread_data_close",
        "cause.abort",
        "cause.unknown",
    ];
    NAMES[c as usize]
}

fn reject_counter_name(r: Reject) -> &'static str {
    macro_rules! names {
        ($($v:ident => $s:literal),+ $(,)?) => {
            match r { $( Reject::$v => $s ),+ }
        };
    }
    names! {
        TruncatedLink => "rejected.truncated_link",
        UnsupportedLinkType => "rejected.unsupported_link_type",
        NotIp => "rejected.not_ip",
        TruncatedIp => "rejected.truncated_ip",
        BadIhl => "rejected.bad_ihl",
        BadIpVersion => "rejected.bad_ip_version",
        BadIpLength => "rejected.bad_ip_length",
        NotTcp => "rejected.not_tcp",
        LaterFragment => "rejected.later_fragment",
        ShortFirstFragment => "rejected.short_first_fragment",
        BadIpv6Ext => "rejected.bad_ipv6_ext",
        TruncatedTcp => "rejected.truncated_tcp",
        BadTcpOffset => "rejected.bad_tcp_offset",
        TunnelTooDeep => "rejected.tunnel_too_deep",
        UnknownGreProtocol => "rejected.unknown_gre_protocol",
        TruncatedTunnel => "rejected.truncated_tunnel",
        BadTunnelHeader => "rejected.bad_tunnel_header",
        UnknownTunnelPayload => "rejected.unknown_tunnel_payload",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_counter_names_extend_the_cause_names() {
        for c in Cause::ALL {
            assert_eq!(cause_counter_name(*c), format!("cause.{}", c.as_str()));
        }
    }

    #[test]
    fn one_sided_warning_needs_enough_flows_and_a_large_share() {
        let c = |all, one| vec![("flows_conversing", all), ("flows_one_sided", one)];
        assert_eq!(one_sided_warning(&c(9, 9)), None);
        assert_eq!(one_sided_warning(&c(100, 19)), None);
        let w = one_sided_warning(&c(100, 92)).unwrap();
        assert!(
            w.starts_with("92 % of flows seen in one direction only"),
            "{w}"
        );
        assert!(w.ends_with("is the mirror missing a direction?"), "{w}");
    }

    #[test]
    fn reject_counter_names_extend_the_reject_names() {
        for r in Reject::ALL {
            assert_eq!(reject_counter_name(*r), format!("rejected.{}", r.as_str()));
        }
    }
}
