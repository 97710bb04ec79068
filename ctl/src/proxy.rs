//! `mirrorctl proxy`: the master's API on a loopback address, each request sent on with the
//! logged-in user's token (as `kubectl proxy` does), for clients that cannot send credentials
//! themselves (pyrainer's `urllib`). Only clients on the loopback are served; the token never
//! leaves this process but towards the master it belongs to.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::client::{Client, Exit, Failure, Result};

/// The largest request body passed on (an import is at most 8 MiB).
const MAX_BODY: usize = 9 * 1024 * 1024;

/// Headers that are the proxy's own business, never passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "authorization"
            | "connection"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "cookie"
    )
}

async fn forward(client: std::sync::Arc<Client>, peer: SocketAddr, request: Request) -> Response {
    if !peer.ip().is_loopback() {
        return (StatusCode::FORBIDDEN, "mirrorctl proxy serves clients on the loopback only\n").into_response();
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large\n").into_response();
    };
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .filter(|(k, _)| !hop_by_hop(k))
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    match client.forward(parts.method.as_str(), &path, headers, body.to_vec()).await {
        Ok(r) => {
            let mut out = Response::builder().status(r.status().as_u16());
            for (k, v) in r.headers() {
                if !hop_by_hop(k) {
                    out = out.header(k.as_str(), v.as_bytes());
                }
            }
            let bytes = r.bytes().await.unwrap_or_default();
            out.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{}\n", e.message)).into_response(),
    }
}

/// Serves until interrupted. The first line on stdout says where.
pub async fn serve(client: Client, listen: &str) -> Result<()> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| Failure::new(Exit::Usage, format!("--listen: '{listen}' is not an address:port")))?;
    if !addr.ip().is_loopback() {
        return Err(Failure::new(Exit::Usage, "--listen: the proxy listens on a loopback address only"));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let master = client.url.clone();
    let client = std::sync::Arc::new(client);
    let app = axum::Router::new().fallback(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request| {
        let client = client.clone();
        async move { forward(client, peer, request).await }
    });
    println!("mirrorctl proxy: http://{local} -> {master}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
