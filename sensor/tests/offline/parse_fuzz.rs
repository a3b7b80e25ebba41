//! The parser and the engine never panic, whatever the bytes: random frames under
//! every link type, and valid frames with random damage (truncation, flipped bytes,
//! lengths rewritten). Every frame is counted exactly once (TCP or a named rejection).
//!
//! Bounded in time: the case count is fixed (override with PROPTEST_CASES).

use proptest::prelude::*;
use rstwatch_schema::Encap;
use rstwatch_schema::Record;
use rstwatch_sensor::gen::encap::wrap;
use rstwatch_sensor::parse::{parse, LinkType, ParseOptions};
use rstwatch_sensor::{Engine, EngineConfig};

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Null,
    LinkType::Other(147),
];

/// A valid Ethernet/802.1Q/IPv4 (with options)/TCP (with options) frame carrying payload.
fn valid_v4_frame() -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x81, 0x00, 0x00, 0x07, 0x08, 0x00,
    ];
    let tcp_len = 32 + 5;
    let ip_len = 24 + tcp_len;
    f.extend_from_slice(&[
        0x46,
        0,
        (ip_len >> 8) as u8,
        ip_len as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2, 1, 1, 1, 0]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x80, 0x12, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f.extend_from_slice(&[2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 1, 1]);
    f.extend_from_slice(b"hello");
    f
}

/// A valid Ethernet/IPv6 with hop-by-hop and fragment headers/TCP frame.
fn valid_v6_frame() -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd];
    let payload = 8 + 8 + 20;
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, payload as u8, 0, 64]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop → fragment
    f.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 9]); // fragment (offset 0) → TCP
    f.extend_from_slice(&[
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x04, 0, 0, 0, 0, 0, 0,
    ]);
    f
}

#[test]
fn the_valid_frames_parse() {
    let p = parse(
        LinkType::Ethernet,
        &valid_v4_frame(),
        ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (p.sport, p.dport, p.vlan, p.payload_len),
        (40000, 443, 7, 5)
    );
    let o = p.opts;
    assert_eq!(
        (o.mss, o.wscale, o.sack_permitted, o.timestamps),
        (Some(1460), Some(7), true, None)
    );
    assert!(!o.malformed);
    let p = parse(
        LinkType::Ethernet,
        &valid_v6_frame(),
        ParseOptions::default(),
    )
    .unwrap();
    assert!(p.is_v6 && p.flags.rst());
    assert_eq!(p.ip_id, 9);
}

fn run_engine(frames: &[(LinkType, Vec<u8>)]) {
    let mut e = Engine::new(&EngineConfig {
        flow_capacity: 64,
        ..EngineConfig::default()
    });
    let mut out: Vec<Record> = vec![];
    for (i, (link, f)) in frames.iter().enumerate() {
        e.process(1_700_000_000_000_000 + i as i64 * 1000, *link, f, &mut out);
    }
    e.finish(&mut out);
    let c = e.raw_counters();
    assert_eq!(c.frames, frames.len() as u64);
    assert_eq!(
        c.frames,
        c.tcp + c.rejected_total(),
        "every frame is TCP or a named rejection"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(link in prop::sample::select(&LINKS[..]), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(link, &bytes, ParseOptions { verify_checksum: true, ..ParseOptions::default() });
    }

    #[test]
    fn damaged_valid_frames_never_panic(
        v6 in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let mut f = if v6 { valid_v6_frame() } else { valid_v4_frame() };
        for (i, x) in flips {
            let i = i.index(f.len());
            f[i] = x;
        }
        f.truncate(cut.index(f.len() + 1));
        let _ = parse(LinkType::Ethernet, &f, ParseOptions { verify_checksum: true, ..ParseOptions::default() });
    }

    #[test]
    fn engine_counts_every_damaged_frame(
        frames in prop::collection::vec(
            (any::<bool>(), any::<prop::sample::Index>(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)),
            1..40,
        )
    ) {
        let frames: Vec<(LinkType, Vec<u8>)> = frames
            .into_iter()
            .map(|(v6, cut, flips)| {
                let mut f = if v6 { valid_v6_frame() } else { valid_v4_frame() };
                for (i, x) in flips {
                    let i = i.index(f.len());
                    f[i] = x;
                }
                f.truncate(cut.index(f.len() + 1).max(f.len() / 2));
                (LinkType::Ethernet, f)
            })
            .collect();
        run_engine(&frames);
    }

    /// The tunnel decoders (issue 11): valid frames in every encapsulation, nested up
    /// to one level past the bound, then damaged. Flips land in the tunnel headers
    /// about half the time (they are the front of the frame).
    #[test]
    fn damaged_tunnel_frames_are_counted(
        frames in prop::collection::vec(
            (
                any::<bool>(),
                prop::collection::vec(prop::sample::select(&Encap::ALL[1..]), 1..=6),
                any::<prop::sample::Index>(),
                prop::collection::vec((0usize..96, any::<u8>()), 0..4),
            ),
            1..24,
        )
    ) {
        let frames: Vec<(LinkType, Vec<u8>)> = frames
            .into_iter()
            .map(|(v6, layers, cut, flips)| {
                let mut f = if v6 { valid_v6_frame() } else { valid_v4_frame() };
                for e in layers {
                    f = wrap(&f, e, 7);
                }
                for (i, x) in flips {
                    let i = i % f.len();
                    f[i] = x;
                }
                f.truncate(cut.index(f.len() + 1));
                let _ = parse(LinkType::Ethernet, &f, ParseOptions { verify_checksum: true, ..ParseOptions::default() });
                (LinkType::Ethernet, f)
            })
            .collect();
        run_engine(&frames);
    }
}
