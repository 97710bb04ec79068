//! Pushes to object-store targets, and what the master knows of the objects it put.

use std::collections::HashMap;

use mirror_common::targets::{PushStatus, PushView};
use mirror_common::time::Timestamp;

use super::{Db, now, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushRow {
    pub id: i64,
    pub project_id: String,
    pub target: String,
    pub trigger: String,
    pub status: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub files: i64,
    pub uploaded: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub bytes_uploaded: i64,
    pub errors: i64,
    pub message: String,
}

impl PushRow {
    pub fn view(&self) -> PushView {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        PushView {
            id: self.id,
            project: self.project_id.clone(),
            target: self.target.clone(),
            trigger: self.trigger.clone(),
            status: PushStatus::parse(&self.status).unwrap_or(PushStatus::Interrupted),
            started_at: self.started_at,
            finished_at: self.finished_at,
            files: n(self.files),
            uploaded: n(self.uploaded),
            deleted: n(self.deleted),
            unchanged: n(self.unchanged),
            skipped: n(self.skipped),
            bytes_uploaded: n(self.bytes_uploaded),
            errors: n(self.errors),
            message: self.message.clone(),
        }
    }
}

const COLUMNS: &str = "id, project_id, target, trigger, status, started_at, finished_at, files, uploaded, deleted, \
                       unchanged, skipped, bytes_uploaded, errors, message";

pub async fn start(db: &Db, project_id: &str, target: &str, trigger: &str) -> sqlx::Result<i64> {
    on!(&db.write, |c| sqlx::query_scalar(
        "INSERT INTO target_pushes (project_id, target, trigger, status, started_at) \
         VALUES ($1, $2, $3, 'running', $4) RETURNING id",
    )
    .bind(project_id)
    .bind(target)
    .bind(trigger)
    .bind(now())
    .fetch_one(c)
    .await)
}

/// What a push did, counted.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub files: u64,
    pub uploaded: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub bytes_uploaded: u64,
    pub errors: u64,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub async fn finish(db: &Db, id: i64, status: PushStatus, counts: &Counts, message: &str) -> sqlx::Result<()> {
    on!(&db.write, |c| {
        sqlx::query(
        "UPDATE target_pushes SET status = $1, finished_at = $2, files = $3, uploaded = $4, deleted = $5, unchanged = $6, \
         skipped = $7, bytes_uploaded = $8, errors = $9, message = $10 WHERE id = $11",
    )
    .bind(status.as_str())
    .bind(now())
    .bind(i(counts.files))
    .bind(i(counts.uploaded))
    .bind(i(counts.deleted))
    .bind(i(counts.unchanged))
    .bind(i(counts.skipped))
    .bind(i(counts.bytes_uploaded))
    .bind(i(counts.errors))
    .bind(message)
    .bind(id)
    .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Pushes a previous master left running.
pub async fn interrupt_unfinished(db: &Db) -> sqlx::Result<u64> {
    let done = on!(&db.write, |c| sqlx::query(
        "UPDATE target_pushes SET status = 'interrupted', finished_at = $1, \
         message = 'the master stopped during this push' WHERE status = 'running'",
    )
    .bind(now())
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(done)
}

/// Keeps the newest `keep` pushes of a project's target.
pub async fn prune(db: &Db, project_id: &str, target: &str, keep: usize) -> sqlx::Result<()> {
    on!(&db.write, |c| {
        sqlx::query(
        "DELETE FROM target_pushes WHERE project_id = $1 AND target = $2 AND status != 'running' AND id < \
         (SELECT MIN(id) FROM (SELECT id FROM target_pushes WHERE project_id = $1 AND target = $2 ORDER BY id DESC LIMIT $3) AS newest)",
    )
    .bind(project_id)
    .bind(target)
    .bind(i64::try_from(keep).unwrap_or(i64::MAX))
    .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<PushRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM target_pushes WHERE id = $1")))
        .bind(id)
        .fetch_optional(c)
        .await)
}

/// The newest pushes of a project (of one of its targets), newest first.
pub async fn list(db: &Db, project_id: &str, target: Option<&str>, limit: i64) -> sqlx::Result<Vec<PushRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM target_pushes WHERE project_id = $1 AND ($2 IS NULL OR target = $2) \
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(project_id)
    .bind(target)
    .bind(limit)
    .fetch_all(c)
    .await)
}

/// The last push and the end of the last successful one, per target of a project.
pub async fn last_per_target(db: &Db, project_id: &str) -> sqlx::Result<Vec<(PushRow, Option<Timestamp>)>> {
    let rows: Vec<PushRow> = on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM target_pushes WHERE id IN \
         (SELECT MAX(id) FROM target_pushes WHERE project_id = $1 GROUP BY target)"
    )))
    .bind(project_id)
    .fetch_all(c)
    .await)?;
    let successes: Vec<(String, Timestamp)> = on!(&db.read, |c| {
        sqlx::query_as(
        "SELECT target, MAX(finished_at) FROM target_pushes WHERE project_id = $1 AND status = 'success' GROUP BY target",
    )
    .bind(project_id)
    .fetch_all(c).await
    })?;
    let successes: HashMap<String, Timestamp> = successes.into_iter().collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            let s = successes.get(&r.target).copied();
            (r, s)
        })
        .collect())
}

/// When the last successful push to each (project, target) ended, for every project.
pub async fn last_successes(db: &Db) -> sqlx::Result<Vec<(String, String, Timestamp)>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT project_id, target, MAX(finished_at) FROM target_pushes \
         WHERE status = 'success' AND finished_at IS NOT NULL GROUP BY project_id, target",
    )
    .fetch_all(c)
    .await)
}

/// What the master put as one object: its size and ETag as the store reported them, the content
/// hash it stored in the object's metadata, and the local file's stamp when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Known {
    pub key: String,
    pub size: i64,
    pub etag: String,
    pub sha256: String,
    pub local_stamp: String,
}

/// Every object the master knows under `prefix` of a store.
pub async fn known(db: &Db, store: &str, prefix: &str) -> sqlx::Result<HashMap<String, Known>> {
    let rows: Vec<Known> = on!(&db.read, |c| sqlx::query_as(
        "SELECT key, size, etag, sha256, local_stamp FROM target_objects \
         WHERE store = $1 AND substr(key, 1, length($2)) = $2",
    )
    .bind(store)
    .bind(prefix)
    .fetch_all(c)
    .await)?;
    Ok(rows.into_iter().map(|k| (k.key.clone(), k)).collect())
}

/// Records objects put (or found equal) and forgets objects deleted, in one transaction.
pub async fn remember(db: &Db, store: &str, put: &[Known], gone: &[String]) -> sqlx::Result<()> {
    if put.is_empty() && gone.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    for k in put {
        on!(&mut tx, |c| sqlx::query(
            "INSERT INTO target_objects (store, key, size, etag, sha256, local_stamp) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (store, key) DO UPDATE SET size = excluded.size, etag = excluded.etag, \
             sha256 = excluded.sha256, local_stamp = excluded.local_stamp",
        )
        .bind(store)
        .bind(&k.key)
        .bind(k.size)
        .bind(&k.etag)
        .bind(&k.sha256)
        .bind(&k.local_stamp)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    }
    for key in gone {
        on!(&mut tx, |c| sqlx::query("DELETE FROM target_objects WHERE store = $1 AND key = $2")
            .bind(store)
            .bind(key)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    tx.commit().await
}
