//! Mirrored projects.

use mirror_common::Secret;
use mirror_common::cron::ScheduleSpec;
use mirror_common::names::{Host, ModulePath, Name, ProjectId};
use mirror_common::rsync_opts::RsyncOptions;
use mirror_common::time::Timestamp;

use super::{Db, now};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    pub id: ProjectId,
    pub project: String,
    pub id_derived: bool,
    /// `None` (stored as `''`) with `rsync_module`: a local source.
    pub rsync_host: Option<Host>,
    pub rsync_module: Option<ModulePath>,
    pub dest: String,
    pub rsync_password: Option<Secret>,
    /// Stored as JSON; NULL for manual-only.
    pub schedule: Option<ScheduleSpec>,
    /// Stored as JSON.
    pub rsync_options: RsyncOptions,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub rsync_user: Option<Name>,
    pub rsync_port: Option<i64>,
    /// NULL: the master's default timeout.
    pub timeout_secs: Option<i64>,
    /// NULL: the master's `stale_after_secs`.
    pub max_age_secs: Option<i64>,
    /// The version of this configuration: its newest commit in `config_commits`.
    pub version: i64,
    /// The file of `projects_dir` that declares it; `None`: managed through the API.
    pub managed_file: Option<String>,
    /// Writes `project/trace/<mirror_name>` (ftpsync's format) after each successful run.
    pub trace: bool,
    /// NULL: the master's `max_delete`.
    pub max_delete: Option<mirror_common::guards::MaxDelete>,
    /// Two-stage sync, stored as JSON; NULL: one stage.
    pub stages: Option<mirror_common::stages::Stages>,
    /// Slaves stage each generation and flip to it together.
    pub flip: bool,
    /// Object-store targets, stored as JSON.
    pub targets: mirror_common::targets::Targets,
    /// The tree is watched: changed files go to the targets as they change.
    pub watch: bool,
    /// Each successful run of these projects is followed by a run of this one (JSON).
    pub depends_on: mirror_common::depends::DependsOn,
    /// A small upstream file fetched alone before each run; unchanged since the last success: no run.
    pub probe: Option<String>,
    pub catch_up: bool,
    /// The last scheduled fire the master handled.
    pub last_fire_at: Option<Timestamp>,
    /// Bumped by each successful master run; slaves are brought to it.
    pub generation: i64,
}

const COLUMNS: &str = "id, project, id_derived, NULLIF(rsync_host, '') AS rsync_host, \
                       NULLIF(rsync_module, '') AS rsync_module, dest, rsync_password, schedule, \
                       rsync_options, enabled, created_at, updated_at, rsync_user, rsync_port, timeout_secs, \
                       catch_up, last_fire_at, generation, max_age_secs, version, managed_file, trace, targets, watch, max_delete, stages, flip, depends_on, probe";

pub async fn list(db: &Db) -> sqlx::Result<Vec<ProjectRow>> {
    list_in(&db.read).await
}

pub async fn list_in<'e>(db: impl sqlx::SqliteExecutor<'e>) -> sqlx::Result<Vec<ProjectRow>> {
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM projects ORDER BY id"))).fetch_all(db).await?;
    Ok(readable(&rows))
}

/// The rows that read as projects. One that does not (a column written by hand that breaks its
/// type) is named in the log and left out: it must never take every listing, the scheduler or
/// the start down with it. `GET /projects/{id}` still names the fault for that one.
fn readable(rows: &[sqlx::sqlite::SqliteRow]) -> Vec<ProjectRow> {
    use sqlx::{FromRow, Row};
    rows.iter()
        .filter_map(|row| match ProjectRow::from_row(row) {
            Ok(p) => Some(p),
            Err(e) => {
                let id: Option<String> = row.try_get("id").ok();
                tracing::error!(
                    project.id = id.as_deref().unwrap_or("?"), error = %e,
                    "a project's row cannot be read: left out (fix or remove it)"
                );
                None
            }
        })
        .collect()
}

/// The projects among `ids` that exist (a JSON array bound once, whatever the number of ids).
pub async fn list_some(db: &Db, ids: &[ProjectId]) -> sqlx::Result<Vec<ProjectRow>> {
    let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projects WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id"
    )))
    .bind(ids)
    .fetch_all(&db.read)
    .await?;
    Ok(readable(&rows))
}

pub async fn get<'e>(db: impl sqlx::SqliteExecutor<'e>, id: &str) -> sqlx::Result<Option<ProjectRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM projects WHERE id = ?")))
        .bind(id)
        .fetch_optional(db)
        .await
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// The fields an insert and an update both write, bound in the order of [`WRITTEN`].
const WRITTEN: &str = "id, project, id_derived, rsync_host, rsync_module, dest, rsync_password, schedule, \
                       rsync_options, enabled, rsync_user, rsync_port, timeout_secs, catch_up, max_age_secs, version, managed_file, trace, targets, watch, max_delete, stages, flip, depends_on, probe";

fn bind_written<'q>(q: Query<'q>, p: &ProjectRow) -> Query<'q> {
    q.bind(&p.id)
        .bind(&p.project)
        .bind(p.id_derived)
        // The columns are NOT NULL (since 0001): a local source's are ''.
        .bind(p.rsync_host.as_ref().map_or("", |h| h.as_str()))
        .bind(p.rsync_module.as_ref().map_or("", |m| m.as_str()))
        .bind(&p.dest)
        .bind(&p.rsync_password)
        .bind(&p.schedule)
        .bind(&p.rsync_options)
        .bind(p.enabled)
        .bind(&p.rsync_user)
        .bind(p.rsync_port)
        .bind(p.timeout_secs)
        .bind(p.catch_up)
        .bind(p.max_age_secs)
        .bind(p.version)
        .bind(&p.managed_file)
        .bind(p.trace)
        .bind(&p.targets)
        .bind(p.watch)
        .bind(p.max_delete)
        .bind(&p.stages)
        .bind(p.flip)
        .bind(&p.depends_on)
        .bind(&p.probe)
}

/// What the project's probe held at its newest successful run (its SHA-256), if anything.
pub async fn probe_seen(db: &Db, id: &str) -> sqlx::Result<Option<String>> {
    let seen: Option<Option<String>> =
        sqlx::query_scalar("SELECT probe_seen FROM projects WHERE id = ?").bind(id).fetch_optional(&db.read).await?;
    Ok(seen.flatten())
}

/// Keeps what the probe held before a successful run (`None`: forget it).
pub async fn set_probe_seen(db: &Db, id: &str, seen: Option<&str>) -> sqlx::Result<()> {
    sqlx::query("UPDATE projects SET probe_seen = ? WHERE id = ?").bind(seen).bind(id).execute(&db.write).await?;
    Ok(())
}

pub async fn insert<'e>(db: impl sqlx::SqliteExecutor<'e>, p: &ProjectRow) -> sqlx::Result<()> {
    let placeholders = vec!["?"; WRITTEN.split(',').count() + 2].join(", ");
    let sql = format!("INSERT INTO projects ({WRITTEN}, created_at, updated_at) VALUES ({placeholders})");
    bind_written(sqlx::query(sqlx::AssertSqlSafe(sql)), p).bind(p.created_at).bind(p.updated_at).execute(db).await?;
    Ok(())
}

/// Writes every field of `p` to the row that had id `old_id` (the id itself may change).
/// Returns false when there is no such row.
pub async fn update<'e>(db: impl sqlx::SqliteExecutor<'e>, old_id: &str, p: &ProjectRow) -> sqlx::Result<bool> {
    let assignments: Vec<String> = WRITTEN.split(',').map(|c| format!("{} = ?", c.trim())).collect();
    let sql = format!("UPDATE projects SET {}, updated_at = ? WHERE id = ?", assignments.join(", "));
    let done = bind_written(sqlx::query(sqlx::AssertSqlSafe(sql)), p).bind(now()).bind(old_id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_enabled(db: &Db, id: &str, enabled: bool) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE projects SET enabled = ?, updated_at = ? WHERE id = ?")
        .bind(enabled)
        .bind(now())
        .bind(id)
        .execute(&db.write)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn remove<'e>(db: impl sqlx::SqliteExecutor<'e>, id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM projects WHERE id = ?").bind(id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// A project, other than `own_id`, whose dest is `dest`, contains it, or lies inside it.
/// Three lookups in the `dest` index (equal; beneath: the range from `dest/` to `dest0`, `0`
/// being the byte after `/`; above: each of `dest`'s ancestors), not a scan of every project.
pub async fn overlapping_dest<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    dest: &str,
    own_id: Option<&str>,
) -> sqlx::Result<Option<(String, String)>> {
    let ancestors: Vec<&str> =
        dest.match_indices('/').map(|(i, _)| &dest[..i]).filter(|a| !a.is_empty()).chain(["/"]).collect();
    let ancestors = serde_json::to_string(&ancestors).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query_as(
        "SELECT id, dest FROM ( \
           SELECT id, dest FROM projects WHERE dest = ?1 \
           UNION ALL SELECT id, dest FROM projects WHERE dest >= ?1 || '/' AND dest < ?1 || '0' \
           UNION ALL SELECT id, dest FROM projects WHERE dest IN (SELECT value FROM json_each(?3)) \
         ) WHERE (?2 IS NULL OR id <> ?2) LIMIT 1",
    )
    .bind(dest)
    .bind(own_id)
    .bind(ancestors)
    .fetch_optional(db)
    .await
}

/// The projects that name `id` in their `depends_on` (`enabled_only`: those that would run).
pub async fn dependents<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    id: &str,
    enabled_only: bool,
) -> sqlx::Result<Vec<ProjectId>> {
    sqlx::query_scalar(
        "SELECT id FROM projects WHERE depends_on <> '[]' AND (?2 = 0 OR enabled = 1) \
         AND EXISTS (SELECT 1 FROM json_each(depends_on) WHERE value = ?1) ORDER BY id",
    )
    .bind(id)
    .bind(enabled_only)
    .fetch_all(db)
    .await
}

/// Of `ids`, those that exist, each with whether it has a local source (it never runs).
pub async fn kinds_of<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    ids: &[ProjectId],
) -> sqlx::Result<std::collections::HashMap<ProjectId, bool>> {
    let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let rows: Vec<(ProjectId, bool)> =
        sqlx::query_as("SELECT id, rsync_host = '' FROM projects WHERE id IN (SELECT value FROM json_each(?1))")
            .bind(ids)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Every project that depends on another, with what it names.
pub async fn dependency_graph<'e>(db: impl sqlx::SqliteExecutor<'e>) -> sqlx::Result<mirror_common::depends::Graph> {
    let rows: Vec<(ProjectId, mirror_common::depends::DependsOn)> =
        sqlx::query_as("SELECT id, depends_on FROM projects WHERE depends_on <> '[]'").fetch_all(db).await?;
    Ok(rows.into_iter().map(|(id, d)| (id, d.0)).collect())
}

/// Records the scheduled fire the master has just handled.
pub async fn set_last_fire(db: &Db, id: &str, at: Timestamp) -> sqlx::Result<()> {
    sqlx::query("UPDATE projects SET last_fire_at = ? WHERE id = ?").bind(at).bind(id).execute(&db.write).await?;
    Ok(())
}

/// A successful run: the project's content has a new generation. Returns it.
/// A new generation after a successful run; returns the project as it now is.
pub async fn bump_generation<'e>(db: impl sqlx::SqliteExecutor<'e>, id: &str) -> sqlx::Result<Option<ProjectRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE projects SET generation = generation + 1 WHERE id = ? RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// A project row (for unit tests, and as the base a stored configuration is put on): `fedora`, from rsync.example.org::fedora/linux into
/// /srv/mirror/fedora, `-avH --no-motd --delete`.
pub fn sample() -> ProjectRow {
    ProjectRow {
        id: mirror_common::api::ProjectId::from_static("fedora"),
        project: "fedora".into(),
        id_derived: true,
        rsync_host: Some(mirror_common::api::Host::from_static("rsync.example.org")),
        rsync_module: Some(mirror_common::api::ModulePath::from_static("fedora/linux")),
        dest: "/srv/mirror/fedora".into(),
        rsync_password: None,
        schedule: None,
        rsync_options: mirror_common::rsync_opts::RsyncOptions {
            defaults: vec!["-avH".into()],
            basic: vec!["--no-motd".into()],
            delete: Some("--delete".into()),
        },
        enabled: true,
        created_at: mirror_common::time::Timestamp::now(),
        updated_at: mirror_common::time::Timestamp::now(),
        rsync_user: None,
        rsync_port: None,
        timeout_secs: None,
        max_age_secs: None,
        version: 1,
        managed_file: None,
        trace: false,
        targets: Default::default(),
        watch: false,
        max_delete: None,
        stages: None,
        flip: false,
        depends_on: Default::default(),
        probe: None,
        catch_up: false,
        last_fire_at: None,
        generation: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlaps_are_found_through_the_index_and_neighbours_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::connect(&dir.path().join("t.db")).await.unwrap();
        for (id, dest) in [("b", "/m/a/b"), ("pct", "/m/x%_y")] {
            sqlx::query(
                "INSERT INTO projects (id, project, id_derived, rsync_host, rsync_module, dest, rsync_options, \
                 created_at, updated_at) VALUES (?, ?, 1, 'h', 'm', ?, '{}', 'now', 'now')",
            )
            .bind(id)
            .bind(id)
            .bind(dest)
            .execute(&db.write)
            .await
            .unwrap();
        }
        let found = |dest: &'static str, own: Option<&'static str>| {
            let db = db.clone();
            async move { overlapping_dest(&db.read, dest, own).await.unwrap().map(|(id, _)| id) }
        };
        assert_eq!(found("/m/a/b", None).await.as_deref(), Some("b"), "equal");
        assert_eq!(found("/m/a", None).await.as_deref(), Some("b"), "contains it");
        assert_eq!(found("/m", None).await.as_deref(), Some("b"), "contains it, higher up");
        assert_eq!(found("/m/a/b/c/d", None).await.as_deref(), Some("b"), "inside it");
        assert_eq!(found("/m/a/b", Some("b")).await, None, "its own dest");
        for neighbour in ["/m/a/bc", "/m/a/b0", "/m/a/c", "/m/a/b.", "/m/xy", "/m/x%_"] {
            assert_eq!(found(neighbour, None).await, None, "{neighbour}");
        }
        assert_eq!(found("/m/x%_y/z", None).await.as_deref(), Some("pct"), "wildcard characters are literal");
    }
}
