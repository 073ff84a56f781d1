//! [`RedisStreamSink`]: a batch is acknowledged when Redis answered every `XADD` of its pipeline.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{FIELD_ID, FIELD_KEY, FIELD_PAYLOAD, FIELD_SEQ, SinkBuildError};
use crate::fetch::BoxFuture;
use crate::sample_log::config::RedisStreamSinkConfig;
use crate::sample_log::record::Record;
use crate::sample_log::sink::{Delivered, SampleSink, SinkError};
use crate::validate::redact_url;

/// Longest pause between reconnection attempts: once Redis is back, a retried batch finds a
/// connection within about this long.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Appends sample-log batches to one Redis stream (see the module docs).
#[derive(Clone)]
pub struct RedisStreamSink {
    name: String,
    stream: String,
    maxlen: u64,
    /// Bound on one batch, connecting included.
    timeout: Duration,
    /// The URL without password, for messages.
    target: String,
    conn: ConnectionManager,
}

// === impl RedisStreamSink ===

impl RedisStreamSink {
    /// Builds the sink without connecting: Redis down at start-up fails batches (which the
    /// driver retries), not the build. [`Self::healthcheck`] tells whether it answers now.
    pub async fn new(config: &RedisStreamSinkConfig) -> Result<RedisStreamSink, SinkBuildError> {
        let target = redact_url(&config.url);
        let build_error = |source| SinkBuildError::Client { sink: config.name.clone(), url: target.clone(), source };
        let client = redis::Client::open(config.url.as_str()).map_err(build_error)?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_max_delay(MAX_RECONNECT_DELAY);
        let conn = ConnectionManager::new_lazy_with_config(client, manager).map_err(build_error)?;
        Ok(RedisStreamSink {
            name: config.name.clone(),
            stream: config.stream.clone(),
            maxlen: config.maxlen,
            timeout,
            target,
            conn,
        })
    }

    /// Whether Redis answers a PING within the batch timeout, for start-up logs.
    pub async fn healthcheck(&self) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        self.bounded(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(drop)
    }

    async fn deliver_batch(&self, records: &[Record]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for record in records {
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.maxlen)
                .arg("*")
                .arg(FIELD_ID)
                .arg(&record.id)
                .arg(FIELD_SEQ)
                .arg(record.sequence)
                .arg(FIELD_KEY)
                .arg(&record.key)
                .arg(FIELD_PAYLOAD)
                .arg(&record.payload[..])
                .ignore();
        }
        let mut conn = self.conn.clone();
        let result = self.bounded(pipe.exec_async(&mut conn)).await;
        if let Err(error) = &result {
            tracing::debug!(sink = %self.name, batch = records.len(), %error, "redis stream batch not acknowledged");
        }
        result
    }

    async fn bounded<T>(&self, op: impl Future<Output = redis::RedisResult<T>>) -> Result<T, SinkError> {
        let timeout = || SinkError::Timeout { sink: self.name.clone(), after_ms: self.timeout.as_millis() as u64 };
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            // The connection's own response timeout (the same bound) may fire first.
            Ok(Err(e)) if e.is_timeout() => Err(timeout()),
            Ok(Err(e)) => {
                Err(SinkError::Unavailable { sink: self.name.clone(), reason: format!("{}: {e}", self.target) })
            }
            Err(_) => Err(timeout()),
        }
    }
}

impl SampleSink for RedisStreamSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Redis refuses no single record for good: every error fails the batch (retried).
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move { self.deliver_batch(records).await.map(|()| Delivered::all()) })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        // The inherent method (inherent methods take precedence over the trait's).
        Box::pin(RedisStreamSink::healthcheck(self))
    }
}

impl fmt::Debug for RedisStreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamSink")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("stream", &self.stream)
            .field("maxlen", &self.maxlen)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
