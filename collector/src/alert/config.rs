//! The `[alerts]` section of the collector's config file, checked once at start.
//!
//! ```toml
//! [alerts]
//! state_dir = "/var/lib/rstwatch/alerts"   # cursor, open alerts, undelivered notices
//! log = "-"                  # ECS JSON lines: "-" = stdout, or a file path
//! window_secs = 600          # dedup window; an anomaly resolves after this long quiet
//! [alerts.webhook]           # Alertmanager v4 webhook payload
//! url = "http://127.0.0.1:9095/hook"
//! [alerts.slack]
//! url = "https://hooks.slack.com/services/..."
//! [alerts.syslog]
//! address = "192.0.2.50:514"
//! transport = "udp"          # or "tcp" (newline-framed)
//! [[alerts.rule]]            # threshold on a query: fires per subject above the line
//! name = "service_resets"
//! sql = "SELECT ... AS subject, ... AS value FROM {{DB}}.rst_minute WHERE ..."
//! above = 100
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::model::Severity;

/// The `[alerts]` section of the collector's configuration file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// Where the cursor, open alerts and queued notices are kept across restarts.
    pub state_dir: PathBuf,
    /// ECS JSON lines: `"-"` for stdout or a file path; none when absent.
    #[serde(default)]
    pub log: Option<String>,
    /// Seconds between polls of the anomaly table.
    #[serde(default = "d_poll")]
    pub poll_secs: u64,
    /// Rows of one key within this many seconds join one alert; it resolves after as
    /// many seconds without a new row.
    #[serde(default = "d_window")]
    pub window_secs: u64,
    /// How far back each poll re-reads the batch ledger: covers batches committed
    /// late (an insert may take minutes on a loaded server).
    #[serde(default = "d_lookback")]
    pub lookback_secs: u64,
    /// `observer.name` of threshold alerts (anomaly alerts name their sensor).
    #[serde(default)]
    pub observer: Option<String>,
    /// Base of links in alerts (`externalURL`, `generatorURL`), e.g. the SOC view.
    #[serde(default)]
    pub external_url: String,
    /// Notices queued per sink at most; beyond, the oldest are dropped and counted.
    #[serde(default = "d_queue")]
    pub queue_max: usize,
    /// Retry and backoff of every sink.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Alertmanager v4 webhook.
    #[serde(default)]
    pub webhook: Option<HttpConfig>,
    /// Slack incoming webhook.
    #[serde(default)]
    pub slack: Option<HttpConfig>,
    /// Syslog with CEF.
    #[serde(default)]
    pub syslog: Option<SyslogConfig>,
    /// Threshold rules (`[[alerts.rule]]`).
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per notice (the first included); then it is dropped and counted.
    #[serde(default = "d_attempts")]
    pub attempts: u32,
    #[serde(default = "d_base_ms")]
    pub base_ms: u64,
    #[serde(default = "d_max_ms")]
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: d_attempts(),
            base_ms: d_base_ms(),
            max_ms: d_max_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: String,
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
    /// Alertmanager `receiver` field (webhook only).
    #[serde(default = "d_receiver")]
    pub receiver: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    pub address: String,
    #[serde(default = "d_transport")]
    pub transport: Transport,
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// A SELECT returning columns `subject` and `value`; `{{DB}}` is the database.
    pub sql: String,
    /// Fires for each subject whose value is above this.
    pub above: f64,
    #[serde(default = "d_every")]
    pub every_secs: u64,
    #[serde(default)]
    pub severity: Option<String>,
}

fn d_poll() -> u64 {
    5
}
fn d_window() -> u64 {
    600
}
fn d_lookback() -> u64 {
    600
}
fn d_queue() -> usize {
    10_000
}
fn d_attempts() -> u32 {
    6
}
fn d_base_ms() -> u64 {
    500
}
fn d_max_ms() -> u64 {
    30_000
}
fn d_timeout() -> u64 {
    10
}
fn d_receiver() -> String {
    "rstwatch".into()
}
fn d_transport() -> Transport {
    Transport::Udp
}
fn d_every() -> u64 {
    60
}

/// A threshold rule, checked.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub sql: String,
    pub above: f64,
    pub every: Duration,
    pub severity: Severity,
}

/// Where the ECS lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

/// The alert settings, resolved once: nothing downstream re-parses a string.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See [`AlertConfig::state_dir`].
    pub state_dir: PathBuf,
    /// Where ECS lines go, if anywhere.
    pub log: Option<LogTarget>,
    /// Between polls of the anomaly table.
    pub poll: Duration,
    /// [`AlertConfig::window_secs`] in microseconds (packet time).
    pub window_us: i64,
    /// See [`AlertConfig::lookback_secs`].
    pub lookback_secs: u32,
    /// `observer.name` of threshold alerts.
    pub observer: String,
    /// Base of links in alerts.
    pub external_url: String,
    /// Notices queued per sink at most.
    pub queue_max: usize,
    /// Retry and backoff of every sink.
    pub retry: RetryConfig,
    /// Alertmanager v4 webhook.
    pub webhook: Option<HttpConfig>,
    /// Slack incoming webhook.
    pub slack: Option<HttpConfig>,
    /// Syslog receiver: address, transport and write timeout.
    pub syslog: Option<(SocketAddr, Transport, Duration)>,
    /// Threshold rules, checked.
    pub rules: Vec<Rule>,
}

impl AlertConfig {
    /// Checks everything a running alerter would otherwise fail on later.
    pub fn settings(self) -> anyhow::Result<Settings> {
        let sinks = usize::from(self.log.as_deref().is_some_and(|l| !l.is_empty()))
            + usize::from(self.webhook.is_some())
            + usize::from(self.slack.is_some())
            + usize::from(self.syslog.is_some());
        if sinks == 0 {
            bail!("[alerts]: no sink configured (log, webhook, slack or syslog)");
        }
        for (what, h) in [("webhook", &self.webhook), ("slack", &self.slack)] {
            if let Some(h) = h {
                check_url(what, &h.url)?;
            }
        }
        if self.retry.attempts == 0 || self.retry.base_ms == 0 {
            bail!("[alerts.retry]: attempts and base_ms must be at least 1");
        }
        let syslog = self.syslog.as_ref().map(parse_syslog).transpose()?;
        let rules = self
            .rule
            .iter()
            .map(check_rule)
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.name == r.name) {
                bail!("[[alerts.rule]]: name {:?} used twice", r.name);
            }
        }
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("[alerts] state_dir {}", self.state_dir.display()))?;
        Ok(Settings {
            log: match self.log.as_deref() {
                None | Some("") => None,
                Some("-") => Some(LogTarget::Stdout),
                Some(p) => Some(LogTarget::File(p.into())),
            },
            state_dir: self.state_dir,
            poll: Duration::from_secs(self.poll_secs.max(1)),
            window_us: (self.window_secs.max(1) as i64).saturating_mul(1_000_000),
            lookback_secs: self.lookback_secs.clamp(1, u64::from(u32::MAX)) as u32,
            observer: self.observer.unwrap_or_else(host_name),
            external_url: self.external_url,
            queue_max: self.queue_max.max(1),
            retry: self.retry,
            webhook: self.webhook,
            slack: self.slack,
            syslog,
            rules,
        })
    }
}

fn check_url(what: &str, url: &str) -> anyhow::Result<()> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("[alerts.{what}] url {url:?}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(()),
        _ => bail!("[alerts.{what}] url {url:?}: need http:// or https:// and a host"),
    }
}

fn parse_syslog(s: &SyslogConfig) -> anyhow::Result<(SocketAddr, Transport, Duration)> {
    let addr: SocketAddr = s.address.parse().with_context(|| {
        format!(
            "[alerts.syslog] address {:?}: need IP:PORT, e.g. 192.0.2.50:514",
            s.address
        )
    })?;
    Ok((
        addr,
        s.transport,
        Duration::from_secs(s.timeout_secs.max(1)),
    ))
}

fn check_rule(r: &RuleConfig) -> anyhow::Result<Rule> {
    let ok_name = !r.name.is_empty()
        && r.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_name {
        bail!(
            "[[alerts.rule]] name {:?}: use letters, digits and underscores",
            r.name
        );
    }
    if r.sql.trim().is_empty() || !r.above.is_finite() {
        bail!("[[alerts.rule]] {}: needs sql and a finite `above`", r.name);
    }
    let severity = match r.severity.as_deref() {
        None => Severity::Warning,
        Some(s) => Severity::parse(s).with_context(|| {
            format!(
                "[[alerts.rule]] {}: severity {s:?}: info, warning or critical",
                r.name
            )
        })?,
    };
    Ok(Rule {
        name: r.name.clone(),
        sql: r.sql.trim().trim_end_matches(';').to_string(),
        above: r.above,
        every: Duration::from_secs(r.every_secs.max(1)),
        severity,
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rstwatch-collector".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> anyhow::Result<Settings> {
        let c: AlertConfig = toml::from_str(s)?;
        c.settings()
    }

    #[test]
    fn a_config_without_a_sink_or_with_a_bad_url_is_refused() {
        let dir = std::env::temp_dir().join(format!("rstwatch-alert-cfg-{}", std::process::id()));
        let d = dir.display();
        assert!(parse(&format!("state_dir = \"{d}\"")).is_err());
        let e = parse(&format!(
            "state_dir = \"{d}\"\n[webhook]\nurl = \"ftp://x\""
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains("http://"), "{e:#}");
        let e = parse(&format!(
            "state_dir = \"{d}\"\n[syslog]\naddress = \"host:514\""
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains("IP:PORT"), "{e:#}");
        let s = parse(&format!(
            "state_dir = \"{d}\"\nlog = \"-\"\n[[rule]]\nname = \"r1\"\nsql = \"SELECT 1\"\nabove = 3\n"
        ))
        .unwrap();
        assert_eq!(s.log, Some(LogTarget::Stdout));
        assert_eq!(s.rules[0].severity, Severity::Warning);
        assert!(toml::from_str::<AlertConfig>("state_dir = \"x\"\nbogus = 1").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_shipped_example_parses() {
        #[derive(serde::Deserialize)]
        struct File {
            alerts: AlertConfig,
        }
        let f: File = toml::from_str(include_str!("../../config/alerts.example.toml")).unwrap();
        assert_eq!(f.alerts.rule.len(), 1);
        assert!(f.alerts.webhook.is_some() && f.alerts.syslog.is_some());
        assert_eq!(f.alerts.retry.attempts, 6);
    }
}
