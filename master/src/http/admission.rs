//! Admission: at most `max_reads_in_flight` reads and `max_writes_in_flight` writes are answered at
//! once, their bodies' sending included. A request that finds no room waits at most `overload_wait_ms` for one, then gets a 503
//! with `Retry-After` at once, instead of waiting in a queue that grows with the number of clients
//! (where it would time out anyway, having cost memory). Reads and writes have their own room, so
//! neither starves the other. A slave's report or start and `/status/` are always admitted: they
//! are cheap and few.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

pub struct Admission {
    reads: Arc<Semaphore>,
    writes: Arc<Semaphore>,
    wait: Duration,
    /// The longest a response keeps its room while its body is being sent: a client that reads
    /// slowly (a byte now and then, never idle long enough to be cut off) must not keep the room
    /// from others. Past it the body goes on, outside the count: its memory is the connection's
    /// bounded buffer and a share of a listing every reader shares.
    hold_at_most: Duration,
    /// Requests answered 503 since start.
    pub shed: AtomicU64,
    /// When shedding was last logged (milliseconds since `started`).
    last_logged: AtomicU64,
    started: std::time::Instant,
}

/// Shedding is logged at most this often, with the count so far.
const LOG_EVERY_MS: u64 = 10_000;

/// How long a response keeps its room at most while its body is sent.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(10);

impl Admission {
    pub fn new(max_reads: usize, max_writes: usize, wait: Duration, hold_at_most: Duration) -> Admission {
        Admission {
            reads: Arc::new(Semaphore::new(max_reads)),
            writes: Arc::new(Semaphore::new(max_writes)),
            wait,
            hold_at_most,
            shed: AtomicU64::new(0),
            last_logged: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }
}

/// Whether a request changes something (its room is the writes').
fn is_write(method: &Method, path: &str) -> bool {
    let changes_on_get = ["/enable_project", "/disable_project", "/syncup"];
    !matches!(*method, Method::GET | Method::HEAD) || changes_on_get.iter().any(|p| path.starts_with(p))
}

fn always_admitted(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == "/status" || path == "/slave_rsync_complete" || path == "/slave_started"
}

pub async fn admit(State(admission): State<Arc<Admission>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if always_admitted(path) || super::streams::is_stream(path, request.uri().query()) {
        return next.run(request).await;
    }
    let room = if is_write(request.method(), path) { &admission.writes } else { &admission.reads };
    let permit = match Arc::clone(room).try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            tokio::time::timeout(admission.wait, Arc::clone(room).acquire_owned()).await.ok().and_then(Result::ok)
        }
    };
    let Some(permit) = permit else {
        let shed = admission.shed.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(admission.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = admission.last_logged.load(Ordering::Relaxed);
        if (shed == 1 || now.saturating_sub(last) >= LOG_EVERY_MS)
            && admission.last_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(shed_since_start = shed, "overloaded: requests are answered 503 (Retry-After: 1)");
        }
        let mut response =
            ApiError::Unavailable("the master is overloaded: try again in a second".into()).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    // The room is held until the body is sent (a large listing to a slow client takes longer
    // than the handler), so that what is in flight, and the work it costs, stays bounded; but
    // not longer than `hold_at_most`.
    let response = next.run(request).await;
    let (sent, done) = tokio::sync::oneshot::channel::<()>();
    let hold_at_most = admission.hold_at_most;
    tokio::spawn(async move {
        let _permit: OwnedSemaphorePermit = permit;
        let _ = tokio::time::timeout(hold_at_most, done).await;
    });
    response.map(|body| Body::new(Holding { inner: body, _sent: sent }))
}

/// A response body whose sending (or dropping) gives its request's room back.
struct Holding {
    inner: Body,
    /// Dropped with the body: the task holding the room lets it go.
    _sent: tokio::sync::oneshot::Sender<()>,
}

impl http_body::Body for Holding {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// A body that never ends, as one read by a client that stopped reading.
    struct Never;

    impl http_body::Body for Never {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }

    /// One read room; the one route answers with a body that never ends.
    fn stuck_router(hold_at_most: Duration) -> axum::Router {
        let admission = Arc::new(Admission::new(1, 1, Duration::from_millis(20), hold_at_most));
        axum::Router::new()
            .route("/slow", axum::routing::get(|| async { Body::new(Never) }))
            .layer(axum::middleware::from_fn_with_state(admission, admit))
    }

    async fn get(router: &axum::Router) -> (axum::http::StatusCode, Response) {
        let request = axum::http::Request::get("/slow").body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        (response.status(), response)
    }

    #[tokio::test]
    async fn a_response_keeps_its_room_while_sent_but_not_beyond_the_limit() {
        let router = stuck_router(Duration::from_millis(300));
        let (status, first) = get(&router).await;
        assert_eq!(status, axum::http::StatusCode::OK);
        // Its body is not sent yet: the one room is taken.
        let (status, refused) = get(&router).await;
        assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        // Past the limit the room is free again, the first body still unsent.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, second) = get(&router).await;
        assert_eq!(status, axum::http::StatusCode::OK);
        // A body dropped (sent, or its client gone) gives the room back at once.
        drop(second);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(get(&router).await.0, axum::http::StatusCode::OK);
        drop(first);
    }

    #[test]
    fn writes_are_told_from_reads() {
        assert!(is_write(&Method::POST, "/add_project/"));
        assert!(is_write(&Method::GET, "/syncup/"));
        assert!(is_write(&Method::GET, "/disable_project/id=x"));
        assert!(!is_write(&Method::GET, "/list_projects/"));
        assert!(always_admitted("/status/") && always_admitted("/slave_rsync_complete"));
        assert!(!always_admitted("/list_projects/"));
    }
}
