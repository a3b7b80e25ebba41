//! Alerts end to end: a real ClickHouse 18.16, real collectors, anomalies shipped by
//! the real sensor shipper, and local receivers on loopback (an HTTP server that
//! records requests and can answer 500 or never answer, a UDP syslog socket).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{collector, gen_capture, sensor_bin, ship_args, start_clickhouse, tmp};
use rstwatch_collector::testing::{ClickHouse, Collector};
use rstwatch_schema::{Anomaly, AnomalyKind, Dir, IpBytes, RstClass, RstEvent};
use rstwatch_sensor::ship::ShipSink;
use rstwatch_sensor::Sink;
use serde_json::Value;

// ---------- a recording HTTP receiver ----------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Answer200,
    Answer500,
    /// Reads the request and never answers.
    Hang,
}

#[derive(Debug, Clone)]
struct Req {
    at: Instant,
    /// 0 when never answered.
    status: u16,
    body: Value,
}

struct Receiver {
    port: u16,
    reqs: Arc<Mutex<Vec<Req>>>,
    fail_next: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Receiver {
            port: l.local_addr().unwrap().port(),
            reqs: Default::default(),
            fail_next: Default::default(),
            mode: Arc::new(Mutex::new(mode)),
        };
        let (reqs, fail, mode) = (r.reqs.clone(), r.fail_next.clone(), r.mode.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (reqs, fail, mode) = (reqs.clone(), fail.clone(), mode.clone());
                std::thread::spawn(move || serve_conn(s, reqs, fail, mode));
            }
        });
        r
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn all(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }

    /// Bodies answered 200.
    fn delivered(&self) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
            .collect()
    }
}

/// Reads requests from one keep-alive connection and answers each by the mode.
fn serve_conn(
    mut s: TcpStream,
    reqs: Arc<Mutex<Vec<Req>>>,
    fail: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
        buf.drain(..head_end + len);
        let m = *mode.lock().unwrap();
        let status = if m == Mode::Hang {
            0
        } else if fail
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
            || m == Mode::Answer500
        {
            500
        } else {
            200
        };
        reqs.lock().unwrap().push(Req {
            at: Instant::now(),
            status,
            body,
        });
        if status == 0 {
            // Hold the connection open and say nothing, like a wedged receiver.
            std::thread::sleep(Duration::from_secs(3600));
            return;
        }
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let resp = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n");
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A syslog receiver on a loopback UDP socket.
fn syslog_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<String>>> = Default::default();
    let g = got.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 65536];
        while let Ok(n) = s.recv(&mut b) {
            g.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&b[..n]).into_owned());
        }
    });
    (port, got)
}

// ---------- helpers ----------

fn now_us() -> i64 {
    rstwatch_collector::log::now_us()
}

/// Waits for `ok`; on timeout fails with the collector's log.
fn wait_until(col: &Collector, what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out after {limit:?} waiting for {what}; collector log:\n{}",
        col.log_text()
    );
}

fn anomaly(kind: AnomalyKind, subject: &str, ts_us: i64, value: f64) -> Anomaly {
    Anomaly {
        ts_us,
        kind,
        subject: subject.into(),
        value,
        baseline: 25.0,
        detail: format!("{subject}: {value} (test)"),
    }
}

static SPOOLS: AtomicUsize = AtomicUsize::new(0);

/// Ships anomalies (and RSTs) as a sensor does and waits for every ack.
fn ship(col: &Collector, dir: &Path, sensor: &str, anomalies: &[Anomaly], rsts: &[RstEvent]) {
    let spool = dir.join(format!("spool-{}", SPOOLS.fetch_add(1, SeqCst)));
    let mut sink = ShipSink::start(&ship_args(&col.addr(), &spool, sensor)).unwrap();
    for a in anomalies {
        sink.anomaly(a.clone());
    }
    for e in rsts {
        sink.rst(e.clone());
    }
    let r = sink.finish().unwrap();
    assert_eq!(r.events_acked, (anomalies.len() + rsts.len()) as u64);
}

/// `[alerts]` config; `sinks` is TOML for the sink sections.
fn config(dir: &Path, alerts: &str, sinks: &str) -> PathBuf {
    let p = dir.join("collector.toml");
    let text = format!(
        "[alerts]\nstate_dir = \"{}\"\nlog = \"{}\"\npoll_secs = 1\n{alerts}\n{sinks}\n",
        dir.join("alert-state").display(),
        ecs_path(dir).display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn ecs_path(dir: &Path) -> PathBuf {
    dir.join("alerts.ecs.jsonl")
}

fn ecs_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(ecs_path(dir))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn alerting(ch: &ClickHouse, dir: &Path, name: &str, cfg: &Path) -> Collector {
    collector(ch, dir, name, &["--config", cfg.to_str().unwrap()])
}

fn metric(col: &Collector, name: &str, sink: &str) -> u64 {
    col.metric(&format!("{name}{{sink=\"{sink}\"}}"))
}

// ---------- the tests ----------

/// Every sink gets each alert once, with its fields; a second row of the same scan in
/// the window joins the first; each alert resolves after the window; the webhook's
/// 500s are retried with growing delays.
#[test]
fn anomalies_reach_every_sink_once_then_resolve_and_500s_are_retried() {
    let Some(ch) = start_clickhouse("anomalies_reach_every_sink") else {
        return;
    };
    let dir = tmp("alerts-sinks");
    let am = Receiver::start(Mode::Answer200);
    am.fail_next.store(2, SeqCst);
    let slack = Receiver::start(Mode::Answer200);
    let (syslog_port, syslog) = syslog_receiver();
    let cfg = config(
        dir.path(),
        "window_secs = 4\nexternal_url = \"http://127.0.0.1:8080\"\n\
         [alerts.retry]\nattempts = 5\nbase_ms = 300\nmax_ms = 5000",
        &format!(
            "[alerts.webhook]\nurl = \"{}\"\n[alerts.slack]\nurl = \"{}\"\n[alerts.syslog]\naddress = \"127.0.0.1:{syslog_port}\"\n",
            am.url(),
            slack.url()
        ),
    );
    let col = alerting(&ch, dir.path(), "sinks", &cfg);
    let t = now_us() - 5_000_000;
    ship(
        &col,
        dir.path(),
        "edge-a",
        &[
            anomaly(AnomalyKind::Scan, "203.0.113.9", t, 25.0),
            anomaly(AnomalyKind::Injection, "192.0.2.10:443", t + 1_000, 3.0),
            // Same scan, 2 s later in packet time: inside the window, joins the first.
            anomaly(AnomalyKind::Scan, "203.0.113.9", t + 2_000_000, 31.0),
        ],
        &[],
    );
    wait_until(
        &col,
        "2 firing + 2 resolved webhooks",
        Duration::from_secs(60),
        || am.delivered().len() >= 4,
    );
    std::thread::sleep(Duration::from_secs(3));
    let all = am.all();
    assert_eq!(all.len(), 6, "2 answered 500 + 4 delivered: {all:#?}");
    assert_eq!(
        (all[0].status, all[1].status, all[2].status),
        (500, 500, 200)
    );
    // The same notice three times, 150..300 ms then 300..600 ms apart (backoff, jitter).
    assert_eq!(all[0].body, all[2].body);
    let gap1 = all[1].at - all[0].at;
    let gap2 = all[2].at - all[1].at;
    assert!(gap1 >= Duration::from_millis(150), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(300), "{gap2:?}");
    assert!(gap2 < Duration::from_secs(3), "{gap2:?}");
    let got = am.delivered();
    let status: Vec<&str> = got.iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["firing", "firing", "resolved", "resolved"]);
    check_alertmanager(&got);
    check_ecs(dir.path());
    check_cef(&syslog.lock().unwrap());
    let texts: Vec<String> = slack
        .delivered()
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("[FIRING] scan 203.0.113.9 on edge-a")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("[RESOLVED] injection 192.0.2.10:443")),
        "{texts:?}"
    );
    let m = "rstwatch_collector_alerts_";
    assert_eq!(metric(&col, &format!("{m}retries_total"), "webhook"), 2);
    assert_eq!(metric(&col, &format!("{m}sent_total"), "webhook"), 4);
    assert_eq!(metric(&col, &format!("{m}sent_total"), "syslog"), 4);
    assert_eq!(metric(&col, &format!("{m}failed_total"), "webhook"), 0);
}

/// The Alertmanager v4 payloads, field by field.
fn check_alertmanager(got: &[Value]) {
    let inj = got
        .iter()
        .find(|b| b["status"] == "firing" && b["commonLabels"]["alertname"] == "rstwatch_injection")
        .expect("a firing injection alert");
    assert_eq!(inj["version"], "4");
    assert_eq!(inj["receiver"], "rstwatch");
    assert_eq!(inj["groupKey"], "{}:{alertname=\"rstwatch_injection\"}");
    assert_eq!(
        inj["groupLabels"],
        serde_json::json!({"alertname": "rstwatch_injection"})
    );
    assert_eq!(inj["externalURL"], "http://127.0.0.1:8080");
    assert_eq!(inj["truncatedAlerts"], 0);
    let a = &inj["alerts"][0];
    assert_eq!(inj["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["sensor"], "edge-a");
    assert_eq!(a["labels"]["subject"], "192.0.2.10:443");
    assert_eq!(a["labels"], inj["commonLabels"]);
    assert_eq!(a["annotations"]["description"], "192.0.2.10:443: 3 (test)");
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        rstwatch_schema::timefmt::parse_rfc3339_micros(a["startsAt"].as_str().unwrap()).is_some()
    );
    assert_eq!(a["generatorURL"], "http://127.0.0.1:8080");
    let fp = a["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 16);
    let resolved = got
        .iter()
        .find(|b| b["status"] == "resolved" && b["alerts"][0]["fingerprint"] == fp)
        .expect("the injection alert resolved");
    assert_eq!(resolved["alerts"][0]["startsAt"], a["startsAt"]);
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    // The scan's two rows made one alert whose end is the second row's packet time.
    let scan = got
        .iter()
        .find(|b| b["status"] == "resolved" && b["commonLabels"]["alertname"] == "rstwatch_scan")
        .unwrap();
    let s = &scan["alerts"][0];
    let starts =
        rstwatch_schema::timefmt::parse_rfc3339_micros(s["startsAt"].as_str().unwrap()).unwrap();
    let ends =
        rstwatch_schema::timefmt::parse_rfc3339_micros(s["endsAt"].as_str().unwrap()).unwrap();
    assert_eq!(ends - starts, 2_000_000);
    assert_eq!(s["annotations"]["rows"], "2");
    assert_eq!(s["annotations"]["value"], "31");
}

/// The ECS lines: four, with the fields SIEMs map.
fn check_ecs(dir: &Path) {
    let lines = ecs_lines(dir);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let scan = lines
        .iter()
        .find(|l| l["rule"]["name"] == "scan" && l["event"]["action"] == "firing")
        .unwrap();
    assert_eq!(scan["event"]["kind"], "alert");
    assert_eq!(
        scan["event"]["category"],
        serde_json::json!(["network", "intrusion_detection"])
    );
    assert_eq!(scan["source"]["ip"], "203.0.113.9");
    assert!(scan.get("destination").is_none());
    assert_eq!(scan["observer"]["name"], "edge-a");
    assert_eq!(scan["network"]["transport"], "tcp");
    assert_eq!(scan["rstwatch"]["subject"], "203.0.113.9");
    assert_eq!(scan["rstwatch"]["rows"], 1);
    assert!(scan["@timestamp"].is_string());
    let inj = lines
        .iter()
        .find(|l| l["rule"]["name"] == "injection" && l["event"]["action"] == "resolved")
        .unwrap();
    assert_eq!(inj["destination"]["ip"], "192.0.2.10");
    assert_eq!(inj["destination"]["port"], 443);
    assert!(inj["event"]["end"].is_string());
    assert_eq!(inj["rstwatch"]["severity"], "critical");
}

/// The syslog datagrams: RFC 5424 header, then the CEF line.
fn check_cef(got: &[String]) {
    assert_eq!(got.len(), 4, "{got:#?}");
    let scan = got
        .iter()
        .find(|l| l.contains("|rstwatch_scan|scan firing|"))
        .expect("a scan CEF line");
    assert!(scan.starts_with("<165>1 "), "{scan}");
    let cef = &scan[scan.find("CEF:0|").expect("CEF")..];
    let fields: Vec<&str> = cef.splitn(8, '|').collect();
    assert_eq!(fields[..3], ["CEF:0", "rstwatch", "rstwatch"]);
    assert_eq!(fields[6], "3");
    let ext = fields[7];
    for kv in [
        "src=203.0.113.9",
        "act=firing",
        "dvchost=edge-a",
        "proto=TCP",
        "cs1=203.0.113.9",
    ] {
        assert!(ext.split(' ').any(|f| f == kv), "{kv} in {ext}");
    }
    // `=` in a value is escaped.
    assert!(ext.contains("msg=203.0.113.9: 25 (test)"), "{ext}");
    let inj = got
        .iter()
        .find(|l| l.contains("|rstwatch_injection|injection resolved|9|"))
        .unwrap();
    assert!(inj.starts_with("<162>1 "), "{inj}");
    assert!(inj.contains(" dst=192.0.2.10 dpt=443 "), "{inj}");
}

fn fingerprints(bodies: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = bodies
        .iter()
        .map(|b| b["alerts"][0]["fingerprint"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn scans(sensor_ts: i64, from: u8, n: u8) -> Vec<Anomaly> {
    (from..from + n)
        .map(|i| {
            anomaly(
                AnomalyKind::Scan,
                &format!("203.0.113.{i}"),
                sensor_ts,
                25.0,
            )
        })
        .collect()
}

/// Kill -9 the alerting collector with a notice still undelivered (the webhook
/// answers 500), let another collector store anomalies while it is down, start it
/// again with the same state directory: every alert arrives, none twice.
#[test]
fn nothing_is_lost_or_repeated_across_a_collector_restart() {
    let Some(ch) = start_clickhouse("nothing_is_lost_or_repeated") else {
        return;
    };
    let dir = tmp("alerts-restart");
    let am = Receiver::start(Mode::Answer200);
    let cfg = config(
        dir.path(),
        "window_secs = 3600\n[alerts.retry]\nattempts = 1000\nbase_ms = 100\nmax_ms = 300",
        &format!("[alerts.webhook]\nurl = \"{}\"\n", am.url()),
    );
    let mut col = alerting(&ch, dir.path(), "restart", &cfg);
    let t = now_us() - 5_000_000;
    // 1: delivered while the collector runs.
    ship(&col, dir.path(), "edge-r", &scans(t, 1, 2), &[]);
    wait_until(&col, "2 alerts", Duration::from_secs(30), || {
        am.delivered().len() == 2
    });
    // 2: decided, but the receiver fails: still in the outbox at the kill.
    am.set_mode(Mode::Answer500);
    ship(&col, dir.path(), "edge-r", &scans(t, 3, 2), &[]);
    wait_until(&col, "failed attempts", Duration::from_secs(30), || {
        am.all().iter().filter(|r| r.status == 500).count() >= 2
    });
    col.kill9();
    am.set_mode(Mode::Answer200);
    // 3: stored by another collector while the alerting one is down.
    let other = collector(&ch, dir.path(), "other", &[]);
    ship(&other, dir.path(), "edge-r", &scans(t, 5, 2), &[]);
    drop(other);
    // Nothing was sent for 3 while no alerter ran.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(am.delivered().len(), 2);
    col.restart().unwrap();
    wait_until(&col, "6 alerts", Duration::from_secs(30), || {
        am.delivered().len() >= 6
    });
    // 4: after the restart.
    ship(&col, dir.path(), "edge-r", &scans(t, 7, 1), &[]);
    wait_until(&col, "7 alerts", Duration::from_secs(30), || {
        am.delivered().len() >= 7
    });
    std::thread::sleep(Duration::from_secs(4)); // a few more polls: nothing repeats
    let got = am.delivered();
    assert_eq!(got.len(), 7, "{got:#?}");
    let mut fps = fingerprints(&got);
    fps.dedup();
    assert_eq!(fps.len(), 7, "each subject exactly once");
    let subjects: std::collections::BTreeSet<String> = got
        .iter()
        .map(|b| b["commonLabels"]["subject"].as_str().unwrap().to_string())
        .collect();
    let want: std::collections::BTreeSet<String> =
        (1..=7).map(|i| format!("203.0.113.{i}")).collect();
    assert_eq!(subjects, want);
    assert!(got.iter().all(|b| b["status"] == "firing"));
}

/// A webhook that accepts and never answers: batches keep being acknowledged at
/// full speed, the other sink keeps getting its lines, the webhook's worker waits
/// only for itself.
#[test]
fn a_hanging_webhook_does_not_slow_ingestion() {
    let Some(ch) = start_clickhouse("a_hanging_webhook") else {
        return;
    };
    let dir = tmp("alerts-hang");
    let am = Receiver::start(Mode::Hang);
    let cfg = config(
        dir.path(),
        "window_secs = 3600\n[alerts.retry]\nattempts = 3\nbase_ms = 100",
        &format!(
            "[alerts.webhook]\nurl = \"{}\"\ntimeout_secs = 600\n",
            am.url()
        ),
    );
    let col = alerting(&ch, dir.path(), "hang", &cfg);
    let t = now_us() - 5_000_000;
    let rsts: Vec<RstEvent> = (0..2_000).map(|i| rst(t + i, 443)).collect();
    ship(&col, dir.path(), "edge-h", &scans(t, 1, 1), &rsts);
    wait_until(
        &col,
        "the webhook holding a request",
        Duration::from_secs(30),
        || !am.all().is_empty(),
    );
    let started = Instant::now();
    for round in 0..10u8 {
        let t0 = Instant::now();
        ship(&col, dir.path(), "edge-h", &scans(t, 10 + round, 1), &rsts);
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "round {round}: {:?} to ship 2001 events",
            t0.elapsed()
        );
    }
    let took = started.elapsed();
    assert_eq!(common::rows(&ch, "rst_events"), 11 * 2_000);
    wait_until(&col, "11 ECS lines", Duration::from_secs(30), || {
        ecs_lines(dir.path()).len() == 11
    });
    // Still one request, unanswered; nothing counted as sent or failed yet.
    assert_eq!(am.all().len(), 1);
    assert_eq!(am.all()[0].status, 0);
    assert_eq!(
        metric(&col, "rstwatch_collector_alerts_sent_total", "webhook"),
        0
    );
    assert_eq!(
        metric(&col, "rstwatch_collector_alerts_sent_total", "log"),
        11
    );
    assert_eq!(
        metric(&col, "rstwatch_collector_alerts_queued", "webhook"),
        11
    );
    // The same rounds through a collector without alerts, for comparison (its rows
    // feed the alerter too, so this comes after the counts above).
    let plain = collector(&ch, dir.path(), "plain", &[]);
    let t_plain = Instant::now();
    for round in 0..10u8 {
        ship(
            &plain,
            dir.path(),
            "edge-p",
            &scans(t, 10 + round, 1),
            &rsts,
        );
    }
    let plain_took = t_plain.elapsed();
    drop(plain);
    println!(
        "10 rounds of 2001 events: {took:?} with a hung webhook, {plain_took:?} without alerts"
    );
}

fn rst(ts_us: i64, port: u16) -> RstEvent {
    let mut e = RstEvent::new(
        ts_us,
        (IpBytes::from_v4([192, 0, 2, 10]), port),
        (
            IpBytes::from_v4([198, 51, 100, 7]),
            40_000 + (ts_us % 20_000) as u16,
        ),
        Dir::Resp,
        RstClass::Abort,
    );
    e.flow_uid = ts_us as u64;
    e
}

/// A threshold rule on a query: fires for the service above the line only, once,
/// and resolves when its rate drops.
#[test]
fn a_threshold_rule_fires_per_service_and_resolves_when_the_rate_drops() {
    let Some(ch) = start_clickhouse("a_threshold_rule") else {
        return;
    };
    let dir = tmp("alerts-rule");
    let rule = "[[alerts.rule]]\nname = \"service_resets\"\nevery_secs = 1\nabove = 20\nseverity = \"critical\"\n\
        sql = \"SELECT toString(sport) AS subject, count() AS value FROM {{DB}}.rst_events \
        WHERE ts >= now() - 6 GROUP BY sport\"\n";
    // Syslog over TCP too: one newline-framed line per notice.
    let syslog = TcpListener::bind("127.0.0.1:0").unwrap();
    let syslog_port = syslog.local_addr().unwrap().port();
    let tcp_lines: Arc<Mutex<Vec<String>>> = Default::default();
    let got = tcp_lines.clone();
    std::thread::spawn(move || {
        for mut s in syslog.incoming().flatten() {
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            got.lock().unwrap().extend(text.lines().map(String::from));
        }
    });
    let sinks = format!(
        "{rule}[alerts.syslog]\naddress = \"127.0.0.1:{syslog_port}\"\ntransport = \"tcp\"\n"
    );
    let cfg = config(dir.path(), "window_secs = 3600", &sinks);
    let col = alerting(&ch, dir.path(), "rule", &cfg);
    let t = now_us();
    let mut rsts: Vec<RstEvent> = (0..50).map(|i| rst(t + i, 443)).collect();
    rsts.extend((0..5).map(|i| rst(t + 100 + i, 80)));
    ship(&col, dir.path(), "edge-t", &[], &rsts);
    wait_until(&col, "firing", Duration::from_secs(20), || {
        !ecs_lines(dir.path()).is_empty()
    });
    wait_until(&col, "resolved", Duration::from_secs(30), || {
        ecs_lines(dir.path()).len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let lines = ecs_lines(dir.path());
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let (f, r) = (&lines[0], &lines[1]);
    assert_eq!(f["event"]["action"], "firing");
    assert_eq!(r["event"]["action"], "resolved");
    for l in [f, r] {
        assert_eq!(l["rule"]["name"], "service_resets");
        assert_eq!(l["rule"]["category"], "threshold");
        assert_eq!(l["rstwatch"]["subject"], "443");
        assert_eq!(l["rstwatch"]["severity"], "critical");
    }
    assert_eq!(f["rstwatch"]["value"], 50.0);
    assert_eq!(f["rstwatch"]["baseline"], 20.0);
    let tcp = tcp_lines.lock().unwrap().clone();
    assert_eq!(tcp.len(), 2, "{tcp:#?}");
    assert!(
        tcp[0].contains("|rstwatch_rule_service_resets|service_resets firing|9|"),
        "{}",
        tcp[0]
    );
    assert!(tcp[1].contains(" act=resolved "), "{}", tcp[1]);
    assert!(tcp[0].contains(" cs1=443 "), "{}", tcp[0]);
}

/// (kind, subject) of every anomaly `replay` prints for a file.
fn replayed_anomalies(sensor: &Path, pcap: &Path) -> Vec<(String, String)> {
    let out = std::process::Command::new(sensor)
        .args(["replay", "--no-progress"])
        .arg(pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "anomaly")
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_string(),
                v["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `gen` scenarios (scan, storm, injection) replayed and shipped by the real sensor:
/// one firing alert per (kind, subject) the sensor reported, with the scanner as
/// `source.ip` and a service as `destination.ip`/`destination.port`.
#[test]
fn gen_scenarios_replayed_and_shipped_alert_once_per_anomaly() {
    let Some(ch) = start_clickhouse("gen_scenarios_alert") else {
        return;
    };
    let Some(sensor) = sensor_bin() else {
        println!("SKIP gen_scenarios_alert: the rstwatch-sensor binary is missing (cargo build --workspace)");
        return;
    };
    let dir = tmp("alerts-gen");
    let cfg = config(dir.path(), "window_secs = 3600", "");
    let col = alerting(&ch, dir.path(), "gen", &cfg);
    let mut want = std::collections::BTreeSet::new();
    for scenario in ["scan", "storm", "injection"] {
        let pcap = dir.path().join(format!("{scenario}.pcap"));
        gen_capture(&sensor, scenario, &pcap);
        let found = replayed_anomalies(&sensor, &pcap);
        assert!(
            !found.is_empty(),
            "{scenario}: the scenario raises anomalies"
        );
        want.extend(found);
        let st = std::process::Command::new(&sensor)
            .args(["replay", "--no-progress"])
            .arg(&pcap)
            .args([
                "--ship",
                &col.addr(),
                "--plaintext",
                "--token",
                common::TOKEN,
            ])
            .args(["--sensor-id", "gen-edge", "--spool-dir"])
            .arg(dir.path().join(format!("spool-{scenario}")))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    wait_until(
        &col,
        "one alert per anomaly key",
        Duration::from_secs(30),
        || ecs_lines(dir.path()).len() >= want.len(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let lines = ecs_lines(dir.path());
    let got: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["rule"]["name"].as_str().unwrap().to_string(),
                l["rstwatch"]["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "one line per key: {got:?} vs {want:?}"
    );
    assert_eq!(
        got.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        want
    );
    for l in &lines {
        assert_eq!(l["event"]["action"], "firing");
        assert_eq!(l["observer"]["name"], "gen-edge");
        let subject = l["rstwatch"]["subject"].as_str().unwrap();
        match l["rule"]["name"].as_str().unwrap() {
            "scan" => assert_eq!(l["source"]["ip"], subject),
            // Zeek's per-endpoint storm names the RST sender; a service storm, the service.
            "rst_storm" if subject.parse::<std::net::IpAddr>().is_ok() => {
                assert_eq!(l["source"]["ip"], subject)
            }
            "injection" => {
                let sa: std::net::SocketAddr = subject.parse().unwrap();
                assert_eq!(l["destination"]["ip"], sa.ip().to_string());
                assert_eq!(l["destination"]["port"], sa.port());
            }
            _ => {}
        }
    }
    println!(
        "{} alerts from {} anomaly keys: {want:?}",
        lines.len(),
        want.len()
    );
}

/// The alerter's SQL on current ClickHouse (chdb): the anomaly poll joins each
/// committed batch once and skips old and uncommitted ones; the shipped example rule
/// runs as the alerter wraps it.
#[test]
fn the_alert_queries_run_on_current_clickhouse() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import chdb"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("SKIP the_alert_queries_run_on_current_clickhouse: python3 with chdb-core is not installed");
        return;
    }
    #[derive(serde::Deserialize)]
    struct Example {
        alerts: Alerts,
    }
    #[derive(serde::Deserialize)]
    struct Alerts {
        rule: Vec<toml::Value>,
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example: Example =
        toml::from_str(&std::fs::read_to_string(here.join("config/alerts.example.toml")).unwrap())
            .unwrap();
    let rule = example.alerts.rule[0]["sql"].as_str().unwrap().to_string();
    let out = std::process::Command::new("python3")
        .arg(here.join("tests/alerts_chdb.py"))
        .arg(common::COLLECTOR)
        // u32::MAX stands for the cursor; the script puts a real one in.
        .arg(rstwatch_collector::alert::poll_sql(u32::MAX))
        .arg(rstwatch_collector::alert::rule_sql("rstwatch", &rule, 0.0))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("poll ok:") && text.contains("rule ok:"),
        "{text}"
    );
}
