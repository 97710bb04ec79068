//! What an import compares its document with, read inside its transaction.

use std::collections::HashMap;

use super::{Ex, on};

/// Every slave, as (host, port).
pub async fn slave_addresses<'a>(ex: impl Into<Ex<'a>>) -> sqlx::Result<Vec<(String, i64)>> {
    on!(ex.into(), |c| sqlx::query_as("SELECT hostname, port FROM slaves").fetch_all(c).await)
}

/// Every user with its role.
pub async fn user_roles<'a>(ex: impl Into<Ex<'a>>) -> sqlx::Result<Vec<(String, mirror_common::api::Role)>> {
    on!(ex.into(), |c| sqlx::query_as("SELECT username, role FROM users").fetch_all(c).await)
}

/// The newest version of every key of `kind` (removed ones included).
pub async fn newest_versions<'a>(ex: impl Into<Ex<'a>>, kind: &str) -> sqlx::Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = on!(ex.into(), |c| {
        sqlx::query_as("SELECT key, MAX(version) FROM config_commits WHERE kind = $1 GROUP BY key")
            .bind(kind)
            .fetch_all(c)
            .await?
    });
    Ok(rows.into_iter().collect())
}
