//! Server-side SVG charts: no script, no external asset, so the view works offline and
//! the report is one self-contained file. A stacked bar per time bucket, one colour per
//! series (class or cause), each segment a link to its rows when the caller gives one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::html::{esc, fmt_num};
use crate::insight::filter::fmt_time;
use crate::insight::{as_f64, cell_text, Table};

/// Colours with enough contrast to each other on a dark background, in series order.
const PALETTE: [&str; 14] = [
    "#e45756", "#f58518", "#eeca3b", "#54a24b", "#9467bd", "#b279a2", "#ff9da6", "#9d755d",
    "#17becf", "#bab0ac", "#88d27a", "#d67195", "#5b8ff9", "#79706e",
];

/// The colour of series `name` among `order` (the enum's order, so a cause keeps its
/// colour from chart to chart and report to report).
pub(super) fn colour(order: &[&str], name: &str) -> &'static str {
    let i = order.iter().position(|n| *n == name).unwrap_or(order.len());
    PALETTE[i % PALETTE.len()]
}

/// What to draw: `table` has the cookbook rate queries' columns `time` (bucket start,
/// a UTC `DateTime`), `key_col` and `rsts`.
pub(super) struct Bars<'a> {
    pub table: &'a Table,
    pub key_col: &'a str,
    /// Series names in display order (an enum's `ALL`).
    pub order: &'a [&'a str],
    pub from: i64,
    pub to: i64,
    pub step: i64,
    pub title: &'a str,
}

const W: f64 = 1300.0;
const H: f64 = 230.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// Per bucket start: series → RSTs.
fn buckets(b: &Bars) -> BTreeMap<i64, BTreeMap<String, f64>> {
    let (kc, vc) = (b.table.col(b.key_col), b.table.col("rsts"));
    let mut out: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    let (Some(kc), Some(vc)) = (kc, vc) else {
        return out;
    };
    for (r, row) in b.table.rows.iter().enumerate() {
        let Some(t) = b.table.epoch(r, "time") else {
            continue;
        };
        *out.entry(t)
            .or_default()
            .entry(cell_text(&row[kc]))
            .or_default() += as_f64(&row[vc]);
    }
    out
}

/// A y-axis top that reads well (its half too): 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8
/// times a power of ten.
fn nice_max(v: f64) -> f64 {
    let mut m = 1.0;
    loop {
        for k in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0] {
            if m * k >= v {
                return m * k;
            }
        }
        m *= 10.0;
    }
}

/// The chart as an `<svg>` element. `link(series, bucket_start, bucket_end)` gives
/// each segment's target, or `None` for none (the report).
pub(super) fn stacked_bars(b: &Bars, link: &dyn Fn(&str, i64, i64) -> Option<String>) -> String {
    let data = buckets(b);
    let max = data
        .values()
        .map(|s| s.values().sum::<f64>())
        .fold(0.0, f64::max);
    let ymax = nice_max(max.max(1.0));
    let n = ((b.to - b.from) as f64 / b.step as f64).ceil().max(1.0);
    let first = b.from - b.from.rem_euclid(b.step);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let bar_w = (plot_w / (n + 1.0)).max(1.0);
    let x_of = |t: i64| LEFT + (t - first) as f64 / b.step as f64 * bar_w;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {W} {H}\" \
         xmlns=\"http://www.w3.org/2000/svg\" data-max=\"{max}\">",
        esc(b.title)
    );
    axes(&mut s, ymax, first, b, x_of);
    for (t, series) in &data {
        let mut y = TOP + plot_h;
        for name in b.order.iter().copied().chain(
            series
                .keys()
                .map(String::as_str)
                .filter(|k| !b.order.contains(k)),
        ) {
            let Some(v) = series.get(name).copied().filter(|v| *v > 0.0) else {
                continue;
            };
            let h = v / ymax * plot_h;
            y -= h;
            let rect = format!(
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" \
                 fill=\"{}\" data-series=\"{}\" data-t=\"{t}\" data-value=\"{v}\">\
                 <title>{} {}: {} RSTs</title></rect>",
                x_of(*t),
                (bar_w - 1.0).max(1.0),
                colour(b.order, name),
                esc(name),
                fmt_time(*t),
                esc(name),
                fmt_num(v)
            );
            match link(name, *t, t + b.step) {
                Some(href) => {
                    let _ = write!(s, "<a href=\"{}\">{rect}</a>", esc(&href));
                }
                None => s.push_str(&rect),
            }
        }
    }
    if data.is_empty() {
        let _ = write!(
            s,
            "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no RSTs in this range</text>",
            W / 2.0,
            H / 2.0
        );
    }
    s.push_str("</svg>");
    s.push_str(&legend(b, &data));
    s
}

/// Grid lines, y labels (0, half, top) and about six time labels.
fn axes(s: &mut String, ymax: f64, first: i64, b: &Bars, x_of: impl Fn(i64) -> f64) {
    let plot_h = H - TOP - BOTTOM;
    for frac in [0.0, 0.5, 1.0] {
        let y = TOP + plot_h * (1.0 - frac);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_num((ymax * frac).round())
        );
    }
    let n = ((b.to - first) / b.step).max(1);
    let every = (n / 6).max(1);
    let mut t = first;
    while t < b.to {
        let label = fmt_time(t);
        // Date when the range spans days, else the time of day.
        let label = if b.to - b.from > 86_400 {
            label.get(5..16).unwrap_or(&label).to_string()
        } else {
            label.get(11..16).unwrap_or(&label).to_string()
        };
        let _ = write!(
            s,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{}\">{label}</text>",
            x_of(t),
            H - 8.0
        );
        t += every * b.step;
    }
}

/// The series present, with their totals, in display order.
fn legend(b: &Bars, data: &BTreeMap<i64, BTreeMap<String, f64>>) -> String {
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    for series in data.values() {
        for (k, v) in series {
            *totals.entry(k.as_str()).or_default() += v;
        }
    }
    let mut s = String::from("<div class=\"legend\">");
    let mut names: Vec<&str> = b
        .order
        .iter()
        .copied()
        .filter(|n| totals.contains_key(n))
        .collect();
    names.extend(totals.keys().copied().filter(|k| !b.order.contains(k)));
    for name in names {
        let _ = write!(
            s,
            "<span><i style=\"background:{}\"></i>{} <b>{}</b></span>",
            colour(b.order, name),
            esc(name),
            fmt_num(totals[name])
        );
    }
    s.push_str("</div>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn y_axis_tops_are_round() {
        assert_eq!(nice_max(1.0), 1.0);
        assert_eq!(nice_max(3.0), 3.0);
        assert_eq!(nice_max(7.0), 8.0);
        assert_eq!(nice_max(11.0), 12.0);
        assert_eq!(nice_max(2270.0), 2500.0);
        assert_eq!(nice_max(8001.0), 10_000.0);
    }

    #[test]
    fn one_segment_per_series_and_bucket_with_its_value() {
        let table = Table {
            columns: vec!["time".into(), "class".into(), "rsts".into()],
            rows: vec![
                vec![json!("1970-01-01 00:01:00"), json!("abort"), json!(3)],
                vec![json!("1970-01-01 00:01:00"), json!("reject"), json!(2)],
                vec![json!("1970-01-01 00:02:00"), json!("abort"), json!(1)],
            ],
        };
        let b = Bars {
            table: &table,
            key_col: "class",
            order: &["reject", "abort"],
            from: 60,
            to: 240,
            step: 60,
            title: "x",
        };
        let svg = stacked_bars(&b, &|_, t, _| Some(format!("/rows?t={t}")));
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert!(svg.contains("data-series=\"reject\" data-t=\"60\" data-value=\"2\""));
        assert!(svg.contains("<a href=\"/rows?t=120\">"));
        assert!(svg.contains("data-max=\"5\""));
    }
}
