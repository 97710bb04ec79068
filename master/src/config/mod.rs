//! The master's settings: embedded defaults, then an optional TOML file, then `MIRROR_MASTER__*`
//! environment variables. Checked when loaded; a bad value stops the start with its name.
//! Beside them: `declared` (projects declared as files in `projects_dir`), `document` (reading a
//! YAML or JSON document within its limits) and `paths` (where a project's files may go).

pub mod declared;
pub mod document;
pub mod paths;
mod sections;
mod validate;

pub use sections::{
    AlertEvent, AlertSettings, GitSshKey, HookSettings, ProviderSettings, RsyncdSettings, S3Credentials,
    TargetSettings, WebhookSettings,
};

use mirror_common::api::Name;
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
    /// The git program of `kind: git` projects (a path, or a name looked up in PATH).
    pub git_path: PathBuf,
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
    /// The mirror site as mirrorz describes it (`GET /mirrorz.json`); without it that answers 404.
    pub site: Option<mirror_common::api::MirrorzSite>,
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
    /// The nice value of every run's program (0 to 19; unset: the master's own), set by the
    /// confinement helper, so that runs yield the CPU to the master and the site's web server.
    pub run_nice: Option<u8>,
    /// The most memory (address space, `RLIMIT_AS`, in MiB) a run's program may take: an
    /// allocation beyond it fails and so does the run. Unset: no limit. Set by the helper.
    pub run_memory_limit_mib: Option<u64>,
    /// The I/O class of every run's program: `idle`, `best-effort` or `best-effort:0-7` (unset: the
    /// master's own). Set by the helper, with util-linux's `ionice`.
    pub run_ionice: Option<String>,
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
    /// Programs projects may run after a run (`hooks.on_success`, `hooks.on_failure`), each named.
    pub hooks: Vec<HookSettings>,
    /// Programs `kind: command` projects run (`provider`), each named.
    pub providers: Vec<ProviderSettings>,
    /// Keys git projects with an `ssh://` upstream log in with (`ssh_key`), each named.
    pub git_ssh_keys: Vec<GitSshKey>,
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
            git_path: "git".into(),
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
            site: None,
            reconcile_interval_secs: 30,
            notify_timeout_secs: 10,
            notify_retries: 3,
            alerts: AlertSettings::default(),
            targets: TargetSettings::default(),
            s3_credentials: Vec::new(),
            hooks: Vec::new(),
            providers: Vec::new(),
            git_ssh_keys: Vec::new(),
            max_delete: mirror_common::guards::MaxDelete::Percent(50),
            upstream_lock_retry_secs: 60,
            upstream_lock_wait_secs: 3600,
            publish_timeout_secs: 300,
            snapshots: true,
            projects_dir: None,
            max_shrink: 100,
            run_nice: None,
            run_memory_limit_mib: None,
            run_ionice: None,
            mirror_name: None,
            initial_root_password: None,
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
        self.node.as_ref().map_or_else(host_name, |n| n.to_string())
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
}

/// This host's name (the default node name and `mirror_name`, and `Running on host:` in trace files).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| mirror_common::api::is_valid_host(h))
        .unwrap_or_else(|| "mirror-sync".into())
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

    #[test]
    fn a_site_table_loads_and_its_url_and_abbr_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.toml");
        let load = |site: &str| {
            std::fs::write(&path, format!("[site]\n{site}")).unwrap();
            Settings::load(Some(&path)).and_then(|s| s.validate().map(|()| s))
        };
        let s = load("url = \"https://mirrors.example.edu\"\nabbr = \"EX\"\nbig = \"/1g.bin\"\n").unwrap();
        let site = s.site.unwrap();
        assert_eq!((site.abbr.as_str(), site.big.as_deref(), site.disable), ("EX", Some("/1g.bin"), false));
        let e = load("url = \"https://mirrors.example.edu/\"\nabbr = \"EX\"\n").unwrap_err().to_string();
        assert!(e.contains("site.url"), "{e}");
        let e = load("url = \"ftp://mirrors.example.edu\"\nabbr = \"\"\n").unwrap_err().to_string();
        assert!(e.contains("site.url"), "{e}");
        let e = load("url = \"https://mirrors.example.edu\"\nabbr = \" \"\n").unwrap_err().to_string();
        assert!(e.contains("site.abbr"), "{e}");
        assert!(load("url = \"https://m.example\"\nabbr = \"EX\"\nlogo_url = \"x\"\n").is_err());
    }
}
