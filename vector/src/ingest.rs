//! Chunked, embedded, idempotent document ingest into a Lance table (`lakehouse ingest --embed`).
//!
//! A **document table** holds one row per chunk ([`chunk_schema`]):
//!
//! | column | type | |
//! |---|---|---|
//! | `doc_id` | Utf8 | the document: a file's `source`, or a row's id column value / `source#row` |
//! | `chunk_index` | Int64 | position among the document's chunks, from 0 |
//! | `text` | Utf8 | the chunk ([`crate::documents::chunk`]) |
//! | `source` | Utf8 | the file the document came from, as the client named it |
//! | `page` | Int32, nullable | the PDF page the chunk is on, from 1; NULL for other documents (tables made before PDF support lack the column and refuse PDFs) |
//! | `byte_start`, `byte_end` | Int64 | the chunk's byte range in the document's text (for text and Markdown files, in the file; for HTML, in its extracted text; for PDF, in its page's extracted text) |
//! | `content_hash` | Utf8 | SHA-256 (hex) of the document (a file's bytes; a row's text and copied values) |
//! | `embedding` | FixedSizeList<Float32, D> | the chunk's vector from the table's embedding model |
//! | … | | a CSV/NDJSON/Parquet row's other columns, copied onto each of its chunks |
//!
//! The chunk settings a table was made with are kept in its schema metadata
//! ([`CHUNK_SIZE_KEY`], [`CHUNK_OVERLAP_KEY`]), the embedding model in the catalog's vector
//! column record; later ingests use them, and asking for others is refused.
//!
//! One file ([`DocumentSet`], one `source`) is written in at most one Lance commit: documents
//! whose hash is stored are skipped; new and changed ones are chunked and embedded (in groups
//! of [`EMBED_GROUP`] chunks, batched further by the [`Embedder`]) and merged on
//! (`doc_id`, `chunk_index`), while the same merge deletes the source's rows that belong to
//! no unchanged document — the changed documents' surplus chunks and rows gone from the file
//! ([`replace_source`]). A failure anywhere commits nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{Expr, col, lit};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::documents::{Chunk, ChunkSpec, DocumentFormat, chunk, extract_pages, extract_text};
use crate::embedding::Embedder;
use crate::error::{Error, Result};

/// Column names of a document table.
pub mod columns {
    /// The document id (Utf8).
    pub const DOC_ID: &str = "doc_id";
    /// The chunk's position in its document (Int64, from 0).
    pub const CHUNK_INDEX: &str = "chunk_index";
    /// The chunk's text (Utf8).
    pub const TEXT: &str = "text";
    /// The file the document came from (Utf8).
    pub const SOURCE: &str = "source";
    /// The PDF page a chunk is on, from 1 (Int32, nullable: NULL for other documents). Not
    /// in [`ALL`]: document tables made before PDF support lack it.
    pub const PAGE: &str = "page";
    /// Byte offset of the chunk's start in the document's text (Int64).
    pub const BYTE_START: &str = "byte_start";
    /// Byte offset just past the chunk's end (Int64).
    pub const BYTE_END: &str = "byte_end";
    /// SHA-256 of the document, lowercase hex (Utf8).
    pub const CONTENT_HASH: &str = "content_hash";
    /// The chunk's embedding (FixedSizeList<Float32, D>).
    pub const EMBEDDING: &str = "embedding";
    /// Every column the ingest itself fills, in table order.
    pub const ALL: [&str; 8] = [
        DOC_ID,
        CHUNK_INDEX,
        TEXT,
        SOURCE,
        BYTE_START,
        BYTE_END,
        CONTENT_HASH,
        EMBEDDING,
    ];
}

/// Schema metadata key: the chunk size (characters) a document table was made with.
pub const CHUNK_SIZE_KEY: &str = "lakehouse.chunk_size";
/// Schema metadata key: the chunk overlap (characters) a document table was made with.
pub const CHUNK_OVERLAP_KEY: &str = "lakehouse.chunk_overlap";

/// Chunks embedded per group: one progress step and one output batch each.
pub const EMBED_GROUP: usize = 256;

/// One document of a [`DocumentSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its id, unique in the table.
    pub doc_id: String,
    /// Its text.
    pub text: String,
    /// How its text is chunked (Markdown along its structure, the rest as plain text).
    pub format: DocumentFormat,
    /// A PDF's text page by page (first page first), each chunked on its own; empty for
    /// documents without pages, whose text is `text`.
    pub pages: Vec<String>,
    /// SHA-256 of the document, lowercase hex: unchanged documents are skipped by it.
    pub content_hash: String,
}

/// The documents of one file (`source`), with the columns copied onto their chunks.
#[derive(Debug, Clone)]
pub struct DocumentSet {
    /// The file, as the client named it (the `source` column).
    pub source: String,
    /// Its documents, in file order.
    pub documents: Vec<Document>,
    /// Columns copied onto each document's chunks: one row per document, in order (`None`
    /// for a text, Markdown or HTML file).
    pub columns: Option<RecordBatch>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl DocumentSet {
    /// A text, Markdown, HTML or PDF file as one document with id `source`, hashed by its
    /// bytes (a PDF's text kept page by page).
    ///
    /// # Errors
    /// [`Error::Document`] naming `source` when its text cannot be read
    /// ([`crate::documents::extract_text`], [`crate::documents::extract_pages`]).
    pub fn from_file(source: &str, bytes: &[u8], format: DocumentFormat) -> Result<Self> {
        let (text, pages) = match format {
            DocumentFormat::Pdf => (String::new(), extract_pages(source, bytes)?),
            _ => (extract_text(source, bytes, format)?, Vec::new()),
        };
        Ok(Self {
            source: source.to_string(),
            documents: vec![Document {
                doc_id: source.to_string(),
                text,
                format,
                pages,
                content_hash: sha256_hex(bytes),
            }],
            columns: None,
        })
    }

    /// True when some document has pages (a PDF): its chunks need a `page` column.
    pub fn has_pages(&self) -> bool {
        self.documents.iter().any(|d| !d.pages.is_empty())
    }

    /// The rows of a CSV, NDJSON or Parquet file as documents: each row's `text_column` value
    /// is its text (null: empty), its id the `id_column` value (default `source#ROW`, rows
    /// counted from 1), its hash that of the text and the row's other values. The other
    /// columns (less `id_column` when it is named `doc_id`) are copied onto its chunks.
    ///
    /// # Errors
    /// [`Error::Document`] naming `source` and the column for a missing or non-text
    /// `text_column`, a missing `id_column`, a null or repeated id (naming the rows), or a
    /// column whose name is one of [`columns::ALL`].
    pub fn from_rows(
        source: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        text_column: &str,
        id_column: Option<&str>,
    ) -> Result<Self> {
        let bad = |message: String| Error::Document {
            name: source.to_string(),
            message,
        };
        let names = || {
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all = arrow::compute::concat_batches(schema, batches)
            .map_err(|e| bad(format!("cannot combine the rows: {e}")))?;
        let text_index = schema.index_of(text_column).map_err(|_| {
            bad(format!(
                "no column `{text_column}` to embed (columns: {}); name it with --embed=COLUMN",
                names()
            ))
        })?;
        if !matches!(
            schema.field(text_index).data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return Err(bad(format!(
                "column `{text_column}` is {}, not text; embed a text column",
                schema.field(text_index).data_type()
            )));
        }
        let as_strings = |array: &ArrayRef| strings(array).map_err(|e| bad(e.to_string()));
        let texts = as_strings(all.column(text_index))?;
        let id_index = id_column
            .map(|name| {
                schema.index_of(name).map_err(|_| {
                    bad(format!(
                        "no id column `{name}` (columns: {}); name one with --id-column",
                        names()
                    ))
                })
            })
            .transpose()?;
        let ids = id_index.map(|i| as_strings(all.column(i))).transpose()?;
        // Copied columns: all but the text, and the id column when it is named doc_id.
        let copied: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| {
                i != text_index
                    && !(Some(i) == id_index && schema.field(i).name() == columns::DOC_ID)
            })
            .collect();
        if let Some(&i) = copied
            .iter()
            .find(|&&i| columns::ALL.contains(&schema.field(i).name().as_str()))
        {
            return Err(bad(format!(
                "column `{}` has the name of a column the ingest fills ({}); rename it",
                schema.field(i).name(),
                columns::ALL.join(", ")
            )));
        }
        let copied_batch = all
            .project(&copied)
            .map_err(|e| bad(format!("cannot select the columns: {e}")))?;
        let options = FormatOptions::default().with_null("\u{0}null");
        let formatters = copied_batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("cannot format a column: {e}")))?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut documents = Vec::with_capacity(all.num_rows());
        for row in 0..all.num_rows() {
            let doc_id = match &ids {
                None => format!("{source}#{}", row + 1),
                Some(ids) if ids.is_null(row) => {
                    return Err(bad(format!(
                        "row {}: the id column `{}` is null",
                        row + 1,
                        id_column.unwrap_or_default()
                    )));
                }
                Some(ids) => ids.value(row).to_string(),
            };
            if let Some(first) = seen.insert(doc_id.clone(), row + 1) {
                return Err(bad(format!(
                    "rows {first} and {}: the id `{doc_id}` appears twice in column `{}`",
                    row + 1,
                    id_column.unwrap_or_default()
                )));
            }
            let text = if texts.is_null(row) {
                String::new()
            } else {
                texts.value(row).to_string()
            };
            let mut hasher = Sha256::new();
            hasher.update(text.as_bytes());
            for formatter in &formatters {
                hasher.update(b"\x1f");
                hasher.update(formatter.value(row).to_string().as_bytes());
            }
            documents.push(Document {
                doc_id,
                text,
                format: DocumentFormat::Text,
                pages: Vec::new(),
                content_hash: hex::encode(hasher.finalize()),
            });
        }
        drop(formatters);
        Ok(Self {
            source: source.to_string(),
            documents,
            columns: Some(copied_batch),
        })
    }

    /// The schema of the copied columns (empty for a document file).
    fn copied_schema(&self) -> SchemaRef {
        self.columns
            .as_ref()
            .map(RecordBatch::schema)
            .unwrap_or_else(|| Arc::new(Schema::empty()))
    }
}

/// The schema of a document table whose vectors are `dimension`-dimensional from the embedding
/// model `model` (in the `embedding` field's metadata, [`crate::embed::MODEL_METADATA_KEY`]),
/// chunked per `spec` (schema metadata), with a `page` column when `with_page` (new tables;
/// tables made before PDF support have none) and `copied` columns after the fixed ones (see
/// the module docs).
pub fn chunk_schema(
    dimension: usize,
    model: &str,
    spec: ChunkSpec,
    with_page: bool,
    copied: &Schema,
) -> SchemaRef {
    let mut fields = vec![
        Field::new(columns::DOC_ID, DataType::Utf8, false),
        Field::new(columns::CHUNK_INDEX, DataType::Int64, false),
        Field::new(columns::TEXT, DataType::Utf8, false),
        Field::new(columns::SOURCE, DataType::Utf8, false),
    ];
    if with_page {
        fields.push(Field::new(columns::PAGE, DataType::Int32, true));
    }
    fields.extend([
        Field::new(columns::BYTE_START, DataType::Int64, false),
        Field::new(columns::BYTE_END, DataType::Int64, false),
        Field::new(columns::CONTENT_HASH, DataType::Utf8, false),
        Field::new(
            columns::EMBEDDING,
            crate::embed::vector_type(dimension),
            false,
        )
        .with_metadata(
            [(
                crate::embed::MODEL_METADATA_KEY.to_string(),
                model.to_string(),
            )]
            .into(),
        ),
    ]);
    fields.extend(
        copied
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true)),
    );
    let metadata = [
        (CHUNK_SIZE_KEY.to_string(), spec.size.to_string()),
        (CHUNK_OVERLAP_KEY.to_string(), spec.overlap.to_string()),
    ]
    .into();
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The chunk settings recorded in a document table's schema metadata, if it is one (it has
/// every column of [`columns::ALL`] and both keys).
pub fn table_chunk_spec(schema: &Schema) -> Option<ChunkSpec> {
    if columns::ALL
        .iter()
        .any(|c| schema.field_with_name(c).is_err())
    {
        return None;
    }
    let number = |key: &str| schema.metadata().get(key)?.parse::<usize>().ok();
    Some(ChunkSpec {
        size: number(CHUNK_SIZE_KEY)?,
        overlap: number(CHUNK_OVERLAP_KEY)?,
    })
}

/// What [`plan`] decided for a [`DocumentSet`] against the stored hashes of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestPlan {
    /// Indexes (into the set's documents) of the new and changed documents, to embed.
    pub changed: Vec<usize>,
    /// Ids of the documents stored with the same hash: skipped.
    pub unchanged: Vec<String>,
    /// Ids of the source's stored documents that are no longer in it: deleted.
    pub gone: Vec<String>,
}

impl IngestPlan {
    /// True when nothing is to be written.
    pub fn is_no_op(&self) -> bool {
        self.changed.is_empty() && self.gone.is_empty()
    }
}

/// Compares `set` with `stored` (doc_id → content_hash of the rows of its source).
pub fn plan(set: &DocumentSet, stored: &HashMap<String, String>) -> IngestPlan {
    let mut changed = Vec::new();
    let mut unchanged = Vec::new();
    for (i, doc) in set.documents.iter().enumerate() {
        if stored.get(&doc.doc_id) == Some(&doc.content_hash) {
            unchanged.push(doc.doc_id.clone());
        } else {
            changed.push(i);
        }
    }
    let present: HashSet<&str> = set.documents.iter().map(|d| d.doc_id.as_str()).collect();
    let mut gone: Vec<String> = stored
        .keys()
        .filter(|id| !present.contains(id.as_str()))
        .cloned()
        .collect();
    gone.sort();
    IngestPlan {
        changed,
        unchanged,
        gone,
    }
}

/// The chunks of the documents `which` of `set`, as (document index, chunk) in order.
/// CPU-bound: call from a blocking task for large sets.
///
/// # Errors
/// [`Error::Config`] for an unusable `spec` ([`crate::documents::chunk`]).
pub fn chunk_documents(
    set: &DocumentSet,
    which: &[usize],
    spec: ChunkSpec,
) -> Result<Vec<(usize, Chunk)>> {
    let mut out = Vec::new();
    for &i in which {
        let doc = &set.documents[i];
        if doc.pages.is_empty() {
            out.extend(
                chunk(&doc.text, doc.format, spec)?
                    .into_iter()
                    .map(|c| (i, c)),
            );
            continue;
        }
        // A PDF: each page on its own (offsets in the page's text), indexes across pages.
        let mut index = 0;
        for (page, text) in doc.pages.iter().enumerate() {
            for mut c in chunk(text, doc.format, spec)? {
                c.index = index;
                c.page = Some(i32::try_from(page + 1).unwrap_or(i32::MAX));
                index += 1;
                out.push((i, c));
            }
        }
    }
    Ok(out)
}

/// The chunks as `schema`'s rows (see [`chunk_schema`]), embedded with `embedder` in groups
/// of [`EMBED_GROUP`]; `progress` is called with the number of chunks embedded so far after
/// each group. The stream fails with the embedder's error ([`Error::Unavailable`] when the
/// model server is down) and then ends.
pub fn embedded_batches(
    schema: SchemaRef,
    set: Arc<DocumentSet>,
    chunks: Vec<(usize, Chunk)>,
    embedder: Arc<Embedder>,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> SendableRecordBatchStream {
    let groups: Vec<Vec<(usize, Chunk)>> = chunks
        .chunks(EMBED_GROUP)
        .map(<[(usize, Chunk)]>::to_vec)
        .collect();
    let out = Arc::clone(&schema);
    let mut done = 0u64;
    let stream = futures::stream::iter(groups)
        .then(move |group| {
            let embedder = Arc::clone(&embedder);
            let set = Arc::clone(&set);
            let schema = Arc::clone(&schema);
            async move {
                let texts: Vec<String> = group.iter().map(|(_, c)| c.text.clone()).collect();
                let vectors = embedder.embed(&texts).await?;
                chunk_batch(&schema, &set, &group, &vectors, embedder.dimension())
            }
        })
        .map(move |batch| {
            let batch =
                batch.map_err(|e| datafusion::error::DataFusionError::External(e.into()))?;
            done += batch.num_rows() as u64;
            progress(done);
            Ok(batch)
        });
    Box::pin(RecordBatchStreamAdapter::new(out, stream))
}

fn chunk_batch(
    schema: &SchemaRef,
    set: &DocumentSet,
    group: &[(usize, Chunk)],
    vectors: &[Arc<[f32]>],
    dimension: usize,
) -> Result<RecordBatch> {
    let doc = |i: usize| &set.documents[i];
    let offset = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let mut values = Vec::with_capacity(group.len() * dimension);
    for v in vectors {
        values.extend_from_slice(v);
    }
    let embedding = crate::embed::vector_array(values, dimension, None)
        .map_err(|e| Error::Config(format!("building the embedding column: {e}")))?;
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            group.iter().map(|(d, _)| doc(*d).doc_id.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            group.iter().map(|(_, c)| offset(c.index)),
        )),
        Arc::new(StringArray::from_iter_values(
            group.iter().map(|(_, c)| c.text.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            group.iter().map(|_| set.source.as_str()),
        )),
    ];
    if schema.field_with_name(columns::PAGE).is_ok() {
        arrays.push(Arc::new(Int32Array::from_iter(
            group.iter().map(|(_, c)| c.page),
        )));
    }
    arrays.extend::<[ArrayRef; 4]>([
        Arc::new(Int64Array::from_iter_values(
            group.iter().map(|(_, c)| offset(c.start)),
        )),
        Arc::new(Int64Array::from_iter_values(
            group.iter().map(|(_, c)| offset(c.end)),
        )),
        Arc::new(StringArray::from_iter_values(
            group.iter().map(|(d, _)| doc(*d).content_hash.as_str()),
        )),
        Arc::new(embedding),
    ]);
    if let Some(copied) = &set.columns {
        let rows = UInt32Array::from_iter_values(
            group
                .iter()
                .map(|(d, _)| u32::try_from(*d).unwrap_or(u32::MAX)),
        );
        for column in copied.columns() {
            arrays.push(
                arrow::compute::take(column.as_ref(), &rows, None)
                    .map_err(|e| Error::Config(format!("copying columns: {e}")))?,
            );
        }
    }
    RecordBatch::try_new(Arc::clone(schema), arrays)
        .map_err(|e| Error::Config(format!("building a chunk batch: {e}")))
}

impl DocumentSet {
    /// Checks that this set's copied columns match the document table `schema`'s (names and
    /// types, in order), so a later write cannot fail half-way on a schema mismatch.
    ///
    /// # Errors
    /// [`Error::Document`] naming both column lists.
    pub fn check_columns(&self, table: &str, schema: &Schema) -> Result<()> {
        let copied = self.copied_schema();
        let table_columns: Vec<String> = schema
            .fields()
            .iter()
            .filter(|f| !columns::ALL.contains(&f.name().as_str()) && f.name() != columns::PAGE)
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        let file_columns: Vec<String> = copied
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        if table_columns != file_columns {
            return Err(Error::Document {
                name: self.source.clone(),
                message: format!(
                    "its other columns [{}] differ from those of document table {table} [{}]",
                    file_columns.join(", "),
                    table_columns.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// The schema of this set's chunks for a document table (see [`chunk_schema`]): with a
    /// `page` column when `with_page` (a new table, or one that has it).
    pub fn table_schema(
        &self,
        dimension: usize,
        model: &str,
        spec: ChunkSpec,
        with_page: bool,
    ) -> SchemaRef {
        chunk_schema(dimension, model, spec, with_page, &self.copied_schema())
    }
}

/// The documents stored from `source` in the document table `dataset`: doc_id →
/// content_hash.
///
/// # Errors
/// [`Error::Lance`] when the dataset cannot be read.
pub async fn stored_documents(
    dataset: &lance::Dataset,
    source: &str,
) -> Result<HashMap<String, String>> {
    let mut scanner = dataset.scan();
    scanner
        .project(&[columns::DOC_ID, columns::CONTENT_HASH])?
        .filter_expr(col(columns::SOURCE).eq(lit(source)));
    let mut stream = scanner.try_into_stream().await?;
    let mut stored = HashMap::new();
    while let Some(batch) = stream.try_next().await? {
        let ids = string_column(&batch, 0)?;
        let hashes = string_column(&batch, 1)?;
        for row in 0..batch.num_rows() {
            stored
                .entry(ids.value(row).to_string())
                .or_insert_with(|| hashes.value(row).to_string());
        }
    }
    Ok(stored)
}

/// One Lance commit that makes `source`'s rows in the document table `dataset` those
/// of `batches` plus the stored rows of the documents `unchanged`: `batches` are merged on
/// (`doc_id`, `chunk_index`) — matches updated, the rest inserted — and the source's
/// stored rows that match nothing and are not of an unchanged document are deleted.
/// Returns the dataset version and the rows (inserted, updated, deleted).
///
/// # Errors
/// [`Error::Lance`]; the error of `batches` (nothing is committed then).
pub async fn replace_source(
    dataset: Arc<lance::Dataset>,
    source: &str,
    unchanged: &[String],
    batches: SendableRecordBatchStream,
) -> Result<(u64, [u64; 3])> {
    use lance::dataset::{MergeInsertBuilder, WhenMatched, WhenNotMatched, WhenNotMatchedBySource};
    let mut stale: Expr = col(columns::SOURCE).eq(lit(source));
    if !unchanged.is_empty() {
        let kept = unchanged.iter().map(|id| lit(id.as_str())).collect();
        stale = stale.and(col(columns::DOC_ID).in_list(kept, true));
    }
    let job = MergeInsertBuilder::try_new(
        dataset,
        vec![columns::DOC_ID.into(), columns::CHUNK_INDEX.into()],
    )?
    .when_matched(WhenMatched::UpdateAll)
    .when_not_matched(WhenNotMatched::InsertAll)
    .when_not_matched_by_source(WhenNotMatchedBySource::DeleteIf(stale))
    .try_build()?;
    let (dataset, stats) = job.execute(batches).await?;
    Ok((
        dataset.version().version,
        [
            stats.num_inserted_rows,
            stats.num_updated_rows,
            stats.num_deleted_rows,
        ],
    ))
}

/// Deletes from the document table `dataset` every row whose `source` is not in `keep`
/// (one Lance commit, none when nothing matches). Returns the distinct sources and the
/// rows deleted.
///
/// # Errors
/// [`Error::Lance`] when the dataset cannot be read or written.
pub async fn prune_sources(dataset: Arc<lance::Dataset>, keep: &[String]) -> Result<(u64, u64)> {
    let predicate = if keep.is_empty() {
        lit(true)
    } else {
        col(columns::SOURCE).in_list(keep.iter().map(|s| lit(s.as_str())).collect(), true)
    };
    let mut scanner = dataset.scan();
    scanner
        .project(&[columns::SOURCE])?
        .filter_expr(predicate.clone());
    let mut stream = scanner.try_into_stream().await?;
    let mut sources = HashSet::new();
    let mut rows = 0u64;
    while let Some(batch) = stream.try_next().await? {
        let column = string_column(&batch, 0)?;
        rows += batch.num_rows() as u64;
        for row in 0..batch.num_rows() {
            if !sources.contains(column.value(row)) {
                sources.insert(column.value(row).to_string());
            }
        }
    }
    if rows > 0 {
        crate::table::delete_rows(dataset, predicate).await?;
    }
    Ok((sources.len() as u64, rows))
}

fn string_column(batch: &RecordBatch, i: usize) -> Result<StringArray> {
    strings(batch.column(i))
}

/// `array` cast to `Utf8`.
fn strings(array: &ArrayRef) -> Result<StringArray> {
    let cast = arrow::compute::cast(array, &DataType::Utf8)
        .map_err(|e| Error::Config(format!("cannot read a column as text: {e}")))?;
    Ok(cast
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8")
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("notes", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(7), Some(8), None])),
                Arc::new(StringArray::from(vec!["Ada", "Bo", "Cy"])),
                Arc::new(StringArray::from(vec![
                    Some("Kubernetes"),
                    None,
                    Some("Bread"),
                ])),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    #[test]
    fn rows_become_documents_with_copied_columns_and_hashes() {
        let (schema, batch) = rows();
        let set = DocumentSet::from_rows(
            "p.csv",
            &schema,
            std::slice::from_ref(&batch),
            "notes",
            None,
        )
        .unwrap();
        let ids: Vec<_> = set.documents.iter().map(|d| d.doc_id.as_str()).collect();
        assert_eq!(ids, ["p.csv#1", "p.csv#2", "p.csv#3"]);
        assert_eq!(set.documents[1].text, "");
        let copied = set.columns.as_ref().unwrap();
        assert_eq!(copied.num_columns(), 2, "id and name are copied");
        // The hash covers the copied values: same text, other name → other hash.
        let mut other = batch.clone();
        other = RecordBatch::try_new(
            other.schema(),
            vec![
                Arc::clone(other.column(0)),
                Arc::new(StringArray::from(vec!["Ada", "Bob", "Cy"])),
                Arc::clone(other.column(2)),
            ],
        )
        .unwrap();
        let changed = DocumentSet::from_rows("p.csv", &schema, &[other], "notes", None).unwrap();
        assert_eq!(
            set.documents[0].content_hash,
            changed.documents[0].content_hash
        );
        assert_ne!(
            set.documents[1].content_hash,
            changed.documents[1].content_hash
        );
        let stored: HashMap<String, String> = set
            .documents
            .iter()
            .map(|d| (d.doc_id.clone(), d.content_hash.clone()))
            .collect();
        let plan = plan(&changed, &stored);
        assert_eq!(plan.changed, [1]);
        assert_eq!(plan.unchanged, ["p.csv#1", "p.csv#3"]);
        assert!(plan.gone.is_empty());
    }

    #[test]
    fn bad_rows_are_refused_with_the_file_column_and_row() {
        let (schema, batch) = rows();
        let one = std::slice::from_ref(&batch);
        let err = DocumentSet::from_rows("p.csv", &schema, one, "text", None).unwrap_err();
        assert!(err.to_string().contains("p.csv") && err.to_string().contains("`text`"));
        let err = DocumentSet::from_rows("p.csv", &schema, one, "id", None).unwrap_err();
        assert!(err.to_string().contains("not text"), "{err}");
        let err = DocumentSet::from_rows("p.csv", &schema, one, "notes", Some("id")).unwrap_err();
        assert!(err.to_string().contains("row 3"), "{err}");
        let err = DocumentSet::from_rows("p.csv", &schema, one, "notes", Some("nope")).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
        let twice = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 2])),
                Arc::clone(batch.column(1)),
                Arc::clone(batch.column(2)),
            ],
        )
        .unwrap();
        let err =
            DocumentSet::from_rows("p.csv", &schema, &[twice], "notes", Some("id")).unwrap_err();
        assert!(err.to_string().contains("rows 1 and 2"), "{err}");
        let clash = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, true),
            Field::new("notes", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&clash),
            vec![
                Arc::new(StringArray::from(vec!["x"])),
                Arc::new(StringArray::from(vec!["y"])),
            ],
        )
        .unwrap();
        let err = DocumentSet::from_rows("c.csv", &clash, &[batch], "notes", None).unwrap_err();
        assert!(err.to_string().contains("`source`"), "{err}");
    }

    #[test]
    fn a_document_table_records_its_chunk_settings() {
        let spec = ChunkSpec {
            size: 300,
            overlap: 50,
        };
        let schema = chunk_schema(4, "m", spec, true, &Schema::empty());
        assert_eq!(table_chunk_spec(&schema), Some(spec));
        assert_eq!(
            table_chunk_spec(&Schema::new(vec![Field::new("x", DataType::Utf8, true)])),
            None
        );
    }
}
