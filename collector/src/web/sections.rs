//! The tables of the overview: each answers one analyst question, and every count in
//! them links (live view) to the rows it counts.

use std::fmt::Write as _;

use rstwatch_schema::{AnomalyKind, Cause, RstClass};

use super::html::esc;
use super::page::{num, table, Mode};
use crate::insight::{cell_text, Filter, Overview, Table};
use crate::report::markdown::HEALTH_COLS;

fn section(id: &str, title: &str, wide: bool, body: &str) -> String {
    let cls = if wide { " class=\"wide\"" } else { "" };
    format!(
        "<section{cls} id=\"s-{id}\"><h2>{}</h2>{body}</section>",
        esc(title)
    )
}

/// The filter narrowed to one service (address and port of row `r`).
fn service(f: &Filter, t: &Table, r: usize) -> Filter {
    let mut x = f.clone();
    x.server = t.text(r, "server_addr").parse().ok();
    x.service_port = t.text(r, "server_port").parse().ok();
    x
}

/// Rows of the cookbook's top lists the overview shows (the report shows as many).
pub(super) const SERVICES_SHOWN: usize = 15;
pub(super) const REFUSED_SHOWN: usize = 10;

/// The first `n` rows of `t` (the overview shows the newest; the rows page all).
fn first_rows(t: &Table, n: usize) -> Table {
    Table {
        columns: t.columns.clone(),
        rows: t.rows.iter().take(n).cloned().collect(),
    }
}

/// Causes in the range, with the same range a week earlier and the remedy.
pub(super) fn causes(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let t = &ov.causes_with_previous();
    let total: f64 = (0..t.rows.len()).map(|r| t.num(r, "rsts")).sum();
    let cell = |r: usize, c: &str| -> Option<String> {
        let cause: Option<Cause> = t.text(r, "cause").parse().ok();
        let mut x = f.clone();
        x.cause = cause;
        let n = t.num(r, "rsts");
        match c {
            "rsts" => Some(num(mode, n, "cause.rsts", Some((&x, false)))),
            "share" => Some(format!(
                "{:.1}%",
                if total > 0.0 { n / total * 100.0 } else { 0.0 }
            )),
            "previous" => {
                let p = t.num(r, "previous");
                let mut w = x.clone();
                w.from -= 7 * 86_400;
                w.to -= 7 * 86_400;
                let trend = match (n, p) {
                    (n, p) if p == 0.0 && n > 0.0 => "<span class=\"up\">new</span>".to_string(),
                    (n, p) if p > 0.0 => {
                        let pct = (n - p) / p * 100.0;
                        let cls = if pct > 0.0 { "up" } else { "down" };
                        format!("<span class=\"{cls}\">{pct:+.0}%</span>")
                    }
                    _ => String::new(),
                };
                Some(format!(
                    "{} {trend}",
                    num(mode, p, "cause.previous", Some((&w, false)))
                ))
            }
            _ => None,
        }
    };
    let body = table(
        "causes",
        t,
        &[
            ("cause", "cause"),
            ("rsts", "RSTs"),
            ("share", "share"),
            ("previous", "week before"),
            ("example", "first example"),
            ("remedy", "what to do"),
        ],
        &cell,
    );
    section("causes", "Why: RSTs by cause, with remedies", true, &body)
}

pub(super) fn services(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let t = &first_rows(&ov.top_services, SERVICES_SHOWN);
    let cell = |r: usize, c: &str| -> Option<String> {
        let x = service(f, t, r);
        match c {
            "rsts" => Some(num(
                mode,
                t.num(r, "rsts"),
                "service.rsts",
                Some((&x, false)),
            )),
            "suspect_rsts" => {
                let mut s = x.clone();
                s.suspect = true;
                Some(num(
                    mode,
                    t.num(r, "suspect_rsts"),
                    "service.suspect",
                    Some((&s, false)),
                ))
            }
            _ => None,
        }
    };
    let body = table(
        "services",
        t,
        &[
            ("server_addr", "server"),
            ("server_port", "port"),
            ("rsts", "RSTs"),
            ("suspect_rsts", "suspect"),
            ("flows", "flows ended"),
            ("resets_per_flow", "RSTs / flow"),
            ("top_cause", "top cause"),
        ],
        &cell,
    );
    section("services", "Top services by RSTs", false, &body)
}

pub(super) fn injections(ov: &Overview, mode: &Mode) -> String {
    let t = &ov.injections;
    let cell = |r: usize, c: &str| -> Option<String> {
        let flags = t.col("flag_names")?;
        (c == "flag_names").then(|| match t.rows.get(r).map(|row| &row[flags]) {
            Some(serde_json::Value::Array(names)) => names
                .iter()
                .map(|e| format!("<span class=\"tag\">{}</span>", esc(&cell_text(e))))
                .collect(),
            _ => String::new(),
        })
    };
    let shown = first_rows(t, 12);
    let body = table(
        "injections",
        &shown,
        &[
            ("time_utc", "time (UTC)"),
            ("src_addr", "RST from"),
            ("sport", "port"),
            ("dst_addr", "to"),
            ("dport", "port"),
            ("class", "class"),
            ("flag_names", "evidence"),
            ("ttl", "TTL"),
            ("ttl_delta", "TTL delta"),
            ("cause_detail", "detail"),
        ],
        &cell,
    );
    let mut all = ov.filter.clone();
    all.suspect = true;
    let head = format!(
        "<p>{} suspect RSTs; newest {} shown, the number lists them all</p>",
        num(
            mode,
            ov.totals.num(0, "suspect_rsts"),
            "injections.total",
            Some((&all, false))
        ),
        shown.rows.len()
    );
    section(
        "injections",
        "Suspected injections (forged RSTs) with evidence",
        true,
        &(head + &body),
    )
}

pub(super) fn anomalies(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let k = &ov.anomaly_kinds;
    let mut summary = String::from("<p>");
    for r in 0..k.rows.len() {
        let mut x = f.clone();
        x.kind = k.text(r, "kind").parse::<AnomalyKind>().ok();
        let _ = write!(
            summary,
            "<span class=\"tag\">{} {}</span> ",
            esc(&k.text(r, "kind")),
            num(
                mode,
                k.num(r, "anomalies"),
                &format!("anomalies.{}", k.text(r, "kind")),
                Some((&x, true))
            )
        );
    }
    summary.push_str("</p>");
    let body = table(
        "anomalies",
        &first_rows(&ov.anomalies, 15),
        &[
            ("start_utc", "start (UTC)"),
            ("peak_utc", "peak (UTC)"),
            ("end_utc", "end (UTC)"),
            ("kind", "kind"),
            ("subject", "subject"),
            ("peak_value", "peak"),
            ("baseline", "baseline"),
            ("reports", "reports"),
            ("rsts", "RSTs"),
            ("affected_services", "services hit"),
            ("detail", "detail at peak"),
        ],
        &|_, _| None,
    );
    section(
        "anomalies",
        "Anomalies: storms, scans, backscatter, failovers, injections",
        true,
        &(summary + &body),
    )
}

pub(super) fn idle(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let t = &ov.idle;
    let cell = |r: usize, c: &str| -> Option<String> {
        match c {
            "resets" => {
                let mut x = service(f, t, r);
                x.cause = Some(Cause::IdleTimeout);
                Some(num(
                    mode,
                    t.num(r, "resets"),
                    "idle.rsts",
                    Some((&x, false)),
                ))
            }
            "estimated_timeout_s" if t.text(r, "estimate") == "spike" => Some(format!(
                "<b>{} s</b> <span class=\"none\">({} of {} RSTs at that silence)</span>",
                t.text(r, "estimated_timeout_s"),
                t.text(r, "mode_resets"),
                t.text(r, "resets")
            )),
            "estimated_timeout_s" => Some(format!(
                "<b>≤ {} s</b> <span class=\"none\">(no spike: the shortest silence)</span>",
                t.text(r, "estimated_timeout_s")
            )),
            _ => None,
        }
    };
    let body = table(
        "idle",
        t,
        &[
            ("server_addr", "server"),
            ("server_port", "port"),
            ("resets", "idle-timeout RSTs"),
            ("estimated_timeout_s", "device timeout (estimate)"),
            ("min_silence_s", "min silence s"),
            ("median_silence_s", "median s"),
            ("max_silence_s", "max silence s"),
            ("silence_histogram", "silence s : RSTs"),
        ],
        &cell,
    );
    let note = "<p class=\"none\">A firewall or NAT forgets idle flows at one value: when most \
                resets share one silence, that is its timeout; otherwise it is at most the \
                shortest silence seen.</p>";
    section("idle", "Firewall / NAT idle timeouts", true, &(body + note))
}

pub(super) fn refused(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let t = &first_rows(&ov.refused, REFUSED_SHOWN);
    let cell = |r: usize, c: &str| -> Option<String> {
        (c == "refusals").then(|| {
            let mut x = service(f, t, r);
            x.class = Some(RstClass::Reject);
            num(
                mode,
                t.num(r, "refusals"),
                "refused.rsts",
                Some((&x, false)),
            )
        })
    };
    let body = table(
        "refused",
        t,
        &[
            ("server_addr", "server"),
            ("server_port", "port"),
            ("refusals", "refused"),
            ("clients", "clients"),
            ("scan_refusals", "to scanners"),
            ("last_utc", "last (UTC)"),
        ],
        &cell,
    );
    section("refused", "Refused-connection hotspots", false, &body)
}

pub(super) fn health(ov: &Overview, _mode: &Mode) -> String {
    let body = table("health", &ov.sensor_health, HEALTH_COLS, &|_, _| None);
    section("health", "Sensor health", true, &body)
}
