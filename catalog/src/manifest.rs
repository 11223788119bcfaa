//! Version manifests: the JSON documents that define each table version.
//!
//! A manifest is immutable once published. It lists every Parquet data file of the version (not
//! a delta), so a reader needs exactly one object to plan a scan. See `docs/storage-layout.md`
//! for the format, which carries [`FORMAT_VERSION`].

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow::ipc::writer::StreamWriter;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::name::{TableRef, Version};

/// Version of the manifest format written by this code. Readers refuse manifests with a newer
/// format version than they know.
///
/// - 1: data files only.
/// - 2: data files may carry a [`DeletionVector`] (rows deleted by DELETE/UPDATE) and their
///   Parquet row-group sizes; `total_rows` counts live rows. A version-1 reader must not read
///   a version-2 table (it would return deleted rows), so the version is bumped; version-1
///   manifests read as version 2 with no deletions.
pub const FORMAT_VERSION: u32 = 2;

/// One version of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version, [`FORMAT_VERSION`] when written by this code.
    pub format_version: u32,
    /// The table this version belongs to.
    pub table: TableRef,
    /// This version's number (1 for the first commit).
    pub version: Version,
    /// When the version was committed (UTC, by the committing process's clock).
    pub created_at: DateTime<Utc>,
    /// What produced this version.
    pub operation: Operation,
    /// True when this version drops the table: it then has no files and the table is not listed.
    #[serde(default)]
    pub dropped: bool,
    /// The table's Arrow schema at this version.
    pub schema: TableSchema,
    /// For an external table (`CREATE EXTERNAL TABLE`): the location its files were listed
    /// from. Its `files[].path` are then absolute URLs of files Lakehouse does not own (never
    /// copied, written or cleaned up), `sha256` is empty, and writes are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    /// For a Lance table: where its Lance dataset lives and its vector columns. Lance's own
    /// versioned manifest is then the source of truth for the rows (`files` is empty and
    /// appends are Lance commits); this manifest records the table's existence and schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lance: Option<LanceTable>,
    /// Names of the primary-key columns, in key order; empty when the table declares none.
    /// Inserts that would duplicate a key are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// Every data file of this version.
    pub files: Vec<DataFile>,
    /// Ingested inputs whose data files compaction merged away (`files[].source` records the
    /// others), so that re-ingesting identical content stays a no-op after compaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceFile>,
    /// Live rows: sum of [`DataFile::live_rows`] (`files[].rows` minus their deleted rows).
    pub total_rows: u64,
    /// Sum of `files[].size_bytes`.
    pub total_bytes: u64,
    /// The user who committed this version ([`crate::catalog::as_user`]); absent for versions
    /// written before it was recorded and for commits made by the server itself (automatic
    /// compaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_by: Option<String>,
}

impl Manifest {
    /// The Arrow schema of this version.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema.arrow)
    }

    /// True when some data file of this version came from a source whose SHA-256 (lowercase hex)
    /// is `sha256` — used to make re-ingesting an identical file a no-op.
    pub fn has_source(&self, sha256: &str) -> bool {
        self.files
            .iter()
            .any(|f| f.source.as_ref().is_some_and(|s| s.sha256 == sha256))
            || self.sources.iter().any(|s| s.sha256 == sha256)
    }

    /// Serializes to pretty JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serializes")
    }

    /// Parses a manifest read from `path`.
    ///
    /// # Errors
    /// [`Error::InvalidManifest`] when the JSON does not parse, the format version is newer than
    /// [`FORMAT_VERSION`], or the embedded schema does not decode.
    pub fn from_json(path: &str, bytes: &[u8]) -> Result<Self> {
        let invalid = |message: String| Error::InvalidManifest {
            path: path.to_string(),
            message,
        };
        let probe: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let format = probe
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| invalid("missing format_version".into()))?;
        if format > u64::from(FORMAT_VERSION) {
            return Err(invalid(format!(
                "format version {format} is newer than this Lakehouse understands ({FORMAT_VERSION})"
            )));
        }
        serde_json::from_value(probe).map_err(|e| invalid(e.to_string()))
    }
}

/// A table stored as a Lance dataset (<https://lancedb.github.io/lance/>).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanceTable {
    /// The dataset's directory relative to the storage root, e.g.
    /// `tables/public/docs/lance/<uuid>` (a new one each time the table is created).
    pub location: String,
    /// The `FixedSizeList<Float32, D>` columns that hold vectors.
    pub vector_columns: Vec<VectorColumn>,
}

/// A vector column of a Lance table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorColumn {
    /// Column name.
    pub name: String,
    /// Vector dimension `D`.
    pub dimension: usize,
    /// The distance that nearest-neighbour search on this column uses.
    pub metric: VectorMetric,
    /// The configured embedding model that produced the vectors, when known: text queries
    /// against this column are embedded with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Distance metrics of vector search (Lance's `DistanceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorMetric {
    /// Cosine distance, `1 - cos(a, b)`, in [0, 2].
    Cosine,
    /// Squared Euclidean distance.
    L2,
    /// Negative dot product (smaller is closer).
    Dot,
}

impl std::fmt::Display for VectorMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VectorMetric::Cosine => "cosine",
            VectorMetric::L2 => "l2",
            VectorMetric::Dot => "dot",
        })
    }
}

impl std::str::FromStr for VectorMetric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Ok(VectorMetric::Cosine),
            "l2" | "euclidean" => Ok(VectorMetric::L2),
            "dot" => Ok(VectorMetric::Dot),
            other => Err(format!("unknown metric {other:?}; use cosine, l2 or dot")),
        }
    }
}

/// The operation that produced a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// First version of a table (or first after a drop).
    Create,
    /// Files added to the previous version's files.
    Append,
    /// All rows (and possibly the schema) replaced.
    Replace,
    /// The table was dropped.
    Drop,
    /// Rows deleted (`DELETE`): deletion vectors added to files, files whose rows are all
    /// deleted removed.
    Delete,
    /// Rows updated (`UPDATE`): the old rows deleted as by `Delete`, the new rows appended.
    Update,
    /// Every row removed (`TRUNCATE`); the schema and primary key stay.
    Truncate,
    /// Rows inserted, updated and deleted by one `MERGE INTO` or `INSERT ... ON CONFLICT`
    /// (deletion vectors as by `Delete`, new and changed rows appended).
    Merge,
    /// Files rewritten by compaction (`OPTIMIZE`): the same live rows in fewer, larger files
    /// without deletion vectors.
    Compact,
    /// The files, schema and key of an older version made the newest again (`RESTORE TABLE t
    /// TO VERSION n`).
    Restore,
}

impl std::fmt::Display for Operation {
    /// The name the manifest stores (`create`, `append`, ..., `restore`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Create => "create",
            Operation::Append => "append",
            Operation::Replace => "replace",
            Operation::Drop => "drop",
            Operation::Delete => "delete",
            Operation::Update => "update",
            Operation::Truncate => "truncate",
            Operation::Merge => "merge",
            Operation::Compact => "compact",
            Operation::Restore => "restore",
        })
    }
}

/// A Parquet data file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Object path relative to the storage root, e.g. `tables/public/t/data/<uuid>.parquet`.
    pub path: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// Number of rows in the file.
    pub rows: u64,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// The input this file was ingested from, when it came from a file ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceFile>,
    /// Rows per Parquet row group, in file order (sums to `rows`); lets a reader skip deleted
    /// rows by row group without reading the footer first. Empty when not recorded (files of
    /// format version 1); written for every new file and for any file given a deletion vector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_groups: Vec<u64>,
    /// The rows of this file that are deleted, when any are (format version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_vector: Option<DeletionVector>,
    /// Per-column min/max/null counts from the file's Parquet footer, by column name
    /// (format version 2; see [`crate::statistics`]): readers skip files by them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub statistics: std::collections::BTreeMap<String, crate::statistics::ColumnStatistics>,
}

impl DataFile {
    /// Rows of the file not deleted: `rows` minus the deletion vector's cardinality.
    pub fn live_rows(&self) -> u64 {
        self.rows - self.deletion_vector.as_ref().map_or(0, |d| d.cardinality)
    }
}

/// A deletion vector: the positions (0-based, in file order, counting every row of the data
/// file) of a data file's deleted rows, stored as a 64-bit Roaring bitmap in the portable
/// `RoaringTreemap` serialization — the encoding of Delta Lake's deletion vectors and
/// Iceberg v3's `deletion-vector-v1` blobs, without their framing (see
/// `docs/storage-layout.md`). A deletion vector is immutable: a later delete writes a new one
/// holding the union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionVector {
    /// Object path relative to the storage root: `tables/<schema>/<table>/deletes/<uuid>.roaring`.
    pub path: String,
    /// Size of the object in bytes.
    pub size_bytes: u64,
    /// Number of deleted rows (positions in the bitmap).
    pub cardinality: u64,
    /// SHA-256 of the object's bytes, lowercase hex.
    pub sha256: String,
}

/// An ingested source file, recorded so that re-ingesting identical content is detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// The file name as given to the ingest.
    pub name: String,
    /// SHA-256 of the source file's bytes, lowercase hex.
    pub sha256: String,
}

/// A table's Arrow schema as stored in a manifest.
///
/// Serialized as `{"fingerprint", "fields", "arrow_ipc"}`: `arrow_ipc` is the base64 of an Arrow
/// IPC stream holding only the schema (the schema message, then end-of-stream), the
/// authoritative, language-neutral form (`pyarrow.ipc.open_stream(buf).schema` reads it);
/// `fields` is a readable summary (name, type, nullable) that readers may ignore.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The schema.
    pub arrow: SchemaRef,
}

impl TableSchema {
    /// Wraps an Arrow schema.
    pub fn new(arrow: SchemaRef) -> Self {
        Self { arrow }
    }

    /// The schema's fingerprint: `sha256:` + hex SHA-256 over one line per field,
    /// `name\ttype\tnullable`, with the type in Arrow's `Debug` form (nested fields included).
    /// Equal fingerprints mean equal column names, types and nullability; field metadata is not
    /// part of it.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for field in self.arrow.fields() {
            hasher.update(format!(
                "{}\t{:?}\t{}\n",
                field.name(),
                field.data_type(),
                field.is_nullable()
            ));
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

#[derive(Serialize, Deserialize)]
struct TableSchemaJson {
    fingerprint: String,
    fields: Vec<FieldJson>,
    arrow_ipc: String,
}

#[derive(Serialize, Deserialize)]
struct FieldJson {
    name: String,
    data_type: String,
    nullable: bool,
}

impl Serialize for TableSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let ipc = StreamWriter::try_new(Vec::new(), &self.arrow)
            .and_then(|w| w.into_inner())
            .map_err(S::Error::custom)?;
        TableSchemaJson {
            fingerprint: self.fingerprint(),
            fields: self
                .arrow
                .fields()
                .iter()
                .map(|f| FieldJson {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
            arrow_ipc: BASE64.encode(ipc),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for TableSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let json = TableSchemaJson::deserialize(d)?;
        let bytes = BASE64.decode(json.arrow_ipc).map_err(D::Error::custom)?;
        let schema = try_schema_from_ipc_buffer(&bytes).map_err(D::Error::custom)?;
        Ok(Self::new(Arc::new(schema)))
    }
}

/// Compares the schema of incoming data with a table's schema for an append.
///
/// Columns are matched by name; order may differ (the writer reorders). Returns one entry per
/// difference: a column missing from the data, a column the table lacks, a type difference. A
/// nullable data column is accepted for a non-nullable table column (rows with nulls are then
/// rejected when written).
pub fn schema_differences(table: &Schema, data: &Schema) -> Vec<String> {
    let mut diffs = Vec::new();
    for tf in table.fields() {
        match data.field_with_name(tf.name()) {
            Err(_) => diffs.push(format!(
                "column `{}` ({}) is missing from the data",
                tf.name(),
                tf.data_type()
            )),
            Ok(df) if !types_match(tf.data_type(), df.data_type()) => diffs.push(format!(
                "column `{}`: table has {}, data has {}",
                tf.name(),
                tf.data_type(),
                df.data_type()
            )),
            Ok(_) => {}
        }
    }
    for df in data.fields() {
        if table.field_with_name(df.name()).is_err() {
            diffs.push(format!(
                "column `{}` ({}) is not in the table",
                df.name(),
                df.data_type()
            ));
        }
    }
    diffs
}

/// Type equality that ignores nested field names, nullability and metadata (e.g. a list's item
/// field called "item" vs "element"), which differ between Arrow writers but not in meaning.
fn types_match(a: &DataType, b: &DataType) -> bool {
    a.equals_datatype(b) || a == b || {
        let strip = |f: &Field| f.data_type().clone();
        match (a, b) {
            (DataType::List(x), DataType::List(y))
            | (DataType::LargeList(x), DataType::LargeList(y)) => types_match(&strip(x), &strip(y)),
            (DataType::FixedSizeList(x, n), DataType::FixedSizeList(y, m)) => {
                n == m && types_match(&strip(x), &strip(y))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]))
    }

    #[test]
    fn manifest_json_round_trip() {
        let m = Manifest {
            format_version: FORMAT_VERSION,
            table: TableRef::new("public", "t").unwrap(),
            version: Version(3),
            created_at: Utc::now(),
            operation: Operation::Append,
            dropped: false,
            schema: TableSchema::new(schema()),
            primary_key: vec!["id".into()],
            external: None,
            lance: Some(LanceTable {
                location: "tables/public/t/lance/u".into(),
                vector_columns: vec![VectorColumn {
                    name: "v".into(),
                    dimension: 4,
                    metric: VectorMetric::Dot,
                    model: None,
                }],
            }),
            files: vec![DataFile {
                path: "tables/public/t/data/x.parquet".into(),
                size_bytes: 10,
                rows: 2,
                sha256: "ab".into(),
                source: Some(SourceFile {
                    name: "a.csv".into(),
                    sha256: "cd".into(),
                }),
                row_groups: vec![2],
                statistics: [(
                    "id".to_string(),
                    crate::statistics::ColumnStatistics {
                        min: Some("1".into()),
                        max: Some("2".into()),
                        null_count: Some(0),
                    },
                )]
                .into(),
                deletion_vector: Some(DeletionVector {
                    path: "tables/public/t/deletes/y.roaring".into(),
                    size_bytes: 20,
                    cardinality: 1,
                    sha256: "ef".into(),
                }),
            }],
            sources: vec![],
            total_rows: 2,
            total_bytes: 10,
            committed_by: None,
        };
        let json = m.to_json();
        let back = Manifest::from_json("m.json", &json).unwrap();
        assert_eq!(back, m);
        assert!(back.has_source("cd"));
        assert_eq!(back.files[0].live_rows(), 1);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"fingerprint\": \"sha256:"), "{text}");
        assert!(text.contains("\"operation\": \"append\""), "{text}");
    }

    #[test]
    fn version_1_manifests_still_read() {
        let v2 = Manifest {
            format_version: FORMAT_VERSION,
            table: TableRef::new("public", "t").unwrap(),
            version: Version(1),
            created_at: Utc::now(),
            operation: Operation::Create,
            dropped: false,
            schema: TableSchema::new(schema()),
            primary_key: vec![],
            external: None,
            lance: None,
            files: vec![DataFile {
                path: "tables/public/t/data/x.parquet".into(),
                size_bytes: 10,
                rows: 2,
                sha256: "ab".into(),
                source: None,
                row_groups: vec![],
                deletion_vector: None,
                statistics: Default::default(),
            }],
            sources: vec![],
            total_rows: 2,
            total_bytes: 10,
            committed_by: None,
        };
        let mut json: serde_json::Value = serde_json::from_slice(&v2.to_json()).unwrap();
        json["format_version"] = 1.into();
        let v1 = Manifest::from_json("m.json", json.to_string().as_bytes()).unwrap();
        assert_eq!(v1.format_version, 1);
        assert_eq!(v1.files, v2.files);
        assert!(!json.to_string().contains("deletion_vector"));
    }

    #[test]
    fn newer_format_and_garbage_are_rejected() {
        let err = Manifest::from_json("m.json", br#"{"format_version": 99}"#).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        let err = Manifest::from_json("m.json", b"not json").unwrap_err();
        assert!(matches!(err, Error::InvalidManifest { .. }), "{err}");
    }

    #[test]
    fn fingerprint_tracks_names_types_nullability_only() {
        let a = TableSchema::new(schema());
        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[1] = fields[1]
            .clone()
            .with_metadata([("k".into(), "v".into())].into());
        assert_eq!(
            a.fingerprint(),
            TableSchema::new(Arc::new(Schema::new(fields.clone()))).fingerprint()
        );
        fields[1] = Field::new("name", DataType::Utf8, false);
        assert_ne!(
            a.fingerprint(),
            TableSchema::new(Arc::new(Schema::new(fields))).fingerprint()
        );
    }

    #[test]
    fn differences_name_each_column() {
        let table = schema();
        let data = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("extra", DataType::Int32, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("element", DataType::Utf8, false))),
                true,
            ),
        ]);
        let d = schema_differences(&table, &data);
        assert_eq!(
            d,
            vec![
                "column `id`: table has Int64, data has Utf8",
                "column `ts` (Timestamp(µs, \"UTC\")) is missing from the data",
                "column `extra` (Int32) is not in the table",
            ]
        );
    }
}
