//! A stored prediction snapshot (from the join store: Redis or the journal) decoded and turned
//! into sample records: `proto::Snapshot` decode, then `sample_log::snapshot::samples` for each
//! item id it holds (what the joiner does with every candidate it claims).
//!
//! Asserts: one sample per position the item holds, each with one input tensor per stored input,
//! shaped `[1, width]` with at most `width` values of each kind.
#![no_main]

use augur::proto::Snapshot;
use augur::proto::log_record::Record;
use augur::sample_log::join::Event;
use augur::sample_log::snapshot::samples;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = Snapshot::decode(data) else { return };
    let labels = [Event {
        request_id: snapshot.request_id.clone(),
        item_id: String::new(),
        kind: "click".to_owned(),
        timestamp_ms: 1,
        value: Some(1.0),
    }];
    let mut done = std::collections::HashSet::new();
    for item_id in snapshot.item_ids.iter().take(16) {
        if !done.insert(item_id) {
            continue;
        }
        let records = samples(&snapshot, item_id, &labels, 0, 2);
        let positions = snapshot.item_ids.iter().filter(|id| *id == item_id).count();
        assert_eq!(records.len(), positions);
        for record in records {
            let Some(Record::Sample(sample)) = record.record else { panic!("not a sample: {record:?}") };
            assert_eq!(&sample.item_id, item_id);
            assert_eq!(snapshot.item_ids.get(sample.position as usize), Some(item_id));
            assert_eq!(sample.inputs.len(), snapshot.inputs.len());
            for input in &sample.inputs {
                let [rows, width] = input.shape[..] else { panic!("shape {:?}", input.shape) };
                assert_eq!(rows, 1);
                let width = usize::try_from(width).expect("a width that fits");
                assert!(input.int64_values.len() <= width && input.float_values.len() <= width);
            }
        }
    }
});
