//! Beside the path: the tools behind the `augur` subcommands other than `serve`. None of this runs
//! on the request path; the tools reuse the path's modules so that what they compute is what the
//! service would.
//!
//! - [`predict`] — `augur predict`: a small gRPC client for poking a running server.
//! - [`demo`]    — `augur demo-data`, `augur suggest-demo-data`: deterministic synthetic data.
//! - [`export`]  — `augur features export`: offline features by the serving fetch + assemble code.
//! - [`backfill`] — `augur features backfill`: point-in-time features from the changelog, as
//!   Parquet; [`impressions`] reads the impression logs of both.
//! - [`load`]    — `augur features load`: bulk-writes a table into the configured Redis.
//! - [`publish`] — `augur features publish`: feature updates onto a stream's Kafka topic.
//! - [`loadgen`] — `augur bench`, `augur bench-ort`: load generator, raw ONNX Runtime ceiling.
//! - [`models`]  — `augur models publish|list|set-latest`: "export is deploy" to a bucket or
//!   directory, validated against the scene's spec before anything is uploaded; [`gate`] is
//!   its publish gate (the candidate against `LATEST` on recent joined samples).
//! - [`served`]  — `augur models rollout|decide|promote|rollback`, `augur models list
//!   --admin-addr`: a running augur's canary and served versions (with drift), through ModelAdmin.
//! - [`simulate`] — `augur simulate`: the demo catalogue's users calling a running server, clicking
//!   by the demo's true click model and reporting the events.
//! - [`samples`] — `augur samples dump`: the sample log (later Kafka, Redis Streams) as JSON lines.

#[cfg(feature = "parquet")]
pub mod backfill;
pub mod demo;
pub mod export;
pub mod gate;
pub mod impressions;
pub mod load;
pub mod loadgen;
pub mod models;
pub mod predict;
pub mod publish;
pub mod samples;
pub mod served;
pub mod simulate;
