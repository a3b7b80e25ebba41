//! Log lines on stderr: `2026-11-21T14:08:47.123456Z LEVEL message`.

/// Microseconds since the epoch, from the wall clock.
pub use rstwatch_schema::timefmt::wall_clock_us as now_us;

#[doc(hidden)]
pub fn emit(level: &str, msg: std::fmt::Arguments<'_>) {
    eprintln!(
        "{} {level} {msg}",
        rstwatch_schema::timefmt::rfc3339_micros(now_us())
    );
}

/// Logs an info line on stderr (timestamped).
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::emit("INFO", format_args!($($t)*)) };
}

/// Logs a warning line on stderr (timestamped).
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::emit("WARN", format_args!($($t)*)) };
}

/// Lets through at most `burst` lines per key in each `window`, and says how many it
/// held back when the next window opens: a peer that reconnects 17,000 times a second
/// cannot fill the disk with the collector's log.
pub struct RateLimit {
    burst: u32,
    window: std::time::Duration,
    seen: std::sync::Mutex<std::collections::HashMap<(std::net::IpAddr, &'static str), Window>>,
    /// Lines held back, in total (a metric).
    pub suppressed: std::sync::atomic::AtomicU64,
}

struct Window {
    start: std::time::Instant,
    lines: u32,
    held: u64,
}

/// What to do with one log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it; `held` lines of this key were held back in the previous window.
    Emit {
        /// Lines held back since the last one emitted.
        held: u64,
    },
    /// Over the limit: count it, do not log.
    Suppress,
}

/// Keys tracked at most; past this the table starts over (a flood of source addresses
/// must not grow it without bound).
const MAX_KEYS: usize = 16_384;

impl RateLimit {
    /// At most `burst` lines per peer address and reason per `window`.
    pub fn new(burst: u32, window: std::time::Duration) -> RateLimit {
        RateLimit {
            burst,
            window,
            seen: Default::default(),
            suppressed: Default::default(),
        }
    }

    /// Whether a line about `reason` from `ip` may be logged now.
    pub fn check(&self, ip: std::net::IpAddr, reason: &'static str) -> Verdict {
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_KEYS && !seen.contains_key(&(ip, reason)) {
            seen.clear();
        }
        let w = seen.entry((ip, reason)).or_insert(Window {
            start: now,
            lines: 0,
            held: 0,
        });
        let mut held = 0;
        if now.duration_since(w.start) >= self.window {
            held = w.held;
            *w = Window {
                start: now,
                lines: 0,
                held: 0,
            };
        }
        if w.lines < self.burst {
            w.lines += 1;
            Verdict::Emit { held }
        } else {
            w.held += 1;
            self.suppressed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Verdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_one_reason_from_one_peer_gets_burst_lines_per_window() {
        let rl = RateLimit::new(3, std::time::Duration::from_millis(200));
        let ip: std::net::IpAddr = [192, 0, 2, 1].into();
        let other: std::net::IpAddr = [192, 0, 2, 2].into();
        let emitted = (0..1000)
            .filter(|_| rl.check(ip, "wrong_sensor") != Verdict::Suppress)
            .count();
        assert_eq!(emitted, 3);
        assert_eq!(rl.check(ip, "bad_token"), Verdict::Emit { held: 0 });
        assert_eq!(rl.check(other, "wrong_sensor"), Verdict::Emit { held: 0 });
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert_eq!(rl.check(ip, "wrong_sensor"), Verdict::Emit { held: 997 });
    }
}
