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
//! Each session is built from the model with those initializers' data left in the file
//! ([`strip`]: they point at their own bytes in `model.onnx` as external data, and ORT, given
//! the shared value, never reads them), so ORT parses a few hundred KiB per session instead of the
//! whole file, and the values are read from the file straight into their buffers: loading needs
//! the shared copy and little more (BENCHMARKS.md, "Model memory"). Two other ways were measured
//! and refused: `AddExternalInitializers` copies the values into every session (RSS grows by the
//! table per session), and a model whose shared initializers have no data at all fails ORT's
//! validation (empty embedded data, or an external-data path that must exist: here it does).

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ndarray::{Array1, Axis, IxDyn, Slice};
use ort::session::builder::PrepackedWeights;
use ort::value::{DynValue, PrimitiveTensorElementType, Tensor};

use super::onnx::SessionOptions;
use super::{ModelError, runtime};

mod strip;

/// Initializers at least this large are shared; below it a copy per session costs less than the
/// bookkeeping (and ORT may constant-fold small ones into new tensors anyway).
pub const SHARE_MIN_BYTES: usize = 1 << 20;

/// `TensorProto.DataType` values handled here.
const FLOAT: i32 = 1;
const INT64: i32 = 7;
/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

/// The large initializers of one model file, one ORT value each, and the prepacked-weights
/// container: what every session of one version shares. Sessions keep the values alive (ort
/// holds an `Arc` per initializer in the session), so dropping this early is safe.
#[derive(Debug)]
pub struct SharedWeights {
    initializers: Vec<(String, Arc<DynValue>)>,
    prepacked: PrepackedWeights,
    bytes: usize,
    /// The model with the shared initializers' data left in the file (external data), and the
    /// file: what each session of that file parses instead of the whole file.
    stripped: Option<(Bytes, std::path::PathBuf)>,
}

impl SharedWeights {
    /// Reads `path` and makes one ORT value of every float32/int64 initializer of at least
    /// `min_bytes` stored in `raw_data` (with the runtime library of `options`), reading each
    /// straight from the file into the value (the file is never held in memory whole). Also
    /// keeps the model without those initializers' data (they point into the file as external
    /// data), which the sessions are built from. A model with external data shares nothing (its
    /// sessions load as plain ones); a file that is not an ONNX model is a [`ModelError::Load`].
    pub fn read(path: &Path, options: &SessionOptions, min_bytes: usize) -> Result<SharedWeights, ModelError> {
        // ORT values and the container need the runtime loaded.
        runtime::environment(options.library.as_deref())?;
        let load = |source: crate::model::BoxError| ModelError::Load { path: path.display().to_string(), source };
        let mut shared =
            SharedWeights { initializers: Vec::new(), prepacked: PrepackedWeights::new(), bytes: 0, stripped: None };
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let file = std::fs::File::open(path).map_err(|e| load(Box::new(e)))?;
        let len = file.metadata().map_err(|e| load(Box::new(e)))?.len();
        let mut reader = strip::Reader::new(file);
        let stripped = strip::model(&mut reader, len, min_bytes, &file_name).map_err(|e| load(e.into()))?;
        if stripped.external {
            tracing::debug!(path = %path.display(), "model has external data; its sessions keep their own weights");
            return Ok(shared);
        }
        for found in &stripped.found {
            let value = match to_value(&mut reader, found) {
                Ok(Some(value)) => value,
                Ok(None) => continue,
                Err(e) => return Err(load(format!("initializer `{}`: {e}", found.name).into())),
            };
            shared.bytes += found.len as usize;
            shared.initializers.push((found.name.clone(), Arc::new(value)));
        }
        shared.stripped = Some((Bytes::from(stripped.bytes), path.to_path_buf()));
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

    /// The model at `path` without its shared initializers' data, and the directory their
    /// external-data entries are relative to (`None`: nothing shared, or these weights were read
    /// from another file: sessions load `path` whole).
    pub(crate) fn stripped_for(&self, path: &Path) -> Option<(&[u8], &Path)> {
        let (bytes, source) = self.stripped.as_ref().filter(|(_, source)| source == path)?;
        Some((bytes.as_ref(), source.parent().unwrap_or(Path::new("."))))
    }
}

/// One initializer as an ORT value owning its data, read from the file at its offset, or `None`
/// for a type left in the model.
fn to_value(reader: &mut strip::Reader, found: &strip::Found) -> Result<Option<DynValue>, String> {
    let dims: Vec<usize> = found
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad dims {:?}", found.dims))?;
    let Some(elements) = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
        return Err(format!("bad dims {dims:?}"));
    };
    let len = usize::try_from(found.len).map_err(|e| e.to_string())?;
    let value = match found.data_type {
        FLOAT => {
            check_len(len, elements, 4, &dims)?;
            aligned(&dims, elements, reader, found.offset, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))?
        }
        INT64 => {
            check_len(len, elements, 8, &dims)?;
            aligned(&dims, elements, reader, found.offset, |b| {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            })?
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// A tensor of `dims` holding the `elements` values stored at `offset` in the file, decoded
/// element by element through a small buffer, in memory the value owns (ORT's `AddInitializer`
/// refuses memory from its own allocator) that starts on a 64-byte boundary, as ORT's own copy
/// does: a 16-float embedding row stays within one cache line. (A `Vec` that large starts 16
/// bytes into a page; raw ORT ran 3-6% slower on it, BENCHMARKS.md.)
fn aligned<T: PrimitiveTensorElementType + Clone + Default + Debug + 'static>(
    dims: &[usize],
    elements: usize,
    reader: &mut strip::Reader,
    offset: u64,
    decode: impl Fn(&[u8]) -> T,
) -> Result<DynValue, String> {
    const ALIGN: usize = 64;
    const CHUNK: usize = 1 << 20;
    let mut buffer = vec![T::default(); elements + ALIGN / size_of::<T>()];
    let skip = buffer.as_ptr().align_offset(ALIGN).min(ALIGN / size_of::<T>());
    reader.seek_to(offset).map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; CHUNK - CHUNK % size_of::<T>()];
    for out in buffer[skip..skip + elements].chunks_mut(chunk.len() / size_of::<T>()) {
        let bytes = &mut chunk[..size_of_val(out)];
        reader.read_exact(bytes).map_err(|e| e.to_string())?;
        for (element, b) in out.iter_mut().zip(bytes.chunks_exact(size_of::<T>())) {
            *element = decode(b);
        }
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
