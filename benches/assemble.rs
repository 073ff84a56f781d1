//! Feature assembly throughput (rows/s) for the ranking and search_suggest specs on the demo
//! catalogues: the CPU cost augur adds per candidate before inference.
//! `cargo bench --bench assemble` (groups `assemble` and `assemble_search_suggest`); the
//! `ranking_fresh_rows` lines assemble the same rows without their memoized item encoding.
//! Group `drift`: what observing one 100-candidate request costs the drift tracker.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use augur::assemble::encode::RequestView;
use augur::assemble::{Spec, assemble};
use augur::config::TableConfig;
use augur::fetch::{FeatureStore, MemoryStore};
use augur::fetch::{Row, Value};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = Spec::load(&root.join("features/ranking.yaml")).unwrap();
    let table = |name: &str, file: &str, key: &str| TableConfig {
        name: name.into(),
        path: root.join("demo").join(file),
        key: key.into(),
    };
    let store =
        MemoryStore::load(&[table("users", "users.csv", "user_id"), table("items", "items.csv", "item_id")]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let context: HashMap<String, Value> =
        [("hour".to_string(), Value::Int(20)), ("device".to_string(), Value::Str("ios".into()))].into();
    let mut group = c.benchmark_group("assemble");
    for candidates in [1usize, 100, 1000] {
        let items: Vec<String> = (0..candidates).map(|i| format!("i{}", i * 7 % 5000)).collect();
        let ids: Vec<&str> = items.iter().map(String::as_str).collect();
        let item_rows = runtime.block_on(store.get_rows("items", &ids, &spec.item_fields)).unwrap();
        let user_rows = runtime.block_on(store.get_rows("users", &["u42"], &spec.user_fields)).unwrap();
        let cands: Vec<(String, HashMap<String, Value>)> = items.iter().map(|i| (i.clone(), HashMap::new())).collect();
        group.throughput(Throughput::Elements(candidates as u64));
        group.bench_function(format!("ranking/{candidates}_candidates"), |b| {
            b.iter(|| {
                let view = RequestView::new("u42", &context, &cands);
                assemble(&spec, view, user_rows[0].as_ref(), &item_rows)
            })
        });
        // The same rows as a fresh Redis read hands them over (held by this request alone): no
        // memo, every field parsed and hashed per request. The ratio to the line above is what
        // the memoized item encoding saves, measured in one run.
        let fresh: Vec<Option<Arc<Row>>> = item_rows.iter().map(|r| r.as_deref().cloned().map(Arc::new)).collect();
        group.bench_function(format!("ranking_fresh_rows/{candidates}_candidates"), |b| {
            b.iter(|| {
                let view = RequestView::new("u42", &context, &cands);
                assemble(&spec, view, user_rows[0].as_ref(), &fresh)
            })
        });
    }
    group.finish();
}

/// Text-heavy: per candidate, tokens of the suggestion, two crosses and a prefix length; the
/// query's tokens and trigrams once per request.
fn bench_search_suggest(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = Spec::load(&root.join("features/search_suggest.yaml")).unwrap();
    let table = |name: &str, file: &str, key: &str| TableConfig {
        name: name.into(),
        path: root.join("demo").join(file),
        key: key.into(),
    };
    let store = MemoryStore::load(&[
        table("users", "users.csv", "user_id"),
        table("suggestions", "suggestions.csv", "suggestion_id"),
    ])
    .unwrap();
    let catalogue = std::fs::read_to_string(root.join("demo/suggestions.csv")).unwrap();
    let suggestions: Vec<&str> = catalogue.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let context: HashMap<String, Value> =
        [("query".to_string(), Value::Str("brévepa x".into())), ("device".to_string(), Value::Str("ios".into()))]
            .into();
    let mut group = c.benchmark_group("assemble_search_suggest");
    for candidates in [1usize, 10, 100, 1000] {
        let items: Vec<String> = (0..candidates).map(|i| suggestions[i * 7 % suggestions.len()].to_owned()).collect();
        let ids: Vec<&str> = items.iter().map(String::as_str).collect();
        let item_rows = runtime.block_on(store.get_rows("suggestions", &ids, &spec.item_fields)).unwrap();
        let user_rows = runtime.block_on(store.get_rows("users", &["u42"], &spec.user_fields)).unwrap();
        let cands: Vec<(String, HashMap<String, Value>)> = items.iter().map(|i| (i.clone(), HashMap::new())).collect();
        group.throughput(Throughput::Elements(candidates as u64));
        group.bench_function(format!("search_suggest/{candidates}_candidates"), |b| {
            b.iter(|| {
                let view = RequestView::new("u42", &context, &cands);
                assemble(&spec, view, user_rows[0].as_ref(), &item_rows)
            })
        });
    }
    group.finish();
}

/// What observing one request costs the drift tracker (`src/drift`): the ranking model's
/// committed reference, 100 assembled candidates, every request observed (`sample_every = 1`;
/// the default 1 in 16 divides it by 16 per request).
fn bench_drift(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = Spec::load(&root.join("features/ranking.yaml")).unwrap();
    let reference =
        augur::drift::reference::Reference::load(&root.join("models/ranking/1")).unwrap().expect("reference.json");
    let table = |name: &str, file: &str, key: &str| TableConfig {
        name: name.into(),
        path: root.join("demo").join(file),
        key: key.into(),
    };
    let store =
        MemoryStore::load(&[table("users", "users.csv", "user_id"), table("items", "items.csv", "item_id")]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let context: HashMap<String, Value> =
        [("hour".to_string(), Value::Int(20)), ("device".to_string(), Value::Str("ios".into()))].into();
    let items: Vec<String> = (0..100).map(|i| format!("i{}", i * 7 % 5000)).collect();
    let ids: Vec<&str> = items.iter().map(String::as_str).collect();
    let item_rows = runtime.block_on(store.get_rows("items", &ids, &spec.item_fields)).unwrap();
    let user_rows = runtime.block_on(store.get_rows("users", &["u42"], &spec.user_fields)).unwrap();
    let cands: Vec<(String, HashMap<String, Value>)> = items.iter().map(|i| (i.clone(), HashMap::new())).collect();
    let view = RequestView::new("u42", &context, &cands);
    let assembled = assemble(&spec, view, user_rows[0].as_ref(), &item_rows);
    let drift = augur::drift::Drift::default();
    drift.start(&augur::config::DriftConfig { sample_every: 1, ..Default::default() });
    let mut group = c.benchmark_group("drift");
    group.throughput(Throughput::Elements(100));
    group.bench_function("observe/100_candidates", |b| {
        b.iter(|| drift.observe(&spec, "ranking", 1, Some(&reference), &assembled.tensors, &assembled.fallbacks));
    });
    group.finish();
}

criterion_group!(benches, bench, bench_search_suggest, bench_drift);
criterion_main!(benches);
