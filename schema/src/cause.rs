//! Why an RST was sent: the cause vocabulary (DESIGN.md, "Why was it reset: causes").
//!
//! Class and flags say *what* an RST was; the cause says *why*, in the operator's
//! terms, with the remedy beside it. The sensor's `classify::cause` decides one cause
//! per RST from wire evidence, trying the rules in the order of [`Cause::ALL`] (the
//! first that fits wins). The discriminants follow that order too, so sorting by cause
//! sorts by precedence. This module is the one place the names, meanings and remedies
//! live: JSON, ClickHouse (`cause_remedies` dictionary table, `resets_by_cause.sql`),
//! `diagnose` and the collector's report all read them from here.

use crate::str_enum::str_enum;

str_enum! {
    /// The cause of one RST, in order of precedence.
    pub enum Cause {
        /// The RST is `suspect`: forged by an on-path or off-path injector.
        Injection = 0 => "injection",
        /// The RST's flow belongs to a source that crossed the scan thresholds.
        Scan = 1 => "scan",
        /// Unsolicited RST/ACK from a remote that sprays many local addresses: replies
        /// to packets forged with a local source (someone else's DoS).
        Backscatter = 2 => "backscatter",
        /// Answers a SYN: no listener, or a reject rule ("connection refused").
        Refused = 3 => "refused",
        /// A client closing the loser of parallel connection attempts (Happy Eyeballs,
        /// SMB on 139 and 445).
        ConnectRace = 4 => "connect_race",
        /// A server resetting fresh connections at once: accept queue overflow with
        /// `tcp_abort_on_overflow`.
        ServerOverload = 5 => "server_overload",
        /// The server lost the connection's state: a VIP moved to another host, or the
        /// host rebooted.
        StateLoss = 6 => "state_loss",
        /// The server closed an idle keep-alive connection just as the client reused it.
        KeepaliveRace = 7 => "keepalive_race",
        /// A firewall, NAT or load balancer forgot the idle flow and reset it.
        IdleTimeout = 8 => "idle_timeout",
        /// A device on the path (firewall, IPS) reset the flow, not the endpoint.
        Middlebox = 9 => "middlebox",
        /// The resetter had closed its socket; its peer kept sending.
        WriteAfterClose = 10 => "write_after_close",
        /// The resetter closed its socket with data from its peer still unread.
        UnreadDataClose = 11 => "unread_data_close",
        /// An established connection aborted by an application (SO_LINGER 0, crash).
        Abort = 12 => "abort",
        /// Nothing above fits: unsolicited RSTs, one-sided or midstream flows.
        Unknown = 13 => "unknown",
    }
}

impl Cause {
    /// What the operator does about it (the remedy column of DESIGN.md's table).
    pub const fn remedy(self) -> &'static str {
        match self {
            Cause::Injection => "investigate the path; make sure both ends enforce RFC 5961",
            Cause::Scan => "block or ignore the scanner",
            Cause::Backscatter => "nothing local is wrong: a remote is under attack with spoofed sources",
            Cause::Refused => "check the listener and the reject rules for that port",
            Cause::ConnectRace => "benign (parallel connection attempts); filter out",
            Cause::ServerOverload => "raise the listen backlog and net.core.somaxconn, or scale the service",
            Cause::StateLoss => "check failover logs, health checks and connection-state sync",
            Cause::KeepaliveRace => {
                "set the client's idle timeout below the server's keep-alive timeout; retry idempotent requests"
            }
            Cause::IdleTimeout => {
                "send keep-alives or heartbeats more often than the device's timeout, or raise it"
            }
            Cause::Middlebox => "find the device at that hop distance and its policy",
            Cause::WriteAfterClose => "usually benign; check the shutdown order of the two ends",
            Cause::UnreadDataClose => "the application must read what it was sent before closing",
            Cause::Abort => "look at the application on the side that sent the RST",
            Cause::Unknown => "capture both directions from the start of the connections",
        }
    }

    /// One line saying what the cause means, for reports.
    pub const fn meaning(self) -> &'static str {
        match self {
            Cause::Injection => "forged RSTs (TCP reset attack)",
            Cause::Scan => "a scanner's probes",
            Cause::Backscatter => "backscatter from spoofed traffic",
            Cause::Refused => "connection refused: nothing listening, or a reject rule",
            Cause::ConnectRace => "losers of parallel connection attempts",
            Cause::ServerOverload => "server overload (accept queue full)",
            Cause::StateLoss => "server lost the connection state (VIP failover or reboot)",
            Cause::KeepaliveRace => "keep-alive race: an idle connection reused as it closed",
            Cause::IdleTimeout => "idle timeout of a firewall, NAT or load balancer",
            Cause::Middlebox => "reset by a device on the path",
            Cause::WriteAfterClose => "data sent to a socket already closed",
            Cause::UnreadDataClose => "socket closed with unread data",
            Cause::Abort => "connection aborted by an application",
            Cause::Unknown => "not enough evidence",
        }
    }
}

// Written out: the enum's derives live in `str_enum!`, which has no `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for Cause {
    fn default() -> Self {
        Cause::Unknown
    }
}

/// Serde form of a flow's `Option<Cause>`: the name, or `""` when the flow was not
/// closed by an RST (the JSON contract says "the cause of its first RST, or empty").
pub mod opt_name {
    use super::Cause;

    /// Writes the cause's name, or `""` for none.
    pub fn serialize<S: serde::Serializer>(c: &Option<Cause>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.map_or("", Cause::as_str))
    }

    /// Reads a name back; `""` is none.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cause>, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminants_follow_precedence_and_names_round_trip() {
        for (i, c) in Cause::ALL.iter().enumerate() {
            assert_eq!(c.code() as usize, i);
            assert_eq!(c.as_str().parse::<Cause>().unwrap(), *c);
            assert!(!c.remedy().is_empty() && !c.meaning().is_empty());
        }
        assert_eq!(Cause::ALL.last(), Some(&Cause::Unknown));
    }
}
