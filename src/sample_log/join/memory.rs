//! The in-memory join store: the embedded default. Bounded in bytes: what it charges is what its
//! structures hold (docs/samples.md, "Capacity"). A held prediction costs its encoded snapshot,
//! its request id and [`REQUEST_BYTES`] (map and index entries); each candidate its item id and
//! [`CANDIDATE_BYTES`]; each label its type and [`LABEL_BYTES`]; each candidate scheduled on its
//! own [`DUE_BYTES`] and [`OWN_BYTES`] (the candidates waiting for their `emit_unimpressed` slot
//! share one entry).
//! Two ways it outlives the process:
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
use std::mem::size_of;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prost::Message;

use super::{Added, Event, Expired, JoinError, JoinStore, Joined, Put, Reuse};
use crate::fetch::BoxFuture;
use crate::sample_log::config::SampleLogConfig;
use crate::sample_log::file::{LogError, LogReader, SegmentLog};
use crate::sample_log::metrics::SampleMetrics;

/// The journal's only reader: compaction advances it past expired predictions.
const COMPACTION: &str = "compaction";

/// B-tree index entries are charged at twice their size: keys appended at the end leave the
/// leaves a little over half full (the `join_heap` example measures it).
const INDEX_SLACK: usize = 2;

/// What a held prediction costs beside its snapshot, its id and its candidates: its entries in
/// the two maps (hash tables charged at their 7/8 maximum load, plus a control byte each), in
/// the expiry index and in the journal's compaction queue, and the id's `Arc` counts.
pub const REQUEST_BYTES: usize = (size_of::<(u64, Held)>() + size_of::<(Arc<str>, u64)>()) * 8 / 7
    + 2
    + INDEX_SLACK * size_of::<(i64, u64)>()
    + size_of::<(u64, i64, u64)>()
    + 2 * size_of::<usize>();

/// What a candidate costs beside its id's bytes: its state and the end offset of its id.
pub const CANDIDATE_BYTES: usize = size_of::<Candidate>() + size_of::<u32>();

/// What a label costs beside its type's bytes.
pub const LABEL_BYTES: usize = size_of::<Label>();

/// What a candidate scheduled on its own costs in the due index.
pub const DUE_BYTES: usize = INDEX_SLACK * size_of::<(i64, u64, u32)>();

/// What a candidate ever scheduled on its own costs in its prediction's list of due times.
pub const OWN_BYTES: usize = size_of::<(u32, i64)>();

/// The due index's rank for "every candidate still waiting for the `emit_unimpressed` slot".
const UNIMPRESSED: u32 = u32::MAX;

/// `Candidate::emitted` before the first emission.
const NOT_EMITTED: u32 = u32::MAX;

// Held by the hundred per prediction: a size change is a capacity change (docs/samples.md).
const _: () = assert!(size_of::<Candidate>() == 8);
const _: () = assert!(size_of::<Label>() == 48);

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
    /// (sequence, expires_ms, serial) of every put still in the journal, in journal order.
    puts: Mutex<std::collections::VecDeque<(u64, i64, u64)>>,
    metrics: SampleMetrics,
}

/// The indexes name a prediction by a serial (8 bytes) and a candidate by its rank among the
/// prediction's sorted item ids (4 bytes), not by their ids.
#[derive(Debug, Default)]
struct State {
    /// Request id -> serial of the prediction held under it.
    serials: HashMap<Arc<str>, u64>,
    requests: HashMap<u64, Held>,
    /// (due_ms, serial, rank) of every candidate scheduled on its own, and (due_ms, serial,
    /// [`UNIMPRESSED`]) for all of a prediction's candidates waiting for their unimpressed slot.
    due: BTreeSet<(i64, u64, u32)>,
    /// (expires_ms, serial).
    expiry: BTreeSet<(i64, u64)>,
    /// Charged for the held predictions and their labels (the due index: by its length).
    bytes: usize,
    /// The next put's serial.
    next: u64,
}

/// A held prediction.
#[derive(Debug)]
struct Held {
    request_id: Arc<str>,
    snapshot: Bytes,
    expires_ms: i64,
    /// When the candidates without an event are due (`emit_unimpressed`).
    unimpressed_ms: Option<i64>,
    /// The item ids sorted, deduplicated and concatenated: candidate `rank`'s id ends at
    /// `ends[rank]` and starts where the one before ends.
    ids: Box<str>,
    ends: Box<[u32]>,
    /// By rank.
    candidates: Box<[Candidate]>,
    /// (rank, due_ms) of the candidates scheduled on their own: here, not in every candidate,
    /// as most never are (room stays, charged, once one is claimed).
    own: Vec<(u32, i64)>,
    /// Every candidate's labels, in arrival order (a few per prediction, not per candidate).
    labels: Vec<Label>,
    /// Charged for it, labels included.
    bytes: usize,
}

/// One candidate's join state.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Revision of the last emission; [`NOT_EMITTED`] before the first.
    emitted: u32,
    /// Whether it had an event (its first schedules it).
    labelled: bool,
    schedule: Schedule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    /// Not due.
    No,
    /// In the due index at its time in `Held::own`.
    Own,
    /// Due with the prediction's other unimpressed candidates, at `Held::unimpressed_ms`.
    Unimpressed,
}

/// An event of a held candidate: the ids are the prediction's.
#[derive(Debug)]
struct Label {
    rank: u32,
    kind: Box<str>,
    timestamp_ms: i64,
    value: Option<f64>,
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
                    claim_id(&mut state, &c.request_id, &c.item_id);
                }
                Some(journal_entry::Entry::ClaimBatch(b)) => {
                    let items: Vec<(String, String)> = b.items.into_iter().map(|c| (c.request_id, c.item_id)).collect();
                    for (request_id, item_id) in &items {
                        claim_id(&mut state, request_id, item_id);
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
        let mut batch = Vec::new();
        for (serial, held) in &state.requests {
            batch.push((*serial, held.expires_ms, encode_put(held)));
            if batch.len() == 1024 {
                journal.put_many(std::mem::take(&mut batch));
            }
        }
        journal.put_many(batch);
        drop(state);
        let handle = std::sync::Arc::clone(&journal.log);
        // Set once: a second call would be a wiring bug, and the first journal stays in use.
        let _ = self.journal.set(journal);
        Ok(handle)
    }

    /// Whether `held` (for `request_id`, `item_ids`) is to be inserted: `Ok(false)` for a
    /// retried Predict (the first prediction keeps its labels); another prediction under a held
    /// id would have its events joined to the first, and one past `max_bytes` is refused.
    fn admit(&self, state: &State, request_id: &str, item_ids: &[String], held: &Held) -> Result<bool, JoinError> {
        if let Some(first) = state.held(request_id) {
            return match reuse_of(first, item_ids) {
                Reuse::Conflict => Err(JoinError::Reused { request_id: request_id.to_owned() }),
                Reuse::New | Reuse::Retry => Ok(false),
            };
        }
        let slot = if held.unimpressed_ms.is_some() && held.len() > 0 { DUE_BYTES } else { 0 };
        if state.bytes() + held.bytes + slot > self.max_bytes {
            return Err(JoinError::Full { max_bytes: self.max_bytes });
        }
        Ok(true)
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
        file.requests.extend(state.requests.values().map(pending_request));
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

/// A prediction as held, without labels.
fn new_held(
    request_id: &str,
    snapshot: Bytes,
    item_ids: &[String],
    expires_ms: i64,
    unimpressed_due_ms: Option<i64>,
) -> Held {
    let schedule = if unimpressed_due_ms.is_some() { Schedule::Unimpressed } else { Schedule::No };
    let candidates = item_ids.iter().map(|id| (id.as_str(), Candidate::new(schedule))).collect();
    Held::new(request_id.into(), snapshot, expires_ms, unimpressed_due_ms, candidates)
}

/// The file and journal form of a held prediction.
fn pending_request(held: &Held) -> PendingRequest {
    let mut items: Vec<PendingItem> = (0..held.len())
        .map(|rank| {
            let c = &held.candidates[rank as usize];
            PendingItem {
                item_id: held.id(rank).to_owned(),
                due_ms: held.due_ms(rank, c),
                emitted: c.emitted(),
                labels: Vec::new(),
            }
        })
        .collect();
    for l in &held.labels {
        items[l.rank as usize].labels.push(PendingLabel {
            kind: l.kind.to_string(),
            timestamp_ms: l.timestamp_ms,
            value: l.value,
        });
    }
    PendingRequest {
        request_id: held.request_id.to_string(),
        snapshot: held.snapshot.to_vec(),
        expires_ms: held.expires_ms,
        items,
    }
}

/// `JournalEntry { Put(pending_request(held)) }` encoded straight from `held`: the same bytes
/// (test `encode_put_is_the_prost_encoding`) without copying the snapshot into a message or
/// cloning every item id first. The journal writes one per logged prediction.
fn encode_put(held: &Held) -> Vec<u8> {
    use prost::encoding::{WireType, double, encode_key, encode_varint, encoded_len_varint, int64, key_len, uint32};
    let bytes_len = |tag: u32, len: usize| key_len(tag) + encoded_len_varint(len as u64) + len;
    let put_bytes = |tag: u32, bytes: &[u8], buf: &mut Vec<u8>| {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(bytes.len() as u64, buf);
        buf.extend_from_slice(bytes);
    };
    let label_len = |l: &Label| {
        (if l.kind.is_empty() { 0 } else { bytes_len(1, l.kind.len()) })
            + (if l.timestamp_ms == 0 { 0 } else { int64::encoded_len(2, &l.timestamp_ms) })
            + l.value.map_or(0, |v| double::encoded_len(3, &v))
    };
    let labels = |rank: u32| held.labels.iter().filter(move |l| l.rank == rank);
    let item_len = |rank: u32| {
        let c = &held.candidates[rank as usize];
        let id = held.id(rank);
        (if id.is_empty() { 0 } else { bytes_len(1, id.len()) })
            + held.due_ms(rank, c).map_or(0, |due| int64::encoded_len(2, &due))
            + c.emitted().map_or(0, |e| uint32::encoded_len(3, &e))
            + labels(rank).map(|l| bytes_len(4, label_len(l))).sum::<usize>()
    };
    let items: Vec<usize> = (0..held.len()).map(item_len).collect();
    let request_len = (if held.request_id.is_empty() { 0 } else { bytes_len(1, held.request_id.len()) })
        + (if held.snapshot.is_empty() { 0 } else { bytes_len(2, held.snapshot.len()) })
        + (if held.expires_ms == 0 { 0 } else { int64::encoded_len(3, &held.expires_ms) })
        + items.iter().map(|&n| bytes_len(4, n)).sum::<usize>();
    let mut buf = Vec::with_capacity(bytes_len(1, request_len));
    // JournalEntry.put (field 1) holding the PendingRequest.
    encode_key(1, WireType::LengthDelimited, &mut buf);
    encode_varint(request_len as u64, &mut buf);
    if !held.request_id.is_empty() {
        put_bytes(1, held.request_id.as_bytes(), &mut buf);
    }
    if !held.snapshot.is_empty() {
        put_bytes(2, &held.snapshot, &mut buf);
    }
    if held.expires_ms != 0 {
        int64::encode(3, &held.expires_ms, &mut buf);
    }
    for (rank, &len) in (0..held.len()).zip(&items) {
        let c = &held.candidates[rank as usize];
        encode_key(4, WireType::LengthDelimited, &mut buf);
        encode_varint(len as u64, &mut buf);
        let id = held.id(rank);
        if !id.is_empty() {
            put_bytes(1, id.as_bytes(), &mut buf);
        }
        if let Some(due) = held.due_ms(rank, c) {
            int64::encode(2, &due, &mut buf);
        }
        if let Some(e) = c.emitted() {
            uint32::encode(3, &e, &mut buf);
        }
        for l in labels(rank) {
            encode_key(4, WireType::LengthDelimited, &mut buf);
            encode_varint(label_len(l) as u64, &mut buf);
            if !l.kind.is_empty() {
                put_bytes(1, l.kind.as_bytes(), &mut buf);
            }
            if l.timestamp_ms != 0 {
                int64::encode(2, &l.timestamp_ms, &mut buf);
            }
            if let Some(v) = l.value {
                double::encode(3, &v, &mut buf);
            }
        }
    }
    buf
}

/// Holds `r` again (a later put of the same request replaces it: a checkpoint's is newer).
fn restore(state: &mut State, r: PendingRequest, now_ms: i64) {
    if r.expires_ms <= now_ms && !r.items.iter().any(|i| i.due_ms.is_some()) {
        return;
    }
    remove_id(state, &r.request_id);
    // Never after the window closes (a file written before due times were capped).
    let due = |i: &PendingItem| i.due_ms.map(|d| d.min(r.expires_ms));
    // The candidates due without an event share one slot again (those released after a claim
    // may be due at another time: they keep their own).
    let unimpressed_ms = r.items.iter().filter(|i| i.labels.is_empty() && i.emitted.is_none()).find_map(due);
    let candidates = r
        .items
        .iter()
        .map(|i| {
            let labelled = !i.labels.is_empty();
            let schedule = match due(i) {
                None => Schedule::No,
                Some(d) if !labelled && i.emitted.is_none() && Some(d) == unimpressed_ms => Schedule::Unimpressed,
                Some(_) => Schedule::Own,
            };
            let candidate = Candidate { emitted: i.emitted.unwrap_or(NOT_EMITTED), labelled, schedule };
            (i.item_id.as_str(), candidate)
        })
        .collect();
    let request_id = Arc::from(r.request_id.as_str());
    let mut held = Held::new(request_id, Bytes::from(r.snapshot), r.expires_ms, unimpressed_ms, candidates);
    held.labels.reserve_exact(r.items.iter().map(|i| i.labels.len()).sum());
    for item in r.items {
        let Some(rank) = held.rank(&item.item_id) else { continue };
        if let Some(due) = due(&item)
            && held.candidates[rank as usize].schedule == Schedule::Own
        {
            held.set_own(rank, due);
        }
        for l in item.labels {
            held.push_label(rank, &l.kind, l.timestamp_ms, l.value);
        }
    }
    let serial = state.next_serial();
    state.insert(serial, held);
}

/// Forgets the prediction held under `request_id`.
fn remove_id(state: &mut State, request_id: &str) -> bool {
    state.serials.get(request_id).copied().is_some_and(|serial| remove(state, serial))
}

/// Forgets a held prediction and its index entries.
fn remove(state: &mut State, serial: u64) -> bool {
    let Some(held) = state.requests.remove(&serial) else { return false };
    state.serials.remove(&held.request_id);
    state.bytes -= held.bytes;
    state.expiry.remove(&(held.expires_ms, serial));
    if let Some(due) = held.unimpressed_ms {
        state.due.remove(&(due, serial, UNIMPRESSED));
    }
    for &(rank, due) in &held.own {
        state.due.remove(&(due, serial, rank));
    }
    true
}

/// Removes the predictions whose window closed by `now_ms`, except those with a candidate still
/// scheduled: they stay until the joiner emitted it (due times are capped at the close, so that
/// is the next tick unless the sample log refuses).
fn expire(state: &mut State, now_ms: i64) -> Expired {
    let mut gone = Expired::default();
    let mut waiting = Vec::new();
    while let Some(&(expires, serial)) = state.expiry.first() {
        if expires > now_ms {
            break;
        }
        state.expiry.pop_first();
        let Some(held) = state.requests.get(&serial) else { continue };
        if held.candidates.iter().any(|c| c.schedule != Schedule::No) {
            waiting.push((expires, serial));
            continue;
        }
        gone.unlabelled += held.candidates.iter().filter(|c| c.emitted == NOT_EMITTED && !c.labelled).count();
        gone.requests += usize::from(remove(state, serial));
    }
    state.expiry.extend(waiting);
    gone
}

fn add_event(state: &mut State, max_bytes: usize, event: &Event, due_ms: i64) -> Result<Added, JoinError> {
    let Some(&serial) = state.serials.get(event.request_id.as_str()) else { return Ok(Added::Orphan) };
    let Some(held) = state.requests.get_mut(&serial) else { return Ok(Added::Orphan) };
    // At the latest when the window closes: the sample goes with the labels known by then.
    let due_ms = due_ms.min(held.expires_ms);
    let Some(rank) = held.rank(&event.item_id) else { return Ok(Added::Orphan) };
    if held.labels_of(rank).any(|l| *l.kind == *event.kind) {
        return Ok(Added::Duplicate);
    }
    let candidate = held.candidates[rank as usize];
    // The first event schedules it at its wait; an earlier unimpressed slot moves to it.
    let schedules = !candidate.labelled && candidate.emitted == NOT_EMITTED;
    let entry = if schedules && candidate.schedule != Schedule::Own { DUE_BYTES + OWN_BYTES } else { 0 };
    if state.bytes + state.due.len() * DUE_BYTES + label_bytes(&event.kind) + entry > max_bytes {
        return Err(JoinError::Full { max_bytes });
    }
    state.bytes += held.push_label(rank, &event.kind, event.timestamp_ms, event.value);
    let candidate = &mut held.candidates[rank as usize];
    candidate.labelled = true;
    if candidate.emitted != NOT_EMITTED {
        candidate.emitted += 1;
        return Ok(Added::Late { revision: candidate.emitted });
    }
    if schedules {
        schedule(state, serial, rank, due_ms);
    }
    Ok(Added::Accepted)
}

/// Marks candidate `rank` of prediction `serial` emitted at revision 0; `None` when it is not
/// held.
fn claim(state: &mut State, serial: u64, rank: u32) -> Option<&Held> {
    let held = state.requests.get_mut(&serial)?;
    if let Some(due) = held.take_own(rank) {
        state.due.remove(&(due, serial, rank));
    }
    let candidate = held.candidates.get_mut(rank as usize)?;
    // One left in the unimpressed slot is no longer in it; the slot's entry goes when it comes
    // due or the prediction leaves.
    candidate.schedule = Schedule::No;
    candidate.emitted = 0;
    Some(held)
}

/// [`claim`] by ids.
fn claim_id(state: &mut State, request_id: &str, item_id: &str) {
    if let Some((serial, rank)) = state.find(request_id, item_id) {
        claim(state, serial, rank);
    }
}

/// Undoes a claim at revision 0 (the sample log does not have its sample): due at `due_ms`.
/// `false` when the candidate is not held or a later revision was emitted meanwhile.
fn unclaim(state: &mut State, request_id: &str, item_id: &str, due_ms: i64) -> bool {
    let Some((serial, rank)) = state.find(request_id, item_id) else { return false };
    let Some(held) = state.requests.get_mut(&serial) else { return false };
    let candidate = &mut held.candidates[rank as usize];
    if candidate.emitted != 0 {
        return false;
    }
    candidate.emitted = NOT_EMITTED;
    schedule(state, serial, rank, due_ms);
    true
}

/// Schedules candidate `rank` of prediction `serial` on its own at `due_ms` (an earlier own
/// time or the unimpressed slot gives way).
fn schedule(state: &mut State, serial: u64, rank: u32, due_ms: i64) {
    let Some(held) = state.requests.get_mut(&serial) else { return };
    if let Some(old) = held.own_due(rank) {
        state.due.remove(&(old, serial, rank));
    }
    state.bytes += held.set_own(rank, due_ms);
    held.candidates[rank as usize].schedule = Schedule::Own;
    state.due.insert((due_ms, serial, rank));
}

/// What a label of type `kind` is charged.
fn label_bytes(kind: &str) -> usize {
    LABEL_BYTES + kind.len()
}

/// What the first event of a candidate not scheduled yet is charged (the tests fill a store
/// exactly).
#[cfg(test)]
pub(crate) fn first_event_bytes(kind: &str) -> usize {
    label_bytes(kind) + DUE_BYTES + OWN_BYTES
}

// === impl State ===

impl State {
    /// Charged in all.
    fn bytes(&self) -> usize {
        self.bytes + self.due.len() * DUE_BYTES
    }

    fn held(&self, request_id: &str) -> Option<&Held> {
        self.serials.get(request_id).and_then(|serial| self.requests.get(serial))
    }

    /// (serial, rank) of a held candidate.
    fn find(&self, request_id: &str, item_id: &str) -> Option<(u64, u32)> {
        let serial = *self.serials.get(request_id)?;
        Some((serial, self.requests.get(&serial)?.rank(item_id)?))
    }

    fn next_serial(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Holds `held` under `serial` (from [`State::next_serial`]), with its index entries.
    fn insert(&mut self, serial: u64, held: Held) {
        if let Some(due) = held.unimpressed_ms
            && held.candidates.iter().any(|c| c.schedule == Schedule::Unimpressed)
        {
            self.due.insert((due, serial, UNIMPRESSED));
        }
        for &(rank, due) in &held.own {
            self.due.insert((due, serial, rank));
        }
        self.bytes += held.bytes;
        self.expiry.insert((held.expires_ms, serial));
        self.serials.insert(Arc::clone(&held.request_id), serial);
        self.requests.insert(serial, held);
    }
}

// === impl Held ===

impl Held {
    /// A prediction of `candidates` (in any order, repeats ignored), without labels.
    fn new(
        request_id: Arc<str>,
        snapshot: Bytes,
        expires_ms: i64,
        unimpressed_ms: Option<i64>,
        mut candidates: Vec<(&str, Candidate)>,
    ) -> Self {
        // Unstable (no scratch buffer): a put's repeats are identical (every candidate starts the
        // same), and a restored prediction has none.
        candidates.sort_unstable_by(|a, b| a.0.cmp(b.0));
        candidates.dedup_by(|a, b| a.0 == b.0);
        let mut ids = String::with_capacity(candidates.iter().map(|(id, _)| id.len()).sum());
        let mut ends = Vec::with_capacity(candidates.len());
        for (id, _) in &candidates {
            ids.push_str(id);
            // A prediction's ids came in one gRPC message: far below 4 GiB.
            ends.push(ids.len() as u32);
        }
        let candidates: Box<[Candidate]> = candidates.into_iter().map(|(_, c)| c).collect();
        let bytes = REQUEST_BYTES + request_id.len() + snapshot.len() + ids.len() + candidates.len() * CANDIDATE_BYTES;
        Held {
            request_id,
            snapshot,
            expires_ms,
            unimpressed_ms,
            ids: ids.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            candidates,
            own: Vec::new(),
            labels: Vec::new(),
            bytes,
        }
    }

    fn len(&self) -> u32 {
        self.ends.len() as u32
    }

    /// Candidate `rank`'s item id.
    fn id(&self, rank: u32) -> &str {
        let rank = rank as usize;
        let start = if rank == 0 { 0 } else { self.ends[rank - 1] as usize };
        &self.ids[start..self.ends[rank] as usize]
    }

    /// The rank of `item_id`, when it is a candidate.
    fn rank(&self, item_id: &str) -> Option<u32> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.id(mid).cmp(item_id) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn labels_of(&self, rank: u32) -> impl Iterator<Item = &Label> {
        self.labels.iter().filter(move |l| l.rank == rank)
    }

    /// When `candidate` is due, if it is scheduled.
    fn due_ms(&self, rank: u32, candidate: &Candidate) -> Option<i64> {
        match candidate.schedule {
            Schedule::No => None,
            Schedule::Own => self.own_due(rank),
            Schedule::Unimpressed => self.unimpressed_ms,
        }
    }

    /// Candidate `rank`'s own due time, if it is scheduled on its own.
    fn own_due(&self, rank: u32) -> Option<i64> {
        self.own.iter().find(|(r, _)| *r == rank).map(|&(_, due)| due)
    }

    /// Sets candidate `rank`'s own due time; returns what the room for it is charged.
    fn set_own(&mut self, rank: u32, due_ms: i64) -> usize {
        if let Some(entry) = self.own.iter_mut().find(|(r, _)| *r == rank) {
            entry.1 = due_ms;
            return 0;
        }
        let room = self.own.capacity();
        // Exactly, as the labels.
        self.own.reserve_exact(1);
        self.own.push((rank, due_ms));
        let cost = (self.own.capacity() - room) * OWN_BYTES;
        self.bytes += cost;
        cost
    }

    /// Takes candidate `rank`'s own due time out.
    fn take_own(&mut self, rank: u32) -> Option<i64> {
        let at = self.own.iter().position(|(r, _)| *r == rank)?;
        Some(self.own.swap_remove(at).1)
    }

    /// Adds a label to candidate `rank`; returns what it is charged.
    fn push_label(&mut self, rank: u32, kind: &str, timestamp_ms: i64, value: Option<f64>) -> usize {
        // Exactly: a prediction holds a few labels, and growth by doubling would hold up to as
        // much again unused.
        self.labels.reserve_exact(1);
        self.labels.push(Label { rank, kind: kind.into(), timestamp_ms, value });
        let cost = label_bytes(kind);
        self.bytes += cost;
        cost
    }

    /// Candidate `rank` with every label so far, as a sample (or a correction at `revision`).
    fn joined(&self, rank: u32, revision: u32) -> Joined {
        let (request_id, item_id) = (self.request_id.to_string(), self.id(rank).to_owned());
        let labels = self
            .labels_of(rank)
            .map(|l| Event {
                request_id: request_id.clone(),
                item_id: item_id.clone(),
                kind: l.kind.to_string(),
                timestamp_ms: l.timestamp_ms,
                value: l.value,
            })
            .collect();
        Joined { request_id, snapshot: self.snapshot.clone(), item_id, labels, revision }
    }
}

// === impl Candidate ===

impl Candidate {
    fn new(schedule: Schedule) -> Self {
        Candidate { emitted: NOT_EMITTED, labelled: false, schedule }
    }

    /// Revision of the last emission, if any.
    fn emitted(&self) -> Option<u32> {
        (self.emitted != NOT_EMITTED).then_some(self.emitted)
    }
}

// === impl Journal ===

impl Journal {
    fn append(&self, entry: journal_entry::Entry) -> Option<u64> {
        self.append_encoded(JournalEntry { entry: Some(entry) }.encode_to_vec())
    }

    /// Appends an encoded [`JournalEntry`].
    fn append_encoded(&self, payload: Vec<u8>) -> Option<u64> {
        match self.log.append(&[payload]) {
            Ok(sequence) => Some(sequence),
            Err(e) => {
                self.write_failed(&e, 1);
                None
            }
        }
    }

    fn write_failed(&self, error: &LogError, records: usize) {
        // The store keeps working; only a crash before the next checkpoint would lose it.
        self.metrics
            .dropped
            .get_or_create(&crate::sample_log::metrics::ReasonLabels { reason: "journal_write".to_owned() })
            .inc_by(records as u64);
        tracing::warn!(error = %error, records, "join journal write failed");
    }

    /// Appends the puts `(serial, expires_ms, encode_put(held))` in one write.
    fn put_many(&self, puts: Vec<(u64, i64, Vec<u8>)>) {
        if puts.is_empty() {
            return;
        }
        let mut index = Vec::with_capacity(puts.len());
        let mut payloads = Vec::with_capacity(puts.len());
        for (serial, expires_ms, payload) in puts {
            index.push((expires_ms, serial));
            payloads.push(payload);
        }
        match self.log.append(&payloads) {
            Ok(last) => {
                // The log numbers a batch's records consecutively, ending at `last`.
                let first = last + 1 - index.len() as u64;
                let mut queue = self.puts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (sequence, (expires_ms, serial)) in (first..).zip(index) {
                    queue.push_back((sequence, expires_ms, serial));
                }
            }
            Err(e) => self.write_failed(&e, index.len()),
        }
    }

    /// Deletes the segments holding only the records of predictions no longer held (`held`
    /// tells: one past its window still waits while a candidate of it is scheduled).
    fn compact(&self, now_ms: i64, held: impl Fn(u64) -> bool) {
        let mut puts = self.puts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut past = None;
        while let Some(&(sequence, expires, serial)) = puts.front() {
            if expires > now_ms || held(serial) {
                break;
            }
            past = Some(sequence);
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
            let held = new_held(request_id, snapshot, item_ids, expires_ms, unimpressed_due_ms);
            let mut state = self.lock();
            if !self.admit(&state, request_id, item_ids, &held)? {
                return Ok(());
            }
            let serial = state.next_serial();
            // Journaled under the lock, so the journal's order is the state's.
            if let Some(journal) = self.journal.get() {
                journal.put_many(vec![(serial, held.expires_ms, encode_put(&held))]);
            }
            state.insert(serial, held);
            Ok(())
        })
    }

    fn put_many<'a>(&'a self, puts: &'a [Put]) -> BoxFuture<'a, Vec<Result<(), JoinError>>> {
        Box::pin(async move {
            // Built and encoded before the lock: Predict's reuse check and ReportEvents take it.
            let journal = self.journal.get();
            let helds: Vec<(Held, Option<Vec<u8>>)> = puts
                .iter()
                .map(|p| {
                    let held =
                        new_held(&p.request_id, p.snapshot.clone(), &p.item_ids, p.expires_ms, p.unimpressed_due_ms);
                    let encoded = journal.map(|_| encode_put(&held));
                    (held, encoded)
                })
                .collect();
            let mut results = Vec::with_capacity(puts.len());
            let mut journaled = Vec::new();
            let mut state = self.lock();
            for (p, (held, encoded)) in puts.iter().zip(helds) {
                results.push(match self.admit(&state, &p.request_id, &p.item_ids, &held) {
                    Ok(true) => {
                        let serial = state.next_serial();
                        if let Some(encoded) = encoded {
                            journaled.push((serial, held.expires_ms, encoded));
                        }
                        state.insert(serial, held);
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                });
            }
            // One write for the batch, under the lock, so the journal's order is the state's.
            if let Some(journal) = journal {
                journal.put_many(journaled);
            }
            results
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
            let mut guard = self.lock();
            let state = &mut *guard;
            let mut out = Vec::new();
            while out.len() < limit {
                let Some(&(due, serial, rank)) = state.due.first() else { break };
                if due > now_ms {
                    break;
                }
                state.due.pop_first();
                if rank != UNIMPRESSED {
                    out.extend(claim(state, serial, rank).map(|held| held.joined(rank, 0)));
                    continue;
                }
                // The unimpressed slot: every candidate still in it, as far as the limit goes.
                let Some(held) = state.requests.get_mut(&serial) else { continue };
                let mut ranks = Vec::new();
                for (rank, candidate) in held.candidates.iter_mut().enumerate() {
                    if candidate.schedule != Schedule::Unimpressed {
                        continue;
                    }
                    if out.len() + ranks.len() == limit {
                        state.due.insert((due, serial, UNIMPRESSED));
                        break;
                    }
                    candidate.schedule = Schedule::No;
                    candidate.emitted = 0;
                    ranks.push(rank as u32);
                }
                out.extend(ranks.into_iter().map(|rank| held.joined(rank, 0)));
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

    fn reuse(&self, request_id: &str, item_ids: &[&str]) -> Option<Reuse> {
        Some(self.lock().held(request_id).map_or(Reuse::New, |held| reuse_of(held, item_ids)))
    }

    fn joined<'a>(
        &'a self,
        request_id: &'a str,
        item_id: &'a str,
        revision: u32,
    ) -> BoxFuture<'a, Result<Option<Joined>, JoinError>> {
        Box::pin(async move {
            let state = self.lock();
            let held = state.held(request_id);
            Ok(held.and_then(|h| Some(h.joined(h.rank(item_id)?, revision))))
        })
    }

    fn expire(&self, now_ms: i64) -> Expired {
        let mut state = self.lock();
        let gone = expire(&mut state, now_ms);
        if let Some(journal) = self.journal.get() {
            journal.compact(now_ms, |serial| state.requests.contains_key(&serial));
        }
        gone
    }

    fn pending(&self) -> Option<(usize, usize)> {
        let state = self.lock();
        Some((state.requests.len(), state.bytes()))
    }
}

/// The journal's form of claimed candidates.
fn journal_claims(joined: &[Joined]) -> Vec<JournalClaim> {
    joined.iter().map(|j| JournalClaim { request_id: j.request_id.clone(), item_id: j.item_id.clone() }).collect()
}

/// A retry holds the same set of candidates; anything else is another prediction.
fn reuse_of<S: AsRef<str>>(held: &Held, item_ids: &[S]) -> Reuse {
    let same = item_ids.iter().all(|id| held.rank(id.as_ref()).is_some())
        && held.len() as usize == item_ids.iter().map(AsRef::as_ref).collect::<std::collections::HashSet<&str>>().len();
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

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    fn event(request_id: &str, item_id: &str, kind: &str, timestamp_ms: i64, value: Option<f64>) -> Event {
        Event { request_id: request_id.into(), item_id: item_id.into(), kind: kind.into(), timestamp_ms, value }
    }

    /// The hand-written journal put is byte for byte what prost writes, in every state a held
    /// prediction can be in: fresh, unimpressed-scheduled, labelled, claimed, with empty ids.
    #[test]
    fn encode_put_is_the_prost_encoding() {
        let store = MemoryJoinStore::new(1 << 30);
        let ids: Vec<String> = ["b", "", "a", "c10", "d"].map(String::from).to_vec();
        let snapshot = Bytes::from_static(b"\x0a\x02r1 not really a snapshot");
        store.put("fresh", snapshot.clone(), &ids, 5_000, None).now_or_never().unwrap().unwrap();
        store.put("unimpressed", snapshot.clone(), &ids, -7, Some(4_000)).now_or_never().unwrap().unwrap();
        store.put("", Bytes::new(), &ids[..2], 0, None).now_or_never().unwrap().unwrap();
        store.put("busy", snapshot, &ids, 9_000, Some(8_000)).now_or_never().unwrap().unwrap();
        for e in [
            event("busy", "a", "impression", 100, None),
            event("busy", "a", "click", 0, Some(-2.5)),
            event("busy", "c10", "impression", 120, Some(0.0)),
            event("busy", "", "conversion", -3, None),
        ] {
            store.add_event(&e, e.timestamp_ms + 10).now_or_never().unwrap().unwrap();
        }
        assert_eq!(store.take_due(200, 1, 0).now_or_never().unwrap().unwrap().len(), 1, "one claimed");
        let state = store.lock();
        for request_id in ["fresh", "unimpressed", "", "busy"] {
            let held = state.held(request_id).expect("held");
            let prost = JournalEntry { entry: Some(journal_entry::Entry::Put(pending_request(held))) }.encode_to_vec();
            assert_eq!(encode_put(held), prost, "{request_id:?}");
        }
    }
}
