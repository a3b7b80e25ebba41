//! Record writers: JSON lines (the offline contract) and a table for people (one line
//! per record; an RST's line names its cause after its class, a flow's line ends with
//! the cause of its first RST).

mod json;

use crate::sink::Sink;
use json::JsonFormat;
use rstwatch_schema::timefmt::rfc3339_micros;
use rstwatch_schema::{Anomaly, FlowRecord, Record, RstEvent};
use std::io::Write;

/// Which record types to write.
#[derive(Debug, Clone, Copy)]
pub struct Select {
    /// RST events.
    pub rst: bool,
    /// Flow records.
    pub flow: bool,
    /// Anomalies.
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
    /// Records written so far.
    pub written: u64,
    /// RST events and flow records are formatted by hand (serde's bytes, less work).
    format: JsonFormat,
    line: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    /// A writer of the selected record types to `out`.
    pub fn new(out: W, select: Select) -> Self {
        JsonLines {
            out,
            select,
            error: None,
            written: 0,
            format: JsonFormat::default(),
            line: Vec::with_capacity(512),
        }
    }

    /// Writes the line `JsonFormat` put into `self.line`.
    fn write_line(&mut self) {
        self.line.push(b'\n');
        match self.out.write_all(&self.line) {
            Ok(()) => self.written += 1,
            Err(e) => self.error = Some(e),
        }
        self.line.clear();
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
        if self.select.rst && self.error.is_none() {
            self.format.rst(&ev, &mut self.line);
            self.write_line();
        }
    }
    fn flow(&mut self, rec: FlowRecord) {
        if self.select.flow && self.error.is_none() {
            self.format.flow(&rec, &mut self.line);
            self.write_line();
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
    /// A writer of the selected record types to `out`.
    pub fn new(out: W, select: Select) -> Self {
        Table {
            inner: JsonLines::new(out, select),
        }
    }

    /// Flushes and returns the records written, or the first write error.
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
            "rst     {}  {:>22} > {:<22} {:<7} {:<15} {:<17} {}{}",
            rfc3339_micros(e.ts_us),
            endpoint(e.src, e.sport),
            endpoint(e.dst, e.dport),
            e.dir.as_str(),
            e.class.as_str(),
            e.cause.as_str(),
            if e.suspect { "SUSPECT " } else { "" },
            flags
        ));
    }

    fn flow(&mut self, f: FlowRecord) {
        if !self.inner.select.flow {
            return;
        }
        self.line(format!(
            "flow    {}  {} > {} {:<6} {:<12} pkts {}/{} bytes {}/{} rst {} close {}{}",
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
            f.close.as_str(),
            f.cause.map(|c| format!(" cause {c}")).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstwatch_schema::{Cause, CloseReason, ConnState, Dir, RstClass, RstFlag, RstFlags};

    fn rst_event() -> RstEvent {
        RstEvent {
            ts_us: 0,
            src: "203.0.113.5".parse().unwrap(),
            sport: 443,
            dst: "192.0.2.10".parse().unwrap(),
            dport: 40000,
            vlan: 0,
            inner_vlan: 0,
            dir: Dir::Resp,
            class: RstClass::Abort,
            flags: [RstFlag::SeqExact, RstFlag::Idle]
                .into_iter()
                .collect::<RstFlags>(),
            suspect: false,
            seq: 1,
            ack: 0,
            ack_flag: false,
            ttl: 63,
            ip_id: 0,
            payload_len: 0,
            flow_uid: 7,
            cause: Cause::IdleTimeout,
            cause_detail: "silent 3605 s".into(),
            silence_ms: 3_605_000,
            encap: rstwatch_schema::Encap::None,
            tunnel_id: 0,
        }
    }

    fn flow_record(cause: Option<Cause>) -> FlowRecord {
        FlowRecord {
            ts_start_us: 0,
            ts_end_us: 1,
            orig_h: "192.0.2.10".parse().unwrap(),
            orig_p: 40000,
            resp_h: "203.0.113.5".parse().unwrap(),
            resp_p: 443,
            vlan: 0,
            inner_vlan: 0,
            conn_state: ConnState::Rstr,
            history: "ShADr".into(),
            orig_pkts: 2,
            resp_pkts: 2,
            orig_bytes: 0,
            resp_bytes: 0,
            rst_count: 1,
            close: CloseReason::Rst,
            flow_uid: 7,
            cause,
            encap: rstwatch_schema::Encap::None,
            tunnel_id: 0,
        }
    }

    fn table_lines(write: impl FnOnce(&mut Table<&mut Vec<u8>>)) -> Vec<String> {
        let mut buf = Vec::new();
        let mut t = Table::new(&mut buf, Select::default());
        write(&mut t);
        t.finish().unwrap();
        String::from_utf8(buf)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn table_rst_line_names_the_cause_after_the_class() {
        let lines = table_lines(|t| t.rst(rst_event()));
        assert_eq!(
            lines,
            vec![
                "rst     1970-01-01T00:00:00.000000Z         203.0.113.5:443 > 192.0.2.10:40000       \
                 resp    abort           idle_timeout      seq_exact,idle"
                    .to_string()
            ]
        );
    }

    #[test]
    fn table_flow_line_ends_with_the_cause_of_its_first_rst() {
        let lines = table_lines(|t| {
            t.flow(flow_record(Some(Cause::IdleTimeout)));
            t.flow(flow_record(None));
        });
        assert!(
            lines[0].ends_with("rst 1 close rst cause idle_timeout"),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with("rst 1 close rst"), "{}", lines[1]);
    }
}
