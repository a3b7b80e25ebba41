//! The Prometheus text exposition format (version 0.0.4), written once for both
//! binaries: the sensor's `/metrics` and the collector's.
//!
//! A metric family is announced once (`# HELP`, `# TYPE`) and then gets its samples;
//! label values are escaped here, so a caller never formats a sample line itself.
//!
//! ```
//! use rstwatch_schema::prometheus::{Exposition, MetricType};
//! let mut e = Exposition::new();
//! e.family("demo_total", "Things seen.", MetricType::Counter)
//!     .sample(&[("queue", "0")], 3)
//!     .sample(&[("queue", "1")], 4);
//! assert!(e.finish().contains("demo_total{queue=\"1\"} 4\n"));
//! ```

use std::fmt::{Display, Write as _};

/// The `# TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A number whose kind the exporter does not claim.
    Untyped,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Untyped => "untyped",
        }
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Announces a family (`# HELP` and `# TYPE` lines); add its samples to the
    /// returned handle.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricType) -> Family<'_> {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
        Family {
            text: &mut self.text,
            name: name.to_string(),
        }
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: MetricType, value: impl Display) {
        self.family(name, help, kind).sample(&[], value);
    }

    /// The text, ready to serve.
    pub fn finish(self) -> String {
        self.text
    }
}

/// The samples of one family.
#[derive(Debug)]
pub struct Family<'a> {
    text: &'a mut String,
    name: String,
}

impl Family<'_> {
    /// One sample line: `name{label="value",...} value`.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.text.push_str(&self.name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label_value(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A metric name part from free text: ASCII letters and digits kept (lower case),
/// anything else `_`.
pub fn sanitize_name(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_lines_then_samples() {
        let mut e = Exposition::new();
        e.family("x_total", "Xs.", MetricType::Counter)
            .sample(&[("iface", "eth\"1"), ("queue", "3")], 100)
            .sample(&[], 1);
        e.single("y", "Y now.", MetricType::Gauge, "0.500");
        assert_eq!(
            e.finish(),
            "# HELP x_total Xs.\n# TYPE x_total counter\n\
             x_total{iface=\"eth\\\"1\",queue=\"3\"} 100\nx_total 1\n\
             # HELP y Y now.\n# TYPE y gauge\ny 0.500\n"
        );
    }

    #[test]
    fn label_values_and_names_are_made_safe() {
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(sanitize_name("Flows-One.sided"), "flows_one_sided");
    }
}
