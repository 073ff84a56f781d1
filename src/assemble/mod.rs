//! Step 4 of the path: turn fetched rows and request values into model tensors.
//!
//! [`spec`] loads `features/<scene>.yaml` and compiles it (columns, id ranges, defaults) once;
//! [`encode`] applies it per request; [`text`] holds the tokenizers and two-source derivations.
//! What assembly hands on: a [`Tensor`] per model input (`tensor.rs`) and a [`Fallback`] for
//! every feature served from its default (`fallback.rs`). The same code serves Predict,
//! GetFeatures and `augur features export`, so the model is trained on exactly what it is served.

pub mod encode;
mod fallback;
pub mod spec;
mod tensor;
pub mod text;

pub use encode::{Assembled, assemble};
pub use fallback::{Fallback, FallbackReason};
pub use spec::{DType, Spec, SpecError};
pub use tensor::{Tensor, TensorData};
