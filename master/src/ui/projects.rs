//! The console's front page (every project: search, filter by state, sort, pages of 100, a
//! sparkline each) and the actions on a project (sync now, stop, enable, disable, add).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use mirror_common::api::{ProjectId, RunStatus};

use super::html::{self, badge, esc, query_escape, when};
use super::{Posted, Session, UiError, charts, see_other};
use crate::db;
use crate::error::Error;
use crate::read::views::{ProjectState, is_stale, public_state, size_text, upstream};
use crate::service::history::Meta;
use crate::state::AppState;

/// Projects on one page of the table.
pub const PER_PAGE: usize = 100;
/// Runs in a sparkline.
const SPARK_RUNS: i64 = 30;

/// Who made a change from the console, and why.
pub fn meta_of(session: &Session, comment: Option<&str>) -> Meta {
    Meta {
        author: Some(session.principal.username.clone()),
        comment: comment.filter(|c| !c.trim().is_empty()).map(str::to_owned),
        based_on: None,
        root: session.is_root(),
    }
}

/// What the table shows: the query string's `q`, `state`, `sort`, `page`.
struct View {
    q: String,
    state: String,
    sort: String,
    page: usize,
}

impl View {
    fn of(q: &HashMap<String, String>) -> View {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        View {
            q: get("q").chars().take(200).collect(),
            state: get("state"),
            sort: get("sort"),
            page: get("page").parse::<usize>().unwrap_or(1).max(1),
        }
    }

    fn link(&self, page: usize) -> String {
        format!(
            "/ui/?q={}&amp;state={}&amp;sort={}&amp;page={page}",
            query_escape(&self.q),
            query_escape(&self.state),
            query_escape(&self.sort)
        )
    }
}

fn keep(s: &ProjectState, v: &View, stale_after: u64, now: chrono::DateTime<Utc>) -> bool {
    let state_ok = match v.state.as_str() {
        "" | "all" => true,
        "stale" => is_stale(s, now, stale_after),
        wanted => public_state(s) == wanted,
    };
    let needle = v.q.to_lowercase();
    state_ok
        && (needle.is_empty()
            || s.row.id.as_str().to_lowercase().contains(&needle)
            || s.row.project.to_lowercase().contains(&needle)
            || upstream(&s.row).to_lowercase().contains(&needle))
}

fn sort(list: &mut [Arc<ProjectState>], by: &str) {
    match by {
        "state" => list.sort_by(|a, b| public_state(a).cmp(public_state(b)).then(a.row.id.cmp(&b.row.id))),
        "updated" => list.sort_by_key(|s| s.last_success.map(|t| t.to_datetime())),
        "size" => list.sort_by_key(|s| std::cmp::Reverse(s.last_run.as_ref().and_then(|r| r.total_size))),
        "next" => list.sort_by_key(|s| (s.next_run.is_none(), s.next_run)),
        _ => {}
    }
}

fn select(name: &str, label: &str, current: &str, options: &[(&str, &str)]) -> String {
    let mut out = format!("<label for=\"{name}\">{label}</label><select id=\"{name}\" name=\"{name}\">");
    for (value, text) in options {
        let selected = if *value == current { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{value}\"{selected}>{text}</option>");
    }
    out.push_str("</select>");
    out
}

/// The buttons of a project's actions (one form; each button posts to its own action).
pub fn actions(session: &Session, s: &ProjectState, back: &str) -> String {
    let id = esc(s.row.id.as_str());
    let going = matches!(s.last_run.as_ref().map(|r| r.status), Some(RunStatus::Queued | RunStatus::Running));
    let mut buttons = String::new();
    if s.row.enabled {
        let _ = write!(buttons, "<button formaction=\"/ui/projects/{id}/sync\">Sync now</button>");
    }
    if going {
        let _ = write!(buttons, "<button formaction=\"/ui/projects/{id}/stop\">Stop</button>");
    }
    let toggle = if s.row.enabled { "disable" } else { "enable" };
    let label = if s.row.enabled { "Disable" } else { "Enable" };
    let _ = write!(buttons, "<button formaction=\"/ui/projects/{id}/{toggle}\">{label}</button>");
    format!(
        "<form method=\"post\" class=\"actions\" aria-label=\"Actions on {id}\">{}<input type=\"hidden\" name=\"back\" \
         value=\"{back}\">{buttons}</form>",
        session.csrf_field()
    )
}

/// `GET /ui/`: the projects.
pub async fn index(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let view = View::of(&q);
    let now = Utc::now();
    let stale_after = state.settings.stale_after_secs;
    let all = state.listing.states(&state.db).await?;
    let mut list: Vec<Arc<ProjectState>> = all.iter().filter(|s| keep(s, &view, stale_after, now)).cloned().collect();
    sort(&mut list, &view.sort);
    let pages = list.len().div_ceil(PER_PAGE).max(1);
    let page = view.page.min(pages);
    let shown = &list[(page - 1) * PER_PAGE..(page * PER_PAGE).min(list.len())];
    let ids: Vec<ProjectId> = shown.iter().map(|s| s.row.id.clone()).collect();
    let mut recent: HashMap<ProjectId, Vec<db::runs::RunPoint>> = HashMap::new();
    for r in db::runs::recent_of(&state.db, &ids, SPARK_RUNS).await? {
        recent.entry(r.project_id.clone()).or_default().push(r);
    }
    let mut rows = String::new();
    for s in shown {
        let id = esc(s.row.id.as_str());
        let st = public_state(s);
        let stale = if is_stale(s, now, stale_after) { badge("stale") } else { String::new() };
        let _ = write!(
            rows,
            "<tr><td><a href=\"/ui/projects/{id}\">{id}</a></td><td>{}{stale}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            badge(st),
            when(s.last_success.map(|t| t.to_datetime()), now),
            when(s.next_run, now),
            esc(&size_text(s)),
            charts::sparkline(recent.get(&s.row.id).map_or(&[][..], Vec::as_slice)),
            actions(&session, s, "list"),
        );
    }
    let count = |f: &dyn Fn(&ProjectState) -> bool| all.iter().filter(|s| f(s)).count();
    let failed = count(&|s| public_state(s) == "failed");
    let syncing = count(&|s| public_state(s) == "syncing");
    let stale = count(&|s| is_stale(s, now, stale_after));
    let states = [
        ("all", "all"),
        ("failed", "failed"),
        ("stale", "stale"),
        ("syncing", "syncing"),
        ("disabled", "disabled"),
        ("success", "success"),
        ("paused", "stopped"),
        ("none", "never run"),
    ];
    let sorts = [("id", "id"), ("state", "state"), ("updated", "last update"), ("size", "size"), ("next", "next run")];
    let mut pager = String::new();
    if pages > 1 {
        pager.push_str("<nav aria-label=\"Pages\" class=\"pager\">");
        if page > 1 {
            let _ = write!(pager, "<a href=\"{}\" rel=\"prev\">Previous</a>", view.link(page - 1));
        }
        let _ = write!(pager, "<span>page {page} of {pages}</span>");
        if page < pages {
            let _ = write!(pager, "<a href=\"{}\" rel=\"next\">Next</a>", view.link(page + 1));
        }
        pager.push_str("</nav>");
    }
    let body = format!(
        "<h1>Projects</h1>{}<p>{} projects · <strong>{failed}</strong> failed · <strong>{stale}</strong> stale · \
         <strong>{syncing}</strong> syncing</p><form method=\"get\" action=\"/ui/\" class=\"filters\" role=\"search\">\
         <label for=\"q\">Search</label><input id=\"q\" name=\"q\" type=\"search\" value=\"{}\">{}{}\
         <button>Show</button></form><p>{} shown</p>{pager}<div class=\"wrap\"><table><caption>Projects</caption>\
         <thead><tr><th scope=\"col\">Project</th><th scope=\"col\">State</th><th scope=\"col\">Last update</th>\
         <th scope=\"col\">Next run</th><th scope=\"col\">Size</th><th scope=\"col\">Recent runs</th>\
         <th scope=\"col\">Actions</th></tr></thead><tbody>{rows}</tbody></table></div>{pager}",
        html::notice(q.get("done").map(String::as_str)),
        all.len(),
        esc(&view.q),
        select("state", "State", &view.state, &states),
        select("sort", "Sort by", &view.sort, &sorts),
        list.len(),
    );
    Ok(html::page_response(html::page(&session, "Projects", &body)))
}

fn project_id(id: &str) -> Result<ProjectId, UiError> {
    ProjectId::parse(id).map_err(|m| UiError::Failed(Error::field("id", m)))
}

/// Where an action sends the browser back to: the table, or the project's page.
fn back(posted: &Posted, id: &ProjectId, done: &str) -> Response {
    if posted.get("back") == "list" {
        see_other(&format!("/ui/?done={done}"))
    } else {
        see_other(&format!("/ui/projects/{}?done={done}", query_escape(id.as_str())))
    }
}

/// `POST /ui/projects/{id}/sync`.
pub async fn sync(State(state): State<AppState>, Path(id): Path<String>, posted: Posted) -> Result<Response, UiError> {
    let id = project_id(&id)?;
    state.runs.start(&posted.session.principal, &id).await?;
    Ok(back(&posted, &id, "sync"))
}

/// `POST /ui/projects/{id}/stop`: stops the project's run that is going.
pub async fn stop(State(state): State<AppState>, Path(id): Path<String>, posted: Posted) -> Result<Response, UiError> {
    let id = project_id(&id)?;
    let going = db::runs::going(&state.db, id.as_str())
        .await?
        .ok_or_else(|| Error::conflict("id", format!("no run of {id} is going")))?;
    state.runs.stop(&posted.session.principal, going.id).await?;
    Ok(back(&posted, &id, "stop"))
}

async fn set_enabled(state: &AppState, id: &str, posted: &Posted, enabled: bool) -> Result<Response, UiError> {
    let id = project_id(id)?;
    let meta = meta_of(&posted.session, None);
    state.projects.set_enabled(&id, enabled, &meta).await?;
    Ok(back(posted, &id, if enabled { "enable" } else { "disable" }))
}

/// `POST /ui/projects/{id}/enable`.
pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, UiError> {
    set_enabled(&state, &id, &posted, true).await
}

/// `POST /ui/projects/{id}/disable`.
pub async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, UiError> {
    set_enabled(&state, &id, &posted, false).await
}

/// The form of a new project: its configuration as YAML, with an example to start from.
fn new_form(session: &Session, id: &str, text: &str, message: Option<&str>) -> String {
    let message = message.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m))).unwrap_or_default();
    format!(
        "<h1>Add a project</h1>{message}<p>The project's configuration as YAML (the fields of <code>PUT \
         /projects/{{id}}</code>; <code>dest</code> relative to the mirror root).</p>\
         <form method=\"post\" action=\"/ui/projects/new\" class=\"stack\">{}<label for=\"id\">Id</label>\
         <input id=\"id\" name=\"id\" required value=\"{}\"><label for=\"config\">Configuration (YAML)</label>\
         <textarea id=\"config\" name=\"config\" rows=\"14\" spellcheck=\"false\">{}</textarea>\
         <button>Add the project</button></form>",
        session.csrf_field(),
        esc(id),
        esc(text)
    )
}

/// `GET /ui/projects/new`.
pub async fn new_page(session: Session) -> Response {
    let example = "project: Example\nrsync_host: rsync.example.org\nrsync_module: example/\ndest: example\n\
                   cron_options:\n  minute: \"*/30\"\n";
    html::page_response(html::page(&session, "Add a project", &new_form(&session, "", example, None)))
}

/// `POST /ui/projects/new`: `id`, `config` (YAML). Refused if the id exists.
pub async fn create(State(state): State<AppState>, posted: Posted) -> Result<Response, UiError> {
    let (id_text, text) = (posted.get("id").trim().to_owned(), posted.get("config").to_owned());
    let attempt = async {
        let id = project_id(&id_text)?;
        if db::projects::get(&state.db.read, id.as_str()).await?.is_some() {
            return Err(UiError::Failed(Error::conflict("id", format!("a project with id '{id}' exists"))));
        }
        let req = super::written::parse_config(&id, &text).await?;
        let mut meta = meta_of(&posted.session, Some("added in the console"));
        meta.based_on = Some(0);
        state.projects.put(&id, req, &meta).await?;
        Ok::<_, UiError>(id)
    };
    match attempt.await {
        Ok(id) => Ok(see_other(&format!("/ui/projects/{}?done=added", query_escape(id.as_str())))),
        Err(UiError::Failed(e)) if e.status().is_client_error() => {
            let message = super::written::message_of(&e);
            let page = html::page(
                &posted.session,
                "Add a project",
                &new_form(&posted.session, &id_text, &text, Some(&message)),
            );
            Ok((e.status(), html::page_response(page)).into_response())
        }
        Err(e) => Err(e),
    }
}

use axum::response::IntoResponse;
