//! What the in-memory join store really holds per candidate, beside what it charges against
//! `samples.join.store.max_bytes`: the check behind docs/samples.md "## Capacity".
//!
//! `cargo run --example join_heap` holds 10,000 bench-shaped predictions (100 candidates with
//! ids like `i10042`, a 4,420 B snapshot as in the `held_candidate_bytes` test, 36-byte request
//! ids) in three ways and prints, per candidate, the bytes the store charges and the bytes its
//! allocations hold. The allocator below counts requested sizes, single-threaded: malloc's own
//! headers (8-16 B per allocation, a handful per prediction) are not in it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use augur::sample_log::join::memory::MemoryJoinStore;
use augur::sample_log::join::{Event, JoinStore};
use futures_util::FutureExt;

/// Live heap bytes, as requested.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; only the counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PREDICTIONS: usize = 10_000;
const CANDIDATES: usize = 100;
const SNAPSHOT: usize = 4_420;

/// How the predictions are held.
#[derive(Clone, Copy)]
enum Shape {
    /// Put only (the `held_candidate_bytes` test).
    Put,
    /// Put with `emit_unimpressed`: every candidate scheduled.
    Unimpressed,
    /// Put, then 10 impressions and one click per prediction.
    Events,
}

fn main() {
    for (name, shape) in [
        ("put only", Shape::Put),
        ("emit_unimpressed", Shape::Unimpressed),
        ("10 impressions + 1 click", Shape::Events),
    ] {
        let (charged, heap) = hold(shape);
        let per = |b: usize| b as f64 / (PREDICTIONS * CANDIDATES) as f64;
        println!(
            "{name}: charged {:.1} B, heap {:.1} B per held candidate (snapshot {:.1} B of each)",
            per(charged),
            per(heap),
            SNAPSHOT as f64 / CANDIDATES as f64
        );
    }
}

/// Holds the predictions; returns (bytes charged, live heap bytes) while they are held.
fn hold(shape: Shape) -> (usize, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let store = MemoryJoinStore::new(usize::MAX);
    let expires = 1_000_000;
    let unimpressed = matches!(shape, Shape::Unimpressed).then_some(expires - 1);
    for n in 0..PREDICTIONS {
        let request_id = format!("{n:036}");
        let item_ids: Vec<String> = (0..CANDIDATES).map(|i| format!("i{}", 10_000 + i)).collect();
        let snapshot = bytes::Bytes::from(vec![7u8; SNAPSHOT]);
        store.put(&request_id, snapshot, &item_ids, expires, unimpressed).now_or_never().unwrap().unwrap();
        if matches!(shape, Shape::Events) {
            let kinds = (0..10).map(|i| (i, "impression")).chain([(3, "click")]);
            for (i, kind) in kinds {
                let event = Event {
                    request_id: request_id.clone(),
                    item_id: item_ids[i].clone(),
                    kind: kind.to_owned(),
                    timestamp_ms: 1_000,
                    value: None,
                };
                store.add_event(&event, 5_000 + n as i64).now_or_never().unwrap().unwrap();
            }
        }
    }
    let heap = LIVE.load(Ordering::Relaxed) - before;
    let charged = store.pending().unwrap().1;
    drop(store);
    (charged, heap as usize)
}
