//! Where updates land: the service's store, written with event-time last-writer-wins, and the
//! local cache in front of it invalidated.
//!
//! - **In memory**: [`MemoryStore::upsert`] compares, per row and field, the update's event time
//!   with the one of the value held, under the store's write lock.
//! - **Redis / Redis Cluster**: one `EVAL` of [`UPSERT_LUA`] per update, all of a batch in one
//!   pipeline (one command per key on a cluster, routed by its key's slot and run concurrently,
//!   so a row updated twice in one batch is written in rounds that keep batch order). The script
//!   keeps each field's event time in the same hash under `@t:<field>` (serving reads fields with
//!   `HMGET`, so these are never seen; one hash keeps the script single-key, hence cluster-safe)
//!   and writes a field
//!   only when the update is strictly newer: replays and late duplicates change nothing. When it
//!   wrote anything it `PUBLISH`es `<event_time_ms> <stream> <table> <id>` on
//!   `<namespace>:feature-updates` in the same atomic step, which is how every replica's cache
//!   learns of the write ([`super::invalidate`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::update::{Update, value_text};
use crate::fetch::{CachedStore, FetchError, MemoryStore, RedisFeatureStore, Upserted};

/// Upsert of one row's fields with per-field event times; PUBLISH when anything was written.
/// KEYS[1] = row; ARGV = event time, channel, message, then field/value pairs. Returns the count
/// of fields written.
pub const UPSERT_LUA: &str = r"
local t = tonumber(ARGV[1])
local written = 0
for i = 4, #ARGV, 2 do
  local stamp = '@t:' .. ARGV[i]
  local held = tonumber(redis.call('HGET', KEYS[1], stamp))
  if held == nil or held < t then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1], stamp, ARGV[1])
    written = written + 1
  end
end
if written > 0 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return written
";

/// Bound on writing one batch to Redis: far above a healthy server's time for it. A write that
/// fails or times out is retried (the offsets wait).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store a stream writes.
#[derive(Clone, Debug)]
pub enum Target {
    /// The in-memory store the scenes read (each replica has its own).
    Memory(Arc<MemoryStore>),
    /// Redis or Redis Cluster, shared by the replicas.
    Redis(RedisTarget),
}

/// Redis and this replica's cache in front of it.
#[derive(Clone, Debug)]
pub struct RedisTarget {
    /// The connection the service reads with (writes share it).
    pub store: RedisFeatureStore,
    /// The local cache the scenes read through, when `store.cache` lists tables.
    pub cache: Option<Arc<CachedStore<RedisFeatureStore>>>,
    /// The pub/sub channel of writes: `<namespace>:feature-updates`.
    pub channel: String,
    /// The store's read bound: a cache load that began before a write ends within it, so a
    /// second invalidation after it removes anything such a load put back.
    pub read_timeout: Duration,
}

/// The pub/sub channel of feature writes under `namespace`.
pub fn channel(namespace: &str) -> String {
    format!("{namespace}:feature-updates")
}

/// What became of one update.
pub type Outcome = Result<Upserted, String>;

// === impl Target ===

impl Target {
    /// Writes `batch` ((table, update) pairs) and invalidates the local cache for what changed.
    /// `Err` when the store as a whole failed (nothing is known to be written: retry all); per
    /// update, `Err` when the store refused that update alone (e.g. the key holds another type).
    pub async fn apply(&self, stream: &str, batch: &[(&str, &Update)]) -> Result<Vec<Outcome>, FetchError> {
        match self {
            Target::Memory(store) => Ok(batch
                .iter()
                .map(|(table, u)| match store.upsert(table, &u.entity_id, u.event_time_ms, u.features.clone()) {
                    done if done.refused > 0 => Err(format!(
                        "table `{table}` holds store.max_streamed_rows rows added by streams: new id refused"
                    )),
                    done => Ok(done),
                })
                .collect()),
            Target::Redis(redis) => redis.apply(stream, batch).await,
        }
    }
}

// === impl RedisTarget ===

impl RedisTarget {
    async fn apply(&self, stream: &str, batch: &[(&str, &Update)]) -> Result<Vec<Outcome>, FetchError> {
        let keys: Vec<String> = batch.iter().map(|(table, u)| self.store.key(table, &u.entity_id)).collect();
        let command = |i: usize| {
            let (table, u) = batch[i];
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(UPSERT_LUA)
                .arg(1)
                .arg(&keys[i])
                .arg(u.event_time_ms)
                .arg(&self.channel)
                .arg(format!("{} {stream} {table} {}", u.event_time_ms, u.entity_id));
            for (name, value) in &u.features {
                cmd.arg(name).arg(value_text(value));
            }
            cmd
        };
        // One call's commands run concurrently on a cluster (one per key, in no set order), so
        // two updates of one row in a batch could run in reverse: the final value is the same
        // (last writer by event time), but the older one would be written for a moment and
        // counted `applied`. Each round holds a row at most once and rounds run in batch order;
        // a batch without a repeated row is one round, as before.
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        let round_of: Vec<usize> = keys
            .iter()
            .map(|k| {
                let n = seen.entry(k.as_str()).or_insert(0);
                *n += 1;
                *n - 1
            })
            .collect();
        let mut replies: Vec<Option<redis::RedisResult<redis::Value>>> = (0..batch.len()).map(|_| None).collect();
        for round in 0..seen.values().max().copied().unwrap_or(0) {
            let members: Vec<usize> = (0..batch.len()).filter(|&i| round_of[i] == round).collect();
            let cmds = members.iter().map(|&i| command(i)).collect();
            for (i, reply) in members.into_iter().zip(self.store.run(cmds, WRITE_TIMEOUT).await?) {
                replies[i] = Some(reply);
            }
        }
        let replies = replies.into_iter().map(|r| r.expect("every update is in one round"));
        let mut outcomes = Vec::with_capacity(batch.len());
        for ((table, u), reply) in batch.iter().zip(replies) {
            outcomes.push(match reply {
                Ok(redis::Value::Int(n)) => {
                    let applied = n.max(0) as usize;
                    if applied > 0 {
                        self.invalidate(table, &u.entity_id).await;
                    }
                    Ok(Upserted { applied, stale: u.features.len().saturating_sub(applied), refused: 0 })
                }
                Ok(other) => Err(format!("unexpected reply {other:?}")),
                Err(e) => Err(e.to_string()),
            });
        }
        Ok(outcomes)
    }

    /// Invalidates `id` in this replica's cache now, and once more after the read bound.
    pub async fn invalidate(&self, table: &str, id: &str) {
        if let Some(cache) = &self.cache {
            invalidate_twice(cache, table, id, self.read_timeout).await;
        }
    }
}

/// Invalidates now and again after `after` (from a spawned task): a cache load that read the old
/// row before the write can land after the first invalidation, never after the second.
pub(super) async fn invalidate_twice(
    cache: &Arc<CachedStore<RedisFeatureStore>>,
    table: &str,
    id: &str,
    after: Duration,
) {
    cache.invalidate(table, id).await;
    let (cache, table, id) = (Arc::clone(cache), table.to_owned(), id.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(after + Duration::from_millis(10)).await;
        cache.invalidate(&table, &id).await;
    });
}
