//! Projects: add, list, update (basic fields, schedule), enable, disable, remove.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use mirror_common::Secret;
use mirror_common::api::{
    AddProject, NEXT_FIRES, Port, ProjectDetail, ProjectId, ProjectView, PublicProjectView, RECENT_RUNS, RunView,
    UpdateProjectBasic, is_valid_id,
};
use mirror_common::cron::{CronOptions, Schedule, ScheduleSpec};
use mirror_common::rsync_opts::{RsyncOptions, RsyncOptionsInput};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, QueryMap, from_value};
use crate::auth::{Caller, MaybeCaller};
use crate::db::{self, projects::ProjectRow, runs::RunRow};
use crate::http::runs::run_view;
use crate::paths::resolve_dest;
use crate::state::AppState;

const MAX_TEXT: usize = 1024;

fn check_text(field: &'static str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ApiError::field(field, "is too long or contains a control character"));
    }
    Ok(())
}

fn check_id(field: &'static str, id: &str) -> Result<(), ApiError> {
    if !is_valid_id(id) {
        return Err(ApiError::field(field, format!("'{}' is not a valid id: use [A-Za-z0-9._-]+", id.escape_debug())));
    }
    Ok(())
}

/// A host name, an IPv4 address or an IPv6 address. Never something rsync could read as an option.
fn check_host(host: &str) -> Result<(), ApiError> {
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if is_name || host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    Err(ApiError::field("rsync_host", format!("'{}' is not a host name or IP address", host.escape_debug())))
}

/// `module` or `module/path/inside`: no `..`, no control characters.
fn check_module(module: &str) -> Result<(), ApiError> {
    check_text("rsync_module", module)?;
    let (name, path) = module.split_once('/').unwrap_or((module, ""));
    if !is_valid_id(name) {
        return Err(ApiError::field("rsync_module", format!("module name '{name}' must match [A-Za-z0-9._-]+")));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err(ApiError::field("rsync_module", "the path inside the module must not contain '..'"));
    }
    Ok(())
}

fn check_password(password: Option<Secret>) -> Result<Option<Secret>, ApiError> {
    match password {
        Some(p) if p.expose().is_empty() => Ok(None),
        Some(p) if p.expose().len() > MAX_TEXT || p.expose().contains(['\0', '\n', '\r']) => {
            Err(ApiError::field("rsync_password", "is too long or contains a newline or NUL"))
        }
        other => Ok(other),
    }
}

fn check_user(user: Option<String>) -> Result<Option<String>, ApiError> {
    match user {
        Some(u) if !is_valid_id(&u) => {
            Err(ApiError::field("rsync_user", "must match [A-Za-z0-9._-]+ and not start with '-'"))
        }
        other => Ok(other),
    }
}

fn check_timeout(secs: Option<u64>) -> Result<Option<i64>, ApiError> {
    match secs {
        Some(s) if !(1..=7 * 24 * 3600).contains(&s) => {
            Err(ApiError::field("timeout_secs", "must be between 1 and 604800 (a week)"))
        }
        Some(s) => Ok(Some(s as i64)),
        None => Ok(None),
    }
}

fn port_column(port: Option<Port>) -> Option<i64> {
    port.map(|p| i64::from(p.0))
}

/// Brings the live schedule in line with the stored project (after the write is committed).
async fn resync(state: &AppState, id: &str) -> Result<(), ApiError> {
    state.scheduler.sync_project(id).await.map_err(ApiError::Internal)
}

/// Resolves `dest` and refuses one that is, contains, or lies inside another project's.
async fn check_dest(state: &AppState, dest: &str, own_id: Option<&str>) -> Result<String, ApiError> {
    let resolved = resolve_dest(&state.mirror_root, dest).await?;
    let resolved =
        resolved.into_os_string().into_string().map_err(|_| ApiError::field("dest", "is not valid UTF-8"))?;
    if let Some((id, _)) = db::projects::overlapping_dest(&state.db, &resolved, own_id).await? {
        return Err(ApiError::conflict("dest", format!("{resolved} overlaps the dest of project '{id}'")));
    }
    Ok(resolved)
}

/// Validates client cron options; `None` when they name no schedule at all (manual runs only).
/// Compiling a schedule and searching its next fire is CPU work: it runs off the async workers.
async fn schedule_from(opts: Option<CronOptions>, now: DateTime<Utc>) -> Result<Option<ScheduleSpec>, ApiError> {
    let Some(opts) = opts else { return Ok(None) };
    tokio::task::spawn_blocking(move || check_schedule(&opts, now)).await.map_err(|e| ApiError::Internal(e.into()))?
}

fn check_schedule(opts: &CronOptions, now: DateTime<Utc>) -> Result<Option<ScheduleSpec>, ApiError> {
    let no_dates = opts.start_date.is_none() && opts.end_date.is_none() && opts.timezone.is_none();
    if opts.has_no_time_field() && no_dates {
        return Ok(None);
    }
    let schedule = Schedule::from_options(opts)?;
    if schedule.next_fire_at_or_after(now).is_none() {
        return Err(ApiError::field(
            "cron_options",
            "this schedule never fires from now on (check year, day, month and end_date)",
        ));
    }
    Ok(Some(schedule.spec().clone()))
}

fn rsync_options_from(state: &AppState, input: Option<&RsyncOptionsInput>) -> Result<RsyncOptions, ApiError> {
    Ok(RsyncOptions::from_input(&input.cloned().unwrap_or_default(), state.confine.confined())?)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(e.into()))
}

fn store_error(e: sqlx::Error, id: &str) -> ApiError {
    if db::is_unique_violation(&e) {
        return ApiError::conflict("id", format!("a project with id '{id}' or the same dest already exists"));
    }
    e.into()
}

pub async fn add_project(
    State(state): State<AppState>,
    Caller(_): Caller,
    ApiJson(req): ApiJson<AddProject>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    check_text("project", &req.project)?;
    let (id, id_derived) = match &req.id {
        Some(id) => {
            check_id("id", id)?;
            (id.clone(), false)
        }
        None => {
            if !is_valid_id(&req.project) {
                return Err(ApiError::field(
                    "project",
                    "cannot serve as the id ([A-Za-z0-9._-]+): give an explicit id",
                ));
            }
            (req.project.clone(), true)
        }
    };
    check_host(&req.rsync_host)?;
    check_module(&req.rsync_module)?;
    let rsync_password = check_password(req.rsync_password)?;
    let rsync_user = check_user(req.rsync_user)?;
    let timeout_secs = check_timeout(req.timeout_secs)?;
    let schedule = schedule_from(req.cron_options, now).await?;
    let rsync_options = rsync_options_from(&state, req.rsync_options.as_ref())?;

    let _writing = state.project_writes.lock().await;
    if db::projects::get(&state.db, &id).await?.is_some() {
        return Err(ApiError::conflict("id", format!("a project with id '{id}' already exists")));
    }
    let dest = check_dest(&state, &req.dest, None).await?;
    let stamp = db::now();
    let row = ProjectRow {
        id: id.clone(),
        project: req.project.clone(),
        id_derived,
        rsync_host: req.rsync_host,
        rsync_module: req.rsync_module,
        dest,
        rsync_password,
        schedule: schedule.as_ref().map(to_json).transpose()?,
        rsync_options: to_json(&rsync_options)?,
        enabled: req.enabled.unwrap_or(true),
        created_at: stamp.clone(),
        updated_at: stamp,
        rsync_user,
        rsync_port: port_column(req.rsync_port),
        timeout_secs,
        catch_up: req.catch_up.unwrap_or(false),
        last_fire_at: None,
        generation: 0,
    };
    db::projects::insert(&state.db, &row).await.map_err(|e| store_error(e, &id))?;
    state.listing.invalidate();
    resync(&state, &id).await?;
    tracing::info!(project.id = %id, "project added");
    Ok((StatusCode::CREATED, Json(json!({"method": "add_project", "success": true, "project": req.project, "id": id})))
        .into_response())
}

/// Builds the listed form of a project. Never includes the password.
pub fn view(
    row: &ProjectRow,
    now: DateTime<Utc>,
    last_run: Option<&RunRow>,
    last_success: Option<&String>,
) -> Result<ProjectView, ApiError> {
    let spec: Option<ScheduleSpec> =
        row.schedule.as_deref().map(serde_json::from_str).transpose().map_err(|e| ApiError::Internal(e.into()))?;
    let options: RsyncOptions = serde_json::from_str(&row.rsync_options).map_err(|e| ApiError::Internal(e.into()))?;
    let next_run_time = match (&spec, row.enabled) {
        (Some(spec), true) => Schedule::from_spec(spec.clone())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored schedule of {}: {e}", row.id)))?
            .next_fire_at_or_after(now),
        _ => None,
    };
    Ok(ProjectView {
        id: row.id.clone(),
        project: row.project.clone(),
        rsync_host: row.rsync_host.clone(),
        rsync_module: row.rsync_module.clone(),
        dest: row.dest.clone(),
        enabled: row.enabled,
        cron_options: spec,
        rsync_options: (&options).into(),
        rsync_password_set: row.rsync_password.is_some(),
        rsync_user: row.rsync_user.clone(),
        rsync_port: row.rsync_port.and_then(|p| u16::try_from(p).ok()),
        timeout_secs: row.timeout_secs.and_then(|t| u64::try_from(t).ok()),
        catch_up: row.catch_up,
        next_run_time: next_run_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        status: last_run.map_or_else(|| "never_run".to_owned(), |r| r.status.to_string()),
        last_run: last_run.map(|r| run_view(r, false)),
        last_success: last_success.cloned(),
        generation: row.generation,
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
    })
}

pub async fn list_projects(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
) -> Result<Response, ApiError> {
    if !state.settings.public_read && caller.is_none() {
        return Err(ApiError::Unauthorized("listing projects needs a login on this master"));
    }
    let now = Utc::now();
    let public = caller.is_none();
    let body = match state.listing.get(now, public) {
        Some(body) => body,
        None => {
            let version = state.listing.version();
            let rows = db::projects::list(&state.db).await?;
            let last_runs: HashMap<String, RunRow> =
                db::runs::latest_per_project(&state.db).await?.into_iter().map(|r| (r.project_id.clone(), r)).collect();
            let last_success: HashMap<String, String> =
                db::runs::last_success_per_project(&state.db).await?.into_iter().collect();
            // A next fire per project and two JSON documents: CPU work, off the async workers.
            let rendered = tokio::task::spawn_blocking(move || render_listing(&rows, &last_runs, &last_success, now))
                .await
                .map_err(|e| ApiError::Internal(e.into()))??;
            state.listing.put(version, rendered.valid_until, rendered.full.clone(), rendered.public.clone());
            if public { rendered.public } else { rendered.full }
        }
    };
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

/// `GET /projects/{id}`: one project's view, its next fire times and its newest runs (public
/// views without a login, as the listing).
pub async fn get_project(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.settings.public_read && caller.is_none() {
        return Err(ApiError::Unauthorized("reading projects needs a login on this master"));
    }
    let row = existing(&state, &id).await?;
    let runs = db::runs::list(&state.db, Some(&row.id), RECENT_RUNS).await?;
    let last_success = db::runs::last_success(&state.db, &row.id).await?;
    let now = Utc::now();
    // The fire times are CPU work (bounded): off the async workers, as every schedule computation.
    let public = caller.is_none();
    let body = tokio::task::spawn_blocking(move || {
        let project = view(&row, now, runs.first(), last_success.as_ref())?;
        let next_fire_times = next_fires(&row, now)?;
        let recent_runs = runs.iter().map(|r| run_view(r, false));
        if public {
            let recent_runs = recent_runs.map(RunView::public).collect();
            json_bytes(&ProjectDetail { project: PublicProjectView::from(project), next_fire_times, recent_runs })
        } else {
            json_bytes(&ProjectDetail { project, next_fire_times, recent_runs: recent_runs.collect() })
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

/// The next [`NEXT_FIRES`] fire times of an enabled, scheduled project.
fn next_fires(row: &ProjectRow, now: DateTime<Utc>) -> Result<Vec<String>, ApiError> {
    let Some(spec) = row.schedule.as_deref().filter(|_| row.enabled) else { return Ok(Vec::new()) };
    let spec: ScheduleSpec = serde_json::from_str(spec).map_err(|e| ApiError::Internal(e.into()))?;
    let schedule = Schedule::from_spec(spec)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored schedule of {}: {e}", row.id)))?;
    let mut fires = Vec::with_capacity(NEXT_FIRES);
    let mut after = now;
    while fires.len() < NEXT_FIRES {
        let Some(t) = schedule.next_fire_at_or_after(after) else { break };
        fires.push(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        after = t + chrono::Duration::seconds(1);
    }
    Ok(fires)
}

/// The listing for logged-in callers and the one for everyone else, and until when they hold.
struct RenderedListing {
    full: axum::body::Bytes,
    public: axum::body::Bytes,
    valid_until: Option<DateTime<Utc>>,
}

fn render_listing(
    rows: &[ProjectRow],
    last_runs: &HashMap<String, RunRow>,
    last_success: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<RenderedListing, ApiError> {
    let views = rows
        .iter()
        .map(|r| view(r, now, last_runs.get(&r.id), last_success.get(&r.id)))
        .collect::<Result<Vec<_>, _>>()?;
    let valid_until = views
        .iter()
        .filter_map(|v| v.next_run_time.as_deref())
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .min();
    let full = json_bytes(&views)?;
    let public: Vec<PublicProjectView> = views.into_iter().map(PublicProjectView::from).collect();
    Ok(RenderedListing { full, public: json_bytes(&public)?, valid_until })
}

fn json_bytes<T: serde::Serialize>(v: &T) -> Result<axum::body::Bytes, ApiError> {
    serde_json::to_vec(v).map(axum::body::Bytes::from).map_err(|e| ApiError::Internal(e.into()))
}

pub async fn remove_project(
    State(state): State<AppState>,
    Caller(_): Caller,
    ApiJson(req): ApiJson<ProjectId>,
) -> Result<Json<Value>, ApiError> {
    let _writing = state.project_writes.lock().await;
    if !db::projects::remove(&state.db, &req.id).await? {
        return Err(ApiError::not_found("id", format!("no project with id '{}'", req.id.escape_debug())));
    }
    // Its run, if one is going, is stopped; its history goes with it.
    state.runner.cancel(&req.id);
    state.listing.invalidate();
    resync(&state, &req.id).await?;
    tracing::info!(project.id = %req.id, "project removed");
    Ok(Json(json!({"method": "remove_project", "success": true, "id": req.id})))
}

/// The id from `?id=` (or `?project=`, which the 2014 README also used).
pub fn id_param(query: &QueryMap) -> Result<String, ApiError> {
    query
        .0
        .get("id")
        .or_else(|| query.0.get("project"))
        .cloned()
        .ok_or_else(|| ApiError::field("id", "missing: pass ?id=<project id>"))
}

async fn set_enabled(state: &AppState, id: String, enabled: bool) -> Result<Json<Value>, ApiError> {
    let method = if enabled { "enable_project" } else { "disable_project" };
    let _writing = state.project_writes.lock().await;
    if !db::projects::set_enabled(&state.db, &id, enabled).await? {
        return Err(ApiError::not_found("id", format!("no project with id '{}'", id.escape_debug())));
    }
    state.listing.invalidate();
    resync(state, &id).await?;
    tracing::info!(project.id = %id, enabled, "project {}", if enabled { "enabled" } else { "disabled" });
    Ok(Json(json!({"method": method, "success": true, "id": id, "enabled": enabled})))
}

pub async fn enable_project(
    State(state): State<AppState>,
    Caller(_): Caller,
    query: QueryMap,
) -> Result<Json<Value>, ApiError> {
    set_enabled(&state, id_param(&query)?, true).await
}

pub async fn disable_project(
    State(state): State<AppState>,
    Caller(_): Caller,
    query: QueryMap,
) -> Result<Json<Value>, ApiError> {
    set_enabled(&state, id_param(&query)?, false).await
}

/// The 2014 README's own example, `/disable_project/id=ubuntu`, put the id in the path.
fn id_from_path(arg: &str) -> Result<String, ApiError> {
    arg.strip_prefix("id=")
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::field("id", "missing: pass ?id=<project id>"))
}

pub async fn enable_project_path(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path(arg): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(&state, id_from_path(&arg)?, true).await
}

pub async fn disable_project_path(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path(arg): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(&state, id_from_path(&arg)?, false).await
}

async fn existing(state: &AppState, id: &str) -> Result<ProjectRow, ApiError> {
    db::projects::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", format!("no project with id '{}'", id.escape_debug())))
}

pub async fn update_project_basic(
    State(state): State<AppState>,
    Caller(_): Caller,
    ApiJson(req): ApiJson<UpdateProjectBasic>,
) -> Result<Json<Value>, ApiError> {
    if let Some(p) = &req.project {
        check_text("project", p)?;
    }
    if let Some(h) = &req.rsync_host {
        check_host(h)?;
    }
    if let Some(m) = &req.rsync_module {
        check_module(m)?;
    }
    let password = req.rsync_password.map(check_password).transpose()?;
    let user = req.rsync_user.map(check_user).transpose()?;
    let timeout = req.timeout_secs.map(check_timeout).transpose()?;
    let options = req.rsync_options.as_ref().map(|o| rsync_options_from(&state, Some(o))).transpose()?;

    let _writing = state.project_writes.lock().await;
    let old = existing(&state, &req.id).await?;
    let mut row = old.clone();
    if let Some(p) = req.project {
        // As the 2014 API documents: an id derived from the name follows a new name.
        if old.id_derived && p != old.project {
            if !is_valid_id(&p) {
                return Err(ApiError::field(
                    "project",
                    "cannot serve as the id ([A-Za-z0-9._-]+) this project's id follows",
                ));
            }
            if db::projects::get(&state.db, &p).await?.is_some() {
                return Err(ApiError::conflict(
                    "project",
                    format!("renaming would change the id to '{p}', which exists"),
                ));
            }
            row.id = p.clone();
        }
        row.project = p;
    }
    if let Some(h) = req.rsync_host {
        row.rsync_host = h;
    }
    if let Some(m) = req.rsync_module {
        row.rsync_module = m;
    }
    if let Some(d) = req.dest {
        row.dest = check_dest(&state, &d, Some(&old.id)).await?;
    }
    if let Some(p) = password {
        row.rsync_password = p;
    }
    if let Some(o) = options {
        row.rsync_options = to_json(&o)?;
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
    if !db::projects::update(&state.db, &old.id, &row).await.map_err(|e| store_error(e, &row.id))? {
        return Err(ApiError::not_found("id", format!("no project with id '{}'", old.id)));
    }
    state.listing.invalidate();
    if row.id != old.id {
        resync(&state, &old.id).await?;
    }
    resync(&state, &row.id).await?;
    tracing::info!(project.id = %row.id, previous.id = %old.id, "project updated");
    Ok(Json(json!({"method": "update_project_basic", "success": true, "id": row.id, "project": row.project})))
}

/// The 2014 payload is flat: `{"id": "ubuntu", "minute": "*/5", "start_date": "..."}`. It replaces
/// the whole schedule; with no time field at all the project becomes manual-only.
pub async fn update_project_schedule(
    State(state): State<AppState>,
    Caller(_): Caller,
    ApiJson(mut body): ApiJson<serde_json::Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = match body.remove("id") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::field("id", "must be a string")),
        None => return Err(ApiError::BadJson { field: Some("id".into()), message: "missing field `id`".into() }),
    };
    let opts: CronOptions = from_value(Value::Object(body))?;
    let now = Utc::now();
    let spec = schedule_from(Some(opts), now).await.map_err(|e| match e {
        // The payload is flat, so name the field as the client wrote it.
        ApiError::Field(mut f) => {
            f.field = f.field.strip_prefix("cron_options.").map(str::to_owned).unwrap_or(f.field);
            ApiError::Field(f)
        }
        other => other,
    })?;
    let _writing = state.project_writes.lock().await;
    let mut row = existing(&state, &id).await?;
    row.schedule = spec.as_ref().map(to_json).transpose()?;
    db::projects::update(&state.db, &id, &row).await?;
    state.listing.invalidate();
    resync(&state, &id).await?;
    let listed = view(&row, now, None, None)?;
    tracing::info!(project.id = %id, "schedule replaced");
    Ok(Json(json!({
        "method": "update_project_schedule",
        "success": true,
        "id": id,
        "cron_options": listed.cron_options,
        "next_run_time": listed.next_run_time,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in ["rsync.fedora.org", "localhost", "10.0.0.1", "::1", "ftp-1.osuosl.org"] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in ["-e.example", "a b", "", "host;rm", "a..b", "[::1]", "host::mod", "-oProxyCommand=x"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modules() {
        for ok in ["fedora", "fedora/linux/releases", "debian-cd/12.0"] {
            assert!(check_module(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "mod/../../etc", "mod\nx", "a b/c", "/abs"] {
            assert!(check_module(bad).is_err(), "{bad}");
        }
    }
}
