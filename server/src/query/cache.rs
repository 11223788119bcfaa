//! The hot cache: the `[cache]` settings, the range cache in front of the storage the
//! session reads Parquet data through ([`lakehouse_catalog::cache`]), the sizes of Lance's
//! index and metadata caches, and `cache_stats()`.
//!
//! `SELECT * FROM cache_stats()` answers one row per cache: `cache` Utf8 (`data`: Parquet
//! data files and deletion vectors), `hits`, `misses`, `hit_bytes`, `miss_bytes`, `evictions`,
//! `entries`, `bytes`, `capacity_bytes` (Int64) — counts since the server started.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use lakehouse_catalog::cache::RangeCache;
use serde::{Deserialize, Serialize};

/// The `[cache]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheOptions {
    /// Bytes of Parquet data (footers, page indexes, column chunks) and deletion vectors kept
    /// in memory; default [`default_memory_bytes`] (an eighth of the machine's memory); 0
    /// turns the cache off.
    pub memory_bytes: Option<u64>,
    /// Bytes of Lance's index cache (IVF partitions, HNSW graphs, FTS posting lists); default
    /// an eighth of the machine's memory.
    pub lance_index_bytes: Option<u64>,
    /// Bytes of Lance's metadata cache (manifests, fragment metadata); default a
    /// thirty-second of the machine's memory.
    pub lance_metadata_bytes: Option<u64>,
}

impl CacheOptions {
    /// The range cache's capacity in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.unwrap_or_else(default_memory_bytes)
    }

    /// Lance's index and metadata cache sizes in bytes.
    pub fn lance_bytes(&self) -> (u64, u64) {
        let ram = physical_memory_bytes();
        (
            self.lance_index_bytes.unwrap_or(ram / 8),
            self.lance_metadata_bytes.unwrap_or(ram / 32),
        )
    }
}

/// An eighth of the machine's physical memory (3 GiB on a 24 GiB machine).
pub fn default_memory_bytes() -> u64 {
    physical_memory_bytes() / 8
}

/// The machine's physical memory in bytes: `MemTotal` of `/proc/meminfo` (Linux); 4 GiB when
/// it cannot be read.
fn physical_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(4 << 30)
}

/// The function's name.
pub const STATS_NAME: &str = "cache_stats";

/// The result schema of `cache_stats()` (see the module docs).
pub fn stats_schema() -> SchemaRef {
    let count = |name: &str| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("cache", DataType::Utf8, false),
        count("hits"),
        count("misses"),
        count("hit_bytes"),
        count("miss_bytes"),
        count("evictions"),
        count("entries"),
        count("bytes"),
        count("capacity_bytes"),
    ]))
}

/// The `cache_stats()` table function.
#[derive(Debug)]
pub struct CacheStatsFunction {
    cache: RangeCache,
}

impl CacheStatsFunction {
    /// The function reporting `cache`.
    pub fn new(cache: RangeCache) -> Self {
        Self { cache }
    }
}

impl TableFunctionImpl for CacheStatsFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{STATS_NAME}() takes no arguments"
            )));
        }
        lakehouse_vector::deferred_table(
            stats_schema(),
            Stats {
                cache: self.cache.clone(),
            },
        )
    }
}

/// The counters, read when the query executes.
#[derive(Debug, Clone)]
struct Stats {
    cache: RangeCache,
}

#[async_trait::async_trait]
impl lakehouse_vector::Deferred for Stats {
    async fn run(self, _ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        self.cache.sync().await;
        let s = self.cache.stats();
        let int = |v: u64| -> ArrayRef { Arc::new(Int64Array::from(vec![v as i64])) };
        Ok(RecordBatch::try_new(
            stats_schema(),
            vec![
                Arc::new(StringArray::from(vec!["data"])),
                int(s.hits),
                int(s.misses),
                int(s.hit_bytes),
                int(s.miss_bytes),
                int(s.evictions),
                int(s.entries),
                int(s.bytes),
                int(s.capacity),
            ],
        )?)
    }
}
