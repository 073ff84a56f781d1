//! The integration tests: one binary (the tree is linked once), one module per behaviour.
//! `common` is the harness: augur in-process (`common::start`), the real binary
//! (`common::process::AugurProcess`), the servers tests start themselves (`common::child`:
//! redis-server, etcd, moto), fakes and fixtures. One module: `cargo test --test it shutdown::`.
//!
//! Two tiers. The fast tier runs wherever `cargo test` does: nothing outside the Rust toolchain,
//! fake models instead of ONNX Runtime. A test that needs more says so first
//! (`common::require!(Redis, Ort);`) and, unless `AUGUR_IT_EXTERNAL=1`, returns at once with one
//! line on stderr naming what it needs; with it (`scripts/test.sh`, CI) a missing program fails
//! the test. In the fast tier the harness refuses to start redis-server, etcd or moto, run the
//! venv's Python or open an ORT session, so a forgotten `require!` fails there instead of passing
//! on whatever the machine has installed. A real model loaded through augur itself is caught only
//! where no ONNX Runtime is found: a fresh clone without `.venv` (or `ORT_DYLIB_PATH=/nonexistent`).

mod common;

// A module that needs an integration behind a cargo feature (kafka, bucket, etcd, otel) is
// compiled only with it: `cargo test --no-default-features` runs the rest.

// === fast tier: every test ===
mod admin_http;
mod assemble_props;
mod assemble_text_props;
mod canary_cli;
mod canary_rollout;
mod client_retry;
// The shipped manifests configure the full build (etcd registration, Kafka, OTLP).
#[cfg(all(feature = "kafka", feature = "bucket", feature = "etcd", feature = "otel"))]
mod deploy_manifests;
// Fake-model tests, and real-model ones that need ONNX Runtime.
mod drift;
mod fake_model;
mod front_door;
mod layers;
#[cfg(target_os = "linux")]
mod load_priority;
mod metrics_workload;
mod reload_strategy;
mod samplelog_crash;
mod shutdown;

// === both: some tests need external programs ===
mod admin_listener;
#[cfg(feature = "etcd")]
mod client_discovery;
mod connections;
mod metric_names;
mod movielens_parity;
#[cfg(feature = "etcd")]
mod registry_etcd;
mod tls;

// === external tier: every test needs Redis, etcd, moto, Python, Go or ONNX Runtime ===
#[cfg(feature = "parquet")]
mod backfill;
mod backpressure;
mod bad_input;
mod batching;
#[cfg(feature = "bucket")]
mod bucket_source;
mod degraded_fetch;
#[cfg(all(feature = "kafka", feature = "parquet"))]
mod feature_history;
#[cfg(feature = "kafka")]
mod feature_streams;
mod features_load;
mod hot_reload;
mod model_mismatch;
mod models_gate;
mod parity_ort;
mod predict;
mod process_signals;
mod quality_online;
mod redis_cluster;
mod redis_export_and_values;
mod redis_faults;
mod redis_store;
mod redis_tls;
mod reflection_python;
#[cfg(feature = "etcd")]
mod registry_go_resolver;
#[cfg(feature = "etcd")]
mod rolling_restart;
mod sample_join_redis;
mod sample_sink_redis_stream;
mod samples_crash;
mod samples_dump;
mod samples_e2e;
mod samples_model;
#[cfg(feature = "parquet")]
mod samples_parquet;
#[cfg(feature = "kafka")]
mod samples_sinks;
mod search_suggest;
mod shared_weights;
mod split_parity;
mod stats_and_loadgen;
mod status_page;
mod stream_features;
#[cfg(feature = "otel")]
mod tracing_otlp;
