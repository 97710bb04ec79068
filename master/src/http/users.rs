//! API users (root only) and tokens (any user).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mirror_common::api::{
    CreateUser, Done, RefreshToken, RemoveUser, Role, TokenResponse, UpdateUser, UserChanged, UserView,
};

use super::detached;
use super::error::ApiError;
use super::extract::{ApiJson, Caller, RootCaller, RootWriter, Writer};
use crate::state::AppState;
use mirror_common::ErrorBody;

/// `POST /update_api_user/`: see [`crate::service::users::Users::update`] for who may change what.
#[utoipa::path(
    post,
    path = "/update_api_user/",
    tag = "users",
    request_body = UpdateUser,
    responses(
        (status = 200, description = "changed; its tokens stop working", body = Done<UserChanged>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 409, description = "a conflict: the id or dest exists, a run is going, the last root", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn update_api_user(
    State(state): State<AppState>,
    Writer(caller, meta): Writer,
    ApiJson(req): ApiJson<UpdateUser>,
) -> Result<Json<Done<UserChanged>>, ApiError> {
    let (username, role) = (req.username.clone(), req.role);
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    detached(async move { state.users.update(&caller, &req, &meta).await }).await?;
    Ok(Json(Done::new("update_api_user", UserChanged { username, role })))
}

#[utoipa::path(
    post,
    path = "/create_api_user/",
    tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "created", body = Done<UserChanged>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 409, description = "a conflict: the id or dest exists, a run is going, the last root", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn create_api_user(
    State(state): State<AppState>,
    RootWriter(_, meta): RootWriter,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<Response, ApiError> {
    let role = req.role.unwrap_or(Role::User);
    let username = req.username.clone();
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    detached(async move { state.users.create(&username, req.password, role, &meta).await }).await?;
    Ok((
        StatusCode::CREATED,
        Json(Done::new("create_api_user", UserChanged { username: req.username, role: Some(role) })),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/list_users/",
    tag = "users",
    responses(
        (status = 200, description = "every user", body = Vec<UserView>),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn list_users(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(state.users.list().await?))
}

#[utoipa::path(
    post,
    path = "/remove_api_user/",
    tag = "users",
    request_body = RemoveUser,
    responses(
        (status = 200, description = "removed; its tokens stop working", body = Done<UserChanged>),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 403, description = "the role does not allow it", body = ErrorBody),
        (status = 404, description = "no such project, user, slave or run", body = ErrorBody),
        (status = 409, description = "a conflict: the id or dest exists, a run is going, the last root", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn remove_api_user(
    State(state): State<AppState>,
    RootWriter(_, meta): RootWriter,
    ApiJson(req): ApiJson<RemoveUser>,
) -> Result<Json<Done<UserChanged>>, ApiError> {
    let username = req.username.clone();
    let meta = meta.with_body(req.comment.clone(), req.version)?;
    detached(async move { state.users.remove(&username, &meta).await }).await?;
    Ok(Json(Done::new("remove_api_user", UserChanged { username: req.username, role: None })))
}

#[utoipa::path(
    get,
    path = "/get_token/",
    tag = "users",
    responses(
        (status = 200, description = "a token for the caller", body = TokenResponse),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn get_token(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<TokenResponse>, ApiError> {
    let (token, expires) = state.auth.issue_token(&state.db, &caller).await?;
    let duration = match caller.token_expires {
        // A token from a token lives only as long as its parent.
        Some(_) => u64::try_from((expires - chrono::Utc::now()).num_seconds()).unwrap_or(0),
        None => state.auth.token_ttl.as_secs(),
    };
    let refresh = state.auth.issue_refresh(&state.db, &caller, None).await?;
    let (refresh_token, refresh_expires_at) = refresh.map(|(t, e)| (t, e.into())).unzip();
    Ok(Json(TokenResponse {
        method: "get_token".into(),
        success: true,
        token,
        duration,
        expires_at: expires.into(),
        refresh_token,
        refresh_expires_at,
    }))
}

/// `POST /refresh_token/`: a new token (and a new refresh token, expiring when the old one does)
/// for a refresh token from a password login.
#[utoipa::path(
    post,
    path = "/refresh_token/",
    tag = "users",
    request_body = RefreshToken,
    responses(
        (status = 200, description = "a new token", body = TokenResponse),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "the refresh token is invalid, expired or revoked", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    )
)]
pub async fn refresh_token(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshToken>,
) -> Result<Json<TokenResponse>, ApiError> {
    let (principal, refresh_expires) = state.auth.check_refresh(&state.db, &req.refresh_token).await?;
    let (token, expires) = state.auth.issue_token(&state.db, &principal).await?;
    let refresh = state.auth.issue_refresh(&state.db, &principal, Some(refresh_expires)).await?;
    let (refresh_token, refresh_expires_at) = refresh.map(|(t, e)| (t, e.into())).unzip();
    Ok(Json(TokenResponse {
        method: "refresh_token".into(),
        success: true,
        token,
        duration: state.auth.token_ttl.as_secs(),
        expires_at: expires.into(),
        refresh_token,
        refresh_expires_at,
    }))
}
