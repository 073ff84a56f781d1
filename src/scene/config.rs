//! `[[scenes]]`: each served scene pairs a feature spec with a model repository directory.

use std::path::PathBuf;

use serde::Deserialize;

use crate::repository::config::SourceConfig;
use crate::rollout::config::RolloutConfig;
use crate::validate::{Invalid, invalid};

/// One served scene.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneConfig {
    /// Name callers put in `PredictRequest.scene`.
    pub name: String,
    /// The feature spec (YAML).
    pub spec: PathBuf,
    /// Model repository directory: `<model>/<version>/model.onnx`; the highest version is served.
    /// With a `source`, it is the local copy the bucket's versions are materialised into.
    pub model: PathBuf,
    /// Where new versions come from besides the directory itself: a bucket that an export to
    /// deploys ("export is deploy"). Absent: the directory is the only source.
    #[serde(default)]
    pub source: Option<SourceConfig>,
    /// Roll new model versions out as a canary that augur promotes or rolls back by itself on
    /// online quality (docs/quality.md#the-canary-that-decides). Needs sample logging with
    /// `samples.quality`. Absent: model.yaml's labels and `canary_weight` route, by hand.
    #[serde(default)]
    pub rollout: Option<RolloutConfig>,
}

/// Checks the scene list: at least one, names unique and non-empty, bucket sources valid.
pub fn validate(scenes: &[SceneConfig]) -> Result<(), Invalid> {
    if scenes.is_empty() {
        return Err(invalid("scenes", "must list at least one scene"));
    }
    for (i, scene) in scenes.iter().enumerate() {
        if scene.name.is_empty() {
            return Err(invalid(&format!("scenes[{i}].name"), "must not be empty"));
        }
        if scenes[..i].iter().any(|s| s.name == scene.name) {
            return Err(invalid(&format!("scenes[{i}].name"), &format!("`{}` is listed twice", scene.name)));
        }
        if let Some(rollout) = &scene.rollout {
            rollout.validate(&format!("scenes[{i}].rollout"))?;
        }
        if let Some(source) = &scene.source {
            source.validate(&format!("scenes[{i}].source"))?;
            if scene.model.file_name().is_none() {
                return Err(invalid(
                    &format!("scenes[{i}].model"),
                    "must end in a directory name: it names the model in the bucket",
                ));
            }
        }
    }
    Ok(())
}
