//! The history of rsync runs.

use mirror_common::api::{ProjectId, RunStats, RunStatus, Trigger};
use mirror_common::time::Timestamp;

use super::{Db, Ex, on};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub project_id: ProjectId,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub scheduled_for: Option<Timestamp>,
    pub queued_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub exit_code: Option<i64>,
    pub attempts: i64,
    pub message: Option<String>,
    pub warning: bool,
    pub files_total: Option<i64>,
    pub files_transferred: Option<i64>,
    pub total_size: Option<i64>,
    pub bytes_transferred: Option<i64>,
    pub bytes_received: Option<i64>,
    pub files_created: Option<i64>,
    pub files_deleted: Option<i64>,
    /// A git run's references created, moved or deleted.
    pub refs_updated: Option<i64>,
    pub log_tail: Option<String>,
    pub log_file: Option<String>,
    pub changed: Option<bool>,
    pub probe: Option<String>,
    /// The upstream it pulled from (`rsync://host[:port]/module/`).
    pub upstream: Option<String>,
}

const COLUMNS: &str = "id, project_id, trigger, status, scheduled_for, queued_at, started_at, ended_at, exit_code, \
                       attempts, message, warning, files_total, files_transferred, total_size, bytes_transferred, \
                       bytes_received, files_created, files_deleted, refs_updated, log_tail, log_file, changed, probe, upstream";

/// The same without the output's tail (up to 64 KiB a run): for lists, which never show it.
const LIST_COLUMNS: &str = "id, project_id, trigger, status, scheduled_for, queued_at, started_at, ended_at, \
                            exit_code, attempts, message, warning, files_total, files_transferred, total_size, \
                            bytes_transferred, bytes_received, files_created, files_deleted, refs_updated, NULL AS log_tail, \
                            log_file, changed, probe, upstream";

/// Rows a statement inserts at most: four parameters each, well under SQLite's limit.
const INSERT_CHUNK: usize = 500;

/// Records queued runs of `project_ids`, all with the same trigger and fire time, in one statement
/// per 500. Returns one result per id, in order: a project that does not exist (removed since) is
/// refused by the foreign key and fails alone.
pub async fn insert_queued(
    db: &Db,
    node: &str,
    project_ids: &[&ProjectId],
    trigger: Trigger,
    scheduled_for: Option<Timestamp>,
) -> Vec<sqlx::Result<i64>> {
    let mut results = Vec::with_capacity(project_ids.len());
    for chunk in project_ids.chunks(INSERT_CHUNK) {
        match insert_chunk(db, node, chunk, trigger, scheduled_for).await {
            Ok(ids) => results.extend(ids.into_iter().map(Ok)),
            // One bad row fails the whole statement: find it, inserting the others one by one.
            Err(_) if chunk.len() > 1 => {
                for id in chunk {
                    let one = insert_chunk(db, node, &[id], trigger, scheduled_for).await;
                    results.push(one.and_then(|ids| ids.first().copied().ok_or(sqlx::Error::RowNotFound)));
                }
            }
            Err(e) => results.push(Err(e)),
        }
    }
    results
}

/// The new ids, in the order of `project_ids` (RETURNING gives rows in no set order).
async fn insert_chunk(
    db: &Db,
    node: &str,
    project_ids: &[&ProjectId],
    trigger: Trigger,
    scheduled_for: Option<Timestamp>,
) -> sqlx::Result<Vec<i64>> {
    // $1: the node; then four per run.
    let rows: Vec<String> = (0..project_ids.len())
        .map(|i| format!("(${}, ${}, 'queued', ${}, ${}, $1)", 4 * i + 2, 4 * i + 3, 4 * i + 4, 4 * i + 5))
        .collect();
    let sql = format!(
        "INSERT INTO runs (project_id, trigger, status, scheduled_for, queued_at, node) VALUES {} \
         RETURNING id, project_id",
        rows.join(", ")
    );
    let queued_at = super::now();
    let inserted: Vec<(i64, ProjectId)> = on!(&db.write, |c| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(node);
        for id in project_ids {
            query = query.bind(*id).bind(trigger).bind(scheduled_for).bind(queued_at);
        }
        query.fetch_all(c).await?
    });
    let by_project: std::collections::HashMap<ProjectId, i64> =
        inserted.into_iter().map(|(id, project)| (project, id)).collect();
    project_ids.iter().map(|p| by_project.get(*p).copied().ok_or_else(|| sqlx::Error::RowNotFound)).collect()
}

/// rsync has started (attempt `attempts`, process `pid`). Written once per attempt; a late write
/// never overrides the run's final status.
pub async fn mark_running(db: &Db, id: i64, pid: u32, attempts: u32, log_file: &str) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query(
        "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $1), pid = $2, attempts = $3, \
         log_file = $4 WHERE id = $5 AND status IN ('queued', 'running')",
    )
    .bind(super::now())
    .bind(i64::from(pid))
    .bind(i64::from(attempts))
    .bind(log_file)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The latest fire of a project's schedule that produced a run.
pub async fn last_scheduled_fire(db: &Db, project_id: &str) -> sqlx::Result<Option<Timestamp>> {
    on!(&db.read, |c| sqlx::query_scalar(
        "SELECT MAX(scheduled_for) FROM runs WHERE project_id = $1 AND scheduled_for IS NOT NULL"
    )
    .bind(project_id)
    .fetch_one(c)
    .await)
}

/// The end of a run, as written once.
pub struct Finished<'a> {
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub attempts: u32,
    pub message: &'a str,
    pub warning: bool,
    pub stats: &'a RunStats,
    pub log_tail: &'a str,
}

/// No figures: a run that ended without rsync's (refused, interrupted, ended by its probe).
static NO_STATS: RunStats = RunStats {
    files_total: None,
    regular_files: None,
    files_transferred: None,
    total_size: None,
    bytes_transferred: None,
    bytes_received: None,
    files_created: None,
    files_deleted: None,
    refs_updated: None,
    changes: None,
};

impl<'a> Finished<'a> {
    /// A run that ended without running rsync, with `message`.
    pub fn unrun(status: RunStatus, message: &'a str) -> Finished<'a> {
        Finished { status, exit_code: None, attempts: 0, message, warning: false, stats: &NO_STATS, log_tail: "" }
    }
}

fn as_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

pub async fn finish(db: &Db, id: i64, f: &Finished<'_>) -> sqlx::Result<()> {
    finish_in(&db.write, id, f, None).await
}

/// A successful run's end and its project's new generation, in one transaction: whoever reads the
/// run as ended reads the generation it made. The project as it now is (`None` if it is gone).
/// Records a successful run; with `changed`, its project's next generation (returned) in the same
/// transaction. Without, the run is kept as `changed = 0` and the generation stays.
pub async fn finish_success(
    db: &Db,
    id: i64,
    f: &Finished<'_>,
    project_id: &str,
    changed: bool,
) -> sqlx::Result<Option<crate::db::projects::ProjectRow>> {
    let mut tx = db.begin().await?;
    finish_in(&mut tx, id, f, Some(changed)).await?;
    let project = if changed { crate::db::projects::bump_generation(&mut tx, project_id).await? } else { None };
    tx.commit().await?;
    Ok(project)
}

/// Adds `text` to the message of run `id` (a hook that failed after it ended).
pub async fn note(db: &Db, id: i64, text: &str) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query("UPDATE runs SET message = COALESCE(message, '') || $1 WHERE id = $2")
        .bind(text)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Keeps the upstream run `id` pulls from.
pub async fn set_upstream(db: &Db, id: i64, upstream: &str) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query("UPDATE runs SET upstream = $1 WHERE id = $2")
        .bind(upstream)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Keeps what the project's probe found before run `id`.
pub async fn set_probe(db: &Db, id: i64, found: &str) -> sqlx::Result<()> {
    on!(&db.write, |c| sqlx::query("UPDATE runs SET probe = $1 WHERE id = $2")
        .bind(found)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The number of files the project's newest successful run found upstream (`None`: no such run).
pub async fn last_success_total(db: &Db, project_id: &str) -> sqlx::Result<Option<u64>> {
    let total: Option<Option<i64>> = on!(&db.read, |c| sqlx::query_scalar(
        "SELECT files_total FROM runs WHERE project_id = $1 AND status = 'success' ORDER BY id DESC LIMIT 1",
    )
    .bind(project_id)
    .fetch_optional(c)
    .await)?;
    Ok(total.flatten().and_then(|t| u64::try_from(t).ok()))
}

/// The run's end; `changed`: whether it changed the tree (kept as it is with `None`).
async fn finish_in<'a>(db: impl Into<Ex<'a>>, id: i64, f: &Finished<'_>, changed: Option<bool>) -> sqlx::Result<()> {
    on!(db.into(), |c| {
        sqlx::query(
        "UPDATE runs SET status = $1, ended_at = $2, exit_code = $3, attempts = $4, message = $5, warning = $6, \
         files_total = $7, files_transferred = $8, total_size = $9, bytes_transferred = $10, bytes_received = $11, \
         files_created = $12, files_deleted = $13, log_tail = $14, pid = NULL, started_at = COALESCE(started_at, queued_at), \
         refs_updated = $16, changed = COALESCE($17, changed) WHERE id = $15",
    )
    .bind(f.status)
    .bind(super::now())
    .bind(f.exit_code)
    .bind(i64::from(f.attempts))
    .bind(f.message)
    .bind(f.warning)
    .bind(as_i64(f.stats.files_total))
    .bind(as_i64(f.stats.files_transferred))
    .bind(as_i64(f.stats.total_size))
    .bind(as_i64(f.stats.bytes_transferred))
    .bind(as_i64(f.stats.bytes_received))
    .bind(as_i64(f.stats.files_created))
    .bind(as_i64(f.stats.files_deleted))
    .bind(f.log_tail)
    .bind(id)
    .bind(as_i64(f.stats.refs_updated))
    .bind(changed)
    .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Keeps the newest `keep` finished runs of a project (a run under way is never removed).
pub async fn prune(db: &Db, project_id: &str, keep: usize) -> sqlx::Result<u64> {
    let done = on!(&db.write, |c| {
        sqlx::query(
        "DELETE FROM runs WHERE project_id = $1 AND status NOT IN ('queued', 'running') \
         AND id < (SELECT MIN(id) FROM (SELECT id FROM runs WHERE project_id = $1 ORDER BY id DESC LIMIT $2) AS newest)",
    )
    .bind(project_id)
    .bind(i64::try_from(keep).unwrap_or(i64::MAX))
    .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(done)
}

/// A run left unfinished by a previous master process.
#[derive(Debug, sqlx::FromRow)]
pub struct Unfinished {
    pub id: i64,
    pub pid: Option<i64>,
    pub dest: String,
}

/// Marks every queued or running run `interrupted` (the master that ran them is gone) and returns
/// them, with the pid of any rsync that may still be running.
pub async fn interrupt_unfinished(db: &Db, node: &str) -> sqlx::Result<Vec<Unfinished>> {
    let mut tx = db.begin().await?;
    let rows: Vec<Unfinished> = on!(&mut tx, |c| sqlx::query_as(
        "SELECT runs.id, runs.pid, projects.dest FROM runs JOIN projects ON projects.id = runs.project_id \
         WHERE runs.status IN ('queued', 'running') AND (runs.node = $1 OR runs.node IS NULL)",
    )
    .bind(node)
    .fetch_all(c)
    .await)?;
    on!(&mut tx, |c| sqlx::query(
        "UPDATE runs SET status = 'interrupted', ended_at = $1, pid = NULL, \
         message = 'the master stopped during this run' \
         WHERE status IN ('queued', 'running') AND (node = $2 OR node IS NULL)",
    )
    .bind(super::now())
    .bind(node)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(rows)
}

/// Of `ids`, the projects with a run queued or going on another node than `me` that was alive
/// at `alive_since`: (project, run).
pub async fn going_elsewhere(
    db: &Db,
    me: &str,
    alive_since: Timestamp,
    ids: &[&ProjectId],
) -> sqlx::Result<Vec<(ProjectId, i64)>> {
    let ids = super::json_list(ids)?;
    on!(&db.read, |c| sqlx::query_as(
        "SELECT r.project_id, r.id FROM runs r JOIN nodes n ON n.name = r.node \
         WHERE r.status IN ('queued', 'running') AND r.node <> $1 AND n.last_heartbeat > $2 \
         AND r.project_id IN (SELECT value FROM json_each($3))",
    )
    .bind(me)
    .bind(alive_since)
    .bind(ids)
    .fetch_all(c)
    .await)
}

/// The node run `id` belongs to (`None`: no such run, or one from before nodes).
pub async fn node_of(db: &Db, id: i64) -> sqlx::Result<Option<String>> {
    let node: Option<Option<String>> =
        on!(&db.read, |c| sqlx::query_scalar("SELECT node FROM runs WHERE id = $1").bind(id).fetch_optional(c).await)?;
    Ok(node.flatten())
}

/// The run of a project that is queued or running, if any (a project has at most one).
pub async fn going(db: &Db, project_id: &str) -> sqlx::Result<Option<RunRow>> {
    let newest = list(db, Some(project_id), 1).await?.into_iter().next();
    Ok(newest.filter(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running)))
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<RunRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM runs WHERE id = $1")))
        .bind(id)
        .fetch_optional(c)
        .await)
}

/// Newest first.
pub async fn list(db: &Db, project_id: Option<&str>, limit: i64) -> sqlx::Result<Vec<RunRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LIST_COLUMNS} FROM runs WHERE ($1 IS NULL OR project_id = $1) ORDER BY id DESC LIMIT $2"
    )))
    .bind(project_id)
    .bind(limit)
    .fetch_all(c)
    .await)
}

/// What a sparkline draws of a run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunPoint {
    pub project_id: ProjectId,
    pub status: RunStatus,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
}

/// The newest `per` runs of each of `ids` (the console's sparklines), oldest first per project.
pub async fn recent_of(db: &Db, ids: &[ProjectId], per: i64) -> sqlx::Result<Vec<RunPoint>> {
    let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(e.into()))?;
    on!(&db.read, |c| sqlx::query_as(
        "SELECT project_id, status, started_at, ended_at FROM (SELECT j.value AS pid, (SELECT MIN(id) FROM \
         (SELECT id FROM runs WHERE project_id = j.value ORDER BY id DESC LIMIT $2) AS newest) AS low \
         FROM json_each($1) AS j) AS t JOIN runs ON runs.project_id = t.pid AND runs.id >= t.low \
         ORDER BY project_id, id"
    )
    .bind(ids)
    .bind(per)
    .fetch_all(c)
    .await)
}

/// The runs that ended or were going since `since` (the console's timeline), at most `limit`,
/// newest first.
pub async fn since(db: &Db, since: Timestamp, limit: i64) -> sqlx::Result<Vec<RunRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LIST_COLUMNS} FROM runs WHERE ended_at IS NULL OR ended_at >= $1 ORDER BY id DESC LIMIT $2"
    )))
    .bind(since)
    .bind(limit)
    .fetch_all(c)
    .await)
}

/// The latest run of every project that has one.
pub async fn latest_per_project(db: &Db) -> sqlx::Result<Vec<RunRow>> {
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LIST_COLUMNS} FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY project_id)"
    )))
    .fetch_all(c)
    .await)
}

/// When the project's latest successful run ended.
pub async fn last_success(db: &Db, project_id: &str) -> sqlx::Result<Option<Timestamp>> {
    on!(&db.read, |c| sqlx::query_scalar(
        "SELECT MAX(ended_at) FROM runs WHERE project_id = $1 AND status = 'success' AND ended_at IS NOT NULL",
    )
    .bind(project_id)
    .fetch_one(c)
    .await)
}

/// The tree's size and file count at the project's latest successful run (as rsync counted
/// them), when there is one.
pub async fn last_success_size(db: &Db, project_id: &str) -> sqlx::Result<Option<(Option<u64>, Option<u64>)>> {
    let row: Option<(Option<i64>, Option<i64>)> = on!(&db.read, |c| {
        sqlx::query_as(
        "SELECT total_size, files_total FROM runs WHERE project_id = $1 AND status = 'success' ORDER BY id DESC LIMIT 1",
    )
    .bind(project_id)
    .fetch_optional(c).await
    })?;
    Ok(row.map(|(size, files)| (size.and_then(|s| u64::try_from(s).ok()), files.and_then(|f| u64::try_from(f).ok()))))
}

/// (project, end time) of every project's latest successful run.
pub async fn last_success_per_project(db: &Db) -> sqlx::Result<Vec<(ProjectId, Timestamp)>> {
    on!(&db.read, |c| sqlx::query_as(
        "SELECT project_id, MAX(ended_at) FROM runs WHERE status = 'success' AND ended_at IS NOT NULL \
         GROUP BY project_id",
    )
    .fetch_all(c)
    .await)
}

/// The latest run of each of `ids` that has one.
pub async fn latest_of(db: &Db, ids: &[ProjectId]) -> sqlx::Result<Vec<RunRow>> {
    let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(e.into()))?;
    on!(&db.read, |c| sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LIST_COLUMNS} FROM runs WHERE id IN \
         (SELECT (SELECT MAX(id) FROM runs WHERE project_id = j.value) FROM json_each($1) AS j)"
    )))
    .bind(ids)
    .fetch_all(c)
    .await)
}

/// (project, end time) of the latest successful run of each of `ids` that has one.
pub async fn last_success_of(db: &Db, ids: &[ProjectId]) -> sqlx::Result<Vec<(ProjectId, Timestamp)>> {
    let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(e.into()))?;
    on!(&db.read, |c| sqlx::query_as(
        "SELECT project_id, MAX(ended_at) FROM runs WHERE status = 'success' AND ended_at IS NOT NULL \
         AND project_id IN (SELECT value FROM json_each($1)) GROUP BY project_id",
    )
    .bind(ids)
    .fetch_all(c)
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn with_projects(db: &Db, ids: &[&str]) {
        for id in ids {
            crate::db::testing::add_project(db, id, &format!("/m/{id}")).await;
        }
    }

    async fn project_of(db: &Db, run: i64) -> sqlx::Result<String> {
        on!(&db.read, |c| sqlx::query_scalar("SELECT project_id FROM runs WHERE id = $1").bind(run).fetch_one(c).await)
    }

    async fn runs_count(db: &Db) -> sqlx::Result<i64> {
        on!(&db.read, |c| sqlx::query_scalar("SELECT COUNT(*) FROM runs").fetch_one(c).await)
    }

    #[tokio::test]
    async fn queued_runs_are_inserted_in_chunks_with_ids_in_order_and_a_missing_project_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        for (_, db) in crate::db::testing::each_backend(dir.path()).await {
            queued_runs_on(db).await;
        }
    }

    async fn queued_runs_on(db: Db) {
        let names: Vec<String> = (0..1200).map(|i| format!("p{i}")).collect();
        let mut ids: Vec<&str> = names.iter().map(String::as_str).collect();
        with_projects(&db, &ids).await;
        // One project that does not exist, in the middle of the second chunk.
        ids.insert(700, "gone");
        let typed: Vec<ProjectId> = ids.iter().map(|id| ProjectId::parse(*id).unwrap()).collect();
        let typed: Vec<&ProjectId> = typed.iter().collect();
        let results = insert_queued(
            &db,
            "n1",
            &typed,
            Trigger::Schedule,
            Some(Timestamp::parse("2026-01-01T00:00:00.000Z").unwrap()),
        )
        .await;
        assert_eq!(results.len(), ids.len());
        for (project, result) in ids.iter().zip(&results) {
            match result {
                Ok(run_id) => {
                    let stored = project_of(&db, *run_id).await.unwrap();
                    assert_eq!(&stored, project);
                }
                Err(e) => {
                    assert_eq!(*project, "gone");
                    assert!(matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation()), "{e}");
                }
            }
        }
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        let count = runs_count(&db).await.unwrap();
        assert_eq!(count, 1200);
    }
}
