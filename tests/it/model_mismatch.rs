//! A model that does not match the feature spec fails start-up with a message naming the
//! feature and the input; a missing runtime or model directory names what is missing.

use augur::config::Config;

use crate::common;

fn config_with_spec(dir: &tempfile::TempDir, spec: &str) -> Config {
    let path = dir.path().join("ranking.yaml");
    std::fs::write(&path, spec).unwrap();
    let root = common::root();
    Config::from_toml(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n[[scenes]]\nname = \"ranking\"\nspec = \"{}\"\nmodel = \"{}\"\n",
        path.display(),
        root.join("models/ranking").display()
    ))
    .unwrap()
}

#[tokio::test]
async fn spec_model_mismatches_fail_startup_naming_feature_and_input() {
    common::require!(Ort);
    let original = std::fs::read_to_string(common::root().join("features/ranking.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // One more id column than the model was trained with.
    let extra = format!(
        "{original}  - name: extra\n    source: item.brand\n    type: string\n    transform: [hash: {{buckets: 8}}]\n    input: ids\n"
    );
    let err = augur::app::App::build(config_with_spec(&dir, &extra)).await.unwrap_err().to_string();
    assert!(err.contains("input `ids`") && err.contains("extra") && err.contains("14 columns"), "{err}");

    // The dense input declared as int64-producing features.
    let renamed = original
        .replace("name: dense, dtype: float32", "name: dense2, dtype: float32")
        .replace("input: dense\n", "input: dense2\n");
    let err = augur::app::App::build(config_with_spec(&dir, &renamed)).await.unwrap_err().to_string();
    assert!(
        err.contains("input `dense2`") && err.contains("user_activity") && err.contains("not a model input"),
        "{err}"
    );

    let wrong_output = original.replace("output: ctr", "output: prob");
    let err = augur::app::App::build(config_with_spec(&dir, &wrong_output)).await.unwrap_err().to_string();
    assert!(err.contains("output `prob`"), "{err}");
}

#[tokio::test]
async fn missing_model_directory_and_corrupt_model_are_named() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\n",
        dir.path().display()
    ))
    .unwrap();
    let err = augur::app::App::build(config.clone()).await.unwrap_err().to_string();
    assert!(err.contains("no numeric version directory"), "{err}");

    std::fs::create_dir_all(dir.path().join("3")).unwrap();
    std::fs::write(dir.path().join("3/model.onnx"), b"not a model").unwrap();
    let err = augur::app::App::build(config.clone()).await.unwrap_err().to_string();
    assert!(err.contains("3/model.onnx"), "{err}");
}
