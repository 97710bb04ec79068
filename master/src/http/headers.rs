//! Headers every response carries, so that a browser never sniffs a run log (upstream text) into
//! HTML, never frames a page, never sends our URLs as a referrer, and runs no script on a page
//! that has none: the status page and the JSON API allow no script at all; Swagger UI (`/docs`)
//! runs only its own files, served from this master.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Pages and documents of our own: no script, no plugin, styles only inline (the status page's).
const STRICT: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                      base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// Swagger UI: its scripts, styles and images come from this master only.
const DOCS: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
                    frame-ancestors 'none'";

/// The console: its own script and stylesheet only, nothing inline; it fetches only from here.
const CONSOLE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn secure(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let csp = if path.starts_with("/docs") {
        DOCS
    } else if path == "/ui" || path.starts_with("/ui/") {
        CONSOLE
    } else {
        STRICT
    };
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in set {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}
