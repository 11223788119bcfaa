//! The hot cache: the `[cache]` settings, the range cache in front of the storage the
//! session reads Parquet data through ([`lakehouse_catalog::cache`]), the sizes of Lance's
//! index and metadata caches, and `cache_stats()`.
//!
//! `SELECT * FROM cache_stats()` answers one row per tier: `cache` Utf8 (`data`: Parquet data
//! files and deletion vectors in memory; `data_disk`: the same on the disk tier, when
//! `disk_path` is set), `hits`, `misses`, `hit_bytes`, `miss_bytes`, `evictions`, `entries`,
//! `bytes`, `capacity_bytes` (Int64) — counts since the server started. For `data`, a read
//! not answered from memory is a miss (it may then hit the disk tier); for `data_disk`, hits
//! are reads answered from disk and misses reads from the store, `bytes` counts bytes written
//! to the disk tier (whole blocks), and `evictions` and `entries` are NULL (foyer's block
//! engine does not report them).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
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
    /// A local directory for the disk tier of the data cache (useful with S3 storage: ranges
    /// read once are then read from local disk, also after a restart); none by default.
    pub disk_path: Option<std::path::PathBuf>,
    /// The disk tier's capacity in bytes; default 10 GiB. Needs `disk_path`.
    pub disk_bytes: Option<u64>,
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

    /// The disk tier (`disk_path`, `disk_bytes`), if configured.
    ///
    /// # Errors
    /// A message naming the key when `disk_bytes` is set without `disk_path`, or is below
    /// one block ([`lakehouse_catalog::cache::DISK_BLOCK_BYTES`]).
    pub fn disk_tier(&self) -> Result<Option<lakehouse_catalog::cache::DiskTier>, String> {
        use lakehouse_catalog::cache::{DISK_BLOCK_BYTES, DiskTier};
        match (&self.disk_path, self.disk_bytes) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err("cache.disk_bytes needs cache.disk_path".into()),
            (Some(path), bytes) => {
                let capacity = bytes.unwrap_or(DEFAULT_DISK_BYTES);
                if capacity < DISK_BLOCK_BYTES {
                    return Err(format!(
                        "cache.disk_bytes = {capacity} is below one block ({DISK_BLOCK_BYTES} bytes)"
                    ));
                }
                Ok(Some(DiskTier {
                    path: path.clone(),
                    capacity,
                }))
            }
        }
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

/// The disk tier's default capacity: 10 GiB.
pub const DEFAULT_DISK_BYTES: u64 = 10 << 30;

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
        Field::new("evictions", DataType::Int64, true),
        Field::new("entries", DataType::Int64, true),
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
        lakehouse_vector::deferred_table_without_arguments(
            STATS_NAME,
            &args,
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

/// One row of `cache_stats()` (see the module docs).
struct Row {
    cache: &'static str,
    hits: u64,
    misses: u64,
    hit_bytes: u64,
    miss_bytes: u64,
    evictions: Option<u64>,
    entries: Option<u64>,
    bytes: u64,
    capacity: u64,
}

#[async_trait::async_trait]
impl lakehouse_vector::Deferred for Stats {
    async fn run(self, _ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        let s = self.cache.stats();
        let mut rows = vec![Row {
            cache: "data",
            hits: s.hits,
            misses: s.disk_hits + s.misses,
            hit_bytes: s.hit_bytes,
            miss_bytes: s.disk_hit_bytes + s.miss_bytes,
            evictions: Some(s.evictions),
            entries: Some(s.entries),
            bytes: s.bytes,
            capacity: s.capacity,
        }];
        if s.disk_capacity > 0 {
            rows.push(Row {
                cache: "data_disk",
                hits: s.disk_hits,
                misses: s.misses,
                hit_bytes: s.disk_hit_bytes,
                miss_bytes: s.miss_bytes,
                evictions: None,
                entries: None,
                bytes: s.disk_write_bytes,
                capacity: s.disk_capacity,
            });
        }
        let ints = |f: fn(&Row) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| f(r) as i64),
            ))
        };
        let optional = |f: fn(&Row) -> Option<u64>| -> ArrayRef {
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| f(r).map(|v| v as i64)),
            ))
        };
        Ok(RecordBatch::try_new(
            stats_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.cache))),
                ints(|r| r.hits),
                ints(|r| r.misses),
                ints(|r| r.hit_bytes),
                ints(|r| r.miss_bytes),
                optional(|r| r.evictions),
                optional(|r| r.entries),
                ints(|r| r.bytes),
                ints(|r| r.capacity),
            ],
        )?)
    }
}
