//! The HTTP server loop of the master and the slave: HTTP/1.1 with a header-read timeout, an idle
//! timeout on every connection, and a cap on open connections. A client that opens many
//! connections and sends half a header (slowloris) cannot hold the server: at the cap, the
//! connection that has waited longest without a request in progress is closed for the newcomer.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Connection limits, from each binary's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// A request's header must arrive whole within this.
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// Checks the three settings as both binaries name them: an error is (key, what is wrong).
    pub fn new(
        max_connections: usize,
        header_read_timeout_secs: u64,
        idle_timeout_secs: u64,
    ) -> Result<Limits, (&'static str, &'static str)> {
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(("max_connections", "must be between 1 and 1000000"));
        }
        if !(1..=3600).contains(&header_read_timeout_secs) {
            return Err(("header_read_timeout_secs", "must be between 1 and 3600"));
        }
        if !(1..=86_400).contains(&idle_timeout_secs) {
            return Err(("idle_timeout_secs", "must be between 1 and 86400"));
        }
        Ok(Limits {
            max_connections,
            header_read_timeout: Duration::from_secs(header_read_timeout_secs),
            idle_timeout: Duration::from_secs(idle_timeout_secs),
        })
    }
}

/// Failed accepts since start (out of file descriptors, mostly), over every server of the process.
static ACCEPT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// The most a connection buffers, reading or writing.
const MAX_CONNECTION_BUFFER: usize = 64 * 1024;

struct Conn {
    opened: Instant,
    /// Requests being answered on this connection now.
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Conn>>,
    next_id: AtomicU64,
    /// Woken when a connection ends.
    freed: Notify,
}

impl Registry {
    fn conns(&self) -> MutexGuard<'_, BTreeMap<u64, Conn>> {
        self.conns.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes room for one more connection: closes the oldest one that is between requests, or
    /// waits for one to end when every connection is answering a request.
    async fn make_room(&self, max: usize) {
        loop {
            let freed = self.freed.notified();
            {
                let conns = self.conns();
                if conns.len() < max {
                    return;
                }
                let idle = conns.values().filter(|c| c.in_flight.load(Ordering::SeqCst) == 0).min_by_key(|c| c.opened);
                if let Some(victim) = idle {
                    // It ends at once and frees its slot; `freed` wakes us then.
                    victim.close.notify_one();
                }
            }
            freed.await;
        }
    }
}

/// Resolves once `stop` turns true (the guard `wait_for` returns is not held across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `router` on `listener` until `shutdown` resolves; then takes no new connection, lets
/// the requests in progress finish and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopping = stop_rx.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut stopping) => break,
            _ = registry.make_room(limits.max_connections.max(1)) => {}
        }
        let (stream, _peer) = tokio::select! {
            _ = stopped(&mut stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: counted, and a short wait rather than
                    // a spin (the connections in progress go on meanwhile).
                    let total = ACCEPT_ERRORS.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(error = %e, accept_errors_total = total, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let id = registry.next_id.fetch_add(1, Ordering::SeqCst);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        registry
            .conns()
            .insert(id, Conn { opened: Instant::now(), in_flight: Arc::clone(&in_flight), close: Arc::clone(&close) });
        let (router, registry, stop) = (router.clone(), Arc::clone(&registry), stop_rx.clone());
        tokio::spawn(async move {
            serve_connection(stream, router, limits, in_flight, close, stop).await;
            registry.conns().remove(&id);
            registry.freed.notify_waiters();
        });
    }
    drop(listener);
    // Every connection task sees the stop and ends after its request in progress.
    loop {
        let freed = registry.freed.notified();
        if registry.conns().is_empty() {
            return Ok(());
        }
        freed.await;
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    limits: Limits,
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let counter = Arc::clone(&in_flight);
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (router, counter) = (router.clone(), Arc::clone(&counter));
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let response = router.oneshot(request.map(axum::body::Body::new)).await;
            counter.fetch_sub(1, Ordering::SeqCst);
            response
        }
    });
    let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    // What one connection buffers of a response (hyper's default is ~400 KiB): with a thousand
    // clients reading a large listing, the default alone would be 400 MiB.
    builder.max_buf_size(MAX_CONNECTION_BUFFER);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = close.notified() => return,
        _ = stopped(&mut stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// A TCP stream that fails with `TimedOut` once no byte has moved either way for `idle`.
struct IdleIo {
    inner: tokio::net::TcpStream,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl IdleIo {
    fn new(inner: tokio::net::TcpStream, idle: Duration) -> IdleIo {
        IdleIo { inner, idle, deadline: Box::pin(tokio::time::sleep(idle)) }
    }

    fn moved(&mut self) {
        self.deadline.as_mut().reset(tokio::time::Instant::now() + self.idle);
    }

    /// A write that moved bytes resets the idle clock; one that waits checks it.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }

    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle")),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the soft limit on open files to the hard one (many connections, many rsync pipes).
/// Returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}
