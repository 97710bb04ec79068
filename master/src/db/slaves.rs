//! Slaves the master notifies.

use mirror_common::Secret;
use mirror_common::api::Host;
use mirror_common::time::Timestamp;

use super::{Db, now};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SlaveRow {
    pub hostname: Host,
    pub port: i64,
    pub added_at: Timestamp,
    pub last_seen: Option<Timestamp>,
    /// The slave's own credential; `None` for a slave added before per-slave tokens.
    pub token: Option<Secret>,
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<SlaveRow>> {
    sqlx::query_as("SELECT hostname, port, added_at, last_seen, token FROM slaves ORDER BY hostname, port")
        .fetch_all(&db.read)
        .await
}

/// Whether any slave can be told of a generation (one with a token of its own).
pub async fn any_told(db: &Db) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM slaves WHERE token IS NOT NULL)").fetch_one(&db.read).await
}

pub async fn get(db: &Db, hostname: &str, port: i64) -> sqlx::Result<Option<SlaveRow>> {
    sqlx::query_as("SELECT hostname, port, added_at, last_seen, token FROM slaves WHERE hostname = ? AND port = ?")
        .bind(hostname)
        .bind(port)
        .fetch_optional(&db.read)
        .await
}

/// Adds a slave with its token; `false` when it was already there (its token is left as it was).
pub async fn insert<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    hostname: &str,
    port: u16,
    token: &Secret,
) -> sqlx::Result<bool> {
    let done =
        sqlx::query("INSERT INTO slaves (hostname, port, added_at, token) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(hostname)
            .bind(i64::from(port))
            .bind(now())
            .bind(token)
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a slave's token; `false` when there is no such slave.
pub async fn set_token<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    hostname: &str,
    port: u16,
    token: &Secret,
) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE slaves SET token = ? WHERE hostname = ? AND port = ?")
        .bind(token)
        .bind(hostname)
        .bind(i64::from(port))
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn ports_of(db: &Db, hostname: &str) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT port FROM slaves WHERE hostname = ? ORDER BY port")
        .bind(hostname)
        .fetch_all(&db.read)
        .await
}

pub async fn remove<'e>(db: impl sqlx::SqliteExecutor<'e>, hostname: &str, port: u16) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM slaves WHERE hostname = ? AND port = ?")
        .bind(hostname)
        .bind(i64::from(port))
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The slave answered: a notification, a report or a status check.
pub async fn seen(db: &Db, hostname: &str, port: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE slaves SET last_seen = ? WHERE hostname = ? AND port = ?")
        .bind(super::now())
        .bind(hostname)
        .bind(port)
        .execute(&db.write)
        .await?;
    Ok(())
}
