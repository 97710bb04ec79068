//! API users (root only) and tokens (any user).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mirror_common::Secret;
use mirror_common::api::{CreateUser, RemoveUser, Role, TokenResponse, UpdateUser, UserView, is_valid_id};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, Caller, RootCaller};
use crate::auth::hash_password;
use crate::db::{self, users::RemoveOutcome, users::UpdateOutcome};
use crate::state::AppState;

/// Checks a new user's name and password (shared with the `create-user` command).
pub fn check_new_user(username: &str, password: &Secret) -> Result<(), ApiError> {
    if !is_valid_id(username) {
        return Err(ApiError::field("username", "must match [A-Za-z0-9._-]+ and not start with '-'"));
    }
    check_password(password)
}

fn check_password(password: &Secret) -> Result<(), ApiError> {
    let p = password.expose();
    if p.is_empty() || p.len() > 1024 || p.contains('\0') {
        return Err(ApiError::field("password", "must be 1 to 1024 bytes, without NUL"));
    }
    Ok(())
}

/// Creates a user; a duplicate name is a 409.
pub async fn create_user(state: &AppState, username: &str, password: Secret, role: Role) -> Result<(), ApiError> {
    check_new_user(username, &password)?;
    let hash = hash_password(&password, &state.auth.hash_limiter).await?;
    db::users::insert(&state.db, username, &hash, role.as_str()).await.map_err(|e| {
        if db::is_unique_violation(&e) {
            ApiError::conflict("username", format!("user '{username}' already exists"))
        } else {
            e.into()
        }
    })?;
    // A user of the same name removed earlier may still have a cached login.
    state.auth.forget(username);
    tracing::info!(user.name = %username, user.role = role.as_str(), "user created");
    Ok(())
}

/// `POST /update_api_user/`: a root changes anyone's password or role; a user changes its own
/// password. Either way the user's tokens and cached logins stop working.
pub async fn update_api_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<UpdateUser>,
) -> Result<Json<Value>, ApiError> {
    if caller.role != Role::Root {
        if req.username != caller.username {
            return Err(ApiError::Forbidden("a user may change only its own password"));
        }
        if req.role.is_some() {
            return Err(ApiError::Forbidden("changing a role needs the root role"));
        }
    }
    if req.password.is_none() && req.role.is_none() {
        return Err(ApiError::field("password", "give a new password, a new role, or both"));
    }
    let hash = match &req.password {
        Some(p) => {
            check_password(p)?;
            Some(hash_password(p, &state.auth.hash_limiter).await?)
        }
        None => None,
    };
    match db::users::update(&state.db, &req.username, hash.as_deref(), req.role.map(Role::as_str)).await? {
        UpdateOutcome::Updated => {}
        UpdateOutcome::NotFound => {
            return Err(ApiError::not_found("username", format!("no user '{}'", req.username.escape_debug())));
        }
        UpdateOutcome::LastRoot => {
            return Err(ApiError::conflict("role", "this is the last root user; make another root first"));
        }
    }
    state.auth.forget(&req.username);
    tracing::info!(user.name = %req.username, password_changed = req.password.is_some(), role = ?req.role, "user updated; its tokens are revoked");
    let mut body = json!({"method": "update_api_user", "success": true, "username": req.username});
    if let Some(role) = req.role {
        body["role"] = json!(role);
    }
    Ok(Json(body))
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
    let (token, expires) = state.auth.issue_token(&state.db, &caller).await?;
    let duration = match caller.token_expires {
        // A token from a token lives only as long as its parent.
        Some(_) => u64::try_from((expires - chrono::Utc::now()).num_seconds()).unwrap_or(0),
        None => state.auth.token_ttl.as_secs(),
    };
    Ok(Json(TokenResponse {
        method: "get_token".into(),
        success: true,
        token,
        duration,
        expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}
