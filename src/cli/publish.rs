//! `augur features publish`: feature updates onto a stream's topic, for demos and tests.
//!
//! Updates come as JSON lines (the JSON form of `augur.v1.FeatureUpdate`, see
//! proto/augur/v1/features.proto) from a file or stdin, or as one update from the command line
//! (`--entity item --id i42 --set price=12.5 --set category=shoes`: integers, then floats, else
//! text). They are sent in order, keyed `<entity>:<id>`, as protobuf unless `--format json`.

use std::io::BufRead;

use crate::feature_stream::{BadMessage, EntityKind, Update};
use crate::fetch::Value;

/// Why the updates could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PublishInputError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a valid update.
    #[error("{path}:{line}: {source}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// Why.
        #[source]
        source: BadMessage,
    },
    /// A `--set` is not `name=value`, or the command-line update is not valid.
    #[error("{0}")]
    Arg(String),
}

/// The updates of a JSON-lines file (`-` = stdin); blank lines are skipped, a bad line fails.
pub fn read_updates(path: &str) -> Result<Vec<Update>, PublishInputError> {
    let io = |source| PublishInputError::Io { path: path.to_owned(), source };
    let reader: Box<dyn BufRead> = if path == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(io)?))
    };
    let mut updates = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let update = Update::parse_json(&line).map_err(|source| PublishInputError::Line {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        updates.push(update);
    }
    Ok(updates)
}

/// One update from `--entity`, `--id`, `--set name=value ...` and an event time.
pub fn update_from_args(
    entity: &str,
    id: &str,
    sets: &[String],
    event_time_ms: i64,
) -> Result<Update, PublishInputError> {
    let entity = match entity {
        "user" => EntityKind::User,
        "item" => EntityKind::Item,
        "context" => EntityKind::Context,
        other => return Err(PublishInputError::Arg(format!("--entity {other}: use user, item or context"))),
    };
    let mut features = Vec::with_capacity(sets.len());
    for set in sets {
        let (name, text) =
            set.split_once('=').ok_or_else(|| PublishInputError::Arg(format!("--set {set}: expected name=value")))?;
        let value = if let Ok(i) = text.parse::<i64>() {
            Value::Int(i)
        } else if let Ok(x) = text.parse::<f64>() {
            Value::Float(x)
        } else {
            Value::Str(text.to_owned())
        };
        features.push((name.to_owned(), value));
    }
    let update = Update { entity, entity_id: id.to_owned(), event_time_ms, features };
    // The same checks a consumer applies: never publish what the stream would dead-letter.
    Update::parse_json(&update.to_json()).map_err(|e| PublishInputError::Arg(e.to_string()))
}
