//! Spec compilation end to end: YAML text in, a compiled [`Spec`] or an error naming the feature
//! out. Cases go through [`Spec::parse`] rather than the job modules because most of them cross
//! several jobs (schema, compile, step checking), and that is how a spec is used.

use super::*;
use types::Level;

const BASE: &str = "scene: t\nentities: {user: {table: u, required: true}, item: {table: i}}\ninputs: [{name: ids, dtype: int64}, {name: dense, dtype: float32}]\noutput: ctr\nfeatures:\n";

fn parse(features: &str) -> Result<Spec, SpecError> {
    Spec::parse(&format!("{BASE}{features}"))
}

#[test]
fn every_spec_in_features_dir_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("features");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!spec.features.is_empty());
            seen += 1;
        }
    }
    assert!(seen >= 2, "expected the ranking and movielens specs");
}

#[test]
fn columns_and_id_ranges_are_assigned_in_order() {
    let spec = parse(
        "  - {name: u, source: user.$key, type: string, transform: [hash: {buckets: 10}], input: ids}\n  - {name: tags, source: item.tags, type: string_list, length: 3, transform: [hash: {buckets: 5}], input: ids}\n  - {name: price, source: item.price, type: float, transform: [log1p], input: dense}\n",
    )
    .unwrap();
    let ids = &spec.inputs[0];
    assert_eq!((ids.width, ids.vocab), (4, 11 + 6));
    assert_eq!((spec.features[1].offset, spec.features[1].id_base), (1, 11));
    assert_eq!(spec.inputs[1].width, 1);
    assert_eq!(spec.item_fields, vec!["tags".to_string(), "price".to_string()]);
}

#[test]
fn inconsistent_specs_name_the_feature() {
    let cases = [
        (
            "  - {name: c, source: item.c, type: string, input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
            "`c`",
        ),
        (
            "  - {name: c, source: item.c, type: float, transform: [log1p], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
            "`c` produces numbers",
        ),
        ("  - {name: c, source: item.c, type: int, transform: [hash: {buckets: 3}], input: nope}\n", "input `nope`"),
        (
            "  - {name: c, source: item.c, type: int, transform: [bucketize: {boundaries: [2, 1]}], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
            "strictly ascending",
        ),
        (
            "  - {name: c, source: item.c, type: int_list, transform: [hash: {buckets: 3}], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
            "needs `length`",
        ),
        (
            "  - {name: c, source: item.c, type: int, default: oops, transform: [hash: {buckets: 3}], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
            "default",
        ),
        (
            "  - {name: c, source: item.c, type: int, transform: [hash: {buckets: 3}], input: ids}\n",
            "input `dense` is fed by no feature",
        ),
    ];
    for (features, needle) in cases {
        let err = parse(features).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

const DENSE: &str = "  - {name: p, source: item.p, type: float, input: dense}\n";

#[test]
fn text_and_derived_features_compile_and_register_their_fields() {
    let spec = parse(
        "  - {name: q_tok, source: context.query, type: string, length: 4, transform: [tokens, hash: {buckets: 100}], input: ids}\n\
         \x20\x20- {name: q_tri, source: context.query, type: string, length: 6, transform: [char_ngrams: {n: 3}, hash: {buckets: 100}], input: ids}\n\
         \x20\x20- {name: q_x_cat, derive: {cross: [context.query, item.category]}, type: string, transform: [hash: {buckets: 50}], input: ids}\n\
         \x20\x20- {name: seg_x_dev, derive: {cross: [user.segment, context.device]}, transform: [hash: {buckets: 50}], input: ids}\n\
         \x20\x20- {name: age_x_item, derive: {cross: [user.age, item.$key]}, transform: [hash: {buckets: 50}], input: ids}\n\
         \x20\x20- {name: age, source: user.age, type: int, transform: [identity: {buckets: 99}], input: ids}\n\
         \x20\x20- {name: q_prefix, derive: {prefix_len: [context.query, item.$key]}, type: int, transform: [{clip: {min: 0, max: 10}}, {normalize: {mean: 2, std: 2}}], input: dense}\n"
    )
    .unwrap();
    let f = |n: &str| spec.features.iter().find(|f| f.name == n).unwrap();
    assert_eq!((f("q_tok").width, f("q_tri").width, f("q_x_cat").width), (4, 6, 1));
    assert_eq!(f("q_tri").offset, 4);
    assert_eq!(spec.inputs[0].width, 4 + 6 + 1 + 1 + 1 + 1);
    assert_eq!(spec.inputs[0].vocab, 101 + 101 + 51 * 3 + 100);
    // Per candidate when either source is an item; shared otherwise.
    assert_eq!(f("q_x_cat").entity, Entity::Item);
    assert_eq!(f("q_prefix").entity, Entity::Item);
    assert_eq!(f("seg_x_dev").entity, Entity::User);
    assert_eq!((f("q_x_cat").ty, f("q_prefix").ty), (FeatureType::String, FeatureType::Int));
    // Fields read only by derived features are fetched and validated as strings; a field
    // another feature declares int keeps its type.
    assert_eq!(spec.context_fields.get("query"), Some(&FeatureType::String));
    assert_eq!(spec.context_fields.get("device"), Some(&FeatureType::String));
    assert_eq!(spec.item_field_types.get("category"), Some(&FeatureType::String));
    assert_eq!(spec.item_fields, vec!["category".to_string()]);
    assert_eq!(spec.user_fields, vec!["segment".to_string(), "age".to_string()]);
    let age = &f("age_x_item").derive.as_ref().unwrap().sources[0];
    assert_eq!((age.entity, age.ty), (Entity::User, FeatureType::Int));
}

#[test]
fn text_and_derived_misuse_names_the_feature() {
    let tok = |transform: &str, extra: &str| {
        format!(
            "  - {{name: q, source: context.query, type: string{extra}, transform: {transform}, input: ids}}\n{DENSE}"
        )
    };
    let derive = |derive: &str, rest: &str| format!("  - {{name: d, derive: {{{derive}}}{rest}}}\n{DENSE}");
    let cases = [
        (tok("[tokens, hash: {buckets: 9}]", ""), "`q`: a tokenized string needs `length`"),
        (tok("[tokens]", ", length: 3"), "`q`: tokens must be followed by hash"),
        (
            tok("[char_ngrams: {n: 3}, identity: {buckets: 3}]", ", length: 3"),
            "`q`: char_ngrams must be followed by hash",
        ),
        (
            tok("[char_ngrams: {n: 0}, hash: {buckets: 9}]", ", length: 3"),
            "`q`: char_ngrams needs n between 1 and 8 (got 0)",
        ),
        (tok("[char_ngrams: {n: 9}, hash: {buckets: 9}]", ", length: 3"), "(got 9)"),
        (tok("[hash: {buckets: 9}]", ", length: 3"), "`q`: `length` only applies to list types"),
        (
            format!(
                "  - {{name: q, source: context.n, type: int, length: 2, transform: [tokens, hash: {{buckets: 9}}], input: ids}}\n{DENSE}"
            ),
            "`q`: tokens splits a string, but the feature is int",
        ),
        (
            format!(
                "  - {{name: q, source: context.q, type: string_list, length: 2, transform: [tokens, hash: {{buckets: 9}}], input: ids}}\n{DENSE}"
            ),
            "but the feature is string_list",
        ),
        (derive("cross: [context.q, item.c]", ", input: ids"), "`d`: a string must end in a hash transform"),
        (
            derive("cross: [context.q, item.c, user.s]", ", transform: [hash: {buckets: 9}], input: ids"),
            "`d`: derive cross takes exactly two sources, got 3",
        ),
        (
            derive("cross: [context.q, item.tags]", ", transform: [hash: {buckets: 9}], input: ids")
                + "  - {name: t, source: item.tags, type: string_list, length: 2, transform: [hash: {buckets: 9}], input: ids}\n",
            "`d`: derive cross reads `item.tags`, which another feature declares as string_list",
        ),
        (
            derive("prefix_len: [context.q, item.p]", ", transform: [identity: {buckets: 9}], input: ids"),
            "`d`: derive prefix_len reads `item.p`, which another feature declares as float",
        ),
        (
            derive("prefix_len: [context.q, item.$key]", ", type: string, transform: [hash: {buckets: 9}], input: ids"),
            "`d`: derive prefix_len produces int, but the feature declares type string",
        ),
        (
            derive("cross: [context.q, shop.c]", ", transform: [hash: {buckets: 9}], input: ids"),
            "`d`: derive cross source `shop.c`",
        ),
        (
            derive("cross: [context.$key, item.c]", ", transform: [hash: {buckets: 9}], input: ids"),
            "source `context.$key`",
        ),
        (
            derive("cross: [context.q, item.c]", ", length: 2, transform: [tokens, hash: {buckets: 9}], input: ids"),
            "`d`: a derived value is hashed whole; tokens does not apply",
        ),
        (
            format!(
                "  - {{name: d, source: item.c, derive: {{cross: [context.q, item.c]}}, type: string, transform: [hash: {{buckets: 9}}], input: ids}}\n{DENSE}"
            ),
            "`d` has both `source` and `derive`",
        ),
        (format!("  - {{name: d, type: string, input: ids}}\n{DENSE}"), "`d` needs a `source` or a `derive`"),
        (format!("  - {{name: d, source: item.c, input: ids}}\n{DENSE}"), "`d` needs a `type`"),
    ];
    for (features, needle) in cases {
        let err = parse(&features).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

const SPLIT: &str = "scene: t\nentities: {user: {table: u}, item: {table: i}}\ninputs: [{name: ids, dtype: int64}, {name: dense, dtype: float32}, {name: user_ids, dtype: int64, level: request, part_of: ids}]\nrequest_index: request_index\noutput: ctr\nfeatures:\n";

#[test]
fn request_level_inputs_share_the_id_space_and_store_as_the_flat_layout() {
    let features = "  - {name: u, source: user.$key, type: string, transform: [hash: {buckets: 10}], input: user_ids}\n\
        \x20\x20- {name: i, source: item.$key, type: string, transform: [hash: {buckets: 5}], input: ids}\n\
        \x20\x20- {name: h, source: context.hour, type: int, transform: [identity: {buckets: 24}], input: user_ids}\n\
        \x20\x20- {name: x, derive: {cross: [user.segment, context.device]}, transform: [hash: {buckets: 7}], input: user_ids}\n\
        \x20\x20- {name: p, source: item.p, type: float, input: dense}\n";
    let split = Spec::parse(&format!("{SPLIT}{features}")).unwrap();
    let flat = parse(&features.replace("input: user_ids", "input: ids")).unwrap();
    // Same ids as the flat spec: one id space across `ids` and `user_ids`.
    let bases = |s: &Spec| s.features.iter().map(|f| f.id_base).collect::<Vec<_>>();
    assert_eq!(bases(&split), bases(&flat));
    assert_eq!((split.inputs[0].width, split.inputs[2].width), (1, 3));
    assert_eq!((split.inputs[0].vocab, split.inputs[2].vocab), (flat.inputs[0].vocab, flat.inputs[0].vocab));
    assert_eq!((split.inputs[2].level, split.inputs[2].part_of), (Level::Request, Some(0)));
    // Stored: `ids` in declaration order (u, i, h, x), `dense`; the request-level input is not
    // stored on its own.
    let names: Vec<&str> = split.stored.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ids", "dense"]);
    assert_eq!(split.stored[0].columns, vec![(2, 0), (0, 0), (2, 1), (2, 2)]);
    assert_eq!(split.stored_places(), flat.features.iter().map(|f| (f.input, f.offset)).collect::<Vec<_>>());
    assert_eq!(split.request_index.as_deref(), Some("request_index"));
    // A flat spec stores its inputs as they are.
    assert_eq!(flat.stored[0].columns, vec![(0, 0), (0, 1), (0, 2), (0, 3)]);
}

#[test]
fn request_level_misuse_names_the_feature_or_input() {
    let ok_item = "  - {name: i, source: item.$key, type: string, transform: [hash: {buckets: 5}], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n";
    let cases = [
        (
            format!(
                "{SPLIT}  - {{name: cat, source: item.category, type: string, transform: [hash: {{buckets: 5}}], input: user_ids}}\n{ok_item}"
            ),
            "feature `cat` reads item.category, but input `user_ids` is request-level",
        ),
        (
            format!(
                "{SPLIT}  - {{name: k, source: item.$key, type: string, transform: [hash: {{buckets: 5}}], input: user_ids}}\n{ok_item}"
            ),
            "feature `k` reads item.$key",
        ),
        (
            format!(
                "{SPLIT}  - {{name: q, derive: {{cross: [context.q, item.c]}}, transform: [hash: {{buckets: 5}}], input: user_ids}}\n{ok_item}"
            ),
            "feature `q` reads item.c",
        ),
        (
            format!(
                "{}  - {{name: u, source: user.$key, type: string, transform: [hash: {{buckets: 5}}], input: user_ids}}\n{ok_item}",
                SPLIT.replace("request_index: request_index\n", "")
            ),
            "request-level inputs need `request_index",
        ),
        (
            format!("{}{ok_item}", BASE.replace("output: ctr", "request_index: r\noutput: ctr")),
            "`request_index: r` is set but no input is `level: request`",
        ),
        (
            format!(
                "{}  - {{name: u, source: user.$key, type: string, transform: [hash: {{buckets: 5}}], input: user_ids}}\n{ok_item}",
                SPLIT.replace("part_of: ids", "part_of: dense")
            ),
            "input `user_ids` is part_of `dense`, which must be a per-row input of the same dtype",
        ),
        (
            format!(
                "{}  - {{name: u, source: user.$key, type: string, transform: [hash: {{buckets: 5}}], input: user_ids}}\n{ok_item}",
                SPLIT.replace("part_of: ids", "part_of: nope")
            ),
            "part_of `nope`, which is not declared",
        ),
        (
            format!(
                "{}  - {{name: u, source: user.$key, type: string, transform: [hash: {{buckets: 5}}], input: user_ids}}\n{ok_item}",
                SPLIT.replace("request_index: request_index", "request_index: ids")
            ),
            "clashes with an input",
        ),
    ];
    for (yaml, needle) in cases {
        let err = Spec::parse(&yaml).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}
