//! [`DurableLocalStore`]: object_store's [`LocalFileSystem`] with fsync, so that an acknowledged
//! commit on local storage survives a power loss or an OS crash.
//!
//! object_store 0.13's `LocalFileSystem` writes each object to a staging file and renames it
//! into place (or hard-links it, for [`PutMode::Create`]) but never calls `fsync`: after a
//! crash of the machine a published manifest could point at a data file whose bytes never
//! reached the disk, or the manifest itself could vanish. This wrapper makes every completed
//! write durable before it returns:
//!
//! 1. the object's file is `fsync`ed (its bytes and inode);
//! 2. every directory from the object's parent up to the store root is `fsync`ed, so the new
//!    directory entries (the object's name, and any directory the write created) are durable.
//!
//! The catalog writes data and deletion files first and publishes the manifest last
//! ([`crate::Catalog`]), each write returning only once durable, so on local storage a manifest
//! is never durable before the files it names, and a commit is durable before it is answered.
//! S3 and S3-compatible stores are durable by contract and are not wrapped.
//!
//! Reads, listings and deletes pass through unchanged.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// A [`LocalFileSystem`] rooted at `root` whose completed writes are fsynced (see the module
/// docs).
#[derive(Debug, Clone)]
pub struct DurableLocalStore {
    inner: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl DurableLocalStore {
    /// Wraps `inner`, whose root directory is `root` (an absolute, canonical path).
    pub fn new(inner: LocalFileSystem, root: PathBuf) -> Self {
        Self {
            inner: Arc::new(inner),
            root,
        }
    }

    async fn sync(&self, location: &Path) -> Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sync_path(&file, &root))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "DurableLocalStore",
                source: Box::new(e),
            })?
            .map_err(|e| object_store::Error::Generic {
                store: "DurableLocalStore",
                source: Box::new(e),
            })
    }
}

/// `fsync`s `file`, then each directory from its parent up to and including `root`.
fn sync_path(file: &std::path::Path, root: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        if d == root || !d.starts_with(root) {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

impl fmt::Display for DurableLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Durable({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for DurableLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(DurableUpload {
            upload,
            store: self.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
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
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        self.sync(to).await
    }
}

/// A multipart upload whose completion is fsynced (large data files are written this way).
#[derive(Debug)]
struct DurableUpload {
    upload: Box<dyn MultipartUpload>,
    store: DurableLocalStore,
    location: Path,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.upload.complete().await?;
        self.store.sync(&self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutMode};

    #[tokio::test]
    async fn writes_land_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let store = DurableLocalStore::new(
            LocalFileSystem::new_with_prefix(&root).unwrap(),
            root.clone(),
        );
        let path = Path::from("a/b/c.json");
        store
            .put_opts(
                &path,
                PutPayload::from_static(b"{}"),
                PutOptions::from(PutMode::Create),
            )
            .await
            .unwrap();
        // A second conditional create still fails as object_store's does.
        let again = store
            .put_opts(
                &path,
                PutPayload::from_static(b"[]"),
                PutOptions::from(PutMode::Create),
            )
            .await;
        assert!(matches!(
            again,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        let mut upload = store.put_multipart(&Path::from("a/d.bin")).await.unwrap();
        upload
            .put_part(PutPayload::from_static(b"xyz"))
            .await
            .unwrap();
        upload.complete().await.unwrap();
        let bytes = store.get(&Path::from("a/d.bin")).await.unwrap();
        assert_eq!(bytes.bytes().await.unwrap().as_ref(), b"xyz");
        assert_eq!(std::fs::read(root.join("a/b/c.json")).unwrap(), b"{}");
    }
}
