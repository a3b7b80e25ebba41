//! A batch: what one frame from a sensor to the collector carries.

use crate::{Anomaly, FlowRecord, RstEvent, SensorStats};

/// Version of these wire types. The collector refuses batches of another version.
/// Bump it on any change to a type in this crate that alters its archived layout.
///
/// History: 1 — first release; 2 — `RstEvent::{cause, cause_detail, silence_ms}`,
/// `FlowRecord::cause`, `AnomalyKind::Failover`.
pub const SCHEMA_VERSION: u16 = 2;

/// Who sent a batch and where it sits in that sensor's sequence.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct BatchHeader {
    /// [`SCHEMA_VERSION`] of the sender; checked before anything else is read.
    pub schema_version: u16,
    /// The sensor's configured name.
    pub sensor_id: String,
    /// Random per sensor process start; with `seq` it identifies a batch uniquely, so
    /// a redelivered batch is recognised and not stored twice.
    pub boot_id: u64,
    /// 0, 1, 2, ... per boot.
    pub seq: u64,
    /// When the batch was closed (sensor clock), microseconds since the epoch.
    pub created_us: i64,
}

/// Records of one sensor, in the order the sensor emitted them.
#[derive(
    Debug,
    Clone,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Batch {
    /// Who sent it, in which boot, which sequence number.
    pub header: BatchHeader,
    /// RST events.
    pub rst: Vec<RstEvent>,
    /// Flow records.
    pub flows: Vec<FlowRecord>,
    /// Anomalies.
    pub anomalies: Vec<Anomaly>,
    /// Sensor counters.
    pub stats: Vec<SensorStats>,
}

impl Batch {
    /// Number of records of all kinds.
    pub fn len(&self) -> usize {
        self.rst.len() + self.flows.len() + self.anomalies.len() + self.stats.len()
    }

    /// No records of any kind.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Archives the batch with rkyv.
    pub fn to_bytes(&self) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("archiving plain data cannot fail")
    }
}

/// Checks untrusted bytes with bytecheck and returns the archived batch.
///
/// This is the only way the collector looks at bytes from the network: never
/// `access_unchecked`. The bytes must be 16-byte aligned (use an `AlignedVec`).
///
/// The error is rancor's `BoxedError` in every build profile: it carries bytecheck's
/// reason (which field, what was wrong), where `rancor::Error` says nothing in release
/// builds.
pub fn access_batch(bytes: &[u8]) -> Result<&ArchivedBatch, rkyv::rancor::BoxedError> {
    rkyv::access::<ArchivedBatch, rkyv::rancor::BoxedError>(bytes)
}

/// Checks untrusted bytes and deserialises them into an owned [`Batch`].
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, rkyv::rancor::BoxedError> {
    let archived = access_batch(bytes)?;
    rkyv::deserialize::<Batch, rkyv::rancor::BoxedError>(archived)
}
