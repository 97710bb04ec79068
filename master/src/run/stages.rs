//! ftpsync's two stages and locks, and the probe that ends a run before a walk of the upstream.

use std::time::Duration;

use mirror_runtime::rsync::{Ending, RsyncCommand, RsyncOutcome, run_rsync};
use tokio::sync::watch;

use super::Runner;
use super::plan::RunPlan;
use crate::db;

/// `Archive-Update-in-Progress-<mirror_name>` at the top of a two-stage project's tree while it
/// syncs; removed when the run ends, however it ends.
pub(super) struct OwnLock(std::path::PathBuf);

impl OwnLock {
    pub(super) async fn take(dest: &std::path::Path, mirror_name: &str) -> OwnLock {
        let path = dest.join(format!("{}{mirror_name}", mirror_common::stages::LOCK_PREFIX));
        // Whatever is there (a symlink an old tree held) is replaced, never written through.
        let _ = tokio::fs::remove_file(&path).await;
        let made = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await;
        match made {
            Ok(mut f) => {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut f, format!("{mirror_name}\n").as_bytes()).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot show the update lock in the tree"),
        }
        OwnLock(path)
    }
}

impl OwnLock {
    /// Removed as soon as rsync has ended: before the run is recorded and its generation told to
    /// the slaves, which would otherwise pull the lock with the tree.
    pub(super) async fn release(mut self) {
        let path = std::mem::take(&mut self.0);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(error = %e, "cannot remove the update lock from the tree");
            }
            _ => {}
        }
    }
}

/// A run that ends early (an error, a panic) still takes its lock away.
impl Drop for OwnLock {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// The upstream's update locks that stage 1 brought to the top of the tree (never ours); they are
/// removed as they are found: the tree never publishes them.
async fn upstream_locks(dest: &std::path::Path, mirror_name: &str) -> Vec<String> {
    let own = format!("{}{mirror_name}", mirror_common::stages::LOCK_PREFIX);
    let mut found = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dest).await else { return found };
    while let Ok(Some(e)) = entries.next_entry().await {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(mirror_common::stages::LOCK_PREFIX) && name != own {
            if e.file_type().await.is_ok_and(|t| !t.is_dir()) {
                let _ = tokio::fs::remove_file(e.path()).await;
            }
            found.push(name);
        }
    }
    found
}

/// The project's probe: its own, or the one of its stage profile (`debian`: the archive's
/// `project/trace/master`, which dak rewrites on every update).
pub(super) fn probe_of(project: &crate::db::projects::ProjectRow) -> Option<String> {
    use mirror_common::stages::StageProfile;
    project.probe.clone().or_else(|| {
        project
            .stages
            .as_ref()
            .is_some_and(|s| s.profile == Some(StageProfile::Debian))
            .then(|| "project/trace/master".to_owned())
    })
}
impl Runner {
    /// Stage 1 of a two-stage run, again while the upstream shows its update lock (within
    /// `upstream_lock_wait_secs`). `Ok(None)`: stage 2 may go; `Ok(Some(outcome))`: this attempt
    /// ends so; `Err`: rsync cannot be started.
    pub(super) async fn stage_one(
        &self,
        stage1: &RsyncCommand,
        plan: &RunPlan,
        mut cancel: watch::Receiver<bool>,
        record_pid: &(dyn Fn(u32) + Send + Sync),
    ) -> Result<Option<RsyncOutcome>, String> {
        let dest = plan.project.dest.as_path();
        let mut waited = 0u64;
        loop {
            let o = run_rsync(stage1, cancel.clone(), record_pid)
                .await
                .map_err(|e| format!("cannot start {}: {e}", self.cfg.rsync_path.display()))?;
            if !o.succeeded() {
                return Ok(Some(RsyncOutcome { message: format!("stage 1: {}", o.message), ..o }));
            }
            let locks = upstream_locks(dest, &self.cfg.mirror_name).await;
            if locks.is_empty() {
                return Ok(None);
            }
            let retry = self.cfg.upstream_lock_retry.as_secs().max(1);
            if waited + retry > self.cfg.upstream_lock_wait.as_secs() {
                let message = format!(
                    "the upstream is still being updated ({}) after {waited} s: stage 2 not run, the indexes \
                     stay as they were",
                    locks.join(", ")
                );
                return Ok(Some(RsyncOutcome { ending: Ending::Failed, message, ..o }));
            }
            tracing::info!(locks = ?locks, retry_in_secs = retry, "the upstream is being updated: stage 1 again later");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(retry)) => {}
                _ = cancel.wait_for(|c| *c) => return Ok(Some(RsyncOutcome { ending: Ending::Cancelled, ..o })),
            }
            waited += retry;
        }
    }

    /// Fetches the probe alone (one small confined rsync into the run's temporary directory) and
    /// compares its SHA-256 with what the newest successful run saw (`fetched`: already fetched,
    /// by the choice among several upstreams). Returns what it found
    /// (`unchanged`, `changed`, `first`, or why it could not be read) and the hash.
    pub(super) async fn probe(
        &self,
        plan: &RunPlan,
        path: &str,
        fetched: Option<Result<Vec<u8>, String>>,
    ) -> (String, Option<String>) {
        let project = &plan.project;
        let fetched = match fetched {
            Some(f) => f,
            None => self.fetch_probe(plan, path).await,
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(why) => {
                tracing::warn!(probe = %path, error = %why, "the probe could not be read: the run goes on in full");
                return (format!("unreadable: {}", why.chars().take(200).collect::<String>()), None);
            }
        };
        let hash = crate::targets::tree::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let label = match db::projects::probe_seen(&self.db, &project.id).await {
            Ok(Some(seen)) if seen == hash => "unchanged",
            Ok(Some(_)) => "changed",
            Ok(None) => "first",
            Err(e) => {
                tracing::warn!(error = %e, "cannot read what the probe held");
                "changed"
            }
        };
        (label.to_owned(), Some(hash))
    }

    /// The probe's bytes, fetched alone from the plan's upstream (one small confined rsync into
    /// the run's temporary directory, at most 1 MiB), or why not.
    pub(super) async fn fetch_probe(&self, plan: &RunPlan, path: &str) -> Result<Vec<u8>, String> {
        let Some(source) = crate::run::rsync::source(&plan.project) else { return Err("no upstream".into()) };
        let landed = plan.temp.join(".mirror-sync-probe");
        let args = mirror_common::rsync_opts::rsync_argv(
            ["--no-motd".to_owned(), "--timeout=60".to_owned(), "--max-size=1m".to_owned()],
            format!("{source}{path}"),
            landed.display().to_string(),
        );
        let command = RsyncCommand {
            timeout: Duration::from_secs(120),
            log_max_bytes: 0,
            confinement: self.cfg.confine.confinement(vec![plan.temp.clone()], vec![]),
            ..self.command(plan, args)
        };
        // Never cancelled: the sender lives until the probe is read.
        let (_keep, never) = watch::channel(false);
        let fetched = match run_rsync(&command, never, &|_| {}).await {
            Ok(o) if o.succeeded() => tokio::fs::read(&landed).await.map_err(|e| e.to_string()),
            Ok(o) => Err(o.message),
            Err(e) => Err(e.to_string()),
        };
        let _ = tokio::fs::remove_file(&landed).await;
        fetched
    }
}
