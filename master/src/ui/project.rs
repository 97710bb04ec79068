//! One project in the console: its charts, runs, configuration (a form and YAML, saved only after
//! its diff was shown and only onto the version it was read at), versions and reverts, slaves and
//! object-store targets.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use mirror_common::api::ProjectId;
use serde_json::{Map, Value};

use super::html::{self, badge, esc, query_escape, when};
use super::written::parse_config;
use super::{Posted, Session, UiError, charts, see_other};
use crate::db;
use crate::error::Error;
use crate::service::history::{StoredProject, changed_fields};
use crate::service::projects::KIND;
use crate::state::AppState;

/// Runs drawn in the charts, and listed.
const CHART_RUNS: i64 = 100;
const LISTED_RUNS: usize = 20;
const LISTED_VERSIONS: i64 = 20;

fn project_id(id: &str) -> Result<ProjectId, UiError> {
    ProjectId::parse(id).map_err(|m| UiError::Failed(Error::field("id", m)))
}

/// A configuration's YAML (the shape `PUT /projects/{id}` takes, without any password).
fn yaml_of(state: &AppState, config: &mirror_common::project::ProjectConfig) -> Result<String, UiError> {
    Ok(crate::service::documents::project_yaml(config, &state.mirror_root)?)
}

/// The YAML of version `version` of a project (empty for a removal or a missing version).
async fn version_yaml(state: &AppState, id: &ProjectId, version: i64) -> Result<String, UiError> {
    let Some(commit) = db::commits::get(&state.db.read, KIND, id.as_str(), version).await? else {
        return Ok(String::new());
    };
    let Some(content) = commit.content else { return Ok(String::new()) };
    let stored: StoredProject = serde_json::from_str(&content).map_err(|e| Error::Internal(e.into()))?;
    yaml_of(state, &stored.config)
}

/// A line diff of two YAML texts: removed lines in `<del>`, added in `<ins>`.
pub fn diff(old: &str, new: &str) -> String {
    let d = similar::TextDiff::from_lines(old, new);
    let mut out = String::from("<pre class=\"diff\">");
    for change in d.iter_all_changes() {
        let line = esc(change.value().trim_end_matches('\n'));
        let _ = match change.tag() {
            similar::ChangeTag::Delete => writeln!(out, "<del>- {line}</del>"),
            similar::ChangeTag::Insert => writeln!(out, "<ins>+ {line}</ins>"),
            similar::ChangeTag::Equal => writeln!(out, "  {line}"),
        };
    }
    out.push_str("</pre>");
    out
}

/// The fields the form edits (the rest is kept as it is; the YAML edits everything).
const FORM_FIELDS: [(&str, &str); 6] = [
    ("project", "Name"),
    ("rsync_host", "Upstream host"),
    ("rsync_module", "Upstream module"),
    ("upstream_url", "Upstream URL (git, command)"),
    ("dest", "Destination (under the mirror root)"),
    ("timeout_secs", "Timeout (seconds)"),
];

fn config_forms(session: &Session, id: &str, map: &Map<String, Value>, yaml: &str, version: i64) -> String {
    let mut fields = String::new();
    for (name, label) in FORM_FIELDS {
        let value = match map.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let _ = write!(
            fields,
            "<label for=\"f-{name}\">{label}</label><input id=\"f-{name}\" name=\"{name}\" value=\"{}\">",
            esc(&value)
        );
    }
    let enabled = if map.get("enabled").and_then(Value::as_bool).unwrap_or(true) { " checked" } else { "" };
    let hidden = format!("{}<input type=\"hidden\" name=\"version\" value=\"{version}\">", session.csrf_field());
    format!(
        "<section aria-labelledby=\"config-h\"><h2 id=\"config-h\">Configuration <small>version {version}</small></h2>\
         <div class=\"cols\"><form method=\"post\" action=\"/ui/projects/{id}/edit\" class=\"stack\" \
         aria-label=\"Edit as a form\">{hidden}<input type=\"hidden\" name=\"mode\" value=\"form\">{fields}\
         <label class=\"check\"><input type=\"checkbox\" name=\"enabled\" value=\"on\"{enabled}> Enabled</label>\
         <label for=\"f-comment\">Why (kept with the version)</label><input id=\"f-comment\" name=\"comment\">\
         <button>Show the change</button></form><form method=\"post\" action=\"/ui/projects/{id}/edit\" \
         class=\"stack\" aria-label=\"Edit as YAML\">{hidden}<input type=\"hidden\" name=\"mode\" value=\"yaml\">\
         <label for=\"yaml\">As YAML</label><textarea id=\"yaml\" name=\"config\" rows=\"16\" spellcheck=\"false\">{}\
         </textarea><label for=\"y-comment\">Why (kept with the version)</label><input id=\"y-comment\" name=\"comment\">\
         <button>Show the change</button></form></div></section>",
        esc(yaml)
    )
}

fn runs_table(runs: &[db::runs::RunRow], now: chrono::DateTime<Utc>) -> String {
    let mut rows = String::new();
    for r in runs.iter().take(LISTED_RUNS) {
        let _ = write!(
            rows,
            "<tr><td><a href=\"/ui/runs/{0}\">#{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td>\
             <td>{6}</td></tr>",
            r.id,
            badge(r.status.as_str()),
            esc(r.trigger.as_str()),
            when(r.started_at.map(|t| t.to_datetime()), now),
            charts::duration(r).map_or_else(|| "–".into(), charts::seconds),
            html::bytes(r.bytes_transferred),
            esc(r.message.as_deref().unwrap_or("")),
        );
    }
    format!(
        "<section aria-labelledby=\"runs-h\"><h2 id=\"runs-h\">Runs</h2><div class=\"wrap\"><table><thead><tr>\
         <th scope=\"col\">Run</th><th scope=\"col\">Outcome</th><th scope=\"col\">Trigger</th><th scope=\"col\">Started</th>\
         <th scope=\"col\">Took</th><th scope=\"col\">Transferred</th><th scope=\"col\">Message</th></tr></thead>\
         <tbody>{rows}</tbody></table></div></section>"
    )
}

async fn slaves_table(state: &AppState, id: &ProjectId, now: chrono::DateTime<Utc>) -> Result<String, UiError> {
    let p = state.slaves.propagation(id.as_str(), false).await?;
    let mut rows = String::new();
    for s in &p.slaves {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.slave),
            if s.healthy { "yes" } else { "<strong>no</strong>" },
            s.generation,
            s.staged_generation.map_or_else(|| "–".into(), |g| g.to_string()),
            when(s.flipped_at.or(s.served_at).map(|t| t.to_datetime()), now),
            s.lag,
            esc(&format!(
                "{}{}",
                s.latest_status.map(|d| d.as_str()).unwrap_or(""),
                s.latest_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            )),
        );
    }
    let spread = p.flip_spread_ms.map_or_else(|| "–".into(), |ms| format!("{ms} ms"));
    Ok(format!(
        "<section aria-labelledby=\"slaves-h\"><h2 id=\"slaves-h\">Slaves</h2><p>Generation {} · spread of the last \
         flip: {spread}{}</p><div class=\"wrap\"><table><thead><tr><th scope=\"col\">Slave</th><th scope=\"col\">Healthy</th>\
         <th scope=\"col\">Serves</th><th scope=\"col\">Staged</th><th scope=\"col\">Published</th><th scope=\"col\">Lag</th>\
         <th scope=\"col\">Latest delivery</th></tr></thead><tbody>{rows}</tbody></table></div></section>",
        p.generation,
        if p.laggards.is_empty() { String::new() } else { format!(" · late: {}", esc(&p.laggards.join(", "))) },
    ))
}

async fn targets_table(state: &AppState, id: &ProjectId, now: chrono::DateTime<Utc>) -> Result<String, UiError> {
    let pushes = db::targets::last_per_target(&state.db, id.as_str()).await?;
    if pushes.is_empty() {
        return Ok(String::new());
    }
    let mut rows = String::new();
    for (p, last_success) in &pushes {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} uploaded, {} deleted, {} errors</td><td>{}</td></tr>",
            esc(&p.target),
            badge(&p.status),
            when(Some(p.started_at.to_datetime()), now),
            when(last_success.map(|t| t.to_datetime()), now),
            p.uploaded,
            p.deleted,
            p.errors,
            esc(&p.message),
        );
    }
    Ok(format!(
        "<section aria-labelledby=\"targets-h\"><h2 id=\"targets-h\">Object-store targets</h2><div class=\"wrap\"><table>\
         <thead><tr><th scope=\"col\">Target</th><th scope=\"col\">Last push</th><th scope=\"col\">Started</th>\
         <th scope=\"col\">Last success</th><th scope=\"col\">Files</th><th scope=\"col\">Message</th></tr></thead>\
         <tbody>{rows}</tbody></table></div></section>"
    ))
}

async fn versions_list(state: &AppState, id: &ProjectId, now: chrono::DateTime<Utc>) -> Result<String, UiError> {
    let rows = db::commits::history(&state.db, KIND, id.as_str(), LISTED_VERSIONS + 1, None).await?;
    let shown = |c: &db::commits::CommitRow| {
        c.content.as_deref().and_then(|t| serde_json::from_str::<StoredProject>(t).ok()).map(|s| s.public_json())
    };
    let mut items = String::new();
    for (i, c) in rows.iter().enumerate().take(usize::try_from(LISTED_VERSIONS).unwrap_or(20)) {
        let changed = changed_fields(rows.get(i + 1).and_then(shown).as_ref(), shown(c).as_ref()).join(", ");
        let _ = write!(
            items,
            "<li><a href=\"/ui/projects/{}/versions/{v}\">version {v}</a> {} by {} <small>{}</small> {}</li>",
            esc(id.as_str()),
            when(Some(c.created_at.to_datetime()), now),
            esc(c.author.as_deref().unwrap_or("the master")),
            esc(&changed),
            esc(c.comment.as_deref().unwrap_or("")),
            v = c.version,
        );
    }
    Ok(format!(
        "<section aria-labelledby=\"versions-h\"><h2 id=\"versions-h\">Versions</h2><ol reversed>{items}</ol></section>"
    ))
}

/// `GET /ui/projects/{id}`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, UiError> {
    let id = project_id(&id)?;
    let now = Utc::now();
    let all = state.listing.states(&state.db).await?;
    let s = all
        .iter()
        .find(|s| s.row.id == id)
        .ok_or_else(|| Error::not_found("id", format!("no project with id '{id}'")))?;
    let mut runs = db::runs::list(&state.db, Some(id.as_str()), CHART_RUNS).await?;
    let listed = runs_table(&runs, now);
    runs.reverse();
    let charts = format!(
        "<section aria-labelledby=\"charts-h\"><h2 id=\"charts-h\">The last {} runs</h2><div class=\"charts\">{}{}{}</div></section>",
        runs.len(),
        charts::bars("Duration", &runs, charts::duration, charts::seconds),
        charts::bars("Transferred", &runs, |r| r.bytes_transferred.map(|b| b as f64), |b| html::bytes(Some(b as i64))),
        charts::bars("Tree size", &runs, |r| r.total_size.map(|b| b as f64), |b| html::bytes(Some(b as i64))),
    );
    let map =
        crate::service::documents::project_config(&s.row, &state.mirror_root).map_err(|e| Error::Internal(e.into()))?;
    let yaml = serde_norway::to_string(&map).map_err(|e| Error::Internal(e.into()))?;
    let stored = db::projects::get(&state.db.read, id.as_str()).await?;
    let version = stored.map_or(0, |p| p.version);
    let eid = esc(id.as_str());
    let body = format!(
        "<h1>{eid} <small>{}</small></h1>{}<p>{}{} · last update {} · next run {} · upstream <code>{}</code></p>{}\
         {charts}{listed}{}{}{}{}",
        esc(&s.row.project),
        html::notice(q.get("done").map(String::as_str)),
        badge(crate::read::views::public_state(s)),
        if crate::read::views::is_stale(s, now, state.settings.stale_after_secs) {
            badge("stale")
        } else {
            String::new()
        },
        when(s.last_success.map(|t| t.to_datetime()), now),
        when(s.next_run, now),
        esc(&crate::read::views::upstream(&s.row)),
        super::projects::actions(&session, s, "project"),
        config_forms(&session, &eid, &map, &yaml, version),
        versions_list(&state, &id, now).await?,
        slaves_table(&state, &id, now).await?,
        targets_table(&state, &id, now).await?,
    );
    Ok(html::page_response(html::page(&session, id.as_str(), &body)))
}

/// The YAML a posted edit proposes: the textarea's, or the current configuration with the form's
/// fields put in.
async fn proposed(state: &AppState, id: &ProjectId, posted: &Posted) -> Result<String, UiError> {
    if posted.get("mode") == "yaml" {
        return Ok(posted.get("config").to_owned());
    }
    let row = db::projects::get(&state.db.read, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("id", format!("no project with id '{id}'")))?;
    let mut map = crate::service::documents::project_config(&row.config, &state.mirror_root)
        .map_err(|e| Error::Internal(e.into()))?;
    for (name, _) in FORM_FIELDS {
        let value = posted.get(name).trim();
        if value.is_empty() {
            map.remove(name);
        } else if name == "timeout_secs" {
            let n: u64 = value.parse().map_err(|_| Error::field(name, "must be a number of seconds"))?;
            map.insert(name.into(), Value::from(n));
        } else {
            map.insert(name.into(), Value::String(value.to_owned()));
        }
    }
    map.insert("enabled".into(), Value::Bool(posted.get("enabled") == "on"));
    serde_norway::to_string(&map).map_err(|e| UiError::Failed(Error::Internal(e.into())))
}

fn read_version(posted: &Posted) -> Result<i64, UiError> {
    posted.get("version").parse().map_err(|_| UiError::Failed(Error::field("version", "must be a version number")))
}

/// The page that says the project changed since the form was read: what changed meanwhile, and
/// the change that was not saved (to copy from).
async fn conflict(
    state: &AppState,
    posted: &Posted,
    id: &ProjectId,
    read: i64,
    text: &str,
) -> Result<Response, UiError> {
    let current = db::commits::latest_version(&state.db.read, KIND, id.as_str()).await?;
    let (then, now) = (version_yaml(state, id, read).await?, version_yaml(state, id, current).await?);
    let eid = esc(id.as_str());
    let body = format!(
        "<h1>{eid}: changed meanwhile</h1><p class=\"error\" role=\"alert\">Conflict: you read version {read}, and \
         the project is at version {current} now. Nothing was saved.</p><h2>What changed since version {read}</h2>{}\
         <h2>Your change (not saved)</h2>{}<label for=\"mine\">Your YAML, to copy</label>\
         <textarea id=\"mine\" rows=\"12\" readonly>{}</textarea><p><a href=\"/ui/projects/{eid}\">Start again from \
         version {current}</a></p>",
        diff(&then, &now),
        diff(&then, text),
        esc(text)
    );
    let page = html::page(&posted.session, "Conflict", &body);
    Ok((axum::http::StatusCode::CONFLICT, html::page_response(page)).into_response())
}

/// `POST /ui/projects/{id}/edit`: shows the change as a diff, to be confirmed (nothing is saved).
pub async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, UiError> {
    let id = project_id(&id)?;
    let read = read_version(&posted)?;
    let text = proposed(&state, &id, &posted).await?;
    let current = db::commits::latest_version(&state.db.read, KIND, id.as_str()).await?;
    if current != read {
        return conflict(&state, &posted, &id, read, &text).await;
    }
    parse_config(&id, &text).await?;
    let old = version_yaml(&state, &id, read).await?;
    let eid = esc(id.as_str());
    let body = format!(
        "<h1>{eid}: the change</h1>{}<form method=\"post\" action=\"/ui/projects/{eid}/save\" class=\"stack\">{}\
         <input type=\"hidden\" name=\"version\" value=\"{read}\"><input type=\"hidden\" name=\"comment\" value=\"{}\">\
         <label for=\"config\">What will be saved</label><textarea id=\"config\" name=\"config\" rows=\"12\" readonly>{}\
         </textarea><button>Save as version {}</button></form><p><a href=\"/ui/projects/{eid}\">Cancel</a></p>",
        if old == text { "<p>No change.</p>".to_owned() } else { diff(&old, &text) },
        posted.session.csrf_field(),
        esc(posted.get("comment")),
        esc(&text),
        read + 1,
    );
    Ok(html::page_response(html::page(&posted.session, "The change", &body)))
}

/// `POST /ui/projects/{id}/save`: saves onto the version read, or shows the conflict.
pub async fn save(State(state): State<AppState>, Path(id): Path<String>, posted: Posted) -> Result<Response, UiError> {
    let id = project_id(&id)?;
    let read = read_version(&posted)?;
    let text = posted.get("config").to_owned();
    let req = parse_config(&id, &text).await?;
    let mut meta = super::projects::meta_of(&posted.session, Some(posted.get("comment")));
    meta.based_on = Some(read);
    match state.projects.put(&id, req, &meta).await {
        Ok(_) => Ok(see_other(&format!("/ui/projects/{}?done=saved", query_escape(id.as_str())))),
        Err(Error::VersionConflict { .. }) => conflict(&state, &posted, &id, read, &text).await,
        Err(e) => Err(e.into()),
    }
}

/// `GET /ui/projects/{id}/versions/{version}`: the version, what it changed, and a revert button.
pub async fn version(
    State(state): State<AppState>,
    session: Session,
    Path((id, version)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let id = project_id(&id)?;
    let version: i64 =
        version.parse().ok().filter(|v| *v >= 1).ok_or_else(|| Error::field("version", "must be a version number"))?;
    let commit = db::commits::get(&state.db.read, KIND, id.as_str(), version)
        .await?
        .ok_or_else(|| Error::not_found("version", format!("{id} has no version {version}")))?;
    let (before, this) = (version_yaml(&state, &id, version - 1).await?, version_yaml(&state, &id, version).await?);
    let eid = esc(id.as_str());
    let revert = if commit.content.is_some() {
        format!(
            "<form method=\"post\" action=\"/ui/projects/{eid}/revert\" class=\"inline\">{}<input type=\"hidden\" \
             name=\"version\" value=\"{version}\"><button>Revert to version {version}</button></form>",
            session.csrf_field()
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1><a href=\"/ui/projects/{eid}\">{eid}</a>: version {version}</h1><p>By {} · {} · {}</p>{revert}\
         <h2>What it changed</h2>{}",
        esc(commit.author.as_deref().unwrap_or("the master")),
        when(Some(commit.created_at.to_datetime()), Utc::now()),
        esc(commit.comment.as_deref().unwrap_or("")),
        diff(&before, &this),
    );
    Ok(html::page_response(html::page(&session, &format!("{id} version {version}"), &body)))
}

/// `POST /ui/projects/{id}/revert`: `version`.
pub async fn revert(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, UiError> {
    let id = project_id(&id)?;
    let version = read_version(&posted)?;
    let meta = super::projects::meta_of(&posted.session, None);
    state.projects.revert(&id, version, None, &meta).await?;
    Ok(see_other(&format!("/ui/projects/{}?done=reverted", query_escape(id.as_str()))))
}
