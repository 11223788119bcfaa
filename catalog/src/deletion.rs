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

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
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

#[cfg(test)]
mod tests {
    use super::*;

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
