//! A project's versions (Rainer): `GET /projects/{id}/history`, `GET /projects/{id}/versions/{n}`,
//! `POST /projects/{id}/revert`.

use axum::Json;
use axum::extract::{Path, State};
use mirror_common::ErrorBody;
use mirror_common::api::{CommitView, Done, History, ProjectId, ProjectUpdated, Revert, VersionView};

use super::detached;
use super::error::ApiError;
use super::extract::{ApiJson, Caller, QueryMap, RootCaller, Writer};
use crate::db::{self, commits::CommitRow};
use crate::service::history::{StoredProject, changed_fields};
use crate::service::projects::KIND;
use crate::state::AppState;

fn project_id(id: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(id).map_err(|m| ApiError::field("id", m))
}

/// A commit's configuration as shown (no commit holds a secret).
fn shown(c: &CommitRow) -> Option<serde_json::Value> {
    let text = c.content.as_deref()?;
    if c.kind == KIND {
        let stored: StoredProject = serde_json::from_str(text).ok()?;
        return Some(stored.public_json());
    }
    serde_json::from_str(text).ok()
}

fn commit_view(c: &CommitRow, before: Option<&CommitRow>) -> CommitView {
    let (now, then) = (shown(c), before.and_then(shown));
    CommitView {
        version: c.version,
        author: c.author.clone(),
        comment: c.comment.clone(),
        created_at: c.created_at,
        removed: c.content.is_none(),
        changed: changed_fields(then.as_ref(), now.as_ref()),
    }
}

/// `GET /projects/{id}/history?limit=&before=`: newest first; also for a removed project.
#[utoipa::path(
    get,
    path = "/projects/{id}/history",
    tag = "history",
    params(
        ("id" = String, Path, description = "the project id"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
        ("before" = Option<i64>, Query, description = "only versions older than this one")
    ),
    responses(
        (status = 200, description = "the versions, newest first, with the fields each changed", body = History),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path(id): Path<String>,
    query: QueryMap,
) -> Result<Json<History>, ApiError> {
    let id = project_id(&id)?;
    history_of(&state, KIND, id.as_str(), &query).await
}

/// The versions of `key` of `kind`, newest first.
async fn history_of(state: &AppState, kind: &str, key: &str, query: &QueryMap) -> Result<Json<History>, ApiError> {
    let number = |name: &'static str, default: Option<i64>| match query.0.get(name) {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| ApiError::field(name, "must be a positive number")),
        None => Ok(default),
    };
    let limit = number("limit", Some(100))?.unwrap_or(100).min(1000);
    let before = number("before", None)?;
    // One more than shown: the version before the oldest shown, to say what that one changed.
    let rows = db::commits::history(&state.db, kind, key, limit + 1, before).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found("id", format!("{kind} {key} has no history")));
    }
    let shown_rows = rows.len().min(usize::try_from(limit).unwrap_or(usize::MAX));
    let versions = (0..shown_rows).map(|i| commit_view(&rows[i], rows.get(i + 1))).collect();
    Ok(Json(History { key: key.to_owned(), versions }))
}

/// `GET /users/{name}/history`: who created the user, changed its role or password, removed it.
#[utoipa::path(
    get,
    path = "/users/{name}/history",
    tag = "history",
    params(
        ("name" = String, Path, description = "the user"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
        ("before" = Option<i64>, Query, description = "only versions older than this one")
    ),
    responses(
        (status = 200, description = "the versions (name and role; never a password), newest first", body = History),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn user_history(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    Path(name): Path<String>,
    query: QueryMap,
) -> Result<Json<History>, ApiError> {
    let name = mirror_common::api::Name::parse(name).map_err(|m| ApiError::field("name", m))?;
    history_of(&state, crate::service::users::KIND, name.as_str(), &query).await
}

/// `GET /slaves/{slave}/history` (`host:port`): when it was added, its token rotated, removed.
#[utoipa::path(
    get,
    path = "/slaves/{slave}/history",
    tag = "history",
    params(
        ("slave" = String, Path, description = "host:port"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
        ("before" = Option<i64>, Query, description = "only versions older than this one")
    ),
    responses(
        (status = 200, description = "the versions (host and port; never a token), newest first", body = History),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn slave_history(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    Path(slave): Path<String>,
    query: QueryMap,
) -> Result<Json<History>, ApiError> {
    let (host, port) =
        crate::cluster::parse_slave_name(&slave).ok_or_else(|| ApiError::field("slave", "must be host:port"))?;
    let key = crate::cluster::slave_name(&host, i64::from(port));
    history_of(&state, crate::service::slaves::KIND, &key, &query).await
}

/// `GET /projects/{id}/versions/{n}`.
#[utoipa::path(
    get,
    path = "/projects/{id}/versions/{version}",
    tag = "history",
    params(("id" = String, Path, description = "the project id"), ("version" = i64, Path, description = "the version")),
    responses(
        (status = 200, description = "the version and the whole configuration it recorded", body = VersionView),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn version(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    let id = project_id(&id)?;
    let version = version.parse::<i64>().map_err(|_| ApiError::field("version", "must be a version number"))?;
    let not_found = || ApiError::not_found("version", format!("{id} has no version {version}"));
    let c = db::commits::get(&state.db.read, KIND, id.as_str(), version).await?.ok_or_else(not_found)?;
    let before = match version {
        1 => None,
        v => db::commits::get(&state.db.read, KIND, id.as_str(), v - 1).await?,
    };
    Ok(Json(VersionView { key: id.to_string(), commit: commit_view(&c, before.as_ref()), config: shown(&c) }))
}

/// `POST /projects/{id}/revert`.
#[utoipa::path(
    post,
    path = "/projects/{id}/revert",
    tag = "history",
    params(("id" = String, Path, description = "the project id")),
    request_body = Revert,
    responses(
        (status = 200, description = "a new version with the old configuration", body = Done<ProjectUpdated>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 409, description = "If-Match names another version than the current one, or the dest is taken", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn revert(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Revert>,
) -> Result<Json<Done<ProjectUpdated>>, ApiError> {
    let id = project_id(&id)?;
    let meta = meta.with_body(req.comment.clone(), None)?;
    let row = detached(async move { state.projects.revert(&id, req.version, req.rsync_password, &meta).await }).await?;
    Ok(Json(Done::new("revert", ProjectUpdated { id: row.config.id, project: row.config.project })))
}
