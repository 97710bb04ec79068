//! One trait for every kind of target. A new kind (a plain directory, another object store) is
//! one file that implements [`Store`] and one arm in [`super::open`].

/// An object as a listing shows it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub key: String,
    pub size: u64,
    /// What changes when the object does: its ETag (quotes removed), or for a store whose
    /// listing gives none, a stand-in such as its modification time; empty when there is none.
    pub etag: String,
}

/// Why a request failed, after the store's own retries; never holds a credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Names the place objects go (`s3:http://host:9000/bucket`): what the master knows of
    /// objects is kept per identity, so a target moved elsewhere starts afresh.
    fn identity(&self) -> String;

    /// Every object whose key starts with `prefix` (a directory prefix ending in `/`, or empty).
    async fn list(&self, prefix: &str) -> Result<Vec<Remote>, StoreError>;

    /// The content hash (SHA-256, hex) stored with the object, `None` when it has none or is gone.
    async fn stored_hash(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Uploads `file` as `key` with `sha256` in its metadata and returns the new object's ETag.
    /// The file's content is hashed again as it is read: if it is not `sha256` any more (it
    /// changed meanwhile) the upload is abandoned with an error, so that an object never carries
    /// a hash that is not its own.
    async fn put(&self, key: &str, file: &super::tree::Local, sha256: &str) -> Result<String, StoreError>;

    /// Removes `key` (a key already gone is not an error).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}
