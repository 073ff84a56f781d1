//! Counting a repeated field of an encoded protobuf message without decoding it: the request
//! layer refuses a message with too many candidates before prost allocates one struct per
//! candidate (an empty candidate is 2 bytes on the wire and ~70 in memory, so a 4 MiB message of
//! them would cost over 100 MiB decoded).

/// How many times top-level field `field` occurs (length-delimited) in `message`. Stops at the
/// first malformed byte and returns what it counted: prost then refuses the message anyway.
/// Fields of every wire type prost skips are skipped, groups (wire types 3 and 4) included:
/// stopping at an unknown group that prost decodes past would undercount what follows it.
pub fn count_field(message: &[u8], field: u32) -> usize {
    let mut rest = message;
    let mut count = 0;
    while !rest.is_empty() {
        let Some(tag) = varint(&mut rest) else { break };
        let (number, wire_type) = (tag >> 3, tag & 7);
        if !skip(&mut rest, number, wire_type, 0) {
            break;
        }
        if wire_type == 2 && number == u64::from(field) {
            count += 1;
        }
    }
    count
}

/// Groups nested deeper than this are refused, as prost refuses them (its recursion limit).
const MAX_DEPTH: u32 = 100;

/// Skips the value of one field whose key was just read; false if it is malformed.
fn skip(rest: &mut &[u8], number: u64, wire_type: u64, depth: u32) -> bool {
    let len = match wire_type {
        0 => return varint(rest).is_some(),
        1 => 8,
        2 => match varint(rest).and_then(|n| usize::try_from(n).ok()) {
            Some(len) => len,
            None => return false,
        },
        // A group: fields up to the end-group key of the same number.
        3 => {
            if depth >= MAX_DEPTH {
                return false;
            }
            loop {
                let Some(tag) = varint(rest) else { return false };
                let (inner, inner_type) = (tag >> 3, tag & 7);
                if inner_type == 4 {
                    return inner == number;
                }
                if !skip(rest, inner, inner_type, depth + 1) {
                    return false;
                }
            }
        }
        5 => 4,
        // An end-group key outside its group, or not protobuf.
        _ => return false,
    };
    if len > rest.len() {
        return false;
    }
    *rest = &rest[len..];
    true
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

    /// Found by the fuzz target `predict_request`: prost skips an unknown group, so counting
    /// must too — stopping at it let any number of candidates after it past the cap.
    #[test]
    fn counts_past_unknown_groups() {
        let candidates = PredictRequest { candidates: vec![Candidate::default(); 1000], ..Default::default() };
        // Field 15 as a group holding a varint and a nested group of field 16, then the candidates.
        let mut message = vec![0x7b, 0x08, 0x01, 0x83, 0x01, 0x84, 0x01, 0x7c];
        message.extend(candidates.encode_to_vec());
        let decoded = PredictRequest::decode(&message[..]).expect("prost skips the group");
        assert_eq!(decoded.candidates.len(), 1000);
        assert_eq!(count_field(&message, 5), 1000);
        // A group that never ends, or ends with another field's key, is malformed for both.
        for bad in [&[0x7b, 0x2a, 0x00][..], &[0x7b, 0x84, 0x01, 0x2a, 0x00], &[0x7c, 0x2a, 0x00]] {
            assert!(PredictRequest::decode(bad).is_err());
            assert_eq!(count_field(bad, 5), 0);
        }
    }
}
