//! The built-in SOC view (`serve --http`) in a real browser: headless Chromium over
//! its DevTools protocol loads the page served by the real collector from a real
//! ClickHouse 18.16 holding `gen` scenario data; the charts drew, every number equals
//! the SQL's, a changed time range changes them, each number's link leads to exactly
//! its rows, and the screenshot is saved (`docs/soc-view.png` with
//! `RSTWATCH_UPDATE_SCREENSHOT=1`).

mod soc;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use base64::Engine as _;
use rstwatch_collector::testing::{free_port, ClickHouse, TempDir};
use rstwatch_schema::cookbook::{self, Params};
use serde_json::json;
use soc::cdp::{chromium, Browser};
use soc::*;

const TOKEN: &str = "view-t0ken";

/// Status line and headers of a raw GET with an optional `Authorization` value.
fn raw_get(port: u16, path: &str, authz: Option<&str>) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = authz
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split("\r\n\r\n").next().unwrap().to_string()
}

#[test]
fn the_view_refuses_to_start_without_a_token_unless_told() {
    let out = Command::new(COLLECTOR)
        .args(["serve", "--plaintext", "--no-auth", "--http"])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--clickhouse-url",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http-token") && err.contains("--http-no-auth"),
        "{err}"
    );
}

/// What the page shows: `data-k` → value of every number, chart bars, cause rows.
struct Seen {
    from: i64,
    to: i64,
    nums: BTreeMap<String, Vec<f64>>,
    /// chart id → (bars, sum of their values)
    charts: BTreeMap<String, (u64, f64)>,
    causes: BTreeMap<String, f64>,
}

const READ_PAGE: &str = r#"(() => {
  const r = document.getElementById('range');
  const nums = [...document.querySelectorAll('[data-k]')].map(e => [e.dataset.k, Number(e.dataset.v)]);
  const charts = [...document.querySelectorAll('section[id^=by-] svg')].map(svg => {
    const bars = [...svg.querySelectorAll('rect.bar')];
    const box = svg.getBoundingClientRect();
    return [svg.parentElement.id, bars.length, bars.reduce((a, b) => a + Number(b.dataset.value), 0), box.width, box.height];
  });
  const causes = [...document.querySelectorAll('#causes tbody tr')].map(tr =>
    [tr.querySelector('[data-col=cause]').textContent, Number(tr.querySelector('[data-col=rsts] [data-v]').dataset.v)]);
  return {from: Number(r.dataset.from), to: Number(r.dataset.to), nums, charts, causes};
})()"#;

fn read_page(b: &mut Browser) -> Seen {
    let v = b.eval(READ_PAGE).unwrap();
    let mut nums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in v["nums"].as_array().unwrap() {
        nums.entry(p[0].as_str().unwrap().into())
            .or_default()
            .push(p[1].as_f64().unwrap());
    }
    let mut charts = BTreeMap::new();
    for c in v["charts"].as_array().unwrap() {
        // Drawn: laid out at a real size, not collapsed.
        assert!(
            c[3].as_f64().unwrap() > 300.0 && c[4].as_f64().unwrap() > 50.0,
            "{c}"
        );
        charts.insert(
            c[0].as_str().unwrap().to_string(),
            (c[1].as_u64().unwrap(), c[2].as_f64().unwrap()),
        );
    }
    let causes = v["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap()))
        .collect();
    Seen {
        from: v["from"].as_i64().unwrap(),
        to: v["to"].as_i64().unwrap(),
        nums,
        charts,
        causes,
    }
}

impl Seen {
    fn one(&self, key: &str) -> f64 {
        let v = &self.nums[key];
        assert_eq!(v.len(), 1, "{key}: {v:?}");
        v[0]
    }
}

/// Column `col` of cookbook query `name` over `[from, to)` (every sensor and port, the
/// step the cookbook picks for the span), in the cookbook's order, run on the server
/// as an analyst would.
fn cookbook_col(ch: &ClickHouse, name: &str, from: i64, to: i64, col: &str) -> Vec<f64> {
    let p = Params::range(from as u32, to as u32);
    let sql = cookbook::bound(name, &p).unwrap();
    sql_rows(ch, &format!("SELECT {col} FROM ({sql})"))
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect()
}

/// The page's numbers with key `key`, in page order.
fn shown(s: &Seen, key: &str) -> Vec<f64> {
    s.nums.get(key).cloned().unwrap_or_default()
}

/// The tables and charts the cookbook answers show the cookbook's answers (the top
/// lists their first rows): the page runs the same files, and this runs them again on
/// the server and compares.
fn assert_page_matches_cookbook(ch: &ClickHouse, s: &Seen) {
    let col = |name: &str, c: &str, n: usize| {
        let mut v = cookbook_col(ch, name, s.from, s.to, c);
        v.truncate(n);
        v
    };
    assert_eq!(shown(s, "service.rsts"), col("top_services", "rsts", 15));
    assert_eq!(
        shown(s, "idle.rsts"),
        col("idle_timeouts", "resets", usize::MAX)
    );
    assert_eq!(
        shown(s, "refused.rsts"),
        col("refused_hotspots", "refusals", 10)
    );
    for k in ["service.rsts", "idle.rsts", "refused.rsts"] {
        assert!(!shown(s, k).is_empty(), "{k}: none shown");
    }
    for (chart, name) in [
        ("by-class", "reset_rate_by_class"),
        ("by-cause", "reset_rate_by_cause"),
    ] {
        let want: f64 = col(name, "rsts", usize::MAX).iter().sum();
        assert_eq!(s.charts[chart].1, want, "{chart} against {name}");
    }
}

/// Every headline number, both charts and the cause table equal SQL over the page's
/// own range, and the cookbook's tables equal the cookbook's answers.
fn assert_page_matches_sql(ch: &ClickHouse, s: &Seen) {
    assert_page_matches_cookbook(ch, s);
    let w = rst_range(s.from, s.to);
    let q = |what: &str| sql_num(ch, &format!("SELECT {what} FROM rst_events WHERE {w}"));
    assert_eq!(s.one("rsts"), q("count()"));
    assert_eq!(s.one("suspect"), q("sum(suspect)"));
    assert_eq!(s.one("refused"), q("countIf(class = 'reject')"));
    assert_eq!(s.one("idle"), q("countIf(cause = 'idle_timeout')"));
    assert_eq!(
        s.one("services"),
        q("uniqExact(if(dir = 'resp', src, dst), if(dir = 'resp', sport, dport))")
    );
    assert_eq!(
        s.one("anomalies"),
        sql_num(
            ch,
            &format!(
                "SELECT count() FROM anomalies WHERE {}",
                rst_range(s.from, s.to)
            )
        )
    );
    let rolled = |t: &str| {
        sql_num(
            ch,
            &format!(
                "SELECT sum(rsts) FROM {t} WHERE minute >= toDateTime({}) AND minute < toDateTime({})",
                s.from, s.to
            ),
        )
    };
    for (chart, table) in [("by-class", "rst_minute"), ("by-cause", "rst_minute_cause")] {
        let (bars, sum) = s.charts[chart];
        assert!(bars > 0, "{chart} drew no bars");
        assert_eq!(sum, rolled(table), "{chart}");
    }
    let want: BTreeMap<String, f64> = sql_rows(
        ch,
        &format!("SELECT toString(cause), count() FROM rst_events WHERE {w} GROUP BY cause"),
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect();
    assert_eq!(s.causes, want);
}

/// Follows the link of the first number with `data-k = key` and returns the rows
/// page's total and the texts of column `col` in its table.
fn follow(b: &mut Browser, key: &str, col: &str) -> (f64, Vec<String>) {
    let href = b
        .eval(&format!(
            "document.querySelector('a[data-k=\"{key}\"]').href"
        ))
        .unwrap();
    let href = href.as_str().unwrap().to_string();
    b.eval(&format!(
        "document.querySelector('a[data-k=\"{key}\"]').click()"
    ))
    .unwrap();
    b.wait_loaded(&href).unwrap();
    let v = b
        .eval(&format!(
            "({{total: Number(document.querySelector('[data-k=\"rows.total\"]').dataset.v), \
             cells: [...document.querySelectorAll('#rows td[data-col={col}]')].map(td => td.textContent)}})"
        ))
        .unwrap();
    let cells = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (v["total"].as_f64().unwrap(), cells)
}

/// The token is required, by bearer or basic auth; health is open; bad input is a 400.
fn assert_token_required(port: u16) {
    let bearer = format!("Bearer {TOKEN}");
    assert!(raw_get(port, "/", None).contains(" 401 "));
    assert!(raw_get(port, "/", None).contains("www-authenticate: Basic"));
    assert!(raw_get(port, "/", Some("Bearer wrong")).contains(" 401 "));
    assert!(raw_get(port, "/", Some(&bearer)).contains(" 200 "));
    // "anyone:view-t0ken"
    assert!(raw_get(port, "/", Some("Basic YW55b25lOnZpZXctdDBrZW4=")).contains(" 200 "));
    assert!(raw_get(port, "/healthz", None).contains(" 200 "));
    assert!(raw_get(port, "/?range=0h", Some(&bearer)).contains(" 400 "));
    assert!(raw_get(port, "/?sensor=x%27", Some(&bearer)).contains(" 200 "));
}

#[test]
fn a_browser_sees_the_charts_and_the_numbers_of_the_sql_for_any_range() {
    let test = "a_browser_sees_the_charts_and_the_numbers_of_the_sql_for_any_range";
    let Some(bin) = chromium() else {
        println!("SKIP {test}: chromium is not installed");
        return;
    };
    let Some(ch) = start_clickhouse(test) else {
        return;
    };
    let dir = TempDir::new("rstwatch-web").unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let col = collector(&ch, dir.path(), &["--http", &addr, "--http-token", TOKEN]);
    let loaded = load_two_periods(&col, &dir);

    assert_token_required(port);

    let mut b = Browser::start(&bin, 1400, 900).unwrap();
    b.headers(json!({ "Authorization": format!("Bearer {TOKEN}") }))
        .unwrap();
    b.goto(&format!("http://{addr}/?range=1h")).unwrap();
    let hour = read_page(&mut b);
    assert!(hour.from >= loaded.now - 3600 && hour.to >= loaded.now);
    assert_page_matches_sql(&ch, &hour);
    // The mixed scenario has every kind of reset: the page shows them.
    for k in ["rsts", "suspect", "refused", "idle", "anomalies"] {
        assert!(hour.one(k) > 0.0, "{k} is 0 in the last hour");
    }
    // Only the recent load is in the last hour.
    let recent = sql_num(
        &ch,
        &format!(
            "SELECT count() FROM rst_events WHERE ts >= toDateTime({})",
            loaded.recent_start - 60
        ),
    );
    assert_eq!(hour.one("rsts"), recent);

    // The range picker: last 6 hours takes in the older load too.
    b.eval(
        "document.querySelector('#picker select[name=range]').value = '6h'; \
         document.getElementById('picker').submit()",
    )
    .unwrap();
    b.wait_loaded(&format!("http://{addr}/?range=6h")).unwrap();
    let six = read_page(&mut b);
    assert_page_matches_sql(&ch, &six);
    let all = sql_num(&ch, "SELECT count() FROM rst_events");
    assert_eq!(six.one("rsts"), all);
    assert!(
        six.one("rsts") > hour.one("rsts"),
        "the numbers did not change"
    );
    save_screenshot(&mut b);
    assert_auto_refresh(&mut b, &addr);

    // Every number leads to its rows: the total, and one cause.
    let (total, _) = follow(&mut b, "rsts", "time");
    assert_eq!(total, six.one("rsts"));
    let t0 = std::time::Instant::now();
    b.goto(&format!("http://{addr}/?range=6h")).unwrap();
    println!(
        "overview of 6 h ({} RSTs) served and drawn in {:?}",
        six.one("rsts"),
        t0.elapsed()
    );
    let (n, causes) = follow(&mut b, "idle", "cause");
    let rows_png = b.screenshot().unwrap();
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("soc-rows.png"),
        rows_png,
    )
    .unwrap();
    assert_eq!(n, six.one("idle"));
    assert_eq!(causes.len() as f64, n.min(1000.0));
    assert!(causes.iter().all(|c| c == "idle_timeout"), "{causes:?}");
    b.goto(&format!("http://{addr}/?range=6h")).unwrap();
    let (n, _) = follow(&mut b, "anomalies", "kind");
    assert_eq!(n, six.one("anomalies"));
}

/// Auto-refresh: off by default; when picked, the page reloads itself at that period
/// and keeps the relative range (so it moves with the clock).
fn assert_auto_refresh(b: &mut Browser, addr: &str) {
    let refresh = "(document.querySelector('meta[http-equiv=refresh]') || {}).content || 'none'";
    assert_eq!(b.eval(refresh).unwrap(), json!("none"));
    b.eval(
        "document.querySelector('#picker select[name=refresh]').value = '30'; \
         document.getElementById('picker').submit()",
    )
    .unwrap();
    b.wait_loaded(&format!("http://{addr}/?range=6h")).unwrap();
    assert_eq!(
        b.eval("location.search.includes('refresh=30')").unwrap(),
        json!(true)
    );
    assert_eq!(b.eval(refresh).unwrap(), json!("30"));
    assert_eq!(
        b.eval("document.querySelector('#picker select[name=range]').value")
            .unwrap(),
        json!("6h")
    );
}

/// The full page as PNG: kept under target/, and in docs/ when asked to update it.
fn save_screenshot(b: &mut Browser) {
    let png = b.screenshot().unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(width, 1400);
    assert!(height > 900, "page height {height}");
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let top = b
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .unwrap();
    let top = base64::engine::general_purpose::STANDARD
        .decode(top["data"].as_str().unwrap())
        .unwrap();
    std::fs::write(tmp.join("soc-view-top.png"), top).unwrap();
    let out = tmp.join("soc-view.png");
    std::fs::write(&out, &png).unwrap();
    println!("screenshot: {} ({width}x{height})", out.display());
    if std::env::var_os("RSTWATCH_UPDATE_SCREENSHOT").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/soc-view.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(&docs, &png).unwrap();
    }
}
