//! The projects service: the only place that applies the rules of a project (ids, names, hosts,
//! modules, dest, schedule, options), writes it in one transaction, and publishes the change. The
//! HTTP handlers parse, call one function here, and render.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mirror_common::Secret;
use mirror_common::api::{AddProject, Port, UpdateProjectBasic};
use mirror_common::cron::{CronOptions, Schedule, ScheduleSpec};
use mirror_common::names::ProjectId;
use mirror_common::rsync_opts::{RsyncOptions, RsyncOptionsInput};

use crate::db::{self, Db, projects::ProjectRow};
use crate::error::Error;
use crate::events::{Change, Committed, Events};
use crate::service::history::{Meta, PASSWORD_REPLACED, StoredProject, carried_password, password_replaced};

/// The kind of a project's commits.
pub const KIND: &str = "project";
use crate::paths::resolve_dest;

const MAX_TEXT: usize = 1024;

fn check_text(field: &'static str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::field(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(Error::field(field, "is too long or contains a control character"));
    }
    Ok(())
}

/// A project's name as its id, when it can be one.
fn derived_id(project: &str, why_not: &'static str) -> Result<ProjectId, Error> {
    ProjectId::parse(project).map_err(|_| Error::field("project", why_not))
}

/// A probe is a path in the upstream's module: relative, without `..`, at most 512 characters, no
/// control character, not starting with `-` (it becomes part of one rsync source URL). `""`: none.
fn check_probe(probe: Option<String>) -> Result<Option<String>, Error> {
    let Some(p) = probe.filter(|p| !p.is_empty()) else { return Ok(None) };
    let bad = p.len() > 512
        || p.starts_with(['/', '-'])
        || p.ends_with('/')
        || p.chars().any(|c| c.is_control() || c == '\\')
        || p.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(Error::field(
            "probe",
            "must be a file's path relative to the upstream module (no '..', no leading '/' or '-')",
        ));
    }
    Ok(Some(p))
}

/// Object-store targets name where the master sends a tree with a site's credentials: only root
/// (or the master's own files) may set or change them. A `user` may change the rest of a project
/// that has targets, leaving them as they are.
fn check_targets_role(meta: &Meta, old: Option<&ProjectRow>, row: &ProjectRow) -> Result<(), Error> {
    let before = old.map(|o| &o.targets);
    let changed = match before {
        Some(t) => *t != row.targets,
        None => !row.targets.is_empty(),
    };
    if changed && !meta.root {
        return Err(Error::Forbidden("setting or changing a project's targets needs the root role"));
    }
    Ok(())
}

fn check_password(password: Option<Secret>) -> Result<Option<Secret>, Error> {
    match password {
        Some(p) if p.expose().is_empty() => Ok(None),
        Some(p) if p.expose().len() > MAX_TEXT || p.expose().contains(['\0', '\n', '\r']) => {
            Err(Error::field("rsync_password", "is too long or contains a newline or NUL"))
        }
        other => Ok(other),
    }
}

fn check_timeout(secs: Option<u64>) -> Result<Option<i64>, Error> {
    match secs {
        Some(s) if !(1..=7 * 24 * 3600).contains(&s) => {
            Err(Error::field("timeout_secs", "must be between 1 and 604800 (a week)"))
        }
        Some(s) => Ok(Some(s as i64)),
        None => Ok(None),
    }
}

fn check_max_age(secs: Option<u64>) -> Result<Option<i64>, Error> {
    match secs {
        Some(s) if !(1..=366 * 24 * 3600).contains(&s) => {
            Err(Error::field("max_age_secs", "must be between 1 and 31622400 (a year)"))
        }
        Some(s) => Ok(Some(s as i64)),
        None => Ok(None),
    }
}

/// An upstream is a host and a module; a project with neither has a local source, and then
/// nothing that only an upstream needs (a login, a port, a schedule to run it on).
pub(super) fn check_upstream(row: &ProjectRow) -> Result<(), Error> {
    match (&row.rsync_host, &row.rsync_module) {
        (Some(_), Some(_)) => Ok(()),
        (Some(_), None) => Err(Error::field("rsync_module", "missing: an upstream needs rsync_host and rsync_module")),
        (None, Some(_)) => Err(Error::field("rsync_host", "missing: an upstream needs rsync_host and rsync_module")),
        (None, None) => {
            let local = "a project with a local source (no rsync_host and rsync_module) has no upstream";
            let needless = [
                ("rsync_password", row.rsync_password.is_some()),
                ("rsync_user", row.rsync_user.is_some()),
                ("rsync_port", row.rsync_port.is_some()),
                ("cron_options", row.schedule.is_some()),
                ("depends_on", !row.depends_on.is_empty()),
            ];
            match needless.into_iter().find(|(_, given)| *given) {
                Some((field, _)) => Err(Error::field(field, format!("{local} to use it with"))),
                None => Ok(()),
            }
        }
    }
}

fn check_stages(stages: Option<mirror_common::stages::Stages>) -> Result<Option<mirror_common::stages::Stages>, Error> {
    if let Some(s) = &stages {
        s.check().map_err(|(field, message)| Error::field(field, message))?;
    }
    Ok(stages)
}

/// `depends_on` against the other projects, in the write's transaction: each it names exists and
/// is run (not a local source), and following them never leads back to `row`.
async fn check_references(mut tx: &mut crate::db::Tx, row: &ProjectRow) -> Result<(), Error> {
    row.depends_on.check(&row.id).map_err(|(field, message)| Error::field(field, message))?;
    if row.depends_on.is_empty() {
        return Ok(());
    }
    let found = db::projects::kinds_of(&mut tx, &row.depends_on).await?;
    for (i, dep) in row.depends_on.iter().enumerate() {
        match found.get(dep) {
            None => return Err(Error::field(format!("depends_on[{i}]"), format!("no project with id '{dep}'"))),
            Some(true) => {
                return Err(Error::field(
                    format!("depends_on[{i}]"),
                    format!("'{dep}' has a local source: it never runs, so nothing would follow it"),
                ));
            }
            Some(false) => {}
        }
    }
    let mut graph = db::projects::dependency_graph(&mut tx).await?;
    graph.insert(row.id.clone(), row.depends_on.0.clone());
    if let Some(cycle) = mirror_common::depends::cycle_through(&graph, &row.id) {
        return Err(Error::field("depends_on", format!("would make a cycle: {cycle}")));
    }
    Ok(())
}

/// A project others depend on keeps its id: removing or renaming it is refused, naming them.
async fn check_no_dependents(mut tx: &mut crate::db::Tx, id: &ProjectId, doing: &str) -> Result<(), Error> {
    let dependents = db::projects::dependents(&mut tx, id.as_str(), false).await?;
    if dependents.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = dependents.iter().map(|d| format!("'{d}'")).collect();
    Err(Error::conflict(
        "id",
        format!(
            "{} depend on '{id}': {doing} it would leave them naming nothing; change their depends_on first",
            names.join(", ")
        ),
    ))
}

fn port_column(port: Option<Port>) -> Option<i64> {
    port.map(|p| i64::from(p.0))
}

/// Resolves `dest` under the mirror root (symlinks and all); the overlap with other projects is
/// checked in the write's transaction.
async fn resolve(mirror_root: &std::path::Path, dest: &str) -> Result<String, Error> {
    let resolved = resolve_dest(mirror_root, dest).await?;
    resolved.into_os_string().into_string().map_err(|_| Error::field("dest", "is not valid UTF-8"))
}

/// Refuses a dest that is, contains, or lies inside another project's.
async fn check_overlap(mut tx: &mut crate::db::Tx, dest: &str, own_id: Option<&str>) -> Result<(), Error> {
    if let Some((id, _)) = db::projects::overlapping_dest(&mut tx, dest, own_id).await? {
        return Err(Error::conflict("dest", format!("{dest} overlaps the dest of project '{id}'")));
    }
    Ok(())
}

/// Validates client cron options; `None` when they name no schedule at all (manual runs only).
/// Compiling a schedule and searching its next fire is CPU work: it runs off the async workers.
async fn schedule_from(opts: Option<CronOptions>, now: DateTime<Utc>) -> Result<Option<ScheduleSpec>, Error> {
    let Some(opts) = opts else { return Ok(None) };
    tokio::task::spawn_blocking(move || check_schedule(&opts, now)).await.map_err(|e| Error::Internal(e.into()))?
}

fn check_schedule(opts: &CronOptions, now: DateTime<Utc>) -> Result<Option<ScheduleSpec>, Error> {
    let no_dates = opts.start_date.is_none() && opts.end_date.is_none() && opts.timezone.is_none();
    if opts.has_no_time_field() && no_dates {
        return Ok(None);
    }
    let schedule = Schedule::from_options(opts)?;
    if schedule.next_fire_at_or_after(now).is_none() {
        return Err(Error::field(
            "cron_options",
            "this schedule never fires from now on (check year, day, month and end_date)",
        ));
    }
    Ok(Some(schedule.spec().clone()))
}

pub(super) fn store_error(e: sqlx::Error, id: &str) -> Error {
    if db::is_unique_violation(&e) {
        return Error::conflict("id", format!("a project with id '{id}' or the same dest already exists"));
    }
    e.into()
}

/// What the projects service needs: the database, where trees may go, whether runs are confined
/// (which options are allowed), and whom to tell.
#[derive(Clone)]
pub struct Projects {
    pub db: Db,
    pub mirror_root: PathBuf,
    pub confined: bool,
    pub events: Arc<Events>,
    /// The `[[s3_credentials]]` names of the master's configuration: a target must name one.
    /// The `[[s3_credentials]]` entries: a target may name one only with an endpoint (and bucket) it lists.
    pub credentials: Arc<Vec<crate::config::S3Credentials>>,
}

fn not_found(id: &str) -> Error {
    Error::not_found("id", format!("no project with id '{}'", id.escape_debug()))
}

/// A write transaction that takes SQLite's write lock at once, so that the checks it makes (an id
/// free, a dest not overlapping) still hold when it writes: no other write can come between.
/// A project declared by a file of `projects_dir` is changed in its file, not through the API.
pub(super) fn check_not_managed(p: &ProjectRow) -> Result<(), Error> {
    match &p.managed_file {
        Some(file) => Err(Error::conflict(
            "id",
            format!("project '{}' is declared by {file} in projects_dir: edit that file and reload", p.id),
        )),
        None => Ok(()),
    }
}

pub(super) async fn begin(db: &Db) -> Result<crate::db::Tx, Error> {
    Ok(db.begin().await?)
}

impl Projects {
    /// The targets, every rule checked; the credentials each names must exist.
    fn check_targets(
        &self,
        targets: mirror_common::targets::Targets,
    ) -> Result<mirror_common::targets::Targets, Error> {
        targets.check().map_err(|(field, message)| Error::field(field, message))?;
        for (i, t) in targets.iter().enumerate() {
            let Some(entry) = self.credentials.iter().find(|c| c.name == t.credentials) else {
                return Err(Error::field(
                    format!("targets[{i}].credentials"),
                    format!("no [[s3_credentials]] entry named '{}' in the master's configuration", t.credentials),
                ));
            };
            entry.allows(&t.endpoint, &t.bucket).map_err(|(f, m)| Error::field(format!("targets[{i}].{f}"), m))?;
        }
        Ok(targets)
    }

    fn options(&self, input: Option<&RsyncOptionsInput>) -> Result<RsyncOptions, Error> {
        Ok(RsyncOptions::from_input(&input.cloned().unwrap_or_default(), self.confined)?)
    }

    /// A new project's row from its configuration, every field checked.
    pub(super) async fn row_from(&self, req: AddProject) -> Result<ProjectRow, Error> {
        let now = Utc::now();
        check_text("project", &req.project)?;
        let (id, id_derived) = match &req.id {
            Some(id) => (id.clone(), false),
            None => (derived_id(&req.project, "cannot serve as the id ([A-Za-z0-9._-]+): give an explicit id")?, true),
        };
        let rsync_password = check_password(req.rsync_password)?;
        let rsync_user = req.rsync_user;
        let timeout_secs = check_timeout(req.timeout_secs)?;
        let max_age_secs = check_max_age(req.max_age_secs)?;
        let schedule = schedule_from(req.cron_options, now).await?;
        let rsync_options = self.options(req.rsync_options.as_ref())?;
        let dest = resolve(&self.mirror_root, &req.dest).await?;
        let stamp = db::now();
        let row = ProjectRow {
            id,
            project: req.project,
            id_derived,
            rsync_host: req.rsync_host,
            rsync_module: req.rsync_module,
            dest,
            rsync_password,
            schedule,
            rsync_options,
            enabled: req.enabled.unwrap_or(true),
            created_at: stamp,
            updated_at: stamp,
            rsync_user,
            rsync_port: port_column(req.rsync_port),
            timeout_secs,
            max_age_secs,
            catch_up: req.catch_up.unwrap_or(false),
            last_fire_at: None,
            generation: 0,
            version: 0,
            managed_file: None,
            trace: req.trace.unwrap_or(false),
            targets: self.check_targets(req.targets.unwrap_or_default())?,
            watch: req.watch.unwrap_or(false),
            max_delete: req.max_delete,
            stages: check_stages(req.stages)?,
            flip: req.flip.unwrap_or(false),
            depends_on: req.depends_on.unwrap_or_default(),
            probe: check_probe(req.probe)?,
            node: req.node,
        };
        row.depends_on.check(&row.id).map_err(|(field, message)| Error::field(field, message))?;
        check_upstream(&row)?;
        Ok(row)
    }

    /// `PUT /projects/{id}`: the whole configuration of `id`, created when there is none. Without
    /// `rsync_password` the password it has is kept (`""` removes it). Returns the row and
    /// whether it was created.
    pub async fn put(&self, id: &ProjectId, mut req: AddProject, meta: &Meta) -> Result<(ProjectRow, bool), Error> {
        if req.id.as_ref().is_some_and(|given| given != id) {
            return Err(Error::field("id", format!("the body names another project than the path ({id})")));
        }
        req.id = Some(id.clone());
        let keep_password = req.rsync_password.is_none();
        let mut fresh = self.row_from(req.clone()).await?;
        let mut tx = begin(&self.db).await?;
        let Some(old) = db::projects::get(&mut tx, id).await? else {
            drop(tx);
            return Ok((self.add(req, meta).await?, true));
        };
        if keep_password {
            fresh.rsync_password = carried_password(&old, &fresh);
        }
        if fresh.dest != old.dest {
            check_overlap(&mut tx, &fresh.dest, Some(id.as_str())).await?;
        }
        let row = ProjectRow {
            id_derived: old.id_derived,
            created_at: old.created_at,
            last_fire_at: old.last_fire_at,
            generation: old.generation,
            version: old.version,
            ..fresh
        };
        let saved = self.save(tx, &old, row, meta).await?;
        tracing::info!(project.id = %id, "project replaced");
        Ok((saved, false))
    }

    /// `POST /add_project/`: the new project as stored.
    pub async fn add(&self, req: AddProject, meta: &Meta) -> Result<ProjectRow, Error> {
        let mut row = self.row_from(req).await?;
        let id = row.id.clone();
        let mut tx = begin(&self.db).await?;
        if db::projects::get(&mut tx, &id).await?.is_some() {
            return Err(Error::conflict("id", format!("a project with id '{id}' already exists")));
        }
        check_targets_role(meta, None, &row)?;
        check_overlap(&mut tx, &row.dest, None).await?;
        check_references(&mut tx, &row).await?;
        // A removed project's id continues its chain of versions.
        let latest = db::commits::latest_version(&mut tx, KIND, id.as_str()).await?;
        meta.check(id.as_str(), latest)?;
        row.version = latest + 1;
        db::projects::insert(&mut tx, &row).await.map_err(|e| store_error(e, &id))?;
        let committed = commit(&mut tx, &row.id, row.version, meta, Some(&row)).await?;
        tx.commit().await?;
        tracing::info!(project.id = %id, "project added");
        self.events.publish(Change::ProjectSaved(row.clone()));
        self.events.publish(Change::Committed(committed));
        Ok(row)
    }

    /// `POST /update_project/basic/`: the project as stored after the change (its id may have
    /// followed a new name).
    pub async fn update_basic(&self, req: UpdateProjectBasic, meta: &Meta) -> Result<ProjectRow, Error> {
        if let Some(p) = &req.project {
            check_text("project", p)?;
        }
        let password = req.rsync_password.map(check_password).transpose()?;
        let user = req.rsync_user;
        let timeout = req.timeout_secs.map(check_timeout).transpose()?;
        let max_age = req.max_age_secs.map(check_max_age).transpose()?;
        let options = req.rsync_options.as_ref().map(|o| self.options(Some(o))).transpose()?;
        let dest = match &req.dest {
            Some(d) => Some(resolve(&self.mirror_root, d).await?),
            None => None,
        };
        let mut tx = begin(&self.db).await?;
        let old = db::projects::get(&mut tx, &req.id).await?.ok_or_else(|| not_found(&req.id))?;
        let mut row = old.clone();
        if let Some(p) = req.project {
            // As the 2014 API documents: an id derived from the name follows a new name.
            if old.id_derived && p != old.project {
                let new_id = derived_id(&p, "cannot serve as the id ([A-Za-z0-9._-]+) this project's id follows")?;
                if db::projects::get(&mut tx, &new_id).await?.is_some() {
                    return Err(Error::conflict(
                        "project",
                        format!("renaming would change the id to '{p}', which exists"),
                    ));
                }
                row.id = new_id;
            }
            row.project = p;
        }
        if let Some(h) = req.rsync_host {
            row.rsync_host = Some(h);
        }
        if let Some(m) = req.rsync_module {
            row.rsync_module = Some(m);
        }
        if let Some(d) = dest {
            check_overlap(&mut tx, &d, Some(&old.id)).await?;
            row.dest = d;
        }
        if let Some(o) = options {
            row.rsync_options = o;
        }
        if let Some(u) = user {
            row.rsync_user = u;
        }
        if let Some(p) = req.rsync_port {
            row.rsync_port = port_column(p);
        }
        if let Some(t) = timeout {
            row.timeout_secs = t;
        }
        if let Some(c) = req.catch_up {
            row.catch_up = c;
        }
        if let Some(a) = max_age {
            row.max_age_secs = a;
        }
        if let Some(t) = req.trace {
            row.trace = t;
        }
        if let Some(t) = req.targets {
            row.targets = self.check_targets(t)?;
        }
        if let Some(w) = req.watch {
            row.watch = w;
        }
        if let Some(m) = req.max_delete {
            row.max_delete = m;
        }
        if let Some(s) = req.stages {
            row.stages = check_stages(s)?;
        }
        if let Some(f) = req.flip {
            row.flip = f;
        }
        if let Some(d) = req.depends_on {
            row.depends_on = d;
        }
        if let Some(p) = req.probe {
            row.probe = check_probe(p)?;
        }
        if let Some(n) = req.node {
            row.node = n;
        }
        row.rsync_password = match password {
            Some(p) => p,
            None => carried_password(&old, &row),
        };
        let saved = self.save(tx, &old, row, meta).await?;
        tracing::info!(project.id = %saved.id, previous.id = %old.id, "project updated");
        Ok(saved)
    }

    /// `POST /update_project/schedule/`: replaces the whole schedule (none: manual runs only).
    /// Field errors name the fields as the flat 2014 payload does (`minute`, not
    /// `cron_options.minute`).
    pub async fn replace_schedule(&self, id: &ProjectId, opts: CronOptions, meta: &Meta) -> Result<ProjectRow, Error> {
        let spec = schedule_from(Some(opts), Utc::now()).await.map_err(|e| match e {
            Error::Field(mut f) => {
                f.field = f.field.strip_prefix("cron_options.").map(str::to_owned).unwrap_or(f.field);
                Error::Field(f)
            }
            other => other,
        })?;
        let mut tx = begin(&self.db).await?;
        let old = db::projects::get(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        let row = ProjectRow { schedule: spec, ..old.clone() };
        let saved = self.save(tx, &old, row, meta).await?;
        tracing::info!(project.id = %id, "schedule replaced");
        Ok(saved)
    }

    /// `enable_project` / `disable_project`.
    pub async fn set_enabled(&self, id: &ProjectId, enabled: bool, meta: &Meta) -> Result<ProjectRow, Error> {
        let mut tx = begin(&self.db).await?;
        let old = db::projects::get(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        let row = ProjectRow { enabled, ..old.clone() };
        let saved = self.save(tx, &old, row, meta).await?;
        tracing::info!(project.id = %id, enabled, "project {}", if enabled { "enabled" } else { "disabled" });
        Ok(saved)
    }

    /// `POST /remove_project/`: the project, its history and its live schedule go; a run of it
    /// that is going is stopped.
    pub async fn remove(&self, id: &ProjectId, meta: &Meta) -> Result<(), Error> {
        let mut tx = begin(&self.db).await?;
        let old = db::projects::get(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        check_not_managed(&old)?;
        meta.check(id.as_str(), old.version)?;
        check_no_dependents(&mut tx, id, "removing").await?;
        db::projects::remove(&mut tx, id).await?;
        let committed = commit(&mut tx, id, old.version + 1, meta, None).await?;
        tx.commit().await?;
        tracing::info!(project.id = %id, "project removed");
        self.events.publish(Change::ProjectRemoved { id: id.clone() });
        self.events.publish(Change::Committed(committed));
        Ok(())
    }

    /// `POST /projects/{id}/revert`: a new version of `id` with the configuration of `version`; a
    /// removed project comes back (its runs and generations do not).
    pub async fn revert(
        &self,
        id: &ProjectId,
        version: i64,
        password: Option<Secret>,
        meta: &Meta,
    ) -> Result<ProjectRow, Error> {
        let password = check_password(password)?;
        let mut meta = meta.clone();
        meta.comment.get_or_insert_with(|| format!("revert to version {version}"));
        let mut tx = begin(&self.db).await?;
        let target = db::commits::get(&mut tx, KIND, id.as_str(), version)
            .await?
            .ok_or_else(|| Error::not_found("version", format!("{id} has no version {version}")))?;
        let content = target
            .content
            .ok_or_else(|| Error::field("version", format!("version {version} of {id} is its removal")))?;
        let stored: StoredProject = serde_json::from_str(&content).map_err(anyhow::Error::from)?;
        let dest = resolve(&self.mirror_root, &stored.dest).await?;
        // A version keeps no password: the one given, else the project's own, if the version had one.
        let needs_password = stored.rsync_password_set;
        let password_for = |current: Option<&Secret>| -> Result<Option<Secret>, Error> {
            if !needs_password {
                return Ok(None);
            }
            password.clone().or_else(|| current.cloned()).map(Some).ok_or_else(|| {
                Error::field(
                    "rsync_password",
                    format!("version {version} had an rsync_password, which versions do not keep: give it"),
                )
            })
        };
        match db::projects::get(&mut tx, id).await? {
            Some(old) => {
                let mut row = old.clone();
                stored.apply_to(&mut row);
                row.rsync_password = password_for(carried_password(&old, &row).as_ref())?;
                row.dest = dest;
                check_overlap(&mut tx, &row.dest, Some(id.as_str())).await?;
                let saved = self.save(tx, &old, row, &meta).await?;
                tracing::info!(project.id = %id, version, "project reverted");
                Ok(saved)
            }
            None => {
                let latest = db::commits::latest_version(&mut tx, KIND, id.as_str()).await?;
                meta.check(id.as_str(), latest)?;
                let stamp = db::now();
                let mut row = ProjectRow {
                    id: id.clone(),
                    project: String::new(),
                    id_derived: false,
                    rsync_host: stored.rsync_host.clone(),
                    rsync_module: stored.rsync_module.clone(),
                    dest: String::new(),
                    rsync_password: None,
                    schedule: None,
                    rsync_options: stored.rsync_options.clone(),
                    enabled: true,
                    created_at: stamp,
                    updated_at: stamp,
                    rsync_user: None,
                    rsync_port: None,
                    timeout_secs: None,
                    catch_up: false,
                    last_fire_at: None,
                    generation: 0,
                    max_age_secs: None,
                    version: latest + 1,
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
                };
                stored.apply_to(&mut row);
                check_targets_role(&meta, None, &row)?;
                row.rsync_password = password_for(None)?;
                row.dest = dest;
                check_overlap(&mut tx, &row.dest, None).await?;
                check_references(&mut tx, &row).await?;
                db::projects::insert(&mut tx, &row).await.map_err(|e| store_error(e, id))?;
                let committed = commit(&mut tx, id, row.version, &meta, Some(&row)).await?;
                tx.commit().await?;
                tracing::info!(project.id = %id, version, "removed project brought back");
                self.events.publish(Change::ProjectSaved(row.clone()));
                self.events.publish(Change::Committed(committed));
                Ok(row)
            }
        }
    }

    /// Writes `row` over `old` (as read in this transaction) when the change was based on its
    /// version, records the commit (a rename also ends the old id's chain with a tombstone),
    /// commits, and tells who listens. A write that changes nothing makes no new version.
    async fn save(
        &self,
        mut tx: crate::db::Tx,
        old: &ProjectRow,
        mut row: ProjectRow,
        meta: &Meta,
    ) -> Result<ProjectRow, Error> {
        let old_id = &old.id;
        check_not_managed(old)?;
        check_targets_role(meta, Some(old), &row)?;
        check_upstream(&row)?;
        meta.check(old_id.as_str(), old.version)?;
        let renamed = row.id != *old_id;
        if renamed {
            check_no_dependents(&mut tx, old_id, "renaming").await?;
        }
        if renamed || row.depends_on != old.depends_on {
            check_references(&mut tx, &row).await?;
        }
        if renamed {
            row.version = db::commits::latest_version(&mut tx, KIND, row.id.as_str()).await? + 1;
        }
        let replaced = password_replaced(old, &row);
        if !renamed && (replaced || StoredProject::from(&row) != StoredProject::from(old)) {
            row.version = old.version + 1;
        }
        if !db::projects::update(&mut tx, old_id, &row).await.map_err(|e| store_error(e, &row.id))? {
            return Err(not_found(old_id));
        }
        let mut committed = Vec::new();
        if renamed {
            let ended = meta.noting(&format!("renamed to {}", row.id));
            committed.push(commit(&mut tx, old_id, old.version + 1, &ended, None).await?);
        }
        if row.version != old.version || renamed {
            let noted = if replaced { meta.noting(PASSWORD_REPLACED) } else { meta.clone() };
            committed.push(commit(&mut tx, &row.id, row.version, &noted, Some(&row)).await?);
        }
        let saved = db::projects::get(&mut tx, &row.id).await?.ok_or_else(|| not_found(&row.id))?;
        tx.commit().await?;
        if saved.id != *old_id {
            self.events.publish(Change::ProjectRenamed { from: old_id.clone(), to: saved.id.clone() });
        }
        self.events.publish(Change::ProjectSaved(saved.clone()));
        for c in committed {
            self.events.publish(Change::Committed(c));
        }
        Ok(saved)
    }
}

/// Appends version `version` of project `id` (its configuration, or `None`: removed).
pub(super) async fn commit(
    tx: &mut crate::db::Tx,
    id: &ProjectId,
    version: i64,
    meta: &Meta,
    row: Option<&ProjectRow>,
) -> Result<Committed, Error> {
    let content =
        row.map(|r| serde_json::to_string(&StoredProject::from(r))).transpose().map_err(anyhow::Error::from)?;
    let c = db::commits::NewCommit {
        kind: KIND,
        key: id.as_str(),
        version,
        author: meta.author.as_ref().map(|a| a.as_str()),
        comment: meta.comment.as_deref(),
        content: content.as_deref(),
    };
    db::commits::append(&mut *tx, &c).await?;
    Ok(Committed {
        kind: KIND,
        key: id.to_string(),
        version,
        author: meta.author.as_ref().map(|a| a.to_string()),
        comment: meta.comment.clone(),
        removed: row.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Listener;
    use std::sync::Mutex;

    /// Remembers every change it hears.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Listener for Recorder {
        fn changed(&self, change: &Change) {
            let text = match change {
                Change::ProjectSaved(row) => format!("saved {} enabled={}", row.id, row.enabled),
                Change::ProjectRemoved { id } => format!("removed {id}"),
                Change::ProjectRenamed { from, to } => format!("renamed {from} {to}"),
                // Commits have their own tests (tests/tests/history.rs).
                Change::Committed(_) => return,
                other => format!("{other:?}"),
            };
            self.0.lock().unwrap().push(text);
        }
    }

    async fn service(dir: &std::path::Path) -> (Projects, Arc<Recorder>) {
        let db = crate::db::connect(&dir.join("t.db")).await.unwrap();
        let root = dir.join("mirror");
        std::fs::create_dir_all(&root).unwrap();
        let events = Arc::new(Events::default());
        let recorder = Arc::new(Recorder::default());
        events.subscribe(recorder.clone());
        let root = std::fs::canonicalize(root).unwrap();
        (Projects { db, mirror_root: root, confined: true, events, credentials: Default::default() }, recorder)
    }

    fn add(name: &str, dest: &str) -> AddProject {
        serde_json::from_value(serde_json::json!({
            "project": name, "rsync_host": "rsync.example.org", "rsync_module": "m", "dest": dest,
            "cron_options": {"minute": "*/5"},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn writes_are_checked_in_their_transaction_and_published_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (projects, heard) = service(dir.path()).await;
        let row = projects.add(add("fedora", "fedora"), &Meta::default()).await.unwrap();
        assert_eq!(row.dest, projects.mirror_root.join("fedora").to_str().unwrap());
        assert!(matches!(
            projects.add(add("fedora", "other"), &Meta::default()).await,
            Err(Error::Conflict { field: Some("id"), .. })
        ));
        assert!(matches!(
            projects.add(add("inner", "fedora/x"), &Meta::default()).await,
            Err(Error::Conflict { field: Some("dest"), .. })
        ));
        // Two adds of the same id at once: exactly one wins.
        let none = Meta::default();
        let (a, b) =
            tokio::join!(projects.add(add("twin", "twin-a"), &none), projects.add(add("twin", "twin-b"), &none));
        assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
        projects.set_enabled(&ProjectId::from_static("fedora"), false, &Meta::default()).await.unwrap();
        let rename: UpdateProjectBasic =
            serde_json::from_value(serde_json::json!({"id": "fedora", "project": "fedora2"})).unwrap();
        assert_eq!(projects.update_basic(rename, &Meta::default()).await.unwrap().id, "fedora2");
        projects.remove(&ProjectId::from_static("fedora2"), &Meta::default()).await.unwrap();
        assert!(matches!(
            projects.remove(&ProjectId::from_static("fedora2"), &Meta::default()).await,
            Err(Error::NotFound { .. })
        ));
        let heard = heard.0.lock().unwrap().clone();
        assert_eq!(
            heard,
            [
                "saved fedora enabled=true",
                "saved twin enabled=true",
                "saved fedora enabled=false",
                "renamed fedora fedora2",
                "saved fedora2 enabled=false",
                "removed fedora2",
            ]
        );
    }

    #[tokio::test]
    async fn a_schedule_error_names_the_flat_field() {
        let dir = tempfile::tempdir().unwrap();
        let (projects, _) = service(dir.path()).await;
        projects.add(add("debian", "debian"), &Meta::default()).await.unwrap();
        let opts: CronOptions = serde_json::from_value(serde_json::json!({"minute": "99"})).unwrap();
        match projects.replace_schedule(&ProjectId::from_static("debian"), opts, &Meta::default()).await {
            Err(Error::Field(f)) => assert_eq!(f.field, "minute"),
            other => panic!("{other:?}"),
        }
        let none: CronOptions = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(
            projects
                .replace_schedule(&ProjectId::from_static("debian"), none, &Meta::default())
                .await
                .unwrap()
                .schedule,
            None
        );
    }
}
