//! The HTTP API. `router` is the one table of every route; handlers live by resource.

pub mod admission;
pub mod alerts;
pub mod error;
pub mod events;
pub mod extract;
pub mod forward;
pub mod hal;
pub mod headers;
pub mod history;
pub mod metrics;
pub mod nodes;
pub mod openapi;
pub mod projects;
pub mod rainer;
pub mod runs;
pub mod slaves;
pub mod status;
pub mod streams;
pub mod targets;
pub mod transfer;
pub mod users;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get, post};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use error::ApiError;

/// Runs a write to its end even if the client goes away: a request dropped halfway (a client that
/// gives up) would otherwise stop between the commit and the change event, leaving a project stored
/// but never scheduled. The write runs in its own task; the request only waits for it.
pub async fn detached<T: Send + 'static>(
    write: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    // The request's span (its id) goes along: the write's log lines carry it.
    tokio::spawn(tracing::Instrument::in_current_span(write)).await.map_err(|e| ApiError::Internal(e.into()))?
}

/// A JSON answer of `status` (for handlers whose body is not a wire type: Rainer's and
/// resource-sync's shapes).
pub(crate) fn json_answer(status: axum::http::StatusCode, v: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let content_type = axum::http::HeaderValue::from_static("application/json");
    (status, [(axum::http::header::CONTENT_TYPE, content_type)], v.to_string()).into_response()
}

/// Every route, as the 2014 API named it. Each also answers without its trailing slash.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        // slaves (root)
        ("/add_slave/", post(slaves::add_slave)),
        ("/list_slaves/", get(slaves::list_slaves)),
        ("/remove_slave/", post(slaves::remove_slave)),
        ("/rotate_slave_token/", post(slaves::rotate_slave_token)),
        // slaves report with the cluster token; propagation status (public unless configured otherwise)
        ("/slave_rsync_complete/", post(slaves::slave_rsync_complete)),
        ("/slave_started/", post(slaves::slave_started)),
        ("/projects/{id}/propagation", get(slaves::propagation)),
        // projects (root or user; listing public unless configured otherwise)
        ("/add_project/", post(projects::add_project)),
        ("/list_projects/", get(projects::list_projects)),
        ("/projects/{id}", get(projects::get_project).put(projects::put_project)),
        // every change is a version (root or user)
        ("/projects/{id}/history", get(history::history)),
        ("/projects/{id}/versions/{version}", get(history::version)),
        ("/projects/{id}/revert", post(history::revert)),
        ("/users/{name}/history", get(history::user_history)),
        ("/slaves/{slave}/history", get(history::slave_history)),
        ("/remove_project/", post(projects::remove_project)),
        ("/enable_project/", get(projects::enable_project).post(projects::enable_project)),
        ("/enable_project/{arg}", get(projects::enable_project_path).post(projects::enable_project_path)),
        ("/disable_project/", get(projects::disable_project).post(projects::disable_project)),
        ("/disable_project/{arg}", get(projects::disable_project_path).post(projects::disable_project_path)),
        ("/update_project/basic/", post(projects::update_project_basic)),
        ("/update_project/schedule/", post(projects::update_project_schedule)),
        // runs: start one now (root or user), history (public unless configured otherwise)
        ("/syncup/", get(runs::syncup).post(runs::syncup)),
        ("/runs/", get(runs::list_runs)),
        ("/runs/{id}", get(runs::get_run)),
        ("/runs/{id}/stop", post(runs::stop_run)),
        ("/runs/{id}/log", get(runs::run_log)),
        // pushes from upstreams: a run with the project's own trigger token
        ("/trigger/{project}", post(runs::trigger)),
        ("/trigger/{project}/runs/{run}", get(runs::trigger_run)),
        ("/projects/{id}/trigger_token", post(runs::trigger_token)),
        // users (root) and tokens (anyone logged in)
        ("/create_api_user/", post(users::create_api_user)),
        ("/list_users/", get(users::list_users)),
        ("/remove_api_user/", post(users::remove_api_user)),
        ("/update_api_user/", post(users::update_api_user)),
        ("/get_token/", get(users::get_token).post(users::get_token)),
        ("/refresh_token/", post(users::refresh_token)),
        // what this master is and does, and the status page (public unless configured otherwise)
        ("/", get(status::index)),
        ("/status/", get(status::status)),
        ("/status/{id}", get(status::project)),
        ("/jobs", get(status::jobs)),
        ("/mirrorz.json", get(status::mirrorz)),
        ("/metrics", get(metrics::metrics)),
        // what changes, as it changes (server-sent events; any user)
        ("/events", get(events::events)),
        // the whole configuration as one document (export: any user; import: root)
        ("/export", get(transfer::export)),
        ("/import", post(transfer::import)),
        ("/reload", post(transfer::reload)),
        // object-store targets: push now (root or user), their pushes (logged in)
        ("/targets", get(targets::list_targets)),
        ("/targets/sync", post(targets::sync)),
        ("/targets/pushes", get(targets::list_pushes)),
        ("/targets/pushes/{id}", get(targets::get_push)),
        // alert deliveries (root)
        ("/alerts", get(alerts::list_alerts)),
        ("/nodes", get(nodes::list_nodes)),
        // Rainer's API over project configurations (pyrainer; reads as versions, writes as PUT)
        ("/rainer/projects", get(rainer::list)),
        ("/rainer/projects/{key}", get(rainer::get_latest)),
        ("/rainer/projects/{key}/{rest}", get(rainer::get_one).post(rainer::post)),
        ("/rainer/projects/{key}/{version}/{meta}", get(rainer::get_version_meta)),
        // resource-sync's HAL conventions over projects (capture and replay between masters)
        ("/api", get(hal::root)),
        ("/api/projects", get(hal::list).patch(hal::patch).options(hal::options)),
        ("/api/projects/{id}", get(hal::get).put(hal::put)),
    ]
}

pub fn router(state: AppState) -> Router {
    let s = &state.settings;
    let admission = std::sync::Arc::new(admission::Admission::new(
        s.max_reads_in_flight,
        s.max_writes_in_flight,
        Duration::from_millis(s.overload_wait_ms),
        admission::HOLD_AT_MOST,
    ));
    let mut router = Router::new();
    for (path, handler) in routes() {
        let bare = path.trim_end_matches('/');
        router = router.route(path, handler.clone());
        if !bare.is_empty() && bare != path {
            router = router.route(bare, handler);
        }
    }
    router
        .merge(openapi::docs())
        .merge(crate::ui::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), forward::forward))
        .layer(axum::middleware::from_fn_with_state(admission, admission::admit))
        .layer(axum::middleware::from_fn(error::name_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(
            TraceLayer::new_for_http()
                // The path only: a query may hold a secret (`/trigger/{project}?token=`).
                .make_span_with(|r: &axum::http::Request<_>| {
                    tracing::debug_span!("http", method = %r.method(), path = %r.uri().path())
                })
                // Internal errors are logged where they are rendered; a 503 of the admission
                // control is counted there and logged at most every ten seconds, not once per request.
                .on_failure(()),
        )
        .layer(axum::middleware::from_fn(headers::secure))
        .layer(axum::middleware::from_fn(mirror_runtime::logging::request_id))
        .with_state(state)
}
