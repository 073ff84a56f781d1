//! How every replica learns of a feature write: Redis pub/sub.
//!
//! The upsert script publishes `<event_time_ms> <stream> <table> <id>` on
//! `<namespace>:feature-updates` in the same atomic step as the write (only when it wrote
//! something). Each replica whose Redis store has a local cache subscribes to that channel and
//! invalidates the id (now, and again after the store's read bound, see
//! [`CachedStore::invalidate`]). Redis Cluster broadcasts classic `PUBLISH` to every node, so one
//! subscription to any node hears every write; the replica subscribes to the first seed URL that
//! answers.
//!
//! Pub/sub is fire-and-forget: a message published while a replica's subscription is down is
//! lost to it. So on every (re)subscription the replica drops its whole cache: what it missed is
//! gone, at the cost of one cold read per hot row. A subscription that hangs without closing (a
//! frozen Redis) is bounded by the cache's own TTL, as before feature streams existed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::metrics::{FreshnessLabels, StreamMetrics};
use super::target::invalidate_twice;
use crate::fetch::config::RedisConfig;
use crate::fetch::{CachedStore, RedisFeatureStore};

/// Pause before resubscribing after the subscription failed.
const RETRY: Duration = Duration::from_secs(1);

/// Subscribes and invalidates until `stop`.
pub async fn run(
    config: RedisConfig,
    cache: Arc<CachedStore<RedisFeatureStore>>,
    metrics: StreamMetrics,
    stop: CancellationToken,
) {
    let channel = super::target::channel(&config.namespace);
    let read_timeout = Duration::from_millis(config.timeout_ms);
    let mut subscribed_before = false;
    let mut url = 0;
    loop {
        let attempt = subscribe(&config, url, &channel);
        let pubsub = tokio::select! {
            () = stop.cancelled() => return,
            r = attempt => r,
        };
        let mut pubsub = match pubsub {
            Ok(pubsub) => pubsub,
            Err(e) => {
                tracing::warn!(url = %crate::validate::redact_url(&config.urls[url]), error = %e, "feature updates: subscribe failed; retrying");
                url = (url + 1) % config.urls.len();
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        if subscribed_before {
            // Writes published while the subscription was down were missed.
            cache.invalidate_all();
            metrics.resubscribes.inc();
            tracing::info!(%channel, "feature updates: resubscribed; local cache dropped");
        } else {
            tracing::info!(%channel, "feature updates: subscribed");
        }
        subscribed_before = true;
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                () = stop.cancelled() => return,
                m = messages.next() => m,
            };
            let Some(msg) = msg else {
                tracing::warn!(%channel, "feature updates: subscription closed; resubscribing");
                break;
            };
            let payload = String::from_utf8_lossy(msg.get_payload_bytes());
            let mut parts = payload.splitn(4, ' ');
            let (Some(time), Some(stream), Some(table), Some(id)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            invalidate_twice(&cache, table, id, read_timeout).await;
            if let Ok(event_time_ms) = time.parse::<i64>() {
                let labels = FreshnessLabels { stream: stream.to_owned(), path: "pubsub".to_owned() };
                metrics.freshness.get_or_create(&labels).observe(super::age_seconds(event_time_ms));
            }
        }
        drop(messages);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn subscribe(config: &RedisConfig, url: usize, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let url = config.urls[url].as_str();
    let client = match &config.tls_ca_path {
        Some(path) => {
            let root_cert = std::fs::read(path)
                .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "store.tls_ca_path", e.to_string())))?;
            redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) })?
        }
        None => redis::Client::open(url)?,
    };
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    };
    tokio::time::timeout(Duration::from_millis(config.connect_timeout_ms), connect)
        .await
        .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out"))))
}
