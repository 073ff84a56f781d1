//! ONNX Runtime sessions for one model version, one per inference thread.
//!
//! `Session::run` takes `&mut self` in ort rc.15, so sessions are not shared: each inference
//! thread in [`crate::batch`] owns an [`OnnxModel`] (see DESIGN.md for the measured trade-off).
//! Their weights are not: the sessions of one version are built on one [`SharedWeights`].
//! [`OnnxLoader`] is the [`ModelLoader`] the service uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{Outlet, TensorElementType, TensorRef};

use super::runtime;
use super::validate::{self, ModelInput};
use super::weights::{SHARE_MIN_BYTES, SharedWeights};
use super::{Model, ModelError, ModelLoader, Opener};
use crate::assemble::{Spec, Tensor, TensorData};

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
pub struct OnnxModel {
    session: Session,
    output: String,
    /// The spec's request index input: fed as int64 `[N]` (rank 1).
    index: Option<String>,
}

impl Model for OnnxModel {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        run_indexed(&mut self.session, &self.output, tensors, self.index.as_deref())
    }
}

/// Opens ONNX models with ORT, one session per call.
#[derive(Debug, Clone)]
pub struct OnnxLoader {
    options: SessionOptions,
}

impl OnnxLoader {
    /// A loader whose sessions use `options`.
    pub fn new(options: SessionOptions) -> Self {
        OnnxLoader { options }
    }
}

impl ModelLoader for OnnxLoader {
    fn open(&self, path: &Path, spec: &Spec) -> Result<Box<dyn Model>, ModelError> {
        Ok(Box::new(open(path, spec, &self.options, None)?))
    }

    /// Reads the file's large initializers once; every session the opener builds (one per
    /// inference thread, and replacements after a panic) uses them instead of its own copy.
    fn opener(self: Arc<Self>, path: &Path, spec: Arc<Spec>) -> Result<Opener, ModelError> {
        let weights = SharedWeights::read(path, &self.options, SHARE_MIN_BYTES)?;
        tracing::debug!(
            path = %path.display(), initializers = weights.len(), mib = weights.bytes() as f64 / 1048576.0,
            "weights shared by the version's sessions"
        );
        let path = path.to_path_buf();
        Ok(Arc::new(move || Ok(Box::new(open(&path, &spec, &self.options, Some(&weights))?) as Box<dyn Model>)))
    }
}

/// Opens one ORT session on `path` (on `shared` weights when given) and checks its inputs and
/// output against `spec`.
pub fn open(
    path: &Path,
    spec: &Spec,
    options: &SessionOptions,
    shared: Option<&SharedWeights>,
) -> Result<OnnxModel, ModelError> {
    let session = open_session_with(path, options, shared)?;
    let inputs: Vec<ModelInput> = session.inputs().iter().map(describe).collect();
    let outputs: Vec<ModelInput> = session.outputs().iter().map(describe).collect();
    validate::check(spec, &inputs, &outputs).map_err(|problem| ModelError::Mismatch {
        path: path.display().to_string(),
        scene: spec.scene.clone(),
        problem,
    })?;
    Ok(OnnxModel { session, output: spec.output.clone(), index: spec.request_index.clone() })
}

/// Scores one batch on `session`: one f32 per row.
pub fn run(session: &mut Session, output: &str, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
    run_indexed(session, output, tensors, None)
}

/// [`run`] for a model with request-level inputs: each tensor is `[its rows, width]`, the one
/// named `index` is the row → request index, int64 `[N]`, and N (the scores expected) is its
/// length.
pub fn run_indexed(
    session: &mut Session,
    output: &str,
    tensors: &[Tensor],
    index: Option<&str>,
) -> Result<Vec<f32>, ModelError> {
    let failed = |e: ort::Error| ModelError::Inference { source: Box::new(e) };
    let is_index = |t: &Tensor| index.is_some_and(|name| t.name == name);
    let rows = tensors.iter().find(|t| is_index(t)).or(tensors.first()).map_or(0, Tensor::rows);
    let mut inputs: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let value: SessionInputValue<'_> = match (&tensor.data, is_index(tensor)) {
            (TensorData::I64(v), true) => TensorRef::from_array_view(([v.len()], v.as_slice())).map_err(failed)?.into(),
            (TensorData::I64(v), false) => {
                TensorRef::from_array_view(([tensor.rows(), tensor.width], v.as_slice())).map_err(failed)?.into()
            }
            (TensorData::F32(v), _) => {
                TensorRef::from_array_view(([tensor.rows(), tensor.width], v.as_slice())).map_err(failed)?.into()
            }
        };
        inputs.push((tensor.name.as_str(), value));
    }
    let outputs = session.run(inputs).map_err(failed)?;
    let value = outputs
        .get(output)
        .ok_or_else(|| ModelError::Output { problem: format!("model produced no output `{output}`") })?;
    let (_, scores) = value.try_extract_tensor::<f32>().map_err(failed)?;
    if scores.len() != rows {
        return Err(ModelError::Output { problem: format!("`{output}` has {} values for {rows} rows", scores.len()) });
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

/// One plain session, holding its own copy of the weights (also used by the raw ORT benchmark).
pub fn open_session(path: &Path, options: &SessionOptions) -> Result<Session, ModelError> {
    open_session_with(path, options, None)
}

/// One session on `path`; with `shared`, its large initializers are the shared values (ORT's
/// `AddInitializer`) and ORT's prepacked versions of weights come from the shared container.
pub fn open_session_with(
    path: &Path,
    options: &SessionOptions,
    shared: Option<&SharedWeights>,
) -> Result<Session, ModelError> {
    let env = runtime::environment(options.library.as_deref())?;
    let load = |e: ort::Error| ModelError::Load { path: path.display().to_string(), source: Box::new(e) };
    let mut builder = Session::builder(env)
        .map_err(load)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| load(e.into()))?
        .with_intra_threads(options.intra_op_threads)
        .map_err(|e| load(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| load(e.into()))?;
    if let Some(shared) = shared.filter(|s| !s.is_empty()) {
        for (name, value) in shared.initializers() {
            builder = builder.with_initializer(name, Arc::clone(value)).map_err(|e| load(e.into()))?;
        }
        builder = builder.with_prepacked_weights(shared.prepacked()).map_err(|e| load(e.into()))?;
        if let Some((model, dir)) = shared.stripped_for(path) {
            // The shared initializers' external data is the model file itself, beside which
            // ORT resolves it (and, given their values, never reads it).
            builder = builder
                .with_config_entry("session.model_external_initializers_file_folder_path", dir.to_string_lossy())
                .map_err(|e| load(e.into()))?;
            return builder.commit_from_memory(model).map_err(load);
        }
    }
    builder.commit_from_file(path).map_err(load)
}

fn element_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Int64 => "int64".into(),
        TensorElementType::Float32 => "float32".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
