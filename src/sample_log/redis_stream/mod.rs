//! The Redis Streams sink: the sample log's records appended to one stream, for consumers that
//! already run Redis and want samples without a Kafka cluster.
//!
//! Why each choice:
//! - **One pipeline of `XADD` per batch** over a [`ConnectionManager`](redis::aio::ConnectionManager):
//!   one write and one round trip per batch; the manager reconnects in the background after
//!   Redis restarts, so the driver's retry finds a fresh connection.
//! - **`MAXLEN ~ n`**: a stream nobody trims grows until Redis runs out of memory; `~` lets Redis
//!   trim whole radix-tree nodes (cheap) so the length stays at most n plus one node's entries
//!   (`stream-node-max-entries`, 100 by default).
//! - **Fields `id seq key payload`**: `id` is [`Record::id`](crate::sample_log::record::Record::id)
//!   (consumers dedup by it: a batch retried after a timeout may be appended twice), `seq` the log
//!   sequence (order and gap checks), `key` the request_id, `payload` the encoded `LogRecord`.
//! - **A timeout per batch** (`timeout_ms`): a dead or frozen Redis fails the batch — the tail
//!   driver retries it from the log — instead of hanging the sink.
//!
//! [`read_stream`] reads a stream back (`XRANGE` in pages) for tests and `augur samples dump`.

mod read;
mod sink;
#[cfg(test)]
mod tests;

pub use read::read_stream;
pub use sink::RedisStreamSink;

/// Entry field holding [`Record::id`](crate::sample_log::record::Record::id).
pub const FIELD_ID: &str = "id";
/// Entry field holding the log sequence, decimal.
pub const FIELD_SEQ: &str = "seq";
/// Entry field holding the request_id.
pub const FIELD_KEY: &str = "key";
/// Entry field holding the encoded `LogRecord`.
pub const FIELD_PAYLOAD: &str = "payload";

/// Why a Redis Streams sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    /// The URL does not parse, or the connection manager refused its settings.
    #[error("redis stream sink `{sink}` ({url})")]
    Client {
        /// The sink's name.
        sink: String,
        /// The URL, without password.
        url: String,
        /// What redis-rs said.
        #[source]
        source: redis::RedisError,
    },
}

/// Why a stream could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Connecting or `XRANGE` failed.
    #[error("redis stream `{stream}` ({url}): {action}")]
    Redis {
        /// The stream read.
        stream: String,
        /// The URL, without password.
        url: String,
        /// What was being done.
        action: &'static str,
        /// What redis-rs said.
        #[source]
        source: redis::RedisError,
    },
    /// Connecting or a page took longer than the read's bound.
    #[error("redis stream `{stream}` ({url}): no answer within {after_ms} ms")]
    Timeout {
        /// The stream read.
        stream: String,
        /// The URL, without password.
        url: String,
        /// The bound.
        after_ms: u64,
    },
    /// An entry is not shaped like the sink writes them.
    #[error("redis stream `{stream}` entry {entry}: {problem}")]
    Malformed {
        /// The stream read.
        stream: String,
        /// The entry's stream id (`<ms>-<seq>`), or `?` when even that is missing.
        entry: String,
        /// What is wrong with it.
        problem: String,
    },
}
