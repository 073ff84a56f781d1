//! One copy of a model version's weights for all of its sessions.
//!
//! Each inference thread owns its own ORT session ([`super::onnx`]), and a session built from a
//! file holds its own copy of every initializer: N threads, N copies of a 130 MiB embedding table.
//! ORT's documented way out ("Share initializer(s) and their ORT-preprocessed version(s) between
//! sessions") is `AddInitializer` with a user-owned CPU value plus one prepacked-weights
//! container: [`SharedWeights::read`] parses the ONNX file once, turns every large float32/int64
//! initializer into one ORT value, and every session of the version is built with those values
//! in place of the model's own.
//!
//! ORT still parses the whole file for each session (its own copy of the data is dropped once
//! the session is initialised), so loading briefly needs the shared copy plus one session's
//! transient; BENCHMARKS.md has the numbers. Two ways around that were measured and refused:
//! `AddExternalInitializers` copies the values into every session (RSS grows by the table per
//! session), and a model whose shared initializers have no data fails ORT's validation (empty
//! embedded data, or an external-data path that must exist).
//!
//! Only the parts of `onnx.proto` needed to find the initializers are declared here (field
//! numbers as in onnx 1.x: `ModelProto.graph = 7`, `GraphProto.initializer = 5`, `TensorProto`
//! below); everything else in the file is skipped by the decoder.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ndarray::{Array1, Axis, IxDyn, Slice};
use ort::session::builder::PrepackedWeights;
use ort::value::{DynValue, PrimitiveTensorElementType, Tensor};

use super::onnx::SessionOptions;
use super::{ModelError, runtime};

/// Initializers at least this large are shared; below it a copy per session costs less than the
/// bookkeeping (and ORT may constant-fold small ones into new tensors anyway).
pub const SHARE_MIN_BYTES: usize = 1 << 20;

/// `TensorProto.DataType` values handled here.
const FLOAT: i32 = 1;
const INT64: i32 = 7;
/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

/// `ModelProto`, only the graph.
#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

/// `GraphProto`, only the initializers.
#[derive(Clone, PartialEq, prost::Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
}

/// `TensorProto`, the fields that say what an initializer holds and where. Data in
/// `float_data`/`int64_data` (4, 7) is not declared: such initializers stay in the model.
#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    /// Sliced out of the file's buffer, not copied (decoding from `Bytes`).
    #[prost(bytes = "bytes", tag = "9")]
    raw_data: Bytes,
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

/// `StringStringEntryProto`: only its presence matters here.
#[derive(Clone, PartialEq, prost::Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
}

/// The large initializers of one model file, one ORT value each, and the prepacked-weights
/// container: what every session of one version shares. Sessions keep the values alive (ort
/// holds an `Arc` per initializer in the session), so dropping this early is safe.
#[derive(Debug)]
pub struct SharedWeights {
    initializers: Vec<(String, Arc<DynValue>)>,
    prepacked: PrepackedWeights,
    bytes: usize,
}

impl SharedWeights {
    /// Reads `path` and makes one ORT value of every float32/int64 initializer of at least
    /// `min_bytes` stored in `raw_data` (with the runtime library of `options`). A model with
    /// external data shares nothing (its sessions load as plain ones); a file that is not an
    /// ONNX model is a [`ModelError::Load`].
    pub fn read(path: &Path, options: &SessionOptions, min_bytes: usize) -> Result<SharedWeights, ModelError> {
        // ORT values and the container need the runtime loaded.
        runtime::environment(options.library.as_deref())?;
        let load = |source: crate::model::BoxError| ModelError::Load { path: path.display().to_string(), source };
        let file = Bytes::from(std::fs::read(path).map_err(|e| load(Box::new(e)))?);
        let model = <ModelProto as prost::Message>::decode(file)
            .map_err(|e| load(format!("not an ONNX model (protobuf: {e})").into()))?;
        let tensors = model.graph.map(|g| g.initializer).unwrap_or_default();
        let mut shared = SharedWeights { initializers: Vec::new(), prepacked: PrepackedWeights::new(), bytes: 0 };
        if tensors.iter().any(|t| t.data_location == EXTERNAL || !t.external_data.is_empty()) {
            tracing::debug!(path = %path.display(), "model has external data; its sessions keep their own weights");
            return Ok(shared);
        }
        for tensor in tensors {
            let len = tensor.raw_data.len();
            if len < min_bytes || tensor.name.is_empty() {
                continue;
            }
            let value = match to_value(&tensor) {
                Ok(Some(value)) => value,
                Ok(None) => continue,
                Err(e) => return Err(load(format!("initializer `{}`: {e}", tensor.name).into())),
            };
            shared.bytes += len;
            shared.initializers.push((tensor.name, Arc::new(value)));
        }
        Ok(shared)
    }

    /// Nothing to share (the sessions are plain ones).
    pub fn is_empty(&self) -> bool {
        self.initializers.is_empty()
    }

    /// How many initializers are shared.
    pub fn len(&self) -> usize {
        self.initializers.len()
    }

    /// Bytes of shared initializer data (one copy, whatever the number of sessions).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The shared initializers, by graph name.
    pub(crate) fn initializers(&self) -> &[(String, Arc<DynValue>)] {
        &self.initializers
    }

    /// The prepacked-weights container all sessions of the version use.
    pub(crate) fn prepacked(&self) -> &PrepackedWeights {
        &self.prepacked
    }
}

/// One initializer as an ORT value owning its data, or `None` for a type left in the model.
fn to_value(tensor: &TensorProto) -> Result<Option<DynValue>, String> {
    let dims: Vec<usize> = tensor
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad dims {:?}", tensor.dims))?;
    let Some(elements) = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
        return Err(format!("bad dims {dims:?}"));
    };
    let raw = &tensor.raw_data;
    let value = match tensor.data_type {
        FLOAT => {
            check_len(raw.len(), elements, 4, &dims)?;
            aligned(&dims, elements, raw, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))?
        }
        INT64 => {
            check_len(raw.len(), elements, 8, &dims)?;
            aligned(&dims, elements, raw, |b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))?
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// A tensor of `dims` holding `raw` decoded element by element, in memory the value owns (ORT's
/// `AddInitializer` refuses memory from its own allocator) that starts on a 64-byte boundary,
/// as ORT's own copy does: a 16-float embedding row stays within one cache line. (A `Vec` that
/// large starts 16 bytes into a page; raw ORT ran 3-6% slower on it, BENCHMARKS.md.)
fn aligned<T: PrimitiveTensorElementType + Clone + Default + Debug + 'static>(
    dims: &[usize],
    elements: usize,
    raw: &[u8],
    decode: impl Fn(&[u8]) -> T,
) -> Result<DynValue, String> {
    const ALIGN: usize = 64;
    let mut buffer = vec![T::default(); elements + ALIGN / size_of::<T>()];
    let skip = buffer.as_ptr().align_offset(ALIGN).min(ALIGN / size_of::<T>());
    for (element, bytes) in buffer[skip..].iter_mut().zip(raw.chunks_exact(size_of::<T>())) {
        *element = decode(bytes);
    }
    let mut array = Array1::from_vec(buffer);
    array.slice_axis_inplace(Axis(0), Slice::from(skip..skip + elements));
    let array = array.into_shape_with_order(IxDyn(dims)).map_err(|e| e.to_string())?;
    Ok(Tensor::from_array(array).map_err(|e| e.to_string())?.into_dyn())
}

fn check_len(len: usize, elements: usize, size: usize, dims: &[usize]) -> Result<(), String> {
    if elements.checked_mul(size) == Some(len) {
        Ok(())
    } else {
        Err(format!("{len} bytes of raw data for dims {dims:?}"))
    }
}
