//! The slave's HTTP API: the master's sync and publish requests (Bearer: this slave's token),
//! and its status. Extractors check the token and read the body, as the master's do; their
//! refusals name the endpoint (its path is its 2014 method name).

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mirror_common::api::{PublishRequest, Published, SlaveStatus, SyncAccepted, SyncRequest, SyncState, SyncStatus};
use serde::de::DeserializeOwned;

use crate::error::SlaveError;
use crate::pull::{Slot, check_rel, validate};
use crate::{AppState, GEN_DIR, lock, now};

/// A sync request is a small JSON document.
pub(crate) const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The endpoint's 2014 method name, from its path (`/publish/`: `publish`).
fn method_of(path: &str) -> &str {
    path.trim_matches('/')
}

/// Whether the request carries the master's Bearer token. Without a configured token, nothing is
/// accepted.
fn from_master(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else { return false };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| token.matches(given.trim()))
}

/// A request from the master (its Bearer token), checked before the body is read.
pub struct Master;

impl FromRequestParts<AppState> for Master {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Master, Response> {
        if from_master(state, &parts.headers) {
            Ok(Master)
        } else {
            Err(SlaveError::Unauthorized.at(method_of(parts.uri.path())))
        }
    }
}

/// A JSON body of at most [`MAX_REQUEST_BYTES`], read by the parser the master uses: a field
/// that breaks its rule is refused naming it.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = Response;

    async fn from_request(request: Request, _: &AppState) -> Result<Body<T>, Response> {
        let method = method_of(request.uri().path()).to_owned();
        let bytes = axum::body::to_bytes(request.into_body(), MAX_REQUEST_BYTES)
            .await
            .map_err(|_| SlaveError::TooLarge(MAX_REQUEST_BYTES).at(&method))?;
        mirror_common::parse_json(&bytes).map(Body).map_err(|e| SlaveError::from(e).at(&method))
    }
}

/// `POST /publish/`: the staged generation becomes the served tree in one rename (a symlink
/// swap): a reader sees the old tree or the new one, never a mix. The old one stays for readers
/// still in it until the next publish.
pub async fn publish(State(state): State<AppState>, _: Master, Body(req): Body<PublishRequest>) -> Response {
    publish_inner(&state, req).await.unwrap_or_else(|e| e.at("publish"))
}

async fn publish_inner(state: &AppState, req: PublishRequest) -> Result<Response, SlaveError> {
    let rel = req.path.as_path().to_owned();
    check_rel(&rel)?;
    let served = lock(&state.served).get(&req.project).cloned().unwrap_or_default();
    if served.generation >= req.generation {
        let flipped_at = served.synced_at.unwrap_or_else(now);
        return Ok(Json(Published { generation: served.generation, flipped_at }).into_response());
    }
    let gens = state.root.join(GEN_DIR).join(req.project.as_str());
    let target = gens.join(req.generation.to_string());
    if !tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
        return Err(SlaveError::Conflict(format!("generation {} is not staged here", req.generation)));
    }
    let link = state.root.join(&rel);
    let flipped_at = crate::flip::flip(&link, &target, &gens, req.generation)
        .await
        .map_err(|e| SlaveError::Internal(format!("cannot publish generation {}: {e}", req.generation)))?;
    {
        let mut all = lock(&state.served);
        let entry = all.entry(req.project.clone()).or_default();
        entry.generation = req.generation;
        entry.synced_at = Some(flipped_at);
        entry.staged = entry.staged.filter(|s| *s > req.generation);
        entry.last_status = SyncStatus::Success.as_str().into();
        entry.last_message = Some("published".into());
    }
    state.save_served().await;
    tracing::info!(project.id = %req.project, generation = req.generation, "published");
    Ok(Json(Published { generation: req.generation, flipped_at }).into_response())
}

pub async fn sync_from_master(State(state): State<AppState>, _: Master, Body(req): Body<SyncRequest>) -> Response {
    sync_inner(&state, req).await.unwrap_or_else(|e| e.at("sync_from_master"))
}

async fn sync_inner(state: &AppState, req: SyncRequest) -> Result<Response, SlaveError> {
    let accepted = validate(state.confine.confined(), req)?;
    let req = &accepted.req;
    let (served, staged) = lock(&state.served).get(&req.project).map_or((0, None), |s| (s.generation, s.staged));
    let state_name = {
        let mut slots = lock(&state.slots);
        match slots.get_mut(&req.project) {
            Some(slot) if req.generation <= slot.running => SyncState::Running,
            Some(slot) => {
                // Only the newest generation is worth pulling after the current run.
                if slot.pending.as_ref().is_none_or(|p| p.req.generation < req.generation) {
                    slot.pending = Some(accepted.clone());
                }
                SyncState::Queued
            }
            None if req.generation <= served => SyncState::Current,
            // Staged already, waiting to be published: said again.
            None if req.flip && staged == Some(req.generation) => SyncState::Current,
            None => {
                slots.insert(req.project.clone(), Slot { running: req.generation, pending: None });
                let worker = state.clone();
                let first = accepted.clone();
                tokio::spawn(async move { worker.pull_until_current(first).await });
                SyncState::Started
            }
        }
    };
    if state_name == SyncState::Current {
        // Already served: the report may have been lost, so send it again; nothing runs twice.
        let mut report = state.report_for_served(req, served);
        if req.generation > served {
            (report.generation, report.status) = (req.generation, SyncStatus::Staged);
            report.message = "staged, waiting to be published".into();
        }
        let reporter = state.clone();
        tokio::spawn(async move { reporter.send_report(report).await });
    }
    tracing::info!(project.id = %req.project, generation = req.generation, state = state_name.as_str(), "sync request");
    Ok((StatusCode::ACCEPTED, Json(SyncAccepted { success: true, state: state_name })).into_response())
}

/// What this slave serves. Its root and rsync's messages (local paths) only for the master.
pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> Json<SlaveStatus> {
    let (running, queued) = {
        let slots = lock(&state.slots);
        let running = slots.iter().map(|(k, s)| (k.clone(), s.running)).collect();
        let queued =
            slots.iter().filter_map(|(k, s)| s.pending.as_ref().map(|p| (k.clone(), p.req.generation))).collect();
        (running, queued)
    };
    let full = from_master(&state, &headers);
    let mut serving = lock(&state.served).clone();
    if !full {
        serving.values_mut().for_each(|s| s.last_message = None);
    }
    let root = full.then(|| state.root.display().to_string());
    Json(SlaveStatus { root, confined: state.confine.confined(), serving, running, queued })
}
