//! The report as Markdown (GitHub-flavoured tables): for ticket systems that render
//! Markdown but not HTML. Charts become one sparkline per series.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::insight::{as_f64, cell_text, Filter, Overview, Table};
use crate::web::html::{fmt_num, is_label_column};

/// A Markdown table cell: no line breaks, pipes escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `cols` of `t` as a Markdown table; numbers right-aligned and grouped.
pub(crate) fn table(t: &Table, cols: &[(&str, &str)], limit: usize) -> String {
    if t.rows.is_empty() {
        return "_nothing in this range_\n".into();
    }
    let numeric: Vec<bool> = cols
        .iter()
        .map(|(c, _)| {
            t.col(c)
                .and_then(|i| t.rows.first()?.get(i))
                .is_some_and(|v| v.is_number())
        })
        .collect();
    let mut s = String::from("|");
    for (_, h) in cols {
        let _ = write!(s, " {h} |");
    }
    s.push_str("\n|");
    for n in &numeric {
        s.push_str(if *n { " ---: |" } else { " --- |" });
    }
    s.push('\n');
    for r in 0..t.rows.len().min(limit) {
        s.push('|');
        for ((c, _), n) in cols.iter().zip(&numeric) {
            let v = t.col(c).map(|i| &t.rows[r][i]);
            let text = match v {
                Some(v) if *n && !is_label_column(c) => fmt_num(as_f64(v)),
                Some(v) => cell(&cell_text(v)),
                None => String::new(),
            };
            let _ = write!(s, " {text} |");
        }
        s.push('\n');
    }
    if t.rows.len() > limit {
        let _ = writeln!(s, "\n_{} more rows not shown_", t.rows.len() - limit);
    }
    s
}

/// One line per series: name, total and a sparkline over the buckets of the range.
fn sparklines(t: &Table, key: &str, f: &Filter) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (from, to, step) = (f.from, f.to, f.step_seconds());
    let first = from - from.rem_euclid(step);
    let n = ((to - first + step - 1) / step).max(1) as usize;
    let mut series: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in 0..t.rows.len() {
        let Some(time) = t.epoch(r, "time") else {
            continue;
        };
        let i = ((time - first) / step).clamp(0, n as i64 - 1) as usize;
        series.entry(t.text(r, key)).or_insert_with(|| vec![0.0; n])[i] += t.num(r, "rsts");
    }
    let mut s = String::from("```text\n");
    for (name, v) in &series {
        let max = v.iter().copied().fold(0.0, f64::max).max(1.0);
        let line: String = v
            .iter()
            .map(|x| {
                if *x == 0.0 {
                    ' '
                } else {
                    BARS[((x / max) * 7.0).round() as usize]
                }
            })
            .collect();
        let _ = writeln!(s, "{name:<18} {:>10}  {line}", fmt_num(v.iter().sum()));
    }
    s.push_str("```\n");
    s
}

pub(crate) fn render(ov: &Overview, generated: &str) -> String {
    let f = &ov.filter;
    let t = &ov.totals;
    let mut s = format!(
        "# rstwatch report: TCP resets\n\n{}  \n_generated {generated}_\n\n",
        f.describe()
    );
    let anomalies: f64 = (0..ov.anomaly_kinds.rows.len())
        .map(|r| ov.anomaly_kinds.num(r, "anomalies"))
        .sum();
    let _ = writeln!(
        s,
        "| RSTs | suspected injections | refused | idle timeouts | services reset | anomalies |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n| {} | {} | {} | {} | {} | {} |\n",
        fmt_num(t.num(0, "rsts")),
        fmt_num(t.num(0, "suspect_rsts")),
        fmt_num(t.num(0, "refused")),
        fmt_num(t.num(0, "idle")),
        fmt_num(t.num(0, "services")),
        fmt_num(anomalies)
    );
    s.push_str("## RSTs by class\n\n");
    s.push_str(&sparklines(&ov.by_class, "class", f));
    s.push_str("\n## RSTs by cause\n\n");
    s.push_str(&sparklines(&ov.by_cause, "cause", f));
    for sec in &SECTIONS {
        let _ = write!(
            s,
            "\n## {}\n\n{}",
            sec.title,
            table(&(sec.table)(ov), sec.cols, sec.limit)
        );
    }
    s
}

/// One table of the report: heading, where its data is, (column, heading) pairs,
/// rows at most.
struct Section {
    title: &'static str,
    table: fn(&Overview) -> Cow<'_, Table>,
    cols: &'static [(&'static str, &'static str)],
    limit: usize,
}

#[rustfmt::skip]
const SECTIONS: [Section; 7] = [
    Section { title: "Why: RSTs by cause, with remedies", table: |o| Cow::Owned(o.causes_with_previous()), limit: 20,
        cols: &[("cause", "cause"), ("rsts", "RSTs"), ("suspect_rsts", "suspect"), ("previous", "week before"), ("example", "first example"), ("remedy", "what to do")] },
    Section { title: "Top services", table: |o| Cow::Borrowed(&o.top_services), limit: 15,
        cols: &[("server_addr", "server"), ("server_port", "port"), ("rsts", "RSTs"), ("suspect_rsts", "suspect"), ("flows", "flows ended"), ("resets_per_flow", "RSTs / flow"), ("top_cause", "top cause")] },
    Section { title: "Suspected injections", table: |o| Cow::Borrowed(&o.injections), limit: 20,
        cols: &[("time_utc", "time (UTC)"), ("src_addr", "RST from"), ("sport", "port"), ("dst_addr", "to"), ("dport", "port"), ("flag_names", "evidence"), ("ttl", "TTL"), ("ttl_delta", "TTL delta")] },
    Section { title: "Top anomalies", table: |o| Cow::Borrowed(&o.anomalies), limit: 20,
        cols: &[("start_utc", "start (UTC)"), ("peak_utc", "peak (UTC)"), ("kind", "kind"), ("subject", "subject"), ("peak_value", "peak"), ("baseline", "baseline"), ("rsts", "RSTs"), ("affected_services", "services hit")] },
    Section { title: "Firewall / NAT idle timeouts", table: |o| Cow::Borrowed(&o.idle), limit: 10,
        cols: &[("server_addr", "server"), ("server_port", "port"), ("resets", "RSTs"), ("estimated_timeout_s", "timeout estimate s"), ("estimate", "estimate is"), ("mode_resets", "RSTs at the most common silence")] },
    Section { title: "Refused-connection hotspots", table: |o| Cow::Borrowed(&o.refused), limit: 10,
        cols: &[("server_addr", "server"), ("server_port", "port"), ("refusals", "refused"), ("clients", "clients"), ("scan_refusals", "to scanners")] },
    Section { title: "Sensor health", table: |o| Cow::Borrowed(&o.sensor_health), limit: 50,
        cols: HEALTH_COLS },
];

/// The sensor-health columns, shared with the live view.
pub(crate) const HEALTH_COLS: &[(&str, &str)] = &[
    ("sensor_id", "sensor"),
    ("frames", "frames"),
    ("capture_lost_pct", "capture lost %"),
    ("flows_evicted", "flows evicted"),
    ("spool_backlog_batches", "spool backlog"),
    ("spool_lost_events", "events lost"),
    ("batches", "batches in range"),
    ("missing_batches", "batches missing"),
    ("last_batch_utc", "last batch (UTC)"),
    ("seconds_since_last_batch", "age s"),
];
