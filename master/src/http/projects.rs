//! Projects over HTTP: parse, call the projects service (`service::projects`), render.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use mirror_common::api::{
    AddProject, Done, NEXT_FIRES, ProjectAdded, ProjectDetail, ProjectEnabled, ProjectId, ProjectRef, ProjectRemoved,
    ProjectUpdated, PublicProjectView, RECENT_RUNS, RunView, ScheduleReplaced, Timestamp, UpdateProjectBasic,
};
use mirror_common::cron::CronOptions;
use mirror_common::timing::Timing;
use serde_json::Value;

use super::detached;
use super::error::ApiError;
use super::extract::{ApiJson, MaybeCaller, QueryMap, Writer, from_value, id_param};
use crate::db::{self, projects::ProjectRow};
use crate::read::views::{project_view, run_view};
use crate::service::history::Meta;
use crate::state::AppState;
use mirror_common::ErrorBody;
use mirror_common::api::ProjectView;

#[utoipa::path(
    post,
    path = "/add_project/",
    tag = "projects",
    request_body = AddProject,
    responses(
        (status = 201, description = "added", body = Done<ProjectAdded>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 409, description = "a conflict: the id or dest exists, a run is going, the last root", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn add_project(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    ApiJson(req): ApiJson<AddProject>,
) -> Result<Response, ApiError> {
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    let row = detached(async move { state.projects.add(req, &meta).await }).await?;
    let body = Done::new("add_project", ProjectAdded { project: row.config.project, id: row.config.id });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `PUT /projects/{id}`: the project's whole configuration (created when there is none).
#[utoipa::path(
    put,
    path = "/projects/{id}",
    tag = "projects",
    params(("id" = String, Path, description = "the project id")),
    request_body(content = AddProject, description = "the whole configuration, as /add_project/ takes it; without rsync_password the current one is kept"),
    responses(
        (status = 200, description = "replaced", body = Done<ProjectUpdated>),
        (status = 201, description = "created", body = Done<ProjectUpdated>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 409, description = "the version (or If-Match) is not the current one, or the dest is taken", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn put_project(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AddProject>,
) -> Result<Response, ApiError> {
    let id = ProjectId::parse(id).map_err(|m| ApiError::field("id", m))?;
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    let (row, created) = detached(async move { state.projects.put(&id, req, &meta).await }).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Done::new("put_project", ProjectUpdated { id: row.config.id, project: row.config.project })))
        .into_response())
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, not with `q=0`).
fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0));
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && !refused
        },
    )
}

/// `GET /list_projects/`: the listing, gzip-compressed for clients that accept it (a listing of
/// thousands of projects is megabytes of JSON, a tenth of that compressed).
#[utoipa::path(
    get,
    path = "/list_projects/",
    tag = "projects",
    responses(
        (status = 200, description = "every project, in id order; the public view without a login", body = Vec<ProjectView>),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn list_projects(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if !state.settings.public_read && caller.is_none() {
        return Err(ApiError::Unauthorized("listing projects needs a login on this master"));
    }
    let body = state.listing.body(&state.db, caller.is_none(), accepts_gzip(&headers)).await?;
    let gzip = body.gzip;
    let mut response =
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], axum::body::Body::new(body))
            .into_response();
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

/// A rendered JSON body as the answer.
fn json_response(body: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// `GET /projects/{id}`: one project's view, its next fire times and its newest runs (public
/// views without a login, as the listing).
#[utoipa::path(
    get,
    path = "/projects/{id}",
    tag = "projects",
    params(("id" = String, Path, description = "the project id")),
    responses(
        (status = 200, description = "one project, its next fire times and newest runs", body = ProjectDetail<ProjectView>),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
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
    let max_age = state.settings.stale_after_secs;
    let body = tokio::task::spawn_blocking(move || {
        let project = project_view(&row, now, runs.first(), last_success, max_age).map_err(ApiError::Internal)?;
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
fn next_fires(row: &ProjectRow, now: DateTime<Utc>) -> Result<Vec<Timestamp>, ApiError> {
    let timing =
        Timing::of(row).map_err(|e| ApiError::Internal(anyhow::anyhow!("stored schedule of {}: {e}", row.id)))?;
    let Some(schedule) = timing.filter(|_| row.enabled) else { return Ok(Vec::new()) };
    let mut fires = Vec::with_capacity(NEXT_FIRES);
    let mut after = now;
    while fires.len() < NEXT_FIRES {
        let Some(t) = schedule.next_fire_at_or_after(after) else { break };
        fires.push(Timestamp::from(t));
        after = t + chrono::Duration::seconds(1);
    }
    Ok(fires)
}

fn json_bytes<T: serde::Serialize>(v: &T) -> Result<axum::body::Bytes, ApiError> {
    serde_json::to_vec(v).map(axum::body::Bytes::from).map_err(|e| ApiError::Internal(e.into()))
}

#[utoipa::path(
    post,
    path = "/remove_project/",
    tag = "projects",
    request_body = ProjectRef,
    responses(
        (status = 200, description = "removed, with its history", body = Done<ProjectRemoved>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn remove_project(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    ApiJson(req): ApiJson<ProjectRef>,
) -> Result<Json<Done<ProjectRemoved>>, ApiError> {
    let id = req.id.clone();
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    detached(async move { state.projects.remove(&id, &meta).await }).await?;
    Ok(Json(Done::new("remove_project", ProjectRemoved { id: req.id })))
}

async fn set_enabled(
    state: &AppState,
    id: ProjectId,
    enabled: bool,
    meta: Meta,
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
    let method = if enabled { "enable_project" } else { "disable_project" };
    let state = state.clone();
    let row = detached(async move { state.projects.set_enabled(&id, enabled, &meta).await }).await?;
    Ok(Json(Done::new(method, ProjectEnabled { enabled: row.enabled, id: row.config.id })))
}

#[utoipa::path(
    get,
    path = "/enable_project/",
    tag = "projects",
    params(("id" = String, Query, description = "the project id (`project` is read too)")),
    responses(
        (status = 200, description = "enabled", body = Done<ProjectEnabled>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn enable_project(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    query: QueryMap,
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
    set_enabled(&state, id_param(&query)?, true, meta).await
}

#[utoipa::path(
    get,
    path = "/disable_project/",
    tag = "projects",
    params(("id" = String, Query, description = "the project id (`project` is read too)")),
    responses(
        (status = 200, description = "disabled", body = Done<ProjectEnabled>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn disable_project(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    query: QueryMap,
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
    set_enabled(&state, id_param(&query)?, false, meta).await
}

/// The 2014 README's own example, `/disable_project/id=ubuntu`, put the id in the path.
fn id_from_path(arg: &str) -> Result<ProjectId, ApiError> {
    let id = arg.strip_prefix("id=").ok_or_else(|| ApiError::field("id", "missing: pass ?id=<project id>"))?;
    ProjectId::parse(id).map_err(|m| ApiError::field("id", m))
}

pub async fn enable_project_path(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    Path(arg): Path<String>,
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
    set_enabled(&state, id_from_path(&arg)?, true, meta).await
}

pub async fn disable_project_path(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    Path(arg): Path<String>,
) -> Result<Json<Done<ProjectEnabled>>, ApiError> {
    set_enabled(&state, id_from_path(&arg)?, false, meta).await
}

async fn existing(state: &AppState, id: &str) -> Result<ProjectRow, ApiError> {
    db::projects::get(&state.db.read, id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", format!("no project with id '{}'", id.escape_debug())))
}

#[utoipa::path(
    post,
    path = "/update_project/basic/",
    tag = "projects",
    request_body = UpdateProjectBasic,
    responses(
        (status = 200, description = "changed", body = Done<ProjectUpdated>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 409, description = "a conflict: the id or dest exists, a run is going, the last root", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn update_project_basic(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    ApiJson(req): ApiJson<UpdateProjectBasic>,
) -> Result<Json<Done<ProjectUpdated>>, ApiError> {
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    let row = detached(async move { state.projects.update_basic(req, &meta).await }).await?;
    Ok(Json(Done::new("update_project_basic", ProjectUpdated { id: row.config.id, project: row.config.project })))
}

/// The 2014 payload is flat: `{"id": "ubuntu", "minute": "*/5", "start_date": "..."}`. It replaces
/// the whole schedule; with no time field at all the project becomes manual-only.
#[utoipa::path(
    post,
    path = "/update_project/schedule/",
    tag = "projects",
    request_body(content = mirror_common::api::ScheduleRequest, description = "the flat 2014 payload: `id` beside the schedule fields"),
    responses(
        (status = 200, description = "the schedule replaced", body = Done<ScheduleReplaced>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn update_project_schedule(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    ApiJson(mut body): ApiJson<serde_json::Map<String, Value>>,
) -> Result<Json<Done<ScheduleReplaced>>, ApiError> {
    let comment = match body.remove("comment") {
        Some(Value::String(c)) => Some(c),
        Some(_) => return Err(ApiError::field("comment", "must be a string")),
        None => None,
    };
    let version = match body.remove("version") {
        Some(v) => Some(v.as_i64().ok_or_else(|| ApiError::field("version", "must be a version number"))?),
        None => None,
    };
    let meta = meta.with_body(comment, version)?;
    let id = match body.remove("id") {
        Some(Value::String(s)) => ProjectId::parse(s).map_err(|m| ApiError::field("id", m))?,
        Some(_) => return Err(ApiError::field("id", "must be a string")),
        None => return Err(ApiError::BadJson { field: Some("id".into()), message: "missing field `id`".into() }),
    };
    let opts: CronOptions = from_value(Value::Object(body))?;
    let row = {
        let (state, id) = (state.clone(), id.clone());
        detached(async move { state.projects.replace_schedule(&id, opts, &meta).await }).await?
    };
    let listed =
        project_view(&row, Utc::now(), None, None, state.settings.stale_after_secs).map_err(ApiError::Internal)?;
    let body = ScheduleReplaced { id, cron_options: listed.cron_options, next_run_time: listed.next_run_time };
    Ok(Json(Done::new("update_project_schedule", body)))
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_is_taken_when_offered_and_not_refused() {
        let with = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::ACCEPT_ENCODING, v.parse().unwrap());
            accepts_gzip(&h)
        };
        assert!(with("gzip") && with("gzip, deflate, br") && with("br;q=1.0, GZIP;q=0.5"));
        assert!(!with("deflate") && !with("gzip;q=0") && !with("gzip; q=0.0") && !with("identity"));
        assert!(!accepts_gzip(&axum::http::HeaderMap::new()));
    }
}
