//! resource-sync's conventions (the microcosm-resourcesync seed), so that its published client
//! captures a master's projects into a directory of files and replays them into another master
//! unchanged: `GET /api` links the collections; `GET /api/projects` lists projects as HAL items
//! (`id`, the configuration as an export shows it but for the password, `_links.self.href`
//! ending in `/projects/{id}` and one `parent:projects` link per `depends_on`, so that its
//! topological sort replays dependencies first), in pages with `next` links sized by
//! `X-Request-Limit`; `PUT /api/projects/{id}` writes one item through the one write path (its
//! `_links` ignored); `PATCH /api/projects` with `{"items": [...]}` (the microcosm batch convention)
//! applies many in one transaction. The client reads `application/json` only (it compares the
//! content type exactly), so that is what these answer.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mirror_common::ErrorBody;
use mirror_common::api::{ConfigDocument, ProjectDoc, ProjectId};
use mirror_common::document::Limits;
use serde_json::{Map, Value, json};

use super::detached;
use super::error::ApiError;
use super::extract::{Caller, QueryMap, RootWriter, Writer};
use crate::db;
use crate::state::AppState;

/// Items per page at most, whatever `X-Request-Limit` asks.
const MAX_PAGE: usize = 1000;

use super::json_answer as json_response;

/// `http://<Host>`: links name the address the client used.
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    format!("http://{}", host.unwrap_or("localhost"))
}

fn href(base: &str, id: &str) -> Value {
    json!({"href": format!("{base}/api/projects/{id}")})
}

/// One project as an item: its export document, no password, and its links.
fn item(row: &db::projects::ProjectRow, state: &AppState, base: &str) -> Result<Value, ApiError> {
    let mut o =
        crate::service::documents::project_config(row, &state.mirror_root).map_err(|e| ApiError::Internal(e.into()))?;
    let mut links = Map::new();
    links.insert("self".into(), href(base, row.id.as_str()));
    if !row.depends_on.is_empty() {
        let parents: Vec<Value> = row.depends_on.iter().map(|d| href(base, d.as_str())).collect();
        links.insert("parent:projects".into(), Value::Array(parents));
    }
    o.insert("_links".into(), Value::Object(links));
    Ok(Value::Object(o))
}

/// `GET /api`.
#[utoipa::path(
    get,
    path = "/api",
    tag = "resource-sync",
    responses(
        (status = 200, description = "HAL JSON (as application/json)", body = serde_json::Value),
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
pub async fn root(Caller(_): Caller, headers: HeaderMap) -> Response {
    let base = base(&headers);
    json_response(
        StatusCode::OK,
        json!({"_links": {"self": {"href": format!("{base}/api")}, "child:projects": {"href": format!("{base}/api/projects")}}}),
    )
}

/// `GET /api/projects[?offset=N]`, `X-Request-Limit: L`.
#[utoipa::path(
    get,
    path = "/api/projects",
    tag = "resource-sync",
    params(
        ("offset" = Option<u64>, Query, description = "the first item"),
        ("X-Request-Limit" = Option<u64>, Header, description = "items per page (1 to 1000, default 100)")
    ),
    responses(
        (status = 200, description = "HAL JSON (as application/json)", body = serde_json::Value),
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
pub async fn list(
    State(state): State<AppState>,
    Caller(_): Caller,
    headers: HeaderMap,
    query: QueryMap,
) -> Result<Response, ApiError> {
    let limit =
        match headers.get("x-request-limit").map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok())) {
            None => 100,
            Some(Some(n)) if n >= 1 => n.min(MAX_PAGE),
            Some(_) => return Err(ApiError::field("X-Request-Limit", "must be a positive number")),
        };
    let offset = match query.0.get("offset") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| ApiError::field("offset", "must be a number"))?,
    };
    let base = base(&headers);
    let rows = db::projects::list(&state.db).await?;
    let total = rows.len();
    let items = rows.iter().skip(offset).take(limit).map(|r| item(r, &state, &base)).collect::<Result<Vec<_>, _>>()?;
    let mut links = Map::new();
    links.insert("self".into(), json!({"href": format!("{base}/api/projects?offset={offset}")}));
    if offset + limit < total {
        links.insert("next".into(), json!({"href": format!("{base}/api/projects?offset={}", offset + limit)}));
    }
    if offset > 0 {
        links.insert(
            "prev".into(),
            json!({"href": format!("{base}/api/projects?offset={}", offset.saturating_sub(limit))}),
        );
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"items": items, "count": total, "offset": offset, "limit": limit, "_links": links}),
    ))
}

/// `OPTIONS /api/projects`: what the collection allows (resource-sync asks before it batches).
#[utoipa::path(
    options,
    path = "/api/projects",
    tag = "resource-sync",
    responses((status = 204, description = "Allow: GET, PATCH, OPTIONS"))
)]
pub async fn options() -> Response {
    (StatusCode::NO_CONTENT, [(header::ALLOW, HeaderValue::from_static("GET, PATCH, OPTIONS"))]).into_response()
}

fn project_id(id: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(id).map_err(|m| ApiError::field("id", m))
}

/// `GET /api/projects/{id}`.
#[utoipa::path(
    get,
    path = "/api/projects/{id}",
    tag = "resource-sync",
    params(
        ("id" = String, Path, description = "the project id")
    ),
    responses(
        (status = 200, description = "HAL JSON (as application/json)", body = serde_json::Value),
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
pub async fn get(
    State(state): State<AppState>,
    Caller(_): Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = project_id(&id)?;
    let row = db::projects::get(&state.db.read, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", format!("no project with id '{id}'")))?;
    Ok(json_response(StatusCode::OK, item(&row, &state, &base(&headers))?))
}

/// An item as a client sends it back, its links dropped.
fn without_links(v: Value) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(mut o) = v else {
        return Err(ApiError::BadJson { field: None, message: "an item must be an object".into() });
    };
    o.remove("_links");
    o.remove("_embedded");
    Ok(o)
}

/// `PUT /api/projects/{id}`: the item's whole configuration (as `PUT /projects/{id}`).
#[utoipa::path(
    put,
    path = "/api/projects/{id}",
    tag = "resource-sync",
    params(
        ("id" = String, Path, description = "the project id")
    ),
    request_body(content = String, content_type = "application/json", description = "the project's whole configuration, YAML or JSON"),
    responses(
        (status = 200, description = "changed", body = serde_json::Value),
        (status = 201, description = "HAL JSON (as application/json)", body = serde_json::Value),
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
pub async fn put(
    State(state): State<AppState>,
    Writer(_, meta): Writer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = project_id(&id)?;
    let item_in = without_links(crate::config::document::read(body, Limits::PROJECT_FILE).await?)?;
    let req = super::extract::add_project_from(item_in)?;
    let s = state.clone();
    let (row, created) = detached(async move { s.projects.put(&id, req, &meta).await }).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_response(status, item(&row, &state, &base(&headers))?))
}

/// `PATCH /api/projects` with `{"items": [...]}`: every item in one transaction (an import of
/// these projects, nothing pruned; root, as every import).
#[utoipa::path(
    patch,
    path = "/api/projects",
    tag = "resource-sync",
    request_body(content = String, content_type = "application/json", description = "the project's whole configuration, YAML or JSON"),
    responses(
        (status = 200, description = "what changed", body = mirror_common::api::ImportReport),
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
pub async fn patch(
    State(state): State<AppState>,
    RootWriter(_, meta): RootWriter,
    body: Bytes,
) -> Result<Response, ApiError> {
    let doc = crate::config::document::read(body, Limits::CONFIGURATION).await?;
    let items = match doc {
        Value::Object(mut o) => o.remove("items"),
        _ => None,
    };
    let Some(Value::Array(items)) = items else {
        return Err(ApiError::field("items", "the body must be {\"items\": [...]}"));
    };
    let mut projects: Vec<ProjectDoc> = Vec::with_capacity(items.len());
    for (i, v) in items.into_iter().enumerate() {
        let o = without_links(v)?;
        projects.push(super::extract::from_value(Value::Object(o)).map_err(|e| match e {
            ApiError::Field(mut f) => {
                f.field = format!("items[{i}].{}", f.field);
                ApiError::Field(f)
            }
            other => other,
        })?);
    }
    let doc = ConfigDocument { projects: Some(projects), slaves: None, users: None };
    let s = state.clone();
    let done = detached(async move { s.projects.import(doc, None, false, false, &meta).await }).await?;
    Ok(json_response(StatusCode::OK, serde_json::to_value(done.report("patch", false)).unwrap_or(Value::Null)))
}
