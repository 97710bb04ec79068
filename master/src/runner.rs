//! Runs projects' rsyncs: one at a time per project, at most `max_concurrent_runs` in all (the
//! rest wait in arrival order), retries with backoff for connection failures, every run recorded.

use mirror_common::names::ProjectId;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mirror_common::api::{RunProgress, RunStats, RunStatus};
use mirror_runtime::rsync::{ConfineStatus, Ending, RsyncCommand, RsyncOutcome, RunAs, kill_orphan, run_rsync};
use tokio::sync::{Notify, mpsc, watch};

use crate::config::Settings;
use crate::db::{self, Db};
use crate::events::{Change, Events};
use crate::retry::backoff;
use crate::snapshots::Snapshots;

pub use mirror_common::api::Trigger;
use mirror_common::guards::MaxDelete;

/// What `POST /syncup/?dry_run=true` found: what a run would change, and whether `max_delete`
/// would stop it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub method: &'static str,
    pub success: bool,
    pub id: ProjectId,
    pub dry_run: bool,
    /// rsync's figures for the dry run: `files_total` (the upstream's), `files_created`,
    /// `files_deleted`, `files_transferred` and `bytes_transferred` (what would be copied).
    pub stats: RunStats,
    /// The project's limit in effect (its own or the master's); `off` when it deletes nothing.
    pub max_delete: MaxDelete,
    /// Why a run would be refused, when it would.
    pub refused: Option<String>,
    /// The dry run's own end: exit code and rsync's message.
    pub exit_code: Option<i32>,
    pub message: String,
}

/// `Archive-Update-in-Progress-<mirror_name>` at the top of a two-stage project's tree while it
/// syncs; removed when the run ends, however it ends.
struct OwnLock(std::path::PathBuf);

impl OwnLock {
    async fn take(dest: &std::path::Path, mirror_name: &str) -> OwnLock {
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
    async fn release(mut self) {
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
fn probe_of(project: &crate::db::projects::ProjectRow) -> Option<String> {
    use mirror_common::stages::StageProfile;
    project.probe.clone().or_else(|| {
        project
            .stages
            .as_ref()
            .is_some_and(|s| s.profile == Some(StageProfile::Debian))
            .then(|| "project/trace/master".to_owned())
    })
}

/// Whether the project's options delete anything on the receiving side.
fn deletes(project: &crate::db::projects::ProjectRow) -> bool {
    project.rsync_options.layered().iter().any(|o| crate::rsync::is_delete_option(o))
}

/// Why `stats` (of a dry run) cross `limit`, if they do. The tree is the mirror's as it is:
/// the upstream's file count, less what would be created, plus what would be deleted.
fn over_limit(limit: MaxDelete, stats: &RunStats) -> Option<String> {
    let deleted = stats.files_deleted.unwrap_or(0);
    let tree = (stats.files_total.unwrap_or(0) + deleted).saturating_sub(stats.files_created.unwrap_or(0));
    if limit.allows(deleted, tree) {
        return None;
    }
    let pct = (deleted * 100).checked_div(tree).unwrap_or(100);
    Some(format!(
        "would delete {deleted} of {tree} files ({pct}%), more than max_delete {limit}: nothing was changed \
         (raise the project's max_delete to let it through)"
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no project with id '{0}'")]
    NotFound(ProjectId),
    #[error("project '{project}' is already running (run {run_id})")]
    AlreadyRunning { project: ProjectId, run_id: i64 },
    #[error("the master is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<TriggerError> for crate::error::Error {
    fn from(e: TriggerError) -> Self {
        use crate::error::Error;
        match e {
            TriggerError::NotFound(_) => Error::not_found("id", e.to_string()),
            TriggerError::AlreadyRunning { .. } => Error::conflict("id", e.to_string()),
            TriggerError::ShuttingDown => Error::Unavailable(e.to_string()),
            TriggerError::Db(d) => d.into(),
        }
    }
}

struct Active {
    run_id: i64,
    cancel: watch::Sender<bool>,
    /// A run asked for while this one was going (ftpsync's `Archive-Update-Required`): queued
    /// (its row is `queued`) to start once this one has ended. Further asks join it.
    follow_up: Option<(i64, watch::Sender<bool>, watch::Receiver<bool>)>,
}

/// What a manual trigger started.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub run_id: i64,
    /// The run going when it was asked for: this one starts after it.
    pub follow_up_of: Option<i64>,
}

struct Queued {
    project_id: ProjectId,
    run_id: i64,
    cancel: watch::Receiver<bool>,
}

pub struct RunnerConfig {
    /// Canonical: every run checks that its `dest` still resolves under it.
    pub mirror_root: PathBuf,
    pub rsync_path: PathBuf,
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
    /// A node silent this long is dead (`node_dead_secs`): a run of another node younger than
    /// that keeps the project from running here.
    pub node_dead_after: Duration,
}

impl From<&Settings> for RunnerConfig {
    fn from(s: &Settings) -> Self {
        RunnerConfig {
            mirror_root: s.mirror_root.clone(),
            rsync_path: s.rsync_path.clone(),
            log_dir: s.log_dir.clone(),
            log_keep: s.log_keep,
            log_max_bytes: s.log_max_bytes,
            default_timeout: Duration::from_secs(s.run_timeout_secs),
            retries: s.retries,
            retry_base: Duration::from_millis(s.retry_base_ms),
            confine: ConfineStatus::none("not detected"),
            run_as: None,
            runs_keep: s.runs_keep,
            mirror_name: s.mirror_name.as_ref().map_or_else(crate::trace::host_name, |n| n.to_string()),
            host_name: crate::trace::host_name(),
            max_shrink: s.max_shrink,
            max_delete: s.max_delete,
            upstream_lock_retry: Duration::from_secs(s.upstream_lock_retry_secs),
            upstream_lock_wait: Duration::from_secs(s.upstream_lock_wait_secs),
            snapshots: Snapshots::new(&s.mirror_root, s.snapshots),
            node: s.node_name(),
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

    /// Starts a run of `project_id` and returns its id at once; it waits for a free slot if needed.
    pub async fn trigger(
        self: &Arc<Self>,
        project_id: &ProjectId,
        trigger: Trigger,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Result<i64, TriggerError> {
        let mut results = self.trigger_many(&[project_id], trigger, scheduled_for).await;
        results.pop().unwrap_or(Err(TriggerError::ShuttingDown))
    }

    /// Starts a run of each project (all fired by the same trigger at the same time), queued in
    /// the order given, with one database statement for many. One result per project, in order.
    pub async fn trigger_many(
        self: &Arc<Self>,
        project_ids: &[&ProjectId],
        trigger: Trigger,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Vec<Result<i64, TriggerError>> {
        if !self.accepting.load(Ordering::SeqCst) {
            return project_ids.iter().map(|_| Err(TriggerError::ShuttingDown)).collect();
        }
        let mut results: Vec<Result<i64, TriggerError>> = Vec::with_capacity(project_ids.len());
        // (position in `project_ids`, the run's cancel switch) for each project reserved here.
        let mut reserved = Vec::new();
        {
            let mut active = self.active();
            for (i, id) in project_ids.iter().enumerate() {
                if let Some(a) = active.get(*id) {
                    results.push(Err(TriggerError::AlreadyRunning { project: (*id).clone(), run_id: a.run_id }));
                    continue;
                }
                // Reserved before the await below, so a second trigger sees it.
                let (cancel, cancel_rx) = watch::channel(false);
                active.insert((*id).clone(), Active { run_id: 0, cancel, follow_up: None });
                results.push(Err(TriggerError::ShuttingDown));
                reserved.push((i, cancel_rx));
            }
        }
        // A run of the same project going on another node (a handover, a group whose first node
        // came back): this one does not start, as while a run of its own goes.
        if !reserved.is_empty() {
            let ids: Vec<&ProjectId> = reserved.iter().map(|(i, _)| project_ids[*i]).collect();
            let since = chrono::Utc::now() - chrono::Duration::from_std(self.cfg.node_dead_after).unwrap_or_default();
            match db::runs::going_elsewhere(&self.db, &self.cfg.node, since.into(), &ids).await {
                Ok(going) if !going.is_empty() => {
                    let mut active = self.active();
                    reserved.retain(|(i, _)| {
                        let id = project_ids[*i];
                        let Some((_, run_id)) = going.iter().find(|(p, _)| p == id) else { return true };
                        active.remove(id);
                        results[*i] = Err(TriggerError::AlreadyRunning { project: id.clone(), run_id: *run_id });
                        false
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check for runs on other nodes"),
            }
        }
        let ids: Vec<&ProjectId> = reserved.iter().map(|(i, _)| project_ids[*i]).collect();
        let scheduled = scheduled_for.map(mirror_common::time::Timestamp::from);
        let inserted = db::runs::insert_queued(&self.db, &self.cfg.node, &ids, trigger, scheduled).await;
        for ((i, cancel), row) in reserved.into_iter().zip(inserted) {
            let project_id = project_ids[i];
            results[i] = match row {
                Ok(run_id) => {
                    let queued = self.enqueue(project_id, run_id, cancel);
                    if queued.is_ok() {
                        let (project, status) = (project_id.clone(), RunStatus::Queued);
                        self.events.publish(Change::RunState { project, run: run_id, status });
                    }
                    queued
                }
                Err(e) => {
                    self.active().remove(project_id);
                    // The foreign key refuses a run of a project that does not exist.
                    Err(match e {
                        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                            TriggerError::NotFound(project_id.clone())
                        }
                        other => other.into(),
                    })
                }
            };
        }
        self.events.publish(Change::RunsChanged { projects: ids.iter().map(|id| (*id).clone()).collect() });
        results
    }

    /// A manual trigger: a run now, or, while one is going, exactly one more full pass after it
    /// (however many times it is asked for meanwhile).
    pub async fn trigger_manual(self: &Arc<Self>, project_id: &ProjectId) -> Result<Started, TriggerError> {
        self.trigger_pass(project_id, Trigger::Manual).await
    }

    /// A run now, or one more full pass after the run going (as [`Runner::trigger_manual`]), for
    /// an operator or a dependency's success.
    pub async fn trigger_pass(
        self: &Arc<Self>,
        project_id: &ProjectId,
        trigger: Trigger,
    ) -> Result<Started, TriggerError> {
        let current = match self.trigger(project_id, trigger, None).await {
            Ok(run_id) => return Ok(Started { run_id, follow_up_of: None }),
            Err(TriggerError::AlreadyRunning { run_id, .. }) => run_id,
            Err(e) => return Err(e),
        };
        let joined = self.active().get(project_id).and_then(|a| a.follow_up.as_ref().map(|f| (a.run_id, f.0)));
        if let Some((going, follow)) = joined {
            return Ok(Started { run_id: follow, follow_up_of: Some(going) });
        }
        let inserted = db::runs::insert_queued(&self.db, &self.cfg.node, &[project_id], trigger, None).await;
        let follow = inserted.into_iter().next().unwrap_or(Err(sqlx::Error::RowNotFound))?;
        let placed = {
            let mut active = self.active();
            match active.get_mut(project_id) {
                Some(a) if a.follow_up.is_none() => {
                    let (cancel, cancel_rx) = watch::channel(false);
                    a.follow_up = Some((follow, cancel, cancel_rx));
                    Some(Ok(Started { run_id: follow, follow_up_of: Some(a.run_id) }))
                }
                // Another ask placed one meanwhile: join it; this row is not needed.
                Some(a) => a.follow_up.as_ref().map(|f| Ok(Started { run_id: f.0, follow_up_of: Some(a.run_id) })),
                None => None,
            }
        };
        match placed {
            Some(Ok(s)) if s.run_id == follow => {
                let (project, status) = (project_id.clone(), RunStatus::Queued);
                self.events.publish(Change::RunState { project, run: follow, status });
                self.events.publish(Change::RunsChanged { projects: vec![project_id.clone()] });
                tracing::info!(project.id = %project_id, run.id = follow, after = current, "one more pass queued after the run going");
                Ok(s)
            }
            other => {
                // Not needed (joined another, or the run ended meanwhile): the row goes.
                let unrun = db::runs::Finished {
                    status: RunStatus::Interrupted,
                    exit_code: None,
                    attempts: 0,
                    message: "not needed: joined the pass already asked for",
                    warning: false,
                    stats: &RunStats::default(),
                    log_tail: "",
                };
                db::runs::finish(&self.db, follow, &unrun).await?;
                match other {
                    Some(r) => r,
                    None => self
                        .trigger(project_id, trigger, None)
                        .await
                        .map(|run_id| Started { run_id, follow_up_of: None }),
                }
            }
        }
    }

    fn enqueue(&self, project_id: &ProjectId, run_id: i64, cancel: watch::Receiver<bool>) -> Result<i64, TriggerError> {
        if let Some(a) = self.active().get_mut(project_id) {
            a.run_id = run_id;
        }
        if self.queue.send(Queued { project_id: project_id.clone(), run_id, cancel }).is_err() {
            self.active().remove(project_id);
            return Err(TriggerError::ShuttingDown);
        }
        Ok(run_id)
    }

    /// An operator's stop: the run (queued or running) ends `stopped`, its rsync group killed.
    /// False when the run is not going (it ended, or is not this master's).
    pub fn stop(&self, project_id: &ProjectId, run_id: i64) -> bool {
        let active = self.active();
        let Some(a) = active.get(project_id).filter(|a| a.run_id == run_id) else { return false };
        let mut stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        stopping.insert(run_id);
        let _ = a.cancel.send(true);
        // A stop is a stop: the pass asked for after this run does not start either.
        if let Some((follow, cancel, _)) = &a.follow_up {
            stopping.insert(*follow);
            let _ = cancel.send(true);
        }
        true
    }

    /// Whether the run was stopped by an operator (and forgets it).
    fn take_stopped(&self, run_id: i64) -> bool {
        self.stopping.lock().unwrap_or_else(|p| p.into_inner()).remove(&run_id)
    }

    /// Stops the project's run, if any (it ends `interrupted`), and the pass queued after it.
    pub fn cancel(&self, project_id: &str) {
        if let Some(a) = self.active().get(project_id) {
            let _ = a.cancel.send(true);
            if let Some((_, cancel, _)) = &a.follow_up {
                let _ = cancel.send(true);
            }
        }
    }

    #[tracing::instrument(skip_all, fields(project.id = %project_id, run.id = run_id))]
    async fn execute(self: Arc<Self>, project_id: ProjectId, run_id: i64, cancel: watch::Receiver<bool>) {
        self.executing.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.execute_inner(&project_id, run_id, cancel).await {
            tracing::error!(error = format!("{e:#}"), "run failed inside the master");
            let message = format!("internal error: {e:#}");
            let finished = db::runs::Finished::unrun(RunStatus::Failed, &message);
            let _ = db::runs::finish(&self.db, run_id, &finished).await;
        }
        // Told once, from what was recorded, whichever way the run ended.
        if let Ok(Some(run)) = db::runs::get(&self.db, run_id).await {
            let bytes_transferred = run.bytes_transferred.and_then(|b| u64::try_from(b).ok());
            self.events.publish(Change::RunEnded {
                project: project_id.clone(),
                status: run.status,
                bytes_transferred,
            });
            self.events.publish(Change::RunState { project: project_id.clone(), run: run_id, status: run.status });
        }
        self.release(&project_id, run_id);
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

    /// How far run `run_id` has got, while it runs.
    pub fn progress(&self, run_id: i64) -> Option<RunProgress> {
        self.progress_map().get(&run_id).and_then(|rx| rx.borrow().clone())
    }

    /// The project may run again (its slot, if this run still holds it, is freed). Idempotent.
    /// A pass asked for during the run starts now (it holds the slot from here on).
    fn free(&self, project_id: &ProjectId, run_id: i64) {
        self.progress_map().remove(&run_id);
        let next = {
            let mut active = self.active();
            if active.get(project_id).is_none_or(|a| a.run_id != run_id) {
                return;
            }
            match active.remove(project_id).and_then(|a| a.follow_up) {
                Some((follow, cancel, cancel_rx)) => {
                    active.insert(project_id.clone(), Active { run_id: follow, cancel, follow_up: None });
                    Some((follow, cancel_rx))
                }
                None => None,
            }
        };
        if let Some((follow, cancel_rx)) = next {
            // Queued while the master shuts down: it ends `interrupted` at the next start.
            let _ = self.enqueue(project_id, follow, cancel_rx);
        }
    }

    /// The project may run again: its run is recorded as ended. Idempotent.
    fn release(&self, project_id: &ProjectId, run_id: i64) {
        self.free(project_id, run_id);
        self.events.publish(Change::RunsChanged { projects: vec![project_id.clone()] });
        self.idle.notify_waiters();
    }

    async fn execute_inner(
        &self,
        project_id: &ProjectId,
        run_id: i64,
        mut cancel: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        if *cancel.borrow() || !self.accepting.load(Ordering::SeqCst) {
            return self.finish_interrupted(run_id, "stopped before it started").await;
        }
        let Some(project) = db::projects::get(&self.db.read, project_id).await? else {
            return self.finish_interrupted(run_id, "the project was removed").await;
        };
        // A symlink put in the mirror root since the project was added must not send rsync's
        // writes outside it: `dest` must still resolve to itself.
        match crate::paths::resolve_dest(&self.cfg.mirror_root, &project.dest).await {
            Ok(resolved) if resolved == std::path::Path::new(&project.dest) => {}
            Ok(resolved) => {
                let message = format!("dest {} now resolves to {}: not run", project.dest, resolved.display());
                return self.finish_refused(run_id, &message).await;
            }
            Err(e) => {
                return self.finish_refused(run_id, &format!("dest {}: {}: not run", project.dest, e.message)).await;
            }
        }
        // Options stored under older rules, or before this host lost its confinement, are checked again.
        let options = &project.rsync_options;
        if let Err(why) = options.recheck(self.cfg.confine.confined()) {
            return self.finish_refused(run_id, &format!("{why}: not run")).await;
        }
        let log_file = self.cfg.log_dir.join(project_id.as_str()).join(format!("{run_id}.log"));
        let log_name = log_file.to_string_lossy().into_owned();
        // The log's directory is made where the log is opened (mirror_common::rsync).
        tokio::fs::create_dir_all(&project.dest).await?;
        let temp = self.cfg.mirror_root.join(mirror_runtime::fs::TEMP_DIR).join(project_id.as_str());
        mirror_runtime::fs::empty_dir(&temp).await?;
        if let Some(r) = self.cfg.run_as {
            // The account rsync runs as must own the top of the tree it writes, and its temporary directory.
            let (dest, temp) = (project.dest.clone(), temp.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::os::unix::fs::chown(dest, Some(r.uid), Some(r.gid))?;
                std::os::unix::fs::chown(temp, Some(r.uid), Some(r.gid))
            })
            .await??;
        }
        let timeout = project.timeout(self.cfg.default_timeout);
        let Some(mut args) = crate::rsync::argv(&project, &temp, &self.cfg.mirror_name) else {
            return self.finish_refused(run_id, "the project has a local source: there is no upstream to pull").await;
        };
        // Two stages: the run's command is stage 2 (what the deletion guard also counts with).
        use crate::rsync::{Stage, stage_argv};
        let stage1_args = stage_argv(&project, &temp, &self.cfg.mirror_name, Stage::One);
        if let Some(two) = stage_argv(&project, &temp, &self.cfg.mirror_name, Stage::Two) {
            args = two;
        }
        // The probe: one small file fetched alone; as the last success saw it, the upstream has
        // not moved, and the run ends here without a walk of the upstream.
        let mut probe_seen_now = None;
        if let Some(path) = probe_of(&project) {
            let (label, hash) = self.probe(&project, &path, &temp).await;
            db::runs::set_probe(&self.db, run_id, &label).await?;
            if label == "unchanged" && project.generation > 0 {
                let message = format!("the probe {path} is as the last successful run saw it: not run");
                tracing::info!(probe = %path, "upstream unchanged: run ended without a walk");
                return self.finish_unchanged(project_id, run_id, &message).await;
            }
            probe_seen_now = hash;
        }
        // max_delete in the run itself: rsync's own --max-delete stops it at the limit (exit 25),
        // and the few files it deleted come back from the previous generation's frozen copy. Only
        // a percentage with no earlier success to measure the tree by still needs a dry run first.
        let limit = self.deletion_limit(&project);
        let one_pass = match limit {
            MaxDelete::Off => None,
            MaxDelete::Count(n) => Some(n),
            MaxDelete::Percent(p) => db::runs::last_success_total(&self.db, project_id)
                .await?
                .map(|tree| tree.saturating_mul(u64::from(p)) / 100),
        };
        if let Some(n) = one_pass {
            // Before the `--` that ends the options.
            let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
            args.insert(at, format!("--max-delete={n}"));
        }
        let dry = (limit != MaxDelete::Off && one_pass.is_none())
            .then(|| self.dry_command(&project, args.clone(), &temp, timeout));
        let (progress, watching) = watch::channel(None);
        let progress = Arc::new(progress);
        self.progress_map().insert(run_id, watching);
        let stage1 = stage1_args.map(|args| RsyncCommand {
            program: self.cfg.rsync_path.clone(),
            args,
            password: project.rsync_password.clone(),
            timeout,
            log_file: Some(log_file.clone()),
            log_max_bytes: self.cfg.log_max_bytes,
            confinement: self.cfg.confine.confinement(vec![project.dest.as_path().to_path_buf(), temp.clone()], vec![]),
            run_as: self.cfg.run_as,
            progress: Some(progress.clone()),
        });
        // While a two-stage run goes, the tree shows it (ftpsync's lock, for whoever mirrors us).
        let own_lock = match &stage1 {
            Some(_) => Some(OwnLock::take(std::path::Path::new(&project.dest), &self.cfg.mirror_name).await),
            None => None,
        };
        let mut stage_secs = (0u64, 0u64);
        let command = RsyncCommand {
            program: self.cfg.rsync_path.clone(),
            args,
            password: project.rsync_password.clone(),
            timeout,
            log_file: Some(log_file),
            log_max_bytes: self.cfg.log_max_bytes,
            confinement: self.cfg.confine.confinement(vec![project.dest.as_path().to_path_buf(), temp], vec![]),
            run_as: self.cfg.run_as,
            progress: Some(progress),
        };
        let began = chrono::Utc::now();
        let mut attempt = 0u32;
        // `running` is told once, though two stages start two rsyncs.
        let told = Arc::new(AtomicBool::new(false));
        let mut outcome: RsyncOutcome = {
            loop {
                attempt += 1;
                let db = self.db.clone();
                let events = self.events.clone();
                let log_name = log_name.clone();
                let project_id = project_id.clone();
                let told = told.clone();
                let record_pid = move |pid: u32| {
                    let (db, events, log_name, project_id) =
                        (db.clone(), events.clone(), log_name.clone(), project_id.clone());
                    if !told.swap(true, Ordering::SeqCst) {
                        // Told here, in order: before the run can end.
                        let (project, status) = (project_id.clone(), RunStatus::Running);
                        events.publish(Change::RunState { project, run: run_id, status });
                    }
                    tokio::spawn(async move {
                        if let Err(e) = db::runs::mark_running(&db, run_id, pid, attempt, &log_name).await {
                            tracing::error!(run.id = run_id, error = %e, "cannot record the running rsync");
                        }
                        events.publish(Change::RunsChanged { projects: vec![project_id] });
                    });
                };
                let checked = match &dry {
                    None => None,
                    Some(dry) => match run_rsync(dry, cancel.clone(), &|_| {}).await {
                        Ok(o) if o.succeeded() => over_limit(limit, &o.stats).map(|why| {
                            let refused =
                                RsyncOutcome { ending: Ending::Failed, message: why, stats: RunStats::default(), ..o };
                            tracing::error!(message = %refused.message, "run refused before it changed anything");
                            refused
                        }),
                        // The dry run failed: this attempt did (retried as a run would be).
                        Ok(o) => Some(RsyncOutcome { message: format!("dry run (max_delete): {}", o.message), ..o }),
                        Err(e) => {
                            let message = format!("cannot start {}: {e}", self.cfg.rsync_path.display());
                            return self.finish_refused(run_id, &message).await;
                        }
                    },
                };
                let checked = match (checked, &stage1) {
                    (Some(refused), _) => Some(refused),
                    (None, None) => None,
                    (None, Some(stage1)) => {
                        let began = std::time::Instant::now();
                        let o = self.stage_one(stage1, &project, cancel.clone(), &record_pid).await;
                        stage_secs.0 += began.elapsed().as_secs();
                        match o {
                            Ok(None) => None,
                            Ok(Some(stopped)) => Some(stopped),
                            Err(message) => return self.finish_refused(run_id, &message).await,
                        }
                    }
                };
                let stage2_began = std::time::Instant::now();
                let outcome = match checked {
                    Some(o) => o,
                    None => match run_rsync(&command, cancel.clone(), &record_pid).await {
                        Ok(o) => o,
                        Err(e) => {
                            let message = format!("cannot start {}: {e}", self.cfg.rsync_path.display());
                            return self.finish_refused(run_id, &message).await;
                        }
                    },
                };
                if stage1.is_some() {
                    stage_secs.1 += stage2_began.elapsed().as_secs();
                }
                if !outcome.is_retryable() || attempt > self.cfg.retries {
                    break outcome;
                }
                let wait = backoff(self.cfg.retry_base, attempt);
                tracing::warn!(attempt, retry_in_ms = wait.as_millis() as u64, message = %outcome.message, "connection failure, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.wait_for(|c| *c) => break RsyncOutcome { ending: Ending::Cancelled, ..outcome },
                }
            }
        };
        if let Some(lock) = own_lock {
            lock.release().await;
        }
        // Stopped at the deletion limit: what it deleted comes back from the frozen copy.
        if outcome.exit_code == Some(25)
            && let Some(n) = one_pass
        {
            outcome.ending = Ending::Failed;
            outcome.message = self.put_back(&project, n, limit).await;
            tracing::error!(message = %outcome.message, "run stopped at the deletion limit");
        }
        // Fake success (tunasync#109): rsync says all is well, but the upstream served an empty
        // or a much smaller tree. The run fails; its generation never reaches a slave.
        if outcome.succeeded()
            && let Some(why) = self.fake_success(&project, &outcome.stats).await?
        {
            tracing::error!(message = %why, "run marked failed");
            outcome.ending = Ending::Failed;
            outcome.message = why;
        }
        let status = match outcome.ending {
            Ending::Success | Ending::SuccessWithWarning => RunStatus::Success,
            Ending::Failed => RunStatus::Failed,
            Ending::Timeout => RunStatus::Timeout,
            Ending::Cancelled if self.take_stopped(run_id) => RunStatus::Stopped,
            Ending::Cancelled => RunStatus::Interrupted,
        };
        let finished = db::runs::Finished {
            status,
            exit_code: outcome.exit_code,
            attempts: attempt,
            message: if status == RunStatus::Stopped { "stopped by an operator" } else { &outcome.message },
            warning: outcome.ending == Ending::SuccessWithWarning,
            stats: &outcome.stats,
            log_tail: &outcome.tail,
        };
        // A run that changed nothing changes nothing: no generation, no snapshot, no trace, no
        // notification, no push. Read from rsync's itemized changes; a first success always makes
        // generation 1, and a two-stage run (its first stage's changes are not counted) always
        // counts as a change.
        let changed = outcome.succeeded()
            && (project.generation == 0 || stage1.is_some() || outcome.stats.changes.unwrap_or(0) > 0);
        if changed && project.trace {
            // Before the run is recorded: the new generation the slaves pull holds it.
            self.write_trace(&project, run_id, began, &outcome, stage1.is_some().then_some(stage_secs)).await;
        }
        // Frozen before the run is recorded, so that no slave is told of a generation without it.
        let frozen = if changed { self.freeze(&project).await } else { None };
        // rsync has ended: a trigger from now on starts a new run, also one that comes as soon as
        // a client reads this run as ended (below), not only once the change is published.
        self.free(project_id, run_id);
        let bumped = if outcome.succeeded() {
            db::runs::finish_success(&self.db, run_id, &finished, project_id, changed).await?
        } else {
            db::runs::finish(&self.db, run_id, &finished).await?;
            None
        };
        // The probe as it was before this successful run: the next run compares with it.
        if outcome.succeeded()
            && probe_seen_now.is_some()
            && let Err(e) = db::projects::set_probe_seen(&self.db, project_id, probe_seen_now.as_deref()).await
        {
            tracing::warn!(error = %e, "cannot keep what the probe held");
        }
        // Recorded as ended: told to the listing and whoever listens.
        self.release(project_id, run_id);
        if let (Some(project), Some(built)) = (&bumped, frozen)
            && let Err(e) = self.cfg.snapshots.name(built, project.generation).await
        {
            tracing::warn!(error = format!("{e:#}"), "no snapshot: slaves pull the live tree");
        }
        if let Some(project) = bumped {
            // New content: a new generation, and every slave is told at once.
            tracing::info!(generation = project.generation, "new generation: notifying slaves");
            self.events.publish(Change::NewGeneration(project));
        }
        if outcome.succeeded() {
            tracing::info!(attempts = attempt, changed, files = ?outcome.stats.files_transferred, elapsed_ms = outcome.elapsed.as_millis() as u64, "run succeeded");
        } else {
            tracing::warn!(attempts = attempt, status = status.as_str(), message = %outcome.message, "run did not succeed");
        }
        Ok(())
    }

    /// The tree as a snapshot for the slaves to pull, to be named after the generation; `None`
    /// when there is none (turned off, no reader, the options write in place, or it could not be
    /// made: then slaves pull the live tree).
    async fn freeze(&self, project: &crate::db::projects::ProjectRow) -> Option<crate::snapshots::Built> {
        // Nobody would read it: no slave to tell, no object store to push to. A slave added
        // later pulls the live tree until the next generation.
        let read = !project.targets.is_empty() || db::slaves::any_told(&self.db).await.unwrap_or(true);
        if !read {
            return None;
        }
        let began = std::time::Instant::now();
        let built = self.cfg.snapshots.build(project).await;
        let seconds = began.elapsed().as_secs_f64();
        let built = match built {
            Ok(None) => return None,
            Ok(Some(built)) => {
                tracing::debug!(elapsed_ms = (seconds * 1000.0) as u64, "snapshot made");
                Some(built)
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "no snapshot: slaves pull the live tree");
                None
            }
        };
        self.events.publish(Change::SnapshotBuilt { project: project.id.clone(), made: built.is_some(), seconds });
        built
    }

    /// Stage 1 of a two-stage run, again while the upstream shows its update lock (within
    /// `upstream_lock_wait_secs`). `Ok(None)`: stage 2 may go; `Ok(Some(outcome))`: this attempt
    /// ends so; `Err`: rsync cannot be started.
    async fn stage_one(
        &self,
        stage1: &RsyncCommand,
        project: &crate::db::projects::ProjectRow,
        mut cancel: watch::Receiver<bool>,
        record_pid: &(dyn Fn(u32) + Send + Sync),
    ) -> Result<Option<RsyncOutcome>, String> {
        let dest = std::path::Path::new(&project.dest);
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
    /// compares its SHA-256 with what the newest successful run saw. Returns what it found
    /// (`unchanged`, `changed`, `first`, or why it could not be read) and the hash.
    async fn probe(
        &self,
        project: &crate::db::projects::ProjectRow,
        path: &str,
        temp: &std::path::Path,
    ) -> (String, Option<String>) {
        let Some(source) = crate::rsync::source(project) else { return ("no upstream".into(), None) };
        let landed = temp.join(".mirror-sync-probe");
        let args = mirror_common::rsync_opts::rsync_argv(
            ["--no-motd".to_owned(), "--timeout=60".to_owned(), "--max-size=1m".to_owned()],
            format!("{source}{path}"),
            landed.display().to_string(),
        );
        let command = RsyncCommand {
            program: self.cfg.rsync_path.clone(),
            args,
            password: project.rsync_password.clone(),
            timeout: Duration::from_secs(120),
            log_file: None,
            log_max_bytes: 0,
            confinement: self.cfg.confine.confinement(vec![temp.to_owned()], vec![]),
            run_as: self.cfg.run_as,
            progress: None,
        };
        // Never cancelled: the sender lives until the probe is read.
        let (_keep, never) = watch::channel(false);
        let fetched = match run_rsync(&command, never, &|_| {}).await {
            Ok(o) if o.succeeded() => tokio::fs::read(&landed).await.map_err(|e| e.to_string()),
            Ok(o) => Err(o.message),
            Err(e) => Err(e.to_string()),
        };
        let _ = tokio::fs::remove_file(&landed).await;
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

    /// A run the probe ended before it began: a success that changed nothing.
    async fn finish_unchanged(&self, project_id: &ProjectId, run_id: i64, message: &str) -> anyhow::Result<()> {
        let finished = db::runs::Finished::unrun(RunStatus::Success, message);
        self.free(project_id, run_id);
        db::runs::finish_success(&self.db, run_id, &finished, project_id, false).await?;
        Ok(())
    }

    /// After rsync stopped at `--max-delete={n}`: every file, directory and link of the previous
    /// generation's frozen copy that the run deleted is put back (hard links); the message says
    /// what was done. Without a frozen copy (snapshots off, or no slave or target to read one) the
    /// few it deleted stay deleted, and the message says so.
    async fn put_back(&self, project: &crate::db::projects::ProjectRow, n: u64, limit: MaxDelete) -> String {
        let g = project.generation;
        let head = format!(
            "rsync stopped at max_delete {limit} ({n} files): it would delete more (raise the project's max_delete \
             to let it through); the generation stays at {g} and no slave is told"
        );
        let Some(held) = self.cfg.snapshots.hold(&project.id, g).await else {
            return format!("{head}; no frozen copy of generation {g} to put back the files it deleted");
        };
        let (from, to) = (held.path.clone(), std::path::PathBuf::from(&project.dest));
        let restored = tokio::task::spawn_blocking(move || crate::snapshots::put_back(&from, &to)).await;
        drop(held);
        match restored {
            Ok(Ok(k)) => format!("{head}; {k} deleted files put back from generation {g}'s frozen copy"),
            Ok(Err(e)) => format!("{head}; putting back the deleted files failed: {e}"),
            Err(e) => format!("{head}; putting back the deleted files failed: {e}"),
        }
    }

    fn deletion_limit(&self, project: &crate::db::projects::ProjectRow) -> MaxDelete {
        if deletes(project) { project.max_delete.unwrap_or(self.cfg.max_delete) } else { MaxDelete::Off }
    }

    /// The run's command with `--dry-run`: it reads the upstream's list, changes nothing.
    fn dry_command(
        &self,
        project: &crate::db::projects::ProjectRow,
        mut args: Vec<String>,
        temp: &std::path::Path,
        timeout: Duration,
    ) -> RsyncCommand {
        args.insert(0, "--dry-run".to_owned());
        RsyncCommand {
            program: self.cfg.rsync_path.clone(),
            args,
            password: project.rsync_password.clone(),
            timeout,
            log_file: None,
            log_max_bytes: self.cfg.log_max_bytes,
            confinement: self
                .cfg
                .confine
                .confinement(vec![project.dest.as_path().to_path_buf(), temp.to_owned()], vec![]),
            run_as: self.cfg.run_as,
            progress: None,
        }
    }

    /// `POST /syncup/?id=&dry_run=true`: what a run would change now, and whether `max_delete`
    /// would stop it. Runs beside a run that is going (it writes nothing).
    pub async fn preview(&self, project_id: &ProjectId) -> Result<Preview, crate::error::Error> {
        use crate::error::Error;
        let project = db::projects::get(&self.db.read, project_id)
            .await?
            .ok_or_else(|| Error::not_found("id", format!("no project with id '{project_id}'")))?;
        if let Err(why) = project.rsync_options.recheck(self.cfg.confine.confined()) {
            return Err(Error::conflict("id", format!("{why}: not run")));
        }
        let temp = self.cfg.mirror_root.join(mirror_runtime::fs::TEMP_DIR).join(project_id.as_str());
        let Some(args) = crate::rsync::argv(&project, &temp, &self.cfg.mirror_name) else {
            return Err(Error::conflict(
                "id",
                format!("project '{project_id}' has a local source: nothing to preview"),
            ));
        };
        match crate::paths::resolve_dest(&self.cfg.mirror_root, &project.dest).await {
            Ok(resolved) if resolved == std::path::Path::new(&project.dest) => {}
            _ => return Err(Error::conflict("id", format!("dest {} does not resolve to itself", project.dest))),
        }
        tokio::fs::create_dir_all(&project.dest).await.map_err(|e| Error::Internal(e.into()))?;
        // Never emptied here: a run going may be using it.
        tokio::fs::create_dir_all(&temp).await.map_err(|e| Error::Internal(e.into()))?;
        let timeout = project.timeout(self.cfg.default_timeout);
        let dry = self.dry_command(&project, args, &temp, timeout);
        let (_stop, never) = watch::channel(false);
        let outcome = run_rsync(&dry, never, &|_| {}).await.map_err(|e| Error::Internal(e.into()))?;
        let limit = self.deletion_limit(&project);
        let refused = if outcome.succeeded() { over_limit(limit, &outcome.stats) } else { None };
        Ok(Preview {
            method: "syncup",
            success: outcome.succeeded(),
            id: project_id.clone(),
            dry_run: true,
            stats: outcome.stats,
            max_delete: limit,
            refused,
            exit_code: outcome.exit_code,
            message: outcome.message,
        })
    }

    /// Why a run rsync calls a success is not one: the tree it left is empty while the last
    /// successful run's was not, or smaller by more than `max_shrink` percent.
    async fn fake_success(
        &self,
        project: &crate::db::projects::ProjectRow,
        now: &RunStats,
    ) -> anyhow::Result<Option<String>> {
        let Some((before_size, before_files)) = db::runs::last_success_size(&self.db, &project.id).await? else {
            return Ok(None);
        };
        if now.regular_files == Some(0) && before_size.unwrap_or(0) > 0 {
            return Ok(Some(format!(
                "the upstream served an empty tree (the last success had {} entries, {} bytes): marked failed; \
                 the generation stays at {} and no slave is told",
                before_files.unwrap_or(0),
                before_size.unwrap_or(0),
                project.generation
            )));
        }
        let (Some(before), Some(size)) = (before_size.filter(|b| *b > 0), now.total_size) else { return Ok(None) };
        let limit = u64::from(self.cfg.max_shrink);
        if limit < 100 && size.saturating_mul(100) < before.saturating_mul(100 - limit) {
            let shrank = 100 - size.saturating_mul(100) / before;
            return Ok(Some(format!(
                "the tree shrank from {before} to {size} bytes ({shrank}% smaller), more than max_shrink = {limit}%: \
                 marked failed; the generation stays at {} and no slave is told",
                project.generation
            )));
        }
        Ok(None)
    }

    /// `project/trace/<mirror_name>` of a successful run; a failure to write it is logged, the run
    /// stays a success.
    async fn write_trace(
        &self,
        project: &crate::db::projects::ProjectRow,
        run_id: i64,
        began: chrono::DateTime<chrono::Utc>,
        o: &RsyncOutcome,
        stages: Option<(u64, u64)>,
    ) {
        let dest = std::path::Path::new(&project.dest);
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

    /// Not run: its rules forbid it (a dest that moved, options no longer allowed) or rsync
    /// could not start.
    async fn finish_refused(&self, run_id: i64, message: &str) -> anyhow::Result<()> {
        tracing::error!(message, "run refused");
        self.finish_unrun(run_id, RunStatus::Failed, message).await
    }

    /// Not run: stopped before it started (shutdown, the project removed).
    async fn finish_interrupted(&self, run_id: i64, message: &str) -> anyhow::Result<()> {
        if self.take_stopped(run_id) {
            return self.finish_unrun(run_id, RunStatus::Stopped, "stopped by an operator before it started").await;
        }
        self.finish_unrun(run_id, RunStatus::Interrupted, message).await
    }

    async fn finish_unrun(&self, run_id: i64, status: RunStatus, message: &str) -> anyhow::Result<()> {
        let finished = db::runs::Finished::unrun(status, message);
        db::runs::finish(&self.db, run_id, &finished).await?;
        Ok(())
    }

    /// Keeps the newest `log_keep` run logs of a project.
    async fn rotate_logs(&self, project_id: &str) {
        let dir = self.cfg.log_dir.join(project_id);
        let keep = self.cfg.log_keep;
        let removed = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
            let mut runs: Vec<(i64, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let id = e.file_name().to_str()?.strip_suffix(".log")?.parse::<i64>().ok()?;
                    Some((id, e.path()))
                })
                .collect();
            runs.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
            runs.into_iter().skip(keep).map(|(_, path)| (std::fs::remove_file(&path), path)).collect()
        })
        .await
        .unwrap_or_default();
        for (result, path) in removed {
            if let Err(e) = result {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old run log");
            }
        }
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

impl crate::node::Fence for Runner {
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
