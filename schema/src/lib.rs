//! The one definition of what an rstwatch sensor emits.
//!
//! Every record the sensor produces is one of the types in this crate. The same structs
//! are:
//!
//! * archived with [rkyv] into batches that cross the network to the collector (the
//!   collector checks every received batch with bytecheck before touching it, see
//!   [`batch::access_batch`]),
//! * serialised with serde into the JSON lines of the offline contract (`replay`), and
//! * mapped onto ClickHouse rows by the collector (DDL under `schema/sql/`).
//!
//! Field names and meanings follow the contract in `DESIGN.md`; new fields may be added,
//! existing names do not change. Enum discriminants and flag bits are part of the wire
//! format and of the stored data: append, never renumber.

pub mod addr;
pub mod anomaly;
pub mod batch;
pub mod cause;
pub mod cluster;
pub mod compat;
pub mod cookbook;
pub mod encap;
pub mod event;
pub mod flags;
pub mod flow;
pub mod frame;
pub mod prometheus;
pub mod rollup;
pub mod sensor_id;
pub mod sql;
pub mod stats;
mod str_enum;
pub mod timefmt;

pub use addr::IpBytes;
pub use anomaly::{Anomaly, AnomalyKind};
pub use batch::{Batch, BatchHeader, SCHEMA_VERSION};
pub use cause::Cause;
pub use encap::Encap;
pub use event::{Dir, Record, RstClass, RstEvent};
pub use flags::{RstFlag, RstFlags};
pub use flow::{CloseReason, ConnState, FlowRecord};
pub use stats::{NamedCounter, SensorStats};
