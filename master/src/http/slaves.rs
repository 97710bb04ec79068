//! Slaves: add, list, remove (root only).

use axum::Json;
use axum::extract::State;
use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use mirror_common::api::{
    AddSlave, CompletionReport, PropagationView, RemoveSlave, SlaveProjectView, SlavePropagation, SlaveView,
};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiJson, parse_json};
use crate::auth::{MaybeCaller, RootCaller};
use crate::cluster::slave_name;
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
    let added = db::slaves::insert(&state.db, &req.hostname, port).await?;
    let mut body = json!({"method": "add_slave", "success": true, "hostname": req.hostname, "port": port});
    if !added {
        body["details"] = "Already added".into();
        return Ok(Json(body).into_response());
    }
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
    let slaves = db::propagation::for_project(&state.db, &id)
        .await?
        .into_iter()
        .map(|p| SlavePropagation {
            slave: slave_name(&p.hostname, p.port),
            healthy: state.cluster.healthy(p.last_seen.as_deref()),
            generation: p.served,
            served_at: p.served_at,
            lag: project.generation - p.served,
            latest_generation: p.latest_generation,
            latest_status: p.latest_status,
            latest_message: p.latest_message,
        })
        .collect();
    Ok(Json(PropagationView { project: project.id, generation: project.generation, slaves }))
}

/// `POST /slave_rsync_complete/`: a slave's report that its rsync has ended. Only slaves, with
/// the cluster token, may send it.
pub async fn slave_rsync_complete(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let allowed = match (&state.settings.cluster_token, given) {
        (Some(token), Some(given)) => token.matches(given),
        _ => false,
    };
    if !allowed {
        return Err(ApiError::Unauthorized("a valid cluster token is required"));
    }
    let bytes = axum::body::to_bytes(request.into_body(), 1024 * 1024)
        .await
        .map_err(|e| ApiError::BadJson { field: None, message: e.to_string() })?;
    let report: CompletionReport = parse_json(&bytes)?;
    if !state.cluster.record_report(&report).await? {
        return Err(ApiError::not_found(
            "slave",
            format!("unknown slave '{}' or project '{}'", report.slave, report.project),
        ));
    }
    tracing::info!(slave = %report.slave, project.id = %report.project, generation = report.generation, status = %report.status, "slave reported");
    Ok(Json(json!({"method": "slave_rsync_complete", "success": true})))
}

pub async fn remove_slave(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
    ApiJson(req): ApiJson<RemoveSlave>,
) -> Result<Json<Value>, ApiError> {
    let port = match req.port {
        Some(p) => p.0,
        None => {
            let ports = db::slaves::ports_of(&state.db, &req.hostname).await?;
            match ports.as_slice() {
                [] => {
                    return Err(ApiError::not_found("hostname", format!("no slave '{}'", req.hostname.escape_debug())));
                }
                [one] => u16::try_from(*one).map_err(|e| ApiError::Internal(e.into()))?,
                _ => {
                    return Err(ApiError::field(
                        "port",
                        format!("several slaves run on {}: give the port ({ports:?})", req.hostname),
                    ));
                }
            }
        }
    };
    if !db::slaves::remove(&state.db, &req.hostname, port).await? {
        return Err(ApiError::not_found("hostname", format!("no slave {}:{port}", req.hostname.escape_debug())));
    }
    tracing::info!(slave.hostname = %req.hostname, slave.port = port, "slave removed");
    Ok(Json(json!({"method": "remove_slave", "success": true, "hostname": req.hostname, "port": port})))
}
