//! Requests that only one node can answer, passed on to it: a project's run starts on the node
//! that runs the project (the leader, for a project any node may run); stopping a run and its log
//! go to the node the run belongs to (its rsync and its log file are there); target pushes to
//! the leader. The console's sync now, stop and live log go the same way. The caller's own
//! credentials go along (the console's session cookie: sessions are in the shared database); the
//! other node checks them as it would its own caller's. A request passed on once is never passed
//! on again.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::db;
use crate::state::AppState;

/// Set on a request passed on to another node.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-mirror-forwarded");

/// The headers that go along.
const KEPT: [HeaderName; 4] = [header::AUTHORIZATION, header::COOKIE, header::CONTENT_TYPE, header::ACCEPT];

/// Whether a request came from the site itself, as a browser says (`Sec-Fetch-Site`).
const FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Which node must answer this request, if not this one: `Some(api_url)`.
async fn destination(
    state: &AppState,
    method: &Method,
    route: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let node = match (method, route) {
        // A run of a project (by hand, or pushed by its upstream): on the node that runs it.
        (&Method::POST | &Method::GET, "/syncup/" | "/syncup") => {
            let id = query
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "id" || *k == "project")
                .map(|(_, v)| v.to_owned());
            match id {
                Some(id) => return runner_of(state, id).await,
                None => return Ok(None),
            }
        }
        (&Method::POST, "/trigger/{project}") | (&Method::GET, "/trigger/{project}/runs/{run}") => {
            return runner_of(state, project_in(path, "/trigger/").to_owned()).await;
        }
        // Stopping a run, or following its log (the API's, the console's): on the node it belongs to.
        (&Method::POST, "/runs/{id}/stop") | (&Method::GET, "/runs/{id}/log" | "/ui/runs/{id}/log") => {
            let id = path.trim_start_matches("/ui").trim_start_matches("/runs/");
            let Ok(id) = id.trim_end_matches("/stop").trim_end_matches("/log").parse::<i64>() else { return Ok(None) };
            match run_elsewhere(state, id).await? {
                Some(n) => n,
                None => return Ok(None),
            }
        }
        // The console's sync now (as `/syncup/`) and stop, by project: its run going.
        (&Method::POST, "/ui/projects/{id}/sync") => {
            return runner_of(state, project_in(path, "/ui/projects/").to_owned()).await;
        }
        (&Method::POST, "/ui/projects/{id}/stop") => {
            let Ok(project) = mirror_common::names::ProjectId::parse(project_in(path, "/ui/projects/")) else {
                return Ok(None);
            };
            let Some(going) = db::runs::going(&state.db, project.as_str()).await? else { return Ok(None) };
            match run_elsewhere(state, going.id).await? {
                Some(n) => n,
                None => return Ok(None),
            }
        }
        (&Method::POST, "/targets/sync") => {
            if state.node.is_leader() {
                return Ok(None);
            }
            match state.node.runner_of(None) {
                Some(n) => n,
                None => {
                    return Err(ApiError::Unavailable(
                        "no node leads at the moment: try again in a few seconds".into(),
                    ));
                }
            }
        }
        _ => return Ok(None),
    };
    api_url_of(state, &node).await.map(Some)
}

/// The node run `id` belongs to, if it is not this one.
async fn run_elsewhere(state: &AppState, id: i64) -> Result<Option<String>, ApiError> {
    Ok(db::runs::node_of(&state.db, id).await?.filter(|n| n != state.node.name()))
}

/// The first segment of `path` after `prefix`.
fn project_in<'a>(path: &'a str, prefix: &str) -> &'a str {
    path.trim_start_matches(prefix).split('/').next().unwrap_or("")
}

/// The node that runs `project`, if it is not this one (`None` too when there is no such project:
/// this node gives the answer).
async fn runner_of(state: &AppState, project: String) -> Result<Option<String>, ApiError> {
    let Ok(project) = mirror_common::names::ProjectId::parse(project) else { return Ok(None) };
    let Some(row) = db::projects::get(&state.db.read, project.as_str()).await? else { return Ok(None) };
    // As the database has it now (a node may have come or gone since the last beat).
    state.node.refresh_view().await?;
    if state.node.runs_here(row.node.as_ref()) {
        return Ok(None);
    }
    match state.node.runner_of(row.node.as_ref()) {
        Some(n) => api_url_of(state, &n).await.map(Some),
        None => Err(ApiError::Unavailable(format!(
            "no node that may run '{project}' is alive (or none leads at the moment)"
        ))),
    }
}

async fn api_url_of(state: &AppState, node: &str) -> Result<String, ApiError> {
    match db::nodes::get(&state.db, node).await? {
        Some(n) => Ok(n.api_url),
        None => Err(ApiError::Unavailable(format!("node '{node}' is not known: try again in a few seconds"))),
    }
}

/// The middleware: answers here, or passes the request on.
pub async fn forward(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.headers().contains_key(&FORWARDED) {
        return next.run(request).await;
    }
    let Some(route) = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let console = route.starts_with("/ui/");
    // A console form from another site is refused here, by the console itself.
    if console && method == Method::POST && crate::ui::cross_site(request.headers()) {
        return next.run(request).await;
    }
    let passed = match destination(&state, &method, &route, &path, query.as_deref()).await {
        Ok(None) => return next.run(request).await,
        Ok(Some(url)) => pass_on(&state, url, request, console).await,
        Err(e) => Err(e),
    };
    match passed {
        Ok(response) => response,
        // The console answers in its own pages.
        Err(e) if console => crate::ui::UiError::Failed(e).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Passes the request on to the node at `base`. A console request was seen here to come from the
/// site itself (a browser cannot forge `Sec-Fetch-Site`): the other node is told so.
async fn pass_on(state: &AppState, base: String, request: Request, console: bool) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let bytes = axum::body::to_bytes(body, super::extract::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge(super::extract::MAX_BODY_BYTES))?;
    let mut outbound = state.forwarder.request(parts.method.clone(), format!("{base}{path_and_query}"));
    for name in KEPT {
        if let Some(v) = parts.headers.get(&name) {
            outbound = outbound.header(name, v);
        }
    }
    if console {
        outbound = outbound.header(FETCH_SITE, HeaderValue::from_static("same-origin"));
    }
    let answer = outbound
        .header(FORWARDED, HeaderValue::from_static("1"))
        .body(bytes)
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the node at {base} does not answer: {}", e.without_url())))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::builder().status(status);
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER, header::CACHE_CONTROL, header::LOCATION] {
        if let Some(v) = answer.headers().get(&name) {
            response = response.header(name, v);
        }
    }
    // Streamed: a followed log goes on as long as the other node sends it.
    response.body(Body::from_stream(answer.bytes_stream())).map_err(|e| ApiError::Internal(e.into()))
}
