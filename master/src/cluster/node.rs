//! This master as one node of several on one database: it says it is alive every second, and
//! leads when the lease is free.
//!
//! What must happen once (deciding which scheduled runs are due, the reconciler, alerts) happens
//! on the leader; runs of projects that any node may run go to it. The lease is a row with an
//! expiry and a term (see `db::nodes`): a leader renews it every [`BEAT`]; when it dies, another
//! node takes the lease once it has expired, within `lease + BEAT`.
//!
//! A node that cannot reach the database cannot renew: it stops leading, and stops its runs, once
//! its last successful heartbeat is `lease - 2 s` old, before its lease can expire and another
//! node take the lead (and the runs). Other nodes declare it dead (and its runs interrupted) at
//! `dead_after`. So two nodes never write one tree. This needs the nodes' clocks within a second
//! of each other (NTP).
//!
//! On SQLite the master is the only node: it always leads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use mirror_common::time::Timestamp;
use tokio::sync::watch;

use crate::db::{self, Db, nodes::NodeRow};
use mirror_common::placement::Placement;

/// How often a node says it is alive and renews (or tries to take) the lease.
pub const BEAT: Duration = Duration::from_secs(1);

/// What leading looks like from inside: `Some(term)` while this node leads.
pub type Leading = watch::Receiver<Option<i64>>;

pub struct Node {
    pub row: NodeRow,
    db: Db,
    lease: Duration,
    dead_after: Duration,
    leading: watch::Sender<Option<i64>>,
    /// When the last heartbeat was written.
    last_beat: std::sync::Mutex<Instant>,
    /// The node's runs were stopped because it lost the database (cleared by a heartbeat).
    fenced: AtomicBool,
    /// The nodes heard of within `dead_after`, and the leader, as of the last beat.
    view: std::sync::RwLock<View>,
}

#[derive(Default, Clone)]
struct View {
    alive: Vec<String>,
    leader: Option<String>,
}

/// What a node must do when it cannot prove it is alive: stop every run it has.
pub trait Fence: Send + Sync {
    fn fence(&self);
}

impl Node {
    /// A node named `name`; its first heartbeat and lease attempt are made here, so that a single
    /// master leads from its first request on.
    pub async fn start(
        db: Db,
        name: String,
        api_url: String,
        rsyncd: String,
        lease: Duration,
        dead_after: Duration,
    ) -> anyhow::Result<Arc<Node>> {
        let now = Timestamp::now();
        let row = NodeRow { name, api_url, rsyncd, started_at: now, last_heartbeat: now };
        let (leading, _) = watch::channel(None);
        let node = Arc::new(Node {
            row,
            db,
            lease,
            dead_after,
            leading,
            last_beat: std::sync::Mutex::new(Instant::now()),
            fenced: AtomicBool::new(false),
            view: Default::default(),
        });
        node.beat().await?;
        Ok(node)
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    pub fn is_leader(&self) -> bool {
        self.leading.borrow().is_some()
    }

    /// Watches leadership (`Some(term)` while leading).
    pub fn leading(&self) -> Leading {
        self.leading.subscribe()
    }

    /// One heartbeat and one lease attempt.
    async fn beat(&self) -> anyhow::Result<()> {
        let now = Timestamp::now();
        db::nodes::heartbeat(&self.db, &self.row, now).await?;
        *self.last_beat.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.fenced.store(false, Ordering::SeqCst);
        let until = Timestamp::from(Utc::now() + chrono::Duration::from_std(self.lease)?);
        let term = db::nodes::try_lead(&self.db, &self.row.name, now, until).await?;
        self.refresh_view().await?;
        let before = *self.leading.borrow();
        if before != term {
            match term {
                Some(t) => tracing::info!(node = %self.row.name, term = t, "this node leads"),
                None => tracing::info!(node = %self.row.name, "this node no longer leads"),
            }
            self.leading.send_replace(term);
        }
        Ok(())
    }

    /// Reads which nodes are alive and which one leads.
    pub async fn refresh_view(&self) -> anyhow::Result<()> {
        let cutoff = Utc::now() - chrono::Duration::from_std(self.dead_after)?;
        let alive = db::nodes::list(&self.db)
            .await?
            .into_iter()
            .filter(|n| n.last_heartbeat.to_datetime() > cutoff)
            .map(|n| n.name)
            .collect();
        let now = Timestamp::now().to_text();
        let leader =
            db::nodes::lease(&self.db).await?.filter(|l| !l.node.is_empty() && l.expires_at >= now).map(|l| l.node);
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = View { alive, leader };
        Ok(())
    }

    /// The node that runs a project placed so (`None`: any node, so the leader), if one can.
    pub fn runner_of(&self, placement: Option<&Placement>) -> Option<String> {
        match placement {
            None if self.is_leader() => Some(self.row.name.clone()),
            None => self.view.read().unwrap_or_else(|p| p.into_inner()).leader.clone(),
            Some(p) => {
                let view = self.view.read().unwrap_or_else(|p| p.into_inner());
                p.runner(&view.alive).map(|n| n.to_string())
            }
        }
    }

    /// Whether this node runs a project placed so.
    pub fn runs_here(&self, placement: Option<&Placement>) -> bool {
        if self.fenced() {
            return false;
        }
        match placement {
            None => self.is_leader(),
            Some(_) => self.runner_of(placement).as_deref() == Some(self.row.name.as_str()),
        }
    }

    /// The nodes alive as of the last beat.
    pub fn alive(&self) -> Vec<String> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).alive.clone()
    }

    /// Beats every [`BEAT`] until `stop`; fences the node's runs through `fence` when the database
    /// has been out of reach for [`Node::fence_after`]; as leader, declares dead the nodes silent for
    /// `dead_after` and ends their runs as interrupted.
    pub fn spawn(self: &Arc<Self>, fence: Arc<dyn Fence>, mut stop: watch::Receiver<bool>) {
        let node = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                // A beat that hangs (the database cut off) must not hold the fence back.
                match tokio::time::timeout(node.fence_after(), node.beat()).await {
                    Ok(Ok(())) => {
                        if node.is_leader()
                            && let Err(e) = node.sweep_dead().await
                        {
                            tracing::warn!(error = format!("{e:#}"), "cannot look for dead nodes");
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "heartbeat failed"),
                    Err(_) => tracing::warn!("heartbeat timed out"),
                }
                node.check_fence(fence.as_ref());
            }
            if node.is_leader() {
                let _ = db::nodes::resign(&node.db, &node.row.name).await;
                node.leading.send_replace(None);
            }
        });
    }

    /// How long without a heartbeat a node goes on: two beats short of its lease.
    fn fence_after(&self) -> Duration {
        self.lease.saturating_sub(2 * BEAT).max(BEAT)
    }

    /// Without a heartbeat for [`Node::fence_after`]: not the leader, and no run goes on here.
    fn check_fence(&self, fence: &dyn Fence) {
        let silent = self.last_beat.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if silent < self.fence_after() {
            return;
        }
        if self.leading.borrow().is_some() {
            tracing::error!(node = %self.row.name, "lost the database: no longer leading");
            self.leading.send_replace(None);
        }
        if !self.fenced.swap(true, Ordering::SeqCst) {
            tracing::error!(
                node = %self.row.name, silent_secs = silent.as_secs(),
                "lost the database: stopping this node's runs before another node may take them"
            );
            fence.fence();
        }
    }

    /// Whether this node has lost the database long enough to have stopped its runs.
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    async fn sweep_dead(&self) -> anyhow::Result<()> {
        let before = Timestamp::from(Utc::now() - chrono::Duration::from_std(self.dead_after)?);
        for (run, node) in db::nodes::interrupt_runs_of_dead(&self.db, &self.row.name, before).await? {
            tracing::warn!(run.id = run, node = %node, "run interrupted: its node stopped answering");
        }
        Ok(())
    }
}
