//! The Redis row decoder: a RESP reply (as the connection hands it over) → `redis::Value` →
//! `fetch::redis::row_from_reply` (one HMGET reply → a positional row) → assembly with the
//! ranking spec, which parses the stored text into the declared types (ints, floats, `|` lists).
//!
//! Asserts: a row holds exactly the fields asked for; assembly of the row as user and item row
//! gives fixed-width tensors, and every float reaching the model is finite (text that does not
//! parse, or parses to a non-finite value, falls back).
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use augur::assemble::encode::RequestView;
use augur::assemble::{Spec, TensorData, assemble};
use augur::fetch::redis::row_from_reply;
use libfuzzer_sys::fuzz_target;

static SPEC: LazyLock<Spec> =
    LazyLock::new(|| Spec::parse(include_str!("../../features/ranking.yaml")).expect("features/ranking.yaml compiles"));
static USER_FIELDS: LazyLock<Arc<[String]>> = LazyLock::new(|| SPEC.user_fields.clone().into());
static ITEM_FIELDS: LazyLock<Arc<[String]>> = LazyLock::new(|| SPEC.item_fields.clone().into());

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = redis::parse_redis_value(data) else { return };
    let user = row_from_reply(&USER_FIELDS, reply.clone());
    let item = row_from_reply(&ITEM_FIELDS, reply);
    for (row, fields) in [(&user, &*USER_FIELDS), (&item, &*ITEM_FIELDS)] {
        if let Some(row) = row {
            assert!(row.len() <= fields.len());
            assert!(row.iter().all(|(name, _)| fields.iter().any(|f| f == name)));
        }
    }
    let context = HashMap::new();
    let candidates = vec![("i1".to_owned(), HashMap::new())];
    let out = assemble(&SPEC, RequestView::new("u1", &context, &candidates), user.as_ref(), &[item]);
    for (tensor, input) in out.tensors.iter().zip(&SPEC.inputs) {
        match &tensor.data {
            TensorData::I64(v) => assert_eq!(v.len(), input.width),
            TensorData::F32(v) => {
                assert_eq!(v.len(), input.width);
                assert!(v.iter().all(|x| x.is_finite()), "input `{}`: {v:?}", input.name);
            }
        }
    }
});
