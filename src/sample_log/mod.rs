//! Step 8, off the hot path: what each prediction served becomes a training sample.
//!
//! ```text
//! Predict ──snapshot──▶ buffer (bounded; drop_newest | block) ──▶ joiner ──▶ join store (memory | Redis)
//! ReportEvents ──────────────────────────────────────────────────▶ joiner ──┘
//!                 due (positive wait over) / late label ──▶ file::SegmentLog ──tail──▶ sinks (Kafka, Redis Streams, Parquet)
//! ```
//!
//! The segment log is the one durable step: a sample counts as delivered to a network sink only
//! when the sink acknowledged it, and the log keeps it until every sink has. Serving never waits
//! on any of it (`buffer` refuses and counts instead).

pub mod buffer;
pub mod config;
pub mod file;
pub mod join;
pub mod joiner;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod pipeline;
pub mod record;
pub mod redis_stream;
pub mod sink;
pub mod snapshot;
pub mod tail;

#[cfg(test)]
mod tests;

/// What the request path holds of the sample pipeline.
#[derive(Debug, Clone)]
pub struct Samples {
    /// Predict queues what it served here.
    pub queue: buffer::SnapshotQueue,
    /// ReportEvents joins events here.
    pub joiner: std::sync::Arc<joiner::Joiner>,
}
