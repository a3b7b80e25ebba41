//! The view's and report's queries (`insight::queries`: the cookbook's files where
//! the cookbook has the question) on designed rows in a real ClickHouse 18.16, with the
//! numbers the rows imply: the firewall-timeout estimate is the spike of the silence
//! before idle-timeout RSTs, week over week compares the same range seven days earlier, and the sensor/port/cause/server filters select exactly
//! their rows. Every query, with every filter set, also runs on current ClickHouse
//! (chdb) in the modern dialect.

mod soc;

use std::io::Write;
use std::process::{Command, Stdio};

use rstwatch_collector::ch::ChConfig;
use rstwatch_collector::insight::{Filter, Insight, Query, Table};
use rstwatch_collector::testing::ClickHouse;
use rstwatch_schema::{AnomalyKind, Cause, RstClass};
use soc::*;

const WEEK: i64 = 7 * 86_400;

/// One designed RST: the server `srv`:`port` resets a client (dir resp).
fn rst(
    ts: i64,
    sensor: &str,
    srv: &str,
    port: u16,
    class: &str,
    cause: &str,
    silence_ms: u64,
) -> String {
    format!(
        "({ts}, {}, '{sensor}', toFixedString(IPv6StringToNum('{srv}'), 16), {port}, \
         toFixedString(IPv6StringToNum('::ffff:198.51.100.7'), 16), 40000, 'resp', '{class}', \
         '{cause}', {silence_ms})",
        ts * 1_000_000
    )
}

fn insert_designed_rows(ch: &ClickHouse, now: i64) {
    let srv = "::ffff:192.0.2.50";
    let mut rows = Vec::new();
    // Idle timeouts at 192.0.2.50:443: 7 after 350.0 to 350.3 s of silence (the
    // firewall's timeout; the cookbook rounds to the second), 2 after 120 s, 1 after
    // 900 s.
    for i in 0..7 {
        rows.push(rst(
            now - 600 + i,
            "edge-1",
            srv,
            443,
            "abort",
            "idle_timeout",
            350_000 + i as u64 * 50,
        ));
    }
    for (i, s) in [120_000u64, 120_500, 900_000].iter().enumerate() {
        rows.push(rst(
            now - 500 + i as i64,
            "edge-1",
            srv,
            443,
            "abort",
            "idle_timeout",
            *s,
        ));
    }
    // Refused: 4 now, 6 in the same range a week ago.
    for i in 0..4 {
        rows.push(rst(
            now - 400 + i,
            "edge-1",
            "::ffff:192.0.2.51",
            22,
            "reject",
            "refused",
            0,
        ));
    }
    for i in 0..6 {
        rows.push(rst(
            now - WEEK - 400 + i,
            "edge-1",
            "::ffff:192.0.2.51",
            22,
            "reject",
            "refused",
            0,
        ));
    }
    // Another sensor, another port, an IPv6 server.
    for i in 0..3 {
        rows.push(rst(
            now - 300 + i,
            "edge-2",
            "2001:db8::50",
            8080,
            "abort",
            "abort",
            0,
        ));
    }
    ch.query_db(
        DB,
        &format!(
            "INSERT INTO rst_events (ts, ts_us, sensor_id, src, sport, dst, dport, dir, class, \
             cause, silence_ms) VALUES {}",
            rows.join(", ")
        ),
    )
    .unwrap();
    insert_designed_anomalies(ch, now - 200);
}

fn insert_designed_anomalies(ch: &ClickHouse, ts: i64) {
    ch.query_db(
        DB,
        &format!(
            "INSERT INTO anomalies (ts, ts_us, sensor_id, kind, subject, value, baseline, detail) VALUES \
             ({t}, {t}000000, 'edge-1', 'scan', '192.0.2.66', 30, 25, 'rejects from 30 hosts'), \
             ({t}, {t}000000, 'edge-2', 'rst_storm', '192.0.2.50:443', 1200, 10, 'storm')",
            t = ts
        ),
    )
    .unwrap();
}

fn fetch(rt: &tokio::runtime::Runtime, i: &Insight, q: Query, f: &Filter) -> Table {
    rt.block_on(i.fetch(q, f)).unwrap()
}

#[test]
fn the_queries_count_designed_rows_exactly() {
    let Some(ch) = start_clickhouse("the_queries_count_designed_rows_exactly") else {
        return;
    };
    let now = now_s();
    insert_designed_rows(&ch, now);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = ChConfig {
        url: ch.url(),
        database: DB.into(),
        user: None,
        password: None,
        validation: None,
    };
    let i = rt.block_on(Insight::connect(&cfg)).unwrap();
    let hour = Filter::last(3600, now + 1);
    assert_idle_estimate(&rt, &i, &hour);
    assert_week_over_week(&rt, &i, &hour);
    assert_filters_select_their_rows(&rt, &i, &hour, now);
    // Every query runs with every filter set, on 18.16.
    for f in narrowed(now) {
        for q in Query::ALL {
            fetch(&rt, &i, q, &f);
        }
    }
}

/// The firewall's timeout is the spike: 7 of the 10 idle-timeout RSTs at 350 s.
fn assert_idle_estimate(rt: &tokio::runtime::Runtime, i: &Insight, hour: &Filter) {
    let idle = fetch(rt, i, Query::IdleTimeouts, hour);
    assert_eq!(idle.rows.len(), 1, "{idle:?}");
    assert_eq!(idle.text(0, "server_addr"), "192.0.2.50");
    assert_eq!(idle.num(0, "server_port"), 443.0);
    assert_eq!(idle.num(0, "resets"), 10.0);
    assert_eq!(idle.text(0, "estimate"), "spike");
    assert_eq!(idle.num(0, "estimated_timeout_s"), 350.0);
    assert_eq!(idle.num(0, "mode_resets"), 7.0);
    assert_eq!(
        (idle.num(0, "min_silence_s"), idle.num(0, "max_silence_s")),
        (120.0, 900.0)
    );
}

fn assert_week_over_week(rt: &tokio::runtime::Runtime, i: &Insight, hour: &Filter) {
    let wow = fetch(rt, i, Query::WeekOverWeek, hour);
    let row = (0..wow.rows.len())
        .find(|r| wow.text(*r, "cause") == "refused")
        .unwrap();
    assert_eq!(
        (wow.num(row, "rsts"), wow.num(row, "previous_rsts")),
        (4.0, 6.0)
    );
}

fn assert_filters_select_their_rows(
    rt: &tokio::runtime::Runtime,
    i: &Insight,
    hour: &Filter,
    now: i64,
) {
    let total = |f: &Filter| fetch(rt, i, Query::Totals, f).num(0, "rsts");
    assert_eq!(total(hour), 17.0);
    let with = |g: &dyn Fn(&mut Filter)| {
        let mut f = hour.clone();
        g(&mut f);
        f
    };
    assert_eq!(total(&with(&|f| f.sensor = Some("edge-2".into()))), 3.0);
    assert_eq!(
        total(&with(&|f| f.sensor = Some("x' OR '1'='1".into()))),
        0.0
    );
    assert_eq!(total(&with(&|f| f.service_port = Some(8080))), 3.0);
    assert_eq!(total(&with(&|f| f.cause = Some(Cause::Refused))), 4.0);
    assert_eq!(total(&with(&|f| f.class = Some(RstClass::Abort))), 13.0);
    assert_eq!(
        total(&with(&|f| f.server = "2001:db8::50".parse().ok())),
        3.0
    );
    assert_eq!(
        total(&with(&|f| f.server = "192.0.2.50".parse().ok())),
        10.0
    );
    let week_ago = Filter::last(3600, now + 1 - WEEK);
    assert_eq!(total(&week_ago), 6.0);

    let kinds = fetch(
        rt,
        i,
        Query::AnomalyKinds,
        &with(&|f| f.kind = Some(AnomalyKind::Scan)),
    );
    assert_eq!(kinds.rows.len(), 1);
    assert_eq!(kinds.num(0, "anomalies"), 1.0);
    let rows = fetch(
        rt,
        i,
        Query::RstRows,
        &with(&|f| f.cause = Some(Cause::IdleTimeout)),
    );
    assert_eq!(rows.rows.len(), 10);
    // Times print as UTC date-times with microseconds.
    let t = rows.text(0, "time");
    assert_eq!(t.len(), 26, "{t}");
    assert_eq!(&t[19..20], ".");
}

/// Filters with every field set (an IPv4 and an IPv6 server).
fn narrowed(now: i64) -> Vec<Filter> {
    let base = Filter {
        from: now - 3600,
        to: now,
        sensor: Some("edge-1".into()),
        service_port: Some(443),
        cause: Some(Cause::IdleTimeout),
        class: Some(RstClass::Abort),
        kind: Some(AnomalyKind::Scan),
        server: "192.0.2.50".parse().ok(),
        suspect: true,
    };
    let mut v6 = base.clone();
    v6.server = "2001:db8::50".parse().ok();
    vec![Filter::last(3600, now), base, v6]
}

/// Applies the modern DDL in chdb, then runs each SQL statement read from stdin (one
/// JSON list); prints `ok N`.
const CHDB_SCRIPT: &str = r#"
import json, subprocess, sys, tempfile
from chdb import session as chs
with tempfile.TemporaryDirectory() as d:
    s = chs.Session(d)
    q = lambda sql: s.query(sql, "TSV").bytes().decode()
    version = q("SELECT version()").strip().strip('"')
    ddl = subprocess.run([sys.argv[1], "print-schema", "--server-version", version],
                         check=True, capture_output=True, text=True).stdout
    q("CREATE DATABASE IF NOT EXISTS rstwatch")
    for chunk in ddl.split(";\n"):
        lines = [l for l in chunk.splitlines() if l.strip() and not l.strip().startswith("--")]
        if lines:
            q("\n".join(lines))
    q("USE rstwatch")
    n = 0
    for sql in json.load(sys.stdin):
        q(sql)
        n += 1
    print(f"ok {n}")
"#;

#[test]
fn every_query_runs_on_current_clickhouse_through_chdb() {
    let probe = Command::new("python3").args(["-c", "import chdb"]).output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        println!("SKIP every_query_runs_on_current_clickhouse_through_chdb: no python3 chdb-core");
        return;
    }
    let now = now_s();
    let sqls: Vec<String> = narrowed(now)
        .iter()
        .flat_map(|f| {
            Query::ALL.map(|q| rstwatch_collector::insight::queries::render(q, f, true).unwrap())
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", CHDB_SCRIPT, COLLECTOR])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&sqls).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), format!("ok {}", sqls.len()));
}
