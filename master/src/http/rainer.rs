//! Rainer's HTTP API over project configurations (the Rainer seed, "HTTP server"), so that its
//! published clients (pyrainer's library and command line) work unchanged: `GET /rainer/projects`
//! lists the newest version of every project as `key -> meta`; `GET /rainer/projects/{key}[/{version}]`
//! is a version's payload, `.../meta` its metadata; `POST /rainer/projects/{key}/{version}` commits
//! the next version (exactly the current plus one, else 409, Rainer's rule) through the one write
//! path every change takes. The payload is the project's configuration as YAML (or JSON), as
//! `mirrorctl edit` shows it: bytes committed here are served back verbatim; versions made by other
//! paths are rendered as canonical YAML. No payload ever holds a password.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use mirror_common::ErrorBody;
use mirror_common::api::ProjectId;
use mirror_common::document::Limits;
use serde_json::{Map, Value, json};

use super::detached;
use super::error::ApiError;
use super::extract::{Caller, QueryMap, Writer};
use crate::db::{self, commits::CommitRow};
use crate::service::history::StoredProject;
use crate::service::projects::KIND;
use crate::state::AppState;

fn key_of(key: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(key).map_err(|m| ApiError::field("key", m))
}

fn yes(query: &QueryMap, name: &str) -> bool {
    query.0.get(name).is_some_and(|v| matches!(v.as_str(), "yes" | "true" | "1" | ""))
}

/// Rainer's metadata of a commit: `author`, `comment`, `key`, `mtime`, `version`, and `empty`
/// for a removal.
fn meta(c: &CommitRow) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("author".into(), json!(c.author.clone().unwrap_or_else(|| "mirror-master".into())));
    m.insert("comment".into(), json!(c.comment.clone().unwrap_or_default()));
    m.insert("key".into(), json!(c.key));
    m.insert("mtime".into(), json!(c.created_at));
    m.insert("version".into(), json!(c.version));
    if c.content.is_none() {
        m.insert("empty".into(), json!(true));
    }
    m
}

/// A version's payload: the bytes it was committed with here, else its configuration as
/// canonical YAML (the shape `PUT /projects/{id}` takes, without the password). Empty for a removal.
async fn payload(state: &AppState, c: &CommitRow) -> Result<Vec<u8>, ApiError> {
    let Some(content) = &c.content else { return Ok(Vec::new()) };
    if let Some(bytes) = db::commits::payload(&state.db, KIND, &c.key, c.version).await? {
        return Ok(bytes);
    }
    let stored: StoredProject = serde_json::from_str(content).map_err(|e| ApiError::Internal(e.into()))?;
    let text = crate::service::documents::project_yaml(&stored.config, &state.mirror_root)?;
    Ok(text.into_bytes())
}

async fn commit(state: &AppState, key: &ProjectId, version: Option<i64>) -> Result<CommitRow, ApiError> {
    let not_found = || ApiError::not_found("key", format!("no version of '{key}'"));
    let version = match version {
        Some(v) => v,
        None => db::commits::latest_version(&state.db.read, KIND, key.as_str()).await?,
    };
    db::commits::get(&state.db.read, KIND, key.as_str(), version).await?.ok_or_else(not_found)
}

fn json_response(v: Value) -> Response {
    super::json_answer(StatusCode::OK, v)
}

/// `GET /rainer/projects[?all=yes][&payload_base64=yes]`.
#[utoipa::path(
    get,
    path = "/rainer/projects",
    tag = "rainer",
    params(
        ("all" = Option<String>, Query, description = "`yes`: removed projects too"),
        ("payload_base64" = Option<String>, Query, description = "`yes`: each payload too")
    ),
    responses(
        (status = 200, description = "Rainer's metadata (key -> meta for the list)", body = serde_json::Value),
        (status = 400, description = "a field is invalid, or the body is not a document of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project or version", body = ErrorBody),
        (status = 409, description = "a conflict: not the current version plus one, a dest taken, dependents", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, Caller(_): Caller, query: QueryMap) -> Result<Response, ApiError> {
    let with_payload = yes(&query, "payload_base64");
    let mut out = Map::new();
    for c in db::commits::latest_each(&state.db, KIND, yes(&query, "all")).await? {
        let mut m = meta(&c);
        if with_payload {
            let bytes = payload(&state, &c).await?;
            m.insert("payload_base64".into(), json!(base64::engine::general_purpose::STANDARD.encode(bytes)));
        }
        out.insert(c.key.clone(), Value::Object(m));
    }
    Ok(json_response(Value::Object(out)))
}

/// What follows the key: nothing, `meta`, a version, or a version and `meta`.
fn parse_rest(rest: &str) -> Result<(Option<i64>, bool), ApiError> {
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let version = |v: &str| {
        v.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| ApiError::field("version", "must be a version number"))
    };
    match parts.as_slice() {
        [] => Ok((None, false)),
        ["meta"] => Ok((None, true)),
        [v] => Ok((Some(version(v)?), false)),
        [v, "meta"] => Ok((Some(version(v)?), true)),
        _ => Err(ApiError::not_found("key", "no such Rainer resource")),
    }
}

async fn read(state: &AppState, key: &str, rest: &str) -> Result<Response, ApiError> {
    let key = key_of(key)?;
    let (version, want_meta) = parse_rest(rest)?;
    let c = commit(state, &key, version).await?;
    if want_meta {
        return Ok(json_response(Value::Object(meta(&c))));
    }
    let bytes = payload(state, &c).await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))], bytes)
        .into_response())
}

/// `GET /rainer/projects/{key}` (the newest version's payload).
#[utoipa::path(
    get,
    path = "/rainer/projects/{key}",
    tag = "rainer",
    params(
        ("key" = String, Path, description = "the project id")
    ),
    responses(
        (status = 200, description = "the payload, or the metadata for `meta`", content_type = "application/octet-stream", body = String),
        (status = 400, description = "a field is invalid, or the body is not a document of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project or version", body = ErrorBody),
        (status = 409, description = "a conflict: not the current version plus one, a dest taken, dependents", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn get_latest(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    read(&state, &key, "").await
}

/// `GET /rainer/projects/{key}/meta` and `/{key}/{version}`.
#[utoipa::path(
    get,
    path = "/rainer/projects/{key}/{rest}",
    tag = "rainer",
    params(
        ("key" = String, Path, description = "the project id"),
        ("rest" = String, Path, description = "`meta`, or a version number")
    ),
    responses(
        (status = 200, description = "the payload, or the metadata for `meta`", content_type = "application/octet-stream", body = String),
        (status = 400, description = "a field is invalid, or the body is not a document of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project or version", body = ErrorBody),
        (status = 409, description = "a conflict: not the current version plus one, a dest taken, dependents", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn get_one(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path((key, rest)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    read(&state, &key, &rest).await
}

/// `GET /rainer/projects/{key}/{version}/meta`.
#[utoipa::path(
    get,
    path = "/rainer/projects/{key}/{version}/{meta}",
    tag = "rainer",
    params(
        ("key" = String, Path, description = "the project id"),
        ("version" = i64, Path, description = "a version number"),
        ("meta" = String, Path, description = "`meta`")
    ),
    responses(
        (status = 200, description = "Rainer's metadata (key -> meta for the list)", body = serde_json::Value),
        (status = 400, description = "a field is invalid, or the body is not a document of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project or version", body = ErrorBody),
        (status = 409, description = "a conflict: not the current version plus one, a dest taken, dependents", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn get_version_meta(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path((key, version, meta)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    read(&state, &key, &format!("{version}/{meta}")).await
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match headers.get(name).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v.trim().to_owned())),
        Some(Err(_)) => Err(ApiError::field(name.to_owned(), "must be visible ASCII")),
    }
}

/// `POST /rainer/projects/{key}/{version}`: the next version of the project, from the whole
/// configuration in the body; `X-Rainer-Empty: true` removes it. The author is the logged-in user;
/// an `X-Rainer-Author` naming someone else is kept in the comment.
#[utoipa::path(
    post,
    path = "/rainer/projects/{key}/{rest}",
    tag = "rainer",
    params(
        ("key" = String, Path, description = "the project id"),
        ("rest" = i64, Path, description = "the new version: the current plus one"),
        ("X-Rainer-Author" = Option<String>, Header, description = "kept in the comment when not the logged-in user"),
        ("X-Rainer-Comment" = Option<String>, Header, description = "why"),
        ("X-Rainer-Empty" = Option<String>, Header, description = "`true`: remove the project")
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "the project's whole configuration, YAML or JSON"),
    responses(
        (status = 200, description = "the new version's metadata", body = serde_json::Value),
        (status = 400, description = "a field is invalid, or the body is not a document of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project or version", body = ErrorBody),
        (status = 409, description = "a conflict: not the current version plus one, a dest taken, dependents", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn post(
    State(state): State<AppState>,
    Writer(caller, meta): Writer,
    Path((key, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = key_of(&key)?;
    let version: i64 = version
        .parse()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| ApiError::field("version", "must be a version number"))?;
    let empty = header_text(&headers, "x-rainer-empty")?.is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let claimed = header_text(&headers, "x-rainer-author")?.filter(|a| !a.is_empty());
    let mut comment = header_text(&headers, "x-rainer-comment")?.filter(|c| !c.is_empty());
    if let Some(a) = claimed.filter(|a| a != caller.username.as_str()) {
        comment = Some(match comment {
            Some(c) => format!("{c} (X-Rainer-Author: {a})"),
            None => format!("X-Rainer-Author: {a}"),
        });
    }
    let change = crate::service::history::Meta { comment, based_on: Some(version - 1), ..meta };
    let id = key.clone();
    if empty {
        let s = state.clone();
        detached(async move { s.projects.remove(&id, &change).await }).await?;
        let c = commit(&state, &key, Some(version)).await?;
        return Ok(json_response(Value::Object(self::meta(&c))));
    }
    let value = crate::config::document::read(body.clone(), Limits::PROJECT_FILE).await?;
    let Value::Object(mut value) = value else {
        return Err(ApiError::BadJson { field: None, message: "the payload must be a mapping".into() });
    };
    value.entry("project").or_insert_with(|| json!(key.as_str()));
    let req = super::extract::add_project_from(value)?;
    let s = state.clone();
    let (saved, _) = detached(async move { s.projects.put(&id, req, &change).await }).await?;
    let current = db::commits::latest_version(&state.db.read, KIND, saved.id.as_str()).await?;
    // The bytes are kept with the version they made (none when nothing changed).
    if current == version {
        db::commits::set_payload(&state.db, KIND, key.as_str(), version, &body).await?;
    }
    let c = commit(&state, &key, Some(current)).await?;
    Ok(json_response(Value::Object(self::meta(&c))))
}
