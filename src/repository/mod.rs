//! The model repository of one scene: `<dir>/[model.yaml]` and `<dir>/<version>/model.onnx`,
//! laid out like Triton's and TF Serving's.
//!
//! [`Repository::rescan`] makes the loaded set match the directory and `model.yaml`'s version
//! policy: a new version is opened by the [`ModelLoader`] the repository was handed (ONNX in
//! the service, a fake in tests) on a low-priority thread, validated against the feature spec,
//! warmed up, and only then swapped into the routing table in one atomic step; requests in
//! flight keep the `Arc<Version>` they started with, so they finish on the old version. A corrupt
//! or mismatched model is rejected with a log line and a counter and the old version keeps
//! serving; it is retried only when its file changes. A version whose directory is gone is
//! unloaded.
//!
//! With `model.reload = release_first` a version that the new one replaces is released *before*
//! the new one loads: out of the routing table (the scene turns NOT_SERVING and Predict answers
//! UNAVAILABLE naming the setting), requests in flight finish on it, its inference threads free
//! their sessions and the shared weights, and only then is the next version read. The memory
//! peak of a reload is then one version, not two, at the price of the scene serving nothing for
//! the load and warm-up; so it is meant for deployments whose other replicas take the traffic. A
//! new version that fails is rejected as always, and the next round of the same rescan loads
//! the best version still acceptable (usually the one just released) again.
//!
//! The model control plane, beside the scene router ([`crate::scene`]): [`settings`] is
//! `model.yaml`, [`routing`] the traffic split swapped with each version set, [`warmup`] runs
//! before a version takes traffic, [`watch`] rescans on file-system events, and [`source`]
//! materialises versions published to a bucket ([`bucket`] is that layout) into the directory,
//! so they take the same path; [`provenance`] is what a version's marker records about how it
//! was trained and how it compared when published. It composes the batcher and the model loader, so `model` stays
//! the leaf both depend on.

pub mod bucket;
pub mod config;
pub mod metrics;
pub mod provenance;
pub mod rollout;
pub mod routing;
pub mod settings;
pub mod source;
pub mod warmup;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use tokio_util::task::TaskTracker;

use self::rollout::{Decision, Evaluation, Verdict, Written};
use self::routing::{RouteError, Routing};
use self::settings::{Settings, VersionPolicy};
use self::warmup::{Warmup, WarmupError, warm_up};
use crate::assemble::Spec;
use crate::batch::{BatchConfig, BatchContext, BatchStats, Batcher, ModelsHeld, Reopen};
use crate::model::config::{LoadPriority, ModelConfig, ReloadStrategy};
use crate::model::{Model, ModelError, ModelLoader};
use crate::telemetry::{Metrics, ModelLabels, VersionLabels};
use metrics::{ModelMetrics, ReloadLabels};

/// One loaded, warmed-up model version.
#[derive(Debug)]
pub struct Version {
    /// Version number (directory name).
    pub number: u64,
    /// The model file.
    pub path: PathBuf,
    /// Its batcher and inference threads.
    pub batcher: Batcher,
    /// When it became servable.
    pub loaded_at: SystemTime,
    /// Load + validation time.
    pub load_time: Duration,
    /// Warm-up stats.
    pub warmup: Warmup,
    /// The training reference published with it (`reference.json`), for drift; `None` when it
    /// has none or it is unusable (logged: the version serves all the same).
    pub reference: Option<Arc<crate::drift::reference::Reference>>,
}

/// Why a run-time canary change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// The weight is not a share.
    #[error("weight: {weight} is not between 0 and 1")]
    Weight {
        /// What the caller sent.
        weight: f64,
    },
    /// The version is not loaded, so no traffic could go to it.
    #[error("version: {version} is not loaded for model `{model}`")]
    NotLoaded {
        /// Repository name.
        model: String,
        /// What the caller asked for.
        version: u64,
    },
    /// A rollout decision names a version the directory does not hold.
    #[error("version: {version} is not in model repository `{model}`")]
    NotPresent {
        /// Repository name.
        model: String,
        /// What the caller asked for.
        version: u64,
    },
    /// An operator's rollout action is none the API knows.
    #[error("action: {action} is not one of PROMOTE, ROLLBACK, HOLD, RESUME")]
    Action {
        /// What the caller sent.
        action: i32,
    },
    /// Rollout decisions need a rollout policy on the scene.
    #[error("model `{model}` has no rollout policy (scenes[].rollout): use SetCanary")]
    NoPolicy {
        /// Repository name.
        model: String,
    },
    /// The decision could not be written into the repository.
    #[error("model repository `{model}`: cannot record the rollout decision of version {version}: {source}")]
    Record {
        /// Repository name.
        model: String,
        /// The decided version.
        version: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why one version could not be loaded.
#[derive(Debug, thiserror::Error)]
enum VersionLoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Warmup(#[from] WarmupError),
    #[error("model-loading thread for {path}: {source}")]
    Thread {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("model-loading thread for {path} died")]
    ThreadDied { path: String },
}

/// How often a release-first reload looks whether the old version is gone.
const RELEASE_POLL: Duration = Duration::from_millis(5);

/// Identity of a model file, so a rejected file is retried only once it changes.
type Fingerprint = (u64, Option<SystemTime>);

#[derive(Debug, Default)]
struct ReloadState {
    /// Rejected versions, the file identity they were rejected with, why and when (ms since
    /// the Unix epoch).
    rejected: HashMap<u64, (Fingerprint, String, i64)>,
    canary_override: Option<(u64, f64)>,
    last_error: Option<String>,
    /// The canary share of the scene's rollout policy; `None`: no policy, model.yaml's labels
    /// and `canary_weight` route.
    rollout: Option<f64>,
    /// Decisions of the present versions, as of the last rescan.
    decisions: BTreeMap<u64, Decision>,
    /// Stable and canary as the rollout plan chose them at the last rescan.
    plan: (Option<u64>, Option<u64>),
    /// The canary this replica routes to and since when (ms since the Unix epoch).
    canary_since: Option<(u64, i64)>,
}

/// A repository's rollout state, for the decider and the admin listing.
#[derive(Debug, Clone, Default)]
pub struct RolloutView {
    /// The policy's canary share.
    pub share: f64,
    /// The stable version.
    pub stable: Option<u64>,
    /// The canary, its share, and since when this replica routes to it (ms since the epoch).
    pub canary: Option<(u64, f64, i64)>,
    /// Decisions of the present versions, by version.
    pub decisions: BTreeMap<u64, Decision>,
}

/// What a repository records into and where its threads report.
#[derive(Debug, Clone)]
pub struct RepositoryContext {
    /// The process's metrics.
    pub metrics: Metrics,
    /// Tracks inference and loading threads for the ordered shutdown.
    pub tracker: TaskTracker,
}

/// Counters of a repository (the same handles are exported as `augur_model_*_total`).
#[derive(Debug, Clone)]
struct Counters {
    rescans: Counter,
    loads: Counter,
    rejected: Counter,
    unloads: Counter,
    /// Reloads (a version loaded while others served), by what happened: overlapped or released
    /// first.
    reloads: [Counter; 2],
    /// Predict calls refused while a release-first reload had nothing to serve.
    refused: Counter,
}

/// A snapshot of a repository's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepositoryStats {
    /// Rescans done.
    pub rescans: u64,
    /// Versions loaded.
    pub loads: u64,
    /// Versions rejected (corrupt, mismatched, warm-up failed, bad model.yaml).
    pub rejected: u64,
    /// Versions unloaded.
    pub unloads: u64,
    /// Reloads that loaded the new version beside the old one.
    pub reloads_overlapped: u64,
    /// Reloads that released the old version first.
    pub reloads_released_first: u64,
    /// Predict calls refused during release-first reloads.
    pub refused: u64,
}

/// The repository of one scene.
#[derive(Debug)]
pub struct Repository {
    name: String,
    dir: PathBuf,
    spec: Arc<Spec>,
    defaults: ModelConfig,
    loader: Arc<dyn ModelLoader>,
    context: RepositoryContext,
    counters: Counters,
    routing: RwLock<Arc<Routing>>,
    /// Whether the routing table has a version to serve; the app's health follows it per scene.
    serving: tokio::sync::watch::Sender<bool>,
    reload: tokio::sync::Mutex<ReloadState>,
    /// The decider's last look at the canary on this replica (status, ListModels).
    evaluation: Mutex<Option<Evaluation>>,
}

impl Repository {
    /// An empty repository; call [`Repository::rescan`] to load.
    pub fn new(
        dir: &Path,
        spec: Arc<Spec>,
        defaults: ModelConfig,
        loader: Arc<dyn ModelLoader>,
        context: RepositoryContext,
    ) -> Self {
        let name = dir.file_name().map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
        let labels = ModelLabels { model: name.clone() };
        let m = context.metrics.of::<ModelMetrics>();
        let reloads = [ReloadStrategy::Overlap, ReloadStrategy::ReleaseFirst].map(|strategy| {
            let labels = ReloadLabels { model: name.clone(), strategy: strategy.as_str().to_owned() };
            m.reloads.get_or_create(&labels).clone()
        });
        let counters = Counters {
            rescans: m.rescans.get_or_create(&labels).clone(),
            loads: m.loads.get_or_create(&labels).clone(),
            rejected: m.rejected.get_or_create(&labels).clone(),
            unloads: m.unloads.get_or_create(&labels).clone(),
            reloads,
            refused: m.reload_refused.get_or_create(&labels).clone(),
        };
        Repository {
            name,
            dir: dir.to_path_buf(),
            spec,
            defaults,
            loader,
            context,
            counters,
            routing: RwLock::new(Arc::new(Routing::default())),
            serving: tokio::sync::watch::Sender::new(false),
            reload: tokio::sync::Mutex::new(ReloadState::default()),
            evaluation: Mutex::new(None),
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
    pub fn stats(&self) -> RepositoryStats {
        let c = &self.counters;
        RepositoryStats {
            rescans: c.rescans.get(),
            loads: c.loads.get(),
            rejected: c.rejected.get(),
            unloads: c.unloads.get(),
            reloads_overlapped: c.reloads[0].get(),
            reloads_released_first: c.reloads[1].get(),
            refused: c.refused.get(),
        }
    }

    /// The current routing table.
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn set_routing(&self, routing: Routing) {
        let serving = !routing.versions.is_empty();
        *self.routing.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routing);
        self.serving.send_if_modified(|s| std::mem::replace(s, serving) != serving);
    }

    /// Whether the repository has a version to serve, as it changes (false during a
    /// release-first reload and when every version is gone): the scene's health status.
    pub fn serving(&self) -> tokio::sync::watch::Receiver<bool> {
        self.serving.subscribe()
    }

    /// The last rejection message, if any.
    pub async fn last_error(&self) -> Option<String> {
        self.reload.lock().await.last_error.clone()
    }

    /// Versions present in the directory but refused (until their file changes), why and when.
    pub async fn rejected_versions(&self) -> Vec<(u64, String, i64)> {
        let mut rejected: Vec<(u64, String, i64)> =
            self.reload.lock().await.rejected.iter().map(|(v, (_, why, at))| (*v, why.clone(), *at)).collect();
        rejected.sort_unstable();
        rejected
    }

    /// Picks the version for a request (see [`Routing::route`]).
    pub fn route(&self, user_id: &str, pinned: &str) -> Result<Arc<Version>, RouteError> {
        let routing = self.routing();
        if routing.releasing && routing.versions.is_empty() {
            self.counters.refused.inc();
            return Err(RouteError::Releasing { scene: self.spec.scene.clone(), model: self.name.clone() });
        }
        routing.route(&self.name, user_id, pinned)
    }

    /// Sets (weight > 0) or clears (weight 0) the canary at run time; it holds across rescans
    /// while that version stays loaded.
    pub async fn set_canary(&self, version: u64, weight: f64) -> Result<(), CanaryError> {
        if !(0.0..=1.0).contains(&weight) {
            return Err(CanaryError::Weight { weight });
        }
        let mut state = self.reload.lock().await;
        let current = self.routing();
        if weight > 0.0 && !current.versions.contains_key(&version) {
            return Err(CanaryError::NotLoaded { model: self.name.clone(), version });
        }
        state.canary_override = (weight > 0.0).then_some((version, weight));
        let settings = Settings::read(&self.dir).unwrap_or_default();
        let routing = Self::table(&state, current.versions.clone(), &settings);
        self.set_routing(routing);
        Self::track_canary(&mut state, &self.routing());
        Ok(())
    }

    /// Puts the repository under a rollout policy routing `share` of users to each new version
    /// until it is decided (`scenes[].rollout`); call before the first rescan.
    pub async fn enable_rollout(&self, share: f64) {
        self.reload.lock().await.rollout = Some(share);
    }

    /// The rollout state; `None` without a rollout policy.
    pub async fn rollout(&self) -> Option<RolloutView> {
        let state = self.reload.lock().await;
        let share = state.rollout?;
        let routing = self.routing();
        let canary = routing.canary.map(|(v, w)| {
            let since = state
                .canary_since
                .filter(|(c, _)| *c == v)
                .map_or_else(crate::sample_log::snapshot::now_ms, |(_, t)| t);
            (v, w, since)
        });
        Some(RolloutView { share, stable: routing.stable, canary, decisions: state.decisions.clone() })
    }

    /// Records a rollout decision in the repository (create-if-absent unless `replace`) and
    /// rescans, so this replica follows it at once; the others follow through their watchers.
    pub async fn decide(&self, decision: &Decision, replace: bool) -> Result<Written, CanaryError> {
        if self.reload.lock().await.rollout.is_none() {
            return Err(CanaryError::NoPolicy { model: self.name.clone() });
        }
        if !self.dir.join(decision.version.to_string()).is_dir() {
            return Err(CanaryError::NotPresent { model: self.name.clone(), version: decision.version });
        }
        let written = rollout::write(&self.dir, decision, replace).map_err(|source| CanaryError::Record {
            model: self.name.clone(),
            version: decision.version,
            source,
        })?;
        self.rescan().await;
        Ok(written)
    }

    /// Removes the decision of `version`, handing it back to the decider.
    pub async fn clear_decision(&self, version: u64) -> Result<(), CanaryError> {
        if self.reload.lock().await.rollout.is_none() {
            return Err(CanaryError::NoPolicy { model: self.name.clone() });
        }
        rollout::clear(&self.dir, version).map_err(|source| CanaryError::Record {
            model: self.name.clone(),
            version,
            source,
        })?;
        self.rescan().await;
        Ok(())
    }

    /// The decider's last look at the canary on this replica.
    pub fn evaluation(&self) -> Option<Evaluation> {
        self.evaluation.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Keeps the decider's last look.
    pub fn set_evaluation(&self, evaluation: Evaluation) {
        *self.evaluation.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(evaluation);
    }

    /// The routing table for `versions` under the state's policy: the rollout plan, or
    /// model.yaml's labels.
    fn table(state: &ReloadState, versions: BTreeMap<u64, Arc<Version>>, settings: &Settings) -> Routing {
        match state.rollout {
            Some(share) => Routing::planned(versions, state.plan.0, state.plan.1, share, state.canary_override),
            None => Routing::new(versions, settings, state.canary_override),
        }
    }

    fn track_canary(state: &mut ReloadState, routing: &Routing) {
        state.canary_since = match (routing.canary, state.canary_since) {
            (Some((v, _)), Some((since_v, t))) if v == since_v => Some((v, t)),
            (Some((v, _)), _) => Some((v, crate::sample_log::snapshot::now_ms())),
            (None, _) => None,
        };
    }

    /// Empties the routing table (shutdown): once requests in flight drop their `Arc<Version>`,
    /// the batchers close and their threads answer what is queued and exit.
    pub fn unload_all(&self) {
        for version in self.routing().versions.values() {
            self.version_gone(version.number);
        }
        self.set_routing(Routing::default());
    }

    fn version_gone(&self, number: u64) {
        let labels = VersionLabels { model: self.name.clone(), version: number.to_string() };
        self.context.metrics.of::<ModelMetrics>().version_info.get_or_create(&labels).set(0);
    }

    /// Makes the loaded versions match the directory. Errors of single versions are logged and
    /// counted, never returned: the previous versions keep serving.
    pub async fn rescan(&self) {
        let mut state = self.reload.lock().await;
        self.counters.rescans.inc();
        let settings = match Settings::read(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                self.reject(&mut state, None, &e);
                return;
            }
        };
        let present = self.present_versions();
        state.rejected.retain(|v, (fp, _, _)| present.get(v).is_some_and(|(_, now)| now == fp));
        if state.rollout.is_some() {
            state.decisions = rollout::read_all(&self.dir, present.keys().copied());
        }
        let mut versions = self.routing().versions.clone();
        let (served_before, mut loaded_any, mut released_any) = (!versions.is_empty(), false, false);
        // Availability first: load what the policy wants, treating rejected files (and rolled-back
        // versions) as absent, and only then unload what it no longer wants — a bad new version
        // never takes the old one down with it.
        let wanted = loop {
            let rolled_back = |v: &u64| state.decisions.get(v).is_some_and(|d| d.verdict == Verdict::Rollback);
            let candidates: Vec<u64> =
                present.keys().copied().filter(|v| !state.rejected.contains_key(v) && !rolled_back(v)).collect();
            let mut wanted: Vec<u64> = match &settings.version_policy {
                VersionPolicy::Latest(n) => candidates.iter().rev().take(*n).copied().collect(),
                VersionPolicy::Specific(list) => list.iter().copied().filter(|v| candidates.contains(v)).collect(),
            };
            if state.rollout.is_some() {
                // Under a rollout policy the stable and the canary are loaded whatever the version
                // policy says: the canary is compared with the stable, which keeps serving.
                state.plan = self.plan(&mut state, &candidates, settings.labels.stable);
                for v in [state.plan.0, state.plan.1].into_iter().flatten() {
                    if !wanted.contains(&v) {
                        wanted.push(v);
                    }
                }
            }
            let missing: Vec<u64> = wanted.iter().copied().filter(|v| !versions.contains_key(v)).collect();
            if missing.is_empty() {
                break wanted;
            }
            if self.defaults.reload == ReloadStrategy::ReleaseFirst {
                let leaving: Vec<u64> = versions.keys().copied().filter(|v| !wanted.contains(v)).collect();
                if !leaving.is_empty() {
                    self.release(&state, &mut versions, &leaving, &settings).await;
                    released_any = true;
                }
            }
            for number in missing {
                let (path, fingerprint) = present[&number].clone();
                match self.load(number, &path, &settings).await {
                    Ok(version) => {
                        self.counters.loads.inc();
                        let labels = VersionLabels { model: self.name.clone(), version: number.to_string() };
                        self.context.metrics.of::<ModelMetrics>().version_info.get_or_create(&labels).set(1);
                        tracing::info!(
                            model = %self.name, version = number,
                            load_ms = version.load_time.as_secs_f64() * 1e3,
                            warmup_ms = version.warmup.duration.as_secs_f64() * 1e3,
                            "version loaded"
                        );
                        versions.insert(number, Arc::new(version));
                        loaded_any = true;
                    }
                    Err(e) => {
                        let at = crate::sample_log::snapshot::now_ms();
                        state.rejected.insert(number, (fingerprint, e.to_string(), at));
                        self.reject(&mut state, Some(number), &e);
                    }
                }
            }
        };
        versions.retain(|number, _| {
            let keep = wanted.contains(number);
            if !keep {
                self.counters.unloads.inc();
                self.version_gone(*number);
                tracing::info!(model = %self.name, version = number, "version unloaded");
            }
            keep
        });
        if let Some((v, _)) = state.canary_override
            && state.decisions.get(&v).is_some_and(|d| d.verdict != Verdict::Hold)
        {
            // A decided canary leaves the run-time override too: promoted it is stable, rolled
            // back it is gone.
            state.canary_override = None;
        }
        if served_before && loaded_any {
            self.counters.reloads[usize::from(released_any)].inc();
        }
        if released_any && versions.is_empty() {
            tracing::error!(
                model = %self.name, scene = %self.spec.scene, last_error = ?state.last_error,
                "release_first: the old version was released and no version could be loaded since; the scene stays NOT_SERVING until a loadable version appears"
            );
        }
        let routing = Self::table(&state, versions, &settings);
        Self::track_canary(&mut state, &routing);
        self.set_routing(routing);
    }

    /// Release-first: takes `leaving` out of the routing table (with nothing left the scene
    /// refuses calls as `Releasing`), waits for the requests in flight on them and for their
    /// inference threads to free the models, bounded by `model.release_wait_ms`, so the next
    /// version loads into the room they left.
    async fn release(
        &self,
        state: &ReloadState,
        versions: &mut BTreeMap<u64, Arc<Version>>,
        leaving: &[u64],
        settings: &Settings,
    ) {
        let gone: Vec<Arc<Version>> = leaving.iter().filter_map(|v| versions.remove(v)).collect();
        let mut routing = Self::table(state, versions.clone(), settings);
        routing.releasing = true;
        self.set_routing(routing);
        for version in &gone {
            self.counters.unloads.inc();
            self.version_gone(version.number);
        }
        tracing::info!(
            model = %self.name, scene = %self.spec.scene, versions = ?leaving, serving = ?versions.keys().collect::<Vec<_>>(),
            "release_first: releasing the replaced version before loading the next"
        );
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.defaults.release_wait_ms);
        let held: Vec<ModelsHeld> = gone.iter().map(|v| v.batcher.models()).collect();
        // Requests in flight hold their `Arc<Version>`: they finish on it, then it goes.
        while gone.iter().any(|v| Arc::strong_count(v) > 1) && Instant::now() < deadline {
            tokio::time::sleep(RELEASE_POLL).await;
        }
        let in_flight = gone.iter().filter(|v| Arc::strong_count(v) > 1).count();
        drop(gone);
        while !held.iter().all(ModelsHeld::freed) && Instant::now() < deadline {
            tokio::time::sleep(RELEASE_POLL).await;
        }
        let freed = held.iter().all(ModelsHeld::freed);
        if freed {
            tracing::info!(
                model = %self.name, versions = ?leaving, wait_ms = started.elapsed().as_secs_f64() * 1e3,
                "version unloaded (release_first: freed before the next loads)"
            );
        } else {
            tracing::warn!(
                model = %self.name, versions = ?leaving, in_flight, wait_ms = self.defaults.release_wait_ms,
                "release_first: the old version is still held after model.release_wait_ms; loading the next anyway (its memory goes when the last request on it ends)"
            );
        }
    }

    /// The rollout plan over `candidates`; with nothing promoted yet the highest candidate is
    /// recorded as the bootstrap stable (create-if-absent: every replica ends on the same one).
    fn plan(
        &self,
        state: &mut ReloadState,
        candidates: &[u64],
        labels_stable: Option<u64>,
    ) -> (Option<u64>, Option<u64>) {
        let planned = rollout::plan(candidates, labels_stable, &state.decisions);
        let (None, Some(&top)) = (planned.0, candidates.last()) else { return planned };
        let decision = Decision {
            version: top,
            verdict: Verdict::Promote,
            by: "bootstrap".into(),
            at_ms: crate::sample_log::snapshot::now_ms(),
            stable: None,
            reason: "nothing promoted yet: the newest version is the stable later versions are compared with".into(),
            replica: rollout::replica_name(),
            comparison: None,
        };
        match rollout::write(&self.dir, &decision, false) {
            Ok(Written::Recorded) => {
                tracing::info!(model = %self.name, version = top, "rollout: bootstrap stable recorded");
                state.decisions.insert(top, decision);
            }
            Ok(Written::AlreadyDecided(theirs)) => {
                state.decisions.insert(top, *theirs);
            }
            Err(e) => {
                // Routing still works (stable = the highest loaded); the next rescan retries.
                tracing::warn!(model = %self.name, version = top, error = %e, "rollout: cannot record the bootstrap stable");
                return (Some(top), None);
            }
        }
        rollout::plan(candidates, labels_stable, &state.decisions)
    }

    fn reject(&self, state: &mut ReloadState, version: Option<u64>, error: &dyn std::error::Error) {
        self.counters.rejected.inc();
        tracing::error!(model = %self.name, version = ?version, error = %error, "model version rejected; previous versions keep serving");
        state.last_error = Some(error.to_string());
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

    async fn load(&self, number: u64, path: &Path, settings: &Settings) -> Result<Version, VersionLoadError> {
        let started = Instant::now();
        let threads = self.defaults.inference_threads;
        // Reading and optimising the graph takes a core for a while: never on the async workers,
        // and at the lowest CPU priority, so serving threads win whenever the cores are contended
        // (the p99 spike during reloads that TF Serving and Triton users complain about).
        let (done, mut loaded) = tokio::sync::oneshot::channel();
        let (loader, spec, file) = (Arc::clone(&self.loader), Arc::clone(&self.spec), path.to_path_buf());
        let token = self.context.tracker.token();
        let priority = self.defaults.load_priority;
        let loading = std::thread::Builder::new()
            .name(format!("augur-load-{}-{number}", self.name))
            .spawn(move || {
                lower_priority(priority);
                // One opener per version: the threads' instances (and any reopened after a panic)
                // share what it read, e.g. one copy of the weights.
                let opened = loader.opener(&file, spec).and_then(|open| {
                    let models = (0..threads).map(|_| open()).collect::<Result<Vec<Box<dyn Model>>, ModelError>>()?;
                    Ok((open, models))
                });
                let _ = done.send(opened);
                drop(token);
            })
            .map_err(|source| VersionLoadError::Thread { path: path.display().to_string(), source })?;
        let opened = match priority {
            LoadPriority::Idle => {
                let limit = Duration::from_millis(self.defaults.load_idle_limit_ms);
                match tokio::time::timeout(limit, &mut loaded).await {
                    Ok(opened) => opened,
                    Err(_) => {
                        // A host with no idle CPU would starve the load for as long as it stays
                        // busy: from here on it competes at nice 19, as `low` does.
                        tracing::warn!(
                            model = %self.name, version = number, after_ms = self.defaults.load_idle_limit_ms,
                            "model load still running under SCHED_IDLE; continuing at nice 19 (model.load_idle_limit_ms)"
                        );
                        raise_to_low(loading);
                        loaded.await
                    }
                }
            }
            LoadPriority::Low => loaded.await,
        };
        let (reopen, models): (Reopen, _) =
            opened.map_err(|_| VersionLoadError::ThreadDied { path: path.display().to_string() })??;
        let config = BatchConfig {
            max_batch_rows: settings.max_batch_rows.unwrap_or(self.defaults.max_batch_rows),
            max_queue_delay: Duration::from_micros(
                settings.max_queue_delay_us.unwrap_or(self.defaults.max_queue_delay_us),
            ),
            queue_capacity: self.defaults.queue_capacity,
        };
        let context =
            BatchContext::new(&self.context.metrics, &self.spec.scene, &self.name, number, &self.context.tracker)
                .with_reopen(reopen)
                .with_row_kinds(self.spec.row_kinds());
        let batcher = Batcher::start(models, config, context);
        let load_time = started.elapsed();
        let warmup = warm_up(&self.spec, &batcher).await?;
        let reference = self.reference(number, path);
        Ok(Version {
            number,
            path: path.to_path_buf(),
            batcher,
            loaded_at: SystemTime::now(),
            load_time,
            warmup,
            reference,
        })
    }

    /// The version's `reference.json` (a few KiB, read once per load): a bad one is logged and
    /// ignored, never a reason to refuse a model that validated.
    fn reference(&self, number: u64, model: &Path) -> Option<Arc<crate::drift::reference::Reference>> {
        let dir = model.parent()?;
        match crate::drift::reference::Reference::load(dir) {
            Ok(reference) => reference.map(Arc::new),
            Err(e) => {
                tracing::warn!(model = %self.name, version = number, error = %e, "training reference unusable; drift shows none");
                None
            }
        }
    }
}

// === impl Version ===

impl Version {
    /// The batcher's counters.
    pub fn stats(&self) -> BatchStats {
        self.batcher.stats()
    }
}

/// Moves a loading thread from `SCHED_IDLE` to the normal policy; its nice value stays 19. The
/// call runs on a throwaway thread: thread-priority sets the policy of the given thread but the
/// nice value of the *calling* one, which must not be an async or pooled worker.
fn raise_to_low(loading: std::thread::JoinHandle<()>) {
    #[cfg(target_os = "linux")]
    let raise = move || {
        use std::os::unix::thread::JoinHandleExt;
        use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy};
        // The handle, held through the call, keeps the loader's thread id its own.
        let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
        if let Err(e) =
            set_thread_priority_and_policy(loading.as_pthread_t(), thread_priority::ThreadPriority::Min, policy)
        {
            tracing::warn!(error = ?e, "cannot raise the model-loading thread's priority");
        }
    };
    #[cfg(not(target_os = "linux"))]
    let raise = move || drop(loading);
    if let Err(e) = std::thread::Builder::new().name("augur-load-raise".into()).spawn(raise) {
        tracing::warn!(error = %e, "cannot raise the model-loading thread's priority");
    }
}

/// Lowers the calling (loading) thread's CPU priority: nice 19, or with `idle` `SCHED_IDLE` on
/// Linux, which a waking serving thread preempts at once (under nice 19 it can wait out the
/// loader's slice: the reload p99 spike).
fn lower_priority(priority: LoadPriority) {
    let result = match priority {
        #[cfg(target_os = "linux")]
        LoadPriority::Idle => {
            use thread_priority::unix::{
                NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
            };
            set_thread_priority_and_policy(
                thread_native_id(),
                thread_priority::ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
            )
        }
        _ => thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min),
    };
    if let Err(e) = result {
        tracing::debug!(error = ?e, "cannot lower the model-loading thread's priority");
    }
}
