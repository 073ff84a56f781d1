//! `augur features export`: an impression log + the store's tables → the exact tensors Predict
//! would build (same fetch and assemble code), as `features.npz` + `meta.json` for tools/train.
//!
//! The impression CSV has a header with `user_id`, `item_id`, `label` (0/1) and optionally
//! context columns named like the spec's `context.<field>` sources; other columns are ignored.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array1, Array2};
use ndarray_npy::NpzWriter;

use crate::assemble::encode::RequestView;
use crate::assemble::{DType, Spec, TensorData, assemble};
use crate::fetch::{FeatureStore, FetchError, Value};

/// Rows read per store round trip.
const CHUNK: usize = 1024;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the log or writing the output failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A log line is unusable.
    #[error("{path}:{line}: {problem}")]
    Line {
        /// The log.
        path: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    /// Rows written.
    pub rows: usize,
    /// Positive labels.
    pub positives: usize,
    /// Feature → rows on which it fell back.
    pub fallbacks: HashMap<String, usize>,
}

/// Exports `impressions` for `spec` into `out/`.
pub async fn export(
    spec: &Spec,
    store: &dyn FeatureStore,
    impressions: &Path,
    out: &Path,
) -> Result<ExportSummary, ExportError> {
    let shown = impressions.display().to_string();
    let io = |path: &Path, e: &dyn std::fmt::Display| ExportError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let line_err = |line: u64, problem: String| ExportError::Line { path: shown.clone(), line, problem };
    let mut reader = csv::Reader::from_path(impressions).map_err(|e| io(impressions, &e))?;
    let headers = reader.headers().map_err(|e| io(impressions, &e))?.clone();
    let column =
        |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| line_err(1, format!("no `{name}` column")));
    let (user_col, item_col, label_col) = (column("user_id")?, column("item_id")?, column("label")?);
    let context_cols: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| spec.context_fields.contains_key(*h))
        .map(|(i, h)| (i, h.to_owned()))
        .collect();

    // The stored form: what samples hold, so a split spec exports what its flat twin does.
    let mut columns: Vec<TensorData> = spec
        .stored
        .iter()
        .map(|i| match i.dtype {
            DType::Int64 => TensorData::I64(Vec::new()),
            DType::Float32 => TensorData::F32(Vec::new()),
        })
        .collect();
    let mut labels: Vec<f32> = Vec::new();
    let mut summary = ExportSummary { rows: 0, positives: 0, fallbacks: HashMap::new() };
    let mut records = reader.records();
    let mut line = 1u64;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        for record in records.by_ref().take(CHUNK) {
            line += 1;
            let record = record.map_err(|e| line_err(line, e.to_string()))?;
            let label: f32 = match record[label_col].trim() {
                "0" => 0.0,
                "1" => 1.0,
                other => {
                    return Err(line_err(line, format!("label must be 0 or 1, got `{other}`")));
                }
            };
            let context: HashMap<String, Value> = context_cols
                .iter()
                .filter(|(i, _)| !record[*i].is_empty())
                .map(|(i, name)| (name.clone(), Value::Str(record[*i].to_owned())))
                .collect();
            chunk.push((record[user_col].to_owned(), record[item_col].to_owned(), context, label));
        }
        if chunk.is_empty() {
            break;
        }
        let user_ids: Vec<&str> = chunk.iter().map(|c| c.0.as_str()).collect();
        let item_ids: Vec<&str> = chunk.iter().map(|c| c.1.as_str()).collect();
        let users = store.get_rows(&spec.user_table, &user_ids, &spec.user_fields).await?;
        let items = store.get_rows(&spec.item_table, &item_ids, &spec.item_fields).await?;
        for (((user_id, item_id, context, label), user), item) in chunk.into_iter().zip(users).zip(items) {
            let candidates = [(item_id, HashMap::new())];
            let view = RequestView::new(&user_id, &context, &candidates);
            let assembled = assemble(spec, view, user.as_ref(), &[item] as &[Option<Arc<_>>]).into_stored(spec);
            for fallback in &assembled.fallbacks {
                *summary.fallbacks.entry(fallback.feature.clone()).or_default() += 1;
            }
            for (column, tensor) in columns.iter_mut().zip(assembled.tensors) {
                match (column, tensor.data) {
                    (TensorData::I64(c), TensorData::I64(v)) => c.extend(v),
                    (TensorData::F32(c), TensorData::F32(v)) => c.extend(v),
                    _ => unreachable!("assemble follows the spec's dtypes"),
                }
            }
            labels.push(label);
            summary.rows += 1;
            summary.positives += usize::from(label > 0.5);
        }
    }

    std::fs::create_dir_all(out).map_err(|e| io(out, &e))?;
    let npz_path = out.join("features.npz");
    let file = File::create(&npz_path).map_err(|e| io(&npz_path, &e))?;
    let mut npz = NpzWriter::new(file);
    let write_err = |e: &dyn std::fmt::Display| io(&npz_path, e);
    for (input, column) in spec.stored.iter().zip(columns) {
        let shape = (summary.rows, input.columns.len());
        match column {
            TensorData::I64(v) => {
                npz.add_array(input.name.as_str(), &Array2::from_shape_vec(shape, v).map_err(|e| write_err(&e))?)
            }
            TensorData::F32(v) => {
                npz.add_array(input.name.as_str(), &Array2::from_shape_vec(shape, v).map_err(|e| write_err(&e))?)
            }
        }
        .map_err(|e| write_err(&e))?;
    }
    npz.add_array("label", &Array1::from_vec(labels)).map_err(|e| write_err(&e))?;
    npz.finish().map_err(|e| write_err(&e))?;

    let meta = serde_json::json!({
        "scene": spec.scene,
        "rows": summary.rows,
        "output": spec.output,
        "label": "label",
        "inputs": spec.stored.iter().map(|i| {
            let mut m = serde_json::json!({"name": i.name, "dtype": i.dtype.name(), "width": i.columns.len()});
            if i.dtype == DType::Int64 {
                m["vocab"] = i.vocab.into();
            }
            m
        }).collect::<Vec<_>>(),
        "features": spec.features.iter().zip(spec.stored_places()).map(|(f, (input, offset))| serde_json::json!({
            "name": f.name, "input": spec.stored[input].name, "offset": offset, "width": f.width,
        })).collect::<Vec<_>>(),
        "fallbacks": summary.fallbacks,
    });
    let meta_path = out.join("meta.json");
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta).expect("json")).map_err(|e| io(&meta_path, &e))?;
    Ok(summary)
}
