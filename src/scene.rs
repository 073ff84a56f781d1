//! Start-up wiring of one scene: compile its feature spec, load and validate its model, start the
//! inference threads, and warm them up with a row of defaults so the first caller does not pay
//! for ORT's lazy initialisation.

use std::collections::HashMap;

use crate::assemble::encode::RequestView;
use crate::assemble::{Spec, SpecError, assemble};
use crate::batch::{BatchError, InferencePool};
use crate::config::{ModelConfig, SceneConfig};
use crate::model::onnx::{ModelError, OnnxModel, SessionOptions};

/// A served scene.
#[derive(Debug)]
pub struct Scene {
    /// The compiled feature spec.
    pub spec: Spec,
    /// Inference threads of the served model version.
    pub pool: InferencePool,
}

/// Why a scene could not start.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// The feature spec is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The model is missing, broken or does not match the spec.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The spec file declares another scene name than the config.
    #[error("scenes: `{config}` points at a spec declaring scene `{spec}`")]
    NameMismatch {
        /// Name in the config.
        config: String,
        /// Name in the spec.
        spec: String,
    },
    /// The warm-up run failed.
    #[error("scene `{scene}` warm-up failed: {source}")]
    Warmup {
        /// The scene.
        scene: String,
        /// What failed.
        #[source]
        source: BatchError,
    },
}

impl Scene {
    /// Loads spec and model, validates one against the other, starts and warms the threads.
    pub async fn load(config: &SceneConfig, model: &ModelConfig) -> Result<Self, SceneError> {
        let spec = Spec::load(&config.spec)?;
        if spec.scene != config.name {
            return Err(SceneError::NameMismatch {
                config: config.name.clone(),
                spec: spec.scene.clone(),
            });
        }
        let options = SessionOptions {
            intra_op_threads: model.intra_op_threads,
            library: model.ort_library.clone(),
        };
        let (dir, spec_for_load) = (config.model.clone(), spec.clone());
        let (threads, capacity) = (model.inference_threads, model.queue_capacity);
        // Loading reads and optimises the graph: keep it off the async workers.
        let pool = tokio::task::spawn_blocking(move || {
            let (onnx, session) = OnnxModel::load(&dir, &spec_for_load, &options)?;
            InferencePool::start(onnx, session, &options, threads, capacity)
        })
        .await
        .expect("model loading panicked")?;
        let context = HashMap::new();
        let candidates = vec![("warmup".to_owned(), HashMap::new())];
        let view = RequestView {
            user_id: "",
            context: &context,
            candidates: &candidates,
        };
        let rows = assemble(&spec, view, None, &[None]);
        pool.infer(rows.tensors, None)
            .await
            .map_err(|source| SceneError::Warmup {
                scene: spec.scene.clone(),
                source,
            })?;
        tracing::info!(scene = %spec.scene, model = %pool.model().name, version = %pool.model().version, "scene ready");
        Ok(Scene { spec, pool })
    }
}
