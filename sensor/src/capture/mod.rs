//! Live capture: AF_XDP sockets on dedicated cores feeding engines.
//!
//! Two layouts:
//!
//! * **Per queue** (`fanout = 0`, for NICs with a symmetric RSS key): one thread per
//!   receive queue, pinned to its core, owning the queue's socket and its own engine.
//!   Each receive batch is processed where it sits in the UMEM, as one batch
//!   ([`Processor::batch`], so the engine overlaps its flow lookups), and then goes back
//!   to the fill ring.
//! * **Fan-out** (`fanout = N`, for single-queue ports): one capture thread per queue
//!   parses each frame, with the engines' options, and hands the parsed frame to one of
//!   N worker threads by its flow's symmetric hash ([`crate::engine::FanoutParser`])
//!   through a bounded crossbeam queue, in batches ([`ParsedBatch`]); the UMEM frame
//!   goes back to the fill ring at once, and no frame is copied or parsed twice. A
//!   worker hands each batch it takes to its engine whole. Both
//!   directions of a flow land on the same worker. A full worker queue is counted
//!   (`fanout_dropped`), never waited for: capture does not stall.
//!
//! Shutdown ([`run`] returns when `should_stop` says so): the XDP program is detached
//! first (no new frames), then every thread drains its ring or queue, the engines
//! finish (held RSTs and open flows are flushed), and the sockets close last.

mod batch;
mod config;
mod metrics;
mod signal;
mod stats;

pub use config::{BusyPollConfig, RunConfig};
pub use signal::{install_signal_handlers, signal_received};
pub use stats::{OutputCounters, Shared, StatsView};

use crate::engine::FanoutParser;
use crate::parse::{LinkType, ParseOptions, ParsedBatch};
use anyhow::{bail, Context};
use batch::Pairs;
use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};
use rstwatch_xdp::{XdpProgram, XskSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a worker does with frames. The sensor's is an engine writing to an output
/// queue; tests and benchmarks plug in their own.
pub trait Processor: Send + 'static {
    /// One frame, borrowed (from the UMEM in per-queue mode), with its arrival time.
    fn frame(&mut self, ts_us: i64, frame: &[u8]);
    /// Frames in arrival order as `(arrival time µs, frame)`, borrowed like
    /// [`Processor::frame`]'s: one receive batch (per queue) or one fan-out batch.
    /// Must do what [`Processor::frame`] on each in turn does (the default).
    fn batch(&mut self, frames: &[(i64, &[u8])]) {
        for &(ts_us, frame) in frames {
            self.frame(ts_us, frame);
        }
    }
    /// Frames parsed by a fan-out capture thread with the engine's parse options, in
    /// arrival order: must do what [`Processor::frame`] on each frame would have done.
    fn parsed(&mut self, frames: &ParsedBatch);
    /// Time passes without frames (the link is idle): let timeouts fire.
    fn tick(&mut self, now_us: i64);
    /// End of capture: flush everything held.
    fn finish(&mut self);
    /// Counters by name (the engine's).
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// How often a busy worker lets its engine see time pass, and how long the ring must be
/// empty before an idle tick.
const TICK_EVERY: Duration = Duration::from_millis(100);
const IDLE_WAIT_MS: i32 = 10;
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);
/// Idle ticks of a busy-polling worker (which never sleeps in poll).
const IDLE_TICK_BUSY_POLL: Duration = Duration::from_millis(10);

/// What a finished capture saw (also logged as the last stats line).
#[derive(Debug, Clone)]
pub struct CaptureReport {
    /// The XDP mode the program ran in (`native`, `generic`, ...).
    pub mode: &'static str,
    /// The last counters of every queue and of the engines.
    pub view: StatsView,
}

fn realtime_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Pins the calling thread to `core`.
fn pin(core: usize) -> anyhow::Result<()> {
    crate::sys::pin_thread(&[core])
        .map_err(|e| anyhow::anyhow!("cannot pin a thread to core {core}: {e}"))
}

/// Checks the configuration against this machine: interface, queues, cores.
pub fn preflight(cfg: &RunConfig) -> anyhow::Result<String> {
    cfg.validate()?;
    let Some(iface) = cfg.iface.clone() else {
        bail!("no capture interface: give --iface IFACE (or iface = \"...\" in the config)");
    };
    rstwatch_xdp::ifindex(&iface)?;
    if let Some(count) = rstwatch_xdp::rx_queue_count(&iface) {
        if let Some(&q) = cfg.queues.iter().find(|&&q| q >= count) {
            return Err(rstwatch_xdp::Error::QueueOutOfRange {
                iface,
                queue: q,
                count,
            }
            .into());
        }
    }
    let cpus = rstwatch_xdp::online_cpus();
    if let Some(&c) = cfg.cores.iter().find(|c| !cpus.contains(c)) {
        bail!(
            "core {c} is out of range: this process may run on cores {}",
            cpus.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    let mut seen = cfg.cores.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != cfg.cores.len() {
        log::warn!(
            "cores {:?} lists a core twice: threads will share it",
            cfg.cores
        );
    }
    Ok(iface)
}

/// Keeps the calling thread (and the threads it spawns later: output, metrics) off the
/// capture cores: pins it to the CPUs not listed in `cores`, when there are any. Capture
/// and worker threads pin themselves to their own cores.
pub fn pin_housekeeping(cores: &[usize]) {
    if cores.is_empty() {
        return;
    }
    let rest: Vec<usize> = rstwatch_xdp::online_cpus()
        .into_iter()
        .filter(|c| !cores.contains(c))
        .collect();
    if rest.is_empty() {
        log::info!("every core is a capture core: output and housekeeping threads share them");
        return;
    }
    let settable: Vec<usize> = rest
        .iter()
        .copied()
        .filter(|&c| c < libc::CPU_SETSIZE as usize)
        .collect();
    if let Err(e) = crate::sys::pin_thread(&settable) {
        log::warn!("cannot keep housekeeping threads off the capture cores: {e}");
        return;
    }
    log::debug!("housekeeping threads on cores {rest:?}");
}

/// Runs live capture until `should_stop()` is true, then shuts down cleanly.
///
/// `make(i)` builds worker `i`'s processor (queue index in per-queue mode, worker index
/// in fan-out mode). `output` are the caller's output counters, shown with the rest.
pub fn run<P, F>(
    cfg: &RunConfig,
    make: F,
    should_stop: &dyn Fn() -> bool,
    output: OutputCounters,
) -> anyhow::Result<CaptureReport>
where
    P: Processor,
    F: Fn(usize) -> P,
{
    let iface = preflight(cfg)?;
    let (prog, mode, sockets) = attach(cfg, &iface)?;
    let workers = if cfg.fanout > 0 {
        cfg.fanout
    } else {
        cfg.queues.len()
    };
    let shared = Arc::new(Shared::new(&iface, mode, &cfg.queues, workers, output));
    let drain = Arc::new(AtomicBool::new(false));
    let threads = if cfg.fanout == 0 {
        spawn_per_queue(cfg, sockets, &make, &shared, &drain)?
    } else {
        spawn_fanout(cfg, sockets, &make, &shared, &drain)?
    };
    log::info!(
        "capturing on {iface}: queue(s) {:?}, {}",
        cfg.queues,
        if cfg.fanout > 0 {
            format!("fan-out to {} worker(s)", cfg.fanout)
        } else {
            "one engine per queue".to_string()
        }
    );
    let metrics = match &cfg.metrics_listen {
        Some(addr) => Some(metrics::serve(addr, shared.clone(), drain.clone())?),
        None => None,
    };
    let early_exit = wait_for_stop(cfg, &prog, &shared, should_stop, &threads);
    let view = shut_down(prog, &shared, &drain, threads, metrics)?;
    if early_exit {
        bail!("a capture thread stopped unexpectedly");
    }
    Ok(CaptureReport { mode, view })
}

type Threads = Vec<JoinHandle<anyhow::Result<()>>>;

/// Attaches the XDP program and opens one socket per queue, registered with it.
fn attach(
    cfg: &RunConfig,
    iface: &str,
) -> anyhow::Result<(XdpProgram, &'static str, Vec<XskSocket>)> {
    let ports = cfg.engine.encap.ports().unwrap_or_default();
    let ports = rstwatch_xdp::TunnelPortFilter {
        vxlan: ports.vxlan,
        geneve: ports.geneve,
    };
    let mut prog = XdpProgram::attach_with_ports(iface, cfg.mode, cfg.non_tcp.passes(), ports)?;
    let mode = match prog.mode() {
        rstwatch_xdp::AttachMode::Native => "native",
        rstwatch_xdp::AttachMode::Generic => "generic",
    };
    let xcfg = cfg.xsk_config();
    let mut sockets = Vec::new();
    for &q in &cfg.queues {
        let s = XskSocket::open(iface, q, &xcfg)?;
        prog.register(q, s.fd())?;
        sockets.push(s);
    }
    Ok((prog, mode, sockets))
}

/// Per-queue layout: one thread per socket, each with its own engine.
fn spawn_per_queue<P: Processor>(
    cfg: &RunConfig,
    sockets: Vec<XskSocket>,
    make: &dyn Fn(usize) -> P,
    shared: &Arc<Shared>,
    drain: &Arc<AtomicBool>,
) -> anyhow::Result<Threads> {
    let mut threads = Threads::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        let p = make(i);
        let core = cfg.cores.get(i).copied();
        let (shared, drain) = (shared.clone(), drain.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("rw-q{}", sock.queue()))
                .spawn(move || queue_worker(i, sock, p, core, &shared, &drain))
                .context("spawning a capture thread")?,
        );
    }
    Ok(threads)
}

/// Fan-out layout: N worker threads with an engine each, then one capture thread per
/// socket hashing frames to them. Capture threads come first in the list.
fn spawn_fanout<P: Processor>(
    cfg: &RunConfig,
    sockets: Vec<XskSocket>,
    make: &dyn Fn(usize) -> P,
    shared: &Arc<Shared>,
    drain: &Arc<AtomicBool>,
) -> anyhow::Result<Threads> {
    let n = cfg.fanout;
    let mut txs = Vec::new();
    let mut workers = Threads::new();
    let (recycle_tx, recycle_rx) = bounded::<ParsedBatch>(n * cfg.fanout_queue_batches + 64);
    for j in 0..n {
        let (tx, rx) = bounded::<ParsedBatch>(cfg.fanout_queue_batches);
        txs.push(tx);
        let p = make(j);
        let core = cfg.cores.get(cfg.queues.len() + j).copied();
        let (shared, recycle) = (shared.clone(), recycle_tx.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("rw-w{j}"))
                .spawn(move || fanout_worker(j, rx, recycle, p, core, &shared))
                .context("spawning a worker thread")?,
        );
    }
    drop(recycle_tx);
    // The capture threads parse every frame for the workers' engines, with their options.
    let opts = cfg.engine.parse_options();
    let mut threads = Threads::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        let core = cfg.cores.get(i).copied();
        let (shared, drain) = (shared.clone(), drain.clone());
        let (txs, recycle) = (txs.clone(), recycle_rx.clone());
        let batch = cfg.batch as usize;
        threads.push(
            std::thread::Builder::new()
                .name(format!("rw-q{}", sock.queue()))
                .spawn(move || {
                    fanout_capture(i, sock, txs, recycle, opts, batch, core, &shared, &drain)
                })
                .context("spawning a capture thread")?,
        );
    }
    threads.extend(workers);
    Ok(threads)
}

/// The stats loop: waits for the stop request, keeping the program counters and the
/// periodic stats line going. Returns true when a thread ended on its own first.
fn wait_for_stop(
    cfg: &RunConfig,
    prog: &XdpProgram,
    shared: &Shared,
    should_stop: &dyn Fn() -> bool,
    threads: &Threads,
) -> bool {
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut last_view = shared.view();
    let mut early_exit = false;
    while !should_stop() {
        std::thread::sleep(Duration::from_millis(50));
        shared.set_prog(prog.counters());
        if cfg.stats_interval_s > 0
            && last_line.elapsed() >= Duration::from_secs(cfg.stats_interval_s as u64)
        {
            let v = shared.view();
            log::info!("{}", v.line(Some((&last_view, last_line.elapsed()))));
            last_view = v;
            last_line = Instant::now();
        }
        if threads.iter().any(|h| h.is_finished()) {
            early_exit = true;
            break;
        }
    }
    log::info!(
        "stopping after {:.1} s: detaching XDP, draining queues",
        started.elapsed().as_secs_f64()
    );
    early_exit
}

/// Shutdown: detach XDP first (no frame is redirected to a dying socket), let every
/// thread drain and finish, then close the program. Returns the final counters.
fn shut_down(
    mut prog: XdpProgram,
    shared: &Shared,
    drain: &AtomicBool,
    threads: Threads,
    metrics: Option<JoinHandle<()>>,
) -> anyhow::Result<StatsView> {
    shared.set_prog(prog.counters());
    let detach = prog.detach();
    drain.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    for h in threads {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(p) => errors.push(format!(
                "a capture thread panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    if let Some(m) = metrics {
        let _ = m.join();
    }
    drop(prog);
    let view = shared.view();
    log::info!("final: {}", view.line(None));
    if let Err(e) = detach {
        errors.push(format!("{e}"));
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(view)
}

/// Per-queue mode: this thread owns the socket and the engine.
fn queue_worker<P: Processor>(
    idx: usize,
    mut sock: XskSocket,
    mut p: P,
    core: Option<usize>,
    shared: &Shared,
    drain: &AtomicBool,
) -> anyhow::Result<()> {
    if let Some(c) = core {
        pin(c)?;
    }
    let mut last_tick = Instant::now();
    let mut last_snap = Instant::now();
    let mut last_ts = 0i64;
    let busy = sock.is_busy_polling();
    let mut pairs = Pairs::default();
    // One receive batch, lent to the processor whole; returns the last arrival time.
    let mut recv = |sock: &mut XskSocket, p: &mut P, last_ts: &mut i64| {
        sock.recv_batch(|frames| {
            pairs.lend(frames.iter().map(|f| (f.ts_us(), f.data)), |b| {
                p.batch(b);
                if let Some(&(ts, _)) = b.last() {
                    *last_ts = ts;
                }
            })
        })
    };
    loop {
        if drain.load(Ordering::Acquire) {
            // The program is detached: what is in the ring is all there will be.
            while recv(&mut sock, &mut p, &mut last_ts) > 0 {}
            break;
        }
        if sock.wait(IDLE_WAIT_MS) {
            recv(&mut sock, &mut p, &mut last_ts);
            if last_tick.elapsed() >= TICK_EVERY {
                p.tick(last_ts);
                last_tick = Instant::now();
            }
        } else if !busy || last_tick.elapsed() >= IDLE_TICK_BUSY_POLL {
            // Ring empty: everything stamped before now has been seen. (A busy-polling
            // worker comes here on every empty poll: it ticks at a bounded rate.)
            p.tick(realtime_us());
            last_tick = Instant::now();
        }
        if last_snap.elapsed() >= SNAPSHOT_EVERY {
            sock.refresh_clock();
            shared.set_queue(idx, sock.stats());
            shared.set_worker(idx, p.counters());
            last_snap = Instant::now();
        }
    }
    p.finish();
    shared.set_queue(idx, sock.stats());
    shared.set_worker(idx, p.counters());
    Ok(())
}

/// Fan-out mode: capture side. Parses each frame into its worker's batch and returns
/// the UMEM frame at once.
#[allow(clippy::too_many_arguments)]
fn fanout_capture(
    idx: usize,
    mut sock: XskSocket,
    txs: Vec<Sender<ParsedBatch>>,
    recycle: Receiver<ParsedBatch>,
    opts: ParseOptions,
    batch: usize,
    core: Option<usize>,
    shared: &Shared,
    drain: &AtomicBool,
) -> anyhow::Result<()> {
    if let Some(c) = core {
        pin(c)?;
    }
    let n = txs.len();
    let mut parser = FanoutParser::new(opts);
    let mut cur: Vec<ParsedBatch> = (0..n).map(|_| ParsedBatch::with_capacity(batch)).collect();
    let mut dropped = vec![0u64; n];
    let mut last_snap = Instant::now();
    let send = |w: usize, cur: &mut Vec<ParsedBatch>, dropped: &mut Vec<u64>| {
        if cur[w].is_empty() {
            return;
        }
        let fresh = recycle
            .try_recv()
            .unwrap_or_else(|_| ParsedBatch::with_capacity(batch));
        let b = std::mem::replace(&mut cur[w], fresh);
        match txs[w].try_send(b) {
            Ok(()) => {}
            Err(TrySendError::Full(mut b)) | Err(TrySendError::Disconnected(mut b)) => {
                dropped[w] += b.len() as u64;
                b.clear();
                cur[w] = b;
            }
        }
    };
    let mut recv_once =
        |sock: &mut XskSocket, cur: &mut Vec<ParsedBatch>, dropped: &mut Vec<u64>| {
            let got = sock.recv(|f| {
                let (w, outcome) = parser.parse(LinkType::Ethernet, f.data, n);
                cur[w].push(f.ts_us(), outcome, parser.packet());
                if cur[w].len() >= batch {
                    send(w, cur, dropped);
                }
            });
            for w in 0..n {
                send(w, cur, dropped);
            }
            got
        };
    loop {
        if drain.load(Ordering::Acquire) {
            while recv_once(&mut sock, &mut cur, &mut dropped) > 0 {}
            break;
        }
        let before = realtime_us();
        if !sock.wait(IDLE_WAIT_MS) || recv_once(&mut sock, &mut cur, &mut dropped) == 0 {
            // The ring was empty: every frame stamped before `before` is with the
            // workers, so their idle ticks may move time that far (not further: a
            // worker ticking to the wall clock while frames still wait in the ring
            // would release held RSTs before the packets that complete them).
            shared.set_fanout_watermark(before);
        }
        if last_snap.elapsed() >= SNAPSHOT_EVERY {
            sock.refresh_clock();
            shared.set_queue(idx, sock.stats());
            shared.add_fanout_dropped(&dropped);
            dropped.iter_mut().for_each(|d| *d = 0);
            last_snap = Instant::now();
        }
    }
    shared.set_queue(idx, sock.stats());
    shared.add_fanout_dropped(&dropped);
    // Dropping the senders tells the workers that this queue is done.
    Ok(())
}

/// Fan-out mode: worker side. Owns one engine.
fn fanout_worker<P: Processor>(
    idx: usize,
    rx: Receiver<ParsedBatch>,
    recycle: Sender<ParsedBatch>,
    mut p: P,
    core: Option<usize>,
    shared: &Shared,
) -> anyhow::Result<()> {
    if let Some(c) = core {
        pin(c)?;
    }
    let mut last_tick = Instant::now();
    let mut last_snap = Instant::now();
    let mut last_ts = 0i64;
    loop {
        match rx.recv_timeout(Duration::from_millis(IDLE_WAIT_MS as u64)) {
            Ok(mut b) => {
                p.parsed(&b);
                if let Some(ts) = b.last_time() {
                    last_ts = ts;
                }
                b.clear();
                let _ = recycle.try_send(b);
                if last_tick.elapsed() >= TICK_EVERY {
                    p.tick(last_ts);
                    last_tick = Instant::now();
                }
            }
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {
                p.tick(realtime_us().min(shared.fanout_watermark()));
                last_tick = Instant::now();
            }
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => break,
        }
        if last_snap.elapsed() >= SNAPSHOT_EVERY {
            shared.set_worker(idx, p.counters());
            last_snap = Instant::now();
        }
    }
    p.finish();
    shared.set_worker(idx, p.counters());
    Ok(())
}
