//! Values the master generates once and keeps (the JWT signing key).

use super::Db;

pub async fn get(db: &Db, key: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT value FROM settings WHERE key = ?").bind(key).fetch_optional(&db.read).await
}

/// Stores `value` unless the key already has one, and returns the value that is kept, so that two
/// masters starting on one database agree.
pub async fn get_or_insert(db: &Db, key: &str, value: &str) -> sqlx::Result<String> {
    sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(&db.write)
        .await?;
    sqlx::query_scalar("SELECT value FROM settings WHERE key = ?").bind(key).fetch_one(&db.write).await
}
