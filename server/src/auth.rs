//! Authentication and roles.
//!
//! With [`AuthMode::Basic`], every RPC (metadata included) must carry an `authorization` header:
//!
//! - `Basic base64(user:password)`: checked against the user's password hash from the config
//!   (argon2 PHC strings `$argon2id$...`, or bcrypt `$2b$...`). The password may also be a
//!   token issued to that user, for tools that can only send a user name and password.
//! - `Bearer <token>`: a token from the Flight `Handshake`, which answers a successful Basic
//!   login with `authorization: Bearer <token>` in its response headers and the token as its
//!   payload (the Flight SQL JDBC driver, ADBC and `pyarrow.flight`'s
//!   `authenticate_basic_token` all read the header).
//!
//! Tokens are JWTs (RFC 7519, HS256, via `jsonwebtoken`) with `sub` = user name and `exp`; they
//! expire after [`AuthConfig::token_ttl_secs`]. Each user has a [`Role`]: `read` users may run
//! queries and metadata calls; data-changing statements and ingest need `write`.
//!
//! Failures are [`Error::Unauthenticated`] (missing, malformed or wrong credentials, expired
//! token) and [`Error::PermissionDenied`] (a write by a `read` user).

use std::collections::HashMap;
use std::time::Duration;

use argon2::password_hash::PasswordVerifier;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};

/// Default token lifetime: 12 hours, a working day of a BI tool's connection.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 12 * 3600;

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: every caller may read and write. Allowed only on a loopback listen
    /// address unless [`AuthConfig::insecure_no_auth`] is set.
    #[default]
    None,
    /// HTTP Basic user/password (Flight handshake) and bearer tokens.
    Basic,
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Queries and metadata.
    Read,
    /// Queries, metadata, data-changing statements and ingest.
    Write,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
        })
    }
}

/// One user of the config file's `[[auth.users]]` list (`lakehouse user add` writes one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// Password hash: an argon2 PHC string (`$argon2id$v=19$...`) or bcrypt (`$2b$...`).
    pub password_hash: String,
    /// `read` or `write`.
    pub role: Role,
}

/// The `[auth]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none` (default) or `basic`.
    pub mode: AuthMode,
    /// Serve with `mode = "none"` on a non-loopback address (default false: refused at start).
    pub insecure_no_auth: bool,
    /// Seconds a token stays valid (default [`DEFAULT_TOKEN_TTL_SECS`]).
    pub token_ttl_secs: u64,
    /// Secret that signs tokens (HS256). Default: random per process, so tokens end with the
    /// process; set the same secret on replicas that should accept each other's tokens.
    pub token_secret: Option<String>,
    /// The users.
    pub users: Vec<UserConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            insecure_no_auth: false,
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            token_secret: None,
            users: Vec::new(),
        }
    }
}

/// Who is calling: put in each request's extensions by the service before any command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name (`anonymous` without auth).
    pub user: String,
    /// What the user may do in this call: the user's role, or `read` for a read-only call
    /// ([`Principal::read_only`]).
    pub role: Role,
    /// True when the call asked to be read-only (the `x-lakehouse-read-only` header), so that
    /// refusals say so rather than blame the user's role.
    pub read_only_call: bool,
}

impl Principal {
    /// The caller when auth is off: may read and write.
    pub fn anonymous() -> Self {
        Self {
            user: "anonymous".into(),
            role: Role::Write,
            read_only_call: false,
        }
    }

    /// This principal for a read-only call: role `read` whatever the user's role.
    pub fn read_only(self) -> Self {
        Self {
            role: Role::Read,
            read_only_call: true,
            ..self
        }
    }

    /// Ok when this principal may change data.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] naming the user, its role (or the read-only call) and
    /// `what` was attempted.
    pub fn require_write(&self, what: &str) -> Result<()> {
        match self.role {
            Role::Write => Ok(()),
            Role::Read if self.read_only_call => Err(Error::PermissionDenied(format!(
                "this call is read-only (header x-lakehouse-read-only: true), which refuses {what}"
            ))),
            Role::Read => Err(Error::PermissionDenied(format!(
                "user '{}' has role read; {what} needs role write",
                self.user
            ))),
        }
    }
}

/// Token claims (RFC 7519 registered names).
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
}

/// Checks credentials and issues tokens for one [`AuthConfig`].
pub struct Authenticator {
    mode: AuthMode,
    users: HashMap<String, UserConfig>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

const UNAUTHENTICATED: &str = "authentication required: send 'authorization: Basic \
     base64(user:password)' (Flight handshake) or 'authorization: Bearer <token>'";
const BAD_LOGIN: &str = "invalid user name or password";

impl Authenticator {
    /// Validates `config`: with `basic`, at least one user, unique names, parseable hashes and
    /// a positive token lifetime.
    ///
    /// # Errors
    /// [`Error::Config`] naming the user or setting at fault.
    pub fn new(config: &AuthConfig) -> Result<Self> {
        let mut users = HashMap::new();
        for user in &config.users {
            if user.name.is_empty() || user.name.contains(':') {
                return Err(Error::Config(format!(
                    "auth user name '{}' must be non-empty and contain no ':'",
                    user.name
                )));
            }
            check_hash(&user.password_hash).map_err(|e| {
                Error::Config(format!(
                    "auth user '{}': unusable password_hash: {e}",
                    user.name
                ))
            })?;
            if users.insert(user.name.clone(), user.clone()).is_some() {
                return Err(Error::Config(format!(
                    "auth user '{}' is listed twice",
                    user.name
                )));
            }
        }
        if config.mode == AuthMode::Basic && users.is_empty() {
            return Err(Error::Config(
                "auth mode basic needs at least one [[auth.users]] entry (add one with \
                 `lakehouse user add NAME --config FILE`)"
                    .into(),
            ));
        }
        if config.token_ttl_secs == 0 {
            return Err(Error::Config(
                "auth.token_ttl_secs must be at least 1".into(),
            ));
        }
        let secret = match &config.token_secret {
            Some(secret) if secret.len() < 32 => {
                return Err(Error::Config(
                    "auth.token_secret must be at least 32 characters".into(),
                ));
            }
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                let mut bytes = vec![0u8; 32];
                getrandom::fill(&mut bytes)
                    .map_err(|e| Error::Config(format!("no system randomness: {e}")))?;
                bytes
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            mode: config.mode,
            users,
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            ttl: Duration::from_secs(config.token_ttl_secs),
        })
    }

    /// The configured mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Who sent the request with `metadata`; without auth, [`Principal::anonymous`].
    ///
    /// # Errors
    /// [`Error::Unauthenticated`]: no or malformed `authorization` header, unknown user, wrong
    /// password, invalid or expired token.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal> {
        if self.mode == AuthMode::None {
            return Ok(Principal::anonymous());
        }
        let header = metadata
            .get("authorization")
            .ok_or_else(|| Error::Unauthenticated(UNAUTHENTICATED.into()))?
            .to_str()
            .map_err(|_| Error::Unauthenticated("authorization header is not text".into()))?;
        let (scheme, value) = header
            .split_once(' ')
            .ok_or_else(|| Error::Unauthenticated(UNAUTHENTICATED.into()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => self.verify_token(value.trim(), None),
            "basic" => self.verify_basic(value.trim()).await,
            _ => Err(Error::Unauthenticated(format!(
                "unsupported authorization scheme '{scheme}': use Basic or Bearer"
            ))),
        }
    }

    /// A token for `principal`, valid for the configured lifetime.
    ///
    /// # Errors
    /// [`Error::Internal`] if signing fails.
    pub fn issue_token(&self, principal: &Principal) -> Result<String> {
        let now = unix_now();
        let claims = Claims {
            sub: principal.user.clone(),
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("cannot sign token: {e}")))
    }

    /// Checks a token (and, for a Basic login with a token as password, that it belongs to
    /// `user`).
    fn verify_token(&self, token: &str, user: Option<&str>) -> Result<Principal> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Error::Unauthenticated("token expired; log in again".into())
                }
                _ => Error::Unauthenticated("invalid token".into()),
            })?;
        let sub = data.claims.sub;
        if user.is_some_and(|u| u != sub) {
            return Err(Error::Unauthenticated(BAD_LOGIN.into()));
        }
        let config = self
            .users
            .get(&sub)
            .ok_or_else(|| Error::Unauthenticated(format!("user '{sub}' no longer exists")))?;
        Ok(Principal {
            user: sub,
            role: config.role,
            read_only_call: false,
        })
    }

    async fn verify_basic(&self, encoded: &str) -> Result<Principal> {
        let (user, password) = decode_basic(encoded)?;
        let (user, password) = (user.as_str(), password.as_str());
        // A token as password (tools that only know user/password): no hashing needed.
        if password.matches('.').count() == 2
            && let Ok(principal) = self.verify_token(password, Some(user))
        {
            return Ok(principal);
        }
        let Some(config) = self.users.get(user) else {
            return Err(Error::Unauthenticated(BAD_LOGIN.into()));
        };
        let hash = config.password_hash.clone();
        let password = password.to_string();
        // Password hashing is deliberately slow (tens of ms): keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| Error::Internal(format!("password check panicked: {e}")))?;
        if !ok {
            return Err(Error::Unauthenticated(BAD_LOGIN.into()));
        }
        Ok(Principal {
            user: user.to_string(),
            role: config.role,
            read_only_call: false,
        })
    }
}

/// The `user` and `password` of Basic credentials (`base64(user:password)`, padding optional:
/// Go's Flight client (ADBC) sends unpadded base64).
///
/// # Errors
/// [`Error::Unauthenticated`] when they are not base64 of UTF-8 `user:password`.
fn decode_basic(encoded: &str) -> Result<(String, String)> {
    let malformed = || Error::Unauthenticated("malformed Basic credentials".into());
    const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = BASE64.decode(encoded).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok((user.to_string(), password.to_string()))
}

/// The user name a request's Basic credentials claim, checked or not (for the audit record of
/// a refused login); `None` without Basic credentials.
pub fn claimed_user(metadata: &MetadataMap) -> Option<String> {
    let header = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, value) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    decode_basic(value.trim()).ok().map(|(user, _)| user)
}

tokio::task_local! {
    /// The caller of the request the current task serves (see [`as_caller`]).
    static CALLER: Principal;
}

/// Runs `work` (a request's handling) as `principal`: planning code asks [`caller`] for the
/// role, e.g. `audit_log()`, which only `write` users may read.
pub async fn as_caller<F: std::future::Future>(principal: Principal, work: F) -> F::Output {
    CALLER.scope(principal, work).await
}

/// The caller [`as_caller`] set for the current task; `None` outside a request.
pub fn caller() -> Option<Principal> {
    CALLER.try_with(Clone::clone).ok()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p))
}

/// Ok when `hash` is a hash this module can verify.
fn check_hash(hash: &str) -> std::result::Result<(), String> {
    if is_bcrypt(hash) {
        // bcrypt's format is fixed: $2b$CC$ + 53 characters of salt and hash.
        return if hash.len() == 60 {
            Ok(())
        } else {
            Err("bcrypt hashes are 60 characters".into())
        };
    }
    let parsed = argon2::password_hash::phc::PasswordHash::new(hash).map_err(|e| e.to_string())?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm {} is not argon2 or bcrypt",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// Whether `password` matches `hash` (argon2 PHC string or bcrypt).
pub fn verify_password(password: &str, hash: &str) -> bool {
    if is_bcrypt(hash) {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    match argon2::password_hash::phc::PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// An argon2id PHC string for `password` (default parameters of the `argon2` crate: 19 MiB,
/// 2 passes, 1 lane, per OWASP's recommendation), with a random 16-byte salt.
///
/// # Errors
/// [`Error::Internal`] if hashing fails (no system randomness).
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("cannot hash password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    fn basic(user: &str, password: &str) -> MetadataMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        metadata(&format!("Basic {encoded}"))
    }

    #[tokio::test]
    async fn passwords_tokens_and_roles() {
        let config = AuthConfig {
            mode: AuthMode::Basic,
            users: vec![
                UserConfig {
                    name: "ann".into(),
                    password_hash: hash_password("s3cret").unwrap(),
                    role: Role::Write,
                },
                UserConfig {
                    name: "bob".into(),
                    password_hash: bcrypt::hash("hunter2", 4).unwrap(),
                    role: Role::Read,
                },
            ],
            ..AuthConfig::default()
        };
        let auth = Authenticator::new(&config).unwrap();
        let ann = auth.authenticate(&basic("ann", "s3cret")).await.unwrap();
        assert_eq!(ann.role, Role::Write);
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("ann:s3cret");
        let by_unpadded = metadata(&format!("Basic {unpadded}"));
        // Go clients (ADBC) send unpadded base64.
        assert_eq!(auth.authenticate(&by_unpadded).await.unwrap(), ann);
        let bob = auth.authenticate(&basic("bob", "hunter2")).await.unwrap();
        assert!(bob.require_write("INSERT").is_err());

        for bad in [
            basic("ann", "wrong"),
            basic("nobody", "s3cret"),
            metadata("Basic !!!"),
            metadata("Bearer abc.def.ghi"),
            metadata("Digest x"),
            MetadataMap::new(),
        ] {
            let err = auth.authenticate(&bad).await.unwrap_err();
            assert!(matches!(err, Error::Unauthenticated(_)), "{err:?}");
        }

        let token = auth.issue_token(&ann).unwrap();
        let by_token = auth
            .authenticate(&metadata(&format!("Bearer {token}")))
            .await
            .unwrap();
        assert_eq!(by_token, ann);
        // A token works as the password of its own user only.
        assert_eq!(auth.authenticate(&basic("ann", &token)).await.unwrap(), ann);
        assert!(auth.authenticate(&basic("bob", &token)).await.is_err());

        // Another process's secret does not verify.
        let other = Authenticator::new(&config).unwrap();
        assert!(
            other
                .authenticate(&metadata(&format!("Bearer {token}")))
                .await
                .is_err()
        );
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let user = |name: &str, hash: &str| UserConfig {
            name: name.into(),
            password_hash: hash.into(),
            role: Role::Read,
        };
        let err = |config: AuthConfig| Authenticator::new(&config).unwrap_err().to_string();
        let basic = AuthConfig {
            mode: AuthMode::Basic,
            ..AuthConfig::default()
        };
        assert!(err(basic.clone()).contains("at least one"));
        let e = err(AuthConfig {
            users: vec![user("ann", "plaintext")],
            ..basic.clone()
        });
        assert!(e.contains("'ann'") && e.contains("password_hash"), "{e}");
        let hash = hash_password("x").unwrap();
        let e = err(AuthConfig {
            users: vec![user("ann", &hash), user("ann", &hash)],
            ..basic.clone()
        });
        assert!(e.contains("twice"), "{e}");
        let e = err(AuthConfig {
            users: vec![user("ann", &hash)],
            token_secret: Some("short".into()),
            ..basic
        });
        assert!(e.contains("token_secret"), "{e}");
    }
}
