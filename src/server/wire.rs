//! Counting a repeated field of an encoded protobuf message without decoding it: the request
//! layer refuses a message with too many candidates before prost allocates one struct per
//! candidate (an empty candidate is 2 bytes on the wire and ~70 in memory, so a 4 MiB message of
//! them would cost over 100 MiB decoded).

/// How many times top-level field `field` occurs (length-delimited) in `message`. Stops at the
/// first malformed byte and returns what it counted: prost then refuses the message anyway.
pub fn count_field(message: &[u8], field: u32) -> usize {
    let mut rest = message;
    let mut count = 0;
    while !rest.is_empty() {
        let Some(tag) = varint(&mut rest) else { break };
        let (number, wire_type) = (tag >> 3, tag & 7);
        let skip = match wire_type {
            0 => match varint(&mut rest) {
                Some(_) => 0,
                None => break,
            },
            1 => 8,
            2 => match varint(&mut rest).and_then(|n| usize::try_from(n).ok()) {
                Some(len) => len,
                None => break,
            },
            5 => 4,
            // Groups (3, 4) are not proto3; anything else is not protobuf.
            _ => break,
        };
        if skip > rest.len() {
            break;
        }
        if wire_type == 2 && number == u64::from(field) {
            count += 1;
        }
        rest = &rest[skip..];
    }
    count
}

/// One base-128 varint off the front of `bytes` (at most 10 bytes).
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{Candidate, FeatureValue, PredictRequest, ReportEventsRequest};

    #[test]
    fn counts_what_prost_decodes() {
        let mut request = PredictRequest {
            request_id: "r".into(),
            scene: "ranking".into(),
            user_id: "u".repeat(300),
            context: [("hour".to_owned(), FeatureValue::default())].into(),
            candidates: Vec::new(),
            model_version: "7".into(),
        };
        for n in [0, 1, 2, 127, 128, 5000] {
            request.candidates = (0..n)
                .map(|i| Candidate {
                    item_id: if i % 3 == 0 { String::new() } else { format!("item-{i}") },
                    features: Default::default(),
                })
                .collect();
            assert_eq!(count_field(&request.encode_to_vec(), 5), n);
            assert_eq!(count_field(&request.encode_to_vec(), 4), 1, "the context entry");
        }
        let events = ReportEventsRequest { events: vec![Default::default(); 300] };
        assert_eq!(count_field(&events.encode_to_vec(), 1), 300);
    }

    #[test]
    fn stops_at_garbage_without_panicking() {
        for bytes in [&[0xff; 12][..], &[0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f], &[0x2a, 0x05, 1], &[0x2b], &[0x2a]] {
            assert!(count_field(bytes, 5) <= 1);
        }
        // One complete candidate, then a length running past the end.
        assert_eq!(count_field(&[0x2a, 0x00, 0x2a, 0x09, 0x01], 5), 1);
    }
}
