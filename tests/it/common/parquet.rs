//! Reading the Parquet directories augur writes (the sample sink, the backfill): every
//! committed part, then its record batches.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Every committed part under `dir` (temporaries and markers are not `.parquet`, or hidden).
pub fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet")
                && !p.file_name().unwrap().to_str().unwrap().starts_with('.')
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The record batches of every part under `dir`, parts in path order.
pub fn batches(dir: &Path) -> Vec<RecordBatch> {
    parts(dir)
        .into_iter()
        .flat_map(|p| {
            ParquetRecordBatchReaderBuilder::try_new(File::open(&p).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
        })
        .collect()
}
