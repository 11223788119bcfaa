//! `CommandStatementUpdate`: a data-changing SQL statement (CREATE TABLE [AS SELECT], INSERT,
//! DELETE, UPDATE, TRUNCATE, DROP TABLE, CREATE/DROP SCHEMA, ...), run to completion by
//! [`crate::query::QueryEngine::execute_update`]; the answer is the number of rows affected.

use arrow_flight::sql::CommandStatementUpdate;
use arrow_flight::sql::server::PeekableFlightDataStream;
use tonic::{Request, Status};

use super::LakehouseFlightSql;

pub(super) async fn do_put(
    service: &LakehouseFlightSql,
    cmd: CommandStatementUpdate,
    request: Request<PeekableFlightDataStream>,
) -> Result<i64, Status> {
    super::require_write(&request, "a data-changing statement")?;
    if cmd.transaction_id.is_some() {
        return Err(
            crate::Error::invalid("transactions are not supported; statements autocommit").into(),
        );
    }
    let schema = service.default_schema(&request)?;
    let statement = service.engine.statement(&cmd.query)?;
    let rows = service
        .engine
        .execute_update(&statement, &schema, None)
        .await?;
    if let Some(call) = super::call(&request) {
        call.add(rows.max(0) as u64, 0);
    }
    Ok(rows)
}
