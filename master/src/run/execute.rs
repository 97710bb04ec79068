//! One run, from its plan to its record: the probe, the attempts, the guards after rsync, the
//! generation and its snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mirror_common::api::{RunProgress, RunStats, RunStatus};
use mirror_common::guards::MaxDelete;
use mirror_common::names::ProjectId;
use mirror_runtime::rsync::{Ending, RsyncCommand, RsyncOutcome, run_rsync};
use tokio::sync::watch;

use super::Runner;
use super::guards::over_limit;
use super::kinds::Manifest;
use super::plan::{RunPlan, Tool};
use super::stages::{OwnLock, probe_of};
use super::upstreams;
use crate::db;
use crate::events::Change;
use crate::read::views::upstream;
use crate::retry::backoff;

/// The commands of one run, built once from its plan.
struct Commands {
    stage1: Option<RsyncCommand>,
    main: RsyncCommand,
    /// The dry run that checks a percentage `max_delete` first, when rsync's own `--max-delete`
    /// cannot (no earlier success to measure the tree by).
    dry: Option<RsyncCommand>,
}

/// How the attempts went.
struct Ran {
    outcome: RsyncOutcome,
    attempts: u32,
    began: chrono::DateTime<chrono::Utc>,
    /// A two-stage run's seconds in each stage (its trace file names them).
    stage_secs: Option<(u64, u64)>,
}

/// What the run's start left to do: the record of each rsync's start is written by a task of its
/// own (rsync tells its pid from a callback); the run's end waits for them, so that it is never
/// told, nor recorded, before its start.
#[derive(Default)]
struct Starts {
    told: AtomicBool,
    writes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Starts {
    async fn written(&self) {
        let writes = std::mem::take(&mut *self.writes.lock().unwrap_or_else(|p| p.into_inner()));
        for w in writes {
            let _ = w.await;
        }
    }
}

impl Runner {
    pub(super) async fn execute_inner(
        &self,
        project_id: &ProjectId,
        run_id: i64,
        cancel: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        if *cancel.borrow() || !self.accepting.load(Ordering::SeqCst) {
            return self.finish_interrupted(project_id, run_id, "stopped before it started").await;
        }
        let Some(project) = db::projects::get(&self.db.read, project_id).await? else {
            return self.finish_interrupted(project_id, run_id, "the project was removed").await;
        };
        let plan = match self.plan(project, run_id).await {
            Ok(plan) => plan,
            Err(why) => return self.finish_refused(project_id, run_id, &format!("{why}: not run")).await,
        };
        self.make_dirs(&plan).await?;
        // Several upstreams: the first that answers and is not staler than the others first.
        let (plans, fetched) = self.upstream_plans(plan).await;
        let mut plans = plans.into_iter();
        let Some(mut plan) = plans.next() else {
            return self.finish_refused(project_id, run_id, "no upstream could be planned: not run").await;
        };
        if !matches!(plan.tool, Tool::Rsync) {
            // git and providers tell no figures of their own: the tree before and after does.
            let dest = plan.project.dest.as_path().to_path_buf();
            plan.before = Some(tokio::task::spawn_blocking(move || Manifest::of(&dest)).await?);
        }
        // The probe: one small file fetched alone; as the last success saw it, the upstream has
        // not moved, and the run ends here without a walk of the upstream.
        let mut probe_seen_now = None;
        if let Some(path) = probe_of(&plan.project) {
            let (label, hash) = self.probe(&plan, &path, fetched).await;
            db::runs::set_probe(&self.db, run_id, &label).await?;
            if label == "unchanged" && plan.project.generation > 0 {
                let message = format!("the probe {path} is as the last successful run saw it: not run");
                tracing::info!(probe = %path, "upstream unchanged: run ended without a walk");
                return self.finish_unchanged(project_id, run_id, &message).await;
            }
            probe_seen_now = hash;
        }
        let one_pass = self.one_pass(&plan).await?;
        let (plan, ran) = self.on_upstreams(plan, plans, run_id, one_pass, cancel).await?;
        let ran = match ran {
            Ok(ran) => ran,
            Err(message) => return self.finish_refused(project_id, run_id, &message).await,
        };
        self.conclude(&plan, run_id, ran, one_pass, probe_seen_now).await
    }

    /// The attempts on the plan's upstream and, while one is down or refuses, on the next.
    /// Returns the plan of the upstream that was used last, and how it went.
    async fn on_upstreams(
        &self,
        mut plan: RunPlan,
        mut others: impl Iterator<Item = RunPlan>,
        run_id: i64,
        one_pass: Option<u64>,
        cancel: watch::Receiver<bool>,
    ) -> anyhow::Result<(RunPlan, Result<Ran, String>)> {
        loop {
            if !plan.project.more_upstreams.is_empty() {
                db::runs::set_upstream(&self.db, run_id, &upstream(&plan.project)).await?;
            }
            let commands = self.commands(&plan, run_id, one_pass);
            // While a two-stage run goes, the tree shows it (ftpsync's lock, for whoever mirrors us).
            let own_lock = match &commands.stage1 {
                Some(_) => Some(OwnLock::take(plan.project.dest.as_path(), &self.cfg.mirror_name).await),
                None => None,
            };
            let ran = self.attempts(&plan, run_id, &commands, cancel.clone()).await;
            if let Some(lock) = own_lock {
                lock.release().await;
            }
            match (&ran, others.next()) {
                (Ok(r), Some(next)) if upstreams::moves_on(&r.outcome) => {
                    tracing::warn!(upstream = %upstream(&plan.project), next = %upstream(&next.project), message = %r.outcome.message, "upstream down or refusing: the next one");
                    plan = next;
                }
                _ => return Ok((plan, ran)),
            }
        }
    }

    /// The project's dest, and an empty temporary directory, both owned by the account rsync runs as.
    async fn make_dirs(&self, plan: &RunPlan) -> anyhow::Result<()> {
        // The log's directory is made where the log is opened (mirror_runtime::rsync).
        tokio::fs::create_dir_all(&plan.project.dest).await?;
        mirror_runtime::fs::empty_dir(&plan.temp).await?;
        if let Some(r) = self.cfg.run_as {
            let (dest, temp) = (plan.project.dest.as_path().to_path_buf(), plan.temp.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::os::unix::fs::chown(dest, Some(r.uid), Some(r.gid))?;
                std::os::unix::fs::chown(temp, Some(r.uid), Some(r.gid))
            })
            .await??;
        }
        Ok(())
    }

    /// `max_delete` in the run itself: rsync's own `--max-delete` stops it at the limit (exit 25),
    /// and the few files it deleted come back from the previous generation's frozen copy. Only a
    /// percentage with no earlier success to measure the tree by still needs a dry run first
    /// (then `None`, as when there is no limit).
    async fn one_pass(&self, plan: &RunPlan) -> anyhow::Result<Option<u64>> {
        if !matches!(plan.tool, Tool::Rsync) {
            return Ok(None);
        }
        Ok(match plan.limit {
            MaxDelete::Off => None,
            MaxDelete::Count(n) => Some(n),
            MaxDelete::Percent(p) => db::runs::last_success_total(&self.db, &plan.project.id)
                .await?
                .map(|tree| tree.saturating_mul(u64::from(p)) / 100),
        })
    }

    /// The run's commands: each stage logs to the run's log and tells its progress.
    fn commands(&self, plan: &RunPlan, run_id: i64, one_pass: Option<u64>) -> Commands {
        let log_file = plan.log_file.clone();
        let (progress, watching) = watch::channel::<Option<RunProgress>>(None);
        let progress = Arc::new(progress);
        self.progress_map().insert(run_id, watching);
        let logged = |args: Vec<String>| RsyncCommand {
            log_file: Some(log_file.clone()),
            progress: Some(progress.clone()),
            ..self.command(plan, args)
        };
        let mut args = plan.main.clone();
        if let Some(n) = one_pass {
            // Before the `--` that ends the options.
            let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
            args.insert(at, format!("--max-delete={n}"));
        }
        let rsync = matches!(plan.tool, Tool::Rsync);
        let dry =
            (rsync && plan.limit != MaxDelete::Off && one_pass.is_none()).then(|| self.dry_command(plan, args.clone()));
        Commands { stage1: plan.stage1.clone().map(logged), main: logged(args), dry }
    }

    /// The attempts: a connection failure is tried again, with backoff, up to `retries` times.
    /// `Err`: rsync could not be started (the run is refused).
    async fn attempts(
        &self,
        plan: &RunPlan,
        run_id: i64,
        commands: &Commands,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Ran, String> {
        let began = chrono::Utc::now();
        let starts = Arc::new(Starts::default());
        let mut stage_secs = (0u64, 0u64);
        let mut attempt = 0u32;
        let ended = loop {
            attempt += 1;
            let on_start = self.on_start(&plan.project.id, run_id, attempt, commands, &starts);
            let outcome = match self.attempt(plan, run_id, commands, cancel.clone(), &on_start, &mut stage_secs).await {
                Ok(o) => o,
                Err(e) => break Err(e),
            };
            if !outcome.is_retryable() || attempt > self.cfg.retries {
                break Ok(outcome);
            }
            let wait = backoff(self.cfg.retry_base, attempt);
            tracing::warn!(attempt, retry_in_ms = wait.as_millis() as u64, message = %outcome.message, "connection failure, retrying");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.wait_for(|c| *c) => break Ok(RsyncOutcome { ending: Ending::Cancelled, ..outcome }),
            }
        };
        starts.written().await;
        let stage_secs = commands.stage1.is_some().then_some(stage_secs);
        ended.map(|outcome| Ran { outcome, attempts: attempt, began, stage_secs })
    }

    /// What is done as each rsync of the run starts: its pid and the attempt are recorded and, the
    /// first time, the run is told as running once its record says so.
    fn on_start(
        &self,
        project_id: &ProjectId,
        run_id: i64,
        attempt: u32,
        commands: &Commands,
        starts: &Arc<Starts>,
    ) -> impl Fn(u32) + Send + Sync + 'static {
        let log_name = commands.main.log_file.as_ref().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let (db, events, project, starts) = (self.db.clone(), self.events.clone(), project_id.clone(), starts.clone());
        move |pid: u32| {
            let first = !starts.told.swap(true, Ordering::SeqCst);
            let (db, events, project, log_name) = (db.clone(), events.clone(), project.clone(), log_name.clone());
            let write = tokio::spawn(async move {
                if let Err(e) = db::runs::mark_running(&db, run_id, pid, attempt, &log_name).await {
                    tracing::error!(run.id = run_id, error = %e, "cannot record the running rsync");
                }
                if first {
                    events.publish(Change::Run { project, run: run_id, status: RunStatus::Running, bytes: None });
                }
            });
            starts.writes.lock().unwrap_or_else(|p| p.into_inner()).push(write);
        }
    }

    /// One attempt: the dry run's check, stage 1, then the run's command.
    async fn attempt(
        &self,
        plan: &RunPlan,
        run_id: i64,
        commands: &Commands,
        cancel: watch::Receiver<bool>,
        on_start: &(dyn Fn(u32) + Send + Sync),
        stage_secs: &mut (u64, u64),
    ) -> Result<RsyncOutcome, String> {
        let cannot_start = |e: std::io::Error| format!("cannot start {}: {e}", commands.main.program.display());
        if let Some(dry) = &commands.dry {
            let o = run_rsync(dry, cancel.clone(), &|_| {}).await.map_err(cannot_start)?;
            if !o.succeeded() {
                // The dry run failed: this attempt did (retried as a run would be).
                return Ok(RsyncOutcome { message: format!("dry run (max_delete): {}", o.message), ..o });
            }
            if let Some(why) = over_limit(plan.limit, &o.stats) {
                tracing::error!(message = %why, "run refused before it changed anything");
                return Ok(RsyncOutcome { ending: Ending::Failed, message: why, stats: RunStats::default(), ..o });
            }
        }
        if let Some(stage1) = &commands.stage1 {
            self.set_stage(run_id, Some(1));
            let began = std::time::Instant::now();
            let stopped = self.stage_one(stage1, plan, cancel.clone(), on_start).await;
            stage_secs.0 += began.elapsed().as_secs();
            if let Some(stopped) = stopped? {
                return Ok(stopped);
            }
        }
        if commands.stage1.is_some() {
            self.set_stage(run_id, Some(2));
        }
        let began = std::time::Instant::now();
        let outcome = run_rsync(&commands.main, cancel, on_start).await.map_err(cannot_start)?;
        stage_secs.1 += began.elapsed().as_secs();
        Ok(outcome)
    }

    /// What rsync said, judged: stopped at the deletion limit (what it deleted comes back from the
    /// frozen copy), or a fake success (tunasync#109: rsync says all is well, but the upstream
    /// served an empty or a much smaller tree; its generation never reaches a slave).
    async fn judged(
        &self,
        plan: &RunPlan,
        mut outcome: RsyncOutcome,
        one_pass: Option<u64>,
    ) -> anyhow::Result<RsyncOutcome> {
        if let Some(before) = &plan.before
            && outcome.succeeded()
        {
            self.measured(plan, before, &mut outcome).await?;
        }
        if outcome.exit_code == Some(25)
            && let Some(n) = one_pass
        {
            outcome.ending = Ending::Failed;
            outcome.message = self.put_back(&plan.project, n, plan.limit).await;
            tracing::error!(message = %outcome.message, "run stopped at the deletion limit");
        }
        if outcome.succeeded()
            && let Some(why) = self.fake_success(&plan.project, &outcome.stats).await?
        {
            tracing::error!(message = %why, "run marked failed");
            outcome.ending = Ending::Failed;
            outcome.message = why;
        }
        Ok(outcome)
    }

    /// The run's end: its record, and for a change, its trace file, snapshot and generation.
    async fn conclude(
        &self,
        plan: &RunPlan,
        run_id: i64,
        ran: Ran,
        one_pass: Option<u64>,
        probe_seen_now: Option<String>,
    ) -> anyhow::Result<()> {
        let (project, project_id) = (&plan.project, &plan.project.id);
        let outcome = self.judged(plan, ran.outcome, one_pass).await?;
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
            attempts: ran.attempts,
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
            && (project.generation == 0 || ran.stage_secs.is_some() || outcome.stats.changes.unwrap_or(0) > 0);
        if changed && project.trace {
            // Before the run is recorded: the new generation the slaves pull holds it.
            self.write_trace(project, run_id, ran.began, &outcome, ran.stage_secs).await;
        }
        if changed {
            self.write_stamps(project, chrono::Utc::now()).await;
        }
        // Frozen before the run is recorded, so that no slave is told of a generation without it.
        let frozen = if changed { self.freeze(project).await } else { None };
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
        self.ended(project_id, run_id, status, outcome.stats.bytes_transferred);
        self.publish_generation(bumped, frozen).await;
        let exit_code = outcome.exit_code;
        self.run_hooks(super::hooks::Ended { project, run_id, status, exit_code }).await;
        if outcome.succeeded() {
            tracing::info!(attempts = ran.attempts, changed, files = ?outcome.stats.files_transferred, elapsed_ms = outcome.elapsed.as_millis() as u64, "run succeeded");
        } else {
            tracing::warn!(attempts = ran.attempts, status = status.as_str(), message = %outcome.message, "run did not succeed");
        }
        Ok(())
    }

    /// A new generation: its snapshot takes its number, and every slave is told at once.
    async fn publish_generation(
        &self,
        bumped: Option<crate::db::projects::ProjectRow>,
        frozen: Option<crate::cluster::snapshots::Built>,
    ) {
        let Some(project) = bumped else { return };
        if let Some(built) = frozen
            && let Err(e) = self.cfg.snapshots.name(built, project.generation).await
        {
            tracing::warn!(error = format!("{e:#}"), "no snapshot: slaves pull the live tree");
        }
        tracing::info!(generation = project.generation, "new generation: notifying slaves");
        self.events.publish(Change::NewGeneration(project));
    }

    /// The tree as a snapshot for the slaves to pull, to be named after the generation; `None`
    /// when there is none (turned off, no reader, the options write in place, or it could not be
    /// made: then slaves pull the live tree).
    async fn freeze(&self, project: &crate::db::projects::ProjectRow) -> Option<crate::cluster::snapshots::Built> {
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

    /// A run the probe ended before it began: a success that changed nothing.
    async fn finish_unchanged(&self, project_id: &ProjectId, run_id: i64, message: &str) -> anyhow::Result<()> {
        let finished = db::runs::Finished::unrun(RunStatus::Success, message);
        self.free(project_id, run_id);
        db::runs::finish_success(&self.db, run_id, &finished, project_id, false).await?;
        self.ended(project_id, run_id, RunStatus::Success, None);
        Ok(())
    }
}
