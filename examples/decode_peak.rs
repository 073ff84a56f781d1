//! How much memory decoding one Predict request can take per byte of message: the factor behind
//! `server.max_buffered_request_bytes` in docs/serving.md ("read body").
//!
//! `cargo run --release --example decode_peak` builds requests of about `server.max_message_bytes`
//! (4 MiB) shaped to make prost allocate the most per wire byte, decodes each, and prints the
//! heap's peak during the decode over the message's size. The allocator below counts requested
//! sizes (single-threaded): malloc's own rounding (to 16 B, at least 32 B per allocation) adds to
//! shapes made of many tiny allocations, which the "malloc" column estimates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use augur::proto::{Candidate, FeatureValue, IntList, PredictRequest, StringList, feature_value};
use prost::Message;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

struct Counting;

impl Counting {
    fn grow(by: isize) {
        let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only the counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::grow(layout.size() as isize);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Counting::grow(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MESSAGE: usize = 4 << 20;

fn empty() -> PredictRequest {
    PredictRequest {
        request_id: "r".into(),
        scene: "ranking".into(),
        user_id: "u".into(),
        context: HashMap::new(),
        candidates: Vec::new(),
        model_version: String::new(),
    }
}

fn value(kind: feature_value::Kind) -> FeatureValue {
    FeatureValue { kind: Some(kind) }
}

/// Requests of about `MESSAGE` bytes, by name.
fn shapes() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    // 2 bytes per empty candidate (refused by the wire scan past server.max_candidates).
    let mut bytes = empty().encode_to_vec();
    bytes.extend(std::iter::repeat_n([0x2a, 0x00], (MESSAGE - bytes.len()) / 2).flatten());
    out.push(("empty candidates (no scan)", bytes));

    // 4,000 candidates (the limit), each a map of tiny distinct keys with empty values.
    let per_candidate = MESSAGE / 4000 / 8;
    let mut r = empty();
    r.candidates = (0..4000)
        .map(|_| Candidate {
            item_id: String::new(),
            features: (0..per_candidate).map(|k| (format!("{k:x}"), FeatureValue::default())).collect(),
        })
        .collect();
    out.push(("4,000 candidates × tiny features", r.encode_to_vec()));

    // One context map of tiny entries.
    let mut r = empty();
    r.context = (0..MESSAGE / 8).map(|k| (format!("{k:x}"), FeatureValue::default())).collect();
    out.push(("context × tiny entries", r.encode_to_vec()));

    // One string list of 1-byte strings.
    let mut r = empty();
    let list = StringList { values: vec!["a".to_owned(); MESSAGE / 3] };
    r.context.insert("s".into(), value(feature_value::Kind::StringList(list)));
    out.push(("string list of 1-byte strings", r.encode_to_vec()));

    // One packed int list of 1-byte varints.
    let mut r = empty();
    r.context.insert("i".into(), value(feature_value::Kind::IntList(IntList { values: vec![1; MESSAGE] })));
    out.push(("int list of small ints", r.encode_to_vec()));
    out
}

fn main() {
    println!("| shape | message | peak heap while decoding | per message byte | allocations | malloc (≥32 B each) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, bytes) in shapes() {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let decoded = PredictRequest::decode(bytes.as_slice()).expect("decodes");
        let peak = PEAK.load(Ordering::Relaxed) - before;
        let count = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
        drop(decoded);
        let malloc = peak as f64 + 24.0 * count as f64;
        println!(
            "| {name} | {:.2} MiB | {:.1} MiB | {:.1}x | {count} | {:.1}x |",
            bytes.len() as f64 / (1 << 20) as f64,
            peak as f64 / (1 << 20) as f64,
            peak as f64 / bytes.len() as f64,
            malloc / bytes.len() as f64,
        );
    }
}
