//! `GET /events`: server-sent events of configuration commits (`config`) and run states (`run`),
//! resumed after a reconnect from `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use mirror_common::ErrorBody;
use mirror_common::api::Role;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::error::ApiError;
use super::extract::{Caller, QueryMap};
use crate::read::feed::FeedEvent;
use crate::state::AppState;

/// Stored events sent per query while catching up.
const PAGE: i64 = 1000;

/// What a caller may read of the feed: root everything; a `user` the run states and the commits
/// of projects, never those of users or slaves (names, comments, slave addresses), which only
/// root may read through the API too.
fn visible(role: Role, e: &FeedEvent) -> bool {
    if role == Role::Root || e.kind != "config" {
        return true;
    }
    serde_json::from_str::<serde_json::Value>(&e.data).is_ok_and(|d| d["kind"] == "project")
}

fn sse(e: &FeedEvent) -> Event {
    Event::default().id(e.id.to_string()).event(e.kind.as_str()).data(e.data.as_str())
}

/// `GET /events`.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event (what the stream last sent)"),
        ("since" = Option<i64>, Query, description = "the same as Last-Event-ID, for clients that cannot set it")
    ),
    responses(
        (status = 200, description = "text/event-stream: `config` events ({kind, key, version, author, comment, removed}) and `run` events ({project, run, status}), each with an id", content_type = "text/event-stream", body = String),
        (status = 400, description = "a field is invalid, or the body is not JSON of the right shape", body = ErrorBody),
        (status = 401, description = "no valid login", body = ErrorBody),
        (status = 503, description = "overloaded (Retry-After: 1) or shutting down", body = ErrorBody)
    ),
    security(("basic" = []), ("bearer" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    query: QueryMap,
) -> Result<axum::response::Response, ApiError> {
    let given = match headers.get("last-event-id").map(|v| v.to_str()) {
        Some(Ok(v)) => Some(v.trim().to_owned()),
        Some(Err(_)) => return Err(ApiError::field("Last-Event-ID", "must be an event id")),
        None => query.0.get("since").cloned(),
    };
    let after = match given {
        Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::field("Last-Event-ID", "must be an event id"))?),
        None => None,
    };
    let feed = state.feed.clone();
    // Subscribed before the stored events are read: nothing falls between the two.
    let mut live = feed.subscribe();
    let mut last = match after {
        Some(a) => a,
        None => feed.newest().await?,
    };
    let role = caller.role;
    let slot = state.streams.acquire(caller.username.as_str())?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    tokio::spawn(async move {
        let _slot = slot;
        let mut catch_up = after.is_some();
        loop {
            if catch_up {
                // Stored events after `last`, page by page (also after falling behind the live ones).
                loop {
                    let page = match feed.since(last, PAGE).await {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read stored events");
                            return;
                        }
                    };
                    for e in &page {
                        if visible(role, e) && tx.send(Ok(sse(e))).await.is_err() {
                            return;
                        }
                        last = e.id;
                    }
                    if page.len() < PAGE as usize {
                        break;
                    }
                }
                catch_up = false;
            }
            // A watcher that went away ends the stream (and gives its slot back) at once, not at
            // the next event, which may never come.
            let next = tokio::select! {
                next = live.recv() => next,
                () = tx.closed() => return,
            };
            match next {
                Ok(e) if e.id <= last => {}
                Ok(e) => {
                    if visible(role, &e) && tx.send(Ok(sse(&e))).await.is_err() {
                        return;
                    }
                    last = e.id;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => catch_up = true,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream = Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(axum::response::IntoResponse::into_response(stream))
}
