//! Runs projects' rsyncs: one at a time per project, at most `max_concurrent_runs` in all (the
//! rest wait in arrival order), retries with backoff for connection failures, every run recorded.
//! The queue, a run's plan, the run itself, its guards, stages, trace file and logs each have a
//! file of their own here, beside `scheduler` (when runs are due) and `rsync` (a project's argv).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirror_common::api::{RunProgress, RunStatus};
use mirror_common::guards::MaxDelete;
use mirror_common::names::ProjectId;
use mirror_runtime::rsync::{ConfineStatus, RunAs, kill_orphan};
use tokio::sync::{Notify, mpsc, watch};

use crate::cluster::snapshots::Snapshots;
use crate::config::Settings;
use crate::db::{self, Db};
use crate::events::{Change, Events};

pub use mirror_common::api::{Preview, Trigger};

mod execute;
mod guards;
mod hooks;
mod kinds;
mod logs;
mod plan;
mod queue;
pub mod rsync;
pub mod scheduler;
mod stages;
pub mod stamps;
pub mod trace;
mod upstreams;

use queue::{Active, Queued};
pub use queue::{Started, TriggerError};

pub struct RunnerConfig {
    /// Canonical: every run checks that its `dest` still resolves under it.
    pub mirror_root: PathBuf,
    pub rsync_path: PathBuf,
    /// The git of `kind: git` projects (looked up in PATH at start).
    pub git_path: PathBuf,
    /// What git runs may read besides the system's libraries (its helpers, templates, certificates).
    pub git_read: Vec<PathBuf>,
    /// The ssh git runs for an `ssh://` upstream, and the keys they may use.
    pub ssh_path: PathBuf,
    pub git_ssh_keys: Vec<crate::config::GitSshKey>,
    /// The `[[providers]]` of `kind: command` projects.
    pub providers: Vec<crate::config::ProviderSettings>,
    pub log_dir: PathBuf,
    pub log_keep: usize,
    pub log_max_bytes: u64,
    pub default_timeout: Duration,
    pub retries: u32,
    pub retry_base: Duration,
    /// Whether (and with which helper) each rsync is confined to its project's dest.
    pub confine: ConfineStatus,
    pub run_as: Option<RunAs>,
    /// Run records kept per project.
    pub runs_keep: usize,
    /// The trace files' name (`mirror_name`, or the host name) and this host's name.
    pub mirror_name: String,
    pub host_name: String,
    /// `max_shrink`: a successful run that shrinks the tree by more is marked failed.
    pub max_shrink: u8,
    /// The master's `max_delete` (a project's own overrides it).
    pub max_delete: MaxDelete,
    /// Two-stage runs: how often stage 1 is run again while the upstream shows its update lock,
    /// and for how long at most.
    pub upstream_lock_retry: Duration,
    pub upstream_lock_wait: Duration,
    /// Where each successful run's tree is frozen for the slaves.
    pub snapshots: Snapshots,
    /// This node's name: its runs carry it.
    pub node: String,
    /// The priority and memory limit of every run's program (`run_nice`, `run_memory_limit_mib`).
    pub limits: mirror_runtime::rsync::Limits,
    /// The `[[hooks]]` projects may run after their runs.
    pub hooks: Vec<crate::config::HookSettings>,
    /// A node silent this long is dead (`node_dead_secs`): a run of another node younger than
    /// that keeps the project from running here.
    pub node_dead_after: Duration,
}

impl From<&Settings> for RunnerConfig {
    fn from(s: &Settings) -> Self {
        RunnerConfig {
            mirror_root: s.mirror_root.clone(),
            rsync_path: s.rsync_path.clone(),
            git_path: mirror_runtime::rsync::program_path(&s.git_path),
            git_read: kinds::git_reads(&mirror_runtime::rsync::program_path(&s.git_path)),
            providers: s.providers.clone(),
            ssh_path: mirror_runtime::rsync::program_path(std::path::Path::new("ssh")),
            git_ssh_keys: s.git_ssh_keys.clone(),
            log_dir: s.log_dir.clone(),
            log_keep: s.log_keep,
            log_max_bytes: s.log_max_bytes,
            default_timeout: Duration::from_secs(s.run_timeout_secs),
            retries: s.retries,
            retry_base: Duration::from_millis(s.retry_base_ms),
            confine: ConfineStatus::none("not detected"),
            run_as: None,
            runs_keep: s.runs_keep,
            mirror_name: s.mirror_name.as_ref().map_or_else(crate::config::host_name, |n| n.to_string()),
            host_name: crate::config::host_name(),
            max_shrink: s.max_shrink,
            max_delete: s.max_delete,
            upstream_lock_retry: Duration::from_secs(s.upstream_lock_retry_secs),
            upstream_lock_wait: Duration::from_secs(s.upstream_lock_wait_secs),
            snapshots: Snapshots::new(&s.mirror_root, s.snapshots),
            node: s.node_name(),
            limits: mirror_runtime::rsync::Limits {
                nice: s.run_nice,
                memory_bytes: s.run_memory_limit_mib.map(|m| m.saturating_mul(1 << 20)),
                io: s.run_ionice.as_deref().and_then(mirror_runtime::rsync::IoClass::parse),
            },
            hooks: s.hooks.clone(),
            node_dead_after: Duration::from_secs(s.node_dead_secs),
        }
    }
}

pub struct Runner {
    db: Db,
    cfg: RunnerConfig,
    /// Runs waiting for one of the `max_concurrent_runs` workers, in the order they were triggered.
    /// A waiting run is this small entry, not a task: ten thousand of them cost little.
    queue: mpsc::UnboundedSender<Queued>,
    active: Mutex<HashMap<ProjectId, Active>>,
    /// How far each running run has got (its rsync's progress line).
    progress: Mutex<HashMap<i64, watch::Receiver<Option<RunProgress>>>>,
    /// The stage each running two-stage run is in (1 or 2).
    stages: Mutex<HashMap<i64, u8>>,
    /// Runs an operator asked to stop: they end `stopped`, not `interrupted`.
    stopping: Mutex<std::collections::HashSet<i64>>,
    accepting: AtomicBool,
    idle: Notify,
    /// Runs between their start and the end of their housekeeping (log rotation, pruning): the
    /// database must stay open until it is zero.
    executing: std::sync::atomic::AtomicUsize,
    /// Told when runs change and when a run brings a new generation.
    events: Arc<Events>,
}

impl Runner {
    pub fn new(db: Db, cfg: RunnerConfig, max_concurrent: usize, events: Arc<Events>) -> Arc<Runner> {
        let (queue, waiting) = mpsc::unbounded_channel::<Queued>();
        let runner = Arc::new(Runner {
            db,
            cfg,
            queue,
            active: Mutex::new(HashMap::new()),
            stopping: Mutex::new(std::collections::HashSet::new()),
            progress: Mutex::new(HashMap::new()),
            stages: Mutex::new(HashMap::new()),
            accepting: AtomicBool::new(true),
            idle: Notify::new(),
            executing: std::sync::atomic::AtomicUsize::new(0),
            events,
        });
        // The workers: each takes the oldest waiting run. They hold the runner weakly and end with it.
        let waiting = Arc::new(tokio::sync::Mutex::new(waiting));
        for _ in 0..max_concurrent {
            let (runner, waiting) = (Arc::downgrade(&runner), Arc::clone(&waiting));
            tokio::spawn(async move {
                loop {
                    let next = waiting.lock().await.recv().await;
                    let (Some(q), Some(runner)) = (next, runner.upgrade()) else { return };
                    runner.execute(q.project_id, q.run_id, q.cancel).await;
                }
            });
        }
        runner
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<ProjectId, Active>> {
        // A panic while holding this lock leaves a map that is still consistent.
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// After a crash: runs a previous master left queued or running become `interrupted`, and an
    /// rsync it started that is still alive is killed.
    pub async fn recover(&self) -> anyhow::Result<()> {
        for run in db::runs::interrupt_unfinished(&self.db, &self.cfg.node).await? {
            let killed = run
                .pid
                .and_then(|p| u32::try_from(p).ok())
                .is_some_and(|pid| kill_orphan(pid, &self.cfg.rsync_path, &run.dest));
            tracing::warn!(run.id = run.id, orphan_killed = killed, "run interrupted by the previous master's end");
        }
        // What runs killed with the previous master were receiving.
        mirror_runtime::fs::empty_dir(&self.cfg.mirror_root.join(mirror_runtime::fs::TEMP_DIR)).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(project.id = %project_id, run.id = run_id))]
    async fn execute(self: Arc<Self>, project_id: ProjectId, run_id: i64, cancel: watch::Receiver<bool>) {
        self.executing.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.execute_inner(&project_id, run_id, cancel).await {
            tracing::error!(error = format!("{e:#}"), "run failed inside the master");
            let message = format!("internal error: {e:#}");
            let finished = db::runs::Finished::unrun(RunStatus::Failed, &message);
            if let Err(e) = db::runs::finish(&self.db, run_id, &finished).await {
                tracing::error!(error = %e, "cannot record the run's end");
            }
            self.ended(&project_id, run_id, RunStatus::Failed, None);
        }
        self.rotate_logs(&project_id).await;
        match db::runs::prune(&self.db, &project_id, self.cfg.runs_keep).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "old run records removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove old run records"),
        }
        self.executing.fetch_sub(1, Ordering::SeqCst);
        self.idle.notify_waiters();
    }

    fn progress_map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, watch::Receiver<Option<RunProgress>>>> {
        self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stage a two-stage run is in while it runs (1 or 2); `None` for others.
    pub fn stage(&self, run_id: i64) -> Option<u8> {
        self.stages.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&run_id).copied()
    }

    fn set_stage(&self, run_id: i64, stage: Option<u8>) {
        let mut stages = self.stages.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match stage {
            Some(s) => stages.insert(run_id, s),
            None => stages.remove(&run_id),
        };
    }

    /// How far run `run_id` has got, while it runs.
    pub fn progress(&self, run_id: i64) -> Option<RunProgress> {
        self.progress_map().get(&run_id).and_then(|rx| rx.borrow().clone())
    }

    /// Not run: its rules forbid it (a dest that moved, options no longer allowed) or rsync
    /// could not start.
    async fn finish_refused(&self, project_id: &ProjectId, run_id: i64, message: &str) -> anyhow::Result<()> {
        tracing::error!(message, "run refused");
        self.finish_unrun(project_id, run_id, RunStatus::Failed, message).await
    }

    /// Not run: stopped before it started (shutdown, the project removed).
    async fn finish_interrupted(&self, project_id: &ProjectId, run_id: i64, message: &str) -> anyhow::Result<()> {
        if self.take_stopped(run_id) {
            let message = "stopped by an operator before it started";
            return self.finish_unrun(project_id, run_id, RunStatus::Stopped, message).await;
        }
        self.finish_unrun(project_id, run_id, RunStatus::Interrupted, message).await
    }

    async fn finish_unrun(
        &self,
        project_id: &ProjectId,
        run_id: i64,
        status: RunStatus,
        message: &str,
    ) -> anyhow::Result<()> {
        let finished = db::runs::Finished::unrun(status, message);
        db::runs::finish(&self.db, run_id, &finished).await?;
        self.ended(project_id, run_id, status, None);
        Ok(())
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active().is_empty() && self.executing.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Takes no new runs; lets running ones finish within `grace`, then stops them (they end
    /// `interrupted`) and waits for their records to be written.
    pub async fn shutdown(&self, grace: Duration) {
        // Queued runs would only start after this point: the workers end them without running.
        self.accepting.store(false, Ordering::SeqCst);
        if tokio::time::timeout(grace, self.wait_idle()).await.is_ok() {
            return;
        }
        let stopping: Vec<ProjectId> = self.active().keys().cloned().collect();
        tracing::warn!(runs = stopping.len(), "grace period over, stopping the runs still going");
        for a in self.active().values() {
            let _ = a.cancel.send(true);
        }
        if tokio::time::timeout(Duration::from_secs(30), self.wait_idle()).await.is_err() {
            tracing::error!("runs did not stop within 30 s of being told to");
        }
    }
}

impl crate::cluster::node::Fence for Runner {
    /// This node lost the database: every run going here stops (it ends `interrupted`, or, the
    /// database being away, is marked so by the node that declares this one dead).
    fn fence(&self) {
        for a in self.active().values() {
            let _ = a.cancel.send(true);
            if let Some((_, cancel, _)) = &a.follow_up {
                let _ = cancel.send(true);
            }
        }
    }
}

impl crate::events::Listener for Runner {
    /// A removed project's run, if one is going, is stopped (it ends `interrupted`).
    fn changed(&self, change: &Change) {
        if let Change::ProjectRemoved { id } = change {
            self.cancel(id);
        }
    }
}
