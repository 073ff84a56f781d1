//! Property: the search_suggest spec (tokenizers, char n-grams, crosses, prefix length) assembles
//! any text — empty, multi-byte, control characters, huge — and any stored value without
//! panicking, at a fixed width, with every id inside its own feature's range and every float
//! finite; the prefix length never exceeds the query's length.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use augur::assemble::encode::RequestView;
use augur::assemble::spec::Feature;
use augur::assemble::{Spec, TensorData, assemble};
use augur::fetch::Row;
use augur::fetch::Value;
use proptest::prelude::*;

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zé ü#\\-]{0,16}",
        "\\PC{0,24}",
        any::<String>(),
        "[日本語ÜßİΣ🔥\u{1f}\u{307} ]{0,40}",
        "[a-z]{200,400}",
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(1e300)].prop_map(Value::Float),
        any_text().prop_map(Value::Str),
        prop::collection::vec(any::<i64>(), 0..4).prop_map(Value::IntList),
        prop::collection::vec(any_text(), 0..4).prop_map(Value::StrList),
    ]
}

fn any_row(fields: &'static [&'static str]) -> impl Strategy<Value = Option<Row>> {
    prop::option::of(
        prop::collection::hash_map(prop::sample::select(fields), any_value(), 0..=fields.len())
            .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Row>()),
    )
}

fn spec() -> Spec {
    Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("features/search_suggest.yaml")).unwrap()
}

/// Ids of `feature` must lie in `[id_base, next feature's id_base)`.
fn id_range(spec: &Spec, feature: &Feature) -> std::ops::Range<i64> {
    let end = spec
        .features
        .iter()
        .filter(|f| f.input == feature.input && f.id_base > feature.id_base)
        .map(|f| f.id_base)
        .min()
        .unwrap_or(spec.inputs[feature.input].vocab as i64);
    feature.id_base..end
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn search_suggest_assembly_is_total_and_in_range(
        query in prop::option::of(any_value()),
        device in prop::option::of(any_text()),
        user in any_row(&["segment"]),
        items in prop::collection::vec((any_text(), any_row(&["category", "popularity"])), 1..6),
        user_id in "[a-z0-9]{0,6}",
    ) {
        let spec = spec();
        let mut context = HashMap::new();
        if let Some(query) = &query {
            context.insert("query".to_string(), query.clone());
        }
        if let Some(device) = device {
            context.insert("device".to_string(), Value::Str(device));
        }
        let candidates: Vec<(String, HashMap<String, Value>)> =
            items.iter().map(|(id, _)| (id.clone(), HashMap::new())).collect();
        let rows: Vec<Option<Arc<Row>>> = items.into_iter().map(|(_, r)| r.map(Arc::new)).collect();
        let user = user.map(Arc::new);
        let view = RequestView::new(&user_id, &context, &candidates);
        let out = assemble(&spec, view, user.as_ref(), &rows);
        prop_assert_eq!(out.rows, rows.len());
        // Deterministic: the same request assembles to the same tensors.
        let again = assemble(&spec, RequestView::new(&user_id, &context, &candidates), user.as_ref(), &rows);
        prop_assert_eq!(&again.tensors, &out.tensors);
        // Rows a store keeps are encoded once into their memo (built by the first request, read
        // by the second): the same tensors and fallbacks as fresh rows.
        let kept: Vec<Option<Arc<Row>>> = rows.iter().map(|r| r.as_deref().cloned().map(Arc::new)).collect();
        let store = kept.clone();
        for _ in 0..2 {
            let memoized = assemble(&spec, RequestView::new(&user_id, &context, &candidates), user.as_ref(), &kept);
            prop_assert_eq!(&memoized.tensors, &out.tensors);
            prop_assert_eq!(&memoized.fallbacks, &out.fallbacks);
        }
        drop(store);
        for (tensor, input) in out.tensors.iter().zip(&spec.inputs) {
            match &tensor.data {
                TensorData::I64(v) => prop_assert_eq!(v.len(), rows.len() * input.width),
                TensorData::F32(v) => {
                    prop_assert_eq!(v.len(), rows.len() * input.width);
                    prop_assert!(v.iter().all(|x| x.is_finite()), "non-finite dense value");
                }
            }
        }
        for feature in &spec.features {
            let tensor = &out.tensors[feature.input];
            for row in 0..out.rows {
                let cols = row * tensor.width + feature.offset..row * tensor.width + feature.offset + feature.width;
                match &tensor.data {
                    TensorData::I64(v) => {
                        let range = id_range(&spec, feature);
                        prop_assert!(v[cols].iter().all(|id| range.contains(id)), "{} out of {:?}", feature.name, range);
                    }
                    TensorData::F32(v) if feature.name == "query_prefix_len" => {
                        // (clip(n, 0, 12) - 2.5) / 3, n <= the query's length in characters.
                        let shared = (f64::from(v[cols.start]) * 3.0 + 2.5).round() as usize;
                        let typed = match &query {
                            Some(Value::Str(q)) => q.chars().flat_map(char::to_lowercase).count(),
                            Some(Value::Int(i)) => i.to_string().len(),
                            _ => 0,
                        };
                        prop_assert!(shared <= typed.min(12), "prefix {shared} of a {typed}-char query");
                    }
                    TensorData::F32(_) => {}
                }
            }
        }
    }
}
