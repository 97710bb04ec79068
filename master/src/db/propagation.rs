//! Which generation of each project each slave serves, and what it did with each notification.

use mirror_common::api::{CompletionReport, DeliveryStatus, SyncStatus};
use mirror_common::api::{Host, ProjectId};
use mirror_common::time::Timestamp;

use super::{Db, on};

/// One notification: of `generation` of `project`, to the slave at `host`:`port`.
pub struct Delivery<'a> {
    pub project: &'a str,
    pub host: &'a str,
    pub port: i64,
    pub generation: i64,
}

/// Binds the delivery as ?1 (project), ?2 (host), ?3 (port), ?4 (generation), then `extra` as ?5.
async fn write(db: &Db, sql: &'static str, d: &Delivery<'_>, extra: &str) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query(sql)
        .bind(d.project)
        .bind(d.host)
        .bind(d.port)
        .bind(d.generation)
        .bind(extra)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A notification was sent (or is about to be): a row per (project, slave, generation).
pub async fn notified(db: &Db, d: &Delivery<'_>) -> sqlx::Result<()> {
    let sql = "INSERT INTO propagation (project_id, hostname, port, generation, status, notified_at) \
               VALUES ($1, $2, $3, $4, 'notified', $5) \
               ON CONFLICT (project_id, hostname, port, generation) DO UPDATE SET notified_at = $5, \
               notifications = propagation.notifications + 1, \
               status = CASE WHEN propagation.status = 'success' THEN propagation.status ELSE 'notified' END";
    write(db, sql, d, &super::now().to_text()).await
}

/// The slave took the request and is pulling.
pub async fn running(db: &Db, d: &Delivery<'_>) -> sqlx::Result<()> {
    let sql = "UPDATE propagation SET status = 'running', started_at = COALESCE(started_at, $5) \
               WHERE project_id = $1 AND hostname = $2 AND port = $3 AND generation = $4 AND status = 'notified'";
    write(db, sql, d, &super::now().to_text()).await
}

/// The slave could not be reached: the reconciler will notify it again.
pub async fn unreachable(db: &Db, d: &Delivery<'_>, message: &str) -> sqlx::Result<()> {
    let sql = "UPDATE propagation SET status = 'failed', message = $5 \
               WHERE project_id = $1 AND hostname = $2 AND port = $3 AND generation = $4 \
               AND status IN ('notified', 'running')";
    write(db, sql, d, message).await
}

/// The slave says it has (re)started: the pulls it was told of and had not reported are over.
/// Returns how many deliveries were waiting on it.
pub async fn restarted(db: &Db, host: &str, port: i64) -> sqlx::Result<u64> {
    let done = on!(&db.write, |c| sqlx::query(
        "UPDATE propagation SET status = 'failed', message = 'the slave restarted before reporting' \
         WHERE hostname = $1 AND port = $2 AND status IN ('notified', 'running')",
    )
    .bind(host)
    .bind(port)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(done)
}

fn count(v: Option<u64>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

/// Records a slave's report. False when the slave or project is unknown.
pub async fn report(db: &Db, host: &str, port: i64, r: &CompletionReport) -> sqlx::Result<bool> {
    let status = match r.status {
        SyncStatus::Success => DeliveryStatus::Success,
        SyncStatus::Failed => DeliveryStatus::Failed,
        // Staged: the delivery ends when the slave is told to publish and has flipped.
        SyncStatus::Staged => DeliveryStatus::Running,
    };
    let done = on!(&db.write, |c| {
        sqlx::query(
        "INSERT INTO propagation (project_id, hostname, port, generation, status, notified_at, started_at, ended_at, \
         exit_code, message, files_transferred, bytes_transferred, total_size) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
         WHERE EXISTS (SELECT 1 FROM slaves WHERE hostname = $2 AND port = $3) \
         AND EXISTS (SELECT 1 FROM projects WHERE id = $1) \
         ON CONFLICT (project_id, hostname, port, generation) DO UPDATE SET \
         status = CASE WHEN propagation.status = 'success' THEN propagation.status ELSE excluded.status END, \
         started_at = COALESCE(excluded.started_at, propagation.started_at), ended_at = excluded.ended_at, \
         exit_code = excluded.exit_code, message = excluded.message, \
         files_transferred = COALESCE(excluded.files_transferred, propagation.files_transferred), \
         bytes_transferred = COALESCE(excluded.bytes_transferred, propagation.bytes_transferred), \
         total_size = COALESCE(excluded.total_size, propagation.total_size)",
    )
    .bind(&r.project)
    .bind(host)
    .bind(port)
    .bind(r.generation)
    .bind(status)
    .bind(super::now())
    .bind(r.started_at)
    .bind(r.ended_at)
    .bind(r.exit_code)
    .bind(&r.message)
    .bind(count(r.stats.files_transferred))
    .bind(count(r.stats.bytes_transferred))
    .bind(count(r.stats.total_size))
    .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(done == 1)
}

/// A (project, slave) pair whose served generation is behind the project's.
#[derive(Debug, sqlx::FromRow)]
pub struct Behind {
    pub project_id: ProjectId,
    pub hostname: Host,
    pub port: i64,
    pub served: i64,
    pub latest_status: Option<DeliveryStatus>,
    pub latest_notified_at: Option<Timestamp>,
}

/// Every enabled project with a generation, times every slave, where the slave serves less.
pub async fn behind(db: &Db) -> sqlx::Result<Vec<Behind>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT project_id, hostname, port, served, latest_status, latest_notified_at FROM ( \
           SELECT p.id AS project_id, s.hostname, s.port, p.generation, \
             COALESCE((SELECT MAX(generation) FROM propagation g WHERE g.project_id = p.id \
                       AND g.hostname = s.hostname AND g.port = s.port AND g.status = 'success'), 0) AS served, \
             c.status AS latest_status, c.notified_at AS latest_notified_at \
           FROM projects p CROSS JOIN slaves s \
           LEFT JOIN propagation c ON c.project_id = p.id AND c.hostname = s.hostname AND c.port = s.port \
             AND c.generation = p.generation \
           WHERE p.enabled AND p.generation > 0 \
         ) AS b WHERE served < generation",
    )
    .fetch_all(c)
    .await)
}

/// Per slave, for one project: the generation it serves and when, and its latest notification.
#[derive(Debug, sqlx::FromRow)]
pub struct SlaveProgress {
    pub hostname: Host,
    pub port: i64,
    pub last_seen: Option<Timestamp>,
    pub served: i64,
    pub served_at: Option<Timestamp>,
    pub latest_generation: Option<i64>,
    pub latest_status: Option<DeliveryStatus>,
    pub latest_message: Option<String>,
}

pub async fn for_project(db: &Db, project: &str) -> sqlx::Result<Vec<SlaveProgress>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT s.hostname, s.port, s.last_seen, \
           COALESCE(ok.generation, 0) AS served, ok.ended_at AS served_at, \
           l.generation AS latest_generation, l.status AS latest_status, l.message AS latest_message \
         FROM slaves s \
         LEFT JOIN propagation ok ON ok.project_id = $1 AND ok.hostname = s.hostname AND ok.port = s.port \
           AND ok.generation = (SELECT MAX(generation) FROM propagation WHERE project_id = $1 \
             AND hostname = s.hostname AND port = s.port AND status = 'success') \
         LEFT JOIN propagation l ON l.project_id = $1 AND l.hostname = s.hostname AND l.port = s.port \
           AND l.generation = (SELECT MAX(generation) FROM propagation WHERE project_id = $1 \
             AND hostname = s.hostname AND port = s.port) \
         ORDER BY s.hostname, s.port",
    )
    .bind(project)
    .fetch_all(c)
    .await)
}

/// (project, hostname, port, served generation) for every pair with a success.
pub async fn served_all(db: &Db) -> sqlx::Result<Vec<(ProjectId, Host, i64, i64)>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT project_id, hostname, port, MAX(generation) FROM propagation WHERE status = 'success' \
         GROUP BY project_id, hostname, port",
    )
    .fetch_all(c)
    .await)
}

/// What projects' snapshots must keep: (project, generation) for each project's current
/// generation, and for each generation a slave was told of since `since` and has not reported.
/// Of one project, or (`None`) of all.
pub async fn snapshot_holds(db: &Db, since: Timestamp, project: Option<&str>) -> sqlx::Result<Vec<(ProjectId, i64)>> {
    // One project's by its keys (a `$2 IS NULL OR id = $2` read the whole table: once per
    // generation, that was every project once per run when many run at once).
    let since = since.to_text();
    match project {
        Some(id) => on!(&db.read, |c| sqlx::query_as(
            "SELECT id, generation FROM projects WHERE id = $2 \
             UNION SELECT project_id, generation FROM propagation \
             WHERE project_id = $2 AND status IN ('notified', 'running') AND notified_at > $1",
        )
        .bind(&since)
        .bind(id)
        .fetch_all(c)
        .await),
        None => on!(&db.read, |c| sqlx::query_as(
            "SELECT id, generation FROM projects \
             UNION SELECT project_id, generation FROM propagation \
             WHERE status IN ('notified', 'running') AND notified_at > $1",
        )
        .bind(&since)
        .fetch_all(c)
        .await),
    }
}
