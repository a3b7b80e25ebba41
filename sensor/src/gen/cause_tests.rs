//! The labels' causes checked against the packets: for every labelled RST, the evidence
//! its cause's rule needs (DESIGN.md, "Why was it reset: causes") is in the capture,
//! computed here from the frames alone, independently of the sensor. Where an earlier
//! rule's evidence overlaps a later one's, the exclusion is checked too (`abort` must
//! not show the `unread_data_close` or `write_after_close` pattern).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use rstwatch_schema::{Cause, RstClass};

use super::tests::{decode_all, fkey, key, label_key, small, truths, FlowKey, Seg, Truth};
use super::{generate, Label, Scenario};

const MS: i64 = 1_000;
const S: i64 = 1_000_000;

type End = (IpAddr, u16);

fn sender(s: &Seg) -> End {
    (s.src, s.sport)
}

/// Signed sequence difference `a - b`.
fn sdiff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// One flow's segments in time order, and what its handshake says.
struct Flow<'a> {
    segs: Vec<&'a Seg>,
}

impl<'a> Flow<'a> {
    fn syn(&self) -> Option<&'a Seg> {
        self.segs.iter().copied().find(|s| s.syn() && !s.ackf())
    }

    fn synack(&self) -> Option<&'a Seg> {
        self.segs.iter().copied().find(|s| s.syn() && s.ackf())
    }

    /// The originator: the SYN sender, else the first sender.
    fn orig(&self) -> End {
        self.syn().map_or(sender(self.segs[0]), sender)
    }

    /// The originator's ACK completing the handshake.
    fn established(&self) -> Option<&'a Seg> {
        let o = self.orig();
        self.synack()?;
        self.segs
            .iter()
            .copied()
            .find(|s| sender(s) == o && !s.syn() && !s.rst() && s.ackf())
    }

    /// SYN to handshake ACK, at the sensor.
    fn rtt(&self) -> Option<i64> {
        Some(self.established()?.ts - self.syn()?.ts)
    }

    /// Segments strictly before the RST `r`.
    fn before(&self, r: &Seg) -> Vec<&'a Seg> {
        let i = self.segs.iter().position(|s| key(s) == key(r)).unwrap();
        self.segs[..i].to_vec()
    }

    fn after(&self, r: &Seg) -> Vec<&'a Seg> {
        let i = self.segs.iter().position(|s| key(s) == key(r)).unwrap();
        self.segs[i + 1..].to_vec()
    }
}

struct Capture<'a> {
    all: &'a [Seg],
    flows: HashMap<FlowKey, Flow<'a>>,
}

impl<'a> Capture<'a> {
    fn new(all: &'a [Seg]) -> Self {
        let mut flows: HashMap<FlowKey, Flow<'a>> = HashMap::new();
        for s in all {
            flows
                .entry(fkey(s))
                .or_insert_with(|| Flow { segs: vec![] })
                .segs
                .push(s);
        }
        Capture { all, flows }
    }

    fn flow(&self, s: &Seg) -> &Flow<'a> {
        &self.flows[&fkey(s)]
    }
}

/// The resetter's FIN before `r`, if any.
fn resetter_fin<'a>(before: &[&'a Seg], r: &Seg) -> Option<&'a Seg> {
    before
        .iter()
        .copied()
        .find(|s| sender(s) == sender(r) && s.fin())
}

fn payload_from<'a>(segs: &[&'a Seg], who: End) -> Vec<&'a Seg> {
    segs.iter()
        .copied()
        .filter(|s| sender(s) == who && s.payload > 0 && !s.rst())
        .collect()
}

/// `unread_data_close`'s evidence: the peer's payload was the latest and recent, or
/// crossed the RST, or the resetter had closed its window.
fn unread_pattern(f: &Flow<'_>, r: &Seg) -> bool {
    let before = f.before(r);
    let peer = (r.dst, r.dport);
    let last_payload = before.iter().rev().find(|s| s.payload > 0 && !s.rst());
    let latest = before.last();
    let recent = last_payload.is_some_and(|p| sender(p) == peer)
        && latest.is_some_and(|l| r.ts - l.ts <= 100 * MS);
    let rtt = f.rtt().unwrap_or(0);
    let crossing = payload_from(&f.after(r), peer)
        .iter()
        .any(|p| p.ts - r.ts <= rtt);
    let zero = before
        .iter()
        .rev()
        .find(|s| sender(s) == sender(r) && !s.rst() && !s.syn())
        .is_some_and(|s| s.window == 0);
    recent || crossing || zero
}

fn write_after_close_pattern(f: &Flow<'_>, r: &Seg) -> bool {
    let before = f.before(r);
    let Some(fin) = resetter_fin(&before, r) else {
        return false;
    };
    payload_from(&before, (r.dst, r.dport))
        .iter()
        .any(|p| p.ts > fin.ts)
}

fn keepalive_race_pattern(f: &Flow<'_>, r: &Seg) -> bool {
    let before = f.before(r);
    let Some(fin) = resetter_fin(&before, r) else {
        return false;
    };
    let i = before.iter().position(|s| key(s) == key(fin)).unwrap();
    let silence = i > 0 && fin.ts - before[i - 1].ts >= 5 * S;
    let rtt = f.rtt().unwrap_or(0);
    let crossed = payload_from(&before, (r.dst, r.dport))
        .iter()
        .any(|p| p.ts > fin.ts && p.ts - fin.ts <= rtt && sdiff(p.ack, fin.seq) <= 0);
    silence && crossed
}

fn connect_race_pattern(c: &Capture<'_>, f: &Flow<'_>, r: &Seg) -> bool {
    let (Some(syn), None) = (f.syn(), payload_from(&f.before(r), f.orig()).first()) else {
        return false;
    };
    if sender(r) != f.orig() {
        return false;
    }
    c.flows.values().any(|g| {
        let (Some(gsyn), Some(est)) = (g.syn(), g.established()) else {
            return false;
        };
        let same_client = gsyn.src == syn.src || gsyn.mac == syn.mac;
        let parallel = gsyn.dst == syn.dst
            || (gsyn.dport == syn.dport && gsyn.dst.is_ipv6() != syn.dst.is_ipv6());
        fkey(gsyn) != fkey(syn)
            && same_client
            && parallel
            && (0..=100 * MS).contains(&(r.ts - est.ts))
            && (gsyn.ts - syn.ts).abs() <= 250 * MS
    })
}

/// One flow's part of `server_overload`: a bare RST, seq ISN+1, soon after the
/// handshake, the server silent.
fn overload_flow(f: &Flow<'_>, r: &Seg) -> bool {
    let (Some(sa), Some(est), Some(rtt)) = (f.synack(), f.established(), f.rtt()) else {
        return false;
    };
    sender(r) == sender(sa)
        && !r.ackf()
        && r.seq == sa.seq.wrapping_add(1)
        && payload_from(&f.before(r), sender(sa)).is_empty()
        && r.ts - est.ts <= 5 * MS + rtt
}

fn overload_pattern(c: &Capture<'_>, r: &Seg) -> bool {
    let burst = c
        .all
        .iter()
        .filter(|s| s.rst() && sender(s) == sender(r) && (s.ts - r.ts).abs() <= 10 * S)
        .filter(|s| overload_flow(c.flow(s), s))
        .count();
    overload_flow(c.flow(r), r) && burst >= 5
}

/// One flow's part of a reboot: the server host silent 30 s, the client's data in
/// this flow never acknowledged.
fn reboot_flow(c: &Capture<'_>, f: &Flow<'_>, r: &Seg) -> bool {
    let host_last = c
        .all
        .iter()
        .filter(|s| s.src == r.src && !s.rst() && s.ts < r.ts)
        .map(|s| s.ts)
        .max();
    let before = f.before(r);
    let client = (r.dst, r.dport);
    let sent = payload_from(&before, client)
        .iter()
        .map(|s| s.seq.wrapping_add(s.len()))
        .max_by(|a, b| sdiff(*a, *b).cmp(&0));
    let acked = before
        .iter()
        .rev()
        .find(|s| sender(s) == sender(r) && s.ackf() && !s.rst())
        .map(|s| s.ack);
    let unanswered = matches!((sent, acked), (Some(x), Some(a)) if sdiff(x, a) > 0);
    host_last.is_some_and(|l| r.ts - l >= 30 * S) && unanswered
}

fn state_loss_pattern(c: &Capture<'_>, f: &Flow<'_>, r: &Seg) -> bool {
    let Some(sa) = f.synack() else {
        return false;
    };
    if sender(r) != sender(sa) || f.established().is_none() {
        return false;
    }
    let moved = f
        .before(r)
        .iter()
        .any(|s| sender(s) == sender(r) && s.mac != r.mac);
    let reboot = || {
        let flows: HashSet<FlowKey> = c
            .all
            .iter()
            .filter(|s| s.rst() && s.src == r.src && reboot_flow(c, c.flow(s), s))
            .map(fkey)
            .collect();
        reboot_flow(c, f, r) && flows.len() >= 3
    };
    moved || reboot()
}

/// Sources that drew rejects from `n` hosts on one port by `until` (scan thresholds).
fn scanner_crossed(c: &Capture<'_>, scanner: IpAddr, until: i64) -> bool {
    let mut hosts: HashMap<u16, HashSet<IpAddr>> = HashMap::new();
    let mut ports: HashMap<IpAddr, HashSet<u16>> = HashMap::new();
    for s in c
        .all
        .iter()
        .filter(|s| s.rst() && s.dst == scanner && s.ts <= until)
    {
        if c.flow(s).synack().is_none() && c.flow(s).syn().is_some() {
            hosts.entry(s.sport).or_default().insert(s.src);
            ports.entry(s.src).or_default().insert(s.sport);
        }
    }
    hosts.values().any(|h| h.len() >= 25) || ports.values().any(|p| p.len() >= 15)
}

fn backscatter_crossed(c: &Capture<'_>, r: &Seg) -> bool {
    let reached: HashSet<IpAddr> = c
        .all
        .iter()
        .filter(|s| s.rst() && s.ackf() && s.src == r.src && s.ts <= r.ts)
        .filter(|s| c.flow(s).segs[0].rst())
        .map(|s| s.dst)
        .collect();
    reached.len() >= 25
}

/// Whether the packets show what `l.cause` needs; `Err` says what is missing.
fn evidence(c: &Capture<'_>, l: &Label, r: &Seg, t: &Truth) -> Result<(), &'static str> {
    let f = c.flow(r);
    let ok = match l.cause {
        Cause::Injection => l.suspect,
        Cause::Scan => {
            let scanner = if l.class == RstClass::Reject {
                r.dst
            } else {
                r.src
            };
            scanner_crossed(c, scanner, r.ts)
        }
        Cause::Backscatter => l.class == RstClass::Unsolicited && backscatter_crossed(c, r),
        Cause::Refused => l.class == RstClass::Reject,
        Cause::ConnectRace => connect_race_pattern(c, f, r),
        Cause::ServerOverload => overload_pattern(c, r),
        Cause::StateLoss => state_loss_pattern(c, f, r),
        Cause::KeepaliveRace => keepalive_race_pattern(f, r),
        Cause::IdleTimeout => t.idle,
        Cause::Middlebox => t.ttl_mismatch && !l.suspect,
        Cause::WriteAfterClose => write_after_close_pattern(f, r),
        Cause::UnreadDataClose => resetter_fin(&f.before(r), r).is_none() && unread_pattern(f, r),
        Cause::Abort => {
            l.class == RstClass::Abort && !unread_pattern(f, r) && !write_after_close_pattern(f, r)
        }
        Cause::Unknown => matches!(l.class, RstClass::Unsolicited | RstClass::HandshakeAbort),
    };
    ok.then_some(()).ok_or(l.cause.as_str())
}

#[test]
fn every_cause_label_has_its_evidence_in_the_packets() {
    for &s in Scenario::ALL {
        if s == Scenario::Storm {
            continue; // thousands of flows; its causes are covered in `mixed`.
        }
        let g = generate(s, &small());
        let segs = decode_all(&g);
        let truth = truths(&segs);
        let capture = Capture::new(&segs);
        let by_key: HashMap<_, &Seg> = segs
            .iter()
            .filter(|x| x.rst())
            .map(|x| (key(x), x))
            .collect();
        for l in &g.labels {
            let k = label_key(l);
            if let Err(cause) = evidence(&capture, l, by_key[&k], &truth[&k]) {
                panic!("{s}: no evidence for {cause}: {l:?}");
            }
        }
    }
}
