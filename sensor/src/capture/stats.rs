//! Capture statistics: written by the capture and worker threads a few times a second
//! (never per packet), read by the stats line and the Prometheus endpoint.

use rstwatch_schema::prometheus::{sanitize_name, Exposition, MetricType};
use rstwatch_xdp::{ProgCounters, XskStats};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared between the threads of one capture.
pub struct Shared {
    iface: String,
    mode: &'static str,
    queues: Vec<u32>,
    queue_stats: Vec<Mutex<XskStats>>,
    worker_counters: Vec<Mutex<Vec<(&'static str, u64)>>>,
    fanout_dropped: Vec<AtomicU64>,
    /// Fan-out: every frame stamped before this (µs) has been handed to the workers
    /// (the capture thread found its ring empty then). 0 until known.
    fanout_watermark: AtomicI64,
    prog: Mutex<ProgCounters>,
    output: OutputCounters,
}

/// Counters of the caller's output stage, shown in the stats line and the metrics.
#[derive(Debug, Clone, Default)]
pub struct OutputCounters {
    /// Records written.
    pub written: Arc<AtomicU64>,
    /// Records dropped because the output queue was full.
    pub dropped: Arc<AtomicU64>,
}

/// A consistent copy of everything, for printing.
#[derive(Debug, Clone, Default)]
pub struct StatsView {
    /// The capture interface.
    pub iface: String,
    /// The XDP attach mode in effect (`native`, `generic`).
    pub mode: &'static str,
    /// Per queue: its id and its socket's counters.
    pub queues: Vec<(u32, XskStats)>,
    /// Per worker: the engine's counters.
    pub workers: Vec<Vec<(&'static str, u64)>>,
    /// Per fan-out worker: frames dropped because its queue was full.
    pub fanout_dropped: Vec<u64>,
    /// The XDP program's counters.
    pub prog: ProgCounters,
    /// Records dropped because the output queue was full.
    pub output_dropped: u64,
    /// Records written to the output.
    pub output_records: u64,
}

impl Shared {
    /// Zeroed counters for a capture of `queues` on `iface` with `workers` engines.
    pub fn new(
        iface: &str,
        mode: &'static str,
        queues: &[u32],
        workers: usize,
        output: OutputCounters,
    ) -> Shared {
        Shared {
            iface: iface.to_string(),
            mode,
            queues: queues.to_vec(),
            queue_stats: queues.iter().map(|_| Mutex::default()).collect(),
            worker_counters: (0..workers).map(|_| Mutex::default()).collect(),
            fanout_dropped: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            fanout_watermark: AtomicI64::new(0),
            prog: Mutex::default(),
            output,
        }
    }

    pub(super) fn set_queue(&self, i: usize, s: XskStats) {
        if let Some(m) = self.queue_stats.get(i) {
            *m.lock().unwrap_or_else(|e| e.into_inner()) = s;
        }
    }

    pub(super) fn set_worker(&self, i: usize, c: Vec<(&'static str, u64)>) {
        if let Some(m) = self.worker_counters.get(i) {
            *m.lock().unwrap_or_else(|e| e.into_inner()) = c;
        }
    }

    pub(super) fn set_fanout_watermark(&self, us: i64) {
        self.fanout_watermark.store(us, Ordering::Release);
    }

    pub(super) fn fanout_watermark(&self) -> i64 {
        self.fanout_watermark.load(Ordering::Acquire)
    }

    pub(super) fn add_fanout_dropped(&self, d: &[u64]) {
        for (a, &v) in self.fanout_dropped.iter().zip(d) {
            if v > 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn set_prog(&self, p: ProgCounters) {
        *self.prog.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// A copy of every counter as it stands now.
    pub fn view(&self) -> StatsView {
        StatsView {
            iface: self.iface.clone(),
            mode: self.mode,
            queues: self
                .queues
                .iter()
                .zip(&self.queue_stats)
                .map(|(&q, m)| (q, *m.lock().unwrap_or_else(|e| e.into_inner())))
                .collect(),
            workers: self
                .worker_counters
                .iter()
                .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .collect(),
            fanout_dropped: self
                .fanout_dropped
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            prog: *self.prog.lock().unwrap_or_else(|e| e.into_inner()),
            output_dropped: self.output.dropped.load(Ordering::Relaxed),
            output_records: self.output.written.load(Ordering::Relaxed),
        }
    }
}

impl StatsView {
    /// Frames received over all queues.
    pub fn rx_frames(&self) -> u64 {
        self.queues.iter().map(|(_, s)| s.rx_frames).sum()
    }

    /// Frames lost anywhere we can see: kernel drops on the sockets, fan-out queue
    /// overflow, output overflow.
    pub fn lost(&self) -> u64 {
        self.queues.iter().map(|(_, s)| s.rx_dropped).sum::<u64>()
            + self.fanout_dropped.iter().sum::<u64>()
            + self.output_dropped
    }

    /// The engines' counters summed over workers, in first-seen order.
    pub fn engine_totals(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for w in &self.workers {
            crate::counters::add_named(&mut out, w);
        }
        out
    }

    /// The periodic log line; with a previous view and the time since, rates too.
    pub fn line(&self, prev: Option<(&StatsView, Duration)>) -> String {
        let mut s = format!("stats {} ({} XDP):", self.iface, self.mode);
        for (i, (q, st)) in self.queues.iter().enumerate() {
            let rate = prev.and_then(|(p, dt)| {
                let before = p.queues.get(i)?.1.rx_frames;
                let secs = dt.as_secs_f64();
                (secs > 0.0).then(|| (st.rx_frames.saturating_sub(before)) as f64 / secs)
            });
            let _ = write!(s, " q{q} rx={}", st.rx_frames);
            if let Some(r) = rate {
                let _ = write!(s, " ({r:.0} pps)");
            }
            let _ = write!(
                s,
                " dropped={} ring_full={} fill_empty={} invalid={};",
                st.rx_dropped, st.rx_ring_full, st.rx_fill_ring_empty_descs, st.rx_invalid_descs
            );
        }
        let _ = write!(
            s,
            " xdp tcp={} tunnel={} non_tcp_dropped={} non_tcp_passed={};",
            self.prog.tcp, self.prog.tunnel, self.prog.non_tcp_dropped, self.prog.non_tcp_passed
        );
        if self.fanout_dropped.iter().any(|&d| d > 0) {
            let _ = write!(s, " fanout_dropped={:?};", self.fanout_dropped);
        }
        let _ = write!(
            s,
            " output records={} dropped={};",
            self.output_records, self.output_dropped
        );
        let eng = self.engine_totals();
        if !eng.is_empty() {
            s.push_str(" engine");
            for (k, v) in eng.iter().filter(|(_, v)| *v > 0) {
                let _ = write!(s, " {k}={v}");
            }
        }
        if let Some(w) = crate::counters::one_sided_warning(&eng) {
            let _ = write!(s, "; WARNING: {w}");
        }
        s
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut e = Exposition::new();
        self.expose_queues(&mut e);
        self.expose_program(&mut e);
        self.expose_output(&mut e);
        self.expose_engines(&mut e);
        e.finish()
    }

    /// Per-queue AF_XDP socket counters (`XDP_STATISTICS` and what the sensor counts).
    fn expose_queues(&self, e: &mut Exposition) {
        type Get = fn(&XskStats) -> u64;
        let per_queue: [(&str, &str, Get); 6] = [
            (
                "rstwatch_xsk_rx_frames_total",
                "Frames received on the AF_XDP socket.",
                |s| s.rx_frames,
            ),
            (
                "rstwatch_xsk_rx_bytes_total",
                "Bytes received on the AF_XDP socket.",
                |s| s.rx_bytes,
            ),
            (
                "rstwatch_xsk_rx_dropped_total",
                "XDP_STATISTICS rx_dropped: frames the kernel dropped for lack of room.",
                |s| s.rx_dropped,
            ),
            (
                "rstwatch_xsk_rx_invalid_descs_total",
                "XDP_STATISTICS rx_invalid_descs.",
                |s| s.rx_invalid_descs,
            ),
            (
                "rstwatch_xsk_rx_ring_full_total",
                "XDP_STATISTICS rx_ring_full: receive ring full.",
                |s| s.rx_ring_full,
            ),
            (
                "rstwatch_xsk_rx_fill_ring_empty_descs_total",
                "XDP_STATISTICS rx_fill_ring_empty_descs: no fill frame available.",
                |s| s.rx_fill_ring_empty_descs,
            ),
        ];
        for (name, help, get) in per_queue {
            let mut f = e.family(name, help, MetricType::Counter);
            for (q, st) in &self.queues {
                f.sample(
                    &[("iface", &self.iface), ("queue", &q.to_string())],
                    get(st),
                );
            }
        }
    }

    /// The XDP program's verdict counters, labelled with the attach mode.
    fn expose_program(&self, e: &mut Exposition) {
        for (name, help, v) in [
            (
                "rstwatch_xdp_tcp_total",
                "TCP frames the XDP program redirected.",
                self.prog.tcp,
            ),
            (
                "rstwatch_xdp_tunnel_total",
                "Tunnel frames (GRE, VXLAN, Geneve, MPLS, PPPoE) the XDP program redirected.",
                self.prog.tunnel,
            ),
            (
                "rstwatch_xdp_non_tcp_dropped_total",
                "Non-TCP frames the XDP program dropped.",
                self.prog.non_tcp_dropped,
            ),
            (
                "rstwatch_xdp_non_tcp_passed_total",
                "Non-TCP frames the XDP program passed to the stack.",
                self.prog.non_tcp_passed,
            ),
        ] {
            e.family(name, help, MetricType::Counter)
                .sample(&[("iface", &self.iface), ("mode", self.mode)], v);
        }
    }

    /// Frames lost between capture and workers, records written or lost at the output.
    fn expose_output(&self, e: &mut Exposition) {
        let mut f = e.family(
            "rstwatch_fanout_dropped_total",
            "Frames dropped because a fan-out worker's queue was full.",
            MetricType::Counter,
        );
        for (w, v) in self.fanout_dropped.iter().enumerate() {
            f.sample(&[("worker", &w.to_string())], v);
        }
        e.single(
            "rstwatch_output_records_total",
            "Records written to the output.",
            MetricType::Counter,
            self.output_records,
        );
        e.single(
            "rstwatch_output_dropped_total",
            "Records dropped because the output queue was full.",
            MetricType::Counter,
            self.output_dropped,
        );
    }

    /// The one-sided flow share (issue 11: the number an operator alerts on), then every
    /// engine counter: one family per counter name, a series per worker.
    fn expose_engines(&self, e: &mut Exposition) {
        let totals = self.engine_totals();
        let get = |n: &str| totals.iter().find(|(k, _)| *k == n).map_or(0, |(_, v)| *v);
        let (all, one) = (get("flows_conversing"), get("flows_one_sided"));
        let ratio = if all == 0 {
            0.0
        } else {
            one as f64 / all as f64
        };
        e.family(
            "rstwatch_flows_one_sided_ratio",
            "Share of ended flows with ACKs or data seen in one direction only; high means \
             the mirror is missing a direction (asymmetric routing, half-duplex port).",
            MetricType::Gauge,
        )
        .sample(&[("iface", &self.iface)], ratio);
        for (k, _) in totals {
            let name = format!("rstwatch_engine_{}", sanitize_name(k));
            let mut f = e.family(&name, &format!("Engine counter {k}."), MetricType::Untyped);
            for (w, c) in self.workers.iter().enumerate() {
                if let Some((_, v)) = c.iter().find(|(n, _)| *n == k) {
                    f.sample(&[("worker", &w.to_string())], v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> StatsView {
        let out = OutputCounters::default();
        out.written.store(7, Ordering::Relaxed);
        let s = Shared::new("eth\"1", "native", &[0, 3], 2, out);
        s.set_queue(
            1,
            XskStats {
                rx_frames: 100,
                rx_dropped: 2,
                rx_ring_full: 1,
                ..Default::default()
            },
        );
        s.set_worker(0, vec![("frames", 60), ("rst", 4)]);
        s.set_worker(1, vec![("frames", 40), ("flows-live", 2)]);
        s.add_fanout_dropped(&[0, 5]);
        s.view()
    }

    #[test]
    fn totals_and_loss() {
        let v = view();
        assert_eq!(v.rx_frames(), 100);
        assert_eq!(v.lost(), 2 + 5);
        assert_eq!(
            v.engine_totals(),
            vec![("frames", 100), ("rst", 4), ("flows-live", 2)]
        );
        let line = v.line(None);
        assert!(line.contains("q3 rx=100 dropped=2 ring_full=1"), "{line}");
        assert!(line.contains("fanout_dropped=[0, 5]"), "{line}");
        assert!(
            line.contains("engine frames=100 rst=4 flows-live=2"),
            "{line}"
        );
    }

    #[test]
    fn one_sided_mirror_warns_in_the_line_and_the_metrics() {
        let s = Shared::new("mirror0", "native", &[0], 2, OutputCounters::default());
        s.set_worker(0, vec![("flows_conversing", 30), ("flows_one_sided", 28)]);
        s.set_worker(1, vec![("flows_conversing", 20), ("flows_one_sided", 18)]);
        let v = s.view();
        let line = v.line(None);
        assert!(
            line.ends_with(
                "WARNING: 92 % of flows seen in one direction only (46 of 50): \
                 is the mirror missing a direction?"
            ),
            "{line}"
        );
        let t = v.prometheus();
        assert!(
            t.contains("rstwatch_flows_one_sided_ratio{iface=\"mirror0\"} 0.92\n"),
            "{t}"
        );
        let whole = Shared::new("mirror0", "native", &[0], 1, OutputCounters::default());
        whole.set_worker(0, vec![("flows_conversing", 50), ("flows_one_sided", 1)]);
        assert!(!whole.view().line(None).contains("WARNING"));
    }

    #[test]
    fn prometheus_text_format() {
        let t = view().prometheus();
        assert!(t.contains("# TYPE rstwatch_xsk_rx_frames_total counter\n"));
        assert!(t.contains("rstwatch_xsk_rx_frames_total{iface=\"eth\\\"1\",queue=\"3\"} 100\n"));
        assert!(t.contains("rstwatch_xsk_rx_dropped_total{iface=\"eth\\\"1\",queue=\"3\"} 2\n"));
        assert!(t.contains("rstwatch_fanout_dropped_total{worker=\"1\"} 5\n"));
        assert!(t.contains("rstwatch_output_records_total 7\n"));
        assert!(
            t.contains("rstwatch_engine_flows_live{worker=\"1\"} 2\n"),
            "{t}"
        );
        // Every sample line is `name{labels} value` or `name value`.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
            assert!(name.starts_with("rstwatch_"), "{l}");
        }
    }
}
