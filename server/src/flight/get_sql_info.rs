//! `CommandGetSqlInfo`: what the server is and supports. Every value is true of this server;
//! features that arrive later (transactions, cancellation) are reported as unsupported until
//! they exist. The function lists come from DataFusion's own function packages.

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetSqlInfo, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, SqlTransactionIsolationLevel,
    SupportedSqlGrammar,
};
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use datafusion::logical_expr::ScalarUDF;
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql, command_flight_info, encode_batch};
use crate::error::Error;

/// Server name reported as `FLIGHT_SQL_SERVER_NAME`.
pub const SERVER_NAME: &str = "Lakehouse";

fn names(functions: Vec<Arc<ScalarUDF>>) -> Vec<String> {
    let mut names: Vec<String> = functions.iter().map(|f| f.name().to_uppercase()).collect();
    names.sort();
    names.dedup();
    names
}

/// Builds the SqlInfo table once, at start; `timeout_ms` is the per-query timeout (0: none).
pub(super) fn build(timeout_ms: i32) -> Result<SqlInfoData, Error> {
    use datafusion::functions as f;
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, SERVER_NAME);
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, timeout_ms);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    // DataFusion sorts NULLs last ascending and first descending: NULL is the highest value.
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    let keywords: Vec<String> = datafusion::sql::sqlparser::keywords::ALL_KEYWORDS
        .iter()
        .map(|k| k.to_string())
        .collect();
    b.append(SqlInfo::SqlKeywords, keywords);
    b.append(SqlInfo::SqlNumericFunctions, names(f::math::functions()));
    let mut string = f::string::functions();
    string.extend(f::unicode::functions());
    string.extend(f::regex::functions());
    b.append(SqlInfo::SqlStringFunctions, names(string));
    b.append(SqlInfo::SqlSystemFunctions, names(f::core::functions()));
    b.append(
        SqlInfo::SqlDatetimeFunctions,
        names(f::datetime::functions()),
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        SupportedSqlGrammar::SqlCoreGrammar as i32,
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    // 0 = no limit known (JDBC DatabaseMetaData convention).
    b.append(SqlInfo::SqlMaxColumnNameLength, 0i64);
    b.append(SqlInfo::SqlMaxTableNameLength, 128i64);
    b.append(SqlInfo::SqlDbSchemaNameLength, 128i64);
    b.append(SqlInfo::SqlMaxCatalogNameLength, 128i64);
    b.append(SqlInfo::SqlMaxStatementLength, 0i64);
    b.append(
        SqlInfo::SqlDefaultTransactionIsolation,
        SqlTransactionIsolationLevel::SqlTransactionNone as i32,
    );
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    Ok(b.build()?)
}

pub(super) fn get_flight_info(
    service: &LakehouseFlightSql,
    query: CommandGetSqlInfo,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let schema = query.clone().into_builder(&service.sql_info).schema();
    command_flight_info(&schema, &query, request)
}

pub(super) fn do_get(
    service: &LakehouseFlightSql,
    query: CommandGetSqlInfo,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let batch = query
        .into_builder(&service.sql_info)
        .build()
        .map_err(Error::from)?;
    Ok(encode_batch(batch))
}
