//! `GET /export` and `POST /import`: the master's configuration as one YAML or JSON document.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mirror_common::ErrorBody;
use mirror_common::api::{ConfigDocument, ImportReport, PasswordField};

use mirror_common::document::Limits;

use super::detached;
use super::error::ApiError;
use super::extract::{Caller, QueryMap, RootCaller, Writer, from_value};
use crate::state::AppState;

/// The largest document `POST /import` reads (10,000 projects take about 6 MiB of YAML).
pub const MAX_IMPORT_BYTES: usize = Limits::CONFIGURATION.max_bytes;

fn flag(query: &QueryMap, name: &'static str) -> Result<bool, ApiError> {
    match query.0.get(name).map(String::as_str) {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("" | "true" | "1" | "yes") => Ok(true),
        Some(_) => Err(ApiError::field(name, "must be true or false")),
    }
}

/// `GET /export?format=yaml|json`: every project (its `dest` relative to the mirror root, a
/// password as `"set"`) and every slave (never a token).
#[utoipa::path(
    get,
    path = "/export",
    tag = "configuration",
    params(("format" = Option<String>, Query, description = "`json` (default) or `yaml`")),
    responses(
        (status = 200, description = "the whole configuration", body = ConfigDocument),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn export(State(state): State<AppState>, Caller(_): Caller, query: QueryMap) -> Result<Response, ApiError> {
    let doc = state.projects.export().await?;
    match query.0.get("format").map(String::as_str) {
        None | Some("json") => Ok(Json(doc).into_response()),
        Some("yaml") => {
            let text = serde_norway::to_string(&doc).map_err(|e| ApiError::Internal(e.into()))?;
            Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"))], text).into_response())
        }
        Some(_) => Err(ApiError::field("format", "must be json or yaml")),
    }
}

/// `POST /import?prune=&dry_run=`: the document, YAML or JSON.
#[utoipa::path(
    post,
    path = "/import",
    tag = "configuration",
    params(
        ("prune" = Option<bool>, Query, description = "also remove the projects (and slaves) the document does not name, of each kind it has"),
        ("dry_run" = Option<bool>, Query, description = "check everything and answer the changes, change nothing"),
        ("comment" = Option<String>, Query, description = "why (or X-Comment): kept with each commit")
    ),
    request_body(content = ConfigDocument, description = "YAML or JSON, up to 8 MiB"),
    responses(
        (status = 200, description = "what changed (or would)", body = ImportReport),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 409, description = "a dest overlaps another project's", body = ErrorBody),
        (status = 413, description = "the body is over 8 MiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn import(
    State(state): State<AppState>,
    Writer(caller, meta): Writer,
    query: QueryMap,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    if caller.role != mirror_common::api::Role::Root {
        return Err(ApiError::Forbidden("an import needs the root role (it may add and remove slaves)"));
    }
    let (prune, dry_run) = (flag(&query, "prune")?, flag(&query, "dry_run")?);
    let meta = meta.with_body(query.0.get("comment").cloned(), None)?;
    let bytes = axum::body::to_bytes(request.into_body(), MAX_IMPORT_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge(MAX_IMPORT_BYTES))?;
    // YAML or JSON, through the bounded reader: no alias, no duplicate key, bounded depth and
    // size, off the async workers. Its errors name the place and the line.
    let value = crate::config::document::read(bytes, Limits::CONFIGURATION).await?;
    let mut doc: ConfigDocument = from_value(value)?;
    // Passwords the document gives are hashed here, before the transaction (argon2 is slow).
    let users = match doc.users.take() {
        Some(list) => {
            let mut hashed = Vec::with_capacity(list.len());
            for (i, u) in list.into_iter().enumerate() {
                let hash = match &u.password {
                    Some(PasswordField::Value(p)) => {
                        crate::service::users::check_password(p).map_err(|e| match e {
                            ApiError::Field(mut f) => {
                                f.field = format!("users[{i}].password");
                                ApiError::Field(f)
                            }
                            other => other,
                        })?;
                        Some(crate::auth::hash_password(p, &state.users.hasher).await?)
                    }
                    _ => None,
                };
                hashed.push((u, hash));
            }
            Some(hashed)
        }
        None => None,
    };
    let created_slaves = doc.slaves.is_some();
    let (projects, cluster) = (state.projects.clone(), state.cluster.clone());
    let done = detached(async move {
        let done = projects.import(doc, users, prune, dry_run, &meta).await?;
        if created_slaves && !dry_run {
            cluster.kick();
        }
        Ok(done)
    })
    .await?;
    Ok((StatusCode::OK, Json(done.report("import", dry_run))).into_response())
}

/// `POST /reload`: applies `projects_dir` again.
#[utoipa::path(
    post,
    path = "/reload",
    tag = "configuration",
    responses(
        (status = 200, description = "what changed", body = ImportReport),
        (status = 400, description = "a file of projects_dir is invalid (named), or no projects_dir is set", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 409, description = "a dest overlaps another project's", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn reload(State(state): State<AppState>, RootCaller(caller): RootCaller) -> Result<Response, ApiError> {
    let done = detached(async move {
        crate::config::declared::reload(
            &state,
            Some(&caller.username),
            "projects_dir reload",
            crate::config::declared::OnBadFile::Refuse,
        )
        .await
    })
    .await?
    .ok_or_else(|| ApiError::field("projects_dir", "this master has no projects_dir"))?;
    // A reload adds no slave: there is never a token in its answer.
    Ok((StatusCode::OK, Json(done.report("reload", false))).into_response())
}
