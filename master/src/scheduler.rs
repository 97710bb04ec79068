//! Fires every enabled project's schedule. Fire times come from [`Schedule`] (APScheduler's
//! semantics, zones and all); tokio-cron-scheduler holds one one-shot job per project, at its next
//! fire time, and each fire registers the next. Schedules live in SQLite and are registered anew at
//! start, so nothing about them is kept only in memory.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Duration, Utc};
use mirror_common::cron::{Schedule, ScheduleSpec};
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

use crate::db::{self, Db, projects::ProjectRow};
use crate::runner::{Runner, Trigger, TriggerError};
use crate::state::ListingCache;

struct Registration {
    /// Bumped at every (re)registration: a job whose token is no longer current does nothing.
    token: u64,
    job: Uuid,
}

pub struct Scheduler {
    jobs: JobScheduler,
    registered: Mutex<HashMap<String, Registration>>,
    next_token: AtomicU64,
    db: Db,
    runner: Arc<Runner>,
    listing: Arc<ListingCache>,
    me: Weak<Scheduler>,
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

impl Scheduler {
    /// Starts the scheduler and registers every enabled, scheduled project. A project that asks for
    /// it (`catch_up`) and missed a fire while the master was down gets one catch-up run.
    pub async fn start(db: Db, runner: Arc<Runner>, listing: Arc<ListingCache>) -> anyhow::Result<Arc<Scheduler>> {
        let jobs = JobScheduler::new().await?;
        jobs.start().await?;
        let scheduler = Arc::new_cyclic(|me| Scheduler {
            jobs,
            registered: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            db: db.clone(),
            runner,
            listing,
            me: me.clone(),
        });
        let projects = db::projects::list(&db).await?;
        for p in &projects {
            if let Err(e) = scheduler.sync_row(p, true).await {
                tracing::error!(project.id = %p.id, error = format!("{e:#}"), "cannot schedule project");
            }
        }
        tracing::info!(scheduled = scheduler.registrations().len(), projects = projects.len(), "scheduler started");
        Ok(scheduler)
    }

    fn registrations(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registration>> {
        self.registered.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the live schedule match the stored project: call after every change to a project
    /// (add, update, enable, disable, remove, rename).
    pub async fn sync_project(&self, id: &str) -> anyhow::Result<()> {
        match db::projects::get(&self.db, id).await? {
            Some(p) => self.sync_row(&p, false).await,
            None => {
                self.unregister(id).await;
                Ok(())
            }
        }
    }

    async fn sync_row(&self, p: &ProjectRow, at_start: bool) -> anyhow::Result<()> {
        self.unregister(&p.id).await;
        let Some(spec) = p.schedule.as_deref().filter(|_| p.enabled) else { return Ok(()) };
        let schedule = Schedule::from_spec(serde_json::from_str::<ScheduleSpec>(spec)?)?;
        let now = Utc::now();
        if at_start && p.catch_up {
            // Fires missed while down are not replayed one by one: at most one run covers them.
            let since = p.last_fire_at.as_deref().or(Some(p.updated_at.as_str())).and_then(parse_time);
            let missed = since.and_then(|s| schedule.next_fire_at_or_after(s + Duration::seconds(1)));
            if let Some(missed) = missed.filter(|m| *m < now) {
                tracing::info!(project.id = %p.id, missed = %missed, "catching up one missed run");
                self.fire_now(&p.id, Trigger::CatchUp, missed).await;
            }
        }
        if let Some(next) = schedule.next_fire_at_or_after(now) {
            self.register(&p.id, schedule, next, None).await?;
        }
        Ok(())
    }

    async fn unregister(&self, id: &str) {
        let old = self.registrations().remove(id);
        if let Some(old) = old {
            let _ = self.jobs.remove(&old.job).await;
        }
    }

    /// Adds the one-shot job for `at`. With `replacing`, only if that registration is still the
    /// current one (a fire racing with an update must not bring back the old schedule).
    ///
    /// Boxed with an explicit `Send`: the job it creates calls `fire`, which calls `register` again,
    /// and the compiler cannot see through that cycle on its own.
    fn register<'a>(
        &'a self,
        id: &'a str,
        schedule: Schedule,
        at: DateTime<Utc>,
        replacing: Option<u64>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(self.register_inner(id, schedule, at, replacing))
    }

    async fn register_inner(
        &self,
        id: &str,
        schedule: Schedule,
        at: DateTime<Utc>,
        replacing: Option<u64>,
    ) -> anyhow::Result<()> {
        let token = self.next_token.fetch_add(1, Ordering::SeqCst);
        let delay = (at - Utc::now()).to_std().unwrap_or_default();
        let instant = std::time::Instant::now() + delay;
        let me = self.me.clone();
        let project = id.to_owned();
        let job = Job::new_one_shot_at_instant_async(instant, move |_uuid, _lock| {
            let me = me.clone();
            let project = project.clone();
            let schedule = schedule.clone();
            Box::pin(async move {
                if let Some(scheduler) = me.upgrade() {
                    scheduler.fire(project, token, schedule, at).await;
                }
            })
        })?;
        let job_id = self.jobs.add(job).await?;
        let stale = {
            let mut map = self.registrations();
            let current = map.get(id).map(|r| r.token);
            if replacing.is_none() || current == replacing {
                map.insert(id.to_owned(), Registration { token, job: job_id }).map(|old| old.job)
            } else {
                Some(job_id)
            }
        };
        if let Some(stale) = stale {
            let _ = self.jobs.remove(&stale).await;
        }
        Ok(())
    }

    async fn fire(&self, id: String, token: u64, schedule: Schedule, at: DateTime<Utc>) {
        if self.registrations().get(&id).map(|r| r.token) != Some(token) {
            return;
        }
        self.fire_now(&id, Trigger::Schedule, at).await;
        match schedule.next_fire_at_or_after(at + Duration::seconds(1)) {
            Some(next) => {
                if let Err(e) = self.register(&id, schedule, next, Some(token)).await {
                    tracing::error!(project.id = %id, error = format!("{e:#}"), "cannot schedule the next run");
                }
            }
            None => {
                let mut map = self.registrations();
                if map.get(&id).map(|r| r.token) == Some(token) {
                    map.remove(&id);
                }
                tracing::info!(project.id = %id, "schedule ended (end_date or last year reached)");
            }
        }
        self.listing.invalidate();
    }

    async fn fire_now(&self, id: &str, trigger: Trigger, at: DateTime<Utc>) {
        let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if let Err(e) = db::projects::set_last_fire(&self.db, id, &stamp).await {
            tracing::error!(project.id = %id, error = %e, "cannot record the fire time");
        }
        match self.runner.trigger(id, trigger, Some(at)).await {
            Ok(run_id) => tracing::debug!(project.id = %id, run.id = run_id, "scheduled run started"),
            Err(TriggerError::AlreadyRunning { run_id, .. }) => {
                tracing::info!(project.id = %id, run.id = run_id, "scheduled run skipped: the previous run is still going")
            }
            Err(e) => tracing::warn!(project.id = %id, error = %e, "scheduled run not started"),
        }
    }

    /// The fire time a project is registered for, as the scheduler holds it.
    pub fn is_registered(&self, id: &str) -> bool {
        self.registrations().contains_key(id)
    }

    pub async fn shutdown(&self) {
        let mut jobs = self.jobs.clone();
        if let Err(e) = jobs.shutdown().await {
            tracing::warn!(error = %e, "scheduler did not shut down cleanly");
        }
    }
}
