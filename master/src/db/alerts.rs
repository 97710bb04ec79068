//! Alert states (what each watched subject was last seen as) and the webhook deliveries queue.

use mirror_common::time::Timestamp;

use super::{Db, now};

/// One event queued for one webhook.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub webhook: String,
    pub event: String,
    pub body: String,
    pub created_at: Timestamp,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub gave_up_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

const COLUMNS: &str =
    "id, webhook, event, body, created_at, attempts, next_attempt_at, delivered_at, gave_up_at, last_error";

/// Moves `subject` to `state`. Returns its previous state (`None`: never seen), or `Some(same)`
/// when it did not change; in that case nothing is written. With `events` (webhook name, event,
/// body), they are queued in the same transaction, so a change and its alerts are stored together.
pub async fn transition(
    db: &Db,
    subject: &str,
    state: &str,
    events: impl FnOnce(Option<&str>) -> Vec<(String, &'static str, String)>,
) -> sqlx::Result<Option<String>> {
    let mut tx = db.write.begin_with("BEGIN IMMEDIATE").await?;
    let old: Option<String> = sqlx::query_scalar("SELECT state FROM alert_states WHERE subject = ?")
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await?;
    if old.as_deref() == Some(state) {
        return Ok(old);
    }
    let stamp = now();
    sqlx::query(
        "INSERT INTO alert_states (subject, state, since) VALUES (?1, ?2, ?3) \
         ON CONFLICT (subject) DO UPDATE SET state = ?2, since = ?3",
    )
    .bind(subject)
    .bind(state)
    .bind(stamp)
    .execute(&mut *tx)
    .await?;
    for (webhook, event, body) in events(old.as_deref()) {
        sqlx::query(
            "INSERT INTO alert_deliveries (webhook, event, body, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(webhook)
        .bind(event)
        .bind(body)
        .bind(stamp)
        .bind(stamp)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(old)
}

/// The oldest delivery of `webhook` not yet delivered nor given up: deliveries go in order.
pub async fn next_pending(db: &Db, webhook: &str) -> sqlx::Result<Option<DeliveryRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alert_deliveries WHERE webhook = ? AND delivered_at IS NULL AND gave_up_at IS NULL \
         ORDER BY id LIMIT 1"
    )))
    .bind(webhook)
    .fetch_optional(&db.read)
    .await
}

pub async fn delivered(db: &Db, id: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE alert_deliveries SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
    )
    .bind(now())
    .bind(id)
    .execute(&db.write)
    .await?;
    Ok(())
}

pub async fn failed(db: &Db, id: i64, error: &str, next_attempt_at: Timestamp) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
    )
    .bind(error)
    .bind(next_attempt_at)
    .bind(id)
    .execute(&db.write)
    .await?;
    Ok(())
}

pub async fn gave_up(db: &Db, id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE alert_deliveries SET gave_up_at = ? WHERE id = ?")
        .bind(now())
        .bind(id)
        .execute(&db.write)
        .await?;
    Ok(())
}

/// The newest deliveries, newest first.
pub async fn recent(db: &Db, limit: u32) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM alert_deliveries ORDER BY id DESC LIMIT ?")))
        .bind(limit)
        .fetch_all(&db.read)
        .await
}

/// Deletes deliveries created before `before` (delivered, given up, or for a webhook no longer
/// configured).
pub async fn prune(db: &Db, before: Timestamp) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM alert_deliveries WHERE created_at < ?").bind(before).execute(&db.write).await?;
    Ok(done.rows_affected())
}
