//! Reading the Parquet directories augur writes (the sample sink, the backfill): every
//! committed part, then its record batches.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Every committed part under `dir`'s hours, as augur's readers see them.
pub fn parts(dir: &Path) -> Vec<PathBuf> {
    augur::hourly::parts(dir).unwrap()
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
