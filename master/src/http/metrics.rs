//! `GET /metrics` and the middleware that counts every request by route and status.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::error::ApiError;
use super::extract::MaybeCaller;
use crate::read::metrics::Snapshot;
use crate::state::AppState;
use mirror_common::ErrorBody;

/// Whether the rsync daemon slaves pull from runs: as its supervisor knows it when managed here,
/// else whether it accepts a connection.
async fn rsyncd_up(state: &AppState) -> bool {
    if let Some(health) = &state.rsyncd {
        return health.get().up;
    }
    let r = &state.settings.rsyncd;
    let connect = tokio::net::TcpStream::connect((r.host.as_str(), r.port));
    matches!(tokio::time::timeout(Duration::from_millis(500), connect).await, Ok(Ok(_)))
}

/// `GET /metrics`: for a logged-in caller, or anyone when `metrics_public` (the labels name the
/// slaves' hosts, which the public views keep to themselves).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn metrics(State(state): State<AppState>, caller: MaybeCaller) -> Result<Response, ApiError> {
    if !state.settings.metrics_public && caller.0.is_none() {
        return Err(ApiError::Unauthorized("metrics need a login on this master (or metrics_public = true)"));
    }
    let projects = state.listing.states(&state.db).await?;
    let served = state.slaves.served_by(&projects).await?;
    let rsyncd_up = rsyncd_up(&state).await;
    let default_max_age_secs = state.settings.stale_after_secs;
    // Only the targets the projects have now (a removed target's pushes stay in the history).
    let by_id: std::collections::HashMap<&str, &crate::read::views::ProjectState> =
        projects.iter().map(|s| (s.row.id.as_str(), s.as_ref())).collect();
    let has_target = |project: &str, target: &str| {
        by_id.get(project).is_some_and(|s| s.row.targets.iter().any(|t| t.name.as_str() == target))
    };
    let target_successes = crate::db::targets::last_successes(&state.db)
        .await?
        .into_iter()
        .filter(|(project, target, _)| has_target(project, target))
        .map(|(project, target, t)| (project, target, t.to_datetime()))
        .collect();
    let snapshot = Snapshot { now: Utc::now(), projects, served, rsyncd_up, default_max_age_secs, target_successes };
    let metrics = state.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.render(snapshot))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot render the metrics: {e}")))?;
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// Middleware: counts the request under its route pattern (never the raw path: ids stay out of
/// the labels' values, bounded) with its status and the time until the answer started.
pub async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16(), started.elapsed());
    response
}
