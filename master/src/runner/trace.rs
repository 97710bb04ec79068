//! The Debian trace file a successful run leaves in its tree.

use super::Runner;
use crate::db;
use mirror_runtime::rsync::RsyncOutcome;

impl Runner {
    /// `project/trace/<mirror_name>` of a successful run; a failure to write it is logged, the run
    /// stays a success.
    pub(super) async fn write_trace(
        &self,
        project: &crate::db::projects::ProjectRow,
        run_id: i64,
        began: chrono::DateTime<chrono::Utc>,
        o: &RsyncOutcome,
        stages: Option<(u64, u64)>,
    ) {
        let dest = project.dest.as_path();
        let upstream = tokio::fs::read(dest.join("project/trace/master")).await.ok();
        let upstream_serial = upstream
            .filter(|b| b.len() <= 64 * 1024)
            .and_then(|b| crate::trace::serial_of(&String::from_utf8_lossy(&b)));
        let trigger = db::runs::get(&self.db, run_id).await.ok().flatten().map(|r| r.trigger);
        let trigger = match trigger {
            Some(mirror_common::api::Trigger::Schedule | mirror_common::api::Trigger::CatchUp) => "cron",
            _ => "manual",
        };
        let run = crate::trace::TraceRun {
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
        match crate::trace::write(&self.cfg.mirror_root, dest, &run).await {
            Ok(()) => tracing::debug!("trace file written"),
            Err(e) => tracing::warn!(error = %e, "cannot write the trace file"),
        }
    }
}
