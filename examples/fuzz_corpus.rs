//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`) from real inputs: encoded
//! Predict requests, the `features/*.yaml` specs, segment files and a join journal written by
//! `SegmentLog` / `MemoryJoinStore`, snapshots from `Served::to_proto`, and HMGET replies as RESP.
//!
//! `cargo run --example fuzz_corpus -- fuzz/corpus` (see fuzz/README.md). Rerunning it rewrites
//! the same inputs (the Predict requests' map entries may come out in another order).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use augur::assemble::{Fallback, FallbackReason, Spec, Tensor, TensorData};
use augur::proto::{Candidate, FeatureValue, PredictRequest, feature_value::Kind};
use augur::sample_log::config::SampleLogConfig;
use augur::sample_log::file::{LogReader, SegmentLog};
use augur::sample_log::join::memory::MemoryJoinStore;
use augur::sample_log::join::{Event, JoinStore};
use augur::sample_log::metrics::SampleMetrics;
use augur::sample_log::snapshot::{self, Served};
use futures_util::FutureExt;
use prost::Message;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    predict_requests(&out.join("predict_request"))?;
    feature_specs(&out.join("feature_spec"))?;
    segments(&out.join("segment_reader"))?;
    snapshots(&out.join("snapshot"))?;
    journal(&out.join("join_journal"))?;
    redis_rows(&out.join("redis_row"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn value(kind: Kind) -> FeatureValue {
    FeatureValue { kind: Some(kind) }
}

fn predict_requests(dir: &Path) -> anyhow::Result<()> {
    let context: HashMap<String, FeatureValue> =
        [("hour".to_owned(), value(Kind::IntValue(13))), ("device".to_owned(), value(Kind::StringValue("ios".into())))]
            .into();
    let candidate = |i: usize| Candidate {
        item_id: format!("i{}", 10_000 + i),
        features: if i.is_multiple_of(2) {
            [("price".to_owned(), value(Kind::FloatValue(12.5)))].into()
        } else {
            HashMap::new()
        },
    };
    let full = PredictRequest {
        request_id: "r-1".into(),
        scene: "ranking".into(),
        user_id: "u42".into(),
        context,
        candidates: (0..5).map(candidate).collect(),
        model_version: String::new(),
    };
    write(dir, "ranking", &full.encode_to_vec())?;
    let pinned = PredictRequest { model_version: "3".into(), candidates: vec![candidate(0)], ..full.clone() };
    write(dir, "pinned_version", &pinned.encode_to_vec())?;
    let bare =
        PredictRequest { scene: "ranking".into(), candidates: vec![Candidate::default(); 3], ..Default::default() };
    write(dir, "empty_candidates", &bare.encode_to_vec())?;
    write(dir, "no_candidates", &PredictRequest { candidates: Vec::new(), ..full }.encode_to_vec())?;
    Ok(())
}

fn feature_specs(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir("features")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            write(dir, &name, &std::fs::read(&path)?)?;
        }
    }
    Ok(())
}

fn served(request_id: &str, timestamp_ms: i64) -> Served {
    Served {
        request_id: request_id.to_owned(),
        timestamp_ms,
        scene: "ranking".to_owned(),
        model_name: "ranking".to_owned(),
        model_version: "3".to_owned(),
        user_id: "u1".to_owned(),
        item_ids: vec!["a".into(), "b".into(), "a".into()],
        scores: vec![0.1, 0.2, 0.3],
        inputs: Arc::from(vec![
            // Column 0 is the same in every row: stored once, as a shared column.
            Tensor { name: "ids".into(), width: 3, data: TensorData::I64(vec![7, 2, 3, 7, 12, 13, 7, 22, 23]) },
            Tensor { name: "dense".into(), width: 1, data: TensorData::F32(vec![0.5, 1.5, 2.5]) },
        ]),
        fallbacks: vec![
            Fallback { feature: "item_price".into(), reason: FallbackReason::MissingRow, candidates: vec![1] },
            Fallback { feature: "user_age".into(), reason: FallbackReason::Timeout, candidates: Vec::new() },
        ],
    }
}

fn sample_records() -> Vec<Vec<u8>> {
    let snap = served("r-1", 1_000).to_proto();
    let event =
        Event { request_id: "r-1".into(), item_id: "b".into(), kind: "click".into(), timestamp_ms: 1_500, value: None };
    let mut records: Vec<Vec<u8>> = snapshot::samples(&snap, "a", std::slice::from_ref(&event), 0, 2_000)
        .iter()
        .map(Message::encode_to_vec)
        .collect();
    records.push(snapshot::orphan(&event).encode_to_vec());
    records
}

/// Segment-reader input: `flags | split: u16 le | bytes` (see fuzz_targets/segment_reader.rs).
fn segments(dir: &Path) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // One segment of real records.
    let config = SampleLogConfig { dir: tmp.path().join("one"), ..SampleLogConfig::default() };
    let (log, _) = SegmentLog::open(&config, &[], SampleMetrics::default())?;
    log.append(&sample_records())?;
    drop(log);
    let files = segment_files(&config.dir)?;
    let one = std::fs::read(&files[0].1)?;
    write(dir, "one_segment", &[&[0, 0, 0][..], &one].concat())?;
    // A torn tail: the last record cut short.
    write(dir, "torn_tail", &[&[0, 0, 0][..], &one[..one.len() - 5]].concat())?;
    // Two segments: a small segment bound rotates after each batch.
    let config = SampleLogConfig { dir: tmp.path().join("two"), segment_max_bytes: 150, ..SampleLogConfig::default() };
    let (log, _) = SegmentLog::open(&config, &[], SampleMetrics::default())?;
    for record in sample_records() {
        log.append(&[record])?;
    }
    drop(log);
    let files = segment_files(&config.dir)?;
    anyhow::ensure!(files.len() >= 2, "expected rotation, got {} segment(s)", files.len());
    let (first, second) = (std::fs::read(&files[0].1)?, std::fs::read(&files[1].1)?);
    let flags = 1 | u8::try_from(files[1].0 - 1)? << 1;
    let split = u16::try_from(first.len())?.to_le_bytes();
    write(dir, "two_segments", &[&[flags][..], &split, &first, &second].concat())?;
    more_segments(dir, tmp.path())
}

/// One segment written by `SegmentLog` from `batches` (each one `append`), then the bytes of each
/// segment file, in sequence order.
fn written(dir: PathBuf, segment_max_bytes: u64, batches: &[Vec<Vec<u8>>]) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
    let config = SampleLogConfig { dir, segment_max_bytes, ..SampleLogConfig::default() };
    let (log, _) = SegmentLog::open(&config, &[], SampleMetrics::default())?;
    for batch in batches {
        log.append(batch)?;
    }
    drop(log);
    segment_files(&config.dir)?.into_iter().map(|(first, path)| Ok((first, std::fs::read(path)?))).collect()
}

/// The damage and shapes the reader must take in its stride, each made from segments the log
/// itself wrote (a few hundred bytes each; one record over the target's 4096-byte segment bound).
fn more_segments(dir: &Path, tmp: &Path) -> anyhow::Result<()> {
    let one_file = |bytes: &[u8]| [&[0, 0, 0][..], bytes].concat();
    let two_files = |second_first: u64, first: &[u8], second: &[u8]| -> anyhow::Result<Vec<u8>> {
        let flags = 1 | u8::try_from(second_first - 1)? << 1;
        Ok([&[flags][..], &u16::try_from(first.len())?.to_le_bytes(), first, second].concat())
    };
    let event = |kind: &str, item: &str, at: i64| Event {
        request_id: "r-2".into(),
        item_id: item.into(),
        kind: kind.into(),
        timestamp_ms: at,
        value: Some(0.25),
    };
    let snap = served("r-2", 2_000).to_proto();
    // Every record kind: revision-0 samples with and without labels, a correction, an orphan.
    let mut kinds: Vec<Vec<u8>> = snapshot::samples(&snap, "b", &[event("click", "b", 2_100)], 0, 3_000)
        .iter()
        .chain(&snapshot::samples(&snap, "a", &[], 0, 3_000))
        .chain(&snapshot::samples(&snap, "b", &[event("click", "b", 2_100), event("buy", "b", 9_000)], 1, 9_500))
        .map(Message::encode_to_vec)
        .collect();
    kinds.push(snapshot::orphan(&event("click", "zz", 2_200)).encode_to_vec());
    let files = written(tmp.join("kinds"), 1 << 20, &[kinds.clone()])?;
    let every_kind = &files[0].1;
    write(dir, "every_record_kind", &one_file(every_kind))?;
    // A checksum that holds over a payload that is no LogRecord: skipped alone.
    let files = written(tmp.join("garbage"), 1 << 20, &[vec![kinds[0].clone(), vec![0xff; 9], kinds[3].clone()]])?;
    write(dir, "not_a_log_record", &one_file(&files[0].1))?;
    // A flipped payload byte in the second record: the rest of the segment is skipped.
    let mut flipped = every_kind.clone();
    let second_payload = 16 + kinds[0].len() + 16 + 3;
    flipped[second_payload] ^= 0x40;
    write(dir, "corrupt_middle", &one_file(&flipped))?;
    // A power loss on a file system that extends before it writes: the tail is zeros.
    write(dir, "zero_tail", &one_file(&[&every_kind[..], &[0; 64]].concat()))?;
    // Cut inside the last record's header, and an empty segment.
    let last_start: usize = kinds[..kinds.len() - 1].iter().map(|k| 16 + k.len()).sum();
    write(dir, "torn_header", &one_file(&every_kind[..last_start + 7]))?;
    write(dir, "empty_segment", &one_file(&[]))?;
    // A record larger than the target's 4096-byte segment bound.
    let wide =
        Tensor { name: "dense".into(), width: 1200, data: TensorData::F32((0..1200).map(|i| i as f32).collect()) };
    let big = Served {
        item_ids: vec!["x".into()],
        scores: vec![0.5],
        inputs: Arc::from(vec![wide]),
        fallbacks: Vec::new(),
        ..served("r-3", 3_000)
    }
    .to_proto();
    let big_records = snapshot::samples(&big, "x", &[], 0, 4_000).iter().map(Message::encode_to_vec).collect();
    let files = written(tmp.join("big"), 1 << 20, &[big_records])?;
    anyhow::ensure!(files[0].1.len() > 4096, "the big segment is {} bytes", files[0].1.len());
    write(dir, "large_record", &one_file(&files[0].1))?;
    // Rotation mid-batch and across batches: two segments as the log wrote them; then the same
    // two with the first torn (an older segment damaged), and with the second misnamed (a gap of
    // sequences between them).
    let files = written(tmp.join("rotated"), 600, &[kinds[..3].to_vec(), kinds[3..].to_vec(), kinds[..2].to_vec()])?;
    anyhow::ensure!(files.len() >= 2, "expected rotation, got {} segment(s)", files.len());
    let ((first_seq, first), (second_seq, second)) = (&files[0], &files[1]);
    anyhow::ensure!(*first_seq == 1);
    write(dir, "rotated", &two_files(*second_seq, first, second)?)?;
    write(dir, "rotated_first_torn", &two_files(*second_seq, &first[..first.len() - 3], second)?)?;
    write(dir, "rotated_gap", &two_files(*second_seq + 5, first, second)?)?;
    Ok(())
}

fn segment_files(dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let first = path.file_name()?.to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((first, path))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn snapshots(dir: &Path) -> anyhow::Result<()> {
    write(dir, "shared_columns", &served("r-1", 1_000).to_proto().encode_to_vec())?;
    let mut plain = served("r-2", 1_000);
    plain.inputs =
        Arc::from(vec![Tensor { name: "ids".into(), width: 2, data: TensorData::I64(vec![1, 2, 3, 4, 5, 6]) }]);
    write(dir, "no_shared", &plain.to_proto().encode_to_vec())?;
    Ok(())
}

/// Join-journal input: payloads as `length: u16 le | bytes` (see fuzz_targets/join_journal.rs).
fn journal(dir: &Path) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let journal = tmp.path().join("journal");
    let store = MemoryJoinStore::new(1 << 20);
    store.attach_journal(&journal, &SampleLogConfig::default(), SampleMetrics::default())?;
    let ids: Vec<String> = ["a", "b", "a"].map(String::from).into();
    let snap = |id: &str| bytes::Bytes::from(served(id, 1_000).to_proto().encode_to_vec());
    store.put("r-1", snap("r-1"), &ids, 2_000_000, None).now_or_never().unwrap()?;
    store.put("r-2", snap("r-2"), &ids, 2_000_000, Some(900_000)).now_or_never().unwrap()?;
    store.put("r-3", snap("r-3"), &ids, 500, None).now_or_never().unwrap()?;
    for (request_id, item_id, kind) in [("r-1", "a", "impression"), ("r-1", "a", "click"), ("r-1", "b", "impression")] {
        let event = Event {
            request_id: request_id.into(),
            item_id: item_id.into(),
            kind: kind.into(),
            timestamp_ms: 1_200,
            value: Some(1.0),
        };
        store.add_event(&event, 1_500).now_or_never().unwrap()?;
    }
    let claimed = store.take_due(2_000, 1, 7).now_or_never().unwrap()?;
    store.confirm().now_or_never().unwrap()?;
    let more = store.take_due(950_000, 10, 8).now_or_never().unwrap()?;
    store.release(&more[..1.min(more.len())], 960_000).now_or_never().unwrap()?;
    anyhow::ensure!(!claimed.is_empty() && !more.is_empty(), "the journal holds claims");
    let mut reader = LogReader::open(&journal, 0)?;
    let mut all = Vec::new();
    let mut first_three = Vec::new();
    let mut n = 0;
    while let Some((_, payload)) = reader.next_raw()? {
        let framed = [&u16::try_from(payload.len())?.to_le_bytes()[..], &payload].concat();
        if n < 3 {
            first_three.extend_from_slice(&framed);
        }
        all.extend_from_slice(&framed);
        n += 1;
    }
    write(dir, "session", &all)?;
    write(dir, "puts", &first_three)?;
    Ok(())
}

/// HMGET replies (RESP2 and RESP3) over the ranking spec's user and item fields.
fn redis_rows(dir: &Path) -> anyhow::Result<()> {
    let spec = Spec::parse(&std::fs::read_to_string("features/ranking.yaml")?)?;
    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
    let array = |items: &[String]| format!("*{}\r\n{}", items.len(), items.concat());
    let texts = ["34", "f", "sports", "7.5", "a|b|c", "1e3", "", "-2"];
    for (name, fields) in [("user", &spec.user_fields), ("item", &spec.item_fields)] {
        let values: Vec<String> = (0..fields.len()).map(|i| bulk(texts[i % texts.len()])).collect();
        write(dir, &format!("{name}_row"), array(&values).as_bytes())?;
        let mut partial = values.clone();
        partial[0] = "$-1\r\n".into();
        write(dir, &format!("{name}_partial"), array(&partial).as_bytes())?;
    }
    write(dir, "all_nil", array(&["$-1\r\n".into(), "_\r\n".into(), "$-1\r\n".into()]).as_bytes())?;
    write(
        dir,
        "resp3_types",
        array(&[":42\r\n".into(), ",2.5\r\n".into(), "+sports\r\n".into(), "#t\r\n".into()]).as_bytes(),
    )?;
    write(dir, "not_an_array", b"-ERR wrong type\r\n")?;
    Ok(())
}
