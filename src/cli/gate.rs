//! The publish gate: before `augur models publish` moves `LATEST`, the candidate and the version
//! `LATEST` names are scored in-process on the same rows of recent joined samples — the model
//! inputs the sample log recorded as served, and the labels the join attached — and compared on
//! exact AUC, log loss and calibration. Worse beyond a [`Tolerance`]: refused (unless forced).
//!
//! The rows are read from a sample-log directory with the reader `augur samples dump` uses:
//! impressed samples (at least one label), the highest revision of each sample id (late labels
//! are corrections), of the scene. With the candidate's lineage, only samples predicted at or
//! after the end of its training window are taken, so it is judged on rows it never saw;
//! without, the most recent rows, and the evaluation says they may not be held out. At most
//! [`Gate::max_rows`], the newest.
//!
//! The rows are in the stored form (every candidate's full row, as samples keep it); a split
//! model (a spec with request-level inputs) is fed the model form built from them, each row its
//! own request ([`score`]), so a split candidate or a split `LATEST` is judged on the same
//! numbers as its flat twin.
//!
//! The numbers are computed here, not by the online quality tracker ([`crate::quality`]) which
//! judges one served version on its own traffic: the gate needs two models on identical rows.
//! Its AUC and log loss are the tracker's reference functions ([`exact_auc`], [`log_loss`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::assemble::{Spec, Tensor, TensorData};
use crate::model::{Model, ModelError};
use crate::proto::{Sample, log_record};
use crate::quality::estimator::{exact_auc, log_loss};
use crate::repository::provenance::{Decision, Evaluation, Scores, Tolerance};
use crate::sample_log::file::{LogError, LogReader};
use crate::sample_log::record::DecodeError;

/// Rows per model run when scoring.
const CHUNK_ROWS: usize = 4096;

/// Default tolerances (`augur models publish --max-auc-drop` etc.).
pub const DEFAULT_TOLERANCE: Tolerance =
    Tolerance { max_auc_drop: 0.01, max_log_loss_rise: 0.01, max_calibration_error: 0.1 };

/// How a publish is gated.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The sample-log directory to read joined samples from; `None`: no samples (the publish
    /// goes through, recorded as `no_samples`).
    pub samples: Option<PathBuf>,
    /// The scene whose samples count.
    pub scene: String,
    /// The event type that makes a row positive.
    pub positive_event: String,
    /// How much worse the candidate may be.
    pub tolerance: Tolerance,
    /// Fewer rows than this (or rows of one class only) are no evaluation: `no_samples`.
    pub min_rows: u64,
    /// The newest rows at most (memory: about 300 bytes per row of the demo spec, twice; while
    /// reading, unimpressed samples count against it too).
    pub max_rows: usize,
    /// Without a training window in the lineage: rows predicted within this many ms of the
    /// newest sample.
    pub window_ms: i64,
    /// Publish even when refused; the override is recorded.
    pub force: bool,
}

/// Why the gate could not evaluate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The sample log could not be read.
    #[error("reading joined samples: {0}")]
    Log(#[from] LogError),
    /// A record is not a `LogRecord`.
    #[error("reading joined samples: {0}")]
    Decode(#[from] DecodeError),
    /// A model did not score the rows.
    #[error("scoring version {version} on the joined samples: {source}")]
    Score {
        /// `candidate` or the baseline's version number.
        version: String,
        /// What ORT said.
        #[source]
        source: ModelError,
    },
}

/// The evaluation rows: one tensor per model input, a label per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Inputs as the sample log recorded them, rows in prediction-time order.
    pub tensors: Vec<Tensor>,
    /// Whether each row carries the positive event.
    pub labels: Vec<bool>,
    /// Prediction times of the first and last row.
    pub window_ms: (i64, i64),
    /// Samples skipped because their inputs are laid out unlike the first row's (served with
    /// another spec).
    pub skipped: u64,
}

impl Rows {
    /// Rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Rows with the positive event.
    pub fn positives(&self) -> u64 {
        self.labels.iter().filter(|&&l| l).count() as u64
    }
}

/// Reads the evaluation rows of `gate.scene` from the log in `dir`: predicted at or after
/// `held_out_from_ms` when given, else within `gate.window_ms` of the newest; the newest
/// `gate.max_rows`.
pub fn read_rows(dir: &Path, gate: &Gate, held_out_from_ms: Option<i64>) -> Result<Rows, GateError> {
    let mut latest: HashMap<String, Sample> = HashMap::new();
    if !dir.exists() {
        return Ok(Rows::default());
    }
    let mut reader = LogReader::open(dir, 0)?;
    // Memory stays bounded on a long log: samples are logged roughly in prediction-time order,
    // so once twice `max_rows` are held, the oldest beyond `max_rows` cannot be among the newest.
    let mut newest = i64::MIN;
    for record in reader.by_ref() {
        let Some(log_record::Record::Sample(sample)) = record?.decode()?.record else { continue };
        if sample.scene != gate.scene || held_out_from_ms.is_some_and(|from| sample.timestamp_ms < from) {
            continue;
        }
        newest = newest.max(sample.timestamp_ms);
        if held_out_from_ms.is_none() && sample.timestamp_ms < newest.saturating_sub(gate.window_ms) {
            continue;
        }
        match latest.get(&sample.sample_id) {
            Some(old) if old.revision >= sample.revision => {}
            _ => {
                latest.insert(sample.sample_id.clone(), sample);
            }
        }
        if latest.len() > 2 * gate.max_rows.max(1) {
            let mut times: Vec<i64> = latest.values().map(|s| s.timestamp_ms).collect();
            let keep_from = *times.select_nth_unstable_by(latest.len() - gate.max_rows.max(1), |a, b| a.cmp(b)).1;
            latest.retain(|_, s| s.timestamp_ms >= keep_from);
        }
    }
    let mut samples: Vec<Sample> = latest.into_values().filter(|s| !s.labels.is_empty()).collect();
    samples.sort_by(|a, b| (a.timestamp_ms, &a.sample_id).cmp(&(b.timestamp_ms, &b.sample_id)));
    if held_out_from_ms.is_none()
        && let Some(newest) = samples.last().map(|s| s.timestamp_ms)
    {
        samples.retain(|s| s.timestamp_ms >= newest.saturating_sub(gate.window_ms));
    }
    let start = samples.len().saturating_sub(gate.max_rows);
    Ok(to_rows(&samples[start..], &gate.positive_event))
}

/// The samples' inputs as tensors, laid out as the first sample's; the others are skipped.
fn to_rows(samples: &[Sample], positive_event: &str) -> Rows {
    let Some(first) = samples.first() else { return Rows::default() };
    let layout: Vec<(&str, usize, bool)> = first
        .inputs
        .iter()
        .map(|t| {
            let int = !t.int64_values.is_empty();
            (t.name.as_str(), if int { t.int64_values.len() } else { t.float_values.len() }, int)
        })
        .collect();
    let mut tensors: Vec<Tensor> = layout
        .iter()
        .map(|&(name, width, int)| Tensor {
            name: name.to_owned(),
            width,
            data: if int { TensorData::I64(Vec::new()) } else { TensorData::F32(Vec::new()) },
        })
        .collect();
    let mut rows = Rows::default();
    for s in samples {
        let fits = s.inputs.len() == layout.len()
            && s.inputs.iter().zip(&layout).all(|(t, &(name, width, int))| {
                t.name == name
                    && if int {
                        t.int64_values.len() == width && t.float_values.is_empty()
                    } else {
                        t.float_values.len() == width && t.int64_values.is_empty()
                    }
            });
        if !fits {
            rows.skipped += 1;
            continue;
        }
        for (tensor, input) in tensors.iter_mut().zip(&s.inputs) {
            match &mut tensor.data {
                TensorData::I64(v) => v.extend_from_slice(&input.int64_values),
                TensorData::F32(v) => v.extend_from_slice(&input.float_values),
            }
        }
        rows.labels.push(s.labels.iter().any(|l| l.r#type == positive_event));
        let t = s.timestamp_ms;
        rows.window_ms =
            if rows.labels.len() == 1 { (t, t) } else { (rows.window_ms.0.min(t), rows.window_ms.1.max(t)) };
    }
    rows.tensors = tensors;
    rows
}

/// Scores every row with `model` (opened against `spec`), [`CHUNK_ROWS`] at a time. The rows
/// are in the stored form, as samples keep them; a model of a spec with request-level inputs
/// takes the model form, so each chunk is converted first with every row its own request
/// ([`Spec::model_form`]): a split model scores exactly as its flat twin on the same rows.
pub fn score(model: &mut dyn Model, spec: &Spec, rows: &Rows) -> Result<Vec<f32>, ModelError> {
    if spec.has_request_level() {
        let logged: Vec<&str> = rows.tensors.iter().map(|t| t.name.as_str()).collect();
        let stored: Vec<&str> = spec.stored.iter().map(|s| s.name.as_str()).collect();
        if !rows.is_empty() && logged != stored {
            return Err(ModelError::Output {
                problem: format!(
                    "the samples hold inputs {logged:?}, the spec `{}` stores {stored:?}: not its samples",
                    spec.scene
                ),
            });
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut start = 0;
    while start < rows.len() {
        let end = (start + CHUNK_ROWS).min(rows.len());
        let chunk: Vec<Tensor> = rows
            .tensors
            .iter()
            .map(|t| Tensor {
                name: t.name.clone(),
                width: t.width,
                data: match &t.data {
                    TensorData::I64(v) => TensorData::I64(v[start * t.width..end * t.width].to_vec()),
                    TensorData::F32(v) => TensorData::F32(v[start * t.width..end * t.width].to_vec()),
                },
            })
            .collect();
        let scores = match spec.has_request_level() {
            true => model.run(&spec.model_form(&chunk, end - start))?,
            false => model.run(&chunk)?,
        };
        if scores.len() != end - start {
            return Err(ModelError::Output { problem: format!("{} scores for {} rows", scores.len(), end - start) });
        }
        out.extend(scores);
        start = end;
    }
    Ok(out)
}

/// AUC, log loss, mean score and calibration of `scores` against `labels` (non-empty).
pub fn scores_of(scores: &[f32], labels: &[bool]) -> Scores {
    let n = scores.len().max(1) as f64;
    let pairs: Vec<(f32, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    let mean_score = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    let rate = labels.iter().filter(|&&l| l).count() as f64 / n;
    Scores {
        auc: exact_auc(&pairs),
        log_loss: pairs.iter().map(|&(s, y)| log_loss(f64::from(s), y)).sum::<f64>() / n,
        mean_score,
        calibration: (rate > 0.0).then(|| mean_score / rate),
    }
}

/// The checks the candidate fails against the baseline: empty = passed. Each says both numbers.
pub fn decide(candidate: &Scores, baseline: &Scores, tolerance: &Tolerance) -> Vec<String> {
    let mut failed = Vec::new();
    if let (Some(c), Some(b)) = (candidate.auc, baseline.auc)
        && b - c > tolerance.max_auc_drop
    {
        failed.push(format!("AUC {c:.4} vs {b:.4}: drop {:.4} > {}", b - c, tolerance.max_auc_drop));
    }
    let (c, b) = (candidate.log_loss, baseline.log_loss);
    if c - b > tolerance.max_log_loss_rise {
        failed.push(format!("log loss {c:.4} vs {b:.4}: rise {:.4} > {}", c - b, tolerance.max_log_loss_rise));
    }
    if let (Some(c), Some(b)) = (candidate.calibration, baseline.calibration) {
        let (ce, be) = ((c - 1.0).abs(), (b - 1.0).abs());
        if ce - be > tolerance.max_calibration_error {
            failed.push(format!(
                "calibration {c:.3} vs {b:.3}: error |c-1| {ce:.3} vs {be:.3}, rise {:.3} > {}",
                ce - be,
                tolerance.max_calibration_error
            ));
        }
    }
    failed
}

/// An evaluation without numbers (first version, no samples, no baseline).
pub fn unevaluated(
    decision: Decision,
    reason: String,
    gate: &Gate,
    baseline_version: Option<u64>,
    held_out_from_ms: Option<i64>,
) -> Evaluation {
    Evaluation {
        decision,
        forced: false,
        reasons: vec![reason],
        baseline_version,
        rows: 0,
        positives: 0,
        positive_event: gate.positive_event.clone(),
        window_start_ms: 0,
        window_end_ms: 0,
        held_out_from_ms,
        samples: gate.samples.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        candidate: None,
        baseline: None,
        tolerance: gate.tolerance,
        evaluated_at_ms: crate::quality::now_ms(),
    }
}

/// Compares the candidate's and the baseline's scores on `rows` (at least `gate.min_rows`).
pub fn evaluate(
    gate: &Gate,
    rows: &Rows,
    candidate: &[f32],
    baseline: &[f32],
    baseline_version: u64,
    held_out_from_ms: Option<i64>,
) -> Evaluation {
    let (c, b) = (scores_of(candidate, &rows.labels), scores_of(baseline, &rows.labels));
    let reasons = decide(&c, &b, &gate.tolerance);
    let mut evaluation = unevaluated(
        if reasons.is_empty() { Decision::Passed } else { Decision::Refused },
        String::new(),
        gate,
        Some(baseline_version),
        held_out_from_ms,
    );
    evaluation.reasons = reasons;
    evaluation.rows = rows.len() as u64;
    evaluation.positives = rows.positives();
    (evaluation.window_start_ms, evaluation.window_end_ms) = rows.window_ms;
    evaluation.candidate = Some(c);
    evaluation.baseline = Some(b);
    evaluation
}

/// One line: the decision, the rows, both versions' numbers, the reasons.
pub fn summary(e: &Evaluation, candidate_version: u64) -> String {
    let mut line = format!("gate: {}", e.decision.as_str());
    if e.forced {
        line.push_str(" (forced)");
    }
    if e.rows > 0 {
        let held = if e.held_out_from_ms.is_some() { "held-out" } else { "recent (not known to be held out)" };
        let _ = write!(line, "; {} {held} joined samples ({} {})", e.rows, e.positives, e.positive_event);
    }
    let numbers = |s: &Option<Scores>| {
        s.map(|s| {
            let opt = |v: Option<f64>, d: usize| v.map_or("n/a".to_owned(), |v| format!("{v:.d$}"));
            format!(
                "AUC {} log loss {:.4} mean score {:.4} calibration {}",
                opt(s.auc, 4),
                s.log_loss,
                s.mean_score,
                opt(s.calibration, 3)
            )
        })
    };
    if let Some(c) = numbers(&e.candidate) {
        let _ = write!(line, "; version {candidate_version}: {c}");
    }
    if let (Some(b), Some(v)) = (numbers(&e.baseline), e.baseline_version) {
        let _ = write!(line, "; LATEST version {v}: {b}");
    }
    let reasons: Vec<&str> = e.reasons.iter().map(String::as_str).filter(|r| !r.is_empty()).collect();
    if !reasons.is_empty() {
        let _ = write!(line, "; {}", reasons.join("; "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Label, Tensor as ProtoTensor};

    fn gate() -> Gate {
        Gate {
            samples: None,
            scene: "ranking".into(),
            positive_event: "click".into(),
            tolerance: DEFAULT_TOLERANCE,
            min_rows: 1,
            max_rows: 1000,
            window_ms: 3_600_000,
            force: false,
        }
    }

    #[test]
    fn scores_are_exact_auc_log_loss_and_calibration() {
        let s = scores_of(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert_eq!(s.auc, Some(0.75));
        let expected = -((0.9f64).ln() + (0.6f64).ln() + (0.35f64).ln() + (0.8f64).ln()) / 4.0;
        assert!((s.log_loss - expected).abs() < 1e-6, "{} vs {expected}", s.log_loss);
        assert!((s.mean_score - 0.4125).abs() < 1e-6);
        assert!((s.calibration.unwrap() - 0.4125 / 0.5).abs() < 1e-6);
        // One class: no AUC; no positive: no calibration.
        let none = scores_of(&[0.2, 0.3], &[false, false]);
        assert_eq!((none.auc, none.calibration), (None, None));
        // Ties count half.
        assert_eq!(scores_of(&[0.2, 0.2, 0.9], &[false, true, true]).auc, Some(0.75));
    }

    fn scores(auc: f64, log_loss: f64, calibration: f64) -> Scores {
        Scores { auc: Some(auc), log_loss, mean_score: 0.1, calibration: Some(calibration) }
    }

    #[test]
    fn the_gate_refuses_only_beyond_each_tolerance_and_says_both_numbers() {
        let t = DEFAULT_TOLERANCE;
        let base = scores(0.70, 0.40, 1.02);
        assert!(decide(&base, &base, &t).is_empty());
        // Better, or worse within the tolerance: passes.
        assert!(decide(&scores(0.75, 0.35, 1.0), &base, &t).is_empty());
        assert!(decide(&scores(0.695, 0.405, 0.95), &base, &t).is_empty());
        // Each check on its own.
        let auc = decide(&scores(0.65, 0.40, 1.02), &base, &t);
        assert_eq!(auc, ["AUC 0.6500 vs 0.7000: drop 0.0500 > 0.01"]);
        let loss = decide(&scores(0.70, 0.45, 1.02), &base, &t);
        assert_eq!(loss.len(), 1);
        assert!(loss[0].starts_with("log loss 0.4500 vs 0.4000"), "{loss:?}");
        // Calibration error is |c - 1| either side: 0.85 is 0.15 off against 0.02.
        let cal = decide(&scores(0.70, 0.40, 0.85), &base, &t);
        assert_eq!(cal.len(), 1);
        assert!(cal[0].starts_with("calibration 0.850 vs 1.020"), "{cal:?}");
        assert!(decide(&scores(0.70, 0.40, 0.9), &base, &t).is_empty(), "0.10 off vs 0.02: rise 0.08");
        // A loose tolerance lets all through; undefined AUC skips that check.
        let loose = Tolerance { max_auc_drop: 1.0, max_log_loss_rise: 1.0, max_calibration_error: 1.0 };
        assert!(decide(&scores(0.5, 0.6, 1.5), &base, &loose).is_empty());
        let no_auc = Scores { auc: None, ..base };
        assert!(decide(&no_auc, &scores(0.9, 0.40, 1.02), &t).is_empty());
    }

    #[test]
    fn evaluate_records_rows_window_and_both_versions() {
        let rows =
            Rows { tensors: Vec::new(), labels: vec![false, true, false, true], window_ms: (10, 40), skipped: 0 };
        let good = [0.1, 0.8, 0.2, 0.7];
        let inverted = good.map(|s| 1.0 - s);
        let e = evaluate(&gate(), &rows, &inverted, &good, 1, Some(10));
        assert_eq!(e.decision, Decision::Refused);
        assert_eq!((e.rows, e.positives, e.window_start_ms, e.window_end_ms), (4, 2, 10, 40));
        assert_eq!((e.baseline_version, e.held_out_from_ms), (Some(1), Some(10)));
        assert_eq!(e.candidate.unwrap().auc, Some(0.0));
        assert_eq!(e.baseline.unwrap().auc, Some(1.0));
        let line = summary(&e, 2);
        assert!(line.contains("version 2: AUC 0.0000") && line.contains("LATEST version 1: AUC 1.0000"), "{line}");
        assert!(line.contains("AUC 0.0000 vs 1.0000: drop 1.0000"), "{line}");
        assert_eq!(evaluate(&gate(), &rows, &good, &good, 1, None).decision, Decision::Passed);
    }

    fn sample(id: &str, revision: u32, ts: i64, ids: Vec<i64>, labels: &[&str]) -> Sample {
        Sample {
            sample_id: id.into(),
            revision,
            timestamp_ms: ts,
            scene: "ranking".into(),
            inputs: vec![
                ProtoTensor {
                    name: "ids".into(),
                    shape: vec![1, ids.len() as i64],
                    int64_values: ids,
                    float_values: vec![],
                },
                ProtoTensor { name: "dense".into(), shape: vec![1, 1], int64_values: vec![], float_values: vec![0.5] },
            ],
            labels: labels.iter().map(|t| Label { r#type: (*t).into(), timestamp_ms: ts, value: None }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn rows_are_the_latest_revision_of_impressed_samples_in_the_window() {
        use crate::config::SampleLogConfig;
        use crate::proto::LogRecord;
        use crate::sample_log::file::SegmentLog;
        use crate::sample_log::metrics::SampleMetrics;
        use crate::sample_log::record::encode;

        let dir = tempfile::tempdir().unwrap();
        let config = SampleLogConfig { dir: dir.path().to_owned(), ..SampleLogConfig::default() };
        let (log, _) = SegmentLog::open(&config, &[], SampleMetrics::default()).unwrap();
        let record = |s: Sample| encode(&LogRecord { record: Some(log_record::Record::Sample(s)) });
        let mut other = sample("o:0", 0, 25, vec![9, 9], &["click"]);
        other.scene = "search".into();
        log.append(&[
            record(sample("a:0", 0, 10, vec![1, 2], &["impression"])),
            record(sample("b:0", 0, 20, vec![3, 4], &["impression"])),
            record(sample("a:0", 1, 10, vec![1, 2], &["impression", "click"])), // a late click
            record(sample("c:0", 0, 30, vec![5, 6], &[])),                      // never impressed
            record(sample("d:0", 0, 40, vec![7], &["impression"])),             // another layout
            record(sample("e:0", 0, 50, vec![8, 8], &["impression", "click"])),
            record(other),
        ])
        .unwrap();
        let rows = read_rows(dir.path(), &gate(), None).unwrap();
        assert_eq!(rows.labels, [true, false, true]);
        assert_eq!((rows.window_ms, rows.skipped), ((10, 50), 1));
        assert_eq!(rows.tensors[0].data, TensorData::I64(vec![1, 2, 3, 4, 8, 8]));
        assert_eq!((rows.tensors[0].width, rows.tensors[1].width), (2, 1));
        // Held out from 20: a:0 is the training window's.
        let held = read_rows(dir.path(), &gate(), Some(20)).unwrap();
        assert_eq!((held.labels.as_slice(), held.window_ms), ([false, true].as_slice(), (20, 50)));
        // The newest rows only, and a recent window.
        let newest = read_rows(dir.path(), &Gate { max_rows: 1, ..gate() }, None).unwrap();
        assert_eq!(newest.window_ms, (50, 50));
        let recent = read_rows(dir.path(), &Gate { window_ms: 30, ..gate() }, None).unwrap();
        assert_eq!(recent.window_ms, (20, 50));
        assert!(read_rows(&dir.path().join("none"), &gate(), None).unwrap().is_empty());

        // Scored in chunks, in row order.
        #[derive(Debug)]
        struct FirstId;
        impl Model for FirstId {
            fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
                let TensorData::I64(ids) = &tensors[0].data else { unreachable!() };
                Ok(ids.chunks(tensors[0].width).map(|r| r[0] as f32).collect())
            }
        }
        // A spec without request-level inputs: the rows go to the model as they are.
        let flat = Spec::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("features/ranking.yaml")).unwrap();
        assert_eq!(score(&mut FirstId, &flat, &rows).unwrap(), [1.0, 3.0, 8.0]);
    }
}
