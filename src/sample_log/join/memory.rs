//! The in-memory join store: the embedded default. Bounded in bytes (what a held prediction
//! costs is its encoded snapshot plus its ids and labels). Two ways it outlives the process:
//!
//! - graceful shutdown writes its content to one file (`pending.bin`), read back at start;
//! - every change is also appended to a journal (a [`SegmentLog`] of its own, fsynced on the
//!   sample log's interval), replayed at start when there is no `pending.bin` — after a SIGKILL
//!   nothing written is lost; after a power loss, what is lost is bounded by the fsync interval.
//!   The journal is compacted by the window: once every prediction put before a record has
//!   expired, the segments up to it are deleted; at start it is rewritten from the restored state.
//!
//! Claims and the sample log: a batch of claimed candidates is journaled (`ClaimBatch`, with the
//! sample log's last sequence before the joiner writes it) *before* the samples are appended, and
//! confirmed (`Confirm`) after. A crash in between leaves the batch in doubt: [`replay`] returns
//! it, the pipeline reads the sample log after the batch's mark, and [`settle`] makes every
//! candidate whose sample is not there due again. So a claimed candidate is never lost, and one
//! whose sample made it is never emitted twice.
//!
//! [`replay`]: MemoryJoinStore::replay
//! [`settle`]: MemoryJoinStore::settle
//!
//! A callback must reach the replica that served its prediction; with several replicas behind
//! a balancer, use the Redis store.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use prost::Message;

use super::{Added, Event, Expired, JoinError, JoinStore, Joined, Reuse};
use crate::fetch::BoxFuture;
use crate::sample_log::config::SampleLogConfig;
use crate::sample_log::file::{LogError, LogReader, SegmentLog};
use crate::sample_log::metrics::SampleMetrics;

/// The journal's only reader: compaction advances it past expired predictions.
const COMPACTION: &str = "compaction";

/// Fixed cost charged per held prediction and per label beside their strings (map entries,
/// the due index).
const ENTRY_OVERHEAD: usize = 96;

/// Predictions held in this process.
#[derive(Debug)]
pub struct MemoryJoinStore {
    max_bytes: usize,
    state: Mutex<State>,
    journal: std::sync::OnceLock<Journal>,
}

/// The journal and what compaction needs to know of it.
#[derive(Debug)]
struct Journal {
    log: std::sync::Arc<SegmentLog>,
    /// (sequence, expires_ms, request_id) of every put still in the journal, in journal order.
    puts: Mutex<std::collections::VecDeque<(u64, i64, String)>>,
    metrics: SampleMetrics,
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

/// What [`MemoryJoinStore::replay`] restored.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Predictions held again.
    pub requests: usize,
    /// Journal records read.
    pub records: u64,
    /// Corrupt spots skipped.
    pub corrupt: u64,
    /// Claims never confirmed: look for their samples in the log after this sequence...
    pub in_doubt_after: u64,
    /// ... these (request_id, item_id).
    pub in_doubt: Vec<(String, String)>,
}

// === impl MemoryJoinStore ===

impl MemoryJoinStore {
    /// An empty store holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        MemoryJoinStore { max_bytes, state: Mutex::new(State::default()), journal: std::sync::OnceLock::new() }
    }

    /// Replays the journal in `dir` (the state a crash left), dropping what expired by
    /// `now_ms` and has nothing left to emit. Claims in doubt stay claimed until [`settle`].
    ///
    /// [`settle`]: MemoryJoinStore::settle
    pub fn replay(&self, dir: &Path, now_ms: i64) -> Result<Replayed, LogError> {
        if !dir.exists() {
            return Ok(Replayed::default());
        }
        let mut reader = LogReader::open(dir, 0)?;
        let mut records = 0;
        // Claim batches not confirmed yet, in journal order: (mark, candidates).
        let mut open: Vec<(u64, Vec<(String, String)>)> = Vec::new();
        let mut state = self.lock();
        while let Some((_, payload)) = reader.next_raw()? {
            records += 1;
            let Ok(entry) = JournalEntry::decode(payload) else { continue };
            match entry.entry {
                // Held whatever the clock says now: the events after it may schedule candidates
                // that must still be emitted; the `expire` below drops what has nothing left.
                Some(journal_entry::Entry::Put(r)) => restore(&mut state, r, i64::MIN),
                Some(journal_entry::Entry::Event(e)) => {
                    let event = Event {
                        request_id: e.request_id,
                        item_id: e.item_id,
                        kind: e.kind,
                        timestamp_ms: e.timestamp_ms,
                        value: e.value,
                    };
                    // Replayed in journal order, the outcome is the one the process saw.
                    let _ = add_event(&mut state, self.max_bytes, &event, e.due_ms);
                }
                Some(journal_entry::Entry::Claimed(c)) => {
                    // Written by versions that journaled claims one by one: taken as final.
                    claim(&mut state, &c.request_id, &c.item_id);
                }
                Some(journal_entry::Entry::ClaimBatch(b)) => {
                    let items: Vec<(String, String)> = b.items.into_iter().map(|c| (c.request_id, c.item_id)).collect();
                    for (request_id, item_id) in &items {
                        claim(&mut state, request_id, item_id);
                    }
                    open.push((b.mark, items));
                }
                // The joiner confirms after each write, in order: every batch before is final.
                Some(journal_entry::Entry::Confirm(_)) => open.clear(),
                Some(journal_entry::Entry::Release(r)) => {
                    for c in &r.items {
                        unclaim(&mut state, &c.request_id, &c.item_id, r.due_ms);
                        for (_, items) in &mut open {
                            items.retain(|(q, i)| !(q == &c.request_id && i == &c.item_id));
                        }
                    }
                }
                None => {}
            }
        }
        // Expired meanwhile, with nothing left to emit: gone before anything is served from it.
        expire(&mut state, now_ms);
        let in_doubt_after = open.iter().map(|(mark, _)| *mark).min().unwrap_or(0);
        let in_doubt = open.into_iter().flat_map(|(_, items)| items).collect();
        Ok(Replayed { requests: state.requests.len(), records, corrupt: reader.corrupt(), in_doubt_after, in_doubt })
    }

    /// Ends the doubt [`replay`](Self::replay) left: of the claims in doubt, those whose sample
    /// is not in `in_log` are due again at `now_ms`. Returns how many were.
    pub fn settle(
        &self,
        in_doubt: &[(String, String)],
        in_log: &std::collections::HashSet<(String, String)>,
        now_ms: i64,
    ) -> usize {
        let mut state = self.lock();
        let mut again = 0;
        for key in in_doubt {
            if !in_log.contains(key) && unclaim(&mut state, &key.0, &key.1, now_ms) {
                again += 1;
            }
        }
        again
    }

    /// Starts journaling into `dir`: the old journal is removed and the current state written
    /// as the first records (so the journal alone describes the state from now on).
    pub fn attach_journal(
        &self,
        dir: &Path,
        log: &SampleLogConfig,
        metrics: SampleMetrics,
    ) -> Result<std::sync::Arc<SegmentLog>, LogError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|source| LogError::Io {
                op: "remove",
                path: dir.to_owned(),
                source,
            })?;
        }
        let config = SampleLogConfig {
            dir: dir.to_owned(),
            // Room for the bound's worth of snapshots several times over (labels, claims and
            // the window's expired puts not yet compacted).
            max_disk_bytes: (self.max_bytes as u64).saturating_mul(4).max(2 * log.segment_max_bytes),
            ..log.clone()
        };
        // Its own sequence gauges; the sample log's families (disk, drops) stay the sample log's.
        let journal_metrics = SampleMetrics {
            log_sequence: metrics.journal_sequence.clone(),
            log_durable_sequence: metrics.journal_durable_sequence.clone(),
            ..SampleMetrics::default()
        };
        let (journal_log, _) = SegmentLog::open(&config, &[COMPACTION.to_owned()], journal_metrics)?;
        let journal = Journal {
            log: std::sync::Arc::new(journal_log),
            puts: Mutex::new(std::collections::VecDeque::new()),
            metrics,
        };
        let state = self.lock();
        for (request_id, held) in &state.requests {
            journal.put(request_id, held);
        }
        drop(state);
        let handle = std::sync::Arc::clone(&journal.log);
        // Set once: a second call would be a wiring bug, and the first journal stays in use.
        let _ = self.journal.set(journal);
        Ok(handle)
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
            file.requests.push(pending_request(request_id, held));
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
            if r.expires_ms <= now_ms && !r.items.iter().any(|i| i.due_ms.is_some()) {
                expired += 1;
                continue;
            }
            restore(&mut state, r, now_ms);
            restored += 1;
        }
        drop(state);
        std::fs::remove_file(path)?;
        Ok((restored, expired))
    }
}

/// The file and journal form of a held prediction.
fn pending_request(request_id: &str, held: &Held) -> PendingRequest {
    PendingRequest {
        request_id: request_id.to_owned(),
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
                    .map(|e| PendingLabel { kind: e.kind.clone(), timestamp_ms: e.timestamp_ms, value: e.value })
                    .collect(),
            })
            .collect(),
    }
}

/// Holds `r` again (a later put of the same request replaces it: a checkpoint's is newer).
fn restore(state: &mut State, r: PendingRequest, now_ms: i64) {
    if r.expires_ms <= now_ms && !r.items.iter().any(|i| i.due_ms.is_some()) {
        return;
    }
    remove(state, &r.request_id);
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
        // Never after the window closes (a file written before due times were capped).
        let due_ms = item.due_ms.map(|d| d.min(r.expires_ms));
        if let Some(due) = due_ms {
            state.due.insert((due, r.request_id.clone(), item.item_id.clone()));
        }
        held.items.insert(item.item_id, Candidate { labels, due_ms, emitted: item.emitted });
    }
    held.bytes = held_bytes(&r.request_id, &held);
    state.bytes += held.bytes;
    state.expiry.insert((held.expires_ms, r.request_id.clone()));
    state.requests.insert(r.request_id, held);
}

/// Forgets a held prediction and its index entries.
fn remove(state: &mut State, request_id: &str) -> bool {
    let Some(held) = state.requests.remove(request_id) else { return false };
    state.bytes -= held.bytes;
    state.expiry.remove(&(held.expires_ms, request_id.to_owned()));
    for (item_id, c) in held.items {
        if let Some(due) = c.due_ms {
            state.due.remove(&(due, request_id.to_owned(), item_id));
        }
    }
    true
}

/// Removes the predictions whose window closed by `now_ms`, except those with a candidate still
/// scheduled: they stay until the joiner emitted it (due times are capped at the close, so that
/// is the next tick unless the sample log refuses).
fn expire(state: &mut State, now_ms: i64) -> Expired {
    let mut gone = Expired::default();
    let mut waiting = Vec::new();
    while let Some(first) = state.expiry.first() {
        if first.0 > now_ms {
            break;
        }
        let (expires, request_id) = state.expiry.pop_first().expect("just peeked");
        let Some(held) = state.requests.get(&request_id) else { continue };
        if held.items.values().any(|c| c.due_ms.is_some()) {
            waiting.push((expires, request_id));
            continue;
        }
        gone.unlabelled += held.items.values().filter(|c| c.emitted.is_none() && c.labels.is_empty()).count();
        gone.requests += usize::from(remove(state, &request_id));
    }
    state.expiry.extend(waiting);
    gone
}

fn add_event(state: &mut State, max_bytes: usize, event: &Event, due_ms: i64) -> Result<Added, JoinError> {
    let Some(held) = state.requests.get_mut(&event.request_id) else { return Ok(Added::Orphan) };
    // At the latest when the window closes: the sample goes with the labels known by then.
    let due_ms = due_ms.min(held.expires_ms);
    let Some(candidate) = held.items.get_mut(&event.item_id) else { return Ok(Added::Orphan) };
    if candidate.labels.iter().any(|l| l.kind == event.kind) {
        return Ok(Added::Duplicate);
    }
    let cost = ENTRY_OVERHEAD + event.kind.len();
    if state.bytes + cost > max_bytes {
        return Err(JoinError::Full { max_bytes });
    }
    candidate.labels.push(event.clone());
    held.bytes += cost;
    state.bytes += cost;
    if let Some(revision) = candidate.emitted.as_mut() {
        *revision += 1;
        return Ok(Added::Late { revision: *revision });
    }
    // First event: schedule at its wait; an earlier unimpressed slot moves to it.
    if candidate.labels.len() == 1 {
        if let Some(old) = candidate.due_ms.replace(due_ms) {
            state.due.remove(&(old, event.request_id.clone(), event.item_id.clone()));
        }
        state.due.insert((due_ms, event.request_id.clone(), event.item_id.clone()));
    }
    Ok(Added::Accepted)
}

/// Marks a candidate emitted at revision 0; `None` when it is not held.
fn claim<'s>(state: &'s mut State, request_id: &str, item_id: &str) -> Option<&'s Held> {
    let held = state.requests.get_mut(request_id)?;
    let candidate = held.items.get_mut(item_id)?;
    if let Some(due) = candidate.due_ms.take() {
        state.due.remove(&(due, request_id.to_owned(), item_id.to_owned()));
    }
    candidate.emitted = Some(0);
    Some(held)
}

/// Undoes a claim at revision 0 (the sample log does not have its sample): due at `due_ms`.
/// `false` when the candidate is not held or a later revision was emitted meanwhile.
fn unclaim(state: &mut State, request_id: &str, item_id: &str, due_ms: i64) -> bool {
    let Some(held) = state.requests.get_mut(request_id) else { return false };
    let Some(candidate) = held.items.get_mut(item_id) else { return false };
    if candidate.emitted != Some(0) {
        return false;
    }
    candidate.emitted = None;
    if let Some(old) = candidate.due_ms.replace(due_ms) {
        state.due.remove(&(old, request_id.to_owned(), item_id.to_owned()));
    }
    state.due.insert((due_ms, request_id.to_owned(), item_id.to_owned()));
    true
}

// === impl Journal ===

impl Journal {
    fn append(&self, entry: journal_entry::Entry) -> Option<u64> {
        let payload = JournalEntry { entry: Some(entry) }.encode_to_vec();
        match self.log.append(&[payload]) {
            Ok(sequence) => Some(sequence),
            Err(e) => {
                // The store keeps working; only a crash before the next checkpoint would lose it.
                self.metrics
                    .dropped
                    .get_or_create(&crate::sample_log::metrics::ReasonLabels { reason: "journal_write".to_owned() })
                    .inc();
                tracing::warn!(error = %e, "join journal write failed");
                None
            }
        }
    }

    fn put(&self, request_id: &str, held: &Held) {
        if let Some(sequence) = self.append(journal_entry::Entry::Put(pending_request(request_id, held))) {
            self.puts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back((
                sequence,
                held.expires_ms,
                request_id.to_owned(),
            ));
        }
    }

    /// Deletes the segments holding only the records of predictions no longer held (`held`
    /// tells: one past its window still waits while a candidate of it is scheduled).
    fn compact(&self, now_ms: i64, held: impl Fn(&str) -> bool) {
        let mut puts = self.puts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut past = None;
        while let Some((sequence, expires, request_id)) = puts.front() {
            if *expires > now_ms || held(request_id) {
                break;
            }
            past = Some(*sequence);
            puts.pop_front();
        }
        // Everything before the first live put belongs to expired predictions: records of a
        // prediction always follow its put.
        let upto = match puts.front() {
            Some(&(first_live, _, _)) => first_live - 1,
            None => past.map_or(0, |_| self.log.last_sequence()),
        };
        if past.is_some()
            && upto > self.log.cursor(COMPACTION)
            && let Err(e) = self.log.set_cursor(COMPACTION, upto)
        {
            tracing::warn!(error = %e, "join journal compaction failed");
        }
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

fn joined(request_id: &str, held: &Held, item_id: &str, revision: u32) -> Option<Joined> {
    let candidate = held.items.get(item_id)?;
    Some(Joined {
        request_id: request_id.to_owned(),
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
            if let Some(first) = state.requests.get(request_id) {
                // A retried Predict: the first prediction keeps its labels. Another prediction
                // under the same id would have its events joined to the first: refused.
                return match reuse_of(first, item_ids) {
                    Reuse::Conflict => Err(JoinError::Reused { request_id: request_id.to_owned() }),
                    Reuse::New | Reuse::Retry => Ok(()),
                };
            }
            if state.bytes + held.bytes > self.max_bytes {
                return Err(JoinError::Full { max_bytes: self.max_bytes });
            }
            if let Some(due) = unimpressed_due_ms {
                for id in held.items.keys() {
                    state.due.insert((due, request_id.to_owned(), id.clone()));
                }
            }
            // Journaled under the lock, so the journal's order is the state's.
            if let Some(journal) = self.journal.get() {
                journal.put(request_id, &held);
            }
            state.bytes += held.bytes;
            state.expiry.insert((expires_ms, request_id.to_owned()));
            state.requests.insert(request_id.to_owned(), held);
            Ok(())
        })
    }

    fn add_event<'a>(&'a self, event: &'a Event, due_ms: i64) -> BoxFuture<'a, Result<Added, JoinError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let added = add_event(&mut state, self.max_bytes, event, due_ms)?;
            if matches!(added, Added::Accepted | Added::Late { .. })
                && let Some(journal) = self.journal.get()
            {
                journal.append(journal_entry::Entry::Event(JournalEvent {
                    request_id: event.request_id.clone(),
                    item_id: event.item_id.clone(),
                    kind: event.kind.clone(),
                    timestamp_ms: event.timestamp_ms,
                    value: event.value,
                    due_ms,
                }));
            }
            Ok(added)
        })
    }

    fn take_due(&self, now_ms: i64, limit: usize, log_mark: u64) -> BoxFuture<'_, Result<Vec<Joined>, JoinError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let mut out = Vec::new();
            while out.len() < limit {
                let Some(first) = state.due.first() else { break };
                if first.0 > now_ms {
                    break;
                }
                let (_, request_id, item_id) = state.due.pop_first().expect("just peeked");
                let Some(held) = claim(&mut state, &request_id, &item_id) else { continue };
                out.extend(joined(&request_id, held, &item_id, 0));
            }
            // One record for the batch, before the joiner writes it (module doc).
            if !out.is_empty()
                && let Some(journal) = self.journal.get()
            {
                let items = journal_claims(&out);
                journal.append(journal_entry::Entry::ClaimBatch(JournalClaimBatch { mark: log_mark, items }));
            }
            Ok(out)
        })
    }

    fn confirm(&self) -> BoxFuture<'_, Result<(), JoinError>> {
        Box::pin(async move {
            if let Some(journal) = self.journal.get() {
                // Under the lock, so it follows the batch it confirms and precedes the next.
                let _state = self.lock();
                journal.append(journal_entry::Entry::Confirm(JournalConfirm {}));
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, claimed: &'a [Joined], now_ms: i64) -> BoxFuture<'a, Result<(), JoinError>> {
        Box::pin(async move {
            let mut state = self.lock();
            for j in claimed {
                unclaim(&mut state, &j.request_id, &j.item_id, now_ms);
            }
            if let Some(journal) = self.journal.get() {
                let items = journal_claims(claimed);
                journal.append(journal_entry::Entry::Release(JournalRelease { items, due_ms: now_ms }));
            }
            Ok(())
        })
    }

    fn reuse(&self, request_id: &str, item_ids: &[String]) -> Option<Reuse> {
        Some(self.lock().requests.get(request_id).map_or(Reuse::New, |held| reuse_of(held, item_ids)))
    }

    fn joined<'a>(
        &'a self,
        request_id: &'a str,
        item_id: &'a str,
        revision: u32,
    ) -> BoxFuture<'a, Result<Option<Joined>, JoinError>> {
        Box::pin(async move {
            Ok(self.lock().requests.get(request_id).and_then(|h| joined(request_id, h, item_id, revision)))
        })
    }

    fn expire(&self, now_ms: i64) -> Expired {
        let mut state = self.lock();
        let gone = expire(&mut state, now_ms);
        if let Some(journal) = self.journal.get() {
            journal.compact(now_ms, |request_id| state.requests.contains_key(request_id));
        }
        gone
    }

    fn pending(&self) -> Option<(usize, usize)> {
        let state = self.lock();
        Some((state.requests.len(), state.bytes))
    }
}

/// The journal's form of claimed candidates.
fn journal_claims(joined: &[Joined]) -> Vec<JournalClaim> {
    joined.iter().map(|j| JournalClaim { request_id: j.request_id.clone(), item_id: j.item_id.clone() }).collect()
}

/// A retry holds the same set of candidates; anything else is another prediction.
fn reuse_of(held: &Held, item_ids: &[String]) -> Reuse {
    let same = item_ids.iter().all(|id| held.items.contains_key(id))
        && held.items.len() == item_ids.iter().collect::<std::collections::HashSet<_>>().len();
    if same { Reuse::Retry } else { Reuse::Conflict }
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

#[derive(Clone, PartialEq, prost::Message)]
struct JournalEntry {
    #[prost(oneof = "journal_entry::Entry", tags = "1, 2, 3, 4, 5, 6")]
    entry: Option<journal_entry::Entry>,
}

mod journal_entry {
    /// One change of the store.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Entry {
        /// A prediction held (or, in a checkpoint, held with its labels so far).
        #[prost(message, tag = "1")]
        Put(super::PendingRequest),
        /// An event accepted (first or late).
        #[prost(message, tag = "2")]
        Event(super::JournalEvent),
        /// A candidate claimed for emission, final (written before claim batches existed).
        #[prost(message, tag = "3")]
        Claimed(super::JournalClaim),
        /// Candidates claimed for emission, before the joiner writes their samples.
        #[prost(message, tag = "4")]
        ClaimBatch(super::JournalClaimBatch),
        /// Every claim batch before this one is in the sample log.
        #[prost(message, tag = "5")]
        Confirm(super::JournalConfirm),
        /// The sample log refused these claimed candidates: due again.
        #[prost(message, tag = "6")]
        Release(super::JournalRelease),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct JournalEvent {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(string, tag = "2")]
    item_id: String,
    #[prost(string, tag = "3")]
    kind: String,
    #[prost(int64, tag = "4")]
    timestamp_ms: i64,
    #[prost(double, optional, tag = "5")]
    value: Option<f64>,
    #[prost(int64, tag = "6")]
    due_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct JournalClaim {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(string, tag = "2")]
    item_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct JournalClaimBatch {
    /// The sample log's last sequence before the batch was written.
    #[prost(uint64, tag = "1")]
    mark: u64,
    #[prost(message, repeated, tag = "2")]
    items: Vec<JournalClaim>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct JournalConfirm {}

#[derive(Clone, PartialEq, prost::Message)]
struct JournalRelease {
    #[prost(message, repeated, tag = "1")]
    items: Vec<JournalClaim>,
    #[prost(int64, tag = "2")]
    due_ms: i64,
}
