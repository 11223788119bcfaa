//! Document ingest into Lance document tables (`lakehouse ingest --embed`): the catalog side
//! (creating the table, checking it is a document table with the asked chunk settings and
//! model) around `lakehouse_vector::ingest`, which chunks, embeds and commits.

use std::sync::Arc;

use lakehouse_catalog::{Error as CatalogError, TableRef, VectorMetric, WriteMode};
use lakehouse_vector::documents::ChunkSpec;
use lakehouse_vector::ingest::{
    DocumentSet, chunk_documents, columns, embedded_batches, plan, prune_sources, replace_source,
    stored_documents, table_chunk_spec,
};

use super::QueryEngine;
use super::statement::LanceCreate;
use crate::error::{Error, Result};

/// What a document ingest asks for beyond its documents; `None` fields take the table's
/// settings, else the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentIngestOptions {
    /// Chunk size in characters (default 1000, [`ChunkSpec::default`]).
    pub chunk_size: Option<usize>,
    /// Chunk overlap in characters (default 200).
    pub chunk_overlap: Option<usize>,
    /// Embedding model name (default: the table's, else the server's default model).
    pub model: Option<String>,
}

/// How far a document ingest has got, reported while it embeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocumentProgress {
    /// Documents in the file.
    pub documents: u64,
    /// Of those, stored unchanged (skipped).
    pub unchanged: u64,
    /// Chunks to embed.
    pub chunks_total: u64,
    /// Chunks embedded so far.
    pub chunks_done: u64,
}

/// The outcome of a document ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentIngestReport {
    /// The Lance dataset version after the ingest (unchanged when nothing was written).
    pub version: u64,
    /// Documents in the file.
    pub documents: u64,
    /// Documents skipped as unchanged.
    pub unchanged: u64,
    /// Chunks embedded and written.
    pub chunks: u64,
    /// Documents of the file stored before but no longer in it, deleted.
    pub deleted: u64,
    /// The embedding model used.
    pub model: String,
    /// True when the table was created by this ingest.
    pub created: bool,
}

impl QueryEngine {
    /// Ingests `set` (one file) into the document table `table`, creating it when missing
    /// (unless `mode` is `Append`): unchanged documents are skipped; new and changed ones are
    /// chunked, embedded and written with the removal of the file's stale rows in one Lance
    /// commit ([`lakehouse_vector::ingest`]). `progress` is called as chunks are embedded.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a Parquet table, a Lance table that is not a document
    /// table, chunk settings or a model other than the table's, a replace, copied columns
    /// unlike the table's; catalog `TableExists` (mode `Create`) / `TableNotFound` (mode
    /// `Append`); the embedding model's errors (`Unavailable` when its server is down); Lance's.
    pub async fn ingest_documents(
        &self,
        table: &TableRef,
        mode: WriteMode,
        set: DocumentSet,
        options: &DocumentIngestOptions,
        progress: Arc<dyn Fn(DocumentProgress) + Send + Sync>,
    ) -> Result<DocumentIngestReport> {
        let live = match self.catalog().table(table).await {
            Ok(manifest) => Some(manifest),
            Err(CatalogError::TableNotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        match (&live, mode) {
            (Some(_), WriteMode::Create) => {
                return Err(CatalogError::TableExists(table.clone()).into());
            }
            (None, WriteMode::Append) => {
                return Err(CatalogError::TableNotFound(table.clone()).into());
            }
            (_, WriteMode::Replace) => {
                return Err(Error::invalid(
                    "document ingest cannot replace a table; re-ingest the files (unchanged \
                     documents are skipped) and use --prune for files that are gone",
                ));
            }
            _ => {}
        }
        let store = self.lance_store();
        // The table's settings, when it exists.
        let existing = match &live {
            None => None,
            Some(manifest) => {
                let Some(lance) = &manifest.lance else {
                    return Err(Error::invalid(format!(
                        "{table} is a Parquet table; documents go into a Lance document table \
                         (ingest into a new table name)"
                    )));
                };
                let dataset = store.open(&lance.location).await?;
                let schema = arrow::datatypes::Schema::from(dataset.schema());
                let spec = table_chunk_spec(&schema).ok_or_else(|| {
                    Error::invalid(format!(
                        "{table} is a Lance table but not a document table (it lacks the \
                         columns {} or their chunk settings); ingest into a new table name",
                        columns::ALL.join(", ")
                    ))
                })?;
                let model = lance
                    .vector_columns
                    .iter()
                    .find(|c| c.name == columns::EMBEDDING)
                    .and_then(|c| c.model.clone());
                set.check_columns(&table.to_string(), &schema)?;
                if set.has_pages() && schema.field_with_name(columns::PAGE).is_err() {
                    return Err(Error::invalid(format!(
                        "{}: {table} was made before PDF support and has no {} column; \
                         ingest PDFs into a new table",
                        set.source,
                        columns::PAGE
                    )));
                }
                Some((lance.location.clone(), dataset, spec, model))
            }
        };
        let default = ChunkSpec::default();
        let spec = match &existing {
            Some((_, _, spec, _)) => {
                let asked = (
                    options.chunk_size.unwrap_or(spec.size),
                    options.chunk_overlap.unwrap_or(spec.overlap),
                );
                if asked != (spec.size, spec.overlap) {
                    return Err(Error::invalid(format!(
                        "{table} is chunked with size {} and overlap {}; re-ingest with those \
                         (or without --chunk-size/--chunk-overlap), or into a new table",
                        spec.size, spec.overlap
                    )));
                }
                *spec
            }
            None => ChunkSpec {
                size: options.chunk_size.unwrap_or(default.size),
                overlap: options.chunk_overlap.unwrap_or(
                    default
                        .overlap
                        .min(options.chunk_size.unwrap_or(default.size) / 5),
                ),
            },
        };
        let table_model = existing.as_ref().and_then(|(_, _, _, model)| model.clone());
        if let (Some(asked), Some(model)) = (&options.model, &table_model)
            && asked != model
        {
            return Err(Error::invalid(format!(
                "{table} is embedded with model {model}; re-ingest with it (or without \
                 --model), or into a new table"
            )));
        }
        let embedder = Arc::clone(
            self.embedding_models()
                .get(options.model.as_deref().or(table_model.as_deref()))?,
        );

        let stored = match &existing {
            Some((_, dataset, _, _)) => stored_documents(dataset, &set.source).await?,
            None => Default::default(),
        };
        let plan = plan(&set, &stored);
        let set = Arc::new(set);
        let chunks = {
            let set = Arc::clone(&set);
            let changed = plan.changed.clone();
            tokio::task::spawn_blocking(move || chunk_documents(&set, &changed, spec))
                .await
                .map_err(|e| Error::Internal(format!("chunking panicked: {e}")))??
        };
        let changed_stored = plan
            .changed
            .iter()
            .any(|&i| stored.contains_key(&set.documents[i].doc_id));
        let mut report = DocumentIngestReport {
            version: 0,
            documents: set.documents.len() as u64,
            unchanged: plan.unchanged.len() as u64,
            chunks: chunks.len() as u64,
            deleted: plan.gone.len() as u64,
            model: embedder.name().to_string(),
            created: false,
        };
        let base = DocumentProgress {
            documents: report.documents,
            unchanged: report.unchanged,
            chunks_total: report.chunks,
            chunks_done: 0,
        };
        progress(base);
        // No-op: nothing changed, or the changes hold no text (an empty file), with nothing
        // stored to delete. A missing table is then not created.
        let nothing_to_write = chunks.is_empty() && plan.gone.is_empty() && !changed_stored;
        if plan.is_no_op() || nothing_to_write {
            if let Some((_, dataset, _, _)) = &existing {
                report.version = dataset.version().version;
            }
            return Ok(report);
        }
        let with_page = match &existing {
            Some((_, dataset, _, _)) => dataset.schema().field(columns::PAGE).is_some(),
            None => true,
        };
        let schema = set.table_schema(embedder.dimension(), embedder.name(), spec, with_page);
        let on_progress: Arc<dyn Fn(u64) + Send + Sync> = {
            let progress = Arc::clone(&progress);
            Arc::new(move |done| {
                progress(DocumentProgress {
                    chunks_done: done,
                    ..base
                })
            })
        };
        let batches = embedded_batches(
            Arc::clone(&schema),
            Arc::clone(&set),
            chunks,
            Arc::clone(&embedder),
            on_progress,
        );
        report.version = match &existing {
            None => {
                let create = LanceCreate {
                    metric: VectorMetric::Cosine,
                    model: Some(embedder.name().to_string()),
                };
                self.write_lance(table, mode, None, Some(create), &schema, batches)
                    .await?;
                report.created = true;
                let manifest = self.catalog().table(table).await?;
                let location = &manifest.lance.as_ref().expect("created as Lance").location;
                store.open(location).await?.version().version
            }
            Some((location, _, _, _)) if stored.is_empty() => {
                store.append(location, batches).await?.version().version
            }
            Some((_, dataset, _, _)) => {
                let dataset = Arc::clone(dataset);
                replace_source(dataset, &set.source, &plan.unchanged, batches)
                    .await?
                    .0
            }
        };
        Ok(report)
    }

    /// Deletes from the document table `table` every document whose `source` is not in `keep`
    /// (`lakehouse ingest --embed --prune`), in one Lance commit. Returns the sources and
    /// chunk rows deleted.
    ///
    /// # Errors
    /// Catalog `TableNotFound`; [`Error::InvalidArgument`] when `table` is not a document
    /// table; Lance's.
    pub async fn prune_documents(&self, table: &TableRef, keep: &[String]) -> Result<(u64, u64)> {
        let manifest = self.catalog().table(table).await?;
        let not_documents = || {
            Error::invalid(format!(
                "{table} is not a document table; --prune only applies to tables made by \
                 lakehouse ingest --embed"
            ))
        };
        let lance = manifest.lance.as_ref().ok_or_else(not_documents)?;
        let dataset = self.lance_store().open(&lance.location).await?;
        table_chunk_spec(&arrow::datatypes::Schema::from(dataset.schema()))
            .ok_or_else(not_documents)?;
        Ok(prune_sources(dataset, keep).await?)
    }
}
