//! augur: an online CTR prediction service.
//!
//! A Predict request walks the modules in this order (each module's own doc says the same step):
//!
//! 1. [`server`]    — gRPC entry: the listener (connection cap, handshake timeout, accept
//!    back-off), the layer stack (metrics, deadline, admission, auth), validate and convert the
//!    request; errors become statuses in [`error`].
//! 2. [`scene`]     — the scene router: scene name → feature spec, model repository, stage timers.
//! 3. [`fetch`]     — read the user's and items' feature rows from the store.
//! 4. [`assemble`]  — turn rows + request values into model tensors as `features/<scene>.yaml` declares.
//! 5. [`batch`]     — queue the tensors for the inference threads (bounded, fail-fast when full).
//! 6. [`model`]     — the model behind a trait: ONNX Runtime sessions checked against the spec.
//! 7. [`predict`]   — the whole path above as one readable async fn.
//! 8. [`sample_log`] — off the hot path: snapshots of what was served, joined with reported
//!    events into training samples, written to a segment log and delivered to sinks.
//! 9. [`quality`]   — online quality per served model version (CTR, calibration, log loss, AUC),
//!    from the samples the join emits.
//! 10. [`rollout`]  — the canary that decides: compares a new version's online quality with the
//!     stable's and promotes or rolls it back, recorded in the model repository for every replica.
//! 11. [`drift`]    — beside the path: one request in N's served feature values against the
//!     version's training reference (PSI per feature) and its fallback rates.
//!
//! Beside the path, the model control plane, [`repository`] (versions from a directory or a
//! bucket, watched, validated, warmed, swapped in with their traffic split), and the lifecycle:
//! [`app`] (builds everything, owns the ordered shutdown), [`shutdown`] (signals), [`config`]
//! (one validated tree, composed of each module's section), [`error`] (the one place errors
//! become gRPC statuses), [`telemetry`] (the metrics registry and OpenTelemetry traces),
//! [`admin`] (the operator's surface: ModelAdmin, `/metrics`, `/healthz`, `/readyz`, the status
//! page), [`registry`] (etcd registration with a kept-alive lease), and its counterpart on the
//! caller's side, [`client`] (finds instances in etcd, balances across them, retries an
//! idempotent call once on UNAVAILABLE).
//!
//! Feeding step 3 from beside the path, [`feature_stream`]: Kafka topics of feature updates
//! upserted into the store (event-time last-writer-wins) with every replica's cache invalidated;
//! and [`feature_history`]: the changelog of every store change, replayed for point-in-time backfill; both keep hour-partitioned files the way [`hourly`] says.
//!
//! Out of the way, the tools: [`cli`] (the `augur predict` client, demo data, feature export
//! and load, the load generator, `augur models` publish/list).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod admin;
pub mod app;
pub mod assemble;
pub mod batch;
pub mod cli;
pub mod client;
pub mod config;
pub mod drift;
pub mod error;
pub mod feature_history;
pub mod feature_stream;
pub mod fetch;
pub mod hourly;
pub mod model;
pub mod predict;
pub mod quality;
pub mod registry;
pub mod repository;
pub mod rollout;
pub mod sample_log;
pub mod scene;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod validate;

/// Generated protobuf and gRPC code for `proto/augur/v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("augur.v1");

    /// Encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("augur_descriptor");

    // Domain → proto conversions shared by the server and the sample log (which must not
    // depend on each other).
    use crate::assemble::{self, FallbackReason as Reason, TensorData};

    impl From<assemble::Fallback> for Fallback {
        fn from(f: assemble::Fallback) -> Self {
            let reason = match f.reason {
                Reason::MissingRow => FallbackReason::MissingRow,
                Reason::MissingField => FallbackReason::MissingField,
                Reason::ParseError => FallbackReason::ParseError,
                Reason::Timeout => FallbackReason::Timeout,
                Reason::StoreError => FallbackReason::StoreError,
            };
            Fallback { feature: f.feature, reason: reason as i32, candidates: f.candidates }
        }
    }

    impl Tensor {
        /// Rows `rows` of `t`, shape `[rows.len(), width]`.
        pub fn from_rows(t: &assemble::Tensor, rows: std::ops::Range<usize>) -> Tensor {
            let shape = vec![rows.len() as i64, t.width as i64];
            let cols = rows.start * t.width..rows.end * t.width;
            let (int64_values, float_values) = match &t.data {
                TensorData::I64(v) => (v[cols].to_vec(), Vec::new()),
                TensorData::F32(v) => (Vec::new(), v[cols].to_vec()),
            };
            Tensor { name: t.name.clone(), shape, int64_values, float_values }
        }
    }
}
