//! Deletion vectors: which rows of a data file are deleted.
//!
//! A deletion vector is a [`RoaringTreemap`] of 0-based row positions within one data file,
//! stored in the bitmap's portable serialization (the 64-bit format of the Roaring
//! specification that CRoaring, Java and Go share, and that Delta Lake deletion vectors and
//! Iceberg v3 `deletion-vector-v1` blobs carry): a little-endian `u64` count of 32-bit buckets,
//! then per bucket, in ascending key order, the `u32` high 32 bits of its positions and a
//! portable 32-bit `RoaringBitmap` of their low 32 bits. The object holds exactly those bytes
//! (no framing); the manifest entry ([`DeletionVector`]) records its size, SHA-256 and
//! cardinality.

use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
pub use roaring::RoaringTreemap;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::{DataFile, DeletionVector};
use crate::name::TableRef;

/// Writes `deleted` as a new deletion-vector object of `table` and returns its manifest entry.
///
/// # Errors
/// [`Error::Storage`] when the write fails.
pub async fn write_deletion_vector(
    store: &Arc<dyn ObjectStore>,
    table: &TableRef,
    deleted: &RoaringTreemap,
) -> Result<DeletionVector> {
    let mut bytes = Vec::with_capacity(deleted.serialized_size());
    deleted
        .serialize_into(&mut bytes)
        .expect("writing to a Vec cannot fail");
    let path = layout::new_deletion_vector(table);
    let entry = DeletionVector {
        path: path.to_string(),
        size_bytes: bytes.len() as u64,
        cardinality: deleted.len(),
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    store
        .put_opts(
            &path,
            PutPayload::from(bytes),
            PutOptions::from(PutMode::Create),
        )
        .await?;
    Ok(entry)
}

/// Reads the deletion vector of `file`; an empty bitmap when it has none.
///
/// # Errors
/// [`Error::Storage`] when it cannot be read; [`Error::InvalidManifest`] (naming the object)
/// when its bytes do not match the recorded SHA-256 or cardinality, or do not decode.
pub async fn read_deletion_vector(
    store: &Arc<dyn ObjectStore>,
    file: &DataFile,
) -> Result<RoaringTreemap> {
    let Some(dv) = &file.deletion_vector else {
        return Ok(RoaringTreemap::new());
    };
    let bytes = store
        .get(&Path::from(dv.path.as_str()))
        .await?
        .bytes()
        .await?;
    let invalid = |message: String| Error::InvalidManifest {
        path: dv.path.clone(),
        message,
    };
    if hex::encode(Sha256::digest(&bytes)) != dv.sha256 {
        return Err(invalid("deletion vector does not match its SHA-256".into()));
    }
    let bitmap = RoaringTreemap::deserialize_from(bytes.as_ref())
        .map_err(|e| invalid(format!("not a portable RoaringTreemap: {e}")))?;
    if bitmap.len() != dv.cardinality || bitmap.max().is_some_and(|m| m >= file.rows) {
        return Err(invalid(format!(
            "deletion vector holds {} positions (max {:?}) for a file of {} rows, {} recorded",
            bitmap.len(),
            bitmap.max(),
            file.rows,
            dv.cardinality
        )));
    }
    Ok(bitmap)
}

/// The Parquet row selection, over positions `rows` (0-based in the file, end exclusive),
/// that reads the positions not in `deleted`; positions are relative to `rows.start` (the
/// selection of one row group when `rows` is that group's range).
pub fn live_selection(deleted: &RoaringTreemap, rows: std::ops::Range<u64>) -> RowSelection {
    let mut selectors = Vec::new();
    let mut next = rows.start;
    let mut positions = deleted.iter();
    positions.advance_to(rows.start);
    for position in positions.take_while(|&p| p < rows.end) {
        if position > next {
            selectors.push(RowSelector::select((position - next) as usize));
        }
        selectors.push(RowSelector::skip(1));
        next = position + 1;
    }
    if rows.end > next {
        selectors.push(RowSelector::select((rows.end - next) as usize));
    }
    RowSelection::from(selectors)
}

/// A batch of a data file's live rows.
#[derive(Debug)]
pub struct LiveRows {
    /// The rows: the columns asked for, in the file's column order.
    pub batch: RecordBatch,
    /// Each row's 0-based position in the file (counting deleted rows), ascending.
    pub positions: Vec<u64>,
}

/// Streams the live rows of `file` (its deletion vector applied as a Parquet row selection, so
/// deleted rows are not decoded where pages allow), in file order, with only `columns` (root
/// column indices of the file; `None`: all) decoded, `batch_size` rows at most per batch
/// (`None`: the reader's default, 1024).
///
/// # Errors
/// [`Error::Storage`] and [`Error::InvalidManifest`] from [`read_deletion_vector`]; Parquet
/// errors when the file cannot be opened, then as items of the stream when a batch cannot be
/// decoded.
pub async fn read_live_rows(
    store: &Arc<dyn ObjectStore>,
    file: &DataFile,
    columns: Option<&[usize]>,
    batch_size: Option<usize>,
) -> Result<BoxStream<'static, Result<LiveRows>>> {
    let deleted = read_deletion_vector(store, file).await?;
    let reader = ParquetObjectReader::new(Arc::clone(store), Path::from(file.path.as_str()))
        .with_file_size(file.size_bytes);
    let mut builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    if let Some(columns) = columns {
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
        builder = builder.with_projection(mask);
    }
    if let Some(batch_size) = batch_size {
        builder = builder.with_batch_size(batch_size);
    }
    if !deleted.is_empty() {
        builder = builder.with_row_selection(live_selection(&deleted, 0..file.rows));
    }
    let mut next = 0u64;
    let stream = builder.build()?.map(move |batch| {
        let batch = batch?;
        let mut positions = Vec::with_capacity(batch.num_rows());
        while positions.len() < batch.num_rows() {
            if !deleted.contains(next) {
                positions.push(next);
            }
            next += 1;
        }
        Ok(LiveRows { batch, positions })
    });
    Ok(stream.boxed())
}

impl crate::Catalog {
    /// The change that deletes `positions` (0-based, in file order) of `file` in addition to
    /// the rows its deletion vector already holds: a new deletion vector of `table` written
    /// now, or the file removed when none of its rows is left. Row-group sizes are read from
    /// the footer for files written before manifests recorded them.
    ///
    /// # Errors
    /// Storage and Parquet errors; [`Error::InvalidManifest`] for a damaged deletion vector.
    pub async fn delete_positions(
        &self,
        table: &TableRef,
        file: &DataFile,
        positions: &RoaringTreemap,
    ) -> Result<crate::FileChange> {
        let store = self.store();
        let mut deleted = read_deletion_vector(store, file).await?;
        deleted |= positions;
        let after = if deleted.len() >= file.rows {
            None
        } else {
            let row_groups = if file.row_groups.is_empty() {
                let reader = parquet::arrow::async_reader::ParquetObjectReader::new(
                    Arc::clone(store),
                    Path::from(file.path.as_str()),
                )
                .with_file_size(file.size_bytes);
                parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader)
                    .await?
                    .metadata()
                    .row_groups()
                    .iter()
                    .map(|g| g.num_rows() as u64)
                    .collect()
            } else {
                file.row_groups.clone()
            };
            let dv = write_deletion_vector(store, table, &deleted).await?;
            Some(DataFile {
                row_groups,
                deletion_vector: Some(dv),
                ..file.clone()
            })
        };
        Ok(crate::FileChange {
            before: file.clone(),
            after,
        })
    }

    /// Streams the primary-key columns of the live rows of `file` (of a table whose schema
    /// is `manifest`'s) to `each`, batch by batch, with each row's position in the file, as
    /// arrow's row format (one byte string per key).
    async fn each_key(
        &self,
        manifest: &crate::Manifest,
        file: &DataFile,
        mut each: impl FnMut(u64, &[u8]),
    ) -> Result<()> {
        use arrow::row::{RowConverter, SortField};
        let schema = manifest.arrow_schema();
        let key = &manifest.primary_key;
        let indices: Vec<usize> = key
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<_, _>>()?;
        let converter = RowConverter::new(
            indices
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        let mut batches = read_live_rows(self.store(), file, Some(&indices), None).await?;
        while let Some(live) = batches.next().await {
            let LiveRows { batch, positions } = live?;
            let columns: Vec<arrow::array::ArrayRef> = key
                .iter()
                .map(|k| {
                    batch
                        .column_by_name(k)
                        .cloned()
                        .ok_or_else(|| Error::InvalidData {
                            location: file.path.clone(),
                            message: format!("key column `{k}` is missing"),
                        })
                })
                .collect::<Result<_>>()?;
            let rows = converter.convert_columns(&columns)?;
            for (row, position) in rows.iter().zip(positions) {
                each(position, row.as_ref());
            }
        }
        Ok(())
    }

    /// The primary-key values of every row of `files` (new files of `manifest`'s table).
    pub(crate) async fn key_set(
        &self,
        manifest: &crate::Manifest,
        files: &[DataFile],
    ) -> Result<std::collections::HashSet<Vec<u8>>> {
        let mut keys = std::collections::HashSet::new();
        for file in files {
            self.each_key(manifest, file, |_, key| {
                keys.insert(key.to_vec());
            })
            .await?;
        }
        Ok(keys)
    }

    /// The changes that delete every live row of `manifest` whose primary key is in `keys`.
    pub(crate) async fn rows_with_keys(
        &self,
        manifest: &crate::Manifest,
        keys: &std::collections::HashSet<Vec<u8>>,
    ) -> Result<Vec<crate::FileChange>> {
        let mut changes = Vec::new();
        if keys.is_empty() {
            return Ok(changes);
        }
        for file in &manifest.files {
            let mut positions = RoaringTreemap::new();
            self.each_key(manifest, file, |position, key| {
                if keys.contains(key) {
                    positions.insert(position);
                }
            })
            .await?;
            if !positions.is_empty() {
                changes.push(
                    self.delete_positions(&manifest.table, file, &positions)
                        .await?,
                );
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_selection_skips_deleted_positions_of_a_range() {
        let deleted: RoaringTreemap = [0u64, 3, 4, 9, 12].into_iter().collect();
        let selectors: Vec<RowSelector> = live_selection(&deleted, 0..10).into();
        assert_eq!(
            selectors,
            [
                RowSelector::skip(1),
                RowSelector::select(2),
                RowSelector::skip(2),
                RowSelector::select(4),
                RowSelector::skip(1),
            ]
        );
        // A row group's range: positions relative to its start, later positions ignored.
        let selectors: Vec<RowSelector> = live_selection(&deleted, 4..8).into();
        assert_eq!(selectors, [RowSelector::skip(1), RowSelector::select(3)]);
        let selectors: Vec<RowSelector> = live_selection(&RoaringTreemap::new(), 5..8).into();
        assert_eq!(selectors, [RowSelector::select(3)]);
    }

    #[tokio::test]
    async fn round_trip_and_tamper_detection() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let table = TableRef::new("public", "t").unwrap();
        let deleted: RoaringTreemap = [0u64, 7, 5_000_000_000].into_iter().collect();
        let dv = write_deletion_vector(&store, &table, &deleted)
            .await
            .unwrap();
        assert_eq!(dv.cardinality, 3);
        assert!(
            dv.path.starts_with("tables/public/t/deletes/"),
            "{}",
            dv.path
        );
        let mut file = DataFile {
            path: "x.parquet".into(),
            size_bytes: 1,
            rows: 6_000_000_000,
            sha256: String::new(),
            source: None,
            row_groups: vec![],
            deletion_vector: Some(dv.clone()),
            statistics: Default::default(),
        };
        assert_eq!(read_deletion_vector(&store, &file).await.unwrap(), deleted);
        // The portable format starts with the bucket count: two buckets (high bits 0 and 1).
        let raw = store.get(&Path::from(dv.path.as_str())).await.unwrap();
        let raw = raw.bytes().await.unwrap();
        assert_eq!(&raw[..8], &2u64.to_le_bytes());
        file.rows = 10;
        let err = read_deletion_vector(&store, &file).await.unwrap_err();
        assert!(err.to_string().contains("file of 10 rows"), "{err}");
        file.deletion_vector.as_mut().unwrap().sha256 = "00".into();
        let err = read_deletion_vector(&store, &file).await.unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{err}");
    }
}
