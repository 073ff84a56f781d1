//! One copy of the weights per model version: sessions built on [`SharedWeights`] score exactly
//! what a plain session scores, a model with nothing large enough to share still opens, and a
//! file that is not an ONNX model is a `ModelError::Load`, not a panic. Real ONNX Runtime on the
//! bundled ranking model (its initializers are under the service's 1 MiB threshold, so the tests
//! that exercise sharing lower it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use augur::assemble::{Spec, Tensor, TensorData};
use augur::model::onnx::{self, OnnxLoader, SessionOptions};
use augur::model::weights::{SHARE_MIN_BYTES, SharedWeights};
use augur::model::{ModelError, ModelLoader};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common;

fn ranking_model() -> PathBuf {
    common::root().join("models/ranking/1/model.onnx")
}

fn spec() -> Spec {
    Spec::load(&common::root().join("features/ranking.yaml")).unwrap()
}

fn options() -> SessionOptions {
    SessionOptions { intra_op_threads: 1, library: None }
}

/// `rows` random rows for the ranking model's inputs (`ids` [N,13] below its vocabulary of
/// 21310, `dense` [N,2]).
fn inputs(rows: usize, seed: u64) -> Vec<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    vec![
        Tensor {
            name: "ids".into(),
            width: 13,
            data: TensorData::I64((0..rows * 13).map(|_| rng.random_range(0..21_310)).collect()),
        },
        Tensor {
            name: "dense".into(),
            width: 2,
            data: TensorData::F32((0..rows * 2).map(|_| rng.random_range(-1.0..1.0)).collect()),
        },
    ]
}

fn bits(scores: &[f32]) -> Vec<u32> {
    scores.iter().map(|s| s.to_bits()).collect()
}

#[test]
fn sessions_on_shared_weights_score_bit_identically_to_a_plain_session() {
    common::require!(Ort);
    let path = ranking_model();
    // 1 KiB: the embedding table, the first-order weights and the MLP's first two weight
    // matrices (which ORT prepacks, so the shared container is exercised too).
    let shared = SharedWeights::read(&path, &options(), 1024).unwrap();
    assert_eq!(shared.len(), 4, "initializers of at least 1 KiB in the ranking model");
    assert!(shared.bytes() > 700_000);
    let mut plain = onnx::open_session(&path, &options()).unwrap();
    let mut sessions: Vec<_> =
        (0..3).map(|_| onnx::open_session_with(&path, &options(), Some(&shared)).unwrap()).collect();
    // The sessions keep the values alive on their own.
    drop(shared);
    for (seed, rows) in [(1, 1), (2, 7), (3, 256)] {
        let tensors = inputs(rows, seed);
        let expected = onnx::run(&mut plain, "ctr", &tensors).unwrap();
        assert_eq!(expected.len(), rows);
        for session in &mut sessions {
            assert_eq!(bits(&onnx::run(session, "ctr", &tensors).unwrap()), bits(&expected), "{rows} rows");
        }
    }
}

#[test]
fn sessions_score_with_the_shared_values_not_the_files_own() {
    common::require!(Ort);
    // Model B: the ranking model with bytes in the middle of its embedding table changed. Built
    // on the weights read from the original A, B's sessions must score exactly as A does: ORT
    // used the shared values in place of the file's.
    let dir = tempfile::tempdir().unwrap();
    let original = ranking_model();
    let mut bytes = std::fs::read(&original).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 65_536] {
        *byte ^= 0x01;
    }
    let perturbed = write(dir.path(), "perturbed.onnx", &bytes);
    let shared = SharedWeights::read(&original, &options(), 1024).unwrap();
    let tensors = inputs(256, 11);
    let a = bits(&onnx::run(&mut onnx::open_session(&original, &options()).unwrap(), "ctr", &tensors).unwrap());
    let b = bits(&onnx::run(&mut onnx::open_session(&perturbed, &options()).unwrap(), "ctr", &tensors).unwrap());
    assert_ne!(a, b, "the perturbation changes the scores");
    let mut on_shared = onnx::open_session_with(&perturbed, &options(), Some(&shared)).unwrap();
    assert_eq!(bits(&onnx::run(&mut on_shared, "ctr", &tensors).unwrap()), a);
}

#[test]
fn every_initializer_shared_still_scores_the_same() {
    common::require!(Ort);
    // Threshold 1 byte: the small int64 constants (a Reshape's shape, a ReduceSum's axes) too.
    let path = ranking_model();
    let shared = SharedWeights::read(&path, &options(), 1).unwrap();
    assert!(shared.len() >= 10, "{} initializers shared", shared.len());
    let mut plain = onnx::open_session(&path, &options()).unwrap();
    let mut session = onnx::open_session_with(&path, &options(), Some(&shared)).unwrap();
    let tensors = inputs(64, 9);
    assert_eq!(
        bits(&onnx::run(&mut session, "ctr", &tensors).unwrap()),
        bits(&onnx::run(&mut plain, "ctr", &tensors).unwrap())
    );
}

#[test]
fn the_loaders_opener_gives_checked_models_that_score_like_open() {
    common::require!(Ort);
    let loader = Arc::new(OnnxLoader::new(options()));
    let spec = Arc::new(spec());
    let path = ranking_model();
    // The bundled model has nothing of 1 MiB: the opener shares nothing and still opens.
    assert!(SharedWeights::read(&path, &options(), SHARE_MIN_BYTES).unwrap().is_empty());
    let mut single = loader.open(&path, &spec).unwrap();
    let open = Arc::clone(&loader).opener(&path, Arc::clone(&spec)).unwrap();
    let mut first = open().unwrap();
    let mut second = open().unwrap();
    let tensors = inputs(32, 5);
    let expected = bits(&single.run(&tensors).unwrap());
    assert_eq!(bits(&first.run(&tensors).unwrap()), expected);
    assert_eq!(bits(&second.run(&tensors).unwrap()), expected);
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_truncated_or_corrupt_file_is_a_load_error() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read(ranking_model()).unwrap();
    let truncated = write(dir.path(), "truncated.onnx", &model[..model.len() / 2]);
    let garbage = write(dir.path(), "garbage.onnx", b"\xff\xff\xff\xff this is not a protobuf");
    let missing = dir.path().join("missing.onnx");
    let loader = Arc::new(OnnxLoader::new(options()));
    let spec = Arc::new(spec());
    for path in [&truncated, &garbage, &missing] {
        let error = SharedWeights::read(path, &options(), 1024).unwrap_err();
        assert!(matches!(error, ModelError::Load { .. }), "{}: {error:?}", path.display());
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        let error = Arc::clone(&loader).opener(path, Arc::clone(&spec)).err().expect("opener refuses it");
        assert!(matches!(error, ModelError::Load { .. }), "{}: {error:?}", path.display());
    }
}
