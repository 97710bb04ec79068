//! The master and the others it works with. `node` is this master as one of several on one
//! database (heartbeat, leader lease); `snapshots` freezes each generation that slaves pull;
//! `rsyncd` is the rsync daemon they pull it from; this file propagates a new generation to every
//! slave and reconciles the ones that fall behind.
//!
//! Propagation to slaves: after a successful master run, every slave is notified at once (one
//! task per slave, a per-request timeout, retries with backoff), and a reconciler re-notifies any
//! slave whose served generation is behind: down during the fan-out, restarted, cut off, or new.

pub mod node;
pub mod rsyncd;
pub mod snapshots;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mirror_common::api::{
    CompletionReport, DeliveryStatus, MirrorPath, ProjectId, RsyncSource, SyncAccepted, SyncRequest, SyncState,
};
use mirror_common::time::Timestamp;
use tokio::sync::{Notify, watch};

use crate::cluster::snapshots::Snapshots;
use crate::config::Settings;
use crate::db::{self, Db, projects::ProjectRow, slaves::SlaveRow};
use crate::retry::backoff;

/// The master's name for a slave, as slaves echo it back.
pub fn slave_name(hostname: &str, port: i64) -> String {
    if hostname.contains(':') { format!("[{hostname}]:{port}") } else { format!("{hostname}:{port}") }
}

/// `host:port` or `[v6]:port` back into its parts.
pub fn parse_slave_name(name: &str) -> Option<(String, u16)> {
    let (host, port) = name.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host.to_owned(), port.parse().ok()?))
}

pub struct Cluster {
    db: Db,
    http: reqwest::Client,
    source: RsyncSource,
    mirror_root: PathBuf,
    retries: u32,
    /// How long a notification is left to be answered before the reconciler sends it again.
    patience: chrono::Duration,
    interval: Duration,
    /// (slave, project, generation) notifications being sent now: never two at once.
    sending: Mutex<HashSet<(String, ProjectId, i64)>>,
    kick: Notify,
    /// Projects with `flip`: how long to wait for every healthy slave to stage a generation.
    publish_timeout: Duration,
    /// Per project, the newest generation released to be published (every healthy slave staged
    /// it, or the timeout passed), and the slaves that had not staged it then.
    released: Mutex<std::collections::HashMap<ProjectId, (i64, Vec<String>)>>,
    /// (project, generation) whose publish timeout is counting.
    timers: Mutex<HashSet<(ProjectId, i64)>>,
    /// (slave, project, generation) publishes being sent now.
    publishing: Mutex<HashSet<(String, ProjectId, i64)>>,
    /// The frozen generations slaves pull.
    snapshots: Snapshots,
}

impl Cluster {
    pub fn new(
        db: Db,
        settings: &Settings,
        mirror_root: PathBuf,
        snapshots: Snapshots,
    ) -> anyhow::Result<Arc<Cluster>> {
        let timeout = Duration::from_secs(settings.notify_timeout_secs);
        let http = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build()?;
        let r = &settings.rsyncd;
        let interval = Duration::from_secs(settings.reconcile_interval_secs);
        Ok(Arc::new(Cluster {
            db,
            http,
            source: RsyncSource {
                host: r.host.clone(),
                port: r.port,
                module: r.module.clone(),
                user: Some(r.user.clone()),
            },
            mirror_root,
            retries: settings.notify_retries,
            patience: chrono::Duration::from_std(interval.max(timeout) * 3)?,
            interval,
            sending: Mutex::new(HashSet::new()),
            kick: Notify::new(),
            publish_timeout: Duration::from_secs(settings.publish_timeout_secs),
            released: Mutex::new(std::collections::HashMap::new()),
            timers: Mutex::new(HashSet::new()),
            publishing: Mutex::new(HashSet::new()),
            snapshots,
        }))
    }

    fn sending(&self) -> MutexGuard<'_, HashSet<(String, ProjectId, i64)>> {
        self.sending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The snapshot slaves are told to pull for a generation, if it has one.
    pub async fn snapshot(&self, project: &str, generation: i64) -> Option<MirrorPath> {
        self.snapshots.of(project, generation).await
    }

    /// Wakes the reconciler now (a slave was added, the master started).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// After a successful master run: notify every slave of the project's current generation,
    /// all at once. Returns without waiting for the slaves.
    pub async fn propagate(self: &Arc<Self>, project: &ProjectRow) -> anyhow::Result<()> {
        for slave in db::slaves::list(&self.db).await? {
            self.spawn_notify(slave, project.clone());
        }
        // The generation just told is the current one, always kept; the older ones a slave is
        // still pulling are on record from their own notifications.
        self.prune_snapshots(Some(&project.id)).await
    }

    /// Removes the snapshots no slave needs: not the current generation, not one a slave was
    /// told of within the reconciler's patience and has not reported. One project, or all (and
    /// those of projects that are no more).
    async fn prune_snapshots(&self, only: Option<&ProjectId>) -> anyhow::Result<()> {
        if !self.snapshots.enabled() {
            return Ok(());
        }
        let since = (chrono::Utc::now() - self.patience).into();
        let mut holds: HashMap<ProjectId, HashSet<i64>> = HashMap::new();
        for (project, generation) in db::propagation::snapshot_holds(&self.db, since, only.map(|p| p.as_str())).await? {
            holds.entry(project).or_default().insert(generation);
        }
        match only {
            Some(project) => self.snapshots.prune(project, holds.get(project).unwrap_or(&HashSet::new())).await,
            None => self.snapshots.prune_all(&holds).await,
        }
    }

    fn spawn_notify(self: &Arc<Self>, slave: SlaveRow, project: ProjectRow) {
        // A slave without its own token (added before they existed) cannot be told: it would not
        // trust us, nor we its report. `list_slaves` shows it with `token_issued: false`.
        if slave.token.is_none() || project.generation < 1 {
            return;
        }
        let key = (slave_name(&slave.hostname, slave.port), project.id.clone(), project.generation);
        if !self.sending().insert(key.clone()) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = me.notify(&slave, &project).await {
                tracing::error!(slave = %key.0, project.id = %key.1, error = format!("{e:#}"), "notification failed");
            }
            me.sending().remove(&key);
        });
    }

    fn request_for(&self, slave: &SlaveRow, project: &ProjectRow) -> anyhow::Result<SyncRequest> {
        let path = std::path::Path::new(&project.dest)
            .strip_prefix(&self.mirror_root)?
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("dest is not UTF-8"))?;
        let path = MirrorPath::parse(path).map_err(|e| anyhow::anyhow!("dest {}: {e}", project.dest))?;
        Ok(SyncRequest {
            slave: slave_name(&slave.hostname, slave.port),
            project: project.id.clone(),
            path,
            options: project.rsync_options.layered(),
            generation: project.generation,
            source: self.source.clone(),
            source_path: None,
            flip: project.flip,
        })
    }

    #[tracing::instrument(skip_all, fields(slave = %slave_name(&slave.hostname, slave.port), project.id = %project.id, generation = project.generation))]
    async fn notify(&self, slave: &SlaveRow, project: &ProjectRow) -> anyhow::Result<()> {
        let Some(token) = &slave.token else { return Ok(()) };
        let mut request = self.request_for(slave, project)?;
        request.source_path = self.snapshot(&project.id, project.generation).await;
        let host = slave.hostname.bracketed();
        let url = format!("http://{host}:{}/sync_from_master/", slave.port);
        let delivery = db::propagation::Delivery {
            project: &project.id,
            host: &slave.hostname,
            port: slave.port,
            generation: project.generation,
        };
        db::propagation::notified(&self.db, &delivery).await?;
        let mut attempt = 0;
        let last_error = loop {
            attempt += 1;
            let error = match self.http.post(&url).bearer_auth(token.expose()).json(&request).send().await {
                Ok(r) if r.status().is_success() => {
                    let state = r.json::<SyncAccepted>().await.map(|a| a.state).ok();
                    db::slaves::seen(&self.db, &slave.hostname, slave.port).await?;
                    if matches!(state, Some(SyncState::Started | SyncState::Running)) {
                        db::propagation::running(&self.db, &delivery).await?;
                    }
                    tracing::debug!(state = ?state, "slave notified");
                    return Ok(());
                }
                Ok(r) if matches!(r.status().as_u16(), 400 | 422) && request.source_path.is_some() => {
                    // A slave from before snapshots refuses the field it does not know: it is
                    // asked at once for the live tree, as before them.
                    tracing::warn!(status = %r.status(), "the slave refused a snapshot's path (a slave before snapshots?): asking it to pull the live tree");
                    request.source_path = None;
                    attempt -= 1;
                    continue;
                }
                Ok(r) if r.status().is_client_error() => {
                    // A refusal (bad token, bad request) will not change by asking again.
                    break format!("the slave refused the request: {}", r.status());
                }
                Ok(r) => format!("the slave answered {}", r.status()),
                Err(e) => format!("the slave did not answer: {e}"),
            };
            if attempt > self.retries {
                break error;
            }
            tokio::time::sleep(backoff(Duration::from_millis(500), attempt)).await;
        };
        tracing::warn!(attempts = attempt, error = %last_error, "slave not notified; the reconciler will try again");
        db::propagation::unreachable(&self.db, &delivery, &last_error).await?;
        Ok(())
    }

    /// A slave's report (already authenticated as `slave`'s own): its rsync has ended.
    pub async fn record_report(
        self: &Arc<Self>,
        slave: &SlaveRow,
        report: &CompletionReport,
    ) -> Result<bool, sqlx::Error> {
        let known = db::propagation::report(&self.db, &slave.hostname, slave.port, report).await?;
        if known {
            db::slaves::seen(&self.db, &slave.hostname, slave.port).await?;
        }
        if known && report.status == mirror_common::api::SyncStatus::Staged {
            db::flips::staged(&self.db, &report.project, &slave.hostname, slave.port, report.generation).await?;
            tokio::spawn(Arc::clone(self).on_staged(report.project.clone(), report.generation));
        }
        Ok(known)
    }

    fn released(&self) -> MutexGuard<'_, std::collections::HashMap<ProjectId, (i64, Vec<String>)>> {
        self.released.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The slaves that had not staged the project's released generation when it was released.
    pub fn laggards(&self, project: &str, generation: i64) -> Vec<String> {
        self.released().get(project).filter(|(g, _)| *g == generation).map(|(_, l)| l.clone()).unwrap_or_default()
    }

    /// A slave staged `generation` of a project with `flip`. Once every healthy slave has staged
    /// it (or `publish_timeout_secs` after the first did), every slave that staged it is told to
    /// publish, all at once; one that stages it later is told as soon as it has.
    /// True while it waits for healthy slaves that have not staged it.
    async fn consider_publish(&self, project_id: &ProjectId, generation: i64) -> anyhow::Result<bool> {
        let Some(project) = db::projects::get(&self.db.read, project_id).await? else { return Ok(false) };
        // An older generation is never published over a newer one.
        if !project.flip || generation != project.generation {
            return Ok(false);
        }
        let slaves: Vec<SlaveRow> =
            db::slaves::list(&self.db).await?.into_iter().filter(|s| s.token.is_some()).collect();
        let staged = db::flips::for_generation(&self.db, project_id, generation).await?;
        let has_staged = |s: &SlaveRow| staged.iter().any(|f| f.hostname == s.hostname && f.port == s.port);
        let released = self.released().get(project_id).is_some_and(|(g, _)| *g >= generation);
        if !released {
            let waiting: Vec<String> = slaves
                .iter()
                .filter(|s| self.healthy(s.last_seen) && !has_staged(s))
                .map(|s| slave_name(&s.hostname, s.port))
                .collect();
            if !waiting.is_empty() {
                tracing::debug!(project.id = %project_id, generation, waiting = ?waiting, "staged; waiting for the others");
                return Ok(true);
            }
            self.released().insert(project_id.clone(), (generation, Vec::new()));
            tracing::info!(project.id = %project_id, generation, "every healthy slave has staged it: publishing");
        }
        let sends = staged.iter().filter(|f| f.flipped_at.is_none()).filter_map(|f| {
            let slave = slaves.iter().find(|s| s.hostname == f.hostname && s.port == f.port)?;
            Some(self.publish_one(slave, &project))
        });
        for failed in futures::future::join_all(sends).await.into_iter().filter_map(Result::err) {
            tracing::warn!(error = format!("{failed:#}"), "publish not done; the reconciler asks again");
        }
        Ok(false)
    }

    /// `publish_timeout_secs` after the first slave staged it: the generation is released with the
    /// slaves that have not staged it marked as laggards.
    async fn release_after_timeout(&self, project_id: &ProjectId, generation: i64) -> anyhow::Result<()> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner()).remove(&(project_id.clone(), generation));
        let staged = db::flips::for_generation(&self.db, project_id, generation).await?;
        let laggards: Vec<String> = db::slaves::list(&self.db)
            .await?
            .into_iter()
            .filter(|s| s.token.is_some() && !staged.iter().any(|f| f.hostname == s.hostname && f.port == s.port))
            .map(|s| slave_name(&s.hostname, s.port))
            .collect();
        {
            let mut released = self.released();
            if released.get(project_id).is_some_and(|(g, _)| *g >= generation) {
                return Ok(());
            }
            tracing::warn!(project.id = %project_id, generation, laggards = ?laggards, "publish timeout: publishing without them");
            released.insert(project_id.clone(), (generation, laggards));
        }
        self.consider_publish(project_id, generation).await.map(|_| ())
    }

    /// A slave staged a generation: publish if the time has come; otherwise the first report of
    /// the generation counts down its publish timeout.
    async fn on_staged(self: Arc<Self>, project: ProjectId, generation: i64) {
        let waiting = match self.consider_publish(&project, generation).await {
            Ok(waiting) => waiting,
            Err(e) => {
                tracing::error!(project.id = %project, error = format!("{e:#}"), "cannot publish");
                return;
            }
        };
        let first =
            waiting && self.timers.lock().unwrap_or_else(|p| p.into_inner()).insert((project.clone(), generation));
        if first {
            tokio::time::sleep(self.publish_timeout).await;
            if let Err(e) = self.release_after_timeout(&project, generation).await {
                tracing::error!(project.id = %project, error = format!("{e:#}"), "cannot publish");
            }
        }
    }

    /// Tells one slave to publish the project's generation, with retries; records its flip.
    async fn publish_one(&self, slave: &SlaveRow, project: &ProjectRow) -> anyhow::Result<()> {
        let Some(token) = &slave.token else { return Ok(()) };
        let name = slave_name(&slave.hostname, slave.port);
        let key = (name.clone(), project.id.clone(), project.generation);
        if !self.publishing.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
            return Ok(());
        }
        let request = self.request_for(slave, project)?;
        let body = mirror_common::api::PublishRequest {
            project: project.id.clone(),
            path: request.path,
            generation: project.generation,
        };
        let url = format!("http://{}:{}/publish/", slave.hostname.bracketed(), slave.port);
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match self.http.post(&url).bearer_auth(token.expose()).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    break r.json::<mirror_common::api::Published>().await.map_err(anyhow::Error::from);
                }
                Ok(r) if r.status().is_client_error() || attempt > self.retries => {
                    break Err(anyhow::anyhow!("{name} answered {} to publish", r.status()));
                }
                Err(e) if attempt > self.retries => break Err(anyhow::anyhow!("{name} did not answer: {e}")),
                _ => tokio::time::sleep(backoff(Duration::from_millis(100), attempt)).await,
            }
        };
        self.publishing.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        let published = result?;
        db::flips::flipped(
            &self.db,
            &project.id,
            &slave.hostname,
            slave.port,
            published.generation,
            published.flipped_at,
        )
        .await?;
        db::slaves::seen(&self.db, &slave.hostname, slave.port).await?;
        tracing::info!(slave = %name, project.id = %project.id, generation = published.generation, "slave published");
        Ok(())
    }

    /// One pass: each slave that is behind on a project, and not already being told, is notified;
    /// each slave's `/status` is read to know it is alive.
    pub async fn reconcile_once(self: &Arc<Self>, node: &crate::cluster::node::Node) -> anyhow::Result<()> {
        let slaves = db::slaves::list(&self.db).await?;
        let behind = db::propagation::behind(&self.db).await?;
        let cutoff = chrono::Utc::now() - self.patience;
        for b in behind {
            let waiting = matches!(b.latest_status, Some(DeliveryStatus::Notified | DeliveryStatus::Running))
                && b.latest_notified_at.is_some_and(|t| t.to_datetime() > cutoff);
            if waiting {
                continue;
            }
            let (Some(slave), Some(project)) = (
                slaves.iter().find(|s| s.hostname == b.hostname && s.port == b.port).cloned(),
                db::projects::get(&self.db.read, &b.project_id).await?,
            ) else {
                continue;
            };
            if !node.runs_here(project.node.as_ref()) {
                continue;
            }
            tracing::info!(slave = %slave_name(&slave.hostname, slave.port), project.id = %project.id, served = b.served, current = project.generation, "slave is behind: notifying");
            self.spawn_notify(slave, project);
        }
        if let Err(e) = self.prune_snapshots(None).await {
            tracing::warn!(error = format!("{e:#}"), "cannot remove old snapshots");
        }
        if !node.is_leader() {
            return Ok(());
        }
        for slave in slaves {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let host = slave.hostname.bracketed();
                let alive = me.http.get(format!("http://{host}:{}/status", slave.port)).send().await;
                if alive.is_ok_and(|r| r.status().is_success()) {
                    let _ = db::slaves::seen(&me.db, &slave.hostname, slave.port).await;
                }
            });
        }
        Ok(())
    }

    /// Runs the reconciler every `reconcile_interval_secs`, or at once when kicked, until `stop`.
    /// Each node reconciles the projects it runs (their generations are served by its rsync
    /// daemon); the leader also checks which slaves are alive.
    pub fn spawn_reconciler(self: &Arc<Self>, mut stop: watch::Receiver<bool>, node: Arc<crate::cluster::node::Node>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.reconcile_once(&node).await {
                    tracing::error!(error = format!("{e:#}"), "reconcile pass failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(me.interval) => {}
                    _ = me.kick.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    /// Whether a slave counts as healthy: seen within three reconcile intervals.
    pub fn healthy(&self, last_seen: Option<Timestamp>) -> bool {
        let cutoff = chrono::Utc::now() - self.patience;
        last_seen.is_some_and(|t| t.to_datetime() > cutoff)
    }
}

impl crate::events::Listener for Arc<Cluster> {
    /// A new generation goes to every slave at once (the notifications run in their own tasks).
    fn changed(&self, change: &crate::events::Change) {
        if let crate::events::Change::NewGeneration(project) = change {
            let (me, project) = (Arc::clone(self), project.clone());
            tokio::spawn(async move {
                if let Err(e) = me.propagate(&project).await {
                    tracing::error!(project.id = %project.id, error = format!("{e:#}"), "cannot notify the slaves");
                }
            });
        }
    }
}
