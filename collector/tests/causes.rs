//! Causes in ClickHouse (schema version 2) on a real ClickHouse 18.16 server:
//! upgrading a version-1 database that holds data, every cause and `silence_ms`
//! through the real collector, the `rst_minute_cause` rollup, `cause_remedies` and the
//! numbers of `resets_by_cause.sql`.

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rstwatch_collector::testing::{ClickHouse, Collector, TempDir};
use rstwatch_schema::{
    Cause, CloseReason, ConnState, Dir, FlowRecord, IpBytes, RstClass, RstEvent, RstFlags,
};
use rstwatch_sensor::ship::{ShipArgs, ShipSink};
use rstwatch_sensor::Sink;

const COLLECTOR: &str = env!("CARGO_BIN_EXE_rstwatch-collector");

fn start(test: &str) -> Option<ClickHouse> {
    let ch = ClickHouse::start().expect("starting clickhouse-server");
    if ch.is_none() {
        println!("SKIP {test}: clickhouse-server is not installed");
    }
    ch
}

fn migrate(ch: &ClickHouse, db: &str, to: Option<u32>) -> String {
    let mut c = Command::new(COLLECTOR);
    c.args(["migrate", "--clickhouse-url", &ch.url(), "--database", db]);
    if let Some(v) = to {
        c.args(["--to-version", &v.to_string()]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn one(ch: &ClickHouse, db: &str, sql: &str) -> String {
    ch.query_db(db, sql).unwrap().trim().to_string()
}

fn num(ch: &ClickHouse, db: &str, sql: &str) -> u64 {
    one(ch, db, sql)
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A TabSeparated field back to its text.
fn unescape_tsv(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// The cookbook's parameters for the last `secs` seconds (and a minute ahead).
fn last_seconds(secs: u32) -> rstwatch_schema::cookbook::Params {
    let now = now_s() as u32;
    rstwatch_schema::cookbook::Params::range(now - secs, now + 60)
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const V1_RSTS: u64 = 200_000;
const V1_FLOWS: u64 = 50_000;

/// Version-1 rows, written the way a version-1 collector wrote them (its columns only).
fn load_version_1_rows(ch: &ClickHouse, db: &str) {
    ch.query_db(
        db,
        &format!(
            "INSERT INTO rst_events (ts, ts_us, sensor_id, boot_id, batch_seq, src, sport, dst, \
             dport, dir, class, flags, suspect, seq, flow_uid) \
             SELECT toDateTime(now() - 600 + number % 300), toInt64(toUInt32(now())) * 1000000, \
             'v1', 1, intDiv(number, 1000), \
             toFixedString(IPv6StringToNum('::ffff:192.0.2.10'), 16), 443, \
             toFixedString(IPv6StringToNum('::ffff:198.51.100.20'), 16), 40000 + number % 1000, \
             if(number % 2 = 0, 'resp', 'orig'), 'abort', 0, number % 10 = 0, number, number \
             FROM system.numbers LIMIT {V1_RSTS}"
        ),
    )
    .unwrap();
    // Close reasons cycle fin, rst, timeout, evicted, end_of_capture; every third
    // evicted or timed-out flow had an RST too.
    ch.query_db(
        db,
        &format!(
            "INSERT INTO flows (ts_start, ts_end, sensor_id, boot_id, batch_seq, conn_state, \
             history, close, rst_count, flow_uid) \
             SELECT now() - 700, now() - 600, 'v1', 1, intDiv(number, 1000), 'SF', 'ShADadFf', \
             CAST(number % 5 AS Enum8('fin' = 0, 'rst' = 1, 'timeout' = 2, 'evicted' = 3, \
             'end_of_capture' = 4)), if(number % 5 = 1 OR (number % 5 IN (2, 3) AND number % 3 = 0), 1, 0), \
             number FROM system.numbers LIMIT {V1_FLOWS}"
        ),
    )
    .unwrap();
    ch.query_db(
        db,
        "INSERT INTO anomalies (ts, sensor_id, kind, subject, detail) \
         VALUES (now(), 'v1', 'scan', '203.0.113.9', 'x'), (now(), 'v1', 'rst_storm', '192.0.2.10:443', 'y')",
    )
    .unwrap();
}

/// Flows that a version-1 row says an RST closed (or that counted an RST).
fn v1_flows_with_rst() -> u64 {
    (0..V1_FLOWS)
        .filter(|n| n % 5 == 1 || ((n % 5 == 2 || n % 5 == 3) && n % 3 == 0))
        .count() as u64
}

#[test]
fn upgrade_from_version_1_keeps_every_row_and_labels_old_ones() {
    let Some(ch) = start("upgrade_from_version_1_keeps_every_row_and_labels_old_ones") else {
        return;
    };
    let db = "up";
    assert!(migrate(&ch, db, Some(1)).contains("applied schema versions [1]"));
    // 001 renders the anomaly kinds of this build, which has `failover`; the version-1
    // build's had not.
    ch.query_db(
        db,
        "ALTER TABLE anomalies MODIFY COLUMN kind \
         Enum8('rst_storm' = 0, 'scan' = 1, 'backscatter' = 2, 'injection' = 3)",
    )
    .unwrap();
    load_version_1_rows(&ch, db);
    // A version-1 database has no `failover` kind.
    assert!(ch
        .query_db(
            db,
            "INSERT INTO anomalies (sensor_id, kind) VALUES ('v1', 'failover')"
        )
        .is_err());
    let tables = ["rst_events", "flows", "anomalies", "rst_minute"];
    let count = |t: &str| num(&ch, db, &format!("SELECT count() FROM {t}"));
    let before: Vec<u64> = tables.iter().map(|t| count(t)).collect();
    assert_eq!(before[..3], [V1_RSTS, V1_FLOWS, 2]);

    let t0 = Instant::now();
    assert!(migrate(&ch, db, None).contains("applied schema versions [2, 3, 4]"));
    println!(
        "migration 002 on 18.16 with {V1_RSTS} rst_events and {V1_FLOWS} flows: {:?}",
        t0.elapsed()
    );
    let after: Vec<u64> = tables.iter().map(|t| count(t)).collect();
    assert_eq!(after, before, "row counts of {tables:?}");
    assert_eq!(
        one(&ch, db, "SELECT groupUniqArray(toString(cause)), max(length(cause_detail)), max(silence_ms) FROM rst_events"),
        "['unknown']\t0\t0"
    );
    let rst_flows = v1_flows_with_rst();
    assert_eq!(
        ch.query_db(
            db,
            "SELECT cause, count() FROM flows GROUP BY cause ORDER BY cause"
        )
        .unwrap(),
        format!("\t{}\nunknown\t{rst_flows}\n", V1_FLOWS - rst_flows)
    );
    // The rollup by cause is backfilled from the old rows: every RST, once.
    assert_eq!(
        one(
            &ch,
            db,
            "SELECT cause, sum(rsts), sum(suspect_rsts) FROM rst_minute_cause GROUP BY cause"
        ),
        format!("unknown\t{V1_RSTS}\t{}", V1_RSTS / 10)
    );
    // So is the hourly rollup (migration 4).
    assert_eq!(
        one(
            &ch,
            db,
            "SELECT sum(rsts), sum(suspect_rsts), uniqExact(hour) FROM rst_hour"
        ),
        format!(
            "{V1_RSTS}\t{}\t{}",
            V1_RSTS / 10,
            num(
                &ch,
                db,
                "SELECT uniqExact(toStartOfHour(ts)) FROM rst_events"
            )
        )
    );
    assert_cause_remedies_match_the_code(&ch, db);
    ch.query_db(
        db,
        "INSERT INTO anomalies (sensor_id, kind) VALUES ('v2', 'failover')",
    )
    .unwrap();

    // A migration that failed after its ALTERs is run again: 18.16 has no
    // ADD COLUMN IF NOT EXISTS, the backfill must not count twice.
    ch.query_db(
        db,
        "ALTER TABLE schema_migrations DELETE WHERE version >= 2",
    )
    .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while num(&ch, db, "SELECT max(version) FROM schema_migrations") != 1 {
        assert!(Instant::now() < deadline, "mutation did not finish");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(migrate(&ch, db, None).contains("applied schema versions [2, 3, 4]"));
    assert_eq!(
        num(&ch, db, "SELECT sum(rsts) FROM rst_minute_cause"),
        V1_RSTS
    );
    assert_eq!(count("rst_events"), V1_RSTS);
    assert!(migrate(&ch, db, None).contains("nothing to do"));
}

/// `cause_remedies` holds exactly `Cause::ALL` with this build's texts.
fn assert_cause_remedies_match_the_code(ch: &ClickHouse, db: &str) {
    let got: Vec<Vec<String>> = one(
        ch,
        db,
        "SELECT cause, meaning, remedy, precedence FROM cause_remedies ORDER BY precedence",
    )
    .lines()
    .map(|l| l.split('\t').map(unescape_tsv).collect())
    .collect();
    let want: Vec<Vec<String>> = Cause::ALL
        .iter()
        .map(|c| {
            vec![
                c.as_str().to_string(),
                c.meaning().to_string(),
                c.remedy().to_string(),
                c.code().to_string(),
            ]
        })
        .collect();
    assert_eq!(got, want);
}

/// One RST of cause `c`, number `k` of its kind, to a service of its own.
fn rst_of(c: Cause, k: u64, ts_us: i64) -> RstEvent {
    let server = IpBytes::from_v4([192, 0, 2, 100 + c.code()]);
    let client = if c.code().is_multiple_of(2) {
        IpBytes::from_v4([198, 51, 100, 7])
    } else {
        "2001:db8::7".parse().unwrap()
    };
    let mut e = RstEvent::new(
        ts_us,
        (server, 8000 + u16::from(c.code())),
        (client, 40_000 + k as u16),
        Dir::Resp,
        RstClass::Abort,
    );
    e.flags = RstFlags(0);
    e.suspect = c == Cause::Injection;
    e.flow_uid = u64::from(c.code()) * 1000 + k;
    e.cause = c;
    // Details with the characters TSV escapes, and one empty.
    e.cause_detail = if c == Cause::Abort {
        String::new()
    } else {
        format!(
            "{} #{k}: silent {} s, 'quoted'\ttab \\ backslash",
            c.as_str(),
            k * 3
        )
    };
    e.silence_ms = u64::from(c.code()) * 1_000_000 + k;
    e
}

fn flow_of(uid: u64, cause: Option<Cause>, ts_us: i64) -> FlowRecord {
    FlowRecord {
        ts_start_us: ts_us - 1_000_000,
        ts_end_us: ts_us,
        orig_h: IpBytes::from_v4([198, 51, 100, 7]),
        orig_p: 40_000,
        resp_h: IpBytes::from_v4([192, 0, 2, 100]),
        resp_p: 443,
        vlan: 0,
        inner_vlan: 0,
        conn_state: if cause.is_some() {
            ConnState::Rstr
        } else {
            ConnState::Sf
        },
        history: "ShADadr".into(),
        orig_pkts: 3,
        resp_pkts: 3,
        orig_bytes: 10,
        resp_bytes: 20,
        rst_count: cause.is_some() as u32,
        close: if cause.is_some() {
            CloseReason::Rst
        } else {
            CloseReason::Fin
        },
        flow_uid: uid,
        cause,
        encap: rstwatch_schema::Encap::None,
        tunnel_id: 0,
    }
}

/// Cause number i (precedence order) gets i + 1 RSTs, so every count differs.
fn designed_rsts(now_us: i64) -> Vec<RstEvent> {
    let mut out = Vec::new();
    for c in Cause::ALL {
        for k in 0..=u64::from(c.code()) {
            out.push(rst_of(*c, k, now_us - 60_000_000 + k as i64 * 1000));
        }
    }
    out
}

fn ship(col: &Collector, dir: &Path, rsts: &[RstEvent], flows: &[FlowRecord]) {
    let args = ShipArgs {
        ship: Some(col.addr()),
        plaintext: true,
        spool_dir: dir.join("spool"),
        sensor_id: Some("edge-c".into()),
        batch_max_ms: 100,
        ship_timeout_secs: 60,
        ..ShipArgs::default()
    };
    let mut sink = ShipSink::start(&args).unwrap();
    for e in rsts {
        sink.rst(e.clone());
    }
    for f in flows {
        sink.flow(f.clone());
    }
    let r = sink.finish().unwrap();
    assert_eq!(r.events_acked, (rsts.len() + flows.len()) as u64);
}

#[test]
fn every_cause_round_trips_and_resets_by_cause_counts_them() {
    let Some(ch) = start("every_cause_round_trips_and_resets_by_cause_counts_them") else {
        return;
    };
    let db = "rstwatch";
    migrate(&ch, db, None);
    let dir = TempDir::new("rstwatch-causes").unwrap();
    let col = Collector::start(
        Path::new(COLLECTOR),
        &ch.url(),
        db,
        &["--plaintext", "--no-auth"],
        &dir.path().join("collector.log"),
    )
    .unwrap();
    let now_us = now_s() * 1_000_000;
    let mut rsts = designed_rsts(now_us);
    // Two hours old: outside the query's hour, inside the tables.
    let mut old = rst_of(Cause::Injection, 99, now_us - 7_200_000_000);
    old.flow_uid = 99_999;
    rsts.push(old);
    let mut flows: Vec<FlowRecord> = Cause::ALL
        .iter()
        .map(|c| flow_of(u64::from(c.code()), Some(*c), now_us))
        .collect();
    flows.push(flow_of(100, None, now_us));
    ship(&col, dir.path(), &rsts, &flows);

    // Every field of the cause, as sent.
    let got: Vec<String> = one(
        &ch,
        db,
        "SELECT flow_uid, cause, cause_detail, silence_ms FROM rst_events ORDER BY flow_uid",
    )
    .lines()
    .map(|l| {
        l.split('\t')
            .map(unescape_tsv)
            .collect::<Vec<_>>()
            .join("|")
    })
    .collect();
    let mut want: Vec<(u64, String)> = rsts
        .iter()
        .map(|e| {
            let row = format!(
                "{}|{}|{}|{}",
                e.flow_uid, e.cause, e.cause_detail, e.silence_ms
            );
            (e.flow_uid, row)
        })
        .collect();
    want.sort();
    assert_eq!(got, want.into_iter().map(|(_, r)| r).collect::<Vec<_>>());
    let flow_causes = ch
        .query_db(db, "SELECT flow_uid, cause FROM flows ORDER BY flow_uid")
        .unwrap();
    let want_flows: String = flows
        .iter()
        .map(|f| format!("{}\t{}\n", f.flow_uid, f.cause.map_or("", Cause::as_str)))
        .collect();
    assert_eq!(flow_causes, want_flows);

    // The rollup by cause agrees with the raw rows.
    let rolled = one(
        &ch,
        db,
        "SELECT cause, sum(rsts) FROM rst_minute_cause GROUP BY cause ORDER BY cause",
    );
    let want_rolled: Vec<String> = Cause::ALL
        .iter()
        .map(|c| {
            let extra = u64::from(*c == Cause::Injection);
            format!("{c}\t{}", u64::from(c.code()) + 1 + extra)
        })
        .collect();
    assert_eq!(rolled, want_rolled.join("\n"));
    // The cookbook's rate query reads the same numbers from the rollup.
    let day = last_seconds(86_400);
    let q = rstwatch_schema::cookbook::bound("reset_rate_by_cause", &day).unwrap();
    let mut per_cause = std::collections::BTreeMap::<u8, u64>::new();
    for line in one(&ch, db, &q).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let c: Cause = f[1].parse().unwrap();
        *per_cause.entry(c.code()).or_default() += f[2].parse::<u64>().unwrap();
    }
    let from_query: Vec<String> = per_cause
        .iter()
        .map(|(code, n)| format!("{}\t{n}", Cause::ALL[usize::from(*code)]))
        .collect();
    assert_eq!(from_query, want_rolled);
    assert_resets_by_cause(&ch, db, &rsts[..rsts.len() - 1]);
}

/// `resets_by_cause.sql` on `in_hour` (the RSTs of the last hour): one row per cause
/// and service with its count, share, first detail and remedy, most frequent first.
fn assert_resets_by_cause(ch: &ClickHouse, db: &str, in_hour: &[RstEvent]) {
    let q = rstwatch_schema::cookbook::bound("resets_by_cause", &last_seconds(3_600)).unwrap();
    let rows: Vec<Vec<String>> = one(ch, db, &q)
        .lines()
        .map(|l| l.split('\t').map(unescape_tsv).collect())
        .collect();
    let total = in_hour.len() as f64;
    assert_eq!(total, 105.0, "1 + 2 + ... + 14");
    let expect: Vec<Cause> = Cause::ALL.iter().rev().copied().collect();
    assert_eq!(rows.len(), expect.len(), "{rows:?}");
    for (row, c) in rows.iter().zip(&expect) {
        let n = u64::from(c.code()) + 1;
        let first = in_hour
            .iter()
            .filter(|e| e.cause == *c)
            .min_by_key(|e| e.ts_us)
            .unwrap();
        assert_eq!(row[0], c.as_str());
        assert_eq!(row[1], format!("192.0.2.{}", 100 + c.code()));
        assert_eq!(row[2], (8000 + u16::from(c.code())).to_string());
        assert_eq!(row[3], n.to_string(), "{c}");
        let share: f64 = row[4].parse().unwrap();
        assert!(
            (share - (n as f64 / total * 1e4).round() / 1e4).abs() < 1e-9,
            "{c}: {share}"
        );
        assert_eq!(row[5], first.cause_detail, "{c}");
        assert_eq!(row[6], c.remedy(), "{c}");
    }
}
