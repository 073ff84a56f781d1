//! One serde configuration tree: embedded defaults, then a file, then `AUGUR__` environment
//! variables, validated once at start-up so a bad value fails with a message naming its key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// The defaults compiled into the binary (`config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable did not parse into the tree (figment names the key).
    #[error("config: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value parsed but is out of range.
    #[error("config: `{key}` {problem}")]
    Invalid {
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC listener and request limits.
    pub server: ServerConfig,
    /// Inference threads and queue.
    pub model: ModelConfig,
    /// Where feature rows come from.
    pub store: StoreConfig,
    /// Time budget of the feature fetch.
    #[serde(default)]
    pub fetch: FetchConfig,
    /// The scenes served: each pairs a feature spec with a model repository directory.
    pub scenes: Vec<SceneConfig>,
    /// The operator's listeners: admin HTTP (`/metrics`, `/healthz`, `/readyz`) and admin gRPC
    /// (`ModelAdmin`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Log format and filter of `augur serve`.
    #[serde(default)]
    pub log: LogConfig,
    /// Where this instance announces itself (off by default).
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Sample logging: snapshots of what was served, joined with reported events into training
    /// samples (off by default).
    #[serde(default)]
    pub samples: SamplesConfig,
    /// OpenTelemetry traces of `augur serve` (off unless an OTLP endpoint is set).
    #[serde(default)]
    pub trace: TraceConfig,
}

/// `[admin]`: the operator's ports, apart from the public gRPC one: the HTTP port so probes and
/// scrapes are never counted, shed or authenticated like Prediction calls, and the admin gRPC
/// port so `ModelAdmin` (reload, canary, stats reset) is not reachable by every caller that can
/// reach Prediction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Off: no admin HTTP port (metrics stay readable through `ModelAdmin.GetStats`). The admin
    /// gRPC listener is always on: it is the only way to reload or set a canary by hand.
    #[serde(default = "default_admin_enabled")]
    pub enabled: bool,
    /// HTTP address to bind; loopback by default because `/metrics` is unauthenticated. Port 0
    /// picks a free port (tests).
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// gRPC address serving `augur.v1.ModelAdmin`, health and reflection; loopback by default
    /// because ModelAdmin changes what is served. Port 0 picks a free port (tests).
    #[serde(default = "default_admin_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// When set, every admin gRPC call but health checks must carry
    /// `authorization: Bearer <token>` (for an admin port opened beyond loopback).
    #[serde(default)]
    pub auth_token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: default_admin_enabled(),
            listen: default_admin_listen(),
            grpc_listen: default_admin_grpc_listen(),
            auth_token: None,
        }
    }
}

const fn default_admin_enabled() -> bool {
    true
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_admin_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50052))
}

/// `[log]`: how `augur serve` writes its logs (other subcommands keep human logs on stderr).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` for a terminal, `json` (one object per line) for a log collector.
    #[serde(default)]
    pub format: LogFormat,
    /// `tracing` env-filter directives; `RUST_LOG`, when set, overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::default(), level: default_log_level() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Aligned text, coloured on a terminal.
    #[default]
    Human,
    /// One JSON object per line: fields, span context, level, target and message.
    Json,
}

/// `ort=warn`: ONNX Runtime logs every session option at info.
pub const DEFAULT_LOG_LEVEL: &str = "info,ort=warn";

fn default_log_level() -> String {
    DEFAULT_LOG_LEVEL.to_owned()
}

/// `[trace]`: OpenTelemetry spans exported over OTLP/gRPC. Without `otlp_endpoint` no exporter
/// and no OpenTelemetry layer exist, so the request path pays nothing for its trace spans.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// The collector's OTLP/gRPC URL, e.g. `http://127.0.0.1:4317`; unset = tracing off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource: how the backend groups this service's traces.
    #[serde(default = "default_trace_service_name")]
    pub service_name: String,
    /// Share of new traces recorded (0..=1). A caller's `traceparent` decides for its own trace,
    /// so one request is never half-recorded across services.
    #[serde(default = "default_trace_sample_ratio")]
    pub sample_ratio: f64,
    /// How long ended spans wait to be sent in one batch: larger batches, later traces.
    #[serde(default = "default_trace_export_delay_ms")]
    pub export_delay_ms: u64,
    /// Bound of one export call; a hung collector costs at most this per batch.
    #[serde(default = "default_trace_export_timeout_ms")]
    pub export_timeout_ms: u64,
    /// Ended spans waiting for export. When the collector falls behind, newer spans are dropped
    /// rather than requests slowed down or memory grown.
    #[serde(default = "default_trace_max_queue_spans")]
    pub max_queue_spans: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            otlp_endpoint: None,
            service_name: default_trace_service_name(),
            sample_ratio: default_trace_sample_ratio(),
            export_delay_ms: default_trace_export_delay_ms(),
            export_timeout_ms: default_trace_export_timeout_ms(),
            max_queue_spans: default_trace_max_queue_spans(),
        }
    }
}

fn default_trace_service_name() -> String {
    "augur".to_owned()
}
const fn default_trace_sample_ratio() -> f64 {
    1.0
}
const fn default_trace_export_delay_ms() -> u64 {
    1_000
}
const fn default_trace_export_timeout_ms() -> u64 {
    10_000
}
const fn default_trace_max_queue_spans() -> usize {
    8_192
}

/// `[registry]`: the service registry this instance registers in after it turns SERVING and
/// leaves at shutdown step (1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistryConfig {
    /// Not registered anywhere (callers find augur by a fixed address or a Kubernetes Service).
    #[default]
    None,
    /// etcd, in the format gRPC-Go's etcd resolver reads (`src/registry/etcd.rs`).
    Etcd(EtcdConfig),
}

/// `registry.kind = "etcd"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Service names: one key `<service>/<advertise>` each. None may be a prefix of another: the
    /// Go resolver watches `<service>` as a prefix without a trailing slash, so `augur` would
    /// also resolve every `augur-canary` instance.
    #[serde(default = "default_registry_services")]
    pub services: Vec<String>,
    /// `host:port` callers reach this instance at; default: the bound address. Required when
    /// listening on 0.0.0.0/[::] or port 0 (pods sit behind NAT; the bound address means
    /// nothing to callers then).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Lease TTL in seconds: a crashed instance disappears from callers within it. Kept alive
    /// every third of it.
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: u64,
    /// The endpoint's `Metadata`, stored as a JSON string (version, zone, weight, ...) — a
    /// string because an object makes grpc-go panic (etcd-io/etcd#19700).
    #[serde(default)]
    pub metadata: Option<String>,
    /// Start-up waits this long for etcd to answer before failing, in ms; also bounds each etcd
    /// call of a (re-)registration.
    #[serde(default = "default_registry_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Bound on deregistration at shutdown, in ms: a dead etcd cannot hold up the drain (the
    /// lease then expires within `lease_ttl_s`).
    #[serde(default = "default_deregister_timeout_ms")]
    pub deregister_timeout_ms: u64,
}

fn default_registry_services() -> Vec<String> {
    vec!["augur".to_owned()]
}
const fn default_lease_ttl_s() -> u64 {
    10
}
const fn default_registry_connect_timeout_ms() -> u64 {
    5_000
}
const fn default_deregister_timeout_ms() -> u64 {
    2_000
}

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
        /// `redis://` or `rediss://` URL of one node.
        url: String,
        /// First part of every key.
        #[serde(default = "default_redis_namespace")]
        namespace: String,
        /// Bound on one Redis call, in ms.
        #[serde(default = "default_join_redis_timeout_ms")]
        timeout_ms: u64,
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

fn default_redis_stream_sink_name() -> String {
    "redis_stream".to_owned()
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
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let check = |field: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
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

/// Time budget of the feature fetch: min(`max_budget_ms`, caller's deadline − `inference_reserve_ms`).
/// When it runs out the request is answered with spec defaults and a degraded-feature report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// Cap on the fetch, whatever the caller's deadline.
    #[serde(default = "default_fetch_budget_ms")]
    pub max_budget_ms: u64,
    /// Kept back from the caller's deadline for assembly and inference.
    #[serde(default = "default_inference_reserve_ms")]
    pub inference_reserve_ms: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig { max_budget_ms: default_fetch_budget_ms(), inference_reserve_ms: default_inference_reserve_ms() }
    }
}

const fn default_fetch_budget_ms() -> u64 {
    100
}
const fn default_inference_reserve_ms() -> u64 {
    10
}

/// gRPC listener and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Candidates per request above which Predict answers INVALID_ARGUMENT: bounds the work one
    /// caller can ask for.
    #[serde(default = "default_max_candidates")]
    pub max_candidates: usize,
    /// Longest string value (ids, string features), in bytes.
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Longest list feature value accepted in a request.
    #[serde(default = "default_max_list_len")]
    pub max_list_len: usize,
    /// Largest decoded gRPC message, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Prediction RPCs handled at once by the whole server; one more is answered
    /// RESOURCE_EXHAUSTED at once (load shedding) instead of queueing. Health checks, reflection
    /// and admin calls are not counted, so probes keep answering under overload.
    #[serde(default = "default_concurrency_limit")]
    pub concurrency_limit: usize,
    /// augur answers DEADLINE_EXCEEDED this long before the caller's `grpc-timeout` runs out, so
    /// the caller gets augur's status rather than a transport cancellation.
    #[serde(default = "default_deadline_margin_us")]
    pub deadline_margin_us: u64,
    /// Deadline of a call that sends no `grpc-timeout`, in ms: nothing waits forever.
    #[serde(default = "default_default_deadline_ms")]
    pub default_deadline_ms: u64,
    /// Longest deadline honoured, in ms; a longer `grpc-timeout` is clamped to it.
    #[serde(default = "default_max_deadline_ms")]
    pub max_deadline_ms: u64,
    /// HTTP/2 and connection limits, set explicitly (tonic leaves several unlimited).
    #[serde(default)]
    pub http2: Http2Config,
    /// Shutdown: after NOT_SERVING (and deregistration), keep accepting this long so clients and
    /// load balancers move away before the listener closes, in ms.
    #[serde(default)]
    pub drain_delay_ms: u64,
    /// Shutdown: the most the ordered drain may take after the signal, in ms; past it the process
    /// exits and logs what was cut.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// TLS on the public port (mTLS with `client_ca_path`); plaintext when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// When set, every call but health checks must carry `authorization: Bearer <token>`.
    #[serde(default)]
    pub auth_token: Option<String>,
}

const fn default_default_deadline_ms() -> u64 {
    2_000
}
const fn default_max_deadline_ms() -> u64 {
    60_000
}
const fn default_grace_ms() -> u64 {
    10_000
}

/// `[server.tls]`: PEM files, read at start-up (a missing or unreadable file fails start-up
/// naming the key). rustls (ring) through tonic; no OpenSSL at run time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate chain (PEM).
    pub cert_path: PathBuf,
    /// Its private key (PEM).
    pub key_path: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    #[serde(default)]
    pub client_ca_path: Option<PathBuf>,
}

/// `[server.http2]`: per-connection limits of the public listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Config {
    /// Streams (RPCs) one connection may have open at once; tonic's default is unlimited.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Streams a client may reset before they are accepted (the HTTP/2 rapid-reset attack).
    #[serde(default = "default_max_pending_accept_reset_streams")]
    pub max_pending_accept_reset_streams: usize,
    /// Largest request header block, in bytes.
    #[serde(default = "default_max_header_list_size")]
    pub max_header_list_size: u32,
    /// PING an idle connection this often, in ms (0 = never), so dead peers are noticed.
    #[serde(default = "default_keepalive_interval_ms")]
    pub keepalive_interval_ms: u64,
    /// Close a connection whose PING is not answered within this, in ms.
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// Send GOAWAY after a connection lived this long, in ms (0 = never), so long-lived client
    /// connections rebalance over new replicas.
    #[serde(default = "default_max_connection_age_ms")]
    pub max_connection_age_ms: u64,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: default_max_concurrent_streams(),
            max_pending_accept_reset_streams: default_max_pending_accept_reset_streams(),
            max_header_list_size: default_max_header_list_size(),
            keepalive_interval_ms: default_keepalive_interval_ms(),
            keepalive_timeout_ms: default_keepalive_timeout_ms(),
            max_connection_age_ms: default_max_connection_age_ms(),
        }
    }
}

const fn default_max_concurrent_streams() -> u32 {
    1024
}
const fn default_max_pending_accept_reset_streams() -> usize {
    20
}
const fn default_max_header_list_size() -> u32 {
    16 * 1024
}
const fn default_keepalive_interval_ms() -> u64 {
    30_000
}
const fn default_keepalive_timeout_ms() -> u64 {
    10_000
}
const fn default_max_connection_age_ms() -> u64 {
    30 * 60 * 1000
}

const fn default_deadline_margin_us() -> u64 {
    1000
}

const fn default_max_candidates() -> usize {
    4000
}
const fn default_max_string_bytes() -> usize {
    1024
}
const fn default_max_list_len() -> usize {
    256
}
const fn default_max_message_bytes() -> usize {
    16 * 1024 * 1024
}
const fn default_concurrency_limit() -> usize {
    256
}

/// Inference threads and their queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Dedicated inference threads per model, each with its own ONNX Runtime session (`run` needs
    /// `&mut`). One keeps a 2-core machine free for the async workers.
    #[serde(default = "default_inference_threads")]
    pub inference_threads: usize,
    /// ONNX Runtime intra-op threads per session.
    #[serde(default = "default_intra_op_threads")]
    pub intra_op_threads: usize,
    /// Inference jobs waiting for a thread; beyond this Predict fails fast with RESOURCE_EXHAUSTED
    /// instead of queueing without bound.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Explicit ONNX Runtime library; else `ORT_DYLIB_PATH`, else the project's `.venv`.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// Rows per model run; a repository's `model.yaml` may override it.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// How long a queued request waits for others to share its model run, in microseconds;
    /// `model.yaml` may override it.
    #[serde(default = "default_max_queue_delay_us")]
    pub max_queue_delay_us: u64,
    /// Rescan model repositories this often even without a file-system event (the inotify
    /// fallback); 0 disables polling.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// React to file-system events in the repositories (inotify via `notify`).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// CPU priority of the thread that reads and optimises a new version while the old one
    /// serves: `idle` (the default; Linux `SCHED_IDLE`: runs only on CPU nothing else wants, and
    /// yields at once when a serving thread wakes) or `low` (nice 19). `idle` keeps p99 during
    /// a hot reload near steady (BENCHMARKS.md, "Hot reload: loader priority"); on a host
    /// saturated by other work it would starve the load, hence `load_idle_limit_ms`.
    #[serde(default)]
    pub load_priority: LoadPriority,
    /// With `load_priority = "idle"`, a load still running after this many milliseconds
    /// continues at nice 19 (`low`), so a busy host delays a new version by at most this much
    /// more than `low` would.
    #[serde(default = "default_load_idle_limit_ms")]
    pub load_idle_limit_ms: u64,
}

/// `model.load_priority`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPriority {
    /// Nice 19: the lowest normal priority; a load still gets a small share of a busy host.
    Low,
    /// `SCHED_IDLE` on Linux (elsewhere the same as `low`), then nice 19 after
    /// `model.load_idle_limit_ms`.
    #[default]
    Idle,
}

const fn default_max_batch_rows() -> usize {
    256
}
const fn default_max_queue_delay_us() -> u64 {
    1000
}
const fn default_load_idle_limit_ms() -> u64 {
    30_000
}
const fn default_poll_interval_ms() -> u64 {
    5000
}
const fn default_true() -> bool {
    true
}

const fn default_inference_threads() -> usize {
    1
}
const fn default_intra_op_threads() -> usize {
    1
}
const fn default_queue_capacity() -> usize {
    1024
}

/// Where feature rows come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// Tables loaded from CSV or JSONL files into memory at start-up.
    Memory {
        /// The tables; a feature spec refers to them by name.
        #[serde(default)]
        tables: Vec<TableConfig>,
    },
    /// Redis or Redis Cluster, one hash per entity (`src/fetch/redis.rs` describes the layout).
    Redis(RedisConfig),
}

/// `store.kind = "redis"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port[/db]`: exactly one for a single node; with `cluster = true`
    /// any number of seed nodes (the rest of the cluster is discovered from them).
    #[serde(default = "default_redis_urls")]
    pub urls: Vec<String>,
    /// Redis Cluster instead of a single node.
    #[serde(default)]
    pub cluster: bool,
    /// First part of every key, so several deployments (or a staging copy) can share a Redis.
    #[serde(default = "default_redis_namespace")]
    pub namespace: String,
    /// Key of one row: `{namespace}`, `{table}` and `{id}` placeholders; `{{`/`}}` are literal
    /// braces (Redis Cluster hash tags — the default has none, so rows spread over all masters).
    #[serde(default = "default_redis_key_template")]
    pub key_template: KeyTemplate,
    /// Bound on one read (all rows of a request's table), in ms: a hung or restarting Redis costs
    /// a request at most this long.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// Bound on establishing a connection, in ms (start-up and every reconnection attempt).
    #[serde(default = "default_redis_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Multiplexed connections to a single node, used in turn by successive reads. One
    /// connection's replies are parsed by one task; more connections spread that parsing over
    /// the async workers, for hosts where that task becomes the limit. On 2 cores 1 and 2
    /// measured the same (BENCHMARKS.md, "Fetch stage against Redis"). A cluster keeps one
    /// connection per node.
    #[serde(default = "default_redis_connections")]
    pub connections: usize,
    /// CA certificate (PEM) that signed the server's certificate, for `rediss://` URLs to a Redis
    /// with a private CA; without it the system's roots are used.
    #[serde(default)]
    pub tls_ca_path: Option<PathBuf>,
    /// Local cache of hot rows, per table.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Source files of the tables: not read by the service, but the defaults of
    /// `augur features load --table NAME` (`--file` = `path`, `--key-column` = `key`). Kept
    /// under the same name as the memory store's so a file that switches `kind` over the
    /// embedded defaults still parses.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
}

fn default_redis_urls() -> Vec<String> {
    vec!["redis://127.0.0.1:6379".to_owned()]
}
fn default_redis_namespace() -> String {
    "augur".to_owned()
}
const fn default_redis_timeout_ms() -> u64 {
    50
}
const fn default_redis_connections() -> usize {
    1
}
const fn default_redis_connect_timeout_ms() -> u64 {
    1000
}

/// Local row cache in front of a remote store: `[store.cache.tables.<table>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Tables cached, by name; tables not listed are always read from the store.
    #[serde(default)]
    pub tables: BTreeMap<String, TableCacheConfig>,
}

/// Caching of one table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableCacheConfig {
    /// Switch a listed table off without deleting its settings.
    #[serde(default = "default_cache_enabled")]
    pub enabled: bool,
    /// Rows kept at most (LRU/LFU eviction beyond): bounds the memory a hot table can take.
    #[serde(default = "default_cache_max_entries")]
    pub max_entries: u64,
    /// How long a row is served from the cache, in ms: the staleness accepted after a reload.
    #[serde(default = "default_cache_ttl_ms")]
    pub ttl_ms: u64,
    /// How long "no such row" is cached, in ms (0 = not cached): shorter than `ttl_ms` so that
    /// newly loaded ids appear quickly, yet a flood of unknown ids costs one read per period.
    #[serde(default = "default_cache_negative_ttl_ms")]
    pub negative_ttl_ms: u64,
}

const fn default_cache_enabled() -> bool {
    true
}
const fn default_cache_max_entries() -> u64 {
    100_000
}
const fn default_cache_ttl_ms() -> u64 {
    30_000
}
const fn default_cache_negative_ttl_ms() -> u64 {
    5_000
}

/// One in-memory table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Name the feature specs use (`entities.user.table`).
    pub name: String,
    /// `.csv` (header row; list values joined by `|`) or `.jsonl` (one object per line).
    pub path: PathBuf,
    /// Column holding the entity id.
    pub key: String,
}

/// One served scene.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneConfig {
    /// Name callers put in `PredictRequest.scene`.
    pub name: String,
    /// The feature spec (YAML).
    pub spec: PathBuf,
    /// Model repository directory: `<model>/<version>/model.onnx`; the highest version is served.
    /// With a `source`, it is the local copy the bucket's versions are materialised into.
    pub model: PathBuf,
    /// Where new versions come from besides the directory itself: a bucket that an export to
    /// deploys ("export is deploy"). Absent: the directory is the only source.
    #[serde(default)]
    pub source: Option<SourceConfig>,
}

/// A bucket that model versions are published to (`augur models publish`) and polled from.
///
/// Layout under `url`: `<prefix>/<model>/LATEST` names the served version,
/// `<prefix>/<model>/<version>/` holds its files and `_COMPLETE.json` (sizes and SHA-256), where
/// `<model>` is the last component of the scene's `model` directory. Credentials come from the
/// standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, ...) or `options`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `s3://bucket[/prefix]`.
    pub url: String,
    /// An S3-compatible endpoint (MinIO, moto, Ceph, ...); absent: AWS itself (or
    /// `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Bucket region; absent: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint (local object stores, tests). Off by default so credentials
    /// never cross the network in clear by accident.
    #[serde(default)]
    pub allow_http: bool,
    /// How often `LATEST` is polled (one conditional GET when nothing changed).
    #[serde(default = "default_source_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Each wait is the interval times a random factor in `1 ± jitter`, so a fleet of replicas
    /// does not poll in lockstep.
    #[serde(default = "default_source_jitter")]
    pub jitter: f64,
    /// The largest version (sum of its files) that is downloaded; a bigger marker is rejected
    /// before anything is fetched, so a wrong upload cannot fill the disk.
    #[serde(default = "default_source_max_version_bytes")]
    pub max_version_bytes: u64,
    /// Materialised versions kept locally below `LATEST` (it included), so the disk holds a
    /// bounded number of models however often they are published; older ones are deleted
    /// (rolling back further downloads them again). 0 keeps every version. Raise it when
    /// `model.yaml` pins or canaries older versions.
    #[serde(default = "default_source_keep_versions")]
    pub keep_versions: usize,
    /// How long one request to the bucket may take before the poll counts as failed.
    #[serde(default = "default_source_timeout_ms")]
    pub timeout_ms: u64,
    /// Further `object_store` S3 options by their string keys (`aws_access_key_id`,
    /// `aws_virtual_hosted_style_request`, ...); prefer the environment for secrets.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

const fn default_source_poll_interval_ms() -> u64 {
    30_000
}
const fn default_source_jitter() -> f64 {
    0.1
}
const fn default_source_max_version_bytes() -> u64 {
    4 << 30
}
const fn default_source_keep_versions() -> usize {
    5
}
const fn default_source_timeout_ms() -> u64 {
    30_000
}

// === impl SourceConfig ===

impl SourceConfig {
    /// A source for `url` with every other setting at its default (the `AWS_*` environment
    /// fills in endpoint, region and credentials): what the tools use without a scene source.
    pub fn from_url(url: &str) -> Self {
        SourceConfig {
            url: url.to_owned(),
            endpoint: None,
            region: None,
            allow_http: false,
            poll_interval_ms: default_source_poll_interval_ms(),
            jitter: default_source_jitter(),
            max_version_bytes: default_source_max_version_bytes(),
            timeout_ms: default_source_timeout_ms(),
            keep_versions: default_source_keep_versions(),
            options: BTreeMap::new(),
        }
    }

    /// Checks the values serde cannot; `key` is the dotted path of this table.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let Some(rest) = self.url.strip_prefix("s3://") else {
            return Err(invalid(&format!("{key}.url"), &format!("`{}` is not an s3://bucket[/prefix] URL", self.url)));
        };
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(invalid(&format!("{key}.url"), "names no bucket (want s3://bucket[/prefix])"));
        }
        in_range(&format!("{key}.poll_interval_ms"), self.poll_interval_ms as usize, 10, 86_400_000)?;
        if !(0.0..=0.9).contains(&self.jitter) {
            return Err(invalid(&format!("{key}.jitter"), &format!("must be between 0 and 0.9 (got {})", self.jitter)));
        }
        if self.max_version_bytes == 0 {
            return Err(invalid(&format!("{key}.max_version_bytes"), "must be positive"));
        }
        in_range(&format!("{key}.timeout_ms"), self.timeout_ms as usize, 1, 3_600_000)?;
        in_range(&format!("{key}.keep_versions"), self.keep_versions, 0, 10_000)?;
        Ok(())
    }
}

// === impl KeyTemplate ===

/// A compiled key template: `{namespace}`, `{table}` and `{id}` placeholders, `{{`/`}}` escapes.
/// Parsed when the config is (serde `try_from`), so a bad template fails start-up naming
/// `store.key_template`; the store binds the namespace with [`KeyTemplate::with_namespace`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Namespace,
    Table,
    Id,
}

// === impl KeyTemplate ===

impl KeyTemplate {
    /// Compiles `template`. It must contain `{table}` (tables sharing ids must not collide) and
    /// `{id}`.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed `{{{name}` in `{template}`")),
                        }
                    }
                    let part = match name.as_str() {
                        "namespace" => Part::Namespace,
                        "table" => Part::Table,
                        "id" => Part::Id,
                        other => {
                            return Err(format!(
                                "unknown placeholder `{{{other}}}` (use {{namespace}}, {{table}}, \
                                 {{id}}; {{{{ and }}}} for literal braces)"
                            ));
                        }
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                '}' => return Err(format!("unmatched `}}` in `{template}` (write `}}}}`)")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        for (needed, part) in [("{table}", Part::Table), ("{id}", Part::Id)] {
            if !parts.contains(&part) {
                return Err(format!("`{template}` must contain {needed}"));
            }
        }
        Ok(KeyTemplate { parts })
    }

    /// The template with `{namespace}` replaced by `namespace` (adjacent literals merged, so
    /// building a key stays one pass over few parts).
    pub fn with_namespace(&self, namespace: &str) -> KeyTemplate {
        let mut parts: Vec<Part> = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let text = match part {
                Part::Namespace => namespace,
                Part::Literal(s) => s.as_str(),
                other => {
                    parts.push(other.clone());
                    continue;
                }
            };
            match parts.last_mut() {
                Some(Part::Literal(prev)) => prev.push_str(text),
                _ => parts.push(Part::Literal(text.to_owned())),
            }
        }
        KeyTemplate { parts }
    }

    /// The key of `id` in `table` (a `{namespace}` not yet bound is written as empty).
    pub fn key(&self, table: &str, id: &str) -> String {
        let mut key = String::with_capacity(32 + table.len() + id.len());
        self.write_key(&mut key, table, id);
        key
    }

    /// Appends the key of `id` in `table` to `out` (the loader reuses one buffer).
    pub fn write_key(&self, out: &mut String, table: &str, id: &str) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Namespace => {}
                Part::Table => out.push_str(table),
                Part::Id => out.push_str(id),
            }
        }
    }
}

impl TryFrom<String> for KeyTemplate {
    type Error = String;

    fn try_from(template: String) -> Result<Self, String> {
        // figment attributes a `try_from` error to the enclosing table only: name the key here.
        KeyTemplate::parse(&template).map_err(|e| format!("store.key_template: {e}"))
    }
}

fn default_redis_key_template() -> KeyTemplate {
    KeyTemplate::parse("{namespace}:{table}:{id}").expect("the default key template parses")
}

// === impl Config ===

impl Config {
    /// Defaults, then `file` (if any), then `AUGUR__` environment variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        Self::from_figment(figment.merge(Env::prefixed("AUGUR__").split("__")))
    }

    /// Parses and validates a TOML document layered over the defaults (tests, embedding).
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        in_range("server.max_candidates", s.max_candidates, 1, 100_000)?;
        in_range("server.max_string_bytes", s.max_string_bytes, 1, 1 << 20)?;
        in_range("server.max_list_len", s.max_list_len, 1, 100_000)?;
        in_range("server.max_message_bytes", s.max_message_bytes, 1024, 1 << 30)?;
        in_range("server.concurrency_limit", s.concurrency_limit, 1, 1 << 20)?;
        in_range("server.deadline_margin_us", s.deadline_margin_us as usize, 0, 60_000_000)?;
        in_range("server.max_deadline_ms", s.max_deadline_ms as usize, 1, 86_400_000)?;
        in_range("server.default_deadline_ms", s.default_deadline_ms as usize, 1, s.max_deadline_ms as usize)?;
        in_range("server.drain_delay_ms", s.drain_delay_ms as usize, 0, 600_000)?;
        in_range("server.grace_ms", s.grace_ms as usize, 1, 3_600_000)?;
        if s.auth_token.as_deref().is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(invalid("server.auth_token", "must be non-empty printable ASCII without spaces"));
        }
        if self.admin.auth_token.as_deref().is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(invalid("admin.auth_token", "must be non-empty printable ASCII without spaces"));
        }
        let a = &self.admin;
        let clash = |other: SocketAddr| {
            a.grpc_listen.port() != 0 && a.grpc_listen.port() == other.port() && {
                let (x, y) = (a.grpc_listen.ip(), other.ip());
                x == y || x.is_unspecified() || y.is_unspecified()
            }
        };
        if clash(s.listen) {
            return Err(invalid(
                "admin.grpc_listen",
                &format!("`{}` is also server.listen: ModelAdmin needs its own port", a.grpc_listen),
            ));
        }
        if a.enabled && clash(a.listen) {
            return Err(invalid("admin.grpc_listen", &format!("`{}` is also admin.listen (HTTP)", a.grpc_listen)));
        }
        if let Some(tls) = &s.tls {
            let files = [("cert_path", Some(&tls.cert_path)), ("key_path", Some(&tls.key_path))];
            for (key, path) in files.into_iter().chain([("client_ca_path", tls.client_ca_path.as_ref())]) {
                if let Some(path) = path
                    && !path.is_file()
                {
                    return Err(invalid(
                        &format!("server.tls.{key}"),
                        &format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
        let h = &s.http2;
        in_range("server.http2.max_concurrent_streams", h.max_concurrent_streams as usize, 1, 1 << 20)?;
        in_range("server.http2.max_pending_accept_reset_streams", h.max_pending_accept_reset_streams, 1, 1 << 20)?;
        in_range("server.http2.max_header_list_size", h.max_header_list_size as usize, 1024, 1 << 24)?;
        in_range("server.http2.keepalive_interval_ms", h.keepalive_interval_ms as usize, 0, 86_400_000)?;
        in_range("server.http2.keepalive_timeout_ms", h.keepalive_timeout_ms as usize, 1, 86_400_000)?;
        in_range("server.http2.max_connection_age_ms", h.max_connection_age_ms as usize, 0, 30 * 86_400_000)?;
        in_range("fetch.max_budget_ms", self.fetch.max_budget_ms as usize, 1, 60_000)?;
        in_range("fetch.inference_reserve_ms", self.fetch.inference_reserve_ms as usize, 0, 60_000)?;
        let m = &self.model;
        in_range("model.inference_threads", m.inference_threads, 1, 256)?;
        in_range("model.intra_op_threads", m.intra_op_threads, 1, 256)?;
        in_range("model.queue_capacity", m.queue_capacity, 1, 1 << 20)?;
        in_range("model.max_batch_rows", m.max_batch_rows, 1, 1 << 16)?;
        in_range("model.max_queue_delay_us", m.max_queue_delay_us as usize, 0, 1_000_000)?;
        in_range("model.load_idle_limit_ms", m.load_idle_limit_ms as usize, 1, 3_600_000)?;
        if self.scenes.is_empty() {
            return Err(invalid("scenes", "must list at least one scene"));
        }
        for (i, scene) in self.scenes.iter().enumerate() {
            if scene.name.is_empty() {
                return Err(invalid(&format!("scenes[{i}].name"), "must not be empty"));
            }
            if self.scenes[..i].iter().any(|s| s.name == scene.name) {
                return Err(invalid(&format!("scenes[{i}].name"), &format!("`{}` is listed twice", scene.name)));
            }
            if let Some(source) = &scene.source {
                source.validate(&format!("scenes[{i}].source"))?;
                if scene.model.file_name().is_none() {
                    return Err(invalid(
                        &format!("scenes[{i}].model"),
                        "must end in a directory name: it names the model in the bucket",
                    ));
                }
            }
        }
        if self.log.level.trim().is_empty() {
            return Err(invalid("log.level", "must not be empty (e.g. \"info,ort=warn\")"));
        }
        let tables = match &self.store {
            StoreConfig::Memory { tables } => tables,
            StoreConfig::Redis(redis) => {
                redis.validate()?;
                &redis.tables
            }
        };
        for (i, table) in tables.iter().enumerate() {
            if tables[..i].iter().any(|t| t.name == table.name) {
                return Err(invalid(&format!("store.tables[{i}].name"), &format!("`{}` is listed twice", table.name)));
            }
        }
        if let RegistryConfig::Etcd(etcd) = &self.registry {
            etcd.validate(self.server.listen)?;
        }
        if self.samples.enabled {
            self.samples.validate(&self.scenes)?;
        }
        self.trace.validate()
    }
}

// === impl TraceConfig ===

impl TraceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let uri = endpoint.parse::<http::Uri>().ok();
            if !uri.is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()) {
                return Err(invalid(
                    "trace.otlp_endpoint",
                    &format!("`{endpoint}` is not an http:// or https:// URL (e.g. \"http://127.0.0.1:4317\")"),
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("trace.service_name", "must not be empty"));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid("trace.sample_ratio", &format!("must be between 0 and 1 (got {})", self.sample_ratio)));
        }
        in_range("trace.export_delay_ms", self.export_delay_ms as usize, 1, 600_000)?;
        in_range("trace.export_timeout_ms", self.export_timeout_ms as usize, 1, 600_000)?;
        in_range("trace.max_queue_spans", self.max_queue_spans, 1, 1 << 24)?;
        Ok(())
    }
}

// === impl EtcdConfig ===

impl EtcdConfig {
    fn validate(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(invalid("registry.endpoints", "must list at least one etcd URL"));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if endpoint.parse::<http::Uri>().is_err() || endpoint.is_empty() {
                return Err(invalid(&format!("registry.endpoints[{i}]"), &format!("`{endpoint}` is not a URL")));
            }
        }
        if self.services.is_empty() {
            return Err(invalid("registry.services", "must list at least one service name"));
        }
        for (i, service) in self.services.iter().enumerate() {
            if service.is_empty() {
                return Err(invalid(&format!("registry.services[{i}]"), "must not be empty"));
            }
            if let Some(other) =
                self.services.iter().enumerate().find(|&(j, o)| j != i && o.starts_with(service.as_str()))
            {
                return Err(invalid(
                    &format!("registry.services[{i}]"),
                    &format!(
                        "`{service}` is a prefix of `{}`: the Go resolver watches the name as a prefix, so its \
                         clients would also reach every `{}` instance",
                        other.1, other.1
                    ),
                ));
            }
        }
        match &self.advertise {
            Some(advertise) => {
                let port =
                    advertise.rsplit_once(':').filter(|(host, _)| !host.is_empty()).map(|(_, p)| p.parse::<u16>());
                if !matches!(port, Some(Ok(p)) if p != 0) {
                    return Err(invalid(
                        "registry.advertise",
                        &format!("`{advertise}` must be host:port with a non-zero port"),
                    ));
                }
            }
            None if listen.ip().is_unspecified() || listen.port() == 0 => {
                return Err(invalid(
                    "registry.advertise",
                    &format!(
                        "is required when server.listen (`{listen}`) is a wildcard address or port 0: set the \
                         host:port callers reach this instance at"
                    ),
                ));
            }
            None => {}
        }
        in_range("registry.lease_ttl_s", self.lease_ttl_s as usize, 2, 86_400)?;
        in_range("registry.connect_timeout_ms", self.connect_timeout_ms as usize, 1, 600_000)?;
        in_range("registry.deregister_timeout_ms", self.deregister_timeout_ms as usize, 1, 600_000)?;
        Ok(())
    }
}

// === impl RedisConfig ===

impl RedisConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.urls.is_empty() || (!self.cluster && self.urls.len() != 1) {
            return Err(invalid(
                "store.urls",
                &format!("must list exactly one URL, or seed nodes with `cluster = true` (got {})", self.urls.len()),
            ));
        }
        for (i, url) in self.urls.iter().enumerate() {
            if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
                return Err(invalid(&format!("store.urls[{i}]"), &format!("`{}`: {e}", redact_url(url))));
            }
        }
        in_range("store.connections", self.connections, 1, 64)?;
        if let Some(path) = &self.tls_ca_path
            && !path.is_file()
        {
            return Err(invalid("store.tls_ca_path", &format!("{} is not a readable file", path.display())));
        }
        if self.namespace.is_empty() {
            return Err(invalid("store.namespace", "must not be empty"));
        }
        in_range("store.timeout_ms", self.timeout_ms as usize, 1, 60_000)?;
        in_range("store.connect_timeout_ms", self.connect_timeout_ms as usize, 1, 600_000)?;
        for (name, table) in &self.cache.tables {
            let key = |field: &str| format!("store.cache.tables.{name}.{field}");
            in_range(&key("max_entries"), table.max_entries as usize, 1, 1 << 32)?;
            in_range(&key("ttl_ms"), table.ttl_ms as usize, 1, 86_400_000)?;
            in_range(&key("negative_ttl_ms"), table.negative_ttl_ms as usize, 0, table.ttl_ms as usize)?;
        }
        Ok(())
    }
}

/// `url` with the password of its userinfo replaced by `***`, for logs and error messages:
/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`. Anything else is unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let authority_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else {
        return url.to_owned();
    };
    match url[scheme_end..at].find(':').map(|i| scheme_end + i) {
        Some(colon) => format!("{}***{}", &url[..=colon], &url[at..]),
        None => url.to_owned(),
    }
}

// === impl SamplesConfig ===

/// The event types every deployment accepts.
pub const BUILTIN_EVENT_TYPES: [&str; 3] = ["impression", "click", "conversion"];

impl SamplesConfig {
    fn validate(&self, scenes: &[SceneConfig]) -> Result<(), ConfigError> {
        let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
        if !rate_ok(self.rate) {
            return Err(invalid("samples.rate", &format!("{} is not within 0.0..=1.0", self.rate)));
        }
        for (scene, rate) in &self.scene_rates {
            let key = format!("samples.scene_rates.{scene}");
            if !rate_ok(*rate) {
                return Err(invalid(&key, &format!("{rate} is not within 0.0..=1.0")));
            }
            if !scenes.iter().any(|s| &s.name == scene) {
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
            JoinStoreConfig::Redis { url, timeout_ms, .. } => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(invalid("samples.join.store.url", "must be a redis:// or rediss:// URL"));
                }
                in_range("samples.join.store.timeout_ms", *timeout_ms as usize, 1, 60_000)?;
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
            }
            sink.tail().validate(&format!("samples.sinks[{i}].tail"))?;
        }
        Ok(())
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
        }
    }

    /// The sink's tail driver settings.
    pub fn tail(&self) -> &TailConfig {
        match self {
            SinkConfig::Kafka(k) => &k.tail,
            SinkConfig::RedisStream(r) => &r.tail,
        }
    }
}

fn in_range(key: &str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(key, &format!("must be between {min} and {max} (got {value})")))
    }
}

fn invalid(key: &str, problem: &str) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), problem: problem.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names serde asks for when it deserializes `T` (a struct).
    fn fields_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
        struct Capture<'a>(&'a mut &'static [&'static str]);
        impl<'de> serde::Deserializer<'de> for Capture<'_> {
            type Error = serde::de::value::Error;
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _name: &'static str,
                fields: &'static [&'static str],
                _visitor: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = fields;
                Err(serde::de::Error::custom("captured"))
            }
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
                Err(serde::de::Error::custom("not a struct"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
                unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
            }
        }
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Capture(&mut fields));
        fields
    }

    /// `config/default.toml` documents every `[samples]` key with its default: the keys it sets
    /// parse to the `Default` impls, and each field is set or shown in a `# key = ` comment.
    #[test]
    fn default_toml_has_every_samples_key_and_agrees_with_the_defaults() {
        let from_file = Config::from_toml("").unwrap().samples;
        assert_eq!(format!("{from_file:?}"), format!("{:?}", SamplesConfig::default()));
        let section = |header: &str| -> String {
            let start = DEFAULT_TOML.find(&format!("\n[{header}]\n")).unwrap_or_else(|| panic!("[{header}]"));
            let body = &DEFAULT_TOML[start + header.len() + 4..];
            body[..body.find("\n[").unwrap_or(body.len())].to_owned()
        };
        for (header, fields) in [
            ("samples", fields_of::<SamplesConfig>()),
            ("samples.join", fields_of::<JoinConfig>()),
            ("samples.log", fields_of::<SampleLogConfig>()),
        ] {
            let text = section(header);
            let subtables: Vec<&str> = ["join", "log"].into_iter().filter(|_| header == "samples").collect();
            for field in fields.iter().filter(|f| !subtables.contains(f)) {
                let set = text.lines().any(|l| l.starts_with(&format!("{field} = ")));
                let shown = text.lines().any(|l| l.starts_with(&format!("# {field} = ")));
                assert!(set || shown, "config/default.toml [{header}] lacks `{field}`");
            }
        }
        assert!(fields_of::<JoinConfig>().contains(&"window_s"), "the field capture works");
        // The sinks' `tail` table is shown once, with every key at its default.
        let samples = section("samples");
        let line = samples.lines().find_map(|l| l.strip_prefix("# tail = ")).expect("# tail = {...}");
        #[derive(Deserialize)]
        struct Sink {
            tail: TailConfig,
        }
        let shown: Sink = Figment::from(Toml::string(&format!("tail = {line}"))).extract().expect("parses");
        assert_eq!(shown.tail, TailConfig::default());
        for field in fields_of::<TailConfig>() {
            assert!(line.contains(&format!("{field} = ")), "config/default.toml `# tail =` lacks `{field}`");
        }
    }

    #[test]
    fn tracing_is_off_by_default_and_its_validation_names_the_key() {
        let trace = Config::from_toml("").unwrap().trace;
        assert_eq!(trace.otlp_endpoint, None);
        assert_eq!((trace.service_name.as_str(), trace.sample_ratio), ("augur", 1.0));
        let on =
            Config::from_toml("[trace]\notlp_endpoint = \"http://127.0.0.1:4317\"\nsample_ratio = 0.25\n").unwrap();
        assert_eq!(on.trace.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        let err = |toml: &str| Config::from_toml(toml).unwrap_err().to_string();
        for bad in ["otlp_endpoint = \"127.0.0.1:4317\"", "otlp_endpoint = \"\"", "otlp_endpoint = \"grpc://c:4317\""] {
            let e = err(&format!("[trace]\n{bad}\n"));
            assert!(e.contains("`trace.otlp_endpoint`"), "{bad}: {e}");
        }
        assert!(err("[trace]\nsample_ratio = 1.5\n").contains("`trace.sample_ratio`"));
        assert!(err("[trace]\nservice_name = \" \"\n").contains("`trace.service_name`"));
        assert!(err("[trace]\nexport_delay_ms = 0\n").contains("`trace.export_delay_ms`"));
    }

    #[test]
    fn registry_is_off_by_default_and_etcd_defaults_apply() {
        assert!(matches!(Config::from_toml("").unwrap().registry, RegistryConfig::None));
        let config =
            Config::from_toml("[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n").unwrap();
        let RegistryConfig::Etcd(etcd) = config.registry else { panic!("etcd") };
        assert_eq!(etcd.services, ["augur"]);
        assert_eq!(etcd.lease_ttl_s, 10);
    }

    #[test]
    fn registry_validation_names_the_key() {
        let etcd = "[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n";
        let err = |toml: &str| Config::from_toml(toml).unwrap_err().to_string();
        let e = err(&format!("{etcd}services = [\"augur\", \"augur-canary\"]\n"));
        assert!(e.contains("`registry.services[0]`") && e.contains("prefix"), "{e}");
        let e = err(&format!("[server]\nlisten = \"0.0.0.0:50051\"\n{etcd}"));
        assert!(e.contains("`registry.advertise`") && e.contains("required"), "{e}");
        let e = err(&format!("[server]\nlisten = \"127.0.0.1:0\"\n{etcd}"));
        assert!(e.contains("`registry.advertise`"), "{e}");
        let e = err(&format!("{etcd}advertise = \"10.0.0.7\"\n"));
        assert!(e.contains("`registry.advertise`"), "{e}");
        let e = err(&format!("{etcd}lease_ttl_s = 1\n"));
        assert!(e.contains("`registry.lease_ttl_s`"), "{e}");
        let e = err("[registry]\nkind = \"etcd\"\nendpoints = []\n");
        assert!(e.contains("`registry.endpoints`"), "{e}");
        Config::from_toml(&format!("[server]\nlisten = \"0.0.0.0:50051\"\n{etcd}advertise = \"10.0.0.7:50051\"\n"))
            .expect("advertise given");
    }

    #[test]
    fn embedded_default_parses_and_validates() {
        let config = Config::from_toml("").expect("default config");
        assert_eq!(config.scenes[0].name, "ranking");
        assert_eq!(config.model.inference_threads, 1);
        assert!(config.admin.enabled);
        assert!(config.admin.listen.ip().is_loopback(), "/metrics is unauthenticated: loopback by default");
        assert!(config.admin.grpc_listen.ip().is_loopback(), "ModelAdmin changes serving: loopback by default");
        assert_eq!(config.admin.grpc_listen.port(), 50052);
        assert_eq!(config.admin.auth_token, None);
        assert_eq!(config.log.format, LogFormat::Human);
        assert_eq!(config.log.level, DEFAULT_LOG_LEVEL);
    }

    #[test]
    fn admin_and_log_sections_parse() {
        let config = Config::from_toml(
            "[admin]\nlisten = \"0.0.0.0:0\"\nenabled = false\n[log]\nformat = \"json\"\nlevel = \"debug\"\n",
        )
        .expect("config");
        assert!(!config.admin.enabled);
        assert_eq!(config.admin.listen.port(), 0);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.log.level, "debug");
        assert!(Config::from_toml("[log]\nformat = \"xml\"\n").is_err());
        let grpc =
            Config::from_toml("[admin]\ngrpc_listen = \"127.0.0.1:0\"\nauth_token = \"s3cret\"\n").expect("config");
        assert_eq!((grpc.admin.grpc_listen.port(), grpc.admin.auth_token.as_deref()), (0, Some("s3cret")));
        let e = Config::from_toml("[admin]\ngrpc_listen = \"127.0.0.1:50051\"\n").unwrap_err().to_string();
        assert!(e.contains("admin.grpc_listen") && e.contains("server.listen"), "{e}");
        let e = Config::from_toml("[admin]\ngrpc_listen = \"0.0.0.0:9090\"\n").unwrap_err().to_string();
        assert!(e.contains("admin.grpc_listen") && e.contains("admin.listen"), "{e}");
        assert!(
            Config::from_toml("[admin]\nauth_token = \"a b\"\n").unwrap_err().to_string().contains("admin.auth_token")
        );
        assert!(Config::from_toml("[log]\nlevel = \" \"\n").is_err());
    }

    #[test]
    fn redis_store_parses_over_the_memory_defaults_and_validates() {
        let config = Config::from_toml(
            "[store]\nkind = \"redis\"\nurls = [\"redis://127.0.0.1:7000\"]\n\
             [store.cache.tables.items]\nmax_entries = 1000\n",
        )
        .expect("redis config");
        let StoreConfig::Redis(redis) = &config.store else { panic!("{:?}", config.store) };
        assert_eq!((redis.timeout_ms, redis.namespace.as_str(), redis.cluster), (50, "augur", false));
        assert_eq!(redis.key_template.with_namespace("augur").key("t", "1"), "augur:t:1");
        assert_eq!(redis.cache.tables["items"].max_entries, 1000);
        assert_eq!(redis.cache.tables["items"].negative_ttl_ms, 5_000);
        assert_eq!(redis.tables.len(), 3, "the embedded tables stay as load defaults");

        for (toml, key) in [
            ("timeout_ms = 0", "store.timeout_ms"),
            ("connections = 0", "store.connections"),
            ("connections = 65", "store.connections"),
            ("urls = [\"redis://a:1\", \"redis://b:1\"]", "store.urls"),
            ("urls = [\"http://x\"]", "store.urls[0]"),
            ("key_template = \"{namespace}:{id}\"", "store.key_template"),
            (
                "[store.cache.tables.items]\nttl_ms = 100\nnegative_ttl_ms = 200",
                "store.cache.tables.items.negative_ttl_ms",
            ),
        ] {
            let err = Config::from_toml(&format!("[store]\nkind = \"redis\"\n{toml}\n")).unwrap_err();
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
        let err = Config::from_toml("[store]\nkind = \"redis\"\ntimeout = 5\n").unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
        let config =
            Config::from_toml("[store]\nkind = \"redis\"\ncluster = true\nurls = [\"redis://a:1\", \"redis://b:1\"]\n");
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn key_template_placeholders_and_escapes() {
        let t = KeyTemplate::parse("{namespace}:{table}:{id}").unwrap().with_namespace("augur");
        assert_eq!(t.key("items", "i42"), "augur:items:i42");
        let t = KeyTemplate::parse("{namespace}:{table}:{{{id}}}").unwrap().with_namespace("ns");
        assert_eq!(t.key("users", "u1"), "ns:users:{u1}");
        for bad in ["{table}", "{id}", "{table}:{id", "{table}:{idd}", "{table}}:{id}"] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(redact_url("redis://user:s3cret@10.0.0.5:6379/0"), "redis://user:***@10.0.0.5:6379/0");
        assert_eq!(redact_url("rediss://:s3cret@host:6380"), "rediss://:***@host:6380");
        assert_eq!(redact_url("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
        assert_eq!(redact_url("redis://user@host:1/a@b"), "redis://user@host:1/a@b");
        // A bad URL in the config is reported without its password.
        let err = Config::from_toml("[store]\nkind = \"redis\"\nurls = [\"redis://u:s3cret@host:notaport\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.urls[0]") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:0\"\nmax_candidatez = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_candidatez"), "{err}");
    }

    #[test]
    fn out_of_range_value_names_the_key() {
        let err = Config::from_toml("[model]\nqueue_capacity = 0\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("model.queue_capacity") && msg.contains("got 0"), "{msg}");
    }

    #[test]
    fn load_priority_defaults_to_idle_and_names_its_key_when_bad() {
        let defaults = Config::from_toml("").unwrap();
        assert_eq!((defaults.model.load_priority, defaults.model.load_idle_limit_ms), (LoadPriority::Idle, 30_000));
        let low = Config::from_toml("[model]\nload_priority = \"low\"\n").unwrap();
        assert_eq!(low.model.load_priority, LoadPriority::Low);
        let zero = Config::from_toml("[model]\nload_idle_limit_ms = 0\n").unwrap_err().to_string();
        assert!(zero.contains("model.load_idle_limit_ms"), "{zero}");
        let err = Config::from_toml("[model]\nload_priority = \"realtime\"\n").unwrap_err().to_string();
        assert!(err.contains("load_priority") && err.contains("realtime"), "{err}");
    }

    #[test]
    fn bucket_source_defaults_apply_and_bad_values_name_their_key() {
        let scene = "[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"models/ranking\"\n";
        let config = Config::from_toml(&format!("{scene}source = {{ url = \"s3://b/deploy\" }}\n")).unwrap();
        let source = config.scenes[0].source.as_ref().expect("source parsed");
        assert_eq!((source.poll_interval_ms, source.allow_http, source.keep_versions), (30_000, false, 5));
        assert!(source.jitter > 0.0 && source.max_version_bytes > 0);
        for (bad, key) in [
            ("source = { url = \"http://b/x\" }", "scenes[0].source.url"),
            ("source = { url = \"s3:///x\" }", "scenes[0].source.url"),
            ("source = { url = \"s3://b\", jitter = 2.0 }", "scenes[0].source.jitter"),
            ("source = { url = \"s3://b\", poll_interval_ms = 0 }", "scenes[0].source.poll_interval_ms"),
        ] {
            let err = Config::from_toml(&format!("{scene}{bad}\n")).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }
}
