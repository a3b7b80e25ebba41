//! The report as plain text for an 80-column terminal (the default format).

use super::layout::{self, cluster_sentence, idle_sentence, sentence, Clock};
use super::timeline::{Timeline, CLUSTER_MIN_BUCKETS};
use super::{CauseReport, Report, Share};
use std::fmt::Write;

/// Lines are at most this wide (a long IPv6 endpoint may exceed it).
const WIDTH: usize = 80;
/// Columns of the widest bar in the cause table (100 %).
const BAR: f64 = 25.0;
/// Anomalies listed in full; more are counted.
const MAX_ANOMALIES_SHOWN: usize = 20;

/// The whole report.
pub fn render(r: &Report) -> String {
    let clock = Clock::for_report(r);
    let mut s = String::new();
    header(&mut s, r);
    if r.resets > 0 {
        cause_table(&mut s, r);
    }
    if let Some(t) = &r.timeline {
        timeline(&mut s, t, r.resets, &clock);
    }
    anomalies(&mut s, r, &clock);
    for c in &r.causes {
        cause_section(&mut s, c, &clock);
    }
    s
}

fn header(s: &mut String, r: &Report) {
    match r.files.as_slice() {
        [one] if one.chars().count() <= WIDTH - 19 => {
            let _ = writeln!(s, "rstwatch diagnose: {one}");
        }
        files => {
            let _ = writeln!(s, "rstwatch diagnose: {} files", files.len());
            for f in files {
                let _ = writeln!(s, "  {}", layout::elide_middle(f, WIDTH - 2));
            }
        }
    }
    if let Some(p) = layout::period(r) {
        let _ = writeln!(s, "{p}");
    }
    let _ = writeln!(s, "\n{}", layout::summary(r));
    if r.resets == 0 {
        s.push_str("No TCP resets in these captures: nothing to diagnose.\n");
    }
}

fn cause_table(s: &mut String, r: &Report) {
    s.push_str("\nWhy: causes in order of precedence (the first rule that fits wins)\n");
    let _ = writeln!(
        s,
        "  {:<20} {:>8} {:>7} {:>8}",
        "cause", "resets", "%", "flows"
    );
    for c in &r.causes {
        let bar = ((c.percent / 100.0 * BAR).round() as usize).max(usize::from(c.resets > 0));
        let _ = writeln!(
            s,
            "  {:<20} {:>8} {:>7.1} {:>8}  {}",
            c.cause.as_str(),
            c.resets,
            c.percent,
            c.flows,
            "█".repeat(bar)
        );
    }
}

fn timeline(s: &mut String, t: &Timeline, total: u64, clock: &Clock) {
    let width = layout::duration(t.bucket_s);
    let end = t.start_s + t.bucket_s * t.counts.len() as i64;
    let peak = t.counts.iter().copied().max().unwrap_or(0);
    let _ = writeln!(
        s,
        "\nWhen: resets per {width} from {} to {} (busiest {width}: {peak})",
        clock.time_s(t.start_s),
        clock.time_s(end),
    );
    let _ = writeln!(s, "  |{}|", sparkline(&t.counts, peak));
    if t.counts.len() < CLUSTER_MIN_BUCKETS {
        let _ = writeln!(
            s,
            "  All resets fall within {}.",
            layout::duration(end - t.start_s)
        );
    } else if t.clusters.is_empty() {
        let _ = writeln!(s, "  No moment stands out: the resets are spread out.");
    }
    for c in &t.clusters {
        s.push_str(&layout::wrap(
            &cluster_sentence(c, total, clock),
            WIDTH,
            "  ",
            "  ",
        ));
    }
}

/// One character per bucket, its height proportional to the count; blank when empty.
fn sparkline(counts: &[u64], peak: u64) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    counts
        .iter()
        .map(|&c| match c {
            0 => ' ',
            _ => LEVELS[((c * 8 - 1) / peak.max(1)).min(7) as usize],
        })
        .collect()
}

fn anomalies(s: &mut String, r: &Report, clock: &Clock) {
    let n = r.anomalies.len() as u64 + r.anomalies_dropped;
    if n == 0 {
        return;
    }
    let _ = writeln!(s, "\nAnomalies ({n})");
    for a in r.anomalies.iter().take(MAX_ANOMALIES_SHOWN) {
        let _ = writeln!(
            s,
            "  {}  {:<12} {}",
            clock.time(a.ts_us),
            a.kind.as_str(),
            a.subject
        );
        s.push_str(&layout::wrap(&a.detail, WIDTH, "      ", "      "));
    }
    let more = n.saturating_sub(MAX_ANOMALIES_SHOWN as u64);
    if more > 0 {
        let _ = writeln!(
            s,
            "  ... and {more} more (replay --only anomaly lists them all)"
        );
    }
}

fn cause_section(s: &mut String, c: &CauseReport, clock: &Clock) {
    let title = format!(
        "── {} ── {} ({:.1} %), {} ",
        c.cause.as_str(),
        layout::count(c.resets, "reset"),
        c.percent,
        layout::count(c.flows, "flow")
    );
    let fill = WIDTH.saturating_sub(title.chars().count());
    let _ = writeln!(s, "\n{title}{}", "─".repeat(fill));
    s.push_str(&layout::wrap(&sentence(c.meaning), WIDTH, "  ", "  "));
    s.push_str(&layout::wrap(
        &sentence(c.remedy),
        WIDTH,
        "  Remedy: ",
        "          ",
    ));
    if let Some(e) = &c.idle_timeout {
        s.push_str(&layout::wrap(&idle_sentence(e), WIDTH, "  ", "  "));
    }
    for cl in &c.clusters {
        s.push_str(&layout::wrap(
            &cluster_sentence(cl, c.resets, clock),
            WIDTH,
            "  ",
            "  ",
        ));
    }
    shares(s, "service", &c.services, c.services_untracked);
    shares(
        s,
        "client network",
        &c.client_networks,
        c.client_networks_untracked,
    );
    examples(s, c);
}

fn shares(s: &mut String, what: &str, list: &[Share], untracked: u64) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n  {:<48} {:>8} {:>7}",
        format!("top {what}s"),
        "resets",
        "%"
    );
    for x in list {
        let _ = writeln!(s, "  {:<48} {:>8} {:>7.1}", x.name, x.resets, x.percent);
    }
    if untracked > 0 {
        let _ = writeln!(
            s,
            "  ({untracked} more resets in {what}s beyond the ones told apart)"
        );
    }
}

fn examples(s: &mut String, c: &CauseReport) {
    if c.examples.is_empty() {
        return;
    }
    s.push_str("\n  examples\n");
    for e in &c.examples {
        let _ = writeln!(
            s,
            "  {}  {}, {}",
            rstwatch_schema::timefmt::rfc3339_micros(e.ts_us),
            e.class.as_str(),
            layout::sent_by(e.dir)
        );
        let tuple = layout::four_tuple(e);
        match tuple.split_once(" > ") {
            // Two long IPv6 endpoints: one per line.
            Some((src, dst)) if tuple.chars().count() + 4 > WIDTH => {
                let _ = writeln!(s, "    {src} >\n      {dst}");
            }
            _ => {
                let _ = writeln!(s, "    {tuple}");
            }
        }
        s.push_str(&layout::wrap(
            &layout::flags(e),
            WIDTH,
            "    flags: ",
            "           ",
        ));
        if !e.cause_detail.is_empty() {
            s.push_str(&layout::wrap(&e.cause_detail, WIDTH, "    ", "    "));
        }
    }
}
