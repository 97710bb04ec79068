//! API users.

use super::{Db, now};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: String,
}

pub async fn get(db: &Db, username: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as("SELECT username, password_hash, role, created_at FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(db)
        .await
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as("SELECT username, password_hash, role, created_at FROM users ORDER BY username").fetch_all(db).await
}

pub async fn count(db: &Db) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(db).await
}

pub async fn insert(db: &Db, username: &str, password_hash: &str, role: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)")
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(now())
        .execute(db)
        .await?;
    Ok(())
}

pub enum RemoveOutcome {
    Removed,
    NotFound,
    LastRoot,
}

/// Removes a user, refusing to remove the last `root` (nobody could manage users after that).
/// Check and delete happen in one statement, so two concurrent removals cannot both pass.
pub async fn remove(db: &Db, username: &str) -> sqlx::Result<RemoveOutcome> {
    let done = sqlx::query(
        "DELETE FROM users WHERE username = ?1 AND \
         (role <> 'root' OR (SELECT COUNT(*) FROM users WHERE role = 'root') > 1)",
    )
    .bind(username)
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(RemoveOutcome::Removed);
    }
    Ok(if get(db, username).await?.is_some() { RemoveOutcome::LastRoot } else { RemoveOutcome::NotFound })
}
