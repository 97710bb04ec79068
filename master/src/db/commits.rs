//! Configuration commits: append-only, one chain of versions per (kind, key).

use mirror_common::time::Timestamp;

use super::{Db, now};

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
pub async fn latest_version<'e>(db: impl sqlx::SqliteExecutor<'e>, kind: &str, key: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM config_commits WHERE kind = ? AND key = ?")
        .bind(kind)
        .bind(key)
        .fetch_one(db)
        .await
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

pub async fn append<'e>(db: impl sqlx::SqliteExecutor<'e>, c: &NewCommit<'_>) -> sqlx::Result<i64> {
    let seq = sqlx::query_scalar(
        "INSERT INTO config_commits (kind, key, version, author, comment, created_at, content) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(c.kind)
    .bind(c.key)
    .bind(c.version)
    .bind(c.author)
    .bind(c.comment)
    .bind(now())
    .bind(c.content)
    .fetch_one(db)
    .await?;
    Ok(seq)
}

/// Versions of `key`, newest first, at most `limit`, older than `before` when given.
pub async fn history(db: &Db, kind: &str, key: &str, limit: i64, before: Option<i64>) -> sqlx::Result<Vec<CommitRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM config_commits WHERE kind = ? AND key = ? AND version < ? ORDER BY version DESC LIMIT ?"
    )))
    .bind(kind)
    .bind(key)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(&db.read)
    .await
}

pub async fn get<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    kind: &str,
    key: &str,
    version: i64,
) -> sqlx::Result<Option<CommitRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM config_commits WHERE kind = ? AND key = ? AND version = ?"
    )))
    .bind(kind)
    .bind(key)
    .bind(version)
    .fetch_optional(db)
    .await
}
