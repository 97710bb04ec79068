//! The master's settings: embedded defaults, then an optional TOML file, then `MIRROR_MASTER__*`
//! environment variables. Checked when loaded; a bad value stops the start with its name.

use mirror_common::api::{Host, Name};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use mirror_common::secret::Secret;
pub use mirror_runtime::rsync::ConfineMode;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: String,
    /// A SQLite file (the embedded default), or a PostgreSQL server as
    /// `postgres://user@host:port/database` for several master nodes. A URL never holds the
    /// password: it comes from `database_password` (the environment's
    /// `MIRROR_MASTER__DATABASE_PASSWORD`) or `database_password_file`.
    pub database: PathBuf,
    /// This master's name among the nodes that share one database; default: the host name.
    pub node: Option<Name>,
    /// The URL other nodes and clients reach this node's API at; default: `http://` and the
    /// address it listens on.
    pub api_url: Option<String>,
    /// How long a node's leadership lasts without renewal (it renews every second).
    pub node_lease_secs: u64,
    /// A node silent this long is dead: its runs are interrupted (it stops them itself at half
    /// this, when it cannot reach the database).
    pub node_dead_secs: u64,
    /// The PostgreSQL password, from the environment (`MIRROR_MASTER__DATABASE_PASSWORD`).
    pub database_password: Option<Secret>,
    /// A file (mode 0600 or stricter) whose first line is the PostgreSQL password.
    pub database_password_file: Option<PathBuf>,
    pub mirror_root: PathBuf,
    pub public_read: bool,
    /// An enabled project whose last success is older than this is shown as stale.
    pub stale_after_secs: u64,
    /// `/metrics` without a login (its labels name the slaves' hosts).
    pub metrics_public: bool,
    pub token_ttl_secs: u64,
    /// How long a refresh token from a password login lasts (`mirrorctl` renews its token with it
    /// until then); 0: no refresh tokens.
    pub refresh_token_ttl_secs: u64,
    pub auth_cache_ttl_secs: u64,
    pub jwt_secret: Option<Secret>,
    pub log: String,
    /// `text` (the default) or `json`: one JSON object per line.
    pub log_format: mirror_runtime::logging::LogFormat,
    /// The rsync program (a path, or a name looked up in PATH).
    pub rsync_path: PathBuf,
    /// Full per-run output goes to `<log_dir>/<project>/<run>.log`.
    pub log_dir: PathBuf,
    /// Run logs kept per project; older ones are deleted.
    pub log_keep: usize,
    /// The most one run writes to its log file (an upstream or `--debug=ALL4` cannot fill the disk).
    pub log_max_bytes: u64,
    /// Runs at once, over all projects; the rest wait in order.
    pub max_concurrent_runs: usize,
    /// Default per-run timeout (a project's `timeout_secs` overrides it).
    pub run_timeout_secs: u64,
    /// Extra attempts after a connection-type failure (rsync exit 5, 10, 12, 30, 35).
    pub retries: u32,
    /// First retry delay; doubled each time, with jitter.
    pub retry_base_ms: u64,
    /// On SIGTERM, how long running rsyncs may go on before they are stopped.
    pub shutdown_grace_secs: u64,
    /// No longer used: each slave has its own token (README, "Moving from the shared cluster
    /// token"). Still accepted so that an old configuration starts, with a warning.
    pub cluster_token: Option<Secret>,
    /// `auto` (default), `required` or `off`: whether each rsync is confined by Landlock.
    pub confine: ConfineMode,
    /// The `mirror-confine` helper; unset: beside `mirror-master`, then in PATH.
    pub confine_helper: Option<PathBuf>,
    /// With a master started as root: run every rsync (and the managed daemon) as this account.
    pub run_as: Option<String>,
    /// Run records kept per project (the newest); older ones are deleted.
    pub runs_keep: usize,
    /// Open connections at most; at the cap, the longest-idle connection makes room.
    pub max_connections: usize,
    /// A request's headers must arrive within this many seconds.
    pub header_read_timeout_secs: u64,
    /// Reads (GET) answered at once at most; more wait `overload_wait_ms`, then get a 503.
    pub max_reads_in_flight: usize,
    /// Writes answered at once at most (their own room: reads cannot starve them, nor they reads).
    pub max_writes_in_flight: usize,
    /// How long a request waits for room before it is answered 503 with `Retry-After`.
    pub overload_wait_ms: u64,
    /// Streams (`/events`, a followed run log) open at once at most, in all; more get a 429.
    pub max_streams: usize,
    /// Streams open at once at most per user.
    pub max_streams_per_user: usize,
    /// A connection that moves no byte for this many seconds is closed.
    pub idle_timeout_secs: u64,
    /// The rsync daemon slaves pull from.
    pub rsyncd: RsyncdSettings,
    /// How often the reconciler compares each slave's generations with the current ones.
    pub reconcile_interval_secs: u64,
    /// Per-request timeout of a notification to a slave.
    pub notify_timeout_secs: u64,
    /// Extra attempts, with backoff, when a slave does not answer a notification.
    pub notify_retries: u32,
    /// This mirror's name in trace files (`project/trace/<mirror_name>`); default: the host name.
    pub mirror_name: Option<Name>,
    /// A run that succeeds but leaves the tree smaller by more than this percentage than the last
    /// successful run did is marked failed: its generation does not go to the slaves. 100 (the
    /// default) turns the shrink check off; a tree left empty is refused whatever this says.
    pub max_shrink: u8,
    /// A directory of project files (YAML or JSON, one project each), applied at start and on
    /// SIGHUP or `POST /reload`; the projects they declare are changed only there.
    pub projects_dir: Option<PathBuf>,
    /// Webhooks told when a mirror fails or goes stale, or a slave goes down or lags.
    pub alerts: AlertSettings,
    /// A run that would delete more than this (a count, `"10%"` of the tree, or `"off"`) fails
    /// before it changes anything; a project's `max_delete` overrides it. Checked by a dry run
    /// first, only for projects whose options delete.
    pub max_delete: mirror_common::guards::MaxDelete,
    /// Two-stage projects: while the upstream shows `Archive-Update-in-Progress-*` after stage 1,
    /// stage 1 is run again every `upstream_lock_retry_secs`, for at most
    /// `upstream_lock_wait_secs`; then the run fails (ftpsync waits the same way).
    pub upstream_lock_retry_secs: u64,
    pub upstream_lock_wait_secs: u64,
    /// Projects with `flip`: how long after the first slave has staged a generation the master
    /// waits for the other healthy ones before it tells those that have to publish (the others
    /// publish as soon as they have staged it).
    pub publish_timeout_secs: u64,
    /// After each successful run, freeze the tree as hard links under
    /// `<mirror_root>/.mirror-sync-snap/<project>/<generation>` and have slaves pull that: a
    /// slave still pulling a generation when the next run starts gets that generation whole.
    pub snapshots: bool,
    /// How projects' object-store targets are pushed.
    pub targets: TargetSettings,
    /// Keys that targets sign their requests with, each named; a project's target names one.
    pub s3_credentials: Vec<S3Credentials>,
    /// Creates a `root` user at first start when there is no user. Set from `MIRROR_ROOT_PASSWORD`.
    #[serde(skip)]
    pub initial_root_password: Option<Secret>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:5000".into(),
            database: "mirror-master.db".into(),
            database_password: None,
            database_password_file: None,
            node: None,
            api_url: None,
            node_lease_secs: 5,
            node_dead_secs: 10,
            mirror_root: "mirror".into(),
            public_read: true,
            stale_after_secs: 2 * 86_400,
            metrics_public: false,
            token_ttl_secs: 3600,
            refresh_token_ttl_secs: 30 * 86_400,
            auth_cache_ttl_secs: 60,
            jwt_secret: None,
            log: "info".into(),
            log_format: Default::default(),
            rsync_path: "rsync".into(),
            log_dir: "logs".into(),
            log_keep: 20,
            log_max_bytes: 256 * 1024 * 1024,
            max_concurrent_runs: 8,
            run_timeout_secs: 6 * 3600,
            retries: 2,
            retry_base_ms: 5000,
            shutdown_grace_secs: 30,
            cluster_token: None,
            confine: ConfineMode::Auto,
            confine_helper: None,
            run_as: None,
            runs_keep: 1000,
            max_connections: 4096,
            header_read_timeout_secs: 10,
            max_reads_in_flight: 64,
            max_writes_in_flight: 32,
            overload_wait_ms: 50,
            max_streams: 256,
            max_streams_per_user: 16,
            idle_timeout_secs: 60,
            rsyncd: RsyncdSettings::default(),
            reconcile_interval_secs: 30,
            notify_timeout_secs: 10,
            notify_retries: 3,
            alerts: AlertSettings::default(),
            targets: TargetSettings::default(),
            s3_credentials: Vec::new(),
            max_delete: mirror_common::guards::MaxDelete::Percent(50),
            upstream_lock_retry_secs: 60,
            upstream_lock_wait_secs: 3600,
            publish_timeout_secs: 300,
            snapshots: true,
            projects_dir: None,
            max_shrink: 100,
            mirror_name: None,
            initial_root_password: None,
        }
    }
}

/// `[alerts]`, with one `[[alerts.webhook]]` table per receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    pub webhook: Vec<WebhookSettings>,
    /// How often staleness, slave health and lag are checked (a run's end is checked at once).
    pub check_interval_secs: u64,
    /// A slave that serves an older generation of a project this long after the project's
    /// success is lagging.
    pub lag_after_secs: u64,
    /// First retry of an undelivered event; doubled each time, up to `retry_max_secs`.
    pub retry_base_ms: u64,
    pub retry_max_secs: u64,
    /// An event not delivered within this long is given up (and shown so in `GET /alerts`).
    pub give_up_after_secs: u64,
    /// Per-request timeout of a delivery.
    pub timeout_secs: u64,
    /// Deliveries are kept (for `GET /alerts`) this many days.
    pub keep_days: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook: Vec::new(),
            check_interval_secs: 30,
            lag_after_secs: 3600,
            retry_base_ms: 1000,
            retry_max_secs: 300,
            give_up_after_secs: 7 * 86_400,
            timeout_secs: 10,
            keep_days: 30,
        }
    }
}

/// `[targets]`: how pushes to object stores behave.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSettings {
    /// Requests in flight per push.
    pub max_parallel: usize,
    /// Retries of a failed request (connection errors, 5xx, throttling), with exponential backoff.
    pub retries: usize,
    /// First backoff; doubled each retry up to 15 s.
    pub retry_base_ms: u64,
    /// A request (one part of a large file) that takes longer fails and is retried.
    pub request_timeout_secs: u64,
    /// Files this large or larger go up in parts of `part_size_bytes`.
    pub multipart_threshold_bytes: u64,
    pub part_size_bytes: u64,
    /// A watched tree's changes are gathered for this long before they are pushed.
    pub watch_debounce_ms: u64,
    /// Pushes kept per project and target (the newest).
    pub pushes_keep: usize,
    /// Whether a target without `target_prefix` may have objects deleted (those whose file is
    /// gone). Off by default: such a push lists the whole bucket, and would delete what others
    /// keep there; it keeps them and says how many.
    pub delete_at_bucket_root: bool,
}

impl Default for TargetSettings {
    fn default() -> Self {
        TargetSettings {
            max_parallel: 16,
            retries: 5,
            retry_base_ms: 100,
            request_timeout_secs: 300,
            // A smaller file is read whole into memory: with max_parallel uploads, at most
            // 16 x 16 MiB; a larger one keeps two parts of 8 MiB in flight.
            multipart_threshold_bytes: 16 * 1024 * 1024,
            part_size_bytes: 8 * 1024 * 1024,
            watch_debounce_ms: 200,
            pushes_keep: 200,
            delete_at_bucket_root: false,
        }
    }
}

/// One `[[s3_credentials]]` entry: an access key and its secret, from this file, the master's
/// environment, or a file only its owner can read. Never stored in the database or shown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    pub name: Name,
    /// The access key id (not a secret by itself), or `access_key_id_env`.
    pub access_key_id: Option<String>,
    /// The variable of the master's environment that holds the access key id.
    pub access_key_id_env: Option<String>,
    /// The variable of the master's environment that holds the secret access key.
    pub secret_access_key_env: Option<String>,
    /// A file (mode 0600 or stricter) whose first line is the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// The endpoints (`https://s3.eu-west-1.amazonaws.com`) these credentials may be used with:
    /// a target that pairs them with any other is refused. Only this file names where the master
    /// sends signed requests and the mirror's files, never an API user.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The buckets they may be used with; empty: any bucket of those endpoints.
    #[serde(default)]
    pub buckets: Vec<String>,
}

impl S3Credentials {
    /// Whether a target may use these credentials with `endpoint` and `bucket`: `Err` names the
    /// field at fault (`endpoint` or `bucket`) and why.
    pub fn allows(&self, endpoint: &str, bucket: &str) -> Result<(), (&'static str, String)> {
        let norm = |e: &str| e.trim_end_matches('/').to_ascii_lowercase();
        if !self.endpoints.iter().any(|e| norm(e) == norm(endpoint)) {
            return Err((
                "endpoint",
                format!(
                    "the credentials '{}' may be used only with the endpoints the master's configuration lists for them: {}",
                    self.name,
                    self.endpoints.join(", ")
                ),
            ));
        }
        if !self.buckets.is_empty() && !self.buckets.iter().any(|b| b == bucket) {
            return Err((
                "bucket",
                format!(
                    "the credentials '{}' may be used only with the buckets {}",
                    self.name,
                    self.buckets.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// What a webhook may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    RunFailed,
    RunRecovered,
    Stale,
    FreshAgain,
    SlaveDown,
    SlaveBack,
    SlaveLagging,
    /// A push to an object-store target failed (after succeeding, or as its first result).
    PushFailed,
    PushRecovered,
}

impl AlertEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::RunFailed => "run_failed",
            AlertEvent::RunRecovered => "run_recovered",
            AlertEvent::Stale => "stale",
            AlertEvent::FreshAgain => "fresh_again",
            AlertEvent::SlaveDown => "slave_down",
            AlertEvent::SlaveBack => "slave_back",
            AlertEvent::SlaveLagging => "slave_lagging",
            AlertEvent::PushFailed => "push_failed",
            AlertEvent::PushRecovered => "push_recovered",
        }
    }
}

/// One receiver of alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// How the webhook is named in logs and `GET /alerts` (its URL may hold a secret).
    pub name: Name,
    /// `http://` or `https://`; never printed.
    pub url: Secret,
    /// The events it wants; empty: all of them.
    #[serde(default)]
    pub events: Vec<AlertEvent>,
    /// Signs each body: `X-Mirror-Sync-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub secret: Option<Secret>,
    /// The signing secret from a file readable by its owner only (its first line).
    pub secret_file: Option<PathBuf>,
}

/// The master's rsync daemon: one read-only module over the mirror root, which slaves pull from.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RsyncdSettings {
    /// true: the master writes rsyncd.conf and a 0600 secrets file under `dir`, and runs
    /// `rsync --daemon --no-detach` as its child. false: an rsync daemon is run by other means.
    pub manage: bool,
    /// How slaves reach the daemon (and, when managed, the address it listens on).
    pub host: Host,
    pub port: u16,
    pub module: Name,
    pub user: Name,
    /// The module's password. Unset with `manage`: generated once, kept in the database, and
    /// written to `<dir>/slave.password` (0600) for the slaves' `rsync_password_file`.
    pub password: Option<Secret>,
    pub dir: PathBuf,
    /// While the daemon cannot run (rsync missing, the port taken), it is tried again after a
    /// backoff of at most this many seconds.
    pub restart_max_secs: u64,
}

impl Default for RsyncdSettings {
    fn default() -> Self {
        RsyncdSettings {
            manage: true,
            host: Host::from_static("127.0.0.1"),
            port: 8730,
            module: Name::from_static("mirror"),
            user: Name::from_static("mirror"),
            password: None,
            dir: "rsyncd".into(),
            restart_max_secs: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Settings that must not sit in a file others can read.
const SECRET_KEYS: [&str; 3] = ["jwt_secret", "cluster_token", "rsyncd.password"];

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

impl Settings {
    /// Loads defaults, then `file` if given, then the environment (`MIRROR_MASTER__LISTEN`, ...).
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            let source = config::File::from(f).format(config::FileFormat::Toml).required(true);
            let alone = config::Config::builder().add_source(source.clone()).build()?;
            let mut secrets: Vec<&str> =
                SECRET_KEYS.iter().copied().filter(|k| alone.get_string(k).is_ok_and(|v| !v.is_empty())).collect();
            // A webhook's URL (a chat service's holds its key) and its signing secret.
            if alone.get_array("alerts.webhook").is_ok_and(|hooks| !hooks.is_empty()) {
                secrets.push("alerts.webhook");
            }
            mirror_runtime::fs::refuse_secrets_in_shared_file(f, &secrets, "MIRROR_MASTER")
                .map_err(|m| invalid("config", m))?;
            builder = builder.add_source(source);
        }
        builder = builder.add_source(
            config::Environment::with_prefix("MIRROR_MASTER").prefix_separator("__").separator("__").try_parsing(true),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// `max_connections`, `header_read_timeout_secs`, `idle_timeout_secs`, checked.
    pub fn limits(&self) -> Result<mirror_runtime::server::Limits, ConfigError> {
        mirror_runtime::server::Limits::new(self.max_connections, self.header_read_timeout_secs, self.idle_timeout_secs)
            .map_err(|(key, m)| invalid(key, m))
    }

    /// The PostgreSQL URL `database` names, checked (`None`: a SQLite file). A URL with a
    /// password in it is refused: a URL is shown in logs, process lists and error messages.
    pub fn database_url(&self) -> Result<Option<&str>, ConfigError> {
        let Some(text) = self.database.to_str() else { return Ok(None) };
        let Some(rest) = text.strip_prefix("postgres://").or_else(|| text.strip_prefix("postgresql://")) else {
            if self.database_password.is_some() || self.database_password_file.is_some() {
                return Err(invalid(
                    "database_password",
                    "is for a PostgreSQL database; `database` names a SQLite file",
                ));
            }
            return Ok(None);
        };
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if let Some((user_info, _)) = authority.rsplit_once('@')
            && user_info.contains(':')
        {
            return Err(invalid(
                "database",
                "must not hold a password: give it in MIRROR_MASTER__DATABASE_PASSWORD or database_password_file",
            ));
        }
        if self.database_password.is_some() && self.database_password_file.is_some() {
            return Err(invalid(
                "database_password_file",
                "give database_password or database_password_file, not both",
            ));
        }
        text.parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(|e| invalid("database", format!("is not a PostgreSQL URL: {e}")))?;
        Ok(Some(text))
    }

    /// This node's name: `node`, or the host name.
    pub fn node_name(&self) -> String {
        self.node.as_ref().map_or_else(crate::trace::host_name, |n| n.to_string())
    }

    /// Where the database is, with the PostgreSQL password read (from the environment or its file).
    pub async fn database_location(&self) -> anyhow::Result<crate::db::Location> {
        let Some(url) = self.database_url()? else {
            return Ok(crate::db::Location::Sqlite(self.database.clone()));
        };
        let mut options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let password = match (&self.database_password, &self.database_password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(
                mirror_runtime::fs::read_secret_file(path)
                    .await
                    .map_err(|m| anyhow::anyhow!("database_password_file: {m}"))?,
            ),
            (None, None) => None,
        };
        if let Some(p) = password {
            options = options.password(p.expose());
        }
        Ok(crate::db::Location::Postgres(Box::new(options.application_name("mirror-master"))))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| invalid("listen", format!("'{}' is not an address:port such as 127.0.0.1:5000", self.listen)))
    }

    /// Checks every value that can be checked without touching the file system.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.database.as_os_str().is_empty() {
            return Err(invalid("database", "must not be empty"));
        }
        self.database_url()?;
        if !(3..=300).contains(&self.node_lease_secs) {
            return Err(invalid("node_lease_secs", "must be between 3 and 300"));
        }
        if self.node_dead_secs < 2 * self.node_lease_secs || self.node_dead_secs > 3600 {
            return Err(invalid("node_dead_secs", "must be at least twice node_lease_secs, and at most 3600"));
        }
        if let Some(url) = &self.api_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("api_url", "must be an http:// or https:// URL"));
        }
        if self.mirror_root.as_os_str().is_empty() {
            return Err(invalid("mirror_root", "must not be empty"));
        }
        if self.refresh_token_ttl_secs > 366 * 86_400 {
            return Err(invalid("refresh_token_ttl_secs", "must be at most 31622400 (a year)"));
        }
        if !(1..=30 * 24 * 3600).contains(&self.token_ttl_secs) {
            return Err(invalid("token_ttl_secs", "must be between 1 and 2592000 (30 days)"));
        }
        if self.auth_cache_ttl_secs > 3600 {
            return Err(invalid("auth_cache_ttl_secs", "must be at most 3600"));
        }
        if let Some(s) = &self.jwt_secret
            && s.expose().len() < 32
        {
            return Err(invalid("jwt_secret", "must be at least 32 characters"));
        }
        if self.rsync_path.as_os_str().is_empty() {
            return Err(invalid("rsync_path", "must not be empty"));
        }
        if self.log_dir.as_os_str().is_empty() {
            return Err(invalid("log_dir", "must not be empty"));
        }
        if self.log_keep == 0 {
            return Err(invalid("log_keep", "must be at least 1"));
        }
        if self.log_max_bytes < 64 * 1024 {
            return Err(invalid("log_max_bytes", "must be at least 65536"));
        }
        if !(1..=1_000_000).contains(&self.runs_keep) {
            return Err(invalid("runs_keep", "must be between 1 and 1000000"));
        }
        self.limits()?;
        if !(1..=100_000).contains(&self.max_reads_in_flight) {
            return Err(invalid("max_reads_in_flight", "must be between 1 and 100000"));
        }
        if !(1..=100_000).contains(&self.max_streams) {
            return Err(invalid("max_streams", "must be between 1 and 100000"));
        }
        if !(1..=100_000).contains(&self.max_streams_per_user) {
            return Err(invalid("max_streams_per_user", "must be between 1 and 100000"));
        }
        if !(1..=100_000).contains(&self.max_writes_in_flight) {
            return Err(invalid("max_writes_in_flight", "must be between 1 and 100000"));
        }
        if self.overload_wait_ms > 60_000 {
            return Err(invalid("overload_wait_ms", "must be at most 60000"));
        }
        if self.run_as.as_deref().is_some_and(|u| u.is_empty() || u.starts_with('-')) {
            return Err(invalid("run_as", "must be a user name or uid"));
        }
        if !(1..=4096).contains(&self.max_concurrent_runs) {
            return Err(invalid("max_concurrent_runs", "must be between 1 and 4096"));
        }
        if !(1..=7 * 24 * 3600).contains(&self.run_timeout_secs) {
            return Err(invalid("run_timeout_secs", "must be between 1 and 604800 (a week)"));
        }
        if self.retries > 20 {
            return Err(invalid("retries", "must be at most 20"));
        }
        if self.retry_base_ms > 600_000 {
            return Err(invalid("retry_base_ms", "must be at most 600000"));
        }
        if self.shutdown_grace_secs > 3600 {
            return Err(invalid("shutdown_grace_secs", "must be at most 3600"));
        }
        if !(60..=366 * 86_400).contains(&self.stale_after_secs) {
            return Err(invalid("stale_after_secs", "must be between 60 and 31622400 (a year)"));
        }
        let r = &self.rsyncd;
        if r.port == 0 {
            return Err(invalid("rsyncd.port", "must be a port number"));
        }
        if !(1..=3600).contains(&r.restart_max_secs) {
            return Err(invalid("rsyncd.restart_max_secs", "must be between 1 and 3600"));
        }
        if r.password.as_ref().is_some_and(|p| p.expose().is_empty() || p.expose().contains(['\n', ':'])) {
            return Err(invalid("rsyncd.password", "must be non-empty, without ':' or a newline"));
        }
        if !(1..=3600).contains(&self.reconcile_interval_secs) {
            return Err(invalid("reconcile_interval_secs", "must be between 1 and 3600"));
        }
        if !(1..=600).contains(&self.notify_timeout_secs) {
            return Err(invalid("notify_timeout_secs", "must be between 1 and 600"));
        }
        if self.notify_retries > 20 {
            return Err(invalid("notify_retries", "must be at most 20"));
        }
        if self.max_shrink > 100 {
            return Err(invalid("max_shrink", "must be a percentage, 0 to 100"));
        }
        self.alerts.validate()?;
        self.validate_targets()?;
        if !(1..=3600).contains(&self.upstream_lock_retry_secs) || self.upstream_lock_wait_secs > 7 * 86_400 {
            return Err(invalid(
                "upstream_lock_retry_secs",
                "retry 1 to 3600 s, upstream_lock_wait_secs at most 604800 (a week)",
            ));
        }
        if !(1..=86_400).contains(&self.publish_timeout_secs) {
            return Err(invalid("publish_timeout_secs", "must be between 1 and 86400"));
        }
        if self.log.parse::<tracing_subscriber::EnvFilter>().is_err() {
            return Err(invalid(
                "log",
                format!("'{}' is not a log filter such as info or mirror_master=debug", self.log),
            ));
        }
        Ok(())
    }
}

impl Settings {
    fn validate_targets(&self) -> Result<(), ConfigError> {
        let t = &self.targets;
        if !(1..=256).contains(&t.max_parallel) {
            return Err(invalid("targets.max_parallel", "must be between 1 and 256"));
        }
        if t.retries > 20 || !(1..=60_000).contains(&t.retry_base_ms) {
            return Err(invalid("targets.retries", "retries at most 20, retry_base_ms 1-60000"));
        }
        if !(1..=86_400).contains(&t.request_timeout_secs) {
            return Err(invalid("targets.request_timeout_secs", "must be between 1 and 86400"));
        }
        // S3 wants parts of 5 MiB at least (but the last) and at most 10,000 of them.
        if !(5 << 20..=5 << 30).contains(&t.part_size_bytes) || t.multipart_threshold_bytes < t.part_size_bytes {
            return Err(invalid(
                "targets.part_size_bytes",
                "must be between 5 MiB and 5 GiB, and multipart_threshold_bytes at least as large",
            ));
        }
        if !(1..=60_000).contains(&t.watch_debounce_ms) {
            return Err(invalid("targets.watch_debounce_ms", "must be between 1 and 60000"));
        }
        if !(1..=100_000).contains(&t.pushes_keep) {
            return Err(invalid("targets.pushes_keep", "must be between 1 and 100000"));
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.s3_credentials {
            if !names.insert(c.name.as_str()) {
                return Err(invalid("s3_credentials.name", format!("'{}' is used twice", c.name)));
            }
            if c.access_key_id.is_some() == c.access_key_id_env.is_some() {
                return Err(invalid(
                    "s3_credentials.access_key_id",
                    format!("of '{}': give access_key_id or access_key_id_env", c.name),
                ));
            }
            if c.endpoints.is_empty() {
                return Err(invalid(
                    "s3_credentials.endpoints",
                    format!(
                        "of '{}': list the endpoints these credentials may be used with \
                         (endpoints = [\"https://...\"]); see docs/targets.md",
                        c.name
                    ),
                ));
            }
            for e in &c.endpoints {
                if mirror_common::targets::check_endpoint(e).is_err() {
                    return Err(invalid(
                        "s3_credentials.endpoints",
                        format!("of '{}': '{e}' is not an http:// or https:// URL without credentials", c.name),
                    ));
                }
            }
            if c.secret_access_key_env.is_some() == c.secret_access_key_file.is_some() {
                return Err(invalid(
                    "s3_credentials.secret_access_key_file",
                    format!("of '{}': give secret_access_key_file or secret_access_key_env", c.name),
                ));
            }
        }
        Ok(())
    }
}

impl AlertSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.check_interval_secs) {
            return Err(invalid("alerts.check_interval_secs", "must be between 1 and 3600"));
        }
        if !(1..=366 * 86_400).contains(&self.lag_after_secs) {
            return Err(invalid("alerts.lag_after_secs", "must be between 1 and 31622400 (a year)"));
        }
        if !(1..=600_000).contains(&self.retry_base_ms) || !(1..=86_400).contains(&self.retry_max_secs) {
            return Err(invalid("alerts.retry_base_ms", "retry_base_ms 1-600000 and retry_max_secs 1-86400"));
        }
        if !(60..=366 * 86_400).contains(&self.give_up_after_secs) {
            return Err(invalid("alerts.give_up_after_secs", "must be between 60 and 31622400 (a year)"));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(invalid("alerts.timeout_secs", "must be between 1 and 300"));
        }
        if !(1..=3660).contains(&self.keep_days) {
            return Err(invalid("alerts.keep_days", "must be between 1 and 3660"));
        }
        let mut names = std::collections::HashSet::new();
        for w in &self.webhook {
            if !names.insert(w.name.as_str()) {
                return Err(invalid("alerts.webhook.name", format!("'{}' is used twice", w.name)));
            }
            let url = w.url.expose();
            let parsed = reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
            if parsed.is_none_or(|u| u.host_str().is_none()) || url.len() > 4096 {
                return Err(invalid(
                    "alerts.webhook.url",
                    format!("of '{}' must be an http:// or https:// URL", w.name),
                ));
            }
            if w.secret.is_some() && w.secret_file.is_some() {
                return Err(invalid("alerts.webhook.secret", format!("of '{}': give secret or secret_file", w.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_configuration_loads_and_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/master.toml");
        let s = Settings::load(Some(&path)).unwrap();
        s.validate().unwrap();
        assert_eq!(s.refresh_token_ttl_secs, 30 * 86_400);
        assert_eq!(s.alerts.check_interval_secs, 30);
    }

    #[test]
    fn defaults_are_valid_and_secrets_do_not_print() {
        let mut s = Settings::default();
        assert!(s.validate().is_ok());
        s.jwt_secret = Some(Secret::new("x".repeat(40)));
        assert!(!format!("{s:?}").contains("xxxx"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let s = Settings { listen: "nowhere".into(), ..Settings::default() };
        assert!(s.validate().unwrap_err().to_string().contains("listen"));
        let s = Settings { token_ttl_secs: 0, ..Settings::default() };
        assert!(s.validate().unwrap_err().to_string().contains("token_ttl_secs"));
        let s = Settings { jwt_secret: Some(Secret::new("short")), ..Settings::default() };
        assert!(s.validate().unwrap_err().to_string().contains("jwt_secret"));
        let hook = |url: &str| WebhookSettings {
            name: Name::from_static("chat"),
            url: Secret::new(url),
            events: vec![],
            secret: None,
            secret_file: None,
        };
        let mut s = Settings::default();
        s.alerts.webhook = vec![hook("file:///etc/passwd")];
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("alerts.webhook.url") && !e.contains("passwd"), "{e}");
        s.alerts.webhook = vec![hook("https://chat.example/hook/KEY"), hook("https://other.example/")];
        assert!(s.validate().unwrap_err().to_string().contains("used twice"));
    }
}
