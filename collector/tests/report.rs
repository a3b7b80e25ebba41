//! `rstwatch-collector report` against a real ClickHouse 18.16 holding `gen` scenario
//! data: the HTML file opens in headless Chromium with nothing to fetch, its charts
//! draw, its numbers equal the SQL's, its cause table carries the code's remedies; the
//! Markdown form says the same numbers.

mod soc;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rstwatch_collector::testing::{ClickHouse, TempDir};
use rstwatch_schema::Cause;
use soc::cdp::{chromium, Browser};
use soc::*;

fn report(ch: &ClickHouse, args: &[&str]) -> String {
    let out = Command::new(COLLECTOR)
        .args(["report", "--clickhouse-url", &ch.url(), "--database", DB])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn count(ch: &ClickHouse, what: &str, since: i64) -> f64 {
    sql_num(
        ch,
        &format!("SELECT {what} FROM rst_events WHERE ts >= toDateTime({since})"),
    )
}

/// RSTs per cause since `since`, from SQL.
fn causes(ch: &ClickHouse, since: i64) -> BTreeMap<String, f64> {
    sql_rows(
        ch,
        &format!(
            "SELECT toString(cause), count() FROM rst_events WHERE ts >= toDateTime({since}) GROUP BY cause"
        ),
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect()
}

#[test]
fn the_html_report_renders_in_a_browser_with_the_numbers_of_the_sql() {
    let test = "the_html_report_renders_in_a_browser_with_the_numbers_of_the_sql";
    let Some(bin) = chromium() else {
        println!("SKIP {test}: chromium is not installed");
        return;
    };
    let Some(ch) = start_clickhouse(test) else {
        return;
    };
    let dir = TempDir::new("rstwatch-report").unwrap();
    let col = collector(&ch, dir.path(), &[]);
    let loaded = load_two_periods(&col, &dir);
    let file = dir.path().join("report.html");
    report(&ch, &["--since", "6h", "--out", file.to_str().unwrap()]);

    let mut b = Browser::start(&bin, 1400, 900).unwrap();
    let url = format!("file://{}", file.display());
    b.goto(&url).unwrap();
    let v = b
        .eval(
            r#"(() => ({
  rsts: Number(document.querySelector('[data-k=rsts]').dataset.v),
  suspect: Number(document.querySelector('[data-k=suspect]').dataset.v),
  refused: Number(document.querySelector('[data-k=refused]').dataset.v),
  bars: [...document.querySelectorAll('svg rect.bar')].length,
  chartHeight: document.querySelector('svg.chart').getBoundingClientRect().height,
  links: document.querySelectorAll('a[href]').length,
  scripts: document.scripts.length,
  fetched: performance.getEntriesByType('resource').length,
  causes: [...document.querySelectorAll('#causes tbody tr')].map(tr => [
    tr.querySelector('[data-col=cause]').textContent,
    Number(tr.querySelector('[data-col=rsts] [data-v]').dataset.v),
    tr.querySelector('[data-col=remedy]').textContent]),
}))()"#,
        )
        .unwrap();
    // Self-contained: nothing fetched, nothing to follow, no script.
    assert_eq!(v["fetched"], 0, "{v}");
    assert_eq!(v["links"], 0);
    assert_eq!(v["scripts"], 0);
    assert!(v["bars"].as_u64().unwrap() > 0);
    assert!(v["chartHeight"].as_f64().unwrap() > 50.0);
    // All the data lies in the last 6 hours.
    let since = loaded.old_start - 60;
    assert_eq!(v["rsts"].as_f64().unwrap(), count(&ch, "count()", since));
    assert_eq!(
        v["suspect"].as_f64().unwrap(),
        count(&ch, "sum(suspect)", since)
    );
    assert_eq!(
        v["refused"].as_f64().unwrap(),
        count(&ch, "countIf(class = 'reject')", since)
    );
    assert!(v["suspect"].as_f64().unwrap() > 0.0);
    let mut seen = BTreeMap::new();
    for row in v["causes"].as_array().unwrap() {
        let c: Cause = row[0].as_str().unwrap().parse().unwrap();
        assert_eq!(row[2].as_str().unwrap(), c.remedy(), "{c}");
        seen.insert(c.as_str().to_string(), row[1].as_f64().unwrap());
    }
    assert_eq!(seen, causes(&ch, since));
    let png = b.screenshot().unwrap();
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png"),
        png,
    )
    .unwrap();
}

/// The Markdown report's headline row: RSTs, suspect, refused, idle, services, anomalies.
fn headline(md: &str) -> Vec<f64> {
    let i = md
        .lines()
        .position(|l| l.starts_with("| RSTs |"))
        .expect("headline table");
    md.lines()
        .nth(i + 2)
        .unwrap()
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.replace(',', "").parse().unwrap())
        .collect()
}

/// Rows of the Markdown table under heading `h` as cells.
fn md_table(md: &str, h: &str) -> Vec<Vec<String>> {
    md.split(&format!("## {h}\n\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section {h}"))
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_markdown_report_has_the_numbers_of_the_sql_and_the_remedies() {
    let test = "the_markdown_report_has_the_numbers_of_the_sql_and_the_remedies";
    let Some(ch) = start_clickhouse(test) else {
        return;
    };
    let dir = TempDir::new("rstwatch-report-md").unwrap();
    let col = collector(&ch, dir.path(), &[]);
    let loaded = load_two_periods(&col, &dir);
    for (since_arg, since) in [
        ("6h", loaded.old_start - 60),
        ("1h", loaded.recent_start - 60),
    ] {
        let md = report(&ch, &["--since", since_arg, "--format", "markdown"]);
        let h = headline(&md);
        assert_eq!(h[0], count(&ch, "count()", since), "--since {since_arg}");
        assert_eq!(h[1], count(&ch, "sum(suspect)", since));
        assert_eq!(h[2], count(&ch, "countIf(class = 'reject')", since));
        assert_eq!(h[3], count(&ch, "countIf(cause = 'idle_timeout')", since));
        let rows = md_table(&md, "Why: RSTs by cause, with remedies");
        let mut seen = BTreeMap::new();
        for r in &rows {
            let c: Cause = r[0].parse().unwrap();
            assert_eq!(r[5], c.remedy().replace('|', "\\|"), "{c}");
            seen.insert(r[0].clone(), r[1].replace(',', "").parse::<f64>().unwrap());
        }
        assert_eq!(seen, causes(&ch, since));
        assert!(md.contains("## RSTs by class\n\n```text\n"));
        assert!(!md_table(&md, "Top anomalies").is_empty());
    }
    let six = headline(&report(&ch, &["--since", "6h", "--format", "markdown"]));
    let one = headline(&report(&ch, &["--since", "1h", "--format", "markdown"]));
    assert!(six[0] > one[0]);
}
