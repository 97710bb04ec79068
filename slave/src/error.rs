//! The slave's one error type, rendered in the error shape of the whole API (`ErrorBody`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mirror_common::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum SlaveError {
    #[error("this slave's token is required")]
    Unauthorized,
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    BadJson(String),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("no such endpoint")]
    NotFound,
    /// A publish of a generation this slave has not staged, or a file system failure doing it.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<mirror_common::JsonRejection> for SlaveError {
    fn from(r: mirror_common::JsonRejection) -> SlaveError {
        match (r.invalid_value, r.field) {
            (true, Some(field)) => SlaveError::Invalid { field, message: r.message },
            (_, Some(field)) => SlaveError::BadJson(format!("{field}: {}", r.message)),
            (_, None) => SlaveError::BadJson(r.message),
        }
    }
}

impl SlaveError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> SlaveError {
        SlaveError::Invalid { field: field.into(), message: message.into() }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            SlaveError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            SlaveError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            SlaveError::BadJson(_) => (StatusCode::BAD_REQUEST, "bad_json", None),
            SlaveError::Invalid { field, .. } => (StatusCode::BAD_REQUEST, "invalid_field", Some(field.clone())),
            SlaveError::NotFound => (StatusCode::NOT_FOUND, "not_found", None),
            SlaveError::Conflict(_) => (StatusCode::CONFLICT, "conflict", Some("generation".into())),
            SlaveError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl SlaveError {
    /// The error as the endpoint `method` answers it (`"method": "publish"`).
    pub fn at(self, method: &str) -> Response {
        self.render(Some(method.to_owned()))
    }

    fn render(self, method: Option<String>) -> Response {
        let (status, code, field) = self.parts();
        let body =
            ErrorBody { method, success: false, error: code.into(), message: self.to_string(), field, conflict: None };
        (status, Json(body)).into_response()
    }
}

/// Without an endpoint (an unknown path): no `method`.
impl IntoResponse for SlaveError {
    fn into_response(self) -> Response {
        self.render(None)
    }
}
