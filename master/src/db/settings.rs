//! Values the master generates once and keeps (the JWT signing key).

use super::{Db, on};

pub async fn get(db: &Db, key: &str) -> sqlx::Result<Option<String>> {
    on!(&db.read, |c| sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(c).await)
}

/// Stores `value` unless the key already has one, and returns the value that is kept, so that two
/// masters starting on one database agree.
pub async fn get_or_insert(db: &Db, key: &str, value: &str) -> sqlx::Result<String> {
    on!(&db.write, |c| sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    on!(&db.write, |c| sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_one(c).await)
}
