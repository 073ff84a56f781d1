//! Rate limits for log lines, one mechanism for both uses: [`LogEvery`], a warning on a hot path
//! logged at most once per interval with the count of those suppressed meanwhile; and
//! [`ProtocolLogLimit`], a per-layer filter built on it that lets the protocol crates (hyper, h2,
//! tonic, tower, rustls) log at most one line per second each, and counts the rest: one hostile
//! client can otherwise make them log a WARN per connection or stream (4,400 lines in 5 s were
//! seen), burying augur's own lines and filling the log pipeline. [`report_suppressed`] says how
//! many were dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::layer::{Context, Filter};

/// The crates whose lines are limited (by target prefix).
const PROTOCOL_CRATES: [&str; 5] = ["hyper", "h2", "tonic", "tower", "rustls"];

/// Each protocol crate logs at most one line per window.
const WINDOW: Duration = Duration::from_secs(1);

/// Lines dropped since the last [`report_suppressed`].
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// A hot-path warning logged at most once per interval, with how many were suppressed in
/// between: one unreadable Redis row per id per request must not become a log flood. Lock-free:
/// one load when suppressed, one compare-exchange when a line goes out.
#[derive(Debug)]
pub struct LogEvery {
    every_ms: u64,
    start: Instant,
    /// Milliseconds since `start` before which nothing is logged.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogEvery {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        LogEvery {
            every_ms: every.as_millis() as u64,
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub fn ready(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next
            || self.next_ms.compare_exchange(next, now + self.every_ms, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct ProtocolLogLimit {
    /// One limiter per crate of `PROTOCOL_CRATES`, in that order.
    crates: [LogEvery; PROTOCOL_CRATES.len()],
}

impl Default for ProtocolLogLimit {
    fn default() -> Self {
        ProtocolLogLimit { crates: std::array::from_fn(|_| LogEvery::new(WINDOW)) }
    }
}

fn crate_of(target: &str) -> Option<usize> {
    PROTOCOL_CRATES
        .iter()
        .position(|c| target.strip_prefix(c).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
}

impl<S> Filter<S> for ProtocolLogLimit {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        let Some(index) = crate_of(meta.target()).filter(|_| meta.is_event()) else { return true };
        // The crate's own count of suppressed lines is not used: the report sums all crates.
        let allowed = self.crates[index].ready().is_some();
        if !allowed {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // No opinion on levels: the level filter it is combined with decides them (without a
        // hint, the combination would lose that filter's and enable every span).
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Decided per event for the limited crates (the answer changes with time).
        if crate_of(meta.target()).is_some() { Interest::sometimes() } else { Interest::always() }
    }
}

/// Lines the filter dropped since the last call (the counter restarts).
pub fn take_suppressed() -> u64 {
    SUPPRESSED.swap(0, Ordering::Relaxed)
}

/// Every `every`, one line with the count of protocol log lines dropped meanwhile, if any,
/// until `stop`.
pub async fn report_suppressed(every: Duration, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let suppressed = take_suppressed();
        if suppressed > 0 {
            tracing::warn!(
                suppressed,
                window_s = every.as_secs(),
                "protocol log lines (hyper, h2, tonic, tower, rustls) suppressed: at most one per crate per second is logged"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{Layer as _, Registry};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_every_lets_one_line_through_per_interval_and_counts_the_rest() {
        let limiter = LogEvery::new(Duration::from_secs(3600));
        assert_eq!(limiter.ready(), Some(0));
        assert_eq!(limiter.ready(), None);
        assert_eq!(limiter.ready(), None);
        let open = LogEvery::new(Duration::ZERO);
        assert_eq!(open.ready(), Some(0));
        assert_eq!(open.ready(), Some(0), "a zero interval never suppresses");
    }

    #[test]
    fn a_flood_from_hyper_logs_one_line_and_counts_the_rest_while_augur_lines_all_pass() {
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(ProtocolLogLimit::default());
        take_suppressed();
        tracing::subscriber::with_default(Registry::default().with(layer), || {
            for i in 0..100 {
                tracing::warn!(target: "hyper::proto::h2::server", i, "http2 service errored");
                tracing::warn!(target: "augur::server", i, "ours");
            }
            tracing::warn!(target: "hyperion", "not hyper");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("http2 service errored").count(), 1, "{text}");
        assert_eq!(text.matches("ours").count(), 100);
        assert_eq!(text.matches("not hyper").count(), 1);
        // Other tests of this binary log nothing from hyper meanwhile: exactly the 99 dropped.
        assert_eq!(take_suppressed(), 99);
    }
}
