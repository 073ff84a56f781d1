//! The in-memory join store's journal replay (`MemoryJoinStore::replay`, run at start-up on what
//! a crash left) over a journal of arbitrary records: the payloads are written through the
//! segment log's own `append` (so checksums hold and replay sees exactly these payloads), then
//! replayed; what it restored is then served: claimed by `take_due`, each claim's stored snapshot
//! decoded and turned into samples as the joiner does, and expired.
//!
//! Input: payloads, each `length: u16 le | bytes` (a short last one takes what is left).
//!
//! Asserts: replay of a readable journal never fails, reads every record and finds no corrupt
//! spot (a payload that is not a journal entry is skipped, not counted as disk damage); a claim
//! carries a held item.
#![no_main]

use augur::proto::Snapshot;
use augur::sample_log::config::SampleLogConfig;
use augur::sample_log::file::SegmentLog;
use augur::sample_log::join::JoinStore;
use augur::sample_log::join::memory::MemoryJoinStore;
use augur::sample_log::metrics::SampleMetrics;
use augur::sample_log::snapshot::samples;
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Replay's clock: inside the timestamps the seeds use, so some predictions are still held.
const NOW_MS: i64 = 1_000_000;

fn payloads(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((length, rest)) = data.split_first_chunk::<2>() {
        let n = usize::from(u16::from_le_bytes(*length)).min(rest.len());
        out.push(rest[..n].to_vec());
        data = &rest[n..];
    }
    out
}

/// A fresh directory, in memory when the machine has /dev/shm: the log fsyncs, and on a disk
/// that caps the target at a few hundred runs a second.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new();
    if shm.is_dir() { builder.tempdir_in(shm) } else { builder.tempdir() }.expect("a temp dir")
}

fuzz_target!(|data: &[u8]| {
    let payloads = payloads(data);
    let dir = scratch_dir();
    let journal = dir.path().join("journal");
    {
        let config = SampleLogConfig { dir: journal.clone(), ..SampleLogConfig::default() };
        let (log, _) = SegmentLog::open(&config, &[], SampleMetrics::default()).expect("open an empty journal");
        log.append(&payloads).expect("append the records");
    }
    let store = MemoryJoinStore::new(1 << 20);
    let replayed = store.replay(&journal, NOW_MS).expect("replay of a readable journal");
    assert_eq!(replayed.records, payloads.len() as u64, "records read");
    assert_eq!(replayed.corrupt, 0, "corrupt spots in a journal written whole");
    let _ = store.settle(&replayed.in_doubt, &Default::default(), NOW_MS);
    let claimed = store.take_due(i64::MAX, 64, 0).now_or_never().expect("the memory store does not wait");
    for joined in claimed.expect("take_due") {
        let Ok(snapshot) = Snapshot::decode(joined.snapshot) else { continue };
        let _ = samples(&snapshot, &joined.item_id, &joined.labels, joined.revision, NOW_MS);
    }
    store.expire(i64::MAX);
});
