//! The in-memory join store: the embedded default. Bounded in bytes (what a held prediction
//! costs is its encoded snapshot plus its ids and labels); at shutdown its content is written
//! to one file and read back at start, so a restart keeps pending joins.
//!
//! A callback must reach the replica that served its prediction; with several replicas behind
//! a balancer, use the Redis store.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use prost::Message;

use super::{Added, Event, JoinError, JoinStore, Joined};
use crate::fetch::BoxFuture;

/// Fixed cost charged per held prediction and per label beside their strings (map entries,
/// the due index).
const ENTRY_OVERHEAD: usize = 96;

/// Predictions held in this process.
#[derive(Debug)]
pub struct MemoryJoinStore {
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    requests: HashMap<String, Held>,
    /// (due_ms, request_id, item_id).
    due: BTreeSet<(i64, String, String)>,
    /// (expires_ms, request_id).
    expiry: BTreeSet<(i64, String)>,
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Held {
    snapshot: Bytes,
    expires_ms: i64,
    items: HashMap<String, Candidate>,
    bytes: usize,
}

#[derive(Debug, Clone, Default)]
struct Candidate {
    labels: Vec<Event>,
    /// Due time while scheduled.
    due_ms: Option<i64>,
    /// Revision of the last emission; `None` before the first.
    emitted: Option<u32>,
}

// === impl MemoryJoinStore ===

impl MemoryJoinStore {
    /// An empty store holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        MemoryJoinStore { max_bytes, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps (every update is a few inserts
        // with no early return in between), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes every held prediction to `path` (tmp file, fsync, rename): graceful shutdown.
    /// Returns how many were written.
    pub fn save(&self, path: &Path) -> std::io::Result<usize> {
        let state = self.lock();
        let mut file = Pending::default();
        for (request_id, held) in &state.requests {
            file.requests.push(PendingRequest {
                request_id: request_id.clone(),
                snapshot: held.snapshot.to_vec(),
                expires_ms: held.expires_ms,
                items: held
                    .items
                    .iter()
                    .map(|(item_id, c)| PendingItem {
                        item_id: item_id.clone(),
                        due_ms: c.due_ms,
                        emitted: c.emitted,
                        labels: c
                            .labels
                            .iter()
                            .map(|e| PendingLabel {
                                kind: e.kind.clone(),
                                timestamp_ms: e.timestamp_ms,
                                value: e.value,
                            })
                            .collect(),
                    })
                    .collect(),
            });
        }
        drop(state);
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&file.encode_to_vec())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // The rename itself is durable only once the directory is.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(file.requests.len())
    }

    /// Reads what [`save`](Self::save) wrote, dropping what expired by `now_ms`; the file is
    /// removed once read. Returns (restored, expired).
    pub fn load(&self, path: &Path, now_ms: i64) -> std::io::Result<(usize, usize)> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let file = Pending::decode(bytes.as_slice()).map_err(std::io::Error::other)?;
        let (mut restored, mut expired) = (0, 0);
        let mut state = self.lock();
        for r in file.requests {
            if r.expires_ms <= now_ms {
                expired += 1;
                continue;
            }
            let mut held =
                Held { snapshot: Bytes::from(r.snapshot), expires_ms: r.expires_ms, items: HashMap::new(), bytes: 0 };
            for item in r.items {
                let labels = item
                    .labels
                    .into_iter()
                    .map(|l| Event {
                        request_id: r.request_id.clone(),
                        item_id: item.item_id.clone(),
                        kind: l.kind,
                        timestamp_ms: l.timestamp_ms,
                        value: l.value,
                    })
                    .collect();
                if let Some(due) = item.due_ms {
                    state.due.insert((due, r.request_id.clone(), item.item_id.clone()));
                }
                held.items.insert(item.item_id, Candidate { labels, due_ms: item.due_ms, emitted: item.emitted });
            }
            held.bytes = held_bytes(&r.request_id, &held);
            state.bytes += held.bytes;
            state.expiry.insert((held.expires_ms, r.request_id.clone()));
            state.requests.insert(r.request_id, held);
            restored += 1;
        }
        drop(state);
        std::fs::remove_file(path)?;
        Ok((restored, expired))
    }
}

fn held_bytes(request_id: &str, held: &Held) -> usize {
    let items: usize = held
        .items
        .iter()
        .map(|(id, c)| {
            ENTRY_OVERHEAD + id.len() + c.labels.iter().map(|l| ENTRY_OVERHEAD + l.kind.len()).sum::<usize>()
        })
        .sum();
    ENTRY_OVERHEAD + request_id.len() + held.snapshot.len() + items
}

fn joined(held: &Held, item_id: &str, revision: u32) -> Option<Joined> {
    let candidate = held.items.get(item_id)?;
    Some(Joined {
        snapshot: held.snapshot.clone(),
        item_id: item_id.to_owned(),
        labels: candidate.labels.clone(),
        revision,
    })
}

impl JoinStore for MemoryJoinStore {
    fn put<'a>(
        &'a self,
        request_id: &'a str,
        snapshot: Bytes,
        item_ids: &'a [String],
        expires_ms: i64,
        unimpressed_due_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<(), JoinError>> {
        Box::pin(async move {
            let mut held = Held { snapshot, expires_ms, items: HashMap::with_capacity(item_ids.len()), bytes: 0 };
            for id in item_ids {
                held.items.insert(id.clone(), Candidate { due_ms: unimpressed_due_ms, ..Candidate::default() });
            }
            held.bytes = held_bytes(request_id, &held);
            let mut state = self.lock();
            if state.requests.contains_key(request_id) {
                // A caller reusing a request id: the first prediction keeps its labels.
                return Ok(());
            }
            if state.bytes + held.bytes > self.max_bytes {
                return Err(JoinError::Full { max_bytes: self.max_bytes });
            }
            if let Some(due) = unimpressed_due_ms {
                for id in held.items.keys() {
                    state.due.insert((due, request_id.to_owned(), id.clone()));
                }
            }
            state.bytes += held.bytes;
            state.expiry.insert((expires_ms, request_id.to_owned()));
            state.requests.insert(request_id.to_owned(), held);
            Ok(())
        })
    }

    fn add_event<'a>(&'a self, event: &'a Event, due_ms: i64) -> BoxFuture<'a, Result<Added, JoinError>> {
        Box::pin(async move {
            let mut guard = self.lock();
            let state = &mut *guard;
            let Some(held) = state.requests.get_mut(&event.request_id) else { return Ok(Added::Orphan) };
            let Some(candidate) = held.items.get_mut(&event.item_id) else { return Ok(Added::Orphan) };
            if candidate.labels.iter().any(|l| l.kind == event.kind) {
                return Ok(Added::Duplicate);
            }
            let cost = ENTRY_OVERHEAD + event.kind.len();
            if state.bytes + cost > self.max_bytes {
                return Err(JoinError::Full { max_bytes: self.max_bytes });
            }
            candidate.labels.push(event.clone());
            held.bytes += cost;
            state.bytes += cost;
            if let Some(revision) = candidate.emitted.as_mut() {
                *revision += 1;
                return Ok(Added::Late { revision: *revision });
            }
            // First event: schedule at its wait; an earlier unimpressed slot moves to it.
            let first = candidate.labels.len() == 1;
            if first {
                if let Some(old) = candidate.due_ms.replace(due_ms) {
                    state.due.remove(&(old, event.request_id.clone(), event.item_id.clone()));
                }
                state.due.insert((due_ms, event.request_id.clone(), event.item_id.clone()));
            }
            Ok(Added::Accepted)
        })
    }

    fn take_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Vec<Joined>, JoinError>> {
        Box::pin(async move {
            let mut guard = self.lock();
            let state = &mut *guard;
            let mut out = Vec::new();
            while out.len() < limit {
                let Some(first) = state.due.first() else { break };
                if first.0 > now_ms {
                    break;
                }
                let (_, request_id, item_id) = state.due.pop_first().expect("just peeked");
                let Some(held) = state.requests.get_mut(&request_id) else { continue };
                let Some(candidate) = held.items.get_mut(&item_id) else { continue };
                candidate.due_ms = None;
                candidate.emitted = Some(0);
                out.extend(joined(held, &item_id, 0));
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
        Box::pin(async move { Ok(self.lock().requests.get(request_id).and_then(|h| joined(h, item_id, revision))) })
    }

    fn expire(&self, now_ms: i64) -> usize {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut gone = 0;
        while let Some(first) = state.expiry.first() {
            if first.0 > now_ms {
                break;
            }
            let (_, request_id) = state.expiry.pop_first().expect("just peeked");
            if let Some(held) = state.requests.remove(&request_id) {
                state.bytes -= held.bytes;
                for (item_id, c) in held.items {
                    if let Some(due) = c.due_ms {
                        state.due.remove(&(due, request_id.clone(), item_id));
                    }
                }
                gone += 1;
            }
        }
        gone
    }

    fn pending(&self) -> Option<(usize, usize)> {
        let state = self.lock();
        Some((state.requests.len(), state.bytes))
    }
}

// The file format of `save`/`load`: protobuf by hand (prost derive), private to this module.

#[derive(Clone, PartialEq, prost::Message)]
struct Pending {
    #[prost(message, repeated, tag = "1")]
    requests: Vec<PendingRequest>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PendingRequest {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(bytes = "vec", tag = "2")]
    snapshot: Vec<u8>,
    #[prost(int64, tag = "3")]
    expires_ms: i64,
    #[prost(message, repeated, tag = "4")]
    items: Vec<PendingItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PendingItem {
    #[prost(string, tag = "1")]
    item_id: String,
    #[prost(int64, optional, tag = "2")]
    due_ms: Option<i64>,
    #[prost(uint32, optional, tag = "3")]
    emitted: Option<u32>,
    #[prost(message, repeated, tag = "4")]
    labels: Vec<PendingLabel>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PendingLabel {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(int64, tag = "2")]
    timestamp_ms: i64,
    #[prost(double, optional, tag = "3")]
    value: Option<f64>,
}
