//! Step 5 of the path: the model. A [`repository`] per scene holds the loaded versions (hot
//! reload, canary routing); [`onnx`] opens ONNX Runtime sessions checked against the scene's
//! feature spec ([`validate`]); [`runtime`] finds and initialises the ORT library once.

pub mod onnx;
pub mod repository;
pub mod runtime;
pub mod validate;

pub use onnx::ModelError;
pub use repository::{Repository, RouteError, Version};
