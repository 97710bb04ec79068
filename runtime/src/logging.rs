//! Logging for the master and the slave: text for a terminal, or one JSON object per line
//! (`log_format = "json"`) for a log pipeline; and a request id for every HTTP request, in its
//! log lines and in the `x-request-id` response header.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the span fields (the request id among them).
    Json,
}

/// Installs the global subscriber; `RUST_LOG` overrides `filter`.
pub fn init(filter: &str, format: LogFormat) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(filter))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).try_init()
        }
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    }
}

pub const REQUEST_ID: &str = "x-request-id";

/// A client's own id is kept when it is short and plain (it ends up in the logs); otherwise one
/// is made: 16 random hex digits.
fn usable(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Middleware: every request runs in a `request` span carrying its id, and answers with it.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| usable(v));
    let id = given.map_or_else(new_id, str::to_owned);
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

#[cfg(test)]
mod tests {
    use super::usable;

    #[test]
    fn only_plain_client_ids_are_kept() {
        assert!(usable("abc-123_x.y") && usable(&"a".repeat(64)));
        assert!(!usable("") && !usable(&"a".repeat(65)) && !usable("a b") && !usable("x\"}"));
    }
}
