//! `augur features export`: an impression log + the store's tables → the exact tensors Predict
//! would build (same fetch and assemble code), as `features.npz` + `meta.json` for tools/train.
//!
//! The impressions are a CSV or Parquet log ([`super::impressions`]): `user_id`, `item_id`,
//! `label` (0/1) and optionally context columns named like the spec's `context.<field>` sources.
//! The store is read as it is now: for the values as of each impression's time, see
//! [`super::backfill`].

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array1, Array2};
use ndarray_npy::NpzWriter;

use super::impressions::{Impression, ImpressionError, Impressions, Needs};
use crate::assemble::encode::RequestView;
use crate::assemble::{Assembled, DType, Spec, TensorData, assemble};
use crate::fetch::{FeatureStore, FetchError};

/// Rows read per store round trip.
const CHUNK: usize = 1024;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing the output failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The impression log is unreadable or a row unusable.
    #[error(transparent)]
    Impressions(#[from] ImpressionError),
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

/// Each impression assembled as Predict assembles a one-candidate request, from the rows
/// `store` holds now (fetched in one round trip per table), in the stored form (what samples
/// hold, so a split spec gives what its flat twin does). Shared by export and backfill: what
/// they write is what the path computes.
pub async fn assemble_impressions(
    spec: &Spec,
    store: &dyn FeatureStore,
    impressions: &[Impression],
) -> Result<Vec<Assembled>, FetchError> {
    // As Predict: a table whose fields the spec does not read is not fetched.
    let users = if spec.user_fields.is_empty() {
        vec![None; impressions.len()]
    } else {
        let ids: Vec<&str> = impressions.iter().map(|i| i.user_id.as_str()).collect();
        store.get_rows(&spec.user_table, &ids, &spec.user_fields).await?
    };
    let items = if spec.item_fields.is_empty() {
        vec![None; impressions.len()]
    } else {
        let ids: Vec<&str> = impressions.iter().map(|i| i.item_id.as_str()).collect();
        store.get_rows(&spec.item_table, &ids, &spec.item_fields).await?
    };
    Ok(impressions
        .iter()
        .zip(users)
        .zip(items)
        .map(|((impression, user), item)| {
            let candidates = [(impression.item_id.clone(), HashMap::new())];
            let view = RequestView::new(&impression.user_id, &impression.context, &candidates);
            assemble(spec, view, user.as_ref(), &[item] as &[Option<Arc<_>>]).into_stored(spec)
        })
        .collect())
}

/// Exports `impressions` (CSV or Parquet, see [`super::impressions`]) for `spec` into `out/`.
pub async fn export(
    spec: &Spec,
    store: &dyn FeatureStore,
    impressions: &Path,
    out: &Path,
) -> Result<ExportSummary, ExportError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| ExportError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut impressions = Impressions::open(impressions, |f| spec.context_fields.contains_key(f), Needs::Ids)?;

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
    loop {
        let chunk = impressions.by_ref().take(CHUNK).collect::<Result<Vec<_>, _>>()?;
        if chunk.is_empty() {
            break;
        }
        for (impression, assembled) in chunk.iter().zip(assemble_impressions(spec, store, &chunk).await?) {
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
            labels.push(impression.label);
            summary.rows += 1;
            summary.positives += usize::from(impression.label > 0.5);
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
