//! Wiring only: config → store → scenes → predictor. Used by `augur serve`, the export command
//! and the integration tests, so all three build exactly the same thing.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, StoreConfig};
use crate::fetch::{FeatureStore, LoadError, MemoryStore};
use crate::model::repository;
use crate::predict::Predictor;
use crate::scene::{Scene, SceneError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A store table could not be loaded.
    #[error("store: {0}")]
    Store(#[from] LoadError),
    /// A scene could not be loaded.
    #[error(transparent)]
    Scene(#[from] SceneError),
}

/// Builds the configured store: memory tables are loaded, Redis is connected (and wrapped in the
/// local cache when `store.cache` lists tables).
pub async fn store(config: &Config) -> Result<Arc<dyn FeatureStore>, StartError> {
    match &config.store {
        StoreConfig::Memory { tables } => Ok(Arc::new(MemoryStore::load(tables)?)),
        StoreConfig::Redis(redis) => {
            let store = crate::fetch::RedisFeatureStore::connect(redis).await?;
            if redis.cache.tables.values().any(|t| t.enabled) {
                Ok(Arc::new(crate::fetch::CachedStore::new(store, &redis.cache.tables)))
            } else {
                Ok(Arc::new(store))
            }
        }
    }
}

/// Builds store and scenes; scenes load one after another (each already uses the cores).
pub async fn build(config: &Config) -> Result<Arc<Predictor>, StartError> {
    let store = store(config).await?;
    let mut scenes = Vec::with_capacity(config.scenes.len());
    let poll = (config.model.poll_interval_ms > 0).then(|| Duration::from_millis(config.model.poll_interval_ms));
    for scene in &config.scenes {
        let scene = Scene::load(scene, &config.model).await?;
        repository::watch(Arc::clone(&scene.repo), config.model.watch, poll);
        scenes.push(scene);
    }
    Ok(Arc::new(Predictor::new(scenes, store, config.fetch.clone())))
}
