//! Trace files in Debian's ftpsync format: after a successful run of a project that asks for them,
//! `<dest>/project/trace/<mirror_name>` says when this mirror last finished a sync, so Debian's
//! mirror checkers (and anyone) read us as they read an ftpsync mirror. rsync is told to leave the
//! file alone (`--exclude=/project/trace/<name>`), and slaves pull it with the rest of the tree.

use std::path::Path;

use chrono::{DateTime, Utc};

use mirror_runtime::rsync::RsyncOutcome;

use super::Runner;
use crate::db;
use crate::db::projects::ProjectRow;

/// The rsync filter that keeps our trace file from being deleted (the upstream does not have it).
pub fn exclude(name: &str) -> String {
    format!("--exclude=/project/trace/{name}")
}

/// What one run was, for its trace.
pub struct TraceRun<'a> {
    pub project: &'a ProjectRow,
    pub name: &'a str,
    pub host: &'a str,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    pub bytes_received: Option<u64>,
    pub trigger: &'a str,
    /// The upstream's own `Archive serial` (its `project/trace/master`), when it has one.
    pub upstream_serial: Option<String>,
    /// Seconds in each stage of a two-stage run.
    pub stages: Option<(u64, u64)>,
}

/// `Archive serial: ` from an ftpsync trace file's text.
pub fn serial_of(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Archive serial:"))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
}

/// The file's text, in ftpsync's order and words.
pub fn render(t: &TraceRun<'_>) -> String {
    let rfc2822 = |d: DateTime<Utc>| d.format("%a, %d %b %Y %H:%M:%S +0000").to_string();
    let serial = t.upstream_serial.clone().unwrap_or_else(|| t.ended.format("%Y%m%d%H").to_string());
    let spent = (t.ended - t.started).num_seconds().max(0);
    let bytes = t.bytes_received.unwrap_or(0);
    let rate = if spent > 0 { bytes / spent.unsigned_abs() } else { bytes };
    let upstream = t.project.rsync_host.as_ref().map_or("local", |h| h.as_str());
    format!(
        "{date}\n\
         Date: {date2822}\n\
         Date-Started: {started}\n\
         Archive serial: {serial}\n\
         Creator: mirror-sync {version}\n\
         Running on host: {host}\n\
         Trigger: {trigger}\n\
         Upstream-mirror: {upstream}\n\
         Rsync-Transport: {transport}\n\
         Total bytes received in rsync: {bytes}\n\
         Total time spent in rsync: {spent}\n\
         Average rate: {rate} B/s\n{stages}",
        date = t.ended.format("%a %b %e %H:%M:%S UTC %Y"),
        date2822 = rfc2822(t.ended),
        started = rfc2822(t.started),
        version = env!("CARGO_PKG_VERSION"),
        host = t.host,
        trigger = t.trigger,
        transport = if t.project.rsync_port.is_some() { "rsync-url" } else { "rsync-daemon" },
        stages = t.stages.map_or_else(String::new, |(one, two)| format!(
            "Total time spent in stage1 rsync: {one}\nTotal time spent in stage2 rsync: {two}\n"
        )),
    )
}

/// Writes the trace of a run into `dest` (already checked to lie in the mirror root), through no
/// symlink the tree may hold.
pub async fn write(mirror_root: &Path, dest: &Path, t: &TraceRun<'_>) -> std::io::Result<()> {
    super::stamps::put_file(mirror_root, dest, &super::stamps::debian_trace(t.name), render(t), t.ended.into()).await
}

impl Runner {
    /// `project/trace/<mirror_name>` of a successful run; a failure to write it is logged, the run
    /// stays a success.
    pub(super) async fn write_trace(
        &self,
        project: &ProjectRow,
        run_id: i64,
        began: chrono::DateTime<chrono::Utc>,
        o: &RsyncOutcome,
        stages: Option<(u64, u64)>,
    ) {
        let dest = project.dest.as_path();
        let upstream = tokio::fs::read(dest.join("project/trace/master")).await.ok();
        let upstream_serial =
            upstream.filter(|b| b.len() <= 64 * 1024).and_then(|b| serial_of(&String::from_utf8_lossy(&b)));
        let trigger = db::runs::get(&self.db, run_id).await.ok().flatten().map(|r| r.trigger);
        let trigger = match trigger {
            Some(mirror_common::api::Trigger::Schedule | mirror_common::api::Trigger::CatchUp) => "cron",
            _ => "manual",
        };
        let run = TraceRun {
            project,
            name: &self.cfg.mirror_name,
            host: &self.cfg.host_name,
            started: began,
            ended: chrono::Utc::now(),
            bytes_received: o.stats.bytes_received,
            trigger,
            upstream_serial,
            stages,
        };
        match write(&self.cfg.mirror_root, dest, &run).await {
            Ok(()) => tracing::debug!("trace file written"),
            Err(e) => tracing::warn!(error = %e, "cannot write the trace file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_come_from_ftpsync_traces() {
        let master = "Tue Nov 24 08:00:01 UTC 2026\nDate: x\nArchive serial: 2026112402\nCreator: dak\n";
        assert_eq!(serial_of(master).as_deref(), Some("2026112402"));
        assert_eq!(serial_of("Archive serial: ../../x\n"), None);
    }
}
