//! Record writers: JSON lines (the offline contract) and a table for people.

use crate::sink::Sink;
use rstwatch_schema::timefmt::rfc3339_micros;
use rstwatch_schema::{Anomaly, FlowRecord, Record, RstEvent};
use std::io::Write;

/// Which record types to write.
#[derive(Debug, Clone, Copy)]
pub struct Select {
    pub rst: bool,
    pub flow: bool,
    pub anomaly: bool,
}

impl Default for Select {
    fn default() -> Self {
        Select {
            rst: true,
            flow: true,
            anomaly: true,
        }
    }
}

/// Writes one JSON object per line. The first write error (a closed pipe, a full disk)
/// is kept and every later record is dropped; [`JsonLines::finish`] reports it.
pub struct JsonLines<W: Write> {
    out: W,
    select: Select,
    error: Option<std::io::Error>,
    pub written: u64,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W, select: Select) -> Self {
        JsonLines {
            out,
            select,
            error: None,
            written: 0,
        }
    }

    fn write(&mut self, rec: &Record) {
        if self.error.is_some() {
            return;
        }
        let r = serde_json::to_writer(&mut self.out, rec)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        match r {
            Ok(()) => self.written += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// Flushes and returns the first write error, if any.
    pub fn finish(mut self) -> std::io::Result<u64> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.written)
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn rst(&mut self, ev: RstEvent) {
        if self.select.rst {
            self.write(&Record::Rst(ev));
        }
    }
    fn flow(&mut self, rec: FlowRecord) {
        if self.select.flow {
            self.write(&Record::Flow(rec));
        }
    }
    fn anomaly(&mut self, a: Anomaly) {
        if self.select.anomaly {
            self.write(&Record::Anomaly(a));
        }
    }
}

/// Fixed-width lines for a terminal: one per record, the type first.
pub struct Table<W: Write> {
    inner: JsonLines<W>,
}

impl<W: Write> Table<W> {
    pub fn new(out: W, select: Select) -> Self {
        Table {
            inner: JsonLines::new(out, select),
        }
    }

    pub fn finish(self) -> std::io::Result<u64> {
        self.inner.finish()
    }

    fn line(&mut self, s: String) {
        let j = &mut self.inner;
        if j.error.is_some() {
            return;
        }
        match writeln!(j.out, "{s}") {
            Ok(()) => j.written += 1,
            Err(e) => j.error = Some(e),
        }
    }
}

impl<W: Write> Sink for Table<W> {
    fn rst(&mut self, e: RstEvent) {
        if !self.inner.select.rst {
            return;
        }
        let flags = e.flags.names().join(",");
        self.line(format!(
            "rst     {}  {:>22} > {:<22} {:<7} {:<15} {}{}",
            rfc3339_micros(e.ts_us),
            endpoint(e.src, e.sport),
            endpoint(e.dst, e.dport),
            e.dir.as_str(),
            e.class.as_str(),
            if e.suspect { "SUSPECT " } else { "" },
            flags
        ));
    }

    fn flow(&mut self, f: FlowRecord) {
        if !self.inner.select.flow {
            return;
        }
        self.line(format!(
            "flow    {}  {} > {} {:<6} {:<12} pkts {}/{} bytes {}/{} rst {} close {}",
            rfc3339_micros(f.ts_start_us),
            endpoint(f.orig_h, f.orig_p),
            endpoint(f.resp_h, f.resp_p),
            f.conn_state.as_str(),
            f.history,
            f.orig_pkts,
            f.resp_pkts,
            f.orig_bytes,
            f.resp_bytes,
            f.rst_count,
            f.close.as_str()
        ));
    }

    fn anomaly(&mut self, a: Anomaly) {
        if !self.inner.select.anomaly {
            return;
        }
        self.line(format!(
            "ANOMALY {}  {:<11} {}  ({})",
            rfc3339_micros(a.ts_us),
            a.kind.as_str(),
            a.subject,
            a.detail
        ));
    }
}

/// `addr:port`, with brackets around IPv6 addresses.
pub(crate) fn endpoint(a: rstwatch_schema::IpBytes, p: u16) -> String {
    if a.is_v4() {
        format!("{a}:{p}")
    } else {
        format!("[{a}]:{p}")
    }
}
