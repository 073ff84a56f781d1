//! A Predict request from the wire: the pre-decode candidate count (`server::wire::count_field`,
//! which refuses oversized requests before prost allocates), prost's decode, then the server's
//! validation and conversion (`server::convert::predict_request`, what the Predict handler calls).
//!
//! Asserts: whenever prost decodes the (uncompressed) message, `count_field` counted exactly the
//! candidates prost decoded — a lower count would let a request past the candidate cap into a full
//! decode; and a request the conversion accepts is within the server's limits.
#![no_main]

use std::sync::LazyLock;

use augur::config::{Config, ServerConfig};
use augur::proto::PredictRequest;
use augur::server::{convert, wire};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// `PredictRequest.candidates`.
const CANDIDATES_FIELD: u32 = 5;

/// The default `[server]` limits, as `augur serve` runs with no config file.
static LIMITS: LazyLock<ServerConfig> =
    LazyLock::new(|| Config::from_toml("").expect("the default config parses").server);

fuzz_target!(|data: &[u8]| {
    let counted = wire::count_field(data, CANDIDATES_FIELD);
    let Ok(request) = PredictRequest::decode(data) else { return };
    assert_eq!(counted, request.candidates.len(), "count_field disagrees with prost's decode");
    let strings = [&request.request_id, &request.scene, &request.user_id, &request.model_version]
        .iter()
        .all(|s| s.len() <= LIMITS.max_string_bytes);
    let n = request.candidates.len();
    if let Ok(score) = convert::predict_request(request, &LIMITS) {
        assert!((1..=LIMITS.max_candidates).contains(&n), "{n} candidates accepted");
        assert!(strings, "an over-long string accepted");
        assert!(!score.scene.is_empty());
        assert_eq!(score.candidates.len(), n);
    }
});
