//! Step 2 of the path: the scene router, between the gRPC entry and the feature fetch. A scene
//! name selects a compiled feature spec and a model [`Repository`] (its versions and their
//! traffic split, kept by the control plane in [`crate::repository`]); the scene also times each
//! stage of the path.

pub mod config;
pub mod metrics;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::repository::{Repository, RepositoryContext, bucket, source};

use crate::assemble::{Fallback, FallbackReason, Spec, SpecError};
use crate::model::ModelLoader;
use crate::model::config::ModelConfig;
use crate::scene::config::SceneConfig;
use crate::scene::metrics::{FallbackLabels, PathMetrics};
use crate::telemetry::{LatencyHistogram, SceneLabels};

/// A stage of the request path, timed per scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Store reads (user + items, concurrently), including waiting for the budget.
    Fetch,
    /// Spec transforms into tensors.
    Assemble,
    /// Batcher queue wait (recorded by the inference threads).
    Queue,
    /// Batcher queue + model run, as the request sees it.
    Infer,
    /// The whole Predict call inside augur.
    Total,
}

impl Stage {
    /// All stages, in path order.
    pub const ALL: [Stage; 5] = [Stage::Fetch, Stage::Assemble, Stage::Queue, Stage::Infer, Stage::Total];

    /// Lower-case name (the `stage` label).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Assemble => "assemble",
            Stage::Queue => "queue",
            Stage::Infer => "infer",
            Stage::Total => "total",
        }
    }
}

/// A served scene.
#[derive(Debug)]
pub struct Scene {
    /// The compiled feature spec.
    pub spec: Arc<Spec>,
    /// Its model versions.
    pub repo: Arc<Repository>,
    /// The bucket its versions are published to, when configured.
    pub source: Option<Arc<source::Source>>,
    /// Its rollout policy, when configured (the decider runs it; ModelAdmin shows it).
    pub rollout: Option<crate::rollout::config::RolloutConfig>,
    /// Fallback counters per feature (spec order) and reason, resolved once from the registry.
    fallbacks: Vec<[Counter; FallbackReason::ALL.len()]>,
    /// Stage histograms, indexed by `Stage as usize`.
    stages: [LatencyHistogram; Stage::ALL.len()],
    /// Candidates scored, resolved once from the registry like the other handles.
    scored: Counter,
}

/// Why a scene could not start.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// The feature spec is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No model version could be loaded.
    #[error("scene `{scene}`: no model version could be loaded from {dir}: {error}")]
    NoModel {
        /// The scene.
        scene: String,
        /// The repository directory.
        dir: String,
        /// The last rejection.
        error: String,
    },
    /// The bucket source is misconfigured or its local directory unusable.
    #[error("scene `{scene}`: model source: {source}")]
    Source {
        /// The scene.
        scene: String,
        /// Why.
        #[source]
        source: bucket::BucketError,
    },
    /// The spec file declares another scene name than the config.
    #[error("scenes: `{config}` points at a spec declaring scene `{spec}`")]
    NameMismatch {
        /// Name in the config.
        config: String,
        /// Name in the spec.
        spec: String,
    },
}

impl Scene {
    /// Loads the spec and the repository's versions (validated and warmed up).
    pub async fn load(
        config: &SceneConfig,
        model: &ModelConfig,
        loader: Arc<dyn ModelLoader>,
        context: RepositoryContext,
    ) -> Result<Self, SceneError> {
        let spec = Arc::new(Spec::load(&config.spec)?);
        if spec.scene != config.name {
            return Err(SceneError::NameMismatch { config: config.name.clone(), spec: spec.scene.clone() });
        }
        let metrics = context.metrics.clone();
        let source = match &config.source {
            Some(source) => Some(Arc::new(Self::first_poll(config, source, &metrics).await?)),
            None => None,
        };
        let repo = Arc::new(Repository::new(&config.model, Arc::clone(&spec), model.clone(), loader, context));
        if let Some(rollout) = &config.rollout {
            repo.enable_rollout(rollout.canary_share).await;
        }
        repo.rescan().await;
        if repo.routing().versions.is_empty() {
            let error =
                repo.last_error().await.unwrap_or_else(|| "no numeric version directory with a model.onnx".into());
            return Err(SceneError::NoModel {
                scene: spec.scene.clone(),
                dir: config.model.display().to_string(),
                error,
            });
        }
        let path = metrics.of::<PathMetrics>();
        let fallbacks = spec
            .features
            .iter()
            .map(|f| {
                FallbackReason::ALL.map(|reason| {
                    let labels = FallbackLabels {
                        scene: spec.scene.clone(),
                        feature: f.name.clone(),
                        reason: reason.as_str().to_owned(),
                    };
                    path.fallbacks.get_or_create(&labels).clone()
                })
            })
            .collect();
        let stages = Stage::ALL.map(|stage| metrics.stage(&spec.scene, stage.name()));
        let scored = path.scored.get_or_create(&SceneLabels { scene: spec.scene.clone() }).clone();

        Ok(Scene { spec, repo, source, rollout: config.rollout.clone(), fallbacks, stages, scored })
    }

    /// Materialises what the bucket's `LATEST` names before the first load, so a fresh machine
    /// serves the published version. An unreachable bucket does not stop start-up when the
    /// directory already holds a version (the poller keeps trying).
    async fn first_poll(
        config: &SceneConfig,
        source: &crate::repository::config::SourceConfig,
        metrics: &crate::telemetry::Metrics,
    ) -> Result<source::Source, SceneError> {
        let error = |source| SceneError::Source { scene: config.name.clone(), source };
        std::fs::create_dir_all(&config.model)
            .map_err(|e| error(bucket::BucketError::Io { path: config.model.display().to_string(), source: e }))?;
        let mut source = source::Source::new(source, &config.model, metrics).map_err(error)?;
        if config.rollout.is_some() {
            source = source.sharing_decisions();
        }
        let outcome = source.poll().await;
        tracing::info!(scene = %config.name, url = %source.url(), outcome = ?outcome, "model bucket polled at start-up");
        Ok(source)
    }

    /// The latency histogram of `stage`.
    pub fn stage(&self, stage: Stage) -> &LatencyHistogram {
        &self.stages[stage as usize]
    }

    /// Counts the candidates of one answered Predict call.
    pub fn count_scored(&self, candidates: usize) {
        self.scored.inc_by(candidates as u64);
    }

    /// Adds one request's fallbacks (of `rows` candidates) to the per-feature counters, one per
    /// affected row.
    pub fn count_fallbacks(&self, fallbacks: &[Fallback], rows: usize) {
        for f in fallbacks {
            if let Some(i) = self.spec.features.iter().position(|s| s.name == f.feature) {
                // Rows, whatever the feature's source: a user or context feature falls back in
                // every row of the request (its `candidates` is empty), an item one in its own.
                let rows = if f.candidates.is_empty() { rows as u64 } else { f.candidates.len() as u64 };
                self.fallbacks[i][f.reason as usize].inc_by(rows);
            }
        }
    }

    /// Fallbacks served so far for `feature` and `reason`.
    pub fn fallback_count(&self, feature: &str, reason: FallbackReason) -> u64 {
        self.spec
            .features
            .iter()
            .position(|s| s.name == feature)
            .map_or(0, |i| self.fallbacks[i][reason as usize].get())
    }
}
