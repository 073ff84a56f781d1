//! [`ParquetSink`]: a staging sink. `deliver` writes rows into open parts (acknowledged, not yet
//! durable); the driver's cursor follows [`SampleSink::staged_from`], and its ticks commit parts
//! and close hours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::ParquetError;
use super::writer::{Settings, Writer};
use crate::fetch::BoxFuture;
use crate::sample_log::config::{BUILTIN_EVENT_TYPES, ParquetSinkConfig, SamplesConfig};
use crate::sample_log::metrics::SampleMetrics;
use crate::sample_log::record::Record;
use crate::sample_log::sink::{Delivered, SampleSink, SinkError, Tick};
use crate::sample_log::snapshot::now_ms;

/// How often the driver ticks the sink: hours close and parts age out within about this.
const TICK: Duration = Duration::from_secs(1);

/// Writes samples as hourly Parquet files (see the module docs).
#[derive(Debug)]
pub struct ParquetSink {
    name: String,
    /// Blocking work on one writer at a time; a std mutex because it is only held on a
    /// blocking thread, and the driver calls the sink one call at a time anyway.
    writer: Arc<Mutex<Writer>>,
    /// `Writer::staged_from` after the last call (0: nothing staged), for the driver's sync read.
    staged_from: Arc<AtomicU64>,
}

// === impl ParquetSink ===

impl ParquetSink {
    /// Creates the directory and finds hours a previous run left open; `samples` gives the event
    /// types (one label column each) and the join window (when an hour can close).
    pub fn new(
        config: &ParquetSinkConfig,
        samples: &SamplesConfig,
        metrics: SampleMetrics,
    ) -> Result<Self, ParquetError> {
        let mut label_types: Vec<String> = BUILTIN_EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect();
        label_types.extend(samples.join.event_types.iter().cloned());
        let settings = Settings { label_types, window_s: samples.join.window_s };
        let writer = Writer::open(config, settings, metrics)?;
        Ok(ParquetSink {
            name: config.name.clone(),
            writer: Arc::new(Mutex::new(writer)),
            staged_from: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn run(
        &self,
        op: impl FnOnce(&mut Writer) -> Result<(), ParquetError> + Send + 'static,
    ) -> Result<(), SinkError> {
        let (writer, staged_from) = (Arc::clone(&self.writer), Arc::clone(&self.staged_from));
        let result = tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let result = op(&mut writer);
            staged_from.store(writer.staged_from().unwrap_or(0), Ordering::Release);
            result.map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("writer task failed: {e}")));
        result.map_err(|reason| SinkError::Unavailable { sink: self.name.clone(), reason })
    }
}

impl SampleSink for ParquetSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Local files refuse no single record: every error fails the batch (the driver rereads).
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        let records = records.to_vec();
        Box::pin(async move { self.run(move |w| w.deliver(&records)).await.map(|()| Delivered::all()) })
    }

    fn staging(&self) -> Option<Duration> {
        Some(TICK)
    }

    fn staged_from(&self) -> Option<u64> {
        Some(self.staged_from.load(Ordering::Acquire)).filter(|s| *s > 0)
    }

    fn tick(&self, tick: Tick) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.run(move |w| w.tick(tick, now_ms())))
    }
}
