//! Alert states (what each watched subject was last seen as) and the webhook deliveries queue.

use mirror_common::names::ProjectId;
use mirror_common::time::Timestamp;

use super::{Db, now, on};

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

/// What the staleness and lag checks need of a project: no more (the listing's rows and rendering
/// are not needed for it).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectAge {
    pub id: ProjectId,
    pub enabled: bool,
    /// `None`: the master's `stale_after_secs`.
    pub max_age_secs: Option<i64>,
    /// The end of its latest successful run.
    pub last_success: Option<Timestamp>,
}

/// Every project's [`ProjectAge`], in one statement.
pub async fn project_ages(db: &Db) -> sqlx::Result<Vec<ProjectAge>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT p.id, p.enabled, p.max_age_secs, \
         (SELECT MAX(r.ended_at) FROM runs r WHERE r.project_id = p.id AND r.status = 'success') AS last_success \
         FROM projects p",
    )
    .fetch_all(c)
    .await)
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
    let mut tx = db.begin().await?;
    let old: Option<String> =
        on!(&mut tx, |c| sqlx::query_scalar("SELECT state FROM alert_states WHERE subject = $1")
            .bind(subject)
            .fetch_optional(c)
            .await)?;
    if old.as_deref() == Some(state) {
        return Ok(old);
    }
    let stamp = now();
    on!(&mut tx, |c| sqlx::query(
        "INSERT INTO alert_states (subject, state, since) VALUES ($1, $2, $3) \
         ON CONFLICT (subject) DO UPDATE SET state = $2, since = $3",
    )
    .bind(subject)
    .bind(state)
    .bind(stamp)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    for (webhook, event, body) in events(old.as_deref()) {
        on!(&mut tx, |c| {
            sqlx::query(
            "INSERT INTO alert_deliveries (webhook, event, body, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(webhook)
        .bind(event)
        .bind(body)
        .bind(stamp)
        .bind(stamp)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    tx.commit().await?;
    Ok(old)
}

/// The oldest delivery of `webhook` not yet delivered nor given up: deliveries go in order.
pub async fn next_pending(db: &Db, webhook: &str) -> sqlx::Result<Option<DeliveryRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alert_deliveries WHERE webhook = $1 AND delivered_at IS NULL AND gave_up_at IS NULL \
         ORDER BY id LIMIT 1"
    )))
    .bind(webhook)
    .fetch_optional(c)
    .await)
}

pub async fn delivered(db: &Db, id: i64) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query(
        "UPDATE alert_deliveries SET delivered_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2",
    )
    .bind(now())
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn failed(db: &Db, id: i64, error: &str, next_attempt_at: Timestamp) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query(
        "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3",
    )
    .bind(error)
    .bind(next_attempt_at)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn gave_up(db: &Db, id: i64) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query("UPDATE alert_deliveries SET gave_up_at = $1 WHERE id = $2")
        .bind(now())
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The newest deliveries, newest first.
pub async fn recent(db: &Db, limit: u32) -> sqlx::Result<Vec<DeliveryRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alert_deliveries ORDER BY id DESC LIMIT $1"
    )))
    .bind(i64::from(limit))
    .fetch_all(c)
    .await)
}

/// Deletes deliveries created before `before` (delivered, given up, or for a webhook no longer
/// configured).
pub async fn prune(db: &Db, before: Timestamp) -> sqlx::Result<u64> {
    let done = on!(&db.write, |c| sqlx::query("DELETE FROM alert_deliveries WHERE created_at < $1")
        .bind(before)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done)
}
