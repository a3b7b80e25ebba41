//! The schema and the shipped queries on both dialects: `migrate` on a real
//! ClickHouse 18.16 server (twice, and refusing a newer schema), and the modern
//! rendering on current ClickHouse in-process through PyPI's chdb-core.

use std::path::Path;
use std::process::Command;

use rstwatch_collector::testing::ClickHouse;

const COLLECTOR: &str = env!("CARGO_BIN_EXE_rstwatch-collector");

fn migrate(url: &str, db: &str) -> std::process::Output {
    Command::new(COLLECTOR)
        .args(["migrate", "--clickhouse-url", url, "--database", db])
        .output()
        .unwrap()
}

#[test]
fn migrate_is_idempotent_and_refuses_a_newer_schema() {
    let Some(ch) = ClickHouse::start().unwrap() else {
        println!("SKIP migrate_is_idempotent_and_refuses_a_newer_schema: clickhouse-server is not installed");
        return;
    };
    let first = migrate(&ch.url(), "rw");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied schema versions [1, 2, 3, 4]"));
    let second = migrate(&ch.url(), "rw");
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing to do"));
    let tables = ch
        .query("SELECT name FROM system.tables WHERE database = 'rw' ORDER BY name")
        .unwrap();
    for t in [
        "anomalies",
        "batches",
        "cause_remedies",
        "flows",
        "rst_events",
        "rst_minute",
        "rst_minute_cause",
        "rst_minute_cause_mv",
        "rst_minute_mv",
        "rst_hour",
        "rst_hour_mv",
        "schema_migrations",
        "sensor_stats",
    ] {
        assert!(tables.lines().any(|l| l == t), "missing {t}: {tables}");
    }
    // Every shipped query runs on the empty schema.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let day = rstwatch_schema::cookbook::Params::range(now - 86_400, now + 60);
    for (name, q) in rstwatch_schema::sql::QUERIES {
        let q = &rstwatch_schema::cookbook::bind(q, &day).unwrap();
        ch.query_db("rw", q)
            .unwrap_or_else(|e| panic!("query {name}: {e}"));
    }
    // A schema newer than this build knows: refused, clearly.
    ch.query("INSERT INTO rw.schema_migrations VALUES (99, '099_future', now(), 'x')")
        .unwrap();
    let newer = migrate(&ch.url(), "rw");
    assert!(!newer.status.success());
    let err = String::from_utf8_lossy(&newer.stderr);
    assert!(
        err.contains("schema version 99, newer than this collector knows"),
        "{err}"
    );
    // serve refuses it too.
    let serve = Command::new(COLLECTOR)
        .args([
            "serve",
            "--plaintext",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--clickhouse-url",
            &ch.url(),
            "--database",
            "rw",
        ])
        .output()
        .unwrap();
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains("upgrade the collector"));
}

#[test]
fn serve_refuses_to_start_without_a_token() {
    let out = Command::new(COLLECTOR)
        .args(["serve", "--plaintext", "--listen", "127.0.0.1:0"])
        .args(["--clickhouse-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no sensor token configured"), "{err}");
    assert!(err.contains("--no-auth"), "{err}");
}

#[test]
fn modern_dialect_on_chdb() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_sql_chdb.py");
    let probe = Command::new("python3").args(["-c", "import chdb"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => {
            println!("SKIP modern_dialect_on_chdb: python3 with chdb-core is not installed (pip install chdb-core)");
            return;
        }
    }
    let out = Command::new("python3")
        .arg(&script)
        .arg(COLLECTOR)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("DDL: 21 statements applied"), "{text}");
    assert_eq!(
        text.matches("query ok:").count(),
        rstwatch_schema::sql::QUERIES.len(),
        "{text}"
    );
    assert!(text.contains("resets_by_cause as expected"), "{text}");
}

#[test]
fn retention_drops_old_day_partitions_on_servers_without_ttl() {
    let Some(ch) = ClickHouse::start().unwrap() else {
        println!("SKIP retention_drops_old_day_partitions_on_servers_without_ttl: clickhouse-server is not installed");
        return;
    };
    assert!(migrate(&ch.url(), "ret").status.success());
    ch.query(
        "INSERT INTO ret.rst_events (ts, ts_us, sensor_id, flow_uid) \
         SELECT toDateTime('2020-01-01 00:00:00'), 1577836800000000, 'old', 1",
    )
    .unwrap();
    ch.query(
        "INSERT INTO ret.rst_events (ts, ts_us, sensor_id, flow_uid) \
         SELECT now(), toInt64(toUInt32(now())) * 1000000, 'new', 2",
    )
    .unwrap();
    let dir = rstwatch_collector::testing::TempDir::new("rstwatch-ret").unwrap();
    let _col = rstwatch_collector::testing::Collector::start(
        Path::new(COLLECTOR),
        &ch.url(),
        "ret",
        &["--plaintext", "--no-auth", "--retention-days", "30"],
        &dir.path().join("collector.log"),
    )
    .unwrap();
    // The retention task runs at start-up (then hourly): wait for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let state = || {
        let left = ch
            .query("SELECT groupArray(sensor_id) FROM ret.rst_events")
            .unwrap();
        let rolled = ch
            .query("SELECT count() FROM ret.rst_minute WHERE minute < '2021-01-01 00:00:00'")
            .unwrap();
        (left.trim().to_string(), rolled.trim().to_string())
    };
    let mut s = state();
    while s != ("['new']".to_string(), "0".to_string()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        s = state();
    }
    assert_eq!(s, ("['new']".to_string(), "0".to_string()));
}
