//! Where the engine's records go: stdout as JSON lines, a shipper queue, a test vector.

use rstwatch_schema::{Anomaly, FlowRecord, Record, RstEvent};

/// Receives every record an engine emits, in emission order.
pub trait Sink {
    /// An RST event, released after its verdict delay.
    fn rst(&mut self, ev: RstEvent);
    /// A flow record, when the flow ends.
    fn flow(&mut self, rec: FlowRecord);
    /// An aggregate anomaly.
    fn anomaly(&mut self, a: Anomaly);

    /// Any record, handed to the method of its type.
    fn record(&mut self, r: Record) {
        match r {
            Record::Rst(ev) => self.rst(ev),
            Record::Flow(f) => self.flow(f),
            Record::Anomaly(a) => self.anomaly(a),
        }
    }
}

/// Collects records in memory (tests, benchmarks, small tools).
impl Sink for Vec<Record> {
    fn rst(&mut self, ev: RstEvent) {
        self.push(Record::Rst(ev));
    }
    fn flow(&mut self, rec: FlowRecord) {
        self.push(Record::Flow(rec));
    }
    fn anomaly(&mut self, a: Anomaly) {
        self.push(Record::Anomaly(a));
    }
}

/// Counts records and drops them (benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingSink {
    /// RST events seen.
    pub rst: u64,
    /// Flow records seen.
    pub flows: u64,
    /// Anomalies seen.
    pub anomalies: u64,
}

impl Sink for CountingSink {
    fn rst(&mut self, _: RstEvent) {
        self.rst += 1;
    }
    fn flow(&mut self, _: FlowRecord) {
        self.flows += 1;
    }
    fn anomaly(&mut self, _: Anomaly) {
        self.anomalies += 1;
    }
}
