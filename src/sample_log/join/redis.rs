//! The Redis join store: every replica reaches the same snapshots, so a callback may land on any
//! of them, and due candidates are claimed exactly once across replicas.
//!
//! Layout (one node; Redis Cluster is not supported for the join store because a claim touches
//! the due index and a prediction's hash in one script):
//! - `{ns}:join:{request_id}`: a hash, expiring [`CLOSE_GRACE_MS`] after the join window closes
//!   (so candidates due at the close are still there when a replica claims them): `s` = the
//!   encoded `augur.v1.Snapshot`; `x` = when the window closes; `i:{item}` = 1 per candidate;
//!   `e:{type}\0{item}` = `"{ts_ms} {value}"` per label (HSETNX: the dedup); `d:{item}` = its
//!   due time once scheduled, never after `x`; `r:{item}` = the revision emitted last.
//! - `{ns}:join:due`: a sorted set of `"{len(request_id)}:{request_id}{item}"` by due time.
//!   Claiming removes members and marks them emitted in one script, so two replicas never emit
//!   the same candidate and a label racing the claim becomes a correction, never lost.

use std::time::Duration;

use bytes::Bytes;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Added, Event, Expired, JoinError, JoinStore, Joined, Reuse};
use crate::fetch::BoxFuture;

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

const TAKE_DUE: &str = r"
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, m in ipairs(members) do
  redis.call('ZREM', KEYS[1], m)
  local n = tonumber(string.match(m, '^(%d+):'))
  local head = string.len(tostring(n)) + 1
  local request = string.sub(m, head + 1, head + n)
  local item = string.sub(m, head + n + 1)
  local key = ARGV[3] .. request
  if redis.call('HSETNX', key, 'r:' .. item, 0) == 1 then
    table.insert(out, m)
  end
end
return out
";

/// How long a prediction's hash outlives its window: the joiners' slack to claim what fell due
/// at the close. A candidate still unclaimed after it (every replica down that long) is lost.
pub const CLOSE_GRACE_MS: i64 = 10 * 60 * 1000;

/// See the module doc.
#[derive(Debug, Clone)]
pub struct RedisJoinStore {
    conn: ConnectionManager,
    prefix: String,
    due_key: String,
    timeout: Duration,
    add_event: Script,
    take_due: Script,
}

// === impl RedisJoinStore ===

impl RedisJoinStore {
    /// Connects and pings; fails start-up naming the (redacted) URL.
    pub async fn connect(url: &str, namespace: &str, timeout_ms: u64) -> Result<Self, JoinError> {
        let unavailable =
            |e: redis::RedisError| JoinError::Unavailable(format!("{}: {e}", crate::validate::redact_url(url)));
        let timeout = Duration::from_millis(timeout_ms);
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(unavailable)?;
        let store = RedisJoinStore {
            conn,
            prefix: format!("{namespace}:join:"),
            due_key: format!("{namespace}:join:due"),
            timeout,
            add_event: Script::new(ADD_EVENT),
            take_due: Script::new(TAKE_DUE),
        };
        let mut conn = store.conn.clone();
        store.bounded(redis::cmd("PING").query_async::<String>(&mut conn)).await?;
        Ok(store)
    }

    fn key(&self, request_id: &str) -> String {
        format!("{}{request_id}", self.prefix)
    }

    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, JoinError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(JoinError::Unavailable(e.to_string())),
            Err(_) => Err(JoinError::Unavailable(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    /// The held prediction's candidate with its labels, from one HGETALL.
    async fn read(&self, request_id: &str, item_id: &str, revision: u32) -> Result<Option<Joined>, JoinError> {
        let mut conn = self.conn.clone();
        let fields: Vec<(Vec<u8>, Vec<u8>)> =
            self.bounded(redis::cmd("HGETALL").arg(self.key(request_id)).query_async(&mut conn)).await?;
        let mut snapshot = None;
        let mut labels = Vec::new();
        for (field, value) in fields {
            if field == b"s" {
                snapshot = Some(Bytes::from(value));
            } else if let Some(rest) = field.strip_prefix(b"e:") {
                let Some(split) = rest.iter().position(|&b| b == 0) else { continue };
                if &rest[split + 1..] != item_id.as_bytes() {
                    continue;
                }
                let kind = String::from_utf8_lossy(&rest[..split]).into_owned();
                labels.push(parse_label(request_id, item_id, kind, &value)?);
            }
        }
        labels.sort_by_key(|l| l.timestamp_ms);
        Ok(snapshot.map(|snapshot| Joined {
            request_id: request_id.to_owned(),
            snapshot,
            item_id: item_id.to_owned(),
            labels,
            revision,
        }))
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
            pipe.cmd("PEXPIREAT").arg(&key).arg(expires_ms + CLOSE_GRACE_MS).ignore();
            if let Some(due) = unimpressed_due_ms {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&self.due_key).arg("NX");
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
                .key(&self.due_key)
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
            let mut invocation = self.take_due.prepare_invoke();
            invocation.key(&self.due_key).arg(now_ms).arg(limit).arg(&self.prefix);
            let mut conn = self.conn.clone();
            let claimed: Vec<String> = self.bounded(invocation.invoke_async(&mut conn)).await?;
            let mut out = Vec::with_capacity(claimed.len());
            for m in &claimed {
                let Some((request_id, item_id)) = parse_member(m) else { continue };
                // Expired meanwhile (a due time past the window cannot be configured): nothing to emit.
                out.extend(self.read(request_id, item_id, 0).await?);
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

    // TODO(samples): an in-flight lease, so a replica killed between the claim and its sample
    // log write does not lose the batch (the memory store's journal covers this; Redis does not).
    fn confirm(&self) -> BoxFuture<'_, Result<(), JoinError>> {
        Box::pin(async { Ok(()) })
    }

    fn release<'a>(&'a self, claimed: &'a [Joined], now_ms: i64) -> BoxFuture<'a, Result<(), JoinError>> {
        Box::pin(async move {
            if claimed.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for j in claimed {
                pipe.cmd("HDEL").arg(self.key(&j.request_id)).arg(format!("r:{}", j.item_id)).ignore();
                pipe.cmd("ZADD").arg(&self.due_key).arg(now_ms).arg(member(&j.request_id, &j.item_id)).ignore();
            }
            let mut conn = self.conn.clone();
            self.bounded(pipe.query_async::<()>(&mut conn)).await
        })
    }

    fn reuse(&self, _request_id: &str, _item_ids: &[String]) -> Option<Reuse> {
        None
    }

    fn expire(&self, _now_ms: i64) -> Expired {
        Expired::default()
    }

    fn pending(&self) -> Option<(usize, usize)> {
        None
    }
}
