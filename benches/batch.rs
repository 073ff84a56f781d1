//! The dynamic batcher alone, with a trivial in-process model (one f32 per row, no ONNX Runtime):
//! what the queue, the thread hand-off and the reply cost per request, and how many rows per
//! second it moves under concurrent callers. Parameters of `config/bench.toml`: 2 inference
//! threads, `max_batch_rows` 512, `max_queue_delay` 2 ms; tensors shaped like
//! `features/bench.yaml` (16 id columns, 4 dense).
//! `cargo bench --bench batch` (groups `batch_sequential`, `batch_concurrent`, `batch_merge`).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use augur::assemble::{Tensor, TensorData};
use augur::batch::{BatchConfig, BatchContext, Batcher, concat_rows};
use augur::model::{Model, ModelError};
use augur::telemetry::Metrics;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::task::TaskTracker;

/// As cheap as a model can be, so the batcher's own cost is what is measured.
struct Constant;

impl Model for Constant {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        Ok(vec![0.5; tensors[0].rows()])
    }
}

fn batcher() -> Batcher {
    let config = BatchConfig { max_batch_rows: 512, max_queue_delay: Duration::from_millis(2), queue_capacity: 4096 };
    let context = BatchContext::new(&Metrics::new(), "bench", "bench", 1, &TaskTracker::new());
    Batcher::start(vec![Box::new(Constant), Box::new(Constant)], config, context)
}

/// One request of `rows` rows: 16 i64 columns and 4 f32 columns.
fn request(seed: usize, rows: usize) -> Arc<[Tensor]> {
    let ids = (0..rows * 16).map(|i| (seed * 100_003 + i) as i64).collect();
    let dense = (0..rows * 4).map(|i| (seed + i) as f32 * 0.125).collect();
    vec![
        Tensor { name: "ids".into(), width: 16, data: TensorData::I64(ids) },
        Tensor { name: "dense".into(), width: 4, data: TensorData::F32(dense) },
    ]
    .into()
}

/// One caller, one request at a time: the per-request overhead (channel hop, thread wake-up,
/// oneshot reply), and with a lone request whatever the batcher waits for company.
fn bench_sequential(c: &mut Criterion) {
    let batcher = batcher();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("batch_sequential");
    for rows in [1usize, 100] {
        let tensors = request(0, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(format!("{rows}_rows"), |b| {
            b.iter(|| runtime.block_on(batcher.infer(Arc::clone(&tensors), None)).unwrap())
        });
    }
    group.finish();
}

/// 32 callers on a 2-worker tokio runtime, each sending one 100-row request per iteration, all
/// at once: rows per second through 2 inference threads.
fn bench_concurrent(c: &mut Criterion) {
    const CALLERS: usize = 32;
    const ROWS: usize = 100;
    let batcher = Arc::new(batcher());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let requests: Vec<Arc<[Tensor]>> = (0..CALLERS).map(|i| request(i, ROWS)).collect();
    let mut group = c.benchmark_group("batch_concurrent");
    group.throughput(Throughput::Elements((CALLERS * ROWS) as u64));
    group.bench_function(format!("{CALLERS}_callers_x_{ROWS}_rows"), |b| {
        b.iter(|| {
            runtime.block_on(async {
                let calls: Vec<_> = requests
                    .iter()
                    .map(|t| {
                        let (batcher, t) = (Arc::clone(&batcher), Arc::clone(t));
                        tokio::spawn(async move { batcher.infer(t, None).await })
                    })
                    .collect();
                for call in calls {
                    call.await.unwrap().unwrap();
                }
            })
        })
    });
    group.finish();
}

/// The copy a merged run pays: 5 chunks of 100 rows concatenated into one 500-row batch.
fn bench_merge(c: &mut Criterion) {
    let parts: Vec<(Arc<[Tensor]>, Range<usize>)> = (0..5).map(|i| (request(i, 100), 0..100)).collect();
    let mut group = c.benchmark_group("batch_merge");
    group.throughput(Throughput::Elements(500));
    group.bench_function("5x100_rows_16i64_4f32", |b| b.iter(|| concat_rows(&parts, |(t, r)| (&t[..], r.clone()))));
    group.finish();
}

criterion_group!(benches, bench_sequential, bench_concurrent, bench_merge);
criterion_main!(benches);
