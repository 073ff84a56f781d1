//! The records the sample log and its sinks carry: `augur.v1.LogRecord` (protobuf, see
//! `proto/augur/v1/samples.proto`), and the envelope sinks need without decoding twice.

use bytes::Bytes;
use prost::Message;

use crate::proto::{LogRecord, log_record};

/// One record read back from the log, as a sink receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The log's sequence number (monotonic, gap-free within a log).
    pub sequence: u64,
    /// Partitioning key: the request_id (Kafka key; all samples of a request stay in order).
    pub key: String,
    /// Dedup id consumers keep one of: `sample_id#revision` for samples, `orphan:<request_id>:<item_id>:<type>`
    /// for orphans.
    pub id: String,
    /// The encoded `LogRecord`.
    pub payload: Bytes,
}

/// Why a payload is not a `LogRecord`.
#[derive(Debug, thiserror::Error)]
#[error("sample log record {sequence}: {source}")]
pub struct DecodeError {
    /// Where it sat in the log.
    pub sequence: u64,
    /// What protobuf said.
    #[source]
    pub source: prost::DecodeError,
}

// === impl Record ===

impl Record {
    /// Decodes `payload` just enough to name its key and dedup id.
    pub fn new(sequence: u64, payload: Bytes) -> Result<Record, DecodeError> {
        let record = LogRecord::decode(payload.clone()).map_err(|source| DecodeError { sequence, source })?;
        let (key, id) = envelope(&record);
        Ok(Record { sequence, key, id, payload })
    }

    /// The full record.
    pub fn decode(&self) -> Result<LogRecord, DecodeError> {
        LogRecord::decode(self.payload.clone()).map_err(|source| DecodeError { sequence: self.sequence, source })
    }
}

/// (key, dedup id) of a record.
pub fn envelope(record: &LogRecord) -> (String, String) {
    match &record.record {
        Some(log_record::Record::Sample(s)) => (s.request_id.clone(), format!("{}#{}", s.sample_id, s.revision)),
        Some(log_record::Record::Orphan(e)) => {
            (e.request_id.clone(), format!("orphan:{}:{}:{}", e.request_id, e.item_id, e.r#type))
        }
        None => (String::new(), String::new()),
    }
}

/// Encodes a record for the log.
pub fn encode(record: &LogRecord) -> Vec<u8> {
    record.encode_to_vec()
}
