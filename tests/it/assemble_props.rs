//! Property: whatever the store and the request hold, assembly never panics, every tensor has
//! exactly rows × width values, every id lies in its input's vocabulary and every float is finite;
//! and rows kept by a store (memoized item encoding) assemble to exactly what fresh rows do.

use std::collections::HashMap;
use std::sync::Arc;

use augur::assemble::encode::RequestView;
use augur::assemble::{Spec, TensorData, assemble};
use augur::fetch::Row;
use augur::fetch::Value;
use proptest::prelude::*;

fn any_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![Just(String::new()), "[a-z0-9|.\\- ]{0,12}", any::<f64>().prop_map(|x| x.to_string())];
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(1e300)].prop_map(Value::Float),
        text.clone().prop_map(Value::Str),
        prop::collection::vec(any::<i64>(), 0..6).prop_map(Value::IntList),
        prop::collection::vec(any::<f64>(), 0..6).prop_map(Value::FloatList),
        prop::collection::vec(text, 0..6).prop_map(Value::StrList),
    ]
}

fn any_row(fields: &'static [&'static str]) -> impl Strategy<Value = Option<Row>> {
    prop::option::of(
        prop::collection::hash_map(prop::sample::select(fields), any_value(), 0..fields.len())
            .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Row>()),
    )
}

const USER: &[&str] = &["age", "gender", "segment", "activity"];
const ITEM: &[&str] = &["category", "brand", "price", "tags"];
const CONTEXT: &[&str] = &["hour", "device"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn assembly_is_total_and_in_range(
        user in any_row(USER),
        items in prop::collection::vec(any_row(ITEM), 1..8),
        context in any_row(CONTEXT),
        user_id in "[a-z0-9]{0,8}",
    ) {
        let spec = Spec::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("features/ranking.yaml")).unwrap();
        let context: HashMap<String, Value> = context.unwrap_or_default().into_iter().collect();
        let candidates: Vec<(String, HashMap<String, Value>)> =
            (0..items.len()).map(|i| (format!("i{i}"), HashMap::new())).collect();
        let rows: Vec<Option<Arc<Row>>> = items.into_iter().map(|r| r.map(Arc::new)).collect();
        let user = user.map(Arc::new);
        let view = RequestView::new(&user_id, &context, &candidates);
        let out = assemble(&spec, view, user.as_ref(), &rows);
        prop_assert_eq!(out.rows, rows.len());
        // Rows a store keeps (a second `Arc`) are encoded once into their memo; the first
        // request builds it, the second reads it: both must equal the row-by-row encoding.
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
                TensorData::I64(v) => {
                    prop_assert_eq!(v.len(), rows.len() * input.width);
                    prop_assert!(v.iter().all(|id| (0..input.vocab as i64).contains(id)), "id out of range");
                }
                TensorData::F32(v) => {
                    prop_assert_eq!(v.len(), rows.len() * input.width);
                    prop_assert!(v.iter().all(|x| x.is_finite()), "non-finite dense value");
                }
            }
        }
    }
}
