//! Log lines on stderr: `2026-11-21T14:08:47.123456Z LEVEL message`.

/// Microseconds since the epoch, from the wall clock.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[doc(hidden)]
pub fn emit(level: &str, msg: std::fmt::Arguments<'_>) {
    eprintln!(
        "{} {level} {msg}",
        rstwatch_schema::timefmt::rfc3339_micros(now_us())
    );
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::emit("INFO", format_args!($($t)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::emit("WARN", format_args!($($t)*)) };
}
