//! Why the collector refused a connection or a batch: one enum, whose variant names
//! the metric label (`rstwatch_collector_rejected_total{reason=...}`) and whose
//! message is what the log line and the sensor's reject frame say.

use rstwatch_schema::frame::{FrameError, Kind};

use crate::config::AuthError;
use crate::limits::Refused;
use crate::validate::Invalid;

/// Why a connection ended early, for the log, the reject frame and the counters.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// Admission: a connection bound was reached (no frame is sent).
    #[error("connection limit reached")]
    Admission(Refused),
    /// The TLS handshake failed or timed out.
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(String),
    /// The frame layer refused: bad header, checksum, compression, a cut-off stream.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// No hello within the handshake timeout.
    #[error("no hello within {0:?}")]
    HelloTimeout(std::time::Duration),
    /// No frame within the idle timeout.
    #[error("idle for {0:?}")]
    Idle(std::time::Duration),
    /// A frame of another kind where a hello or a batch belongs.
    #[error("expected {expected}, got {got:?}")]
    UnexpectedFrame {
        /// What the conversation expected at this point.
        expected: &'static str,
        /// What came.
        got: Kind,
    },
    /// The hello's payload is not the JSON hello.
    #[error("hello is not valid JSON: {0}")]
    BadHello(serde_json::Error),
    /// Unknown sensor, bad token, malformed id.
    #[error("{}", .0.detail())]
    Auth(AuthError),
    /// The sensor (hello) or a batch speaks another schema version; says which side
    /// to upgrade.
    #[error("{0}")]
    SchemaVersion(String),
    /// The batch's bytes do not validate as an archived batch (bytecheck).
    #[error("batch does not validate: {0}")]
    BadBatch(String),
    /// The batch validates but its values make no sense (timestamps, lengths).
    #[error("{}", .0.detail)]
    Invalid(Invalid),
    /// The batch names another sensor than the connection authenticated as.
    #[error("batch says sensor {batch:?}, connection authenticated as {connection:?}")]
    WrongSensor {
        /// The sensor id in the batch header.
        batch: String,
        /// The sensor id of the hello.
        connection: String,
    },
    /// Storing failed for good (the retries gave up).
    #[error("{0}")]
    StoreFailed(String),
    /// A task of the collector itself failed.
    #[error("store task failed: {0}")]
    Internal(String),
}

impl Refusal {
    /// Short, stable name: the metric label and the word before the detail in the log.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Refusal::Admission(r) => r.name(),
            Refusal::TlsHandshake(_) => "tls_handshake",
            Refusal::Frame(e) => e.name(),
            Refusal::HelloTimeout(_) | Refusal::Idle(_) => "timeout",
            Refusal::UnexpectedFrame { .. } => "unexpected_frame",
            Refusal::BadHello(_) => "bad_hello",
            Refusal::Auth(e) => e.name(),
            Refusal::SchemaVersion(_) => "schema_version",
            Refusal::BadBatch(_) => "bad_batch",
            Refusal::Invalid(i) => i.reason,
            Refusal::WrongSensor { .. } => "wrong_sensor",
            Refusal::StoreFailed(_) => "store_failed",
            Refusal::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_metric_labels() {
        let cases: Vec<(Refusal, &str)> = vec![
            (
                Refusal::Admission(Refused::TooManyConnections),
                "too_many_connections",
            ),
            (Refusal::Frame(FrameError::Truncated), "truncated"),
            (
                Refusal::HelloTimeout(std::time::Duration::from_secs(1)),
                "timeout",
            ),
            (Refusal::Idle(std::time::Duration::from_secs(1)), "timeout"),
            (Refusal::Auth(AuthError::BadToken), "bad_token"),
            (
                Refusal::UnexpectedFrame {
                    expected: "hello",
                    got: Kind::Ack,
                },
                "unexpected_frame",
            ),
            (Refusal::SchemaVersion("x".into()), "schema_version"),
            (Refusal::StoreFailed("x".into()), "store_failed"),
        ];
        for (r, name) in cases {
            assert_eq!(r.name(), name, "{r:?}");
        }
    }

    #[test]
    fn messages_keep_the_wording_of_the_log() {
        let r = Refusal::UnexpectedFrame {
            expected: "a batch frame",
            got: Kind::Hello,
        };
        assert_eq!(r.to_string(), "expected a batch frame, got Hello");
        assert_eq!(
            Refusal::Auth(AuthError::BadToken).to_string(),
            "wrong token"
        );
    }
}
