//! Remote mirroring (issue 11): a sensor fed over ERSPAN, GRE, VXLAN, Geneve, MPLS or
//! PPPoE reports exactly what it reports on a local SPAN port; tunnels with overlapping
//! inner addresses stay apart; broken tunnel headers are named rejections; one-sided
//! mirrors are detected.

use std::path::{Path, PathBuf};
use std::process::Command;

use rstwatch_schema::{Cause, Encap, Record};
use rstwatch_sensor::gen::encap::{wrap, wrap_frames, wrap_with_id, GEN_ERSPAN_SESSION, GEN_VNI};
use rstwatch_sensor::gen::{self, write_pcap, Frame, GenOptions, Generated, Scenario};
use rstwatch_sensor::parse::{parse, LinkType, ParseOptions, Reject};
use rstwatch_sensor::{Engine, EngineConfig};

/// The wrappings `gen --encap` offers.
const WRAPPED: &[Encap] = &[
    Encap::Gre,
    Encap::Erspan1,
    Encap::Erspan2,
    Encap::Erspan3,
    Encap::Vxlan,
    Encap::Geneve,
    Encap::Mpls,
    Encap::Pppoe,
];

fn mixed() -> Generated {
    gen::generate(
        Scenario::Mixed,
        &GenOptions {
            seed: 11,
            flows: 300,
            ..GenOptions::default()
        },
    )
}

/// Records and named counters of one engine over `frames`.
fn replay(frames: &[Frame], cfg: &EngineConfig) -> (Vec<Record>, Vec<(&'static str, u64)>) {
    let mut e = Engine::new(cfg);
    let mut out: Vec<Record> = vec![];
    for f in frames {
        e.process(f.ts_us, gen::LINK_TYPE, &f.data, &mut out);
    }
    e.finish(&mut out);
    let c = e.raw_counters();
    assert_eq!(
        c.frames,
        c.tcp + c.rejected_total(),
        "frames = tcp + rejected"
    );
    (out, e.counters())
}

fn counter(c: &[(&str, u64)], name: &str) -> u64 {
    c.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).unwrap()
}

/// The records with the encapsulation fields (and the flow uid, a hash of the key,
/// which holds the tunnel slot) cleared, as JSON lines for a readable diff.
fn without_encap(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .cloned()
        .map(|mut r| {
            match &mut r {
                Record::Rst(e) => {
                    (e.encap, e.tunnel_id, e.flow_uid) = (Encap::None, 0, 0);
                }
                Record::Flow(f) => {
                    (f.encap, f.tunnel_id, f.flow_uid) = (Encap::None, 0, 0);
                }
                Record::Anomaly(_) => {}
            }
            serde_json::to_string(&r).unwrap()
        })
        .collect()
}

fn expected_id(e: Encap) -> u32 {
    match e {
        Encap::Vxlan | Encap::Geneve => GEN_VNI,
        Encap::Erspan2 | Encap::Erspan3 => u32::from(GEN_ERSPAN_SESSION),
        _ => 0,
    }
}

#[test]
fn every_encapsulation_gives_the_records_of_the_plain_capture() {
    let g = mixed();
    let cfg = EngineConfig::default();
    let (plain, plain_c) = replay(&g.frames, &cfg);
    assert!(plain.iter().any(|r| matches!(r, Record::Rst(_))));
    for &e in WRAPPED {
        let mut frames = g.frames.clone();
        wrap_frames(&mut frames, e);
        let (got, c) = replay(&frames, &cfg);
        // The wrapper carries the non-TCP frames too (vip-failover's gratuitous ARP
        // and VRRP): they are rejected inside the tunnel exactly as on a local port.
        assert_eq!(
            counter(&c, "rejected"),
            counter(&plain_c, "rejected"),
            "{e:?}: {c:?}"
        );
        assert_eq!(counter(&c, "tcp"), counter(&plain_c, "tcp"), "{e:?}");
        assert_eq!(without_encap(&got), without_encap(&plain), "{e:?}");
        for r in &got {
            let (encap, id) = match r {
                Record::Rst(ev) => (ev.encap, ev.tunnel_id),
                Record::Flow(f) => (f.encap, f.tunnel_id),
                Record::Anomaly(_) => continue,
            };
            assert_eq!((encap, id), (e, expected_id(e)), "{e:?}: {r:?}");
        }
    }
}

#[test]
fn overlapping_inner_addresses_in_two_tunnels_stay_two_flows() {
    let g = mixed();
    let (plain, _) = replay(&g.frames, &EngineConfig::default());
    let flows = |r: &[Record]| r.iter().filter(|r| matches!(r, Record::Flow(_))).count();
    let rsts = |r: &[Record]| r.iter().filter(|r| matches!(r, Record::Rst(_))).count();
    for e in [Encap::Vxlan, Encap::Geneve, Encap::Erspan2, Encap::Erspan3] {
        // The same capture through two mirror sessions, interleaved frame by frame.
        let mut both = vec![];
        for (i, f) in g.frames.iter().enumerate() {
            for id in [1, 2] {
                let data = wrap_with_id(&f.data, e, i as u32, id);
                both.push(Frame {
                    ts_us: f.ts_us,
                    data,
                });
            }
        }
        let (got, _) = replay(&both, &EngineConfig::default());
        assert_eq!(flows(&got), 2 * flows(&plain), "{e:?}: flows");
        assert_eq!(rsts(&got), 2 * rsts(&plain), "{e:?}: RSTs");
        for id in [1, 2] {
            let mine: Vec<Record> = got
                .iter()
                .filter(|r| match r {
                    Record::Rst(ev) => ev.tunnel_id == id,
                    Record::Flow(f) => f.tunnel_id == id,
                    Record::Anomaly(_) => false,
                })
                .cloned()
                .collect();
            let plain_no_anomalies: Vec<Record> = plain
                .iter()
                .filter(|r| !matches!(r, Record::Anomaly(_)))
                .cloned()
                .collect();
            let (mut a, mut b) = (without_encap(&mine), without_encap(&plain_no_anomalies));
            a.sort();
            b.sort();
            assert_eq!(a.len(), b.len(), "{e:?} tunnel {id}");
            // Same flows and RSTs; cross-flow evidence (scans, storms) sees both copies,
            // so only the per-flow facts are compared.
            let key = |s: &String| {
                let v: serde_json::Value = serde_json::from_str(s).unwrap();
                let f = |k: &str| v.get(k).cloned().unwrap_or_default();
                (
                    f("type"),
                    f("src"),
                    f("seq"),
                    f("orig_h"),
                    f("resp_h"),
                    f("history"),
                )
            };
            let mut ka: Vec<_> = a.iter().map(key).collect();
            let mut kb: Vec<_> = b.iter().map(key).collect();
            ka.sort_by_key(|k| format!("{k:?}"));
            kb.sort_by_key(|k| format!("{k:?}"));
            assert_eq!(ka, kb, "{e:?} tunnel {id}");
        }
    }
}

#[test]
fn tunnel_identity_can_be_left_out_of_the_key() {
    let g = mixed();
    let mut cfg = EngineConfig::default();
    cfg.encap.tunnel_id_in_key = false;
    let mut both = vec![];
    for (i, f) in g.frames.iter().enumerate().take(400) {
        for id in [1, 2] {
            let data = wrap_with_id(&f.data, Encap::Vxlan, i as u32, id);
            both.push(Frame {
                ts_us: f.ts_us,
                data,
            });
        }
    }
    let (got, _) = replay(&both, &cfg);
    let (plain, _) = replay(&g.frames[..400], &EngineConfig::default());
    let flows = |r: &[Record]| r.iter().filter(|r| matches!(r, Record::Flow(_))).count();
    assert_eq!(flows(&got), flows(&plain));
    for r in &got {
        if let Record::Flow(f) = r {
            assert_eq!((f.encap, f.tunnel_id), (Encap::Vxlan, 0));
        }
    }
}

#[test]
fn other_vxlan_ports_are_configurable() {
    let g = mixed();
    let mut frames: Vec<Frame> = g.frames[..200].to_vec();
    wrap_frames(&mut frames, Encap::Vxlan);
    // Move the tunnel to UDP 8472 (Linux's historical VXLAN port): the UDP
    // destination port sits at 14 + 20 + 2.
    for f in &mut frames {
        f.data[36..38].copy_from_slice(&8472u16.to_be_bytes());
    }
    let (_, c) = replay(&frames, &EngineConfig::default());
    assert_eq!(counter(&c, "rejected.not_tcp"), 200);
    let mut cfg = EngineConfig::default();
    cfg.encap.vxlan_ports = vec![4789, 8472];
    cfg.validate().unwrap();
    let (_, c) = replay(&frames, &cfg);
    assert_eq!(counter(&c, "tcp"), 200);
    cfg.encap.vxlan_ports = vec![1, 2, 3, 4, 5];
    assert!(cfg.validate().is_err());
}

fn one_frame() -> Vec<u8> {
    mixed().frames[0].data.clone()
}

fn reject_of(frame: &[u8]) -> Reject {
    parse(LinkType::Ethernet, frame, ParseOptions::default()).unwrap_err()
}

#[test]
fn truncated_tunnel_headers_are_named() {
    let plain = one_frame();
    // Cut inside each tunnel header: outer Ethernet 14 + IPv4 20, then GRE 4 (+4 seq).
    let cuts = [
        (Encap::Gre, 14 + 20 + 2),
        (Encap::Erspan2, 14 + 20 + 8 + 4),
        (Encap::Erspan3, 14 + 20 + 8 + 14),
        (Encap::Vxlan, 14 + 20 + 8 + 4),
        (Encap::Geneve, 14 + 20 + 8 + 12),
        (Encap::Mpls, 14 + 6),
        (Encap::Pppoe, 14 + 5),
    ];
    for (e, at) in cuts {
        let w = wrap(&plain, e, 1);
        // Fix the outer IP length so the cut is a truncation, not a short IP packet.
        assert_eq!(
            reject_of(&w[..at]),
            Reject::TruncatedTunnel,
            "{e:?} at {at}"
        );
    }
    // Every cut of every wrapping is TCP or a rejection, never a panic.
    for &e in WRAPPED {
        let w = wrap(&plain, e, 1);
        for n in 0..w.len() {
            let _ = parse(LinkType::Ethernet, &w[..n], ParseOptions::default());
        }
    }
}

#[test]
fn a_snap_length_cut_inside_the_payload_keeps_the_ip_length() {
    let g = mixed();
    let f = g
        .frames
        .iter()
        .find(|f| {
            parse(LinkType::Ethernet, &f.data, ParseOptions::default())
                .is_ok_and(|p| p.payload_len > 100)
        })
        .unwrap();
    let want = parse(LinkType::Ethernet, &f.data, ParseOptions::default()).unwrap();
    for &e in WRAPPED {
        let w = wrap(&f.data, e, 1);
        let cut = &w[..w.len() - 80];
        let p = parse(LinkType::Ethernet, cut, ParseOptions::default()).unwrap();
        assert_eq!(p.payload_len, want.payload_len, "{e:?}");
    }
}

#[test]
fn unknown_gre_protocol_and_bad_headers_are_named() {
    let plain = one_frame();
    let gre_proto_at = 14 + 20 + 2;
    let mut w = wrap(&plain, Encap::Gre, 1);
    w[gre_proto_at..gre_proto_at + 2].copy_from_slice(&0x880bu16.to_be_bytes());
    assert_eq!(reject_of(&w), Reject::UnknownGreProtocol);
    let mut w = wrap(&plain, Encap::Gre, 1);
    w[14 + 20 + 1] = 1; // GRE version 1 (PPTP)
    assert_eq!(reject_of(&w), Reject::BadTunnelHeader);
    let mut w = wrap(&plain, Encap::Vxlan, 1);
    w[14 + 20 + 8] = 0; // VXLAN without the I flag
    assert_eq!(reject_of(&w), Reject::BadTunnelHeader);
    let mut w = wrap(&plain, Encap::Erspan2, 1);
    w[14 + 20 + 8] = 0x30; // ERSPAN II header claiming version 3
    assert_eq!(reject_of(&w), Reject::BadTunnelHeader);
    let mut w = wrap(&plain, Encap::Erspan3, 1);
    w[14 + 20 + 8 + 10] = 5 << 2; // ERSPAN III frame type 5
    assert_eq!(reject_of(&w), Reject::UnknownTunnelPayload);
    let mut w = wrap(&plain, Encap::Geneve, 1);
    w[14 + 20 + 8 + 2..14 + 20 + 8 + 4].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(reject_of(&w), Reject::UnknownTunnelPayload);
    // UDP to any other port is just not TCP.
    let mut w = wrap(&plain, Encap::Vxlan, 1);
    w[36..38].copy_from_slice(&53u16.to_be_bytes());
    assert_eq!(reject_of(&w), Reject::NotTcp);
}

#[test]
fn nesting_is_bounded() {
    let plain = one_frame();
    let mut w = plain.clone();
    for depth in 1..=rstwatch_sensor::parse::MAX_TUNNEL_DEPTH {
        w = wrap(&w, Encap::Vxlan, 1);
        let p = parse(LinkType::Ethernet, &w, ParseOptions::default());
        assert!(p.is_ok(), "depth {depth}: {p:?}");
    }
    w = wrap(&w, Encap::Vxlan, 1);
    assert_eq!(reject_of(&w), Reject::TunnelTooDeep);
    // GWLB-style nesting: Geneve around VXLAN; the innermost identity is kept.
    let w = wrap_with_id(
        &wrap_with_id(&plain, Encap::Vxlan, 1, 77),
        Encap::Geneve,
        1,
        5,
    );
    let p = parse(LinkType::Ethernet, &w, ParseOptions::default()).unwrap();
    assert_eq!((p.encap, p.tunnel_id), (Encap::Vxlan, 77));
    // An MPLS stack deeper than MAX_MPLS_LABELS.
    let mut m = plain[..12].to_vec();
    m.extend_from_slice(&0x8847u16.to_be_bytes());
    for _ in 0..rstwatch_sensor::parse::MAX_MPLS_LABELS + 1 {
        m.extend_from_slice(&[0, 0x01, 0x00, 0x40]);
    }
    m.extend_from_slice(&plain[14..]);
    assert_eq!(reject_of(&m), Reject::TunnelTooDeep);
}

#[test]
fn mpls_pseudowire_with_and_without_control_word() {
    let mut plain = one_frame();
    // Without a control word the decoder tells IP from Ethernet by the first nibble
    // (4, 6: IP; 0: a control word), as Wireshark does: a destination MAC starting
    // with 0x0, 0x4 or 0x6 needs the control word (RFC 4448 recommends it anyway).
    plain[0] = 0x12;
    let want = parse(LinkType::Ethernet, &plain, ParseOptions::default()).unwrap();
    for cw in [true, false] {
        let mut f = vec![2, 0, 0, 0, 0xaa, 2, 2, 0, 0, 0, 0xaa, 1, 0x88, 0x47];
        f.extend_from_slice(&[0x00, 0x01, 0x01, 0x40]); // one label, bottom of stack
        if cw {
            f.extend_from_slice(&[0, 0, 0, 0]);
        }
        f.extend_from_slice(&plain);
        let p = parse(LinkType::Ethernet, &f, ParseOptions::default()).unwrap();
        assert_eq!(
            (p.src, p.seq, p.src_mac),
            (want.src, want.seq, want.src_mac),
            "cw {cw}"
        );
        assert_eq!(p.encap, Encap::Mpls);
    }
}

#[test]
fn vlan_tags_outside_the_tunnel_belong_to_the_transport() {
    let plain = one_frame();
    let mut w = wrap(&plain, Encap::Vxlan, 1);
    // An 802.1Q tag (VLAN 300) on the outer frame.
    w.splice(12..12, [0x81, 0x00, 0x01, 0x2c]);
    let p = parse(LinkType::Ethernet, &w, ParseOptions::default()).unwrap();
    assert_eq!((p.vlan, p.encap), (0, Encap::Vxlan));
    // A tag inside (on the mirrored frame) is the flow's.
    let mut inner = plain.clone();
    inner.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    let p = parse(
        LinkType::Ethernet,
        &wrap(&inner, Encap::Erspan2, 1),
        ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(p.vlan, 7);
}

/// The frames of `g` sent towards the local servers only (a mirror missing the
/// servers' direction).
fn towards_servers(g: &Generated) -> Vec<Frame> {
    g.frames
        .iter()
        .filter(|f| {
            // Non-TCP frames (ARP, VRRP) are not part of either direction.
            let Ok(p) = parse(LinkType::Ethernet, &f.data, ParseOptions::default()) else {
                return false;
            };
            let d = p.dst.to_string();
            d.starts_with("203.0.113.") || d.starts_with("2001:db8:a:")
        })
        .cloned()
        .collect()
}

#[test]
fn one_sided_mirror_is_detected_and_forges_nothing() {
    let g = mixed();
    let (_, c) = replay(&g.frames, &EngineConfig::default());
    assert_eq!(rstwatch_sensor::counters::one_sided_warning(&c), None);
    assert_eq!(counter(&c, "flows_one_sided"), 0);

    let half = towards_servers(&g);
    assert!(half.len() < g.frames.len());
    let (out, c) = replay(&half, &EngineConfig::default());
    let warning = rstwatch_sensor::counters::one_sided_warning(&c).expect("a warning");
    assert!(warning.contains("seen in one direction only"), "{warning}");
    assert!(counter(&c, "flows_one_sided") * 2 > counter(&c, "flows_conversing"));
    for r in &out {
        if let Record::Rst(ev) = r {
            // What is merely missing is no evidence of forgery.
            let data_after = ev.flags.contains(rstwatch_schema::RstFlag::DataAfter);
            assert!(
                !ev.suspect || data_after,
                "suspect without data_after in a one-sided capture: {ev:?}"
            );
            assert!(ev.cause != Cause::Injection || data_after, "{ev:?}");
        }
    }
}

fn tshark_rsts(file: &Path) -> usize {
    let out = Command::new("/usr/bin/tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-Y",
            "tcp.flags.reset == 1",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .expect("running tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rstwatch-encap-{}-{name}", std::process::id()))
}

#[test]
fn tshark_counts_the_same_inner_rsts() {
    if !Path::new("/usr/bin/tshark").exists() {
        eprintln!("skipping: tshark is not installed at /usr/bin/tshark (apt-get install tshark)");
        return;
    }
    let g = mixed();
    let (plain, _) = replay(&g.frames, &EngineConfig::default());
    let ours = plain.iter().filter(|r| matches!(r, Record::Rst(_))).count();
    assert_eq!(ours, g.labels.len());
    for &e in WRAPPED {
        let mut frames = g.frames.clone();
        wrap_frames(&mut frames, e);
        let path = tmp(&format!("{}.pcap", e.as_str()));
        write_pcap(&path, &frames).unwrap();
        let theirs = tshark_rsts(&path);
        std::fs::remove_file(&path).ok();
        assert_eq!(theirs, ours, "{e:?}: tshark's inner RSTs vs ours");
    }
}

fn sensor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rstwatch-sensor"))
        .args(args)
        .output()
        .expect("running rstwatch-sensor")
}

#[test]
fn gen_encap_on_the_command_line_and_replay_report_the_tunnel() {
    let plain = tmp("cli-plain.pcap");
    let wrapped = tmp("cli-erspan3.pcap");
    for (out, extra) in [(&plain, vec![]), (&wrapped, vec!["--encap", "erspan3"])] {
        let mut args = vec![
            "gen",
            "--scenario",
            "refused",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        assert!(sensor(&args).status.success());
    }
    let o = sensor(&["replay", "--stats", wrapped.to_str().unwrap()]);
    assert!(o.status.success());
    let stdout = String::from_utf8_lossy(&o.stdout);
    let rsts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"type\":\"rst\""))
        .collect();
    assert!(!rsts.is_empty());
    for l in rsts {
        assert!(l.contains("\"encap\":\"erspan3\",\"tunnel_id\":42"), "{l}");
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("\"rejected\":0"), "{stderr}");
    assert!(!stderr.contains("one direction only"), "{stderr}");
    let p = sensor(&["replay", plain.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&p.stdout).contains("\"encap\":\"\",\"tunnel_id\":0"));
    let bad = sensor(&[
        "gen",
        "--scenario",
        "refused",
        "--encap",
        "ipip",
        "--out",
        "/dev/null",
    ]);
    assert!(!bad.status.success());
    std::fs::remove_file(&plain).ok();
    std::fs::remove_file(&wrapped).ok();
}
