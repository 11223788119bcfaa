//! `lakehouse.v1.CommandIngestFile`, our own DoPut command (`lakehouse ingest`): the raw bytes
//! of one CSV, NDJSON or Parquet file, parsed and committed by the catalog.
//!
//! The upload is spooled to a temporary file while its SHA-256 is computed (the catalog reads
//! the file twice: schema inference over all rows, then parsing). The answer is one `PutResult`
//! whose `app_metadata` is an [`IngestFileResult`].

use std::io::Write as _;

use arrow_flight::PutResult;
use arrow_flight::sql::server::PeekableFlightDataStream;
use futures::StreamExt;
use lakehouse_catalog::{
    FileFormat, FileIngest, IngestOutcome, SchemaName, TableName, TableRef, WriteMode,
    parse_schema_overrides,
};
use lakehouse_proto::{CommandIngestFile, FileFormat as ProtoFormat, IngestFileResult, IngestMode};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql};
use crate::error::Error;

fn file_spec(cmd: &CommandIngestFile) -> Result<FileIngest, Error> {
    let format = match cmd.format() {
        ProtoFormat::Csv => FileFormat::Csv,
        ProtoFormat::Ndjson => FileFormat::NdJson,
        ProtoFormat::Parquet => FileFormat::Parquet,
        ProtoFormat::Unspecified => {
            FileFormat::from_file_name(&cmd.file_name).ok_or_else(|| {
                Error::invalid(format!(
                    "{}: cannot tell the format from the name; use a .csv, .tsv, .json, .ndjson, \
                 .jsonl or .parquet file or name the format",
                    cmd.file_name
                ))
            })?
        }
    };
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

pub(super) async fn do_put(
    service: &LakehouseFlightSql,
    cmd: CommandIngestFile,
    request: Request<PeekableFlightDataStream>,
) -> Result<Response<BoxStream<PutResult>>, Status> {
    super::require_write(&request, "ingest")?;
    let schema = if cmd.schema.is_empty() {
        service.default_schema(&request)?
    } else {
        SchemaName::new(cmd.schema.clone()).map_err(Error::from)?
    };
    let table = TableRef {
        schema,
        table: TableName::new(cmd.table.clone()).map_err(Error::from)?,
    };
    let mode = match cmd.mode() {
        IngestMode::Unspecified => WriteMode::CreateOrAppend,
        IngestMode::Create => WriteMode::Create,
        IngestMode::Append => WriteMode::Append,
        IngestMode::Replace => WriteMode::Replace,
    };
    let spec = file_spec(&cmd)?;

    let io = |e: std::io::Error| Error::Io {
        context: format!("spooling upload of {}", cmd.file_name),
        source: e,
    };
    let mut spool = tempfile::NamedTempFile::new().map_err(io)?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut stream = request.into_inner();
    while let Some(data) = stream.next().await {
        let data = data?;
        hasher.update(&data.data_body);
        received += data.data_body.len() as u64;
        // Chunks are at most a few MiB; a blocking write to local disk is brief.
        spool.write_all(&data.data_body).map_err(io)?;
    }
    spool.flush().map_err(io)?;
    if cmd.size_bytes != 0 && cmd.size_bytes != received {
        return Err(Error::invalid(format!(
            "{}: upload incomplete: {received} of {} bytes arrived",
            cmd.file_name, cmd.size_bytes
        ))
        .into());
    }
    let sha256 = hex::encode(hasher.finalize());
    let outcome = service
        .catalog()
        .ingest_file(&table, mode, spool.path(), &sha256, spec)
        .await
        .map_err(Error::from)?;
    let result = match outcome {
        IngestOutcome::Unchanged { manifest } => IngestFileResult {
            version: manifest.version.0,
            rows: 0,
            no_op: true,
            message: format!(
                "{}: unchanged — identical content is already in {table} version {}",
                cmd.file_name, manifest.version
            ),
            content_sha256: sha256,
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
        },
    };
    tracing::info!(%table, version = result.version, rows = result.rows, no_op = result.no_op, file = %cmd.file_name, "file ingested");
    let put = PutResult {
        app_metadata: result.encode_to_vec().into(),
    };
    Ok(Response::new(Box::pin(futures::stream::once(async move {
        Ok(put)
    }))))
}
