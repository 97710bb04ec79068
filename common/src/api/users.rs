//! API users and their tokens.

use serde::{Deserialize, Serialize};

use super::{Name, Role, Secret, Timestamp};

/// `POST /create_api_user/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: Name,
    #[serde(serialize_with = "crate::secret::reveal::secret")]
    pub password: Secret,
    /// Defaults to `user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `POST /update_api_user/`: a new password, a new role, or both. Either revokes the user's tokens.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub username: Name,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::reveal::option")]
    pub password: Option<Secret>,
    /// The password being replaced: needed when users change their own password while logged in
    /// with a token (a token alone, stolen or left on a screen, must not take the account over).
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::reveal::option")]
    pub current_password: Option<Secret>,
    /// Only a root may change a role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `POST /remove_api_user/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveUser {
    pub username: Name,
    /// Why (kept with the change's version; or the `X-Comment` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `create_api_user`, `update_api_user`, `remove_api_user`: the user, and its role when it was set.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserChanged {
    pub username: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// One entry of `GET /list_users/`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserView {
    pub username: Name,
    pub role: Role,
    pub created_at: Timestamp,
}

/// `GET /get_token/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub method: String,
    pub success: bool,
    pub token: String,
    /// Seconds the token is valid for, as the 2014 API's `duration`.
    pub duration: u64,
    pub expires_at: Timestamp,
    /// After a password login: a token that `POST /refresh_token/` exchanges for a new token
    /// until `refresh_expires_at` (a password change ends it). Never a login itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<Timestamp>,
}

/// `POST /refresh_token/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshToken {
    pub refresh_token: String,
}
