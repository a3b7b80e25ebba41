//! The report as Markdown (GitHub-flavoured tables), for tickets and wikis.

use super::layout::{self, cluster_sentence, idle_sentence, sentence, Clock};
use super::{CauseReport, Report, Share};
use std::fmt::Write;

/// The whole report.
pub fn render(r: &Report) -> String {
    let clock = Clock::for_report(r);
    let mut s = String::new();
    header(&mut s, r);
    if r.resets > 0 {
        cause_table(&mut s, r);
    }
    timeline(&mut s, r, &clock);
    anomalies(&mut s, r, &clock);
    for c in &r.causes {
        cause_section(&mut s, c, &clock);
    }
    s
}

fn header(s: &mut String, r: &Report) {
    let files: Vec<String> = r.files.iter().map(|f| format!("`{}`", cell(f))).collect();
    let _ = writeln!(s, "# rstwatch diagnose: {}\n", files.join(", "));
    if let Some(p) = layout::period(r) {
        let _ = writeln!(s, "{p}.\n");
    }
    let _ = writeln!(s, "{}", layout::summary(r));
    if r.resets == 0 {
        s.push_str("\nNo TCP resets in these captures: nothing to diagnose.\n");
    }
}

fn cause_table(s: &mut String, r: &Report) {
    s.push_str("\n## Why: causes in order of precedence\n\n");
    s.push_str("| cause | resets | % | flows | meaning | remedy |\n");
    s.push_str("|---|---:|---:|---:|---|---|\n");
    for c in &r.causes {
        let _ = writeln!(
            s,
            "| `{}` | {} | {:.1} | {} | {} | {} |",
            c.cause.as_str(),
            c.resets,
            c.percent,
            c.flows,
            cell(c.meaning),
            cell(c.remedy)
        );
    }
}

fn timeline(s: &mut String, r: &Report, clock: &Clock) {
    let Some(t) = &r.timeline else { return };
    let _ = writeln!(
        s,
        "\n## When: resets per {}\n",
        layout::duration(t.bucket_s)
    );
    if t.clusters.is_empty() {
        s.push_str("No moment stands out.\n\n");
    }
    for c in &t.clusters {
        let _ = writeln!(s, "{}\n", cluster_sentence(c, r.resets, clock));
    }
    s.push_str("| from | resets |\n|---|---:|\n");
    for (i, n) in t.counts.iter().enumerate().filter(|(_, &n)| n > 0) {
        let from = t.start_s + i as i64 * t.bucket_s;
        let _ = writeln!(s, "| {} | {} |", clock.time_s(from), n);
    }
}

fn anomalies(s: &mut String, r: &Report, clock: &Clock) {
    if r.anomalies.is_empty() {
        return;
    }
    s.push_str("\n## Anomalies\n\n| time | kind | subject | detail |\n|---|---|---|---|\n");
    for a in &r.anomalies {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} |",
            clock.time(a.ts_us),
            a.kind.as_str(),
            cell(&a.subject),
            cell(&a.detail)
        );
    }
    if r.anomalies_dropped > 0 {
        let _ = writeln!(s, "\n{} more not kept.", r.anomalies_dropped);
    }
}

fn cause_section(s: &mut String, c: &CauseReport, clock: &Clock) {
    let _ = writeln!(
        s,
        "\n## `{}`: {} ({:.1} %), {}\n",
        c.cause.as_str(),
        layout::count(c.resets, "reset"),
        c.percent,
        layout::count(c.flows, "flow")
    );
    let _ = writeln!(s, "{}\n", sentence(c.meaning));
    let _ = writeln!(s, "**Remedy:** {}\n", sentence(c.remedy));
    if let Some(e) = &c.idle_timeout {
        let _ = writeln!(s, "{}\n", idle_sentence(e));
    }
    for cl in &c.clusters {
        let _ = writeln!(s, "{}\n", cluster_sentence(cl, c.resets, clock));
    }
    shares(s, "service", &c.services, c.services_untracked);
    shares(
        s,
        "client network",
        &c.client_networks,
        c.client_networks_untracked,
    );
    if !c.examples.is_empty() {
        s.push_str("| example RST | class | sender | flags | detail |\n|---|---|---|---|---|\n");
    }
    for e in &c.examples {
        let _ = writeln!(
            s,
            "| {} `{}` | {} | {} | {} | {} |",
            rstwatch_schema::timefmt::rfc3339_micros(e.ts_us),
            cell(&layout::four_tuple(e)),
            e.class.as_str(),
            layout::sender(e.dir),
            layout::flags(e),
            cell(&e.cause_detail)
        );
    }
}

fn shares(s: &mut String, what: &str, list: &[Share], untracked: u64) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(s, "| top {what}s | resets | % |\n|---|---:|---:|");
    for x in list {
        let _ = writeln!(
            s,
            "| `{}` | {} | {:.1} |",
            cell(&x.name),
            x.resets,
            x.percent
        );
    }
    if untracked > 0 {
        let _ = writeln!(s, "| (beyond the ones told apart) | {untracked} | |");
    }
    s.push('\n');
}

/// Text safe inside a table cell: pipes escaped, line breaks as spaces.
fn cell(t: &str) -> String {
    t.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_escape_pipes_and_line_breaks() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
