//! The one metrics registry of the process, and what every module's metrics are made of.
//!
//! Metrics are emitted where things happen (the layer stack counts RPCs, `predict` times its
//! stages, the batcher counts runs, the repository counts loads, the cache counts lookups) into
//! handles each module defines in its own `metrics.rs` ([`ModuleMetrics`]) and gets from the one
//! [`Metrics`], which registers them on first use; `/metrics`-style exposition ([`Metrics::render`]) and
//! the `ModelAdmin.GetStats`/`ListModels` RPCs read the same handles, so the numbers an operator
//! scrapes and the numbers `augur bench` prints cannot disagree.
//!
//! `prometheus-client` rather than the `metrics` facade: the registry is a value the app owns
//! (no process-global recorder), so several servers in one test binary keep their own numbers,
//! and the typed handles are read back without parsing text. Label values are bounded: scene,
//! model, version, stage, table, feature, reason, method and status code — never user or item ids.
//! Here live only the shared parts: the latency histogram, the label sets several modules use,
//! the process metrics. [`crate::admin`] serves the exposition; [`trace`] sets up the `tracing` subscriber and, when an OTLP endpoint
//! is configured, the OpenTelemetry export of each request's spans.

pub mod config;
pub mod log_limit;
pub mod trace;

pub use log_limit::LogEvery;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram as Hdr;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency buckets exported to Prometheus: 50 µs … 10 s.
const LATENCY_BUCKETS: [f64; 20] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 10.0,
];

/// `{scene}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SceneLabels {
    /// Scene.
    pub scene: String,
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

/// `{scene, model, version}`: one version as a scene serves it. Quality, drift and inference
/// cost are per version *and* scene (one repository may serve several scenes).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SceneVersionLabels {
    /// Scene.
    pub scene: String,
    /// Model repository name.
    pub model: String,
    /// Model version.
    pub version: String,
}

impl SceneVersionLabels {
    /// The labels of `version` of `model` in `scene`.
    pub fn new(scene: &str, model: &str, version: impl std::fmt::Display) -> Self {
        SceneVersionLabels { scene: scene.to_owned(), model: model.to_owned(), version: version.to_string() }
    }
}

/// Encodes the family `name` with one series per `(labels, value)`: what a collector that
/// computes its numbers at scrape time (the quality and drift trackers) writes for each family.
/// A family with no series still gets its HELP and TYPE lines.
pub fn encode_series<L, M>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error>
where
    L: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    let mut family = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, value) in series {
        value.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `{scene, stage}` of the request path.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// Scene.
    pub scene: String,
    /// `fetch`, `assemble`, `queue`, `infer` or `total`.
    pub stage: String,
}

/// Stage latencies of the request path, per scene: recorded by `predict` (fetch, assemble, infer,
/// total) and by the batcher (queue), so they live here rather than in either.
#[derive(Debug, Clone, Default)]
pub struct StageMetrics {
    /// `augur_stage_duration_seconds{scene, stage}`.
    pub stages: Family<StageLabels, LatencyHistogram>,
}

impl ModuleMetrics for StageMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("stage_duration_seconds", "Request-path stage latency by scene", self.stages.clone());
    }
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

/// A module's metrics: the typed handles it records into, and how they register. Each module
/// defines its own (`server::metrics`, `batch::metrics`, ...), so adding a metric touches only
/// that module; [`Metrics::of`] registers a module's set the first time it is asked for.
pub trait ModuleMetrics: Clone + Default + Send + Sync + 'static {
    /// Registers every handle into `registry` (already prefixed `augur_`; a module adds its own
    /// sub-prefix with `sub_registry_with_prefix` where its names share one).
    fn register(&self, registry: &mut Registry);
}

/// The process's metrics: one registry, and each module's handles registered into it once.
/// Cheap to clone (handles share storage). Modules resolve their handles at construction, never
/// per request: [`Metrics::of`] takes a lock.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    registry: Mutex<Registry>,
    /// Each module's handles by type; always locked before `registry`.
    modules: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let modules = self.inner.modules.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("Metrics").field("modules", &modules).finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry under the `augur_` prefix with the process and build metrics; each
    /// module's families join it when the module first asks for its handles.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("augur");
        r.register("process_cpu_seconds", "User and system CPU time of the process", ProcessCpu);
        r.register("process_resident_memory_bytes", "Resident memory size in bytes", ProcessResident);
        r.register("process_open_fds", "Open file descriptors", ProcessOpenFds);
        r.register("process_start_time_seconds", "Start time of the process since the Unix epoch", ProcessStartTime);
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned() }).set(1);
        r.register("build_info", "1, labelled with the running build", build);
        Metrics { inner: Arc::new(MetricsInner { registry: Mutex::new(r), modules: Mutex::new(HashMap::new()) }) }
    }

    /// `M`'s handles, registered on first use: every caller gets the same storage.
    pub fn of<M: ModuleMetrics>(&self) -> M {
        let mut modules = self.inner.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = modules.get(&TypeId::of::<M>()).and_then(|m| m.downcast_ref::<M>()) {
            return m.clone();
        }
        let m = M::default();
        m.register(&mut self.inner.registry.lock().unwrap_or_else(|e| e.into_inner()));
        modules.insert(TypeId::of::<M>(), Box::new(m.clone()));
        m
    }

    /// `M`'s handles if its module registered them (the status page asks without registering).
    pub fn get<M: ModuleMetrics>(&self) -> Option<M> {
        let modules = self.inner.modules.lock().unwrap_or_else(|e| e.into_inner());
        modules.get(&TypeId::of::<M>()).and_then(|m| m.downcast_ref::<M>()).cloned()
    }

    /// The stage histogram of `scene`.
    pub fn stage(&self, scene: &str, stage: &str) -> LatencyHistogram {
        let labels = StageLabels { scene: scene.to_owned(), stage: stage.to_owned() };
        self.of::<StageMetrics>().stages.get_or_create(&labels).clone()
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.inner.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail; an encoding error would be a bug in a label set.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// The same families in the Prometheus text format 0.0.4, for scrapers that do not ask for
    /// OpenMetrics (and `promtool check metrics`). [`render`](Self::render) writes OpenMetrics:
    /// a counter family is named without `_total` in its `# HELP`/`# TYPE` lines while its
    /// samples carry it, and the body ends with `# EOF`. Served as 0.0.4 that reads as an untyped
    /// `_total` series with no help, so here the counter lines name the samples' name, and the
    /// OpenMetrics-only lines (`# UNIT`, `# EOF`) go.
    pub fn render_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.render())
    }
}

/// See [`Metrics::render_prometheus`].
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name);
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + 8 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((head, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(head);
                out.push_str(name);
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A module's own metrics, as a module defines them.
    #[derive(Debug, Clone, Default)]
    struct Calls {
        calls: Family<SceneLabels, prometheus_client::metrics::counter::Counter>,
    }

    impl ModuleMetrics for Calls {
        fn register(&self, r: &mut Registry) {
            r.sub_registry_with_prefix("test").register("calls", "Calls by scene", self.calls.clone());
        }
    }

    #[test]
    fn a_module_registers_once_and_every_caller_shares_its_handles() {
        let metrics = Metrics::new();
        assert!(metrics.get::<Calls>().is_none(), "nothing registered before the module asks");
        assert!(!metrics.render().contains("augur_test_calls"));
        metrics.of::<Calls>().calls.get_or_create(&SceneLabels { scene: "ranking".into() }).inc();
        metrics.of::<Calls>().calls.get_or_create(&SceneLabels { scene: "ranking".into() }).inc();
        let seen = metrics
            .get::<Calls>()
            .expect("registered")
            .calls
            .get_or_create(&SceneLabels { scene: "ranking".into() })
            .get();
        assert_eq!(seen, 2);
        let text = metrics.clone().render();
        assert_eq!(text.matches("# TYPE augur_test_calls counter").count(), 1, "{text}");
        assert!(text.contains("augur_test_calls_total{scene=\"ranking\"} 2"), "{text}");
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
