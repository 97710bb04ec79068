//! The history of rsync runs.

use mirror_common::api::{ProjectId, RunStats, RunStatus, Trigger};
use mirror_common::time::Timestamp;

use super::Db;

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
    pub log_tail: Option<String>,
    pub log_file: Option<String>,
    pub changed: Option<bool>,
    pub probe: Option<String>,
}

const COLUMNS: &str = "id, project_id, trigger, status, scheduled_for, queued_at, started_at, ended_at, exit_code, \
                       attempts, message, warning, files_total, files_transferred, total_size, bytes_transferred, \
                       bytes_received, files_created, files_deleted, log_tail, log_file, changed, probe";

/// The same without the output's tail (up to 64 KiB a run): for lists, which never show it.
const LIST_COLUMNS: &str = "id, project_id, trigger, status, scheduled_for, queued_at, started_at, ended_at, \
                            exit_code, attempts, message, warning, files_total, files_transferred, total_size, \
                            bytes_transferred, bytes_received, files_created, files_deleted, NULL AS log_tail, \
                            log_file, changed, probe";

/// Rows a statement inserts at most: four parameters each, well under SQLite's limit.
const INSERT_CHUNK: usize = 500;

/// Records queued runs of `project_ids`, all with the same trigger and fire time, in one statement
/// per 500. Returns one result per id, in order: a project that does not exist (removed since) is
/// refused by the foreign key and fails alone.
pub async fn insert_queued(
    db: &Db,
    project_ids: &[&ProjectId],
    trigger: Trigger,
    scheduled_for: Option<Timestamp>,
) -> Vec<sqlx::Result<i64>> {
    let mut results = Vec::with_capacity(project_ids.len());
    for chunk in project_ids.chunks(INSERT_CHUNK) {
        match insert_chunk(db, chunk, trigger, scheduled_for).await {
            Ok(ids) => results.extend(ids.into_iter().map(Ok)),
            // One bad row fails the whole statement: find it, inserting the others one by one.
            Err(_) if chunk.len() > 1 => {
                for id in chunk {
                    let one = insert_chunk(db, &[id], trigger, scheduled_for).await;
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
    project_ids: &[&ProjectId],
    trigger: Trigger,
    scheduled_for: Option<Timestamp>,
) -> sqlx::Result<Vec<i64>> {
    let rows = vec!["(?, ?, 'queued', ?, ?)"; project_ids.len()].join(", ");
    let sql = format!(
        "INSERT INTO runs (project_id, trigger, status, scheduled_for, queued_at) VALUES {rows} RETURNING id, project_id"
    );
    let queued_at = super::now();
    let mut query = sqlx::query_as::<_, (i64, ProjectId)>(sqlx::AssertSqlSafe(sql));
    for id in project_ids {
        query = query.bind(*id).bind(trigger).bind(scheduled_for).bind(queued_at);
    }
    let by_project: std::collections::HashMap<ProjectId, i64> =
        query.fetch_all(&db.write).await?.into_iter().map(|(id, project)| (project, id)).collect();
    project_ids.iter().map(|p| by_project.get(*p).copied().ok_or_else(|| sqlx::Error::RowNotFound)).collect()
}

/// rsync has started (attempt `attempts`, process `pid`). Written once per attempt; a late write
/// never overrides the run's final status.
pub async fn mark_running(db: &Db, id: i64, pid: u32, attempts: u32, log_file: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), pid = ?, attempts = ?, \
         log_file = ? WHERE id = ? AND status IN ('queued', 'running')",
    )
    .bind(super::now())
    .bind(i64::from(pid))
    .bind(i64::from(attempts))
    .bind(log_file)
    .bind(id)
    .execute(&db.write)
    .await?;
    Ok(())
}

/// The latest fire of a project's schedule that produced a run.
pub async fn last_scheduled_fire(db: &Db, project_id: &str) -> sqlx::Result<Option<Timestamp>> {
    sqlx::query_scalar("SELECT MAX(scheduled_for) FROM runs WHERE project_id = ? AND scheduled_for IS NOT NULL")
        .bind(project_id)
        .fetch_one(&db.read)
        .await
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
    finish_in(&db.write, id, f).await
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
    let mut tx = db.write.begin().await?;
    finish_in(&mut *tx, id, f).await?;
    sqlx::query("UPDATE runs SET changed = ? WHERE id = ?").bind(changed).bind(id).execute(&mut *tx).await?;
    let project = if changed { crate::db::projects::bump_generation(&mut *tx, project_id).await? } else { None };
    tx.commit().await?;
    Ok(project)
}

/// Keeps what the project's probe found before run `id`.
pub async fn set_probe(db: &Db, id: i64, found: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE runs SET probe = ? WHERE id = ?").bind(found).bind(id).execute(&db.write).await?;
    Ok(())
}

/// The number of files the project's newest successful run found upstream (`None`: no such run).
pub async fn last_success_total(db: &Db, project_id: &str) -> sqlx::Result<Option<u64>> {
    let total: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT files_total FROM runs WHERE project_id = ? AND status = 'success' ORDER BY id DESC LIMIT 1",
    )
    .bind(project_id)
    .fetch_optional(&db.read)
    .await?;
    Ok(total.flatten().and_then(|t| u64::try_from(t).ok()))
}

async fn finish_in<'e>(db: impl sqlx::SqliteExecutor<'e>, id: i64, f: &Finished<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE runs SET status = ?, ended_at = ?, exit_code = ?, attempts = ?, message = ?, warning = ?, \
         files_total = ?, files_transferred = ?, total_size = ?, bytes_transferred = ?, bytes_received = ?, \
         files_created = ?, files_deleted = ?, log_tail = ?, pid = NULL, started_at = COALESCE(started_at, queued_at) WHERE id = ?",
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
    .execute(db)
    .await?;
    Ok(())
}

/// Keeps the newest `keep` finished runs of a project (a run under way is never removed).
pub async fn prune(db: &Db, project_id: &str, keep: usize) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM runs WHERE project_id = ?1 AND status NOT IN ('queued', 'running') \
         AND id < (SELECT MIN(id) FROM (SELECT id FROM runs WHERE project_id = ?1 ORDER BY id DESC LIMIT ?2))",
    )
    .bind(project_id)
    .bind(i64::try_from(keep).unwrap_or(i64::MAX))
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected())
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
pub async fn interrupt_unfinished(db: &Db) -> sqlx::Result<Vec<Unfinished>> {
    let mut tx = db.write.begin().await?;
    let rows: Vec<Unfinished> = sqlx::query_as(
        "SELECT runs.id, runs.pid, projects.dest FROM runs JOIN projects ON projects.id = runs.project_id \
         WHERE runs.status IN ('queued', 'running')",
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE runs SET status = 'interrupted', ended_at = ?, pid = NULL, \
         message = 'the master stopped during this run' WHERE status IN ('queued', 'running')",
    )
    .bind(super::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

pub async fn get(db: &Db, id: i64) -> sqlx::Result<Option<RunRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM runs WHERE id = ?")))
        .bind(id)
        .fetch_optional(&db.read)
        .await
}

/// Newest first.
pub async fn list(db: &Db, project_id: Option<&str>, limit: i64) -> sqlx::Result<Vec<RunRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LIST_COLUMNS} FROM runs WHERE (?1 IS NULL OR project_id = ?1) ORDER BY id DESC LIMIT ?2"
    )))
    .bind(project_id)
    .bind(limit)
    .fetch_all(&db.read)
    .await
}

/// The latest run of every project that has one.
pub async fn latest_per_project(db: &Db) -> sqlx::Result<Vec<RunRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LIST_COLUMNS} FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY project_id)"
    )))
    .fetch_all(&db.read)
    .await
}

/// When the project's latest successful run ended.
pub async fn last_success(db: &Db, project_id: &str) -> sqlx::Result<Option<Timestamp>> {
    sqlx::query_scalar(
        "SELECT MAX(ended_at) FROM runs WHERE project_id = ? AND status = 'success' AND ended_at IS NOT NULL",
    )
    .bind(project_id)
    .fetch_one(&db.read)
    .await
}

/// The tree's size and file count at the project's latest successful run (as rsync counted
/// them), when there is one.
pub async fn last_success_size(db: &Db, project_id: &str) -> sqlx::Result<Option<(Option<u64>, Option<u64>)>> {
    let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT total_size, files_total FROM runs WHERE project_id = ? AND status = 'success' ORDER BY id DESC LIMIT 1",
    )
    .bind(project_id)
    .fetch_optional(&db.read)
    .await?;
    Ok(row.map(|(size, files)| (size.and_then(|s| u64::try_from(s).ok()), files.and_then(|f| u64::try_from(f).ok()))))
}

/// (project, end time) of every project's latest successful run.
pub async fn last_success_per_project(db: &Db) -> sqlx::Result<Vec<(ProjectId, Timestamp)>> {
    sqlx::query_as(
        "SELECT project_id, MAX(ended_at) FROM runs WHERE status = 'success' AND ended_at IS NOT NULL \
         GROUP BY project_id",
    )
    .fetch_all(&db.read)
    .await
}

/// The latest run of each of `ids` that has one.
pub async fn latest_of(db: &Db, ids: &[ProjectId]) -> sqlx::Result<Vec<RunRow>> {
    let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LIST_COLUMNS} FROM runs WHERE id IN \
         (SELECT (SELECT MAX(id) FROM runs WHERE project_id = j.value) FROM json_each(?1) AS j)"
    )))
    .bind(ids)
    .fetch_all(&db.read)
    .await
}

/// (project, end time) of the latest successful run of each of `ids` that has one.
pub async fn last_success_of(db: &Db, ids: &[ProjectId]) -> sqlx::Result<Vec<(ProjectId, Timestamp)>> {
    let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query_as(
        "SELECT project_id, MAX(ended_at) FROM runs WHERE status = 'success' AND ended_at IS NOT NULL \
         AND project_id IN (SELECT value FROM json_each(?1)) GROUP BY project_id",
    )
    .bind(ids)
    .fetch_all(&db.read)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db_with_projects(dir: &std::path::Path, ids: &[&str]) -> Db {
        let db = crate::db::connect(&dir.join("t.db")).await.unwrap();
        for id in ids {
            sqlx::query(
                "INSERT INTO projects (id, project, id_derived, rsync_host, rsync_module, dest, rsync_options, \
                 created_at, updated_at) VALUES (?, ?, 1, 'h', 'm', ?, '{}', 'now', 'now')",
            )
            .bind(id)
            .bind(id)
            .bind(format!("/m/{id}"))
            .execute(&db.write)
            .await
            .unwrap();
        }
        db
    }

    #[tokio::test]
    async fn queued_runs_are_inserted_in_chunks_with_ids_in_order_and_a_missing_project_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..1200).map(|i| format!("p{i}")).collect();
        let mut ids: Vec<&str> = names.iter().map(String::as_str).collect();
        let db = db_with_projects(dir.path(), &ids).await;
        // One project that does not exist, in the middle of the second chunk.
        ids.insert(700, "gone");
        let typed: Vec<ProjectId> = ids.iter().map(|id| ProjectId::parse(*id).unwrap()).collect();
        let typed: Vec<&ProjectId> = typed.iter().collect();
        let results =
            insert_queued(&db, &typed, Trigger::Schedule, Some(Timestamp::parse("2026-01-01T00:00:00.000Z").unwrap()))
                .await;
        assert_eq!(results.len(), ids.len());
        for (project, result) in ids.iter().zip(&results) {
            match result {
                Ok(run_id) => {
                    let stored: String = sqlx::query_scalar("SELECT project_id FROM runs WHERE id = ?")
                        .bind(run_id)
                        .fetch_one(&db.read)
                        .await
                        .unwrap();
                    assert_eq!(&stored, project);
                }
                Err(e) => {
                    assert_eq!(*project, "gone");
                    assert!(matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation()), "{e}");
                }
            }
        }
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs").fetch_one(&db.read).await.unwrap();
        assert_eq!(count, 1200);
    }
}
