//! augur: an online CTR prediction service.
//!
//! A Predict request walks the modules in this order:
//!
//! 1. [`server`]    — gRPC entry: the layer stack (metrics, deadline, admission, auth), validate
//!    and convert the request; errors become statuses in [`error`].
//! 2. [`scene`]     — the scene router: scene → feature spec, model repository, traffic split.
//! 3. [`fetch`]     — read the user's and items' feature rows from the store.
//! 4. [`assemble`]  — turn rows + request values into model tensors as `features/<scene>.yaml` declares.
//! 5. [`batch`]     — queue the tensors for the inference threads (bounded, fail-fast when full).
//! 6. [`model`]     — the model behind a trait: ONNX Runtime sessions checked against the spec.
//! 7. [`predict`]   — the whole path above as one readable async fn.
//!
//! Beside the path, the lifecycle: [`app`] (builds everything, owns the ordered shutdown),
//! [`shutdown`] (signals), [`config`] (one validated tree), [`error`] (the one place errors
//! become gRPC statuses), [`telemetry`] (the metrics registry, the operator's
//! HTTP port: `/metrics`, `/healthz`, `/readyz`, and OpenTelemetry traces), [`registry`] (etcd registration with a
//! kept-alive lease), and its counterpart on the caller's side, [`client`] (finds instances in
//! etcd, balances across them, retries an idempotent call once on UNAVAILABLE).
//!
//! Out of the way, the tools: [`cli`] (the `augur predict` client, demo data, feature export
//! and load, the load generator).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod app;
pub mod assemble;
pub mod batch;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod fetch;
pub mod model;
pub mod predict;
pub mod registry;
pub mod scene;
pub mod server;
pub mod shutdown;
pub mod telemetry;

/// Generated protobuf and gRPC code for `proto/augur/v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("augur.v1");

    /// Encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("augur_descriptor");
}
