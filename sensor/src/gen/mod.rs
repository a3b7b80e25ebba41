//! Labelled scenario captures for tests, demos and benchmarks (`rstwatch-sensor gen`).
//!
//! [`generate`] builds the frames of a [`Scenario`] (Ethernet, IPv4/IPv6, TCP with correct
//! checksums, and the few frames that are not TCP a scenario needs) together with one
//! [`Label`] per RST packet it contains: the class, the flags that must be present, the
//! `suspect` verdict and the cause the sensor should reach, per DESIGN.md. [`write_pcap`]
//! writes them as a classic pcap (link type Ethernet, microsecond timestamps,
//! little-endian). A seed gives byte-identical output.
//!
//! # The simulated network
//!
//! The sensor sits on a mirror port beside the local servers (203.0.113.0/24,
//! 2001:db8:a::/48, Linux, TTL 64 at the sensor). Remote hosts (198.51.100.0/24 and
//! 2001:db8:c::/64 for ordinary clients, 192.0.2.0/24 and 2001:db8:e::/48,
//! 2001:db8:f::/48 for the actors of the scenarios) are 4 to 19 hops away, a third of the
//! ordinary ones Windows (baseline 128), the rest Linux (64); a host's TTL at the sensor
//! is the same in every packet it really sends. Round trips to remote hosts are 10-150 ms,
//! local hosts react within 30-280 µs.
//!
//! Every local host has its own MAC (02:00:0a: and the last three bytes of its
//! address; a dual-stack host one MAC for both); frames from and to remote hosts carry
//! the router's MAC. Hosts behind a routed firewall (`idle-timeout`'s servers) arrive
//! with the firewall's MAC and one hop less TTL; a keepalived VIP carries the MAC of the
//! node that holds it.
//!
//! Stacks behave as Linux and Windows do: SYNs carry MSS, SACK-permitted, timestamps
//! (Linux only) and window scale (Linux 7, Windows 8); the window field is constant after
//! the handshake (Linux 502, Windows 513, scaled), so "inside the receive window" has one
//! meaning per flow. IPv4 packets have DF set and an IP ID from a per-connection counter
//! with a random start, +1 per packet (Linux's per-socket `inet_id`; a per-host counter
//! would make IDs jump within a flow whenever the host talks to others). Resets a kernel
//! sends without a socket (closed port, data to a closed socket, accept queue overflow)
//! carry IP ID 0, no options and window 0, as Linux's `tcp_v4_send_reset` does; an RST
//! to a segment with ACK has seq = that segment's ack and no ACK flag, an RST to a SYN is
//! RST/ACK with seq 0 and ack = ISN+1. Sockets that abort (`tcp_send_active_reset`, also
//! `close()` with unread data) send RST/ACK with seq = SND.NXT and ack = RCV.NXT and keep
//! counting IP IDs. Segments that cross a first RST each draw another bare RST with the
//! same seq (so a label is identified by its timestamp too).
//!
//! Every RST that carries a `seq_*` label is sent when everything its sender sent has
//! been acknowledged, or with the seq its receiver last acknowledged (`keepalive-race`:
//! the FIN's own seq, which the client had not acknowledged yet), so the sensor's
//! "receiver's next expected seq" has one meaning. No flow has sequence gaps (never
//! `lossy`).
//!
//! Frames that are not TCP (`vip-failover`'s gratuitous ARPs, IPv6 neighbour
//! advertisements and VRRP advertisements) are counted in [`Generated::not_ip`] and
//! [`Generated::not_tcp`], as the sensor's parser rejects them.
//!
//! # Labels by scenario
//!
//! `flags` lists the flags that must be present; the classifier may add others (for
//! example `rst_and_rstack`) as long as the verdict stays as labelled. Direction follows
//! Zeek: the originator is the SYN sender; an RST with no flow state has direction
//! `unknown`. The cause is what DESIGN's rules give, the first that fits in the order of
//! its table, with the default thresholds; `cause_tests` checks that each label's
//! evidence is in the packets.
//!
//! | scenario | RSTs | class | dir | flags | suspect | cause |
//! |---|---|---|---|---|---|---|
//! | `refused` | 24 RST/ACKs to SYNs on closed ports (6 IPv6, some from Windows servers) | `reject` | resp | – | no | `refused` |
//! | `abort` | 12 flows reset mid-response (4 IPv6): 6 by the client, 5-90 ms after the response's last bytes (download cancelled, data unread); 6 by the server 5-300 ms after its last segment was acknowledged (SO_LINGER 0) | `abort` | orig / resp | `seq_exact` | no | `unread_data_close` / `abort` |
//! | `idle-timeout` | 6 flows (2 IPv6) silent 380-440 s; then the client's request is reset by the firewall in front of the servers (TTL 64 vs the servers' 63), or the server's push by the firewall one hop before the client (TTL client's + 1); bare RST, IP ID 0, to the segment's sender only | `abort` | resp / orig | `idle`, `seq_exact`, `ttl_mismatch` | no | `idle_timeout` |
//! | `after-fin` | 6 flows: the client closed and the server's late response draws the client's RST; or the server closed after 1-4 s idle, the client acknowledged the FIN and its next request draws the server's RST | `abort` | orig / resp | `after_fin`, `seq_exact` | no | `write_after_close` |
//! | `injection` | see below | `abort` | orig / resp | see below | see below | `injection`; the server's genuine RST in group A: `unread_data_close` |
//! | `blind-inwindow` | 2 BGP sessions × 40 bare RSTs from an off-path attacker, seq stepping by the victim's receive window; exactly one per walk lands inside (challenge ACK follows); the real peer's keepalive follows 25 ms after the walk | `abort` | orig (IPv4), resp (IPv6) | `seq_in_window` or `seq_out_of_window`, `ttl_mismatch`, `data_after` | yes | `injection` |
//! | `storm` | `--flows` (at least 1200, default 2000) flows to 203.0.113.10:443 reset by the load balancer within 200 ms (its pool went down); 4/5 have their handshake in the capture, 1/5 (at most 400 000) are long-lived connections from 20 NAT addresses that sent nothing during the capture | `abort` / `unsolicited` | resp / unknown | `seq_exact` / – | no | `abort` / `unknown` |
//! | `scan` | SYN scan from 192.0.2.66, one probe every 0.6-0.9 s: port 23 on 36 hosts (32 closed → RST/ACK, 4 filtered), 24 ports on 203.0.113.25 (21 closed; 22, 80, 443 open → SYN-ACK, the scanner's kernel sends RST) | `reject` / `handshake_abort` | resp / orig | – | no | `refused` for the first 24 rejects, `scan` from the 25th rejecting host on |
//! | `backscatter` | 80-200 RST/ACKs (seq 0), 0.6-1.2 s apart, from 192.0.2.99 to 40 local addresses, no prior packets | `unsolicited` | unknown | – | no | `unknown` until the 25th address, then `backscatter` |
//! | `server-overload` | pool warm-ups of local clients to a remote MySQL (192.0.2.33, 2001:db8:f::33): 12 + 8 connections 2-10 ms apart, 8 + 5 of them reset by a bare RST (seq ISN+1, ack 0, window 0, no options, ID 0) one round trip after the handshake ACK; the rest work | `abort` | resp | `seq_exact` | no | `server_overload` |
//! | `vip-failover` | 9 clients (3 IPv6) idle on a keepalived VIP (203.0.113.80, 2001:db8:a::80) when node A dies; node B takes over 3.6 s later (GARPs, NAs, VRRP: not TCP) and answers each client's next request with a bare RST from its MAC, ID 0; the clients reconnect | `abort` | resp | `seq_exact` | no | `state_loss` |
//! | `reboot` | a PostgreSQL host (203.0.113.70, 2001:db8:a::70) dies with queries outstanding on 4 + 3 pooled connections; the clients retransmit with backoff; 45+ s later its kernel answers each next retransmission with a bare RST (same MAC, ID 0); the clients reconnect | `abort` | resp | `seq_exact` | no | `state_loss` |
//! | `connect-race` | twice each: smbclient (Linux) 445 then 139 5 ms later, 139's late SYN-ACK reset by the kernel; Windows 445 and 139 together, 139 reset with RST/ACK once established; Happy Eyeballs (curl, 200 ms) from a local dual-stack host, IPv4 or IPv6 winning, the loser's late SYN-ACK reset by the kernel | `handshake_abort` / `abort` (Windows) | orig | `seq_exact` | no | `connect_race` |
//! | `keepalive-race` | 6 HTTP flows (2 IPv6) idle 5 s; the server's FIN crosses the client's next request, which does not acknowledge it; bare RST (seq = the FIN's), then a second one (FIN+1) for the client's late ACK of the FIN | `abort` | resp | `after_fin`, `seq_exact` | no | `keepalive_race` |
//! | `write-after-close` | 6 flows: `Connection: close` response and FIN; the client acknowledges the FIN and sends another request 50 ms-2 s later; bare RST | `abort` | resp | `after_fin`, `seq_exact` | no | `write_after_close` |
//! | `unread-close` | 8 uploads the server closes unread: complete and acknowledged; last segment unacknowledged (the RST/ACK acknowledges it); mid-upload with 3 crossing segments, each answered by a bare RST; zero window and probes, closed seconds later | `abort` | resp | `seq_exact` | no | `unread_data_close` |
//! | `middlebox` | 8 flows (4 IPv6) blocked by an inline IPS three hops upstream that resets both ends (TTL 61, ID 0, RST/ACK); the sensor sees the RST towards the local end: to local servers "from" remote clients, to local clients "from" remote servers | `abort` | orig / resp | `seq_exact`, `ttl_mismatch` | no | `middlebox` |
//! | `app-abort` | 6 flows: SO_LINGER 0 closes with everything acknowledged, 0.15-4 s after the last response: the client's pool (3) or the server (3) | `abort` | orig / resp | `seq_exact` | no | `abort` |
//! | `mixed` | all of the above in `--flows` background flows over ten minutes | as above | | | | |
//!
//! Expected anomalies: `storm` → `rst_storm`; `scan` → `scan`; `backscatter` →
//! `backscatter`; `injection` and `blind-inwindow` → `injection` (three or more suspect
//! RSTs from one source within seconds); `vip-failover` → `failover`; `mixed` → all five.
//!
//! ## `injection`
//!
//! The impersonated clients (192.0.2.11-18, 2001:db8:e::11-14) are Linux hosts 12 hops
//! away (TTL 52 at the sensor); the injector's packets arrive with TTL 243. The server is
//! 203.0.113.30 / 2001:db8:a::1e. Every forged RST carries at least two independent
//! signals, so it is `suspect` under the rule "data_after, or two or more of
//! {ttl_mismatch, ipid_mismatch, multi_seq, multi_ack, seq_behind} and not lossy":
//!
//! - **A** (4 flows, 2 IPv6): one forged RST/ACK "from the client", seq exact, TTL 243,
//!   IP ID copied from the client's sequence (no IP ID signal); the client's next
//!   request follows 20-80 ms later. Label `seq_exact`, `ttl_mismatch`, `data_after`,
//!   suspect. The server, reset by it, answers that request with a stateless RST
//!   (seq = the request's ack): a genuine reset, labelled `abort`/resp/`seq_exact`, not
//!   suspect.
//! - **B** (2 flows): a burst of three RST/ACKs 10-40 µs apart right after a request,
//!   seq X, X + W/4, X + W/2 (X the client's next seq, W the server's receive window),
//!   TTL 243, IP IDs from the injector's own counter (8000+ away from the client's).
//!   First: `seq_exact`, `ttl_mismatch`, `ipid_mismatch`; second and third:
//!   `seq_in_window`, `multi_seq`, `ttl_mismatch`, `ipid_mismatch`. All suspect. Nothing
//!   follows (both ends were reset).
//! - **C** (2 flows): TTL copied (52), IP ID 8000+ off, seq three segments ahead of the
//!   server's next expected (inside the window): the server sends a challenge ACK and the
//!   client continues its upload 20-60 ms later. Label `seq_in_window`, `ipid_mismatch`,
//!   `data_after`, suspect.

mod control;
pub mod encap;
pub mod packet;
mod rng;
mod scenarios;
mod world;

#[cfg(test)]
mod cause_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use rstwatch_schema::{AnomalyKind, Cause, Dir, IpBytes, RstClass, RstEvent, RstFlag};

use crate::parse::LinkType;

/// The link type of every generated frame.
pub const LINK_TYPE: LinkType = LinkType::Ethernet;

/// 2026-01-01T00:00:00Z: the default start of a generated capture.
pub const DEFAULT_START_US: i64 = 1_767_225_600_000_000;

/// Minimum number of flows in `storm` (below it the per-endpoint storm rule of 1000
/// RSTs could not fire).
pub const STORM_MIN_FLOWS: usize = 1200;

/// A labelled scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// SYNs to closed ports answered by RST/ACK (refused).
    Refused,
    /// Mid-response resets: client (unread_data_close), server (abort).
    Abort,
    /// Silent ~400 s, then a firewall RST to the next sender (idle_timeout).
    IdleTimeout,
    /// One side closed, the other kept sending (write_after_close).
    AfterFin,
    /// Forged RSTs: TTL off, GFW-style burst, data after (injection).
    Injection,
    /// Off-path RSTs walking a BGP session's window (injection).
    BlindInWindow,
    /// A load balancer resets --flows flows in 200 ms (rst_storm; abort).
    Storm,
    /// SYN scan: 36 hosts on port 23, 24 ports on one host (scan).
    Scan,
    /// RST/ACKs from a DoS victim to 40 local hosts (backscatter).
    Backscatter,
    /// Accept queue overflow, bare RSTs after handshake (server_overload).
    ServerOverload,
    /// Keepalived VIP moves; backup's MAC resets old flows (state_loss).
    VipFailover,
    /// Server silent 45+ s, clients retransmit, then RSTs (state_loss).
    Reboot,
    /// SMB 445/139 and Happy Eyeballs losers reset (connect_race).
    ConnectRace,
    /// Idle keep-alive closed as the next request crosses (keepalive_race).
    KeepaliveRace,
    /// Data after the peer's FIN answered by RST (write_after_close).
    WriteAfterClose,
    /// Upload closed unread: RST/ACK, crossing data (unread_data_close).
    UnreadClose,
    /// An inline IPS resets both ends, TTL off by its hops (middlebox).
    Middlebox,
    /// SO_LINGER 0 aborts with everything acknowledged (abort).
    AppAbort,
    /// All of the above in --flows background HTTP(S) flows, 10 min.
    Mixed,
}

impl Scenario {
    /// Every scenario, in the order of the documentation.
    pub const ALL: &'static [Scenario] = &[
        Scenario::Refused,
        Scenario::Abort,
        Scenario::IdleTimeout,
        Scenario::AfterFin,
        Scenario::Injection,
        Scenario::BlindInWindow,
        Scenario::Storm,
        Scenario::Scan,
        Scenario::Backscatter,
        Scenario::ServerOverload,
        Scenario::VipFailover,
        Scenario::Reboot,
        Scenario::ConnectRace,
        Scenario::KeepaliveRace,
        Scenario::WriteAfterClose,
        Scenario::UnreadClose,
        Scenario::Middlebox,
        Scenario::AppAbort,
        Scenario::Mixed,
    ];

    /// The name used on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scenario::Refused => "refused",
            Scenario::Abort => "abort",
            Scenario::IdleTimeout => "idle-timeout",
            Scenario::AfterFin => "after-fin",
            Scenario::Injection => "injection",
            Scenario::BlindInWindow => "blind-inwindow",
            Scenario::Storm => "storm",
            Scenario::Scan => "scan",
            Scenario::Backscatter => "backscatter",
            Scenario::ServerOverload => "server-overload",
            Scenario::VipFailover => "vip-failover",
            Scenario::Reboot => "reboot",
            Scenario::ConnectRace => "connect-race",
            Scenario::KeepaliveRace => "keepalive-race",
            Scenario::WriteAfterClose => "write-after-close",
            Scenario::UnreadClose => "unread-close",
            Scenario::Middlebox => "middlebox",
            Scenario::AppAbort => "app-abort",
            Scenario::Mixed => "mixed",
        }
    }

    /// One line saying what the scenario contains, with the causes its RSTs get.
    pub const fn description(self) -> &'static str {
        match self {
            Scenario::Refused => "SYNs to closed ports answered by RST/ACK (refused)",
            Scenario::Abort => "mid-response resets: client (unread_data_close), server (abort)",
            Scenario::IdleTimeout => {
                "silent ~400 s, then a firewall RST to the next sender (idle_timeout)"
            }
            Scenario::AfterFin => "one side closed, the other kept sending (write_after_close)",
            Scenario::Injection => "forged RSTs: TTL off, GFW-style burst, data after (injection)",
            Scenario::BlindInWindow => "off-path RSTs walking a BGP session's window (injection)",
            Scenario::Storm => "a load balancer resets --flows flows in 200 ms (rst_storm; abort)",
            Scenario::Scan => "SYN scan: 36 hosts on port 23, 24 ports on one host (scan)",
            Scenario::Backscatter => "RST/ACKs from a DoS victim to 40 local hosts (backscatter)",
            Scenario::ServerOverload => {
                "accept queue overflow, bare RSTs after handshake (server_overload)"
            }
            Scenario::VipFailover => {
                "keepalived VIP moves; backup's MAC resets old flows (state_loss)"
            }
            Scenario::Reboot => "server silent 45+ s, clients retransmit, then RSTs (state_loss)",
            Scenario::ConnectRace => "SMB 445/139 and Happy Eyeballs losers reset (connect_race)",
            Scenario::KeepaliveRace => {
                "idle keep-alive closed as the next request crosses (keepalive_race)"
            }
            Scenario::WriteAfterClose => {
                "data after the peer's FIN answered by RST (write_after_close)"
            }
            Scenario::UnreadClose => {
                "upload closed unread: RST/ACK, crossing data (unread_data_close)"
            }
            Scenario::Middlebox => {
                "an inline IPS resets both ends, TTL off by its hops (middlebox)"
            }
            Scenario::AppAbort => "SO_LINGER 0 aborts with everything acknowledged (abort)",
            Scenario::Mixed => "all of the above in --flows background HTTP(S) flows, 10 min",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .iter()
            .copied()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|x| x.as_str()).collect();
                format!("unknown scenario {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// The list of scenarios with their descriptions, for `--help`.
pub fn scenario_help() -> String {
    let mut s = String::from("Scenarios:\n");
    for sc in Scenario::ALL {
        s.push_str(&format!("  {:<18} {}\n", sc.as_str(), sc.description()));
    }
    s
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Seed of the generator: the same seed gives the same capture.
    pub seed: u64,
    /// Background flows in `mixed`; flows reset in `storm` (at least
    /// [`STORM_MIN_FLOWS`]). The other scenarios have a fixed shape.
    pub flows: usize,
    /// Timestamp of the start of the capture, microseconds since the epoch.
    pub start_us: i64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            seed: 1,
            flows: 2000,
            start_us: DEFAULT_START_US,
        }
    }
}

/// One captured frame (Ethernet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Microseconds since the epoch.
    pub ts_us: i64,
    /// The frame's bytes.
    pub data: Vec<u8>,
}

/// What the classifier should say about one generated RST packet, identified by its
/// timestamp, four-tuple as sent and sequence number (unique within a [`Generated`]; the
/// timestamp is part of the key because a stack answers every segment that crosses its
/// first RST with another RST of the same seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The RST's timestamp.
    pub ts_us: i64,
    /// Source address of the RST packet.
    pub src: IpBytes,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: IpBytes,
    /// Destination port.
    pub dport: u16,
    /// Sequence number of the RST.
    pub seq: u32,
    /// Base class expected.
    pub class: RstClass,
    /// Which side sent it (Zeek orientation); `Unknown` for unsolicited RSTs.
    pub dir: Dir,
    /// Flags that must be present (others may be too).
    pub flags: Vec<RstFlag>,
    /// Whether it must be `suspect`.
    pub suspect: bool,
    /// Why it was sent, by DESIGN.md's cause rules (first that fits wins).
    pub cause: Cause,
}

impl Label {
    /// True when this label is about the RST event `ev` (same packet: timestamp,
    /// four-tuple and seq).
    pub fn is_for(&self, ev: &RstEvent) -> bool {
        self.ts_us == ev.ts_us
            && self.src == ev.src
            && self.sport == ev.sport
            && self.dst == ev.dst
            && self.dport == ev.dport
            && self.seq == ev.seq
    }

    /// The label as a JSON object (the form `gen --labels` writes, one per line).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ts": rstwatch_schema::timefmt::rfc3339_micros(self.ts_us),
            "src": self.src.to_string(),
            "sport": self.sport,
            "dst": self.dst.to_string(),
            "dport": self.dport,
            "seq": self.seq,
            "class": self.class.as_str(),
            "dir": self.dir.as_str(),
            "flags": self.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            "suspect": self.suspect,
            "cause": self.cause.as_str(),
        })
    }
}

/// A generated scenario.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Sorted by timestamp.
    pub frames: Vec<Frame>,
    /// One per RST frame, sorted by timestamp.
    pub labels: Vec<Label>,
    /// Anomaly kinds the scenario must raise at least once.
    pub anomalies: Vec<AnomalyKind>,
    /// Connections (distinct four-tuples) in the capture.
    pub flows: usize,
    /// Frames that are not IP (ARP: a VIP's gratuitous ARPs), which the sensor counts
    /// as `rejected.not_ip`.
    pub not_ip: usize,
    /// IP frames that are not TCP (VRRP advertisements, IPv6 neighbour advertisements),
    /// counted as `rejected.not_tcp`.
    pub not_tcp: usize,
}

/// Generates scenario `s`. Deterministic: the same options give the same frames.
pub fn generate(s: Scenario, o: &GenOptions) -> Generated {
    let stream = Scenario::ALL.iter().position(|x| *x == s).unwrap_or(0) as u64;
    let mut w = world::World::new(rng::Rng::derive(o.seed, stream));
    let t0 = o.start_us;
    match s {
        Scenario::Refused => scenarios::refused(&mut w, t0),
        Scenario::Abort => scenarios::abort(&mut w, t0),
        Scenario::IdleTimeout => scenarios::idle_timeout(&mut w, t0),
        Scenario::AfterFin => scenarios::after_fin(&mut w, t0),
        Scenario::Injection => scenarios::injection(&mut w, t0),
        Scenario::BlindInWindow => scenarios::blind_inwindow(&mut w, t0),
        Scenario::Storm => scenarios::storm(&mut w, t0, o.flows.max(STORM_MIN_FLOWS)),
        Scenario::Scan => scenarios::scan(&mut w, t0),
        Scenario::Backscatter => scenarios::backscatter(&mut w, t0),
        Scenario::ServerOverload => scenarios::server_overload(&mut w, t0),
        Scenario::VipFailover => scenarios::vip_failover(&mut w, t0),
        Scenario::Reboot => scenarios::reboot(&mut w, t0),
        Scenario::ConnectRace => scenarios::connect_race(&mut w, t0),
        Scenario::KeepaliveRace => scenarios::keepalive_race(&mut w, t0),
        Scenario::WriteAfterClose => scenarios::write_after_close(&mut w, t0),
        Scenario::UnreadClose => scenarios::unread_close(&mut w, t0),
        Scenario::Middlebox => scenarios::middlebox(&mut w, t0),
        Scenario::AppAbort => scenarios::app_abort(&mut w, t0),
        Scenario::Mixed => scenarios::mixed(&mut w, o.seed, t0, o.flows),
    }
    let out = w.into_parts();
    let (mut frames, mut labels) = (out.frames, out.labels);
    // Stable: frames of equal timestamps keep the order they were sent in.
    frames.sort_by_key(|f| f.ts_us);
    labels.sort_by_key(|l| l.ts_us);
    Generated {
        frames,
        labels,
        anomalies: out.anomalies,
        flows: out.flows,
        not_ip: out.not_ip,
        not_tcp: out.not_tcp,
    }
}

/// Writes `frames` as a pcap to `path`.
pub fn write_pcap(path: &Path, frames: &[Frame]) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let w = write_pcap_to(std::io::BufWriter::with_capacity(1 << 20, f), frames)
        .with_context(|| format!("writing {}", path.display()))?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes `frames` as a pcap (Ethernet, microsecond timestamps, little-endian) to `w`
/// and returns the writer.
pub fn write_pcap_to<W: Write>(w: W, frames: &[Frame]) -> anyhow::Result<W> {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: 65535,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
    };
    let mut pw = PcapWriter::with_header(w, header).context("writing the pcap header")?;
    for (i, f) in frames.iter().enumerate() {
        let ts = u64::try_from(f.ts_us)
            .ok()
            .filter(|us| us / 1_000_000 <= u64::from(u32::MAX))
            .with_context(|| format!("frame {i}: timestamp {} out of pcap range", f.ts_us))?;
        let len = u32::try_from(f.data.len()).context("frame too long")?;
        pw.write_packet(&PcapPacket::new(Duration::from_micros(ts), len, &f.data))
            .with_context(|| format!("writing frame {i}"))?;
    }
    Ok(pw.into_writer())
}
