//! The spilled form of impressions and changes: bytes whose order is the processing order.
//!
//! A time is 8 bytes big-endian with the sign bit flipped, so byte order is numeric order. An
//! impression is its time, then every other field: equal times sort by their content, never by
//! input position, so any permutation of a log gives the same output. A change (event-time
//! basis only) is its event time, its applied time and its position in the changelog: equal
//! event times keep the order the store applied them in.

use std::collections::HashMap;

use crate::cli::impressions::Impression;
use crate::feature_history::{Change, ChangeKind};
use crate::fetch::Value;

use crate::hourly::HOUR_MS;

/// A spilled record that does not decode: the spill files were changed under the backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a spilled record does not decode (the spill directory was changed during the run?)")]
pub struct Corrupt;

fn put_time(out: &mut Vec<u8>, t: i64) {
    out.extend_from_slice(&((t as u64) ^ (1 << 63)).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Int(i) => {
            out.push(0);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(1);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(s) => {
            out.push(2);
            put_str(out, s);
        }
        Value::IntList(l) => {
            out.push(3);
            out.extend_from_slice(&(l.len() as u32).to_be_bytes());
            l.iter().for_each(|i| out.extend_from_slice(&i.to_be_bytes()));
        }
        Value::FloatList(l) => {
            out.push(4);
            out.extend_from_slice(&(l.len() as u32).to_be_bytes());
            l.iter().for_each(|f| out.extend_from_slice(&f.to_bits().to_be_bytes()));
        }
        Value::StrList(l) => {
            out.push(5);
            out.extend_from_slice(&(l.len() as u32).to_be_bytes());
            l.iter().for_each(|s| put_str(out, s));
        }
    }
}

/// Reads what the `put_*` functions wrote.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(Corrupt)?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<usize, Corrupt> {
        Ok(u32::from_be_bytes(self.take()?) as usize)
    }
    fn i64(&mut self) -> Result<i64, Corrupt> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn time(&mut self) -> Result<i64, Corrupt> {
        Ok((u64::from_be_bytes(self.take()?) ^ (1 << 63)) as i64)
    }
    fn str(&mut self) -> Result<String, Corrupt> {
        let len = self.u32()?;
        if self.0.len() < len {
            return Err(Corrupt);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).map_err(|_| Corrupt)
    }
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T, Corrupt>) -> Result<Vec<T>, Corrupt> {
        let n = self.u32()?;
        (0..n).map(|_| item(self)).collect()
    }
    fn value(&mut self) -> Result<Value, Corrupt> {
        Ok(match self.u8()? {
            0 => Value::Int(self.i64()?),
            1 => Value::Float(f64::from_bits(self.i64()? as u64)),
            2 => Value::Str(self.str()?),
            3 => Value::IntList(self.list(Self::i64)?),
            4 => Value::FloatList(self.list(|r| Ok(f64::from_bits(r.i64()? as u64)))?),
            5 => Value::StrList(self.list(Self::str)?),
            _ => return Err(Corrupt),
        })
    }
}

/// The hour (its first ms) an encoded impression falls in: its partition.
pub(super) fn impression_hour(record: &[u8]) -> i64 {
    let time = Reader(record).time().unwrap_or(0);
    time.div_euclid(HOUR_MS) * HOUR_MS
}

/// Appends `impression` to `out`.
pub(super) fn encode_impression(out: &mut Vec<u8>, i: &Impression) {
    put_time(out, i.timestamp_ms);
    put_str(out, &i.user_id);
    put_str(out, &i.item_id);
    match &i.request_id {
        None => out.push(0),
        Some(r) => {
            out.push(1);
            put_str(out, r);
        }
    }
    out.push(u8::from(i.label > 0.5));
    let mut context: Vec<(&String, &Value)> = i.context.iter().collect();
    context.sort_unstable_by_key(|(name, _)| *name);
    out.extend_from_slice(&(context.len() as u32).to_be_bytes());
    for (name, value) in context {
        put_str(out, name);
        put_value(out, value);
    }
}

pub(super) fn decode_impression(record: &[u8]) -> Result<Impression, Corrupt> {
    let mut r = Reader(record);
    let timestamp_ms = r.time()?;
    let user_id = r.str()?;
    let item_id = r.str()?;
    let request_id = if r.u8()? == 1 { Some(r.str()?) } else { None };
    let label = f32::from(r.u8()?);
    let context: HashMap<String, Value> = r.list(|r| Ok((r.str()?, r.value()?)))?.into_iter().collect();
    Ok(Impression { timestamp_ms, request_id, user_id, item_id, label, context })
}

/// Appends `change`, the `sequence`-th of the changelog, keyed by its event time.
pub(super) fn encode_change(out: &mut Vec<u8>, change: &Change, sequence: u64) {
    put_time(out, change.event_time_ms);
    put_time(out, change.applied_time_ms);
    out.extend_from_slice(&sequence.to_be_bytes());
    put_str(out, &change.table);
    put_str(out, &change.entity_id);
    out.push(match change.kind {
        ChangeKind::Upsert => 0,
        ChangeKind::Load => 1,
    });
    out.extend_from_slice(&(change.features.len() as u32).to_be_bytes());
    for (name, value) in &change.features {
        put_str(out, name);
        match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_value(out, v);
            }
        }
    }
}

pub(super) fn decode_change(record: &[u8]) -> Result<Change, Corrupt> {
    let mut r = Reader(record);
    let event_time_ms = r.time()?;
    let applied_time_ms = r.time()?;
    let _sequence = r.i64()?;
    let table = r.str()?;
    let entity_id = r.str()?;
    let kind = match r.u8()? {
        0 => ChangeKind::Upsert,
        1 => ChangeKind::Load,
        _ => return Err(Corrupt),
    };
    let features = r.list(|r| Ok((r.str()?, if r.u8()? == 1 { Some(r.value()?) } else { None })))?;
    Ok(Change { table, entity_id, event_time_ms, applied_time_ms, kind, features })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_sort_by_time_first() {
        let impression = |t: i64, user: &str| Impression {
            timestamp_ms: t,
            request_id: Some("r".into()),
            user_id: user.into(),
            item_id: "i".into(),
            label: 1.0,
            context: [("hour".to_owned(), Value::Int(3)), ("device".to_owned(), Value::Str("ios".into()))].into(),
        };
        let enc = |i: &Impression| {
            let mut out = Vec::new();
            encode_impression(&mut out, i);
            out
        };
        for t in [-5, 0, 1_700_000_000_000] {
            assert_eq!(decode_impression(&enc(&impression(t, "u"))).unwrap(), impression(t, "u"));
        }
        assert!(enc(&impression(-5, "z")) < enc(&impression(0, "a")));
        assert!(enc(&impression(7, "a")) < enc(&impression(7, "b")));
        assert_eq!(impression_hour(&enc(&impression(HOUR_MS + 5, "u"))), HOUR_MS);

        let change = Change {
            table: "items".into(),
            entity_id: "i1".into(),
            event_time_ms: 10,
            applied_time_ms: 20,
            kind: ChangeKind::Load,
            features: vec![
                ("a".into(), None),
                ("b".into(), Some(Value::FloatList(vec![1.5, -0.0]))),
                ("c".into(), Some(Value::StrList(vec!["x".into(), String::new()]))),
                ("d".into(), Some(Value::IntList(vec![-1]))),
            ],
        };
        let mut out = Vec::new();
        encode_change(&mut out, &change, 3);
        assert_eq!(decode_change(&out).unwrap(), change);
        assert_eq!(decode_change(&out[..out.len() - 1]), Err(Corrupt));
    }
}
