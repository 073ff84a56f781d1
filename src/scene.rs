//! Start-up wiring of one scene: compile its feature spec, open its model repository and load
//! the versions its policy wants. Start-up fails if no version can serve.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::assemble::{Fallback, FallbackReason, Spec, SpecError};
use crate::config::{ModelConfig, SceneConfig};
use crate::model::Repository;
use crate::stats::StageStats;

/// A served scene.
#[derive(Debug)]
pub struct Scene {
    /// The compiled feature spec.
    pub spec: Arc<Spec>,
    /// Its model versions.
    pub repo: Arc<Repository>,
    /// Fallbacks served, per feature (spec order) and reason; exported as metrics later.
    pub fallback_counts: Vec<[AtomicU64; FallbackReason::COUNT]>,
    /// Latency per stage of the request path.
    pub stages: StageStats,
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
    /// Adds one request's fallbacks to the per-feature counters (one per affected row).
    pub fn count_fallbacks(&self, fallbacks: &[Fallback]) {
        for f in fallbacks {
            if let Some(i) = self.spec.features.iter().position(|s| s.name == f.feature) {
                let rows = if f.candidates.is_empty() { 1 } else { f.candidates.len() as u64 };
                self.fallback_counts[i][f.reason as usize].fetch_add(rows, Ordering::Relaxed);
            }
        }
    }

    /// Fallbacks served so far for `feature` and `reason`.
    pub fn fallback_count(&self, feature: &str, reason: FallbackReason) -> u64 {
        self.spec
            .features
            .iter()
            .position(|s| s.name == feature)
            .map_or(0, |i| self.fallback_counts[i][reason as usize].load(Ordering::Relaxed))
    }

    /// Loads the spec and the repository's versions (validated and warmed up).
    pub async fn load(config: &SceneConfig, model: &ModelConfig) -> Result<Self, SceneError> {
        let spec = Arc::new(Spec::load(&config.spec)?);
        if spec.scene != config.name {
            return Err(SceneError::NameMismatch { config: config.name.clone(), spec: spec.scene.clone() });
        }
        let repo = Arc::new(Repository::new(&config.model, Arc::clone(&spec), model.clone()));
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
        let fallback_counts = spec.features.iter().map(|_| Default::default()).collect();
        Ok(Scene { spec, repo, fallback_counts, stages: StageStats::default() })
    }
}
