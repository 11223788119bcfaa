//! The storage root: one URL, turned into an [`ObjectStore`] by object_store itself.
//!
//! - a local directory: a plain path (`./lakehouse-data`) or `file:///abs/path`; created if
//!   missing; writes are fsynced ([`crate::durable::DurableLocalStore`]);
//! - `s3://bucket/prefix`: Amazon S3 or an S3-compatible server, configured by the standard
//!   `AWS_*` environment variables that [`AmazonS3Builder::from_env`] reads (`AWS_ENDPOINT`,
//!   `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...).
//!   Commits need conditional puts (`If-None-Match`), which S3 has had since 2024; object_store
//!   uses them by default.
//!
//! Everything the catalog stores is addressed relative to the root ([`crate::layout`]), so the
//! returned store is already scoped to it (a [`PrefixStore`] for S3 prefixes).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use url::Url;

use crate::durable::DurableLocalStore;
use crate::error::{Error, Result};
use crate::traced::TracedStore;

/// A parsed storage root.
#[derive(Debug, Clone)]
pub struct StorageLocation {
    /// The normalised URL of the root: `file:///abs/dir/` or `s3://bucket/prefix/`.
    pub url: Url,
    /// The store, scoped to the root.
    pub store: Arc<dyn ObjectStore>,
    /// The same settings as storage options for engines that build their own stores from a
    /// URL (Lance: `aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_session_token`, `allow_http`), taken from the same
    /// `AWS_*` variables; empty for local storage.
    pub options: std::collections::HashMap<String, String>,
}

impl StorageLocation {
    /// Opens the storage root named by `location` (see the module docs).
    ///
    /// # Errors
    /// [`Error::InvalidStorage`] for an unsupported scheme, a local directory that cannot be
    /// created, or S3 settings object_store rejects.
    pub fn open(location: &str) -> Result<Self> {
        let invalid = |message: String| Error::InvalidStorage {
            url: location.to_string(),
            message,
        };
        let parsed = match Url::parse(location) {
            Ok(url) if url.scheme().len() > 1 => Some(url),
            // A plain path (or a Windows drive letter, parsed as a one-letter scheme).
            _ => None,
        };
        match parsed.as_ref().map(|u| u.scheme()) {
            None | Some("file") => {
                let dir = match &parsed {
                    Some(url) => url
                        .to_file_path()
                        .map_err(|_| invalid("not a local file path".into()))?,
                    None => std::path::PathBuf::from(location),
                };
                std::fs::create_dir_all(&dir)
                    .map_err(|e| invalid(format!("cannot create directory: {e}")))?;
                let dir = dir
                    .canonicalize()
                    .map_err(|e| invalid(format!("cannot resolve directory: {e}")))?;
                let store =
                    LocalFileSystem::new_with_prefix(&dir).map_err(|e| invalid(e.to_string()))?;
                let url = Url::from_directory_path(&dir)
                    .map_err(|_| invalid("not an absolute directory".into()))?;
                Ok(Self {
                    url,
                    // fsync on every completed write: object_store's local store never syncs.
                    store: Arc::new(TracedStore::new(Arc::new(DurableLocalStore::new(
                        store, dir,
                    )))),
                    options: Default::default(),
                })
            }
            Some("s3") => {
                let url = parsed.expect("scheme seen");
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| invalid("missing bucket name".into()))?
                    .to_string();
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?;
                let prefix = url.path().trim_matches('/').to_string();
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                };
                let store: Arc<dyn ObjectStore> = Arc::new(TracedStore::new(store));
                let url = Url::parse(&format!(
                    "s3://{bucket}/{}",
                    if prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{prefix}/")
                    }
                ))
                .map_err(|e| invalid(e.to_string()))?;
                Ok(Self {
                    url,
                    store,
                    options: s3_options_from_env(),
                })
            }
            Some(other) => Err(invalid(format!(
                "unsupported scheme {other:?}; use a local path, file:// or s3://"
            ))),
        }
    }
}

/// The `AWS_*` variables object_store's `AmazonS3Builder::from_env` reads, as storage-option
/// keys (lower case, without `AWS_` for `allow_http`).
fn s3_options_from_env() -> std::collections::HashMap<String, String> {
    let mut options = std::collections::HashMap::new();
    for (var, key) in [
        ("AWS_ENDPOINT", "aws_endpoint"),
        ("AWS_ENDPOINT_URL", "aws_endpoint"),
        ("AWS_REGION", "aws_region"),
        ("AWS_DEFAULT_REGION", "aws_region"),
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
        ("AWS_ALLOW_HTTP", "allow_http"),
    ] {
        if let Ok(value) = std::env::var(var) {
            options.entry(key.to_string()).or_insert(value);
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_urls() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        let loc = StorageLocation::open(sub.to_str().unwrap()).unwrap();
        assert!(sub.is_dir());
        assert_eq!(loc.url.scheme(), "file");
        assert!(loc.url.path().ends_with("/a/b/"), "{}", loc.url);
        let url = format!("file://{}", sub.display());
        assert_eq!(StorageLocation::open(&url).unwrap().url, loc.url);
    }

    #[test]
    fn bad_schemes_are_named() {
        let err = StorageLocation::open("gs://bucket/x").unwrap_err();
        assert!(
            err.to_string().contains("unsupported scheme \"gs\""),
            "{err}"
        );
        let err = StorageLocation::open("s3:///nobucket").unwrap_err();
        assert!(err.to_string().contains("missing bucket"), "{err}");
    }
}
