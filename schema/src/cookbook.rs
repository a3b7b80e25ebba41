//! The SQL cookbook (`schema/queries/*.sql`, documented in `schema/README.md`): one
//! file per analyst question, each taking its time range and filters as ClickHouse
//! query parameters, and the one function that binds them for any server.
//!
//! Every file uses the same parameters, in ClickHouse's `{name:Type}` syntax:
//!
//! | parameter | type | meaning |
//! |---|---|---|
//! | `from`, `to` | `DateTime` | the range `[from, to)`, UTC (rollup queries: whole minutes) |
//! | `sensor` | `String` | one sensor's id, `''` = every sensor |
//! | `service_port` | `UInt16` | the server's port, `0` = every port |
//! | `step` | `UInt32` | bucket width in seconds (rate queries only): 60, 3600 or 86400 |
//!
//! Servers since 19.x bind them themselves (`clickhouse-client --param_from=...`, HTTP
//! `param_from=`); ClickHouse 18.16 has no query parameters, so [`bind`] writes each
//! one as a typed literal (`toDateTime(1767225600)`, `'s1'`, `toUInt16(443)`). The
//! literal form runs on every server, so callers that build SQL for any server (the
//! collector's web view and report) use [`bind`] everywhere.

use std::fmt;

use crate::sql::QUERIES;

/// Bucket width of the rate queries (`{step:UInt32}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One-minute buckets, from `rst_minute`.
    Minute,
    /// One-hour buckets, from `rst_hour`.
    Hour,
    /// One-day buckets, from `rst_hour`.
    Day,
}

impl Step {
    /// The bucket width in seconds, as `{step:UInt32}` takes it.
    pub const fn seconds(self) -> u32 {
        match self {
            Step::Minute => 60,
            Step::Hour => 3_600,
            Step::Day => 86_400,
        }
    }

    /// The step a chart of `span_s` seconds wants: at most a few hundred buckets.
    pub fn for_span(span_s: u32) -> Step {
        if span_s <= 6 * 3_600 {
            Step::Minute
        } else if span_s <= 14 * 86_400 {
            Step::Hour
        } else {
            Step::Day
        }
    }
}

/// The values of a cookbook query's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Start of the range, seconds since the epoch (inclusive).
    pub from_s: u32,
    /// End of the range, seconds since the epoch (exclusive).
    pub to_s: u32,
    /// One sensor, or `""` for all.
    pub sensor: String,
    /// One server port, or 0 for all.
    pub service_port: u16,
    /// Bucket width of the rate queries (ignored by the others).
    pub step: Step,
}

impl Params {
    /// Every sensor and port over `[from_s, to_s)`, the step chosen for the span.
    pub fn range(from_s: u32, to_s: u32) -> Params {
        Params {
            from_s,
            to_s,
            sensor: String::new(),
            service_port: 0,
            step: Step::for_span(to_s.saturating_sub(from_s)),
        }
    }

    /// The `(name, value)` pairs a server with query parameters takes as
    /// `param_NAME=VALUE` (HTTP) or `--param_NAME=VALUE` (clickhouse-client).
    pub fn native(&self) -> Vec<(&'static str, String)> {
        vec![
            ("from", self.from_s.to_string()),
            ("to", self.to_s.to_string()),
            ("sensor", self.sensor.clone()),
            ("service_port", self.service_port.to_string()),
            ("step", self.step.seconds().to_string()),
        ]
    }
}

/// Why a query could not be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// No cookbook file of that name.
    UnknownQuery(String),
    /// The file uses a parameter this binder does not know (a typo in the file).
    UnknownParameter(String),
    /// The file declares a known parameter with another type than the cookbook's.
    WrongType {
        /// The parameter.
        name: String,
        /// The type the file declares.
        declared: String,
    },
    /// `to` is not after `from`.
    EmptyRange {
        /// Start, Unix seconds.
        from_s: u32,
        /// End, Unix seconds.
        to_s: u32,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::UnknownQuery(n) => write!(f, "no cookbook query named {n:?}"),
            BindError::UnknownParameter(p) => write!(f, "unknown query parameter {{{p}}}"),
            BindError::WrongType { name, declared } => write!(
                f,
                "parameter {name} declared as {declared}, the cookbook's type is {}",
                param_type(name).unwrap_or("?")
            ),
            BindError::EmptyRange { from_s, to_s } => {
                write!(
                    f,
                    "empty time range: to ({to_s}) is not after from ({from_s})"
                )
            }
        }
    }
}

impl std::error::Error for BindError {}

/// The cookbook's type of each parameter.
fn param_type(name: &str) -> Option<&'static str> {
    match name {
        "from" | "to" => Some("DateTime"),
        "sensor" => Some("String"),
        "service_port" => Some("UInt16"),
        "step" => Some("UInt32"),
        _ => None,
    }
}

/// The SQL of cookbook query `name` (file name without `.sql`), unbound.
pub fn query(name: &str) -> Option<&'static str> {
    QUERIES.iter().find(|(n, _)| *n == name).map(|(_, q)| *q)
}

/// Cookbook query `name` with `p` bound as literals: ready for any server, run with
/// the rstwatch database as the default database.
pub fn bound(name: &str, p: &Params) -> Result<String, BindError> {
    let sql = query(name).ok_or_else(|| BindError::UnknownQuery(name.to_string()))?;
    bind(sql, p)
}

/// Every `{name:Type}` placeholder in `sql`, in order of appearance (repeats included).
pub fn placeholders(sql: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        if let Some((name, ty)) = after[..close].split_once(':') {
            let ident = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_()".contains(c))
            };
            if ident(name) && ident(ty) {
                out.push((name, ty));
            }
        }
        rest = &after[close + 1..];
    }
    out
}

/// Replaces every `{name:Type}` placeholder of `sql` with `p`'s value as a typed
/// literal. Fails on a parameter or type the cookbook does not define, and on an empty
/// range.
pub fn bind(sql: &str, p: &Params) -> Result<String, BindError> {
    if p.to_s <= p.from_s {
        return Err(BindError::EmptyRange {
            from_s: p.from_s,
            to_s: p.to_s,
        });
    }
    let mut out = sql.to_string();
    for (name, ty) in placeholders(sql) {
        let want = param_type(name).ok_or_else(|| BindError::UnknownParameter(name.into()))?;
        if want != ty {
            return Err(BindError::WrongType {
                name: name.into(),
                declared: ty.into(),
            });
        }
        out = out.replace(&format!("{{{name}:{ty}}}"), &literal(name, p));
    }
    Ok(out)
}

/// The literal of one (known) parameter.
fn literal(name: &str, p: &Params) -> String {
    match name {
        "from" => format!("toDateTime({})", p.from_s),
        "to" => format!("toDateTime({})", p.to_s),
        "sensor" => string_literal(&p.sensor),
        "service_port" => format!("toUInt16({})", p.service_port),
        _ => format!("toUInt32({})", p.step.seconds()),
    }
}

/// A ClickHouse string literal: backslash and quote escaped.
fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the web view and report call (their contract with the cookbook).
    const CONTRACT: [&str; 9] = [
        "reset_rate_by_class",
        "reset_rate_by_cause",
        "top_services",
        "refused_hotspots",
        "suspected_injections",
        "idle_timeouts",
        "anomalies",
        "week_over_week",
        "sensor_health",
    ];

    fn p() -> Params {
        Params {
            from_s: 1_767_225_600,
            to_s: 1_767_229_200,
            sensor: "s'1\\".into(),
            service_port: 443,
            step: Step::Hour,
        }
    }

    #[test]
    fn every_contract_query_exists_and_takes_the_common_parameters() {
        for name in CONTRACT {
            let sql = query(name).unwrap_or_else(|| panic!("{name} missing"));
            let names: Vec<&str> = placeholders(sql).iter().map(|(n, _)| *n).collect();
            for want in ["from", "to", "sensor", "service_port"] {
                assert!(names.contains(&want), "{name} lacks {{{want}}}");
            }
            let rate = name.starts_with("reset_rate_by_");
            assert_eq!(names.contains(&"step"), rate, "{name}: step");
        }
    }

    #[test]
    fn every_shipped_query_binds_to_plain_sql() {
        for (name, sql) in QUERIES {
            let b = bind(sql, &p()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(placeholders(&b).is_empty(), "{name}: {b}");
            assert!(!b.contains("{from") && !b.contains(":DateTime}"), "{name}");
        }
    }

    #[test]
    fn literals_are_typed_and_strings_escaped() {
        let b = bind(
            "{from:DateTime} {to:DateTime} {sensor:String} {service_port:UInt16} {step:UInt32}",
            &p(),
        )
        .unwrap();
        assert_eq!(
            b,
            r"toDateTime(1767225600) toDateTime(1767229200) 's\'1\\' toUInt16(443) toUInt32(3600)"
        );
    }

    #[test]
    fn unknown_parameters_types_and_empty_ranges_are_refused() {
        assert_eq!(
            bind("{form:DateTime}", &p()),
            Err(BindError::UnknownParameter("form".into()))
        );
        assert_eq!(
            bind("{from:DateTime64(6)}", &p()),
            Err(BindError::WrongType {
                name: "from".into(),
                declared: "DateTime64(6)".into()
            })
        );
        let mut e = p();
        e.to_s = e.from_s;
        assert!(matches!(bind("", &e), Err(BindError::EmptyRange { .. })));
        assert_eq!(
            bound("nope", &p()),
            Err(BindError::UnknownQuery("nope".into()))
        );
        // Braces that are not placeholders (none in the files today) are left alone.
        assert_eq!(bind("{} {x}", &p()).unwrap(), "{} {x}");
    }

    #[test]
    fn step_follows_the_span() {
        assert_eq!(Step::for_span(3_600), Step::Minute);
        assert_eq!(Step::for_span(7 * 86_400), Step::Hour);
        assert_eq!(Step::for_span(90 * 86_400), Step::Day);
        assert_eq!(Params::range(0, 86_400).step, Step::Hour);
        assert_eq!(Params::range(0, 60).native()[4], ("step", "60".into()));
    }
}
