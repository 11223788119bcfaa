//! `lakehouse.v1.CommandIngestFile`, our own DoPut command (`lakehouse ingest`): the raw bytes
//! of one file, and `lakehouse.v1.CommandPruneDocuments`.
//!
//! - Without `documents`: a CSV, NDJSON or Parquet file, parsed and committed by the catalog as
//!   one table version. The answer is one `PutResult` whose `app_metadata` is an
//!   [`IngestFileResult`].
//! - With `documents` (`--embed`): a text, Markdown or HTML file (one document) or the rows of a
//!   CSV, NDJSON or Parquet file (one document each), chunked, embedded and committed to a Lance
//!   document table ([`crate::query::documents`]). Interim `IngestFileResult`s with `progress`
//!   set report chunks embedded so far; the final one follows. The work stops (committing
//!   nothing) when the client goes away.
//!
//! A rows file is handed to the catalog as it streams in ([`lakehouse_catalog::Catalog::ingest_upload`]
//! spools, hashes and — for CSV — parses it on the way); a document upload is spooled here
//! while its SHA-256 is computed, then read whole.

use std::io::Write as _;

use arrow_flight::PutResult;
use arrow_flight::sql::server::PeekableFlightDataStream;
use futures::StreamExt;
use lakehouse_catalog::{
    FileFormat, FileIngest, IngestOutcome, TableRef, WriteMode, parse_schema_overrides,
};
use lakehouse_proto::{
    CommandIngestFile, CommandPruneDocuments, DocumentOptions, FileFormat as ProtoFormat,
    IngestFileResult, IngestMode, PruneDocumentsResult,
};
use lakehouse_vector::documents::DocumentFormat;
use lakehouse_vector::ingest::DocumentSet;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql};
use crate::error::Error;
use crate::query::documents::{DocumentIngestOptions, DocumentProgress};

/// What the file is: rows (CSV, NDJSON, Parquet) or one document (text, Markdown, HTML, PDF).
enum Kind {
    Rows(FileFormat),
    Document(DocumentFormat),
}

fn kind(cmd: &CommandIngestFile) -> Result<Kind, Error> {
    Ok(match cmd.format() {
        ProtoFormat::Csv => Kind::Rows(FileFormat::Csv),
        ProtoFormat::Ndjson => Kind::Rows(FileFormat::NdJson),
        ProtoFormat::Parquet => Kind::Rows(FileFormat::Parquet),
        ProtoFormat::Text => Kind::Document(DocumentFormat::Text),
        ProtoFormat::Markdown => Kind::Document(DocumentFormat::Markdown),
        ProtoFormat::Html => Kind::Document(DocumentFormat::Html),
        ProtoFormat::Pdf => Kind::Document(DocumentFormat::Pdf),
        ProtoFormat::Unspecified => {
            if let Some(format) = DocumentFormat::from_file_name(&cmd.file_name) {
                Kind::Document(format)
            } else {
                Kind::Rows(FileFormat::from_file_name(&cmd.file_name).ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: cannot tell the format from the name; use a .csv, .tsv, .json, \
                         .ndjson, .jsonl or .parquet file (or, with --embed, .txt, .md, .html \
                         or .pdf) or name the format",
                        cmd.file_name
                    ))
                })?)
            }
        }
    })
}

fn file_spec(cmd: &CommandIngestFile, format: FileFormat) -> Result<FileIngest, Error> {
    let mut spec = FileIngest::new(cmd.file_name.clone(), format);
    spec.overrides = parse_schema_overrides(&cmd.schema_overrides)?;
    if let Some(header) = cmd.csv_has_header {
        spec.csv_header = header;
    }
    if !cmd.csv_delimiter.is_empty() {
        let bytes = cmd.csv_delimiter.as_bytes();
        if bytes.len() != 1 {
            return Err(Error::invalid(format!(
                "CSV delimiter must be one byte, got {:?}",
                cmd.csv_delimiter
            )));
        }
        spec.csv_delimiter = bytes[0];
    }
    Ok(spec)
}

/// The table a command names, in the request's default schema when it names none.
fn table_ref<T>(
    service: &LakehouseFlightSql,
    request: &Request<T>,
    schema: &str,
    table: &str,
) -> Result<TableRef, Status> {
    let default_schema = service.default_schema(request)?;
    Ok(TableRef::qualify(Some(schema), table, &default_schema).map_err(Error::from)?)
}

/// The upload's bytes, in order; ends with an error when fewer or more bytes arrive than the
/// command announced (`size_bytes`, when set) or the stream fails.
fn upload(
    cmd: &CommandIngestFile,
    request: Request<PeekableFlightDataStream>,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static {
    let expected = cmd.size_bytes;
    let state = (request.into_inner(), 0u64, false);
    Box::pin(futures::stream::unfold(
        state,
        move |(mut stream, received, done)| async move {
            if done {
                return None;
            }
            match stream.next().await {
                Some(Ok(data)) => {
                    let received = received + data.data_body.len() as u64;
                    Some((Ok(data.data_body), (stream, received, false)))
                }
                Some(Err(status)) => Some((
                    Err(std::io::Error::other(status.message().to_string())),
                    (stream, received, true),
                )),
                None if expected != 0 && expected != received => Some((
                    Err(std::io::Error::other(format!(
                        "upload incomplete: {received} of {expected} bytes arrived"
                    ))),
                    (stream, received, true),
                )),
                None => None,
            }
        },
    ))
}

/// A document upload spooled to a temporary file, with its SHA-256 (lowercase hex) and size in
/// bytes.
async fn spool(
    cmd: &CommandIngestFile,
    request: Request<PeekableFlightDataStream>,
) -> Result<(tempfile::NamedTempFile, String, u64), Status> {
    let io = |e: std::io::Error| Error::Io {
        context: format!("spooling upload of {}", cmd.file_name),
        source: e,
    };
    let mut spool = tempfile::NamedTempFile::new().map_err(io)?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut chunks = upload(cmd, request);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| Error::invalid(format!("{}: {e}", cmd.file_name)))?;
        hasher.update(&chunk);
        received += chunk.len() as u64;
        // Chunks are at most a few MiB; a blocking write to local disk is brief.
        spool.write_all(&chunk).map_err(io)?;
    }
    spool.flush().map_err(io)?;
    Ok((spool, hex::encode(hasher.finalize()), received))
}

fn one_result(app_metadata: Vec<u8>) -> Response<BoxStream<PutResult>> {
    let put = PutResult {
        app_metadata: app_metadata.into(),
    };
    Response::new(Box::pin(futures::stream::once(async move { Ok(put) })))
}

pub(super) async fn do_put(
    service: &LakehouseFlightSql,
    cmd: CommandIngestFile,
    request: Request<PeekableFlightDataStream>,
) -> Result<Response<BoxStream<PutResult>>, Status> {
    super::require_write(&request, "ingest")?;
    let table = table_ref(service, &request, &cmd.schema, &cmd.table)?;
    let mode = match cmd.mode() {
        IngestMode::Unspecified => WriteMode::CreateOrAppend,
        IngestMode::Create => WriteMode::Create,
        IngestMode::Append => WriteMode::Append,
        IngestMode::Replace => WriteMode::Replace,
        IngestMode::Upsert => WriteMode::Upsert,
    };
    let kind = kind(&cmd)?;
    if let Some(documents) = cmd.documents.clone() {
        return ingest_documents(service, cmd, documents, kind, table, mode, request).await;
    }
    let format = match kind {
        Kind::Rows(format) => format,
        Kind::Document(_) => {
            return Err(Error::invalid(format!(
                "{}: text, Markdown and HTML files are ingested as documents: add --embed \
                 (chunked and embedded into a Lance document table)",
                cmd.file_name
            ))
            .into());
        }
    };
    let spec = file_spec(&cmd, format)?;
    let call = super::call(&request);
    let started = std::time::Instant::now();
    let report = service
        .catalog()
        .ingest_upload(
            &table,
            mode,
            spec,
            upload(&cmd, request),
            Some(service.engine.primary_key_check()),
        )
        .await
        .map_err(Error::from)?;
    if let IngestOutcome::Committed { manifest, .. } = &report.outcome {
        service.engine.after_commit(&table, manifest);
    }
    let (sha256, received) = (report.sha256, report.bytes);
    let result = match report.outcome {
        IngestOutcome::Unchanged { manifest } => IngestFileResult {
            version: manifest.version.0,
            no_op: true,
            message: format!(
                "{}: unchanged — identical content is already in {table} version {}",
                cmd.file_name, manifest.version
            ),
            content_sha256: sha256,
            ..Default::default()
        },
        IngestOutcome::Committed { manifest, rows } => IngestFileResult {
            version: manifest.version.0,
            rows,
            no_op: false,
            message: format!(
                "{}: {rows} rows ({received} bytes) → {table} version {}",
                cmd.file_name, manifest.version
            ),
            content_sha256: sha256,
            ..Default::default()
        },
    };
    super::note_ingest(call.as_ref(), &table, result.rows, received);
    tracing::info!(%table, version = result.version, rows = result.rows, no_op = result.no_op,
        file = %cmd.file_name, bytes = received, streamed = report.streamed,
        ms = started.elapsed().as_millis(), "file ingested");
    Ok(one_result(result.encode_to_vec()))
}

/// Aborts the task when dropped: the response stream owns it, so a client that goes away
/// stops the ingest (which then commits nothing).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn ingest_documents(
    service: &LakehouseFlightSql,
    cmd: CommandIngestFile,
    documents: DocumentOptions,
    kind: Kind,
    table: TableRef,
    mode: WriteMode,
    request: Request<PeekableFlightDataStream>,
) -> Result<Response<BoxStream<PutResult>>, Status> {
    let source = if documents.source.is_empty() {
        cmd.file_name.clone()
    } else {
        documents.source.clone()
    };
    let options = DocumentIngestOptions {
        chunk_size: (documents.chunk_size != 0).then_some(documents.chunk_size as usize),
        chunk_overlap: documents.chunk_overlap.map(|n| n as usize),
        model: (!documents.model.is_empty()).then(|| documents.model.clone()),
    };
    // How the upload is read, settled before receiving it (bad CSV options fail first).
    enum Input {
        Rows(FileIngest),
        Document(DocumentFormat),
    }
    let input = match kind {
        Kind::Rows(format) => {
            let mut spec = file_spec(&cmd, format)?;
            spec.name = source.clone();
            Input::Rows(spec)
        }
        Kind::Document(format) => Input::Document(format),
    };
    let (spool, sha256, _) = spool(&cmd, request).await?;
    let set = {
        let source = source.clone();
        let text_column = if documents.text_column.is_empty() {
            "text".to_string()
        } else {
            documents.text_column.clone()
        };
        let id_column = (!documents.id_column.is_empty()).then(|| documents.id_column.clone());
        tokio::task::spawn_blocking(move || -> Result<DocumentSet, Error> {
            match input {
                Input::Document(format) => {
                    let bytes = std::fs::read(spool.path()).map_err(|e| Error::Io {
                        context: format!("reading the upload of {source}"),
                        source: e,
                    })?;
                    Ok(DocumentSet::from_file(&source, &bytes, format)?)
                }
                Input::Rows(spec) => {
                    let (schema, batches) = lakehouse_catalog::read_file(spool.path(), &spec)?;
                    Ok(DocumentSet::from_rows(
                        &source,
                        &schema,
                        &batches,
                        &text_column,
                        id_column.as_deref(),
                    )?)
                }
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("reading the documents panicked: {e}")))??
    };

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<PutResult, Status>>(16);
    let progress_tx = tx.clone();
    let progress = std::sync::Arc::new(move |p: DocumentProgress| {
        let interim = IngestFileResult {
            documents: p.documents,
            documents_unchanged: p.unchanged,
            chunks: p.chunks_done,
            chunks_total: p.chunks_total,
            progress: true,
            ..Default::default()
        };
        // Progress is best effort: a slow client misses some reports, never blocks the work.
        let _ = progress_tx.try_send(Ok(PutResult {
            app_metadata: interim.encode_to_vec().into(),
        }));
    });
    let engine = service.engine.clone();
    let scope = lakehouse_catalog::commit_scope().unwrap_or_default();
    let task = tokio::spawn(lakehouse_catalog::in_scope(scope, async move {
        let started = std::time::Instant::now();
        let outcome = engine
            .ingest_documents(&table, mode, set, &options, progress)
            .await;
        let answer = outcome.map_err(Status::from).map(|report| {
            let seconds = started.elapsed().as_secs_f64();
            let written = report.documents - report.unchanged;
            let message = if written == 0 && report.deleted == 0 {
                format!(
                    "{source}: unchanged — {} document(s) already in {table}",
                    report.documents
                )
            } else if report.chunks == 0 && report.deleted == 0 {
                format!(
                    "{source}: no text to embed in {} document(s); nothing written to {table}",
                    written
                )
            } else {
                format!(
                    "{source}: {} document(s), {} unchanged, {} deleted; {} chunks embedded with \
                     {} → {table} (Lance version {}{}) in {seconds:.1} s",
                    report.documents,
                    report.unchanged,
                    report.deleted,
                    report.chunks,
                    report.model,
                    report.version,
                    if report.created { ", created" } else { "" }
                )
            };
            tracing::info!(%table, version = report.version, documents = report.documents,
                unchanged = report.unchanged, chunks = report.chunks, deleted = report.deleted,
                seconds, file = %source, "documents ingested");
            let result = IngestFileResult {
                version: report.version,
                rows: report.chunks,
                no_op: written == 0 && report.deleted == 0,
                content_sha256: sha256,
                message,
                documents: report.documents,
                documents_unchanged: report.unchanged,
                chunks: report.chunks,
                documents_deleted: report.deleted,
                progress: false,
                chunks_total: report.chunks,
            };
            PutResult {
                app_metadata: result.encode_to_vec().into(),
            }
        });
        let _ = tx.send(answer).await;
    }));
    let guard = AbortOnDrop(task);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| {
        let _owned = &guard;
        item
    });
    Ok(Response::new(Box::pin(stream)))
}

/// `CommandPruneDocuments`: deletes the documents of sources not in `keep_sources`.
pub(super) async fn prune(
    service: &LakehouseFlightSql,
    cmd: CommandPruneDocuments,
    request: Request<PeekableFlightDataStream>,
) -> Result<Response<BoxStream<PutResult>>, Status> {
    super::require_write(&request, "prune")?;
    let table = table_ref(service, &request, &cmd.schema, &cmd.table)?;
    let (sources, chunks) = service
        .engine
        .prune_documents(&table, &cmd.keep_sources)
        .await?;
    tracing::info!(%table, sources, chunks, "documents pruned");
    let result = PruneDocumentsResult {
        sources_deleted: sources,
        chunks_deleted: chunks,
        message: format!(
            "pruned {table}: {sources} source(s) not given any more, {chunks} chunks deleted"
        ),
    };
    Ok(one_result(result.encode_to_vec()))
}
