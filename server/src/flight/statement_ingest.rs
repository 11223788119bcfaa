//! `CommandStatementIngest` (ADBC `adbc_ingest`): a DoPut stream of record batches committed as
//! one new table version.
//!
//! Modes follow `TableDefinitionOptions` as ADBC sends them: `create` (create; fail if it
//! exists), `append` (fail if missing), `replace` (create or replace), `create_append`. Unset
//! options mean `create`. The mode and, for appends, the column-level schema check are decided
//! before anything is written; the batches stream straight into Parquet files (never collected);
//! the answer is the number of rows ingested.
//!
//! Lance tables: ingest into a live Lance table appends to its dataset (one Lance commit); the
//! option `lakehouse.table_format = lance` (CommandStatementIngest `options`) creates a new
//! table as Lance, with `lakehouse.vector.metric` (cosine, l2, dot; default cosine) and
//! `lakehouse.vector.model` (the embedding model of its vectors) recorded for its
//! `FixedSizeList<Float32, D>` columns.

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use futures::{StreamExt, TryStreamExt};
use lakehouse_catalog::{CATALOG_NAME, TableRef, WriteMode};
use tonic::{Request, Status};

use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use super::LakehouseFlightSql;
use crate::error::Error;
use crate::query::statement::LanceCreate;
use crate::query::statement::write::to_datafusion;

/// The write mode for ADBC's table-definition options.
/// The ingest option that asks for an upsert by primary key: rows with a stored key replace
/// that row, the others are appended, in one commit.
pub const INGEST_MODE_OPTION: &str = "lakehouse.ingest.mode";

fn write_mode(cmd: &CommandStatementIngest) -> Result<(WriteMode, bool), Error> {
    // Our own option: upsert by primary key into an existing table (docs/storage-layout.md).
    match cmd
        .options
        .get(INGEST_MODE_OPTION)
        .map(|m| m.to_ascii_lowercase())
    {
        None => {}
        Some(mode) if mode == "upsert" => return Ok((WriteMode::Upsert, true)),
        Some(mode) if mode == "append" || mode.is_empty() => {}
        Some(other) => {
            return Err(Error::invalid(format!(
                "{INGEST_MODE_OPTION} {other:?}: use upsert (or leave it out)"
            )));
        }
    }
    let options = cmd.table_definition_options.unwrap_or_default();
    let not_exist = TableNotExistOption::try_from(options.if_not_exist).map_err(|_| {
        Error::invalid(format!(
            "unknown if_not_exist option {}",
            options.if_not_exist
        ))
    })?;
    let exists = TableExistsOption::try_from(options.if_exists)
        .map_err(|_| Error::invalid(format!("unknown if_exists option {}", options.if_exists)))?;
    use TableExistsOption as E;
    use TableNotExistOption as N;
    // The bool says whether the table must already exist.
    Ok(match (not_exist, exists) {
        (N::Create | N::Unspecified, E::Fail | E::Unspecified) => (WriteMode::Create, false),
        (N::Create | N::Unspecified, E::Append) => (WriteMode::CreateOrAppend, false),
        (N::Create | N::Unspecified, E::Replace) => (WriteMode::Replace, false),
        (N::Fail, E::Append) => (WriteMode::Append, true),
        (N::Fail, E::Replace) => (WriteMode::Replace, true),
        (N::Fail, E::Fail | E::Unspecified) => {
            return Err(Error::invalid(
                "ingest options say to fail whether or not the table exists",
            ));
        }
    })
}

pub(super) async fn do_put(
    service: &LakehouseFlightSql,
    cmd: CommandStatementIngest,
    request: Request<PeekableFlightDataStream>,
) -> Result<i64, Status> {
    super::require_write(&request, "ingest")?;
    if cmd.temporary {
        return Err(Error::invalid("temporary tables are not supported").into());
    }
    if cmd.transaction_id.is_some() {
        return Err(Error::invalid("transactions are not supported; ingest autocommits").into());
    }
    if let Some(catalog) = cmd.catalog.as_deref().filter(|c| !c.is_empty())
        && catalog != CATALOG_NAME
    {
        return Err(Error::invalid(format!(
            "unknown catalog {catalog:?}; the catalog is {CATALOG_NAME:?}"
        ))
        .into());
    }
    let default_schema = service.default_schema(&request)?;
    let table = TableRef::qualify(cmd.schema.as_deref(), &cmd.table, &default_schema)
        .map_err(Error::from)?;
    let (mode, must_exist) = write_mode(&cmd)?;
    let lance = LanceCreate::from_options(&cmd.options)?;
    let catalog = service.catalog();
    let live = match catalog.table(&table).await {
        Ok(manifest) => Some(manifest),
        Err(lakehouse_catalog::Error::TableNotFound(_)) if !must_exist => None,
        Err(e) => return Err(Error::from(e).into()),
    };

    let location = format!("ingest into {table}");
    let call = super::call(&request);
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&received);
    let flight_data = request
        .into_inner()
        .inspect_ok(move |data| {
            let size = (data.data_header.len() + data.data_body.len()) as u64;
            counter.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        })
        .map_err(FlightError::from);
    let noted = |rows: u64| {
        let bytes = received.load(std::sync::atomic::Ordering::Relaxed);
        super::note_ingest(call.as_ref(), &table, rows, bytes);
    };
    let mut batches = FlightRecordBatchStream::new_from_flight_data(flight_data);
    let first = batches.next().await.transpose().map_err(Error::from)?;
    let input_schema = batches
        .schema()
        .cloned()
        .ok_or_else(|| Error::invalid(format!("{location}: the stream has no schema message")))?;
    let stream = futures::stream::iter(first.map(Ok)).chain(batches);
    if lance.is_some() || live.as_ref().is_some_and(|m| m.lance.is_some()) {
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            std::sync::Arc::clone(&input_schema),
            stream.map_err(to_datafusion),
        ));
        let rows = service
            .engine
            .write_lance(&table, mode, live, lance, &input_schema, stream)
            .await?;
        tracing::info!(%table, rows, ?mode, "ingested into Lance");
        noted(rows as u64);
        return Ok(rows as i64);
    }
    let (manifest, rows) = service
        .engine
        .write_batches(&table, mode, &input_schema, stream, location)
        .await?;
    tracing::info!(%table, version = %manifest.version, rows, ?mode, "ingested");
    noted(rows);
    Ok(rows as i64)
}
