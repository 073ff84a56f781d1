//! The routing table of one repository: which versions are loaded, which one is `stable`, which
//! one is `canary` and for what share of users. Swapped as a whole, so a request always sees one
//! consistent table.

use std::collections::BTreeMap;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::Version;
use super::settings::Settings;

/// Why a request could not be routed to a version.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No version is loaded (all rejected or the directory is empty).
    #[error("model `{model}` has no loaded version")]
    NoVersion {
        /// Repository name.
        model: String,
    },
    /// `model.reload = release_first` freed the version being replaced and the next one is still
    /// loading: another replica should take the call.
    #[error(
        "scene `{scene}`: model `{model}` is being replaced and serves nothing until the new version is warm (model.reload = release_first); retry on another replica"
    )]
    Releasing {
        /// The scene.
        scene: String,
        /// Repository name.
        model: String,
    },
    /// The caller pinned a version or label that is not loaded.
    #[error("model_version: `{pinned}` is not loaded for model `{model}` (loaded: {loaded})")]
    NotLoaded {
        /// Repository name.
        model: String,
        /// What the caller asked for.
        pinned: String,
        /// What is loaded.
        loaded: String,
    },
}

/// The routing table, swapped atomically as a whole.
#[derive(Debug, Default)]
pub struct Routing {
    /// Loaded versions.
    pub versions: BTreeMap<u64, Arc<Version>>,
    /// Version behind the `stable` label.
    pub stable: Option<u64>,
    /// Version behind `canary` and its share of users.
    pub canary: Option<(u64, f64)>,
    /// Set while a release-first reload has freed what served and loads what comes next: an empty
    /// table then means "come back soon", not "nothing to serve".
    pub releasing: bool,
}

impl Routing {
    /// The table for `versions` under `settings`, with a run-time canary `override_` (from
    /// `ModelAdmin.SetCanary`) taking precedence while its version is loaded.
    pub fn new(versions: BTreeMap<u64, Arc<Version>>, settings: &Settings, override_: Option<(u64, f64)>) -> Self {
        let loaded = |v: &u64| versions.contains_key(v);
        let stable = settings.labels.stable.filter(loaded).or_else(|| versions.keys().next_back().copied());
        let canary = match override_ {
            Some((v, w)) if loaded(&v) => Some((v, w)),
            _ => settings
                .labels
                .canary
                .filter(|v| loaded(v) && Some(*v) != stable && settings.canary_weight > 0.0)
                .map(|v| (v, settings.canary_weight.clamp(0.0, 1.0))),
        };
        Routing { versions, stable, canary, releasing: false }
    }

    /// The table under a rollout policy: `stable` and `canary` as [`super::rollout::plan`] chose
    /// them (each only if loaded), the canary at `share`; a run-time override still wins.
    pub fn planned(
        versions: BTreeMap<u64, Arc<Version>>,
        stable: Option<u64>,
        canary: Option<u64>,
        share: f64,
        override_: Option<(u64, f64)>,
    ) -> Self {
        let loaded = |v: &u64| versions.contains_key(v);
        let stable = stable.filter(loaded).or_else(|| versions.keys().next_back().copied());
        let canary = match override_ {
            Some((v, w)) if loaded(&v) => Some((v, w)),
            _ => canary.filter(|v| loaded(v) && Some(*v) != stable && share > 0.0).map(|v| (v, share.clamp(0.0, 1.0))),
        };
        Routing { versions, stable, canary, releasing: false }
    }

    /// Picks the version for a request: `pinned` ("", "stable", "canary" or a number), else the
    /// canary for its share of users (sticky by hashed user id), else stable.
    pub fn route(&self, model: &str, user_id: &str, pinned: &str) -> Result<Arc<Version>, RouteError> {
        let not_loaded = || RouteError::NotLoaded {
            model: model.to_owned(),
            pinned: pinned.to_owned(),
            loaded: self.versions.keys().map(u64::to_string).collect::<Vec<_>>().join(", "),
        };
        let number = match pinned {
            "" => match self.canary {
                Some((canary, weight)) if user_bucket(user_id) < weight => Some(canary),
                _ => self.stable,
            },
            "stable" => Some(self.stable.ok_or_else(not_loaded)?),
            "canary" => Some(self.canary.ok_or_else(not_loaded)?.0),
            other => Some(other.parse::<u64>().map_err(|_| not_loaded())?),
        };
        let number = number.ok_or_else(|| RouteError::NoVersion { model: model.to_owned() })?;
        self.versions.get(&number).cloned().ok_or_else(not_loaded)
    }
}

/// The user's sticky position in [0, 1) for canary routing.
fn user_bucket(user_id: &str) -> f64 {
    (xxh3_64(user_id.as_bytes()) % 10_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_buckets_are_sticky_and_spread() {
        assert_eq!(user_bucket("u1"), user_bucket("u1"));
        let below = (0..10_000).filter(|i| user_bucket(&format!("u{i}")) < 0.1).count();
        assert!((800..1200).contains(&below), "10% canary got {below} of 10000 users");
    }
}
