//! Slaves: add, list, remove (root only).

use axum::Json;
use axum::extract::State;
use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use mirror_common::api::{
    AddSlave, CompletionReport, PropagationView, RemoveSlave, RotateSlaveToken, SlaveProjectView, SlavePropagation,
    SlaveView,
};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, MaybeCaller, RootCaller, parse_json};
use crate::cluster::{new_slave_token, parse_slave_name, slave_name};
use crate::db;
use crate::state::AppState;

/// The slave API's default port, as in the 2014 service.
pub const DEFAULT_SLAVE_PORT: u16 = 7000;

fn check_hostname(host: &str) -> Result<(), ApiError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::field("hostname", format!("'{}' is not a host name or IP address", host.escape_debug())))
    }
}

pub async fn add_slave(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    ApiJson(req): ApiJson<AddSlave>,
) -> Result<Response, ApiError> {
    check_hostname(&req.hostname)?;
    let port = req.port.map_or(DEFAULT_SLAVE_PORT, |p| p.0);
    let token = new_slave_token();
    let added = db::slaves::insert(&state.db, &req.hostname, port, &token).await?;
    let mut body = json!({"method": "add_slave", "success": true, "hostname": req.hostname, "port": port});
    if !added {
        // Its token was given when it was added; /rotate_slave_token/ issues a new one.
        body["details"] = "Already added".into();
        return Ok(Json(body).into_response());
    }
    // The one time the token is shown: the slave's `token` setting.
    body["token"] = token.expose().into();
    tracing::info!(slave.hostname = %req.hostname, slave.port = port, "slave added");
    // A new slave receives every enabled project at once.
    state.cluster.kick();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Every slave, with when it was last seen, whether it is healthy, and per project the
/// generation it serves against the current one.
pub async fn list_slaves(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
) -> Result<Json<Vec<SlaveView>>, ApiError> {
    let rows = db::slaves::list(&state.db).await?;
    let projects = db::projects::list(&state.db).await?;
    let served = db::propagation::served_all(&state.db).await?;
    let views = rows
        .into_iter()
        .map(|r| {
            let per_project = projects
                .iter()
                .filter(|p| p.enabled && p.generation > 0)
                .map(|p| {
                    let generation = served
                        .iter()
                        .find(|(id, h, port, _)| *id == p.id && *h == r.hostname && *port == r.port)
                        .map_or(0, |s| s.3);
                    SlaveProjectView {
                        project: p.id.clone(),
                        generation,
                        current: p.generation,
                        lag: p.generation - generation,
                    }
                })
                .collect();
            SlaveView {
                healthy: state.cluster.healthy(r.last_seen.as_deref()),
                name: slave_name(&r.hostname, r.port),
                token_issued: r.token.is_some(),
                hostname: r.hostname,
                port: u16::try_from(r.port).unwrap_or(0),
                added_at: r.added_at,
                last_seen: r.last_seen,
                projects: per_project,
            }
        })
        .collect();
    Ok(Json(views))
}

/// `GET /projects/{id}/propagation`: per slave, the generation it serves and since when.
pub async fn propagation(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<PropagationView>, ApiError> {
    if !state.settings.public_read && caller.0.is_none() {
        return Err(ApiError::Unauthorized("reading propagation needs a login on this master"));
    }
    let project = db::projects::get(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", format!("no project with id '{}'", id.escape_debug())))?;
    // Without a login, slaves are numbered rather than named (their addresses are not public),
    // and their messages (local paths) are left out.
    let public = caller.0.is_none();
    let slaves = db::propagation::for_project(&state.db, &id)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, p)| SlavePropagation {
            slave: if public { format!("slave-{}", i + 1) } else { slave_name(&p.hostname, p.port) },
            healthy: state.cluster.healthy(p.last_seen.as_deref()),
            generation: p.served,
            served_at: p.served_at,
            lag: project.generation - p.served,
            latest_generation: p.latest_generation,
            latest_status: p.latest_status,
            latest_message: if public { None } else { p.latest_message },
        })
        .collect();
    Ok(Json(PropagationView { project: project.id, generation: project.generation, slaves }))
}

/// `POST /slave_rsync_complete/`: a slave's report that its rsync has ended. Each slave sends it
/// with its own token, and only about itself: the report names the slave, and the token must be
/// that slave's. A generation the project never had is refused.
pub async fn slave_rsync_complete(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    let Some(given) = given else {
        return Err(ApiError::Unauthorized("a slave reports with its own token (Bearer)"));
    };
    let bytes =
        axum::body::to_bytes(request.into_body(), 64 * 1024).await.map_err(|_| ApiError::TooLarge(64 * 1024))?;
    let report: CompletionReport = parse_json(&bytes)?;
    let slave = match parse_slave_name(&report.slave) {
        Some((host, port)) => db::slaves::get(&state.db, &host, i64::from(port)).await?,
        None => None,
    };
    // An unknown slave and a wrong token get the same answer.
    let Some(slave) = slave.filter(|s| s.token.as_ref().is_some_and(|t| t.matches(&given))) else {
        return Err(ApiError::Unauthorized("this token is not the reporting slave's"));
    };
    let project = db::projects::get(&state.db, &report.project)
        .await?
        .ok_or_else(|| ApiError::not_found("project", format!("no project '{}'", report.project.escape_debug())))?;
    if report.generation < 1 || report.generation > project.generation {
        return Err(ApiError::conflict(
            "generation",
            format!(
                "project '{}' never had generation {} (its current one is {})",
                project.id, report.generation, project.generation
            ),
        ));
    }
    if !state.cluster.record_report(&slave, &report).await? {
        return Err(ApiError::not_found(
            "slave",
            format!("unknown slave '{}' or project '{}'", report.slave, report.project),
        ));
    }
    tracing::info!(slave = %report.slave, project.id = %report.project, generation = report.generation, status = %report.status, "slave reported");
    Ok(Json(json!({"method": "slave_rsync_complete", "success": true})))
}

/// `POST /rotate_slave_token/`: a new token for a slave (also how a slave added before per-slave
/// tokens gets one). The old token stops working at once; the new one is shown this once.
pub async fn rotate_slave_token(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    ApiJson(req): ApiJson<RotateSlaveToken>,
) -> Result<Json<Value>, ApiError> {
    let port = slave_port(&state, &req.hostname, req.port).await?;
    let token = new_slave_token();
    if !db::slaves::set_token(&state.db, &req.hostname, port, &token).await? {
        return Err(ApiError::not_found("hostname", format!("no slave {}:{port}", req.hostname.escape_debug())));
    }
    tracing::info!(slave.hostname = %req.hostname, slave.port = port, "slave token rotated");
    state.cluster.kick();
    Ok(Json(json!({
        "method": "rotate_slave_token", "success": true, "hostname": req.hostname, "port": port,
        "token": token.expose(),
    })))
}

/// The port of the slave on `hostname`: as given, or the only one there.
async fn slave_port(state: &AppState, hostname: &str, port: Option<mirror_common::api::Port>) -> Result<u16, ApiError> {
    if let Some(p) = port {
        return Ok(p.0);
    }
    let ports = db::slaves::ports_of(&state.db, hostname).await?;
    match ports.as_slice() {
        [] => Err(ApiError::not_found("hostname", format!("no slave '{}'", hostname.escape_debug()))),
        [one] => u16::try_from(*one).map_err(|e| ApiError::Internal(e.into())),
        _ => Err(ApiError::field("port", format!("several slaves run on {hostname}: give the port ({ports:?})"))),
    }
}

pub async fn remove_slave(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    ApiJson(req): ApiJson<RemoveSlave>,
) -> Result<Json<Value>, ApiError> {
    let port = slave_port(&state, &req.hostname, req.port).await?;
    if !db::slaves::remove(&state.db, &req.hostname, port).await? {
        return Err(ApiError::not_found("hostname", format!("no slave {}:{port}", req.hostname.escape_debug())));
    }
    tracing::info!(slave.hostname = %req.hostname, slave.port = port, "slave removed");
    Ok(Json(json!({"method": "remove_slave", "success": true, "hostname": req.hostname, "port": port})))
}
