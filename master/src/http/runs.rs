//! Runs: start one now (`/syncup/`), and their history. Parse, call the runs service, render.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use mirror_common::Secret;
use mirror_common::api::{Done, ProjectId, RunStopping, RunView, SyncupResponse, TriggerToken};

use super::detached;
use super::error::ApiError;
use super::extract::{Caller, MaybeCaller, QueryMap, Writer, id_param};
use crate::auth::Principal;
use crate::state::AppState;
use mirror_common::ErrorBody;

/// `/syncup/?id=` (or `?project=`, as the 2014 README wrote it): starts a run now and answers at
/// once with its id. During a run: one more full pass, queued after it (`follow_up_of`), which
/// later calls join.
#[utoipa::path(
    get,
    path = "/syncup/",
    tag = "runs",
    params(
        ("id" = String, Query, description = "the project id (`project` is read too)"),
        ("dry_run" = Option<bool>, Query, description = "true: say what a run would change (rsync --dry-run), change nothing")
    ),
    responses(
        (status = 202, description = "a run started", body = SyncupResponse),
        (status = 200, description = "dry_run: what a run would change, and whether max_delete would refuse it", body = crate::run::Preview),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 409, description = "the project has a local source: nothing to run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn syncup(State(state): State<AppState>, Caller(who): Caller, query: QueryMap) -> Result<Response, ApiError> {
    let id = id_param(&query)?;
    match query.0.get("dry_run").map(String::as_str) {
        None | Some("false" | "0") => {}
        Some("true" | "1") => {
            let preview = state.runner.preview(&id).await?;
            tracing::info!(project.id = %id, user.name = %who.username, refused = preview.refused.is_some(), "dry run");
            return Ok((StatusCode::OK, Json(preview)).into_response());
        }
        Some(_) => return Err(ApiError::field("dry_run", "must be true or false")),
    }
    let started = state.runs.start(&who, &id).await?;
    let body = SyncupResponse {
        method: "syncup".into(),
        success: true,
        id,
        run_id: started.run_id,
        follow_up_of: started.follow_up_of,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `POST /trigger/{project}`: an upstream announces new content (its CI job, a message relay, a
/// GitHub-style hook). The project's trigger token comes as a Bearer token, or as `?token=` for a
/// service that can only call a URL. A run now, or one more pass after the run going, as
/// `/syncup/`; the run's trigger is `push`.
#[utoipa::path(
    post,
    path = "/trigger/{project}",
    tag = "runs",
    params(
        ("project" = String, Path, description = "the project id"),
        ("token" = Option<String>, Query, description = "the project's trigger token, where no Authorization header can be sent")
    ),
    responses(
        (status = 202, description = "a run started (or one more pass queued)", body = SyncupResponse),
        (status = 400, description = "not a project id", body = ErrorBody),
        (status = 401, description = "no valid trigger token for this project (the same answer when there is no such project)", body = ErrorBody),
        (status = 409, description = "the project is disabled, or has a local source", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("trigger_token" = []))
)]
pub async fn trigger(
    State(state): State<AppState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    query: QueryMap,
) -> Result<Response, ApiError> {
    let id = ProjectId::parse(project).map_err(|m| ApiError::field("project", m))?;
    let given = trigger_token_of(&headers, &query)?;
    let started = state.runs.push(&id, &given).await?;
    let body = SyncupResponse {
        method: "trigger".into(),
        success: true,
        id,
        run_id: started.run_id,
        follow_up_of: started.follow_up_of,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The trigger token a request carries: a Bearer token, or `?token=`.
fn trigger_token_of(headers: &HeaderMap, query: &QueryMap) -> Result<Secret, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let given = bearer.or(query.0.get("token").map(String::as_str)).filter(|t| !t.is_empty() && t.len() <= 256);
    given
        .map(|t| Secret::new(t.to_owned()))
        .ok_or(ApiError::Unauthorized("a trigger token is needed: Authorization: Bearer <token>, or ?token="))
}

/// `GET /trigger/{project}/runs/{run}`: the state of a run of the project (`latest`: its newest),
/// for the holder of its trigger token: what a push waits on (`mirrorctl ssh-trigger`).
#[utoipa::path(
    get,
    path = "/trigger/{project}/runs/{run}",
    tag = "runs",
    params(
        ("project" = String, Path, description = "the project id"),
        ("run" = String, Path, description = "a run number of the project, or `latest`"),
        ("token" = Option<String>, Query, description = "the project's trigger token, where no Authorization header can be sent")
    ),
    responses(
        (status = 200, description = "the run, in its public form, with `stage` while a two-stage run goes", body = RunView),
        (status = 400, description = "not a project id or a run number", body = ErrorBody),
        (status = 401, description = "no valid trigger token for this project", body = ErrorBody),
        (status = 404, description = "no such run of the project", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("trigger_token" = []))
)]
pub async fn trigger_run(
    State(state): State<AppState>,
    Path((project, run)): Path<(String, String)>,
    headers: HeaderMap,
    query: QueryMap,
) -> Result<Json<RunView>, ApiError> {
    let id = ProjectId::parse(project).map_err(|m| ApiError::field("project", m))?;
    let run = match run.as_str() {
        "latest" => None,
        n => Some(n.parse::<i64>().map_err(|_| ApiError::field("run", "must be a run number or latest"))?),
    };
    let given = trigger_token_of(&headers, &query)?;
    Ok(Json(state.runs.pushed_run(&id, &given, run).await?))
}

/// `POST /projects/{id}/trigger_token`: issues the project's trigger token, or a new one in place
/// of the old (which stops at once). Shown this once; kept hashed.
#[utoipa::path(
    post,
    path = "/projects/{id}/trigger_token",
    tag = "runs",
    params(("id" = String, Path, description = "the project id")),
    responses(
        (status = 200, description = "the new token (shown once)", body = Done<TriggerToken>),
        (status = 400, description = "not a project id", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project", body = ErrorBody),
        (status = 409, description = "the project has a local source: nothing to trigger", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn trigger_token(
    State(state): State<AppState>,
    Writer(who, _): Writer,
    Path(id): Path<String>,
) -> Result<Json<Done<TriggerToken>>, ApiError> {
    let id = ProjectId::parse(id).map_err(|m| ApiError::field("id", m))?;
    let issued = id.clone();
    let token = detached(async move { state.runs.issue_trigger_token(&who, &issued).await }).await?;
    Ok(Json(Done::new("trigger_token", TriggerToken { id, token: token.expose().to_owned() })))
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

/// `GET /runs/{id}/log[?follow=true]`: the run's full output as plain text; with `follow`, a
/// running run's output is sent as it is written, and the answer ends when the run ends. For a
/// logged-in caller only (rsync's output names local paths and files).
#[utoipa::path(
    get,
    path = "/runs/{id}/log",
    tag = "runs",
    params(
        ("id" = i64, Path, description = "the run number"),
        ("follow" = Option<bool>, Query, description = "keep sending while the run goes")
    ),
    responses(
        (status = 200, description = "the output, as it is written", content_type = "text/plain", body = String),
        (status = 400, description = "not a run number", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such run, or no output kept for it", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn run_log(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    query: QueryMap,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::field("id", "must be a run number"))?;
    let follow = match query.0.get("follow").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(_) => return Err(ApiError::field("follow", "must be true or false")),
    };
    log_response(state, &caller, id, follow).await
}

/// A run's output as a plain-text stream; `follow`: what is appended too, until the run ends (the
/// API's `/runs/{id}/log` and the console's).
pub async fn log_response(state: AppState, caller: &Principal, id: i64, follow: bool) -> Result<Response, ApiError> {
    // Its output is on the node it ran on: a request for it is passed on to that node while it is
    // alive (one that reaches this node anyway is not read from a path here, which is another
    // machine's).
    // Asked only while another node is alive (a single node reads no more than before).
    let alive = state.node.alive();
    if alive.iter().any(|n| n != state.node.name()) {
        let ran_on = crate::db::runs::node_of(&state.db, id).await?;
        if let Some(node) = ran_on.filter(|n| n != state.node.name() && alive.contains(n)) {
            return Err(ApiError::conflict("id", format!("run {id} ran on node {node}: its output is read there")));
        }
    }
    // A follower is a stream: it has a slot of its own (it is not counted as a request).
    let slot = if follow { Some(state.streams.acquire(caller.username.as_str())?) } else { None };
    let (mut file, mut going) = state.runs.output(id).await?;
    // A queued run has no output yet: a follower waits for it.
    while file.is_none() && going && follow {
        tokio::time::sleep(FOLLOW_POLL).await;
        (file, going) = state.runs.output(id).await?;
    }
    let path = file.ok_or_else(|| ApiError::not_found("id", format!("no output is kept for run {id}")))?;
    let opened = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found("id", format!("the output of run {id} is gone (logs are rotated)")))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let _slot = slot;
        send_output(state, id, opened, follow && going, tx).await;
    });
    let mut response = axum::body::Body::new(ChannelBody(rx)).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(response)
}

/// How often a follower looks for more output, and whether the run has ended.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Sends the file's bytes, then, while following, what is appended until the run ends. Stops when
/// the client goes away.
async fn send_output(
    state: AppState,
    id: i64,
    mut file: tokio::fs::File,
    follow: bool,
    tx: tokio::sync::mpsc::Sender<axum::body::Bytes>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let mut ended = !follow;
    loop {
        match file.read(&mut buf).await {
            Ok(n) if n > 0 => {
                if tx.send(axum::body::Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(_) if ended => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(run.id = id, error = %e, "cannot read the run's output");
                return;
            }
        }
        // At the end of what is written: one more pass after the run has ended, then stop.
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return,
        }
        ended = !matches!(state.runs.output(id).await, Ok((_, true)));
    }
}

/// A response body fed by a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<axum::body::Bytes>);

impl http_body::Body for ChannelBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
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
    let limit = super::extract::limit_param(&query, 50)?;
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
