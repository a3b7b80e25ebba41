//! The wire shapes of a notice: ECS JSON line, Alertmanager v4 webhook payload, Slack
//! incoming-webhook message, syslog line with CEF. Pure functions, no I/O.

use serde_json::{json, Map, Value};

use super::model::{Notice, Status};
use rstwatch_schema::timefmt::rfc3339_micros;

/// Context every format needs besides the notice.
pub(super) struct Context<'a> {
    /// `observer.name` when the alert has no sensor (threshold rules).
    pub observer: &'a str,
    pub external_url: &'a str,
    /// Alertmanager `receiver`.
    pub receiver: &'a str,
}

/// ECS version the line follows.
const ECS_VERSION: &str = "8.11.0";
/// Alertmanager's "not ended" time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn observer<'a>(n: &'a Notice, cx: &'a Context) -> &'a str {
    if n.alert.sensor_id.is_empty() {
        cx.observer
    } else {
        &n.alert.sensor_id
    }
}

/// One line a human reads: `[FIRING] scan 203.0.113.9 on edge-1: ...`.
pub(super) fn summary(n: &Notice, cx: &Context) -> String {
    let a = &n.alert;
    format!(
        "[{}] {} {} on {}: {} (value {}, baseline {}, {} rows, since {})",
        n.status.name().to_uppercase(),
        a.rule,
        a.subject,
        observer(n, cx),
        a.detail,
        a.value,
        a.baseline,
        a.rows,
        rfc3339_micros(a.starts_us)
    )
}

/// An ECS-shaped JSON object (one line of the alert log).
pub(super) fn ecs(n: &Notice, cx: &Context) -> Value {
    let a = &n.alert;
    let ep = a.endpoints();
    let mut v = json!({
        "@timestamp": rfc3339_micros(n.decided_us),
        "ecs": {"version": ECS_VERSION},
        "message": summary(n, cx),
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "action": n.status.name(),
            "id": format!("{}-{}", a.fingerprint(), a.starts_us),
            "severity": a.severity.cef(),
            "start": rfc3339_micros(a.starts_us),
            "dataset": "rstwatch.alert",
        },
        "rule": {"name": a.rule, "category": a.origin.name()},
        "observer": {"name": observer(n, cx), "product": "rstwatch", "vendor": "rstwatch"},
        "network": {"transport": "tcp"},
        "rstwatch": {
            "status": n.status.name(),
            "origin": a.origin.name(),
            "sensor_id": a.sensor_id,
            "subject": a.subject,
            "value": a.value,
            "baseline": a.baseline,
            "detail": a.detail,
            "rows": a.rows,
            "severity": a.severity.name(),
            "fingerprint": a.fingerprint(),
            "notice_seq": n.seq,
        },
    });
    if n.status == Status::Resolved {
        v["event"]["end"] = json!(rfc3339_micros(a.last_us));
    }
    if let Some(ip) = ep.source {
        v["source"] = json!({"ip": ip.to_string()});
    }
    if let Some(ip) = ep.destination {
        v["destination"] = json!({"ip": ip.to_string()});
        if let Some(p) = ep.destination_port {
            v["destination"]["port"] = json!(p);
        }
    }
    v
}

fn labels(n: &Notice) -> Map<String, Value> {
    let a = &n.alert;
    let mut m = Map::new();
    m.insert("alertname".into(), json!(a.alertname()));
    m.insert("severity".into(), json!(a.severity.name()));
    m.insert("subject".into(), json!(a.subject));
    if !a.sensor_id.is_empty() {
        m.insert("sensor".into(), json!(a.sensor_id));
    }
    m.insert("origin".into(), json!(a.origin.name()));
    m
}

/// The Alertmanager v4 webhook payload, one alert per message.
pub(super) fn alertmanager(n: &Notice, cx: &Context) -> Value {
    let a = &n.alert;
    let labels = labels(n);
    let annotations = json!({
        "summary": summary(n, cx),
        "description": a.detail,
        "value": a.value.to_string(),
        "baseline": a.baseline.to_string(),
        "rows": a.rows.to_string(),
    });
    let ends = match n.status {
        Status::Firing => ZERO_TIME.to_string(),
        Status::Resolved => rfc3339_micros(a.last_us),
    };
    let alertname = a.alertname();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": n.status.name(),
        "receiver": cx.receiver,
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": cx.external_url,
        "alerts": [{
            "status": n.status.name(),
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339_micros(a.starts_us),
            "endsAt": ends,
            "generatorURL": cx.external_url,
            "fingerprint": a.fingerprint(),
        }],
    })
}

/// A Slack incoming-webhook message.
pub(super) fn slack(n: &Notice, cx: &Context) -> Value {
    let icon = match n.status {
        Status::Firing => ":rotating_light:",
        Status::Resolved => ":white_check_mark:",
    };
    json!({"text": format!("{icon} {}", summary(n, cx))})
}

/// CEF header field escaping: backslash and pipe (CEF spec, "Header").
pub fn cef_escape_header(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '|' => o.push_str("\\|"),
            '\r' | '\n' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// CEF extension value escaping: backslash, equals sign, and line breaks as `\n`/`\r`.
pub fn cef_escape_ext(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '=' => o.push_str("\\="),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}

/// `CEF:0|rstwatch|rstwatch|VERSION|signature|name|severity|extension`.
pub(super) fn cef(n: &Notice, cx: &Context) -> String {
    let a = &n.alert;
    let ep = a.endpoints();
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", (n.decided_us / 1000).to_string()),
        ("act", n.status.name().into()),
        ("start", (a.starts_us / 1000).to_string()),
    ];
    if n.status == Status::Resolved {
        ext.push(("end", (a.last_us / 1000).to_string()));
    }
    if let Some(ip) = ep.source {
        ext.push(("src", ip.to_string()));
    }
    if let Some(ip) = ep.destination {
        ext.push(("dst", ip.to_string()));
    }
    if let Some(p) = ep.destination_port {
        ext.push(("dpt", p.to_string()));
    }
    ext.extend([
        ("proto", "TCP".to_string()),
        ("dvchost", observer(n, cx).to_string()),
        ("cnt", a.rows.to_string()),
        ("cs1Label", "subject".into()),
        ("cs1", a.subject.clone()),
        ("cs2Label", "fingerprint".into()),
        ("cs2", a.fingerprint()),
        ("cfp1Label", "value".into()),
        ("cfp1", a.value.to_string()),
        ("msg", a.detail.clone()),
    ]);
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_escape_ext(&v)))
        .collect();
    format!(
        "CEF:0|rstwatch|rstwatch|{}|{}|{}|{}|{}",
        cef_escape_header(env!("CARGO_PKG_VERSION")),
        cef_escape_header(&a.alertname()),
        cef_escape_header(&format!("{} {}", a.rule, n.status.name())),
        a.severity.cef(),
        ext.join(" ")
    )
}

/// RFC 5424 syslog line carrying the CEF message (facility local4, severity from the
/// alert: critical → crit, warning → warning, info → notice).
pub(super) fn syslog_line(n: &Notice, cx: &Context) -> String {
    let sev = match n.alert.severity {
        super::model::Severity::Critical => 2,
        super::model::Severity::Warning => 4,
        super::model::Severity::Info => 5,
    };
    let pri = 20 * 8 + sev;
    let host: String = cx
        .observer
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    format!(
        "<{pri}>1 {} {} rstwatch-collector - alert - {}",
        rfc3339_micros(n.decided_us),
        if host.is_empty() { "-" } else { &host },
        cef(n, cx)
    )
}

#[cfg(test)]
mod tests {
    use super::super::model::{Alert, Origin, Severity};
    use super::*;

    fn notice(status: Status) -> Notice {
        Notice {
            seq: 7,
            status,
            decided_us: 1_763_700_100_000_000,
            alert: Alert {
                origin: Origin::Anomaly,
                rule: "injection".into(),
                sensor_id: "edge-1".into(),
                subject: "192.0.2.10:443".into(),
                severity: Severity::Critical,
                starts_us: 1_763_700_000_000_000,
                last_us: 1_763_700_060_000_000,
                value: 3.0,
                baseline: 3.0,
                detail: "3 suspect (forged) RSTs a=b|c\\d\nx".into(),
                rows: 2,
            },
        }
    }

    const CX: Context = Context {
        observer: "col-1",
        external_url: "http://127.0.0.1:8080",
        receiver: "rstwatch",
    };

    #[test]
    fn cef_escapes_per_the_spec() {
        assert_eq!(cef_escape_header("a|b\\c"), "a\\|b\\\\c");
        assert_eq!(cef_escape_ext("a=b\\c\nd\re|f"), "a\\=b\\\\c\\nd\\re|f");
        let line = cef(&notice(Status::Resolved), &CX);
        assert!(line.starts_with("CEF:0|rstwatch|rstwatch|"), "{line}");
        assert!(
            line.contains("|rstwatch_injection|injection resolved|9|"),
            "{line}"
        );
        assert!(line.contains(" dst=192.0.2.10 dpt=443 "), "{line}");
        assert!(
            line.contains("msg=3 suspect (forged) RSTs a\\=b|c\\\\d\\nx"),
            "{line}"
        );
        assert!(line.contains(" end=1763700060000 "), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn alertmanager_resolved_has_ends_at_and_firing_the_zero_time() {
        let f = alertmanager(&notice(Status::Firing), &CX);
        assert_eq!(f["alerts"][0]["endsAt"], ZERO_TIME);
        let r = alertmanager(&notice(Status::Resolved), &CX);
        assert_eq!(r["status"], "resolved");
        assert_eq!(r["alerts"][0]["endsAt"], "2025-11-21T04:41:00.000000Z");
        assert_eq!(r["alerts"][0]["fingerprint"], f["alerts"][0]["fingerprint"]);
    }
}
