//! What anyone may see of the mirrors: the status page (`/`, `/status`, `/status/{id}`), the
//! master's own status as JSON (`/status` for clients that do not ask for HTML), and tunasync's
//! `/jobs`, and mirrorz's `/mirrorz.json`. All follow `public_read`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use mirror_common::api::{Done, MasterStatus, Mirrorz, ProjectId, TunasyncJob};

use super::error::ApiError;
use super::extract::MaybeCaller;
use crate::read::{mirrorz, status_page, views};
use crate::state::AppState;
use mirror_common::ErrorBody;

fn may_read(state: &AppState, caller: &MaybeCaller) -> Result<(), ApiError> {
    if !state.settings.public_read && caller.0.is_none() {
        return Err(ApiError::Unauthorized("this master shows its mirrors to logged-in users only"));
    }
    Ok(())
}

/// A browser asks for `text/html`; curl and scripts do not.
fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

fn stale_after(state: &AppState) -> u64 {
    state.settings.stale_after_secs
}

fn html(page: String) -> Response {
    let mut response = Html(page).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the status page.
#[utoipa::path(
    get,
    path = "/",
    tag = "status",
    responses(
        (status = 200, description = "the status page", content_type = "text/html", body = String),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn index(State(state): State<AppState>, caller: MaybeCaller) -> Result<Response, ApiError> {
    may_read(&state, &caller)?;
    let states = state.listing.states(&state.db).await?;
    let daemon_down = state.rsyncd.as_ref().is_some_and(|h| !h.get().up);
    Ok(html(status_page::index(&states, Utc::now(), stale_after(&state), daemon_down)))
}

/// `GET /status`: the status page for a browser; for anyone else the master's version and whether
/// rsync runs are confined (the details, helper path and account, only for a logged-in caller).
#[utoipa::path(
    get,
    path = "/status/",
    tag = "status",
    responses(
        (status = 200, description = "the master's version and confinement (the status page for a client that accepts text/html)", body = Done<MasterStatus>),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn status(
    State(state): State<AppState>,
    caller: MaybeCaller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if wants_html(&headers) {
        return index(State(state), caller).await;
    }
    let logged_in = caller.0.is_some();
    let body = MasterStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        confined: state.confine.confined(),
        confinement: logged_in.then(|| state.confine.detail.clone()),
        run_as: state.settings.run_as.clone().filter(|_| logged_in),
        rsync_daemon: state.rsyncd.as_ref().map(|h| {
            let now = h.get();
            mirror_common::api::DaemonStatus { managed: true, up: now.up, reason: now.reason.filter(|_| logged_in) }
        }),
    };
    Ok(Json(Done::new("status", body)).into_response())
}

/// `GET /status/{id}`: one project's page.
#[utoipa::path(
    get,
    path = "/status/{id}",
    tag = "status",
    params(("id" = String, Path, description = "the project id")),
    responses(
        (status = 200, description = "one project's status page", content_type = "text/html", body = String),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn project(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    may_read(&state, &caller)?;
    let not_found = || ApiError::not_found("id", format!("no project with id '{}'", id.escape_debug()));
    let pid = ProjectId::parse(id.as_str()).map_err(|_| not_found())?;
    let states = state.listing.states(&state.db).await?;
    let project = states.into_iter().find(|s| s.row.id == pid).ok_or_else(not_found)?;
    // The page is the same whoever reads it: runs and slaves in their public form.
    let runs = state.runs.list(caller.0.as_ref(), Some(&pid), 10).await?;
    let runs: Vec<_> = runs.into_iter().map(|r| r.public()).collect();
    let propagation = state.slaves.propagation(&pid, true).await?;
    Ok(html(status_page::project(&project, &runs, &propagation, Utc::now(), stale_after(&state))))
}

/// `GET /jobs`: every project as tunasync's manager lists its jobs.
#[utoipa::path(
    get,
    path = "/jobs",
    tag = "status",
    responses(
        (status = 200, description = "every project as tunasync's manager lists its jobs", body = Vec<TunasyncJob>),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn jobs(State(state): State<AppState>, caller: MaybeCaller) -> Result<Json<Vec<TunasyncJob>>, ApiError> {
    may_read(&state, &caller)?;
    let states = state.listing.states(&state.db).await?;
    Ok(Json(states.iter().map(|s| views::tunasync_job(s)).collect()))
}

/// `GET /mirrorz.json`: the site and every project in mirrorz's format (version 1.7), for the
/// mirrorz aggregator and the tools that read it.
#[utoipa::path(
    get,
    path = "/mirrorz.json",
    tag = "status",
    responses(
        (status = 200, description = "the site and its mirrors in mirrorz's format 1.7", body = Mirrorz),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "the configuration has no [site] table", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security((), ("basic" = []), ("bearer" = []))
)]
pub async fn mirrorz(State(state): State<AppState>, caller: MaybeCaller) -> Result<Json<Mirrorz>, ApiError> {
    may_read(&state, &caller)?;
    let Some(site) = &state.settings.site else {
        return Err(ApiError::not_found(
            "site",
            "this master describes no site: add a [site] table (url, abbr, ...) to its configuration",
        ));
    };
    let states = state.listing.states(&state.db).await?;
    Ok(Json(mirrorz::document(site, &state.mirror_root, &states)))
}
