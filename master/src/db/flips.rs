//! Projects with `flip`: when each slave staged each generation and when it flipped to it.

use mirror_common::names::Host;
use mirror_common::time::Timestamp;

use super::{Db, now, on};

/// A slave has staged `generation` (a repeated report keeps the first time).
pub async fn staged(db: &Db, project: &str, host: &str, port: i64, generation: i64) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query(
        "INSERT INTO flips (project_id, hostname, port, generation, staged_at) \
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM projects WHERE id = $1) \
         AND EXISTS (SELECT 1 FROM slaves WHERE hostname = $2 AND port = $3) \
         ON CONFLICT (project_id, hostname, port, generation) DO NOTHING",
    )
    .bind(project)
    .bind(host)
    .bind(port)
    .bind(generation)
    .bind(now())
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A slave serves `generation` since `flipped_at`: its delivery is a success.
pub async fn flipped(
    db: &Db,
    project: &str,
    host: &str,
    port: i64,
    generation: i64,
    flipped_at: Timestamp,
) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    on!(&mut tx, |c| sqlx::query(
        "UPDATE flips SET flipped_at = COALESCE(flipped_at, $5) \
         WHERE project_id = $1 AND hostname = $2 AND port = $3 AND generation = $4",
    )
    .bind(project)
    .bind(host)
    .bind(port)
    .bind(generation)
    .bind(flipped_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    on!(&mut tx, |c| sqlx::query(
        "UPDATE propagation SET status = 'success', ended_at = $5, message = 'published' \
         WHERE project_id = $1 AND hostname = $2 AND port = $3 AND generation = $4",
    )
    .bind(project)
    .bind(host)
    .bind(port)
    .bind(generation)
    .bind(flipped_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Flip {
    pub hostname: Host,
    pub port: i64,
    pub generation: i64,
    pub staged_at: Timestamp,
    pub flipped_at: Option<Timestamp>,
}

/// The slaves that staged `generation` of a project.
pub async fn for_generation(db: &Db, project: &str, generation: i64) -> sqlx::Result<Vec<Flip>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT hostname, port, generation, staged_at, flipped_at FROM flips \
         WHERE project_id = $1 AND generation = $2 ORDER BY hostname, port",
    )
    .bind(project)
    .bind(generation)
    .fetch_all(c)
    .await)
}

/// Per slave, its newest staged generation of a project (with that row's times).
pub async fn newest_per_slave(db: &Db, project: &str) -> sqlx::Result<Vec<Flip>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT hostname, port, generation, staged_at, flipped_at FROM flips f WHERE project_id = $1 \
         AND generation = (SELECT MAX(generation) FROM flips WHERE project_id = $1 \
           AND hostname = f.hostname AND port = f.port)",
    )
    .bind(project)
    .fetch_all(c)
    .await)
}

/// A slave's flip of a project to a generation, as the console's timeline draws it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FlipAt {
    pub project_id: String,
    pub hostname: String,
    pub generation: i64,
    pub flipped_at: Timestamp,
}

/// The flips since `since`, newest first, at most `limit`.
pub async fn since(db: &Db, since: Timestamp, limit: i64) -> sqlx::Result<Vec<FlipAt>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT project_id, hostname, generation, flipped_at FROM flips WHERE flipped_at >= $1 \
         ORDER BY flipped_at DESC LIMIT $2",
    )
    .bind(since)
    .bind(limit)
    .fetch_all(c)
    .await)
}
