//! Tests of the generator: determinism, pcap round trip, checksums, one label per RST,
//! and an independent check that every label's claims hold in the packets.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use pcap_file::pcap::PcapReader;
use rstwatch_schema::{AnomalyKind, Cause, Dir, IpBytes, RstClass, RstFlag};

use super::packet::{finish, sum, tcp_checksum};
use super::*;
use crate::parse::{self, ParseOptions};

/// Small options so the whole suite runs fast in debug builds.
pub(super) fn small() -> GenOptions {
    GenOptions {
        seed: 7,
        flows: 300,
        ..GenOptions::default()
    }
}

/// A TCP segment decoded by the test itself (not by the sensor's parser), with both
/// checksums verified.
#[derive(Debug, Clone)]
pub(super) struct Seg {
    pub(super) ts: i64,
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: u8,
    pub(super) window: u16,
    /// Source MAC.
    pub(super) mac: [u8; 6],
    pub(super) wscale: Option<u8>,
    pub(super) payload: usize,
    pub(super) ttl: u8,
    pub(super) ipid: u16,
    pub(super) v6: bool,
}

impl Seg {
    pub(super) fn rst(&self) -> bool {
        self.flags & 0x04 != 0
    }
    pub(super) fn syn(&self) -> bool {
        self.flags & 0x02 != 0
    }
    pub(super) fn fin(&self) -> bool {
        self.flags & 0x01 != 0
    }
    pub(super) fn ackf(&self) -> bool {
        self.flags & 0x10 != 0
    }
    /// Sequence space the segment occupies.
    pub(super) fn len(&self) -> u32 {
        self.payload as u32 + u32::from(self.syn()) + u32::from(self.fin())
    }
}

/// Decodes a TCP segment; `None` for the frames that are not TCP (ARP, VRRP, ICMPv6).
fn decode(ts: i64, f: &[u8]) -> Option<Seg> {
    assert!(f.len() >= 60, "frame shorter than the Ethernet minimum");
    let et = u16::from_be_bytes([f[12], f[13]]);
    let (src, dst, ttl, ipid, l4, v6): (IpAddr, IpAddr, u8, u16, &[u8], bool) = match et {
        0x0806 => return None,
        0x0800 => {
            let ip = &f[14..];
            assert_eq!(ip[0], 0x45);
            assert_eq!(finish(sum(&ip[..20], 0)), 0, "bad IPv4 header checksum");
            if ip[9] != 6 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let s: [u8; 4] = ip[12..16].try_into().unwrap();
            let d: [u8; 4] = ip[16..20].try_into().unwrap();
            (
                s.into(),
                d.into(),
                ip[8],
                u16::from_be_bytes([ip[4], ip[5]]),
                &ip[20..total],
                false,
            )
        }
        0x86dd => {
            let ip = &f[14..];
            assert_eq!(ip[0] >> 4, 6);
            if ip[6] != 6 {
                return None;
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let s: [u8; 16] = ip[8..24].try_into().unwrap();
            let d: [u8; 16] = ip[24..40].try_into().unwrap();
            (s.into(), d.into(), ip[7], 0, &ip[40..40 + plen], true)
        }
        e => panic!("unexpected ethertype {e:#x}"),
    };
    assert_eq!(tcp_checksum(src, dst, l4), 0, "bad TCP checksum");
    let hlen = usize::from(l4[12] >> 4) * 4;
    let flags = l4[13];
    let mut wscale = None;
    if flags & 0x02 != 0 {
        let mut o = &l4[20..hlen];
        while let Some(&k) = o.first() {
            match k {
                0 => break,
                1 => o = &o[1..],
                _ => {
                    let n = usize::from(o[1]);
                    if k == 3 {
                        wscale = Some(o[2]);
                    }
                    o = &o[n..];
                }
            }
        }
    }
    let be32 = |i: usize| u32::from_be_bytes(l4[i..i + 4].try_into().unwrap());
    Some(Seg {
        ts,
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        seq: be32(4),
        ack: be32(8),
        mac: f[6..12].try_into().unwrap(),
        flags,
        window: u16::from_be_bytes([l4[14], l4[15]]),
        wscale,
        payload: l4.len() - hlen,
        ttl,
        ipid,
        v6,
    })
}

/// The TCP segments of `g`, decoded.
pub(super) fn decode_all(g: &Generated) -> Vec<Seg> {
    g.frames
        .iter()
        .filter_map(|f| decode(f.ts_us, &f.data))
        .collect()
}

/// A label's identity: timestamp, four-tuple, seq.
pub(super) type Key = (i64, IpBytes, u16, IpBytes, u16, u32);

pub(super) fn key(s: &Seg) -> Key {
    (s.ts, s.src.into(), s.sport, s.dst.into(), s.dport, s.seq)
}

pub(super) fn label_key(l: &Label) -> Key {
    (l.ts_us, l.src, l.sport, l.dst, l.dport, l.seq)
}

#[test]
fn every_scenario_has_sorted_valid_frames_and_one_label_per_rst() {
    for &s in Scenario::ALL {
        let g = generate(s, &small());
        assert!(!g.frames.is_empty(), "{s}");
        assert!(!g.labels.is_empty(), "{s}");
        assert!(
            g.frames.windows(2).all(|w| w[0].ts_us <= w[1].ts_us),
            "{s}: frames not sorted"
        );
        assert!(g.labels.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
        let segs = decode_all(&g);
        assert_eq!(
            g.frames.len() - segs.len(),
            g.not_ip + g.not_tcp,
            "{s}: frames that are not TCP"
        );
        let rsts: Vec<&Seg> = segs.iter().filter(|x| x.rst()).collect();
        assert_eq!(rsts.len(), g.labels.len(), "{s}: RSTs vs labels");
        let mut by_key = HashMap::new();
        for l in &g.labels {
            assert!(
                by_key.insert(label_key(l), l).is_none(),
                "{s}: duplicate label {l:?}"
            );
            for a in [l.src, l.dst] {
                assert!(
                    documentation_prefix(a),
                    "{s}: {a} not a documentation address"
                );
            }
        }
        for r in rsts {
            let l = by_key
                .get(&key(r))
                .unwrap_or_else(|| panic!("{s}: RST without a label: {r:?}"));
            assert_eq!(l.ts_us, r.ts);
        }
        for seg in &segs {
            assert!(documentation_prefix(seg.src.into()), "{s}: {}", seg.src);
        }
    }
}

fn documentation_prefix(a: IpBytes) -> bool {
    match a.to_ip() {
        IpAddr::V4(v) => {
            let o = v.octets();
            matches!(
                (o[0], o[1], o[2]),
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
            )
        }
        IpAddr::V6(v) => v.segments()[0] == 0x2001 && v.segments()[1] == 0xdb8,
    }
}

#[test]
fn the_sensor_parser_accepts_every_frame_and_its_checksums() {
    for &s in Scenario::ALL {
        let g = generate(s, &small());
        let opts = ParseOptions {
            verify_checksum: true,
            ..ParseOptions::default()
        };
        let (mut not_ip, mut not_tcp) = (0, 0);
        for f in &g.frames {
            match parse::parse(LINK_TYPE, &f.data, opts) {
                Ok(p) => assert!(!p.bad_checksum, "{s}: bad checksum"),
                Err(parse::Reject::NotIp) => not_ip += 1,
                Err(parse::Reject::NotTcp) => not_tcp += 1,
                Err(e) => panic!("{s}: parser rejects a frame: {e:?}"),
            }
        }
        assert_eq!((not_ip, not_tcp), (g.not_ip, g.not_tcp), "{s}");
    }
}

#[test]
fn deterministic_per_seed() {
    for &s in Scenario::ALL {
        let a = generate(s, &small());
        let b = generate(s, &small());
        assert_eq!(a.frames, b.frames, "{s}");
        assert_eq!(a.labels, b.labels, "{s}");
        let c = generate(s, &GenOptions { seed: 8, ..small() });
        assert_ne!(a.frames, c.frames, "{s}: seed has no effect");
        let pa = write_pcap_to(Vec::new(), &a.frames).unwrap();
        let pb = write_pcap_to(Vec::new(), &b.frames).unwrap();
        assert_eq!(pa, pb, "{s}: pcap bytes differ");
    }
}

#[test]
fn start_time_shifts_everything() {
    let a = generate(Scenario::Abort, &small());
    let b = generate(
        Scenario::Abort,
        &GenOptions {
            start_us: small().start_us + 3_600_000_000,
            ..small()
        },
    );
    assert_eq!(a.frames.len(), b.frames.len());
    for (x, y) in a.frames.iter().zip(&b.frames) {
        assert_eq!(x.ts_us + 3_600_000_000, y.ts_us);
        // Headers up to TCP are the same; TCP timestamps follow the clock.
        assert_eq!(x.data[..34], y.data[..34]);
        assert_eq!(x.data.len(), y.data.len());
    }
    assert!(a.frames[0].ts_us >= small().start_us);
}

#[test]
fn pcap_round_trips_through_pcap_file() {
    for &s in Scenario::ALL {
        let g = generate(s, &small());
        let bytes = write_pcap_to(Vec::new(), &g.frames).unwrap();
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
        assert_eq!(
            r.header().ts_resolution,
            pcap_file::TsResolution::MicroSecond
        );
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            let f = &g.frames[n];
            assert_eq!(p.timestamp.as_micros() as i64, f.ts_us);
            assert_eq!(p.data.as_ref(), &f.data[..]);
            assert_eq!(p.orig_len as usize, f.data.len());
            n += 1;
        }
        assert_eq!(n, g.frames.len(), "{s}");
    }
}

#[test]
fn write_pcap_writes_a_file() {
    let g = generate(Scenario::Refused, &small());
    let path = std::env::temp_dir().join(format!("rstwatch-gen-unit-{}.pcap", std::process::id()));
    write_pcap(&path, &g.frames).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(bytes, write_pcap_to(Vec::new(), &g.frames).unwrap());
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
}

#[test]
fn scenario_names_round_trip_and_appear_in_the_help() {
    let help = scenario_help();
    for &s in Scenario::ALL {
        assert_eq!(s.as_str().parse::<Scenario>().unwrap(), s);
        assert!(help.contains(s.as_str()));
        assert!(help.contains(s.description()));
    }
    assert!("nope".parse::<Scenario>().is_err());
}

// ---- the labels' claims, checked against the packets ----

/// Per-flow facts the checks need, kept per direction (keyed by sender address+port).
#[derive(Default, Clone)]
struct Dirn {
    /// Highest sequence number sent + 1 (non-RST segments).
    snd_max: Option<u32>,
    wscale: Option<u8>,
    window: u32,
    ttl: Option<u8>,
    last_ipid: Option<u16>,
    /// The ack number of this side's last segment with ACK.
    last_ack: Option<u32>,
    syn: bool,
    synack: bool,
    fin: bool,
}

#[derive(Default, Clone)]
struct Flow {
    last_ts: Option<i64>,
    /// The silence before the flow's latest packet, and who sent that packet.
    last_gap: i64,
    last_sender: Option<(IpAddr, u16)>,
    dirs: HashMap<(IpAddr, u16), Dirn>,
    /// RSTs so far: (ts, src, seq).
    rsts: Vec<(i64, IpAddr, u32)>,
}

pub(super) type FlowKey = (IpAddr, u16, IpAddr, u16);

pub(super) fn fkey(s: &Seg) -> FlowKey {
    if (s.src, s.sport) <= (s.dst, s.dport) {
        (s.src, s.sport, s.dst, s.dport)
    } else {
        (s.dst, s.dport, s.src, s.sport)
    }
}

const VERDICT_DELAY_US: i64 = 500_000;

/// What holds for one RST, computed from the packets only.
#[derive(Debug, Default)]
pub(super) struct Truth {
    pub(super) class: Option<RstClass>,
    pub(super) exact: bool,
    pub(super) in_window: bool,
    pub(super) out_of_window: bool,
    pub(super) idle: bool,
    pub(super) after_fin: bool,
    pub(super) data_after: bool,
    pub(super) ttl_mismatch: bool,
    pub(super) ipid_mismatch: bool,
    pub(super) multi_seq: bool,
}

/// DESIGN's `idle_threshold_s` default.
pub(super) const IDLE_US: i64 = 300_000_000;

pub(super) fn truths(segs: &[Seg]) -> HashMap<Key, Truth> {
    let mut flows: HashMap<FlowKey, Flow> = HashMap::new();
    let mut out = HashMap::new();
    for (i, s) in segs.iter().enumerate() {
        let fl = flows.entry(fkey(s)).or_default();
        if s.rst() {
            let me = fl.dirs.get(&(s.src, s.sport)).cloned().unwrap_or_default();
            let peer = fl.dirs.get(&(s.dst, s.dport)).cloned().unwrap_or_default();
            let class = Some(if fl.last_ts.is_none() {
                RstClass::Unsolicited
            } else if peer.syn && !me.synack && !me.syn {
                RstClass::Reject
            } else if (me.syn && peer.synack) || (peer.syn && me.synack) {
                // Established once the SYN sender acknowledged the SYN-ACK.
                let established = segs[..i]
                    .iter()
                    .any(|p| fkey(p) == fkey(s) && !p.syn() && !p.rst() && p.ackf());
                if established {
                    RstClass::Abort
                } else {
                    RstClass::HandshakeAbort
                }
            } else {
                RstClass::Unsolicited
            });
            let mut t = Truth {
                class,
                ..Truth::default()
            };
            if let Some(nxt) = me.snd_max {
                let off = s.seq.wrapping_sub(nxt);
                let win = peer.window
                    << if me.wscale.is_some() {
                        peer.wscale.unwrap_or(0)
                    } else {
                        0
                    };
                // Exact: the sender's next seq, or what the receiver last acknowledged
                // (a FIN the receiver has not acknowledged yet).
                t.exact = off == 0 || peer.last_ack == Some(s.seq);
                t.in_window = !t.exact && off < win;
                t.out_of_window = !t.exact && off >= win;
            }
            // Silent before the RST, or before the segment it answers (the flow's
            // latest packet, from the RST's receiver).
            let answers_latest = fl.last_sender == Some((s.dst, s.dport));
            t.idle = fl.last_ts.is_some_and(|l| s.ts - l > IDLE_US)
                || (answers_latest && fl.last_gap > IDLE_US);
            t.after_fin = me.fin || peer.fin;
            t.data_after = segs[i + 1..]
                .iter()
                .take_while(|p| p.ts - s.ts <= VERDICT_DELAY_US)
                .any(|p| {
                    p.src == s.src
                        && p.sport == s.sport
                        && p.dst == s.dst
                        && p.dport == s.dport
                        && p.payload > 0
                });
            // A firewall one hop closer than the endpoint differs by exactly 1.
            t.ttl_mismatch = me.ttl.is_some_and(|b| b.abs_diff(s.ttl) >= 1);
            // Genuine bare RSTs carry IP ID 0: never a mismatch.
            t.ipid_mismatch = !s.v6
                && s.ipid != 0
                && me.last_ipid.is_some_and(|b| {
                    s.ipid.wrapping_sub(b) > 1000 && b.wrapping_sub(s.ipid) > 1000
                });
            t.multi_seq = fl.rsts.iter().any(|&(ts, src, seq)| {
                src == s.src && s.ts - ts < 1000 && (s.seq.wrapping_sub(seq) as i32) > 0
            }) && me
                .snd_max
                .is_some_and(|n| (s.seq.wrapping_sub(n) as i32) > 0);
            fl.rsts.push((s.ts, s.src, s.seq));
            out.insert(key(s), t);
        } else {
            let d = fl.dirs.entry((s.src, s.sport)).or_default();
            let end = s.seq.wrapping_add(s.len());
            d.snd_max = Some(match d.snd_max {
                Some(m) if (end.wrapping_sub(m) as i32) <= 0 => m,
                _ => end,
            });
            if s.syn() {
                d.wscale = s.wscale;
                if s.ackf() {
                    d.synack = true;
                } else {
                    d.syn = true;
                }
            } else {
                d.window = u32::from(s.window);
            }
            d.fin |= s.fin();
            d.ttl.get_or_insert(s.ttl);
            d.last_ipid = Some(s.ipid);
            if s.ackf() {
                d.last_ack = Some(s.ack);
            }
        }
        // RSTs count as activity too (they are packets of the flow).
        fl.last_gap = fl.last_ts.map_or(0, |l| s.ts - l);
        fl.last_sender = Some((s.src, s.sport));
        fl.last_ts = Some(s.ts);
    }
    out
}

#[test]
fn labels_claim_only_what_the_packets_show() {
    let mut seen_flags: HashSet<RstFlag> = HashSet::new();
    let mut seen_classes: HashSet<RstClass> = HashSet::new();
    let mut seen_causes: HashSet<Cause> = HashSet::new();
    for &s in Scenario::ALL {
        let g = generate(s, &small());
        let truth = truths(&decode_all(&g));
        for l in &g.labels {
            let t = &truth[&label_key(l)];
            let ctx = format!("{s}: {l:?} vs {t:?}");
            assert_eq!(t.class, Some(l.class), "class: {ctx}");
            seen_classes.insert(l.class);
            seen_causes.insert(l.cause);
            assert_eq!(l.suspect, l.cause == Cause::Injection, "{ctx}");
            for f in &l.flags {
                seen_flags.insert(*f);
                let ok = match f {
                    RstFlag::SeqExact => t.exact,
                    RstFlag::SeqInWindow => t.in_window,
                    RstFlag::SeqOutOfWindow => t.out_of_window,
                    RstFlag::Idle => t.idle,
                    RstFlag::AfterFin => t.after_fin,
                    RstFlag::DataAfter => t.data_after,
                    RstFlag::TtlMismatch => t.ttl_mismatch,
                    RstFlag::IpidMismatch => t.ipid_mismatch,
                    RstFlag::MultiSeq => t.multi_seq,
                    other => panic!("unexpected label flag {other:?}"),
                };
                assert!(ok, "flag {f:?} does not hold: {ctx}");
            }
            // Flags the packets show must be labelled (labels are complete for the
            // signals this generator produces on purpose)...
            let labelled = |f: RstFlag| l.flags.contains(&f);
            assert_eq!(t.idle, labelled(RstFlag::Idle), "idle: {ctx}");
            assert_eq!(
                t.data_after,
                labelled(RstFlag::DataAfter),
                "data_after: {ctx}"
            );
            assert_eq!(t.ttl_mismatch, labelled(RstFlag::TtlMismatch), "ttl: {ctx}");
            if l.class == RstClass::Abort {
                assert_eq!(t.after_fin, labelled(RstFlag::AfterFin), "after_fin: {ctx}");
                assert!(
                    [
                        RstFlag::SeqExact,
                        RstFlag::SeqInWindow,
                        RstFlag::SeqOutOfWindow
                    ]
                    .iter()
                    .filter(|f| labelled(**f))
                    .count()
                        == 1,
                    "abort without exactly one seq flag: {ctx}"
                );
            }
            // ...and the suspect verdict follows the documented rule on the truth.
            let signals = [t.ttl_mismatch, t.ipid_mismatch, t.multi_seq]
                .iter()
                .filter(|x| **x)
                .count();
            let rule = t.data_after || signals >= 2;
            assert_eq!(rule, l.suspect, "suspect: {ctx}");
            match l.class {
                RstClass::Unsolicited => assert_eq!(l.dir, Dir::Unknown, "{ctx}"),
                _ => assert_ne!(l.dir, Dir::Unknown, "{ctx}"),
            }
        }
    }
    for f in [
        RstFlag::SeqExact,
        RstFlag::SeqInWindow,
        RstFlag::SeqOutOfWindow,
        RstFlag::Idle,
        RstFlag::AfterFin,
        RstFlag::DataAfter,
        RstFlag::TtlMismatch,
        RstFlag::IpidMismatch,
        RstFlag::MultiSeq,
    ] {
        assert!(seen_flags.contains(&f), "no scenario exercises {f:?}");
    }
    assert_eq!(seen_classes.len(), 4);
    for c in Cause::ALL {
        assert!(seen_causes.contains(c), "no scenario labels an RST {c}");
    }
}

#[test]
fn scenario_shapes() {
    let o = small();
    // refused: RST/ACK seq 0 answering a SYN; some IPv6.
    let g = generate(Scenario::Refused, &o);
    assert!(g
        .labels
        .iter()
        .all(|l| l.class == RstClass::Reject && l.seq == 0));
    assert!(g.labels.iter().any(|l| !l.src.is_v4()));

    // abort: both directions, IPv6 among them.
    let g = generate(Scenario::Abort, &o);
    assert!(g.labels.iter().any(|l| l.dir == Dir::Orig));
    assert!(g.labels.iter().any(|l| l.dir == Dir::Resp));
    assert!(g.labels.iter().any(|l| !l.src.is_v4()));

    // scan: >= 30 hosts rejecting port 23, >= 20 ports on one host.
    let g = generate(Scenario::Scan, &o);
    let hosts: HashSet<_> = g
        .labels
        .iter()
        .filter(|l| l.class == RstClass::Reject && l.sport == 23)
        .map(|l| l.src)
        .collect();
    assert!(hosts.len() >= 30, "{}", hosts.len());
    let mut ports: HashMap<IpBytes, HashSet<u16>> = HashMap::new();
    for l in &g.labels {
        match l.class {
            RstClass::Reject => ports.entry(l.src).or_default().insert(l.sport),
            _ => ports.entry(l.dst).or_default().insert(l.dport),
        };
    }
    assert!(ports.values().any(|p| p.len() >= 20));
    assert!(g.labels.iter().any(|l| l.class == RstClass::HandshakeAbort));
    assert_eq!(g.anomalies, vec![AnomalyKind::Scan]);

    // backscatter: one source, >= 30 local destinations, no state.
    let g = generate(Scenario::Backscatter, &o);
    let dsts: HashSet<_> = g.labels.iter().map(|l| l.dst).collect();
    let srcs: HashSet<_> = g.labels.iter().map(|l| l.src).collect();
    assert!(dsts.len() >= 30 && srcs.len() == 1);

    // storm: >= 2000 RSTs from the VIP within 200 ms, some unsolicited.
    let g = generate(
        Scenario::Storm,
        &GenOptions {
            flows: 2000,
            ..o.clone()
        },
    );
    let vip: IpBytes = "203.0.113.10".parse().unwrap();
    let from_vip: Vec<_> = g
        .labels
        .iter()
        .filter(|l| l.src == vip && l.sport == 443)
        .collect();
    assert_eq!(from_vip.len(), 2000);
    let span = from_vip.last().unwrap().ts_us - from_vip[0].ts_us;
    assert!(span < 200_000, "{span}");
    assert!(from_vip.iter().any(|l| l.class == RstClass::Unsolicited));
    assert!(from_vip.iter().any(|l| l.class == RstClass::Abort));

    // blind-inwindow: exactly one in-window RST per walk.
    let g = generate(Scenario::BlindInWindow, &o);
    let mut per_flow: HashMap<(IpBytes, u16), usize> = HashMap::new();
    for l in &g.labels {
        if l.flags.contains(&RstFlag::SeqInWindow) {
            *per_flow.entry((l.src, l.sport)).or_default() += 1;
        }
    }
    assert_eq!(per_flow.len(), 2);
    assert!(per_flow.values().all(|n| *n == 1));

    // injection: suspect ones and a non-suspect genuine reset.
    let g = generate(Scenario::Injection, &o);
    assert!(g.labels.iter().any(|l| l.suspect));
    assert!(g.labels.iter().any(|l| !l.suspect));

    // mixed: every anomaly kind, IPv6, many flows.
    let g = generate(Scenario::Mixed, &o);
    for k in AnomalyKind::ALL {
        assert!(g.anomalies.contains(k), "{k:?}");
    }
    assert!(g.labels.iter().any(|l| !l.src.is_v4()));
    assert!(g.flows > o.flows);
}

#[test]
fn mixed_scales_with_flows() {
    let a = generate(
        Scenario::Mixed,
        &GenOptions {
            flows: 100,
            ..small()
        },
    );
    let b = generate(
        Scenario::Mixed,
        &GenOptions {
            flows: 1000,
            ..small()
        },
    );
    assert_eq!(b.flows - a.flows, 900);
    // The embedded scenarios do not depend on the background.
    assert_eq!(a.labels, b.labels);
}

#[test]
fn cause_scenarios_reset_flows_of_both_families() {
    for s in [
        Scenario::IdleTimeout,
        Scenario::ServerOverload,
        Scenario::VipFailover,
        Scenario::Reboot,
        Scenario::ConnectRace,
        Scenario::KeepaliveRace,
        Scenario::WriteAfterClose,
        Scenario::UnreadClose,
        Scenario::Middlebox,
        Scenario::AppAbort,
    ] {
        let g = generate(s, &small());
        assert!(g.labels.iter().any(|l| l.src.is_v4()), "{s}: no IPv4");
        assert!(g.labels.iter().any(|l| !l.src.is_v4()), "{s}: no IPv6");
        let causes: HashSet<Cause> = g.labels.iter().map(|l| l.cause).collect();
        assert_eq!(causes.len(), 1, "{s}: one cause per scenario: {causes:?}");
    }
    // The failover is announced the way keepalived does it: 2 × 5 gratuitous ARPs.
    let g = generate(Scenario::VipFailover, &small());
    assert_eq!(g.not_ip, 10);
    assert!(g.not_tcp > 10);
    assert_eq!(g.anomalies, vec![AnomalyKind::Failover]);
}
