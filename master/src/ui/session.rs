//! Logging in to the console, and what every console request checks.
//!
//! A login stores a session (`console_sessions`) and gives the browser its random id in a cookie
//! that scripts cannot read (`HttpOnly`), that no other site's page or form sends
//! (`SameSite=Strict`), that only the console's paths get (`Path=/ui`) and, behind a proxy that says
//! the request came over TLS (`X-Forwarded-Proto: https`), that only travels encrypted (`Secure`).
//! Only the SHA-256 of the id is stored. A session ends when its user logs out, when the API's
//! token lifetime (`token_ttl_secs`) has passed since the login, and when the user's password or
//! role changes or the user is removed (the same token stamp that revokes the API's tokens).
//!
//! Every form that changes something carries a CSRF token derived from the session id (a page of
//! another site can neither read it nor compute it), and a request that a browser marks as coming
//! from another site (`Sec-Fetch-Site`, `Origin`) is refused before it is read.

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use mirror_common::Secret;
use mirror_common::api::{Name, UpdateUser};
use sha2::{Digest, Sha256};

use super::html::{self, esc};
use super::{UiError, see_other};
use crate::auth::Principal;
use crate::db;
use crate::error::Error;
use crate::state::AppState;

/// The cookie's name.
const COOKIE: &str = "mirror_console";

/// A logged-in browser.
pub struct Session {
    pub principal: Principal,
    /// The token every form of this session carries.
    pub csrf: String,
    id_hash: String,
}

impl Session {
    /// The hidden form field with the CSRF token.
    pub fn csrf_field(&self) -> String {
        format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&self.csrf))
    }

    pub fn is_root(&self) -> bool {
        self.principal.role == mirror_common::api::Role::Root
    }

    /// Refused unless root (the console hides root pages from others; the server refuses them too).
    pub fn need_root(&self) -> Result<(), UiError> {
        if self.is_root() { Ok(()) } else { Err(UiError::Failed(Error::Forbidden("this needs the root role"))) }
    }
}

fn hash_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn csrf_of(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(format!("csrf\0{id}").as_bytes()))
}

/// The session id the request's cookie holds, if it holds one of the right shape.
fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// The session of `id`, if it is current: not logged out, not expired, its user's stamp unchanged.
async fn current(state: &AppState, id: &str) -> Result<Option<Session>, UiError> {
    let id_hash = hash_hex(id.as_bytes());
    let Some(row) = db::sessions::get(&state.db, &id_hash).await? else { return Ok(None) };
    if row.expires_at <= chrono::Utc::now().timestamp() {
        return Ok(None);
    }
    let Some(user) = db::users::get(&state.db, &row.username).await? else { return Ok(None) };
    if user.token_stamp.is_empty() || !Secret::new(user.token_stamp.clone()).matches(&row.stamp) {
        return Ok(None);
    }
    let principal = Principal { username: user.username, role: user.role, token_expires: Some(row.expires_at) };
    Ok(Some(Session { principal, csrf: csrf_of(id), id_hash }))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let login = || UiError::Login { next: parts.uri.path().to_owned() };
        let Some(id) = cookie_id(&parts.headers) else { return Err(login()) };
        current(state, &id).await?.ok_or_else(login)
    }
}

/// Whether the browser says the request came from another site: `Sec-Fetch-Site` (every current
/// browser sends it), else an `Origin` that is not this host.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A form posted by a logged-in browser of this site with its session's CSRF token.
pub struct Posted {
    pub session: Session,
    pub fields: HashMap<String, String>,
}

impl Posted {
    /// A field's value, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

impl FromRequest<AppState> for Posted {
    type Rejection = UiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, UiError> {
        let (mut parts, body) = req.into_parts();
        if cross_site(&parts.headers) {
            return Err(UiError::Failed(Error::Forbidden("a request from another site is refused")));
        }
        let session = Session::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let Form(fields) = Form::<HashMap<String, String>>::from_request(req, state)
            .await
            .map_err(|e| Error::BadJson { field: None, message: format!("cannot read the form: {e}") })?;
        let given = fields.get("csrf").map_or("", String::as_str);
        if !Secret::new(session.csrf.clone()).matches(given) {
            return Err(UiError::Failed(Error::Forbidden(
                "the form's CSRF token is missing or wrong: reload the page",
            )));
        }
        Ok(Posted { session, fields })
    }
}

/// The login form, with a message when the last attempt failed.
fn login_form(next: &str, said: Option<&str>, message: Option<&str>) -> String {
    let mut message = message.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m))).unwrap_or_default();
    if let Some(said) = said {
        message.push_str(&format!("<p class=\"notice\" role=\"status\">{said}</p>"));
    }
    let body = format!(
        "<h1>Log in to mirror-sync</h1>{message}<form method=\"post\" action=\"/ui/login\" class=\"stack\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><label for=\"username\">User name</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required><button>Log in</button></form>",
        esc(next)
    );
    html::bare_page("Log in", &body)
}

/// Where to go after logging in: a console path only (never another site).
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => n.clone(),
        _ => "/ui/".to_owned(),
    }
}

/// `GET /ui/login`.
pub async fn login_page(Query(q): Query<HashMap<String, String>>) -> Response {
    let said = match q.get("done").map(String::as_str) {
        Some("logout") => Some("You are logged out."),
        Some("password") => Some("Your password was changed: log in with the new one."),
        _ => None,
    };
    html::page_response(login_form(&safe_next(q.get("next")), said, None))
}

/// `POST /ui/login`: `username`, `password` (and `next`).
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    if cross_site(&headers) {
        return Err(UiError::Failed(Error::Forbidden("a login from another site is refused")));
    }
    let next = safe_next(f.get("next"));
    let (username, password) = (f.get("username").map_or("", String::as_str), f.get("password"));
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        let page = login_form(&next, None, Some("give a user name and a password"));
        return Ok((axum::http::StatusCode::BAD_REQUEST, html::page_response(page)).into_response());
    };
    let principal = match state.auth.check_password(&state.db, username, password).await {
        Ok(p) => p,
        Err(crate::auth::AuthError::Unauthorized(m)) => {
            let page = login_form(&next, None, Some(m));
            return Ok((axum::http::StatusCode::UNAUTHORIZED, html::page_response(page)).into_response());
        }
        Err(e) => return Err(UiError::Failed(e.into())),
    };
    let user = db::users::get(&state.db, principal.username.as_str())
        .await?
        .ok_or(Error::Unauthorized("the user no longer exists"))?;
    let id = crate::auth::new_token();
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(state.auth.token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
    db::sessions::insert(
        &state.db,
        &hash_hex(id.expose().as_bytes()),
        user.username.as_str(),
        &user.token_stamp,
        now,
        now + ttl,
    )
    .await?;
    tracing::info!(user.name = %user.username, "console login");
    let secure = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={ttl}{}",
        id.expose(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = see_other(&next);
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| Error::Internal(e.into()))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// A response that clears the cookie and sends the browser to the login page.
fn logged_out(message: &str) -> Response {
    let mut response = see_other(&format!("/ui/login?done={message}"));
    let clear = HeaderValue::from_static("mirror_console=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, clear);
    response
}

/// `POST /ui/logout`: the session ends here (its row is deleted), not only in this browser.
pub async fn logout(State(state): State<AppState>, posted: Posted) -> Result<Response, UiError> {
    db::sessions::remove(&state.db, &posted.session.id_hash).await?;
    Ok(logged_out("logout"))
}

/// `GET /ui/account`: change one's own password.
pub async fn account(session: Session) -> Response {
    let body = format!(
        "<h1>Your account</h1><p>{} · role <strong>{}</strong></p><h2>Change your password</h2>\
         <p>Every session and API token of yours ends with the change: log in again after it.</p>\
         <form method=\"post\" action=\"/ui/account\" class=\"stack\">{}\
         <label for=\"current\">Current password</label><input id=\"current\" name=\"current_password\" \
         type=\"password\" autocomplete=\"current-password\" required><label for=\"new\">New password</label>\
         <input id=\"new\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required>\
         <button>Change the password</button></form>",
        esc(session.principal.username.as_str()),
        session.principal.role.as_str(),
        session.csrf_field()
    );
    html::page_response(html::page(&session, "Your account", &body))
}

/// `POST /ui/account`: the users service checks the current password, and the new password's
/// stamp ends this session with the others.
pub async fn change_password(State(state): State<AppState>, posted: Posted) -> Result<Response, UiError> {
    let req = UpdateUser {
        username: Name::parse(posted.session.principal.username.as_str()).map_err(|m| Error::field("username", m))?,
        password: Some(Secret::new(posted.get("password").to_owned())),
        current_password: Some(Secret::new(posted.get("current_password").to_owned())),
        role: None,
        comment: None,
        version: None,
    };
    let meta = super::projects::meta_of(&posted.session, Some("changed in the console"));
    state.users.update(&posted.session.principal, &req, &meta).await?;
    Ok(logged_out("password"))
}
