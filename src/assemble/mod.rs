//! Step 4 of the path: turn fetched rows and request values into model tensors.
//!
//! [`spec`] loads `features/<scene>.yaml` and compiles it (columns, id ranges, defaults) once;
//! [`encode`] applies it per request; [`text`] holds the tokenizers and two-source derivations.
//! What assembly hands on: a [`Tensor`] per model input (`tensor.rs`) and a [`Fallback`] for
//! every feature served from its default (`fallback.rs`). A spec with request-level inputs feeds
//! the model their one row per request plus a row → request index; [`forms`] converts between
//! that model form and the stored form (every candidate's full row) that samples and exports keep. The same code serves Predict,
//! GetFeatures and `augur features export`, so the model is trained on exactly what it is served.

pub mod encode;
mod fallback;
mod forms;
pub mod spec;
mod tensor;
pub mod text;

pub use encode::{Assembled, assemble};
pub use fallback::{Fallback, FallbackReason};
pub use spec::{DType, Level, Spec, SpecError};
pub use tensor::{RowKind, Tensor, TensorData};
