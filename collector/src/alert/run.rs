//! The alerter's thread: poll, decide, save, then let the sink workers deliver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::config::Settings;
use super::counters::{AlertCounters, Outcome};
use super::dedup::Decision;
use super::model::Notice;
use super::sink::{Deliverer, Sink};
use super::source::Source;
use super::state::State;
use crate::ch::ChConfig;
use crate::log::now_us;
use crate::metrics::Metrics;

/// State shared by the poller and the sink workers (never held across an await).
struct Shared {
    state: Mutex<State>,
    settings: Settings,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counters(&self) -> &AlertCounters {
        &self.metrics.alerts
    }

    /// Saves the state; a failure is counted and logged (the next save retries).
    fn save(&self, st: &State) -> bool {
        match st.save(&self.settings.state_dir) {
            Ok(()) => true,
            Err(e) => {
                self.counters()
                    .state_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::warn!("alerts: saving state: {e:#}");
                false
            }
        }
    }
}

/// Starts the alerter on its own thread and runtime: nothing it does (a hung webhook,
/// an fsync, a slow query) can hold up the ingest runtime. Fails at once on a state
/// file it cannot read.
pub fn spawn(settings: Settings, ch: ChConfig, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let mut state = match State::load(&settings.state_dir)? {
        Some(s) => s,
        // First start: alert on what arrived in the last lookback, then on all that is new.
        None => State {
            cursor: ((now_us() / 1_000_000) as u32).saturating_sub(settings.lookback_secs),
            ..State::default()
        },
    };
    let sinks = Sink::all(&settings)
        .into_iter()
        .map(|s| Deliverer::new(s, &settings))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Notices queued for a sink no longer configured would wait forever: say so, drop.
    let names: Vec<&str> = sinks.iter().map(|d| d.sink.name()).collect();
    for (sink, q) in &state.outbox {
        if !names.contains(&sink.as_str()) && !q.is_empty() {
            crate::warn!(
                "alerts: dropping {} undelivered notices of the removed sink {sink}",
                q.len()
            );
        }
    }
    state
        .outbox
        .retain(|sink, _| names.contains(&sink.as_str()));
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        settings,
        metrics,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || rt.block_on(run(shared, Source::new(&ch), sinks)))?;
    Ok(())
}

async fn run(shared: Arc<Shared>, source: Source, sinks: Vec<Deliverer>) {
    let mut wakers = Vec::new();
    for d in sinks {
        let wake = Arc::new(Notify::new());
        wakers.push((d.sink.name(), wake.clone()));
        tokio::spawn(deliver_loop(shared.clone(), d, wake));
    }
    let names: Vec<&'static str> = wakers.iter().map(|(n, _)| *n).collect();
    crate::info!(
        "alerts: sinks {names:?}, state in {}, {} threshold rules",
        shared.settings.state_dir.display(),
        shared.settings.rules.len()
    );
    let mut rules_due: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        poll_once(&shared, &source, &names, &mut rules_due).await;
        for (_, w) in &wakers {
            w.notify_one();
        }
        tokio::time::sleep(shared.settings.poll).await;
    }
}

/// One round: read new anomalies and due rules, decide, queue, save. A failed read
/// is counted and skips only its own part: rules still run while the anomaly poll
/// fails, and nothing expires while the poll cannot tell whether rows came in.
async fn poll_once(
    shared: &Shared,
    source: &Source,
    sinks: &[&'static str],
    rules_due: &mut BTreeMap<String, Instant>,
) {
    let t0 = now_us();
    let cursor = shared.lock().cursor;
    let rows = match source.anomalies_since(cursor).await {
        Ok(rows) => Some(rows),
        Err(e) => {
            source_error(shared, &e);
            None
        }
    };
    let evaluated = due_rules(shared, source, rules_due, t0).await;
    let s = &shared.settings;
    let mut st = shared.lock();
    let mut decisions: Vec<Decision> = Vec::new();
    if let Some(rows) = rows {
        for r in &rows {
            // Rows of one batch are all handled in the round that first sees it.
            if !st.handled.contains_key(&r.batch_key()) {
                st.open.observe(r.alert(), t0, s.window_us, &mut decisions);
            }
        }
        for r in &rows {
            st.handled.insert(r.batch_key(), r.received);
        }
        st.open.expire(t0, s.window_us, &mut decisions);
        st.advance(((t0 / 1_000_000) as u32).saturating_sub(s.lookback_secs));
    }
    for (rule, above) in evaluated {
        st.open.threshold(&rule, above, t0, &mut decisions);
    }
    enqueue(shared, &mut st, decisions, sinks, t0);
    shared
        .counters()
        .untracked
        .store(st.open.untracked, std::sync::atomic::Ordering::Relaxed);
    shared.save(&st);
}

/// Counts a failed read; logs the first few and then every 60th (a ClickHouse outage
/// must not write a line per poll).
fn source_error(shared: &Shared, e: &anyhow::Error) {
    let n = shared
        .counters()
        .source_errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    if n <= 3 || n.is_multiple_of(60) {
        crate::warn!("alerts: {e:#} ({n} failed reads so far)");
    }
}

/// Evaluates the rules that are due; a rule whose query fails is tried again next round.
async fn due_rules(
    shared: &Shared,
    source: &Source,
    rules_due: &mut BTreeMap<String, Instant>,
    t0: i64,
) -> Vec<(String, Vec<super::model::Alert>)> {
    let mut out = Vec::new();
    for rule in &shared.settings.rules {
        if rules_due
            .get(&rule.name)
            .is_some_and(|t| Instant::now() < *t)
        {
            continue;
        }
        match source.evaluate(rule, t0).await {
            Ok(above) => {
                out.push((rule.name.clone(), above));
                rules_due.insert(rule.name.clone(), Instant::now() + rule.every);
            }
            Err(e) => source_error(shared, &e),
        }
    }
    out
}

fn enqueue(
    shared: &Shared,
    st: &mut State,
    decisions: Vec<Decision>,
    sinks: &[&'static str],
    t0: i64,
) {
    let c = shared.counters();
    for (status, alert) in decisions {
        let n = Notice {
            seq: st.next_seq,
            status,
            alert,
            decided_us: t0,
        };
        st.next_seq += 1;
        c.decided(status.name());
        for sink in sinks {
            let q = st.outbox.entry(sink.to_string()).or_default();
            if q.len() >= shared.settings.queue_max {
                q.pop_front();
                c.count(Outcome::Dropped, sink);
            }
            q.push_back(n.clone());
        }
    }
    for sink in sinks {
        c.set_queued(sink, st.outbox.get(*sink).map_or(0, |q| q.len()));
    }
}

/// One sink's worker: takes the oldest notice, delivers it (with retries), removes it
/// and saves. Sinks do not wait for each other: a hung webhook delays only itself.
async fn deliver_loop(shared: Arc<Shared>, d: Deliverer, wake: Arc<Notify>) {
    let name = d.sink.name();
    loop {
        let next = shared
            .lock()
            .outbox
            .get(name)
            .and_then(|q| q.front().cloned());
        let Some(n) = next else {
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        };
        d.deliver(&n, shared.counters()).await;
        let mut st = shared.lock();
        if let Some(q) = st.outbox.get_mut(name) {
            if q.front().is_some_and(|f| f.seq == n.seq) {
                q.pop_front();
            }
            shared.counters().set_queued(name, q.len());
        }
        shared.save(&st);
    }
}
