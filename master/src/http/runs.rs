//! Runs: start one now (`/syncup/`), and their history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mirror_common::api::{RunView, SyncupResponse};

use super::detached;
use super::error::ApiError;
use super::extract::{Caller, MaybeCaller, QueryMap, id_param};
use crate::db;
use crate::runner::Trigger;
use crate::state::AppState;
use crate::views::run_view;

/// `/syncup/?id=` (or `?project=`, as the 2014 README wrote it): starts a run now and answers at
/// once with its id; 409 while the project's previous run is going.
pub async fn syncup(State(state): State<AppState>, Caller(who): Caller, query: QueryMap) -> Result<Response, ApiError> {
    let id = id_param(&query)?;
    // Detached: a request dropped between the run's row and its place in the queue would leave
    // the project marked as running for good.
    let runner = state.runner.clone();
    let project = id.clone();
    let run_id = detached(async move { Ok(runner.trigger(&project, Trigger::Manual, None).await?) }).await?;
    tracing::info!(project.id = %id, run.id = run_id, user.name = %who.username, "manual run started");
    let body = SyncupResponse { method: "syncup".into(), success: true, id, run_id };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

fn may_read(state: &AppState, caller: &MaybeCaller) -> Result<(), ApiError> {
    if !state.settings.public_read && caller.0.is_none() {
        return Err(ApiError::Unauthorized("reading runs needs a login on this master"));
    }
    Ok(())
}

/// `GET /runs/?project=&limit=`: newest first, without log tails.
pub async fn list_runs(
    State(state): State<AppState>,
    caller: MaybeCaller,
    query: QueryMap,
) -> Result<Json<Vec<RunView>>, ApiError> {
    may_read(&state, &caller)?;
    let limit = match query.0.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::field("limit", "must be a number from 1 to 1000"))?,
        None => 50,
    };
    let project = query.0.get("project").or_else(|| query.0.get("id")).map(String::as_str);
    let rows = db::runs::list(&state.db, project, limit).await?;
    let public = caller.0.is_none();
    Ok(Json(rows.iter().map(|r| run_view(r, false)).map(|v| if public { v.public() } else { v }).collect()))
}

/// `GET /runs/{id}`: one run, with the last 64 KiB of its output.
pub async fn get_run(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    may_read(&state, &caller)?;
    let id: i64 = id.parse().map_err(|_| ApiError::field("id", "must be a run number"))?;
    let row = db::runs::get(&state.db, id).await?.ok_or_else(|| ApiError::not_found("id", format!("no run {id}")))?;
    // rsync's output names local paths, symlink targets and files: only for a logged-in caller.
    let view = run_view(&row, caller.0.is_some());
    Ok(Json(if caller.0.is_none() { view.public() } else { view }))
}
