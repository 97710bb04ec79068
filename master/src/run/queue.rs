//! The queue: one run at a time per project, the pass asked for during a run, stop and cancel.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use mirror_common::api::{RunStats, RunStatus, Trigger};
use mirror_common::names::ProjectId;
use tokio::sync::watch;

use super::Runner;
use crate::db;
use crate::events::Change;

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

pub(super) struct Active {
    pub run_id: i64,
    pub cancel: watch::Sender<bool>,
    /// A run asked for while this one was going (ftpsync's `Archive-Update-Required`): queued
    /// (its row is `queued`) to start once this one has ended. Further asks join it.
    pub follow_up: Option<(i64, watch::Sender<bool>, watch::Receiver<bool>)>,
}

/// What a manual trigger started.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub run_id: i64,
    /// The run going when it was asked for: this one starts after it.
    pub follow_up_of: Option<i64>,
}

pub(super) struct Queued {
    pub project_id: ProjectId,
    pub run_id: i64,
    pub cancel: watch::Receiver<bool>,
}

impl Runner {
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
                        self.events.publish(Change::Run { project, run: run_id, status, bytes: None });
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
                self.events.publish(Change::Run { project, run: follow, status, bytes: None });
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
    pub(super) fn take_stopped(&self, run_id: i64) -> bool {
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

    /// The project may run again (its slot, if this run still holds it, is freed). Idempotent.
    /// A pass asked for during the run starts now (it holds the slot from here on).
    pub(super) fn free(&self, project_id: &ProjectId, run_id: i64) {
        self.progress_map().remove(&run_id);
        self.set_stage(run_id, None);
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

    /// The run is recorded as ended (`status`, `bytes` received): the project may run again, and
    /// whoever listens is told, once. Idempotent but for the telling.
    pub(super) fn ended(&self, project_id: &ProjectId, run_id: i64, status: RunStatus, bytes: Option<u64>) {
        self.free(project_id, run_id);
        self.events.publish(Change::Run { project: project_id.clone(), run: run_id, status, bytes });
        self.idle.notify_waiters();
    }
}
