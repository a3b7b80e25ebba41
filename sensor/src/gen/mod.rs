//! Labelled scenario captures for tests, demos and benchmarks (`rstwatch-sensor gen`).
//!
//! [`generate`] builds the frames of a [`Scenario`] (Ethernet, IPv4/IPv6, TCP with correct
//! checksums) together with one [`Label`] per RST packet it contains: the class, the
//! flags that must be present and the `suspect` verdict the classifier should reach, per
//! DESIGN.md. [`write_pcap`] writes them as a classic pcap (link type Ethernet,
//! microsecond timestamps, little-endian). A seed gives byte-identical output.
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
//! Stacks behave as Linux and Windows do: SYNs carry MSS, SACK-permitted, timestamps
//! (Linux only) and window scale (Linux 7, Windows 8); the window field is constant after
//! the handshake (Linux 502, Windows 513, scaled), so "inside the receive window" has one
//! meaning per flow. IPv4 packets have DF set and an IP ID from a per-connection counter
//! with a random start, +1 per packet (Linux's per-socket `inet_id`; a per-host counter
//! would make IDs jump within a flow whenever the host talks to others). Resets a kernel
//! sends without a socket (closed port, data to a closed socket) carry IP ID 0, no
//! options and window 0, as Linux's `tcp_v4_send_reset` does; an RST to a segment with
//! ACK has seq = that segment's ack and no ACK flag, an RST to a SYN is RST/ACK with seq
//! 0 and ack = ISN+1. Sockets that abort (`tcp_send_active_reset`) send RST/ACK with seq =
//! SND.NXT and ack = RCV.NXT and keep counting IP IDs.
//!
//! Every RST that carries a `seq_*` label is sent when everything its sender sent has
//! been acknowledged, so "the receiver's next expected seq" is the same whether taken
//! from the highest byte the sender sent or from the receiver's last ACK. No flow has
//! sequence gaps (never `lossy`).
//!
//! # Labels by scenario
//!
//! `flags` lists the flags that must be present; the classifier may add others (for
//! example `rst_and_rstack`, or `ipid_mismatch` on a Linux stateless reset whose IP ID 0
//! differs from the socket's counter) as long as the verdict stays as labelled. Direction
//! follows Zeek: the originator is the SYN sender; an RST with no flow state has
//! direction `unknown`.
//!
//! | scenario | RSTs | class | dir | flags | suspect |
//! |---|---|---|---|---|---|
//! | `refused` | 24 RST/ACKs to SYNs on closed ports (6 IPv6, some from Windows servers) | `reject` | resp | – | no |
//! | `abort` | 12 flows reset mid-response, 6 by the client (download cancelled), 6 by the server (abortive close); 4 IPv6 | `abort` | orig / resp | `seq_exact` | no |
//! | `idle-timeout` | 4 flows, silent 380-440 s, then an RST/ACK from the server's side (its firewall: same hop count and IP ID sequence), the first packet after the silence | `abort` | resp | `idle`, `seq_exact` | no |
//! | `after-fin` | 6 flows: the client closed and the server's late response draws the client's RST; or the server closed (keep-alive timeout) and the client's next request draws the server's RST | `abort` | orig / resp | `after_fin`, `seq_exact` | no |
//! | `injection` | see below | `abort` | orig / resp | see below | see below |
//! | `blind-inwindow` | 2 BGP sessions × 40 bare RSTs from an off-path attacker, seq stepping by the victim's receive window; exactly one per walk lands inside (challenge ACK follows); the real peer's keepalive follows 25 ms after the walk | `abort` | orig (IPv4), resp (IPv6) | `seq_in_window` or `seq_out_of_window`, `ttl_mismatch`, `data_after` | yes |
//! | `storm` | `--flows` (at least 1200, default 2000) flows to 203.0.113.10:443 reset by the load balancer within 200 ms; 4/5 have their handshake in the capture, 1/5 (at most 400 000) are long-lived connections from 20 NAT addresses that sent nothing during the capture | `abort` / `unsolicited` | resp / unknown | `seq_exact` / – | no |
//! | `scan` | SYN scan from 192.0.2.66: port 23 on 36 hosts (32 closed → RST/ACK, 4 filtered), 24 ports on 203.0.113.25 (21 closed; 22, 80, 443 open → SYN-ACK, the scanner's kernel sends RST) | `reject` / `handshake_abort` | resp / orig | – | no |
//! | `backscatter` | 80-200 RST/ACKs (seq 0) from 192.0.2.99 to 40 local addresses over a minute, no prior packets | `unsolicited` | unknown | – | no |
//! | `mixed` | all of the above in `--flows` background flows over ten minutes | as above | | | |
//!
//! Expected anomalies: `storm` → `rst_storm`; `scan` → `scan`; `backscatter` →
//! `backscatter`; `injection` and `blind-inwindow` → `injection` (three or more suspect
//! RSTs from one source within seconds); `mixed` → all four.
//!
//! ## `injection`
//!
//! The impersonated clients (192.0.2.11-18, 2001:db8:e::11-14) are Linux hosts 12 hops
//! away (TTL 52 at the sensor); the injector's packets arrive with TTL 243. The server is
//! 203.0.113.30 / 2001:db8:a::30. Every forged RST carries at least two independent
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

pub mod encap;
pub mod packet;
mod rng;
mod scenarios;
mod world;

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
use rstwatch_schema::{AnomalyKind, Dir, IpBytes, RstClass, RstFlag};

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
    Refused,
    Abort,
    IdleTimeout,
    AfterFin,
    Injection,
    BlindInWindow,
    Storm,
    Scan,
    Backscatter,
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
            Scenario::Mixed => "mixed",
        }
    }

    /// One line saying what the scenario contains.
    pub const fn description(self) -> &'static str {
        match self {
            Scenario::Refused => "SYNs to closed ports answered by RST/ACK (reject)",
            Scenario::Abort => "flows reset mid-transfer by either side, seq exact (abort)",
            Scenario::IdleTimeout => "flows silent ~400 s, then a firewall RST (abort, idle)",
            Scenario::AfterFin => "one side closed, the other kept sending (abort, after_fin)",
            Scenario::Injection => "forged RSTs: TTL off, GFW-style burst, data after (suspect)",
            Scenario::BlindInWindow => "off-path RSTs walking a BGP session's window (suspect)",
            Scenario::Storm => "VIP failover resets --flows flows in 200 ms (rst_storm)",
            Scenario::Scan => "SYN scan: 36 hosts on port 23, 24 ports on one host (scan)",
            Scenario::Backscatter => "RST/ACKs from a DoS victim to 40 local hosts (backscatter)",
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
        s.push_str(&format!("  {:<15} {}\n", sc.as_str(), sc.description()));
    }
    s
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
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
    pub data: Vec<u8>,
}

/// What the classifier should say about one generated RST packet, identified by its
/// four-tuple as sent and its sequence number (unique within a [`Generated`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The RST's timestamp.
    pub ts_us: i64,
    pub src: IpBytes,
    pub sport: u16,
    pub dst: IpBytes,
    pub dport: u16,
    pub seq: u32,
    pub class: RstClass,
    /// Which side sent it (Zeek orientation); `Unknown` for unsolicited RSTs.
    pub dir: Dir,
    /// Flags that must be present (others may be too).
    pub flags: Vec<RstFlag>,
    pub suspect: bool,
}

impl Label {
    /// True when this label is about the RST `(src, sport, dst, dport, seq)`.
    pub fn is_for(&self, src: IpBytes, sport: u16, dst: IpBytes, dport: u16, seq: u32) -> bool {
        self.src == src
            && self.sport == sport
            && self.dst == dst
            && self.dport == dport
            && self.seq == seq
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
        Scenario::Mixed => scenarios::mixed(&mut w, o.seed, t0, o.flows),
    }
    let (mut frames, mut labels, anomalies, flows) = w.into_parts();
    // Stable: frames of equal timestamps keep the order they were sent in.
    frames.sort_by_key(|f| f.ts_us);
    labels.sort_by_key(|l| l.ts_us);
    Generated {
        frames,
        labels,
        anomalies,
        flows,
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
