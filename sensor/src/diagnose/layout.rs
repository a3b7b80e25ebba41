//! Small pieces both human renderers share: times, durations, word wrapping, and the
//! sentences they print alike.

use super::timeline::Cluster;
use super::{IdleEstimate, Report};
use rstwatch_schema::timefmt::rfc3339_micros;
use rstwatch_schema::{Dir, RstEvent};

/// Prints times of one report: `HH:MM:SS` when the whole report is one UTC day,
/// `YYYY-MM-DD HH:MM:SS` otherwise.
pub(crate) struct Clock {
    same_day: bool,
}

impl Clock {
    pub(crate) fn for_report(r: &Report) -> Clock {
        let day = |us: i64| us.div_euclid(86_400_000_000);
        let same_day = match (r.first, r.last) {
            (Some(a), Some(b)) => day(a) == day(b),
            _ => true,
        };
        Clock { same_day }
    }

    pub(crate) fn time(&self, ts_us: i64) -> String {
        let s = rfc3339_micros(ts_us);
        match (s.get(0..10), s.get(11..19)) {
            (Some(_), Some(t)) if self.same_day => t.to_string(),
            (Some(d), Some(t)) => format!("{d} {t}"),
            _ => s,
        }
    }

    pub(crate) fn time_s(&self, s: i64) -> String {
        self.time(s.saturating_mul(1_000_000))
    }
}

/// What the records span: `2026-01-01 00:00:00 to 00:09:56 UTC (9 min 56 s)`, the
/// second date only when it differs.
pub(crate) fn period(r: &Report) -> Option<String> {
    let (a, b) = (r.first?, r.last?);
    let end = Clock::for_report(r).time(b);
    // The difference of the whole seconds shown, so the numbers add up.
    let length = match b.div_euclid(1_000_000) - a.div_euclid(1_000_000) {
        0 => "under 1 s".to_string(),
        secs => duration(secs),
    };
    Some(format!(
        "{} to {end} UTC ({length})",
        Clock { same_day: false }.time(a),
    ))
}

/// `text` cut to at most `width` characters by replacing its middle with `…` (the
/// start and the end of a path say the most).
pub(crate) fn elide_middle(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width || width < 3 {
        return text.to_string();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// A duration in the two largest units that matter: `42 s`, `4 min 10 s`, `2 h 5 min`,
/// `3 d 4 h`.
pub(crate) fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// The RST's own four-tuple, `src:sport > dst:dport`.
pub(crate) fn four_tuple(e: &RstEvent) -> String {
    format!(
        "{} > {}",
        crate::output::endpoint(e.src, e.sport),
        crate::output::endpoint(e.dst, e.dport)
    )
}

/// `1 reset`, `2 resets`.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The report's first sentence: `2342 resets; 2256 of 4754 flows saw a reset.`
pub(crate) fn summary(r: &Report) -> String {
    format!(
        "{}; {} of {} saw a reset.",
        count(r.resets, "reset"),
        r.flows_reset,
        count(r.flows, "flow")
    )
}

/// Who sent an RST: `client (orig)`, `server (resp)` or `unknown (no flow state)`.
pub(crate) fn sender(dir: Dir) -> &'static str {
    match dir {
        Dir::Orig => "client (orig)",
        Dir::Resp => "server (resp)",
        Dir::Unknown => "unknown (no flow state)",
    }
}

/// [`sender`] as a phrase: `sent by the client (orig)`.
pub(crate) fn sent_by(dir: Dir) -> String {
    match dir {
        Dir::Unknown => format!("sender {}", sender(dir)),
        _ => format!("sent by the {}", sender(dir)),
    }
}

/// The RST's flags by name, `SUSPECT` first when it is.
pub(crate) fn flags(e: &RstEvent) -> String {
    let mut names: Vec<&str> = Vec::new();
    if e.suspect {
        names.push("SUSPECT");
    }
    names.extend(e.flags.names());
    if names.is_empty() {
        return "none".into();
    }
    names.join(", ")
}

/// `text` wrapped at `width` columns: the first line starts with `first`, the others
/// with `rest` (both counted in the width). Words longer than a line stay whole.
pub(crate) fn wrap(text: &str, width: usize, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// "Resets cluster around 00:03:12: 412 of 1530 (26.9 %) in the 10 s from 00:03:10."
pub(crate) fn cluster_sentence(c: &Cluster, total: u64, clock: &Clock) -> String {
    format!(
        "Resets cluster around {}: {} of {} ({:.1} %) in the {} from {}.",
        clock.time_s(c.at_s),
        c.resets,
        total,
        c.percent,
        duration(c.bucket_s),
        clock.time_s(c.bucket_start_s)
    )
}

/// "The device's idle timeout is about 3600 s (7 of 10 silences within ±72 s; ...)."
pub(crate) fn idle_sentence(e: &IdleEstimate) -> String {
    format!(
        "The device's idle timeout is about {} s ({} of {} silences within ±{} s; the shortest silence reset was {} s).",
        e.timeout_s, e.matching, e.silences, e.within_s, e.shortest_s
    )
}

/// Capitalised, with a full stop.
pub(crate) fn sentence(t: &str) -> String {
    let mut c = t.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_lines_within_the_width_and_indents_the_rest() {
        let w = wrap(
            "send keep-alives or heartbeats more often than the device's timeout, or raise it",
            40,
            "  Remedy: ",
            "          ",
        );
        assert_eq!(
            w,
            "  Remedy: send keep-alives or heartbeats\n          more often than the device's\n          timeout, or raise it\n"
        );
        assert!(w.lines().all(|l| l.chars().count() <= 40));
    }

    #[test]
    fn long_paths_lose_their_middle() {
        assert_eq!(elide_middle("/a/b/c.pcap", 20), "/a/b/c.pcap");
        let e = elide_middle(
            "/work/shared/corpus/suricata-verify/long-name/input.pcap",
            21,
        );
        assert_eq!(e, "/work/shar…input.pcap");
        assert_eq!(e.chars().count(), 21);
    }

    #[test]
    fn durations_use_two_units() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(250), "4 min 10 s");
        assert_eq!(duration(7500), "2 h 5 min");
        assert_eq!(duration(277_200), "3 d 5 h");
    }
}
