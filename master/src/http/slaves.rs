//! Slaves over HTTP: parse, call the slaves service (`service::slaves`), render.

use axum::Json;
use axum::extract::State;
use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use mirror_common::api::{
    AddSlave, CompletionReport, Done, Nothing, PropagationView, RemoveSlave, RotateSlaveToken, SlaveAdded, SlaveHello,
    SlaveRemoved, SlaveToken, SlaveView,
};

use super::detached;
use super::error::ApiError;
use super::extract::{ApiJson, MaybeCaller, RootCaller, RootWriter, parse_json};
use crate::state::AppState;
use mirror_common::ErrorBody;

/// The largest report a slave sends.
const MAX_REPORT_BYTES: usize = 64 * 1024;

#[utoipa::path(
    post,
    path = "/add_slave/",
    tag = "slaves",
    request_body = AddSlave,
    responses(
        (status = 201, description = "added, with its token (shown once)", body = Done<SlaveAdded>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn add_slave(
    State(state): State<AppState>,
    RootWriter(_, meta): RootWriter,
    ApiJson(req): ApiJson<AddSlave>,
) -> Result<Response, ApiError> {
    let (hostname, port) = (req.hostname.clone(), req.port);
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    let (port, token) = detached(async move { state.slaves.add(&hostname, port, &meta).await }).await?;
    let added = token.is_some();
    // The one time the token is shown: the slave's `token` setting.
    let token = token.map(|t| t.expose().to_owned());
    let details = (!added).then(|| "Already added".to_owned());
    let body = Done::new("add_slave", SlaveAdded { hostname: req.hostname, port, token, details });
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/list_slaves/",
    tag = "slaves",
    responses(
        (status = 200, description = "every slave, what it serves and its health", body = Vec<SlaveView>),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list_slaves(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
) -> Result<Json<Vec<SlaveView>>, ApiError> {
    Ok(Json(state.slaves.list().await?))
}

/// `GET /projects/{id}/propagation`: per slave, the generation it serves and since when.
#[utoipa::path(
    get,
    path = "/projects/{id}/propagation",
    tag = "slaves",
    params(("id" = String, Path, description = "the project id")),
    responses(
        (status = 200, description = "per slave, the generation it serves", body = PropagationView),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn propagation(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<PropagationView>, ApiError> {
    if !state.settings.public_read && caller.0.is_none() {
        return Err(ApiError::Unauthorized("reading propagation needs a login on this master"));
    }
    Ok(Json(state.slaves.propagation(&id, caller.0.is_none()).await?))
}

/// The Bearer token a slave sends.
fn slave_token(request: &Request) -> Result<String, ApiError> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .ok_or(ApiError::Unauthorized("a slave speaks with its own token (Bearer)"))
}

/// `POST /slave_started/`: a slave, with its own token, says it has (re)started.
#[utoipa::path(
    post,
    path = "/slave_started/",
    tag = "slaves",
    responses(
        (status = 200, description = "the slave as the master knows it", body = Done<SlaveHello>),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("slave" = []))
)]
pub async fn slave_started(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Done<SlaveHello>>, ApiError> {
    let given = slave_token(&request)?;
    let slave = detached(async move { state.slaves.started(&given).await }).await?;
    Ok(Json(Done::new("slave_started", SlaveHello { slave })))
}

/// `POST /slave_rsync_complete/`: a slave's report that its rsync has ended, with its own token.
#[utoipa::path(
    post,
    path = "/slave_rsync_complete/",
    tag = "slaves",
    request_body = CompletionReport,
    responses(
        (status = 200, description = "recorded", body = Done<Nothing>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("slave" = []))
)]
pub async fn slave_rsync_complete(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Done<Nothing>>, ApiError> {
    let given = slave_token(&request)?;
    let bytes = axum::body::to_bytes(request.into_body(), MAX_REPORT_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge(MAX_REPORT_BYTES))?;
    let report: CompletionReport = parse_json(&bytes)?;
    detached(async move { state.slaves.report(&given, &report).await }).await?;
    Ok(Json(Done::new("slave_rsync_complete", Nothing {})))
}

/// `POST /rotate_slave_token/`: a new token, shown this once; the old one stops at once.
#[utoipa::path(
    post,
    path = "/rotate_slave_token/",
    tag = "slaves",
    request_body = RotateSlaveToken,
    responses(
        (status = 200, description = "a new token (shown once)", body = Done<SlaveToken>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn rotate_slave_token(
    State(state): State<AppState>,
    RootWriter(_, meta): RootWriter,
    ApiJson(req): ApiJson<RotateSlaveToken>,
) -> Result<Json<Done<SlaveToken>>, ApiError> {
    let (hostname, port) = (req.hostname.clone(), req.port);
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    let (port, token) = detached(async move { state.slaves.rotate_token(&hostname, port, &meta).await }).await?;
    let body = SlaveToken { hostname: req.hostname, port, token: token.expose().to_owned() };
    Ok(Json(Done::new("rotate_slave_token", body)))
}

#[utoipa::path(
    post,
    path = "/remove_slave/",
    tag = "slaves",
    request_body = RemoveSlave,
    responses(
        (status = 200, description = "removed", body = Done<SlaveRemoved>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 409, description = "a conflict: the id or dest exists, a run is going, the last root", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn remove_slave(
    State(state): State<AppState>,
    RootWriter(_, meta): RootWriter,
    ApiJson(req): ApiJson<RemoveSlave>,
) -> Result<Json<Done<SlaveRemoved>>, ApiError> {
    let (hostname, port) = (req.hostname.clone(), req.port);
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    let port = detached(async move { state.slaves.remove(&hostname, port, &meta).await }).await?;
    Ok(Json(Done::new("remove_slave", SlaveRemoved { hostname: req.hostname, port })))
}
