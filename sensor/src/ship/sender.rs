//! The sender thread: spool → collector (the first of `--ship` that answers) → acks.
//!
//! Steps: `run` picks a collector and paces reconnects ([`Backoff`]); `session` fills
//! the window from the spool (`fill_window`, checking every spooled frame before it
//! goes out) and matches acks (`read_acks`); a batch the collector refuses is checked
//! again here (`on_refused`): damaged in the spool, or refused for a reason that
//! resending cannot change → quarantined, and the rest drains; intact and refused for
//! a reason the wire could have caused → resent after a backoff.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rstwatch_schema::frame::{self, Ack, Kind, Limits, HEADER_LEN, MAX_RAW_LEN, MAX_WIRE_LEN};
use rstwatch_schema::SCHEMA_VERSION;

use super::backoff::Backoff;
use super::connect::{split_reject, ConnectError, Dialer, Session};
use super::spool::Entry;
use super::{Link, Shared};

/// Batch refusals that resending the same bytes cannot change (all of them are about
/// checksummed content, so the wire cannot have caused them), given the spooled copy
/// passed the same checks here. `too_long` is permanent only when the collector read
/// the length this sensor wrote (a damaged length field is the wire's doing).
fn permanent_refusal(reason: &str, detail: &str, wire_len: u64) -> bool {
    match reason {
        "wrong_sensor" | "schema_version" | "bad_batch" => true,
        "too_long" => detail.starts_with(&format!("payload length {wire_len} ")),
        r => r.starts_with("invalid_"),
    }
}

pub(crate) struct SenderLoop {
    pub shared: Arc<Shared>,
    pub addrs: Vec<String>,
    pub dialer: Dialer,
    pub window: usize,
    pub backoff: Backoff,
    /// Index in `addrs` of the collector tried first.
    pub current: usize,
}

/// An in-flight batch.
struct InFlight {
    order: u64,
    boot_id: u64,
    seq: u64,
    events: u64,
    bytes: u64,
}

/// How a session ended.
enum ConnEnd {
    /// Drained and told to stop, or stopped.
    Done,
    /// Lost: reconnect. `progress`: something was acknowledged or set aside.
    Lost { why: String, progress: bool },
}

const ACK_TIMEOUT: Duration = Duration::from_secs(120);

impl SenderLoop {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Relaxed)
    }

    /// Sleeps for `d`, waking early for a stop.
    fn pause(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.stopping() {
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }

    pub(crate) fn run(mut self) {
        let mut sessions = 0u64;
        let mut failures = 0u64;
        while !self.stopping() {
            if self.wait_for_work() {
                continue;
            }
            match self.open_any() {
                Ok(session) => {
                    if sessions > 0 {
                        self.shared.c.reconnects.fetch_add(1, Relaxed);
                    }
                    sessions += 1;
                    failures = 0;
                    self.shared.set_link(Link::Up);
                    match self.session(session) {
                        ConnEnd::Done => return,
                        ConnEnd::Lost { why, progress } => {
                            self.shared.set_link(Link::Down);
                            eprintln!(
                                "rstwatch-sensor: connection to collector {} lost: {why}; \
                                 resending unacknowledged batches",
                                self.addrs[self.current]
                            );
                            self.shared.spool.lock().unwrap().mark_all_sent();
                            if progress {
                                self.backoff.reset();
                            }
                            let d = self.backoff.next_delay();
                            self.pause(d);
                        }
                    }
                }
                Err(e) if e.is_fatal() => {
                    self.count_connect_failure(&e);
                    eprintln!("rstwatch-sensor: {e}");
                    *self.shared.fatal.lock().unwrap() = Some(e.to_string());
                    self.shared.set_link(Link::Down);
                    self.shared.cv.notify_all();
                    return;
                }
                Err(e) => {
                    self.count_connect_failure(&e);
                    self.shared.set_link(Link::Down);
                    failures += 1;
                    // The first failure, then one line per 10 (the backoff paces them).
                    if failures == 1 || failures.is_multiple_of(10) {
                        let dir = self.shared.spool.lock().unwrap().dir().to_path_buf();
                        eprintln!(
                            "rstwatch-sensor: {e}; spooling to {}, retrying (attempt {failures})",
                            dir.display()
                        );
                    }
                    let d = self.backoff.next_delay();
                    self.pause(d);
                }
            }
        }
    }

    fn count_connect_failure(&self, e: &ConnectError) {
        let mut m = self.shared.c.connect_failures.lock().unwrap();
        *m.entry(e.name()).or_insert(0) += 1;
    }

    /// Waits a little while the spool is empty. True when it waited (check again).
    fn wait_for_work(&self) -> bool {
        let sp = self.shared.spool.lock().unwrap();
        if sp.is_empty() {
            let _ = self.shared.cv.wait_timeout(sp, Duration::from_millis(200));
            return true;
        }
        false
    }

    /// Opens a session with the first collector that answers, starting with the
    /// current one; fails over on unreachable or busy collectors.
    fn open_any(&mut self) -> Result<Session, ConnectError> {
        let n = self.addrs.len();
        let mut last = None;
        for k in 0..n {
            let i = (self.current + k) % n;
            match self.dialer.open(&self.addrs[i]) {
                Ok(s) => {
                    if i != self.current && n > 1 {
                        eprintln!(
                            "rstwatch-sensor: failing over from collector {} to {}",
                            self.addrs[self.current], self.addrs[i]
                        );
                    }
                    self.current = i;
                    return Ok(s);
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one collector address"))
    }

    /// Sends spooled batches in order with a window, collects acks.
    fn session(&self, mut s: Session) -> ConnEnd {
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut cursor = 0u64; // spool order of the next batch to send on this connection
        let mut last_progress = Instant::now();
        let mut progress = false;
        loop {
            if self.stopping() {
                return ConnEnd::Done;
            }
            match self.fill_window(&mut s, &mut inflight, &mut cursor) {
                Ok(set_aside) => progress |= set_aside,
                Err(why) => return ConnEnd::Lost { why, progress },
            }
            if inflight.is_empty() {
                // All acknowledged: done if the batcher is done and the spool is empty.
                let sp = self.shared.spool.lock().unwrap();
                if sp.is_empty() && self.shared.batcher_done.load(Relaxed) {
                    return ConnEnd::Done;
                }
                if sp.next_from(cursor).is_none() {
                    let _ = self.shared.cv.wait_timeout(sp, Duration::from_millis(100));
                }
                last_progress = Instant::now();
                continue;
            }
            match self.read_acks(&mut s, &mut inflight) {
                Ok(0) => {}
                Ok(_) => {
                    progress = true;
                    last_progress = Instant::now();
                }
                Err(end) => {
                    return match end {
                        ConnEnd::Lost { why, progress: p } => ConnEnd::Lost {
                            why,
                            progress: progress || p,
                        },
                        done => done,
                    }
                }
            }
            if last_progress.elapsed() > ACK_TIMEOUT {
                return ConnEnd::Lost {
                    why: format!("no acknowledgement for {ACK_TIMEOUT:?}"),
                    progress,
                };
            }
        }
    }

    /// Sends spooled batches until the window is full. Returns whether a batch was set
    /// aside (quarantined) on the way, or why the connection is lost.
    fn fill_window(
        &self,
        s: &mut Session,
        inflight: &mut VecDeque<InFlight>,
        cursor: &mut u64,
    ) -> Result<bool, String> {
        let mut sent_any = false;
        let mut set_aside = false;
        while inflight.len() < self.window {
            let next = {
                let sp = self.shared.spool.lock().unwrap();
                sp.next_from(*cursor).map(|e| (e.clone(), sp.read(&e)))
            };
            let Some((e, data)) = next else { break };
            *cursor = e.order + 1;
            let mut data = match data.map_err(|err| format!("unreadable: {err}")) {
                Ok(d) => match self.check_spooled(&e, &d) {
                    Ok(()) => d,
                    Err(why) => {
                        self.quarantine(&e, &why);
                        set_aside = true;
                        continue;
                    }
                },
                Err(why) => {
                    self.quarantine(&e, &why);
                    set_aside = true;
                    continue;
                }
            };
            if e.sent_before {
                frame::mark_resent(&mut data).map_err(|err| err.to_string())?;
                self.shared.c.resent_batches.fetch_add(1, Relaxed);
            }
            s.conn
                .write_all(&data)
                .map_err(|err| format!("sending: {err}"))?;
            self.shared.spool.lock().unwrap().mark_sent(e.order);
            inflight.push_back(InFlight {
                order: e.order,
                boot_id: e.boot_id,
                seq: e.seq,
                events: e.events,
                bytes: data.len() as u64,
            });
            sent_any = true;
        }
        if sent_any {
            s.conn.flush().map_err(|err| format!("sending: {err}"))?;
        }
        Ok(set_aside)
    }

    /// Checks a spooled frame before it is sent: intact (length, checksum) always; a
    /// batch left by an earlier run is also decoded, and must be this sensor's and of
    /// this schema version (a host renamed with its spool kept would otherwise be
    /// refused batch after batch).
    fn check_spooled(&self, e: &Entry, data: &[u8]) -> Result<(), String> {
        frame::check_frame(data).map_err(|err| format!("damaged in the spool: {err}"))?;
        if e.from_earlier_run {
            self.check_contents(data)?;
            self.shared.spool.lock().unwrap().mark_checked(e.order);
        }
        Ok(())
    }

    /// Decodes a spooled batch fully and checks whose it is.
    fn check_contents(&self, data: &[u8]) -> Result<(), String> {
        let limits = Limits::new(MAX_WIRE_LEN, MAX_RAW_LEN);
        let (_, raw) = frame::verify_frame(data, limits)
            .map_err(|err| format!("damaged in the spool: {err}"))?;
        let b = rstwatch_schema::batch::access_batch(&raw)
            .map_err(|err| format!("damaged in the spool: batch does not validate: {err}"))?;
        let id = b.header.sensor_id.as_str();
        if id != self.dialer.hello.sensor_id {
            return Err(format!(
                "written by sensor {id:?}, this sensor is {:?} (renamed with its spool kept)",
                self.dialer.hello.sensor_id
            ));
        }
        let v = b.header.schema_version.to_native();
        if v != SCHEMA_VERSION {
            return Err(format!(
                "schema version {v}, this build writes {SCHEMA_VERSION}"
            ));
        }
        Ok(())
    }

    /// Moves a batch aside, with one clear line (counted in the report).
    fn quarantine(&self, e: &Entry, why: &str) {
        let r = self.shared.spool.lock().unwrap().quarantine(e.order);
        let whence = match r {
            Some(Ok(p)) => format!("moved to {}", p.display()),
            Some(Err(err)) => err,
            None => return,
        };
        eprintln!(
            "rstwatch-sensor: batch {:016x}/{} ({} events) set aside: {why}; {whence}",
            e.boot_id, e.seq, e.events
        );
        self.shared.cv.notify_all();
    }

    /// Reads what the collector sent and matches acks with in-flight batches. Returns
    /// how many were acknowledged, or how the session ends.
    fn read_acks(
        &self,
        s: &mut Session,
        inflight: &mut VecDeque<InFlight>,
    ) -> Result<usize, ConnEnd> {
        let lost = |why: String| ConnEnd::Lost {
            why,
            progress: false,
        };
        let mut tmp = [0u8; 4096];
        match s.conn.read(&mut tmp) {
            Ok(0) => {
                s.deframer.at_eof().map_err(|e| lost(e.to_string()))?;
                return Err(lost("collector closed the connection".into()));
            }
            Ok(n) => s.deframer.push(&tmp[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(lost(format!("reading: {e}"))),
        }
        let mut acked = 0;
        loop {
            let f = match s.deframer.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(acked),
                Err(e) => return Err(lost(format!("bad frame from collector: {e}"))),
            };
            match f.header.kind {
                Kind::Ack => {
                    self.on_ack(&f, inflight).map_err(lost)?;
                    acked += 1;
                }
                Kind::Reject => {
                    let (reason, detail) = split_reject(&f.payload);
                    return Err(self.on_refused(inflight.front(), &reason, &detail));
                }
                k => return Err(lost(format!("unexpected {k:?} frame"))),
            }
        }
    }

    fn on_ack(&self, f: &frame::Frame, inflight: &mut VecDeque<InFlight>) -> Result<(), String> {
        let ack = frame::decode_payload_limited(&f.header, &f.payload, 64)
            .ok()
            .and_then(|p| Ack::from_bytes(&p))
            .ok_or_else(|| "malformed ack".to_string())?;
        let b = inflight
            .pop_front()
            .ok_or_else(|| "ack for nothing in flight".to_string())?;
        if (b.boot_id, b.seq) != (ack.boot_id, ack.seq) {
            return Err(format!(
                "ack for {:016x}/{} while {:016x}/{} was next",
                ack.boot_id, ack.seq, b.boot_id, b.seq
            ));
        }
        let c = &self.shared.c;
        c.batches_acked.fetch_add(1, Relaxed);
        c.events_acked.fetch_add(b.events, Relaxed);
        c.wire_bytes.fetch_add(b.bytes, Relaxed);
        self.shared.spool.lock().unwrap().remove(b.order);
        self.shared.cv.notify_all();
        Ok(())
    }

    /// The collector refused the batch at the front of the window (acks come in
    /// order, so the refusal is about the first unacknowledged one).
    fn on_refused(&self, front: Option<&InFlight>, reason: &str, detail: &str) -> ConnEnd {
        let said = format!("collector refused it ({reason}: {detail})");
        let Some(b) = front else {
            return ConnEnd::Lost {
                why: said,
                progress: false,
            };
        };
        let entry = self.shared.spool.lock().unwrap().next_from(b.order);
        let Some(e) = entry.filter(|e| e.order == b.order) else {
            return ConnEnd::Lost {
                why: said,
                progress: false,
            };
        };
        let local = self
            .shared
            .spool
            .lock()
            .unwrap()
            .read(&e)
            .map_err(|err| format!("unreadable: {err}"))
            .and_then(|d| self.check_contents(&d));
        match local {
            Err(why) => self.quarantine(&e, &format!("{why}; {said}")),
            Ok(())
                if permanent_refusal(reason, detail, b.bytes.saturating_sub(HEADER_LEN as u64)) =>
            {
                self.quarantine(&e, &said)
            }
            Ok(()) => {
                self.shared.c.transit_refusals.fetch_add(1, Relaxed);
                return ConnEnd::Lost {
                    why: format!(
                        "{said}; the spooled copy is intact, so it was damaged on the way: \
                         resending"
                    ),
                    progress: false,
                };
            }
        }
        ConnEnd::Lost {
            why: format!("batch {:016x}/{} set aside", b.boot_id, b.seq),
            progress: true,
        }
    }
}
