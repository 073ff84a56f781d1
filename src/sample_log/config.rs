//! `[samples]`: sample logging (rate, queue), the label join, the segment log and the sinks,
//! owned by the module that runs the pipeline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::quality::config::QualityConfig;
use crate::validate::{Invalid, in_range, invalid};

/// `[samples]`: the sample pipeline (`src/sample_log/`). Predict snapshots what it served (per
/// scene at `rate`), the join store keeps snapshots until their labels are in, joined samples go
/// to the local segment log and from there to every configured sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplesConfig {
    /// Off: no snapshots, and ReportEvents answers FAILED_PRECONDITION.
    #[serde(default)]
    pub enabled: bool,
    /// Share of requests logged (0.0..=1.0) for scenes not in `scene_rates`. Decided per
    /// request from its request_id, so a request is logged whole or not at all, on any replica.
    #[serde(default = "default_sample_rate")]
    pub rate: f64,
    /// Per-scene override of `rate`.
    #[serde(default)]
    pub scene_rates: BTreeMap<String, f64>,
    /// Snapshots waiting for the joiner, at most: the bound between serving and the pipeline.
    #[serde(default = "default_samples_queue_capacity")]
    pub queue_capacity: usize,
    /// What a full queue does to the next snapshot.
    #[serde(default)]
    pub when_full: WhenFull,
    /// With `when_full = "block"`: how long Predict may wait for room, in ms, before dropping.
    #[serde(default = "default_block_timeout_ms")]
    pub block_timeout_ms: u64,
    /// Label join: window, waits, event types, and where pending snapshots live.
    #[serde(default)]
    pub join: JoinConfig,
    /// The local segment log every sample goes through.
    #[serde(default)]
    pub log: SampleLogConfig,
    /// Network sinks tailing the log (none: the file log is the sink).
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Online quality per model version, from the joined samples (`src/quality/`).
    #[serde(default)]
    pub quality: QualityConfig,
}

impl Default for SamplesConfig {
    fn default() -> Self {
        SamplesConfig {
            enabled: false,
            rate: default_sample_rate(),
            scene_rates: BTreeMap::new(),
            queue_capacity: default_samples_queue_capacity(),
            when_full: WhenFull::default(),
            block_timeout_ms: default_block_timeout_ms(),
            join: JoinConfig::default(),
            log: SampleLogConfig::default(),
            sinks: Vec::new(),
            quality: QualityConfig::default(),
        }
    }
}

const fn default_sample_rate() -> f64 {
    1.0
}

const fn default_samples_queue_capacity() -> usize {
    4096
}

const fn default_block_timeout_ms() -> u64 {
    5
}

/// Policy of a full snapshot queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Drop the new snapshot and count it: serving never waits (the default).
    #[default]
    DropNewest,
    /// Wait up to `block_timeout_ms` for room, then drop and count.
    Block,
}

/// `[samples.join]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// Where snapshots wait for their labels.
    #[serde(default)]
    pub store: JoinStoreConfig,
    /// How long after a prediction its events are accepted, in s (snapshots expire after it).
    /// EasyRec's join window is −30 s … +30 min.
    #[serde(default = "default_join_window_s")]
    pub window_s: u64,
    /// Positive wait per event type, in s: an impressed candidate becomes a sample this long
    /// after its impression (the longest wait of the types listed); later labels become
    /// corrections.
    #[serde(default = "default_positive_wait")]
    pub positive_wait_s: BTreeMap<String, u64>,
    /// Custom event types accepted beside impression, click and conversion.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Events stamped further than this in the future are rejected, in s (clock skew allowance).
    #[serde(default = "default_max_future_skew_s")]
    pub max_future_skew_s: u64,
    /// Emit candidates never impressed too (as samples without labels) once the window ends.
    /// Off by default: a candidate the user never saw says nothing about the item.
    #[serde(default)]
    pub emit_unimpressed: bool,
    /// How often due samples are looked for, in ms.
    #[serde(default = "default_join_tick_ms")]
    pub tick_ms: u64,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            store: JoinStoreConfig::default(),
            window_s: default_join_window_s(),
            positive_wait_s: default_positive_wait(),
            event_types: Vec::new(),
            max_future_skew_s: default_max_future_skew_s(),
            emit_unimpressed: false,
            tick_ms: default_join_tick_ms(),
        }
    }
}

const fn default_join_window_s() -> u64 {
    1800
}

fn default_positive_wait() -> BTreeMap<String, u64> {
    BTreeMap::from([("click".to_owned(), 900), ("conversion".to_owned(), 900)])
}

const fn default_max_future_skew_s() -> u64 {
    60
}

const fn default_join_tick_ms() -> u64 {
    200
}

/// Where snapshots wait for their labels.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JoinStoreConfig {
    /// In this process, bounded in bytes; journaled to `dir` so a restart keeps pending joins.
    /// A callback must reach the replica that served the prediction.
    Memory {
        /// Bytes of pending snapshots and labels kept at most; beyond, new snapshots are
        /// dropped and counted.
        #[serde(default = "default_join_max_bytes")]
        max_bytes: usize,
    },
    /// Redis (every replica reaches the same snapshots, so a callback may land anywhere).
    Redis {
        /// `redis://` or `rediss://` URL of one node (with `cluster`, any node: the others are
        /// discovered from it).
        url: String,
        /// Redis Cluster: every key of a prediction and its shard's indexes share one hash tag,
        /// so each script touches one slot.
        #[serde(default)]
        cluster: bool,
        /// First part of every key.
        #[serde(default = "crate::fetch::config::default_redis_namespace")]
        namespace: String,
        /// Bound on one Redis call, in ms.
        #[serde(default = "default_join_redis_timeout_ms")]
        timeout_ms: u64,
        /// Due indexes the predictions are spread over (one hash tag each): on a cluster, how
        /// many slots — and so masters — share the join's load.
        #[serde(default = "default_join_redis_shards")]
        shards: u32,
        /// How long a replica holds a claim before it must have confirmed it, in ms: a claim
        /// not confirmed by then (the replica died between claim and sample log write) is
        /// claimed again by any replica.
        #[serde(default = "default_join_redis_lease_ms")]
        lease_ms: u64,
        /// How long a prediction's hash outlives its join window, in ms: the replicas' slack to
        /// claim what fell due at the close (a candidate still unclaimed after it, every replica
        /// down that long, is lost). Redis holds each prediction for the window plus this.
        #[serde(default = "default_join_redis_close_grace_ms")]
        close_grace_ms: u64,
    },
}

impl Default for JoinStoreConfig {
    fn default() -> Self {
        JoinStoreConfig::Memory { max_bytes: default_join_max_bytes() }
    }
}

const fn default_join_max_bytes() -> usize {
    256 << 20
}

const fn default_join_redis_timeout_ms() -> u64 {
    200
}

const fn default_join_redis_shards() -> u32 {
    16
}

const fn default_join_redis_lease_ms() -> u64 {
    30_000
}

const fn default_join_redis_close_grace_ms() -> u64 {
    600_000
}

/// `[samples.log]`: the local segment log (records `length | crc32c | sequence | payload`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleLogConfig {
    /// Directory of the segments, the sinks' cursors and the join journal.
    #[serde(default = "default_sample_log_dir")]
    pub dir: PathBuf,
    /// A segment is closed at this size, in bytes.
    #[serde(default = "default_segment_max_bytes")]
    pub segment_max_bytes: u64,
    /// ... or at this age, in s, so sinks and cleanup never wait on a quiet segment.
    #[serde(default = "default_segment_max_age_s")]
    pub segment_max_age_s: u64,
    /// fsync interval, in ms: the most a power loss can cost (always fsynced at shutdown).
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// Disk the log may use, in bytes; beyond it new records are refused and counted.
    #[serde(default = "default_sample_log_max_bytes")]
    pub max_disk_bytes: u64,
}

impl Default for SampleLogConfig {
    fn default() -> Self {
        SampleLogConfig {
            dir: default_sample_log_dir(),
            segment_max_bytes: default_segment_max_bytes(),
            segment_max_age_s: default_segment_max_age_s(),
            fsync_interval_ms: default_fsync_interval_ms(),
            max_disk_bytes: default_sample_log_max_bytes(),
        }
    }
}

fn default_sample_log_dir() -> PathBuf {
    PathBuf::from("samples")
}

const fn default_segment_max_bytes() -> u64 {
    64 << 20
}

const fn default_segment_max_age_s() -> u64 {
    60
}

const fn default_fsync_interval_ms() -> u64 {
    500
}

const fn default_sample_log_max_bytes() -> u64 {
    4 << 30
}

/// A network sink tailing the sample log: `[[samples.sinks]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Kafka (librdkafka): idempotent producer, acks=all, key = request_id.
    Kafka(KafkaSinkConfig),
    /// Redis Streams: XADD with MAXLEN ~.
    RedisStream(RedisStreamSinkConfig),
    /// Hourly Parquet files on local disk, for training and data tools (`src/sample_log/parquet/`).
    Parquet(ParquetSinkConfig),
}

/// `kind = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Sink name (metrics label, cursor file name).
    #[serde(default = "default_kafka_sink_name")]
    pub name: String,
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic the records go to.
    pub topic: String,
    /// Extra librdkafka properties (security, linger, compression...), applied after augur's own.
    /// Ones that would turn idempotence or acks=all off are refused when the sink is built.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka `message.timeout.ms`: how long a record may wait for its acknowledgement
    /// (retries included) before its batch fails. Bounded so an outage fails a batch, which the
    /// tail driver retries from the log, instead of hanging it.
    #[serde(default = "default_kafka_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// `[samples.sinks.tail]`: batch size, retry backoff and shutdown drain of this sink's driver.
    #[serde(default)]
    pub tail: TailConfig,
}

fn default_kafka_sink_name() -> String {
    "kafka".to_owned()
}

/// `kind = "redis_stream"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamSinkConfig {
    /// Sink name (metrics label, cursor file name).
    #[serde(default = "default_redis_stream_sink_name")]
    pub name: String,
    /// `redis://` or `rediss://` URL.
    pub url: String,
    /// Stream key.
    pub stream: String,
    /// Approximate length kept (`XADD ... MAXLEN ~ n`).
    #[serde(default = "default_stream_maxlen")]
    pub maxlen: u64,
    /// Bound on one batch (connect + pipeline round trip): a dead or frozen Redis fails the batch,
    /// which the tail driver retries from the log, instead of hanging it.
    #[serde(default = "default_stream_timeout_ms")]
    pub timeout_ms: u64,
    /// `[samples.sinks.tail]`: batch size, retry backoff and shutdown drain of this sink's driver.
    #[serde(default)]
    pub tail: TailConfig,
}

const fn default_stream_maxlen() -> u64 {
    1_000_000
}

const fn default_kafka_message_timeout_ms() -> u64 {
    30_000
}

const fn default_stream_timeout_ms() -> u64 {
    5_000
}

/// `kind = "parquet"`: samples as Parquet files partitioned by prediction hour and scene,
/// `<dir>/dt=YYYY-MM-DD/hour=HH/scene=<scene>/part-<first seq>-<last seq>.parquet`, committed by
/// rename, with `<dir>/dt=YYYY-MM-DD/hour=HH/_SUCCESS` once no more samples can land in the hour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// Sink name (metrics label, cursor file name).
    #[serde(default = "default_parquet_sink_name")]
    pub name: String,
    /// Root directory of the files (created if missing).
    pub dir: PathBuf,
    /// Rows per Parquet row group: the rows each open file holds in memory before they are
    /// encoded to it, so memory is about open files x row_group_rows x row size.
    #[serde(default = "default_parquet_row_group_rows")]
    pub row_group_rows: usize,
    /// A part is committed once it holds this many rows.
    #[serde(default = "default_parquet_max_file_rows")]
    pub max_file_rows: usize,
    /// ... or once it has been open this long, in s: the sink's cursor (and with it the sample
    /// log's disk) stays behind the oldest uncommitted row, so this bounds both how stale the
    /// files are and how much log a busy hour keeps.
    #[serde(default = "default_parquet_commit_interval_s")]
    pub commit_interval_s: u64,
    /// An hour is closed (its open parts committed and `_SUCCESS` written) once the samples seen
    /// were emitted this long after `samples.join.window_s` past the hour's end, in s: slack for
    /// emission ticks, the Redis store's `close_grace_ms` and clock steps. A sample for an hour
    /// already closed is still written (a new part) and counted as late.
    #[serde(default = "default_parquet_close_grace_s")]
    pub close_grace_s: u64,
    /// Parts open at once at most (one per hour and scene being written); opening one more
    /// commits the oldest first, bounding memory when old hours receive late samples.
    #[serde(default = "default_parquet_max_open_files")]
    pub max_open_files: usize,
    /// `[samples.sinks.tail]`: batch size, retry backoff and shutdown drain of this sink's driver.
    #[serde(default)]
    pub tail: TailConfig,
}

fn default_parquet_sink_name() -> String {
    "parquet".to_owned()
}

const fn default_parquet_row_group_rows() -> usize {
    16_384
}

const fn default_parquet_max_file_rows() -> usize {
    1_000_000
}

const fn default_parquet_commit_interval_s() -> u64 {
    300
}

const fn default_parquet_close_grace_s() -> u64 {
    900
}

const fn default_parquet_max_open_files() -> usize {
    16
}

/// `[samples.sinks.tail]`: how a sink's tail driver (`src/sample_log/tail.rs`) batches, retries and
/// drains. Every key has a
/// default, so a sink section without it runs as before.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// Records per `deliver` call at most: bounds the memory a batch holds and the work a retry
    /// repeats.
    #[serde(default = "default_tail_batch_max")]
    pub batch_max: usize,
    /// First retry delay after a failure, in ms; doubles per consecutive failure...
    #[serde(default = "default_tail_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// ... up to this, in ms.
    #[serde(default = "default_tail_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// After shutdown began, how long (ms) the driver keeps delivering to catch up before it gives
    /// up (what is left stays in the log for the next start). Spent inside the shutdown grace.
    #[serde(default = "default_tail_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

const fn default_tail_batch_max() -> usize {
    512
}

const fn default_tail_backoff_min_ms() -> u64 {
    100
}

const fn default_tail_backoff_max_ms() -> u64 {
    30_000
}

const fn default_tail_drain_timeout_ms() -> u64 {
    5_000
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            batch_max: default_tail_batch_max(),
            backoff_min_ms: default_tail_backoff_min_ms(),
            backoff_max_ms: default_tail_backoff_max_ms(),
            drain_timeout_ms: default_tail_drain_timeout_ms(),
        }
    }
}

impl TailConfig {
    /// Checks the bounds; `key` is the section's dotted path (`samples.sinks[0].tail`), named in
    /// the error with the offending field.
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        let check = |field: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(Invalid {
                    key: format!("{key}.{field}"),
                    problem: format!("must be between {min} and {max} (got {value})"),
                })
            }
        };
        // A Kafka batch waits for every report; beyond ~100k records a retry repeats too much.
        check("batch_max", self.batch_max as u64, 1, 100_000)?;
        check("backoff_min_ms", self.backoff_min_ms, 1, 600_000)?;
        check("backoff_max_ms", self.backoff_max_ms, self.backoff_min_ms, 600_000)?;
        check("drain_timeout_ms", self.drain_timeout_ms, 0, 600_000)
    }

    /// `backoff_min_ms` as a duration.
    pub fn backoff_min(&self) -> Duration {
        Duration::from_millis(self.backoff_min_ms)
    }

    /// `backoff_max_ms` as a duration.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }

    /// `drain_timeout_ms` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// The event types every deployment accepts.
pub const BUILTIN_EVENT_TYPES: [&str; 3] = ["impression", "click", "conversion"];

impl SamplesConfig {
    /// Checks the section; `scenes` are the configured scene names `scene_rates` may name.
    pub fn validate(&self, scenes: &[&str]) -> Result<(), Invalid> {
        let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
        if !rate_ok(self.rate) {
            return Err(invalid("samples.rate", &format!("{} is not within 0.0..=1.0", self.rate)));
        }
        for (scene, rate) in &self.scene_rates {
            let key = format!("samples.scene_rates.{scene}");
            if !rate_ok(*rate) {
                return Err(invalid(&key, &format!("{rate} is not within 0.0..=1.0")));
            }
            if !scenes.contains(&scene.as_str()) {
                return Err(invalid(&key, "names no configured scene"));
            }
        }
        in_range("samples.queue_capacity", self.queue_capacity, 1, 1 << 24)?;
        in_range("samples.block_timeout_ms", self.block_timeout_ms as usize, 0, 10_000)?;
        let j = &self.join;
        in_range("samples.join.window_s", j.window_s as usize, 1, 7 * 86_400)?;
        in_range("samples.join.tick_ms", j.tick_ms as usize, 1, 60_000)?;
        in_range("samples.join.max_future_skew_s", j.max_future_skew_s as usize, 0, 86_400)?;
        for (i, custom) in j.event_types.iter().enumerate() {
            if custom.is_empty() || BUILTIN_EVENT_TYPES.contains(&custom.as_str()) {
                return Err(invalid(
                    &format!("samples.join.event_types[{i}]"),
                    &format!("`{custom}` must be non-empty and not one of {BUILTIN_EVENT_TYPES:?}"),
                ));
            }
        }
        for (event, wait) in &j.positive_wait_s {
            let key = format!("samples.join.positive_wait_s.{event}");
            if !self.is_event_type(event) {
                return Err(invalid(&key, "is not a known event type (add it to samples.join.event_types)"));
            }
            if *wait >= j.window_s {
                return Err(invalid(
                    &key,
                    &format!("{wait} s must be shorter than samples.join.window_s ({})", j.window_s),
                ));
            }
        }
        match &j.store {
            JoinStoreConfig::Memory { max_bytes } => {
                in_range("samples.join.store.max_bytes", *max_bytes, 1 << 16, usize::MAX)?
            }
            JoinStoreConfig::Redis { url, timeout_ms, shards, lease_ms, close_grace_ms, .. } => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(invalid("samples.join.store.url", "must be a redis:// or rediss:// URL"));
                }
                in_range("samples.join.store.timeout_ms", *timeout_ms as usize, 1, 60_000)?;
                in_range("samples.join.store.shards", *shards as usize, 1, 1024)?;
                in_range("samples.join.store.lease_ms", *lease_ms as usize, 1_000, 3_600_000)?;
                in_range("samples.join.store.close_grace_ms", *close_grace_ms as usize, 10_000, 86_400_000)?;
                if close_grace_ms <= lease_ms {
                    // A claim whose lease lapses is taken again only while the hash is there.
                    return Err(invalid(
                        "samples.join.store.close_grace_ms",
                        &format!("must be more than samples.join.store.lease_ms ({lease_ms})"),
                    ));
                }
            }
        }
        let l = &self.log;
        if l.dir.as_os_str().is_empty() {
            return Err(invalid("samples.log.dir", "must not be empty"));
        }
        in_range("samples.log.segment_max_bytes", l.segment_max_bytes as usize, 4096, 1 << 32)?;
        in_range("samples.log.segment_max_age_s", l.segment_max_age_s as usize, 1, 86_400)?;
        in_range("samples.log.fsync_interval_ms", l.fsync_interval_ms as usize, 1, 60_000)?;
        if l.max_disk_bytes < 2 * l.segment_max_bytes {
            return Err(invalid(
                "samples.log.max_disk_bytes",
                "must hold at least two segments (2 x segment_max_bytes)",
            ));
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            let name = sink.name();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(invalid(
                    &format!("samples.sinks[{i}].name"),
                    "must be non-empty [A-Za-z0-9_-] (it names a file)",
                ));
            }
            if self.sinks[..i].iter().any(|s| s.name() == name) {
                return Err(invalid(&format!("samples.sinks[{i}].name"), &format!("`{name}` is used twice")));
            }
            match sink {
                SinkConfig::Kafka(_) if !cfg!(feature = "kafka") => {
                    return Err(invalid(
                        &format!("samples.sinks[{i}].kind"),
                        "`kafka` needs the `kafka` feature, which this build of augur lacks",
                    ));
                }
                SinkConfig::Kafka(k) => {
                    in_range(
                        &format!("samples.sinks[{i}].message_timeout_ms"),
                        k.message_timeout_ms as usize,
                        1,
                        900_000,
                    )?;
                }
                SinkConfig::RedisStream(r) => {
                    in_range(&format!("samples.sinks[{i}].timeout_ms"), r.timeout_ms as usize, 1, 600_000)?;
                    in_range(&format!("samples.sinks[{i}].maxlen"), r.maxlen as usize, 1, usize::MAX)?;
                }
                SinkConfig::Parquet(_) if !cfg!(feature = "parquet") => {
                    return Err(invalid(
                        &format!("samples.sinks[{i}].kind"),
                        "`parquet` needs the `parquet` feature, which this build of augur lacks",
                    ));
                }
                SinkConfig::Parquet(p) => {
                    if p.dir.as_os_str().is_empty() {
                        return Err(invalid(&format!("samples.sinks[{i}].dir"), "must not be empty"));
                    }
                    in_range(&format!("samples.sinks[{i}].row_group_rows"), p.row_group_rows, 1, 1 << 20)?;
                    // At least one row group per file.
                    in_range(&format!("samples.sinks[{i}].max_file_rows"), p.max_file_rows, p.row_group_rows, 1 << 30)?;
                    in_range(
                        &format!("samples.sinks[{i}].commit_interval_s"),
                        p.commit_interval_s as usize,
                        1,
                        86_400,
                    )?;
                    in_range(&format!("samples.sinks[{i}].close_grace_s"), p.close_grace_s as usize, 0, 86_400)?;
                    in_range(&format!("samples.sinks[{i}].max_open_files"), p.max_open_files, 1, 1024)?;
                }
            }
            sink.tail().validate(&format!("samples.sinks[{i}].tail"))?;
        }
        self.quality.validate(|t| self.is_event_type(t))
    }

    /// Whether `event` is a built-in or configured custom type.
    pub fn is_event_type(&self, event: &str) -> bool {
        BUILTIN_EVENT_TYPES.contains(&event) || self.join.event_types.iter().any(|t| t == event)
    }

    /// The share of `scene`'s requests logged.
    pub fn rate_for(&self, scene: &str) -> f64 {
        self.scene_rates.get(scene).copied().unwrap_or(self.rate)
    }
}

impl SinkConfig {
    /// The sink's name (metrics label and cursor file).
    pub fn name(&self) -> &str {
        match self {
            SinkConfig::Kafka(k) => &k.name,
            SinkConfig::RedisStream(r) => &r.name,
            SinkConfig::Parquet(p) => &p.name,
        }
    }

    /// The sink's tail driver settings.
    pub fn tail(&self) -> &TailConfig {
        match self {
            SinkConfig::Kafka(k) => &k.tail,
            SinkConfig::RedisStream(r) => &r.tail,
            SinkConfig::Parquet(p) => &p.tail,
        }
    }
}

fn default_redis_stream_sink_name() -> String {
    "redis_stream".to_owned()
}
