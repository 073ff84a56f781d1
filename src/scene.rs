//! Start-up wiring of one scene: compile its feature spec, open its model repository and load
//! the versions its policy wants. Start-up fails if no version can serve.

use std::sync::Arc;

use crate::assemble::{Spec, SpecError};
use crate::config::{ModelConfig, SceneConfig};
use crate::model::Repository;

/// A served scene.
#[derive(Debug)]
pub struct Scene {
    /// The compiled feature spec.
    pub spec: Arc<Spec>,
    /// Its model versions.
    pub repo: Arc<Repository>,
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
        Ok(Scene { spec, repo })
    }
}
