//! The worker side of distributed execution: datafusion-distributed's `Worker` with our runtime
//! and catalog check, the deletion vectors of a task's files re-attached to its scans, and the
//! secret every call must carry (see the [module docs](super)).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DistributedExt, Worker, WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse,
    WorkerQueryContext,
};

use super::{CATALOG_HEADER, SECRET_HEADER, ScanDeletes, WorkerChannels, task_headers};
use crate::error::Result;

/// The worker side: datafusion-distributed's `Worker` executing stages with `runtime` (our
/// object store under the plans' URL, the memory pool) for the catalog `catalog_id`, passing
/// the secret on to the workers it calls (over `channels`). Mount it behind [`check_secret`].
///
/// A task whose [`CATALOG_HEADER`] names another catalog fails with DataFusion's execution
/// error naming both ids: the worker reads another storage root than the coordinator.
///
/// # Errors
/// [`Error::Config`] for a secret that is not printable ASCII.
pub fn worker(
    runtime: Arc<RuntimeEnv>,
    secret: &str,
    catalog_id: &str,
    channels: WorkerChannels,
) -> Result<Worker> {
    let headers = task_headers(secret, catalog_id)?;
    let own = catalog_id.to_string();
    let worker = Worker::from_session_builder(move |ctx: WorkerQueryContext| {
        let headers = headers.clone();
        let own = own.clone();
        let channels = channels.clone();
        async move {
            let theirs = ctx
                .headers
                .get(CATALOG_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            if theirs != own {
                return Err(DataFusionError::Execution(format!(
                    "this worker reads catalog {own}, the task comes from catalog {theirs}: \
                     start the worker with the coordinator's --storage"
                )));
            }
            let state = ctx
                .builder
                .with_distributed_passthrough_headers(headers)?
                .with_distributed_channel_resolver(channels)
                .with_distributed_option_extension_from_headers::<ScanDeletes>(&ctx.headers)?
                .build();
            let plans = match state.config().options().extensions.get::<ScanDeletes>() {
                Some(deletes) => access_plans(deletes, state.runtime_env()).await?,
                None => HashMap::new(),
            };
            if plans.is_empty() {
                return Ok(state);
            }
            let plans = Arc::new(plans);
            Ok(SessionStateBuilder::new_from_existing(state)
                .with_distributed_worker_plan_rewrite_handler(
                    move |event: WorkerPlanRewriteEvent<'_>| {
                        Ok(WorkerPlanRewriteEventResponse::new(attach_access_plans(
                            event.plan, &plans,
                        )?))
                    },
                )
                .build())
        }
    })
    .with_runtime_env(runtime)
    .with_version(env!("CARGO_PKG_VERSION"));
    Ok(worker)
}

/// A tonic interceptor refusing (`Unauthenticated`) every call whose [`SECRET_HEADER`] is
/// not `secret`.
pub fn check_secret(
    secret: &str,
) -> impl FnMut(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status>
+ Clone
+ use<> {
    let expected = secret.as_bytes().to_vec();
    move |request: tonic::Request<()>| {
        let given = request.metadata().get(SECRET_HEADER).map(|v| v.as_bytes());
        if given.is_some_and(|g| bool::from(subtle::ConstantTimeEq::ct_eq(g, &expected[..]))) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(
                "worker calls must carry the cluster secret ([distributed] secret)",
            ))
        }
    }
}

/// The access plans (by data-file path) of the files `deletes` names, their deletion vectors
/// read from the store under [`crate::query::STORE_URL`] in `runtime`.
///
/// # Errors
/// DataFusion's error when a deletion vector cannot be read or does not match its file.
async fn access_plans(
    deletes: &ScanDeletes,
    runtime: &RuntimeEnv,
) -> std::result::Result<HashMap<String, ParquetAccessPlan>, DataFusionError> {
    if deletes.files.is_empty() {
        return Ok(HashMap::new());
    }
    let files: Vec<lakehouse_catalog::DataFile> = serde_json::from_str(&deletes.files)
        .map_err(|e| DataFusionError::Internal(format!("lakehouse_deletes.files: {e}")))?;
    let url = datafusion::execution::object_store::ObjectStoreUrl::parse(crate::query::STORE_URL)?;
    let store = runtime.object_store(url)?;
    let plans = files.iter().map(|file| {
        let store = Arc::clone(&store);
        async move {
            let deleted = lakehouse_catalog::read_deletion_vector(&store, file)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok::<_, DataFusionError>((
                file.path.clone(),
                crate::query::table::access_plan(file, &deleted)?,
            ))
        }
    });
    Ok(futures::future::try_join_all(plans)
        .await?
        .into_iter()
        .collect())
}

/// `plan` with `plans` attached to the files of its Parquet scans over our store.
fn attach_access_plans(
    plan: Arc<dyn ExecutionPlan>,
    plans: &HashMap<String, ParquetAccessPlan>,
) -> std::result::Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    if plans.is_empty() {
        return Ok(plan);
    }
    let store_url =
        &datafusion::execution::object_store::ObjectStoreUrl::parse(crate::query::STORE_URL)?;
    plan.transform_up(|node| {
        let Some(scan) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(Transformed::no(node));
        };
        if config.object_store_url != *store_url {
            return Ok(Transformed::no(node));
        }
        let mut config = config.clone();
        let mut changed = false;
        for group in &mut config.file_groups {
            let files = std::mem::replace(
                group,
                datafusion::datasource::physical_plan::FileGroup::new(Vec::new()),
            )
            .into_inner()
            .into_iter()
            .map(|file| match plans.get(file.object_meta.location.as_ref()) {
                Some(access) => {
                    changed = true;
                    file.with_extension(access.clone())
                }
                None => file,
            })
            .collect();
            *group = datafusion::datasource::physical_plan::FileGroup::new(files);
        }
        if !changed {
            return Ok(Transformed::no(node));
        }
        let scan = scan.clone().with_data_source(Arc::new(config));
        Ok(Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}
