//! The feature-spec compiler: YAML text → `assemble::Spec::parse` (serde schema + compile), the
//! entry point `augur serve` loads `features/*.yaml` with.
//!
//! Asserts: a spec that compiles also assembles — a request with no rows at all (every feature
//! falls back) gives one tensor per declared input, each exactly `rows × width` long.
#![no_main]

use std::collections::HashMap;

use augur::assemble::encode::RequestView;
use augur::assemble::{Spec, TensorData, assemble};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else { return };
    let Ok(spec) = Spec::parse(yaml) else { return };
    let context = HashMap::new();
    let candidates = vec![("i1".to_owned(), HashMap::new()), ("i2".to_owned(), HashMap::new())];
    let out = assemble(&spec, RequestView::new("u1", &context, &candidates), None, &[None, None]);
    assert_eq!(out.rows, 2);
    assert_eq!(out.tensors.len(), spec.inputs.len());
    for (tensor, input) in out.tensors.iter().zip(&spec.inputs) {
        assert_eq!(tensor.width, input.width, "input `{}`", input.name);
        let len = match &tensor.data {
            TensorData::I64(v) => v.len(),
            TensorData::F32(v) => v.len(),
        };
        assert_eq!(len, 2 * input.width, "input `{}`", input.name);
    }
});
