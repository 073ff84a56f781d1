use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::task::Poll;

use proptest::prelude::*;

use super::*;

fn context() -> BatchContext {
    BatchContext::new(&Metrics::new(), "scene", "t", 1, &TaskTracker::new())
}

fn boxed<M: Model>(models: Vec<M>) -> Vec<Box<dyn Model>> {
    models.into_iter().map(|m| Box::new(m) as Box<dyn Model>).collect()
}

/// Row-wise deterministic "model": score = f(row), so any mis-routing of rows shows.
struct RowSum {
    batches: Arc<Mutex<Vec<usize>>>,
}

impl Model for RowSum {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        let rows = tensors[0].rows();
        self.batches.lock().unwrap().push(rows);
        Ok((0..rows).map(|r| row_score(tensors, r)).collect())
    }
}

fn row_score(tensors: &[Tensor], r: usize) -> f32 {
    let mut s = 0.0f64;
    for t in tensors {
        match &t.data {
            TensorData::I64(v) => s += v[r * t.width..(r + 1) * t.width].iter().map(|&x| x as f64).sum::<f64>(),
            TensorData::F32(v) => {
                s += v[r * t.width..(r + 1) * t.width].iter().map(|&x| f64::from(x) * 0.5).sum::<f64>()
            }
        }
    }
    s as f32
}

/// A runner that blocks until the test opens the gate, counting runs. It reports each run as it
/// starts, so a test knows the thread is busy by a signal rather than by sleeping long enough.
struct Gated {
    gate: mpsc::Receiver<()>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
    runs: Arc<AtomicUsize>,
}

impl Model for Gated {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        let _ = self.started.send(());
        let _ = self.gate.recv();
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(vec![0.5; tensors[0].rows()])
    }
}

/// The test's side of a [`Gated`] runner.
struct Gate {
    open: mpsc::Sender<()>,
    started: tokio::sync::mpsc::UnboundedReceiver<()>,
    runs: Arc<AtomicUsize>,
}

impl Gate {
    /// Returns once the runner has entered `run` (and is blocked at the gate).
    async fn running(&mut self) {
        self.started.recv().await.expect("the inference thread is alive");
    }

    /// Lets `n` runs through.
    fn open(&self, n: usize) {
        for _ in 0..n {
            self.open.send(()).unwrap();
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

fn gated() -> (Gated, Gate) {
    let (open, gate) = mpsc::channel();
    let (started_tx, started) = tokio::sync::mpsc::unbounded_channel();
    let runs = Arc::new(AtomicUsize::new(0));
    (Gated { gate, started: started_tx, runs: Arc::clone(&runs) }, Gate { open, started, runs })
}

/// Polls `call` once and leaves it pending: `infer` queues its chunks before it first awaits, so
/// afterwards they are in the queue, with no sleep and no scheduler in between.
async fn queue<F: Future + Unpin>(call: &mut F) {
    std::future::poll_fn(|cx| {
        assert!(Pin::new(&mut *call).poll(cx).is_pending(), "answered while the runner was blocked");
        Poll::Ready(())
    })
    .await;
}

fn tensors(request: u64, rows: usize) -> Vec<Tensor> {
    let ids = (0..rows * 3).map(|i| (request * 1000 + i as u64) as i64).collect();
    let dense = (0..rows * 2).map(|i| (request as f32) + i as f32 * 0.25).collect();
    vec![
        Tensor { name: "ids".into(), width: 3, data: TensorData::I64(ids) },
        Tensor { name: "dense".into(), width: 2, data: TensorData::F32(dense) },
    ]
}

fn config(max_batch_rows: usize, capacity: usize, delay_ms: u64) -> BatchConfig {
    BatchConfig { max_batch_rows, max_queue_delay: Duration::from_millis(delay_ms), queue_capacity: capacity }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn concurrent_requests_get_their_own_rows_scores_in_order(
        sizes in prop::collection::vec(1usize..=48, 1..40),
        threads in 1usize..=3,
    ) {
        let max = 16;
        let batches = Arc::new(Mutex::new(Vec::new()));
        let runners = (0..threads).map(|_| RowSum { batches: Arc::clone(&batches) }).collect();
        let batcher = Arc::new(Batcher::start(boxed(runners), config(max, 1024, 2), context()));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let results = rt.block_on(async {
            let handles: Vec<_> = sizes.iter().enumerate().map(|(i, &rows)| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { batcher.infer(tensors(i as u64, rows).into(), None).await })
            }).collect();
            let mut out = Vec::new();
            for h in handles { out.push(h.await.unwrap()); }
            out
        });
        for (i, (result, &rows)) in results.into_iter().zip(&sizes).enumerate() {
            let scores = result.unwrap();
            let t = tensors(i as u64, rows);
            let expected: Vec<f32> = (0..rows).map(|r| row_score(&t, r)).collect();
            prop_assert_eq!(scores, expected, "request {} ({} rows)", i, rows);
        }
        let batches = batches.lock().unwrap();
        prop_assert!(batches.iter().all(|&b| b <= max), "a batch exceeded max_batch_rows: {:?}", batches);
        prop_assert_eq!(batches.iter().sum::<usize>(), sizes.iter().sum::<usize>());
    }
}

#[tokio::test]
async fn requests_are_merged_into_one_run() {
    let batches = Arc::new(Mutex::new(Vec::new()));
    // A long delay: the three requests below arrive well inside it and fill the batch exactly.
    let batcher = Arc::new(Batcher::start(
        boxed(vec![RowSum { batches: Arc::clone(&batches) }]),
        config(12, 16, 10_000),
        context(),
    ));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let b = Arc::clone(&batcher);
            tokio::spawn(async move { b.infer(tensors(i, 4).into(), None).await })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().len(), 4);
    }
    assert_eq!(*batches.lock().unwrap(), vec![12]);
    assert_eq!(batcher.stats().batches, 1);
}

#[tokio::test]
async fn full_queue_fails_fast_with_queue_full() {
    let (runner, mut gate) = gated();
    let batcher = Batcher::start(boxed(vec![runner]), config(1, 1, 0), context());
    // The only thread takes the first chunk and blocks in the model: the queue is empty again.
    let mut running = Box::pin(batcher.infer(tensors(0, 1).into(), None));
    queue(&mut running).await;
    gate.running().await;
    // The second chunk takes the one queue slot, so the third is refused at once.
    let mut waiting = Box::pin(batcher.infer(tensors(1, 1).into(), None));
    queue(&mut waiting).await;
    let refused = batcher.infer(tensors(2, 1).into(), None).await;
    assert!(matches!(refused, Err(BatchError::QueueFull { capacity: 1 })), "{refused:?}");
    gate.open(2);
    assert_eq!(running.await.unwrap(), vec![0.5]);
    assert_eq!(waiting.await.unwrap(), vec![0.5]);
    assert_eq!(gate.runs(), 2, "the refused chunk never reached the model");
    assert_eq!(batcher.stats().rejected, 1);
}

#[tokio::test]
async fn expired_chunks_are_answered_without_running() {
    let (runner, mut gate) = gated();
    let batcher = Batcher::start(boxed(vec![runner]), config(1, 8, 0), context());
    let mut blocker = Box::pin(batcher.infer(tensors(0, 1).into(), None));
    queue(&mut blocker).await;
    gate.running().await;
    // Queued behind the blocker with a deadline that has already passed when the thread gets to
    // it. (`checked_sub`: an `Instant` cannot go below boot time; `now()` itself is never in the
    // future of the thread's later `now()`, so it expires just the same.)
    let deadline = Instant::now().checked_sub(Duration::from_millis(1)).unwrap_or_else(Instant::now);
    let mut late = Box::pin(batcher.infer(tensors(1, 1).into(), Some(deadline)));
    queue(&mut late).await;
    // One spare pass: a wrongly run expired chunk fails the count below instead of hanging.
    gate.open(2);
    assert!(blocker.await.is_ok());
    assert!(matches!(late.await, Err(BatchError::Expired)));
    assert_eq!(gate.runs(), 1, "the expired chunk must not be run");
    assert_eq!(batcher.stats().expired, 1);
}

/// Panics on its first run; a reopened instance never does.
struct PanicsOnce {
    panicked: Arc<AtomicUsize>,
}

impl Model for PanicsOnce {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        if self.panicked.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("boom in the model");
        }
        Ok(vec![0.25; tensors[0].rows()])
    }
}

#[tokio::test]
async fn a_panicking_run_is_answered_and_the_thread_reopens_its_model() {
    let panicked = Arc::new(AtomicUsize::new(0));
    let reopened = Arc::new(AtomicUsize::new(0));
    let reopen: Reopen = {
        let (panicked, reopened) = (Arc::clone(&panicked), Arc::clone(&reopened));
        Arc::new(move || {
            reopened.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(PanicsOnce { panicked: Arc::clone(&panicked) }) as Box<dyn Model>)
        })
    };
    let model = PanicsOnce { panicked: Arc::clone(&panicked) };
    let batcher = Batcher::start(boxed(vec![model]), config(8, 8, 0), context().with_reopen(reopen));
    let first = batcher.infer(tensors(0, 2).into(), None).await;
    assert!(matches!(&first, Err(BatchError::Panicked { message }) if message.contains("boom")), "{first:?}");
    assert_eq!(batcher.infer(tensors(1, 3).into(), None).await.unwrap(), vec![0.25; 3]);
    assert_eq!(reopened.load(Ordering::SeqCst), 1, "the thread reopened its model once");
    assert_eq!((batcher.stats().panics, batcher.threads_alive()), (1, 1));
}

#[tokio::test]
async fn without_a_way_to_reopen_the_last_thread_closes_the_queue() {
    let model = PanicsOnce { panicked: Arc::new(AtomicUsize::new(0)) };
    let batcher = Batcher::start(boxed(vec![model]), config(8, 8, 0), context());
    assert!(matches!(batcher.infer(tensors(0, 1).into(), None).await, Err(BatchError::Panicked { .. })));
    // The thread is gone: callers are told at once instead of waiting on a dead queue.
    let mut closed = false;
    for _ in 0..100 {
        match batcher.infer(tensors(1, 1).into(), None).await {
            Err(BatchError::Closed) => {
                closed = true;
                break;
            }
            other => {
                assert!(other.is_err(), "a dead thread scored a batch: {other:?}");
                tokio::task::yield_now().await;
            }
        }
    }
    assert!(closed, "requests to a version without threads must fail with Closed");
    assert_eq!(batcher.threads_alive(), 0);
}

#[tokio::test]
async fn a_single_whole_request_is_not_copied_and_split_chunks_keep_order() {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let batcher = Batcher::start(boxed(vec![RowSum { batches: Arc::clone(&batches) }]), config(4, 16, 0), context());
    let t: Arc<[Tensor]> = tensors(3, 10).into();
    let scores = batcher.infer(Arc::clone(&t), None).await.unwrap();
    let expected: Vec<f32> = (0..10).map(|r| row_score(&t, r)).collect();
    assert_eq!(scores, expected);
    assert_eq!(*batches.lock().unwrap(), vec![4, 4, 2]);
}
