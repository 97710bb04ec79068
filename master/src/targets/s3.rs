//! S3-compatible buckets, through `object_store` (its `aws` feature): signing, retries with
//! backoff, multipart uploads and listings come from a maintained crate; this file only maps a
//! target's settings onto it.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use mirror_common::Secret;
use mirror_common::targets::TargetSpec;

use super::store::{Remote, Store, StoreError};
use super::tree::{Local, hex};
use crate::config::TargetSettings;

/// The metadata key that holds the content's SHA-256 (`x-amz-meta-sha256`).
const HASH_KEY: &str = "sha256";

pub struct S3 {
    store: Arc<AmazonS3>,
    identity: String,
    multipart_threshold: u64,
    part_size: usize,
}

/// A key id and its secret, read from the configuration, the environment or a 0600 file.
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

fn key(k: &str) -> Result<Key, StoreError> {
    Key::parse(k).map_err(|e| StoreError(format!("'{}' cannot be an object key: {e}", k.escape_debug())))
}

/// A failed request as a push record says it: the request, the key, and a short reason (the
/// HTTP status, or the kind of failure). Never the remote's body, nor the URL: a push record is
/// read by `user` accounts, and an internal service's error body may hold anything.
fn failed(what: &str, k: &str, e: object_store::Error) -> StoreError {
    let reason = reason(&e);
    tracing::debug!(key = %k.escape_debug(), error = %e, "object-store request failed");
    StoreError(format!("{what} {}: {reason}", k.escape_debug()))
}

fn reason(e: &object_store::Error) -> String {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => "not found".into(),
        E::PermissionDenied { .. } => "permission denied".into(),
        E::Unauthenticated { .. } => "unauthenticated (the credentials were refused)".into(),
        E::AlreadyExists { .. } => "already exists".into(),
        E::Precondition { .. } => "precondition failed".into(),
        E::NotModified { .. } => "not modified".into(),
        _ => {
            // The status is the one part of a remote's answer that is kept.
            let text = e.to_string();
            let status = text.split("status code: ").nth(1).map(|rest| {
                rest.split(':')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(40)
                    .filter(|c| c.is_ascii_alphanumeric() || *c == ' ')
                    .collect::<String>()
            });
            match status {
                Some(s) if !s.trim().is_empty() => format!("HTTP {}", s.trim()),
                _ if text.contains("timed out") || text.contains("timeout") => "timed out".into(),
                _ if text.contains("connect") => "cannot connect to the endpoint".into(),
                _ => "the request failed".into(),
            }
        }
    }
}

impl S3 {
    pub fn new(spec: &TargetSpec, keys: &Keys, settings: &TargetSettings) -> Result<S3, StoreError> {
        let timeout = Duration::from_secs(settings.request_timeout_secs);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(settings.retry_base_ms),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: settings.retries,
            retry_timeout: timeout,
        };
        let store = AmazonS3Builder::new()
            .with_endpoint(spec.endpoint.trim_end_matches('/'))
            .with_region(&spec.region)
            .with_bucket_name(&spec.bucket)
            .with_access_key_id(&keys.access_key_id)
            .with_secret_access_key(keys.secret_access_key.expose())
            .with_virtual_hosted_style_request(!spec.path_style)
            .with_retry(retry)
            // Client options first: they replace what `with_allow_http` sets.
            .with_client_options(
                ClientOptions::new().with_timeout(timeout).with_connect_timeout(Duration::from_secs(10)),
            )
            .with_allow_http(spec.endpoint.starts_with("http://"))
            .build()
            .map_err(|e| StoreError(format!("target '{}': {e}", spec.name)))?;
        Ok(S3 {
            store: Arc::new(store),
            identity: format!("s3:{}/{}", spec.endpoint.trim_end_matches('/'), spec.bucket),
            multipart_threshold: settings.multipart_threshold_bytes,
            part_size: usize::try_from(settings.part_size_bytes).unwrap_or(8 << 20),
        })
    }

    fn attributes(sha256: &str) -> Attributes {
        let mut a = Attributes::new();
        a.insert(Attribute::Metadata(HASH_KEY.into()), sha256.to_owned().into());
        a
    }

    async fn put_whole(&self, k: &str, file: &Local, sha256: &str) -> Result<String, StoreError> {
        let local = file.clone();
        let (bytes, hash) = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, String)> {
            use std::io::Read;
            let mut bytes = Vec::new();
            local.open()?.read_to_end(&mut bytes)?;
            let hash = hex(&Sha256::digest(&bytes));
            Ok((bytes, hash))
        })
        .await
        .map_err(|e| StoreError(format!("hashing {}: {e}", k.escape_debug())))?
        .map_err(|e| StoreError(format!("reading {}: {e}", k.escape_debug())))?;
        if hash != sha256 {
            return Err(StoreError(format!("{} changed while being pushed: not uploaded", k.escape_debug())));
        }
        let opts = PutOptions { attributes: Self::attributes(sha256), ..Default::default() };
        let done =
            self.store.put_opts(&key(k)?, PutPayload::from(bytes), opts).await.map_err(|e| failed("PUT", k, e))?;
        Ok(unquote(done.e_tag.as_deref()))
    }

    async fn put_parts(&self, k: &str, file: &Local, sha256: &str) -> Result<String, StoreError> {
        let local = file.clone();
        let opened = tokio::task::spawn_blocking(move || local.open())
            .await
            .map_err(|e| StoreError(format!("reading {}: {e}", k.escape_debug())))?
            .map_err(|e| StoreError(format!("reading {}: {e}", k.escape_debug())))?;
        let mut reader = tokio::fs::File::from_std(opened);
        let opts = PutMultipartOptions { attributes: Self::attributes(sha256), ..Default::default() };
        let upload = self.store.put_multipart_opts(&key(k)?, opts).await.map_err(|e| failed("multipart PUT", k, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut hasher = Sha256::new();
        loop {
            let mut chunk = Vec::with_capacity(self.part_size);
            let read = (&mut reader).take(self.part_size as u64).read_to_end(&mut chunk).await;
            let read = match read {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(StoreError(format!("reading {}: {e}", k.escape_debug())));
                }
            };
            if read == 0 {
                break;
            }
            let chunk = bytes::Bytes::from(chunk);
            let hashed = chunk.clone();
            hasher = tokio::task::spawn_blocking(move || {
                hasher.update(&hashed);
                hasher
            })
            .await
            .map_err(|e| StoreError(format!("hashing {}: {e}", k.escape_debug())))?;
            // At most two parts in flight per file: the push's parallelism is across files.
            if let Err(e) = writer.wait_for_capacity(2).await {
                return Err(failed("uploading a part of", k, e));
            }
            writer.put(chunk);
        }
        if hex(&hasher.finalize()) != sha256 {
            let _ = writer.abort().await;
            return Err(StoreError(format!("{} changed while being pushed: not uploaded", k.escape_debug())));
        }
        let done = writer.finish().await.map_err(|e| failed("completing the upload of", k, e))?;
        Ok(unquote(done.e_tag.as_deref()))
    }
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or("").trim_matches('"').to_owned()
}

#[async_trait::async_trait]
impl Store for S3 {
    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Remote>, StoreError> {
        let p = if prefix.is_empty() { None } else { Some(key(prefix)?) };
        let objects: Vec<object_store::ObjectMeta> =
            self.store.list(p.as_ref()).try_collect().await.map_err(|e| failed("listing", prefix, e))?;
        Ok(objects
            .into_iter()
            .map(|o| {
                // Some servers (s3s-fs) list no ETag: the modification time stands in for it.
                let etag = match unquote(o.e_tag.as_deref()) {
                    e if e.is_empty() => format!("modified:{}", o.last_modified.to_rfc3339()),
                    e => e,
                };
                Remote { key: o.location.to_string(), size: o.size, etag }
            })
            .collect())
    }

    async fn stored_hash(&self, k: &str) -> Result<Option<String>, StoreError> {
        let opts = GetOptions { head: true, ..Default::default() };
        match self.store.get_opts(&key(k)?, opts).await {
            Ok(got) => Ok(got.attributes.get(&Attribute::Metadata(HASH_KEY.into())).map(|v| v.to_string())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("HEAD", k, e)),
        }
    }

    async fn put(&self, k: &str, file: &Local, sha256: &str) -> Result<String, StoreError> {
        if file.size >= self.multipart_threshold {
            self.put_parts(k, file, sha256).await
        } else {
            self.put_whole(k, file, sha256).await
        }
    }

    async fn delete(&self, k: &str) -> Result<(), StoreError> {
        match self.store.delete(&key(k)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("DELETE", k, e)),
        }
    }
}
