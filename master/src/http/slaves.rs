//! Slaves: add, list, remove (root only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mirror_common::api::{AddSlave, RemoveSlave, SlaveView};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::ApiJson;
use crate::auth::RootCaller;
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
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list_slaves(
    State(state): State<AppState>,
    RootCaller(_): RootCaller,
) -> Result<Json<Vec<SlaveView>>, ApiError> {
    let rows = db::slaves::list(&state.db).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| SlaveView { hostname: r.hostname, port: u16::try_from(r.port).unwrap_or(0), added_at: r.added_at })
            .collect(),
    ))
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
