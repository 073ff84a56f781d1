//! Bad messages, appended to a file as JSON lines: the stream skips them (and commits past them)
//! but an operator can see and replay them.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where one bad message came from and why it is bad.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// The stream.
    pub stream: &'a str,
    /// Kafka coordinates.
    pub topic: &'a str,
    /// Kafka coordinates.
    pub partition: i32,
    /// Kafka coordinates.
    pub offset: i64,
    /// The metric label.
    pub reason: &'a str,
    /// The detail.
    pub detail: &'a str,
    /// The payload as received.
    pub payload: &'a [u8],
}

/// Appends dead letters to one file (opened per write: bad messages are rare, and an operator
/// may move the file away at any time).
#[derive(Debug, Clone)]
pub struct DeadLetters {
    path: PathBuf,
}

impl DeadLetters {
    /// Letters go to `path` (its directory is created on the first letter).
    pub fn new(path: PathBuf) -> Self {
        DeadLetters { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line: `{"stream","topic","partition","offset","reason","detail","time_ms"}`
    /// and `"payload"` (UTF-8 text) or `"payload_hex"`.
    pub fn write(&self, letter: &DeadLetter<'_>) -> std::io::Result<()> {
        let mut line = serde_json::json!({
            "stream": letter.stream,
            "topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "reason": letter.reason,
            "detail": letter.detail,
            "time_ms": super::now_ms(),
        });
        match std::str::from_utf8(letter.payload) {
            Ok(text) => line["payload"] = text.into(),
            Err(_) => {
                let hex: String = letter.payload.iter().map(|b| format!("{b:02x}")).collect();
                line["payload_hex"] = hex.into();
            }
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        // One write per line: concurrent writers (two streams sharing a file) never interleave.
        file.write_all(format!("{line}\n").as_bytes())
    }
}
