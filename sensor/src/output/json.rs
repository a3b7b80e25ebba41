//! A hand-written JSON form of RST events and flow records, byte for byte what
//! `serde_json::to_writer(&Record::Rst(..))` / `Record::Flow(..)` emits.
//!
//! Why: in `replay` serde's generic path (a `String` per timestamp from the `time`
//! crate, `collect_str` through `fmt` for every address and flag set) cost more per
//! record than the engine spent on the packets behind it. Here integers go through
//! `itoa`, IPv4 addresses and dates are formatted directly (the date text of the last
//! day is kept). Anomalies (rare, with floats) keep serde.
//! `tests::same_bytes_as_serde` holds the two forms equal on random records.

use rstwatch_schema::timefmt::rfc3339_micros;
use rstwatch_schema::{FlowRecord, IpBytes, RstEvent};

/// Formats records into a caller's buffer; keeps the date text of the last day.
pub(super) struct JsonFormat {
    /// A day (since the epoch) and its `YYYY-MM-DDT` text (`i64::MIN`, which no
    /// timestamp's day is, until the first). A day, not a second: a flow record's start
    /// and end, and the records written around it, fall in many different seconds
    /// (with two seconds kept, most timestamps still missed), nearly always in one day;
    /// the time of day is three table lookups.
    day: (i64, [u8; 11]),
}

impl Default for JsonFormat {
    fn default() -> JsonFormat {
        JsonFormat {
            day: (i64::MIN, [0; 11]),
        }
    }
}

/// `"00"` to `"99"`: two digits per division.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

impl JsonFormat {
    /// Appends `{"type":"rst",...}` (no newline).
    pub(super) fn rst(&mut self, e: &RstEvent, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":\"rst\",\"ts\":");
        self.ts(e.ts_us, out);
        field_ip(out, b",\"src\":", e.src);
        field_int(out, b",\"sport\":", e.sport);
        field_ip(out, b",\"dst\":", e.dst);
        field_int(out, b",\"dport\":", e.dport);
        field_int(out, b",\"vlan\":", e.vlan);
        field_int(out, b",\"inner_vlan\":", e.inner_vlan);
        field_name(out, b",\"dir\":", e.dir.as_str());
        field_name(out, b",\"class\":", e.class.as_str());
        out.extend_from_slice(b",\"flags\":[");
        for (i, f) in e.flags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            quoted_name(out, f.as_str());
        }
        out.push(b']');
        field_bool(out, b",\"suspect\":", e.suspect);
        field_int(out, b",\"seq\":", e.seq);
        field_int(out, b",\"ack\":", e.ack);
        field_bool(out, b",\"ack_flag\":", e.ack_flag);
        field_int(out, b",\"ttl\":", e.ttl);
        field_int(out, b",\"ip_id\":", e.ip_id);
        field_int(out, b",\"payload_len\":", e.payload_len);
        field_int(out, b",\"flow_uid\":", e.flow_uid);
        field_name(out, b",\"cause\":", e.cause.as_str());
        out.extend_from_slice(b",\"cause_detail\":");
        string(out, &e.cause_detail);
        field_int(out, b",\"silence_ms\":", e.silence_ms);
        field_name(out, b",\"encap\":", e.encap.as_str());
        field_int(out, b",\"tunnel_id\":", e.tunnel_id);
        out.push(b'}');
    }

    /// Appends `{"type":"flow",...}` (no newline).
    pub(super) fn flow(&mut self, f: &FlowRecord, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":\"flow\",\"ts_start\":");
        self.ts(f.ts_start_us, out);
        out.extend_from_slice(b",\"ts_end\":");
        self.ts(f.ts_end_us, out);
        field_ip(out, b",\"orig_h\":", f.orig_h);
        field_int(out, b",\"orig_p\":", f.orig_p);
        field_ip(out, b",\"resp_h\":", f.resp_h);
        field_int(out, b",\"resp_p\":", f.resp_p);
        field_int(out, b",\"vlan\":", f.vlan);
        field_int(out, b",\"inner_vlan\":", f.inner_vlan);
        field_name(out, b",\"conn_state\":", f.conn_state.as_str());
        out.extend_from_slice(b",\"history\":");
        string(out, &f.history);
        field_int(out, b",\"orig_pkts\":", f.orig_pkts);
        field_int(out, b",\"resp_pkts\":", f.resp_pkts);
        field_int(out, b",\"orig_bytes\":", f.orig_bytes);
        field_int(out, b",\"resp_bytes\":", f.resp_bytes);
        field_int(out, b",\"rst_count\":", f.rst_count);
        field_name(out, b",\"close\":", f.close.as_str());
        field_int(out, b",\"flow_uid\":", f.flow_uid);
        field_name(out, b",\"cause\":", f.cause.map_or("", |c| c.as_str()));
        field_name(out, b",\"encap\":", f.encap.as_str());
        field_int(out, b",\"tunnel_id\":", f.tunnel_id);
        out.push(b'}');
    }

    /// A quoted RFC 3339 timestamp with six fractional digits, as `timefmt` prints it.
    #[inline]
    fn ts(&mut self, ts_us: i64, out: &mut Vec<u8>) {
        let secs = ts_us.div_euclid(1_000_000);
        let micros = ts_us.rem_euclid(1_000_000) as usize;
        let day = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as usize;
        if day != self.day.0 {
            match day_text(day) {
                Some(text) => self.day = (day, text),
                // Outside the formatter's range: its own fallback text.
                None => return string(out, &rfc3339_micros(ts_us)),
            }
        }
        // One fixed-size copy: `"` date `T` time `.` six digits `Z"`.
        let mut t = *b"\"YYYY-MM-DDTHH:MM:SS.uuuuuuZ\"";
        t[1..12].copy_from_slice(&self.day.1);
        t[12..14].copy_from_slice(&DIGIT_PAIRS[sod / 3600]);
        t[15..17].copy_from_slice(&DIGIT_PAIRS[sod / 60 % 60]);
        t[18..20].copy_from_slice(&DIGIT_PAIRS[sod % 60]);
        t[21..23].copy_from_slice(&DIGIT_PAIRS[micros / 10_000]);
        t[23..25].copy_from_slice(&DIGIT_PAIRS[micros / 100 % 100]);
        t[25..27].copy_from_slice(&DIGIT_PAIRS[micros % 100]);
        out.extend_from_slice(&t);
    }
}

/// Seconds of 10000-01-01T00:00:00Z: the formatter prints four-digit years below it.
const YEAR_10000: i64 = 253_402_300_800;

/// `YYYY-MM-DDT` of a day since the epoch from 1970 to 9999 (what [`rfc3339_micros`]
/// prints there), or `None` outside, where that formatter's own text is used. Days to
/// a civil date: Howard Hinnant's `civil_from_days`.
fn day_text(days: i64) -> Option<[u8; 11]> {
    if !(0..YEAR_10000 / 86_400).contains(&days) {
        return None;
    }
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut t = *b"0000-00-00T";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for d in t[at..at + width].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    Some(t)
}

/// An unsigned integer field. A single digit is pushed as is: VLANs, tunnel ids and
/// RST counts are nearly always 0, and `itoa` plus a copy of a length known only at
/// run time cost ten times the push.
#[inline]
fn field_int<T: itoa::Integer + Into<u64> + Copy>(out: &mut Vec<u8>, key: &[u8], v: T) {
    out.extend_from_slice(key);
    let wide: u64 = v.into();
    if wide < 10 {
        out.push(b'0' + wide as u8);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
}

#[inline]
fn field_bool(out: &mut Vec<u8>, key: &[u8], v: bool) {
    out.extend_from_slice(key);
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// A closed-vocabulary name (ASCII letters, digits, `_`: nothing to escape).
#[inline]
fn field_name(out: &mut Vec<u8>, key: &[u8], name: &str) {
    out.extend_from_slice(key);
    quoted_name(out, name);
}

#[inline]
fn quoted_name(out: &mut Vec<u8>, name: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

fn field_ip(out: &mut Vec<u8>, key: &[u8], a: IpBytes) {
    out.extend_from_slice(key);
    out.push(b'"');
    if a.is_v4() {
        // Dotted quad into a local buffer, one copy out: this runs twice per record.
        // Each octet is a fixed four-byte copy from a table (its digits and a dot),
        // the cursor moved by its length; no division, no branch per digit.
        let mut t = [0u8; 16];
        let mut n = 0;
        for &o in &a.0[12..] {
            let (text, len) = OCTETS[usize::from(o)];
            t[n..n + 4].copy_from_slice(&text);
            n += usize::from(len);
        }
        // The last octet's dot is not part of the address.
        out.extend_from_slice(&t[..n - 1]);
    } else {
        // IPv6 text has compression rules; the standard library's form is the contract.
        use std::io::Write;
        let _ = write!(out, "{a}");
    }
    out.push(b'"');
}

/// Each byte value's decimal digits followed by a dot, and how many bytes of that are
/// used (digits plus the dot).
const OCTETS: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let o = i as u8;
        t[i] = if o >= 100 {
            ([b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10, b'.'], 4)
        } else if o >= 10 {
            ([b'0' + o / 10, b'0' + o % 10, b'.', 0], 3)
        } else {
            ([b'0' + o, b'.', 0, 0], 2)
        };
        i += 1;
    }
    t
};

/// A JSON string escaped exactly as serde_json escapes it: `"` and `\`, the short
/// forms `\b \t \n \f \r`, other control characters as `\u00xx` (lower-case hex).
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Nearly every string (histories, cause details) has nothing to escape: one test
    // per byte, one copy.
    if bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstwatch_schema::{
        Cause, CloseReason, ConnState, Dir, Encap, Record, RstClass, RstFlag, RstFlags,
    };

    fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
        (0..all.len()).prop_map(move |i| all[i])
    }

    fn ip() -> impl Strategy<Value = IpBytes> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpBytes::from_v4),
            any::<[u8; 16]>().prop_map(IpBytes),
            // Runs of zeros, which IPv6 text compresses.
            (any::<u16>(), any::<u16>()).prop_map(|(a, b)| {
                let mut x = [0u8; 16];
                x[0..2].copy_from_slice(&a.to_be_bytes());
                x[14..16].copy_from_slice(&b.to_be_bytes());
                IpBytes(x)
            }),
        ]
    }

    /// Mostly plausible times, sometimes anywhere in `i64` (the formatter's fallback),
    /// and around the ends of the fast path's range.
    fn ts() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => 0i64..4_102_444_800_000_000,
            1 => (YEAR_10000 - 400 * 86_400) * 1_000_000..(YEAR_10000 + 86_400) * 1_000_000,
            1 => -86_400_000_000i64..86_400_000_000,
            1 => -100_000_000_000_000i64..0,
            1 => any::<i64>(),
        ]
    }

    /// Text with quotes, backslashes, every control character and non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                any::<char>(),
                (0u8..0x20).prop_map(char::from),
                Just('"'),
                Just('\\'),
                Just('\u{7f}'),
                Just('a'),
            ],
            0..24,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    prop_compose! {
        fn rst_event()(
            ts_us in ts(), src in ip(), dst in ip(), ports in any::<(u16, u16, u16, u16)>(),
            dir in pick(Dir::ALL), class in pick(RstClass::ALL),
            flags in prop::collection::vec(pick(RstFlag::ALL), 0..6),
            bools in any::<(bool, bool)>(), nums in any::<(u32, u32, u8, u16, u16, u64)>(),
            cause in pick(Cause::ALL), cause_detail in text(), silence_ms in any::<u64>(),
            encap in pick(Encap::ALL), tunnel_id in any::<u32>(),
        ) -> RstEvent {
            RstEvent {
                ts_us, src, sport: ports.0, dst, dport: ports.1, vlan: ports.2,
                inner_vlan: ports.3, dir, class, flags: flags.into_iter().collect::<RstFlags>(),
                suspect: bools.0, seq: nums.0, ack: nums.1, ack_flag: bools.1, ttl: nums.2,
                ip_id: nums.3, payload_len: nums.4, flow_uid: nums.5, cause, cause_detail,
                silence_ms, encap, tunnel_id,
            }
        }
    }

    prop_compose! {
        fn flow_record()(
            ts in (ts(), ts()), orig_h in ip(), resp_h in ip(),
            ports in any::<(u16, u16, u16, u16)>(), conn_state in pick(ConnState::ALL),
            history in text(), counts in any::<(u64, u64, u64, u64, u32, u64)>(),
            close in pick(CloseReason::ALL), cause in prop::option::of(pick(Cause::ALL)),
            encap in pick(Encap::ALL), tunnel_id in any::<u32>(),
        ) -> FlowRecord {
            FlowRecord {
                ts_start_us: ts.0, ts_end_us: ts.1, orig_h, orig_p: ports.0, resp_h,
                resp_p: ports.1, vlan: ports.2, inner_vlan: ports.3, conn_state, history,
                orig_pkts: counts.0, resp_pkts: counts.1, orig_bytes: counts.2,
                resp_bytes: counts.3, rst_count: counts.4, close, flow_uid: counts.5, cause,
                encap, tunnel_id,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn rst_same_bytes_as_serde(e in rst_event()) {
            let mut fast = Vec::new();
            JsonFormat::default().rst(&e, &mut fast);
            let serde = serde_json::to_vec(&Record::Rst(e)).unwrap();
            prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(serde).unwrap());
        }

        #[test]
        fn flow_same_bytes_as_serde(f in flow_record()) {
            let mut fast = Vec::new();
            JsonFormat::default().flow(&f, &mut fast);
            let serde = serde_json::to_vec(&Record::Flow(f)).unwrap();
            prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(serde).unwrap());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// One formatter over a run of records whose times fall in neighbouring
        /// seconds of one to three days (and now and then far away), as in a capture:
        /// the cached day is hit, replaced and hit again, and every line is serde's.
        #[test]
        fn records_in_sequence_same_bytes_as_serde(
            base in 0i64..4_102_444_800,
            recs in prop::collection::vec(
                (flow_record(), 0i64..100_000, 0i64..100_000, 0i64..1_000_000, 0i64..1_000_000, 0u8..20),
                1..40,
            ),
        ) {
            let mut fmt = JsonFormat::default();
            for (mut f, s0, s1, u0, u1, far) in recs {
                f.ts_start_us = (base + s0) * 1_000_000 + u0;
                f.ts_end_us = if far == 0 { f.ts_end_us } else { (base + s1) * 1_000_000 + u1 };
                let mut fast = Vec::new();
                fmt.flow(&f, &mut fast);
                let serde = serde_json::to_vec(&Record::Flow(f)).unwrap();
                prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(serde).unwrap());
            }
        }
    }

    /// The date arithmetic against the reference formatter: every day from 1970 to
    /// 2200 (all leap-year rules), then every 97th day to 9999.
    #[test]
    fn dates_match_the_reference_formatter() {
        let last_day = YEAR_10000 / 86_400;
        let days = (0..84_000)
            .chain((84_000..last_day).step_by(97))
            .chain([last_day - 1]);
        for day in days {
            let want = rfc3339_micros(day * 86_400 * 1_000_000);
            let got = day_text(day).map(|t| String::from_utf8(t.to_vec()).unwrap());
            assert_eq!(got.as_deref(), Some(&want[..11]), "{day}");
        }
        assert_eq!(day_text(last_day), None);
        assert_eq!(day_text(-1), None);
    }

    /// Every second of two days (one of them a leap day) through one formatter, and
    /// the seconds around the ends of its range: the reference formatter's text.
    #[test]
    fn every_second_of_a_day_matches_the_reference_formatter() {
        let mut fmt = JsonFormat::default();
        let leap_day = 19_782 * 86_400; // 2024-02-29
        let seconds = (leap_day - 1..leap_day + 86_401)
            .chain(1_767_225_600 - 5..1_767_225_600 + 86_400)
            .chain([-2, -1, 0, 1, YEAR_10000 - 1, YEAR_10000, YEAR_10000 + 1]);
        for (i, secs) in seconds.enumerate() {
            let us = secs * 1_000_000 + (i as i64 * 7919) % 1_000_000;
            let mut got = Vec::new();
            fmt.ts(us, &mut got);
            let want = format!("\"{}\"", rfc3339_micros(us));
            assert_eq!(String::from_utf8(got).unwrap(), want, "{us}");
        }
    }

    /// Every octet value in every position of an IPv4 address, beside neighbours of
    /// one, two and three digits: the standard library's text.
    #[test]
    fn every_ipv4_octet_matches_std() {
        for o in 0..=255u8 {
            for pos in 0..4 {
                let mut b = [o.wrapping_mul(7), 10, 200, 3];
                b[pos] = o;
                let mut got = Vec::new();
                field_ip(&mut got, b"", IpBytes::from_v4(b));
                let want = format!("\"{}\"", std::net::Ipv4Addr::from(b));
                assert_eq!(String::from_utf8(got).unwrap(), want);
            }
        }
    }

    /// Integers at the edges of the one-digit shortcut, in every integer field.
    #[test]
    fn integers_around_one_digit_match_serde() {
        let mut e = RstEvent::new(
            1_767_225_600_000_001,
            ("192.0.2.1".parse().unwrap(), 1),
            ("2001:db8::1".parse().unwrap(), 2),
            Dir::Orig,
            RstClass::Abort,
        );
        for v in [0u64, 1, 9, 10, 11, 99, 100, 255, 65_535, u64::MAX] {
            let (v8, v16, v32) = (v as u8, v as u16, v as u32);
            (
                e.sport,
                e.dport,
                e.vlan,
                e.inner_vlan,
                e.ip_id,
                e.payload_len,
            ) = (v16, v16, v16, v16, v16, v16);
            (e.seq, e.ack, e.ttl, e.flow_uid, e.silence_ms, e.tunnel_id) =
                (v32, v32, v8, v, v, v32);
            let mut fast = Vec::new();
            JsonFormat::default().rst(&e, &mut fast);
            let serde = serde_json::to_vec(&Record::Rst(e.clone())).unwrap();
            assert_eq!(fast, serde, "{v}");
        }
    }

    /// The per-day date cache: consecutive records in one second, the next second,
    /// the next day and a jump back all print what serde prints.
    #[test]
    fn cached_day_is_reused_and_replaced() {
        let mut fmt = JsonFormat::default();
        let mut e = RstEvent::new(
            0,
            ("192.0.2.1".parse().unwrap(), 1),
            ("2001:db8::1".parse().unwrap(), 2),
            Dir::Orig,
            RstClass::Abort,
        );
        for ts in [
            1_767_225_600_000_001,
            1_767_225_600_999_999,
            1_767_225_601_000_000,
            1_767_311_999_999_999,
            1_767_312_000_000_000,
            5,
        ] {
            e.ts_us = ts;
            let mut fast = Vec::new();
            fmt.rst(&e, &mut fast);
            let serde = serde_json::to_vec(&Record::Rst(e.clone())).unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}
