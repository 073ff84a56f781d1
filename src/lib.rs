//! augur: an online CTR prediction service.
//!
//! A Predict request walks the modules in this order:
//!
//! 1. [`server`]    — gRPC entry: validate and convert the request, map errors to status codes.
//! 2. [`fetch`]     — read the user's and items' feature rows from the store.
//! 3. [`assemble`]  — turn rows + request values into model tensors as `features/<scene>.yaml` declares.
//! 4. [`batch`]     — queue the tensors for the inference threads (bounded, fail-fast when full).
//! 5. [`model`]     — ONNX Runtime sessions, validated against the feature spec at load.
//! 6. [`predict`]   — the whole path above as one readable async fn.
//!
//! Beside the path: [`config`] (one validated tree), [`error`] (the one place errors become gRPC
//! statuses), [`scene`] (scene → spec + model wiring), [`cli`] (the tools: `predict` client, demo
//! data, feature export and load, load generator).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod app;
pub mod assemble;
pub mod batch;
pub mod cli;
pub mod config;
pub mod error;
pub mod fetch;
pub mod model;
pub mod predict;
pub mod scene;
pub mod server;
pub mod shutdown;
pub mod stats;

/// Generated protobuf and gRPC code for `proto/augur/v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("augur.v1");

    /// Encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("augur_descriptor");
}
