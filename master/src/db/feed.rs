//! The event log behind `GET /events`: every event is kept (the newest [`KEEP`]) with an id, so a
//! watcher that reconnects with `Last-Event-ID`, or a node that missed a notification, reads what
//! it missed.

use super::{Db, on};

/// Events kept for watchers that reconnect.
pub const KEEP: i64 = 100_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedEvent {
    pub id: i64,
    pub kind: String,
    /// JSON.
    pub data: String,
    /// The node it happened on.
    pub node: Option<String>,
}

/// The channel on which PostgreSQL tells every node that the log has grown.
pub const CHANNEL: &str = "mirror_events";

/// Stores events of `node` (kind, JSON data), in order, in one transaction; their ids. Events are
/// appended by all nodes together through write transactions, so ids are committed in order and a
/// reader that has seen id N never sees an id below N appear later. On PostgreSQL the other nodes
/// are told at commit, once for the lot.
pub async fn append(db: &Db, node: &str, events: &[(&str, String)]) -> sqlx::Result<Vec<i64>> {
    let mut tx = db.begin().await?;
    let mut ids = Vec::with_capacity(events.len());
    let created_at = super::now();
    for (kind, data) in events {
        let id = on!(&mut tx, |c| {
            sqlx::query_scalar(
                "INSERT INTO event_log (kind, data, created_at, node) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(*kind)
            .bind(data)
            .bind(created_at)
            .bind(node)
            .fetch_one(c)
            .await?
        });
        ids.push(id);
    }
    if let super::Tx::Postgres(t) = &mut tx {
        sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&mut **t).await?;
    }
    tx.commit().await?;
    Ok(ids)
}

/// Deletes all but the newest [`KEEP`] events.
pub async fn prune(db: &Db) -> sqlx::Result<u64> {
    on!(&db.write, |c| {
        Ok(sqlx::query("DELETE FROM event_log WHERE id <= (SELECT MAX(id) FROM event_log) - $1")
            .bind(KEEP)
            .execute(c)
            .await?
            .rows_affected())
    })
}

/// Stored events after `after`, oldest first, at most `limit`.
pub async fn since(db: &Db, after: i64, limit: i64) -> sqlx::Result<Vec<FeedEvent>> {
    on!(&db.read, |c| {
        sqlx::query_as("SELECT id, kind, data, node FROM event_log WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(c)
            .await
    })
}

/// The newest event's id (0: none yet).
pub async fn newest(db: &Db) -> sqlx::Result<i64> {
    on!(&db.read, |c| sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM event_log").fetch_one(c).await)
}

/// Notifications of events appended by any node (PostgreSQL's `LISTEN` on [`CHANNEL`]): a hint to
/// read the log now rather than at the next poll.
pub struct Notifications(sqlx::postgres::PgListener);

impl Notifications {
    /// Listens on its own connection; `None` on SQLite (one node alone writes it) or while the
    /// database cannot be reached.
    pub async fn listen(db: &Db) -> Option<Notifications> {
        let super::Pool::Postgres(pool) = &db.write else { return None };
        let mut l = sqlx::postgres::PgListener::connect_with(pool).await.ok()?;
        l.listen(CHANNEL).await.ok()?;
        Some(Notifications(l))
    }

    /// Waits for the next notification; `false` once the connection is lost.
    pub async fn next(&mut self) -> bool {
        self.0.recv().await.is_ok()
    }
}
