//! `GET /mirrorz.json`: the projects as mirrorz lists a site's mirrors (format 1.7), from the
//! listing's states, with the site from the configuration's `[site]`.

use std::path::Path;

use mirror_common::api::{Mirrorz, MirrorzMirror, MirrorzSite, RunStatus, Timestamp};

use super::views::{ProjectState, human_size, upstream};

/// The document for `site` and every project (each `url` is its dest below `mirror_root`).
pub fn document(site: &MirrorzSite, mirror_root: &Path, states: &[std::sync::Arc<ProjectState>]) -> Mirrorz {
    let mirrors = states.iter().map(|s| mirror(s, mirror_root)).collect();
    Mirrorz { version: 1.7, site: site.clone(), info: Vec::new(), mirrors }
}

fn mirror(s: &ProjectState, mirror_root: &Path) -> MirrorzMirror {
    let row = &s.row;
    let dest = Path::new(row.dest.as_str());
    let below = dest.strip_prefix(mirror_root).unwrap_or(dest).to_string_lossy();
    MirrorzMirror {
        cname: row.id.to_string(),
        desc: row.project.clone(),
        url: format!("/{}", below.trim_matches('/')),
        status: status(s),
        upstream: (!row.is_local()).then(|| upstream(row)),
        size: s.last_run.as_ref().and_then(|r| r.total_size).and_then(|b| u64::try_from(b).ok()).map(human_size),
        disable: false,
    }
}

fn secs(t: Timestamp) -> i64 {
    t.to_datetime().timestamp()
}

/// A letter and, where known, the Unix time it applies to.
fn code(letter: char, at: Option<i64>) -> String {
    at.map_or_else(|| letter.to_string(), |t| format!("{letter}{t}"))
}

/// mirrorz's status: one main code, then `X` (next run), `O` (last success, while syncing or
/// failing) and `N` (never succeeded yet: a new mirror).
pub fn status(s: &ProjectState) -> String {
    let run = s.last_run.as_ref();
    let ended = run.and_then(|r| r.ended_at).map(secs);
    let main = if s.row.is_local() {
        code('U', None)
    } else if !s.row.enabled {
        code('P', ended)
    } else {
        match run.map(|r| r.status) {
            None => code('D', Some(secs(s.row.created_at))),
            Some(RunStatus::Queued | RunStatus::Running) => {
                code('Y', run.and_then(|r| r.started_at.or(Some(r.queued_at))).map(secs))
            }
            Some(RunStatus::Success) => code('S', ended),
            Some(RunStatus::Failed | RunStatus::Timeout | RunStatus::Interrupted) => code('F', ended),
            Some(RunStatus::Stopped) => code('P', ended),
        }
    };
    let mut status = main;
    if let Some(next) = s.next_run.filter(|_| s.row.enabled) {
        status.push_str(&code('X', Some(next.timestamp())));
    }
    if status.starts_with(['Y', 'F'])
        && let Some(ok) = s.last_success
    {
        status.push_str(&code('O', Some(secs(ok))));
    }
    if s.last_success.is_none() && !s.row.is_local() {
        status.push_str(&code('N', Some(secs(s.row.created_at))));
    }
    status
}
