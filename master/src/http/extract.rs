//! Extractors whose rejections come out as `ApiError`, naming the offending field.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use serde::de::DeserializeOwned;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mirror_common::api::{AddProject, ProjectId, Role};

use super::error::ApiError;
use crate::auth::Principal;
use crate::state::AppState;

/// The largest request body accepted. Every endpoint takes a small JSON document (a project with
/// 64 options of 1 KiB in each layer stays under it); a larger body is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON body. Any content type is accepted (curl's `-d` sends a form type), but the body must be
/// a JSON document of the right shape: a wrong type, a missing or an unknown field is a 400 that
/// names the field (`cron_options.minute`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Send + 'static, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(MAX_BODY_BYTES)
            } else {
                ApiError::BadJson { field: None, message: format!("cannot read the request body: {e}") }
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadJson { field: None, message: "the request body must be a JSON object".into() });
        }
        // A large body is read off the async workers (the reader bounds its own time).
        if bytes.len() > 16 * 1024 {
            return tokio::task::spawn_blocking(move || parse_json(&bytes).map(ApiJson))
                .await
                .map_err(|e| ApiError::Internal(e.into()))?;
        }
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    mirror_common::parse_json(bytes).map_err(rejected)
}

pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    mirror_common::from_json_value(value).map_err(rejected)
}

/// A project's whole configuration as the seeds' clients send it back (a Rainer payload, a
/// resource-sync item) into the body `PUT /projects/{id}` takes: a `"set"` password (what they were
/// given for one that is kept) is dropped, so that the project keeps its own.
pub fn add_project_from(mut config: serde_json::Map<String, serde_json::Value>) -> Result<AddProject, ApiError> {
    if config.get("rsync_password").is_some_and(|p| p == "set") {
        config.remove("rsync_password");
    }
    from_value(serde_json::Value::Object(config))
}

/// A value that broke its type's rule is an `invalid_field`; a document of the wrong shape is `bad_json`.
fn rejected(r: mirror_common::JsonRejection) -> ApiError {
    match (r.invalid_value, r.field) {
        (true, Some(field)) => ApiError::Field(mirror_common::FieldError::new(field, r.message)),
        (_, field) => ApiError::BadJson { field, message: r.message },
    }
}

/// Whoever is calling, if anyone: wrong credentials are still a 401.
pub struct MaybeCaller(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(MaybeCaller(state.auth.authenticate(&state.db, parts).await?))
    }
}

/// An authenticated caller of any role (`root` or `user`).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match MaybeCaller::from_request_parts(parts, state).await? {
            MaybeCaller(Some(p)) => Ok(Caller(p)),
            MaybeCaller(None) => Err(ApiError::Unauthorized("log in with HTTP Basic or a Bearer token")),
        }
    }
}

/// A logged-in caller making a change, and what its headers say of the change: `X-Comment` (why)
/// and `If-Match` (the version it was based on; `3`, `"3"` or `W/"3"`).
pub struct Writer(pub Principal, pub crate::service::history::Meta);

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(p) = Caller::from_request_parts(parts, state).await?;
        let header = |name: &str| parts.headers.get(name).map(|v| v.to_str().map(str::trim));
        let comment = match header("x-comment") {
            Some(Ok(c)) => Some(c.to_owned()),
            Some(Err(_)) => {
                return Err(ApiError::field("X-Comment", "must be visible ASCII (percent-encode the rest)"));
            }
            None => None,
        };
        let based_on = match header("if-match") {
            Some(Ok(v)) => {
                let bare = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
                Some(bare.parse::<i64>().map_err(|_| ApiError::field("If-Match", "must be a version number"))?)
            }
            Some(Err(_)) => return Err(ApiError::field("If-Match", "must be a version number")),
            None => None,
        };
        let root = p.role == Role::Root;
        let meta = crate::service::history::Meta { author: Some(p.username.clone()), comment, based_on, root }
            .with_body(None, None)?;
        Ok(Writer(p, meta))
    }
}

/// A `root` making a change (as [`Writer`]).
pub struct RootWriter(pub Principal, pub crate::service::history::Meta);

impl FromRequestParts<AppState> for RootWriter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Writer(p, meta) = Writer::from_request_parts(parts, state).await?;
        if p.role != Role::Root {
            return Err(ApiError::Forbidden("this needs the root role"));
        }
        Ok(RootWriter(p, meta))
    }
}

/// An authenticated `root`.
pub struct RootCaller(pub Principal);

impl FromRequestParts<AppState> for RootCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(p) = Caller::from_request_parts(parts, state).await?;
        if p.role != Role::Root {
            return Err(ApiError::Forbidden("this needs the root role"));
        }
        Ok(RootCaller(p))
    }
}

/// The id from `?id=` (or `?project=`, which the 2014 README also used).
/// `?limit=`: 1 to 1000, `default` when absent.
pub fn limit_param(query: &QueryMap, default: i64) -> Result<i64, ApiError> {
    match query.0.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::field("limit", "must be a number from 1 to 1000")),
    }
}

pub fn id_param(query: &QueryMap) -> Result<ProjectId, ApiError> {
    let id = query
        .0
        .get("id")
        .or_else(|| query.0.get("project"))
        .ok_or_else(|| ApiError::field("id", "missing: pass ?id=<project id>"))?;
    ProjectId::parse(id.as_str()).map_err(|m| ApiError::field("id", m))
}

/// The query string as a map; a malformed one is a 400.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(m)| QueryMap(m))
            .map_err(|e| ApiError::BadJson { field: None, message: format!("bad query string: {e}") })
    }
}
