//! The tables of the overview: each answers one analyst question, and every count in
//! them links (live view) to the rows it counts.

use std::fmt::Write as _;

use rstwatch_schema::{AnomalyKind, Cause, RstClass};

use super::html::esc;
use super::page::{num, table, Mode};
use crate::insight::{Filter, Overview, Table};

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

/// The first `n` rows of `t` (the overview shows the newest; the rows page all).
fn first_rows(t: &Table, n: usize) -> Table {
    Table {
        columns: t.columns.clone(),
        rows: t.rows.iter().take(n).cloned().collect(),
    }
}

/// Causes in the range, with the same range a week earlier and the remedy.
pub fn causes(ov: &Overview, mode: &Mode) -> String {
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

pub fn services(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let t = &ov.top_services;
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
            ("ratio", "RSTs / flow"),
            ("top_cause", "top cause"),
        ],
        &cell,
    );
    section("services", "Top services by RSTs", false, &body)
}

pub fn injections(ov: &Overview, mode: &Mode) -> String {
    let t = &ov.injections;
    let cell = |r: usize, c: &str| -> Option<String> {
        (c == "evidence").then(|| {
            t.text(r, "evidence")
                .split_whitespace()
                .map(|e| format!("<span class=\"tag\">{}</span>", esc(e)))
                .collect()
        })
    };
    let shown = first_rows(t, 12);
    let body = table(
        "injections",
        &shown,
        &[
            ("time", "time (UTC)"),
            ("src_addr", "RST from"),
            ("sport", "port"),
            ("dst_addr", "to"),
            ("dport", "port"),
            ("class", "class"),
            ("evidence", "evidence"),
            ("ttl", "TTL"),
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

pub fn anomalies(ov: &Overview, mode: &Mode) -> String {
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
            ("time", "time (UTC)"),
            ("kind", "kind"),
            ("subject", "subject"),
            ("value", "value"),
            ("baseline", "baseline"),
            ("detail", "detail"),
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

pub fn idle(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let t = &ov.idle;
    let cell = |r: usize, c: &str| -> Option<String> {
        match c {
            "rsts" => {
                let mut x = service(f, t, r);
                x.cause = Some(Cause::IdleTimeout);
                Some(num(mode, t.num(r, "rsts"), "idle.rsts", Some((&x, false))))
            }
            "timeout_estimate_s" => Some(format!(
                "<b>{} s</b> <span class=\"none\">({} of {} RSTs)</span>",
                t.text(r, "timeout_estimate_s"),
                t.text(r, "at_estimate"),
                t.text(r, "rsts")
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
            ("rsts", "idle-timeout RSTs"),
            ("timeout_estimate_s", "device timeout (estimate)"),
            ("min_silence_s", "min silence s"),
            ("max_silence_s", "max silence s"),
        ],
        &cell,
    );
    let note = "<p class=\"none\">A firewall or NAT forgets idle flows at one value: the most \
                frequent silence before its resets is its timeout.</p>";
    section(
        "idle",
        "Firewall / NAT idle timeouts",
        false,
        &(body + note),
    )
}

pub fn refused(ov: &Overview, mode: &Mode) -> String {
    let f = &ov.filter;
    let t = &ov.refused;
    let cell = |r: usize, c: &str| -> Option<String> {
        (c == "rsts").then(|| {
            let mut x = service(f, t, r);
            x.class = Some(RstClass::Reject);
            num(mode, t.num(r, "rsts"), "refused.rsts", Some((&x, false)))
        })
    };
    let body = table(
        "refused",
        t,
        &[
            ("server_addr", "server"),
            ("server_port", "port"),
            ("rsts", "refused"),
            ("clients", "clients"),
        ],
        &cell,
    );
    section("refused", "Refused-connection hotspots", false, &body)
}

pub fn health(ov: &Overview, _mode: &Mode) -> String {
    let body = table(
        "health",
        &ov.sensor_health,
        &[
            ("sensor_id", "sensor"),
            ("name", "counter (latest)"),
            ("value", "value"),
            ("batches", "batches in range"),
            ("last_batch", "last batch (UTC)"),
            ("last_batch_age_s", "age s"),
        ],
        &|_, _| None,
    );
    section("health", "Sensor health", false, &body)
}
