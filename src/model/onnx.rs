//! An ONNX model from a repository directory, with one ORT session per inference thread.
//!
//! `Session::run` takes `&mut self` in ort rc.15, so sessions are not shared: each inference
//! thread in [`crate::batch`] owns one (see DESIGN.md for the measured trade-off).

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef};

use super::runtime::{self, RuntimeError};
use super::validate::{self, ModelInput};
use crate::assemble::{Spec, Tensor, TensorData};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The runtime library is missing or broken.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// No `<version>/model.onnx` under the repository directory.
    #[error("model repository {dir}: {problem}")]
    Repository {
        /// The directory.
        dir: String,
        /// What is missing.
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

/// A loaded, validated model version.
#[derive(Debug)]
pub struct OnnxModel {
    /// Repository name (the directory's file name).
    pub name: String,
    /// Version directory name.
    pub version: String,
    /// The `.onnx` file.
    pub path: PathBuf,
    /// The output holding the scores.
    pub output: String,
}

/// Session options shared by every session of a model.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Intra-op threads per session.
    pub intra_op_threads: usize,
    /// Explicit runtime library.
    pub library: Option<PathBuf>,
}

impl OnnxModel {
    /// Picks the highest numeric version under `dir`, opens one session to check it against
    /// `spec`, and returns the model with that first session.
    pub fn load(
        dir: &Path,
        spec: &Spec,
        options: &SessionOptions,
    ) -> Result<(Self, Session), ModelError> {
        let (version, path) = latest_version(dir)?;
        let name = dir
            .file_name()
            .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
        let session = open_session(&path, options)?;
        let inputs: Vec<ModelInput> = session
            .inputs()
            .iter()
            .map(|i| ModelInput {
                name: i.name().to_owned(),
                dtype: i.dtype().tensor_type().map(element_name),
                shape: i
                    .dtype()
                    .tensor_shape()
                    .map(|s| s.iter().copied().collect()),
            })
            .collect();
        let outputs: Vec<ModelInput> = session
            .outputs()
            .iter()
            .map(|o| ModelInput {
                name: o.name().to_owned(),
                dtype: o.dtype().tensor_type().map(element_name),
                shape: o
                    .dtype()
                    .tensor_shape()
                    .map(|s| s.iter().copied().collect()),
            })
            .collect();
        validate::check(spec, &inputs, &outputs).map_err(|problem| ModelError::Mismatch {
            path: path.display().to_string(),
            scene: spec.scene.clone(),
            problem,
        })?;
        let model = OnnxModel {
            name,
            version,
            path,
            output: spec.output.clone(),
        };
        Ok((model, session))
    }

    /// Another session on the same file (one per inference thread).
    pub fn session(&self, options: &SessionOptions) -> Result<Session, ModelError> {
        open_session(&self.path, options)
    }
}

/// Scores one batch on `session`: one f32 per row.
pub fn run(
    session: &mut Session,
    output: &str,
    tensors: &[Tensor],
) -> Result<Vec<f32>, ModelError> {
    let failed = |e: ort::Error| ModelError::Inference(e.to_string());
    let rows = tensors.first().map_or(0, Tensor::rows);
    let mut inputs: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let shape = [rows, tensor.width];
        let value: SessionInputValue<'_> = match &tensor.data {
            TensorData::I64(v) => TensorRef::from_array_view((shape, v.as_slice()))
                .map_err(failed)?
                .into(),
            TensorData::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))
                .map_err(failed)?
                .into(),
        };
        inputs.push((tensor.name.as_str(), value));
    }
    let outputs = session.run(inputs).map_err(failed)?;
    let value = outputs
        .get(output)
        .ok_or_else(|| ModelError::Inference(format!("model produced no output `{output}`")))?;
    let (_, scores) = value.try_extract_tensor::<f32>().map_err(failed)?;
    if scores.len() != rows {
        return Err(ModelError::Inference(format!(
            "output `{output}` has {} values for {rows} rows",
            scores.len()
        )));
    }
    Ok(scores.to_vec())
}

fn open_session(path: &Path, options: &SessionOptions) -> Result<Session, ModelError> {
    let env = runtime::environment(options.library.as_deref())?;
    let load = |message: String| ModelError::Load {
        path: path.display().to_string(),
        message,
    };
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

/// `<dir>/<highest numeric version>/model.onnx`.
pub fn latest_version(dir: &Path) -> Result<(String, PathBuf), ModelError> {
    let problem = |p: String| ModelError::Repository {
        dir: dir.display().to_string(),
        problem: p,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| problem(e.to_string()))?;
    let best = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let number: u64 = name.parse().ok()?;
            let file = e.path().join("model.onnx");
            file.is_file().then_some((number, name, file))
        })
        .max_by_key(|(n, _, _)| *n);
    best.map(|(_, name, file)| (name, file))
        .ok_or_else(|| problem("no numeric version directory with a model.onnx".into()))
}

fn element_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Int64 => "int64".into(),
        TensorElementType::Float32 => "float32".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
