//! Step 6 of the path: the model. [`Model`] scores one merged batch; a [`ModelLoader`] opens a
//! model file into instances checked against the scene's feature spec. ONNX Runtime ([`onnx`],
//! with [`runtime`] finding the library, [`validate`] comparing inputs with the spec and
//! [`weights`] giving the sessions of one version one copy of the weights) is one
//! implementation; tests hand the repository a fake loader and need no ORT at all.
//!
//! This module is the leaf of the path: it knows tensors and specs, not batching or routing, so
//! the batcher (which drives a [`Model`]) and the scene's repository (which holds a
//! [`ModelLoader`]) depend on it and never the other way round.

pub mod config;
pub mod onnx;
pub mod runtime;
pub mod validate;
pub mod weights;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::assemble::{Spec, Tensor};

/// A boxed error from a model implementation, kept as the source of [`ModelError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One instance of a loaded model, owned by one inference thread (`run` takes `&mut self`, as
/// ORT's `Session::run` does).
pub trait Model: Send + 'static {
    /// Scores `tensors` (all with the same number of rows): one f32 per row, in order.
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError>;
}

/// Opens instances of one model version: once per inference thread, and again when a thread's
/// instance must be replaced (after a panic). What it holds (shared weights) lives as long as it.
pub type Opener = Arc<dyn Fn() -> Result<Box<dyn Model>, ModelError> + Send + Sync>;

/// Opens model files. The repository calls it on a loading thread.
pub trait ModelLoader: Send + Sync + Debug + 'static {
    /// Opens one instance of the model at `path` and checks it against `spec`.
    fn open(&self, path: &Path, spec: &Spec) -> Result<Box<dyn Model>, ModelError>;

    /// Prepares the instances of one version: what they can share is read here, once. The
    /// default shares nothing and calls [`ModelLoader::open`] for each instance.
    fn opener(self: Arc<Self>, path: &Path, spec: Arc<Spec>) -> Result<Opener, ModelError> {
        let path: PathBuf = path.to_path_buf();
        Ok(Arc::new(move || self.open(&path, &spec)))
    }
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The runtime library is missing or broken.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The runtime refused the file (corrupt, unsupported op, ...).
    #[error("model {path}: {source}")]
    Load {
        /// The model file.
        path: String,
        /// The runtime's error.
        #[source]
        source: BoxError,
    },
    /// The model does not match the feature spec.
    #[error("model {path} does not match feature spec `{scene}`: {problem}")]
    Mismatch {
        /// The model file.
        path: String,
        /// The spec's scene.
        scene: String,
        /// Which feature and input disagree, and how.
        problem: String,
    },
    /// The runtime failed while scoring.
    #[error("inference failed: {source}")]
    Inference {
        /// The runtime's error.
        #[source]
        source: BoxError,
    },
    /// The model ran but its output is not one score per row.
    #[error("inference output: {problem}")]
    Output {
        /// What is wrong with the output.
        problem: String,
    },
}
