//! The ONNX file walked from disk, field by field, without holding it in memory: each large
//! initializer's data is found (its offset and length in the file) and left out of a copy of the
//! model, where the initializer points at that same place in the file as external data instead.
//! The copy is a few hundred KiB for a 130 MiB model; ORT parses it per session (and takes the
//! shared values for those initializers, never reading their data), where it parsed the whole
//! file per session before.
//!
//! Only the fields needed are interpreted (field numbers as in onnx 1.x: `ModelProto.graph = 7`,
//! `GraphProto.initializer = 5`, `TensorProto.{dims = 1, data_type = 2, name = 8, raw_data = 9,
//! external_data = 13, data_location = 14}`, `StringStringEntryProto.{key = 1, value = 2}`); every
//! other field is copied as it is.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use prost::encoding::{WireType, encode_key, encode_varint};

use super::{EXTERNAL, FLOAT, INT64};

/// Shared initializers smaller than this keep their data in the model too: ORT's shape
/// inference reads small constants (a Reshape's shape, a ReduceSum's axes) from the model and
/// cannot read them from external data.
const STRIP_MIN_BYTES: u64 = 64 << 10;

/// A file read forwards (and, for the values, from an offset) through a buffer, counting its
/// position.
#[derive(Debug)]
pub(super) struct Reader {
    inner: BufReader<File>,
    pos: u64,
}

/// A large initializer whose data stays in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    /// Its graph name.
    pub(super) name: String,
    /// Its shape.
    pub(super) dims: Vec<i64>,
    /// `TensorProto.DataType`.
    pub(super) data_type: i32,
    /// Where its `raw_data` starts in the file.
    pub(super) offset: u64,
    /// Its `raw_data`'s length.
    pub(super) len: u64,
}

/// The model without the large initializers' data.
#[derive(Debug)]
pub(super) struct Stripped {
    /// The encoded `ModelProto`.
    pub(super) bytes: Vec<u8>,
    /// The shared initializers (where their data is in the file), in graph order.
    pub(super) found: Vec<Found>,
    /// The model already keeps initializers in external data (nothing is shared then).
    pub(super) external: bool,
}

// === impl Reader ===

impl Reader {
    /// Reads `file` from its start.
    pub(super) fn new(file: File) -> Self {
        Reader { inner: BufReader::with_capacity(64 << 10, file), pos: 0 }
    }

    /// Moves to `pos`.
    pub(super) fn seek_to(&mut self, pos: u64) -> std::io::Result<()> {
        if pos != self.pos {
            self.inner.seek(SeekFrom::Start(pos))?;
            self.pos = pos;
        }
        Ok(())
    }

    /// Fills `buf` from the current position.
    pub(super) fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let n_i64 = i64::try_from(n).map_err(std::io::Error::other)?;
        self.inner.seek_relative(n_i64)?;
        self.pos += n;
        Ok(())
    }

    fn varint(&mut self, end: u64) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            if self.pos >= end {
                return Err(format!("truncated varint at byte {}", self.pos));
            }
            let mut b = [0u8];
            self.read_exact(&mut b).map_err(|e| e.to_string())?;
            value |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    /// A length-delimited field's length, checked against the end of its message.
    fn len(&mut self, end: u64) -> Result<u64, String> {
        let len = self.varint(end)?;
        if len > end - self.pos {
            return Err(format!("field of {len} bytes at byte {} runs past its message", self.pos));
        }
        Ok(len)
    }

    fn bytes(&mut self, len: u64) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; usize::try_from(len).map_err(|e| e.to_string())?];
        self.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    }

    fn key(&mut self, end: u64) -> Result<(u32, WireType), String> {
        let key = self.varint(end)?;
        let field = u32::try_from(key >> 3).map_err(|_| format!("bad field number at byte {}", self.pos))?;
        let wire = WireType::try_from(key & 7).map_err(|_| format!("bad wire type at byte {}", self.pos))?;
        Ok((field, wire))
    }

    /// Copies the value of a field with key (`field`, `wire`) to `out`, key included.
    fn copy(&mut self, field: u32, wire: WireType, end: u64, out: &mut Vec<u8>) -> Result<(), String> {
        encode_key(field, wire, out);
        match wire {
            WireType::Varint => encode_varint(self.varint(end)?, out),
            WireType::SixtyFourBit => out.extend(self.fixed(8, end)?),
            WireType::ThirtyTwoBit => out.extend(self.fixed(4, end)?),
            WireType::LengthDelimited => {
                let len = self.len(end)?;
                encode_varint(len, out);
                out.extend(self.bytes(len)?);
            }
            WireType::StartGroup | WireType::EndGroup => return Err("groups are not used by ONNX".into()),
        }
        Ok(())
    }

    fn fixed(&mut self, n: u64, end: u64) -> Result<Vec<u8>, String> {
        if n > end - self.pos {
            return Err(format!("truncated field at byte {}", self.pos));
        }
        self.bytes(n)
    }
}

/// Walks the `len`-byte model: initializers of at least `min_bytes` of float32 or int64
/// `raw_data` are found, and those of at least [`STRIP_MIN_BYTES`] pointed at `file_name` (the
/// model file, beside which ORT looks) instead of holding their data.
pub(super) fn model(r: &mut Reader, len: u64, min_bytes: usize, file_name: &str) -> Result<Stripped, String> {
    let mut out = Stripped { bytes: Vec::new(), found: Vec::new(), external: false };
    let mut bytes = Vec::new();
    while r.pos < len {
        let (field, wire) = r.key(len)?;
        if field == 7 && wire == WireType::LengthDelimited {
            let graph_len = r.len(len)?;
            let graph = graph(r, r.pos + graph_len, min_bytes, file_name, &mut out)?;
            put_message(7, &graph, &mut bytes);
        } else {
            r.copy(field, wire, len, &mut bytes)?;
        }
    }
    out.bytes = bytes;
    Ok(out)
}

fn graph(r: &mut Reader, end: u64, min_bytes: usize, file_name: &str, out: &mut Stripped) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while r.pos < end {
        let (field, wire) = r.key(end)?;
        if field == 5 && wire == WireType::LengthDelimited {
            let tensor_len = r.len(end)?;
            let tensor = tensor(r, r.pos + tensor_len, min_bytes, file_name, out)?;
            put_message(5, &tensor, &mut bytes);
        } else {
            r.copy(field, wire, end, &mut bytes)?;
        }
    }
    Ok(bytes)
}

/// One initializer, its large `raw_data` left out (decided when it is reached: ONNX writers put
/// `data_type` and `name` before it, in field order; one that does not keeps its data).
fn tensor(r: &mut Reader, end: u64, min_bytes: usize, file_name: &str, out: &mut Stripped) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut dims = Vec::new();
    let mut data_type = 0;
    let mut name = String::new();
    let mut found = None;
    while r.pos < end {
        let (field, wire) = r.key(end)?;
        match (field, wire) {
            (1, WireType::Varint) => {
                let d = r.varint(end)?;
                encode_key(1, wire, &mut bytes);
                encode_varint(d, &mut bytes);
                dims.push(d as i64);
            }
            (1, WireType::LengthDelimited) => {
                let len = r.len(end)?;
                let packed = r.bytes(len)?;
                let mut rest = packed.as_slice();
                while !rest.is_empty() {
                    dims.push(prost::encoding::decode_varint(&mut rest).map_err(|e| e.to_string())? as i64);
                }
                put_message(1, &packed, &mut bytes);
            }
            (2, WireType::Varint) => {
                let t = r.varint(end)?;
                encode_key(2, wire, &mut bytes);
                encode_varint(t, &mut bytes);
                data_type = t as i32;
            }
            (8, WireType::LengthDelimited) => {
                let len = r.len(end)?;
                let raw = r.bytes(len)?;
                name = String::from_utf8_lossy(&raw).into_owned();
                put_message(8, &raw, &mut bytes);
            }
            (9, WireType::LengthDelimited) => {
                let len = r.len(end)?;
                let shared = len >= min_bytes as u64 && matches!(data_type, FLOAT | INT64) && !name.is_empty();
                let here = Found { name: name.clone(), dims: dims.clone(), data_type, offset: r.pos, len };
                if shared && len >= STRIP_MIN_BYTES {
                    found = Some(here);
                    r.skip(len).map_err(|e| e.to_string())?;
                } else {
                    put_message(9, &r.bytes(len)?, &mut bytes);
                    if shared {
                        out.found.push(here);
                    }
                }
            }
            (13, _) => {
                out.external = true;
                r.copy(field, wire, end, &mut bytes)?;
            }
            (14, WireType::Varint) => {
                let location = r.varint(end)?;
                if location as i32 == EXTERNAL {
                    out.external = true;
                }
                encode_key(14, wire, &mut bytes);
                encode_varint(location, &mut bytes);
            }
            _ => r.copy(field, wire, end, &mut bytes)?,
        }
    }
    if let Some(found) = found {
        for (key, value) in [
            ("location", file_name.to_owned()),
            ("offset", found.offset.to_string()),
            ("length", found.len.to_string()),
        ] {
            let mut entry = Vec::new();
            put_message(1, key.as_bytes(), &mut entry);
            put_message(2, value.as_bytes(), &mut entry);
            put_message(13, &entry, &mut bytes);
        }
        encode_key(14, WireType::Varint, &mut bytes);
        encode_varint(EXTERNAL as u64, &mut bytes);
        out.found.push(found);
    }
    Ok(bytes)
}

fn put_message(field: u32, value: &[u8], out: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Just enough of `onnx.proto` to compare the original and the stripped model.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Model {
        #[prost(message, optional, tag = "7")]
        graph: Option<Graph>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Graph {
        #[prost(bytes = "vec", repeated, tag = "1")]
        node: Vec<Vec<u8>>,
        #[prost(message, repeated, tag = "5")]
        initializer: Vec<Tensor>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Tensor {
        #[prost(int64, repeated, tag = "1")]
        dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        data_type: i32,
        #[prost(string, tag = "8")]
        name: String,
        #[prost(bytes = "vec", tag = "9")]
        raw_data: Vec<u8>,
        #[prost(message, repeated, tag = "13")]
        external_data: Vec<Entry>,
        #[prost(int32, tag = "14")]
        data_location: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Entry {
        #[prost(string, tag = "1")]
        key: String,
        #[prost(string, tag = "2")]
        value: String,
    }

    /// On the demo model (threshold 1 byte: every float/int64 initializer shared, the large ones
    /// stripped): each found offset holds exactly the initializer's raw data, the stripped model
    /// keeps every node and initializer and points the stripped ones at their bytes, and keeps
    /// the small ones' data.
    #[test]
    fn stripped_initializers_point_at_their_own_bytes_and_the_rest_is_kept() {
        use prost::Message;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ranking/1/model.onnx");
        let file = std::fs::read(&path).unwrap();
        let original = Model::decode(file.as_slice()).unwrap().graph.unwrap();
        let mut reader = Reader::new(File::open(&path).unwrap());
        let out = model(&mut reader, file.len() as u64, 1, "model.onnx").unwrap();
        assert!(!out.external);
        let stripped = Model::decode(out.bytes.as_slice()).unwrap().graph.unwrap();
        assert_eq!(stripped.node, original.node, "nodes are copied as they are");
        assert_eq!(stripped.initializer.len(), original.initializer.len());
        let large = original.initializer.iter().filter(|t| t.raw_data.len() as u64 >= STRIP_MIN_BYTES).count();
        assert!(large >= 1, "the demo model has a large initializer");
        let shared =
            original.initializer.iter().filter(|t| !t.raw_data.is_empty() && matches!(t.data_type, FLOAT | INT64));
        assert_eq!(out.found.len(), shared.count());
        for found in &out.found {
            let t = original.initializer.iter().find(|t| t.name == found.name).unwrap();
            let at = found.offset as usize;
            assert_eq!(&file[at..at + found.len as usize], t.raw_data.as_slice(), "{}", found.name);
            assert_eq!((found.dims.as_slice(), found.data_type), (t.dims.as_slice(), t.data_type));
        }
        for (s, o) in stripped.initializer.iter().zip(&original.initializer) {
            assert_eq!((&s.name, &s.dims, s.data_type), (&o.name, &o.dims, o.data_type));
            if o.raw_data.len() as u64 >= STRIP_MIN_BYTES {
                let found = out.found.iter().find(|f| f.name == o.name).unwrap();
                assert!(s.raw_data.is_empty());
                assert_eq!(s.data_location, EXTERNAL);
                let entries: Vec<(&str, &str)> =
                    s.external_data.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
                let (offset, len) = (found.offset.to_string(), found.len.to_string());
                assert_eq!(
                    entries,
                    [("location", "model.onnx"), ("offset", offset.as_str()), ("length", len.as_str())]
                );
            } else {
                assert_eq!(s, o, "a small initializer is kept whole");
            }
        }
        assert!(out.bytes.len() * 4 < file.len(), "{} of {} bytes", out.bytes.len(), file.len());
    }

    /// A file cut short is an error naming where, never a panic or a short model.
    #[test]
    fn a_truncated_model_is_an_error() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ranking/1/model.onnx");
        let len = std::fs::metadata(&path).unwrap().len();
        for cut in [len / 3, len / 2, len - 1] {
            let mut reader = Reader::new(File::open(&path).unwrap());
            let err = model(&mut reader, cut, 1, "model.onnx").unwrap_err();
            assert!(err.contains("byte"), "{err}");
        }
    }
}
