//! Master nodes: who they are, when each was last alive, and which one leads.

use mirror_common::time::Timestamp;

use super::{Db, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeRow {
    pub name: String,
    pub api_url: String,
    /// `host:port` of its rsync daemon.
    pub rsyncd: String,
    pub started_at: Timestamp,
    pub last_heartbeat: Timestamp,
}

/// The node is alive at `now` (and announces its addresses).
pub async fn heartbeat(db: &Db, node: &NodeRow, now: Timestamp) -> sqlx::Result<()> {
    on!(&db.write, |c| {
        sqlx::query(
            "INSERT INTO nodes (name, api_url, rsyncd, started_at, last_heartbeat) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET api_url = excluded.api_url, rsyncd = excluded.rsyncd, \
             started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat",
        )
        .bind(&node.name)
        .bind(&node.api_url)
        .bind(&node.rsyncd)
        .bind(node.started_at)
        .bind(now)
        .execute(c)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<NodeRow>> {
    on!(&db.read, |c| {
        sqlx::query_as("SELECT name, api_url, rsyncd, started_at, last_heartbeat FROM nodes ORDER BY name")
            .fetch_all(c)
            .await
    })
}

pub async fn get(db: &Db, name: &str) -> sqlx::Result<Option<NodeRow>> {
    on!(&db.read, |c| {
        sqlx::query_as("SELECT name, api_url, rsyncd, started_at, last_heartbeat FROM nodes WHERE name = $1")
            .bind(name)
            .fetch_optional(c)
            .await
    })
}

/// The lease as it stands: (node, term, expires at). The node is `""` before anyone led.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Lease {
    pub node: String,
    pub term: i64,
    pub expires_at: String,
}

pub async fn lease(db: &Db) -> sqlx::Result<Option<Lease>> {
    on!(&db.read, |c| sqlx::query_as("SELECT node, term, expires_at FROM leader WHERE id = 1").fetch_optional(c).await)
}

/// Takes or renews the lease for `me` until `until`, if it is free (expired at `now`) or already
/// `me`'s. Returns the term held (a new one when the lease changed hands or had lapsed), or
/// `None` when another node holds it.
pub async fn try_lead(db: &Db, me: &str, now: Timestamp, until: Timestamp) -> sqlx::Result<Option<i64>> {
    on!(&db.write, |c| {
        sqlx::query_scalar(
            "UPDATE leader SET \
               term = CASE WHEN node = $1 AND expires_at >= $2 THEN term ELSE term + 1 END, \
               node = $1, expires_at = $3 \
             WHERE id = 1 AND (node = $1 OR expires_at < $2) RETURNING term",
        )
        .bind(me)
        .bind(now.to_text())
        .bind(until.to_text())
        .fetch_optional(c)
        .await
    })
}

/// Gives the lease up (at a clean stop), so that another node takes it at once.
pub async fn resign(db: &Db, me: &str) -> sqlx::Result<()> {
    on!(&db.write, |c| {
        sqlx::query("UPDATE leader SET expires_at = '' WHERE id = 1 AND node = $1")
            .bind(me)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Marks the queued and running runs of nodes last heard of before `before` (other than `me`)
/// interrupted; returns (run, node) for each.
pub async fn interrupt_runs_of_dead(db: &Db, me: &str, before: Timestamp) -> sqlx::Result<Vec<(i64, String)>> {
    on!(&db.write, |c| {
        sqlx::query_as(
            "UPDATE runs SET status = 'interrupted', ended_at = $3, pid = NULL, \
               message = 'the node running it stopped answering' \
             WHERE status IN ('queued', 'running') AND node IS NOT NULL AND node <> $1 \
               AND node IN (SELECT name FROM nodes WHERE last_heartbeat < $2) \
             RETURNING id, node",
        )
        .bind(me)
        .bind(before)
        .bind(super::now())
        .fetch_all(c)
        .await
    })
}
