//! Step 5 of the path: the model. ONNX Runtime sessions ([`onnx`]) loaded from a model repository
//! directory (`<dir>/<version>/model.onnx`), checked against the scene's feature spec before they
//! serve ([`validate`]), with the runtime library located and initialised once ([`runtime`]).

pub mod onnx;
pub mod runtime;
pub mod validate;

pub use onnx::{ModelError, OnnxModel};
