//! The web console's sessions (`console_sessions`): one row per logged-in browser.

use super::{Db, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub username: String,
    pub stamp: String,
    pub expires_at: i64,
}

/// Stores a new session (and forgets the expired ones: a login is rare enough to pay for that).
pub async fn insert(
    db: &Db,
    id_hash: &str,
    username: &str,
    stamp: &str,
    now: i64,
    expires_at: i64,
) -> sqlx::Result<()> {
    on!(&db.write, |c| {
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1").bind(now).execute(&mut *c).await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, username, stamp, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(username)
        .bind(stamp)
        .bind(now)
        .bind(expires_at)
        .execute(c)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn get(db: &Db, id_hash: &str) -> sqlx::Result<Option<SessionRow>> {
    on!(&db.read, |c| sqlx::query_as("SELECT username, stamp, expires_at FROM console_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .fetch_optional(c)
        .await)
}

/// Ends one session (logout).
pub async fn remove(db: &Db, id_hash: &str) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(c)
        .await?
        .rows_affected());
    Ok(())
}
