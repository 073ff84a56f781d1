//! ONNX Runtime sessions for one model version, one per inference thread.
//!
//! `Session::run` takes `&mut self` in ort rc.15, so sessions are not shared: each inference
//! thread in [`crate::batch`] owns an [`OnnxRunner`] (see DESIGN.md for the measured trade-off).

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{Outlet, TensorElementType, TensorRef};

use super::runtime::{self, RuntimeError};
use super::validate::{self, ModelInput};
use crate::assemble::{Spec, Tensor, TensorData};
use crate::batch::Runner;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The runtime library is missing or broken.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The repository directory or its `model.yaml` is unusable.
    #[error("model repository {dir}: {problem}")]
    Repository {
        /// The directory.
        dir: String,
        /// What is wrong.
        problem: String,
    },
    /// ORT refused the file (corrupt, unsupported op, ...).
    #[error("model {path}: {message}")]
    Load {
        /// The model file.
        path: String,
        /// ORT's message.
        message: String,
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
    /// ORT failed while scoring.
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Session options shared by every session of a model.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Intra-op threads per session.
    pub intra_op_threads: usize,
    /// Explicit runtime library.
    pub library: Option<PathBuf>,
}

/// One ORT session and the output to read: what an inference thread owns.
#[derive(Debug)]
pub struct OnnxRunner {
    session: Session,
    output: String,
}

impl Runner for OnnxRunner {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        run(&mut self.session, &self.output, tensors)
    }
}

/// Opens `sessions` ORT sessions on `path` (one per inference thread), after checking the first
/// one's inputs and output against `spec`.
pub fn open(
    path: &Path,
    spec: &Spec,
    options: &SessionOptions,
    sessions: usize,
) -> Result<Vec<OnnxRunner>, ModelError> {
    let first = open_session(path, options)?;
    let inputs: Vec<ModelInput> = first.inputs().iter().map(describe).collect();
    let outputs: Vec<ModelInput> = first.outputs().iter().map(describe).collect();
    validate::check(spec, &inputs, &outputs).map_err(|problem| ModelError::Mismatch {
        path: path.display().to_string(),
        scene: spec.scene.clone(),
        problem,
    })?;
    let mut runners = vec![OnnxRunner { session: first, output: spec.output.clone() }];
    for _ in 1..sessions {
        runners.push(OnnxRunner { session: open_session(path, options)?, output: spec.output.clone() });
    }
    Ok(runners)
}

/// Scores one batch on `session`: one f32 per row.
pub fn run(session: &mut Session, output: &str, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
    let failed = |e: ort::Error| ModelError::Inference(e.to_string());
    let rows = tensors.first().map_or(0, Tensor::rows);
    let mut inputs: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let shape = [rows, tensor.width];
        let value: SessionInputValue<'_> = match &tensor.data {
            TensorData::I64(v) => TensorRef::from_array_view((shape, v.as_slice())).map_err(failed)?.into(),
            TensorData::F32(v) => TensorRef::from_array_view((shape, v.as_slice())).map_err(failed)?.into(),
        };
        inputs.push((tensor.name.as_str(), value));
    }
    let outputs = session.run(inputs).map_err(failed)?;
    let value =
        outputs.get(output).ok_or_else(|| ModelError::Inference(format!("model produced no output `{output}`")))?;
    let (_, scores) = value.try_extract_tensor::<f32>().map_err(failed)?;
    if scores.len() != rows {
        return Err(ModelError::Inference(format!("output `{output}` has {} values for {rows} rows", scores.len())));
    }
    Ok(scores.to_vec())
}

fn describe(outlet: &Outlet) -> ModelInput {
    ModelInput {
        name: outlet.name().to_owned(),
        dtype: outlet.dtype().tensor_type().map(element_name),
        shape: outlet.dtype().tensor_shape().map(|s| s.iter().copied().collect()),
    }
}

/// One plain session (also used by the raw ORT benchmark).
pub fn open_session(path: &Path, options: &SessionOptions) -> Result<Session, ModelError> {
    let env = runtime::environment(options.library.as_deref())?;
    let load = |message: String| ModelError::Load { path: path.display().to_string(), message };
    Session::builder(env)
        .map_err(|e| load(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| load(e.to_string()))?
        .with_intra_threads(options.intra_op_threads)
        .map_err(|e| load(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| load(e.to_string()))?
        .commit_from_file(path)
        .map_err(|e| load(e.to_string()))
}

fn element_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Int64 => "int64".into(),
        TensorElementType::Float32 => "float32".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
