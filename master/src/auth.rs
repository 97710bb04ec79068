//! Who is calling: HTTP Basic (argon2 passwords, with a short-lived cache of verified logins) and
//! JWT bearer tokens from `GET /get_token/`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mirror_common::api::{Name, Role};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::db;

/// Why a caller is not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong, malformed, expired or revoked credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AuthError {
    fn from(e: sqlx::Error) -> Self {
        AuthError::Internal(e.into())
    }
}

impl From<AuthError> for crate::error::Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(m) => crate::error::Error::Unauthorized(m),
            AuthError::Internal(e) => crate::error::Error::Internal(e),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub username: Name,
    pub role: Role,
    /// Logged in with a token: when it expires (a token minted from it expires no later).
    pub token_expires: Option<i64>,
}

/// Where argon2 runs: a few threads of its own (as many as cores), at most one hash on each.
///
/// Each thread allocates argon2's memory (19 MiB at the default cost) once and reuses it: a fresh
/// allocation per hash, freed after, was kept by glibc and grew the master by ~195 MiB over ten
/// failed logins (measured). Here the memory is threads x cost, whatever the number of logins.
pub struct Hashers {
    /// One permit per thread: at most that many hashes are queued or running.
    permits: Semaphore,
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Hashers {
    pub fn new(threads: usize) -> anyhow::Result<Hashers> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })?;
        }
        Ok(Hashers { permits: Semaphore::new(threads.max(1)), jobs: std::sync::Mutex::new(tx) })
    }

    /// Runs `work` on a hashing thread, once one is free; the caller waits without blocking.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.jobs
            .lock()
            .map_err(|_| anyhow::anyhow!("the hashing threads are gone"))?
            .send(job)
            .map_err(|_| anyhow::anyhow!("the hashing threads are gone"))?;
        Ok(rx.await?)
    }
}

/// The largest argon2 memory cost accepted in a stored hash (256 MiB): a hash written by hand
/// into the database cannot make a login take more.
const MAX_ARGON2_BLOCKS: usize = 256 * 1024;

thread_local! {
    /// The hashing thread's argon2 memory, allocated once and reused by every hash on it.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2 into `out` with this thread's reused memory.
fn argon2_into(
    argon: &Argon2<'_>,
    blocks_needed: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> anyhow::Result<()> {
    anyhow::ensure!(blocks_needed <= MAX_ARGON2_BLOCKS, "argon2 memory cost above {MAX_ARGON2_BLOCKS} KiB");
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.len() < blocks_needed {
            blocks.resize(blocks_needed, argon2::Block::new());
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..blocks_needed])
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
}

/// Hashes a password with argon2id (default parameters) on a hashing thread.
/// A new random credential: 32 random bytes, URL-safe base64 (a slave's token, a project's
/// trigger token).
pub fn new_token() -> mirror_common::Secret {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    mirror_common::Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub async fn hash_password(password: &mirror_common::Secret, hashers: &Hashers) -> anyhow::Result<String> {
    let password = password.expose().to_owned();
    hashers
        .run(move || {
            let argon = Argon2::default();
            let params = argon.params().clone();
            let mut salt = [0u8; 16];
            rand::rng().fill_bytes(&mut salt);
            let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
            argon2_into(&argon, params.block_count(), password.as_bytes(), &salt, &mut out)?;
            let hash = PasswordHash {
                algorithm: argon2::Algorithm::default().ident(),
                version: Some(argon2::Version::default().into()),
                params: argon2::password_hash::phc::ParamsString::try_from(&params)
                    .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
                salt: Some(argon2::password_hash::phc::Salt::new(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?),
                hash: Some(argon2::password_hash::phc::Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
            };
            Ok(hash.to_string())
        })
        .await?
}

/// Whether `password` matches the stored PHC string, computed with the hashing thread's memory.
fn verify_on_this_thread(password: &[u8], stored: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash is invalid: {e}"))?;
    let params = argon2::Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("stored hash parameters: {e}"))?;
    let algorithm = argon2::Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|e| anyhow::anyhow!("stored hash algorithm: {e}"))?;
    let version = parsed
        .version
        .map(argon2::Version::try_from)
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored hash version: {e}"))?
        .unwrap_or_default();
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        anyhow::bail!("stored hash has no salt or no output");
    };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    argon2_into(&argon, blocks, password, salt.as_ref(), &mut out)?;
    let computed = argon2::password_hash::phc::Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?;
    // `Output`'s equality is constant-time.
    Ok(computed == *expected)
}

pub(crate) async fn verify_password(password: String, hash: String, hashers: &Hashers) -> anyhow::Result<bool> {
    hashers.run(move || verify_on_this_thread(password.as_bytes(), &hash)).await?
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
    /// The user's token stamp when the token was issued: a password or role change, or the user
    /// being removed and created again, moves the stamp on and the token stops working.
    stamp: String,
    /// `refresh`: a refresh token, which only `POST /refresh_token/` takes (never as a login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

const REFRESH: &str = "refresh";

struct CachedLogin {
    username: Name,
    role: Role,
    until: Instant,
}

/// Upper bound on remembered logins; past it the cache is cleared rather than grown.
const CACHE_CAPACITY: usize = 10_000;

pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub token_ttl: Duration,
    /// How long a refresh token lasts (from the password login; renewals do not extend it).
    pub refresh_ttl: Duration,
    cache_ttl: Duration,
    /// Keys are SHA-256 over (salt, username, password): a wrong password never finds an entry,
    /// and the table holds no password.
    cache: RwLock<HashMap<[u8; 32], CachedLogin>>,
    salt: [u8; 32],
    /// An argon2 hash of nothing in particular, verified against when the user does not exist, so
    /// that "no such user" costs as long as "wrong password".
    decoy_hash: String,
    /// Where argon2 runs: a flood of bad logins cannot take more than these threads.
    pub hashers: Arc<Hashers>,
}

impl Authenticator {
    pub async fn new(
        jwt_key: &[u8],
        token_ttl: Duration,
        refresh_ttl: Duration,
        cache_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let mut salt = [0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        let hashers = Hashers::new(std::thread::available_parallelism().map_or(2, |n| n.get()))?;
        let mut decoy = [0u8; 16];
        rand::rng().fill_bytes(&mut decoy);
        let decoy = mirror_common::Secret::new(base64::engine::general_purpose::STANDARD.encode(decoy));
        let decoy_hash = hash_password(&decoy, &hashers).await?;
        Ok(Authenticator {
            encoding: EncodingKey::from_secret(jwt_key),
            decoding: DecodingKey::from_secret(jwt_key),
            token_ttl,
            refresh_ttl,
            cache_ttl,
            cache: RwLock::new(HashMap::new()),
            salt,
            decoy_hash,
            hashers: Arc::new(hashers),
        })
    }

    fn cache_key(&self, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update((username.len() as u64).to_le_bytes());
        h.update(username.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Forgets every cached login of `username` (after its removal).
    pub fn forget(&self, username: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.retain(|_, v| v.username.as_str() != username);
        }
    }

    /// A user name and password, as a login form gives them (the console).
    pub async fn check_password(&self, db: &db::Db, username: &str, password: &str) -> Result<Principal, AuthError> {
        self.check_basic(db, username, password).await
    }

    async fn check_basic(&self, db: &db::Db, username: &str, password: &str) -> Result<Principal, AuthError> {
        let key = self.cache_key(username, password);
        if let Ok(cache) = self.cache.read()
            && let Some(hit) = cache.get(&key).filter(|c| c.until > Instant::now())
        {
            return Ok(Principal { username: hit.username.clone(), role: hit.role, token_expires: None });
        }
        let user = db::users::get(db, username).await?;
        let hash = user.as_ref().map_or_else(|| self.decoy_hash.clone(), |u| u.password_hash.clone());
        let ok = verify_password(password.to_owned(), hash, &self.hashers).await?;
        let (Some(user), true) = (user, ok) else {
            return Err(AuthError::Unauthorized("wrong username or password"));
        };
        let role = user.role;
        if !self.cache_ttl.is_zero()
            && let Ok(mut cache) = self.cache.write()
        {
            let now = Instant::now();
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, v| v.until > now);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(key, CachedLogin { username: user.username.clone(), role, until: now + self.cache_ttl });
        }
        Ok(Principal { username: user.username, role, token_expires: None })
    }

    /// Issues a token for `caller`, bound to the user's current token stamp; returns it with its
    /// expiry. A caller who logged in with a token gets one that expires when that one does: a
    /// token cannot be renewed for ever without the password.
    pub async fn issue_token(
        &self,
        db: &db::Db,
        caller: &Principal,
    ) -> Result<(String, chrono::DateTime<chrono::Utc>), AuthError> {
        let user =
            db::users::get(db, &caller.username).await?.ok_or(AuthError::Unauthorized("the user no longer exists"))?;
        let now = chrono::Utc::now();
        let fresh = now + chrono::Duration::from_std(self.token_ttl).map_err(|e| AuthError::Internal(e.into()))?;
        let exp = match caller.token_expires.and_then(|t| chrono::DateTime::from_timestamp(t, 0)) {
            Some(parent) => parent.min(fresh),
            None => fresh,
        };
        // The token holds whole seconds: say the same.
        let exp = chrono::DateTime::from_timestamp(exp.timestamp(), 0).unwrap_or(exp);
        let claims = Claims {
            sub: user.username.into_string(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
            stamp: user.token_stamp,
            typ: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(e.into()))?;
        Ok((token, exp))
    }

    /// A refresh token for a caller who logged in with the password (none for a token login, or
    /// with `refresh_token_ttl_secs = 0`), expiring `expires` (default: `refresh_ttl` from now).
    pub async fn issue_refresh(
        &self,
        db: &db::Db,
        caller: &Principal,
        expires: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Option<(String, chrono::DateTime<chrono::Utc>)>, AuthError> {
        if self.refresh_ttl.is_zero() || (caller.token_expires.is_some() && expires.is_none()) {
            return Ok(None);
        }
        let user =
            db::users::get(db, &caller.username).await?.ok_or(AuthError::Unauthorized("the user no longer exists"))?;
        let now = chrono::Utc::now();
        let exp = match expires {
            Some(e) => e,
            None => now + chrono::Duration::from_std(self.refresh_ttl).map_err(|e| AuthError::Internal(e.into()))?,
        };
        // The token holds whole seconds: say the same.
        let exp = chrono::DateTime::from_timestamp(exp.timestamp(), 0).unwrap_or(exp);
        let claims = Claims {
            sub: user.username.into_string(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
            stamp: user.token_stamp,
            typ: Some(REFRESH.into()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(e.into()))?;
        Ok(Some((token, exp)))
    }

    /// Checks a refresh token: the user it names, as it is now, and when the token expires.
    pub async fn check_refresh(
        &self,
        db: &db::Db,
        token: &str,
    ) -> Result<(Principal, chrono::DateTime<chrono::Utc>), AuthError> {
        let (claims, principal) = self.decode(db, token).await?;
        if claims.typ.as_deref() != Some(REFRESH) {
            return Err(AuthError::Unauthorized("not a refresh token"));
        }
        let exp = chrono::DateTime::from_timestamp(claims.exp, 0).ok_or(AuthError::Unauthorized("invalid token"))?;
        // The new access token gets the full lifetime: the refresh token stands for the password.
        Ok((Principal { token_expires: None, ..principal }, exp))
    }

    async fn check_bearer(&self, db: &db::Db, token: &str) -> Result<Principal, AuthError> {
        let (claims, principal) = self.decode(db, token).await?;
        if claims.typ.is_some() {
            return Err(AuthError::Unauthorized("a refresh token is not a login: POST it to /refresh_token/"));
        }
        Ok(principal)
    }

    /// A token's claims, checked (signature, expiry, the user's current stamp), and its user.
    async fn decode(&self, db: &db::Db, token: &str) -> Result<(Claims, Principal), AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
            AuthError::Unauthorized(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
                _ => "invalid token",
            })
        })?;
        // The user's current role counts, and a removed user's tokens stop working at once.
        let user = db::users::get(db, &data.claims.sub)
            .await?
            .ok_or(AuthError::Unauthorized("the token's user no longer exists"))?;
        // Issued before the user was re-created, or before its password or role changed.
        if user.token_stamp.is_empty()
            || !mirror_common::Secret::new(user.token_stamp.clone()).matches(&data.claims.stamp)
        {
            return Err(AuthError::Unauthorized("the token was revoked (the user changed since it was issued)"));
        }
        let role = user.role;
        let principal = Principal { username: user.username, role, token_expires: Some(data.claims.exp) };
        Ok((data.claims, principal))
    }

    /// Reads the `Authorization` header: `None` when absent, an error when present but wrong.
    pub async fn authenticate(&self, db: &db::Db, parts: &Parts) -> Result<Option<Principal>, AuthError> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value.to_str().map_err(|_| AuthError::Unauthorized("malformed Authorization header"))?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(AuthError::Unauthorized("malformed Basic credentials"))?;
            let (user, password) =
                decoded.split_once(':').ok_or(AuthError::Unauthorized("malformed Basic credentials"))?;
            return self.check_basic(db, user, password).await.map(Some);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.check_bearer(db, rest).await.map(Some);
        }
        Err(AuthError::Unauthorized("unsupported Authorization scheme (use Basic or Bearer)"))
    }
}

/// The token signing key: from the configuration, or generated once and kept in the database.
pub async fn signing_key(db: &db::Db, configured: Option<&str>) -> anyhow::Result<Vec<u8>> {
    if let Some(k) = configured {
        return Ok(k.as_bytes().to_vec());
    }
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    let encoded = base64::engine::general_purpose::STANDARD.encode(fresh);
    let kept = db::settings::get_or_insert(db, "jwt_secret", &encoded).await?;
    Ok(base64::engine::general_purpose::STANDARD.decode(kept)?)
}

impl crate::events::Listener for Authenticator {
    /// A user changed: its cached logins must not let the old password in any more.
    fn changed(&self, change: &crate::events::Change) {
        if let crate::events::Change::UserChanged { username } = change {
            self.forget(username);
        }
    }
}
