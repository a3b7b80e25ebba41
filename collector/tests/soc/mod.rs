//! Shared by `web.rs` and `report.rs`: a real ClickHouse 18.16 with the schema, a real
//! collector, data from the sensor's `gen` scenarios replayed through the real engine
//! and shipped, SQL helpers, and the headless browser.
#![allow(dead_code)]

pub(crate) mod cdp;

use std::path::Path;

use rstwatch_collector::testing::{ClickHouse, Collector, TempDir};
use rstwatch_sensor::gen::{self, GenOptions, Scenario};
use rstwatch_sensor::ship::{replay_shipped, ShipArgs};
use rstwatch_sensor::{Engine, EngineConfig};

pub(crate) const COLLECTOR: &str = env!("CARGO_BIN_EXE_rstwatch-collector");
pub(crate) const DB: &str = "rstwatch";
pub(crate) const SENSOR: &str = "edge-1";

pub(crate) fn now_s() -> i64 {
    rstwatch_collector::log::now_us() / 1_000_000
}

pub(crate) fn start_clickhouse(test: &str) -> Option<ClickHouse> {
    ClickHouse::start_migrated(Path::new(COLLECTOR), DB, test)
}

pub(crate) fn collector(ch: &ClickHouse, dir: &Path, extra: &[&str]) -> Collector {
    let mut args = vec!["--plaintext", "--no-auth"];
    args.extend_from_slice(extra);
    Collector::start(
        Path::new(COLLECTOR),
        &ch.url(),
        DB,
        &args,
        &dir.join("collector.log"),
    )
    .unwrap()
}

/// Generates `scenario` starting at `start_us`, writes it as a pcap, replays it
/// through the sensor's engine and ships it to `col`; waits for every acknowledgement.
pub(crate) fn load(
    col: &Collector,
    dir: &Path,
    scenario: Scenario,
    seed: u64,
    flows: usize,
    start_us: i64,
) {
    let opts = GenOptions {
        seed,
        flows,
        start_us,
    };
    let g = gen::generate(scenario, &opts);
    let pcap = dir.join(format!("{scenario:?}-{seed}.pcap"));
    gen::write_pcap(&pcap, &g.frames).unwrap();
    let args = ShipArgs {
        ship: Some(col.addr()),
        plaintext: true,
        spool_dir: dir.join(format!("spool-{scenario:?}-{seed}")),
        sensor_id: Some(SENSOR.into()),
        batch_max_ms: 100,
        ship_timeout_secs: 120,
        ..ShipArgs::default()
    };
    let files = vec![pcap];
    // What `replay --ship` does: the file through the one engine into the shipper.
    let code = replay_shipped(&args, |sink| {
        let mut engine = Engine::new(&EngineConfig::default());
        let mut bad = 0;
        for path in &files {
            let r = rstwatch_sensor::source::read_file(path, None, |f| {
                engine.process(f.ts_us, f.link, f.data, sink)
            });
            bad += usize::from(r.is_err());
        }
        engine.finish(sink);
        (bad, engine.counters())
    })
    .unwrap();
    assert_eq!(code, 0, "replay --ship of {scenario:?} did not complete");
}

/// The loads every test uses: `mixed` captures (10 min each, different seeds and
/// sizes) starting 5, 4, 3 and 2 hours ago and 40 minutes ago, a storm 3.5 h ago and
/// backscatter 1.5 h ago, so "last 1h" holds only the last and "last 6h" all of them.
pub(crate) struct Loaded {
    pub now: i64,
    pub old_start: i64,
    pub recent_start: i64,
}

pub(crate) fn load_two_periods(col: &Collector, dir: &TempDir) -> Loaded {
    let now = now_s();
    let l = Loaded {
        now,
        old_start: now - 5 * 3600,
        recent_start: now - 40 * 60,
    };
    let loads = [
        (Scenario::Mixed, 2, 300, 5 * 3600),
        (Scenario::Mixed, 3, 150, 4 * 3600),
        (Scenario::Storm, 1, 1500, 3 * 3600 + 1800),
        (Scenario::Mixed, 4, 450, 3 * 3600),
        (Scenario::Mixed, 5, 200, 2 * 3600),
        (Scenario::Backscatter, 1, 0, 5400),
        (Scenario::Mixed, 1, 300, 40 * 60),
    ];
    for (scenario, seed, flows, ago) in loads {
        load(
            col,
            dir.path(),
            scenario,
            seed,
            flows,
            (now - ago) * 1_000_000,
        );
    }
    l
}

/// One number from SQL.
pub(crate) fn sql_num(ch: &ClickHouse, sql: &str) -> f64 {
    let out = ch.query_db(DB, sql).unwrap();
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}: {out:?}"))
}

/// Rows of TSV from SQL.
pub(crate) fn sql_rows(ch: &ClickHouse, sql: &str) -> Vec<Vec<String>> {
    ch.query_db(DB, sql)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The WHERE of RSTs in [from, to).
pub(crate) fn rst_range(from: i64, to: i64) -> String {
    format!("ts >= toDateTime({from}) AND ts < toDateTime({to})")
}
