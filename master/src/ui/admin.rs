//! The cluster's timeline (any operator) and the root's pages: slaves (health, lag, token
//! rotation shown once), users and roles, webhook deliveries.

use std::fmt::Write;

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use mirror_common::Secret;
use mirror_common::api::{Name, Port, Role, UpdateUser};

use super::html::{self, badge, esc, when};
use super::projects::meta_of;
use super::{Posted, Session, UiError, charts, see_other};
use crate::db;
use crate::error::Error;
use crate::state::AppState;

/// Runs and flips drawn on the timeline at most.
const TIMELINE_MAX: i64 = 5000;

/// `GET /ui/cluster`: the last day's runs and flips.
pub async fn cluster(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    let to = Utc::now();
    let from = to - chrono::Duration::days(1);
    let runs = db::runs::since(&state.db, from.into(), TIMELINE_MAX).await?;
    let flips = db::flips::since(&state.db, from.into(), TIMELINE_MAX).await?;
    let mut recent = String::new();
    for f in flips.iter().take(20) {
        let _ = write!(
            recent,
            "<li>{} flipped <a href=\"/ui/projects/{1}\">{1}</a> to generation {2} {3}</li>",
            esc(&f.hostname),
            esc(&f.project_id),
            f.generation,
            when(Some(f.flipped_at.to_datetime()), to)
        );
    }
    let body = format!(
        "<h1>Cluster: the last day</h1>{}<h2>Latest flips</h2><ul>{}</ul>",
        charts::timeline(&runs, &flips, from, to),
        if recent.is_empty() { "<li>none</li>".to_owned() } else { recent }
    );
    Ok(html::page_response(html::page(&session, "Cluster", &body)))
}

/// `GET /ui/slaves` (root).
pub async fn slaves(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    session.need_root()?;
    Ok(html::page_response(html::page(&session, "Slaves", &slaves_body(&state, &session, "").await?)))
}

async fn slaves_body(state: &AppState, session: &Session, shown: &str) -> Result<String, UiError> {
    let now = Utc::now();
    let mut rows = String::new();
    for s in state.slaves.list().await? {
        let behind: Vec<String> =
            s.projects.iter().filter(|p| p.lag > 0).map(|p| format!("{} ({})", p.project, p.lag)).collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" \
             action=\"/ui/slaves/rotate\" class=\"inline\">{}<input type=\"hidden\" name=\"hostname\" value=\"{}\">\
             <input type=\"hidden\" name=\"port\" value=\"{}\"><button>Rotate the token</button></form></td></tr>",
            esc(&s.name),
            if s.healthy {
                badge("success").replace(">success<", ">healthy<")
            } else {
                badge("failed").replace(">failed<", ">unhealthy<")
            },
            when(s.last_seen.map(|t| t.to_datetime()), now),
            s.projects.len(),
            if behind.is_empty() { "none".to_owned() } else { esc(&behind.join(", ")) },
            session.csrf_field(),
            esc(s.hostname.as_str()),
            s.port,
        );
    }
    Ok(format!(
        "<h1>Slaves</h1>{shown}<div class=\"wrap\"><table><thead><tr><th scope=\"col\">Slave</th><th scope=\"col\">Health</th>\
         <th scope=\"col\">Last seen</th><th scope=\"col\">Projects</th><th scope=\"col\">Behind (generations)</th>\
         <th scope=\"col\">Token</th></tr></thead><tbody>{rows}</tbody></table></div>"
    ))
}

/// `POST /ui/slaves/rotate` (root): the new token is shown on this answer only.
pub async fn rotate(State(state): State<AppState>, posted: Posted) -> Result<Response, UiError> {
    posted.session.need_root()?;
    let port = posted
        .get("port")
        .parse::<u16>()
        .ok()
        .and_then(|p| Port::try_from(p).ok())
        .ok_or_else(|| Error::field("port", "must be 1-65535"))?;
    let hostname = posted.get("hostname").to_owned();
    let meta = meta_of(&posted.session, Some("rotated in the console"));
    let (port, token): (u16, Secret) = state.slaves.rotate_token(&hostname, Some(port), &meta).await?;
    let shown = format!(
        "<div class=\"notice\" role=\"status\"><p>The new token of {}:{port} (shown this once; the old one no longer \
         works): put it in the slave's configuration.</p><p><code class=\"secret\">{}</code></p></div>",
        esc(&hostname),
        esc(token.expose())
    );
    Ok(html::page_response(html::page(&posted.session, "Slaves", &slaves_body(&state, &posted.session, &shown).await?)))
}

fn role_select(id: &str, current: Role) -> String {
    let mut out = format!("<select id=\"{id}\" name=\"role\">");
    for r in Role::ALL {
        let selected = if *r == current { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{}</option>", r.as_str());
    }
    out.push_str("</select>");
    out
}

/// `GET /ui/users` (root).
pub async fn users(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, UiError> {
    session.need_root()?;
    let now = Utc::now();
    let mut rows = String::new();
    for (i, u) in state.users.list().await?.into_iter().enumerate() {
        let name = esc(u.username.as_str());
        let _ = write!(
            rows,
            "<tr><td>{name}</td><td>{}</td><td><form method=\"post\" action=\"/ui/users/role\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"username\" value=\"{name}\"><label class=\"hide\" for=\"role-{i}\">Role of \
             {name}</label>{}<button>Set the role</button></form> <form method=\"post\" action=\"/ui/users/remove\" \
             class=\"inline\">{csrf}<input type=\"hidden\" name=\"username\" value=\"{name}\"><button>Remove</button>\
             </form></td></tr>",
            when(Some(u.created_at.to_datetime()), now),
            role_select(&format!("role-{i}"), u.role),
            csrf = session.csrf_field(),
        );
    }
    let body = format!(
        "<h1>Users</h1>{}<div class=\"wrap\"><table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">Created</th>\
         <th scope=\"col\">Role</th></tr></thead><tbody>{rows}</tbody></table></div><h2>Add a user</h2>\
         <form method=\"post\" action=\"/ui/users\" class=\"stack\">{}<label for=\"new-name\">User name</label>\
         <input id=\"new-name\" name=\"username\" required><label for=\"new-password\">Password</label>\
         <input id=\"new-password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required>\
         <label for=\"new-role\">Role</label>{}<button>Add the user</button></form>",
        html::notice(q.get("done").map(String::as_str)),
        session.csrf_field(),
        role_select("new-role", Role::User),
    );
    Ok(html::page_response(html::page(&session, "Users", &body)))
}

fn user_fields(posted: &Posted) -> Result<(Name, Option<Role>), UiError> {
    let name = Name::parse(posted.get("username").trim()).map_err(|m| Error::field("username", m))?;
    let role = match posted.get("role") {
        "" => None,
        r => Some(Role::parse(r).ok_or_else(|| Error::field("role", "must be root or user"))?),
    };
    Ok((name, role))
}

/// `POST /ui/users` (root): `username`, `password`, `role`.
pub async fn create_user(State(state): State<AppState>, posted: Posted) -> Result<Response, UiError> {
    posted.session.need_root()?;
    let (name, role) = user_fields(&posted)?;
    let meta = meta_of(&posted.session, Some("added in the console"));
    state
        .users
        .create(&name, Secret::new(posted.get("password").to_owned()), role.unwrap_or(Role::User), &meta)
        .await?;
    Ok(see_other("/ui/users?done=user"))
}

/// `POST /ui/users/role` (root): `username`, `role`.
pub async fn set_role(State(state): State<AppState>, posted: Posted) -> Result<Response, UiError> {
    posted.session.need_root()?;
    let (username, role) = user_fields(&posted)?;
    let req = UpdateUser { username, password: None, current_password: None, role, comment: None, version: None };
    state.users.update(&posted.session.principal, &req, &meta_of(&posted.session, None)).await?;
    Ok(see_other("/ui/users?done=user"))
}

/// `POST /ui/users/remove` (root): `username`.
pub async fn remove_user(State(state): State<AppState>, posted: Posted) -> Result<Response, UiError> {
    posted.session.need_root()?;
    let (username, _) = user_fields(&posted)?;
    state.users.remove(&username, &meta_of(&posted.session, None)).await?;
    Ok(see_other("/ui/users?done=user"))
}

/// `GET /ui/alerts` (root): the newest webhook deliveries and their state.
pub async fn alerts(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    session.need_root()?;
    let now = Utc::now();
    let mut rows = String::new();
    for d in db::alerts::recent(&state.db, 200).await? {
        let status = match (d.delivered_at, d.gave_up_at) {
            (Some(_), _) => "delivered",
            (None, Some(_)) => "gave up",
            (None, None) => "pending",
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.webhook),
            esc(&d.event),
            badge(status),
            when(Some(d.created_at.to_datetime()), now),
            d.attempts,
            esc(d.last_error.as_deref().unwrap_or("")),
        );
    }
    let body = format!(
        "<h1>Alerts</h1><p>Webhook deliveries, newest first.</p><div class=\"wrap\"><table><thead><tr>\
         <th scope=\"col\">Webhook</th><th scope=\"col\">Event</th><th scope=\"col\">State</th><th scope=\"col\">Raised</th>\
         <th scope=\"col\">Attempts</th><th scope=\"col\">Last error</th></tr></thead><tbody>{rows}</tbody></table></div>"
    );
    Ok(html::page_response(html::page(&session, "Alerts", &body)))
}
