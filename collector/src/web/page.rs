//! The overview page: the same HTML serves the live view (links to the rows behind
//! every number, range picker, auto-refresh) and the report (no links, no form).

use std::fmt::Write as _;

use rstwatch_schema::{Cause, RstClass};

use super::html::{esc, fmt_num};
use super::svg::{self, Bars};
use crate::insight::filter::fmt_time;
use crate::insight::{Filter, Overview, Table};

/// How the page is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Served by `serve --http`: `range` is the relative range asked for (kept on
    /// refresh), `refresh` the auto-refresh period in seconds.
    Live {
        range: Option<String>,
        refresh: Option<u32>,
    },
    /// A file: no links (nothing to follow them to), no form.
    Report { generated: String },
}

impl Mode {
    fn live(&self) -> bool {
        matches!(self, Mode::Live { .. })
    }

    /// `href` to the rows behind a number, live only.
    fn rows_link(&self, f: &Filter, anomalies: bool) -> Option<String> {
        self.live().then(|| {
            let what = if anomalies { "what=anomalies&" } else { "" };
            format!("/rows?{what}{}", f.to_query())
        })
    }
}

/// A number, as a link to its rows in the live view. `key` names it for tests and
/// scripts (`data-k`).
pub(crate) fn num(mode: &Mode, v: f64, key: &str, rows: Option<(&Filter, bool)>) -> String {
    let text = fmt_num(v);
    match rows.and_then(|(f, a)| mode.rows_link(f, a)) {
        Some(href) => format!(
            "<a class=\"n\" data-k=\"{}\" data-v=\"{v}\" href=\"{}\">{text}</a>",
            esc(key),
            esc(&href)
        ),
        None => format!(
            "<span class=\"n\" data-k=\"{}\" data-v=\"{v}\">{text}</span>",
            esc(key)
        ),
    }
}

pub(crate) const CSS: &str = r#"
:root{--bg:#0f1419;--panel:#171e26;--line:#2a3440;--text:#d8dee6;--dim:#8a96a3;--accent:#4c9be8;--bad:#e45756;--warn:#eeca3b}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--text);font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif}
header{display:flex;flex-wrap:wrap;align-items:center;gap:16px;padding:10px 18px;background:#0b0f13;border-bottom:1px solid var(--line)}
header h1{font-size:16px;margin:0;font-weight:600}header h1 span{color:var(--dim);font-weight:400}
header .range{color:var(--dim)}form{display:flex;gap:8px;align-items:center;margin-left:auto}
input,select,button{background:var(--panel);color:var(--text);border:1px solid var(--line);border-radius:4px;padding:4px 6px;font:inherit}
button{background:var(--accent);border-color:var(--accent);color:#fff;cursor:pointer}
main{padding:14px 18px;display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}
section{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:10px 12px;min-width:0;overflow-x:auto}
section.wide{grid-column:1/-1}h2{font-size:13px;margin:0 0 8px;text-transform:uppercase;letter-spacing:.05em;color:var(--dim);font-weight:600}
.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:10px}.kpi{background:#10161d;border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.kpi .n{font-size:24px;font-weight:600;display:block}.kpi label{color:var(--dim);font-size:11px;text-transform:uppercase;letter-spacing:.05em}
.kpi.bad .n{color:var(--bad)}.kpi.warn .n{color:var(--warn)}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}a.n{color:inherit;border-bottom:1px dotted var(--dim)}
.kpi a.n{border:0}table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
th{text-align:left;color:var(--dim);font-weight:500;border-bottom:1px solid var(--line);padding:4px 6px;white-space:nowrap}
td{border-bottom:1px solid #1f2832;padding:4px 6px;vertical-align:top}td[data-col=affected_services],td[data-col=silence_histogram]{overflow-wrap:anywhere;min-width:180px}td.r,th.r{text-align:right}
td.detail{color:var(--dim);max-width:420px}td[data-col=time],td[data-col$=_utc],td[data-col=sensor_id]{white-space:nowrap}tr:hover td{background:#1b2430}
.chart{width:100%;height:auto;display:block}.chart .grid{stroke:var(--line)}.chart .axis{fill:var(--dim);font-size:11px}
.chart .empty{fill:var(--dim)}.chart a:hover rect{opacity:.75}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin-top:4px;color:var(--dim)}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.legend b{color:var(--text);font-weight:500}.none{color:var(--dim);font-style:italic}
.tag{display:inline-block;padding:0 5px;border-radius:3px;background:#233041;margin:0 3px 2px 0;font-size:12px}
.up{color:var(--bad)}.down{color:#54a24b}footer{padding:8px 18px 16px;color:var(--dim)}
"#;

/// The whole overview page.
pub(crate) fn overview(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let mut s = head("TCP resets", mode);
    s.push_str(&header(f, mode));
    s.push_str("<main>");
    s.push_str(&kpis(ov, mode));
    s.push_str(&charts(ov, mode));
    // Half-width sections come in pairs, so the grid has no holes.
    use super::sections as sec;
    for part in [
        sec::causes(ov, mode),
        sec::services(ov, mode),
        sec::refused(ov, mode),
        sec::injections(ov, mode),
        sec::anomalies(ov, mode),
        sec::idle(ov, mode),
        sec::health(ov, mode),
    ] {
        s.push_str(&part);
    }
    s.push_str("</main>");
    s.push_str(&footer(mode));
    s
}

/// `<head>` with the inline stylesheet, and the refresh when asked for.
pub(crate) fn head(title: &str, mode: &Mode) -> String {
    let refresh = match mode {
        Mode::Live {
            refresh: Some(n), ..
        } => format!("<meta http-equiv=\"refresh\" content=\"{n}\">"),
        _ => String::new(),
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{refresh}\
         <title>rstwatch — {}</title><style>{CSS}</style></head><body>",
        esc(title)
    )
}

const RANGES: [&str; 6] = ["15m", "1h", "6h", "24h", "7d", "30d"];
const REFRESH: [(u32, &str); 4] = [(0, "off"), (30, "30 s"), (60, "1 min"), (300, "5 min")];

fn header(f: &Filter, mode: &Mode) -> String {
    let mut s = format!(
        "<header><h1>rstwatch <span>TCP resets</span></h1>\
         <div class=\"range\" id=\"range\" data-from=\"{}\" data-to=\"{}\">{}</div>",
        f.from,
        f.to,
        esc(&f.describe())
    );
    if let Mode::Live { range, refresh } = mode {
        s.push_str("<form method=\"get\" action=\"/\" id=\"picker\"><select name=\"range\">");
        if range.is_none() {
            s.push_str("<option value=\"\" selected>custom</option>");
        }
        for r in RANGES {
            let sel = if range.as_deref() == Some(r) {
                " selected"
            } else {
                ""
            };
            let _ = write!(s, "<option value=\"{r}\"{sel}>last {r}</option>");
        }
        s.push_str("</select>");
        if range.is_none() {
            let _ = write!(
                s,
                "<input type=\"hidden\" name=\"from\" value=\"{}\"><input type=\"hidden\" name=\"to\" value=\"{}\">",
                f.from, f.to
            );
        }
        let _ = write!(
            s,
            "<input name=\"sensor\" placeholder=\"sensor\" size=\"10\" value=\"{}\">\
             <input name=\"port\" placeholder=\"port\" size=\"5\" value=\"{}\"><select name=\"refresh\">",
            esc(f.sensor.as_deref().unwrap_or("")),
            f.service_port.map(|p| p.to_string()).unwrap_or_default()
        );
        for (n, label) in REFRESH {
            let sel = if refresh.unwrap_or(0) == n {
                " selected"
            } else {
                ""
            };
            let _ = write!(s, "<option value=\"{n}\"{sel}>refresh {label}</option>");
        }
        s.push_str("</select><button type=\"submit\">Apply</button></form>");
    }
    s.push_str("</header>");
    s
}

fn kpis(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let t = &ov.totals;
    let anomalies: f64 = (0..ov.anomaly_kinds.rows.len())
        .map(|r| ov.anomaly_kinds.num(r, "anomalies"))
        .sum();
    let with = |g: &dyn Fn(&mut Filter)| {
        let mut x = f.clone();
        g(&mut x);
        x
    };
    let tiles: [(&str, &str, f64, Filter, bool, &str); 6] = [
        ("RSTs", "rsts", t.num(0, "rsts"), f.clone(), false, ""),
        (
            "suspected injections",
            "suspect",
            t.num(0, "suspect_rsts"),
            with(&|x| x.suspect = true),
            false,
            "bad",
        ),
        (
            "refused",
            "refused",
            t.num(0, "refused"),
            with(&|x| x.class = Some(RstClass::Reject)),
            false,
            "",
        ),
        (
            "idle timeouts",
            "idle",
            t.num(0, "idle"),
            with(&|x| x.cause = Some(Cause::IdleTimeout)),
            false,
            "",
        ),
        (
            "services reset",
            "services",
            t.num(0, "services"),
            f.clone(),
            false,
            "",
        ),
        ("anomalies", "anomalies", anomalies, f.clone(), true, "warn"),
    ];
    let mut s = String::from("<section class=\"wide\"><div class=\"kpis\">");
    for (label, key, v, rows, anom, class) in tiles {
        let class = if v > 0.0 { class } else { "" };
        let _ = write!(
            s,
            "<div class=\"kpi {class}\">{}<label>{label}</label></div>",
            num(mode, v, key, Some((&rows, anom)))
        );
    }
    s.push_str("</div></section>");
    s
}

fn charts(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let step = f.step_seconds();
    let classes: Vec<&str> = RstClass::ALL.iter().map(|c| c.as_str()).collect();
    let causes: Vec<&str> = Cause::ALL.iter().map(|c| c.as_str()).collect();
    let mut s = String::new();
    for (id, title, table, key, order) in [
        ("by-class", "RSTs by class", &ov.by_class, "class", &classes),
        ("by-cause", "RSTs by cause", &ov.by_cause, "cause", &causes),
    ] {
        let bars = Bars {
            table,
            key_col: key,
            order,
            from: f.from,
            to: f.to,
            step,
            title,
        };
        let link = |series: &str, t0: i64, t1: i64| {
            let mut x = f.clone();
            x.from = t0.max(f.from);
            x.to = t1.min(f.to);
            if key == "class" {
                x.class = series.parse().ok();
            } else {
                x.cause = series.parse().ok();
            }
            mode.rows_link(&x, false)
        };
        let _ = write!(
            s,
            "<section class=\"wide\" id=\"{id}\"><h2>{title} <span class=\"none\">per {} (cookbook \
             {}, from the {} rollup)</span></h2>{}</section>",
            step_label(step),
            if key == "class" { "reset_rate_by_class" } else { "reset_rate_by_cause" },
            if step < 3_600 { "per-minute" } else { "hourly" },
            svg::stacked_bars(&bars, &link)
        );
    }
    s
}

fn step_label(step: i64) -> String {
    match step {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s => format!("{} min", s / 60),
    }
}

fn footer(mode: &Mode) -> String {
    let when = match mode {
        Mode::Report { generated } => format!("report generated {}", esc(generated)),
        Mode::Live { .. } => format!(
            "page drawn {} UTC from ClickHouse; every number links to the rows behind it",
            fmt_time(crate::log::now_us() / 1_000_000)
        ),
    };
    format!("<footer>rstwatch — {when}</footer></body></html>")
}

/// A generic table: `cols` are (column, heading); numeric columns are right-aligned.
/// `cell(row, col)` may return the cell's HTML (a link); otherwise the text is
/// escaped.
pub(crate) fn table(
    id: &str,
    t: &Table,
    cols: &[(&str, &str)],
    cell: &dyn Fn(usize, &str) -> Option<String>,
) -> String {
    if t.rows.is_empty() {
        return format!("<p class=\"none\" id=\"{id}\">nothing in this range</p>");
    }
    let mut s = format!("<table id=\"{id}\"><thead><tr>");
    let numeric = |c: &str| {
        t.col(c)
            .and_then(|i| t.rows.first()?.get(i))
            .is_some_and(|v| v.is_number())
    };
    for (c, h) in cols {
        let cls = if numeric(c) { " class=\"r\"" } else { "" };
        let _ = write!(s, "<th{cls}>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for r in 0..t.rows.len() {
        s.push_str("<tr>");
        for (c, _) in cols {
            let html = cell(r, c).unwrap_or_else(|| match t.col(c).map(|i| &t.rows[r][i]) {
                Some(v) if v.is_number() && !super::html::is_label_column(c) => {
                    fmt_num(crate::insight::as_f64(v))
                }
                _ => esc(&t.text(r, c)),
            });
            let cls = if numeric(c) {
                "r"
            } else if *c == "detail" || *c == "cause_detail" || *c == "remedy" || *c == "example" {
                "detail"
            } else {
                ""
            };
            let _ = write!(s, "<td class=\"{cls}\" data-col=\"{c}\">{html}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}
