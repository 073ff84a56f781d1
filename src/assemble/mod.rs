//! Step 3 of the path: turn fetched rows and request values into model tensors.
//!
//! [`spec`] loads `features/<scene>.yaml` and compiles it (columns, id ranges, defaults) once;
//! [`encode`] applies it per request; [`text`] holds the tokenizers and two-source derivations.
//! The same code serves Predict, GetFeatures and `augur features export`, so the model is
//! trained on exactly what it is served.

pub mod encode;
pub mod spec;
pub mod text;

pub use encode::{Assembled, Fallback, FallbackReason, Tensor, TensorData, assemble};
pub use spec::{DType, Spec, SpecError};
