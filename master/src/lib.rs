//! mirror-master: the REST API that keeps mirrored projects, users and slaves in SQLite, and
//! (with the scheduler) pulls every project from its upstream with rsync.

pub mod alerts;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod http;
pub mod read;
pub mod retry;
pub mod run;
pub mod service;
pub mod state;
pub mod targets;
pub mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mirror_common::api::Role;
use mirror_runtime::rsync::{ConfineStatus, RunAs};
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::cluster::rsyncd::ManagedRsyncd;
use crate::config::Settings;
use crate::events::Events;
use crate::read::listing::ListingCache;
use crate::run::scheduler::Scheduler;
use crate::run::{Runner, RunnerConfig};
use crate::service::projects::Projects;
use crate::service::runs::Runs;
use crate::service::slaves::Slaves;
use crate::service::users::Users;
use crate::state::{AppState, Inner};

/// A master bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    rsyncd: Option<ManagedRsyncd>,
}

impl Application {
    /// Opens the database, prepares the mirror root, bootstraps the first root user when asked,
    /// and binds the listener (port 0 picks a free port; see [`Application::local_addr`]).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let opened = Opened::open(&settings).await?;
        let processes = Processes::start(&settings, &opened).await?;
        if settings.cluster_token.is_some() {
            tracing::warn!(
                "cluster_token is no longer used: each slave has its own token from /add_slave/ or \
                 /rotate_slave_token/ (docs/cluster.md: \"Moving from the shared cluster token\")"
            );
        }
        let parts = Parts::start(&settings, &opened, &processes).await?;
        let listener = opened.listener;
        let rsyncd = processes.rsyncd;
        let health = rsyncd.as_ref().map(|d| d.health.clone());
        let state = parts.state(settings, opened.db, opened.mirror_root, opened.node, processes.confine, health)?;
        bootstrap_root(&state).await?;
        // A bad file is skipped and named in the log; only an unreadable directory stops the start.
        if let Err(e) =
            config::declared::reload(&state, None, "projects_dir at start", config::declared::OnBadFile::Skip).await
        {
            anyhow::bail!("{e}");
        }
        state.pusher.start().await?;
        Ok(Application { listener, state, rsyncd })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes. Then it takes no new request or trigger, finishes the
    /// requests under way, lets running rsyncs end within `shutdown_grace_secs`, and stops the rest.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let app = http::router(self.state.clone());
        tracing::info!(listen = %self.listener.local_addr()?, "mirror-master serving");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        self.state.node.spawn(self.state.runner.clone(), stop_rx.clone());
        self.state.feed.follow(self.state.events.clone(), stop_rx.clone());
        self.state.cluster.spawn_reconciler(stop_rx.clone(), self.state.node.clone());
        self.state.alerts.spawn(stop_rx.clone(), self.state.node.leading());
        let mut server_stop = stop_rx.clone();
        let limits = self.state.settings.limits()?;
        let server = mirror_runtime::server::serve(self.listener, app, limits, async move {
            let _ = server_stop.wait_for(|s| *s).await;
        });
        let state = self.state.clone();
        let mut runs_stop = stop_rx;
        let runs = async move {
            let _ = runs_stop.wait_for(|s| *s).await;
            state.scheduler.shutdown().await;
            state.runner.shutdown(Duration::from_secs(state.settings.shutdown_grace_secs)).await;
        };
        let (served, ()) = tokio::join!(server, runs);
        served?;
        if let Some(daemon) = self.rsyncd {
            daemon.stop().await;
        }
        self.state.db.close().await;
        tracing::info!("mirror-master stopped");
        Ok(())
    }
}

/// What a start opens first: the database, the mirror root, the signing key, the listener, and
/// this node's place among the others.
struct Opened {
    db: db::Db,
    mirror_root: std::path::PathBuf,
    auth: Arc<auth::Authenticator>,
    listener: TcpListener,
    node: Arc<crate::cluster::node::Node>,
}

impl Opened {
    async fn open(settings: &Settings) -> anyhow::Result<Opened> {
        settings.validate()?;
        let addr = settings.listen_addr()?;
        tokio::fs::create_dir_all(&settings.mirror_root)
            .await
            .with_context(|| format!("mirror_root: cannot create {}", settings.mirror_root.display()))?;
        let mirror_root = tokio::fs::canonicalize(&settings.mirror_root)
            .await
            .with_context(|| format!("mirror_root: cannot resolve {}", settings.mirror_root.display()))?;
        let location = settings.database_location().await?;
        let db = db::open(&location).await.with_context(|| format!("database: cannot open {location:?}"))?;
        let key = auth::signing_key(&db, settings.jwt_secret.as_ref().map(|s| s.expose())).await?;
        let auth = auth::Authenticator::new(
            &key,
            Duration::from_secs(settings.token_ttl_secs),
            Duration::from_secs(settings.refresh_token_ttl_secs),
            Duration::from_secs(settings.auth_cache_ttl_secs),
        )
        .await?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("listen: cannot bind {addr}"))?;
        let api_url = match &settings.api_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", listener.local_addr()?),
        };
        // The heartbeat and the lease on connections of their own: requests that fill the pool
        // must not make a busy node look dead (and stop its runs).
        let node = crate::cluster::node::Node::start(
            db.dedicated(2),
            settings.node_name(),
            api_url,
            format!("{}:{}", settings.rsyncd.host, settings.rsyncd.port),
            Duration::from_secs(settings.node_lease_secs),
            Duration::from_secs(settings.node_dead_secs),
        )
        .await
        .context("node: cannot announce this node")?;
        Ok(Opened { db, mirror_root, auth: Arc::new(auth), listener, node })
    }
}

/// How rsync is started here, and the rsync daemon the master manages.
struct Processes {
    confine: ConfineStatus,
    rsync_path: std::path::PathBuf,
    run_as: Option<RunAs>,
    rsyncd: Option<ManagedRsyncd>,
}

impl Processes {
    async fn start(settings: &Settings, opened: &Opened) -> anyhow::Result<Processes> {
        let (db, mirror_root) = (&opened.db, &opened.mirror_root);
        tokio::fs::create_dir_all(&settings.log_dir)
            .await
            .with_context(|| format!("log_dir: cannot create {}", settings.log_dir.display()))?;
        let confine = ConfineStatus::start(settings.confine, settings.confine_helper.clone(), "rsync run")
            .await
            .map_err(|e| anyhow::anyhow!("confine: {e}"))?;
        // Looked up in our PATH once: children get a short fixed PATH of their own.
        let rsync_path = mirror_runtime::rsync::program_path(&settings.rsync_path);
        let run_as = RunAs::configured(settings.run_as.as_deref()).map_err(|e| anyhow::anyhow!("run_as: {e}"))?;
        let rsyncd = if settings.rsyncd.manage {
            let password = cluster::rsyncd::password(db, &settings.rsyncd).await?;
            let launch = cluster::rsyncd::Launcher { rsync_path: &rsync_path, confine: &confine, run_as };
            Some(ManagedRsyncd::start(&settings.rsyncd, &launch, mirror_root, &password).await?)
        } else {
            None
        };
        Ok(Processes { confine, rsync_path, run_as, rsyncd })
    }
}

/// The parts that hear of changes, each subscribed to the events.
struct Parts {
    events: Arc<Events>,
    listing: Arc<ListingCache>,
    cluster: Arc<Cluster>,
    runner: Arc<Runner>,
    scheduler: Arc<Scheduler>,
    auth: Arc<auth::Authenticator>,
    metrics: Arc<crate::read::metrics::Metrics>,
    feed: Arc<crate::read::feed::Feed>,
    alerts: Arc<crate::alerts::Alerts>,
    pusher: Arc<crate::targets::Pusher>,
}

impl Parts {
    async fn start(settings: &Settings, opened: &Opened, processes: &Processes) -> anyhow::Result<Parts> {
        let (db, mirror_root, node) = (&opened.db, &opened.mirror_root, &opened.node);
        // Who hears of changes: the listing cache, the scheduler (subscribed once it is started,
        // below) and the propagation to slaves.
        let events = Arc::new(Events::default());
        let listing = Arc::new(ListingCache::new(settings.stale_after_secs));
        events.subscribe(listing.clone());
        let snapshots = crate::cluster::snapshots::Snapshots::new(mirror_root, settings.snapshots);
        let cluster = Cluster::new(db.clone(), settings, mirror_root.clone(), snapshots.clone())?;
        events.subscribe(Arc::new(cluster.clone()));
        let runner = Runner::new(
            db.clone(),
            RunnerConfig {
                mirror_root: mirror_root.clone(),
                rsync_path: processes.rsync_path.clone(),
                confine: processes.confine.clone(),
                run_as: processes.run_as,
                snapshots: snapshots.clone(),
                ..RunnerConfig::from(settings)
            },
            settings.max_concurrent_runs,
            events.clone(),
        );
        runner.recover().await?;
        events.subscribe(runner.clone());
        let scheduler = Scheduler::start(
            db.clone(),
            runner.clone(),
            node.clone(),
            Duration::from_secs(settings.node_dead_secs + settings.node_lease_secs),
        )
        .await?;
        events.subscribe(scheduler.clone());
        let auth = opened.auth.clone();
        events.subscribe(auth.clone());
        let metrics = Arc::new(crate::read::metrics::Metrics::default());
        events.subscribe(Arc::new(metrics.clone()));
        let feed = crate::read::feed::Feed::start(db.clone(), node.name().to_owned());
        events.subscribe(Arc::new(feed.clone()));
        let alerts = crate::alerts::Alerts::new(db.clone(), settings, cluster.clone()).await?;
        events.subscribe(Arc::new(alerts.clone()));
        let pusher = crate::targets::Pusher::new(db.clone(), settings, events.clone(), snapshots.clone()).await?;
        events.subscribe(pusher.clone());
        Ok(Parts { events, listing, cluster, runner, scheduler, auth, metrics, feed, alerts, pusher })
    }

    /// The services over the parts, and the state every handler shares.
    fn state(
        self,
        settings: Settings,
        db: db::Db,
        mirror_root: std::path::PathBuf,
        node: Arc<crate::cluster::node::Node>,
        confine: ConfineStatus,
        rsyncd: Option<crate::cluster::rsyncd::DaemonHealth>,
    ) -> anyhow::Result<AppState> {
        let Parts { events, listing, cluster, runner, scheduler, auth, metrics, feed, alerts, pusher } = self;
        let users = Users { db: db.clone(), hasher: auth.hashers.clone(), events: events.clone() };
        let slaves = Slaves { db: db.clone(), cluster: cluster.clone(), events: events.clone() };
        let runs = Runs { db: db.clone(), runner: runner.clone(), public_read: settings.public_read };
        let projects = Projects {
            db: db.clone(),
            mirror_root: mirror_root.clone(),
            confined: confine.confined(),
            events: events.clone(),
            credentials: Arc::new(settings.s3_credentials.clone()),
            hooks: Arc::new(settings.hooks.clone()),
            providers: Arc::new(settings.providers.clone()),
            ssh_keys: Arc::new(settings.git_ssh_keys.clone()),
        };
        let settings_streams = (settings.max_streams, settings.max_streams_per_user);
        let state = AppState::new(Inner {
            db,
            settings,
            mirror_root,
            auth,
            listing,
            events,
            runner,
            scheduler,
            cluster,
            confine,
            projects,
            users,
            slaves,
            runs,
            metrics,
            alerts,
            feed,
            pusher,
            streams: http::streams::Streams::new(settings_streams.0, settings_streams.1),
            rsyncd,
            node,
            forwarder: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        });
        Ok(state)
    }
}

/// Creates the first `root` from `MIRROR_ROOT_PASSWORD` when the database has no user at all.
async fn bootstrap_root(state: &AppState) -> anyhow::Result<()> {
    if db::users::count(&state.db).await? > 0 {
        return Ok(());
    }
    match &state.settings.initial_root_password {
        Some(password) => {
            let root = mirror_common::api::Name::parse("root").map_err(|e| anyhow::anyhow!(e))?;
            state
                .users
                .create(&root, password.clone(), Role::Root, &crate::service::history::Meta::default())
                .await
                .map_err(|e| anyhow::anyhow!("MIRROR_ROOT_PASSWORD: {e}"))?;
            tracing::info!("created user 'root' from MIRROR_ROOT_PASSWORD");
        }
        None => tracing::warn!(
            "no API user exists: set MIRROR_ROOT_PASSWORD, or run `mirror-master create-user NAME --role root`"
        ),
    }
    Ok(())
}

/// `mirror-master migrate`: copies the SQLite database `from` into the empty PostgreSQL database
/// `to` (its password from the settings), both brought up to date first.
pub async fn migrate_offline(
    mut settings: Settings,
    from: &std::path::Path,
    to: &str,
) -> anyhow::Result<db::copy::Copied> {
    anyhow::ensure!(tokio::fs::metadata(from).await.is_ok(), "--from: {} does not exist", from.display());
    settings.database = to.into();
    settings
        .database_url()
        .map_err(|e| anyhow::anyhow!("--to: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("--to must be a postgres:// URL"))?;
    let target_location = settings.database_location().await?;
    let source = db::connect(from).await.with_context(|| format!("--from: cannot open {}", from.display()))?;
    let target = db::open(&target_location).await.with_context(|| format!("--to: cannot open {target_location:?}"))?;
    let copied = db::copy::sqlite_to_postgres(&source, &target).await;
    source.close().await;
    target.close().await;
    copied
}

/// Creates a user from the command line (`mirror-master create-user`), without serving.
pub async fn create_user_offline(
    settings: Settings,
    username: &mirror_common::api::Name,
    password: mirror_common::Secret,
    role: Role,
) -> anyhow::Result<()> {
    let location = settings.database_location().await?;
    let db = db::open(&location).await.with_context(|| format!("database: cannot open {location:?}"))?;
    let users = Users { db: db.clone(), hasher: Arc::new(crate::auth::Hashers::new(1)?), events: Default::default() };
    let meta =
        crate::service::history::Meta { comment: Some("mirror-master create-user".into()), ..Default::default() };
    let result = users.create(username, password, role, &meta).await;
    db.close().await;
    result.map_err(|e| anyhow::anyhow!("{e}"))
}
