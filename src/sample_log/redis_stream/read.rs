//! [`read_stream`]: a stream's entries back as [`Record`]s, for tests and `augur samples dump`.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use super::{FIELD_ID, FIELD_KEY, FIELD_PAYLOAD, FIELD_SEQ, ReadError};
use crate::sample_log::record::Record;
use crate::validate::redact_url;

/// Entries per `XRANGE`: pages keep each reply (and Redis's time answering it) small however
/// long the stream is.
const PAGE: usize = 1000;
/// Bound on connecting and on each page.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Reads all of `stream` in entry order, duplicates included (dedup by [`Record::id`] is the
/// caller's). An empty or missing stream reads as no records.
pub async fn read_stream(url: &str, stream: &str) -> Result<Vec<Record>, ReadError> {
    let target = redact_url(url);
    let target = target.as_str();
    let redis_error =
        |action| move |source| ReadError::Redis { stream: stream.to_owned(), url: target.to_owned(), action, source };
    let timeout_error = || ReadError::Timeout {
        stream: stream.to_owned(),
        url: target.to_owned(),
        after_ms: TIMEOUT.as_millis() as u64,
    };
    let client = redis::Client::open(url).map_err(redis_error("parsing the url"))?;
    let mut conn = tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| timeout_error())?
        .map_err(redis_error("connecting"))?;
    let mut records = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let mut xrange = redis::cmd("XRANGE");
        xrange.arg(stream).arg(&start).arg("+").arg("COUNT").arg(PAGE);
        let page: Value = tokio::time::timeout(TIMEOUT, xrange.query_async(&mut conn))
            .await
            .map_err(|_| timeout_error())?
            .map_err(redis_error("XRANGE"))?;
        let entries = entries(stream, page)?;
        let full = entries.len() == PAGE;
        let Some((last, _)) = entries.last() else { break };
        // Exclusive start (Redis >= 6.2): the next page begins after the last entry read.
        start = format!("({last}");
        records.extend(entries.into_iter().map(|(_, record)| record));
        if !full {
            break;
        }
    }
    Ok(records)
}

/// An `XRANGE` reply as (entry id, record) pairs.
pub(super) fn entries(stream: &str, page: Value) -> Result<Vec<(String, Record)>, ReadError> {
    let malformed = |entry: &str, problem: String| ReadError::Malformed {
        stream: stream.to_owned(),
        entry: entry.to_owned(),
        problem,
    };
    let Value::Array(items) = page else {
        return Err(malformed("?", format!("XRANGE reply is not an array: {page:?}")));
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut pair) = item else {
                return Err(malformed("?", format!("entry is not [id, fields]: {item:?}")));
            };
            if pair.len() != 2 {
                return Err(malformed("?", format!("entry has {} parts, not [id, fields]", pair.len())));
            }
            let fields = pair.pop().unwrap_or(Value::Nil);
            let entry =
                text(pair.pop().unwrap_or(Value::Nil)).ok_or_else(|| malformed("?", "entry id is not text".into()))?;
            let record = record(fields).map_err(|problem| malformed(&entry, problem))?;
            Ok((entry, record))
        })
        .collect()
}

/// The record an entry's fields spell.
fn record(fields: Value) -> Result<Record, String> {
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(flat) if flat.len() % 2 == 0 => {
            let mut flat = flat.into_iter();
            std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
        }
        // RESP3 servers may answer with a map.
        Value::Map(pairs) => pairs,
        other => return Err(format!("fields are not field/value pairs: {other:?}")),
    };
    let (mut id, mut sequence, mut key, mut payload) = (None, None, None, None);
    for (name, value) in pairs {
        match text(name).as_deref() {
            Some(FIELD_ID) => id = text(value),
            Some(FIELD_SEQ) => sequence = text(value).and_then(|s| s.parse::<u64>().ok()),
            Some(FIELD_KEY) => key = text(value),
            Some(FIELD_PAYLOAD) => payload = bytes(value),
            // Fields a newer writer added: not ours to refuse.
            _ => {}
        }
    }
    let missing = |field: &str| format!("field `{field}` missing or not of its type");
    Ok(Record {
        sequence: sequence.ok_or_else(|| missing(FIELD_SEQ))?,
        key: key.ok_or_else(|| missing(FIELD_KEY))?,
        id: id.ok_or_else(|| missing(FIELD_ID))?,
        payload: payload.ok_or_else(|| missing(FIELD_PAYLOAD))?,
    })
}

fn bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        _ => None,
    }
}

fn text(value: Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b.to_vec()).ok())
}
