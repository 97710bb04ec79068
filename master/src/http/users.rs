//! API users (root only) and tokens (any user).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mirror_common::api::{CreateUser, RemoveUser, Role, TokenResponse, UserView, is_valid_id};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::ApiJson;
use crate::auth::{Caller, RootCaller, hash_password};
use crate::db::{self, users::RemoveOutcome};
use crate::state::AppState;

/// Checks a new user's name and password (shared with the `create-user` command).
pub fn check_new_user(username: &str, password: &str) -> Result<(), ApiError> {
    if !is_valid_id(username) {
        return Err(ApiError::field("username", "must match [A-Za-z0-9._-]+"));
    }
    if password.is_empty() || password.len() > 1024 || password.contains('\0') {
        return Err(ApiError::field("password", "must be 1 to 1024 bytes, without NUL"));
    }
    Ok(())
}

/// Creates a user; a duplicate name is a 409.
pub async fn create_user(state: &AppState, username: &str, password: String, role: Role) -> Result<(), ApiError> {
    check_new_user(username, &password)?;
    let hash = hash_password(password, &state.auth.hash_limiter).await?;
    db::users::insert(&state.db, username, &hash, role.as_str()).await.map_err(|e| {
        if db::is_unique_violation(&e) {
            ApiError::conflict("username", format!("user '{username}' already exists"))
        } else {
            e.into()
        }
    })?;
    tracing::info!(user.name = %username, user.role = role.as_str(), "user created");
    Ok(())
}

pub async fn create_api_user(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<Response, ApiError> {
    let role = req.role.unwrap_or(Role::User);
    create_user(&state, &req.username, req.password, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"method": "create_api_user", "success": true, "username": req.username, "role": role})),
    )
        .into_response())
}

pub async fn list_users(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let rows = db::users::list(&state.db).await?;
    rows.into_iter()
        .map(|r| {
            let role = Role::parse(&r.role).ok_or_else(|| anyhow::anyhow!("user {} has unknown role", r.username))?;
            Ok(UserView { username: r.username, role, created_at: r.created_at })
        })
        .collect::<Result<Vec<_>, ApiError>>()
        .map(Json)
}

pub async fn remove_api_user(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    ApiJson(req): ApiJson<RemoveUser>,
) -> Result<Json<Value>, ApiError> {
    match db::users::remove(&state.db, &req.username).await? {
        RemoveOutcome::Removed => {}
        RemoveOutcome::NotFound => {
            return Err(ApiError::not_found("username", format!("no user '{}'", req.username.escape_debug())));
        }
        RemoveOutcome::LastRoot => {
            return Err(ApiError::conflict("username", "this is the last root user; create another root first"));
        }
    }
    state.auth.forget(&req.username);
    tracing::info!(user.name = %req.username, "user removed");
    Ok(Json(json!({"method": "remove_api_user", "success": true, "username": req.username})))
}

pub async fn get_token(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<TokenResponse>, ApiError> {
    let (token, expires) = state.auth.issue_token(&caller.username)?;
    Ok(Json(TokenResponse {
        method: "get_token".into(),
        success: true,
        token,
        duration: state.auth.token_ttl.as_secs(),
        expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}
