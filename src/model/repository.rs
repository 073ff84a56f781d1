//! The model repository of one scene: `<dir>/[model.yaml]` and `<dir>/<version>/model.onnx`,
//! laid out like Triton's and TF Serving's.
//!
//! [`Repository::rescan`] makes the loaded set match the directory and `model.yaml`'s version
//! policy: a new version is loaded on a blocking thread, validated against the feature spec,
//! warmed up, and only then swapped into the routing table in one atomic step; requests in
//! flight keep the `Arc<Version>` they started with, so they finish on the old version. A corrupt
//! or mismatched model is rejected with a log line and a counter and the old version keeps
//! serving; it is retried only when its file changes. A version whose directory is gone is
//! unloaded. Routing: the `stable` label gets the traffic, except a sticky share of users (by
//! hashed user id) that goes to `canary`; a request may pin a version or label.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64;

use super::onnx::{self, ModelError, SessionOptions};
use crate::assemble::encode::RequestView;
use crate::assemble::{Spec, assemble};
use crate::batch::{BatchConfig, BatchError, Batcher};
use crate::config::ModelConfig;

/// `model.yaml`: everything optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Overrides `model.max_batch_rows`.
    #[serde(default)]
    pub max_batch_rows: Option<usize>,
    /// Overrides `model.max_queue_delay_us`.
    #[serde(default)]
    pub max_queue_delay_us: Option<u64>,
    /// Which versions to keep loaded.
    #[serde(default, with = "serde_yaml_ng::with::singleton_map")]
    pub version_policy: VersionPolicy,
    /// Pinned labels; without them `stable` is the highest loaded version and there is no canary.
    #[serde(default)]
    pub labels: Labels,
    /// Share of users (0..=1) routed to the `canary` label.
    #[serde(default)]
    pub canary_weight: f64,
}

/// Which versions are loaded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// The highest N versions.
    Latest(usize),
    /// Exactly these versions (those present).
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

/// Version labels.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// Version serving the bulk of the traffic.
    #[serde(default)]
    pub stable: Option<u64>,
    /// Version serving `canary_weight` of users.
    #[serde(default)]
    pub canary: Option<u64>,
}

/// Why a request could not be routed to a version.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No version is loaded (all rejected or the directory is empty).
    #[error("model `{model}` has no loaded version")]
    NoVersion {
        /// Repository name.
        model: String,
    },
    /// The caller pinned a version or label that is not loaded.
    #[error("model_version: `{pinned}` is not loaded for model `{model}` (loaded: {loaded})")]
    NotLoaded {
        /// Repository name.
        model: String,
        /// What the caller asked for.
        pinned: String,
        /// What is loaded.
        loaded: String,
    },
}

/// How the warm-up went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Warmup {
    /// Model runs.
    pub runs: u32,
    /// Rows scored.
    pub rows: u64,
    /// Wall time.
    pub duration: Duration,
}

/// One loaded, warmed-up model version.
#[derive(Debug)]
pub struct Version {
    /// Version number (directory name).
    pub number: u64,
    /// The `.onnx` file.
    pub path: PathBuf,
    /// Its batcher and inference threads.
    pub batcher: Batcher,
    /// When it became servable.
    pub loaded_at: SystemTime,
    /// Load + validation time.
    pub load_time: Duration,
    /// Warm-up stats.
    pub warmup: Warmup,
}

/// The routing table, swapped atomically as a whole.
#[derive(Debug, Default)]
pub struct Routing {
    /// Loaded versions.
    pub versions: BTreeMap<u64, Arc<Version>>,
    /// Version behind the `stable` label.
    pub stable: Option<u64>,
    /// Version behind `canary` and its share of users.
    pub canary: Option<(u64, f64)>,
}

/// Identity of a model file, so a rejected file is retried only once it changes.
type Fingerprint = (u64, Option<SystemTime>);

#[derive(Debug, Default)]
struct ReloadState {
    /// Rejected versions and the file identity they were rejected with.
    rejected: HashMap<u64, Fingerprint>,
    canary_override: Option<(u64, f64)>,
    last_error: Option<String>,
}

/// Counters of a repository.
#[derive(Debug, Default)]
pub struct RepositoryStats {
    /// Rescans done.
    pub rescans: AtomicU64,
    /// Versions loaded.
    pub loads: AtomicU64,
    /// Versions rejected (corrupt, mismatched, warm-up failed, bad model.yaml).
    pub rejected: AtomicU64,
    /// Versions unloaded.
    pub unloads: AtomicU64,
}

/// The repository of one scene.
#[derive(Debug)]
pub struct Repository {
    name: String,
    dir: PathBuf,
    spec: Arc<Spec>,
    defaults: ModelConfig,
    routing: RwLock<Arc<Routing>>,
    reload: tokio::sync::Mutex<ReloadState>,
    stats: RepositoryStats,
}

impl Repository {
    /// An empty repository; call [`Repository::rescan`] to load.
    pub fn new(dir: &Path, spec: Arc<Spec>, defaults: ModelConfig) -> Self {
        let name = dir.file_name().map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
        Repository {
            name,
            dir: dir.to_path_buf(),
            spec,
            defaults,
            routing: RwLock::new(Arc::new(Routing::default())),
            reload: tokio::sync::Mutex::new(ReloadState::default()),
            stats: RepositoryStats::default(),
        }
    }

    /// Repository name (directory name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters.
    pub fn stats(&self) -> &RepositoryStats {
        &self.stats
    }

    /// The current routing table.
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing.read().expect("routing lock"))
    }

    /// The last rejection message, if any.
    pub async fn last_error(&self) -> Option<String> {
        self.reload.lock().await.last_error.clone()
    }

    /// Picks the version for a request: `pinned` ("", "stable", "canary" or a number), else the
    /// canary for its share of users (sticky by hashed user id), else stable.
    pub fn route(&self, user_id: &str, pinned: &str) -> Result<Arc<Version>, RouteError> {
        let routing = self.routing();
        let not_loaded = || RouteError::NotLoaded {
            model: self.name.clone(),
            pinned: pinned.to_owned(),
            loaded: routing.versions.keys().map(u64::to_string).collect::<Vec<_>>().join(", "),
        };
        let number = match pinned {
            "" => match routing.canary {
                Some((canary, weight)) if user_bucket(user_id) < weight => Some(canary),
                _ => routing.stable,
            },
            "stable" => Some(routing.stable.ok_or_else(not_loaded)?),
            "canary" => Some(routing.canary.ok_or_else(not_loaded)?.0),
            other => Some(other.parse::<u64>().map_err(|_| not_loaded())?),
        };
        let number = number.ok_or_else(|| RouteError::NoVersion { model: self.name.clone() })?;
        routing.versions.get(&number).cloned().ok_or_else(not_loaded)
    }

    /// Sets (weight > 0) or clears (weight 0) the canary at run time; it holds across rescans
    /// while that version stays loaded.
    pub async fn set_canary(&self, version: u64, weight: f64) -> Result<(), String> {
        if !(0.0..=1.0).contains(&weight) {
            return Err(format!("weight: {weight} is not between 0 and 1"));
        }
        let mut state = self.reload.lock().await;
        let current = self.routing();
        if weight > 0.0 && !current.versions.contains_key(&version) {
            return Err(format!("version: {version} is not loaded for model `{}`", self.name));
        }
        state.canary_override = (weight > 0.0).then_some((version, weight));
        let settings = self.settings().unwrap_or_default();
        let routing = self.route_table(current.versions.clone(), &settings, &state);
        *self.routing.write().expect("routing lock") = Arc::new(routing);
        Ok(())
    }

    /// Makes the loaded versions match the directory. Errors of single versions are logged and
    /// counted, never returned: the previous versions keep serving.
    pub async fn rescan(&self) {
        let mut state = self.reload.lock().await;
        self.stats.rescans.fetch_add(1, Ordering::Relaxed);
        let settings = match self.settings() {
            Ok(s) => s,
            Err(e) => {
                self.reject(&mut state, None, &e.to_string());
                return;
            }
        };
        let present = self.present_versions();
        state.rejected.retain(|v, fp| present.get(v).is_some_and(|(_, now)| now == fp));
        let mut versions = self.routing().versions.clone();
        // Availability first: load what the policy wants, treating rejected files as absent, and
        // only then unload what it no longer wants — a bad new version never takes the old one
        // down with it.
        let wanted = loop {
            let candidates: Vec<u64> = present.keys().copied().filter(|v| !state.rejected.contains_key(v)).collect();
            let wanted: Vec<u64> = match &settings.version_policy {
                VersionPolicy::Latest(n) => candidates.iter().rev().take(*n).copied().collect(),
                VersionPolicy::Specific(list) => list.iter().copied().filter(|v| candidates.contains(v)).collect(),
            };
            let missing: Vec<u64> = wanted.iter().copied().filter(|v| !versions.contains_key(v)).collect();
            if missing.is_empty() {
                break wanted;
            }
            for number in missing {
                let (path, fingerprint) = present[&number].clone();
                match self.load(number, &path, &settings).await {
                    Ok(version) => {
                        self.stats.loads.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            model = %self.name, version = number,
                            load_ms = version.load_time.as_secs_f64() * 1e3,
                            warmup_ms = version.warmup.duration.as_secs_f64() * 1e3,
                            "version loaded"
                        );
                        versions.insert(number, Arc::new(version));
                    }
                    Err(e) => {
                        state.rejected.insert(number, fingerprint);
                        self.reject(&mut state, Some(number), &e.to_string());
                    }
                }
            }
        };
        versions.retain(|number, _| {
            let keep = wanted.contains(number);
            if !keep {
                self.stats.unloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(model = %self.name, version = number, "version unloaded");
            }
            keep
        });
        let routing = self.route_table(versions, &settings, &state);
        *self.routing.write().expect("routing lock") = Arc::new(routing);
    }

    fn reject(&self, state: &mut ReloadState, version: Option<u64>, error: &str) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::error!(model = %self.name, version = ?version, error = %error, "model version rejected; previous versions keep serving");
        state.last_error = Some(error.to_owned());
    }

    fn route_table(&self, versions: BTreeMap<u64, Arc<Version>>, settings: &Settings, state: &ReloadState) -> Routing {
        let loaded = |v: &u64| versions.contains_key(v);
        let stable = settings.labels.stable.filter(loaded).or_else(|| versions.keys().next_back().copied());
        let canary = match state.canary_override {
            Some((v, w)) if loaded(&v) => Some((v, w)),
            _ => settings
                .labels
                .canary
                .filter(|v| loaded(v) && Some(*v) != stable && settings.canary_weight > 0.0)
                .map(|v| (v, settings.canary_weight.clamp(0.0, 1.0))),
        };
        Routing { versions, stable, canary }
    }

    fn settings(&self) -> Result<Settings, ModelError> {
        let path = self.dir.join("model.yaml");
        let bad = |problem: String| ModelError::Repository { dir: self.dir.display().to_string(), problem };
        let settings: Settings = match std::fs::read_to_string(&path) {
            Ok(text) => serde_yaml_ng::from_str(&text).map_err(|e| bad(format!("model.yaml: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(e) => return Err(bad(format!("model.yaml: {e}"))),
        };
        if let Some(rows) = settings.max_batch_rows
            && !(1..=1 << 16).contains(&rows)
        {
            return Err(bad(format!("model.yaml: max_batch_rows must be between 1 and 65536 (got {rows})")));
        }
        if !(0.0..=1.0).contains(&settings.canary_weight) {
            return Err(bad(format!(
                "model.yaml: canary_weight must be between 0 and 1 (got {})",
                settings.canary_weight
            )));
        }
        if settings.version_policy == VersionPolicy::Latest(0) {
            return Err(bad("model.yaml: version_policy latest must be at least 1".into()));
        }
        Ok(settings)
    }

    fn present_versions(&self) -> BTreeMap<u64, (PathBuf, Fingerprint)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return BTreeMap::new() };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let number: u64 = e.file_name().to_str()?.parse().ok()?;
                let path = e.path().join("model.onnx");
                let meta = std::fs::metadata(&path).ok().filter(std::fs::Metadata::is_file)?;
                Some((number, (path, (meta.len(), meta.modified().ok()))))
            })
            .collect()
    }

    async fn load(&self, number: u64, path: &Path, settings: &Settings) -> Result<Version, LoadError> {
        let started = Instant::now();
        let options = SessionOptions {
            intra_op_threads: self.defaults.intra_op_threads,
            library: self.defaults.ort_library.clone(),
        };
        let threads = self.defaults.inference_threads;
        let (spec, owned_path) = (Arc::clone(&self.spec), path.to_path_buf());
        // Reading and optimising the graph takes a core for a while: never on the async workers,
        // and at the lowest CPU priority, so serving threads win whenever the cores are contended
        // (the p99 spike during reloads that TF Serving and Triton users complain about).
        let (done, loaded) = tokio::sync::oneshot::channel();
        let failed = |message: String| LoadError::Model(ModelError::Load { path: path.display().to_string(), message });
        std::thread::Builder::new()
            .name(format!("augur-load-{}-{number}", self.name))
            .spawn(move || {
                if let Err(e) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
                    tracing::debug!(error = ?e, "cannot lower the model-loading thread's priority");
                }
                let _ = done.send(onnx::open(&owned_path, &spec, &options, threads));
            })
            .map_err(|e| failed(e.to_string()))?;
        let runners = loaded.await.map_err(|_| failed("model-loading thread died".into()))??;
        let config = BatchConfig {
            max_batch_rows: settings.max_batch_rows.unwrap_or(self.defaults.max_batch_rows),
            max_queue_delay: Duration::from_micros(
                settings.max_queue_delay_us.unwrap_or(self.defaults.max_queue_delay_us),
            ),
            queue_capacity: self.defaults.queue_capacity,
        };
        let batcher = Batcher::start(&format!("{}-{number}", self.name), runners, config);
        let load_time = started.elapsed();
        let warmup = warm_up(&self.spec, &batcher).await?;
        Ok(Version { number, path: path.to_path_buf(), batcher, loaded_at: SystemTime::now(), load_time, warmup })
    }
}

/// Why one version could not be loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("warm-up failed: {0}")]
    Warmup(#[from] BatchError),
}

/// Runs rows of spec defaults at 1 row and at a full batch, so ORT's lazy allocations and the
/// threads' first-touch costs are paid before the version takes traffic.
async fn warm_up(spec: &Spec, batcher: &Batcher) -> Result<Warmup, BatchError> {
    let started = Instant::now();
    let mut warmup = Warmup::default();
    let context = HashMap::new();
    for rows in [1, batcher.config().max_batch_rows] {
        let candidates: Vec<(String, HashMap<String, crate::fetch::Value>)> =
            (0..rows).map(|i| (format!("warmup-{i}"), HashMap::new())).collect();
        let view = RequestView::new("", &context, &candidates);
        let assembled = assemble(spec, view, None, &vec![None; rows]);
        let scores = batcher.infer(assembled.tensors, None).await?;
        if scores.iter().any(|s| !s.is_finite()) {
            return Err(BatchError::Model("warm-up produced non-finite scores".into()));
        }
        warmup.runs += 1;
        warmup.rows += rows as u64;
    }
    warmup.duration = started.elapsed();
    Ok(warmup)
}

/// The user's sticky position in [0, 1) for canary routing.
fn user_bucket(user_id: &str) -> f64 {
    (xxh3_64(user_id.as_bytes()) % 10_000) as f64 / 10_000.0
}

/// Rescans on file-system events (debounced) and every `poll` (the fallback when inotify is
/// unavailable or misses an event), until the repository is dropped by everyone else.
pub fn watch(repo: Arc<Repository>, events: bool, poll: Option<Duration>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = if events {
        use notify::Watcher;
        let tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.try_send(());
            }
        });
        match &mut watcher {
            Ok(w) => {
                if let Err(e) = w.watch(repo.dir(), notify::RecursiveMode::Recursive) {
                    tracing::warn!(model = %repo.name(), error = %e, "cannot watch model repository; polling only");
                }
            }
            Err(e) => tracing::warn!(error = %e, "no file-system watcher; polling only"),
        }
        watcher.ok()
    } else {
        None
    };
    let weak = Arc::downgrade(&repo);
    drop(repo);
    tokio::spawn(async move {
        let _watcher = watcher;
        let poll = poll.unwrap_or(Duration::from_secs(24 * 3600));
        loop {
            tokio::select! {
                Some(()) = rx.recv() => {
                    // Debounce: a copy produces a burst of events; act once it settles.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while rx.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(poll) => {}
            }
            let Some(repo) = weak.upgrade() else { return };
            repo.rescan().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_yaml_parses_policies_and_labels() {
        let s: Settings = serde_yaml_ng::from_str(
            "max_batch_rows: 64\nversion_policy: {specific: [1, 3]}\nlabels: {stable: 1, canary: 3}\ncanary_weight: 0.25\n",
        )
        .unwrap();
        assert_eq!(s.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!((s.labels.stable, s.labels.canary, s.canary_weight), (Some(1), Some(3), 0.25));
        let s: Settings = serde_yaml_ng::from_str("version_policy: {latest: 2}\n").unwrap();
        assert_eq!(s.version_policy, VersionPolicy::Latest(2));
        assert!(serde_yaml_ng::from_str::<Settings>("max_batch_rowz: 3\n").is_err());
    }

    #[test]
    fn user_buckets_are_sticky_and_spread() {
        assert_eq!(user_bucket("u1"), user_bucket("u1"));
        let below = (0..10_000).filter(|i| user_bucket(&format!("u{i}")) < 0.1).count();
        assert!((800..1200).contains(&below), "10% canary got {below} of 10000 users");
    }
}
