//! The operator's console (`/ui/`): server-rendered pages over the same services the API uses,
//! readable without JavaScript, styled and scripted only by files of this master (the
//! Content-Security-Policy allows no inline script or style). A browser logs in with a user's
//! password and holds a session cookie (`session`); every form that changes something carries the
//! session's CSRF token, and a request from another site is refused before it is read (`Posted`).

pub mod admin;
pub mod charts;
pub mod html;
pub mod project;
pub mod projects;
pub mod runs;
pub mod session;
pub mod written;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::Error;
use crate::state::AppState;
pub use session::{Posted, Session, cross_site};

/// What a console handler fails with: a page that says why, a login page for a browser without a
/// session, or a redirect.
pub enum UiError {
    /// Not logged in (or the session ended): to the login page, coming back to `next` after.
    Login { next: String },
    /// A failure, shown as a page with its status.
    Failed(Error),
}

impl From<Error> for UiError {
    fn from(e: Error) -> Self {
        UiError::Failed(e)
    }
}

impl From<sqlx::Error> for UiError {
    fn from(e: sqlx::Error) -> Self {
        UiError::Failed(Error::Internal(e.into()))
    }
}

impl From<anyhow::Error> for UiError {
    fn from(e: anyhow::Error) -> Self {
        UiError::Failed(Error::Internal(e))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Login { next } => {
                let target = format!("/ui/login?next={}", html::query_escape(&next));
                see_other(&target)
            }
            UiError::Failed(e) => {
                let status = e.status();
                let message = match &e {
                    Error::Internal(inner) => {
                        tracing::error!(error = format!("{inner:#}"), "console request failed");
                        "internal error (the master's log says more)".to_owned()
                    }
                    other => written::message_of(other),
                };
                let body = format!(
                    "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"/ui/\">Back to the projects</a></p>",
                    status.as_u16(),
                    html::esc(&message)
                );
                (status, html::page_response(html::bare_page("Error", &body))).into_response()
            }
        }
    }
}

/// A 303 to `target` (after a form: the browser asks for it with GET).
pub fn see_other(target: &str) -> Response {
    let location = HeaderValue::from_str(target).unwrap_or_else(|_| HeaderValue::from_static("/ui/"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The console's own stylesheet and script (cached for an hour; they change with the master).
async fn asset(request: Request) -> Response {
    let (body, kind) = match request.uri().path() {
        "/ui/assets/app.css" => (CSS, "text/css; charset=utf-8"),
        "/ui/assets/app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return UiError::Failed(Error::not_found("path", "no such file")).into_response(),
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
    ];
    (headers, body).into_response()
}

/// The console's routes (merged into the API's router, under its layers).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { see_other("/ui/") }))
        .route("/ui/", get(projects::index))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/account", get(session::account).post(session::change_password))
        .route("/ui/projects/new", get(projects::new_page).post(projects::create))
        .route("/ui/projects/{id}", get(project::page))
        .route("/ui/projects/{id}/sync", post(projects::sync))
        .route("/ui/projects/{id}/stop", post(projects::stop))
        .route("/ui/projects/{id}/enable", post(projects::enable))
        .route("/ui/projects/{id}/disable", post(projects::disable))
        .route("/ui/projects/{id}/edit", post(project::preview))
        .route("/ui/projects/{id}/save", post(project::save))
        .route("/ui/projects/{id}/versions/{version}", get(project::version))
        .route("/ui/projects/{id}/revert", post(project::revert))
        .route("/ui/runs/{id}", get(runs::page))
        .route("/ui/runs/{id}/log", get(runs::log))
        .route("/ui/cluster", get(admin::cluster))
        .route("/ui/slaves", get(admin::slaves))
        .route("/ui/slaves/rotate", post(admin::rotate))
        .route("/ui/users", get(admin::users).post(admin::create_user))
        .route("/ui/users/role", post(admin::set_role))
        .route("/ui/users/remove", post(admin::remove_user))
        .route("/ui/alerts", get(admin::alerts))
}
