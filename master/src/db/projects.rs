//! Mirrored projects.

use mirror_common::Secret;
use mirror_common::names::{Port, ProjectId};
use mirror_common::project::ProjectConfig;
use mirror_common::time::Timestamp;

use super::{Db, Ex, now, on};

/// A project as stored: its configuration, its password, and what writes and runs keep.
#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub config: ProjectConfig,
    pub rsync_password: Option<Secret>,
    /// The passwords of `config.more_upstreams`, one each (an entry may have none).
    pub more_passwords: Vec<Option<Secret>>,
    /// The version of this configuration: its newest commit in `config_commits`.
    pub version: i64,
    /// The file of `projects_dir` that declares it; `None`: managed through the API.
    pub managed_file: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The last scheduled fire the master handled.
    pub last_fire_at: Option<Timestamp>,
    /// Bumped by each successful master run; slaves are brought to it.
    pub generation: i64,
}

impl ProjectRow {
    /// A project not yet stored (version 0, generation 0, made now).
    pub fn new(config: ProjectConfig, rsync_password: Option<Secret>) -> Self {
        let stamp = now();
        let more_passwords = vec![None; config.more_upstreams.len()];
        ProjectRow {
            config,
            rsync_password,
            more_passwords,
            version: 0,
            managed_file: None,
            created_at: stamp,
            updated_at: stamp,
            last_fire_at: None,
            generation: 0,
        }
    }
}

impl std::ops::Deref for ProjectRow {
    type Target = ProjectConfig;
    fn deref(&self) -> &ProjectConfig {
        &self.config
    }
}

impl std::ops::DerefMut for ProjectRow {
    fn deref_mut(&mut self) -> &mut ProjectConfig {
        &mut self.config
    }
}

/// An integer column read as the unsigned or narrower type the configuration holds.
fn narrowed<T: TryFrom<i64>>(column: &str, value: Option<i64>) -> sqlx::Result<Option<T>> {
    value
        .map(|v| {
            T::try_from(v).map_err(|_| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: format!("{v} is out of range").into(),
            })
        })
        .transpose()
}

/// A JSON text column read as `T` (`None` when NULL).
fn json_column<T: serde::de::DeserializeOwned>(text: Option<String>, column: &str) -> sqlx::Result<Option<T>> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) })
    })
    .transpose()
}

/// The passwords of the more upstreams as stored: a JSON list of a string or null each (`None`
/// when there are none).
fn more_passwords_text(p: &ProjectRow) -> Option<String> {
    let exposed: Vec<Option<&str>> = p.more_passwords.iter().map(|s| s.as_ref().map(Secret::expose)).collect();
    (!p.more_upstreams.is_empty()).then(|| serde_json::to_string(&exposed).unwrap_or_else(|_| "[]".into()))
}

/// Reads a row of [`COLUMNS`] (for each engine: the row type differs, the reading does not).
macro_rules! project_from_row {
    ($row:ty) => {
        impl sqlx::FromRow<'_, $row> for ProjectRow {
            fn from_row(r: &$row) -> sqlx::Result<Self> {
                use sqlx::Row;
                let port: Option<i64> = r.try_get("rsync_port")?;
                let config = ProjectConfig {
                    id: r.try_get("id")?,
                    project: r.try_get("project")?,
                    id_derived: r.try_get("id_derived")?,
                    rsync_host: r.try_get("rsync_host")?,
                    rsync_module: r.try_get("rsync_module")?,
                    dest: r.try_get("dest")?,
                    rsync_user: r.try_get("rsync_user")?,
                    rsync_port: narrowed::<u16>("rsync_port", port)?.map(Port),
                    schedule: r.try_get("schedule")?,
                    interval: r.try_get("interval_options")?,
                    rsync_options: r.try_get("rsync_options")?,
                    enabled: r.try_get("enabled")?,
                    timeout_secs: narrowed("timeout_secs", r.try_get("timeout_secs")?)?,
                    catch_up: r.try_get("catch_up")?,
                    max_age_secs: narrowed("max_age_secs", r.try_get("max_age_secs")?)?,
                    trace: r.try_get("trace")?,
                    max_delete: r.try_get("max_delete")?,
                    stages: r.try_get("stages")?,
                    flip: r.try_get("flip")?,
                    targets: r.try_get("targets")?,
                    watch: r.try_get("watch")?,
                    depends_on: r.try_get("depends_on")?,
                    probe: r.try_get("probe")?,
                    freshness: r.try_get("freshness")?,
                    trace_epoch_file: r.try_get("trace_epoch_file")?,
                    node: r.try_get("node")?,
                    hooks: r.try_get("hooks")?,
                    source: r.try_get("source")?,
                    more_upstreams: json_column(r.try_get("more_upstreams")?, "more_upstreams")?.unwrap_or_default(),
                };
                let passwords: Option<Vec<Option<String>>> =
                    json_column(r.try_get("more_upstream_passwords")?, "more_upstream_passwords")?;
                let mut more_passwords: Vec<Option<Secret>> =
                    passwords.unwrap_or_default().into_iter().map(|p| p.map(Secret::new)).collect();
                more_passwords.resize(config.more_upstreams.len(), None);
                Ok(ProjectRow {
                    config,
                    rsync_password: r.try_get("rsync_password")?,
                    more_passwords,
                    version: r.try_get("version")?,
                    managed_file: r.try_get("managed_file")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                    last_fire_at: r.try_get("last_fire_at")?,
                    generation: r.try_get("generation")?,
                })
            }
        }
    };
}

project_from_row!(sqlx::sqlite::SqliteRow);
project_from_row!(sqlx::postgres::PgRow);

const COLUMNS: &str = "id, project, id_derived, NULLIF(rsync_host, '') AS rsync_host, \
                       NULLIF(rsync_module, '') AS rsync_module, dest, rsync_password, schedule, \
                       interval_options, rsync_options, enabled, created_at, updated_at, rsync_user, rsync_port, timeout_secs, \
                       catch_up, last_fire_at, generation, max_age_secs, version, managed_file, trace, targets, watch, max_delete, stages, flip, depends_on, probe, freshness, trace_epoch_file, node, more_upstreams, more_upstream_passwords, hooks, source";

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
                       interval_options, rsync_options, enabled, rsync_user, rsync_port, timeout_secs, catch_up, max_age_secs, version, managed_file, trace, targets, watch, max_delete, stages, flip, depends_on, probe, freshness, trace_epoch_file, node, more_upstreams, \
                       more_upstream_passwords, hooks, source";

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
            .bind(&p.interval)
            .bind(&p.rsync_options)
            .bind(p.enabled)
            .bind(&p.rsync_user)
            .bind(p.rsync_port.map(|port| i64::from(port.0)))
            .bind(p.timeout_secs.map(super::clamp_i64))
            .bind(p.catch_up)
            .bind(p.max_age_secs.map(super::clamp_i64))
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
            .bind(p.freshness)
            .bind(&p.trace_epoch_file)
            .bind(&p.node)
            .bind((!p.more_upstreams.is_empty()).then(|| serde_json::to_string(&p.more_upstreams).unwrap_or_default()))
            .bind(more_passwords_text(p))
            .bind(&p.hooks)
            .bind(&p.source)
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

/// Keeps the SHA-256 (hex) of a project's new trigger token; `false` when there is no such project.
pub async fn set_trigger_token(db: &Db, id: &str, hash: &str) -> sqlx::Result<bool> {
    let done = on!(&db.write, |c| {
        sqlx::query("UPDATE projects SET trigger_token = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

/// The SHA-256 (hex) of the project's trigger token, if there is such a project and it has one.
pub async fn trigger_token(db: &Db, id: &str) -> sqlx::Result<Option<String>> {
    let hash: Option<Option<String>> = on!(&db.read, |c| {
        sqlx::query_scalar("SELECT trigger_token FROM projects WHERE id = $1").bind(id).fetch_optional(c).await?
    });
    Ok(hash.flatten())
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
    let config = ProjectConfig {
        id: ProjectId::from_static("fedora"),
        project: "fedora".into(),
        id_derived: true,
        rsync_host: Some(mirror_common::api::Host::from_static("rsync.example.org")),
        rsync_module: Some(mirror_common::api::ModulePath::from_static("fedora/linux")),
        dest: mirror_common::api::Dest::from_static("/srv/mirror/fedora"),
        rsync_user: None,
        rsync_port: None,
        schedule: None,
        interval: None,
        rsync_options: mirror_common::rsync_opts::RsyncOptions {
            defaults: vec!["-avH".into()],
            basic: vec!["--no-motd".into()],
            delete: Some("--delete".into()),
        },
        enabled: true,
        timeout_secs: None,
        catch_up: false,
        max_age_secs: None,
        trace: false,
        max_delete: None,
        stages: None,
        flip: false,
        targets: Default::default(),
        watch: false,
        depends_on: Default::default(),
        probe: None,
        freshness: false,
        trace_epoch_file: None,
        node: None,
        more_upstreams: Vec::new(),
        hooks: Default::default(),
        source: Default::default(),
    };
    ProjectRow { version: 1, ..ProjectRow::new(config, None) }
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
