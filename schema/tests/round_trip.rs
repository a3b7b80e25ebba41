//! The wire types survive archiving, validated access and JSON, and validation rejects
//! damaged bytes instead of reading them.

use proptest::prelude::*;
use rstwatch_schema::*;

fn arb_ip() -> impl Strategy<Value = IpBytes> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpBytes::from_v4),
        any::<[u8; 16]>().prop_map(IpBytes),
    ]
}

fn arb_rst() -> impl Strategy<Value = RstEvent> {
    (
        (
            -1_000_000_000_000_000i64..4_000_000_000_000_000i64,
            arb_ip(),
            any::<u16>(),
            arb_ip(),
            any::<u16>(),
            0u16..4096,
            0u16..4096,
        ),
        (
            prop::sample::select(Dir::ALL),
            prop::sample::select(RstClass::ALL),
            0u32..(1 << RstFlag::ALL.len()),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u64>(),
        ),
        (
            prop::sample::select(Cause::ALL),
            "[ -~]{0,80}",
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (ts_us, src, sport, dst, dport, vlan, inner_vlan),
                (dir, class, flags, suspect, seq, ack, ack_flag, ttl, ip_id, payload_len, uid),
                (cause, cause_detail, silence_ms),
            )| RstEvent {
                ts_us,
                src,
                sport,
                dst,
                dport,
                vlan,
                inner_vlan,
                dir,
                class,
                flags: RstFlags(flags),
                suspect,
                seq,
                ack,
                ack_flag,
                ttl,
                ip_id,
                payload_len,
                flow_uid: uid,
                cause,
                cause_detail,
                silence_ms,
                encap: rstwatch_schema::Encap::None,
                tunnel_id: 0,
            },
        )
}

fn arb_flow() -> impl Strategy<Value = FlowRecord> {
    (
        (
            0i64..4_000_000_000_000_000i64,
            0i64..1_000_000_000,
            arb_ip(),
            any::<u16>(),
            arb_ip(),
            any::<u16>(),
        ),
        (
            prop::sample::select(ConnState::ALL),
            "[ShADFRadfhr^]{0,12}",
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            prop::sample::select(CloseReason::ALL),
            any::<u64>(),
            prop::option::of(prop::sample::select(Cause::ALL)),
        ),
    )
        .prop_map(
            |(
                (ts, dur, oh, op, rh, rp),
                (conn_state, history, pk, by, rst_count, close, uid, cause),
            )| {
                FlowRecord {
                    ts_start_us: ts,
                    ts_end_us: ts + dur,
                    orig_h: oh,
                    orig_p: op,
                    resp_h: rh,
                    resp_p: rp,
                    vlan: 0,
                    inner_vlan: 0,
                    conn_state,
                    history,
                    orig_pkts: pk,
                    resp_pkts: pk / 2,
                    orig_bytes: by,
                    resp_bytes: by / 3,
                    rst_count,
                    close,
                    flow_uid: uid,
                    cause,
                    encap: rstwatch_schema::Encap::None,
                    tunnel_id: 0,
                }
            },
        )
}

fn arb_batch() -> impl Strategy<Value = Batch> {
    (
        "[a-z0-9-]{1,20}",
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(arb_rst(), 0..20),
        prop::collection::vec(arb_flow(), 0..10),
    )
        .prop_map(|(sensor_id, boot_id, seq, rst, flows)| Batch {
            header: BatchHeader {
                schema_version: SCHEMA_VERSION,
                sensor_id,
                boot_id,
                seq,
                created_us: 1_700_000_000_000_000,
            },
            rst,
            flows,
            anomalies: vec![Anomaly {
                ts_us: 1,
                kind: AnomalyKind::Scan,
                subject: "198.51.100.7".into(),
                value: 30.0,
                baseline: 25.0,
                detail: "rejects from 30 hosts on port 22".into(),
            }],
            stats: vec![SensorStats {
                ts_us: 2,
                counters: vec![NamedCounter {
                    name: "parse.truncated".into(),
                    value: 3,
                }],
            }],
        })
}

proptest! {
    #[test]
    fn batch_round_trips_through_validated_rkyv(batch in arb_batch()) {
        let bytes = batch.to_bytes();
        let back = batch::decode_batch(&bytes).expect("valid bytes must validate");
        prop_assert_eq!(back, batch);
    }

    #[test]
    fn records_round_trip_through_json(rst in arb_rst(), flow in arb_flow()) {
        for rec in [Record::Rst(rst), Record::Flow(flow)] {
            let line = serde_json::to_string(&rec).unwrap();
            let back: Record = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(back, rec);
        }
    }

    #[test]
    fn damaged_bytes_never_panic(batch in arb_batch(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let bytes = batch.to_bytes();
        // Truncation: must fail validation or, at worst, decode to something; never panic.
        let n = cut.index(bytes.len() + 1);
        let mut short = rkyv::util::AlignedVec::<16>::new();
        short.extend_from_slice(&bytes[..n]);
        if n < bytes.len() {
            let _ = batch::decode_batch(&short);
        }
        // A flipped byte anywhere.
        let mut damaged = rkyv::util::AlignedVec::<16>::new();
        damaged.extend_from_slice(&bytes);
        if !damaged.is_empty() {
            let i = flip.0.index(damaged.len());
            damaged[i] ^= flip.1 | 1;
            let _ = batch::decode_batch(&damaged);
        }
    }
}

#[test]
fn truncated_batch_is_rejected() {
    let batch = Batch {
        header: BatchHeader {
            schema_version: SCHEMA_VERSION,
            sensor_id: "s1".into(),
            boot_id: 7,
            seq: 0,
            created_us: 0,
        },
        rst: vec![],
        flows: vec![],
        anomalies: vec![],
        stats: vec![],
    };
    let bytes = batch.to_bytes();
    let mut short = rkyv::util::AlignedVec::<16>::new();
    short.extend_from_slice(&bytes[..bytes.len() - 4]);
    assert!(batch::decode_batch(&short).is_err());
    assert!(batch::decode_batch(&[]).is_err());
}

#[test]
fn json_field_names_follow_the_offline_contract() {
    let rst = RstEvent {
        flags: [RstFlag::SeqExact].into_iter().collect(),
        ack: 101,
        ack_flag: true,
        ttl: 64,
        flow_uid: 9,
        ..RstEvent::new(
            1_700_000_000_000_001,
            ("192.0.2.1".parse().unwrap(), 80),
            ("198.51.100.2".parse().unwrap(), 40000),
            Dir::Resp,
            RstClass::Reject,
        )
    };
    let v: serde_json::Value = serde_json::to_value(Record::Rst(rst)).unwrap();
    for k in [
        "type", "ts", "src", "sport", "dst", "dport", "vlan", "dir", "class", "flags", "suspect",
        "seq", "ack", "ttl",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert_eq!(v["type"], "rst");
    assert_eq!(v["ts"], "2023-11-14T22:13:20.000001Z");
    assert_eq!(v["class"], "reject");
    assert_eq!(v["dir"], "resp");
    assert_eq!(v["flags"], serde_json::json!(["seq_exact"]));
}
