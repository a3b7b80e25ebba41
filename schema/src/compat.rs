//! Schema-version compatibility between a sensor and a collector that are upgraded
//! separately: one wording for a mismatch, and reading a batch's version before its
//! rkyv layout is trusted.
//!
//! Both ends refuse any other [`SCHEMA_VERSION`] than their own (the archived layout
//! of the records changes with it). What matters is that the refusal says which side
//! to upgrade: the collector's text is sent to the sensor in a `Reject` and printed
//! there, and a sensor meeting an older collector reads that collector's text, so
//! [`explain_refusal`] also understands the version-1 wording
//! ("sensor schema version 2, collector 1").

use crate::batch::ArchivedBatch;
use crate::BatchHeader;

/// The collector's refusal detail for a sensor (hello or batch) of another schema
/// version. Starts with the version-1 wording, then says what to upgrade.
pub fn mismatch(sensor: u16, collector: u16) -> String {
    format!(
        "sensor schema version {sensor}, collector {collector}: {}",
        advice(sensor, collector)
    )
}

/// Which side to upgrade, for two different versions.
pub fn advice(sensor: u16, collector: u16) -> String {
    if sensor < collector {
        format!("upgrade the sensor to a build with schema version {collector}")
    } else {
        format!(
            "upgrade the collector to a build with schema version {sensor} and run \
             `rstwatch-collector migrate`"
        )
    }
}

/// For a sensor that got `text` in a `Reject`: the advice, when `text` is a schema
/// version refusal from a collector of any version (whose own text may not say what
/// to upgrade). `None` for any other refusal.
pub fn explain_refusal(text: &str) -> Option<String> {
    let rest = &text[text.find("sensor schema version ")? + "sensor schema version ".len()..];
    let (sensor, rest) = rest.split_once(", collector ")?;
    let collector: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let (sensor, collector) = (sensor.trim().parse().ok()?, collector.parse().ok()?);
    (sensor != collector).then(|| advice(sensor, collector))
}

/// The schema version a batch claims, read before the batch is validated as this
/// build's layout (a batch of another version would fail validation with a
/// meaningless error, or, worse, pass it). Only the header is checked (bytecheck):
/// every version so far archives `Batch` as a header followed by four vectors, so the
/// root, and the header at its start, sit at the same place. `None` when even that
/// does not validate.
pub fn batch_schema_version(bytes: &[u8]) -> Option<u16> {
    let pos = bytes
        .len()
        .checked_sub(std::mem::size_of::<ArchivedBatch>())?;
    let header = rkyv::api::high::access_pos::<
        <BatchHeader as rkyv::Archive>::Archived,
        rkyv::rancor::Error,
    >(bytes, pos)
    .ok()?;
    Some(header.schema_version.to_native())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, RstEvent, SCHEMA_VERSION};

    #[test]
    fn both_directions_say_what_to_upgrade() {
        assert_eq!(
            mismatch(1, 2),
            "sensor schema version 1, collector 2: upgrade the sensor to a build with \
             schema version 2"
        );
        assert!(mismatch(3, 2).ends_with(
            "upgrade the collector to a build with schema version 3 and run \
             `rstwatch-collector migrate`"
        ));
    }

    /// A version-1 collector's exact wording (collector/src/server.rs at schema 1),
    /// as a version-2 sensor prints it after the reason.
    #[test]
    fn a_version_1_collectors_refusal_is_explained() {
        let text = "schema_version: sensor schema version 2, collector 1";
        assert_eq!(
            explain_refusal(text).unwrap(),
            "upgrade the collector to a build with schema version 2 and run \
             `rstwatch-collector migrate`"
        );
        assert_eq!(
            explain_refusal(&mismatch(1, 2)).unwrap(),
            "upgrade the sensor to a build with schema version 2"
        );
        assert_eq!(explain_refusal("bad_token: wrong token"), None);
        assert_eq!(
            explain_refusal("sensor schema version x, collector 1"),
            None
        );
    }

    #[test]
    fn the_version_is_read_from_the_header_alone() {
        let mut b = Batch {
            header: BatchHeader {
                schema_version: 7,
                sensor_id: "edge-1".into(),
                boot_id: 1,
                seq: 2,
                created_us: 3,
            },
            rst: vec![RstEvent::new(
                1,
                (crate::IpBytes::from_v4([192, 0, 2, 1]), 1),
                (crate::IpBytes::from_v4([192, 0, 2, 2]), 2),
                crate::Dir::Orig,
                crate::RstClass::Abort,
            )],
            flows: vec![],
            anomalies: vec![],
            stats: vec![],
        };
        assert_eq!(batch_schema_version(&b.to_bytes()), Some(7));
        b.header.schema_version = SCHEMA_VERSION;
        assert_eq!(batch_schema_version(&b.to_bytes()), Some(SCHEMA_VERSION));
        assert_eq!(batch_schema_version(&[0u8; 8]), None);
        assert_eq!(batch_schema_version(&[0xffu8; 256]), None);
    }
}
