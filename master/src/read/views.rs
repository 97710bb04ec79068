//! The wire views of stored rows (`ProjectView`, `RunView`): one rendering, used by the handlers
//! and by the listing cache.

use chrono::{DateTime, Utc};
use mirror_common::api::{ProjectView, RunStats, RunStatus, RunView, TunasyncJob, UpstreamView};
use mirror_common::time::Timestamp;
use mirror_common::timing::Timing;

use crate::db::{projects::ProjectRow, runs::RunRow};

/// A project's staleness objective: its own `max_age_secs`, else the master's `stale_after_secs`.
pub fn max_age(row: &ProjectRow, default_secs: u64) -> chrono::Duration {
    let secs = row.max_age_secs.unwrap_or(default_secs);
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// When an enabled project that has synced becomes stale, unless a run succeeds before.
pub fn stale_after(row: &ProjectRow, last_success: Option<Timestamp>, default_secs: u64) -> Option<DateTime<Utc>> {
    let since = last_success.filter(|_| row.enabled)?.to_datetime();
    since.checked_add_signed(max_age(row, default_secs))
}

/// Whether the project is stale now.
pub fn is_stale(s: &ProjectState, now: DateTime<Utc>, default_secs: u64) -> bool {
    stale_by(stale_after(&s.row, s.last_success, default_secs), now)
}

/// Stale from just after `stale_after`.
fn stale_by(stale_after: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    stale_after.is_some_and(|t| now > t)
}

/// Every upstream of a project with more than one, with whether each has a password.
fn upstream_views(row: &ProjectRow) -> Vec<UpstreamView> {
    if row.more_upstreams.is_empty() {
        return Vec::new();
    }
    let set = std::iter::once(row.rsync_password.is_some()).chain(row.more_passwords.iter().map(Option::is_some));
    row.upstreams()
        .into_iter()
        .zip(set.chain(std::iter::repeat(false)))
        .map(|(u, password_set)| UpstreamView {
            host: u.host,
            module: u.module,
            port: u.port,
            user: u.user,
            password_set,
        })
        .collect()
}

/// Builds the listed form of a project. Never includes the password. `default_max_age_secs`:
/// the master's `stale_after_secs`.
pub fn project_view(
    row: &ProjectRow,
    now: DateTime<Utc>,
    last_run: Option<&RunRow>,
    last_success: Option<Timestamp>,
    default_max_age_secs: u64,
) -> anyhow::Result<ProjectView> {
    let spec = &row.schedule;
    let options = &row.rsync_options;
    let next_run_time = match Timing::of(row).map_err(|e| anyhow::anyhow!("stored schedule of {}: {e}", row.id))? {
        Some(timing) if row.enabled => timing.next_fire_at_or_after(now),
        _ => None,
    };
    let stale_after = stale_after(row, last_success, default_max_age_secs);
    Ok(mirror_common::from_config!(ProjectView, &row.config, {
        rsync_host: row.rsync_host.clone(),
        rsync_module: row.rsync_module.clone(),
        dest: row.dest.to_string(),
        cron_options: spec.clone(),
        rsync_options: options.into(),
        rsync_password_set: row.rsync_password.is_some(),
        rsync_user: row.rsync_user.clone(),
        rsync_port: row.rsync_port.map(|p| p.0),
        version: row.version,
        managed_file: row.managed_file.clone(),
        upstreams: upstream_views(row),
        stale_after: stale_after.map(Timestamp::from),
        stale: stale_by(stale_after, now),
        next_run_time: next_run_time.map(Timestamp::from),
        status: last_run.map_or_else(|| "never_run".to_owned(), |r| r.status.to_string()),
        last_run: last_run.map(|r| run_view(r, false)),
        last_success,
        generation: row.generation,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

fn count(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

pub fn run_view(r: &RunRow, with_tail: bool) -> RunView {
    RunView {
        id: r.id,
        project: r.project_id.clone(),
        trigger: r.trigger,
        status: r.status,
        scheduled_for: r.scheduled_for,
        queued_at: r.queued_at,
        started_at: r.started_at,
        ended_at: r.ended_at,
        exit_code: r.exit_code,
        attempts: u32::try_from(r.attempts).unwrap_or(0),
        message: r.message.clone(),
        warning: r.warning,
        changed: r.changed,
        probe: r.probe.clone(),
        upstream: r.upstream.clone(),
        stage: None,
        stats: RunStats {
            files_total: count(r.files_total),
            regular_files: None,
            files_transferred: count(r.files_transferred),
            total_size: count(r.total_size),
            bytes_transferred: count(r.bytes_transferred),
            bytes_received: count(r.bytes_received),
            files_created: count(r.files_created),
            files_deleted: count(r.files_deleted),
            refs_updated: count(r.refs_updated),
            changes: None,
        },
        log_tail: if with_tail { Some(r.log_tail.clone().unwrap_or_default()) } else { None },
        progress: None,
    }
}

/// A project with its latest run, last success and next fire: what the listing cache keeps, and
/// what the status page, `/jobs` and `/metrics` read.
#[derive(Debug, Clone)]
pub struct ProjectState {
    pub row: ProjectRow,
    /// The latest run (without its output).
    pub last_run: Option<RunRow>,
    pub last_success: Option<Timestamp>,
    pub next_run: Option<DateTime<Utc>>,
    /// When what was rendered of it goes out of date by itself: its next fire time passes, or it
    /// turns stale.
    pub expires: Option<DateTime<Utc>>,
}

/// What a project looks like to its users: tunasync's words for it.
pub fn public_state(s: &ProjectState) -> &'static str {
    if !s.row.enabled {
        return "disabled";
    }
    match s.last_run.as_ref().map(|r| r.status) {
        None => "none",
        Some(RunStatus::Queued | RunStatus::Running) => "syncing",
        Some(RunStatus::Success) => "success",
        Some(RunStatus::Failed | RunStatus::Timeout | RunStatus::Interrupted) => "failed",
        // tunasync's word for a job an operator stopped.
        Some(RunStatus::Stopped) => "paused",
    }
}

/// The upstream as a URL, without the login: `rsync://host[:port]/module/`; `local` for a
/// project with a local source.
pub fn upstream(row: &ProjectRow) -> String {
    if let Some(url) = &row.source.upstream_url {
        return url.to_string();
    }
    let port = row.rsync_port.map(|p| format!(":{p}")).unwrap_or_default();
    match (&row.rsync_host, &row.rsync_module) {
        (Some(host), Some(module)) => format!("rsync://{}{port}/{}/", host.bracketed(), module.trim_end_matches('/')),
        _ => "local".to_owned(),
    }
}

/// The size of the tree at the last run that measured it, as `rsync -h` prints sizes.
pub fn size_text(s: &ProjectState) -> String {
    s.last_run
        .as_ref()
        .and_then(|r| r.total_size)
        .and_then(|b| u64::try_from(b).ok())
        .map_or_else(|| "unknown".into(), human_size)
}

/// `rsync -h`: units of 1000 with two decimals (`1.23G`), plain below 1000.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [char; 5] = ['K', 'M', 'G', 'T', 'P'];
    let mut value = bytes as f64;
    let mut unit = None;
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{value:.2}{u}"),
        None => bytes.to_string(),
    }
}

/// tunasync's time text (`2006-01-02 15:04:05 -0700`) and Unix seconds; Go's zero time for none.
fn tunasync_time(t: Option<DateTime<Utc>>) -> (String, i64) {
    match t {
        Some(t) => (t.format("%Y-%m-%d %H:%M:%S %z").to_string(), t.timestamp()),
        None => ("0001-01-01 00:00:00 +0000".into(), -62_135_596_800),
    }
}

/// A project as tunasync's manager lists it at `/jobs`.
pub fn tunasync_job(s: &ProjectState) -> TunasyncJob {
    let run = s.last_run.as_ref();
    let (last_update, last_update_ts) = tunasync_time(s.last_success.map(Timestamp::to_datetime));
    let (last_started, last_started_ts) = tunasync_time(run.and_then(|r| r.started_at).map(Timestamp::to_datetime));
    let (last_ended, last_ended_ts) = tunasync_time(run.and_then(|r| r.ended_at).map(Timestamp::to_datetime));
    let (next_schedule, next_schedule_ts) = tunasync_time(s.next_run);
    TunasyncJob {
        name: s.row.id.to_string(),
        is_master: true,
        status: public_state(s).into(),
        last_update,
        last_update_ts,
        last_started,
        last_started_ts,
        last_ended,
        last_ended_ts,
        next_schedule,
        next_schedule_ts,
        upstream: upstream(&s.row),
        size: size_text(s),
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_as_rsync_prints_them() {
        assert_eq!(human_size(999), "999");
        assert_eq!(human_size(1234), "1.23K");
        assert_eq!(human_size(123_456_789), "123.46M");
        assert_eq!(human_size(2_500_000_000_000), "2.50T");
    }
}
