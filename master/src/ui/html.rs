//! The console's page frame and the small pieces every page uses. Every text that comes from a
//! store, a request or an upstream goes through [`esc`] (or [`query_escape`] in a URL).

use std::fmt::Write;

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use mirror_common::api::Role;

/// `2026-12-05 03:10 UTC` with "3 hours ago" beside it, or "never" (as the status page shows times).
pub use crate::read::status_page::{esc, relative, time_cell as when};

use super::Session;

/// Percent-encodes a text for a URL's query or path segment (everything but unreserved
/// characters).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{} · mirror-sync</title>\
         <link rel=\"stylesheet\" href=\"/ui/assets/app.css\"><script src=\"/ui/assets/app.js\" defer></script></head>",
        esc(title)
    )
}

/// A page without the navigation (login, errors).
pub fn bare_page(title: &str, body: &str) -> String {
    format!("{}<body><main id=\"main\">{body}</main></body></html>\n", head(title))
}

/// A page of a logged-in operator: the navigation (root pages for a root only), the body.
pub fn page(session: &Session, title: &str, body: &str) -> String {
    let root = session.principal.role == Role::Root;
    let admin = if root {
        "<a href=\"/ui/slaves\">Slaves</a><a href=\"/ui/users\">Users</a><a href=\"/ui/alerts\">Alerts</a>"
    } else {
        ""
    };
    format!(
        "{}<body><header><nav aria-label=\"Console\"><a href=\"/ui/\">Projects</a><a href=\"/ui/projects/new\">Add a \
         project</a><a href=\"/ui/cluster\">Cluster</a>{admin}<span class=\"who\"><a href=\"/ui/account\">{} ({})</a>\
         </span><form method=\"post\" action=\"/ui/logout\" class=\"inline\">{}<button>Log out</button></form></nav>\
         </header><main id=\"main\">{body}</main></body></html>\n",
        head(title),
        esc(session.principal.username.as_str()),
        session.principal.role.as_str(),
        session.csrf_field(),
    )
}

/// A page as the answer: never cached (it shows state, and a session's token).
pub fn page_response(page: String) -> Response {
    let mut response = Html(page).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A state badge (its class gives its colour).
pub fn badge(state: &str) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", esc(state))
}

/// A flash message carried in the URL after an action (`?done=...`): only the fixed texts below,
/// never text from the request.
pub fn notice(code: Option<&str>) -> &'static str {
    match code {
        Some("sync") => "<p class=\"notice\" role=\"status\">A run was queued.</p>",
        Some("stop") => "<p class=\"notice\" role=\"status\">The run was told to stop.</p>",
        Some("enable") => "<p class=\"notice\" role=\"status\">The project is enabled.</p>",
        Some("disable") => "<p class=\"notice\" role=\"status\">The project is disabled.</p>",
        Some("saved") => "<p class=\"notice\" role=\"status\">Saved as a new version.</p>",
        Some("reverted") => {
            "<p class=\"notice\" role=\"status\">Reverted: a new version holds the old configuration.</p>"
        }
        Some("added") => "<p class=\"notice\" role=\"status\">The project was added.</p>",
        Some("user") => "<p class=\"notice\" role=\"status\">The user was changed.</p>",
        _ => "",
    }
}

/// Bytes as rsync's `-h` prints them.
pub fn bytes(n: Option<i64>) -> String {
    match n {
        Some(n) => crate::read::views::human_size(u64::try_from(n).unwrap_or(0)),
        None => "–".into(),
    }
}
