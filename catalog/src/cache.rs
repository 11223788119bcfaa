//! [`CachingStore`]: a memory-bounded cache of object byte ranges in front of an
//! [`ObjectStore`], for the hot paths of queries (Parquet footers, page indexes and column
//! chunks; deletion vectors).
//!
//! It caches bounded range reads and whole-object reads of objects that never change once
//! written ([`layout::is_immutable`]: data files and deletion vectors, each under a fresh UUID
//! name and written with `PutMode::Create`). A new table version names new objects, so a cached range can never go
//! stale: nothing is ever invalidated, and evicting an entry only costs a read. Reads of other
//! objects (manifests, markers), conditional and HEAD requests, listings and writes pass
//! through. The cache is moka's (TinyLFU admission, LRU eviction), weighed in bytes; concurrent
//! misses for one range are fetched once.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, Result,
};

use crate::layout;

/// Counters of a [`RangeCache`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Range reads answered from memory.
    pub hits: u64,
    /// Range reads forwarded to the store (then cached).
    pub misses: u64,
    /// Bytes answered from memory.
    pub hit_bytes: u64,
    /// Bytes read from the store through the cache.
    pub miss_bytes: u64,
    /// Entries evicted to stay within the capacity.
    pub evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes held now (cached bytes plus keys).
    pub bytes: u64,
    /// The capacity, in bytes.
    pub capacity: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    hit_bytes: AtomicU64,
    miss_bytes: AtomicU64,
    evictions: Arc<AtomicU64>,
}

/// One cached range: its bytes and the object's metadata (for a `GetResult`).
#[derive(Clone)]
struct Entry {
    bytes: Bytes,
    meta: ObjectMeta,
}

/// The shared, memory-bounded range cache (cheap to clone).
#[derive(Clone)]
pub struct RangeCache {
    cache: moka::future::Cache<(Path, u64, u64), Entry>,
    counters: Arc<Counters>,
    capacity: u64,
}

impl fmt::Debug for RangeCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangeCache")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RangeCache {
    /// A cache holding at most `capacity` bytes (0 disables it: every read passes through).
    pub fn new(capacity: u64) -> Self {
        let counters = Arc::new(Counters::default());
        let evictions = Arc::clone(&counters.evictions);
        let cache = moka::future::Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &(Path, u64, u64), entry: &Entry| {
                let weight = entry.bytes.len() + key.0.as_ref().len() + 64;
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            cache,
            counters,
            capacity,
        }
    }

    /// The counters now (entries and bytes after pending maintenance).
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            hit_bytes: c.hit_bytes.load(Ordering::Relaxed),
            miss_bytes: c.miss_bytes.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
            capacity: self.capacity,
        }
    }

    /// Applies pending evictions and counts, so [`RangeCache::stats`] is exact (tests).
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// The bytes of `range` of `location`, from memory or fetched once by `fetch`.
    async fn get(
        &self,
        location: &Path,
        range: Range<u64>,
        fetch: impl Future<Output = Result<Entry>>,
    ) -> Result<Entry> {
        let key = (location.clone(), range.start, range.end);
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(fetch)
            .await
            .map_err(|e: Arc<object_store::Error>| object_store::Error::Generic {
                store: "cache",
                source: Box::new(SharedError(e)),
            })?;
        let bytes = entry.value().bytes.len() as u64;
        if entry.is_fresh() {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            self.counters.miss_bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            self.counters.hit_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        Ok(entry.into_value())
    }
}

/// A store error shared by the readers that waited on one fetch.
#[derive(Debug)]
struct SharedError(Arc<object_store::Error>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {}

/// An [`ObjectStore`] that answers bounded range reads of immutable objects from a
/// [`RangeCache`] (see the module docs).
#[derive(Debug, Clone)]
pub struct CachingStore {
    inner: Arc<dyn ObjectStore>,
    cache: RangeCache,
}

impl CachingStore {
    /// `inner` behind `cache`.
    pub fn new(inner: Arc<dyn ObjectStore>, cache: RangeCache) -> Self {
        Self { inner, cache }
    }

    fn cacheable(&self, location: &Path, options: &GetOptions) -> Option<Range<u64>> {
        if self.cache.capacity == 0
            || options.head
            || options.if_match.is_some()
            || options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
            || options.version.is_some()
            || !layout::is_immutable(location)
        {
            return None;
        }
        match &options.range {
            Some(GetRange::Bounded(range)) => Some(range.clone()),
            // A whole object (a deletion vector): cached under the range of every offset.
            None => Some(0..u64::MAX),
            _ => None,
        }
    }
}

impl fmt::Display for CachingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CachingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(range) = self.cacheable(location, &options) else {
            return self.inner.get_opts(location, options).await;
        };
        let inner = Arc::clone(&self.inner);
        let entry = self
            .cache
            .get(location, range.clone(), async move {
                let result = inner.get_opts(location, options).await?;
                let meta = result.meta.clone();
                Ok(Entry {
                    bytes: result.bytes().await?,
                    meta,
                })
            })
            .await?;
        let bytes = entry.bytes;
        let start = if range.end == u64::MAX {
            0
        } else {
            range.start
        };
        Ok(GetResult {
            range: start..start + bytes.len() as u64,
            payload: GetResultPayload::Stream(Box::pin(futures::stream::once(
                async move { Ok(bytes) },
            ))),
            meta: entry.meta,
            attributes: Attributes::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if self.cache.capacity == 0 || !layout::is_immutable(location) {
            return self.inner.get_ranges(location, ranges).await;
        }
        let reads = ranges.iter().map(|range| {
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..Default::default()
            };
            async move { self.get_opts(location, options).await?.bytes().await }
        });
        futures::future::try_join_all(reads).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
