//! PSI, binning, the window and the reference file, on hand-built tensors.

use super::config::DriftConfig;
use super::reference::{Bins, FeatureReference, REFERENCE_FILE, Reference, psi};
use super::*;
use crate::assemble::FallbackReason;

/// A two-input spec: one id feature (`ids`, width 2: `tag`) and one dense feature.
const SPEC: &str = r#"
scene: s
entities:
  user: {table: users}
  item: {table: items}
inputs:
  - {name: ids, dtype: int64}
  - {name: dense, dtype: float32}
output: ctr
features:
  - name: tag
    source: user.tag
    type: string_list
    length: 2
    transform: [hash: {buckets: 16}]
    input: ids
  - name: x
    source: user.x
    type: float
    default: 0
    input: dense
"#;

fn spec() -> Spec {
    Spec::parse(SPEC).expect("spec")
}

/// Deciles 1..=9 over [0, 10): ten bins of 0.1; ids 1, 2 at 0.4 each, other 0.2.
fn reference() -> Reference {
    Reference {
        format: 1,
        scene: "s".into(),
        rows: 1000,
        features: vec![
            FeatureReference {
                name: "x".into(),
                bins: Bins::Quantiles { edges: (1..10).map(f64::from).collect() },
                shares: vec![0.1; 10],
                fallback_rate: 0.05,
            },
            FeatureReference {
                name: "tag".into(),
                bins: Bins::TopValues { values: vec![2, 1] },
                shares: vec![0.4, 0.4, 0.2],
                fallback_rate: 0.0,
            },
        ],
    }
}

fn config() -> DriftConfig {
    DriftConfig { sample_every: 1, bucket_s: 60, buckets: 5, min_rows: 100, ..DriftConfig::default() }
}

/// `rows` rows: tag ids cycling 1, 2, 1, 3 (two columns), x = `x(row)`.
fn tensors(rows: usize, x: impl Fn(usize) -> f32) -> Vec<Tensor> {
    let ids: Vec<i64> = (0..rows).flat_map(|r| [[1, 2, 1, 3][r % 4], 1]).collect();
    let dense: Vec<f32> = (0..rows).map(x).collect();
    vec![
        Tensor { name: "ids".into(), width: 2, data: TensorData::I64(ids) },
        Tensor { name: "dense".into(), width: 1, data: TensorData::F32(dense) },
    ]
}

fn feature<'a>(s: &'a DriftSnapshot, name: &str) -> &'a FeatureDrift {
    s.versions[0].features.iter().find(|f| f.name == name).expect("feature")
}

#[test]
fn psi_is_zero_for_the_reference_itself_and_matches_the_formula() {
    assert_eq!(psi(&[10, 10, 20], &[0.25, 0.25, 0.5], 1e-4), Some(0.0));
    // served (0.5, 0.5) against (0.25, 0.75): 0.25 ln 2 + (-0.25) ln(2/3).
    let expected = 0.25 * 2f64.ln() - 0.25 * (0.5f64 / 0.75).ln();
    assert!((psi(&[1, 1], &[0.25, 0.75], 1e-4).unwrap() - expected).abs() < 1e-12);
    // An empty served bin stays finite through the epsilon floor; so does an empty reference bin.
    let empty = psi(&[0, 10], &[0.5, 0.5], 1e-4).unwrap();
    assert!(empty.is_finite() && empty > 1.0, "{empty}");
    let new_bin = psi(&[5, 5], &[1.0, 0.0], 1e-4).unwrap();
    assert!((new_bin - ((0.5 - 1.0) * 0.5f64.ln() + (0.5 - 1e-4) * (0.5f64 / 1e-4).ln())).abs() < 1e-12);
    assert_eq!(psi(&[0, 0], &[0.5, 0.5], 1e-4), None, "nothing served");
    assert_eq!(psi(&[1], &[0.5, 0.5], 1e-4), None, "bins disagree");
}

#[test]
fn dense_values_bin_like_numpy_searchsorted_right_and_ids_by_membership() {
    let r = reference();
    let dense = r.feature("x").unwrap().binner();
    // Bin = number of edges <= x: an edge value opens the bin above it.
    assert_eq!(dense.dense(-5.0), 0);
    assert_eq!(dense.dense(0.999), 0);
    assert_eq!(dense.dense(1.0), 1);
    assert_eq!(dense.dense(4.5), 4);
    assert_eq!(dense.dense(9.0), 9);
    assert_eq!(dense.dense(1e9), 9);
    assert_eq!(dense.dense(f32::NAN), 9);
    let ids = r.feature("tag").unwrap().binner();
    assert_eq!(ids.id(2), 0, "most frequent first");
    assert_eq!(ids.id(1), 1);
    assert_eq!(ids.id(3), 2, "other");
    assert_eq!(ids.id(-7), 2, "other");
}

#[test]
fn an_unshifted_stream_stays_below_and_a_shifted_one_is_flagged() {
    let drift = Drift::default();
    drift.start(&config());
    let spec = spec();
    let r = reference();
    // x uniform over [0, 10) like the reference, tags: 1 half the values, 2 a quarter, 3 a quarter.
    let same = tensors(1000, |i| (i % 100) as f32 / 10.0);
    drift.observe_at(60_000, &spec, "m", 1, Some(&r), &same, &[]);
    let s = drift.snapshot(60_000);
    assert_eq!(s.versions.len(), 1);
    assert_eq!(s.versions[0].rows, 1000);
    let x = feature(&s, "x");
    assert!(x.psi.unwrap() < 1e-9, "{x:?}");
    assert!(!x.flagged);
    // tag, counted over both columns (2000 values): id 2 250, id 1 1500, other (3) 250.
    let tag = feature(&s, "tag");
    let served: [f64; 3] = [250.0 / 2000.0, 1500.0 / 2000.0, 250.0 / 2000.0];
    let expected: f64 = served.iter().zip([0.4f64, 0.4, 0.2]).map(|(s, r)| (s - r) * (s / r).ln()).sum();
    assert!((tag.psi.unwrap() - expected).abs() < 1e-12, "{tag:?} vs {expected}");

    // Another version, x drawn from [8, 10): flagged; the tags are the same.
    let shifted = tensors(1000, |i| 8.0 + (i % 20) as f32 / 10.0);
    drift.observe_at(60_000, &spec, "m", 2, Some(&r), &shifted, &[]);
    let s = drift.snapshot(60_000);
    let v2 = &s.versions[1];
    assert_eq!(v2.key.version, 2);
    let x2 = v2.features.iter().find(|f| f.name == "x").unwrap();
    assert!(x2.psi.unwrap() > 1.0 && x2.flagged, "{x2:?}");
    let tag2 = v2.features.iter().find(|f| f.name == "tag").unwrap();
    assert_eq!(tag2.psi, tag.psi);
}

#[test]
fn fallback_rates_are_per_row_and_psi_waits_for_min_rows() {
    let drift = Drift::default();
    drift.start(&config());
    let spec = spec();
    let r = reference();
    let fallbacks = [
        // A user feature: every row.
        Fallback { feature: "x".into(), reason: FallbackReason::MissingRow, candidates: vec![] },
        // Unknown to the spec: ignored.
        Fallback { feature: "nope".into(), reason: FallbackReason::MissingRow, candidates: vec![0] },
    ];
    drift.observe_at(0, &spec, "m", 1, Some(&r), &tensors(40, |_| 1.0), &fallbacks);
    drift.observe_at(0, &spec, "m", 1, Some(&r), &tensors(40, |_| 1.0), &[]);
    let s = drift.snapshot(0);
    let x = feature(&s, "x");
    assert_eq!(x.fallback_rate, Some(0.5));
    assert_eq!(x.reference_fallback_rate, Some(0.05));
    assert_eq!(x.psi, None, "80 rows < min_rows 100");
    assert_eq!(feature(&s, "tag").fallback_rate, Some(0.0));
}

#[test]
fn the_window_slides_and_old_buckets_are_reused() {
    let drift = Drift::default();
    drift.start(&config());
    let (spec, r) = (spec(), reference());
    drift.observe_at(0, &spec, "m", 1, Some(&r), &tensors(100, |_| 0.5), &[]);
    drift.observe_at(60_000, &spec, "m", 1, Some(&r), &tensors(100, |_| 5.5), &[]);
    assert_eq!(drift.snapshot(60_000).versions[0].rows, 200);
    // 5 buckets of 60 s: at 300 s the first bucket (0..60 s) has left the window.
    let s = drift.snapshot(300_000);
    assert_eq!(s.versions[0].rows, 100);
    assert_eq!(s.versions[0].rows_total, 200);
    // Its slot is reused (cleared) by the bucket five steps later.
    drift.observe_at(300_000, &spec, "m", 1, Some(&r), &tensors(100, |_| 5.5), &[]);
    let s = drift.snapshot(300_000);
    assert_eq!(s.versions[0].rows, 200);
    assert!(feature(&s, "x").psi.unwrap() > 1.0, "only x = 5.5 left in the window");
    assert_eq!(drift.snapshot(10_000_000).versions[0].rows, 0, "long idle: empty window");
    assert_eq!(feature(&drift.snapshot(10_000_000), "x").psi, None);
}

#[test]
fn without_a_reference_fallbacks_are_tracked_and_psi_is_absent() {
    let drift = Drift::default();
    drift.start(&config());
    drift.observe_at(0, &spec(), "m", 1, None, &tensors(200, |_| 1.0), &[]);
    let s = drift.snapshot(0);
    assert!(!s.versions[0].has_reference);
    assert!(s.versions[0].features.iter().all(|f| f.psi.is_none() && !f.in_reference));
    assert_eq!(feature(&s, "x").fallback_rate, Some(0.0));
}

#[test]
fn one_request_in_sample_every_is_observed_and_off_observes_none() {
    let drift = Drift::default();
    drift.start(&DriftConfig { sample_every: 4, ..config() });
    let (spec, r) = (spec(), reference());
    for _ in 0..10 {
        drift.observe(&spec, "m", 1, Some(&r), &tensors(1, |_| 1.0), &[]);
    }
    let s = drift.snapshot(now_ms());
    assert_eq!(s.observed, 3, "requests 0, 4 and 8");
    assert_eq!(s.versions[0].rows_total, 3);
    let off = Drift::default();
    off.start(&DriftConfig { enabled: false, ..config() });
    off.observe(&spec, "m", 1, Some(&r), &tensors(1, |_| 1.0), &[]);
    assert!(!off.is_on());
    assert_eq!(off.snapshot(0), DriftSnapshot::default());
}

#[test]
fn versions_per_scene_are_bounded_by_evicting_the_least_recently_observed() {
    let drift = Drift::default();
    drift.start(&DriftConfig { max_versions: 2, ..config() });
    let (spec, r) = (spec(), reference());
    for (at, version) in [(0, 1), (1_000, 2), (2_000, 1), (3_000, 3)] {
        drift.observe_at(at, &spec, "m", version, Some(&r), &tensors(1, |_| 1.0), &[]);
    }
    let s = drift.snapshot(3_000);
    let kept: Vec<u64> = s.versions.iter().map(|v| v.key.version).collect();
    assert_eq!(kept, [1, 3], "2 was observed least recently");
    assert_eq!(s.evicted.get("s"), Some(&1));
}

#[test]
fn a_summary_of_the_wrong_kind_is_ignored() {
    let drift = Drift::default();
    drift.start(&config());
    let mut r = reference();
    // `x` is dense, summarised as ids.
    r.features[0].bins = Bins::TopValues { values: (0..9).collect() };
    drift.observe_at(0, &spec(), "m", 1, Some(&r), &tensors(200, |_| 1.0), &[]);
    let s = drift.snapshot(0);
    assert!(!feature(&s, "x").in_reference);
    assert!(feature(&s, "tag").in_reference);
}

#[test]
fn reference_files_load_absent_is_none_and_bad_ones_say_why() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Reference::load(dir.path()).unwrap().is_none(), "no file: no reference");
    std::fs::write(dir.path().join(REFERENCE_FILE), serde_json::to_vec(&reference()).unwrap()).unwrap();
    assert_eq!(Reference::load(dir.path()).unwrap(), Some(reference()));
    let text = std::fs::read_to_string(dir.path().join(REFERENCE_FILE)).unwrap();
    assert!(text.contains(r#""kind":"quantiles""#) && text.contains(r#""kind":"top_values""#), "{text}");
    for (bad, why) in [
        (r#"{"format": 2, "rows": 1, "features": []}"#, "format 2"),
        (
            r#"{"format": 1, "rows": 1, "features": [{"name": "x", "kind": "quantiles", "edges": [2, 1], "shares": [0.5, 0.25, 0.25]}]}"#,
            "strictly increasing",
        ),
        (
            r#"{"format": 1, "rows": 1, "features": [{"name": "x", "kind": "quantiles", "edges": [1], "shares": [1.0]}]}"#,
            "1 shares for 2 bins",
        ),
        (
            r#"{"format": 1, "rows": 1, "features": [{"name": "t", "kind": "top_values", "values": [1], "shares": [0.5, 0.2]}]}"#,
            "sum to",
        ),
    ] {
        std::fs::write(dir.path().join(REFERENCE_FILE), bad).unwrap();
        let e = Reference::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(why), "{e} lacks {why}");
    }
}

/// A split scene and its flat twin (`features/ranking_split.yaml`, `features/ranking.yaml`: the
/// same features, the user and context part request-level in the split one) observed on the same
/// requests, against the demo model's training reference: the same rows, PSI and fallback rates
/// per feature. Requests carry 1 to 8 candidates, so a user feature counted once per request
/// (the model form) would weigh users differently from the reference and give another PSI.
#[test]
fn a_split_scene_drifts_exactly_as_its_flat_twin() {
    use std::collections::HashMap;

    use crate::assemble::assemble;
    use crate::assemble::encode::RequestView;
    use crate::fetch::Value;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let flat = Spec::load(&root.join("features/ranking.yaml")).expect("flat spec");
    let mut split = Spec::load(&root.join("features/ranking_split.yaml")).expect("split spec");
    // One scene name for both, so the snapshots compare key for key.
    split.scene = flat.scene.clone();
    assert!(split.has_request_level() && !flat.has_request_level());
    let reference = Reference::load(&root.join("models/ranking/1")).expect("reference").expect("present");
    let config = DriftConfig { min_rows: 10, ..config() };
    let (on_flat, on_split) = (Drift::default(), Drift::default());
    on_flat.start(&config);
    on_split.start(&config);
    let mut request_rows = 0;
    for k in 0..300usize {
        let context: HashMap<String, Value> = [
            ("hour".to_owned(), Value::Int((k * 7 % 24) as i64)),
            ("device".to_owned(), Value::Str(["ios", "android", "web"][k % 3].to_owned())),
        ]
        .into();
        let candidates: Vec<(String, HashMap<String, Value>)> =
            (0..1 + k * 5 % 8).map(|j| (format!("i{}", (k * 13 + j * 31) % 500), HashMap::new())).collect();
        let user = format!("u{}", k * 17 % 97);
        let view = || RequestView::new(&user, &context, &candidates);
        let items = vec![None; candidates.len()];
        let a = assemble(&flat, view(), None, &items);
        let b = assemble(&split, view(), None, &items);
        let request_level = split.inputs.iter().position(|i| i.name == "user_ids").unwrap();
        request_rows += b.tensors[request_level].rows();
        on_flat.observe_at(1_000, &flat, "m", 1, Some(&reference), &a.tensors, &a.fallbacks);
        on_split.observe_at(1_000, &split, "m", 1, Some(&reference), &b.tensors, &b.fallbacks);
    }
    assert_eq!(request_rows, 300, "the split scene's user part is one row per request");
    let (a, b) = (on_flat.snapshot(2_000), on_split.snapshot(2_000));
    let (a, b) = (&a.versions[0], &b.versions[0]);
    assert_eq!((a.rows, b.rows), (a.rows, a.rows));
    assert_eq!(a.features.len(), b.features.len());
    for (x, y) in a.features.iter().zip(&b.features) {
        assert_eq!(x.name, y.name);
        assert!(x.psi.is_some(), "{}: a PSI to compare", x.name);
        assert_eq!((x.psi, x.flagged, x.fallback_rate), (y.psi, y.flagged, y.fallback_rate), "{}", x.name);
    }
    // The user part varies with the request, so how it is weighed shows in its PSI.
    let user_id = a.features.iter().find(|f| f.name == "user_id").unwrap();
    assert!(user_id.psi.unwrap() > 0.0);
}
