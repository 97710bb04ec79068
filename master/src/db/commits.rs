//! Configuration commits: append-only, one chain of versions per (kind, key).

use mirror_common::time::Timestamp;

use super::{Db, Ex, now, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommitRow {
    pub seq: i64,
    pub kind: String,
    pub key: String,
    pub version: i64,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub created_at: Timestamp,
    /// The whole configuration after the change (JSON); `None`: removed.
    pub content: Option<String>,
}

const COLUMNS: &str = "seq, kind, key, version, author, comment, created_at, content";

/// The newest version of `key` (0: none yet).
pub async fn latest_version<'a>(db: impl Into<Ex<'a>>, kind: &str, key: &str) -> sqlx::Result<i64> {
    on!(db.into(), |c| sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) FROM config_commits WHERE kind = $1 AND key = $2"
    )
    .bind(kind)
    .bind(key)
    .fetch_one(c)
    .await)
}

/// What a commit records besides its content.
pub struct NewCommit<'a> {
    pub kind: &'a str,
    pub key: &'a str,
    pub version: i64,
    pub author: Option<&'a str>,
    pub comment: Option<&'a str>,
    pub content: Option<&'a str>,
}

pub async fn append<'a>(db: impl Into<Ex<'a>>, new: &NewCommit<'_>) -> sqlx::Result<i64> {
    let seq = on!(db.into(), |c| sqlx::query_scalar(
        "INSERT INTO config_commits (kind, key, version, author, comment, created_at, content) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(new.kind)
    .bind(new.key)
    .bind(new.version)
    .bind(new.author)
    .bind(new.comment)
    .bind(now())
    .bind(new.content)
    .fetch_one(c)
    .await)?;
    Ok(seq)
}

/// Versions of `key`, newest first, at most `limit`, older than `before` when given.
pub async fn history(db: &Db, kind: &str, key: &str, limit: i64, before: Option<i64>) -> sqlx::Result<Vec<CommitRow>> {
    on!(&db.read, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM config_commits WHERE kind = $1 AND key = $2 AND version < $3 ORDER BY version DESC LIMIT $4"
    )))
    .bind(kind)
    .bind(key)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(c).await
    })
}

pub async fn get<'a>(db: impl Into<Ex<'a>>, kind: &str, key: &str, version: i64) -> sqlx::Result<Option<CommitRow>> {
    on!(db.into(), |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM config_commits WHERE kind = $1 AND key = $2 AND version = $3"
    )))
    .bind(kind)
    .bind(key)
    .bind(version)
    .fetch_optional(c)
    .await)
}

/// The newest version of every key of `kind`, by key; with `removed`, also keys whose newest
/// version is their removal.
pub async fn latest_each(db: &Db, kind: &str, removed: bool) -> sqlx::Result<Vec<CommitRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM config_commits c WHERE kind = $1 AND ($2 OR content IS NOT NULL) \
         AND version = (SELECT MAX(version) FROM config_commits WHERE kind = c.kind AND key = c.key) ORDER BY key"
    )))
    .bind(kind)
    .bind(removed)
    .fetch_all(c)
    .await)
}

/// The bytes a version was committed with through Rainer's API, if it was.
pub async fn payload(db: &Db, kind: &str, key: &str, version: i64) -> sqlx::Result<Option<Vec<u8>>> {
    let found: Option<Option<Vec<u8>>> = on!(&db.read, |c| sqlx::query_scalar(
        "SELECT payload FROM config_commits WHERE kind = $1 AND key = $2 AND version = $3"
    )
    .bind(kind)
    .bind(key)
    .bind(version)
    .fetch_optional(c)
    .await)?;
    Ok(found.flatten())
}

/// Keeps the bytes version `version` of `key` was committed with.
pub async fn set_payload(db: &Db, kind: &str, key: &str, version: i64, payload: &[u8]) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query(
        "UPDATE config_commits SET payload = $1 WHERE kind = $2 AND key = $3 AND version = $4"
    )
    .bind(payload)
    .bind(kind)
    .bind(key)
    .bind(version)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// What every commit holds (for audits: no version may hold a password).
pub async fn all_contents(db: &Db) -> sqlx::Result<Vec<Option<String>>> {
    on!(&db.read, |c| sqlx::query_scalar("SELECT content FROM config_commits ORDER BY seq").fetch_all(c).await)
}
