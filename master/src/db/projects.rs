//! Mirrored projects.

use mirror_common::Secret;
use mirror_common::cron::ScheduleSpec;
use mirror_common::names::{Host, ModulePath, Name, ProjectId};
use mirror_common::rsync_opts::RsyncOptions;
use mirror_common::time::Timestamp;

use super::{Db, Ex, now, on};

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
    /// The nodes that may run it (JSON); NULL: any node.
    pub node: Option<mirror_common::placement::Placement>,
    pub catch_up: bool,
    /// The last scheduled fire the master handled.
    pub last_fire_at: Option<Timestamp>,
    /// Bumped by each successful master run; slaves are brought to it.
    pub generation: i64,
}

const COLUMNS: &str = "id, project, id_derived, NULLIF(rsync_host, '') AS rsync_host, \
                       NULLIF(rsync_module, '') AS rsync_module, dest, rsync_password, schedule, \
                       rsync_options, enabled, created_at, updated_at, rsync_user, rsync_port, timeout_secs, \
                       catch_up, last_fire_at, generation, max_age_secs, version, managed_file, trace, targets, watch, max_delete, stages, flip, depends_on, probe, node";

pub async fn list(db: &Db) -> sqlx::Result<Vec<ProjectRow>> {
    list_in(&db.read).await
}

pub async fn list_in<'a>(ex: impl Into<Ex<'a>>) -> sqlx::Result<Vec<ProjectRow>> {
    on!(ex.into(), |c| {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM projects ORDER BY id")))
            .fetch_all(c)
            .await?;
        Ok(readable(&rows))
    })
}

/// The rows that read as projects. One that does not (a column written by hand that breaks its
/// type) is named in the log and left out: it must never take every listing, the scheduler or
/// the start down with it. `GET /projects/{id}` still names the fault for that one.
fn readable<R: sqlx::Row>(rows: &[R]) -> Vec<ProjectRow>
where
    ProjectRow: for<'r> sqlx::FromRow<'r, R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'s> &'s str: sqlx::ColumnIndex<R>,
{
    use sqlx::FromRow;
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
    let ids = super::json_list(ids)?;
    on!(&db.read, |c| {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM projects WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id"
        )))
        .bind(ids)
        .fetch_all(c)
        .await?;
        Ok(readable(&rows))
    })
}

pub async fn get<'a>(ex: impl Into<Ex<'a>>, id: &str) -> sqlx::Result<Option<ProjectRow>> {
    on!(ex.into(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM projects WHERE id = $1")))
            .bind(id)
            .fetch_optional(c)
            .await
    })
}

/// The fields an insert and an update both write, bound in the order of [`WRITTEN`].
const WRITTEN: &str = "id, project, id_derived, rsync_host, rsync_module, dest, rsync_password, schedule, \
                       rsync_options, enabled, rsync_user, rsync_port, timeout_secs, catch_up, max_age_secs, version, managed_file, trace, targets, watch, max_delete, stages, flip, depends_on, probe, node";

/// Binds the fields of [`WRITTEN`], in its order, to query `$q` (a macro: the query's type is
/// each engine's own).
macro_rules! bind_written {
    ($q:expr, $p:expr) => {{
        let p: &ProjectRow = $p;
        $q.bind(&p.id)
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
            .bind(&p.node)
    }};
}

/// `$1, $2, ... $n`.
fn placeholders(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("${i}")).collect()
}

/// What the project's probe held at its newest successful run (its SHA-256), if anything.
pub async fn probe_seen(db: &Db, id: &str) -> sqlx::Result<Option<String>> {
    let seen: Option<Option<String>> = on!(&db.read, |c| {
        sqlx::query_scalar("SELECT probe_seen FROM projects WHERE id = $1").bind(id).fetch_optional(c).await?
    });
    Ok(seen.flatten())
}

/// Keeps what the probe held before a successful run (`None`: forget it).
pub async fn set_probe_seen(db: &Db, id: &str, seen: Option<&str>) -> sqlx::Result<()> {
    on!(&db.write, |c| {
        sqlx::query("UPDATE projects SET probe_seen = $1 WHERE id = $2")
            .bind(seen)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(())
}

pub async fn insert<'a>(ex: impl Into<Ex<'a>>, p: &ProjectRow) -> sqlx::Result<()> {
    let columns = WRITTEN.split(',').count() + 2;
    let sql = format!(
        "INSERT INTO projects ({WRITTEN}, created_at, updated_at) VALUES ({})",
        placeholders(1, columns).join(", ")
    );
    on!(ex.into(), |c| {
        bind_written!(sqlx::query(sqlx::AssertSqlSafe(sql)), p)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Writes every field of `p` to the row that had id `old_id` (the id itself may change).
/// Returns false when there is no such row.
pub async fn update<'a>(ex: impl Into<Ex<'a>>, old_id: &str, p: &ProjectRow) -> sqlx::Result<bool> {
    let n = WRITTEN.split(',').count();
    let assignments: Vec<String> =
        WRITTEN.split(',').zip(placeholders(1, n)).map(|(c, at)| format!("{} = {at}", c.trim())).collect();
    let sql = format!("UPDATE projects SET {}, updated_at = ${} WHERE id = ${}", assignments.join(", "), n + 1, n + 2);
    let done = on!(ex.into(), |c| {
        bind_written!(sqlx::query(sqlx::AssertSqlSafe(sql)), p)
            .bind(now())
            .bind(old_id)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

pub async fn set_enabled(db: &Db, id: &str, enabled: bool) -> sqlx::Result<bool> {
    let done = on!(&db.write, |c| {
        sqlx::query("UPDATE projects SET enabled = $1, updated_at = $2 WHERE id = $3")
            .bind(enabled)
            .bind(now())
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

pub async fn remove<'a>(ex: impl Into<Ex<'a>>, id: &str) -> sqlx::Result<bool> {
    let done = on!(ex.into(), |c| {
        sqlx::query("DELETE FROM projects WHERE id = $1").bind(id).execute(c).await?.rows_affected()
    });
    Ok(done == 1)
}

/// A project, other than `own_id`, whose dest is `dest`, contains it, or lies inside it.
/// Three lookups in the `dest` index (equal; beneath: the range from `dest/` to `dest0`, `0`
/// being the byte after `/`; above: each of `dest`'s ancestors), not a scan of every project.
pub async fn overlapping_dest<'a>(
    ex: impl Into<Ex<'a>>,
    dest: &str,
    own_id: Option<&str>,
) -> sqlx::Result<Option<(String, String)>> {
    let ancestors: Vec<&str> =
        dest.match_indices('/').map(|(i, _)| &dest[..i]).filter(|a| !a.is_empty()).chain(["/"]).collect();
    let ancestors = super::json_list(&ancestors)?;
    on!(ex.into(), |c| {
        sqlx::query_as(
            "SELECT id, dest FROM ( \
               SELECT id, dest FROM projects WHERE dest = $1 \
               UNION ALL SELECT id, dest FROM projects WHERE dest >= $1 || '/' AND dest < $1 || '0' \
               UNION ALL SELECT id, dest FROM projects WHERE dest IN (SELECT value FROM json_each($3)) \
             ) AS found WHERE ($2 IS NULL OR id <> $2) LIMIT 1",
        )
        .bind(dest)
        .bind(own_id)
        .bind(ancestors)
        .fetch_optional(c)
        .await
    })
}

/// The projects that name `id` in their `depends_on` (`enabled_only`: those that would run).
pub async fn dependents<'a>(ex: impl Into<Ex<'a>>, id: &str, enabled_only: bool) -> sqlx::Result<Vec<ProjectId>> {
    on!(ex.into(), |c| {
        sqlx::query_scalar(
            "SELECT id FROM projects WHERE depends_on <> '[]' AND (NOT $2 OR enabled) \
             AND EXISTS (SELECT 1 FROM json_each(depends_on) AS d WHERE d.value = $1) ORDER BY id",
        )
        .bind(id)
        .bind(enabled_only)
        .fetch_all(c)
        .await
    })
}

/// Of `ids`, those that exist, each with whether it has a local source (it never runs).
pub async fn kinds_of<'a>(
    ex: impl Into<Ex<'a>>,
    ids: &[ProjectId],
) -> sqlx::Result<std::collections::HashMap<ProjectId, bool>> {
    let ids = super::json_list(ids)?;
    let rows: Vec<(ProjectId, bool)> = on!(ex.into(), |c| {
        sqlx::query_as("SELECT id, rsync_host = '' FROM projects WHERE id IN (SELECT value FROM json_each($1))")
            .bind(ids)
            .fetch_all(c)
            .await?
    });
    Ok(rows.into_iter().collect())
}

/// Every project that depends on another, with what it names.
pub async fn dependency_graph<'a>(ex: impl Into<Ex<'a>>) -> sqlx::Result<mirror_common::depends::Graph> {
    let rows: Vec<(ProjectId, mirror_common::depends::DependsOn)> = on!(ex.into(), |c| {
        sqlx::query_as("SELECT id, depends_on FROM projects WHERE depends_on <> '[]'").fetch_all(c).await?
    });
    Ok(rows.into_iter().map(|(id, d)| (id, d.0)).collect())
}

/// Records the scheduled fire the master has just handled.
pub async fn set_last_fire(db: &Db, id: &str, at: Timestamp) -> sqlx::Result<()> {
    on!(&db.write, |c| {
        sqlx::query("UPDATE projects SET last_fire_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// A new generation after a successful run; returns the project as it now is.
pub async fn bump_generation<'a>(ex: impl Into<Ex<'a>>, id: &str) -> sqlx::Result<Option<ProjectRow>> {
    on!(ex.into(), |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE projects SET generation = generation + 1 WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .fetch_optional(c)
        .await
    })
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
        node: None,
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
        for (backend, db) in crate::db::testing::each_backend(dir.path()).await {
            overlaps_on(backend, db).await;
        }
    }

    async fn overlaps_on(backend: &str, db: Db) {
        for (id, dest) in [("b", "/m/a/b"), ("pct", "/m/x%_y")] {
            crate::db::testing::add_project(&db, id, dest).await;
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
            assert_eq!(found(neighbour, None).await, None, "{backend}: {neighbour}");
        }
        assert_eq!(found("/m/x%_y/z", None).await.as_deref(), Some("pct"), "wildcard characters are literal");
    }
}
