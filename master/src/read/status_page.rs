//! The status page a mirror site shows its users: server-rendered HTML, no script, no style or font
//! from elsewhere, readable on a phone, refreshing itself every minute. Nothing on it is secret or
//! local: the public view of each project (no dest, no log, no error text), slaves by number.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use mirror_common::api::{PropagationView, RunView};

use crate::read::views::ProjectState;
use crate::read::views::{public_state, size_text, upstream};

/// HTML-escapes text for an element or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "3 hours ago", "in 5 minutes".
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let (value, unit) = match n {
        0..=59 => return if future { "in a moment".into() } else { "just now".into() },
        60..=3599 => (n / 60, "minute"),
        3600..=86_399 => (n / 3600, "hour"),
        _ => (n / 86_400, "day"),
    };
    let plural = if value == 1 { "" } else { "s" };
    if future { format!("in {value} {unit}{plural}") } else { format!("{value} {unit}{plural} ago") }
}

pub fn time_cell(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => format!(
            "<time datetime=\"{}\">{}</time> <small>{}</small>",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            t.format("%Y-%m-%d %H:%M UTC"),
            relative(t, now)
        ),
        None => "<small>never</small>".into(),
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:0 .75rem;color:#222}\
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;\
border-bottom:1px solid #ddd;vertical-align:top}th{background:#f4f4f4}small{color:#666}code{font-size:.85em;\
word-break:break-all}.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.85em;color:#fff;\
background:#777}.success{background:#2e7d32}.failed{background:#c62828}.syncing{background:#1565c0}\
.disabled,.none{background:#757575}.stale{background:#ef6c00}tr.bad{background:#fdecea}tr.old{background:#fff4e5}\
.wrap{overflow-x:auto}@media(max-width:40rem){.opt{display:none}}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"60\"><title>{}</title><style>{STYLE}</style></head>\
         <body>{body}</body></html>\n",
        esc(title)
    )
}

/// The list of every project.
/// `daemon_down`: the rsync daemon slaves pull from is managed here and not running.
pub fn index(
    states: &[std::sync::Arc<ProjectState>],
    now: DateTime<Utc>,
    stale_after: u64,
    daemon_down: bool,
) -> String {
    let failed = states.iter().filter(|s| public_state(s) == "failed").count();
    let stale = states.iter().filter(|s| crate::read::views::is_stale(s, now, stale_after)).count();
    let mut rows = String::new();
    for s in states {
        let state = public_state(s);
        let old = crate::read::views::is_stale(s, now, stale_after);
        let class = if state == "failed" {
            " class=\"bad\""
        } else if old {
            " class=\"old\""
        } else {
            ""
        };
        let id = esc(&s.row.id);
        let stale_badge = if old { " <span class=\"badge stale\">stale</span>" } else { "" };
        let _ = write!(
            rows,
            "<tr{class}><td><a href=\"/status/{id}\">{id}</a></td><td><span class=\"badge {state}\">{state}</span>\
             {stale_badge}</td><td>{}</td><td>{}</td><td class=\"opt\"><code>{}</code></td><td>{}</td></tr>",
            time_cell(s.last_success.map(|t| t.to_datetime()), now),
            time_cell(s.next_run, now),
            esc(&upstream(&s.row)),
            esc(&size_text(s)),
        );
    }
    let notice = if daemon_down {
        "<p class=\"bad\"><strong>The rsync daemon slaves pull from is not running:</strong> the mirrors are \
         kept up to date here, but not passed on until it is back.</p>"
    } else {
        ""
    };
    let body = format!(
        "<h1>Mirror status</h1>{notice}<p>{} projects · <strong>{failed}</strong> failed · <strong>{stale}</strong> stale · \
         as of {}</p><div class=\"wrap\"><table><thead><tr><th>Project</th><th>Status</th><th>Last update</th>\
         <th>Next run</th><th class=\"opt\">Upstream</th><th>Size</th></tr></thead><tbody>{rows}</tbody></table></div>",
        states.len(),
        now.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    page("Mirror status", &body)
}

/// One project: its state, its recent runs, and what each slave serves.
pub fn project(
    s: &ProjectState,
    runs: &[RunView],
    propagation: &PropagationView,
    now: DateTime<Utc>,
    stale_after: u64,
) -> String {
    let state = public_state(s);
    let id = esc(&s.row.id);
    let stale = if crate::read::views::is_stale(s, now, stale_after) {
        " <span class=\"badge stale\">stale</span>"
    } else {
        ""
    };
    let mut run_rows = String::new();
    for r in runs {
        let status = r.status.as_str();
        let badge = match status {
            "success" => "success",
            "queued" | "running" => "syncing",
            _ => "failed",
        };
        let duration = match (r.started_at, r.ended_at) {
            (Some(a), Some(b)) => format!("{} s", (b.to_datetime() - a.to_datetime()).num_seconds()),
            _ => String::new(),
        };
        let _ = write!(
            run_rows,
            "<tr><td>{}</td><td>{}</td><td><span class=\"badge {badge}\">{status}</span></td><td>{}</td><td>{duration}</td>\
             <td>{}</td></tr>",
            r.id,
            match &r.upstream {
                // The upstream that served it, for a project with several.
                Some(u) => format!("{} from <code>{}</code>", r.trigger.as_str(), esc(u)),
                None => r.trigger.as_str().to_owned(),
            },
            time_cell(r.started_at.map(|t| t.to_datetime()), now),
            r.stats.bytes_transferred.map(crate::read::views::human_size).unwrap_or_default(),
        );
    }
    let mut slave_rows = String::new();
    for p in &propagation.slaves {
        let _ = write!(
            slave_rows,
            "<tr><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.slave),
            if p.healthy { "success" } else { "failed" },
            if p.healthy { "up" } else { "down" },
            p.generation,
            p.lag,
            time_cell(p.served_at.map(|t| t.to_datetime()), now),
        );
    }
    let slaves = if propagation.slaves.is_empty() {
        "<p><small>No slaves.</small></p>".to_owned()
    } else {
        format!(
            "<div class=\"wrap\"><table id=\"slaves\"><thead><tr><th>Slave</th><th>Health</th><th>Generation</th>\
             <th>Behind by</th><th>Serving since</th></tr></thead><tbody>{slave_rows}</tbody></table></div>"
        )
    };
    let body = format!(
        "<p><a href=\"/\">← all projects</a></p><h1>{id}</h1><p><span class=\"badge {state}\">{state}</span>{stale}</p>\
         <table><tbody><tr><th>Last update</th><td>{}</td></tr><tr><th>Next run</th><td>{}</td></tr>\
         <tr><th>Kind</th><td>{}</td></tr><tr><th>Upstream</th><td><code>{}</code></td></tr>\
         <tr><th>Size</th><td>{}</td></tr><tr><th>Generation</th><td>{}</td></tr></tbody></table>\
         <h2>Recent runs</h2><div class=\"wrap\"><table id=\"runs\"><thead><tr><th>Run</th><th>Trigger</th><th>Status</th>\
         <th>Started</th><th>Took</th><th>Transferred</th></tr></thead><tbody>{run_rows}</tbody></table></div>\
         <h2>Slaves</h2>{slaves}",
        time_cell(s.last_success.map(|t| t.to_datetime()), now),
        time_cell(s.next_run, now),
        esc(&kind_text(&s.row)),
        esc(&upstream(&s.row)),
        esc(&size_text(s)),
        s.row.generation,
    );
    page(&format!("{} · mirror status", s.row.id), &body)
}

/// `rsync`, `git`, or `command (PROVIDER)`.
fn kind_text(row: &crate::db::projects::ProjectRow) -> String {
    match &row.source.provider {
        Some(p) => format!("{} ({p})", row.source.kind.as_str()),
        None => row.source.kind.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_times_read_as_people_say_them() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let now = Utc::now();
        assert_eq!(relative(now - chrono::Duration::hours(3), now), "3 hours ago");
        assert_eq!(relative(now - chrono::Duration::minutes(1), now), "1 minute ago");
        assert_eq!(relative(now + chrono::Duration::days(2), now), "in 2 days");
        assert_eq!(relative(now, now), "just now");
    }
}
