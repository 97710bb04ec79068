//! Slaves the master notifies.

use mirror_common::Secret;
use mirror_common::api::Host;
use mirror_common::time::Timestamp;

use super::{Db, Ex, now, on};

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
    on!(&db.read, |c| sqlx::query_as(
        "SELECT hostname, port, added_at, last_seen, token FROM slaves ORDER BY hostname, port"
    )
    .fetch_all(c)
    .await)
}

/// Whether any slave can be told of a generation (one with a token of its own).
pub async fn any_told(db: &Db) -> sqlx::Result<bool> {
    on!(&db.read, |c| sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM slaves WHERE token IS NOT NULL)")
        .fetch_one(c)
        .await)
}

pub async fn get(db: &Db, hostname: &str, port: i64) -> sqlx::Result<Option<SlaveRow>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT hostname, port, added_at, last_seen, token FROM slaves WHERE hostname = $1 AND port = $2"
    )
    .bind(hostname)
    .bind(port)
    .fetch_optional(c)
    .await)
}

/// Adds a slave with its token; `false` when it was already there (its token is left as it was).
pub async fn insert<'a>(db: impl Into<Ex<'a>>, hostname: &str, port: u16, token: &Secret) -> sqlx::Result<bool> {
    let done = on!(db.into(), |c| sqlx::query(
        "INSERT INTO slaves (hostname, port, added_at, token) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
    )
    .bind(hostname)
    .bind(i64::from(port))
    .bind(now())
    .bind(token)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Replaces a slave's token; `false` when there is no such slave.
pub async fn set_token<'a>(db: impl Into<Ex<'a>>, hostname: &str, port: u16, token: &Secret) -> sqlx::Result<bool> {
    let done = on!(db.into(), |c| sqlx::query("UPDATE slaves SET token = $1 WHERE hostname = $2 AND port = $3")
        .bind(token)
        .bind(hostname)
        .bind(i64::from(port))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

pub async fn ports_of(db: &Db, hostname: &str) -> sqlx::Result<Vec<i64>> {
    on!(&db.read, |c| sqlx::query_scalar("SELECT port FROM slaves WHERE hostname = $1 ORDER BY port")
        .bind(hostname)
        .fetch_all(c)
        .await)
}

pub async fn remove<'a>(db: impl Into<Ex<'a>>, hostname: &str, port: u16) -> sqlx::Result<bool> {
    let done = on!(db.into(), |c| sqlx::query("DELETE FROM slaves WHERE hostname = $1 AND port = $2")
        .bind(hostname)
        .bind(i64::from(port))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// The slave answered: a notification, a report or a status check.
pub async fn seen(db: &Db, hostname: &str, port: i64) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query("UPDATE slaves SET last_seen = $1 WHERE hostname = $2 AND port = $3")
        .bind(super::now())
        .bind(hostname)
        .bind(port)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}
