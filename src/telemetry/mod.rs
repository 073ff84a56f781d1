//! The one metrics registry of the process, and the typed handles every module records into.
//!
//! Metrics are emitted where things happen (the layer stack counts RPCs, `predict` times its
//! stages, the batcher counts runs, the repository counts loads, the cache counts lookups) into
//! handles cloned out of one [`Metrics`]; `/metrics`-style exposition ([`Metrics::render`]) and
//! the `ModelAdmin.GetStats`/`ListModels` RPCs read the same handles, so the numbers an operator
//! scrapes and the numbers `augur bench` prints cannot disagree.
//!
//! `prometheus-client` rather than the `metrics` facade: the registry is a value the app owns
//! (no process-global recorder), so several servers in one test binary keep their own numbers,
//! and the typed handles are read back without parsing text. Label values are bounded: scene,
//! model, version, stage, table, feature, reason, method and status code — never user or item ids.
//! [`http`] serves the exposition on the operator's port, beside `/healthz`, `/readyz` and the
//! HTML [`status`] page; [`trace`] sets up the `tracing` subscriber and, when an OTLP endpoint
//! is configured, the OpenTelemetry export of each request's spans.

pub mod config;
pub mod trace;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram as Hdr;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency buckets exported to Prometheus: 50 µs … 10 s.
const LATENCY_BUCKETS: [f64; 20] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 10.0,
];

/// Rows per model run: powers of two up to the largest `max_batch_rows`.
fn batch_rows_buckets() -> impl Iterator<Item = f64> {
    (0..=16).map(|i| f64::from(1u32 << i))
}

/// `{method, code}` of one RPC.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `/package.Service/Method`.
    pub method: String,
    /// gRPC status code name (`OK`, `RESOURCE_EXHAUSTED`, ...).
    pub code: String,
}

/// `{method}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `/package.Service/Method`.
    pub method: String,
}

/// `{scene}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SceneLabels {
    /// Scene.
    pub scene: String,
}

/// `{scene, stage}` of the request path.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// Scene.
    pub scene: String,
    /// `fetch`, `assemble`, `queue`, `infer` or `total`.
    pub stage: String,
}

/// `{scene, feature, reason}` of a fallback.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// Scene.
    pub scene: String,
    /// Feature name from the spec.
    pub feature: String,
    /// `missing_row`, `missing_field`, `parse_error`, `timeout` or `store_error`.
    pub reason: String,
}

/// `{model}`: one repository.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Repository name.
    pub model: String,
}

/// `{model, version}`: one loaded version.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// Repository name.
    pub model: String,
    /// Version number.
    pub version: String,
}

/// `{model, outcome}` of a bucket poll.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourcePollLabels {
    /// Repository name.
    pub model: String,
    /// `not_modified`, `changed`, `missing` (no `LATEST`) or `error`.
    pub outcome: String,
}

/// `{model, reason}` of a bucket version refused before loading.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceRejectLabels {
    /// Repository name.
    pub model: String,
    /// `no_marker`, `bad_marker`, `missing_file`, `size`, `checksum` or `too_large`.
    pub reason: String,
}

/// `{table, result}` of a cache lookup.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// Store table.
    pub table: String,
    /// `hit`, `negative_hit`, `miss` or `coalesced`.
    pub result: String,
}

/// `{table}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// Store table.
    pub table: String,
}

/// `{registry}`: one service registry kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// `etcd`.
    pub registry: String,
}

/// `{registry, outcome}` of a registration attempt or loss.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistrationLabels {
    /// `etcd`.
    pub registry: String,
    /// `registered`, `lost` or `failed`.
    pub outcome: String,
}

/// A latency histogram that is both a Prometheus histogram (cumulative since start, fixed
/// buckets) and a resettable window with exact percentiles for `GetStats`. One short lock per
/// record: a few thousand records per second per scene on 2 cores, as measured with the
/// HdrHistograms this replaces.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Arc<Mutex<LatencyInner>>,
}

#[derive(Debug)]
struct LatencyInner {
    total: Hdr<u64>,
    window: Hdr<u64>,
    sum_us: u64,
}

/// Percentiles of a [`LatencyHistogram`] window, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Worst.
    pub max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        // 1 µs .. 10 min at 2 significant digits: ~1% error, ~30 KiB per histogram.
        let new = || Hdr::new_with_bounds(1, 600_000_000, 2).expect("histogram bounds");
        LatencyHistogram { inner: Arc::new(Mutex::new(LatencyInner { total: new(), window: new(), sum_us: 0 })) }
    }
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn record(&self, elapsed: Duration) {
        let us = (elapsed.as_micros() as u64).max(1);
        if let Ok(mut h) = self.inner.lock() {
            h.total.saturating_record(us);
            h.window.saturating_record(us);
            h.sum_us = h.sum_us.saturating_add(us);
        }
    }

    /// Percentiles since start: what the Prometheus side holds, so a status page agrees with
    /// `/metrics` and is not emptied by a `GetStats` reset.
    pub fn cumulative(&self) -> LatencySummary {
        let Ok(h) = self.inner.lock() else { return LatencySummary::default() };
        summarize(&h.total)
    }

    /// Percentiles of the current window; `reset` starts a new one (the Prometheus side is
    /// cumulative and never resets).
    pub fn summary(&self, reset: bool) -> LatencySummary {
        let Ok(mut h) = self.inner.lock() else { return LatencySummary::default() };
        let summary = summarize(&h.window);
        if reset {
            h.window.reset();
        }
        summary
    }
}

fn summarize(h: &Hdr<u64>) -> LatencySummary {
    LatencySummary {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Ok(h) = self.inner.lock() else { return Ok(()) };
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        let mut below = 0;
        for le in LATENCY_BUCKETS {
            let upto = h.total.count_between(0, (le * 1e6) as u64);
            buckets.push((le, upto - below));
            below = upto;
        }
        buckets.push((f64::INFINITY, h.total.len() - below));
        encoder.encode_histogram::<NoLabelSet>(h.sum_us as f64 / 1e6, h.total.len(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// RPC-level metrics, recorded by the layer stack.
#[derive(Debug, Clone, Default)]
pub struct RpcMetrics {
    /// `augur_rpc_requests_total{method, code}`.
    pub requests: Family<RpcLabels, Counter>,
    /// `augur_rpc_duration_seconds{method}`: until the response headers (the whole call for
    /// unary RPCs).
    pub duration: Family<MethodLabels, LatencyHistogram>,
    /// `augur_rpc_in_flight`: RPCs being handled now.
    pub in_flight: Gauge,
    /// `augur_rpc_shed_total`: Prediction calls refused by the global concurrency limit.
    pub shed: Counter,
}

/// The request path's metrics, per scene.
#[derive(Debug, Clone, Default)]
pub struct PathMetrics {
    /// `augur_stage_duration_seconds{scene, stage}`.
    pub stages: Family<StageLabels, LatencyHistogram>,
    /// `augur_feature_fallbacks_total{scene, feature, reason}`: rows served from a default.
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// `augur_candidates_scored_total{scene}`: candidates answered with a score by Predict
    /// (requests count calls; this counts the rows they carried).
    pub scored: Family<SceneLabels, Counter>,
}

/// Batcher and inference metrics, per model version.
#[derive(Debug, Clone)]
pub struct BatchMetrics {
    /// `augur_batch_runs_total{model, version}`: model runs.
    pub runs: Family<VersionLabels, Counter>,
    /// `augur_batch_rows_total{model, version}`: rows scored.
    pub rows: Family<VersionLabels, Counter>,
    /// `augur_batch_size_rows{model}`: rows per model run (is dynamic batching working?).
    pub size: Family<ModelLabels, Histogram>,
    /// `augur_batch_expired_total{model, version}`: chunks whose deadline passed in the queue.
    pub expired: Family<VersionLabels, Counter>,
    /// `augur_batch_rejected_total{model, version}`: chunks refused by a full queue.
    pub rejected: Family<VersionLabels, Counter>,
    /// `augur_batch_queue_depth{model, version}`: chunks waiting for an inference thread.
    pub queue_depth: Family<VersionLabels, Gauge>,
    /// `augur_inference_panics_total{model, version}`: model runs that panicked (thread replaced).
    pub panics: Family<VersionLabels, Counter>,
}

impl Default for BatchMetrics {
    fn default() -> Self {
        BatchMetrics {
            runs: Family::default(),
            rows: Family::default(),
            size: Family::new_with_constructor(|| Histogram::new(batch_rows_buckets())),
            expired: Family::default(),
            rejected: Family::default(),
            queue_depth: Family::default(),
            panics: Family::default(),
        }
    }
}

/// Model repository metrics.
#[derive(Debug, Clone, Default)]
pub struct ModelMetrics {
    /// `augur_model_rescans_total{model}`.
    pub rescans: Family<ModelLabels, Counter>,
    /// `augur_model_loads_total{model}`: versions loaded, validated and warmed up.
    pub loads: Family<ModelLabels, Counter>,
    /// `augur_model_rejected_total{model}`: versions (or model.yaml) refused.
    pub rejected: Family<ModelLabels, Counter>,
    /// `augur_model_unloads_total{model}`.
    pub unloads: Family<ModelLabels, Counter>,
    /// `augur_model_version_info{model, version}`: 1 while the version is loaded.
    pub version_info: Family<VersionLabels, Gauge>,
    /// `augur_model_source_polls_total{model, outcome}`: polls of a bucket's `LATEST`.
    pub source_polls: Family<SourcePollLabels, Counter>,
    /// `augur_model_source_rejected_total{model, reason}`: bucket versions refused before
    /// loading (no marker, bad checksum, ...); the loaded versions keep serving.
    pub source_rejected: Family<SourceRejectLabels, Counter>,
}

/// Local feature-cache metrics.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    /// `augur_cache_lookups_total{table, result}`.
    pub lookups: Family<CacheLabels, Counter>,
    /// `augur_cache_store_reads_total{table}`: reads sent to the wrapped store.
    pub store_reads: Family<TableLabels, Counter>,
    /// `augur_cache_evictions_total{table}`: entries dropped to stay within `max_entries`.
    pub evictions: Family<TableLabels, Counter>,
}

/// `{version}` of `augur_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version (`CARGO_PKG_VERSION`).
    pub version: String,
}

// === process metrics ===
//
// Read from /proc when encoded, so a scrape sees the current value and nothing polls between
// scrapes. Off Linux (no /proc) they are simply absent from the exposition: encoding nothing for
// a metric leaves only its HELP/TYPE lines.

/// Linux reports CPU times in USER_HZ ticks, 100 on every architecture Linux supports (Go's
/// procfs and the Prometheus client libraries assume the same); `sysconf` would need `unsafe`.
const USER_HZ: f64 = 100.0;

/// `augur_process_cpu_seconds_total`: user + system CPU time of the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCpu;

/// `augur_process_resident_memory_bytes`: resident set size (`VmRSS`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessResident;

/// `augur_process_open_fds`: open file descriptors (sockets, model files, log segments).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOpenFds;

/// `augur_process_start_time_seconds`: Unix time the process started; a change means a restart.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStartTime;

/// Fields of `/proc/self/stat` after the command name (which may contain spaces): index 0 is the
/// state, the 3rd field of the file.
fn proc_stat_fields() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // The state is a letter: keep a placeholder so indexes match `proc(5)` minus 3.
    Some(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// CPU seconds (utime + stime) from `/proc/self/stat`.
pub fn process_cpu_seconds() -> Option<f64> {
    let f = proc_stat_fields()?;
    // utime and stime are fields 14 and 15.
    Some((*f.get(11)? + *f.get(12)?) as f64 / USER_HZ)
}

/// Resident set size in bytes from `/proc/self/status` (kB there, no page size needed).
pub fn process_resident_bytes() -> Option<u64> {
    process_status_kib("VmRSS").map(|kb| kb * 1024)
}

/// A `/proc/self/status` memory line in kB, by key (`VmRSS`, `VmHWM`, ...).
pub fn process_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.split(':').next() == Some(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors: entries of `/proc/self/fd` (the directory handle itself included,
/// as every Prometheus client counts it).
pub fn process_open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Start time, Unix seconds: boot time (`btime` of `/proc/stat`) + `starttime` ticks.
pub fn process_start_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    // starttime is field 22.
    let ticks = *proc_stat_fields()?.get(19)?;
    Some(btime as f64 + ticks as f64 / USER_HZ)
}

macro_rules! process_metric {
    ($ty:ty, $kind:ident, $read:expr, $encode:ident) => {
        impl TypedMetric for $ty {
            const TYPE: MetricType = MetricType::$kind;
        }

        impl EncodeMetric for $ty {
            fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
                match $read {
                    Some(v) => process_metric!(@encode $encode, encoder, v),
                    None => Ok(()),
                }
            }

            fn metric_type(&self) -> MetricType {
                Self::TYPE
            }
        }
    };
    (@encode counter, $encoder:ident, $v:ident) => {
        $encoder.encode_counter::<NoLabelSet, _, f64>(&$v, None)
    };
    (@encode gauge, $encoder:ident, $v:ident) => {
        $encoder.encode_gauge(&$v)
    };
}

process_metric!(ProcessCpu, Counter, process_cpu_seconds(), counter);
process_metric!(ProcessResident, Gauge, process_resident_bytes(), gauge);
process_metric!(ProcessOpenFds, Gauge, process_open_fds(), gauge);
process_metric!(ProcessStartTime, Gauge, process_start_time_seconds(), gauge);

/// Service-registry metrics.
#[derive(Debug, Clone, Default)]
pub struct RegistryMetrics {
    /// `augur_registration_state{registry}`: 1 while registered, 0 otherwise.
    pub state: Family<RegistryLabels, Gauge>,
    /// `augur_registrations_total{registry, outcome}`: registrations made, lost and failed.
    pub registrations: Family<RegistrationLabels, Counter>,
}

/// `{reason}` of a refused or lost sample-pipeline item.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Bounded set chosen by the caller (`queue_full`, `join_store_full`, `log_full`, ...).
    pub reason: String,
}

/// `{type, result}` of a reported event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// Event type (built-in or configured: bounded); `invalid` for rejected unknown types.
    pub r#type: String,
    /// `accepted`, `duplicate`, `orphan` or `rejected`.
    pub result: String,
}

/// `{kind}` of an emitted log record.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordKindLabels {
    /// `sample`, `correction` or `orphan`.
    pub kind: String,
}

/// `{sink}`: one configured sample sink.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// Sink name from the config.
    pub sink: String,
}

/// `{sink, reason}` of a record a sink refused for good.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// Sink name from the config.
    pub sink: String,
    /// Why the sink refused it (`too_large`, `invalid`: bounded by the sinks).
    pub reason: String,
}

/// The sample pipeline (`src/sample_log/`): snapshots, joins, the segment log and its sinks.
#[derive(Debug, Clone, Default)]
pub struct SampleMetrics {
    /// Snapshots queued for the joiner, by scene.
    pub snapshots: Family<SceneLabels, Counter>,
    /// Snapshots, records or labels lost to a bound or a failure, by reason.
    pub dropped: Family<ReasonLabels, Counter>,
    /// Snapshots waiting in the queue between Predict and the joiner.
    pub queue_depth: Gauge,
    /// Reported events by type and result.
    pub events: Family<EventLabels, Counter>,
    /// Predictions waiting for their labels in the join store (this process's view).
    pub pending: Gauge,
    /// Bytes the in-memory join store holds.
    pub pending_bytes: Gauge,
    /// `samples.join.store.max_bytes` of the in-memory store (0 with Redis): the fill level is
    /// `pending_bytes / join_store_max_bytes`, alerted on before snapshots are refused.
    pub join_store_max_bytes: Gauge,
    /// Records appended to the segment log, by kind.
    pub emitted: Family<RecordKindLabels, Counter>,
    /// Candidates that left the join store with their prediction's window without an event
    /// (never impressed; `emit_unimpressed` off): the one way a held candidate yields no record.
    pub expired_unlabelled: Counter,
    /// Claimed candidates found in doubt after a crash (claimed, not confirmed), by outcome:
    /// `in_log` (their sample made it) or `emitted_again` (it did not: due again).
    pub recovered: Family<ReasonLabels, Counter>,
    /// Bytes of segment files on disk.
    pub log_disk_bytes: Gauge,
    /// Last sequence fsynced: what a power loss cannot take.
    pub log_durable_sequence: Gauge,
    /// Last sequence written.
    pub log_sequence: Gauge,
    /// Last sequence written to the in-memory join store's journal.
    pub journal_sequence: Gauge,
    /// Last journal sequence fsynced: pending joins up to it survive a crash.
    pub journal_durable_sequence: Gauge,
    /// Corrupt records skipped when reading the log (bad checksum, torn tail, impossible length).
    pub log_corrupt: Counter,
    /// Bytes of torn tail truncated when the log was opened.
    pub log_truncated_bytes: Counter,
    /// Records acknowledged by each sink.
    pub sink_delivered: Family<SinkLabels, Counter>,
    /// Failed delivery attempts per sink (retried).
    pub sink_errors: Family<SinkLabels, Counter>,
    /// Records written to the log but not yet acknowledged by the sink.
    pub sink_lag: Family<SinkLabels, Gauge>,
    /// 1 when the sink's last word (start-up health check, then each delivery attempt) was good.
    pub sink_up: Family<SinkLabels, Gauge>,
    /// Start-up health checks that failed (the sink is unreachable or misconfigured).
    pub sink_healthcheck_failures: Family<SinkLabels, Counter>,
    /// Records a sink refused for good, kept in its dead-letter log instead of retried forever.
    pub dead_letter: Family<DeadLetterLabels, Counter>,
}

/// Every metric of the process, registered once. Cheap to clone (handles share storage).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// RPCs (layer stack).
    pub rpc: RpcMetrics,
    /// Stages and fallbacks (predict).
    pub path: PathMetrics,
    /// Batching and inference.
    pub batch: BatchMetrics,
    /// Model repositories.
    pub model: ModelMetrics,
    /// Local feature cache.
    pub cache: CacheMetrics,
    /// Service registration.
    pub registration: RegistryMetrics,
    /// The sample pipeline.
    pub samples: SampleMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered under the `augur_` prefix, but the sample
    /// pipeline's.
    pub fn new() -> Self {
        Self::with_samples(false)
    }

    /// A fresh registry; `samples`: also the `augur_samples_*` families (only when sample logging
    /// is on, so a scrape and the status page say "off" rather than show zeros).
    pub fn with_samples(samples_on: bool) -> Self {
        let (rpc, path, batch, model, cache) = (
            RpcMetrics::default(),
            PathMetrics::default(),
            BatchMetrics::default(),
            ModelMetrics::default(),
            CacheMetrics::default(),
        );
        let registration = RegistryMetrics::default();
        let mut r = Registry::with_prefix("augur");
        r.register("rpc_requests", "RPCs handled, by method and status code", rpc.requests.clone());
        r.register("rpc_duration_seconds", "RPC latency until response headers", rpc.duration.clone());
        r.register("rpc_in_flight", "RPCs being handled now", rpc.in_flight.clone());
        r.register("rpc_shed", "Prediction calls refused by the global concurrency limit", rpc.shed.clone());
        r.register("stage_duration_seconds", "Request-path stage latency by scene", path.stages.clone());
        r.register("feature_fallbacks", "Rows served from a feature default, by reason", path.fallbacks.clone());
        r.register("candidates_scored", "Candidates answered with a score by Predict", path.scored.clone());
        r.register("batch_runs", "Model runs", batch.runs.clone());
        r.register("batch_rows", "Rows scored", batch.rows.clone());
        r.register("batch_size_rows", "Rows per model run", batch.size.clone());
        r.register("batch_expired", "Queued chunks whose deadline passed", batch.expired.clone());
        r.register("batch_rejected", "Chunks refused by a full inference queue", batch.rejected.clone());
        r.register("batch_queue_depth", "Chunks waiting for an inference thread", batch.queue_depth.clone());
        r.register(
            "inference_panics",
            "Model runs that panicked; the thread's model was reopened",
            batch.panics.clone(),
        );
        r.register("model_rescans", "Model repository rescans", model.rescans.clone());
        r.register("model_loads", "Model versions loaded, validated and warmed up", model.loads.clone());
        r.register("model_rejected", "Model versions or model.yaml refused", model.rejected.clone());
        r.register("model_unloads", "Model versions unloaded", model.unloads.clone());
        r.register("model_version_info", "1 for each loaded model version", model.version_info.clone());
        r.register("model_source_polls", "Polls of a model bucket's LATEST by outcome", model.source_polls.clone());
        r.register(
            "model_source_rejected",
            "Bucket model versions refused before loading, by reason",
            model.source_rejected.clone(),
        );
        r.register("cache_lookups", "Local feature cache lookups by result", cache.lookups.clone());
        r.register("cache_store_reads", "Reads the local cache sent to the store", cache.store_reads.clone());
        r.register("cache_evictions", "Cache entries evicted by the size bound", cache.evictions.clone());
        r.register("process_cpu_seconds", "User and system CPU time of the process", ProcessCpu);
        r.register("process_resident_memory_bytes", "Resident memory size in bytes", ProcessResident);
        r.register("process_open_fds", "Open file descriptors", ProcessOpenFds);
        r.register("process_start_time_seconds", "Start time of the process since the Unix epoch", ProcessStartTime);
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned() }).set(1);
        r.register("build_info", "1, labelled with the running build", build);
        r.register("registration_state", "1 while registered in the service registry", registration.state.clone());
        r.register(
            "registrations",
            "Service-registry registrations by outcome (registered, lost, failed)",
            registration.registrations.clone(),
        );
        let samples = SampleMetrics::default();
        if samples_on {
            register_samples(&mut r, &samples);
        }
        Metrics { registry: Arc::new(r), rpc, path, batch, model, cache, registration, samples }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoding error would be a bug in a label set.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// The stage histogram of `scene`.
    pub fn stage(&self, scene: &str, stage: &str) -> LatencyHistogram {
        self.path.stages.get_or_create(&StageLabels { scene: scene.to_owned(), stage: stage.to_owned() }).clone()
    }
}

/// The canonical upper-case name of a status code (the `code` label).
pub fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A hot-path warning logged at most once per interval, with how many were suppressed in
/// between: one unreadable Redis row per id per request must not become a log flood.
#[derive(Debug)]
pub struct LogEvery {
    every_ms: u64,
    start: std::time::Instant,
    /// Milliseconds since `start` before which nothing is logged.
    next_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogEvery {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        LogEvery {
            every_ms: every.as_millis() as u64,
            start: std::time::Instant::now(),
            next_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub fn ready(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Relaxed);
        if now < next || self.next_ms.compare_exchange(next, now + self.every_ms, Relaxed, Relaxed).is_err() {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Relaxed))
    }
}

fn register_samples(r: &mut Registry, s: &SampleMetrics) {
    r.register("samples_snapshots", "Prediction snapshots queued for the label join, by scene", s.snapshots.clone());
    r.register(
        "samples_dropped",
        "Snapshots, labels or records lost to a bound or failure, by reason",
        s.dropped.clone(),
    );
    r.register("samples_queue_depth", "Snapshots waiting between Predict and the joiner", s.queue_depth.clone());
    r.register("samples_events", "Reported events by type and result", s.events.clone());
    r.register("samples_pending", "Predictions waiting for labels in the join store", s.pending.clone());
    r.register("samples_pending_bytes", "Bytes held by the in-memory join store", s.pending_bytes.clone());
    r.register(
        "samples_join_store_max_bytes",
        "Bound of the in-memory join store (samples.join.store.max_bytes; 0 with Redis)",
        s.join_store_max_bytes.clone(),
    );
    r.register("samples_emitted", "Records appended to the sample log, by kind", s.emitted.clone());
    r.register(
        "samples_expired_unlabelled",
        "Held candidates that left with their prediction's join window without any event",
        s.expired_unlabelled.clone(),
    );
    r.register(
        "samples_recovered_claims",
        "Claims in doubt after a crash, by outcome (in_log | emitted_again)",
        s.recovered.clone(),
    );
    r.register("samples_log_disk_bytes", "Bytes of sample-log segments on disk", s.log_disk_bytes.clone());
    r.register("samples_log_durable_sequence", "Last sample-log sequence fsynced", s.log_durable_sequence.clone());
    r.register("samples_log_sequence", "Last sample-log sequence written", s.log_sequence.clone());
    r.register("samples_journal_sequence", "Last join-journal sequence written", s.journal_sequence.clone());
    r.register(
        "samples_journal_durable_sequence",
        "Last join-journal sequence fsynced (pending joins up to it survive a crash)",
        s.journal_durable_sequence.clone(),
    );
    r.register("samples_log_corrupt_records", "Corrupt sample-log records detected and skipped", s.log_corrupt.clone());
    r.register(
        "samples_log_truncated_bytes",
        "Torn sample-log tail bytes truncated at open",
        s.log_truncated_bytes.clone(),
    );
    r.register("samples_sink_delivered", "Records acknowledged by a sink", s.sink_delivered.clone());
    r.register("samples_sink_errors", "Failed sink delivery attempts (retried)", s.sink_errors.clone());
    r.register("samples_sink_lag_records", "Records in the log not yet acknowledged by the sink", s.sink_lag.clone());
    r.register("samples_sink_up", "1 if the sink's health check or last delivery attempt succeeded", s.sink_up.clone());
    r.register(
        "samples_sink_healthcheck_failures",
        "Failed start-up health checks of a sink",
        s.sink_healthcheck_failures.clone(),
    );
    r.register(
        "samples_dead_letter",
        "Records a sink refused for good, kept in <log dir>/dead_letter/<sink>/, by reason",
        s.dead_letter.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_every_lets_one_line_through_per_interval_and_counts_the_rest() {
        let limiter = LogEvery::new(Duration::from_secs(3600));
        assert_eq!(limiter.ready(), Some(0));
        assert_eq!(limiter.ready(), None);
        assert_eq!(limiter.ready(), None);
        let open = LogEvery::new(Duration::ZERO);
        assert_eq!(open.ready(), Some(0));
        assert_eq!(open.ready(), Some(0), "a zero interval never suppresses");
    }

    #[test]
    fn latency_window_resets_but_prometheus_stays_cumulative() {
        let metrics = Metrics::new();
        let h = metrics.stage("ranking", "fetch");
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary(true);
        assert_eq!(s.count, 100);
        assert!((49_000..=51_000).contains(&s.p50_us), "{s:?}");
        assert!((98_000..=100_999).contains(&s.p99_us), "{s:?}");
        assert_eq!(h.summary(false).count, 0, "reset starts a new window");
        let text = metrics.render();
        assert!(text.contains("augur_stage_duration_seconds_count{scene=\"ranking\",stage=\"fetch\"} 100"), "{text}");
        // 1..=100 ms: 10 samples at or below 10 ms, all 100 at or below 100 ms.
        assert!(
            text.contains("augur_stage_duration_seconds_bucket{le=\"0.01\",scene=\"ranking\",stage=\"fetch\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("augur_stage_duration_seconds_bucket{le=\"+Inf\",scene=\"ranking\",stage=\"fetch\"} 100"),
            "{text}"
        );
    }

    #[test]
    fn counters_render_with_bounded_labels() {
        let metrics = Metrics::new();
        metrics.rpc.requests.get_or_create(&RpcLabels { method: "/x.Y/Z".into(), code: "OK".into() }).inc();
        let text = metrics.render();
        assert!(text.contains("augur_rpc_requests_total{method=\"/x.Y/Z\",code=\"OK\"} 1"), "{text}");
    }

    #[test]
    fn process_metrics_and_build_info_render() {
        let text = Metrics::new().render();
        let value = |name: &str| -> f64 {
            let line =
                text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("augur_process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("augur_process_open_fds") >= 3.0);
        assert!(value("augur_process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = value("augur_process_start_time_seconds");
        assert!(start > now - 86_400.0 && start <= now + 1.0, "start {start}, now {now}");
        assert!(text.contains("# TYPE augur_process_cpu_seconds counter"), "{text}");
        let build = format!("augur_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&build), "{text}");
    }
}
