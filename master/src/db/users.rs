//! API users.

use mirror_common::api::{Name, Role};
use mirror_common::time::Timestamp;

use super::{Db, now, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub username: Name,
    pub password_hash: String,
    pub role: Role,
    pub created_at: Timestamp,
    /// Tokens carry it; a new one (password or role changed, user re-created) revokes them.
    pub token_stamp: String,
}

const COLUMNS: &str = "username, password_hash, role, created_at, token_stamp";

/// A fresh stamp for [`UserRow::token_stamp`].
fn new_stamp() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn get(db: &Db, username: &str) -> sqlx::Result<Option<UserRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM users WHERE username = $1")))
        .bind(username)
        .fetch_optional(c)
        .await)
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<UserRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM users ORDER BY username")))
        .fetch_all(c)
        .await)
}

pub async fn count(db: &Db) -> sqlx::Result<i64> {
    on!(&db.read, |c| sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(c).await)
}

pub async fn insert(tx: &mut super::Tx, username: &Name, password_hash: &str, role: Role) -> sqlx::Result<()> {
    on!(tx, |c| {
        sqlx::query(
            "INSERT INTO users (username, password_hash, role, created_at, token_stamp) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(now())
        .bind(new_stamp())
        .execute(c)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub enum UpdateOutcome {
    Updated,
    NotFound,
    /// The change would leave no `root`.
    LastRoot,
}

/// Sets a new password hash and/or role, and a new token stamp. Demoting the last `root` is
/// refused in the same statement, so two concurrent demotions cannot both pass.
pub async fn update(
    tx: &mut super::Tx,
    username: &str,
    password_hash: Option<&str>,
    role: Option<Role>,
) -> sqlx::Result<UpdateOutcome> {
    let done = on!(&mut *tx, |c| {
        sqlx::query(
            "UPDATE users SET password_hash = COALESCE($2, password_hash), role = COALESCE($3, role), token_stamp = $4 \
             WHERE username = $1 AND ($3 IS NULL OR $3 = 'root' OR role <> 'root' \
             OR (SELECT COUNT(*) FROM users WHERE role = 'root') > 1)",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(new_stamp())
        .execute(c)
        .await?
        .rows_affected()
    });
    if done == 1 {
        return Ok(UpdateOutcome::Updated);
    }
    Ok(if exists(tx, username).await? { UpdateOutcome::LastRoot } else { UpdateOutcome::NotFound })
}

pub enum RemoveOutcome {
    Removed,
    NotFound,
    LastRoot,
}

/// Removes a user, refusing to remove the last `root` (nobody could manage users after that).
/// Check and delete happen in one statement, so two concurrent removals cannot both pass.
pub async fn remove(tx: &mut super::Tx, username: &str) -> sqlx::Result<RemoveOutcome> {
    let done = on!(&mut *tx, |c| {
        sqlx::query(
            "DELETE FROM users WHERE username = $1 AND \
             (role <> 'root' OR (SELECT COUNT(*) FROM users WHERE role = 'root') > 1)",
        )
        .bind(username)
        .execute(c)
        .await?
        .rows_affected()
    });
    if done == 1 {
        return Ok(RemoveOutcome::Removed);
    }
    Ok(if exists(tx, username).await? { RemoveOutcome::LastRoot } else { RemoveOutcome::NotFound })
}

/// The user's role, when it exists.
pub async fn role_of(tx: &mut super::Tx, username: &str) -> sqlx::Result<Option<Role>> {
    on!(tx, |c| sqlx::query_scalar("SELECT role FROM users WHERE username = $1").bind(username).fetch_optional(c).await)
}

async fn exists(tx: &mut super::Tx, username: &str) -> sqlx::Result<bool> {
    Ok(role_of(tx, username).await?.is_some())
}
