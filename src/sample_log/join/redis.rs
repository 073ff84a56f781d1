//! The Redis join store: every replica reaches the same snapshots, so a callback may land on any
//! of them, and due candidates are claimed exactly once across replicas. Works on one node and on
//! Redis Cluster.
//!
//! Layout. A prediction belongs to shard `k = crc32c(request_id) % shards`; every key of shard
//! `k` carries the hash tag `{k}`, so a prediction's hash and its shard's indexes live in one slot
//! and each script below touches one slot (what Redis Cluster requires of a script):
//! - `{ns}:join:{k}:r:{request_id}`: a hash, expiring `close_grace_ms` after the join window
//!   closes (so candidates due at the close are still there when a replica claims them): `s` = the
//!   encoded `augur.v1.Snapshot`; `x` = when the window closes; `i:{item}` = 1 per candidate;
//!   `e:{type}\0{item}` = `"{ts_ms} {value}"` per label (HSETNX: the dedup); `d:{item}` = its due
//!   time once scheduled, never after `x`; `r:{item}` = the revision emitted last.
//! - `{ns}:join:{k}:due`: a sorted set of `"{len(request_id)}:{request_id}{item}"` by due time.
//! - `{ns}:join:{k}:lease`: the same members once claimed, by when the claim's lease ends.
//!
//! Claims. Claiming moves members from `due` to `lease` and marks them emitted in one script, so
//! two replicas never claim the same candidate and a label racing the claim becomes a correction.
//! The joiner confirms once the samples are in its sample log; confirming removes them from
//! `lease`. A replica that dies in between leaves them there: when the lease ends, any replica's
//! next claim takes them again (counted as `recovered{reason="lease_expired"}`). So nothing
//! claimed is lost; the price is that a replica killed after its sample log write and before its
//! confirm has those samples emitted twice with the same `(sample_id, revision)` — the one
//! duplicate a consumer must tolerate, where the in-memory store (which can read its own log after
//! a crash) has none. A lease shorter than a replica's pause between claim and confirm would
//! emit twice too; the default (30 s) is far beyond a sample log append.
//!
//! Shards spread the load: on a cluster each shard's slot lands on some master, so `shards`
//! (default 16) well above the master count keeps them evenly used. A replica's claim visits every
//! shard each tick, starting from a rotating one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::{Added, Event, Expired, JoinError, JoinStore, Joined, Reuse};
use crate::fetch::BoxFuture;
use crate::sample_log::metrics::{ReasonLabels, SampleMetrics};

const ADD_EVENT: &str = r"
if redis.call('HEXISTS', KEYS[1], 'i:' .. ARGV[1]) == 0 then return -1 end
local due = tonumber(ARGV[4])
local closes = tonumber(redis.call('HGET', KEYS[1], 'x'))
if closes ~= nil and closes < due then due = closes end
if redis.call('HSETNX', KEYS[1], 'e:' .. ARGV[2] .. '\0' .. ARGV[1], ARGV[3]) == 0 then return -2 end
if redis.call('HEXISTS', KEYS[1], 'r:' .. ARGV[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], 'r:' .. ARGV[1], 1)
end
local scheduled = redis.call('HGET', KEYS[1], 'd:' .. ARGV[1])
if scheduled == false or scheduled == 'u' then
  redis.call('HSET', KEYS[1], 'd:' .. ARGV[1], due)
  redis.call('ZADD', KEYS[2], due, ARGV[5])
end
return 0
";

/// KEYS: due, lease. ARGV: now, limit, hash key prefix, lease end. Returns the members whose
/// lease ran out (claimed again), then the newly claimed ones, with the count of the first part.
const TAKE_DUE: &str = r"
local limit = tonumber(ARGV[2])
local out = {}
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, limit)
for _, m in ipairs(stale) do
  redis.call('ZADD', KEYS[2], ARGV[4], m)
  table.insert(out, m)
end
local again = #out
if #out < limit then
  local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, limit - #out)
  for _, m in ipairs(members) do
    redis.call('ZREM', KEYS[1], m)
    local n = tonumber(string.match(m, '^(%d+):'))
    local head = string.len(tostring(n)) + 1
    local request = string.sub(m, head + 1, head + n)
    local item = string.sub(m, head + n + 1)
    if redis.call('HSETNX', ARGV[3] .. request, 'r:' .. item, 0) == 1 then
      redis.call('ZADD', KEYS[2], ARGV[4], m)
      table.insert(out, m)
    end
  end
end
table.insert(out, 1, again)
return out
";

/// Predictions read at once while emitting a claim batch.
const READS: usize = 16;

/// What [`RedisJoinStore::connect`] needs.
#[derive(Debug, Clone)]
pub struct RedisJoinConfig<'a> {
    /// One node's URL (any node of a cluster).
    pub url: &'a str,
    /// Redis Cluster.
    pub cluster: bool,
    /// First part of every key.
    pub namespace: &'a str,
    /// Bound on one call, in ms.
    pub timeout_ms: u64,
    /// Due indexes (hash tags).
    pub shards: u32,
    /// Claim lease, in ms.
    pub lease_ms: u64,
    /// How long a prediction's hash outlives its window, in ms.
    pub close_grace_ms: u64,
}

/// See the module doc.
#[derive(Debug)]
pub struct RedisJoinStore {
    conn: Conn,
    namespace: String,
    shards: u32,
    timeout: Duration,
    lease_ms: i64,
    close_grace_ms: i64,
    add_event: Script,
    take_due: Script,
    /// Where the next claim starts, so no shard waits behind the others under a full batch.
    next_shard: AtomicUsize,
    /// Claimed and not yet confirmed: (shard, member).
    unconfirmed: Mutex<Vec<(u32, String)>>,
    metrics: SampleMetrics,
}

/// One node (reconnecting in the background) or a cluster (slot map kept by redis-rs).
#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Node(_) => "Node",
            Conn::Cluster(_) => "Cluster",
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

// === impl RedisJoinStore ===

impl RedisJoinStore {
    /// Connects and pings; fails start-up naming the (redacted) URL.
    pub async fn connect(config: &RedisJoinConfig<'_>, metrics: SampleMetrics) -> Result<Self, JoinError> {
        let unavailable =
            |e: redis::RedisError| JoinError::Unavailable(format!("{}: {e}", crate::validate::redact_url(config.url)));
        let timeout = Duration::from_millis(config.timeout_ms);
        let connect_timeout = timeout.max(Duration::from_secs(1));
        let conn = if config.cluster {
            let client = ClusterClientBuilder::new([config.url])
                .connection_timeout(connect_timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()
                .map_err(unavailable)?;
            Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?)
        } else {
            let client = redis::Client::open(config.url).map_err(unavailable)?;
            let manager = ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(connect_timeout))
                .set_max_delay(Duration::from_secs(2));
            Conn::Node(ConnectionManager::new_with_config(client, manager).await.map_err(unavailable)?)
        };
        let store = RedisJoinStore {
            conn,
            namespace: config.namespace.to_owned(),
            shards: config.shards.max(1),
            timeout,
            lease_ms: i64::try_from(config.lease_ms).unwrap_or(i64::MAX),
            close_grace_ms: i64::try_from(config.close_grace_ms).unwrap_or(i64::MAX),
            add_event: Script::new(ADD_EVENT),
            take_due: Script::new(TAKE_DUE),
            next_shard: AtomicUsize::new(0),
            unconfirmed: Mutex::new(Vec::new()),
            metrics,
        };
        let mut conn = store.conn.clone();
        store.bounded(redis::cmd("PING").query_async::<String>(&mut conn)).await?;
        Ok(store)
    }

    fn shard(&self, request_id: &str) -> u32 {
        crc32c::crc32c(request_id.as_bytes()) % self.shards
    }

    /// Every key of shard `k` starts with this: its hash tag pins them to one slot.
    fn shard_prefix(&self, shard: u32) -> String {
        format!("{}:join:{{{shard}}}:", self.namespace)
    }

    fn key(&self, request_id: &str) -> String {
        format!("{}r:{request_id}", self.shard_prefix(self.shard(request_id)))
    }

    fn due_key(&self, shard: u32) -> String {
        format!("{}due", self.shard_prefix(shard))
    }

    fn lease_key(&self, shard: u32) -> String {
        format!("{}lease", self.shard_prefix(shard))
    }

    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, JoinError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(JoinError::Unavailable(e.to_string())),
            Err(_) => Err(JoinError::Unavailable(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    /// One shard's claim: `(claimed again after a lapsed lease, members)`.
    async fn take_due_in(&self, shard: u32, now_ms: i64, limit: usize) -> Result<(usize, Vec<String>), JoinError> {
        let mut invocation = self.take_due.prepare_invoke();
        invocation
            .key(self.due_key(shard))
            .key(self.lease_key(shard))
            .arg(now_ms)
            .arg(limit)
            .arg(format!("{}r:", self.shard_prefix(shard)))
            .arg(now_ms.saturating_add(self.lease_ms));
        let mut conn = self.conn.clone();
        let mut reply: Vec<Value> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if reply.is_empty() {
            return Err(JoinError::Corrupt("claim script answered nothing".into()));
        }
        let again: usize = redis::from_redis_value(reply.remove(0)).map_err(|e| JoinError::Corrupt(e.to_string()))?;
        let members: Vec<String> =
            redis::from_redis_value(Value::Array(reply)).map_err(|e| JoinError::Corrupt(e.to_string()))?;
        Ok((again, members))
    }

    /// The held prediction's candidate with its labels, from one HGETALL.
    async fn read(&self, request_id: &str, item_id: &str, revision: u32) -> Result<Option<Joined>, JoinError> {
        Ok(self.read_items(request_id, &[item_id], revision).await?.pop())
    }

    /// The held prediction's candidates `item_ids` with their labels, from one HGETALL (none
    /// when the prediction expired meanwhile).
    async fn read_items(&self, request_id: &str, item_ids: &[&str], revision: u32) -> Result<Vec<Joined>, JoinError> {
        let mut conn = self.conn.clone();
        let fields: Vec<(Vec<u8>, Vec<u8>)> =
            self.bounded(redis::cmd("HGETALL").arg(self.key(request_id)).query_async(&mut conn)).await?;
        let mut snapshot = None;
        let mut labels: Vec<Vec<Event>> = vec![Vec::new(); item_ids.len()];
        for (field, value) in fields {
            if field == b"s" {
                snapshot = Some(Bytes::from(value));
            } else if let Some(rest) = field.strip_prefix(b"e:") {
                let Some(split) = rest.iter().position(|&b| b == 0) else { continue };
                let Some(index) = item_ids.iter().position(|id| id.as_bytes() == &rest[split + 1..]) else {
                    continue;
                };
                let kind = String::from_utf8_lossy(&rest[..split]).into_owned();
                labels[index].push(parse_label(request_id, item_ids[index], kind, &value)?);
            }
        }
        let Some(snapshot) = snapshot else { return Ok(Vec::new()) };
        Ok(item_ids
            .iter()
            .zip(labels)
            .map(|(item_id, mut labels)| {
                labels.sort_by_key(|l| l.timestamp_ms);
                Joined {
                    request_id: request_id.to_owned(),
                    snapshot: snapshot.clone(),
                    item_id: (*item_id).to_owned(),
                    labels,
                    revision,
                }
            })
            .collect())
    }

    /// Runs one atomic pipeline per shard (a cluster takes a pipeline only within one slot).
    async fn per_shard(&self, mut pipes: std::collections::BTreeMap<u32, Pipeline>) -> Result<(), JoinError> {
        let calls = pipes.values_mut().map(|pipe| {
            pipe.atomic();
            let mut conn = self.conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        });
        let results =
            self.bounded(async { Ok::<_, redis::RedisError>(futures_util::future::join_all(calls).await) }).await?;
        results.into_iter().try_for_each(|r| r.map_err(|e| JoinError::Unavailable(e.to_string())))
    }
}

fn member(request_id: &str, item_id: &str) -> String {
    format!("{}:{request_id}{item_id}", request_id.len())
}

fn parse_member(m: &str) -> Option<(&str, &str)> {
    let (len, rest) = m.split_once(':')?;
    let len: usize = len.parse().ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

fn parse_label(request_id: &str, item_id: &str, kind: String, value: &[u8]) -> Result<Event, JoinError> {
    let text = std::str::from_utf8(value).map_err(|e| JoinError::Corrupt(e.to_string()))?;
    let mut parts = text.split(' ');
    let timestamp_ms = parts.next().and_then(|t| t.parse().ok()).ok_or_else(|| JoinError::Corrupt(text.to_owned()))?;
    let value = parts
        .next()
        .filter(|v| !v.is_empty())
        .map(str::parse)
        .transpose()
        .map_err(|_| JoinError::Corrupt(text.to_owned()))?;
    Ok(Event { request_id: request_id.to_owned(), item_id: item_id.to_owned(), kind, timestamp_ms, value })
}

impl JoinStore for RedisJoinStore {
    fn put<'a>(
        &'a self,
        request_id: &'a str,
        snapshot: Bytes,
        item_ids: &'a [String],
        expires_ms: i64,
        unimpressed_due_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<(), JoinError>> {
        Box::pin(async move {
            let key = self.key(request_id);
            let mut pipe = redis::pipe();
            pipe.atomic();
            // HSETNX: a caller reusing a request id keeps the first prediction.
            pipe.cmd("HSETNX").arg(&key).arg("s").arg(snapshot.as_ref()).ignore();
            let mut fields = redis::cmd("HSET");
            fields.arg(&key).arg("x").arg(expires_ms);
            for id in item_ids {
                fields.arg(format!("i:{id}")).arg(1);
                if unimpressed_due_ms.is_some() {
                    // 'u': scheduled as unimpressed; the first event reschedules it.
                    fields.arg(format!("d:{id}")).arg("u");
                }
            }
            pipe.add_command(fields).ignore();
            pipe.cmd("PEXPIREAT").arg(&key).arg(expires_ms.saturating_add(self.close_grace_ms)).ignore();
            if let Some(due) = unimpressed_due_ms {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(self.due_key(self.shard(request_id))).arg("NX");
                for id in item_ids {
                    zadd.arg(due).arg(member(request_id, id));
                }
                pipe.add_command(zadd).ignore();
            }
            let mut conn = self.conn.clone();
            self.bounded(pipe.query_async::<()>(&mut conn)).await
        })
    }

    fn add_event<'a>(&'a self, event: &'a Event, due_ms: i64) -> BoxFuture<'a, Result<Added, JoinError>> {
        Box::pin(async move {
            let label = match event.value {
                Some(v) => format!("{} {v}", event.timestamp_ms),
                None => event.timestamp_ms.to_string(),
            };
            let mut invocation = self.add_event.prepare_invoke();
            invocation
                .key(self.key(&event.request_id))
                .key(self.due_key(self.shard(&event.request_id)))
                .arg(&event.item_id)
                .arg(&event.kind)
                .arg(label)
                .arg(due_ms)
                .arg(member(&event.request_id, &event.item_id));
            let mut conn = self.conn.clone();
            let answer: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
            Ok(match answer {
                -1 => Added::Orphan,
                -2 => Added::Duplicate,
                0 => Added::Accepted,
                revision => Added::Late { revision: u32::try_from(revision).unwrap_or(u32::MAX) },
            })
        })
    }

    fn take_due(&self, now_ms: i64, limit: usize, _log_mark: u64) -> BoxFuture<'_, Result<Vec<Joined>, JoinError>> {
        Box::pin(async move {
            let first = self.next_shard.fetch_add(1, Ordering::Relaxed);
            let mut claimed = Vec::new();
            let mut again = 0;
            for step in 0..self.shards as usize {
                if claimed.len() >= limit {
                    break;
                }
                let shard = ((first + step) % self.shards as usize) as u32;
                let (lapsed, members) = self.take_due_in(shard, now_ms, limit - claimed.len()).await?;
                again += lapsed;
                // Recorded before anything can fail: whatever was claimed is confirmed or lapses.
                let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                unconfirmed.extend(members.iter().map(|m| (shard, m.clone())));
                drop(unconfirmed);
                claimed.extend(members);
            }
            if again > 0 {
                self.metrics
                    .recovered
                    .get_or_create(&ReasonLabels { reason: "lease_expired".to_owned() })
                    .inc_by(again as u64);
                tracing::warn!(
                    again,
                    "join claims whose lease ran out were claimed again (a replica died between claiming and \
                     writing them)"
                );
            }
            // One HGETALL per prediction (a claim batch holds many candidates of each), READS
            // at a time. One expired meanwhile (a due time past the window cannot be
            // configured) has nothing to emit.
            let mut by_request: Vec<(&str, Vec<&str>)> = Vec::new();
            let mut index = std::collections::HashMap::new();
            for (request_id, item_id) in claimed.iter().filter_map(|m| parse_member(m)) {
                let at = *index.entry(request_id).or_insert_with(|| {
                    by_request.push((request_id, Vec::new()));
                    by_request.len() - 1
                });
                by_request[at].1.push(item_id);
            }
            let reads: Vec<_> =
                by_request.iter().map(|(request_id, items)| self.read_items(request_id, items, 0)).collect();
            let read: Vec<Result<Vec<Joined>, JoinError>> =
                futures_util::stream::iter(reads).buffered(READS).collect().await;
            let mut out = Vec::with_capacity(claimed.len());
            for joined in read {
                out.extend(joined?);
            }
            Ok(out)
        })
    }

    fn joined<'a>(
        &'a self,
        request_id: &'a str,
        item_id: &'a str,
        revision: u32,
    ) -> BoxFuture<'a, Result<Option<Joined>, JoinError>> {
        Box::pin(self.read(request_id, item_id, revision))
    }

    fn confirm(&self) -> BoxFuture<'_, Result<(), JoinError>> {
        Box::pin(async move {
            let done = std::mem::take(&mut *self.unconfirmed.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            let mut pipes = std::collections::BTreeMap::<u32, Pipeline>::new();
            for (shard, m) in &done {
                pipes.entry(*shard).or_default().cmd("ZREM").arg(self.lease_key(*shard)).arg(m).ignore();
            }
            let result = self.per_shard(pipes).await;
            if result.is_err() {
                // Kept for the next confirm; if that never comes, the leases lapse and the claims
                // are taken again (a duplicate, never a loss).
                self.unconfirmed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(done);
            }
            result
        })
    }

    fn release<'a>(&'a self, claimed: &'a [Joined], now_ms: i64) -> BoxFuture<'a, Result<(), JoinError>> {
        Box::pin(async move {
            if claimed.is_empty() {
                return Ok(());
            }
            let mut pipes = std::collections::BTreeMap::<u32, Pipeline>::new();
            let mut released = std::collections::HashSet::new();
            for j in claimed {
                let shard = self.shard(&j.request_id);
                let m = member(&j.request_id, &j.item_id);
                let pipe = pipes.entry(shard).or_default();
                pipe.cmd("HDEL").arg(self.key(&j.request_id)).arg(format!("r:{}", j.item_id)).ignore();
                pipe.cmd("ZREM").arg(self.lease_key(shard)).arg(&m).ignore();
                pipe.cmd("ZADD").arg(self.due_key(shard)).arg(now_ms).arg(&m).ignore();
                released.insert((shard, m));
            }
            self.per_shard(pipes).await?;
            self.unconfirmed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|claim| !released.contains(claim));
            Ok(())
        })
    }

    fn reuse(&self, _request_id: &str, _item_ids: &[&str]) -> Option<Reuse> {
        None
    }

    fn expire(&self, _now_ms: i64) -> Expired {
        Expired::default()
    }

    fn pending(&self) -> Option<(usize, usize)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_names_its_request_and_item_whatever_they_contain() {
        for (request, item) in [("r1", "i1"), ("12:ab", "3:c"), ("", "x"), ("é{}", "{1}")] {
            assert_eq!(parse_member(&member(request, item)), Some((request, item)));
        }
    }
}
