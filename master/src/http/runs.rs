//! Runs: start one now (`/syncup/`), and their history. Parse, call the runs service, render.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mirror_common::api::{Done, ProjectId, RunStopping, RunView, SyncupResponse};

use super::error::ApiError;
use super::extract::{Caller, MaybeCaller, QueryMap, id_param};
use crate::state::AppState;
use mirror_common::ErrorBody;

/// `/syncup/?id=` (or `?project=`, as the 2014 README wrote it): starts a run now and answers at
/// once with its id; 409 while the project's previous run is going.
#[utoipa::path(
    get,
    path = "/syncup/",
    tag = "runs",
    params(("id" = String, Query, description = "the project id (`project` is read too)")),
    responses(
        (status = 202, description = "a run started", body = SyncupResponse),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 409, description = "a conflict: the id or dest exists, a run is going, the last root", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn syncup(State(state): State<AppState>, Caller(who): Caller, query: QueryMap) -> Result<Response, ApiError> {
    let id = id_param(&query)?;
    let run_id = state.runs.start(&who, &id).await?;
    let body = SyncupResponse { method: "syncup".into(), success: true, id, run_id };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `POST /runs/{id}/stop`: ends a queued or running run; it is recorded as `stopped`.
#[utoipa::path(
    post,
    path = "/runs/{id}/stop",
    tag = "runs",
    params(("id" = i64, Path, description = "the run number")),
    responses(
        (status = 202, description = "the run is being stopped", body = Done<RunStopping>),
        (status = 400, description = "not a run number", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such run", body = ErrorBody),
        (status = 409, description = "the run is not going", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn stop_run(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::field("id", "must be a run number"))?;
    let project = state.runs.stop(&who, id).await?;
    let body = Done::new("stop_run", RunStopping { run_id: id, project });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `GET /runs/?project=&limit=`: newest first, without log tails.
#[utoipa::path(
    get,
    path = "/runs/",
    tag = "runs",
    params(("project" = Option<String>, Query, description = "only this project's runs"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 50")),
    responses(
        (status = 200, description = "newest first", body = Vec<RunView>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: MaybeCaller,
    query: QueryMap,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let limit = match query.0.get("limit") {
        Some(l) => l.parse::<i64>().map_err(|_| ApiError::field("limit", "must be a number from 1 to 1000"))?,
        None => 50,
    };
    let project = match query.0.get("project").or_else(|| query.0.get("id")) {
        Some(p) => Some(ProjectId::parse(p.as_str()).map_err(|m| ApiError::field("project", m))?),
        None => None,
    };
    Ok(Json(state.runs.list(caller.0.as_ref(), project.as_ref(), limit).await?))
}

/// `GET /runs/{id}`: one run, with the last 64 KiB of its output for a logged-in caller.
#[utoipa::path(
    get,
    path = "/runs/{id}",
    tag = "runs",
    params(("id" = i64, Path, description = "the run number")),
    responses(
        (status = 200, description = "one run; rsync's output only with a login", body = RunView),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn get_run(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::field("id", "must be a run number"))?;
    Ok(Json(state.runs.get(caller.0.as_ref(), id).await?))
}
