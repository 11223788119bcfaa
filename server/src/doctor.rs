//! `lakehouse doctor`: checks what a cold start needs, one line per check with the fix for each
//! failure: the config parses; storage answers, is writable and honours conditional creates
//! (the catalog's commits rely on `PutMode::Create`, S3's `If-None-Match: *`); the catalog
//! loads; TLS files are readable and the key matches the certificate; every configured
//! embedding model answers with the configured dimension and every chat model answers; the
//! workers answer; the listen ports are free.

use std::time::Duration;

use lakehouse_catalog::{Catalog, StorageLocation};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;

use crate::config::{ServeArgs, ServeConfig};

/// How long one check may take before it fails.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What was checked (`config`, `storage`, `embedding model minilm`, …).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to fix a failure (`None` when it passed).
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check for the configuration `args` resolve to, in the order of the module docs.
/// A config that does not parse is the only check then.
pub async fn run(args: &ServeArgs) -> Vec<Check> {
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => {
            return vec![Check::fail(
                "config",
                e.to_string(),
                "fix the key or value named (deploy/lakehouse.toml lists every key)",
            )];
        }
    };
    let source = args
        .config
        .as_ref()
        .map_or("flags, environment and defaults".to_string(), |p| {
            p.display().to_string()
        });
    let mut checks = vec![Check::pass("config", format!("parsed {source}"))];
    checks.extend(storage(&config).await);
    checks.extend(tls(&config));
    checks.extend(models(&config).await);
    checks.extend(workers(&config).await);
    checks.extend(ports(&config).await);
    checks
}

/// Storage reachable, writable with conditional creates, and the catalog loads.
async fn storage(config: &ServeConfig) -> Vec<Check> {
    let location = match StorageLocation::open(&config.storage) {
        Ok(location) => location,
        Err(e) => {
            return vec![Check::fail(
                "storage",
                format!("{}: {e}", config.storage),
                "use a directory, file:///dir or s3://bucket/prefix; S3 settings come from \
                 AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
                 AWS_ALLOW_HTTP",
            )];
        }
    };
    let url = location.url.to_string();
    let store = std::sync::Arc::clone(&location.store);
    match answer(
        "storage reachable",
        CHECK_TIMEOUT,
        store.list_with_delimiter(None),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return vec![Check::fail(
                "storage reachable",
                format!("{url}: {e}"),
                storage_fix(&url, &e.to_string()),
            )];
        }
        Err(no_answer) => return vec![no_answer],
    }
    let mut checks = vec![Check::pass("storage reachable", url.clone())];
    checks.push(conditional_create(&store, &url).await);
    const LOADS: &str = "catalog loads";
    const UNREADABLE: &str = "a manifest named above is unreadable: restore it from a backup";
    checks.push(
        match answer(LOADS, CHECK_TIMEOUT * 4, Catalog::open(location)).await {
            Ok(Ok(catalog)) => match catalog.list().await {
                Ok(listing) => Check::pass(
                    LOADS,
                    format!(
                        "{} schemas, {} tables",
                        listing.len(),
                        listing.iter().map(|(_, t)| t.len()).sum::<usize>()
                    ),
                ),
                Err(e) => Check::fail(LOADS, e.to_string(), UNREADABLE),
            },
            Ok(Err(e)) => Check::fail(LOADS, e.to_string(), UNREADABLE),
            Err(no_answer) => no_answer,
        },
    );
    checks
}

/// Creates one probe object twice with `PutMode::Create` in `store` (at `url`): the second
/// create must fail with `AlreadyExists`, as the catalog's commits need. The probe is deleted.
async fn conditional_create(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    url: &str,
) -> Check {
    const CHECK: &str = "storage writable with conditional create";
    let probe =
        object_store::path::Path::from(format!("_lakehouse_doctor/{}", uuid::Uuid::new_v4()));
    let create = || {
        answer(
            CHECK,
            CHECK_TIMEOUT,
            store.put_opts(
                &probe,
                PutPayload::from_static(b"lakehouse doctor"),
                PutOptions::from(PutMode::Create),
            ),
        )
    };
    let check = match create().await {
        Ok(Ok(_)) => match create().await {
            Ok(Err(object_store::Error::AlreadyExists { .. })) => Check::pass(
                CHECK,
                "a second create of the same object was refused, as commits need",
            ),
            Ok(Ok(_)) => Check::fail(
                CHECK,
                "the store accepted a second create of the same object: it ignores \
                 If-None-Match: *, so two writers could both commit the same table version",
                "use a store with conditional writes (AWS S3, MinIO, Cloudflare R2, Ceph RGW \
                 Squid or newer); S3-compatible servers without If-None-Match cannot hold the \
                 catalog safely",
            ),
            Ok(Err(e)) => Check::fail(
                CHECK,
                format!("the second conditional create failed with {e}, not 'already exists'"),
                "use a store that answers 412 Precondition Failed to If-None-Match: *",
            ),
            Err(no_answer) => no_answer,
        },
        Ok(Err(e)) => Check::fail(
            CHECK,
            format!("{url}: {e}"),
            "give the server's credentials write access to the storage prefix",
        ),
        Err(no_answer) => no_answer,
    };
    let _ = store.delete(&probe).await;
    check
}

/// `work`'s output, or the failed check `name` when `work` gives none within `limit`.
async fn answer<T>(
    name: &str,
    limit: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Check> {
    tokio::time::timeout(limit, work).await.map_err(|_| {
        Check::fail(
            name,
            format!("no answer within {} s", limit.as_secs()),
            "check the endpoint (AWS_ENDPOINT) and the network",
        )
    })
}

/// The fix for a storage error message `error` at `url`.
fn storage_fix(url: &str, error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
        format!("create the bucket of {url} (e.g. `aws s3 mb`) or fix its name")
    } else if lower.contains("accessdenied") || lower.contains("forbidden") || lower.contains("403")
    {
        "give AWS_ACCESS_KEY_ID's user list and write access to the bucket".into()
    } else if lower.contains("connect") || lower.contains("dns") || lower.contains("timed out") {
        "the endpoint does not answer: check AWS_ENDPOINT (and AWS_ALLOW_HTTP for http://)".into()
    } else {
        "check the storage URL and the AWS_* settings".into()
    }
}

/// TLS files readable, and the key matching the certificate.
fn tls(config: &ServeConfig) -> Vec<Check> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return match (&config.tls_cert, &config.tls_key) {
            (None, None) => Vec::new(),
            _ => vec![Check::fail(
                "tls",
                "only one of tls_cert and tls_key is set",
                "set both --tls-cert and --tls-key, or neither",
            )],
        };
    };
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Result<Vec<CertificateDer<'static>>, String> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))
        .and_then(|certs| {
            certs
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))
        });
    let certs = match certs {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => {
            return vec![Check::fail(
                "tls certificate",
                format!("{}: no certificate in the file", cert.display()),
                "give a PEM file with -----BEGIN CERTIFICATE-----",
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                "tls certificate",
                e,
                "give a readable PEM certificate file (lakehouse cert writes one to try)",
            )];
        }
    };
    let key_der = match PrivateKeyDer::from_pem_file(key) {
        Ok(key) => key,
        Err(e) => {
            return vec![Check::fail(
                "tls key",
                format!("{}: {e}", key.display()),
                "give a readable PEM private key file",
            )];
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    let mut checks = vec![Check::pass(
        "tls files readable",
        format!("{} and {}", cert.display(), key.display()),
    )];
    checks.push(
        match rustls::sign::CertifiedKey::from_der(certs, key_der, &provider) {
            Ok(_) => Check::pass("tls key matches certificate", cert.display().to_string()),
            Err(e) => Check::fail(
                "tls key matches certificate",
                format!("{} and {}: {e}", cert.display(), key.display()),
                "use the key the certificate was issued for",
            ),
        },
    );
    if let Some(ca) = &config.tls_client_ca {
        let readable = CertificateDer::pem_file_iter(ca)
            .is_ok_and(|mut certs| certs.next().is_some_and(|c| c.is_ok()));
        checks.push(match readable {
            true => Check::pass("tls client CA readable", ca.display().to_string()),
            false => Check::fail(
                "tls client CA readable",
                format!("{}: no readable PEM certificate", ca.display()),
                "give the PEM CA certificate client certificates chain to",
            ),
        });
    }
    checks
}

/// Every embedding model answers with its configured dimension; every chat model answers.
async fn models(config: &ServeConfig) -> Vec<Check> {
    use lakehouse_vector::Error as VectorError;
    let mut checks = Vec::new();
    for (name, model) in &config.embedding.models {
        let check = format!("embedding model {name}");
        let embedder = match lakehouse_vector::embedding::Embedder::new(name, model.clone()) {
            Ok(embedder) => embedder,
            Err(e) => {
                checks.push(Check::fail(check, e.to_string(), "fix the model's config"));
                continue;
            }
        };
        let answer = embedder.embed(&["lakehouse doctor".to_string()]).await;
        checks.push(match answer {
            Ok(_) => Check::pass(
                check,
                format!(
                    "{} answers with {} dimensions",
                    embedder.describe(),
                    embedder.dimension()
                ),
            ),
            Err(e @ VectorError::DimensionMismatch { actual, .. }) => Check::fail(
                check,
                e.to_string(),
                format!(
                    "set dimension = {actual} in [embedding.models.{name}] (tables embedded \
                     with the old dimension must be re-embedded)"
                ),
            ),
            Err(e) => model_failure(check, &e, &model.base_url),
        });
    }
    for (name, model) in &config.chat.models {
        let check = format!("chat model {name}");
        let chat = match lakehouse_vector::chat::ChatModel::new(name, model.clone()) {
            Ok(chat) => chat,
            Err(e) => {
                checks.push(Check::fail(check, e.to_string(), "fix the model's config"));
                continue;
            }
        };
        let messages = [lakehouse_vector::chat::ChatMessage::user("Reply with OK.")];
        checks.push(match chat.complete(&messages).await {
            Ok(_) => Check::pass(check, format!("{} answers", model.base_url)),
            Err(e) => model_failure(check, &e, &model.base_url),
        });
    }
    checks
}

/// The failed check `check` of a model at `base_url` that answered `error`.
fn model_failure(check: String, error: &lakehouse_vector::Error, base_url: &str) -> Check {
    let fix = match error {
        lakehouse_vector::Error::Unavailable { .. } => {
            format!("start the model server at {base_url} or fix base_url")
        }
        _ => "fix the model name or the provider".to_string(),
    };
    Check::fail(check, error.to_string(), fix)
}

/// Every listed worker answers.
async fn workers(config: &ServeConfig) -> Vec<Check> {
    if config.distributed.workers.is_empty() && config.distributed.workers_file.is_none() {
        return Vec::new();
    }
    match crate::distributed::check_workers(&config.distributed).await {
        Err(e) => vec![Check::fail(
            "workers",
            e.to_string(),
            "fix the worker list or the [distributed] TLS settings",
        )],
        Ok(answers) => answers
            .into_iter()
            .map(|(url, answer)| match answer {
                Ok(version) => Check::pass(format!("worker {url}"), format!("version {version}")),
                Err(e) => Check::fail(
                    format!("worker {url}"),
                    e,
                    "start `lakehouse worker` there with the same secret and storage, or \
                     remove it from the list",
                ),
            })
            .collect(),
    }
}

/// The Flight and metrics listen addresses are free.
async fn ports(config: &ServeConfig) -> Vec<Check> {
    let mut addresses = vec![("listen", config.listen.clone())];
    if let Some(metrics) = config.observability.metrics_address() {
        addresses.push(("metrics_listen", metrics));
    }
    let mut checks = Vec::new();
    for (key, address) in addresses {
        let check = format!("{key} {address} free");
        checks.push(match tokio::net::TcpListener::bind(&address).await {
            Ok(_) => Check::pass(check, "bound and released"),
            Err(e) => Check::fail(
                check,
                e.to_string(),
                format!("stop what listens there (another lakehouse?) or choose another {key}"),
            ),
        });
    }
    checks
}

/// The checks as text, one line each (`ok` / `FAIL`), with the fix under each failure.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark}  {}: {}\n", check.name, check.detail));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("      fix: {fix}\n"));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        out.push_str(&format!("all {} checks passed\n", checks.len()));
    } else {
        out.push_str(&format!("{failed} of {} checks failed\n", checks.len()));
    }
    out
}
