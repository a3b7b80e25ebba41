//! The rows behind a number: the RSTs (or anomaly rows) one filter selects, newest
//! first, with how many there are in all.

use std::fmt::Write as _;

use super::html::{esc, fmt_num};
use super::page::{head, table, Mode};
use crate::insight::{Filter, Insight, Query};

/// The rows page for `f`; `anomalies` picks the anomaly rows instead of RSTs.
pub(super) async fn page(i: &Insight, f: &Filter, anomalies: bool) -> anyhow::Result<String> {
    let mode = Mode::Live {
        range: None,
        refresh: None,
    };
    let (rows, total, cols): (_, f64, &[(&str, &str)]) = if anomalies {
        let (rows, kinds) = tokio::try_join!(
            i.fetch(Query::AnomalyRows, f),
            i.fetch(Query::AnomalyKinds, f)
        )?;
        let n = (0..kinds.rows.len())
            .map(|r| kinds.num(r, "anomalies"))
            .sum();
        (rows, n, &ANOMALY_COLS)
    } else {
        let (rows, totals) =
            tokio::try_join!(i.fetch(Query::RstRows, f), i.fetch(Query::Totals, f))?;
        (rows, totals.num(0, "rsts"), &RST_COLS)
    };
    let what = if anomalies { "anomalies" } else { "RSTs" };
    let mut s = head(what, &mode);
    let _ = write!(
        s,
        "<header><h1>rstwatch <span>{what}</span></h1><div class=\"range\">{}</div>\
         <a href=\"/?{}\" style=\"margin-left:auto\">← overview of this range</a></header><main>\
         <section class=\"wide\"><h2><span class=\"n\" data-k=\"rows.total\" data-v=\"{total}\">{}</span> \
         {what} match; newest {} shown</h2>",
        esc(&f.describe()),
        esc(&f.base().to_query()),
        fmt_num(total),
        fmt_num(rows.rows.len() as f64)
    );
    s.push_str(&table("rows", &rows, cols, &|_, _| None));
    let _ = write!(
        s,
        "<details><summary class=\"none\">SQL</summary><pre>{}</pre></details></section></main></body></html>",
        esc(&i.sql(if anomalies { Query::AnomalyRows } else { Query::RstRows }, f)?)
    );
    Ok(s)
}

const RST_COLS: [(&str, &str); 13] = [
    ("time", "time (UTC)"),
    ("sensor_id", "sensor"),
    ("src_addr", "RST from"),
    ("sport", "port"),
    ("dst_addr", "to"),
    ("dport", "port"),
    ("dir", "dir"),
    ("class", "class"),
    ("cause", "cause"),
    ("flag_names", "flags"),
    ("ttl", "TTL"),
    ("silence_ms", "silence ms"),
    ("cause_detail", "detail"),
];

const ANOMALY_COLS: [(&str, &str); 7] = [
    ("time", "time (UTC)"),
    ("sensor_id", "sensor"),
    ("kind", "kind"),
    ("subject", "subject"),
    ("value", "value"),
    ("baseline", "baseline"),
    ("detail", "detail"),
];
