//! Projects over HTTP: parse, call the projects service (`service::projects`), render.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use mirror_common::api::{
    AddProject, Done, NEXT_FIRES, ProjectAdded, ProjectDetail, ProjectEnabled, ProjectId, ProjectRemoved,
    ProjectUpdated, ProjectView, PublicProjectView, RECENT_RUNS, RunView, ScheduleReplaced, UpdateProjectBasic,
};
use mirror_common::cron::{CronOptions, Schedule, ScheduleSpec};
use mirror_common::rsync_opts::RsyncOptions;
use serde_json::Value;

use super::detached;
use super::error::ApiError;
use super::extract::{ApiJson, Caller, MaybeCaller, QueryMap, from_value, id_param};
use super::runs::run_view;
use crate::db::{self, projects::ProjectRow, runs::RunRow};
use crate::state::AppState;

pub async fn add_project(
    State(state): State<AppState>,
    Caller(_): Caller,
    ApiJson(req): ApiJson<AddProject>,
) -> Result<Response, ApiError> {
    let row = detached(async move { state.projects.add(req).await }).await?;
    let body = Done::new("add_project", ProjectAdded { project: row.project, id: row.id });
    Ok((StatusCode::CREATED, Json(body)).into_response())
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
    let arrived = state.listing.version();
    let body = match state.listing.get_since(arrived, now, public) {
        Some(body) => body,
        None => {
            let _one_rebuild = state.listing.rebuilding.lock().await;
            // Built by the rebuild we waited for?
            if let Some(body) = state.listing.get_since(arrived, now, public) {
                return Ok(json_response(body));
            }
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
    Ok(json_response(body))
}

/// A rendered JSON body as the answer.
fn json_response(body: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
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
    Ok(json_response(body))
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
) -> Result<Json<Done<ProjectRemoved>>, ApiError> {
    let id = req.id.clone();
    detached(async move { state.projects.remove(&id).await }).await?;
    Ok(Json(Done::new("remove_project", ProjectRemoved { id: req.id })))
}

async fn set_enabled(state: &AppState, id: String, enabled: bool) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
    let method = if enabled { "enable_project" } else { "disable_project" };
    let state = state.clone();
    let row = detached(async move { state.projects.set_enabled(&id, enabled).await }).await?;
    Ok(Json(Done::new(method, ProjectEnabled { id: row.id, enabled: row.enabled })))
}

pub async fn enable_project(
    State(state): State<AppState>,
    Caller(_): Caller,
    query: QueryMap,
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
    set_enabled(&state, id_param(&query)?, true).await
}

pub async fn disable_project(
    State(state): State<AppState>,
    Caller(_): Caller,
    query: QueryMap,
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
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
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
    set_enabled(&state, id_from_path(&arg)?, true).await
}

pub async fn disable_project_path(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path(arg): Path<String>,
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
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
) -> Result<Json<Done<ProjectUpdated>>, ApiError> {
    let row = detached(async move { state.projects.update_basic(req).await }).await?;
    Ok(Json(Done::new("update_project_basic", ProjectUpdated { id: row.id, project: row.project })))
}

/// The 2014 payload is flat: `{"id": "ubuntu", "minute": "*/5", "start_date": "..."}`. It replaces
/// the whole schedule; with no time field at all the project becomes manual-only.
pub async fn update_project_schedule(
    State(state): State<AppState>,
    Caller(_): Caller,
    ApiJson(mut body): ApiJson<serde_json::Map<String, Value>>,
) -> Result<Json<Done<ScheduleReplaced>>, ApiError> {
    let id = match body.remove("id") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::field("id", "must be a string")),
        None => return Err(ApiError::BadJson { field: Some("id".into()), message: "missing field `id`".into() }),
    };
    let opts: CronOptions = from_value(Value::Object(body))?;
    let row = {
        let (state, id) = (state.clone(), id.clone());
        detached(async move { state.projects.replace_schedule(&id, opts).await }).await?
    };
    let listed = view(&row, Utc::now(), None, None)?;
    let body = ScheduleReplaced { id, cron_options: listed.cron_options, next_run_time: listed.next_run_time };
    Ok(Json(Done::new("update_project_schedule", body)))
}
