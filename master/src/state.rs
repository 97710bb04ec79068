//! The state every handler shares: passed with `with_state`, no globals, so tests can run many
//! masters in one process.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::db::Db;
use crate::events::Events;
use crate::read::listing::ListingCache;
use crate::run::Runner;
use crate::run::scheduler::Scheduler;
use crate::service::projects::Projects;
use crate::service::runs::Runs;
use crate::service::slaves::Slaves;
use crate::service::users::Users;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub settings: Settings,
    /// `settings.mirror_root`, created and with symlinks resolved.
    pub mirror_root: PathBuf,
    pub auth: Arc<Authenticator>,
    pub listing: Arc<ListingCache>,
    /// Every committed change is published here (the listing, the scheduler and the propagation
    /// listen).
    pub events: Arc<Events>,
    pub runner: Arc<Runner>,
    pub scheduler: Arc<Scheduler>,
    pub cluster: Arc<Cluster>,
    /// Whether rsync runs are confined (decides which options are accepted).
    pub confine: mirror_runtime::rsync::ConfineStatus,
    /// The projects service: every change to a project goes through it.
    pub projects: Projects,
    /// The runs service: manual runs and the history.
    pub runs: Runs,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<crate::read::metrics::Metrics>,
    pub alerts: Arc<crate::alerts::Alerts>,
    pub feed: Arc<crate::read::feed::Feed>,
    /// Pushes projects' trees to their object-store targets.
    pub pusher: Arc<crate::targets::Pusher>,
    /// The users service.
    pub users: Users,
    /// The slaves service.
    pub slaves: Slaves,
    /// Open `/events` and log-following streams, capped per user and in all.
    pub streams: Arc<crate::http::streams::Streams>,
    /// The managed rsync daemon's health (`None`: not managed here).
    pub rsyncd: Option<crate::cluster::rsyncd::DaemonHealth>,
    /// This master as a node of the cluster (alone on SQLite).
    pub node: Arc<crate::cluster::node::Node>,
    /// Passes requests on to the node that must answer them.
    pub forwarder: reqwest::Client,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
