//! Object-store targets: push now, and the record of pushes. Parse, call the pusher, render.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mirror_common::ErrorBody;
use mirror_common::names::Name;
use mirror_common::targets::{PushStarted, PushView, TargetView};

use super::error::ApiError;
use super::extract::{Caller, QueryMap, id_param};
use crate::state::AppState;

fn target_param(query: &QueryMap) -> Result<Option<Name>, ApiError> {
    query.0.get("target").map(|t| Name::parse(t.as_str()).map_err(|m| ApiError::field("target", m))).transpose()
}

/// `POST /targets/sync?id=[&target=]`: brings the project's targets (or one) in step with its
/// tree now. A push already going does one more full pass after it.
#[utoipa::path(
    post,
    path = "/targets/sync",
    tag = "targets",
    params(("id" = String, Query, description = "the project id"), ("target" = Option<String>, Query, description = "only this target")),
    responses(
        (status = 202, description = "the pushes are under way", body = PushStarted),
        (status = 400, description = "a field is invalid", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project or target", body = ErrorBody),
        (status = 409, description = "the project has no targets", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn sync(State(state): State<AppState>, Caller(who): Caller, query: QueryMap) -> Result<Response, ApiError> {
    let id = id_param(&query)?;
    let target = target_param(&query)?;
    let started = state.pusher.sync(&id, target.as_ref()).await?;
    tracing::info!(project.id = %id, user.name = %who.username, targets = ?started.targets, "push requested");
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

/// `GET /targets?id=`: the project's targets (credentials by name only) with their last push.
#[utoipa::path(
    get,
    path = "/targets",
    tag = "targets",
    params(("id" = String, Query, description = "the project id")),
    responses(
        (status = 200, description = "the targets", body = Vec<TargetView>),
        (status = 400, description = "a field is invalid", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list_targets(
    State(state): State<AppState>,
    _who: Caller,
    query: QueryMap,
) -> Result<Json<Vec<TargetView>>, ApiError> {
    Ok(Json(state.pusher.views(&id_param(&query)?).await?))
}

/// `GET /targets/pushes?id=[&target=][&limit=]`: a project's pushes, newest first.
#[utoipa::path(
    get,
    path = "/targets/pushes",
    tag = "targets",
    params(
        ("id" = String, Query, description = "the project id"),
        ("target" = Option<String>, Query, description = "only this target's"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 50")
    ),
    responses(
        (status = 200, description = "newest first", body = Vec<PushView>),
        (status = 400, description = "a field is invalid", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list_pushes(
    State(state): State<AppState>,
    _who: Caller,
    query: QueryMap,
) -> Result<Json<Vec<PushView>>, ApiError> {
    let limit = super::extract::limit_param(&query, 50)?;
    let (id, target) = (id_param(&query)?, target_param(&query)?);
    Ok(Json(state.pusher.pushes(&id, target.as_ref(), limit).await?))
}

/// `GET /targets/pushes/{id}`: one push.
#[utoipa::path(
    get,
    path = "/targets/pushes/{id}",
    tag = "targets",
    params(("id" = i64, Path, description = "the push number")),
    responses(
        (status = 200, description = "one push", body = PushView),
        (status = 400, description = "not a push number", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such push", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn get_push(
    State(state): State<AppState>,
    _who: Caller,
    Path(id): Path<String>,
) -> Result<Json<PushView>, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::field("id", "must be a push number"))?;
    Ok(Json(state.pusher.push_view(id).await?))
}
