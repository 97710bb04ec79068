//! The slave's settings: embedded defaults, then a TOML file, then `MIRROR_SLAVE__*` variables.

use std::path::{Path, PathBuf};

use mirror_common::Secret;
use mirror_runtime::rsync::ConfineMode;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: String,
    /// Where projects are mirrored: `<root>/<the project's path under the master's module>`.
    pub root: PathBuf,
    /// The master's API, for completion reports.
    pub master_url: String,
    /// This slave's own token, from the master's `/add_slave/` (or `/rotate_slave_token/`): the
    /// master's sync requests carry it, our reports carry it. `cluster_token`, the key of the
    /// shared token it replaces, is read as the same setting.
    #[serde(alias = "cluster_token")]
    pub token: Option<Secret>,
    /// The password of the master's rsync daemon (better: `rsync_password_file`, mode 0600).
    pub rsync_password: Option<Secret>,
    pub rsync_password_file: Option<PathBuf>,
    pub rsync_path: PathBuf,
    pub run_timeout_secs: u64,
    /// A pull that moves no data for this many seconds ends (rsync's `--timeout`, and
    /// `--contimeout` for the connection): a stalled master daemon must not hold the project's
    /// pull, and every later notification with it, for `run_timeout_secs`. The project's own
    /// `--timeout` wins.
    pub pull_io_timeout_secs: u64,
    /// What this slave serves, kept across restarts.
    pub state_file: PathBuf,
    pub log: String,
    /// `text` (the default) or `json`: one JSON object per line.
    pub log_format: mirror_runtime::logging::LogFormat,
    /// `auto` (default), `required` or `off`: whether each pull is confined by Landlock.
    pub confine: ConfineMode,
    /// The `mirror-confine` helper; unset: beside `mirror-slave`, then in PATH.
    pub confine_helper: Option<PathBuf>,
    /// With a slave started as root: pull as this account.
    pub run_as: Option<String>,
    /// Open connections at most, header-read and idle timeouts (seconds), as on the master.
    pub max_connections: usize,
    pub header_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:7000".into(),
            root: "slave-mirror".into(),
            master_url: "http://127.0.0.1:5000".into(),
            token: None,
            rsync_password: None,
            rsync_password_file: None,
            rsync_path: "rsync".into(),
            run_timeout_secs: 6 * 3600,
            pull_io_timeout_secs: 300,
            state_file: "mirror-slave-state.json".into(),
            log: "info".into(),
            log_format: Default::default(),
            confine: ConfineMode::Auto,
            confine_helper: None,
            run_as: None,
            max_connections: 256,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
        }
    }
}

fn invalid(key: &str, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("configuration: {key}: {message}")
}

impl Settings {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            let source = config::File::from(f).format(config::FileFormat::Toml).required(true);
            let alone = config::Config::builder()
                .add_source(source.clone())
                .build()
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            let secrets: Vec<&str> = ["token", "cluster_token", "rsync_password"]
                .into_iter()
                .filter(|k| alone.get_string(k).is_ok_and(|v| !v.is_empty()))
                .collect();
            mirror_runtime::fs::refuse_secrets_in_shared_file(f, &secrets, "MIRROR_SLAVE")
                .map_err(|m| invalid("config", m))?;
            builder = builder.add_source(source);
        }
        builder = builder.add_source(
            config::Environment::with_prefix("MIRROR_SLAVE").prefix_separator("__").separator("__").try_parsing(true),
        );
        let settings: Settings =
            builder.build().and_then(|c| c.try_deserialize()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| invalid("listen", format!("'{}' is not an address:port", self.listen)))?;
        if self.root.as_os_str().is_empty() {
            return Err(invalid("root", "must not be empty"));
        }
        let url = reqwest::Url::parse(&self.master_url).map_err(|e| invalid("master_url", e))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("master_url", "must be an http or https URL"));
        }
        if self.token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            return Err(invalid("token", "must be at least 16 characters"));
        }
        self.limits()?;
        if self.rsync_password.is_some() && self.rsync_password_file.is_some() {
            return Err(invalid("rsync_password_file", "set either rsync_password or rsync_password_file"));
        }
        if !(1..=7 * 24 * 3600).contains(&self.run_timeout_secs) {
            return Err(invalid("run_timeout_secs", "must be between 1 and 604800"));
        }
        if !(1..=24 * 3600).contains(&self.pull_io_timeout_secs) {
            return Err(invalid("pull_io_timeout_secs", "must be between 1 and 86400"));
        }
        if self.log.parse::<tracing_subscriber::EnvFilter>().is_err() {
            return Err(invalid("log", format!("'{}' is not a log filter", self.log)));
        }
        Ok(())
    }

    /// `max_connections`, `header_read_timeout_secs`, `idle_timeout_secs`, checked.
    pub fn limits(&self) -> anyhow::Result<mirror_runtime::server::Limits> {
        mirror_runtime::server::Limits::new(self.max_connections, self.header_read_timeout_secs, self.idle_timeout_secs)
            .map_err(|(key, m)| invalid(key, m))
    }

    /// The rsync daemon password, from the setting or from a file readable by its owner only.
    pub async fn load_rsync_password(&self) -> anyhow::Result<Option<Secret>> {
        if let Some(p) = &self.rsync_password {
            return Ok(Some(p.clone()));
        }
        let Some(path) = &self.rsync_password_file else { return Ok(None) };
        let password =
            mirror_runtime::fs::read_secret_file(path).await.map_err(|m| invalid("rsync_password_file", m))?;
        Ok(Some(password))
    }
}
