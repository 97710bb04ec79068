//! The wire views of stored rows (`ProjectView`, `RunView`): one rendering, used by the handlers
//! and by the listing cache.

use chrono::{DateTime, Utc};
use mirror_common::api::{ProjectView, RunStats, RunView};
use mirror_common::cron::Schedule;
use mirror_common::time::Timestamp;

use crate::db::{projects::ProjectRow, runs::RunRow};

/// Builds the listed form of a project. Never includes the password.
pub fn project_view(
    row: &ProjectRow,
    now: DateTime<Utc>,
    last_run: Option<&RunRow>,
    last_success: Option<Timestamp>,
) -> anyhow::Result<ProjectView> {
    let spec = &row.schedule;
    let options = &row.rsync_options;
    let next_run_time = match (&spec, row.enabled) {
        (Some(spec), true) => Schedule::from_spec(spec.clone())
            .map_err(|e| anyhow::anyhow!("stored schedule of {}: {e}", row.id))?
            .next_fire_at_or_after(now),
        _ => None,
    };
    Ok(ProjectView {
        id: row.id.clone(),
        project: row.project.clone(),
        rsync_host: row.rsync_host.clone(),
        rsync_module: row.rsync_module.clone(),
        dest: row.dest.clone(),
        enabled: row.enabled,
        cron_options: spec.clone(),
        rsync_options: options.into(),
        rsync_password_set: row.rsync_password.is_some(),
        rsync_user: row.rsync_user.clone(),
        rsync_port: row.rsync_port.and_then(|p| u16::try_from(p).ok()),
        timeout_secs: row.timeout_secs.and_then(|t| u64::try_from(t).ok()),
        catch_up: row.catch_up,
        next_run_time: next_run_time.map(Timestamp::from),
        status: last_run.map_or_else(|| "never_run".to_owned(), |r| r.status.to_string()),
        last_run: last_run.map(|r| run_view(r, false)),
        last_success,
        generation: row.generation,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
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
        stats: RunStats {
            files_total: count(r.files_total),
            files_transferred: count(r.files_transferred),
            total_size: count(r.total_size),
            bytes_transferred: count(r.bytes_transferred),
            bytes_received: count(r.bytes_received),
        },
        log_tail: if with_tail { Some(r.log_tail.clone().unwrap_or_default()) } else { None },
    }
}
