//! `ApiError`: every failure a handler can answer with, rendered in the one JSON error shape.
//! Internal detail is logged once here and never sent; the client gets "internal error".

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mirror_common::ErrorBody;

pub use crate::error::Error as ApiError;

impl ApiError {
    /// The HTTP status this error is answered with (the console renders its own page with it).
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The status, the `error` word and the field of the error body.
    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::Field(e) => (StatusCode::BAD_REQUEST, "invalid_field", Some(e.field.clone())),
            ApiError::BadJson { field, .. } => (StatusCode::BAD_REQUEST, "bad_json", field.clone()),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound { field, .. } => (StatusCode::NOT_FOUND, "not_found", field.map(String::from)),
            ApiError::Conflict { field, .. } => (StatusCode::CONFLICT, "conflict", field.map(String::from)),
            ApiError::VersionConflict { .. } => (StatusCode::CONFLICT, "conflict", Some("version".into())),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams", None),
            // The database is away (PostgreSQL restarting, a node cut off): try again shortly.
            ApiError::Internal(e) if crate::db::is_unavailable_chain(e) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None)
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
            ApiError::InEntry { error, .. } => error.parts(),
        }
    }
}

/// The body is completed with the endpoint's name by [`name_errors`], which knows the route.
#[derive(Clone)]
struct PendingError(ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let located @ ApiError::InEntry { .. } = self {
            return located.flattened().into_response();
        }
        let (status, code, field) = self.parts();
        let message = match &self {
            ApiError::Internal(e) if status == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(error = format!("{e:#}"), "the database is unavailable");
                "the database is unavailable: try again in a few seconds".to_owned()
            }
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                "internal error".to_owned()
            }
            ApiError::Field(e) => e.message.clone(),
            other => other.to_string(),
        };
        let conflict = match &self {
            ApiError::VersionConflict { key, expected, provided } => Some(mirror_common::error::VersionConflict {
                key: key.clone(),
                expected_version: *expected,
                provided_version: *provided,
            }),
            _ => None,
        };
        let body = ErrorBody { method: None, success: false, error: code.into(), message, field, conflict };
        let mut response = render(status, &body);
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE && !response.headers().contains_key(header::RETRY_AFTER) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"mirror-sync\", Bearer"));
        }
        response.extensions_mut().insert(PendingError(body));
        response
    }
}

fn render(status: StatusCode, body: &ErrorBody) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{\"success\":false,\"error\":\"internal\"}".to_vec());
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}

/// The 2014 API named the endpoint in every body (`"method": "add_project"`): derive it from the
/// matched route, so that errors raised before a handler runs (bad JSON, auth) carry it too.
pub fn method_name(route: &str) -> String {
    route.split('/').filter(|s| !s.is_empty() && !s.starts_with('{')).collect::<Vec<_>>().join("_")
}

/// Middleware: puts the endpoint's name into error bodies.
pub async fn name_errors(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|m| method_name(m.as_str()));
    let mut response = next.run(request).await;
    if let (Some(route), Some(PendingError(mut body))) = (route, response.extensions_mut().remove::<PendingError>()) {
        body.method = Some(route);
        let (status, headers) = (response.status(), response.headers().clone());
        response = render(status, &body);
        response.headers_mut().extend(headers);
    }
    response
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound { field: None, message: "no such endpoint".into() }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::method_name;

    #[test]
    fn names_come_from_routes() {
        assert_eq!(method_name("/add_project/"), "add_project");
        assert_eq!(method_name("/update_project/basic"), "update_project_basic");
        assert_eq!(method_name("/runs/{id}"), "runs");
    }
}
