//! Fires every enabled project's schedule.
//!
//! Fire times come from [`Timing`] (APScheduler's semantics, zones and all) and wait in a queue
//! here. tokio-cron-scheduler drives that queue with one heartbeat job a second: each beat arms a
//! precise timer for every fire due within [`LOOKAHEAD`]. One job, not one per project: with a job
//! per project, 1,000 projects due on the same second overflowed tokio-cron-scheduler's activation
//! channel (capacity 200) and it dropped the overflow without running it (measured with
//! bench/runs.py). Schedules live in SQLite and are queued anew at start.

use mirror_common::names::ProjectId;
use mirror_common::time::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use chrono::{DateTime, Duration, Utc};
use mirror_common::timing::Timing;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::db::{self, Db, projects::ProjectRow};
use crate::events::{Change, Listener};
use crate::run::{Runner, Trigger, TriggerError};

/// How far ahead of a fire its timer is armed. Longer than the heartbeat's period plus its
/// lateness (the library ticks every 500 ms), so that a late or skipped beat delays no fire.
const LOOKAHEAD: Duration = Duration::seconds(3);

/// The live registration of a project: its next fire.
struct Registration {
    /// Bumped at every (re)registration: a queued fire whose token is not current is dropped.
    token: u64,
    schedule: Timing,
    /// The nodes that may run it (`None`: any: the leader).
    placement: Option<mirror_common::placement::Placement>,
}

#[derive(Default)]
struct Queues {
    current: HashMap<ProjectId, Registration>,
    /// Fires not armed yet, by time.
    pending: BTreeMap<(DateTime<Utc>, u64), ProjectId>,
}

pub struct Scheduler {
    heartbeat: JobScheduler,
    queues: Mutex<Queues>,
    next_token: AtomicU64,
    db: Db,
    runner: Arc<Runner>,
    me: Weak<Scheduler>,
    /// Each fire starts a run only on the node that runs the project (the leader, for a project
    /// any node may run); every node keeps every schedule, so that a node taking over fires from
    /// the next beat on.
    node: Arc<crate::cluster::node::Node>,
    /// How far back a node that takes the lead looks for fires the old leader may have missed.
    handover: Duration,
}

impl Scheduler {
    /// Starts the heartbeat and queues every enabled, scheduled project. A project that asks for it
    /// (`catch_up`) and missed a fire while the master was down gets one catch-up run.
    pub async fn start(
        db: Db,
        runner: Arc<Runner>,
        node: Arc<crate::cluster::node::Node>,
        handover: std::time::Duration,
    ) -> anyhow::Result<Arc<Scheduler>> {
        let heartbeat = JobScheduler::new().await?;
        let scheduler = Arc::new_cyclic(|me| Scheduler {
            heartbeat,
            queues: Mutex::new(Queues::default()),
            next_token: AtomicU64::new(1),
            db: db.clone(),
            runner,
            me: me.clone(),
            node,
            handover: Duration::from_std(handover).unwrap_or(Duration::seconds(30)),
        });
        let projects = db::projects::list(&db).await?;
        for p in &projects {
            if let Err(e) = scheduler.start_row(p).await {
                tracing::error!(project.id = %p.id, error = format!("{e:#}"), "cannot schedule project");
            }
        }
        let me = Arc::downgrade(&scheduler);
        let beat = Job::new_async("* * * * * *", move |_uuid, _lock| {
            let me = me.clone();
            Box::pin(async move {
                if let Some(s) = me.upgrade() {
                    s.arm_due();
                }
            })
        })?;
        scheduler.heartbeat.add(beat).await?;
        scheduler.heartbeat.start().await?;
        scheduler.watch_leadership();
        scheduler.arm_due();
        tracing::info!(scheduled = scheduler.queues().current.len(), projects = projects.len(), "scheduler started");
        Ok(scheduler)
    }

    fn queues(&self) -> MutexGuard<'_, Queues> {
        // A panic while holding this lock leaves maps that are still consistent.
        self.queues.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the live schedule match a project as just committed: its schedule is compiled once,
    /// here, and its next fire queued (nothing when disabled or manual-only).
    fn apply(&self, p: &ProjectRow) -> anyhow::Result<Option<Timing>> {
        self.queues().current.remove(&p.id);
        let Some(schedule) = Timing::of(p)?.filter(|_| p.enabled) else { return Ok(None) };
        if let Some(next) = schedule.next_fire_at_or_after(Utc::now()) {
            self.register(&p.id, schedule.clone(), p.node.clone(), next, None);
        }
        Ok(Some(schedule))
    }

    /// At start: queues the project, and gives it its one catch-up run if it asks for it.
    async fn start_row(&self, p: &ProjectRow) -> anyhow::Result<()> {
        let Some(schedule) = self.apply(p)? else { return Ok(()) };
        let now = Utc::now();
        if p.catch_up {
            // Fires missed while down are not replayed one by one: at most one run covers them.
            // The last fire handled: a run's scheduled time, or a fire skipped while a run was going.
            let last_run = db::runs::last_scheduled_fire(&self.db, &p.id).await?;
            let since =
                [p.last_fire_at, last_run, Some(p.updated_at)].into_iter().flatten().max().map(Timestamp::to_datetime);
            let missed = since.and_then(|s| schedule.next_fire_at_or_after(s + Duration::seconds(1)));
            if let Some(missed) = missed.filter(|m| *m < now) {
                tracing::info!(project.id = %p.id, missed = %missed, "catching up one missed run");
                self.fire_now(&p.id, Trigger::CatchUp, missed).await;
            }
        }
        Ok(())
    }

    /// Queues the fire at `at`. With `replacing`, only if that registration is still the current
    /// one: a fire racing with an update must not bring back the old schedule.
    fn register(
        &self,
        id: &ProjectId,
        schedule: Timing,
        placement: Option<mirror_common::placement::Placement>,
        at: DateTime<Utc>,
        replacing: Option<u64>,
    ) {
        let token = self.next_token.fetch_add(1, Ordering::SeqCst);
        {
            let mut q = self.queues();
            let current = q.current.get(id).map(|r| r.token);
            if replacing.is_some() && current != replacing {
                return;
            }
            q.current.insert(id.clone(), Registration { token, schedule, placement });
            if at > Utc::now() + LOOKAHEAD {
                q.pending.insert((at, token), id.clone());
                return;
            }
        }
        self.arm(at, vec![(id.clone(), token)]);
    }

    /// The heartbeat: arms every queued fire due within the lookahead, one timer per instant.
    fn arm_due(&self) {
        let horizon = Utc::now() + LOOKAHEAD;
        let mut due: BTreeMap<DateTime<Utc>, Vec<(ProjectId, u64)>> = BTreeMap::new();
        {
            let mut q = self.queues();
            let later = q.pending.split_off(&(horizon, 0));
            let pending = std::mem::replace(&mut q.pending, later);
            // Fires of registrations replaced since they were queued are dropped here.
            for ((at, token), id) in pending {
                if q.current.get(&id).is_some_and(|r| r.token == token) {
                    due.entry(at).or_default().push((id, token));
                }
            }
        }
        for (at, fires) in due {
            self.arm(at, fires);
        }
    }

    /// One timer for every fire of the same instant; they start one after another, in the order
    /// they were queued. Ten thousand projects due on the same second are one sleeping task, and
    /// their runs enter the runner's queue without ten thousand inserts racing for the database.
    fn arm(&self, at: DateTime<Utc>, fires: Vec<(ProjectId, u64)>) {
        let me = self.me.clone();
        tokio::spawn(async move {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            if let Some(s) = me.upgrade() {
                s.fire(at, fires).await;
            }
        });
    }

    /// The fires of one instant: every registration still current gets its run, queued in order
    /// with one database statement for many, then its next fire.
    async fn fire(&self, at: DateTime<Utc>, fires: Vec<(ProjectId, u64)>) {
        let live: Vec<(ProjectId, u64, Timing, Option<mirror_common::placement::Placement>)> = {
            let q = self.queues();
            fires
                .into_iter()
                .filter_map(|(id, token)| {
                    let r = q.current.get(&id).filter(|r| r.token == token)?;
                    Some((id, token, r.schedule.clone(), r.placement.clone()))
                })
                .collect()
        };
        // The runs this node makes; another node makes the others (each fire once: the
        // database refuses a second run of the same fire).
        let here: Vec<&ProjectId> =
            live.iter().filter(|(_, _, _, p)| self.node.runs_here(p.as_ref())).map(|(id, _, _, _)| id).collect();
        let results = self.runner.trigger_many(&here, Trigger::Schedule, Some(at)).await;
        let mut results: HashMap<&ProjectId, Result<i64, TriggerError>> = here.iter().copied().zip(results).collect();
        for (id, token, schedule, placement) in &live {
            if let Some(result) = results.remove(id) {
                self.started(id, at, result).await;
            }
            match schedule.next_fire_at_or_after(at + Duration::seconds(1)) {
                Some(next) => self.register(id, schedule.clone(), placement.clone(), next, Some(*token)),
                None => {
                    let mut q = self.queues();
                    if q.current.get(id).is_some_and(|r| r.token == *token) {
                        q.current.remove(id);
                    }
                    tracing::info!(project.id = %id, "schedule ended (end_date or last year reached)");
                }
            }
        }
    }

    /// Starts one run now (a catch-up); its row records the fire time.
    async fn fire_now(&self, id: &ProjectId, trigger: Trigger, at: DateTime<Utc>) {
        let result = self.runner.trigger(id, trigger, Some(at)).await;
        self.started(id, at, result).await;
    }

    /// A fire that starts no run records its time on the project, so that a catch-up after a
    /// restart does not count it as missed.
    async fn started(&self, id: &str, at: DateTime<Utc>, result: Result<i64, TriggerError>) {
        match result {
            Ok(run_id) => {
                tracing::debug!(project.id = %id, run.id = run_id, "scheduled run started");
                return;
            }
            Err(TriggerError::Db(sqlx::Error::Database(d))) if d.is_unique_violation() => {
                tracing::debug!(project.id = %id, "fire already handled by another node");
                return;
            }
            Err(TriggerError::AlreadyRunning { run_id, .. }) => {
                tracing::info!(project.id = %id, run.id = run_id, "scheduled run skipped: the previous run is still going")
            }
            Err(e) => tracing::warn!(project.id = %id, error = %e, "scheduled run not started"),
        }
        if let Err(e) = db::projects::set_last_fire(&self.db, id, Timestamp::from(at)).await {
            tracing::error!(project.id = %id, error = %e, "cannot record the fire time");
        }
    }

    /// When this node takes the lead from another (not at its own start): fires that fell in the
    /// handover (the old leader gone, the lease not yet expired) and were not handled start now,
    /// each with its own fire time. A fire the old leader did handle is refused by the database
    /// (one run per fire) or known by the project's last fire.
    fn watch_leadership(&self) {
        let mut leading = self.node.leading();
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut was = leading.borrow_and_update().is_some();
            while leading.changed().await.is_ok() {
                let now = leading.borrow_and_update().is_some();
                if now
                    && !was
                    && let Some(s) = me.upgrade()
                {
                    s.took_lead().await;
                }
                was = now;
            }
        });
    }

    async fn took_lead(&self) {
        let now = Utc::now();
        let since = now - self.handover;
        // Every fire of the window (at most a few per project: the window is seconds long).
        let due: Vec<(ProjectId, DateTime<Utc>)> = {
            let q = self.queues();
            let mut due = Vec::new();
            for (id, r) in q.current.iter().filter(|(_, r)| self.node.runs_here(r.placement.as_ref())) {
                let mut from = since;
                while let Some(at) = r.schedule.next_fire_at_or_after(from).filter(|at| *at < now) {
                    due.push((id.clone(), at));
                    from = at + Duration::seconds(1);
                    if due.len() > 100_000 {
                        break;
                    }
                }
            }
            due
        };
        let rows =
            match db::projects::list_some(&self.db, &due.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the projects whose fires fell in the handover");
                    return;
                }
            };
        for (id, at) in due {
            let handled = rows
                .iter()
                .find(|r| r.id == id)
                .is_none_or(|r| !r.enabled || r.last_fire_at.is_some_and(|f| f.to_datetime() >= at));
            if !handled {
                tracing::info!(project.id = %id, fire = %at, "a fire of the handover: run now");
                self.fire_now(&id, Trigger::Schedule, at).await;
            }
        }
    }

    /// Stops the heartbeat and drops every queued fire (timers already armed find no registration).
    pub async fn shutdown(&self) {
        {
            let mut q = self.queues();
            q.current.clear();
            q.pending.clear();
        }
        let mut heartbeat = self.heartbeat.clone();
        if let Err(e) = heartbeat.shutdown().await {
            tracing::warn!(error = %e, "scheduler heartbeat did not shut down cleanly");
        }
    }
}

impl Scheduler {
    /// `id` succeeded: each enabled project that depends on it runs (or, while it runs, makes one
    /// more pass after).
    async fn follow(&self, id: &ProjectId) {
        let dependents = match db::projects::dependents(&self.db.read, id.as_str(), true).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(project.id = %id, error = %e, "cannot read the projects that depend on it");
                return;
            }
        };
        for dependent in dependents {
            let placed = match db::projects::get(&self.db.read, dependent.as_str()).await {
                Ok(Some(p)) => p.config.node,
                _ => continue,
            };
            if !self.node.runs_here(placed.as_ref()) {
                tracing::warn!(
                    project.id = %dependent, after = %id,
                    "dependency run not started: the project runs on another node (its own schedule or a syncup there runs it)"
                );
                continue;
            }
            match self.runner.trigger_pass(&dependent, Trigger::Dependency).await {
                Ok(started) => tracing::info!(
                    project.id = %dependent, run.id = started.run_id, after = %id,
                    "run after a project it depends on succeeded"
                ),
                Err(e) => {
                    tracing::warn!(project.id = %dependent, after = %id, error = %e, "dependency run not started")
                }
            }
        }
    }
}

impl Listener for Scheduler {
    /// A project saved is queued anew from its committed row; a project removed leaves the queue.
    fn changed(&self, change: &Change) {
        match change {
            Change::ProjectSaved(row) => {
                if let Err(e) = self.apply(row) {
                    tracing::error!(project.id = %row.id, error = format!("{e:#}"), "cannot schedule project");
                }
            }
            Change::ProjectRemoved { id } | Change::ProjectRenamed { from: id, .. } => {
                self.queues().current.remove(id);
            }
            Change::NewGeneration(row) => {
                if let Some(me) = self.me.upgrade() {
                    let id = row.id.clone();
                    tokio::spawn(async move { me.follow(&id).await });
                }
            }
            Change::Stale { .. }
            | Change::Run { .. }
            | Change::Committed(_)
            | Change::PushEnded { .. }
            | Change::SnapshotBuilt { .. }
            | Change::UserChanged { .. } => {}
        }
    }
}
