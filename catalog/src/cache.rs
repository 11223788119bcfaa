//! [`CachingStore`]: a bounded cache of object byte ranges in front of an [`ObjectStore`], for
//! the hot paths of queries (Parquet footers, page indexes and column chunks; deletion
//! vectors), in memory and optionally on a local disk.
//!
//! It caches bounded range reads and whole-object reads of objects that never change once
//! written ([`layout::is_immutable`]: data files and deletion vectors, each under a fresh UUID
//! name and written with `PutMode::Create`). A new table version names new objects, so a
//! cached range can never go stale: nothing is ever invalidated, and evicting an entry only
//! costs a read. Reads of other objects (manifests, markers), conditional and HEAD requests,
//! listings and writes pass through.
//!
//! The cache is foyer's hybrid cache (`foyer::HybridCache`): an LRU memory tier weighed in
//! bytes and, with [`DiskTier`], a block-engine disk tier that every read range is written to
//! (`HybridCachePolicy::WriteOnInsertion`) and that survives a restart (foyer recovers its
//! index from the blocks on open). Concurrent misses for one range are fetched once.

use std::fmt;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, RecoverMode, Source,
};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, Result,
};

use crate::layout;

/// Counters of a [`RangeCache`] since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Range reads answered from memory.
    pub hits: u64,
    /// Range reads answered from the disk tier (0 without one).
    pub disk_hits: u64,
    /// Range reads forwarded to the store (then cached).
    pub misses: u64,
    /// Bytes answered from memory.
    pub hit_bytes: u64,
    /// Bytes answered from the disk tier.
    pub disk_hit_bytes: u64,
    /// Bytes read from the store through the cache.
    pub miss_bytes: u64,
    /// Entries evicted from memory to stay within its capacity (with a disk tier they stay
    /// there).
    pub evictions: u64,
    /// Entries held in memory now.
    pub entries: u64,
    /// Bytes held in memory now (cached bytes plus keys).
    pub bytes: u64,
    /// The memory capacity, in bytes.
    pub capacity: u64,
    /// Bytes written to the disk tier since it opened (block writes, so whole blocks).
    pub disk_write_bytes: u64,
    /// The disk tier's capacity in bytes (0 without one).
    pub disk_capacity: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    hit_bytes: AtomicU64,
    disk_hit_bytes: AtomicU64,
    miss_bytes: AtomicU64,
    evictions: AtomicU64,
}

/// The key of one cached range: the object's path and the byte range (`0..u64::MAX` for a
/// whole object).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RangeKey {
    path: String,
    start: u64,
    end: u64,
}

/// One cached range: its bytes and the object's metadata (for a `GetResult`).
#[derive(Debug, Clone)]
struct Entry {
    bytes: Bytes,
    meta: ObjectMeta,
}

/// A local directory the cache keeps ranges in beyond memory (`[cache] disk_path` /
/// `disk_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskTier {
    /// The directory (created when missing); foyer's block files live in it.
    pub path: PathBuf,
    /// Its capacity in bytes (rounded down to whole blocks of [`DISK_BLOCK_BYTES`]).
    pub capacity: u64,
}

/// The disk tier's block size: foyer writes and evicts whole blocks; a range larger than a
/// block stays in memory only.
pub const DISK_BLOCK_BYTES: u64 = 4 << 20;

/// Memory capacity per shard of the memory tier (shards lock independently).
const SHARD_BYTES: u64 = 64 << 20;

/// The shared, bounded range cache (cheap to clone).
#[derive(Clone)]
pub struct RangeCache {
    /// `None`: off (capacity 0), every read passes through.
    cache: Option<HybridCache<RangeKey, Entry>>,
    counters: Arc<Counters>,
    capacity: u64,
    disk_capacity: u64,
}

impl fmt::Debug for RangeCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangeCache")
            .field("capacity", &self.capacity)
            .field("disk_capacity", &self.disk_capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counts evictions from the memory tier.
struct EvictionCounter(Arc<Counters>);

impl foyer::EventListener for EvictionCounter {
    type Key = RangeKey;
    type Value = Entry;

    fn on_leave(&self, reason: foyer::Event, _key: &RangeKey, _value: &Entry) {
        if reason == foyer::Event::Evict {
            self.0.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A foyer error as a store error.
fn store_error(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: "cache",
        source: Box::new(e),
    }
}

impl RangeCache {
    /// A cache holding at most `capacity` bytes in memory (0 turns the cache off: every read
    /// passes through), and ranges on `disk` when given.
    ///
    /// # Errors
    /// `object_store::Error::Generic` (store `cache`) when the disk tier's directory cannot
    /// be created or its blocks cannot be opened.
    pub async fn open(capacity: u64, disk: Option<&DiskTier>) -> Result<Self> {
        let counters = Arc::new(Counters::default());
        if capacity == 0 {
            return Ok(Self {
                cache: None,
                counters,
                capacity,
                disk_capacity: 0,
            });
        }
        let shards = (capacity / SHARD_BYTES).clamp(1, 16);
        let shard_bytes = capacity / shards;
        let weigh = |key: &RangeKey, entry: &Entry| entry.bytes.len() + key.path.len() + 64;
        let builder = HybridCacheBuilder::new()
            .with_name("lakehouse-data")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            // Written to disk when inserted: nothing is left to flush from memory on close.
            .with_flush_on_close(false)
            .with_event_listener(Arc::new(EvictionCounter(Arc::clone(&counters))))
            .memory(usize::try_from(capacity).unwrap_or(usize::MAX))
            .with_shards(shards as usize)
            .with_weighter(weigh)
            // A range larger than a shard is answered but not kept (it would evict the shard).
            .with_filter(move |key, entry| weigh(key, entry) as u64 <= shard_bytes)
            .storage();
        let (builder, disk_capacity) = match disk {
            None => (builder, 0),
            Some(tier) => {
                let device = FsDeviceBuilder::new(&tier.path)
                    .with_capacity(usize::try_from(tier.capacity).unwrap_or(usize::MAX))
                    .build()
                    .map_err(store_error)?;
                let engine =
                    BlockEngineConfig::new(device).with_block_size(DISK_BLOCK_BYTES as usize);
                (
                    builder
                        .with_engine_config(engine)
                        .with_recover_mode(RecoverMode::Quiet),
                    tier.capacity,
                )
            }
        };
        let cache = builder.build().await.map_err(store_error)?;
        Ok(Self {
            cache: Some(cache),
            counters,
            capacity,
            disk_capacity,
        })
    }

    /// Whether reads go through the cache at all (memory capacity above 0).
    pub fn is_on(&self) -> bool {
        self.cache.is_some()
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let (entries, bytes, disk_write_bytes) = match &self.cache {
            Some(cache) => (
                cache.memory().entries() as u64,
                cache.memory().usage() as u64,
                if cache.is_hybrid() {
                    cache.storage().statistics().disk_write_bytes() as u64
                } else {
                    0
                },
            ),
            None => (0, 0, 0),
        };
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            hit_bytes: c.hit_bytes.load(Ordering::Relaxed),
            disk_hit_bytes: c.disk_hit_bytes.load(Ordering::Relaxed),
            miss_bytes: c.miss_bytes.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            entries,
            bytes,
            capacity: self.capacity,
            disk_write_bytes,
            disk_capacity: self.disk_capacity,
        }
    }

    /// Writes what the disk tier has queued and closes it; called once, when the server has
    /// stopped reading. A failure is logged: the disk tier is only a cache.
    pub async fn close(&self) {
        if let Some(cache) = &self.cache
            && cache.is_hybrid()
            && let Err(e) = cache.close().await
        {
            tracing::warn!(error = %e, "closing the disk tier of the data cache");
        }
    }

    /// The bytes of `range` of `location`: from memory, from the disk tier, or fetched once
    /// by `fetch`. Only called when the cache is on.
    async fn get(
        &self,
        location: &Path,
        range: Range<u64>,
        fetch: impl Future<Output = Result<Entry>> + Send + 'static,
    ) -> Result<Entry> {
        let Some(cache) = &self.cache else {
            return fetch.await;
        };
        let key = RangeKey {
            path: location.to_string(),
            start: range.start,
            end: range.end,
        };
        let entry = cache
            .get_or_fetch(&key, || fetch)
            .await
            .map_err(store_error)?;
        let bytes = entry.value().bytes.len() as u64;
        let (count, count_bytes) = match entry.source() {
            Source::Memory => (&self.counters.hits, &self.counters.hit_bytes),
            Source::Disk => (&self.counters.disk_hits, &self.counters.disk_hit_bytes),
            Source::Outer => (&self.counters.misses, &self.counters.miss_bytes),
        };
        count.fetch_add(1, Ordering::Relaxed);
        count_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(entry.value().clone())
    }
}

/// An `Option<String>` in foyer's encoding: a presence flag, then the string.
fn encode_option(value: &Option<String>, writer: &mut impl Write) -> foyer::Result<()> {
    value.is_some().encode(writer)?;
    match value {
        Some(text) => text.encode(writer),
        None => Ok(()),
    }
}

fn decode_option(reader: &mut impl Read) -> foyer::Result<Option<String>> {
    Ok(if bool::decode(reader)? {
        Some(String::decode(reader)?)
    } else {
        None
    })
}

/// How a key is kept on the disk tier: path, start, end, each in foyer's own encoding.
impl Code for RangeKey {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        self.path.encode(writer)?;
        self.start.encode(writer)?;
        self.end.encode(writer)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        Ok(Self {
            path: String::decode(reader)?,
            start: u64::decode(reader)?,
            end: u64::decode(reader)?,
        })
    }

    fn estimated_size(&self) -> usize {
        self.path.estimated_size() + 16
    }
}

/// How a range is kept on the disk tier: the bytes, then the object's metadata (path, size,
/// last-modified in µs since the epoch, e-tag, version), each in foyer's own encoding.
impl Code for Entry {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        self.bytes.encode(writer)?;
        self.meta.location.to_string().encode(writer)?;
        self.meta.size.encode(writer)?;
        self.meta.last_modified.timestamp_micros().encode(writer)?;
        encode_option(&self.meta.e_tag, writer)?;
        encode_option(&self.meta.version, writer)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let bytes = Bytes::decode(reader)?;
        let location = Path::from(String::decode(reader)?);
        let size = u64::decode(reader)?;
        let micros = i64::decode(reader)?;
        let last_modified = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(|| {
            foyer::Error::new(foyer::ErrorKind::Parse, "last-modified out of range")
        })?;
        Ok(Self {
            bytes,
            meta: ObjectMeta {
                location,
                size,
                last_modified,
                e_tag: decode_option(reader)?,
                version: decode_option(reader)?,
            },
        })
    }

    fn estimated_size(&self) -> usize {
        let text = |t: &Option<String>| 1 + t.as_ref().map_or(0, |t| 8 + t.len());
        self.bytes.estimated_size()
            + 8
            + self.meta.location.as_ref().len()
            + 16
            + text(&self.meta.e_tag)
            + text(&self.meta.version)
    }
}

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
        if !self.cache.is_on()
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
        let path = location.clone();
        let entry = self
            .cache
            .get(location, range.clone(), async move {
                let result = inner.get_opts(&path, options).await?;
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
        if !self.cache.is_on() || !layout::is_immutable(location) {
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
