//! One run in the console: its outcome, and its output, followed live while it runs (the page's
//! script streams `/ui/runs/{id}/log?follow=true` into it; without script, the output so far).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use mirror_common::api::RunStatus;

use super::html::{self, badge, esc, when};
use super::{Session, UiError, charts};
use crate::db;
use crate::error::Error;
use crate::state::AppState;

fn run_id(id: &str) -> Result<i64, UiError> {
    id.parse().map_err(|_| UiError::Failed(Error::field("id", "must be a run number")))
}

/// `GET /ui/runs/{id}`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = run_id(&id)?;
    let r = db::runs::get(&state.db, id).await?.ok_or_else(|| Error::not_found("id", format!("no run {id}")))?;
    let now = Utc::now();
    let going = matches!(r.status, RunStatus::Queued | RunStatus::Running);
    let pid = esc(r.project_id.as_str());
    let stop = if going {
        format!(
            "<form method=\"post\" action=\"/ui/projects/{pid}/stop\" class=\"inline\">{}<input type=\"hidden\" \
             name=\"back\" value=\"project\"><button>Stop</button></form>",
            session.csrf_field()
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Run #{id} of <a href=\"/ui/projects/{pid}\">{pid}</a></h1><p><span id=\"run-status\">{}</span> · {} · \
         started {} · ended {} · took {} · transferred {} · exit code {}</p><p>{}</p>{stop}<h2>Output</h2>\
         <p><a href=\"/ui/runs/{id}/log\">The whole output as text</a></p><pre id=\"log\" class=\"log\" tabindex=\"0\" \
         aria-live=\"polite\" data-follow=\"{}\" data-src=\"/ui/runs/{id}/log?follow={going}\">{}</pre>\
         <p id=\"log-end\" hidden>The run has ended.</p>",
        badge(r.status.as_str()),
        esc(r.trigger.as_str()),
        when(r.started_at.map(|t| t.to_datetime()), now),
        when(r.ended_at.map(|t| t.to_datetime()), now),
        charts::duration(&r).map_or_else(|| "–".into(), charts::seconds),
        html::bytes(r.bytes_transferred),
        r.exit_code.map_or_else(|| "–".into(), |c| c.to_string()),
        esc(r.message.as_deref().unwrap_or("")),
        going,
        esc(r.log_tail.as_deref().unwrap_or("")),
    );
    Ok(html::page_response(html::page(&session, &format!("Run #{id}"), &body)))
}

/// `GET /ui/runs/{id}/log?follow=`: the run's output, as the API's `/runs/{id}/log` streams it.
pub async fn log(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let id = run_id(&id)?;
    let follow = matches!(q.get("follow").map(String::as_str), Some("true" | "1"));
    Ok(crate::http::runs::log_response(state, &session.principal, id, follow).await?.into_response())
}
