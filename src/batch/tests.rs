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

/// A runner that blocks until the test opens the gate, counting runs and their sizes. It reports
/// each run as it starts, so a test knows the thread is busy by a signal rather than by sleeping
/// long enough. Several runners may share one gate: each pass lets one blocked run through.
struct Gated {
    gate: Arc<Mutex<mpsc::Receiver<()>>>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
    runs: Arc<AtomicUsize>,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl Model for Gated {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        let _ = self.started.send(());
        let _ = self.gate.lock().unwrap().recv();
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().unwrap().push(tensors[0].rows());
        Ok(vec![0.5; tensors[0].rows()])
    }
}

/// The test's side of [`Gated`] runners.
struct Gate {
    open: mpsc::Sender<()>,
    started: tokio::sync::mpsc::UnboundedReceiver<()>,
    runs: Arc<AtomicUsize>,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl Gate {
    /// Returns once the runner has entered `run` (and is blocked at the gate).
    async fn running(&mut self) {
        within_30s("a run to start", self.started.recv()).await.expect("the inference thread is alive");
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

    /// Rows of each finished run, smallest first (threads finish in any order).
    fn batches(&self) -> Vec<usize> {
        let mut batches = self.batches.lock().unwrap().clone();
        batches.sort_unstable();
        batches
    }
}

fn gated() -> (Gated, Gate) {
    let (mut runners, gate) = gated_threads(1);
    (runners.pop().unwrap(), gate)
}

/// `threads` runners behind one gate.
fn gated_threads(threads: usize) -> (Vec<Gated>, Gate) {
    let (open, gate) = mpsc::channel();
    let gate = Arc::new(Mutex::new(gate));
    let (started_tx, started) = tokio::sync::mpsc::unbounded_channel();
    let runs = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(Mutex::new(Vec::new()));
    let runners = (0..threads)
        .map(|_| Gated {
            gate: Arc::clone(&gate),
            started: started_tx.clone(),
            runs: Arc::clone(&runs),
            batches: Arc::clone(&batches),
        })
        .collect();
    (runners, Gate { open, started, runs, batches })
}

/// Fails a test that would otherwise hang (a wait that never ends); not a timing assertion.
async fn within_30s<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f).await.unwrap_or_else(|_| panic!("{what}: no answer in 30 s"))
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

/// Holds every one of `threads` threads busy with a 1-row run, queues three 4-row requests, then
/// frees one thread: it takes all three into one run of 12 (`max_batch_rows` 64, no delay, so
/// only what is queued when the thread comes back can join).
async fn queued_behind_busy_threads_merge(threads: usize) {
    let (runners, mut gate) = gated_threads(threads);
    let batcher = Batcher::start(boxed(runners), config(64, 16, 0), context());
    let mut blockers = Vec::new();
    for i in 0..threads {
        let mut blocker = Box::pin(batcher.infer(tensors(i as u64, 1).into(), None));
        queue(&mut blocker).await;
        gate.running().await;
        blockers.push(blocker);
    }
    let mut waiting = Vec::new();
    for i in 0..3 {
        let mut call = Box::pin(batcher.infer(tensors(10 + i, 4).into(), None));
        queue(&mut call).await;
        waiting.push(call);
    }
    gate.open(1);
    // The freed thread's next run has started: the three chunks were collected by then.
    gate.running().await;
    // The rest of the blockers, the merged run and spare passes: a wrong split fails the
    // assertions below instead of hanging at the gate.
    gate.open(threads + 3);
    for call in blockers.into_iter().chain(waiting) {
        assert!(within_30s("a queued request", call).await.is_ok());
    }
    let mut expected = vec![1; threads];
    expected.push(12);
    assert_eq!(gate.batches(), expected, "one run per blocker, then one for the three queued requests");
    assert_eq!(batcher.stats().batches, threads as u64 + 1);
}

#[tokio::test]
async fn requests_are_merged_into_one_run() {
    // One thread: the requests queued while it runs make up its next batch.
    queued_behind_busy_threads_merge(1).await;
}

#[tokio::test]
async fn chunks_queued_while_every_thread_is_busy_are_merged_into_one_run() {
    queued_behind_busy_threads_merge(2).await;
}

#[tokio::test]
async fn a_lone_request_does_not_wait_for_company_while_threads_are_idle() {
    for threads in [1, 2] {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let runners = (0..threads).map(|_| RowSum { batches: Arc::clone(&batches) }).collect();
        // An hour of max_queue_delay: a batcher that waits for company with idle threads hangs
        // here (and fails at the 30 s guard) instead of answering.
        let batcher = Batcher::start(boxed(runners), config(64, 16, 3_600_000), context());
        let t: Arc<[Tensor]> = tensors(1, 3).into();
        let scores = within_30s("a lone request", batcher.infer(Arc::clone(&t), None)).await.unwrap();
        assert_eq!(scores, (0..3).map(|r| row_score(&t, r)).collect::<Vec<_>>(), "{threads} threads");
        assert_eq!(*batches.lock().unwrap(), vec![3], "{threads} threads");
    }
}

#[tokio::test]
async fn a_wait_for_company_ends_when_another_thread_goes_idle() {
    let (runners, mut gate) = gated_threads(2);
    // An hour of max_queue_delay: only the other thread going idle can end the wait in time.
    let batcher = Batcher::start(boxed(runners), config(64, 16, 3_600_000), context());
    // The other thread is idle, so the blocker runs at once and holds its thread.
    let mut blocker = Box::pin(batcher.infer(tensors(0, 1).into(), None));
    queue(&mut blocker).await;
    gate.running().await;
    // The second thread takes the first request and, with the other thread busy, waits for
    // company: the second request joins it.
    let mut first = Box::pin(batcher.infer(tensors(1, 4).into(), None));
    queue(&mut first).await;
    let mut second = Box::pin(batcher.infer(tensors(2, 4).into(), None));
    queue(&mut second).await;
    // The blocker ends: the waiting thread stops waiting and runs both. A spare pass, so a
    // batcher that ran the requests apart fails the count below instead of hanging.
    gate.open(3);
    for call in [blocker, first, second] {
        assert!(within_30s("the wait for company", call).await.is_ok());
    }
    assert_eq!(gate.batches(), vec![1, 8], "the blocker, then both requests in one run");
    assert_eq!(gate.runs(), 2);
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

/// A model that burns a known amount of work per row on its own thread.
struct Busy;

impl Model for Busy {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        let rows = tensors[0].rows();
        let mut x = 0u64;
        for i in 0..rows as u64 * 200_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        Ok(vec![(x % 2) as f32; rows])
    }
}

/// What a version costs: the inference threads' CPU time is counted per (scene, model,
/// version), grows with the work, and is exported under those labels (read when a thread ends,
/// and at most every 50 ms while it runs).
#[tokio::test]
async fn inference_cpu_time_is_counted_per_version() {
    let metrics = Metrics::new();
    let tracker = TaskTracker::new();
    let light =
        Batcher::start(boxed(vec![Busy]), config(64, 16, 0), BatchContext::new(&metrics, "scene", "t", 7, &tracker));
    let heavy =
        Batcher::start(boxed(vec![Busy]), config(64, 16, 0), BatchContext::new(&metrics, "scene", "t", 8, &tracker));
    light.infer(tensors(1, 4).into(), None).await.unwrap();
    for i in 0..4 {
        heavy.infer(tensors(2 + i, 16).into(), None).await.unwrap();
    }
    let (light_stats, heavy_stats) = (light.stats(), heavy.stats());
    drop((light, heavy));
    tracker.close();
    within_30s("the inference threads to end", tracker.wait()).await;
    let family = &metrics.of::<BatchMetrics>().cpu;
    let cpu = |version: &str| family.get_or_create(&SceneVersionLabels::new("scene", "t", version)).get();
    let (light_cpu, heavy_cpu) = (cpu("7"), cpu("8"));
    assert!(light_cpu > 0.0, "{light_cpu}");
    // 16x the rows on the same kind of thread: clearly more CPU (a ratio, not a time).
    assert!(heavy_cpu > light_cpu * 2.0, "{light_cpu} then {heavy_cpu}");
    assert!(light_stats.cpu_seconds <= light_cpu && heavy_stats.cpu_seconds <= heavy_cpu);
    let text = metrics.render_prometheus();
    assert!(text.contains("augur_inference_cpu_seconds_total{scene=\"scene\",model=\"t\",version=\"8\"}"), "{text}");
}
