//! Per-stage latency of the request path (fetch, assemble, infer, total), per scene.
//!
//! HdrHistograms behind a mutex each: one short lock per stage per request, a few thousand
//! requests per second on 2 cores. Read (and optionally reset) through `ModelAdmin.GetStats`,
//! which `augur bench` uses to report the fetch stage next to end-to-end latency. The Prometheus
//! endpoint of the observability work will read the same numbers.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// A stage of the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Store reads (user + items, concurrently), including waiting for the budget.
    Fetch,
    /// Spec transforms into tensors.
    Assemble,
    /// Batcher queue + model run.
    Infer,
    /// The whole Predict call inside augur.
    Total,
}

impl Stage {
    /// All stages, in path order.
    pub const ALL: [Stage; 4] = [Stage::Fetch, Stage::Assemble, Stage::Infer, Stage::Total];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Assemble => "assemble",
            Stage::Infer => "infer",
            Stage::Total => "total",
        }
    }
}

/// Summary of one stage, microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageSummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Worst.
    pub max_us: u64,
}

/// Stage histograms of one scene.
#[derive(Debug)]
pub struct StageStats {
    stages: [Mutex<Histogram<u64>>; 4],
}

impl Default for StageStats {
    fn default() -> Self {
        let new = || Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 2).expect("histogram bounds"));
        StageStats { stages: [new(), new(), new(), new()] }
    }
}

impl StageStats {
    /// Records one sample.
    pub fn record(&self, stage: Stage, elapsed: Duration) {
        if let Ok(mut h) = self.stages[stage as usize].lock() {
            h.saturating_record((elapsed.as_micros() as u64).max(1));
        }
    }

    /// Current summary of `stage`; `reset` starts a new window.
    pub fn summary(&self, stage: Stage, reset: bool) -> StageSummary {
        let Ok(mut h) = self.stages[stage as usize].lock() else { return StageSummary::default() };
        let summary = StageSummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        };
        if reset {
            h.reset();
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_summarises_and_resets() {
        let stats = StageStats::default();
        for ms in 1..=100 {
            stats.record(Stage::Fetch, Duration::from_millis(ms));
        }
        let s = stats.summary(Stage::Fetch, true);
        assert_eq!(s.count, 100);
        assert!((49_000..=51_000).contains(&s.p50_us), "{s:?}");
        assert!((98_000..=100_999).contains(&s.p99_us), "{s:?}");
        assert_eq!(stats.summary(Stage::Fetch, false).count, 0, "reset starts a new window");
        assert_eq!(stats.summary(Stage::Infer, false).count, 0);
    }
}
